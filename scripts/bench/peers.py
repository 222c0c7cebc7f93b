#!/usr/bin/env python3
"""Helpers of scripts/bench-peers.sh (standard library only).

  peers.py measure --result F --stdout F --stderr F -- CMD...
      Runs CMD under /usr/bin/time and writes one line to F:
      wall_s user_s sys_s maxrss_kib rchar wchar read_bytes exit_code
      rchar/wchar are all bytes the command (and its children) read or wrote through system
      calls, page cache or not; read_bytes is what it made the block layer read (cold caches).
      They come from /proc/PID/io of the `time` process, read while it is a zombie: the kernel
      adds a child's I/O counters to its parent when the parent reaps it.
  peers.py parse TOOL STEP STDOUT_FILE
      Prints "SOURCE_READ ADDED" from a tool's own output ("-" where it reports nothing).
  peers.py daydiff OLD NEW
      Prints a JSON summary of what changed between two copies of a data root: bytes appended
      to files that kept their old content as a prefix, bytes of files rewritten otherwise,
      bytes of new and of deleted files. (appended + rewritten + new is the new content a
      backup of NEW must store at least, before compression, given one of OLD.)
  peers.py report --tsv F --meta F --results benches/RESULTS.md --charts DIR
      Regenerates the side-by-side section of RESULTS.md (and its PNG charts) from the TSV;
      a hand-written peers-notes.md next to the TSV (the analysis) is included as it is.
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time

SECTION = "## Side-by-side with restic, borg and rustic"

# Step id -> (title, what the target says, kind)
STEPS = [
    ("init", "init (create an encrypted repository)"),
    ("backup-initial", "1. initial backup"),
    ("backup-unchanged", "2. second backup, nothing changed"),
    ("backup-churn", "3. backup after one day of churn"),
    ("restore-full", "4. full restore into an empty folder"),
    ("restore-one", "5. restore of a single Swamp (one file)"),
    ("verify", "6. full verification reading all data"),
    ("backup-appends", "7a. backup after an appends-only day"),
    ("backup-compaction", "7b. backup after a compaction-only day"),
    ("forget-prune", "8. forget all but the last snapshot + prune"),
    ("backup-alone", "9a. backup of a churn day (many forgotten snapshots), alone"),
    ("backup-during-prune", "9b. the same backup while a prune runs"),
    ("prune-during-backup", "9c. that prune, beside the backup"),
    ("prune-alone", "9d. that prune alone (on a copy of the repository)"),
]
STEP_TITLE = dict(STEPS)
TOOLS = ["hydrabackup", "restic", "borg", "rustic"]


# ------------------------------------------------------------------------------------------ measure
def cmd_measure(a):
    timef = a.result + ".time"
    argv = ["/usr/bin/time", "-f", "%e %U %S %M", "-o", timef] + a.command
    with open(a.stdout, "wb") as out, open(a.stderr, "wb") as err:
        t0 = time.monotonic()
        p = subprocess.Popen(argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)
        wall = time.monotonic() - t0
        io = {}
        try:
            with open(f"/proc/{p.pid}/io") as f:
                for line in f:
                    k, v = line.split(":")
                    io[k.strip()] = int(v)
        except OSError:
            pass
        rc = p.wait()
    fields = open(timef).read().split()
    # GNU time prints "Command exited with non-zero status N" before the figures.
    user, sys_, rss = fields[-3], fields[-2], fields[-1]
    os.unlink(timef)
    with open(a.result, "w") as f:
        f.write(
            f"{wall:.3f} {user} {sys_} {rss} {io.get('rchar', -1)} {io.get('wchar', -1)} "
            f"{io.get('read_bytes', -1)} {rc}\n"
        )
    return 0


# ------------------------------------------------------------------------------------------ parse
def last_json(text):
    """The last JSON document of a tool's stdout (restic prints JSON lines; the others one doc)."""
    text = text.strip()
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        pass
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                d = json.loads(line)
            except ValueError:
                continue
            if d.get("message_type", "summary") == "summary":
                return d
    return None


