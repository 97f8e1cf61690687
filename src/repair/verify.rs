//! `verify` and `gc`: every page, record, object and file of a store checked; gc repairs
//! what can be repaired and reclaims what nothing refers to.
//!
//! Invariant: gc changes nothing — no record, object file, frame record or pack is removed
//! or rewritten — unless the whole directory was read: every page loaded and verified and
//! every record in it parsed. A record that cannot be read may name any object, so while one
//! exists every object and file is kept (they may be the only copies of its value), and the
//! report names the unreadable pages, the records they held (key ranges) and the keys that
//! readable records still name in those ranges. Reading everything comes first; repairs
//! are made only once it is done.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;

use crate::blob::{Digest, FrameKind, frame_kind};
use crate::chain::LoadError;
use crate::error::{Error, Result};
use crate::index::{MAX_DEPTH, ObjectRecord, Space, Stored, describe_range, frame_key, key_in, object_key};
use crate::progress::Progress;
use crate::store::Store;

/// At most this many keys are named per unreadable range.
const NAMED_MAX: usize = 20;

/// What [`Shelf::verify`](crate::Shelf::verify) or [`Shelf::gc`](crate::Shelf::gc) found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Keys checked.
    pub keys: u64,
    /// Object records checked.
    pub objects: u64,
    /// Object files found.
    pub files: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// Record pages checked (see `docs/FORMAT.md`).
    pub pages: u64,
    /// Pages and records that could not be read (0: the whole directory was read). While
    /// it is not 0, gc changes nothing.
    pub unreadable: u64,
    /// Everything wrong, one line each (unreadable pages and records first).
    pub problems: Vec<String>,
    /// What gc repaired, one line each (empty for `verify`).
    pub repaired: Vec<String>,
    /// Leftovers of writes a crash (or a full disk) cut short: files and records that no
    /// record names, one line each. Not problems: the next writable open deletes them, and
    /// so does gc (whose report lists them under `repaired`).
    pub leftovers: Vec<String>,
}

impl VerifyReport {
    /// True when nothing is wrong (after repairs, for gc: only unrepairable problems remain).
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// True when every page and record of the store was read; gc reclaims space only then.
    pub fn is_complete(&self) -> bool {
        self.unreadable == 0
    }
}

/// A key range of the record tree that could not be read: `[lo, hi)`.
struct Hole {
    lo: Vec<u8>,
    hi: Option<Vec<u8>>,
    /// Keys that readable records name in it (checkpoint entries).
    named: BTreeSet<String>,
}

impl Hole {
    fn holds(&self, k: &[u8]) -> bool {
        k >= self.lo.as_slice() && self.hi.as_deref().is_none_or(|h| k < h)
    }
}

/// Up to [`NAMED_MAX`] keys, quoted, and how many more.
fn shown(keys: &[String]) -> String {
    let list: Vec<String> = keys.iter().take(NAMED_MAX).map(|k| format!("{k:?}")).collect();
    let more = keys.len().saturating_sub(NAMED_MAX);
    format!("{}{}", list.join(", "), if more > 0 { format!(" and {more} more") } else { String::new() })
}

fn in_hole(holes: &[Hole], k: &[u8]) -> bool {
    holes.iter().any(|h| h.holds(k))
}

/// A repair gc makes once everything is read (and only when it was all read).
enum Fix {
    Trim(Vec<u8>),
    OrphanPack(std::path::PathBuf),
    SetObject(Digest, Option<ObjectRecord>),
    DoomFrame(Digest),
    DoomFile(Digest),
    RemoveFile(std::path::PathBuf),
}

