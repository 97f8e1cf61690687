//! Interop with real CPython: Python writes a `shelve` holding every value of the shared
//! conformance corpus (`../shared/conformance`, protocols 2–5), `pickleshelf import`
//! adopts it, `get --tagged` equals each case's tagged JSON, `pickleshelf export` hands it
//! back, and Python's `shelve.open` reads the same values (and the same bytes). The same
//! through `--dir`, and through the `dbm.sqlite3` format.
//!
//! JSON comparison is that of `crates/pickle/tests/conformance_decode.rs`: trees equal, floats by
//! value, `object` nodes by `module` and `name` only. Python compares values with the
//! corpus's `check_python_loads.compare` (identity of shared containers included).
//!
//! Without `python3` or the corpus the tests skip with a message; with `CI` set they
//! fail instead.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;

use common::cli::{bin, s};
use common::{corpus, python3};
use serde_json::Value as Json;

/// One key of the shelve: a corpus file, and the JSON its value must print as.
struct Entry {
    key: String,
    pickle: PathBuf,
    json: PathBuf,
}

/// Every corpus file of protocols 2–5, keyed `<case>.p<N>`, plus a few keys that
/// exercise the `.dir` quoting (quotes, backslashes, control and non-ASCII characters).
fn entries(corpus: &Path) -> Vec<Entry> {
    let text = fs::read_to_string(corpus.join("manifest.json")).unwrap_or_else(|e| panic!("{e}"));
    let manifest: Json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}"));
    let mut out = Vec::new();
    for case in manifest["cases"].as_array().unwrap_or_else(|| panic!("no cases")) {
        let name = case["name"].as_str().unwrap_or_default();
        let json = corpus.join(case["json"].as_str().unwrap_or_default());
        for f in case["files"].as_array().unwrap_or_else(|| panic!("no files")) {
            let p = f["protocol"].as_u64().unwrap_or(99);
            if (2..=5).contains(&p) {
                let pickle = corpus.join(f["path"].as_str().unwrap_or_default());
                out.push(Entry { key: format!("{name}.p{p}"), pickle, json: json.clone() });
            }
        }
    }
    assert!(out.len() >= 460, "only {} corpus files of protocols 2-5", out.len());
    let program = out.iter().find(|e| e.key == "program_state.p4").map(|e| (e.pickle.clone(), e.json.clone()));
    let (pickle, json) = program.unwrap_or_else(|| panic!("no program_state.p4"));
    for key in [
        "it's",
        "say \"hi\"",
        "both ' and \"",
        "back\\slash",
        "tab\tnew\nline\r",
        "ключ é 日本 🎉",
        "\u{7f}\u{80}\u{a0}\u{ad}",
    ] {
        out.push(Entry { key: key.into(), pickle: pickle.clone(), json: json.clone() });
    }
    out
}

