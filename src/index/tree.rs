//! The record tree: an ordered map of byte keys to byte values, stored as compressed
//! pages in pack files of our own and located by a page directory in sled, with an
//! in-memory write buffer in front (group commit).
//!
//! sled keeps about 165 bytes per record and rewrites its leaves as records arrive, so a
//! store of W1's 20,000 small pickles took 2.5× their size in sled; even its pages of
//! records, 600 records of 5 KB, took 1.9×. So sled holds only the directory: one small
//! record per page (`p` + the page's lower bound → where its image is), a few hundred
//! records for a store of 20,000 keys. Records are packed, sorted, into pages of about
//! [`TARGET_PAGE`] bytes, each compressed as one zstd frame and appended to a pack file.
//!
//! Invariants:
//! - The pages of the directory partition the key space: the first page's lower bound is
//!   empty, and page `p` holds exactly the committed records in `[p.lo, next.lo)`.
//! - A write is first applied to the buffer (atomically: one lock for a whole batch), and
//!   reads see the buffer before the pages. A *commit* turns the whole buffer into new page
//!   images, appends them to a pack (fsynced first when durability is `PowerLoss`), and
//!   swaps them into the directory with **one sled batch**: after a crash the tree is the
//!   state of some commit, never a part of one. The buffer is cleared only after the new
//!   directory is installed in memory, so a reader that finds a key in neither buffer
//!   nor new directory reads an unchanged page.
//! - Commits run under the store's write lock: at `sync`, when the buffer holds more than
//!   [`BUFFER_MAX`] bytes, and from a background thread once a write is [`COMMIT_AFTER`]
//!   old.
//! - Page images are never changed in place. Space held by replaced images is reclaimed
//!   by copying the live images of mostly-dead packs to a new pack (compaction); a pack is
//!   deleted only once a durable directory no longer names it (after the next sync).

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use lru::LruCache;
use sled::IVec;

use super::engine;
use super::packs::{HEADER_LEN, Packs};
use super::pages::{
    BodyWriter, CHECKSUM_LEN, CommitRecord, DirHash, Page, PageLoc, RecordKind, Vouched, body_of, body_of_format2,
    checksum, entry_len, entry_size, image, is_format2, verify_entry,
};
use crate::blob::Hasher;
use crate::error::{Error, Result};

/// Sled key prefix of directory records.
const DIR_PREFIX: u8 = super::DIR_PREFIX_KEY;
/// Pages are cut to about this many body bytes.
pub(crate) const TARGET_PAGE: usize = 16 << 10;
/// A page whose body grows past this is split.
const MAX_PAGE: usize = 2 * TARGET_PAGE;
/// A page whose body shrinks below this is merged with a neighbour.
const MIN_PAGE: usize = TARGET_PAGE / 4;
/// A write that leaves more than this many bytes buffered commits the buffer (the
/// default; `ShelfBuilder::buffer_bytes` sets it per store).
pub(crate) const BUFFER_MAX: usize = 8 << 20;
/// The background thread commits the buffer once its oldest write is this old (the
/// default; `ShelfBuilder::commit_interval` sets it per store).
pub(crate) const COMMIT_AFTER: Duration = Duration::from_millis(200);
/// Bytes of parsed pages kept in memory.
const PAGE_CACHE_BYTES: usize = 16 << 20;
/// Memory a buffered record costs beyond its bytes (map node, allocations).
const BUFFER_OVERHEAD: usize = 64;
/// Dead bytes in pack files tolerated before compaction: this, or a quarter of the live
/// bytes when more.
const COMPACT_MIN: u64 = 1 << 20;
/// Bodies of at least this many bytes in one commit are compressed on two threads.
const PARALLEL_BYTES: usize = 1 << 20;
/// At most this many buffered records go into one chunk of a scan.
const SCAN_CHUNK: usize = 4096;

/// A record's value as a read returns it: shared with the buffer, or with the parsed page
/// it was found in (no copy either way).
#[derive(Clone)]
pub(crate) enum Bytes {
    Shared(IVec),
    InPage(Arc<Page>, u32, u32),
}

impl Bytes {
    /// `len` bytes from `at` (clamped to the value).
    pub(crate) fn subslice(&self, at: usize, len: usize) -> Bytes {
        let at = at.min(self.len());
        let len = len.min(self.len() - at);
        match self {
            Bytes::Shared(v) => Bytes::Shared(v.subslice(at, len)),
            Bytes::InPage(p, start, _) => Bytes::InPage(p.clone(), start + at as u32, len as u32),
        }
    }

    fn in_page(page: &Arc<Page>, i: usize) -> Bytes {
        let (start, len) = page.value_range(i);
        Bytes::InPage(page.clone(), start, len)
    }
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Shared(v) => v,
            Bytes::InPage(p, start, len) => p.bytes(*start, *len),
        }
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Changes applied together: inserts and removals, later ones winning.
#[derive(Default)]
pub(crate) struct Batch {
    ops: Vec<(Vec<u8>, Option<IVec>)>,
}

