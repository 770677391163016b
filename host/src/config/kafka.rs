//! Kafka sources and sinks: their settings, read from their shapes in `keys` and checked. The
//! connection itself is `connect`'s; nothing here reaches a broker.

use std::collections::BTreeMap;
use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use super::keys::{Brokers, KafkaSinkFile, KafkaSourceFile, LogFile, Property};
use super::span::Collector;
use super::types::{KafkaLog, KafkaSink, KafkaSinkTopic, KafkaSource, KafkaStart, KafkaTopics};

/// The dead-letter topic of a Kafka source or sink without `dead-letter-topic` (the same as a
/// stage's).
const DEAD_LETTERS: &str = "dead-letters";

/// librdkafka settings Flowgate sets itself, so `properties` may not: each with the key of the
/// source (and sink) that sets it instead, if there is one.
const SET_BY_FLOWGATE: &[(&str, Option<&str>)] = &[
    ("bootstrap.servers", Some("brokers")),
    ("group.id", Some("group")),
    ("enable.auto.commit", None),
    ("isolation.level", None),
    ("transactional.id", None),
    ("enable.idempotence", None),
];

/// Whose `properties` are read: a source or a sink (only a source has a `group`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Sink,
}

/// A source of type `kafka`; `at` is its table, `pipeline` and `name` make the default group.
///
/// A setting with a problem is reported and left empty: the source still takes its place in
/// the graph checks (the file is refused anyway), so that its topic does not look unwritten.
pub(super) fn source(
    c: &mut Collector<'_>,
    what: &str,
    at: Range<usize>,
    pipeline: &str,
    name: &str,
    k: KafkaSourceFile,
) -> KafkaSource {
    let brokers = brokers(c, what, &at, k.brokers);
    let topics = match (k.topics, k.topic_pattern) {
        (Some(_), Some(p)) => {
            c.add(
                p.span(),
                format!("{what} has both `topics` and `topic-pattern`"),
                Some("keep one: topics = [\"a\", \"b\"] for those topics, or topic-pattern = \"orders-.*\" for every topic whose whole name matches".into()),
            );
            None
        }
        (None, None) => {
            c.add(
                at.clone(),
                format!("{what} (type kafka) has no `topics`"),
                Some("add topics = [\"<kafka topic>\"], or topic-pattern = \"<regular expression>\" for every topic whose whole name matches".into()),
            );
            None
        }
        (Some(t), None) => {
            if t.get_ref().is_empty() {
                c.add(
                    t.span(),
                    format!("{what}: `topics` is an empty list"),
                    Some("name at least one Kafka topic".into()),
                );
            }
            let names: Vec<String> = t
                .into_inner()
                .into_iter()
                .filter(|n| topic_name(c, what, n))
                .map(Spanned::into_inner)
                .collect();
            Some(KafkaTopics::Names(names))
        }
        (None, Some(p)) => pattern(c, what, &p).then(|| KafkaTopics::Pattern(p.into_inner())),
    };
    let default_group = format!("flowgate.{pipeline}.{name}");
    let group = match k.group {
        None => default_group,
        Some(g) if g.get_ref().is_empty() => {
            c.add(
                g.span(),
                format!("{what}: `group` is empty"),
                Some(format!(
                    "name the consumer group, or leave `group` out for {default_group}"
                )),
            );
            default_group
        }
        Some(g) => g.into_inner(),
    };
    let start = match k.start {
        None => KafkaStart::Earliest,
        Some(s) => match s.get_ref().0.as_str() {
            "earliest" => KafkaStart::Earliest,
            "latest" => KafkaStart::Latest,
            time => match humantime::parse_rfc3339_weak(time) {
                Ok(t) => KafkaStart::Time(t),
                Err(e) => {
                    c.add(
                        s.span(),
                        format!("{what}: start {time:?} is not `earliest`, `latest` or an RFC 3339 time in UTC ({e})"),
                        Some("write start = \"earliest\", \"latest\" or a time in UTC such as \"2026-11-30T08:00:00Z\"".into()),
                    );
                    KafkaStart::Earliest
                }
            },
        },
    };
    let properties = properties(c, what, k.properties, Side::Source);
    let dead_letter_topic = k
        .dead_letter_topic
        .map_or_else(|| DEAD_LETTERS.to_owned(), Spanned::into_inner);
    KafkaSource {
        brokers: brokers.unwrap_or_default(),
        topics: topics.unwrap_or(KafkaTopics::Names(Vec::new())),
        group,
        start,
        properties,
        format: k.format,
        dead_letter_topic,
    }
}

