#!/usr/bin/env python3
"""numpy-made pickles for the tests of numpy array support (tests/numpy_arrays.rs).

    gen_numpy_pickles.py OUT          writes OUT/<name>.p<N>.pkl, pickle.dumps(a, protocol=N)
                                      for N = 2..5, and OUT/manifest.json describing each array
    gen_numpy_pickles.py --check DIR  loads DIR/<name>.rust.pkl (written by the tests) with
                                      pickle.loads and checks each equals the array <name>

Arrays: every supported dtype (bool, int8-64, uint8-64, float16/32/64, complex64/128) in
both byte orders, shapes 0-d to 4-d, C and Fortran order, empty arrays, a view that is not
contiguous, and arrays whose data crosses the 64 KiB frame size. Exit status 3 when numpy
is missing.
"""
import json
import os
import pickle
import sys

try:
    import numpy as np
except ImportError:
    print("numpy is not installed (scripts/setup-test-deps.sh installs it)", file=sys.stderr)
    sys.exit(3)

DTYPES = ["b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"]
SHAPES = [((), "C"), ((0,), "C"), ((5,), "C"), ((3, 4), "C"), ((3, 4), "F"), ((1, 5), "F"),
          ((2, 3, 4), "F"), ((2, 1, 3, 2), "C"), ((2, 0, 3), "F")]


def values(code, n):
    k = np.arange(n, dtype=np.int64)
    if code == "b1":
        return (k % 3) == 0
    if code[0] in "iu":
        return (k * 0x9E3779B1 + 12345 - n * 40503).astype(np.dtype(code))
    if code[0] == "f":
        return (k * 1.25 - 3.5).astype(np.dtype(code))
    return (k * 0.5 - 1.0 + 1j * (2.0 - k * 0.75)).astype(np.dtype(code))


def make(code, endian, shape, order):
    n = int(np.prod(shape)) if shape else 1
    dt = np.dtype(code)
    if dt.itemsize > 1 and code != "b1":
        dt = dt.newbyteorder(endian)
    a = values(code, n).astype(dt).reshape(shape)
    return np.asarray(a, order=order)


def specs():
    for code in DTYPES:
        endians = "<>" if np.dtype(code).itemsize > 1 and code != "b1" else "<"
        for endian in endians:
            for shape, order in SHAPES:
                name = f"{code}{'be' if endian == '>' else 'le'}_{'x'.join(map(str, shape)) or 'scalar'}_{order}"
                yield name, make(code, endian, shape, order)
    # not contiguous: numpy writes _reconstruct even at protocol 5
    yield "f8le_view", make("f8", "<", (4, 6), "C")[:, ::2]
    # data of 64 KiB or more goes outside the pickle's frames; just under, the frame
    # closes after it
    yield "u1le_70000_C", make("u1", "<", (70000,), "C")
    yield "u1le_65500_C", make("u1", "<", (65500,), "C")
    yield "f8le_300x40_F", make("f8", "<", (300, 40), "F")


def describe(a):
    c = a.flags.c_contiguous
    order = "F" if (a.flags.f_contiguous and not c) else "C"
    flat = np.ascontiguousarray(a).ravel()
    le = flat.astype(a.dtype.newbyteorder("<"))
    if a.dtype.kind == "c":
        vals = [[float(x.real), float(x.imag)] for x in flat]
    elif a.dtype.kind == "b":
        vals = [bool(x) for x in flat]
    elif a.dtype.kind == "f":
        vals = [float(x) for x in flat]
    else:
        vals = [int(x) for x in flat]
    return {
        "dtype": a.dtype.str[1:], "byteorder": "big" if a.dtype.str[0] == ">" else "little",
        "shape": list(a.shape), "order": order,
        "contiguous": bool(c or a.flags.f_contiguous),
        "c_le_hex": le.tobytes().hex(), "values": vals if len(vals) <= 1000 else None,
    }


def main():
    if sys.argv[1:2] == ["--check"]:
        d, bad, seen = sys.argv[2], 0, 0
        for name, a in specs():
            p = os.path.join(d, name + ".rust.pkl")
            if not os.path.exists(p):
                continue
            seen += 1
            with open(p, "rb") as f:
                b = pickle.load(f)
            same = (type(b) is np.ndarray and b.dtype == a.dtype and b.shape == a.shape
                    and bool(np.array_equal(a, b)))
            # the same memory order: Fortran arrays come back Fortran-contiguous
            fortran = a.flags.f_contiguous and not a.flags.c_contiguous
            same = same and (b.flags.f_contiguous if fortran else b.flags.c_contiguous)
            if not same:
                bad += 1
                print(f"{name}: numpy loads {b!r:.200}, expected {a!r:.200}", file=sys.stderr)
        print(f"checked {seen} arrays, {bad} differ")
        sys.exit(1 if bad or not seen else 0)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    manifest = {"numpy": np.__version__, "arrays": {}}
    for name, a in specs():
        manifest["arrays"][name] = describe(a)
        for proto in (2, 3, 4, 5):
            with open(os.path.join(out, f"{name}.p{proto}.pkl"), "wb") as f:
                f.write(pickle.dumps(a, protocol=proto))
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f)


if __name__ == "__main__":
    main()
