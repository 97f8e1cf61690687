//! Power-loss harness: real workloads run on a LazyFS mount (`crates/lazyfs`, a FUSE file
//! system that records every write, fsync and rename), and the crash states a power cut
//! would leave at many points of each run are rebuilt on the normal file system and
//! checked.
//!
//! Workloads (each a deterministic op stream of a seed): `resume` (the resume demo's write
//! path: one serde state rewritten and synced at every step), `w1` (batches of W1 records,
//! removals, a gc), `w3` (memoized calls), `w5` (W5 snapshots, stored as deltas, with
//! checkpoints taken, restored and deleted), `mixed` (incompressible inline values rewritten
//! until pages are compacted, object files, chains of deltas, removals, checkpoints, gc,
//! close and reopen), and `recovery` (a crash state of `mixed`, reopened on the mount — the
//! recovery path itself under test — and written to again). Every op is written through the
//! store with `Durability::PowerLoss`; sled's own files are on the same mount.
//!
//! Crash points: after each fsync, inside batches, during gc, during compaction (between a
//! compaction's new pack and the deletion of the old ones), during syncs, opens and closes.
//! Modes (see `pickleshelf_lazyfs::Mode`): `durable` (only what fsync made durable),
//! `everything` (what a kill leaves), `subset:SEED` (pages and name changes the kernel might
//! have written), and, in `one_sync_every_crash_state`, ALICE's exhaustive set for each
//! point of one sync.
//!
//! Each crash state must: open; pass `verify` (refcounts exact, every frame readable); hold
//! exactly the keys, values and checkpoints of the model after `k` ops for some `k` no
//! older than the last op a completed `sync` acknowledged and no newer than the last op
//! started; and hold every memoized result acknowledged, with its exact value.
//!
//! Environment:
//! - `PICKLESHELF_POWER_STATES`: crash states to try (default 400);
//! - `PICKLESHELF_POWER_SECONDS`: stop earlier once this many seconds have passed;
//! - `PICKLESHELF_POWER_SEED`: the first run's seed (default 1; later runs use the next ones);
//! - `PICKLESHELF_POWER_REPLAY`: `WORKLOAD:SEED:AT:MODE` checks that one crash state only,
//!   printing the log before it (what a failure message names). The run is recorded again,
//!   and background threads (sled's flusher, the store's committer) may interleave
//!   differently, so the positions can shift a little;
//! - `PICKLESHELF_POWER_DIR`: keep the tree of each failing crash state there.
//!
//! FUSE is needed (`/dev/fuse`, root). Without it the tests skip with a message — except
//! under `CI`, where they fail. `scripts/power-loss.sh` runs long campaigns.

mod common;
#[path = "../benches/workloads/generate.rs"]
mod generate;
#[path = "../benches/workloads/refpickle.rs"]
mod refpickle;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Rng;
use pickleshelf::{Batch, Durability, Shelf};
use pickleshelf_lazyfs::{Mode, Mount, Op, Recording};
use serde::{Deserialize, Serialize};

// ----- deterministic randomness -----

/// The generator of `seed` (mixed with its own constant, so that recorded seeds replay).
fn rng(seed: u64) -> Rng {
    Rng(seed ^ 0x6a09_e667_f3bc_c908)
}

// ----- values -----

type Bytes = Arc<[u8]>;

/// `pickle.dumps(payload, 4)` for a `bytes` payload.
fn bytes_pickle(payload: &[u8]) -> Bytes {
    common::bytes_pickle(payload).into()
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = rng(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Incompressible bytes of `len`: an object file when large, an inline record otherwise.
fn random_bytes(seed: u64, len: usize) -> Bytes {
    bytes_pickle(&noise(seed, len))
}

/// Version `n` of line `l`: 30 KB of noise with `n` bytes changed (stored as deltas).
fn version(l: u64, n: u64) -> Bytes {
    let mut payload = noise(l << 8 | 4, 30_000);
    for j in 0..n {
        payload[((j * 7919 + l) % 30_000) as usize] ^= 0x5a;
    }
    bytes_pickle(&payload)
}

fn int_pickle(n: u8) -> Bytes {
    vec![0x80, 4, b'K', n, b'.'].into()
}

/// The resume demo's state (`examples/resume.rs`): what its loop stores at every step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
struct ResumeState {
    steps: u64,
    step: u64,
    rng: u64,
    histogram: Vec<u64>,
    recent: Vec<f64>,
    total: f64,
}

impl ResumeState {
    fn at(step: u64) -> ResumeState {
        let mut rng = rng(step);
        let mut histogram = vec![0; 64];
        for _ in 0..step {
            histogram[rng.below(64) as usize] += 1;
        }
        let recent: Vec<f64> = (0..step.min(32)).map(|i| (i as f64 + 0.5) / (step as f64 + 1.0)).collect();
        ResumeState { steps: 1000, step, rng: rng.next(), histogram, total: recent.iter().sum(), recent }
    }
}

// ----- workloads -----

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    Resume,
    W1,
    W3,
    W5,
    Mixed,
    Recovery,
}

const WORKLOADS: [Workload; 6] =
    [Workload::Resume, Workload::W1, Workload::W3, Workload::W5, Workload::Mixed, Workload::Recovery];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Resume => "resume",
            Workload::W1 => "w1",
            Workload::W3 => "w3",
            Workload::W5 => "w5",
            Workload::Mixed => "mixed",
            Workload::Recovery => "recovery",
        }
    }

    fn parse(s: &str) -> Option<Workload> {
        WORKLOADS.into_iter().find(|w| w.name() == s)
    }
}

