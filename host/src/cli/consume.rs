//! `flowgate consume`: prints a topic's events as NDJSON.
//!
//! Where it starts, per partition: `--offset N`, `--since TIME`, `--from-beginning`; otherwise
//! the group's committed offset (with `--group`), otherwise the beginning. With `--group` it
//! commits what it printed. `--follow` keeps waiting for new events.
//!
//! It opens the log read-only (no lock), so it runs beside the process that owns the log.

use std::io::{BufWriter, Write};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::event::{self, ndjson};
use crate::log::{EventLog, LogError};

use super::LogArgs;

/// Arguments of `flowgate consume`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The topic.
    topic: String,
    /// Only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// Start at the oldest event held.
    #[arg(long, conflicts_with_all = ["offset", "since"])]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long, conflicts_with = "since")]
    offset: Option<u64>,
    /// Start at the first event at or after TIME: RFC 3339 (2024-05-01T12:00:00Z), a duration
    /// ago (10m, 2h), or milliseconds since the Unix epoch.
    #[arg(long)]
    since: Option<String>,
    /// Consumer group: start at its committed offsets and commit what is printed.
    #[arg(long)]
    group: Option<String>,
    /// Keep waiting for new events.
    #[arg(long)]
    follow: bool,
    /// Stop after this many events.
    #[arg(long)]
    max: Option<u64>,
    #[command(flatten)]
    log: LogArgs,
}

fn parse_since(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        return Ok(d.as_millis() as i64);
    }
    if let Ok(d) = humantime::parse_duration(s) {
        return Ok(ndjson::now_ms() - d.as_millis() as i64);
    }
    anyhow::bail!(
        "--since {s:?}: write a time (2024-05-01T12:00:00Z), a duration ago (10m), or epoch milliseconds"
    )
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let log = args.log.open_read_only()?;
    let info = log.describe(&args.topic)?;
    let parts: Vec<u32> = match args.partition {
        Some(p) if p as usize >= info.partitions.len() => {
            anyhow::bail!(
                "--partition {p}: topic `{}` has partitions 0..{}",
                args.topic,
                info.partitions.len()
            )
        }
        Some(p) => vec![p],
        None => (0..info.partitions.len() as u32).collect(),
    };
    let since = args.since.as_deref().map(parse_since).transpose()?;
    let mut positions = Vec::new();
    for &p in &parts {
        let held = &info.partitions[p as usize];
        let committed = match &args.group {
            Some(g) => log.committed_offset(g, &args.topic, p)?,
            None => None,
        };
        let at = if args.from_beginning {
            held.start_offset
        } else if let Some(o) = args.offset {
            if o < held.start_offset || o > held.end_offset {
                return Err(LogError::OffsetOutOfRange {
                    topic: format!("{}/{p}", args.topic),
                    requested: o,
                    start: held.start_offset,
                    end: held.end_offset,
                }
                .into());
            }
            o
        } else if let Some(ts) = since {
            log.offset_for_time(&args.topic, p, ts)?
        } else {
            committed
                .unwrap_or(held.start_offset)
                .max(held.start_offset)
        };
        positions.push((p, at));
    }

    let mut out = BufWriter::new(std::io::stdout().lock());
    let mut printed = 0u64;
    let limit = args.max.unwrap_or(u64::MAX);
    loop {
        let mut progressed = false;
        for (p, at) in positions.iter_mut() {
            let batches = log.read(&args.topic, *p, *at, 1 << 20)?;
            for b in &batches {
                let cols = event::columns(&b.batch)?;
                for (i, row) in cols.rows().enumerate() {
                    let offset = b.base_offset + i as u64;
                    if offset < *at || printed >= limit {
                        continue;
                    }
                    ndjson::write_event(&mut out, &row)?;
                    printed += 1;
                    *at = offset + 1;
                    progressed = true;
                }
            }
            if progressed && let Some(g) = &args.group {
                out.flush()?;
                log.commit_offset(g, &args.topic, *p, *at)
                    .with_context(|| format!("committing the offset of group {g}"))?;
            }
        }
        if printed >= limit {
            break;
        }
        if !progressed {
            if !args.follow {
                break;
            }
            out.flush()?;
            // Wait on one partition at a time, briefly, so new events in any are seen soon.
            for (p, at) in &positions {
                if log.wait_for(
                    &args.topic,
                    *p,
                    *at,
                    Duration::from_millis(200) / parts.len() as u32,
                )? {
                    break;
                }
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
