#!/usr/bin/env bash
# The portal's pages with a fleet in the database (issue: the partner portal): APPLIANCES
# allocated through the API (500 of them taken to live by their reports), then an ops user
# signed in through the portal fetches REQUESTS fleet pages (a random page of 100) and
# REQUESTS appliance pages, CONCURRENCY at a time, against a fresh `fill-control serve`
# process on SQLite, then on PostgreSQL (started here in a temp dir). Goal: p99 <= 100 ms
# for both pages with 20,000 appliances on this 2-core machine.
#
# usage: benches/portal-load.sh [APPLIANCES=20000] [REQUESTS=2000] [CONCURRENCY=8]
# Loopback only. Needs Debian's postgresql for the second half (installed when missing);
# the setup is benches/control-common.sh's.
set -euo pipefail
cd "$(dirname "$0")/.."
APPLIANCES=${1:-20000}
REQUESTS=${2:-2000}
CONCURRENCY=${3:-8}
. benches/control-common.sh
control_bench portal_load 18702 "$APPLIANCES" "$REQUESTS" "$CONCURRENCY"