/// A sink of type `kafka`; `at` is its table. As for a source, a setting with a problem is
/// reported and left empty.
pub(super) fn sink(
    c: &mut Collector<'_>,
    what: &str,
    at: Range<usize>,
    k: KafkaSinkFile,
) -> KafkaSink {
    let brokers = brokers(c, what, &at, k.brokers);
    if let Some(t) = &k.topic {
        topic_name(c, what, t);
    }
    let topic = match (k.topic_header, k.topic) {
        (None, None) => {
            c.add(
                at.clone(),
                format!("{what} (type kafka) has no `topic`"),
                Some("add topic = \"<kafka topic>\", or topic-header = \"<header>\" to take each record's topic from that event header".into()),
            );
            None
        }
        (None, Some(t)) => Some(KafkaSinkTopic::Fixed(t.into_inner())),
        (Some(h), _) if h.get_ref().is_empty() => {
            c.add(
                h.span(),
                format!("{what}: `topic-header` is empty"),
                Some("name the event header that holds each record's Kafka topic".into()),
            );
            None
        }
        (Some(h), fallback) => Some(KafkaSinkTopic::Header {
            name: h.into_inner(),
            fallback: fallback.map(Spanned::into_inner),
        }),
    };
    let properties = properties(c, what, k.properties, Side::Sink);
    let dead_letter_topic = k
        .dead_letter_topic
        .map_or_else(|| DEAD_LETTERS.to_owned(), Spanned::into_inner);
    KafkaSink {
        brokers: brokers.unwrap_or_default(),
        topic: topic.unwrap_or(KafkaSinkTopic::Fixed(String::new())),
        properties,
        compression: k.compression,
        dead_letter_topic,
    }
}

/// `brokers`: a string of `host:port` separated by commas, or a list of them; joined with
/// commas, each entry trimmed.
/// `[log]` (at `at`, its `sync` already taken): `Some` when `backend = "kafka"`.
pub(super) fn log(c: &mut Collector<'_>, at: Range<usize>, l: LogFile) -> Option<KafkaLog> {
    let what = "[log]";
    let kafka = match l.backend.as_ref().map(|b| b.get_ref().as_str()) {
        None | Some("embedded") => false,
        Some("kafka") => true,
        Some(other) => {
            c.add(
                l.backend.as_ref().expect("set").span(),
                format!("[log] backend {other:?} is not known"),
                Some("use backend = \"embedded\" (the default: the log in --data-dir) or backend = \"kafka\" (with brokers = \"host:9092\")".into()),
            );
            return None;
        }
    };
    if !kafka {
        let spans = [
            l.brokers.as_ref().map(|b| (b.span(), "brokers")),
            l.topic_prefix.as_ref().map(|b| (b.span(), "topic-prefix")),
            l.replication_factor
                .as_ref()
                .map(|b| (b.span(), "replication-factor")),
            l.properties.keys().next().map(|k| (k.span(), "properties")),
            l.session_timeout
                .as_ref()
                .map(|b| (b.span(), "session-timeout")),
        ];
        for (span, key) in spans.into_iter().flatten() {
            c.add(
                span,
                format!(
                    "[log] `{key}` is a setting of the Kafka log, and this log is the embedded one"
                ),
                Some("add backend = \"kafka\" to [log], or remove the setting".into()),
            );
        }
        return None;
    }
    if l.brokers.is_none() {
        c.add(
            at,
            "[log] backend = \"kafka\" has no `brokers`".to_owned(),
            Some(
                "add brokers = \"localhost:9092\" (several: \"h1:9092,h2:9092\", or a list)".into(),
            ),
        );
        return None;
    }
    let brokers = brokers(c, what, &at, l.brokers);
    let properties = properties(c, what, l.properties, Side::Sink);
    let topic_prefix = match l.topic_prefix {
        None => String::new(),
        Some(p) => {
            let ok = p.get_ref().len() <= 100
                && p.get_ref()
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !ok {
                c.add(
                    p.span(),
                    format!(
                        "[log] `topic-prefix` {:?} is not valid: use up to 100 letters, digits, '.', '_' or '-'",
                        p.get_ref()
                    ),
                    None,
                );
            }
            p.into_inner()
        }
    };
    let replication_factor = match l.replication_factor {
        None => -1,
        Some(r) => {
            let n = *r.get_ref();
            if n == -1 || (1..=i64::from(i16::MAX)).contains(&n) {
                n as i32
            } else {
                c.add(
                    r.span(),
                    format!("[log] `replication-factor` is {n}"),
                    Some("use the number of replicas of each topic (1 to 32767), or -1 for the brokers' default.replication.factor".into()),
                );
                -1
            }
        }
    };
    let session_timeout = match l.session_timeout {
        None => Duration::from_secs(10),
        Some(d) => {
            let t = d.get_ref().0;
            if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&t) {
                c.add(
                    d.span(),
                    format!("[log] `session-timeout` is {t:?}"),
                    Some("use 1s to 1h (the brokers' group.min.session.timeout.ms and group.max.session.timeout.ms bound it too; Kafka's default minimum is 6s)".into()),
                );
            }
            t
        }
    };
    Some(KafkaLog {
        brokers: brokers?,
        properties,
        topic_prefix,
        replication_factor,
        session_timeout,
    })
}

