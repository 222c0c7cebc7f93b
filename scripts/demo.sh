#!/usr/bin/env bash
# The main job: build hydrabackup, generate a sample HydrAIDE data root, back it up, let a day of
# churn happen, back it up again (incrementally), verify every byte, restore both the whole root
# and one Swamp, and prove the restore byte-identical and loadable; then forget the first snapshot,
# prune, and verify and restore again.
#
#   scripts/demo.sh [--swamps N] [--size 200M] [--seed N] [--keep]
set -euo pipefail
cd "$(dirname "$0")/.."

swamps=2000 size=200M seed=42 keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --swamps) swamps=$2; shift 2 ;;
    --size) size=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--swamps N] [--size 200M] [--seed N] [--keep]" >&2; exit 2 ;;
  esac
done

start=$SECONDS
# Each phase line says how long the run has taken so far.
step() { echo; echo "== [$((SECONDS - start)) s] $*"; }

step "building (release): the first build compiles every dependency, about 10 minutes on 2 cores
   (cargo shows its progress below); later runs take seconds"
bash scripts/system-deps.sh build
cargo build --release --bins
hb=$PWD/target/release/hydrabackup
gen=$PWD/target/release/hydgen

work=$(mktemp -d "${TMPDIR:-/tmp}/hydrabackup-demo.XXXXXX")
if [ "$keep" = 0 ]; then trap 'rm -rf "$work"' EXIT; else echo "work folder: $work"; fi
export HYDRABACKUP_REPOSITORY=$work/repo
printf 'demo-password-%s\n' "$seed" > "$work/password"
export HYDRABACKUP_PASSWORD_FILE=$work/password

step "generating a HydrAIDE data root: $swamps swamps, ~$size (V3 with some V2 and V1)"
"$gen" gen --root "$work/data" --seed "$seed" --swamps "$swamps" --size "$size" --v2-percent 10 --v1-percent 3

step "init"
"$hb" init

step "first backup"
"$hb" backup "$work/data" --tag demo

step "one day of churn: appends, compactions, new and deleted swamps"
"$gen" churn --root "$work/data" --seed "$((seed + 1))"

step "second backup (incremental: unchanged swamps are not read, appended ones only from their tail)"
"$hb" backup "$work/data" --tag demo
cp -a "$work/data" "$work/captured"   # nothing writes now: this is the captured state

step "snapshots"
"$hb" snapshots

step "verify, reading every byte"
"$hb" verify --read-data

step "restore the latest snapshot"
"$hb" restore latest --target "$work/restore"
diff -r "$work/captured" "$work/restore"
echo "restored root is byte-identical to the source"
"$gen" check --root "$work/restore"

step "restore a single swamp by name"
name=$("$hb" show latest --json | python3 -c 'import json,sys; s=json.load(sys.stdin)["swamps"]; print(next(x["name"] for x in s if x["name"] and x["format"]==3))')
"$hb" restore latest --target "$work/one" --swamp "$name"
files=$(find "$work/one" -type f | wc -l)
[ "$files" -eq 1 ] || { echo "expected 1 restored file, got $files" >&2; exit 1; }
rel=$(cd "$work/one" && find . -type f)
cmp "$work/one/$rel" "$work/captured/$rel"
echo "swamp $name restored alone and byte-identical ($rel)"

step "retention: forget the first snapshot (keep the last one), prune its data, verify again"
"$hb" forget --keep-last 1 --prune --yes
"$hb" verify --read-data
rm -rf "$work/restore" && "$hb" restore latest --target "$work/restore" -q
diff -r "$work/captured" "$work/restore"
echo "after prune the latest snapshot still restores byte-identical"

step "done: backup, incremental backup, full verify, restores, forget and prune all succeeded"
