//! What a power cut leaves: from a [`Recording`] and a cut point, the tree a disk would
//! hold afterwards.
//!
//! The model (a page cache in front of a journaling file system, as LazyFS and ALICE
//! assume it):
//! - An op is **durable** at a cut when a barrier after it, before the cut, covers it: the
//!   data of a file (writes, length changes) by an `fsync`/`fdatasync` of that file; a name
//!   change (create, unlink, rmdir) by an `fsync` of its directory; a rename — old and new
//!   name together, atomically — by an `fsync` of the directory of its new name.
//! - Every durable op survives. Of the other (unsynced) ops, a [`Mode`] says which survive:
//!   none, all, or a subset the kernel might have written: each page of unsynced data
//!   written back (as it was at some moment) or not, and each directory's unsynced name
//!   changes a prefix, in order.
//! - Inodes that no surviving name reaches are lost.
//!
//! Invariant: a crash state depends only on the log up to the cut and the mode (and seed),
//! so any state can be computed again, and a failure reproduced, from those alone.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use crate::Error;
use crate::image::{Image, PAGE};
use crate::log::{Entry, Ino, Kind, Op};

/// Which unsynced ops survive a cut (durable ops always do).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// None: only what fsync made durable (LazyFS's power cut).
    Durable,
    /// All of them: the state the running program saw (what a killed process leaves).
    Everything,
    /// A random subset the kernel might have written, drawn from the seed: a share `q` of
    /// the unsynced pages (`q` itself drawn), each as it was after one of the writes that
    /// touched it, and for each directory a prefix of its unsynced name changes.
    Subset(u64),
    /// Everything except op `i` of the log (ALICE's "one operation not persisted").
    AllBut(usize),
    /// Everything except the unsynced name changes of directory `dir` from its `keep`-th
    /// on (ALICE: a directory's operations persisted up to a point).
    NamesUpTo {
        /// The directory.
        dir: Ino,
        /// How many of its unsynced name changes survive.
        keep: usize,
    },
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Durable => write!(f, "durable"),
            Mode::Everything => write!(f, "everything"),
            Mode::Subset(seed) => write!(f, "subset:{seed}"),
            Mode::AllBut(i) => write!(f, "all-but:{i}"),
            Mode::NamesUpTo { dir, keep } => write!(f, "names-up-to:{dir}:{keep}"),
        }
    }
}

impl std::str::FromStr for Mode {
    type Err = String;

    /// Parses what `Display` writes (`durable`, `everything`, `subset:SEED`, `all-but:I`,
    /// `names-up-to:DIR:KEEP`).
    fn from_str(s: &str) -> Result<Mode, String> {
        let bad = || format!("not a crash mode: {s:?}");
        let num = |t: &str| t.parse::<u64>().map_err(|_| bad());
        let parts: Vec<&str> = s.split(':').collect();
        match parts.as_slice() {
            ["durable"] => Ok(Mode::Durable),
            ["everything"] => Ok(Mode::Everything),
            ["subset", seed] => Ok(Mode::Subset(num(seed)?)),
            ["all-but", i] => Ok(Mode::AllBut(num(i)? as usize)),
            ["names-up-to", dir, keep] => Ok(Mode::NamesUpTo { dir: num(dir)?, keep: num(keep)? as usize }),
            _ => Err(bad()),
        }
    }
}

/// What a computed crash state kept and lost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Ops before the cut that no barrier covered.
    pub unsynced: usize,
    /// Of those, ops of which something survived (a page, a name change).
    pub kept: usize,
}

/// Everything a mount saw: the tree it started from and the log of changes.
#[derive(Clone, Debug)]
pub struct Recording {
    /// The tree under the mount when it was mounted.
    pub base: Arc<Image>,
    /// The changes, in order.
    pub log: Vec<Entry>,
}

/// SplitMix64: small and seedable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

impl Recording {
    /// For each op before `at`: true when a barrier before `at` covers it (see the module
    /// docs). Marks and fsyncs count as durable.
    pub fn durable(&self, at: usize) -> Vec<bool> {
        let at = at.min(self.log.len());
        let mut durable = vec![true; at];
        let (mut files, mut dirs) = (HashSet::new(), HashSet::new());
        for i in (0..at).rev() {
            let op = &self.log[i].op;
            match op {
                Op::Fsync { ino, kind: Kind::File } => {
                    files.insert(*ino);
                }
                Op::Fsync { ino, kind: Kind::Dir } => {
                    dirs.insert(*ino);
                }
                _ => {
                    if let Some(ino) = op.data_of() {
                        durable[i] = files.contains(&ino);
                    } else if let Some(dir) = op.names_of() {
                        durable[i] = dirs.contains(&dir);
                    }
                }
            }
        }
        durable
    }

