//! Damaged stores through the command line: `verify`, `gc`, `salvage` and `repair` after
//! each kind of damage, asserting that no value readable before a command is lost after it,
//! that every value returned is the one stored, and that the exit status says what happened.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::cli::*;
use pickleshelf::Shelf;

/// The values of the scenario: 300 keys, 60 of them (every fifth) incompressible
/// values of 5–9 KB (object files), the others small pickles (inline in their pages).
fn scenario_values() -> BTreeMap<String, Vec<u8>> {
    (0..300u64)
        .map(|i| {
            let key = format!("key:{i:03}");
            let value = if i % 5 == 0 {
                bytes_pickle(&noise(5_000 + (i as usize * 13) % 4_000, i + 1))
            } else {
                bytes_pickle(format!("value {i}, {} ", i * 7919 % 1000).repeat(30 + i as usize % 90).as_bytes())
            };
            (key, value)
        })
        .collect()
}

/// The scenario: a Python shelve (dbm.dumb, written by `export`) imported with
/// `pickleshelf import`, so every record comes from one import.
fn imported_store(dir: &Path) -> (PathBuf, BTreeMap<String, Vec<u8>>) {
    let values = scenario_values();
    let source = dir.join("source.db");
    {
        let shelf = Shelf::open(&source).unwrap_or_else(|e| panic!("{e}"));
        for (k, v) in &values {
            shelf.insert_pickle(k, v).unwrap_or_else(|e| panic!("{e}"));
        }
        shelf.close().unwrap_or_else(|e| panic!("{e}"));
    }
    let shelve = dir.join("py-shelve");
    ok(&["export", &s(&source), "--shelve", &s(&shelve)]);
    let store = dir.join("state.db");
    ok(&["import", &s(&store), "--shelve", &s(&shelve)]);
    (store, values)
}

/// Every object file of a store.
fn object_files(store: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(top) = fs::read_dir(store.join("objects")) else { return out };
    for sub in top.flatten() {
        if sub.file_name() == "tmp" {
            continue;
        }
        for f in fs::read_dir(sub.path()).unwrap_or_else(|e| panic!("{e}")).flatten() {
            out.push(f.path());
        }
    }
    out.sort();
    out
}

/// The keys whose values read back equal to `values` (through the library, read-only).
fn readable(store: &Path, values: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let shelf = Shelf::builder(store).read_only(true).open().unwrap_or_else(|e| panic!("open {store:?}: {e}"));
    let mut out = BTreeMap::new();
    for (k, v) in values {
        if let Ok(Some(b)) = shelf.get_pickle(k) {
            assert_eq!(&b, v, "key {k}: a wrong value was returned");
            out.insert(k.clone(), b);
        }
    }
    out
}

/// Zeroes 4 KiB of `file` from `at`.
fn zero_block(file: &Path, at: usize) {
    let mut bytes = fs::read(file).unwrap_or_else(|e| panic!("{e}"));
    assert!(bytes.len() > at + 4096, "{file:?} has {} bytes", bytes.len());
    bytes[at..at + 4096].fill(0);
    fs::write(file, bytes).unwrap_or_else(|e| panic!("{e}"));
}

/// The scenario (12 of 12 trials on the store's format 2 code): a zeroed 4 KiB
/// block of `pages/00000001.pack` made `gc` report "repaired", exit 0, and delete 203 keys
/// and 41 intact object files. Now `gc` changes nothing while pages are unreadable, names
/// them, and exits 1.
#[test]
fn gc_keeps_everything_while_a_page_is_unreadable() {
    let dir = tmp();
    let (store, values) = imported_store(dir.path());
    let st = s(&store);
    let files = object_files(&store);
    assert_eq!(files.len(), 60);
    let pack = store.join("pages/00000001.pack");
    let len = fs::metadata(&pack).unwrap_or_else(|e| panic!("{e}")).len() as usize;
    zero_block(&pack, len / 2 - 2048);
    let before = readable(&store, &values);
    assert!(before.len() < values.len() && !before.is_empty(), "{} of {} readable", before.len(), values.len());

    let out = bin().args(["verify", &st]).assert().code(1).get_output().clone();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("problem: unreadable page"), "{stdout}");

    let out = bin().args(["gc", &st]).assert().code(1).get_output().clone();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stdout.contains("repaired:"), "gc changed a damaged store: {stdout}");
    assert!(stdout.contains("unreadable page"), "{stdout}");
    assert!(stderr.contains("salvage"), "{stderr}");
    assert_eq!(object_files(&store), files, "gc deleted object files");
    assert_eq!(readable(&store, &values), before, "gc lost readable values");
    // A second gc changes nothing either.
    bin().args(["gc", &st]).assert().code(1);
    assert_eq!(object_files(&store), files);
    assert_eq!(readable(&store, &values), before);
}

/// What a write cut short by a crash or a full disk leaves behind — an object file whose
/// record never reached the directory, a temporary file, a pack no page names — is listed
/// by `verify` as leftovers, not problems (exit 0), and the next writable open deletes it.
#[test]
fn leftovers_of_interrupted_writes_are_not_problems() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    // An object file whose record a crash lost, a temporary file, a pack of a cut commit.
    let stray = store.join("objects/ab").join("c".repeat(62));
    fs::create_dir_all(stray.parent().unwrap_or(&store)).unwrap_or_else(|e| panic!("{e}"));
    fs::write(&stray, b"a frame whose record never committed").unwrap_or_else(|e| panic!("{e}"));
    fs::create_dir_all(store.join("objects/tmp")).unwrap_or_else(|e| panic!("{e}"));
    fs::write(store.join("objects/tmp/abc.123.0"), b"half a frame").unwrap_or_else(|e| panic!("{e}"));
    fs::write(store.join("pages/00000009.pack"), b"pickleshelf pack\x01\0\0\0\0\0\0\0torn")
        .unwrap_or_else(|e| panic!("{e}"));
    let out = ok_text(&["verify", &st]);
    assert_eq!(out.lines().filter(|l| l.starts_with("leftover: ")).count(), 3, "{out}");
    assert!(out.ends_with("ok: 6 keys, 1 objects, 2 object files checked\n"), "{out}");
    assert!(!out.contains("problem"), "{out}");
    // The next writable open deletes them; verify has nothing more to say.
    ok_in(&["put", &st, "k", "--json", "-"], Some(b"{\"none\":null}".to_vec()));
    assert!(!stray.exists());
    assert!(!store.join("pages/00000009.pack").exists());
    assert_eq!(ok_text(&["verify", &st]), "ok: 7 keys, 1 objects, 1 object files checked\n");
}
