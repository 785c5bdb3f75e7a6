#!/usr/bin/env bash
# Peak RSS of fill and fill-server on hostile inputs (goal: each <= 300 MiB), measured with
# /usr/bin/time -v (fill) and VmHWM (fill-server). Loopback only; everything in a temp dir.
#
# usage: scripts/hostile-rss.sh        (builds release first; needs zstd, python3, curl)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin fill --bin fill-server
FILL=$PWD/target/release/fill
SERVER=$PWD/target/release/fill-server
command -v zstd >/dev/null || { apt-get update -qq && apt-get install -y -qq zstd >/dev/null; }
W=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$W"; }
trap cleanup EXIT

rows=()
measure() { # label, command...
    local label=$1; shift
    /usr/bin/time -v "$@" >"$W/out" 2>"$W/err" || true
    local kib code err
    kib=$(grep "Maximum resident set size" "$W/err" | awk '{print $NF}')
    code=$(grep "Exit status" "$W/err" | awk '{print $NF}')
    err=$(grep -m1 "^error" "$W/err" | cut -c1-110 || true)
    rows+=("$(printf '| %s | %d MiB | %s | %s |' "$label" $((kib / 1024)) "$code" "${err:-}")")
}

# A store with a few files, and its catalog.
mkdir -p "$W/src"
for i in 1 2 3; do head -c $((i * 300000)) /dev/urandom > "$W/src/f$i"; done
$FILL store import --store "$W/store" "$W/src" >/dev/null
CAT=$W/store/catalog

# 1. A zstd bomb: 1 GiB of zeros behind a catalog header, in a few tens of KB.
python3 - "$W/bomb.raw" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"FILLCAT\0" + (1).to_bytes(4, "little") + bytes(52))
    f.truncate(1 << 30)
PY
zstd -q -19 --rm "$W/bomb.raw" -o "$W/bomb.catalog"
measure "catalog show: zstd bomb ($(stat -c %s "$W/bomb.catalog") B -> 1 GiB)" $FILL catalog show "$W/bomb.catalog"
measure "delta --target zstd bomb" $FILL delta --target "$W/bomb.catalog" --store "$W/store" --capacity 1TB

# 2. A raw catalog whose header claims 2^32-1 entries.
python3 - "$W/huge-header.catalog" <<'PY'
import sys
with open(sys.argv[1], "wb") as f:
    f.write(b"FILLCAT\0" + (1).to_bytes(4, "little") + bytes(4) + (2**32 - 1).to_bytes(8, "little") + bytes(40))
PY
measure "catalog show: header claims 2^32-1 entries" $FILL catalog show "$W/huge-header.catalog"

# 3. Endless config files.
measure "run --sources /dev/zero" $FILL run --target "$CAT" --store "$W/store" --sources /dev/zero --capacity 1TB
measure "plan --deadline 3650000d" $FILL plan --target "$CAT" --store "$W/store" --sources /dev/zero --capacity 1TB --deadline 3650000d

# 4. A peer whose /catalog never ends (chunked zeros), beside a good origin (file://).
python3 - > "$W/endless.port" <<'PY' &
import socket, threading, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 0)); s.listen(16)
print(s.getsockname()[1], flush=True)
chunk = b"10000\r\n" + bytes(0x10000) + b"\r\n"
def serve(c):
    try:
        c.recv(65536)
        c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(1 << 15):   # at most 2 GiB
            c.sendall(chunk)
    except OSError:
        pass
    finally:
        c.close()
for _ in range(16):
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
PY
PIDS+=($!)
sleep 0.5
cat > "$W/sources.toml" <<TOML
[[source]]
name = "endless"
kind = "peer"
url = "http://127.0.0.1:$(cat "$W/endless.port")"
cost_per_gib = 0.0
bandwidth = "10Gbps"

[[source]]
name = "origin"
kind = "origin"
url = "file://$W/store"
cost_per_gib = 0.02
bandwidth = "10Gbps"
TOML
mkdir -p "$W/app"
measure "run: a peer's endless /catalog" $FILL run --target "$CAT" --store "$W/app" --sources "$W/sources.toml" --capacity 1TB

# 5. fill-server: 1,100 connections from one address, then 2,000 requests with 16 KiB heads.
$SERVER --store "$W/store" --listen 127.0.0.1:18650 2>/dev/null &
SPID=$!; PIDS+=($SPID)
for _ in $(seq 1 50); do curl -sf -o /dev/null http://127.0.0.1:18650/healthz && break; sleep 0.1; done
python3 - <<'PY'
import socket, time
held = []
for _ in range(1100):
    try:
        held.append(socket.create_connection(("127.0.0.1", 18650)))
    except OSError:
        break
t = time.time()
o = socket.create_connection(("127.0.0.1", 18650), source_address=("127.0.0.2", 0))
o.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
o.recv(100)
print(f"  another address answered in {1000 * (time.time() - t):.1f} ms while one held 1,100", flush=True)
for _ in range(2000):
    c = socket.create_connection(("127.0.0.1", 18650), source_address=("127.0.0.3", 0))
    c.sendall(b"GET /catalog HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 16000 + b"\r\n\r\n")
    c.close()
PY
rows+=("$(printf '| fill-server: 1,100 connections from one address, 2,000 16 KB heads | %d MiB | (running) | |' $(( $(grep VmHWM /proc/$SPID/status | awk '{print $2}') / 1024 )))")

echo
echo "| command and hostile input | peak RSS | exit | first error line |"
echo "|---|---|---|---|"
printf '%s\n' "${rows[@]}"
