//! The group-commit settings of `ShelfBuilder`, `Shelf::temporary` and
//! `Shelf::size_on_disk`.

use std::time::{Duration, Instant};

use pickleshelf::{Error, Shelf};

#[test]
fn commit_settings_out_of_range_are_refused_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let cases: [(pickleshelf::ShelfBuilder, &str); 4] = [
        (Shelf::builder(&path).commit_interval(Duration::ZERO), "commit interval 0ns is outside 1ms..=1h"),
        (Shelf::builder(&path).commit_interval(Duration::from_secs(3601)), "commit interval 3601s is outside 1ms..=1h"),
        (Shelf::builder(&path).buffer_bytes(1000), "write buffer of 1000 bytes is outside 64 KiB..=1 GiB"),
        (Shelf::builder(&path).buffer_bytes((1 << 30) + 1), "write buffer of 1073741825 bytes is outside"),
    ];
    for (builder, want) in cases {
        let err = builder.open().unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err:?}");
        assert!(err.to_string().contains(want), "{err} lacks {want:?}");
        assert!(!path.exists(), "nothing is created");
    }
    // The bounds themselves are accepted.
    Shelf::builder(&path).commit_interval(Duration::from_millis(1)).buffer_bytes(64 << 10).open().unwrap();
}

/// Waits until `cond` holds, up to 10 s.
fn eventually(mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn a_long_commit_interval_keeps_writes_buffered_and_a_short_one_commits_them() {
    let dir = tempfile::tempdir().unwrap();
    // Long interval: writes stay in memory until sync.
    let slow = dir.path().join("slow");
    let shelf = Shelf::builder(&slow).commit_interval(Duration::from_secs(3600)).open().unwrap();
    shelf.sync().unwrap();
    let synced = shelf.stats().unwrap().pages;
    shelf.insert("k", &1).unwrap();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(shelf.stats().unwrap().pages, synced, "nothing committed within the interval");
    shelf.sync().unwrap();
    assert!(shelf.stats().unwrap().pages > synced);
    drop(shelf);
    // Short interval: committed by the background thread without a sync.
    let fast = dir.path().join("fast");
    let shelf = Shelf::builder(&fast).commit_interval(Duration::from_millis(5)).open().unwrap();
    let before = shelf.stats().unwrap().pages;
    shelf.insert("k", &1).unwrap();
    assert!(eventually(|| shelf.stats().unwrap().pages > before), "committed without a sync");
    assert_eq!(shelf.get::<i64>("k").unwrap(), Some(1));
}

#[test]
fn a_small_write_buffer_commits_as_it_fills() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let shelf = Shelf::builder(&path).commit_interval(Duration::from_secs(3600)).buffer_bytes(64 << 10).open().unwrap();
    // 1 MB of small values: many commits of 64 KiB without any sync.
    for i in 0..1000 {
        shelf.insert(&format!("k{i:04}"), &vec![i as u8; 1000]).unwrap();
    }
    assert!(shelf.stats().unwrap().pages > 1, "the full buffer was committed");
    drop(shelf);
    let shelf = Shelf::open(&path).unwrap();
    assert_eq!(shelf.len().unwrap(), 1000);
}

#[test]
fn a_temporary_store_is_deleted_when_its_last_handle_goes() {
    let shelf = Shelf::temporary().unwrap();
    let path = shelf.path().to_path_buf();
    let parent = path.parent().unwrap().to_path_buf();
    let clone = shelf.clone();
    let memo = shelf.memo("f").unwrap();
    shelf.insert("k", &vec![7u8; 200_000]).unwrap();
    shelf.sync().unwrap();
    drop(shelf);
    assert_eq!(clone.get::<Vec<u8>>("k").unwrap().map(|v| v.len()), Some(200_000));
    drop(clone);
    assert!(path.exists(), "the memo still holds the store");
    drop(memo);
    assert!(!path.exists() && !parent.exists(), "deleted with its directory");
    // Two temporary stores are two stores.
    let (a, b) = (Shelf::temporary().unwrap(), Shelf::temporary().unwrap());
    a.insert("k", &1).unwrap();
    assert!(b.is_empty().unwrap());
    assert_ne!(a.path(), b.path());
}

#[test]
fn size_on_disk_is_the_allocated_size() {
    let shelf = Shelf::temporary().unwrap();
    shelf.sync().unwrap();
    let empty = shelf.size_on_disk();
    assert!(empty > 0);
    let noise: Vec<u64> = (0..200_000u64).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).collect();
    shelf.insert("big", &noise).unwrap();
    shelf.sync().unwrap();
    let full = shelf.size_on_disk();
    // 1.6 MB of incompressible data: at least that much more is allocated.
    assert!(full >= empty + 1_500_000, "{empty} -> {full}");
    assert_eq!(full, shelf.stats().unwrap().allocated_bytes, "the figure `stats` reports");
}
