//! The store layer: one open store — its index, codec, delta chains, decoded-object cache
//! and dictionary trainer — and the read and write paths every handle goes through
//! ([`crate::Shelf`], [`crate::Memo`], checkpoints, stats, repair). Opening and recovery
//! are in [`open`].
//!
//! Invariant: every value read here was re-hashed and found equal to its address; every
//! change is one atomic commit of the index ([`Store::commit`]: one sled batch for the
//! page directory over pack pages written before it, see [`crate::index`]), after which
//! the cache is told which keys changed and the store is marked dirty, so the next sync
//! makes it durable; a dictionary is recorded before any frame names it.

mod open;

use std::any::{Any, TypeId};
use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::blob::{Codec, DICT_MAX_VALUE, Digest, Hasher, RAW_MAX, TRAIN_BYTES, TRAIN_SAMPLES};
use crate::cache::Cache;
use crate::chain::{Chains, LoadError, Recent};
use crate::error::{Error, Result};
use crate::index::{Delta, Index, MAX_KEY_LEN, Op, Space, Stored, Writer};
use crate::lock::{Holder, StoreLock};
use crate::pickle;
use crate::witness::{self, Witness};

/// Default budget of the decoded-object cache, in estimated bytes.
pub const DEFAULT_CACHE_BYTES: u64 = 64 << 20;

/// Default most objects in the decoded-object cache.
pub const DEFAULT_CACHE_ENTRIES: u64 = 100_000;

/// The on-disk format version this build reads and writes (see `docs/FORMAT.md`). A store
/// of format 2 is upgraded in place by the first writable open; one of format 3 (which
/// format 4 only extends, with aligned frames) is read as it is and marked format 4 by the
/// first writable open.
pub const FORMAT_VERSION: u32 = 4;

/// The older format this build reads as it is: every byte of a format 3 store means the
/// same in format 4.
pub(crate) const FORMAT_READ_AS_IS: u32 = 3;

/// The text whose keyed digest a store with an auth key keeps as its auth check.
pub(crate) const AUTH_CHECK: &[u8] = b"pickleshelf auth check";

/// The shortest commit interval (`ShelfBuilder::commit_interval`).
const MIN_COMMIT_INTERVAL: Duration = Duration::from_millis(1);
/// The longest commit interval.
const MAX_COMMIT_INTERVAL: Duration = Duration::from_secs(3600);
/// The smallest write buffer (`ShelfBuilder::buffer_bytes`).
const MIN_BUFFER_BYTES: usize = 64 << 10;
/// The largest write buffer.
const MAX_BUFFER_BYTES: usize = 1 << 30;

/// What [`Shelf::sync`](crate::Shelf::sync) guarantees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// `sync` fsyncs every file and directory the store wrote: what it acknowledged
    /// survives power loss. The default.
    #[default]
    PowerLoss,
    /// `sync` writes all buffers to the operating system but does not fsync: what it
    /// acknowledged survives the process being killed, not a power loss. Faster.
    ProcessCrash,
}

/// What a store is opened with: the options of [`crate::ShelfBuilder`], validated by it.
#[derive(Clone, Debug)]
pub(crate) struct Config {
    pub(crate) path: PathBuf,
    pub(crate) zstd_level: i32,
    pub(crate) protocol: u8,
    pub(crate) read_only: bool,
    pub(crate) create: bool,
    pub(crate) auth_key: Option<Vec<u8>>,
    pub(crate) durability: Durability,
    pub(crate) allow_rollback: bool,
    pub(crate) cache_bytes: u64,
    pub(crate) cache_entries: u64,
    /// A format 2 store may be opened read-only (by salvage) without being upgraded.
    pub(crate) legacy: bool,
    /// Read the page directory from these sled files (salvage: rebuilt from the packs).
    pub(crate) sled_from: Option<PathBuf>,
    /// The write buffer is committed once its oldest write is this old.
    pub(crate) commit_interval: Duration,
    /// A write that leaves more than this many bytes buffered commits the buffer.
    pub(crate) buffer_bytes: usize,
    /// The temporary directory the store is in, deleted when the store closes
    /// (`Shelf::temporary`).
    pub(crate) temporary: Option<Arc<tempfile::TempDir>>,
}

