#!/usr/bin/env bash
# Side-by-side benchmark: the Python baselines and the Rust workloads (W1-W6 of
# ../shared/bench/WORKLOADS.md), run back to back N rounds, then ratio tables with the goals.
#
# Usage: scripts/bench-compare.sh [--scale S] [--repeat N] [--workload W1,..|all] [--out DIR]
#   --scale S     counts multiplier (default 1.0)
#   --repeat N    rounds (default 3); each round runs every Python case and then every
#                 Rust case once, so each ratio is of two runs minutes apart
#   --out DIR     where the JSON and text outputs go (default: a new temp dir)
# Environment: VENV (default ${TMPDIR:-/tmp}/bench-venv) is the Python venv that
# ../shared/bench/setup_env.sh prepares (apt python3-gdbm python3-venv; pip diskcache,
# joblib, sqlitedict, numpy): made on first use. W6 (numpy arrays) runs with the others
# (--workload all) or alone (--workload W6; the baselines use --scale 0.25 for it). CARGO_TARGET_DIR is honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
BENCH="$ROOT/../shared/bench"
SCALE=1.0
REPEAT=3
WORKLOAD=all
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --scale) SCALE="$2"; shift 2 ;;
        --repeat) REPEAT="$2"; shift 2 ;;
        --workload) WORKLOAD="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "bench-compare: unknown argument $1" >&2; exit 2 ;;
    esac
done
[ -f "$BENCH/python_baselines.py" ] || { echo "bench-compare: $BENCH/python_baselines.py is missing" >&2; exit 2; }
VENV="${VENV:-${TMPDIR:-/tmp}/bench-venv}"
OUT="${OUT:-$(mktemp -d "${TMPDIR:-/tmp}/bench-compare-XXXXXX")}"
mkdir -p "$OUT"

echo "== setup: Python venv $VENV" >&2
bash "$BENCH/setup_env.sh" "$VENV" >&2
echo "== build and check the Rust benchmark" >&2
cargo bench --bench workloads --no-run >&2
cargo bench --bench workloads -- --check > "$OUT/check.txt" || { cat "$OUT/check.txt"; echo "bench-compare: --check failed" >&2; exit 1; }
grep -E "FAILED|UNAVAILABLE" "$OUT/check.txt" >&2 || true

PY=()
RS=()
LOADS=()
for r in $(seq 1 "$REPEAT"); do
    echo "== round $r/$REPEAT: Python baselines (load average $(cut -d' ' -f1-3 /proc/loadavg))" >&2
    LOADS+=("round $r: $(cut -d' ' -f1 /proc/loadavg) before Python")
    "$VENV/bin/python" "$BENCH/python_baselines.py" --workload "$WORKLOAD" --scale "$SCALE" \
        --json "$OUT/py-$r.json" > "$OUT/py-$r.txt"
    echo "== round $r/$REPEAT: Rust workloads" >&2
    # A case that fails verification makes the bench exit 1; the tables still say which.
    cargo bench --bench workloads -- --workload "$WORKLOAD" --scale "$SCALE" \
        --json "$OUT/rs-$r.json" > "$OUT/rs-$r.txt" || echo "   (some Rust case failed; see $OUT/rs-$r.txt)" >&2
    PY+=("$OUT/py-$r.json")
    RS+=("$OUT/rs-$r.json")
done

{
    echo "# pickleshelf vs Python stores: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')), kernel $(uname -r);" \
         "$(rustc --version); Python $("$VENV/bin/python" -c 'import sys; print(sys.version.split()[0])')."
    echo "Command: scripts/bench-compare.sh --scale $SCALE --repeat $REPEAT --workload $WORKLOAD"
    echo "1-minute load average (other processes share this machine): $(printf '%s; ' "${LOADS[@]}" | sed 's/; $//')."
    echo
    python3 "$ROOT/scripts/bench_compare.py" --py "${PY[@]}" --rs "${RS[@]}"
} | tee "$OUT/compare.md"
echo >&2
echo "outputs (JSON, per-round tables, compare.md): $OUT" >&2
