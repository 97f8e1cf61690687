"""``pickleshelf.open``: a drop-in for ``shelve.open`` on a pickleshelf store."""

import collections.abc
import contextlib
import hashlib
import os
import shutil
import threading
import weakref
from pickle import HIGHEST_PROTOCOL, dumps as _dumps, loads as _loads

from . import _native
from ._safe import _resolve, allow_table

__all__ = ["Shelf", "open", "STORE_PROTOCOL"]

#: The pickle protocol values are written with unless told otherwise: the Rust side's
#: default, so that equal values written from Python and from Rust are the same bytes
#: and share one content address.
STORE_PROTOCOL = 4

_DELETED = object()

# Writable handles this process has open, by real path: (weak reference, auth key tag).
# A second writable open of the same store (a shelf and a memoize decorator, say)
# shares the open store instead of failing on its lock.
_handles = {}
_handles_lock = threading.Lock()


def _native_open(path, *, read_only=False, create=True, protocol=None, auth_key=None, cache_bytes=None, fsync=True):
    """A native handle on the store at ``path``: another handle on the same store when
    this process has it open writable with the same auth key, else a new one."""
    real = os.path.realpath(path)
    tag = hashlib.blake2b(auth_key, digest_size=16).digest() if auth_key is not None else None
    with _handles_lock:
        live = []
        for ref, t in _handles.get(real, ()):
            h = ref()
            if h is not None and not h.closed:
                live.append((ref, t))
                if not read_only and t == tag:
                    shared = h.share()
                    live.append((weakref.ref(shared), tag))
                    _handles[real] = live
                    return shared
        store = _native.Store(
            path,
            read_only=read_only,
            create=create,
            protocol=protocol,
            auth_key=auth_key,
            cache_bytes=cache_bytes,
            fsync=fsync,
        )
        if not read_only:
            live.append((weakref.ref(store), tag))
        if live:
            _handles[real] = live
        else:
            _handles.pop(real, None)
        return store


def _key(key):
    """A store key from a shelve key: ``str``, or ``bytes`` holding UTF-8."""
    if isinstance(key, str):
        return key
    if isinstance(key, (bytes, bytearray)):
        try:
            return bytes(key).decode("utf-8")
        except UnicodeDecodeError:
            raise KeyError(key) from None
    raise TypeError(f"keys must be str (or UTF-8 bytes), not {type(key).__name__}")


