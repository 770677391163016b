//! `flowgate run`: runs a pipeline until SIGINT/SIGTERM, or to completion with `--bounded`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

use crate::log::kafka::{KafkaLog, KafkaLogConfig};
use crate::log::{EventLog, Log, LogOptions, MemoryLog};
use crate::pipeline::{self, PipelineConfig, RunOptions, Running};
use crate::runtime::{Runtime, RuntimeConfig};
use crate::server::{self as http, HttpState};

/// Arguments of `flowgate run`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The pipeline file (TOML; keys in docs/pipeline.md).
    pipeline: PathBuf,
    /// Process what the sources hold to completion, print a summary and exit 0: file and
    /// generator sources stop at their end, and each stage stops once its input topic has no
    /// writer left and it has read all of it.
    #[arg(long)]
    bounded: bool,
    /// Bounded runs: start the topics filled before the run (external = true) here: an offset,
    /// or a time such as 2026-11-21T10:00:00Z [default: the committed position, else the oldest].
    #[arg(long, requires = "bounded")]
    from: Option<pipeline::Position>,
    /// Bounded runs: stop the external topics here (exclusive): an offset or a time
    /// [default: their end when the run starts].
    #[arg(long, requires = "bounded")]
    to: Option<pipeline::Position>,
    /// The log's data directory.
    #[arg(long, env = "FLOWGATE_DATA_DIR", default_value = "flowgate-data")]
    data_dir: PathBuf,
    /// Keep the log in memory instead of on disk: nothing survives the process.
    #[arg(long, conflicts_with = "data_dir")]
    memory: bool,
    /// Compiled-code cache directory [default: $FLOWGATE_CACHE_DIR, else ~/.cache/flowgate].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Do not watch the pipeline file and plugin files for changes (unbounded runs watch them
    /// and apply what changed).
    #[arg(long)]
    no_watch: bool,
    /// How long steps may take to finish their batch after SIGINT/SIGTERM; plugin calls still
    /// running when a quarter of it (at most 1 s) is left are interrupted.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace: Duration,
    /// On a Kafka log: this process among the pipeline's processes (each needs its own; the
    /// same name after a restart fences the process it replaces) [default: the host name and
    /// the data directory].
    #[arg(long, env = "FLOWGATE_INSTANCE")]
    instance: Option<String>,
}

/// The default instance name: the host's name and a hash of the data directory's path, so
/// processes of one host with their own data directories differ and a restart keeps its name.
fn default_instance(data_dir: &std::path::Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    let path = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_owned());
    let hash = crate::runtime::hash_of(path.as_os_str().as_encoded_bytes());
    format!("{host}-{}", &hash[..8])
}

