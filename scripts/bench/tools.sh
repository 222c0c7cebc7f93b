# shellcheck shell=bash
# Tool drivers for scripts/bench-peers.sh: one small function per tool and action.
# Sourced by bench-peers.sh and by the `bash -c` that each measured step runs, so everything a
# driver needs comes from the environment:
#   SRC    the data root being backed up (the same path for every backup of one tool)
#   REPO   the tool's repository
#   CACHE  a folder for the tool's own caches (restic/rustic cache, borg base dir)
#   HB     the hydrabackup binary (a private copy, see bench-peers.sh)
#   BENCH_PASSWORD, BENCH_THREADS
# and the usual per-tool variables set below.
#
# Actions, each called as TOOL_ACTION ARGS:
#   init                     create an encrypted repository (compression: the tool's default)
#   backup                   back up $SRC into a new snapshot
#   restore_all TARGET       restore the latest snapshot into the empty folder TARGET
#   restore_one TARGET REL   restore only the file REL (relative to the data root) into TARGET
#   verify                   check the repository reading every stored byte
#   forget_prune             forget all snapshots but the last one and free their space
#   forget                   forget all snapshots but the last one, nothing else
#   prune                    prune as the tool does by default (no forget)
#   version                  print one line: the tool's version
#   before_restore REL       optional, untimed, run in bench-peers.sh's own shell before the
#                            restore steps: export whatever the restores need to look up
# An action whose function is not defined is recorded as "n/a" for that tool.
# Backups print the tool's JSON summary on stdout; bench-peers.sh parses it (scripts/bench/peers.py).

