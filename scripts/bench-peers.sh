#!/usr/bin/env bash
# Side-by-side benchmark of hydrabackup against restic, borg and (on request) rustic on one
# generated HydrAIDE data root. Not part of the test suite.
#
# For every tool, on identical copies of the same data, in the same run: init + initial backup,
# an unchanged re-backup, a churn day + backup, full restore, single-Swamp restore, full
# verification reading every byte, an appends-only day + backup, a compaction-only day + backup,
# forget-all-but-last + prune, and a backup of a churn day during a prune of many forgotten
# snapshots (beside the same backup alone and the same prune alone; restic refuses the backup,
# rustic and hydrabackup run both). Each step is measured with /usr/bin/time (wall, user+sys CPU,
# peak RSS) plus the process's I/O counters, and the repository is measured with `du -sb`.
# `--steps during-prune` runs only that last step (after the initial backup and the
# days of churn it needs) and writes its rows to during-prune.tsv, leaving RESULTS.md alone.
# With a warm page cache, and also a cold one when /proc/sys/vm/drop_caches can be written.
#
# Writes benches/peers.tsv (raw figures) and regenerates the "Side-by-side" section of
# benches/RESULTS.md plus benches/peers-*.png. Tool drivers: scripts/bench/tools.sh.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/bench-peers.sh [options]

  --size SIZE        data-set size for hydgen (default 1600M; --quick: 200M)
  --swamps N         number of Swamps (default 20000; --quick: 3000)
  --tools LIST       comma-separated, from hydrabackup,restic,borg,rustic
                     (default hydrabackup,restic,borg; rustic is built with `cargo install`
                     only when listed, and skipped with a note if that fails)
  --quick            small data set, for a run of a few minutes
  --modes LIST       page-cache states: warm,cold (default both; cold only where
                     /proc/sys/vm/drop_caches can be written)
  --seed N           hydgen seed (default 7)
  --threads N        threads every tool may use (default: nproc)
  --work DIR         scratch folder (default /work/benchdata/peers; emptied before and after)
  --out DIR          where peers.tsv, RESULTS.md and the charts go (default benches)
  --no-build         do not run `cargo build --release --bins` first
  --no-report        write the TSV but leave RESULTS.md and the charts alone
  --keep             keep the scratch folder
  --steps STEPS      all (default) or during-prune: only the backup-during-prune step, after
                     init, the initial backup and the churn days it needs; writes
                     OUT/during-prune.tsv and leaves RESULTS.md and the charts alone
  --prune-days N     days of churn (each backed up, all but the last snapshot then forgotten)
                     before the backup-during-prune step (default 10)
  --scale            instead: peak RSS and time against 10k/100k/1M Swamps, hydrabackup and
                     restic (scripts/bench-scale.sh; --help there for its options)
  -h, --help         this text
EOF
}

repo_root=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo_root"
# --scale: memory and time against the number of Swamps (scripts/bench-scale.sh, its options).
for a in "$@"; do
  if [ "$a" = --scale ]; then
    args=(); for b in "$@"; do [ "$b" = --scale ] || args+=("$b"); done
    exec scripts/bench-scale.sh "${args[@]}"
  fi
done
bench_dir=$repo_root/scripts/bench
PEERS=$bench_dir/peers.py
export TOOLS_SH=$bench_dir/tools.sh

cmdline="scripts/bench-peers.sh"
for a in "$@"; do
  case "$a" in
    *[!A-Za-z0-9_,./=:@%+-]*|"") cmdline+=" $(printf '%q' "$a")" ;;
    *) cmdline+=" $a" ;;
  esac
done

size="" swamps="" tools=hydrabackup,restic,borg quick=0 modes="" seed=7 threads=$(nproc)
work=/work/benchdata/peers out=benches build=1 report=1 keep=0 steps=all prune_days=10
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=${2:?}; shift 2 ;;
    --swamps) swamps=${2:?}; shift 2 ;;
    --tools) tools=${2:?}; shift 2 ;;
    --quick) quick=1; shift ;;
    --modes) modes=${2:?}; shift 2 ;;
    --seed) seed=${2:?}; shift 2 ;;
    --threads) threads=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --no-build) build=0; shift ;;
    --no-report) report=0; shift ;;
    --keep) keep=1; shift ;;
    --steps) steps=${2:?}; shift 2 ;;
    --prune-days) prune_days=${2:?}; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done
