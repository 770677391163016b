//! What an edit of a running pipeline does, computed from the two pipelines alone: which steps
//! stop, which start, which stages keep running (and may get a new plugin version). No I/O:
//! [`Running::apply`](super::Running::apply) executes a [`Plan`] and is the only caller.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use crate::config::{PipelineConfig, StageConfig};

/// A step of a pipeline. The order (sinks, sources, stages, then by name) is the order steps
/// are stopped in.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum StepId {
    /// A sink, by name.
    Sink(String),
    /// A source, by name.
    Source(String),
    /// A stage, by name.
    Stage(String),
}

impl StepId {
    /// `stage`, `source` or `sink`.
    pub fn kind(&self) -> &'static str {
        match self {
            StepId::Sink(_) => "sink",
            StepId::Source(_) => "source",
            StepId::Stage(_) => "stage",
        }
    }

    /// The step's name.
    pub fn name(&self) -> &str {
        match self {
            StepId::Sink(n) | StepId::Source(n) | StepId::Stage(n) => n,
        }
    }
}

impl fmt::Display for StepId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind(), self.name())
    }
}

/// An edit, step by step.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Steps that stop: removed, or changed (a stage apart from its plugin file). In stop order.
    pub stop: Vec<StepId>,
    /// Stages that keep running, in pipeline order: each gets a deploy if its plugin file is
    /// not the live version.
    pub keep: Vec<String>,
    /// Steps that start: added, or changed and restarted from their checkpoint. Stages in
    /// pipeline order, then sources, then sinks (by name).
    pub start: Vec<StepId>,
}

impl Plan {
    /// The stages that start (their plugins are loaded and tried before anything stops).
    pub fn starting_stages(&self) -> impl Iterator<Item = &str> {
        self.start.iter().filter_map(|s| match s {
            StepId::Stage(n) => Some(n.as_str()),
            _ => None,
        })
    }
}

/// An edit that cannot be applied at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A bounded run takes no edits.
    #[error(
        "a bounded run does not take pipeline edits (it ends when its inputs do); edit and run it again"
    )]
    Bounded,
    /// The new pipeline has another name: another pipeline, with other checkpoints.
    #[error(
        "the pipeline's name changed ({old} → {new}): that is another pipeline; restart to run it"
    )]
    Renamed {
        /// The running pipeline's name.
        old: String,
        /// The new file's.
        new: String,
    },
}

/// A stage's settings apart from its plugin file (a change of those restarts the stage; a new
/// plugin alone is swapped in).
fn without_plugin(s: &StageConfig) -> StageConfig {
    StageConfig {
        plugin: PathBuf::new(),
        plugin_at: (0, 0),
        ..s.clone()
    }
}

/// What applying `new` over `old` (none: nothing runs yet) does. A step whose settings are
/// equal keeps running; a stage whose only change is its plugin file keeps running (and gets a
/// deploy); anything else stops and starts again. `bounded`: the run is bounded, and takes no
/// edit once started.
pub fn plan(
    old: Option<&PipelineConfig>,
    new: &PipelineConfig,
    bounded: bool,
) -> Result<Plan, PlanError> {
    let Some(old) = old else {
        return Ok(Plan {
            stop: Vec::new(),
            keep: Vec::new(),
            start: all_steps(new),
        });
    };
    if bounded {
        return Err(PlanError::Bounded);
    }
    if old.name != new.name {
        return Err(PlanError::Renamed {
            old: old.name.clone(),
            new: new.name.clone(),
        });
    }
    let old_stages: BTreeMap<&str, &StageConfig> =
        old.stages.iter().map(|s| (s.name.as_str(), s)).collect();
    let stage_kept = |s: &StageConfig| {
        old_stages
            .get(s.name.as_str())
            .is_some_and(|o| without_plugin(o) == without_plugin(s))
    };
    let kept = |id: &StepId| match id {
        StepId::Stage(n) => new.stages.iter().any(|s| &s.name == n && stage_kept(s)),
        StepId::Source(n) => {
            new.sources.contains_key(n) && new.sources.get(n) == old.sources.get(n)
        }
        StepId::Sink(n) => new.sinks.contains_key(n) && new.sinks.get(n) == old.sinks.get(n),
    };
    let mut stop: Vec<StepId> = all_steps(old).into_iter().filter(|s| !kept(s)).collect();
    stop.sort();
    let keep = new
        .stages
        .iter()
        .filter(|s| stage_kept(s))
        .map(|s| s.name.clone())
        .collect();
    let start = all_steps(new).into_iter().filter(|s| !kept(s)).collect();
    Ok(Plan { stop, keep, start })
}

