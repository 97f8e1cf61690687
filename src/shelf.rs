//! [`Shelf`]: the public handle of a store.
//!
//! Invariant: every value a `Shelf` returns was re-hashed and found equal to its
//! address; every change is all-or-nothing (one sled write or one sled batch, see
//! [`crate::index`]); a store whose sled state is older than its witness file's
//! generation is refused at open.

use std::any::{Any, TypeId};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blob::{Codec, DICT_MAX_VALUE, Digest, Hasher, RAW_MAX, TRAIN_BYTES, TRAIN_SAMPLES};
use crate::cache::{Cache, CacheStats};
use crate::chain::{Chains, LoadError, Recent};
use crate::error::{Error, Result};
use crate::index::{Delta, Index, IndexOptions, MAX_KEY_LEN, Op, Space, Stored, Writer};
use crate::pickle::{self, Value};
use crate::progress::Progress;
use crate::repair::VerifyReport;
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
const AUTH_CHECK: &[u8] = b"pickleshelf auth check";

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
    cache_bytes: u64,
    cache_entries: u64,
    /// A format 2 store may be opened read-only (by salvage) without being upgraded.
    legacy: bool,
    /// Read the page directory from these sled files (salvage: rebuilt from the packs).
    sled_from: Option<PathBuf>,
}

impl ShelfBuilder {
    /// zstd compression level for stored values and record pages (1–19, default 3).
    pub fn zstd_level(mut self, level: i32) -> Self {
        self.zstd_level = level;
        self
    }

    /// Pickle protocol used to write typed values (2–5, default 4, as Python's default).
    pub fn protocol(mut self, protocol: u8) -> Self {
        self.protocol = protocol;
        self
    }

    /// Opens without allowing writes (the store must exist). A read-only open writes
    /// nothing in the store's directory and needs no write access to it: it takes a
    /// shared lock on `LOCK` (none when the file is missing), so readers share a store and
    /// exclude writers, and it reads the page directory from a private copy of `sled/` in
    /// the system's temporary directory, deleted when the store closes.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Whether a missing store is created (default true). Without it, a path that holds
    /// no store (missing, or a directory without one) fails to open, and nothing is written.
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
    /// [`Error::RolledBack`]; the witness is then reset to the store's generation. Also
    /// opens a store whose witness file is damaged (and rewrites it).
    pub fn allow_rollback(mut self, allow: bool) -> Self {
        self.allow_rollback = allow;
        self
    }

    /// Budget of the decoded-object cache in estimated bytes of decoded objects (default
    /// 64 MiB); 0 disables caching. Changeable later with [`Shelf::set_cache_budget`].
    pub fn cache_bytes(mut self, bytes: u64) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Most objects the cache holds (default 100,000); 0 disables caching.
    pub fn cache_entries(mut self, entries: u64) -> Self {
        self.cache_entries = entries;
        self
    }

