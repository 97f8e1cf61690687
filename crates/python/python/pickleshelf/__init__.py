"""pickleshelf: a persistent object store for Python pickles, shared with Rust.

- :func:`open`: a drop-in for :func:`shelve.open` (a ``MutableMapping`` of pickled
  values) on a pickleshelf store, with checkpoints, batches, verification and
  authenticated objects. The same store opens in Rust and with the ``pickleshelf``
  command line.
- :func:`memoize`: a persistent memo decorator whose keys are the Rust memo's, so
  both languages share results.
- :func:`loads`: safe loading of untrusted pickles: the Rust codec decodes, Python
  objects are built directly, globals only from an allow-list.
"""

from ._errors import (
    AuthKeyError,
    CheckpointError,
    CorruptionError,
    Error,
    InvalidKeyError,
    LockedError,
    ReadOnlyError,
    UnpicklingError,
)
from ._memo import MemoInfo, memoize
from ._remote import ServedShelf, ServerError, connect
from ._safe import DEFAULT_ALLOW, loads
from ._shelf import STORE_PROTOCOL, Shelf, open

__all__ = [
    "open",
    "Shelf",
    "connect",
    "ServedShelf",
    "ServerError",
    "memoize",
    "MemoInfo",
    "loads",
    "DEFAULT_ALLOW",
    "STORE_PROTOCOL",
    "Error",
    "UnpicklingError",
    "LockedError",
    "ReadOnlyError",
    "AuthKeyError",
    "CorruptionError",
    "InvalidKeyError",
    "CheckpointError",
]
