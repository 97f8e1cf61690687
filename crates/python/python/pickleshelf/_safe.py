"""Safe loading: the Rust codec decodes, and Python objects are built directly from the
decoded value; globals come only from an allow-list."""

import importlib
import threading

from . import _native
from ._errors import UnpicklingError

__all__ = ["DEFAULT_ALLOW", "loads", "allow_table"]


#: The globals safe loading allows unless told otherwise: standard-library value types
#: whose constructors only build a value from their arguments.
DEFAULT_ALLOW = frozenset(
    {
        "builtins.complex",
        "builtins.set",
        "builtins.frozenset",
        "builtins.list",
        "builtins.dict",
        "builtins.tuple",
        "builtins.int",
        "builtins.float",
        "builtins.str",
        "builtins.bool",
        "builtins.slice",
        "builtins.object",
        "collections.OrderedDict",
        "collections.deque",
        "collections.Counter",
        "collections.defaultdict",
        "datetime.date",
        "datetime.time",
        "datetime.datetime",
        "datetime.timedelta",
        "datetime.timezone",
        "decimal.Decimal",
        "fractions.Fraction",
        "uuid.UUID",
        "uuid.SafeUUID",
    }
)


def _name_of(obj):
    """``module.qualname`` of a class or function given in an allow-list."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"allow-list entries are 'module.name' strings, classes or functions, not {obj!r}")
    return f"{module}.{qualname}"


def _resolve(name):
    """Imports the allowed global ``name`` (only names the caller allowed get here)."""
    parts = name.split(".")
    for i in range(len(parts) - 1, 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        try:
            for attr in parts[i:]:
                obj = getattr(obj, attr)
        except AttributeError:
            continue
        return obj
    raise UnpicklingError(f"allowed global '{name}' cannot be found")


_tables = {}
_tables_lock = threading.Lock()


_DEFAULT_TABLE = dict.fromkeys(DEFAULT_ALLOW)


def allow_table(allow):
    """The table the Rust half checks globals against: ``{"module.name": obj or None}``."""
    if allow is None or allow is DEFAULT_ALLOW:
        return _DEFAULT_TABLE
    if isinstance(allow, str):
        raise TypeError("allow= takes an iterable of names, classes or functions, not one string")
    names = []
    objects = {}
    for entry in allow:
        if isinstance(entry, str):
            names.append(entry)
        else:
            objects[_name_of(entry)] = entry
    if not objects:
        key = frozenset(names)
        with _tables_lock:
            table = _tables.get(key)
            if table is None:
                table = dict.fromkeys(key)
                if len(_tables) < 64:
                    _tables[key] = table
        return table
    table = dict.fromkeys(names)
    table.update(objects)
    return table


loads = _native.loads
