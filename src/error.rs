//! The crate's one error type.
//!
//! Every fallible operation returns [`Result`]. Messages are lowercase and name the
//! thing that is wrong: a byte offset, a limit, a path.

use std::fmt;
use std::path::PathBuf;

use crate::blob::Digest;
use crate::pickle;

/// A `Result` whose error is the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in pickleshelf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Pickle bytes could not be decoded, a value could not be encoded, a value did not
    /// fit a Rust type through serde, or tagged JSON could not be read: the codec's
    /// error, with its byte offset or path (its message is shown as it is).
    #[error(transparent)]
    Pickle(#[from] pickle::Error),
    /// The value stored under a key does not fit the Rust type it was read as (through
    /// serde). The stored value is unchanged.
    #[error("key {key:?}: expected {expected}: {source}")]
    Mismatch {
        /// The key read.
        key: String,
        /// The Rust type asked for, without module paths (`Vec<f64>`).
        expected: String,
        /// The codec's message: what was found, and where in the value.
        source: pickle::Error,
    },
    /// A file or directory of the store could not be read or written.
    #[error("i/o error on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// Another handle holds the store: a writer excludes every other handle, a reader
    /// excludes writers. `holder` says whether it is this process (and what holds it) or
    /// another (and its pid).
    #[error("store is locked by {holder}: {path}")]
    Locked {
        /// The store's lock file.
        path: PathBuf,
        /// Who holds it.
        holder: LockHolder,
    },
    /// [`Shelf::close`](crate::Shelf::close) let go of its handle, but other handles of
    /// this process still hold the store open: it closes when the last of them is
    /// dropped. Everything written so far was synced.
    #[error("store {path} is not closed: {} of this process still hold it; it closes when the last of them is dropped", handles(*shelves, *memos))]
    StillOpen {
        /// The store's directory.
        path: PathBuf,
        /// Other `Shelf` handles (clones) holding it.
        shelves: usize,
        /// Memos holding it.
        memos: usize,
    },
    /// The path exists but is not a store, and opening it would turn it into one: nothing
    /// was written.
    #[error("{path}: exists and is not a pickleshelf store; not turning it into one ({reason})")]
    NotAStore {
        /// The file or directory.
        path: PathBuf,
        /// Why, e.g. `it holds "notes.txt"`.
        reason: String,
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
    /// A remote (S3-compatible object storage, cargo feature `s3`) operation failed; the
    /// message names the remote and the object or checkpoint concerned, never a
    /// credential.
    #[cfg(feature = "s3")]
    #[error(transparent)]
    Remote(Box<crate::remote_error::RemoteError>),
    /// The storage engine (sled) failed or panicked.
    #[error("storage engine failed on {path}: {message}")]
    Engine {
        /// The store's directory.
        path: PathBuf,
        /// The engine's message.
        message: String,
    },
    /// The value under a key is not a numpy array of a supported kind, or is not of the
    /// element type asked for, or an array cannot be written. The stored value is
    /// unchanged (and readable as a pickle).
    #[error("array {key:?}: {source}")]
    Array {
        /// The key.
        key: String,
        /// What is wrong.
        source: pickle::numpy::ArrayError,
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
}

/// Deserializes the pickle `bytes` stored under `key` into `T`; a value that does not
/// fit `T` is an [`Error::Mismatch`] naming the key and the type.
pub(crate) fn decode_as<T: serde::de::DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    pickle::from_slice(bytes).map_err(|e| match e {
        pickle::Error::Serde(_) => {
            Error::Mismatch { key: key.to_owned(), expected: short_type_name(std::any::type_name::<T>()), source: e }
        }
        e => Error::Pickle(e),
    })
}

/// A type's name without module paths: `alloc::vec::Vec<(i64, alloc::string::String)>`
/// becomes `Vec<(i64, String)>`.
fn short_type_name(full: &str) -> String {
    let mut out = String::with_capacity(full.len());
    // Where the path being read starts in `out`.
    let mut start = 0;
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ':' && chars.peek() == Some(&':') {
            chars.next();
            out.truncate(start);
        } else {
            out.push(c);
            if !(c.is_alphanumeric() || c == '_') {
                start = out.len();
            }
        }
    }
    out
}

/// `2 handles (1 Shelf handle, 1 memo)`.
pub(crate) fn handles(shelves: usize, memos: usize) -> String {
    let n = |k: usize, what: &str| format!("{k} {what}{}", if k == 1 { "" } else { "s" });
    format!("{} ({}, {})", n(shelves + memos, "handle"), n(shelves, "Shelf handle"), n(memos, "memo"))
}

/// What to do about a store of another format.
fn format_hint(found: u32, supported: u32, path: &std::path::Path) -> String {
    if found == 2 && supported > 2 {
        format!(
            " (the first writable open upgrades it in place, e.g. `pickleshelf repair {}`; a format 2 pickleshelf \
             cannot read it afterwards)",
            path.display()
        )
    } else if found > supported {
        " (written by a newer pickleshelf)".into()
    } else if found == 1 {
        " (written by an older pickleshelf: copy it with `pickleshelf export` of a format 1 build, then \
         `pickleshelf import` the export into a new store)"
            .into()
    } else {
        String::new()
    }
}

/// Who holds a store that could not be locked; carried by [`Error::Locked`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LockHolder {
    /// A handle of this process, described (e.g. `an open Shelf (2 handles: 1 Shelf, 1
    /// memo)`).
    ThisProcess(String),
    /// Another process writes the store; its pid as its `LOCK` file records it (`None`
    /// when not recorded, e.g. by an older pickleshelf).
    Writer {
        /// The writer's process id.
        pid: Option<u32>,
    },
    /// Read-only handles of another process (readers record no pid).
    Readers,
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ThisProcess(what) => write!(f, "this process ({what})"),
            Self::Writer { pid: Some(pid) } => write!(f, "another process (pid {pid}, writing it)"),
            Self::Writer { pid: None } => f.write_str("another process (writing it; its pid is not recorded)"),
            Self::Readers => f.write_str("another process (reading it; read-only handles record no pid)"),
        }
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

#[cfg(feature = "s3")]
impl From<crate::remote_error::RemoteError> for Error {
    fn from(e: crate::remote_error::RemoteError) -> Error {
        Error::Remote(Box::new(e))
    }
}

#[cfg(test)]
mod tests {
    use super::short_type_name;

    #[test]
    fn type_names_lose_their_paths() {
        assert_eq!(short_type_name("i64"), "i64");
        assert_eq!(short_type_name("alloc::vec::Vec<f64>"), "Vec<f64>");
        assert_eq!(
            short_type_name("(i64, std::collections::hash::map::HashMap<alloc::string::String, u8>)"),
            "(i64, HashMap<String, u8>)"
        );
        assert_eq!(short_type_name("[u8; 4]"), "[u8; 4]");
    }
}
