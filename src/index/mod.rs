//! The storage layer: one sled tree holding keys, object records and metadata, plus
//! files of our own for large objects. The only module that names sled.
//!
//! Invariants:
//! - `refs(d)` in the object record of `d` equals the number of key records that point
//!   at `d`; the object record exists exactly while `refs(d) > 0`; key records and object
//!   records change together in one sled batch (or in one single-record write when no
//!   object record is involved), so every crash leaves them consistent.
//! - A large object's file is complete and in place (written to a temporary name, then
//!   renamed) before any record names it, and it is deleted only after a sync has made
//!   the removal of its record durable.
//! - Every record sled stores stays far below sled's blob threshold (a quarter of its
//!   512 KiB segment): inline frames are at most [`INLINE_MAX`] bytes, keys at most
//!   [`MAX_KEY_LEN`], and a sled leaf holds at most 17 records.
//!
//! `docs/FORMAT.md` describes every record byte by byte.

mod files;
mod records;

use std::collections::{BTreeMap, HashMap};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use crate::blob::Digest;
use crate::error::{Error, Result};
pub(crate) use files::Objects;
pub(crate) use records::{KeyRecord, ObjectRecord};

/// Largest frame stored inline in its key record; larger ones become object files.
pub(crate) const INLINE_MAX: usize = 4096;
/// Longest key, in UTF-8 bytes.
pub const MAX_KEY_LEN: usize = 1024;

const PREFIX_KEY: u8 = b'k';
const PREFIX_OBJECT: u8 = b'o';
const PREFIX_META: u8 = b'm';
const PREFIX_MEMO: u8 = b'x';

/// Runs a sled call, turning its errors and panics into [`Error::Engine`].
fn engine<T>(path: &Path, f: impl FnOnce() -> sled::Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Engine { path: path.to_path_buf(), message: e.to_string() }),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "panic".into());
            Err(Error::Engine { path: path.to_path_buf(), message: format!("sled panicked: {message}") })
        }
    }
}

/// A key space of the tree: the store's keys, or memoized results.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub(crate) enum Space {
    /// The store's keys (`k` + key).
    Keys,
    /// Memoized results (`x` + namespace + NUL + call key), whose records start with a
    /// [`MEMO_HEADER`]-byte header (see `docs/FORMAT.md`).
    Memo,
}

/// Length of the header of a memo record.
pub(crate) const MEMO_HEADER: usize = 16;

impl Space {
    fn prefix(self) -> u8 {
        match self {
            Space::Keys => PREFIX_KEY,
            Space::Memo => PREFIX_MEMO,
        }
    }

    fn header_len(self) -> usize {
        match self {
            Space::Keys => 0,
            Space::Memo => MEMO_HEADER,
        }
    }
}

/// Deletes `snap.*.generating` files: snapshots whose writing a crash cut short (sled writes
/// a snapshot under that name, fsyncs it, then renames it). sled 0.34 does not skip them: it
/// reads the highest-numbered `snap.*` file, so a torn one makes every later open fail with
/// "Read corrupted data". Deleting one loses nothing: the previous snapshot stays until the
/// rename, and sled replays its log from there. Called with the store's `LOCK` held.
fn remove_unfinished_snapshots(sled_dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(sled_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io { path: sled_dir.to_path_buf(), source: e }),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::Io { path: sled_dir.to_path_buf(), source: e })?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            let path = entry.path();
            std::fs::remove_file(&path).map_err(|e| Error::Io { path, source: e })?;
        }
    }
    Ok(())
}

fn key_of(key: &str) -> Vec<u8> {
    key_in(Space::Keys, key)
}

fn key_in(space: Space, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(space.prefix());
    k.extend_from_slice(key.as_bytes());
    k
}

fn object_key(d: &Digest) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = PREFIX_OBJECT;
    k[1..].copy_from_slice(d.as_bytes());
    k
}

fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![PREFIX_META];
    k.extend_from_slice(name.as_bytes());
    k
}

/// A stored value as the index sees it.
pub(crate) enum Stored {
    /// The frame is inside the key record.
    Inline { digest: Digest, frame: sled::IVec },
    /// The frame is in an object file.
    Object { digest: Digest },
}

impl Stored {
    pub(crate) fn digest(&self) -> Digest {
        match self {
            Stored::Inline { digest, .. } | Stored::Object { digest } => *digest,
        }
    }
}

/// What a key holds, as a batch being applied sees it.
#[derive(Clone, Copy)]
enum KeyState {
    Absent,
    Inline,
    Object(Digest),
}

/// One change of a write.
pub(crate) enum Op {
    /// Set `key` of `space` to the object with this digest and frame; `header` must be
    /// `space`'s header length.
    Put { space: Space, key: String, header: Vec<u8>, digest: Digest, frame: Vec<u8> },
    /// Remove `key` of `space`.
    Remove { space: Space, key: String },
}

impl Op {
    /// Sets a store key.
    pub(crate) fn put(key: String, digest: Digest, frame: Vec<u8>) -> Op {
        Op::Put { space: Space::Keys, key, header: Vec::new(), digest, frame }
    }

    /// Removes a store key.
    pub(crate) fn remove(key: String) -> Op {
        Op::Remove { space: Space::Keys, key }
    }
}

/// The store's sled tree and object files.
pub(crate) struct Index {
    path: PathBuf,
    db: sled::Db,
    objects: Objects,
    writer: Mutex<()>,
    /// Objects whose records were removed since the last sync: their files go at sync.
    doomed: Mutex<Vec<Digest>>,
    /// Number of object records. While it is 0 no key can point at an object, so a put
    /// of an inline value needs no read of the key's previous record. Changed only under
    /// the write lock.
    live_objects: AtomicU64,
    /// Shared by readers from reading a key record to reading its object file (see
    /// [`Index::pin_files`]); exclusive while the files of removed objects are deleted.
    files_in_use: RwLock<()>,
    generation: Mutex<u64>,
    /// Last field, so dropped after `db` (fields drop in declaration order).
    _released: SledReleased,
}

/// Waits, when dropped, until sled has closed its database file. sled 0.34 closes it
/// (and so releases its file lock) in background threads some time after its `Db` is
/// dropped; without this wait, opening a store right after closing it could fail with
/// "could not acquire lock".
struct SledReleased(PathBuf);

impl Drop for SledReleased {
    fn drop(&mut self) {
        // Blocks until sled's exclusive lock on its `db` file is gone, then lets go.
        if let Ok(f) = std::fs::File::open(&self.0) {
            let _ = f.lock();
        }
    }
}

/// Holds the store's write lock; all changes go through it.
pub(crate) struct Writer<'a> {
    index: &'a Index,
    _guard: MutexGuard<'a, ()>,
}

impl Index {
    /// Opens (creating when asked) the sled database under `dir/sled` and the object
    /// files under `dir/objects`.
    pub(crate) fn open(dir: &Path, create: bool, read_only: bool) -> Result<Index> {
        let sled_dir = dir.join("sled");
        if !create && !sled_dir.exists() {
            return Err(Error::Io {
                path: sled_dir,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a pickleshelf store"),
            });
        }
        remove_unfinished_snapshots(&sled_dir)?;
        let objects = Objects::open(&dir.join("objects"), read_only)?;
        let config = sled::Config::new().path(&sled_dir).flush_every_ms(Some(500));
        let db = engine(dir, || config.open())?;
        let live = engine(dir, || db.scan_prefix([PREFIX_OBJECT]).try_fold(0u64, |n, r| r.map(|_| n + 1)))?;
        Ok(Index {
            live_objects: AtomicU64::new(live),
            path: dir.to_path_buf(),
            db,
            objects,
            writer: Mutex::new(()),
            doomed: Mutex::new(Vec::new()),
            files_in_use: RwLock::new(()),
            generation: Mutex::new(0),
            _released: SledReleased(sled_dir.join("db")),
        })
    }

