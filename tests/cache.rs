//! The decoded-object cache seen through `Shelf`: hits without decoding, writes never
//! serve stale values, explicit eviction, pinning, budgets, and resident memory that stays
//! within the budget while reading ten times its worth of distinct objects.

use std::sync::Arc;

use pickleshelf::{Error, Shelf};
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Debug, PartialEq, Clone)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<f64>,
    tags: Vec<String>,
    active: bool,
}

fn record(i: u64) -> Record {
    Record {
        id: i,
        name: format!("user{i}"),
        scores: (0..10).map(|j| (i * 10 + j) as f64 * 0.5).collect(),
        tags: vec!["red".into(), "blue".into()],
        active: i.is_multiple_of(2),
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn hits_share_the_decoded_object() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    shelf.insert("a", &record(1))?;
    let first = shelf.get_arc::<Record>("a")?.unwrap_or_else(|| panic!("missing"));
    let second = shelf.get_arc::<Record>("a")?.unwrap_or_else(|| panic!("missing"));
    assert!(Arc::ptr_eq(&first, &second));
    let s = shelf.cache_stats();
    assert_eq!((s.hits, s.misses, s.entries), (1, 1, 1));
    // A value read as another type is cached separately.
    let v = shelf.get_value_arc("a")?.unwrap_or_else(|| panic!("missing"));
    assert_eq!(v.as_i64(v.dict_get(v.root(), "id").unwrap_or(v.root())), Some(1));
    assert_eq!(shelf.cache_stats().entries, 2);
    assert_eq!(shelf.get_arc::<Record>("missing")?, None);
    Ok(())
}

#[test]
fn writes_are_seen_at_once() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    shelf.insert("a", &record(1))?;
    assert_eq!(shelf.get_arc::<Record>("a")?.map(|r| r.id), Some(1));
    shelf.insert("a", &record(2))?;
    assert_eq!(shelf.get_arc::<Record>("a")?.map(|r| r.id), Some(2));
    shelf.update("a", |r: Option<Record>| {
        r.map(|mut r| {
            r.id = 3;
            r
        })
    })?;
    assert_eq!(shelf.get_arc::<Record>("a")?.map(|r| r.id), Some(3));
    let mut b = pickleshelf::Batch::new();
    b.insert("a", &record(4))?;
    shelf.apply(b)?;
    assert_eq!(shelf.get_arc::<Record>("a")?.map(|r| r.id), Some(4));
    shelf.remove("a")?;
    assert_eq!(shelf.get_arc::<Record>("a")?, None);
    // Equal content under two keys is one cached object.
    shelf.insert("x", &record(9))?;
    shelf.insert("y", &record(9))?;
    let x = shelf.get_arc::<Record>("x")?.unwrap_or_else(|| panic!("missing"));
    let y = shelf.get_arc::<Record>("y")?.unwrap_or_else(|| panic!("missing"));
    assert!(Arc::ptr_eq(&x, &y));
    Ok(())
}

#[test]
fn explicit_eviction_pinning_and_budget() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::builder(dir.path().join("s")).cache_entries(32).open()?;
    for i in 0..200 {
        shelf.insert(&format!("k{i}"), &record(i))?;
        shelf.get_arc::<Record>(&format!("k{i}"))?;
    }
    let s = shelf.cache_stats();
    assert!(s.entries <= 32 + 16, "{s:?}"); // per-shard budgets round up
    assert!(s.evictions >= 200 - 48, "{s:?}");
    assert!(shelf.pin::<Record>("k0")?);
    for i in 0..200 {
        shelf.get_arc::<Record>(&format!("k{i}"))?;
    }
    let before = shelf.cache_stats().hits;
    shelf.get_arc::<Record>("k0")?;
    assert_eq!(shelf.cache_stats().hits, before + 1, "a pinned object stays cached");
    assert_eq!(shelf.cache_stats().pinned, 1);
    assert!(shelf.unpin("k0")?);
    assert!(shelf.evict("k0")? || shelf.cache_stats().pinned == 0);
    shelf.clear_cache();
    assert_eq!(shelf.cache_stats().entries, 0);
    shelf.set_cache_budget(0, 0);
    shelf.get_arc::<Record>("k5")?;
    shelf.get_arc::<Record>("k5")?;
    assert_eq!(shelf.cache_stats().entries, 0);
    assert_eq!(shelf.cache_budget(), (0, 0));
    Ok(())
}

