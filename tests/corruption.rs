//! Corruption campaign: damage one file of a closed store — flip a bit, zero 512 bytes or 4
//! KiB, truncate, or delete it — then open the damaged copy and read everything, then run
//! `gc`, `salvage` and `repair` on it, in a child process (this test binary, re-executed) so
//! that a panic or an abort is seen as the child's exit status instead of taking the test
//! down.
//!
//! Each trial is classified:
//! - **no effect**: everything reads back equal to the reference and `verify` is clean;
//! - **refused**: open returned an error (other than `RolledBack`): a clean error;
//! - **rolled back**: open returned `RolledBack`: the loss is detected and named;
//! - **detected**: open succeeded, and reads or `verify` reported the damage (some keys may
//!   be unreadable, but no value returned is wrong);
//! - **undetected loss**: open, every read and `verify` succeeded, yet a key is missing;
//! - **wrong value**: a read returned bytes other than the reference's, or a key the
//!   reference does not have — the store lied;
//! - **panic/abort**: the child panicked outside the store's own `catch_unwind`, or died by a
//!   signal; **hang**: it ran past the time limit.
//!
//! The reference store holds every kind of record: inline values, object files shared by
//! keys, versions stored as delta chains (frame records and files), and checkpoints (copied
//! and promoted entries). The child reads every key and every checkpoint's every entry
//! (`get_pickle_at`): a checkpoint value other than the reference's is a wrong value too.
//!
//! After that first look, the child records which values (keys and checkpoint entries) a
//! read-only open could read before anything wrote, then runs `gc` (when the store opens),
//! `salvage` into a new store and `repair`, and counts the values readable before that are
//! not readable (with the right bytes) after each: in the damaged store after gc and after
//! repair, in the new store after salvage (a checkpoint it copies in part is read under
//! `<name>~partial`). It also checks that salvage changed no byte of the damaged store.
//!
//! The test asserts zero undetected losses, wrong values, panics/aborts and hangs, zero
//! values lost by gc, salvage or repair, zero wrong values read after them and no store
//! changed by salvage, and prints the tables of outcomes per damage kind and per file kind
//! and the gc/salvage/repair figures (`--nocapture`).
//!
//! Environment: `PICKLESHELF_CORRUPTION_TRIALS` (default 300 when `CI` is set, 120
//! otherwise), `PICKLESHELF_CORRUPTION_SEED` (default 1), `PICKLESHELF_CORRUPTION_KEYS` (keys
//! of the reference store, default 300), `PICKLESHELF_CORRUPTION_JOBS`
//! (parallel trials, default 2), `PICKLESHELF_CORRUPTION_KEEP` (a directory: the reference
//! store, and the damaged copies whose outcome is a failure or an undetected loss, are kept
//! there).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write as _;
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{Rng, bytes_pickle, words_pickle};
use pickleshelf::{Batch, Shelf};

const TEST_NAME: &str = "corruption_campaign";
/// Set in a child: the damaged store to check.
const ENV_CHILD: &str = "PICKLESHELF_CORRUPTION_CHILD";
/// Set in a child: the file its findings go to.
const ENV_RESULT: &str = "PICKLESHELF_CORRUPTION_RESULT";
/// A child running longer than this is a hang (a 20,000-key trial takes 5–20 s on a busy
/// 2-core machine).
const TRIAL_TIMEOUT: Duration = Duration::from_secs(300);

/// Keys of the reference store: `PICKLESHELF_CORRUPTION_KEYS`, default 300 (children inherit
/// the variable, so they rebuild the same reference).
fn key_count() -> u64 {
    env_u64("PICKLESHELF_CORRUPTION_KEYS").unwrap_or(300).max(10)
}

// ----- deterministic randomness -----

// ----- the reference store -----

fn text_pickle(rng: &mut Rng, id: u64) -> Vec<u8> {
    let words = ["alpha", "beta", "gamma", "delta", "shelf", "pickle", "sled", "store", "value"];
    words_pickle(rng, format!("record {id}:"), &words, 200)
}

/// Large value `id` of the pool: incompressible (even ids) or compressible to a frame that is
/// still an object file (odd ids).
fn big_pickle(id: u64) -> Vec<u8> {
    let mut rng = Rng::new(id << 8 | 3);
    let len = 5_000 + rng.below(295_000) as usize;
    let mut payload = Vec::with_capacity(len + 8);
    if id.is_multiple_of(2) {
        while payload.len() < len {
            payload.extend_from_slice(&rng.next().to_le_bytes());
        }
        payload.truncate(len);
    } else {
        let len = len.max(60_000);
        payload.extend((0..len).map(|_| b"abcdefgh"[rng.below(8) as usize]));
    }
    bytes_pickle(&payload)
}

