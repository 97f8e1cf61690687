#!/usr/bin/env python3
"""Write examples/data/sample.pkl: a small application-state pickle made by CPython.

    python3 scripts/make_sample.py          # from the crate root

Protocol 4, as CPython 3.8+ writes by default. The value holds what the README's first
command should show off: nested containers, one list shared by two keys (tagged JSON
prints it once with an "id" and then a "ref"), floats, bytes, a tuple, a frozenset and a
datetime (an object the decoder keeps as data). Deterministic: no str/bytes sets, whose
order would depend on PYTHONHASHSEED, so two runs write the same bytes.
"""

import datetime
import os
import pickle
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "examples", "data", "sample.pkl")


def sample():
    recent = ["report.csv", "notes.md"]  # shared: reached from two places
    return {
        "app": "pickleshelf-demo",
        "version": 2,
        "saved_at": datetime.datetime(2024, 2, 29, 13, 45, 30, 123456),
        "user": {"id": 1042, "name": "Ada", "admin": False, "email": None},
        "window": {"size": (1280, 800), "zoom": 1.25, "opacity": 0.9},
        "recent_files": recent,
        "open_tabs": recent,
        "scores": [98.5, -0.0, 1e-7, float("inf")],
        "ports": frozenset({8080, 8443}),
        "thumbnail": b"\x89PNG\r\n\x1a\n",
        "counters": {"runs": 42, "bytes_seen": 2**40},
    }


def main():
    data = pickle.dumps(sample(), protocol=4)
    if len(data) >= 1024:
        sys.exit("sample.pkl would be %d bytes; keep it under 1 KiB" % len(data))
    if pickle.loads(data) != sample():
        sys.exit("sample.pkl does not load back to the same value")
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "wb") as f:
        f.write(data)
    print("wrote %s (%d bytes, Python %s)" % (os.path.normpath(OUT), len(data), sys.version.split()[0]))


if __name__ == "__main__":
    main()
