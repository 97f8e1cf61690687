//! # pickleshelf
//!
//! An embedded, persistent object store with the feel of Python's `shelve`: values are
//! Python pickles (protocols 0–5 read, 2–5 written), so Python can read what Rust writes
//! and Rust can read what Python writes.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use pickleshelf::Shelf;
//! let shelf = Shelf::open(dir.path().join("state.db"))?;
//! shelf.insert("user:1", &("Kim", vec![1.5, 2.5]))?;      // any serde type, pickled
//! let (name, scores): (String, Vec<f64>) = shelf.get("user:1")?.unwrap_or_default();
//! assert_eq!(name, "Kim");
//! shelf.sync()?;                                            // durable from here on
//! # Ok::<(), pickleshelf::Error>(())
//! ```
//!
//! - [`Shelf`]: the store. Each value is addressed by the blake3 digest of its pickle
//!   bytes (keyed blake3 with an auth key) and re-verified on every read; compressed with
//!   zstd (small values in their key's record, in pages of records compressed whole;
//!   larger ones stored once and reference-counted). A decoded-object cache ([`Shelf::get_arc`]) serves hot reads.
//! - [`checkpoint`]: named checkpoints of the whole key → value map, with diff and atomic
//!   restore; with delta storage (a new version of a large value is a zstd delta against
//!   a similar earlier object), saving state again and again costs about what changed.
//! - [`memo`]: a persistent memo of a function keyed by its pickled arguments.
//! - [`pickle`]: the codec, the `pickleshelf-pickle` crate re-exported — a complete, safe
//!   reader and a writer whose output for plain data is byte-identical to CPython's
//!   `pickle.dumps`.
//! - numpy arrays: [`Shelf::insert_array_bytes`] stores an array as the pickle numpy
//!   writes, so Python reads it as an array; [`Shelf::get_array_bytes`] reads any numpy
//!   array pickle (Python's too) as shape, dtype, order and data
//!   ([`pickle::numpy`]).
//! - [`interop`]: Python `shelve` files (`dbm.dumb`; `dbm.sqlite3` with the `sqlite`
//!   feature) both ways.
//!
//! ## Features
//!
//! - `sqlite` (off by default): Python 3.13's `dbm.sqlite3` shelves in [`interop`],
//!   through rusqlite with SQLite bundled (a C build of SQLite). Without it a
//!   `dbm.sqlite3` shelve is still recognized, and reading or writing one is an
//!   [`Error::Interop`] naming the feature. The `pickleshelf` command-line tool (crate
//!   `pickleshelf-cli`) turns it on.
//!
//! - `ndarray` (off by default): numpy arrays as `ndarray` arrays (`Shelf::get_array`,
//!   `Shelf::insert_array`; float16 as `half::f16`, complex as `num_complex::Complex`).
//!   Without it numpy arrays are read and written as header and data bytes.
//!
//! - `s3` (off by default): checkpoints on S3-compatible object storage ([`remote`]:
//!   [`Remote`], [`Shelf::push`], [`Shelf::pull`]), through the `object_store` crate and a
//!   private tokio runtime; about 140 more crates, none of them in the default build.
//!
//! ## Durability
//!
//! Every write is atomic. Writes are buffered in memory (visible to reads at once) and
//! committed together — at [`Shelf::sync`], when 8 MiB are buffered, 200 ms after the
//! oldest buffered write (both settable: [`ShelfBuilder::buffer_bytes`],
//! [`ShelfBuilder::commit_interval`]), and at close — each commit atomic (its pages appended to a
//! pack file, then one sled batch installs them). After a crash the store equals its state at some commit no older than the last `sync`: a killed
//! process loses at most what it wrote in the last 200 ms (the commit interval), and nothing it synced; with the
//! default [`Durability::PowerLoss`], every commit fsyncs the pack files it wrote and
//! `sync` fsyncs every file and directory (sled's own flush does not), so what `sync`
//! acknowledged survives power loss. On a virtio disk with ext4, in a store of 20,000
//! records, a sync after one small write took 0.77 ms (median of 50, `cargo bench --bench
//! sync`), after a 100 KB value 1.1 ms; with [`Durability::ProcessCrash`] (no fsync)
//! 0.20 ms and 0.34 ms. A store that comes back older than its last sync is refused
//! ([`Error::RolledBack`]). On-disk bytes: `docs/FORMAT.md`.
//!
//! ## Damage
//!
//! Every value is verified when read, and a page of records that cannot be read affects
//! only its own keys. [`Shelf::gc`] changes nothing while any part of a store cannot be
//! read. The pack files describe themselves, so [`ShelfBuilder::repair`] rebuilds the page
//! directory (sled's files) from them when it is lost, damaged or rolled back, and
//! [`ShelfBuilder::salvage`] copies everything that can still be read into a new store
//! without changing the damaged one.
//!
//! ## Limits
//!
//! Keys are UTF-8 strings of at most [`MAX_KEY_LEN`] bytes. One handle writes a store at a
//! time; read-only handles ([`ShelfBuilder::read_only`]) share it with each other, and need
//! no write access to its directory (a store on a read-only file system reads fine);
//! readers and a writer exclude each other ([`Error::Locked`]). Decoding is bounded by
//! [`pickle::Limits`].
//!
//! ## What it is not
//!
//! Not a database server and not a query engine: keys are looked up, listed in order or by
//! prefix, nothing more. The codec never imports or executes anything: objects other than
//! Python's built-in data types are kept as data (class name, constructor arguments,
//! state), not instantiated.
#![deny(missing_docs)]
// `unsafe` is allowed in one module only, `array::map` (memory maps), which says why.
#![deny(unsafe_code)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod array;
mod blob;
mod cache;
mod chain;
pub mod checkpoint;
mod error;
mod index;
pub mod interop;
mod lock;
pub mod memo;
mod progress;
#[cfg(feature = "s3")]
pub mod remote;
// The remote's error type sits with the crate's errors (`Error::Remote` holds it).
#[cfg(feature = "s3")]
mod remote_error;
mod repair;
mod shelf;
mod stats;
mod store;
mod transaction;
mod witness;

pub use array::{MappedArray, Plain, StoredArray};
pub use blob::{Compression, Digest};
pub use cache::CacheStats;
pub use checkpoint::{Change, ChangeKind, CheckpointInfo};
pub use error::{CheckpointProblem, Error, LockHolder, Result};
pub use index::MAX_KEY_LEN;
pub use memo::{Memo, MemoBuilder, MemoNamespace, MemoStats};
/// The pickle codec, the `pickleshelf-pickle` crate: values, decoder, encoder, serde.
pub use pickleshelf_pickle as pickle;
pub use progress::Progress;
#[cfg(feature = "s3")]
pub use remote::{PushReport, Remote, RemoteBuilder, RemoteCheckpoint, RemoteError, RemoteStats};
pub use repair::{PARTIAL_SUFFIX, RECOVERED_PREFIX, RepairReport, SalvageReport, VerifyReport};
pub use shelf::{Batch, Conflict, Shelf, ShelfBuilder};
pub use stats::{KeyInfo, Stats};
pub use store::{Durability, FORMAT_VERSION};
pub use transaction::Transaction;

/// README.md's Rust examples, run as doctests. The numpy example needs the `ndarray`
/// feature, so they run when it is on (as `scripts/test` runs the tests).
#[cfg(all(doctest, feature = "ndarray"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