/// Version `n` of line `l`: 40 KB of noise with `n` scattered changes (the store keeps
/// versions as deltas against each other).
fn version_pickle(l: u64, n: u64) -> Vec<u8> {
    let mut rng = Rng::new(l << 8 | 5);
    let mut payload = Vec::with_capacity(40_008);
    while payload.len() < 40_000 {
        payload.extend_from_slice(&rng.next().to_le_bytes());
    }
    payload.truncate(40_000);
    for j in 0..n {
        payload[((j * 7919 + l) % 40_000) as usize] ^= 0x5a;
    }
    bytes_pickle(&payload)
}

/// One step of building the reference store.
enum Write {
    One(String, Option<Vec<u8>>),
    Batch(Vec<(String, Option<Vec<u8>>)>),
    Sync,
    /// Close and open again (sled writes a snapshot at open).
    Reopen,
    Checkpoint(String),
    DeleteCheckpoint(String),
}

fn reference_writes() -> Vec<Write> {
    let mut rng = Rng::new(0x5eed);
    let pool: Vec<Vec<u8>> = (0..12).map(big_pickle).collect();
    let key = |k: u64| format!("ref/{k:03}");
    let value = |rng: &mut Rng, i: u64| -> Vec<u8> {
        match rng.below(10) {
            0..=1 => vec![0x80, 4, b'K', rng.below(256) as u8, b'.'],
            2..=5 => text_pickle(rng, i),
            6..=7 => {
                let len = 300 + rng.below(3200) as usize;
                bytes_pickle(&(0..len).map(|_| b"wxyz"[rng.below(4) as usize]).collect::<Vec<_>>())
            }
            _ => pool[rng.below(pool.len() as u64) as usize].clone(),
        }
    };
    let mut out = Vec::new();
    // Every key once, then overwrites, batches sharing large values, removals; a sync now and then, and two
    // reopens so that sled has a snapshot and a log past it.
    let keys = key_count();
    // Overwrites: 4 per key (1,200 by default); reopens after a third and three quarters
    // of them.
    let overwrites = 4 * keys;
    for k in 0..keys {
        out.push(Write::One(key(k), Some(value(&mut rng, k))));
    }
    for i in 0..overwrites {
        if i % 150 == 0 {
            out.push(Write::Sync);
        }
        if i == overwrites / 3 || i == overwrites * 3 / 4 {
            out.push(Write::Reopen);
        }
        if i % 40 == 0 {
            let shared = pool[rng.below(pool.len() as u64) as usize].clone();
            let ops = (0..4)
                .map(|j| (key(rng.below(keys)), Some(if j % 2 == 0 { shared.clone() } else { value(&mut rng, i) })))
                .collect();
            out.push(Write::Batch(ops));
        } else {
            out.push(Write::One(key(rng.below(keys)), Some(value(&mut rng, 1000 + i))));
        }
    }
    for _ in 0..keys / 12 {
        out.push(Write::One(key(rng.below(keys)), None));
    }
    // Versions of three values, each saved under a new key and then under one key that a
    // checkpoint keeps after every save: delta chains, in frame records and files.
    for n in 0..60u64 {
        let l = n % 3;
        out.push(Write::One(format!("snap/{l}/{n:02}"), Some(version_pickle(l, n))));
        if n % 10 == 9 {
            out.push(Write::One(format!("snap/{l}/{:02}", n - 6), None));
        }
        out.push(Write::One(format!("state/{l}"), Some(version_pickle(l, n + 1))));
        if n % 6 == 0 {
            out.push(Write::Checkpoint(format!("save-{n:02}")));
        }
        if n == 30 {
            out.push(Write::Sync);
            out.push(Write::DeleteCheckpoint("save-12".into()));
        }
    }
    out
}

