#!/usr/bin/env bash
# Where hydrabackup's time and memory go, step by step, on the same kind of data set as
# scripts/bench-peers.sh: each step under `perf record -g` (flat top symbols and the inclusive
# view), plus three experiments that isolate fixed costs:
#   - the Argon2id key derivation: the same steps against a repository whose key was made with
#     8 MiB instead of 64 MiB (peak RSS and time without most of the KDF),
#   - fsync: restore and initial backup under eatmydata (fsync/fdatasync become no-ops),
#   - system calls of the full restore (strace -c),
#   - glibc malloc arenas: the initial backup with MALLOC_ARENA_MAX=1,
# and a page-fault profile of the initial backup (where the resident set grows).
# Warm page cache throughout. Not part of the test suite.
#
#   scripts/bench/profile-hydrabackup.sh [--size 1600M] [--swamps 20000] [--seed 7]
#                                        [--work DIR] [--out DIR] [--keep]
set -euo pipefail

usage() {
  echo "usage: $0 [--size 1600M] [--swamps 20000] [--seed 7] [--work /work/benchdata/profile] [--out DIR] [--keep]"
}
repo_root=$(cd "$(dirname "$0")/../.." && pwd)
size=1600M swamps=20000 seed=7 work=/work/benchdata/profile out="" keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --size) size=${2:?}; shift 2 ;;
    --swamps) swamps=${2:?}; shift 2 ;;
    --seed) seed=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --out) out=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
  esac
done
case "$work" in /|/work|/work/|/tmp|/tmp/|"$repo_root"*) echo "refusing --work $work" >&2; exit 2 ;; esac
out=${out:-$work-report}
for t in perf eatmydata strace; do
  command -v "$t" >/dev/null || { apt-get install -y -qq "$( [ "$t" = perf ] && echo linux-perf || echo "$t")" >/dev/null 2>&1 || true; }
done
command -v perf >/dev/null || { echo "perf is not available" >&2; exit 1; }

if [ -e "$work" ]; then
  [ -e "$work/.profile-hydrabackup" ] || { echo "$work exists and was not made by this script" >&2; exit 1; }
  rm -rf "$work"
fi
mkdir -p "$work/bin" "$out"
touch "$work/.profile-hydrabackup"
trap '[ "$keep" = 1 ] || rm -rf "$work"' EXIT
cp "$repo_root/target/release/hydrabackup" "$repo_root/target/release/hydgen" "$work/bin/"
HB=$work/bin/hydrabackup GEN=$work/bin/hydgen
export HYDRABACKUP_PASSWORD=profile-password
data=$work/data
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
warm() { find "$@" -type f -print0 2>/dev/null | xargs -0 -r cat >/dev/null 2>&1 || true; }
summary=$out/summary.txt
: >"$summary"

# timed NAME CMD...: /usr/bin/time figures into the summary.
timed() {
  local name=$1
  shift
  sync
  /usr/bin/time -f "$name: wall %e s, user %U s, sys %S s, peak RSS %M KiB" -a -o "$summary" "$@" >/dev/null
}
# profiled NAME CMD...: perf record -g, then the top symbols (self and inclusive).
profiled() {
  local name=$1
  shift
  sync
  perf record -q -g -o "$work/$name.perf.data" -- "$@" >/dev/null 2>"$out/$name.stderr" || true
  perf report -i "$work/$name.perf.data" --no-children --sort symbol --stdio -g none \
    --percent-limit 0.7 2>/dev/null | grep -v '^#' | grep -v '^$' >"$out/$name.self.txt" || true
  perf report -i "$work/$name.perf.data" --children --sort symbol --stdio -g none \
    --percent-limit 3 2>/dev/null | grep -v '^#' | grep -v '^$' >"$out/$name.children.txt" || true
  # CPU per thread: is one pipeline stage (the single pack uploader, say) the bottleneck?
  perf report -i "$work/$name.perf.data" --no-children --sort pid --stdio -g none \
    --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '^$' >"$out/$name.threads.txt" || true
  rm -f "$work/$name.perf.data"
  log "$name profiled"
}
# faults NAME CMD...: where memory is first touched (page faults by call chain), which is where
# the resident set grows.
faults() {
  local name=$1
  shift
  sync
  perf record -q -e page-faults -g -o "$work/$name.faults.data" -- "$@" >/dev/null 2>&1 || true
  perf report -i "$work/$name.faults.data" --children --sort symbol --stdio -g none \
    --percent-limit 2 2>/dev/null | grep -v '^#' | grep -v '^$' >"$out/$name.faults.txt" || true
  rm -f "$work/$name.faults.data"
  log "$name page faults profiled"
}

