//! sled's files: opened in place (a writable store), or from a private copy (a store
//! opened read-only, which needs no write access to the store: sled 0.34 writes to its
//! files whenever it opens them); and, when sled cannot open them, which file is damaged.
//!
//! Invariant: a read-only open never writes, renames or deletes anything in the store's
//! directory; its private copy lives in the system's temporary directory and is removed
//! when the store closes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// A private copy of a store's `sled/` directory, deleted when dropped.
pub(crate) struct PrivateCopy {
    dir: PathBuf,
}

static COPIES: AtomicU64 = AtomicU64::new(0);

impl PrivateCopy {
    /// A new empty directory in the system's temporary directory.
    pub(crate) fn empty() -> Result<PrivateCopy> {
        let base = std::env::temp_dir();
        loop {
            let n = COPIES.fetch_add(1, Ordering::Relaxed);
            let dir = base.join(format!("pickleshelf-{}-{n}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(PrivateCopy { dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io(&base)(e)),
            }
        }
    }

    /// Copies the files of `sled_dir` (not the snapshots a crash cut short, which sled
    /// would read as its newest).
    pub(crate) fn of(sled_dir: &Path) -> Result<PrivateCopy> {
        let copy = PrivateCopy::empty()?;
        copy_tree(sled_dir, &copy.dir)?;
        Ok(copy)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.dir
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).map_err(io(from))? {
        let entry = entry.map_err(io(from))?;
        let name = entry.file_name();
        let path = entry.path();
        if name.to_string_lossy().ends_with(".generating") {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().map_err(io(&path))?.is_dir() {
            fs::create_dir(&target).map_err(io(&target))?;
            copy_tree(&path, &target)?;
        } else {
            fs::copy(&path, &target).map_err(io(&path))?;
        }
    }
    Ok(())
}
