//! Codec throughput side by side with CPython's C `pickle.loads` / `pickle.dumps`.
//!
//! ```sh
//! cargo bench -p pickleshelf-pickle --bench codec      # or scripts/codec-bench.sh
//! cargo bench -p pickleshelf-pickle --bench codec -- --repeats 9 --quick
//! ```
//!
//! Options: `--repeats N` (default 7, at least 5 recommended), `--quick` (a tenth of the
//! passes, for a smoke run), `--data DIR` (byte sets already written by
//! `benches/codec_bench.py write DIR`; by default they are written to a temporary
//! directory), `--no-python` (our side only; the byte sets are then made by our own
//! encoder, which writes the same bytes), `--only TEXT` (our side only, only the rows
//! whose `set/op` contains TEXT, e.g. `w1/decode`: for profiling under
//! `valgrind --tool=callgrind`).
//!
//! The byte sets (see `benches/codec_bench.py`) are pickles written by CPython 3: the
//! conformance corpus (every `values` case at protocol 4 and every `objects` file), the
//! 20,000 W1 records of `../shared/bench/WORKLOADS.md` §2, W4's list of 250,000 floats
//! and its 2 MB bytes, and W5's first snapshot. Both sides read the same files. Our
//! side first checks that its own generator (below) and encoder give exactly those
//! bytes for W1, W4 and W5.
//!
//! Measured, per set: decode (`pickle::decode` → `Value`, dropped; CPython
//! `pickle.loads`) over every pickle, and encode (`pickle::encode(&v, 4)` of values
//! decoded beforehand; CPython `pickle.dumps(v, 4)`); for W1 also the typed path
//! (`pickle::from_slice::<Record>`, `pickle::to_vec(&Record)`) and for W4's floats
//! `Vec<f64>`. A repeat is K passes over the set (K per set, the same on both sides);
//! each repeat is timed in thread CPU time (`CLOCK_THREAD_CPUTIME_ID`, which is also
//! Python's `time.thread_time`), so time the machine spends on other jobs does not
//! count. The table shows the median over the repeats and their min..max, in MB/s
//! (10^6 pickle bytes read or written) and pickles per second, and the ratio of the
//! median rates, pickleshelf / CPython (pickles per second: both sides handle the same
//! pickles, even where `to_vec` writes a few more bytes).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;

use pickleshelf_pickle::{self as pickle, Node, NodeId, Value, direct_testing};
use serde::{Deserialize, Serialize};

// ----- the workload generator (WORKLOADS.md §1) -----

struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn next_unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

const TAGS: [&str; 16] = [
    "red", "green", "blue", "alpha", "beta", "gamma", "delta", "admin", "guest", "staff", "vip", "new", "old", "eu",
    "us", "asia",
];

/// A W1 record; the typed path.
#[derive(Serialize, Deserialize, PartialEq, Debug)]
struct Record {
    id: u64,
    name: String,
    scores: Vec<f64>,
    tags: Vec<String>,
    active: bool,
}

fn w1_records() -> Vec<Record> {
    let mut g = SplitMix(1);
    (0..20_000u64)
        .map(|i| {
            let scores = (0..10).map(|_| g.next_unit() * 100.0).collect();
            let ntags = 2 + g.next_u64() % 3;
            let tags = (0..ntags).map(|_| TAGS[(g.next_u64() % 16) as usize].to_owned()).collect();
            let active = g.next_u64() & 1 == 1;
            Record { id: i, name: format!("user{i}"), scores, tags, active }
        })
        .collect()
}

/// A W1 record as Python builds it: a tag drawn twice is the same str object (which
/// `to_vec(&Record)` cannot know, so only this form gives CPython's exact bytes).
fn w1_value(r: &Record) -> Value {
    let mut v = Value::new(Node::None);
    let pair = |v: &mut Value, key: &str, node: Node| (v.push(Node::Str(key.into())), v.push(node));
    let id = pair(&mut v, "id", Node::Int(r.id as i64));
    let name = pair(&mut v, "name", Node::Str(r.name.as_str().into()));
    let scores: Vec<NodeId> = r.scores.iter().map(|&s| v.push(Node::Float(s))).collect();
    let scores = pair(&mut v, "scores", Node::List(scores));
    let mut seen: Vec<(&str, NodeId)> = Vec::new();
    let mut tags = Vec::new();
    for t in &r.tags {
        let id = match seen.iter().find(|(s, _)| s == t) {
            Some(&(_, id)) => id,
            None => {
                let id = v.push(Node::Str(t.as_str().into()));
                seen.push((t, id));
                id
            }
        };
        tags.push(id);
    }
    let tags = pair(&mut v, "tags", Node::List(tags));
    let active = pair(&mut v, "active", Node::Bool(r.active));
    let root = v.push(Node::Dict(vec![id, name, scores, tags, active]));
    v.set_root(root);
    v
}

