//! Threads sharing one `Shelf`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use pickleshelf::Shelf;

/// Large values shared between keys: key `k` may hold `POOL[k % POOL_LEN]`.
const POOL_LEN: usize = 4;

fn key(k: usize) -> String {
    format!("key/{k:02}")
}

/// A small xorshift generator: reproducible per thread, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// `pickle.dumps("t{t} c{c} k{k} ...", 4)`: long enough (over 48 bytes) to be compressed,
/// with the dictionary once the store has one.
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
                    for item in shelf.iter() {
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
