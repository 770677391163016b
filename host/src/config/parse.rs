//! Parsing: the TOML walked table by table, each table read through its serde shape (`keys`)
//! into the domain types (`types`), every problem reported where it is (`span`); then the
//! checks of the whole (`graph`).

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::graph::validate;
use super::keys::{
    Dur, FileSinkFile, FileSourceFile, GeneratorFile, HttpFile, KafkaSinkFile, KafkaSourceFile,
    LimitsFile, LogFile, MongoSinkFile, OneOrMany, PostgresCdcFile, PostgresSinkFile, RetryFile,
    RouteFile, SECTIONS, SINK_KINDS, SOURCE_KINDS, SinkFile, SourceFile, StageFile, StdoutSinkFile,
    TopFile, TopicFile, WindowFile, fields, top_keys,
};
use super::span::{Collector, Problems, line_col};
use super::types::{
    HttpConfig, Output, PipelineConfig, RetryConfig, SinkConfig, SinkKind, SourceConfig,
    SourceKind, StageConfig, TopicSpec,
};
use super::{db, kafka};
use crate::event::RecordLimits;
use crate::log::{SyncPolicy, TopicConfig};
use crate::runtime::Limits;
use crate::state::{WindowSpec, Windowing};

/// Why [`PipelineConfig::load`] returned no pipeline.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineFileError {
    /// The file could not be read. The message names the I/O error itself (it is not a
    /// source, so a caller printing the sources does not print it twice).
    #[error(
        "cannot read pipeline file {}: {error}; give the path of a TOML file (see docs/pipeline.md)",
        path.display()
    )]
    Read {
        /// The file.
        path: PathBuf,
        /// Why it could not be read.
        error: std::io::Error,
    },
    /// The file was read and has problems.
    #[error(transparent)]
    Problems(#[from] Problems),
}

impl PipelineConfig {
    /// Reads and checks a pipeline file. Relative paths in it are relative to its directory.
    pub fn load(path: &Path) -> Result<PipelineConfig, PipelineFileError> {
        let text = std::fs::read_to_string(path).map_err(|error| PipelineFileError::Read {
            path: path.to_path_buf(),
            error,
        })?;
        Ok(PipelineConfig::parse(path, &text)?)
    }

    /// Parses and checks pipeline text; `path` names it in problems and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<PipelineConfig, Problems> {
        let mut c = Collector::new(text);
        let config = parse_into(&mut c, path, text);
        if c.problems.is_empty()
            && let Some(config) = config
        {
            return Ok(config);
        }
        c.problems.sort_by_key(|(at, _)| *at);
        Err(Problems {
            path: path.to_path_buf(),
            problems: c.problems.into_iter().map(|(_, p)| p).collect(),
        })
    }
}

