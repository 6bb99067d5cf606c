#!/bin/sh
# bench/run.sh - run every benchmark in bench/ (`make bench` calls this).
#
#   sh bench/run.sh [ARGS...]
#
# Runs each bench/*.sh other than this file, in name order (for now only
# wav2mel.sh), passing ARGS to each unchanged, e.g.
#   sh bench/run.sh --clips 4 --seconds 5        # a quick smoke run
#   make bench                                   # the defaults (100 x 30 s)
# Without a --threads argument each benchmark runs twice: with 1 thread and
# with every core (nproc), the same count on both sides each time.
# Benchmarks are timings, not tests: nothing here passes or fails on speed.
# Exit status: 0 if every benchmark ran, else 1 (after running all of them).
set -u
BENCH=$(cd "$(dirname "$0")" && pwd)
status=0
case " $* " in
    *" --threads"*) thread_counts="" ;;
    *) thread_counts="1 $(nproc)"; [ "$(nproc)" -gt 1 ] || thread_counts=1 ;;
esac
for b in "$BENCH"/*.sh; do
    [ "$(basename "$b")" = run.sh ] && continue
    if [ -z "$thread_counts" ]; then
        echo "==> bench/$(basename "$b") $*"
        sh "$b" "$@" || { echo "bench/$(basename "$b") failed" >&2; status=1; }
    else
        for t in $thread_counts; do
            echo "==> bench/$(basename "$b") --threads $t $*"
            sh "$b" --threads "$t" "$@" || { echo "bench/$(basename "$b") failed" >&2; status=1; }
        done
    fi
done
exit $status
