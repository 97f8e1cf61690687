//! Every error a user can hit, one test each: the exact `Error` variant, a message that
//! names the thing (path, key, digest, limit) on one line, and that nothing else changed.
//!
//! Damage is done the way it happens to real stores: bytes flipped or files removed
//! behind the store's back, or sled records rewritten by opening the sled database
//! directly.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use pickleshelf::{Batch, Digest, Error, FORMAT_VERSION, MAX_KEY_LEN, Shelf, pickle};

/// `pickle.dumps(n, 4)` for a small non-negative `n`.
fn int(n: u8) -> Vec<u8> {
    vec![0x80, 4, b'K', n, b'.']
}

/// `pickle.dumps(b, 4)` for `len` random bytes: its frame is far above the inline limit,
/// so it is stored as an object file.
fn big(len: usize, seed: u64) -> Vec<u8> {
    let mut p = vec![0x80, 4, 0x8e];
    p.extend_from_slice(&(len as u64).to_le_bytes());
    let mut s = seed | 1;
    for _ in 0..len {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        p.push(s as u8);
    }
    p.extend_from_slice(b"\x94.");
    p
}

/// The message of `e`, checked to be one line and to contain each of `names`.
fn message(e: &Error, names: &[&str]) -> String {
    let m = e.to_string();
    assert!(!m.contains('\n'), "message is not one line: {m:?}");
    for name in names {
        assert!(m.contains(name), "message {m:?} does not name {name:?}");
    }
    m
}

fn shown(path: &Path) -> String {
    path.display().to_string()
}

/// A new store at `dir/s.db` holding `a` = 1 and `big` (an object file); closed.
fn store(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("s.db");
    let shelf = Shelf::open(&path).expect("create the store");
    shelf.insert_pickle("a", &int(1)).expect("insert a");
    shelf.insert_pickle("big", &big(20_000, 1)).expect("insert big");
    shelf.close().expect("close");
    path
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

/// Changes the store's sled database directly (the store must be closed).
fn with_sled(path: &Path, change: impl FnOnce(&sled::Db)) {
    let db = sled::open(path.join("sled")).expect("open the store's sled database");
    change(&db);
    db.flush().expect("flush");
    drop(db);
    // sled closes its file (and releases its lock on it) in background threads after the
    // `Db` is dropped: wait for that, as the store itself does.
    fs::File::open(path.join("sled").join("db")).and_then(|f| f.lock()).expect("wait for sled to let go");
}

fn leb(bytes: &[u8], at: &mut usize) -> u64 {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = bytes[*at];
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            break;
        }
    }
    v
}

