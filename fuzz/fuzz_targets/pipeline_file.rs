//! Feeds arbitrary text to the pipeline-file parser and its checks: it must accept the file or
//! report problems, each with a line and column inside the text, and never panic.
#![no_main]

use std::path::Path;

use flowgate::config::PipelineConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A directory that holds no plugin, so checks of plugin files find nothing to load.
    let path = Path::new("/nonexistent-flowgate-fuzz/pipeline.toml");
    if let Err(problems) = PipelineConfig::parse(path, text) {
        let shown = problems.to_string();
        assert!(!shown.is_empty());
    }
});
