//! What every case measures besides time: memory (as `python_baselines.py` does, from
//! `/proc/self/status`) and disk usage (as `du`).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

fn status_kb(field: &str) -> Option<f64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    text.lines().find_map(|l| l.strip_prefix(field)?.strip_prefix(':')?.trim().strip_suffix("kB")?.trim().parse().ok())
}

/// VmHWM (kB) just before [`rss_mark`] reset it: the peak of data generation.
static HWM_BEFORE_MARK_KB: AtomicU64 = AtomicU64::new(0);

/// The current RSS in MB, taken after data generation and just before the store opens;
/// also resets the kernel's peak (VmHWM) so [`rss_peaks`] sees the operations only.
pub fn rss_mark() -> f64 {
    HWM_BEFORE_MARK_KB.store(status_kb("VmHWM").unwrap_or(0.0) as u64, Ordering::Relaxed);
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    status_kb("VmRSS").map_or(f64::NAN, |kb| kb / 1024.0)
}

/// (peak RSS since [`rss_mark`], peak RSS of the whole process) in MB.
///
/// `python_baselines.py` reads the second from `ru_maxrss`, which the kernel derives
/// from the same counter the mark resets, so there it is also (about) the peak since the
/// mark; compare `peak_ops_rss_mb` across languages.
pub fn rss_peaks() -> (f64, f64) {
    let since = status_kb("VmHWM").unwrap_or(f64::NAN);
    let before = HWM_BEFORE_MARK_KB.load(Ordering::Relaxed) as f64;
    (since / 1024.0, since.max(before) / 1024.0)
}

/// (allocated bytes, apparent bytes) of everything under `dir` (not `dir` itself),
/// directories included, like `du` and like the Python harness.
pub fn disk_usage(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut alloc, mut apparent) = (0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(m) = std::fs::symlink_metadata(e.path()) else { continue };
            alloc += m.blocks() * 512;
            apparent += m.size();
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (alloc, apparent)
}

/// Seconds since `t0`.
pub fn since(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64()
}