impl Batch {
    pub(crate) fn insert(&mut self, key: impl AsRef<[u8]>, value: impl Into<IVec>) {
        self.ops.push((key.as_ref().to_vec(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, key: impl AsRef<[u8]>) {
        self.ops.push((key.as_ref().to_vec(), None));
    }
}

/// Writes not yet committed: `None` is a removal.
#[derive(Default)]
struct Buffer {
    map: BTreeMap<Vec<u8>, Option<IVec>>,
    bytes: usize,
    since: Option<Instant>,
}

impl Buffer {
    fn cost(key: &[u8], value: &Option<IVec>) -> usize {
        key.len() + value.as_ref().map_or(0, |v| v.len()) + BUFFER_OVERHEAD
    }
}

/// The page directory in memory, and how many bytes of each pack it names.
#[derive(Default)]
struct Directory {
    pages: BTreeMap<Vec<u8>, PageLoc>,
    /// Bytes of images the directory names, per pack.
    live: HashMap<u32, u64>,
    /// Length of each pack file.
    sizes: HashMap<u32, u64>,
    /// The hash of the pages (see [`DirHash`]).
    hash: DirHash,
}

impl Directory {
    /// The page holding `key`: its lower bound and location.
    fn page_of(&self, key: &[u8]) -> Option<(&Vec<u8>, &PageLoc)> {
        self.pages.range::<[u8], _>((Bound::Unbounded, Bound::Included(key))).next_back()
    }

    /// The lower bound of the page after the one at `lo`.
    fn next_lo(&self, lo: &[u8]) -> Option<&Vec<u8>> {
        self.pages.range::<[u8], _>((Bound::Excluded(lo), Bound::Unbounded)).next().map(|(k, _)| k)
    }

    /// The page before the one at `lo`.
    fn prev(&self, lo: &[u8]) -> Option<(&Vec<u8>, &PageLoc)> {
        self.pages.range::<[u8], _>((Bound::Unbounded, Bound::Excluded(lo))).next_back()
    }

    /// The hash of the pages, computed from scratch.
    fn compute_hash(&self) -> DirHash {
        let mut h = DirHash::default();
        let mut it = self.pages.iter().peekable();
        while let Some((lo, loc)) = it.next() {
            h.toggle(lo, it.peek().map(|(n, _)| n.as_slice()), loc.seq);
        }
        h
    }

    /// The newest sequence number of its pages.
    fn max_seq(&self) -> u64 {
        self.pages.values().map(|l| l.seq).max().unwrap_or(0)
    }

    fn garbage(&self) -> u64 {
        self.sizes
            .iter()
            .map(|(id, size)| size.saturating_sub(HEADER_LEN as u64 + self.live.get(id).copied().unwrap_or(0)))
            .sum()
    }

    fn live_total(&self) -> u64 {
        self.live.values().sum()
    }
}

/// Parsed pages by location (images never change, so a location names one content).
struct PageCache {
    lru: LruCache<(u32, u64), Arc<Page>>,
    bytes: usize,
    budget: usize,
}

impl PageCache {
    fn get(&mut self, loc: &PageLoc) -> Option<Arc<Page>> {
        self.lru.get(&(loc.pack, loc.offset)).cloned()
    }

    fn put(&mut self, loc: &PageLoc, page: Arc<Page>) {
        let size = page.footprint();
        if size > self.budget {
            return;
        }
        if let Some(old) = self.lru.put((loc.pack, loc.offset), page) {
            self.bytes -= old.footprint();
        }
        self.bytes += size;
        while self.bytes > self.budget {
            match self.lru.pop_lru() {
                Some((_, p)) => self.bytes -= p.footprint(),
                None => break,
            }
        }
    }
}

/// What reading one page of the directory found (see [`Tree::check_pages`]).
pub(crate) struct PageCheck {
    /// The page's lower bound (a record key).
    pub(crate) lo: Vec<u8>,
    /// The next page's lower bound (`None` for the last page).
    pub(crate) hi: Option<Vec<u8>>,
    /// How errors name it: its lower bound and pack.
    pub(crate) name: String,
    /// Its number of records and how many of them lie at or above `hi`, or why it cannot
    /// be read.
    pub(crate) status: Result<(usize, usize)>,
}

/// Statistics of the tree's storage.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TreeStats {
    pub(crate) pages: u64,
    pub(crate) pack_bytes: u64,
    pub(crate) live_bytes: u64,
}

/// The record tree (see the module docs).
pub(crate) struct Tree {
    path: PathBuf,
    db: sled::Db,
    packs: Packs,
    hasher: Hasher,
    level: i32,
    power_loss: bool,
    buffer: RwLock<Buffer>,
    dir: RwLock<Directory>,
    cache: Mutex<PageCache>,
    /// Packs emptied by compaction: deleted once the directory without them is durable.
    doomed: Mutex<Vec<u32>>,
    /// The sequence number of the next commit.
    next_seq: AtomicU64,
    /// The store's generation, written in commit records.
    generation: AtomicU64,
}

/// Where an entry of a page being rebuilt comes from: a loaded page or the buffer.
#[derive(Clone, Copy)]
enum Src<'b> {
    Page(usize, usize),
    Buffered(&'b [u8], &'b [u8]),
}

/// Buffered changes falling in one page: its `lo`, its `hi`, the changes in key order.
type Group<'b> = (Vec<u8>, Option<Vec<u8>>, Vec<(&'b [u8], Option<&'b IVec>)>);

/// A run of adjacent pages `[lo, hi)` being rebuilt.
struct Unit<'b> {
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    /// Lower bounds of the directory pages it replaces.
    old: Vec<Vec<u8>>,
    entries: Vec<Src<'b>>,
    size: usize,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn dir_key(lo: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(lo.len() + 1);
    k.push(DIR_PREFIX);
    k.extend_from_slice(lo);
    k
}

/// How a page is named in errors: its key range start and its pack.
fn page_name(lo: &[u8], loc: &PageLoc) -> String {
    let pack = super::packs::file_name(loc.pack);
    if lo.is_empty() {
        format!("first page in pack {pack} at byte {}", loc.offset)
    } else {
        format!("page from {:?} in pack {pack} at byte {}", String::from_utf8_lossy(lo), loc.offset)
    }
}

impl Tree {
    /// Opens the tree whose directory is in `db` and whose packs are in `dir/pages`; new
    /// packs carry `auth` (the store's auth check) in their header.
    pub(crate) fn open(
        dir: &Path,
        db: sled::Db,
        hasher: Hasher,
        level: i32,
        power_loss: bool,
        read_only: bool,
        auth: Option<[u8; 32]>,
    ) -> Result<Tree> {
        let packs = Packs::open(&dir.join("pages"), read_only, auth)?;
        let mut directory = Directory::default();
        for item in db.scan_prefix([DIR_PREFIX]) {
            let (k, v) = engine(dir, || item)?;
            let lo = k[1..].to_vec();
            let loc = PageLoc::parse(&v).ok_or_else(|| Error::Corrupted {
                what: format!("directory record of page {}", String::from_utf8_lossy(&lo).escape_debug()),
                reason: "bad layout".into(),
            })?;
            *directory.live.entry(loc.pack).or_insert(0) += u64::from(loc.len);
            directory.pages.insert(lo, loc);
        }
        if directory.pages.first_key_value().is_some_and(|(lo, _)| !lo.is_empty()) {
            return Err(Error::Corrupted {
                what: "page directory".into(),
                reason: "the first page does not start at the lowest key".into(),
            });
        }
        directory.hash = directory.compute_hash();
        let (found, _) = packs.list()?;
        for (id, len) in &found {
            directory.sizes.insert(*id, *len);
        }
        // Appends continue in the newest pack the directory names.
        if let Some(&(id, len)) = found.iter().rev().find(|(id, _)| directory.live.contains_key(id)) {
            packs.resume(id, len)?;
        }
        let next_seq = directory.max_seq() + 1;
        Ok(Tree {
            path: dir.to_path_buf(),
            db,
            packs,
            hasher,
            level,
            power_loss,
            buffer: RwLock::new(Buffer::default()),
            dir: RwLock::new(directory),
            cache: Mutex::new(PageCache { lru: LruCache::unbounded(), bytes: 0, budget: PAGE_CACHE_BYTES }),
            doomed: Mutex::new(Vec::new()),
            next_seq: AtomicU64::new(next_seq),
            generation: AtomicU64::new(0),
        })
    }

    /// Sets the generation written in commit records.
    pub(crate) fn set_generation(&self, g: u64) {
        self.generation.store(g, Ordering::Release);
    }

    /// The directory's page count, hash and newest sequence number.
    pub(crate) fn summary(&self) -> (u64, DirHash, u64) {
        let dir = read(&self.dir);
        (dir.pages.len() as u64, dir.hash, dir.max_seq())
    }

