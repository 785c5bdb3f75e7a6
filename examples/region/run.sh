#!/usr/bin/env bash
# The planner's worked example (docs/planner.md): builds the seeded example region in a temp
# directory, then plans one stale appliance (optimal vs escalation) and the site of ten.
# usage: examples/region/run.sh [--json]
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release --quiet --bin fill
FILL=$PWD/target/release/fill
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
python3 examples/region/make.py "$W" >/dev/null
for csv in "$W"/*.csv; do
    "$FILL" catalog build --csv "$csv" --out "${csv%.csv}.catalog" >/dev/null
done
START=2026-11-28T00:00:00Z
echo "== one appliance (oca-09, pre-filled 29 days ago), 8 hours from midnight UTC"
"$FILL" plan --target "$W/target.catalog" --inventory "$W/oca-09.catalog" \
    --sources "$W/sources.toml" --capacity 40TB --ingress 10Gbps --deadline 8h \
    --start "$START" --explain "$@"
echo
echo "== the site of ten appliances, 48 hours"
"$FILL" plan --site "$W/site.toml" --deadline 48h --start "$START" --explain "$@"