/// One atomic step of a workload.
#[derive(Clone, Debug)]
enum Step {
    Put(String, Bytes),
    /// `Shelf::insert` of the resume demo's state at this step (serde).
    Resume(u64),
    Remove(String),
    /// All or nothing (`Shelf::apply`).
    Batch(Vec<(String, Option<Bytes>)>),
    Checkpoint(String),
    Restore(String),
    DeleteCheckpoint(String),
    /// A memoized call `f(n)`.
    Memo(u64),
    Gc,
    /// Close the store and open it again.
    Reopen,
}

/// The result of the memoized function.
fn memo_result(n: u64) -> Vec<f64> {
    (0..generate::W3_VALUES).map(|j| n as f64 * 0.5 + j as f64).collect()
}

fn memo_args(n: u64) -> (u64, String) {
    (n, format!("q{n}"))
}

/// The steps of a workload and whether a sync follows each.
fn steps(w: Workload, seed: u64) -> Vec<(Step, bool)> {
    let mut rng = rng(seed ^ (w as u64) << 40);
    let mut out = Vec::new();
    match w {
        Workload::Resume => {
            for step in 1..=16 {
                out.push((Step::Resume(step * 10), true));
            }
        }
        Workload::W1 => {
            let n = 160;
            let recs = generate::w1_records(n);
            let pickles: Vec<Bytes> = recs.iter().map(|r| refpickle::dumps(&refpickle::w1_obj(r)).into()).collect();
            for b in 0..8u64 {
                let ops = (0..20).map(|i| (generate::w1_key(b * 20 + i), Some(pickles[(b * 20 + i) as usize].clone())));
                out.push((Step::Batch(ops.collect()), b % 2 == 1));
                if b == 4 {
                    out.push((Step::Gc, false));
                }
                for _ in 0..rng.below(3) {
                    out.push((Step::Remove(generate::w1_key(rng.below((b + 1) * 20))), false));
                }
            }
        }
        Workload::W3 => {
            for i in 0..40u64 {
                let n = if i % 4 == 3 { rng.below(i + 1) } else { i };
                out.push((Step::Memo(n), i % 8 == 7));
            }
        }
        Workload::W5 => {
            let entries = 200;
            let mut g = generate::SplitMix64::new(generate::SEED_W5 ^ seed);
            let mut plain = generate::w5_initial(entries, &mut g);
            let keys: Vec<String> = (0..plain.len()).map(generate::w5_key).collect();
            let labels: Vec<String> = (0..plain.len()).map(generate::w5_label).collect();
            for n in 0..12u64 {
                if n > 0 {
                    generate::w5_mutate(entries, 3, &mut g, |j, v| {
                        plain[j].rev += 1;
                        plain[j].value = v;
                    });
                }
                let snap: Bytes = refpickle::dumps(&refpickle::w5_obj(&plain, &keys, &labels)).into();
                out.push((Step::Put("snapshot".into(), snap.clone()), false));
                out.push((Step::Put(format!("snapshot:{n}"), snap), n % 2 == 1));
                if n % 3 == 2 {
                    out.push((Step::Checkpoint(format!("cp{}", n / 3)), true));
                }
                if n == 7 {
                    out.push((Step::Restore("cp1".into()), false));
                }
                if n == 10 {
                    out.push((Step::DeleteCheckpoint("cp0".into()), true));
                }
            }
        }
        Workload::Mixed | Workload::Recovery => {
            // A recovery run's steps differ from the run it recovers.
            let first = if w == Workload::Recovery { 40 } else { 0 };
            for i in first..first + 40u64 {
                let step = match rng.below(16) {
                    // Incompressible inline values over 120 keys, 30 a batch: pages are
                    // rewritten until the dead bytes of the packs call for a compaction.
                    0..=4 => Step::Batch(
                        (0..30)
                            .map(|_| {
                                let k = rng.below(120);
                                (
                                    format!("page/{k:03}"),
                                    Some(random_bytes(rng.next(), 3000 + rng.below(1000) as usize)),
                                )
                            })
                            .collect(),
                    ),
                    5 | 6 => Step::Put(
                        format!("big/{}", rng.below(6)),
                        random_bytes(rng.below(10), 5000 + rng.below(60_000) as usize),
                    ),
                    7 | 8 => Step::Put(format!("ver/{}", rng.below(3)), version(rng.below(2), i + rng.below(3))),
                    9 => Step::Put(format!("small/{}", rng.below(20)), int_pickle(rng.below(256) as u8)),
                    10 => Step::Remove(format!("big/{}", rng.below(6))),
                    11 => Step::Remove(format!("page/{:03}", rng.below(120))),
                    12 => Step::Checkpoint(format!("cp{}", rng.below(2))),
                    13 => match rng.below(2) {
                        0 => Step::Restore(format!("cp{}", rng.below(2))),
                        _ => Step::DeleteCheckpoint(format!("cp{}", rng.below(2))),
                    },
                    14 => Step::Gc,
                    _ => Step::Reopen,
                };
                out.push((step, rng.below(3) == 0));
            }
        }
    }
    out
}

// ----- the model -----

