//! `Shelf::stats` and `Shelf::key_info`: what a store holds and what it costs on
//! disk, read from its records and frame headers alone.
//!
//! Invariant: nothing here decompresses, verifies or changes anything; a value whose
//! frame header cannot be read is counted in [`Stats::unreadable`] (or shown without a
//! size by `Shelf::key_info`) and left for `Shelf::verify` to explain.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::path::Path;

use crate::blob::{self, Compression, Digest};
use crate::error::{Error, Result};
use crate::index::{Space, Stored};
use crate::store::{FORMAT_VERSION, Store};

/// Counts and sizes of a whole store, from [`Shelf::stats`](crate::Shelf::stats).
///
/// Three byte counts describe where space goes, over the store's keys and its memoized
/// results ([`crate::Memo`]) alike:
/// - [`logical_bytes`](Stats::logical_bytes): the pickles of all keys and memo results,
///   as reading every one would return them;
/// - [`unique_bytes`](Stats::unique_bytes): the pickle bytes the store actually keeps —
///   a large value shared by several keys is kept once, a small (inline) value once per
///   key;
/// - [`stored_bytes`](Stats::stored_bytes): what those take after compression: the
///   object files, plus the record pages, which hold the inline values (compressed page
///   by page, together with the keys and the other records).
///
/// So [`dedup_ratio`](Stats::dedup_ratio) is `logical / unique` and
/// [`compression_ratio`](Stats::compression_ratio) is `unique / stored`.
/// [`disk_bytes`](Stats::disk_bytes) adds the storage engine's own overhead.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// The on-disk format version the store records: [`FORMAT_VERSION`], or 3 for a
    /// format 3 store opened read-only (a writable open marks it format 4).
    pub format_version: u32,
    /// The store's generation: how many times it was synced.
    pub generation: u64,
    /// Number of keys.
    pub keys: u64,
    /// Number of memoized results ([`crate::Memo`]).
    pub memo_entries: u64,
    /// Keys and memo results whose value is stored inline, inside their record.
    pub inline_values: u64,
    /// Large values stored once in their own object file, each shared by one or more
    /// keys or memo results.
    pub objects: u64,
    /// Keys and memo results whose value is an object. (An object's reference count
    /// also counts checkpoint entries and deltas stored against it.)
    pub object_refs: u64,
    /// Number of named checkpoints ([`Shelf::checkpoint`](crate::Shelf::checkpoint)).
    pub checkpoints: u64,
    /// Total length of the pickles of all keys and memo results.
    pub logical_bytes: u64,
    /// Total length of the pickles kept: inline values per record, objects once —
    /// including objects only checkpoints or deltas keep alive, which no key or memo
    /// result counts in `logical_bytes`.
    pub unique_bytes: u64,
    /// Bytes the values take stored: object files plus [`page_bytes`](Stats::page_bytes)
    /// (compressed form of `unique_bytes`, with the records' own overhead).
    pub stored_bytes: u64,
    /// Number of record pages (see `docs/FORMAT.md`).
    pub pages: u64,
    /// Bytes of the record pages' compressed images: every record but metadata, with the
    /// inline values and the frames of small objects.
    pub page_bytes: u64,
    /// Bytes of the pack files that hold the pages; more than `page_bytes` by the images
    /// later commits replaced (reclaimed by compaction).
    pub pack_bytes: u64,
    /// Total size of every file in the store's directory (their lengths: the apparent
    /// size, `du --apparent-size`).
    pub disk_bytes: u64,
    /// Bytes the file system allocates to the store's directory, its subdirectories and
    /// files: what `du -s` reports (on Unix, `st_blocks × 512`; elsewhere the apparent
    /// size of the files). Less than
    /// [`disk_bytes`](Stats::disk_bytes) where files have holes (sled's log segments
    /// once their padding is given back), more where small files fill whole blocks.
    pub allocated_bytes: u64,
    /// The compression dictionary new values of 4 to 64 KiB use, if the store has trained
    /// one.
    pub dictionary: Option<u32>,
    /// Values whose frame header could not be read (see [`Shelf::verify`](crate::Shelf::verify)); they are
    /// counted as keys or memo results but add nothing to the byte counts.
    pub unreadable: u64,
}

