//! The Rust backends, behind one open/put/get/close interface.
//!
//! - `pickleshelf`: the store through its public API with default settings.
//! - `pickleshelf_nosync`: the same with `Durability::ProcessCrash` (no fsync: what
//!   Python's stores give); run by default for W4 and W6 only.
//! - `sled_raw`: the same pickle bytes put and got directly in one sled tree (sled's
//!   defaults): no hashing, compression, refcounts or cache. The engine's own limit;
//!   close is `flush()` then drop.
//! - `hashmap`: an in-memory `HashMap<String, Vec<u8>>` of the same pickles, kept
//!   across close and reopen like Python's `dict_mem` (which survives in its process):
//!   the cost of the codec alone. W2 and W3 use decoded values instead (see `cases`).
//!
//! Every backend pickles on put and decodes fully on get, with the same codec.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use pickleshelf::pickle::Value;
use pickleshelf::{Durability, Shelf};
use serde::Serialize;

use super::codec::{Codec, Typed};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Pickleshelf,
    PickleshelfNosync,
    SledRaw,
    HashMap,
}

impl Backend {
    pub const ALL: [Backend; 4] =
        [Backend::Pickleshelf, Backend::PickleshelfNosync, Backend::SledRaw, Backend::HashMap];

    /// Whether the backend is pickleshelf (at either durability).
    pub fn is_shelf(self) -> bool {
        matches!(self, Backend::Pickleshelf | Backend::PickleshelfNosync)
    }

    /// Whether a run without `--backends` includes this backend for `workload`: W6 is
    /// pickleshelf's alone; `pickleshelf_nosync` runs for W4 and W6.
    pub fn runs_by_default(self, workload: &str) -> bool {
        match (workload, self) {
            ("W6", b) => b.is_shelf(),
            ("W4", _) => true,
            (_, b) => b != Backend::PickleshelfNosync,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Backend::Pickleshelf => "pickleshelf",
            Backend::PickleshelfNosync => "pickleshelf_nosync",
            Backend::SledRaw => "sled_raw",
            Backend::HashMap => "hashmap",
        }
    }

    pub fn parse(s: &str) -> Option<Backend> {
        Backend::ALL.into_iter().find(|b| b.name() == s)
    }
}

pub enum Store {
    Shelf(Shelf),
    Sled(sled::Db),
    Mem(HashMap<String, Vec<u8>>),
}

/// What outlives a close: the in-memory map (nothing for the persistent stores).
#[derive(Default)]
pub struct Closed(Option<HashMap<String, Vec<u8>>>);

impl Store {
    /// Opens (creating) the backend's store under `dir`.
    pub fn open(backend: Backend, dir: &Path, closed: Closed) -> Result<Store> {
        Ok(match backend {
            Backend::Pickleshelf | Backend::PickleshelfNosync => Store::Shelf(retrying_lock(|| {
                let nosync = backend == Backend::PickleshelfNosync || process_crash_durability();
                let durability = if nosync { Durability::ProcessCrash } else { Durability::PowerLoss };
                Shelf::builder(dir.join("store")).durability(durability).open().context("Shelf::open")
            })?),
            Backend::SledRaw => {
                Store::Sled(retrying_lock(|| sled::Config::new().path(dir.join("sled")).open().context("sled open"))?)
            }
            Backend::HashMap => Store::Mem(closed.0.unwrap_or_default()),
        })
    }

    /// Pickles a value graph and stores it.
    pub fn put_value(&mut self, codec: Codec, key: &str, v: &Value) -> Result<()> {
        match (self, codec) {
            (Store::Shelf(s), Codec::Library) => s.insert_value(key, v).context("insert_value"),
            (Store::Shelf(s), Codec::Reference) => s.insert_pickle(key, &codec.encode(v)?).context("insert_pickle"),
            (Store::Sled(db), _) => db.insert(key.as_bytes(), codec.encode(v)?).map(drop).context("sled insert"),
            (Store::Mem(m), _) => {
                m.insert(key.to_owned(), codec.encode(v)?);
                Ok(())
            }
        }
    }

