//! `flowgate plugin test`: runs a plugin over NDJSON events, per event or per batch.
//!
//! Output events go to stdout as NDJSON; each failed event goes to stderr with its row (0-based
//! line of the input, blank lines not counted) and reason, and the exit code is 1. A plugin that
//! cannot load or returns a `fatal` error exits with 2.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
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
    /// The plugin component (.wasm).
    plugin: PathBuf,
    /// NDJSON events to feed it (`-` for stdin); format in docs/events.md.
    #[arg(long, short)]
    input: PathBuf,
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
    let reader: Box<dyn BufRead> = if args.input.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        let f = File::open(&args.input)
            .with_context(|| format!("cannot open input {}", args.input.display()))?;
        Box::new(BufReader::new(f))
    };
    let events = ndjson::read_all(reader)
        .with_context(|| format!("reading events from {}", args.input.display()))?;

    let runtime = args.runtime.runtime()?;
    let plugin = runtime.load_file(&args.plugin)?;
    let mut instance = plugin
        .instantiate(args.runtime.limits(), args.config.clone())
        .context("the plugin failed to start")?;

    let mut out = BufWriter::new(std::io::stdout().lock());
    let failed = match args.mode {
        Mode::Event => run_events(&mut instance, &events, &mut out)?,
        Mode::Batch => run_batches(&mut instance, &events, args.batch_size as usize, &mut out)?,
    };
    out.flush()?;
    if failed > 0 {
        tracing::error!("{failed} of {} events failed", events.len());
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
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
