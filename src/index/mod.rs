//! The storage layer: the record tree (keys, memo results, object records, frame
//! records and checkpoints, packed into compressed pages in pack files of our own, see
//! [`tree`]), metadata records in sled, and object files for large objects. The only
//! module that names sled.
//!
//! Invariants:
//! - `refs(d)` in the object record of `d` equals the number of references to `d`: key and
//!   memo records that point at it, checkpoint entries that name it, and delta objects
//!   whose base it is. The object record exists exactly while `refs(d) > 0`, so a delta's
//!   base outlives the delta. Every write changes key, checkpoint and object records
//!   together in one tree batch, which reaches disk in one commit (one sled batch): every
//!   crash leaves them consistent, and removals cascade down a chain of bases in the
//!   batch that makes the first object unreferenced.
//! - An object's frame is in its file (complete and in place — written to a temporary
//!   name, then renamed — before any record names it) or, for frames of at most
//!   [`INLINE_MAX`] bytes, in its frame record, written in the batch that creates the
//!   object. Either is deleted only after a sync has made the removal of the object record
//!   durable, and never while a reader holds [`Index::pin_files`]: a reader needs no object
//!   record to find a frame.
//! - Every record sled stores is small — a metadata record (a dictionary at most: 16 KiB)
//!   or a page's 32-byte directory record — so none comes near sled's blob threshold (a
//!   quarter of its 512 KiB segment) and sled writes no blob files.
//!
//! `docs/FORMAT.md` describes every record byte by byte.

mod checkpoints;
mod files;
mod holes;
mod packs;
mod pages;
mod rebuild;
mod records;
mod sled_files;
mod tree;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::blob::{Digest, Hasher};
use crate::error::{Error, Result};
pub(crate) use checkpoints::check_name as check_checkpoint_name;
pub(crate) use files::{Objects, create_dir_durable, lock_shared_within, lock_within};
pub(crate) use rebuild::{finish_install, install, install_pending, keys_in, read_directory, rebuild, write_directory};
pub(crate) use records::{CheckpointHeader, KeyRecord, ObjectRecord};
pub(crate) use sled_files::PrivateCopy;
pub(crate) use tree::Batch;
pub(crate) use tree::Bytes;
use tree::Tree;
pub(crate) use tree::{BUFFER_MAX, COMMIT_AFTER, PageCheck, TreeStats};

/// Largest frame stored inline in its key record; larger ones become object files.
pub(crate) const INLINE_MAX: usize = 4096;
// The raw frame of every pickle the codec leaves uncompressed is inline.
const _: () = assert!(crate::blob::RAW_MAX + 8 <= INLINE_MAX);
/// Longest key, in UTF-8 bytes.
pub const MAX_KEY_LEN: usize = 1024;

const PREFIX_KEY: u8 = b'k';
const PREFIX_OBJECT: u8 = b'o';
const PREFIX_META: u8 = b'm';
const PREFIX_MEMO: u8 = b'x';
const PREFIX_FRAME: u8 = b'f';
/// Key prefix of the page directory's records (in sled).
pub(crate) const DIR_PREFIX_KEY: u8 = b'p';
/// `live_objects` before [`Index::count_objects`]: far from 0 whatever is added or
/// removed before the count.
const UNCOUNTED: u64 = u64::MAX / 4 * 3;
/// Longest chain of bases below an object that the store writes and reads.
pub(crate) const MAX_DEPTH: u8 = 24;

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

/// Creates an empty sled database at `sled_dir` atomically: sled's files are made under
/// `sled.new`, fsynced, and the directory renamed into place (and the store directory
/// fsynced). sled 0.34 writes its `conf` without fsync and then refuses to open a torn
/// one ("Read corrupted data"), so a power cut while a database is being created in place
/// could leave a store that no open can read. A leftover `sled.new` (a creation a crash
/// cut short) is deleted first. Called with the store's `LOCK` held.
fn create_sled(dir: &Path, sled_dir: &Path) -> Result<()> {
    let fresh = dir.join("sled.new");
    match std::fs::remove_dir_all(&fresh) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { path: fresh, source: e }),
    }
    {
        let db = engine(dir, || sled::Config::new().path(&fresh).open())?;
        engine(dir, || db.flush())?;
        // sled closes its files in background threads after the drop: wait for its lock.
        let _released = SledReleased { db_file: fresh.join("db"), dig: false };
        drop(db);
    }
    files::fsync_tree(&fresh)?;
    std::fs::rename(&fresh, sled_dir).map_err(|e| Error::Io { path: sled_dir.to_path_buf(), source: e })?;
    files::fsync_dir(dir)
}

/// A damaged page, as the reader of one of its keys sees it.
fn naming_key(e: Error, key: &str) -> Error {
    match e {
        Error::Corrupted { what, reason } => {
            Error::Corrupted { what: format!("record of key {key:?} ({what})"), reason }
        }
        other => other,
    }
}

fn key_of(key: &str) -> Vec<u8> {
    key_in(Space::Keys, key)
}

pub(crate) fn key_in(space: Space, key: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(space.prefix());
    k.extend_from_slice(key.as_bytes());
    k
}

pub(crate) fn object_key(d: &Digest) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = PREFIX_OBJECT;
    k[1..].copy_from_slice(d.as_bytes());
    k
}

