//! Delta storage: versions of a value stored as deltas against earlier versions round-trip
//! in any order, cost about what changed, and keep refcounts exact under overwrite,
//! removal, gc and concurrent writers (see `src/chain.rs` and `docs/FORMAT.md`).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::Rng;
use pickleshelf::{Error, Shelf};
use serde::Serialize;

/// One entry of a W5-like program state.
#[derive(Serialize, Clone)]
struct Item {
    rev: u32,
    label: String,
    value: f64,
    counts: [u32; 3],
}

/// A program state of `n` entries that changes `changes` entries per version.
struct State {
    items: BTreeMap<String, Item>,
    rng: Rng,
    changes: usize,
}

impl State {
    fn new(n: usize, changes: usize, seed: u64) -> State {
        let mut rng = Rng(seed);
        let items = (0..n)
            .map(|j| {
                let item = Item {
                    rev: 0,
                    label: format!("item{j}"),
                    value: rng.unit(),
                    counts: [rng.next() as u32 % 1000, rng.next() as u32 % 1000, rng.next() as u32 % 1000],
                };
                (format!("item:{j}"), item)
            })
            .collect();
        State { items, rng, changes }
    }

    fn pickle(&self) -> Vec<u8> {
        pickleshelf::pickle::to_vec(&self.items).expect("pickle the state")
    }

    fn mutate(&mut self) {
        let n = self.items.len() as u64;
        for _ in 0..self.changes {
            let j = self.rng.next() % n;
            let v = self.rng.unit();
            if let Some(item) = self.items.get_mut(&format!("item:{j}")) {
                item.rev += 1;
                item.value = v;
            }
        }
    }

    /// `count` successive versions.
    fn versions(&mut self, count: usize) -> Vec<Vec<u8>> {
        (0..count)
            .map(|i| {
                if i > 0 {
                    self.mutate();
                }
                self.pickle()
            })
            .collect()
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Total length of the object files.
fn file_bytes(store: &Path) -> u64 {
    fn walk(p: &Path, total: &mut u64) {
        for e in fs::read_dir(p).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                walk(&path, total);
            } else {
                *total += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    let mut total = 0;
    walk(&store.join("objects"), &mut total);
    total
}

fn check_clean(shelf: &Shelf) -> pickleshelf::VerifyReport {
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok(), "verify: {report:?}");
    report
}

#[test]
fn versions_are_stored_as_deltas_and_read_back_in_any_order() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let versions = State::new(3000, 30, 1).versions(40);
    let logical: usize = versions.iter().map(Vec::len).sum();
    {
        let shelf = Shelf::open(&path)?;
        for (n, v) in versions.iter().enumerate() {
            shelf.insert_pickle(&format!("snapshot:{n}"), v)?;
        }
        let report = check_clean(&shelf);
        assert_eq!(report.objects, 40);
        // One whole version in a file; every other one a delta in a frame record.
        assert_eq!(report.files, 1, "{report:?}");
    }
    let files = file_bytes(&path);
    assert!(files * 10 < logical as u64, "files {files} of {logical} logical bytes");
    let shelf = Shelf::open(&path)?;
    // Stats read every delta's header: nothing unreadable, every byte counted.
    let stats = shelf.stats()?;
    assert_eq!((stats.unreadable, stats.objects, stats.logical_bytes), (0, 40, logical as u64), "{stats:?}");
    // Newest first, then a scattered order, each read cold (no decoded bases kept).
    let order: Vec<usize> = (0..40).rev().chain((0..40).map(|i| i * 17 % 40)).collect();
    for n in order {
        shelf.clear_cache();
        assert!(shelf.get_pickle(&format!("snapshot:{n}"))?.as_deref() == Some(versions[n].as_slice()), "{n}");
    }
    // In order, with the bases kept.
    for (n, v) in versions.iter().enumerate() {
        assert!(shelf.get_pickle(&format!("snapshot:{n}"))?.as_deref() == Some(v.as_slice()), "{n}");
    }
    check_clean(&shelf);
    Ok(())
}

#[test]
fn removing_versions_in_any_order_keeps_refcounts_exact() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let versions = State::new(1500, 15, 2).versions(30);
    let shelf = Shelf::open(&path)?;
    for (n, v) in versions.iter().enumerate() {
        shelf.insert_pickle(&format!("v{n:02}"), v)?;
    }
    // Remove from the middle outwards: bases outlive the deltas that need them.
    let mut order: Vec<usize> = (0..30).collect();
    order.sort_by_key(|&n| (n as i64 - 15).abs());
    for (i, n) in order.iter().enumerate() {
        assert!(shelf.remove(&format!("v{n:02}"))?);
        if i % 3 == 0 {
            shelf.sync()?;
        }
        check_clean(&shelf);
        for m in order[i + 1..].iter().take(4) {
            assert!(shelf.get_pickle(&format!("v{m:02}"))?.as_deref() == Some(versions[*m].as_slice()));
        }
    }
    shelf.sync()?;
    let report = check_clean(&shelf);
    assert_eq!((report.keys, report.objects, report.files), (0, 0, 0), "{report:?}");
    let report = shelf.gc()?;
    assert!(report.is_ok() && report.repaired.is_empty(), "{report:?}");
    Ok(())
}

