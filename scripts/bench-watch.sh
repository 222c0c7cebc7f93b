#!/usr/bin/env bash
# Continuous backup under a live writer (issue 13's targets). Not part of the test suite.
#
# Generates a data root, starts `hydrabackup watch --interval 10s --json`, lets `hydgen live`
# append to ~1% of the Swamps per minute (and compact some) for --minutes, then stops both and
# reports: the capture lag of every change the writer logged (its write → the end of the first
# successful cycle that started after it: p50/p99/max), the watcher's CPU share of one core and
# peak RSS while watching (the first cycle, a full backup, apart), how much the cycles walked,
# and the growth check: the repository's growth G against the bytes the cycles read, split into
# appended blocks A and Swamps read whole R (rewritten or new), and the number of snapshots S:
# G <= 1.5*A + R + 2 KB*S; then where the metadata goes (snapshot files, index files, trees: per
# snapshot and per changed Swamp, the root tree apart). Then `verify --read-data` (every stored Swamp
# of every snapshot loads as HydrAIDE loads it) and, for the first, middle and last snapshot
# written, a full restore whose every Swamp must hold a state the writer logged.
#
#   scripts/bench-watch.sh [--swamps 20000] [--size 1G] [--minutes 30] [--interval 10s]
#                          [--work DIR] [--keep]
set -euo pipefail

swamps=20000 size=1G minutes=30 interval=10s work=/work/benchdata/watch keep=0 seed=13
while [ $# -gt 0 ]; do
  case "$1" in
    --swamps) swamps=${2:?}; shift 2 ;;
    --size) size=${2:?}; shift 2 ;;
    --minutes) minutes=${2:?}; shift 2 ;;
    --interval) interval=${2:?}; shift 2 ;;
    --work) work=${2:?}; shift 2 ;;
    --keep) keep=1; shift ;;
    *) echo "usage: $0 [--swamps N] [--size SIZE] [--minutes N] [--interval 10s] [--work DIR] [--keep]" >&2; exit 2 ;;
  esac
done
repo_root=$(cd "$(dirname "$0")/.." && pwd)
bin=${HYDRABACKUP_BENCH_BIN:-}
if [ -z "$bin" ]; then
  (cd "$repo_root" && cargo build --release --bin hydrabackup --bin hydgen -q)
  bin=${CARGO_TARGET_DIR:-$repo_root/target}/release
fi

rm -rf "$work" && mkdir -p "$work" && cd "$work"
[ "$keep" = 1 ] || trap 'rm -rf "$work"' EXIT
export HYDRABACKUP_REPOSITORY=$work/repo HYDRABACKUP_PASSWORD=bench
"$bin/hydgen" gen --root data --seed "$seed" --swamps "$swamps" --size "$size" --v2-percent 20 >&2
"$bin/hydrabackup" init -q
# ~1% of the Swamps per minute: one operation every 6000/swamps seconds.
pause_ms=$(( 6000000 / swamps ))

"$bin/hydrabackup" watch data --interval "$interval" --json >cycles.jsonl 2>watch.err &
watcher=$!
until grep -q '"snapshot_id":"' cycles.jsonl 2>/dev/null; do
  kill -0 "$watcher" || { cat watch.err >&2; exit 1; }
  sleep 1
done
base_bytes=$(du -sb repo | cut -f1)
ls repo/index >base-index.txt
# The first cycle is a full backup; its peak is reported apart, then the peak is reset
# (clear_refs 5, Linux 4.0+) so that the table shows the watching itself.
first_rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$watcher/status")
echo 5 >"/proc/$watcher/clear_refs"
ticks=$(getconf CLK_TCK)
cpu() { awk '{print $14 + $15}' "/proc/$watcher/stat"; }
cpu0=$(cpu) t0=$(date +%s.%N)

"$bin/hydgen" live --root data --seed "$seed" --log live.jsonl --log-all-initial \
  --interval-ms "$pause_ms" --compact-percent 3 --stop-file stop >live.out &
writer=$!
sleep $(( minutes * 60 ))
touch stop
wait "$writer"
stopped_ms=$(date +%s%3N)
# Cycles run only on events: an event on the root itself (its times, which no snapshot stores)
# makes the watcher walk everything once more, finding nothing new.
touch data
# Wait for a cycle that started after the writer stopped and found nothing new.
python3 - "$stopped_ms" <<'EOF'
import json, sys, time, datetime
stopped = int(sys.argv[1])
deadline = time.time() + 600
while time.time() < deadline:
    for line in open("cycles.jsonl"):
        c = json.loads(line)
        if c.get("message_type") != "cycle" or c["error"] or c["snapshot_id"]:
            continue
        end = datetime.datetime.fromisoformat(c["time"][:26] + "+00:00").timestamp() * 1000
        if end - c["duration_secs"] * 1000 > stopped:
            sys.exit(0)
    time.sleep(1)
sys.exit("no quiet cycle after the writer stopped")
EOF
cpu1=$(cpu) t1=$(date +%s.%N)
rss_kb=$(awk '/VmHWM/ {print $2}' "/proc/$watcher/status")
kill -TERM "$watcher"
wait "$watcher"
end_bytes=$(du -sb repo | cut -f1)
# Tree blobs added while watching: from the index files written since the first cycle.
comm -13 base-index.txt <(ls repo/index) | while read -r ix; do
  "$bin/hydrabackup" cat index "$ix" | python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin)))'
done >new-index.jsonl
last_tree=$("$bin/hydrabackup" snapshots --json --latest 1 | python3 -c 'import json,sys; print(json.load(sys.stdin)[-1]["tree"])')