fn put_leb(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Rewrites one record of a closed store the way a tool that knows the format would, as
/// docs/FORMAT.md describes it: finds the page holding `record` (the directory record
/// `p` + lower bound in sled), decodes its image from its pack file, lets `change` edit
/// the record's value, and appends the new image with a valid (unkeyed) checksum, then
/// points the directory record at it. The page stays intact; only the value lies.
fn rewrite_record(path: &Path, record: &[u8], change: impl FnOnce(&mut Vec<u8>)) {
    with_sled(path, |db| {
        let mut dir_key = vec![b'p'];
        dir_key.extend_from_slice(record);
        let (k, loc) = db.range(&b"p"[..]..=&dir_key[..]).next_back().expect("a page").expect("sled");
        let lo = k[1..].to_vec();
        let pack = u32::from_le_bytes(loc[..4].try_into().unwrap());
        let offset = u64::from_le_bytes(loc[4..12].try_into().unwrap());
        let len = u32::from_le_bytes(loc[12..16].try_into().unwrap()) as usize;
        let pack_path = path.join("pages").join(format!("{pack:08x}.pack"));
        let bytes = fs::read(&pack_path).expect("read the pack");
        let image = &bytes[offset as usize..offset as usize + len];
        // Image: [magic 4][seq u64][codec][payload length u32][body length LEB128][payload]
        // [checksum 16], the checksum over everything before it.
        let (head, sum) = image.split_at(len - 16);
        assert_eq!(&blake3::hash(head).as_bytes()[..16], sum, "the page's checksum");
        assert_eq!(sum, &loc[16..32], "the directory record names the image");
        let seq = &image[4..12];
        let codec = image[12];
        let mut at = 17;
        let body_len = leb(image, &mut at) as usize;
        let body = match codec {
            0 => head[at..].to_vec(),
            1 => zstd::bulk::decompress(&head[at..], body_len).expect("zstd"),
            other => panic!("unknown page codec {other}"),
        };
        // Body: [lo][hi] [count] then count × [key][value], each a LEB128 length and bytes
        // (hi a flag byte first).
        let mut at = 0;
        let lo_len = leb(&body, &mut at) as usize;
        assert_eq!(&body[at..at + lo_len], &lo[..], "the page's lower bound");
        at += lo_len;
        if body[at] == 1 {
            at += 1;
            let hi_len = leb(&body, &mut at) as usize;
            at += hi_len;
        } else {
            at += 1;
        }
        let count = leb(&body, &mut at);
        let mut new_body = body[..at].to_vec();
        let mut change = Some(change);
        let mut found = false;
        for _ in 0..count {
            let klen = leb(&body, &mut at) as usize;
            let key = body[at..at + klen].to_vec();
            at += klen;
            let vlen = leb(&body, &mut at) as usize;
            let mut value = body[at..at + vlen].to_vec();
            at += vlen;
            if key == record
                && let Some(change) = change.take()
            {
                change(&mut value);
                found = true;
            }
            put_leb(&mut new_body, klen as u64);
            new_body.extend_from_slice(&key);
            put_leb(&mut new_body, value.len() as u64);
            new_body.extend_from_slice(&value);
        }
        assert!(found, "the record is in its page");
        let mut new_image = image[..4].to_vec();
        new_image.extend_from_slice(seq);
        new_image.push(0);
        new_image.extend_from_slice(&(new_body.len() as u32).to_le_bytes());
        put_leb(&mut new_image, new_body.len() as u64);
        new_image.extend_from_slice(&new_body);
        let new_sum = blake3::hash(&new_image).as_bytes()[..16].to_vec();
        new_image.extend_from_slice(&new_sum);
        let mut f = fs::OpenOptions::new().append(true).open(&pack_path).expect("open the pack");
        let new_offset = fs::metadata(&pack_path).expect("pack length").len();
        std::io::Write::write_all(&mut f, &new_image).expect("append");
        let mut new_loc = Vec::new();
        new_loc.extend_from_slice(&pack.to_le_bytes());
        new_loc.extend_from_slice(&new_offset.to_le_bytes());
        new_loc.extend_from_slice(&(new_image.len() as u32).to_le_bytes());
        new_loc.extend_from_slice(&new_sum);
        new_loc.extend_from_slice(seq);
        db.insert(k, new_loc).expect("write the directory record");
    });
}

/// The path of the object file of `d` (see docs/FORMAT.md).
fn object_file(path: &Path, d: &Digest) -> PathBuf {
    let hex = d.to_hex();
    path.join("objects").join(&hex[..2]).join(&hex[2..])
}

fn digest_of(path: &Path, key: &str) -> Digest {
    let shelf = Shelf::open(path).expect("open");
    shelf.digest(key).expect("digest").expect("the key exists")
}

#[test]
fn second_open_in_this_process_is_locked() {
    let dir = tempdir();
    let path = store(&dir);
    let shelf = Shelf::open(&path).expect("open");
    for builder in [Shelf::builder(&path), Shelf::builder(&path).read_only(true)] {
        match builder.open() {
            Err(e @ Error::Locked { .. }) => {
                let Error::Locked { path: lock, holder } = &e else { unreachable!() };
                assert_eq!(*lock, path.join("LOCK"));
                assert!(matches!(holder, pickleshelf::LockHolder::ThisProcess(_)), "{holder:?}");
                message(&e, &["locked by this process (an open Shelf", &shown(lock)]);
            }
            other => panic!("expected Locked, got {:?}", other.map(drop)),
        }
    }
    // The first handle is untouched, and the store opens once it is closed.
    assert_eq!(shelf.get_pickle("a").expect("get"), Some(int(1)));
    shelf.close().expect("close");
    assert_eq!(Shelf::open(&path).expect("reopen").get_pickle("a").expect("get"), Some(int(1)));
}

#[test]
fn open_waits_for_a_handle_that_is_going_away() {
    let dir = tempdir();
    let path = store(&dir);
    // A lock no handle of this process holds: a copy of a closed handle's descriptor, as a
    // child process started meanwhile has until its exec. It goes 100 ms from now, within
    // the half second `open` waits.
    let copy = fs::OpenOptions::new().write(true).open(path.join("LOCK")).expect("open LOCK");
    copy.lock().expect("flock");
    let holder = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(copy);
    });
    let started = std::time::Instant::now();
    let reopened = Shelf::open(&path).expect("open while the other handle closes");
    assert!(started.elapsed() >= std::time::Duration::from_millis(50), "did not wait for the holder");
    assert_eq!(reopened.get_pickle("a").expect("get"), Some(int(1)));
    holder.join().expect("holder thread");
}

/// Set (to a store path) when this test binary runs as the child of
/// `open_from_another_process_is_locked`.
const CHILD_ENV: &str = "PICKLESHELF_TEST_LOCKED_STORE";

