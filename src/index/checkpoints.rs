//! Checkpoint records: a checkpoint is a header record and one entry per key the store
//! held when it was taken (see `docs/FORMAT.md`).
//!
//! Invariant: an entry has a key record's layout. An entry naming an object (`0x02`) holds
//! one reference on it, like a key record. Inline values of at most [`COPY_MAX`] bytes of
//! frame are copied into the entry (`0x01`: as cheap as a reference); larger inline values
//! are *promoted* when the checkpoint is taken: they become objects (frame records), and
//! the key record and the entry both refer to them. A checkpoint is written, and deleted,
//! in one commit together with every refcount it changes.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::{Batch, Index, KeyRecord, NewObject, Space, Stored, Writer, key_of};
use crate::blob::Digest;
use crate::error::{CheckpointProblem, Error, Result};
use crate::index::CheckpointHeader;

/// Inline frames up to this length are copied into a checkpoint's entries; larger ones are
/// promoted to objects.
pub(crate) const COPY_MAX: usize = 64;
/// Longest checkpoint name, in UTF-8 bytes.
pub(crate) const MAX_NAME_LEN: usize = 255;

const PREFIX_CHECKPOINT: u8 = b'C';
const PREFIX_ENTRY: u8 = b'c';

/// Fails unless `name` can name a checkpoint: 1 to [`MAX_NAME_LEN`] bytes, no NUL.
pub(crate) fn check_name(name: &str) -> Result<()> {
    let problem = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 255 bytes"
    } else if name.contains('\0') {
        "it contains a NUL character"
    } else {
        return Ok(());
    };
    Err(Error::Checkpoint { name: name.chars().take(40).collect(), problem: CheckpointProblem::InvalidName(problem) })
}

fn header_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(PREFIX_CHECKPOINT);
    k.extend_from_slice(name.as_bytes());
    k
}

fn entry_prefix(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(2 + name.len());
    k.push(PREFIX_ENTRY);
    k.extend_from_slice(name.as_bytes());
    k.push(0);
    k
}

fn entry_key(name: &str, key: &str) -> Vec<u8> {
    let mut k = entry_prefix(name);
    k.extend_from_slice(key.as_bytes());
    k
}

impl Index {
    fn bad_checkpoint(&self, what: &str) -> Error {
        self.corrupted(what.to_owned(), "bad layout")
    }

    /// The header of checkpoint `name`.
    pub(crate) fn checkpoint(&self, name: &str) -> Result<Option<CheckpointHeader>> {
        let raw = self.tree.get(&header_key(name))?;
        raw.map(|r| CheckpointHeader::parse(&r).ok_or_else(|| self.bad_checkpoint(&format!("checkpoint {name:?}"))))
            .transpose()
    }

    /// Every checkpoint with its header, in name order.
    pub(crate) fn checkpoints(&self) -> Result<Vec<(String, CheckpointHeader)>> {
        let mut out = Vec::new();
        for item in self.tree.scan(&[PREFIX_CHECKPOINT]) {
            let (k, v) = item?;
            let name = std::str::from_utf8(&k[1..]).map_err(|_| self.bad_checkpoint("a checkpoint name"))?;
            let header =
                CheckpointHeader::parse(&v).ok_or_else(|| self.bad_checkpoint(&format!("checkpoint {name:?}")))?;
            out.push((name.to_owned(), header));
        }
        Ok(out)
    }