log "generating $swamps swamps, ~$size (seed $seed)"
"$GEN" gen --root "$data" --seed "$seed" --swamps "$swamps" --size "$size" --v2-percent 10 --v1-percent 3 >"$out/gen.txt"

for kdf in default small; do
  export HYDRABACKUP_REPOSITORY=$work/repo-$kdf
  rm -rf "$HYDRABACKUP_REPOSITORY" "$work/data-$kdf"
  cp -a "$data" "$work/data-$kdf"
  src=$work/data-$kdf
  if [ "$kdf" = small ]; then
    HYDRABACKUP_KDF_MEMORY=8192 "$HB" init -q
  else
    "$HB" init -q
  fi
  echo "== repository key: $kdf Argon2id memory" >>"$summary"
  warm "$src"
  timed "$kdf backup-initial" "$HB" backup "$src" -q
  warm "$src" "$HYDRABACKUP_REPOSITORY"
  timed "$kdf backup-unchanged" "$HB" backup "$src" -q
  "$GEN" churn --root "$src" --seed "$((seed + 1))" >/dev/null
  warm "$src" "$HYDRABACKUP_REPOSITORY"
  timed "$kdf backup-churn" "$HB" backup "$src" -q
  warm "$HYDRABACKUP_REPOSITORY"
  timed "$kdf restore-full" "$HB" restore latest --target "$work/restore" -q
  rm -rf "$work/restore"
  warm "$HYDRABACKUP_REPOSITORY"
  timed "$kdf verify" "$HB" verify --read-data -q
  if [ "$kdf" = small ]; then
    warm "$HYDRABACKUP_REPOSITORY"
    timed "small restore-full under eatmydata (no fsync)" eatmydata "$HB" restore latest --target "$work/restore" -q
    rm -rf "$work/restore"
    warm "$HYDRABACKUP_REPOSITORY"
    strace -f -c -o "$out/restore-full.strace.txt" "$HB" restore latest --target "$work/restore" -q || true
    rm -rf "$work/restore"
    export HYDRABACKUP_REPOSITORY=$work/repo-eat
    rm -rf "$HYDRABACKUP_REPOSITORY"
    HYDRABACKUP_KDF_MEMORY=8192 "$HB" init -q
    warm "$data"
    timed "small backup-initial under eatmydata (no fsync)" eatmydata "$HB" backup "$data" -q
    rm -rf "$HYDRABACKUP_REPOSITORY"
    HYDRABACKUP_KDF_MEMORY=8192 "$HB" init -q
    warm "$data"
    timed "small backup-initial with MALLOC_ARENA_MAX=1 (one glibc arena)" env MALLOC_ARENA_MAX=1 "$HB" backup "$data" -q
  fi
  rm -rf "$src" "$HYDRABACKUP_REPOSITORY" "$work/repo-$kdf"
done

# perf profiles, on the default-key repository set-up, from scratch.
log "perf profiles"
export HYDRABACKUP_REPOSITORY=$work/repo-perf
cp -a "$data" "$work/data-perf"
src=$work/data-perf
"$HB" init -q
warm "$src"
profiled backup-initial "$HB" backup "$src" -q
warm "$src" "$HYDRABACKUP_REPOSITORY"
profiled backup-unchanged "$HB" backup "$src" -q
"$GEN" churn --root "$src" --seed "$((seed + 1))" >/dev/null
warm "$src" "$HYDRABACKUP_REPOSITORY"
profiled backup-churn "$HB" backup "$src" -q
warm "$HYDRABACKUP_REPOSITORY"
profiled restore-full "$HB" restore latest --target "$work/restore" -q
rm -rf "$work/restore"
warm "$HYDRABACKUP_REPOSITORY"
profiled verify "$HB" verify --read-data -q
# Memory: the initial backup again, into a fresh repository, counting page faults.
export HYDRABACKUP_REPOSITORY=$work/repo-faults
"$HB" init -q
warm "$data"
faults backup-initial "$HB" backup "$data" -q
log "done: $out"
cat "$summary"
