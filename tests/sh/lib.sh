# Shell test helpers: source from tests/sh/*.sh. Prints "ok - NAME" /
# "not ok - NAME: detail" lines that tests/run.sh counts.
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${WSAC_BIN:-$ROOT/bin}
PY=/usr/bin/python3
export PYTHONPATH="$ROOT/scripts:$ROOT/tests/py${PYTHONPATH:+:$PYTHONPATH}"
T=$(mktemp -d "${TMPDIR:-/tmp}/wsac-test.XXXXXX")
trap 'rm -rf "$T"' EXIT
_failed=0

ok()   { echo "ok - $1"; }
fail() { echo "not ok - $1${2:+: $2}"; _failed=1; }
# check NAME CMD...: passes when CMD exits 0
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then ok "$name"; else fail "$name" "command failed: $*"; fi; }
# check_status NAME WANT CMD...: passes when CMD exits with status WANT
check_status() {
  name=$1; want=$2; shift 2
  "$@" >/dev/null 2>&1; got=$?
  if [ "$got" = "$want" ]; then ok "$name"; else fail "$name" "exit status $got, expected $want: $*"; fi
}
# check_grep NAME PATTERN FILE
check_grep() { if grep -q -- "$2" "$3"; then ok "$1"; else fail "$1" "'$2' not in $3: $(head -c 300 "$3")"; fi; }
finish() { exit $_failed; }
