"""``pickleshelf.connect``: the same mapping over a store that ``pickleshelf serve`` holds.

Invariant: values travel as the store's pickles, byte for byte (``SHELF.GETPICKLE``,
``SHELF.SETPICKLE``), so a served store reads and writes exactly as an opened one; a
batch is one ``MULTI``/``EXEC`` (all or nothing on the server). Nothing a server sends
makes the client allocate more than the bytes it sent, or recurse without bound.
"""

import os
import socket
import threading
from urllib.parse import unquote, urlsplit

from ._errors import CheckpointError, Error, ReadOnlyError
from ._shelf import Shelf

__all__ = ["connect", "ServerError"]

# Deepest reply nesting read.
_MAX_DEPTH = 32
_CHUNK = 1 << 16


class ServerError(Error):
    """The server refused a command; the message is its reply (``ERR ...``,
    ``NOAUTH ...``, ``WRONGPASS ...``)."""


def _parse_address(address):
    """(family, target, shown, password) of ``redis://[:PW@]HOST:PORT`` or
    ``unix:///PATH[?password=PW]``."""
    if not isinstance(address, str):
        raise TypeError(f"address must be str, not {type(address).__name__}")
    if address.startswith("redis://"):
        parts = urlsplit(address)
        if not parts.hostname or parts.port is None:
            raise ValueError(f"{_shown(address)!r} is not a redis://HOST:PORT address")
        password = unquote(parts.password) if parts.password else None
        host = parts.hostname
        shown = f"redis://{'[' + host + ']' if ':' in host else host}:{parts.port}"
        return socket.AF_INET6 if ":" in host else socket.AF_INET, (host, parts.port), shown, password
    if address.startswith("unix://"):
        rest = address[len("unix://") :]
        path, _, query = rest.partition("?password=")
        if not path:
            raise ValueError("a unix:// address needs a socket path: unix:///PATH")
        return socket.AF_UNIX, path, f"unix://{path}", (unquote(query) if query else None)
    raise ValueError(f"{_shown(address)!r} is not a redis://HOST:PORT or unix:///PATH address")


def _shown(address):
    """The address without a password, for messages."""
    if "@" in address and address.startswith("redis://"):
        return "redis://" + address.rsplit("@", 1)[1]
    return address.split("?password=", 1)[0]


class _Connection:
    """One RESP2 connection: requests as arrays of bulk strings, replies parsed as they
    arrive."""

    def __init__(self, family, target, shown, timeout):
        self.shown = shown
        try:
            if family == socket.AF_UNIX:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout)
                sock.connect(target)
            else:
                sock = socket.create_connection(target, timeout=timeout)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as e:
            raise type(e)(e.errno, f"{shown}: cannot connect: {e.strerror or e}") from None
        self.sock = sock
        self.buf = bytearray()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, *commands):
        out = bytearray()
        for args in commands:
            out += b"*%d\r\n" % len(args)
            for a in args:
                if isinstance(a, str):
                    a = a.encode("utf-8")
                out += b"$%d\r\n" % len(a)
                out += a
                out += b"\r\n"
        self.sock.sendall(out)

    def _fill(self):
        chunk = self.sock.recv(_CHUNK)
        if not chunk:
            raise ConnectionError(f"{self.shown}: the server closed the connection")
        self.buf += chunk

    def _line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[: i + 2]
                return line
            if len(self.buf) > (1 << 20):
                raise Error(f"{self.shown}: a reply line longer than 1 MiB")
            self._fill()

    def _exact(self, n):
        while len(self.buf) < n + 2:
            self._fill()
        data = bytes(self.buf[:n])
        if self.buf[n : n + 2] != b"\r\n":
            raise Error(f"{self.shown}: malformed reply (a bulk string without its CRLF)")
        del self.buf[: n + 2]
        return data

    def read(self, depth=0):
        """One reply: str (simple), int, bytes, list, None; an error reply is returned
        as a ServerError instance (not raised), so that a transaction's replies can be
        read to the end."""
        if depth > _MAX_DEPTH:
            raise Error(f"{self.shown}: a reply nested deeper than {_MAX_DEPTH}")
        line = self._line()
        if not line:
            raise Error(f"{self.shown}: malformed reply (an empty line)")
        kind, rest = line[:1], line[1:]
        try:
            if kind == b"+":
                return rest.decode("utf-8", "replace")
            if kind == b"-":
                return ServerError(f"{self.shown}: {rest.decode('utf-8', 'replace')}")
            if kind == b":":
                return int(rest)
            if kind == b"$":
                n = int(rest)
                return None if n < 0 else self._exact(n)
            if kind == b"*":
                n = int(rest)
                return None if n < 0 else [self.read(depth + 1) for _ in range(n)]
        except ValueError:
            raise Error(f"{self.shown}: malformed reply {line[:64]!r}") from None
        raise Error(f"{self.shown}: malformed reply {line[:64]!r}")


