#!/usr/bin/env python3
"""The Python package on the shared workloads, side by side with Python's stores.

Runs W1 (state save/resume) and W3 (memoization) of ../shared/bench/WORKLOADS.md with
backend ``pickleshelf_py`` (``pickleshelf.open`` and ``pickleshelf.memoize``) next to
the baselines of ../shared/bench/python_baselines.py, which is imported from there (its
data, timed regions, metric names and report tables are used as they are), and times
``pickleshelf.loads`` against ``pickle.loads`` on the conformance corpus and on W1's
records. Every (workload, backend) case runs in a fresh process, as the baselines do.

    python bench.py --scale 1.0 --repeat 3 [--workload W1,W3,loads] [--json out.json]

Run it with an interpreter that has pickleshelf installed and, for the gdbm rows,
``dbm.gnu`` (scripts/bench-python.sh prepares one).
"""

import argparse
import importlib.util
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared"))
BASELINES = os.path.join(SHARED, "bench", "python_baselines.py")
CONFORMANCE = os.path.join(SHARED, "conformance")

BACKEND = "pickleshelf_py"
GOALS = [
    # (workload, metric, baseline backend, factor)
    ("W1", "insert_close_ops_s", "shelve_gdbm", 2.0),
    ("W1", "reopen_read_ops_s", "shelve_gdbm", 2.0),
    ("W3", "hit_ops_s", "diskcache_memoize", 10.0),
    ("W3", "hit_ops_s", "joblib_memory", 50.0),
]


def load_baselines():
    spec = importlib.util.spec_from_file_location("python_baselines", BASELINES)
    pb = importlib.util.module_from_spec(spec)
    sys.modules["python_baselines"] = pb
    spec.loader.exec_module(pb)
    return pb


def register(pb):
    """Adds backend pickleshelf_py to the baseline module's tables."""
    import pickleshelf

    class PickleshelfPy(pb.Store):
        def open(self, create):
            self.db = pickleshelf.open(os.path.join(self.d, "store.db"), "c")
            return self.db.__setitem__, self.db.__getitem__

        def close(self):
            self.db.close()

    pb.STORES[BACKEND] = PickleshelfPy
    pb.BACKEND_NOTES[BACKEND] = "pickleshelf.open(dir) / pickleshelf.memoize(dir)(f), default options"
    memoizer = pb._w3_memoizer

    def w3_memoizer(backend, d, fn):
        if backend == BACKEND:
            f = pickleshelf.memoize(os.path.join(d, "memo.db"), name="f")(fn)
            return f, f.cache_sync
        return memoizer(backend, d, fn)

    pb._w3_memoizer = w3_memoizer


# ----- pickleshelf.loads against pickle.loads -----


def case_loads(c):
    import pickleshelf

    corpus = []
    with open(os.path.join(CONFORMANCE, "manifest.json")) as f:
        for case in json.load(f)["cases"]:
            if case["group"] == "values":
                for fi in case["files"]:
                    with open(os.path.join(CONFORMANCE, fi["path"]), "rb") as fh:
                        corpus.append(fh.read())
    w1 = [pickle.dumps(r, protocol=4) for r in PB.w1_records(c["w1_n"])]
    out = {"corpus_pickles": len(corpus), "w1_records": len(w1)}
    # CPU time of this thread (a pure CPU comparison in one process: wall time on a
    # shared machine mostly measures the other processes), the two functions
    # alternating round by round; medians of 9 rounds.
    fns = (("pickle", pickle.loads), ("pickleshelf", pickleshelf.loads))
    for label, data in (("corpus", corpus), ("w1", w1)):
        times = {name: [] for name, _ in fns}
        for r in range(9):
            for name, fn in fns if r % 2 == 0 else fns[::-1]:
                t0 = time.thread_time()
                for d in data:
                    fn(d)
                times[name].append(time.thread_time() - t0)
        for name, _ in fns:
            out[f"{label}_{name}_s"] = statistics.median(times[name])
        out[f"{label}_ratio"] = out[f"{label}_pickle_s"] / out[f"{label}_pickleshelf_s"]
    out["ok"] = all(pickleshelf.loads(d) == pickle.loads(d) for d in w1[:100])
    return out


def child(workload, backend, scale, tmp):
    global PB
    PB = load_baselines()
    register(PB)
    if workload == "loads":
        res = case_loads(PB.counts_for(scale))
        res.update({"workload": workload, "backend": backend, "python": sys.version.split()[0]})
        print("RESULT_JSON:" + json.dumps(res), flush=True)
        return
    PB.child_main(workload, backend, scale, tmp)


def run_ours(workload, scale, tmp, timeout):
    cmd = [sys.executable, os.path.abspath(__file__), "--_child", workload, BACKEND, "--scale", repr(scale),
           "--tmpdir", tmp]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    for line in p.stdout.splitlines():
        if line.startswith("RESULT_JSON:"):
            res = json.loads(line[len("RESULT_JSON:"):])
            res["wall_s"] = time.time() - t0
            return res
    tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
    return {"workload": workload, "backend": BACKEND, "ok": False, "error": "child failed: " + " | ".join(tail)}


