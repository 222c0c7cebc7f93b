#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for N seconds each (default 60).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (installed here when missing) and nightly compiler features; on a stable
# toolchain RUSTC_BOOTSTRAP=1 unlocks them. Environment:
#   CARGO_TARGET_DIR   build directory (default fuzz/target, kept out of git)
#   CARGO_BUILD_JOBS   build parallelism (default 2)
#   FUZZ_SANITIZER     address (default) or none
# Corpora, crash inputs and logs go to fuzz/corpus/<target>, fuzz/artifacts/<target> and
# fuzz/logs/<target>.log, all ignored by git. Exits non-zero if any target crashed; replay a
# crash with `cargo fuzz run <target> fuzz/artifacts/<target>/<file>`.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

secs="${1:-60}"
shift || true
if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(ls fuzz_targets | sed -n 's/\.rs$//p' | sort)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "installing cargo-fuzz" >&2
    cargo install --locked cargo-fuzz
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
san="${FUZZ_SANITIZER:-address}"

cargo fuzz build --sanitizer "$san"
mkdir -p logs
failed=()
summary=()
for t in "${targets[@]}"; do
    log="logs/$t.log"
    echo "== $t: ${secs}s (log: fuzz/$log)" >&2
    if cargo fuzz run --sanitizer "$san" "$t" -- \
        -max_total_time="$secs" -print_final_stats=1 >"$log" 2>&1; then
        status=ok
    else
        status=CRASH
        failed+=("$t")
        tail -n 40 "$log" >&2
    fi
    execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)"
    rss="$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)"
    cov="$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 || true)"
    summary+=("$(printf '%-14s %-6s execs=%-10s %-10s peak_rss_mb=%s' \
        "$t" "$status" "${execs:-?}" "${cov:-cov: ?}" "${rss:-?}")")
done
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
    echo "crashed: ${failed[*]}" >&2
    exit 1
fi
