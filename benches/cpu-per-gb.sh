#!/usr/bin/env bash
# CPU per verified gigabyte: a full fill of a seeded dataset from a fill-server on loopback,
# against the sum of its parts measured on the same bytes in the same run:
#   receive: curl GETs every content file from the same server into /dev/null (user + sys);
#   hash:    b3sum --num-threads 1 over the same files (user);
#   write:   fio writes as many bytes O_DIRECT through io_uring, 1 MiB blocks (sys).
# The fill's user + sys per GB divided by the parts' sum is the ratio (goal: <= 1.15).
# Page cache warm (this measures CPU, not the disk): the dataset is read once before.
# Medians of ROUNDS, each round runs all four.
#
# usage: benches/cpu-per-gb.sh [ROUNDS=5] [GIB=1.2] [FILL_ARGS...]
# FILL_ARGS go to `fill run` (e.g. --writer pwrite). CONNS: the origin's max_connections
# (default 8; 1 reads one stream at a time, as curl does). Installs fio and b3sum when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
GIB=${2:-1.2}
shift $(( $# > 2 ? 2 : $# ))
EXTRA=("$@")
export PATH="$HOME/.cargo/bin:$PATH"
source benches/fill-common.sh
need fio fio
need curl curl
need_time
need_b3sum

cargo build --release --quiet --bin fill --bin fill-server
FILL=${FILL_BIN:-$PWD/target/release/fill}   # FILL_BIN: another build to compare
SERVER=$PWD/target/release/fill-server
W=$(mktemp -d /var/tmp/fill-cpu-per-gb.XXXXXX)
PORT=18590
SRV=""
cleanup() { [ -n "$SRV" ] && kill "$SRV" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

seed_origin "$FILL" "$W" "$GIB"
FILL_LOG=warn $SERVER --store "$W/origin" --listen "127.0.0.1:$PORT" 2>"$W/server.log" &
SRV=$!
for _ in $(seq 1 100); do curl -sf -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.1; done
origin_source "http://127.0.0.1:$PORT" 100Gbps "${CONNS:-8}" >"$W/sources.toml"
BYTES=$(du -sb "$W/origin/content" | cut -f1)
FILES=("$W"/origin/content/*)
printf 'url = "http://127.0.0.1:%s/content/%s"\noutput = "/dev/null"\n' \
    $(for f in "${FILES[@]}"; do echo "$PORT $(basename "$f")"; done) >"$W/curl.cfg"
cat "${FILES[@]}" >/dev/null # warm

cpu() { # file written by /usr/bin/time -f "%U %S" -> "user sys"
    tail -1 "$1"
}
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
declare -a F_U F_S F_W C_T B_U O_S
for r in $(seq "$ROUNDS"); do
    rm -rf "$W/app" && mkdir "$W/app"
    /usr/bin/time -f "%U %S %e" -o "$W/t" "$FILL" run --target "$W/target.cat" --store "$W/app" \
        --sources "$W/sources.toml" --capacity 1TB --reserve 1MB "${EXTRA[@]}" >/dev/null 2>"$W/fill.err"
    read -r u s e < <(cpu "$W/t"); F_U+=("$u"); F_S+=("$s"); F_W+=("$e")
    /usr/bin/time -f "%U %S" -o "$W/t" curl -s --config "$W/curl.cfg"
    read -r u s < <(cpu "$W/t"); C_T+=("$(echo "$u + $s" | bc -l)")
    /usr/bin/time -f "%U %S" -o "$W/t" b3sum --num-threads 1 --no-names "${FILES[@]}" >/dev/null
    read -r u s < <(cpu "$W/t"); B_U+=("$u")
    rm -f "$W/fio.dat"
    /usr/bin/time -f "%U %S" -o "$W/t" fio --name=w --filename="$W/fio.dat" --rw=write --bs=1M \
        --size="$BYTES" --direct=1 --ioengine=io_uring --iodepth=8 --output=/dev/null
    read -r u s < <(cpu "$W/t"); O_S+=("$s")
    rm -f "$W/fio.dat"
done
m() { printf '%s\n' "$@" | median; }
fu=$(m "${F_U[@]}"); fs=$(m "${F_S[@]}"); fw=$(m "${F_W[@]}")
ct=$(m "${C_T[@]}"); bu=$(m "${B_U[@]}"); os=$(m "${O_S[@]}")
gb=$(echo "$BYTES / 1000000000" | bc -l)
per() { printf '%.3f' "$(echo "$1 / $gb" | bc -l)"; }
parts=$(echo "$ct + $bu + $os" | bc -l)
fill=$(echo "$fu + $fs" | bc -l)
echo "CPU per verified GB, $(nproc) cores, $ROUNDS rounds, $(printf '%.2f' "$gb") GB, ${CONNS:-8} connections, fill args: ${EXTRA[*]:-(none)}"
echo "fill run         user $(per "$fu") s/GB  sys $(per "$fs") s/GB  total $(per "$fill") s/GB  (wall median ${fw} s; user ${F_U[*]}; sys ${F_S[*]})"
echo "receive (curl)   user+sys $(per "$ct") s/GB   (runs ${C_T[*]})"
echo "hash (b3sum -1)  user $(per "$bu") s/GB   (runs ${B_U[*]})"
echo "write (fio)      sys $(per "$os") s/GB   (runs ${O_S[*]})"
echo "sum of parts     $(per "$parts") s/GB"
printf 'ratio            %.2f (goal <= 1.15)\n' "$(echo "$fill / $parts" | bc -l)"