    /// Validates the options and opens (or creates) the store.
    ///
    /// # Errors
    /// [`Error::Config`] for invalid options; [`Error::Locked`] when another handle holds
    /// the store (after waiting up to half a second for it to let go: a handle just closed
    /// can hold the lock a moment longer, in a child process started meanwhile, which has
    /// a copy of every descriptor from its fork to its exec); [`Error::UnsupportedFormat`], [`Error::AuthKey`], [`Error::RolledBack`],
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
    pub fn repair(self) -> Result<crate::RepairReport> {
        crate::repair::directory::run(self, false)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// For salvage: reads a format 2 store as it is, and the page directory from the sled
    /// files in `sled_from` when given.
    pub(crate) fn for_salvage(mut self, sled_from: Option<PathBuf>) -> Self {
        self.legacy = true;
        self.sled_from = sled_from;
        self
    }

    pub(crate) fn auth_key_bytes(&self) -> Option<&[u8]> {
        self.auth_key.as_deref()
    }

    /// The hasher the auth key (or its absence) gives.
    pub(crate) fn hasher(&self) -> Hasher {
        match &self.auth_key {
            Some(k) => Hasher::Keyed(blake3::derive_key("pickleshelf 2026 object auth key", k)),
            None => Hasher::Plain,
        }
    }
}

struct Inner {
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
    /// Held for the handle's lifetime: the lock on `LOCK` (exclusive for a writer, shared
    /// for a reader; none for a reader of a store without `LOCK`).
    _lock: Option<fs::File>,
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

impl std::fmt::Debug for Shelf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shelf").field("path", &self.inner.path).field("read_only", &self.inner.read_only).finish()
    }
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
            cache_bytes: DEFAULT_CACHE_BYTES,
            cache_entries: DEFAULT_CACHE_ENTRIES,
            legacy: false,
            sled_from: None,
        }
    }

    fn open_with(b: ShelfBuilder) -> Result<Shelf> {
        let path = b.path.clone();
        if !path.join("sled").exists() && b.sled_from.is_none() && has_packs(&path) {
            return Err(lost_directory(&path));
        }
        // A directory without a sled database (missing, or not a store) is no store.
        if (b.read_only || !b.create) && !path.join("sled").exists() && b.sled_from.is_none() {
            return Err(Error::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no store at this path"),
            });
        }
        if !path.exists() {
            crate::index::create_dir_durable(&path)?;
        }
        let lock = take_lock(&path, b.read_only)?;
        // A repair cut short: a writer finishes installing the rebuilt directory; a reader
        // cannot (it writes nothing).
        if crate::index::install_pending(&path) {
            if b.read_only {
                return Err(Error::Corrupted {
                    what: format!("store {}", path.display()),
                    reason: format!(
                        "a repair was interrupted: run `pickleshelf repair {}` to finish it",
                        path.display()
                    ),
                });
            }
            crate::index::finish_install(&path)?;
        }
        let hasher = b.hasher();
        let auth_check = |h: &Hasher| h.digest(AUTH_CHECK).0;
        let index = Index::open(
            &path,
            IndexOptions {
                create: !b.read_only,
                read_only: b.read_only,
                hasher: hasher.clone(),
                level: b.zstd_level,
                power_loss: b.durability == Durability::PowerLoss,
                auth: hasher.is_keyed().then(|| auth_check(&hasher)),
                sled_from: b.sled_from.clone(),
            },
        )?;
        if index.is_empty()? {
            // No directory, but pages and a witness: sled's files were lost after a sync
            // (a restore that has not copied them, say), and creating a store here would
            // drop every pack. Without a witness no sync ever completed (the witness is
            // written after sled's files are fsynced): the packs hold only the commits of
            // an unacknowledged first sync, which a power cut may leave, and the store is
            // new.
            if has_packs(&path) && !matches!(witness::read(&path), Ok(None)) {
                return Err(lost_directory(&path));
            }
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
        // A format 2 store is upgraded by a writable open (below), and read as it is by
        // salvage; other opens refuse it.
        let upgrade = format == 2 && !b.read_only;
        if format != FORMAT_VERSION && format != FORMAT_READ_AS_IS && !upgrade && !(format == 2 && b.legacy) {
            return Err(Error::UnsupportedFormat { path, found: format, supported: FORMAT_VERSION });
        }
        index.use_legacy_settings(format == 2);
        match (index.meta("auth")?, hasher.is_keyed()) {
            (Some(stored), true) if stored.as_ref() != auth_check(&hasher) => {
                return Err(Error::AuthKey { path, reason: "the key given is not the store's key" });
            }
            (Some(_), false) => return Err(Error::AuthKey { path, reason: "the store requires an auth key" }),
            (None, true) => return Err(Error::AuthKey { path, reason: "the store was created without an auth key" }),
            _ => {}
        }
        index.count_objects();
        let generation = index
            .meta("generation")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        index.set_generation(generation);
        let witness = match witness::read(&path) {
            // Damaged: it cannot vouch for the store; allow_rollback(true) resets it below.
            Err(Error::Corrupted { .. }) if b.allow_rollback => Some(u64::MAX),
            other => other?.map(|w| w.generation),
        };
        // A rollback accepted: files and packs that no record names may hold the newer
        // state (which `pickleshelf repair` can bring back), so none is deleted below.
        let mut rolled_back = false;
        if let Some(witness) = witness
            && generation < witness
        {
            if !b.allow_rollback {
                return Err(Error::RolledBack { path, store_generation: generation, witness_generation: witness });
            }
            rolled_back = true;
            if !b.read_only {
                let seq = Some(index.newest_seq());
                witness::write(&path, Witness { generation, seq }, b.durability == Durability::PowerLoss)?;
            }
        }
        if upgrade {
            index.upgrade_from_format2(FORMAT_VERSION)?;
            index.use_legacy_settings(false);
        } else if format == FORMAT_READ_AS_IS && !b.read_only && !b.legacy {
            // Before anything of format 4 can be written: sled's log keeps this record
            // ahead of every later batch.
            index.set_meta("format", &FORMAT_VERSION.to_le_bytes())?;
            index.flush()?;
        }
        let codec = Codec::new(b.zstd_level, hasher);
        let mut current = 0;
        // A page of settings that cannot be read leaves its dictionaries out: the values
        // compressed with them cannot be read (their errors say so), the others can, and no
        // new dictionary is trained (it could take a lost one's id).
        let settings = index.settings("dict");
        let settings_read = settings.is_ok();
        for (name, bytes) in settings.unwrap_or_default() {
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
            // Commits a crash left in the packs but not in the directory (or those a rollback
            // just accepted lost) are voided before anything new is committed.
            index.void_uncommitted()?;
        }
        if !b.read_only && !rolled_back {
            index.objects().clean_tmp()?;
            // Files without a record are leftovers of writes a crash cut short, or of
            // removals whose files the crash left — also when the object was written again
            // since with its frame in the tree (a delta, say), so that its record exists but
            // names no file. The records sled recovered are made durable first: were they
            // only in the page cache, a power loss could bring back an older record naming
            // a deleted file.
            let mut orphans = Vec::new();
            for (d, p, _) in index.objects().list()? {
                // A record that cannot be read (a damaged page) keeps its file: reads and
                // verify report the damage, and nothing more is lost.
                let orphan = match d {
                    Some(d) => index.object(&d).is_ok_and(|r| r.is_none_or(|r| r.in_tree)),
                    None => true,
                };
                if orphan {
                    orphans.push(p);
                }
            }
            // Pack files no page names: written by a commit a crash cut short, or emptied
            // by a compaction whose deletion the crash left.
            let orphan_packs = index.orphan_packs()?;
            if !orphans.is_empty() || !orphan_packs.is_empty() {
                index.make_durable()?;
            }
            for p in orphans {
                fs::remove_file(&p).map_err(io(&p))?;
            }
            for p in orphan_packs {
                index.remove_orphan_pack(&p)?;
            }
            // Best effort, as above: frame records in a damaged page stay where they are.
            let _ = index.remove_orphan_frames();
        }
        let samples = if current == 0 && !b.read_only && settings_read { Some((Vec::new(), 0)) } else { None };
        Ok(Shelf {
            inner: Arc::new(Inner {
                path,
                index,
                codec,
                protocol: b.protocol,
                read_only: b.read_only,
                durability: b.durability,
                samples: Mutex::new(samples),
                cache: Cache::new(b.cache_bytes, b.cache_entries),
                chains: Chains::default(),
                syncing: Mutex::new(()),
                dirty: AtomicBool::new(false),
                trainer: Mutex::new(None),
                training: AtomicBool::new(false),
                _lock: lock,
            }),
        })
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    pub(crate) fn index(&self) -> &Index {
        &self.inner.index
    }

    pub(crate) fn codec(&self) -> &Codec {
        &self.inner.codec
    }

    pub(crate) fn chains(&self) -> &Chains {
        &self.inner.chains
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.inner.cache
    }

    pub(crate) fn protocol(&self) -> u8 {
        self.inner.protocol
    }

    /// Records that something was written outside [`Shelf::commit`] (so `sync` must run).
    pub(crate) fn mark_dirty(&self) {
        self.inner.dirty.store(true, Ordering::Release);
    }

    pub(crate) fn writable(&self) -> Result<()> {
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
    /// [`Error::Pickle`] when `value` cannot be pickled; store errors as for
    /// [`Shelf::insert_pickle`].
    pub fn insert<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = pickle::to_vec_with_protocol(value, self.inner.protocol)?;
        self.put_trusted(key, &bytes)
    }

    /// Stores a decoded pickle value under `key`.
    ///
    /// # Errors
    /// [`Error::Pickle`] for a value that cannot be pickled; store errors as for
    /// [`Shelf::insert_pickle`].
    pub fn insert_value(&self, key: &str, value: &Value) -> Result<()> {
        let bytes = pickle::encode(value, self.inner.protocol)?;
        self.put_trusted(key, &bytes)
    }

    /// Stores pickle bytes under `key` byte-exact (e.g. bytes written by Python's
    /// `pickle.dumps`), after checking that they decode.
    ///
    /// # Errors
    /// [`Error::Pickle`] when `bytes` is not a valid pickle (nothing is stored);
    /// [`Error::ReadOnly`], [`Error::InvalidKey`], [`Error::Engine`], [`Error::Io`].
    pub fn insert_pickle(&self, key: &str, bytes: &[u8]) -> Result<()> {
        pickle::check(bytes)?;
        self.put_trusted(key, bytes)
    }

    /// The put of `bytes` under `key`: its digest and frame, a delta when a recent object
    /// resembles it (see [`crate::chain`]).
    fn prepare(&self, key: &str, bytes: &[u8]) -> Result<Prepared> {
        Self::check_key(key)?;
        let inner = &self.inner;
        let digest = inner.codec.digest(bytes);
        let e = inner.chains.encode(&inner.index, &inner.codec, Some(key), bytes, &digest)?;
        self.sample(bytes)?;
        Ok(Prepared { op: Op::put(key.to_owned(), digest, e.frame, e.delta), delta: e.delta, recent: e.recent })
    }

    /// Under the write lock, before committing: a delta whose base went away since it was
    /// prepared (a concurrent removal) becomes a whole frame.
    fn revalidate(&self, writer: &Writer<'_>, p: &mut Prepared, bytes: &[u8]) -> Result<()> {
        if let Some(d) = p.delta
            && writer.object(&d.base)?.is_none()
            && let Op::Put { frame, delta, .. } = &mut p.op
        {
            *frame = self.inner.codec.encode(bytes);
            *delta = None;
            p.delta = None;
        }
        Ok(())
    }

    /// The address and stored frame of pickle bytes (feeding the dictionary trainer).
    pub(crate) fn frame(&self, bytes: &[u8]) -> Result<(Digest, Vec<u8>)> {
        let digest = self.inner.codec.digest(bytes);
        let frame = self.inner.codec.encode(bytes);
        self.sample(bytes)?;
        Ok((digest, frame))
    }

    pub(crate) fn put_trusted(&self, key: &str, bytes: &[u8]) -> Result<()> {
        self.writable()?;
        let mut p = self.prepare(key, bytes)?;
        let writer = self.inner.index.writer();
        self.revalidate(&writer, &mut p, bytes)?;
        self.commit(&writer, vec![p.op])?;
        drop(writer);
        self.inner.chains.written(p.recent, p.delta, bytes);
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
        self.inner.dirty.store(true, Ordering::Release);
        for (key, digest) in touched {
            self.inner.cache.key_written(&key, if result.is_ok() { digest } else { None });
        }
        result
    }

    /// Collects the values a dictionary would compress (over [`RAW_MAX`] bytes, up to
    /// [`DICT_MAX_VALUE`]: smaller ones are framed raw in pages compressed whole) until one
    /// can be trained ([`TRAIN_SAMPLES`] values or [`TRAIN_BYTES`] bytes), then trains and
    /// stores it. A store of small values never trains one.
    fn sample(&self, bytes: &[u8]) -> Result<()> {
        if self.inner.training.load(Ordering::Acquire) {
            install_dictionary(&self.inner, false)?;
        }
        if bytes.len() <= RAW_MAX || bytes.len() > DICT_MAX_VALUE {
            return Ok(());
        }
        let ready = {
            let mut guard = self.inner.samples.lock().unwrap_or_else(PoisonError::into_inner);
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
            .map_err(|e| Error::Io { path: self.inner.path.clone(), source: e })?;
        *self.inner.trainer.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
        self.inner.training.store(true, Ordering::Release);
        Ok(())
    }

    /// Removes `key`; returns whether it was there.
    ///
    /// # Errors
    /// [`Error::ReadOnly`], [`Error::Engine`], [`Error::Io`].
    pub fn remove(&self, key: &str) -> Result<bool> {
        self.writable()?;
        let existed = self.commit(&self.inner.index.writer(), vec![Op::remove(key.to_owned())])?;
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
        match &new {
            Some(v) => {
                let bytes = pickle::to_vec_with_protocol(v, self.inner.protocol)?;
                let p = self.prepare(key, &bytes)?;
                self.commit(&writer, vec![p.op])?;
                drop(writer);
                self.inner.chains.written(p.recent, p.delta, &bytes);
            }
            None => {
                self.commit(&writer, vec![Op::remove(key.to_owned())])?;
            }
        }
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
        let mut prepared = Vec::with_capacity(batch.ops.len());
        for (key, bytes) in &batch.ops {
            prepared.push(match bytes {
                Some(b) => self.prepare(key, b)?,
                None => Prepared { op: Op::remove(key.clone()), delta: None, recent: None },
            });
        }
        let writer = self.inner.index.writer();
        let mut ops = Vec::with_capacity(prepared.len());
        let mut notes = Vec::new();
        for (mut p, (_, bytes)) in prepared.into_iter().zip(&batch.ops) {
            if let Some(b) = bytes {
                self.revalidate(&writer, &mut p, b)?;
                notes.push((p.recent, p.delta, b));
            }
            ops.push(p.op);
        }
        self.commit(&writer, ops)?;
        drop(writer);
        for (recent, delta, bytes) in notes {
            self.inner.chains.written(recent, delta, bytes);
        }
        Ok(())
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
        let _pin = self.inner.index.pin_files();
        match self.inner.index.get(key)? {
            Some(stored) => self.load(key, stored).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn load(&self, key: &str, stored: Stored) -> Result<Vec<u8>> {
        let digest = stored.digest();
        match stored {
            Stored::Inline { frame, .. } => self
                .inner
                .codec
                .decode(&frame, &digest)
                .map_err(|reason| Error::CorruptedObject { key: key.to_owned(), digest, reason }),
            Stored::Object { .. } => {
                let bytes =
                    self.inner.chains.load(&self.inner.index, &self.inner.codec, &digest).map_err(|e| match e {
                        LoadError::Store(e) => e,
                        LoadError::Bad(digest, reason) => {
                            Error::CorruptedObject { key: key.to_owned(), digest, reason }
                        }
                    })?;
                Ok(Arc::try_unwrap(bytes).unwrap_or_else(|b| b.as_ref().clone()))
            }
        }
    }

    /// The value under `key`, deserialized into `T`.
    ///
    /// # Errors
    /// [`Error::Pickle`] when the value does not fit `T`; otherwise as for
    /// [`Shelf::get_pickle`].
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let _pin = self.inner.index.pin_files();
        match self.inner.index.get(key)? {
            // Verified and deserialized in place, without a copy of the pickle.
            Some(Stored::Inline { frame, digest }) => match self.inner.codec.decode_borrowed(&frame, &digest) {
                Ok(bytes) => Ok(Some(pickle::from_slice(&bytes)?)),
                Err(reason) => Err(Error::CorruptedObject { key: key.to_owned(), digest, reason }),
            },
            Some(stored) => Ok(Some(pickle::from_slice(&self.load(key, stored)?)?)),
            None => Ok(None),
        }
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
        self.cached(key, |bytes| {
            let v: T = pickle::from_slice(bytes)?;
            Ok((Arc::new(v), crate::cache::typed_bytes::<T>(bytes.len())))
        })
    }

    /// The value under `key` as a shared decoded graph, served from the cache like
    /// [`Shelf::get_arc`].
    ///
    /// # Errors
    /// As for [`Shelf::get_value`].
    pub fn get_value_arc(&self, key: &str) -> Result<Option<Arc<Value>>> {
        self.cached(key, |bytes| {
            let v = pickle::decode(bytes)?;
            let size = crate::cache::value_bytes(&v);
            Ok((Arc::new(v), size))
        })
    }

    fn cached<T, F>(&self, key: &str, decode: F) -> Result<Option<Arc<T>>>
    where
        T: Send + Sync + 'static,
        F: FnOnce(&[u8]) -> Result<(Arc<T>, u64)>,
    {
        let cache = &self.inner.cache;
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
        let _pin = self.inner.index.pin_files();
        let Some(stored) = self.inner.index.get(key)? else {
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

    /// Counters and size of the decoded-object cache.
    pub fn cache_stats(&self) -> CacheStats {
        self.inner.cache.stats()
    }

    /// Drops the cached decoded objects of the value under `key` (all types). Returns
    /// whether anything was dropped.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`] when the key's record cannot be read.
    pub fn evict(&self, key: &str) -> Result<bool> {
        Ok(match self.inner.index.get(key)? {
            Some(stored) => self.inner.cache.evict(&stored.digest()) > 0,
            None => false,
        })
    }

    /// Drops every cached decoded object, pinned ones included (and the decoded bases of
    /// delta chains).
    pub fn clear_cache(&self) {
        self.inner.cache.clear();
        self.inner.chains.clear();
    }

    /// Changes the cache budget (estimated bytes, entries), evicting at once what no
    /// longer fits; 0 for either disables caching.
    pub fn set_cache_budget(&self, bytes: u64, entries: u64) {
        self.inner.cache.set_budget(bytes, entries);
    }

    /// The cache budget: (estimated bytes, entries).
    pub fn cache_budget(&self) -> (u64, u64) {
        self.inner.cache.budget()
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
            self.inner.cache.set_pinned(&d, true);
        }
        Ok(true)
    }

    /// Unpins the cached objects of the value under `key`; they become evictable again.
    ///
    /// # Errors
    /// [`Error::Engine`], [`Error::Corrupted`].
    pub fn unpin(&self, key: &str) -> Result<bool> {
        Ok(match self.digest(key)? {
            Some(d) => self.inner.cache.set_pinned(&d, false) > 0,
            None => false,
        })
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
        self.inner.index.scan_keys_from(prefix, from)
    }

    /// All keys with their pickle bytes (verified), in key order.
    pub fn iter(&self) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + '_ {
        self.scan_prefix("")
    }

    /// Keys starting with `prefix` with their pickle bytes (verified), in key order.
    pub fn scan_prefix<'a>(&'a self, prefix: &str) -> impl Iterator<Item = Result<(String, Vec<u8>)>> + 'a {
        let mut records = self.inner.index.scan(prefix);
        std::iter::from_fn(move || {
            // From reading the record to reading its object file (see `Index::pin_files`).
            let _pin = self.inner.index.pin_files();
            let item = records.next()?;
            Some(item.and_then(|(k, stored)| {
                let bytes = self.load(&k, stored)?;
                Ok((k, bytes))
            }))
        })
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
        crate::repair::verify::run(self, false, &mut ())
    }

    /// [`Shelf::verify`], reporting one step per record checked (key or memo result) to
    /// `progress`, in one phase, `"verifying"`.
    ///
    /// # Errors
    /// As for [`Shelf::verify`].
    pub fn verify_with_progress(&self, progress: &mut dyn Progress) -> Result<VerifyReport> {
        progress.start("verifying", Some(self.record_count()));
        let report = crate::repair::verify::run(self, false, progress);
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
        self.writable()?;
        let report = crate::repair::verify::run(self, true, &mut ())?;
        self.after_gc(report)
    }

    /// Syncs after a gc that repaired (a gc that could not read everything changed nothing).
    fn after_gc(&self, report: VerifyReport) -> Result<VerifyReport> {
        if report.is_complete() {
            self.mark_dirty();
            self.sync()?;
        }
        Ok(report)
    }

    /// Key and memo records, readable or not: the steps of a verify.
    fn record_count(&self) -> u64 {
        let index = &self.inner.index;
        (index.scan_in(Space::Keys, "").count() + index.scan_in(Space::Memo, "").count()) as u64
    }

    /// [`Shelf::gc`], reporting one step per record checked (key or memo result) to
    /// `progress`, in one phase, `"collecting"`.
    ///
    /// # Errors
    /// As for [`Shelf::gc`].
    pub fn gc_with_progress(&self, progress: &mut dyn Progress) -> Result<VerifyReport> {
        self.writable()?;
        progress.start("collecting", Some(self.record_count()));
        let report = crate::repair::verify::run(self, true, progress);
        progress.finish();
        self.after_gc(report?)
    }
}

