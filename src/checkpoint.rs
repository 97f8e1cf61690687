//! Named checkpoints: the whole key → value map of a store, recorded under a name, cheap to
//! take (digests, not copies), and restorable atomically.
//!
//! ```
//! # let dir = tempfile::tempdir().unwrap();
//! use pickleshelf::{ChangeKind, Shelf};
//! let shelf = Shelf::open(dir.path().join("state.db"))?;
//! shelf.insert("epoch", &1)?;
//! shelf.insert("weights", &vec![0.5; 10_000])?;
//! shelf.checkpoint("before-training")?;
//!
//! shelf.insert("epoch", &2)?;
//! shelf.remove("weights")?;
//! let changes = shelf.changes_since("before-training")?;
//! assert_eq!(changes.len(), 2);
//! assert_eq!((changes[0].key.as_str(), changes[0].kind), ("epoch", ChangeKind::Changed));
//!
//! shelf.restore("before-training")?; // one atomic write
//! assert_eq!(shelf.get::<i64>("epoch")?, Some(1));
//! assert_eq!(shelf.get::<Vec<f64>>("weights")?.map(|w| w.len()), Some(10_000));
//! # Ok::<(), pickleshelf::Error>(())
//! ```
//!
//! ## What a checkpoint holds
//!
//! One entry per key: the digest of its value. A checkpoint holds a reference on every
//! object it names, exactly as a key does, so the values it names stay stored while it
//! exists, and deleting it releases them (removing those nothing else refers to). Values
//! stored inline in their key records (frames of at most 4 KiB) are not objects: a frame of
//! at most 64 bytes is copied into the entry (as cheap as a reference); a larger one is
//! *promoted* when the checkpoint is taken — it becomes a reference-counted object that the
//! key and the checkpoint share, so a later checkpoint of the same value costs a reference.
//! Reading a promoted key costs one more record read than an inline one; writing the key
//! again stores the new value inline as usual.
//!
//! Checkpoints cover the store's keys, not memoized results ([`crate::Memo`]). Taking,
//! restoring and deleting a checkpoint are each one atomic commit (see `docs/FORMAT.md`) that
//! builds in memory: their cost is linear in the number of keys. Together with delta
//! storage ([`crate::Shelf::insert`] stores a new version of a large value as a delta against a
//! similar earlier one), a checkpoint after each save keeps a history of program state
//! that costs about what changed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::blob::Digest;
use crate::error::{CheckpointProblem, Error, Result};
use crate::index::{CheckpointHeader, Op, Space, Stored, check_checkpoint_name};
use crate::store::Store;

/// A checkpoint, as [`Shelf::checkpoints`](crate::Shelf::checkpoints) lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CheckpointInfo {
    /// Its name.
    pub name: String,
    /// When it was taken (millisecond precision).
    pub created: SystemTime,
    /// Number of keys it holds.
    pub keys: u64,
    /// Stored (compressed) bytes of the values it names, each distinct value counted once:
    /// what the checkpoint keeps alive, shared or not with the store's keys and other
    /// checkpoints.
    pub bytes: u64,
}

/// How a key differs between two states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ChangeKind {
    /// The key exists only in the later state.
    Added,
    /// The key exists only in the earlier state.
    Removed,
    /// The key exists in both with different values.
    Changed,
}

/// A key that differs between two states; see [`Shelf::diff`](crate::Shelf::diff).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Change {
    /// The key.
    pub key: String,
    /// How it differs.
    pub kind: ChangeKind,
    /// The digest of its value in the earlier state.
    pub before: Option<Digest>,
    /// The digest of its value in the later state.
    pub after: Option<Digest>,
}

/// What the store records of checkpoint `name`, as [`CheckpointInfo`].
fn info(name: String, h: CheckpointHeader) -> CheckpointInfo {
    CheckpointInfo { name, created: UNIX_EPOCH + Duration::from_millis(h.created_ms), keys: h.keys, bytes: h.bytes }
}

