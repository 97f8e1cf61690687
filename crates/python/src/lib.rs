//! `pickleshelf._native`: the Rust half of the `pickleshelf` Python package.
//!
//! The Python half (`python/pickleshelf/`) gives the Pythonic API — `open`, `memoize`,
//! `loads` — on top of three things here: [`store::Store`] (a store handle, raw pickle
//! bytes in and out), [`memo::Memo`] (a memo keyed by pickled arguments) and
//! [`loads`] (safe loading: the Rust codec's decoded value built into Python objects,
//! globals only from an allow-list).
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod errors;
mod memo;
mod objects;
mod store;

use pickleshelf::pickle::{Limits, decode_with};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::IntoPy;

/// Decodes `data` with the Rust codec and builds Python objects from it, allowing only
/// the globals in `table` (`"module.name"` -> object, or `None` until `resolve(name)`
/// has imported it). See `pickleshelf.loads`.
#[pyfunction]
#[pyo3(signature = (data, table, resolve, *, max_marks=None, max_depth=None, max_int_digits=None))]
fn loads<'py>(
    py: Python<'py>,
    data: &[u8],
    table: Bound<'py, PyDict>,
    resolve: Bound<'py, PyAny>,
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
    let value =
        if data.len() > 1 << 16 { py.detach(|| decode_with(data, &limits)) } else { decode_with(data, &limits) }
            .py(py)?;
    objects::build(py, &value, &objects::Allow { table, resolve })
}

/// The call key the memo gives pickled arguments `args` in `namespace` at `version`,
/// without a store (for tests and tools).
#[pyfunction]
fn format_version() -> u32 {
    pickleshelf::FORMAT_VERSION
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::Store>()?;
    m.add_class::<memo::Memo>()?;
    m.add_function(wrap_pyfunction!(loads, m)?)?;
    m.add_function(wrap_pyfunction!(format_version, m)?)?;
    Ok(())
}
