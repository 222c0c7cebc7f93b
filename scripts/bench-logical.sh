#!/usr/bin/env bash
# Logical capture (issue 15): repository growth per day and CPU per mode (file, logical, auto)
# beside restic, on the peers benchmark data. Usage:
#   scripts/bench-logical.sh [--modes "file logical auto"] [--no-restic] [--out DIR]
#       [--swamps N --size S]   (default: the peers data, 20000 Swamps, 1600M)
# Needs the release binaries (cargo build --release --bins) and restic. Writes DIR/results.tsv:
# mode, step, wall s, CPU s (user+sys), peak RSS KiB, repository bytes after the step.
# Data lives under /work/benchdata/logical and is deleted at the end (the source with --clean).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-${CARGO_TARGET_DIR:-$here/target}/release}
data=${DATA:-/work/benchdata/logical}
modes="file logical auto"
restic=1
clean=0
out=$data/out
swamps=20000 gsize=1600M
while [ $# -gt 0 ]; do
    case $1 in
        --modes) modes=$2; shift 2 ;;
        --no-restic) restic=0; shift ;;
        --clean) clean=1; shift ;;
        --out) out=$2; shift 2 ;;
        --swamps) swamps=$2; shift 2 ;;
        --size) gsize=$2; shift 2 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
done
mkdir -p "$data" "$out"
tsv=$out/results.tsv
[ -f "$tsv" ] || printf 'mode\tstep\twall_s\tcpu_s\trss_kib\trepo_bytes\tload1\n' >"$tsv"
export HYDRABACKUP_PASSWORD=bench HYDRABACKUP_CACHE_DIR=$data/cache RESTIC_PASSWORD=bench
export RESTIC_CACHE_DIR=$data/restic-cache

src=$data/src
if [ ! -d "$src" ]; then
    "$bin/hydgen" gen --seed 7 --swamps "$swamps" --size "$gsize" --v2-percent 10 --v1-percent 3 --root "$src" >/dev/null
fi

size() { du -sb "$1" | cut -f1; }
# measure MODE STEP REPO CMD...: runs CMD under /usr/bin/time, appends a row.
measure() {
    local mode=$1 step=$2 repo=$3
    shift 3
    local t=$out/time.$mode.$step
    /usr/bin/time -f '%e %U %S %M' -o "$t" "$@" >"$out/log.$mode.$step" 2>&1 || {
        echo "$mode $step failed: $(tail -3 "$out/log.$mode.$step")" >&2
    }
    read -r wall user sys rss <"$t"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$mode" "$step" "$wall" \
        "$(echo "scale=2; ($user + $sys)/1" | bc | sed "s/^\./0./")" "$rss" "$(size "$repo")" \
        "$(cut -d' ' -f1 /proc/loadavg)" >>"$tsv"
}

for mode in $modes; do
    work=$data/work repo=$data/repo-$mode
    rm -rf "$work" "$repo" "$data/cache" "$data/restore"
    cp -a "$src" "$work"
    hb=("$bin/hydrabackup" -r "$repo")
    # With PERF=1 the logical mode's initial backup and restore are profiled (perf at 199 Hz).
    prof=()
    [ "${PERF:-0}" = 1 ] && [ "$mode" = logical ] && prof=(perf record -F 199 -g -o)
    "${hb[@]}" init --mode "$mode" >/dev/null
    sync
    measure "$mode" initial "$repo" ${prof[@]+"${prof[@]}" "$out/perf.backup.data"} "${hb[@]}" backup "$work" --json
    "${hb[@]}" show latest --json >"$out/show.initial.$mode.json"
    "$bin/hydgen" churn --seed 8 --root "$work" >"$out/churn8.$mode"
    measure "$mode" churn "$repo" "${hb[@]}" backup "$work" --json
    "${hb[@]}" show latest --json >"$out/show.churn.$mode.json"
    "$bin/hydgen" churn --seed 10 --append-percent 0 --compact-percent 5 --new-percent 0 \
        --delete-percent 0 --root "$work" >"$out/churn10.$mode"
    measure "$mode" compaction "$repo" "${hb[@]}" backup "$work" --json
    "${hb[@]}" show latest --json >"$out/show.compaction.$mode.json"
    measure "$mode" restore "$repo" ${prof[@]+"${prof[@]}" "$out/perf.restore.data"} "${hb[@]}" restore latest --target "$data/restore"
    rm -rf "$data/restore" "$work" "$repo" "$data/cache"
done

if [ "$restic" = 1 ]; then
    repo=$data/repo-restic
    rm -rf "$repo" "$data/restore" "$RESTIC_CACHE_DIR"
    restic init -r "$repo" >/dev/null
    sync
    measure restic initial "$repo" env GOMAXPROCS=2 restic -r "$repo" backup "$src"
    measure restic restore "$repo" env GOMAXPROCS=2 restic -r "$repo" restore latest --target "$data/restore"
    rm -rf "$data/restore" "$repo" "$RESTIC_CACHE_DIR"
fi
[ "$clean" = 1 ] && rm -rf "$src"
cat "$tsv"
