//! Damaged stores through the command line: `verify`, `gc`, `salvage` and `repair` after
//! each kind of damage, asserting that no value readable before a command is lost after it,
//! that every value returned is the one stored, and that the exit status says what happened.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt as _;
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

/// The keys whose values read back equal to `values` (through the library, read-only; none
/// when the store cannot be opened). A value other than the one stored fails the test.
fn readable(store: &Path, values: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let Ok(shelf) = Shelf::builder(store).read_only(true).open() else { return out };
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
    // Salvage copies every readable key, and the values of the lost keys that were in
    // object files under recovered/<digest>; it exits 1, naming what it could not copy.
    let new = dir.path().join("salvaged.db");
    let out = bin().args(["salvage", &st, "--into", &s(&new)]).assert().code(1).get_output().clone();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(stdout.contains("lost: the records from key"), "{stdout}");
    let lost_big: Vec<&Vec<u8>> =
        values.iter().filter(|(k, v)| !before.contains_key(*k) && v.len() > 5_000).map(|(_, v)| v).collect();
    assert!(!lost_big.is_empty());
    assert!(
        stdout.contains(&format!(
            "{} keys, 0 memo results, 0 checkpoints, {} recovered values",
            before.len(),
            lost_big.len()
        )),
        "{stdout}"
    );
    assert_eq!(check_salvaged(&new, &values, &before), before.len());
    let shelf = Shelf::open(&new).unwrap_or_else(|e| panic!("{e}"));
    let recovered: Vec<Vec<u8>> = shelf
        .scan_prefix_pickle(pickleshelf::RECOVERED_PREFIX)
        .map(|r| r.unwrap_or_else(|e| panic!("{e}")).1)
        .collect();
    assert!(lost_big.iter().all(|v| recovered.contains(v)), "every lost value of an object file is recovered");
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
    fs::write(store.join("objects/tmp").join("abc.123.0"), b"half a frame").unwrap_or_else(|e| panic!("{e}"));
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

// ----- every damage class: verify, gc, salvage, repair -----

/// The damages a store's files can suffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Damage {
    ZeroBlock,
    FlipBytes,
    TruncatePack,
    DeletePack,
    UnreadablePack,
    SledConf,
    SledSnapshot,
    SledLogHead,
    DeleteLock,
    Witness,
    DeleteSled,
}

impl Damage {
    fn hits_a_pack(self) -> bool {
        matches!(
            self,
            Damage::ZeroBlock | Damage::FlipBytes | Damage::TruncatePack | Damage::DeletePack | Damage::UnreadablePack
        )
    }

