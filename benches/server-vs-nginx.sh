#!/usr/bin/env bash
# fill-server against nginx (sendfile on) serving the same store directory, same load tool
# (wrk), same run, alternating. "fill-server" runs with its defaults (on loopback, bodies
# copied through the process); "fill-sendfile" with `sendfile = "always"`. 1 MiB ranged GETs at random 1 MiB-aligned offsets of random
# files: concurrency 64 (throughput, CPU per GB) and concurrency 1 (latency p50/p99).
#
# usage: benches/server-vs-nginx.sh [ROUNDS=3] [SECONDS=10] [FILES=16] [FILE_MIB=64]
# Installs nginx and wrk from Debian's packages when missing. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
FILES=${3:-16}
FILE_MIB=${4:-64}

source benches/fill-common.sh
need nginx nginx-light
need wrk wrk

cargo build --release --quiet --bin fill --bin fill-server
FILL=target/release/fill
SERVER=target/release/fill-server

work=$(mktemp -d /tmp/fill-bench-server.XXXXXX)
# nginx workers run as an unprivileged user: let them read the store.
chmod 755 "$work"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null || true
    sleep 0.5
    rm -rf "$work"
}
trap cleanup EXIT

# The store: seeded incompressible files.
mkdir -p "$work/src"
python3 - "$work/src" "$FILES" "$FILE_MIB" <<'PY'
import hashlib, os, sys
d, n, mib = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(n):
    with open(os.path.join(d, f"f{i}"), "wb") as f:
        for b in range(mib):
            f.write(hashlib.shake_128(f"bench {i} {b}".encode()).digest(1 << 20))
PY
$FILL store import --store "$work/store" "$work/src" >/dev/null
rm -rf "$work/src"
ls "$work/store/content" > "$work/ids"
# Warm the page cache: this measures the servers, not the disk.
cat "$work/store/content/"* > /dev/null

NGINX_PORT=18480
FILL_PORT=18481
COPY_PORT=18482
cat > "$work/nginx.conf" <<CONF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    types { }
    default_type application/octet-stream;
    server {
        listen 127.0.0.1:$NGINX_PORT;
        root $work/store;
    }
}
CONF
nginx -c "$work/nginx.conf" -p "$work"
FILL_LOG=warn $SERVER --store "$work/store" --listen "127.0.0.1:$FILL_PORT" 2>"$work/fill-server.log" &
pids+=($!)
fill_pid=$!
# The same server sending bodies with sendfile(2) even on loopback.
echo 'sendfile = "always"' > "$work/sendfile.toml"
FILL_LOG=warn $SERVER --store "$work/store" --listen "127.0.0.1:$COPY_PORT" --config "$work/sendfile.toml" 2>"$work/fill-sendfile.log" &
pids+=($!)
sendfile_pid=$!
sleep 1

# wrk: random file, random 1 MiB-aligned range.
{
    echo "local ids = {"
    sed 's/.*/  "&",/' "$work/ids"
    echo "}"
    cat <<LUA
local blocks = $FILE_MIB
math.randomseed(42)
request = function()
  local id = ids[math.random(#ids)]
  local b = math.random(blocks) - 1
  local first = b * 1048576
  return wrk.format("GET", "/content/" .. id, { ["Range"] = "bytes=" .. first .. "-" .. (first + 1048575) })
end
LUA
} > "$work/ranges.lua"

# CPU seconds (user + system) of a set of pids, from /proc.
cpu_of() {
    local total=0 p
    for p in "$@"; do
        [ -r "/proc/$p/stat" ] || continue
        total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat")))
    done
    echo "$total"
}
nginx_pids() { pgrep -f "nginx: (master|worker)" | tr '\n' ' '; }
TICKS=$(getconf CLK_TCK)

# One wrk run: prints "rps gbps cpu_s_per_gb p50_ms p99_ms".
run() {
    local name=$1 port=$2 conns=$3 threads=$4
    local procs
    case $name in
        nginx) procs=$(nginx_pids) ;;
        fill-server) procs=$fill_pid ;;
        *) procs=$sendfile_pid ;;
    esac
    # shellcheck disable=SC2086
    local c0; c0=$(cpu_of $procs)
    wrk -t"$threads" -c"$conns" -d"${SECS}s" --latency -s "$work/ranges.lua" "http://127.0.0.1:$port" > "$work/wrk.out"
    # shellcheck disable=SC2086
    local c1; c1=$(cpu_of $procs)
    python3 - "$work/wrk.out" "$((c1 - c0))" "$TICKS" "$SECS" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
ticks, hz, secs = int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
def ms(label):
    m = re.search(rf"^\s*{label}%\s+([\d.]+)(us|ms|s)", text, re.M)
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
reqs = int(re.search(r"(\d+) requests in", text).group(1))
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
if errors:
    sys.exit(f"wrk saw {errors.group(1)} non-2xx answers")
gb = reqs * 1048576 / 1e9
cpu = ticks / hz
print(f"{reqs / secs:.1f} {gb / secs:.3f} {cpu / gb if gb else 0:.3f} {ms(50):.3f} {ms(99):.3f}")
PY
}

: > "$work/results"
for round in $(seq 1 "$ROUNDS"); do
    for name in nginx fill-server fill-sendfile; do
        case $name in
            nginx) port=$NGINX_PORT ;;
            fill-server) port=$FILL_PORT ;;
            *) port=$COPY_PORT ;;
        esac
        echo "c64 $name $(run "$name" "$port" 64 2)" >> "$work/results"
        echo "c1 $name $(run "$name" "$port" 1 1)" >> "$work/results"
        tail -2 "$work/results" | sed "s/^/round $round: /" >&2
    done
done

python3 - "$work/results" "$ROUNDS" "$SECS" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
def med(conc, name, col):
    return statistics.median(float(r[col]) for r in rows if r[0] == conc and r[1] == name)
print(f"\n1 MiB ranged GETs over loopback, wrk, {sys.argv[2]} alternating rounds of {sys.argv[3]} s, medians")
print(f"{'':18}{'req/s':>10}{'GB/s':>8}{'CPU s/GB':>10}{'p50 ms':>9}{'p99 ms':>9}")
for conc in ["c64", "c1"]:
    for name in ["nginx", "fill-server", "fill-sendfile"]:
        print(f"{conc + ' ' + name:18}{med(conc, name, 2):>10.1f}{med(conc, name, 3):>8.3f}{med(conc, name, 4):>10.3f}{med(conc, name, 5):>9.3f}{med(conc, name, 6):>9.3f}")
for conc in ["c64", "c1"]:
    for name in ["fill-server", "fill-sendfile"]:
        ratio = med(conc, name, 2) / med(conc, "nginx", 2)
        print(f"{conc}: {name} / nginx throughput = {ratio:.2f}x")
PY