class Shelf(collections.abc.MutableMapping):
    """A persistent dictionary of pickled values in a pickleshelf store.

    Behaves as :class:`shelve.Shelf` does: keys are ``str``, values anything
    :mod:`pickle` can pickle; every read unpickles a fresh object (unless
    ``writeback=True``, see :func:`open`). The store is a directory that the Rust
    crate and the ``pickleshelf`` command line open too. Use :func:`open` to make one.
    """

    def __init__(
        self,
        filename,
        flag="c",
        protocol=None,
        writeback=False,
        *,
        auth_key=None,
        safe=False,
        allow=None,
        cache_bytes=None,
        fsync=True,
    ):
        path = os.fsdecode(filename)
        if flag not in ("r", "w", "c", "n"):
            raise ValueError(f"flag must be one of 'r', 'w', 'c' or 'n', not {flag!r}")
        if isinstance(auth_key, str):
            auth_key = auth_key.encode("utf-8")

        def make_store(protocol):
            if flag == "n" and os.path.isdir(os.path.join(path, "sled")):
                # A new, empty store: make sure no other handle holds the old one first.
                _native.Store(path, fsync=False).close()
                shutil.rmtree(path)
            return _native_open(
                path,
                read_only=flag == "r",
                create=flag in ("c", "n"),
                protocol=protocol if 2 <= protocol <= 5 else None,
                auth_key=auth_key,
                cache_bytes=cache_bytes,
                fsync=fsync,
            )

        self._init_with(make_store, protocol=protocol, writeback=writeback, safe=safe, allow=allow)

    def _init_with(self, make_store, *, protocol, writeback, safe, allow):
        """The setup a shelf shares with a served one: ``make_store(protocol)`` gives the
        store handle (native, or :class:`pickleshelf.ServedShelf`'s)."""
        self.writeback = False
        self.cache = {}
        self._store = None
        self._batch = None
        if protocol is None:
            protocol = STORE_PROTOCOL
        elif protocol < 0:
            protocol = HIGHEST_PROTOCOL
        self._store = make_store(protocol)
        self._protocol = protocol
        self.writeback = writeback
        self._safe = (allow_table(allow), _resolve) if safe else None

    # ----- the mapping -----

    def __getitem__(self, key):
        if key.__class__ is not str:
            key = _key(key)
        if self.writeback:
            try:
                return self.cache[key]
            except KeyError:
                pass
        batch = self._batch
        if batch is not None and key in batch:
            data = batch[key]
            if data is _DELETED:
                raise KeyError(key)
            value = self._load(data)
        elif self._safe is None:
            value = _loads(self._store.get(key))
        else:
            value = self._store.get_safe(key, *self._safe)
        if self.writeback:
            self.cache[key] = value
        return value

    def _load(self, data):
        if self._safe is None:
            return _loads(data)
        return _native.loads_with(data, *self._safe)

    def __setitem__(self, key, value):
        if key.__class__ is not str:
            key = _key(key)
        if self.writeback:
            self.cache[key] = value
        data = _dumps(value, self._protocol)
        if self._batch is None:
            self._store.set(key, data)
        else:
            if self._store.closed:
                raise ValueError("invalid operation on closed shelf")
            self._batch[key] = data

    def __delitem__(self, key):
        if key.__class__ is not str:
            key = _key(key)
        if self._batch is None:
            self._store.delete(key)
        else:
            if key not in self:
                raise KeyError(key)
            self._batch[key] = _DELETED
        self.cache.pop(key, None)

    def __contains__(self, key):
        try:
            key = _key(key)
        except (KeyError, TypeError):
            return False
        batch = self._batch
        if batch is not None and key in batch:
            return batch[key] is not _DELETED
        return self._store.contains(key)

    def __len__(self):
        if self._batch is None:
            return self._store.len()
        return len(self._keys())

    def __iter__(self):
        return iter(self._keys())

    def _keys(self):
        keys = self._store.keys()
        batch = self._batch
        if batch:
            present = dict.fromkeys(keys)
            for k, v in batch.items():
                if v is _DELETED:
                    present.pop(k, None)
                else:
                    present[k] = None
            keys = sorted(present, key=lambda k: k.encode("utf-8"))
        return keys

    def get(self, key, default=None):
        """``self[key]`` if ``key`` is stored, else ``default``."""
        try:
            return self[key]
        except KeyError:
            return default

    # ----- lifecycle -----

    def sync(self):
        """Writes back the cached entries (``writeback=True``) and makes every change so
        far durable."""
        if self.writeback and self.cache:
            self.writeback = False
            try:
                for key, entry in self.cache.items():
                    self[key] = entry
            finally:
                self.writeback = True
            self.cache = {}
        self._store.sync()

    def close(self):
        """Syncs and closes; any later operation raises ``ValueError``. Closing twice is
        harmless."""
        store = self._store
        if store is None or store.closed:
            return
        try:
            self.sync()
        finally:
            self.cache = {}
            store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        state = "closed" if self._store is None or self._store.closed else "open"
        path = self._store.path if self._store is not None else "?"
        return f"<pickleshelf.Shelf {path!r} ({state})>"

    @property
    def path(self):
        """The store's directory."""
        return self._store.path

    # ----- store features -----

    @contextlib.contextmanager
    def batch(self):
        """Groups changes into one atomic write: ``with s.batch(): s['a'] = 1; del s['b']``.

        Inside the block, reads see the block's own changes; when it ends normally all
        of them are applied at once, and when it raises none is (the store is as before).
        """
        if self._batch is not None:
            raise RuntimeError("batches do not nest")
        self._store.len()  # ValueError when closed
        self._batch = {}
        try:
            yield self
            ops = [(k, None if v is _DELETED else v) for k, v in self._batch.items()]
            self._batch = None
            if ops:
                self._store.apply(ops)
        except BaseException:
            if self._batch is not None:
                for k in self._batch:
                    self.cache.pop(k, None)
            raise
        finally:
            self._batch = None

    def checkpoint(self, name):
        """Records every key's value under checkpoint ``name`` (cheap: digests, not
        copies); returns its info ``{'name', 'created', 'keys', 'bytes'}``."""
        self.sync()
        return self._store.checkpoint(name)

    def checkpoints(self):
        """The checkpoints, oldest first, as info dicts."""
        return self._store.checkpoints()

    def restore(self, name):
        """Puts every key back as checkpoint ``name`` recorded it, in one atomic write;
        returns the changes made as ``(key, 'added'|'removed'|'changed')`` pairs."""
        self.cache = {}
        return self._store.restore(name)

    def diff(self, name, to=None):
        """The keys that differ from checkpoint ``name`` to checkpoint ``to`` (default:
        now), as ``(key, 'added'|'removed'|'changed')`` pairs in key order."""
        return self._store.diff(name, to)

    def changes_since(self, name):
        """The keys changed since checkpoint ``name``: ``diff(name)``."""
        return self._store.diff(name, None)

    def delete_checkpoint(self, name):
        """Deletes checkpoint ``name``; whether it existed."""
        return self._store.delete_checkpoint(name)

    def value_at(self, name, key):
        """The value ``key`` had in checkpoint ``name`` (``KeyError`` if none)."""
        data = self._store.get_at(name, _key(key))
        if data is None:
            raise KeyError(key)
        return self._load(data)

    def verify(self):
        """Reads and checks every value, checkpoint and object; a report
        ``{'ok': bool, 'problems': [...], 'keys', 'objects', ...}``."""
        return self._store.verify()

    def stats(self):
        """Counts and sizes: keys, logical/unique/stored/disk bytes, the decoded-object
        cache's counters, ..."""
        return self._store.stats()

    def digest(self, key):
        """The content address (hex) of the value stored under ``key``, or ``None``."""
        return self._store.digest(_key(key))

    def set_cache_budget(self, nbytes, entries=100_000):
        """Budget of the decoded-object cache that serves ``safe=True`` reads (and memo
        results); 0 disables it."""
        self._store.set_cache_budget(nbytes, entries)


