//! The file layer under the log: the real file system, and a fault-injecting in-memory one for
//! crash tests.
//!
//! The log does all its I/O through [`Storage`] and [`StorageFile`], so a test can run the very
//! same code over [`FaultyStorage`], crash it at any point (dropping unsynced bytes, tearing the
//! last write at 512-byte or 4-KiB boundaries, leaving a garbage or zero-filled tail) and fail
//! writes (`ENOSPC`) or syncs (`EIO`) on demand.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A file of the log.
#[expect(
    clippy::len_without_is_empty,
    reason = "mirrors std::fs::File, which has no is_empty either"
)]
pub trait StorageFile: Send + Sync {
    /// Current length.
    fn len(&self) -> io::Result<u64>;
    /// Reads exactly `buf.len()` bytes at `offset`.
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes the data durable (`fdatasync`).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates or extends the file.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// When the file's data last changed, in milliseconds since the Unix epoch.
    fn modified_ms(&self) -> io::Result<i64>;
}

/// Milliseconds since the Unix epoch of a system time.
fn epoch_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A directory tree the log lives in.
pub trait Storage: Send + Sync + fmt::Debug {
    /// Creates a directory and its parents.
    fn create_dir_all(&self, path: &Path) -> io::Result<()>;
    /// Names of the entries of a directory (files and directories).
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// True if the path exists.
    fn exists(&self, path: &Path) -> bool;
    /// Opens a file for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Renames a file, replacing the target.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Makes a directory's entries durable (after create, rename, remove).
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on `dir`, held until the returned guard drops. Fails with
    /// `WouldBlock` when another process holds it; the error message names the holder.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>>;
}

/// Writes `bytes` to `path` atomically: temp file, sync, rename, sync the directory.
pub fn write_atomic(storage: &dyn Storage, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("tmp");
    let file = storage.open(&tmp, true)?;
    file.set_len(0)?;
    file.write_all_at(bytes, 0)?;
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, path)?;
    storage.sync_dir(dir)
}

/// Reads a whole file.
pub fn read_all(storage: &dyn Storage, path: &Path) -> io::Result<Vec<u8>> {
    let file = storage.open(path, false)?;
    let mut buf = vec![0; file.len()? as usize];
    file.read_exact_at(&mut buf, 0)?;
    Ok(buf)
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsStorage;

struct OsFile(std::fs::File);

impl StorageFile for OsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, offset)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn modified_ms(&self) -> io::Result<i64> {
        Ok(epoch_ms(self.0.metadata()?.modified()?))
    }
}

impl Storage for OsStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        std::fs::read_dir(dir)?
            .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect()
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(OsFile(file)))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        use std::io::{Read, Seek, Write};
        let path = dir.join("LOCK");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        // A lock just released can still be held for a moment by a child process forked
        // (and not yet exec'd) while it was held, so a busy lock is retried briefly before it
        // counts as another owner's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut holder = String::new();
                    let _ = file.read_to_string(&mut holder);
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!("held by process {}", holder.trim()),
                    ));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        file.set_len(0)?;
        file.seek(io::SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        Ok(Box::new(file))
    }
}

/// How a crash leaves each file's unsynced bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// Every byte not synced is lost.
    DropUnsynced,
    /// The unsynced tail survives up to a multiple of this many bytes (512, 4096: sectors and
    /// pages reaching the disk in order, the last one torn).
    Tear(u64),
    /// The unsynced tail is replaced by this many bytes of garbage.
    GarbageTail(usize),
    /// The unsynced tail is replaced by this many zero bytes (the size reached the disk, the
    /// data did not).
    ZeroTail(usize),
}

#[derive(Debug, Default)]
struct MemFile {
    /// Wall time of the last change, ms.
    modified: i64,
    data: Vec<u8>,
    /// The contents as of the last sync: what survives a crash.
    durable: Vec<u8>,
}

#[derive(Debug, Default)]
struct Faults {
    /// Writes fail with ENOSPC after this many more bytes (the failing write is partial).
    space_left: Option<u64>,
    /// Syncs fail with EIO while set.
    fail_sync: bool,
    /// A crash to take right after this many more writes, and how.
    crash_after: Option<(u64, CrashMode, u64)>,
    /// The state that crash left, and the unsynced bytes there were when it happened.
    crashed: Option<(FaultyStorage, u64)>,
}

#[derive(Debug, Default)]
struct MemFs {
    files: BTreeMap<PathBuf, Arc<Mutex<MemFile>>>,
    dirs: std::collections::BTreeSet<PathBuf>,
    faults: Faults,
    locked: std::collections::BTreeSet<PathBuf>,
}