case "$steps" in all|during-prune) ;; *) echo "unknown --steps: $steps" >&2; exit 2 ;; esac
case "$prune_days" in ''|*[!0-9]*) echo "--prune-days wants a number" >&2; exit 2 ;; esac
if [ "$steps" = during-prune ]; then report=0; fi
if [ "$quick" = 1 ]; then size=${size:-200M} swamps=${swamps:-3000}; fi
size=${size:-1600M} swamps=${swamps:-20000}
v2_percent=10 v1_percent=3
case "$work" in /|/work|/work/|/tmp|/tmp/|"$repo_root"*) echo "refusing --work $work" >&2; exit 2 ;; esac
mkdir -p "$out"
out=$(cd "$out" && pwd)

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------------- tools
IFS=, read -r -a tool_list <<<"$tools"
for t in "${tool_list[@]}"; do
  case "$t" in hydrabackup|restic|borg|rustic) ;; *) die "unknown tool: $t" ;; esac
done
notes=()
apt_updated=0
apt_install() {
  [ "$apt_updated" = 1 ] || { apt-get update -qq >/dev/null 2>&1 || true; apt_updated=1; }
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}
[ -x /usr/bin/time ] || { log "installing time"; apt_install time || die "no /usr/bin/time"; }
command -v gnuplot >/dev/null || { log "installing gnuplot-nox"; apt_install gnuplot-nox || notes+=("gnuplot could not be installed: no charts"); }
kept=()
for t in "${tool_list[@]}"; do
  case "$t" in
    restic) command -v restic >/dev/null || { log "installing restic"; apt_install restic || true; } ;;
    borg) command -v borg >/dev/null || { log "installing borgbackup"; apt_install borgbackup || true; } ;;
    rustic)
      export PATH=$PATH:$HOME/.cargo/bin
      if ! command -v rustic >/dev/null; then
        log "building rustic (cargo install rustic-rs; a long build on 2 cores)"
        cargo install rustic-rs --locked --no-default-features >"$out/.rustic-build.log" 2>&1 \
          || log "rustic did not build (see $out/.rustic-build.log)"
      fi ;;
  esac
  case "$t" in
    hydrabackup) kept+=("$t") ;;
    borg) if command -v borg >/dev/null; then kept+=("$t"); else notes+=("borg skipped: borgbackup could not be installed"); fi ;;
    *) if command -v "$t" >/dev/null; then kept+=("$t"); else notes+=("$t skipped: it could not be installed or built here"); fi ;;
  esac
done
rm -f "$out/.rustic-build.log"
tool_list=("${kept[@]}")
[ "${#tool_list[@]}" -gt 0 ] || die "no tool left to measure"

drop_ok=0
if [ -w /proc/sys/vm/drop_caches ] && sync && (echo 3 >/proc/sys/vm/drop_caches) 2>/dev/null; then drop_ok=1; fi
if [ -z "$modes" ]; then
  if [ "$drop_ok" = 1 ]; then modes=warm,cold; else modes=warm; fi
fi
IFS=, read -r -a mode_list <<<"$modes"
for m in "${mode_list[@]}"; do
  case "$m" in
    warm) ;;
    cold) [ "$drop_ok" = 1 ] || die "cold page cache asked for, but drop_caches cannot be written" ;;
    *) die "unknown mode: $m" ;;
  esac
done

# ---------------------------------------------------------------------------------- build
if [ "$build" = 1 ]; then
  log "cargo build --release --bins"
  cargo build --release --bins -q
fi
if [ ! -x target/release/hydrabackup ] || [ ! -x target/release/hydgen ]; then
  die "no release binaries (drop --no-build)"
fi

# ---------------------------------------------------------------------------------- work dir
# The scratch folder carries a marker so that we never empty a folder we did not make.
if [ -e "$work" ]; then
  [ -e "$work/.bench-peers" ] || die "$work exists and was not made by this script"
  rm -rf "$work"
