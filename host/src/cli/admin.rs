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
    pub(super) fn addr(&self) -> anyhow::Result<String> {
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

/// `flowgate dlq`: the dead letters of a running pipeline.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum DlqCommand {
    /// List the dead letters of a dead-letter topic, oldest first, one JSON object a line: time,
    /// stage, plugin and hash, error kind and message, input coordinates, times redriven, key
    /// and value.
    List(DlqArgs),
    /// Send dead letters back to the input of the stage that failed them (once the plugin is
    /// fixed), each once: asked again with the same filters, only dead letters not sent yet
    /// go.
    Replay(DlqArgs),
}

/// Which dead letters `flowgate dlq` takes.
#[derive(Debug, clap::Args)]
pub(crate) struct DlqArgs {
    /// The dead-letter topic (a stage's `dead-letter-topic`, by default `dead-letters`).
    topic: String,
    /// Only those the stage S failed.
    #[arg(long, value_name = "S")]
    stage: Option<String>,
    /// Only those dead-lettered at or after T: an RFC 3339 time (2026-12-01T10:00:00Z) or a
    /// duration ago (15m).
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Only those that match: `error-kind=<kind>` (invalid-input, timeout, trap, …).
    #[arg(long = "where", value_name = "error-kind=K")]
    filter: Option<String>,
    /// Only these: `<partition>:<offset>` in the dead-letter topic (as `list` prints them),
    /// separated by commas.
    #[arg(long, value_name = "P:O,...")]
    at: Option<String>,
    /// With `list`: at most this many.
    #[arg(long, default_value_t = 1000)]
    limit: usize,
    #[command(flatten)]
    target: Target,
}

impl DlqArgs {
    /// The query string of the admin API's dead-letter calls.
    fn query(&self) -> anyhow::Result<String> {
        let mut q = vec![format!("limit={}", self.limit)];
        if let Some(s) = &self.stage {
            q.push(format!("stage={}", encode(s)));
        }
        if let Some(t) = &self.since {
            let at = match humantime::parse_rfc3339_weak(t) {
                Ok(at) => at,
                Err(_) => {
                    let ago = humantime::parse_duration(t).map_err(|_| {
                        anyhow::anyhow!("--since {t}: neither an RFC 3339 time (2026-12-01T10:00:00Z) nor a duration ago (15m)")
                    })?;
                    std::time::SystemTime::now() - ago
                }
            };
            let ms = at
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
            q.push(format!("since={ms}"));
        }
        if let Some(w) = &self.filter {
            match w.split_once('=') {
                Some(("error-kind", k)) => q.push(format!("kind={}", encode(k))),
                _ => anyhow::bail!(
                    "--where {w}: the filter is error-kind=<kind> (invalid-input, timeout, trap, …)"
                ),
            }
        }
        if let Some(at) = &self.at {
            q.push(format!("at={}", encode(at)));
        }
        Ok(q.join("&"))
    }
}

/// `s` with what a query value cannot hold percent-encoded.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub(crate) fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    match command {
        DlqCommand::List(args) => {
            let path = format!("/admin/dlq/{}?{}", encode(&args.topic), args.query()?);
            let (status, body) = call(&args.target.addr()?, "GET", &path, b"")?;
            if status != 200 {
                return finish(status, &body);
            }
            let v: serde_json::Value = serde_json::from_str(&body).context("not a JSON answer")?;
            let mut out = std::io::stdout().lock();
            for d in v["dead_letters"].as_array().into_iter().flatten() {
                writeln!(out, "{d}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Replay(args) => {
            let path = format!(
                "/admin/dlq/{}/replay?{}",
                encode(&args.topic),
                args.query()?
            );
            let (status, body) = call(&args.target.addr()?, "POST", &path, b"")?;
            finish(status, &body)
        }
    }
}

/// Arguments of `flowgate tap`.
#[derive(Debug, clap::Args)]
pub(crate) struct TapArgs {
    /// The topic.
    topic: String,
    /// Print one of every N events.
    #[arg(long, value_name = "N", default_value_t = 1)]
    sample: u64,
    /// Stop after this many events.
    #[arg(long, value_name = "M")]
    limit: Option<u64>,
    #[command(flatten)]
    target: Target,
}

/// `flowgate tap`: the events appended to a topic of the running pipeline from now on, one
/// NDJSON line each on stdout while they come; what the tap says of itself (where it starts,
/// events it left out for a slow reader) goes to stderr.
pub(crate) fn tap(args: TapArgs) -> anyhow::Result<ExitCode> {
    if args.sample == 0 {
        anyhow::bail!("--sample 0: print one of every N events, N of 1 or more");
    }
    let addr = args.target.addr()?;
    let mut path = format!("/admin/tap/{}?sample={}", encode(&args.topic), args.sample);
    if let Some(l) = args.limit {
        path.push_str(&format!("&limit={l}"));
    }
    let mut s = TcpStream::connect(&addr).with_context(|| {
        format!("cannot reach the running pipeline at {addr}; is `flowgate run` still running?")
    })?;
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Ok(token) = std::env::var("FLOWGATE_TOKEN") {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    let mut r = std::io::BufReader::new(s);
    let mut status_line = String::new();
    std::io::BufRead::read_line(&mut r, &mut status_line)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("not an HTTP answer")?;
    let mut chunked = false;
    loop {
        let mut h = String::new();
        std::io::BufRead::read_line(&mut r, &mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if h.to_ascii_lowercase().starts_with("transfer-encoding:") && h.contains("chunked") {
            chunked = true;
        }
    }
    if status != 200 || !chunked {
        let mut body = String::new();
        r.read_to_string(&mut body)?;
        return finish(status, &body);
    }
    // The chunks, as they come, cut into lines.
    let (mut out, mut err) = (std::io::stdout().lock(), std::io::stderr());
    let mut pending = Vec::new();
    loop {
        let mut size = String::new();
        if std::io::BufRead::read_line(&mut r, &mut size)? == 0 {
            break;
        }
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or(""), 16)
            .context("a malformed chunk from the running pipeline")?;
        if n == 0 {
            break;
        }
        let mut chunk = vec![0; n + 2];
        r.read_exact(&mut chunk)?;
        pending.extend_from_slice(&chunk[..n]);
        while let Some(at) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=at).collect();
            if line.starts_with(b"{\"tap\":") {
                err.write_all(&line)?;
            } else {
                out.write_all(&line)?;
                out.flush()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Arguments of `flowgate reload` and `flowgate status`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: Target,
}

/// One request; returns status and body. Sends `$FLOWGATE_TOKEN` as the bearer token if set.
pub(super) fn call(
    addr: &str,
    method: &str,
    path: &str,
    body: &[u8],
) -> anyhow::Result<(u16, String)> {
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