fn parse_into(c: &mut Collector<'_>, path: &Path, text: &str) -> Option<PipelineConfig> {
    let root = match DeTable::parse(text) {
        Ok(r) => r,
        Err(e) => {
            c.serde(0..0, "not valid TOML", e);
            return None;
        }
    };
    let whole = root.span();
    let root = root.into_inner();
    c.keys(&root, &top_keys(), "the pipeline file");
    let base = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };

    // Top-level scalars: deserialize the root without its sections.
    let mut top_only = root.clone();
    for s in SECTIONS {
        top_only.remove(*s);
    }
    let top: Option<TopFile> = c.section(
        &Spanned::new(whole.clone(), DeValue::Table(top_only)),
        "pipeline",
    );
    let name = top
        .as_ref()
        .and_then(|t| t.name.clone())
        .unwrap_or_else(|| {
            path.file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "pipeline".into())
        });
    if let Err(e) = crate::log::check_name("pipeline", &name) {
        c.add(
            0..0,
            e.to_string(),
            Some("set name = \"...\" at the top".into()),
        );
    }

    let mut sync = SyncPolicy::Always;
    let mut kafka_log = None;
    if let Some(v) = root.get("log")
        && as_table(c, v, "log").is_some()
    {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, fields::<LogFile>(), "[log]");
        }
        if let Some(mut l) = c.section::<LogFile>(v, "[log]") {
            if let Some(s) = l.sync.take() {
                match s.get_ref().parse() {
                    Ok(p) => sync = p,
                    Err(e) => c.add(s.span(), e, None),
                }
            }
            kafka_log = kafka::log(c, v.span(), l);
        }
    }

    let mut limits = RecordLimits::default();
    if let Some(v) = root.get("limits")
        && as_table(c, v, "limits").is_some()
    {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, fields::<LimitsFile>(), "[limits]");
        }
        if let Some(l) = c.section::<LimitsFile>(v, "[limits]") {
            limits = l.over(limits);
        }
    }

    let mut http = None;
    // Whether the file has an [http] table, even one whose values were refused (each problem
    // is reported once, where it is).
    let mut http_section = false;
    if let Some(v) = root.get("http")
        && as_table(c, v, "http").is_some()
    {
        http_section = true;
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, fields::<HttpFile>(), "[http]");
        }
        if let Some(h) = c.section::<HttpFile>(v, "[http]") {
            let max_inflight = match h.max_inflight {
                None => 64 << 20,
                Some(m) => {
                    let n = m.get_ref().0;
                    if !(1..=tokio::sync::Semaphore::MAX_PERMITS).contains(&n) {
                        c.add(
                            m.span(),
                            format!(
                                "[http] max-inflight = {n} bytes is out of range: it must be from 1 to {} bytes",
                                tokio::sync::Semaphore::MAX_PERMITS
                            ),
                            Some("write e.g. max-inflight = \"64MiB\"".into()),
                        );
                    }
                    n
                }
            };
            http = Some(HttpConfig {
                listen: h.listen,
                token_env: h.token_env,
                admin_token_env: h.admin_token_env,
                ingest_token_env: h.ingest_token_env,
                admin: h.admin.unwrap_or(true),
                max_body: h.max_body.map_or(8 << 20, |s| s.0),
                max_inflight,
                max_lag: h.max_lag.unwrap_or(1_000_000),
            });
        }
    }

    let declared = named(c, &root, "topics", |c, _, what, v| {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, fields::<TopicFile>(), what);
        }
        let t: TopicFile = c.section(v, what)?;
        let d = TopicConfig::default();
        Some(TopicSpec {
            config: TopicConfig {
                partitions: t.partitions.unwrap_or(d.partitions),
                segment_bytes: t.segment_bytes.map_or(d.segment_bytes, |s| s.0 as u64),
                segment_age: t.segment_age.map(|d| d.0).or(d.segment_age),
                retention_bytes: t.retention_bytes.map(|s| s.0 as u64),
                retention_age: t.retention_age.map(|d| d.0).or(d.retention_age),
                index_interval_bytes: d.index_interval_bytes,
                compacted: false,
            },
            external: t.external,
        })
    });

    let sources = named(c, &root, "sources", |c, source, what, v| {
        c.kind_keys(v, what, fields::<SourceFile>(), SOURCE_KINDS)?;
        let s: SourceFile = c.section(v, what)?;
        let kind = match s.kind.get_ref().as_str() {
            "file" => {
                let f: FileSourceFile = c.section(v, what)?;
                let (p, path) = file_path(c, v, what, f.path.as_ref(), "events.ndjson", &resolve)?;
                if !path.is_file() {
                    c.add(
                        p.span(),
                        format!("source file {} does not exist", path.display()),
                        Some("paths are relative to the pipeline file's directory".into()),
                    );
                }
                SourceKind::File { path }
            }
            "stdin" => SourceKind::Stdin,
            "generator" => {
                let g: GeneratorFile = c.section(v, what)?;
                SourceKind::Generator {
                    count: g.count,
                    rate: g.rate.filter(|r| *r > 0),
                    size: g.size.map_or(64, |s| s.0),
                }
            }
            "kafka" => {
                let k: KafkaSourceFile = c.section(v, what)?;
                SourceKind::Kafka(kafka::source(c, what, v.span(), &name, source, k))
            }
            "postgres-cdc" => {
                let p: PostgresCdcFile = c.section(v, what)?;
                SourceKind::PostgresCdc(db::postgres_cdc(c, what, v.span(), &name, source, p))
            }
            _ => SourceKind::Http,
        };
        Some((
            s.topic.span(),
            SourceConfig {
                name: String::new(),
                topic: s.topic.into_inner(),
                kind,
            },
        ))
    });

    let stages = named(c, &root, "stages", |c, _, what, v| {
        if let DeValue::Table(t) = v.get_ref() {
            c.keys(t, fields::<StageFile>(), what);
            for (key, keys, sub) in [
                ("route", fields::<RouteFile>(), "route"),
                ("retry", fields::<RetryFile>(), "retry"),
                ("window", fields::<WindowFile>(), "window"),
            ] {
                if let Some(s) = t.get(key)
                    && let DeValue::Table(st) = s.get_ref()
                {
                    c.keys(st, keys, &format!("{what} {sub}"));
                }
            }
        }
        // Checked before the typed pass, so that a bad value elsewhere does not hide it.
        if let DeValue::Table(t) = v.get_ref()
            && let Some(p) = t.get("plugin")
            && let DeValue::String(name) = p.get_ref()
        {
            let plugin = resolve(name);
            if !plugin.is_file() {
                c.add(
                    p.span(),
                    format!("plugin file {} does not exist", plugin.display()),
                    Some("build it (cd plugins && cargo build --release) or fix the path; paths are relative to the pipeline file".into()),
                );
            }
        }
        let s: StageFile = c.section(v, what)?;
        stage(c, what, v.span(), s, limits, &resolve)
    });

    let sinks = named(c, &root, "sinks", |c, _, what, v| {
        c.kind_keys(v, what, fields::<SinkFile>(), SINK_KINDS)?;
        let s: SinkFile = c.section(v, what)?;
        let (kind, start) = match s.kind.get_ref().as_str() {
            "file" => {
                let f: FileSinkFile = c.section(v, what)?;
                let (_, path) = file_path(c, v, what, f.path.as_ref(), "out.ndjson", &resolve)?;
                (SinkKind::File { path }, f.start)
            }
            "kafka" => {
                let k: KafkaSinkFile = c.section(v, what)?;
                let start = k.start;
                (SinkKind::Kafka(kafka::sink(c, what, v.span(), k)), start)
            }
            "postgres" => {
                let p: PostgresSinkFile = c.section(v, what)?;
                let start = p.start;
                (
                    SinkKind::Postgres(db::postgres_sink(c, what, v.span(), p)),
                    start,
                )
            }
            "mongodb" => {
                let m: MongoSinkFile = c.section(v, what)?;
                let start = m.start;
                (SinkKind::Mongo(db::mongo_sink(c, what, v.span(), m)), start)
            }
            _ => {
                let o: StdoutSinkFile = c.section(v, what)?;
                (SinkKind::Stdout, o.start)
            }
        };
        Some((
            s.input.span(),
            SinkConfig {
                name: String::new(),
                input: s.input.into_inner(),
                kind,
                start,
            },
        ))
    });

    let graph = validate(c, whole, http_section, declared, &sources, &stages, &sinks);

    let top = top?;
    let order = graph.order?;
    let mut stage_map: BTreeMap<String, StageConfig> = stages
        .into_iter()
        .map(|(k, (_, (_, mut s)))| {
            s.name = k.clone();
            (k, s)
        })
        .collect();
    Some(PipelineConfig {
        path: path.to_path_buf(),
        name,
        delivery: top.delivery,
        commit_interval: top
            .commit_interval
            .map_or(Duration::from_millis(500), |d| d.0),
        sync,
        kafka_log,
        http,
        limits,
        topics: graph.topics,
        sources: sources
            .into_iter()
            .map(|(k, (_, (_, mut s)))| {
                s.name = k.clone();
                (k, s)
            })
            .collect(),
        stages: order
            .into_iter()
            .filter_map(|n| stage_map.remove(&n))
            .collect(),
        sinks: sinks
            .into_iter()
            .map(|(k, (_, (_, mut s)))| {
                s.name = k.clone();
                (k, s)
            })
            .collect(),
    })
}