impl Stats {
    /// `logical_bytes / unique_bytes`: how much sharing saves (1.0 for an empty store).
    pub fn dedup_ratio(&self) -> f64 {
        ratio(self.logical_bytes, self.unique_bytes)
    }

    /// `unique_bytes / stored_bytes`: how much compression saves (1.0 for an empty store).
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.unique_bytes, self.stored_bytes)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 1.0 } else { a as f64 / b as f64 }
}

/// One key's storage, from [`Shelf::key_info`](crate::Shelf::key_info).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key.
    pub key: String,
    /// The address of its value (blake3 of the pickle, keyed in an authenticated store).
    pub digest: Digest,
    /// Length of the pickle; `None` when the frame header cannot be read.
    pub size: Option<u64>,
    /// Length of the stored frame (compressed size plus a few header bytes).
    pub stored: u64,
    /// How the value is compressed; `None` when the frame header cannot be read.
    pub compression: Option<Compression>,
    /// For a value stored as an object, its reference count: the keys, checkpoint entries
    /// and deltas (stored against it) that use it; `None` for an inline value.
    pub shared_by: Option<u64>,
}

/// The longest frame header: version, codec and two LEB128 numbers.
const HEADER_MAX: u64 = 22;

/// Reads the header of an object file (`None` when missing or malformed).
fn object_header(store: &Store, digest: &Digest, in_tree: bool) -> Option<(Compression, u64)> {
    if in_tree {
        // A small object (a delta, mostly): its frame is a record, read whole.
        return blob::header(&store.index().frame(digest).ok()?);
    }
    let path = store.index().objects().path_of(digest);
    let mut head = Vec::with_capacity(HEADER_MAX as usize);
    fs::File::open(path).ok()?.take(HEADER_MAX).read_to_end(&mut head).ok()?;
    blob::header(&head)
}

/// The apparent size of the files under `dir`, and what the file system allocates to
/// them and to the directories, `dir` included, as `du -s` counts (unreadable entries
/// count as nothing: sled may delete a file while it is listed).
fn dir_size(dir: &Path) -> (u64, u64) {
    let (mut total, mut allocated) = (0, 0);
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        if let Ok(m) = fs::metadata(&d) {
            allocated += dir_allocated_len(&m);
        }
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => todo.push(e.path()),
                Ok(t) if t.is_file() => {
                    if let Ok(m) = e.metadata() {
                        total += m.len();
                        allocated += allocated_len(&m);
                    }
                }
                _ => {}
            }
        }
    }
    (total, allocated)
}

/// The bytes the file system allocates to a file (`du`'s figure).
#[cfg(unix)]
fn allocated_len(m: &fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    m.blocks().saturating_mul(512)
}

/// The bytes the file system allocates to a file: its length where the block count is
/// not known.
#[cfg(not(unix))]
fn allocated_len(m: &fs::Metadata) -> u64 {
    m.len()
}

/// The bytes the file system allocates to a directory (nothing where unknown).
fn dir_allocated_len(m: &fs::Metadata) -> u64 {
    if cfg!(unix) { allocated_len(m) } else { 0 }
}

/// What the file system allocates to the store in `dir` ([`crate::Shelf::size_on_disk`]).
pub(crate) fn size_on_disk(dir: &Path) -> u64 {
    dir_size(dir).1
}

