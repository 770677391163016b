//! Watches the pipeline file and the plugin files (debounced) and applies what changed: a new
//! plugin file is swapped in; an edited pipeline file is applied as a diff. A change that cannot
//! be applied (a bad file, a plugin that fails to load or start) is logged and counted, and what
//! runs keeps running.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify_debouncer_mini::notify::RecursiveMode;
use notify_debouncer_mini::{DebounceEventResult, new_debouncer};

use crate::flow::with_sources;
use crate::pipeline::{Running, reload};

/// How long changes to a file are gathered before acting on them.
pub const DEBOUNCE: Duration = Duration::from_millis(50);

fn watched_files(running: &Running) -> BTreeSet<PathBuf> {
    let config = running.config();
    let mut files: BTreeSet<PathBuf> = config.stages.iter().map(|s| s.plugin.clone()).collect();
    files.insert(config.path.clone());
    files.into_iter().map(|f| absolute(&f)).collect()
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Why [`spawn`] started no watcher.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WatchError {
    /// The file watcher could not be made.
    #[error(transparent)]
    Watcher(#[from] notify::Error),
    /// Its thread could not be started.
    #[error(transparent)]
    Thread(#[from] std::io::Error),
}

/// Starts the watcher thread; it ends when the pipeline stops.
pub fn spawn(running: Arc<Running>) -> Result<std::thread::JoinHandle<()>, WatchError> {
    let (tx, rx) = std::sync::mpsc::channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(DEBOUNCE, tx)?;
    // Directories are watched (editors and `cp` replace files); events are filtered by path.
    let mut dirs = BTreeSet::new();
    let watch_dirs = |debouncer: &mut notify_debouncer_mini::Debouncer<_>,
                      dirs: &mut BTreeSet<PathBuf>,
                      files: &BTreeSet<PathBuf>| {
        for f in files {
            if let Some(d) = f.parent()
                && dirs.insert(d.to_path_buf())
                && let Err(e) = debouncer.watcher().watch(d, RecursiveMode::NonRecursive)
            {
                tracing::warn!(dir = %d.display(), "cannot watch for changes: {e}");
            }
        }
    };
    let mut files = watched_files(&running);
    watch_dirs(&mut debouncer, &mut dirs, &files);
    let handle = std::thread::Builder::new()
        .name("reload watcher".into())
        .spawn(move || {
            while !running.stopping() {
                let events = match rx.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(events)) => events,
                    Ok(Err(e)) => {
                        tracing::warn!("file watcher: {e}");
                        continue;
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                };
                let changed: Vec<&PathBuf> = events
                    .iter()
                    .map(|e| &e.path)
                    .filter(|p| files.contains(&absolute(p)))
                    .collect();
                if changed.is_empty() {
                    continue;
                }
                tracing::info!(files = ?changed, "files changed; reloading");
                match reload(&running) {
                    Ok(done) if done.is_empty() => {}
                    Ok(done) => tracing::info!(changes = ?done, "reloaded"),
                    Err(e) => tracing::error!(
                        "reload refused, the running pipeline is unchanged where it failed: {}",
                        with_sources(&e)
                    ),
                }
                files = watched_files(&running);
                watch_dirs(&mut debouncer, &mut dirs, &files);
            }
            drop(debouncer);
        })?;
    Ok(handle)
}
