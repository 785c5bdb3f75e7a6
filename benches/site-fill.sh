#!/usr/bin/env bash
# A site of four appliances filling together (`fill run --site` on each, at once, each
# beside its own fill-server) against the same appliances filling alone (issue: site fill):
#   origin bytes: the site fill vs the four lone fills, counted by the origin's fill-server;
#   wall: the site fill (until the last appliance is done) vs the lone fill of the appliance
#         with the most to fetch (an empty disk): goal <= 1.3x on this one-disk machine.
# The costly link is RATE for the site (the site file's uplink; each appliance's share of it,
# RATE/4, is its cap on the origin in the site fill and its ingress in the site plan, so the
# plan spreads the landings) and RATE for a lone appliance. The
# floors: the site's bytes to write, by fio O_DIRECT through io_uring on the same disk
# (the disk-bound floor), and the bytes no appliance held over RATE (the link-bound one).
# Holdings: a1 the whole stale copy, a2 and a3 its even and odd files, a4 an empty disk.
# Each timed run after a page-cache drop with fresh fill-servers; medians of ROUNDS.
#
# PLAN=file (default): the site plan written once (`fill plan --site --out`) and handed to
# each appliance (--plan); PLAN=self: each appliance plans on its own at start.
#
# usage: benches/site-fill.sh [ROUNDS=3] [GIB=1] [RATE_MBPS=800] [PLAN=file|self]
# The dataset: `fill bench dataset` (seed 42). Loopback only. Needs ~8x GIB of free disk.
# Installs fio (Debian) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
GIB=${2:-1}
RATE=${3:-800}
PLAN=${4:-file}
export PATH="$HOME/.cargo/bin:$PATH"
source benches/fill-common.sh
need fio fio

