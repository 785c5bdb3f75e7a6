#!/usr/bin/env bash
# fill against the tools an operator would otherwise use, on a seeded dataset
# (`fill bench dataset`), everything in the same run, page cache dropped (and the
# disk left 3 s to settle) before each timed run, every fill-server restarted first (its
# mappings of the files it served hold their pages in memory, where drop_caches cannot
# reach them), medians of ROUNDS:
#   (a) delta fill of the stale copy (verified) vs rsync daemon over loopback, -W and default,
#       both serving from this disk; then both serving from RAM (tmpfs), as a source on
#       another machine would, whose reads do not share the appliance's disk;
#   (b) full fill into an empty store vs nginx + curl followed by b3sum --check;
#   (c) fio's O_DIRECT io_uring sequential write rate, and fill's write rate as a fraction;
#   (d) fill prefill to 4 stores vs 4 sequential fills.
#
# usage: benches/fill-vs-peers.sh [ROUNDS=3] [GIB=4]   (FILL_BIN=path measures another build)
# Installs nginx, rsync and fio from Debian's packages and b3sum from crates.io when missing.
# Loopback only. Needs ~6x GIB of free disk, and ~2.5x GIB of free memory for the runs
# serving from RAM (a tmpfs it mounts: skipped without the memory or the right to mount).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
GIB=${2:-4}
export PATH="$HOME/.cargo/bin:$PATH"

source benches/fill-common.sh
need nginx nginx-light
need rsync rsync
need fio fio
need_time
need_b3sum

cargo build --release --quiet --bin fill --bin fill-server
FILL=${FILL_BIN:-$PWD/target/release/fill}   # FILL_BIN: another build to measure
SERVER=$PWD/target/release/fill-server

W=$(mktemp -d /var/tmp/fill-bench-peers.XXXXXX)
chmod 755 "$W"
RAM=""
declare -A served=()
cleanup() {
    for p in "${served[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null || true; done
    [ -f "$W/nginx.pid" ] && kill "$(cat "$W/nginx.pid")" 2>/dev/null || true
    [ -f "$W/rsyncd.pid" ] && kill "$(cat "$W/rsyncd.pid")" 2>/dev/null || true
    [ -f "$W/rsyncd-ram.pid" ] && kill "$(cat "$W/rsyncd-ram.pid")" 2>/dev/null || true
    sleep 0.5
    if [ -n "$RAM" ]; then umount "$RAM" || true; fi
    rm -rf "$W"
}
trap cleanup EXIT

FILL_PORT=18580; NGINX_PORT=18581; RSYNC_PORT=18582; RAM_PORT=18583; RSYNC_RAM_PORT=18584
# (Re)starts the fill-server for store $1 on port $2 and waits until it answers.
serve() {
    [ -n "${served[$2]:-}" ] && { kill "${served[$2]}"; wait "${served[$2]}" 2>/dev/null || true; }
    FILL_LOG=warn $SERVER --store "$1" --listen "127.0.0.1:$2" 2>>"$W/server-$2.log" &
    served[$2]=$!
    for _ in $(seq 1 100); do
        curl -sf -o /dev/null "http://127.0.0.1:$2/healthz" && return 0
        sleep 0.1
    done
    echo "fill-server on port $2 did not start" >&2; exit 1
}
# Before every timed run: restart the fill-servers (a server keeps the files it served
# mapped, and drop_caches leaves mapped pages in memory: without this, every run after the
# first would read a warm origin while rsync's and nginx's read a cold disk), write back,
# drop the page cache, then let the disk settle (a virtual disk keeps writing behind the
# guest's sync for a moment), the same for every tool.
drop() {
    serve "$W/origin" "$FILL_PORT"
    [ -n "$RAM" ] && serve "$RAM/origin" "$RAM_PORT"
    sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; sleep 3
}
now() { date +%s.%N; }
secs() { python3 -c "print(f'{$2 - $1:.3f}')"; }

