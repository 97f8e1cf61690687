#!/usr/bin/env bash
# The Python package's tests: builds the package into a venv under target/ (once, and
# again only when its sources change), then runs its pytest suite (crates/python/tests)
# and CPython's own test.test_shelve with shelve.open routed to pickleshelf.open.
# Extra arguments go to pytest. Needs a python3 whose stdlib has the `test` package
# (PICKLESHELF_PYTHON picks another interpreter). Never skips: a missing piece fails.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
venv=target/py-venv
python=${PICKLESHELF_PYTHON:-python3}
export CARGO_TARGET_DIR="$root/target"   # maturin's cargo build reuses the workspace's

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
deps="maturin>=1.16,<1.17 pytest>=8"
if [ "$(cat "$venv/.deps" 2>/dev/null)" != "$deps" ]; then
    # shellcheck disable=SC2086
    "$venv/bin/pip" install -q $deps
    echo "$deps" > "$venv/.deps"
fi

# Rebuild the package when anything it is built from changed.
stamp=$(find src crates/pickle/src crates/python/src crates/python/python Cargo.toml Cargo.lock \
        crates/python/Cargo.toml crates/python/pyproject.toml -type f -print0 \
        | sort -z | xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
if [ "$(cat "$venv/.built" 2>/dev/null)" != "$stamp" ]; then
    PATH="$root/$venv/bin:$PATH" "$venv/bin/pip" install -q --no-build-isolation \
        --force-reinstall --no-deps ./crates/python
    echo "$stamp" > "$venv/.built"
fi

# The Rust programs the cross-language tests run.
cargo build --release --quiet --bin pickleshelf --example py_interop
export PICKLESHELF_CLI="$root/target/release/pickleshelf"
export PICKLESHELF_INTEROP="$root/target/release/examples/py_interop"

cd crates/python
if [ $# -eq 0 ]; then set -- tests; fi
exec "$root/$venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