impl Config {
    /// The defaults for the store in `path`.
    pub(crate) fn new(path: &Path) -> Config {
        Config {
            path: path.to_path_buf(),
            zstd_level: 3,
            protocol: pickle::DEFAULT_PROTOCOL,
            read_only: false,
            create: true,
            auth_key: None,
            durability: Durability::PowerLoss,
            allow_rollback: false,
            cache_bytes: DEFAULT_CACHE_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            legacy: false,
            sled_from: None,
            commit_interval: crate::index::COMMIT_AFTER,
            buffer_bytes: crate::index::BUFFER_MAX,
            temporary: None,
        }
    }

    /// Checks the options; [`Store::open`] opens nothing a failed check refuses.
    pub(crate) fn validate(&self) -> Result<()> {
        if !(1..=19).contains(&self.zstd_level) {
            return Err(Error::Config(format!("zstd level {} is outside 1..=19", self.zstd_level)));
        }
        if !(2..=5).contains(&self.protocol) {
            return Err(Error::Config(format!("pickle protocol {} is outside 2..=5", self.protocol)));
        }
        if !(MIN_COMMIT_INTERVAL..=MAX_COMMIT_INTERVAL).contains(&self.commit_interval) {
            return Err(Error::Config(format!(
                "commit interval {:?} is outside {:?}..=1h",
                self.commit_interval, MIN_COMMIT_INTERVAL
            )));
        }
        if !(MIN_BUFFER_BYTES..=MAX_BUFFER_BYTES).contains(&self.buffer_bytes) {
            return Err(Error::Config(format!(
                "write buffer of {} bytes is outside 64 KiB..=1 GiB ({MIN_BUFFER_BYTES}..={MAX_BUFFER_BYTES} bytes)",
                self.buffer_bytes
            )));
        }
        if let Some(k) = &self.auth_key
            && k.len() < 16
        {
            return Err(Error::Config(format!("auth key has {} bytes; at least 16 are needed", k.len())));
        }
        Ok(())
    }

    /// The hasher the auth key (or its absence) gives.
    pub(crate) fn hasher(&self) -> Hasher {
        Hasher::for_auth_key(self.auth_key.as_deref())
    }
}

/// One open store, shared by every handle on it (`Arc<Store>`).
pub(crate) struct Store {
    path: PathBuf,
    cache: Cache,
    /// Candidate bases and decoded chain members (see [`crate::chain`]).
    chains: Chains,
    index: Index,
    codec: Codec,
    protocol: u8,
    read_only: bool,
    durability: Durability,
    /// Values kept to train the dictionary (those it would compress) and their total
    /// length; `None` once there is one.
    samples: Mutex<Option<(Vec<Vec<u8>>, usize)>>,
    /// Held through a sync: concurrent syncs write the witness one at a time, in
    /// generation order.
    syncing: Mutex<()>,
    /// True when something was written since the last sync started.
    dirty: AtomicBool,
    /// The thread training the compression dictionary, while it runs.
    trainer: Mutex<Option<std::thread::JoinHandle<Option<Vec<u8>>>>>,
    /// True while `trainer` holds a thread (checked without the lock on each write).
    training: AtomicBool,
    /// Memos holding the store (see [`MemoHold`]).
    memos: AtomicUsize,
    /// Held for the handle's lifetime: the lock on `LOCK` (exclusive for a writer, shared
    /// for a reader; none for a reader of a store without `LOCK`).
    lock: StoreLock,
    /// The temporary directory holding the store (`Shelf::temporary`): last field, so it
    /// is deleted after everything else closed.
    _temporary: Option<Arc<tempfile::TempDir>>,
}

impl Holder for Store {
    fn describe(&self, handles: usize) -> String {
        let memos = self.memos.load(Ordering::Acquire);
        let kind = if self.read_only { "a read-only Shelf" } else { "an open Shelf" };
        format!("{kind} held by {}", crate::error::handles(handles.saturating_sub(memos), memos))
    }
}

