//! The keys of the pipeline file: the serde shape of each table, and the key table derived
//! from those shapes, which both accepts keys and finds the closest known key for one that is
//! not. A key is known exactly when a shape has a field for it, so the two cannot drift.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, forward_to_deserialize_any};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::span::Collector;
use super::types::{Delivery, KafkaCompression, KafkaFormat, Mode, MongoMode, OnError, Start};
use crate::event::RecordLimits;

// ---------------------------------------------------------------------------------------------
// The key table.

/// The sections of the file: tables at the top level, each with its own shape.
pub(super) const SECTIONS: &[&str] = &[
    "log", "http", "limits", "topics", "sources", "stages", "sinks",
];

/// The kinds of source (`type = "..."`) and the shape of each kind's own keys.
pub(super) const SOURCE_KINDS: Kinds = &[
    ("file", fields::<FileSourceFile>),
    ("stdin", fields::<NoKeys>),
    ("generator", fields::<GeneratorFile>),
    ("http", fields::<NoKeys>),
    ("kafka", fields::<KafkaSourceFile>),
    ("postgres-cdc", fields::<PostgresCdcFile>),
];

/// The kinds of sink (`type = "..."`) and the shape of each kind's own keys.
pub(super) const SINK_KINDS: Kinds = &[
    ("file", fields::<FileSinkFile>),
    ("stdout", fields::<StdoutSinkFile>),
    ("kafka", fields::<KafkaSinkFile>),
    ("postgres", fields::<PostgresSinkFile>),
    ("mongodb", fields::<MongoSinkFile>),
];

/// Kind name → the keys of its shape.
pub(super) type Kinds = &'static [(&'static str, fn() -> &'static [&'static str])];

/// The keys a table takes: the fields of its serde shape `T`, as the file spells them (after
/// `rename`/`rename_all`).
///
/// A derived `Deserialize` of a struct hands its field names to the deserializer
/// (`deserialize_struct`'s `fields`); this deserializer keeps them and stops there.
pub(super) fn fields<T: DeserializeOwned>() -> &'static [&'static str] {
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("only the field names were asked for"))
        }

        forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
            ignored_any
        }
    }

    let mut out: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut out));
    out
}

/// The keys of the top level: its scalars, then its sections.
pub(super) fn top_keys() -> Vec<&'static str> {
    let mut keys = fields::<TopFile>().to_vec();
    keys.extend(SECTIONS);
    keys
}

