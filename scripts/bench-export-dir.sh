#!/usr/bin/env bash
# Times `pickleshelf export --dir` of N small keys (default 100,000: W1-like records,
# ~130 bytes of pickle each), ROUNDS times (default 3), in a scratch directory under
# $TMPDIR; prints one line per round. Build first: cargo build --release --bin pickleshelf.
# Usage: scripts/bench-export-dir.sh [N] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
rounds=${2:-3}
bin=$PWD/target/release/pickleshelf
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
python3 - "$scratch/src" "$n" <<'PY'
import dbm.dumb, pickle, sys
path, n = sys.argv[1], int(sys.argv[2])
db = dbm.dumb.open(path, "n")
for i in range(n):
    db[("k%06d" % i).encode()] = pickle.dumps({"i": i, "name": "x" * 50, "vals": list(range(20))}, 4)
db.close()
PY
"$bin" import "$scratch/st.db" --shelve "$scratch/src" >/dev/null
for r in $(seq "$rounds"); do
    rm -rf "$scratch/out"
    sync
    start=$(date +%s.%N)
    "$bin" export "$scratch/st.db" --dir "$scratch/out" >/dev/null
    end=$(date +%s.%N)
    echo "round $r: export --dir of $n keys: $(python3 -c "print(round($end - $start, 2))") s"
done