#[test]
fn overwriting_a_key_does_not_keep_its_old_versions() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let mut state = State::new(1500, 15, 3);
    let shelf = Shelf::open(&path)?;
    for _ in 0..20 {
        state.mutate();
        shelf.insert_pickle("state", &state.pickle())?;
        shelf.sync()?;
        let report = check_clean(&shelf);
        assert_eq!((report.objects, report.files), (1, 1), "{report:?}");
    }
    assert_eq!(shelf.get_pickle("state")?, Some(state.pickle()));
    Ok(())
}

#[test]
fn overwrites_kept_by_checkpoints_are_deltas() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let mut state = State::new(1500, 15, 4);
    let mut kept = Vec::new();
    let shelf = Shelf::open(&path)?;
    for i in 0..25 {
        state.mutate();
        let v = state.pickle();
        shelf.insert_pickle("state", &v)?;
        shelf.checkpoint(&format!("save-{i:02}"))?;
        kept.push(v);
    }
    let report = check_clean(&shelf);
    assert_eq!((report.objects, report.files), (25, 1), "{report:?}");
    assert!(file_bytes(&path) < kept[0].len() as u64);
    let shelf = {
        drop(shelf);
        Shelf::open(&path)?
    };
    for (i, v) in kept.iter().enumerate().rev() {
        assert!(shelf.get_pickle_at(&format!("save-{i:02}"), "state")?.as_deref() == Some(v.as_slice()));
    }
    // Deleting every checkpoint but the last leaves the current value and its bases only.
    for i in 0..24 {
        assert!(shelf.delete_checkpoint(&format!("save-{i:02}"))?);
        check_clean(&shelf);
    }
    shelf.sync()?;
    let report = check_clean(&shelf);
    assert!(report.objects <= 4, "the last version's chain at most: {report:?}");
    assert_eq!(shelf.get_pickle("state")?, kept.last().cloned());
    Ok(())
}

#[test]
fn unrelated_values_are_stored_whole() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path)?;
    let mut rng = Rng(9);
    for i in 0..10 {
        let payload: Vec<u8> = (0..50_000).map(|_| rng.next() as u8).collect();
        let value = pickleshelf::pickle::Value::new(pickleshelf::pickle::Node::Bytes(payload));
        shelf.insert_value(&format!("blob{i}"), &value)?;
    }
    let report = check_clean(&shelf);
    assert_eq!((report.objects, report.files), (10, 10), "{report:?}");
    Ok(())
}

#[test]
fn long_lines_of_versions_stay_readable() -> Result<(), Error> {
    // Many versions of a small state: lines restart before chains get too long, and every
    // version reads back.
    let dir = tempdir();
    let path = dir.path().join("s");
    let versions = State::new(400, 2, 5).versions(300);
    let shelf = Shelf::open(&path)?;
    for (n, v) in versions.iter().enumerate() {
        shelf.insert_pickle(&format!("v{n:03}"), v)?;
    }
    drop(shelf);
    let shelf = Shelf::open(&path)?;
    for n in (0..300).rev().step_by(7) {
        shelf.clear_cache();
        assert!(shelf.get_pickle(&format!("v{n:03}"))?.as_deref() == Some(versions[n].as_slice()), "{n}");
    }
    let report = check_clean(&shelf);
    assert!(report.files < 10, "{report:?}");
    Ok(())
}

