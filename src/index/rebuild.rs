//! Rebuilding the page directory (sled's files) from the pack files alone, and installing
//! a rebuilt directory (see `docs/FORMAT.md`, "Rebuilding the directory").
//!
//! Invariant: a rebuilt directory names only images that were read and verified, each the
//! newest one, by sequence number, of its key range among those commit records vouch for;
//! it is [`Rebuilt::exact`] only when it equals the directory of the newest commit record
//! (page count and hash). Installing replaces `sled/` atomically: the rebuilt files are
//! complete and fsynced in `sled.rebuilt/` before `REPAIR` is written, and an open that
//! finds `REPAIR` finishes the renames.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::ops::Bound;
use std::path::{Path, PathBuf};

use super::files::{fsync_dir, fsync_tree};
use super::packs::{HEADER_LEN, PackHeader, file_name};
use super::pages::{CommitRecord, DirHash, Page, PageLoc, RecordKind, body_of, entry_len, verify_entry};
use super::sled_files::{self, PrivateCopy};
use super::{DIR_PREFIX_KEY, engine, meta_key};
use crate::blob::Hasher;
use crate::error::{Error, Result};

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

/// A page a commit record vouches for, and where its verified image is (if anywhere).
#[derive(Clone, Debug)]
struct Candidate {
    seq: u64,
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    /// The verified image, or `None` when every copy of it is missing or damaged.
    loc: Option<PageLoc>,
    /// Where the image should have been, for reports.
    at: (u32, u64),
}

/// A key range whose newest image cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Lost {
    pub(crate) lo: Vec<u8>,
    pub(crate) hi: Option<Vec<u8>>,
    pub(crate) why: String,
}

/// A directory rebuilt from the packs (see [`rebuild`]).
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    /// The pages: lower bound → location of a verified image.
    pub(crate) pages: BTreeMap<Vec<u8>, PageLoc>,
    /// Key ranges whose newest image cannot be read.
    pub(crate) lost: Vec<Lost>,
    /// The newest valid commit record: its sequence number, page count and hash.
    pub(crate) newest: Option<(u64, u64, DirHash)>,
    /// True when the pages equal the directory of the newest record and none is lost.
    pub(crate) exact: bool,
    /// The newest generation the records name.
    pub(crate) generation: u64,
    /// The auth check of the packs' headers (stores with an auth key).
    pub(crate) auth: Option<[u8; 32]>,
    /// True when a pack is of a format 2 store (which cannot be rebuilt).
    pub(crate) format2: bool,
    /// Damaged stretches of pack files, one line each.
    pub(crate) damage: Vec<String>,
    /// Number of pack files read.
    pub(crate) packs: u64,
}

/// A verified image: where it is (with its checksum and seq), its `lo` and `hi`.
type Image = (PageLoc, Vec<u8>, Option<Vec<u8>>);

/// What the packs hold.
#[derive(Default)]
struct Scan {
    /// Verified images by (pack, offset).
    images: HashMap<(u32, u64), Image>,
    /// Verified records, with the pack they are in and their offset.
    records: Vec<(u32, u64, CommitRecord)>,
    damage: Vec<String>,
    auth: Option<[u8; 32]>,
    keyed: bool,
    format2: bool,
    packs: u64,
}

/// The pack files of `dir/pages`, in id order.
fn pack_files(pages: &Path) -> Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(pages) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(pages)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io(pages))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(id) =
            name.strip_suffix(".pack").filter(|h| h.len() == 8).and_then(|h| u32::from_str_radix(h, 16).ok())
        {
            out.push((id, entry.path()));
        }
    }
    out.sort();
    Ok(out)
}

