//! Data generators of the benchmark workloads W1–W5, exactly as
//! `../shared/bench/WORKLOADS.md` defines them (std only, so `tests/workload_generators.rs`
//! can include this file as a module).
//!
//! Invariant: every value here is the one `python_baselines.py` generates for the same
//! scale, drawn in the same order from the same splitmix64 streams.

#![allow(dead_code)] // the test and the bench each use a different part

/// splitmix64 (Steele, Lea, Flood 2014), all arithmetic mod 2^64.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform double in [0, 1): the top 53 bits of one draw times 2^-53 (exact).
    pub fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }
}

/// The seed of each workload's generator.
pub const SEED_W1: u64 = 1;
pub const SEED_W2: u64 = 2;
pub const SEED_W3: u64 = 3;
pub const SEED_W4: u64 = 4;
pub const SEED_W5: u64 = 5;

/// `max(min, floor(n × scale + 0.5))`.
pub fn scaled(n: u64, scale: f64, min: u64) -> u64 {
    ((n as f64 * scale + 0.5).floor() as u64).max(min)
}

/// The counts of every workload at one scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counts {
    pub w1_n: u64,
    pub w2_ops: u64,
    pub w2_hot: u64,
    pub w3_a: u64,
    pub w3_b: u64,
    pub w4_n: u64,
    pub w5_entries: u64,
    pub w5_snapshots: u64,
    pub w5_changes: u64,
    pub w6_big: u64,
    pub w6_small: u64,
}

impl Counts {
    pub fn for_scale(scale: f64) -> Counts {
        let w1_n = scaled(20_000, scale, 10);
        let w5_entries = scaled(5_000, scale, 100);
        Counts {
            w1_n,
            w2_ops: scaled(200_000, scale, 100),
            w2_hot: scaled(1_000, scale, 10).min(w1_n),
            w3_a: scaled(10_000, scale, 10),
            w3_b: scaled(100_000, scale, 100),
            w4_n: scaled(50, scale, 2),
            w5_entries,
            w5_snapshots: scaled(50, scale, 5),
            w5_changes: (w5_entries / 100).max(1),
            w6_big: w6_counts(scale).0,
            w6_small: w6_counts(scale).1,
        }
    }
}

// ----- W1 -----

pub const TAGS: [&str; 16] = [
    "red", "green", "blue", "alpha", "beta", "gamma", "delta", "admin", "guest", "staff", "vip", "new", "old", "eu",
    "us", "asia",
];

/// One W1 record: `{"id", "name", "scores", "tags", "active"}`. Tags are indices into
/// [`TAGS`]: in Python they are the very objects of that list, so a tag repeated within a
/// record is one shared object.
#[derive(Clone, Debug, PartialEq)]
pub struct W1Record {
    pub id: u64,
    pub name: String,
    pub scores: [f64; 10],
    pub tags: Vec<usize>,
    pub active: bool,
}

pub fn w1_records(n: u64) -> Vec<W1Record> {
    let mut rng = SplitMix64::new(SEED_W1);
    (0..n)
        .map(|i| {
            let mut scores = [0.0; 10];
            for s in &mut scores {
                *s = rng.next_unit() * 100.0;
            }
            let ntags = 2 + rng.next_u64() % 3;
            let tags = (0..ntags).map(|_| (rng.next_u64() % 16) as usize).collect();
            let active = rng.next_u64() & 1 == 1;
            W1Record { id: i, name: format!("user{i}"), scores, tags, active }
        })
        .collect()
}

pub fn w1_key(i: u64) -> String {
    format!("user:{i}")
}

/// W1's checksum: `ci` (mod 2^64) and the running binary64 sum `cf`, over records given
/// as `(id, name length, total tag length, active, scores)`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct W1Checksum {
    pub ci: u64,
    pub cf: f64,
}

