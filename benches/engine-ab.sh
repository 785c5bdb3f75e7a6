#!/usr/bin/env bash
# The fill engine before and after a change, in the same run, against the floors it must
# stay near (issue: the engine's seams):
#   delta: fill run of the stale copy, vs fio writing the same bytes O_DIRECT through
#          io_uring alone (1 MiB blocks, depth 8): goal fill <= 1.05x fio;
#   full:  fill run into an empty store, vs nginx + curl file after file then
#          b3sum --check: goal fill <= 0.6x.
# Each timed run after a page-cache drop, a fresh fill-server and 3 s for the disk to
# settle; the two builds alternate within each round; medians of ROUNDS.
#
# usage: benches/engine-ab.sh [ROUNDS=5] [GIB=2] [BASE=git rev, default: HEAD~1]
# The dataset: `fill bench dataset` (seed 42). Loopback only. Needs ~5x GIB of
# free disk. Installs nginx, fio (Debian) and b3sum (crates.io) when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
GIB=${2:-2}
BASE=${3:-HEAD~1}
export PATH="$HOME/.cargo/bin:$PATH"

source benches/fill-common.sh
need nginx nginx-light
need fio fio
need_b3sum

W=$(mktemp -d /var/tmp/fill-bench-ab.XXXXXX)
chmod 755 "$W"
SERVER_PID=""
cleanup() {
    [ -n "$SERVER_PID" ] && kill "$SERVER_PID" 2>/dev/null || true
    [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
    git worktree remove --force "$W/base-src" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

# The base builds in a target directory of its own (kept between runs): sharing one would
# let cargo take the base's artifacts for the new build's (a crate's artifacts are named
# by its path inside the workspace, and a checkout's files are newer than the tree's).
base_rev=$(git rev-parse --short "$BASE")
git worktree add --detach -q "$W/base-src" "$base_rev"
for build in base new; do
    src=$PWD; dir=$PWD/target
    [ "$build" = base ] && { src=$W/base-src; dir=$PWD/target/bench-base; }
    (cd "$src" && CARGO_TARGET_DIR="$dir" cargo build --release --quiet --bin fill --bin fill-server)
    mkdir -p "$W/$build"
    cp "$dir/release/fill" "$dir/release/fill-server" "$W/$build/"
done
echo "base: $base_rev, new: working tree of $(git rev-parse --short HEAD)" >&2

PORT=18590; NGINX_PORT=18591
serve() {
    [ -n "$SERVER_PID" ] && { kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true; }
    FILL_LOG=warn "$W/$1/fill-server" --store "$W/origin" --listen "127.0.0.1:$PORT" 2>>"$W/server.log" &
    SERVER_PID=$!
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && return 0
        sleep 0.1
    done
    echo "fill-server did not start" >&2; exit 1
}
# Before every timed run: a fresh server of the build measured (its maps of served files
# keep their pages where drop_caches cannot reach them), write back, drop, settle.
drop() { serve "${1:-new}"; sync; echo 3 > /proc/sys/vm/drop_caches; sleep 3; }
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

echo "dataset: $GIB GiB, seed 42" >&2
NEW=$W/new/fill
seed_origin "$NEW" "$W" "$GIB"
$NEW store import --store "$W/stale-store" "$W/ds/stale" >/dev/null
TOTAL=$(du -sb "$W/ds/target" | cut -f1)
origin_source "http://127.0.0.1:$PORT" 100Gbps 8 > "$W/sources.toml"
cat > "$W/nginx.conf" <<CONF
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 1024; }
http { access_log off; sendfile on; types { } default_type application/octet-stream;
  server { listen 127.0.0.1:$NGINX_PORT; root $W/ds/target; } }
CONF
nginx -c "$W/nginx.conf" -p "$W"
(cd "$W/ds/target" && find . -type f -printf '%P\n' | sort > "$W/names" && xargs -a "$W/names" -d '\n' b3sum > "$W/sums")
DELTA=$($NEW delta --target "$W/target.cat" --store "$W/stale-store" --capacity 1PB --json |
    python3 -c "import json,sys; print(json.load(sys.stdin)['bytes_to_fetch'])")

: > "$W/results"
record() { echo "$1 $2" >> "$W/results"; echo "  $1: $2 s" >&2; }
fill_run() { # build store-dir
    mkdir -p "$2"   # a new, empty disk (a path that is not a store is refused)
    t0=$(now)
    "$W/$1/fill" run --target "$W/target.cat" --store "$2" --sources "$W/sources.toml" --capacity 1PB >/dev/null
    t1=$(now); secs "$t0" "$t1"
}
sync; sleep 10
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round" >&2
    # Alternate which build goes first, so neither always follows the other.
    order="base new"; [ $((round % 2)) = 0 ] && order="new base"
    for build in $order; do
        rm -rf "$W/app"; cp -a "$W/stale-store" "$W/app"; drop "$build"
        record "delta-$build" "$(fill_run "$build" "$W/app")"
    done
    drop
    t0=$(now)
    fio --name=seq --filename="$W/fio.dat" --size="$DELTA" --bs=1M --rw=write --ioengine=io_uring \
        --direct=1 --iodepth=8 --output=/dev/null
    t1=$(now); rm -f "$W/fio.dat"
    record delta-fio "$(secs "$t0" "$t1")"
    for build in $order; do
        rm -rf "$W/empty"; drop "$build"
        record "full-$build" "$(fill_run "$build" "$W/empty")"
    done
    rm -rf "$W/empty" "$W/app"; drop
    mkdir -p "$W/curl"
    t0=$(now)
    while read -r name; do
        curl -sf --create-dirs -o "$W/curl/$name" "http://127.0.0.1:$NGINX_PORT/$name"
    done < "$W/names"
    (cd "$W/curl" && b3sum --check --quiet "$W/sums")
    t1=$(now); rm -rf "$W/curl"
    record full-curl-b3sum "$(secs "$t0" "$t1")"
done

python3 - "$W/results" "$TOTAL" "$DELTA" "$ROUNDS" "$base_rev" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
total, delta, rounds, base = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
med = lambda k: statistics.median(float(v) for n, v in rows if n == k)
print(f"\nmedians of {rounds} rounds: target {total/1e9:.2f} GB, delta {delta/1e9:.2f} GB; base = {base}")
for k in ["delta-base", "delta-new", "delta-fio", "full-base", "full-new", "full-curl-b3sum"]:
    print(f"  {k:<18} {med(k):7.2f} s")
print(f"delta: new / fio {med('delta-new') / med('delta-fio'):.2f} (goal <= 1.05), base / fio {med('delta-base') / med('delta-fio'):.2f}, new / base {med('delta-new') / med('delta-base'):.2f}")
print(f"full:  new / (curl+b3sum) {med('full-new') / med('full-curl-b3sum'):.2f} (goal <= 0.6), base / (curl+b3sum) {med('full-base') / med('full-curl-b3sum'):.2f}, new / base {med('full-new') / med('full-base'):.2f}")
PY