/// Installs the dictionary the training thread made, once it is done (or, with `wait`,
/// after waiting for it). The dictionary is recorded before any frame names it.
fn install_dictionary(inner: &Inner, wait: bool) -> Result<()> {
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

fn sync_inner(inner: &Inner) -> Result<()> {
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

impl Drop for Inner {
    fn drop(&mut self) {
        if !self.read_only {
            let _ = install_dictionary(self, true);
            // Best effort: a failure here has nowhere to go; sled also flushes on drop.
            let _ = sync_inner(self);
        }
    }
}

/// A put ready to commit, with what the version bookkeeping needs once it is done.
struct Prepared {
    op: Op,
    delta: Option<Delta>,
    recent: Option<Recent>,
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

/// The error for a store whose page directory is gone while its packs are there.
fn lost_directory(dir: &Path) -> Error {
    Error::Corrupted {
        what: format!("store {}", dir.display()),
        reason: format!(
            "its page directory (sled/) is missing or empty but pages/ holds pack files: run `pickleshelf repair \
             {}` to rebuild the directory from them",
            dir.display()
        ),
    }
}

/// True when `dir/pages` holds a pack file.
fn has_packs(dir: &Path) -> bool {
    fs::read_dir(dir.join("pages"))
        .is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".pack")))
}

/// Locks the store: a writer takes the exclusive `flock` on `LOCK` (created when missing);
/// a reader opens `LOCK` read-only and takes a shared one (so readers need no write
/// access, share the store with other readers and exclude writers); a store without
/// `LOCK` is not locked by a reader.
pub(crate) fn take_lock(dir: &Path, read_only: bool) -> Result<Option<fs::File>> {
    let lock_path = dir.join("LOCK");
    let opened =
        fs::OpenOptions::new().read(true).write(!read_only).create(!read_only).truncate(false).open(&lock_path);
    let lock = match opened {
        Ok(f) => f,
        Err(e) if read_only && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::Io { path: lock_path, source: e }),
    };
    let taken = if read_only { crate::index::lock_shared_within(&lock) } else { crate::index::lock_within(&lock) };
    match taken {
        Ok(true) => Ok(Some(lock)),
        Ok(false) => Err(Error::Locked { path: lock_path }),
        Err(e) => Err(Error::Io { path: lock_path, source: e }),
    }
}
