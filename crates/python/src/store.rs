//! `_native.Store`: a pickleshelf store handle for the Python package, raw pickle bytes
//! in and out.
//!
//! Invariant: the GIL is released around every store operation (`Python::detach`), and a
//! closed handle raises `ValueError` for every operation but `close`.

use std::sync::{PoisonError, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use pickleshelf::{Batch, Change, ChangeKind, CheckpointInfo, Shelf};
use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

use crate::errors::IntoPy;
use crate::memo::Memo;
use crate::objects::{Allow, build};

/// An open store (see `pickleshelf.open` for the Python API built on it).
#[pyclass(module = "pickleshelf._native", frozen, weakref)]
pub struct Store {
    shelf: RwLock<Option<Shelf>>,
    path: String,
}

fn closed() -> PyErr {
    PyValueError::new_err("invalid operation on closed shelf")
}

fn change_kind(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    }
}

fn changes<'py>(py: Python<'py>, list: Vec<Change>) -> PyResult<Bound<'py, PyList>> {
    let out = PyList::empty(py);
    for c in list {
        out.append((c.key, change_kind(c.kind)))?;
    }
    Ok(out)
}

fn checkpoint_info<'py>(py: Python<'py>, c: &CheckpointInfo) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("name", &c.name)?;
    let created = c.created.duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    d.set_item("created", created)?;
    d.set_item("keys", c.keys)?;
    d.set_item("bytes", c.bytes)?;
    Ok(d)
}

impl Store {
    /// A clone of the handle (cheap), or `ValueError` once closed.
    pub fn shelf(&self) -> PyResult<Shelf> {
        self.shelf.read().unwrap_or_else(PoisonError::into_inner).clone().ok_or_else(closed)
    }
}

