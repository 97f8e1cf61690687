//! The encoder against CPython: byte-identical output for plain data, checked three ways.
//!
//! 1. Every `values` case of the shared conformance corpus (`../shared/conformance`,
//!    or `$PICKLESHELF_CONFORMANCE`), decoded and re-encoded with its own protocol 2–5,
//!    gives the file's bytes.
//! 2. Seeded random values (all atom size classes, containers across the 1,000-item
//!    batch and 64 KiB frame edges, sharing and cycles) are encoded with protocols 2–5;
//!    one `python3` process loads each pickle and dumps it again with the same
//!    protocol, and the bytes must be ours. Our decoder must read back the same value.
//! 3. The corpus's `objects` cases, decoded from every protocol and re-encoded with
//!    2–5, load in CPython to the same value as the original file
//!    (`check_python_loads.py`, reference mode, identity checked).
//!
//! Without `python3` the CPython checks are skipped, unless `CI` is set, where they
//! fail. Without the corpus its checks are skipped with a message.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{Rng, corpus, python3};
use pickleshelf_pickle::{self as pickle, Int, Node, NodeId, PyStr, Value};

// ----- environment -----

/// The case names of one group in `manifest.json` (`"groups": {"values": [...]}`).
fn group(dir: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).unwrap();
    let groups = &text[text.find("\"groups\"").unwrap()..];
    let list = &groups[groups.find(&format!("\"{name}\"")).unwrap()..];
    let list = &list[list.find('[').unwrap() + 1..list.find(']').unwrap()];
    list.split(',').map(|s| s.trim().trim_matches('"').to_string()).filter(|s| !s.is_empty()).collect()
}

// ----- 1. corpus values: byte-identical re-encoding -----