fi
mkdir -p "$work/bin" "$work/logs" "$work/run"
touch "$work/.bench-peers"
cleanup() {
  if [ "$keep" = 0 ] && [ -e "$work/.bench-peers" ]; then rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Private copies: other builds may replace target/release while we measure.
cp target/release/hydrabackup target/release/hydgen "$work/bin/"
export HB=$work/bin/hydrabackup
GEN=$work/bin/hydgen
export BENCH_PASSWORD="bench-peers-password-$seed" BENCH_THREADS=$threads
logs=$work/logs
hb_commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then hb_commit+=" + uncommitted changes"; fi
hb_commit+=", binary built $(date -u -r target/release/hydrabackup '+%Y-%m-%d %H:%M UTC')"

# ---------------------------------------------------------------------------------- helpers
# Content digest of a tree: every regular file's path and bytes (not times).
digest() { (cd "$1" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r md5sum | md5sum | cut -c1-32); }
tree_bytes() { find "$1" -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}'; }
warm_up() { find "$@" -type f -print0 2>/dev/null | xargs -0 -r cat >/dev/null 2>&1 || true; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# Big deletions, and a wait before the restores: ext4 without a journal (as here) skips inodes
# freed in the last 60 s when it allocates new ones (5 min while their inode table block is
# dirty), which made creating 40,000 files cost several CPU-seconds more right after an
# `rm -rf` of a tree. Every tool restores at least `settle` seconds after the last one.
settle=65 last_rm=0
big_rm() { rm -rf "$@"; last_rm=$(date +%s); }
settle_fs() {
  sync
  local wait=$((last_rm + settle - $(date +%s)))
  if [ "$wait" -gt 0 ]; then sleep "$wait"; fi
}

# The days of churn, applied in this order after the initial backups.
day_names=(churn appends compaction)
day_args=(
  "--seed $((seed + 1))"
  "--seed $((seed + 2)) --append-percent 20 --compact-percent 0 --new-percent 0 --delete-percent 0"
  "--seed $((seed + 3)) --append-percent 0 --compact-percent 5 --new-percent 0 --delete-percent 0"
)
churn_day() { # ROOT INDEX
  # shellcheck disable=SC2086
  "$GEN" churn --root "$1" ${day_args[$2]}
}

tsv=$work/peers.tsv
printf 'mode\ttool\tstep\tstatus\twall_s\tuser_s\tsys_s\tcpu_s\tmaxrss_kib\trchar\twchar\tread_bytes\tflush_s\trepo_bytes\trepo_growth\tsrc_read\tadded\tnote\n' >"$tsv"
row() { local IFS=$'\t'; printf '%s\n' "$*" >>"$tsv"; }

# measure MODE TOOL STEP FUNCTION ARGS...: run one step as the tool's driver function.
prev_repo=0
measure() {
  local mode=$1 tool=$2 step=$3 fn=$4
  shift 4
  if ! declare -F "$fn" >/dev/null; then
    log "$mode $tool $step: n/a"
    row "$mode" "$tool" "$step" "n/a" - - - - - - - - - - - - - "the tool has no such command yet"
    return 0
  fi
  sync
  if [ "$mode" = cold ]; then drop_caches; else warm_up "$SRC" "$REPO" "$CACHE"; fi
  local base=$logs/$mode.$tool.$step
  # shellcheck disable=SC2016 # the inner bash expands these
  python3 "$PEERS" measure --result "$base.res" --stdout "$base.out" --stderr "$base.err" -- \
    bash -c '. "$1"; shift; "$@"' _ "$TOOLS_SH" "$fn" "$@"
  local wall user sys rss rchar wchar rbytes rc t0 t1 flush repo growth src_read added status note=""
  read -r wall user sys rss rchar wchar rbytes rc <"$base.res"
  t0=$(date +%s.%N); sync; t1=$(date +%s.%N)
  flush=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  repo=$(du -sb "$REPO" 2>/dev/null | cut -f1); repo=${repo:-0}
  growth=$((repo - prev_repo)); prev_repo=$repo
  read -r src_read added < <(python3 "$PEERS" parse "$tool" "$step" "$base.out")
  status=ok
  if [ "$rc" != 0 ]; then
    status="failed (exit $rc)"
    note=$(tail -n 3 "$base.err" | tr '\t\n' '  ' | cut -c1-200)
    log "$mode $tool $step FAILED (exit $rc): $note"
  fi
  row "$mode" "$tool" "$step" "$status" "$wall" "$user" "$sys" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" "$rss" "$rchar" "$wchar" \
    "$rbytes" "$flush" "$repo" "$growth" "$src_read" "$added" "$note"
  log "$(printf '%-5s %-12s %-18s %8ss cpu %6ss rss %7s KiB repo %s' "$mode" "$tool" "$step" "$wall" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" "$rss" "$repo")"
  return 0
}
# Sets wall, user, sys, cpu and peak RSS of the last row of the TSV: WALL USER SYS MAXRSS_KIB.
set_last_times() { python3 - "$tsv" "$@" <<'EOF'
import sys
p, wall, user, sys_s, rss = sys.argv[1:6]
lines = open(p).read().splitlines()
cols = lines[-1].split("\t")
cols[4:9] = [wall, user, sys_s, "%.2f" % (float(user) + float(sys_s)), rss]
lines[-1] = "\t".join(cols)
open(p, "w").write("\n".join(lines) + "\n")
EOF
}
# Appends a note to the last row of the TSV (used for post-step checks).
note_last() { python3 - "$tsv" "$1" <<'EOF'
import sys
p, note = sys.argv[1], sys.argv[2]
lines = open(p).read().splitlines()
cols = lines[-1].split("\t")
cols[-1] = (cols[-1] + "; " if cols[-1] else "") + note
lines[-1] = "\t".join(cols)
open(p, "w").write("\n".join(lines) + "\n")
EOF
}

# ---------------------------------------------------------------------------------- data set
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average before: $load_before"
log "generating the data root: $swamps swamps, ~$size, seed $seed"
ref=$work/ref
gen_report=$("$GEN" gen --root "$ref/day0" --seed "$seed" --swamps "$swamps" --size "$size" \
  --v2-percent "$v2_percent" --v1-percent "$v1_percent")
log "$gen_report"
files0=$(find "$ref/day0" -type f | wc -l)
bytes0=$(tree_bytes "$ref/day0")

if [ "$steps" = all ]; then
# The reference chain of days: each tool's copy must match these digests.
log "reference churn days"
cp -a "$ref/day0" "$ref/cur"
digests=() day_bytes=() day_reports=() day_diffs=()
for i in 0 1 2; do
  rm -rf "$ref/prev"
  cp -a "$ref/cur" "$ref/prev"
  day_reports[i]=$(churn_day "$ref/cur" "$i")
  digests[i]=$(digest "$ref/cur")
  day_bytes[i]=$(tree_bytes "$ref/cur")
  day_diffs[i]=$(python3 "$PEERS" daydiff "$ref/prev" "$ref/cur")
  log "day ${day_names[i]}: ${day_reports[i]}"
  log "day ${day_names[i]}: ${day_diffs[i]}"
  if [ "$i" = 0 ]; then
    one_file=$(cd "$ref/cur" && find . -name '*.hyd' -type f -printf '%s %P\n' | sort -k1,1nr -k2 | awk 'NR == 1 {sub(/^[0-9]+ /, ""); print}')
    one_size=$(stat -c %s "$ref/cur/$one_file")
  fi
done
big_rm "$ref/cur" "$ref/prev"
appended_bytes=$((day_bytes[1] - day_bytes[0]))

# ---------------------------------------------------------------------------------- limits
log "physical limits"
limit() { # MODE NAME NOTE COMMAND...
  local mode=$1 name=$2 note=$3 wall user sys rss rchar wchar rbytes rc
  shift 3
  sync
  if [ "$mode" = cold ]; then drop_caches; else warm_up "$ref/day0"; fi
  python3 "$PEERS" measure --result "$logs/limit.res" --stdout /dev/null --stderr "$logs/limit.err" -- "$@"
  read -r wall user sys rss rchar wchar rbytes rc <"$logs/limit.res"
  row "$mode" "(limit)" "$name" ok "$wall" "$user" "$sys" \
    "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" "$rss" "$rchar" "$wchar" "$rbytes" - - - - - "$note"
  log "limit $mode $name: ${wall}s"
}
# shellcheck disable=SC2016 # the inner bash expands these
for m in "${mode_list[@]}"; do
  limit "$m" read-seq "read every file (cat to /dev/null)" \
    bash -c 'cd "$1" && find . -type f -print0 | xargs -0 cat >/dev/null' _ "$ref/day0"
  limit "$m" copy "copy the tree (cp -a) and sync" \
    bash -c 'cp -a "$1" "$2" && sync' _ "$ref/day0" "$work/copy"
  big_rm "$work/copy"
  limit "$m" write "write as many bytes, one file (dd, fsync)" \
    dd if=/dev/zero of="$work/dd" bs=1M count=$(((bytes0 + 1048575) / 1048576)) conv=fsync status=none
  rm -f "$work/dd"
done
fi

# ---------------------------------------------------------------------------------- the runs
# shellcheck source=scripts/bench/tools.sh
. "$TOOLS_SH"
versions_json="{}"
for t in "${tool_list[@]}"; do
  v=$("${t}_version" 2>/dev/null | awk 'NR == 1' || true)
  [ "$t" = hydrabackup ] && v="$v (commit $hb_commit)"
  versions_json=$(python3 -c 'import json,sys; d=json.loads(sys.argv[1]); d[sys.argv[2]]=sys.argv[3]; print(json.dumps(d))' "$versions_json" "$t" "$v")
done

check_tree() { # DIR INDEX: the tool's copy must hold exactly the reference bytes of that day
  local got
  got=$(digest "$1")
  [ "$got" = "${digests[$2]}" ] || die "the data of day ${day_names[$2]} differs between tools (hydgen churn not deterministic?)"
}

# 9. Backup during prune: $prune_days days of churn, each backed up, all snapshots but the last
# forgotten, one more churn day; then its backup alone (on a copy of the repository), the tool's
# default prune alone (on another copy), and both at once: the prune, and a backup 1 s later.
during_prune() { # MODE TOOL
  local mode=$1 tool=$2 k line who rc start end wall user sys rss b0 b1 p0 p1 b_rc p_rc b_wall p_wall
  declare -F "${tool}_prune" >/dev/null || return 0
  for ((k = 1; k <= prune_days; k++)); do
    "$GEN" churn --root "$SRC" --seed $((seed + 100 + k)) >/dev/null
    # In a subshell: the drivers cd into the data root.
    ("${tool}_backup") >/dev/null 2>"$logs/$mode.$tool.untimed.err" ||
      die "$tool: untimed backup $k failed: $(tail -n 2 "$logs/$mode.$tool.untimed.err" | tr '\n' ' ')"
  done
  ("${tool}_forget") >/dev/null 2>"$logs/$mode.$tool.untimed.err" ||
    die "$tool: untimed forget failed: $(tail -n 2 "$logs/$mode.$tool.untimed.err" | tr '\n' ' ')"
  churn_day "$SRC" 0 >/dev/null
  log "$tool: $prune_days days backed up and forgotten, repository $(du -sb "$REPO" | cut -f1) bytes"
  big_rm "$base/repo-copy"
  cp -a "$REPO" "$base/repo-copy"
  REPO=$base/repo-copy measure "$mode" "$tool" backup-alone "${tool}_backup"
  big_rm "$base/repo-copy"
  cp -a "$REPO" "$base/repo-copy"
  REPO=$base/repo-copy measure "$mode" "$tool" prune-alone "${tool}_prune"
  big_rm "$base/repo-copy"
  prev_repo=$(du -sb "$REPO" | cut -f1)
  measure "$mode" "$tool" backup-during-prune backup_during_prune "$tool"
  while read -r who rc start end wall user sys rss; do
    if [ "$who" = backup ]; then b_rc=$rc b0=$start b1=$end b_wall=$wall; set_last_times "$wall" "$user" "$sys" "$rss"
    else p_rc=$rc p0=$start p1=$end p_wall=$wall line="$wall $user $sys $rss"; fi
  done <"$CACHE/during.times"
  local overlap
  overlap=$(awk -v a="$b0" -v b="$b1" -v c="$p0" -v d="$p1" \
    'BEGIN {s = (a > c ? a : c); e = (b < d ? b : d); printf "%.2f", (e > s ? e - s : 0)}')
  # The row's figures are the backup's own (the step also waited for the prune).
  note_last "the backup's own figures (exit $b_rc); it ran ${overlap} s of its ${b_wall} s beside the prune (${p_wall} s, exit $p_rc)"
  read -r wall user sys rss <<<"$line"
  row "$mode" "$tool" prune-during-backup "$([ "$p_rc" = 0 ] && echo ok || echo "failed (exit $p_rc)")" \
    "$wall" "$user" "$sys" "$(awk -v u="$user" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')" "$rss" \
    - - - - - - - - "the tool's default prune, a backup started 1 s after it"
  log "$mode $tool backup during prune: backup ${b_wall}s (exit $b_rc, ${overlap}s beside the prune; the row above counts both processes' CPU, the TSV the backup's own), prune ${p_wall}s (exit $p_rc)"
}

for mode in "${mode_list[@]}"; do
  for tool in "${tool_list[@]}"; do
    log "== $mode cache: $tool"
    base=$work/run/$tool
    big_rm "$base"
    mkdir -p "$base/cache"
    export SRC=$base/data REPO=$base/repo CACHE=$base/cache
    cp -a "$ref/day0" "$SRC"
    prev_repo=0

    measure "$mode" "$tool" init "${tool}_init"
    measure "$mode" "$tool" backup-initial "${tool}_backup"
    if [ "$steps" = during-prune ]; then
      during_prune "$mode" "$tool"
      [ "$keep" = 1 ] || big_rm "$base"
      continue
    fi
    measure "$mode" "$tool" backup-unchanged "${tool}_backup"

    churn_day "$SRC" 0 >/dev/null
    check_tree "$SRC" 0
    measure "$mode" "$tool" backup-churn "${tool}_backup"

    if declare -F "${tool}_before_restore" >/dev/null; then "${tool}_before_restore" "$one_file"; fi
    mkdir -p "$base/restore"
    settle_fs
    measure "$mode" "$tool" restore-full "${tool}_restore_all" "$base/restore"
    if [ "$(digest "$base/restore")" != "${digests[0]}" ]; then
      note_last "restored tree differs from the backed-up one"
      log "$tool: restored tree differs from the backed-up one"
    fi
    big_rm "$base/restore"
    mkdir -p "$base/one"
    measure "$mode" "$tool" restore-one "${tool}_restore_one" "$base/one" "$one_file"
    nfiles=$(find "$base/one" -type f | wc -l)
    if [ "$nfiles" != 1 ] || ! cmp -s "$base/one/$one_file" "$SRC/$one_file"; then
      note_last "single restore gave $nfiles files / different bytes"
      log "$tool: single restore gave $nfiles files or different bytes"
    fi
    rm -rf "$base/one"
    measure "$mode" "$tool" verify "${tool}_verify"

    churn_day "$SRC" 1 >/dev/null
    check_tree "$SRC" 1
    measure "$mode" "$tool" backup-appends "${tool}_backup"
    churn_day "$SRC" 2 >/dev/null
    check_tree "$SRC" 2
    measure "$mode" "$tool" backup-compaction "${tool}_backup"
    measure "$mode" "$tool" forget-prune "${tool}_forget_prune"

    during_prune "$mode" "$tool"
    [ "$keep" = 1 ] || big_rm "$base"
  done
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
log "load average after: $load_after"

# ---------------------------------------------------------------------------------- outputs
if [ "$steps" = during-prune ]; then
  cp "$tsv" "$out/during-prune.tsv"
  log "wrote $out/during-prune.tsv"
  exit 0
fi
cp "$tsv" "$out/peers.tsv"
cpu=$(lscpu | awk -F': *' '/^Model name/ && !n++ {print $2}')
mem=$(free -h | awk '/^Mem:/ {print $2}')
disk_dev=$(df -P "$work" | awk 'NR == 2 {print $1}')
disk="$(df -hT "$work" | awk 'NR == 2 {print $2 ", " $3 " total"}') on $disk_dev"
rota=$(lsblk -dno ROTA "$disk_dev" 2>/dev/null || true)
case "$rota" in 0) disk+=", non-rotational" ;; 1) disk+=", rotational" ;; esac
if systemd-detect-virt -q 2>/dev/null || grep -q hypervisor /proc/cpuinfo; then disk+=" (virtual disk)"; fi
if [ "$drop_ok" = 1 ]; then
  cache_note="warm: source, repository and tool caches read into the page cache before each step; cold: \`sync; echo 3 > /proc/sys/vm/drop_caches\` before each step (a virtual disk may still be cached by the host)"
