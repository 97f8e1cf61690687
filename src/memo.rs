//! Memoization keyed by pickled arguments: a persistent cache of a function's results.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! let shelf = pickleshelf::Shelf::open(dir.path().join("cache.db"))?;
//! let fib = shelf.memo("fib")?;
//! let mut calls = 0;
//! let a: u64 = fib.get_or_compute(&(40u32,), || { calls += 1; 102_334_155 })?;
//! let b: u64 = fib.get_or_compute(&(40u32,), || { calls += 1; 0 })?;
//! assert_eq!((a, b, calls), (102_334_155, 102_334_155, 1));
//! # Ok::<(), pickleshelf::Error>(())
//! ```
//!
//! ## The key of a call
//!
//! A call's key is the first 16 bytes of BLAKE2b (`digest_size=16`) of
//! `b"pickleshelf memo 1\0" + namespace + b"\0" + version + b"\0" + canonical_pickle(args)`
//! (namespace and version as UTF-8), written as 32 lowercase hex digits. The canonical
//! pickle is the arguments' canonical form pickled with protocol 4 in CPython's fast mode
//! (no memo): dicts sorted by the canonical pickle of their keys, sets and frozensets
//! turned into the tuple `("__pickleshelf.set__", *elements sorted by their canonical
//! pickles)`, bytearrays turned into bytes. So equal arguments give equal keys whatever
//! a `HashMap`'s or a set's iteration order (Rust `HashSet`, `BTreeSet` and `IndexSet`
//! arguments are recognized as sets by their type name; other set types serialize as
//! lists). A Python process computes the same key with:
//!
//! ```python
//! import hashlib, io, pickle
//!
//! def fast_dumps(x):
//!     f = io.BytesIO(); p = pickle.Pickler(f, protocol=4); p.fast = True; p.dump(x)
//!     return f.getvalue()
//!
//! def canonical(x):
//!     t = type(x)
//!     if t is dict:
//!         items = [(canonical(k), canonical(v)) for k, v in x.items()]
//!         return dict(sorted(items, key=lambda kv: fast_dumps(kv[0])))
//!     if t in (set, frozenset):
//!         return ("__pickleshelf.set__", *sorted((canonical(e) for e in x), key=fast_dumps))
//!     if t is list: return [canonical(e) for e in x]
//!     if t is tuple: return tuple(canonical(e) for e in x)
//!     if t is bytearray: return bytes(x)
//!     return x
//!
//! def memo_key(namespace, version, args):
//!     head = b"pickleshelf memo 1\0" + namespace.encode() + b"\0" + version.encode() + b"\0"
//!     return hashlib.blake2b(head + fast_dumps(canonical(args)), digest_size=16).hexdigest()
//! ```
//!
//! Serde maps Rust arguments to Python values as [`crate::pickle::ser`] documents: a
//! tuple `(n, "q")` is the Python tuple `(n, 'q')`, a struct is a dict of its fields.
//!
//! ## Storage, limits and expiry
//!
//! Results are stored in the store's memo space (`docs/FORMAT.md`), one record per call,
//! through the same content-addressed, compressed, verified path as
//! [`crate::Shelf::insert`]; a record's header holds when the result was stored and last
//! read. Reads update the last-read time in memory; the times reach the store in one
//! batch at [`Memo::sync`] or when the memo's last handle is dropped (a crash loses them,
//! which only makes eviction order less exact). Limits on
//! entries and on stored bytes are enforced when a result is written, by evicting the
//! least recently read results. An expired result (older than the TTL) counts as a miss
//! and is removed. Changing the version makes earlier results unreachable; they are
//! deleted when a memo of the new version opens.
//!
//! Invariant: the in-memory index of a namespace (call key → digest, times, size) lists
//! exactly the namespace's records, because every change to them goes through this
//! module under the store's write lock.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use blake2::digest::consts::U16;
use blake2::{Blake2b, Digest as _};
use lru::LruCache;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::blob::Digest;
use crate::error::{Error, Result};
use crate::index::{MEMO_HEADER, Op, Space, Stored};
use crate::pickle;
use crate::store::{MemoHold, Store};