def cmd_parse(a):
    try:
        d = last_json(open(a.stdout, errors="replace").read())
    except OSError:
        d = None
    read, added = "-", "-"
    if d is not None and a.step.startswith("backup"):
        if a.tool == "hydrabackup":
            read, added = d.get("bytes_read", "-"), d.get("bytes_stored", "-")
        elif a.tool in ("restic", "rustic"):
            # restic: data_added = new blob bytes before compression; rustic reports the same
            # field (and data_added_packed, after compression).
            added = d.get("data_added_packed", d.get("data_added", "-"))
            if "summary" in d and isinstance(d["summary"], dict):
                s = d["summary"]
                added = s.get("data_added_packed", s.get("data_added", "-"))
        elif a.tool == "borg":
            added = d.get("archive", {}).get("stats", {}).get("deduplicated_size", "-")
    print(read, added)
    return 0


# ------------------------------------------------------------------------------------------ daydiff
def files_of(root):
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            st = os.lstat(p)
            if os.path.isfile(p) and not os.path.islink(p):
                out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns, p)
    return out


def same_prefix(old_path, new_path, n, skip=0):
    """Whether the first n bytes of both files agree, not counting the first `skip`."""
    with open(old_path, "rb") as a, open(new_path, "rb") as b:
        a.seek(skip)
        b.seek(skip)
        n -= skip
        while n > 0:
            k = min(n, 1 << 20)
            x, y = a.read(k), b.read(k)
            if x != y or len(x) < k:
                return False
            n -= k
    return True


def cmd_daydiff(a):
    old, new = files_of(a.old), files_of(a.new)
    r = dict(appended=0, appended_files=0, rewritten=0, rewritten_files=0, new=0, new_files=0,
             deleted=0, deleted_files=0, unchanged_files=0)
    for rel, (size, mtime, path) in new.items():
        o = old.get(rel)
        if o is None:
            r["new"] += size
            r["new_files"] += 1
        elif o[0] == size and o[1] == mtime:
            r["unchanged_files"] += 1
        # An append to a .hyd file also rewrites its 64-byte header (counts, ModifiedAt).
        elif size >= o[0] and same_prefix(o[2], path, o[0], 64 if rel.endswith(".hyd") else 0):
            if size > o[0]:
                r["appended"] += size - o[0]
                r["appended_files"] += 1
            else:
                r["unchanged_files"] += 1
        else:
            r["rewritten"] += size
            r["rewritten_files"] += 1
    for rel, (size, _, _) in old.items():
        if rel not in new:
            r["deleted"] += size
            r["deleted_files"] += 1
    print(json.dumps(r))
    return 0


# ------------------------------------------------------------------------------------------ report
def num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def fmt_bytes(v):
    v = num(v)
    if v is None:
        return "–"
    sign = "-" if v < 0 else ""
    v = abs(v)
    for unit, div in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if v >= div:
            return f"{sign}{v / div:.2f} {unit}" if v / div < 100 else f"{sign}{v / div:.0f} {unit}"
    return f"{sign}{v:.0f} B"


def fmt_s(v):
    v = num(v)
    if v is None:
        return "–"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}"


def fmt_mib(kib):
    v = num(kib)
    return "–" if v is None else f"{v / 1024:.0f}" if v >= 10240 else f"{v / 1024:.1f}"


def fmt_ratio(r, better_high=True):
    if r is None or math.isnan(r) or math.isinf(r):
        return "–"
    return f"{r:.2f}×"


def load_tsv(path):
    rows = []
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            if not line.strip():
                continue
            rows.append(dict(zip(header, line.rstrip("\n").split("\t"))))
    return rows


