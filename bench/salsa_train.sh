#!/bin/sh
# bench/salsa_train.sh - one clap-train step on SALSA's PaSST-S + RoBERTa-large
# against PyTorch's float32 step on the same batch: seconds a step, the ratio,
# GFLOP/s against the sgemm peak, peak RSS of both.
#
#   sh bench/salsa_train.sh [--bs B] [--threads T] [--steps N] [--warmup W] [--runs R]
#                           [--small | --mid] [--micro-bs K] [--recompute] [--dry-run]
#
# Defaults: batch 8 (30-s clips: 3 10-s segments each; Clotho captions), all
# cores on both sides, 1 warm-up + 2 timed steps a run, 1 run; the best timed
# step counts. Patchout (15, 2) and RoBERTa's dropout 0.2 on, as published.
# Full size needs 10-15 GB a side (one after the other) and minutes a step;
# --small: narrow towers, same token geometry, seconds. --micro-bs/--recompute
# go to clap-train only. --dry-run: the plan, nothing run. See bench/README.md.
# Environment: PYTHON (/usr/bin/python3), CLAP_TRAIN (bin/clap-train), TMPDIR.
set -eu
case " $* " in *" -h "*|*" --help "*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
CT=${CLAP_TRAIN:-$ROOT/bin/clap-train}
case " $* " in
    *" --dry-run "*) exec "$PY" "$ROOT/bench/salsa_train_torch.py" bench --clap-train "$CT" "$@" ;;
esac
[ -x "$CT" ] || { echo "salsa_train.sh: $CT not found: run 'make' first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "salsa_train.sh: GNU time (/usr/bin/time) is needed for peak RSS" >&2; exit 1; }
"$PY" -c 'import torch, numpy, msgpack, regex' 2>/dev/null ||
    { echo "salsa_train.sh: $PY lacks torch/numpy/msgpack/regex (set PYTHON)" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsac-bench-salsa-train.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# the sgemm ceiling, measured with the same OpenBLAS in the same run
cc -O2 "$ROOT/bench/sgemm_peak.c" -o "$WORK/sgemm_peak" $(pkg-config --cflags --libs openblas) ||
    { echo "salsa_train.sh: cannot build bench/sgemm_peak.c" >&2; exit 1; }
# TMPDIR is left alone: the full-size model is cached there (tests/full/fullsalsa.py)
"$PY" "$ROOT/bench/salsa_train_torch.py" bench --clap-train "$CT" --sgemm-peak "$WORK/sgemm_peak" "$@"