/// Keys and checkpoints of the store, and the memoized calls made.
#[derive(Clone, Debug, Default, PartialEq)]
struct State {
    keys: BTreeMap<String, Bytes>,
    checkpoints: BTreeMap<String, BTreeMap<String, Bytes>>,
    memo: BTreeSet<u64>,
}

fn apply_model(state: &mut State, step: &Step) {
    match step {
        Step::Put(k, v) => {
            state.keys.insert(k.clone(), v.clone());
        }
        Step::Resume(s) => {
            let bytes = pickleshelf::pickle::to_vec(&ResumeState::at(*s)).expect("pickle the resume state");
            state.keys.insert("state".into(), bytes.into());
        }
        Step::Remove(k) => {
            state.keys.remove(k);
        }
        Step::Batch(ops) => {
            for (k, v) in ops {
                match v {
                    Some(v) => state.keys.insert(k.clone(), v.clone()),
                    None => state.keys.remove(k),
                };
            }
        }
        Step::Checkpoint(c) => {
            if !state.checkpoints.contains_key(c) {
                state.checkpoints.insert(c.clone(), state.keys.clone());
            }
        }
        Step::Restore(c) => {
            if let Some(kept) = state.checkpoints.get(c) {
                state.keys = kept.clone();
            }
        }
        Step::DeleteCheckpoint(c) => {
            state.checkpoints.remove(c);
        }
        Step::Memo(n) => {
            state.memo.insert(*n);
        }
        Step::Gc | Step::Reopen => {}
    }
}

// ----- running a workload on the mount -----

/// Where a run starts: an empty directory, or a crash state (its tree and the model state
/// it holds, after `ops` steps).
struct Start {
    tree: Option<PathBuf>,
    ops: usize,
    state: State,
}

/// A recorded run: the log, and the model state after each step.
struct Run {
    workload: Workload,
    seed: u64,
    rec: Recording,
    /// `states[i]`: the model after the first `first + i` steps.
    states: Vec<State>,
    first: usize,
}

fn open(path: &Path) -> pickleshelf::Result<Shelf> {
    Shelf::builder(path).durability(Durability::PowerLoss).open()
}

fn apply_store(shelf: &Shelf, memo: &pickleshelf::Memo, step: &Step) -> pickleshelf::Result<()> {
    let has = |c: &str| -> pickleshelf::Result<bool> { Ok(shelf.checkpoints()?.iter().any(|i| i.name == c)) };
    match step {
        Step::Put(k, v) => shelf.insert_pickle(k, v),
        Step::Resume(s) => shelf.insert("state", &ResumeState::at(*s)),
        Step::Remove(k) => shelf.remove(k).map(drop),
        Step::Batch(ops) => {
            let mut b = Batch::new();
            for (k, v) in ops {
                match v {
                    Some(v) => b.insert_pickle(k, v)?,
                    None => b.remove(k),
                }
            }
            shelf.apply(b)
        }
        Step::Checkpoint(c) => {
            if !has(c)? {
                shelf.checkpoint(c)?;
            }
            Ok(())
        }
        Step::Restore(c) => {
            if has(c)? {
                shelf.restore(c)?;
            }
            Ok(())
        }
        Step::DeleteCheckpoint(c) => shelf.delete_checkpoint(c).map(drop),
        Step::Memo(n) => memo.get_or_compute(&memo_args(*n), || memo_result(*n)).map(drop),
        Step::Gc => {
            let report = shelf.gc()?;
            assert!(report.is_ok(), "gc found problems on the live store: {:?}", report.problems);
            Ok(())
        }
        Step::Reopen => Ok(()),
    }
}

/// Mounts LazyFS showing `backing` at `mnt`; `None` (with a message) when FUSE cannot be
/// mounted here, outside CI.
fn mount(backing: &Path, mnt: &Path) -> Option<Mount> {
    match Mount::new(backing, mnt) {
        Ok(m) => Some(m),
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: FUSE is not available here ({e}); CI runs this test as root with /dev/fuse");
            None
        }
        Err(e) => panic!("FUSE must be available under CI: {e}"),
    }
}

