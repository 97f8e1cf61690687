//! Gives the zero padding of sled's log back to the file system.
//!
//! sled 0.34 writes its log in 512 KiB segments and, when it seals one, writes zeros up to
//! its end: a store whose sled records take 4 KiB still holds a fully allocated 512 KiB
//! `sled/db` (measured on W5: 508 KiB of zeros, 72% of the store's disk). Once sled has
//! closed its files, [`dig_holes`] punches holes (`fallocate(PUNCH_HOLE | KEEP_SIZE)`)
//! over runs of all-zero blocks. The file's length and every byte read from it stay the
//! same (a hole reads as zeros), so nothing sled sees changes; a punch lost in a crash
//! leaves the zeros in place, which is just as correct.
//!
//! Invariant: only called while nothing has the file open for writing (sled closed, the
//! store's `LOCK` and sled's own lock held), so no write of sled's can race a punch.

use std::path::Path;

/// Files larger than this are not scanned: their padding is a small share of them, and
/// reading them whole at every close would cost more than it returns.
pub(crate) const DIG_MAX: u64 = 16 << 20;
/// Holes are punched over runs of zeros at least this long (aligned to [`BLOCK`]).
pub(crate) const MIN_RUN: u64 = 64 << 10;
/// The unit of the scan: a file system block.
const BLOCK: usize = 4096;

/// Punches holes over `path`'s runs of at least [`MIN_RUN`] zero bytes, best effort: any
/// failure (no such file, a file system without hole punching) leaves the file as it is.
/// Returns the bytes punched.
#[cfg(target_os = "linux")]
pub(crate) fn dig_holes(path: &Path) -> u64 {
    use rustix::fs::{FallocateFlags, fallocate};
    use std::os::unix::fs::FileExt;

    let Ok(file) = std::fs::OpenOptions::new().read(true).write(true).open(path) else { return 0 };
    let len = match file.metadata() {
        Ok(m) if m.is_file() && m.len() <= DIG_MAX => m.len(),
        _ => return 0,
    };
    let mut punched = 0;
    let mut punch = |from: u64, to: u64| {
        let flags = FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE;
        if to - from >= MIN_RUN && fallocate(&file, flags, from, to - from).is_ok() {
            punched += to - from;
        }
    };
    // Read [`MIN_RUN`] bytes at a time (one syscall for 16 blocks), judged block by block.
    let mut chunk = vec![0u8; MIN_RUN as usize];
    let (mut at, mut run) = (0u64, None::<u64>);
    while at < len {
        let n = usize::try_from((len - at).min(MIN_RUN)).unwrap_or(chunk.len());
        if file.read_exact_at(&mut chunk[..n], at).is_err() {
            break;
        }
        for block in chunk[..n].chunks(BLOCK) {
            // An OR over the block vectorizes; `all(|b| b == 0)` stops early and does not.
            let zero = block.iter().fold(0u8, |acc, &b| acc | b) == 0;
            match (zero, run) {
                (true, None) => run = Some(at),
                (false, Some(from)) => {
                    punch(from, at);
                    run = None;
                }
                _ => {}
            }
            at += block.len() as u64;
        }
    }
    if let Some(from) = run {
        punch(from, at);
    }
    punched
}

/// Elsewhere there is no hole punching here: nothing is done.
#[cfg(not(target_os = "linux"))]
pub(crate) fn dig_holes(_path: &Path) -> u64 {
    0
}

#[cfg(all(test, target_os = "linux"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_runs_become_holes_and_the_bytes_read_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        // data, 256 KiB of zeros, data, a zero run too short to punch, data, zeros to the end
        // (not a whole block).
        let mut bytes = vec![7u8; 5000];
        bytes.resize(bytes.len() + (256 << 10), 0);
        bytes.extend_from_slice(&[1; 100]);
        bytes.resize(bytes.len() + 8192, 0);
        bytes.extend_from_slice(&[2; 4096]);
        bytes.resize(bytes.len() + (200 << 10) + 17, 0);
        std::fs::write(&path, &bytes).unwrap();
        let before = std::fs::metadata(&path).unwrap().blocks() * 512;

        let punched = dig_holes(&path);
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "contents changed");
        let after = std::fs::metadata(&path).unwrap().blocks() * 512;
        // Where the file system punches holes (ext4, xfs, btrfs, tmpfs all do), both zero
        // runs are gone from the allocation; the short run and the data stay.
        if punches_holes(dir.path()) {
            assert!(punched >= (200 + 200) << 10, "punched {punched}");
            assert!(after + (400 << 10) <= before, "allocated {before} -> {after}");
            assert!(after >= 3 * 4096, "data blocks freed: {after}");
        } else {
            assert_eq!(punched, 0);
        }
        // A second pass finds nothing new to free and still changes nothing.
        dig_holes(&path);
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
    }

    /// Whether the file system under `dir` punches holes (probed on a file of its own).
    fn punches_holes(dir: &Path) -> bool {
        use rustix::fs::{FallocateFlags, fallocate};
        let probe = dir.join("probe");
        std::fs::write(&probe, vec![1u8; 1 << 16]).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&probe).unwrap();
        fallocate(&f, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, 0, 1 << 16).is_ok()
    }

    #[test]
    fn missing_and_large_files_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(dig_holes(&dir.path().join("none")), 0);
        assert_eq!(dig_holes(dir.path()), 0);
        let big = dir.path().join("big");
        let f = std::fs::File::create(&big).unwrap();
        f.set_len(DIG_MAX + 1).unwrap();
        assert_eq!(dig_holes(&big), 0);
    }
}
