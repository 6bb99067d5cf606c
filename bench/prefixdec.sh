#!/bin/sh
# bench/prefixdec.sh - prefixdec (C) against WSAC's decoder in PyTorch: training
# tokens/s (batch 64, 22 tokens + the prefix, vocab 50257 and 30522), GFLOP/s
# against the sgemm peak, peak memory; greedy decoding time per caption against
# the published uncached loop and KV-cached PyTorch loops.
#
#   sh bench/prefixdec.sh [--threads T] [--steps N] [--torch-steps N] [--torch-warmup N]
#                         [--vocabs 50257,30522] [--decode N] [--published N] [--cached N]
#
# Defaults: 1 thread, 5 timed C steps per case after 1 warm-up step, 3 timed
# PyTorch steps after 4 warm-up steps (it settles slowly); each side's median
# step counts; 64 captions decoded. The
# full-size random decoders are made once and cached under
# ${TMPDIR:-/tmp}/wsac-full-decoder-v1-VOCAB/. See bench/README.md.
# Environment: PYTHON (/usr/bin/python3), PREFIXDEC (bin/prefixdec), TMPDIR.
set -eu
case " $* " in *" -h "*|*" --help "*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;; esac
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
PD=${PREFIXDEC:-$ROOT/bin/prefixdec}
[ -x "$PD" ] || { echo "prefixdec.sh: $PD not found: run 'make' first" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "prefixdec.sh: GNU time (/usr/bin/time) is needed for peak RSS" >&2; exit 1; }
"$PY" -c 'import torch, numpy, msgpack' 2>/dev/null || { echo "prefixdec.sh: $PY lacks torch/numpy/msgpack" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsac-bench-sgemm.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
# the sgemm ceiling, measured with the same OpenBLAS in the same run
cc -O2 "$ROOT/bench/sgemm_peak.c" -o "$WORK/sgemm_peak" $(pkg-config --cflags --libs openblas) ||
    { echo "prefixdec.sh: cannot build bench/sgemm_peak.c" >&2; exit 1; }
"$PY" "$ROOT/bench/prefixdec_torch.py" bench --prefixdec "$PD" --sgemm-peak "$WORK/sgemm_peak" "$@"