/// Reads every entry of every pack.
fn scan(dir: &Path, hasher: &Hasher) -> Result<Scan> {
    // Reading a pack that is damaged or gone is a finding, not a failure.
    let mut s = Scan::default();
    for (id, path) in pack_files(&dir.join("pages"))? {
        s.packs += 1;
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) => {
                s.damage.push(format!("pack {} cannot be read: {e}", file_name(id)));
                continue;
            }
        };
        match PackHeader::parse(&bytes) {
            Some(h) if h.format2 => {
                s.format2 = true;
                continue;
            }
            Some(h) => {
                if let Some(a) = h.auth {
                    s.keyed = true;
                    s.auth = Some(a);
                }
            }
            None => s.damage.push(format!("pack {}: bad header", file_name(id))),
        }
        let mut at = HEADER_LEN.min(bytes.len());
        let mut bad_from: Option<usize> = None;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let entry = entry_len(rest).filter(|&l| l <= rest.len()).map(|l| &rest[..l]);
            let parsed = entry.and_then(|e| verify_entry(e, hasher).ok().map(|sum| (e, sum)));
            let Some((entry, sum)) = parsed else {
                bad_from.get_or_insert(at);
                // Resynchronize: the next byte that can start an entry.
                at += 1 + rest[1.min(rest.len())..].iter().position(|&b| b == 0xb7).unwrap_or(rest.len());
                continue;
            };
            if let Some(from) = bad_from.take() {
                s.damage.push(format!("pack {}: bytes {from}..{at} cannot be read", file_name(id)));
            }
            if let Some(r) = CommitRecord::parse(entry) {
                s.records.push((id, at as u64, r));
            } else if let Ok((seq, body)) = body_of(entry)
                && let Some(page) = Page::parse(body, false)
                && let Some(hi) = page.hi()
            {
                let loc = PageLoc { pack: id, offset: at as u64, len: entry.len() as u32, checksum: sum, seq };
                s.images.insert((id, at as u64), (loc, page.lo().to_vec(), hi.map(<[u8]>::to_vec)));
            }
            at += entry.len();
        }
        if let Some(from) = bad_from {
            s.damage.push(format!("pack {}: bytes {from}..{} cannot be read", file_name(id), bytes.len()));
        }
    }
    Ok(s)
}

/// The record keys that verified images in the packs of the store in `dir` hold within
/// each of `ranges` (`[lo, hi)`): for a range whose page cannot be read, what older (or
/// other) images of it still name. Reads every pack; changes nothing.
///
/// # Errors
/// [`Error::Io`] when the pack directory cannot be listed.
pub(crate) fn keys_in(
    dir: &Path,
    hasher: &Hasher,
    ranges: &[(Vec<u8>, Option<Vec<u8>>)],
) -> Result<Vec<BTreeSet<Vec<u8>>>> {
    let mut out = vec![BTreeSet::new(); ranges.len()];
    for (_, path) in pack_files(&dir.join("pages"))? {
        let Ok(bytes) = fs::read(&path) else { continue };
        let mut at = HEADER_LEN.min(bytes.len());
        while at < bytes.len() {
            let rest = &bytes[at..];
            let Some(entry) = entry_len(rest).filter(|&l| l <= rest.len()).map(|l| &rest[..l]) else {
                at += 1;
                continue;
            };
            if verify_entry(entry, hasher).is_err() {
                at += 1;
                continue;
            }
            if let Ok((_, body)) = body_of(entry)
                && let Some(page) = Page::parse(body, false)
            {
                for i in 0..page.len() {
                    let k = page.key(i);
                    for ((lo, hi), names) in ranges.iter().zip(out.iter_mut()) {
                        if k >= lo.as_slice() && hi.as_ref().is_none_or(|h| k < h.as_slice()) {
                            names.insert(k.to_vec());
                        }
                    }
                }
            }
            at += entry.len();
        }
    }
    Ok(out)
}

/// Key ranges `[lo, hi)` (`hi` `None`: to the end), disjoint, by lower bound.
#[derive(Default)]
struct Covered(BTreeMap<Vec<u8>, Option<Vec<u8>>>);

