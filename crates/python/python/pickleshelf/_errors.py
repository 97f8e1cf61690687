"""Exceptions raised by pickleshelf (the Rust half raises these classes too)."""

import pickle as _pickle

__all__ = [
    "Error",
    "UnpicklingError",
    "LockedError",
    "ReadOnlyError",
    "AuthKeyError",
    "CorruptionError",
    "InvalidKeyError",
    "CheckpointError",
]


class Error(Exception):
    """Base class of pickleshelf's own exceptions."""


class UnpicklingError(Error, _pickle.UnpicklingError):
    """A pickle that cannot be loaded: malformed bytes (the message names the byte
    offset), a limit exceeded, or, in safe loading, a global that is not allowed (the
    message names it as ``module.name``)."""


class LockedError(Error):
    """Another open handle holds the store; the message names it (in this process) or
    its process id (in another)."""


class ReadOnlyError(Error):
    """A write to a store opened with flag ``'r'``."""


class AuthKeyError(Error):
    """The auth key does not match the store's (or one is missing or unexpected)."""


class CorruptionError(Error):
    """Stored data failed verification: a record, frame or file is damaged."""


class InvalidKeyError(Error, ValueError):
    """A key the store cannot hold (too long)."""


class CheckpointError(Error):
    """No checkpoint of that name, one exists already, or the name is not valid."""
