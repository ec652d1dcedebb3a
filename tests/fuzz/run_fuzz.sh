#!/usr/bin/env bash
# One bounded libFuzzer run: run_fuzz.sh TARGET SECONDS WORK_DIR CORPUS [REGRESSIONS]
# New inputs go to WORK_DIR/corpus/<target> (never into the repo); a crash is written to
# WORK_DIR/artifacts/ and fails the test, which prints how to turn it into a regression input.
set -euo pipefail
target=$1 seconds=$2 work=$3 corpus=$4 regressions=${5:-}
name=$(basename "$target")
mkdir -p "$work/corpus/$name" "$work/artifacts"
dirs=("$work/corpus/$name" "$corpus")
[ -d "$regressions" ] && dirs+=("$regressions")
log="$work/$name.log"
status=0
[ -x /usr/bin/llvm-symbolizer-14 ] && export ASAN_SYMBOLIZER_PATH=/usr/bin/llvm-symbolizer-14
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1} \
  "$target" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/$name-" "${dirs[@]}" >"$log" 2>&1 || status=$?
grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^stat::new_units_added" "$log" | sed "s/^/$name /" || true
if [ $status -ne 0 ]; then
  tail -n 60 "$log"
  echo "$name: FAILED; copy the artifact above into tests/fuzz/regressions/$name/ and fix the bug" >&2
fi
exit $status
