//! `_native.Memo`: a persistent memo keyed by pickled arguments, results as pickle bytes.
//!
//! Invariant: keys are the Rust memo's (`pickleshelf::memo` documents the recipe), so
//! Python and Rust share results; the GIL is released while waiting for, reading or
//! storing a result, and held only to run the function.

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::IntoPy;

/// One memoized function's results (see `pickleshelf.memoize`).
#[pyclass(module = "pickleshelf._native", frozen)]
pub struct Memo {
    memo: pickleshelf::Memo,
}

impl Memo {
    pub fn new(memo: pickleshelf::Memo) -> Memo {
        Memo { memo }
    }
}

#[pymethods]
impl Memo {
    /// The stored result for the pickled argument tuple `args`, or `compute()`'s (pickle
    /// bytes), which is stored. Equal concurrent calls compute once; an exception raised
    /// by `compute` propagates and nothing is stored.
    fn call<'py>(&self, py: Python<'py>, args: &[u8], compute: Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let compute = compute.unbind();
        let memo = &self.memo;
        let out = py
            .detach(|| {
                memo.get_or_compute_pickle(args, || {
                    Python::attach(|py| compute.call0(py).and_then(|r| r.extract::<Vec<u8>>(py)))
                })
            })
            .py(py)?;
        match out {
            Ok(bytes) => Ok(PyBytes::new(py, &bytes)),
            Err(e) => Err(e),
        }
    }

    /// The stored result for the pickled arguments `args`, or `None`.
    fn get<'py>(&self, py: Python<'py>, args: &[u8]) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let memo = &self.memo;
        Ok(py.detach(|| memo.get_pickle(args)).py(py)?.map(|b| PyBytes::new(py, &b)))
    }

    /// The call key of the pickled arguments `args` (32 hex digits).
    fn key(&self, py: Python<'_>, args: &[u8]) -> PyResult<String> {
        let memo = &self.memo;
        py.detach(|| memo.key_of_pickle(args)).py(py)
    }

    /// Forgets every stored result; how many there were.
    fn clear(&self, py: Python<'_>) -> PyResult<u64> {
        let memo = &self.memo;
        py.detach(|| memo.clear()).py(py)
    }

    /// Counters: hits, misses, evictions, entries, bytes.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.memo.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("entries", s.entries)?;
        d.set_item("bytes", s.bytes)?;
        Ok(d)
    }

    /// Writes the last-read times and syncs the store.
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let memo = &self.memo;
        py.detach(|| memo.sync()).py(py)
    }
}