def _checked(reply):
    if isinstance(reply, ServerError):
        message = str(reply)
        if "checkpoint" in message:
            raise CheckpointError(message)
        raise reply
    return reply


def _pairs(reply, shown, what):
    """A RESP2 map (a flat array of key, value) as a dict with str keys."""
    if not isinstance(reply, list) or len(reply) % 2:
        raise Error(f"{shown}: unexpected reply to {what}: {reply!r:.200}")
    return {k.decode("utf-8", "replace") if isinstance(k, bytes) else str(k): v for k, v in zip(reply[::2], reply[1::2])}


_KINDS = {b"+": "added", b"-": "removed", b"~": "changed"}


class _ServedStore:
    """The native store's interface (what :class:`pickleshelf.Shelf` calls) over the
    Redis protocol. One connection, one request at a time (a lock), as the native
    handle serializes its own."""

    def __init__(self, address, *, read_only=False, password=None, timeout=None):
        family, target, shown, url_password = _parse_address(address)
        self.path = shown
        self.read_only = read_only
        self._lock = threading.Lock()
        self._conn = _Connection(family, target, shown, timeout)
        try:
            password = password if password is not None else url_password
            if password:
                self._call("AUTH", password)
            self._call("PING")
        except BaseException:
            self._conn.close()
            raise

    @property
    def closed(self):
        return self._conn is None

    def _call(self, *args):
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ValueError("invalid operation on closed shelf")
            conn.send(args)
            return _checked(conn.read())

    def _writable(self):
        if self.read_only:
            raise ReadOnlyError(f"{self.path}: connected read-only (read_only=True)")

    # ----- the mapping -----

    def get(self, key):
        data = self._call("SHELF.GETPICKLE", key)
        if data is None:
            raise KeyError(key)
        return data

    def get_safe(self, key, table, resolve):
        from . import _native

        return _native.loads_with(self.get(key), table, resolve)

    def set(self, key, data):
        self._writable()
        self._call("SHELF.SETPICKLE", key, data)

    def delete(self, key):
        self._writable()
        if self._call("DEL", key) == 0:
            raise KeyError(key)

    def contains(self, key):
        return self._call("EXISTS", key) == 1

    def len(self):
        return self._call("DBSIZE")

    def keys(self):
        keys = [k.decode("utf-8") for k in self._call("KEYS", "*")]
        keys.sort(key=lambda k: k.encode("utf-8"))
        return keys

    def apply(self, ops):
        self._writable()
        commands = [("MULTI",)]
        for key, data in ops:
            commands.append(("DEL", key) if data is None else ("SHELF.SETPICKLE", key, data))
        commands.append(("EXEC",))
        with self._lock:
            conn = self._conn
            if conn is None:
                raise ValueError("invalid operation on closed shelf")
            conn.send(*commands)
            replies = [conn.read() for _ in commands]
        first_error = next((r for r in replies[:-1] if isinstance(r, ServerError)), None)
        result = replies[-1]
        if isinstance(result, ServerError) or result is None:
            raise first_error or (result if isinstance(result, ServerError) else ServerError(f"{self.path}: batch aborted"))
        errors = [r for r in result if isinstance(r, ServerError)]
        if errors:
            raise errors[0]

    def digest(self, key):
        raise Error(f"{self.path}: digests are not served (open the store's directory)")

    def get_at(self, name, key):
        raise Error(f"{self.path}: checkpoints' values are not served (open the store's directory)")

    # ----- lifecycle -----

    def sync(self):
        self._call("SHELF.SYNC")

    def close(self):
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send(("QUIT",))
                conn.read()
            except (OSError, Error):
                pass
            conn.close()

    # ----- store features -----

    def checkpoints(self):
        out = []
        for item in self._call("SHELF.CHECKPOINT", "LIST"):
            d = _pairs(item, self.path, "SHELF.CHECKPOINT LIST")
            out.append(
                {
                    "name": d["name"].decode("utf-8"),
                    "created": d["created_ms"] / 1000.0,
                    "keys": d["keys"],
                    "bytes": d["bytes"],
                }
            )
        out.sort(key=lambda c: c["created"])
        return out

    def checkpoint(self, name):
        self._writable()
        self._call("SHELF.CHECKPOINT", "CREATE", name)
        for c in self.checkpoints():
            if c["name"] == name:
                return c
        raise CheckpointError(f"{self.path}: checkpoint {name!r} was created but is not listed")

    def diff(self, name, to=None):
        args = ("SHELF.CHECKPOINT", "DIFF", name) + ((to,) if to is not None else ())
        out = []
        for item in self._call(*args):
            if not (isinstance(item, list) and len(item) == 2 and item[0] in _KINDS):
                raise Error(f"{self.path}: unexpected reply to SHELF.CHECKPOINT DIFF: {item!r:.200}")
            out.append((item[1].decode("utf-8"), _KINDS[item[0]]))
        return out

    def restore(self, name):
        self._writable()
        # The server answers with a count; the changes are those the server saw just
        # before the restore (another client's write in between is not among them).
        changes = self.diff(name)
        self._call("SHELF.CHECKPOINT", "RESTORE", name)
        return changes

    def delete_checkpoint(self, name):
        self._writable()
        return self._call("SHELF.CHECKPOINT", "DELETE", name) == 1

    def verify(self):
        d = _pairs(self._call("SHELF.VERIFY"), self.path, "SHELF.VERIFY")
        d["ok"] = bool(d.get("ok"))
        d["problems"] = [p.decode("utf-8", "replace") for p in d.get("problems") or []]
        return d

    def stats(self):
        return _pairs(self._call("SHELF.STATS"), self.path, "SHELF.STATS")

    def set_cache_budget(self, nbytes, entries=100_000):
        raise Error(f"{self.path}: the decoded-object cache is the server's, not set through a connection")