    /// Stores a typed value through serde (`reference` gives its pickle for the fallback).
    pub fn put_typed<T: Serialize>(
        &mut self,
        codec: Codec,
        key: &str,
        t: &T,
        pickle_of: impl FnOnce(&T) -> Result<Vec<u8>>,
    ) -> Result<()> {
        match (self, codec) {
            (Store::Shelf(s), Codec::Library) => s.insert(key, t).context("insert"),
            (Store::Shelf(s), Codec::Reference) => s.insert_pickle(key, &pickle_of(t)?).context("insert_pickle"),
            (Store::Sled(db), _) => db.insert(key.as_bytes(), pickle_of(t)?).map(drop).context("sled insert"),
            (Store::Mem(m), _) => {
                m.insert(key.to_owned(), pickle_of(t)?);
                Ok(())
            }
        }
    }

    /// The value under `key`, decoded into `T`.
    pub fn get_typed<T: Typed>(&self, codec: Codec, key: &str) -> Result<Option<T>> {
        match (self, codec) {
            (Store::Shelf(s), Codec::Library) => s.get::<T>(key).context("get"),
            (Store::Shelf(s), Codec::Reference) => match s.get_value(key).context("get_value")? {
                Some(v) => T::from_graph(&v).map(Some).context("unexpected shape"),
                None => Ok(None),
            },
            (Store::Sled(db), _) => match db.get(key.as_bytes()).context("sled get")? {
                Some(b) => codec.decode_typed(&b).map(Some),
                None => Ok(None),
            },
            (Store::Mem(m), _) => match m.get(key) {
                Some(b) => codec.decode_typed(b).map(Some),
                None => Ok(None),
            },
        }
    }

    /// The pickleshelf handle, for the APIs only it has (cache, memo).
    pub fn shelf(&self) -> Option<&Shelf> {
        match self {
            Store::Shelf(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key`, decoded into a graph.
    pub fn get_value(&self, key: &str) -> Result<Option<Value>> {
        let decode = |b: &[u8]| pickleshelf::pickle::decode(b).context("decode");
        match self {
            Store::Shelf(s) => s.get_value(key).context("get_value"),
            Store::Sled(db) => db.get(key.as_bytes()).context("sled get")?.map(|b| decode(&b)).transpose(),
            Store::Mem(m) => m.get(key).map(|b| decode(b)).transpose(),
        }
    }

    /// Closes: the store's own close (pickleshelf: `close`, which syncs; sled: `flush`,
    /// then drop).
    pub fn close(self) -> Result<Closed> {
        match self {
            Store::Shelf(s) => {
                s.close().context("close")?;
                Ok(Closed(None))
            }
            Store::Sled(db) => {
                db.flush().context("sled flush")?;
                drop(db);
                Ok(Closed(None))
            }
            Store::Mem(m) => Ok(Closed(Some(m))),
        }
    }
}

/// Set by `--durability process-crash`: pickleshelf then opens with
/// `Durability::ProcessCrash` (sync flushes without fsync) instead of the default.
pub static PROCESS_CRASH: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

fn process_crash_durability() -> bool {
    PROCESS_CRASH.load(Ordering::Relaxed)
}

/// How many times an open found sled's file lock still held (see [`retrying_lock`]).
pub static LOCK_RETRIES: AtomicU64 = AtomicU64::new(0);

/// Runs `open`, retrying for up to 5 s while sled reports its file lock as held: sled 0.34
/// releases the lock only when its background threads let go of the file, which can be a
/// moment after the last handle is dropped, so an open right after a close can fail. The
/// wait counts in the open's time; the retries are reported (`lock_retries`).
fn retrying_lock<T>(open: impl Fn() -> Result<T>) -> Result<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match open() {
            Err(e) if format!("{e:#}").contains("could not acquire lock") && Instant::now() < deadline => {
                LOCK_RETRIES.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_micros(200));
            }
            other => return other,
        }
    }
}

/// Fails with the key when a value is missing.
pub fn present<T>(v: Option<T>, key: &str) -> Result<T> {
    match v {
        Some(v) => Ok(v),
        None => bail!("key {key:?} is missing"),
    }
}