pub(crate) fn frame_key(d: &Digest) -> [u8; 33] {
    let mut k = [0u8; 33];
    k[0] = PREFIX_FRAME;
    k[1..].copy_from_slice(d.as_bytes());
    k
}

pub(crate) fn meta_key(name: &str) -> Vec<u8> {
    let mut k = vec![PREFIX_META];
    k.extend_from_slice(name.as_bytes());
    k
}

/// How a record key is named in reports: `key "user:1"`, `object 3f2a…`, ...
pub(crate) fn describe_record_key(k: &[u8]) -> String {
    let text = |b: &[u8]| format!("{:?}", String::from_utf8_lossy(b));
    let digest = |b: &[u8]| match Digest::from_slice(b) {
        Some(d) => d.to_string(),
        None => hex(b),
    };
    match k.split_first() {
        None => "the first record".into(),
        Some((&PREFIX_KEY, rest)) => format!("key {}", text(rest)),
        Some((&PREFIX_MEMO, rest)) => format!("memo result {}", text(rest)),
        Some((&PREFIX_OBJECT, rest)) => format!("object record {}", digest(rest)),
        Some((&PREFIX_FRAME, rest)) => format!("frame record {}", digest(rest)),
        Some((&PREFIX_META, rest)) => format!("metadata {}", text(rest)),
        Some((&b'C', rest)) => format!("checkpoint {}", text(rest)),
        Some((&b'c', rest)) => {
            let mut parts = rest.splitn(2, |&b| b == 0);
            let name = parts.next().unwrap_or_default();
            match parts.next() {
                Some(key) => format!("key {} of checkpoint {}", text(key), text(name)),
                None => format!("checkpoint {}", text(name)),
            }
        }
        Some(_) => format!("record {}", hex(k)),
    }
}

