//! `flowgate produce`: appends NDJSON events to a topic and reports how many were acknowledged.
//!
//! Events with a key go to the partition `crc32c(key) % partitions`, so a key always lands in
//! the same partition; events without one are spread round-robin. An event counts as
//! acknowledged only once it is durable (per the log's sync policy).
//!
//! Each event is held to the record limits (`--max-key-bytes`, `--max-value-bytes`,
//! `--max-headers`, `--max-header-bytes`; the defaults of a pipeline's `[limits]`). Events are
//! appended in rounds of up to 8,192; a line that is malformed or over a limit stops the run
//! before anything of its round is appended, and the error says how many events before it
//! were acknowledged (none, for an input of up to 8,192 events).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::event::{self, BatchBuilder, Event, RecordLimits, ndjson};
use crate::log::{EventLog, Pending};

use super::LogArgs;

/// Events read and appended per round.
const CHUNK: usize = 8192;

/// Arguments of `flowgate produce`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The topic.
    topic: String,
    /// NDJSON events (docs/events.md); `-` or absent for stdin.
    #[arg(long, short)]
    input: Option<PathBuf>,
    /// Put every event in this partition instead of choosing by key.
    #[arg(long)]
    partition: Option<u32>,
    /// Largest key of an event, bytes or a size such as 64KiB.
    #[arg(long, value_parser = crate::units::parse_size, default_value_t = RecordLimits::default().max_key_bytes)]
    max_key_bytes: usize,
    /// Largest value of an event, bytes or a size such as 1MiB.
    #[arg(long, value_parser = crate::units::parse_size, default_value_t = RecordLimits::default().max_value_bytes)]
    max_value_bytes: usize,
    /// Most headers of an event.
    #[arg(long, default_value_t = RecordLimits::default().max_headers)]
    max_headers: usize,
    /// Most bytes of an event's header names and values together, bytes or a size such as 64KiB.
    #[arg(long, value_parser = crate::units::parse_size, default_value_t = RecordLimits::default().max_header_bytes)]
    max_header_bytes: usize,
    #[command(flatten)]
    log: LogArgs,
}

/// The partition of an event: by key hash, else round-robin.
pub(crate) fn partition_for(e: &Event, partitions: u32, counter: &mut u64) -> u32 {
    if e.key.is_none() {
        *counter += 1;
    }
    crate::flow::producer::partition_for(e.key.as_deref(), partitions, *counter)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let reader: Box<dyn BufRead> = match &args.input {
        None => Box::new(std::io::stdin().lock()),
        Some(p) if p.as_os_str() == "-" => Box::new(std::io::stdin().lock()),
        Some(p) => Box::new(BufReader::new(
            File::open(p).with_context(|| format!("cannot open input {}", p.display()))?,
        )),
    };
    let log = args.log.open()?;
    let partitions = log.describe(&args.topic)?.partitions.len() as u32;
    if let Some(p) = args.partition
        && p >= partitions
    {
        anyhow::bail!(
            "--partition {p}: topic `{}` has partitions 0..{partitions}",
            args.topic
        );
    }
    let limits = RecordLimits {
        max_key_bytes: args.max_key_bytes,
        max_value_bytes: args.max_value_bytes,
        max_headers: args.max_headers,
        max_header_bytes: args.max_header_bytes,
    };
    let now = ndjson::now_ms();
    let mut acknowledged = 0u64;
    let mut counter = 0u64;
    let mut lines = reader.lines().enumerate();
    loop {
        let mut per_partition: Vec<BatchBuilder> =
            vec![BatchBuilder::default(); partitions as usize];
        let mut read = 0;
        // The line of this round's first event.
        let mut round_start = None;
        for (i, line) in lines.by_ref() {
            let line = line.with_context(|| match &args.input {
                Some(p) if p.as_os_str() != "-" => format!("reading events from {}", p.display()),
                _ => "reading events from stdin".into(),
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let e = ndjson::parse_event(&line, now).map_err(|m| {
                anyhow::anyhow!(
                    "line {}: {m} ({acknowledged} events before it were acknowledged)",
                    i + 1
                )
            })?;
            if let Err(e) = limits.check_event(&e) {
                let appended = match round_start {
                    _ if acknowledged == 0 => "nothing was appended".to_owned(),
                    Some(start) => format!(
                        "the {acknowledged} events before line {} were acknowledged, nothing from it on",
                        start + 1
                    ),
                    None => format!("the {acknowledged} events before it were acknowledged"),
                };
                anyhow::bail!(
                    "line {}: {e}; {appended}. Make the event smaller, or raise --{} if such events are meant",
                    i + 1,
                    e.key()
                );
            }
            round_start.get_or_insert(i);
            let p = args
                .partition
                .unwrap_or_else(|| partition_for(&e, partitions, &mut counter));
            event::push_event(&mut per_partition[p as usize], &e);
            read += 1;
            if read == CHUNK {
                break;
            }
        }
        if read == 0 {
            break;
        }
        let pending: Vec<(u32, Pending)> = per_partition
            .into_iter()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(p, b)| {
                Ok((
                    p as u32,
                    log.submit(&args.topic, p as u32, event::finish(b))?,
                ))
            })
            .collect::<anyhow::Result<_>>()?;
        for (p, pending) in pending {
            let ack = pending.wait().with_context(|| {
                format!(
                    "appending to {}/{p} ({acknowledged} events acknowledged before)",
                    args.topic
                )
            })?;
            acknowledged += u64::from(ack.count);
        }
    }
    writeln!(std::io::stdout(), "acknowledged {acknowledged} events")?;
    Ok(ExitCode::SUCCESS)
}