/// W4's first two values: 250,000 floats, then the 2 MB log-like bytes.
fn w4_values() -> (Vec<f64>, Vec<u8>) {
    const TEMPLATES: [&str; 4] = [
        "level=INFO component=api msg=request served",
        "level=DEBUG component=cache msg=lookup hit",
        "level=WARN component=db msg=slow query",
        "level=INFO component=auth msg=token refreshed",
    ];
    let mut g = SplitMix(4);
    let floats = (0..250_000).map(|_| g.next_unit()).collect();
    let mut blob = Vec::with_capacity(2_000_000);
    for r in 0..31_250u64 {
        let u = g.next_u64();
        blob.extend_from_slice(&r.to_le_bytes());
        blob.extend_from_slice(&((u & 0xFFFF_FFFF) as u32).to_le_bytes());
        blob.extend_from_slice(&(((u >> 32) & 0x0F0F_0F0F) as u32).to_le_bytes());
        blob.extend_from_slice(format!("{:<47}\n", TEMPLATES[(u >> 62) as usize]).as_bytes());
    }
    (floats, blob)
}

#[derive(Serialize)]
struct Entry {
    rev: u64,
    label: String,
    value: f64,
    counts: Vec<u64>,
}

/// A map in insertion order.
struct Ordered<'a, V>(&'a [(String, V)]);

impl<V: Serialize> Serialize for Ordered<'_, V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// W5's initial state (snapshot 0).
fn w5_state() -> Vec<(String, Entry)> {
    let mut g = SplitMix(5);
    (0..5000)
        .map(|j| {
            let value = g.next_unit();
            let counts = (0..3).map(|_| g.next_u64() % 1000).collect();
            (format!("item:{j}"), Entry { rev: 0, label: format!("item{j}"), value, counts })
        })
        .collect()
}

// ----- byte sets -----

/// Set names, as `benches/codec_bench.py` writes them, and passes per repeat.
const SETS: [(&str, usize); 5] = [("corpus", 100), ("w1", 10), ("w4_floats", 20), ("w4_bytes", 1000), ("w5", 50)];

fn read_set(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let n = u32::from_le_bytes(data[pos..pos + 4].try_into().expect("4 bytes")) as usize;
        out.push(data[pos + 4..pos + 4 + n].to_vec());
        pos += 4 + n;
    }
    out
}

fn write_set(path: &Path, pickles: &[Vec<u8>]) {
    let mut data = Vec::new();
    for p in pickles {
        data.extend_from_slice(&(p.len() as u32).to_le_bytes());
        data.extend_from_slice(p);
    }
    std::fs::write(path, data).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// The byte sets without Python: our encoder's output for W1/W4/W5 (checked equal to
/// CPython's whenever Python is there) and the corpus's files.
fn write_sets_ourselves(dir: &Path, cases: &Path) {
    let records = w1_records();
    let w1: Vec<Vec<u8>> = records.iter().map(|r| enc(&w1_value(r))).collect();
    let (floats, blob) = w4_values();
    let state = w5_state();
    let mut corpus = Vec::new();
    let mut names: Vec<PathBuf> = std::fs::read_dir(cases)
        .unwrap_or_else(|e| panic!("{}: {e}", cases.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "pkl"))
        .collect();
    names.sort();
    for p in names {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.starts_with("obj_") || name.ends_with(".p4.pkl") {
            corpus.push(std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())));
        }
    }
    write_set(&dir.join("corpus.pkls"), &corpus);
    write_set(&dir.join("w1.pkls"), &w1);
    write_set(&dir.join("w4_floats.pkls"), &[pickle::to_vec(&floats).expect("floats")]);
    write_set(&dir.join("w4_bytes.pkls"), &[pickle::to_vec(&Bytes(&blob)).expect("bytes")]);
    write_set(&dir.join("w5.pkls"), &[pickle::to_vec(&Ordered(&state)).expect("w5")]);
}

