#!/usr/bin/env bash
# The fuzz targets (fuzz/fuzz_targets/, cargo-fuzz on the nightly toolchain), each for a
# time or a number of executions; any single allocation over 300 MiB is a failure
# (-malloc_limit_mb), and the process's RSS is held to 2 GiB (ASan's quarantine alone
# keeps 256 MiB). Prints executions, coverage and crashes per target. A crash leaves its
# input in fuzz/artifacts/<target>/ and fails the script; turn it into a regression test
# (the seeds in fuzz/seeds/ are run first).
#
# usage: scripts/fuzz.sh [--seconds S | --runs N] [--sanitizer address|none] [TARGET...]
#   scripts/fuzz.sh --seconds 20                 # the CI run: every target, 20 s each, ASan
#   scripts/fuzz.sh --runs 10000000 --sanitizer none catalog_raw   # a long run, 3-5x faster
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
limit=(-max_total_time=20)
sanitizer=address
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) limit=(-max_total_time="$2"); shift 2 ;;
        --runs) limit=(-runs="$2"); shift 2 ;;
        --sanitizer) sanitizer=$2; shift 2 ;;
        -h|--help) sed -n 2,12p "$0"; exit 0 ;;
        *) break ;;
    esac
done
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(catalog_raw catalog_zstd outboard sources_toml server_toml site_toml http_request range_response)
fi
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
cd fuzz
dir=(--target-dir "target/$sanitizer")
cargo +nightly fuzz build -O -s "$sanitizer" "${dir[@]}" >/dev/null 2>&1 || cargo +nightly fuzz build -O -s "$sanitizer" "${dir[@]}"
printf '%-16s %12s %8s %8s  %s\n' target executions cov features result
failed=0
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    log=$(mktemp)
    if cargo +nightly fuzz run -O -s "$sanitizer" "${dir[@]}" "$t" "corpus/$t" -- "${limit[@]}" \
        -rss_limit_mb=2048 -malloc_limit_mb=300 -print_final_stats=1 >"$log" 2>&1; then
        result=ok
    else
        result="CRASH: $(ls -t "artifacts/$t" 2>/dev/null | head -1)"
        failed=1
        grep -m5 -E "panicked|ERROR|SUMMARY" "$log" >&2 || tail -20 "$log" >&2
    fi
    runs=$(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$log" | awk '{print $2}')
    cov=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | grep -o 'cov: [0-9]*' | awk '{print $2}')
    ft=$(grep -E '^#[0-9]+.*(DONE|pulse|NEW|REDUCE)' "$log" | tail -1 | grep -o 'ft: [0-9]*' | awk '{print $2}')
    printf '%-16s %12s %8s %8s  %s\n' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}" "$result"
    rm -f "$log"
done
exit $failed
