"""``pickleshelf.memoize``: a persistent memo of a function, shared with Rust."""

import collections
import functools
import os
from pickle import dumps as _dumps

from . import _native

__all__ = ["memoize", "MemoInfo"]

#: What ``f.cache_info()`` returns: functools' fields plus evictions and stored bytes.
MemoInfo = collections.namedtuple("MemoInfo", "hits misses maxsize currsize evictions bytes")

#: Calls with keyword arguments are keyed as ``args + (KWARGS_TAG, kwargs)``.
KWARGS_TAG = "__pickleshelf.kwargs__"


def _native_store(store_or_path):
    from ._shelf import Shelf

    if isinstance(store_or_path, Shelf):
        return store_or_path._store, store_or_path._protocol
    if isinstance(store_or_path, _native.Store):
        return store_or_path, 4
    from ._shelf import _native_open

    return _native_open(os.fsdecode(store_or_path)), 4


def memoize(store_or_path, name=None, version=None, ttl=None, max_entries=None, max_bytes=None):
    """Memoize a function persistently: ``@pickleshelf.memoize("cache.db")``.

    Results are stored in a pickleshelf store (``store_or_path``: a path, kept open for
    the decorator's lifetime and shared with other writable opens of it in this process,
    or a :class:`pickleshelf.Shelf` to use its handle),
    in the memo namespace ``name`` (default ``module.qualname`` of the function),
    keyed by the call's arguments exactly as the Rust crate's ``Memo`` keys them
    (``pickleshelf::memo`` documents the recipe). So a Python ``f(3, "q")`` and a Rust
    ``memo.get_or_compute(&(3, "q"), ...)`` in the same namespace and ``version``
    share one result. Arguments must be plain data (``None``, bools, numbers, strs,
    bytes and the built-in containers); dicts and sets give the same key whatever
    their order. A call with keyword arguments is keyed as
    ``args + ("__pickleshelf.kwargs__", kwargs)``.

    - ``version``: results stored under another version are never returned (and are
      deleted when the memo opens).
    - ``ttl``: seconds after which a result is recomputed.
    - ``max_entries`` / ``max_bytes``: limits, kept by evicting the least recently
      read results.

    A hit never runs the function and returns a fresh unpickled object; an exception
    raised by the function propagates and nothing is stored. Threads calling with
    equal arguments at once run the function once (the others wait for its result;
    the GIL is released while they wait). The wrapper has ``cache_clear()``,
    ``cache_info()`` (a :class:`MemoInfo`), ``cache_key(*args, **kwargs)`` and
    ``cache_sync()``.
    """

    def decorate(fn):
        store, protocol = _native_store(store_or_path)
        namespace = name if name is not None else f"{fn.__module__}.{fn.__qualname__}"
        memo = store.memo(namespace, version, ttl, max_entries, max_bytes)

        def args_pickle(args, kwargs):
            if kwargs:
                args = args + (KWARGS_TAG, kwargs)
            try:
                return _dumps(args, 5)
            except Exception as e:
                raise TypeError(f"arguments of memoized {namespace} cannot be pickled: {e}") from e

        call = memo.call_function

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            return call(fn, protocol, args, kwargs)

        def cache_info():
            s = memo.stats()
            return MemoInfo(s["hits"], s["misses"], max_entries, s["entries"], s["evictions"], s["bytes"])

        def cache_key(*args, **kwargs):
            return memo.key(args_pickle(args, kwargs))

        wrapper.cache_clear = memo.clear
        wrapper.cache_info = cache_info
        wrapper.cache_key = cache_key
        wrapper.cache_sync = memo.sync
        wrapper.namespace = namespace
        return wrapper

    return decorate
