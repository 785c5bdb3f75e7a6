#!/usr/bin/env bash
# The fill machine under the seeded fault simulator, for long runs (CI runs 10,000 seeds in
# the test suite).
#
#   scripts/simulate-faults.sh [--seeds N] [--first S]   N seeds from S (default 1,000,000 from 0)
#   scripts/simulate-faults.sh --replay SEED             one seed's trace, step by step
#   scripts/simulate-faults.sh --planted [--seeds N]     with a planted bug (blocks recorded
#                                                        before their sync): must fail
#
# Prints the seeds that hit each fault class, and any failing seed with how to replay it.
set -euo pipefail
cd "$(dirname "$0")/.."
seeds=1000000 first=0 log="" replay="" features=() planted=0
while [ $# -gt 0 ]; do
    case "$1" in
        --seeds) seeds="$2"; shift 2 ;;
        --first) first="$2"; shift 2 ;;
        --replay) replay="$2"; shift 2 ;;
        --planted) planted=1; features=(--features planted-bug-record-before-sync); shift ;;
        -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
        *) echo "simulate-faults.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
run() { cargo test --release -q -p fill-core "${features[@]}" --test fill_sim "$@" -- --nocapture; }
if [ -n "$replay" ]; then
    FILL_SIM_REPLAY="$replay" run replay_a_seed
    exit
fi
if [ "$planted" = 1 ]; then
    log=$(mktemp)
    trap 'rm -f "$log"' EXIT
    FILL_SIM_FIRST="$first" FILL_SIM_SEEDS="$seeds" run fills_keep >"$log" 2>&1 || true
    grep -E 'seeds from|^seed |replay' "$log" | head -5
    if grep -q 'broke an invariant:' "$log"; then
        echo "planted bug caught"
        exit 0
    fi
    echo "planted bug NOT caught" >&2
    exit 1
fi
FILL_SIM_FIRST="$first" FILL_SIM_SEEDS="$seeds" run fills_keep