impl W1Checksum {
    pub fn add(&mut self, id: u64, name_len: usize, tags_len: usize, active: bool, scores: &[f64]) {
        self.ci = self
            .ci
            .wrapping_add(id)
            .wrapping_add(name_len as u64)
            .wrapping_add(tags_len as u64)
            .wrapping_add(active as u64);
        for &x in scores {
            self.cf += x;
        }
    }

    pub fn of_records(recs: &[W1Record]) -> W1Checksum {
        let mut c = W1Checksum::default();
        for r in recs {
            let tags_len = r.tags.iter().map(|&t| TAGS[t].len()).sum();
            c.add(r.id, r.name.len(), tags_len, r.active, &r.scores);
        }
        c
    }

    /// Equal, with the float sum compared bit for bit.
    pub fn same(&self, other: &W1Checksum) -> bool {
        self.ci == other.ci && self.cf.to_bits() == other.cf.to_bits()
    }
}

// ----- W2 -----

/// Record indices (into W1's keys) of the W2 gets, in order.
pub fn w2_sequence(ops: u64, hot: u64, n1: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(SEED_W2);
    let mut cdf = Vec::with_capacity(hot as usize);
    let mut total: u64 = 0;
    for r in 0..hot {
        total += (1u64 << 32) / (r + 1);
        cdf.push(total);
    }
    let stride = n1 / hot;
    (0..ops)
        .map(|_| {
            let u = rng.next_u64() % total;
            cdf.partition_point(|&c| c <= u) as u64 * stride
        })
        .collect()
}

// ----- W3 -----

pub const MODES: [&str; 4] = ["fast", "slow", "auto", "none"];
pub const W3_VALUES: usize = 110;

/// The arguments `(n, "q<n>", {"mode": MODES[n % 4], "limit": n % 100, "exact": n % 2 == 0})`.
#[derive(Clone, Debug, PartialEq)]
pub struct W3Args {
    pub n: u64,
    pub label: String,
    pub mode: &'static str,
    pub limit: u64,
    pub exact: bool,
}

pub fn w3_args(n: u64) -> W3Args {
    W3Args { n, label: format!("q{n}"), mode: MODES[(n % 4) as usize], limit: n % 100, exact: n.is_multiple_of(2) }
}

/// The memoized function's result: `{"n", "label", "mode", "values"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct W3Out {
    pub n: u64,
    pub label: String,
    pub mode: String,
    pub values: Vec<f64>,
}

/// The memoized function's body (pure and cheap).
pub fn w3_compute(args: &W3Args) -> W3Out {
    let half = args.n as f64 * 0.5;
    W3Out {
        n: args.n,
        label: args.label.clone(),
        mode: args.mode.to_owned(),
        values: (0..W3_VALUES).map(|j| half + j as f64).collect(),
    }
}

/// The argument `n` of each phase-B call.
pub fn w3_phase_b(calls: u64, a: u64) -> Vec<u64> {
    let mut rng = SplitMix64::new(SEED_W3);
    (0..calls).map(|t| if t % 10 == 9 { a + t / 10 } else { rng.next_u64() % a }).collect()
}

// ----- W4 -----

pub const W4_FLOATS: usize = 250_000;
pub const W4_RECORDS: usize = 31_250;
pub const W4_BLOB_BYTES: usize = 64 * W4_RECORDS;
pub const W4_PAYLOAD: u64 = 2_000_000;
const W4_TEMPLATES: [&str; 4] = [
    "level=INFO component=api msg=request served",
    "level=DEBUG component=cache msg=lookup hit",
    "level=WARN component=db msg=slow query",
    "level=INFO component=auth msg=token refreshed",
];

/// A W4 value: a list of floats (even k) or a bytes object (odd k).
#[derive(Clone, Debug, PartialEq)]
pub enum W4Value {
    Floats(Vec<f64>),
    Blob(Vec<u8>),
}

/// The W4 values in order, from one shared generator.
pub struct W4Values {
    rng: SplitMix64,
    k: u64,
}

impl W4Values {
    pub fn new() -> Self {
        W4Values { rng: SplitMix64::new(SEED_W4), k: 0 }
    }

