#!/bin/sh
# bench/clap_train.sh - clap-train (C) against the PyTorch reference
# (scripts/claptrainref.py) training the same CNN14-BERT CLAP on the same
# batch: seconds a step, clips and tokens/s, GFLOP/s against the sgemm peak,
# peak RSS; full size and a small configuration.
#
#   sh bench/clap_train.sh [--threads T] [--steps N] [--warmup W] [--runs R] [--configs full,small]
#
# Defaults: 2 threads, 1 warm-up + 2 timed steps a run, 1 run (a full-size
# step takes tens of seconds on 2 cores); the best timed step counts.
# Batch: 16 random 10-s clips (1001 x 64 mel), 16 Clotho captions, no dropout
# or SpecAugment on either side. See bench/README.md.
# Environment: PYTHON (/usr/bin/python3), CLAP_TRAIN (bin/clap-train), TMPDIR.
set -eu
case " $* " in *" -h "*|*" --help "*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
CT=${CLAP_TRAIN:-$ROOT/bin/clap-train}
[ -x "$CT" ] || { echo "clap_train.sh: $CT not found: run 'make' first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "clap_train.sh: GNU time (/usr/bin/time) is needed for peak RSS" >&2; exit 1; }
"$PY" -c 'import torch, numpy, msgpack' 2>/dev/null || { echo "clap_train.sh: $PY lacks torch/numpy/msgpack" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsac-bench-clap-train.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# the sgemm ceiling, measured with the same OpenBLAS in the same run
cc -O2 "$ROOT/bench/sgemm_peak.c" -o "$WORK/sgemm_peak" $(pkg-config --cflags --libs openblas) ||
    { echo "clap_train.sh: cannot build bench/sgemm_peak.c" >&2; exit 1; }
TMPDIR="$WORK" "$PY" "$ROOT/bench/clap_train_torch.py" bench --clap-train "$CT" --sgemm-peak "$WORK/sgemm_peak" "$@"
