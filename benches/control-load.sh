#!/usr/bin/env bash
# Appliances reporting to the control plane (issue: the control plane): APPLIANCES
# allocated through the API, then reports at RATE per second for SECONDS (open loop, 64
# keep-alive connections), against SQLite and then PostgreSQL (started here in a temp dir),
# each with a fresh `fill-control serve` process. Goal: >= 1,000 reports/s with p99 <= 50 ms
# on this 2-core machine (20,000 appliances reporting once a minute is 333/s).
#
# usage: benches/control-load.sh [APPLIANCES=20000] [RATE=1000] [SECONDS=30]
# Loopback only. Needs Debian's postgresql for the second half (installed when missing);
# the setup is benches/control-common.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
APPLIANCES=${1:-20000}
RATE=${2:-1000}
SECONDS_=${3:-30}
. benches/control-common.sh
control_bench control_load 18700 "$APPLIANCES" "$RATE" "$SECONDS_"
