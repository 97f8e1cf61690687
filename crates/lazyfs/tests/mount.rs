//! The file system mounted for real: requests pass through, the log records them in
//! order, and crash states follow fsync barriers. Skipped (with a message) where FUSE
//! cannot be mounted, except under `CI`, where that is a failure.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use pickleshelf_lazyfs::{Mode, Mount, Op};

fn mount(dir: &Path) -> Option<Mount> {
    let (b, m) = (dir.join("backing"), dir.join("mnt"));
    fs::create_dir_all(&b).unwrap();
    fs::create_dir_all(&m).unwrap();
    fs::write(b.join("old"), b"before the mount").unwrap();
    match Mount::new(&b, &m) {
        Ok(mount) => Some(mount),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: FUSE is not available here ({e}); CI runs this test as root with /dev/fuse");
            None
        }
        Err(e) => panic!("FUSE must be available under CI: {e}"),
    }
}

#[test]
fn passes_through_records_and_loses_what_was_not_synced() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = mount(dir.path()) else { return };
    let m = mount.path().to_path_buf();
    assert_eq!(fs::read(m.join("old")).unwrap(), b"before the mount");
    fs::create_dir(m.join("d")).unwrap();
    let mut f = File::create(m.join("d/tmp")).unwrap();
    f.write_all(&vec![1u8; 10_000]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    fs::rename(m.join("d/tmp"), m.join("d/final")).unwrap();
    let synced_names = mount.mark("renamed, directory not synced");
    File::open(m.join("d")).unwrap().sync_all().unwrap();
    File::open(&m).unwrap().sync_all().unwrap();
    let all_synced = mount.mark("all synced");
    let mut f = OpenOptions::new().write(true).open(m.join("d/final")).unwrap();
    f.write_all(&[2u8; 5000]).unwrap();
    drop(f);
    fs::remove_file(m.join("old")).unwrap();
    assert_eq!(fs::read(m.join("d/final")).unwrap()[..5000], [2u8; 5000]);
    let rec = mount.unmount().unwrap();
    // The backing directory holds what the program saw.
    assert_eq!(fs::read(dir.path().join("backing/d/final")).unwrap().len(), 10_000);
    assert!(rec.log.iter().any(|e| matches!(e.op, Op::Rename { .. })));
    let listing = rec.listing(0..rec.log.len());
    assert!(listing.contains("rename   d/tmp -> d/final"), "{listing}");
    assert!(listing.contains("fsyncdir d"), "{listing}");

    let file = |at: usize, mode: Mode, p: &str| rec.crash_state(at, mode).0.file(Path::new(p)).map(<[u8]>::to_vec);
    // Before the directories were fsynced, neither d nor the file survives a power cut.
    assert_eq!(file(synced_names, Mode::Durable, "d/final"), None);
    assert_eq!(file(synced_names, Mode::Durable, "d/tmp"), None);
    assert_eq!(file(synced_names, Mode::Everything, "d/final").map(|b| b.len()), Some(10_000));
    // After: the synced bytes under the new name.
    assert_eq!(file(all_synced, Mode::Durable, "d/final"), Some(vec![1u8; 10_000]));
    // The unsynced overwrite and removal: lost, or kept, or in part (pages).
    let end = rec.log.len();
    assert_eq!(file(end, Mode::Durable, "d/final"), Some(vec![1u8; 10_000]));
    assert_eq!(file(end, Mode::Durable, "old").as_deref(), Some(&b"before the mount"[..]));
    let mut both = vec![2u8; 5000];
    both.extend_from_slice(&[1u8; 5000]);
    assert_eq!(file(end, Mode::Everything, "d/final"), Some(both));
    assert_eq!(file(end, Mode::Everything, "old"), None);
    let states: std::collections::HashSet<_> =
        (0..40).map(|s| file(end, Mode::Subset(s), "d/final").map(|b| b[4096..4100].to_vec())).collect();
    assert!(states.len() == 2, "pages kept or lost: {states:?}");
    // The state materializes as a directory.
    let out = dir.path().join("crash");
    rec.materialize(all_synced, Mode::Durable, &out).unwrap();
    assert_eq!(fs::read(out.join("d/final")).unwrap(), vec![1u8; 10_000]);
}

#[test]
fn a_cut_fails_every_later_request() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = mount(dir.path()) else { return };
    let m = mount.path().to_path_buf();
    fs::write(m.join("a"), b"x").unwrap();
    let at = mount.cut_power();
    let err = fs::write(m.join("b"), b"y").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "EIO after the cut: {err}");
    let rec = mount.unmount().unwrap();
    assert_eq!(rec.log.len(), at);
    assert!(!dir.path().join("backing/b").exists());
}
