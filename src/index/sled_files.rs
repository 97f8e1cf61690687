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

/// sled's configuration for the store's directory at `sled_dir`.
pub(crate) fn config(sled_dir: &Path) -> sled::Config {
    sled::Config::new().path(sled_dir).flush_every_ms(Some(500))
}

/// Opens sled at `sled_dir` (the store's `sled/`, or a copy of it). A failure names the
/// file of the store's `sled/` that is damaged and says how to rebuild it.
pub(crate) fn open(store: &Path, sled_dir: &Path) -> Result<sled::Db> {
    // An i/o error (a full disk, say) is not damage: reported as it is.
    let mut io_error = None;
    let opened = super::engine(store, || {
        config(sled_dir).open().map_err(|e| match e {
            sled::Error::Io(source) => {
                let message = source.to_string();
                io_error = Some(source);
                sled::Error::Unsupported(message)
            }
            other => other,
        })
    });
    if let Some(source) = io_error {
        return Err(Error::Io { path: sled_dir.to_path_buf(), source });
    }
    opened.map_err(|e| match e {
        Error::Engine { message, .. } => {
            let file = diagnose(&store.join("sled"));
            Error::Engine {
                path: file,
                message: format!(
                    "{message} (the page directory cannot be read: run `pickleshelf repair {}` to rebuild it \
                     from the pack files)",
                    store.display()
                ),
            }
        }
        other => other,
    })
}

/// Which file of a `sled/` directory that sled could not open is damaged: `conf` when it
/// differs from the one sled writes, else the newest snapshot when sled opens without
/// the snapshots, else `db` (sled's log).
pub(crate) fn diagnose(sled_dir: &Path) -> PathBuf {
    let conf = sled_dir.join("conf");
    if let Ok(reference) = PrivateCopy::empty() {
        let fresh = reference.path().join("fresh");
        let made = config(&fresh).open().map(drop).is_ok();
        let _ = fs::File::open(fresh.join("db")).and_then(|f| f.lock());
        if made && fs::read(&conf).ok() != fs::read(fresh.join("conf")).ok() {
            return conf;
        }
    }
    let mut snaps: Vec<PathBuf> = fs::read_dir(sled_dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| is_snapshot(p)).collect())
        .unwrap_or_default();
    snaps.sort();
    if let Some(newest) = snaps.last()
        && let Ok(copy) = PrivateCopy::of(sled_dir)
    {
        for s in &snaps {
            if let Some(name) = s.file_name() {
                let _ = fs::remove_file(copy.path().join(name));
            }
        }
        let opened = config(copy.path()).open().map(drop).is_ok();
        let _ = fs::File::open(copy.path().join("db")).and_then(|f| f.lock());
        if opened {
            return newest.clone();
        }
    }
    sled_dir.join("db")
}

fn is_snapshot(p: &Path) -> bool {
    p.file_name().is_some_and(|n| {
        let n = n.to_string_lossy();
        n.starts_with("snap.") && !n.ends_with(".generating")
    })
}
