"""pickleshelf.open as a shelve drop-in: the mapping, flags, close semantics, fresh
objects per read, writeback, batches, checkpoints, verification, auth keys, threads and
bad input."""

import os
import pickle
import shelve
import threading

import pytest

import pickleshelf


def test_mapping_round_trip_and_reopen(store):
    with pickleshelf.open(store) as s:
        s["a"] = [1, 2, {"x": (3, 4.5)}]
        s["b"] = "text"
        s["é"] = None
        assert len(s) == 3
        assert sorted(s) == ["a", "b", "é"]
        assert "a" in s and "zz" not in s
        assert s.get("zz", 7) == 7
        del s["b"]
        with pytest.raises(KeyError):
            del s["b"]
        with pytest.raises(KeyError):
            s["b"]
    with pickleshelf.open(store, "r") as s:
        assert dict(s) == {"a": [1, 2, {"x": (3, 4.5)}], "é": None}


def test_every_read_is_a_fresh_object(store):
    with pickleshelf.open(store) as s:
        s["k"] = [1, 2, 3, 4]
        s["k"].append(5)
        assert s["k"] == [1, 2, 3, 4]
        assert s["k"] is not s["k"]


def test_writeback_caches_and_writes_back_at_sync(store):
    with pickleshelf.open(store, writeback=True) as s:
        s["k"] = [1, 2, 3, 4]
        s["k"].append(5)
        assert s["k"] == [1, 2, 3, 4, 5]
        s.sync()
        assert s.cache == {}
        s["k"].append(6)
    with pickleshelf.open(store) as s:
        assert s["k"] == [1, 2, 3, 4, 5, 6]


def test_values_are_python_pickles_byte_exact(store):
    value = {"id": 1, "name": "user1", "scores": [0.5, 1.5], "tags": ["red"], "active": True}
    with pickleshelf.open(store) as s:
        s["r"] = value
        s["p2"] = value
        assert s.digest("r") == s.digest("p2")
    with pickleshelf.open(store, protocol=2) as s:
        s["p2"] = value
        assert s.digest("r") != s.digest("p2")
    out = pickleshelf._native.Store(store)
    try:
        assert out.get("r") == pickle.dumps(value, protocol=4)
        assert out.get("p2") == pickle.dumps(value, protocol=2)
    finally:
        out.close()


@pytest.mark.parametrize("protocol", [-1, *range(pickle.HIGHEST_PROTOCOL + 1)])
def test_every_protocol(store, protocol):
    value = {"t": (1, 2), "s": {1, 2}, "b": b"\x00\xff", "ba": bytearray(b"x"), "f": frozenset({3})}
    with pickleshelf.open(store, protocol=protocol) as s:
        s["v"] = value
        assert s["v"] == value


def test_flags(store):
    with pytest.raises(FileNotFoundError):
        pickleshelf.open(store, "r")
    with pytest.raises(FileNotFoundError):
        pickleshelf.open(store, "w")
    assert not os.path.exists(store)
    with pickleshelf.open(store, "c") as s:
        s["a"] = 1
    with pickleshelf.open(store, "w") as s:
        assert s["a"] == 1
        s["b"] = 2
    with pickleshelf.open(store, "r") as s:
        assert dict(s) == {"a": 1, "b": 2}
        with pytest.raises(pickleshelf.ReadOnlyError):
            s["c"] = 3
        with pytest.raises(pickleshelf.ReadOnlyError):
            del s["a"]
    with pickleshelf.open(store, "n") as s:
        assert len(s) == 0
        s["fresh"] = True
    with pickleshelf.open(store) as s:
        assert dict(s) == {"fresh": True}
    with pytest.raises(ValueError, match="flag"):
        pickleshelf.open(store, "x")


def test_path_types(tmp_path):
    import pathlib

    for i, name in enumerate([str(tmp_path / "a"), os.fsencode(tmp_path / "b"), pathlib.Path(tmp_path / "c")]):
        with pickleshelf.open(name) as s:
            s["i"] = i
        assert os.path.isdir(os.fsdecode(name))


