#!/usr/bin/env bash
# Bounded fuzzing of the pickle decoder: fuzz/fuzz_targets/decode.rs under cargo-fuzz
# (libFuzzer, AddressSanitizer, debug assertions).
#
#   scripts/fuzz.sh [SECONDS]        default 60
#
# Seeds: the conformance corpus's pickles of at most 16 KiB (../shared/conformance/cases,
# copied to a temporary directory at run time; nothing from there is committed) and
# fuzz/corpus/decode, where libFuzzer keeps what earlier runs found (git-ignored).
# Prints the executions and findings; a crash is saved in fuzz/artifacts/decode/ and
# makes the script exit non-zero. Replay one with:
#   cargo +nightly fuzz run decode fuzz/artifacts/decode/crash-...
#
# Needs cargo-fuzz (installed when missing) and a nightly toolchain; without nightly it
# uses the default toolchain with RUSTC_BOOTSTRAP=1, which cargo-fuzz's flags accept.
# Builds go to fuzz/target (or FUZZ_TARGET_DIR).
set -euo pipefail
secs="${1:-60}"
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked
fi
toolchain=()
if command -v rustup >/dev/null 2>&1 && rustup run nightly rustc --version >/dev/null 2>&1; then
    toolchain=(+nightly)
else
    echo "fuzz.sh: no nightly toolchain; using $(rustc --version) with RUSTC_BOOTSTRAP=1" >&2
    export RUSTC_BOOTSTRAP=1
fi
unset CARGO_TARGET_DIR
target_dir="${FUZZ_TARGET_DIR:-fuzz/target}"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/seeds" fuzz/corpus/decode fuzz/artifacts/decode
cases=../shared/conformance/cases
if [ -d "$cases" ]; then
    find "$cases" -name '*.pkl' -size -16k -exec cp {} "$tmp/seeds/" \;
fi
echo "fuzz.sh: $(ls "$tmp/seeds" | wc -l) seeds, $(ls fuzz/corpus/decode | wc -l) corpus entries, ${secs}s"

artifacts_before=$(ls fuzz/artifacts/decode | wc -l)
status=0
cargo "${toolchain[@]}" fuzz run --target-dir "$target_dir" decode fuzz/corpus/decode "$tmp/seeds" -- \
    -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    -dict=fuzz/pickle.dict -print_final_stats=1 >"$tmp/log" 2>&1 || status=$?

# Progress lines without the per-input NEW/REDUCE noise, then the summary.
grep -E '^#[0-9]+.*(INITED|pulse|DONE)|ERROR|panicked|SUMMARY|Test unit written' "$tmp/log" | tail -n 25 || true
stat() { grep -E "^stat::$1:" "$tmp/log" | awk '{print $2}' | tail -n 1; }
findings=$(($(ls fuzz/artifacts/decode | wc -l) - artifacts_before))
echo "fuzz.sh: executions=$(stat number_of_executed_units) exec/s=$(stat average_exec_per_sec)" \
    "new_units=$(stat new_units_added) peak_rss_mb=$(stat peak_rss_mb) findings=$findings exit=$status"
if [ "$status" -ne 0 ] || [ "$findings" -ne 0 ]; then
    echo "fuzz.sh: FAILED; the log's last lines:" >&2
    tail -n 60 "$tmp/log" >&2
    ls -t fuzz/artifacts/decode | head -n "$((findings > 0 ? findings : 1))" >&2
    exit 1
fi
