"""Helpers of the Python package's tests: paths, the Rust programs, deep comparison."""

import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "..", "..", "shared"))
CONFORMANCE = os.path.join(SHARED, "conformance")
if CONFORMANCE not in sys.path:
    sys.path.append(CONFORMANCE)  # conformance_objects, named by the 'objects' cases


def _program(var):
    path = os.environ.get(var)
    if not path or not os.path.exists(path):
        raise RuntimeError(f"{var} is not set to a built program: run the tests through scripts/test-python.sh")
    return path


def cli(*args, input=None, check=True):
    """Runs the pickleshelf command line; its completed process."""
    p = subprocess.run([_program("PICKLESHELF_CLI"), *args], input=input, capture_output=True)
    if check and p.returncode != 0:
        raise AssertionError(f"pickleshelf {' '.join(args)} failed: {p.stderr.decode(errors='replace')}")
    return p


def interop(*args, check=True):
    """Runs the Rust example py_interop; its stdout as text."""
    p = subprocess.run([_program("PICKLESHELF_INTEROP"), *args], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError(f"py_interop {' '.join(args)} failed: {p.stderr}")
    return p


def conformance_cases(group=None):
    """(name, group, [(protocol, path)], json path) of every corpus case."""
    with open(os.path.join(CONFORMANCE, "manifest.json")) as f:
        manifest = json.load(f)
    out = []
    for c in manifest["cases"]:
        if group is None or c["group"] == group:
            files = [(f["protocol"], os.path.join(CONFORMANCE, f["path"])) for f in c["files"]]
            out.append((c["name"], c["group"], files, os.path.join(CONFORMANCE, c["json"])))
    return out


def read(path):
    with open(path, "rb") as f:
        return f.read()


_ATOMS = (type(None), bool, int, str, bytes)


def deep_equal(a, b):
    """Structural equality that is strict about types, treats NaN as equal to NaN,
    keeps -0.0 apart from 0.0, and requires the same sharing (an object reached twice in
    ``a`` is one object reached twice in ``b``), cycles included. No recursion."""
    mapped = {}
    stack = [(a, b)]
    while stack:
        x, y = stack.pop()
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if math.isnan(x) and math.isnan(y):
                continue
            if x != y or math.copysign(1.0, x) != math.copysign(1.0, y):
                return False
            continue
        if isinstance(x, complex):
            if not deep_equal(x.real, y.real) or not deep_equal(x.imag, y.imag):
                return False
            continue
        if isinstance(x, _ATOMS):
            if x != y:
                return False
            continue
        if isinstance(x, (list, tuple, dict, set, frozenset, bytearray)):
            if id(x) in mapped:
                if mapped[id(x)] is not y:
                    return False
                continue
            mapped[id(x)] = y
            if len(x) != len(y):
                return False
            if isinstance(x, bytearray):
                if x != y:
                    return False
            elif isinstance(x, (list, tuple)):
                stack.extend(zip(x, y))
            elif isinstance(x, dict):
                stack.extend(zip(list(x), list(y)))
                stack.extend(zip(list(x.values()), list(y.values())))
            else:
                left = list(y)
                for e in x:
                    for i, f in enumerate(left):
                        if deep_equal(e, f):
                            del left[i]
                            break
                    else:
                        return False
            continue
        if isinstance(x, type) or callable(x):
            if x is not y:
                return False
            continue
        if x != y:
            return False
    return True