cargo build --release --quiet --bin fill --bin fill-server
FILL=$PWD/target/release/fill
SERVER=$PWD/target/release/fill-server
W=$(mktemp -d /var/tmp/fill-bench-site.XXXXXX)
PIDS=()
stop_servers() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
    PIDS=()
}
# LOGDIR=DIR keeps each appliance's site fill log there (with FILL_LOG=info).
cleanup() {
    stop_servers
    if [ -n "${LOGDIR:-}" ]; then mkdir -p "$LOGDIR"; cp "$W"/site-*.log "$W"/server.log "$LOGDIR"/ 2>/dev/null || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

PORT=18690   # the origin; the appliances on the next four ports
APPS=(a1 a2 a3 a4)
serve() { # store port
    FILL_LOG=warn "$SERVER" --store "$1" --listen "127.0.0.1:$2" 2>>"$W/server.log" &
    PIDS+=($!)
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$2/healthz" && return 0
        sleep 0.1
    done
    echo "fill-server did not start on $2" >&2; exit 1
}
# Fresh copies of the appliances' stores, a page-cache drop, fresh servers (the origin
# always; the appliances' only for the site fill).
fresh() { # with-appliance-servers
    local a k
    stop_servers
    for a in "${APPS[@]}"; do rm -rf "$W/run/$a"; mkdir -p "$W/run"; cp -a "$W/tpl/$a" "$W/run/$a"; done
    sync; echo 3 > /proc/sys/vm/drop_caches; sleep 3
    serve "$W/origin" $PORT
    if [ "$1" = yes ]; then
        for k in 0 1 2 3; do serve "$W/run/${APPS[$k]}" $((PORT + 1 + k)); done
    fi
}
origin_bytes() {
    curl -sf "http://127.0.0.1:$PORT/metrics" | python3 -c '
import sys
print(int(sum(float(l.rsplit(" ", 1)[1]) for l in sys.stdin
    if l.startswith("fill_http_response_body_bytes_total{")
    and ("endpoint=\"content\"" in l or "endpoint=\"outboard\"" in l))))'
}
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

echo "dataset: $GIB GiB, seed 42; link $RATE Mbit/s" >&2
seed_origin "$FILL" "$W" "$GIB"
(cd "$W/ds/stale" && find . -type f -printf '%P\n' | sort > "$W/stale-names")
for half in even odd; do
    mkdir -p "$W/$half"
    awk -v h=$half '(NR % 2 == 0) == (h == "even")' "$W/stale-names" |
        (cd "$W/ds/stale" && xargs -d '\n' cp --parents -t "$W/$half")
done
mkdir -p "$W/tpl/a1" "$W/tpl/a2" "$W/tpl/a3" "$W/tpl/a4"
"$FILL" store import --store "$W/tpl/a1" "$W/ds/stale" >/dev/null
"$FILL" store import --store "$W/tpl/a2" "$W/even" >/dev/null
"$FILL" store import --store "$W/tpl/a3" "$W/odd" >/dev/null
rm -rf "$W/even" "$W/odd"

origin_source "http://127.0.0.1:$PORT" "${RATE}Mbps" 8 > "$W/lone.toml"
sed "s/bandwidth = .*/bandwidth = \"$((RATE / 4))Mbps\"/" "$W/lone.toml" > "$W/site-sources.toml"
{
    echo "sources = \"site-sources.toml\""
    echo "target = \"target.cat\""
    echo "peer_bandwidth = \"10Gbps\""
    echo "uplink = \"${RATE}Mbps\""
    for k in 0 1 2 3; do
        printf '\n[[appliance]]\nname = "%s"\nurl = "http://127.0.0.1:%d"\nstore = "run/%s"\ncapacity = "1PB"\ningress = "%dMbps"\n' \
            "${APPS[$k]}" $((PORT + 1 + k)) "${APPS[$k]}" $((RATE / 4))
    done
} > "$W/site.toml"
# What each must fetch, and what no appliance holds (the site plan's external bytes).
WRITE=0
for a in "${APPS[@]}"; do
    b=$("$FILL" delta --target "$W/target.cat" --store "$W/tpl/$a" --capacity 1PB --json |
        python3 -c "import json,sys; print(json.load(sys.stdin)['bytes_to_fetch'])")
    echo "  $a must fetch $b bytes" >&2
    WRITE=$((WRITE + b))
done
fresh yes
NEW=$("$FILL" plan --site "$W/site.toml" --json --out "$W/plan.json" | python3 -c "import json,sys; print(json.load(sys.stdin)['external_bytes'])")
PLAN_ARGS=()
[ "$PLAN" = file ] && PLAN_ARGS=(--plan "$W/plan.json")

: > "$W/results"
record() { echo "$1 $2" >> "$W/results"; echo "  $1: $2" >&2; }
lone() { # appliance -> seconds
    t0=$(now)
    "$FILL" run --target "$W/target.cat" --store "$W/run/$1" --sources "$W/lone.toml" --capacity 1PB >/dev/null
    t1=$(now); secs "$t0" "$t1"
}
# Origin bytes of the four lone fills (the same every round: once).
for a in "${APPS[@]}"; do
    fresh no
    lone "$a" >/dev/null
    record "lone-origin-$a" "$(origin_bytes)"
done
sync; sleep 5
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round" >&2
    fresh no
    record lone-a4-secs "$(lone a4)"
    fresh yes
    t0=$(now)
    pids=()
    for a in "${APPS[@]}"; do
        env ${LOGDIR:+FILL_LOG=info} "$FILL" run --site "$W/site.toml" --appliance "$a" "${PLAN_ARGS[@]}" >/dev/null 2>>"$W/site-$a.log" &
        pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid"; done
    t1=$(now)
    record site-secs "$(secs "$t0" "$t1")"
    record site-origin "$(origin_bytes)"
    for a in "${APPS[@]}"; do
        "$FILL" delta --target "$W/target.cat" --store "$W/run/$a" --capacity 1PB --json |
            python3 -c "import json,sys; d=json.load(sys.stdin)['bytes_to_fetch']; assert d == 0, d"
    done
    stop_servers; sync; echo 3 > /proc/sys/vm/drop_caches; sleep 3
    t0=$(now)
    fio --name=seq --filename="$W/fio.dat" --size="$WRITE" --bs=1M --rw=write --ioengine=io_uring \
        --direct=1 --iodepth=8 --output=/dev/null
    t1=$(now); rm -f "$W/fio.dat"
    record fio-secs "$(secs "$t0" "$t1")"
done

python3 - "$W/results" "$NEW" "$WRITE" "$ROUNDS" "$RATE" "$PLAN" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
new, write, rounds, rate = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
vals = lambda k: [float(v) for n, v in rows if n == k]
med = lambda k: statistics.median(vals(k))
lone_origin = sum(med(f"lone-origin-{a}") for a in ["a1", "a2", "a3", "a4"])
site_origin = med("site-origin")
link = new / (rate * 1e6 / 8)
print(f"\nmedians of {rounds} rounds; {rate} Mbit/s link; plan: {sys.argv[6]}; no appliance held {new/1e9:.3f} GB; the four write {write/1e9:.3f} GB")
print(f"  origin bytes: site {site_origin/1e9:.3f} GB ({site_origin/new:.3f}x what no one held; runs {[round(v/new, 3) for v in vals('site-origin')]}), "
      f"four lone fills {lone_origin/1e9:.3f} GB: site / lone {site_origin/lone_origin:.3f}")
print(f"  wall: site {med('site-secs'):.2f} s (runs {vals('site-secs')}), lone a4 {med('lone-a4-secs'):.2f} s "
      f"(runs {vals('lone-a4-secs')}): site / lone {med('site-secs')/med('lone-a4-secs'):.2f} (goal <= 1.3)")
print(f"  floors: disk (fio writing the site's {write/1e9:.3f} GB) {med('fio-secs'):.2f} s = "
      f"{med('fio-secs')/med('lone-a4-secs'):.2f}x the lone fill; link (new bytes at {rate} Mbit/s) {link:.2f} s")
PY