#[test]
fn two_threads_read_hot_keys() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    for i in 0..100 {
        shelf.insert(&format!("k{i}"), &record(i))?;
    }
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let shelf = shelf.clone();
            std::thread::spawn(move || -> Result<u64, Error> {
                let mut sum = 0;
                for n in 0..20_000u64 {
                    let k = format!("k{}", (n * 7 + t) % 100);
                    sum += shelf.get_arc::<Record>(&k)?.map_or(0, |r| r.id);
                }
                Ok(sum)
            })
        })
        .collect();
    for h in handles {
        let sum = h.join().unwrap_or_else(|_| panic!("reader panicked"))?;
        assert!(sum > 0);
    }
    let s = shelf.cache_stats();
    assert_eq!(s.hits + s.misses, 40_000);
    assert!(s.misses <= 200, "{s:?}");
    Ok(())
}

fn status_kb(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Child half of `memory_stays_within_budget`: reads 10× the budget's worth of distinct
/// objects and prints the resident-memory growth.
fn memory_child(dir: &std::path::Path) -> Result<(), Error> {
    const BUDGET: u64 = 8 << 20;
    let shelf = Shelf::builder(dir.join("s")).cache_bytes(BUDGET).open()?;
    // ~2 KB pickles: 40,000 of them are ~10x the budget once decoded and estimated.
    let big = |i: u64| Record {
        id: i,
        name: format!("user{i}-{}", "x".repeat(200)),
        scores: (0..200).map(|j| j as f64 + i as f64).collect(),
        tags: (0..8).map(|j| format!("tag{j}")).collect(),
        active: true,
    };
    let n = 40_000;
    let mut batch = pickleshelf::Batch::new();
    for i in 0..n {
        batch.insert(&format!("k{i}"), &big(i))?;
        if batch.len() == 1000 {
            shelf.apply(std::mem::take(&mut batch))?;
        }
    }
    shelf.apply(batch)?;
    // Warm the store's own structures (sled's page cache) with a full pass without
    // caching, so the measurement sees only what the decoded-object cache adds.
    shelf.set_cache_budget(0, 0);
    for i in 0..n {
        shelf.get::<Record>(&format!("k{i}"))?;
    }
    shelf.set_cache_budget(BUDGET, 100_000);
    let base = status_kb("VmRSS:");
    let mut peak = base;
    for round in 0..2 {
        for i in 0..n {
            let r = shelf.get_arc::<Record>(&format!("k{i}"))?;
            assert_eq!(r.map(|r| r.id), Some(i));
            if i % 1000 == 0 {
                peak = peak.max(status_kb("VmRSS:"));
            }
        }
        let _ = round;
    }
    let s = shelf.cache_stats();
    println!(
        "MEMORY base_kb={base} peak_kb={peak} cache_bytes={} entries={} evictions={}",
        s.bytes, s.entries, s.evictions
    );
    Ok(())
}

#[test]
fn memory_stays_within_budget() {
    if let Some(dir) = std::env::var_os("PICKLESHELF_CACHE_MEMORY_CHILD") {
        memory_child(std::path::Path::new(&dir)).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let dir = tempdir();
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(exe)
        .args(["--exact", "memory_stays_within_budget", "--nocapture", "--test-threads=1"])
        .env("PICKLESHELF_CACHE_MEMORY_CHILD", dir.path())
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let line = text
        .lines()
        .find_map(|l| l.find("MEMORY ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no MEMORY line: {text}"));
    let field = |name: &str| -> u64 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in {line}"))
    };
    let growth_kb = field("peak_kb=").saturating_sub(field("base_kb="));
    let budget_kb = 8 << 10;
    println!("{line} growth_kb={growth_kb}");
    assert!(field("evictions=") > 0);
    assert!(field("cache_bytes=") <= (8 << 20));
    // The documented constant: 8 MiB over the budget for allocator slack and the key map.
    assert!(growth_kb <= budget_kb + 8 * 1024, "RSS grew {growth_kb} KiB for a {budget_kb} KiB budget");
}