#[test]
fn corpus_values_reencode_byte_identical() {
    let Some(dir) = corpus() else { return };
    let names = group(&dir, "values");
    assert!(names.len() >= 100, "only {} value cases", names.len());
    let mut checked = 0;
    let mut failures = Vec::new();
    for name in &names {
        for p in 2..=5u8 {
            let path = dir.join(format!("cases/{name}.p{p}.pkl"));
            let Ok(bytes) = std::fs::read(&path) else { continue };
            let value = pickle::decode(&bytes).unwrap_or_else(|e| panic!("{name} p{p}: {e}"));
            let again = pickle::encode(&value, p).unwrap_or_else(|e| panic!("{name} p{p}: {e}"));
            checked += 1;
            if again != bytes {
                let at = again.iter().zip(&bytes).position(|(a, b)| a != b).unwrap_or(again.len().min(bytes.len()));
                failures.push(format!(
                    "{name}.p{p}: first difference at byte {at} (ours {} bytes, CPython {})",
                    again.len(),
                    bytes.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{} of {checked} differ:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 400, "only {checked} files checked");
}

// ----- 3. corpus objects: CPython loads our re-encoding to the same value -----

#[test]
fn corpus_objects_reencode_load_in_cpython() {
    let Some(dir) = corpus() else { return };
    let Some(py) = python3() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut args: Vec<PathBuf> = Vec::new();
    for name in group(&dir, "objects") {
        for src in 0..=5u8 {
            let reference = dir.join(format!("cases/{name}.p{src}.pkl"));
            let Ok(bytes) = std::fs::read(&reference) else { continue };
            let value = pickle::decode(&bytes).unwrap_or_else(|e| panic!("{name} p{src}: {e}"));
            for p in 2..=5u8 {
                let out = tmp.path().join(format!("{name}.from{src}.p{p}.pkl"));
                std::fs::write(&out, pickle::encode(&value, p).unwrap_or_else(|e| panic!("{name} p{src}->{p}: {e}")))
                    .unwrap();
                args.extend([out, reference.clone()]);
            }
        }
    }
    assert!(args.len() >= 2 * 200, "only {} pairs", args.len() / 2);
    let out = Command::new(py).arg(dir.join("check_python_loads.py")).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "check_python_loads.py failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ----- 2. random and hand-made values: CPython re-pickles our bytes identically -----

/// Builds random plain values. Sets hold distinct small non-negative ints in
/// ascending order, the order CPython iterates them in (an int hashes to itself and
/// the table is larger than 1.5 × the item count), so that re-pickling keeps it. Dict
/// keys are distinct and hashable.
struct Gen {
    rng: Rng,
    v: Value,
    /// Finished small containers, for sharing.
    pool: Vec<NodeId>,
    uniq: u64,
    /// Nodes left to make before containers stop growing.
    budget: usize,
    /// Payloads of 64 KiB or more left to make.
    big: u32,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen { rng: Rng(seed), v: Value::new(Node::None), pool: Vec::new(), uniq: 0, budget: 30_000, big: 1 }
    }

    fn push(&mut self, n: Node) -> NodeId {
        self.budget = self.budget.saturating_sub(1);
        self.v.push(n)
    }

    fn int(&mut self, v: i128) -> NodeId {
        match Int::parse_decimal(&v.to_string(), 100).unwrap() {
            Int::Small(i) => self.push(Node::Int(i)),
            Int::Big(b) => self.push(Node::BigInt(Box::new(b))),
        }
    }

    /// `len`, or a small length once the value has its large payload.
    fn big(&mut self, len: usize) -> usize {
        if len < 1000 {
            len
        } else if self.big > 0 {
            self.big -= 1;
            len
        } else {
            len % 300
        }
    }

    fn text(&mut self, len: usize) -> String {
        const CHARS: [char; 10] = ['a', 'b', 'z', ' ', 'é', 'ß', '한', '字', '😀', '\0'];
        let ascii = self.rng.chance(60);
        (0..len)
            .map(|_| if ascii { (b'a' + self.rng.below(26) as u8) as char } else { *self.rng.pick(&CHARS) })
            .collect()
    }

    fn atom(&mut self) -> NodeId {
        match self.rng.below(20) {
            0 => self.push(Node::None),
            1 => {
                let b = self.rng.chance(50);
                self.push(Node::Bool(b))
            }
            2..=6 => {
                let v: i128 = match self.rng.below(9) {
                    0 => self.rng.below(256) as i128,
                    1 => 256 + self.rng.below(65280) as i128,
                    2 => -(self.rng.below(1 << 31) as i128) - 1,
                    3 => self.rng.below(1 << 31) as i128,
                    4 => *self.rng.pick(&[255, 256, 65535, 65536, (1 << 31) - 1, 1 << 31, -(1 << 31), -(1 << 31) - 1]),
                    5 => self.rng.next() as i64 as i128,
                    6 => *self.rng.pick(&[i64::MIN as i128, i64::MAX as i128, 1 << 63, -(1 << 63) - 1, 1 << 64]),
                    7 => (self.rng.next() as i128) << self.rng.below(60),
                    _ => -((self.rng.next() as i128) << 63),
                };
                if self.rng.chance(5) {
                    // Beyond 128 bits: LONG1 up to 255 bytes, then LONG4.
                    let digits = *self.rng.pick(&[40usize, 600, 620, 2000]);
                    let text: String =
                        (0..digits).map(|i| char::from(b'1' + ((i * 7 + v as usize) % 9) as u8)).collect();
                    let text = if v < 0 { format!("-{text}") } else { text };
                    return match Int::parse_decimal(&text, 5000).unwrap() {
                        Int::Small(i) => self.push(Node::Int(i)),
                        Int::Big(b) => self.push(Node::BigInt(Box::new(b))),
                    };
                }
                self.int(v)
            }
            7..=9 => {
                let f = match self.rng.below(8) {
                    0 => *self.rng.pick(&[
                        0.0,
                        -0.0,
                        f64::NAN,
                        -f64::NAN,
                        f64::INFINITY,
                        f64::NEG_INFINITY,
                        5e-324,
                        f64::MAX,
                    ]),
                    1 => f64::from_bits(self.rng.next()),
                    _ => (self.rng.next() as i64 as f64) / 1e6,
                };
                self.push(Node::Float(f))
            }
            10..=14 => {
                let len = match self.rng.below(12) {
                    0 => 0,
                    1 => 1,
                    2 => *self.rng.pick(&[255usize, 256, 254, 65535, 65536]),
                    3 if self.rng.chance(10) => 70_000,
                    _ => self.rng.below(20) as usize,
                };
                let len = self.big(len);
                if len > 0 && self.rng.chance(5) {
                    let mut points: Vec<u32> = self.text(len).chars().map(u32::from).collect();
                    let at = self.rng.below(points.len() as u64) as usize;
                    points[at] = 0xD800 + self.rng.below(0x800) as u32;
                    return self.push(Node::Str(PyStr::from_code_points(&points).unwrap()));
                }
                let t = self.text(len);
                self.push(Node::Str(t.into()))
            }
            15..=18 => {
                let len = match self.rng.below(10) {
                    0 => 0,
                    1 => 1,
                    2 => *self.rng.pick(&[255usize, 256, 65535, 65536]),
                    3 if self.rng.chance(20) => 70_000,
                    _ => self.rng.below(40) as usize,
                };
                let len = self.big(len);
                let data: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                self.push(Node::Bytes(data))
            }
            _ => {
                let len = if self.rng.chance(10) { 70_000 } else { self.rng.below(10) as usize };
                let len = self.big(len);
                let data: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                self.push(Node::ByteArray(data))
            }
        }
    }

    fn len(&mut self) -> usize {
        if self.budget < 3000 {
            return self.rng.below(3) as usize;
        }
        match self.rng.below(30) {
            0 => *self.rng.pick(&[999usize, 1000, 1001, 1999, 2000, 2001]),
            1..=3 => 0,
            4..=7 => 1,
            _ => self.rng.below(8) as usize,
        }
    }

    fn key(&mut self) -> NodeId {
        self.uniq += 1;
        let u = self.uniq;
        match self.rng.below(4) {
            0 => self.int(u as i128 * 1_000_003 - 5_000_000),
            1 => {
                let a = self.int(u as i128);
                let t = self.text(3);
                let b = self.push(Node::Str(t.into()));
                self.push(Node::Tuple(vec![a, b]))
            }
            _ => {
                let len = self.rng.below(6) as usize;
                let t = self.text(len);
                self.push(Node::Str(format!("{t}{u}").into()))
            }
        }
    }

    fn int_set(&mut self) -> Vec<NodeId> {
        let n = self.len();
        let mut items = Vec::with_capacity(n);
        let mut next = 0u64;
        for _ in 0..n {
            next += 1 + u64::from(self.rng.chance(30));
            items.push(next - 1);
        }
        items.into_iter().map(|i| self.int(i as i128)).collect()
    }

    fn value(&mut self, depth: u32) -> NodeId {
        if depth == 0 || self.rng.chance(35) {
            return self.atom();
        }
        if !self.pool.is_empty() && self.rng.chance(10) {
            let at = self.rng.below(self.pool.len() as u64) as usize;
            return self.pool[at];
        }
        let before = self.v.len();
        let id = match self.rng.below(10) {
            0..=2 => {
                let n = self.len();
                let items = (0..n).map(|_| self.value(depth - 1)).collect();
                self.push(Node::List(items))
            }
            3..=4 => {
                let n = self.rng.below(6) as usize;
                let items = (0..n).map(|_| self.value(depth - 1)).collect();
                self.push(Node::Tuple(items))
            }
            5..=7 => {
                let n = self.len();
                let pairs = (0..n).map(|_| (self.key(), self.value(depth - 1))).collect();
                self.push(Node::Dict(pairs))
            }
            8 => {
                let items = self.int_set();
                self.push(Node::Set(items))
            }
            _ => {
                let items = self.int_set();
                self.push(Node::FrozenSet(items))
            }
        };
        // Only small containers are shared, so that the unfolded tree stays small.
        if self.v.len() - before < 50 {
            self.pool.push(id);
        }
        id
    }

    fn finish(mut self, root: NodeId) -> Value {
        self.v.set_root(root);
        self.v
    }
}

/// Structural equality that ignores identity (for acyclic values whose equal
/// singletons our encoder shares, as CPython does).
fn same_tree(a: &Value, b: &Value) -> bool {
    let mut work = vec![(a.root(), b.root())];
    while let Some((x, y)) = work.pop() {
        let (nx, ny) = (&a[x], &b[y]);
        let ok = match (nx, ny) {
            (Node::Float(p), Node::Float(q)) => p.to_bits() == q.to_bits(),
            (Node::List(p), Node::List(q))
            | (Node::Tuple(p), Node::Tuple(q))
            | (Node::Set(p), Node::Set(q))
            | (Node::FrozenSet(p), Node::FrozenSet(q)) => {
                work.extend(p.iter().copied().zip(q.iter().copied()));
                p.len() == q.len()
            }
            (Node::PersistentId(p), Node::PersistentId(q)) => {
                work.push((*p, *q));
                true
            }
            (Node::Dict(p), Node::Dict(q)) => {
                for (&(k1, v1), &(k2, v2)) in p.iter().zip(q) {
                    work.extend([(k1, k2), (v1, v2)]);
                }
                p.len() == q.len()
            }
            _ => nx == ny,
        };
        if !ok {
            return false;
        }
    }
    true
}

fn list(v: &mut Value, items: Vec<NodeId>) -> NodeId {
    v.push(Node::List(items))
}

/// Shared and cyclic values, each with the sharing CPython would give it.
fn hand_made() -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();

    // a = [1]; [a, a]
    let mut v = Value::new(Node::None);
    let one = v.push(Node::Int(1));
    let a = list(&mut v, vec![one]);
    let root = list(&mut v, vec![a, a]);
    v.set_root(root);
    out.push(("shared list", v));

    // l = [1]; l.append(l)
    let mut v = Value::new(Node::List(Vec::new()));
    let one = v.push(Node::Int(1));
    let root = v.root();
    if let Node::List(items) = v.node_mut(root) {
        items.extend([one, root]);
    }
    out.push(("self-referencing list", v));

    // d = {'self': None}; d['self'] = d; d['x'] = [d]
    let mut v = Value::new(Node::Dict(Vec::new()));
    let root = v.root();
    let k = v.push(Node::Str("self".into()));
    let kx = v.push(Node::Str("other".into()));
    let l = list(&mut v, vec![root]);
    if let Node::Dict(pairs) = v.node_mut(root) {
        pairs.extend([(k, root), (kx, l)]);
    }
    out.push(("self-referencing dict", v));

    // t = ([],); t[0].append(t), rooted at the tuple and at the list
    for (name, root_at_list, extra) in [
        ("recursive tuple via a list", false, 0),
        ("list inside a recursive tuple", true, 0),
        ("recursive 4-tuple via a list", false, 3),
    ] {
        let mut v = Value::new(Node::List(Vec::new()));
        let l = v.root();
        let mut items = vec![l];
        for i in 0..extra {
            items.push(v.push(Node::Int(i)));
        }
        let t = v.push(Node::Tuple(items));
        if let Node::List(items) = v.node_mut(l) {
            items.push(t);
        }
        v.set_root(if root_at_list { l } else { t });
        out.push((name, v));
    }

    // t = ([], []); t[0].append(t); t[1].append(t)
    let mut v = Value::new(Node::None);
    let l1 = list(&mut v, vec![]);
    let l2 = list(&mut v, vec![]);
    let t = v.push(Node::Tuple(vec![l1, l2]));
    for l in [l1, l2] {
        if let Node::List(items) = v.node_mut(l) {
            items.push(t);
        }
    }
    v.set_root(t);
    out.push(("tuple reached twice through two lists", v));

    // t = ({},); t[0]['k'] = (t, t)
    let mut v = Value::new(Node::None);
    let d = v.push(Node::Dict(vec![]));
    let t = v.push(Node::Tuple(vec![d]));
    let inner = v.push(Node::Tuple(vec![t, t]));
    let k = v.push(Node::Str("key".into()));
    if let Node::Dict(pairs) = v.node_mut(d) {
        pairs.push((k, inner));
    }
    v.set_root(t);
    out.push(("recursive tuple through a dict and a tuple", v));

    // Mutual cycle and shared atoms.
    let mut v = Value::new(Node::None);
    let a = list(&mut v, vec![]);
    let b = list(&mut v, vec![a]);
    if let Node::List(items) = v.node_mut(a) {
        items.push(b);
    }
    let s = v.push(Node::Str("shared text".into()));
    let s2 = v.push(Node::Str("shared text".into()));
    let by = v.push(Node::Bytes(b"xyz".to_vec()));
    let ba = v.push(Node::ByteArray(b"xyz".to_vec()));
    let fs_items = vec![v.push(Node::Int(1))];
    let fs = v.push(Node::FrozenSet(fs_items));
    let st = v.push(Node::Set(vec![]));
    let root = list(&mut v, vec![a, b, s, s, s2, by, by, ba, ba, fs, fs, st, st]);
    v.set_root(root);
    out.push(("mutual cycle and shared objects", v));

    // Many medium strings: frames close at many different offsets.
    let mut v = Value::new(Node::None);
    let items = (0..3000).map(|i| v.push(Node::Str(format!("{i:0>width$}", width = 10 + i % 90).into()))).collect();
    let root = list(&mut v, items);
    v.set_root(root);
    out.push(("3000 medium strings", v));

    // 100,000 ints: 100 APPENDS batches, several frames.
    let mut v = Value::new(Node::None);
    let items = (0..100_000).map(|i| v.push(Node::Int(i * 37 - 1_000_000))).collect();
    let root = list(&mut v, items);
    v.set_root(root);
    out.push(("100,000 ints", v));

    // Large payloads outside frames.
    let mut v = Value::new(Node::None);
    let items = vec![
        v.push(Node::Bytes(vec![1; 70_000])),
        v.push(Node::Bytes(vec![2; 70_000])),
        v.push(Node::Str("x".repeat(100_000).into())),
        v.push(Node::ByteArray(vec![3; 65_536])),
        v.push(Node::Bytes(vec![4; 65_535])),
        v.push(Node::Str("y".repeat(65_535).into())),
    ];
    let root = list(&mut v, items);
    v.set_root(root);
    out.push(("large payloads", v));

    for n in [1usize, 999, 1000, 1001, 2000, 2001] {
        let mut v = Value::new(Node::None);
        let ints = |v: &mut Value| -> Vec<NodeId> { (0..n).map(|i| v.push(Node::Int(i as i64))).collect() };
        let (a, b, c, d, e) = (ints(&mut v), ints(&mut v), ints(&mut v), ints(&mut v), ints(&mut v));
        let pairs = a.iter().copied().zip(b).collect();
        let l = list(&mut v, c);
        let t = v.push(Node::Tuple(d));
        let d = v.push(Node::Dict(pairs));
        let s = v.push(Node::Set(e.clone()));
        let f_items = e.iter().map(|_| 0).enumerate().map(|(i, _)| v.push(Node::Int(i as i64))).collect();
        let f = v.push(Node::FrozenSet(f_items));
        let root = v.push(Node::Tuple(vec![l, t, d, s, f]));
        v.set_root(root);
        out.push(("batch edges", v));
    }
    out
}

/// Encodes every value with protocols 2–5 into `dir` and returns `(file, protocol)`.
fn write_cases(dir: &Path, values: &[(String, Value)], sharing_exact: bool) -> Vec<(PathBuf, u8)> {
    let mut files = Vec::new();
    let mut t = [std::time::Duration::ZERO; 3];
    for (n, (name, value)) in values.iter().enumerate() {
        for p in 2..=5u8 {
            let t0 = std::time::Instant::now();
            let bytes = pickle::encode(value, p).unwrap_or_else(|e| panic!("{name} p{p}: {e}"));
            let t1 = std::time::Instant::now();
            let back = pickle::decode_with(&bytes, &pickle::Limits::default().max_depth(1 << 20))
                .unwrap_or_else(|e| panic!("{name} p{p}: our output does not decode: {e}"));
            let t2 = std::time::Instant::now();
            t[0] += t1 - t0;
            t[1] += t2 - t1;
            if sharing_exact {
                assert!(back.same_as(value), "{name} p{p}: decoding our bytes gives another graph");
            } else {
                assert!(same_tree(&back, value), "{name} p{p}: decoding our bytes gives another value");
            }
            t[2] += t2.elapsed();
            let path = dir.join(format!("{n}.p{p}.pkl"));
            std::fs::write(&path, &bytes).unwrap();
            files.push((path, p));
        }
    }
    let total: u64 = files.iter().map(|(f, _)| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0)).sum();
    eprintln!("{total} bytes; encode {:?}, decode {:?}, compare {:?}", t[0], t[1], t[2]);
    files
}

/// One python3 process: for each file, `pickle.dumps(pickle.loads(b), p) == b`.
fn cpython_repickles(py: &str, dir: &Path, files: &[(PathBuf, u8)], names: &[String]) {
    let list = dir.join("files.txt");
    let text: String = files.iter().map(|(f, p)| format!("{p} {}\n", f.display())).collect();
    std::fs::write(&list, text).unwrap();
    let script = r#"
import pickle, pickletools, sys, io
sys.setrecursionlimit(100000)
bad = 0
for line in open(sys.argv[1]):
    p, path = line.rstrip('\n').split(' ', 1)
    ours = open(path, 'rb').read()
    again = pickle.dumps(pickle.loads(ours), protocol=int(p))
    if again != ours:
        bad += 1
        at = next((i for i, (a, b) in enumerate(zip(again, ours)) if a != b), min(len(again), len(ours)))
        print(f'{path}: CPython differs at byte {at} (ours {len(ours)} bytes, CPython {len(again)})')
        if bad == 1 and len(ours) < 4000:
            for label, b in (('ours', ours), ('cpython', again)):
                out = io.StringIO(); pickletools.dis(b, out); print(label); print(out.getvalue())
print(f'{bad} mismatches')
sys.exit(1 if bad else 0)
"#;
    let out = Command::new(py).arg("-c").arg(script).arg(&list).output().unwrap();
    assert!(
        out.status.success(),
        "CPython re-pickles differently (case names by index: {names:?}):\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn random_values_match_cpython() {
    let start = std::time::Instant::now();
    let seeds: u64 = std::env::var("ENCODE_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let mut values = Vec::new();
    for seed in 0..seeds {
        let mut g = Gen::new(seed);
        let depth = 1 + (seed % 5) as u32;
        let root = g.value(depth);
        values.push((format!("seed {seed}"), g.finish(root)));
    }
    // The generator must reach the interesting sizes.
    let mut saw = (false, false, false);
    for (_, v) in &values {
        for n in v.nodes() {
            match n {
                Node::List(x) if x.len() >= 1000 => saw.0 = true,
                Node::Str(s) if s.as_surrogatepass().len() >= 65536 => saw.1 = true,
                Node::Str(s) if s.has_surrogates() => saw.2 = true,
                _ => {}
            }
        }
    }
    assert_eq!(saw, (true, true, true), "generator coverage (big list, 64 KiB str, surrogates)");
    let nodes: usize = values.iter().map(|(_, v)| v.len()).sum();
    eprintln!("generated {seeds} values, {nodes} nodes, in {:?}", start.elapsed());
    let tmp = tempfile::tempdir().unwrap();
    let files = write_cases(tmp.path(), &values, false);
    eprintln!("encoded and decoded back by {:?}", start.elapsed());
    let Some(py) = python3() else { return };
    let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
    cpython_repickles(py, tmp.path(), &files, &names);
    eprintln!("checked by CPython by {:?}", start.elapsed());
}

#[test]
fn shared_and_cyclic_values_match_cpython() {
    let values: Vec<(String, Value)> = hand_made().into_iter().map(|(n, v)| (n.to_string(), v)).collect();
    let tmp = tempfile::tempdir().unwrap();
    let files = write_cases(tmp.path(), &values, true);
    let Some(py) = python3() else { return };
    let names: Vec<String> = values.iter().map(|(n, _)| n.clone()).collect();
    cpython_repickles(py, tmp.path(), &files, &names);
}

#[test]
fn cpython_examples_from_the_spec() {
    // Exact bytes of CPython 3.11's pickle.dumps.
    let mut v = Value::new(Node::None);
    let a = v.push(Node::Bytes(b"a".to_vec()));
    let b = v.push(Node::Bytes(b"b".to_vec()));
    let root = list(&mut v, vec![a, b]);
    v.set_root(root);
    assert_eq!(
        pickle::encode(&v, 2).unwrap(),
        b"\x80\x02]q\x00(c_codecs\nencode\nq\x01X\x01\x00\x00\x00aq\x02X\x06\x00\x00\x00latin1q\x03\x86q\x04Rq\x05h\x01X\x01\x00\x00\x00bq\x06h\x03\x86q\x07Rq\x08e."
    );
    assert_eq!(pickle::encode(&Value::new(Node::None), 4).unwrap(), b"\x80\x04N.");
    let big = Value::new(Node::Str("x".repeat(100_000).into()));
    let bytes = pickle::encode(&big, 4).unwrap();
    assert_eq!(&bytes[..7], b"\x80\x04X\xa0\x86\x01\x00");
    assert_eq!(&bytes[bytes.len() - 2..], b"\x94.");
}

// ----- globals, persistent ids, extension codes, out-of-band buffers -----

fn global(v: &mut Value, module: &str, name: &str) -> NodeId {
    v.push(Node::Global(Box::new(pickle::Global { module: module.into(), name: name.into() })))
}

#[test]
fn globals_and_special_nodes_match_cpython() {
    // (Python expression, value); the expression is evaluated with `nested_mod`
    // (classes Outer, Outer.Inner, Outer.Inner.Deep) importable.
    let mut cases: Vec<(&str, Value)> = Vec::new();
    for (module, name) in [
        ("builtins", "set"),
        ("builtins", "str"),
        ("copyreg", "_reconstructor"),
        ("collections", "OrderedDict"),
        ("datetime", "datetime"),
        ("nested_mod", "Outer"),
        ("nested_mod", "Outer.Inner"),
        ("nested_mod", "Outer.Inner.Deep"),
    ] {
        let mut v = Value::new(Node::None);
        let g = global(&mut v, module, name);
        v.set_root(g);
        let expr: &'static str = Box::leak(format!("importlib.import_module('{module}').{name}").into_boxed_str());
        cases.push((expr, v));
    }
    // Sharing: parents written once, the pickler's own globals reused.
    let mut v = Value::new(Node::None);
    let a = global(&mut v, "nested_mod", "Outer.Inner.Deep");
    let b = global(&mut v, "nested_mod", "Outer");
    let c = global(&mut v, "nested_mod", "Outer.Inner");
    let d = global(&mut v, "nested_mod", "Outer.Inner"); // another node, the same class
    let s = global(&mut v, "builtins", "set");
    let one = v.push(Node::Int(1));
    let set = v.push(Node::Set(vec![one]));
    let by = v.push(Node::Bytes(b"q".to_vec()));
    let bt = global(&mut v, "builtins", "bytes");
    let e = v.push(Node::Bytes(Vec::new()));
    let root = v.push(Node::List(vec![a, b, c, d, s, set, by, bt, e]));
    v.set_root(root);
    cases.push((
        "[nested_mod.Outer.Inner.Deep, nested_mod.Outer, nested_mod.Outer.Inner, nested_mod.Outer.Inner, set, {1}, b'q', bytes, b'']",
        v,
    ));
    // Persistent ids: pickled by `P` below, whose persistent_id returns `Ref.pid`.
    let mut v = Value::new(Node::None);
    let t = v.push(Node::Str("table".into()));
    let n = v.push(Node::Int(7));
    let pid_t = v.push(Node::Tuple(vec![t, n]));
    let p1 = v.push(Node::PersistentId(pid_t));
    let s = v.push(Node::Str("abc".into()));
    let p2 = v.push(Node::PersistentId(s));
    let root = v.push(Node::List(vec![p1, p2]));
    v.set_root(root);
    cases.push(("[Ref(('table', 7)), Ref('abc')]", v));
    // Extension codes registered below.
    let mut v = Value::new(Node::None);
    let items = [1, 300, 70_000].map(|c| v.push(Node::Extension(c))).to_vec();
    let root = v.push(Node::List(items));
    v.set_root(root);
    cases.push(("[nested_mod.Outer, nested_mod.Outer.Inner, nested_mod.Outer.Inner.Deep]", v));

    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("nested_mod.py"),
        "class Outer:\n    class Inner:\n        class Deep:\n            pass\n",
    )
    .unwrap();
    let mut script = String::from(
        r#"
import copyreg, importlib, io, pickle, pickletools, sys
sys.path.insert(0, sys.argv[1])
import nested_mod
class Ref:
    def __init__(self, pid): self.pid = pid
class P(pickle.Pickler):
    def persistent_id(self, obj): return obj.pid if isinstance(obj, Ref) else None
bad = 0
def check(n, expr, p, ext=False):
    global bad
    ours = open(f'{sys.argv[1]}/{n}.p{p}.pkl', 'rb').read()
    if ext:
        for code, name in ((1, 'Outer'), (300, 'Outer.Inner'), (70000, 'Outer.Inner.Deep')):
            copyreg.add_extension('nested_mod', name, code)
    out = io.BytesIO()
    P(out, protocol=p).dump(eval(expr))
    if ext:
        copyreg.clear_extension_cache()
        for code, name in ((1, 'Outer'), (300, 'Outer.Inner'), (70000, 'Outer.Inner.Deep')):
            copyreg.remove_extension('nested_mod', name, code)
    if out.getvalue() != ours:
        bad += 1
        print(f'case {n} p{p} {expr}:')
        for label, b in (('ours', ours), ('cpython', out.getvalue())):
            s = io.StringIO(); pickletools.dis(b, s); print(label); print(s.getvalue())
"#,
    );
    for (n, (expr, value)) in cases.iter().enumerate() {
        for p in 2..=5u8 {
            let bytes = pickle::encode(value, p).unwrap_or_else(|e| panic!("{expr} p{p}: {e}"));
            let back = pickle::decode(&bytes).unwrap_or_else(|e| panic!("{expr} p{p}: {e}"));
            let dotted = value.nodes().iter().any(|n| matches!(n, Node::Global(g) if g.name.contains('.')));
            if p >= 4 || !dotted {
                // (Before protocol 4 a nested name comes back as a getattr call. Two
                // global nodes naming one class come back as one node.)
                assert!(same_tree(&back, value), "{expr} p{p}: decodes to {back}");
            }
            std::fs::write(tmp.path().join(format!("{n}.p{p}.pkl")), bytes).unwrap();
            let ext = if expr.starts_with("[nested_mod.Outer, ") { ", True" } else { "" };
            script.push_str(&format!("check({n}, {expr:?}, {p}{ext})\n"));
        }
    }
    script.push_str("print(f'{bad} mismatches')\nsys.exit(1 if bad else 0)\n");
    let Some(py) = python3() else { return };
    let out = Command::new(py).arg("-c").arg(&script).arg(tmp.path()).output().unwrap();
    assert!(
        out.status.success(),
        "CPython pickles differently:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn out_of_band_buffers_match_cpython() {
    let mut v = Value::new(Node::None);
    let a = v.push(Node::Buffer { index: 0, readonly: true });
    let b = v.push(Node::Buffer { index: 1, readonly: false });
    let root = v.push(Node::List(vec![a, b]));
    v.set_root(root);
    let bytes = pickle::encode(&v, 5).unwrap();
    for p in 2..=4 {
        assert!(matches!(pickle::encode(&v, p), Err(pickleshelf_pickle::Error::Encode(m)) if m.contains("protocol 5")));
    }
    let Some(py) = python3() else { return };
    let script = "import pickle, sys\n\
                  b = pickle.dumps([pickle.PickleBuffer(b'ro'), pickle.PickleBuffer(bytearray(b'rw'))], 5, buffer_callback=lambda b: False)\n\
                  sys.stdout.write(b.hex())";
    let out = Command::new(py).arg("-c").arg(script).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(String::from_utf8_lossy(&out.stdout), hex);
}

#[test]
fn instantiated_objects_load_in_cpython() {
    // INST/OBJ objects (protocols 0-1) are written back as MARK cls args... OBJ:
    // OrderedDict() then ['a'] = [1], and fractions.Fraction('3/4') built from an arg.
    use pickleshelf_pickle::{Construct, Object, ObjectOp};
    let mut v = Value::new(Node::None);
    let od = global(&mut v, "collections", "OrderedDict");
    let k = v.push(Node::Str("a".into()));
    let one = v.push(Node::Int(1));
    let l = v.push(Node::List(vec![one]));
    let obj = v.push(Node::Object(Box::new(Object {
        construct: Construct::Instantiate { cls: od, args: vec![] },
        ops: vec![ObjectOp::SetItem(k, l)],
    })));
    let fr = global(&mut v, "fractions", "Fraction");
    let arg = v.push(Node::Str("3/4".into()));
    let frac = v.push(Node::Object(Box::new(Object {
        construct: Construct::Instantiate { cls: fr, args: vec![arg] },
        ops: vec![],
    })));
    let root = v.push(Node::List(vec![obj, frac, obj]));
    v.set_root(root);
    let Some(py) = python3() else { return };
    for p in 2..=5 {
        let bytes = pickle::encode(&v, p).unwrap();
        let back = pickle::decode(&bytes).unwrap();
        assert!(back.same_as(&v), "p{p}");
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let script = format!(
            "import pickle, collections, fractions\n\
             v = pickle.loads(bytes.fromhex('{hex}'))\n\
             assert v == [collections.OrderedDict(a=[1]), fractions.Fraction(3, 4), v[0]], v\n\
             assert type(v[0]) is collections.OrderedDict and v[0] is v[2]\n"
        );
        let out = Command::new(py).arg("-c").arg(&script).output().unwrap();
        assert!(out.status.success(), "p{p}: {}", String::from_utf8_lossy(&out.stderr));
    }
}