fn brokers(
    c: &mut Collector<'_>,
    what: &str,
    at: &Range<usize>,
    brokers: Option<Spanned<Brokers>>,
) -> Option<String> {
    let Some(b) = brokers else {
        c.add(
            at.clone(),
            format!("{what} (type kafka) has no `brokers`"),
            Some(
                "add brokers = \"localhost:9092\" (several: \"h1:9092,h2:9092\", or a list)".into(),
            ),
        );
        return None;
    };
    let span = b.span();
    let Brokers(entries) = b.into_inner();
    let entries: Vec<&str> = entries
        .iter()
        .flat_map(|e| e.split(','))
        .map(str::trim)
        .collect();
    let problem = if entries.iter().all(|e| e.is_empty()) {
        Some("names no broker")
    } else if entries.iter().any(|e| e.is_empty()) {
        Some("has an empty entry")
    } else {
        None
    };
    if let Some(problem) = problem {
        c.add(
            span,
            format!("{what}: `brokers` {problem}"),
            Some("write each broker as host:port, e.g. brokers = \"h1:9092,h2:9092\"".into()),
        );
        return None;
    }
    Some(entries.join(","))
}

/// Reports a Kafka topic name that is not 1 to 249 of `A-Z a-z 0-9 . _ -`.
fn topic_name(c: &mut Collector<'_>, what: &str, name: &Spanned<String>) -> bool {
    let n = name.get_ref();
    let ok = (1..=249).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok {
        c.add(
            name.span(),
            format!("{what}: Kafka topic name {n:?} is not valid: use 1 to 249 letters, digits, '.', '_' or '-'"),
            None,
        );
    }
    ok
}

/// Reports a `topic-pattern` that is empty or not a regular expression.
fn pattern(c: &mut Collector<'_>, what: &str, p: &Spanned<String>) -> bool {
    let why = if p.get_ref().is_empty() {
        Some("is empty".to_owned())
    } else {
        regex::Regex::new(p.get_ref()).err().map(|e| {
            // A syntax error is the pattern, a caret under the place and `error: <reason>`.
            let e = e.to_string();
            let reason = e.lines().last().unwrap_or_default();
            format!(
                "{:?} is not a regular expression: {}",
                p.get_ref(),
                reason.trim_start_matches("error: ")
            )
        })
    };
    let Some(why) = why else {
        return true;
    };
    c.add(
        p.span(),
        format!("{what}: `topic-pattern` {why}"),
        Some("write a regular expression matched against whole topic names, e.g. topic-pattern = \"orders-.*\"".into()),
    );
    false
}