def best_peer(rows, key, lower_is_better=True):
    """(tool, value) of the best peer (not hydrabackup) by key among rows that succeeded."""
    cands = [
        (r["tool"], num(r[key]))
        for r in rows
        if r["tool"] != "hydrabackup" and r["status"] == "ok" and num(r[key]) is not None
    ]
    if not cands:
        return None, None
    return (min if lower_is_better else max)(cands, key=lambda c: c[1])


def hb_row(rows):
    for r in rows:
        if r["tool"] == "hydrabackup":
            return r
    return None


def gnuplot_chart(path, title, ylabel, steps, tools, values, logscale=False):
    """Clustered bars: one cluster per step, one bar per tool."""
    if shutil.which("gnuplot") is None:
        return False
    dat = path + ".dat"
    with open(dat, "w") as f:
        for s in steps:
            f.write(s + "\t" + "\t".join(
                ("%.6g" % values[(s, t)]) if values.get((s, t)) is not None else "NaN"
                for t in tools) + "\n")
    colors = {"hydrabackup": "#1b9e77", "restic": "#7570b3", "borg": "#d95f02", "rustic": "#e7298a"}
    plots = ", ".join(
        f"'{dat}' using {i + 2}:xtic(1) title '{t}' lc rgb '{colors.get(t, '#666666')}'"
        for i, t in enumerate(tools))
    script = f"""
set terminal pngcairo size 1100,520 noenhanced font 'sans,10'
set output '{path}'
set title '{title}'
set ylabel '{ylabel}'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.9 border -1
set boxwidth 0.9
set xtics rotate by -25
set key outside right top vertical
set grid ytics
{'' if logscale else 'set yrange [0:*]'}
{'set logscale y' if logscale else ''}
plot {plots}
"""
    r = subprocess.run(["gnuplot"], input=script, text=True, capture_output=True)
    os.unlink(dat)
    if r.returncode != 0:
        sys.stderr.write(r.stderr)
        return False
    return True