impl Store {
    /// The store's directory.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn read_only(&self) -> bool {
        self.read_only
    }

    pub(crate) fn index(&self) -> &Index {
        &self.index
    }

    pub(crate) fn codec(&self) -> &Codec {
        &self.codec
    }

    pub(crate) fn chains(&self) -> &Chains {
        &self.chains
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    pub(crate) fn protocol(&self) -> u8 {
        self.protocol
    }

    /// Records that something was written outside [`Shelf::commit`] (so `sync` must run).
    pub(crate) fn mark_dirty(&self) {
        self.dirty.store(true, Ordering::Release);
    }

    pub(crate) fn writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { path: self.path.clone() });
        }
        Ok(())
    }

    fn check_key(key: &str) -> Result<()> {
        if key.len() > MAX_KEY_LEN {
            let shown: String = key.chars().take(40).collect();
            return Err(Error::InvalidKey {
                key: shown,
                reason: format!("{} bytes long; at most {MAX_KEY_LEN} are allowed", key.len()),
            });
        }
        Ok(())
    }

    /// The put of `bytes` under `key`: its digest and frame, a delta when a recent object
    /// resembles it (see [`crate::chain`]).
    /// `locked` when the caller holds the write lock (then a dictionary the trainer
    /// finished is installed by a later write, as installing takes the lock).
    fn prepare(&self, key: &str, bytes: &[u8], locked: bool) -> Result<Prepared> {
        Self::check_key(key)?;
        let inner = self;
        let digest = inner.codec.digest(bytes);
        let e = inner.chains.encode(&inner.index, &inner.codec, Some(key), bytes, &digest)?;
        self.sample(bytes, locked)?;
        Ok(Prepared { op: Op::put(key.to_owned(), digest, e.frame, e.delta), delta: e.delta, recent: e.recent })
    }

    /// Under the write lock, before committing: a delta whose base went away since it was
    /// prepared (a concurrent removal) becomes a whole frame.
    fn revalidate(&self, writer: &Writer<'_>, p: &mut Prepared, bytes: &[u8]) -> Result<()> {
        if let Some(d) = p.delta
            && writer.object(&d.base)?.is_none()
            && let Op::Put { frame, delta, .. } = &mut p.op
        {
            *frame = self.codec.encode(bytes);
            *delta = None;
            p.delta = None;
        }
        Ok(())
    }

    /// The address and stored frame of pickle bytes (feeding the dictionary trainer).
    pub(crate) fn frame(&self, bytes: &[u8]) -> Result<(Digest, Vec<u8>)> {
        let digest = self.codec.digest(bytes);
        let frame = self.codec.encode(bytes);
        self.sample(bytes, false)?;
        Ok((digest, frame))
    }

    pub(crate) fn put(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.writable()?;
        let mut p = self.prepare(key, bytes, false)?;
        let writer = self.index.writer();
        self.revalidate(&writer, &mut p, bytes)?;
        self.commit(&writer, vec![p.op])?;
        drop(writer);
        self.chains.written(p.recent, p.delta, bytes);
        Ok(())
    }

    /// Applies `ops` and then tells the cache which keys changed (a failed write forgets
    /// them: their state is not known here).
    pub(crate) fn commit(&self, writer: &Writer<'_>, ops: Vec<Op>) -> Result<Vec<bool>> {
        let touched: Vec<(String, Option<Digest>)> =
            ops.iter()
                .map(|op| match op {
                    Op::Put { space: Space::Keys, key, digest, .. }
                    | Op::Link { space: Space::Keys, key, digest, .. } => (key.clone(), Some(*digest)),
                    Op::Remove { space: Space::Keys, key } => (key.clone(), None),
                    // Memo entries are not store keys: nothing of the key map to update.
                    Op::Put { key, .. } | Op::Link { key, .. } | Op::Remove { key, .. } => (key.clone(), None),
                })
                .collect();
        let result = writer.apply(ops);
        // After the write: a sync that starts before this point need not include it.
        self.dirty.store(true, Ordering::Release);
        for (key, digest) in touched {
            self.cache.key_written(&key, if result.is_ok() { digest } else { None });
        }
        result
    }

    /// Collects the values a dictionary would compress (over [`RAW_MAX`] bytes, up to
    /// [`DICT_MAX_VALUE`]: smaller ones are framed raw in pages compressed whole) until one
    /// can be trained ([`TRAIN_SAMPLES`] values or [`TRAIN_BYTES`] bytes), then trains and
    /// stores it. A store of small values never trains one. `locked`: the caller holds
    /// the write lock, so a finished dictionary is left for a later write to install.
    fn sample(&self, bytes: &[u8], locked: bool) -> Result<()> {
        if !locked && self.training.load(Ordering::Acquire) {
            install_dictionary(self, false)?;
        }
        if bytes.len() <= RAW_MAX || bytes.len() > DICT_MAX_VALUE {
            return Ok(());
        }
        let ready = {
            let mut guard = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
            let Some((samples, total)) = guard.as_mut() else {
                return Ok(());
            };
            samples.push(bytes.to_vec());
            *total += bytes.len();
            if samples.len() < TRAIN_SAMPLES && *total < TRAIN_BYTES {
                return Ok(());
            }
            guard.take()
        };
        let Some((samples, _)) = ready else {
            return Ok(());
        };
        // Training takes tens of milliseconds: off the write path, on another thread; the
        // dictionary is installed by a later write (or at sync, or when the store closes).
        let handle = std::thread::Builder::new()
            .name("pickleshelf-dict".into())
            .spawn(move || Codec::train(&samples))
            .map_err(|e| Error::Io { path: self.path.clone(), source: e })?;
        *self.trainer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        self.training.store(true, Ordering::Release);
        Ok(())
    }

    /// The verified pickle bytes of `key`'s record `stored` (whole, or rebuilt from its
    /// delta chain).
    pub(crate) fn load(&self, key: &str, stored: Stored) -> Result<Vec<u8>> {
        let digest = stored.digest();
        match stored {
            Stored::Inline { frame, .. } => self
                .codec
                .decode(&frame, &digest)
                .map_err(|reason| Error::CorruptedObject { key: key.to_owned(), digest, reason }),
            Stored::Object { .. } => {
                let bytes = self.chains.load(&self.index, &self.codec, &digest).map_err(|e| match e {
                    LoadError::Store(e) => e,
                    LoadError::Bad(digest, reason) => Error::CorruptedObject { key: key.to_owned(), digest, reason },
                })?;
                Ok(Arc::try_unwrap(bytes).unwrap_or_else(|b| b.as_ref().clone()))
            }
        }
    }

    pub(crate) fn get_or_load<T, F>(&self, key: &str, decode: F) -> Result<Option<Arc<T>>>
    where
        T: Send + Sync + 'static,
        F: FnOnce(&[u8]) -> Result<(Arc<T>, u64)>,
    {
        let cache = &self.cache;
        let ty = TypeId::of::<T>();
        let (known, recent, stamp) = cache.key_lookup(key, Some(ty));
        if let Some(hit) = recent
            && let Ok(v) = Arc::downcast::<T>(hit)
        {
            return Ok(Some(v));
        }
        if let Some(d) = known
            && let Some(hit) = cache.get(&d, ty)
        {
            cache.remember_object(key, &d, ty, &hit);
            if let Ok(v) = Arc::downcast::<T>(hit) {
                return Ok(Some(v));
            }
        }
        // From reading the record to reading its object file (see `Index::pin_files`).
        let _pin = self.index.pin_files();
        let Some(stored) = self.index.get(key)? else {
            return Ok(None);
        };
        let digest = stored.digest();
        cache.remember_key(key, digest, stamp);
        if known != Some(digest)
            && let Some(hit) = cache.get(&digest, ty)
            && let Ok(v) = Arc::downcast::<T>(hit)
        {
            return Ok(Some(v));
        }
        let bytes = self.load(key, stored)?;
        let (value, size) = decode(&bytes)?;
        if cache.enabled() {
            let obj = Arc::clone(&value) as Arc<dyn Any + Send + Sync>;
            cache.insert(&digest, ty, Arc::clone(&obj), size);
            cache.remember_object(key, &digest, ty, &obj);
        }
        Ok(Some(value))
    }

    /// Removes `key`; returns whether it was there.
    pub(crate) fn remove(&self, key: &str) -> Result<bool> {
        self.writable()?;
        let existed = self.commit(&self.index.writer(), vec![Op::remove(key.to_owned())])?;
        Ok(existed.first().copied().unwrap_or(false))
    }

    /// Reads `key`'s pickle bytes and writes what `f` makes of them (`None` removes the
    /// key), with no other write between the read and the write.
    pub(crate) fn update(&self, key: &str, f: impl FnOnce(Option<Vec<u8>>) -> Result<Option<Vec<u8>>>) -> Result<()> {
        self.transact(|tx| {
            let current = tx.get(key)?;
            match f(current)? {
                Some(bytes) => tx.put(key, bytes),
                None => {
                    tx.remove(key);
                    Ok(())
                }
            }
        })
    }

    /// Runs `f` under the write lock with a [`Txn`] over the store's keys, then commits
    /// every change it made in one commit; when `f` fails nothing is written. No other
    /// write can come between `f`'s reads and the commit.
    pub(crate) fn transact<R, E: From<Error>>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<R, E>) -> Result<R, E> {
        self.writable()?;
        let mut tx = Txn { store: self, writer: self.index.writer(), changes: BTreeMap::new() };
        let r = f(&mut tx)?;
        let Txn { writer, changes, .. } = tx;
        if changes.is_empty() {
            return Ok(r);
        }
        let mut ops = Vec::with_capacity(changes.len());
        let mut notes = Vec::new();
        for (key, bytes) in &changes {
            match bytes {
                Some(b) => {
                    let mut p = self.prepare(key, b, true)?;
                    self.revalidate(&writer, &mut p, b)?;
                    notes.push((p.recent, p.delta, b));
                    ops.push(p.op);
                }
                None => ops.push(Op::remove(key.clone())),
            }
        }
        self.commit(&writer, ops)?;
        drop(writer);
        for (recent, delta, bytes) in notes {
            self.chains.written(recent, delta, bytes);
        }
        Ok(r)
    }

    /// Applies `(key, Some(pickle bytes))` puts and `(key, None)` removals in one commit.
    pub(crate) fn apply(&self, changes: &[(String, Option<Vec<u8>>)]) -> Result<()> {
        self.writable()?;
        let mut prepared = Vec::with_capacity(changes.len());
        for (key, bytes) in changes {
            prepared.push(match bytes {
                Some(b) => self.prepare(key, b, false)?,
                None => Prepared { op: Op::remove(key.clone()), delta: None, recent: None },
            });
        }
        let writer = self.index.writer();
        let mut ops = Vec::with_capacity(prepared.len());
        let mut notes = Vec::new();
        for (mut p, (_, bytes)) in prepared.into_iter().zip(changes) {
            if let Some(b) = bytes {
                self.revalidate(&writer, &mut p, b)?;
                notes.push((p.recent, p.delta, b));
            }
            ops.push(p.op);
        }
        self.commit(&writer, ops)?;
        drop(writer);
        for (recent, delta, bytes) in notes {
            self.chains.written(recent, delta, bytes);
        }
        Ok(())
    }

    /// Makes every commit so far durable, as the store's [`Durability`] says.
    pub(crate) fn sync(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        sync_store(self)
    }

    /// Syncs and closes the store when `store` is its last handle; otherwise lets go of
    /// it and says what else holds it.
    pub(crate) fn close(store: Arc<Store>) -> Result<()> {
        match Arc::try_unwrap(store) {
            Ok(store) => {
                if !store.read_only {
                    install_dictionary(&store, true)?;
                    sync_store(&store)?;
                }
                // Dropping it closes sled and releases the lock (its sync finds nothing to do).
                drop(store);
                Ok(())
            }
            Err(store) => {
                store.sync()?;
                let memos = store.memos.load(Ordering::Acquire);
                let others = Arc::strong_count(&store) - 1;
                Err(Error::StillOpen { path: store.path.clone(), shelves: others.saturating_sub(memos), memos })
            }
        }
    }

    /// The pickle bytes stored under `key`, verified against their address.
    pub(crate) fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let _pin = self.index.pin_files();
        match self.index.get(key)? {
            Some(stored) => self.load(key, stored).map(Some),
            None => Ok(None),
        }
    }

    /// The value under `key`, verified and given to `read` (in place for a value stored
    /// in its key's record, without a copy of the pickle).
    pub(crate) fn get_with<T>(&self, key: &str, read: impl FnOnce(&[u8]) -> Result<T>) -> Result<Option<T>> {
        let _pin = self.index.pin_files();
        match self.index.get(key)? {
            Some(Stored::Inline { frame, digest }) => match self.codec.decode_borrowed(&frame, &digest) {
                Ok(bytes) => read(&bytes).map(Some),
                Err(reason) => Err(Error::CorruptedObject { key: key.to_owned(), digest, reason }),
            },
            Some(stored) => read(&self.load(key, stored)?).map(Some),
            None => Ok(None),
        }
    }
}

