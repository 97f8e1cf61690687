//! Encoder throughput against CPython's `pickle.dumps`, on the data of the benchmark
//! workloads W1 (20,000 small records), W4 (a list of 250,000 floats) and W5 (one
//! snapshot: a dict of 5,000 entries), generated as `../shared/bench/WORKLOADS.md`
//! defines them.
//!
//! ```sh
//! cargo run --release --example encode_bench            # needs python3 for the CPython column
//! ```
//!
//! For each workload it times `pickle::encode` of a prepared `Value` and
//! `pickle::to_vec` of the equivalent Rust types (best of several rounds, thread CPU
//! time), then runs the same generation and `pickle.dumps(v, protocol=4)` in one
//! python3 process, and checks that both sides wrote the same bytes (FNV-1a over all
//! pickles). W1's `to_vec` differs from CPython only where a record draws one tag
//! twice: Python then holds one str object twice, a `Vec<&str>` two strs.

use std::process::Command;
use std::time::Instant;

use pickleshelf::pickle::{self, Node, NodeId, Value};
use serde::Serialize;

struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

const TAGS: [&str; 16] = [
    "red", "green", "blue", "alpha", "beta", "gamma", "delta", "admin", "guest", "staff", "vip", "new", "old", "eu",
    "us", "asia",
];

#[derive(Serialize)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<f64>,
    tags: Vec<&'static str>,
    active: bool,
}

#[derive(Serialize)]
struct Entry {
    rev: u64,
    label: String,
    value: f64,
    counts: Vec<u64>,
}

/// A map in insertion order.
struct Ordered<'a, V>(&'a [(String, V)]);

impl<V: Serialize> Serialize for Ordered<'_, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

fn w1_records() -> Vec<Record> {
    let mut g = SplitMix(1);
    (0..20_000u64)
        .map(|i| {
            let scores = (0..10).map(|_| g.next_unit() * 100.0).collect();
            let ntags = 2 + g.next_u64() % 3;
            let tags = (0..ntags).map(|_| TAGS[(g.next_u64() % 16) as usize]).collect();
            let active = g.next_u64() & 1 == 1;
            Record { id: i, name: format!("user{i}"), scores, tags, active }
        })
        .collect()
}

/// A W1 record as Python builds it: a tag drawn twice is the same str object.
fn w1_value(r: &Record) -> Value {
    let mut v = Value::new(Node::None);
    let pair = |v: &mut Value, key: &str, node: Node| (v.push(Node::Str(key.into())), v.push(node));
    let id = pair(&mut v, "id", Node::Int(r.id as i64));
    let name = pair(&mut v, "name", Node::Str(r.name.as_str().into()));
    let scores: Vec<NodeId> = r.scores.iter().map(|&s| v.push(Node::Float(s))).collect();
    let scores = pair(&mut v, "scores", Node::List(scores));
    let mut seen: Vec<(&str, NodeId)> = Vec::new();
    let mut tags = Vec::new();
    for &t in &r.tags {
        let id = match seen.iter().find(|(s, _)| *s == t) {
            Some(&(_, id)) => id,
            None => {
                let id = v.push(Node::Str(t.into()));
                seen.push((t, id));
                id
            }
        };
        tags.push(id);
    }
    let tags = pair(&mut v, "tags", Node::List(tags));
    let active = pair(&mut v, "active", Node::Bool(r.active));
    let root = v.push(Node::Dict(vec![id, name, scores, tags, active]));
    v.set_root(root);
    v
}

fn w4_floats() -> Vec<f64> {
    let mut g = SplitMix(4);
    (0..250_000).map(|_| g.next_unit()).collect()
}

fn w5_state() -> Vec<(String, Entry)> {
    let mut g = SplitMix(5);
    (0..5000)
        .map(|j| {
            let value = g.next_unit();
            let counts = (0..3).map(|_| g.next_u64() % 1000).collect();
            (format!("item:{j}"), Entry { rev: 0, label: format!("item{j}"), value, counts })
        })
        .collect()
}

fn fnv(h: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *h = (*h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
}

/// Seconds this thread has spent on a CPU (Linux), else wall-clock seconds: on a
/// shared machine CPU time compares the two sides more fairly.
fn cpu_seconds(start: Instant) -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|ns| ns.parse::<f64>().ok()))
        .map_or_else(|| start.elapsed().as_secs_f64(), |ns| ns / 1e9)
}

/// Best CPU time per run of `rounds` rounds of `reps` runs of `f` (a round lasts long
/// enough for the kernel's CPU-time accounting), which returns the pickles' total size
/// and hash.
fn best(rounds: usize, reps: usize, mut f: impl FnMut() -> (usize, u64)) -> (f64, usize, u64) {
    let mut t = f64::MAX;
    let mut out = (0, 0);
    for _ in 0..rounds {
        let wall = Instant::now();
        let start = cpu_seconds(wall);
        for _ in 0..reps {
            out = f();
        }
        t = t.min((cpu_seconds(wall) - start) / reps as f64);
    }
    (t, out.0, out.1)
}

