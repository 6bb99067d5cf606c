#!/bin/sh
# bench/wav2mel.sh - wav2mel (C) against the same front end in PyTorch/torchaudio.
#
#   sh bench/wav2mel.sh [--clips N] [--seconds S] [--threads T] [--runs R] [--no-check]
#
# Generates N synthetic clips of S seconds (44.1 kHz 16-bit mono WAV, fixed
# seeds; cached under ${TMPDIR:-/tmp}), then times, R times each and
# alternating, `bin/wav2mel --threads T` over all clips in one process and
# bench/wav2mel_torch.py over the same files with torch.set_num_threads(T).
# Reports the best (min) wall time of each, peak RSS, real-time factor and
# the speed ratio.  See bench/README.md.  Environment: PYTHON (/usr/bin/python3),
# TMPDIR, WAV2MEL (bin/wav2mel).
set -eu

N=100
S=30
T=1
R=2
CHECK=1
RATE=44100

usage() {
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit "${1:-0}"
}
need() { [ $# -ge 2 ] || { echo "wav2mel.sh: $1 needs a value" >&2; exit 1; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --clips) need "$@"; N=$2; shift 2 ;;
        --clips=*) N=${1#*=}; shift ;;
        --seconds) need "$@"; S=$2; shift 2 ;;
        --seconds=*) S=${1#*=}; shift ;;
        --threads) need "$@"; T=$2; shift 2 ;;
        --threads=*) T=${1#*=}; shift ;;
        --runs) need "$@"; R=$2; shift 2 ;;
        --runs=*) R=${1#*=}; shift ;;
        --no-check) CHECK=0; shift ;;
        -h|--help) usage 0 ;;
        *) echo "wav2mel.sh: unknown argument '$1'" >&2; usage 1 >&2 ;;
    esac
done
isint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) [ "$1" -gt 0 ] ;; esac; }
isint "$N" || { echo "wav2mel.sh: --clips must be a positive integer" >&2; exit 1; }
isint "$T" || { echo "wav2mel.sh: --threads must be a positive integer" >&2; exit 1; }
isint "$R" || { echo "wav2mel.sh: --runs must be a positive integer" >&2; exit 1; }
awk -v s="$S" 'BEGIN { exit !(s ~ /^[0-9]+(\.[0-9]+)?$/ && s + 0 > 0) }' ||
    { echo "wav2mel.sh: --seconds must be a positive number" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-/usr/bin/python3}
W2M=${WAV2MEL:-$ROOT/bin/wav2mel}
TIME=/usr/bin/time
[ -x "$W2M" ] || { echo "wav2mel.sh: $W2M not found: run 'make' first" >&2; exit 1; }
[ -x "$TIME" ] || { echo "wav2mel.sh: GNU time ($TIME) is needed for peak RSS" >&2; exit 1; }
"$PY" -c 'import torch, torchaudio, soundfile, numpy' 2>/dev/null ||
    { echo "wav2mel.sh: $PY lacks torch/torchaudio/soundfile/numpy (set PYTHON)" >&2; exit 1; }

say() { echo "$*" >&2; }

# ---------------------------------------------------------------- 1. clips
CACHE=${TMPDIR:-/tmp}/wsac-bench-clips-v1-n$N-s$S-r$RATE
if [ -f "$CACHE/.complete" ]; then
    say "clips: reusing $CACHE"
else
    say "clips: generating $N x ${S} s at $RATE Hz into $CACHE ..."
    rm -rf "$CACHE"
    g0=$(date +%s)
    "$PY" "$ROOT/bench/gen_clips.py" "$CACHE" "$N" "$S" "$RATE"
    touch "$CACHE/.complete"
    say "clips: done in $(( $(date +%s) - g0 )) s"
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/wsac-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 141' PIPE
trap 'exit 143' TERM
LIST=$WORK/list
i=0
while [ $i -lt "$N" ]; do
    printf '%s/clip%04d.wav\n' "$CACHE" $i
    i=$((i + 1))
done > "$LIST"
# warm the page cache so neither side pays for disk reads
xargs cat < "$LIST" > /dev/null

# ---------------------------------------------------------------- sanity check (untimed)
CHECKLINE="(skipped: --no-check)"
if [ $CHECK = 1 ]; then
    say "check: comparing wav2mel and torchaudio output on the first clips ..."
    head -n 3 "$LIST" > "$WORK/list3"
    "$W2M" -q < "$WORK/list3" > "$WORK/check.mp"
    CHECKLINE=$("$PY" "$ROOT/bench/wav2mel_torch.py" --list "$WORK/list3" --report "$WORK/check.json" \
        --compare "$WORK/check.mp" | grep '^compare:' | sed 's/^compare: //')
    rm -f "$WORK/check.mp"
