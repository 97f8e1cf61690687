//! Eight threads share one `Shelf` (clones) for a few seconds of mixed operations on
//! overlapping keys: small and large inserts, removes, gets, scans, batches, syncs, and
//! `verify` from one thread.
//!
//! Every value names the thread and operation that wrote it and the key it was written
//! for, so a read can be checked: a key holds nothing or a value some thread wrote for that
//! key, which that thread had started writing. A watchdog aborts the process if the test
//! has not finished after 60 s (a deadlock).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::Rng;
use pickleshelf::{Batch, Shelf};

const THREADS: usize = 8;
const KEYS: usize = 24;
/// How long the threads run (the test's length, not something it measures).
const RUN_FOR: Duration = Duration::from_secs(3);
/// Small values written before the threads start.
const FILL: u64 = 990;
/// Large values shared between keys: key `k` may hold `POOL[k % POOL_LEN]`.
const POOL_LEN: usize = 4;

fn key(k: usize) -> String {
    format!("key/{k:02}")
}

/// What a value says about itself.
#[derive(Debug, PartialEq, Eq)]
enum Origin {
    /// Written by thread `t` as its operation `c`, for key `k`.
    Written { t: usize, c: u64, k: usize },
    /// The shared large value `POOL[i]`.
    Pool(usize),
}

/// `pickle.dumps("t{t} c{c} k{k} ...", 4)`: a small value, framed raw in its page.
fn small(t: usize, c: u64, k: usize) -> Vec<u8> {
    let text = format!("t{t} c{c} k{k} written by a worker thread of the threads test");
    let mut p = vec![0x80, 4, 0x8c, text.len() as u8];
    p.extend_from_slice(text.as_bytes());
    p.extend_from_slice(b"\x94.");
    p
}

/// `pickle.dumps(b, 4)` of a large bytes object: a 25-byte header
/// `[tag][t: u64][c: u64][k: u64]` then random bytes drawn from the header.
fn large(tag: u8, t: usize, c: u64, k: usize) -> Vec<u8> {
    let mut head = vec![tag];
    for n in [t as u64, c, k as u64] {
        head.extend_from_slice(&n.to_le_bytes());
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ ((t as u64) << 48) ^ (u64::from(tag) << 40) ^ (c << 8) ^ k as u64);
    let len = 5_000 + (rng.next() % 60_000) as usize;
    let mut p = vec![0x80, 4, 0x8e];
    p.extend_from_slice(&(len as u64).to_le_bytes());
    p.extend_from_slice(&head);
    for _ in head.len()..len {
        p.push(rng.next() as u8);
    }
    p.extend_from_slice(b"\x94.");
    p
}

fn pool(i: usize) -> Vec<u8> {
    large(b'P', 0, 0, i)
}

/// Decodes what a value claims to be and checks that its bytes are exactly that.
fn origin(bytes: &[u8]) -> Result<Origin, String> {
    let bad = || format!("not a value of this test: {:?}", &bytes[..bytes.len().min(40)]);
    let claimed = match bytes.get(2) {
        Some(0x8c) => {
            let text = std::str::from_utf8(bytes.get(4..bytes.len() - 2).ok_or_else(bad)?).map_err(|_| bad())?;
            let mut parts = text.split(' ').take(3);
            let mut field = |p: char| parts.next().and_then(|s| s.strip_prefix(p)).and_then(|s| s.parse::<u64>().ok());
            match (field('t'), field('c'), field('k')) {
                (Some(t), Some(c), Some(k)) => Origin::Written { t: t as usize, c, k: k as usize },
                _ => return Err(bad()),
            }
        }
        Some(0x8e) => {
            let head = bytes.get(11..36).ok_or_else(bad)?;
            let n = |i: usize| u64::from_le_bytes(head[1 + 8 * i..9 + 8 * i].try_into().unwrap_or_default());
            match head[0] {
                b'W' => Origin::Written { t: n(0) as usize, c: n(1), k: n(2) as usize },
                b'P' => Origin::Pool(n(2) as usize),
                _ => return Err(bad()),
            }
        }
        _ => return Err(bad()),
    };
    let expected = match claimed {
        Origin::Written { t, c, k } if bytes[2] == 0x8c => small(t, c, k),
        Origin::Written { t, c, k } => large(b'W', t, c, k),
        Origin::Pool(i) => pool(i),
    };
    if expected != bytes {
        return Err(format!("bytes differ from the value they claim to be ({claimed:?})"));
    }
    Ok(claimed)
}

struct Shared {
    shelf: Shelf,
    /// `started[t]`: operations thread `t` has begun (published before each write).
    started: Vec<AtomicU64>,
    stop: AtomicBool,
    ops: AtomicU64,
    verifies: AtomicU64,
}

