//! Memoization: keys that depend only on the logical arguments (and agree with the
//! documented Python recipe), namespaces and versions, expiry, limits, single flight,
//! errors never cached, results surviving a reopen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use pickleshelf::{Error, Shelf};
use serde::{Deserialize, Serialize};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Serialize)]
struct Opts {
    mode: &'static str,
    limit: u32,
    exact: bool,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct Out {
    n: u64,
    label: String,
    values: Vec<f64>,
}

fn out(n: u64) -> Out {
    Out { n, label: format!("q{n}"), values: (0..110).map(|j| n as f64 * 0.5 + j as f64).collect() }
}

#[test]
fn results_survive_reopen_and_keys_are_stable() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let key;
    {
        let shelf = Shelf::open(&path)?;
        let m = shelf.memo("f")?;
        key = m.key(&(7u32, "q7"))?;
        let r: Out = m.get_or_compute(&(7u32, "q7"), || out(7))?;
        assert_eq!(r, out(7));
        assert_eq!(m.stats().misses, 1);
    }
    let shelf = Shelf::open(&path)?;
    let m = shelf.memo("f")?;
    assert_eq!(m.key(&(7u32, "q7"))?, key);
    let r: Out = m.get_or_compute(&(7u32, "q7"), || panic!("must not recompute"))?;
    assert_eq!(r, out(7));
    assert_eq!((m.stats().hits, m.stats().misses, m.stats().entries), (1, 0, 1));
    assert!(shelf.verify()?.is_ok());
    Ok(())
}

#[test]
fn map_and_set_arguments_ignore_iteration_order() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo("f")?;
    let a: HashMap<String, i64> = (0..40).map(|i| (format!("k{i}"), i)).collect();
    let mut b: HashMap<String, i64> = HashMap::with_capacity(1000);
    for i in (0..40).rev() {
        b.insert(format!("k{i}"), i);
    }
    let c: BTreeMap<String, i64> = (0..40).map(|i| (format!("k{i}"), i)).collect();
    assert_eq!(m.key(&a)?, m.key(&b)?);
    assert_eq!(m.key(&a)?, m.key(&c)?);
    let s1: HashSet<u64> = (0..100).collect();
    let s2: HashSet<u64> = (0..100).rev().collect();
    assert_eq!(m.key(&(1, &s1))?, m.key(&(1, &s2))?);
    assert_ne!(m.key(&vec![1, 2])?, m.key(&vec![2, 1])?);
    assert_ne!(m.key(&(1,))?, m.key(&(1.0,))?);
    Ok(())
}

/// The documented recipe, run by CPython, gives the same keys.
#[test]
fn python_computes_the_same_keys() -> Result<(), Error> {
    let python = std::process::Command::new("python3").arg("-c").arg("pass").status();
    if !python.is_ok_and(|s| s.success()) {
        assert!(std::env::var_os("CI").is_none(), "python3 is required when CI is set");
        eprintln!("SKIPPED: python3 not found");
        return Ok(());
    }
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo_builder("f").version("v2").open()?;
    let set: HashSet<&str> = ["b", "a", "c"].into_iter().collect();
    let mut map: HashMap<&str, Vec<u8>> = HashMap::new();
    map.insert("z", vec![1, 2]);
    map.insert("a", vec![]);
    let ours = [
        m.key(&(10000u32, "q10000", Opts { mode: "fast", limit: 0, exact: true }))?,
        m.key(&(1i64, 2.5f64, None::<u8>, "é", vec![true, false]))?,
        m.key(&(&set, 7u8))?,
        m.key(&map)?,
        m.key(&((1u8, 2u8), "a", "a"))?,
    ];
    let script = r#"
import hashlib, io, pickle
def fast_dumps(x):
    f = io.BytesIO(); p = pickle.Pickler(f, protocol=4); p.fast = True; p.dump(x)
    return f.getvalue()
def canonical(x):
    t = type(x)
    if t is dict:
        items = [(canonical(k), canonical(v)) for k, v in x.items()]
        return dict(sorted(items, key=lambda kv: fast_dumps(kv[0])))
    if t in (set, frozenset):
        return ("__pickleshelf.set__", *sorted((canonical(e) for e in x), key=fast_dumps))
    if t is list: return [canonical(e) for e in x]
    if t is tuple: return tuple(canonical(e) for e in x)
    if t is bytearray: return bytes(x)
    return x
def memo_key(namespace, version, args):
    head = b"pickleshelf memo 1\0" + namespace.encode() + b"\0" + version.encode() + b"\0"
    return hashlib.blake2b(head + fast_dumps(canonical(args)), digest_size=16).hexdigest()
a = "a"
for args in [
    (10000, "q10000", {"mode": "fast", "limit": 0, "exact": True}),
    (1, 2.5, None, "é", [True, False]),
    ({"c", "a", "b"}, 7),
    {"a": b"", "z": b"\x01\x02"},  # Vec<u8> is bytes
    ((1, 2), a, a),
]:
    print(memo_key("f", "v2", args))
"#;
    let out =
        std::process::Command::new("python3").args(["-c", script]).output().unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let theirs: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect();
    assert_eq!(theirs, ours.to_vec());
    Ok(())
}

#[test]
fn namespaces_and_versions_are_separate() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path)?;
    let f = shelf.memo("f")?;
    let g = shelf.memo("g")?;
    let _: u32 = f.get_or_compute(&1, || 10)?;
    let r: u32 = g.get_or_compute(&1, || 20)?;
    assert_eq!(r, 20, "another namespace misses");
    drop((f, g));
    let f2 = shelf.memo_builder("f").version("2").open()?;
    let r: u32 = f2.get_or_compute(&1, || 11)?;
    assert_eq!(r, 11, "another version misses");
    assert_eq!(f2.stats().entries, 1, "the old version's result was deleted");
    assert_eq!(shelf.len()?, 0, "memo results are not store keys");
    assert!(shelf.verify()?.is_ok());
    Ok(())
}