/// The runtime for a pipeline's stages: pool sized for its instances, memory for its largest.
pub(crate) fn runtime_for(
    config: &PipelineConfig,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<Runtime> {
    let mut rc = RuntimeConfig::default();
    if cache_dir.is_some() {
        rc.cache_dir = cache_dir;
    }
    let partitions: u32 = config
        .stages
        .iter()
        .map(|s| {
            config
                .topics
                .get(&s.input)
                .map_or(1, |t| t.config.partitions)
                + 1
        })
        .sum();
    // Per partition: the live instance, the previous one while a new version is on probation,
    // and one made ahead for the next version; plus the instances that check plugins.
    rc.max_stage_instances = (partitions * 4).max(16);
    rc.max_memory_bytes = config
        .stages
        .iter()
        .map(|s| s.limits.memory_bytes)
        .max()
        .unwrap_or(0)
        .max(rc.max_memory_bytes.min(256 << 20));
    Ok(Runtime::new(rc)?)
}

pub(crate) fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = PipelineConfig::load(&args.pipeline)?;
    if let Some(h) = &config.http {
        // Before anything starts: a server that may not listen stops the run here.
        http::check(h)?;
    }
    let metrics = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".into()),
            &[
                0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
            ],
        )
        .context("metric buckets")?
        .install_recorder()
        .context("installing the metrics recorder")?;
    let instance = args
        .instance
        .clone()
        .unwrap_or_else(|| default_instance(&args.data_dir));
    let log: Arc<dyn EventLog> = if let Some(k) = &config.kafka_log {
        if args.memory {
            anyhow::bail!(
                "--memory asks for the in-memory log, and {} sets [log] backend = \"kafka\": drop one",
                args.pipeline.display()
            );
        }
        // The data directory still holds admin.addr for the admin commands.
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("creating {}", args.data_dir.display()))?;
        let cfg = KafkaLogConfig {
            brokers: k.brokers.clone(),
            properties: k.properties.clone(),
            prefix: k.topic_prefix.clone(),
            replication_factor: k.replication_factor,
            owner: config.name.clone(),
            instance: instance.clone(),
            session_timeout: k.session_timeout,
        };
        Arc::new(KafkaLog::open(cfg).with_context(|| {
            format!(
                "opening the Kafka log at {} ([log] in {})",
                k.brokers,
                args.pipeline.display()
            )
        })?)
    } else if args.memory {
        Arc::new(MemoryLog::new())
    } else {
        let options = LogOptions {
            sync: config.sync,
            read_only: false,
        };
        Arc::new(
            Log::open(&args.data_dir, options)
                .with_context(|| format!("opening the log in {}", args.data_dir.display()))?,
        )
    };
    let runtime = runtime_for(&config, args.cache_dir.clone())?;
    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("flowgate-io")
        .build()
        .context("starting the I/O runtime")?;
    let running = pipeline::start(
        config.clone(),
        log.clone(),
        &runtime,
        RunOptions {
            bounded: args.bounded,
            from: args.from,
            to: args.to,
            instance: Some(instance),
        },
    )?;
    let shared = running.clone();
    // The watches are in place before the HTTP server says it listens: a client that changes a
    // file once it sees the server must not race the watcher's start.
    let watcher = if args.bounded || args.no_watch {
        None
    } else {
        Some(crate::watch::spawn(shared.clone())?)
    };
    if let Some(h) = &config.http {
        let state = HttpState::new(shared.clone(), Some(metrics.clone()))?;
        let listener = tokio
            .block_on(tokio::net::TcpListener::bind(&h.listen))
            .with_context(|| {
                format!(
                    "cannot listen on {} ([http] listen); is another process using it?",
                    h.listen
                )
            })?;
        let addr = listener.local_addr()?;
        shared.set_admin_addr(addr.to_string());
        tracing::info!(%addr, "HTTP server listening (POST /topics/<topic>/events, GET /metrics, GET /health, /admin/...)");
        if !args.memory {
            // Where `flowgate plugin deploy`, `reload` and `status` find this process.
            let file = args.data_dir.join("admin.addr");
            std::fs::write(&file, addr.to_string())
                .with_context(|| format!("writing {}", file.display()))?;
        }
        let stop = shared.clone();
        tokio.spawn(async move {
            let shutdown = async move {
                while !stop.stopping() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            };
            if let Err(e) = http::serve(listener, state, shutdown).await {
                tracing::error!("HTTP server: {e}");
            }
        });
    }
    let stop = shared.clone();
    tokio.spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            tracing::error!("cannot install the SIGINT/SIGTERM handlers");
            return;
        };
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: finishing the batches in flight and committing");
        stop.stop();
    });
    let progress = args.bounded.then(|| spawn_progress(shared.clone()));
    let summary = running.wait(args.grace);
    shared.stop();
    if let Some(p) = progress {
        let _ = p.join();
    }
    if let Some(w) = watcher {
        let _ = w.join();
    }
    if config.http.is_some() && !args.memory {
        let _ = std::fs::remove_file(args.data_dir.join("admin.addr"));
    }
    let syncs = pipeline::total_syncs(&*log);
    drop(tokio);
    if args.bounded {
        // On stderr: stdout may be a sink's.
        use std::io::Write;
        let mut err = std::io::stderr().lock();
        write!(err, "{summary}")?;
        writeln!(err, "  log: {syncs} syncs")?;
    } else {
        tracing::info!("stopped\n{summary}");
    }
    Ok(if summary.failure.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// Shows progress of a bounded run: a spinner on a terminal, a line every 5 s otherwise.
fn spawn_progress(shared: Arc<Running>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let tty = std::io::stderr().is_terminal();
        let bar = tty.then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(Duration::from_millis(120));
            b
        });
        let mut ticks = 0u64;
        while !shared.stopping() {
            std::thread::sleep(Duration::from_millis(200));
            ticks += 1;
            let line = progress_line(&shared);
            match &bar {
                Some(b) => b.set_message(line),
                None if ticks.is_multiple_of(25) => tracing::info!("progress: {line}"),
                None => {}
            }
        }
        if let Some(b) = bar {
            b.finish_and_clear();
        }
    })
}

fn progress_line(shared: &Running) -> String {
    let summary = shared.summary();
    let mut parts = Vec::new();
    for (n, (events, _)) in &summary.sources {
        parts.push(format!("{n}: {events} in"));
    }
    for (n, s) in &summary.stages {
        parts.push(format!(
            "{n}: {} → {} ({} errors)",
            s.events_in, s.events_out, s.errors
        ));
    }
    for (n, events) in &summary.sinks {
        parts.push(format!("{n}: {events} out"));
    }
    parts.join(" · ")
}
