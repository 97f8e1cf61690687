//! What `Shelf::sync` costs: the time of a sync after one small write, and after a write
//! of a 100 KB value, in a store of 20,000 small records, with each durability.
//!
//! `cargo bench --bench sync [-- --rounds N]` — N rounds (default 50) of: put, then time
//! the sync. Prints the median and the spread (min..max) in milliseconds, and the time of
//! a sync with nothing written (which returns at once). The figures in the crate docs'
//! "Durability" section come from this bench.

use std::time::Instant;

use pickleshelf::{Durability, Shelf};

/// `pickle.dumps(b, 4)` for `len` bytes of a simple pattern (it compresses, like data does).
fn bytes_pickle(len: usize, seed: u64) -> Vec<u8> {
    let mut p = vec![0x80, 4, 0x8e];
    p.extend_from_slice(&(len as u64).to_le_bytes());
    let mut s = seed | 1;
    for i in 0..len {
        if i % 16 == 0 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
        }
        p.push(b'a' + (s >> (i % 16 * 4)) as u8 % 16);
    }
    p.extend_from_slice(b"\x94.");
    p
}

/// A write done before each timed sync (its argument is the round).
type Write<'a> = Box<dyn Fn(usize) + 'a>;

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = args
        .iter()
        .position(|a| a == "--rounds")
        .and_then(|i| args.get(i + 1))
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(50)
        .max(1);
    println!("# sync cost: {rounds} rounds per row, store of 20,000 small records");
    println!("| durability | write before the sync | median ms | min..max ms |");
    println!("|---|---|---:|---:|");
    for durability in [Durability::PowerLoss, Durability::ProcessCrash] {
        let dir = tempfile::tempdir().expect("tempdir");
        let shelf = Shelf::builder(dir.path().join("s.db")).durability(durability).open().expect("open");
        for i in 0..20_000u32 {
            shelf.insert(&format!("user:{i}"), &(i, format!("user{i}"), [1.5f64, 2.5, 3.5])).expect("insert");
        }
        shelf.sync().expect("sync");
        let cases: [(&str, Write<'_>); 3] = [
            (
                "one small record",
                Box::new(|i| shelf.insert(&format!("user:{}", i * 37 % 20_000), &(i, "x")).expect("put")),
            ),
            (
                "one 100 KB value",
                Box::new(|i| shelf.insert_pickle("big", &bytes_pickle(100_000, i as u64)).expect("put")),
            ),
            ("nothing", Box::new(|_| {})),
        ];
        for (what, write) in &cases {
            let mut times = Vec::with_capacity(rounds);
            for i in 0..rounds {
                write(i);
                let t = Instant::now();
                shelf.sync().expect("sync");
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            let (m, lo, hi) = median(times);
            println!("| {durability:?} | {what} | {m:.3} | {lo:.3}..{hi:.3} |");
        }
    }
}
