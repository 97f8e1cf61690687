//! Named checkpoints: what `checkpoint`, `restore`, `diff`, `changes_since`,
//! `checkpoint_keys`, `get_pickle_at`, `delete_checkpoint` and `delete_checkpoints` do,
//! their errors, and the references a checkpoint holds (see `src/checkpoint.rs` and `docs/FORMAT.md`).

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use common::bytes_pickle;
use pickleshelf::{Change, ChangeKind, CheckpointProblem, Digest, Error, Shelf};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

fn int(n: u8) -> Vec<u8> {
    vec![0x80, 4, b'K', n, b'.']
}

/// Incompressible bytes of `len`: inline below ~4 KB, an object file above.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    bytes_pickle(
        &(0..len)
            .map(|_| {
                s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (s >> 56) as u8
            })
            .collect::<Vec<_>>(),
    )
}

fn digest(p: &[u8]) -> Digest {
    Digest(*blake3::hash(p).as_bytes())
}

fn contents(shelf: &Shelf) -> BTreeMap<String, Vec<u8>> {
    shelf.iter_pickle().collect::<Result<_, _>>().expect("read the store")
}

fn check(shelf: &Shelf) -> pickleshelf::VerifyReport {
    let r = shelf.verify().expect("verify");
    assert!(r.is_ok(), "{r:?}");
    r
}

fn kinds(changes: &[Change]) -> Vec<(&str, ChangeKind)> {
    changes.iter().map(|c| (c.key.as_str(), c.kind)).collect()
}

#[test]
fn restore_diff_and_reads_at_a_checkpoint() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    // Every kind of value: tiny inline (copied), medium inline (promoted), object.
    let (tiny, medium, big) = (int(1), noise(500, 1), noise(50_000, 2));
    shelf.insert_pickle("tiny", &tiny)?;
    shelf.insert_pickle("medium", &medium)?;
    shelf.insert_pickle("big", &big)?;
    shelf.insert_pickle("gone", &int(9))?;
    let before = contents(&shelf);
    let info = shelf.checkpoint("a")?;
    assert_eq!((info.name.as_str(), info.keys), ("a", 4));
    assert!(info.bytes > 50_000, "{info:?}");
    assert_eq!(contents(&shelf), before, "taking a checkpoint changes no value");
    assert!(shelf.changes_since("a")?.is_empty());

    shelf.insert_pickle("tiny", &int(2))?;
    shelf.insert_pickle("medium", &noise(500, 3))?;
    shelf.remove("gone")?;
    shelf.insert_pickle("new", &noise(20_000, 4))?;
    let after = contents(&shelf);
    let since = shelf.changes_since("a")?;
    assert_eq!(
        kinds(&since),
        [
            ("gone", ChangeKind::Removed),
            ("medium", ChangeKind::Changed),
            ("new", ChangeKind::Added),
            ("tiny", ChangeKind::Changed)
        ]
    );
    assert_eq!(since[0].before, Some(digest(&int(9))));
    assert_eq!(since[0].after, None);
    assert_eq!(since[3].after, Some(digest(&int(2))));
    shelf.checkpoint("b")?;
    assert_eq!(shelf.diff("a", "b")?, since);
    assert!(shelf.diff("b", "b")?.is_empty());
    let back = shelf.diff("b", "a")?;
    assert_eq!(
        kinds(&back),
        [
            ("gone", ChangeKind::Added),
            ("medium", ChangeKind::Changed),
            ("new", ChangeKind::Removed),
            ("tiny", ChangeKind::Changed)
        ]
    );

    // Reads at a checkpoint, without restoring.
    for (k, v) in &before {
        assert_eq!(shelf.get_pickle_at("a", k)?.as_ref(), Some(v), "{k} at a");
    }
    assert_eq!(shelf.get_pickle_at("a", "new")?, None);
    let keys_a: Vec<(String, Digest)> = before.iter().map(|(k, v)| (k.clone(), digest(v))).collect();
    assert_eq!(shelf.checkpoint_keys("a")?, keys_a);

    // Restore: the store equals the checkpoint; what changed is reported, in key order.
    let changes = shelf.restore("a")?;
    assert_eq!(changes, back);
    assert_eq!(contents(&shelf), before);
    check(&shelf);
    assert!(shelf.changes_since("a")?.is_empty());
    // Again: nothing to do.
    assert!(shelf.restore("a")?.is_empty());
    // And forward again, after a reopen.
    drop(shelf);
    let shelf = Shelf::open(dir.path().join("s"))?;
    shelf.restore("b")?;
    assert_eq!(contents(&shelf), after);
    check(&shelf);
    let names: Vec<String> = shelf.checkpoints()?.into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["a", "b"]);
    Ok(())
}

