//! Watches the pipeline file and the plugin files (debounced) and applies what changed.