def test_close_semantics(store):
    s = pickleshelf.open(store)
    s["k"] = 1
    s.close()
    s.close()  # twice is harmless
    for op in (len, list, lambda s: s["k"], lambda s: s.__setitem__("k", 2), lambda s: "k" in s, lambda s: s.sync()):
        with pytest.raises(ValueError, match="closed"):
            op(s)
    # The store was synced and let go: it opens again.
    with pickleshelf.open(store) as s2:
        assert s2["k"] == 1
    assert "closed" in repr(s)


def test_handles_in_one_process_share_the_store(store):
    a = pickleshelf.open(store)
    b = pickleshelf.open(store)  # writable again: shares the open store
    a["k"] = 1
    assert b["k"] == 1
    memo = pickleshelf.memoize(store, name="sq")(lambda n: n * n)
    assert memo(4) == 16
    a.close()
    with pytest.raises(ValueError):
        a["k"]
    b["j"] = 2  # still open through b
    with pytest.raises(pickleshelf.LockedError, match="locked"):
        pickleshelf.open(store, "r")  # read-only is never shared
    with pytest.raises(pickleshelf.LockedError):
        pickleshelf.open(store, "n")  # nor is a new store
    with pytest.raises(pickleshelf.LockedError):
        pickleshelf.open(store, auth_key=b"another key, 16+ bytes")
    b.close()
    del memo
    import gc

    gc.collect()
    with pickleshelf.open(store, "r") as c:
        assert dict(c) == {"j": 2, "k": 1}


def test_another_process_is_refused(store):
    import subprocess
    import sys

    with pickleshelf.open(store) as s:
        s["k"] = 1
        code = f"import pickleshelf; pickleshelf.open({store!r})"
        p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert p.returncode != 0 and "LockedError" in p.stderr and "locked" in p.stderr


def test_keys_str_and_utf8_bytes(store):
    with pickleshelf.open(store) as s:
        s[b"bytes-key"] = 1
        assert s["bytes-key"] == 1 and s[b"bytes-key"] == 1
        assert b"bytes-key" in s and b"\xff" not in s
        with pytest.raises(KeyError):
            s[b"\xff"]
        with pytest.raises(TypeError):
            s[3] = 1
        assert list(s) == ["bytes-key"]
        with pytest.raises(pickleshelf.InvalidKeyError):
            s["x" * 100_000] = 1


def test_batch_is_all_or_nothing(store):
    with pickleshelf.open(store) as s:
        s["keep"] = 1
        s["gone"] = 2
        with s.batch():
            s["a"] = 1
            del s["gone"]
            assert "a" in s and "gone" not in s
            assert sorted(s) == ["a", "keep"] and len(s) == 2
            assert s["a"] == 1
        assert sorted(s) == ["a", "keep"]
        with pytest.raises(RuntimeError, match="boom"):
            with s.batch():
                s["b"] = 2
                del s["keep"]
                raise RuntimeError("boom")
        assert sorted(s) == ["a", "keep"]
    with pickleshelf.open(store) as s:
        assert dict(s) == {"a": 1, "keep": 1}


def test_checkpoints_diff_and_restore(store):
    with pickleshelf.open(store) as s:
        s["epoch"] = 1
        s["weights"] = [0.5] * 1000
        info = s.checkpoint("before")
        assert info["name"] == "before" and info["keys"] == 2
        s["epoch"] = 2
        del s["weights"]
        s["new"] = "x"
        assert s.changes_since("before") == [("epoch", "changed"), ("new", "added"), ("weights", "removed")]
        assert s.diff("before") == s.changes_since("before")
        assert s.value_at("before", "epoch") == 1
        assert [c["name"] for c in s.checkpoints()] == ["before"]
        s.restore("before")
        assert dict(s) == {"epoch": 1, "weights": [0.5] * 1000}
        with pytest.raises(pickleshelf.CheckpointError, match="no such checkpoint"):
            s.restore("missing")
        with pytest.raises(pickleshelf.CheckpointError, match="exists"):
            s.checkpoint("before")
        assert s.delete_checkpoint("before") and not s.delete_checkpoint("before")


def test_verify_and_stats(store):
    with pickleshelf.open(store) as s:
        for i in range(100):
            s[f"k{i}"] = {"i": i, "pad": "x" * 100}
        s["big"] = bytes(range(256)) * 400
        r = s.verify()
        assert r["ok"] and r["problems"] == [] and r["keys"] == 101
        st = s.stats()
        assert st["keys"] == 101 and st["logical_bytes"] > 100 * 100
        assert set(st["cache"]) >= {"hits", "misses", "bytes", "budget_bytes"}


