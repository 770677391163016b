//! Compiled code cached on disk by content hash.
//!
//! A file is `<sha256 of the component>-<engine compatibility hash>.cwasm` under the cache
//! directory, written to a temporary name and renamed into place. Only Flowgate writes there
//! (the directory is created private to the user); a file that fails to load is compiled anew
//! and replaced.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;

/// The on-disk cache of compiled components.
#[derive(Debug, Clone)]
pub(crate) struct CodeCache {
    dir: PathBuf,
    engine_key: String,
}

impl CodeCache {
    pub(crate) fn new(dir: PathBuf, engine: &Engine) -> std::io::Result<Self> {
        std::fs::create_dir_all(&dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        Ok(CodeCache {
            dir,
            engine_key: format!("{:016x}", h.finish()),
        })
    }

    fn path(&self, hash: &str) -> PathBuf {
        self.dir.join(format!("{hash}-{}.cwasm", self.engine_key))
    }

    /// The cached component for `hash`, if there is a loadable one.
    pub(crate) fn load(&self, engine: &Engine, hash: &str) -> Option<Component> {
        let path = self.path(hash);
        if !path.exists() {
            return None;
        }
        // Read into memory rather than mapped: a mapped file truncated under a running process
        // would crash it; a copy cannot be changed from outside.
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read a compiled-code cache entry; recompiling");
                return None;
            }
        };
        // SAFETY: the file is compiled code that this cache wrote (see the module docs), under
        // a directory only this user can write; wasmtime checks its header and engine version.
        match unsafe { Component::deserialize(engine, &bytes) } {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "compiled-code cache entry unusable; recompiling");
                None
            }
        }
    }

    /// Stores a compiled component. Failure is logged, not fatal: the cache only saves time.
    pub(crate) fn store(&self, hash: &str, component: &Component) {
        let path = self.path(hash);
        let result = component
            .serialize()
            .map_err(std::io::Error::other)
            .and_then(|bytes| write_atomic(&path, &bytes));
        if let Err(e) = result {
            tracing::warn!(path = %path.display(), error = %e, "could not write the compiled-code cache");
        }
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(bytes)?;
    tmp.1.sync_all()?;
    std::fs::rename(&tmp.0, path)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    let name = format!(
        ".tmp-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    );
    let path = dir.join(name.replace(['(', ')'], ""));
    let file = std::fs::File::create(&path)?;
    Ok((path, file))
}