#[test]
fn open_from_another_process_is_locked() {
    let dir = tempdir();
    let path = store(&dir);
    let shelf = Shelf::open(&path).expect("open");
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "child_opens_a_locked_store", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("child: Locked"), "the child did not run the check: {stdout}");
    drop(shelf);
}

/// Run by `open_from_another_process_is_locked` in a child process; does nothing otherwise.
#[test]
fn child_opens_a_locked_store() {
    let Some(path) = std::env::var_os(CHILD_ENV) else {
        return;
    };
    match Shelf::open(&path) {
        Err(e @ Error::Locked { .. }) => {
            let parent = std::os::unix::process::parent_id();
            message(&e, &["locked by another process", &format!("pid {parent}")]);
            println!("child: Locked");
        }
        other => panic!("child: expected Locked, got {:?}", other.map(drop)),
    }
}

#[test]
fn read_only_refuses_every_write_and_reads() {
    let dir = tempdir();
    let path = store(&dir);
    let shelf = Shelf::builder(&path).read_only(true).open().expect("open read-only");
    let refused = |what: &str, r: Result<(), Error>| match r {
        Err(e @ Error::ReadOnly { .. }) => {
            let Error::ReadOnly { path: p } = &e else { unreachable!() };
            assert_eq!(*p, path, "{what}");
            message(&e, &["read-only", &shown(&path)]);
        }
        other => panic!("{what}: expected ReadOnly, got {other:?}"),
    };
    refused("insert_pickle", shelf.insert_pickle("a", &int(2)));
    refused("insert_pickle of a new key", shelf.insert_pickle("new", &int(2)));
    refused("remove", shelf.remove("a").map(drop));
    refused("remove of a missing key", shelf.remove("missing").map(drop));
    let mut b = Batch::new();
    b.insert_pickle("b", &int(3)).expect("a valid pickle");
    refused("apply", shelf.apply(b));
    refused("apply of an empty batch", shelf.apply(Batch::new()));
    refused("gc", shelf.gc().map(drop));
    // Reads work; sync has nothing to do.
    assert_eq!(shelf.get_pickle("a").expect("get"), Some(int(1)));
    assert_eq!(shelf.get_pickle("big").expect("get"), Some(big(20_000, 1)));
    assert!(shelf.contains_key("big").expect("contains_key"));
    assert_eq!(shelf.len().expect("len"), 2);
    assert_eq!(shelf.keys().collect::<Result<Vec<_>, _>>().expect("keys"), ["a", "big"]);
    assert_eq!(shelf.iter_pickle().count(), 2);
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok() && report.keys == 2 && report.files == 1, "{report:?}");
    shelf.sync().expect("sync of a read-only store");
    shelf.close().expect("close");
    // Nothing changed.
    let shelf = Shelf::open(&path).expect("open");
    assert_eq!(shelf.keys().collect::<Result<Vec<_>, _>>().expect("keys"), ["a", "big"]);
    assert_eq!(shelf.get_pickle("a").expect("get"), Some(int(1)));
}

#[test]
fn missing_store_is_not_found_without_create() {
    let dir = tempdir();
    let path = dir.path().join("missing.db");
    for (how, builder) in [
        ("read_only(true)", Shelf::builder(&path).read_only(true)),
        ("create(false)", Shelf::builder(&path).create(false)),
    ] {
        match builder.open() {
            Err(e @ Error::Io { .. }) => {
                let Error::Io { path: p, source } = &e else { unreachable!() };
                assert_eq!(*p, path, "{how}");
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{how}");
                message(&e, &[&shown(&path)]);
            }
            other => panic!("{how}: expected Io(NotFound), got {:?}", other.map(drop)),
        }
        assert!(!path.exists(), "{how} created something");
    }
}

#[test]
fn directory_that_is_not_a_store_is_not_found_without_create() {
    let dir = tempdir();
    let path = dir.path().join("empty");
    fs::create_dir(&path).expect("mkdir");
    for (how, builder) in [
        ("read_only(true)", Shelf::builder(&path).read_only(true)),
        ("create(false)", Shelf::builder(&path).create(false)),
    ] {
        match builder.open() {
            Err(e @ Error::Io { .. }) => {
                let Error::Io { source, .. } = &e else { unreachable!() };
                assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{how}");
                message(&e, &[&shown(&path)]);
            }
            other => panic!("{how}: expected Io(NotFound), got {:?}", other.map(drop)),
        }
        let left: Vec<_> = fs::read_dir(&path).expect("read_dir").collect();
        assert!(left.is_empty(), "{how} wrote into the directory: {left:?}");
    }
}

