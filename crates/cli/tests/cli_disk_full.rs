//! A full disk under the command line: the store lives on a small tmpfs (mounted here;
//! needs root, as CI runs), so its writes fail with `ENOSPC` for real. `put` and `import`
//! fail with one line naming the file and the cause, change nothing already stored,
//! leave a store that verifies clean (files the failed write left are leftovers, deleted
//! by the next writing command), and work again once space is freed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::cli::*;
use pickleshelf::Shelf;

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A tmpfs of `size` bytes mounted on a fresh directory, unmounted when dropped; `None`
/// (with a note) when this process may not mount (not root): the test then checks
/// nothing, and says so. Under CI (which runs as root) that is a failure.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: u64) -> Option<Tmpfs> {
        let dir = tmp();
        let mounted = is_root()
            && Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                .arg(dir.path())
                .status()
                .is_ok_and(|s| s.success());
        if !mounted {
            assert!(std::env::var_os("CI").is_none(), "CI: cannot mount a tmpfs (not root?)");
            eprintln!("note: a tmpfs cannot be mounted here (not root): the full-disk test checks nothing");
            return None;
        }
        Some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

/// Every key's pickle, read through the library (read-only).
fn contents(store: &Path) -> BTreeMap<String, Vec<u8>> {
    let shelf = Shelf::builder(store).read_only(true).open().unwrap_or_else(|e| panic!("{e}"));
    let keys: Vec<String> = shelf.keys().map(|k| k.unwrap_or_else(|e| panic!("{e}"))).collect();
    keys.into_iter()
        .map(|k| (k.clone(), shelf.get_pickle(&k).unwrap_or_else(|e| panic!("{e}")).unwrap_or_default()))
        .collect()
}

/// A Python shelve (`dbm.dumb`, written by `export`) of `n` incompressible values of
/// `size` bytes, outside the tmpfs.
fn big_shelve(dir: &Path, n: usize, size: usize) -> PathBuf {
    let source = dir.join("source.db");
    let shelf = Shelf::open(&source).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..n {
        shelf
            .insert_pickle(&format!("big:{i:03}"), &bytes_pickle(&noise(size, i as u64 + 1)))
            .unwrap_or_else(|e| panic!("{e}"));
    }
    shelf.close().unwrap_or_else(|e| panic!("{e}"));
    let shelve = dir.join("py-shelve");
    ok(&["export", &s(&source), "--shelve", &s(&shelve)]);
    shelve
}

fn assert_verifies_clean(store: &Path) {
    let out = ok_text(&["verify", &s(store)]);
    assert!(out.lines().last().is_some_and(|l| l.starts_with("ok: ")) && !out.contains("problem"), "{out}");
}

#[test]
fn put_and_import_on_a_full_disk_fail_cleanly_and_keep_what_was_stored() {
    let Some(fs) = Tmpfs::mount(6 << 20) else { return };
    let work = tmp();
    let store = fs.path().join("state.db");
    let st = s(&store);
    // Another program's file on the same disk, deleted later to free space.
    let filler = fs.path().join("filler");
    std::fs::write(&filler, vec![1u8; 2 << 20]).unwrap_or_else(|e| panic!("{e}"));
    ok_in(&["put", &st, "small", "-"], Some(b"{\"a\": 1}".to_vec()));
    ok_in(&["put", &st, "medium", "--pickle", "-"], Some(bytes_pickle(&noise(100_000, 99))));
    let before = contents(&store);

    // A value larger than the space left: one line naming the file and the cause, once.
    let big = work.path().join("big.pkl");
    std::fs::write(&big, bytes_pickle(&noise(8 << 20, 5))).unwrap_or_else(|e| panic!("{e}"));
    let err = fails(&["put", &st, "big", "--pickle", &s(&big)]);
    assert!(err.contains("No space left on device") && err.contains(&st), "{err}");
    assert_eq!(err.matches("No space left on device").count(), 1, "{err}");
    assert_eq!(contents(&store), before);
    assert_verifies_clean(&store);

    // An import larger than the space left: all or nothing.
    let shelve = big_shelve(work.path(), 300, 20_000);
    let err = fails(&["import", &st, "--shelve", &s(&shelve)]);
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(contents(&store), before, "a failed import kept some of its keys");
    assert_verifies_clean(&store);

    // Space freed: the next writing command deletes the leftovers and works.
    std::fs::remove_file(&filler).unwrap_or_else(|e| panic!("{e}"));
    let small = big_shelve(&work.path().join("small"), 20, 20_000);
    ok(&["import", &st, "--shelve", &s(&small)]);
    let after = contents(&store);
    assert_eq!(after.len(), before.len() + 20);
    assert!(before.iter().all(|(k, v)| after.get(k) == Some(v)));
    let out = ok_text(&["verify", &st]);
    assert!(!out.contains("leftover") && out.starts_with("ok: "), "{out}");
}