/// `properties`, each value as text; reports the settings Flowgate sets itself.
fn properties(
    c: &mut Collector<'_>,
    what: &str,
    properties: BTreeMap<Spanned<String>, Property>,
    side: Side,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (key, Property(value)) in properties {
        let k = key.get_ref().as_str();
        match SET_BY_FLOWGATE.iter().find(|(name, _)| *name == k) {
            None => {
                out.insert(key.into_inner(), value);
            }
            Some((_, Some(instead))) if side == Side::Source || *instead == "brokers" => {
                c.add(
                    key.span(),
                    format!("{what}: `properties` may not set `{k}`: it comes from `{instead}`"),
                    Some(format!("remove it and write {instead} = \"...\"")),
                );
            }
            Some(_) => {
                c.add(
                    key.span(),
                    format!("{what}: `properties` may not set `{k}`: Flowgate sets it"),
                    Some(
                        "remove it; `delivery` at the top of the file chooses the guarantee".into(),
                    ),
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::{Duration, UNIX_EPOCH};

    use crate::config::testing::{Case, Files, expect_each};
    use crate::config::types::{
        KafkaCompression, KafkaFormat, KafkaSink, KafkaSinkTopic, KafkaSource, KafkaStart,
        KafkaTopics, SinkKind, SourceKind, Start,
    };

    /// A Kafka source `k` with these keys.
    fn source(keys: &str) -> String {
        format!("[sources.k]\ntype = \"kafka\"\ntopic = \"in\"\n{keys}\n")
    }

    /// A Kafka sink `k` with these keys, reading a generator's topic.
    fn sink(keys: &str) -> String {
        format!(
            "[sources.gen]\ntype = \"generator\"\ntopic = \"in\"\n\n[sinks.k]\ntype = \"kafka\"\ninput = \"in\"\n{keys}\n"
        )
    }

    fn case<'a>(name: &'a str, text: String, message: &str, help: Option<&'a str>) -> Case<'a> {
        (name, text, message.to_owned(), help)
    }

    #[test]
    fn a_kafka_source_with_its_defaults() {
        let f = Files::new();
        let c = f.ok(&source("brokers = \"b1:9092\"\ntopics = [\"orders\"]"));
        assert_eq!(
            c.sources["k"].kind,
            SourceKind::Kafka(KafkaSource {
                brokers: "b1:9092".into(),
                topics: KafkaTopics::Names(vec!["orders".into()]),
                group: "flowgate.p.k".into(),
                start: KafkaStart::Earliest,
                properties: BTreeMap::new(),
                format: KafkaFormat::Raw,
                dead_letter_topic: "dead-letters".into(),
            })
        );
        assert_eq!(c.sources["k"].written_topics(), ["dead-letters", "in"]);
        assert!(c.topics.contains_key("dead-letters"));
    }

    #[test]
    fn a_kafka_source_with_every_key() {
        let f = Files::new();
        let c = f.ok(&source(
            r#"brokers = ["b1:9092", " b2:9092 "]
topic-pattern = "orders-.*"
group = "g"
start = "2026-11-30T08:00:00Z"
properties = { "security.protocol" = "SASL_SSL", "fetch.min.bytes" = 1, "check.crcs" = true }
format = "json"
dead-letter-topic = "bad-orders""#,
        ));
        let SourceKind::Kafka(k) = &c.sources["k"].kind else {
            panic!("{:?}", c.sources["k"].kind);
        };
        assert_eq!(k.brokers, "b1:9092,b2:9092");
        assert_eq!(k.topics, KafkaTopics::Pattern("orders-.*".into()));
        assert_eq!(k.group, "g");
        assert_eq!(
            k.start,
            KafkaStart::Time(UNIX_EPOCH + Duration::from_secs(1_796_025_600))
        );
        let props: Vec<(&str, &str)> = k
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            props,
            [
                ("check.crcs", "true"),
                ("fetch.min.bytes", "1"),
                ("security.protocol", "SASL_SSL")
            ]
        );
        assert_eq!(k.format, KafkaFormat::Json);
        assert_eq!(k.dead_letter_topic, "bad-orders");
        let start = |s: &str| {
            let c = f.ok(&source(&format!(
                "brokers = \"b\"\ntopics = [\"t\"]\nstart = \"{s}\""
            )));
            match &c.sources["k"].kind {
                SourceKind::Kafka(k) => k.start,
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(start("latest"), KafkaStart::Latest);
        let c = f.ok(&source(
            "brokers = \"b\"\ntopics = [\"t\"]\nstart = 2026-11-30T08:00:00Z",
        ));
        let SourceKind::Kafka(k) = &c.sources["k"].kind else {
            panic!("{:?}", c.sources["k"].kind);
        };
        assert_eq!(
            k.start,
            KafkaStart::Time(UNIX_EPOCH + Duration::from_secs(1_796_025_600))
        );
        assert_eq!(start("earliest"), KafkaStart::Earliest);
    }

    #[test]
    fn a_kafka_sink_with_its_defaults_and_with_every_key() {
        let f = Files::new();
        let c = f.ok(&sink("brokers = \"b1:9092,b2:9092\"\ntopic = \"out\""));
        assert_eq!(
            c.sinks["k"].kind,
            SinkKind::Kafka(KafkaSink {
                brokers: "b1:9092,b2:9092".into(),
                topic: KafkaSinkTopic::Fixed("out".into()),
                properties: BTreeMap::new(),
                compression: KafkaCompression::None,
                dead_letter_topic: "dead-letters".into(),
            })
        );
        assert_eq!(c.sinks["k"].start, Start::Earliest);
        assert!(c.topics.contains_key("dead-letters"));

        let c = f.ok(&sink(
            r#"brokers = ["b1:9092"]
topic-header = "x-topic"
topic = "fallback"
properties = { "linger.ms" = 5 }
compression = "zstd"
dead-letter-topic = "refused"
start = "latest""#,
        ));
        let SinkKind::Kafka(k) = &c.sinks["k"].kind else {
            panic!("{:?}", c.sinks["k"].kind);
        };
        assert_eq!(
            k.topic,
            KafkaSinkTopic::Header {
                name: "x-topic".into(),
                fallback: Some("fallback".into())
            }
        );
        assert_eq!(k.properties["linger.ms"], "5");
        assert_eq!(k.compression, KafkaCompression::Zstd);
        assert_eq!(c.sinks["k"].written_topics(), ["refused"]);
        assert_eq!(c.sinks["k"].start, Start::Latest);

        let c = f.ok(&sink("brokers = \"b\"\ntopic-header = \"x-topic\""));
        let SinkKind::Kafka(k) = &c.sinks["k"].kind else {
            panic!("{:?}", c.sinks["k"].kind);
        };
        assert_eq!(
            k.topic,
            KafkaSinkTopic::Header {
                name: "x-topic".into(),
                fallback: None
            }
        );
    }

    /// Dead letters of a Kafka source or sink are a topic it writes: a stage may read them,
    /// and a sink may not write its own input with them.
    #[test]
    fn kafka_dead_letters_are_written_topics_in_the_graph() {
        let f = Files::new();
        let text = format!(
            "{}\n[sinks.dl]\ntype = \"stdout\"\ninput = \"dead-letters\"\n",
            source("brokers = \"b\"\ntopics = [\"t\"]")
        );
        assert!(f.parse(&text).is_ok(), "{:?}", f.parse(&text).err());
        let text = format!(
            "{}\n[sinks.dl]\ntype = \"stdout\"\ninput = \"refused\"\n",
            sink("brokers = \"b\"\ntopic = \"t\"\ndead-letter-topic = \"refused\"")
        );
        assert!(f.parse(&text).is_ok(), "{:?}", f.parse(&text).err());
    }

    /// Every problem of a Kafka source or sink.
    #[test]
    fn each_problem_of_a_kafka_source_or_sink_is_reported_with_what_to_do() {
        let f = Files::new();
        let ok_source = "brokers = \"b:9092\"\ntopics = [\"t\"]";
        let ok_sink = "brokers = \"b:9092\"\ntopic = \"t\"";
        let flowgate_sets = "remove it; `delivery` at the top of the file chooses the guarantee";
        let mut cases = vec![
            case(
                "a source without brokers",
                source("topics = [\"t\"]"),
                "[sources.k] (type kafka) has no `brokers`",
                Some("add brokers = \"localhost:9092\" (several: \"h1:9092,h2:9092\", or a list)"),
            ),
            case(
                "a sink without brokers",
                sink("topic = \"t\""),
                "[sinks.k] (type kafka) has no `brokers`",
                Some("add brokers = \"localhost:9092\" (several: \"h1:9092,h2:9092\", or a list)"),
            ),
            case(
                "brokers empty",
                source("brokers = \"\"\ntopics = [\"t\"]"),
                "[sources.k]: `brokers` names no broker",
                Some("write each broker as host:port, e.g. brokers = \"h1:9092,h2:9092\""),
            ),
            case(
                "brokers an empty list",
                sink("brokers = []\ntopic = \"t\""),
                "[sinks.k]: `brokers` names no broker",
                Some("write each broker as host:port, e.g. brokers = \"h1:9092,h2:9092\""),
            ),
            case(
                "brokers with an empty entry",
                source("brokers = \"b1:9092,,b2:9092\"\ntopics = [\"t\"]"),
                "[sources.k]: `brokers` has an empty entry",
                Some("write each broker as host:port, e.g. brokers = \"h1:9092,h2:9092\""),
            ),
            case(
                "brokers of the wrong type",
                source("brokers = 9092\ntopics = [\"t\"]"),
                "[sources.k]: invalid type: integer `9092`, expected brokers as a string \"host:port,host:port\" or a list of \"host:port\"",
                None,
            ),
            case(
                "topics and topic-pattern",
                source("brokers = \"b\"\ntopics = [\"t\"]\ntopic-pattern = \"t.*\""),
                "[sources.k] has both `topics` and `topic-pattern`",
                Some(
                    "keep one: topics = [\"a\", \"b\"] for those topics, or topic-pattern = \"orders-.*\" for every topic whose whole name matches",
                ),
            ),
            case(
                "neither topics nor topic-pattern",
                source("brokers = \"b\""),
                "[sources.k] (type kafka) has no `topics`",
                Some(
                    "add topics = [\"<kafka topic>\"], or topic-pattern = \"<regular expression>\" for every topic whose whole name matches",
                ),
            ),
            case(
                "topics an empty list",
                source("brokers = \"b\"\ntopics = []"),
                "[sources.k]: `topics` is an empty list",
                Some("name at least one Kafka topic"),
            ),
            case(
                "a topic name with a space",
                source("brokers = \"b\"\ntopics = [\"ok\", \"not ok\"]"),
                "[sources.k]: Kafka topic name \"not ok\" is not valid: use 1 to 249 letters, digits, '.', '_' or '-'",
                None,
            ),
            case(
                "an empty topic name",
                source("brokers = \"b\"\ntopics = [\"\"]"),
                "[sources.k]: Kafka topic name \"\" is not valid: use 1 to 249 letters, digits, '.', '_' or '-'",
                None,
            ),
            case(
                "a topic name of 250 characters",
                source(&format!(
                    "brokers = \"b\"\ntopics = [\"{}\"]",
                    "t".repeat(250)
                )),
                &format!(
                    "[sources.k]: Kafka topic name \"{}\" is not valid: use 1 to 249 letters, digits, '.', '_' or '-'",
                    "t".repeat(250)
                ),
                None,
            ),
            case(
                "a pattern that does not compile",
                source("brokers = \"b\"\ntopic-pattern = \"orders-(\""),
                "[sources.k]: `topic-pattern` \"orders-(\" is not a regular expression: unclosed group",
                Some(
                    "write a regular expression matched against whole topic names, e.g. topic-pattern = \"orders-.*\"",
                ),
            ),
            case(
                "an empty pattern",
                source("brokers = \"b\"\ntopic-pattern = \"\""),
                "[sources.k]: `topic-pattern` is empty",
                Some(
                    "write a regular expression matched against whole topic names, e.g. topic-pattern = \"orders-.*\"",
                ),
            ),
            case(
                "an empty group",
                source(&format!("{ok_source}\ngroup = \"\"")),
                "[sources.k]: `group` is empty",
                Some("name the consumer group, or leave `group` out for flowgate.p.k"),
            ),
            case(
                "a start that is not one",
                source(&format!("{ok_source}\nstart = \"yesterday\"")),
                "[sources.k]: start \"yesterday\" is not `earliest`, `latest` or an RFC 3339 time in UTC (timestamp format is invalid)",
                Some(
                    "write start = \"earliest\", \"latest\" or a time in UTC such as \"2026-11-30T08:00:00Z\"",
                ),
            ),
            case(
                "a start written as a TOML time",
                source(&format!("{ok_source}\nstart = 2026-11-30T08:00:00+01:00")),
                "[sources.k]: start \"2026-11-30T08:00:00+01:00\" is not `earliest`, `latest` or an RFC 3339 time in UTC (timestamp format is invalid)",
                Some(
                    "write start = \"earliest\", \"latest\" or a time in UTC such as \"2026-11-30T08:00:00Z\"",
                ),
            ),
            case(
                "an unknown format",
                source(&format!("{ok_source}\nformat = \"avro\"")),
                "[sources.k]: unknown variant `avro`, expected `raw` or `json`",
                None,
            ),
            case(
                "a property of the wrong type",
                source(&format!("{ok_source}\nproperties = {{ \"x.y\" = 1.5 }}")),
                "[sources.k]: invalid type: floating point `1.5`, expected a string, an integer or a boolean",
                None,
            ),
            case(
                "a property name with dots, unquoted",
                source(&format!(
                    "{ok_source}\nproperties = {{ security.protocol = \"SSL\" }}"
                )),
                "[sources.k]: a property is a string, an integer or a boolean, not a table; quote a name with dots in it: \"security.protocol\" = \"SASL_SSL\"",
                None,
            ),
            case(
                "properties that is not a table",
                sink(&format!("{ok_sink}\nproperties = 3")),
                "[sinks.k]: invalid type: integer `3`, expected a map",
                None,
            ),
            case(
                "a sink without topic or topic-header",
                sink("brokers = \"b\""),
                "[sinks.k] (type kafka) has no `topic`",
                Some(
                    "add topic = \"<kafka topic>\", or topic-header = \"<header>\" to take each record's topic from that event header",
                ),
            ),
            case(
                "a sink topic name that is not valid",
                sink("brokers = \"b\"\ntopic = \"a/b\""),
                "[sinks.k]: Kafka topic name \"a/b\" is not valid: use 1 to 249 letters, digits, '.', '_' or '-'",
                None,
            ),
            case(
                "an empty topic-header",
                sink("brokers = \"b\"\ntopic-header = \"\""),
                "[sinks.k]: `topic-header` is empty",
                Some("name the event header that holds each record's Kafka topic"),
            ),
            case(
                "an unknown compression",
                sink(&format!("{ok_sink}\ncompression = \"brotli\"")),
                "[sinks.k]: unknown variant `brotli`, expected one of `none`, `gzip`, `snappy`, `lz4`, `zstd`",
                None,
            ),
            case(
                "a sink writing its own input",
                sink(&format!("{ok_sink}\ndead-letter-topic = \"in\"")),
                "sink `k` writes its own input topic `in` (its dead-letter-topic)",
                Some("send its dead letters to another topic: dead-letter-topic = \"...\""),
            ),
            case(
                "a dead-letter topic name that is not valid",
                source(&format!("{ok_source}\ndead-letter-topic = \"a b\"")),
                "topic name \"a b\" is not valid: use 1 to 200 letters, digits, '.', '_' or '-'",
                None,
            ),
            case(
                "a key of another kind",
                source(&format!("{ok_source}\ncompression = \"gzip\"")),
                "unknown key `compression` in [sources.k]",
                Some(
                    "[sources.k] takes: type, topic, brokers, topics, topic-pattern, group, start, properties, format, dead-letter-topic",
                ),
            ),
            case(
                "a key close to one of the kind's",
                sink(&format!("{ok_sink}\ntopic-headr = \"h\"")),
                "unknown key `topic-headr` in [sinks.k]",
                Some("did you mean `topic-header`?"),
            ),
        ];
        // Settings Flowgate sets, on either side.
        for (table, text) in [("sources", source(ok_source)), ("sinks", sink(ok_sink))] {
            let side = if table == "sources" { "source" } else { "sink" };
            for (key, instead) in [
                ("bootstrap.servers", Some("brokers")),
                ("group.id", (side == "source").then_some("group")),
                ("enable.auto.commit", None),
                ("isolation.level", None),
                ("transactional.id", None),
                ("enable.idempotence", None),
            ] {
                let text = format!("{text}properties = {{ \"{key}\" = \"x\" }}\n");
                let (message, help) = match instead {
                    Some(k) => (
                        format!(
                            "[{table}.k]: `properties` may not set `{key}`: it comes from `{k}`"
                        ),
                        Some(if k == "brokers" {
                            "remove it and write brokers = \"...\""
                        } else {
                            "remove it and write group = \"...\""
                        }),
                    ),
                    None => (
                        format!("[{table}.k]: `properties` may not set `{key}`: Flowgate sets it"),
                        Some(flowgate_sets),
                    ),
                };
                cases.push(("a setting Flowgate sets", text, message, help));
            }
        }
        expect_each(&f, &cases);
    }

    /// A generator into `in`, so the file has something to run.
    fn with_log(log: &str) -> String {
        format!("[log]\n{log}\n\n[sources.gen]\ntype = \"generator\"\ntopic = \"in\"\n")
    }

    #[test]
    fn a_kafka_log_with_its_settings_and_defaults() {
        let f = Files::new();
        assert_eq!(f.ok(&with_log("sync = \"never\"")).kafka_log, None);
        assert_eq!(f.ok(&with_log("backend = \"embedded\"")).kafka_log, None);
        let c = f.ok(&with_log(
            "backend = \"kafka\"\nbrokers = [\"b1:9092\", \"b2:9092\"]",
        ));
        assert_eq!(
            c.kafka_log,
            Some(crate::config::KafkaLog {
                brokers: "b1:9092,b2:9092".into(),
                properties: BTreeMap::new(),
                topic_prefix: String::new(),
                replication_factor: -1,
                session_timeout: Duration::from_secs(10),
            })
        );
        let c = f.ok(&with_log(
            "backend = \"kafka\"\nbrokers = \"b:9092\"\ntopic-prefix = \"team-a.\"\nreplication-factor = 3\nproperties = { \"compression.type\" = \"lz4\" }",
        ));
        let k = c.kafka_log.expect("a Kafka log");
        assert_eq!(k.topic_prefix, "team-a.");
        assert_eq!(k.replication_factor, 3);
        assert_eq!(k.properties["compression.type"], "lz4");
    }

    #[test]
    fn a_kafka_log_with_a_problem_is_refused_with_what_to_write() {
        let f = Files::new();
        let cases = [
            case(
                "an unknown backend",
                with_log("backend = \"s3\""),
                "[log] backend \"s3\" is not known",
                Some(
                    "use backend = \"embedded\" (the default: the log in --data-dir) or backend = \"kafka\" (with brokers = \"host:9092\")",
                ),
            ),
            case(
                "Kafka settings on the embedded log",
                with_log("brokers = \"b:9092\""),
                "[log] `brokers` is a setting of the Kafka log, and this log is the embedded one",
                Some("add backend = \"kafka\" to [log], or remove the setting"),
            ),
            case(
                "no brokers",
                with_log("backend = \"kafka\""),
                "[log] backend = \"kafka\" has no `brokers`",
                Some("add brokers = \"localhost:9092\" (several: \"h1:9092,h2:9092\", or a list)"),
            ),
            case(
                "a bad prefix",
                with_log("backend = \"kafka\"\nbrokers = \"b:9092\"\ntopic-prefix = \"a/b\""),
                "[log] `topic-prefix` \"a/b\" is not valid: use up to 100 letters, digits, '.', '_' or '-'",
                None,
            ),
            case(
                "a bad replication factor",
                with_log("backend = \"kafka\"\nbrokers = \"b:9092\"\nreplication-factor = 0"),
                "[log] `replication-factor` is 0",
                Some(
                    "use the number of replicas of each topic (1 to 32767), or -1 for the brokers' default.replication.factor",
                ),
            ),
            case(
                "a setting Flowgate sets",
                with_log(
                    "backend = \"kafka\"\nbrokers = \"b:9092\"\nproperties = { \"transactional.id\" = \"x\" }",
                ),
                "[log]: `properties` may not set `transactional.id`: Flowgate sets it",
                Some("remove it; `delivery` at the top of the file chooses the guarantee"),
            ),
        ];
        expect_each(&f, &cases);
    }
}
