#!/bin/sh
# bench/salsa.sh - SALSA's towers in wsac against the published modules in PyTorch.
#
#   sh bench/salsa.sh [--segments K] [--captions N] [--threads T] [--runs R]
#
# Full-size PaSST-S + RoBERTa-large with random weights (tests/full/fullsalsa.py:
# made once, cached under ${TMPDIR:-/tmp}). clap-audio -m salsa.safetensors on K
# 10-s clips (4) against scripts/passtref.py's PaSST on the batch of K segments;
# clap-text on N Clotho captions (64) against scripts/robertaref.py on the batch
# padded to 32 tokens, and one caption at a time; R runs each (2), the best
# counts; T threads (1) on both sides, float32 on the CPU. Prints seconds,
# FLOPs, GFLOP/s against the sgemm peak measured in the same run, the ratios
# and peak RSS against the model file. The work is done by bench/salsa_bench.py;
# see bench/README.md. Environment: PYTHON (/usr/bin/python3), TMPDIR, WSAC_BIN (bin/).
set -eu

K=4
N=64
T=1
R=2

usage() {
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
need() { [ $# -ge 2 ] || { echo "salsa.sh: $1 needs a value" >&2; exit 1; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --segments) need "$@"; K=$2; shift 2 ;;
        --segments=*) K=${1#*=}; shift ;;
        --captions) need "$@"; N=$2; shift 2 ;;
        --captions=*) N=${1#*=}; shift ;;
        --threads) need "$@"; T=$2; shift 2 ;;
        --threads=*) T=${1#*=}; shift ;;
        --runs) need "$@"; R=$2; shift 2 ;;
        --runs=*) R=${1#*=}; shift ;;
        # options of the other benchmarks (bench/run.sh passes its arguments to all)
        --clips|--seconds) need "$@"; shift 2 ;;
        --clips=*|--seconds=*|--no-check) shift ;;
        -h|--help) usage 0 ;;
        *) echo "salsa.sh: unknown argument '$1'" >&2; usage 1 >&2 ;;
    esac
done
isint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) [ "$1" -gt 0 ] ;; esac; }
isint "$K" && [ "$K" -le 256 ] || { echo "salsa.sh: --segments must be an integer from 1 to 256" >&2; exit 1; }
isint "$N" && [ "$N" -le 2000 ] || { echo "salsa.sh: --captions must be an integer from 1 to 2000" >&2; exit 1; }
isint "$T" || { echo "salsa.sh: --threads must be a positive integer" >&2; exit 1; }
isint "$R" || { echo "salsa.sh: --runs must be a positive integer" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
WSAC_BIN=${WSAC_BIN:-$ROOT/bin}
for t in wav2mel clap-audio clap-text; do
    [ -x "$WSAC_BIN/$t" ] || { echo "salsa.sh: $WSAC_BIN/$t not found: run 'make' first" >&2; exit 1; }
done
"$PY" -c 'import torch, numpy, msgpack, soundfile' 2>/dev/null ||
    { echo "salsa.sh: $PY lacks torch/numpy/msgpack/soundfile (set PYTHON)" >&2; exit 1; }
export WSAC_BIN
exec "$PY" "$ROOT/bench/salsa_bench.py" --segments "$K" --captions "$N" --threads "$T" --runs "$R"