#[test]
fn concurrent_writers_removers_and_readers() -> Result<(), Error> {
    // One thread writes versions, one removes old ones and syncs (deleting frames), two
    // read: every read of a present key returns its exact bytes; the store stays exact.
    let dir = tempdir();
    let path = dir.path().join("s");
    let versions = State::new(1000, 10, 6).versions(80);
    let shelf = Shelf::open(&path)?;
    std::thread::scope(|s| {
        let w = s.spawn(|| -> Result<(), Error> {
            for (n, v) in versions.iter().enumerate() {
                shelf.insert_pickle(&format!("v{n:02}"), v)?;
            }
            Ok(())
        });
        let r = s.spawn(|| -> Result<(), Error> {
            for round in 0..400 {
                let n = round % 80;
                if n >= 3 {
                    shelf.remove(&format!("v{:02}", n - 3))?;
                }
                if round % 5 == 0 {
                    shelf.sync()?;
                }
            }
            Ok(())
        });
        let readers: Vec<_> = (0..2)
            .map(|t| {
                let (shelf, versions) = (&shelf, &versions);
                s.spawn(move || -> Result<(), Error> {
                    for i in 0..600 {
                        let n = (i * 7 + t * 13) % 80;
                        if let Some(b) = shelf.get_pickle(&format!("v{n:02}"))? {
                            assert!(b == versions[n], "v{n:02} read other bytes");
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        for h in [w, r].into_iter().chain(readers) {
            h.join().expect("thread")?;
        }
        Ok::<(), Error>(())
    })?;
    shelf.sync()?;
    check_clean(&shelf);
    let report = shelf.gc()?;
    assert!(report.is_ok() && report.repaired.is_empty(), "{report:?}");
    for (n, v) in versions.iter().enumerate() {
        if let Some(b) = shelf.get_pickle(&format!("v{n:02}"))? {
            assert!(b == *v);
        }
    }
    Ok(())
}

/// Set (to a store path) when this test binary runs as the child of
/// `a_file_a_crash_left_under_an_object_now_stored_as_a_delta_goes_at_open`.
const STALE_FILE_CHILD: &str = "PICKLESHELF_TEST_STALE_FILE_STORE";

/// Three versions of a state: `v0` alone is stored whole, in a file of its own.
fn stale_file_versions() -> (Vec<u8>, Vec<u8>) {
    let mut s = State::new(2000, 20, 11);
    let v0 = s.pickle();
    s.mutate();
    (v0, s.pickle())
}

#[test]
fn a_file_a_crash_left_under_an_object_now_stored_as_a_delta_goes_at_open() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s.db");
    let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_leaves_a_stale_object_file", "--nocapture", "--test-threads=1"])
        .env(STALE_FILE_CHILD, &path)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("child: exiting"), "the child did not run: {stdout}");

    // The child's records were committed in the background; the file of v0's first, whole
    // version was still waiting for a sync to go when the child died.
    let (v0, v1) = stale_file_versions();
    let shelf = Shelf::open(&path)?;
    assert_eq!(shelf.get_pickle("c")?, Some(v0), "the background commit did not happen in time");
    assert_eq!(shelf.get_pickle("w")?, Some(v1));
    assert_eq!(shelf.get_pickle("a")?, None);
    check_clean(&shelf);
    Ok(())
}

/// Run by `a_file_a_crash_left_under_an_object_now_stored_as_a_delta_goes_at_open` in a
/// child process; does nothing otherwise. Writes `v0` (a file), removes it, writes `v1`
/// (whole: nothing similar is left), writes `v0` again (now a delta against `v1`, in the
/// tree), lets the background commit make that durable against a process crash, and exits
/// without a sync: `v0`'s file stays on disk under a record that names no file.
#[test]
fn child_leaves_a_stale_object_file() -> Result<(), Error> {
    let Some(path) = std::env::var_os(STALE_FILE_CHILD) else {
        return Ok(());
    };
    let (v0, v1) = stale_file_versions();
    let shelf = Shelf::builder(&path).durability(pickleshelf::Durability::ProcessCrash).open()?;
    shelf.insert_pickle("a", &v0)?;
    shelf.sync()?;
    assert!(file_bytes(Path::new(&path)) > 0, "v0 is not in a file");
    shelf.remove("a")?;
    shelf.insert_pickle("w", &v1)?;
    shelf.insert_pickle("c", &v0)?;
    // The background commit runs 200 ms after the oldest buffered write.
    std::thread::sleep(std::time::Duration::from_millis(1000));
    println!("child: exiting");
    std::process::exit(0);
}
