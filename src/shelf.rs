//! [`Shelf`]: the public handle of a store — typed and raw reads and writes, batches,
//! the cache's knobs — over the store layer ([`crate::store`]), and the entry points of
//! the features that work on that layer: checkpoints, statistics, memos, verify, gc,
//! repair and salvage.
//!
//! Invariant: a `Shelf` holds nothing but its share of the open store: every value it
//! returns was verified by the store layer, and every change it makes is one commit
//! there; the store closes when its last handle (`Shelf` or memo) goes.

use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blob::Digest;
use crate::cache::CacheStats;
use crate::checkpoint::{Change, CheckpointInfo};
use crate::error::{Error, Result, decode_as};
use crate::memo::{Memo, MemoBuilder, MemoNamespace};
use crate::pickle::{self, Value};
use crate::progress::Progress;
use crate::repair::{RepairReport, SalvageReport, VerifyReport};
use crate::stats::{KeyInfo, Stats};
use crate::store::{Config, Durability, Store};
use crate::transaction::Transaction;

/// Options for opening a store, validated by [`ShelfBuilder::open`].
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use pickleshelf::Shelf;
/// let shelf = Shelf::builder(dir.path().join("state.db")).zstd_level(5).protocol(5).open()?;
/// shelf.insert("answer", &42)?;
/// assert_eq!(shelf.get::<i64>("answer")?, Some(42));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct ShelfBuilder {
    c: Config,
}

impl ShelfBuilder {
    /// zstd compression level for stored values and record pages (1–19, default 3).
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.c.zstd_level = level;
        self
    }

    /// Pickle protocol used to write typed values (2–5, default 4, as Python's default).
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.c.protocol = protocol;
        self
    }

    /// Opens without allowing writes (the store must exist). A read-only open writes
    /// nothing in the store's directory and needs no write access to it: it takes a
    /// shared lock on `LOCK` (none when the file is missing), so readers share a store and
    /// exclude writers, and it reads the page directory from a private copy of `sled/` in
    /// the system's temporary directory, deleted when the store closes.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.c.read_only = read_only;
        self
    }

    /// Whether a missing store is created (default true). Without it, a path that holds
    /// no store (missing, or a directory without one) fails to open, and nothing is written.
    pub fn create(mut self, create: bool) -> Self {
        self.c.create = create;
        self
    }

    /// Authenticates every object: addresses become keyed blake3 (a MAC) under a key
    /// derived from `key` (any length, at least 16 bytes), so a tampered or swapped
    /// object is rejected before anything is decoded. A store created with a key can only
    /// be opened with the same key.
    pub fn auth_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.c.auth_key = Some(key.into());
        self
    }

    /// What [`Shelf::sync`] guarantees (default [`Durability::PowerLoss`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.c.durability = durability;
        self
    }

    /// Opens a store that came back older than its last sync instead of failing with
    /// [`Error::RolledBack`]; the witness is then reset to the store's generation. Also
    /// opens a store whose witness file is damaged (and rewrites it).
    pub fn allow_rollback(mut self, allow: bool) -> Self {
        self.c.allow_rollback = allow;
        self
    }

    /// Budget of the decoded-object cache in estimated bytes of decoded objects (default
    /// 64 MiB); 0 disables caching. Changeable later with [`Shelf::set_cache_budget`].
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.c.cache_bytes = bytes;
        self
    }

    /// Most objects the cache holds (default 100,000); 0 disables caching.
    pub fn cache_entries(mut self, entries: u64) -> Self {
        self.c.cache_entries = entries;
        self
    }

    /// How long a write may wait in the in-memory write buffer before a background thread
    /// commits it (default 200 ms; 1 ms to 1 hour). A process killed outright loses at
    /// most the writes of this interval that were not synced; a longer one groups more
    /// writes per commit. [`Shelf::sync`] commits at once whatever the setting.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// let shelf = pickleshelf::Shelf::builder(dir.path().join("s"))
    ///     .commit_interval(Duration::from_millis(50))
    ///     .buffer_bytes(1 << 20)
    ///     .open()?;
    /// # drop(shelf);
    /// let err = pickleshelf::Shelf::builder(dir.path().join("t")).commit_interval(Duration::ZERO).open().unwrap_err();
    /// assert_eq!(err.to_string(), "invalid configuration: commit interval 0ns is outside 1ms..=1h");
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.c.commit_interval = interval;
        self
    }

    /// How many bytes of writes the in-memory write buffer holds before the write that
    /// passes it commits them (default 8 MiB; 64 KiB to 1 GiB). The buffer is memory
    /// the store holds besides its caches.
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.c.buffer_bytes = bytes;
        self
    }

    /// Validates the options and opens (or creates) the store.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid options; [`Error::Locked`] when another handle holds
    /// the store, naming it: at once for a handle of this process, after waiting up to half
    /// a second for one elsewhere to let go (a handle just closed can hold the lock a moment
    /// longer, in a child process started meanwhile, which has a copy of every descriptor
    /// from its fork to its exec); [`Error::NotAStore`] for a path that exists and holds
    /// something other than a store (nothing is written into it);
    /// [`Error::UnsupportedFormat`], [`Error::AuthKey`], [`Error::RolledBack`],
    /// [`Error::Engine`] or [`Error::Io`] when it cannot be opened as asked.
    pub fn open(self) -> Result<Shelf> {
        Ok(Shelf { store: Store::open(self.c)? })
    }

    // ----- checking and repairing a closed store -----

    /// Repairs the store: when its page directory (sled's files under `sled/`) cannot be
    /// read, or came back older than its last sync, rebuilds it from the pack files —
    /// installed only when it is exactly the directory of the newest commit they record
    /// (the old files are kept in `sled.damaged/`); upgrades a format 2 store; rewrites a
    /// damaged witness file; then opens the store and verifies it. A readable, current
    /// directory is kept. Nothing that can be read is removed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("state.db");
    /// # { let s = pickleshelf::Shelf::open(&path)?; s.insert("k", &1)?; }
    /// let conf = path.join("sled").join("conf");
    /// let mut bytes = std::fs::read(&conf)?;
    /// bytes[3] ^= 0x20; // one bad byte in sled's files: the store cannot be opened
    /// std::fs::write(&conf, bytes)?;
    /// assert!(pickleshelf::Shelf::open(&path).is_err());
    /// let report = pickleshelf::Shelf::builder(&path).repair()?;
    /// assert!(report.rebuilt && report.is_ok());
    /// assert_eq!(pickleshelf::Shelf::open(&path)?.get::<i64>("k")?, Some(1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Locked`] when the store is open; [`Error::AuthKey`] when the auth key is not
    /// the store's; [`Error::Io`]. What cannot be repaired is in the report
    /// ([`RepairReport::is_ok`](crate::RepairReport::is_ok)), not an error.
    pub fn repair(self) -> Result<RepairReport> {
        crate::repair::directory::run(self.c, false)
    }

    /// [`ShelfBuilder::repair`], rebuilding the page directory from the pack files even when
    /// sled's can be read and is current (after restoring `pages/` from a backup newer than
    /// `sled/`, say). The rebuilt directory is installed only when it is exactly that of the
    /// newest commit the packs record; otherwise nothing changes and the report says why.
    ///
    /// # Errors
    /// As for [`ShelfBuilder::repair`].
    pub fn rebuild(self) -> Result<RepairReport> {
        crate::repair::directory::run(self.c, true)
    }

    /// Copies everything that can be read out of this store — a damaged one — into a new
    /// store at `into` (which must not exist, or be an empty directory), and never changes
    /// this one: keys and memo results whose values verify, checkpoints whose entries all
    /// verify, the metadata records, and, under `recovered/<digest in hex>`, every value
    /// whose object verifies but that no record that could be read names (the values of
    /// keys whose records were lost). When the store's page directory cannot be read, it is
    /// rebuilt from the pack files in the system's temporary directory to read through.
    /// The new store has the same auth key; it is verified once written.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let (old, new) = (dir.path().join("old.db"), dir.path().join("new.db"));
    /// # { let s = pickleshelf::Shelf::open(&old)?; s.insert("k", &1)?; }
    /// let report = pickleshelf::Shelf::builder(&old).salvage(&new)?;
    /// assert!(report.is_complete() && report.keys == 1);
    /// assert_eq!(pickleshelf::Shelf::open(&new)?.get::<i64>("k")?, Some(1));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when `into` exists and is not empty, or a file cannot be read or
    /// written; [`Error::AuthKey`]; [`Error::Locked`] while a writer holds the store. What
    /// cannot be copied is in the report ([`SalvageReport::is_complete`](crate::SalvageReport::is_complete)), not an error.
    pub fn salvage(self, into: impl AsRef<Path>) -> Result<SalvageReport> {
        crate::repair::salvage::run(self.c, into.as_ref())
    }
}

