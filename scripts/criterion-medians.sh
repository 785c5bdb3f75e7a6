#!/usr/bin/env bash
# Prints the median (and its 95% confidence interval) of every criterion benchmark that has
# results under target/criterion, in milliseconds. Run after `cargo bench -p fill-benches`.
set -euo pipefail
cd "$(dirname "$0")/.."
find target/criterion -path '*/new/estimates.json' | sort | while read -r f; do
    name=${f#target/criterion/}
    name=${name%/new/estimates.json}
    python3 - "$f" "$name" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))["median"]
ci = e["confidence_interval"]
print(f"{sys.argv[2]:<40} median {e['point_estimate']/1e6:10.3f} ms  [{ci['lower_bound']/1e6:.3f}, {ci['upper_bound']/1e6:.3f}]")
PY
done