impl Covered {
    /// The parts of `[lo, hi)` not covered yet.
    fn uncovered(&self, lo: &[u8], hi: Option<&[u8]>) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
        let mut out = Vec::new();
        let mut from = lo.to_vec();
        let start =
            self.0.range::<[u8], _>((Bound::Unbounded, Bound::Included(lo))).next_back().map(|(k, _)| k.clone());
        let iter =
            self.0.range::<[u8], _>((start.as_deref().map_or(Bound::Unbounded, Bound::Included), Bound::Unbounded));
        for (clo, chi) in iter {
            if hi.is_some_and(|h| clo.as_slice() >= h) {
                break;
            }
            if clo.as_slice() > from.as_slice() {
                out.push((from.clone(), Some(clo.clone())));
            }
            match chi {
                None => return out,
                Some(ch) if ch.as_slice() > from.as_slice() => from = ch.clone(),
                Some(_) => {}
            }
            if hi.is_some_and(|h| from.as_slice() >= h) {
                return out;
            }
        }
        out.push((from, hi.map(<[u8]>::to_vec)));
        out
    }

    fn add(&mut self, lo: Vec<u8>, hi: Option<Vec<u8>>) {
        self.0.insert(lo, hi);
    }
}

/// Chooses the newest candidate of each key range (see the module docs).
fn choose(mut candidates: Vec<Candidate>) -> (BTreeMap<Vec<u8>, PageLoc>, Vec<Lost>, Vec<Candidate>) {
    // Newest first; among copies of one image, a verified one first.
    candidates.sort_by(|a, b| b.seq.cmp(&a.seq).then(b.loc.is_some().cmp(&a.loc.is_some())));
    let mut covered = Covered::default();
    let mut pages = BTreeMap::new();
    let mut lost = Vec::new();
    let mut taken = Vec::new();
    let mut seen: BTreeSet<(u64, Vec<u8>)> = BTreeSet::new();
    for c in candidates {
        if !seen.insert((c.seq, c.lo.clone())) {
            continue;
        }
        let parts = covered.uncovered(&c.lo, c.hi.as_deref());
        let whole = parts.len() == 1 && parts[0].0 == c.lo && parts[0].1 == c.hi;
        if whole {
            match &c.loc {
                Some(loc) => {
                    pages.insert(c.lo.clone(), *loc);
                }
                None => lost.push(Lost {
                    lo: c.lo.clone(),
                    hi: c.hi.clone(),
                    why: format!(
                        "its newest image (commit {}, pack {} at byte {}) is missing or damaged",
                        c.seq,
                        file_name(c.at.0),
                        c.at.1
                    ),
                }),
            }
            covered.add(c.lo.clone(), c.hi.clone());
            taken.push(c);
        } else {
            // A newer commit wrote part of this range, so it wrote all of it: the rest of
            // its newest image is not in the packs.
            for (lo, hi) in parts {
                lost.push(Lost {
                    lo: lo.clone(),
                    hi: hi.clone(),
                    why: format!("the image of a commit newer than {} holding it is not in the packs", c.seq),
                });
                covered.add(lo, hi);
            }
        }
    }
    for (lo, hi) in covered.uncovered(b"", None) {
        lost.push(Lost { lo, hi, why: "no image in the packs holds it".into() });
    }
    (pages, lost, taken)
}

fn hash_of(taken: &[Candidate]) -> DirHash {
    let mut h = DirHash::default();
    for c in taken {
        h.toggle(&c.lo, c.hi.as_deref(), c.seq);
    }
    h
}