/// An in-memory file system that models what survives a crash, with injectable faults.
///
/// Directory operations (create, rename, remove) are durable at once; file data is durable
/// only once synced.
#[derive(Clone, Debug, Default)]
pub struct FaultyStorage {
    fs: Arc<Mutex<MemFs>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct FaultyFile {
    file: Arc<Mutex<MemFile>>,
    fs: Arc<Mutex<MemFs>>,
}

impl StorageFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.file).data.len() as u64)
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        let f = lock(&self.file);
        let start = offset as usize;
        let end = start + buf.len();
        if end > f.data.len() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "read past end",
            ));
        }
        buf.copy_from_slice(&f.data[start..end]);
        Ok(())
    }

    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        let mut allowed = buf.len();
        let mut full = false;
        {
            let mut fs = lock(&self.fs);
            if let Some(left) = fs.faults.space_left.as_mut() {
                if (buf.len() as u64) > *left {
                    allowed = *left as usize;
                    full = true;
                }
                *left -= allowed as u64;
            }
        }
        let mut f = lock(&self.file);
        let start = offset as usize;
        let end = start + allowed;
        if f.data.len() < end {
            f.data.resize(end, 0);
        }
        f.data[start..end].copy_from_slice(&buf[..allowed]);
        f.modified = epoch_ms(std::time::SystemTime::now());
        drop(f);
        if full {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        let crash = {
            let mut fs = lock(&self.fs);
            match fs.faults.crash_after.as_mut() {
                Some((1, mode, noise)) => {
                    let at = (*mode, *noise);
                    fs.faults.crash_after = None;
                    Some(at)
                }
                Some((n, _, _)) => {
                    *n -= 1;
                    None
                }
                None => None,
            }
        };
        if let Some((mode, noise)) = crash {
            let before = FaultyStorage {
                fs: self.fs.clone(),
            };
            let unsynced = before.unsynced_bytes();
            let after = before.crash(mode, noise);
            lock(&self.fs).faults.crashed = Some((after, unsynced));
        }
        Ok(())
    }

    fn sync_data(&self) -> io::Result<()> {
        {
            let fs = lock(&self.fs);
            if fs.faults.fail_sync {
                return Err(io::Error::from_raw_os_error(5)); // EIO
            }
        }
        let mut f = lock(&self.file);
        f.durable = f.data.clone();
        Ok(())
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        lock(&self.file).data.resize(len as usize, 0);
        Ok(())
    }

    fn modified_ms(&self) -> io::Result<i64> {
        Ok(lock(&self.file).modified)
    }
}

impl FaultyStorage {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes writes fail with `ENOSPC` once `bytes` more bytes were written (`None`: no limit).
    pub fn set_space_left(&self, bytes: Option<u64>) {
        lock(&self.fs).faults.space_left = bytes;
    }

    /// Makes every sync fail with `EIO` (or stop failing).
    pub fn set_fail_sync(&self, fail: bool) {
        lock(&self.fs).faults.fail_sync = fail;
    }

    /// Arranges a crash right after the `writes`-th next write, before anything syncs it: the
    /// state it leaves is taken with [`crash`](Self::crash) and kept for [`crashed`](Self::crashed).
    pub fn crash_after_writes(&self, writes: u64, mode: CrashMode, noise: u64) {
        lock(&self.fs).faults.crash_after = Some((writes.max(1), mode, noise));
    }

    /// The state left by the crash arranged with [`crash_after_writes`](Self::crash_after_writes),
    /// once it happened, and how many bytes were unsynced at that moment.
    pub fn crashed(&self) -> Option<(FaultyStorage, u64)> {
        lock(&self.fs).faults.crashed.clone()
    }

    /// Bytes written but not synced, over all files.
    pub fn unsynced_bytes(&self) -> u64 {
        let fs = lock(&self.fs);
        fs.files
            .values()
            .map(|f| {
                let f = lock(f);
                f.data.len().saturating_sub(f.durable.len()) as u64
            })
            .sum()
    }