#[pymethods]
impl Store {
    /// Opens (or creates) the store in directory `path`.
    #[new]
    #[pyo3(signature = (path, *, read_only=false, create=true, protocol=None, auth_key=None, cache_bytes=None,
        cache_entries=None, zstd_level=None, fsync=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: String,
        read_only: bool,
        create: bool,
        protocol: Option<u8>,
        auth_key: Option<Vec<u8>>,
        cache_bytes: Option<u64>,
        cache_entries: Option<u64>,
        zstd_level: Option<i32>,
        fsync: bool,
    ) -> PyResult<Store> {
        let mut b = Shelf::builder(&path).read_only(read_only).create(create);
        if let Some(p) = protocol {
            b = b.protocol(p);
        }
        if let Some(k) = auth_key {
            b = b.auth_key(k);
        }
        if let Some(n) = cache_bytes {
            b = b.cache_bytes(n);
        }
        if let Some(n) = cache_entries {
            b = b.cache_entries(n);
        }
        if let Some(l) = zstd_level {
            b = b.zstd_level(l);
        }
        if !fsync {
            b = b.durability(pickleshelf::Durability::ProcessCrash);
        }
        let shelf = py.detach(|| b.open()).py(py)?;
        Ok(Store { shelf: RwLock::new(Some(shelf)), path })
    }

    /// Another handle on the same open store (the store closes when every handle has
    /// closed); `ValueError` when this one is closed.
    fn share(&self) -> PyResult<Store> {
        Ok(Store { shelf: RwLock::new(Some(self.shelf()?)), path: self.path.clone() })
    }

    /// The store's directory.
    #[getter]
    fn path(&self) -> &str {
        &self.path
    }

    /// True once closed.
    #[getter]
    fn closed(&self) -> bool {
        self.shelf.read().unwrap_or_else(PoisonError::into_inner).is_none()
    }

    /// The pickle bytes stored under `key`; `KeyError` when there are none.
    fn get<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyBytes>> {
        let shelf = self.shelf()?;
        match py.detach(|| shelf.get_pickle(key)).py(py)? {
            Some(bytes) => Ok(PyBytes::new(py, &bytes)),
            None => Err(PyKeyError::new_err(key.to_owned())),
        }
    }

    /// The object stored under `key`, built by safe loading (see `pickleshelf.loads`):
    /// plain data from the stored bytes, anything else from the store's decoded-object
    /// cache; `KeyError` when there is none.
    fn get_safe<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        table: Bound<'py, PyDict>,
        resolve: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let shelf = self.shelf()?;
        // Plain data: straight from the bytes. Anything else: from the decoded value,
        // which the store's decoded-object cache keeps.
        let Some(bytes) = py.detach(|| shelf.get_pickle(key)).py(py)? else {
            return Err(PyKeyError::new_err(key.to_owned()));
        };
        if let Some(obj) = crate::direct::load(py, &bytes, &pickleshelf::pickle::Limits::default()) {
            return Ok(obj);
        }
        match py.detach(|| shelf.get_value_arc(key)).py(py)? {
            Some(value) => build(py, &value, &Allow { table, resolve }),
            None => Err(PyKeyError::new_err(key.to_owned())),
        }
    }

    /// The pickle bytes stored under `key` in checkpoint `name`, or `None`.
    fn get_at<'py>(&self, py: Python<'py>, name: &str, key: &str) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let shelf = self.shelf()?;
        Ok(py.detach(|| shelf.get_pickle_at(name, key)).py(py)?.map(|b| PyBytes::new(py, &b)))
    }

    /// Stores pickle bytes under `key`, byte-exact (they must decode).
    fn set(&self, py: Python<'_>, key: &str, value: &[u8]) -> PyResult<()> {
        let shelf = self.shelf()?;
        py.detach(|| shelf.insert_pickle(key, value)).py(py)
    }

    /// Removes `key`; `KeyError` when it is missing.
    fn delete(&self, py: Python<'_>, key: &str) -> PyResult<()> {
        let shelf = self.shelf()?;
        if py.detach(|| shelf.remove(key)).py(py)? { Ok(()) } else { Err(PyKeyError::new_err(key.to_owned())) }
    }

    /// Whether `key` is stored.
    fn contains(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let shelf = self.shelf()?;
        py.detach(|| shelf.contains_key(key)).py(py)
    }

    /// Number of keys.
    fn len(&self, py: Python<'_>) -> PyResult<usize> {
        let shelf = self.shelf()?;
        py.detach(|| shelf.len()).py(py)
    }

    /// All keys, in order (a snapshot).
    fn keys(&self, py: Python<'_>) -> PyResult<Vec<String>> {
        let shelf = self.shelf()?;
        py.detach(|| shelf.keys().collect::<pickleshelf::Result<Vec<String>>>()).py(py)
    }

    /// The hex digest of the value stored under `key`, or `None`.
    fn digest(&self, py: Python<'_>, key: &str) -> PyResult<Option<String>> {
        let shelf = self.shelf()?;
        Ok(py.detach(|| shelf.digest(key)).py(py)?.map(|d| d.to_string()))
    }

    /// Applies `(key, pickle bytes or None)` changes all together, or none of them.
    fn apply(&self, py: Python<'_>, ops: Vec<(String, Option<Vec<u8>>)>) -> PyResult<()> {
        let shelf = self.shelf()?;
        py.detach(|| {
            let mut batch = Batch::new();
            for (key, value) in &ops {
                match value {
                    Some(v) => batch.insert_pickle(key, v)?,
                    None => batch.remove(key),
                }
            }
            shelf.apply(batch)
        })
        .py(py)
    }

    /// Makes every change so far durable.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let shelf = self.shelf()?;
        py.detach(|| shelf.sync()).py(py)
    }

    /// Syncs and lets go of the store (a no-op when closed already).
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let taken = self.shelf.write().unwrap_or_else(PoisonError::into_inner).take();
        match taken {
            // Other handles of this process (another `open` of the store, a memo) keep it
            // open: this one is let go, as Python's `close` promises.
            Some(shelf) => match py.detach(|| shelf.close()) {
                Err(pickleshelf::Error::StillOpen { .. }) => Ok(()),
                other => other.py(py),
            },
            None => Ok(()),
        }
    }

    /// Records every key's current value under checkpoint `name`.
    fn checkpoint<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyDict>> {
        let shelf = self.shelf()?;
        let info = py.detach(|| shelf.checkpoint(name)).py(py)?;
        checkpoint_info(py, &info)
    }

    /// The checkpoints, oldest first.
    fn checkpoints<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyDict>>> {
        let shelf = self.shelf()?;
        let list = py.detach(|| shelf.checkpoints()).py(py)?;
        list.iter().map(|c| checkpoint_info(py, c)).collect()
    }

    /// Puts every key back as checkpoint `name` recorded it; the changes made.
    fn restore<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyList>> {
        let shelf = self.shelf()?;
        let list = py.detach(|| shelf.restore(name)).py(py)?;
        changes(py, list)
    }

    /// The keys that differ from checkpoint `name` to checkpoint `to` (or to now).
    #[pyo3(signature = (name, to=None))]
    fn diff<'py>(&self, py: Python<'py>, name: &str, to: Option<&str>) -> PyResult<Bound<'py, PyList>> {
        let shelf = self.shelf()?;
        let list = py
            .detach(|| match to {
                Some(t) => shelf.diff(name, t),
                None => shelf.changes_since(name),
            })
            .py(py)?;
        changes(py, list)
    }

    /// Deletes checkpoint `name`; whether it existed.
    fn delete_checkpoint(&self, py: Python<'_>, name: &str) -> PyResult<bool> {
        let shelf = self.shelf()?;
        py.detach(|| shelf.delete_checkpoint(name)).py(py)
    }

    /// Reads and checks everything; a report.
    fn verify<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let shelf = self.shelf()?;
        let r = py.detach(|| shelf.verify()).py(py)?;
        let d = PyDict::new(py);
        d.set_item("ok", r.is_ok())?;
        d.set_item("keys", r.keys)?;
        d.set_item("objects", r.objects)?;
        d.set_item("files", r.files)?;
        d.set_item("checkpoints", r.checkpoints)?;
        d.set_item("pages", r.pages)?;
        d.set_item("problems", r.problems)?;
        Ok(d)
    }

    /// Counts and sizes of the store.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let shelf = self.shelf()?;
        let s = py.detach(|| shelf.stats()).py(py)?;
        let c = shelf.cache_stats();
        let d = PyDict::new(py);
        d.set_item("format_version", s.format_version)?;
        d.set_item("generation", s.generation)?;
        d.set_item("keys", s.keys)?;
        d.set_item("memo_entries", s.memo_entries)?;
        d.set_item("checkpoints", s.checkpoints)?;
        d.set_item("objects", s.objects)?;
        d.set_item("logical_bytes", s.logical_bytes)?;
        d.set_item("unique_bytes", s.unique_bytes)?;
        d.set_item("stored_bytes", s.stored_bytes)?;
        d.set_item("disk_bytes", s.disk_bytes)?;
        d.set_item("dedup_ratio", s.dedup_ratio())?;
        d.set_item("compression_ratio", s.compression_ratio())?;
        let cache = PyDict::new(py);
        cache.set_item("hits", c.hits)?;
        cache.set_item("misses", c.misses)?;
        cache.set_item("evictions", c.evictions)?;
        cache.set_item("entries", c.entries)?;
        cache.set_item("bytes", c.bytes)?;
        let (budget, max_entries) = shelf.cache_budget();
        cache.set_item("budget_bytes", budget)?;
        cache.set_item("budget_entries", max_entries)?;
        d.set_item("cache", cache)?;
        Ok(d)
    }

    /// Sets the decoded-object cache's budget (bytes, entries); 0 disables it.
    fn set_cache_budget(&self, bytes: u64, entries: u64) -> PyResult<()> {
        self.shelf()?.set_cache_budget(bytes, entries);
        Ok(())
    }

    /// The memo of `namespace` (see `pickleshelf.memoize`).
    #[pyo3(signature = (namespace, version=None, ttl=None, max_entries=None, max_bytes=None))]
    fn memo(
        &self,
        py: Python<'_>,
        namespace: &str,
        version: Option<String>,
        ttl: Option<f64>,
        max_entries: Option<u64>,
        max_bytes: Option<u64>,
    ) -> PyResult<Memo> {
        let shelf = self.shelf()?;
        let mut b = shelf.memo_builder(namespace);
        if let Some(v) = version {
            b = b.version(v);
        }
        if let Some(t) = ttl {
            let t = Duration::try_from_secs_f64(t).map_err(|e| PyValueError::new_err(format!("ttl {t}: {e}")))?;
            b = b.ttl(t);
        }
        if let Some(n) = max_entries {
            b = b.max_entries(n);
        }
        if let Some(n) = max_bytes {
            b = b.max_bytes(n);
        }
        let memo = py.detach(|| b.open()).py(py)?;
        Ok(Memo::new(memo))
    }
}