impl Collector<'_> {
    /// Reports keys of `table` not in `known`, with the closest known key.
    pub fn keys(&mut self, table: &DeTable<'_>, known: &[&str], what: &str) {
        for key in table.keys() {
            let k = key.get_ref().as_ref();
            if known.contains(&k) {
                continue;
            }
            let closest = known
                .iter()
                .map(|c| (strsim::damerau_levenshtein(k, c), *c))
                .min()
                .filter(|(d, _)| *d <= 3.max(k.len() / 3));
            let help = match closest {
                Some((_, c)) => format!("did you mean `{c}`?"),
                None => format!("{what} takes: {}", known.join(", ")),
            };
            self.add(
                key.span(),
                format!("unknown key `{k}` in {what}"),
                Some(help),
            );
        }
    }

    /// Checks the `type` of a source or sink table and reports keys its kind does not take
    /// (the keys of `common`, then those of the kind's shape). `None`: no known `type`.
    pub fn kind_keys(
        &mut self,
        v: &Spanned<DeValue<'_>>,
        what: &str,
        common: &[&str],
        kinds: Kinds,
    ) -> Option<()> {
        let DeValue::Table(t) = v.get_ref() else {
            return None;
        };
        let names: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
        let Some(ty) = t.get("type") else {
            self.add(
                v.span(),
                format!("{what} has no `type`"),
                Some(format!("add type = one of {}", names.join(", "))),
            );
            return None;
        };
        let DeValue::String(s) = ty.get_ref() else {
            self.add(
                ty.span(),
                format!("`type` of {what} must be a string"),
                None,
            );
            return None;
        };
        match kinds.iter().find(|(k, _)| *k == s.as_ref()) {
            Some((_, own)) => {
                let mut keys = common.to_vec();
                keys.extend(own());
                self.keys(t, &keys, what);
                Some(())
            }
            None => {
                self.add(
                    ty.span(),
                    format!("unknown type {s:?} in {what}"),
                    Some(format!("use one of: {}", names.join(", "))),
                );
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serde shapes of each table (unknown keys are reported by the walk, not by serde).

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct TopFile {
    pub name: Option<String>,
    #[serde(default)]
    pub delivery: Delivery,
    pub commit_interval: Option<Dur>,
}

/// `[log]`: the embedded log's sync policy, or a Kafka cluster as the log (checked in `kafka`).
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(super) struct LogFile {
    pub backend: Option<Spanned<String>>,
    pub sync: Option<Spanned<String>>,
    pub brokers: Option<Spanned<Brokers>>,
    #[serde(default)]
    pub properties: BTreeMap<Spanned<String>, Property>,
    pub topic_prefix: Option<Spanned<String>>,
    pub replication_factor: Option<Spanned<i64>>,
    pub session_timeout: Option<Spanned<Dur>>,
}

/// `[limits]`, and the same keys in a stage (each unset key: the level above).
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(super) struct LimitsFile {
    pub max_key_bytes: Option<Size>,
    pub max_value_bytes: Option<Size>,
    pub max_headers: Option<usize>,
    pub max_header_bytes: Option<Size>,
}

impl LimitsFile {
    /// `base` with the keys this sets.
    pub fn over(&self, base: RecordLimits) -> RecordLimits {
        RecordLimits {
            max_key_bytes: self
                .max_key_bytes
                .as_ref()
                .map_or(base.max_key_bytes, |s| s.0),
            max_value_bytes: self
                .max_value_bytes
                .as_ref()
                .map_or(base.max_value_bytes, |s| s.0),
            max_headers: self.max_headers.unwrap_or(base.max_headers),
            max_header_bytes: self
                .max_header_bytes
                .as_ref()
                .map_or(base.max_header_bytes, |s| s.0),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct HttpFile {
    pub listen: String,
    pub token_env: Option<String>,
    pub admin_token_env: Option<String>,
    pub ingest_token_env: Option<String>,
    pub admin: Option<bool>,
    pub max_body: Option<Size>,
    pub max_inflight: Option<Spanned<Size>>,
    pub max_lag: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub(super) struct TopicFile {
    pub partitions: Option<u32>,
    pub segment_bytes: Option<Size>,
    pub segment_age: Option<Dur>,
    pub retention_bytes: Option<Size>,
    pub retention_age: Option<Dur>,
    #[serde(default)]
    pub external: bool,
}

/// The keys of every source (`type` chooses the kind, whose own keys are in its shape).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct SourceFile {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub topic: Spanned<String>,
}

/// A source of type `file`.
#[derive(Deserialize)]
pub(super) struct FileSourceFile {
    pub path: Option<Spanned<String>>,
}

/// A source of type `generator`.
#[derive(Deserialize)]
pub(super) struct GeneratorFile {
    pub count: Option<u64>,
    pub rate: Option<u64>,
    pub size: Option<Size>,
}

/// A source or sink kind with no keys of its own.
#[derive(Deserialize)]
pub(super) struct NoKeys {}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct StageFile {
    pub plugin: Spanned<String>,
    pub input: Spanned<String>,
    pub output: Option<Spanned<OneOrMany>>,
    pub route: Option<Spanned<RouteFile>>,
    #[serde(default)]
    pub mode: Mode,
    pub batch_size: Option<Spanned<u64>>,
    pub linger: Option<Dur>,
    pub parallelism: Option<Spanned<u32>>,
    pub memory: Option<Size>,
    pub timeout: Option<Dur>,
    pub max_outputs_per_event: Option<usize>,
    pub max_output_bytes: Option<Size>,
    pub max_log_rate: Option<Size>,
    pub max_log_burst: Option<Size>,
    #[serde(default)]
    pub config: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub on_error: OnError,
    pub retry: Option<RetryFile>,
    pub dead_letter_topic: Option<Spanned<String>>,
    pub max_traps_per_minute: Option<u32>,
    #[serde(default)]
    pub start: Start,
    #[serde(default)]
    pub state: bool,
    pub max_state_bytes: Option<Size>,
    pub max_key_bytes: Option<Size>,
    pub max_value_bytes: Option<Size>,
    pub max_headers: Option<usize>,
    pub max_header_bytes: Option<Size>,
    pub window: Option<Spanned<WindowFile>>,
    pub out_of_orderness: Option<Dur>,
    pub allowed_lateness: Option<Dur>,
    pub late_output: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct WindowFile {
    pub kind: String,
    pub size: Option<Dur>,
    pub slide: Option<Dur>,
    pub gap: Option<Dur>,
}

#[derive(Deserialize)]
pub(super) struct RouteFile {
    pub header: String,
    pub topics: BTreeMap<String, String>,
    pub default: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct RetryFile {
    pub attempts: Option<u32>,
    pub backoff: Option<Dur>,
    pub max_backoff: Option<Dur>,
}

/// The keys of every sink (`type` chooses the kind, whose own keys are in its shape).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct SinkFile {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub input: Spanned<String>,
}

/// A sink of type `file`.
#[derive(Deserialize)]
pub(super) struct FileSinkFile {
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub start: Start,
}

/// A sink of type `stdout`.
#[derive(Deserialize)]
pub(super) struct StdoutSinkFile {
    #[serde(default)]
    pub start: Start,
}

/// A source of type `kafka` (checked in `kafka`).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct KafkaSourceFile {
    pub brokers: Option<Spanned<Brokers>>,
    pub topics: Option<Spanned<Vec<Spanned<String>>>>,
    pub topic_pattern: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub start: Option<Spanned<Time>>,
    #[serde(default)]
    pub properties: BTreeMap<Spanned<String>, Property>,
    #[serde(default)]
    pub format: KafkaFormat,
    pub dead_letter_topic: Option<Spanned<String>>,
}

/// A sink of type `kafka` (checked in `kafka`).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct KafkaSinkFile {
    pub brokers: Option<Spanned<Brokers>>,
    pub topic: Option<Spanned<String>>,
    pub topic_header: Option<Spanned<String>>,
    #[serde(default)]
    pub properties: BTreeMap<Spanned<String>, Property>,
    #[serde(default)]
    pub compression: KafkaCompression,
    pub dead_letter_topic: Option<Spanned<String>>,
    #[serde(default)]
    pub start: Start,
}

/// A sink of type `postgres` (checked in `db`).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct PostgresSinkFile {
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub table: Option<Spanned<String>>,
    /// Column → field source.
    pub columns: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub mode: Option<Spanned<String>>,
    pub conflict: Option<Spanned<Vec<Spanned<String>>>>,
    pub batch_size: Option<Spanned<usize>>,
    pub linger: Option<Dur>,
    pub dead_letter_topic: Option<Spanned<String>>,
    #[serde(default)]
    pub start: Start,
}

/// A sink of type `mongodb` (checked in `db`).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct MongoSinkFile {
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub database: Option<Spanned<String>>,
    pub collection: Option<Spanned<String>>,
    pub id: Option<Spanned<String>>,
    #[serde(default)]
    pub mode: MongoMode,
    pub fields: Option<Spanned<BTreeMap<Spanned<String>, Spanned<String>>>>,
    pub batch_size: Option<Spanned<usize>>,
    pub linger: Option<Dur>,
    pub dead_letter_topic: Option<Spanned<String>>,
    #[serde(default)]
    pub start: Start,
}

/// A source of type `postgres-cdc` (checked in `db`).
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) struct PostgresCdcFile {
    pub url: Option<Spanned<String>>,
    pub url_env: Option<Spanned<String>>,
    pub tables: Option<Spanned<Vec<Spanned<String>>>>,
    pub slot: Option<Spanned<String>>,
    pub publication: Option<Spanned<String>>,
    pub poll_interval: Option<Dur>,
    pub batch_size: Option<Spanned<usize>>,
}

/// Kafka's `brokers`: a string of `host:port` separated by commas, or a list of them; the
/// entries as written.
pub(super) struct Brokers(pub Vec<String>);

impl<'de> Deserialize<'de> for Brokers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct List;

        impl<'de> Visitor<'de> for List {
            type Value = Brokers;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(
                    "brokers as a string \"host:port,host:port\" or a list of \"host:port\"",
                )
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Brokers, E> {
                Ok(Brokers(vec![v.to_owned()]))
            }

            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Brokers, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<String>()? {
                    out.push(b);
                }
                Ok(Brokers(out))
            }
        }

        d.deserialize_any(List)
    }
}

