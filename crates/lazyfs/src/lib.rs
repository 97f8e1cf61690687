//! # pickleshelf-lazyfs
//!
//! A FUSE file system for power-loss tests, after LazyFS: it passes every request through
//! to a real directory and records every change — writes, length changes, names created,
//! removed and renamed, fsyncs — in order ([`Recording`]). From the recording it computes
//! what a power cut at any point would leave on disk ([`Recording::crash_state`]): only
//! what `fsync` made durable, everything, or subsets the kernel might have written (pages
//! written back or not, a directory's name changes up to a point), and enumerates those
//! states exhaustively for small cases as ALICE does ([`Recording::exhaustive`]). The
//! recording's listing ([`Recording::listing`]) shows the order of writes, fsyncs and
//! renames a program performs.
//!
//! ```no_run
//! use pickleshelf_lazyfs::{Mode, Mount};
//! # fn main() -> Result<(), pickleshelf_lazyfs::Error> {
//! let mount = Mount::new("backing".as_ref(), "mnt".as_ref())?;
//! std::fs::write("mnt/f", b"data").map_err(|e| pickleshelf_lazyfs::Error::Io { path: "mnt/f".into(), source: e })?;
//! mount.mark("written, not synced");
//! let rec = mount.unmount()?;
//! // A power cut now leaves no `f`: neither its bytes nor its name were fsynced.
//! let (image, _) = rec.crash_state(rec.log.len(), Mode::Durable);
//! assert!(image.file("f".as_ref()).is_none());
//! # Ok(()) }
//! ```
//!
//! What it is not: a general file system. Symbolic links, hard links, special files and
//! extended attributes are refused; `fallocate` reports "not supported"; file modes are
//! passed through but not modelled; one thread serves every request. It needs `/dev/fuse`
//! and the right to mount (root).
#![deny(unsafe_code, missing_docs)]
#![warn(clippy::unwrap_used, clippy::expect_used)]

mod crash;
mod fs;
mod image;
mod log;
mod mount;

use std::path::PathBuf;

pub use crash::{Mode, Outcome, Recording};
pub use image::{Image, PAGE};
pub use log::{Entry, Ino, Kind, Op};
pub use mount::Mount;

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The directory holds something the file system does not model.
    #[error("{path}: {what}")]
    Unsupported {
        /// The path.
        path: PathBuf,
        /// What it is.
        what: &'static str,
    },
    /// The file system could not be mounted (no `/dev/fuse`, or no right to mount).
    #[error("cannot mount a FUSE file system at {path}: {source}")]
    Mount {
        /// The mount point.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}