    /// Voids the commits an interrupted process wrote to the packs but never installed in
    /// the directory: the entries after the directory's newest image in its newest pack,
    /// and those of packs newer than it, are read; when one has a sequence number above
    /// the directory's newest, a void record for them is appended (and fsynced), so that a
    /// directory rebuilt from the packs never installs them, and later commits take higher
    /// numbers. Called by a writable open once the directory is known to be current (not
    /// rolled back); the caller holds the write lock.
    pub(crate) fn void_uncommitted(&self) -> Result<()> {
        let (newest, end, base) = {
            let dir = read(&self.dir);
            let newest = dir.live.keys().max().copied();
            let end = dir
                .pages
                .values()
                .filter(|l| Some(l.pack) == newest)
                .map(|l| l.offset + u64::from(l.len))
                .max()
                .unwrap_or(0);
            (newest, end, dir.max_seq())
        };
        let (found, _) = self.packs.list()?;
        let mut top = base;
        for (id, _) in found {
            let from = match newest {
                Some(n) if id < n => continue,
                Some(n) if id == n => end,
                _ => 0,
            };
            let Ok(bytes) = self.packs.read_from(id, from) else { continue };
            let mut at = 0;
            while at < bytes.len() {
                let rest = &bytes[at..];
                let Some(len) = entry_len(rest).filter(|&l| l <= rest.len()) else {
                    at += 1;
                    continue;
                };
                let entry = &rest[..len];
                if verify_entry(entry, &self.hasher).is_ok() {
                    let seq = match CommitRecord::parse(entry) {
                        Some(r) if r.kind == RecordKind::Commit => r.seq,
                        Some(_) => 0,
                        None => body_of(entry).map_or(0, |(s, _)| s),
                    };
                    top = top.max(seq);
                    at += len;
                } else {
                    at += 1;
                }
            }
        }
        self.next_seq.fetch_max(top + 1, Ordering::AcqRel);
        if top == base {
            return Ok(());
        }
        self.void(top, base)
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, PageCache> {
        self.cache.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads, verifies and parses the page at `lo` (whose upper bound is `hi`), through the
    /// cache.
    fn page(&self, lo: &[u8], hi: Option<&[u8]>, loc: &PageLoc) -> Result<Arc<Page>> {
        if let Some(p) = self.cache().get(loc) {
            return Ok(p);
        }
        let page = Arc::new(self.load(lo, hi, loc)?);
        self.cache().put(loc, page.clone());
        Ok(page)
    }

    fn load(&self, lo: &[u8], hi: Option<&[u8]>, loc: &PageLoc) -> Result<Page> {
        let bad = |reason: &str| Error::Corrupted { what: page_name(lo, loc), reason: reason.to_owned() };
        let img = self.packs.read(loc.pack, loc.offset, loc.len)?;
        let page = if is_format2(&img) {
            if checksum(&self.hasher, &img) != loc.checksum {
                return Err(bad("checksum mismatch (damaged, or not written with this store's auth key)"));
            }
            Page::parse(body_of_format2(&img).map_err(bad)?, true).ok_or_else(|| bad("malformed page"))?
        } else {
            if verify_entry(&img, &self.hasher).map_err(bad)? != loc.checksum {
                return Err(bad("not the image its directory record names (checksum differs)"));
            }
            let (seq, body) = body_of(&img).map_err(bad)?;
            if seq != loc.seq {
                return Err(bad("not the image its directory record names (sequence number differs)"));
            }
            Page::parse(body, false).ok_or_else(|| bad("malformed page"))?
        };
        if page.lo() != lo || page.hi().is_some_and(|h| h != hi) {
            return Err(bad("the page belongs to another key range"));
        }
        Ok(page)
    }

    // ----- reads -----

    /// The value of `key`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Bytes>> {
        let find = |p: &Arc<Page>| p.search(key).ok().map(|i| Bytes::in_page(p, i));
        let (lo, hi, loc) = {
            let buffer = read(&self.buffer);
            if let Some(v) = buffer.map.get(key) {
                return Ok(v.clone().map(Bytes::Shared));
            }
            let dir = read(&self.dir);
            let Some((lo, loc)) = dir.page_of(key) else {
                return Ok(None);
            };
            if let Some(p) = self.cache().get(loc) {
                return Ok(find(&p));
            }
            (lo.clone(), dir.next_lo(lo).cloned(), *loc)
        };
        Ok(find(&self.page(&lo, hi.as_deref(), &loc)?))
    }

    /// True when `key` has a value.
    pub(crate) fn contains(&self, key: &[u8]) -> Result<bool> {
        Ok(self.get(key)?.is_some())
    }

    /// Records whose keys start with `prefix`, in key order. Each step reads one page and
    /// the buffered records of its range together, so it sees whole commits; changes made
    /// while the scan runs may or may not be seen.
    pub(crate) fn scan(&self, prefix: &[u8]) -> Scan<'_> {
        Scan { tree: self, prefix: prefix.to_vec(), cursor: Some(prefix.to_vec()), out: Vec::new().into_iter() }
    }

    /// Records whose keys start with `prefix` and are at least `from`, in key order (as
    /// [`Tree::scan`]).
    pub(crate) fn scan_from(&self, prefix: &[u8], from: &[u8]) -> Scan<'_> {
        let start = prefix.max(from).to_vec();
        Scan { tree: self, prefix: prefix.to_vec(), cursor: Some(start), out: Vec::new().into_iter() }
    }

