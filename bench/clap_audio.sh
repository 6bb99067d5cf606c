#!/bin/sh
# bench/clap_audio.sh - clap-audio (C) against the same encoder in PyTorch.
#
#   sh bench/clap_audio.sh [--clips N] [--seconds S] [--threads T] [--runs R] [--no-check]
#
# Full-size CNN14 with random weights (tests/full/fullmodel.py: made once,
# cached under ${TMPDIR:-/tmp}). N random log-mel clips of 10 s and of 30 s
# (T = 1001, 3001; --seconds S: only S-second clips), encoded R times each,
# alternating, by `bin/clap-audio --threads T` (its default convolutions, and
# --conv im2col) and by bench/clap_audio_torch.py with torch.set_num_threads(T)
# (eager clapref.audio_forward, and a frozen TorchScript module for reference).
# Reports seconds per clip, GFLOP/s against the OpenBLAS sgemm peak measured
# in the same run, the ratios, peak RSS.
# Defaults: N 3, T 1, R 2. See bench/README.md. Environment: PYTHON
# (/usr/bin/python3), TMPDIR, CLAP_AUDIO (bin/clap-audio).
set -eu

N=3
SECS="10 30"
T=1
R=2
CHECK=1

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
need() { [ $# -ge 2 ] || { echo "clap_audio.sh: $1 needs a value" >&2; exit 1; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --clips) need "$@"; N=$2; shift 2 ;;
        --clips=*) N=${1#*=}; shift ;;
        --seconds) need "$@"; SECS=$2; shift 2 ;;
        --seconds=*) SECS=${1#*=}; shift ;;
        --threads) need "$@"; T=$2; shift 2 ;;
        --threads=*) T=${1#*=}; shift ;;
        --runs) need "$@"; R=$2; shift 2 ;;
        --runs=*) R=${1#*=}; shift ;;
        --no-check) CHECK=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "clap_audio.sh: unknown argument '$1'" >&2; usage 1 >&2 ;;
    esac
done
isint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) [ "$1" -gt 0 ] ;; esac; }
isint "$N" || { echo "clap_audio.sh: --clips must be a positive integer" >&2; exit 1; }
isint "$T" || { echo "clap_audio.sh: --threads must be a positive integer" >&2; exit 1; }
isint "$R" || { echo "clap_audio.sh: --runs must be a positive integer" >&2; exit 1; }
for s in $SECS; do
    awk -v s="$s" 'BEGIN { exit !(s ~ /^[0-9]+(\.[0-9]+)?$/ && s * 100 + 1 >= 64) }' ||
        { echo "clap_audio.sh: --seconds must be a number >= 0.63 (64 frames)" >&2; exit 1; }
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
BIN=${CLAP_AUDIO:-$ROOT/bin/clap-audio}
TORCH="$ROOT/bench/clap_audio_torch.py"
TIME=/usr/bin/time
[ -x "$BIN" ] || { echo "clap_audio.sh: $BIN not found: run 'make' first" >&2; exit 1; }
[ -x "$TIME" ] || { echo "clap_audio.sh: GNU time ($TIME) is needed for peak RSS" >&2; exit 1; }
"$PY" -c 'import torch, numpy, msgpack' 2>/dev/null ||
    { echo "clap_audio.sh: $PY lacks torch/numpy/msgpack (set PYTHON)" >&2; exit 1; }

say() { echo "$*" >&2; }

# ---------------------------------------------------------------- 1. model and clips
MODEL=$("$PY" -c 'import sys; sys.path.insert(0, sys.argv[1]); import fullmodel; print(fullmodel.ensure()[1])' \
    "$ROOT/tests/full")
say "model: $MODEL"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsac-bench-clap.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
MELS=""
for s in $SECS; do
    f=$(awk -v s="$s" 'BEGIN { printf "%d", 1 + int(s * 32000 / 320 + 1e-9) }')
    "$PY" "$TORCH" --make-mels "$WORK/mel_$s.mp" --frames "$f" --clips "$N" --seed "$f"
    MELS="$MELS $WORK/mel_$s.mp"