/// The reference's final keys and values, and each checkpoint's.
#[derive(Default)]
struct Reference {
    keys: BTreeMap<String, Vec<u8>>,
    checkpoints: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

fn reference() -> Reference {
    let mut r = Reference::default();
    for w in reference_writes() {
        let mut one = |k: String, v: Option<Vec<u8>>| match v {
            Some(v) => {
                r.keys.insert(k, v);
            }
            None => {
                r.keys.remove(&k);
            }
        };
        match w {
            Write::One(k, v) => one(k, v),
            Write::Batch(ops) => ops.into_iter().for_each(|(k, v)| one(k, v)),
            Write::Sync | Write::Reopen => {}
            Write::Checkpoint(name) => {
                r.checkpoints.insert(name, r.keys.clone());
            }
            Write::DeleteCheckpoint(name) => {
                r.checkpoints.remove(&name);
            }
        }
    }
    r
}

fn build_reference(path: &Path) -> pickleshelf::Result<()> {
    let mut shelf = Shelf::open(path)?;
    for w in reference_writes() {
        match w {
            Write::One(k, Some(v)) => shelf.insert_pickle(&k, &v)?,
            Write::One(k, None) => {
                shelf.remove(&k)?;
            }
            Write::Batch(ops) => {
                let mut b = Batch::new();
                for (k, v) in ops {
                    match v {
                        Some(v) => b.insert_pickle(&k, &v)?,
                        None => b.remove(&k),
                    }
                }
                shelf.apply(b)?;
            }
            Write::Sync => shelf.sync()?,
            Write::Reopen => {
                shelf.close()?;
                shelf = Shelf::open(path)?;
            }
            Write::Checkpoint(name) => {
                shelf.checkpoint(&name)?;
            }
            Write::DeleteCheckpoint(name) => {
                shelf.delete_checkpoint(&name)?;
            }
        }
    }
    let report = shelf.verify()?;
    assert!(report.is_ok(), "reference store: {report:?}");
    // The reference must hold what the campaign means to damage.
    assert!(report.checkpoints >= 8, "{report:?}");
    assert!(report.objects > report.files + 40, "delta objects in frame records: {report:?}");
    shelf.close()
}

// ----- the child: open the damaged copy and read everything -----

/// The error's variant name (`RolledBack`, `Engine`, ...).
fn variant(e: &pickleshelf::Error) -> String {
    format!("{e:?}").chars().take_while(char::is_ascii_alphanumeric).collect()
}

/// What a child found, one `name=value` per field, then `done`.
#[derive(Clone, Debug, Default)]
struct Findings {
    open_error: Option<String>,
    ok: u64,
    wrong: u64,
    missing: u64,
    read_errors: u64,
    extra: u64,
    scan_errors: u64,
    problems: u64,
    verify_error: bool,
    first_error: String,
    /// Values (keys and checkpoint entries) readable before anything wrote.
    before: u64,
    /// Of those, values not readable after gc, after salvage (in the new store) and after
    /// repair; values repair made readable; wrong values read after any of them.
    lost_gc: u64,
    lost_salvage: u64,
    lost_repair: u64,
    gained_repair: u64,
    wrong_after: u64,
    salvage_changed: bool,
    /// How gc, salvage and repair ended.
    gc: String,
    salvage: String,
    repair: String,
    done: bool,
}

/// The values of the reference that read back correctly from the store at `path` (opened
/// read-only; none when it cannot be opened): `(None, key)` for keys, `(Some(name), key)`
/// for checkpoint entries; and how many reads returned a value other than the reference's
/// (or a key it does not have). Keys under `recovered/` (made by salvage) are not counted.
fn readable_values(path: &Path, reference: &Reference) -> (BTreeSet<(Option<String>, String)>, u64) {
    let mut good = BTreeSet::new();
    let mut wrong = 0;
    let Ok(shelf) = Shelf::builder(path).read_only(true).open() else { return (good, wrong) };
    for (k, v) in &reference.keys {
        match shelf.get_pickle(k) {
            Ok(Some(b)) if b == *v => {
                good.insert((None, k.clone()));
            }
            Ok(Some(_)) => wrong += 1,
            _ => {}
        }
    }
    for (name, keys) in &reference.checkpoints {
        // Salvage copies a checkpoint it cannot copy whole under another name.
        let partial = format!("{name}{}", pickleshelf::PARTIAL_SUFFIX);
        for (k, v) in keys {
            let read = match shelf.get_pickle_at(name, k) {
                Err(pickleshelf::Error::Checkpoint { .. }) => shelf.get_pickle_at(&partial, k),
                other => other,
            };
            match read {
                Ok(Some(b)) if b == *v => {
                    good.insert((Some(name.clone()), k.clone()));
                }
                Ok(Some(_)) => wrong += 1,
                _ => {}
            }
        }
    }
    for k in shelf.keys().flatten() {
        if !reference.keys.contains_key(&k) && !k.starts_with(pickleshelf::RECOVERED_PREFIX) {
            wrong += 1;
        }
    }
    (good, wrong)
}

/// Every file under `dir` and its bytes.
fn dir_contents(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            dir_contents(&p, out);
        } else {
            out.push((p.clone(), fs::read(&p).unwrap_or_default()));
        }
    }
}