/// The records of `[lo, hi)` as a reader names them.
pub(crate) fn describe_range(lo: &[u8], hi: Option<&[u8]>) -> String {
    match hi {
        Some(hi) => format!("from {} up to {}", describe_record_key(lo), describe_record_key(hi)),
        None => format!("from {} to the end", describe_record_key(lo)),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A stored value as the index sees it.
pub(crate) enum Stored {
    /// The frame is inside the key record.
    Inline { digest: Digest, frame: Bytes },
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

/// The content of an object a batch may create.
pub(crate) struct NewObject {
    /// Its frame.
    pub(crate) frame: Vec<u8>,
    /// Its base, when the frame is a delta.
    pub(crate) delta: Option<Delta>,
}

/// What a key holds, as a batch being applied sees it.
#[derive(Clone, Copy)]
enum KeyState {
    Absent,
    Inline,
    Object(Digest),
}

/// A delta frame's base, as a put names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Delta {
    /// The object the frame decodes against: it must be in the store when the put applies.
    pub(crate) base: Digest,
    /// The new object's position in its line of versions.
    pub(crate) seq: u32,
}

/// One change of a write.
pub(crate) enum Op {
    /// Set `key` of `space` to the value with this digest and frame; `header` must be
    /// `space`'s header length. Without `delta`, a frame of at most [`INLINE_MAX`] bytes
    /// goes into the key record and a larger one becomes an object file; with it, the frame
    /// is a delta and always an object (in its frame record when small).
    Put { space: Space, key: String, header: Vec<u8>, digest: Digest, frame: Vec<u8>, delta: Option<Delta> },
    /// Set `key` of `space` to the object `digest`, which must be in the store; `header`
    /// as for `Put`.
    Link { space: Space, key: String, header: Vec<u8>, digest: Digest },
    /// Remove `key` of `space`.
    Remove { space: Space, key: String },
}

impl Op {
    /// Sets a store key.
    pub(crate) fn put(key: String, digest: Digest, frame: Vec<u8>, delta: Option<Delta>) -> Op {
        Op::Put { space: Space::Keys, key, header: Vec::new(), digest, frame, delta }
    }

    /// The space and key the op changes.
    pub(crate) fn key(&self) -> (Space, &str) {
        match self {
            Op::Put { space, key, .. } | Op::Link { space, key, .. } | Op::Remove { space, key } => (*space, key),
        }
    }

    /// Removes a store key.
    pub(crate) fn remove(key: String) -> Op {
        Op::Remove { space: Space::Keys, key }
    }
}

/// The store's sled tree and object files.
pub(crate) struct Index {
    /// Commits the tree's write buffer once it is old enough (see [`IndexOptions::commit_after`]).
    /// First field: its thread stops before the rest is dropped.
    _committer: Option<Committer>,
    path: PathBuf,
    /// Metadata records (`m`) and the page directory of `tree`.
    db: sled::Db,
    /// Every other record: keys, memo results, objects, frames, checkpoints.
    tree: Arc<Tree>,
    /// Shared with the committer, which fsyncs new object files before a commit that may
    /// name them (durability `PowerLoss`).
    objects: Arc<Objects>,
    /// Object files are fsynced before every commit (durability `PowerLoss`).
    power_loss: bool,
    /// A write that leaves more than this many bytes buffered commits the buffer.
    buffer_max: usize,
    writer: Arc<Mutex<()>>,
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
    /// Settings are read from sled (a format 2 store being read or upgraded).
    legacy_settings: std::sync::atomic::AtomicBool,
    /// After `db` (fields drop in declaration order).
    _released: SledReleased,
    /// The private copy of sled's files a read-only index reads (deleted once sled let go).
    _copy: Option<sled_files::PrivateCopy>,
}

/// Waits, when dropped, until sled has closed its database file. sled 0.34 closes it
/// (and so releases its file lock) in background threads some time after its `Db` is
/// dropped; without this wait, opening a store right after closing it could fail with
/// "could not acquire lock". A writable index then gives the zero padding of sled's log
/// back to the file system ([`holes`]).
struct SledReleased {
    db_file: PathBuf,
    dig: bool,
}

impl Drop for SledReleased {
    fn drop(&mut self) {
        // Blocks until sled's exclusive lock on its `db` file is gone, then holds it while
        // digging, so that no sled can open the file meanwhile.
        if let Ok(f) = std::fs::File::open(&self.db_file)
            && f.lock().is_ok()
            && self.dig
        {
            holes::dig_holes(&self.db_file);
        }
    }
}

/// The thread that commits the tree's write buffer in the background. It holds the tree
/// weakly and stops when the index is dropped.
struct Committer {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Committer {
    /// `objects`, when given, are fsynced before each commit: the records a commit writes
    /// may reach disk before the next sync (sled fsyncs its log by itself when it
    /// truncates it), and the object files they name must be there too.
    fn start(
        tree: Weak<Tree>,
        writer: Arc<Mutex<()>>,
        objects: Option<Arc<Objects>>,
        commit_after: Duration,
    ) -> std::io::Result<Committer> {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new().name("pickleshelf-commit".into()).spawn(move || {
            let tick = commit_after / 2;
            while !flag.load(Ordering::Acquire) {
                std::thread::park_timeout(tick);
                let Some(tree) = tree.upgrade() else { return };
                let (bytes, since) = tree.buffered();
                if bytes == 0 || since.is_none_or(|t| t.elapsed() < commit_after) {
                    continue;
                }
                let _w = writer.lock().unwrap_or_else(PoisonError::into_inner);
                // A failure leaves the buffer as it is: the next commit (at the latest the
                // next sync, which reports it) tries again.
                if objects.as_ref().is_none_or(|o| o.sync().is_ok()) {
                    let _ = tree.commit();
                }
            }
        })?;
        Ok(Committer { stop, thread: Some(thread) })
    }
}

impl Drop for Committer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Index {
    /// Commits the write buffer and flushes sled, best effort (as sled does when dropped):
    /// what `sync` left in the buffer (deletions of removed objects' frame records) is
    /// not lost on a clean close.
    fn drop(&mut self) {
        if self._committer.is_none() {
            return;
        }
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        // sled fsyncs its log when dropped: the files the records name go first.
        if self.power_loss && self.objects.sync().is_err() {
            return;
        }
        if self.tree.commit().is_ok() {
            let _ = self.engine(|| self.db.flush());
        }
    }
}

/// How an index is opened.
pub(crate) struct IndexOptions {
    pub(crate) create: bool,
    pub(crate) read_only: bool,
    /// Checksums of pages are (keyed) blake3 digests made with it.
    pub(crate) hasher: Hasher,
    /// zstd level of pages.
    pub(crate) level: i32,
    /// Pack files are fsynced before every commit (durability `PowerLoss`).
    pub(crate) power_loss: bool,
    /// The store's auth check, written in the header of new packs (stores with an auth key).
    pub(crate) auth: Option<[u8; 32]>,
    /// Read the directory from the sled files in this directory instead of the store's
    /// (read-only: a directory rebuilt from the packs, which the caller keeps).
    pub(crate) sled_from: Option<PathBuf>,
    /// The buffer is committed once its oldest write is this old.
    pub(crate) commit_after: Duration,
    /// A write that leaves more than this many bytes buffered commits the buffer.
    pub(crate) buffer_max: usize,
}

/// Holds the store's write lock; all changes go through it.
pub(crate) struct Writer<'a> {
    index: &'a Index,
    _guard: MutexGuard<'a, ()>,
}

impl Index {
    /// Opens (creating when asked) the sled database under `dir/sled`, the pack files
    /// under `dir/pages` and the object files under `dir/objects`.
    pub(crate) fn open(dir: &Path, opts: IndexOptions) -> Result<Index> {
        let IndexOptions { create, read_only, hasher, level, power_loss, auth, sled_from, commit_after, buffer_max } =
            opts;
        let sled_dir = dir.join("sled");
        if !create && !sled_dir.exists() && sled_from.is_none() {
            return Err(Error::Io {
                path: sled_dir,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "not a pickleshelf store"),
            });
        }
        if create && !read_only && sled_from.is_none() && !sled_dir.exists() {
            create_sled(dir, &sled_dir)?;
        }
        // Read-only: sled reads a private copy of its files (it writes whenever it opens),
        // or the directory given (rebuilt from the packs).
        let copy = if read_only && sled_from.is_none() { Some(sled_files::PrivateCopy::of(&sled_dir)?) } else { None };
        let sled_dir = match (&copy, sled_from) {
            (Some(c), _) => c.path().to_path_buf(),
            (None, Some(from)) => from,
            (None, None) => {
                remove_unfinished_snapshots(&sled_dir)?;
                // sled gives up at once on a locked file: wait a moment for a handle that is
                // going away (a closed store's lock copied into a child process).
                if let Ok(f) = std::fs::File::open(sled_dir.join("db")) {
                    let _ = lock_within(&f);
                }
                sled_dir
            }
        };
        let db_file = sled_dir.join("db");
        let objects = Arc::new(Objects::open(&dir.join("objects"))?);
        let db = sled_files::open(dir, &sled_dir)?;
        let tree = Arc::new(Tree::open(dir, db.clone(), hasher, level, power_loss, read_only, auth)?);
        let writer = Arc::new(Mutex::new(()));
        let committer = if read_only {
            None
        } else {
            Some(
                Committer::start(
                    Arc::downgrade(&tree),
                    writer.clone(),
                    power_loss.then(|| objects.clone()),
                    commit_after,
                )
                .map_err(|e| Error::Io { path: dir.to_path_buf(), source: e })?,
            )
        };
        Ok(Index {
            live_objects: AtomicU64::new(UNCOUNTED),
            path: dir.to_path_buf(),
            db,
            tree,
            _committer: committer,
            objects,
            power_loss,
            buffer_max,
            writer,
            doomed: Mutex::new(Vec::new()),
            files_in_use: RwLock::new(()),
            generation: Mutex::new(0),
            legacy_settings: std::sync::atomic::AtomicBool::new(false),
            _released: SledReleased { db_file, dig: !read_only },
            _copy: copy,
        })
    }

    /// Counts the object records (which reads every page holding one). Called once the
    /// opener's auth key is known to be the store's: pages are checked with it. A page
    /// that cannot be read leaves the count unknown (writes then always read a key's
    /// previous record, which is correct for any count); its error comes with the reads
    /// that need it.
    pub(crate) fn count_objects(&self) {
        if let Ok(live) = self.tree.scan(&[PREFIX_OBJECT]).try_fold(0u64, |n, r| r.map(|_| n + 1)) {
            self.live_objects.store(live, Ordering::Release);
        }
    }

    fn objects_counted(&self) -> bool {
        self.live_objects.load(Ordering::Acquire) < UNCOUNTED / 2
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
    pub(crate) fn get_in(&self, space: Space, key: &str) -> Result<Option<(Bytes, Stored)>> {
        // The record's key on the stack for the usual short keys (no allocation per read).
        let mut buf = [0u8; 128];
        let heap;
        let k: &[u8] = if key.len() < buf.len() {
            buf[0] = space.prefix();
            buf[1..=key.len()].copy_from_slice(key.as_bytes());
            &buf[..=key.len()]
        } else {
            heap = key_in(space, key);
            &heap
        };
        let raw = self.tree.get(k).map_err(|e| naming_key(e, key))?;
        raw.map(|r| self.parse_record(space, key, r)).transpose()
    }

    fn parse_record(&self, space: Space, key: &str, raw: Bytes) -> Result<(Bytes, Stored)> {
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

    /// The frame of object `d`: from its frame record, else from its file. Reads no object
    /// record, so that it works for objects removed since the caller read a record naming
    /// them (their frames stay until a sync; see [`Index::pin_files`]).
    pub(crate) fn frame(&self, d: &Digest) -> Result<Vec<u8>> {
        match self.tree.get(&frame_key(d))? {
            Some(f) => Ok(f.to_vec()),
            None => self.objects.read(d),
        }
    }

    /// All frame records: digest and length.
    pub(crate) fn frame_records(&self) -> impl Iterator<Item = Result<(Digest, u64)>> + '_ {
        self.tree.scan(&[PREFIX_FRAME]).map(move |item| {
            let (k, v) = item?;
            let d = Digest::from_slice(&k[1..]).ok_or_else(|| self.corrupted("a frame record".into(), "bad key"))?;
            Ok((d, v.len() as u64))
        })
    }

    /// Keeps every object's frame (file or frame record) in place while the guard lives:
    /// take it before reading a key record and keep it until the object's frames are read,
    /// or a concurrent removal and sync may delete them in between.
    pub(crate) fn pin_files(&self) -> RwLockReadGuard<'_, ()> {
        self.files_in_use.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// True when `key` has a record.
    pub(crate) fn contains(&self, key: &str) -> Result<bool> {
        self.tree.contains(&key_of(key))
    }

    /// The object record of `digest`.
    pub(crate) fn object(&self, digest: &Digest) -> Result<Option<ObjectRecord>> {
        let raw = self.tree.get(&object_key(digest))?;
        raw.map(|r| {
            ObjectRecord::parse(&r).ok_or_else(|| self.corrupted(format!("object record {digest}"), "unknown layout"))
        })
        .transpose()
    }

    /// Keys (with their records) in byte order, from `prefix`.
    pub(crate) fn scan(&self, prefix: &str) -> impl Iterator<Item = Result<(String, Stored)>> + '_ {
        self.scan_in(Space::Keys, prefix).map(|r| r.map(|(k, _, s)| (k, s)))
    }

    /// Keys starting with `prefix` that are at least `from`, in byte order.
    pub(crate) fn scan_keys_from(&self, prefix: &str, from: &str) -> impl Iterator<Item = Result<String>> + '_ {
        self.tree.scan_from(&key_in(Space::Keys, prefix), &key_in(Space::Keys, from)).map(move |item| {
            let (k, _) = item?;
            std::str::from_utf8(&k[1..])
                .map(str::to_owned)
                .map_err(|_| self.corrupted("a key record".into(), "key is not UTF-8"))
        })
    }

    /// Store keys within `lo` and `hi`, with their records, in byte order or (with
    /// `rev`) descending.
    pub(crate) fn range<'a>(
        &'a self,
        lo: Bound<&str>,
        hi: Bound<&str>,
        rev: bool,
    ) -> Box<dyn Iterator<Item = Result<(String, Stored)>> + 'a> {
        let space = Space::Keys;
        // Bounds as record keys: inclusive below, exclusive above (`k\0` is the least
        // key after `k`).
        let after = |k: &str| {
            let mut v = key_in(space, k);
            v.push(0);
            v
        };
        let lo = match lo {
            Bound::Included(k) => key_in(space, k),
            Bound::Excluded(k) => after(k),
            Bound::Unbounded => vec![space.prefix()],
        };
        let hi = match hi {
            Bound::Included(k) => after(k),
            Bound::Excluded(k) => key_in(space, k),
            Bound::Unbounded => vec![space.prefix() + 1],
        };
        if lo >= hi {
            return Box::new(std::iter::empty());
        }
        let parse = move |item: Result<(sled::IVec, Bytes)>| {
            let (k, v) = item?;
            let key =
                std::str::from_utf8(&k[1..]).map_err(|_| self.corrupted("a key record".into(), "key is not UTF-8"))?;
            let (_, stored) = self.parse_record(space, key, v)?;
            Ok((key.to_owned(), stored))
        };
        if rev {
            Box::new(self.tree.scan_rev(&lo, &hi).map(parse))
        } else {
            let below = move |item: &Result<(sled::IVec, Bytes)>| {
                item.as_ref().map_or(true, |(k, _)| k.as_ref() < hi.as_slice())
            };
            Box::new(self.tree.scan_from(&[space.prefix()], &lo).take_while(below).map(parse))
        }
    }

    /// Keys of `space` starting with `prefix`, with their headers and records.
    pub(crate) fn scan_in(
        &self,
        space: Space,
        prefix: &str,
    ) -> impl Iterator<Item = Result<(String, Bytes, Stored)>> + '_ {
        self.tree.scan(&key_in(space, prefix)).map(move |item| {
            let (k, v) = item?;
            let key = std::str::from_utf8(&k[1..])
                .map_err(|_| self.corrupted("a key record".into(), "key is not UTF-8"))?
                .to_owned();
            let (header, stored) = self.parse_record(space, &key, v)?;
            Ok((key, header, stored))
        })
    }

    /// Every record of the tree, in key order (an error for each page that cannot be
    /// read; the scan goes on after it).
    pub(crate) fn scan_all(&self) -> impl Iterator<Item = Result<(sled::IVec, Bytes)>> + '_ {
        self.tree.scan(b"")
    }

    /// All object records.
    pub(crate) fn object_records(&self) -> impl Iterator<Item = Result<(Digest, ObjectRecord)>> + '_ {
        self.tree.scan(&[PREFIX_OBJECT]).map(move |item| {
            let (k, v) = item?;
            let d = Digest::from_slice(&k[1..]).ok_or_else(|| self.corrupted("an object record".into(), "bad key"))?;
            let r = ObjectRecord::parse(&v)
                .ok_or_else(|| self.corrupted(format!("object record {d}"), "unknown layout"))?;
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

    /// A setting: a metadata record kept in the record tree (`m` + name: dictionaries,
    /// memo versions), or, in a format 2 store, in sled.
    pub(crate) fn setting(&self, name: &str) -> Result<Option<Bytes>> {
        if self.legacy_settings.load(Ordering::Acquire) {
            return Ok(self.meta(name)?.map(Bytes::Shared));
        }
        self.tree.get(&meta_key(name))
    }

    /// The settings whose names start with `prefix`.
    pub(crate) fn settings(&self, prefix: &str) -> Result<Vec<(String, Bytes)>> {
        if self.legacy_settings.load(Ordering::Acquire) {
            return Ok(self.meta_scan(prefix)?.into_iter().map(|(k, v)| (k, Bytes::Shared(v))).collect());
        }
        let mut out = Vec::new();
        for item in self.tree.scan(&meta_key(prefix)) {
            let (k, v) = item?;
            out.push((String::from_utf8_lossy(&k[1..]).into_owned(), v));
        }
        Ok(out)
    }

    /// Reads settings from sled, where a format 2 store keeps them (until it is upgraded).
    pub(crate) fn use_legacy_settings(&self, legacy: bool) {
        self.legacy_settings.store(legacy, Ordering::Release);
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
        self.tree.set_generation(g);
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
    /// Returns the new generation and the newest commit's sequence number.
    pub(crate) fn sync(&self) -> Result<(u64, u64)> {
        let _w = self.writer();
        self.objects.sync()?;
        let g = self.generation() + 1;
        self.durable_locked(Some(g))?;
        self.set_generation(g);
        self.delete_doomed()?;
        self.tree.delete_doomed()?;
        Ok((g, self.newest_seq()))
    }

    /// The sequence number of the directory's newest page (of the last commit).
    pub(crate) fn newest_seq(&self) -> u64 {
        self.tree.summary().2
    }

    /// Commits the write buffer and flushes sled's buffers without the fsyncs of
    /// [`Index::sync`] (a kill -9 after this loses nothing; a power loss may), then
    /// deletes the files of removed objects.
    pub(crate) fn flush(&self) -> Result<()> {
        let _w = self.writer();
        self.tree.commit()?;
        self.engine(|| self.db.flush())?;
        self.delete_doomed()?;
        self.tree.delete_doomed()
    }

    /// Deletes the frames (files and frame records) of the objects whose records were
    /// removed since the last call, unless the object was written again in the same place.
    /// Only once those removals are durable, under the write lock. (The deletion of a frame
    /// record is itself made durable by the next sync; a crash before leaves an orphan that
    /// the next open deletes.)
    fn delete_doomed(&self) -> Result<()> {
        let doomed = std::mem::take(&mut *self.doomed.lock().unwrap_or_else(PoisonError::into_inner));
        if doomed.is_empty() {
            return Ok(());
        }
        let _readers_out = self.files_in_use.write().unwrap_or_else(PoisonError::into_inner);
        let mut batch = Batch::default();
        for d in doomed {
            let rec = self.object(&d)?;
            if rec.is_none_or(|r| r.in_tree) {
                self.objects.remove(&d)?;
            }
            if rec.is_none_or(|r| !r.in_tree) {
                batch.remove(&frame_key(&d)[..]);
            }
        }
        self.tree.apply(batch);
        Ok(())
    }

    /// Deletes frame records of no object (the leftovers of removals a crash cut short);
    /// returns how many. Called at open, after the recovered records were made durable.
    pub(crate) fn remove_orphan_frames(&self) -> Result<usize> {
        let _w = self.writer();
        let mut batch = Batch::default();
        let mut n = 0;
        for item in self.frame_records() {
            let (d, _) = item?;
            if self.object(&d)?.is_none_or(|r| !r.in_tree) {
                batch.remove(&frame_key(&d)[..]);
                n += 1;
            }
        }
        if n > 0 {
            self.tree.apply(batch);
            self.tree.commit()?;
        }
        Ok(n)
    }

    /// Commits the write buffer, flushes sled and fsyncs pack files and sled's files and
    /// directories: every record written so far survives a power loss.
    pub(crate) fn make_durable(&self) -> Result<()> {
        let _w = self.writer();
        self.durable_locked(None)
    }

    /// [`Index::make_durable`] under the write lock, writing `generation` (when given)
    /// after the commit and before the flush.
    fn durable_locked(&self, generation: Option<u64>) -> Result<()> {
        self.objects.sync()?;
        self.tree.commit()?;
        self.tree.sync_packs()?;
        if let Some(g) = generation {
            self.set_meta("generation", &g.to_le_bytes())?;
        }
        self.engine(|| self.db.flush())?;
        files::fsync_tree(&self.path.join("sled"))?;
        files::fsync_dir(&self.path)
    }

    /// Voids the commits found in the packs but not in the directory (see
    /// [`Tree::void_uncommitted`]).
    pub(crate) fn void_uncommitted(&self) -> Result<()> {
        let _w = self.writer();
        self.tree.void_uncommitted()
    }

    /// Upgrades a format 2 store to `format` in one atomic step: every page is written
    /// again as a format 3 image (with a sequence number and its upper bound) in a new
    /// pack, with the settings sled held (dictionaries, memo versions) moved into the
    /// pages, and one sled batch installs the new directory, removes those settings from
    /// sled and records the new format. The old packs are deleted after the next sync.
    pub(crate) fn upgrade_from_format2(&self, format: u32) -> Result<()> {
        let _w = self.writer();
        self.tree.commit()?;
        let mut moved: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        for (name, value) in self.meta_scan("")? {
            if !matches!(name.as_str(), "format" | "generation" | "auth") {
                moved.push((meta_key(&name), value.to_vec()));
            }
        }
        let keys: Vec<Vec<u8>> = moved.iter().map(|(k, _)| k.clone()).collect();
        self.tree.rewrite_all(moved, |batch| {
            for k in keys {
                batch.remove(k);
            }
            batch.insert(meta_key("format"), &format.to_le_bytes()[..]);
        })?;
        self.durable_locked(None)
    }

    /// Pack files no page names (see [`Tree::orphans`]).
    pub(crate) fn orphan_packs(&self) -> Result<Vec<PathBuf>> {
        self.tree.orphans()
    }

    /// Deletes an orphan pack file (once the directory is durable).
    pub(crate) fn remove_orphan_pack(&self, path: &Path) -> Result<()> {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
        }
        self.tree.forget_pack(path);
        Ok(())
    }

    /// Schedules an orphan pack file for deletion at the next sync (gc); returns false
    /// when the path is not a pack file.
    pub(crate) fn doom_orphan_pack(&self, path: &Path) -> bool {
        self.tree.doom_orphan(path)
    }

    /// Reads and checks every page of the tree (see [`Tree::check_pages`]). Changes nothing.
    pub(crate) fn check_pages(&self) -> Vec<PageCheck> {
        self.tree.check_pages()
    }

    /// Rewrites the page at `lo` without the records beyond its range (see
    /// [`Tree::trim_page`]). The caller holds the write lock.
    pub(crate) fn trim_page(&self, lo: &[u8]) -> Result<()> {
        self.tree.trim_page(lo)
    }

    /// Storage statistics of the record tree.
    pub(crate) fn tree_stats(&self) -> TreeStats {
        self.tree.stats()
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

    /// Reads an object record under the write lock.
    pub(crate) fn object(&self, digest: &Digest) -> Result<Option<ObjectRecord>> {
        self.index.object(digest)
    }

    /// Applies `ops` atomically; returns, per op, whether its key existed before.
    ///
    /// When no op involves an object record (all frames inline, no object replaced or
    /// removed) and there is one op, it is one record written to the tree, with no
    /// refcount to settle; otherwise all record changes go into one tree batch (see
    /// [`Writer::settle`]). Either reaches disk with the next commit.
    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<Vec<bool>> {
        let index = self.index;
        // No object records at all: a single inline put or a removal touches no refcount,
        // so it is one record written to the tree, with no read of the previous record.
        if let [op] = ops.as_slice()
            && index.live_objects.load(Ordering::Acquire) == 0
            && index.objects_counted()
        {
            match op {
                Op::Put { space, key, header, digest, frame, delta: None }
                    if frame.len() <= INLINE_MAX && header.len() == space.header_len() =>
                {
                    let mut r = Vec::with_capacity(header.len() + 33 + frame.len());
                    r.extend_from_slice(header);
                    r.extend_from_slice(&KeyRecord::inline(digest, frame));
                    let k = key_in(*space, key);
                    let existed = index.tree.contains(&k).map_err(|e| naming_key(e, key))?;
                    let mut batch = Batch::default();
                    batch.insert(k, r);
                    self.write(batch)?;
                    return Ok(vec![existed]);
                }
                Op::Remove { space, key } => {
                    let k = key_in(*space, key);
                    let existed = index.tree.contains(&k).map_err(|e| naming_key(e, key))?;
                    if existed {
                        let mut batch = Batch::default();
                        batch.remove(k);
                        self.write(batch)?;
                    }
                    return Ok(vec![existed]);
                }
                Op::Put { .. } | Op::Link { .. } => {}
            }
        }
        // The state of each key as this batch sees it (later ops see earlier ones).
        let mut current: HashMap<(Space, String), KeyState> = HashMap::new();
        let mut deltas: BTreeMap<Digest, i64> = BTreeMap::new();
        let mut existed = Vec::with_capacity(ops.len());
        let mut batch = Batch::default();
        let mut single: Option<(Vec<u8>, Option<Vec<u8>>)> = None;
        let mut new_objects: HashMap<Digest, NewObject> = HashMap::new();
        let n_ops = ops.len();
        for op in ops {
            let (space, key) = (op.key().0, op.key().1.to_owned());
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
            let header_ok = |h: &[u8]| {
                if h.len() == space.header_len() {
                    Ok(())
                } else {
                    Err(index.corrupted(format!("record of key {key:?}"), "header of the wrong length"))
                }
            };
            let record = match op {
                Op::Put { digest, frame, header, delta, .. } => {
                    header_ok(&header)?;
                    let mut r = header;
                    if frame.len() <= INLINE_MAX && delta.is_none() {
                        current.insert((space, key), KeyState::Inline);
                        r.extend_from_slice(&KeyRecord::inline(&digest, &frame));
                    } else {
                        current.insert((space, key), KeyState::Object(digest));
                        *deltas.entry(digest).or_insert(0) += 1;
                        new_objects.entry(digest).or_insert(NewObject { frame, delta });
                        r.extend_from_slice(&KeyRecord::object(&digest));
                    }
                    Some(r)
                }
                Op::Link { digest, header, .. } => {
                    header_ok(&header)?;
                    current.insert((space, key), KeyState::Object(digest));
                    *deltas.entry(digest).or_insert(0) += 1;
                    let mut r = header;
                    r.extend_from_slice(&KeyRecord::object(&digest));
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
        deltas.retain(|_, d| *d != 0);
        if deltas.is_empty()
            && let Some((k, v)) = single
        {
            let mut one = Batch::default();
            match v {
                Some(v) => one.insert(k, v),
                None => one.remove(k),
            }
            self.write(one)?;
            return Ok(existed);
        }
        self.settle(batch, deltas, new_objects)?;
        Ok(existed)
    }

    /// Completes and applies a batch whose key-level changes are in `batch` and change the
    /// references of objects by `deltas`: objects that gain their first reference are
    /// created from `new_objects` (their frames written to files before the batch, or put
    /// in frame records in it) and take a reference on their base; objects left without
    /// references are removed, releasing their base in turn, down the chain (a work list,
    /// not recursion). Their frames are deleted at the next sync.
    pub(crate) fn settle(
        &self,
        mut batch: Batch,
        mut deltas: BTreeMap<Digest, i64>,
        mut new_objects: HashMap<Digest, NewObject>,
    ) -> Result<()> {
        let index = self.index;
        let generation = index.generation();
        let mut old: HashMap<Digest, Option<ObjectRecord>> = HashMap::new();
        let mut old_of = |d: &Digest| -> Result<Option<ObjectRecord>> {
            if let Some(r) = old.get(d) {
                return Ok(*r);
            }
            let r = index.object(d)?;
            old.insert(*d, r);
            Ok(r)
        };
        // Objects that gain their first reference: created, holding one on their base.
        let mut created: HashMap<Digest, ObjectRecord> = HashMap::new();
        let gaining: Vec<Digest> = deltas.iter().filter(|&(_, &n)| n > 0).map(|(d, _)| *d).collect();
        for d in gaining {
            if old_of(&d)?.is_some() {
                continue;
            }
            let n = new_objects
                .remove(&d)
                .ok_or_else(|| index.corrupted(format!("object {d}"), "no content for a new object"))?;
            let in_tree = n.frame.len() <= INLINE_MAX;
            let mut rec = ObjectRecord::whole(0, n.frame.len() as u64, generation, in_tree);
            if let Some(delta) = n.delta {
                let base = old_of(&delta.base)?
                    .ok_or_else(|| index.corrupted(format!("object {d}"), "its base is not in the store"))?;
                rec.depth = base
                    .depth
                    .checked_add(1)
                    .filter(|&depth| depth <= MAX_DEPTH)
                    .ok_or_else(|| index.corrupted(format!("object {d}"), "its chain of bases is too long"))?;
                rec.base = Some(delta.base);
                rec.seq = delta.seq;
                *deltas.entry(delta.base).or_insert(0) += 1;
            }
            if in_tree {
                batch.insert(&frame_key(&d)[..], n.frame);
            } else {
                index.objects.write(&d, &n.frame)?;
            }
            created.insert(d, rec);
        }
        // Objects left without references: removed, releasing their base.
        let mut work: Vec<Digest> = deltas.iter().filter(|&(_, &n)| n < 0).map(|(d, _)| *d).collect();
        let mut removed: HashSet<Digest> = HashSet::new();
        while let Some(d) = work.pop() {
            if removed.contains(&d) {
                continue;
            }
            let delta = deltas.get(&d).copied().unwrap_or(0);
            let rec = old_of(&d)?;
            let refs = rec.map_or(0, |r| r.refs as i64) + delta;
            if refs < 0 {
                return Err(index.corrupted(format!("object record {d}"), "refcount would go below zero"));
            }
            if refs == 0
                && let Some(rec) = rec
            {
                removed.insert(d);
                if let Some(b) = rec.base {
                    *deltas.entry(b).or_insert(0) -= 1;
                    work.push(b);
                }
            }
        }
        for (d, delta) in &deltas {
            if removed.contains(d) {
                batch.remove(&object_key(d)[..]);
            } else if let Some(rec) = created.get(d) {
                batch.insert(&object_key(d)[..], ObjectRecord { refs: *delta as u64, ..*rec }.encode());
            } else if *delta != 0 {
                let rec = old_of(d)?.ok_or_else(|| index.corrupted(format!("object {d}"), "no record"))?;
                let refs = rec.refs as i64 + delta;
                batch.insert(&object_key(d)[..], ObjectRecord { refs: refs as u64, ..rec }.encode());
            }
        }
        self.write(batch)?;
        index.live_objects.fetch_add(created.len() as u64, Ordering::AcqRel);
        index.live_objects.fetch_sub(removed.len() as u64, Ordering::AcqRel);
        index.doomed.lock().unwrap_or_else(PoisonError::into_inner).extend(removed);
        Ok(())
    }

    /// Rewrites the headers of memo records (their last-read times) in one batch; records
    /// gone meanwhile are skipped.
    pub(crate) fn set_memo_headers(&self, updates: Vec<(String, Vec<u8>)>) -> Result<()> {
        let index = self.index;
        let mut batch = Batch::default();
        for (key, head) in updates {
            let k = key_in(Space::Memo, &key);
            if head.len() != MEMO_HEADER {
                continue;
            }
            if let Some(raw) = index.tree.get(&k)?
                && raw.len() > MEMO_HEADER
            {
                let mut r = head;
                r.extend_from_slice(&raw[MEMO_HEADER..]);
                batch.insert(k, r);
            }
        }
        self.write(batch)
    }

    /// Sets (or, with `None`, removes) a setting (see [`Index::setting`]); it reaches disk
    /// with the next commit, like any record.
    pub(crate) fn set_setting(&self, name: &str, value: Option<&[u8]>) -> Result<()> {
        let mut batch = Batch::default();
        match value {
            Some(v) => batch.insert(meta_key(name), v),
            None => batch.remove(meta_key(name)),
        }
        self.write(batch)
    }

    /// Replaces the object record of `digest` (used by gc to repair refcounts);
    /// `None` removes it.
    pub(crate) fn set_object(&self, digest: &Digest, rec: Option<ObjectRecord>) -> Result<()> {
        let index = self.index;
        match rec {
            Some(r) => {
                let existed = index.tree.contains(&object_key(digest))?;
                let mut batch = Batch::default();
                batch.insert(&object_key(digest)[..], &r.encode()[..]);
                self.write(batch)?;
                if !existed {
                    index.live_objects.fetch_add(1, Ordering::AcqRel);
                }
            }
            None => {
                if index.tree.contains(&object_key(digest))? {
                    let mut batch = Batch::default();
                    batch.remove(&object_key(digest)[..]);
                    self.write(batch)?;
                    index.live_objects.fetch_sub(1, Ordering::AcqRel);
                    index.doomed.lock().unwrap_or_else(PoisonError::into_inner).push(*digest);
                }
            }
        }
        Ok(())
    }

    /// Applies `batch` to the tree's write buffer, committing the buffer when it is full.
    pub(crate) fn write(&self, batch: Batch) -> Result<()> {
        let tree = &self.index.tree;
        tree.apply(batch);
        if tree.buffered().0 > self.index.buffer_max {
            if self.index.power_loss {
                // The records may reach disk before the next sync: their files first.
                self.index.objects.sync()?;
            }
            tree.commit()?;
        }
        Ok(())
    }
}
