//! A mounted [`LazyFs`](crate::fs::LazyFs): served on a thread of this process, commanded
//! through [`Mount`].
//!
//! Invariant: the recording a [`Mount`] returns holds every change the file system applied
//! (none is applied after a power cut), starting from the tree loaded at mount time.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use fuser::{BackgroundSession, Config, MountOption};

use crate::Error;
use crate::crash::Recording;
use crate::fs::{LazyFs, State};
use crate::image::Image;
use crate::log::Op;

/// A LazyFS mount: `mountpoint` shows `backing`, and every change is recorded.
pub struct Mount {
    state: Arc<Mutex<State>>,
    base: Arc<Image>,
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount").field("mountpoint", &self.mountpoint).finish()
    }
}

impl Mount {
    /// Mounts a LazyFS showing `backing` (an existing directory, whose tree becomes the
    /// recording's base) at `mountpoint` (an existing empty directory).
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Unsupported`] when `backing` cannot be loaded;
    /// [`Error::Mount`] when FUSE is not available.
    pub fn new(backing: &Path, mountpoint: &Path) -> Result<Mount, Error> {
        let backing = backing.canonicalize().map_err(|source| Error::Io { path: backing.to_path_buf(), source })?;
        let (base, known) = Image::load(&backing)?;
        let state = Arc::new(Mutex::new(State::new(backing, known)));
        let mut config = Config::default();
        config.mount_options = vec![MountOption::FSName("pickleshelf-lazyfs".into()), MountOption::DefaultPermissions];
        let fs = LazyFs { state: state.clone() };
        let session = fuser::spawn_mount(fs, mountpoint, &config)
            .map_err(|source| Error::Mount { path: mountpoint.to_path_buf(), source })?;
        Ok(Mount { state, base: Arc::new(base), session: Some(session), mountpoint: mountpoint.to_path_buf() })
    }

    /// True when a FUSE file system can be mounted here: tries one, in a temporary
    /// directory, and says why not.
    ///
    /// # Errors
    /// The reason it cannot, as [`Error`].
    pub fn probe() -> Result<(), Error> {
        let dir = std::env::temp_dir().join(format!("lazyfs-probe-{}", std::process::id()));
        let (b, m) = (dir.join("b"), dir.join("m"));
        for d in [&b, &m] {
            std::fs::create_dir_all(d).map_err(|source| Error::Io { path: d.clone(), source })?;
        }
        let result = Mount::new(&b, &m).and_then(Mount::unmount).map(drop);
        let _ = std::fs::remove_dir_all(&dir);
        result
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Puts a note in the log; returns its position (the number of entries before it).
    pub fn mark(&self, text: impl Into<String>) -> usize {
        let mut s = self.state();
        let at = s.log.len();
        s.log.push(crate::log::Entry { op: Op::Mark(text.into()), path: PathBuf::new(), to: None });
        at
    }

    /// The number of log entries so far.
    pub fn position(&self) -> usize {
        self.state().log.len()
    }

    /// Cuts the power: from now on every request fails with `EIO` and nothing changes.
    /// Returns the cut point (the number of log entries), for
    /// [`Recording::crash_state`].
    pub fn cut_power(&self) -> usize {
        let mut s = self.state();
        s.powered = false;
        s.log.len()
    }

    /// A copy of the recording so far.
    pub fn recording(&self) -> Recording {
        Recording { base: self.base.clone(), log: self.state().log.clone() }
    }

    /// Unmounts and returns the recording.
    ///
    /// # Errors
    /// [`Error::Mount`] when the file system cannot be unmounted (a file still open on it).
    pub fn unmount(mut self) -> Result<Recording, Error> {
        let rec = self.recording();
        if let Some(session) = self.session.take() {
            session.umount_and_join().map_err(|source| Error::Mount { path: self.mountpoint.clone(), source })?;
        }
        Ok(rec)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(session) = self.session.take() {
            let _ = session.umount_and_join();
        }
    }
}