fn as_table<'a, 'i>(
    c: &mut Collector<'_>,
    v: &'a Spanned<DeValue<'i>>,
    what: &str,
) -> Option<&'a DeTable<'i>> {
    match v.get_ref() {
        DeValue::Table(t) => Some(t),
        _ => {
            c.add(
                v.span(),
                format!("{what} must be a table"),
                Some(format!("write it as [{what}]")),
            );
            None
        }
    }
}

/// A section of named tables (`[stages.parse]`), each checked by `f` (given its name and its
/// name as problems write it, `[stages.parse]`).
fn named<'i, T>(
    c: &mut Collector<'_>,
    root: &DeTable<'i>,
    section: &str,
    mut f: impl FnMut(&mut Collector<'_>, &str, &str, &Spanned<DeValue<'i>>) -> Option<T>,
) -> BTreeMap<String, (Range<usize>, T)> {
    let mut out = BTreeMap::new();
    let Some(v) = root.get(section) else {
        return out;
    };
    let Some(t) = as_table(c, v, section) else {
        return out;
    };
    for (k, v) in t {
        let name = k.get_ref().to_string();
        if let Err(e) = crate::log::check_name(section.trim_end_matches('s'), &name) {
            c.add(k.span(), e.to_string(), None);
            continue;
        }
        let what = format!("[{section}.{name}]");
        if as_table(c, v, &what).is_none() {
            continue;
        }
        if let Some(x) = f(c, &name, &what, v) {
            out.insert(name, (k.span(), x));
        }
    }
    out
}