class ServedShelf(Shelf):
    """A :class:`pickleshelf.Shelf` over a store another process serves; made by
    :func:`connect`."""

    def __init__(self, address, protocol=None, writeback=False, *, password=None, read_only=False, safe=False, allow=None, timeout=None):
        Shelf._init_with(
            self,
            lambda _protocol: _ServedStore(address, read_only=read_only, password=password, timeout=timeout),
            protocol=protocol,
            writeback=writeback,
            safe=safe,
            allow=allow,
        )

    def __repr__(self):
        state = "closed" if self._store is None or self._store.closed else "open"
        path = self._store.path if self._store is not None else "?"
        return f"<pickleshelf.ServedShelf {path!r} ({state})>"


def connect(address, protocol=None, writeback=False, *, password=None, read_only=False, safe=False, allow=None, timeout=None):
    """Connect to a store that ``pickleshelf serve`` holds, as the same mapping
    :func:`pickleshelf.open` returns.

    ``address`` is ``redis://HOST:PORT`` or ``unix:///PATH``. The password (when the
    server has one) comes from ``password``, else from the address
    (``redis://:PASSWORD@HOST:PORT``, ``unix:///PATH?password=PASSWORD``), else from the
    environment variable ``REDISCLI_AUTH``, as redis-cli reads it. ``protocol``,
    ``writeback``, ``safe`` and ``allow`` are as for :func:`pickleshelf.open`;
    ``read_only=True`` refuses writes in the client; ``timeout`` (seconds) bounds every
    network wait.

    Values are the store's pickles, byte for byte: what a Rust program, the command line
    (``pickleshelf get redis://...``) or another Python process writes reads back as the
    same object. ``batch()`` is one ``MULTI``/``EXEC``, all or nothing;
    ``checkpoint``, ``checkpoints``, ``restore``, ``diff``, ``delete_checkpoint``,
    ``verify``, ``stats`` and ``sync`` run on the server. Not served: ``digest``,
    ``value_at`` and the cache budget (:class:`pickleshelf.Error`).

    Raises :class:`ValueError` for an address it cannot read, :class:`OSError`
    (``ConnectionRefusedError``...) naming the address when the server cannot be
    reached, :class:`pickleshelf.ServerError` when the server refuses the password or a
    command.
    """
    if password is None:
        env = os.environ.get("REDISCLI_AUTH")
        if env and _parse_address(address)[3] is None:
            password = env
    return ServedShelf(
        address,
        protocol,
        writeback,
        password=password,
        read_only=read_only,
        safe=safe,
        allow=allow,
        timeout=timeout,
    )
