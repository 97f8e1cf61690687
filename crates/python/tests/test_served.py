"""``pickleshelf.connect``: the shelf mapping over a store ``pickleshelf serve`` holds,
against the real server started here on loopback; values shared byte for byte with the
command line and with an opened store; batches all or nothing; bad input and refused
passwords give exceptions, never a crash."""

import os
import pickle
import re
import socket
import subprocess
import threading

import pytest

import pickleshelf
from _helpers import _program, cli


class Server:
    """``pickleshelf serve STORE`` on an ephemeral loopback port."""

    def __init__(self, store, *args):
        self.store = str(store)
        self.proc = subprocess.Popen(
            [_program("PICKLESHELF_CLI"), "serve", self.store, "--bind", "127.0.0.1:0", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log = []
        for line in self.proc.stderr:
            self.log.append(line)
            m = re.search(r"INFO serving .* on (\S+)", line)
            if m:
                self.addr = m.group(1)
                break
        else:
            raise AssertionError("the server did not start: " + "".join(self.log))
        threading.Thread(target=lambda: [self.log.append(l) for l in self.proc.stderr], daemon=True).start()
        self.url = f"redis://{self.addr}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            assert self.proc.wait(timeout=60) == 0, "".join(self.log)


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "store")
    yield s
    s.stop()


def test_the_mapping_over_a_served_store(server):
    with pickleshelf.connect(server.url) as s:
        assert len(s) == 0 and list(s) == []
        s["user:1"] = {"name": "Ada", "langs": ["en", "fr"]}
        s["n"] = 41
        s["blob"] = os.urandom(100_000)
        assert s["user:1"] == {"name": "Ada", "langs": ["en", "fr"]}
        s["user:1"]["langs"].append("de")  # a fresh object each read
        assert s["user:1"]["langs"] == ["en", "fr"]
        assert "n" in s and "nobody" not in s and 5 not in s
        assert list(s) == ["blob", "n", "user:1"] and len(s) == 3
        assert s.get("nobody", 7) == 7
        with pytest.raises(KeyError):
            s["nobody"]
        del s["n"]
        with pytest.raises(KeyError):
            del s["n"]
        assert sorted(s.keys()) == ["blob", "user:1"]
        assert repr(s) == f"<pickleshelf.ServedShelf {server.url!r} (open)>"
    with pytest.raises(ValueError):
        s["user:1"]
    with pytest.raises(ValueError):
        s["x"] = 1


def test_values_are_shared_byte_for_byte_with_the_cli_and_the_store(server):
    value = {"when": 1.5, "items": [1, 2, (3, "x")], "none": None}
    with pickleshelf.connect(server.url) as s:
        s["k"] = value
        raw = pickle.dumps(value, pickleshelf.STORE_PROTOCOL)
        # The command line on the same served store reads the same bytes.
        assert cli("get", server.url, "k", "--raw").stdout == raw
        cli("put", server.url, "from-cli", "-", input=b'{"a": [1, 2]}')
        assert s["from-cli"] == {"a": [1, 2]}
    server.stop()
    # The store's directory, opened once the server has closed it.
    with pickleshelf.open(server.store, "r") as opened:
        assert opened["k"] == value and opened["from-cli"] == {"a": [1, 2]}


def test_writeback_and_batches(server):
    with pickleshelf.connect(server.url, writeback=True) as s:
        s["list"] = [1]
        s["list"].append(2)
        s.sync()
    with pickleshelf.connect(server.url) as s:
        assert s["list"] == [1, 2]
        with s.batch():
            s["a"] = 1
            del s["list"]
            assert "list" not in s and s["a"] == 1
        assert s["a"] == 1 and "list" not in s
        with pytest.raises(RuntimeError):
            with s.batch():
                s["b"] = 2
                del s["a"]
                raise RuntimeError("changed my mind")
        assert "b" not in s and s["a"] == 1


def test_checkpoints_verify_and_stats_run_on_the_server(server):
    with pickleshelf.connect(server.url) as s:
        s["epoch"] = 1
        s["weights"] = [0.5] * 1000
        info = s.checkpoint("v1")
        assert info["name"] == "v1" and info["keys"] == 2 and info["created"] > 0
        s["epoch"] = 2
        s["new"] = True
        del s["weights"]
        assert s.changes_since("v1") == [("epoch", "changed"), ("new", "added"), ("weights", "removed")]
        assert s.restore("v1") == [("epoch", "changed"), ("new", "added"), ("weights", "removed")]
        assert s["epoch"] == 1 and s["weights"] == [0.5] * 1000 and "new" not in s
        assert [c["name"] for c in s.checkpoints()] == ["v1"]
        with pytest.raises(pickleshelf.CheckpointError, match="v1"):
            s.checkpoint("v1")
        with pytest.raises(pickleshelf.CheckpointError, match="nope"):
            s.restore("nope")
        report = s.verify()
        assert report["ok"] is True and report["keys"] == 2 and report["problems"] == []
        assert s.stats()["keys"] == 2
        assert s.delete_checkpoint("v1") is True and s.delete_checkpoint("v1") is False
        for not_served in (lambda: s.digest("epoch"), lambda: s.value_at("v1", "epoch"), lambda: s.set_cache_budget(0)):
            with pytest.raises(pickleshelf.Error, match="redis://"):
                not_served()


def test_safe_reads_refuse_what_is_not_allowed(server):
    hostile = b"cos\nsystem\n(S'echo pwned'\ntR."
    with pickleshelf.connect(server.url) as s:
        s._store.set("evil", hostile)  # as any client of the server could write it
        s["ok"] = {"a": 1}
    with pickleshelf.connect(server.url, safe=True) as s:
        assert s["ok"] == {"a": 1}
        with pytest.raises(pickleshelf.UnpicklingError, match="os.system|posix.system"):
            s["evil"]


def test_read_only_connections_refuse_writes(server):
    with pickleshelf.connect(server.url) as s:
        s["k"] = 1
    with pickleshelf.connect(server.url, read_only=True) as s:
        with pytest.raises(pickleshelf.ReadOnlyError):
            s["k"] = 2
        with pytest.raises(pickleshelf.ReadOnlyError):
            del s["k"]
        with pytest.raises(pickleshelf.ReadOnlyError):
            s.checkpoint("v")
        assert s["k"] == 1


def test_threads_share_one_connection(server):
    with pickleshelf.connect(server.url) as s:

        def work(t):
            for i in range(200):
                s[f"t{t}:{i}"] = (t, i)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(s) == 800
        assert all(s[f"t{t}:{i}"] == (t, i) for t in range(4) for i in range(0, 200, 37))


def test_passwords(tmp_path):
    secret = "correct horse battery staple"
    pwfile = tmp_path / "pw"
    pwfile.write_text(secret + "\n")
    server = Server(tmp_path / "store", "--requirepass-file", str(pwfile))
    try:
        with pytest.raises(pickleshelf.ServerError, match="NOAUTH") as e:
            with pickleshelf.connect(server.url) as s:
                s["k"]
        with pytest.raises(pickleshelf.ServerError) as e:
            pickleshelf.connect(f"redis://:wrong@{server.addr}")
        assert "wrong" not in str(e.value) and server.addr in str(e.value)
        with pickleshelf.connect(server.url, password=secret) as s:
            s["k"] = 1
        with pickleshelf.connect(f"redis://:{secret.replace(' ', '%20')}@{server.addr}") as s:
            assert s["k"] == 1
        os.environ["REDISCLI_AUTH"] = secret
        try:
            with pickleshelf.connect(server.url) as s:
                assert s["k"] == 1
        finally:
            del os.environ["REDISCLI_AUTH"]
    finally:
        server.stop()


def test_bad_addresses_and_unreachable_servers():
    for bad in ["", "127.0.0.1:6379", "http://x:1", "redis://nohost", "unix://"]:
        with pytest.raises(ValueError):
            pickleshelf.connect(bad)
    with pytest.raises(TypeError):
        pickleshelf.connect(b"redis://127.0.0.1:1")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ConnectionRefusedError, match=f"redis://127.0.0.1:{port}"):
        pickleshelf.connect(f"redis://127.0.0.1:{port}")
    with pytest.raises(FileNotFoundError, match="unix:///nonexistent"):
        pickleshelf.connect("unix:///nonexistent/pickleshelf.sock")


def test_a_server_that_is_not_redis_gives_an_error_not_a_hang(tmp_path):
    """A peer that answers garbage: pickleshelf.Error, and a peer that nests replies
    deeper than the client reads: pickleshelf.Error, both within the timeout."""
    for answer in [b"!garbage\r\n", b"*1\r\n" * 100 + b":1\r\n", b"$5\r\nabcdeXX"]:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve():
            conn, _ = listener.accept()
            conn.recv(1024)
            conn.sendall(answer)
            conn.recv(1024)
            conn.close()

        t = threading.Thread(target=serve, daemon=True)
        t.start()
        with pytest.raises(pickleshelf.Error):
            pickleshelf.connect(f"redis://127.0.0.1:{listener.getsockname()[1]}", timeout=10)
        listener.close()
