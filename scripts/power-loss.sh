#!/usr/bin/env bash
# Long power-loss campaign: the harness of tests/power_loss.rs (workloads on a LazyFS
# mount, crash states rebuilt and checked) for STATES crash states (default 5000),
# stopping after SECONDS (default 3600) at the latest. Needs FUSE (/dev/fuse, root).
#
#   scripts/power-loss.sh [STATES] [SECONDS]
#
# PICKLESHELF_POWER_SEED picks the first run's seed (default: a random one, printed);
# PICKLESHELF_POWER_DIR keeps the tree of each failing crash state there. A failure names
# its crash state as WORKLOAD:SEED:AT:MODE; PICKLESHELF_POWER_REPLAY=that checks it alone.
# Prints the figures (states by point, mode and workload) and fails on the first bad state.
set -euo pipefail
cd "$(dirname "$0")/.."
states="${1:-5000}"
seconds="${2:-3600}"
seed="${PICKLESHELF_POWER_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
export PICKLESHELF_POWER_STATES="$states" PICKLESHELF_POWER_SECONDS="$seconds" PICKLESHELF_POWER_SEED="$seed"
echo "power-loss campaign: $states crash states, at most ${seconds}s, seed $seed"
# The harness stops by itself at the deadline; timeout is the backstop (build time included).
timeout --kill-after=30 $((seconds + 900)) \
    cargo test --release --test power_loss power_cuts_lose_no_synced_write -- --exact --nocapture