/// A persistent store of Python pickles, addressed by key.
///
/// Cloning is cheap and shares the store; the store closes (syncing first) when the
/// last clone is dropped. `Shelf` is `Send + Sync`.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// use pickleshelf::Shelf;
/// let shelf = Shelf::open(dir.path().join("state.db"))?;
/// shelf.insert("user:1", &vec![1.5, 2.5])?;
/// assert_eq!(shelf.get::<Vec<f64>>("user:1")?, Some(vec![1.5, 2.5]));
/// shelf.sync()?; // durable from here on
/// # Ok::<(), pickleshelf::Error>(())
/// ```
#[derive(Clone)]
pub struct Shelf {
    store: Arc<Store>,
}

impl std::fmt::Debug for Shelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shelf").field("path", &self.store.path()).field("read_only", &self.store.read_only()).finish()
    }
}

impl Shelf {
    /// Opens (or creates) the store in directory `path` with default options.
    ///
    /// # Errors
    /// See [`ShelfBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Shelf> {
        Shelf::builder(path).open()
    }

    /// A new store in a fresh temporary directory (in the system's temporary directory),
    /// deleted with everything in it when the store closes (its last handle is dropped,
    /// or [`Shelf::close`]). For tests and scratch data.
    ///
    /// ```
    /// let shelf = pickleshelf::Shelf::temporary()?;
    /// shelf.insert("k", &1)?;
    /// let path = shelf.path().to_path_buf();
    /// assert!(path.exists());
    /// shelf.close()?;
    /// assert!(!path.exists());
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Io`] when the temporary directory cannot be made; as for
    /// [`ShelfBuilder::open`].
    pub fn temporary() -> Result<Shelf> {
        let dir = tempfile::Builder::new()
            .prefix("pickleshelf-")
            .tempdir()
            .map_err(|e| Error::Io { path: std::env::temp_dir(), source: e })?;
        let mut builder = Shelf::builder(dir.path().join("store"));
        builder.c.temporary = Some(Arc::new(dir));
        builder.open()
    }

    /// A builder for opening with options.
    pub fn builder(path: impl AsRef<Path>) -> ShelfBuilder {
        ShelfBuilder { c: Config::new(path.as_ref()) }
    }

    /// Repairs the store at `path` (no auth key); see [`ShelfBuilder::repair`].
    ///
    /// # Errors
    /// As for [`ShelfBuilder::repair`].
    pub fn repair(path: impl AsRef<std::path::Path>) -> Result<RepairReport> {
        Shelf::builder(path).repair()
    }

    /// The store layer under this handle (for memos, checkpoints, stats, repair, interop).
    pub(crate) fn store(&self) -> &Store {
        &self.store
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    // ----- writes -----

    /// Stores `value` under `key`, pickled with the store's protocol (default 4).
    ///
    /// # Errors
    /// [`Error::Pickle`] when `value` cannot be pickled; store errors as for
    /// [`Shelf::insert_pickle`].
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = pickle::to_vec_with_protocol(value, self.store.protocol())?;
        self.store.put(key, &bytes)
    }

    /// Stores a decoded pickle value under `key`.
    ///
    /// # Errors
    /// [`Error::Pickle`] for a value that cannot be pickled; store errors as for
    /// [`Shelf::insert_pickle`].
    pub fn insert_value(&self, key: &str, value: &Value) -> Result<()> {
        let bytes = pickle::encode(value, self.store.protocol())?;
        self.store.put(key, &bytes)
    }

    /// Stores pickle bytes under `key` byte-exact (e.g. bytes written by Python's
    /// `pickle.dumps`), after checking that they decode.
    ///
    /// # Errors
    /// [`Error::Pickle`] when `bytes` is not a valid pickle (nothing is stored);
    /// [`Error::ReadOnly`], [`Error::InvalidKey`], [`Error::Engine`], [`Error::Io`].
    pub fn insert_pickle(&self, key: &str, bytes: &[u8]) -> Result<()> {
        pickle::check(bytes)?;
        self.store.put(key, bytes)
    }

    /// Removes `key`; returns whether it was there.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Engine`], [`Error::Io`].
    pub fn remove(&self, key: &str) -> Result<bool> {
        self.store.remove(key)
    }

    /// Stores `value` under `key` and returns the value it replaces, as a `T` (`None`
    /// when the key was absent). The read and the write are one atomic step: no other
    /// write to the store comes between them.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// assert_eq!(shelf.replace::<String>("name", "Kim")?, None);
    /// assert_eq!(shelf.replace::<String>("name", "Lee")?.as_deref(), Some("Kim"));
    /// assert_eq!(shelf.get::<String>("name")?.as_deref(), Some("Lee"));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the previous value does not fit `T` (nothing is written
    /// then); otherwise as for [`Shelf::insert`] and [`Shelf::get`].
    pub fn replace<T>(&self, key: &str, value: &(impl Serialize + ?Sized)) -> Result<Option<T>>
    where
        T: DeserializeOwned,
    {
        let bytes = pickle::to_vec_with_protocol(value, self.store.protocol())?;
        self.store.transact(|tx| {
            let old = tx.get(key)?.map(|b| decode_as::<T>(key, &b)).transpose()?;
            tx.put(key, bytes)?;
            Ok(old)
        })
    }

    /// Sets `key` to `new` (`None` removes it) if it holds `old` (`None`: if it is
    /// absent), in one atomic step. Returns `Ok(Ok(()))` when it swapped, and
    /// `Ok(Err(conflict))` with the key's current value when it did not; the outer `Err`
    /// is a store error.
    ///
    /// Values are compared by address: `old` is pickled with the store's protocol and its
    /// digest (blake3 of the pickle, keyed with an auth key) compared with the stored
    /// value's, without reading it. Equality is therefore byte equality of the pickles:
    /// a value stored with another protocol or by Python (`insert_pickle`) may be equal
    /// as a Python object and still conflict.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// assert_eq!(shelf.compare_and_swap("v", None, Some(&1))?, Ok(())); // create
    /// let conflict = shelf.compare_and_swap("v", Some(&5), Some(&6))?.unwrap_err();
    /// assert_eq!(conflict.current, Some(1));
    /// assert_eq!(shelf.compare_and_swap("v", Some(&1), Some(&2))?, Ok(()));
    /// assert_eq!(shelf.compare_and_swap("v", Some(&2), None)?, Ok(())); // remove
    /// assert!(!shelf.contains_key("v")?);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Pickle`] when `old` or `new` cannot be pickled; [`Error::Mismatch`] when
    /// the current value of a conflict does not fit `T`; otherwise as for
    /// [`Shelf::insert`].
    pub fn compare_and_swap<T>(&self, key: &str, old: Option<&T>, new: Option<&T>) -> Result<Result<(), Conflict<T>>>
    where
        T: Serialize + DeserializeOwned,
    {
        let protocol = self.store.protocol();
        let old = old.map(|v| pickle::to_vec_with_protocol(v, protocol)).transpose()?;
        let new = new.map(|v| pickle::to_vec_with_protocol(v, protocol)).transpose()?;
        self.store.transact(|tx| {
            let expected = old.as_deref().map(|b| tx.digest_of(b));
            if tx.digest(key)? != expected {
                let current = tx.get(key)?.map(|b| decode_as::<T>(key, &b)).transpose()?;
                return Ok(Err(Conflict { current }));
            }
            match new {
                Some(bytes) => tx.put(key, bytes)?,
                None => tx.remove(key),
            }
            Ok(Ok(()))
        })
    }

    /// The value under `key` as a `T`; when the key is absent, stores `f()` under it and
    /// returns that, in one atomic step (`f` runs under the store's write lock, so other
    /// writers wait for it: keep it short).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// let id: u64 = shelf.get_or_insert_with("install-id", || 42)?;
    /// let again: u64 = shelf.get_or_insert_with("install-id", || unreachable!())?;
    /// assert_eq!((id, again), (42, 42));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the stored value does not fit `T`; otherwise as for
    /// [`Shelf::insert`] and [`Shelf::get`].
    pub fn get_or_insert_with<T, F>(&self, key: &str, f: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> T,
    {
        self.store.transact(|tx| {
            if let Some(bytes) = tx.get(key)? {
                return decode_as(key, &bytes);
            }
            let value = f();
            tx.put(key, pickle::to_vec_with_protocol(&value, tx.protocol())?)?;
            Ok(value)
        })
    }

    /// Stores pickle bytes under `key` (checked to decode, as [`Shelf::insert_pickle`])
    /// and returns the pickle bytes they replace, in one atomic step.
    ///
    /// # Errors
    /// As for [`Shelf::insert_pickle`] and [`Shelf::get_pickle`].
    pub fn replace_pickle(&self, key: &str, bytes: &[u8]) -> Result<Option<Vec<u8>>> {
        pickle::check(bytes)?;
        self.store.transact(|tx| {
            let old = tx.get(key)?;
            tx.put(key, bytes.to_vec())?;
            Ok(old)
        })
    }

    /// Removes `key` and returns its value as a `T` (`None` when it was absent), in one
    /// atomic step.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("job:7", &(7, "resize"))?;
    /// let job: Option<(u32, String)> = shelf.take("job:7")?;
    /// assert_eq!(job, Some((7, "resize".to_string())));
    /// assert!(!shelf.contains_key("job:7")?);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the value does not fit `T` (the key is kept then);
    /// [`Error::ReadOnly`]; otherwise as for [`Shelf::get`].
    pub fn take<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.store.transact(|tx| {
            let old = tx.get(key)?.map(|b| decode_as::<T>(key, &b)).transpose()?;
            if old.is_some() {
                tx.remove(key);
            }
            Ok(old)
        })
    }

    /// Removes `key` and returns its pickle bytes, in one atomic step.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; otherwise as for [`Shelf::get_pickle`].
    pub fn take_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.store.transact(|tx| {
            let old = tx.get(key)?;
            if old.is_some() {
                tx.remove(key);
            }
            Ok(old)
        })
    }

    /// Removes every key, in one atomic commit: after a crash either all keys are there
    /// or none. Checkpoints and memo results are not touched (a checkpoint still holds
    /// the values it saved, so `restore` brings the keys back); objects no longer named
    /// by anything are freed. The removals are gathered in memory first (about the size
    /// of the keys).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("a", &1)?;
    /// shelf.insert("b", &2)?;
    /// shelf.checkpoint("before")?;
    /// shelf.clear()?;
    /// assert!(shelf.is_empty()?);
    /// shelf.restore("before")?; // the checkpoint kept its values
    /// assert_eq!(shelf.len()?, 2);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::Corrupted`] or [`Error::Engine`] when a key record
    /// cannot be read (nothing is removed then); [`Error::Io`].
    pub fn clear(&self) -> Result<()> {
        self.store.transact(|tx| tx.remove_all())
    }

    /// Atomically reads, transforms and writes `key`: `f` gets the current value (or
    /// `None`) and returns the new one (`None` removes the key). No other write to the
    /// store can come between the read and the write. Returns the new value.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// for _ in 0..3 {
    ///     shelf.update("hits", |n: Option<u64>| Some(n.unwrap_or(0) + 1))?;
    /// }
    /// assert_eq!(shelf.get::<u64>("hits")?, Some(3));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Shelf::get`] and [`Shelf::insert`].
    pub fn update<T, F>(&self, key: &str, f: F) -> Result<Option<T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Option<T>) -> Option<T>,
    {
        let protocol = self.store.protocol();
        let mut new = None;
        self.store.update(key, |current| {
            let current = current.map(|bytes| decode_as::<T>(key, &bytes)).transpose()?;
            new = f(current);
            Ok(new.as_ref().map(|v| pickle::to_vec_with_protocol(v, protocol)).transpose()?)
        })?;
        Ok(new)
    }

    /// Applies a [`Batch`] atomically: after a crash either all of it is there or none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// let mut batch = pickleshelf::Batch::new();
    /// batch.insert("a", &1)?;
    /// batch.insert("b", &"two")?;
    /// batch.remove("old");
    /// shelf.apply(batch)?;
    /// assert_eq!(shelf.len()?, 2);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::InvalidKey`], [`Error::Engine`], [`Error::Io`];
    /// nothing of the batch is applied then.
    pub fn apply(&self, batch: Batch) -> Result<()> {
        self.store.apply(&batch.ops)
    }

    /// Makes every change acknowledged so far durable, as chosen with
    /// [`ShelfBuilder::durability`]: with the default, it survives power loss (files and
    /// directories are fsynced, which sled's own flush does not do). Costs a few fsyncs
    /// (milliseconds).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Engine`] when the data could not be made durable.
    pub fn sync(&self) -> Result<()> {
        self.store.sync()
    }

    /// Syncs and closes the store, releasing its lock, when this is its last handle. When
    /// other handles of this process hold it (clones, memos), this one is let go and the
    /// store stays open until the last of them is dropped: [`Error::StillOpen`] says how
    /// many there are.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("s");
    /// let shelf = pickleshelf::Shelf::open(&path)?;
    /// let memo = shelf.memo("f")?;
    /// let err = shelf.close().unwrap_err(); // the memo still holds the store
    /// assert!(matches!(err, pickleshelf::Error::StillOpen { shelves: 0, memos: 1, .. }));
    /// drop(memo); // the last handle: the store closes
    /// pickleshelf::Shelf::open(&path)?.close()?;
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Shelf::sync`]; [`Error::StillOpen`] when other handles hold the store.
    pub fn close(self) -> Result<()> {
        Store::close(self.store)
    }

    // ----- reads -----

    /// The pickle bytes stored under `key`, verified against their address.
    ///
    /// # Errors
    /// [`Error::CorruptedObject`] when the stored bytes do not hash to their address;
    /// [`Error::Corrupted`], [`Error::Engine`], [`Error::Io`].
    pub fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.store.get_pickle(key)
    }

    /// The value under `key`, deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::Mismatch`] when the value does not fit `T` (naming the key and the type);
    /// otherwise as for [`Shelf::get_pickle`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        self.store.get_with(key, |bytes| decode_as(key, bytes))
    }

    /// The value under `key` as a decoded pickle graph (objects included).
    ///
    /// # Errors
    /// [`Error::Pickle`] for a pickle the codec rejects; otherwise as for
    /// [`Shelf::get_pickle`].
    pub fn get_value(&self, key: &str) -> Result<Option<Value>> {
        match self.get_pickle(key)? {
            Some(bytes) => Ok(Some(pickle::decode(&bytes)?)),
            None => Ok(None),
        }
    }

    /// The value under `key` deserialized into `T`, shared: served from the decoded-object
    /// cache when it holds this object as a `T` (nothing is read or decoded then), else
    /// read, verified, decoded and cached.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("scores", &vec![1.5, 2.5])?;
    /// let a = shelf.get_arc::<Vec<f64>>("scores")?;
    /// let b = shelf.get_arc::<Vec<f64>>("scores")?; // a cache hit: the same allocation
    /// assert!(std::sync::Arc::ptr_eq(&a.unwrap(), &b.unwrap()));
    /// assert_eq!(shelf.cache_stats().hits, 1);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Shelf::get`].
    pub fn get_arc<T>(&self, key: &str) -> Result<Option<Arc<T>>>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        self.store.get_or_load(key, |bytes| {
            let v: T = decode_as(key, bytes)?;
            Ok((Arc::new(v), crate::cache::typed_bytes::<T>(bytes.len())))
        })
    }

    /// The value under `key` as a shared decoded graph, served from the cache like
    /// [`Shelf::get_arc`].
    ///
    /// # Errors
    /// As for [`Shelf::get_value`].
    pub fn get_value_arc(&self, key: &str) -> Result<Option<Arc<Value>>> {
        self.store.get_or_load(key, |bytes| {
            let v = pickle::decode(bytes)?;
            let size = crate::cache::value_bytes(&v);
            Ok((Arc::new(v), size))
        })
    }

    /// Counters and size of the decoded-object cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.store.cache().stats()
    }

    /// Drops the cached decoded objects of the value under `key` (all types). Returns
    /// whether anything was dropped.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`] when the key's record cannot be read.
    pub fn evict(&self, key: &str) -> Result<bool> {
        self.store.evict(key)
    }

    /// Drops every cached decoded object, pinned ones included (and the decoded bases of
    /// delta chains).
    pub fn clear_cache(&self) {
        self.store.cache().clear();
        self.store.chains().clear();
    }

    /// Changes the cache budget (estimated bytes, entries), evicting at once what no
    /// longer fits; 0 for either disables caching.
    pub fn set_cache_budget(&self, bytes: u64, entries: u64) {
        self.store.cache().set_budget(bytes, entries);
    }

    /// The cache budget: (estimated bytes, entries).
    pub fn cache_budget(&self) -> (u64, u64) {
        self.store.cache().budget()
    }

    /// Loads the value under `key` as a `T` into the cache and pins it there: it is not
    /// evicted (and does not count against the budget) until [`Shelf::unpin`] or
    /// [`Shelf::clear_cache`]. Returns whether the key exists.
    ///
    /// # Errors
    /// As for [`Shelf::get_arc`].
    pub fn pin<T>(&self, key: &str) -> Result<bool>
    where
        T: DeserializeOwned + Send + Sync + 'static,
    {
        if self.get_arc::<T>(key)?.is_none() {
            return Ok(false);
        }
        if let Some(d) = self.digest(key)? {
            self.store.cache().set_pinned(&d, true);
        }
        Ok(true)
    }

    /// Unpins the cached objects of the value under `key`; they become evictable again.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn unpin(&self, key: &str) -> Result<bool> {
        Ok(match self.digest(key)? {
            Some(d) => self.store.cache().set_pinned(&d, false) > 0,
            None => false,
        })
    }

    /// The address of the value under `key`.
    ///
    /// # Errors
    /// [`Error::Corrupted`], [`Error::Engine`].
    pub fn digest(&self, key: &str) -> Result<Option<Digest>> {
        self.store.digest(key)
    }

    /// True when `key` holds a value.
    ///
    /// # Errors
    /// [`Error::Engine`].
    pub fn contains_key(&self, key: &str) -> Result<bool> {
        self.store.contains(key)
    }

    /// The number of keys (counts them: linear in the store's size).
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn len(&self) -> Result<usize> {
        let mut n = 0;
        for item in self.store.keys("") {
            item?;
            n += 1;
        }
        Ok(n)
    }

    /// True when the store holds no key.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn is_empty(&self) -> Result<bool> {
        Ok(self.store.keys("").next().transpose()?.is_none())
    }

    /// All keys in byte order.
    pub fn keys(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.keys_with_prefix("")
    }

    /// The keys that start with `prefix`, in byte order.
    pub fn keys_with_prefix<'a>(&'a self, prefix: &str) -> impl Iterator<Item = Result<String>> + 'a {
        self.store.keys(prefix)
    }

    /// The keys that start with `prefix` and are at least `from`, in byte order: a scan
    /// that resumes where an earlier one stopped (pass the key after the last one seen,
    /// e.g. the last one with a NUL appended) without walking the keys before it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// for k in ["a:1", "a:2", "a:3", "b:1"] {
    ///     shelf.insert(k, &0)?;
    /// }
    /// let rest: Vec<String> = shelf.keys_with_prefix_from("a:", "a:1\0").collect::<Result<_, _>>()?;
    /// assert_eq!(rest, ["a:2", "a:3"]);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn keys_with_prefix_from<'a>(&'a self, prefix: &str, from: &str) -> impl Iterator<Item = Result<String>> + 'a {
        self.store.keys_from(prefix, from)
    }

    /// All keys with their values as `T`, in key order. A value that does not fit `T` is
    /// an [`Error::Mismatch`] item naming its key, and the iteration goes on after it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("b", &2)?;
    /// shelf.insert("a", &1)?;
    /// let all: Vec<(String, i64)> = shelf.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(all, [("a".to_string(), 1), ("b".to_string(), 2)]);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn iter<T: DeserializeOwned>(&self) -> impl Iterator<Item = Result<(String, T)>> + use<'_, T> {
        typed(self.store.range_pickles(Bound::Unbounded, Bound::Unbounded, false))
    }

    /// All keys with their values as `T`, in descending key order.
    pub fn iter_rev<T: DeserializeOwned>(&self) -> impl Iterator<Item = Result<(String, T)>> + use<'_, T> {
        typed(self.store.range_pickles(Bound::Unbounded, Bound::Unbounded, true))
    }

    /// All values as `T`, in key order.
    pub fn values<T: DeserializeOwned>(&self) -> impl Iterator<Item = Result<T>> + use<'_, T> {
        self.iter::<T>().map(|item| item.map(|(_, v)| v))
    }

    /// The keys within `range` (any range of `&str`: `"a".."c"`, `"k:"..`, `..="z"`) with
    /// their values as `T`, in key order. Keys compare as bytes (UTF-8).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// for (i, k) in ["2024-01", "2024-02", "2024-03", "2025-01"].iter().enumerate() {
    ///     shelf.insert(k, &i)?;
    /// }
    /// let q1: Vec<String> = shelf.range::<u32>("2024-01"..="2024-02").map(|r| r.map(|(k, _)| k)).collect::<Result<_, _>>()?;
    /// assert_eq!(q1, ["2024-01", "2024-02"]);
    /// let newest = shelf.range_rev::<u32>(.."2025").next().transpose()?;
    /// assert_eq!(newest, Some(("2024-03".to_string(), 2)));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn range<'r, T: DeserializeOwned + 'static>(
        &self,
        range: impl RangeBounds<&'r str>,
    ) -> Box<dyn Iterator<Item = Result<(String, T)>> + '_> {
        Box::new(typed(self.store.range_pickles(bound(range.start_bound()), bound(range.end_bound()), false)))
    }

    /// The keys within `range` with their values as `T`, in descending key order.
    pub fn range_rev<'r, T: DeserializeOwned + 'static>(
        &self,
        range: impl RangeBounds<&'r str>,
    ) -> Box<dyn Iterator<Item = Result<(String, T)>> + '_> {
        Box::new(typed(self.store.range_pickles(bound(range.start_bound()), bound(range.end_bound()), true)))
    }

    /// The keys that start with `prefix` with their values as `T`, in key order.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("user:1", "Kim")?;
    /// shelf.insert("user:2", "Lee")?;
    /// shelf.insert("visits", &10)?;
    /// let names: Vec<String> = shelf.scan_prefix("user:").map(|r| r.map(|(_, v)| v)).collect::<Result<_, _>>()?;
    /// assert_eq!(names, ["Kim", "Lee"]);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn scan_prefix<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> impl Iterator<Item = Result<(String, T)>> + use<'_, T> {
        typed(self.store.scan_pickles(prefix))
    }

    /// The first key (in byte order) with its value as `T`; `None` for an empty store.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("job:2", &"b")?;
    /// shelf.insert("job:1", &"a")?;
    /// assert_eq!(shelf.first::<String>()?, Some(("job:1".into(), "a".into())));
    /// assert_eq!(shelf.last::<String>()?, Some(("job:2".into(), "b".into())));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Mismatch`] when its value does not fit `T`; as for [`Shelf::get`].
    pub fn first<T: DeserializeOwned>(&self) -> Result<Option<(String, T)>> {
        self.iter::<T>().next().transpose()
    }

    /// The last key (in byte order) with its value as `T`; `None` for an empty store.
    ///
    /// # Errors
    /// As for [`Shelf::first`].
    pub fn last<T: DeserializeOwned>(&self) -> Result<Option<(String, T)>> {
        self.iter_rev::<T>().next().transpose()
    }

    /// All keys with their pickle bytes (verified), in key order.
    pub fn iter_pickle(&self) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + '_ {
        self.scan_prefix_pickle("")
    }

    /// Keys starting with `prefix` with their pickle bytes (verified), in key order.
    pub fn scan_prefix_pickle<'a>(&'a self, prefix: &str) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + 'a {
        self.store.scan_pickles(prefix)
    }

    // ----- transactions -----

    /// Runs `f` as one read-write transaction over any number of keys: all of its writes
    /// commit together in one atomic commit (after a crash all of them are there or none),
    /// and when `f` returns an error — or panics — nothing is written. Inside, reads see
    /// the transaction's own writes.
    ///
    /// Isolation: the transaction holds the store's write lock from start to commit, so
    /// transactions and all other writes are serialized (other writers wait; keep `f`
    /// short). Reads through other handles do not wait and see the store as it was until
    /// the commit. Inside `f`, write only through the [`Transaction`]: a write through a
    /// `Shelf` (or memo) of the same store would wait for the lock `f` holds, forever.
    ///
    /// `f`'s error type is yours, as long as a store error converts into it
    /// (`pickleshelf::Error` itself, `anyhow::Error`, ...).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("alice", &100)?;
    /// shelf.insert("bob", &0)?;
    /// shelf.transaction(|tx| {
    ///     let a: i64 = tx.get("alice")?.unwrap_or(0);
    ///     let b: i64 = tx.get("bob")?.unwrap_or(0);
    ///     tx.insert("alice", &(a - 30))?;
    ///     tx.insert("bob", &(b + 30))?;
    ///     Ok::<_, pickleshelf::Error>(())
    /// })?;
    /// assert_eq!((shelf.get::<i64>("alice")?, shelf.get::<i64>("bob")?), (Some(70), Some(30)));
    ///
    /// // An error aborts: nothing is written.
    /// let r: Result<(), pickleshelf::Error> = shelf.transaction(|tx| {
    ///     tx.insert("alice", &0)?;
    ///     Err(pickleshelf::Error::Config("changed my mind".into()))
    /// });
    /// assert!(r.is_err());
    /// assert_eq!(shelf.get::<i64>("alice")?, Some(70));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// `f`'s error (nothing written); [`Error::ReadOnly`]; when the commit fails, the
    /// store errors of [`Shelf::apply`] (nothing written).
    pub fn transaction<R, E, F>(&self, f: F) -> Result<R, E>
    where
        E: From<Error>,
        F: FnOnce(&mut Transaction<'_, '_>) -> Result<R, E>,
    {
        crate::transaction::run(&self.store, f)
    }

    // ----- checkpoints (see [`crate::checkpoint`]) -----

    /// Records the store's keys and values as checkpoint `name` (see the [module
    /// docs](crate::checkpoint)): one atomic write, costing an entry per key and a
    /// reference per value, not copies. Returns what was recorded.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("a", &1)?;
    /// let info = shelf.checkpoint("v1")?;
    /// assert_eq!((info.name.as_str(), info.keys), ("v1", 1));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when the name is invalid (1 to 255 bytes of UTF-8, no NUL) or
    /// taken; [`Error::ReadOnly`], [`Error::Engine`], [`Error::Io`], [`Error::Corrupted`].
    pub fn checkpoint(&self, name: &str) -> Result<CheckpointInfo> {
        crate::checkpoint::take(&self.store, name)
    }

    /// Every checkpoint, in name order.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn checkpoints(&self) -> Result<Vec<CheckpointInfo>> {
        crate::checkpoint::list(&self.store)
    }

    /// The keys of checkpoint `name`, in key order, with the digests of their values.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when there is no such checkpoint; [`Error::Engine`],
    /// [`Error::Corrupted`].
    pub fn checkpoint_keys(&self, name: &str) -> Result<Vec<(String, Digest)>> {
        crate::checkpoint::keys(&self.store, name)
    }

    /// The pickle bytes `key` held when checkpoint `name` was taken (verified), without
    /// restoring anything.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("a", &1)?;
    /// shelf.checkpoint("v1")?;
    /// shelf.insert("a", &2)?;
    /// let then = shelf.get_pickle_at("v1", "a")?.expect("a was there");
    /// assert_eq!(pickleshelf::pickle::from_slice::<i64>(&then)?, 1);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when there is no such checkpoint; otherwise as for
    /// [`Shelf::get_pickle`].
    pub fn get_pickle_at(&self, name: &str, key: &str) -> Result<Option<Vec<u8>>> {
        crate::checkpoint::get_pickle_at(&self.store, name, key)
    }

    /// Makes the store's keys exactly those of checkpoint `name`, with their values then:
    /// keys added since are removed, removed ones come back, changed ones get their old
    /// value — all in one atomic write. Memoized results are not touched; the checkpoint
    /// stays. Returns what changed, in key order (`before`: the value replaced, `after`: the
    /// checkpoint's).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("a", &1)?;
    /// shelf.checkpoint("v1")?;
    /// shelf.insert("b", &2)?;
    /// let changes = shelf.restore("v1")?;
    /// assert_eq!(changes.len(), 1); // "b" removed
    /// assert!(!shelf.contains_key("b")?);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when there is no such checkpoint; [`Error::ReadOnly`],
    /// [`Error::Engine`], [`Error::Io`], [`Error::Corrupted`]. Nothing changes then.
    pub fn restore(&self, name: &str) -> Result<Vec<Change>> {
        crate::checkpoint::restore(&self.store, name)
    }

    /// The keys whose values differ between checkpoints `from` and `to`, in key order:
    /// added (only in `to`), removed (only in `from`), changed (different values).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// use pickleshelf::ChangeKind;
    /// shelf.insert("a", &1)?;
    /// shelf.checkpoint("v1")?;
    /// shelf.insert("a", &2)?;
    /// shelf.insert("b", &3)?;
    /// shelf.checkpoint("v2")?;
    /// let kinds: Vec<_> = shelf.diff("v1", "v2")?.into_iter().map(|c| (c.key, c.kind)).collect();
    /// assert_eq!(kinds, [("a".to_string(), ChangeKind::Changed), ("b".to_string(), ChangeKind::Added)]);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Checkpoint`] when either does not exist; [`Error::Engine`],
    /// [`Error::Corrupted`].
    pub fn diff(&self, from: &str, to: &str) -> Result<Vec<Change>> {
        crate::checkpoint::diff(&self.store, from, to)
    }

    /// The keys whose values differ between checkpoint `from` and the store now, as
    /// [`Shelf::diff`] reports them.
    ///
    /// # Errors
    /// As for [`Shelf::diff`].
    pub fn changes_since(&self, from: &str) -> Result<Vec<Change>> {
        crate::checkpoint::changes_since(&self.store, from)
    }

    /// Deletes checkpoint `name`, releasing its references (values nothing else refers to
    /// are removed; their space is reclaimed at the next sync). Returns whether it existed.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Engine`], [`Error::Io`], [`Error::Corrupted`].
    pub fn delete_checkpoint(&self, name: &str) -> Result<bool> {
        Ok(crate::checkpoint::delete(&self.store, &[name])?.first().copied().unwrap_or(false))
    }

    /// Deletes the checkpoints `names` in one atomic write, releasing their references (as
    /// [`Shelf::delete_checkpoint`] does for one); returns, per name, whether it existed. A
    /// name given twice is deleted once (`false` the second time). A failure deletes none.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("a", &1)?;
    /// shelf.checkpoint("v1")?;
    /// shelf.checkpoint("v2")?;
    /// assert_eq!(shelf.delete_checkpoints(&["v1", "nope", "v2"])?, [true, false, true]);
    /// assert!(shelf.checkpoints()?.is_empty());
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Engine`], [`Error::Io`], [`Error::Corrupted`].
    pub fn delete_checkpoints(&self, names: &[&str]) -> Result<Vec<bool>> {
        crate::checkpoint::delete(&self.store, names)
    }

    // ----- statistics -----

    /// What the file system allocates to the store's directory, in bytes: what `du -s`
    /// reports (`st_blocks × 512` for each file and directory on Unix; the files' lengths
    /// elsewhere), as [`Stats::allocated_bytes`] — without counting anything else. Writes
    /// still in the in-memory buffer are not on disk yet: [`Shelf::sync`] first for a
    /// settled figure.
    ///
    /// ```
    /// let shelf = pickleshelf::Shelf::temporary()?;
    /// let empty = shelf.size_on_disk();
    /// let big: Vec<u64> = (0..100_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    /// shelf.insert("big", &big)?;
    /// shelf.sync()?;
    /// assert!(shelf.size_on_disk() > empty);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn size_on_disk(&self) -> u64 {
        crate::stats::size_on_disk(self.path())
    }

    /// Counts keys, memo results, objects and bytes (see [`Stats`]). Reads every record
    /// and the header of every object file; decompresses nothing.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// let big: Vec<u64> = (0..10_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    /// shelf.insert("a", &big)?; // large: one object file...
    /// shelf.insert("b", &big)?; // ...shared by both keys
    /// shelf.insert("c", &1)?; // small: inline
    /// let stats = shelf.stats()?;
    /// assert_eq!((stats.keys, stats.objects, stats.inline_values), (3, 1, 1));
    /// assert!(stats.dedup_ratio() > 1.9);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Engine`] when the store cannot be read; [`Error::Corrupted`] for a record
    /// that cannot be parsed.
    pub fn stats(&self) -> Result<Stats> {
        crate::stats::stats(&self.store)
    }

    /// The storage of each key starting with `prefix`, in key order (see [`KeyInfo`]).
    /// Reads records and frame headers; decompresses and verifies nothing (use
    /// [`Shelf::get_pickle`] or [`Shelf::verify`] for that).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// shelf.insert("user:1", &"Ada")?;
    /// let info = shelf.key_info("user:").next().transpose()?.unwrap();
    /// assert_eq!(info.key, "user:1");
    /// assert_eq!(info.size, Some(shelf.get_pickle("user:1")?.unwrap().len() as u64));
    /// assert_eq!(info.shared_by, None); // small values are inline
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// Each item: [`Error::Engine`] when the store cannot be read, [`Error::Corrupted`]
    /// for a record that cannot be parsed.
    pub fn key_info<'a>(&'a self, prefix: &str) -> impl Iterator<Item = Result<KeyInfo>> + 'a {
        crate::stats::key_info(&self.store, prefix)
    }

    // ----- memos (see [`crate::memo`]) -----

    /// Every memo namespace the store holds, in name order, with its version and the
    /// count and size of its results. Reads the memo records; changes nothing (works
    /// on a read-only store).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// let square = shelf.memo_builder("square").version("2").open()?;
    /// let _: u64 = square.get_or_compute(&(7u32,), || 49)?;
    /// let spaces = shelf.memo_namespaces()?;
    /// assert_eq!((spaces[0].name.as_str(), spaces[0].version.as_str(), spaces[0].entries), ("square", "2", 1));
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Engine`] when the store cannot be read; [`Error::Corrupted`] for a record
    /// that cannot be parsed.
    pub fn memo_namespaces(&self) -> Result<Vec<MemoNamespace>> {
        crate::memo::namespaces(&self.store)
    }

    /// The memo of namespace `namespace` with default options (no version, no expiry, no
    /// limits). See [`crate::memo`].
    ///
    /// # Errors
    /// As for [`MemoBuilder::open`].
    pub fn memo(&self, namespace: &str) -> Result<Memo> {
        self.memo_builder(namespace).open()
    }

    /// A builder for a memo with options (version, TTL, limits).
    pub fn memo_builder(&self, namespace: &str) -> MemoBuilder {
        MemoBuilder::new(Arc::clone(&self.store), namespace)
    }

    // ----- checks -----

    /// Checks everything: every page of records can be read, each key's object exists and
    /// hashes to its address, each object record's refcount equals the keys pointing at it,
    /// each object file has a record and the right length. Returns what it found; nothing
    /// is changed. Files that a write cut short by a crash left behind are listed as
    /// [`VerifyReport::leftovers`], not as problems. Writes wait while it runs.
    ///
    /// # Errors
    /// [`Error::Engine`] or [`Error::Io`] when the store cannot be read at all.
    pub fn verify(&self) -> Result<VerifyReport> {
        crate::repair::verify::run(&self.store, false, &mut ())
    }

    /// [`Shelf::verify`], reporting one step per record checked (key or memo result) to
    /// `progress`, in one phase, `"verifying"`.
    ///
    /// # Errors
    /// As for [`Shelf::verify`].
    pub fn verify_with_progress(&self, progress: &mut dyn Progress) -> Result<VerifyReport> {
        progress.start("verifying", Some(self.store.record_count()));
        let report = crate::repair::verify::run(&self.store, false, progress);
        progress.finish();
        report
    }

    /// Repairs what is repairable — refcounts, missing or stray object records, files
    /// no record names, temporary files — frees what nothing refers to, and reports what
    /// it found and did. Keys whose data is damaged are reported, not removed.
    ///
    /// While any page or record of the store cannot be read ([`VerifyReport::is_complete`]
    /// is false), gc changes nothing at all: a record it cannot read may name any object,
    /// so every object record, object file and pack is kept, and the report names what
    /// cannot be read. [`ShelfBuilder::salvage`] copies out what can.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::Engine`] or [`Error::Io`].
    pub fn gc(&self) -> Result<VerifyReport> {
        self.store.writable()?;
        let report = crate::repair::verify::run(&self.store, true, &mut ())?;
        self.after_gc(report)
    }

    /// Syncs after a gc that repaired (a gc that could not read everything changed nothing).
    fn after_gc(&self, report: VerifyReport) -> Result<VerifyReport> {
        if report.is_complete() {
            self.store.mark_dirty();
            self.sync()?;
        }
        Ok(report)
    }

    /// [`Shelf::gc`], reporting one step per record checked (key or memo result) to
    /// `progress`, in one phase, `"collecting"`.
    ///
    /// # Errors
    /// As for [`Shelf::gc`].
    pub fn gc_with_progress(&self, progress: &mut dyn Progress) -> Result<VerifyReport> {
        self.store.writable()?;
        progress.start("collecting", Some(self.store.record_count()));
        let report = crate::repair::verify::run(&self.store, true, progress);
        progress.finish();
        self.after_gc(report?)
    }
}