/// Kafka's `start`: a string, or a TOML date-time (`start = 2026-11-30T08:00:00Z`) as it is
/// written.
pub(super) struct Time(pub String);

impl<'de> Deserialize<'de> for Time {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;

        impl<'de> Visitor<'de> for Text {
            type Value = Time;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("\"earliest\", \"latest\" or a time")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Time, E> {
                Ok(Time(v.to_owned()))
            }

            // A TOML date-time is a map of one private key to its text.
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Time, A::Error> {
                let t =
                    toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(Time(t.to_string()))
            }
        }

        d.deserialize_any(Text)
    }
}

/// A librdkafka setting's value: a string, an integer or a boolean, as text.
pub(super) struct Property(pub String);

impl<'de> Deserialize<'de> for Property {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Text;

        impl<'de> Visitor<'de> for Text {
            type Value = Property;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, an integer or a boolean")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Property, E> {
                Ok(Property(v.to_owned()))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Property, E> {
                Ok(Property(v.to_string()))
            }

            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<Property, A::Error> {
                Err(de::Error::custom(
                    "a property is a string, an integer or a boolean, not a table; quote a name with dots in it: \"security.protocol\" = \"SASL_SSL\"",
                ))
            }
        }

        d.deserialize_any(Text)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// A plugin config value: strings as they are, numbers and booleans as written.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum Scalar {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl Scalar {
    pub fn into_string(self) -> String {
        match self {
            Scalar::Str(s) => s,
            Scalar::Int(i) => i.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// A duration written as `"250ms"`, `"1s"`, `"5m"`.
pub(super) struct Dur(pub Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map(Dur).map_err(|e| {
            de::Error::custom(format!(
                "{s:?} is not a duration ({e}); write e.g. \"250ms\", \"1s\" or \"5m\""
            ))
        })
    }
}

/// A byte size written as `"64MiB"` or a number of bytes.
pub(super) struct Size(pub usize);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(u64),
            S(String),
        }
        match Raw::deserialize(d).map_err(|_: D::Error| {
            de::Error::custom("expected a size: a number of bytes or a string such as \"64MiB\"")
        })? {
            Raw::N(n) => Ok(Size(n as usize)),
            Raw::S(s) => crate::units::parse_size(&s)
                .map(Size)
                .map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key table is the shapes' fields, as the file spells them, in their order.
    #[test]
    fn the_keys_of_a_table_are_the_fields_of_its_shape() {
        assert_eq!(
            top_keys(),
            [
                "name",
                "delivery",
                "commit-interval",
                "log",
                "http",
                "limits",
                "topics",
                "sources",
                "stages",
                "sinks"
            ]
        );
        assert_eq!(fields::<SourceFile>(), ["type", "topic"]);
        assert_eq!(
            fields::<RetryFile>(),
            ["attempts", "backoff", "max-backoff"]
        );
        assert_eq!(fields::<StageFile>().len(), 30);
        assert!(fields::<StageFile>().contains(&"max-traps-per-minute"));
        let kinds = |k: Kinds| k.iter().map(|(n, f)| (*n, f())).collect::<Vec<_>>();
        assert_eq!(
            kinds(SINK_KINDS),
            [
                ("file", &["path", "start"][..]),
                ("stdout", &["start"][..]),
                (
                    "kafka",
                    &[
                        "brokers",
                        "topic",
                        "topic-header",
                        "properties",
                        "compression",
                        "dead-letter-topic",
                        "start"
                    ][..]
                ),
                (
                    "postgres",
                    &[
                        "url",
                        "url-env",
                        "table",
                        "columns",
                        "mode",
                        "conflict",
                        "batch-size",
                        "linger",
                        "dead-letter-topic",
                        "start"
                    ][..]
                ),
                (
                    "mongodb",
                    &[
                        "url",
                        "url-env",
                        "database",
                        "collection",
                        "id",
                        "mode",
                        "fields",
                        "batch-size",
                        "linger",
                        "dead-letter-topic",
                        "start"
                    ][..]
                )
            ]
        );
        assert_eq!(kinds(SOURCE_KINDS)[1], ("stdin", &[][..]));
    }

    /// A key every table takes is never reported unknown: each table of a file that sets every
    /// key of every shape is read without an unknown-key problem.
    #[test]
    fn a_file_with_every_key_has_no_unknown_key() {
        use crate::config::testing::Files;
        let f = Files::new();
        let text = r#"
name = "all"
delivery = "exactly-once"
commit-interval = "1s"
[log]
sync = "never"
[http]
listen = "127.0.0.1:0"
token-env = "T"
admin-token-env = "A"
ingest-token-env = "I"
admin = false
max-body = "1MiB"
max-inflight = "1MiB"
max-lag = 5
[limits]
max-key-bytes = 10
max-value-bytes = 10
max-headers = 10
max-header-bytes = 10
[topics.in]
partitions = 2
segment-bytes = "1MiB"
segment-age = "1h"
retention-bytes = "1GiB"
retention-age = "1day"
external = true
[sources.f]
type = "file"
topic = "a"
path = "events.ndjson"
[sources.g]
type = "generator"
topic = "b"
count = 1
rate = 1
size = 100
[sources.s]
type = "stdin"
topic = "c"
[sources.h]
type = "http"
topic = "d"
[stages.w]
plugin = "p.wasm"
input = "in"
route = { header = "h", topics = { x = "o" }, default = "o" }
mode = "event"
batch-size = 1
linger = "1ms"
parallelism = 1
memory = "1MiB"
timeout = "1s"
max-outputs-per-event = 1
max-output-bytes = 1
max-log-rate = 1
max-log-burst = 1
config = { k = "v" }
on-error = "retry"
retry = { attempts = 1, backoff = "1s", max-backoff = "1s" }
dead-letter-topic = "dl"
max-traps-per-minute = 1
start = "latest"
state = true
max-state-bytes = 1
max-key-bytes = 1
max-value-bytes = 1
max-headers = 1
max-header-bytes = 1
window = { kind = "hopping", size = "2s", slide = "1s", gap = "1s" }
out-of-orderness = "1s"
allowed-lateness = "1s"
late-output = "late"
[sinks.f]
type = "file"
input = "o"
path = "out.ndjson"
start = "latest"
[sinks.o]
type = "stdout"
input = "o"
start = "earliest"
"#;
        let c = f.ok(text);
        assert_eq!(c.name, "all");
    }
}