/// Rebuilds the directory of the store in `dir` from its packs, checking images with
/// `hasher` (the store's, keyed when it has an auth key). Changes nothing.
///
/// # Errors
/// [`Error::AuthKey`] when `hasher` is not the store's; [`Error::Io`].
pub(crate) fn rebuild(dir: &Path, hasher: &Hasher) -> Result<Rebuilt> {
    let s = scan(dir, hasher)?;
    let mut out =
        Rebuilt { auth: s.auth, format2: s.format2, damage: s.damage.clone(), packs: s.packs, ..Rebuilt::default() };
    if s.keyed != hasher.is_keyed() {
        let reason =
            if s.keyed { "the store requires an auth key" } else { "the store was created without an auth key" };
        return Err(Error::AuthKey { path: dir.to_path_buf(), reason });
    }
    if let Some(a) = s.auth
        && a != hasher.digest(b"pickleshelf auth check").0
    {
        return Err(Error::AuthKey { path: dir.to_path_buf(), reason: "the key given is not the store's key" });
    }
    let voided =
        |seq: u64| s.records.iter().any(|(_, _, r)| r.kind == RecordKind::Void && seq > r.base && seq <= r.seq);
    let mut candidates = Vec::new();
    let mut vouched: BTreeSet<(u32, u64)> = BTreeSet::new();
    let mut newest: Option<(u64, u32, u64, &CommitRecord)> = None;
    for (pack, offset, r) in &s.records {
        if r.kind == RecordKind::Void || (r.kind == RecordKind::Commit && voided(r.seq)) {
            continue;
        }
        out.generation = out.generation.max(r.generation);
        if newest.is_none_or(|(seq, p, o, _)| (r.seq, *pack, *offset) > (seq, p, o)) {
            newest = Some((r.seq, *pack, *offset, r));
        }
        for v in &r.images {
            vouched.insert((*pack, v.offset));
            let loc = s
                .images
                .get(&(*pack, v.offset))
                .filter(|(l, lo, hi)| l.checksum == v.checksum && l.seq == v.seq && *lo == v.lo && *hi == v.hi)
                .map(|(l, _, _)| *l);
            candidates.push(Candidate { seq: v.seq, lo: v.lo.clone(), hi: v.hi.clone(), loc, at: (*pack, v.offset) });
        }
    }
    let expected = newest.map(|(seq, _, _, r)| (seq, r.pages, DirHash(r.hash)));
    out.newest = expected;
    let matches = |taken: &[Candidate], lost: &[Lost]| {
        lost.is_empty()
            && expected.is_some_and(|(_, pages, hash)| pages == taken.len() as u64 && hash == hash_of(taken))
    };
    let (pages, lost, taken) = choose(candidates.clone());
    if matches(&taken, &lost) {
        out.exact = true;
        out.pages = pages;
        out.lost = lost;
        return Ok(out);
    }
    // A record may be damaged while its images are intact: try them too (not those of
    // void commits, nor stray copies of vouched ones).
    for ((pack, offset), (loc, lo, hi)) in &s.images {
        if !vouched.contains(&(*pack, *offset)) && !voided(loc.seq) {
            candidates.push(Candidate {
                seq: loc.seq,
                lo: lo.clone(),
                hi: hi.clone(),
                loc: Some(*loc),
                at: (*pack, *offset),
            });
        }
    }
    let (pages2, lost2, taken2) = choose(candidates);
    if matches(&taken2, &lost2) {
        out.exact = true;
        out.pages = pages2;
        out.lost = lost2;
    } else {
        out.pages = pages;
        out.lost = lost;
    }
    Ok(out)
}

/// The directory sled holds, read from a private copy of its files: the format and
/// generation records and the pages.
#[derive(Debug)]
pub(crate) struct SledDirectory {
    pub(crate) format: Option<u32>,
    pub(crate) generation: Option<u64>,
    pub(crate) pages: BTreeMap<Vec<u8>, PageLoc>,
}

