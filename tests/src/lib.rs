//! Test support: the plugins under `plugins/`, built by this crate's build script, and helpers
//! shared by the integration tests and benchmarks.
#![deny(missing_docs)]

use std::path::PathBuf;

use flowgate::event::Event;
use flowgate::runtime::{Runtime, RuntimeConfig};

/// Paths of the built plugins, one constant per plugin.
pub mod plugins {
    include!(concat!(env!("OUT_DIR"), "/plugins.rs"));
}

/// A runtime with its compiled-code cache in a directory of its own under the target dir.
pub fn runtime() -> Runtime {
    Runtime::new(test_config()).expect("runtime")
}

/// The settings tests use: the default ones with a cache under `target/`.
pub fn test_config() -> RuntimeConfig {
    RuntimeConfig {
        cache_dir: Some(target_dir().join("flowgate-test-cache")),
        max_stage_instances: 32,
        ..RuntimeConfig::default()
    }
}

/// The workspace's target directory.
pub fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

/// An event with a text value, no key and no headers.
pub fn text(value: &str, timestamp: i64) -> Event {
    Event {
        key: None,
        value: value.as_bytes().to_vec(),
        timestamp,
        headers: Vec::new(),
    }
}
