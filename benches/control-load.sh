#!/usr/bin/env bash
# Appliances reporting to the control plane (issue: the control plane): APPLIANCES
# allocated through the API, then reports at RATE per second for SECONDS (open loop, 64
# keep-alive connections), against SQLite and then PostgreSQL (started here in a temp dir),
# each with a fresh `fill-control serve` process. Goal: >= 1,000 reports/s with p99 <= 50 ms
# on this 2-core machine (20,000 appliances reporting once a minute is 333/s).
#
# usage: benches/control-load.sh [APPLIANCES=20000] [RATE=1000] [SECONDS=30]
# Loopback only. Needs Debian's postgresql for the second half (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
APPLIANCES=${1:-20000}
RATE=${2:-1000}
SECONDS_=${3:-30}
export PATH="$HOME/.cargo/bin:$PATH"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")

cargo build --release --quiet -p fill-control
cargo build --release --quiet -p fill-benches --example control_load
CONTROL=$PWD/target/release/fill-control
LOAD=$PWD/target/release/examples/control_load
W=$(mktemp -d /var/tmp/fill-bench-control.XXXXXX)
chmod 755 "$W"
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    [ -d "$W/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT
PORT=18700

run() { # db-url label
    echo "a long bench password" | "$CONTROL" user add --db "$1" --email ops@bench.test --role ops --password-stdin 2>/dev/null
    echo "a long bench password" | "$CONTROL" user add --db "$1" --email eng@bench.test --role partner --partner bench --password-stdin 2>/dev/null
    FILL_LOG=warn "$CONTROL" serve --db "$1" --listen "127.0.0.1:$PORT" 2>>"$W/serve.log" &
    PID=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
    echo "$2: $("$LOAD" "http://127.0.0.1:$PORT" "$APPLIANCES" "$RATE" "$SECONDS_")"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

run "sqlite:$W/control.db" sqlite
chown postgres "$W"
runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg" -U postgres --auth=trust >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -o "-p 18701 -c listen_addresses=127.0.0.1 -k $W" -l "$W/pg.log" -w start >/dev/null
run "postgres://postgres@127.0.0.1:18701/postgres" postgres