    fn hits_sled(self) -> bool {
        matches!(self, Damage::SledConf | Damage::SledSnapshot | Damage::SledLogHead | Damage::DeleteSled)
    }
}

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Damages the store (closed) as `damage` says.
fn damage(store: &Path, damage: Damage) {
    let pack = store.join("pages/00000001.pack");
    let pack_len = fs::metadata(&pack).map(|m| m.len() as usize).unwrap_or(0);
    let edit = |file: &Path, f: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = fs::read(file).unwrap_or_else(|e| panic!("{file:?}: {e}"));
        f(&mut bytes);
        fs::write(file, bytes).unwrap_or_else(|e| panic!("{e}"));
    };
    match damage {
        Damage::ZeroBlock => zero_block(&pack, pack_len / 2 - 2048),
        Damage::FlipBytes => edit(&pack, &|b| {
            for i in 0..8 {
                b[pack_len / 3 + i * 97] ^= 0x5a;
            }
        }),
        Damage::TruncatePack => fs::OpenOptions::new()
            .write(true)
            .open(&pack)
            .and_then(|f| f.set_len(pack_len as u64 * 2 / 3))
            .unwrap_or_else(|e| panic!("{e}")),
        Damage::DeletePack => fs::remove_file(&pack).unwrap_or_else(|e| panic!("{e}")),
        Damage::UnreadablePack => {
            // Permission bits do not stop root: as root the pack is replaced by a directory
            // of the same name (every read of it fails with EISDIR); otherwise chmod 000.
            if is_root() {
                fs::remove_file(&pack).unwrap_or_else(|e| panic!("{e}"));
                fs::create_dir(&pack).unwrap_or_else(|e| panic!("{e}"));
            } else {
                fs::set_permissions(&pack, fs::Permissions::from_mode(0o000)).unwrap_or_else(|e| panic!("{e}"));
            }
        }
        Damage::SledConf => edit(&store.join("sled/conf"), &|b| b[3] ^= 0x20),
        Damage::SledSnapshot => {
            let snap = fs::read_dir(store.join("sled"))
                .unwrap_or_else(|e| panic!("{e}"))
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("snap.")))
                .max()
                .unwrap_or_else(|| panic!("no snapshot in {store:?}"));
            edit(&snap, &|b| {
                let n = b.len();
                b[n / 2] ^= 0xff;
                b[n - 5] ^= 0xff;
            });
        }
        Damage::SledLogHead => edit(&store.join("sled/db"), &|b| b[..64].fill(0xa5)),
        Damage::DeleteLock => fs::remove_file(store.join("LOCK")).unwrap_or_else(|e| panic!("{e}")),
        Damage::Witness => edit(&store.join("WITNESS"), &|b| b[25] ^= 0x04),
        Damage::DeleteSled => fs::remove_dir_all(store.join("sled")).unwrap_or_else(|e| panic!("{e}")),
    }
}

/// Every file under `dir` with its bytes (a directory in place of a file: its name only).
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap_or_else(|e| panic!("{e}")).flatten() {
        let p = e.path();
        if p.is_dir() && !p.to_string_lossy().ends_with(".pack") {
            out.extend(snapshot(&p));
        } else {
            out.push((p.clone(), fs::read(&p).ok()));
        }
    }
    out.sort();
    out
}

/// Checks the salvaged store: every value readable before is there under its key, every
/// value it holds is the stored one (a recovered one hashes to its name), and it verifies.
fn check_salvaged(new: &Path, values: &BTreeMap<String, Vec<u8>>, before: &BTreeMap<String, Vec<u8>>) -> usize {
    let shelf = Shelf::builder(new).read_only(true).open().unwrap_or_else(|e| panic!("open the salvaged store: {e}"));
    let mut got = 0;
    for item in shelf.iter_pickle() {
        let (k, v) = item.unwrap_or_else(|e| panic!("the salvaged store reads fully: {e}"));
        if let Some(hex) = k.strip_prefix(pickleshelf::RECOVERED_PREFIX) {
            let d = shelf.digest(&k).unwrap_or_else(|e| panic!("{e}")).map(|d| d.to_hex());
            assert_eq!(d.as_deref(), Some(hex), "a recovered value is named by its digest");
            assert!(values.values().any(|x| *x == v), "recovered value {hex} is one of the stored values");
        } else {
            assert_eq!(values.get(&k), Some(&v), "key {k} of the salvaged store");
            got += 1;
        }
    }
    for (k, v) in before {
        assert_eq!(
            shelf.get_pickle(k).unwrap_or_else(|e| panic!("{e}")).as_ref(),
            Some(v),
            "{k} was readable before salvage"
        );
    }
    let report = shelf.verify().unwrap_or_else(|e| panic!("{e}"));
    assert!(report.is_ok(), "{report:?}");
    got
}