/// Reads every key and checkpoint entry, lists the keys and verifies: the campaign's first
/// look at the damaged store (opened writable, as an application would).
fn read_everything(shelf: &Shelf, reference: &Reference) -> Findings {
    let mut f = Findings::default();
    let note = |f: &mut Findings, what: String| {
        if f.first_error.is_empty() {
            f.first_error = what;
        }
    };
    // Every checkpoint's every value (a missing checkpoint loses all of its keys), and no
    // key a checkpoint did not hold.
    for (name, keys) in &reference.checkpoints {
        if let Ok(listed) = shelf.checkpoint_keys(name) {
            for (k, _) in listed.iter().filter(|(k, _)| !keys.contains_key(k)) {
                f.extra += 1;
                note(&mut f, format!("EXTRA key {k:?} in checkpoint {name}"));
            }
        }
        for (k, v) in keys {
            match shelf.get_pickle_at(name, k) {
                Ok(Some(b)) if b == *v => f.ok += 1,
                Ok(Some(b)) => {
                    f.wrong += 1;
                    note(&mut f, format!("WRONG value for {k} at checkpoint {name}: {} bytes", b.len()));
                }
                Ok(None) | Err(pickleshelf::Error::Checkpoint { .. }) => f.missing += 1,
                Err(e) => {
                    f.read_errors += 1;
                    note(&mut f, format!("get {k} at {name}: {}: {e}", variant(&e)));
                }
            }
        }
    }
    match shelf.checkpoints() {
        Ok(list) => {
            for c in list {
                if !reference.checkpoints.contains_key(&c.name) {
                    f.extra += 1;
                    note(&mut f, format!("EXTRA checkpoint {:?}", c.name));
                }
            }
        }
        Err(e) => {
            f.scan_errors += 1;
            note(&mut f, format!("checkpoints: {}: {e}", variant(&e)));
        }
    }
    let reference = &reference.keys;
    for (k, v) in reference {
        match shelf.get_pickle(k) {
            Ok(Some(b)) if b == *v => f.ok += 1,
            Ok(Some(b)) => {
                f.wrong += 1;
                note(&mut f, format!("WRONG value for {k}: {} bytes", b.len()));
            }
            Ok(None) => f.missing += 1,
            Err(e) => {
                f.read_errors += 1;
                note(&mut f, format!("get {k}: {}: {e}", variant(&e)));
            }
        }
    }
    for item in shelf.keys() {
        match item {
            Ok(k) if reference.contains_key(&k) => {}
            Ok(k) => {
                f.extra += 1;
                note(&mut f, format!("EXTRA key {k:?}"));
            }
            Err(e) => {
                f.scan_errors += 1;
                note(&mut f, format!("keys: {}: {e}", variant(&e)));
                break;
            }
        }
    }
    match shelf.verify() {
        Ok(r) => {
            f.problems = r.problems.len() as u64;
            if let Some(p) = r.problems.first() {
                note(&mut f, format!("verify: {p}"));
            }
        }
        Err(e) => {
            f.verify_error = true;
            note(&mut f, format!("verify: {}: {e}", variant(&e)));
        }
    }
    f
}

fn child(store: &Path, result: &Path) -> ! {
    let Ok(mut out) = fs::File::create(result) else {
        std::process::exit(5);
    };
    let mut line = |text: String| {
        if out.write_all(format!("{text}\n").as_bytes()).is_err() {
            std::process::exit(4);
        }
    };
    let reference = reference();
    // What a user can read before running anything that writes.
    let (before, _) = readable_values(store, &reference);
    match Shelf::open(store) {
        Ok(shelf) => {
            let f = read_everything(&shelf, &reference);
            line(format!(
                "ok={} wrong={} missing={} read_errors={} extra={} scan_errors={} problems={} verify_error={}",
                f.ok, f.wrong, f.missing, f.read_errors, f.extra, f.scan_errors, f.problems, f.verify_error
            ));
            line(format!("first_error={}", f.first_error.replace('\n', " ")));
            // Closing (which syncs) must not panic either.
            drop(shelf);
        }
        Err(e) => line(format!("open_error={}: {e}", variant(&e))),
    }
    // gc (when the store opens): it must lose nothing that could be read.
    let gc = match Shelf::open(store).and_then(|s| s.gc()) {
        Ok(r) if r.is_complete() && r.is_ok() => "clean",
        Ok(r) if r.is_complete() => "problems",
        Ok(_) => "incomplete",
        Err(_) => "refused",
    };
    let (after_gc, wrong_gc) = readable_values(store, &reference);
    // salvage: copies everything readable, changes nothing in the damaged store.
    let mut unchanged = Vec::new();
    dir_contents(store, &mut unchanged);
    let into = store.with_file_name("salvaged");
    let salvage = match Shelf::builder(store).salvage(&into) {
        Ok(r) if r.is_complete() => "complete",
        Ok(_) => "partial",
        Err(_) => "failed",
    };
    let mut now = Vec::new();
    dir_contents(store, &mut now);
    let (salvaged, wrong_salvaged) = readable_values(&into, &reference);
    // repair: brings back what sled lost, loses nothing.
    let repair = match Shelf::builder(store).repair() {
        Ok(r) if r.is_ok() && r.rebuilt => "rebuilt",
        Ok(r) if r.is_ok() => "ok",
        Ok(_) => "not ok",
        Err(_) => "failed",
    };
    let (after_repair, wrong_repair) = readable_values(store, &reference);
    line(format!(
        "before={} lost_gc={} lost_salvage={} salvage_changed={} lost_repair={} gained_repair={} wrong_after={} \
         gc={gc} salvage={salvage} repair={repair}",
        before.len(),
        before.difference(&after_gc).count(),
        before.difference(&salvaged).count(),
        unchanged != now,
        before.difference(&after_repair).count(),
        after_repair.difference(&before).count(),
        wrong_gc + wrong_salvaged + wrong_repair,
    ));
    line("done".into());
    std::process::exit(0);
}

