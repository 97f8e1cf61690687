//! The crate's one error type.
//!
//! Every fallible operation returns [`Result`]. Messages are lowercase and name the
//! thing that is wrong: a byte offset, a limit, a path.

use std::fmt;
use std::path::PathBuf;

use crate::blob::Digest;

/// A `Result` whose error is the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pickleshelf.
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
    /// A value could not be converted to or from a Rust type through serde.
    #[error("serde conversion failed: {0}")]
    Serde(String),
    /// A file or directory of the store could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another handle (in this process or another) holds the store: a writer excludes
    /// every other handle, a reader excludes writers.
    #[error("store is locked: another open handle holds it (in this process or another): {path}")]
    Locked {
        /// The store's lock file.
        path: PathBuf,
    },
    /// A write was attempted on a store opened read-only.
    #[error("store is open read-only: {path}")]
    ReadOnly {
        /// The store's directory.
        path: PathBuf,
    },
    /// The store was written by a format this version does not read.
    #[error("store {path} has format version {found}; this pickleshelf reads version {supported}{}", format_hint(*found, *supported, path))]
    UnsupportedFormat {
        /// The store's directory.
        path: PathBuf,
        /// The version found in the store.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// Stored data failed verification: a record, frame or file is damaged.
    #[error("corrupted {what}: {reason}")]
    Corrupted {
        /// What is damaged (a key, an object, a file).
        what: String,
        /// How it failed.
        reason: String,
    },
    /// A stored object's content does not hash to its address.
    #[error("corrupted object {digest} of key {key:?}: {reason}")]
    CorruptedObject {
        /// The key being read.
        key: String,
        /// The object's address.
        digest: Digest,
        /// How it failed.
        reason: &'static str,
    },
    /// The store came back older than its last `sync` (its log lost a tail).
    #[error(
        "store {path} is at generation {store_generation} but its witness recorded generation {witness_generation} \
         at the last sync: its page directory (sled/) came back older than that sync (run `pickleshelf repair \
         {path}` to rebuild the directory from the pack files, which hold what was synced; or open with \
         `allow_rollback(true)` — `--allow-rollback` on the command line — to accept the older state)"
    )]
    RolledBack {
        /// The store's directory.
        path: PathBuf,
        /// Generation recorded inside the store.
        store_generation: u64,
        /// Generation recorded in the witness file at the last sync.
        witness_generation: u64,
    },
    /// The auth key does not match the store's (or one is missing or unexpected).
    #[error("auth key mismatch for {path}: {reason}")]
    AuthKey {
        /// The store's directory.
        path: PathBuf,
        /// What was wrong.
        reason: &'static str,
    },
    /// A key that pickleshelf cannot store.
    #[error("invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key (possibly cut short).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint operation that cannot be done: no checkpoint of that name, one exists
    /// already, or the name is not valid.
    #[error("checkpoint {name:?}: {problem}")]
    Checkpoint {
        /// The checkpoint's name (possibly cut short).
        name: String,
        /// What is wrong.
        problem: CheckpointProblem,
    },
    /// A builder setting that cannot be used.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The storage engine (sled) failed or panicked.
    #[error("storage engine failed on {path}: {message}")]
    Engine {
        /// The store's directory.
        path: PathBuf,
        /// The engine's message.
        message: String,
    },
    /// A file being imported or exported (a Python `shelve`, an export directory) is not
    /// what it should be, or cannot be written as asked. Nothing in the store was changed.
    #[error("{path}: {reason}")]
    Interop {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong, e.g. `line 3: the entry is cut short`.
        reason: String,
    },
    /// Tagged JSON could not be read.
    #[error("tagged JSON invalid at byte {offset}: {message}")]
    Json {
        /// Byte offset in the JSON text.
        offset: usize,
        /// What was wrong.
        message: String,
    },
}

/// What to do about a store of another format.
fn format_hint(found: u32, supported: u32, path: &std::path::Path) -> String {
    if found == 2 && supported == 3 {
        format!(
            " (the first writable open upgrades it in place, e.g. `pickleshelf repair {}`; a format 2 pickleshelf \
             cannot read it afterwards)",
            path.display()
        )
    } else if found > supported {
        " (written by a newer pickleshelf)".into()
    } else {
        String::new()
    }
}

/// Why a checkpoint operation failed; carried by [`Error::Checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CheckpointProblem {
    /// The store has no checkpoint of that name.
    NotFound,
    /// A checkpoint of that name exists already (delete it first to reuse the name).
    Exists,
    /// The name cannot name a checkpoint: it must be 1 to 255 bytes of UTF-8 without NUL.
    InvalidName(&'static str),
}

impl fmt::Display for CheckpointProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound => f.write_str("no such checkpoint"),
            Self::Exists => f.write_str("a checkpoint of this name exists"),
            Self::InvalidName(why) => write!(f, "invalid name: {why}"),
        }
    }
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
    /// Framing rules of protocol 4 were broken.
    Frame(&'static str),
    /// A configured limit was hit.
    Limit {
        /// Which limit (its field name in [`crate::pickle::Limits`]).
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
            Self::Frame(what) => write!(f, "frame error: {what}"),
            Self::Limit { limit, value } => write!(f, "limit {limit} = {value} exceeded"),
            Self::UnsupportedProtocol(p) => write!(f, "unsupported pickle protocol {p}"),
        }
    }
}
