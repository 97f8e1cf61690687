"""redis-py against a pickleshelf server started by crates/server/tests/redis_py.rs.

The server's address comes from PICKLESHELF_TEST_PORT (loopback); its password, if any,
from PICKLESHELF_TEST_PASSWORD. Run through `cargo test -p pickleshelf-server --test redis_py`.
"""
import multiprocessing
import os
import pickle

import pytest
import redis

PORT = int(os.environ["PICKLESHELF_TEST_PORT"])
PASSWORD = os.environ.get("PICKLESHELF_TEST_PASSWORD") or None


def client(protocol):
    return redis.Redis(host="127.0.0.1", port=PORT, password=PASSWORD, protocol=protocol)


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def r(request):
    c = client(request.param)
    yield c
    c.close()


def test_default_protocol_connects():
    c = redis.Redis(host="127.0.0.1", port=PORT, password=PASSWORD)
    assert c.ping() is True
    c.close()


def test_strings(r):
    p = r.connection_pool.connection_kwargs.get("protocol", 2)
    k = f"py:{p}:"
    assert r.set(k + "a", b"hello") is True
    assert r.get(k + "a") == b"hello"
    assert r.get(k + "missing") is None
    every_byte = bytes(range(256)) + b"\r\n"
    r.set(k + "bin", every_byte)
    assert r.get(k + "bin") == every_byte
    r.set(k + "empty", b"")
    assert r.get(k + "empty") == b""
    assert r.set(k + "a", "x", nx=True) is None
    assert r.set(k + "a", "y", xx=True, get=True) == b"hello"
    assert r.setnx(k + "a", "z") is False
    assert r.mset({k + "m1": "1", k + "m2": "2"}) is True
    assert r.mget([k + "m1", k + "nope", k + "m2"]) == [b"1", None, b"2"]
    assert r.exists(k + "m1", k + "m2", k + "nope") == 2
    assert r.type(k + "m1") in (b"string", "string")
    assert r.delete(k + "m1", k + "nope") == 1
    assert r.ttl(k + "m2") == -1
    assert r.ttl(k + "nope") == -2
    with pytest.raises(redis.ResponseError, match="per-key expiry is not supported"):
        r.set(k + "e", "v", ex=10)
    with pytest.raises(redis.ResponseError, match="unknown command 'NOSUCH'"):
        r.execute_command("NOSUCH", "x")


def test_pickles_are_objects(r):
    obj = {"name": "Kim", "scores": [1.5, 2.5], "tags": ("a", "b"), "n": 10**30, "raw": b"\x00\xff"}
    r.set("py:obj", pickle.dumps(obj))
    assert pickle.loads(r.get("py:obj")) == obj
    # A counter made by INCR is a pickled int.
    r.delete("py:counter")
    assert r.incr("py:counter") == 1
    assert r.incrby("py:counter", 41) == 42
    assert pickle.loads(r.get("py:counter")) == 42
    r.set("py:text-counter", "10")
    assert r.incr("py:text-counter") == 11
    assert r.get("py:text-counter") == b"11"


def test_record_for_rust():
    """Read back by the Rust side as a typed struct (see redis_py.rs)."""
    c = client(3)
    c.set("from-python", pickle.dumps({"name": "Kim", "scores": [1.5, 2.5], "age": 42}))
    c.close()


def test_pipelines(r):
    p = r.connection_pool.connection_kwargs.get("protocol", 2)
    k = f"pipe:{p}:"
    # Without MULTI: many commands, one round trip.
    with r.pipeline(transaction=False) as pipe:
        for i in range(500):
            pipe.set(f"{k}{i}", i)
        pipe.get(f"{k}7")
        out = pipe.execute()
    assert out[:500] == [True] * 500 and out[500] == b"7"
    # With MULTI/EXEC (redis-py's default).
    with r.pipeline() as pipe:
        pipe.set(k + "t1", "a").incr(k + "tc").get(k + "t1")
        assert pipe.execute() == [True, 1, b"a"]
    # A transaction whose queue had an error is discarded whole.
    with r.pipeline() as pipe:
        pipe.set(k + "never", "x")
        pipe.execute_command("NOSUCH")
        with pytest.raises(redis.ResponseError):
            pipe.execute()
    assert r.exists(k + "never") == 0
    # WATCH-based optimistic transaction.
    def bump(pipe):
        v = int(pipe.get(k + "w") or 0)
        pipe.multi()
        pipe.set(k + "w", v + 1)
    for _ in range(5):
        r.transaction(bump, k + "w")
    assert r.get(k + "w") == b"5"


def test_scan_iter_and_keys(r):
    p = r.connection_pool.connection_kwargs.get("protocol", 2)
    k = f"scan:{p}:"
    names = {f"{k}{i}".encode() for i in range(300)}
    for n in names:
        r.set(n, b"1")
    assert set(r.scan_iter(match=k + "*", count=17)) == names
    assert set(r.keys(k + "*")) == names
    assert r.dbsize() >= 300


def test_info_and_config(r):
    info = r.info()
    assert "redis_version" in info
    assert r.config_get("appendonly") == {"appendonly": "yes"} or r.config_get("appendonly") == {b"appendonly": b"yes"}
    assert r.client_setname("tester") is True
    assert r.client_getname() in ("tester", b"tester")


def _writer(args):
    worker, n = args
    c = redis.Redis(host="127.0.0.1", port=PORT, password=PASSWORD, protocol=3)
    for i in range(n):
        c.set(f"proc:{worker}:{i}", pickle.dumps((worker, i)))
        c.incr("proc:counter")
    with c.pipeline() as pipe:
        for i in range(n):
            pipe.incr("proc:tx-counter")
        pipe.execute()
    c.close()


def test_several_processes_lose_nothing():
    c = client(2)
    c.delete("proc:counter", "proc:tx-counter")
    workers, n = 4, 250
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers) as pool:
        pool.map(_writer, [(w, n) for w in range(workers)])
    assert pickle.loads(c.get("proc:counter")) == workers * n
    assert pickle.loads(c.get("proc:tx-counter")) == workers * n
    assert len(list(c.scan_iter(match="proc:*:*", count=100))) == workers * n
    for w in range(workers):
        assert pickle.loads(c.get(f"proc:{w}:{n - 1}")) == (w, n - 1)
    c.close()
