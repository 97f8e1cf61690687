#!/usr/bin/env python3
"""Ratio tables: pickleshelf against the best Python store, and the goals.

Reads the JSON files that `python_baselines.py --json` and
`cargo bench --bench workloads -- --json` wrote, one pair per round (rounds run
back to back by scripts/bench-compare.sh), and prints Markdown: per workload and
metric, pickleshelf's median and spread (min..max over rounds), the best
persistent Python store's, their ratio (median and min..max of the per-round
ratios), and then each goal with met/missed.

Usage: bench_compare.py --py py-1.json py-2.json ... --rs rs-1.json rs-2.json ...
Only the standard library is used.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys

NOT_COMPETITORS = {"dict_mem"}  # Python's in-memory dict: an upper bound only

# (workload, metric, label, "higher" or "lower" is better)
METRICS = [
    ("W1", "insert_close_ops_s", "insert+close ops/s", "higher"),
    ("W1", "insert_ops_s", "insert ops/s", "higher"),
    ("W1", "close_s", "close s", "lower"),
    ("W1", "reopen_read_ops_s", "reopen+read-all ops/s", "higher"),
    ("W1", "read_ops_s", "read ops/s", "higher"),
    ("W1", "disk_bytes", "disk bytes", "lower"),
    ("W1", "disk_over_logical", "disk / logical", "lower"),
    ("W1", "peak_ops_rss_mb", "RSS peak MB (ops)", "lower"),
    ("W2", "get_ops_s", "hot get ops/s", "higher"),
    ("W2", "peak_ops_rss_mb", "RSS peak MB (ops)", "lower"),
    ("W3", "total_s", "total s", "lower"),
    ("W3", "hit_ops_s", "hit ops/s", "higher"),
    ("W3", "miss_ops_s", "miss ops/s (phase A)", "higher"),
    ("W3", "disk_bytes", "disk bytes", "lower"),
    ("W3", "peak_ops_rss_mb", "RSS peak MB (ops)", "lower"),
    ("W4", "write_mb_s", "write MB/s", "higher"),
    ("W4", "read_mb_s", "read MB/s", "higher"),
    ("W4", "disk_over_logical", "disk / logical", "lower"),
    ("W4", "peak_ops_rss_mb", "RSS peak MB (ops)", "lower"),
    ("W5", "write_s", "write s (50 snapshots)", "lower"),
    ("W5", "read_all_s", "read-all s", "lower"),
    ("W5", "disk_over_logical", "disk / logical", "lower"),
    ("W5", "peak_ops_rss_mb", "RSS peak MB (ops)", "lower"),
    ("W6", "write_mb_s", "write MB/s", "higher"),
    ("W6", "read_mb_s", "read MB/s", "higher"),
    ("W6", "probe_s", "probe s (open a:0, 1,000 reads)", "lower"),
    ("W6", "disk_over_logical", "disk / logical", "lower"),
    ("W6", "peak_ops_rss_mb", "RSS peak MB (ops)", "lower"),
]

# (workload, metric, reference, factor, direction, text). reference: "py:<backend>",
# "rs:<backend>", "py:best" (best persistent Python store) or None (absolute bound).
GOALS = [
    ("W1", "insert_close_ops_s", "py:shelve_gdbm", 1.0, "higher", "W1 insert+close >= 1x gdbm shelve"),
    ("W1", "insert_close_ops_s", "rs:sled_raw", 0.8, "higher", "W1 insert+close >= 0.8x sled_raw"),
    ("W1", "reopen_read_ops_s", "py:shelve_gdbm", 2.0, "higher", "W1 reopen+read-all >= 2x gdbm shelve"),
    ("W1", "disk_over_logical", None, 1.2, "lower", "W1 on-disk <= 1.2x logical pickle bytes"),
    ("W2", "get_ops_s", "py:shelve_gdbm", 30.0, "higher", "W2 hot gets >= 30x gdbm shelve"),
    ("W2", "get_ops_s", "py:dict_mem", 1.0, "higher", "W2 hot gets >= Python's in-memory dict"),
    ("W3", "hit_ops_s", "py:shelve_gdbm", 10.0, "higher", "W3 memo hits >= 10x gdbm shelve"),
    ("W3", "hit_ops_s", "py:diskcache_memoize", 50.0, "higher", "W3 memo hits >= 50x diskcache.memoize"),
    ("W4", "write_mb_s", "py:best", 1.0, "higher", "W4 write MB/s >= best Python store"),
    ("W4", "read_mb_s", "py:best", 1.0, "higher", "W4 read MB/s >= best Python store"),
    ("W4", "disk_over_logical", "py:joblib_c3", 1.0, "lower", "W4 on-disk <= joblib compress=3's"),
    ("W5", "disk_over_logical", None, 0.05, "lower", "W5 on-disk after 50 snapshots <= 0.05x logical"),
    ("W5", "write_s", "py:shelve_gdbm", 1.0, "lower", "W5 write time <= gdbm shelve's"),
    # W6 at ProcessCrash (no fsync, as the Python stores); the default durability beside it
    ("W6", "write_mb_s", "py:best_of:np_save,joblib_c0", 1.0, "higher",
     "W6 write MB/s >= best of np_save, joblib_c0 (nosync)", "pickleshelf_nosync"),
    ("W6", "read_mb_s", "py:best_of:np_save,joblib_c0", 1.0, "higher",
     "W6 read MB/s >= best of np_save, joblib_c0 (nosync)", "pickleshelf_nosync"),
    ("W6", "write_mb_s", "py:best_of:np_save,joblib_c0", 1.0, "higher",
     "W6 write MB/s >= best of np_save, joblib_c0 (default durability)"),
    ("W6", "read_mb_s", "py:best_of:np_save,joblib_c0", 1.0, "higher",
     "W6 read MB/s >= best of np_save, joblib_c0 (default durability)"),
    ("W6", "probe_s", "py:np_save", 2.0, "lower", "W6 probe <= 2x np_save's (mmap open)", "pickleshelf_nosync"),
    ("W6", "disk_over_logical", None, 1.0, "lower", "W6 on-disk <= 1.0x logical", "pickleshelf_nosync"),
    ("W6", "write_mb_s", "py:pickle_files", 1.0, "higher", "W6 moonshot: write >= pickle_files (nosync)",
     "pickleshelf_nosync"),
]


def load(paths):
    """One dict per round: (workload, backend) -> result (the median if repeated)."""
    rounds = []
    for p in paths:
        with open(p) as fh:
            doc = json.load(fh)
        rounds.append({(r["workload"], r["backend"]): r for r in doc["results"]
                       if r.get("ok") and "error" not in r})
    return rounds


def num(res, metric):
    v = res.get(metric) if res else None
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def best_python(rnd, workload, metric, direction):
    cands = [(num(r, metric), b) for (w, b), r in rnd.items()
             if w == workload and b not in NOT_COMPETITORS and num(r, metric) is not None]
    if not cands:
        return None, None
    pick = max if direction == "higher" else min
    return pick(cands)


def fmt(x):
    if x is None:
        return "-"
    if x == 0:
        return "0"
    a = abs(x)
    if a >= 1e6:
        return f"{x:,.0f}"
    if a >= 100:
        return f"{x:,.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    if a >= 0.01:
        return f"{x:.3f}"
    return f"{x:.2g}"


def spread(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return med, fmt(med)
    return med, f"{fmt(med)} ({fmt(min(vals))}..{fmt(max(vals))})"


def ratio_text(vals):
    vals = [v for v in vals if v is not None]
    if not vals:
        return None, "-"
    med = statistics.median(vals)
    if len(vals) == 1:
        return med, f"{med:.2f}x"
    return med, f"{med:.2f}x ({min(vals):.2f}..{max(vals):.2f})"


def reference_value(ref, py_round, rs_round, workload, metric, direction):
    if ref is None:
        return 1.0, "logical"
    side, name = ref.split(":", 1)
    if side == "py" and name.startswith("best_of:"):
        names = name.split(":", 1)[1].split(",")
        cands = [(num(py_round.get((workload, b)), metric), b) for b in names]
        cands = [c for c in cands if c[0] is not None]
        if not cands:
            return None, name
        v, b = (max if direction == "higher" else min)(cands)
        return v, b
    if side == "py" and name == "best":
        v, b = best_python(py_round, workload, metric, direction)
        return v, f"best Python ({b})" if b else "best Python"
    rnd = py_round if side == "py" else rs_round
    return num(rnd.get((workload, name)), metric), name


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--py", nargs="+", required=True, help="python_baselines.py JSON, one per round")
    ap.add_argument("--rs", nargs="+", required=True, help="cargo bench workloads JSON, one per round")
    args = ap.parse_args()
    py, rs = load(args.py), load(args.rs)
    n = min(len(py), len(rs))
    py, rs = py[:n], rs[:n]
    codecs, loads = set(), []
    for p in args.rs:
        with open(p) as fh:
            meta = json.load(fh)["meta"]
        codecs.add(meta.get("codec", "?"))
        loads.append(f"{meta.get('loadavg_start', '?').split(' ')[0]}..{meta.get('loadavg_end', '?').split(' ')[0]}")
    print(f"Rounds: {n} (each: the Python baselines, then the Rust benchmark, back to back). "
          "Each cell: median over rounds (min..max). Ratio = pickleshelf / best persistent "
          "Python store of the same round (median of the per-round ratios, min..max). "
          "For 'lower' metrics a ratio below 1 is good.")
    print(f"Rust codec: {', '.join(sorted(codecs))}. 1-minute load average during each "
          f"round's Rust run (start..end): {', '.join(loads)}.")
    for workload in ["W1", "W2", "W3", "W4", "W5", "W6"]:
        rows = [m for m in METRICS if m[0] == workload]
        if not any((workload, "pickleshelf") in r for r in rs):
            continue
        print(f"\n#### {workload}\n")
        print("| metric | better | pickleshelf | best Python (store) | ratio | pickleshelf_nosync | sled_raw | hashmap |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for _, metric, label, direction in rows:
            ps = [num(r.get((workload, "pickleshelf")), metric) for r in rs]
            best = [best_python(r, workload, metric, direction) for r in py]
            names = [b for _, b in best if b]
            name = max(set(names), key=names.count) if names else "-"
            ratios = [p / b if p is not None and b else None for p, (b, _) in zip(ps, best)]
            _, ps_t = spread(ps)
            _, py_t = spread([b for b, _ in best])
            _, r_t = ratio_text(ratios)
            _, sled_t = spread([num(r.get((workload, "sled_raw")), metric) for r in rs])
            _, hm_t = spread([num(r.get((workload, "hashmap")), metric) for r in rs])
            _, ns_t = spread([num(r.get((workload, "pickleshelf_nosync")), metric) for r in rs])
            print(f"| {label} | {direction} | {ps_t} | {py_t} ({name}) | {r_t} | {ns_t} | {sled_t} | {hm_t} |")
    print("\n#### Goals\n")
    print("| goal | pickleshelf | reference | achieved | target | rounds met | verdict |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for goal in GOALS:
        workload, metric, ref, factor, direction, text = goal[:6]
        backend = goal[6] if len(goal) > 6 else "pickleshelf"
        if not any((workload, backend) in r for r in rs):
            continue
        ps, refs, ach, ref_name = [], [], [], "-"
        for p_r, r_r in zip(py, rs):
            p = num(r_r.get((workload, backend)), metric)
            v, ref_name = reference_value(ref, p_r, r_r, workload, metric, direction)
            ps.append(p)
            refs.append(v)
            ach.append(p / v if p is not None and v else None)
        med, a_t = ratio_text(ach)
        ok_rounds = sum(1 for a in ach if a is not None and
                        (a >= factor if direction == "higher" else a <= factor))
        if med is None:
            verdict = "no data"
        elif (med >= factor) if direction == "higher" else (med <= factor):
            verdict = "**met**"
        elif direction == "higher":
            verdict = f"missed: needs {factor / med:.2f}x more"
        else:
            verdict = f"missed: needs {med / factor:.2f}x less"
        _, ps_t = spread(ps)
        _, ref_t = spread(refs)
        target = f"{'>=' if direction == 'higher' else '<='} {factor:g}x"
        print(f"| {text} | {ps_t} | {ref_t} ({ref_name}) | {a_t} | {target} | "
              f"{ok_rounds}/{len(ach)} | {verdict} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