def test_safe_store_reads_and_cache_budget(store):
    import datetime

    with pickleshelf.open(store) as s:
        s["d"] = {"when": datetime.date(2024, 1, 2), "xs": [1, 2]}
        s["evil"] = os.system
    with pickleshelf.open(store, safe=True, cache_bytes=1 << 20) as s:
        a = s["d"]
        assert a == {"when": datetime.date(2024, 1, 2), "xs": [1, 2]}
        a["xs"].append(3)
        assert s["d"]["xs"] == [1, 2]  # fresh objects from the cached value
        assert s.stats()["cache"]["hits"] >= 1
        with pytest.raises(pickleshelf.UnpicklingError, match="system"):
            s["evil"]
        s.set_cache_budget(0, 0)
        assert s["d"]["xs"] == [1, 2]
    with pickleshelf.open(store, safe=True, allow=[]) as s:
        with pytest.raises(pickleshelf.UnpicklingError, match="datetime.date"):
            s["d"]


def test_auth_key(store):
    key = b"0123456789abcdef-secret"
    with pickleshelf.open(store, auth_key=key) as s:
        s["a"] = [1]
    with pickleshelf.open(store, auth_key=key) as s:
        assert s["a"] == [1]
    with pytest.raises(pickleshelf.AuthKeyError):
        pickleshelf.open(store, auth_key=b"another key of 16+ bytes")
    with pytest.raises(pickleshelf.AuthKeyError):
        pickleshelf.open(store)
    with pytest.raises(ValueError, match="16"):
        pickleshelf.open(str(store) + "2", auth_key=b"short")


def test_non_pickle_and_unpicklable_values(store):
    with pickleshelf.open(store) as s:
        s["ok"] = 1
        with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
            s["lambda"] = lambda: 1
        assert list(s) == ["ok"]
        raw = s._store
        with pytest.raises(pickleshelf.UnpicklingError, match="byte"):
            raw.set("raw", b"definitely not a pickle")
        with pytest.raises(pickleshelf.UnpicklingError):
            raw.set("raw", b"\x80\x04\x95")
        assert list(s) == ["ok"] and s["ok"] == 1


def test_corrupt_store_gives_an_exception(store):
    with pickleshelf.open(store) as s:
        s["big"] = os.urandom(100_000)  # incompressible: an object file of its own
        s["small"] = 1
    files = []
    for root, _, names in os.walk(store):
        for n in names:
            p = os.path.join(root, n)
            if "objects" in p:
                files.append(p)
    assert files, "expected an object file"
    for p in files:
        with open(p, "r+b") as f:
            f.seek(os.path.getsize(p) // 2)
            f.write(b"\x00garbage\x00")
    with pickleshelf.open(store) as s:
        assert s["small"] == 1
        with pytest.raises(pickleshelf.CorruptionError, match="big"):
            s["big"]
        r = s.verify()
        assert not r["ok"] and r["problems"]
    # Not a store at all.
    bad = os.path.join(os.path.dirname(store), "not-a-store")
    with open(bad, "w") as f:
        f.write("hello")
    with pytest.raises(OSError):
        pickleshelf.open(bad)


def test_threads_share_a_shelf(store):
    with pickleshelf.open(store) as s:
        errors = []

        def work(t):
            try:
                for i in range(200):
                    s[f"t{t}:{i}"] = (t, i)
                    assert s[f"t{t}:{i}"] == (t, i)
            except Exception as e:  # reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert len(s) == 800


def test_help_reads_well():
    doc = pickleshelf.open.__doc__
    assert "shelve.open" in doc and "flag" in doc and "writeback" in doc
    text = pydoc_text(pickleshelf.open)
    assert "open(filename, flag='c', protocol=None, writeback=False" in text


def pydoc_text(obj):
    import pydoc

    return pydoc.render_doc(obj, renderer=pydoc.plaintext)


def test_same_api_as_shelve(store):
    import inspect

    ours = list(inspect.signature(pickleshelf.open).parameters)[:4]
    theirs = list(inspect.signature(shelve.open).parameters)
    assert ours == theirs