fi

# ---------------------------------------------------------------- 2./3. timed runs
# /usr/bin/time -o FILE: last line "%e %M %U %S" (a "Command exited ..." line may precede it).
# %e has only 10 ms resolution, so the wall time used is taken with date +%s%N
# around the same command (the difference is the fork/exec of time itself).
now() { date +%s%N; }
r=1
while [ $r -le "$R" ]; do
    say "run $r/$R: wav2mel --threads $T ..."
    st=0
    a=$(now)
    "$TIME" -f '%e %M %U %S' -o "$WORK/w$r.time" "$W2M" -q --threads "$T" < "$LIST" > /dev/null || st=$?
    echo "$a $(now)" > "$WORK/w$r.ns"
    [ $st = 0 ] || { echo "wav2mel.sh: wav2mel failed (exit $st)" >&2; exit 1; }
    say "run $r/$R: torchaudio, torch.set_num_threads($T) ..."
    st=0
    a=$(now)
    "$TIME" -f '%e %M %U %S' -o "$WORK/t$r.time" "$PY" "$ROOT/bench/wav2mel_torch.py" --threads "$T" \
        --list "$LIST" --report "$WORK/t$r.json" || st=$?
    echo "$a $(now)" > "$WORK/t$r.ns"
    [ $st = 0 ] || { echo "wav2mel.sh: wav2mel_torch.py failed (exit $st)" >&2; exit 1; }
    r=$((r + 1))
done

