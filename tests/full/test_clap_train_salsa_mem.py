"""clap-train's memory on the full-size SALSA model (PaSST-S + RoBERTa-large,
random weights: fullsalsa.py), one training step of 30-s clips (3 segments of
1000 frames each; SALSA's patchout 15/2: 284 tokens a segment), by batch size
and mode: the whole batch at once; PaSST's activations recomputed in the
backward pass (--recompute); micro-batches of the gradient cache
(--micro-bs); both. Peak RSS (the process's own VmHWM, from wait4) and wall
time on -j THREADS (WSAC_MEM_THREADS, default 1), and the loss, which must be
the same (1e-6 relative) in every mode of a batch size: the gradient cache is
the unsplit batch's loss.

    sh tests/run.sh --full test_clap_train_salsa_mem     (minutes; 12 GB of memory)
    WSAC_MEM_BS=2,4 WSAC_MEM_MODES=plain,micro1+recompute ...   a subset
    WSAC_MEM_ARGS="--patchout-t 0 --patchout-f 0" ...   more clap-train options
                                                        (here: all 498 tokens)

The table's per-clip slope gives the peak at any batch size: peak(bs) =
fixed + bs x per-clip (plain), fixed + micro x per-clip' (micro-batches).
Measured (2 shared cores, -j 1; 441.5M parameters: weights, gradients and
AdamW's two moments are 6.6 GiB of it):

    bs  plain      recompute  micro 1    micro 1 + recompute
     2  7.89 GiB   6.85 GiB   7.25 GiB   6.73 GiB
     4  9.18 GiB   7.10 GiB   7.25 GiB   6.73 GiB
    a clip: 0.645 GiB plain, 0.123 GiB recompute, 0 with micro-batches
    bs 64 (extrapolated): plain 47.9 GiB, recompute 14.5 GiB, micro 6.7-7.2 GiB
    bs 64 (SALSA's), --micro-bs 8 --recompute, -j 2 (WSAC_MEM_BS=64
    WSAC_MEM_MODES=micro8+recompute WSAC_MEM_THREADS=2): 7.71 GiB measured,
    361 s on the 2 quiet cores (1125 s shared with other runs); all 498 tokens
    (WSAC_MEM_ARGS="--patchout-t 0 --patchout-f 0"): 8.39 GiB, 644 s."""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "py"))
from tap import check, done, note, tool  # noqa: E402
import fullsalsa  # noqa: E402
import wsacstream as ws  # noqa: E402

THREADS = os.environ.get("WSAC_MEM_THREADS", "1")
BS = [int(x) for x in os.environ.get("WSAC_MEM_BS", "2,4").split(",")]
MODES = os.environ.get("WSAC_MEM_MODES", "plain,recompute,micro1,micro1+recompute").split(",")
EXTRA = os.environ.get("WSAC_MEM_ARGS", "").split()
_, MODEL = fullsalsa.ensure()
tmpd = tempfile.TemporaryDirectory(prefix="wsac-train-salsa-mem-")
tmp = tmpd.name
n = max(BS)
rng = np.random.default_rng(0)
hdr = {"frontend": "passt", "cut": "segments", "segment_samples": 320000, "segments": 3, "hop": 320, "sr": 32000,
       "n_mels": 128, "segment_frames": 1000}
mel, caps = os.path.join(tmp, "mel.mp"), os.path.join(tmp, "caps.tsv")
with open(mel, "wb") as f:
    ws.write_stream(f, "wav2mel", ({"key": "c%d" % i, "samples": 960000,
                                    "mel": (rng.standard_normal((3000, 128)) * 0.5).astype(np.float32)}
                                   for i in range(n)), params=hdr)
words = "a dog barks while cars pass by and birds sing in the rain near the water people talk loudly".split()
with open(caps, "w") as f:
    for i in range(n):
        f.write("c%d\t%s\n" % (i, " ".join(rng.choice(words, size=int(rng.integers(6, 20))))))


def run(bs, mode):
    args = [tool("clap-train"), "--init", MODEL, "--mel", mel, "--captions", caps, "--bs", str(bs), "--no-shuffle",
            "--max-steps", "1", "--epochs", "1", "-j", THREADS, "-q", "--log", os.path.join(tmp, "log.tsv"),
            "-o", os.path.join(tmp, "out.st")] + EXTRA
    if "recompute" in mode:
        args.append("--recompute")
    if mode.startswith("micro"):
        args += ["--micro-bs", mode[5:].split("+")[0]]
    t0 = time.time()
    p = subprocess.Popen(args, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    err = p.stderr.read().decode()
    p.returncode = os.waitstatus_to_exitcode(status)
    wall = time.time() - t0
    loss = None
    if p.returncode == 0:
        row = open(os.path.join(tmp, "log.tsv")).read().splitlines()[1].split("\t")
        loss = float(row[3])
    return p.returncode, err, ru.ru_maxrss / 2 ** 20, wall, loss


rows = []
for bs in BS:
    base = None
    for mode in MODES:
        rc, err, gib, wall, loss = run(bs, mode)
        ok = check("bs %d, %s: one full-size step, exit 0" % (bs, mode), rc == 0, err[-400:])
        if not ok:
            continue
        if base is None:
            base = loss
        else:
            d = abs(loss - base) / abs(base)
            check("bs %d, %s: the loss of the first mode (%s) within 1e-6 (%.1e)" % (bs, mode, MODES[0], d), d < 1e-6)
        rows.append((bs, mode, gib, wall, loss))
        note("bs %d %-18s peak RSS %6.2f GiB  %7.1f s  loss %.7f" % (bs, mode, gib, wall, loss))
for mode in MODES:
    pts = [(b, g) for b, m, g, _, _ in rows if m == mode]
    if len(pts) >= 2:
        (b0, g0), (b1, g1) = pts[0], pts[-1]
        slope = (g1 - g0) / (b1 - b0)
        note("%s: %.3f GiB a clip; extrapolated to bs 64: %.1f GiB" % (mode, slope, g0 + slope * (64 - b0)))
done()
