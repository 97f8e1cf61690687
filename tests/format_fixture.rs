//! On-disk format fixtures: `tests/fixtures/format-N/` holds two small stores written by
//! format N of pickleshelf — `plain.db`, and `keyed.db` made with an auth key — by
//! [`write_fixture`] below, run with the code of that format. The tests open copies of them
//! with this build and check every key, every checkpoint entry and every memo result
//! against [`fixture_values`]: the current format's reads as it is; an older one is
//! migrated by the first writable open, then read, and refused with a clear error by a
//! read-only open.
//!
//! The fixture of the current format is rewritten (after a format change, next to the older
//! ones, which stay) with
//!
//! ```sh
//! PICKLESHELF_WRITE_FIXTURE=1 cargo test --release --test format_fixture -- --ignored --exact write_fixture
//! ```

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use common::{Rng, bytes_pickle};
use pickleshelf::pickle::numpy;
use pickleshelf::{FORMAT_VERSION, Shelf};

/// The auth key of `keyed.db`.
const AUTH_KEY: &[u8] = b"pickleshelf fixture auth key, not a secret";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Text of `len` bytes from a small vocabulary (compressible, not trivially).
fn text(seed: u64, len: usize) -> Vec<u8> {
    let words = ["shelf", "pickle", "page", "pack", "store", "value", "key", "delta", "frame", "object"];
    let mut rng = Rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(words[(rng.next() % words.len() as u64) as usize].as_bytes());
        out.push(if rng.next().is_multiple_of(9) { b'\n' } else { b' ' });
    }
    out.truncate(len);
    out
}

/// What a fixture store holds.
struct Values {
    /// Keys and values after the last write.
    keys: BTreeMap<String, Vec<u8>>,
    /// Checkpoint `cp1`, taken before the last writes.
    checkpoint: BTreeMap<String, Vec<u8>>,
    /// Memo results of namespace `fx` (version `1`): argument and result.
    memo: Vec<(i64, String)>,
}

/// Keys and values, in the order they are written.
type Writes = Vec<(String, Vec<u8>)>;

/// The writes of a fixture store, in order: (key, value) before the checkpoint, then after.
fn fixture_writes(keyed: bool, format: u32) -> (Writes, Writes) {
    let mut rng = Rng(if keyed { 7 } else { 3 });
    let mut before = Vec::new();
    for i in 0..20 {
        before.push((format!("small/{i:02}"), bytes_pickle(&text(i, 20 + (rng.next() % 200) as usize))));
    }
    // An object file (incompressible, a frame over 4 KiB), shared by two keys.
    let noise: Vec<u8> = (0..4_500).map(|_| rng.next() as u8).collect();
    before.push(("big".into(), bytes_pickle(&noise)));
    before.push(("big-too".into(), bytes_pickle(&noise)));
    if !keyed {
        // Versions of one document (deltas against each other).
        let doc = text(99, 8_400);
        for v in 0..4u8 {
            let mut d = doc.clone();
            for j in 0..usize::from(v) * 3 {
                let at = j * 997 % d.len();
                d[at] = b'#';
            }
            before.push((format!("doc/v{v}"), bytes_pickle(&d)));
        }
        // Values of 4–64 KiB, enough to train the compression dictionary (1 MiB of them).
        // Each repeats a text of 300 bytes, so that its frame stays small.
        for i in 0..18 {
            before.push((format!("train/{i:02}"), bytes_pickle(&text(1000 + i, 300).repeat(200))));
        }
    }
    if format >= 4 {
        // A numpy array of 64 KiB of data: an aligned frame (format 4), mapped by
        // `Shelf::map_array`.
        let data: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
        let header = numpy::ArrayHeader::new(numpy::Dtype::UInt8, [256, 256], numpy::Order::C);
        before.push(("array".into(), numpy::write(&header, &data).expect("an array pickle")));
    }
    let mut after = vec![("small/03".to_owned(), bytes_pickle(b"changed after the checkpoint"))];
    if !keyed {
        // Compressed with the dictionary (trained by now).
        for i in 0..6 {
            after.push((format!("dict/{i}"), bytes_pickle(&text(2000 + i, 5_000))));
        }
    }
    (before, after)
}

fn fixture_values(keyed: bool, format: u32) -> Values {
    let (before, after) = fixture_writes(keyed, format);
    let mut keys: BTreeMap<String, Vec<u8>> = before.into_iter().collect();
    let checkpoint = keys.clone();
    keys.remove("small/07");
    keys.extend(after);
    let memo = (0..3).map(|a| (a, format!("result of {a}"))).collect();
    Values { keys, checkpoint, memo }
}

