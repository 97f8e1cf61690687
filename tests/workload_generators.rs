//! The benchmark's data generators and reference pickle writer (`benches/workloads/`)
//! against WORKLOADS.md's reference values and against CPython itself: the same values
//! as `python_baselines.py --reference`, and byte-identical pickles.
//!
//! The CPython comparisons run `python3` with `../shared/bench/python_baselines.py`; when
//! either is missing they are skipped, except under CI, where they fail.

#[path = "../benches/workloads/checks.rs"]
mod checks;
#[path = "../benches/workloads/generate.rs"]
mod generate;
#[path = "../benches/workloads/refpickle.rs"]
mod refpickle;

use std::path::PathBuf;
use std::process::Command;

use generate::{Counts, SplitMix64, W1Checksum, W4Value, W4Values};

#[test]
fn workloads_md_reference_values() {
    let failed: Vec<String> = checks::reference_checks()
        .into_iter()
        .filter_map(|c| c.outcome.err().map(|e| format!("{}: {e}", c.name)))
        .collect();
    assert!(failed.is_empty(), "reference checks failed:\n{}", failed.join("\n"));
}

#[test]
fn counts_scale_with_minimums() {
    let one = Counts::for_scale(1.0);
    assert_eq!((one.w1_n, one.w2_ops, one.w2_hot, one.w3_a, one.w3_b), (20_000, 200_000, 1_000, 10_000, 100_000));
    assert_eq!((one.w4_n, one.w5_entries, one.w5_snapshots, one.w5_changes), (50, 5_000, 50, 50));
    let tiny = Counts::for_scale(0.0001);
    assert_eq!((tiny.w1_n, tiny.w2_ops, tiny.w2_hot, tiny.w3_a, tiny.w3_b), (10, 100, 10, 10, 100));
    assert_eq!((tiny.w4_n, tiny.w5_entries, tiny.w5_snapshots, tiny.w5_changes), (2, 100, 5, 1));
    // floor(x + 0.5): 0.25 × 50 = 12.5 rounds up, 0.01 × 50 = 0.5 rounds up to 1 then the minimum.
    assert_eq!(Counts::for_scale(0.25).w4_n, 13);
    assert_eq!(Counts::for_scale(0.0025).w1_n, 50);
}

#[test]
fn float_hex_is_pythons() {
    assert_eq!(checks::float_hex(1.0), "0x1.0000000000000p+0");
    assert_eq!(checks::float_hex(-0.5), "-0x1.0000000000000p-1");
    assert_eq!(checks::float_hex(0.0), "0x0.0p+0");
    assert_eq!(checks::float_hex(10016731.626024134), "0x1.31afb740863c4p+23");
}

#[test]
fn reference_pickles_of_simple_values() {
    use refpickle::{Obj, dumps};
    // pickle.dumps(1, 4), pickle.dumps({"a": [1, 2.5, None]}, 4)
    assert_eq!(dumps(&Obj::Int(1)), b"\x80\x04K\x01.");
    assert_eq!(
        dumps(&Obj::Dict(vec![(Obj::Str("a"), Obj::List(vec![Obj::Int(1), Obj::Float(2.5), Obj::None]))])),
        b"\x80\x04\x95\x18\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94]\x94(K\x01G@\x04\x00\x00\x00\x00\x00\x00Nes."
    );
    // s = "x"; pickle.dumps([s, s], 4): the second is a memo reference.
    assert_eq!(
        dumps(&Obj::List(vec![Obj::SharedStr(1, "x"), Obj::SharedStr(1, "x")])),
        b"\x80\x04\x95\x0b\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x01x\x94h\x01e."
    );
    assert_eq!(dumps(&Obj::Int(-1)), b"\x80\x04\x95\x06\x00\x00\x00\x00\x00\x00\x00J\xff\xff\xff\xff.");
    assert_eq!(
        dumps(&Obj::Int(1 << 40)),
        b"\x80\x04\x95\t\x00\x00\x00\x00\x00\x00\x00\x8a\x06\x00\x00\x00\x00\x00\x01."
    );
    // A dict of 1,000 items ends with an empty batch: `... u ( u .`
    let keys: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
    let d = dumps(&Obj::Dict(keys.iter().enumerate().map(|(i, k)| (Obj::Str(k), Obj::Int(i as i64))).collect()));
    assert!(d.ends_with(b"\xe7\x03u(u."));
}

// ----- against CPython -----

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/bench")
}

