//! The store's lock: the `flock` on `LOCK`, the writer's pid in it, and the handles of
//! this process that hold a store.
//!
//! Invariant: while a handle holds a store's `LOCK` it is listed in this process's
//! registry under the store's directory, so a second open in the same process fails at
//! once, naming what holds the store, instead of waiting for a lock that cannot be let go;
//! a writer's pid is in `LOCK` while it holds the exclusive lock.

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, Weak};

use crate::error::{Error, LockHolder, Result};
use crate::index::{lock_shared_within, lock_within};

/// What a registered holder says about itself when a second open is refused.
pub(crate) trait Holder: Send + Sync {
    /// E.g. `an open Shelf held by 2 handles: 1 Shelf, 1 memo`, given how many handles
    /// (`Arc`s) hold it.
    fn describe(&self, handles: usize) -> String;
}

/// One lock held by this process.
struct Entry {
    id: u64,
    read_only: bool,
    /// The handle holding it, once it is built (`None`: being opened, or a repair).
    holder: Option<Weak<dyn Holder>>,
    /// What holds it while `holder` is `None`.
    label: &'static str,
}

/// The locks this process holds, by store directory.
static HELD: Mutex<Option<HashMap<PathBuf, Vec<Entry>>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn held<R>(f: impl FnOnce(&mut HashMap<PathBuf, Vec<Entry>>) -> R) -> R {
    let mut guard = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    f(guard.get_or_insert_with(HashMap::new))
}

/// A held lock on a store (released, and unlisted, when dropped).
pub(crate) struct StoreLock {
    /// `None`: a reader of a store without `LOCK` (nothing to lock, nothing listed).
    _file: Option<fs::File>,
    key: PathBuf,
    id: u64,
}

impl StoreLock {
    /// Names the handle that holds this lock, for the message of a refused second open.
    pub(crate) fn attach(&self, holder: Weak<dyn Holder>) {
        held(|m| {
            if let Some(e) = m.get_mut(&self.key).and_then(|v| v.iter_mut().find(|e| e.id == self.id)) {
                e.holder = Some(holder);
            }
        });
    }
}

impl Drop for StoreLock {
    fn drop(&mut self) {
        held(|m| {
            if let Some(v) = m.get_mut(&self.key) {
                v.retain(|e| e.id != self.id);
                if v.is_empty() {
                    m.remove(&self.key);
                }
            }
        });
    }
}

/// A live holder in this process that excludes a lock of this kind: `Some(description)`.
/// A holder whose handle is being dropped (closing) is not one: its lock is waited for.
fn holder_here(key: &Path, read_only: bool) -> Option<String> {
    held(|m| {
        m.get(key)?.iter().filter(|e| !(read_only && e.read_only)).find_map(|e| match &e.holder {
            Some(w) => w.upgrade().map(|h| h.describe(std::sync::Arc::strong_count(&h) - 1)),
            None => Some(e.label.to_owned()),
        })
    })
}

/// Locks the store in `dir`: a writer takes the exclusive `flock` on `LOCK` (created when
/// missing) and writes its pid into it; a reader opens `LOCK` read-only and takes a shared
/// one (so readers need no write access, share the store with other readers and exclude
/// writers); a store without `LOCK` is not locked by a reader. A holder in this process
/// is reported at once; one in another process is waited for (see
/// [`crate::index::lock_within`]). `label` says what takes the lock (e.g. `a repair`).
///
/// # Errors
/// [`Error::Locked`] naming the holder; [`Error::Io`].
pub(crate) fn take(dir: &Path, read_only: bool, label: &'static str) -> Result<StoreLock> {
    let lock_path = dir.join("LOCK");
    let key = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    if let Some(what) = holder_here(&key, read_only) {
        return Err(Error::Locked { path: lock_path, holder: LockHolder::ThisProcess(what) });
    }
    let opened =
        fs::OpenOptions::new().read(true).write(!read_only).create(!read_only).truncate(false).open(&lock_path);
    let file = match opened {
        Ok(f) => f,
        Err(e) if read_only && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(StoreLock { _file: None, key, id: 0 });
        }
        Err(e) => return Err(Error::Io { path: lock_path, source: e }),
    };
    let taken = if read_only { lock_shared_within(&file) } else { lock_within(&file) };
    match taken {
        Ok(true) => {}
        Ok(false) => {
            let holder = match holder_here(&key, read_only) {
                Some(what) => LockHolder::ThisProcess(what),
                None => other_holder(&file, read_only),
            };
            return Err(Error::Locked { path: lock_path, holder });
        }
        Err(e) => return Err(Error::Io { path: lock_path, source: e }),
    }
    if !read_only {
        // Best effort: the pid only makes another process's `Locked` message more
        // helpful; a store whose `LOCK` cannot be written (a full disk) still opens.
        let _ = file.set_len(0).and_then(|()| (&file).write_all(format!("{}\n", std::process::id()).as_bytes()));
    }
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    held(|m| m.entry(key.clone()).or_default().push(Entry { id, read_only, holder: None, label }));
    Ok(StoreLock { _file: Some(file), key, id })
}

/// Who holds `LOCK` in another process: a writer wanting the lock tells readers from a
/// writer by trying a shared lock; a writer's pid is read from the file.
fn other_holder(file: &fs::File, read_only: bool) -> LockHolder {
    if !read_only && file.try_lock_shared().is_ok() {
        let _ = file.unlock();
        return LockHolder::Readers;
    }
    let mut text = String::new();
    let pid = (&*file).read_to_string(&mut text).ok().and_then(|_| text.trim().parse::<u32>().ok());
    LockHolder::Writer { pid }
}
