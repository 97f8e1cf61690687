//! `salvage`: copies everything that can still be read out of a damaged store into a new
//! one, and never changes the damaged store.
//!
//! What is copied, record by record (the bytes as they are, after checking): every key and
//! memo result whose value verifies against its digest; every checkpoint whose entries all
//! verify, under its name, and one whose entries do not all verify with those that do,
//! as `<name>~partial`; the metadata records (dictionaries, memo versions); the objects
//! these name, with their chains of bases; and, under the key `recovered/<digest in hex>`,
//! every value whose object verifies but that no copied record names — the values of keys
//! whose records were lost (and old versions kept only as bases of lost ones). Reference
//! counts are computed afresh. The new store is then reopened and verified.
//!
//! Invariant: the damaged store is opened read-only (a private copy of its sled files, or
//! a directory rebuilt from its packs in the system's temporary directory): no byte in its
//! directory is written, renamed or deleted.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::blob::{Digest, FrameKind, frame_kind};
use crate::error::{Error, Result};
use crate::index::{
    self, Batch, CheckpointHeader, INLINE_MAX, KeyRecord, MEMO_HEADER, ObjectRecord, PrivateCopy, describe_range,
    frame_key, object_key,
};
use crate::repair::VerifyReport;
use crate::store::{Config, FORMAT_VERSION, Store};
use crate::witness;

/// The key prefix of values salvage recovers without their key.
pub const RECOVERED_PREFIX: &str = "recovered/";

/// What salvage appends to the name of a checkpoint it copies only in part.
pub const PARTIAL_SUFFIX: &str = "~partial";

/// The name a checkpoint copied in part gets: its name (cut to fit 255 bytes) and
/// [`PARTIAL_SUFFIX`].
fn partial_name(name: &str) -> String {
    let mut base = name.to_owned();
    while base.len() + PARTIAL_SUFFIX.len() > 255 {
        base.pop();
    }
    base + PARTIAL_SUFFIX
}

/// What [`ShelfBuilder::salvage`](crate::ShelfBuilder::salvage) copied, and what it could not.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SalvageReport {
    /// Keys copied with their values.
    pub keys: u64,
    /// Memo results copied.
    pub memo: u64,
    /// Checkpoints copied whole (those copied in part are in [`lost`](Self::lost)).
    pub checkpoints: u64,
    /// Values copied under `recovered/<digest>`: their objects verify, but no record that
    /// could be read names them.
    pub recovered: u64,
    /// Objects copied (with the files and frame records that hold them).
    pub objects: u64,
    /// What could not be read or copied, one line each: unreadable pages and their key
    /// ranges, keys whose values do not verify, checkpoints not copied whole.
    pub lost: Vec<String>,
    /// How the damaged store was read, and other findings, one line each.
    pub notes: Vec<String>,
    /// `verify` of the new store.
    pub verify: VerifyReport,
}

impl SalvageReport {
    /// True when everything the damaged store held was copied (nothing in [`lost`]) and the
    /// new store verifies clean.
    ///
    /// [`lost`]: SalvageReport::lost
    pub fn is_complete(&self) -> bool {
        self.lost.is_empty() && self.verify.is_ok()
    }
}