fn builder(path: &Path, keyed: bool) -> pickleshelf::ShelfBuilder {
    let b = Shelf::builder(path);
    if keyed { b.auth_key(AUTH_KEY) } else { b }
}

/// Writes `tests/fixtures/format-<FORMAT_VERSION>/` (see the module docs).
#[test]
#[ignore = "writes the fixture of the current format; run by hand after a format change"]
fn write_fixture() {
    if std::env::var_os("PICKLESHELF_WRITE_FIXTURE").is_none() {
        eprintln!("set PICKLESHELF_WRITE_FIXTURE=1 to rewrite the fixture");
        return;
    }
    let dir = fixtures().join(format!("format-{FORMAT_VERSION}"));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create the fixture directory");
    for keyed in [false, true] {
        let path = dir.join(if keyed { "keyed.db" } else { "plain.db" });
        let shelf = builder(&path, keyed).open().expect("create");
        let (before, after) = fixture_writes(keyed, FORMAT_VERSION);
        for (k, v) in &before {
            shelf.insert_pickle(k, v).expect("insert");
        }
        // Closing waits for the dictionary to be trained and stores it.
        shelf.close().expect("close");
        let shelf = builder(&path, keyed).open().expect("reopen");
        shelf.checkpoint("cp1").expect("checkpoint");
        shelf.remove("small/07").expect("remove");
        for (k, v) in &after {
            shelf.insert_pickle(k, v).expect("insert");
        }
        let memo = shelf.memo_builder("fx").version("1").open().expect("memo");
        for (a, v) in fixture_values(keyed, FORMAT_VERSION).memo {
            assert_eq!(memo.get_or_compute(&a, || v.clone()).expect("memo"), v);
        }
        drop(memo);
        let report = shelf.verify().expect("verify");
        assert!(report.is_ok(), "{report:?}");
        if !keyed {
            assert!(shelf.stats().expect("stats").dictionary.is_some(), "the fixture trains a dictionary");
        }
        shelf.close().expect("close");
        let _ = fs::remove_file(path.join("LOCK"));
    }
}

/// Every file of `from` copied to `to`.
fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create a copy");
    for e in fs::read_dir(from).expect("read the fixture").flatten() {
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy a file");
        }
    }
}

/// Checks every value of a fixture store of `format` (opened as `shelf`).
fn check(shelf: &Shelf, keyed: bool, format: u32) {
    let want = fixture_values(keyed, format);
    let got: BTreeMap<String, Vec<u8>> = shelf.iter_pickle().map(|r| r.expect("read a key")).collect();
    assert!(got == want.keys, "keys differ: {:?} against {:?}", got.keys(), want.keys.keys());
    for (k, v) in &want.checkpoint {
        assert_eq!(shelf.get_pickle_at("cp1", k).expect("read the checkpoint").as_ref(), Some(v), "cp1 {k}");
    }
    assert_eq!(shelf.checkpoint_keys("cp1").expect("checkpoint keys").len(), want.checkpoint.len());
    let memo = shelf.memo_builder("fx").version("1").open().expect("memo");
    for (a, v) in &want.memo {
        let got: String = memo.get_or_compute(a, || panic!("memo result {a} was lost")).expect("memo");
        assert_eq!(&got, v, "memo {a}");
    }
    let report = shelf.verify().expect("verify");
    assert!(report.is_ok() && report.leftovers.is_empty(), "{report:?}");
    if format >= 4 {
        let m = shelf.map_array("array").expect("map").expect("the array");
        assert!(m.is_mapped(), "format 4 stores arrays in aligned frames");
        assert_eq!(m.as_slice::<u8>().expect("in place")[300], (300 % 251) as u8);
        m.verify().expect("the mapped array verifies");
    }
}

#[test]
fn the_current_format_fixture_reads_back() {
    let dir = fixtures().join(format!("format-{FORMAT_VERSION}"));
    assert!(dir.join("plain.db").is_dir(), "no fixture of format {FORMAT_VERSION}: see the module docs");
    for keyed in [false, true] {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let path = tmp.path().join("s.db");
        copy_dir(&dir.join(if keyed { "keyed.db" } else { "plain.db" }), &path);
        check(&builder(&path, keyed).read_only(true).open().expect("open read-only"), keyed, FORMAT_VERSION);
        check(&builder(&path, keyed).open().expect("open"), keyed, FORMAT_VERSION);
    }
}