/// Counters of one memo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoStats {
    /// Calls answered from stored results.
    pub hits: u64,
    /// Calls that ran the function.
    pub misses: u64,
    /// Results evicted to stay within the limits, or expired.
    pub evictions: u64,
    /// Results stored now.
    pub entries: u64,
    /// Stored bytes of those results (frames, as counted against `max_bytes`).
    pub bytes: u64,
}

/// Options of a memo, validated by [`MemoBuilder::open`].
#[derive(Clone)]
#[must_use]
pub struct MemoBuilder {
    store: Arc<Store>,
    namespace: String,
    version: String,
    ttl: Option<Duration>,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
}

impl std::fmt::Debug for MemoBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoBuilder")
            .field("path", &self.store.path())
            .field("namespace", &self.namespace)
            .field("version", &self.version)
            .field("ttl", &self.ttl)
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl MemoBuilder {
    /// A builder for the memo of `namespace` in `store`, with default options.
    pub(crate) fn new(store: Arc<Store>, namespace: &str) -> MemoBuilder {
        MemoBuilder {
            store,
            namespace: namespace.to_owned(),
            version: String::new(),
            ttl: None,
            max_entries: None,
            max_bytes: None,
        }
    }

    /// The version of the function: results stored under another version are never
    /// returned (and are deleted when this memo opens). Default `""`.
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// Results older than this are recomputed.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// Most results kept; more evict the least recently read ones when written.
    pub fn max_entries(mut self, n: u64) -> Self {
        self.max_entries = Some(n);
        self
    }

    /// Most stored bytes kept; more evict the least recently read results when written.
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = Some(n);
        self
    }

    /// Opens the memo: loads its index, drops results of other versions and expired ones.
    ///
    /// # Errors
    /// [`Error::Config`] for a namespace or version holding NUL, or a limit of 0;
    /// store errors ([`Error::ReadOnly`] when old results must be deleted from a
    /// read-only store, [`Error::Engine`], [`Error::Corrupted`]).
    pub fn open(self) -> Result<Memo> {
        if self.namespace.contains('\0') || self.version.contains('\0') {
            return Err(Error::Config("a memo namespace or version may not contain NUL".into()));
        }
        if self.namespace.len() > 256 {
            return Err(Error::Config("a memo namespace may be at most 256 bytes long".into()));
        }
        if self.max_entries == Some(0) || self.max_bytes == Some(0) {
            return Err(Error::Config("memo limits must be at least 1".into()));
        }
        Memo::open(self)
    }
}

#[derive(Clone, Copy)]
struct Entry {
    digest: Digest,
    created: u64,
    accessed: u64,
    bytes: u64,
    /// Read since its times were last written (it is then in `State::touched` once).
    touched: bool,
}

struct State {
    lru: LruCache<[u8; 16], Entry>,
    bytes: u64,
    /// Calls read since their times were last written, each once (so at most one per
    /// entry).
    touched: Vec<[u8; 16]>,
}

/// Most argument pickles whose call keys a memo remembers, and the longest remembered.
const PICKLED_KEYS: std::num::NonZeroUsize = std::num::NonZeroUsize::new(4096).unwrap();
const PICKLED_KEY_MAX: usize = 512;

/// A result's pickle bytes as the decoded-object cache keeps them for
/// [`Memo::get_or_compute_pickle`].
struct RawResult(Arc<[u8]>);

/// One call being computed; later callers of the same call wait on it.
#[derive(Default)]
struct Flight {
    done: Mutex<bool>,
    cv: Condvar,
}

struct Inner {
    store: MemoHold,
    namespace: String,
    version: String,
    ttl: Option<Duration>,
    max_entries: Option<u64>,
    max_bytes: Option<u64>,
    state: Mutex<State>,
    flights: Mutex<HashMap<[u8; 16], Arc<Flight>>>,
    /// Call keys of recently seen argument pickles (see [`Memo::key_of_pickle`]): a
    /// repeated call skips decoding, canonicalizing and hashing its arguments.
    pickled_keys: Mutex<LruCache<Vec<u8>, [u8; 16]>>,
    hits: AtomicU64,
    misses: AtomicU64,
    evictions: AtomicU64,
}

