//! Importing the `shelve` formats tied to C libraries, `dbm.gnu` and `dbm.ndbm`, written
//! here by CPython itself, through a Python that streams them (the store then holds
//! Python's very bytes); and `dbm.sqlite3`, read without leaving a file beside it. Bad
//! input on each of these paths — a damaged file, a key that is not UTF-8, a value that
//! is not a pickle, no usable Python, a shelve another program has open — is one line on
//! stderr, exit status 2, and the store unchanged.
//!
//! Needs a Python with `dbm.gnu` and `dbm.ndbm` (`python3` or `/usr/bin/python3`; on
//! Debian the package python3-gdbm, which `scripts/setup-python-dbm.sh` installs): the
//! tests skip without one, and fail when `CI` is set.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::*;

/// The first of python3 and /usr/bin/python3 that has `dbm.gnu` and `dbm.ndbm`.
fn python_with_dbm() -> Option<&'static str> {
    for python in ["python3", "/usr/bin/python3"] {
        let ok = Command::new(python).args(["-c", "import dbm.gnu, dbm.ndbm"]).output();
        if ok.is_ok_and(|o| o.status.success()) {
            return Some(python);
        }
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "no Python with dbm.gnu and dbm.ndbm (CI is set): run scripts/setup-python-dbm.sh"
    );
    eprintln!("skipping: no Python with dbm.gnu and dbm.ndbm (install python3-gdbm)");
    None
}

