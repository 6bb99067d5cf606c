#!/bin/sh
# bench/score.sh - `score caption` on the whole Clotho evaluation split.
#
#   sh bench/score.sh [--runs R] [--threads T]
#
# Candidates: caption_1 of each of the 1045 clips of ../shared/data/clotho/
# test.csv (Clotho v2 evaluation); references: caption_2..caption_5. Times,
# R times each (best run reported): `bin/score caption` (PTB tokenization
# and BLEU/ROUGE-L/CIDEr-D, whole process), `bin/score tokenize` on the same
# 5225 captions (the tokenizer alone), and bench/score_py.py, a plain-Python
# transcription of the same BLEU/ROUGE-L/CIDEr-D formulas on the tokenized
# strings (NOT pycocoevalcap, which cannot be installed here, and without a
# tokenizer). --threads is accepted and ignored (score is single-threaded).
# Environment: WSAC_SHARED (../shared), PYTHON (/usr/bin/python3), SCORE.
set -eu

R=5
usage() {
    sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
need() { [ $# -ge 2 ] || { echo "score.sh: $1 needs a value" >&2; exit 1; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --runs) need "$@"; R=$2; shift 2 ;;
        --runs=*) R=${1#*=}; shift ;;
        --threads) need "$@"; shift 2 ;;
        --threads=*) shift ;;
        -h|--help) usage 0 ;;
        *) echo "score.sh: unknown argument '$1'" >&2; usage 1 >&2 ;;
    esac
done
case "$R" in ''|*[!0-9]*|0) echo "score.sh: --runs must be a positive integer" >&2; exit 1 ;; esac

ROOT=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${WSAC_SHARED:-$ROOT/../shared}
PY=${PYTHON:-/usr/bin/python3}
SCORE=${SCORE:-$ROOT/bin/score}
CSV=$SHARED/data/clotho/test.csv
[ -x "$SCORE" ] || { echo "score.sh: $SCORE not found: run 'make' first" >&2; exit 1; }
# the full Clotho evaluation CSV is not part of the repository: without it, say so and skip
[ -f "$CSV" ] || { echo "bench/score.sh: SKIPPED: $CSV not found (the Clotho evaluation captions; set WSAC_SHARED to the folder holding data/clotho/)" >&2; exit 0; }

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsac-bench-score.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# inputs (untimed): candidates caption_1, references caption_2..5
"$PY" - "$CSV" "$WORK" <<'PYEOF'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], encoding="utf-8")))
w = sys.argv[2]
with open(w + "/cands.tsv", "w", encoding="utf-8") as f:
    f.writelines("%s\t%s\n" % (r["file_name"], r["caption_1"]) for r in rows)
with open(w + "/refs.csv", "w", encoding="utf-8", newline="") as f:
    c = csv.writer(f)
    c.writerow(["file_name", "caption_2", "caption_3", "caption_4", "caption_5"])
    for r in rows:
        c.writerow([r["file_name"]] + [r["caption_%d" % i] for i in range(2, 6)])
with open(w + "/all.txt", "w", encoding="utf-8") as f:
    f.writelines(r["caption_%d" % i] + "\n" for r in rows for i in range(1, 6))
PYEOF

now() { date +%s%N; }
best() { sort -n | head -n 1; }
ms() { awk -v ns="$1" 'BEGIN { printf "%.1f", ns / 1e6 }'; }

: > "$WORK/t_caption"; : > "$WORK/t_tok"; : > "$WORK/t_pywhole"; : > "$WORK/t_pyloop"
i=0
while [ $i -lt "$R" ]; do
    t0=$(now); "$SCORE" caption -q --refs "$WORK/refs.csv" --per-item "$WORK/cands.tsv" > "$WORK/out.json"; t1=$(now)
    echo $((t1 - t0)) >> "$WORK/t_caption"
    t0=$(now); "$SCORE" tokenize < "$WORK/all.txt" > /dev/null; t1=$(now)
    echo $((t1 - t0)) >> "$WORK/t_tok"
    t0=$(now); "$PY" "$ROOT/bench/score_py.py" "$WORK/out.json" > "$WORK/py.json"; t1=$(now)
    echo $((t1 - t0)) >> "$WORK/t_pywhole"
    "$PY" -c 'import json,sys; print(int(json.load(open(sys.argv[1]))["seconds"] * 1e9))' "$WORK/py.json" >> "$WORK/t_pyloop"
    i=$((i + 1))
done
RSS=$(/usr/bin/time -f '%M' "$SCORE" caption -q --refs "$WORK/refs.csv" "$WORK/cands.tsv" 2>&1 >/dev/null | tail -n 1)

echo "score caption on Clotho evaluation: 1045 candidates (caption_1), 4180 references (caption_2..5)"
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "best of $R runs (wall ms):"
printf '  %-58s %8s ms  (peak RSS %s MB)\n' "score caption (C: PTB tokenize + BLEU/ROUGE-L/CIDEr-D)" "$(ms "$(best < "$WORK/t_caption")")" \
    "$(awk -v k="$RSS" 'BEGIN { printf "%.1f", k / 1024 }')"
printf '  %-58s %8s ms\n' "score tokenize (C: the PTB tokenizer alone, 5225 captions)" "$(ms "$(best < "$WORK/t_tok")")"
printf '  %-58s %8s ms\n' "plain Python, same formulas, NOT pycocoevalcap: whole process" "$(ms "$(best < "$WORK/t_pywhole")")"
printf '  %-58s %8s ms\n' "plain Python, same formulas: metric loop only (no tokenizer)" "$(ms "$(best < "$WORK/t_pyloop")")"
"$PY" - "$WORK/out.json" "$WORK/py.json" <<'PYEOF'
import json, sys
c, p = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
ks = ["bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l", "cider"]
print("scores (C):", " ".join("%s %.6f" % (k, c[k]) for k in ks))
print("check: max |C - plain Python| over the six corpus scores: %.3g" % max(abs(c[k] - p[k]) for k in ks))
PYEOF