    /// The tree a power cut after the first `at` ops leaves, in `mode`, and what it kept.
    pub fn crash_state(&self, at: usize, mode: Mode) -> (Image, Outcome) {
        let at = at.min(self.log.len());
        let durable = self.durable(at);
        // Each directory's unsynced name changes, in order: how many survive.
        let mut pending: BTreeMap<Ino, Vec<usize>> = BTreeMap::new();
        for (i, e) in self.log[..at].iter().enumerate() {
            if let Some(dir) = e.op.names_of()
                && !durable[i]
            {
                pending.entry(dir).or_default().push(i);
            }
        }
        let mut rng = Rng(match mode {
            Mode::Subset(seed) => seed ^ 0x5eed_0fc0_ffee,
            _ => 0,
        });
        let share = rng.below(1001);
        let mut names_kept: HashSet<usize> = HashSet::new();
        for (dir, ops) in &pending {
            let keep = match mode {
                Mode::Durable => 0,
                Mode::Everything | Mode::AllBut(_) => ops.len(),
                Mode::Subset(_) => rng.below(ops.len() as u64 + 1) as usize,
                Mode::NamesUpTo { dir: d, keep } if d == *dir => keep.min(ops.len()),
                Mode::NamesUpTo { .. } => ops.len(),
            };
            names_kept.extend(ops.iter().take(keep).copied());
        }
        if let Mode::AllBut(i) = mode {
            names_kept.remove(&i);
        }
        let mut live = (*self.base).clone();
        let mut crash = (*self.base).clone();
        let mut outcome = Outcome::default();
        for (i, e) in self.log[..at].iter().enumerate() {
            let op = &e.op;
            live.apply(op);
            if durable[i] {
                crash.apply(op);
                continue;
            }
            outcome.unsynced += 1;
            let keep_op = match mode {
                Mode::Durable => false,
                Mode::AllBut(j) => j != i,
                _ => true,
            };
            match op {
                Op::Write { ino, offset, data } if !data.is_empty() => {
                    let mut kept = false;
                    for page in offset / PAGE..=(offset + data.len() as u64 - 1) / PAGE {
                        let keep = match mode {
                            Mode::Subset(_) => rng.below(1000) < share,
                            _ => keep_op,
                        };
                        if keep {
                            crash.copy_page(&live, *ino, page);
                            kept = true;
                        }
                    }
                    outcome.kept += usize::from(kept);
                }
                Op::SetLen { .. } => {
                    let keep = match mode {
                        Mode::Subset(_) => rng.below(1000) < share,
                        _ => keep_op,
                    };
                    if keep {
                        crash.apply(op);
                        outcome.kept += 1;
                    }
                }
                _ if op.names_of().is_some() && names_kept.contains(&i) => {
                    crash.apply(op);
                    outcome.kept += 1;
                }
                _ => {}
            }
        }
        (crash, outcome)
    }

    /// Writes the crash state of ([`Recording::crash_state`]) `at` and `mode` under
    /// `target` (created; it must not hold anything yet).
    ///
    /// # Errors
    /// [`Error::Io`] when the tree cannot be written.
    pub fn materialize(&self, at: usize, mode: Mode, target: &Path) -> Result<Outcome, Error> {
        let (image, outcome) = self.crash_state(at, mode);
        image.write_to(target)?;
        Ok(outcome)
    }

    /// ALICE's crash states at cut `at`: only the durable ops; everything; everything but
    /// one unsynced op, for each; and for each directory with unsynced name changes, each
    /// prefix of them.
    pub fn exhaustive(&self, at: usize) -> Vec<Mode> {
        let at = at.min(self.log.len());
        let durable = self.durable(at);
        let mut modes = vec![Mode::Durable, Mode::Everything];
        let mut per_dir: BTreeMap<Ino, usize> = BTreeMap::new();
        for (i, e) in self.log[..at].iter().enumerate() {
            if durable[i] {
                continue;
            }
            modes.push(Mode::AllBut(i));
            if let Some(dir) = e.op.names_of() {
                *per_dir.entry(dir).or_insert(0) += 1;
            }
        }
        for (dir, n) in per_dir {
            // keep = n is `Everything`; keep = n - 1 drops the last one, as `AllBut` does.
            for keep in 0..n.saturating_sub(1) {
                modes.push(Mode::NamesUpTo { dir, keep });
            }
        }
        modes
    }

    /// The positions just after each fsync in `range`.
    pub fn after_fsyncs(&self, range: Range<usize>) -> Vec<usize> {
        let end = range.end.min(self.log.len());
        (range.start..end).filter(|&i| self.log[i].op.is_fsync()).map(|i| i + 1).collect()
    }

    /// The marks, with their positions (a mark at position `i` is after the first `i` ops).
    pub fn marks(&self) -> Vec<(usize, &str)> {
        self.log
            .iter()
            .enumerate()
            .filter_map(|(i, e)| match &e.op {
                Op::Mark(t) => Some((i, t.as_str())),
                _ => None,
            })
            .collect()
    }

