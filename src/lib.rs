//! # pickleshelf
//!
//! An embedded, persistent object store with the feel of Python's `shelve`: values are
//! Python pickles, so Python can read what Rust writes and Rust can read what Python
//! writes.
//!
//! This release contains the foundation, the [`pickle`] codec: a complete, safe reader
//! of pickle protocols 0–5 and a writer of protocols 2–5 whose output for plain data is
//! byte-identical to CPython's.
//!
//! ```
//! use pickleshelf::pickle;
//!
//! // Bytes written by CPython: pickle.dumps({"a": [1, 2.5, None]}, protocol=4)
//! let bytes = b"\x80\x04\x95\x18\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00Nes.";
//! let value = pickle::decode(bytes)?;
//! assert_eq!(value.to_string(), "{'a': [1, 2.5, None]}");
//! # Ok::<(), pickleshelf::Error>(())
//! ```
//!
//! ## What it is not
//!
//! The codec never imports or executes anything. Objects other than Python's built-in
//! data types are kept as data (their class name, constructor arguments and state),
//! not instantiated.
#![deny(unsafe_code, missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod blob;
mod cache;
mod error;
mod index;
pub mod interop;
pub mod memo;
pub mod pickle;
mod progress;
mod shelf;
mod stats;

pub use blob::{Compression, Digest};
pub use cache::CacheStats;
pub use error::{DecodeErrorKind, Error, Result};
pub use index::MAX_KEY_LEN;
pub use memo::{Memo, MemoBuilder, MemoStats};
pub use progress::Progress;
pub use shelf::{Batch, Durability, FORMAT_VERSION, Shelf, ShelfBuilder, VerifyReport};
pub use stats::{KeyInfo, Stats};
