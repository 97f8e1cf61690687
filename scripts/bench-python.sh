#!/usr/bin/env bash
# The Python package on W1, W3 and pickleshelf.loads against Python's stores, in one
# run (crates/python/bench/bench.py; arguments go to it, e.g. --scale 1.0 --repeat 3).
# Uses Debian's python3, which has dbm.gnu for the shelve rows, in a venv under target/
# prepared by ../shared/bench/setup_env.sh (diskcache, joblib, sqlitedict), with the
# package built into it (the abi3 wheel fits any CPython >= 3.9).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv="$root/target/bench-venv"
bash "$root/../shared/bench/setup_env.sh" "$venv" >/dev/null
"$venv/bin/pip" install -q "maturin>=1.16,<1.17"
PATH="$venv/bin:$PATH" CARGO_TARGET_DIR="$root/target" \
    "$venv/bin/pip" install -q --no-build-isolation --force-reinstall --no-deps ./crates/python
exec "$venv/bin/python" crates/python/bench/bench.py "$@"