/// A memo's share of the store: counted while it lives, so that [`Store::close`]
/// ([`Error::StillOpen`]) and [`Error::Locked`] can say that memos hold the store.
pub(crate) struct MemoHold(Arc<Store>);

impl MemoHold {
    pub(crate) fn new(store: Arc<Store>) -> MemoHold {
        store.memos.fetch_add(1, Ordering::AcqRel);
        MemoHold(store)
    }
}

impl std::ops::Deref for MemoHold {
    type Target = Store;
    fn deref(&self) -> &Store {
        &self.0
    }
}

impl Drop for MemoHold {
    fn drop(&mut self) {
        self.0.memos.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Key-space reads for the handles: keys, addresses and verified pickle bytes, without
/// naming the index's records.
impl Store {
    /// The address of the value under `key`.
    pub(crate) fn digest(&self, key: &str) -> Result<Option<Digest>> {
        Ok(self.index.get(key)?.map(|s| s.digest()))
    }

    /// True when `key` holds a value.
    pub(crate) fn contains(&self, key: &str) -> Result<bool> {
        self.index.contains(key)
    }

    /// The keys that start with `prefix`, in byte order.
    pub(crate) fn keys<'a>(&'a self, prefix: &str) -> impl Iterator<Item = Result<String>> + 'a {
        self.index.scan(prefix).map(|r| r.map(|(k, _)| k))
    }