fn parse_findings(path: &Path) -> Findings {
    let text = fs::read_to_string(path).unwrap_or_default();
    let mut f = Findings::default();
    for line in text.lines() {
        if line == "done" {
            f.done = true;
        } else if let Some(e) = line.strip_prefix("open_error=") {
            f.open_error = Some(e.to_owned());
        } else if let Some(e) = line.strip_prefix("first_error=") {
            f.first_error = e.to_owned();
        } else {
            for field in line.split(' ') {
                let Some((name, value)) = field.split_once('=') else { continue };
                let n = value.parse::<u64>().unwrap_or(0);
                match name {
                    "ok" => f.ok = n,
                    "wrong" => f.wrong = n,
                    "missing" => f.missing = n,
                    "read_errors" => f.read_errors = n,
                    "extra" => f.extra = n,
                    "scan_errors" => f.scan_errors = n,
                    "problems" => f.problems = n,
                    "verify_error" => f.verify_error = value == "true",
                    "before" => f.before = n,
                    "lost_gc" => f.lost_gc = n,
                    "lost_salvage" => f.lost_salvage = n,
                    "lost_repair" => f.lost_repair = n,
                    "gained_repair" => f.gained_repair = n,
                    "wrong_after" => f.wrong_after = n,
                    "salvage_changed" => f.salvage_changed = value == "true",
                    "gc" => f.gc = value.to_owned(),
                    "salvage" => f.salvage = value.to_owned(),
                    "repair" => f.repair = value.to_owned(),
                    _ => {}
                }
            }
        }
    }
    f
}

// ----- the parent: damage, run, classify -----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    NoEffect,
    Refused,
    RolledBack,
    Detected,
    UndetectedLoss,
    WrongValue,
    PanicAbort,
    Hang,
}

const OUTCOMES: [(Outcome, &str); 8] = [
    (Outcome::NoEffect, "no effect"),
    (Outcome::Refused, "refused"),
    (Outcome::RolledBack, "rolled back"),
    (Outcome::Detected, "detected"),
    (Outcome::UndetectedLoss, "undetected loss"),
    (Outcome::WrongValue, "WRONG VALUE"),
    (Outcome::PanicAbort, "PANIC/ABORT"),
    (Outcome::Hang, "HANG"),
];

const DAMAGES: [&str; 5] = ["flip bit", "zero 512 B", "zero 4 KiB", "truncate", "delete"];

/// The kind of a store file, from its path relative to the store.
fn file_kind(rel: &str) -> &'static str {
    match rel {
        "LOCK" => "LOCK",
        "WITNESS" => "WITNESS",
        "sled/conf" => "sled conf",
        "sled/db" => "sled db",
        _ if rel.starts_with("sled/snap.") => "sled snap",
        _ if rel.starts_with("objects/") => "object",
        _ if rel.starts_with("pages/") => "pack",
        _ => "other",
    }
}

/// How often each file kind is picked (relative weights; a kind the store lacks is skipped).
const FILE_WEIGHTS: [(&str, u64); 8] = [
    ("sled db", 30),
    ("sled snap", 10),
    ("sled conf", 6),
    ("pack", 30),
    ("object", 20),
    ("WITNESS", 8),
    ("LOCK", 2),
    ("other", 2),
];

