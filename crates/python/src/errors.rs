//! pickleshelf errors as Python exceptions.
//!
//! Invariant: every `pickleshelf::Error` reaching Python becomes an instance of one of the
//! classes in `pickleshelf/_errors.py` (or a built-in `OSError` / `ValueError`), carrying
//! the Rust error's one-line message; nothing panics on the way.

use pickleshelf::Error;
use pyo3::exceptions::{PyFileExistsError, PyFileNotFoundError, PyOSError, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// A `pickleshelf._errors` exception of class `name` with `message`.
pub fn raise(py: Python<'_>, name: &str, message: String) -> PyErr {
    let class = py.import("pickleshelf._errors").and_then(|m| m.getattr(name));
    match class {
        Ok(class) => match class.call1((message.clone(),)) {
            Ok(instance) => PyErr::from_value(instance),
            Err(e) => e,
        },
        // Only when the package is broken (its Python half missing).
        Err(_) => PyRuntimeError::new_err(format!("{name}: {message}")),
    }
}

/// The Python exception for a store or codec error.
pub fn to_py(py: Python<'_>, e: Error) -> PyErr {
    let message = e.to_string();
    match &e {
        Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(message)
        }
        Error::Io { .. } => PyOSError::new_err(message),
        // A path that exists and is no store: an OSError, as for any path that cannot be opened.
        Error::NotAStore { .. } => PyFileExistsError::new_err(message),
        Error::Config(_) => PyValueError::new_err(message),
        Error::Pickle(pickleshelf::pickle::Error::Decode { .. }) => raise(py, "UnpicklingError", message),
        Error::Locked { .. } => raise(py, "LockedError", message),
        Error::ReadOnly { .. } => raise(py, "ReadOnlyError", message),
        Error::AuthKey { .. } => raise(py, "AuthKeyError", message),
        Error::Corrupted { .. } | Error::CorruptedObject { .. } => raise(py, "CorruptionError", message),
        Error::InvalidKey { .. } => raise(py, "InvalidKeyError", message),
        Error::Checkpoint { .. } => raise(py, "CheckpointError", message),
        _ => raise(py, "Error", message),
    }
}

/// Converts a store result, attached to Python.
pub trait IntoPy<T> {
    /// The value, or the Python exception for the error.
    fn py(self, py: Python<'_>) -> PyResult<T>;
}

impl<T> IntoPy<T> for pickleshelf::Result<T> {
    fn py(self, py: Python<'_>) -> PyResult<T> {
        self.map_err(|e| to_py(py, e))
    }
}
