//! `flowgate plugin test`: runs a plugin over NDJSON events, per event or per batch.
//!
//! An aggregator runs through windows (`--window`, or `[test] window` of the project's
//! flowgate.toml) as in a pipeline, and every window still open fires at the end of the input:
//! its output is the window results as the stage would emit them.
//!
//! Output events go to stdout as NDJSON; each failed event goes to stderr with its row (0-based
//! line of the input, blank lines not counted) and reason, and the exit code is 1. A plugin that
//! cannot load or returns a `fatal` error exits with 2.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::event::{self, Event, ndjson};
use crate::runtime::{CallError, PluginError, StageInstance, World};
use crate::state::{Failure, SharedState, WindowSpec, WindowState, Windowing, fired_batch};
use anyhow::{Context, anyhow, bail};

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
    /// An aggregator's windows: `tumbling:<size>`, `hopping:<size>/<slide>` or
    /// `session:<gap>` (e.g. `tumbling:1m`); in a project, `[test] window` of flowgate.toml.
    #[arg(long, value_parser = parse_window)]
    window: Option<WindowSpec>,
    /// With --window: how far the watermark trails the largest event time (e.g. `10s`).
    #[arg(long, value_parser = humantime::parse_duration)]
    out_of_orderness: Option<std::time::Duration>,
    /// Plugin config, `key=value`; repeat for more.
    #[arg(long = "config", short = 'c', value_parser = parse_pair)]
    config: Vec<(String, String)>,
    #[command(flatten)]
    runtime: RuntimeArgs,
}

/// `tumbling:1m`, `hopping:1m/10s` (or `sliding:`), `session:30s`.
pub(crate) fn parse_window(s: &str) -> Result<WindowSpec, String> {
    let ms = |d: &str| -> Result<i64, String> {
        let d = humantime::parse_duration(d.trim()).map_err(|e| format!("{d:?}: {e}"))?;
        match i64::try_from(d.as_millis()) {
            Ok(ms) if ms > 0 => Ok(ms),
            _ => Err(format!("{d:?}: a window needs at least 1ms")),
        }
    };
    let usage = "write tumbling:<size>, hopping:<size>/<slide> or session:<gap>, e.g. tumbling:1m";
    let (kind, rest) = s
        .split_once(':')
        .ok_or_else(|| format!("window {s:?}: {usage}"))?;
    match kind.trim() {
        "tumbling" => Ok(WindowSpec::Tumbling { size: ms(rest)? }),
        "hopping" | "sliding" => {
            let (size, slide) = rest.split_once('/').ok_or_else(|| {
                format!("window {s:?}: a hopping window is hopping:<size>/<slide>")
            })?;
            let (size, slide) = (ms(size)?, ms(slide)?);
            if slide > size {
                return Err(format!(
                    "window {s:?}: the slide is longer than the size, so events between windows would belong to none"
                ));
            }
            Ok(WindowSpec::Hopping { size, slide })
        }
        "session" => Ok(WindowSpec::Session { gap: ms(rest)? }),
        other => Err(format!("window {s:?}: unknown kind {other:?}; {usage}")),
    }
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
fn run_project(mut args: Args) -> anyhow::Result<ExitCode> {
    let dir = std::path::Path::new(".");
    let m = crate::build::project::manifest(dir)?;
    if args.window.is_none()
        && let Some(w) = &m.test.window
    {
        args.window = Some(parse_window(w).map_err(|e| anyhow!("flowgate.toml, [test] {e}"))?);
    }
    if args.out_of_orderness.is_none()
        && let Some(d) = &m.test.out_of_orderness
    {
        args.out_of_orderness = Some(humantime::parse_duration(d).map_err(|e| {
            anyhow!("flowgate.toml, [test] out-of-orderness {d:?}: {e} (write e.g. \"10s\")")
        })?);
    }
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
    if plugin.info().uses_state {
        // The pipeline's default `max-state-bytes`.
        instance.attach_state(SharedState::new(256 << 20));
    }
    if plugin.info().kind == World::Aggregator {
        let Some(spec) = args.window else {
            bail!(
                "{} is an aggregator: give its windows with --window (e.g. --window tumbling:1m), or `[test] window = \"tumbling:1m\"` in the project's flowgate.toml",
                plugin.info().name
            );
        };
        let windowing = Windowing {
            spec,
            out_of_orderness: args
                .out_of_orderness
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            allowed_lateness: 0,
        };
        let size = match mode {
            Mode::Event => 1,
            Mode::Batch => args.batch_size as usize,
        };
        let failed = run_windows(&mut instance, &windowing, &events, size, out)?;
        if failed > 0 {
            tracing::error!("{failed} of {} events failed", events.len());
        }
        return Ok(failed);
    }
    if args.window.is_some() {
        bail!(
            "--window applies to aggregators; {} implements the {} world",
            plugin.info().name,
            plugin.info().world
        );
    }
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

/// An aggregator over windows, `batch_size` events at a time (1: one `add` per event); the
/// windows still open fire at the end.
fn run_windows(
    instance: &mut StageInstance,
    windowing: &Windowing,
    events: &[Event],
    batch_size: usize,
    out: &mut impl Write,
) -> anyhow::Result<usize> {
    let mut windows = WindowState::default();
    let mut failed = 0;
    for (n, chunk) in events.chunks(batch_size).enumerate() {
        let first = n * batch_size;
        let input = event::batch_of(chunk);
        let cols = event::columns(&input)?;
        let result = windows
            .process(windowing, instance, &input, &cols)
            .map_err(|e| anyhow!("{e}"))?;
        for (row, f) in &result.failures {
            match f {
                Failure::Plugin(e) => report(first + *row as usize, e),
                Failure::Refused(r) => {
                    tracing::error!(kind = r.kind_name(), "row {}: {r}", first + *row as usize)
                }
            }
        }
        for row in &result.late {
            tracing::error!(
                kind = "late",
                "row {}: every window it belongs to has closed",
                first + *row as usize
            );
        }
        failed += result.failures.len() + result.late.len();
        write_fired(&result.fired, out)?;
    }
    let fired = windows.close_all(instance).map_err(|e| anyhow!("{e}"))?;
    write_fired(&fired, out)?;
    Ok(failed)
}

/// Window results as NDJSON, the events a window stage emits.
fn write_fired(fired: &[crate::state::Fired], out: &mut impl Write) -> anyhow::Result<()> {
    let (batch, _) = fired_batch(fired);
    for row in event::columns(&batch)?.rows() {
        ndjson::write_event(out, &row)?;
    }
    Ok(())
}
