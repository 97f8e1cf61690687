//! The page directory rebuilt from the pack files (`ShelfBuilder::repair`): after sled's
//! files are lost, damaged or rolled back, a rebuilt directory reads back every value of
//! W1 (20,000 small records), W5 (50 snapshots of a 5,000-entry dict, stored as deltas)
//! and a store with checkpoints and memo results; when the packs cannot rebuild the newest
//! directory, repair says what is lost and changes nothing.

#[path = "../benches/workloads/generate.rs"]
mod generate;
#[path = "../benches/workloads/refpickle.rs"]
mod refpickle;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use pickleshelf::{Error, Shelf};

/// Everything a store holds: keys, and every checkpoint's entries.
#[derive(Debug, PartialEq)]
struct Contents {
    keys: BTreeMap<String, Vec<u8>>,
    checkpoints: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

fn contents(path: &Path) -> Contents {
    let shelf = Shelf::builder(path).read_only(true).open().expect("open");
    let keys = shelf.iter_pickle().map(|r| r.expect("read a key")).collect();
    let mut checkpoints = BTreeMap::new();
    for c in shelf.checkpoints().expect("checkpoints") {
        let mut m = BTreeMap::new();
        for (k, _) in shelf.checkpoint_keys(&c.name).expect("checkpoint keys") {
            m.insert(k.clone(), shelf.get_pickle_at(&c.name, &k).expect("read").expect("present"));
        }
        checkpoints.insert(c.name, m);
    }
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok(), "{report:?}");
    Contents { keys, checkpoints }
}

fn w1(path: &Path) {
    let shelf = Shelf::open(path).expect("create");
    for r in generate::w1_records(20_000) {
        shelf.insert_pickle(&generate::w1_key(r.id), &refpickle::dumps(&refpickle::w1_obj(&r))).expect("insert");
    }
    shelf.close().expect("close");
}

fn w5(path: &Path) {
    let (entries, snaps, changes) = (5_000, 50, 50);
    let mut rng = generate::SplitMix64::new(generate::SEED_W5);
    let mut plain = generate::w5_initial(entries, &mut rng);
    let keys: Vec<String> = (0..plain.len()).map(generate::w5_key).collect();
    let labels: Vec<String> = (0..plain.len()).map(generate::w5_label).collect();
    let shelf = Shelf::open(path).expect("create");
    for n in 0..snaps {
        if n > 0 {
            generate::w5_mutate(entries, changes, &mut rng, |j, v| {
                plain[j].rev += 1;
                plain[j].value = v;
            });
        }
        let bytes = refpickle::dumps(&refpickle::w5_obj(&plain, &keys, &labels));
        shelf.insert_pickle(&format!("snapshot:{n}"), &bytes).expect("insert");
        if n % 10 == 9 {
            shelf.sync().expect("sync");
        }
    }
    shelf.close().expect("close");
}

/// A store with checkpoints taken, restored and deleted, memo results, overwrites and
/// removals, over several opens.
fn checkpointed(path: &Path) {
    for round in 0..4u64 {
        let shelf = Shelf::open(path).expect("open");
        for i in 0..400u64 {
            let v = (round * 1000 + i * 7) % 900;
            shelf.insert(&format!("k{i:03}"), &vec![v; (i % 50) as usize + 1]).expect("insert");
        }
        for i in (0..400).step_by(7) {
            shelf.remove(&format!("k{i:03}")).expect("remove");
        }
        shelf.insert_pickle(&format!("big{round}"), &big(round)).expect("insert");
        shelf.checkpoint(&format!("cp{round}")).expect("checkpoint");
        if round == 2 {
            shelf.delete_checkpoint("cp0").expect("delete checkpoint");
            shelf.restore("cp1").expect("restore");
        }
        let memo = shelf.memo("m").expect("memo");
        let got: u64 = memo.get_or_compute(&round, || round * 3).expect("memo");
        assert_eq!(got, round * 3);
        drop(memo);
        shelf.close().expect("close");
    }
}

/// An incompressible `bytes` pickle of 20 KB: an object file.
fn big(seed: u64) -> Vec<u8> {
    let mut rng = generate::SplitMix64::new(seed + 77);
    let payload: Vec<u8> = (0..20_000).map(|_| rng.next_u64() as u8).collect();
    let mut p = vec![0x80, 4, 0x8e];
    p.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    p.extend_from_slice(&payload);
    p.extend_from_slice(b"\x94.");
    p
}

fn repaired(path: &Path) -> pickleshelf::RepairReport {
    let report = Shelf::builder(path).repair().expect("repair");
    assert!(report.rebuilt && report.is_ok(), "{report:?}");
    report
}