/// Reads the directory of the store in `dir` from a private copy of `sled/` (nothing in
/// the store is changed).
///
/// # Errors
/// [`Error::Engine`] naming the damaged file when sled cannot open it; [`Error::Corrupted`]
/// for a directory record that cannot be parsed; [`Error::Io`].
pub(crate) fn read_directory(dir: &Path) -> Result<SledDirectory> {
    let copy = PrivateCopy::of(&dir.join("sled"))?;
    let db = sled_files::open(dir, copy.path())?;
    let meta = |name: &str| engine(dir, || db.get(meta_key(name)));
    let u = |v: Option<sled::IVec>, n: usize| v.filter(|v| v.len() == n).map(|v| v.to_vec());
    let format = u(meta("format")?, 4).map(|v| u32::from_le_bytes([v[0], v[1], v[2], v[3]]));
    let generation = u(meta("generation")?, 8).map(|v| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&v);
        u64::from_le_bytes(b)
    });
    let mut pages = BTreeMap::new();
    for item in db.scan_prefix([DIR_PREFIX_KEY]) {
        let (k, v) = engine(dir, || item)?;
        let loc = PageLoc::parse(&v).ok_or_else(|| Error::Corrupted {
            what: format!("directory record of page {:?}", String::from_utf8_lossy(&k[1..])),
            reason: "bad layout".into(),
        })?;
        pages.insert(k[1..].to_vec(), loc);
    }
    drop(db);
    let _ = fs::File::open(copy.path().join("db")).and_then(|f| f.lock());
    Ok(SledDirectory { format, generation, pages })
}

const MARKER: &str = "REPAIR";

/// Installs `rebuilt` as the directory of the store in `dir` (format `format`, generation
/// `generation`): new sled files in `sled.rebuilt/`, then `REPAIR`, then the renames (the
/// old `sled/` becomes `sled.damaged/`). The caller holds the store's exclusive lock.
///
/// # Errors
/// [`Error::Engine`], [`Error::Io`].
pub(crate) fn install(dir: &Path, rebuilt: &Rebuilt, format: u32, generation: u64) -> Result<()> {
    let new = dir.join("sled.rebuilt");
    match fs::remove_dir_all(&new) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(&new)(e)),
    }
    write_directory(&new, rebuilt, format, generation)?;
    fsync_tree(&new)?;
    fsync_dir(dir)?;
    let marker = dir.join(MARKER);
    fs::write(&marker, b"pickleshelf repair\n").map_err(io(&marker))?;
    fs::File::open(&marker).and_then(|f| f.sync_all()).map_err(io(&marker))?;
    fsync_dir(dir)?;
    finish_install(dir)
}

/// Writes the sled files of `rebuilt` (format `format`, generation `generation`) into the
/// new directory `sled_dir`, flushed. Its lost ranges become pages that cannot be read
/// (installed by salvage only, to read through; repair installs only exact directories).
///
/// # Errors
/// [`Error::Engine`], [`Error::Io`].
pub(crate) fn write_directory(sled_dir: &Path, rebuilt: &Rebuilt, format: u32, generation: u64) -> Result<()> {
    let db = engine(sled_dir, || sled_files::config(sled_dir).open())?;
    let mut batch = sled::Batch::default();
    batch.insert(meta_key("format"), &format.to_le_bytes()[..]);
    batch.insert(meta_key("generation"), &generation.to_le_bytes()[..]);
    if let Some(a) = &rebuilt.auth {
        batch.insert(meta_key("auth"), &a[..]);
    }
    // A lost range gets a page that cannot be read (pack 0 does not exist), so that the
    // pages still cover the key space and its reads fail instead of finding nothing.
    let lost = rebuilt.lost.iter().map(|l| (&l.lo, PageLoc { pack: 0, offset: 0, len: 0, checksum: [0; 16], seq: 0 }));
    for (lo, loc) in rebuilt.pages.iter().map(|(lo, loc)| (lo, *loc)).chain(lost) {
        let mut k = vec![DIR_PREFIX_KEY];
        k.extend_from_slice(lo);
        batch.insert(k, &loc.encode()[..]);
    }
    engine(sled_dir, || db.apply_batch(batch))?;
    engine(sled_dir, || db.flush())?;
    drop(db);
    // sled closes its file in background threads: wait until it has.
    let _ = fs::File::open(sled_dir.join("db")).and_then(|f| f.lock());
    Ok(())
}