    /// The keys that start with `prefix` and are at least `from`, in byte order.
    pub(crate) fn keys_from<'a>(&'a self, prefix: &str, from: &str) -> impl Iterator<Item = Result<String>> + 'a {
        self.index.scan_keys_from(prefix, from)
    }

    /// The keys that start with `prefix` with their verified pickle bytes, in key order.
    pub(crate) fn scan_pickles<'a>(
        &'a self,
        prefix: &str,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + use<'a> {
        self.loaded(Box::new(self.index.scan(prefix)))
    }

    /// The keys within `lo` and `hi` with their verified pickle bytes, in key order or
    /// (with `rev`) descending.
    pub(crate) fn range_pickles<'a>(
        &'a self,
        lo: Bound<&str>,
        hi: Bound<&str>,
        rev: bool,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + 'a {
        self.loaded(self.index.range(lo, hi, rev))
    }

    /// The keys and verified pickle bytes of `records`.
    fn loaded<'a>(
        &'a self,
        mut records: Box<dyn Iterator<Item = Result<(String, Stored)>> + 'a>,
    ) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + 'a {
        std::iter::from_fn(move || {
            // From reading the record to reading its object file (see `Index::pin_files`).
            let _pin = self.index.pin_files();
            let item = records.next()?;
            Some(item.and_then(|(k, stored)| {
                let bytes = self.load(&k, stored)?;
                Ok((k, bytes))
            }))
        })
    }

    /// Drops the cached decoded objects of the value under `key`; whether any was cached.
    pub(crate) fn evict(&self, key: &str) -> Result<bool> {
        Ok(match self.digest(key)? {
            Some(d) => self.cache.evict(&d) > 0,
            None => false,
        })
    }

    /// Key and memo records, readable or not: the steps of a verify or gc.
    pub(crate) fn record_count(&self) -> u64 {
        (self.index.scan_in(Space::Keys, "").count() + self.index.scan_in(Space::Memo, "").count()) as u64
    }
}