/// Counts keys, memo results, objects and bytes ([`crate::Shelf::stats`]).
pub(crate) fn stats(store: &Store) -> Result<Stats> {
    let index = store.index();
    // Object files stay in place while they are read (a concurrent removal and sync
    // could delete one otherwise).
    let _pin = index.pin_files();
    let mut s = Stats {
        // The version the store's directory records: a format 3 store opened
        // read-only stays format 3 (a writable open marks it format 4).
        format_version: index
            .meta("format")?
            .and_then(|v| <[u8; 4]>::try_from(v.as_ref()).ok())
            .map_or(FORMAT_VERSION, u32::from_le_bytes),
        generation: index.generation(),
        dictionary: match index.setting("dict.current")? {
            Some(v) => <[u8; 4]>::try_from(v.as_ref()).ok().map(u32::from_le_bytes).filter(|&id| id != 0),
            None => None,
        },
        ..Stats::default()
    };
    (s.disk_bytes, s.allocated_bytes) = dir_size(store.path());
    s.checkpoints = index.checkpoints()?.len() as u64;
    let tree = index.tree_stats();
    s.pages = tree.pages;
    s.page_bytes = tree.live_bytes;
    s.pack_bytes = tree.pack_bytes;
    s.stored_bytes = tree.live_bytes;
    // Objects first: each one's pickle length, read once from its file's header.
    let mut object_len: HashMap<Digest, Option<u64>> = HashMap::new();
    for item in index.object_records() {
        let (digest, record) = item?;
        s.objects += 1;
        if !record.in_tree {
            s.stored_bytes += record.stored_len;
        }
        let len = object_header(store, &digest, record.in_tree).map(|(_, len)| len);
        s.unique_bytes += len.unwrap_or(0);
        object_len.insert(digest, len);
    }
    let records = index.scan_in(Space::Keys, "").map(|r| r.map(|(_, _, s)| (true, s)));
    let memo = index.scan_in(Space::Memo, "").map(|r| r.map(|(_, _, s)| (false, s)));
    for item in records.chain(memo) {
        let (is_key, stored) = item?;
        if is_key {
            s.keys += 1;
        } else {
            s.memo_entries += 1;
        }
        let len = match &stored {
            Stored::Inline { frame, .. } => {
                s.inline_values += 1;
                let len = blob::header(frame).map(|(_, len)| len);
                s.unique_bytes += len.unwrap_or(0);
                len
            }
            Stored::Object { digest } => {
                s.object_refs += 1;
                object_len.get(digest).copied().flatten()
            }
        };
        match len {
            Some(n) => s.logical_bytes += n,
            None => s.unreadable += 1,
        }
    }
    Ok(s)
}