def spread(runs, key):
    vals = [r[key] for r in runs if key in r]
    return (statistics.median(vals), min(vals), max(vals)) if vals else None


def main():
    global PB
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workload", default="W1,W3,loads")
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--backends", help="comma list of baseline backends (default: the workload's)")
    ap.add_argument("--gdbm-python", default="/usr/bin/python3")
    ap.add_argument("--tmpdir", default=None)
    ap.add_argument("--timeout", type=int, default=900)
    ap.add_argument("--json")
    ap.add_argument("--_child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args._child:
        child(args._child[0], args._child[1], args.scale, args.tmpdir or tempfile.gettempdir())
        return
    PB = load_baselines()
    import pickleshelf  # noqa: F401  (fail early when it is not installed)

    tmp = tempfile.mkdtemp(prefix="pybench-", dir=args.tmpdir)
    ns = argparse.Namespace(python=sys.executable, gdbm_python=args.gdbm_python)
    results = {}
    print(f"# pickleshelf (Python) against Python's stores; scale {args.scale}, repeat {args.repeat}")
    print(f"interpreter: {sys.executable} ({sys.version.split()[0]})")
    try:
        for w in [x.strip() for x in args.workload.split(",")]:
            if w == "loads":
                runs = [run_ours("loads", args.scale, tmp, args.timeout) for _ in range(args.repeat)]
                results["loads"] = runs
                ok = [r for r in runs if "error" not in r]
                print("\n### pickleshelf.loads against pickle.loads (C), CPU time\n")
                if not ok:
                    print(runs[-1].get("error"))
                    continue
                print("| data | pickle.loads s | pickleshelf.loads s | ratio (higher: pickleshelf faster) |")
                print("|---|---:|---:|---:|")
                for label in ("corpus", "w1"):
                    ps = spread(ok, f"{label}_pickle_s")
                    qs = spread(ok, f"{label}_pickleshelf_s")
                    r = spread(ok, f"{label}_ratio")
                    print(f"| {label} | {ps[0]:.4f} | {qs[0]:.4f} | {r[0]:.2f}x ({r[1]:.2f}..{r[2]:.2f}) |")
                continue
            rows = []
            mods = {}
            order = [BACKEND] + [b for b in PB.WORKLOAD_BACKENDS[w] if not args.backends or b in args.backends]
            for backend in order:
                runs = []
                for _ in range(args.repeat):
                    if backend == BACKEND:
                        runs.append(run_ours(w, args.scale, tmp, args.timeout))
                    else:
                        python, skip = PB.pick_python(backend, ns, mods)
                        if skip:
                            runs.append({"workload": w, "backend": backend, "ok": False, "error": skip})
                            break
                        runs.append(PB.run_child(python, w, backend, args.scale, tmp, args.timeout))
                    print(f"  [{w} {backend}] {runs[-1].get('wall_s', 0):.1f}s"
                          + (f" ERROR {runs[-1]['error']}" if "error" in runs[-1] else ""), file=sys.stderr, flush=True)
                res = PB.summarize(runs)
                res["all_runs"] = runs
                res.setdefault("note", "")
                rows.append(res)
            PB.print_table(w, rows, PB.counts_for(args.scale))
            results[w] = rows
        print("\n### Goals (median of per-run ratios; range over runs)\n")
        print("| goal | pickleshelf_py | baseline | ratio | verdict |")
        print("|---|---:|---:|---:|---|")
        for w, metric, base, factor in GOALS:
            rows = {r["backend"]: r for r in results.get(w, [])}
            if BACKEND not in rows or base not in rows or "error" in rows[base] or "error" in rows[BACKEND]:
                continue
            ours = [r[metric] for r in rows[BACKEND]["all_runs"] if metric in r]
            theirs = [r[metric] for r in rows[base]["all_runs"] if metric in r]
            ratios = [a / b for a, b in zip(ours, theirs)]
            med = statistics.median(ratios)
            verdict = "met" if med >= factor else f"missed: needs {factor / med:.2f}x more"
            print(f"| {w} {metric} >= {factor:g}x {base} | {statistics.median(ours):,.0f} | "
                  f"{statistics.median(theirs):,.0f} | {med:.2f}x ({min(ratios):.2f}..{max(ratios):.2f}) | {verdict} |")
        for label in ("corpus", "w1"):
            ok = [r for r in results.get("loads", []) if "error" not in r]
            if ok:
                r = spread(ok, f"{label}_ratio")
                verdict = "met" if r[0] >= 1 else f"missed: needs {1 / r[0]:.2f}x more"
                print(f"| pickleshelf.loads >= 1x pickle.loads ({label}) | | | {r[0]:.2f}x ({r[1]:.2f}..{r[2]:.2f}) | {verdict} |")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