/// `bytes` through serde.
struct Bytes<'a>(&'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(self.0)
    }
}

fn enc(v: &Value) -> Vec<u8> {
    pickle::encode(v, 4).unwrap_or_else(|e| panic!("{e}"))
}

/// Checks that the files hold the workloads' data exactly as our generator and encoder
/// make them (so W1/W4/W5 are CPython's bytes and our generator is right).
fn check_sets(sets: &[(&str, Vec<Vec<u8>>)], records: &[Record]) {
    let get = |name: &str| &sets.iter().find(|(n, _)| *n == name).expect("set").1;
    let w1 = get("w1");
    assert_eq!(w1.iter().map(Vec::len).sum::<usize>(), 3_725_436, "W1 total differs from WORKLOADS.md");
    for (p, r) in w1.iter().zip(records) {
        assert_eq!(&enc(&w1_value(r)), p, "W1 record {} differs from the generator's", r.id);
    }
    let (floats, blob) = w4_values();
    assert_eq!(get("w4_floats")[0], pickle::to_vec(&floats).expect("floats"), "W4 floats differ");
    assert_eq!(get("w4_bytes")[0], pickle::to_vec(&Bytes(&blob)).expect("bytes"), "W4 bytes differ");
    assert_eq!(get("w5")[0], pickle::to_vec(&Ordered(&w5_state())).expect("w5"), "W5 differs");
}

// ----- timing -----

/// This thread's CPU time in seconds: `clock_gettime(CLOCK_THREAD_CPUTIME_ID)` on
/// Linux (std has no binding; libc is linked anyway), wall-clock time elsewhere.
#[cfg(target_os = "linux")]
fn cpu_seconds() -> f64 {
    #[repr(C)]
    struct Timespec {
        sec: i64,
        nsec: i64,
    }
    unsafe extern "C" {
        fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    }
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec (64-bit Linux layout).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime failed");
    ts.sec as f64 + ts.nsec as f64 * 1e-9
}

#[cfg(not(target_os = "linux"))]
fn cpu_seconds() -> f64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64()
}

/// Seconds per pass of each repeat: `passes` calls of `f` per repeat, after one
/// warm-up call. Never inlined, so that a profiler can collect this function only
/// (`valgrind --tool=callgrind --toggle-collect='codec::measure'`).
#[inline(never)]
fn measure(repeats: usize, passes: usize, f: &mut dyn FnMut()) -> Vec<f64> {
    f();
    (0..repeats)
        .map(|_| {
            let t = cpu_seconds();
            for _ in 0..passes {
                f();
            }
            (cpu_seconds() - t) / passes as f64
        })
        .collect()
}

/// One row of the table: a side's seconds per pass and the bytes and pickles per pass.
struct Side {
    secs: Vec<f64>,
    bytes: usize,
    count: usize,
}

