//! Object files: one file per large object, `objects/<2 hex>/<62 hex>`, holding its frame.
//!
//! A file is written under `objects/tmp/` and renamed into place, so a file at its final
//! name is always complete (after a crash, at worst a stray temporary file remains,
//! removed at the next open). Files written since the last sync are fsynced, with their
//! directories, by [`Objects::sync`].

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::blob::Digest;
use crate::error::{Error, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// fsyncs a directory (so a rename or a new file in it is durable).
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    fs::File::open(dir).and_then(|f| f.sync_all()).map_err(io(dir))
}

/// Creates `dir` and its missing parents, fsyncing the parent of each directory it
/// creates: a new directory's name is durable only once its parent is fsynced, and
/// without this a power loss after a store's first sync could take the whole store.
pub(crate) fn create_dir_durable(dir: &Path) -> Result<()> {
    let mut created = Vec::new();
    let mut p = dir;
    while !p.exists() {
        created.push(p.to_path_buf());
        match p.parent() {
            Some(q) if !q.as_os_str().is_empty() => p = q,
            _ => break,
        }
    }
    fs::create_dir_all(dir).map_err(io(dir))?;
    for d in created.iter().rev() {
        match d.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => fsync_dir(parent)?,
            _ => fsync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// fsyncs every file and directory below `dir` (sled's own files, which its `flush`
/// does not fsync).
pub(crate) fn fsync_tree(dir: &Path) -> Result<()> {
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let path = entry.path();
        let ty = entry.file_type().map_err(io(&path))?;
        if ty.is_dir() {
            fsync_tree(&path)?;
        } else if ty.is_file() {
            // sled may delete a file (an old snapshot) between listing and opening it.
            match fs::File::open(&path) {
                Ok(f) => f.sync_all().map_err(io(&path))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&path)(e)),
            }
        }
    }
    fsync_dir(dir)
}

/// How long a lock that another handle holds is waited for before giving up. A handle
/// may hold a lock a moment after it is closed: a child process started meanwhile holds
/// a copy of every descriptor of its parent from its fork to its exec, and sled closes
/// its file in background threads.
pub(crate) const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Takes the exclusive `flock` on `file`, waiting up to [`LOCK_WAIT`] for another
/// holder to let go. `Ok(false)`: still held by another handle.
pub(crate) fn lock_within(file: &fs::File) -> std::io::Result<bool> {
    lock_waiting(|| file.try_lock())
}

/// Takes a shared `flock` on `file` (readers share it; a writer's exclusive lock excludes
/// them), waiting as [`lock_within`] does. A file opened read-only can be locked.
pub(crate) fn lock_shared_within(file: &fs::File) -> std::io::Result<bool> {
    lock_waiting(|| file.try_lock_shared())
}

fn lock_waiting(try_lock: impl Fn() -> Result<(), fs::TryLockError>) -> std::io::Result<bool> {
    let start = std::time::Instant::now();
    loop {
        match try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(e),
        }
    }
}

/// The directory of object files.
pub(crate) struct Objects {
    dir: PathBuf,
    unsynced: Mutex<Vec<PathBuf>>,
    counter: AtomicU64,
}

impl Objects {
    /// The object files under `dir`. Nothing is created until the first object is written
    /// (a store of small values has no `objects/` directory).
    pub(crate) fn open(dir: &Path) -> Result<Objects> {
        Ok(Objects { dir: dir.to_path_buf(), unsynced: Mutex::new(Vec::new()), counter: AtomicU64::new(0) })
    }

    pub(crate) fn path_of(&self, d: &Digest) -> PathBuf {
        let hex = d.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// Writes the frame of a new object (complete before it appears at its name).
    pub(crate) fn write(&self, d: &Digest, frame: &[u8]) -> Result<()> {
        let path = self.path_of(d);
        let parent = path.parent().map(Path::to_path_buf).unwrap_or_else(|| self.dir.clone());
        if !self.dir.exists() {
            // Its name in the store directory durable at once (the sync fsyncs the rest).
            create_dir_durable(&self.dir)?;
        }
        fs::create_dir_all(&parent).map_err(io(&parent))?;
        let tmp_dir = self.dir.join("tmp");
        fs::create_dir_all(&tmp_dir).map_err(io(&tmp_dir))?;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let tmp = tmp_dir.join(format!("{}.{}.{n}", d.to_hex(), std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
        f.write_all(frame).map_err(io(&tmp))?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io(&path))?;
        let mut unsynced = self.unsynced.lock().unwrap_or_else(PoisonError::into_inner);
        unsynced.push(path);
        unsynced.push(parent);
        Ok(())
    }

    /// Reads an object's frame.
    pub(crate) fn read(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.path_of(d);
        fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::Corrupted { what: format!("object {d}"), reason: format!("file {} is missing", path.display()) }
            } else {
                Error::Io { path, source: e }
            }
        })
    }

    /// Deletes an object's file (absent is fine).
    pub(crate) fn remove(&self, d: &Digest) -> Result<()> {
        let path = self.path_of(d);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::Io { path, source: e }),
        }
    }

    /// fsyncs the files written since the last call, and their directories.
    pub(crate) fn sync(&self) -> Result<()> {
        let mut paths = std::mem::take(&mut *self.unsynced.lock().unwrap_or_else(PoisonError::into_inner));
        paths.sort();
        paths.dedup();
        for p in &paths {
            match fs::File::open(p) {
                Ok(f) => f.sync_all().map_err(io(p))?,
                // Removed again since (an object written and dropped between syncs).
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(p)(e)),
            }
        }
        if !paths.is_empty() {
            fsync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Every object file: its digest (from its name), path and length. Names that are
    /// not digests are reported with `None`.
    pub(crate) fn list(&self) -> Result<Vec<(Option<Digest>, PathBuf, u64)>> {
        let mut out = Vec::new();
        let Ok(top) = fs::read_dir(&self.dir) else {
            return Ok(out);
        };
        for sub in top {
            let sub = sub.map_err(io(&self.dir))?;
            let name = sub.file_name().to_string_lossy().into_owned();
            if name == "tmp" || !sub.file_type().map_err(io(&sub.path()))?.is_dir() {
                continue;
            }
            for f in fs::read_dir(sub.path()).map_err(io(&sub.path()))? {
                let f = f.map_err(io(&sub.path()))?;
                let rest = f.file_name().to_string_lossy().into_owned();
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                out.push((Digest::from_hex(&format!("{name}{rest}")), f.path(), len));
            }
        }
        Ok(out)
    }

    /// The number of temporary files (left by interrupted writes, or being written).
    pub(crate) fn tmp_files(&self) -> Result<usize> {
        let tmp = self.dir.join("tmp");
        match fs::read_dir(&tmp) {
            Ok(entries) => Ok(entries.count()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io(&tmp)(e)),
        }
    }

    /// Deletes temporary files left by an interrupted write.
    pub(crate) fn clean_tmp(&self) -> Result<usize> {
        let tmp = self.dir.join("tmp");
        let mut n = 0;
        if let Ok(entries) = fs::read_dir(&tmp) {
            for e in entries {
                let e = e.map_err(io(&tmp))?;
                fs::remove_file(e.path()).map_err(io(&e.path()))?;
                n += 1;
            }
        }
        Ok(n)
    }
}
