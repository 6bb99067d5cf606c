#!/bin/sh
# Build the libFuzzer harnesses tests/fuzz/fuzz_*.c into build-fuzz/.
#   sh tests/fuzz/build.sh [NAME...]     (default: every harness)
# The library (lib/*.c) is compiled with clang, coverage instrumentation
# (-fsanitize=fuzzer-no-link) and AddressSanitizer + UndefinedBehaviorSanitizer
# (any UB report aborts), with the Makefile's warnings and pkg-config flags;
# each harness links it with -fsanitize=fuzzer. Objects are rebuilt only when
# their source or a header is newer. Environment: FUZZ_CC (default clang-14).
set -eu
cd "$(dirname "$0")/../.."
CC=${FUZZ_CC:-clang-14}
OUT=build-fuzz
command -v "$CC" >/dev/null 2>&1 || { echo "fuzz build: $CC not found (sh scripts/install-deps.sh installs clang-14 and libFuzzer)" >&2; exit 2; }
# the Makefile's library list (msgpack-c renamed its pkg-config package in 6.x)
if pkg-config --exists msgpack-c 2>/dev/null; then MSGPACK=msgpack-c; else MSGPACK=msgpack; fi
PKGS="sndfile fftw3f openblas $MSGPACK soxr libutf8proc jansson"
pkg-config --exists $PKGS || { echo "fuzz build: missing libraries: run 'sh scripts/install-deps.sh' first" >&2; exit 2; }
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer"
CFLAGS="-std=c11 -Wall -Wextra -Wshadow -Wno-unused-parameter -O2 -g $SAN $(pkg-config --cflags $PKGS) -Ilib -D_DEFAULT_SOURCE"
LIBS="$(pkg-config --libs $PKGS) -lcsv -lm -lpthread"

mkdir -p "$OUT/lib"
# build outputs: keep them out of git without touching the top .gitignore
[ -f "$OUT/.gitignore" ] || echo '*' > "$OUT/.gitignore"
# two runs started at once (e.g. one per core) build one after the other
if command -v flock >/dev/null 2>&1; then exec 9>"$OUT/.lock" && flock 9; fi

# lib/bert.c: clang-14 rejects its target_clones function declared earlier
# without the attribute (lib/bert.c, gelu_erf); no parser harness needs it
SKIP=" bert "
# lib/ptb.c: its lexer compares every character against character-class
# ranges; libFuzzer's comparison tracing there costs 80% of the time (and
# its dictionary, ptb.dict, gives the magic strings instead)
NO_TRACE_CMP=" ptb "
newest_header=$(ls -t lib/*.h | head -n 1)
objs=""
changed=0
for src in lib/*.c; do
  case "$SKIP" in *" $(basename "$src" .c) "*) continue ;; esac
  obj=$OUT/lib/$(basename "$src" .c).o
  objs="$objs $obj"
  if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ "$newest_header" -nt "$obj" ]; then
    echo "  CC  $src"
    cov=-fsanitize=fuzzer-no-link
    case "$NO_TRACE_CMP" in *" $(basename "$src" .c) "*) cov="$cov -fno-sanitize-coverage=trace-cmp" ;; esac
    $CC $CFLAGS $cov -c "$src" -o "$obj"
    changed=1
  fi
done
if [ $changed -eq 1 ] || [ ! -f "$OUT/libwsac.a" ]; then
  rm -f "$OUT/libwsac.a"
  ar rcs "$OUT/libwsac.a" $objs
fi

if [ $# -gt 0 ]; then names="$*"; else
  names=$(for f in tests/fuzz/fuzz_*.c; do basename "$f" .c | sed 's/^fuzz_//'; done)
fi
for name in $names; do
  src=tests/fuzz/fuzz_$name.c
  bin=$OUT/fuzz_$name
  [ -f "$src" ] || { echo "fuzz build: no harness $src" >&2; exit 2; }
  if [ ! -f "$bin" ] || [ "$src" -nt "$bin" ] || [ tests/fuzz/fuzz_common.h -nt "$bin" ] || [ "$OUT/libwsac.a" -nt "$bin" ]; then
    echo "  LD  $bin"
    # --wrap=_exit: a die() inside an input is a crash (see fuzz_common.h)
    $CC $CFLAGS -fsanitize=fuzzer -Wl,--wrap=_exit -Wl,--as-needed "$src" "$OUT/libwsac.a" $LIBS -o "$bin"
  fi
done
