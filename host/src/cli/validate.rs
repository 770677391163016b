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

/// How long `validate` waits for a Kafka step's brokers.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