else
  cache_note="warm only: drop_caches cannot be written here"
fi
cache_note+="; every full restore starts ≥ ${settle} s after the last big deletion, as ext4 without a journal makes new inodes costly right after one"
for n in "${notes[@]+"${notes[@]}"}"; do cache_note+="; $n"; done

M_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') M_CORES=$(nproc) M_KERNEL=$(uname -r)
M_DAYS=$(for i in 0 1 2; do printf '%s\t%s\t%s\t%s\t%s\n' "${day_names[i]}" "${day_args[i]}" "${day_reports[i]}" "${day_bytes[i]}" "${day_diffs[i]}"; done)
export M_DATE M_CORES M_KERNEL M_DAYS M_CMD="$cmdline" M_QUICK=$quick M_CPU="$cpu" \
  M_MEM="$mem" M_DISK="$disk" M_LB="$load_before" \
  M_LA="$load_after" M_VERSIONS="$versions_json" M_THREADS=$threads M_CACHE="$cache_note" \
  M_SEED=$seed M_SWAMPS=$swamps M_SIZE=$size M_V2=$v2_percent M_V1=$v1_percent M_FILES=$files0 \
  M_BYTES=$bytes0 M_GEN="$gen_report" M_ONE="$one_file" M_ONESIZE=$one_size M_APPENDED=$appended_bytes