    /// The ops of `range`, one line each (record mode): position, op, path. Runs of
    /// writes to one file are folded into one line with their count and byte total.
    pub fn listing(&self, range: Range<usize>) -> String {
        let end = range.end.min(self.log.len());
        let mut out = String::new();
        let mut i = range.start;
        while i < end {
            let e = &self.log[i];
            if let Op::Write { ino, .. } = e.op {
                let mut j = i;
                let mut bytes = 0;
                while j < end && matches!(self.log[j].op, Op::Write { ino: w, .. } if w == ino) {
                    if let Op::Write { data, .. } = &self.log[j].op {
                        bytes += data.len();
                    }
                    j += 1;
                }
                if j - i > 1 {
                    let _ = writeln!(out, "{i:6} write    {} ({} writes, {bytes} bytes)", e.path.display(), j - i);
                    i = j;
                    continue;
                }
            }
            let _ = writeln!(out, "{i:6} {e}");
            i += 1;
        }
        out
    }

    /// The inode of every file and directory the log names, by its last path (for
    /// tests and listings).
    pub fn paths(&self) -> HashMap<Ino, std::path::PathBuf> {
        let mut out = HashMap::new();
        for e in &self.log {
            match &e.op {
                Op::Create { ino, .. } | Op::Write { ino, .. } | Op::SetLen { ino, .. } | Op::Fsync { ino, .. } => {
                    out.insert(*ino, e.path.clone());
                }
                Op::Rename { ino, .. } => {
                    out.insert(*ino, e.to.clone().unwrap_or_default());
                }
                Op::Remove { .. } | Op::Mark(_) => {}
            }
        }
        out
    }

    /// Writes the crash state to `target`, first removing whatever is there.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn materialize_fresh(&self, at: usize, mode: Mode, target: &Path) -> Result<Outcome, Error> {
        match std::fs::remove_dir_all(target) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(Error::Io { path: target.to_path_buf(), source }),
        }
        self.materialize(at, mode, target)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::image::ROOT;
    use std::path::PathBuf;

    fn entry(op: Op, path: &str) -> Entry {
        Entry { op, path: PathBuf::from(path), to: None }
    }

    fn write(ino: Ino, offset: u64, bytes: &[u8]) -> Op {
        Op::Write { ino, offset, data: Arc::from(bytes) }
    }

    /// create a; write a; fsync a; create b; write b; fsyncdir root; rename b -> a (unsynced).
    fn recording() -> Recording {
        let log = vec![
            entry(Op::Create { dir: ROOT, name: "a".into(), ino: 2, kind: Kind::File }, "a"),
            entry(write(2, 0, b"one"), "a"),
            entry(Op::Fsync { ino: 2, kind: Kind::File }, "a"),
            entry(Op::Create { dir: ROOT, name: "b".into(), ino: 3, kind: Kind::File }, "b"),
            entry(write(3, 0, b"two"), "b"),
            entry(Op::Fsync { ino: ROOT, kind: Kind::Dir }, ""),
            entry(Op::Rename { from_dir: ROOT, from: "b".into(), to_dir: ROOT, to: "a".into(), ino: 3 }, "b"),
        ];
        Recording { base: Arc::new(Image::default()), log }
    }

    fn file(r: &Recording, at: usize, mode: Mode, path: &str) -> Option<Vec<u8>> {
        r.crash_state(at, mode).0.file(Path::new(path)).map(<[u8]>::to_vec)
    }

    #[test]
    fn only_what_a_barrier_covers_is_durable() {
        let r = recording();
        assert_eq!(r.durable(7), vec![true, true, true, true, false, true, false]);
        // Before the directory's fsync, no name is durable: the file synced is lost.
        assert_eq!(file(&r, 5, Mode::Durable, "a"), None);
        // After it: a holds its synced bytes, b exists but its data was never synced.
        assert_eq!(file(&r, 6, Mode::Durable, "a").as_deref(), Some(&b"one"[..]));
        assert_eq!(file(&r, 6, Mode::Durable, "b").as_deref(), Some(&b""[..]));
        // The unsynced rename is lost with the durable mode, kept with everything.
        assert_eq!(file(&r, 7, Mode::Durable, "a").as_deref(), Some(&b"one"[..]));
        assert_eq!(file(&r, 7, Mode::Everything, "a").as_deref(), Some(&b"two"[..]));
        assert_eq!(file(&r, 7, Mode::Everything, "b"), None);
        // All but the write of b: the rename survives, with b's unsynced bytes lost.
        assert_eq!(file(&r, 7, Mode::AllBut(4), "a").as_deref(), Some(&b""[..]));
    }

    #[test]
    fn exhaustive_covers_each_unsynced_op_and_prefix() {
        let r = recording();
        let modes = r.exhaustive(7);
        assert!(modes.contains(&Mode::AllBut(4)) && modes.contains(&Mode::AllBut(6)));
        assert_eq!(modes.len(), 4);
        // Every subset seed gives one of the four possible states of the two unsynced ops.
        let mut seen = HashSet::new();
        for seed in 0..64 {
            seen.insert((file(&r, 7, Mode::Subset(seed), "a"), file(&r, 7, Mode::Subset(seed), "b")));
        }
        assert_eq!(seen.len(), 4, "{seen:?}");
    }

    #[test]
    fn modes_print_and_parse() {
        for m in
            [Mode::Durable, Mode::Everything, Mode::Subset(9), Mode::AllBut(3), Mode::NamesUpTo { dir: 4, keep: 2 }]
        {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
        }
        assert!("subset".parse::<Mode>().is_err());
    }
}