/// Format 4 only added a frame codec: a format 3 store reads as it is (read-only too), and
/// the first writable open marks it format 4, after which it takes aligned frames.
#[test]
fn format_3_stores_read_as_they_are_and_take_format_4_frames() {
    let dir = fixtures().join("format-3");
    for keyed in [false, true] {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let path = tmp.path().join("s.db");
        copy_dir(&dir.join(if keyed { "keyed.db" } else { "plain.db" }), &path);
        let reader = builder(&path, keyed).read_only(true).open().expect("open read-only");
        check(&reader, keyed, 3);
        assert_eq!(reader.stats().expect("stats").format_version, 3, "a reader leaves it format 3");
        drop(reader);
        let shelf = builder(&path, keyed).open().expect("open writable");
        check(&shelf, keyed, 3);
        assert_eq!(shelf.stats().expect("stats").format_version, FORMAT_VERSION, "a writer marks it");
        let data = vec![7u8; 70_000];
        let header = numpy::ArrayHeader::new(numpy::Dtype::UInt8, [70_000], numpy::Order::C);
        shelf.insert_array_bytes("new-array", &header, &data).expect("insert an array");
        shelf.close().expect("close");
        let shelf = builder(&path, keyed).read_only(true).open().expect("reopen");
        assert!(shelf.map_array("new-array").expect("map").expect("stored").is_mapped());
        shelf.remove("new-array").expect_err("read-only");
        drop(shelf);
        let shelf = builder(&path, keyed).open().expect("reopen writable");
        shelf.remove("new-array").expect("remove");
        check(&shelf, keyed, 3);
    }
}

#[test]
fn format_2_stores_are_upgraded_by_a_writable_open() {
    let dir = fixtures().join("format-2");
    for keyed in [false, true] {
        let tmp = tempfile::tempdir().expect("temporary directory");
        let path = tmp.path().join("s.db");
        copy_dir(&dir.join(if keyed { "keyed.db" } else { "plain.db" }), &path);
        // A reader refuses it, naming both versions and what to do.
        match builder(&path, keyed).read_only(true).open() {
            Err(e @ pickleshelf::Error::UnsupportedFormat { found: 2, supported: FORMAT_VERSION, .. }) => {
                let text = e.to_string();
                let current = format!("version {FORMAT_VERSION}");
                assert!(text.contains("version 2") && text.contains(&current) && text.contains("upgrade"), "{text}");
            }
            other => panic!("expected UnsupportedFormat, got {:?}", other.map(|_| ())),
        }
        let shelf = builder(&path, keyed).open().expect("open writable: upgrades");
        check(&shelf, keyed, 2);
        assert_eq!(shelf.stats().expect("stats").format_version, FORMAT_VERSION);
        drop(shelf);
        check(&builder(&path, keyed).read_only(true).open().expect("open read-only"), keyed, 2);
        check(&builder(&path, keyed).open().expect("open"), keyed, 2);
        // The format 2 pack is gone (deleted once the upgrade was durable).
        let first = fs::read(path.join("pages/00000001.pack")).ok();
        assert!(first.is_none_or(|b| b.get(16) != Some(&1)), "the format 2 pack is still there");
    }
}

/// Salvage of a healthy store copies everything (memo results and checkpoints included)
/// and recovers nothing; a format 2 store is read as it is (and left as it is).
#[test]
fn salvage_copies_every_fixture_whole() {
    for format in [2, 3, FORMAT_VERSION] {
        for keyed in [false, true] {
            let tmp = tempfile::tempdir().expect("temporary directory");
            let path = tmp.path().join("s.db");
            let new = tmp.path().join("new.db");
            copy_dir(
                &fixtures().join(format!("format-{format}")).join(if keyed { "keyed.db" } else { "plain.db" }),
                &path,
            );
            let report = builder(&path, keyed).salvage(&new).expect("salvage");
            assert!(report.is_complete() && report.recovered == 0, "format {format}, keyed {keyed}: {report:?}");
            check(&builder(&new, keyed).open().expect("open the new store"), keyed, format);
            if format == 2 {
                assert!(matches!(
                    builder(&path, keyed).read_only(true).open(),
                    Err(pickleshelf::Error::UnsupportedFormat { found: 2, .. })
                ));
            }
        }
    }
}