#[test]
fn unknown_format_version_is_refused() {
    let dir = tempdir();
    let path = store(&dir);
    // An older format, and a newer one (a store written by a later pickleshelf).
    for (version, hint) in
        [(1, "`pickleshelf export` of a format 1 build"), (FORMAT_VERSION + 1, "written by a newer pickleshelf")]
    {
        with_sled(&path, |db| {
            db.insert(b"mformat", &version.to_le_bytes()).expect("rewrite format");
        });
        for builder in [Shelf::builder(&path), Shelf::builder(&path).read_only(true)] {
            match builder.open() {
                Err(e @ Error::UnsupportedFormat { .. }) => {
                    let Error::UnsupportedFormat { path: p, found, supported } = &e else { unreachable!() };
                    assert_eq!((p, *found, *supported), (&path, version, FORMAT_VERSION));
                    let found = format!("format version {version}");
                    message(&e, &[&shown(&path), &found, &format!("reads version {FORMAT_VERSION}"), hint]);
                }
                other => panic!("expected UnsupportedFormat, got {:?}", other.map(drop)),
            }
        }
    }
}

#[test]
fn missing_format_record_is_corrupted() {
    let dir = tempdir();
    let path = store(&dir);
    with_sled(&path, |db| {
        db.remove(b"mformat").expect("remove format");
    });
    match Shelf::open(&path) {
        Err(e @ Error::Corrupted { .. }) => {
            message(&e, &[&shown(&path), "no format record"]);
        }
        other => panic!("expected Corrupted, got {:?}", other.map(drop)),
    }
}

#[test]
fn corrupted_inline_value_is_reported_for_its_key_only() {
    let dir = tempdir();
    let path = store(&dir);
    {
        let shelf = Shelf::open(&path).expect("open");
        shelf.insert_pickle("b", &int(2)).expect("insert b");
    }
    let digest = digest_of(&path, "a");
    rewrite_record(&path, b"ka", |record| {
        // Key record: [0x01][digest: 32][frame]; the frame's last byte is the pickle's STOP.
        assert_eq!(record[0], 1, "an inline record");
        let last = record.len() - 1;
        record[last] ^= 0x01;
    });
    let shelf = Shelf::open(&path).expect("open");
    match shelf.get_pickle("a") {
        Err(e @ Error::CorruptedObject { .. }) => {
            let Error::CorruptedObject { key, digest: d, .. } = &e else { unreachable!() };
            assert_eq!((key.as_str(), d), ("a", &digest));
            message(&e, &["\"a\"", &digest.to_hex()]);
        }
        other => panic!("expected CorruptedObject, got {other:?}"),
    }
    // Nothing else is affected.
    assert_eq!(shelf.get_pickle("b").expect("get b"), Some(int(2)));
    assert_eq!(shelf.get_pickle("big").expect("get big"), Some(big(20_000, 1)));
    assert!(shelf.contains_key("a").expect("contains_key"));
    assert_eq!(shelf.keys().collect::<Result<Vec<_>, _>>().expect("keys"), ["a", "b", "big"]);
    let items: Vec<_> = shelf.iter_pickle().collect();
    assert!(matches!(&items[0], Err(Error::CorruptedObject { key, .. }) if key == "a"), "{items:?}");
    assert!(items[1..].iter().all(Result::is_ok));
    let report = shelf.verify().expect("verify");
    assert_eq!(report.keys, 3);
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains("\"a\"") && report.problems[0].contains(&digest.to_hex()), "{report:?}");
    // gc cannot repair it, and does not drop the key.
    let report = shelf.gc().expect("gc");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(shelf.contains_key("a").expect("contains_key"));
    // Overwriting the key heals it.
    shelf.insert_pickle("a", &int(9)).expect("overwrite");
    assert_eq!(shelf.get_pickle("a").expect("get"), Some(int(9)));
    assert!(shelf.verify().expect("verify").is_ok());
}

/// The directory records of a closed store: each page's lower bound, pack, offset, length.
fn pages(path: &Path) -> Vec<(Vec<u8>, u32, u64, usize)> {
    let mut out = Vec::new();
    with_sled(path, |db| {
        for item in db.scan_prefix(b"p") {
            let (k, v) = item.expect("sled");
            let pack = u32::from_le_bytes(v[..4].try_into().unwrap());
            let offset = u64::from_le_bytes(v[4..12].try_into().unwrap());
            let len = u32::from_le_bytes(v[12..16].try_into().unwrap()) as usize;
            out.push((k[1..].to_vec(), pack, offset, len));
        }
    });
    out
}

