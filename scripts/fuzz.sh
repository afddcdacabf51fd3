#!/usr/bin/env bash
# Runs the libFuzzer targets of fuzz/ (README "Fuzzing") on stable Rust:
#   scripts/fuzz.sh TARGET SECONDS   one target
#   scripts/fuzz.sh all SECONDS      every target, one after another (the CI smoke: a few s)
# Builds once (cargo fuzz, sanitizer none: the one build stable Rust allows; release with
# debug assertions and overflow checks, CARGO_BUILD_JOBS=1 unless set), seeds fuzz/corpus/
# from tests/fixtures/ (scripts/fuzz-seeds.py), then prints one line a target: inputs
# executed, exec/s, crashes (the crashing input is kept in fuzz/artifacts/<target>/).
# FUZZ_RUNS=N stops a target after N inputs if that comes first (the long runs: 10000000).
# Exits 1 when any target crashed. cargo-fuzz comes from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -ne 2 ] || ! [[ $2 =~ ^[0-9]+$ ]]; then
  echo "usage: $0 TARGET|all SECONDS" >&2
  exit 64
fi
which=$1
seconds=$2
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}

all=$(cargo fuzz list)
if [ "$which" = all ]; then
  targets=$all
elif grep -qx "$which" <<<"$all"; then
  targets=$which
else
  echo "fuzz: no target $which (one of: $(echo $all))" >&2
  exit 64
fi

start=$(date +%s)
if [ "$which" = all ]; then cargo fuzz build -s none; else cargo fuzz build -s none "$which"; fi
echo "fuzz: build $(($(date +%s) - start)) s"
python3 scripts/fuzz-seeds.py >/dev/null

bin=fuzz/target/x86_64-unknown-linux-gnu/release
logs=fuzz/logs
mkdir -p "$logs"
failed=0
for t in $targets; do
  mkdir -p "fuzz/artifacts/$t"
  before=$(ls "fuzz/artifacts/$t" | wc -l)
  status=0
  # -timeout: one input taking 10 s is a hang, reported like a crash.
  "$bin/$t" "fuzz/corpus/$t" -max_total_time="$seconds" -runs="${FUZZ_RUNS:--1}" \
    -print_final_stats=1 -timeout=10 \
    -rss_limit_mb=2048 -artifact_prefix="fuzz/artifacts/$t/" >"$logs/$t.log" 2>&1 || status=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log")
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$logs/$t.log")
  crashes=$(($(ls "fuzz/artifacts/$t" | wc -l) - before))
  if [ "$status" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes=1; fi  # died without an artifact
  printf 'fuzz: %-14s inputs %12s  exec/s %8s  crashes %d\n' "$t" "${runs:-?}" "${rate:-?}" "$crashes"
  if [ "$crashes" -ne 0 ]; then
    failed=1
    grep -m1 -E "panicked at|ERROR: libFuzzer" "$logs/$t.log" | sed 's/^/fuzz:   /' || true
    ls -t "fuzz/artifacts/$t" | head -1 | sed "s|^|fuzz:   input fuzz/artifacts/$t/|"
  fi
done
echo "fuzz: $(echo $targets | wc -w) targets, $seconds s each, $(($(date +%s) - start)) s in all"
exit $failed
