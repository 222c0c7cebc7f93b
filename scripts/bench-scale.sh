#!/usr/bin/env bash
# Memory and time against the number of Swamps (`scripts/bench-peers.sh --scale` runs this).
# For each count, hydgen writes a data root of that many small Swamps (hydgen's smallest: ~1 KB
# average target, files of 0.2-2 KB apart from 10% medium and 1% large ones scaled down with
# them; in HydrAIDE's layout each file sits in a hashed folder, so the 1,000,000-Swamp root is
# ~1.9 GB of file data but ~9 GB on disk, its 4 KB blocks and ~630,000 folders: check `df`
# first), and each tool makes an initial backup, an unchanged re-backup and a restore of one
# Swamp, each measured with /usr/bin/time (wall, user+sys CPU, peak RSS; the 1-minute load
# average is recorded beside). Writes benches/scale.tsv, benches/scale-rss.png (peak RSS against
# Swamps) and the marked scale block of benches/RESULTS.md. Tool drivers:
# scripts/bench/tools.sh. Not part of the test suite.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/bench-scale.sh [options]     (or: scripts/bench-peers.sh --scale [options])

  --counts LIST   Swamp counts (default 10000,100000,1000000)
  --tools LIST    from hydrabackup,restic (default both)
  --seed N        hydgen seed (default 7)
  --work DIR      scratch folder (default /work/benchdata/scale; emptied before and after)
  --out DIR       where scale.tsv, the chart and RESULTS.md go (default benches)
  --no-build      do not run `cargo build --release --bins` first
  --keep          keep the scratch folder
  --roots DIR     keep the hydgen roots in DIR/<count> and reuse one made by an earlier
                  (or concurrent, finished) run with the same seed; not deleted
                  (default: inside --work, deleted)
  --append        keep the rows of other counts already in scale.tsv (the report shows all)
  --report-only   measure nothing: the chart and RESULTS.md block from scale.tsv as it is
  --gen-only      only write the roots: with --roots and its own --work, e.g. the 1M root while
                  a second run measures the smaller counts (it waits for a root being written)
EOF
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"
counts=10000,100000,1000000 tools=hydrabackup,restic seed=7 work=/work/benchdata/scale
out=benches build=1 keep=0 roots='' gen_only=0 append=0 report_only=0
cmdline="scripts/bench-scale.sh $*"
while [ $# -gt 0 ]; do
  case "$1" in
    --counts) counts=${2:?}; shift 2 ;;
    --tools) tools=${2:?}; shift 2 ;;
    --seed) seed=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    --keep) keep=1; shift ;;
    --roots) roots=${2:?}; shift 2 ;;
    --gen-only) gen_only=1; shift ;;
    --append) append=1; shift ;;
    --report-only) report_only=1 build=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$work" in /|/work|/work/|/tmp|/tmp/|"$repo_root"*) echo "refusing --work $work" >&2; exit 2 ;; esac
