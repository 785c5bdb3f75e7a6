# Shared by the fill benchmarks (sourced, not run): installing the tools they compare
# against, and the seeded origin most of them fill from.

# need CMD PACKAGE: installs Debian's PACKAGE when CMD is missing.
need() { command -v "$1" >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }; }
# /usr/bin/time (GNU time, for user/sys and peak RSS) when missing.
need_time() { [ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time >/dev/null; }; }
# b3sum from crates.io when missing.
need_b3sum() { command -v b3sum >/dev/null 2>&1 || cargo install b3sum --locked --quiet; }

# seed_origin FILL DIR GIB: the seeded dataset (`fill bench dataset`, seed 42) in DIR/ds,
# its target imported into the store DIR/origin, and its catalog DIR/target.cat.
seed_origin() {
    local fill=$1 dir=$2 gib=$3
    "$fill" bench dataset --root "$dir/ds" --total-gib "$gib" --seed 42 >/dev/null
    "$fill" -q store import --store "$dir/origin" "$dir/ds/target" >/dev/null
    "$fill" catalog build --store "$dir/origin" --popularity "$dir/ds/popularity.csv" \
        --out "$dir/target.cat" >/dev/null
}

# origin_source URL BANDWIDTH CONNECTIONS: a sources file's entry for that origin.
origin_source() {
    cat <<TOML
[[source]]
name = "origin"
kind = "origin"
url = "$1"
cost_per_gib = 0.02
bandwidth = "$2"
max_connections = $3
TOML
}
