//! The pickle codec: Python's pickle format, protocols 0–5 read and 2–5 written.
//!
//! Decoding never imports or executes anything: classes and functions named by a pickle
//! are kept as data ([`Node::Global`], [`Node::Object`]). Decoded values are graphs
//! ([`Value`]) so shared references and cycles survive and memory stays linear in the
//! input; no part of the codec recurses in proportion to nesting depth.
//!
//! - [`decode`] / [`decode_with`]: bytes → [`Value`], with [`Limits`].
//! - [`encode`]: [`Value`] → bytes, for plain data byte-identical to CPython's
//!   `pickle.dumps(v, protocol=N)`.
//! - [`to_vec`] / [`from_slice`]: any serde type ↔ bytes (see [`ser`] and [`de`] for the
//!   mapping).
//! - [`to_tagged_json`] / [`from_tagged_json`]: the tagged JSON of the conformance corpus.

pub(crate) mod canon;
pub(crate) mod canon_ser;
mod compat;
pub mod de;
mod decode;
mod direct;
mod emit;
pub(crate) mod encode;
mod int;
mod json;
pub mod opcodes;
mod repr;
pub mod ser;
mod value;

pub use de::{from_slice, from_value, from_value_borrowed, from_value_with};
pub use decode::{DEFAULT_LIMITS, Limits, check, check_with, decode, decode_with};
pub use encode::{DEFAULT_PROTOCOL, encode};
pub use int::{BigInt, DECIMAL_MAX_BITS, Int};
pub use json::{from_tagged_json, to_tagged_json};
pub use repr::{bytes_repr, float_repr, str_repr};
pub use ser::{to_value, to_vec, to_vec_with_protocol};
pub use value::{Construct, Global, Node, NodeId, Object, ObjectOp, PyStr, Value};

/// Test hooks of the canonical pickle (direct and reference paths); not part of the API.
#[doc(hidden)]
pub use canon_ser::testing as canon_testing;

/// Test hooks of the direct deserializer (the two paths of `from_slice` apart); not
/// part of the API.
#[doc(hidden)]
pub use direct::testing as direct_testing;