/// A persistent memo of one function (a namespace of the store): see the module docs.
/// Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Memo {
    inner: Arc<Inner>,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn hex(k: &[u8; 16]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(32);
    for b in k {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn header(created: u64, accessed: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(MEMO_HEADER);
    h.extend_from_slice(&created.to_le_bytes());
    h.extend_from_slice(&accessed.to_le_bytes());
    h
}

fn parse_header(h: &[u8]) -> Option<(u64, u64)> {
    let c = u64::from_le_bytes(h.get(..8)?.try_into().ok()?);
    let a = u64::from_le_bytes(h.get(8..16)?.try_into().ok()?);
    Some((c, a))
}

/// One memo namespace of a store, from [`Shelf::memo_namespaces`](crate::Shelf::memo_namespaces).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoNamespace {
    /// The namespace (what [`Shelf::memo`](crate::Shelf::memo) was given).
    pub name: String,
    /// The version its results were stored under ([`MemoBuilder::version`]).
    pub version: String,
    /// Results stored now (expired ones included until a memo of the namespace opens).
    pub entries: u64,
    /// Stored bytes of those results (frames, as counted against
    /// [`MemoBuilder::max_bytes`]).
    pub bytes: u64,
    /// When a result was last stored or read (as last written to the store; reads are
    /// written at [`Memo::sync`] or when the memo is dropped); `None` without results.
    pub last_used: Option<SystemTime>,
}

/// Every memo namespace of the store, in name order ([`crate::Shelf::memo_namespaces`]).
pub(crate) fn namespaces(store: &Store) -> Result<Vec<MemoNamespace>> {
    let index = store.index();
    let mut out = Vec::new();
    for (meta_name, version) in index.settings("memo/")? {
        let Some(name) = meta_name.strip_prefix("memo/") else { continue };
        let mut ns = MemoNamespace {
            name: name.to_owned(),
            version: String::from_utf8_lossy(&version).into_owned(),
            entries: 0,
            bytes: 0,
            last_used: None,
        };
        let mut last = 0;
        for item in index.scan_in(Space::Memo, &format!("{name}\0")) {
            let (_, head, stored) = item?;
            ns.entries += 1;
            ns.bytes += stored_len(store, &stored)?;
            if let Some((created, accessed)) = parse_header(&head) {
                last = last.max(created).max(accessed);
            }
        }
        ns.last_used = (ns.entries > 0).then(|| UNIX_EPOCH + Duration::from_millis(last));
        out.push(ns);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

impl Memo {
    fn open(b: MemoBuilder) -> Result<Memo> {
        let store = b.store;
        let index = store.index();
        let version_key = format!("memo/{}", b.namespace);
        let prefix = format!("{}\0", b.namespace);
        let stored_version = index.setting(&version_key)?.map(|v| String::from_utf8_lossy(&v).into_owned());
        let now = now_ms();
        let mut entries: Vec<([u8; 16], Entry)> = Vec::new();
        let mut stale: Vec<String> = Vec::new();
        for item in index.scan_in(Space::Memo, &prefix) {
            let (key, head, stored) = item?;
            let call = key.get(prefix.len()..).unwrap_or("");
            let parsed = parse_call(call).zip(parse_header(&head));
            let expired = |created: u64| b.ttl.is_some_and(|t| now.saturating_sub(created) > t.as_millis() as u64);
            match parsed {
                Some((k, (created, accessed))) if stored_version.as_deref() == Some(b.version.as_str()) => {
                    if expired(created) {
                        stale.push(key);
                        continue;
                    }
                    let bytes = stored_len(&store, &stored)?;
                    entries.push((k, Entry { digest: stored.digest(), created, accessed, bytes, touched: false }));
                }
                _ => stale.push(key),
            }
        }
        if !stale.is_empty() || stored_version.as_deref() != Some(b.version.as_str()) {
            store.writable()?;
            let writer = index.writer();
            let ops = stale.into_iter().map(|key| Op::Remove { space: Space::Memo, key }).collect();
            store.commit(&writer, ops)?;
            writer.set_setting(&version_key, Some(b.version.as_bytes()))?;
            store.mark_dirty();
        }
        entries.sort_by_key(|(_, e)| e.accessed);
        let mut lru = LruCache::unbounded();
        let mut bytes = 0;
        for (k, e) in entries {
            bytes += e.bytes;
            lru.put(k, e);
        }
        Ok(Memo {
            inner: Arc::new(Inner {
                store: MemoHold::new(store),
                namespace: b.namespace,
                version: b.version,
                ttl: b.ttl,
                max_entries: b.max_entries,
                max_bytes: b.max_bytes,
                state: Mutex::new(State { lru, bytes, touched: Vec::new() }),
                flights: Mutex::new(HashMap::new()),
                pickled_keys: Mutex::new(LruCache::new(PICKLED_KEYS)),
                hits: AtomicU64::new(0),
                misses: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
            }),
        })
    }

    /// The key of a call with these arguments, as 32 hex digits (see the module docs).
    ///
    /// # Errors
    /// [`Error::Pickle`] when the arguments are not plain data.
    pub fn key<A: Serialize + ?Sized>(&self, args: &A) -> Result<String> {
        self.call_key(args).map(|k| hex(&k))
    }

    fn call_key<A: Serialize + ?Sized>(&self, args: &A) -> Result<[u8; 16]> {
        let canonical = pickle::canonical_pickle_of(args)?;
        Ok(self.key_of_canonical(&canonical))
    }

    /// The key of a call whose arguments are given as pickle bytes (any protocol, e.g.
    /// `pickle.dumps(args)` in Python): the bytes are decoded and their canonical pickle
    /// hashed, so the key is the one [`Memo::key`] gives for equal arguments, whatever
    /// protocol, memo use or set order the bytes were written with.
    fn call_key_of_pickle(&self, args: &[u8]) -> Result<[u8; 16]> {
        let cacheable = args.len() <= PICKLED_KEY_MAX;
        if cacheable && let Some(k) = lock(&self.inner.pickled_keys).get(args) {
            return Ok(*k);
        }
        let value = pickle::decode(args)?;
        let canonical = pickle::canonical_pickle(&value)?;
        let key = self.key_of_canonical(&canonical);
        if cacheable {
            lock(&self.inner.pickled_keys).put(args.to_vec(), key);
        }
        Ok(key)
    }

    fn key_of_canonical(&self, canonical: &[u8]) -> [u8; 16] {
        let mut h = Blake2b::<U16>::new();
        h.update(b"pickleshelf memo 1\0");
        h.update(self.inner.namespace.as_bytes());
        h.update(b"\0");
        h.update(self.inner.version.as_bytes());
        h.update(b"\0");
        h.update(canonical);
        h.finalize().into()
    }

    fn record_key(&self, k: &[u8; 16]) -> String {
        self.inner.record_key(k)
    }

    fn flush_times(&self) -> Result<()> {
        self.inner.flush_times()
    }

    /// The result of the call with `args`: the stored one, or `f()`'s, which is then
    /// stored. Concurrent callers with equal arguments compute once; the others wait for
    /// that result.
    ///
    /// # Errors
    /// [`Error::Pickle`] when the arguments or the result cannot be pickled or the stored
    /// result does not fit `R`; store errors.
    pub fn get_or_compute<A, R, F>(&self, args: &A, f: F) -> Result<R>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> R,
    {
        match self.try_get_or_compute(args, || Ok::<R, std::convert::Infallible>(f()))? {
            Ok(r) => Ok(r),
            Err(never) => match never {},
        }
    }

    /// Like [`Memo::get_or_compute`] for a fallible function: `Ok(Err(e))` when `f`
    /// failed — nothing is stored then, and a waiting caller computes again itself. The
    /// outer `Err` is a store error.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// let m = shelf.memo("parse")?;
    /// let bad: Result<i64, String> = m.try_get_or_compute(&"x1", || "x1".parse::<i64>().map_err(|e| e.to_string()))?;
    /// assert!(bad.is_err());
    /// assert_eq!(m.stats().entries, 0); // errors are not cached
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// As for [`Memo::get_or_compute`].
    pub fn try_get_or_compute<A, R, E, F>(&self, args: &A, f: F) -> Result<std::result::Result<R, E>>
    where
        A: Serialize + ?Sized,
        R: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
        F: FnOnce() -> std::result::Result<R, E>,
    {
        let key = self.call_key(args)?;
        loop {
            if let Some(r) = self.lookup::<R>(&key)? {
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Ok(r));
            }
            let Some(flight) = self.board(&key) else {
                continue;
            };
            let _landing = Landing { memo: self, key, flight };
            // Stored by another leader between our lookup and our registration?
            if let Some(r) = self.lookup::<R>(&key)? {
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Ok(r));
            }
            self.inner.misses.fetch_add(1, Ordering::Relaxed);
            let r = match f() {
                Ok(r) => r,
                Err(e) => return Ok(Err(e)),
            };
            self.store(&key, &r)?;
            return Ok(Ok(r));
        }
    }

    /// The key of a call whose arguments are pickle bytes, as 32 hex digits: equal to
    /// [`Memo::key`] of equal arguments (this is how a Python program shares results
    /// with a Rust one; a Python call `f(*args)` passes `pickle.dumps(args)`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// let m = shelf.memo("f")?;
    /// let args = (3i64, "q".to_string());
    /// let bytes = pickleshelf::pickle::to_vec_with_protocol(&args, 2)?;
    /// assert_eq!(m.key_of_pickle(&bytes)?, m.key(&args)?);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Pickle`] when `args` is not a pickle, or holds anything but plain data
    /// (objects have no canonical pickle) or a cycle.
    pub fn key_of_pickle(&self, args: &[u8]) -> Result<String> {
        self.call_key_of_pickle(args).map(|k| hex(&k))
    }

    /// The stored result (pickle bytes, exactly as stored) of the call whose arguments
    /// are the pickle `args`, if there is one and it has not expired. Counts a hit when
    /// found, nothing otherwise.
    ///
    /// # Errors
    /// As for [`Memo::key_of_pickle`]; store errors.
    pub fn get_pickle(&self, args: &[u8]) -> Result<Option<Vec<u8>>> {
        let key = self.call_key_of_pickle(args)?;
        let found = self.lookup_raw(&key)?;
        if found.is_some() {
            self.inner.hits.fetch_add(1, Ordering::Relaxed);
        }
        Ok(found.map(|b| b.to_vec()))
    }

    /// [`Memo::try_get_or_compute`] for pickle bytes: `args` is the pickled argument
    /// tuple (keyed as [`Memo::key_of_pickle`] says) and `f` returns the result's pickle
    /// bytes, which are stored byte-exact (after checking that they decode) and returned
    /// as they are by later calls. Concurrent callers with equal arguments compute once.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let shelf = pickleshelf::Shelf::open(dir.path().join("s"))?;
    /// let m = shelf.memo("square")?;
    /// let args = pickleshelf::pickle::to_vec(&(7i64,))?;
    /// let r = m.get_or_compute_pickle(&args, || pickleshelf::pickle::to_vec(&49i64))??;
    /// assert_eq!(pickleshelf::pickle::from_slice::<i64>(&r)?, 49);
    /// // A typed call with equal arguments finds the same result.
    /// assert_eq!(m.get_or_compute(&(7i64,), || 0i64)?, 49);
    /// # Ok::<(), pickleshelf::Error>(())
    /// ```
    ///
    /// # Errors
    /// The outer `Err`: as for [`Memo::key_of_pickle`], [`Error::Pickle`] when the bytes
    /// `f` returned are not a pickle (nothing is stored), store errors. `Ok(Err(e))` when
    /// `f` failed (nothing is stored).
    pub fn get_or_compute_pickle<E, F>(&self, args: &[u8], f: F) -> Result<std::result::Result<Vec<u8>, E>>
    where
        F: FnOnce() -> std::result::Result<Vec<u8>, E>,
    {
        let key = self.call_key_of_pickle(args)?;
        loop {
            if let Some(r) = self.lookup_raw(&key)? {
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Ok(r.to_vec()));
            }
            let Some(flight) = self.board(&key) else {
                continue;
            };
            let _landing = Landing { memo: self, key, flight };
            if let Some(r) = self.lookup_raw(&key)? {
                self.inner.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Ok(r.to_vec()));
            }
            self.inner.misses.fetch_add(1, Ordering::Relaxed);
            let bytes = match f() {
                Ok(b) => b,
                Err(e) => return Ok(Err(e)),
            };
            pickle::check(&bytes)?;
            let shared: Arc<[u8]> = bytes.as_slice().into();
            self.store_raw(&key, &bytes, Arc::new(RawResult(shared)))?;
            return Ok(Ok(bytes));
        }
    }

    /// Registers this thread as the one computing `key` and returns its flight; or, when
    /// another thread computes it, waits until that one is done and returns `None` (the
    /// caller then looks the result up again).
    fn board(&self, key: &[u8; 16]) -> Option<Arc<Flight>> {
        let (flight, leader) = {
            let mut flights = lock(&self.inner.flights);
            match flights.get(key) {
                Some(f) => (Arc::clone(f), false),
                None => {
                    let f = Arc::new(Flight::default());
                    flights.insert(*key, Arc::clone(&f));
                    (f, true)
                }
            }
        };
        if leader {
            return Some(flight);
        }
        let mut done = lock(&flight.done);
        while !*done {
            done = flight.cv.wait(done).unwrap_or_else(PoisonError::into_inner);
        }
        None
    }

    /// The stored bytes of a call's result, if any and not expired (kept in the
    /// decoded-object cache as bytes).
    fn lookup_raw(&self, key: &[u8; 16]) -> Result<Option<Arc<[u8]>>> {
        let Some(digest) = self.touch(key)? else {
            return Ok(None);
        };
        let cache = self.inner.store.cache();
        let ty = TypeId::of::<RawResult>();
        if let Some(hit) = cache.get(&digest, ty)
            && let Ok(v) = Arc::downcast::<RawResult>(hit)
        {
            return Ok(Some(Arc::clone(&v.0)));
        }
        let rkey = self.record_key(key);
        let index = self.inner.store.index();
        let _pin = index.pin_files();
        let Some((_, stored)) = index.get_in(Space::Memo, &rkey)? else {
            return Ok(None);
        };
        let bytes: Arc<[u8]> = self.inner.store.load(&rkey, stored)?.into();
        if cache.enabled() {
            let n = bytes.len();
            cache.insert(&digest, ty, Arc::new(RawResult(Arc::clone(&bytes))), n as u64 + 64);
        }
        Ok(Some(bytes))
    }

    /// The digest of a call's stored result, its last-read time updated; `None` when
    /// there is none or it expired (an expired result is removed and counted as evicted).
    fn touch(&self, key: &[u8; 16]) -> Result<Option<Digest>> {
        let now = now_ms();
        let found = {
            let mut st = lock(&self.inner.state);
            let ttl = self.inner.ttl;
            match st.lru.get_mut(key) {
                None => return Ok(None),
                Some(e) if ttl.is_some_and(|t| now.saturating_sub(e.created) > t.as_millis() as u64) => None,
                Some(e) => {
                    e.accessed = now;
                    let d = e.digest;
                    let first = !e.touched;
                    e.touched = true;
                    if first {
                        st.touched.push(*key);
                    }
                    Some(d)
                }
            }
        };
        if found.is_none() {
            self.remove_calls(&[*key], true)?;
        }
        Ok(found)
    }

    /// The stored result of a call, if any and not expired.
    fn lookup<R>(&self, key: &[u8; 16]) -> Result<Option<R>>
    where
        R: DeserializeOwned + Clone + Send + Sync + 'static,
    {
        let Some(digest) = self.touch(key)? else {
            return Ok(None);
        };
        let cache = self.inner.store.cache();
        let ty = TypeId::of::<R>();
        if let Some(hit) = cache.get(&digest, ty)
            && let Ok(v) = Arc::downcast::<R>(hit)
        {
            return Ok(Some(R::clone(&v)));
        }
        let rkey = self.record_key(key);
        let index = self.inner.store.index();
        let _pin = index.pin_files();
        let Some((_, stored)) = index.get_in(Space::Memo, &rkey)? else {
            return Ok(None);
        };
        let bytes = self.inner.store.load(&rkey, stored)?;
        let v: R = pickle::from_slice(&bytes)?;
        if cache.enabled() {
            cache.insert(&digest, ty, Arc::new(v.clone()), crate::cache::typed_bytes::<R>(bytes.len()));
        }
        Ok(Some(v))
    }

    fn store<R>(&self, key: &[u8; 16], r: &R) -> Result<()>
    where
        R: Serialize + Clone + Send + Sync + 'static,
    {
        let bytes = pickle::to_vec_with_protocol(r, self.inner.store.protocol())?;
        let cost = crate::cache::typed_bytes::<R>(bytes.len());
        self.store_bytes(key, &bytes, TypeId::of::<R>(), Arc::new(r.clone()), cost)
    }

    /// Stores raw result bytes, keeping `obj` in the decoded-object cache.
    fn store_raw(&self, key: &[u8; 16], bytes: &[u8], obj: Arc<RawResult>) -> Result<()> {
        self.store_bytes(key, bytes, TypeId::of::<RawResult>(), obj, bytes.len() as u64 + 64)
    }

    /// Stores the result pickle `bytes` of a call, evicting what the limits require, and
    /// caches `obj` (its decoded form, of type `ty`, costing `cost` bytes).
    fn store_bytes(
        &self,
        key: &[u8; 16],
        bytes: &[u8],
        ty: TypeId,
        obj: crate::cache::Object,
        cost: u64,
    ) -> Result<()> {
        let store = &self.inner.store;
        store.writable()?;
        let (digest, frame) = store.frame(bytes)?;
        let size = frame.len() as u64;
        let now = now_ms();
        let rkey = self.record_key(key);
        let writer = store.index().writer();
        let op = Op::Put { space: Space::Memo, key: rkey, header: header(now, now), digest, frame, delta: None };
        store.commit(&writer, vec![op])?;
        let victims: Vec<[u8; 16]> = {
            let mut st = lock(&self.inner.state);
            if let Some(old) =
                st.lru.put(*key, Entry { digest, created: now, accessed: now, bytes: size, touched: false })
            {
                st.bytes = st.bytes.saturating_sub(old.bytes);
            }
            st.bytes += size;
            let mut victims = Vec::new();
            loop {
                let over_entries = self.inner.max_entries.is_some_and(|m| st.lru.len() as u64 > m);
                let over_bytes = self.inner.max_bytes.is_some_and(|m| st.bytes > m);
                if !(over_entries || over_bytes) || st.lru.len() <= 1 {
                    break;
                }
                match st.lru.pop_lru() {
                    Some((k, e)) => {
                        st.bytes = st.bytes.saturating_sub(e.bytes);
                        victims.push(k);
                    }
                    None => break,
                }
            }
            victims
        };
        if !victims.is_empty() {
            let ops = victims.iter().map(|k| Op::Remove { space: Space::Memo, key: self.record_key(k) }).collect();
            store.commit(&writer, ops)?;
            self.inner.evictions.fetch_add(victims.len() as u64, Ordering::Relaxed);
        }
        drop(writer);
        let cache = store.cache();
        if cache.enabled() {
            cache.insert(&digest, ty, obj, cost);
        }
        Ok(())
    }

    fn remove_calls(&self, keys: &[[u8; 16]], evicted: bool) -> Result<u64> {
        let store = &self.inner.store;
        store.writable()?;
        let writer = store.index().writer();
        let mut removed = Vec::new();
        {
            let mut st = lock(&self.inner.state);
            for k in keys {
                if let Some(e) = st.lru.pop(k) {
                    st.bytes = st.bytes.saturating_sub(e.bytes);
                    removed.push(*k);
                }
            }
        }
        let ops = removed.iter().map(|k| Op::Remove { space: Space::Memo, key: self.record_key(k) }).collect();
        store.commit(&writer, ops)?;
        if evicted {
            self.inner.evictions.fetch_add(removed.len() as u64, Ordering::Relaxed);
        }
        Ok(removed.len() as u64)
    }

    /// Forgets the stored result of the call with `args`; returns whether there was one.
    ///
    /// # Errors
    /// As for [`Memo::key`]; store errors.
    pub fn invalidate<A: Serialize + ?Sized>(&self, args: &A) -> Result<bool> {
        let key = self.call_key(args)?;
        Ok(self.remove_calls(&[key], false)? > 0)
    }

    /// Forgets every stored result of this memo.
    ///
    /// # Errors
    /// Store errors.
    pub fn clear(&self) -> Result<u64> {
        let keys: Vec<[u8; 16]> = lock(&self.inner.state).lru.iter().map(|(k, _)| *k).collect();
        self.remove_calls(&keys, false)
    }

    /// Counters and size of this memo.
    pub fn stats(&self) -> MemoStats {
        let st = lock(&self.inner.state);
        MemoStats {
            hits: self.inner.hits.load(Ordering::Relaxed),
            misses: self.inner.misses.load(Ordering::Relaxed),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            entries: st.lru.len() as u64,
            bytes: st.bytes,
        }
    }

    /// Writes the last-read times kept in memory, then syncs the store.
    ///
    /// # Errors
    /// Store errors.
    pub fn sync(&self) -> Result<()> {
        self.flush_times()?;
        self.inner.store.sync()
    }
}

