//! Checks of the pipeline as a whole, made once every table is parsed: something to run, an
//! `[http]` section for HTTP sources, every topic read is written (or filled from outside), no
//! stage writes its own input, parallelism within the partitions, no cycle between stages,
//! valid topic names.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;

use super::span::Collector;
use super::types::{SinkConfig, SourceConfig, SourceKind, StageConfig, TopicSpec};
use crate::log::TopicConfig;

/// Named tables of a section: name → (span of the name, (span the checks point at, the
/// parsed table)). The second span is a source's `topic`, a stage's or a sink's `input`.
pub(super) type Named<T> = BTreeMap<String, (Range<usize>, (Range<usize>, T))>;

/// What the checks found out: the topics the pipeline uses, and the order of the stages.
pub(super) struct Graph {
    /// Topics declared and used (with the defaults).
    pub topics: BTreeMap<String, TopicSpec>,
    /// Stage names, each after the stages it reads from; none if they form a cycle.
    pub order: Option<Vec<String>>,
}

/// Checks the pipeline as a whole; `whole` is the span of the file, `http_section` whether it
/// has an `[http]` table (even one whose values were refused), `declared` its `[topics.*]`.
pub(super) fn validate(
    c: &mut Collector<'_>,
    whole: Range<usize>,
    http_section: bool,
    declared: BTreeMap<String, (Range<usize>, TopicSpec)>,
    sources: &Named<SourceConfig>,
    stages: &Named<StageConfig>,
    sinks: &Named<SinkConfig>,
) -> Graph {
    if sources.is_empty() && stages.is_empty() && sinks.is_empty() && c.problems.is_empty() {
        c.add(
            whole,
            "the pipeline has no sources, stages or sinks",
            Some("add at least a [stages.<name>] table; see docs/pipeline.md".into()),
        );
    }
    if !http_section
        && let Some((name, (span, _))) = sources
            .iter()
            .find(|(_, (_, (_, s)))| matches!(s.kind, SourceKind::Http))
    {
        c.add(
            span.clone(),
            format!("source `{name}` is of type http, but there is no [http] section"),
            Some("add [http] with listen = \"127.0.0.1:8080\"".into()),
        );
    }

    // The graph: who writes each topic, who reads it.
    let mut writers: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, (_, (_, s))) in sources {
        for t in s.written_topics() {
            writers
                .entry(t)
                .or_default()
                .push(format!("source `{name}`"));
        }
    }
    for (name, (_, (_, s))) in stages {
        for t in s.written_topics() {
            writers
                .entry(t)
                .or_default()
                .push(format!("stage `{name}`"));
        }
    }
    for (name, (_, (_, s))) in sinks {
        for t in s.written_topics() {
            writers.entry(t).or_default().push(format!("sink `{name}`"));
        }
    }
    let external = |t: &str| declared.get(t).is_some_and(|(_, s)| s.external);
    let mut readers: Vec<(&str, &str, Range<usize>)> = Vec::new();
    for (name, (_, (span, s))) in stages {
        readers.push((name, &s.input, span.clone()));
    }
    for (name, (_, (span, s))) in sinks {
        readers.push((name, &s.input, span.clone()));
    }
    for (reader, topic, span) in &readers {
        if !writers.contains_key(topic) && !external(topic) {
            c.add(
                span.clone(),
                format!("`{reader}` reads topic `{topic}`, which nothing in this pipeline writes"),
                Some(format!(
                    "write it from a source or stage, or declare [topics.{topic}] with external = true if it is filled before the run"
                )),
            );
        }
    }
    for (name, (span, (_, s))) in stages {
        if s.output.topics().contains(&s.input.as_str()) {
            c.add(
                span.clone(),
                format!("stage `{name}` writes its own input topic `{}`", s.input),
                Some("send its output to another topic".into()),
            );
        }
        if let Some(p) = s.parallelism {
            let partitions = declared
                .get(&s.input)
                .map_or(1, |(_, t)| t.config.partitions);
            if p == 0 || p > partitions {
                c.add(span.clone(), format!("stage `{name}`: parallelism {p} is not between 1 and the {partitions} partition(s) of `{}`", s.input), Some(format!("raise [topics.{}] partitions or lower parallelism", s.input)));
            }
        }
    }
    for (name, (span, (_, s))) in sinks {
        if s.written_topics().contains(&s.input.as_str()) {
            c.add(
                span.clone(),
                format!(
                    "sink `{name}` writes its own input topic `{}` (its dead-letter-topic)",
                    s.input
                ),
                Some("send its dead letters to another topic: dead-letter-topic = \"...\"".into()),
            );
        }
    }
    // Cycles between stages (through topics).
    let order = topo_order(c, stages);

    let mut topics: BTreeMap<String, TopicSpec> =
        declared.into_iter().map(|(k, (_, v))| (k, v)).collect();
    let used = writers
        .keys()
        .map(|t| t.to_string())
        .chain(readers.iter().map(|(_, t, _)| t.to_string()))
        .collect::<Vec<_>>();
    for t in used {
        if let Err(e) = crate::log::check_name("topic", &t) {
            c.add(0..0, e.to_string(), None);
        }
        topics.entry(t).or_insert_with(|| TopicSpec {
            config: TopicConfig::default(),
            external: false,
        });
    }

    Graph { topics, order }
}

