#!/bin/sh
# Run the whole test suite: C unit tests, shell tests, Python reference tests.
# Every check prints "ok - NAME" or "not ok - NAME"; this counts them and ends
# with "N passed, N failed". Exit status 1 on any failure.
#   sh tests/run.sh [PATTERN]          only units whose file name contains PATTERN
#   sh tests/run.sh --full [PATTERN]   the full-size model tests in tests/full/
#                                      (minutes; `make check-full`)
# Environment: WSAC_BIN (default bin/), WSAC_BUILD (default build/)
cd "$(dirname "$0")/.." || exit 2
ROOT=$(pwd)
BUILD=${WSAC_BUILD:-$ROOT/build}
export WSAC_BIN=${WSAC_BIN:-$ROOT/bin}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=/usr/bin/python3
full=0
if [ "${1:-}" = "--full" ]; then full=1; shift; fi
pat=${1:-}
log=$(mktemp); trap 'rm -f "$log"' EXIT
passed=0; failed=0; failures=""

run_unit() {  # NAME CMD...
  name=$1; shift
  case "$name" in *"$pat"*) ;; *) return ;; esac
  start=$(date +%s)
  "$@" > "$log" 2>&1
  rc=$?
  p=$(grep -ac '^ok - ' "$log"); f=$(grep -ac '^not ok - ' "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then
    f=1; echo "not ok - $name exited with status $rc" >> "$log"
  fi
  passed=$((passed + p)); failed=$((failed + f))
  echo "$name: $p passed, $f failed ($(( $(date +%s) - start ))s)"
  grep '^not ok - ' "$log" | sed 's/^/    /'
  grep '^# ' "$log" | sed 's/^/    /'
  if [ "$f" -gt 0 ]; then
    failures="$failures $name"
    grep -v '^ok - \|^not ok - \|^# ' "$log" | tail -n 15 | sed 's/^/    | /'
  fi
}

if [ $full -eq 1 ]; then
  for t in tests/full/test_*.py; do
    [ -f "$t" ] && run_unit "full/$(basename "$t" .py)" "$PY" "$t"
  done
else
  for t in "$BUILD"/tests/*; do
    [ -x "$t" ] && run_unit "c/$(basename "$t")" "$t"
  done
  for t in tests/sh/t_*.sh; do
    [ -f "$t" ] && run_unit "sh/$(basename "$t" .sh)" sh "$t"
  done
  for t in tests/py/test_*.py; do
    [ -f "$t" ] && run_unit "py/$(basename "$t" .py)" "$PY" "$t"
  done
fi

[ -n "$failures" ] && echo "failing units:$failures"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
