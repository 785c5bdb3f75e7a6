#!/usr/bin/env bash
# Fill from an in-process S3 server (s3s + s3s-fs) vs from fill-server, same data, same run:
# throughput ratio and requests per fill (benches/examples/s3_vs_http.rs).
# usage: benches/s3-vs-http.sh [MIB=512] [ROUNDS=3] ["CONNECTIONS..."="4 16"]
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin fill
for conns in ${3:-4 16}; do
    cargo run --release --quiet -p fill-benches --example s3_vs_http -- "${1:-512}" "${2:-3}" "$conns"
done