#[test]
fn damaged_page_is_reported_for_its_keys_and_gc_keeps_it() {
    let dir = tempdir();
    let path = dir.path().join("s.db");
    let key = |i: u32| format!("key:{i:05}");
    let value = |i: u32| {
        let text = format!("value {i:05} and some text to fill it.");
        let mut p = vec![0x80, 4, 0x8c, text.len() as u8];
        p.extend_from_slice(text.as_bytes());
        p.extend_from_slice(b"\x94.");
        p
    };
    {
        let shelf = Shelf::open(&path).expect("create");
        for i in 0..5_000 {
            shelf.insert_pickle(&key(i), &value(i)).expect("insert");
        }
        shelf.close().expect("close");
    }
    let listed = pages(&path);
    assert!(listed.len() >= 4, "several pages: {}", listed.len());
    // Damage the second page: one flipped bit in the middle of its image.
    let (lo, pack, offset, len) = listed[1].clone();
    let hi = listed[2].0.clone();
    let pack_path = path.join("pages").join(format!("{pack:08x}.pack"));
    let mut bytes = fs::read(&pack_path).expect("read the pack");
    bytes[offset as usize + len / 2] ^= 0x10;
    fs::write(&pack_path, bytes).expect("write the pack");
    let in_damaged: Vec<u32> = (0..5_000)
        .filter(|&i| {
            let k = format!("k{}", key(i)).into_bytes();
            k >= lo && k < hi
        })
        .collect();
    assert!(!in_damaged.is_empty());
    let shelf = Shelf::open(&path).expect("a damaged page does not stop the store from opening");
    let lost = key(in_damaged[0]);
    match shelf.get_pickle(&lost) {
        Err(e @ Error::Corrupted { .. }) => {
            message(&e, &[&format!("{lost:?}"), "page", "checksum mismatch"]);
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    // Keys in other pages read as before, and a listing goes past the damaged page.
    assert_eq!(shelf.get_pickle(&key(0)).expect("get"), Some(value(0)));
    assert_eq!(shelf.get_pickle(&key(4_999)).expect("get"), Some(value(4_999)));
    let listing: Vec<_> = shelf.keys().collect();
    assert_eq!(listing.iter().filter(|k| k.is_err()).count(), 1, "one error for the one page");
    assert_eq!(listing.iter().filter(|k| k.is_ok()).count(), 5_000 - in_damaged.len());
    // Writes elsewhere commit; a write into the damaged page's range is refused (it needs
    // the key's previous record) and changes nothing.
    shelf.insert_pickle(&key(4_999), &value(1)).expect("insert");
    match shelf.insert_pickle(&lost, &value(2)) {
        Err(e @ Error::Corrupted { .. }) => {
            message(&e, &[&format!("{lost:?}"), "page", "checksum mismatch"]);
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    shelf.sync().expect("a sync that does not touch the damaged page");
    let report = shelf.verify().expect("verify");
    assert!(report.problems.iter().any(|p| p.contains("checksum mismatch")), "{report:?}");
    assert_eq!(report.unreadable, 1, "{report:?}");
    // gc cannot read the page, so it changes nothing: the keys stay (unreadable), and
    // everything else is intact.
    let report = shelf.gc().expect("gc");
    assert!(report.repaired.is_empty(), "{report:?}");
    assert!(!report.is_complete() && !report.is_ok(), "{report:?}");
    assert!(report.problems[0].contains("unreadable page") && report.problems[0].contains("checksum mismatch"));
    assert!(matches!(shelf.get_pickle(&lost), Err(Error::Corrupted { .. })));
    assert_eq!(shelf.get_pickle(&key(0)).expect("get"), Some(value(0)));
    assert_eq!(shelf.get_pickle(&key(4_999)).expect("get"), Some(value(1)));
    drop(shelf);
    let shelf = Shelf::open(&path).expect("reopen");
    assert_eq!(shelf.keys().filter(|k| k.is_ok()).count(), 5_000 - in_damaged.len());
    assert_eq!(shelf.get_pickle(&key(4_999)).expect("get"), Some(value(1)));
}

/// A page that cannot be read is reported with the keys an older image of it (still in
/// the packs) holds: the keys the user may have lost, by name.
#[test]
fn an_unreadable_page_names_the_keys_its_older_images_hold() {
    let dir = tempdir();
    let path = dir.path().join("s.db");
    {
        let shelf = Shelf::open(&path).expect("create");
        for i in 0..50 {
            shelf.insert_pickle(&format!("old:{i:02}"), &int(i)).expect("insert");
        }
        shelf.sync().expect("sync");
        shelf.insert_pickle("old:99", &int(99)).expect("insert");
        shelf.close().expect("close");
    }
    // One page, written twice: damage its newest image.
    let listed = pages(&path);
    assert_eq!(listed.len(), 1);
    let (_, pack, offset, len) = listed[0].clone();
    let pack_path = path.join("pages").join(format!("{pack:08x}.pack"));
    let mut bytes = fs::read(&pack_path).expect("read the pack");
    bytes[offset as usize + len / 2] ^= 0x01;
    fs::write(&pack_path, bytes).expect("write the pack");
    let shelf = Shelf::builder(&path).read_only(true).open().expect("open");
    let report = shelf.verify().expect("verify");
    let named = report.problems.iter().find(|p| p.contains("older images in the packs name")).expect("keys named");
    assert!(named.contains("\"old:00\"") && named.contains("and 30 more"), "{named}");
    assert!(!named.contains("old:99"), "the newest key is in no older image: {named}");
}

#[test]
fn corrupted_object_file_is_reported_for_every_key_that_shares_it() {
    let dir = tempdir();
    let path = store(&dir);
    {
        let shelf = Shelf::open(&path).expect("open");
        shelf.insert_pickle("big2", &big(20_000, 1)).expect("share the object");
        shelf.insert_pickle("other", &big(30_000, 2)).expect("another object");
    }
    let digest = digest_of(&path, "big");
    let file = object_file(&path, &digest);
    let mut bytes = fs::read(&file).expect("read the object file");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&file, &bytes).expect("write the object file");

    let shelf = Shelf::open(&path).expect("open");
    for key in ["big", "big2"] {
        match shelf.get_pickle(key) {
            Err(e @ Error::CorruptedObject { .. }) => {
                let Error::CorruptedObject { key: k, digest: d, .. } = &e else { unreachable!() };
                assert_eq!((k.as_str(), d), (key, &digest));
                message(&e, &[&format!("{key:?}"), &digest.to_hex()]);
            }
            other => panic!("{key}: expected CorruptedObject, got {other:?}"),
        }
    }
    assert_eq!(shelf.get_pickle("other").expect("get other"), Some(big(30_000, 2)));
    assert_eq!(shelf.get_pickle("a").expect("get a"), Some(int(1)));
    let report = shelf.verify().expect("verify");
    assert_eq!(report.problems.len(), 2, "{report:?}");
    for (problem, key) in report.problems.iter().zip(["big", "big2"]) {
        assert!(problem.contains(&format!("{key:?}")) && problem.contains(&digest.to_hex()), "{report:?}");
    }
}

#[test]
fn missing_object_file_is_corrupted() {
    let dir = tempdir();
    let path = store(&dir);
    let digest = digest_of(&path, "big");
    let file = object_file(&path, &digest);
    fs::remove_file(&file).expect("remove the object file");

    let shelf = Shelf::open(&path).expect("open");
    match shelf.get_pickle("big") {
        Err(e @ Error::Corrupted { .. }) => {
            message(&e, &[&digest.to_hex(), &shown(&file), "missing"]);
        }
        other => panic!("expected Corrupted, got {other:?}"),
    }
    assert_eq!(shelf.get_pickle("a").expect("get a"), Some(int(1)));
    let report = shelf.verify().expect("verify");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert!(report.problems[0].contains("\"big\"") && report.problems[0].contains("missing"), "{report:?}");
    // gc cannot bring it back, and keeps the key and the object record.
    let report = shelf.gc().expect("gc");
    assert_eq!(report.problems.len(), 1, "{report:?}");
    assert_eq!(report.objects, 1, "{report:?}");
    assert!(shelf.contains_key("big").expect("contains_key"));
}

const KEY: &[u8] = b"sixteen bytes ok, and more";

#[test]
fn wrong_auth_key_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("s.db");
    {
        let shelf = Shelf::builder(&path).auth_key(KEY).open().expect("create with a key");
        shelf.insert_pickle("a", &int(1)).expect("insert");
    }
    match Shelf::builder(&path).auth_key(b"another key of 16+ bytes".to_vec()).open() {
        Err(e @ Error::AuthKey { .. }) => {
            message(&e, &[&shown(&path), "not the store's key"]);
        }
        other => panic!("expected AuthKey, got {:?}", other.map(drop)),
    }
    let shelf = Shelf::builder(&path).auth_key(KEY).open().expect("the right key opens it");
    assert_eq!(shelf.get_pickle("a").expect("get"), Some(int(1)));
}

#[test]
fn missing_auth_key_is_refused() {
    let dir = tempdir();
    let path = dir.path().join("s.db");
    drop(Shelf::builder(&path).auth_key(KEY).open().expect("create with a key"));
    for builder in [Shelf::builder(&path), Shelf::builder(&path).read_only(true)] {
        match builder.open() {
            Err(e @ Error::AuthKey { .. }) => {
                message(&e, &[&shown(&path), "requires an auth key"]);
            }
            other => panic!("expected AuthKey, got {:?}", other.map(drop)),
        }
    }
}

#[test]
fn auth_key_on_a_store_without_one_is_refused() {
    let dir = tempdir();
    let path = store(&dir);
    match Shelf::builder(&path).auth_key(KEY).open() {
        Err(e @ Error::AuthKey { .. }) => {
            message(&e, &[&shown(&path), "created without an auth key"]);
        }
        other => panic!("expected AuthKey, got {:?}", other.map(drop)),
    }
    assert_eq!(Shelf::open(&path).expect("open").get_pickle("a").expect("get"), Some(int(1)));
}

/// Every file under `dir` with its bytes (`LOCK` aside: an open rewrites its pid).
fn tree_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d).expect("read_dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else if e.file_name() != "LOCK" {
                out.insert(p.clone(), fs::read(&p).expect("read"));
            }
        }
    }
    out
}

