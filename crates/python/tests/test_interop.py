"""One store, two languages: typed values written by Rust read in Python (and sharing
content addresses with the same values written by Python), Python's values read as Rust
types, and memo results shared both ways."""

import pytest

import pickleshelf
from _helpers import cli, interop

MODES = ["fast", "slow", "auto", "none"]


def w3_args(n):
    return (n, f"q{n}", {"mode": MODES[n % 4], "limit": n % 100, "exact": n % 2 == 0})


def w3_compute(n, s, d):
    return {"n": n, "label": s, "mode": d["mode"], "values": [n * 0.5 + j for j in range(110)]}


def test_rust_writes_python_reads(store):
    interop("put", store)
    with pickleshelf.open(store) as s:
        assert s["rust:record"] == {
            "id": 7,
            "name": "user7",
            "scores": [0.5, 1.25, -3.0],
            "tags": ["red", "us"],
            "active": True,
        }
        assert s["rust:tuple"] == (1, "two", 3.5, True, None)
        assert s["rust:map"] == {"a": [1, 2], "b": []}
        assert s["rust:bytes"] == b"\x00\xffraw"
        assert s["rust:big"] == [i / 7.0 for i in range(5000)]
        for key in ["rust:record", "rust:tuple", "rust:map", "rust:bytes", "rust:big"]:
            s["py:" + key] = s[key]
            assert s.digest("py:" + key) == s.digest(key), key


def test_python_writes_rust_reads(store):
    with pickleshelf.open(store) as s:
        s["user:3"] = {"id": 3, "name": "user3", "scores": [1.5, 2.5], "tags": ["eu"], "active": False}
    out = interop("get", store, "user:3").stdout.split()
    assert out[:2] == ["3", "user3"] and out[-1] == "false"
    assert b"user3" in cli("get", store, "user:3", "--json").stdout
    assert cli("verify", store).returncode == 0


def test_memo_python_computes_rust_hits(store):
    calls = []

    def f(n, s, d):
        calls.append(n)
        return w3_compute(n, s, d)

    memo = pickleshelf.memoize(store, name="w3")(f)
    for n in range(4):
        assert memo(*w3_args(n)) == w3_compute(*w3_args(n))
    memo.cache_sync()
    del memo
    import gc

    gc.collect()
    out = interop("memo", store, "w3", "0", "1", "2", "3", "--hits-only").stdout.split("\n")
    assert out[:4] == ["0 hit", "1 hit", "2 hit", "3 hit"]
    assert calls == [0, 1, 2, 3]


def test_memo_rust_computes_python_hits(store):
    assert interop("memo", store, "w3", "5", "6").stdout.split("\n")[:2] == ["5 computed", "6 computed"]

    def f(*args):
        raise AssertionError("a stored result must not be recomputed")

    memo = pickleshelf.memoize(store, name="w3")(f)
    for n in (5, 6):
        assert memo(*w3_args(n)) == w3_compute(*w3_args(n))
    assert memo.cache_info().hits == 2 and memo.cache_info().misses == 0
    with pytest.raises(AssertionError):
        memo(*w3_args(7))
