//! Cache-hit `get` against the physical limit: a plain `HashMap<String, Arc<T>>` lookup.
//!
//! `cargo bench --bench cache` — reads W2's access pattern (zipf over 1,000 hot keys of a
//! 20,000-record store, WORKLOADS.md §3) through `Shelf::get_arc::<Record>` once the
//! cache is warm, from one and from two threads, and the same keys from a `HashMap`.
//! Prints ns per get (median of 5 runs, min..max) and the ratio. Goal: within 5× of the
//! HashMap.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Record {
    id: i64,
    name: String,
    scores: Vec<f64>,
    tags: Vec<String>,
    active: bool,
}

struct SplitMix(u64);
impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// W2's key sequence: zipf(1) over `hot` ranks, stride n1/hot.
fn sequence(ops: usize, hot: u64, n1: u64) -> Vec<String> {
    let w: Vec<u64> = (0..hot).map(|r| (1u64 << 32) / (r + 1)).collect();
    let mut cdf = Vec::with_capacity(w.len());
    let mut acc = 0;
    for x in w {
        acc += x;
        cdf.push(acc);
    }
    let mut rng = SplitMix(2);
    (0..ops)
        .map(|_| {
            let u = rng.next() % acc;
            let rank = cdf.partition_point(|&c| c <= u) as u64;
            format!("user:{}", rank * (n1 / hot))
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let shelf = pickleshelf::Shelf::open(dir.path().join("s")).expect("open");
    let n1 = 20_000u64;
    let mut batch = pickleshelf::Batch::new();
    for i in 0..n1 {
        let r = Record {
            id: i as i64,
            name: format!("user{i}"),
            scores: (0..10).map(|j| (i * 10 + j) as f64 / 7.0).collect(),
            tags: vec!["red".into(), "us".into()],
            active: i % 3 == 0,
        };
        batch.insert(&format!("user:{i}"), &r).expect("insert");
    }
    shelf.apply(batch).expect("apply");
    let keys = sequence(200_000, 1000, n1);
    let mut map: HashMap<String, Arc<Record>> = HashMap::new();
    for k in &keys {
        if !map.contains_key(k) {
            map.insert(k.clone(), shelf.get_arc::<Record>(k).expect("get").expect("present"));
        }
    }
    let run_shelf = |keys: &[String]| -> (f64, i64) {
        let t = Instant::now();
        let mut acc = 0i64;
        for k in keys {
            acc += shelf.get_arc::<Record>(k).expect("get").expect("present").id;
        }
        (t.elapsed().as_secs_f64() * 1e9 / keys.len() as f64, acc)
    };
    let run_map = |keys: &[String]| -> (f64, i64) {
        let t = Instant::now();
        let mut acc = 0i64;
        for k in keys {
            acc += map.get(k).expect("present").id;
        }
        (t.elapsed().as_secs_f64() * 1e9 / keys.len() as f64, acc)
    };
    let mut s1 = Vec::new();
    let mut s2 = Vec::new();
    let mut m = Vec::new();
    for _ in 0..5 {
        let (ns, acc) = run_shelf(&keys);
        assert_eq!(acc, 530_123_480, "W2 checksum");
        s1.push(ns);
        let (ns, acc) = run_map(&keys);
        assert_eq!(acc, 530_123_480);
        m.push(ns);
        // Two threads, each reading the whole sequence: ns per get of aggregate throughput.
        let t = Instant::now();
        std::thread::scope(|sc| {
            for _ in 0..2 {
                sc.spawn(|| run_shelf(&keys));
            }
        });
        s2.push(t.elapsed().as_secs_f64() * 1e9 / (2 * keys.len()) as f64);
    }
    let st = shelf.cache_stats();
    let (a, amin, amax) = median(s1);
    let (b, bmin, bmax) = median(s2);
    let (c, cmin, cmax) = median(m);
    println!("cache-hit get vs HashMap<String, Arc<T>> (W2 key sequence, 200,000 gets, median of 5)");
    println!("  Shelf::get_arc, 1 thread   {a:8.1} ns/get  ({amin:.1}..{amax:.1})  {:.2} M gets/s", 1e3 / a);
    println!("  Shelf::get_arc, 2 threads  {b:8.1} ns/get  ({bmin:.1}..{bmax:.1})  {:.2} M gets/s aggregate", 1e3 / b);
    println!("  HashMap::get               {c:8.1} ns/get  ({cmin:.1}..{cmax:.1})");
    println!("  ratio shelf/HashMap: {:.2}x (goal <= 5x); 2-thread speed-up {:.2}x", a / c, a / b);
    println!("  cache: {} hits, {} misses, {} entries", st.hits, st.misses, st.entries);
}