#[test]
fn invalid_options_are_config_errors_and_touch_nothing() {
    let dir = tempdir();
    let path = dir.path().join("s.db");
    let cases = [
        (Shelf::builder(&path).auth_key(vec![7u8; 15]), "15 bytes"),
        (Shelf::builder(&path).auth_key(Vec::new()), "0 bytes"),
        (Shelf::builder(&path).zstd_level(0), "zstd level 0"),
        (Shelf::builder(&path).zstd_level(20), "zstd level 20"),
        (Shelf::builder(&path).zstd_level(-5), "zstd level -5"),
        (Shelf::builder(&path).protocol(1), "protocol 1"),
        (Shelf::builder(&path).protocol(6), "protocol 6"),
    ];
    for (builder, named) in cases {
        match builder.open() {
            Err(e @ Error::Config(_)) => {
                message(&e, &[named]);
            }
            other => panic!("{named}: expected Config, got {:?}", other.map(drop)),
        }
        assert!(!path.exists(), "{named}: the store was created");
    }
    // Repair and salvage of an existing store check the options first too, and change
    // nothing in it.
    let existing = dir.path().join("existing.db");
    Shelf::open(&existing).and_then(|s| s.insert_pickle("k", &int(1)).and_then(|()| s.close())).expect("a store");
    let before = tree_of(&existing);
    let bad = || Shelf::builder(&existing).auth_key(vec![7u8; 15]);
    let into = dir.path().join("salvaged.db");
    for (what, result) in [
        ("repair", bad().repair().map(drop)),
        ("rebuild", bad().rebuild().map(drop)),
        ("salvage", bad().salvage(&into).map(drop)),
    ] {
        match result {
            Err(e @ Error::Config(_)) => {
                message(&e, &["15 bytes"]);
            }
            other => panic!("{what}: expected Config, got {other:?}"),
        }
        assert_eq!(tree_of(&existing), before, "{what} changed the store");
        assert!(!into.exists(), "{what}: salvage wrote a store");
    }
    // The limits themselves are accepted.
    for builder in [
        Shelf::builder(&path).auth_key(vec![7u8; 16]),
        Shelf::builder(dir.path().join("b")).zstd_level(1).protocol(2),
        Shelf::builder(dir.path().join("c")).zstd_level(19).protocol(5),
    ] {
        drop(builder.open().expect("options at the limits"));
    }
}

