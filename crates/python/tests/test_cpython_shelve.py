"""CPython's own test.test_shelve, unmodified, with shelve.open routed to
pickleshelf.open (see conftest.py). Its tests of shelve.Shelf over plain dicts run as
they are; every test that opens a file goes through pickleshelf."""

import pytest

from test.test_shelve import *  # noqa: F401,F403  (the TestCase classes, for collection)


@pytest.fixture(autouse=True)
def _in_temp_dir(tmp_path, monkeypatch):
    # test_shelve makes its files under the current directory.
    monkeypatch.chdir(tmp_path)