# --- hydrabackup -----------------------------------------------------------------------------
# Threads: hydrabackup sizes its pools from the cores it may use (BENCH_THREADS via taskset
# is not needed on the 2-core bench machine: it uses all of them, like restic's GOMAXPROCS).
hydrabackup_env() {
  export HYDRABACKUP_REPOSITORY=$REPO HYDRABACKUP_PASSWORD=$BENCH_PASSWORD
}
hydrabackup_init() { hydrabackup_env; "$HB" init --json; }
hydrabackup_backup() { hydrabackup_env; "$HB" backup "$SRC" --json; }
hydrabackup_restore_all() { hydrabackup_env; "$HB" restore latest --target "$1" --json; }
# The single-file restore selects the Swamp by its name (looked up untimed in before_restore);
# without one (V1 folders, nameless files) it selects the file by path.
hydrabackup_restore_one() {
  hydrabackup_env
  if [ -n "${HB_SWAMP_NAME:-}" ]; then
    "$HB" restore latest --target "$1" --swamp "$HB_SWAMP_NAME" --json
  else
    "$HB" restore latest --target "$1" --include "$2" --json
  fi
}
hydrabackup_verify() { hydrabackup_env; "$HB" verify --read-data --json; }
hydrabackup_forget_prune() { hydrabackup_env; "$HB" forget --keep-last 1 --prune --instant-delete --yes --json; }
hydrabackup_forget() { hydrabackup_env; "$HB" forget --keep-last 1 --yes -q; }
# The default two-phase prune: it runs beside backups (repo-format.md §9a).
hydrabackup_prune() { hydrabackup_env; "$HB" prune --yes --json; }
hydrabackup_version() { "$HB" --version; }
hydrabackup_before_restore() {
  hydrabackup_env
  HB_SWAMP_NAME=$("$HB" show latest --json | python3 -c '
import json, sys
want = sys.argv[1]
for s in json.load(sys.stdin)["swamps"]:
    if s.get("path") == want and s.get("name"):
        print(s["name"]); break' "$1")
  export HB_SWAMP_NAME
}

# --- restic ------------------------------------------------------------------------------------
# Backs up "." from inside $SRC so that snapshots hold the data root's contents at their root.
restic_env() {
  export RESTIC_REPOSITORY=$REPO RESTIC_PASSWORD=$BENCH_PASSWORD RESTIC_CACHE_DIR=$CACHE/restic
  export GOMAXPROCS=$BENCH_THREADS
}
restic_init() { restic_env; restic init; }
restic_backup() { restic_env; cd "$SRC" && restic backup . --host bench --json; }
restic_restore_all() { restic_env; restic restore latest --host bench --target "$1"; }
restic_restore_one() { restic_env; restic restore latest --host bench --target "$1" --include "/$2"; }
restic_verify() { restic_env; restic check --read-data; }
restic_forget_prune() { restic_env; restic forget --host bench --keep-last 1 --prune; }
restic_forget() { restic_env; restic forget --host bench --keep-last 1; }
restic_prune() { restic_env; restic prune; }
restic_version() { restic version | awk 'NR == 1'; }

# --- borg --------------------------------------------------------------------------------------
# Single-threaded by design (borg 1.x). Archives are named by time; "latest" is looked up untimed.
borg_env() {
  export BORG_REPO=$REPO BORG_PASSPHRASE=$BENCH_PASSWORD BORG_BASE_DIR=$CACHE/borg
  export BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=no BORG_RELOCATED_REPO_ACCESS_IS_OK=yes
}
borg_init() { borg_env; borg init -e repokey-blake2; }
borg_backup() { borg_env; cd "$SRC" && borg create --json '::{now:%Y-%m-%dT%H:%M:%S.%f}' .; }
borg_before_restore() { borg_env; BORG_LATEST=$(borg list --short --last 1); export BORG_LATEST; }
borg_restore_all() { borg_env; cd "$1" && borg extract "::$BORG_LATEST"; }
borg_restore_one() { borg_env; cd "$1" && borg extract "::$BORG_LATEST" "$2"; }
borg_verify() { borg_env; borg check --verify-data; }
borg_forget_prune() { borg_env; borg prune --keep-last 1 && borg compact; }
borg_version() { borg --version; }

# --- rustic ------------------------------------------------------------------------------------
rustic_env() {
  export RUSTIC_REPOSITORY=$REPO RUSTIC_PASSWORD=$BENCH_PASSWORD RUSTIC_CACHE_DIR=$CACHE/rustic
  export RAYON_NUM_THREADS=$BENCH_THREADS
}
rustic_init() { rustic_env; rustic init; }
rustic_backup() { rustic_env; cd "$SRC" && rustic backup . --host bench --json; }
rustic_restore_all() { rustic_env; rustic restore latest "$1"; }
rustic_restore_one() { rustic_env; rustic restore "latest:/$2" "$1/$2"; }
rustic_verify() { rustic_env; rustic check --read-data; }
# --instant-delete: without it rustic keeps the packs it drops for 23 h, so prune frees nothing now.
rustic_forget_prune() { rustic_env; rustic forget --keep-last 1 --prune --instant-delete; }
rustic_forget() { rustic_env; rustic forget --keep-last 1; }
# rustic's default prune is two-phase and lock-free, like hydrabackup's.
rustic_prune() { rustic_env; rustic prune; }
rustic_version() { rustic --version; }

# --- backup during prune (any tool with prune) ---------------------------------------------------
# TOOL: starts the tool's prune, and one second later (it holds its lock by then) a backup of
# $SRC; waits for both. Prints the backup's output; writes one line per process to
# $CACHE/during.times: "backup|prune rc start end wall user sys maxrss_kib" (start and end in
# seconds since the epoch, from /usr/bin/time's own process), so that each one's CPU and memory
# are known and the overlap can be checked. A tool that refuses the backup while it prunes shows
# it in the backup's rc (restic: exclusive lock).
backup_during_prune() {
  local tool=$1 brc=0 prc=0
  ( t0=$(date +%s.%N)
    /usr/bin/time -f '%e %U %S %M' -o "$CACHE/prune.time" \
      bash -c '. "$1"; "$2_prune"' _ "$TOOLS_SH" "$tool" >"$CACHE/prune.out" 2>"$CACHE/prune.err"
    echo "$? $t0 $(date +%s.%N)" >"$CACHE/prune.end" ) &
  local pid=$!
  sleep 1
  local b0 b1
  b0=$(date +%s.%N)
  /usr/bin/time -f '%e %U %S %M' -o "$CACHE/backup.time" \
    bash -c '. "$1"; "$2_backup"' _ "$TOOLS_SH" "$tool" >"$CACHE/backup.out" 2>"$CACHE/backup.err" || brc=$?
  b1=$(date +%s.%N)
  wait "$pid" || true
  local p0 p1
  read -r prc p0 p1 <"$CACHE/prune.end"
  { echo "backup $brc $b0 $b1 $(tail -n 1 "$CACHE/backup.time")"
    echo "prune $prc $p0 $p1 $(tail -n 1 "$CACHE/prune.time")"; } >"$CACHE/during.times"
  cat "$CACHE/backup.out"
  return "$brc"
}