/// Every step of `config`: stages in pipeline order, then sources, then sinks.
fn all_steps(config: &PipelineConfig) -> Vec<StepId> {
    config
        .stages
        .iter()
        .map(|s| StepId::Stage(s.name.clone()))
        .chain(config.sources.keys().map(|n| StepId::Source(n.clone())))
        .chain(config.sinks.keys().map(|n| StepId::Sink(n.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipeline file in a directory that holds the plugin files `a.wasm` and `b.wasm` (the
    /// parser checks they exist; the plan never reads them).
    struct Files(tempfile::TempDir);

    impl Files {
        fn new() -> Files {
            let dir = tempfile::tempdir().expect("temp dir");
            for f in ["a.wasm", "b.wasm", "events.ndjson"] {
                std::fs::write(dir.path().join(f), b"").expect("write");
            }
            Files(dir)
        }

        fn parse(&self, text: &str) -> PipelineConfig {
            let path = self.0.path().join("pipeline.toml");
            PipelineConfig::parse(&path, text).unwrap_or_else(|e| panic!("{e}"))
        }
    }

    /// Source `in` → stage `up` (plugin `a.wasm`) → sink `out`, with `extra` appended.
    fn pipeline(files: &Files, plugin: &str, stage_extra: &str, extra: &str) -> PipelineConfig {
        files.parse(&format!(
            r#"
name = "p"

[sources.in]
type = "file"
path = "events.ndjson"
topic = "raw"

[stages.up]
plugin = "{plugin}"
input = "raw"
output = "done"
{stage_extra}

[sinks.out]
type = "stdout"
input = "done"
{extra}
"#
        ))
    }

    fn stage(n: &str) -> StepId {
        StepId::Stage(n.into())
    }

    #[test]
    fn a_first_apply_starts_every_step() {
        let f = Files::new();
        let new = pipeline(&f, "a.wasm", "", "");
        let p = plan(None, &new, true).expect("a bounded run starts");
        assert_eq!(
            p,
            Plan {
                stop: vec![],
                keep: vec![],
                start: vec![
                    stage("up"),
                    StepId::Source("in".into()),
                    StepId::Sink("out".into())
                ],
            }
        );
    }

    #[test]
    fn an_unchanged_pipeline_keeps_everything() {
        let f = Files::new();
        let old = pipeline(&f, "a.wasm", "", "");
        let p = plan(Some(&old), &old.clone(), false).expect("plan");
        assert_eq!(
            p,
            Plan {
                stop: vec![],
                keep: vec!["up".into()],
                start: vec![],
            }
        );
    }

    #[test]
    fn a_plugin_only_change_keeps_the_stage_for_a_deploy() {
        let f = Files::new();
        let old = pipeline(&f, "a.wasm", "", "");
        let new = pipeline(&f, "b.wasm", "", "");
        let p = plan(Some(&old), &new, false).expect("plan");
        assert!(p.stop.is_empty(), "{p:?}");
        assert!(p.start.is_empty(), "{p:?}");
        assert_eq!(p.keep, ["up"]);
    }

    #[test]
    fn a_rewired_stage_restarts_and_the_rest_keeps_running() {
        let f = Files::new();
        let old = pipeline(&f, "a.wasm", "", "");
        let new = pipeline(&f, "a.wasm", "batch-size = 7", "");
        let p = plan(Some(&old), &new, false).expect("plan");
        assert_eq!(p.stop, [stage("up")]);
        assert_eq!(p.start, [stage("up")]);
        assert!(p.keep.is_empty());
        assert_eq!(p.starting_stages().collect::<Vec<_>>(), ["up"]);
    }

    #[test]
    fn an_added_step_starts_alone() {
        let f = Files::new();
        let old = pipeline(&f, "a.wasm", "", "");
        let new = pipeline(
            &f,
            "a.wasm",
            "",
            "[sinks.copy]\ntype = \"stdout\"\ninput = \"raw\"\n",
        );
        let p = plan(Some(&old), &new, false).expect("plan");
        assert!(p.stop.is_empty(), "{p:?}");
        assert_eq!(p.start, [StepId::Sink("copy".into())]);
        assert_eq!(p.keep, ["up"]);
    }

    #[test]
    fn a_removed_step_stops_alone() {
        let f = Files::new();
        let old = pipeline(
            &f,
            "a.wasm",
            "",
            "[sinks.copy]\ntype = \"stdout\"\ninput = \"raw\"\n",
        );
        let new = pipeline(&f, "a.wasm", "", "");
        let p = plan(Some(&old), &new, false).expect("plan");
        assert_eq!(p.stop, [StepId::Sink("copy".into())]);
        assert!(p.start.is_empty(), "{p:?}");
        assert_eq!(p.keep, ["up"]);
    }

    #[test]
    fn steps_stop_in_kind_then_name_order() {
        let f = Files::new();
        let old = pipeline(&f, "a.wasm", "", "");
        let empty = PipelineConfig {
            stages: Vec::new(),
            sources: BTreeMap::new(),
            sinks: BTreeMap::new(),
            ..old.clone()
        };
        let p = plan(Some(&old), &empty, false).expect("plan");
        assert_eq!(
            p.stop,
            [
                StepId::Sink("out".into()),
                StepId::Source("in".into()),
                stage("up")
            ]
        );
        assert_eq!(
            p.stop.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["sink `out`", "source `in`", "stage `up`"]
        );
    }

    #[test]
    fn a_renamed_pipeline_is_refused() {
        let f = Files::new();
        let old = pipeline(&f, "a.wasm", "", "");
        let mut new = old.clone();
        new.name = "q".into();
        let e = plan(Some(&old), &new, false).expect_err("another pipeline");
        assert_eq!(
            e,
            PlanError::Renamed {
                old: "p".into(),
                new: "q".into()
            }
        );
        assert!(e.to_string().contains("p → q"), "{e}");
    }

    #[test]
    fn a_bounded_run_takes_no_edit() {
        let f = Files::new();
        let old = pipeline(&f, "a.wasm", "", "");
        let e = plan(Some(&old), &old.clone(), true).expect_err("bounded");
        assert_eq!(e, PlanError::Bounded);
        assert!(
            e.to_string()
                .starts_with("a bounded run does not take pipeline edits")
        );
    }
}
