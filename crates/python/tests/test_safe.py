"""Safe loading: hostile pickles raise pickleshelf.UnpicklingError naming the global,
with nothing imported or called (shown with a module whose import leaves a file behind);
sharing and cycles are kept; the codec's limits hold from Python; bombs stay bounded."""

import os
import pickle
import struct
import subprocess
import sys
import textwrap

import pytest

import pickleshelf
from pickleshelf import UnpicklingError

PROBE = "pickleshelf_import_probe"


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A module whose import writes a marker file; returns the marker's path."""
    marker = tmp_path / "imported"
    (tmp_path / f"{PROBE}.py").write_text(
        textwrap.dedent(
            f"""
            open({str(marker)!r}, "w").write("imported")
            def boom(*args):
                open({str(marker)!r}, "a").write(" and called")
            class Thing:
                pass
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(PROBE, None)
    yield marker
    sys.modules.pop(PROBE, None)


class Reduce:
    """Pickles as REDUCE(callable, args)."""

    def __init__(self, fn, args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_the_probe_works_with_pickle(probe, tmp_path):
    # pickle.loads imports the module and calls the function: what safe loading prevents.
    data = b"c" + PROBE.encode() + b"\nboom\n(tR."
    code = f"import sys, pickle; sys.path.insert(0, {str(tmp_path)!r}); pickle.loads({data!r})"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert probe.read_text() == "imported and called"


@pytest.mark.parametrize(
    "data",
    [
        b"c" + PROBE.encode() + b"\nboom\n(tR.",  # GLOBAL + REDUCE, protocol 0
        b"c" + PROBE.encode() + b"\nboom\n.",  # GLOBAL alone
        b"(i" + PROBE.encode() + b"\nThing\n.",  # INST
        b"\x80\x04\x8c" + bytes([len(PROBE)]) + PROBE.encode() + b"\x8c\x04boom\x93)R.",  # STACK_GLOBAL
        b"\x80\x02c" + PROBE.encode() + b"\nThing\n)\x81.",  # NEWOBJ
        # An allowed class whose arguments hold a global that is not allowed.
        b"cdatetime\ndate\n(c" + PROBE.encode() + b"\nboom\ntR.",
        # copyreg's helpers with a class that is not allowed.
        b"ccopyreg\n_reconstructor\n(c" + PROBE.encode() + b"\nThing\ncbuiltins\nobject\nNtR.",
    ],
)
def test_globals_outside_the_allow_list_import_nothing(probe, data):
    with pytest.raises(UnpicklingError, match=f"'{PROBE}.(boom|Thing)' is not allowed"):
        pickleshelf.loads(data)
    assert not probe.exists(), "the module was imported"
    assert PROBE not in sys.modules


@pytest.mark.parametrize(
    "obj, name",
    [
        (Reduce(os.system, ("echo pwned",)), f"{os.system.__module__}.system"),
        (Reduce(eval, ("__import__('os')",)), "builtins.eval"),
        (Reduce(exec, ("x = 1",)), "builtins.exec"),
        (Reduce(getattr, ("os", "system")), "builtins.getattr"),
        (Reduce(__import__, ("os",)), "builtins.__import__"),
        (Reduce(subprocess.Popen, (["true"],)), "subprocess.Popen"),
    ],
)
@pytest.mark.parametrize("protocol", range(6))
def test_hostile_reduce_raises_naming_the_global(monkeypatch, obj, name, protocol):
    data = pickle.dumps(obj, protocol=protocol)
    called = []
    monkeypatch.setattr(os, "system", lambda *a: called.append(a))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: called.append(a))
    with pytest.raises(UnpicklingError, match=f"'{name}' is not allowed") as e:
        pickleshelf.loads(data)
    assert isinstance(e.value, pickle.UnpicklingError)
    assert called == []


def test_persistent_ids_buffers_and_extensions_are_refused():
    for data, what in [
        (b"Pid\n.", "persistent id"),
        (b"\x80\x05\x97.", "buffer"),
        (b"\x80\x02\x82\x01.", "extension"),
    ]:
        with pytest.raises(UnpicklingError, match=what):
            pickleshelf.loads(data)


def test_allow_list_forms():
    import collections
    import datetime

    d = pickle.dumps(collections.OrderedDict(a=datetime.date(2020, 1, 1)))
    assert pickleshelf.loads(d) == collections.OrderedDict(a=datetime.date(2020, 1, 1))
    with pytest.raises(UnpicklingError, match="collections.OrderedDict"):
        pickleshelf.loads(d, allow=[])
    with pytest.raises(UnpicklingError, match="datetime.date"):
        pickleshelf.loads(d, allow=["collections.OrderedDict"])
    assert pickleshelf.loads(d, allow=[collections.OrderedDict, datetime.date])["a"].year == 2020
    with pytest.raises(TypeError):
        pickleshelf.loads(d, allow="collections.OrderedDict")
    # Plain data needs nothing.
    assert pickleshelf.loads(pickle.dumps({"a": [1, (2, 3.5)], "b": {b"x"}}), allow=[]) == {"a": [1, (2, 3.5)], "b": {b"x"}}


def test_sharing_and_cycles_are_kept():
    shared = [1, 2]
    a = {"x": shared, "y": shared}
    b = pickleshelf.loads(pickle.dumps(a))
    assert b["x"] is b["y"]
    cyc = []
    cyc.append(cyc)
    d = {}
    d["self"] = d
    t = ([],)
    t[0].append(t)
    for v in (cyc, d):
        got = pickleshelf.loads(pickle.dumps(v))
        assert (got[0] if isinstance(got, list) else got["self"]) is got
    got = pickleshelf.loads(pickle.dumps(t))
    assert got[0][0] is got


def test_malformed_input_names_the_offset():
    for data in (b"", b"\x80", b"\x80\x04\x95\x10\x00", b"garbage", b"\x80\x09N.", b"]a."):
        with pytest.raises(UnpicklingError, match="byte"):
            pickleshelf.loads(data)


def dup_tuple2(levels):
    return b"\x80\x02K\x01" + b"2\x86" * levels + b"."


BOMBS = [
    ("dup_tuple2_60", dup_tuple2(60), None),
    ("self_append_500k", b"\x80\x02]" + b"2a" * 500_000 + b".", None),
    ("unclosed_marks_1e6", b"(" * 1_000_000, "max_marks"),
    ("deep_lists_1e6", b"\x80\x02" + b"]" * 1_000_000 + b"a" * 999_999 + b".", "max_depth"),
    ("binbytes8_2^62", b"\x80\x04\x8e" + struct.pack("<Q", 1 << 62), "input ends"),
    ("frame_2^64-1", b"\x80\x04\x95" + struct.pack("<Q", (1 << 64) - 1), "input ends"),
    ("int_text_1MB", b"I" + b"9" * 1_000_000 + b"\n.", "max_int_digits"),
    ("long_text_1MB", b"L" + b"9" * 1_000_000 + b"L\n.", "max_int_digits"),
]


@pytest.mark.parametrize("name, data, error", BOMBS, ids=[b[0] for b in BOMBS])
def test_bombs_stay_bounded(name, data, error):
    if error is None:
        v = pickleshelf.loads(data)
        if name.startswith("dup"):
            depth = 0
            while isinstance(v, tuple):
                assert v[0] is v[1]
                v, depth = v[0], depth + 1
            assert depth == 60
        else:
            assert len(v) == 500_000 and v[0] is v
    else:
        with pytest.raises(UnpicklingError, match=error):
            pickleshelf.loads(data)


def test_bombs_in_bounded_memory():
    """All the bombs in one fresh process: its peak memory stays small."""
    code = textwrap.dedent(
        """
        import resource, sys, pickleshelf
        sys.path.insert(0, sys.argv[1])
        from test_safe import BOMBS
        for name, data, error in BOMBS:
            try:
                pickleshelf.loads(data)
            except pickleshelf.UnpicklingError:
                pass
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
        """
    )
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", code, here], capture_output=True, text=True, check=True)
    peak_mb = int(out.stdout.strip())
    assert peak_mb < 250, f"peak RSS {peak_mb} MB"


def test_limits_can_be_raised_and_lowered():
    nested = pickle.dumps([[[[1]]]])
    with pytest.raises(UnpicklingError, match="max_depth"):
        pickleshelf.loads(nested, max_depth=2)
    assert pickleshelf.loads(nested, max_depth=10) == [[[[1]]]]
    with pytest.raises(UnpicklingError, match="max_int_digits"):
        pickleshelf.loads(b"L123456L\n.", max_int_digits=3)
