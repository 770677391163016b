//! The `flowgate` command line: one file per subcommand. The binary's `main` calls [`main`].

mod admin;
mod consume;
mod plugin_inspect;
mod plugin_project;
mod plugin_test;
mod produce;
mod run;
mod top;
mod topic;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::runtime::{Limits, Runtime, RuntimeConfig};
use crate::units::parse_size;
use anyhow::Context;
use clap::{Parser, Subcommand};

/// Flowgate: a WebAssembly plugin host for stream handlers.
///
/// Events on the command line are NDJSON, one event per line; the format is in docs/events.md.
#[derive(Debug, Parser)]
#[command(name = "flowgate", version, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log filter (tracing `EnvFilter` syntax), e.g. `debug` or `flowgate=debug`.
    #[arg(long, global = true, env = "FLOWGATE_LOG", default_value = "info")]
    log: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with plugins.
    #[command(subcommand)]
    Plugin(PluginCommand),
    /// Create, list and describe topics of the log.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Append NDJSON events to a topic; prints how many were acknowledged (durable).
    Produce(produce::Args),
    /// Print a topic's events as NDJSON.
    Consume(consume::Args),
    /// Run a pipeline: until SIGINT/SIGTERM, or to completion with --bounded.
    Run(run::Args),
    /// Check a pipeline file and its plugins; reports every problem with line and column.
    Validate(validate::Args),
    /// Make a running pipeline re-read its pipeline file and plugin files and apply the changes.
    Reload(admin::Args),
    /// Show a running pipeline's sources (a Kafka source's lag per partition), its stages and their
    /// plugin versions (live, rolled back, failed).
    Status(admin::Args),
    /// A live table of a running pipeline's stages, sources and sinks (rates, errors, lag, p99
    /// call time, version); q quits.
    Top(top::TopArgs),
    /// Print the events appended to a topic of a running pipeline, as NDJSON, while they come.
    Tap(admin::TapArgs),
    /// List a running pipeline's dead letters, or send them back to the stages that failed them.
    #[command(subcommand)]
    Dlq(admin::DlqCommand),
}

/// Where the log is, and how it syncs. Every command that touches the log takes these.
#[derive(Debug, clap::Args)]
struct LogArgs {
    /// The log's data directory.
    #[arg(long, env = "FLOWGATE_DATA_DIR", default_value = "flowgate-data")]
    data_dir: PathBuf,
    /// When appends are synced: always (each group commit), interval:<duration>, or never
    /// (throwaway data only).
    #[arg(long, default_value = "always")]
    sync: crate::log::SyncPolicy,
}

impl LogArgs {
    /// Opens the log to write: takes the data directory's lock.
    fn open(&self) -> anyhow::Result<crate::log::Log> {
        self.open_with(false)
    }

    /// Opens the log to read, without the lock, so it works while another process (such as
    /// `flowgate run`) owns the log.
    fn open_read_only(&self) -> anyhow::Result<crate::log::Log> {
        self.open_with(true)
    }

    fn open_with(&self, read_only: bool) -> anyhow::Result<crate::log::Log> {
        let options = crate::log::LogOptions {
            sync: self.sync,
            read_only,
        };
        crate::log::Log::open(&self.data_dir, options)
            .with_context(|| format!("opening the log in {}", self.data_dir.display()))
    }
}

#[derive(Debug, Subcommand)]
enum PluginCommand {
    /// Runs a plugin over NDJSON events and prints its output events as NDJSON.
    Test(plugin_test::Args),
    /// Shows a plugin's world, imports, exports, size and hash.
    Inspect(plugin_inspect::Args),
    /// Swaps a new plugin version into a stage of a running pipeline (rolled back if it fails).
    Deploy(admin::DeployArgs),
    /// Writes a new plugin project (sources, WIT, bindings, a sample input and its expected
    /// output) that builds and passes `flowgate plugin test` as written.
    New(plugin_project::NewArgs),
    /// Builds the plugin project in this folder into `build/<name>.wasm` (a component).
    Build(plugin_project::BuildArgs),
}

/// Options that set up the runtime and bound the plugin, shared by the plugin commands.
#[derive(Debug, clap::Args)]
struct RuntimeArgs {
    /// Memory cap of the plugin instance (e.g. 64MiB, 512KiB, 1048576).
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    memory: usize,
    /// Time limit of one call (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Most output events one input event may produce.
    #[arg(long, default_value_t = Limits::default().max_outputs_per_event)]
    max_outputs_per_event: usize,
    /// Compiled-code cache directory [default: $FLOWGATE_CACHE_DIR, else ~/.cache/flowgate].
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Compile without reading or writing the compiled-code cache.
    #[arg(long)]
    no_cache: bool,
}

impl RuntimeArgs {
    fn runtime(&self) -> anyhow::Result<Runtime> {
        let mut config = RuntimeConfig::default();
        if self.no_cache {
            config.cache_dir = None;
        } else if let Some(dir) = &self.cache_dir {
            config.cache_dir = Some(dir.clone());
        }
        config.max_memory_bytes = config.max_memory_bytes.max(self.memory);
        config.max_stage_instances = 4;
        Ok(Runtime::new(config)?)
    }

    fn limits(&self) -> Limits {
        Limits {
            memory_bytes: self.memory,
            call_timeout: self.timeout,
            max_outputs_per_event: self.max_outputs_per_event,
            ..Limits::default()
        }
    }
}

/// Parses `key=value`.
fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not key=value")),
    }
}

/// Parses the command line, runs the command, and returns the process exit code:
/// 0 on success, 1 when some events failed, 2 when the command could not run.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_new(&cli.log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let result = match cli.command {
        Command::Plugin(PluginCommand::Test(args)) => plugin_test::run(args),
        Command::Plugin(PluginCommand::Inspect(args)) => plugin_inspect::run(args),
        Command::Plugin(PluginCommand::Deploy(args)) => admin::deploy(args),
        Command::Plugin(PluginCommand::New(args)) => plugin_project::new(args),
        Command::Plugin(PluginCommand::Build(args)) => plugin_project::build(args),
        Command::Reload(args) => admin::reload(args),
        Command::Status(args) => admin::status(args),
        Command::Dlq(command) => admin::dlq(command),
        Command::Tap(args) => admin::tap(args),
        Command::Top(args) => top::top(args),
        Command::Topic(cmd) => topic::run(cmd),
        Command::Produce(args) => produce::run(args),
        Command::Consume(args) => consume::run(args),
        Command::Run(args) => run::run(args),
        Command::Validate(args) => validate::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_pairs_parse_or_explain() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100"), Ok(100));
        assert!(parse_size("lots").unwrap_err().contains("64MiB"));
        assert!(parse_size("3 parsecs").unwrap_err().contains("unit"));
        assert_eq!(parse_pair("a=b=c"), Ok(("a".into(), "b=c".into())));
        assert!(parse_pair("novalue").is_err());
    }
}
