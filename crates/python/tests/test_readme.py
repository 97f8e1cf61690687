"""README's Python section runs as written, and the package ships its type stubs."""

import os
import re

import pickleshelf

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "README.md")


def python_blocks():
    with open(README, encoding="utf-8") as f:
        text = f.read()
    section = text.split("## Python\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S), section


def test_readme_python_section_runs(tmp_path, monkeypatch, capsys):
    blocks, section = python_blocks()
    assert blocks, "README has no Python example"
    assert "pip install ./crates/python" in section
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        namespace = {"__name__": "readme"}
        exec(compile(code, "README.md", "exec"), namespace)
        namespace.clear()  # the memoized function holds the store open
    import gc

    gc.collect()
    assert "datetime.date(2024, 5, 1)" in capsys.readouterr().out
    # The example's store is a real store, with its checkpoint and memo result.
    with pickleshelf.open(str(tmp_path / "state.db"), "r") as s:
        assert [c["name"] for c in s.checkpoints()] == ["v1"]
        assert s.stats()["memo_entries"] == 1


def test_the_package_ships_type_stubs():
    here = os.path.dirname(pickleshelf.__file__)
    assert os.path.exists(os.path.join(here, "py.typed"))
    with open(os.path.join(here, "__init__.pyi")) as f:
        stubs = f.read()
    for name in pickleshelf.__all__:
        assert re.search(rf"\b{name}\b", stubs), name