/// Installs the dictionary the training thread made, once it is done (or, with `wait`,
/// after waiting for it). The dictionary is recorded before any frame names it.
fn install_dictionary(inner: &Store, wait: bool) -> Result<()> {
    let handle = {
        let mut t = inner.trainer.lock().unwrap_or_else(PoisonError::into_inner);
        match t.as_ref() {
            Some(h) if wait || h.is_finished() => t.take(),
            _ => None,
        }
    };
    let Some(handle) = handle else {
        return Ok(());
    };
    inner.training.store(false, Ordering::Release);
    // A panicking trainer (zstd) leaves the store without a dictionary, which is fine.
    if let Ok(Some(dict)) = handle.join() {
        let id: u32 = 1;
        let writer = inner.index.writer();
        writer.set_setting(&format!("dict/{id}"), Some(&dict))?;
        writer.set_setting("dict.current", Some(&id.to_le_bytes()))?;
        drop(writer);
        inner
            .codec
            .add_dict(id, dict)
            .map_err(|reason| Error::Corrupted { what: "new dictionary".into(), reason: reason.into() })?;
        inner.codec.set_current_dict(id);
        inner.dirty.store(true, Ordering::Release);
    }
    Ok(())
}

fn sync_store(inner: &Store) -> Result<()> {
    let _syncing = inner.syncing.lock().unwrap_or_else(PoisonError::into_inner);
    if inner.training.load(Ordering::Acquire) {
        install_dictionary(inner, false)?;
    }
    // Nothing written since the last sync: it is all durable already.
    if !inner.dirty.swap(false, Ordering::AcqRel) {
        return Ok(());
    }
    match inner.durability {
        Durability::PowerLoss => {
            let (generation, seq) = inner.index.sync()?;
            witness::write(&inner.path, Witness { generation, seq: Some(seq) }, true)
        }
        Durability::ProcessCrash => inner.index.flush(),
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if !self.read_only {
            let _ = install_dictionary(self, true);
            // Best effort: a failure here has nowhere to go; sled also flushes on drop.
            let _ = sync_store(self);
        }
    }
}

