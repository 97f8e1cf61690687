//! `_native.Memo`: a persistent memo keyed by pickled arguments, results as pickle bytes.
//!
//! Invariant: keys are the Rust memo's (`pickleshelf::memo` documents the recipe), so
//! Python and Rust share results; the GIL is released while waiting for, reading or
//! storing a result, and held only to run the function.

use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyDict, PyTuple};

use crate::errors::IntoPy;

/// One memoized function's results (see `pickleshelf.memoize`).
#[pyclass(module = "pickleshelf._native", frozen)]
pub struct Memo {
    memo: pickleshelf::Memo,
}

/// `pickle.dumps` and `pickle.loads`, fetched once.
static PICKLE: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

fn pickle_fns(py: Python<'_>) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    let (d, l) = PICKLE.get_or_try_init(py, || -> PyResult<_> {
        let m = py.import("pickle")?;
        Ok((m.getattr("dumps")?.unbind(), m.getattr("loads")?.unbind()))
    })?;
    Ok((d.bind(py).clone(), l.bind(py).clone()))
}

/// The tag between a call's positional arguments and its keyword arguments in its key.
const KWARGS_TAG: &str = "__pickleshelf.kwargs__";
/// Protocol of argument pickles (any protocol gives the same key; 5 decodes fastest).
const ARGS_PROTOCOL: u8 = 5;

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

    /// `func(*args, **kwargs)`, memoized: the arguments (with keyword arguments, as
    /// `args + ("__pickleshelf.kwargs__", kwargs)`) are pickled for the key, a stored
    /// result is unpickled afresh, and a computed one is pickled with `protocol` and
    /// stored. Exceptions raised by `func` propagate; nothing is stored then.
    #[pyo3(signature = (func, protocol, args, kwargs=None))]
    fn call_function<'py>(
        &self,
        py: Python<'py>,
        func: Bound<'py, PyAny>,
        protocol: u8,
        args: Bound<'py, PyTuple>,
        kwargs: Option<Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (dumps, loads) = pickle_fns(py)?;
        let kwargs = kwargs.filter(|k| !k.is_empty());
        let key_args = match &kwargs {
            None => args.clone(),
            Some(k) => {
                let mut all: Vec<Bound<'py, PyAny>> = args.iter().collect();
                all.push(pyo3::types::PyString::new(py, KWARGS_TAG).into_any());
                all.push(k.clone().into_any());
                PyTuple::new(py, all)?
            }
        };
        let pickled = dumps.call1((key_args, ARGS_PROTOCOL)).map_err(|e| {
            let name = func.getattr("__qualname__").map(|n| n.to_string()).unwrap_or_default();
            PyTypeError::new_err(format!("arguments of memoized {name} cannot be pickled: {e}"))
        })?;
        let pickled = pickled.cast_into::<PyBytes>()?;
        let key = pickled.as_bytes();
        let (func, args) = (func.unbind(), args.unbind());
        let kwargs = kwargs.map(Bound::unbind);
        let dumps_ref = dumps.unbind();
        let memo = &self.memo;
        let out = py
            .detach(|| {
                memo.get_or_compute_pickle(key, || {
                    Python::attach(|py| {
                        let r = func.bind(py).call(args.bind(py), kwargs.as_ref().map(|k| k.bind(py)))?;
                        dumps_ref.bind(py).call1((r, protocol))?.extract::<Vec<u8>>()
                    })
                })
            })
            .py(py)?;
        let bytes = out?;
        loads.call1((PyBytes::new(py, &bytes),))
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