/// Stage names with each after the stages whose output it reads; reports a cycle.
fn topo_order(c: &mut Collector<'_>, stages: &Named<StageConfig>) -> Option<Vec<String>> {
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::new();
    let feeds = |a: &StageConfig, b: &StageConfig| a.output.topics().contains(&b.input.as_str());
    while order.len() < stages.len() {
        let next = stages.iter().find(|(n, (_, (_, s)))| {
            !done.contains(n.as_str())
                && stages
                    .iter()
                    .all(|(m, (_, (_, o)))| m == *n || done.contains(m.as_str()) || !feeds(o, s))
        });
        match next {
            Some((n, _)) => {
                done.insert(n);
                order.push(n.clone());
            }
            None => {
                let left: Vec<&str> = stages
                    .keys()
                    .map(String::as_str)
                    .filter(|n| !done.contains(n))
                    .collect();
                let (span, _) = &stages[left[0]];
                c.add(
                    span.clone(),
                    format!("stages {} form a cycle through their topics", left.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")),
                    Some("a stage's output must not flow back into its own input; break the loop with another topic".into()),
                );
                return None;
            }
        }
    }
    Some(order)
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{BASE, Case, Files, STAGE, expect_each};

    fn case<'a>(name: &'a str, text: String, message: &str, help: Option<&'a str>) -> Case<'a> {
        (name, text, message.to_owned(), help)
    }

    /// A stage `name` of `p.wasm` from `input` to `output`.
    fn stage(name: &str, input: &str, output: &str) -> String {
        format!(
            "[stages.{name}]\nplugin = \"p.wasm\"\ninput = \"{input}\"\noutput = \"{output}\"\n"
        )
    }

    #[test]
    fn stages_come_after_the_stages_they_read_from() {
        let f = Files::new();
        let text = format!(
            "[sources.gen]\ntype = \"generator\"\ntopic = \"t0\"\n{}{}{}",
            stage("c", "t2", "t3"),
            stage("a", "t0", "t1"),
            stage("b", "t1", "t2"),
        );
        let order: Vec<String> = f.ok(&text).stages.into_iter().map(|s| s.name).collect();
        assert_eq!(order, ["a", "b", "c"]);
    }

    #[test]
    fn an_external_topic_may_be_read_without_a_writer() {
        let f = Files::new();
        let text = format!(
            "[topics.ext]\nexternal = true\n{}",
            stage("a", "ext", "out")
        );
        let c = f.ok(&text);
        assert!(c.topics["ext"].external);
        assert!(!c.topics["out"].external);
    }

    /// Every problem `validate` can report.
    #[test]
    fn each_problem_of_the_whole_pipeline_is_reported_with_what_to_do() {
        let f = Files::new();
        expect_each(
            &f,
            &[
                case(
                    "nothing to run",
                    "name = \"empty\"\n".into(),
                    "the pipeline has no sources, stages or sinks",
                    Some("add at least a [stages.<name>] table; see docs/pipeline.md"),
                ),
                case(
                    "an http source without [http]",
                    format!("{BASE}[sources.web]\ntype = \"http\"\ntopic = \"in\"\n"),
                    "source `web` is of type http, but there is no [http] section",
                    Some("add [http] with listen = \"127.0.0.1:8080\""),
                ),
                case(
                    "a topic read and never written",
                    format!("{BASE}[sinks.lost]\ntype = \"stdout\"\ninput = \"nowhere\"\n"),
                    "`lost` reads topic `nowhere`, which nothing in this pipeline writes",
                    Some(
                        "write it from a source or stage, or declare [topics.nowhere] with external = true if it is filled before the run",
                    ),
                ),
                case(
                    "a stage writing its own input",
                    format!("{STAGE}output = [\"out\", \"in\"]\n"),
                    "stage `a` writes its own input topic `in`",
                    Some("send its output to another topic"),
                ),
                case(
                    "parallelism above the partitions",
                    format!(
                        "[topics.in]\npartitions = 2\n{STAGE}output = \"out\"\nparallelism = 3\n"
                    ),
                    "stage `a`: parallelism 3 is not between 1 and the 2 partition(s) of `in`",
                    Some("raise [topics.in] partitions or lower parallelism"),
                ),
                case(
                    "parallelism 0",
                    format!("{STAGE}output = \"out\"\nparallelism = 0\n"),
                    "stage `a`: parallelism 0 is not between 1 and the 1 partition(s) of `in`",
                    Some("raise [topics.in] partitions or lower parallelism"),
                ),
                case(
                    "stages in a cycle",
                    format!(
                        "[sources.gen]\ntype = \"generator\"\ntopic = \"in\"\n{}{}{}",
                        stage("a", "in", "x"),
                        stage("b", "x", "y"),
                        format!("{}output = [\"z\", \"x\"]\n", &stage("c", "y", "")[..])
                            .replace("output = \"\"\n", ""),
                    ),
                    "stages `b`, `c` form a cycle through their topics",
                    Some(
                        "a stage's output must not flow back into its own input; break the loop with another topic",
                    ),
                ),
                case(
                    "a topic name that is not valid",
                    format!("{STAGE}output = \"a b\"\n"),
                    "topic name \"a b\" is not valid: use 1 to 200 letters, digits, '.', '_' or '-'",
                    None,
                ),
            ],
        );
    }
}