/// Checks the store (see [`Shelf::verify`](crate::Shelf::verify)); with `repair`, also repairs (see [`Shelf::gc`](crate::Shelf::gc)).
/// Advances `progress` once per key or memo record checked.
pub(crate) fn run(shelf: &Store, repair: bool, progress: &mut dyn Progress) -> Result<VerifyReport> {
    let index = shelf.index();
    // The write lock also when only checking, so that what is checked is one state of
    // the store and not one that writers are changing.
    let writer = index.writer();
    let mut report = VerifyReport::default();
    // Each repair with the problem or leftover it mends and what it does.
    let mut fixes: Vec<(Fix, String, String)> = Vec::new();

    // The pages that hold the records.
    let mut holes: Vec<Hole> = Vec::new();
    let mut page_errors: BTreeSet<String> = BTreeSet::new();
    let checks = index.check_pages();
    report.pages = checks.len() as u64;
    for c in checks {
        match c.status {
            Ok((_, 0)) => {}
            Ok((_, beyond)) => {
                let msg = format!("{}: holds {beyond} records beyond its range", c.name);
                report.problems.push(msg.clone());
                fixes.push((Fix::Trim(c.lo.clone()), msg, "removed (no read could see them)".into()));
            }
            Err(e) => {
                report.unreadable += 1;
                report.problems.push(format!(
                    "unreadable page: the records {} cannot be read: {e}",
                    describe_range(&c.lo, c.hi.as_deref())
                ));
                page_errors.insert(e.to_string());
                holes.push(Hole { lo: c.lo, hi: c.hi, named: BTreeSet::new() });
            }
        }
    }
    // A scan reports a damaged page once, with the error `check_pages` gave; any other
    // error is a record that cannot be parsed.
    let record_problem = |report: &mut VerifyReport, what: &str, e: Error| {
        if !page_errors.contains(&e.to_string()) {
            report.unreadable += 1;
            report.problems.push(format!("unreadable {what}: {e}"));
        }
    };

    // References held by records: key and memo records, checkpoint entries.
    let mut counted: BTreeMap<Digest, u64> = BTreeMap::new();
    // Objects a key's read checked (with their chains), whatever it found.
    let mut checked: BTreeSet<Digest> = BTreeSet::new();
    let _pin = index.pin_files();
    for space in [Space::Keys, Space::Memo] {
        for item in index.scan_in(space, "") {
            let (key, stored) = match item {
                Ok((k, _, s)) => (k, s),
                Err(e) => {
                    record_problem(&mut report, "key record", e);
                    continue;
                }
            };
            report.keys += 1;
            progress.advance(1);
            let object = match &stored {
                Stored::Object { digest } => Some(*digest),
                Stored::Inline { .. } => None,
            };
            if let Some(d) = object {
                *counted.entry(d).or_insert(0) += 1;
            }
            if let Err(e) = shelf.load(&key, stored) {
                report.problems.push(format!("key {key:?}: {e}"));
            }
            checked.extend(object);
        }
    }
    let mut names = BTreeSet::new();
    match index.checkpoints() {
        Ok(list) => names.extend(list.into_iter().map(|(n, _)| n)),
        Err(e) => record_problem(&mut report, "checkpoint", e),
    }
    report.checkpoints = names.len() as u64;
    for item in index.all_checkpoint_entries() {
        match item {
            Ok((name, key, stored)) => {
                if let Some(h) = holes.iter_mut().find(|h| h.holds(&key_in(Space::Keys, &key))) {
                    h.named.insert(key.clone());
                }
                if !names.contains(&name) && !in_hole(&holes, &checkpoint_key(&name)) {
                    report.problems.push(format!("checkpoint {name:?}: entry of key {key:?} but no checkpoint record"));
                }
                match stored {
                    Stored::Object { digest } => *counted.entry(digest).or_insert(0) += 1,
                    Stored::Inline { digest, frame } => {
                        if let Err(reason) = shelf.codec().decode(&frame, &digest) {
                            report.problems.push(format!("checkpoint {name:?}, key {key:?}: {reason}"));
                        }
                    }
                }
            }
            Err(e) => record_problem(&mut report, "checkpoint entry", e),
        }
    }
    let mut recorded: BTreeMap<Digest, ObjectRecord> = BTreeMap::new();
    for item in index.object_records() {
        match item {
            Ok((d, r)) => {
                report.objects += 1;
                recorded.insert(d, r);
            }
            Err(e) => record_problem(&mut report, "object record", e),
        }
    }
    let mut frames: BTreeMap<Digest, u64> = BTreeMap::new();
    for item in index.frame_records() {
        match item {
            Ok((d, len)) => {
                frames.insert(d, len);
            }
            Err(e) => record_problem(&mut report, "frame record", e),
        }
    }
    let complete = report.unreadable == 0;

    // Reachable objects: those records refer to, and the bases of reachable objects, each
    // of which holds one reference on its base.
    let mut expected = counted.clone();
    let mut work: Vec<Digest> = counted.keys().copied().collect();
    let mut reachable: BTreeSet<Digest> = work.iter().copied().collect();
    while let Some(d) = work.pop() {
        let Some(r) = recorded.get(&d) else { continue };
        if r.depth > MAX_DEPTH {
            report.problems.push(format!("object {d}: chain of {} bases, more than {MAX_DEPTH}", r.depth));
        }
        let Some(b) = r.base else {
            if r.depth != 0 {
                report.problems.push(format!("object {d}: depth {} without a base", r.depth));
            }
            continue;
        };
        *expected.entry(b).or_insert(0) += 1;
        match recorded.get(&b) {
            Some(br) if br.depth.checked_add(1) == Some(r.depth) => {}
            Some(br) => report.problems.push(format!("object {d}: depth {} on a base of depth {}", r.depth, br.depth)),
            None if in_hole(&holes, &object_key(&b)) => {}
            None => report.problems.push(format!("object {d}: its base {b} has no record")),
        }
        if reachable.insert(b) {
            work.push(b);
        }
    }
    // Objects no key read verified (named only by checkpoints, or bases): read them too.
    for d in &reachable {
        if checked.contains(d) || !recorded.contains_key(d) {
            continue;
        }
        match shelf.chains().load(index, shelf.codec(), d) {
            Ok(_) => {}
            Err(LoadError::Store(e)) => report.problems.push(format!("object {d}: {e}")),
            Err(LoadError::Bad(at, reason)) => report.problems.push(format!("object {d}: object {at}: {reason}")),
        }
    }
    let mut beyond_reach = 0u64;
    for (d, n) in &expected {
        match recorded.get(d) {
            Some(r) if r.refs == *n => {}
            // References held by records that cannot be read are not counted.
            Some(r) if r.refs > *n && !complete => beyond_reach += 1,
            Some(r) => {
                let msg = format!("object {d}: refcount {} but {n} references", r.refs);
                report.problems.push(msg.clone());
                fixes.push((Fix::SetObject(*d, Some(ObjectRecord { refs: *n, ..*r })), msg, format!("set to {n}")));
            }
            None if in_hole(&holes, &object_key(d)) => {}
            None => {
                let msg = format!("object {d}: {n} references but no record");
                report.problems.push(msg.clone());
                if let Some(rec) = rebuild_record(shelf, d, *n, frames.contains_key(d), &recorded) {
                    fixes.push((Fix::SetObject(*d, Some(rec)), msg, "record rebuilt from its frame".into()));
                }
            }
        }
    }
    for (d, r) in &recorded {
        if !expected.contains_key(d) {
            beyond_reach += u64::from(!complete);
            if complete {
                let msg = format!("object {d}: record with refcount {} but no reference", r.refs);
                report.problems.push(msg.clone());
                fixes.push((Fix::SetObject(*d, None), msg, "removed".into()));
            }
        } else if r.in_tree && !frames.contains_key(d) && !in_hole(&holes, &frame_key(d)) {
            report.problems.push(format!("object {d}: its frame record is missing"));
        }
    }
    let awaiting: BTreeSet<Digest> = index.awaiting_deletion().into_iter().collect();
    for (d, len) in &frames {
        let msg = match recorded.get(d) {
            Some(r) if r.in_tree && r.stored_len == *len => continue,
            Some(r) if r.in_tree => {
                report.problems.push(format!("object {d}: frame record has {len} bytes, record says {}", r.stored_len));
                continue;
            }
            // Its record was removed (or rewritten) since the last sync: it goes at the next.
            _ if awaiting.contains(d) => continue,
            // Its record may be among those that cannot be read.
            None if in_hole(&holes, &object_key(d)) => continue,
            Some(_) => format!("frame record of object {d}, whose frame is in its file"),
            None => format!("frame record of no object: {d}"),
        };
        report.leftovers.push(msg.clone());
        fixes.push((Fix::DoomFrame(*d), msg, "deleted".into()));
    }
    let files = index.objects().list()?;
    report.files = files.len() as u64;
    let mut kept = 0u64;
    for (d, path, len) in files {
        match d.map(|d| (d, recorded.get(&d))) {
            Some((d, Some(r))) if !r.in_tree => {
                if expected.contains_key(&d) && r.stored_len != len {
                    report.problems.push(format!("object {d}: file has {len} bytes, record says {}", r.stored_len));
                }
                // A record without references: reported above; gc's removal deletes the
                // file at sync.
            }
            // Its record was removed since the last sync: the file goes once that is durable.
            Some((d, _)) if awaiting.contains(&d) => {}
            // Its record may be among those that cannot be read: kept.
            Some((d, None)) if in_hole(&holes, &object_key(&d)) => kept += 1,
            _ => {
                let msg = format!("file {} belongs to no object", path.display());
                let fix = match d {
                    // Not now: its record may have been removed since the last sync, and
                    // a crash before the next one would bring the record back. gc's sync
                    // deletes it once no durable record names it.
                    Some(d) => Fix::DoomFile(d),
                    None => Fix::RemoveFile(path),
                };
                report.leftovers.push(msg.clone());
                fixes.push((fix, msg, "deleted".into()));
            }
        }
    }
    for path in index.orphan_packs()? {
        let msg = format!("file {} holds no page of the store", path.display());
        report.leftovers.push(msg.clone());
        fixes.push((Fix::OrphanPack(path), msg, "deleted".into()));
    }
    let tmp = index.objects().tmp_files()?;
    if tmp > 0 {
        report.leftovers.push(format!("{tmp} temporary files of interrupted writes in objects/tmp"));
    }
    // What the unreadable ranges still tell: keys that older images of their pages in
    // the packs hold, and keys checkpoints name.
    if !holes.is_empty() {
        let ranges: Vec<(Vec<u8>, Option<Vec<u8>>)> = holes.iter().map(|h| (h.lo.clone(), h.hi.clone())).collect();
        if let Ok(found) = crate::index::keys_in(shelf.path(), shelf.codec().hasher(), &ranges) {
            for (h, keys) in holes.iter().zip(found) {
                let named: Vec<String> = keys
                    .iter()
                    .filter_map(|k| k.strip_prefix(b"k"))
                    .map(|k| String::from_utf8_lossy(k).into_owned())
                    .collect();
                if !named.is_empty() {
                    report.problems.push(format!(
                        "keys older images in the packs name in the unreadable records {} (their values there may be \
                         newer): {}",
                        describe_range(&h.lo, h.hi.as_deref()),
                        shown(&named)
                    ));
                }
            }
        }
    }
    for h in &holes {
        if !h.named.is_empty() {
            let named: Vec<String> = h.named.iter().cloned().collect();
            report.problems.push(format!(
                "keys checkpoints name in the unreadable records {}: {}",
                describe_range(&h.lo, h.hi.as_deref()),
                shown(&named)
            ));
        }
    }
    if beyond_reach > 0 {
        report.problems.push(format!(
            "{beyond_reach} objects are named by records that cannot be read: kept (`salvage` copies out their values)"
        ));
    }
    if kept > 0 {
        report.problems.push(format!(
            "{kept} object files whose records cannot be read: kept (`salvage` copies out their values)"
        ));
    }
    // Nothing is changed while any record cannot be read.
    if !repair || !complete {
        return Ok(report);
    }
    // Everything was read: repair.
    for (fix, msg, done) in fixes {
        match fix {
            Fix::Trim(lo) => index.trim_page(&lo)?,
            Fix::OrphanPack(path) => {
                // Deleted by gc's sync, once no durable directory can name it.
                if !index.doom_orphan_pack(&path) {
                    fs::remove_file(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?;
                }
            }
            Fix::SetObject(d, rec) => writer.set_object(&d, rec)?,
            Fix::DoomFrame(d) | Fix::DoomFile(d) => index.doom(d),
            Fix::RemoveFile(path) => fs::remove_file(&path).map_err(|e| Error::Io { path: path.clone(), source: e })?,
        }
        report.problems.retain(|p| *p != msg);
        report.repaired.push(format!("{msg}: {done}"));
    }
    let n = index.objects().clean_tmp()?;
    if n > 0 {
        report.repaired.push(format!("{n} temporary files deleted"));
    }
    report.leftovers.clear();
    Ok(report)
}

/// The record key of checkpoint `name`'s header.
fn checkpoint_key(name: &str) -> Vec<u8> {
    let mut k = vec![b'C'];
    k.extend_from_slice(name.as_bytes());
    k
}

/// An object record for `d` rebuilt from its frame (gc, for an object that records refer
/// to but that has no record), or `None` when the frame cannot be read.
fn rebuild_record(
    shelf: &Store,
    d: &Digest,
    refs: u64,
    in_tree: bool,
    recorded: &BTreeMap<Digest, ObjectRecord>,
) -> Option<ObjectRecord> {
    let index = shelf.index();
    let frame = index.frame(d).ok()?;
    let mut rec = ObjectRecord::whole(refs, frame.len() as u64, index.generation(), in_tree);
    if let FrameKind::Delta(base) = frame_kind(&frame).ok()? {
        rec.depth = recorded.get(&base)?.depth.checked_add(1)?;
        rec.base = Some(base);
    }
    Some(rec)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pickled `bytes` of 20 KB that does not compress: stored as an object file.
    fn big() -> Vec<u8> {
        let mut p = vec![0x80, 4, 0x8e];
        p.extend_from_slice(&20_000u64.to_le_bytes());
        let mut s = 1u64;
        for _ in 0..20_000 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            p.push((s >> 56) as u8);
        }
        p.extend_from_slice(b"\x94.");
        p
    }

    /// Regression (crash harness, a kill inside gc): gc deleted at once a file whose record
    /// had been removed since the last sync; the kill brought the record back, naming a
    /// missing file. The file must stay until gc's own sync has made the removal durable.
    #[test]
    fn gc_deletes_files_only_after_its_sync() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
        let shelf = crate::Shelf::open(dir.path().join("s"))?;
        shelf.insert_pickle("a", &big())?;
        shelf.sync()?;
        let digest = shelf.digest("a")?.ok_or_else(|| Error::Config("no digest".into()))?;
        let file = shelf.store().index().objects().path_of(&digest);
        shelf.remove("a")?; // the record is gone, but not durably yet
        // gc before its sync: the file is awaiting the sync that makes the removal durable.
        run(shelf.store(), true, &mut ())?;
        assert!(file.exists(), "gc deleted the file before the removal of its record was durable");
        shelf.sync()?;
        assert!(!file.exists());
        assert!(shelf.verify()?.is_ok());
        Ok(())
    }
}
