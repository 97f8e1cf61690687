"""Classes whose instances pickle with keyword arguments to ``__new__`` (NEWOBJ_EX at
protocol 4+, ``copyreg.__newobj_ex__`` through ``functools.partial`` before), for
``tests/newobj_ex.rs``. Each has an ``__eq__`` so that round trips can be compared."""


class _Eq:
    def __eq__(self, other):
        return type(other) is type(self) and vars(other) == vars(self)

    def __repr__(self):
        return "%s(%r)" % (type(self).__qualname__, vars(self))


class New(_Eq):
    """Defines ``__new__``: CPython writes ``getattr(New, '__new__')`` before protocol 4."""

    def __new__(cls, a, b=0):
        o = object.__new__(cls)
        o.a, o.b = a, b
        return o

    def __getnewargs_ex__(self):
        return (self.a,), {"b": self.b}


class Inherits(_Eq):
    """Inherits ``object.__new__``: CPython writes ``getattr(object, '__new__')``."""

    def __init__(self, a, b=0):
        self.a, self.b = a, b

    def __getnewargs_ex__(self):
        return (self.a,), {"b": self.b}


class Many(_Eq):
    """Four positional arguments and two keywords (a ``MARK ... TUPLE`` of five)."""

    def __new__(cls, w, x, y, z, *, k1, k2):
        o = object.__new__(cls)
        o.args, o.k = (w, x, y, z), (k1, k2)
        return o

    def __getnewargs_ex__(self):
        return self.args, {"k1": self.k[0], "k2": self.k[1]}


class NoKeywords(_Eq):
    """Empty keyword arguments: CPython writes NEWOBJ at every protocol."""

    def __new__(cls, a):
        o = object.__new__(cls)
        o.a = a
        return o

    def __getnewargs_ex__(self):
        return (self.a,), {}


class Outer:
    class Inner(_Eq):
        """A nested class with its own ``__new__``."""

        def __new__(cls, a, *, b):
            o = object.__new__(cls)
            o.a, o.b = a, b
            return o

        def __getnewargs_ex__(self):
            return (self.a,), {"b": self.b}