/// Writes `[[key, pickle path], ...]` for the Python scripts.
fn pairs_file(dir: &Path, entries: &[Entry]) -> PathBuf {
    let pairs: Vec<Json> = entries.iter().map(|e| serde_json::json!([e.key, s(&e.pickle)])).collect();
    let path = dir.join("pairs.json");
    fs::write(&path, Json::Array(pairs).to_string()).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Runs a Python script (no bytecode written into the corpus); panics with its output
/// when it fails.
fn python(script: &str, args: &[String]) {
    let out = StdCommand::new("python3")
        .arg("-B")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        out.status.success(),
        "python failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Python: build a `dbm.dumb` shelve (a real `shelve` on a machine without gdbm) with
/// each corpus file's bytes, exactly, under its key.
const WRITE_DUMB: &str = r#"
import sys
sys.modules["_gdbm"] = None   # as on a machine without gdbm / ndbm
sys.modules["_dbm"] = None
import dbm, dbm.dumb, json, pickle, shelve
corpus, pairs_file, out = sys.argv[1:4]
sys.path.insert(0, corpus)
sys.setrecursionlimit(20000)
pairs = json.load(open(pairs_file, encoding="utf-8"))
db = dbm.dumb.open(out, "c")
for key, path in pairs:
    raw = open(path, "rb").read()
    pickle.loads(raw)                # a value Python itself reads
    db[key.encode("utf-8")] = raw    # stored byte for byte, as shelve would with these bytes
db.close()
assert dbm.whichdb(out) == "dbm.dumb"
with shelve.open(out, "r") as s:
    assert len(s) == len(pairs), (len(s), len(pairs))
"#;

/// Python: an export read back with stock `shelve.open` (and the raw dbm), compared
/// with the corpus files: same keys, same bytes, same values.
const CHECK_DUMB: &str = r#"
import sys
sys.modules["_gdbm"] = None
sys.modules["_dbm"] = None
import dbm, dbm.dumb, json, os, pickle, shelve
corpus, pairs_file, out, scratch = sys.argv[1:5]
sys.path.insert(0, corpus)
import check_python_loads as C
pairs = json.load(open(pairs_file, encoding="utf-8"))
assert dbm.whichdb(out) == "dbm.dumb", dbm.whichdb(out)
failures = []
raw = dbm.dumb.open(out, "r")
with shelve.open(out) as s:
    if sorted(s.keys()) != sorted(k for k, _ in pairs):
        failures.append("keys differ")
    for key, path in pairs:
        orig = open(path, "rb").read()
        if raw[key.encode("utf-8")] != orig:
            failures.append("%r: bytes differ" % key)
        errors = C.compare(s[key], C.to_tagged(pickle.loads(orig)))
        if errors:
            failures.append("%r: %s" % (key, errors[:3]))
raw.close()
# CPython's dbm.dumb, given the same items in the same (key) order, writes the very same files.
ref = os.path.join(scratch, "python-made")
db = dbm.dumb.open(ref, "n")
for key, path in sorted(pairs, key=lambda kp: kp[0].encode("utf-8")):
    db[key.encode("utf-8")] = open(path, "rb").read()
db.close()
for ext in (".dat", ".dir"):
    if open(ref + ext, "rb").read() != open(out + ext, "rb").read():
        failures.append("%s differs from what dbm.dumb writes" % ext)
print("\n".join(failures))
sys.exit(1 if failures else 0)
"#;

/// Python: an export directory made by hand (each file the corpus bytes, a manifest
/// with only `key` and `file`).
const WRITE_DIR: &str = r#"
import json, os, sys
corpus, pairs_file, out = sys.argv[1:4]
pairs = json.load(open(pairs_file, encoding="utf-8"))
os.makedirs(out)
entries = []
for i, (key, path) in enumerate(pairs):
    name = "value%d.pkl" % i
    with open(os.path.join(out, name), "wb") as f:
        f.write(open(path, "rb").read())
    entries.append({"key": key, "file": name})
with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
    json.dump({"format": "pickleshelf-dir/1", "entries": entries}, f, ensure_ascii=False)
"#;

/// Python: an export directory read back: the manifest, each file's bytes and value.
const CHECK_DIR: &str = r#"
import hashlib, json, os, pickle, sys
corpus, pairs_file, out = sys.argv[1:4]
sys.path.insert(0, corpus)
import check_python_loads as C
pairs = dict(json.load(open(pairs_file, encoding="utf-8")))
manifest = json.load(open(os.path.join(out, "manifest.json"), encoding="utf-8"))
failures = []
assert manifest["format"] == "pickleshelf-dir/1" and manifest["keys"] == len(manifest["entries"])
if sorted(e["key"] for e in manifest["entries"]) != sorted(pairs):
    failures.append("keys differ")
for e in manifest["entries"]:
    data = open(os.path.join(out, e["file"]), "rb").read()
    orig = open(pairs[e["key"]], "rb").read()
    if data != orig or e["size"] != len(orig):
        failures.append("%r: bytes differ" % e["key"])
    errors = C.compare(pickle.load(open(os.path.join(out, e["file"]), "rb")), C.to_tagged(pickle.loads(orig)))
    if errors:
        failures.append("%r: %s" % (e["key"], errors[:3]))
print("\n".join(failures))
sys.exit(1 if failures else 0)
"#;

/// Python: a `dbm.sqlite3` shelve — with Python 3.13's module when there is one,
/// otherwise with its exact statements (`Lib/dbm/sqlite3.py`) through `sqlite3`.
const WRITE_SQLITE: &str = r#"
import json, sqlite3, sys
corpus, pairs_file, out = sys.argv[1:4]
pairs = json.load(open(pairs_file, encoding="utf-8"))
try:
    import dbm.sqlite3
    db = dbm.sqlite3.open(out, "c")
    for key, path in pairs:
        db[key.encode("utf-8")] = open(path, "rb").read()
    db.close()
except ImportError:
    cx = sqlite3.connect(out, isolation_level=None)
    cx.execute("PRAGMA journal_mode = wal")
    cx.execute("CREATE TABLE IF NOT EXISTS Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)")
    for key, path in pairs:
        cx.execute("REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))",
                   (key.encode("utf-8"), open(path, "rb").read()))
    cx.close()
"#;

/// Python: a `dbm.sqlite3` export read back (with `shelve` on Python 3.13+, otherwise
/// with `dbm.sqlite3`'s own lookup statement).
const CHECK_SQLITE: &str = r#"
import json, pickle, sqlite3, sys
corpus, pairs_file, out = sys.argv[1:4]
sys.path.insert(0, corpus)
import check_python_loads as C
pairs = json.load(open(pairs_file, encoding="utf-8"))
failures = []
try:
    import dbm.sqlite3, shelve
    s = shelve.open(out, "r")
    get_raw = lambda key: s.dict[key.encode("utf-8")]
    keys = sorted(s.keys())
except ImportError:
    cx = sqlite3.connect("file:%s?mode=ro" % out, uri=True)
    def get_raw(key):
        row = cx.execute("SELECT value FROM Dict WHERE key = CAST(? AS BLOB)", (key.encode("utf-8"),)).fetchone()
        return row[0]
    keys = sorted(k.decode("utf-8") for (k,) in cx.execute("SELECT key FROM Dict"))
if keys != sorted(k for k, _ in pairs):
    failures.append("keys differ")
for key, path in pairs:
    orig = open(path, "rb").read()
    data = get_raw(key)
    if data != orig:
        failures.append("%r: bytes differ" % key)
    errors = C.compare(pickle.loads(data), C.to_tagged(pickle.loads(orig)))
    if errors:
        failures.append("%r: %s" % (key, errors[:3]))
print("\n".join(failures))
sys.exit(1 if failures else 0)
"#;

fn run_ok(args: &[&str]) -> String {
    let out = bin().args(args).assert().success().stderr("").get_output().stdout.clone();
    String::from_utf8(out).unwrap_or_else(|e| panic!("{e}"))
}

/// `get --tagged` of every key against its case's JSON; every difference is collected.
fn check_json(store: &Path, entries: &[Entry]) {
    let st = s(store);
    let mut failures = Vec::new();
    for e in entries {
        let out = bin().args(["get", &st, &e.key, "--tagged"]).output().unwrap_or_else(|err| panic!("{err}"));
        if !out.status.success() {
            failures.push(format!("{:?}: exit {:?}: {}", e.key, out.status, String::from_utf8_lossy(&out.stderr)));
            continue;
        }
        let got = String::from_utf8_lossy(&out.stdout).into_owned();
        let expected = fs::read_to_string(&e.json).unwrap_or_else(|err| panic!("{err}"));
        if got.trim_end() == expected.trim_end() {
            continue;
        }
        if let Some(diff) = tree_difference(&expected, &got) {
            failures.push(format!("{:?}: {diff}", e.key));
        }
    }
    assert!(failures.is_empty(), "{} of {} keys differ:\n{}", failures.len(), entries.len(), failures.join("\n"));
}

#[test]
fn a_python_shelve_round_trips_through_pickleshelf() {
    let Some(corpus) = corpus() else { return };
    if python3().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let entries = entries(&corpus);
    let pairs = s(&pairs_file(dir, &entries));
    let c = s(&corpus);

    // Python writes a dbm.dumb shelve; pickleshelf adopts it.
    let py_shelve = s(&dir.join("from-python"));
    python(WRITE_DUMB, &[c.clone(), pairs.clone(), py_shelve.clone()]);
    let store = dir.join("state.db");
    let said = run_ok(&["import", &s(&store), "--shelve", &py_shelve]);
    assert!(said.starts_with(&format!("imported {} keys", entries.len())), "{said}");
    check_json(&store, &entries);
    let listing = run_ok(&["ls", &s(&store), "--long"]);

    // pickleshelf hands it back; Python's shelve reads the same bytes and values.
    let back = s(&dir.join("to-python"));
    run_ok(&["export", &s(&store), "--shelve", &back]);
    python(CHECK_DUMB, &[c.clone(), pairs.clone(), back, s(dir)]);

    // dbm.sqlite3, both ways: the store is the same, byte for byte.
    let py_sqlite = s(&dir.join("from-python.sqlite"));
    python(WRITE_SQLITE, &[c.clone(), pairs.clone(), py_sqlite.clone()]);
    let store2 = dir.join("state2.db");
    run_ok(&["import", &s(&store2), "--shelve", &py_sqlite]);
    assert_eq!(run_ok(&["ls", &s(&store2), "--long"]), listing);
    let back = s(&dir.join("to-python.sqlite"));
    run_ok(&["export", &s(&store2), "--shelve", &back, "--dbm", "sqlite3"]);
    python(CHECK_SQLITE, &[c, pairs, back]);
}

#[test]
fn an_export_directory_round_trips_through_pickleshelf() {
    let Some(corpus) = corpus() else { return };
    if python3().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
    let dir = tmp.path();
    let entries = entries(&corpus);
    let pairs = s(&pairs_file(dir, &entries));
    let c = s(&corpus);

    let py_dir = s(&dir.join("from-python"));
    python(WRITE_DIR, &[c.clone(), pairs.clone(), py_dir.clone()]);
    let store = dir.join("state.db");
    let said = run_ok(&["import", &s(&store), "--dir", &py_dir]);
    assert!(said.starts_with(&format!("imported {} keys", entries.len())), "{said}");
    check_json(&store, &entries);

    let back = s(&dir.join("to-python"));
    run_ok(&["export", &s(&store), "--dir", &back]);
    python(CHECK_DIR, &[c, pairs, back]);
}

// ----- comparing tagged JSON trees (as crates/pickle/tests/conformance_decode.rs does) -----

/// Where two JSON texts differ as tagged-JSON trees, or `None` when they are equal:
/// floats by value (NaN matches NaN, -0.0 keeps its sign), `object` nodes by `module`
/// and `name` only.
fn tree_difference(expected: &str, got: &str) -> Option<String> {
    let (expected, got) = (expected.to_owned(), got.to_owned());
    // The corpus nests up to 1,001 levels: parse without serde_json's depth limit, on a
    // thread with room for the recursion of parsing and dropping.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(move || {
            let parse = |t: &str| {
                let mut de = serde_json::Deserializer::from_str(t);
                de.disable_recursion_limit();
                serde::Deserialize::deserialize(&mut de).map_err(|e| e.to_string())
            };
            let a: Json = match parse(&expected) {
                Ok(j) => j,
                Err(e) => return Some(format!("expected JSON unreadable: {e}")),
            };
            let b: Json = match parse(&got) {
                Ok(j) => j,
                Err(e) => return Some(format!("output is not JSON: {e}")),
            };
            let mut work = vec![(&a, &b, String::from("$"), false)];
            while let Some((x, y, path, object)) = work.pop() {
                match (x, y) {
                    (Json::Object(ma), Json::Object(mb)) => {
                        let keys = |m: &serde_json::Map<String, Json>| {
                            let mut k: Vec<&String> =
                                m.keys().filter(|k| !object || *k == "module" || *k == "name").collect();
                            k.sort();
                            k.into_iter().cloned().collect::<Vec<String>>()
                        };
                        if keys(ma) != keys(mb) {
                            return Some(format!("at {path}: keys {:?} expected, got {:?}", keys(ma), keys(mb)));
                        }
                        for k in keys(ma) {
                            let (va, vb) = (&ma[&k], &mb[&k]);
                            if k == "float" {
                                let f = |v: &Json| v.as_str().and_then(|t| t.parse::<f64>().ok());
                                match (f(va), f(vb)) {
                                    (Some(p), Some(q)) if (p.is_nan() && q.is_nan()) || p.to_bits() == q.to_bits() => {}
                                    _ => return Some(format!("at {path}: float {va} expected, got {vb}")),
                                }
                                continue;
                            }
                            work.push((va, vb, format!("{path}.{k}"), k == "object"));
                        }
                    }
                    (Json::Array(ia), Json::Array(ib)) => {
                        if ia.len() != ib.len() {
                            return Some(format!("at {path}: {} items expected, got {}", ia.len(), ib.len()));
                        }
                        for (i, (p, q)) in ia.iter().zip(ib).enumerate().rev() {
                            work.push((p, q, format!("{path}[{i}]"), false));
                        }
                    }
                    (p, q) if p == q => {}
                    (p, q) => return Some(format!("at {path}: {p} expected, got {q}")),
                }
            }
            None
        })
        .and_then(|h| h.join().map_err(|_| std::io::Error::other("comparison panicked")))
        .unwrap_or_else(|e| Some(e.to_string()))
}
