//! Opening a store: the lock, a repair cut short, the format and auth checks, the witness
//! (a store older than its last sync is refused), the upgrade of a format 2 store, the
//! dictionaries, and the leftovers of writes a crash cut short.
//!
//! Invariant: a store is handed out only after its format, auth key and generation were
//! checked; a writable one only after commits a crash left in the packs but not in the
//! directory were voided and files no record names were removed (the records that name
//! the rest made durable first); a path that is not a store is never written into.

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex};

use super::{AUTH_CHECK, Config, Durability, FORMAT_READ_AS_IS, FORMAT_VERSION, Store};
use crate::blob::{Codec, Hasher};
use crate::cache::Cache;
use crate::chain::Chains;
use crate::error::{Error, Result};
use crate::index::{Index, IndexOptions};
use crate::lock::Holder;
use crate::witness::{self, Witness};

impl Store {
    /// Opens (or creates) the store `b` describes, once its options are validated: the lock, a repair cut short, the
    /// format and auth checks, the witness, the upgrade of a format 2 store, the
    /// dictionaries, and the leftovers a crash left.
    pub(crate) fn open(b: Config) -> Result<Arc<Store>> {
        b.validate()?;
        let path = b.path.clone();
        if !path.join("sled").exists() && b.sled_from.is_none() && has_packs(&path) {
            return Err(lost_directory(&path));
        }
        // A directory without a sled database (missing, or not a store) is no store.
        if (b.read_only || !b.create) && !path.join("sled").exists() && b.sled_from.is_none() {
            return Err(Error::Io {
                path,
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no store at this path"),
            });
        }
        if !path.join("sled").exists() && b.sled_from.is_none() {
            refuse_foreign(&path)?;
        }
        if !path.exists() {
            crate::index::create_dir_durable(&path)?;
        }
        let lock = crate::lock::take(&path, b.read_only, "a Shelf being opened")?;
        // A repair cut short: a writer finishes installing the rebuilt directory; a reader
        // cannot (it writes nothing).
        if crate::index::install_pending(&path) {
            if b.read_only {
                return Err(Error::Corrupted {
                    what: format!("store {}", path.display()),
                    reason: format!(
                        "a repair was interrupted: run `pickleshelf repair {}` to finish it",
                        path.display()
                    ),
                });
            }
            crate::index::finish_install(&path)?;
        }
        let hasher = b.hasher();
        let auth_check = |h: &Hasher| h.digest(AUTH_CHECK).0;
        let index = Index::open(
            &path,
            IndexOptions {
                create: !b.read_only,
                read_only: b.read_only,
                hasher: hasher.clone(),
                level: b.zstd_level,
                power_loss: b.durability == Durability::PowerLoss,
                auth: hasher.is_keyed().then(|| auth_check(&hasher)),
                sled_from: b.sled_from.clone(),
                commit_after: b.commit_interval,
                buffer_max: b.buffer_bytes,
            },
        )?;
        if index.is_empty()? {
            // No directory, but pages and a witness: sled's files were lost after a sync
            // (a restore that has not copied them, say), and creating a store here would
            // drop every pack. Without a witness no sync ever completed (the witness is
            // written after sled's files are fsynced): the packs hold only the commits of
            // an unacknowledged first sync, which a power cut may leave, and the store is
            // new.
            if has_packs(&path) && !matches!(witness::read(&path), Ok(None)) {
                return Err(lost_directory(&path));
            }
            if b.read_only {
                return Err(Error::Corrupted {
                    what: format!("store {}", path.display()),
                    reason: "it is empty".into(),
                });
            }
            index.set_meta("format", &FORMAT_VERSION.to_le_bytes())?;
            index.set_meta("generation", &0u64.to_le_bytes())?;
            if hasher.is_keyed() {
                index.set_meta("auth", &auth_check(&hasher))?;
            }
            index.flush()?;
        }
        let format = index
            .meta("format")?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map(u32::from_le_bytes)
            .ok_or_else(|| Error::Corrupted {
            what: format!("store {}", path.display()),
            reason: "no format record".into(),
        })?;
        // A format 2 store is upgraded by a writable open (below), and read as it is by
        // salvage; other opens refuse it.
        let upgrade = format == 2 && !b.read_only;
        if format != FORMAT_VERSION && format != FORMAT_READ_AS_IS && !upgrade && !(format == 2 && b.legacy) {
            return Err(Error::UnsupportedFormat { path, found: format, supported: FORMAT_VERSION });
        }
        index.use_legacy_settings(format == 2);
        match (index.meta("auth")?, hasher.is_keyed()) {
            (Some(stored), true) if stored.as_ref() != auth_check(&hasher) => {
                return Err(Error::AuthKey { path, reason: "the key given is not the store's key" });
            }
            (Some(_), false) => return Err(Error::AuthKey { path, reason: "the store requires an auth key" }),
            (None, true) => return Err(Error::AuthKey { path, reason: "the store was created without an auth key" }),
            _ => {}
        }
        index.count_objects();
        let generation = index
            .meta("generation")?
            .and_then(|v| <[u8; 8]>::try_from(v.as_ref()).ok())
            .map(u64::from_le_bytes)
            .unwrap_or(0);
        index.set_generation(generation);
        let witness = match witness::read(&path) {
            // Damaged: it cannot vouch for the store; allow_rollback(true) resets it below.
            Err(Error::Corrupted { .. }) if b.allow_rollback => Some(u64::MAX),
            other => other?.map(|w| w.generation),
        };
        // A rollback accepted: files and packs that no record names may hold the newer
        // state (which `pickleshelf repair` can bring back), so none is deleted below.
        let mut rolled_back = false;
        if let Some(witness) = witness
            && generation < witness
        {
            if !b.allow_rollback {
                return Err(Error::RolledBack { path, store_generation: generation, witness_generation: witness });
            }
            rolled_back = true;
            if !b.read_only {
                let seq = Some(index.newest_seq());
                witness::write(&path, Witness { generation, seq }, b.durability == Durability::PowerLoss)?;
            }
        }
        if upgrade {
            index.upgrade_from_format2(FORMAT_VERSION)?;
            index.use_legacy_settings(false);
        } else if format == FORMAT_READ_AS_IS && !b.read_only && !b.legacy {
            // Before anything of format 4 can be written: sled's log keeps this record
            // ahead of every later batch.
            index.set_meta("format", &FORMAT_VERSION.to_le_bytes())?;
            index.flush()?;
        }
        let codec = Codec::new(b.zstd_level, hasher);
        let mut current = 0;
        // A page of settings that cannot be read leaves its dictionaries out: the values
        // compressed with them cannot be read (their errors say so), the others can, and no
        // new dictionary is trained (it could take a lost one's id).
        let settings = index.settings("dict");
        let settings_read = settings.is_ok();
        for (name, bytes) in settings.unwrap_or_default() {
            if let Some(id) = name.strip_prefix("dict/").and_then(|s| s.parse::<u32>().ok()) {
                codec
                    .add_dict(id, bytes.to_vec())
                    .map_err(|reason| Error::Corrupted { what: format!("dictionary {id}"), reason: reason.into() })?;
            } else if name == "dict.current" {
                current = <[u8; 4]>::try_from(bytes.as_ref()).map(u32::from_le_bytes).unwrap_or(0);
            }
        }
        codec.set_current_dict(current);
        if !b.read_only {
            // Commits a crash left in the packs but not in the directory (or those a rollback
            // just accepted lost) are voided before anything new is committed.
            index.void_uncommitted()?;
        }
        if !b.read_only && !rolled_back {
            index.objects().clean_tmp()?;
            // Files without a record are leftovers of writes a crash cut short, or of
            // removals whose files the crash left — also when the object was written again
            // since with its frame in the tree (a delta, say), so that its record exists but
            // names no file. The records sled recovered are made durable first: were they
            // only in the page cache, a power loss could bring back an older record naming
            // a deleted file.
            let mut orphans = Vec::new();
            for (d, p, _) in index.objects().list()? {
                // A record that cannot be read (a damaged page) keeps its file: reads and
                // verify report the damage, and nothing more is lost.
                let orphan = match d {
                    Some(d) => index.object(&d).is_ok_and(|r| r.is_none_or(|r| r.in_tree)),
                    None => true,
                };
                if orphan {
                    orphans.push(p);
                }
            }
            // Pack files no page names: written by a commit a crash cut short, or emptied
            // by a compaction whose deletion the crash left.
            let orphan_packs = index.orphan_packs()?;
            if !orphans.is_empty() || !orphan_packs.is_empty() {
                index.make_durable()?;
            }
            for p in orphans {
                fs::remove_file(&p).map_err(io(&p))?;
            }
            for p in orphan_packs {
                index.remove_orphan_pack(&p)?;
            }
            // Best effort, as above: frame records in a damaged page stay where they are.
            let _ = index.remove_orphan_frames();
        }
        let samples = if current == 0 && !b.read_only && settings_read { Some((Vec::new(), 0)) } else { None };
        let store = Arc::new(Store {
            path,
            index,
            codec,
            protocol: b.protocol,
            read_only: b.read_only,
            durability: b.durability,
            samples: Mutex::new(samples),
            cache: Cache::new(b.cache_bytes, b.cache_entries),
            chains: Chains::default(),
            syncing: Mutex::new(()),
            dirty: AtomicBool::new(false),
            trainer: Mutex::new(None),
            training: AtomicBool::new(false),
            memos: AtomicUsize::new(0),
            lock,
            _temporary: b.temporary.clone(),
        });
        let weak: std::sync::Weak<dyn Holder> = Arc::downgrade(&store) as _;
        store.lock.attach(weak);
        Ok(store)
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// The error for a store whose page directory is gone while its packs are there.
fn lost_directory(dir: &Path) -> Error {
    Error::Corrupted {
        what: format!("store {}", dir.display()),
        reason: format!(
            "its page directory (sled/) is missing or empty but pages/ holds pack files: run `pickleshelf repair \
             {}` to rebuild the directory from them",
            dir.display()
        ),
    }
}

/// True when `dir/pages` holds a pack file.
fn has_packs(dir: &Path) -> bool {
    fs::read_dir(dir.join("pages"))
        .is_ok_and(|d| d.flatten().any(|e| e.file_name().to_string_lossy().ends_with(".pack")))
}

/// Refuses to turn `path` into a store when it is a file, or a directory holding anything
/// a store never holds (called when `path` has no `sled/`): nothing is written then. A
/// directory holding only a store's own entries (`LOCK`, `sled.new/` of a creation cut
/// short, ...) is a store being created.
fn refuse_foreign(path: &Path) -> Result<()> {
    const STORE_ENTRIES: [&str; 10] = [
        "LOCK",
        "WITNESS",
        "WITNESS.tmp",
        "sled",
        "sled.new",
        "pages",
        "objects",
        "REPAIR",
        "sled.rebuilt",
        "sled.damaged",
    ];
    if path.exists() && !path.is_dir() {
        return Err(Error::NotAStore { path: path.to_path_buf(), reason: "it is not a directory".into() });
    }
    let entries = match fs::read_dir(path) {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::Io { path: path.to_path_buf(), source: e }),
    };
    for entry in entries {
        let name = entry.map_err(io(path))?.file_name();
        if !STORE_ENTRIES.iter().any(|n| name == *n) {
            return Err(Error::NotAStore {
                path: path.to_path_buf(),
                reason: format!("it holds {:?}, which a store never does", name.to_string_lossy()),
            });
        }
    }
    Ok(())
}
