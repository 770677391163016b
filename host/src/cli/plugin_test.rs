//! `flowgate plugin test`: runs a plugin over NDJSON events, per event or per batch.
//!
//! Output events go to stdout as NDJSON; each failed event goes to stderr with its row (0-based
//! line of the input, blank lines not counted) and reason, and the exit code is 1. A plugin that
//! cannot load or returns a `fatal` error exits with 2.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::event::{self, Event, ndjson};
use crate::runtime::{CallError, PluginError, StageInstance};
use anyhow::{Context, bail};

use super::{RuntimeArgs, parse_pair};

/// How the plugin is called.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Mode {
    /// `on-event`, once per event.
    Event,
    /// `on-batch`, once per batch of `--batch-size` events.
    Batch,
}

/// Arguments of `flowgate plugin test`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The plugin component (.wasm). Without it, in a plugin project folder (flowgate.toml):
    /// the project's build/<name>.wasm, run on test/input.ndjson per event and per batch and
    /// checked against test/expected.ndjson.
    plugin: Option<PathBuf>,
    /// NDJSON events to feed it (`-` for stdin); format in docs/events.md.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Compare the output with this NDJSON file instead of printing it; exit 1 on a difference.
    #[arg(long)]
    expect: Option<PathBuf>,
    /// Call the plugin per event or per batch.
    #[arg(long, value_enum, default_value = "batch")]
    mode: Mode,
    /// Events per batch in batch mode.
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    batch_size: u32,
    /// Plugin config, `key=value`; repeat for more.
    #[arg(long = "config", short = 'c', value_parser = parse_pair)]
    config: Vec<(String, String)>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

fn report(row: usize, error: &CallError) {
    tracing::error!(kind = error.kind_name(), "row {row}: {error}");
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some(plugin) = args.plugin.clone() else {
        return run_project(args);
    };
    let Some(input) = args.input.clone() else {
        bail!("give the events to feed the plugin with --input <file.ndjson> (or - for stdin)");
    };
    let mut out = Vec::new();
    let failed = run_once(&args, &plugin, &input, args.mode, &mut out)?;
    match &args.expect {
        Some(expect) => {
            if !matches_expected(&out, expect, &format!("{:?}", args.mode).to_lowercase())? {
                return Ok(ExitCode::from(1));
            }
        }
        None => std::io::stdout().lock().write_all(&out)?,
    }
    if failed > 0 {
        tracing::error!("{failed} events failed");
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// In a plugin project: the built component on test/input.ndjson, per event and per batch,
/// against test/expected.ndjson.
fn run_project(args: Args) -> anyhow::Result<ExitCode> {
    let dir = std::path::Path::new(".");
    let m = crate::build::project::manifest(dir)?;
    let plugin = crate::build::project::output(dir, &m);
    if !plugin.exists() {
        bail!(
            "{} is not built yet: run `flowgate plugin build` first",
            plugin.display()
        );
    }
    let input = args
        .input
        .clone()
        .unwrap_or_else(|| PathBuf::from("test/input.ndjson"));
    let expect = args
        .expect
        .clone()
        .unwrap_or_else(|| PathBuf::from("test/expected.ndjson"));
    let mut ok = true;
    for mode in [Mode::Event, Mode::Batch] {
        let mut out = Vec::new();
        let failed = run_once(&args, &plugin, &input, mode, &mut out)?;
        let name = format!("{mode:?}").to_lowercase();
        ok &= matches_expected(&out, &expect, &name)? && failed == 0;
    }
    if ok {
        writeln!(
            std::io::stdout(),
            "ok: {} per event and per batch gives {}",
            plugin.display(),
            expect.display()
        )?;
        Ok(ExitCode::SUCCESS)
    } else {
        Ok(ExitCode::from(1))
    }
}

/// Compares output with the expected file; reports the first difference.
fn matches_expected(out: &[u8], expect: &std::path::Path, mode: &str) -> anyhow::Result<bool> {
    let want = std::fs::read(expect)
        .with_context(|| format!("cannot read the expected output {}", expect.display()))?;
    if want == out {
        return Ok(true);
    }
    let (got, want) = (String::from_utf8_lossy(out), String::from_utf8_lossy(&want));
    let (mut g, mut w) = (got.lines(), want.lines());
    let mut line = 1;
    loop {
        match (g.next(), w.next()) {
            (Some(a), Some(b)) if a == b => line += 1,
            (a, b) => {
                writeln!(
                    std::io::stderr(),
                    "per {mode}: output differs from {} at line {line}:\n  expected: {}\n  got:      {}",
                    expect.display(),
                    b.unwrap_or("(end of file)"),
                    a.unwrap_or("(end of output)")
                )?;
                return Ok(false);
            }
        }
    }
}

/// Runs the plugin over the input once; writes its output events as NDJSON; returns the
/// number of failed events.
fn run_once(
    args: &Args,
    plugin: &std::path::Path,
    input: &std::path::Path,
    mode: Mode,
    out: &mut Vec<u8>,
) -> anyhow::Result<usize> {
    let reader: Box<dyn BufRead> = if input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f =
            File::open(input).with_context(|| format!("cannot open input {}", input.display()))?;
        Box::new(BufReader::new(f))
    };
    let events = ndjson::read_all(reader)
        .with_context(|| format!("reading events from {}", input.display()))?;

    let runtime = args.runtime.runtime()?;
    let plugin = runtime.load_file(plugin)?;
    let mut instance = plugin
        .instantiate(args.runtime.limits(), args.config.clone())
        .context("the plugin failed to start")?;
    let failed = match mode {
        Mode::Event => run_events(&mut instance, &events, out)?,
        Mode::Batch => run_batches(&mut instance, &events, args.batch_size as usize, out)?,
    };
    if failed > 0 {
        tracing::error!("{failed} of {} events failed", events.len());
    }
    Ok(failed)
}

fn stop_if_fatal(error: &CallError) -> anyhow::Result<()> {
    if let Some(PluginError::Fatal(_)) = error.plugin_error() {
        bail!("{error}");
    }
    Ok(())
}

fn run_events(
    instance: &mut StageInstance,
    events: &[Event],
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut failed = 0;
    for (row, e) in events.iter().enumerate() {
        match instance.on_event(e) {
            Ok(outputs) => {
                for o in &outputs {
                    let mut pairs = Vec::new();
                    ndjson::write_event(out, &event::view(o, &mut pairs))?;
                }
            }
            Err(error) => {
                stop_if_fatal(&error)?;
                report(row, &error);
                failed += 1;
            }
        }
    }
    Ok(failed)
}

fn run_batches(
    instance: &mut StageInstance,
    events: &[Event],
    batch_size: usize,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut failed = 0;
    for (n, chunk) in events.chunks(batch_size).enumerate() {
        let first = n * batch_size;
        let result = instance.process_batch(&event::batch_of(chunk))?;
        for f in &result.failures {
            stop_if_fatal(&f.error)?;
            report(first + f.row as usize, &f.error);
        }
        failed += result.failures.len();
        for row in event::columns(&result.output)?.rows() {
            ndjson::write_event(out, &row)?;
        }
    }
    Ok(failed)
}
