#!/usr/bin/env bash
# Bounded fuzzing under cargo-fuzz (libFuzzer, AddressSanitizer, debug assertions) of
# the pickle decoder (fuzz/fuzz_targets/decode.rs) or the server's request parser
# (fuzz/fuzz_targets/resp.rs).
#
#   scripts/fuzz.sh [SECONDS] [decode|resp]        default 60 decode
#
# Seeds (decode): the conformance corpus's pickles of at most 16 KiB (../shared/conformance/cases,
# copied to a temporary directory at run time; nothing from there is committed) and
# fuzz/corpus/TARGET, where libFuzzer keeps what earlier runs found (git-ignored); for
# resp, a few requests written here.
# Prints the executions and findings; a crash is saved in fuzz/artifacts/TARGET/ and
# makes the script exit non-zero. Replay one with:
#   cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...
#
# Needs cargo-fuzz (installed when missing) and a nightly toolchain; without nightly it
# uses the default toolchain with RUSTC_BOOTSTRAP=1, which cargo-fuzz's flags accept.
# Builds go to fuzz/target (or FUZZ_TARGET_DIR).
set -euo pipefail
secs="${1:-60}"
target="${2:-decode}"
case "$target" in decode|resp) ;; *) echo "fuzz.sh: unknown target $target" >&2; exit 2;; esac
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
mkdir -p "$tmp/seeds" "fuzz/corpus/$target" "fuzz/artifacts/$target"
extra=()
if [ "$target" = decode ]; then
    cases=../shared/conformance/cases
    if [ -d "$cases" ]; then
        find "$cases" -name '*.pkl' -size -16k -exec cp {} "$tmp/seeds/" \;
    fi
    extra=(-dict=fuzz/pickle.dict)
else
    # The first byte picks the chunk size and whether the peer has authenticated.
    printf '\x08*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n' >"$tmp/seeds/get"
    printf '\x03set a "b\\x41" '"'"'c'"'"'\r\n*1\r\n*1\r\n' >"$tmp/seeds/inline"
    printf '\x01*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$99999999999\r\n' >"$tmp/seeds/big"
fi
echo "fuzz.sh: $target, $(ls "$tmp/seeds" | wc -l) seeds, $(ls "fuzz/corpus/$target" | wc -l) corpus entries, ${secs}s"

artifacts_before=$(ls "fuzz/artifacts/$target" | wc -l)
status=0
cargo "${toolchain[@]}" fuzz run --target-dir "$target_dir" "$target" "fuzz/corpus/$target" "$tmp/seeds" -- \
    -max_total_time="$secs" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
    "${extra[@]}" -print_final_stats=1 >"$tmp/log" 2>&1 || status=$?

# Progress lines without the per-input NEW/REDUCE noise, then the summary.
grep -E '^#[0-9]+.*(INITED|pulse|DONE)|ERROR|panicked|SUMMARY|Test unit written' "$tmp/log" | tail -n 25 || true
stat() { grep -E "^stat::$1:" "$tmp/log" | awk '{print $2}' | tail -n 1; }
findings=$(($(ls "fuzz/artifacts/$target" | wc -l) - artifacts_before))
echo "fuzz.sh: executions=$(stat number_of_executed_units) exec/s=$(stat average_exec_per_sec)" \
    "new_units=$(stat new_units_added) peak_rss_mb=$(stat peak_rss_mb) findings=$findings exit=$status"
if [ "$status" -ne 0 ] || [ "$findings" -ne 0 ]; then
    echo "fuzz.sh: FAILED; the log's last lines:" >&2
    tail -n 60 "$tmp/log" >&2
    ls -t "fuzz/artifacts/$target" | head -n "$((findings > 0 ? findings : 1))" >&2
    exit 1
fi
