#!/bin/sh
# Run the libFuzzer harnesses, each for a while, on a copy of its seed corpus.
#   sh tests/fuzz/run.sh [SECONDS_PER_HARNESS] [NAME...]
# Defaults: 8 seconds each, every harness (tests/fuzz/fuzz_NAME.c), so the
# whole run takes about a minute. Builds first (tests/fuzz/build.sh).
# The committed corpus (tests/fuzz/corpus/NAME/) is copied to a scratch
# directory, so the repository is never modified. Prints per harness the
# executions, the final coverage (cov: edges, ft: features, as libFuzzer's
# last status line gives them), the corpus size, and the crashes; exits 1 if
# any harness crashed, leaked, hung (-timeout) or ran out of memory, with the
# failing inputs kept in build-fuzz/artifacts/NAME/ and the command that
# replays them.
# Environment:
#   FUZZ_FLAGS     more libFuzzer flags for every harness (e.g. -runs=10000000)
#   FUZZ_TIMEOUT   seconds one input may take (default 20)
#   FUZZ_KEEP=DIR  keep each grown corpus in DIR/NAME/ (e.g. to merge seeds)
#   FUZZ_LOGS=DIR  keep each libFuzzer log in DIR/NAME.log
# Per-harness flags may be given in tests/fuzz/NAME.options (one per line).
set -u
cd "$(dirname "$0")/../.." || exit 2
ROOT=$(pwd)
secs=${1:-8}
[ $# -gt 0 ] && shift
case "$secs" in ''|*[!0-9]*) echo "usage: sh tests/fuzz/run.sh [SECONDS_PER_HARNESS] [NAME...]" >&2; exit 1 ;; esac
if [ $# -gt 0 ]; then names="$*"; else
  names=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)
fi
sh tests/fuzz/build.sh $names || { echo "fuzz: build failed" >&2; exit 2; }

scratch=$(mktemp -d "${TMPDIR:-/tmp}/wsac-fuzz.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
export WSAC_ROOT="$ROOT"
# UBSan: any report aborts (the objects are built with -fno-sanitize-recover)
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:allocator_may_return_null=0}
failed=""
total_start=$(date +%s)
printf '%-12s %12s %6s %8s %8s %8s %s\n' harness executions secs cov ft corpus crashes
for name in $names; do
  bin=build-fuzz/fuzz_$name
  corpus=$scratch/$name
  art=$ROOT/build-fuzz/artifacts/$name
  mkdir -p "$corpus" "$art"
  [ -d tests/fuzz/corpus/$name ] && cp tests/fuzz/corpus/$name/* "$corpus"/ 2>/dev/null
  flags=""
  [ -f tests/fuzz/$name.dict ] && flags="$flags -dict=tests/fuzz/$name.dict"
  [ -f tests/fuzz/$name.options ] && flags="$flags $(grep -v '^#' tests/fuzz/$name.options | tr '\n' ' ')"
  log=$scratch/$name.log
  start=$(date +%s)
  touch "$scratch/start-$name"
  # -close_fd_mask=3: the parsers' own messages (warnings on stderr) are not
  # fuzzing output; libFuzzer and the sanitizers still report
  # shellcheck disable=SC2086
  "$bin" -max_total_time="$secs" -timeout="${FUZZ_TIMEOUT:-20}" -rss_limit_mb=2048 \
    -print_final_stats=1 -close_fd_mask=3 -artifact_prefix="$art/" $flags ${FUZZ_FLAGS:-} \
    "$corpus" > "$log" 2>&1
  rc=$?
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  last=$(grep -a -E '^#[0-9]+' "$log" | tail -n 1)
  cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
  ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
  corp=$(echo "$last" | sed -n 's/.*corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p')
  # failing inputs libFuzzer saved in this run (slow-unit- files are not failures)
  crashes=$(find "$art" -type f -newer "$scratch/start-$name" \( -name 'crash-*' -o -name 'leak-*' \
    -o -name 'timeout-*' -o -name 'oom-*' \) | wc -l)
  printf '%-12s %12s %6s %8s %8s %8s %s\n' "$name" "${execs:-?}" "$took" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$crashes"
  if [ -n "${FUZZ_KEEP:-}" ]; then mkdir -p "$FUZZ_KEEP/$name" && cp "$corpus"/* "$FUZZ_KEEP/$name"/ 2>/dev/null; fi
  if [ -n "${FUZZ_LOGS:-}" ]; then mkdir -p "$FUZZ_LOGS" && cp "$log" "$FUZZ_LOGS/$name.log"; fi
  if [ $rc -ne 0 ] || [ "$crashes" -gt 0 ] || [ -z "$execs" ]; then
    failed="$failed $name"
    echo "  $name: libFuzzer exited with status $rc; the end of its log:"
    grep -a -v '^#[0-9]\|^INFO:\|^\s*$' "$log" | tail -n 40 | sed 's/^/  | /'
    find "$art" -type f -newer "$scratch/start-$name" | while read -r a; do
      echo "  failing input kept: $a   (replay: $bin $a)"
    done
  fi
done
n=$(echo $names | wc -w); nf=$(echo $failed | wc -w)
echo "fuzz: $(( n - nf )) passed, $nf failed ($n harnesses in $(( $(date +%s) - total_start )) s${failed:+; FAILED:$failed})"
[ -z "$failed" ]