#[test]
fn key_longer_than_the_limit_is_invalid() {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s.db")).expect("open");
    let longest = "k".repeat(MAX_KEY_LEN);
    shelf.insert_pickle(&longest, &int(1)).expect("a key of exactly MAX_KEY_LEN bytes");
    // 1,025 bytes: ASCII, and 1,023 ASCII bytes plus a two-byte character.
    for long in ["k".repeat(MAX_KEY_LEN + 1), format!("{}é", "k".repeat(MAX_KEY_LEN - 1))] {
        match shelf.insert_pickle(&long, &int(2)) {
            Err(e @ Error::InvalidKey { .. }) => {
                let Error::InvalidKey { key, .. } = &e else { unreachable!() };
                assert!(long.starts_with(key.as_str()) && !key.is_empty(), "the key is shown: {key:?}");
                message(&e, &["1025 bytes", &format!("at most {MAX_KEY_LEN}")]);
            }
            other => panic!("expected InvalidKey, got {other:?}"),
        }
        // In a batch: nothing of the batch is applied.
        let mut b = Batch::new();
        b.insert_pickle("first", &int(3)).expect("a valid pickle");
        b.remove(&longest);
        b.insert_pickle(&long, &int(4)).expect("a valid pickle");
        assert!(matches!(shelf.apply(b), Err(Error::InvalidKey { .. })));
        assert!(!shelf.contains_key(&long).expect("contains_key"));
    }
    assert_eq!(shelf.keys().collect::<Result<Vec<_>, _>>().expect("keys"), std::slice::from_ref(&longest));
    assert_eq!(shelf.get_pickle(&longest).expect("get"), Some(int(1)));
}

