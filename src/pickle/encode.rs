//! Encoder: [`Value`] → pickle bytes (protocols 2–5). STUB, to be implemented.

use super::value::Value;
use crate::Result;

/// The protocol [`encode`] writes by default, as CPython 3.8+.
pub const DEFAULT_PROTOCOL: u8 = 4;

/// Encodes a value with the given protocol (2–5).
///
/// # Errors
/// [`crate::Error::Encode`] for an unsupported protocol or an invalid graph.
pub fn encode(value: &Value, protocol: u8) -> Result<Vec<u8>> {
    let _ = (value, protocol);
    Err(crate::Error::Encode("not implemented".into()))
}
