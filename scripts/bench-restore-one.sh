#!/usr/bin/env bash
# Single-Swamp restore beside `restic restore --include`, on one generated data root whose
# repository is about 2 GB (issue 4's target: at least 5x faster). Not part of the test suite.
#
# Generates the root with hydgen, backs it up once with each tool, then restores five Swamps
# picked at random (warm page cache, hyperfine, 10 runs each) by name with hydrabackup and by
# path with restic, and prints a Markdown table of the means and their ratio.
#
#   scripts/bench-restore-one.sh [--size 2200M] [--swamps 20000] [--work DIR] [--keep]
set -euo pipefail

size=2200M swamps=20000 work=/work/benchdata/restore-one keep=0 seed=11
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=${2:?}; shift 2 ;;
    --swamps) swamps=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --seed) seed=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--size SIZE] [--swamps N] [--seed N] [--work DIR] [--keep]" >&2; exit 2 ;;
  esac
done
repo_root=$(cd "$(dirname "$0")/.." && pwd)
for t in restic hyperfine; do
  command -v "$t" >/dev/null || { apt-get update -qq && apt-get install -y -qq restic hyperfine >/dev/null; }
done
(cd "$repo_root" && cargo build --release --bins -q)
bin=${CARGO_TARGET_DIR:-$repo_root/target}/release

rm -rf "$work" && mkdir -p "$work" && cd "$work"
[ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
cp "$bin/hydrabackup" ./hb
export HYDRABACKUP_REPOSITORY=$work/hb-repo HYDRABACKUP_PASSWORD=bench
export RESTIC_REPOSITORY=$work/restic-repo RESTIC_PASSWORD=bench RESTIC_CACHE_DIR=$work/restic-cache
"$bin/hydgen" gen --root data --seed "$seed" --swamps "$swamps" --size "$size" >&2
./hb init -q
./hb backup data -q
restic init -q
(cd data && restic backup -q --host bench .)
./hb show latest --json >show.json
python3 - "$seed" >pick.tsv <<'EOF'
import json, random, sys
rows = [s for s in json.load(open("show.json"))["swamps"] if s.get("name")]
random.seed(int(sys.argv[1]))
for s in random.sample(rows, 5):
    print(s["name"], s["path"], s["size"], sep="\t")
EOF

mean() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["results"][0]["mean"])' "$1"; }
echo "| Swamp (size) | hydrabackup | restic | ratio |"
echo "| --- | ---: | ---: | ---: |"
while IFS=$'\t' read -r name path bytes; do
  hyperfine -N -w 2 -r 10 -p 'rm -rf out-hb' --export-json hb.json \
    "./hb restore latest --target out-hb --swamp $name -q" >/dev/null
  hyperfine -N -w 2 -r 10 -p 'rm -rf out-restic' --export-json restic.json \
    "restic restore latest --target out-restic --include /$path -q" >/dev/null
  cmp "data/$path" "out-hb/$path" && cmp "data/$path" "out-restic/$path"
  a=$(mean hb.json) b=$(mean restic.json)
  python3 -c 'import sys; a,b=map(float,sys.argv[1:3]); print(f"| {sys.argv[3]} B | {a*1000:.0f} ms | {b*1000:.0f} ms | {b/a:.1f}x |")' \
    "$a" "$b" "$bytes"
done <pick.tsv
echo
echo "repositories: hydrabackup $(du -sh hb-repo | cut -f1), restic $(du -sh restic-repo | cut -f1); $(restic version | head -1)"
