//! `flowgate plugin new` and `flowgate plugin build`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::build::project::{self, Kind, Lang};

/// Arguments of `flowgate plugin new`.
#[derive(Debug, clap::Args)]
pub(crate) struct NewArgs {
    /// The plugin's name (lower-case letters, digits, dashes); also the folder's, unless --dir.
    name: String,
    /// The language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// What the plugin does: each kind is a working template with its sample input and
    /// expected output.
    #[arg(long, value_enum, default_value_t = Kind::Map)]
    kind: Kind,
    /// The folder to write (default: ./<name>).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rust: the path of the guest SDK (`guest-sdk/` of Flowgate's sources).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../guest-sdk"))]
    sdk: PathBuf,
}

/// Arguments of `flowgate plugin build`.
#[derive(Debug, clap::Args)]
pub(crate) struct BuildArgs {
    /// The project folder (default: this one).
    #[arg(long, default_value = ".")]
    dir: PathBuf,
}

pub(crate) fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(&args.name));
    project::new(&dir, &args.name, args.lang, args.kind, &args.sdk)?;
    writeln!(
        std::io::stdout(),
        "wrote {}: build it with `cd {} && flowgate plugin build`, then check it with `flowgate plugin test`",
        dir.display(),
        dir.display()
    )?;
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let out = project::build(&args.dir)?;
    writeln!(std::io::stdout(), "built {}", out.display())?;
    Ok(ExitCode::SUCCESS)
}