/// What [`Shelf::compare_and_swap`] found instead of the value it expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict<T> {
    /// The key's current value (`None`: the key is absent).
    pub current: Option<T>,
}

impl<T> std::fmt::Display for Conflict<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.current {
            Some(_) => f.write_str("compare and swap conflict: the key holds another value"),
            None => f.write_str("compare and swap conflict: the key is absent"),
        }
    }
}

impl<T: std::fmt::Debug> std::error::Error for Conflict<T> {}

/// The keys and pickle bytes of `loaded` with their values as `T`.
fn typed<'a, T: DeserializeOwned>(
    loaded: impl Iterator<Item = Result<(String, Vec<u8>)>> + 'a,
) -> impl Iterator<Item = Result<(String, T)>> + 'a {
    loaded.map(|item| {
        let (k, bytes) = item?;
        let v = decode_as(&k, &bytes)?;
        Ok((k, v))
    })
}

/// A bound of a range of keys, borrowed.
fn bound<'a>(b: Bound<&&'a str>) -> Bound<&'a str> {
    match b {
        Bound::Included(k) => Bound::Included(k),
        Bound::Excluded(k) => Bound::Excluded(k),
        Bound::Unbounded => Bound::Unbounded,
    }
}

/// Changes applied together by [`Shelf::apply`].
#[derive(Default, Clone, Debug)]
pub struct Batch {
    ops: Vec<(String, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds an insert of a typed value (pickled with protocol 4).
    ///
    /// # Errors
    /// [`Error::Pickle`] when `value` cannot be pickled.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = pickle::to_vec(value)?;
        self.ops.push((key.to_owned(), Some(bytes)));
        Ok(())
    }

    /// Adds an insert of pickle bytes (checked to decode).
    ///
    /// # Errors
    /// [`Error::Pickle`] when `bytes` is not a valid pickle.
    pub fn insert_pickle(&mut self, key: &str, bytes: &[u8]) -> Result<()> {
        pickle::check(bytes)?;
        self.ops.push((key.to_owned(), Some(bytes.to_vec())));
        Ok(())
    }

    /// Adds a removal.
    pub fn remove(&mut self, key: &str) {
        self.ops.push((key.to_owned(), None));
    }

    /// Number of changes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The changes in the order they were added: `(key, Some(pickle bytes))` for an
    /// insert, `(key, None)` for a removal (e.g. to send them to a served store).
    ///
    /// ```
    /// let mut batch = pickleshelf::Batch::new();
    /// batch.insert("a", &1)?;
    /// batch.remove("b");
    /// let keys: Vec<(&str, bool)> = batch.iter().map(|(k, v)| (k, v.is_some())).collect();
    /// assert_eq!(keys, [("a", true), ("b", false)]);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    pub fn iter(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> + '_ {
        self.ops.iter().map(|(k, v)| (k.as_str(), v.as_deref()))
    }

    /// True when there are no changes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}