echo "dataset: $GIB GiB, seed 42" >&2
seed_origin "$FILL" "$W" "$GIB"
$FILL store import --store "$W/stale-store" "$W/ds/stale" >/dev/null
TOTAL=$(du -sb "$W/ds/target" | cut -f1)
# A file of the same volume for fio's reader in (c).
fio --name=prep --filename="$W/fio-read.dat" --size="$TOTAL" --bs=1M --rw=write --direct=1 \
    --output=/dev/null

origin_source "http://127.0.0.1:$FILL_PORT" 100Gbps 8 > "$W/sources.toml"
# For (a) and (c): the origin store and rsync's tree in RAM, as on a source on another
# machine: the appliance's disk then does the writes alone, as fio's does. A tmpfs of its
# own, with huge pages: on a tmpfs of 4 KiB pages (/dev/shm here) each page fill-server maps
# costs a fault of its own (312,795 faults, ~1 CPU-second for 1.28 GB on this VM) where ext4
# maps a whole large folio per fault, and rsync's read()s pay nothing of the kind. Skipped
# without the memory or the right to mount.
avail=$(( $(awk '/^MemAvailable:/ {print $2}' /proc/meminfo) * 1024 ))
if [ "$avail" -gt $((TOTAL * 3)) ] && mkdir -p "$W/ram" &&
    mount -t tmpfs -o "size=$((TOTAL * 5 / 2)),huge=always,mode=755" fill-bench "$W/ram"; then
    RAM=$W/ram
    cp -a "$W/origin" "$RAM/origin"
    cp -a "$W/ds/target" "$RAM/target"
    sed "s/:$FILL_PORT/:$RAM_PORT/" "$W/sources.toml" > "$W/sources-ram.toml"
else
    echo "no tmpfs: skipping the runs serving from RAM" >&2
fi
cat > "$W/nginx.conf" <<CONF
worker_processes 2;
pid $W/nginx.pid;
error_log $W/nginx-error.log warn;
events { worker_connections 1024; }
http { access_log off; sendfile on; types { } default_type application/octet-stream;
  server { listen 127.0.0.1:$NGINX_PORT; root $W/ds/target; } }
CONF
nginx -c "$W/nginx.conf" -p "$W"
cat > "$W/rsyncd.conf" <<CONF
pid file = $W/rsyncd.pid
address = 127.0.0.1
port = $RSYNC_PORT
use chroot = false
[target]
path = $W/ds/target
read only = true
CONF
if [ -n "$RAM" ]; then
    sed -e "s/^port = .*/port = $RSYNC_RAM_PORT/" -e "s|^path = .*|path = $RAM/target|" \
        -e "s|rsyncd.pid|rsyncd-ram.pid|" "$W/rsyncd.conf" > "$W/rsyncd-ram.conf"
    rsync --daemon --config "$W/rsyncd-ram.conf"
fi
rsync --daemon --config "$W/rsyncd.conf"
sleep 1
(cd "$W/ds/target" && find . -type f -printf '%P\n' | sort > "$W/names" && xargs -a "$W/names" -d '\n' b3sum > "$W/sums")

: > "$W/results"
record() { echo "$1 $2" >> "$W/results"; echo "  $1: $2 ${3:-s}" >&2; }