/// Opens the damaged store read-only: through its own directory when sled can be read and
/// is current, else through a directory rebuilt from its packs (kept in `tmp`).
fn open_source(b: &Config, tmp: &mut Option<PrivateCopy>, report: &mut SalvageReport) -> Result<Arc<Store>> {
    let path = &b.path;
    // Read-only, as the store is found (a format 2 store is not upgraded), whatever its
    // witness says; the page directory from `sled_from` when given.
    let open = |sled_from: Option<PathBuf>| {
        let mut c = b.clone();
        c.read_only = true;
        c.allow_rollback = true;
        c.legacy = true;
        c.sled_from = sled_from;
        Store::open(c)
    };
    let readable = index::read_directory(path);
    let current = match (&readable, witness::read(path)) {
        (Ok(d), Ok(w)) => d.format.is_some() && w.is_none_or(|w| d.generation >= Some(w.generation)),
        (Ok(d), Err(_)) => d.format.is_some(),
        (Err(_), _) => false,
    };
    if current {
        return open(None);
    }
    let why = match &readable {
        Err(e) => e.to_string(),
        Ok(_) => "its page directory (sled/) is older than its last sync, or its witness is damaged".into(),
    };
    let rebuilt = index::rebuild(path, &b.hasher())?;
    report.notes.extend(rebuilt.damage.iter().cloned());
    for l in &rebuilt.lost {
        report.lost.push(format!("the records {} cannot be read: {}", describe_range(&l.lo, l.hi.as_deref()), l.why));
    }
    if !rebuilt.exact && rebuilt.lost.is_empty() && readable.is_ok() {
        report.notes.push(format!("{why}; the packs do not rebuild the newest directory either: read as sled has it"));
        return open(None);
    }
    if !rebuilt.exact && rebuilt.lost.is_empty() {
        report.lost.push(
            "the directory rebuilt from the packs is not that of the newest commit (a commit record is damaged): \
             some values copied may be older than the last commit"
                .into(),
        );
    }
    let copy = PrivateCopy::empty()?;
    let sled_dir = copy.path().join("sled");
    let generation = witness::read(path).ok().flatten().map_or(0, |w| w.generation).max(rebuilt.generation);
    index::write_directory(&sled_dir, &rebuilt, FORMAT_VERSION, generation)?;
    *tmp = Some(copy);
    report.notes.push(format!("{why}: read through a directory rebuilt from {} pack files", rebuilt.packs));
    open(Some(sled_dir))
}

/// A record copied as it is, and the object it names (if any).
struct Copied {
    key: Vec<u8>,
    value: Vec<u8>,
    object: Option<Digest>,
}