fn run<'a>(pickles: impl Iterator<Item = pickleshelf::Result<Vec<u8>>> + 'a) -> (usize, u64) {
    let mut h = 0xcbf2_9ce4_8422_2325;
    let mut n = 0;
    for p in pickles {
        let p = p.unwrap_or_else(|e| panic!("{e}"));
        n += p.len();
        fnv(&mut h, &p);
    }
    (n, h)
}

const PYTHON: &str = r#"
import pickle, sys, time
M = (1 << 64) - 1
class SplitMix:
    def __init__(self, s): self.s = s
    def next_u64(self):
        self.s = (self.s + 0x9E3779B97F4A7C15) & M; z = self.s
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M; z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
        return z ^ (z >> 31)
    def next_unit(self): return (self.next_u64() >> 11) * 2.0 ** -53
TAGS = ["red", "green", "blue", "alpha", "beta", "gamma", "delta", "admin", "guest", "staff", "vip", "new", "old", "eu", "us", "asia"]
g = SplitMix(1); w1 = []
for i in range(20000):
    scores = [g.next_unit() * 100.0 for _ in range(10)]; n = 2 + g.next_u64() % 3
    tags = [TAGS[g.next_u64() % 16] for _ in range(n)]; active = g.next_u64() & 1 == 1
    w1.append({"id": i, "name": f"user{i}", "scores": scores, "tags": tags, "active": active})
g = SplitMix(4); w4 = [g.next_unit() for _ in range(250000)]
g = SplitMix(5); w5 = {}
for j in range(5000):
    v = g.next_unit(); c = [g.next_u64() % 1000 for _ in range(3)]
    w5[f"item:{j}"] = {"rev": 0, "label": f"item{j}", "value": v, "counts": c}
def fnv(h, b):
    for x in b: h = ((h ^ x) * 0x100000001b3) & M
    return h
rounds = int(sys.argv[1])
for name, values, reps in (("W1", w1, 10), ("W4", [w4], 100), ("W5", [w5], 200)):
    dumps = pickle.dumps; t = 1e9
    for _ in range(rounds):
        a = time.thread_time()
        for _ in range(reps): out = [dumps(v, 4) for v in values]
        t = min(t, (time.thread_time() - a) / reps)
    h = 0xcbf29ce484222325
    for p in out: h = fnv(h, p)
    print(name, t, sum(map(len, out)), h)
"#;

fn main() {
    let rounds = 5;
    let records = w1_records();
    let w1_values: Vec<Value> = records.iter().map(w1_value).collect();
    let floats = w4_floats();
    let w4_value = pickle::to_value(&floats).unwrap_or_else(|e| panic!("{e}"));
    let state = w5_state();
    let w5_value = pickle::to_value(&Ordered(&state)).unwrap_or_else(|e| panic!("{e}"));

    let rust = [
        (
            "W1",
            best(rounds, 10, || run(w1_values.iter().map(|v| pickle::encode(v, 4)))),
            best(rounds, 10, || run(records.iter().map(pickle::to_vec))),
        ),
        (
            "W4",
            best(rounds, 100, || run(std::iter::once(pickle::encode(&w4_value, 4)))),
            best(rounds, 100, || run(std::iter::once(pickle::to_vec(&floats)))),
        ),
        (
            "W5",
            best(rounds, 200, || run(std::iter::once(pickle::encode(&w5_value, 4)))),
            best(rounds, 200, || run(std::iter::once(pickle::to_vec(&Ordered(&state))))),
        ),
    ];

    let python = Command::new("python3").arg("-c").arg(PYTHON).arg(rounds.to_string()).output();
    let python = match python {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        _ => {
            eprintln!("python3 not available: CPython column left empty");
            String::new()
        }
    };
    println!("best of {rounds} rounds; CPU ms per workload (ratio = CPython time / ours)");
    println!(
        "{:4} {:>10} {:>14} {:>8} {:>14} {:>8}  bytes",
        "", "CPython", "encode(Value)", "ratio", "to_vec(T)", "ratio"
    );
    for (name, (te, ne, he), (ts, ns, _)) in rust {
        let py = python.lines().find(|l| l.starts_with(name)).map(|l| l.split_whitespace().collect::<Vec<_>>());
        let (tp, same) = match py.as_deref() {
            Some([_, t, n, h]) => {
                let tp: f64 = t.parse().unwrap_or(f64::NAN);
                (tp, format!("{}", *n == ne.to_string() && *h == he.to_string()))
            }
            _ => (f64::NAN, "?".into()),
        };
        println!(
            "{name:4} {:>10.2} {:>14.2} {:>7.2}x {:>14.2} {:>7.2}x  {ne} (to_vec {ns}); identical to CPython: {same}",
            tp * 1e3,
            te * 1e3,
            tp / te,
            ts * 1e3,
            tp / ts
        );
    }
}