# The dataset was just written: let its writeback finish before the first round.
sync; sleep 10
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round" >&2
    # (a) delta fill vs rsync, each from the same stale copy.
    rm -rf "$W/app"; cp -a "$W/stale-store" "$W/app"; drop
    t0=$(now); $FILL run --target "$W/target.cat" --store "$W/app" --sources "$W/sources.toml" --capacity 1PB >/dev/null; t1=$(now)
    record a-fill "$(secs "$t0" "$t1")"
    for mode in W default; do
        rm -rf "$W/rs"; cp -a "$W/ds/stale" "$W/rs"; drop
        flag=""; [ "$mode" = W ] && flag="-W"
        t0=$(now); rsync -a --delete $flag "rsync://127.0.0.1:$RSYNC_PORT/target/" "$W/rs/"; t1=$(now)
        record "a-rsync-$mode" "$(secs "$t0" "$t1")"
        # rsync leaves its writes in the page cache; with them on disk, as fill's are:
        sync; t2=$(now)
        record "a-rsync-$mode-synced" "$(secs "$t0" "$t2")"
    done
    if [ -n "$RAM" ]; then
        # The same, both serving from RAM.
        rm -rf "$W/app" "$W/rs"; cp -a "$W/stale-store" "$W/app"; drop
        t0=$(now); $FILL run --target "$W/target.cat" --store "$W/app" --sources "$W/sources-ram.toml" --capacity 1PB >/dev/null; t1=$(now)
        record a-fill-ram "$(secs "$t0" "$t1")"
        rm -rf "$W/app"; cp -a "$W/ds/stale" "$W/rs"; drop
        t0=$(now); rsync -a --delete -W "rsync://127.0.0.1:$RSYNC_RAM_PORT/target/" "$W/rs/"; t1=$(now)
        record a-rsync-W-ram "$(secs "$t0" "$t1")"
    fi
    # (b) full fill vs nginx + curl + b3sum --check.
    rm -rf "$W/app" "$W/rs"; mkdir -p "$W/empty"; drop
    t0=$(now)
    /usr/bin/time -f %M -o "$W/rss" $FILL run --target "$W/target.cat" --store "$W/empty" --sources "$W/sources.toml" --capacity 1PB --json > "$W/full.json"
    t1=$(now)
    record b-fill "$(secs "$t0" "$t1")"
    record b-fill-peak-rss-MiB "$(( $(tail -1 "$W/rss") / 1024 ))" MiB
    python3 -c "import json; print(json.load(open('$W/full.json'))['write_backend'])" > "$W/backend"
    rm -rf "$W/empty"; drop
    if [ -n "$RAM" ]; then
        mkdir -p "$W/empty"
        t0=$(now)
        $FILL run --target "$W/target.cat" --store "$W/empty" --sources "$W/sources-ram.toml" --capacity 1PB >/dev/null
        t1=$(now)
        record c-fill-ram-origin "$(secs "$t0" "$t1")"
        rm -rf "$W/empty"; drop
    fi
    mkdir -p "$W/curl"
    t0=$(now)
    while read -r name; do
        curl -sf --create-dirs -o "$W/curl/$name" "http://127.0.0.1:$NGINX_PORT/$name"
    done < "$W/names"
    (cd "$W/curl" && b3sum --check --quiet "$W/sums")
    t1=$(now)
    record b-curl-b3sum "$(secs "$t0" "$t1")"
    rm -rf "$W/curl"
    # (c) fio: O_DIRECT io_uring sequential writes of the same volume, 1 MiB blocks, depth 8.
    drop
    fio --name=seq --filename="$W/fio.dat" --size="$TOTAL" --bs=1M --rw=write --ioengine=io_uring \
        --direct=1 --iodepth=8 --output-format=json > "$W/fio.json"
    rm -f "$W/fio.dat"
    # The same writes while a reader streams the same volume from the same disk, as a fill's
    # server reads the origin's files: the write rate the disk leaves a fill that also reads.
    drop
    fio --name=seq --filename="$W/fio.dat" --size="$TOTAL" --bs=1M --rw=write --ioengine=io_uring \
        --direct=1 --iodepth=8 --name=reader --filename="$W/fio-read.dat" --rw=read --bs=1M --direct=0 \
        --output-format=json --output="$W/fio-rw.json" >/dev/null
    rm -f "$W/fio.dat"
    record c-fio-while-reading-MBps "$(python3 -c "import json; j=json.load(open('$W/fio-rw.json')); print(f\"{j['jobs'][0]['write']['bw_bytes']/1e6:.1f}\")")" MB/s
    record c-fio-MBps "$(python3 -c "import json; j=json.load(open('$W/fio.json')); print(f\"{j['jobs'][0]['write']['bw_bytes']/1e6:.1f}\")")" MB/s
    # (d) prefill 4 stores vs 4 sequential fills.
    mkdir -p "$W"/p0 "$W"/p1 "$W"/p2 "$W"/p3; drop
    t0=$(now); $FILL prefill --target "$W/target.cat" --source "http://127.0.0.1:$FILL_PORT" \
        --store "$W/p0" --store "$W/p1" --store "$W/p2" --store "$W/p3" >/dev/null; t1=$(now)
    record d-prefill4 "$(secs "$t0" "$t1")"
    rm -rf "$W"/p?; mkdir -p "$W"/s0 "$W"/s1 "$W"/s2 "$W"/s3; drop
    t0=$(now)
    for i in 0 1 2 3; do
        $FILL run --target "$W/target.cat" --store "$W/s$i" --sources "$W/sources.toml" --capacity 1PB >/dev/null
    done
    t1=$(now)
    record d-sequential4 "$(secs "$t0" "$t1")"
    rm -rf "$W"/s?
