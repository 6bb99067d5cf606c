"""clap-audio with the full-size CNN14 (random weights in the published
layout, tests/full/fullmodel.py: made once and cached under ${TMPDIR:-/tmp})
against the PyTorch reference (scripts/clapref.py audio_forward) on the same
converted weights: a 10-s and a 30-s clip (T = 1001 and 3001), an odd T, and
the bundled samples through wav2mel; peak RSS on the 30-s clip; determinism.

Tolerances (issue 3): per embedding, cosine >= 0.99999 and max |C - ref| <= 1e-4;
peak RSS on a 30-s clip < model file size + 256 MiB."""
import glob
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "py"))
from tap import ROOT, check, done, note, tool  # noqa: E402
import clapref  # noqa: E402
import fullmodel  # noqa: E402
import sttools  # noqa: E402
import wsacstream as ws  # noqa: E402

COS_MIN, ABS_MAX = 0.99999, 1e-4
RSS_SLACK_MB = 256
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-clap-audio-full-")
tmp = tmpdir.name
torch.set_num_threads(os.cpu_count() or 1)

t0 = time.time()
_, MODEL = fullmodel.ensure()
tensors, meta = sttools.load(MODEL)
# only the audio tower: that is all the reference needs
sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()
      if k.startswith(("audio_encoder.", "audio_proj."))}
del tensors
E = sd["audio_proj.2.bias"].shape[0]
note("model: %s (%.1f MB), loaded in %.1f s" % (MODEL, os.path.getsize(MODEL) / 1e6, time.time() - t0))


def agree(c, r):
    c, r = np.asarray(c, np.float64), np.asarray(r, np.float64)
    return float(np.abs(c - r).max()), float(c @ r / np.linalg.norm(c) / np.linalg.norm(r))


def write(name, records):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        ws.write_stream(f, "test", records, params={"n_mels": 64, "sr": 32000, "hop": 320})
    return path


rng = np.random.default_rng(11)
# random log-mel-like input (around -40 dB) and the bundled recordings through wav2mel
mels = {"clip10s": (rng.standard_normal((1001, 64)) * 15 - 40).astype(np.float32),
        "clip30s": (rng.standard_normal((3001, 64)) * 15 - 40).astype(np.float32),
        "odd1337": (rng.standard_normal((1337, 64)) * 15 - 40).astype(np.float32)}
samples = sorted(glob.glob(os.path.join(ROOT, "tests", "data", "signals", "*")))
w2m = subprocess.run([tool("wav2mel"), "-q"] + samples, capture_output=True)
_, srecs, _ = ws.read_stream(io.BytesIO(w2m.stdout))
for r in srecs:
    mels[r["key"]] = r["mel"]
check("setup: wav2mel reads the bundled samples", w2m.returncode == 0 and len(srecs) == len(samples), w2m.stderr)
all_path = write("all.mp", [{"key": k, "mel": m} for k, m in mels.items()])

# ---------------------------------------------------------------- parity
t0 = time.time()
p = subprocess.run([tool("clap-audio"), "-q", "-m", MODEL, all_path], capture_output=True)
wall = time.time() - t0
_, recs, tr = ws.read_stream(io.BytesIO(p.stdout))
got = {r["key"]: r["emb"] for r in recs}
check("full model: every clip encoded (exit 0)", p.returncode == 0 and sorted(got) == sorted(mels),
      p.stderr.decode()[-500:])
note("clap-audio: %d clips (%s frames) in %.2f s, all cores, model load included"
     % (len(mels), "+".join(str(m.shape[0]) for m in mels.values()), wall))
refs, rows, bad = {}, [], []
for k, m in mels.items():
    t0 = time.time()
    refs[k] = clapref.audio_forward(sd, m)[0].numpy()
    dt = time.time() - t0
    if k not in got:
        continue
    d, c = agree(got[k], refs[k])
    rows.append((k, m.shape[0], d, c, dt))
    if not (d <= ABS_MAX and c >= COS_MIN and got[k].shape == (E,)):
        bad.append("%s: max abs %.3g cos %.8f" % (k, d, c))
check("parity: cosine >= %g and max |C - ref| <= %g for every clip" % (COS_MIN, ABS_MAX), rows and not bad, bad)
for k, T, d, c, dt in rows:
    note("parity %-18s T=%5d: max |C - ref| = %.2e, 1 - cosine = %.1e (PyTorch %.2f s)" % (k, T, d, 1 - c, dt))
if rows:
    note("parity, full model: max |C - ref| = %.2e, min cosine = %.9f over %d clips"
         % (max(r[2] for r in rows), min(r[3] for r in rows), len(rows)))

# ---------------------------------------------------------------- the other algorithm, threads, determinism

def within(out):
    _, rs, _ = ws.read_stream(io.BytesIO(out)) if out else (None, [], None)
    d = [agree(r["emb"], refs[r["key"]]) for r in rs if r["key"] in refs]
    return len(d) == len(mels) and all(x <= ABS_MAX and c >= COS_MIN for x, c in d), d


runs = {}
for conv, j in (("auto", "1"), ("auto", "2"), ("im2col", "1"), ("im2col", "2")):
    runs[conv, j] = subprocess.run([tool("clap-audio"), "-q", "-j", j, "--conv", conv, "-m", MODEL, all_path],
                                   capture_output=True).stdout
    ok, d = within(runs[conv, j])
    check("--conv %s --threads %s: within tolerance of PyTorch on every clip" % (conv, j), ok, d)
    if d:
        note("--conv %-6s --threads %s: max |C - ref| = %.2e, min cosine = %.9f"
             % (conv, j, max(x for x, _ in d), min(c for _, c in d)))
again = subprocess.run([tool("clap-audio"), "-q", "-j", "2", "-m", MODEL, all_path], capture_output=True).stdout
check("determinism: two runs with --threads 2 are bit-identical", again == runs["auto", "2"] and len(again) > 1000)
# every sgemm is cut by size alone: the same bits on any thread count and kernel
check("--threads 1 and 2 give the same bits (--conv auto)", runs["auto", "1"] == runs["auto", "2"])
check("--threads 1 and 2 give the same bits (--conv im2col)", runs["im2col", "1"] == runs["im2col", "2"])

# ---------------------------------------------------------------- memory on a 30-s clip
one = write("30s.mp", [{"key": "clip30s", "mel": mels["clip30s"]}])
size_mb = os.path.getsize(MODEL) / 2**20
for j in ("1", "2"):
    p = subprocess.run(["/usr/bin/time", "-f", "%M", tool("clap-audio"), "-q", "-j", j, "-m", MODEL, one],
                       capture_output=True)
    try:
        rss_mb = int(p.stderr.decode().strip().splitlines()[-1]) / 1024
    except (ValueError, IndexError):
        rss_mb = float("inf")
    check("memory: peak RSS on a 30-s clip (T=3001, --threads %s) < model file + %d MiB" % (j, RSS_SLACK_MB),
          p.returncode == 0 and rss_mb < size_mb + RSS_SLACK_MB, p.stderr.decode()[-300:])
    note("memory: peak RSS %.0f MiB on a 30-s clip, --threads %s (model file %.0f MiB; limit %.0f MiB)"
         % (rss_mb, j, size_mb, size_mb + RSS_SLACK_MB))

tmpdir.cleanup()
done()