    /// Records of `[lo, hi)`, in descending key order. Each step reads one page and the
    /// buffered records of its range together, as [`Tree::scan`] does.
    pub(crate) fn scan_rev(&self, lo: &[u8], hi: &[u8]) -> ScanRev<'_> {
        ScanRev { tree: self, lo: lo.to_vec(), cursor: Some(hi.to_vec()), out: Vec::new().into_iter() }
    }

    /// The records of `[max(lo, page.lo), hi)` in descending order, for the page holding
    /// the greatest key below `hi`, and the exclusive upper bound of the next chunk.
    fn chunk_rev(&self, lo: &[u8], hi: &[u8]) -> Chunk {
        let (buffered, page, from) = {
            let buffer = read(&self.buffer);
            let dir = read(&self.dir);
            let page = dir
                .pages
                .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(hi)))
                .next_back()
                .map(|(plo, loc)| (plo.clone(), *loc, dir.next_lo(plo).cloned()));
            let from = match &page {
                Some((plo, ..)) if plo.as_slice() > lo => plo.clone(),
                _ => lo.to_vec(),
            };
            let buffered: Vec<(Vec<u8>, Option<IVec>)> = buffer
                .map
                .range::<[u8], _>((Bound::Included(from.as_slice()), Bound::Excluded(hi)))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (buffered, page, from)
        };
        let next = (from.as_slice() > lo).then(|| from.clone());
        let mut out = Vec::new();
        let mut b = buffered.into_iter().peekable();
        if let Some((plo, loc, page_hi)) = page {
            let p = match self.page(&plo, page_hi.as_deref(), &loc) {
                Ok(p) => p,
                Err(e) => return (Err(e), next),
            };
            merge(&p, &from, |k| k >= hi, &mut b, &mut out);
        }
        out.extend(b.filter_map(|(k, v)| v.map(|v| (IVec::from(k), Bytes::Shared(v)))));
        out.reverse();
        (Ok(out), next)
    }

    /// The records of `[from, to)` (`to` at most the end of the page holding `from`), and
    /// where the next chunk starts.
    /// A page that cannot be read is an error, and the scan goes on after it.
    fn chunk(&self, from: &[u8], prefix: &[u8]) -> Chunk {
        let (buffered, page, mut to, mut page_hi) = {
            let buffer = read(&self.buffer);
            let dir = read(&self.dir);
            let (page, page_hi) = match dir.page_of(from) {
                Some((lo, loc)) => (Some((lo.clone(), *loc)), dir.next_lo(lo).cloned()),
                None => (None, None),
            };
            let upper = match &page_hi {
                Some(h) => Bound::Excluded(h.as_slice()),
                None => Bound::Unbounded,
            };
            let mut buffered: Vec<(Vec<u8>, Option<IVec>)> = Vec::new();
            let mut to = page_hi.clone();
            for (k, v) in buffer.map.range::<[u8], _>((Bound::Included(from), upper)) {
                if !k.starts_with(prefix) {
                    break;
                }
                if buffered.len() == SCAN_CHUNK {
                    to = Some(k.clone());
                    break;
                }
                buffered.push((k.clone(), v.clone()));
            }
            (buffered, page, to, page_hi)
        };
        let hi = page_hi.clone();
        // Past the prefix: nothing more to scan.
        for t in [&mut to, &mut page_hi] {
            if t.as_deref().is_some_and(|t| !t.starts_with(prefix) && t > prefix) {
                *t = None;
            }
        }
        let mut out = Vec::new();
        let mut b = buffered.into_iter().peekable();
        if let Some((lo, loc)) = page {
            let p = match self.page(&lo, hi.as_deref(), &loc) {
                Ok(p) => p,
                Err(e) => return (Err(e), page_hi),
            };
            merge(&p, from, |k| to.as_deref().is_some_and(|t| k >= t) || !k.starts_with(prefix), &mut b, &mut out);
        }
        out.extend(b.filter_map(|(k, v)| v.map(|v| (IVec::from(k), Bytes::Shared(v)))));
        (Ok(out), to)
    }

    /// How many bytes are buffered, and since when.
    pub(crate) fn buffered(&self) -> (usize, Option<Instant>) {
        let b = read(&self.buffer);
        (b.bytes, b.since)
    }

    pub(crate) fn stats(&self) -> TreeStats {
        let dir = read(&self.dir);
        TreeStats { pages: dir.pages.len() as u64, pack_bytes: dir.sizes.values().sum(), live_bytes: dir.live_total() }
    }

    // ----- writes -----

    /// Applies `batch` to the buffer, atomically.
    pub(crate) fn apply(&self, batch: Batch) {
        let mut b = self.buffer.write().unwrap_or_else(PoisonError::into_inner);
        for (k, v) in batch.ops {
            let cost = Buffer::cost(&k, &v);
            if let Some(old) = b.map.get(&k) {
                let old_cost = Buffer::cost(&k, old);
                b.bytes -= old_cost;
            }
            b.bytes += cost;
            b.map.insert(k, v);
        }
        if b.since.is_none() && !b.map.is_empty() {
            b.since = Some(Instant::now());
        }
    }

    /// Commits the buffer (see the module docs); the caller holds the store's write lock.
    /// Returns whether anything was written.
    pub(crate) fn commit(&self) -> Result<bool> {
        let buffer = read(&self.buffer);
        if buffer.map.is_empty() {
            return Ok(false);
        }
        let mut loaded: Vec<Arc<Page>> = Vec::new();
        let units = self.rebuild(&buffer, &mut loaded)?;
        // Cut each unit into pages: (lo, hi, body).
        let mut pages: Vec<NewPage> = Vec::new();
        let mut replaced: Vec<Vec<u8>> = Vec::new();
        for u in &units {
            replaced.extend(u.old.iter().cloned());
            let n = if u.size > MAX_PAGE { u.size.div_ceil(TARGET_PAGE) } else { 1 };
            let per = u.size.div_ceil(n);
            let mut lo = u.lo.clone();
            let mut w = Vec::with_capacity(per.min(u.size));
            let mut acc = 0;
            for (i, src) in u.entries.iter().enumerate() {
                let (k, v) = resolve(&loaded, *src);
                w.push((k, v));
                acc += entry_size(k, v);
                if acc >= per && i + 1 < u.entries.len() {
                    let (next, _) = resolve(&loaded, u.entries[i + 1]);
                    pages.push(body_page(std::mem::take(&mut lo), Some(next.to_vec()), &w));
                    lo = next.to_vec();
                    w.clear();
                    acc = 0;
                }
            }
            // A unit left empty (every key removed) still gets its page: the pages always
            // cover the whole key space, also in the images of the packs.
            pages.push(body_page(lo, u.hi.clone(), &w));
        }
        self.install(pages, &replaced, false, |_| {})?;
        drop(units);
        drop(loaded);
        drop(buffer);
        let mut b = self.buffer.write().unwrap_or_else(PoisonError::into_inner);
        *b = Buffer::default();
        drop(b);
        self.compact_if_needed()?;
        Ok(true)
    }

    /// Writes `pages` as the images of a new commit (in a new pack with `fresh`), with
    /// their commit record, then replaces the directory pages at `replaced` by them in one
    /// sled batch (which `extra` may add to), and installs them. The caller holds the
    /// store's write lock.
    pub(crate) fn install(
        &self,
        pages: Vec<NewPage>,
        replaced: &[Vec<u8>],
        fresh: bool,
        extra: impl FnOnce(&mut sled::Batch),
    ) -> Result<()> {
        let seq = self.next_seq.fetch_add(1, Ordering::AcqRel);
        let images = self.images(&pages, seq);
        // The directory after this commit: its page count and hash.
        let (count, hash) = {
            let dir = read(&self.dir);
            let mut hash = dir.hash;
            let mut count = dir.pages.len() as u64;
            for lo in replaced {
                if let Some(loc) = dir.pages.get(lo) {
                    hash.toggle(lo, dir.next_lo(lo).map(Vec::as_slice), loc.seq);
                    count -= 1;
                }
            }
            for (lo, hi, _) in &pages {
                hash.toggle(lo, hi.as_deref(), seq);
            }
            (count + pages.len() as u64, hash)
        };
        let (pack, offsets) = self.packs.append_with(&images, fresh, |_, offsets| {
            let vouched = pages
                .iter()
                .zip(&images)
                .zip(offsets)
                .map(|(((lo, hi, _), img), &offset)| Vouched {
                    offset,
                    len: img.len() as u32,
                    seq,
                    checksum: trailing_checksum(img),
                    lo: lo.clone(),
                    hi: hi.clone(),
                })
                .collect();
            self.record(RecordKind::Commit, seq, 0, (count, hash), vouched)
        })?;
        if self.power_loss {
            self.packs.sync()?;
        }
        let mut batch = sled::Batch::default();
        let mut installed: Vec<(Vec<u8>, PageLoc, Vec<u8>)> = Vec::with_capacity(pages.len());
        for (((lo, _, body), img), offset) in pages.into_iter().zip(&images).zip(offsets) {
            let loc = PageLoc { pack, offset, len: img.len() as u32, checksum: trailing_checksum(img), seq };
            batch.insert(dir_key(&lo), &loc.encode()[..]);
            installed.push((lo, loc, body));
        }
        for lo in replaced {
            if !installed.iter().any(|(l, _, _)| l == lo) {
                batch.remove(dir_key(lo));
            }
        }
        extra(&mut batch);
        if let Err(e) = engine(&self.path, || self.db.apply_batch(batch)) {
            // The commit's record is in the pack: void it, so that no rebuild installs it.
            let _ = self.void(seq, seq - 1);
            return Err(e);
        }
        // Install: directory first, then the cache.
        {
            let mut dir = self.dir.write().unwrap_or_else(PoisonError::into_inner);
            for lo in replaced {
                if let Some(old) = dir.pages.remove(lo)
                    && let Some(l) = dir.live.get_mut(&old.pack)
                {
                    *l = l.saturating_sub(u64::from(old.len));
                }
            }
            for (lo, loc, _) in &installed {
                dir.pages.insert(lo.clone(), *loc);
                *dir.live.entry(loc.pack).or_insert(0) += u64::from(loc.len);
            }
            dir.hash = hash;
            if let Some((pack, end)) = self.packs.current_len() {
                let size = dir.sizes.entry(pack).or_insert(0);
                *size = (*size).max(end);
            }
            // Packs no page names any more go after the next sync (the current one too:
            // should a later commit append to it, it is kept).
            let emptied: Vec<u32> = dir.live.iter().filter(|&(_, l)| *l == 0).map(|(id, _)| *id).collect();
            if !emptied.is_empty() {
                let mut doomed = self.doomed.lock().unwrap_or_else(PoisonError::into_inner);
                for id in emptied {
                    dir.live.remove(&id);
                    if !doomed.contains(&id) {
                        doomed.push(id);
                    }
                }
            }
        }
        let mut cache = self.cache();
        for (_, loc, body) in installed {
            if let Some(p) = Page::parse(body, false) {
                cache.put(&loc, Arc::new(p));
            }
        }
        Ok(())
    }

    /// Writes every page again, as one commit in a new pack, with `extra` records (sorted
    /// into the pages that hold their keys); `sled_extra` adds to the commit's sled batch.
    /// Used to upgrade a format 2 store. The caller holds the write lock and has committed
    /// the buffer.
    pub(crate) fn rewrite_all(
        &self,
        mut extra: Vec<(Vec<u8>, Vec<u8>)>,
        sled_extra: impl FnOnce(&mut sled::Batch),
    ) -> Result<()> {
        extra.sort();
        let old: Vec<(Vec<u8>, Option<Vec<u8>>, PageLoc)> = {
            let dir = read(&self.dir);
            dir.pages.iter().map(|(lo, loc)| (lo.clone(), dir.next_lo(lo).cloned(), *loc)).collect()
        };
        let mut pages: Vec<NewPage> = Vec::with_capacity(old.len().max(1));
        if old.is_empty() {
            let records: Vec<(&[u8], &[u8])> = extra.iter().map(|(k, v)| (k.as_slice(), v.as_slice())).collect();
            pages.push(body_page(Vec::new(), None, &records));
        }
        for (lo, hi, loc) in &old {
            let p = self.load(lo, hi.as_deref(), loc)?;
            let inside = |k: &[u8]| k >= lo.as_slice() && hi.as_ref().is_none_or(|h| k < h.as_slice());
            let mut records: Vec<(&[u8], &[u8])> = (0..p.len())
                .map(|i| (p.key(i), p.value(i)))
                .filter(|(k, _)| inside(k))
                .chain(extra.iter().filter(|(k, _)| inside(k)).map(|(k, v)| (k.as_slice(), v.as_slice())))
                .collect();
            records.sort_by(|a, b| a.0.cmp(b.0));
            records.dedup_by(|a, b| a.0 == b.0);
            pages.push(body_page(lo.clone(), hi.clone(), &records));
        }
        let los: Vec<Vec<u8>> = old.into_iter().map(|(lo, _, _)| lo).collect();
        self.install(pages, &los, true, sled_extra)
    }

    /// Appends a record voiding the sequence numbers `(base, seq]`, and fsyncs it.
    fn void(&self, seq: u64, base: u64) -> Result<()> {
        let (pages, hash, _) = self.summary();
        self.packs.append(&[self.record(RecordKind::Void, seq, base, (pages, hash), Vec::new())], false)?;
        self.packs.sync()
    }

    /// The bytes of a commit record (see [`CommitRecord`]), with the current generation;
    /// `dir` is the page count and hash of the directory after it.
    fn record(&self, kind: RecordKind, seq: u64, base: u64, dir: (u64, DirHash), images: Vec<Vouched>) -> Vec<u8> {
        let generation = self.generation.load(Ordering::Acquire);
        CommitRecord { kind, seq, base, generation, pages: dir.0, hash: dir.1.0, images }.encode(&self.hasher)
    }

    /// The units of pages the buffer changes, with their new entries, small ones merged
    /// with a neighbour.
    fn rebuild<'b>(&self, buffer: &'b Buffer, loaded: &mut Vec<Arc<Page>>) -> Result<Vec<Unit<'b>>> {
        let dir = read(&self.dir);
        // Group the buffered records by the page they fall in.
        let mut groups: Vec<Group<'b>> = Vec::new();
        for (k, v) in &buffer.map {
            if let Some((_, hi, changes)) = groups.last_mut()
                && hi.as_deref().is_none_or(|h| k.as_slice() < h)
            {
                changes.push((k, v.as_ref()));
                continue;
            }
            let (lo, hi) = match dir.page_of(k) {
                Some((lo, _)) => (lo.clone(), dir.next_lo(lo).cloned()),
                None => (Vec::new(), None),
            };
            groups.push((lo, hi, vec![(k, v.as_ref())]));
        }
        let mut units: Vec<Unit<'b>> = Vec::with_capacity(groups.len());
        for (lo, hi, changes) in groups {
            let page = match dir.pages.get(&lo) {
                Some(loc) => {
                    loaded.push(self.page(&lo, hi.as_deref(), loc)?);
                    Some(loaded.len() - 1)
                }
                None => None,
            };
            let mut u = Unit {
                old: if page.is_some() { vec![lo.clone()] } else { Vec::new() },
                lo,
                hi,
                entries: Vec::new(),
                size: 0,
            };
            merge_into(&mut u, loaded, page, &changes);
            units.push(u);
        }
        // Merge small units with a neighbour until none is small (or one spans all keys).
        let mut i = 0;
        while i < units.len() {
            let u = &units[i];
            if u.size >= MIN_PAGE || (u.lo.is_empty() && u.hi.is_none()) {
                i += 1;
                continue;
            }
            if let Some(hi) = u.hi.clone() {
                if units.get(i + 1).is_some_and(|n| n.lo == hi) {
                    let next = units.remove(i + 1);
                    join(&mut units[i], next);
                } else {
                    let next = self.unit_at(&dir, &hi, loaded)?;
                    join(&mut units[i], next);
                }
            } else if i > 0 && units[i - 1].hi.as_deref() == Some(u.lo.as_slice()) {
                let this = units.remove(i);
                join(&mut units[i - 1], this);
                i -= 1;
            } else {
                let Some((prev_lo, _)) = dir.prev(&u.lo) else {
                    i += 1;
                    continue;
                };
                let prev_lo = prev_lo.clone();
                let mut prev = self.unit_at(&dir, &prev_lo, loaded)?;
                let this = units.remove(i);
                join(&mut prev, this);
                units.insert(i, prev);
            }
        }
        Ok(units)
    }

    /// A unit holding the directory page at `lo` unchanged.
    fn unit_at<'b>(&self, dir: &Directory, lo: &[u8], loaded: &mut Vec<Arc<Page>>) -> Result<Unit<'b>> {
        let loc = dir.pages.get(lo).ok_or_else(|| Error::Corrupted {
            what: "page directory".into(),
            reason: "a neighbour page is missing".into(),
        })?;
        loaded.push(self.page(lo, dir.next_lo(lo).map(Vec::as_slice), loc)?);
        let mut u = Unit {
            lo: lo.to_vec(),
            hi: dir.next_lo(lo).cloned(),
            old: vec![lo.to_vec()],
            entries: Vec::new(),
            size: 0,
        };
        merge_into(&mut u, loaded, Some(loaded.len() - 1), &[]);
        Ok(u)
    }

    /// Compressed images of page bodies, sequence number `seq` (on two threads for large
    /// commits).
    fn images(&self, pages: &[NewPage], seq: u64) -> Vec<Vec<u8>> {
        let total: usize = pages.iter().map(|(_, _, b)| b.len()).sum();
        let (level, hasher) = (self.level, &self.hasher);
        let one = |(_, _, b): &NewPage| image(b, level, seq, hasher);
        if total < PARALLEL_BYTES || pages.len() < 2 {
            return pages.iter().map(one).collect();
        }
        let (first, second) = pages.split_at(pages.len() / 2);
        std::thread::scope(|s| {
            let h = s.spawn(move || second.iter().map(one).collect::<Vec<_>>());
            let mut out: Vec<Vec<u8>> = first.iter().map(one).collect();
            match h.join() {
                Ok(rest) => out.extend(rest),
                // The thread cannot panic short of allocation failure; redo its half here.
                Err(_) => out.extend(second.iter().map(one)),
            }
            out
        })
    }

    /// Copies the live pages of mostly-dead packs to a new pack when the dead bytes exceed
    /// [`COMPACT_MIN`] and a quarter of the live ones; the emptied packs are deleted after
    /// the next sync.
    fn compact_if_needed(&self) -> Result<()> {
        let (victims, moves) = {
            let dir = read(&self.dir);
            let live = dir.live_total();
            if dir.garbage() <= COMPACT_MIN.max(live / 4) {
                return Ok(());
            }
            let mut victims: Vec<u32> = dir
                .sizes
                .iter()
                .filter(|(id, size)| {
                    let l = dir.live.get(id).copied().unwrap_or(0);
                    l * 4 < (size.saturating_sub(HEADER_LEN as u64)) * 3
                })
                .map(|(id, _)| *id)
                .collect();
            victims.sort_unstable();
            let moves: Vec<(Vec<u8>, Option<Vec<u8>>, PageLoc)> = dir
                .pages
                .iter()
                .filter(|(_, l)| victims.contains(&l.pack))
                .map(|(k, l)| (k.clone(), dir.next_lo(k).cloned(), *l))
                .collect();
            (victims, moves)
        };
        if victims.is_empty() || moves.iter().any(|(_, _, l)| l.seq == 0) {
            return Ok(());
        }
        let mut images = Vec::with_capacity(moves.len());
        for (lo, _, loc) in &moves {
            let img = self.packs.read(loc.pack, loc.offset, loc.len)?;
            if verify_entry(&img, &self.hasher).ok() != Some(loc.checksum) {
                return Err(Error::Corrupted { what: page_name(lo, loc), reason: "checksum mismatch".into() });
            }
            images.push(img);
        }
        let mut batch = sled::Batch::default();
        let mut new_locs = Vec::with_capacity(moves.len());
        let mut end = None;
        if !images.is_empty() {
            // The copies, and a record vouching for them (the directory does not change).
            let (pages, hash, newest) = self.summary();
            let (pack, offsets) = self.packs.append_with(&images, true, |_, offsets| {
                let vouched = moves
                    .iter()
                    .zip(offsets)
                    .map(|((lo, hi, loc), &offset)| Vouched {
                        offset,
                        len: loc.len,
                        seq: loc.seq,
                        checksum: loc.checksum,
                        lo: lo.clone(),
                        hi: hi.clone(),
                    })
                    .collect();
                self.record(RecordKind::Compaction, newest, 0, (pages, hash), vouched)
            })?;
            if self.power_loss {
                self.packs.sync()?;
            }
            for ((lo, _, old), offset) in moves.iter().zip(offsets) {
                let loc = PageLoc { pack, offset, ..*old };
                batch.insert(dir_key(lo), &loc.encode()[..]);
                new_locs.push((lo.clone(), *old, loc));
            }
            end = self.packs.current_len();
            engine(&self.path, || self.db.apply_batch(batch))?;
        }
        {
            let mut dir = self.dir.write().unwrap_or_else(PoisonError::into_inner);
            for (lo, old, loc) in &new_locs {
                dir.pages.insert(lo.clone(), *loc);
                if let Some(l) = dir.live.get_mut(&old.pack) {
                    *l = l.saturating_sub(u64::from(old.len));
                }
                *dir.live.entry(loc.pack).or_insert(0) += u64::from(loc.len);
            }
            if let Some((pack, e)) = end {
                let size = dir.sizes.entry(pack).or_insert(0);
                *size = (*size).max(e);
            }
        }
        {
            let mut cache = self.cache();
            for (_, old, loc) in &new_locs {
                if let Some(p) = cache.get(old) {
                    cache.put(loc, p);
                }
            }
        }
        self.doomed.lock().unwrap_or_else(PoisonError::into_inner).extend(victims);
        Ok(())
    }

    /// Makes the packs written so far durable (before sled is flushed).
    pub(crate) fn sync_packs(&self) -> Result<()> {
        self.packs.sync()
    }

    /// Deletes the packs compaction emptied; call once the directory that no longer names
    /// them is durable.
    pub(crate) fn delete_doomed(&self) -> Result<()> {
        let doomed = std::mem::take(&mut *self.doomed.lock().unwrap_or_else(PoisonError::into_inner));
        for id in doomed {
            let mut dir = self.dir.write().unwrap_or_else(PoisonError::into_inner);
            if dir.live.get(&id).copied().unwrap_or(0) > 0 {
                continue;
            }
            dir.live.remove(&id);
            dir.sizes.remove(&id);
            drop(dir);
            self.packs.remove(id)?;
        }
        Ok(())
    }

    /// Pack files no directory record names (leftovers of commits a crash cut short, or
    /// of compactions), and files in the pack directory that are not packs.
    pub(crate) fn orphans(&self) -> Result<Vec<PathBuf>> {
        let (found, strays) = self.packs.list()?;
        let dir = read(&self.dir);
        let doomed = self.doomed.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let mut out = strays;
        for (id, _) in found {
            if !dir.live.contains_key(&id) && !doomed.contains(&id) && self.packs.current() != Some(id) {
                out.push(self.packs.path_of(id));
            }
        }
        Ok(out)
    }

    /// Forgets a pack file that [`Tree::orphans`] reported, once it is deleted.
    pub(crate) fn forget_pack(&self, path: &Path) {
        if let Some(id) = pack_id(path) {
            self.dir.write().unwrap_or_else(PoisonError::into_inner).sizes.remove(&id);
        }
    }

    /// Schedules an orphan pack file (see [`Tree::orphans`]) for deletion at the next
    /// sync; returns false for a path that is not a pack.
    pub(crate) fn doom_orphan(&self, path: &Path) -> bool {
        let Some(id) = pack_id(path) else { return false };
        let mut doomed = self.doomed.lock().unwrap_or_else(PoisonError::into_inner);
        if !doomed.contains(&id) {
            doomed.push(id);
        }
        true
    }

    /// Reads and checks every page of the directory: readable, verified, within its range.
    /// Changes nothing.
    pub(crate) fn check_pages(&self) -> Vec<PageCheck> {
        let pages: Vec<(Vec<u8>, PageLoc, Option<Vec<u8>>)> = {
            let dir = read(&self.dir);
            dir.pages.iter().map(|(lo, loc)| (lo.clone(), *loc, dir.next_lo(lo).cloned())).collect()
        };
        pages
            .into_iter()
            .map(|(lo, loc, hi)| {
                let status = self.load(&lo, hi.as_deref(), &loc).map(|p| {
                    let beyond =
                        (0..p.len()).filter(|&i| hi.as_ref().is_some_and(|h| p.key(i) >= h.as_slice())).count();
                    (p.len(), beyond)
                });
                PageCheck { name: page_name(&lo, &loc), lo, hi, status }
            })
            .collect()
    }

    /// Rewrites the page at `lo` without the records at or above the next page's lower
    /// bound (no read can see them). The caller holds the store's write lock.
    pub(crate) fn trim_page(&self, lo: &[u8]) -> Result<()> {
        let (loc, hi) = {
            let dir = read(&self.dir);
            let Some(loc) = dir.pages.get(lo).copied() else { return Ok(()) };
            (loc, dir.next_lo(lo).cloned())
        };
        let p = self.load(lo, hi.as_deref(), &loc)?;
        let records: Vec<(&[u8], &[u8])> = (0..p.len())
            .filter(|&i| hi.as_ref().is_none_or(|h| p.key(i) < h.as_slice()))
            .map(|i| (p.key(i), p.value(i)))
            .collect();
        self.install(vec![body_page(lo.to_vec(), hi.clone(), &records)], &[lo.to_vec()], false, |_| {})
    }
}