done

python3 - "$W/results" "$TOTAL" "$(cat "$W/backend")" "$ROUNDS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
total, backend, rounds = int(sys.argv[2]), sys.argv[3], sys.argv[4]
med = lambda k: statistics.median(float(v) for n, v in rows if n == k)
print(f"\nmedians of {rounds} rounds, {total/1e9:.2f} GB target, page cache dropped before each run")
has = lambda k: any(n == k for n, _ in rows)
for k in ["a-fill", "a-rsync-W", "a-rsync-W-synced", "a-rsync-default", "a-rsync-default-synced",
          "a-fill-ram", "a-rsync-W-ram", "b-fill", "b-curl-b3sum", "d-prefill4", "d-sequential4"]:
    if has(k):
        print(f"  {k:<24} {med(k):8.2f} s")
print(f"  {'c-fio-MBps':<18} {med('c-fio-MBps'):8.1f} MB/s")
print(f"  {'c-fio-while-reading-MBps':<18} {med('c-fio-while-reading-MBps'):8.1f} MB/s")
print(f"(a) fill / rsync -W wall time: {med('a-fill') / med('a-rsync-W'):.2f} (goal <= 0.5); fill / rsync default: {med('a-fill') / med('a-rsync-default'):.2f}")
print(f"    fill / (rsync -W, then sync): {med('a-fill') / med('a-rsync-W-synced'):.2f}")
if has('a-fill-ram'):
    print(f"    both serving from RAM: fill / rsync -W: {med('a-fill-ram') / med('a-rsync-W-ram'):.2f}")
print(f"(b) nginx+curl+b3sum / fill: {med('b-curl-b3sum') / med('b-fill'):.2f}x faster (goal >= 1.5x)")
fill_rate = total / med('b-fill') / 1e6
print(f"(c) fill write rate {fill_rate:.1f} MB/s = {fill_rate / med('c-fio-MBps'):.2f} of fio's (goal >= 0.8); writer: {backend}")
print(f"    = {fill_rate / med('c-fio-while-reading-MBps'):.2f} of fio's while a reader streams the same volume from the disk")
if any(n == 'c-fill-ram-origin' for n, _ in rows):
    ram_rate = total / med('c-fill-ram-origin') / 1e6
    print(f"    from an origin in RAM (tmpfs): {med('c-fill-ram-origin'):.2f} s, {ram_rate:.1f} MB/s = {ram_rate / med('c-fio-MBps'):.2f} of fio's (goal >= 0.8)")
print(f"(d) 4 sequential fills / prefill to 4: {med('d-sequential4') / med('d-prefill4'):.2f}x")
print(f"peak RSS of the full fill: {med('b-fill-peak-rss-MiB'):.0f} MiB (goal <= 256 MiB for 4 GiB)")
PY
