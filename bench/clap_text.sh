#!/bin/sh
# bench/clap_text.sh - clap-text (C) against the same text encoder in PyTorch.
#
#   sh bench/clap_text.sh [--captions N] [--threads T] [--runs R] [--no-check]
#
# Full-size BERT-base + text_proj with random weights (tests/full/fullmodel.py:
# made once, cached under ${TMPDIR:-/tmp}). N real Clotho captions (64), timed
# warm on both sides: all at once (PyTorch padded + masked, as Hugging Face
# batches) and one at a time (latency per caption), R runs each (2), the best
# counts; T threads (1) on both sides. Prints seconds, GFLOP/s against the
# OpenBLAS sgemm peak measured in the same run, and the ratios. The work is
# done by bench/clap_text_bench.py; see bench/README.md. Environment: PYTHON
# (/usr/bin/python3), TMPDIR, CLAP_TEXT (bin/clap-text).
set -eu

N=64
T=1
R=2
CHECK=""

usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
need() { [ $# -ge 2 ] || { echo "clap_text.sh: $1 needs a value" >&2; exit 1; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --captions) need "$@"; N=$2; shift 2 ;;
        --captions=*) N=${1#*=}; shift ;;
        --threads) need "$@"; T=$2; shift 2 ;;
        --threads=*) T=${1#*=}; shift ;;
        --runs) need "$@"; R=$2; shift 2 ;;
        --runs=*) R=${1#*=}; shift ;;
        --no-check) CHECK=--no-check; shift ;;
        # options of the other benchmarks (bench/run.sh passes its arguments to all)
        --clips|--seconds) need "$@"; shift 2 ;;
        --clips=*|--seconds=*) shift ;;
        -h|--help) usage 0 ;;
        *) echo "clap_text.sh: unknown argument '$1'" >&2; usage 1 >&2 ;;
    esac
done
isint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) [ "$1" -gt 0 ] ;; esac; }
isint "$N" && [ "$N" -le 2000 ] || { echo "clap_text.sh: --captions must be an integer from 1 to 2000" >&2; exit 1; }
isint "$T" || { echo "clap_text.sh: --threads must be a positive integer" >&2; exit 1; }
isint "$R" || { echo "clap_text.sh: --runs must be a positive integer" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
BIN=${CLAP_TEXT:-$ROOT/bin/clap-text}
[ -x "$BIN" ] || { echo "clap_text.sh: $BIN not found: run 'make' first" >&2; exit 1; }
"$PY" -c 'import torch, numpy, msgpack' 2>/dev/null ||
    { echo "clap_text.sh: $PY lacks torch/numpy/msgpack (set PYTHON)" >&2; exit 1; }
export CLAP_TEXT="$BIN"
exec "$PY" "$ROOT/bench/clap_text_bench.py" --captions "$N" --threads "$T" --runs "$R" $CHECK