done
"$PY" "$TORCH" --make-mels "$WORK/empty.mp" --frames 64 --clips 0
cat "$MODEL" > /dev/null # page cache warm: neither side pays for the disk

# ---------------------------------------------------------------- 2. check (untimed)
if [ $CHECK = 1 ]; then
    say "check: clap-audio and PyTorch on every clip (untimed) ..."
    # shellcheck disable=SC2086
    cat $MELS | "$BIN" -q --threads "$T" -m "$MODEL" > "$WORK/check_c.mp" # concatenated streams are one
    # shellcheck disable=SC2086
    "$PY" "$TORCH" --threads "$T" --model "$MODEL" --emb "$WORK/check_t.mp" --report /dev/null $MELS
fi

# ---------------------------------------------------------------- 3. timed runs
# /usr/bin/time -o FILE: last line "%e %M %U %S"; wall time from date +%s%N
# around the same command (%e has only 10 ms resolution).
now() { date +%s%N; }
timed() { # NAME CMD... (stdout to /dev/null)
    name=$1; shift
    a=$(now)
    "$TIME" -f '%e %M %U %S' -o "$WORK/$name.time" "$@" > /dev/null ||
        { echo "clap_audio.sh: $name failed" >&2; exit 1; }
    echo "$a $(now) $(tail -n 1 "$WORK/$name.time")" > "$WORK/$name.run"
}
r=1
while [ $r -le "$R" ]; do
    for s in $SECS; do
        say "run $r/$R: clap-audio --threads $T, $N x $s s ..."
        timed "c_${s}_$r" "$BIN" -q --threads "$T" -m "$MODEL" "$WORK/mel_$s.mp"
        say "run $r/$R: clap-audio --threads $T --conv im2col, $N x $s s ..."
        timed "ci_${s}_$r" "$BIN" -q --threads "$T" --conv im2col -m "$MODEL" "$WORK/mel_$s.mp"
    done
    say "run $r/$R: clap-audio, model load only (empty stream) ..."
    timed "c_empty_$r" "$BIN" -q --threads "$T" -m "$MODEL" "$WORK/empty.mp"
    timed "ci_empty_$r" "$BIN" -q --threads "$T" --conv im2col -m "$MODEL" "$WORK/empty.mp"
    say "run $r/$R: PyTorch eager (clapref.audio_forward), torch.set_num_threads($T) ..."
    # shellcheck disable=SC2086
    timed "te_$r" "$PY" "$TORCH" --threads "$T" --model "$MODEL" --report "$WORK/te_$r.json" $MELS
    say "run $r/$R: sgemm peak, $T thread(s) ..."
    "$PY" "$TORCH" --sgemm --threads "$T" --report "$WORK/sgemm_$r.json"
    say "run $r/$R: PyTorch frozen TorchScript ..."
    # shellcheck disable=SC2086
    timed "tf_$r" "$PY" "$TORCH" --frozen --threads "$T" --model "$MODEL" --report "$WORK/tf_$r.json" $MELS
    r=$((r + 1))
done

# ---------------------------------------------------------------- 4. report
CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
[ -n "$CPU" ] || CPU=$(uname -m)
PYTHONPATH="$ROOT/scripts${PYTHONPATH:+:$PYTHONPATH}" "$PY" - "$WORK" "$MODEL" "$N" "$T" "$R" "$CHECK" "$CPU" "$(nproc)" "$(uname -sr)" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" "$(date -u '+%Y-%m-%d %H:%M UTC')" $SECS <<'EOF'
import json, os, sys
import numpy as np
work, model, n, t, runs, check, cpu, nproc, kern, load, date = sys.argv[1:12]
secs = sys.argv[12:]
n, t, runs = int(n), int(t), int(runs)
import sttools  # noqa: E402  (scripts/, via PYTHONPATH)