fn list_files(root: &Path, dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).expect("list the store") {
        let e = e.expect("list the store");
        let p = e.path();
        if e.file_type().expect("file type").is_dir() {
            list_files(root, &p, out);
        } else {
            out.push(p.strip_prefix(root).expect("inside the store").to_string_lossy().into_owned());
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create a copy");
    for e in fs::read_dir(from).expect("read the store") {
        let e = e.expect("read the store");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy a file");
        }
    }
}

/// Damages one file of the store in `dir`; returns (damage, file kind, description).
fn damage(dir: &Path, files: &[String], rng: &mut Rng) -> (&'static str, &'static str, String) {
    let present: Vec<(&str, u64)> =
        FILE_WEIGHTS.iter().copied().filter(|(k, _)| files.iter().any(|f| file_kind(f) == *k)).collect();
    let mut pick = rng.below(present.iter().map(|(_, w)| w).sum());
    let kind = present
        .iter()
        .find(|(_, w)| {
            let hit = pick < *w;
            pick = pick.saturating_sub(*w);
            hit
        })
        .map_or("sled db", |(k, _)| *k);
    let candidates: Vec<&String> = files.iter().filter(|f| file_kind(f) == kind).collect();
    let rel = candidates[rng.below(candidates.len() as u64) as usize];
    let path = dir.join(rel);
    let mut bytes = fs::read(&path).expect("read the file to damage");
    let len = bytes.len() as u64;
    let mut what = DAMAGES[rng.below(DAMAGES.len() as u64) as usize];
    if len == 0 {
        what = "delete";
    }
    let desc = match what {
        "flip bit" => {
            let at = rng.below(len) as usize;
            let bit = rng.below(8);
            bytes[at] ^= 1 << bit;
            fs::write(&path, &bytes).expect("write the damage");
            format!("{rel}: flip bit {bit} of byte {at} of {len}")
        }
        "zero 512 B" | "zero 4 KiB" => {
            let at = rng.below(len) as usize;
            let end = (at + if what == "zero 512 B" { 512 } else { 4096 }).min(bytes.len());
            bytes[at..end].fill(0);
            fs::write(&path, &bytes).expect("write the damage");
            format!("{rel}: zero bytes {at}..{end} of {len}")
        }
        "truncate" => {
            let to = rng.below(len);
            fs::OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(to)).expect("truncate");
            format!("{rel}: truncate from {len} to {to} bytes")
        }
        _ => {
            fs::remove_file(&path).expect("delete");
            format!("{rel}: delete ({len} bytes)")
        }
    };
    (what, kind, desc)
}

fn classify(status: Option<std::process::ExitStatus>, f: &Findings) -> Outcome {
    let Some(status) = status else { return Outcome::Hang };
    if status.signal().is_some() || status.code() != Some(0) || !f.done {
        return Outcome::PanicAbort;
    }
    if let Some(e) = &f.open_error {
        return if e.starts_with("RolledBack") { Outcome::RolledBack } else { Outcome::Refused };
    }
    if f.wrong > 0 || f.extra > 0 {
        Outcome::WrongValue
    } else if f.read_errors > 0 || f.scan_errors > 0 || f.problems > 0 || f.verify_error {
        Outcome::Detected
    } else if f.missing > 0 {
        Outcome::UndetectedLoss
    } else {
        Outcome::NoEffect
    }
}

struct Trial {
    damage: &'static str,
    file: &'static str,
    desc: String,
    outcome: Outcome,
    detail: String,
    /// What the child found (gc, salvage and repair figures included).
    f: Findings,
}

impl Trial {
    /// True when gc, salvage or repair lost a value that could be read, returned a wrong
    /// one, or salvage changed the damaged store.
    fn repair_failed(&self) -> bool {
        self.f.done
            && (self.f.lost_gc + self.f.lost_salvage + self.f.lost_repair + self.f.wrong_after > 0
                || self.f.salvage_changed)
    }
}