fn stage(
    c: &mut Collector<'_>,
    what: &str,
    span: Range<usize>,
    s: StageFile,
    limits: RecordLimits,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Option<(Range<usize>, StageConfig)> {
    let plugin = resolve(s.plugin.get_ref());
    let record_limits = LimitsFile {
        max_key_bytes: s.max_key_bytes,
        max_value_bytes: s.max_value_bytes,
        max_headers: s.max_headers,
        max_header_bytes: s.max_header_bytes,
    }
    .over(limits);
    let output = match (s.output, s.route) {
        (Some(o), None) => match o.into_inner() {
            OneOrMany::One(t) => Output::Topics(vec![t]),
            OneOrMany::Many(v) if v.is_empty() => {
                c.add(
                    span.clone(),
                    format!("{what}: `output` is an empty list"),
                    Some("name at least one topic".into()),
                );
                return None;
            }
            OneOrMany::Many(v) => Output::Topics(v),
        },
        (None, Some(r)) => {
            let r = r.into_inner();
            Output::Route {
                header: r.header,
                topics: r.topics,
                default: r.default,
            }
        }
        (Some(o), Some(_)) => {
            c.add(o.span(), format!("{what} has both `output` and `route`"), Some("keep one: output = \"topic\" (or a list, for fan-out), or route = { header, topics, default }".into()));
            return None;
        }
        (None, None) => {
            c.add(
                span.clone(),
                format!("{what} has no `output`"),
                Some("add output = \"<topic>\" (a list fans out), or a [route] by header".into()),
            );
            return None;
        }
    };
    let batch_size = s.batch_size.as_ref().map_or(1024, |b| *b.get_ref());
    if batch_size == 0 || batch_size > 1 << 20 {
        let at = s.batch_size.as_ref().map_or(span.clone(), |b| b.span());
        c.add(
            at,
            format!("{what}: batch-size {batch_size} is not between 1 and 1048576"),
            None,
        );
    }
    let d = Limits::default();
    let limits = Limits {
        memory_bytes: s.memory.map_or(d.memory_bytes, |m| m.0),
        call_timeout: s.timeout.map_or(d.call_timeout, |t| t.0),
        max_outputs_per_event: s.max_outputs_per_event.unwrap_or(d.max_outputs_per_event),
        max_output_bytes: s.max_output_bytes.map_or(d.max_output_bytes, |b| b.0),
        log_bytes_per_second: s.max_log_rate.map_or(d.log_bytes_per_second, |b| b.0),
        log_burst_bytes: s.max_log_burst.map_or(d.log_burst_bytes, |b| b.0),
        ..d
    };
    let retry = s.retry.map_or(
        RetryConfig {
            attempts: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
        },
        |r| RetryConfig {
            attempts: r.attempts.unwrap_or(5).max(1),
            backoff: r.backoff.map_or(Duration::from_millis(100), |d| d.0),
            max_backoff: r.max_backoff.map_or(Duration::from_secs(10), |d| d.0),
        },
    );
    let dead_letter_topic = s
        .dead_letter_topic
        .map_or_else(|| "dead-letters".to_owned(), Spanned::into_inner);
    let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    let window = match s.window {
        None => None,
        Some(w) => {
            let at = w.span();
            let w = w.into_inner();
            let positive = |c: &mut Collector<'_>, name: &str, d: Option<Dur>| match d {
                Some(d) if d.0 >= Duration::from_millis(1) => Some(ms(d.0)),
                Some(_) => {
                    c.add(
                        at.clone(),
                        format!("{what}: window `{name}` must be at least 1ms"),
                        None,
                    );
                    None
                }
                None => {
                    c.add(
                        at.clone(),
                        format!("{what}: a {} window needs `{name}`", w.kind),
                        Some(format!("add {name} = \"10s\" to the window table")),
                    );
                    None
                }
            };
            let spec = match w.kind.as_str() {
                "tumbling" => positive(c, "size", w.size).map(|size| WindowSpec::Tumbling { size }),
                "hopping" | "sliding" => {
                    match (positive(c, "size", w.size), positive(c, "slide", w.slide)) {
                        (Some(size), Some(slide)) if slide <= size => {
                            Some(WindowSpec::Hopping { size, slide })
                        }
                        (Some(size), Some(slide)) => {
                            c.add(at.clone(), format!("{what}: window slide ({slide} ms) is longer than its size ({size} ms)"), Some("events between windows would belong to none; use a slide no longer than the size".into()));
                            None
                        }
                        _ => None,
                    }
                }
                "session" => positive(c, "gap", w.gap).map(|gap| WindowSpec::Session { gap }),
                other => {
                    c.add(
                        at.clone(),
                        format!("{what}: unknown window kind `{other}`"),
                        Some("write kind = \"tumbling\", \"hopping\" or \"session\"".into()),
                    );
                    None
                }
            };
            Some(Windowing {
                spec: spec?,
                out_of_orderness: s.out_of_orderness.as_ref().map_or(0, |d| ms(d.0)),
                allowed_lateness: s.allowed_lateness.as_ref().map_or(0, |d| ms(d.0)),
            })
        }
    };
    if window.is_none()
        && (s.out_of_orderness.is_some() || s.allowed_lateness.is_some() || s.late_output.is_some())
    {
        c.add(
            span.clone(),
            format!("{what}: out-of-orderness, allowed-lateness and late-output apply to windows, and the stage has no `window`"),
            Some("add window = { kind = \"tumbling\", size = \"1m\" } for an aggregator plugin, or remove them".into()),
        );
    }
    Some((
        s.input.span(),
        StageConfig {
            name: String::new(),
            plugin,
            plugin_at: line_col(c.text, s.plugin.span().start),
            input: s.input.into_inner(),
            output,
            mode: s.mode,
            batch_size: batch_size as usize,
            linger: s.linger.map_or(Duration::from_millis(5), |d| d.0),
            parallelism: s.parallelism.map(Spanned::into_inner),
            limits,
            config: s
                .config
                .into_iter()
                .map(|(k, v)| (k, v.into_string()))
                .collect(),
            on_error: s.on_error,
            retry,
            dead_letter_topic,
            max_traps_per_minute: s.max_traps_per_minute.unwrap_or(10),
            start: s.start,
            state: s.state || window.is_some(),
            max_state_bytes: s.max_state_bytes.map_or(256 << 20, |b| b.0),
            record_limits,
            window,
            late_output: s.late_output,
        },
    ))
}

