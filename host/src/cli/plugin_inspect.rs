//! `flowgate plugin inspect`: what a plugin is, before running it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::RuntimeArgs;

/// Arguments of `flowgate plugin inspect`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let runtime = args.runtime.runtime()?;
    let plugin = runtime
        .load_file(&args.plugin)
        .with_context(|| format!("inspecting {}", args.plugin.display()))?;
    let info = plugin.info();
    let mut out = std::io::stdout().lock();
    if args.json {
        let doc = serde_json::json!({
            "name": info.name,
            "file": args.plugin,
            "size": info.size,
            "sha256": info.hash,
            "world": info.world,
            "from_cache": info.from_cache,
            "load_ms": info.load_time.as_secs_f64() * 1e3,
            "imports": info.imports,
            "exports": info.exports,
            "reads_values": info.reads_values,
        });
        writeln!(out, "{doc:#}")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "plugin:  {}", info.name)?;
    writeln!(out, "file:    {}", args.plugin.display())?;
    writeln!(out, "size:    {} bytes", info.size)?;
    writeln!(out, "sha256:  {}", info.hash)?;
    writeln!(out, "world:   {}", info.world)?;
    writeln!(
        out,
        "values:  {}",
        if info.reads_values {
            "read (copied into each call)"
        } else {
            "not read (declared values = false: batches arrive without them)"
        }
    )?;
    writeln!(
        out,
        "load:    {:.1} ms ({})",
        info.load_time.as_secs_f64() * 1e3,
        if info.from_cache {
            "compiled code from the cache"
        } else {
            "compiled now"
        }
    )?;
    writeln!(out, "imports:")?;
    for i in &info.imports {
        writeln!(out, "  {i}")?;
    }
    writeln!(out, "exports:")?;
    for e in &info.exports {
        writeln!(out, "  {e}")?;
    }
    Ok(ExitCode::SUCCESS)
}