/// Salvages the store `b` names into a new store at `into` (see the module docs).
pub(crate) fn run(b: Config, into: &Path) -> Result<SalvageReport> {
    b.validate()?;
    if into.exists() && std::fs::read_dir(into).map_or(true, |mut d| d.next().is_some()) {
        return Err(Error::Io {
            path: into.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::AlreadyExists,
                "exists and is not empty: salvage writes a new store",
            ),
        });
    }
    let mut report = SalvageReport::default();
    let mut tmp = None;
    let src = open_source(&b, &mut tmp, &mut report)?;
    let index = src.index();
    let _pin = index.pin_files();

    // The records: what to copy, checked.
    let mut copied: Vec<Copied> = Vec::new();
    let mut headers: BTreeMap<String, (Vec<u8>, Vec<u8>)> = BTreeMap::new();
    let mut entries: BTreeMap<String, Vec<Result<Copied, String>>> = BTreeMap::new();
    let mut records: BTreeMap<Digest, ObjectRecord> = BTreeMap::new();
    let mut frame_records: BTreeSet<Digest> = BTreeSet::new();
    // Unreadable pages (a directory rebuilt from the packs names its gaps itself).
    if tmp.is_none() {
        for c in index.check_pages() {
            if let Err(e) = c.status {
                report.lost.push(format!("the records {} cannot be read: {e}", describe_range(&c.lo, c.hi.as_deref())));
            }
        }
    }
    for item in index.scan_all() {
        let Ok((k, v)) = item else { continue };
        let (k, v) = (k.to_vec(), v.to_vec());
        match k.first() {
            Some(b'k') | Some(b'x') => {
                let memo = k[0] == b'x';
                let name = String::from_utf8_lossy(&k[1..]).into_owned();
                let body = if memo { v.get(MEMO_HEADER..) } else { Some(&v[..]) };
                match body.map(|b| check(&src, b)) {
                    Some(Ok(object)) => {
                        if memo {
                            report.memo += 1;
                        } else {
                            report.keys += 1;
                        }
                        copied.push(Copied { key: k, value: v, object });
                    }
                    Some(Err(why)) => {
                        report.lost.push(format!("{} {name:?}: {why}", if memo { "memo result" } else { "key" }))
                    }
                    None => report.lost.push(format!("memo result {name:?}: bad layout")),
                }
            }
            Some(b'C') => {
                headers.insert(String::from_utf8_lossy(&k[1..]).into_owned(), (k, v));
            }
            Some(b'c') => {
                let rest = &k[1..];
                let nul = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
                let name = String::from_utf8_lossy(&rest[..nul]).into_owned();
                let entry = check(&src, &v).map(|object| Copied { key: k.clone(), value: v.clone(), object });
                entries.entry(name).or_default().push(entry);
            }
            Some(b'o') => {
                if let (Some(d), Some(r)) = (Digest::from_slice(&k[1..]), ObjectRecord::parse(&v)) {
                    records.insert(d, r);
                }
            }
            Some(b'f') => {
                frame_records.extend(Digest::from_slice(&k[1..]));
            }
            _ => {}
        }
    }
    // The metadata records of the tree (or of sled, in a format 2 store).
    // (A page of them that cannot be read is among the pages reported above.)
    for (name, value) in index.settings("").unwrap_or_default() {
        if !matches!(name.as_str(), "format" | "generation" | "auth") {
            copied.push(Copied { key: index::meta_key(&name), value: value.to_vec(), object: None });
        }
    }
    // Checkpoints: whole under their names; one with entries that cannot be read or do not
    // verify (or whose own record cannot be read) as `<name>~partial`, holding the rest.
    let names: BTreeSet<String> = headers.keys().chain(entries.keys()).cloned().collect();
    for name in names {
        let header = headers.get(&name);
        let parsed = header.and_then(|(_, v)| CheckpointHeader::parse(v));
        let list = entries.remove(&name).unwrap_or_default();
        let total = list.len();
        let good: Vec<Copied> = list.into_iter().filter_map(|e| e.ok()).collect();
        if let (Some((hk, hv)), Some(h)) = (header, parsed)
            && good.len() as u64 == h.keys
        {
            report.checkpoints += 1;
            copied.extend(good);
            copied.push(Copied { key: hk.clone(), value: hv.clone(), object: None });
            continue;
        }
        let partial = partial_name(&name);
        let mut bytes = 0;
        let mut counted = BTreeSet::new();
        for c in &good {
            bytes += match (KeyRecord::parse(&c.value), c.object) {
                (_, Some(d)) if !counted.insert(d) => 0,
                (_, Some(d)) => records.get(&d).map_or(0, |r| r.stored_len),
                (Some(KeyRecord::Inline { frame_at, .. }), None) => (c.value.len() - frame_at) as u64,
                _ => 0,
            };
        }
        let h = CheckpointHeader { created_ms: parsed.map_or(0, |h| h.created_ms), keys: good.len() as u64, bytes };
        report.lost.push(format!(
            "checkpoint {name:?}: {} of its {} entries can be read and verified{}: copied as {partial:?}",
            good.len(),
            parsed.map_or_else(|| total.to_string(), |h| h.keys.to_string()),
            if header.is_none() { " (its own record cannot be read)" } else { "" },
        ));
        let skip = 2 + name.len();
        for c in good {
            let mut key = vec![b'c'];
            key.extend_from_slice(partial.as_bytes());
            key.push(0);
            key.extend_from_slice(c.key.get(skip..).unwrap_or_default());
            copied.push(Copied { key, ..c });
        }
        let mut hk = vec![b'C'];
        hk.extend_from_slice(partial.as_bytes());
        copied.push(Copied { key: hk, value: h.encode().to_vec(), object: None });
    }

    // Values no copied record names: recovered under their digest.
    let named: BTreeSet<Digest> = copied.iter().filter_map(|c| c.object).collect();
    let mut orphans: BTreeSet<Digest> = frame_records.iter().copied().collect();
    match index.objects().list() {
        Ok(files) => orphans.extend(files.into_iter().filter_map(|(d, _, _)| d)),
        Err(e) => report.lost.push(format!("the object files cannot be listed: {e}")),
    }
    for d in orphans {
        if named.contains(&d) {
            continue;
        }
        if src.chains().load(index, src.codec(), &d).is_ok() {
            let key = format!("{RECOVERED_PREFIX}{}", d.to_hex());
            copied.push(Copied {
                key: index::key_in(index::Space::Keys, &key),
                value: KeyRecord::object(&d),
                object: Some(d),
            });
            report.recovered += 1;
        }
    }

    // The objects the copied records name, with their chains of bases, and their
    // references counted afresh.
    let mut refs: BTreeMap<Digest, u64> = BTreeMap::new();
    let mut work: Vec<Digest> = Vec::new();
    for d in copied.iter().filter_map(|c| c.object) {
        *refs.entry(d).or_insert(0) += 1;
        work.push(d);
    }
    // The new store (object files are written to it as they are read).
    let dst = {
        let mut c = Config::new(into);
        c.auth_key.clone_from(&b.auth_key);
        Store::open(c)?
    };
    // Each object's record, and its frame when it goes in a frame record.
    let mut objects: BTreeMap<Digest, (ObjectRecord, Option<Vec<u8>>)> = BTreeMap::new();
    while let Some(d) = work.pop() {
        if objects.contains_key(&d) {
            continue;
        }
        let frame = index.frame(&d)?;
        let base = match frame_kind(&frame) {
            Ok(FrameKind::Delta(b)) => Some(b),
            _ => None,
        };
        let mut rec = records.get(&d).copied().unwrap_or_else(|| {
            ObjectRecord::whole(0, frame.len() as u64, index.generation(), frame.len() <= INLINE_MAX)
        });
        // Frames of at most INLINE_MAX bytes are in frame records, larger ones in files.
        rec.in_tree = frame.len() <= INLINE_MAX;
        rec.stored_len = frame.len() as u64;
        rec.base = base;
        if let Some(b) = base {
            *refs.entry(b).or_insert(0) += 1;
            work.push(b);
        } else {
            rec.depth = 0;
            rec.seq = 0;
        }
        let kept = if rec.in_tree {
            Some(frame)
        } else {
            dst.index().objects().write(&d, &frame)?;
            None
        };
        objects.insert(d, (rec, kept));
    }
    // Depths from the bases up.
    let ids: Vec<Digest> = objects.keys().copied().collect();
    for d in ids {
        let mut chain = vec![d];
        while let Some(b) = chain.last().and_then(|x| objects.get(x)).and_then(|(r, _)| r.base) {
            if chain.len() > 64 || chain.contains(&b) {
                break;
            }
            chain.push(b);
        }
        if let Some((r, _)) = objects.get_mut(&d) {
            r.depth = u8::try_from(chain.len() - 1).unwrap_or(u8::MAX);
        }
    }
    drop(_pin);

    {
        let di = dst.index();
        let writer = di.writer();
        let mut batch = Batch::default();
        for c in &copied {
            batch.insert(&c.key, &c.value[..]);
        }
        for (d, (rec, frame)) in &objects {
            let r = ObjectRecord { refs: refs.get(d).copied().unwrap_or(0), ..*rec };
            if let Some(frame) = frame {
                batch.insert(&frame_key(d)[..], &frame[..]);
            }
            batch.insert(&object_key(d)[..], &r.encode()[..]);
        }
        report.objects = objects.len() as u64;
        writer.write(batch)?;
    }
    dst.mark_dirty();
    Store::close(dst)?;
    drop(src);
    drop(tmp);
    let mut c = Config::new(into);
    c.read_only = true;
    c.auth_key = b.auth_key;
    report.verify = super::verify::run(&*Store::open(c)?, false, &mut ())?;
    Ok(report)
}

/// Checks a key record's value (inline: it decodes to its digest; an object: it and its
/// chain of bases read and verify); returns the object it names.
fn check(src: &Store, record: &[u8]) -> Result<Option<Digest>, String> {
    match KeyRecord::parse(record) {
        Some(KeyRecord::Inline { digest, frame_at }) => {
            src.codec().decode(&record[frame_at..], &digest).map(|_| None).map_err(str::to_owned)
        }
        Some(KeyRecord::Object { digest }) => match src.chains().load(src.index(), src.codec(), &digest) {
            Ok(_) => Ok(Some(digest)),
            Err(crate::chain::LoadError::Store(e)) => Err(e.to_string()),
            Err(crate::chain::LoadError::Bad(at, why)) => Err(format!("object {at}: {why}")),
        },
        None => Err("bad layout".into()),
    }
}