/// Mounts LazyFS over a copy of `start`, runs the workload's steps on it (marking each
/// step, sync and phase in the log) and returns the recording. `None` when FUSE cannot be
/// mounted (outside CI).
fn record(w: Workload, seed: u64, start: Start, dir: &Path) -> Option<Run> {
    let (backing, mnt) = (dir.join("backing"), dir.join("mnt"));
    let _ = fs::remove_dir_all(&backing);
    fs::create_dir_all(&mnt).expect("mount point");
    match &start.tree {
        Some(tree) => copy_tree(tree, &backing),
        None => fs::create_dir_all(&backing).expect("backing directory"),
    }
    let mount = mount(&backing, &mnt)?;
    let store = mnt.join("store");
    let all = steps(w, seed);
    let mut states = vec![start.state.clone()];
    let first = start.ops;
    let fail =
        |what: &str, e: pickleshelf::Error| -> ! { panic!("{} seed {seed}: {what} on the mount: {e}", w.name()) };
    mount.mark("O");
    let mut shelf = open(&store).unwrap_or_else(|e| fail("open", e));
    let mut memo = shelf.memo("f").unwrap_or_else(|e| fail("memo", e));
    mount.mark("o");
    for (j, (step, sync)) in all.iter().enumerate() {
        // Step i of the run's history (a recovery run continues its start's history).
        let i = first + j;
        let n = i + 1;
        match step {
            Step::Gc => mount.mark(format!("G {i}")),
            Step::Reopen => mount.mark(format!("C {i}")),
            Step::Batch(_) => mount.mark(format!("B {i}")),
            _ => mount.mark(format!("W {i}")),
        };
        if let Step::Reopen = step {
            drop(memo);
            shelf.close().unwrap_or_else(|e| fail("close", e));
            // close syncs: everything before this step is acknowledged.
            mount.mark(format!("S {i}"));
            mount.mark("O");
            shelf = open(&store).unwrap_or_else(|e| fail("reopen", e));
            memo = shelf.memo("f").unwrap_or_else(|e| fail("memo", e));
            mount.mark("o");
        }
        apply_store(&shelf, &memo, step).unwrap_or_else(|e| fail(&format!("step {i} ({step:?})"), e));
        let mut next = states.last().cloned().unwrap_or_default();
        apply_model(&mut next, step);
        states.push(next);
        if *sync {
            mount.mark(format!("Y {n}"));
            memo.sync().unwrap_or_else(|e| fail("sync", e));
            mount.mark(format!("S {n}"));
        } else {
            mount.mark("w");
        }
    }
    let n = first + all.len();
    mount.mark(format!("C {n}"));
    drop(memo);
    shelf.close().unwrap_or_else(|e| fail("close", e));
    mount.mark(format!("S {n}"));
    let rec = mount.unmount().expect("unmount");
    let _ = fs::remove_dir_all(&backing);
    Some(Run { workload: w, seed, rec, states, first })
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("create a directory");
    for e in fs::read_dir(from).expect("read a directory") {
        let e = e.expect("directory entry");
        let target = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).expect("copy a file");
        }
    }
}

// ----- crash points -----

/// What the marks before a point say.
#[derive(Clone, Debug)]
struct Timeline {
    /// Steps acknowledged by a completed sync (or close).
    synced: usize,
    /// Steps started.
    started: usize,
    /// The phase: open, write, batch, sync, gc, close.
    phase: &'static str,
}

impl Run {
    fn timeline(&self, at: usize) -> Timeline {
        let mut t = Timeline { synced: self.first, started: self.first, phase: "open" };
        for (pos, text) in self.rec.marks() {
            if pos >= at {
                break;
            }
            let (tag, arg) = text.split_once(' ').unwrap_or((text, ""));
            let num = arg.parse::<usize>().ok();
            match (tag, num) {
                ("W" | "B" | "G" | "C", Some(i)) => t.started = t.started.max(i + 1),
                ("S", Some(n)) => t.synced = t.synced.max(n),
                _ => {}
            }
            t.phase = match tag {
                "O" => "open",
                "G" => "gc",
                "B" => "batch",
                "Y" => "sync",
                "C" => "close",
                _ => "write",
            };
        }
        t.started = t.started.max(t.synced);
        t
    }

    /// Ranges of the log between a compaction's new pack and the removal of an old one.
    fn compactions(&self) -> Vec<(usize, usize)> {
        let log = &self.rec.log;
        let is_pack = |p: &Path| p.extension().is_some_and(|e| e == "pack");
        let mut packs_seen = self.rec.base.file(Path::new("store/pages/00000001.pack")).is_some() as usize;
        let mut out = Vec::new();
        for (i, e) in log.iter().enumerate() {
            if let Op::Create { .. } = e.op
                && is_pack(&e.path)
            {
                packs_seen += 1;
                if packs_seen > 1 {
                    let end = log[i..]
                        .iter()
                        .position(|e| matches!(e.op, Op::Remove { .. }) && is_pack(&e.path))
                        .map_or(log.len().min(i + 200), |j| i + j + 1);
                    out.push((i, end));
                }
            }
        }
        out
    }

    /// Up to `budget` crash points, each with its kind: after each fsync, in batches,
    /// gc, compaction, sync, open and close (spread over the run).
    fn points(&self, budget: usize, rng: &mut Rng) -> Vec<(usize, &'static str)> {
        let len = self.rec.log.len();
        let mut by_kind: BTreeMap<&'static str, Vec<usize>> = BTreeMap::new();
        for at in self.rec.after_fsyncs(0..len) {
            by_kind.entry("after fsync").or_default().push(at);
        }
        for (s, e) in self.compactions() {
            by_kind.entry("compaction").or_default().extend(s..=e);
        }
        for at in 0..=len {
            let kind = match self.timeline(at).phase {
                "batch" => "mid-batch",
                "gc" => "gc",
                "sync" => "sync",
                "open" => "open",
                "close" => "close",
                _ => "write",
            };
            by_kind.entry(kind).or_default().push(at);
        }
        // Round robin over the kinds, a random point of each in turn.
        let mut out = Vec::new();
        let mut seen = BTreeSet::new();
        while out.len() < budget && by_kind.values().any(|v| !v.is_empty()) {
            for (kind, v) in by_kind.iter_mut() {
                if v.is_empty() || out.len() >= budget {
                    continue;
                }
                let at = v.swap_remove(rng.below(v.len() as u64) as usize);
                if seen.insert(at) {
                    out.push((at, *kind));
                }
            }
        }
        out
    }
}

// ----- checking a crash state -----