impl Shared {
    /// Panics unless `bytes`, read from key `k`, is a value some thread began writing there.
    fn check(&self, k: usize, bytes: &[u8]) {
        match origin(bytes) {
            Ok(Origin::Written { t, c, k: written_for }) => {
                assert_eq!(written_for, k, "key {} holds a value written for key {written_for}", key(k));
                assert!(t < THREADS, "key {} holds a value of thread {t}", key(k));
                let started = self.started[t].load(Ordering::SeqCst);
                assert!(c < started, "key {} holds operation {c} of thread {t}, which has begun {started}", key(k));
            }
            Ok(Origin::Pool(i)) => assert_eq!(i, k % POOL_LEN, "key {} holds pool value {i}", key(k)),
            Err(e) => panic!("key {}: {e}", key(k)),
        }
    }
}

fn worker(shared: &Shared, t: usize) {
    let shelf = shared.shelf.clone();
    let mut rng = Rng(0x2545_f491_4f6c_dd1d ^ ((t as u64 + 1) * 0x1000_0001));
    let mut c = 0u64;
    // The value thread `t` writes as operation `c` for key `k` (registered as begun).
    let mut value = |rng: &mut Rng, k: usize| {
        let v = match rng.index(10) {
            0..=5 => small(t, c, k),
            6 | 7 => large(b'W', t, c, k),
            _ => pool(k % POOL_LEN),
        };
        c += 1;
        shared.started[t].store(c, Ordering::SeqCst);
        v
    };
    while !shared.stop.load(Ordering::Relaxed) {
        let k = rng.index(KEYS);
        match rng.index(100) {
            0..=34 => {
                let v = value(&mut rng, k);
                shelf.insert_pickle(&key(k), &v).expect("insert_pickle");
            }
            35..=49 => {
                shelf.remove(&key(k)).expect("remove");
            }
            50..=74 => {
                if let Some(bytes) = shelf.get_pickle(&key(k)).expect("get_pickle") {
                    shared.check(k, &bytes);
                }
            }
            75..=84 => {
                // Several changes at once; a key may appear twice.
                let mut b = Batch::new();
                for _ in 0..2 + rng.index(4) {
                    let k = rng.index(KEYS);
                    if rng.index(4) == 0 {
                        b.remove(&key(k));
                    } else {
                        b.insert_pickle(&key(k), &value(&mut rng, k)).expect("a valid pickle");
                    }
                }
                shelf.apply(b).expect("apply");
            }
            85..=89 => {
                let prefix = format!("key/{}", rng.index(3));
                for item in shelf.scan_prefix_pickle(&prefix) {
                    let (name, bytes) = item.expect("scan_prefix");
                    let k = name.strip_prefix("key/").and_then(|n| n.parse().ok()).expect("a key of this test");
                    shared.check(k, &bytes);
                }
            }
            90..=95 => {
                let _ = shelf.contains_key(&key(k)).expect("contains_key");
                let keys: Vec<String> = shelf.keys().collect::<Result<_, _>>().expect("keys");
                assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys out of order: {keys:?}");
            }
            96 => shelf.sync().expect("sync"),
            _ if t == 0 => {
                let report = shelf.verify().expect("verify");
                assert!(report.is_ok(), "verify while others write: {report:?}");
                shared.verifies.fetch_add(1, Ordering::Relaxed);
            }
            _ => {
                let _ = shelf.len().expect("len");
            }
        }
        shared.ops.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn eight_threads_share_one_shelf() {
    let (done, finished) = mpsc::channel::<()>();
    let watchdog = thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(Duration::from_secs(60)) {
            eprintln!("threads test: not finished after 60 s, the store is probably deadlocked; aborting");
            std::process::abort();
        }
    });

    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("threads.db");
    let shelf = Shelf::open(&path).expect("open");
    // Small values first (framed raw: they never train the compression dictionary); the
    // workers' values of 5 to 65 KB train it while other workers compress and decompress.
    for i in 0..FILL {
        shelf.insert_pickle(&format!("fill/{i}"), &small(THREADS, i, 0)).expect("fill");
    }
    let shared = Arc::new(Shared {
        shelf,
        started: (0..THREADS).map(|_| AtomicU64::new(0)).collect(),
        stop: AtomicBool::new(false),
        ops: AtomicU64::new(0),
        verifies: AtomicU64::new(0),
    });
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let shared = Arc::clone(&shared);
            thread::Builder::new().name(format!("worker {t}")).spawn(move || worker(&shared, t)).expect("spawn")
        })
        .collect();
    let start = Instant::now();
    while start.elapsed() < RUN_FOR && !workers.iter().any(|w| w.is_finished()) {
        thread::sleep(Duration::from_millis(20));
    }
    shared.stop.store(true, Ordering::Relaxed);
    for w in workers {
        if let Err(panic) = w.join() {
            std::panic::resume_unwind(panic);
        }
    }
    eprintln!(
        "threads test: {} operations, {} verifies in {:.1} s",
        shared.ops.load(Ordering::Relaxed),
        shared.verifies.load(Ordering::Relaxed),
        start.elapsed().as_secs_f64()
    );

    // Quiet now: every key holds a valid value, and the store is consistent.
    let shelf = shared.shelf.clone();
    for k in 0..KEYS {
        if let Some(bytes) = shelf.get_pickle(&key(k)).expect("get_pickle") {
            shared.check(k, &bytes);
        }
    }
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok(), "verify after the threads: {report:?}");
    shelf.sync().expect("sync");
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok() && report.files == report.objects, "after sync every file is an object: {report:?}");
    let contents: Vec<(String, Vec<u8>)> = shelf.iter_pickle().collect::<Result<_, _>>().expect("iter");

    // The same after a reopen.
    drop(shelf);
    drop(Arc::into_inner(shared).expect("all threads are done"));
    let shelf = Shelf::open(&path).expect("reopen");
    let reopened: Vec<(String, Vec<u8>)> = shelf.iter_pickle().collect::<Result<_, _>>().expect("iter");
    assert!(reopened == contents, "contents changed across a reopen");
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok() && report.files == report.objects, "after reopen: {report:?}");
    // The dictionary was trained while the threads ran.
    assert!(shelf.stats().expect("stats").dictionary.is_some(), "no dictionary was trained");
    drop(shelf);

    drop(done);
    watchdog.join().expect("watchdog");
}