/// The changes of a [`Store::transact`] before they commit, made under the write lock:
/// reads see them first, then the store.
pub(crate) struct Txn<'s> {
    store: &'s Store,
    writer: Writer<'s>,
    /// By key: the pickle bytes to store, or `None` for a removal.
    changes: BTreeMap<String, Option<Vec<u8>>>,
}

impl Txn<'_> {
    /// The pickle bytes of `key` as this transaction sees them (verified when read from
    /// the store).
    pub(crate) fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        if let Some(change) = self.changes.get(key) {
            return Ok(change.clone());
        }
        let _pin = self.store.index.pin_files();
        match self.writer.get(key)? {
            Some(stored) => self.store.load(key, stored).map(Some),
            None => Ok(None),
        }
    }

    /// The address of `key`'s value as this transaction sees it.
    pub(crate) fn digest(&self, key: &str) -> Result<Option<Digest>> {
        match self.changes.get(key) {
            Some(change) => Ok(change.as_ref().map(|b| self.store.codec.digest(b))),
            None => Ok(self.writer.get(key)?.map(|s| s.digest())),
        }
    }

    /// True when `key` holds a value as this transaction sees it.
    pub(crate) fn contains(&self, key: &str) -> Result<bool> {
        match self.changes.get(key) {
            Some(change) => Ok(change.is_some()),
            None => self.store.index.contains(key),
        }
    }

    /// The address of `bytes` in this store.
    pub(crate) fn digest_of(&self, bytes: &[u8]) -> Digest {
        self.store.codec.digest(bytes)
    }

    /// The store's pickle protocol.
    pub(crate) fn protocol(&self) -> u8 {
        self.store.protocol
    }

    /// Stores `bytes` under `key` when the transaction commits.
    pub(crate) fn put(&mut self, key: &str, bytes: Vec<u8>) -> Result<()> {
        Store::check_key(key)?;
        self.changes.insert(key.to_owned(), Some(bytes));
        Ok(())
    }

    /// Removes `key` when the transaction commits.
    pub(crate) fn remove(&mut self, key: &str) {
        self.changes.insert(key.to_owned(), None);
    }

    /// Removes every key the store holds when the transaction commits (and forgets the
    /// transaction's own puts).
    pub(crate) fn remove_all(&mut self) -> Result<()> {
        self.changes.retain(|_, change| change.is_none());
        for item in self.store.index.scan("") {
            let (key, _) = item?;
            self.changes.insert(key, None);
        }
        Ok(())
    }
}

/// A put ready to commit, with what the version bookkeeping needs once it is done.
struct Prepared {
    op: Op,
    delta: Option<Delta>,
    recent: Option<Recent>,
}
