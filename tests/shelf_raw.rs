//! The store with raw pickle bytes: put/get/remove, reopen, large objects, refcounts,
//! batches, verify and gc.

use pickleshelf::{Batch, Error, Shelf, pickle};

/// `pickle.dumps(n, protocol=4)` for small non-negative n.
fn small_int(n: u8) -> Vec<u8> {
    vec![0x80, 4, b'K', n, b'.']
}

/// A protocol-4 pickle of a bytes object of `len` bytes filled from `seed` (outside a frame,
/// like CPython writes large bytes).
fn big_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = vec![0x80, 4, 0x8e];
    out.extend_from_slice(&(len as u64).to_le_bytes());
    let mut s = seed;
    for _ in 0..len {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        out.push((s >> 59) as u8); // low entropy: compresses somewhat
    }
    out.push(0x94);
    out.push(b'.');
    out
}

#[test]
fn put_get_remove_reopen() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
    let path = dir.path().join("s.db");
    {
        let shelf = Shelf::open(&path)?;
        assert_eq!(shelf.get_pickle("a")?, None);
        shelf.insert_pickle("a", &small_int(1))?;
        shelf.insert_pickle("b", &small_int(2))?;
        shelf.insert_pickle("a", &small_int(3))?;
        assert_eq!(shelf.get_pickle("a")?, Some(small_int(3)));
        assert!(shelf.remove("b")?);
        assert!(!shelf.remove("b")?);
        assert_eq!(shelf.len()?, 1);
        shelf.close()?;
    }
    let shelf = Shelf::open(&path)?;
    assert_eq!(shelf.get_pickle("a")?, Some(small_int(3)));
    assert_eq!(shelf.keys().collect::<Result<Vec<_>, _>>()?, vec!["a".to_string()]);
    assert!(shelf.verify()?.is_ok());
    Ok(())
}

#[test]
fn large_objects_are_shared_and_reclaimed() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
    let path = dir.path().join("s.db");
    let big = big_bytes(200_000, 7);
    let other = big_bytes(150_000, 8);
    let shelf = Shelf::open(&path)?;
    shelf.insert_pickle("x", &big)?;
    shelf.insert_pickle("y", &big)?;
    shelf.insert_pickle("z", &other)?;
    assert_eq!(shelf.digest("x")?, shelf.digest("y")?);
    let report = shelf.verify()?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.keys, report.objects, report.files), (3, 2, 2));
    shelf.remove("x")?;
    shelf.insert_pickle("z", &small_int(1))?;
    shelf.sync()?;
    let report = shelf.verify()?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.keys, report.objects, report.files), (2, 1, 1));
    assert_eq!(shelf.get_pickle("y")?, Some(big.clone()));
    let mut b = Batch::new();
    b.insert_pickle("p", &other)?;
    b.insert_pickle("q", &other)?;
    b.remove("y");
    shelf.apply(b)?;
    shelf.sync()?;
    let report = shelf.verify()?;
    assert!(report.is_ok(), "{report:?}");
    assert_eq!((report.keys, report.objects, report.files), (3, 1, 1));
    drop(shelf);
    let shelf = Shelf::open(&path)?;
    assert_eq!(shelf.get_pickle("q")?, Some(other));
    Ok(())
}

#[test]
fn second_handle_is_locked_out() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
    let path = dir.path().join("s.db");
    let _a = Shelf::open(&path)?;
    match Shelf::open(&path) {
        Err(Error::Locked { path: p, .. }) => assert!(p.ends_with("LOCK")),
        other => panic!("expected Locked, got {:?}", other.map(|_| ())),
    }
    Ok(())
}

#[test]
fn bad_pickle_is_rejected_and_nothing_changes() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
    let shelf = Shelf::open(dir.path().join("s.db"))?;
    shelf.insert_pickle("k", &small_int(5))?;
    assert!(matches!(shelf.insert_pickle("k", b"\x80\x04K"), Err(Error::Pickle(pickle::Error::Decode { .. }))));
    assert_eq!(shelf.get_pickle("k")?, Some(small_int(5)));
    Ok(())
}

/// `pickle.dumps(text, 4)` of a str of `len` bytes or more: words of a small vocabulary.
fn text_pickle(i: u32, len: usize) -> Vec<u8> {
    let words = ["user", "likes", "red", "green", "blue", "score", "level", "item", "=", ";"];
    let mut text = format!("record {i}:");
    let mut n = i as usize;
    while text.len() < len {
        n = n.wrapping_mul(2_654_435_761).wrapping_add(12_345);
        text.push(' ');
        text.push_str(words[(n >> 16) % words.len()]);
    }
    let mut p = vec![0x80, 4, 0x8d];
    p.extend_from_slice(&(text.len() as u64).to_le_bytes());
    p.extend_from_slice(text.as_bytes());
    p.extend_from_slice(b"\x94.");
    p
}

#[test]
fn values_of_4_to_64_kib_train_a_dictionary_and_small_ones_do_not() -> Result<(), Error> {
    let dir = tempfile::tempdir().map_err(|e| Error::Config(e.to_string()))?;
    // Small values are framed raw in pages compressed whole: they never train one.
    let small = dir.path().join("small.db");
    {
        let shelf = Shelf::open(&small)?;
        for i in 0..3000 {
            shelf.insert_pickle(&format!("k{i}"), &text_pickle(i, 60))?;
        }
        shelf.close()?;
    }
    assert_eq!(Shelf::open(&small)?.stats()?.dictionary, None, "small values trained a dictionary");

    // 5 KB values: past 1 MiB of them, a dictionary is trained and later ones use it.
    let path = dir.path().join("s.db");
    {
        let shelf = Shelf::open(&path)?;
        for i in 0..400 {
            shelf.insert_pickle(&format!("k{i}"), &text_pickle(i, 5000))?;
        }
        shelf.close()?;
    }
    let shelf = Shelf::open(&path)?;
    assert_eq!(shelf.stats()?.dictionary, Some(1), "no dictionary after 2 MB of 5 KB values");
    shelf.insert_pickle("new", &text_pickle(9999, 5000))?;
    let info = shelf.key_info("new").find_map(|k| k.ok().filter(|k| k.key == "new"));
    let compression = info.and_then(|k| k.compression).map(|c| c.to_string());
    assert_eq!(compression.as_deref(), Some("zstd+dict1"), "a new 5 KB value does not use the dictionary");
    for i in (0..400).step_by(37) {
        assert_eq!(shelf.get_pickle(&format!("k{i}"))?, Some(text_pickle(i, 5000)));
    }
    assert!(shelf.verify()?.is_ok());
    Ok(())
}