#[test]
fn expired_results_are_recomputed() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo_builder("f").ttl(Duration::from_millis(200)).open()?;
    let a: u32 = m.get_or_compute(&1, || 1)?;
    let b: u32 = m.get_or_compute(&1, || 2)?;
    assert_eq!((a, b), (1, 1));
    std::thread::sleep(Duration::from_millis(300));
    let c: u32 = m.get_or_compute(&1, || 3)?;
    assert_eq!(c, 3);
    assert_eq!(m.stats().evictions, 1);
    Ok(())
}

#[test]
fn limits_hold_over_a_long_run() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    {
        let shelf = Shelf::open(&path)?;
        let m = shelf.memo_builder("f").max_entries(100).max_bytes(64 * 1024).open()?;
        for i in 0..3000u64 {
            // Mostly new calls, some repeats of recent ones.
            let n = if i % 4 == 3 { i - 2 } else { i };
            let r: Out = m.get_or_compute(&n, || out(n))?;
            assert_eq!(r.n, n);
            let s = m.stats();
            assert!(s.entries <= 100 && s.bytes <= 64 * 1024, "{s:?}");
        }
        let s = m.stats();
        assert!(s.evictions > 2000, "{s:?}");
        // The most recent call is still there.
        let r: Out = m.get_or_compute(&2998u64, || panic!("evicted the most recent"))?;
        assert_eq!(r.n, 2998);
        m.sync()?;
    }
    let shelf = Shelf::open(&path)?;
    let m = shelf.memo_builder("f").max_entries(100).max_bytes(64 * 1024).open()?;
    assert!(m.stats().entries <= 100);
    assert!(shelf.verify()?.is_ok());
    Ok(())
}

#[test]
fn concurrent_callers_compute_once() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo("slow")?;
    let calls = Arc::new(AtomicU32::new(0));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let m = m.clone();
            let calls = Arc::clone(&calls);
            std::thread::spawn(move || -> Result<u64, Error> {
                m.get_or_compute(&("same", 1), || {
                    calls.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(200));
                    42u64
                })
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap_or_else(|_| panic!("caller panicked"))?, 42);
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    Ok(())
}

#[test]
fn errors_are_returned_not_cached() -> Result<(), Error> {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s"))?;
    let m = shelf.memo("f")?;
    let r: Result<u32, String> = m.try_get_or_compute(&5, || Err("boom".to_string()))?;
    assert_eq!(r, Err("boom".into()));
    let r: Result<u32, String> = m.try_get_or_compute(&5, || Ok(9))?;
    assert_eq!(r, Ok(9));
    let r: Result<u32, String> = m.try_get_or_compute(&5, || Err("not called".into()))?;
    assert_eq!(r, Ok(9));
    assert!(m.invalidate(&5)?);
    assert!(!m.invalidate(&5)?);
    let _: u32 = m.get_or_compute(&6, || 6)?;
    assert_eq!(m.clear()?, 1);
    assert_eq!(m.stats().entries, 0);
    Ok(())
}

#[test]
fn memo_namespaces_lists_each_namespace_with_its_results() -> Result<(), Error> {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path)?;
    assert!(shelf.memo_namespaces()?.is_empty());
    let big = shelf.memo_builder("big").version("v2").open()?;
    for n in 0..3u64 {
        let _: Out = big.get_or_compute(&(n,), || out(n))?;
    }
    let small = shelf.memo("small")?;
    let _: u32 = small.get_or_compute(&"x", || 1)?;
    let empty = shelf.memo("empty")?;
    let (big_stats, small_stats) = (big.stats(), small.stats());
    drop((big, small, empty));
    shelf.insert("big\0not-a-memo", &1)?; // a key, not a memo result
    let spaces = shelf.memo_namespaces()?;
    let names: Vec<&str> = spaces.iter().map(|n| n.name.as_str()).collect();
    assert_eq!(names, ["big", "empty", "small"]);
    assert_eq!((spaces[0].version.as_str(), spaces[0].entries, spaces[0].bytes), ("v2", 3, big_stats.bytes));
    assert_eq!((spaces[1].version.as_str(), spaces[1].entries, spaces[1].bytes, spaces[1].last_used), ("", 0, 0, None));
    assert_eq!((spaces[2].entries, spaces[2].bytes), (1, small_stats.bytes));
    let age = spaces[0].last_used.and_then(|t| t.elapsed().ok()).unwrap_or(Duration::MAX);
    assert!(age < Duration::from_secs(60), "{age:?}");
    assert_eq!(shelf.stats()?.memo_entries, 4);
    shelf.close()?;
    // Read-only, and after clearing one namespace.
    let ro = Shelf::builder(&path).read_only(true).open()?;
    assert_eq!(ro.memo_namespaces()?, spaces);
    drop(ro);
    let shelf = Shelf::open(&path)?;
    assert_eq!(shelf.memo_builder("big").version("v2").open()?.clear()?, 3);
    let after = shelf.memo_namespaces()?;
    assert_eq!(
        (after[0].name.as_str(), after[0].version.as_str(), after[0].entries, after[0].bytes),
        ("big", "v2", 0, 0)
    );
    assert_eq!(after[2], spaces[2]);
    Ok(())
}
