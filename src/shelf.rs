//! [`Shelf`]: the public handle of a store.
//!
//! Invariant: every value a `Shelf` returns was re-hashed and found equal to its
//! address; every change is all-or-nothing (one sled write or one sled batch, see
//! [`crate::index`]); a store whose sled state is older than its witness file's
//! generation is refused at open.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blob::{Codec, Digest, Hasher, TRAIN_SAMPLES};
use crate::error::{Error, Result};
use crate::index::{INLINE_MAX, Index, MAX_KEY_LEN, Op, Stored};
use crate::pickle::{self, Value};
use crate::progress::Progress;

/// The on-disk format version this build reads and writes (see `docs/FORMAT.md`).
pub const FORMAT_VERSION: u32 = 1;

/// What [`Shelf::sync`] guarantees.
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
    path: PathBuf,
    zstd_level: i32,
    protocol: u8,
    read_only: bool,
    create: bool,
    auth_key: Option<Vec<u8>>,
    durability: Durability,
    allow_rollback: bool,
}

impl ShelfBuilder {
    /// zstd compression level for stored values (1–19, default 3).
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Pickle protocol used to write typed values (2–5, default 4, as Python's default).
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    /// Opens without allowing writes (the store must exist).
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether a missing store is created (default true).
    pub fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Authenticates every object: addresses become keyed blake3 (a MAC) under a key
    /// derived from `key` (any length, at least 16 bytes), so a tampered or swapped
    /// object is rejected before anything is decoded. A store created with a key can only
    /// be opened with the same key.
    pub fn auth_key(mut self, key: impl Into<Vec<u8>>) -> Self {
        self.auth_key = Some(key.into());
        self
    }

    /// What [`Shelf::sync`] guarantees (default [`Durability::PowerLoss`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Opens a store that came back older than its last sync instead of failing with
    /// [`Error::RolledBack`]; the witness is then reset to the store's generation.
    pub fn allow_rollback(mut self, allow: bool) -> Self {
        self.allow_rollback = allow;
        self
    }

    /// Validates the options and opens (or creates) the store.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid options; [`Error::Locked`] when another handle holds
    /// the store; [`Error::UnsupportedFormat`], [`Error::AuthKey`], [`Error::RolledBack`],
    /// [`Error::Engine`] or [`Error::Io`] when it cannot be opened as asked.
    pub fn open(self) -> Result<Shelf> {
        if !(1..=19).contains(&self.zstd_level) {
            return Err(Error::Config(format!("zstd level {} is outside 1..=19", self.zstd_level)));
        }
        if !(2..=5).contains(&self.protocol) {
            return Err(Error::Config(format!("pickle protocol {} is outside 2..=5", self.protocol)));
        }
        if let Some(k) = &self.auth_key
            && k.len() < 16
        {
            return Err(Error::Config(format!("auth key has {} bytes; at least 16 are needed", k.len())));
        }
        Shelf::open_with(self)
    }
}

struct Inner {
    path: PathBuf,
    index: Index,
    codec: Codec,
    protocol: u8,
    read_only: bool,
    durability: Durability,
    /// Small values kept to train the dictionary; `None` once there is one.
    samples: Mutex<Option<Vec<Vec<u8>>>>,
    /// Held for the handle's lifetime: the exclusive lock on `LOCK`.
    _lock: fs::File,
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
    inner: Arc<Inner>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

impl Shelf {
    /// Opens (or creates) the store in directory `path` with default options.
    ///
    /// # Errors
    /// See [`ShelfBuilder::open`].
    pub fn open(path: impl AsRef<Path>) -> Result<Shelf> {
        Shelf::builder(path).open()
    }

    /// A builder for opening with options.
    pub fn builder(path: impl AsRef<Path>) -> ShelfBuilder {
        ShelfBuilder {
            path: path.as_ref().to_path_buf(),
            zstd_level: 3,
            protocol: pickle::DEFAULT_PROTOCOL,
            read_only: false,
            create: true,
            auth_key: None,
            durability: Durability::PowerLoss,
            allow_rollback: false,
        }
    }

