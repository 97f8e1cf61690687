//! `pickleshelf._native`: the Rust half of the `pickleshelf` Python package.
//!
//! The Python half (`python/pickleshelf/`) gives the Pythonic API — `open`, `memoize`,
//! `loads` — on top of three things here: [`store::Store`] (a store handle, raw pickle
//! bytes in and out), [`memo::Memo`] (a memo keyed by pickled arguments) and
//! [`loads`] (safe loading: the Rust codec's decoded value built into Python objects,
//! globals only from an allow-list).
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod direct;
mod errors;
mod memo;
mod objects;
mod store;

use pickleshelf::pickle::{Limits, decode_with};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyDict;

use crate::errors::IntoPy;

/// The default allow-table and resolver of `pickleshelf._safe`, fetched once.
static DEFAULTS: PyOnceLock<(Py<PyDict>, Py<PyAny>)> = PyOnceLock::new();

fn defaults(py: Python<'_>) -> PyResult<(Bound<'_, PyDict>, Bound<'_, PyAny>)> {
    let (t, r) = DEFAULTS.get_or_try_init(py, || -> PyResult<_> {
        let m = py.import("pickleshelf._safe")?;
        let table = m.getattr("_DEFAULT_TABLE")?.cast_into::<PyDict>()?;
        Ok((table.unbind(), m.getattr("_resolve")?.unbind()))
    })?;
    Ok((t.bind(py).clone(), r.bind(py).clone()))
}

/// Loads a pickle without running code it names.
///
/// The Rust codec decodes `data` (any protocol 0-5) and Python objects are built
/// directly: None, bools, ints, floats, strs, bytes, bytearrays, lists, tuples, dicts,
/// sets and frozensets always; a global (a class or function the pickle names, e.g. to
/// rebuild a datetime) only when it is in `allow`. Shared objects stay shared and cycles
/// stay cycles.
///
/// `allow` is an iterable of "module.qualname" strings, classes or functions; by
/// default pickleshelf.DEFAULT_ALLOW (datetime's types, decimal.Decimal,
/// fractions.Fraction, uuid.UUID, collections.OrderedDict/deque/Counter/defaultdict,
/// complex and the built-in containers). To add to it:
/// `allow=pickleshelf.DEFAULT_ALLOW | {"mymodule.Point"}`. Allowed classes are made as
/// pickle makes them (called with the decoded arguments, or cls.__new__ and then
/// __setstate__ or a __dict__ update), so allow only classes you trust to do nothing
/// more than build a value.
///
/// Raises pickleshelf.UnpicklingError (a subclass of pickle.UnpicklingError) for
/// malformed input (naming the byte offset), for a limit exceeded, and for a global that
/// is not allowed (naming it as module.name): nothing the pickle names has then been
/// imported or called. The keyword limits are the Rust codec's (defaults: 100,000 open
/// marks, nesting depth 100,000, 4,300 digits in a protocol-0 int).
#[pyfunction]
#[pyo3(signature = (data, allow=None, *, max_marks=None, max_depth=None, max_int_digits=None))]
fn loads<'py>(
    py: Python<'py>,
    data: &[u8],
    allow: Option<Bound<'py, PyAny>>,
    max_marks: Option<usize>,
    max_depth: Option<usize>,
    max_int_digits: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let mut limits = Limits::default();
    if let Some(n) = max_marks {
        limits = limits.max_marks(n);
    }
    if let Some(n) = max_depth {
        limits = limits.max_depth(n);
    }
    if let Some(n) = max_int_digits {
        limits = limits.max_int_digits(n);
    }
    if let Some(obj) = direct::load(py, data, &limits) {
        return Ok(obj);
    }
    let (mut table, resolve) = defaults(py)?;
    if let Some(allow) = allow {
        table = py.import("pickleshelf._safe")?.getattr("allow_table")?.call1((allow,))?.cast_into::<PyDict>()?;
    }
    load_with(py, data, &limits, table, resolve)
}

/// Loads `data` through the decoded value, allowing the globals of `table`.
fn load_with<'py>(
    py: Python<'py>,
    data: &[u8],
    limits: &Limits,
    table: Bound<'py, PyDict>,
    resolve: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let value = if data.len() > 1 << 16 { py.detach(|| decode_with(data, limits)) } else { decode_with(data, limits) }
        .map_err(pickleshelf::Error::from)
        .py(py)?;
    objects::build(py, &value, &objects::Allow { table, resolve })
}

/// Loads `data` with an allow-table already made (`pickleshelf.open(..., safe=True)`).
#[pyfunction]
fn loads_with<'py>(
    py: Python<'py>,
    data: &[u8],
    table: Bound<'py, PyDict>,
    resolve: Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    let limits = Limits::default();
    if let Some(obj) = direct::load(py, data, &limits) {
        return Ok(obj);
    }
    load_with(py, data, &limits, table, resolve)
}

/// The on-disk format version of the stores this build reads and writes.
#[pyfunction]
fn format_version() -> u32 {
    pickleshelf::FORMAT_VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::Store>()?;
    m.add_class::<memo::Memo>()?;
    m.add_function(wrap_pyfunction!(loads, m)?)?;
    m.add_function(wrap_pyfunction!(loads_with, m)?)?;
    m.add_function(wrap_pyfunction!(format_version, m)?)?;
    Ok(())
}
