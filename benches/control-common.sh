# Shared by benches/control-load.sh and benches/portal-load.sh (sourced, not run): builds
# the release `fill-control` and the load generator EXAMPLE, then runs it against a fresh
# `fill-control serve` on SQLite and then on PostgreSQL (initdb'd here in a temp dir), each
# with an ops and a partner user, printing the generator's lines prefixed by the database.
# Loopback only. Installs Debian's postgresql when missing.
#
# usage: control_bench EXAMPLE PORT GENERATOR-ARGS...   (PORT and PORT+1 are used)
control_bench() {
    local example=$1 port=$2
    shift 2
    export PATH="$HOME/.cargo/bin:$PATH"
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq postgresql >/dev/null; }
    PGBIN=$(dirname "$(ls /usr/lib/postgresql/*/bin/initdb | tail -1)")
    cargo build --release --quiet -p fill-control
    cargo build --release --quiet -p fill-benches --example "$example"
    CONTROL=$PWD/target/release/fill-control
    LOAD=$PWD/target/release/examples/$example
    W=$(mktemp -d "/var/tmp/fill-bench-$example.XXXXXX")
    chmod 755 "$W"
    PID=""
    trap 'control_bench_cleanup' EXIT
    control_bench_run "sqlite:$W/control.db" sqlite "$port" "$@"
    chown postgres "$W"
    runuser -u postgres -- "$PGBIN/initdb" -D "$W/pg" -U postgres --auth=trust >/dev/null
    runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -o "-p $((port + 1)) -c listen_addresses=127.0.0.1 -k $W" -l "$W/pg.log" -w start >/dev/null
    control_bench_run "postgres://postgres@127.0.0.1:$((port + 1))/postgres" postgres "$port" "$@"
}

control_bench_cleanup() {
    [ -n "$PID" ] && kill "$PID" 2>/dev/null || true
    [ -d "$W/pg" ] && runuser -u postgres -- "$PGBIN/pg_ctl" -D "$W/pg" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$W"
}

control_bench_run() { # db-url label port generator-args...
    local db=$1 label=$2 port=$3
    shift 3
    echo "a long bench password" | "$CONTROL" user add --db "$db" --email ops@bench.test --role ops --password-stdin 2>/dev/null
    echo "a long bench password" | "$CONTROL" user add --db "$db" --email eng@bench.test --role partner --partner bench --password-stdin 2>/dev/null
    FILL_LOG=warn "$CONTROL" serve --db "$db" --listen "127.0.0.1:$port" 2>>"$W/serve.log" &
    PID=$!
    for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/healthz" && break; sleep 0.1; done
    "$LOAD" "http://127.0.0.1:$port" "$@" 2>&1 | sed "s/^/$label: /"
    kill "$PID"; wait "$PID" 2>/dev/null || true; PID=""
}