/// The `path` of a file source or sink, resolved; reports it missing.
fn file_path<'p>(
    c: &mut Collector<'_>,
    v: &Spanned<DeValue<'_>>,
    what: &str,
    path: Option<&'p Spanned<String>>,
    example: &str,
    resolve: &dyn Fn(&str) -> PathBuf,
) -> Option<(&'p Spanned<String>, PathBuf)> {
    let Some(p) = path else {
        c.add(
            v.span(),
            format!("{what} (type file) has no `path`"),
            Some(format!("add path = \"{example}\"")),
        );
        return None;
    };
    Some((p, resolve(p.get_ref())))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::types::{Delivery, Output, SinkKind, SourceKind, Start};
    use crate::config::testing::{BASE, Case, Files, STAGE, expect_each};

    fn case<'a>(name: &'a str, text: &str, message: &str, help: Option<&'a str>) -> Case<'a> {
        (name, text.to_owned(), message.to_owned(), help)
    }

    #[test]
    fn a_file_with_a_source_a_stage_and_a_sink_parses_with_the_defaults() {
        let f = Files::new();
        let c = f.ok(BASE);
        assert_eq!(c.name, "p");
        assert_eq!(c.delivery, Delivery::AtLeastOnce);
        assert_eq!(c.commit_interval, Duration::from_millis(500));
        assert!(c.http.is_none());
        assert_eq!(
            c.sources["gen"].kind,
            SourceKind::Generator {
                count: None,
                rate: None,
                size: 64
            }
        );
        let a = &c.stages[0];
        assert_eq!(a.name, "a");
        assert_eq!(a.plugin, f.dir().join("p.wasm"));
        assert_eq!(a.output, Output::Topics(vec!["out".into()]));
        assert_eq!(a.batch_size, 1024);
        assert_eq!(a.dead_letter_topic, "dead-letters");
        assert_eq!(c.sinks["out"].kind, SinkKind::Stdout);
        assert_eq!(c.sinks["out"].start, Start::Earliest);
        let topics: Vec<&str> = c.topics.keys().map(String::as_str).collect();
        assert_eq!(topics, ["dead-letters", "in", "out"]);
    }

    #[test]
    fn keys_of_each_kind_of_source_and_sink_are_read() {
        let f = Files::new();
        let c = f.ok(r#"
[sources.file]
type = "file"
topic = "a"
path = "events.ndjson"

[sources.gen]
type = "generator"
topic = "b"
count = 10
rate = 5
size = "1KiB"

[sinks.file]
type = "file"
input = "a"
path = "out.ndjson"
start = "latest"

[sinks.out]
type = "stdout"
input = "b"
start = "latest"
"#);
        assert_eq!(
            c.sources["file"].kind,
            SourceKind::File {
                path: f.dir().join("events.ndjson")
            }
        );
        assert_eq!(
            c.sources["gen"].kind,
            SourceKind::Generator {
                count: Some(10),
                rate: Some(5),
                size: 1024
            }
        );
        assert_eq!(
            c.sinks["file"].kind,
            SinkKind::File {
                path: f.dir().join("out.ndjson")
            }
        );
        assert_eq!(c.sinks["file"].start, Start::Latest);
        assert_eq!(c.sinks["out"].start, Start::Latest);
    }

    #[test]
    fn problems_are_reported_in_file_order_with_line_and_column() {
        let f = Files::new();
        let text = format!("naem = \"x\"\n{STAGE}ouput = \"out\"\n");
        let p: Vec<String> = f.problems(&text).iter().map(ToString::to_string).collect();
        assert_eq!(
            p,
            [
                "1:1: unknown key `naem` in the pipeline file\n    help: did you mean `name`?",
                "7:1: [stages.a] has no `output`\n    help: add output = \"<topic>\" (a list fans out), or a [route] by header",
                "10:1: unknown key `ouput` in [stages.a]\n    help: did you mean `output`?",
            ]
        );
    }

    #[test]
    fn load_says_which_file_it_cannot_read_or_what_is_wrong_in_it() {
        use std::error::Error;

        use super::PipelineFileError;
        use crate::config::PipelineConfig;

        let f = Files::new();
        let missing = f.dir().join("missing.toml");
        let e = PipelineConfig::load(&missing).expect_err("no such file");
        assert!(matches!(e, PipelineFileError::Read { .. }), "{e:?}");
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "cannot read pipeline file {}: ",
                missing.display()
            )) && text.ends_with("; give the path of a TOML file (see docs/pipeline.md)"),
            "{text}"
        );
        // The I/O error is in the message, so it is not a source as well.
        assert!(e.source().is_none());

        std::fs::write(f.path(), "naem = 1\n").expect("the pipeline file");
        let e = PipelineConfig::load(&f.path()).expect_err("a problem");
        let PipelineFileError::Problems(problems) = &e else {
            panic!("{e:?}");
        };
        assert_eq!(e.to_string(), problems.to_string());
        assert!(e.to_string().contains("has 1 problem"), "{e}");
    }

    /// Every problem parsing can report (the checks of the whole pipeline are in `graph`).
    #[test]
    fn each_problem_of_a_table_is_reported_with_what_to_do() {
        let f = Files::new();
        let dir = f.dir().display();
        let with = |extra: &str| format!("{BASE}{extra}\n");
        let stage = |extra: &str| format!("{STAGE}{extra}\n");
        expect_each(
            &f,
            &[
                case(
                    "not TOML",
                    "name = ",
                    "not valid TOML: string values must be quoted, expected literal string",
                    None,
                ),
                case(
                    "unknown key, close to one",
                    &format!("naem = \"x\"\n{BASE}"),
                    "unknown key `naem` in the pipeline file",
                    Some("did you mean `name`?"),
                ),
                case(
                    "unknown key, close to none",
                    &format!("[log]\nsync = \"always\"\ncompletely-different = 1\n{BASE}"),
                    "unknown key `completely-different` in [log]",
                    Some(
                        "[log] takes: backend, sync, brokers, properties, topic-prefix, replication-factor, session-timeout",
                    ),
                ),
                case(
                    "unknown key in a stage's sub-table",
                    &stage("output = \"out\"\nretry = { attempts = 2, backof = \"1s\" }"),
                    "unknown key `backof` in [stages.a] retry",
                    Some("did you mean `backoff`?"),
                ),
                case(
                    "a value of the wrong type",
                    &format!("delivery = \"twice\"\n{BASE}"),
                    "pipeline: unknown variant `twice`, expected `at-least-once` or `exactly-once`",
                    None,
                ),
                case(
                    "a missing key",
                    "[stages.a]\nplugin = \"p.wasm\"\noutput = \"out\"\n",
                    "[stages.a]: missing field `input`",
                    None,
                ),
                case(
                    "a section that is not a table",
                    &format!("log = 3\n{BASE}"),
                    "log must be a table",
                    Some("write it as [log]"),
                ),
                case(
                    "a named table that is not a table",
                    &format!("{BASE}[topics]\nin = 3\n"),
                    "[topics.in] must be a table",
                    Some("write it as [[topics.in]]"),
                ),
                case(
                    "a bad name of a table",
                    &format!("{BASE}[topics.\"a b\"]\n"),
                    "topic name \"a b\" is not valid: use 1 to 200 letters, digits, '.', '_' or '-'",
                    None,
                ),
                case(
                    "a bad pipeline name",
                    &format!("name = \"a/b\"\n{BASE}"),
                    "pipeline name \"a/b\" is not valid: use 1 to 200 letters, digits, '.', '_' or '-'",
                    Some("set name = \"...\" at the top"),
                ),
                case(
                    "a bad sync policy",
                    &format!("[log]\nsync = \"sometimes\"\n{BASE}"),
                    "unknown sync policy \"sometimes\": use always, never or interval:<duration> (e.g. interval:10ms)",
                    None,
                ),
                case(
                    "max-inflight out of range",
                    &format!("[http]\nlisten = \"127.0.0.1:0\"\nmax-inflight = 0\n{BASE}"),
                    &format!(
                        "[http] max-inflight = 0 bytes is out of range: it must be from 1 to {} bytes",
                        tokio::sync::Semaphore::MAX_PERMITS
                    ),
                    Some("write e.g. max-inflight = \"64MiB\""),
                ),
                case(
                    "a source without a type",
                    &with("[sources.s]\ntopic = \"in\""),
                    "[sources.s] has no `type`",
                    Some("add type = one of file, stdin, generator, http, kafka, postgres-cdc"),
                ),
                case(
                    "a type that is not a string",
                    &with("[sinks.s]\ntype = 1\ninput = \"out\""),
                    "`type` of [sinks.s] must be a string",
                    None,
                ),
                case(
                    "an unknown type",
                    &with("[sinks.s]\ntype = \"printer\"\ninput = \"out\""),
                    "unknown type \"printer\" in [sinks.s]",
                    Some("use one of: file, stdout, kafka, postgres, mongodb"),
                ),
                case(
                    "a key of another kind",
                    &with(
                        "[sources.s]\ntype = \"stdin\"\ntopic = \"in\"\npath = \"events.ndjson\"",
                    ),
                    "unknown key `path` in [sources.s]",
                    Some("[sources.s] takes: type, topic"),
                ),
                case(
                    "a file source without a path",
                    &with("[sources.s]\ntype = \"file\"\ntopic = \"in\""),
                    "[sources.s] (type file) has no `path`",
                    Some("add path = \"events.ndjson\""),
                ),
                case(
                    "a file sink without a path",
                    &with("[sinks.s]\ntype = \"file\"\ninput = \"out\""),
                    "[sinks.s] (type file) has no `path`",
                    Some("add path = \"out.ndjson\""),
                ),
                case(
                    "a source file that does not exist",
                    &with("[sources.s]\ntype = \"file\"\ntopic = \"in\"\npath = \"nope.ndjson\""),
                    &format!("source file {dir}/nope.ndjson does not exist"),
                    Some("paths are relative to the pipeline file's directory"),
                ),
                case(
                    "a plugin file that does not exist",
                    &with("[stages.b]\nplugin = \"nope.wasm\"\ninput = \"in\"\noutput = \"out\""),
                    &format!("plugin file {dir}/nope.wasm does not exist"),
                    Some(
                        "build it (cd plugins && cargo build --release) or fix the path; paths are relative to the pipeline file",
                    ),
                ),
                case(
                    "an empty output list",
                    &stage("output = []"),
                    "[stages.a]: `output` is an empty list",
                    Some("name at least one topic"),
                ),
                case(
                    "both output and route",
                    &stage(
                        "output = \"out\"\nroute = { header = \"h\", topics = { x = \"out\" } }",
                    ),
                    "[stages.a] has both `output` and `route`",
                    Some(
                        "keep one: output = \"topic\" (or a list, for fan-out), or route = { header, topics, default }",
                    ),
                ),
                case(
                    "no output",
                    &stage(""),
                    "[stages.a] has no `output`",
                    Some("add output = \"<topic>\" (a list fans out), or a [route] by header"),
                ),
                case(
                    "batch-size 0",
                    &stage("output = \"out\"\nbatch-size = 0"),
                    "[stages.a]: batch-size 0 is not between 1 and 1048576",
                    None,
                ),
                case(
                    "batch-size too large",
                    &stage("output = \"out\"\nbatch-size = 1048577"),
                    "[stages.a]: batch-size 1048577 is not between 1 and 1048576",
                    None,
                ),
                case(
                    "a window of size 0",
                    &stage("output = \"out\"\nwindow = { kind = \"tumbling\", size = \"0s\" }"),
                    "[stages.a]: window `size` must be at least 1ms",
                    None,
                ),
                case(
                    "a window without its size",
                    &stage("output = \"out\"\nwindow = { kind = \"hopping\", slide = \"1s\" }"),
                    "[stages.a]: a hopping window needs `size`",
                    Some("add size = \"10s\" to the window table"),
                ),
                case(
                    "a session window without its gap",
                    &stage("output = \"out\"\nwindow = { kind = \"session\" }"),
                    "[stages.a]: a session window needs `gap`",
                    Some("add gap = \"10s\" to the window table"),
                ),
                case(
                    "a slide longer than the size",
                    &stage(
                        "output = \"out\"\nwindow = { kind = \"sliding\", size = \"1s\", slide = \"2s\" }",
                    ),
                    "[stages.a]: window slide (2000 ms) is longer than its size (1000 ms)",
                    Some(
                        "events between windows would belong to none; use a slide no longer than the size",
                    ),
                ),
                case(
                    "an unknown window kind",
                    &stage("output = \"out\"\nwindow = { kind = \"rolling\", size = \"1s\" }"),
                    "[stages.a]: unknown window kind `rolling`",
                    Some("write kind = \"tumbling\", \"hopping\" or \"session\""),
                ),
                case(
                    "window keys without a window",
                    &stage("output = \"out\"\nallowed-lateness = \"1s\""),
                    "[stages.a]: out-of-orderness, allowed-lateness and late-output apply to windows, and the stage has no `window`",
                    Some(
                        "add window = { kind = \"tumbling\", size = \"1m\" } for an aggregator plugin, or remove them",
                    ),
                ),
                case(
                    "a duration that is not one",
                    &stage("output = \"out\"\nlinger = \"soon\""),
                    "[stages.a]: \"soon\" is not a duration (expected number at 0); write e.g. \"250ms\", \"1s\" or \"5m\"",
                    None,
                ),
                case(
                    "a size of the wrong type",
                    &stage("output = \"out\"\nmemory = true"),
                    "[stages.a]: expected a size: a number of bytes or a string such as \"64MiB\"",
                    None,
                ),
                case(
                    "a size that is not one",
                    &stage("output = \"out\"\nmemory = \"lots\""),
                    "[stages.a]: \"lots\" is not a size; write e.g. 64MiB or 1048576",
                    None,
                ),
            ],
        );
    }
}