def cmd_report(a):
    rows = load_tsv(a.tsv)
    meta = json.load(open(a.meta))
    modes = [m for m in ("warm", "cold") if any(r["mode"] == m for r in rows)]
    tools = [t for t in TOOLS if any(r["tool"] == t for r in rows)]
    steps = [s for s, _ in STEPS if any(r["step"] == s for r in rows)]
    by = {}
    for r in rows:
        by.setdefault((r["mode"], r["step"]), []).append(r)

    out = []
    w = out.append
    w(SECTION)
    w("")
    w(f"Generated by `scripts/bench-peers.sh` on {meta['date']} from `benches/peers.tsv` "
      "(raw figures, one row per tool, step and page-cache state). Re-run the same command "
      "line to regenerate this section; the criterion results above are not touched by it.")
    w("")
    w("```")
    w(meta["command"])
    w("```")
    w("")
    if meta.get("quick"):
        w("**This is a `--quick` run** (small data set): the figures show the shape, not the "
          "full-size result.")
        w("")
    load = meta.get("load", {})
    w("### Machine and set-up")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {meta['cpu']} ({meta['cores']} cores) |")
    w(f"| memory | {meta['memory']} |")
    w(f"| disk | {meta['disk']} |")
    w(f"| kernel | {meta['kernel']} |")
    w(f"| load average (1/5/15 min) | before: {load.get('before', '?')}; after: "
      f"{load.get('after', '?')} |")
    for t in tools:
        w(f"| {t} | {meta['versions'].get(t, '?')} |")
    w(f"| threads | {meta['threads']} for every tool (hydrabackup: its pools sized to the cores; "
      "restic: GOMAXPROCS; rustic: RAYON_NUM_THREADS; borg 1.x is single-threaded) |")
    w(f"| encryption | hydrabackup: AES-256-GCM (default Argon2id); restic: AES-256-CTR+Poly1305 "
      "(repository v2); borg: `repokey-blake2` (AES-CTR + BLAKE2b); rustic: as restic |")
    w("| compression | each tool's default: hydrabackup zstd 1; restic and rustic zstd `auto`; "
      "borg lz4 |")
    w(f"| page cache | {meta['cache_note']} |")
    w("")
    ds = meta["dataset"]
    w("### Data set")
    w("")
    w(f"`hydgen gen --seed {ds['seed']} --swamps {ds['swamps']} --size {ds['size']} "
      f"--v2-percent {ds['v2_percent']} --v1-percent {ds['v1_percent']}`: "
      f"{ds['files']} files, {fmt_bytes(ds['bytes'])} ({ds['bytes']} bytes); {ds['gen_report']}.")
    w("")
    w("Every tool backs up its own `cp -a` copy of this root, always at the same path, and the "
      "churn days are applied to that copy with `hydgen churn` and fixed seeds, so every tool "
      "sees the same bytes (the script checks a content digest of the copy against a reference "
      "after every day, and the restored tree against it after the full restore).")
    w("")
    w("| day | hydgen churn | what it did | appended | rewritten | new files | deleted | "
      "new content | data root after |")
    w("|---|---|---|---|---|---|---|---|---|")
    for d in ds["days"]:
        x = d.get("diff", {})
        content = x.get("appended", 0) + x.get("rewritten", 0) + x.get("new", 0)
        w(f"| {d['name']} | `{d['args']}` | {d['report']} | "
          f"{fmt_bytes(x.get('appended'))} ({x.get('appended_files', 0)} files) | "
          f"{fmt_bytes(x.get('rewritten'))} ({x.get('rewritten_files', 0)}) | "
          f"{fmt_bytes(x.get('new'))} ({x.get('new_files', 0)}) | "
          f"{fmt_bytes(x.get('deleted'))} ({x.get('deleted_files', 0)}) | "
          f"{fmt_bytes(content)} | {fmt_bytes(d['bytes'])} |")
    w("")
    w("Appended = bytes added to files whose old content is still their prefix (apart from the "
      "64-byte `.hyd` header an append rewrites); rewritten = "
      "whole size of files changed otherwise (compactions, which re-encode every live entry); "
      "new content = appended + rewritten + new files: what a backup must store at least, before "
      "compression and before any deduplication against older versions.")
    w("")
    w(f"Single-file restore: `{ds['one_file']}` ({fmt_bytes(ds['one_size'])}), the largest "
      "`.hyd` file after the churn day.")
    w("")

    # Physical limits.
    lim = [r for r in rows if r["tool"] == "(limit)"]
    if lim:
        w("### Physical limits of this machine")
        w("")
        w("| what | cache | wall s | MiB/s |")
        w("|---|---|---|---|")
        for r in lim:
            wall = num(r["wall_s"])
            rate = ds["bytes"] / wall / (1 << 20) if wall else None
            w(f"| {r['note']} | {r['mode']} | {fmt_s(wall)} | "
              f"{'–' if rate is None else f'{rate:.0f}'} |")
        w("")

    # Targets.
    w("### Targets")
    w("")
    w("Ratios are against the best peer for that figure (the fastest, smallest or leanest of the "
      "other tools in the same run and page-cache state). Speed-up = best peer's wall time / "
      "hydrabackup's.")
    w("")
    w("| target | " + " | ".join(f"{m} cache" for m in modes) + " |")
    w("|---|" + "---|" * len(modes))
    verdicts = []

    def speed(mode, step):
        rs = by.get((mode, step), [])
        h = hb_row(rs)
        bt, bv = best_peer(rs, "wall_s")
        if h is None or h["status"] != "ok" or bv is None or not num(h["wall_s"]):
            return None, bt
        return bv / num(h["wall_s"]), bt

    def verdict(ok):
        return "**met**" if ok else "**missed**"

    def rate(mode, step):
        r = next((x for x in lim if x["mode"] == mode and x["step"] == step), None)
        wall = num(r["wall_s"]) if r else None
        return ds["bytes"] / wall if wall else None

    def floor_s(mode, step):
        """The least time the disk allows hydrabackup for this step (warm: source reads are
        free), from this run's own read and write measurements; None where not meaningful."""
        h = hb_row(by.get((mode, step), []))
        rd, wr = rate(mode, "read-seq"), rate(mode, "write")
        if h is None or not rd or not wr:
            return None
        repo = num(h["repo_bytes"]) or 0
        if step == "backup-initial":
            return max(ds["bytes"] / rd if mode == "cold" else 0, (num(h["repo_growth"]) or 0) / wr)
        if step == "restore-full":
            return max(repo / rd if mode == "cold" else 0, ds["bytes"] / wr)
        if step == "verify":
            return repo / rd if mode == "cold" else None
        return None

    for label, step, need in (
        ("initial backup ≥ 3× faster", "backup-initial", 3.0),
        ("unchanged re-backup ≥ 3× faster", "backup-unchanged", 3.0),
        ("churn-day re-backup ≥ 3× faster", "backup-churn", 3.0),
        ("full restore ≥ 2× faster", "restore-full", 2.0),
        ("full verify ≥ 2× faster", "verify", 2.0),
    ):
        cells = []
        for m in modes:
            r, bt = speed(m, step)
            if r is None:
                cells.append("–")
                continue
            f = floor_s(m, step)
            best = next((num(x["wall_s"]) for x in by.get((m, step), []) if x["tool"] == bt), None)
            ceil = f" (disk ceiling {best / f:.1f}×)" if f and best else ""
            rs = by.get((m, step), [])
            pc = next((num(x["cpu_s"]) for x in rs if x["tool"] == bt), None)
            hc = num(hb_row(rs)["cpu_s"])
            cpu = f", CPU time {pc / hc:.2f}× less" if pc and hc else ""
            cells.append(f"{verdict(r >= need)}: {r:.2f}× (vs {bt}{cpu}){ceil}")
            verdicts.append((label, m, r >= need))
        w(f"| {label} | " + " | ".join(cells) + " |")

    # Memory: every measured step; the worst ratio decides.
    cells = []
    for m in modes:
        worst = None
        for s in steps:
            rs = by.get((m, s), [])
            h = hb_row(rs)
            bt, bv = best_peer(rs, "maxrss_kib")
            if h is None or h["status"] != "ok" or not bv:
                continue
            r = num(h["maxrss_kib"]) / bv
            if worst is None or r > worst[0]:
                worst = (r, s, bt)
        if worst is None:
            cells.append("–")
            continue
        ok = worst[0] <= 0.5
        verdicts.append(("peak memory ≤ ½ of the best peer", m, ok))
        cells.append(f"{verdict(ok)}: worst step {worst[1]} at {worst[0]:.2f}× of {worst[2]}")
    w("| peak memory ≤ ½ of the best peer, every step | " + " | ".join(cells) + " |")

    cells = []
    for m in modes:
        rs = by.get((m, "backup-churn"), [])
        h = hb_row(rs)
        bt, bv = best_peer(rs, "repo_growth")
        if h is None or h["status"] != "ok" or not bv:
            cells.append("–")
            continue
        r = num(h["repo_growth"]) / bv
        ok = r <= 0.5
        verdicts.append(("churn-day repository growth ≤ ½ of the best peer", m, ok))
        cells.append(f"{verdict(ok)}: {fmt_bytes(h['repo_growth'])} = {r:.2f}× of {bt}'s "
                     f"{fmt_bytes(bv)}")
    w("| repository growth after the churn day ≤ ½ of the best peer | " + " | ".join(cells) + " |")

    appended = ds.get("appended_bytes")
    cells = []
    for m in modes:
        h = hb_row(by.get((m, "backup-appends"), []))
        if h is None or h["status"] != "ok" or not appended:
            cells.append("–")
            continue
        r = num(h["repo_growth"]) / appended
        ok = r <= 1.5
        verdicts.append(("appends-only growth ≤ 1.5× appended bytes", m, ok))
        cells.append(f"{verdict(ok)}: {fmt_bytes(h['repo_growth'])} for "
                     f"{fmt_bytes(appended)} appended = {r:.2f}×")
    w("| repository growth after an appends-only day ≤ 1.5× the appended bytes | "
      + " | ".join(cells) + " |")
    w("")
    w("*Disk ceiling*: the largest speed-up over that peer that this machine's disk would allow "
      "even if hydrabackup used no CPU at all: its best peer's time divided by the time to write "
      "what hydrabackup wrote (repository growth for a backup, the data set for a restore) at "
      "the sequential write speed measured above, or, cold, to read what it must read at the "
      "measured read speed, whichever is longer. Noisy: the virtual disk's speed varies with "
      "the host.")
    w("")
    met = sum(1 for v in verdicts if v[2])
    w(f"{met} of {len(verdicts)} target checks met.")
    w("")
    day_step = {"churn": "backup-churn", "appends": "backup-appends",
                "compaction": "backup-compaction"}
    growth_lines = []
    for d in ds["days"]:
        x = d.get("diff")
        step = day_step.get(d["name"])
        if not x or not step:
            continue
        content = x["appended"] + x["rewritten"] + x["new"]
        if not content:
            continue
        for m in modes:
            parts = [f"{r['tool']} {num(r['repo_growth']) / content:.2f}×"
                     for r in by.get((m, step), [])
                     if r["status"] == "ok" and num(r["repo_growth"]) is not None]
            if parts:
                growth_lines.append(f"| {d['name']} | {m} | {fmt_bytes(content)} | "
                                    + ", ".join(parts) + " |")
    if growth_lines:
        w("Repository growth in the backup after each day ÷ that day's new content:")
        w("")
        w("| day | cache | new content | growth ÷ new content |")
        w("|---|---|---|---|")
        for line in growth_lines:
            w(line)
        w("")

    # Charts.
    charts = []
    os.makedirs(a.charts, exist_ok=True)
    chart_steps = [s for s in steps]
    for m in modes:
        vals = {(s, r["tool"]): num(r["wall_s"]) for s in chart_steps for r in by.get((m, s), [])
                if r["status"] == "ok"}
        p = os.path.join(a.charts, f"peers-time-{m}.png")
        if gnuplot_chart(p, f"Wall time per step, {m} page cache (log scale; lower is better)",
                         "seconds", chart_steps, tools, vals, logscale=True):
            charts.append((f"Wall time, {m} cache", p))
    m = modes[0] if modes else None
    if m:
        vals = {(s, r["tool"]): num(r["maxrss_kib"]) / 1024 for s in chart_steps
                for r in by.get((m, s), []) if r["status"] == "ok" and num(r["maxrss_kib"])}
        p = os.path.join(a.charts, "peers-memory.png")
        if gnuplot_chart(p, f"Peak RSS per step, {m} page cache (lower is better)", "MiB",
                         chart_steps, tools, vals):
            charts.append(("Peak memory (RSS)", p))
    if charts:
        w("### Charts")
        w("")
        base = os.path.dirname(os.path.abspath(a.results))
        for title, p in charts:
            w(f"![{title}]({os.path.relpath(os.path.abspath(p), base)})")
            w("")

    # Hand-written analysis kept next to the TSV, so that regenerating keeps it.
    notes = os.path.join(os.path.dirname(os.path.abspath(a.tsv)), "peers-notes.md")
    if os.path.exists(notes):
        w(open(notes).read().rstrip())
        w("")

    # Per-step tables.
    w("### Every step")
    w("")
    w("Columns: wall time; CPU time (user+sys); peak resident memory; bytes read from the source "
      "as the tool reports it (only hydrabackup does); all bytes the process read through system "
      "calls, source and repository and cache (`rchar`); repository size after the step "
      "(`du -sb`) and its growth in the step; the tool's own figure for data added (hydrabackup: "
      "bytes stored in packs; restic: new blob bytes before compression; borg: deduplicated "
      "compressed bytes). The `hydrabackup ÷ best` row divides hydrabackup's figure by the best "
      "peer's (below 1 is better for hydrabackup), `best ÷ hydrabackup` for time is the speed-up.")
    w("")
    for s in steps:
        w(f"#### {STEP_TITLE.get(s, s)}")
        w("")
        w("| cache | tool | wall s | CPU s | peak RSS MiB | source read (tool) | read (rchar) | "
          "repo size | repo growth | added (tool) |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for m in modes:
            rs = by.get((m, s), [])
            for t in tools:
                r = next((x for x in rs if x["tool"] == t), None)
                if r is None:
                    continue
                if r["status"] != "ok":
                    w(f"| {m} | {t} | {r['status']} | | | | | | | {r.get('note', '')} |")
                    continue
                w(f"| {m} | {t} | {fmt_s(r['wall_s'])} | {fmt_s(r['cpu_s'])} | "
                  f"{fmt_mib(r['maxrss_kib'])} | {fmt_bytes(r['src_read'])} | "
                  f"{fmt_bytes(r['rchar'])} | {fmt_bytes(r['repo_bytes'])} | "
                  f"{fmt_bytes(r['repo_growth'])} | {fmt_bytes(r['added'])} |")
            h = hb_row(rs)
            if h is not None and h["status"] == "ok":
                cells = []
                for key, lower in (("wall_s", True), ("cpu_s", True), ("maxrss_kib", True)):
                    bt, bv = best_peer(rs, key)
                    hv = num(h[key])
                    if key == "wall_s":
                        cells.append(f"{bv / hv:.2f}× faster" if bv and hv else "–")
                    else:
                        cells.append(f"{hv / bv:.2f}×" if bv and hv is not None else "–")
                bt, bv = best_peer(rs, "repo_growth")
                hv = num(h["repo_growth"])
                growth = f"{hv / bv:.2f}×" if bv and bv > 0 and hv is not None else "–"
                w(f"| {m} | *hydrabackup ÷ best* | {cells[0]} | {cells[1]} | {cells[2]} | | | | "
                  f"{growth} | |")
        w("")

    section = "\n".join(out).rstrip() + "\n"
    write_section(a.results, section)
    return 0


def write_section(path, section):
    """Replaces our section of RESULTS.md (up to the next level-2 heading), keeping the rest."""
    try:
        text = open(path).read()
    except FileNotFoundError:
        text = "# Benchmark results\n\n"
    lines = text.splitlines(keepends=True)
    start = next((i for i, l in enumerate(lines) if l.rstrip() == SECTION), None)
    if start is None:
        if text and not text.endswith("\n"):
            text += "\n"
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines))
                    if lines[i].startswith("## ")), len(lines))
        rest = "".join(lines[end:])
        text = "".join(lines[:start]) + section + ("\n" + rest if rest else "")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure")
    m.add_argument("--result", required=True)
    m.add_argument("--stdout", required=True)
    m.add_argument("--stderr", required=True)
    m.add_argument("command", nargs=argparse.REMAINDER)
    p = sub.add_parser("parse")
    p.add_argument("tool")
    p.add_argument("step")
    p.add_argument("stdout")
    d = sub.add_parser("daydiff")
    d.add_argument("old")
    d.add_argument("new")
    r = sub.add_parser("report")
    r.add_argument("--tsv", required=True)
    r.add_argument("--meta", required=True)
    r.add_argument("--results", required=True)
    r.add_argument("--charts", required=True)
    a = ap.parse_args()
    if a.cmd == "measure":
        a.command = a.command[1:] if a.command[:1] == ["--"] else a.command
        return cmd_measure(a)
    if a.cmd == "parse":
        return cmd_parse(a)
    if a.cmd == "daydiff":
        return cmd_daydiff(a)
    return cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
