//! # pickleshelf-pickle
//!
//! Python's pickle format in safe Rust: protocols 0–5 read, 2–5 written, with output
//! byte-identical to CPython's `pickle.dumps` for plain data. A pickle is *data* here,
//! never a program: nothing it names is imported, called or executed, and malformed or
//! hostile input gets an error naming the byte offset and the problem — never a panic,
//! and never an allocation out of proportion to the input.
//!
//! ```
//! use pickleshelf_pickle::{self as pickle, Node};
//!
//! // Python: a = [1]; pickle.dumps([a, a], protocol=4)
//! let bytes = b"\x80\x04\x95\x0c\x00\x00\x00\x00\x00\x00\x00]\x94(]\x94K\x01ah\x01e.";
//! let v = pickle::decode(bytes)?;
//! let items = v.as_seq(v.root()).unwrap_or_default();
//! assert_eq!(items[0], items[1]);                          // one list, reached twice
//! assert_eq!(v.to_string(), "[[1], [1]]");
//! assert_eq!(pickle::encode(&v, 4)?, bytes);               // the same bytes back
//!
//! // Python: a = []; a.append(a)  — a cycle is a node holding its own id
//! let cyclic = pickle::decode(b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00]\x94h\x00a.")?;
//! assert!(matches!(cyclic.root_node(), Node::List(items) if items == &[cyclic.root()]));
//!
//! // Python: datetime.date(2024, 1, 2) — kept as data, never constructed
//! let date = pickle::decode(b"\x80\x04\x95 \x00\x00\x00\x00\x00\x00\x00\x8c\x08datetime\x94\x8c\x04date\x94\x93\x94C\x04\x07\xe8\x01\x02\x94\x85\x94R\x94.")?;
//! assert_eq!(date.object_type(date.root()), Some(("datetime", "date")));
//!
//! // Any serde type, both ways: {'name': 'Kim', 'scores': [1.5, 2.5]}
//! #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
//! struct Rec { name: String, scores: Vec<f64> }
//! let rec = Rec { name: "Kim".into(), scores: vec![1.5, 2.5] };
//! let bytes = pickle::to_vec(&rec)?;                       // what pickle.dumps writes
//! assert_eq!(pickle::from_slice::<Rec>(&bytes)?, rec);
//! # Ok::<(), pickleshelf_pickle::Error>(())
//! ```
//!
//! ## What it is
//!
//! - [`decode`] / [`decode_with`]: bytes → [`Value`], all 68 opcodes of protocols 0–5,
//!   bounded by [`Limits`]; [`check`] validates without keeping the value.
//! - [`encode`]: [`Value`] → bytes (protocols 2–5), for plain data byte-identical to
//!   CPython's `pickle.dumps(v, protocol=N)`, memo numbering and frames included.
//! - [`to_vec`] / [`from_slice`]: any serde type ↔ bytes. `from_slice` reads plain data
//!   straight from the opcodes, without building a graph; the mapping is in [`ser`] and
//!   [`de`]. [`to_value`] / [`from_value`] go through a [`Value`].
//! - [`to_tagged_json`] / [`from_tagged_json`]: a language-neutral JSON view.
//! - [`to_plain_json`] / [`from_plain_json`]: the JSON Python's `json` module writes and
//!   reads, for values JSON can hold.
//! - [`canonical_pickle`] / [`canonical_pickle_of`]: bytes that depend only on a value's
//!   logical content (dicts and sets sorted), for keys of memoized calls.
//! - [`str_repr`], [`float_repr`], [`bytes_repr`] and `Display` on [`Value`]: Python's
//!   `repr`.
//! - [`pytypes`]: Python's everyday types (`datetime`, `Decimal`, `UUID`, `Fraction`,
//!   `complex`, the `collections`, enum members, `pathlib` paths) as Rust structs, read
//!   from a [`Value`] and written into one as CPython pickles them; [`serde_types`]
//!   carries them through serde, with adapters for `chrono`, `rust_decimal` and `uuid`
//!   (features of the same names).
//!
//! A decoded pickle is a **graph**: a [`Value`] is an arena of [`Node`]s addressed by
//! [`NodeId`], and a memo fetch gives the same id again, never a copy. So shared
//! references stay shared, cycles are representable, dicts keep their insertion order,
//! and memory stays linear in the input (a 60-level
//! chain of tuples holding the previous one twice is 61 nodes, not 2^60 leaves). No
//! part of the codec recurses in proportion to nesting depth, except the serde bridges,
//! which stop at a depth limit. Objects the codec does not know natively (class
//! instances, `datetime`, `Decimal`, ...) are [`Node::Object`]s: the global that built
//! them and the calls and state the pickle applied, so they can be inspected and
//! written back unchanged.
//!
//! ## Dict keys and set elements
//!
//! A decoded dict or set holds what CPython's `pickle.loads` holds. Keys Python finds
//! equal are one entry — set twice, or equal across types (`1 == 1.0 == True == 1+0j`,
//! `0 == -0.0 == False`, `(1, 2) == (1.0, 2)`, frozensets compared as sets, a NaN equal
//! only to the same object): the first key object stays in its place and takes the
//! value set last; a repeated set element is dropped. A key CPython cannot hash is an
//! error naming the opcode and offset ([`DecodeErrorKind::Unhashable`]): a list, dict,
//! set or bytearray, a `collections.OrderedDict`, `defaultdict`, `deque` or `Counter`,
//! or a tuple or frozenset holding one.
//!
//! The codec knows the hash and `==` of the native kinds only (`None`, numbers, `str`,
//! `bytes`, tuples and frozensets of those, globals by module and name). An object kept
//! as data — a class instance, a `datetime`, a persistent id — is accepted as a key and
//! compared by identity: whether its class is hashable, and which other keys its
//! `__eq__` would call equal, cannot be known without running it. So a pickle whose keys
//! are two equal `datetime`s made separately decodes to two entries where CPython has
//! one. (Pickles CPython writes never repeat a key, so this only matters for pickles
//! made by hand or by other writers.)
//!
//! ```
//! use pickleshelf_pickle as pickle;
//!
//! // {1: 'a', 1.0: 'b', True: 'c'}, written entry by entry
//! let v = pickle::decode(b"\x80\x02}(K\x01X\x01\x00\x00\x00aG?\xf0\x00\x00\x00\x00\x00\x00X\x01\x00\x00\x00b\x88X\x01\x00\x00\x00cu.")?;
//! assert_eq!(v.to_string(), "{1: 'c'}");                // as CPython: one entry
//!
//! // {[]: 1}: CPython raises TypeError: unhashable type: 'list'
//! let err = pickle::decode(b"\x80\x02}(]K\x01u.").unwrap_err();
//! assert_eq!(err.to_string(), "pickle decode failed at byte 7: SETITEMS: unhashable type: 'list' as a dict key");
//! # Ok::<(), pickleshelf_pickle::Error>(())
//! ```
//!
//! ## What it is not
//!
//! Not a Python runtime: it never imports a module or calls a constructor. [`pytypes`]
//! reads the standard library's everyday types; turning another [`Object`] into a Rust
//! type is up to the caller ([`Value::object_type`],
//! [`Object::construct`], [`Object::ops`]). It does not read the contents of protocol-5
//! out-of-band buffers (they travel outside the pickle), nor look up `copyreg`
//! extension codes, nor decode Python 2 `str` holding non-ASCII bytes (CPython's
//! default refuses them too).
//!
//! ## Errors
//!
//! Every fallible function returns [`Result`], whose [`Error`] says what failed and
//! where: [`Error::Decode`] with the byte offset and a [`DecodeErrorKind`],
//! [`Error::Serde`] with the path in the value (`$['scores'][3]`), [`Error::Json`] with
//! the offset in the text, [`Error::PlainJson`], [`Error::Encode`].
#![deny(unsafe_code, missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod bytes_seq;
mod canon;
mod canon_ser;
mod compat;
mod compound;
pub mod de;
mod decode;
mod direct;
mod emit;
mod encode;
mod error;
mod int;
mod json;
mod native;
pub mod numpy;
pub mod opcodes;
mod plain;
mod pyhash;
pub mod pytypes;
mod repr;
pub mod ser;
pub mod serde_types;
mod value;

pub use canon::canonical_pickle;
pub use canon_ser::canonical_pickle_of;
pub use de::{from_value, from_value_borrowed, from_value_with};
pub use decode::{DEFAULT_LIMITS, Limits, check, check_with, decode, decode_with};
pub use direct::from_slice;
pub use encode::{DEFAULT_PROTOCOL, encode};
pub use error::{DecodeErrorKind, Error, Result};
pub use int::{BigInt, DECIMAL_MAX_BITS, Int};
pub use json::{from_tagged_json, to_tagged_json};
pub use plain::{from_plain_json, to_plain_json};
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

/// The README's example, run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
