#!/bin/sh
# Copy what `make demo` runs out of a pipelines/world-experiment run: the captioning CLAP (the
# run's best by val mAP@10), its text-only decoders (+NI for nnd/pd, +NI+ES for ad) without
# their optimiser state, the memory of training-caption embeddings, and the first N test
# scenes of the run's world (not chosen by result) with their references and events.
# The model cards (data/models/world-*.md) and data/queries.tsv are written by hand from the
# run's report.
#   sh scripts/ship-world-models.sh RUN [N]      (RUN: world-experiment --out; N: 6)
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
run=${1:?usage: ship-world-models.sh RUN [N]}
n=${2:-6}
run=$(cd "$run" && pwd)
PY=/usr/bin/python3
[ -f "$run/config.json" ] || { echo "ship-world-models: $run/config.json not found (not a finished world-experiment run)" >&2; exit 2; }
best=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["best"])' "$run/config.json")
world=$($PY -c 'import json, sys; print(json.load(open(sys.argv[1]))["world"])' "$run/config.json")
m=$root/data/models
cp "$run/models/$best.safetensors" "$m/world-clap.safetensors.tmp" && mv "$m/world-clap.safetensors.tmp" "$m/world-clap.safetensors"
cp "$run/emb/$best.train.text.mp" "$m/world-memory.mp.tmp" && mv "$m/world-memory.mp.tmp" "$m/world-memory.mp"
(cd "$root" && $PY - "$run/models/dec-$best-ni.safetensors" "$m/world-decoder.safetensors" \
      "$run/models/dec-$best-nies.safetensors" "$m/world-decoder-es.safetensors") <<'EOF'
import os, sys
sys.path.insert(0, "scripts")
import sttools
for src, dst in zip(sys.argv[1::2], sys.argv[2::2]):
    t, meta = sttools.load(src)   # decode needs only the model: drop the optimiser state (train.*)
    sttools.save(dst + ".tmp", {k: v for k, v in t.items() if not k.startswith("train.")},
                 {k: v for k, v in meta.items() if not k.startswith("train.")})
    os.replace(dst + ".tmp", dst)
EOF
rm -f "$root"/data/samples/*.flac
$PY - "$world" "$n" "$root/data" <<'EOF'
import csv, json, os, shutil, sys
world, n, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(os.path.join(world, "test.csv"), newline="") as f:
    rows = list(csv.reader(f))
head, rows = rows[0], rows[1:n + 1]
ev = {json.loads(l)["file_name"]: l for l in open(os.path.join(world, "test_events.jsonl"))}
os.makedirs(os.path.join(data, "samples"), exist_ok=True)
with open(os.path.join(data, "samples.csv"), "w", newline="") as f:
    csv.writer(f, lineterminator="\n").writerows([head] + rows)
with open(os.path.join(data, "samples.tsv"), "w") as f:
    f.writelines("%s\t%s\n" % (r[0], r[1]) for r in rows)
with open(os.path.join(data, "samples_events.jsonl"), "w") as f:
    f.writelines(ev[r[0]] for r in rows)
for r in rows:
    shutil.copy(os.path.join(world, "audio", "test", r[0]), os.path.join(data, "samples", r[0]))
EOF
ls -l "$m"/world-* "$root"/data/samples/
