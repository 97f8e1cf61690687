//! Fixtures shared by the test files (`mod common;` in each): the conformance corpus,
//! python3, and a seedable generator. The store's and the command-line tool's tests
//! include this file too (`tests/common/mod.rs`, `crates/cli/tests/common/mod.rs`), so
//! each is defined once.
//!
//! The corpus and python3 are looked for, not required: a test that needs one skips
//! (with a message) when it is missing, and fails instead when `CI` is set.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

/// The repository (the workspace root): the nearest folder above the crate that holds
/// `Cargo.lock`, whichever crate's tests include this file.
pub fn repo_root() -> PathBuf {
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    crate_dir.ancestors().find(|d| d.join("Cargo.lock").is_file()).unwrap_or(crate_dir).to_path_buf()
}

/// The conformance corpus CPython wrote: `../shared/conformance` beside the repository,
/// or `PICKLESHELF_CONFORMANCE`. `None` (skip) when it is absent, unless `CI` is set.
pub fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("PICKLESHELF_CONFORMANCE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/conformance"));
    if dir.join("manifest.json").is_file() {
        return Some(dir);
    }
    assert!(std::env::var_os("CI").is_none(), "conformance corpus missing at {} (CI is set)", dir.display());
    eprintln!("skipping: conformance corpus not found at {}", dir.display());
    None
}

/// The corpus's `.pkl` files (`cases/`), sorted by name: (file name, bytes). `None`
/// (skip) as for [`corpus`].
pub fn corpus_pickles() -> Option<Vec<(String, Vec<u8>)>> {
    let dir = corpus()?.join("cases");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        if path.extension().is_some_and(|x| x == "pkl") {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            out.push((name, std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))));
        }
    }
    out.sort();
    Some(out)
}

/// `"python3"` when it runs and has `pickle`; `None` (skip) when it does not, unless
/// `CI` is set.
pub fn python3() -> Option<&'static str> {
    let ok = Command::new("python3").args(["-c", "import pickle"]).output().is_ok_and(|o| o.status.success());
    if ok {
        return Some("python3");
    }
    assert!(std::env::var_os("CI").is_none(), "python3 is required when CI is set");
    eprintln!("skipping: python3 not found");
    None
}

/// SplitMix64: small, seedable, good enough to pick operations, sizes and bytes.
pub struct Rng(pub u64);

impl Rng {
    /// A generator whose state is `seed` mixed with a constant, so that seed 0 is as
    /// good as any.
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `0..n`, as an index (0 when `n` is 0).
    pub fn index(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// True with probability 1 / `n`.
    pub fn one_in(&mut self, n: u64) -> bool {
        self.next().is_multiple_of(n.max(1))
    }

    /// One of `items`, which must not be empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.index(items.len())]
    }

    /// Uniform in `[0, 1)`, with 53 random bits.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One pickle for [`cpython_compare`]: a name, the bytes, and what we decoded — the
/// tagged JSON of the value, or `Err` with our error message.
pub struct OracleCase {
    pub name: String,
    pub pickle: Vec<u8>,
    pub ours: Result<String, String>,
}

/// Has CPython load each case (`pickle.loads`) and compare: when CPython raises, we must
/// have failed too; when it loads, we must have decoded, and its value must match our
/// tagged JSON (`compare()` of the corpus's `check_python_loads.py`: types, values, dict
/// order, sets as multisets, sharing). Returns the mismatches, one line each. `None`
/// (skip) when python3 or the corpus is missing, unless `CI` is set.
pub fn cpython_compare(cases: &[OracleCase]) -> Option<Vec<String>> {
    use std::io::Write;
    let dir = corpus()?;
    let py = python3()?;
    const DRIVER: &str = r#"
import sys, json, pickle
sys.path.insert(0, sys.argv[1])
sys.setrecursionlimit(100000)
import check_python_loads as cpl
from check_python_loads import compare

# Our object nodes carry a python_repr only for the types the codec knows; compare the
# others by type (and a global by the class it names).
def _fill(node):
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, list):
            stack.extend(n)
        elif isinstance(n, dict):
            ob = n.get("object")
            if isinstance(ob, dict) and "python_repr" not in ob:
                if ob.get("kind") == "global":
                    m, _, q = ob["global"].rpartition(".")
                    ob["python_repr"] = "<class '%s'>" % (q if m == "builtins" else ob["global"])
                else:
                    ob["python_repr"] = None
            stack.extend(n.values())
    return node

_plain = cpl._Comparer.cmp_plain
def _cmp_plain(self, o, node, path):
    if cpl._tag(node) == "object" and node["object"].get("python_repr") is None:
        t = type(o)
        if (t.__module__, t.__qualname__) != (node["object"]["module"], node["object"]["name"]):
            return self.err(path, "expected an object of type %s.%s, got %r" % (node["object"]["module"], node["object"]["name"], o))
        return True
    return _plain(self, o, node, path)
cpl._Comparer.cmp_plain = _cmp_plain
_json_key = cpl._Comparer.json_key
def json_key(self, node, depth=0):
    if cpl._tag(node) == "object" and node["object"].get("python_repr") is None:
        return ("object", node["object"]["module"], node["object"]["name"])
    return _json_key(self, node, depth)
cpl._Comparer.json_key = json_key
_py_key = cpl._Comparer.py_key
def py_key(self, o):
    k = _py_key(self, o)
    if k[0] == "object" and not isinstance(o, type):
        return k[:3]
    return k
cpl._Comparer.py_key = py_key
out = []
for line in sys.stdin:
    c = json.loads(line)
    try:
        v = pickle.loads(bytes.fromhex(c["pickle"]))
    except Exception as e:
        if c["ours"] is not None:
            out.append("%s: CPython raises %s: %s; we decoded %s" % (c["name"], type(e).__name__, e, c["ours"]))
        continue
    if c["ours"] is None:
        out.append("%s: CPython loads %r; we fail: %s" % (c["name"], v, c["error"]))
        continue
    errs = compare(v, _fill(json.loads(c["ours"])))
    if errs:
        out.append("%s: %s; CPython gives %r; we give %s" % (c["name"], "; ".join(errs), v, c["ours"]))
print(json.dumps(out))
"#;
    let mut input = String::new();
    for c in cases {
        let hex: String = c.pickle.iter().map(|b| format!("{b:02x}")).collect();
        let line = serde_json::json!({
            "name": c.name,
            "pickle": hex,
            "ours": c.ours.as_ref().ok(),
            "error": c.ours.as_ref().err(),
        });
        input.push_str(&line.to_string());
        input.push('\n');
    }
    let mut child = Command::new(py)
        .arg("-c")
        .arg(DRIVER)
        .arg(&dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("python3: {e}"));
    let mut stdin = child.stdin.take().unwrap_or_else(|| panic!("python3 stdin"));
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("python3: {e}"));
    assert!(out.status.success(), "the CPython driver failed: {}", String::from_utf8_lossy(&out.stderr));
    writer.join().unwrap_or_else(|_| panic!("writer")).unwrap_or_else(|e| panic!("python3 stdin: {e}"));
    let list: Vec<String> = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("driver output {e}: {}", String::from_utf8_lossy(&out.stdout)));
    Some(list)
}
