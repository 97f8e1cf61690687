//! Tagged JSON (the conformance corpus's form). STUB, to be implemented.

use super::value::Value;
use crate::Result;

/// Writes a value as tagged JSON.
pub fn to_tagged_json(value: &Value) -> String {
    let _ = value;
    String::new()
}

/// Reads tagged JSON (plain values) into a value.
///
/// # Errors
/// [`crate::Error::Json`] naming the byte offset and the problem.
pub fn from_tagged_json(text: &str) -> Result<Value> {
    let _ = text;
    Err(crate::Error::Json { offset: 0, message: "not implemented".into() })
}
