//! serde → pickle. STUB, to be implemented.

use super::value::Value;
use crate::Result;

/// Serializes any `T: Serialize` to pickle bytes with the default protocol.
///
/// # Errors
/// [`crate::Error::Serde`] when `T` cannot be represented.
pub fn to_vec<T: serde::Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    to_vec_with_protocol(value, super::DEFAULT_PROTOCOL)
}

/// Serializes any `T: Serialize` to pickle bytes with the given protocol (2–5).
///
/// # Errors
/// [`crate::Error::Serde`] when `T` cannot be represented.
pub fn to_vec_with_protocol<T: serde::Serialize + ?Sized>(value: &T, protocol: u8) -> Result<Vec<u8>> {
    let _ = (value, protocol);
    Err(crate::Error::Serde("not implemented".into()))
}

/// Converts any `T: Serialize` to a [`Value`].
///
/// # Errors
/// [`crate::Error::Serde`] when `T` cannot be represented.
pub fn to_value<T: serde::Serialize + ?Sized>(value: &T) -> Result<Value> {
    let _ = value;
    Err(crate::Error::Serde("not implemented".into()))
}
