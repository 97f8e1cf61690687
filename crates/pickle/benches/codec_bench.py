#!/usr/bin/env python3
"""CPython's side of the codec benchmark (codec.rs beside this file).

    codec_bench.py write DIR [--cases CASES]         write the byte sets to DIR
    codec_bench.py measure DIR --repeats N --passes SET=K,...
                                                     time pickle.loads / pickle.dumps on them

`write` makes the byte sets with CPython's own `pickle.dumps(v, protocol=4)`:

    corpus.pkls     every `values` case of the conformance corpus at protocol 4, and
                    every file of its `objects` cases (protocols 0-5), as committed
    w1.pkls         the 20,000 W1 records of ../shared/bench/WORKLOADS.md §2, one pickle each
    w4_floats.pkls  W4 value 0: a list of 250,000 floats
    w4_bytes.pkls   W4 value 1: bytes of 2,000,000
    w5.pkls         W5 snapshot 0: a dict of 5,000 entries

A `.pkls` file is a sequence of pickles, each a u32 little-endian length and the bytes.
It prints one line per set: name, pickles, bytes.

`measure` loads each set, then for each of N repeats times K passes (K per set, from
--passes) of `pickle.loads` over every pickle of the set and, on values loaded once
beforehand, K passes of `pickle.dumps(v, 4)`; it prints JSON: per set, the seconds per
pass of each repeat, in thread CPU time (`time.thread_time`, the clock the Rust side
uses), the bytes read and written per pass, and the pickle count. The garbage collector
stays on, as in a Python program. Every dumps output must equal its input for the
plain-data sets, which checks that both sides measure the same work.

Generators follow WORKLOADS.md §1 (splitmix64); the reference sums are checked.
"""

import argparse
import json
import os
import pickle
import struct
import sys
import time

MASK = (1 << 64) - 1
SETS = ["corpus", "w1", "w4_floats", "w4_bytes", "w5"]
TAGS = ["red", "green", "blue", "alpha", "beta", "gamma", "delta", "admin",
        "guest", "staff", "vip", "new", "old", "eu", "us", "asia"]
TEMPLATES = [t.ljust(47).encode("ascii") + b"\n" for t in (
    "level=INFO component=api msg=request served",
    "level=DEBUG component=cache msg=lookup hit",
    "level=WARN component=db msg=slow query",
    "level=INFO component=auth msg=token refreshed",
)]


class SplitMix64:
    def __init__(self, seed):
        self.s = seed

    def next_u64(self):
        self.s = s = (self.s + 0x9E3779B97F4A7C15) & MASK
        z = ((s ^ (s >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def next_unit(self):
        return (self.next_u64() >> 11) * 2.0 ** -53


def w1_records():
    g = SplitMix64(1)
    out = []
    for i in range(20_000):
        scores = [g.next_unit() * 100.0 for _ in range(10)]
        n = 2 + g.next_u64() % 3
        tags = [TAGS[g.next_u64() % 16] for _ in range(n)]
        active = g.next_u64() & 1 == 1
        out.append({"id": i, "name": f"user{i}", "scores": scores, "tags": tags, "active": active})
    return out


def w4_values():
    g = SplitMix64(4)
    floats = [g.next_unit() for _ in range(250_000)]
    parts = []
    for r in range(31_250):
        u = g.next_u64()
        parts.append(struct.pack("<QII", r, u & 0xFFFFFFFF, (u >> 32) & 0x0F0F0F0F))
        parts.append(TEMPLATES[u >> 62])
    return floats, b"".join(parts)


def w5_snapshot():
    g = SplitMix64(5)
    state = {}
    for j in range(5000):
        v = g.next_unit()
        c = [g.next_u64() % 1000 for _ in range(3)]
        state[f"item:{j}"] = {"rev": 0, "label": f"item{j}", "value": v, "counts": c}
    return state


def corpus_files(cases):
    with open(os.path.join(cases, "..", "manifest.json"), encoding="utf-8") as f:
        manifest = json.load(f)
    paths = []
    for case in manifest["cases"]:
        for entry in case["files"]:
            if case["group"] == "objects" or entry["protocol"] == 4:
                paths.append(os.path.join(cases, "..", entry["path"]))
    return paths


def write_set(path, pickles):
    with open(path, "wb") as f:
        for p in pickles:
            f.write(struct.pack("<I", len(p)))
            f.write(p)


def read_set(path):
    with open(path, "rb") as f:
        data = f.read()
    out, pos = [], 0
    while pos < len(data):
        (n,) = struct.unpack_from("<I", data, pos)
        out.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    return out


def cmd_write(args):
    os.makedirs(args.dir, exist_ok=True)
    sets = {}
    corpus = []
    for path in corpus_files(args.cases):
        with open(path, "rb") as f:
            corpus.append(f.read())
    sets["corpus"] = corpus
    sets["w1"] = [pickle.dumps(r, protocol=4) for r in w1_records()]
    floats, blob = w4_values()
    sets["w4_floats"] = [pickle.dumps(floats, protocol=4)]
    sets["w4_bytes"] = [pickle.dumps(blob, protocol=4)]
    sets["w5"] = [pickle.dumps(w5_snapshot(), protocol=4)]
    # WORKLOADS.md's reference sizes.
    assert sum(map(len, sets["w1"])) == 3_725_436, "W1 pickles differ from WORKLOADS.md"
    assert len(sets["w5"][0]) == 288_964, "W5 snapshot 0 differs from WORKLOADS.md"
    for name in SETS:
        write_set(os.path.join(args.dir, name + ".pkls"), sets[name])
        print(name, len(sets[name]), sum(map(len, sets[name])))


def cmd_measure(args):
    sys.path.insert(0, args.cases)  # conformance_objects, for the objects cases
    sys.path.insert(0, os.path.join(args.cases, ".."))
    sys.setrecursionlimit(10_000)  # deep_list_500
    passes = {k: int(v) for k, v in (kv.split("=") for kv in args.passes.split(",") if kv)}
    loads, dumps, clock = pickle.loads, pickle.dumps, time.thread_time
    result = {}
    for name in SETS:
        pickles = read_set(os.path.join(args.dir, name + ".pkls"))
        values = [loads(p) for p in pickles]
        out = [dumps(v, 4) for v in values]
        if name != "corpus":
            assert out == pickles, f"{name}: dumps(loads(p)) != p"
        k = passes.get(name, 1)
        dec, enc = [], []
        for _ in range(args.repeats):
            t = clock()
            for _ in range(k):
                for p in pickles:
                    loads(p)
            dec.append((clock() - t) / k)
            t = clock()
            for _ in range(k):
                for v in values:
                    dumps(v, 4)
            enc.append((clock() - t) / k)
        result[name] = {
            "count": len(pickles),
            "bytes_in": sum(map(len, pickles)),
            "bytes_out": sum(map(len, out)),
            "decode_s": dec,
            "encode_s": enc,
        }
        del values
    result["python"] = sys.version.split()[0]
    json.dump(result, sys.stdout)
    print()


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    default_cases = os.path.join(here, "..", "..", "..", "..", "shared", "conformance", "cases")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("write")
    w.add_argument("dir")
    w.add_argument("--cases", default=default_cases)
    m = sub.add_parser("measure")
    m.add_argument("dir")
    m.add_argument("--repeats", type=int, default=5)
    m.add_argument("--passes", default="")
    m.add_argument("--cases", default=default_cases)
    args = ap.parse_args()
    args.cases = os.path.abspath(args.cases)
    {"write": cmd_write, "measure": cmd_measure}[args.cmd](args)


if __name__ == "__main__":
    main()