/// Runs a Python script; returns its stdout, panicking with its stderr when it fails.
fn run_python(python: &str, script: &str, args: &[&str]) -> String {
    let out = Command::new(python).arg("-c").arg(script).args(args).output().unwrap_or_else(|e| panic!("{e}"));
    assert!(out.status.success(), "python: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Python: a shelve in the dbm flavour argv[1] at argv[2], written through `shelve`,
/// plus raw records; prints `key hex(raw value)` per record, as the file holds them.
const WRITE: &str = r#"
import dbm.gnu, dbm.ndbm, pickle, shelve, sys
module, path = sys.argv[1], sys.argv[2]
db = (dbm.gnu if module == "gnu" else dbm.ndbm).open(path, "n")
with shelve.Shelf(db, protocol=4) as s:
    s["user:1"] = {"name": "Ada", "langs": ["en", "fr"], "scores": (1.5, 2.5)}
    s["ключ é 🎉"] = [None, True, 2 ** 70, b"\x00\xff"]
    s["big"] = list(range(30000))
    s["shared"] = [s["user:1"], s["user:1"]]
    s["p2"] = 7
    s.dict[b"p0"] = pickle.dumps({"old": 1}, 0)
raw = (dbm.gnu if module == "gnu" else dbm.ndbm).open(path, "r")
for k in sorted(raw.keys()):
    print(k.decode("utf-8"), raw[k].hex())
raw.close()
"#;

/// Python: the raw records of argv[1] (any dbm flavour) as `key hex` lines, sorted.
const DUMP: &str = r#"
import dbm, sys
db = dbm.open(sys.argv[1], "r")
for k in sorted(db.keys()):
    print(k.decode("utf-8"), db[k].hex())
"#;

fn records(listing: &str) -> Vec<(String, Vec<u8>)> {
    listing
        .lines()
        .map(|l| {
            let (k, hex) = l.rsplit_once(' ').unwrap_or_else(|| panic!("{l}"));
            let bytes =
                (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap_or(0)).collect();
            (k.to_owned(), bytes)
        })
        .collect()
}

fn files_in(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{e}"))
        .flatten()
        .filter(|e| e.path().is_file())
        .map(|e| (e.file_name().to_string_lossy().into_owned(), fs::read(e.path()).unwrap_or_default()))
        .collect();
    out.sort();
    out
}

/// Imports a shelve CPython wrote in `module` ("gnu" or "ndbm"): every key, byte for
/// byte; back out as dbm.dumb, Python reads the same records.
fn imports_what_python_wrote(module: &str) {
    let Some(python) = python_with_dbm() else { return };
    let dir = tmp();
    let src_dir = dir.path().join("src");
    fs::create_dir(&src_dir).unwrap_or_else(|e| panic!("{e}"));
    let shelve = src_dir.join("state");
    let written = records(&run_python(python, WRITE, &[module, &s(&shelve)]));
    assert_eq!(written.len(), 6);
    let before = files_in(&src_dir);
    let store = dir.path().join("state.db");
    let st = s(&store);
    let said = ok_text(&["import", &st, "--shelve", &s(&shelve), "--python", python]);
    assert!(said.starts_with("imported 6 keys ("), "{said}");
    assert!(said.contains(&format!("(dbm.{module} shelve, read by {python})")), "{said}");
    for (key, bytes) in &written {
        assert_eq!(&ok(&["get", &st, key, "--raw"]), bytes, "{key}");
    }
    assert_eq!(
        ok_text(&["get", &st, "user:1", "--json"]),
        "{\"name\":\"Ada\",\"langs\":[\"en\",\"fr\"],\"scores\":[1.5,2.5]}\n"
    );
    assert_eq!(files_in(&src_dir), before, "the source is left as it was, nothing beside it");
    // The format is detected, and the interpreter found, without being named.
    let store2 = dir.path().join("auto.db");
    ok(&["import", &s(&store2), "--shelve", &s(&shelve)]);
    assert_eq!(ok_text(&["ls", &s(&store2), "--long"]), ok_text(&["ls", &st, "--long"]));
    // Back to Python as dbm.dumb: the same records.
    let back = dir.path().join("back");
    ok(&["export", &st, "--shelve", &s(&back)]);
    assert_eq!(records(&run_python(python, DUMP, &[&s(&back)])), written);
}

#[test]
fn a_dbm_gnu_shelve_imports_byte_for_byte() {
    imports_what_python_wrote("gnu");
}

#[test]
fn a_dbm_ndbm_shelve_imports_byte_for_byte() {
    imports_what_python_wrote("ndbm");
}

#[test]
fn bad_dbm_input_is_one_line_and_changes_nothing() {
    let Some(python) = python_with_dbm() else { return };
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let before = ok_text(&["ls", &st, "--long"]);
    let good = dir.path().join("good");
    run_python(python, WRITE, &["gnu", &s(&good)]);

    // A gdbm file cut short, and one with its middle overwritten.
    let bytes = fs::read(&good).unwrap_or_else(|e| panic!("{e}"));
    let cut = dir.path().join("cut");
    fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap_or_else(|e| panic!("{e}"));
    let err = fails(&["import", &st, "--shelve", &s(&cut), "--python", python]);
    assert!(err.contains("cut: the dbm.gnu file is cut short: its header says it ends at byte"), "{err}");
    let mut smashed = bytes.clone();
    for b in smashed.iter_mut().skip(bytes.len() / 4).take(bytes.len() / 2) {
        *b = 0xA5;
    }
    let smashed_path = dir.path().join("smashed");
    fs::write(&smashed_path, &smashed).unwrap_or_else(|e| panic!("{e}"));
    let err = fails(&["import", &st, "--shelve", &s(&smashed_path), "--python", python]);
    assert!(err.contains("smashed: "), "{err}");

    // A key that is not UTF-8, and a value that is not a pickle.
    let odd = |name: &str, key: &str, value: &str| -> PathBuf {
        let path = dir.path().join(name);
        let script = format!(
            "import dbm.gnu, sys\ndb = dbm.gnu.open(sys.argv[1], 'n')\ndb[b'ok'] = b'\\x80\\x04K\\x01.'\ndb[{key}] = {value}\ndb.close()"
        );
        run_python(python, &script, &[&s(&path)]);
        path
    };
    let err = fails(&["import", &st, "--shelve", &s(&odd("latin", "b'caf\\xe9'", "b'\\x80\\x04K\\x01.'"))]);
    assert!(err.ends_with("latin: key b'caf\\xe9' is not UTF-8 (shelve keys are UTF-8 text)\n"), "{err}");
    let err = fails(&["import", &st, "--shelve", &s(&odd("text", "b'k'", "b'hello'"))]);
    assert!(err.contains("text: key \"k\": pickle decode failed at byte 0"), "{err}");

    // No usable Python: a missing program, and a program that is not Python.
    let err = fails(&["import", &st, "--shelve", &s(&good), "--python", "/nonexistent/python3"]);
    assert!(
        err.contains("none was found: /nonexistent/python3: cannot run it") && err.contains("PICKLESHELF_PYTHON"),
        "{err}"
    );
    let err = fails(&["import", &st, "--shelve", &s(&good), "--python", "true"]);
    assert!(err.contains("reading it through true failed: no stream header"), "{err}");
    let out = bin()
        .args(["import", &st, "--shelve", &s(&good)])
        .env("PICKLESHELF_PYTHON", "/nonexistent/py")
        .assert()
        .code(FAILED)
        .get_output()
        .clone();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/py: cannot run it"));

    // The wrong flavour named, and export to a flavour pickleshelf does not write.
    let err = fails(&["import", &st, "--shelve", &s(&good), "--dbm", "ndbm", "--python", python]);
    assert!(err.contains("dbm.ndbm cannot open it"), "{err}");
    let err = fails(&["export", &st, "--shelve", &s(&dir.path().join("out")), "--dbm", "gnu"]);
    assert!(err.contains("export writes dbm.dumb"), "{err}");
    assert!(!dir.path().join("out").exists());

    assert_eq!(ok_text(&["ls", &st, "--long"]), before, "nothing stored changed");
    assert_eq!(ok_text(&["verify", &st]), "ok: 6 keys, 1 objects, 1 object files checked\n");
}

/// Python: a dbm.sqlite3 shelve as Python 3.13 writes it (WAL mode), with Python's own
/// statements when `dbm.sqlite3` is not there.
const WRITE_SQLITE: &str = r#"
import pickle, sqlite3, sys
path = sys.argv[1]
items = {"user:1": {"name": "Ada"}, "n": 42, "big": list(range(20000))}
try:
    import dbm.sqlite3, shelve
    with shelve.open(path, "n") as s:
        s.update(items)
except ImportError:
    cx = sqlite3.connect(path, isolation_level=None)
    cx.execute("PRAGMA journal_mode = wal")
    cx.execute("CREATE TABLE IF NOT EXISTS Dict (key BLOB UNIQUE NOT NULL, value BLOB NOT NULL)")
    for k, v in items.items():
        cx.execute("REPLACE INTO Dict (key, value) VALUES (CAST(? AS BLOB), CAST(? AS BLOB))",
                   (k.encode("utf-8"), pickle.dumps(v, 4)))
    cx.close()
"#;

#[test]
fn a_dbm_sqlite3_import_leaves_nothing_beside_the_source() {
    if common::python3().is_none() {
        return;
    }
    let dir = tmp();
    let src_dir = dir.path().join("src");
    fs::create_dir(&src_dir).unwrap_or_else(|e| panic!("{e}"));
    let shelve = src_dir.join("app.sqlite");
    run_python("python3", WRITE_SQLITE, &[&s(&shelve)]);
    let before = files_in(&src_dir);
    assert_eq!(before.len(), 1, "{:?}", before.iter().map(|f| &f.0).collect::<Vec<_>>());
    let mtime = fs::metadata(&shelve).and_then(|m| m.modified()).unwrap_or_else(|e| panic!("{e}"));
    let store = dir.path().join("s.db");
    let said = ok_text(&["import", &s(&store), "--shelve", &s(&shelve)]);
    assert!(said.starts_with("imported 3 keys"), "{said}");
    assert_eq!(files_in(&src_dir), before, "no -wal, -shm or journal file, the database unchanged");
    assert_eq!(fs::metadata(&shelve).and_then(|m| m.modified()).ok(), Some(mtime));
    assert_eq!(ok_text(&["get", &s(&store), "n", "--json"]), "42\n");

    // Changes waiting in a -wal file (a program has it open): refused, store unchanged.
    let listing = ok_text(&["ls", &s(&store), "--long"]);
    let writer = rusqlite::Connection::open(&shelve).unwrap_or_else(|e| panic!("{e}"));
    writer
        .execute_batch("PRAGMA wal_autocheckpoint = 0; REPLACE INTO Dict VALUES (CAST('n' AS BLOB), x'80044b072e')")
        .unwrap_or_else(|e| panic!("{e}"));
    let err = fails(&["import", &s(&store), "--shelve", &s(&shelve)]);
    assert!(err.contains("app.sqlite-wal holds changes not yet in the database"), "{err}");
    assert_eq!(ok_text(&["ls", &s(&store), "--long"]), listing);
    drop(writer);
    ok(&["import", &s(&store), "--shelve", &s(&shelve)]);
    assert_eq!(ok_text(&["get", &s(&store), "n", "--json"]), "7\n");
    assert_eq!(files_in(&src_dir).len(), 1);
}