    fn open_with(b: ShelfBuilder) -> Result<Shelf> {
        let path = b.path.clone();
        if !path.exists() {
            if b.read_only || !b.create {
                return Err(Error::Io {
                    path,
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no store at this path"),
                });
            }
            fs::create_dir_all(&path).map_err(io(&path))?;
        }
        let lock_path = path.join("LOCK");
        let lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(!b.read_only)
            .truncate(false)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Err(Error::Locked { path: lock_path }),
            Err(fs::TryLockError::Error(e)) => return Err(Error::Io { path: lock_path, source: e }),
        }
        let index = Index::open(&path, !b.read_only, b.read_only)?;
        let hasher = match &b.auth_key {
            Some(k) => Hasher::Keyed(blake3::derive_key("pickleshelf 2026 object auth key", k)),
            None => Hasher::Plain,
        };
        let auth_check = |h: &Hasher| h.digest(b"pickleshelf auth check").0;
        if index.is_empty()? {
            if b.read_only {
                return Err(Error::Corrupted {
                    what: format!("store {}", path.display()),
                    reason: "it is empty".into(),
                });
            }
            index.set_meta("format", &FORMAT_VERSION.to_le_bytes())?;
            index.set_meta("generation", &0u64.to_le_bytes())?;
            if hasher.is_keyed() {
                index.set_meta("auth", &auth_check(&hasher))?;
            }
            index.flush()?;
        }
        let format = index
            .meta("format")?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| Error::Corrupted {
            what: format!("store {}", path.display()),
            reason: "no format record".into(),
        })?;
        if format != FORMAT_VERSION {
            return Err(Error::UnsupportedFormat { path, found: format, supported: FORMAT_VERSION });
        }
        match (index.meta("auth")?, hasher.is_keyed()) {
            (Some(stored), true) if stored.as_ref() != auth_check(&hasher) => {
                return Err(Error::AuthKey { path, reason: "the key given is not the store's key" });
            }
            (Some(_), false) => return Err(Error::AuthKey { path, reason: "the store requires an auth key" }),
            (None, true) => return Err(Error::AuthKey { path, reason: "the store was created without an auth key" }),
            _ => {}
        }
        let generation = index
            .meta("generation")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        index.set_generation(generation);
        if let Some(witness) = read_witness(&path)?
            && generation < witness
        {
            if !b.allow_rollback {
                return Err(Error::RolledBack { path, store_generation: generation, witness_generation: witness });
            }
            if !b.read_only {
                write_witness(&path, generation, b.durability)?;
            }
        }
        let codec = Codec::new(b.zstd_level, hasher);
        let mut current = 0;
        for (name, bytes) in index.meta_scan("dict")? {
            if let Some(id) = name.strip_prefix("dict/").and_then(|s| s.parse::<u32>().ok()) {
                codec
                    .add_dict(id, bytes.to_vec())
                    .map_err(|reason| Error::Corrupted { what: format!("dictionary {id}"), reason: reason.into() })?;
            } else if name == "dict.current" {
                current = <[u8; 4]>::try_from(bytes.as_ref()).map(u32::from_le_bytes).unwrap_or(0);
            }
        }
        codec.set_current_dict(current);
        if !b.read_only {
            index.objects().clean_tmp()?;
            // Files without a record are leftovers of writes a crash cut short.
            for (d, p, _) in index.objects().list()? {
                let orphan = match d {
                    Some(d) => index.object(&d)?.is_none(),
                    None => true,
                };
                if orphan {
                    fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        }
        let samples = if current == 0 && !b.read_only { Some(Vec::new()) } else { None };
        Ok(Shelf {
            inner: Arc::new(Inner {
                path,
                index,
                codec,
                protocol: b.protocol,
                read_only: b.read_only,
                durability: b.durability,
                samples: Mutex::new(samples),
                _lock: lock,
            }),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// The store's index and object files (for `stats.rs`).
    pub(crate) fn index(&self) -> &Index {
        &self.inner.index
    }

    fn writable(&self) -> Result<()> {
        if self.inner.read_only {
            return Err(Error::ReadOnly { path: self.inner.path.clone() });
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

    // ----- writes -----

    /// Stores `value` under `key`, pickled with the store's protocol (default 4).
    ///
    /// # Errors
    /// [`Error::Serde`] when `value` cannot be pickled; store errors as for
    /// [`Shelf::insert_pickle`].
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = pickle::to_vec_with_protocol(value, self.inner.protocol)?;
        self.put_trusted(key, &bytes)
    }

    /// Stores a decoded pickle value under `key`.
    ///
    /// # Errors
    /// [`Error::Encode`] for a value that cannot be pickled; store errors as for
    /// [`Shelf::insert_pickle`].
    pub fn insert_value(&self, key: &str, value: &Value) -> Result<()> {
        let bytes = pickle::encode(value, self.inner.protocol)?;
        self.put_trusted(key, &bytes)
    }

    /// Stores pickle bytes under `key` byte-exact (e.g. bytes written by Python's
    /// `pickle.dumps`), after checking that they decode.
    ///
    /// # Errors
    /// [`Error::Decode`] when `bytes` is not a valid pickle (nothing is stored);
    /// [`Error::ReadOnly`], [`Error::InvalidKey`], [`Error::Engine`], [`Error::Io`].
    pub fn insert_pickle(&self, key: &str, bytes: &[u8]) -> Result<()> {
        pickle::decode(bytes)?;
        self.put_trusted(key, bytes)
    }

    fn prepare(&self, key: &str, bytes: &[u8]) -> Result<Op> {
        Self::check_key(key)?;
        let digest = self.inner.codec.digest(bytes);
        let frame = self.inner.codec.encode(bytes);
        self.sample(bytes)?;
        Ok(Op::Put { key: key.to_owned(), digest, frame })
    }

    fn put_trusted(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.writable()?;
        let op = self.prepare(key, bytes)?;
        self.inner.index.writer().apply(vec![op]).map(drop)
    }

    /// Collects small values until a compression dictionary can be trained, then trains
    /// and stores it.
    fn sample(&self, bytes: &[u8]) -> Result<()> {
        if bytes.len() > INLINE_MAX {
            return Ok(());
        }
        let ready = {
            let mut guard = self.inner.samples.lock().unwrap_or_else(PoisonError::into_inner);
            let Some(samples) = guard.as_mut() else {
                return Ok(());
            };
            samples.push(bytes.to_vec());
            if samples.len() < TRAIN_SAMPLES {
                return Ok(());
            }
            guard.take()
        };
        let Some(samples) = ready else {
            return Ok(());
        };
        if let Some(dict) = Codec::train(&samples) {
            let id: u32 = 1;
            // The dictionary is recorded before any frame that names it.
            self.inner.index.set_meta(&format!("dict/{id}"), &dict)?;
            self.inner.index.set_meta("dict.current", &id.to_le_bytes())?;
            self.inner
                .codec
                .add_dict(id, dict)
                .map_err(|reason| Error::Corrupted { what: "new dictionary".into(), reason: reason.into() })?;
            self.inner.codec.set_current_dict(id);
        }
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Engine`], [`Error::Io`].
    pub fn remove(&self, key: &str) -> Result<bool> {
        self.writable()?;
        let existed = self.inner.index.writer().apply(vec![Op::Remove { key: key.to_owned() }])?;
        Ok(existed.first().copied().unwrap_or(false))
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
        self.writable()?;
        let writer = self.inner.index.writer();
        let current = match writer.get(key)? {
            Some(stored) => Some(pickle::from_slice::<T>(&self.load(key, stored)?)?),
            None => None,
        };
        let new = f(current);
        let op = match &new {
            Some(v) => {
                let bytes = pickle::to_vec_with_protocol(v, self.inner.protocol)?;
                self.prepare(key, &bytes)?
            }
            None => Op::Remove { key: key.to_owned() },
        };
        writer.apply(vec![op])?;
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
        self.writable()?;
        let mut ops = Vec::with_capacity(batch.ops.len());
        for (key, bytes) in batch.ops {
            ops.push(match bytes {
                Some(b) => self.prepare(&key, &b)?,
                None => Op::Remove { key },
            });
        }
        self.inner.index.writer().apply(ops).map(drop)
    }

    /// Makes every change acknowledged so far durable, as chosen with
    /// [`ShelfBuilder::durability`]: with the default, it survives power loss (files and
    /// directories are fsynced, which sled's own flush does not do). Costs a few fsyncs
    /// (milliseconds).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Engine`] when the data could not be made durable.
    pub fn sync(&self) -> Result<()> {
        if self.inner.read_only {
            return Ok(());
        }
        sync_inner(&self.inner)
    }

    /// Syncs and lets go of this handle. The store closes when its last clone goes.
    ///
    /// # Errors
    /// As for [`Shelf::sync`].
    pub fn close(self) -> Result<()> {
        self.sync()
    }

    // ----- reads -----

    /// The pickle bytes stored under `key`, verified against their address.
    ///
    /// # Errors
    /// [`Error::CorruptedObject`] when the stored bytes do not hash to their address;
    /// [`Error::Corrupted`], [`Error::Engine`], [`Error::Io`].
    pub fn get_pickle(&self, key: &str) -> Result<Option<Vec<u8>>> {
        match self.inner.index.get(key)? {
            Some(stored) => self.load(key, stored).map(Some),
            None => Ok(None),
        }
    }

    fn load(&self, key: &str, stored: Stored) -> Result<Vec<u8>> {
        let digest = stored.digest();
        let bad = |reason| Error::CorruptedObject { key: key.to_owned(), digest, reason };
        match stored {
            Stored::Inline { frame, .. } => self.inner.codec.decode(&frame, &digest).map_err(bad),
            Stored::Object { .. } => {
                let frame = self.inner.index.objects().read(&digest)?;
                self.inner.codec.decode(&frame, &digest).map_err(bad)
            }
        }
    }

    /// The value under `key`, deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::Serde`] when the value does not fit `T`; otherwise as for
    /// [`Shelf::get_pickle`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        match self.get_pickle(key)? {
            Some(bytes) => pickle::from_slice(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The value under `key` as a decoded pickle graph (objects included).
    ///
    /// # Errors
    /// [`Error::Decode`] for a pickle the codec rejects; otherwise as for
    /// [`Shelf::get_pickle`].
    pub fn get_value(&self, key: &str) -> Result<Option<Value>> {
        match self.get_pickle(key)? {
            Some(bytes) => pickle::decode(&bytes).map(Some),
            None => Ok(None),
        }
    }

    /// The address of the value under `key`.
    ///
    /// # Errors
    /// [`Error::Corrupted`], [`Error::Engine`].
    pub fn digest(&self, key: &str) -> Result<Option<Digest>> {
        Ok(self.inner.index.get(key)?.map(|s| s.digest()))
    }

    /// True when `key` holds a value.
    ///
    /// # Errors
    /// [`Error::Engine`].
    pub fn contains_key(&self, key: &str) -> Result<bool> {
        self.inner.index.contains(key)
    }

    /// The number of keys (counts them: linear in the store's size).
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn len(&self) -> Result<usize> {
        let mut n = 0;
        for item in self.inner.index.scan("") {
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
        Ok(self.inner.index.scan("").next().transpose()?.is_none())
    }

    /// All keys in byte order.
    pub fn keys(&self) -> impl Iterator<Item = Result<String>> + '_ {
        self.keys_with_prefix("")
    }

    /// The keys that start with `prefix`, in byte order.
    pub fn keys_with_prefix<'a>(&'a self, prefix: &str) -> impl Iterator<Item = Result<String>> + 'a {
        self.inner.index.scan(prefix).map(|r| r.map(|(k, _)| k))
    }

    /// All keys with their pickle bytes (verified), in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + '_ {
        self.scan_prefix("")
    }

    /// Keys starting with `prefix` with their pickle bytes (verified), in key order.
    pub fn scan_prefix<'a>(&'a self, prefix: &str) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + 'a {
        self.inner.index.scan(prefix).map(move |r| {
            let (k, stored) = r?;
            let bytes = self.load(&k, stored)?;
            Ok((k, bytes))
        })
    }

    // ----- checks -----

    /// Checks everything: each key's object exists and hashes to its address, each
    /// object record's refcount equals the keys pointing at it, each object file has a
    /// record and the right length. Returns what it found; nothing is changed.
    ///
    /// # Errors
    /// [`Error::Engine`] or [`Error::Io`] when the store cannot be read at all.
    pub fn verify(&self) -> Result<VerifyReport> {
        verify(self, false)
    }

    /// [`Shelf::verify`], reporting one step per key checked to `progress` (one phase,
    /// `"verifying"`, whose total is the number of keys).
    ///
    /// # Errors
    /// As for [`Shelf::verify`].
    pub fn verify_with_progress(&self, progress: &mut dyn Progress) -> Result<VerifyReport> {
        progress.start("verifying", Some(self.inner.index.scan("").count() as u64));
        let report = verify_observed(self, false, progress);
        progress.finish();
        report
    }

    /// Repairs what is repairable — refcounts, missing or stray object records, files
    /// no record names, temporary files — and reports what it found and did. Keys whose
    /// data is damaged are reported, not removed.
    ///
    /// # Errors
    /// [`Error::ReadOnly`]; [`Error::Engine`] or [`Error::Io`].
    pub fn gc(&self) -> Result<VerifyReport> {
        self.writable()?;
        let report = verify(self, true)?;
        self.sync()?;
        Ok(report)
    }

    /// [`Shelf::gc`], reporting one step per key checked to `progress` (one phase,
    /// `"collecting"`, whose total is the number of keys).
    ///
    /// # Errors
    /// As for [`Shelf::gc`].
    pub fn gc_with_progress(&self, progress: &mut dyn Progress) -> Result<VerifyReport> {
        self.writable()?;
        progress.start("collecting", Some(self.inner.index.scan("").count() as u64));
        let report = verify_observed(self, true, progress);
        progress.finish();
        let report = report?;
        self.sync()?;
        Ok(report)
    }
}

fn sync_inner(inner: &Inner) -> Result<()> {
    match inner.durability {
        Durability::PowerLoss => {
            let g = inner.index.sync()?;
            write_witness(&inner.path, g, inner.durability)
        }
        Durability::ProcessCrash => inner.index.flush(),
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.read_only {
            // Best effort: a failure here has nowhere to go; sled also flushes on drop.
            let _ = sync_inner(self);
        }
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
    /// [`Error::Serde`] when `value` cannot be pickled.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<()> {
        let bytes = pickle::to_vec(value)?;
        self.ops.push((key.to_owned(), Some(bytes)));
        Ok(())
    }

    /// Adds an insert of pickle bytes (checked to decode).
    ///
    /// # Errors
    /// [`Error::Decode`] when `bytes` is not a valid pickle.
    pub fn insert_pickle(&mut self, key: &str, bytes: &[u8]) -> Result<()> {
        pickle::decode(bytes)?;
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

    /// True when there are no changes.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// What [`Shelf::verify`] or [`Shelf::gc`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Keys checked.
    pub keys: u64,
    /// Object records checked.
    pub objects: u64,
    /// Object files found.
    pub files: u64,
    /// Everything wrong, one line each.
    pub problems: Vec<String>,
    /// What gc repaired, one line each (empty for `verify`).
    pub repaired: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong (after repairs, for gc: only unrepairable problems remain).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

fn verify(shelf: &Shelf, repair: bool) -> Result<VerifyReport> {
    verify_observed(shelf, repair, &mut ())
}

/// [`verify`], advancing `progress` once per key checked.
fn verify_observed(shelf: &Shelf, repair: bool, progress: &mut dyn Progress) -> Result<VerifyReport> {
    let inner = &shelf.inner;
    let index = &inner.index;
    let writer = if repair { Some(index.writer()) } else { None };
    let mut report = VerifyReport::default();
    let mut counted: std::collections::BTreeMap<Digest, u64> = std::collections::BTreeMap::new();
    for item in index.scan("") {
        let (key, stored) = match item {
            Ok(x) => x,
            Err(e) => {
                report.problems.push(format!("unreadable key record: {e}"));
                continue;
            }
        };
        report.keys += 1;
        progress.advance(1);
        if let Stored::Object { digest } = &stored {
            *counted.entry(*digest).or_insert(0) += 1;
        }
        if let Err(e) = shelf.load(&key, stored) {
            report.problems.push(format!("key {key:?}: {e}"));
        }
    }
    let mut recorded: std::collections::BTreeMap<Digest, crate::index::ObjectRecord> = Default::default();
    for item in index.object_records() {
        match item {
            Ok((d, r)) => {
                report.objects += 1;
                recorded.insert(d, r);
            }
            Err(e) => report.problems.push(format!("unreadable object record: {e}")),
        }
    }
    for (d, n) in &counted {
        match recorded.get(d) {
            Some(r) if r.refs == *n => {}
            Some(r) => {
                let msg = format!("object {d}: refcount {} but {n} keys point at it", r.refs);
                if let Some(w) = &writer {
                    w.set_object(d, Some(crate::index::ObjectRecord { refs: *n, ..*r }))?;
                    report.repaired.push(format!("{msg}: set to {n}"));
                } else {
                    report.problems.push(msg);
                }
            }
            None => {
                let msg = format!("object {d}: {n} keys point at it but it has no record");
                let file_len = fs::metadata(index.objects().path_of(d)).map(|m| m.len()).ok();
                match (&writer, file_len) {
                    (Some(w), Some(len)) => {
                        let rec =
                            crate::index::ObjectRecord { refs: *n, stored_len: len, generation: index.generation() };
                        w.set_object(d, Some(rec))?;
                        report.repaired.push(format!("{msg}: record rebuilt from its file"));
                    }
                    _ => report.problems.push(msg),
                }
            }
        }
    }
    for (d, r) in &recorded {
        if !counted.contains_key(d) {
            let msg = format!("object {d}: record with refcount {} but no key points at it", r.refs);
            if let Some(w) = &writer {
                w.set_object(d, None)?;
                report.repaired.push(format!("{msg}: removed"));
            } else {
                report.problems.push(msg);
            }
        }
    }
    let files = index.objects().list()?;
    report.files = files.len() as u64;
    for (d, path, len) in files {
        match d {
            Some(d) if counted.contains_key(&d) => {
                if let Some(r) = recorded.get(&d)
                    && r.stored_len != len
                {
                    report.problems.push(format!("object {d}: file has {len} bytes, record says {}", r.stored_len));
                }
            }
            // A record without keys: reported above; gc's removal deletes the file at sync.
            Some(d) if recorded.contains_key(&d) => {}
            _ => {
                let msg = format!("file {} belongs to no object", path.display());
                if repair {
                    fs::remove_file(&path).map_err(io(&path))?;
                    report.repaired.push(format!("{msg}: deleted"));
                } else {
                    report.problems.push(msg);
                }
            }
        }
    }
    if repair {
        let n = index.objects().clean_tmp()?;
        if n > 0 {
            report.repaired.push(format!("{n} temporary files deleted"));
        }
    }
    Ok(report)
}

const WITNESS: &str = "WITNESS";

fn read_witness(dir: &Path) -> Result<Option<u64>> {
    let path = dir.join(WITNESS);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let g = text
                .lines()
                .find_map(|l| l.strip_prefix("generation "))
                .and_then(|g| g.trim().parse::<u64>().ok())
                .ok_or_else(|| Error::Corrupted {
                    what: format!("witness file {}", path.display()),
                    reason: "unreadable".into(),
                })?;
            Ok(Some(g))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Io { path, source: e }),
    }
}

fn write_witness(dir: &Path, generation: u64, durability: Durability) -> Result<()> {
    let tmp = dir.join("WITNESS.tmp");
    let path = dir.join(WITNESS);
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(format!("pickleshelf witness\ngeneration {generation}\n").as_bytes()).map_err(io(&tmp))?;
    if durability == Durability::PowerLoss {
        f.sync_all().map_err(io(&tmp))?;
    }
    drop(f);
    fs::rename(&tmp, &path).map_err(io(&path))?;
    if durability == Durability::PowerLoss {
        fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    }
    Ok(())
}
