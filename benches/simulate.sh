#!/usr/bin/env bash
# `fill simulate` on the default model (100,000-file catalog), end to end (model, real delta
# and planner, CSV, JSON, SVG and PNG charts), medians of ROUNDS, peak memory per run:
#   sweep: one appliance, install delays 0..60      (goal: <= 5 s on 2 cores)
#   fleet: 1,000 appliances, delays drawn in 0..60  (goal: <= 60 s on 2 cores)
#   fleet without site plans, for the share site planning costs.
#   fleet: 18,000 appliances (Open Connect's order of size), delays drawn in 0..60
#          (goal: <= 60 s and <= 1 GiB on 2 cores), and the same fleet's delays read from
#          a CSV (--delays-csv), as a control plane's export would give them.
#
# usage: benches/simulate.sh [ROUNDS=3]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
source benches/fill-common.sh
need_time
cargo build --release --quiet --bin fill
FILL=$PWD/target/release/fill
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

run() { # name, args...
    local name=$1; shift
    local times=() rss=()
    for i in $(seq "$ROUNDS"); do
        rm -rf "$W/out"
        /usr/bin/time -f "%e %M" -o "$W/time" "$FILL" simulate --out "$W/out" "$@" >/dev/null 2>"$W/err"
        read -r t m <"$W/time"
        times+=("$t"); rss+=("$m")
    done
    local tm rm
    tm=$(printf '%s\n' "${times[@]}" | median)
    rm=$(printf '%s\n' "${rss[@]}" | median)
    printf '%-28s median %6.2f s   peak RSS %6.0f MiB   (runs: %s)\n' \
        "$name" "$tm" "$(awk -v m="$rm" 'BEGIN { print m / 1024 }')" "${times[*]}"
}

echo "fill simulate, $(nproc) cores, $ROUNDS rounds"
run "sweep 0..60" --delays 0..60
run "fleet 1000, site plans" --appliances 1000 --delays 0..60
run "fleet 1000, alone only" --appliances 1000 --delays 0..60 --no-site-planning
run "fleet 18000, site plans" --appliances 18000 --delays 0..60
# A seeded, skewed spread of real delays: most installs within two weeks, a long tail.
awk 'BEGIN { srand(7); print "serial,delay_days";
             for (i = 0; i < 18000; i++) { d = int(-12 * log(1 - rand())); if (d > 120) d = 120;
                                           printf "oca-%d,%d\n", i, d } }' >"$W/delays.csv"
run "fleet 18000, delays CSV" --appliances 18000 --delays-csv "$W/delays.csv"
