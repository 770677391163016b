//! `flowgate topic create|list|describe`.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use crate::log::{EventLog, TopicConfig};

use super::{LogArgs, parse_size};

/// Topic commands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TopicCommand {
    /// Creates a topic.
    Create {
        /// Topic name: letters, digits, '.', '_' or '-'.
        name: String,
        /// Number of partitions.
        #[arg(long, short, default_value_t = 1)]
        partitions: u32,
        /// Roll a segment at this size (e.g. 128MiB).
        #[arg(long, default_value = "128MiB", value_parser = parse_size)]
        segment_bytes: usize,
        /// Roll a segment this long after its first record (e.g. 1d, 6h).
        #[arg(long, default_value = "1d", value_parser = humantime::parse_duration)]
        segment_age: Duration,
        /// Delete old segments while a partition holds more than this (e.g. 10GiB).
        #[arg(long, value_parser = parse_size)]
        retention_bytes: Option<usize>,
        /// Delete segments last written longer ago than this (e.g. 7d); `forever` keeps all.
        #[arg(long, default_value = "7d")]
        retention: String,
        #[command(flatten)]
        log: LogArgs,
    },
    /// Lists topics with their partition count and record count.
    List {
        #[command(flatten)]
        log: LogArgs,
    },
    /// Shows a topic's settings and each partition's offsets and size.
    Describe {
        /// Topic name.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        log: LogArgs,
    },
}

/// A size as a person reads it: `128 MiB`, `1.5 GiB`, `900 bytes`.
fn size(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("TiB", 1 << 40),
        ("GiB", 1 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
    ];
    for (unit, n) in UNITS {
        if bytes >= n {
            return if bytes.is_multiple_of(n) {
                format!("{} {unit}", bytes / n)
            } else {
                format!("{:.1} {unit}", bytes as f64 / n as f64)
            };
        }
    }
    format!("{bytes} bytes")
}

/// A duration as a person reads it: `1 day`, `6 hours`, `90 minutes`, else humantime's form.
fn duration(d: Duration) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("day", 86_400),
        ("hour", 3_600),
        ("minute", 60),
        ("second", 1),
    ];
    let secs = d.as_secs();
    if d.subsec_nanos() == 0 && secs > 0 {
        for (unit, n) in UNITS {
            if secs.is_multiple_of(n) {
                let k = secs / n;
                return format!("{k} {unit}{}", if k == 1 { "" } else { "s" });
            }
        }
    }
    humantime::format_duration(d).to_string()
}

pub(crate) fn run(cmd: TopicCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match cmd {
        TopicCommand::Create {
            name,
            partitions,
            segment_bytes,
            segment_age,
            retention_bytes,
            retention,
            log,
        } => {
            let retention_age = match retention.as_str() {
                "forever" => None,
                r => Some(humantime::parse_duration(r).map_err(|e| {
                    anyhow::anyhow!("--retention {r:?}: {e} (write e.g. 7d, 12h, or forever)")
                })?),
            };
            let config = TopicConfig {
                partitions,
                segment_bytes: segment_bytes as u64,
                segment_age: Some(segment_age),
                retention_bytes: retention_bytes.map(|b| b as u64),
                retention_age,
                ..TopicConfig::default()
            };
            let log = log.open()?;
            log.create_topic(&name, config)?;
            writeln!(
                out,
                "created topic {name} with {partitions} partition(s) in {}",
                log.dir().display()
            )?;
        }
        TopicCommand::List { log } => {
            let log = log.open_read_only()?;
            for name in log.topics() {
                let info = log.describe(&name)?;
                let records: u64 = info
                    .partitions
                    .iter()
                    .map(|p| p.end_offset - p.start_offset)
                    .sum();
                writeln!(
                    out,
                    "{name}\tpartitions={}\trecords={records}",
                    info.partitions.len()
                )?;
            }
        }
        TopicCommand::Describe { name, json, log } => {
            let info = log.open_read_only()?.describe(&name)?;
            if json {
                writeln!(out, "{}", serde_json::to_string_pretty(&info)?)?;
            } else {
                let c = &info.config;
                writeln!(out, "topic:       {}", info.name)?;
                writeln!(out, "partitions:  {}", c.partitions)?;
                let mut segment = format!("rolled at {}", size(c.segment_bytes));
                if let Some(age) = c.segment_age {
                    segment.push_str(&format!(" or after {}", duration(age)));
                }
                writeln!(out, "segment:     {segment}")?;
                let mut retention = c.retention_age.map_or("forever".into(), duration);
                if let Some(b) = c.retention_bytes {
                    retention.push_str(&format!(", at most {} per partition", size(b)));
                }
                writeln!(out, "retention:   {retention}")?;
                writeln!(out, "partition\tstart\tend\tbytes\tsegments")?;
                for p in &info.partitions {
                    writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}",
                        p.partition, p.start_offset, p.end_offset, p.bytes, p.segments
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_a_person_writes_them() {
        assert_eq!(size(128 << 20), "128 MiB");
        assert_eq!(size(3 << 29), "1.5 GiB");
        assert_eq!(size(900), "900 bytes");
        assert_eq!(duration(Duration::from_secs(86_400)), "1 day");
        assert_eq!(duration(Duration::from_secs(7 * 86_400)), "7 days");
        assert_eq!(duration(Duration::from_secs(5_400)), "90 minutes");
        assert_eq!(duration(Duration::from_millis(1_500)), "1s 500ms");
    }
}
