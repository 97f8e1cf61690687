#!/usr/bin/env bash
# Codec throughput side by side with CPython: crates/pickle/benches/codec.rs, which
# runs crates/pickle/benches/codec_bench.py to write the byte sets (CPython's own
# pickles) to a temporary directory and to time pickle.loads / pickle.dumps on them in
# one python3 process.
#
#   scripts/codec-bench.sh [--repeats N] [--quick] [--no-python] [--only TEXT]
#
# Prints the table (median and min..max of N repeats, thread CPU time) and keeps a
# copy in target/codec-bench.txt (under CARGO_TARGET_DIR when set).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v python3 >/dev/null 2>&1; then
    echo "codec-bench.sh: python3 not found; running our side only" >&2
    set -- --no-python "$@"
fi
out="${CARGO_TARGET_DIR:-target}/codec-bench.txt"
mkdir -p "$(dirname "$out")"
cargo bench -p pickleshelf-pickle --bench codec -- "$@" | tee "$out"