fn run_trial(exe: &Path, reference: &Path, files: &[String], work: &Path, seed: u64, n: u64) -> Trial {
    let mut rng = Rng::new(seed.wrapping_mul(0x2545_f491_4f6c_dd1d) ^ n);
    let dir = work.join(format!("trial-{n}"));
    let store = dir.join("store");
    copy_dir(reference, &store);
    let (what, kind, desc) = damage(&store, files, &mut rng);
    let kept = std::env::var_os("PICKLESHELF_CORRUPTION_KEEP").map(|k| PathBuf::from(k).join(format!("trial-{n}")));
    if let Some(k) = &kept {
        copy_dir(&store, k);
    }
    let result = dir.join("result");
    let stderr = fs::File::create(dir.join("stderr")).expect("child stderr file");
    let mut child = Command::new(exe)
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(ENV_CHILD, &store)
        .env(ENV_RESULT, &result)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start child");
    let began = Instant::now();
    let status = loop {
        match child.try_wait().expect("wait for child") {
            Some(s) => break Some(s),
            None if began.elapsed() > TRIAL_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let f = parse_findings(&result);
    let outcome = classify(status, &f);
    let detail = match outcome {
        Outcome::PanicAbort | Outcome::Hang => {
            let err = fs::read_to_string(dir.join("stderr")).unwrap_or_default();
            let panic_line = err.lines().find(|l| l.contains("panicked")).unwrap_or("").to_owned();
            format!("{status:?}; {panic_line}")
        }
        _ => match &f.open_error {
            Some(e) => e.clone(),
            None => format!("missing {}, unreadable {}: {}", f.missing, f.read_errors, f.first_error),
        },
    };
    let failed = f.done && (f.lost_gc + f.lost_salvage + f.lost_repair + f.wrong_after > 0 || f.salvage_changed);
    let interesting =
        failed || !matches!(outcome, Outcome::NoEffect | Outcome::Refused | Outcome::RolledBack | Outcome::Detected);
    if let Some(k) = &kept
        && !interesting
    {
        let _ = fs::remove_dir_all(k);
    }
    let _ = fs::remove_dir_all(&dir);
    Trial { damage: what, file: kind, desc, outcome, detail, f }
}

/// A message without its numbers, paths and digests, to count alike errors together.
fn gist(text: &str) -> String {
    let mut out = String::new();
    for word in text.split(' ') {
        let w = if word.contains('/') {
            "<path>"
        } else if word.chars().any(|c| c.is_ascii_digit()) {
            "<n>"
        } else {
            word
        };
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(w);
        if out.len() > 110 {
            break;
        }
    }
    out
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn table<'a>(title: &str, rows: &[&'a str], key: impl Fn(&Trial) -> &'a str, trials: &[Trial]) -> String {
    let mut out = format!("{title:<12}");
    for (_, name) in OUTCOMES {
        out.push_str(&format!(" {name:>15}"));
    }
    out.push_str(&format!(" {:>7}\n", "total"));
    for row in rows.iter().copied().chain(["all"]) {
        let of_row: Vec<&Trial> = trials.iter().filter(|t| row == "all" || key(t) == row).collect();
        if of_row.is_empty() {
            continue;
        }
        out.push_str(&format!("{row:<12}"));
        for (o, _) in OUTCOMES {
            out.push_str(&format!(" {:>15}", of_row.iter().filter(|t| t.outcome == o).count()));
        }
        out.push_str(&format!(" {:>7}\n", of_row.len()));
    }
    out
}

/// Runs the campaign (see the module docs).
#[test]
fn corruption_campaign() {
    if let (Some(store), Some(result)) = (std::env::var_os(ENV_CHILD), std::env::var_os(ENV_RESULT)) {
        child(Path::new(&store), Path::new(&result));
    }
    let ci = std::env::var_os("CI").is_some_and(|v| !v.is_empty());
    let trials = env_u64("PICKLESHELF_CORRUPTION_TRIALS").unwrap_or(if ci { 300 } else { 120 });
    let seed = env_u64("PICKLESHELF_CORRUPTION_SEED").unwrap_or(1);
    let jobs = env_u64("PICKLESHELF_CORRUPTION_JOBS").unwrap_or(2).max(1);
    let began = Instant::now();
    let tmp = tempfile::tempdir().expect("temporary directory");
    let reference = tmp.path().join("reference");
    build_reference(&reference).expect("build the reference store");
    let reference_len = self::reference().keys.len();
    if let Some(keep) = std::env::var_os("PICKLESHELF_CORRUPTION_KEEP") {
        copy_dir(&reference, &Path::new(&keep).join("reference"));
    }
    let mut files = Vec::new();
    list_files(&reference, &reference, &mut files);
    files.sort();
    let mut sizes: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for f in &files {
        let e = sizes.entry(file_kind(f)).or_insert((0, 0));
        e.0 += 1;
        e.1 += fs::metadata(reference.join(f)).map_or(0, |m| m.len());
    }
    let exe = std::env::current_exe().expect("own executable");
    let next = AtomicU64::new(0);
    let results: Mutex<Vec<(u64, Trial)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= trials {
                        break;
                    }
                    let t = run_trial(&exe, &reference, &files, tmp.path(), seed, n);
                    results.lock().expect("results").push((n, t));
                }
            });
        }
    });
    let mut results = results.into_inner().expect("results");
    results.sort_by_key(|(n, _)| *n);
    let trials: Vec<Trial> = results.into_iter().map(|(_, t)| t).collect();
    let kinds: Vec<&str> = FILE_WEIGHTS.iter().map(|(k, _)| *k).collect();
    println!(
        "corruption campaign: {} trials in {:.1}s, seed {seed}; reference store: {} keys; files (count, bytes): {:?}\n{}\n{}",
        trials.len(),
        began.elapsed().as_secs_f64(),
        reference_len,
        sizes,
        table("damage", &DAMAGES, |t| t.damage, &trials),
        table("file", &kinds, |t| t.file, &trials),
    );
    // What the store said, per outcome: error messages with numbers and paths left out.
    let mut said: BTreeMap<(Outcome, String), u64> = BTreeMap::new();
    for t in &trials {
        if matches!(t.outcome, Outcome::Refused | Outcome::RolledBack | Outcome::Detected) {
            *said.entry((t.outcome, gist(&t.detail))).or_insert(0) += 1;
        }
    }
    for ((o, text), n) in &said {
        let name = OUTCOMES.iter().find(|(x, _)| x == o).map_or("?", |(_, n)| n);
        println!("{n:>5} {name}: {text}");
    }
    let mut bad = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        if t.outcome >= Outcome::UndetectedLoss {
            let name = OUTCOMES.iter().find(|(o, _)| *o == t.outcome).map_or("?", |(_, n)| n);
            println!("trial {i}: {name}: {} -> {}", t.desc, t.detail);
        }
        if t.outcome >= Outcome::UndetectedLoss {
            bad.push(i);
        }
    }
    // gc, salvage and repair after each damage.
    let sum = |g: fn(&Findings) -> u64| trials.iter().map(|t| g(&t.f)).sum::<u64>();
    println!(
        "gc, salvage, repair after each damage: {} values readable before them in all; lost by gc {}, by salvage {}, \
         by repair {}; wrong values read after them {}; damaged stores salvage changed {}; values repair brought \
         back {} (in {} trials)",
        sum(|f| f.before),
        sum(|f| f.lost_gc),
        sum(|f| f.lost_salvage),
        sum(|f| f.lost_repair),
        sum(|f| f.wrong_after),
        trials.iter().filter(|t| t.f.salvage_changed).count(),
        sum(|f| f.gained_repair),
        trials.iter().filter(|t| t.f.gained_repair > 0).count(),
    );
    let mut ends: BTreeMap<(&str, String), BTreeMap<String, u64>> = BTreeMap::new();
    for t in &trials {
        for (step, end) in [("gc", &t.f.gc), ("salvage", &t.f.salvage), ("repair", &t.f.repair)] {
            *ends.entry((step, end.clone())).or_default().entry(t.file.to_owned()).or_insert(0) += 1;
        }
    }
    for ((step, end), by_file) in &ends {
        let total: u64 = by_file.values().sum();
        println!("{total:>5} {step} {end}: {by_file:?}");
    }
    let mut failed = Vec::new();
    for (i, t) in trials.iter().enumerate() {
        if t.repair_failed() {
            println!("trial {i}: gc/salvage/repair lost or changed data: {} -> {:?}", t.desc, t.f);
            failed.push(i);
        }
    }
    assert!(
        bad.is_empty(),
        "trials where the store lost data silently, lied, panicked, aborted or hung: {bad:?} (details above)"
    );
    assert!(failed.is_empty(), "trials where gc, salvage or repair lost readable values: {failed:?} (details above)");
}

