//! A store's lifecycle in one process and across processes: `close` with other handles
//! alive, the `Locked` message naming the holder (this process and what holds it, or
//! another process and its pid), the pid in `LOCK`, and `open` of a path that is not a
//! store.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pickleshelf::{Error, LockHolder, Shelf};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// The holder named by the `Locked` error of opening `path` (read-only or not).
fn locked_by(path: &Path, read_only: bool) -> (LockHolder, String) {
    match Shelf::builder(path).read_only(read_only).open() {
        Err(e @ Error::Locked { .. }) => {
            let message = e.to_string();
            let Error::Locked { path: lock, holder } = e else { unreachable!() };
            assert_eq!(lock, path.join("LOCK"));
            assert!(message.contains("locked by") && !message.contains('\n'), "{message}");
            (holder, message)
        }
        other => panic!("expected Locked, got {:?}", other.map(drop)),
    }
}

#[test]
fn close_with_a_live_memo_says_so_and_the_memo_keeps_working() {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path).expect("open");
    shelf.insert("k", &1).expect("insert");
    let memo = shelf.memo("f").expect("memo");
    let err = shelf.close().expect_err("a memo holds the store");
    assert!(matches!(err, Error::StillOpen { shelves: 0, memos: 1, .. }), "{err:?}");
    let m = err.to_string();
    assert!(m.contains("1 memo") && m.contains(&path.display().to_string()), "{m}");
    // The memo still works, and a reopen says at once what holds the store.
    let v: u64 = memo.get_or_compute(&(2u32,), || 4).expect("memo call");
    assert_eq!(v, 4);
    let (holder, message) = locked_by(&path, false);
    assert!(matches!(&holder, LockHolder::ThisProcess(what) if what.contains("1 memo")), "{message}");
    assert!(message.contains("this process"), "{message}");
    // Dropping the memo closes the store.
    drop(memo);
    let shelf = Shelf::open(&path).expect("reopen once the memo is gone");
    assert_eq!(shelf.get::<i64>("k").expect("get"), Some(1));
    shelf.close().expect("the last handle closes");
}

#[test]
fn close_with_a_live_clone_says_so_and_the_clone_keeps_working() {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path).expect("open");
    let clone = shelf.clone();
    let err = shelf.close().expect_err("a clone holds the store");
    assert!(matches!(err, Error::StillOpen { shelves: 1, memos: 0, .. }), "{err:?}");
    assert!(err.to_string().contains("1 Shelf handle"), "{err}");
    clone.insert("k", &2).expect("the clone still writes");
    let (holder, _) = locked_by(&path, true);
    assert!(matches!(&holder, LockHolder::ThisProcess(what) if what.contains("an open Shelf")), "{holder:?}");
    clone.close().expect("the last handle closes");
    assert_eq!(Shelf::open(&path).expect("reopen").get::<i64>("k").expect("get"), Some(2));
}

#[test]
fn closing_the_last_handle_releases_the_store_at_once() {
    let dir = tempdir();
    let path = dir.path().join("s");
    for n in 0..3 {
        let shelf = Shelf::open(&path).expect("open");
        shelf.insert("n", &n).expect("insert");
        shelf.close().expect("close");
    }
    let reader = Shelf::builder(&path).read_only(true).open().expect("read-only");
    assert_eq!(reader.get::<i64>("n").expect("get"), Some(2));
    reader.close().expect("a reader closes too");
}

#[test]
fn readers_in_this_process_share_and_exclude_a_writer() {
    let dir = tempdir();
    let path = dir.path().join("s");
    Shelf::open(&path).expect("create").close().expect("close");
    let a = Shelf::builder(&path).read_only(true).open().expect("reader");
    let b = Shelf::builder(&path).read_only(true).open().expect("a second reader shares it");
    let (holder, message) = locked_by(&path, false);
    assert!(matches!(&holder, LockHolder::ThisProcess(what) if what.starts_with("a read-only Shelf")), "{message}");
    drop((a, b));
    Shelf::open(&path).expect("the writer opens once the readers are gone");
}

#[test]
fn a_writer_records_its_pid_in_lock() {
    let dir = tempdir();
    let path = dir.path().join("s");
    let shelf = Shelf::open(&path).expect("open");
    let text = fs::read_to_string(path.join("LOCK")).expect("read LOCK");
    assert_eq!(text, format!("{}\n", std::process::id()));
    drop(shelf);
    // A reader writes nothing into it.
    let before = fs::metadata(path.join("LOCK")).expect("stat").modified().expect("mtime");
    let reader = Shelf::builder(&path).read_only(true).open().expect("read-only");
    drop(reader);
    assert_eq!(fs::metadata(path.join("LOCK")).expect("stat").modified().expect("mtime"), before);
}

