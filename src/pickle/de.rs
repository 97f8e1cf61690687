//! pickle → serde. STUB, to be implemented.

use super::value::Value;
use crate::Result;

/// Deserializes any `T: DeserializeOwned` from pickle bytes.
///
/// # Errors
/// [`crate::Error::Decode`] for bad pickle bytes, [`crate::Error::Serde`] when the value
/// does not fit `T`.
pub fn from_slice<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    from_value(&super::decode(bytes)?)
}

/// Deserializes any `T: DeserializeOwned` from a decoded [`Value`].
///
/// # Errors
/// [`crate::Error::Serde`] when the value does not fit `T`.
pub fn from_value<T: serde::de::DeserializeOwned>(value: &Value) -> Result<T> {
    let _ = value;
    Err(crate::Error::Serde("not implemented".into()))
}