def run(name):
    a, b, e, kb, u, s = open(os.path.join(work, name + ".run")).read().split()
    return {"wall": (int(b) - int(a)) / 1e9, "e": float(e), "mb": int(kb) / 1024, "cpu": float(u) + float(s)}

# analytic FLOPs: 2*Cout*Cin*9*T_b*F_b per convolution (T_b, F_b halved, floor,
# after each block) plus the two projections
tens, meta = sttools.load(model)
A = "audio_encoder.audio_enc."
chans = []
while A + "conv_block%d.conv1.weight" % (len(chans) + 1) in tens:
    chans.append(tens[A + "conv_block%d.conv1.weight" % (len(chans) + 1)].shape[0])
emb = tens["audio_proj.0.weight"].shape[0]
nmels = tens[A + "bn0.weight"].shape[0]
audio_params = sum(v.size for k, v in tens.items() if k.startswith(("audio_encoder.", "audio_proj.")))
del tens

def flops(T):
    fl, tt, F, cin = 0.0, T, nmels, 1
    for c in chans:
        fl += 2.0 * 9 * (cin * c + c * c) * tt * F
        tt, F, cin = tt // 2, F // 2, c
    return fl + 2.0 * (cin * emb + emb * emb)

peak = max(json.load(open(os.path.join(work, "sgemm_%d.json" % r)))["sgemm_gflops"] for r in range(1, runs + 1))
frames = {s: 1 + int(float(s) * 32000 / 320 + 1e-9) for s in secs}
c = {s: [run("c_%s_%d" % (s, r)) for r in range(1, runs + 1)] for s in secs}
ce = [run("c_empty_%d" % r) for r in range(1, runs + 1)]
te = [json.load(open(os.path.join(work, "te_%d.json" % r))) for r in range(1, runs + 1)]
tf = [json.load(open(os.path.join(work, "tf_%d.json" % r))) for r in range(1, runs + 1)]
tew = [run("te_%d" % r) for r in range(1, runs + 1)]
tfw = [run("tf_%d" % r) for r in range(1, runs + 1)]
c0 = min(x["wall"] for x in ce)

print("\nwsac clap-audio benchmark, %s" % date)
print("machine : %s, nproc %s, %s, load avg %s (at end)" % (cpu, nproc, kern, load))
print("threads : %d   (clap-audio --threads %d; torch.set_num_threads(%d) and OMP_NUM_THREADS=" % (t, t, t))
print("          OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=%d for PyTorch and numpy)" % t)
print("model   : full-size CNN14 CLAP, random weights (tests/full/fullmodel.py): channels %s, embed %d," % (
    ",".join(map(str, chans)), emb))
print("          %.1f M audio parameters; %s (%.0f MB)" % (audio_params / 1e6, model, os.path.getsize(model) / 1e6))
print("input   : %s; random log-mel, 64 bands" % ", ".join("%d x %s s (T=%d)" % (n, s, frames[s]) for s in secs))
print("work    : %s (analytic: 2 Cout Cin 9 T F per conv + projections)" %
      ", ".join("%.1f GFLOP per %s-s clip" % (flops(frames[s]) / 1e9, s) for s in secs))
print("sgemm   : %.1f GFLOP/s = OpenBLAS peak: numpy 2048^3 float32 matmul, %d thread(s), best of 7 per run," % (peak, t))
print("          best run (measured between the timed runs)")
if check == "1":
    import wsacstream as ws
    _, a, _ = ws.read_stream(open(os.path.join(work, "check_c.mp"), "rb"))
    _, b, _ = ws.read_stream(open(os.path.join(work, "check_t.mp"), "rb"))
    b = {r["key"]: r["emb"] for r in b}
    d = [(float(np.abs(r["emb"] - b[r["key"]]).max()),
          float(np.dot(r["emb"].astype(np.float64), b[r["key"]]) /
                np.linalg.norm(r["emb"].astype(np.float64)) / np.linalg.norm(b[r["key"]].astype(np.float64))))
         for r in a if r["key"] in b]
    print("check   : clap-audio vs PyTorch eager, %d clips: max |diff| %.2e, min cosine %.9f" % (
        len(d), max(x[0] for x in d), min(x[1] for x in d)))