#[test]
fn checkpoints_list_with_time_and_size() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let t0 = SystemTime::now() - Duration::from_millis(1);
    shelf.checkpoint("empty")?;
    shelf.insert_pickle("x", &noise(30_000, 5))?;
    shelf.insert_pickle("y", &noise(30_000, 5))?; // the same value: counted once
    shelf.checkpoint("two keys")?;
    let t1 = SystemTime::now() + Duration::from_millis(1);
    let list = shelf.checkpoints()?;
    assert_eq!(list.len(), 2);
    assert_eq!((list[0].name.as_str(), list[0].keys, list[0].bytes), ("empty", 0, 0));
    assert_eq!((list[1].name.as_str(), list[1].keys), ("two keys", 2));
    assert!(list[1].bytes > 30_000 && list[1].bytes < 31_000, "{:?}", list[1]);
    for c in &list {
        assert!(c.created >= t0 && c.created <= t1, "{c:?}");
    }
    Ok(())
}

#[test]
fn errors() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path)?;
    for bad in ["", "a\0b", &"n".repeat(256)] {
        match shelf.checkpoint(bad) {
            Err(e @ Error::Checkpoint { problem: CheckpointProblem::InvalidName(_), .. }) => {
                assert!(e.to_string().contains("invalid name"), "{e}");
            }
            other => panic!("{bad:?}: expected InvalidName, got {other:?}"),
        }
    }
    shelf.checkpoint(&"n".repeat(255))?;
    shelf.checkpoint("x")?;
    match shelf.checkpoint("x") {
        Err(Error::Checkpoint { name, problem: CheckpointProblem::Exists }) => assert_eq!(name, "x"),
        other => panic!("expected Exists, got {other:?}"),
    }
    let missing = |r: Result<Vec<Change>, Error>| match r {
        Err(e @ Error::Checkpoint { problem: CheckpointProblem::NotFound, .. }) => {
            assert_eq!(e.to_string(), "checkpoint \"nope\": no such checkpoint");
        }
        other => panic!("expected NotFound, got {other:?}"),
    };
    missing(shelf.restore("nope"));
    missing(shelf.diff("x", "nope"));
    missing(shelf.diff("nope", "x"));
    missing(shelf.changes_since("nope"));
    assert!(matches!(shelf.get_pickle_at("nope", "k"), Err(Error::Checkpoint { .. })));
    assert!(matches!(shelf.checkpoint_keys("nope"), Err(Error::Checkpoint { .. })));
    assert!(!shelf.delete_checkpoint("nope")?);
    assert!(shelf.delete_checkpoint("x")?);
    assert!(!shelf.delete_checkpoint("x")?);
    drop(shelf);
    let ro = Shelf::builder(&path).read_only(true).open()?;
    assert!(matches!(ro.checkpoint("y"), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.restore("x"), Err(Error::ReadOnly { .. })));
    assert!(matches!(ro.delete_checkpoint("x"), Err(Error::ReadOnly { .. })));
    assert_eq!(ro.checkpoints()?.len(), 1);
    Ok(())
}

