//! The pipeline file (TOML): parsing, and every check that can be made before running.
//!
//! Parsing collects every problem it can find in one pass, each with its line and column and
//! what to write instead: unknown keys (with the closest known key), values of the wrong type,
//! a stage reading a topic nobody writes, cycles, missing plugin files. Loading each plugin to
//! check its world is `pipeline::check_plugins`, since it needs a runtime; whether a loaded plugin
//! fits its stage is [`StageConfig::accepts`].
//!
//! By concern, each file using only those before it:
//!
//! - `types`: the pipeline as the rest of the host sees it ([`PipelineConfig`] and its parts);
//! - `span`: [`Problem`]s, their lines and columns, and the collector every check reports to;
//! - `keys`: the serde shape of each table and the key table derived from those shapes (the
//!   keys each table takes, and the closest known key for one it does not);
//! - `kafka`: the settings of Kafka sources and sinks, read and checked;
//! - `db`: the settings of the PostgreSQL and MongoDB sinks and of the PostgreSQL change source;
//! - `graph`: the checks of the whole pipeline (`validate`): who writes and who reads each
//!   topic, cycles, parallelism, topic names;
//! - `parse`: [`PipelineConfig::load`] (a [`PipelineFileError`] when the file cannot be read
//!   or has problems) and [`PipelineConfig::parse`], which walk the file table by table and then
//!   call `validate`.
//!
//! Every key and its default is listed in `docs/pipeline.md`.

mod db;
mod graph;
mod kafka;
mod keys;
mod parse;
mod span;
#[cfg(test)]
mod testing;
mod types;

pub use parse::PipelineFileError;
pub use span::{Problem, Problems};
pub use types::{
    DbUrl, Delivery, FieldSource, HttpConfig, KafkaCompression, KafkaFormat, KafkaLog, KafkaSink,
    KafkaSinkTopic, KafkaSource, KafkaStart, KafkaTopics, Misfit, Mode, MongoMode, MongoSink,
    OnError, Output, PipelineConfig, PostgresCdcSource, PostgresMode, PostgresSink, RetryConfig,
    SinkConfig, SinkKind, SourceConfig, SourceKind, StageConfig, Start, TopicSpec, redact_url,
};
