#!/usr/bin/env bash
# A second, independent S3 implementation: moto's server (PyPI), started here on loopback,
# runs the same scenario as the in-process s3s tests: publish a store to a bucket (created
# first), fill an appliance from it, check every file against its id; publish again (nothing
# to upload); then a corrupted object is caught. Exits non-zero on any failure.
#
# usage: scripts/s3-moto.sh     (CI runs it; needs python3 with venv, and network to PyPI)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

command -v python3 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq python3 python3-venv >/dev/null; }
command -v curl >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }

W=$(mktemp -d)
MOTO_PID=
cleanup() {
    [ -n "$MOTO_PID" ] && kill "$MOTO_PID" 2>/dev/null || true
    rm -rf "$W"
}
trap cleanup EXIT

if ! python3 -m venv "$W/venv" >/dev/null 2>&1; then
    apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null
    python3 -m venv "$W/venv"
fi
"$W/venv/bin/pip" install -q 'moto[server]' >/dev/null
cargo build --quiet --bin fill
FILL=$PWD/target/debug/fill

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$W/venv/bin/moto_server" -H 127.0.0.1 -p "$PORT" >"$W/moto.log" 2>&1 &
MOTO_PID=$!
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$PORT/" && break
    sleep 0.2
done
curl -sf -o /dev/null "http://127.0.0.1:$PORT/" || { cat "$W/moto.log"; exit 1; }

export AWS_ACCESS_KEY_ID=moto-test AWS_SECRET_ACCESS_KEY=moto-test-secret AWS_REGION=us-east-1
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ALLOW_HTTP=true AWS_EC2_METADATA_DISABLED=true
# The bucket first (moto takes unsigned requests).
curl -sf -X PUT -o /dev/null "http://127.0.0.1:$PORT/fill-moto"

# An origin store: a few media-sized files, one over the 16 MiB multipart threshold.
mkdir -p "$W/src"
for i in 1 2 3 4; do head -c $((i * 5 * 1024 * 1024 + i * 1000)) /dev/urandom >"$W/src/title$i.mp4"; done
"$FILL" store import --store "$W/origin" "$W/src" >/dev/null

"$FILL" store publish --store "$W/origin" --to s3://fill-moto/eu --verify
"$FILL" store publish --store "$W/origin" --to s3://fill-moto/eu --json >"$W/again.json"
grep -q '"uploaded": 0' "$W/again.json" || { echo "second publish uploaded again"; cat "$W/again.json"; exit 1; }

cat >"$W/sources.toml" <<TOML
[[source]]
name = "moto"
kind = "origin"
url = "s3://fill-moto/eu"
endpoint = "http://127.0.0.1:$PORT"
allow_http = true
region = "us-east-1"
cost_per_gib = 0.02
bandwidth = "10Gbps"
TOML
mkdir -p "$W/app" "$W/app2"   # new, empty disks (a path that is not a store is refused)
"$FILL" run --target "$W/origin/catalog" --store "$W/app" --sources "$W/sources.toml" --capacity 1GB
"$FILL" store verify --store "$W/app"
command -v b3sum >/dev/null 2>&1 || cargo install b3sum --locked --quiet
for f in "$W"/src/*; do
    id=$(b3sum --no-names "$f")
    cmp -s "$f" "$W/app/content/$id" || { echo "$f differs from content/$id"; exit 1; }
done
test "$(ls "$W/app/content" | wc -l)" -eq 4

# Corrupt one object in the bucket (through moto's API): the only origin sent bad data,
# so the run must fail loudly.
id=$(ls "$W/origin/content" | head -1)
python3 - "$W/origin/content/$id" "$W/bad" <<'PY'
import sys
b = bytearray(open(sys.argv[1], "rb").read())
b[len(b) // 2] ^= 1
open(sys.argv[2], "wb").write(b)
PY
"$W/venv/bin/python" - "$PORT" "$id" "$W/bad" <<'PY'
import sys, boto3
port, key, path = sys.argv[1], sys.argv[2], sys.argv[3]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
s3.put_object(Bucket="fill-moto", Key=f"eu/content/{key}", Body=open(path, "rb").read())
PY
if "$FILL" run --target "$W/origin/catalog" --store "$W/app2" --sources "$W/sources.toml" --capacity 1GB 2>"$W/err"; then
    echo "a corrupted object went unnoticed"; exit 1
fi
grep -q "origin moto sent bad data for $id" "$W/err" || { cat "$W/err"; exit 1; }
echo "moto: publish, fill, re-publish and a corrupted object: all as expected"
