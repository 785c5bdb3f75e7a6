#!/usr/bin/env bash
# The portal's pages with a fleet in the database (issue: the partner portal): APPLIANCES
# allocated through the API (500 of them taken to live by their reports), then an ops user
# signed in through the portal fetches REQUESTS fleet pages (a random page of 100) and
# REQUESTS appliance pages, CONCURRENCY at a time, against a fresh `fill-control serve`
# process on SQLite, then on PostgreSQL (started here in a temp dir). Goal: p99 <= 100 ms
# for both pages with 20,000 appliances on this 2-core machine.
#
# usage: benches/portal-load.sh [APPLIANCES=20000] [REQUESTS=2000] [CONCURRENCY=8]
# Loopback only. Needs Debian's postgresql for the second half (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
APPLIANCES=${1:-20000}
REQUESTS=${2:-2000}
CONCURRENCY=${3:-8}
export PATH="$HOME/.cargo/bin:$PATH"
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")

cargo build --release --quiet -p fill-control
cargo build --release --quiet -p fill-benches --example portal_load
CONTROL=$PWD/target/release/fill-control
LOAD=$PWD/target/release/examples/portal_load
W=$(mktemp -d /var/tmp/fill-bench-portal.XXXXXX)
chmod 755 "$W"
PID=""
cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    [ -d "$W/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$W"
}
trap cleanup EXIT
PORT=18702

run() { # db-url label
    echo "a long bench password" | "$CONTROL" user add --db "$1" --email ops@bench.test --role ops --password-stdin 2>/dev/null
    echo "a long bench password" | "$CONTROL" user add --db "$1" --email eng@bench.test --role partner --partner bench --password-stdin 2>/dev/null
    FILL_LOG=warn "$CONTROL" serve --db "$1" --listen "127.0.0.1:$PORT" 2>>"$W/serve.log" &
    PID=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
    "$LOAD" "http://127.0.0.1:$PORT" "$APPLIANCES" "$REQUESTS" "$CONCURRENCY" 2>&1 | sed "s/^/$2: /"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}

run "sqlite:$W/control.db" sqlite
chown postgres "$W"
runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg" -U postgres --auth=trust >/dev/null
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -o "-p 18703 -c listen_addresses=127.0.0.1 -k $W" -l "$W/pg.log" -w start >/dev/null
run "postgres://postgres@127.0.0.1:18703/postgres" postgres