/// Exit status of a command.
fn status(args: &[&str]) -> (i32, String) {
    let out = bin().args(args).output().unwrap_or_else(|e| panic!("{e}"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// One damage class: the store of the scenario (reopened, so that sled has a
/// snapshot), damaged, then verify, gc, salvage and repair, each checked.
fn damage_class(class: Damage) {
    let dir = tmp();
    let (store, values) = imported_store(dir.path());
    let st = s(&store);
    ok(&["ls", &st]);
    ok(&["gc", &st]);
    damage(&store, class);
    let before = readable(&store, &values);
    let files = object_files(&store);
    // verify: exit 0 only when nothing is wrong.
    let (code, text) = status(&["verify", &st]);
    let clean = class == Damage::DeleteLock;
    assert_eq!(code, if clean { 0 } else { 1 }, "verify after {class:?}: {text}");
    if class.hits_sled() {
        assert!(text.contains("pickleshelf repair"), "the error says what to run: {text}");
    }
    // gc: loses nothing readable, deletes no object file while anything is unreadable.
    let (code, text) = status(&["gc", &st]);
    assert_eq!(code, if clean { 0 } else { 1 }, "gc after {class:?}: {text}");
    let after = readable(&store, &values);
    assert!(before.iter().all(|(k, v)| after.get(k) == Some(v)), "gc lost readable values after {class:?}");
    if !clean {
        assert_eq!(object_files(&store), files, "gc deleted object files after {class:?}");
    }
    // salvage: copies every readable value, changes nothing in the damaged store.
    let unchanged = snapshot(&store);
    let new = dir.path().join("salvaged.db");
    let (code, text) = status(&["salvage", &st, "--into", &s(&new)]);
    assert_eq!(snapshot(&store), unchanged, "salvage changed the damaged store ({class:?})");
    let complete = !class.hits_a_pack();
    assert_eq!(code, if complete { 0 } else { 1 }, "salvage after {class:?}: {text}");
    let salvaged = check_salvaged(&new, &values, &before);
    if complete {
        assert_eq!(salvaged, values.len(), "salvage after {class:?} copies every key: {text}");
    } else {
        assert!(salvaged >= before.len(), "{text}");
    }
    // repair: rebuilds what sled lost, rewrites a witness, recreates LOCK; pack damage stays.
    let (code, text) = status(&["repair", &st]);
    assert_eq!(code, if complete { 0 } else { 1 }, "repair after {class:?}: {text}");
    let repaired = readable(&store, &values);
    assert!(before.iter().all(|(k, v)| repaired.get(k) == Some(v)), "repair lost readable values after {class:?}");
    if complete {
        assert_eq!(repaired.len(), values.len(), "repair after {class:?} brings back every value: {text}");
        assert!(ok_text(&["verify", &st]).starts_with("ok: 300 keys"));
    }
    if class == Damage::UnreadablePack && !is_root() {
        let _ = fs::set_permissions(store.join("pages/00000001.pack"), fs::Permissions::from_mode(0o600));
    }
}

#[test]
fn damage_zeroed_block() {
    damage_class(Damage::ZeroBlock);
}

#[test]
fn damage_flipped_bytes() {
    damage_class(Damage::FlipBytes);
}

#[test]
fn damage_truncated_pack() {
    damage_class(Damage::TruncatePack);
}

#[test]
fn damage_deleted_pack() {
    damage_class(Damage::DeletePack);
}

#[test]
fn damage_unreadable_pack() {
    damage_class(Damage::UnreadablePack);
}

#[test]
fn damage_sled_conf() {
    damage_class(Damage::SledConf);
}

#[test]
fn damage_sled_snapshot() {
    damage_class(Damage::SledSnapshot);
}

#[test]
fn damage_sled_log_head() {
    damage_class(Damage::SledLogHead);
}

#[test]
fn damage_deleted_lock() {
    damage_class(Damage::DeleteLock);
}

#[test]
fn damage_witness() {
    damage_class(Damage::Witness);
}

#[test]
fn damage_deleted_sled_directory() {
    damage_class(Damage::DeleteSled);
}

/// A store whose sled files came back older than its last sync: the error names
/// `--allow-rollback` and `pickleshelf repair`; `--allow-rollback` opens the older state
/// (a reader as it is, a writer resetting the witness); repair brings back the newer one.
#[test]
fn a_rolled_back_store_names_the_flag_and_repair() {
    let dir = tmp();
    let store = sample_store(dir.path());
    let st = s(&store);
    let old = dir.path().join("old-sled");
    copy_tree(&store.join("sled"), &old);
    ok_in(&["put", &st, "newer", "--json", "-"], Some(b"{\"none\":null}".to_vec()));
    let newer = fs::read_dir(store.join("sled")).map(|d| d.count()).unwrap_or(0);
    assert!(newer > 0);
    fs::remove_dir_all(store.join("sled")).unwrap_or_else(|e| panic!("{e}"));
    copy_tree(&old, &store.join("sled"));
    let err = fails_with(DAMAGED, &["ls", &st], None).1;
    assert!(err.contains("--allow-rollback") && err.contains(&format!("pickleshelf repair {st}")), "{err}");
    // A reader accepts the older state and changes nothing.
    let listed = ok_text(&["ls", &st, "--allow-rollback"]);
    assert!(!listed.contains("newer"), "{listed}");
    fails_with(DAMAGED, &["ls", &st], None);
    // repair brings back the newer state from the packs.
    let out = ok_text(&["repair", &st]);
    assert!(out.contains("directory rebuilt from the packs"), "{out}");
    assert!(ok_text(&["ls", &st]).contains("newer"));
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap_or_else(|e| panic!("{e}"));
    for e in fs::read_dir(from).unwrap_or_else(|e| panic!("{e}")).flatten() {
        if e.path().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}

/// A full disk: writes fail with ENOSPC part way (an object file half written, a commit
/// cut short). `verify` then reports what the failed writes left as leftovers and exits 0;
/// the next writable open deletes them. Needs a small file system: as root the test mounts
/// a 3 MiB tmpfs; otherwise it says so and checks nothing.
#[test]
fn a_full_disk_leaves_leftovers_not_problems() {
    if !is_root() {
        eprintln!("skipping the full-disk check: mounting a small tmpfs needs root");
        return;
    }
    let dir = tmp();
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).unwrap_or_else(|e| panic!("{e}"));
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs", &s(&mnt)])
        .status()
        .is_ok_and(|st| st.success());
    if !mounted {
        eprintln!("skipping the full-disk check: mount -t tmpfs failed");
        return;
    }
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());
    // Room to free once the disk is full.
    let ballast = mnt.join("ballast");
    fs::write(&ballast, vec![7u8; 512 << 10]).unwrap_or_else(|e| panic!("{e}"));
    let store = mnt.join("state.db");
    let st = s(&store);
    let mut written = BTreeMap::new();
    {
        let shelf = Shelf::open(&store).unwrap_or_else(|e| panic!("{e}"));
        let mut failed = false;
        for i in 0..400u64 {
            let v = bytes_pickle(&noise(40_000, 2 * i + 1));
            match shelf.insert_pickle(&format!("k{i:03}"), &v).and_then(|()| shelf.sync()) {
                Ok(()) => {
                    written.insert(format!("k{i:03}"), v);
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        assert!(failed, "the disk never filled up");
        drop(shelf);
    }
    assert!(!written.is_empty());
    let out = bin().args(["verify", &st]).output().unwrap_or_else(|e| panic!("{e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "verify after a full disk: {text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("leftover: "), "{text}");
    // Every synced value reads back.
    let shelf = Shelf::builder(&store).read_only(true).open().unwrap_or_else(|e| panic!("{e}"));
    for (k, v) in &written {
        assert_eq!(shelf.get_pickle(k).unwrap_or_else(|e| panic!("{k}: {e}")).as_ref(), Some(v), "{k}");
    }
    drop(shelf);
    // A writer needs room (sled writes when it opens): the error says so, not "damaged".
    let err = fails(&["gc", &st]);
    assert!(err.contains("No space left on device") && !err.contains("repair"), "{err}");
    fs::remove_file(&ballast).unwrap_or_else(|e| panic!("{e}"));
    ok(&["gc", &st]);
    assert!(!ok_text(&["verify", &st]).contains("leftover"));
}
