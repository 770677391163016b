//! `flowgate validate`: checks a pipeline file and loads its plugins, reporting every problem
//! with its line and column.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::pipeline::{self, PipelineConfig};

/// Arguments of `flowgate validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipeline file.
    pipeline: PathBuf,
    /// Compiled-code cache directory [default: $FLOWGATE_CACHE_DIR, else ~/.cache/flowgate].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    use std::io::Write;
    let config = match PipelineConfig::load(&args.pipeline) {
        Ok(c) => c,
        Err(e) => {
            write!(std::io::stderr(), "{e}")?;
            return Ok(ExitCode::from(2));
        }
    };
    let runtime = super::run::runtime_for(&config, args.cache_dir)?;
    if let Err(problems) = pipeline::check_plugins(&config, &runtime) {
        write!(std::io::stderr(), "{problems}")?;
        return Ok(ExitCode::from(2));
    }
    kafka_reachable(&config)?;
    if !databases_fit(&config)? {
        return Ok(ExitCode::from(2));
    }
    writeln!(
        std::io::stdout(),
        "{}: pipeline `{}` is valid: {} source(s), {} stage(s), {} sink(s), {} topic(s)",
        args.pipeline.display(),
        config.name,
        config.sources.len(),
        config.stages.len(),
        config.sinks.len(),
        config.topics.len()
    )?;
    Ok(ExitCode::SUCCESS)
}

/// Asks the brokers of each Kafka source and sink whether they answer and have the topics named;
/// says what it finds on stderr. An unreachable broker does not make the file invalid (the
/// brokers may be reachable only from where the pipeline runs).
fn kafka_reachable(config: &PipelineConfig) -> anyhow::Result<()> {
    use std::io::Write;

    use crate::config::{KafkaSinkTopic, KafkaTopics, SinkKind, SourceKind};
    use crate::connect::kafka;

    let mut steps = Vec::new();
    if let Some(k) = &config.kafka_log {
        // The external topics must be there before the run; the others the run makes.
        let topics = config
            .topics
            .iter()
            .filter(|(_, t)| t.external)
            .map(|(name, _)| format!("{}{name}", k.topic_prefix))
            .collect();
        steps.push(("[log]".to_owned(), &k.brokers, &k.properties, topics));
    }
    for s in config.sources.values() {
        if let SourceKind::Kafka(k) = &s.kind {
            let topics = match &k.topics {
                KafkaTopics::Names(n) => n.clone(),
                KafkaTopics::Pattern(_) => Vec::new(),
            };
            steps.push((
                format!("source `{}`", s.name),
                &k.brokers,
                &k.properties,
                topics,
            ));
        }
    }
    for s in config.sinks.values() {
        if let SinkKind::Kafka(k) = &s.kind {
            let topics = match &k.topic {
                KafkaSinkTopic::Fixed(t) => vec![t.clone()],
                KafkaSinkTopic::Header { fallback, .. } => fallback.iter().cloned().collect(),
            };
            steps.push((
                format!("sink `{}`", s.name),
                &k.brokers,
                &k.properties,
                topics,
            ));
        }
    }
    // The steps' brokers are asked at once: an unreachable one costs the timeout once.
    let answers: Vec<_> = std::thread::scope(|scope| {
        let asks: Vec<_> = steps
            .iter()
            .map(|(_, brokers, properties, topics)| {
                scope.spawn(move || kafka::probe(brokers, properties, topics, PROBE_TIMEOUT))
            })
            .collect();
        asks.into_iter()
            .map(|a| a.join().expect("a probe does not panic"))
            .collect()
    });
    let mut err = std::io::stderr();
    for ((step, brokers, _, _), answer) in steps.iter().zip(answers) {
        match answer {
            Ok(p) => {
                for t in p.missing {
                    writeln!(
                        err,
                        "warning: {step}: topic `{t}` does not exist on {brokers}; create it before running"
                    )?;
                }
            }
            Err(e) => writeln!(
                err,
                "warning: {step}: {e} (waited {PROBE_TIMEOUT:?}); the file is valid, but the pipeline cannot run from here"
            )?,
        }
    }
    Ok(())
}

/// Asks the database of each PostgreSQL sink and change source whether its tables and columns
/// are there (and, for a change source, whether `wal_level` is `logical`). A table or column
/// that is not there is an error (false); an unreachable database is a warning, as for Kafka.
fn databases_fit(config: &PipelineConfig) -> anyhow::Result<bool> {
    use std::io::Write;

    use crate::config::{SinkKind, SourceKind};
    use crate::connect::postgres;

    let mut err = std::io::stderr();
    let mut fits = true;
    let mut asks = Vec::new();
    for s in config.sinks.values() {
        if let SinkKind::Postgres(p) = &s.kind {
            let cols: Vec<&str> = p.columns.iter().map(|(c, _)| c.as_str()).collect();
            asks.push((
                format!("sink `{}`", s.name),
                &p.url,
                vec![p.table.as_str()],
                Some(cols),
            ));
        }
    }
    for s in config.sources.values() {
        if let SourceKind::PostgresCdc(p) = &s.kind {
            let tables = p.tables.iter().map(String::as_str).collect();
            asks.push((format!("source `{}`", s.name), &p.url, tables, None));
        }
    }
    let answers: Vec<_> = std::thread::scope(|scope| {
        let running: Vec<_> = asks
            .iter()
            .map(|(_, url, tables, _)| {
                scope.spawn(move || match url.resolve() {
                    Ok(u) => postgres::probe(&u, tables, PROBE_TIMEOUT).map_err(|e| e.to_string()),
                    Err(e) => Err(e),
                })
            })
            .collect();
        running
            .into_iter()
            .map(|a| a.join().expect("a probe does not panic"))
            .collect()
    });
    for ((step, _, _, cols), answer) in asks.iter().zip(answers) {
        let probe = match answer {
            Ok(p) => p,
            Err(e) => {
                writeln!(
                    err,
                    "warning: {step}: {e}; the file is valid, but the pipeline cannot run from here"
                )?;
                continue;
            }
        };
        for (table, have) in &probe.tables {
            match (have, cols) {
                (None, _) => {
                    writeln!(
                        err,
                        "error: {step}: table {table} does not exist; create it, or fix the table's name"
                    )?;
                    fits = false;
                }
                (Some(have), Some(cols)) => {
                    if let Some(problem) =
                        postgres::missing_columns(table, cols.iter().copied(), have)
                    {
                        writeln!(err, "error: {step}: {problem}; fix `columns`")?;
                        fits = false;
                    }
                }
                (Some(_), None) => {}
            }
        }
        if cols.is_none() && probe.wal_level != "logical" {
            writeln!(
                err,
                "error: {step}: the database's wal_level is {}, and reading changes needs logical; set wal_level = logical in postgresql.conf and restart the server",
                probe.wal_level
            )?;
            fits = false;
        }
    }
    Ok(fits)
}

/// How long `validate` waits for a Kafka step's brokers or a database.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