/// Finishes an interrupted [`install`]: when `REPAIR` exists, the complete `sled.rebuilt/`
/// replaces `sled/` (kept as `sled.damaged/`), then `REPAIR` goes. Called with the store's
/// exclusive lock held, before sled is opened.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn finish_install(dir: &Path) -> Result<()> {
    let marker = dir.join(MARKER);
    if !marker.exists() {
        return Ok(());
    }
    let (new, cur, old) = (dir.join("sled.rebuilt"), dir.join("sled"), dir.join("sled.damaged"));
    if new.exists() {
        if cur.exists() {
            match fs::remove_dir_all(&old) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io(&old)(e)),
            }
            fs::rename(&cur, &old).map_err(io(&cur))?;
        }
        fs::rename(&new, &cur).map_err(io(&new))?;
        fsync_dir(dir)?;
    }
    fs::remove_file(&marker).map_err(io(&marker))?;
    fsync_dir(dir)
}

/// True when a repair of the store in `dir` was interrupted (see [`finish_install`]).
pub(crate) fn install_pending(dir: &Path) -> bool {
    dir.join(MARKER).exists()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn range(lo: &str, hi: Option<&str>) -> (Vec<u8>, Option<Vec<u8>>) {
        (lo.as_bytes().to_vec(), hi.map(|h| h.as_bytes().to_vec()))
    }

    #[test]
    fn coverage_finds_the_gaps() {
        let mut c = Covered::default();
        assert_eq!(c.uncovered(b"", None), vec![range("", None)]);
        c.add(b"c".to_vec(), Some(b"f".to_vec()));
        c.add(b"h".to_vec(), Some(b"k".to_vec()));
        assert_eq!(c.uncovered(b"", None), vec![range("", Some("c")), range("f", Some("h")), range("k", None)]);
        assert_eq!(c.uncovered(b"d", Some(b"e")), vec![]);
        assert_eq!(c.uncovered(b"d", Some(b"i")), vec![range("f", Some("h"))]);
        assert_eq!(c.uncovered(b"a", Some(b"c")), vec![range("a", Some("c"))]);
        c.add(b"k".to_vec(), None);
        assert_eq!(c.uncovered(b"j", None), vec![]);
    }

    fn cand(seq: u64, lo: &str, hi: Option<&str>, ok: bool) -> Candidate {
        let (lo, hi) = range(lo, hi);
        let loc = ok.then_some(PageLoc { pack: 1, offset: seq * 100, len: 10, checksum: [0; 16], seq });
        Candidate { seq, lo, hi, loc, at: (1, seq * 100) }
    }

    #[test]
    fn the_newest_image_of_each_range_wins() {
        // Commit 1: two pages; commit 2 rewrote the first; commit 3 merged both.
        let (pages, lost, taken) =
            choose(vec![cand(1, "", Some("m"), true), cand(1, "m", None, true), cand(2, "", Some("m"), true)]);
        assert!(lost.is_empty());
        assert_eq!(pages.values().map(|l| l.seq).collect::<Vec<_>>(), vec![2, 1]);
        assert_eq!(taken.len(), 2);
        let (pages, lost, _) =
            choose(vec![cand(1, "", Some("m"), true), cand(1, "m", None, true), cand(3, "", None, true)]);
        assert!(lost.is_empty());
        assert_eq!(pages.len(), 1);
        // The newest image of a range is damaged: the range is lost, not rolled back.
        let (pages, lost, _) = choose(vec![cand(1, "", None, true), cand(2, "", None, false)]);
        assert!(pages.is_empty());
        assert_eq!(lost.len(), 1);
        // A newer commit split a range, and one of its pages is gone without a trace.
        let (pages, lost, _) = choose(vec![cand(1, "", None, true), cand(2, "", Some("m"), true)]);
        assert_eq!(pages.len(), 1);
        assert_eq!((lost[0].lo.as_slice(), lost[0].hi.as_deref()), (&b"m"[..], None));
    }
}
