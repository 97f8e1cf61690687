//! The record of one mount: every change the file system received — writes, length changes,
//! names created, removed and renamed, fsyncs — in the order it received them, with the
//! harness's marks between them.
//!
//! Invariant: entries are in the order the file system applied them (one server thread
//! applies every request), so a prefix of the log is a state the running program could
//! have seen.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// An inode number as the mount gives them: the root is 1, and numbers are never reused.
pub type Ino = u64;

/// A file or a directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// One change the file system received.
#[derive(Clone, Debug)]
pub enum Op {
    /// `data` written at `offset` of file `ino`.
    Write {
        /// The file.
        ino: Ino,
        /// Where the bytes go.
        offset: u64,
        /// The bytes.
        data: Arc<[u8]>,
    },
    /// File `ino` truncated or extended to `len` bytes.
    SetLen {
        /// The file.
        ino: Ino,
        /// Its new length.
        len: u64,
    },
    /// A new file or directory `ino` named `name` in directory `dir`.
    Create {
        /// The directory holding the name.
        dir: Ino,
        /// The new name.
        name: OsString,
        /// The new inode.
        ino: Ino,
        /// What was created.
        kind: Kind,
    },
    /// The name `name` of `ino` removed from `dir` (unlink or rmdir).
    Remove {
        /// The directory holding the name.
        dir: Ino,
        /// The name removed.
        name: OsString,
        /// The inode it named.
        ino: Ino,
    },
    /// `ino` moved from `from_dir/from` to `to_dir/to`, replacing what `to` named.
    Rename {
        /// The old name's directory.
        from_dir: Ino,
        /// The old name.
        from: OsString,
        /// The new name's directory.
        to_dir: Ino,
        /// The new name.
        to: OsString,
        /// The inode moved.
        ino: Ino,
    },
    /// `fsync`/`fdatasync` of a file, or `fsync` of a directory: a barrier.
    Fsync {
        /// The file or directory.
        ino: Ino,
        /// Which of the two.
        kind: Kind,
    },
    /// A note the harness put in the log (not a file system operation).
    Mark(String),
}

impl Op {
    /// The file whose data the op changes (writes and length changes).
    pub fn data_of(&self) -> Option<Ino> {
        match self {
            Op::Write { ino, .. } | Op::SetLen { ino, .. } => Some(*ino),
            _ => None,
        }
    }

    /// The directory whose fsync makes the op durable, for name changes: a rename is
    /// durable, old and new name together, once its new name's directory is fsynced.
    pub fn names_of(&self) -> Option<Ino> {
        match self {
            Op::Create { dir, .. } | Op::Remove { dir, .. } => Some(*dir),
            Op::Rename { to_dir, .. } => Some(*to_dir),
            _ => None,
        }
    }

    /// True for an `fsync` of a file or directory.
    pub fn is_fsync(&self) -> bool {
        matches!(self, Op::Fsync { .. })
    }
}

/// An op with the paths it concerns, as they were when it was made (for listings).
#[derive(Clone, Debug)]
pub struct Entry {
    /// The change.
    pub op: Op,
    /// The path of what it changes, relative to the mount point (for a rename, the old
    /// path; empty for a mark).
    pub path: PathBuf,
    /// For a rename: the new path.
    pub to: Option<PathBuf>,
}

impl fmt::Display for Entry {
    /// One line: what happened, to which path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.path.display();
        match &self.op {
            Op::Write { offset, data, .. } => write!(f, "write    {p} [{offset}, +{})", data.len()),
            Op::SetLen { len, .. } => write!(f, "setlen   {p} {len}"),
            Op::Create { kind: Kind::File, .. } => write!(f, "create   {p}"),
            Op::Create { kind: Kind::Dir, .. } => write!(f, "mkdir    {p}"),
            Op::Remove { .. } => write!(f, "remove   {p}"),
            Op::Rename { .. } => {
                let to = self.to.as_ref().map(|t| t.display().to_string()).unwrap_or_default();
                write!(f, "rename   {p} -> {to}")
            }
            Op::Fsync { kind: Kind::File, .. } => write!(f, "fsync    {p}"),
            Op::Fsync { kind: Kind::Dir, .. } => {
                write!(f, "fsyncdir {}", if p.to_string().is_empty() { ".".into() } else { p.to_string() })
            }
            Op::Mark(text) => write!(f, "-- {text}"),
        }
    }
}