/// The storage of each key starting with `prefix` ([`crate::Shelf::key_info`]).
pub(crate) fn key_info<'a>(store: &'a Store, prefix: &str) -> impl Iterator<Item = Result<KeyInfo>> + 'a {
    store.index().scan(prefix).map(move |item| {
        let _pin = store.index().pin_files();
        let (key, stored) = item?;
        let digest = stored.digest();
        Ok(match stored {
            Stored::Inline { frame, .. } => {
                let header = blob::header(&frame);
                KeyInfo {
                    key,
                    digest,
                    size: header.map(|(_, len)| len),
                    stored: frame.len() as u64,
                    compression: header.map(|(c, _)| c),
                    shared_by: None,
                }
            }
            Stored::Object { digest } => {
                let record = store.index().object(&digest)?.ok_or_else(|| Error::Corrupted {
                    what: format!("key {key:?}"),
                    reason: format!("it names object {digest}, which has no record"),
                })?;
                let header = object_header(store, &digest, record.in_tree);
                KeyInfo {
                    key,
                    digest,
                    size: header.map(|(_, len)| len),
                    stored: record.stored_len,
                    compression: header.map(|(c, _)| c),
                    shared_by: Some(record.refs),
                }
            }
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Shelf;

    fn store() -> Result<(tempfile::TempDir, Shelf)> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let shelf = Shelf::open(dir.path().join("s"))?;
        Ok((dir, shelf))
    }

    #[test]
    fn empty_store() -> Result<()> {
        let (_dir, shelf) = store()?;
        let s = shelf.stats()?;
        assert_eq!((s.keys, s.objects, s.logical_bytes, s.stored_bytes), (0, 0, 0, 0));
        assert_eq!(s.format_version, FORMAT_VERSION);
        assert_eq!((s.dedup_ratio(), s.compression_ratio()), (1.0, 1.0));
        assert!(s.disk_bytes > 0);
        Ok(())
    }

    /// `allocated_bytes` is what `du -s` reports for the store's directory (on Linux, where
    /// `du` is at hand).
    #[test]
    #[cfg(target_os = "linux")]
    fn allocated_bytes_are_what_du_says() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let path = dir.path().join("s");
        let shelf = Shelf::open(&path)?;
        for i in 0..200u64 {
            shelf.insert(&format!("k{i}"), &vec![i; 100])?;
        }
        shelf.close()?;
        let shelf = Shelf::builder(&path).read_only(true).open()?;
        let s = shelf.stats()?;
        let du = std::process::Command::new("du").args(["-s", "-B1"]).arg(&path).output();
        let Ok(du) = du.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()) else {
            return Ok(()); // no du: nothing to compare with
        };
        let du: u64 = du.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0);
        assert_eq!(s.allocated_bytes, du, "apparent {}", s.disk_bytes);
        Ok(())
    }

    #[test]
    fn counts_match_the_values() -> Result<()> {
        let (_dir, shelf) = store()?;
        let big: Vec<u64> = (0..10_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        shelf.insert("big1", &big)?;
        shelf.insert("big2", &big)?;
        shelf.insert("small1", &"x")?;
        shelf.insert("small2", &"x")?;
        let len = |k: &str| -> Result<u64> { Ok(shelf.get_pickle(k)?.map_or(0, |b| b.len() as u64)) };
        let s = shelf.stats()?;
        assert_eq!((s.keys, s.inline_values, s.objects, s.object_refs, s.unreadable), (4, 2, 1, 2, 0));
        let logical = len("big1")? * 2 + len("small1")? * 2;
        assert_eq!(s.logical_bytes, logical);
        // The big value is kept once, the small ones per key.
        assert_eq!(s.unique_bytes, len("big1")? + len("small1")? * 2);
        assert!(s.stored_bytes <= s.unique_bytes + 100, "{s:?}");

        let infos = shelf.key_info("").collect::<Result<Vec<_>>>()?;
        assert_eq!(infos.iter().map(|i| i.key.as_str()).collect::<Vec<_>>(), ["big1", "big2", "small1", "small2"]);
        assert_eq!(infos[0].shared_by, Some(2));
        assert!(infos[0].compression.is_some());
        assert_eq!(infos[0].size, Some(len("big1")?));
        assert_eq!(infos[2].compression, Some(Compression::None));
        assert_eq!(infos[2].digest, shelf.digest("small1")?.unwrap_or(Digest([0; 32])));
        assert_eq!(infos.iter().map(|i| i.size.unwrap_or(0)).sum::<u64>(), logical);
        assert_eq!(shelf.key_info("small").count(), 2);
        Ok(())
    }

    #[test]
    fn memo_results_are_counted_apart_from_keys() -> Result<()> {
        let (_dir, shelf) = store()?;
        shelf.insert("k", &"v")?;
        let memo = shelf.memo("square")?;
        for n in 0..3u64 {
            memo.get_or_compute(&(n,), || n * n)?;
        }
        memo.sync()?;
        let s = shelf.stats()?;
        assert_eq!((s.keys, s.memo_entries, s.inline_values), (1, 3, 4));
        assert_eq!(shelf.key_info("").count(), 1, "key_info lists keys only");
        Ok(())
    }

    #[test]
    fn a_missing_object_file_is_unreadable_not_an_error() -> Result<()> {
        let (_dir, shelf) = store()?;
        let big: Vec<u64> = (0..10_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
        shelf.insert("big", &big)?;
        shelf.sync()?;
        let digest = shelf.digest("big")?.unwrap_or(Digest([0; 32]));
        let path = shelf.store().index().objects().path_of(&digest);
        fs::remove_file(&path).map_err(|e| Error::Io { path, source: e })?;
        assert_eq!(shelf.stats()?.unreadable, 1);
        let info = shelf.key_info("").next().transpose()?;
        assert_eq!(info.map(|i| (i.size, i.compression)), Some((None, None)));
        Ok(())
    }
}