/// Regression (campaign: a flipped bit in `WITNESS` refused the store with no way out, even
/// with `allow_rollback(true)`, which the error now names): a damaged witness refuses open,
/// and `allow_rollback(true)` opens the store and rewrites the witness.
#[test]
fn damaged_witness_is_reset_by_allow_rollback() -> pickleshelf::Result<()> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = dir.path().join("store");
    let value = big_pickle(2);
    {
        let shelf = Shelf::open(&store)?;
        shelf.insert_pickle("k", &value)?;
        shelf.close()?;
    }
    fs::write(store.join("WITNESS"), b"pickleshelf witness\ngeneration \xff2\n").expect("damage the witness");
    match Shelf::open(&store) {
        Err(pickleshelf::Error::Corrupted { reason, .. }) => assert!(reason.contains("allow_rollback"), "{reason}"),
        other => panic!("expected Corrupted, got {:?}", other.map(|_| ())),
    }
    {
        let shelf = Shelf::builder(&store).allow_rollback(true).open()?;
        assert_eq!(shelf.get_pickle("k")?, Some(value.clone()));
    }
    let shelf = Shelf::open(&store)?;
    assert_eq!(shelf.get_pickle("k")?, Some(value));
    assert!(shelf.verify()?.is_ok());
    Ok(())
}