/// Runs python3 with `args`; `None` (skip) when python3 or the baselines are missing,
/// outside CI.
fn python(args: &[&str]) -> Option<Vec<u8>> {
    let script = bench_dir().join("python_baselines.py");
    let in_ci = std::env::var_os("CI").is_some();
    if !script.exists() {
        assert!(!in_ci, "{} is missing", script.display());
        eprintln!("skipped: {} is missing", script.display());
        return None;
    }
    match Command::new("python3").args(args).current_dir(bench_dir()).output() {
        Ok(out) => {
            assert!(out.status.success(), "python3 {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
            Some(out.stdout)
        }
        Err(e) => {
            assert!(!in_ci, "python3 cannot be run: {e}");
            eprintln!("skipped: python3 cannot be run: {e}");
            None
        }
    }
}

fn reference_json(scale: f64) -> Option<serde_json::Value> {
    let out = python(&["python_baselines.py", "--reference", "--scale", &scale.to_string()])?;
    Some(serde_json::from_slice(&out).expect("--reference prints JSON"))
}

fn same_as_python_reference(scale: f64) {
    let Some(r) = reference_json(scale) else { return };
    let c = Counts::for_scale(scale);
    let pc = &r["counts"];
    let counts = [
        ("w1_n", c.w1_n),
        ("w2_ops", c.w2_ops),
        ("w2_hot", c.w2_hot),
        ("w3_a", c.w3_a),
        ("w3_b", c.w3_b),
        ("w4_n", c.w4_n),
        ("w5_entries", c.w5_entries),
        ("w5_snapshots", c.w5_snapshots),
        ("w5_changes", c.w5_changes),
    ];
    for (name, n) in counts {
        assert_eq!(pc[name].as_u64(), Some(n), "count {name} at scale {scale}");
    }
    let mut r0 = SplitMix64::new(0);
    let first3: Vec<String> = (0..3).map(|_| format!("{:#x}", r0.next_u64())).collect();
    assert_eq!(r["splitmix64_seed0_first3"], serde_json::json!(first3));

    let recs = generate::w1_records(c.w1_n);
    let sum = W1Checksum::of_records(&recs);
    let w1 = &r["W1"];
    assert_eq!(w1["checksum_int"].as_u64(), Some(sum.ci));
    assert_eq!(w1["checksum_float_hex"].as_str(), Some(checks::float_hex(sum.cf).as_str()));
    let total: usize = recs.iter().map(|x| refpickle::dumps(&refpickle::w1_obj(x)).len()).sum();
    assert_eq!(w1["pickle4_bytes_total"].as_u64(), Some(total as u64));
    for (field, rec) in [("record0", &recs[0]), ("record1", &recs[1]), ("last_record", &recs[recs.len() - 1])] {
        let p = &w1[field];
        assert_eq!(p["id"].as_u64(), Some(rec.id));
        assert_eq!(p["name"].as_str(), Some(rec.name.as_str()));
        let scores: Vec<f64> = p["scores"].as_array().expect("scores").iter().filter_map(|x| x.as_f64()).collect();
        assert_eq!(scores, rec.scores.to_vec());
        let tags: Vec<&str> = p["tags"].as_array().expect("tags").iter().filter_map(|x| x.as_str()).collect();
        assert_eq!(tags, rec.tags.iter().map(|&t| generate::TAGS[t]).collect::<Vec<_>>());
        assert_eq!(p["active"].as_bool(), Some(rec.active));
    }

    let idx = generate::w2_sequence(c.w2_ops, c.w2_hot, c.w1_n);
    let w2 = &r["W2"];
    let first: Vec<String> = idx[..10].iter().map(|&i| generate::w1_key(i)).collect();
    assert_eq!(w2["first10_keys"], serde_json::json!(first));
    assert_eq!(w2["sum_of_ids"].as_u64(), Some(idx.iter().sum::<u64>()));
    let mut distinct = idx.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(w2["distinct_keys"].as_u64(), Some(distinct.len() as u64));
    let stride = c.w1_n / c.w2_hot;
    assert_eq!(w2["hits_on_rank0"].as_u64(), Some(idx.iter().filter(|&&i| i == 0).count() as u64));
    assert_eq!(w2["hits_on_rank1"].as_u64(), Some(idx.iter().filter(|&&i| i == stride).count() as u64));

    let seq = generate::w3_phase_b(c.w3_b, c.w3_a);
    let w3 = &r["W3"];
    assert_eq!(w3["phase_b_first12"], serde_json::json!(seq[..12].to_vec()));
    assert_eq!(w3["phase_b_sum"].as_u64(), Some(seq.iter().sum::<u64>()));
    for (field, n) in [("result_pickle4_bytes_n0", 0), ("result_pickle4_bytes_n10000", 10_000)] {
        let len = refpickle::dumps(&refpickle::w3_out_obj(&generate::w3_compute(&generate::w3_args(n)))).len();
        assert_eq!(w3[field].as_u64(), Some(len as u64), "{field}");
    }

    let w4 = &r["W4"];
    let mut vals = W4Values::new();
    let (W4Value::Floats(v0), W4Value::Blob(v1)) = (vals.next_value(), vals.next_value()) else {
        panic!("W4 v0 must be floats and v1 bytes")
    };
    let reprs: Vec<f64> =
        w4["v0_first3"].as_array().expect("v0_first3").iter().filter_map(|x| x.as_str()?.parse().ok()).collect();
    assert_eq!(reprs, v0[..3].to_vec());
    let raw: Vec<u8> = v0.iter().flat_map(|x| x.to_le_bytes()).collect();
    assert_eq!(w4["v0_fnv1a64_f64le"].as_str(), Some(format!("{:#x}", generate::fnv1a64(&raw)).as_str()));
    assert_eq!(w4["v1_fnv1a64"].as_str(), Some(format!("{:#x}", generate::fnv1a64(&v1)).as_str()));
    let hex: String = v1[..128].iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(w4["v1_first128_hex"].as_str(), Some(hex.as_str()));

    let w5 = &r["W5"];
    let mut rng = SplitMix64::new(generate::SEED_W5);
    let mut state = generate::w5_initial(c.w5_entries, &mut rng);
    assert_eq!(w5["item0"]["value"].as_f64(), Some(state[0].value));
    assert_eq!(w5["item0"]["counts"], serde_json::json!(state[0].counts.to_vec()));
    let keys: Vec<String> = (0..state.len()).map(generate::w5_key).collect();
    let labels: Vec<String> = (0..state.len()).map(generate::w5_label).collect();
    let mut sizes = Vec::new();
    for n in 0..c.w5_snapshots {
        if n > 0 {
            generate::w5_mutate(c.w5_entries, c.w5_changes, &mut rng, |j, v| {
                state[j].rev += 1;
                state[j].value = v;
            });
        }
        sizes.push(refpickle::dumps(&refpickle::w5_obj(&state, &keys, &labels)).len() as u64);
    }
    assert_eq!(w5["pickle4_bytes_snapshot0"].as_u64(), Some(sizes[0]));
    assert_eq!(w5["pickle4_bytes_total"].as_u64(), Some(sizes.iter().sum::<u64>()));
    let mut vsum = 0.0;
    for e in &state {
        vsum += e.value;
    }
    assert_eq!(w5["final_value_sum"].as_str().and_then(|s| s.parse::<f64>().ok()), Some(vsum));
    let changed = state.iter().filter(|e| e.rev > 0).count() as u64;
    assert_eq!(w5["final_distinct_changed"].as_u64(), Some(changed));
}

#[test]
fn same_values_as_python_at_scale_1() {
    same_as_python_reference(1.0);
}

#[test]
fn same_values_as_python_at_small_scale() {
    same_as_python_reference(0.003);
}

/// CPython's own pickles of workload values, length-prefixed (u32 LE), in this order:
/// W1 records 0..200; W3 args and results for 6 n; W4 v0 and v1; W5 snapshots 0..4 at
/// 100 entries with 1 change each; a 1,000-entry W5 state from seed 9 (a dict whose size
/// is a multiple of CPython's batch size).
const PY_PICKLES: &str = r#"
import pickle, struct, sys
sys.path.insert(0, ".")
import python_baselines as pb
out = []
out += [pickle.dumps(r, protocol=4) for r in pb.w1_records(200)]
for n in (0, 1, 7, 255, 10000, 123456):
    out.append(pickle.dumps(pb.w3_args(n), protocol=4))
    out.append(pickle.dumps(pb.w3_compute(*pb.w3_args(n)), protocol=4))
out += [pickle.dumps(v, protocol=4) for v in pb.w4_values(2)]
rng = pb.SplitMix64(pb.SEEDS["W5"])
state = pb.w5_initial(100, rng)
for n in range(5):
    if n:
        pb.w5_mutate(state, 100, 1, rng)
    out.append(pickle.dumps(state, protocol=4))
out.append(pickle.dumps(pb.w5_initial(1000, pb.SplitMix64(9)), protocol=4))
sys.stdout.buffer.write(b"".join(struct.pack("<I", len(p)) + p for p in out))
"#;

#[test]
fn reference_pickles_are_byte_identical_to_cpython() {
    let Some(raw) = python(&["-c", PY_PICKLES]) else { return };
    let mut py = Vec::new();
    let mut at = 0;
    while at < raw.len() {
        let len = u32::from_le_bytes(raw[at..at + 4].try_into().expect("4 bytes")) as usize;
        py.push(&raw[at + 4..at + 4 + len]);
        at += 4 + len;
    }
    let mut ours: Vec<(String, Vec<u8>)> = Vec::new();
    for r in generate::w1_records(200) {
        ours.push((format!("W1 record {}", r.id), refpickle::dumps(&refpickle::w1_obj(&r))));
    }
    for n in [0, 1, 7, 255, 10_000, 123_456] {
        let a = generate::w3_args(n);
        ours.push((format!("W3 args {n}"), refpickle::dumps(&refpickle::w3_args_obj(&a))));
        ours.push((format!("W3 result {n}"), refpickle::dumps(&refpickle::w3_out_obj(&generate::w3_compute(&a)))));
    }
    let mut vals = W4Values::new();
    for k in 0..2 {
        ours.push((format!("W4 value {k}"), refpickle::dumps(&refpickle::w4_obj(&vals.next_value()))));
    }
    let mut rng = SplitMix64::new(generate::SEED_W5);
    let mut state = generate::w5_initial(100, &mut rng);
    let keys: Vec<String> = (0..100).map(generate::w5_key).collect();
    let labels: Vec<String> = (0..100).map(generate::w5_label).collect();
    for n in 0..5 {
        if n > 0 {
            generate::w5_mutate(100, 1, &mut rng, |j, v| {
                state[j].rev += 1;
                state[j].value = v;
            });
        }
        ours.push((format!("W5 snapshot {n}"), refpickle::dumps(&refpickle::w5_obj(&state, &keys, &labels))));
    }
    let big = generate::w5_initial(1000, &mut SplitMix64::new(9));
    let (keys, labels): (Vec<String>, Vec<String>) =
        (0..1000).map(|j| (generate::w5_key(j), generate::w5_label(j))).unzip();
    ours.push(("W5 state of 1,000 entries".into(), refpickle::dumps(&refpickle::w5_obj(&big, &keys, &labels))));
    assert_eq!(py.len(), ours.len(), "number of pickles");
    for ((name, mine), theirs) in ours.iter().zip(&py) {
        if mine.as_slice() != *theirs {
            let at = mine.iter().zip(theirs.iter()).position(|(a, b)| a != b).unwrap_or(mine.len().min(theirs.len()));
            panic!("{name}: {} bytes here, {} from CPython, first difference at byte {at}", mine.len(), theirs.len());
        }
    }
}

/// W6's arrays, as `python_baselines.py` makes them with numpy at scale 0.0625 (one array
/// of each large kind, four small ones in C and Fortran order): the blake2b-256 of
/// `pickle.dumps(a, protocol=5)`, one line `key hex` each.
const PY_W6: &str = r#"
import hashlib, pickle, sys
sys.path.insert(0, ".")
try:
    import numpy
except ImportError:
    print("numpy is not installed", file=sys.stderr)
    sys.exit(3)
import python_baselines as pb
c = pb.counts_for(0.0625)
for key, a in pb.w6_arrays(c):
    print(key, hashlib.blake2b(pickle.dumps(a, protocol=5), digest_size=32).hexdigest())
"#;

/// The benchmark's W6 arrays, written by the crate's numpy writer, are byte for byte the
/// pickles numpy writes for python_baselines.py's arrays.
#[test]
fn w6_array_pickles_are_numpys() {
    use blake2::{Blake2b, Digest as _, digest::consts::U32};
    use pickleshelf::pickle::numpy::{self, ArrayHeader, Dtype, Order};
    let script = bench_dir().join("python_baselines.py");
    let in_ci = std::env::var_os("CI").is_some();
    if !script.exists() {
        assert!(!in_ci, "{} is missing", script.display());
        return;
    }
    let out = match Command::new("python3").args(["-c", PY_W6]).current_dir(bench_dir()).output() {
        Ok(o) if o.status.code() == Some(3) && !in_ci => {
            eprintln!("skipped: numpy is not installed");
            return;
        }
        Ok(o) => {
            assert!(o.status.success(), "python3 failed: {}", String::from_utf8_lossy(&o.stderr));
            String::from_utf8(o.stdout).expect("text")
        }
        Err(e) => {
            assert!(!in_ci, "python3 cannot be run: {e}");
            return;
        }
    };
    let want: Vec<(String, String)> = out
        .lines()
        .map(|l| {
            let (k, h) = l.split_once(' ').expect("key and digest");
            (k.to_owned(), h.to_owned())
        })
        .collect();
    let specs = generate::w6_specs(0.0625);
    assert_eq!(want.len(), specs.len());
    for (spec, (key, digest)) in specs.iter().zip(&want) {
        assert_eq!(&spec.key, key);
        let dtype = match spec.kind {
            generate::W6Kind::F8 => Dtype::Float64,
            generate::W6Kind::I4 => Dtype::Int32,
            generate::W6Kind::F4 => Dtype::Float32,
        };
        let order = if spec.fortran { Order::Fortran } else { Order::C };
        let pickle = numpy::write(&ArrayHeader::new(dtype, spec.shape.clone(), order), &spec.data()).expect("write");
        let ours: String = Blake2b::<U32>::digest(&pickle).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&ours, digest, "{key}: our pickle differs from numpy's");
    }
}