/// Builds a store with `make`, then for each way of losing sled's directory checks that
/// repair rebuilds it and every value reads back.
fn rebuilds(make: fn(&Path)) {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let path = tmp.path().join("s.db");
    make(&path);
    let want = contents(&path);
    // 1. sled/ is gone altogether: an open refuses (it would otherwise make a new, empty
    // store and drop the packs), and repair rebuilds it.
    fs::remove_dir_all(path.join("sled")).expect("remove sled/");
    let packs = fs::read_dir(path.join("pages")).expect("pages").count();
    assert!(matches!(Shelf::open(&path), Err(Error::Corrupted { .. })));
    assert!(!path.join("sled").exists() && fs::read_dir(path.join("pages")).expect("pages").count() == packs);
    repaired(&path);
    assert!(contents(&path) == want, "after sled/ was deleted");
    // 2. sled's files are damaged.
    fs::write(path.join("sled/db"), b"not a sled log").expect("damage db");
    assert!(matches!(Shelf::open(&path), Err(Error::Engine { .. })));
    repaired(&path);
    assert!(contents(&path) == want, "after sled/db was damaged");
    // 3. sled came back older than the last sync (an old copy of its files).
    let old = tmp.path().join("old-sled");
    copy_dir(&path.join("sled"), &old);
    {
        let shelf = Shelf::open(&path).expect("open");
        shelf.insert_pickle("after", b"\x80\x04K\x07.").expect("insert");
        shelf.close().expect("close");
    }
    let mut want = want;
    want.keys.insert("after".into(), b"\x80\x04K\x07.".to_vec());
    fs::remove_dir_all(path.join("sled")).expect("remove sled/");
    copy_dir(&old, &path.join("sled"));
    assert!(matches!(Shelf::open(&path), Err(Error::RolledBack { .. })));
    repaired(&path);
    assert!(contents(&path) == want, "after sled/ rolled back");
    // The rebuilt store writes and reopens as any other.
    let shelf = Shelf::open(&path).expect("open");
    shelf.insert_pickle("after", b"\x80\x04K\x08.").expect("insert");
    shelf.close().expect("close");
    want.keys.insert("after".into(), b"\x80\x04K\x08.".to_vec());
    assert!(contents(&path) == want);
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create");
    for e in fs::read_dir(from).expect("read").flatten() {
        if e.file_type().expect("type").is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

#[test]
fn w1_rebuilds_from_its_packs() {
    rebuilds(w1);
}

#[test]
fn w5_rebuilds_from_its_packs() {
    rebuilds(w5);
}

#[test]
fn a_checkpointed_store_rebuilds_from_its_packs() {
    rebuilds(checkpointed);
}

/// When sled's directory is lost and a pack is damaged too, the packs cannot rebuild the
/// newest directory: repair names the lost key ranges and changes nothing.
#[test]
fn repair_refuses_what_the_packs_cannot_rebuild() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let path = tmp.path().join("s.db");
    w1(&path);
    fs::remove_dir_all(path.join("sled")).expect("remove sled/");
    let pack = path.join("pages/00000001.pack");
    let mut bytes = fs::read(&pack).expect("read the pack");
    let mid = bytes.len() / 2;
    bytes[mid..mid + 4096].fill(0);
    fs::write(&pack, &bytes).expect("damage the pack");
    let listing = |p: &Path| -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> =
            fs::read_dir(p).expect("read").flatten().map(|e| e.path()).filter(|p| !p.ends_with("LOCK")).collect();
        v.sort();
        v
    };
    let before = listing(&path);
    let report = Shelf::builder(&path).repair().expect("repair");
    assert!(!report.rebuilt && !report.is_ok(), "{report:?}");
    assert!(report.lost.iter().any(|l| l.contains("user:")), "{report:?}");
    assert!(!path.join("sled").exists(), "repair installed a directory with holes");
    assert_eq!(listing(&path), before);
    // Salvage reads through the rebuilt directory all the same.
    let new = tmp.path().join("new.db");
    let report = Shelf::builder(&path).salvage(&new).expect("salvage");
    assert!(!report.is_complete() && report.keys > 10_000, "{report:?}");
    let shelf = Shelf::open(&new).expect("open the salvaged store");
    assert_eq!(shelf.len().expect("len") as u64, report.keys);
}

/// A repair cut short after its directory was complete: the next open finishes it.
#[test]
fn an_interrupted_repair_is_finished_by_the_next_open() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let path = tmp.path().join("s.db");
    checkpointed(&path);
    let want = contents(&path);
    // Leave the state between writing REPAIR and the renames: the rebuilt directory of
    // a healthy store is the store's own.
    copy_dir(&path.join("sled"), &path.join("sled.rebuilt"));
    fs::write(path.join("sled/conf"), b"damaged").expect("damage conf");
    fs::write(path.join("REPAIR"), b"pickleshelf repair\n").expect("marker");
    assert!(matches!(Shelf::builder(&path).read_only(true).open(), Err(Error::Corrupted { .. })));
    drop(Shelf::open(&path).expect("open finishes the repair"));
    assert!(!path.join("REPAIR").exists() && path.join("sled.damaged").is_dir());
    assert!(contents(&path) == want);
}