    /// Value `k` (the calls must come in order 0, 1, 2, ...).
    pub fn next_value(&mut self) -> W4Value {
        let k = self.k;
        self.k += 1;
        if k.is_multiple_of(2) {
            W4Value::Floats((0..W4_FLOATS).map(|_| self.rng.next_unit()).collect())
        } else {
            let mut out = Vec::with_capacity(W4_BLOB_BYTES);
            for r in 0..W4_RECORDS as u64 {
                let u = self.rng.next_u64();
                out.extend_from_slice(&r.to_le_bytes());
                out.extend_from_slice(&((u & 0xFFFF_FFFF) as u32).to_le_bytes());
                out.extend_from_slice(&(((u >> 32) & 0x0F0F_0F0F) as u32).to_le_bytes());
                let t = W4_TEMPLATES[(u >> 62) as usize].as_bytes();
                out.extend_from_slice(t);
                out.resize(out.len() + 47 - t.len(), b' ');
                out.push(b'\n');
            }
            W4Value::Blob(out)
        }
    }
}

impl Default for W4Values {
    fn default() -> Self {
        W4Values::new()
    }
}

/// What W4 verifies of a value: length and elements 0, len/2 and last of a list; length
/// and the first, middle and last 64 bytes of a blob.
#[derive(Clone, Debug, PartialEq)]
pub enum W4Fingerprint {
    Floats { len: usize, first: u64, mid: u64, last: u64 },
    Blob { len: usize, first: Vec<u8>, mid: Vec<u8>, last: Vec<u8> },
}

pub fn w4_fingerprint_floats(len: usize, at: impl Fn(usize) -> Option<f64>) -> Option<W4Fingerprint> {
    let bits = |i| at(i).map(f64::to_bits);
    Some(W4Fingerprint::Floats { len, first: bits(0)?, mid: bits(len / 2)?, last: bits(len.checked_sub(1)?)? })
}

pub fn w4_fingerprint_blob(b: &[u8]) -> W4Fingerprint {
    let m = b.len() / 2;
    W4Fingerprint::Blob {
        len: b.len(),
        first: b[..64.min(b.len())].to_vec(),
        mid: b[m..(m + 64).min(b.len())].to_vec(),
        last: b[b.len().saturating_sub(64)..].to_vec(),
    }
}

impl W4Value {
    pub fn fingerprint(&self) -> W4Fingerprint {
        match self {
            W4Value::Floats(v) => match w4_fingerprint_floats(v.len(), |i| v.get(i).copied()) {
                Some(fp) => fp,
                None => W4Fingerprint::Floats { len: 0, first: 0, mid: 0, last: 0 },
            },
            W4Value::Blob(b) => w4_fingerprint_blob(b),
        }
    }
}

pub fn fnv1a64(data: &[u8]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    for &b in data {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01B3);
    }
    h
}

// ----- W5 -----

/// One W5 entry `{"rev", "label", "value", "counts"}` under key `"item:<j>"`.
#[derive(Clone, Debug, PartialEq)]
pub struct W5Entry {
    pub rev: u64,
    pub value: f64,
    pub counts: [u64; 3],
}

/// The initial state (E entries in j order), drawn from `rng` (the W5 generator).
pub fn w5_initial(entries: u64, rng: &mut SplitMix64) -> Vec<W5Entry> {
    (0..entries)
        .map(|_| {
            let value = rng.next_unit();
            let counts = [rng.next_u64() % 1000, rng.next_u64() % 1000, rng.next_u64() % 1000];
            W5Entry { rev: 0, value, counts }
        })
        .collect()
}

/// One mutation: `changes` times `j = next_u64() % E; v = next_unit()`. Calls `apply(j, v)`
/// for each, in order, so the caller can mirror the change into another representation.
pub fn w5_mutate(entries: u64, changes: u64, rng: &mut SplitMix64, mut apply: impl FnMut(usize, f64)) {
    for _ in 0..changes {
        let j = (rng.next_u64() % entries) as usize;
        let v = rng.next_unit();
        apply(j, v);
    }
}

