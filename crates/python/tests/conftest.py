"""Shared setup of the Python package's tests.

Routes ``shelve.open`` to ``pickleshelf.open`` before collection, so that CPython's own
``test.test_shelve`` (collected by ``test_cpython_shelve.py``) runs against pickleshelf,
and fails the session if that test module ran but never called the patched function.
"""

import shelve
import sys

import pytest

import pickleshelf

_original_open = shelve.open
ROUTED = {"calls": 0, "ran": False}


def _routed_open(filename, flag="c", protocol=None, writeback=False):
    ROUTED["calls"] += 1
    return pickleshelf.open(filename, flag, protocol, writeback)


def pytest_configure(config):
    shelve.open = _routed_open
    # The corpus nests lists 500 deep; pickle's C code counts that against the
    # recursion limit, and pytest's own frames come on top.
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))


def pytest_runtest_logreport(report):
    if report.when == "call" and "test_cpython_shelve" in report.nodeid:
        ROUTED["ran"] = True


def pytest_terminal_summary(terminalreporter):
    if ROUTED["ran"]:
        terminalreporter.write_line(f"test.test_shelve: shelve.open routed to pickleshelf.open {ROUTED['calls']} times")


def pytest_sessionfinish(session, exitstatus):
    shelve.open = _original_open
    if ROUTED["ran"] and ROUTED["calls"] == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print("\nFAILED: test.test_shelve ran but shelve.open was never routed to pickleshelf.open")


@pytest.fixture
def store(tmp_path):
    """A fresh store path (not created)."""
    return str(tmp_path / "store.db")
