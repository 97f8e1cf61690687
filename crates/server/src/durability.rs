//! Syncing the store for the server: group commit for `appendfsync always`, a sync a
//! second for `everysec`.
//!
//! Invariant (`always`): [`Syncer::wait_durable`] returns only after a `Shelf::sync`
//! that *started* after every write counted by [`Syncer::wrote`] before the call; one
//! sync serves every writer waiting when it starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use pickleshelf::Shelf;
use tokio::sync::watch;

use crate::config::AppendFsync;

/// The sync thread's shared state.
pub(crate) struct Syncer {
    /// Writes done (by any connection).
    writes: AtomicU64,
    /// The highest write count a waiter asked to have synced.
    wanted: Mutex<u64>,
    wake: Condvar,
    /// The write count the last finished sync covers (`u64::MAX` once stopped).
    done: watch::Sender<u64>,
    /// Syncs that failed (each also logged).
    pub(crate) failures: AtomicU64,
    /// True once the thread is to stop.
    stop: Mutex<bool>,
}

impl Syncer {
    /// Starts the sync thread for `mode` (none for [`AppendFsync::No`]).
    pub(crate) fn start(
        shelf: Shelf,
        mode: AppendFsync,
    ) -> std::io::Result<(Arc<Syncer>, Option<std::thread::JoinHandle<()>>)> {
        let s = Arc::new(Syncer {
            writes: AtomicU64::new(0),
            wanted: Mutex::new(0),
            wake: Condvar::new(),
            done: watch::channel(0).0,
            failures: AtomicU64::new(0),
            stop: Mutex::new(false),
        });
        let handle = match mode {
            AppendFsync::No => None,
            AppendFsync::Always | AppendFsync::Everysec => {
                let me = Arc::clone(&s);
                Some(std::thread::Builder::new().name("pickleshelf-sync".into()).spawn(move || me.run(shelf, mode))?)
            }
        };
        Ok((s, handle))
    }

    /// Counts a write (call after it is applied).
    pub(crate) fn wrote(&self) {
        self.writes.fetch_add(1, Ordering::AcqRel);
    }

    /// Waits until every write counted so far is durable (group commit). Returns false
    /// when the sync failed or the syncer stopped.
    pub(crate) async fn wait_durable(&self) -> bool {
        let target = self.writes.load(Ordering::Acquire);
        {
            let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
            if *wanted < target {
                *wanted = target;
            }
        }
        self.wake.notify_one();
        let mut rx = self.done.subscribe();
        let failures = self.failures.load(Ordering::Acquire);
        match rx.wait_for(|&done| done >= target).await {
            Ok(v) => *v != u64::MAX && self.failures.load(Ordering::Acquire) == failures,
            Err(_) => false,
        }
    }

    /// Asks the thread to stop (it syncs no more; the server syncs at shutdown).
    pub(crate) fn stop(&self) {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    fn stopped(&self) -> bool {
        *self.stop.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn run(&self, shelf: Shelf, mode: AppendFsync) {
        let mut synced = 0u64;
        loop {
            let target = {
                let mut wanted = self.wanted.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if self.stopped() {
                        self.done.send_replace(u64::MAX);
                        return;
                    }
                    match mode {
                        AppendFsync::Always if *wanted > synced => break,
                        AppendFsync::Always => {
                            wanted = self.wake.wait(wanted).unwrap_or_else(PoisonError::into_inner);
                        }
                        _ => {
                            let (w, _) = self
                                .wake
                                .wait_timeout(wanted, Duration::from_secs(1))
                                .unwrap_or_else(PoisonError::into_inner);
                            wanted = w;
                            if self.writes.load(Ordering::Acquire) > synced {
                                break;
                            }
                        }
                    }
                }
                drop(wanted);
                // Everything counted before the sync starts is in it.
                self.writes.load(Ordering::Acquire)
            };
            if let Err(e) = shelf.sync() {
                self.failures.fetch_add(1, Ordering::AcqRel);
                log::error!("sync of the store failed: {e}");
            }
            synced = target;
            self.done.send_replace(target);
        }
    }
}