pub fn w5_key(j: usize) -> String {
    format!("item:{j}")
}

pub fn w5_label(j: usize) -> String {
    format!("item{j}")
}

// ----- W6 -----

pub const SEED_W6: u64 = 6;
const W6_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
/// Rows of W6's large arrays, at every scale.
pub const W6_ROWS: usize = 4096;

/// Output `i` (0-based) of the W6 splitmix64 stream: splitmix64 is counter-based, output
/// i mixes `seed + (i + 1)·gamma`.
pub fn w6_u64(i: u64) -> u64 {
    let mut z = SEED_W6.wrapping_add((i + 1).wrapping_mul(W6_GAMMA));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The element type of a W6 array.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum W6Kind {
    /// float64, `(u >> 11) · 2^-53`.
    F8,
    /// int32, `(u >> 40) & 0xFFFF`.
    I4,
    /// float32, `float32((u >> 40) · 2^-24)`.
    F4,
}

impl W6Kind {
    pub fn item_size(self) -> usize {
        match self {
            W6Kind::F8 => 8,
            W6Kind::I4 | W6Kind::F4 => 4,
        }
    }
}

/// One W6 array: key, element type, shape, Fortran order, and the index of its first
/// element's draw in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct W6Spec {
    pub key: String,
    pub kind: W6Kind,
    pub shape: Vec<usize>,
    pub fortran: bool,
    pub first: u64,
}

impl W6Spec {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The data bytes (little-endian) in the array's memory order.
    pub fn data(&self) -> Vec<u8> {
        let n = self.len();
        let size = self.kind.item_size();
        let mut out = vec![0u8; n * size];
        let (rows, cols) = match self.shape[..] {
            [r, c] => (r, c),
            _ => (1, n),
        };
        for idx in 0..n {
            let u = w6_u64(self.first + idx as u64);
            // memory position of row-major index idx
            let pos = if self.fortran { (idx % cols) * rows + idx / cols } else { idx };
            let at = &mut out[pos * size..(pos + 1) * size];
            match self.kind {
                W6Kind::F8 => at.copy_from_slice(&((u >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)).to_le_bytes()),
                W6Kind::I4 => at.copy_from_slice(&(((u >> 40) & 0xFFFF) as i32).to_le_bytes()),
                W6Kind::F4 => at.copy_from_slice(&((((u >> 40) as f64) * (1.0 / 16_777_216.0)) as f32).to_le_bytes()),
            }
        }
        out
    }
}

/// `(BIG, SMALL)` of W6 at a scale.
pub fn w6_counts(scale: f64) -> (u64, u64) {
    (scaled(4, scale, 1), scaled(64, scale, 4))
}

/// The arrays of W6 in draw order (WORKLOADS.md §6b).
pub fn w6_specs(scale: f64) -> Vec<W6Spec> {
    let (big, small) = w6_counts(scale);
    let mut specs = Vec::new();
    let mut first = 0u64;
    let mut push = |key: String, kind, shape: Vec<usize>, fortran| {
        let n: usize = shape.iter().product();
        specs.push(W6Spec { key, kind, shape, fortran, first });
        first += n as u64;
    };
    for j in 0..big {
        push(format!("a:{j}"), W6Kind::F8, vec![W6_ROWS, 2048], false);
    }
    for j in 0..big {
        push(format!("b:{j}"), W6Kind::I4, vec![W6_ROWS * 1024], false);
    }
    for j in 0..small {
        push(format!("c:{j}"), W6Kind::F4, vec![64, 64], j % 2 == 1);
    }
    specs
}

/// The flat positions (into `a:0`, of `n` elements) whose elements W6's probe sums.
pub fn w6_probe_positions(n: usize) -> Vec<usize> {
    (0..1000u64).map(|i| (w6_u64(1_000_000_000_000 + i) % n as u64) as usize).collect()
}