else:
    print("check   : (skipped: --no-check)")
print("runs    : %d of each, alternating; per clip = best run. clap-audio: (wall of N clips - wall of" % runs)
print("          an empty stream, same options) / N, so start-up and model load are out (the weights' first page")
print("          faults stay in); PyTorch: its timed loop after one untimed warm-up forward.")
print("          GFLOP/s = the direct convolutions' FLOPs / time, whatever the algorithm (Winograd")
print("          does 2.25x fewer multiplications in the layers it runs, so it can pass the peak)")
ci = {s: [run("ci_%s_%d" % (s, r)) for r in range(1, runs + 1)] for s in secs}
ci0 = min(run("ci_empty_%d" % r)["wall"] for r in range(1, runs + 1))
ratios = []
for i, s in enumerate(secs):
    fl = flops(frames[s])
    rows = [("clap-audio (default: Winograd blocks 1-5)", (min(x["wall"] for x in c[s]) - c0) / n),
            ("clap-audio --conv im2col", (min(x["wall"] for x in ci[s]) - ci0) / n),
            ("PyTorch eager (clapref.audio_forward)", min(r["streams"][i]["loop_s"] for r in te) / n),
            ("PyTorch frozen TorchScript", min(r["streams"][i]["loop_s"] for r in tf) / n)]
    eager = rows[2][1]
    print()
    print("%s-s clips (T=%d, %.1f GFLOP each)        s/clip   GFLOP/s  %% of sgemm peak  throughput vs eager"
          % (s, frames[s], fl / 1e9))
    for name, sec in rows:
        print("  %-42s %6.3f  %7.1f  %14.0f%%  %18.2fx" % (name, sec, fl / sec / 1e9, 100 * fl / sec / 1e9 / peak,
                                                            eager / sec))
    ratios.append((s, eager / rows[0][1], rows[3][1] / rows[0][1], eager / rows[1][1]))
print()
for s, re_, rf, ri in ratios:
    print("clap-audio on %s-s clips: %.2fx the throughput of PyTorch eager (clapref), %.2fx that of frozen"
          " TorchScript; --conv im2col: %.2fx eager" % (s, re_, rf, ri))
print()
cw = sum(min(x["wall"] for x in c[s]) for s in secs)
cmb = max(x["mb"] for s in secs for x in c[s])
print("whole processes (start-up, model load, all %d clips, exit; best run; peak RSS max over runs):" % (n * len(secs)))
print("  clap-audio       %7.2f s  %7.0f MB   (one process per clip length; model load alone %.2f s, of which" % (cw, cmb, c0))
print("                                        the Winograd weight transform; --conv im2col: %.2f s)" % ci0)
print("  PyTorch eager    %7.2f s  %7.0f MB   (imports %.2f s, weights %.2f s)" % (
    min(x["wall"] for x in tew), max(x["mb"] for x in tew), min(r["import_s"] for r in te), min(r["load_s"] for r in te)))
print("  PyTorch frozen   %7.2f s  %7.0f MB   (trace+freeze included in its load: %.2f s)" % (
    min(x["wall"] for x in tfw), max(x["mb"] for x in tfw), min(r["load_s"] for r in tf)))
print("\nall runs, wall s (whole processes):")
for r in range(runs):
    print("  run %d: clap-audio %s, im2col %s, empty stream %.2f; PyTorch eager %.2f, frozen %.2f" % (
        r + 1, " ".join("%.2f" % c[s][r]["wall"] for s in secs), " ".join("%.2f" % ci[s][r]["wall"] for s in secs),
        ce[r]["wall"], tew[r]["wall"], tfw[r]["wall"]))
EOF