impl Inner {
    fn record_key(&self, k: &[u8; 16]) -> String {
        format!("{}\0{}", self.namespace, hex(k))
    }

    /// Writes the last-read times of the calls read since the last flush (one batch).
    fn flush_times(&self) -> Result<()> {
        let touched: Vec<([u8; 16], Entry)> = {
            let mut st = lock(&self.state);
            let keys = std::mem::take(&mut st.touched);
            let mut out = Vec::with_capacity(keys.len());
            for k in keys {
                if let Some(e) = st.lru.peek_mut(&k) {
                    e.touched = false;
                    out.push((k, *e));
                }
            }
            out
        };
        if touched.is_empty() || self.store.writable().is_err() {
            return Ok(());
        }
        let updates = touched.into_iter().map(|(k, e)| (self.record_key(&k), header(e.created, e.accessed))).collect();
        self.store.index().writer().set_memo_headers(updates)?;
        self.store.mark_dirty();
        Ok(())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Best effort: the times are an eviction hint; losing them loses no result.
        let _ = self.flush_times();
    }
}

/// Removes a call's flight and wakes its waiters when the leader is done (or fails).
struct Landing<'a> {
    memo: &'a Memo,
    key: [u8; 16],
    flight: Arc<Flight>,
}

impl Drop for Landing<'_> {
    fn drop(&mut self) {
        lock(&self.memo.inner.flights).remove(&self.key);
        *lock(&self.flight.done) = true;
        self.flight.cv.notify_all();
    }
}

/// The stored length of a result: its inline frame, or its object's frame.
fn stored_len(store: &Store, stored: &Stored) -> Result<u64> {
    Ok(match stored {
        Stored::Inline { frame, .. } => frame.len() as u64,
        Stored::Object { digest } => store.index().object(digest)?.map_or(0, |r| r.stored_len),
    })
}

fn parse_call(hex_key: &str) -> Option<[u8; 16]> {
    if hex_key.len() != 32 {
        return None;
    }
    let mut k = [0u8; 16];
    for (i, b) in k.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex_key.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(k)
}
