#!/usr/bin/env bash
# Long corruption campaign: tests/corruption.rs for TRIALS trials (default 3000): damage one
# file of a closed store, open it in a child process, read everything, classify; then gc,
# salvage and repair it and count the readable values any of them lost (must be 0).
#
#   scripts/corruption-campaign.sh [TRIALS]
#
# PICKLESHELF_CORRUPTION_SEED picks the damages (default: a random one, printed);
# PICKLESHELF_CORRUPTION_JOBS runs trials in parallel (default 2);
# PICKLESHELF_CORRUPTION_KEYS sizes the reference store (default 300 keys);
# PICKLESHELF_CORRUPTION_KEEP=DIR keeps the damaged copies of failed or undetected trials.
# Prints the outcome tables; fails on an undetected loss, a wrong value, a panic/abort, a hang,
# or a value gc, salvage or repair lost.
set -euo pipefail
cd "$(dirname "$0")/.."
trials="${1:-3000}"
seed="${PICKLESHELF_CORRUPTION_SEED:-$(( (RANDOM << 15) | RANDOM ))}"
export PICKLESHELF_CORRUPTION_TRIALS="$trials" PICKLESHELF_CORRUPTION_SEED="$seed"
echo "corruption campaign: $trials trials, seed $seed"
# About 1.2 s of wall time a trial with 2 jobs on 2 cores; timeout bounds a run whose trials
# hang (each has 300 s).
timeout --kill-after=30 $((trials * 2 + 900)) \
    cargo test --release --test corruption corruption_campaign -- --exact --nocapture
