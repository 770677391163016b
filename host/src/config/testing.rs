//! What the unit tests of the pipeline file share: a directory with the files a pipeline
//! names, and the problems of a text.

use std::path::{Path, PathBuf};

use super::{PipelineConfig, Problem, Problems};

/// A source, a stage and a sink, with no problem; a test appends keys to `[sinks.out]` or
/// adds tables.
pub(super) const BASE: &str = r#"
[sources.gen]
type = "generator"
topic = "in"

[stages.a]
plugin = "p.wasm"
input = "in"
output = "out"

[sinks.out]
type = "stdout"
input = "out"
"#;

/// A source and a stage without its output; a test appends the stage's keys.
pub(super) const STAGE: &str = r#"
[sources.gen]
type = "generator"
topic = "in"

[stages.a]
plugin = "p.wasm"
input = "in"
"#;

/// A temporary directory holding `p.wasm` and `events.ndjson`, where the pipeline file
/// `p.toml` is (it is never written: the text is parsed as if it were there).
pub(super) struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    /// The directory and its files.
    pub fn new() -> Files {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for f in ["p.wasm", "events.ndjson"] {
            std::fs::write(dir.path().join(f), b"").expect("a file in it");
        }
        Files { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pipeline file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.path().join("p.toml")
    }

    /// `text` parsed as `p.toml` of the directory.
    pub fn parse(&self, text: &str) -> Result<PipelineConfig, Problems> {
        PipelineConfig::parse(&self.path(), text)
    }

    /// `text` parsed, which must succeed.
    pub fn ok(&self, text: &str) -> PipelineConfig {
        self.parse(text)
            .unwrap_or_else(|e| panic!("{e}\nin:\n{text}"))
    }

    /// The problems of `text`, which must have some.
    pub fn problems(&self, text: &str) -> Vec<Problem> {
        match self.parse(text) {
            Ok(_) => panic!("no problem found in:\n{text}"),
            Err(e) => e.problems,
        }
    }
}

/// One case: a name, a pipeline text, and the message and help of its one problem.
pub(super) type Case<'a> = (&'a str, String, String, Option<&'a str>);

/// Checks that each case's text (parsed in `f`) has exactly one problem, with its message and
/// help; reports every case that does not.
pub(super) fn expect_each(f: &Files, cases: &[Case<'_>]) {
    let mut failed = Vec::new();
    for (name, text, message, help) in cases {
        let got = match f.parse(text) {
            Ok(_) => {
                failed.push(format!("{name}: no problem"));
                continue;
            }
            Err(e) => e.problems,
        };
        let want = (message.clone(), help.map(str::to_owned));
        let got: Vec<(String, Option<String>)> =
            got.into_iter().map(|p| (p.message, p.help)).collect();
        if got != [want.clone()] {
            failed.push(format!("{name}:\n  want {want:?}\n  got  {got:?}"));
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