    /// The entries of checkpoint `name` in key order: each key with its value's record.
    pub(crate) fn checkpoint_entries(&self, name: &str) -> impl Iterator<Item = Result<(String, Stored)>> + '_ {
        let skip = name.len() + 2;
        self.tree.scan(&entry_prefix(name)).map(move |item| {
            let (k, v) = item?;
            let key = k
                .get(skip..)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| self.corrupted("a checkpoint entry".into(), "key is not UTF-8"))?;
            let (_, stored) = self.parse_record(Space::Keys, key, v)?;
            Ok((key.to_owned(), stored))
        })
    }

    /// The entry of `key` in checkpoint `name`.
    pub(crate) fn checkpoint_entry(&self, name: &str, key: &str) -> Result<Option<Stored>> {
        let raw = self.tree.get(&entry_key(name, key))?;
        raw.map(|r| self.parse_record(Space::Keys, key, r).map(|(_, s)| s)).transpose()
    }

    /// The entries of every checkpoint: checkpoint name, key and value record.
    pub(crate) fn all_checkpoint_entries(&self) -> impl Iterator<Item = Result<(String, String, Stored)>> + '_ {
        self.tree.scan(&[PREFIX_ENTRY]).map(move |item| {
            let (k, v) = item?;
            let bad = || self.corrupted("a checkpoint entry".into(), "bad key");
            let rest = k.get(1..).ok_or_else(bad)?;
            let nul = rest.iter().position(|&b| b == 0).ok_or_else(bad)?;
            let name = std::str::from_utf8(&rest[..nul]).map_err(|_| bad())?;
            let key = std::str::from_utf8(&rest[nul + 1..]).map_err(|_| bad())?;
            let (_, stored) = self.parse_record(Space::Keys, key, v)?;
            Ok((name.to_owned(), key.to_owned(), stored))
        })
    }
}

impl Writer<'_> {
    /// Records the store's keys as checkpoint `name` (see the module docs), in one batch.
    pub(crate) fn create_checkpoint(&self, name: &str, created_ms: u64) -> Result<CheckpointHeader> {
        let index = self.index;
        check_name(name)?;
        if index.checkpoint(name)?.is_some() {
            return Err(Error::Checkpoint { name: name.to_owned(), problem: CheckpointProblem::Exists });
        }
        let mut batch = Batch::default();
        let mut deltas: BTreeMap<Digest, i64> = BTreeMap::new();
        let mut new_objects: HashMap<Digest, NewObject> = HashMap::new();
        let mut header = CheckpointHeader { created_ms, keys: 0, bytes: 0 };
        let mut counted: HashSet<Digest> = HashSet::new();
        for item in index.scan_in(Space::Keys, "") {
            let (key, _, stored) = item?;
            header.keys += 1;
            let entry = match stored {
                Stored::Inline { digest, frame } if frame.len() <= COPY_MAX => {
                    header.bytes += frame.len() as u64;
                    KeyRecord::inline(&digest, &frame)
                }
                Stored::Inline { digest, frame } => {
                    // Promoted: the key record and the entry both name the object.
                    *deltas.entry(digest).or_insert(0) += 2;
                    if counted.insert(digest) {
                        header.bytes += match index.object(&digest)? {
                            Some(r) => r.stored_len,
                            None => frame.len() as u64,
                        };
                    }
                    new_objects.entry(digest).or_insert_with(|| NewObject { frame: frame.to_vec(), delta: None });
                    batch.insert(key_of(&key), KeyRecord::object(&digest));
                    KeyRecord::object(&digest)
                }
                Stored::Object { digest } => {
                    *deltas.entry(digest).or_insert(0) += 1;
                    if counted.insert(digest) {
                        header.bytes += index.object(&digest)?.map_or(0, |r| r.stored_len);
                    }
                    KeyRecord::object(&digest)
                }
            };
            batch.insert(entry_key(name, &key), entry);
        }
        batch.insert(header_key(name), &header.encode()[..]);
        self.settle(batch, deltas, new_objects)?;
        Ok(header)
    }

    /// Deletes the checkpoints `names` and releases their references, all in one batch;
    /// returns, per name, whether it existed (a name given twice is deleted once, so its
    /// second time is `false`).
    pub(crate) fn delete_checkpoints(&self, names: &[&str]) -> Result<Vec<bool>> {
        let index = self.index;
        let mut batch = Batch::default();
        let mut deltas: BTreeMap<Digest, i64> = BTreeMap::new();
        let mut seen = HashSet::new();
        let mut existed = Vec::with_capacity(names.len());
        for &name in names {
            if !seen.insert(name) || index.checkpoint(name)?.is_none() {
                existed.push(false);
                continue;
            }
            for item in index.checkpoint_entries(name) {
                let (key, stored) = item?;
                if let Stored::Object { digest } = stored {
                    *deltas.entry(digest).or_insert(0) -= 1;
                }
                batch.remove(entry_key(name, &key));
            }
            batch.remove(header_key(name));
            existed.push(true);
        }
        if existed.contains(&true) {
            self.settle(batch, deltas, HashMap::new())?;
        }
        Ok(existed)
    }
}