def open(
    filename,
    flag="c",
    protocol=None,
    writeback=False,
    *,
    auth_key=None,
    safe=False,
    allow=None,
    cache_bytes=None,
    fsync=True,
):
    """Open a persistent dictionary, as ``shelve.open`` does, on a pickleshelf store.

    ``filename`` names the store's directory (``str``, ``bytes`` or path-like); the
    same directory opens in Rust (``pickleshelf::Shelf::open``) and with the
    ``pickleshelf`` command line. ``flag`` is as for :func:`dbm.open`: ``'r'``
    read-only, ``'w'`` read-write (the store must exist), ``'c'`` (default) read-write,
    created if missing, ``'n'`` a new, empty store (an existing one is deleted).

    Values are pickled by Python's :mod:`pickle` with ``protocol`` (default 4, the
    protocol the Rust side writes, so equal values written from either language are
    the same bytes and share one content address) and stored as exactly those bytes;
    every read unpickles a fresh object. With ``writeback=True``, as in
    :mod:`shelve`, entries read or written are cached and written back at
    :meth:`~Shelf.sync` and :meth:`~Shelf.close`.

    pickleshelf's own options (keyword-only):

    - ``auth_key``: ``bytes`` (or ``str``) of at least 16 bytes; every object is then
      authenticated (keyed BLAKE3), and the store opens only with the same key.
    - ``safe=True``: reads do not use :func:`pickle.loads` but :func:`pickleshelf.loads`
      with ``allow`` (default :data:`pickleshelf.DEFAULT_ALLOW`), so a store written
      by someone else cannot run code; decoded values are kept in the store's
      decoded-object cache (``cache_bytes``, default 64 MiB) and each read builds
      fresh objects from it.
    - ``fsync=False``: :meth:`~Shelf.sync` survives a crash of the process but not a
      power loss (no fsync), which makes it faster.

    One process may open a store writable more than once (with the same auth key): the
    handles then share the open store (its options are the first open's), which closes
    when the last handle closes. Any other second open, and any open of a store another
    process has open, raises :class:`pickleshelf.LockedError`.

    The result is a :class:`Shelf`: a :class:`collections.abc.MutableMapping` with
    ``sync()``, ``close()``, use as a context manager (``ValueError`` after close),
    and the store's features: ``batch()``, ``checkpoint(name)``, ``checkpoints()``,
    ``restore(name)``, ``diff(name)``/``changes_since(name)``, ``verify()`` and
    ``stats()``.

    Raises :class:`FileNotFoundError` for flags ``'r'``/``'w'`` without a store,
    :class:`pickleshelf.LockedError` when it cannot be opened because of another handle,
    :class:`pickleshelf.AuthKeyError` for a wrong key.
    """
    return Shelf(
        filename,
        flag,
        protocol,
        writeback,
        auth_key=auth_key,
        safe=safe,
        allow=allow,
        cache_bytes=cache_bytes,
        fsync=fsync,
    )