/// Set (to `<store path>\n<r|w>`) when this test binary runs as the holding child of
/// `another_process_is_named_with_its_pid`.
const CHILD_ENV: &str = "PICKLESHELF_TEST_LIFECYCLE_HOLDER";

/// Starts this test binary as a child that opens `path` (read-only or not), prints
/// `ready` and holds the store until its stdin closes.
fn holding_child(path: &Path, read_only: bool) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_holds_a_store", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, format!("{}\n{}", path.display(), if read_only { "r" } else { "w" }))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let stdout = child.stdout.take().expect("child stdout");
    let mut lines = BufReader::new(stdout).lines().map_while(Result::ok);
    assert!(lines.any(|l| l.contains("child: ready")), "the child did not open the store");
    // The rest of its output is read until it exits (a closed pipe would fail it).
    std::thread::spawn(move || lines.for_each(drop));
    child
}

#[test]
fn another_process_is_named_with_its_pid() {
    let dir = tempdir();
    let path = dir.path().join("s");
    Shelf::open(&path).expect("create").close().expect("close");

    let mut writer = holding_child(&path, false);
    for read_only in [false, true] {
        let (holder, message) = locked_by(&path, read_only);
        assert_eq!(holder, LockHolder::Writer { pid: Some(writer.id()) }, "{message}");
        assert!(message.contains(&format!("another process (pid {}", writer.id())), "{message}");
    }
    drop(writer.stdin.take());
    assert!(writer.wait().expect("child").success());

    let mut reader = holding_child(&path, true);
    let (holder, message) = locked_by(&path, false);
    assert_eq!(holder, LockHolder::Readers, "{message}");
    assert!(message.contains("another process (reading it"), "{message}");
    Shelf::builder(&path).read_only(true).open().expect("readers share across processes");
    drop(reader.stdin.take());
    assert!(reader.wait().expect("child").success());
    Shelf::open(&path).expect("free again");
}

/// Run by `another_process_is_named_with_its_pid` in a child process; does nothing
/// otherwise.
#[test]
fn child_holds_a_store() {
    let Some(arg) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    let arg = arg.to_string_lossy().into_owned();
    let (path, mode) = arg.split_once('\n').expect("path and mode");
    let shelf = Shelf::builder(path).read_only(mode == "r").open().expect("child: open");
    println!("child: ready");
    std::io::stdout().flush().expect("flush");
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    drop(shelf);
}

/// Every entry under `dir` (relative paths) with its bytes for files.
fn listing(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.push((p.clone(), None));
            out.extend(listing(&p));
        } else {
            out.push((p.clone(), Some(fs::read(&p).expect("read"))));
        }
    }
    out.sort();
    out
}

#[test]
fn a_directory_that_is_not_a_store_is_refused_and_left_alone() {
    let dir = tempdir();
    let path = dir.path().join("photos");
    fs::create_dir_all(path.join("2024")).expect("mkdir");
    fs::write(path.join("notes.txt"), b"mine").expect("write");
    let before = listing(&path);
    for builder in [Shelf::builder(&path), Shelf::builder(&path).auth_key(*b"0123456789abcdef")] {
        match builder.open() {
            Err(e @ Error::NotAStore { .. }) => {
                let m = e.to_string();
                assert!(m.contains(&path.display().to_string()) && m.contains("not a pickleshelf store"), "{m}");
            }
            other => panic!("expected NotAStore, got {:?}", other.map(drop)),
        }
        assert_eq!(listing(&path), before, "something was written into the directory");
    }
    // A file is no store either.
    let file = dir.path().join("file");
    fs::write(&file, b"data").expect("write");
    assert!(matches!(Shelf::open(&file), Err(Error::NotAStore { .. })));
    assert_eq!(fs::read(&file).expect("read"), b"data");
}

#[test]
fn a_store_being_created_is_still_created() {
    let dir = tempdir();
    // An empty directory, one holding only `LOCK`, and one holding a creation a crash cut
    // short (`sled.new/`) become stores.
    let empty = dir.path().join("empty");
    fs::create_dir(&empty).expect("mkdir");
    let lock_only = dir.path().join("lock-only");
    fs::create_dir(&lock_only).expect("mkdir");
    fs::write(lock_only.join("LOCK"), b"").expect("write");
    let cut_short = dir.path().join("cut-short");
    fs::create_dir_all(cut_short.join("sled.new")).expect("mkdir");
    fs::write(cut_short.join("LOCK"), b"").expect("write");
    for path in [empty, lock_only, cut_short] {
        let shelf = Shelf::open(&path).expect("create");
        shelf.insert("k", &1).expect("insert");
        shelf.close().expect("close");
        assert_eq!(Shelf::open(&path).expect("reopen").get::<i64>("k").expect("get"), Some(1));
        assert!(!path.join("sled.new").exists());
    }
}
