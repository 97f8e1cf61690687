"""pickleshelf.memoize: the documented key recipe, hits that never re-run the function,
errors not cached, cache_clear/cache_info, versions, limits, expiry, single flight."""

import datetime
import hashlib
import io
import pickle
import threading
import time

import pytest

import pickleshelf


# The recipe documented in the Rust crate's memo module, verbatim.
def fast_dumps(x):
    f = io.BytesIO()
    p = pickle.Pickler(f, protocol=4)
    p.fast = True
    p.dump(x)
    return f.getvalue()


def canonical(x):
    t = type(x)
    if t is dict:
        items = [(canonical(k), canonical(v)) for k, v in x.items()]
        return dict(sorted(items, key=lambda kv: fast_dumps(kv[0])))
    if t in (set, frozenset):
        return ("__pickleshelf.set__", *sorted((canonical(e) for e in x), key=fast_dumps))
    if t is list:
        return [canonical(e) for e in x]
    if t is tuple:
        return tuple(canonical(e) for e in x)
    if t is bytearray:
        return bytes(x)
    return x


def memo_key(namespace, version, args):
    head = b"pickleshelf memo 1\0" + namespace.encode() + b"\0" + version.encode() + b"\0"
    return hashlib.blake2b(head + fast_dumps(canonical(args)), digest_size=16).hexdigest()


ARGS = [
    (1,),
    (1, "q", {"mode": "fast", "limit": 3, "exact": True}),
    ({"b": 1, "a": [1, 2]}, {3, 1, 2}, frozenset({"x", "y"}), bytearray(b"ab"), None, 2.5, -(10**30)),
    ((), [], {}, "é" * 40, b"\x00" * 300),
]


@pytest.mark.parametrize("args", ARGS)
def test_keys_follow_the_documented_recipe(store, args):
    f = pickleshelf.memoize(store, name="ns", version="v2")(lambda *a: None)
    assert f.cache_key(*args) == memo_key("ns", "v2", args)


def test_hits_never_rerun_and_return_fresh_objects(store):
    calls = []

    @pickleshelf.memoize(store)
    def f(n, opts):
        calls.append(n)
        return {"n": n, "xs": [n] * 3}

    a = f(1, {"x": 1, "y": 2})
    a["xs"].append(9)
    b = f(1, {"y": 2, "x": 1})  # same call: dict order does not matter
    assert b == {"n": 1, "xs": [1, 1, 1]}
    assert calls == [1]
    info = f.cache_info()
    assert (info.hits, info.misses, info.currsize) == (1, 1, 1)
    assert f.namespace.endswith("test_hits_never_rerun_and_return_fresh_objects.<locals>.f")


def test_results_survive_the_process(store):
    def f(n):
        return n * 2

    g = pickleshelf.memoize(store, name="double")(f)
    assert g(21) == 42
    g.cache_sync()
    del g
    import gc

    gc.collect()
    h = pickleshelf.memoize(store, name="double")(lambda n: pytest.fail("recomputed"))
    assert h(21) == 42


def test_errors_are_not_cached(store):
    calls = []

    @pickleshelf.memoize(store)
    def f(n):
        calls.append(n)
        if len(calls) == 1:
            raise ValueError("first call fails")
        return n

    with pytest.raises(ValueError, match="first call fails"):
        f(1)
    assert f.cache_info().currsize == 0
    assert f(1) == 1 and f(1) == 1
    assert calls == [1, 1]


def test_cache_clear_version_limits_and_ttl(store):
    with pickleshelf.open(store) as shelf:
        calls = []

        def body(n):
            calls.append(n)
            return n

        f = pickleshelf.memoize(shelf, name="f")(body)
        f(1), f(2)
        assert f.cache_clear() == 2
        f(1)
        assert calls == [1, 2, 1]
        g = pickleshelf.memoize(shelf, name="f", version="2")(body)
        g(1)
        assert calls == [1, 2, 1, 1]
        small = pickleshelf.memoize(shelf, name="small", max_entries=3)(body)
        for n in range(10):
            small(n)
        assert small.cache_info().currsize == 3 and small.cache_info().evictions == 7
        short = pickleshelf.memoize(shelf, name="short", ttl=0.05)(body)
        short(100)
        short(100)
        time.sleep(0.1)
        short(100)
        assert calls.count(100) == 2
        with pytest.raises(ValueError):
            pickleshelf.memoize(shelf, name="bad", max_entries=0)(body)


def test_kwargs_and_unpicklable_arguments(store):
    @pickleshelf.memoize(store)
    def f(a, b=0):
        return a + b

    assert f(1, b=2) == 3 and f(1, b=2) == 3 and f(1, 2) == 3
    assert f.cache_info().hits == 1
    assert f.cache_key(1, b=2) == memo_key(f.namespace, "", (1, "__pickleshelf.kwargs__", {"b": 2}))
    with pytest.raises(TypeError, match="cannot be pickled"):
        f(lambda: 1)
    with pytest.raises(pickleshelf.Error, match="plain data"):
        f(datetime.date(2024, 1, 1))  # an object has no canonical pickle


def test_single_flight_across_threads(store):
    calls = []
    gate = threading.Event()

    @pickleshelf.memoize(store)
    def slow(n):
        calls.append(n)
        gate.wait(5)
        return n * n

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow(7))) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.2)  # all threads are inside: one computes, the others wait
    gate.set()
    for t in threads:
        t.join()
    assert results == [49] * 8
    assert calls == [7]