    /// What a machine crash would leave: a new storage whose files hold their durable bytes,
    /// plus what `mode` does with the unsynced tail (of files that grew since their last sync).
    /// `noise` seeds the garbage. Faults and locks are not carried over.
    pub fn crash(&self, mode: CrashMode, noise: u64) -> FaultyStorage {
        let fs = lock(&self.fs);
        let mut files = BTreeMap::new();
        let mut seed = noise | 1;
        for (path, file) in &fs.files {
            let f = lock(file);
            let mut data = f.durable.clone();
            let grew = f.data.len() > f.durable.len() && f.data.starts_with(&f.durable);
            if grew {
                let tail = &f.data[f.durable.len()..];
                match mode {
                    CrashMode::DropUnsynced => {}
                    CrashMode::Tear(block) => {
                        let end = f.data.len() as u64;
                        let keep_to = (end / block) * block;
                        let keep = keep_to.saturating_sub(f.durable.len() as u64) as usize;
                        data.extend_from_slice(&tail[..keep.min(tail.len())]);
                    }
                    CrashMode::GarbageTail(n) => data.extend((0..n).map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })),
                    CrashMode::ZeroTail(n) => data.resize(data.len() + n, 0),
                }
            }
            files.insert(
                path.clone(),
                Arc::new(Mutex::new(MemFile {
                    modified: f.modified,
                    durable: data.clone(),
                    data,
                })),
            );
        }
        FaultyStorage {
            fs: Arc::new(Mutex::new(MemFs {
                files,
                dirs: fs.dirs.clone(),
                ..MemFs::default()
            })),
        }
    }
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{}: no such file", path.display()),
    )
}

impl Storage for FaultyStorage {
    fn create_dir_all(&self, path: &Path) -> io::Result<()> {
        let mut fs = lock(&self.fs);
        for a in path.ancestors() {
            fs.dirs.insert(a.to_owned());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let fs = lock(&self.fs);
        if !fs.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        let files = fs.files.keys().filter(|p| p.parent() == Some(dir));
        let dirs = fs.dirs.iter().filter(|p| p.parent() == Some(dir));
        Ok(files
            .chain(dirs)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn exists(&self, path: &Path) -> bool {
        let fs = lock(&self.fs);
        fs.files.contains_key(path) || fs.dirs.contains(path)
    }

    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn StorageFile>> {
        let mut fs = lock(&self.fs);
        let file = match fs.files.get(path) {
            Some(f) => f.clone(),
            None if create => {
                let parent = path.parent().unwrap_or(Path::new(""));
                if !fs.dirs.contains(parent) {
                    return Err(not_found(parent));
                }
                let f = Arc::new(Mutex::new(MemFile::default()));
                fs.files.insert(path.to_owned(), f.clone());
                f
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(FaultyFile {
            file,
            fs: self.fs.clone(),
        }))
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        lock(&self.fs)
            .files
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| not_found(path))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut fs = lock(&self.fs);
        let f = fs.files.remove(from).ok_or_else(|| not_found(from))?;
        fs.files.insert(to.to_owned(), f);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn Send + Sync>> {
        struct Guard(Arc<Mutex<MemFs>>, PathBuf);
        impl Drop for Guard {
            fn drop(&mut self) {
                lock(&self.0).locked.remove(&self.1);
            }
        }
        if !lock(&self.fs).locked.insert(dir.to_owned()) {
            return Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                "held by another log in this process",
            ));
        }
        Ok(Box::new(Guard(self.fs.clone(), dir.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_keeps_synced_bytes_and_treats_the_tail_as_told() {
        let s = FaultyStorage::new();
        s.create_dir_all(Path::new("/d")).unwrap();
        let f = s.open(Path::new("/d/f"), true).unwrap();
        f.write_all_at(&[1; 1000], 0).unwrap();
        f.sync_data().unwrap();
        f.write_all_at(&[2; 5000], 1000).unwrap();
        let len = |s: &FaultyStorage| s.open(Path::new("/d/f"), false).unwrap().len().unwrap();
        assert_eq!(len(&s.crash(CrashMode::DropUnsynced, 0)), 1000);
        assert_eq!(len(&s.crash(CrashMode::Tear(512), 0)), 5632);
        assert_eq!(len(&s.crash(CrashMode::Tear(4096), 0)), 4096);
        assert_eq!(len(&s.crash(CrashMode::GarbageTail(7), 0)), 1007);
        assert_eq!(len(&s.crash(CrashMode::ZeroTail(4096), 0)), 5096);
    }

    #[test]
    fn full_disk_writes_part_and_fails_and_failed_syncs_keep_nothing() {
        let s = FaultyStorage::new();
        s.create_dir_all(Path::new("/d")).unwrap();
        let f = s.open(Path::new("/d/f"), true).unwrap();
        s.set_space_left(Some(10));
        let err = f.write_all_at(&[1; 20], 0).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(28));
        assert_eq!(f.len().unwrap(), 10);
        s.set_space_left(None);
        s.set_fail_sync(true);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(5));
        let after = s.crash(CrashMode::DropUnsynced, 0);
        assert_eq!(
            after.open(Path::new("/d/f"), false).unwrap().len().unwrap(),
            0
        );
    }
}
