#!/usr/bin/env bash
# Builds every cargo-fuzz target of fuzz/Cargo.toml and runs each for SECONDS (default 60),
# one after another, growing fuzz/corpus/<target>. Prints one line per target — seconds,
# executions, corpus size (files, seeds included), crashes — and exits 1 if any target
# crashed (panic, overflow, out-of-memory, a 10 s timeout); the inputs are in
# fuzz/artifacts/<target>/, the logs in fuzz/target/run-all/.
#
# Usage: fuzz/run-all.sh [SECONDS] [TARGET...]
#   FUZZ_MAX_LEN  largest input in bytes (default 4096)
#   FUZZ_LOCK     a file to flock around the build and each run (shared build machines)
#   FUZZ_DEV=1    build the targets unoptimized (cargo fuzz build --dev): a shorter
#                 build, slower runs (.ci/run's smoke run; campaigns use the default)
# Needs the nightly toolchain and cargo-fuzz (cargo install --locked cargo-fuzz).
set -uo pipefail
cd "$(dirname "$0")"

seconds=${1:-60}
shift || true
case $seconds in '' | *[!0-9]*) echo "usage: $0 [SECONDS] [TARGET...]" >&2; exit 2 ;; esac

locked() {
    if [ -n "${FUZZ_LOCK:-}" ]; then flock "$FUZZ_LOCK" "$@"; else "$@"; fi
}
cargo_() { locked cargo +nightly "$@"; }

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo_ fuzz list)
fi
[ ${#targets[@]} -gt 0 ] || { echo "no fuzz targets found" >&2; exit 2; }

logs=target/run-all
mkdir -p "$logs"
profile=release
flags=()
if [ "${FUZZ_DEV:-0}" = 1 ]; then
    profile=debug
    flags=(--dev)
fi
build() {
    if [ $# -gt 0 ]; then
        for t in "$@"; do cargo_ fuzz build "${flags[@]}" "$t" || return; done
    else
        cargo_ fuzz build "${flags[@]}"
    fi
}
if ! build "$@" >"$logs/build.log" 2>&1; then
    tail -20 "$logs/build.log" >&2
    echo "fuzz targets do not build (log: fuzz/$logs/build.log)" >&2
    exit 1
fi

bin=target/$(rustc +nightly -vV | sed -n 's/^host: //p')/$profile
failed=0
printf '%-14s %7s %12s %8s  %s\n' target seconds executions corpus crashes
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    marker=$(mktemp)
    start=$(date +%s)
    # The binaries built above, as `cargo fuzz run` runs them, so that every target runs
    # the same build even if the sources change meanwhile.
    ASAN_OPTIONS=detect_odr_violation=0 locked "$bin/$t" "corpus/$t" -artifact_prefix="artifacts/$t/" \
        -max_total_time="$seconds" -max_len="${FUZZ_MAX_LEN:-4096}" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$t.log" 2>&1
    status=$?
    # The time libFuzzer ran, not counting a wait for the lock.
    elapsed=$(sed -n 's/^Done [0-9]* runs in \([0-9]*\) second.*/\1/p' "$logs/$t.log" | tail -1)
    elapsed=${elapsed:-$(($(date +%s) - start))}
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    corpus=$(find "corpus/$t" -type f | wc -l)
    found=$(find "artifacts/$t" -type f -newer "$marker" \
        \( -name 'crash-*' -o -name 'oom-*' -o -name 'timeout-*' -o -name 'leak-*' \) | sort)
    rm -f "$marker"
    crashes=$(printf '%s' "$found" | grep -c . || true)
    if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then
        crashes="exit $status" # died without an artifact (build error, signal)
    fi
    printf '%-14s %7s %12s %8s  %s\n' "$t" "$elapsed" "${execs:-?}" "$corpus" "$crashes"
    if [ "$status" -ne 0 ] || [ -n "$found" ]; then
        failed=1
        for f in $found; do echo "    fuzz/$f" ; done
        grep -m1 -A3 -E '^thread .* panicked|ERROR: libFuzzer' "$logs/$t.log" | sed 's/^/    /'
    fi
done
exit "$failed"