fn pack_id(path: &Path) -> Option<u32> {
    let hex = path.file_name()?.to_str()?.strip_suffix(".pack")?;
    if hex.len() != 8 {
        return None;
    }
    u32::from_str_radix(hex, 16).ok()
}

/// A page to write: its `lo`, `hi` and body.
pub(crate) type NewPage = (Vec<u8>, Option<Vec<u8>>, Vec<u8>);

/// The page `[lo, hi)` holding `records`.
fn body_page(lo: Vec<u8>, hi: Option<Vec<u8>>, records: &[(&[u8], &[u8])]) -> NewPage {
    let size = records.iter().map(|(k, v)| entry_size(k, v)).sum();
    let mut w = BodyWriter::new(&lo, hi.as_deref(), size);
    for (k, v) in records {
        w.push(k, v);
    }
    let body = w.finish();
    (lo, hi, body)
}

/// The checksum that ends an image.
fn trailing_checksum(img: &[u8]) -> [u8; CHECKSUM_LEN] {
    let mut c = [0u8; CHECKSUM_LEN];
    if let Some(tail) = img.len().checked_sub(CHECKSUM_LEN).and_then(|at| img.get(at..)) {
        c.copy_from_slice(tail);
    }
    c
}

fn resolve<'b>(loaded: &'b [Arc<Page>], src: Src<'b>) -> (&'b [u8], &'b [u8]) {
    match src {
        Src::Page(p, i) => (loaded[p].key(i), loaded[p].value(i)),
        Src::Buffered(k, v) => (k, v),
    }
}