/// Reads every key and checkpoint of a recovered store.
fn read_all(shelf: &Shelf) -> Result<State, String> {
    let mut got = State::default();
    for item in shelf.iter_pickle() {
        let (k, v) = item.map_err(|e| format!("reading the store: {e}"))?;
        got.keys.insert(k, v.into());
    }
    for info in shelf.checkpoints().map_err(|e| format!("listing checkpoints: {e}"))? {
        let mut map = BTreeMap::new();
        for (k, _) in shelf.checkpoint_keys(&info.name).map_err(|e| format!("checkpoint {}: {e}", info.name))? {
            let v = shelf
                .get_pickle_at(&info.name, &k)
                .map_err(|e| format!("checkpoint {} key {k}: {e}", info.name))?
                .ok_or_else(|| format!("checkpoint {} lists {k} but has no value", info.name))?;
            map.insert(k, v.into());
        }
        got.checkpoints.insert(info.name, map);
    }
    Ok(got)
}

fn describe_diff(want: &State, got: &State) -> String {
    let mut lines = vec![format!(
        "checkpoints: model {:?}, store {:?}",
        want.checkpoints.keys().collect::<Vec<_>>(),
        got.checkpoints.keys().collect::<Vec<_>>()
    )];
    for (k, v) in &want.keys {
        match got.keys.get(k) {
            None => lines.push(format!("{k} missing")),
            Some(b) if b != v => lines.push(format!("{k} differs ({} bytes, model {})", b.len(), v.len())),
            _ => {}
        }
    }
    for k in got.keys.keys().filter(|k| !want.keys.contains_key(*k)) {
        lines.push(format!("{k} present but not in the model"));
    }
    lines.truncate(12);
    lines.join("; ")
}

/// Opens the crash state in `tree` and checks it against the model (see the module docs);
/// returns the number of steps it holds, or what is wrong.
fn check(run: &Run, tree: &Path, t: &Timeline) -> Result<usize, String> {
    let shelf = open(&tree.join("store")).map_err(|e| format!("open failed: {e}"))?;
    let report = shelf.verify().map_err(|e| format!("verify failed: {e}"))?;
    if !report.is_ok() {
        return Err(format!("verify found problems: {:?}", report.problems));
    }
    let mut got = read_all(&shelf)?;
    // Memoized results: those acknowledged must be there with their value; any other
    // found must be one that was computed, with its value.
    let memo = shelf.memo("f").map_err(|e| format!("memo: {e}"))?;
    let universe: BTreeSet<u64> = run.states.last().map(|s| s.memo.clone()).unwrap_or_default();
    for n in universe {
        let found = memo
            .try_get_or_compute(&memo_args(n), || Err::<Vec<f64>, ()>(()))
            .map_err(|e| format!("memo call {n}: {e}"))?;
        if let Ok(v) = found {
            if v != memo_result(n) {
                return Err(format!("memo call {n}: wrong value"));
            }
            got.memo.insert(n);
        }
    }
    drop(memo);
    drop(shelf);
    let (lo, hi) = (t.synced - run.first, (t.started - run.first).min(run.states.len() - 1));
    let matches = |s: &State| s.keys == got.keys && s.checkpoints == got.checkpoints;
    // Memo results are kept or lost with the commit that wrote them; a result computed
    // again later is there if either write survived.
    let memo_ok =
        |k: usize| run.states[lo].memo.is_subset(&got.memo) && got.memo.is_subset(&run.states[hi.max(k)].memo);
    match (lo..=hi.max(lo)).rev().find(|&k| k < run.states.len() && matches(&run.states[k]) && memo_ok(k)) {
        Some(k) => Ok(k + run.first),
        None => {
            let want = &run.states[lo.min(run.states.len() - 1)];
            Err(format!(
                "the store is no state after k steps, {} <= k <= {}; against k = {}: {}; memo {:?} of {:?}",
                t.synced,
                t.started,
                t.synced,
                describe_diff(want, &got),
                got.memo,
                want.memo
            ))
        }
    }
}

#[derive(Default)]
struct Figures {
    states: u64,
    by_kind: BTreeMap<String, u64>,
    by_mode: BTreeMap<&'static str, u64>,
    by_workload: BTreeMap<&'static str, u64>,
    /// States that came back with steps past the last sync.
    ahead: u64,
    /// Unsynced steps lost.
    lost_unsynced: u64,
    failures: Vec<String>,
}

fn mode_kind(m: Mode) -> &'static str {
    match m {
        Mode::Durable => "durable",
        Mode::Everything => "everything",
        Mode::Subset(_) => "subset",
        Mode::AllBut(_) => "all-but-one",
        Mode::NamesUpTo { .. } => "names-prefix",
    }
}

