#!/usr/bin/env python3
"""Draws the module graph of the `pickleshelf` crate from its `crate::` paths and checks
that its layers point one way (docs/ARCHITECTURE.md).

Usage: scripts/layers.py [--dot]    (run from anywhere; exits 1 on a violation)

Every `crate::<module>` path in code (comments, doc comments and unit tests are skipped) is an arrow
from the file's top-level module to `<module>`; a name the crate root re-exports
(`crate::Shelf`) is an arrow to the module it comes from. The check: no cycle, no arrow
from a module to one of a higher layer, and `sled::` named only under `src/index/`.
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"

# Layers, lowest first. An arrow may stay in its layer (if no cycle results) or go down.
LAYERS = [
    ("codec crate", ["pickle"]),
    ("blob", ["blob"]),
    ("errors", ["error", "progress", "remote_error"]),
    ("index, cache, lock, witness", ["index", "cache", "witness", "chain", "lock"]),
    ("store", ["store"]),
    ("features over the store", ["checkpoint", "stats", "memo", "repair", "transaction"]),
    ("handle", ["shelf"]),
    ("over the handle", ["array", "interop", "remote"]),
]
RANK = {m: i for i, (_, ms) in enumerate(LAYERS) for m in ms}


def module_of(path: Path) -> str:
    rel = path.relative_to(SRC)
    return rel.parts[0].removesuffix(".rs")


def code_lines(text: str):
    for line in text.splitlines():
        if line.strip().startswith("//"):
            continue
        # A trailing comment (a `//` inside a string literal is kept).
        yield line if '"' in line else line.split("//", 1)[0]


def reexports() -> dict:
    """Names `lib.rs` re-exports, mapped to their modules."""
    names = {}
    text = (SRC / "lib.rs").read_text()
    for m in re.finditer(r"pub use (\w+)::\{?([^;]*?)\}?;", text):
        for name in re.split(r"[,\s]+", m.group(2)):
            if name:
                names[name] = m.group(1)
    names["pickle"] = "pickle"
    return names


def edges() -> dict:
    names = reexports()
    out = {}
    for f in sorted(SRC.rglob("*.rs")):
        if f.name == "lib.rs" and f.parent == SRC:
            continue
        src = module_of(f)
        # Unit tests (`#[cfg(test)] mod tests`, at the end of a file) may use any layer.
        text = f.read_text().split("#[cfg(test)]\nmod tests", 1)[0]
        text = "\n".join(code_lines(text))
        targets = set()
        for m in re.finditer(r"crate::(\{[^}]*\}|\w+)", text):
            group = m.group(1)
            items = re.findall(r"\w+", group) if group.startswith("{") else [group]
            for item in items:
                target = item if item in RANK else names.get(item)
                if target and target != src:
                    targets.add(target)
        for t in targets:
            out.setdefault(src, {}).setdefault(t, []).append(str(f.relative_to(ROOT)))
    return out


def cycles(graph: dict) -> list:
    found, state = [], {}

    def visit(n, stack):
        state[n] = 1
        stack.append(n)
        for t in graph.get(n, {}):
            if state.get(t) == 1:
                found.append(stack[stack.index(t):] + [t])
            elif t not in state:
                visit(t, stack)
        stack.pop()
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return found


def main() -> int:
    graph = edges()
    if "--dot" in sys.argv:
        print("digraph pickleshelf {")
        for a in sorted(graph):
            for b in sorted(graph[a]):
                print(f'  "{a}" -> "{b}";')
        print("}")
        return 0
    bad = 0
    unknown = sorted(({m for m in graph} | {t for ts in graph.values() for t in ts}) - set(RANK))
    for m in unknown:
        print(f"module {m} is in no layer: add it to LAYERS")
        bad += 1
    n = 0
    for a in sorted(graph):
        for b in sorted(graph[a]):
            n += 1
            if RANK.get(a, -1) < RANK.get(b, -1):
                print(f"upward arrow {a} -> {b} in {', '.join(sorted(set(graph[a][b])))}")
                bad += 1
    found = cycles(graph)
    for c in found:
        print("cycle: " + " -> ".join(c))
    bad += len(found)
    sled = []
    for f in sorted(SRC.rglob("*.rs")):
        if (SRC / "index") in f.parents:
            continue
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if "sled::" in line:
                sled.append(f"{f.relative_to(ROOT)}:{i}")
    for s in sled:
        print(f"sled:: named outside src/index: {s}")
    bad += len(sled)
    for i, (label, ms) in reversed(list(enumerate(LAYERS))):
        below = sorted({t for m in ms for t in graph.get(m, {})})
        print(f"{i}  {label:<30} {' '.join(ms):<32} -> {' '.join(below)}")
    print(f"{n} arrows between {len(RANK)} modules; {len(found)} cycles; "
          f"{bad - len(found) - len(sled)} upward or unplaced; sled:: outside src/index: {len(sled)}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