/// Sets the entries of `u` to page `page` (an index into `loaded`) with `changes` applied.
fn merge_into<'b>(
    u: &mut Unit<'b>,
    loaded: &[Arc<Page>],
    page: Option<usize>,
    changes: &[(&'b [u8], Option<&'b IVec>)],
) {
    let mut c = changes.iter().peekable();
    if let Some(p) = page {
        let pg = &loaded[p];
        for i in 0..pg.len() {
            let k = pg.key(i);
            while let Some((ck, cv)) = c.peek()
                && *ck < k
            {
                if let Some(v) = cv {
                    u.size += entry_size(ck, v);
                    u.entries.push(Src::Buffered(ck, v));
                }
                c.next();
            }
            if c.peek().is_some_and(|(ck, _)| *ck == k) {
                if let Some((ck, Some(v))) = c.next() {
                    u.size += entry_size(ck, v);
                    u.entries.push(Src::Buffered(ck, v));
                }
                continue;
            }
            u.size += entry_size(k, pg.value(i));
            u.entries.push(Src::Page(p, i));
        }
    }
    for (ck, cv) in c {
        if let Some(v) = cv {
            u.size += entry_size(ck, v);
            u.entries.push(Src::Buffered(ck, v));
        }
    }
}

/// Appends the adjacent unit `right` to `left`.
fn join<'b>(left: &mut Unit<'b>, right: Unit<'b>) {
    left.hi = right.hi;
    left.old.extend(right.old);
    left.entries.extend(right.entries);
    left.size += right.size;
}