/// Materializes and checks one crash state, adding to the figures.
fn try_state(run: &Run, at: usize, mode: Mode, kind: &str, scratch: &Path, fig: &mut Figures) {
    let tree = scratch.join("crash");
    run.rec.materialize_fresh(at, mode, &tree).expect("materialize a crash state");
    let t = run.timeline(at);
    fig.states += 1;
    *fig.by_kind.entry(kind.to_owned()).or_insert(0) += 1;
    *fig.by_mode.entry(mode_kind(mode)).or_insert(0) += 1;
    *fig.by_workload.entry(run.workload.name()).or_insert(0) += 1;
    match check(run, &tree, &t) {
        Ok(k) => {
            fig.ahead += u64::from(k > t.synced);
            fig.lost_unsynced += (t.started - k) as u64;
        }
        Err(e) => {
            if let Ok(keep) = std::env::var("PICKLESHELF_POWER_DIR") {
                let name = format!("{}-{}-{at}-{mode}", run.workload.name(), run.seed).replace(':', "_");
                copy_tree(&tree, &Path::new(&keep).join(name));
            }
            let from = at.saturating_sub(12);
            fig.failures.push(format!(
                "{w}:{seed}:{at}:{mode} ({kind}, phase {phase}): {e}\n  replay: PICKLESHELF_POWER_REPLAY={w}:{seed}:{at}:{mode}\n  log before the cut:\n{log}",
                w = run.workload.name(),
                seed = run.seed,
                phase = t.phase,
                log = run.rec.listing(from..at)
            ));
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// The recorded run of `w` and `seed`; a `recovery` run starts from a crash state of
/// the `mixed` run of the same seed (cut, durable only, two thirds of the way through).
fn run_of(w: Workload, seed: u64, scratch: &Path) -> Option<Run> {
    let start = Start { tree: None, ops: 0, state: State::default() };
    if w != Workload::Recovery {
        return record(w, seed, start, &scratch.join("run"));
    }
    let mixed = record(Workload::Mixed, seed, start, &scratch.join("run"))?;
    let at = mixed.rec.log.len() * 2 / 3;
    let tree = scratch.join("start");
    mixed.rec.materialize_fresh(at, Mode::Durable, &tree).expect("materialize the start");
    let t = mixed.timeline(at);
    // Which step the crash state holds: the checker says (opening a copy).
    let probe = scratch.join("probe");
    let _ = fs::remove_dir_all(&probe);
    copy_tree(&tree, &probe);
    let k = check(&mixed, &probe, &t).unwrap_or_else(|e| panic!("the recovery run's start is not sound: {e}"));
    let _ = fs::remove_dir_all(&probe);
    let state = mixed.states[k - mixed.first].clone();
    // The recovery run replays the mixed stream from step k on, on this state.
    let run = record(Workload::Recovery, seed, Start { tree: Some(tree), ops: k, state }, &scratch.join("run"))?;
    Some(run)
}

/// Runs workloads and checks crash states until `states` are tried or `seconds` pass.
fn campaign(states: u64, seconds: Option<u64>, seed: u64) -> Option<Figures> {
    let began = Instant::now();
    let scratch = tempfile::tempdir().expect("temporary directory");
    let mut fig = Figures::default();
    let mut rng = rng(seed ^ 0xfeed);
    let per_run = 80usize;
    let mut round = 0u64;
    while fig.states < states
        && fig.failures.is_empty()
        && seconds.is_none_or(|s| began.elapsed() < Duration::from_secs(s))
    {
        let w = WORKLOADS[(round % WORKLOADS.len() as u64) as usize];
        let run_seed = seed + round / WORKLOADS.len() as u64;
        round += 1;
        let run = run_of(w, run_seed, scratch.path())?;
        let budget = per_run.min((states - fig.states) as usize).max(1);
        for (at, kind) in run.points(budget.div_ceil(2), &mut rng) {
            let modes = [Mode::Durable, if rng.below(3) == 0 { Mode::Everything } else { Mode::Subset(rng.next()) }];
            for mode in modes {
                try_state(&run, at, mode, kind, scratch.path(), &mut fig);
            }
            if !fig.failures.is_empty() {
                break;
            }
        }
    }
    Some(fig)
}

fn report(fig: &Figures, began: Instant) {
    println!(
        "power-loss harness: {} crash states in {:.1}s; by point {:?}; by mode {:?}; by workload {:?}; \
         came back past the last sync {} times; unsynced steps lost {}; failures {}",
        fig.states,
        began.elapsed().as_secs_f64(),
        fig.by_kind,
        fig.by_mode,
        fig.by_workload,
        fig.ahead,
        fig.lost_unsynced,
        fig.failures.len()
    );
}

/// Checks `PICKLESHELF_POWER_STATES` crash states (see the module docs).
#[test]
fn power_cuts_lose_no_synced_write() {
    let began = Instant::now();
    if let Ok(spec) = std::env::var("PICKLESHELF_POWER_REPLAY") {
        return replay(&spec);
    }
    let states = env_u64("PICKLESHELF_POWER_STATES").unwrap_or(400);
    let seconds = env_u64("PICKLESHELF_POWER_SECONDS");
    let seed = env_u64("PICKLESHELF_POWER_SEED").unwrap_or(1);
    let Some(fig) = campaign(states, seconds, seed) else { return };
    report(&fig, began);
    assert!(fig.failures.is_empty(), "power-loss failures:\n{}", fig.failures.join("\n"));
    if seconds.is_none() {
        assert!(fig.states >= states, "{} states tried of {states}", fig.states);
    }
    for kind in ["after fsync", "mid-batch", "gc", "compaction", "sync"] {
        assert!(fig.by_kind.get(kind).copied().unwrap_or(0) > 0, "no crash point of kind {kind}: {:?}", fig.by_kind);
    }
}

/// Checks one crash state, `WORKLOAD:SEED:AT:MODE`, and prints the log before it.
fn replay(spec: &str) {
    let parts: Vec<&str> = spec.splitn(4, ':').collect();
    let [w, seed, at, mode] = parts.as_slice() else {
        panic!("PICKLESHELF_POWER_REPLAY={spec}: want WORKLOAD:SEED:AT:MODE")
    };
    let w = Workload::parse(w).unwrap_or_else(|| panic!("no workload {w}"));
    let seed: u64 = seed.parse().expect("seed");
    let at: usize = at.parse().expect("cut point");
    let mode: Mode = mode.parse().expect("mode");
    let scratch = tempfile::tempdir().expect("temporary directory");
    let Some(run) = run_of(w, seed, scratch.path()) else { return };
    println!("{}", run.rec.listing(at.saturating_sub(60)..at));
    let mut fig = Figures::default();
    try_state(&run, at, mode, "replay", scratch.path(), &mut fig);
    assert!(fig.failures.is_empty(), "{}", fig.failures.join("\n"));
}

/// ALICE's method on a small case: a store with a few keys, then one put of each kind and
/// a sync; every crash state of every point of the sync (every prefix of its ops, each
/// op left out, each directory's name changes up to each point) must hold the state
/// before the put or after it, and the state after it once the sync is done.
#[test]
fn one_sync_every_crash_state() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let (backing, mnt) = (scratch.path().join("backing"), scratch.path().join("mnt"));
    fs::create_dir_all(&backing).expect("backing");
    fs::create_dir_all(&mnt).expect("mount point");
    {
        let shelf = open(&backing.join("store")).expect("open");
        shelf.insert_pickle("a", &int_pickle(1)).expect("put");
        shelf.insert_pickle("big", &random_bytes(1, 20_000)).expect("put");
        shelf.close().expect("close");
    }
    let Some(mount) = mount(&backing, &mnt) else { return };
    let shelf = open(&mnt.join("store")).expect("open on the mount");
    let before = mount.mark("puts");
    shelf.insert_pickle("a", &int_pickle(2)).expect("put");
    shelf.insert_pickle("big2", &random_bytes(2, 20_000)).expect("put");
    shelf.insert_pickle("ver", &version(0, 1)).expect("put");
    let sync_from = mount.mark("sync");
    shelf.sync().expect("sync");
    let sync_to = mount.mark("synced");
    drop(shelf);
    let rec = mount.unmount().expect("unmount");
    println!("one sync, as the file system saw it:\n{}", rec.listing(sync_from..sync_to));
    // The order the docs state: object files and their directory, then the pack, before
    // sled's log; sled's files before the witness.
    let pos = |from: usize, pred: &dyn Fn(&pickleshelf_lazyfs::Entry) -> bool| {
        rec.log[from..sync_to].iter().position(pred).map(|p| p + from)
    };
    let is = |e: &pickleshelf_lazyfs::Entry, kind: &str, path: &str| {
        e.to_string().starts_with(kind) && e.path.to_string_lossy().contains(path)
    };
    // The commit that makes the puts durable is the sync's, or a background one that ran
    // between the puts and the sync (on a loaded machine the 200 ms interval can pass):
    // so the order is looked for from the puts on. sled also fsyncs its log on its own
    // (with nothing of ours in it), so the fsync that counts is the first after the pack's.
    let object_fsync = pos(before, &|e| is(e, "fsync ", "store/objects/")).expect("an object file fsync");
    let pack_fsync = pos(before, &|e| is(e, "fsync ", ".pack")).expect("a pack fsync");
    let sled_fsync = pos(pack_fsync, &|e| is(e, "fsync ", "store/sled/db")).expect("sled's log fsync after the pack");
    let witness = pos(sync_from, &|e| matches!(e.op, Op::Rename { .. }) && e.path.ends_with("WITNESS.tmp"))
        .expect("witness rename");
    let listing = rec.listing(before..sync_to);
    assert!(object_fsync < pack_fsync && pack_fsync < sled_fsync && sled_fsync < witness, "{listing}");

    let mut states = 0;
    let mut failures = Vec::new();
    let tree = scratch.path().join("crash");
    let want_before = ["a", "big"];
    for at in before..=sync_to {
        for mode in rec.exhaustive(at) {
            rec.materialize_fresh(at, mode, &tree).expect("materialize");
            states += 1;
            let outcome = (|| -> Result<bool, String> {
                let shelf = open(&tree.join("store")).map_err(|e| format!("open: {e}"))?;
                let report = shelf.verify().map_err(|e| format!("verify: {e}"))?;
                if !report.is_ok() {
                    return Err(format!("verify: {:?}", report.problems));
                }
                let a = shelf.get_pickle("a").map_err(|e| format!("get a: {e}"))?;
                let keys: Vec<String> = shelf.keys().collect::<Result<_, _>>().map_err(|e| format!("keys: {e}"))?;
                let after = a.as_deref() == Some(&int_pickle(2)[..])
                    && shelf.get_pickle("big2").map_err(|e| e.to_string())?.as_deref()
                        == Some(&random_bytes(2, 20_000)[..])
                    && shelf.get_pickle("ver").map_err(|e| e.to_string())?.as_deref() == Some(&version(0, 1)[..])
                    && keys.len() == 4;
                let old = a.as_deref() == Some(&int_pickle(1)[..]) && keys == want_before;
                if !(after || old) {
                    return Err(format!("neither before nor after the puts: keys {keys:?}"));
                }
                Ok(after)
            })();
            match outcome {
                Ok(false) if at >= sync_to => failures.push(format!("{at}:{mode}: the synced puts were lost")),
                Ok(_) => {}
                Err(e) => failures.push(format!("{at}:{mode}: {e}")),
            }
        }
    }
    println!("one sync: {states} crash states at {} points", sync_to + 1 - before);
    assert!(failures.is_empty(), "{} of {states} crash states wrong:\n{}", failures.len(), failures.join("\n"));
}

/// Regression (found by the harness, `resume:1:79:durable`): the store directory's name in
/// its parent was never fsynced, so a power cut after the first syncs of a new store could
/// leave no store at all. Creating a store now fsyncs the parent of each directory made.
#[test]
fn a_new_store_survives_a_power_cut_after_its_first_sync() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let (backing, mnt) = (scratch.path().join("backing"), scratch.path().join("mnt"));
    fs::create_dir_all(&backing).expect("backing");
    fs::create_dir_all(&mnt).expect("mount point");
    let Some(mount) = mount(&backing, &mnt) else { return };
    let shelf = open(&mnt.join("deep/er/store")).expect("create on the mount");
    shelf.insert_pickle("k", &int_pickle(7)).expect("put");
    shelf.sync().expect("sync");
    // The cut is computed from the recording at this point (a live cut would make sled's
    // background threads panic on EIO as the handle closes).
    let at = mount.mark("synced");
    drop(shelf);
    let rec = mount.unmount().expect("unmount");
    let tree = scratch.path().join("crash");
    rec.materialize(at, Mode::Durable, &tree).expect("materialize");
    let shelf = open(&tree.join("deep/er/store")).expect("reopen after the power cut");
    assert_eq!(shelf.get_pickle("k").expect("get").as_deref(), Some(&int_pickle(7)[..]));
}

/// Regression (found by the harness, `w3:1:36:subset:2213675868317142757`): sled 0.34 writes
/// its `conf` without fsync; a power cut while a store was being created could leave it
/// torn, and every later open failed with sled's "Read corrupted data". Every crash state
/// of a store's creation (ALICE's set at every point) must open, as an empty store.
#[test]
fn every_crash_state_of_a_new_store_opens() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let (backing, mnt) = (scratch.path().join("backing"), scratch.path().join("mnt"));
    fs::create_dir_all(&backing).expect("backing");
    fs::create_dir_all(&mnt).expect("mount point");
    let Some(mount) = mount(&backing, &mnt) else { return };
    let shelf = open(&mnt.join("store")).expect("create on the mount");
    let end = mount.mark("created");
    drop(shelf);
    let rec = mount.unmount().expect("unmount");
    let tree = scratch.path().join("crash");
    let mut failures = Vec::new();
    let mut states = 0;
    for at in 0..=end {
        for mode in rec.exhaustive(at) {
            rec.materialize_fresh(at, mode, &tree).expect("materialize");
            states += 1;
            match open(&tree.join("store")).and_then(|s| s.len()) {
                Ok(0) => {}
                Ok(n) => failures.push(format!("{at}:{mode}: {n} keys in a new store")),
                Err(e) => failures.push(format!("{at}:{mode}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {states} crash states:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        rec.listing(0..end)
    );
}

/// Regression (found by the harness, `w1:1:51:durable`): `pages/` (and `objects/`) were
/// created without fsyncing the store directory, which `sync` fsynced only after sled's
/// files: a power cut in between left sled's records naming a pack whose directory was
/// lost. Every crash state from a store's creation to the end of its first sync must open,
/// pass verify, and hold nothing, the small value, or both values — both once synced.
#[test]
fn first_sync_of_a_new_store() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let (backing, mnt) = (scratch.path().join("backing"), scratch.path().join("mnt"));
    fs::create_dir_all(&backing).expect("backing");
    fs::create_dir_all(&mnt).expect("mount point");
    let Some(mount) = mount(&backing, &mnt) else { return };
    let shelf = open(&mnt.join("store")).expect("create on the mount");
    let (small, big) = (int_pickle(3), random_bytes(3, 30_000));
    shelf.insert_pickle("small", &small).expect("put");
    shelf.insert_pickle("big", &big).expect("put");
    shelf.sync().expect("sync");
    let end = mount.mark("synced");
    drop(shelf);
    let rec = mount.unmount().expect("unmount");
    let tree = scratch.path().join("crash");
    let mut failures = Vec::new();
    let mut states = 0;
    for at in 0..=end {
        for mode in [Mode::Durable, Mode::Everything, Mode::Subset(at as u64), Mode::Subset(!(at as u64))] {
            rec.materialize_fresh(at, mode, &tree).expect("materialize");
            states += 1;
            let outcome = (|| -> pickleshelf::Result<Option<String>> {
                let shelf = open(&tree.join("store"))?;
                let report = shelf.verify()?;
                if !report.is_ok() {
                    return Ok(Some(format!("verify: {:?}", report.problems)));
                }
                let (s, b) = (shelf.get_pickle("small")?, shelf.get_pickle("big")?);
                Ok(match (s.as_deref() == Some(&small[..]), b.as_deref() == Some(&big[..]), shelf.len()?) {
                    (true, true, 2) => None,
                    _ if at == end => Some("the synced values are not all there".into()),
                    (true, false, 1) | (false, false, 0) => None,
                    other => Some(format!("not a state the writes went through: {other:?}")),
                })
            })();
            match outcome {
                Ok(None) => {}
                Ok(Some(e)) => failures.push(format!("{at}:{mode}: {e}")),
                Err(e) => failures.push(format!("{at}:{mode}: {e}")),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {states} crash states:\n{}\n{}",
        failures.len(),
        failures.join("\n"),
        rec.listing(0..end)
    );
}