#[test]
fn checkpoints_hold_references_and_release_them() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let big: Vec<Vec<u8>> = (0..4).map(|i| noise(20_000, 10 + i)).collect();
    let medium = noise(1_000, 20);
    for (i, v) in big.iter().enumerate() {
        shelf.insert_pickle(&format!("big{i}"), v)?;
    }
    shelf.insert_pickle("medium", &medium)?;
    shelf.insert_pickle("tiny", &int(3))?;
    assert_eq!(check(&shelf).objects, 4);
    shelf.checkpoint("c1")?;
    // The medium inline value was promoted to an object; the tiny one copied.
    let r = check(&shelf);
    assert_eq!((r.objects, r.files), (5, 4), "{r:?}");
    shelf.checkpoint("c2")?;
    assert_eq!(check(&shelf).objects, 5);
    // Removing every key keeps the values the checkpoints name.
    for k in ["big0", "big1", "big2", "big3", "medium", "tiny"] {
        shelf.remove(k)?;
    }
    shelf.sync()?;
    let r = check(&shelf);
    assert_eq!((r.keys, r.objects, r.files), (0, 5, 4), "{r:?}");
    assert_eq!(shelf.get_pickle_at("c1", "big2")?, Some(big[2].clone()));
    assert_eq!(shelf.get_pickle_at("c2", "medium")?, Some(medium.clone()));
    assert!(shelf.delete_checkpoint("c1")?);
    shelf.sync()?;
    assert_eq!(check(&shelf).objects, 5, "c2 still holds them");
    assert!(shelf.delete_checkpoint("c2")?);
    shelf.sync()?;
    let r = check(&shelf);
    assert_eq!((r.objects, r.files, r.checkpoints), (0, 0, 0), "{r:?}");
    let r = shelf.gc()?;
    assert!(r.is_ok() && r.repaired.is_empty(), "{r:?}");
    Ok(())
}

#[test]
fn several_checkpoints_are_deleted_in_one_write() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path)?;
    let big: Vec<Vec<u8>> = (0..3).map(|i| noise(20_000, 30 + i)).collect();
    // Each checkpoint alone keeps one large value alive; "keep" keeps the last one too.
    for (i, v) in big.iter().enumerate() {
        shelf.insert_pickle("v", v)?;
        shelf.checkpoint(&format!("c{i}"))?;
    }
    shelf.checkpoint("keep")?;
    shelf.remove("v")?;
    shelf.sync()?;
    assert_eq!(check(&shelf).objects, 3);

    let existed = shelf.delete_checkpoints(&["c0", "ghost", "c1", "c0", "c2"])?;
    assert_eq!(existed, [true, false, true, false, true]);
    shelf.sync()?;
    let names: Vec<String> = shelf.checkpoints()?.into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["keep"]);
    let r = check(&shelf);
    assert_eq!((r.objects, r.files, r.checkpoints), (1, 1, 1), "{r:?}");
    assert_eq!(shelf.get_pickle_at("keep", "v")?, Some(big[2].clone()));
    // Nothing to delete: no write, and a read-only store refuses before looking.
    assert_eq!(shelf.delete_checkpoints(&["c0"])?, [false]);
    drop(shelf);
    let ro = Shelf::builder(&path).read_only(true).open()?;
    assert!(matches!(ro.delete_checkpoints(&["keep"]), Err(Error::ReadOnly { .. })));
    assert_eq!(ro.checkpoints()?.len(), 1);
    Ok(())
}

#[test]
fn restore_brings_back_values_only_a_checkpoint_kept() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path)?;
    let v = noise(40_000, 30);
    shelf.insert_pickle("k", &v)?;
    shelf.insert_pickle("m", &noise(300, 31))?;
    let before = contents(&shelf);
    shelf.checkpoint("keep")?;
    shelf.remove("k")?;
    shelf.remove("m")?;
    shelf.close()?;
    let shelf = Shelf::open(&path)?;
    assert!(shelf.is_empty()?);
    let changes = shelf.restore("keep")?;
    assert_eq!(kinds(&changes), [("k", ChangeKind::Added), ("m", ChangeKind::Added)]);
    assert_eq!(contents(&shelf), before);
    // The restored keys share the checkpoint's objects: deleting it frees nothing.
    shelf.delete_checkpoint("keep")?;
    shelf.sync()?;
    assert_eq!(contents(&shelf), before);
    let r = check(&shelf);
    assert_eq!((r.objects, r.files), (2, 1), "{r:?}");
    Ok(())
}
