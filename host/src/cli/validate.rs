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
