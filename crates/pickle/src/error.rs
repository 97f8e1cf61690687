//! The codec's one error type.
//!
//! Every fallible function of the crate returns [`Result`]. Messages are lowercase and
//! name what is wrong: a byte offset and what was found there for bad pickle bytes, the
//! path in the value (`$['scores'][3]`) for a serde mismatch, the byte offset in the
//! text for tagged JSON.

use std::fmt;

/// A `Result` whose error is the codec's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the codec.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Pickle bytes could not be decoded.
    #[error("pickle decode failed at byte {offset}: {kind}")]
    Decode {
        /// Offset of the opcode (or argument) that failed, from the start of the input.
        offset: usize,
        /// What was wrong.
        kind: DecodeErrorKind,
    },
    /// A value could not be encoded as a pickle.
    #[error("pickle encode failed: {0}")]
    Encode(String),
    /// A value could not be converted to or from a Rust type through serde; the message
    /// ends with where in the value it happened (`, at $['scores'][3]`).
    #[error("serde conversion failed: {0}")]
    Serde(String),
    /// Tagged JSON could not be read.
    #[error("tagged JSON invalid at byte {offset}: {message}")]
    Json {
        /// Byte offset in the JSON text.
        offset: usize,
        /// What was wrong.
        message: String,
    },
    /// Plain JSON ([`crate::to_plain_json`], [`crate::from_plain_json`]): a value that
    /// has no JSON form (the message names its type and where it is, `at $['a'][2]`), or
    /// text that is not JSON (the message names the byte offset).
    #[error("plain JSON: {0}")]
    PlainJson(String),
    /// A Python object could not be read as one of the types of [`crate::pytypes`]
    /// (another type, or malformed state), or a field given to one of their
    /// constructors is out of range.
    #[error("{type_name}: {message}")]
    PyType {
        /// The Python type, e.g. `datetime.datetime`.
        type_name: &'static str,
        /// What is wrong, e.g. `month 13 is out of range 1..=12`.
        message: String,
    },
}

/// What went wrong while decoding a pickle; carried by [`Error::Decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeErrorKind {
    /// The input ended before the pickle did.
    Truncated {
        /// What was being read.
        what: &'static str,
    },
    /// A byte that is not a pickle opcode.
    UnknownOpcode(u8),
    /// An opcode needed more values than the stack holds above the last MARK.
    StackUnderflow {
        /// The opcode's name.
        opcode: &'static str,
    },
    /// An opcode that needs a MARK found none.
    MarkNotFound {
        /// The opcode's name.
        opcode: &'static str,
    },
    /// A memo index that was never stored.
    MemoMissing(u64),
    /// An argument of the wrong kind for an opcode (e.g. APPEND to a tuple).
    BadOperand {
        /// The opcode's name.
        opcode: &'static str,
        /// What was found and expected.
        detail: String,
    },
    /// A text argument (protocol 0) that is not well formed.
    BadText {
        /// The opcode's name.
        opcode: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A dict key or set element that Python cannot hash (a list, dict, set, bytearray,
    /// or a tuple holding one), as CPython's `TypeError: unhashable type: 'list'`.
    Unhashable {
        /// The opcode's name.
        opcode: &'static str,
        /// The Python type that cannot be hashed.
        type_name: &'static str,
        /// `"dict key"` or `"set element"`.
        role: &'static str,
    },
    /// Framing rules of protocol 4 were broken.
    Frame(&'static str),
    /// A configured limit was hit.
    Limit {
        /// Which limit (its field name in [`crate::Limits`]).
        limit: &'static str,
        /// Its value.
        value: u64,
    },
    /// The protocol number is not one this codec reads.
    UnsupportedProtocol(u8),
}

impl fmt::Display for DecodeErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { what } => write!(f, "input ends inside {what}"),
            Self::UnknownOpcode(b) => write!(f, "unknown opcode 0x{b:02x}"),
            Self::StackUnderflow { opcode } => write!(f, "{opcode} needs more values than the stack holds"),
            Self::MarkNotFound { opcode } => write!(f, "{opcode} found no MARK"),
            Self::MemoMissing(i) => write!(f, "memo index {i} was never stored"),
            Self::BadOperand { opcode, detail } => write!(f, "{opcode}: {detail}"),
            Self::BadText { opcode, detail } => write!(f, "{opcode}: {detail}"),
            Self::Unhashable { opcode, type_name, role } => {
                write!(f, "{opcode}: unhashable type: '{type_name}' as a {role}")
            }
            Self::Frame(what) => write!(f, "frame error: {what}"),
            Self::Limit { limit, value } => write!(f, "limit {limit} = {value} exceeded"),
            Self::UnsupportedProtocol(p) => write!(f, "unsupported pickle protocol {p}"),
        }
    }
}