case "$roots" in "$work"/*) echo "--roots must lie outside --work (emptied first)" >&2; exit 2 ;; esac
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

for t in ${tools//,/ }; do
  case "$t" in
    hydrabackup) ;;
    restic) command -v restic >/dev/null || { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq restic >/dev/null 2>&1 || die "restic could not be installed"; } ;;
    *) die "unknown tool: $t (the scale mode runs hydrabackup and restic)" ;;
  esac
done
[ -x /usr/bin/time ] || die "no /usr/bin/time (apt-get install time)"
if [ "$build" = 1 ]; then log "cargo build --release --bins"; cargo build --release --bins -q; fi
[ "$report_only" = 1 ] || { [ -x target/release/hydrabackup ] && [ -x target/release/hydgen ]; } ||
  die "no release binaries"

rm -rf "$work"; mkdir -p "$work/bin" "$out"
out=$(cd "$out" && pwd)
[ "$report_only" = 1 ] || cp target/release/hydrabackup target/release/hydgen "$work/bin/"
[ -n "$roots" ] || roots=$work/roots
mkdir -p "$roots"; roots=$(cd "$roots" && pwd)

# root N: prints the path of the hydgen root of N Swamps, writing it unless a finished one with
# this seed is there (its stamp file holds the seed, the file count and the sizes).
root() {
  local n=$1 dir=$roots/$1
  while [ -e "$dir.writing" ] && kill -0 "$(cat "$dir.writing")" 2>/dev/null; do
    log "waiting for the run writing $dir"; sleep 60
  done
  if [ "$(cut -f1 "$dir.done" 2>/dev/null)" != "$seed" ]; then
    rm -rf "$dir" "$dir.done"
    echo $$ >"$dir.writing"
    log "hydgen: $n small Swamps into $dir"
    "$work/bin/hydgen" gen --root "$dir" --seed "$seed" --swamps "$n" --size "$((n / 1000 + 1))M" >/dev/null
    printf '%s\t%s\t%s\t%s\n' "$seed" \
      "$(find "$dir" -type f -printf '%s\n' | awk '{ n++; s += $1 } END { printf "%d\t%.0f\n", n, s }')" \
      "$(du -s --block-size=1 "$dir" | cut -f1)" >"$dir.done"
    rm -f "$dir.writing"
  fi
  echo "$dir"
}
if [ "$gen_only" = 1 ]; then
  for n in ${counts//,/ }; do root "$n" >/dev/null; done
  rm -rf "$work"; exit 0
fi
export HB=$work/bin/hydrabackup BENCH_PASSWORD=bench-scale BENCH_THREADS=$(nproc)
# shellcheck source=bench/tools.sh
source scripts/bench/tools.sh
tsv=$out/scale.tsv
if [ "$append" = 1 ] && [ -s "$tsv" ]; then
  awk -F'\t' -v c=",$counts," 'NR == 1 || index(c, "," $1 ",") == 0' "$tsv" >"$work/tsv" && mv "$work/tsv" "$tsv"
elif [ "$report_only" = 0 ]; then
  printf 'swamps\tfiles\tdata_bytes\tdisk_bytes\ttool\tstep\twall_s\tcpu_s\tmaxrss_kib\tload1\n' >"$tsv"
fi
if [ "$report_only" = 0 ] && [ "$gen_only" = 0 ]; then
  [ "$append" = 1 ] || : >"$out/scale.cmd"
  echo "$cmdline" >>"$out/scale.cmd"
fi
[ "$report_only" = 0 ] || counts=''

# step COUNT TOOL STEP FUNCTION ARGS...: one measured step, appended to the TSV.
step() {
  local n=$1 tool=$2 name=$3; shift 3
  local res=$work/time.res load
  load=$(cut -d' ' -f1 /proc/loadavg)
  /usr/bin/time -o "$res" -f '%e %U %S %M' bash -c 'source scripts/bench/tools.sh; "$@"' _ "$@" \
    >"$work/$tool-$name.out" 2>"$work/$tool-$name.err" || die "$tool $name failed (see $work)"
  read -r wall user sys rss <"$res"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$files" "$data_bytes" "$disk_bytes" "$tool" \
    "$name" "$wall" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$rss" "$load" >>"$tsv"
  log "$n Swamps, $tool $name: ${wall}s, peak RSS ${rss} KiB, load $load"
}

for n in ${counts//,/ }; do
  SRC=$(root "$n"); export SRC
  IFS=$'\t' read -r _ files data_bytes disk_bytes <"$SRC.done"
  one=$(cd "$SRC" && find . -name '*.hyd' -print -quit | sed 's|^\./||')
  for tool in ${tools//,/ }; do
    export REPO=$work/repo-$tool CACHE=$work/cache-$tool HYDRABACKUP_CACHE_DIR=$work/cache-$tool/hb
    rm -rf "$REPO" "$CACHE" "$work/one"; mkdir -p "$CACHE"
    "${tool}_init" >/dev/null 2>&1 || die "$tool init failed"
    step "$n" "$tool" backup-initial "${tool}_backup"
    step "$n" "$tool" backup-unchanged "${tool}_backup"
    if declare -F "${tool}_before_restore" >/dev/null; then "${tool}_before_restore" "$one"; fi
    step "$n" "$tool" restore-one "${tool}_restore_one" "$work/one" "$one"
    rm -rf "$REPO" "$CACHE" "$work/one"
  done
done

# ------------------------------------------------------------------------------- report
if command -v gnuplot >/dev/null; then
  plot=""
  for tool in ${tools//,/ }; do
    for s in backup-initial backup-unchanged; do
      awk -F'\t' -v t="$tool" -v s="$s" 'NR > 1 && $5 == t && $6 == s {print $1, $9 / 1024}' "$tsv" >"$work/$tool-$s.dat"
      plot+="${plot:+, }'$work/$tool-$s.dat' using 1:2 with linespoints title '$tool $s'"
    done
  done
  gnuplot <<EOF
set terminal pngcairo size 900,500
set output '$out/scale-rss.png'
set title 'Peak RSS against the number of Swamps'
set xlabel 'Swamps'; set ylabel 'peak RSS (MiB)'; set logscale x; set key left top; set grid
plot $plot
EOF
fi
python3 - "$tsv" "$out/RESULTS.md" "$out/scale.cmd" <<'EOF'
import csv, os, sys
tsv, results, cmds = sys.argv[1:4]
cmd = "`, `".join(l.strip() for l in open(cmds) if l.strip()) if os.path.exists(cmds) else "scripts/bench-scale.sh"
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
get = lambda n, t, s: next((r for r in rows if r["swamps"] == n and r["tool"] == t and r["step"] == s), None)
mib = lambda r: int(r["maxrss_kib"]) / 1024
lines = [f"`{cmd}` (writes this block): peak RSS and time against the number of small Swamps "
         "(hydgen; file count, file data and on-disk size of each root below). Targets: "
         "hydrabackup's initial and unchanged backups ≤ 200 MB and ≤ ½ of restic's peak RSS, the "
         "unchanged re-backup ≥ 3× faster than restic's, `restore --swamp` of one Swamp < 1 s. "
         "Time is wall (CPU = user + sys); load = 1-minute load average when the step began.", "",
         "| Swamps | root: files / data / disk | step | hydrabackup RSS | restic RSS | hydrabackup wall (CPU) | restic wall (CPU) | load | target |",
         "|---:|---|---|---:|---:|---:|---:|---|---|"]
counts = sorted({r["swamps"] for r in rows}, key=int)
for n in counts:
    for s in ["backup-initial", "backup-unchanged", "restore-one"]:
        h, r = get(n, "hydrabackup", s), get(n, "restic", s)
        if not h: continue
        ok = []
        if s != "restore-one":
            ok.append(mib(h) <= 200 and (r is None or mib(h) <= mib(r) / 2))
        if s == "backup-unchanged" and r:
            ok.append(float(r["wall_s"]) >= 3 * float(h["wall_s"]))
        if s == "restore-one":
            ok.append(float(h["wall_s"]) < 1)
        size = f'{int(h["files"]):,} / {int(h["data_bytes"]) / 1e9:.2f} GB / {int(h["disk_bytes"]) / 1e9:.2f} GB'
        t = lambda x: f'{x["wall_s"]} s ({float(x["cpu_s"]):.1f} s)' if x else "n/a"
        load = h["load1"] + (f' / {r["load1"]}' if r else "")
        lines.append(f'| {int(n):,} | {size} | {s} | {mib(h):.0f} MiB | '
                     f'{"%.0f MiB" % mib(r) if r else "n/a"} | {t(h)} | {t(r)} | {load} | '
                     f'{"met" if all(ok) else "NOT met"} |')
if len(counts) > 1:
    a, b = counts[0], counts[-1]
    grow = []
    for tool in ["hydrabackup", "restic"]:
        for s in ["backup-initial", "backup-unchanged"]:
            x, y = get(a, tool, s), get(b, tool, s)
            if x and y:
                kb = (int(y["maxrss_kib"]) - int(x["maxrss_kib"])) * 1024 / (int(b) - int(a)) / 1000
                grow.append(f"{tool} {s} {kb:.2f} KB")
    lines += ["", f"Peak RSS growth per Swamp from {int(a):,} to {int(b):,} Swamps: " + "; ".join(grow) + "."]
lines += ["", "![peak RSS against Swamps](scale-rss.png)", ""]
section = "\n".join(lines)
text = open(results).read() if os.path.exists(results) else ""
begin, end = "<!-- scale:begin -->", "<!-- scale:end -->"
block = f"{begin}\n{section}{end}"
if begin in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## Scale\n\n" + block + "\n"
open(results, "w").write(text)
EOF
[ "$keep" = 1 ] || rm -rf "$work"
log "wrote $tsv and the Scale section of $out/RESULTS.md"