/// The records of one step of a scan (or the error of its page), and where the next
/// step starts.
type Chunk = (Result<Vec<(IVec, Bytes)>>, Option<Vec<u8>>);

/// An iterator over the records of a prefix (see [`Tree::scan`]).
pub(crate) struct Scan<'a> {
    tree: &'a Tree,
    prefix: Vec<u8>,
    cursor: Option<Vec<u8>>,
    out: std::vec::IntoIter<(IVec, Bytes)>,
}

impl Iterator for Scan<'_> {
    type Item = Result<(IVec, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.out.next() {
                return Some(Ok(item));
            }
            let from = self.cursor.take()?;
            let (items, next) = self.tree.chunk(&from, &self.prefix);
            self.cursor = next;
            match items {
                Ok(items) => self.out = items.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// Appends to `out`, in key order, the records of page `p` from `from` until `stop` says
/// so, merged with the buffered records `b` below that point (a buffered record replaces
/// the page's record of the same key; a buffered removal, `None`, drops it).
fn merge(
    p: &Arc<Page>,
    from: &[u8],
    stop: impl Fn(&[u8]) -> bool,
    b: &mut std::iter::Peekable<std::vec::IntoIter<(Vec<u8>, Option<IVec>)>>,
    out: &mut Vec<(IVec, Bytes)>,
) {
    let start = match p.search(from) {
        Ok(i) | Err(i) => i,
    };
    for i in start..p.len() {
        let k = p.key(i);
        if stop(k) {
            break;
        }
        while let Some((bk, _)) = b.peek()
            && bk.as_slice() < k
        {
            if let Some((bk, Some(bv))) = b.next() {
                out.push((IVec::from(bk), Bytes::Shared(bv)));
            }
        }
        if b.peek().is_some_and(|(bk, _)| bk.as_slice() == k) {
            if let Some((bk, Some(bv))) = b.next() {
                out.push((IVec::from(bk), Bytes::Shared(bv)));
            }
            continue;
        }
        out.push((IVec::from(k), Bytes::in_page(p, i)));
    }
}

/// A scan in descending key order (see [`Tree::scan_rev`]).
pub(crate) struct ScanRev<'a> {
    tree: &'a Tree,
    lo: Vec<u8>,
    /// The exclusive upper bound of the next chunk; `None` when done.
    cursor: Option<Vec<u8>>,
    out: std::vec::IntoIter<(IVec, Bytes)>,
}

impl Iterator for ScanRev<'_> {
    type Item = Result<(IVec, Bytes)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(item) = self.out.next() {
                return Some(Ok(item));
            }
            let hi = self.cursor.take()?;
            let (items, next) = self.tree.chunk_rev(&self.lo, &hi);
            self.cursor = next;
            match items {
                Ok(items) => self.out = items.into_iter(),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn open(dir: &Path) -> Tree {
        let db = sled::Config::new().path(dir.join("sled")).open().unwrap();
        Tree::open(dir, db, Hasher::Plain, 3, false, false, None).unwrap()
    }

    /// Drops the tree and waits until sled has let go of its files.
    fn close(tree: Tree, dir: &Path) {
        drop(tree);
        let _ = std::fs::File::open(dir.join("sled").join("db")).and_then(|f| f.lock());
    }

    fn check(tree: &Tree, model: &BTreeMap<Vec<u8>, Vec<u8>>, rng: &mut Rng) {
        let all: Vec<(Vec<u8>, Vec<u8>)> =
            tree.scan(b"").map(|r| r.map(|(k, v)| (k.to_vec(), v.to_vec())).unwrap()).collect();
        let want: Vec<(Vec<u8>, Vec<u8>)> = model.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        assert!(all == want, "scan of everything: {} records, model {}", all.len(), want.len());
        let prefix = format!("k{}", rng.below(10)).into_bytes();
        let got = tree.scan(&prefix).map(|r| r.unwrap().0.to_vec()).collect::<Vec<_>>();
        let want: Vec<Vec<u8>> = model.keys().filter(|k| k.starts_with(&prefix)).cloned().collect();
        assert_eq!(got, want, "scan of {prefix:?}");
        let (a, b) = (key(rng.below(4000)), key(rng.below(4000)));
        let (lo, hi) = (a.clone().min(b.clone()), a.max(b));
        let got = tree.scan_rev(&lo, &hi).map(|r| r.unwrap().0.to_vec()).collect::<Vec<_>>();
        let want: Vec<Vec<u8>> = model.range(lo.clone()..hi.clone()).rev().map(|(k, _)| k.clone()).collect();
        assert_eq!(got, want, "reverse scan of {lo:?}..{hi:?}");
        let got = tree.scan_rev(b"", b"\xff").count();
        assert_eq!(got, model.len(), "reverse scan of everything");
        for _ in 0..20 {
            let k = key(rng.below(4000));
            assert_eq!(tree.get(&k).unwrap().map(|v| v.to_vec()), model.get(&k).cloned());
        }
        for c in tree.check_pages() {
            assert!(matches!(c.status, Ok((_, 0))), "{}: {:?}", c.name, c.status.map_err(|e| e.to_string()));
        }
        let dir = read(&tree.dir);
        if let Some((lo, _)) = dir.pages.first_key_value() {
            assert!(lo.is_empty(), "the first page starts at the lowest key");
        }
        assert_eq!(dir.hash, dir.compute_hash(), "the directory hash kept up to date");
    }

    fn key(i: u64) -> Vec<u8> {
        format!("k{i}").into_bytes()
    }

    #[test]
    fn matches_a_btreemap_through_commits_and_reopens() {
        for seed in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let mut tree = open(dir.path());
            let mut model = BTreeMap::new();
            let mut rng = Rng(seed);
            for step in 0..3000 {
                let mut batch = Batch::default();
                for _ in 0..1 + rng.below(if step % 100 == 0 { 400 } else { 8 }) {
                    let k = key(rng.below(4000));
                    if rng.below(4) == 0 {
                        batch.remove(&k);
                        model.remove(&k);
                    } else {
                        let max = if rng.below(50) == 0 { 5000 } else { 300 };
                        let v = vec![rng.below(256) as u8; rng.below(max) as usize];
                        batch.insert(&k, v.clone());
                        model.insert(k, v);
                    }
                }
                // Now and then a wave of removals, so that pages shrink and merge.
                if step % 700 == 350 {
                    let from = rng.below(4000);
                    for i in from..(from + 1500).min(4000) {
                        batch.remove(key(i));
                        model.remove(&key(i));
                    }
                }
                tree.apply(batch);
                match rng.below(40) {
                    0..=4 => {
                        tree.commit().unwrap();
                        tree.delete_doomed().unwrap();
                    }
                    5 => {
                        tree.commit().unwrap();
                        close(tree, dir.path());
                        tree = open(dir.path());
                    }
                    _ => {}
                }
                if step % 97 == 0 {
                    check(&tree, &model, &mut rng);
                }
            }
            tree.commit().unwrap();
            check(&tree, &model, &mut rng);
            // Every page within its size bounds (but a last small one, or one of a single record).
            let dir = read(&tree.dir);
            for (lo, loc) in &dir.pages {
                let p = tree.load(lo, dir.next_lo(lo).map(Vec::as_slice), loc).unwrap();
                let size: usize = (0..p.len()).map(|i| entry_size(p.key(i), p.value(i))).sum();
                assert!(size <= MAX_PAGE + 6000, "page of {size} bytes");
            }
        }
    }

    #[test]
    fn uncommitted_writes_are_lost_and_committed_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let tree = open(dir.path());
        let mut b = Batch::default();
        b.insert(b"a", &b"1"[..]);
        tree.apply(b);
        tree.commit().unwrap();
        let mut b = Batch::default();
        b.insert(b"b", &b"2"[..]);
        b.remove(b"a");
        tree.apply(b);
        assert!(tree.get(b"a").unwrap().is_none());
        assert_eq!(tree.get(b"b").unwrap().as_deref(), Some(&b"2"[..]));
        close(tree, dir.path());
        let tree = open(dir.path());
        assert_eq!(tree.get(b"a").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(tree.get(b"b").unwrap().is_none());
    }

    #[test]
    fn rewrites_are_compacted_and_packs_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let tree = open(dir.path());
        let mut rng = Rng(9);
        for round in 0..300 {
            let mut b = Batch::default();
            for i in 0..400 {
                let v: Vec<u8> = (0..200).map(|_| rng.below(256) as u8).collect();
                b.insert(key(i * 7 + round % 7), v);
            }
            tree.apply(b);
            tree.commit().unwrap();
            tree.delete_doomed().unwrap();
            let s = tree.stats();
            let bound = COMPACT_MIN.max(s.live_bytes / 4) + s.live_bytes + s.live_bytes / 2 + (64 << 10);
            assert!(s.pack_bytes <= bound, "round {round}: {} pack bytes for {} live", s.pack_bytes, s.live_bytes);
        }
        let (packs, _) = tree.packs.list().unwrap();
        let on_disk: u64 = packs.iter().map(|(_, l)| l).sum();
        assert_eq!(on_disk, tree.stats().pack_bytes, "every pack file is accounted for");
        assert!(tree.orphans().unwrap().is_empty());
    }
}
