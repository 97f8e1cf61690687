//! Threads sharing one `Shelf`.

use std::thread;

use pickleshelf::Shelf;

fn key(k: usize) -> String {
    format!("key/{k:02}")
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
