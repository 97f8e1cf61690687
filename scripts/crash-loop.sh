#!/usr/bin/env bash
# Long crash campaign: the crash harness of tests/crash.rs (SIGKILL a writing child, reopen,
# check) for KILLS kills (default 10000), stopping after SECONDS (default 3600) at the latest.
#
#   scripts/crash-loop.sh [KILLS] [SECONDS]
#
# PICKLESHELF_CRASH_SEED picks the op stream and kill delays (default: a random one, printed);
# PICKLESHELF_CRASH_DIR keeps the store, the last child's progress and stderr there.
# Prints the figures (kills per phase) and fails on the first bad recovery.
set -euo pipefail
cd "$(dirname "$0")/.."
kills="${1:-10000}"
seconds="${2:-3600}"
seed="${PICKLESHELF_CRASH_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
export PICKLESHELF_CRASH_KILLS="$kills" PICKLESHELF_CRASH_SECONDS="$seconds" PICKLESHELF_CRASH_SEED="$seed"
echo "crash loop: $kills kills, at most ${seconds}s, seed $seed"
# The harness stops by itself at the deadline; timeout is the backstop (build time included).
timeout --kill-after=30 $((seconds + 900)) \
    cargo test --release --test crash crash_kill_reopen_loop -- --exact --nocapture