# ---------------------------------------------------------------- 4. report
# One line per run: wav2mel start ns, end ns, %e, KB, user s, sys s; the same for torch; then
# the torch script's own numbers (import s, processing s, stage s..., checksum).
r=1
while [ $r -le "$R" ]; do
    w="$(cat "$WORK/w$r.ns") $(tail -n 1 "$WORK/w$r.time")"
    t="$(cat "$WORK/t$r.ns") $(tail -n 1 "$WORK/t$r.time")"
    j=$("$PY" -c 'import json,sys; d=json.load(open(sys.argv[1])); s=d["stages_s"]
print(d["import_s"], d["process_s"], s["load"], s["resample"], s["stft"], s["mel"], s["log"], repr(d["checksum"]), d["frames"])' "$WORK/t$r.json")
    echo "$w $t $j"
    r=$((r + 1))
done > "$WORK/runs"

CPU=$(sed -n 's/^model name[[:space:]]*:[[:space:]]*//p' /proc/cpuinfo | head -n 1)
[ -n "$CPU" ] || CPU=$(uname -m)
VERS=$("$PY" -c 'import torch, torchaudio; print("torch %s, torchaudio %s" % (torch.__version__, torchaudio.__version__))')
LOAD=$(cut -d' ' -f1-3 /proc/loadavg)

awk -v n="$N" -v s="$S" -v t="$T" -v runs="$R" -v cpu="$CPU" -v nproc="$(nproc)" \
    -v kern="$(uname -sr)" -v date="$(date -u '+%Y-%m-%d %H:%M UTC')" -v vers="$VERS" \
    -v load="$LOAD" -v cache="$CACHE" -v check="$CHECKLINE" '
function rtf(x) { return x > 0 ? sprintf("%.1f", audio / x) : "inf" }
function ratio(a, b) {
    if (b <= 0) return "infinitely faster"
    return a >= b ? sprintf("%.2fx faster", a / b) : sprintf("%.2fx slower", b / a)
}
{
    k = NR
    ww[k] = ($2 - $1) / 1e9; we[k] = $3; wk[k] = $4; wu[k] = $5; ws[k] = $6
    tw[k] = ($8 - $7) / 1e9; te[k] = $9; tk[k] = $10; tu[k] = $11; ts[k] = $12
    imp[k] = $13; pr[k] = $14; ld[k] = $15; rs[k] = $16; st[k] = $17; ml[k] = $18; lg[k] = $19
    ck[k] = $20; fr = $21
}
END {
    audio = n * s
    bw = 1; bt = 1; bp = 1; mwk = 0; mtk = 0; bi = 1
    for (k = 1; k <= NR; k++) {
        if (ww[k] < ww[bw]) bw = k
        if (tw[k] < tw[bt]) bt = k
        if (pr[k] < pr[bp]) bp = k
        if (imp[k] < imp[bi]) bi = k
        if (wk[k] > mwk) mwk = wk[k]
        if (tk[k] > mtk) mtk = tk[k]
        d = ck[k] - ck[1]; if (d < 0) d = -d
        if (d > 1e-9 * (ck[1] < 0 ? -ck[1] : ck[1]) + 1e-6) ckbad = 1
    }
    W = ww[bw]; TT = tw[bt]; TP = pr[bp]
    printf "\nwsac wav2mel benchmark, %s\n", date
    printf "machine : %s, nproc %d, %s, load avg %s (at end)\n", cpu, nproc, kern, load
    printf "threads : %d   (wav2mel --threads %d; torch.set_num_threads(%d) and, in wav2mel_torch.py,\n", t, t, t
    printf "          OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=%d)\n", t
    printf "input   : %d clips x %g s = %g s of audio; 44.1 kHz 16-bit mono WAV, page cache warm\n", n, s, audio
    printf "          %s\n", cache
    printf "work    : -> 32 kHz, STFT 1024/320 periodic Hann centred (reflect), power, 64 slaney mels\n"
    printf "          50-14000 Hz, 10*log10(max(x, 1e-10)); %d frames in all\n", fr
    printf "resample: wav2mel uses libsoxr HQ; torchaudio.functional.resample its default\n"
    printf "          windowed-sinc interpolation (sinc_interp_hann, width 6, rolloff 0.99)\n"
    printf "check   : %s\n", check
    printf "runs    : %d of each, alternating; wall = best (min) run; peak RSS = max over runs\n", runs
    printf "          (wall from date +%%s%%N around /usr/bin/time; RSS and CPU from its %%M %%U %%S)\n"
    printf "python  : %s\n\n", vers
    printf "%-30s %6s %8s %8s %8s %12s  %s\n", "", "clips", "audio s", "wall s", "RTF", "peak RSS MB", "CPU s (usr+sys)"
    printf "%-30s %6d %8.1f %8.3f %8s %12.1f  %.2f (%.2f+%.2f)\n", "wav2mel (C)", n, audio, W, rtf(W), mwk / 1024,
        wu[bw] + ws[bw], wu[bw], ws[bw]
    printf "%-30s %6d %8.1f %8.3f %8s %12.1f  %.2f (%.2f+%.2f)\n", "torchaudio, whole process", n, audio, TT, rtf(TT),
        mtk / 1024, tu[bt] + ts[bt], tu[bt], ts[bt]
    printf "%-30s %6d %8.1f %8.3f %8s %12s  %s\n", "torchaudio, excluding imports", n, audio, TP, rtf(TP), "(same)", "-"
    printf "\n"
    printf "wav2mel is %s (torchaudio whole process: work + %.2f s start-up, imports, exit)\n", ratio(TT, W), TT - TP
    printf "wav2mel is %s (torchaudio processing loop only, imports excluded)\n", ratio(TP, W)
    printf "           (imports alone: %.2f s, measured inside the script)\n", imp[bi]
    printf "\ntorchaudio time by stage (best run, %.2f s):\n", TP
    tot = ld[bp] + rs[bp] + st[bp] + ml[bp] + lg[bp]
    if (tot <= 0) tot = 1
    printf "  load+mono %7.2f s %5.1f%%   resample %7.2f s %5.1f%%   stft+power %7.2f s %5.1f%%\n",
        ld[bp], 100 * ld[bp] / tot, rs[bp], 100 * rs[bp] / tot, st[bp], 100 * st[bp] / tot
    printf "  mel       %7.2f s %5.1f%%   log10    %7.2f s %5.1f%%\n",
        ml[bp], 100 * ml[bp] / tot, lg[bp], 100 * lg[bp] / tot
    printf "\nall runs (wall s [GNU time %%e] / peak RSS MB):\n"
    for (k = 1; k <= NR; k++)
        printf "  run %d: wav2mel %7.3f [%.2f] / %5.1f   torchaudio %7.3f [%.2f] / %5.1f (imports %.2f, loop %.3f)\n",
            k, ww[k], we[k], wk[k] / 1024, tw[k], te[k], tk[k] / 1024, imp[k], pr[k]
    if (ckbad) printf "WARNING: torchaudio checksums differ between runs\n"
}' "$WORK/runs"
