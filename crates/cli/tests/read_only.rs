//! A store on a read-only file system reads fully when opened read-only: the reader opens
//! `LOCK` read-only and takes a shared `flock` on it (no write access needed), a store
//! without `LOCK` is not locked by a reader, and sled's files are read from a private copy
//! (sled writes whenever it opens its files). Readers still exclude writers.
//!
//! How the directory is made read-only: as root (CI), permission bits do not stop root, so
//! the test mounts a tmpfs, writes a store into it and remounts it read-only
//! (`mount -o remount,ro`): every write fails with EROFS, for root too. Without root it
//! removes the write permission bits of the store's files and directories instead (`chmod
//! a-w`), which stops a non-root user. Where neither can be done (root without the right to
//! mount, as in some containers) the test says so on stderr and checks what it still can.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use pickleshelf::{Error, Shelf};

fn is_root() -> bool {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn run(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).status().is_ok_and(|s| s.success())
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = run("umount", &[&self.0.to_string_lossy()]);
    }
}

fn values() -> Vec<(String, Vec<u8>)> {
    (0..200u32)
        .map(|i| {
            let mut p = vec![0x80, 4, 0x8e];
            let n = if i % 20 == 0 { 30_000 } else { 100 + i as usize };
            let payload: Vec<u8> = (0..n).map(|j| (j as u32).wrapping_mul(2654435761).wrapping_add(i) as u8).collect();
            p.extend_from_slice(&(payload.len() as u64).to_le_bytes());
            p.extend_from_slice(&payload);
            p.extend_from_slice(b"\x94.");
            (format!("k{i:03}"), p)
        })
        .collect()
}

fn write_store(path: &Path) {
    let shelf = Shelf::open(path).expect("create");
    for (k, v) in values() {
        shelf.insert_pickle(&k, &v).expect("insert");
    }
    shelf.checkpoint("cp").expect("checkpoint");
    shelf.close().expect("close");
}

fn set_writable(path: &Path, writable: bool) {
    let meta = fs::metadata(path).expect("metadata");
    let mut perm = meta.permissions();
    perm.set_mode(if writable { perm.mode() | 0o200 } else { perm.mode() & !0o222 });
    fs::set_permissions(path, perm).expect("chmod");
    if meta.is_dir() {
        for e in fs::read_dir(path).expect("read dir").flatten() {
            set_writable(&e.path(), writable);
        }
    }
}

fn reads_everything(store: &Path) {
    let shelf = Shelf::builder(store).read_only(true).open().expect("open read-only");
    for (k, v) in values() {
        assert_eq!(shelf.get_pickle(&k).expect("get"), Some(v), "{k}");
    }
    assert_eq!(shelf.checkpoint_keys("cp").expect("checkpoint").len(), 200);
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok() && report.leftovers.is_empty(), "{report:?}");
    // A second reader shares the store.
    let other = Shelf::builder(store).read_only(true).open().expect("a second reader");
    assert_eq!(other.len().expect("len"), 200);
}

/// Hashes of every file under `dir`, to show that nothing was changed.
fn contents(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read dir").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(contents(&p));
        } else {
            out.push((p.clone(), fs::read(&p).expect("read")));
        }
    }
    out.sort();
    out
}

#[test]
fn a_store_on_a_read_only_file_system_reads_fully() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let root = tmp.path().join("mnt");
    fs::create_dir(&root).expect("mount point");
    let mounted = is_root() && run("mount", &["-t", "tmpfs", "-o", "size=64m", "tmpfs", &root.to_string_lossy()]);
    let _mount = mounted.then(|| Mount(root.clone()));
    let store = root.join("state.db");
    let bare = root.join("no-lock.db");
    write_store(&store);
    write_store(&bare);
    fs::remove_file(bare.join("LOCK")).expect("remove LOCK");
    let before = contents(&root);
    if mounted {
        assert!(run("mount", &["-o", "remount,ro", &root.to_string_lossy()]), "remount read-only");
        eprintln!("store on a tmpfs remounted read-only");
    } else if !is_root() {
        set_writable(&root, false);
        eprintln!("store made read-only with chmod a-w (not root)");
    } else {
        eprintln!("root without the right to mount a tmpfs: the store stays writable; read-only opens are checked");
    }
    let read_only = mounted || !is_root();
    reads_everything(&store);
    reads_everything(&bare);
    // The CLI's reading commands too.
    let bin = assert_cmd::cargo::cargo_bin("pickleshelf");
    for args in [vec!["verify"], vec!["ls"], vec!["get", "--raw"]] {
        let mut cmd = Command::new(&bin);
        cmd.arg(args[0]).arg(&store).args(&args[1..]);
        if args[0] == "get" {
            cmd.arg("k000");
        }
        let out = cmd.output().expect("run");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    if read_only {
        // A writer cannot open it, and says why.
        match Shelf::open(&store) {
            Err(Error::Io { path, .. }) => assert!(path.starts_with(&store), "{path:?}"),
            other => panic!("expected an i/o error, got {:?}", other.map(|_| ())),
        }
    }
    assert!(contents(&root) == before, "a read-only open changed the store");
    if !mounted && !is_root() {
        set_writable(&root, true);
    }
}

#[test]
fn readers_exclude_writers_and_share_with_readers() {
    let tmp = tempfile::tempdir().expect("temporary directory");
    let store = tmp.path().join("s.db");
    write_store(&store);
    let reader = Shelf::builder(&store).read_only(true).open().expect("reader");
    let second = Shelf::builder(&store).read_only(true).open().expect("second reader");
    assert!(matches!(Shelf::open(&store), Err(Error::Locked { .. })));
    drop((reader, second));
    let writer = Shelf::open(&store).expect("writer once the readers are gone");
    assert!(matches!(Shelf::builder(&store).read_only(true).open(), Err(Error::Locked { .. })));
    drop(writer);
}