python3 - "$out/peers.meta.json" <<'EOF'
import json, os, sys
e = os.environ
days = []
for line in e["M_DAYS"].splitlines():
    name, args, report, b, diff = line.split("\t")
    days.append({"name": name, "args": "hydgen churn " + args, "report": report, "bytes": int(b),
                 "diff": json.loads(diff)})
meta = {
    "date": e["M_DATE"], "command": e["M_CMD"], "quick": e["M_QUICK"] == "1",
    "cpu": e["M_CPU"], "cores": e["M_CORES"], "memory": e["M_MEM"], "disk": e["M_DISK"],
    "kernel": e["M_KERNEL"], "load": {"before": e["M_LB"], "after": e["M_LA"]},
    "versions": json.loads(e["M_VERSIONS"]), "threads": e["M_THREADS"], "cache_note": e["M_CACHE"],
    "dataset": {
        "seed": e["M_SEED"], "swamps": e["M_SWAMPS"], "size": e["M_SIZE"],
        "v2_percent": e["M_V2"], "v1_percent": e["M_V1"], "files": int(e["M_FILES"]),
        "bytes": int(e["M_BYTES"]), "gen_report": e["M_GEN"], "one_file": e["M_ONE"],
        "one_size": int(e["M_ONESIZE"]), "appended_bytes": int(e["M_APPENDED"]), "days": days,
    },
}
json.dump(meta, open(sys.argv[1], "w"), indent=1)
EOF
if [ "$report" = 1 ]; then
  python3 "$PEERS" report --tsv "$out/peers.tsv" --meta "$out/peers.meta.json" \
    --results "$out/RESULTS.md" --charts "$out"
  log "wrote $out/peers.tsv, $out/RESULTS.md and charts"
else
  log "wrote $out/peers.tsv"
fi
