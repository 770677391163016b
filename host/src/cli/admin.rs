//! `flowgate plugin deploy`, `flowgate reload`, `flowgate status`: calls to the admin endpoint
//! of a running `flowgate run` (its `[http]` server).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

/// Where the running process is.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// Address of the running process's HTTP server [default: from <data-dir>/admin.addr,
    /// written by `flowgate run`].
    #[arg(long, env = "FLOWGATE_ADMIN")]
    admin: Option<String>,
    /// The data directory of the running process.
    #[arg(long, env = "FLOWGATE_DATA_DIR", default_value = "flowgate-data")]
    data_dir: PathBuf,
}

impl Target {
    fn addr(&self) -> anyhow::Result<String> {
        if let Some(a) = &self.admin {
            return Ok(a
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned());
        }
        let file = self.data_dir.join("admin.addr");
        std::fs::read_to_string(&file)
            .map(|s| s.trim().to_owned())
            .with_context(|| {
                format!(
                    "no running pipeline found: {} is missing. Is `flowgate run` running with an [http] section and --data-dir {}? Or give --admin <host:port>",
                    file.display(),
                    self.data_dir.display()
                )
            })
    }
}

/// Arguments of `flowgate plugin deploy`.
#[derive(Debug, clap::Args)]
pub(crate) struct DeployArgs {
    /// The stage.
    stage: String,
    /// The new plugin component.
    plugin: PathBuf,
    #[command(flatten)]
    target: Target,
}

/// Arguments of `flowgate reload` and `flowgate status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: Target,
}

/// One request; returns status and body. Sends `$FLOWGATE_TOKEN` as the bearer token if set.
fn call(addr: &str, method: &str, path: &str, body: &[u8]) -> anyhow::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr).with_context(|| {
        format!("cannot reach the running pipeline at {addr}; is `flowgate run` still running?")
    })?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Ok(token) = std::env::var("FLOWGATE_TOKEN") {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body))
        .with_context(|| format!("sending {method} {path} to the running pipeline at {addr}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).with_context(|| {
        format!("reading the answer to {method} {path} from the running pipeline at {addr}")
    })?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    Ok((status, body.to_owned()))
}

fn finish(status: u16, body: &str) -> anyhow::Result<ExitCode> {
    let pretty = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| body.to_owned());
    if status == 200 {
        writeln!(std::io::stdout(), "{pretty}")?;
        Ok(ExitCode::SUCCESS)
    } else {
        writeln!(std::io::stderr(), "{pretty}")?;
        Ok(ExitCode::from(1))
    }
}

pub(crate) fn deploy(args: DeployArgs) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(&args.plugin)
        .with_context(|| format!("reading {}", args.plugin.display()))?;
    let (status, body) = call(
        &args.target.addr()?,
        "POST",
        &format!("/admin/stages/{}/plugin", args.stage),
        &bytes,
    )?;
    finish(status, &body)
}

pub(crate) fn reload(args: Args) -> anyhow::Result<ExitCode> {
    let (status, body) = call(&args.target.addr()?, "POST", "/admin/reload", b"")?;
    finish(status, &body)
}

pub(crate) fn status(args: Args) -> anyhow::Result<ExitCode> {
    let (status, body) = call(&args.target.addr()?, "GET", "/admin/status", b"")?;
    finish(status, &body)
}