impl Side {
    fn mbs(&self) -> Vec<f64> {
        sorted(self.secs.iter().map(|s| self.bytes as f64 / s / 1e6).collect())
    }
    fn ops(&self) -> f64 {
        self.count as f64 / median(&sorted(self.secs.clone()))
    }
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn median(v: &[f64]) -> f64 {
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn cell(side: Option<&Side>) -> String {
    match side {
        Some(s) => {
            let m = s.mbs();
            format!("{:>8.1} ({:>6.1}..{:>6.1}) {:>10}", median(&m), m[0], m[m.len() - 1], format_ops(s.ops()))
        }
        None => format!("{:>8} {:>16} {:>10}", "-", "", "-"),
    }
}

fn format_ops(ops: f64) -> String {
    if ops >= 1e6 {
        format!("{:.2}M", ops / 1e6)
    } else if ops >= 1e3 {
        format!("{:.1}k", ops / 1e3)
    } else {
        format!("{ops:.1}")
    }
}

// ----- CPython -----

/// One row of our side.
struct Row {
    set: &'static str,
    op: &'static str,
    ours: Side,
    /// Which CPython measurement of the set it compares with: [`DECODE`] or [`ENCODE`].
    theirs: usize,
}

const DECODE: usize = 0;
const ENCODE: usize = 1;

/// The numbers `codec_bench.py measure` printed: per set, seconds per pass.
struct Python {
    version: String,
    sets: Vec<(String, Side, Side)>,
}

/// Reads the JSON `codec_bench.py measure` prints (flat, known shape; no JSON crate).
fn parse_python(json: &str) -> Python {
    let mut sets = Vec::new();
    for (name, _) in SETS {
        let Some(start) = json.find(&format!("\"{name}\": {{")) else { continue };
        let body = &json[start..];
        let body = &body[..body.find('}').unwrap_or(body.len())];
        let num = |key: &str| -> usize {
            let i = body.find(&format!("\"{key}\": ")).unwrap_or_else(|| panic!("{key} missing")) + key.len() + 4;
            body[i..].split(|c: char| !c.is_ascii_digit()).next().and_then(|s| s.parse().ok()).expect("number")
        };
        let list = |key: &str| -> Vec<f64> {
            let i = body.find(&format!("\"{key}\": [")).unwrap_or_else(|| panic!("{key} missing")) + key.len() + 5;
            let end = i + body[i..].find(']').expect("]");
            body[i..end].split(',').map(|s| s.trim().parse().expect("float")).collect()
        };
        let count = num("count");
        sets.push((
            name.to_owned(),
            Side { secs: list("decode_s"), bytes: num("bytes_in"), count },
            Side { secs: list("encode_s"), bytes: num("bytes_out"), count },
        ));
    }
    let version = json
        .find("\"python\": \"")
        .map(|i| json[i + 11..].split('"').next().unwrap_or("?").to_owned())
        .unwrap_or_else(|| "?".into());
    Python { version, sets }
}

// ----- main -----

struct Options {
    repeats: usize,
    quick: bool,
    data: Option<PathBuf>,
    python: bool,
    only: Option<String>,
}

fn options() -> Options {
    let mut o = Options { repeats: 7, quick: false, data: None, python: true, only: None };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--repeats" => o.repeats = args.next().and_then(|n| n.parse().ok()).expect("--repeats N"),
            "--quick" => o.quick = true,
            "--data" => o.data = Some(args.next().expect("--data DIR").into()),
            "--no-python" => o.python = false,
            "--only" => {
                o.only = Some(args.next().expect("--only TEXT"));
                o.python = false;
            }
            "--bench" => {} // passed by cargo bench
            other => panic!("unknown option {other}; see the header of benches/codec.rs"),
        }
    }
    o
}