    pub(crate) fn objects(&self) -> &Objects {
        &self.objects
    }

    fn engine<T>(&self, f: impl FnOnce() -> sled::Result<T>) -> Result<T> {
        engine(&self.path, f)
    }

    fn corrupted(&self, what: String, reason: impl Into<String>) -> Error {
        Error::Corrupted { what, reason: reason.into() }
    }

    // ----- reads -----

    /// The record of `key`.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Stored>> {
        Ok(self.get_in(Space::Keys, key)?.map(|(_, s)| s))
    }

    /// The record of `key` in `space`, with its header (empty for [`Space::Keys`]).
    pub(crate) fn get_in(&self, space: Space, key: &str) -> Result<Option<(sled::IVec, Stored)>> {
        let raw = self.engine(|| self.db.get(key_in(space, key)))?;
        raw.map(|r| self.parse_record(space, key, r)).transpose()
    }

    fn parse_record(&self, space: Space, key: &str, raw: sled::IVec) -> Result<(sled::IVec, Stored)> {
        let h = space.header_len();
        let bad = || self.corrupted(format!("record of key {key:?}"), "unknown layout");
        let body = raw.get(h..).ok_or_else(bad)?;
        let header = raw.subslice(0, h);
        match KeyRecord::parse(body) {
            Some(KeyRecord::Inline { digest, frame_at }) => {
                let at = h + frame_at;
                Ok((header, Stored::Inline { digest, frame: raw.subslice(at, raw.len() - at) }))
            }
            Some(KeyRecord::Object { digest }) => Ok((header, Stored::Object { digest })),
            None => Err(bad()),
        }
    }

    /// Keeps every object file in place while the guard lives: take it before reading a
    /// key record and keep it until its object file is read, or a concurrent removal and
    /// sync may delete the file in between.
    pub(crate) fn pin_files(&self) -> RwLockReadGuard<'_, ()> {
        self.files_in_use.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when `key` has a record.
    pub(crate) fn contains(&self, key: &str) -> Result<bool> {
        self.engine(|| self.db.contains_key(key_of(key)))
    }

    /// The object record of `digest`.
    pub(crate) fn object(&self, digest: &Digest) -> Result<Option<ObjectRecord>> {
        let raw = self.engine(|| self.db.get(object_key(digest)))?;
        raw.map(|r| {
            ObjectRecord::parse(&r).ok_or_else(|| self.corrupted(format!("object record {digest}"), "unknown layout"))
        })
        .transpose()
    }

    /// Keys (with their records) in byte order, from `prefix`.
    pub(crate) fn scan(&self, prefix: &str) -> impl Iterator<Item = Result<(String, Stored)>> + '_ {
        self.scan_in(Space::Keys, prefix).map(|r| r.map(|(k, _, s)| (k, s)))
    }

    /// Keys of `space` starting with `prefix`, with their headers and records.
    pub(crate) fn scan_in(
        &self,
        space: Space,
        prefix: &str,
    ) -> impl Iterator<Item = Result<(String, sled::IVec, Stored)>> + '_ {
        self.db.scan_prefix(key_in(space, prefix)).map(move |item| {
            let (k, v) = item.map_err(|e| Error::Engine { path: self.path.clone(), message: e.to_string() })?;
            let key = std::str::from_utf8(&k[1..])
                .map_err(|_| self.corrupted("a key record".into(), "key is not UTF-8"))?
                .to_owned();
            let (header, stored) = self.parse_record(space, &key, v)?;
            Ok((key, header, stored))
        })
    }

    /// All object records.
    pub(crate) fn object_records(&self) -> impl Iterator<Item = Result<(Digest, ObjectRecord)>> + '_ {
        self.db.scan_prefix([PREFIX_OBJECT]).map(move |item| {
            let (k, v) = item.map_err(|e| Error::Engine { path: self.path.clone(), message: e.to_string() })?;
            let d = Digest::from_slice(&k[1..]).ok_or_else(|| self.corrupted("an object record".into(), "bad key"))?;
            let r =
                ObjectRecord::parse(&v).ok_or_else(|| self.corrupted(format!("object record {d}"), "bad layout"))?;
            Ok((d, r))
        })
    }

    /// A metadata value.
    pub(crate) fn meta(&self, name: &str) -> Result<Option<sled::IVec>> {
        self.engine(|| self.db.get(meta_key(name)))
    }

    /// Metadata entries whose names start with `prefix`.
    pub(crate) fn meta_scan(&self, prefix: &str) -> Result<Vec<(String, sled::IVec)>> {
        let mut out = Vec::new();
        for item in self.db.scan_prefix(meta_key(prefix)) {
            let (k, v) = self.engine(|| item)?;
            out.push((String::from_utf8_lossy(&k[1..]).into_owned(), v));
        }
        Ok(out)
    }

    /// True when the tree holds no record at all (a new store).
    pub(crate) fn is_empty(&self) -> Result<bool> {
        Ok(self.engine(|| self.db.first())?.is_none())
    }

    // ----- writes -----

    /// Takes the write lock.
    pub(crate) fn writer(&self) -> Writer<'_> {
        Writer { index: self, _guard: self.writer.lock().unwrap_or_else(PoisonError::into_inner) }
    }

    /// Sets a metadata value at once (its own single-record write).
    pub(crate) fn set_meta(&self, name: &str, value: &[u8]) -> Result<()> {
        self.engine(|| self.db.insert(meta_key(name), value)).map(drop)
    }

    pub(crate) fn set_generation(&self, g: u64) {
        *self.generation.lock().unwrap_or_else(PoisonError::into_inner) = g;
    }

    pub(crate) fn generation(&self) -> u64 {
        *self.generation.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Objects whose records were removed since the last sync: their files are still
    /// there, and are deleted by the next [`Index::sync`].
    pub(crate) fn awaiting_deletion(&self) -> Vec<Digest> {
        self.doomed.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Makes everything written so far durable (see `Shelf::sync`): object files and
    /// their directories are fsynced, the generation is advanced, sled is flushed and its
    /// files and directories fsynced; then the files of removed objects are deleted.
    /// Returns the new generation.
    pub(crate) fn sync(&self) -> Result<u64> {
        let _w = self.writer();
        self.objects.sync()?;
        let g = self.generation() + 1;
        self.set_meta("generation", &g.to_le_bytes())?;
        self.make_durable()?;
        self.set_generation(g);
        self.delete_doomed()?;
        Ok(g)
    }

    /// Flushes sled's buffers without the fsyncs of [`Index::sync`] (a kill -9 after
    /// this loses nothing; a power loss may), then deletes the files of removed objects.
    pub(crate) fn flush(&self) -> Result<()> {
        let _w = self.writer();
        self.engine(|| self.db.flush())?;
        self.delete_doomed()
    }

    /// Deletes the files of the objects whose records were removed (and not written
    /// again) since the last call. Only once those removals are durable, under the
    /// write lock.
    fn delete_doomed(&self) -> Result<()> {
        let doomed = std::mem::take(&mut *self.doomed.lock().unwrap_or_else(PoisonError::into_inner));
        if doomed.is_empty() {
            return Ok(());
        }
        let _readers_out = self.files_in_use.write().unwrap_or_else(PoisonError::into_inner);
        for d in doomed {
            if self.object(&d)?.is_none() {
                self.objects.remove(&d)?;
            }
        }
        Ok(())
    }

    /// Flushes sled and fsyncs its files and directories: every record written so far
    /// survives a power loss.
    pub(crate) fn make_durable(&self) -> Result<()> {
        self.engine(|| self.db.flush())?;
        files::fsync_tree(&self.path.join("sled"))?;
        files::fsync_dir(&self.path)
    }

    /// Schedules the deletion of the file of `digest` at the next sync, after the
    /// flush, if no record names it then. (A file must outlive its record's removal
    /// until that removal is durable: a crash before would bring the record back.)
    pub(crate) fn doom(&self, digest: Digest) {
        self.doomed.lock().unwrap_or_else(PoisonError::into_inner).push(digest);
    }
}

impl Writer<'_> {
    /// Reads a key record under the write lock.
    pub(crate) fn get(&self, key: &str) -> Result<Option<Stored>> {
        self.index.get(key)
    }

    /// Applies `ops` atomically; returns, per op, whether its key existed before.
    ///
    /// When no op involves an object record (all frames inline, no object replaced or
    /// removed) and there is one op, it is one plain sled write; otherwise all record
    /// changes go into one sled batch. Object files are written before the batch.
    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<Vec<bool>> {
        let index = self.index;
        // No object records at all: a single inline put or a removal touches no refcount,
        // so it is one sled write, with no read of the previous record.
        if let [op] = ops.as_slice()
            && index.live_objects.load(Ordering::Acquire) == 0
        {
            match op {
                Op::Put { space, key, header, digest, frame }
                    if frame.len() <= INLINE_MAX && header.len() == space.header_len() =>
                {
                    let mut r = Vec::with_capacity(header.len() + 33 + frame.len());
                    r.extend_from_slice(header);
                    r.extend_from_slice(&KeyRecord::inline(digest, frame));
                    let old = index.engine(|| index.db.insert(key_in(*space, key), r))?;
                    return Ok(vec![old.is_some()]);
                }
                Op::Remove { space, key } => {
                    let old = index.engine(|| index.db.remove(key_in(*space, key)))?;
                    return Ok(vec![old.is_some()]);
                }
                Op::Put { .. } => {}
            }
        }
        // The state of each key as this batch sees it (later ops see earlier ones).
        let mut current: HashMap<(Space, String), KeyState> = HashMap::new();
        let mut deltas: BTreeMap<Digest, i64> = BTreeMap::new();
        let mut existed = Vec::with_capacity(ops.len());
        let mut batch = sled::Batch::default();
        let mut single: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
        let mut new_files: Vec<(Digest, Vec<u8>)> = Vec::new();
        let n_ops = ops.len();
        for op in ops {
            let (space, key) = match &op {
                Op::Put { space, key, .. } | Op::Remove { space, key } => (*space, key.clone()),
            };
            let state = match current.get(&(space, key.clone())) {
                Some(s) => *s,
                None => match index.get_in(space, &key)? {
                    Some((_, Stored::Object { digest })) => KeyState::Object(digest),
                    Some((_, Stored::Inline { .. })) => KeyState::Inline,
                    None => KeyState::Absent,
                },
            };
            existed.push(!matches!(state, KeyState::Absent));
            if let KeyState::Object(d) = state {
                *deltas.entry(d).or_insert(0) -= 1;
            }
            let k = key_in(space, &key);
            let record = match op {
                Op::Put { digest, frame, header, .. } => {
                    if header.len() != space.header_len() {
                        return Err(index.corrupted(format!("record of key {key:?}"), "header of the wrong length"));
                    }
                    let mut r = header;
                    if frame.len() <= INLINE_MAX {
                        current.insert((space, key), KeyState::Inline);
                        r.extend_from_slice(&KeyRecord::inline(&digest, &frame));
                    } else {
                        current.insert((space, key), KeyState::Object(digest));
                        *deltas.entry(digest).or_insert(0) += 1;
                        new_files.push((digest, frame));
                        r.extend_from_slice(&KeyRecord::object(&digest));
                    }
                    Some(r)
                }
                Op::Remove { .. } => {
                    current.insert((space, key), KeyState::Absent);
                    None
                }
            };
            match &record {
                Some(r) => batch.insert(k.clone(), r.clone()),
                None => batch.remove(k.clone()),
            }
            if n_ops == 1 {
                single = Some((k, record));
            }
        }
        let deltas: Vec<(Digest, i64)> = deltas.into_iter().filter(|&(_, d)| d != 0).collect();
        if deltas.is_empty()
            && let Some((k, v)) = single
        {
            match v {
                Some(v) => index.engine(|| index.db.insert(k, v))?,
                None => index.engine(|| index.db.remove(k))?,
            };
            return Ok(existed);
        }
        // Object records: new refcounts; files for objects that gain their first ref.
        let generation = index.generation();
        let mut doomed = Vec::new();
        let mut created = 0u64;
        for (digest, delta) in deltas {
            let old = index.object(&digest)?;
            let refs = old.as_ref().map_or(0, |r| r.refs as i64) + delta;
            if refs < 0 {
                return Err(index.corrupted(format!("object record {digest}"), "refcount would go below zero"));
            }
            if refs == 0 {
                batch.remove(&object_key(&digest)[..]);
                doomed.push(digest);
                continue;
            }
            let stored_len = match &old {
                Some(r) => r.stored_len,
                None => {
                    let frame =
                        new_files.iter().find(|(d, _)| *d == digest).map(|(_, f)| f.as_slice()).ok_or_else(|| {
                            index.corrupted(format!("object {digest}"), "no content for a new object")
                        })?;
                    index.objects.write(&digest, frame)?;
                    created += 1;
                    frame.len() as u64
                }
            };
            let rec = ObjectRecord { refs: refs as u64, stored_len, generation };
            batch.insert(&object_key(&digest)[..], &rec.encode()[..]);
        }
        index.engine(|| index.db.apply_batch(batch))?;
        index.live_objects.fetch_add(created, Ordering::AcqRel);
        index.live_objects.fetch_sub(doomed.len() as u64, Ordering::AcqRel);
        index.doomed.lock().unwrap_or_else(PoisonError::into_inner).extend(doomed);
        Ok(existed)
    }

    /// Rewrites the headers of memo records (their last-read times) in one batch; records
    /// gone meanwhile are skipped.
    pub(crate) fn set_memo_headers(&self, updates: Vec<(String, Vec<u8>)>) -> Result<()> {
        let index = self.index;
        let mut batch = sled::Batch::default();
        for (key, head) in updates {
            let k = key_in(Space::Memo, &key);
            if head.len() != MEMO_HEADER {
                continue;
            }
            if let Some(raw) = index.engine(|| index.db.get(&k))?
                && raw.len() > MEMO_HEADER
            {
                let mut r = head;
                r.extend_from_slice(&raw[MEMO_HEADER..]);
                batch.insert(k, r);
            }
        }
        index.engine(|| index.db.apply_batch(batch))
    }

    /// Replaces the object record of `digest` (used by gc to repair refcounts);
    /// `None` removes it.
    pub(crate) fn set_object(&self, digest: &Digest, rec: Option<ObjectRecord>) -> Result<()> {
        let index = self.index;
        match rec {
            Some(r) => {
                let old = index.engine(|| index.db.insert(&object_key(digest)[..], &r.encode()[..]))?;
                if old.is_none() {
                    index.live_objects.fetch_add(1, Ordering::AcqRel);
                }
                old
            }
            None => {
                let old = index.engine(|| index.db.remove(&object_key(digest)[..]))?;
                if old.is_some() {
                    index.live_objects.fetch_sub(1, Ordering::AcqRel);
                    index.doomed.lock().unwrap_or_else(PoisonError::into_inner).push(*digest);
                }
                old
            }
        };
        Ok(())
    }
}
