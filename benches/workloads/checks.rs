//! The reference values of `WORKLOADS.md`, checked against the generators and the
//! reference pickle writer (std only: also run by `tests/workload_generators.rs`).

#![allow(dead_code)] // the test and the bench each use a different part

use super::generate::{self, Counts, SplitMix64, TAGS, W1Checksum, W4Value, W4Values};
use super::refpickle;

/// One named check and what went wrong, if anything.
pub struct Check {
    pub name: &'static str,
    pub outcome: Result<(), String>,
}

fn check(name: &'static str, ok: bool, detail: impl FnOnce() -> String) -> Check {
    Check { name, outcome: if ok { Ok(()) } else { Err(detail()) } }
}

fn eq<T: PartialEq + std::fmt::Debug>(name: &'static str, got: T, want: T) -> Check {
    let ok = got == want;
    check(name, ok, || format!("got {got:?}, want {want:?}"))
}

/// Every reference value WORKLOADS.md gives (at scale 1.0).
pub fn reference_checks() -> Vec<Check> {
    let c = Counts::for_scale(1.0);
    let mut out = Vec::new();

    let mut r0 = SplitMix64::new(0);
    out.push(eq(
        "splitmix64 seed 0",
        [r0.next_u64(), r0.next_u64(), r0.next_u64()],
        [0xe220a8397b1dcdaf, 0x6e789e6aa1b965f4, 0x06c45d188009454f],
    ));

    // W1
    let recs = generate::w1_records(c.w1_n);
    let sum = W1Checksum::of_records(&recs);
    out.push(eq("W1 checksum ci", sum.ci, 200_405_455));
    out.push(eq("W1 checksum cf (hex)", float_hex(sum.cf).as_str(), "0x1.31afb740863c4p+23"));
    out.push(eq("W1 checksum cf", sum.cf, 10016731.626024134));
    out.push(eq("W1 record 0 scores[0]", recs[0].scores[0], 56.65615751722809));
    let tags = |i: usize| recs[i].tags.iter().map(|&t| TAGS[t]).collect::<Vec<_>>();
    out.push(eq("W1 record 0 tags", tags(0), vec!["us", "red"]));
    out.push(eq("W1 record 0 active", recs[0].active, false));
    out.push(eq("W1 record 19999 tags", tags(19_999), vec!["delta", "gamma", "vip", "alpha"]));
    out.push(eq("W1 record 19999 active", recs[19_999].active, true));
    let total: usize = recs.iter().map(|r| refpickle::dumps(&refpickle::w1_obj(r)).len()).sum();
    out.push(eq("W1 pickle-4 bytes total", total, 3_725_436));

    // W2
    let idx = generate::w2_sequence(c.w2_ops, c.w2_hot, c.w1_n);
    let first: Vec<String> = idx[..10].iter().map(|&i| generate::w1_key(i)).collect();
    out.push(eq(
        "W2 first keys",
        first.iter().map(String::as_str).collect::<Vec<_>>(),
        vec![
            "user:11780",
            "user:4920",
            "user:20",
            "user:60",
            "user:560",
            "user:0",
            "user:740",
            "user:20",
            "user:17080",
            "user:0",
        ],
    ));
    out.push(eq("W2 sum of ids", idx.iter().sum::<u64>(), 530_123_480));
    let mut distinct = idx.clone();
    distinct.sort_unstable();
    distinct.dedup();
    out.push(eq("W2 distinct keys", distinct.len(), 1000));
    out.push(eq("W2 rank 0 hits", idx.iter().filter(|&&i| i == 0).count(), 26_788));
    out.push(eq("W2 rank 1 hits", idx.iter().filter(|&&i| i == 20).count(), 13_305));

    // W3
    let seq = generate::w3_phase_b(c.w3_b, c.w3_a);
    out.push(eq(
        "W3 phase B first 12",
        seq[..12].to_vec(),
        vec![9053, 1561, 7729, 5647, 3366, 5335, 72, 470, 2842, 10000, 7522, 9500],
    ));
    out.push(eq("W3 phase B sum", seq.iter().sum::<u64>(), 599_176_340));
    out.push(eq("W3 phase B hits", seq.iter().filter(|&&n| n < c.w3_a).count(), 90_000));
    let size = |n| refpickle::dumps(&refpickle::w3_out_obj(&generate::w3_compute(&generate::w3_args(n)))).len();
    out.push(eq("W3 result pickle bytes n=0", size(0), 1052));
    out.push(eq("W3 result pickle bytes n=10000", size(10_000), 1057));

    // W4
    let mut w4 = W4Values::new();
    match (w4.next_value(), w4.next_value()) {
        (W4Value::Floats(v0), W4Value::Blob(v1)) => {
            out.push(eq(
                "W4 v0 first 3",
                v0[..3].to_vec(),
                vec![0.43145581774497377, 0.8924068459997183, 0.8591171495049661],
            ));
            let raw: Vec<u8> = v0.iter().flat_map(|x| x.to_le_bytes()).collect();
            out.push(eq("W4 v0 FNV-1a-64", generate::fnv1a64(&raw), 0xd947446de78cd3db));
            out.push(eq("W4 v1 length", v1.len(), 2_000_000));
            out.push(eq(
                "W4 v1 first 16 bytes",
                v1[..16].to_vec(),
                vec![0, 0, 0, 0, 0, 0, 0, 0, 0x7a, 0x72, 0x3c, 0x8b, 0x03, 0x03, 0x01, 0x0c],
            ));
            out.push(eq("W4 v1 FNV-1a-64", generate::fnv1a64(&v1), 0x0e8aca73364cba7e));
        }
        _ => out.push(check("W4 value kinds", false, || "v0 must be floats and v1 bytes".into())),
    }

    // W5
    let mut rng = SplitMix64::new(generate::SEED_W5);
    let mut state = generate::w5_initial(c.w5_entries, &mut rng);
    let mut probe = rng.clone();
    let firsts: Vec<u64> = (0..5)
        .map(|_| {
            let j = probe.next_u64() % c.w5_entries;
            probe.next_u64();
            j
        })
        .collect();
    out.push(eq("W5 first changed indices", firsts, vec![4894, 645, 632, 3046, 630]));
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
        sizes.push(refpickle::dumps(&refpickle::w5_obj(&state, &keys, &labels)).len());
    }
    out.push(eq("W5 snapshot 0 pickle bytes", sizes[0], 288_964));
    out.push(eq("W5 all snapshots pickle bytes", sizes.iter().sum::<usize>(), 14_448_200));
    let mut vsum = 0.0;
    for e in &state {
        vsum += e.value;
    }
    out.push(eq("W5 final value sum", vsum, 2528.4946735649305));
    out.push(eq("W5 entries with rev > 0", state.iter().filter(|e| e.rev > 0).count(), 1915));
    out
}

/// Python's `float.hex()` for finite values.
pub fn float_hex(x: f64) -> String {
    if x == 0.0 {
        return if x.is_sign_negative() { "-0x0.0p+0".into() } else { "0x0.0p+0".into() };
    }
    let bits = x.to_bits();
    let sign = if bits >> 63 == 1 { "-" } else { "" };
    let exp = ((bits >> 52) & 0x7FF) as i64;
    let mant = bits & ((1u64 << 52) - 1);
    let (lead, e) = if exp == 0 { (0, -1022) } else { (1, exp - 1023) };
    format!("{sign}0x{lead}.{mant:013x}p{e:+}")
}
