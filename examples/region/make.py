#!/usr/bin/env python3
"""A seeded example region for `fill plan`: a target catalog, two regional tiers holding the
popular part of it, a night-time peer, and a site of ten stale appliances. Writes CSV
catalogs (`fill catalog build --csv` turns them into catalogs), sources.toml and site.toml
into the directory given (default: this one). Only the standard library; ids are SHA-256
of a name (any 64 hex digits is a valid id for planning: no content is involved).

usage: make.py [DIR] [--seed N]
"""
import hashlib
import math
import os
import random
import sys

args = [a for a in sys.argv[1:]]
seed = 7
if "--seed" in args:
    i = args.index("--seed")
    seed = int(args[i + 1])
    del args[i : i + 2]
out = args[0] if args else os.path.dirname(os.path.abspath(__file__))
os.makedirs(out, exist_ok=True)
rng = random.Random(seed)

FILES = 3000  # 600 titles x 5 encodes; the last 40 titles are new since the pre-fills
NEW = 200
files = []
for k in range(FILES):
    title, enc = divmod(k, 5)
    # Log-normal sizes around 2.5 GB, 1% above 40 GB are clipped.
    size = int(min(math.exp(rng.gauss(math.log(2.5e9), 0.9)), 40e9))
    # Zipf-like popularity by title; new titles rank among the top 50.
    rank = title + 1 if k < FILES - NEW else (title - (FILES - NEW) // 5) + 1.5
    weight = 1.0 / rank ** 0.9 * (1.0 - 0.15 * enc)
    fid = hashlib.sha256(f"region file {k}".encode()).hexdigest()
    files.append((fid, size, weight, f"title-{title:04}/encode-{enc}.mp4"))
by_pop = sorted(files, key=lambda f: -f[2])
retired = [
    (hashlib.sha256(f"retired file {k}".encode()).hexdigest(), int(rng.uniform(5e8, 5e9)), 0.0,
     f"retired-{k:04}/main.mp4")
    for k in range(300)
]


def write_csv(name, rows):
    with open(os.path.join(out, name), "w") as f:
        f.write("id,size,weight,name\n")
        for fid, size, weight, title in sorted(rows):
            f.write(f"{fid},{size},{weight:.6f},{title}\n")


write_csv("target.csv", files)
write_csv("tier-eu.csv", by_pop[: int(FILES * 0.4)])
write_csv("tier-us.csv", by_pop[: int(FILES * 0.7)])
old = files[: FILES - NEW]
# The night peer: an older catalog, most of the target and some retired files.
write_csv("peer.csv", [f for f in old if rng.random() < 0.6] + retired[:100])
# Ten appliances, pre-filled 2 to 30 days ago: they hold less of the target the longer ago.
appliances = []
for a in range(10):
    days = 2 + a * 3
    keep = max(0.3, 0.95 - days * 0.02)
    held = [f for f in old if rng.random() < keep] + [r for r in retired if rng.random() < 0.3]
    write_csv(f"oca-{a:02}.csv", held)
    appliances.append(f"oca-{a:02}")

PEER = """[[source]]
name = "peer"
kind = "peer"
url = "http://127.0.0.1:1"
cost_per_gib = 0.0
bandwidth = "1Gbps"
window = "02:00-14:00"
catalog = "peer.catalog"

"""
SHARED = """[[source]]
name = "tier-eu"
kind = "tier"
url = "http://127.0.0.1:2"
cost_per_gib = 0.004
bandwidth = "{eu}"
catalog = "tier-eu.catalog"

[[source]]
name = "tier-us"
kind = "tier"
url = "http://127.0.0.1:3"
cost_per_gib = 0.008
bandwidth = "{us}"
catalog = "tier-us.catalog"

[[source]]
name = "origin"
kind = "origin"
url = "http://127.0.0.1:4"
cost_per_gib = 0.02
bandwidth = "{origin}"
"""
with open(os.path.join(out, "sources.toml"), "w") as f:
    f.write("# The region's sources for one appliance (catalogs are built by run.sh).\n")
    f.write(PEER + SHARED.format(eu="1Gbps", us="2Gbps", origin="10Gbps"))
with open(os.path.join(out, "site-sources.toml"), "w") as f:
    f.write("# The site's external sources: the appliances are each other's peers.\n")
    f.write(SHARED.format(eu="2Gbps", us="4Gbps", origin="20Gbps"))

with open(os.path.join(out, "site.toml"), "w") as f:
    f.write('sources = "site-sources.toml"\ntarget = "target.catalog"\npeer_bandwidth = "10Gbps"\n')
    for name in appliances:
        f.write(
            f'\n[[appliance]]\nname = "{name}"\ninventory = "{name}.catalog"\n'
            'capacity = "40TB"\ningress = "10Gbps"\n'
        )
print(f"wrote the example region to {out}")
