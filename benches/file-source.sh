#!/usr/bin/env bash
# A fill from a file:// origin (a local folder holding a published store) against the same
# fill over HTTP from fill-server serving that folder, alternated in the same run; with
# BASE_BIN, a second build's fill from the folder joins the rotation (before/after).
# The origin lives on /dev/shm and the page cache is warm: this measures the client's CPU
# and its wall time, not the disk. The store is written to a temporary folder on the disk
# (/var/tmp) through the default writer.
#
# SCALING=1 measures instead one stream hashed across cores: one connection to the folder,
# the store on /dev/shm through positioned writes (neither a server nor the disk shares the
# cores or sets the pace), `--verify-threads` 0 (hashed on the reading task) and 1 up to the
# machine's cores, alternated; the wall time is what scales.
#
# usage: [BASE_BIN=/path/to/fill] [SCALING=1] benches/file-source.sh [ROUNDS=5] [GIB=1.2]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
GIB=${2:-1.2}
export PATH="$HOME/.cargo/bin:$PATH"
source benches/fill-common.sh
need curl curl
need_time
cargo build --release --quiet --bin fill --bin fill-server
FILL=$PWD/target/release/fill
SERVER=$PWD/target/release/fill-server
SHM=$(mktemp -d /dev/shm/fill-file-source.XXXXXX)
W=$(mktemp -d /var/tmp/fill-file-source.XXXXXX)
PORT=18592
SRV=""
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W" "$SHM"; }
trap cleanup EXIT

seed_origin "$FILL" "$SHM" "$GIB"
rm -rf "$SHM/ds"
FILL_LOG=warn $SERVER --store "$SHM/origin" --listen "127.0.0.1:$PORT" 2>"$W/server.log" &
SRV=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
origin_source "file://$SHM/origin" 100Gbps 8 >"$W/file.toml"
origin_source "http://127.0.0.1:$PORT" 100Gbps 8 >"$W/http.toml"
BYTES=$(du -sb "$SHM/origin/content" | cut -f1)

declare -A RUNS
STORE=$W/app
ARGS=()
if [ -n "${SCALING:-}" ]; then
    origin_source "file://$SHM/origin" 100Gbps 1 >"$W/file1.toml"
    STORE=$SHM/app
    legs=()
    for t in $(seq 0 "$(nproc)"); do legs+=("verify-$t $FILL $W/file1.toml --verify-threads $t"); done
    ARGS=(--writer pwrite)
else
    legs=("file $FILL $W/file.toml" "http $FILL $W/http.toml")
    [ -n "${BASE_BIN:-}" ] && legs+=("file-base $BASE_BIN $W/file.toml")
fi
for r in $(seq "$ROUNDS"); do
    for leg in "${legs[@]}"; do
        read -r name bin src extra <<<"$leg"
        rm -rf "$STORE" && mkdir "$STORE"
        # shellcheck disable=SC2086 # extra: the leg's own arguments, split
        /usr/bin/time -f "%e %U %S" -o "$W/t" "$bin" run --target "$SHM/target.cat" \
            --store "$STORE" --sources "$src" --capacity 1TB --reserve 1MB "${ARGS[@]}" $extra \
            >/dev/null 2>"$W/fill.err" || { cat "$W/fill.err"; exit 1; }
        RUNS[$name]+="$(tail -1 "$W/t")"$'\n'
    done
done
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
col() { printf '%s' "${RUNS[$1]}" | awk -v c="$2" 'NF {print $c}' | median; }
gb=$(echo "$BYTES / 1000000000" | bc -l)
printf 'full fill of %.2f GB, %s rounds, medians (wall, user, sys; CPU per GB)\n' "$gb" "$ROUNDS"
for leg in "${legs[@]}"; do
    read -r name _ <<<"$leg"
    w=$(col "$name" 1); u=$(col "$name" 2); s=$(col "$name" 3)
    printf '%-10s wall %6.2f s (%5.2f GB/s)  user %5.2f s  sys %5.2f s  %.3f s/GB\n' "$name" \
        "$w" "$(echo "$gb / $w" | bc -l)" "$u" "$s" "$(echo "($u + $s) / $gb" | bc -l)"
done