echo "first cycle (full backup): peak RSS $(( first_rss_kb / 1024 )) MiB"
python3 - "$cpu0" "$cpu1" "$t0" "$t1" "$ticks" "$rss_kb" "$base_bytes" "$end_bytes" "$minutes" "$swamps" "$last_tree" <<'EOF'
import json, os, sys, datetime, bisect
cpu0, cpu1, t0, t1, ticks, rss, base, end = map(float, sys.argv[1:9])
minutes, swamps, last_tree = sys.argv[9], sys.argv[10], sys.argv[11]
cycles = [json.loads(l) for l in open("cycles.jsonl")]
cycles = [c for c in cycles if c.get("message_type") == "cycle"]
def ts(c):
    return datetime.datetime.fromisoformat(c["time"][:26] + "+00:00").timestamp() * 1000
ok = sorted((ts(c) - c["duration_secs"] * 1000, ts(c)) for c in cycles if not c["error"])
starts = [s for s, _ in ok]
lags = []
for l in open("live.jsonl"):
    e = json.loads(l)
    if e["event"] in ("initial", "v1-initial"):
        continue
    i = bisect.bisect_right(starts, e["unix_ms"])
    if i < len(ok):
        lags.append((ok[i][1] - e["unix_ms"]) / 1000)
lags.sort()
pct = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))] if lags else float("nan")
written = [c for c in cycles[1:] if c["snapshot_id"]]
watching = cycles[1:]
A = sum(c["bytes_appended"] for c in watching)
R = sum(c["bytes_rewritten"] + c["bytes_new"] for c in watching)
changed = sum(c["swamps_captured"] for c in watching)
G = end - base
S = len(written)
bound = 1.5 * A + R + 2048 * S
print(f"| swamps | minutes | changes | cycles | snapshots | lag p50 | lag p99 | lag max | CPU (1 core) | peak RSS after the first cycle |")
print(f"| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
print(f"| {swamps} | {minutes} | {len(lags)} | {len(cycles)} | {S} | {pct(0.5):.1f} s | {pct(0.99):.1f} s | {lags[-1] if lags else 0:.1f} s "
      f"| {100 * (cpu1 - cpu0) / ticks / (t1 - t0):.1f} % | {rss / 1024:.0f} MiB |")
print()
walks = {}
for c in watching:
    walks.setdefault(c["walk"], []).append(c)
for k, cs in sorted(walks.items()):
    n = len(cs)
    print(f"{k} walks: {n} cycles, mean {sum(c['folders_listed'] for c in cs) / n:.0f} folders listed, "
          f"{sum(c['entries_examined'] for c in cs) / n:.0f} entries examined, "
          f"{sum(c['duration_secs'] for c in cs) / n:.2f} s")
print(f"growth G {G / 1e6:.2f} MB; appended blocks A {A / 1e6:.2f} MB, Swamps read whole R "
      f"{R / 1e6:.2f} MB (rewritten or new), snapshots S {S}: "
      f"1.5*A + R + 2 KB*S = {bound / 1e6:.2f} MB -> {'met' if G <= bound else 'NOT met'} "
      f"(G/(A+R) {G / max(A + R, 1):.2f}x)")
# Where the metadata goes.
def size(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)
snap_files = [c["snapshot_id"] for c in written]
snap_bytes = sum(os.path.getsize(f"repo/snapshots/{i}") for i in snap_files if os.path.exists(f"repo/snapshots/{i}"))
ix_new = set(os.listdir("repo/index")) - set(open("base-index.txt").read().split())
ix_bytes = sum(os.path.getsize(f"repo/index/{i}") for i in ix_new)
trees, tree_bytes, tree_raw, root = 0, 0, 0, None
for line in open("new-index.jsonl"):
    if not line.strip():
        continue
    for p in json.loads(line)["packs"]:
        for flags, bid, _, stored, raw in p["blobs"]:
            if flags & 1:
                trees += 1
                tree_bytes += stored
                tree_raw += raw
                if bid == last_tree:
                    root = (stored, raw)
per = lambda x: x / max(S, 1)
print(f"metadata per snapshot: snapshot file {per(snap_bytes):.0f} B, index file {per(ix_bytes):.0f} B, "
      f"trees {per(tree_bytes):.0f} B ({per(trees):.1f} tree blobs, {per(tree_raw):.0f} B before compression); "
      f"trees per changed Swamp {tree_bytes / max(changed, 1):.0f} B ({changed} Swamp captures)")
if root:
    print(f"the last root tree: {root[0]} B stored ({root[1]} B raw)")
else:
    print("the last root tree was stored before the watch (unchanged root)")
mean_cycle = sum(c["duration_secs"] for c in cycles[1:]) / max(len(cycles) - 1, 1)
print(f"mean cycle {mean_cycle:.2f} s")
EOF

"$bin/hydrabackup" verify --read-data -q
mapfile -t snaps < <(python3 -c '
import json
ids = [c["snapshot_id"] for c in map(json.loads, open("cycles.jsonl")) if c.get("snapshot_id")]
for i in sorted({0, len(ids) // 2, len(ids) - 1}): print(ids[i])')
for s in "${snaps[@]}"; do
  rm -rf restored
  "$bin/hydrabackup" restore "$s" --target restored -q
  "$bin/hydgen" check --root restored --log live.jsonl | grep -E 'logged state|all swamps load'
done
echo "verify --read-data passed; ${#snaps[@]} snapshots restored, every Swamp in a logged state"