#[test]
fn invalid_pickle_is_refused_and_the_old_value_stays() {
    let dir = tempdir();
    let shelf = Shelf::open(dir.path().join("s.db")).expect("open");
    shelf.insert_pickle("k", &int(5)).expect("insert");
    let cases: [&[u8]; 4] = [
        b"",                   // nothing at all
        b"\x80\x04K",          // ends inside BININT1
        b"\x80\x04\xff.",      // unknown opcode
        b"\x80\x04K\x01K\x02", // no STOP
    ];
    for bytes in cases {
        match shelf.insert_pickle("k", bytes) {
            Err(e @ Error::Pickle(pickle::Error::Decode { .. })) => {
                let Error::Pickle(pickle::Error::Decode { offset, .. }) = &e else { unreachable!() };
                message(&e, &["decode", &format!("byte {offset}")]);
            }
            other => panic!("{bytes:?}: expected Decode, got {other:?}"),
        }
        assert!(matches!(shelf.insert_pickle("new", bytes), Err(Error::Pickle(pickle::Error::Decode { .. }))));
        assert!(matches!(Batch::new().insert_pickle("k", bytes), Err(Error::Pickle(pickle::Error::Decode { .. }))));
    }
    match shelf.insert_pickle("k", b"\x80\x04\xff.") {
        Err(e @ Error::Pickle(pickle::Error::Decode { offset: 2, .. })) => {
            message(&e, &["byte 2", "0xff"]);
        }
        other => panic!("expected Decode at byte 2, got {other:?}"),
    }
    assert_eq!(shelf.get_pickle("k").expect("get"), Some(int(5)));
    assert!(!shelf.contains_key("new").expect("contains_key"));
    assert_eq!(shelf.len().expect("len"), 1);
}

/// Generation recorded in the store's witness file.
fn witness(path: &Path) -> u64 {
    let text = fs::read_to_string(path.join("WITNESS")).expect("read WITNESS");
    text.lines().find_map(|l| l.strip_prefix("generation ")).and_then(|g| g.parse().ok()).expect("a generation")
}

fn set_witness(path: &Path, generation: u64) {
    fs::write(path.join("WITNESS"), format!("pickleshelf witness\ngeneration {generation}\n")).expect("write WITNESS");
}

#[test]
fn store_older_than_its_witness_is_rolled_back() {
    let dir = tempdir();
    let path = store(&dir);
    let g = witness(&path);
    assert!(g > 0, "close synced");
    set_witness(&path, g + 5);
    for builder in [Shelf::builder(&path), Shelf::builder(&path).read_only(true)] {
        match builder.open() {
            Err(e @ Error::RolledBack { .. }) => {
                let Error::RolledBack { path: p, store_generation, witness_generation } = &e else { unreachable!() };
                assert_eq!((p, *store_generation, *witness_generation), (&path, g, g + 5));
                message(
                    &e,
                    &[&shown(&path), &format!("generation {g}"), &format!("generation {}", g + 5), "allow_rollback"],
                );
            }
            other => panic!("expected RolledBack, got {:?}", other.map(drop)),
        }
    }
    // Read-only with allow_rollback opens, but leaves the witness as it is.
    let shelf = Shelf::builder(&path).read_only(true).allow_rollback(true).open().expect("read-only, allowed");
    assert_eq!(shelf.get_pickle("a").expect("get"), Some(int(1)));
    drop(shelf);
    assert_eq!(witness(&path), g + 5);
    // allow_rollback(true) opens and resets the witness: later opens need nothing.
    let shelf = Shelf::builder(&path).allow_rollback(true).open().expect("allowed");
    assert_eq!(shelf.get_pickle("big").expect("get"), Some(big(20_000, 1)));
    assert!(witness(&path) <= g + 1);
    drop(shelf);
    let shelf = Shelf::open(&path).expect("open after the reset");
    assert!(shelf.verify().expect("verify").is_ok());
}

#[test]
fn unreadable_witness_is_corrupted() {
    let dir = tempdir();
    let path = store(&dir);
    fs::write(path.join("WITNESS"), "not a witness\n").expect("write WITNESS");
    match Shelf::open(&path) {
        Err(e @ Error::Corrupted { .. }) => {
            message(&e, &[&shown(&path.join("WITNESS")), "unreadable"]);
        }
        other => panic!("expected Corrupted, got {:?}", other.map(drop)),
    }
}

#[test]
fn damaged_sled_database_is_an_engine_error() {
    let dir = tempdir();
    let path = store(&dir);
    let conf = path.join("sled").join("conf");
    let mut bytes = fs::read(&conf).expect("read sled's conf");
    bytes[0] ^= 0xff;
    fs::write(&conf, &bytes).expect("write sled's conf");
    match Shelf::open(&path) {
        Err(e @ Error::Engine { .. }) => {
            // The error names the damaged file and says what to run.
            let Error::Engine { path: p, .. } = &e else { unreachable!() };
            assert_eq!(*p, conf);
            message(&e, &["storage engine", &shown(&conf), &format!("pickleshelf repair {}", shown(&path))]);
        }
        other => panic!("expected Engine, got {:?}", other.map(drop)),
    }
}