fn not_found(name: &str) -> Error {
    Error::Checkpoint { name: name.to_owned(), problem: CheckpointProblem::NotFound }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Walks two key-ordered sequences of (key, record) together, calling `f` for every key
/// whose value differs: (key, earlier record, later record).
fn merge<A, B>(a: A, b: B, mut f: impl FnMut(String, Option<Stored>, Option<Stored>) -> Result<()>) -> Result<()>
where
    A: Iterator<Item = Result<(String, Stored)>>,
    B: Iterator<Item = Result<(String, Stored)>>,
{
    let (mut a, mut b) = (a, b);
    let mut x = a.next().transpose()?;
    let mut y = b.next().transpose()?;
    loop {
        match (x.take(), y.take()) {
            (None, None) => return Ok(()),
            (Some((k, s)), None) => {
                f(k, Some(s), None)?;
                x = a.next().transpose()?;
            }
            (None, Some((k, s))) => {
                f(k, None, Some(s))?;
                y = b.next().transpose()?;
            }
            (Some(l), Some(r)) => match l.0.as_bytes().cmp(r.0.as_bytes()) {
                std::cmp::Ordering::Less => {
                    f(l.0, Some(l.1), None)?;
                    x = a.next().transpose()?;
                    y = Some(r);
                }
                std::cmp::Ordering::Greater => {
                    f(r.0, None, Some(r.1))?;
                    y = b.next().transpose()?;
                    x = Some(l);
                }
                std::cmp::Ordering::Equal => {
                    if l.1.digest() != r.1.digest() {
                        f(l.0, Some(l.1), Some(r.1))?;
                    }
                    x = a.next().transpose()?;
                    y = b.next().transpose()?;
                }
            },
        }
    }
}

fn change(key: String, before: Option<&Stored>, after: Option<&Stored>) -> Change {
    let kind = match (before, after) {
        (None, _) => ChangeKind::Added,
        (_, None) => ChangeKind::Removed,
        _ => ChangeKind::Changed,
    };
    Change { key, kind, before: before.map(Stored::digest), after: after.map(Stored::digest) }
}

/// Records the store's keys and values as checkpoint `name` ([`crate::Shelf::checkpoint`]).
pub(crate) fn take(store: &Store, name: &str) -> Result<CheckpointInfo> {
    store.writable()?;
    check_checkpoint_name(name)?;
    let h = store.index().writer().create_checkpoint(name, now_ms())?;
    store.mark_dirty();
    Ok(info(name.to_owned(), h))
}

/// Every checkpoint, in name order ([`crate::Shelf::checkpoints`]).
pub(crate) fn list(store: &Store) -> Result<Vec<CheckpointInfo>> {
    Ok(store.index().checkpoints()?.into_iter().map(|(name, h)| info(name, h)).collect())
}

/// The keys of checkpoint `name` with their digests ([`crate::Shelf::checkpoint_keys`]).
pub(crate) fn keys(store: &Store, name: &str) -> Result<Vec<(String, Digest)>> {
    let index = store.index();
    if index.checkpoint(name)?.is_none() {
        return Err(not_found(name));
    }
    index.checkpoint_entries(name).map(|r| r.map(|(k, s)| (k, s.digest()))).collect()
}

/// The pickle bytes `key` held in checkpoint `name` ([`crate::Shelf::get_pickle_at`]).
pub(crate) fn get_pickle_at(store: &Store, name: &str, key: &str) -> Result<Option<Vec<u8>>> {
    let index = store.index();
    // From reading the entry to reading its frames (see `Index::pin_files`).
    let _pin = index.pin_files();
    match index.checkpoint_entry(name, key)? {
        Some(stored) => store.load(key, stored).map(Some),
        None if index.checkpoint(name)?.is_none() => Err(not_found(name)),
        None => Ok(None),
    }
}

/// Makes the store's keys those of checkpoint `name`, in one commit
/// ([`crate::Shelf::restore`]).
pub(crate) fn restore(store: &Store, name: &str) -> Result<Vec<Change>> {
    store.writable()?;
    let index = store.index();
    let writer = index.writer();
    if index.checkpoint(name)?.is_none() {
        return Err(not_found(name));
    }
    let mut changes = Vec::new();
    let mut ops = Vec::new();
    merge(index.scan(""), index.checkpoint_entries(name), |key, now, then| {
        changes.push(change(key.clone(), now.as_ref(), then.as_ref()));
        ops.push(match then {
            None => Op::remove(key),
            Some(Stored::Object { digest }) => Op::Link { space: Space::Keys, key, header: Vec::new(), digest },
            Some(Stored::Inline { digest, frame }) => Op::put(key, digest, frame.to_vec(), None),
        });
        Ok(())
    })?;
    if !ops.is_empty() {
        store.commit(&writer, ops)?;
    }
    Ok(changes)
}

/// The keys whose values differ between checkpoints `from` and `to`
/// ([`crate::Shelf::diff`]).
pub(crate) fn diff(store: &Store, from: &str, to: &str) -> Result<Vec<Change>> {
    let index = store.index();
    for name in [from, to] {
        if index.checkpoint(name)?.is_none() {
            return Err(not_found(name));
        }
    }
    let mut out = Vec::new();
    merge(index.checkpoint_entries(from), index.checkpoint_entries(to), |key, a, b| {
        out.push(change(key, a.as_ref(), b.as_ref()));
        Ok(())
    })?;
    Ok(out)
}

/// The keys whose values differ between checkpoint `from` and the store now
/// ([`crate::Shelf::changes_since`]).
pub(crate) fn changes_since(store: &Store, from: &str) -> Result<Vec<Change>> {
    let index = store.index();
    // One state of the store: no write between the two scans' starts.
    let _writer = index.writer();
    if index.checkpoint(from)?.is_none() {
        return Err(not_found(from));
    }
    let mut out = Vec::new();
    merge(index.checkpoint_entries(from), index.scan(""), |key, a, b| {
        out.push(change(key, a.as_ref(), b.as_ref()));
        Ok(())
    })?;
    Ok(out)
}

/// Deletes the checkpoints `names` in one commit; per name, whether it existed
/// ([`crate::Shelf::delete_checkpoints`]).
pub(crate) fn delete(store: &Store, names: &[&str]) -> Result<Vec<bool>> {
    store.writable()?;
    let existed = store.index().writer().delete_checkpoints(names)?;
    if existed.contains(&true) {
        store.mark_dirty();
    }
    Ok(existed)
}