fn main() {
    let o = options();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = root.join("benches/codec_bench.py");
    let cases = root.join("../../../shared/conformance/cases");
    let tmp = tempfile::tempdir().expect("temporary directory");
    let dir = o.data.clone().unwrap_or_else(|| tmp.path().to_owned());
    let passes = |k: usize| if o.quick { k.div_ceil(10) } else { k };

    let mut python = o.python;
    if o.data.is_none() {
        let wrote = python
            && Command::new("python3")
                .arg(&script)
                .arg("write")
                .arg(&dir)
                .arg("--cases")
                .arg(&cases)
                .status()
                .is_ok_and(|s| s.success());
        if !wrote {
            if python {
                eprintln!("codec bench: python3 could not write the byte sets; our side only, our own bytes");
            }
            python = false;
            write_sets_ourselves(&dir, &cases);
        }
    }
    let sets: Vec<(&str, Vec<Vec<u8>>)> =
        SETS.iter().map(|&(name, _)| (name, read_set(&dir.join(format!("{name}.pkls"))))).collect();
    let records = w1_records();
    check_sets(&sets, &records);

    // Our side.
    let mut rows: Vec<Row> = Vec::new();
    let mut run =
        |set: &'static str, op: &'static str, ours: (usize, usize), theirs: usize, k: usize, f: &mut dyn FnMut()| {
            if o.only.as_ref().is_some_and(|only| !format!("{set}/{op}").contains(only.as_str())) {
                return;
            }
            let secs = measure(o.repeats, passes(k), f);
            rows.push(Row { set, op, ours: Side { secs, bytes: ours.0, count: ours.1 }, theirs });
        };
    for (&(name, k), (_, pickles)) in SETS.iter().zip(&sets) {
        if o.only.as_ref().and_then(|only| only.split_once('/')).is_some_and(|(set, _)| set != name) {
            // `--only w1/...`: not even the other sets' preparation (clearer profiles).
            continue;
        }
        let n = pickles.len();
        let bytes_in: usize = pickles.iter().map(Vec::len).sum();
        let values: Vec<Value> = pickles.iter().map(|p| pickle::decode(p).unwrap_or_else(|e| panic!("{e}"))).collect();
        let bytes_out: usize = values.iter().map(|v| enc(v).len()).sum();
        run(name, "decode -> Value", (bytes_in, n), DECODE, k, &mut || {
            for p in pickles {
                black_box(pickle::decode(black_box(p)).expect("decode"));
            }
        });
        if name == "w1" {
            run(name, "from_slice::<Record>", (bytes_in, n), DECODE, k, &mut || {
                for p in pickles {
                    black_box(pickle::from_slice::<Record>(black_box(p)).expect("from_slice"));
                }
            });
            // What `from_slice` did before it read the opcodes directly.
            run(name, "  via Value (old path)", (bytes_in, n), DECODE, k, &mut || {
                for p in pickles {
                    black_box(direct_testing::via_value::<Record>(black_box(p)).expect("from_value"));
                }
            });
        }
        if name == "w4_floats" {
            run(name, "from_slice::<Vec<f64>>", (bytes_in, n), DECODE, k, &mut || {
                black_box(pickle::from_slice::<Vec<f64>>(black_box(&pickles[0])).expect("from_slice"));
            });
            run(name, "  via Value (old path)", (bytes_in, n), DECODE, k, &mut || {
                black_box(direct_testing::via_value::<Vec<f64>>(black_box(&pickles[0])).expect("from_value"));
            });
        }
        run(name, "encode(&Value)", (bytes_out, n), ENCODE, k, &mut || {
            for v in &values {
                black_box(pickle::encode(black_box(v), 4).expect("encode"));
            }
        });
        if name == "w1" {
            let bytes = records.iter().map(|r| pickle::to_vec(r).expect("to_vec").len()).sum();
            run(name, "to_vec(&Record)", (bytes, n), ENCODE, k, &mut || {
                for r in &records {
                    black_box(pickle::to_vec(black_box(r)).expect("to_vec"));
                }
            });
        }
        if name == "w4_floats" {
            let floats: Vec<f64> = pickle::from_slice(&pickles[0]).expect("floats");
            let bytes = pickle::to_vec(&floats).expect("to_vec").len();
            run(name, "to_vec(&Vec<f64>)", (bytes, n), ENCODE, k, &mut || {
                black_box(pickle::to_vec(black_box(&floats)).expect("to_vec"));
            });
        }
    }

    // CPython's side, in one process, on the same files.
    let theirs = if python {
        let spec: Vec<String> = SETS.iter().map(|&(n, k)| format!("{n}={}", passes(k))).collect();
        let out = Command::new("python3")
            .arg(&script)
            .arg("measure")
            .arg(&dir)
            .arg("--repeats")
            .arg(o.repeats.to_string())
            .arg("--passes")
            .arg(spec.join(","))
            .arg("--cases")
            .arg(&cases)
            .output()
            .expect("python3");
        assert!(out.status.success(), "codec_bench.py measure failed: {}", String::from_utf8_lossy(&out.stderr));
        Some(parse_python(&String::from_utf8_lossy(&out.stdout)))
    } else {
        None
    };

    println!(
        "codec throughput: median (min..max) of {} repeats, thread CPU time; MB = 10^6 pickle bytes; \
         ratio = pickleshelf / CPython {}",
        o.repeats,
        theirs.as_ref().map_or("(not run)", |p| p.version.as_str())
    );
    println!(
        "{:<10} {:<23} {:>6} {:>8} | {:^37} | {:^37} | {:>6}",
        "set", "op", "pkls", "MB", "pickleshelf MB/s (min..max)   ops/s", "CPython MB/s (min..max)   ops/s", "ratio"
    );
    for r in &rows {
        let py = theirs
            .as_ref()
            .and_then(|p| p.sets.iter().find(|(n, _, _)| n == r.set))
            .map(|(_, d, e)| if r.theirs == DECODE { d } else { e });
        let ratio = py.map_or("-".into(), |py| format!("{:.2}x", r.ours.ops() / py.ops()));
        println!(
            "{:<10} {:<23} {:>6} {:>8.3} | {} | {} | {:>6}",
            r.set,
            r.op,
            r.ours.count,
            r.ours.bytes as f64 / 1e6,
            cell(Some(&r.ours)),
            cell(py),
            ratio
        );
    }
}