/// Syncs from several threads at once: each writes the witness file in turn.
#[test]
fn concurrent_syncs() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("syncs.db");
    let shelf = Shelf::open(&path).expect("open");
    let syncers: Vec<_> = (0..4)
        .map(|t| {
            let shelf = shelf.clone();
            thread::spawn(move || {
                for c in 0..25 {
                    shelf.insert_pickle(&key(t), &small(t, c, t)).expect("insert_pickle");
                    shelf.sync().expect("sync");
                }
            })
        })
        .collect();
    for s in syncers {
        s.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    }
    drop(shelf);
    let shelf = Shelf::open(&path).expect("reopen: the witness is not ahead of the store");
    assert_eq!(shelf.len().expect("len"), 4);
}

/// `verify` while other threads write sees one state of the store, never a half-applied
/// change: it reports no problem.
#[test]
fn verify_while_others_write() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let shelf = Shelf::builder(dir.path().join("verify.db"))
        .durability(pickleshelf::Durability::ProcessCrash)
        .open()
        .expect("open");
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..3)
        .map(|t| {
            let (shelf, stop) = (shelf.clone(), Arc::clone(&stop));
            thread::spawn(move || {
                let mut c = 0;
                while !stop.load(Ordering::Relaxed) {
                    let k = (t + c as usize) % 4;
                    shelf.insert_pickle(&key(k), &pool(c as usize % POOL_LEN)).expect("insert_pickle");
                    shelf.remove(&key((k + 1) % 4)).expect("remove");
                    if c % 8 == 0 {
                        shelf.sync().expect("sync");
                    }
                    c += 1;
                }
            })
        })
        .collect();
    for _ in 0..1_000 {
        let report = shelf.verify().expect("verify");
        assert!(report.is_ok(), "verify while others write: {report:?}");
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap_or_else(|p| std::panic::resume_unwind(p));
    }
}

/// A reader that found a key's record must still find its object file, even when another
/// thread removes the key and syncs (deleting the file) in between.
#[test]
fn readers_race_removal_and_sync() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let shelf = Shelf::builder(dir.path().join("race.db"))
        .durability(pickleshelf::Durability::ProcessCrash)
        .open()
        .expect("open");
    let value = large(b'W', 0, 0, 0);
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|_| {
            let (shelf, stop, value) = (shelf.clone(), Arc::clone(&stop), value.clone());
            thread::spawn(move || {
                let mut seen = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match shelf.get_pickle(&key(0)) {
                        Ok(None) => {}
                        Ok(Some(bytes)) => {
                            assert!(bytes == value, "get_pickle returned other bytes");
                            seen += 1;
                        }
                        Err(e) => panic!("get_pickle while the key is removed and synced: {e}"),
                    }
                    for item in shelf.iter_pickle() {
                        let (_, bytes) = item.expect("iter while the key is removed and synced");
                        assert!(bytes == value, "iter returned other bytes");
                    }
                }
                seen
            })
        })
        .collect();
    for _ in 0..1_500 {
        shelf.insert_pickle(&key(0), &value).expect("insert_pickle");
        shelf.remove(&key(0)).expect("remove");
        shelf.sync().expect("sync");
    }
    stop.store(true, Ordering::Relaxed);
    let seen: u64 = readers.into_iter().map(|r| r.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).sum();
    eprintln!("readers saw the value {seen} times");
    assert!(shelf.verify().expect("verify").is_ok());
}
