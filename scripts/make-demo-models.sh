#!/bin/sh
# Make the small bundled TEST models in data/models/ (run once; the outputs
# are committed). They are not WSAC: the CLAP has random weights (the real
# WavCaps weights cannot be downloaded here), and the decoder is a one-layer
# GPT-2 (2 layers, width 32) trained for 10 epochs on the Clotho development
# captions embedded by that random CLAP. Captions of the demo are therefore
# fluent-looking training captions with no relation to the sound.
#   sh scripts/make-demo-models.sh [OUTDIR]
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/data/models}
BIN=$root/bin
PY=/usr/bin/python3
SHARED=${WSAC_SHARED:-$root/../shared}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"
[ -f "$SHARED/data/clotho/train.csv" ] || { echo "make-demo-models: $SHARED/data/clotho/train.csv not found (the Clotho development captions; set WSAC_SHARED)" >&2; exit 2; }
$PY "$root/scripts/make-demo-clap.py" "$root/tests/data/wordpiece-dev/clotho-dev-caption1-2000.jsonl" "$tmp/clap.pt"
$PY "$root/scripts/convert.py" clap "$tmp/clap.pt" --vocab "$root/data/bert-base-uncased-vocab.txt" \
    --text-heads 2 -o "$out/clap-test.safetensors"
"$BIN/clap-text" -q -m "$out/clap-test.safetensors" --csv "$SHARED/data/clotho/train.csv" > "$tmp/text.mp"
"$BIN/prefixdec" train -q --layers 2 --heads 2 --width 32 --positions 32 --epochs 10 --bs 64 --lr 2e-3 \
    --warmup 100 --wd 0.0 --noise 0.001 --seed 1 -o "$tmp/dec.safetensors" "$tmp/text.mp"
# the memory: the captions of the first 400 clips; the decoder without its
# optimizer state (decode needs only the model)
$PY - "$tmp/text.mp" "$out/memory-test.mp" "$tmp/dec.safetensors" "$out/decoder-test.safetensors" <<'PY'
import sys
sys.path.insert(0, "scripts")
import sttools, wsacstream as ws
hdr, recs, _ = ws.read_stream(open(sys.argv[1], "rb"))
with open(sys.argv[2], "wb") as f:
    ws.write_stream(f, "clap-text", recs[:2000], params=hdr.get("params", {}))
t, meta = sttools.load(sys.argv[3])
sttools.save(sys.argv[4], {k: v for k, v in t.items() if not k.startswith("train.")},
             {k: v for k, v in meta.items() if not k.startswith("train.")})
PY
ls -l "$out"
