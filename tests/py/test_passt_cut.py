"""SALSA's waveform cut end to end: wav2mel --frontend passt | clap-audio
against the published evaluation from the waveform (scripts/passtref.py
audio_forward_wave: the clip zero-padded / cropped to 30 s, unfolded into
10-s pieces, each piece's own AugmentMelSTFT, PaSST on each, the features of
the pieces kept by the true length averaged, the projection), on a small
random SALSA model with the real front end and segment sizes (128 mel bins,
16x16 patches, 8 x 62 positions, 10-s pieces of a fixed 30 s) and a narrow
tower (width 30 = 3 heads, MLP 46, 2 blocks, 17-d embedding).

Clips: 25 s (3 pieces, the last partial), 13.7 s (2, odd length), 3 s (1),
exactly 10 s and 10 s + 1 sample (the boundary of the mask), 45 s (cropped
to its first 30 s), a 44.1 kHz file (the reference gets wav2mel's resampled
samples). Also: the stream header records the cut; wav2mel's pieces equal
passtmelref.passt_mel_segments; -j 1 and 3 give the same bits; a whole-clip
stream still encodes (with a warning) and is only close; streams and
records that do not fit the model's cut are refused by name.

Tolerance (issue 11): per embedding, cosine >= 0.99999 and max |C - ref| <= 1e-4."""
import io
import json
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf
import torch

from tap import ROOT, check, done, note, tool
import convert
import passtmelref
import passtref
import wsacstream as ws

COS_MIN, ABS_MAX, MEL_TOL = 0.99999, 1e-4, 1e-4
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-passt-cut-")
tmp = tmpdir.name
torch.set_num_threads(1)
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
HELPER = os.path.join(BUILD, "tests", "test_passt_mel")

cfg = passtref.Config(n_mels=128, dim=30, depth=2, heads=3, mlp=46, patch=(16, 16), stride=(16, 16), grid=(8, 62),
                      embed=17, classes=7, vocab=60, hidden=24, layers=1, text_heads=2, intermediate=40, positions=40)
CKPT = os.path.join(tmp, "small.ckpt")
torch.save({"state_dict": passtref.random_state_dict(cfg, seed=11)}, CKPT)
VOCAB, MERGES = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
voc = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
voc.update({"t%d" % i: i for i in range(5, cfg.vocab)})
with open(VOCAB, "w") as f:
    json.dump(voc, f)
with open(MERGES, "w") as f:
    f.write("#version: 0.2\nt 1\n")
MODEL = os.path.join(tmp, "small.safetensors")
check("setup: convert.py salsa converts a small checkpoint with SALSA's front end and segment sizes",
      convert.main(["salsa", CKPT, "--vocab", VOCAB, "--merges", MERGES, "-o", MODEL, "--audio-heads", "3",
                    "--text-heads", "2"]) == 0)
import sttools  # noqa: E402

tensors, meta = sttools.load(MODEL)
ref_model = passtref.load({k: np.array(v) for k, v in tensors.items() if v.dtype == np.float32}, cfg)
check("setup: the model's cut is SALSA's (320000-sample pieces, 3 of them, 1000 frames each)",
      meta.get("clap.audio.segment_samples") == "320000" and meta.get("clap.audio.segments") == "3"
      and cfg.seg_frames == 1000, meta)


def agree(c, r):
    c, r = np.asarray(c, np.float64), np.asarray(r, np.float64)
    return float(np.abs(c - r).max()), float(c @ r / np.linalg.norm(c) / np.linalg.norm(r))


def wave(n, sr, seed):
    g = np.random.default_rng(seed)
    t = np.arange(n) / sr
    x = 0.25 * np.sin(2 * np.pi * (300 + 150 * np.sin(0.7 * t)) * t) + 0.05 * g.standard_normal(n)
    x[n // 3: n // 3 + sr // 10] += 0.5 * g.standard_normal(min(sr // 10, n - n // 3))  # a burst
    return np.clip(x, -1, 1).astype(np.float32)


def mp(proc):
    return ws.read_stream(io.BytesIO(proc.stdout)) if proc.stdout else (None, [], None)


clips = {}  # key -> (path, samples at 32 kHz as wav2mel reads them)
for name, n in [("c25s", 25 * 32000), ("c13.7s", int(13.7 * 32000) + 1), ("c3s", 3 * 32000), ("c10s", 320000),
                ("c10s+1", 320001), ("c45s", 45 * 32000), ("c0.01s", 320)]:
    path = os.path.join(tmp, name + ".wav")
    x = wave(n, 32000, len(clips))
    sf.write(path, x, 32000, subtype="FLOAT")
    clips[name + ".wav"] = (path, x)
p441 = os.path.join(tmp, "c7.3s-44k.wav")
sf.write(p441, wave(int(7.3 * 44100) | 1, 44100, 99), 44100, subtype="PCM_24")
ok = os.access(HELPER, os.X_OK)
if ok:
    h = subprocess.run([HELPER, "--samples", "32000", p441], capture_output=True)
    ok = h.returncode == 0
    clips["c7.3s-44k.wav"] = (p441, np.frombuffer(h.stdout, dtype=np.float32))
check("setup: the test_passt_mel helper gives wav2mel's resampled samples of the 44.1 kHz file", ok, HELPER)
paths = [v[0] for v in clips.values()]

# ---------------------------------------------------------------- wav2mel's pieces
w1 = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "-j", "1"] + paths, capture_output=True)
w3 = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "-j", "3"] + paths, capture_output=True)
hdr, recs, _ = mp(w1)
recs = {r["key"]: r for r in recs}
check("wav2mel --frontend passt: exit 0, a record per clip, the same bytes on 1 and 3 threads",
      w1.returncode == 0 and sorted(recs) == sorted(clips) and w1.stdout == w3.stdout, w1.stderr.decode())
pr = hdr["params"] if hdr else {}
check("header: cut segments, segment_samples 320000, segments 3, segment_frames 1000",
      pr.get("cut") == "segments" and pr.get("segment_samples") == 320000 and pr.get("segments") == 3
      and pr.get("segment_frames") == 1000, pr)
bad, worst = [], 0.0
for k, (path, x) in clips.items():
    r = recs.get(k)
    ref = passtmelref.passt_mel_segments(x)
    want_k = passtmelref.kept_segments(len(x))
    if r is None or r["mel"].shape != ref.shape or ref.shape[0] != 1000 * want_k or r["samples"] != len(x):
        bad.append("%s: %s vs %s" % (k, None if r is None else (r["mel"].shape, r["samples"]), ref.shape))
        continue
    d = float(np.abs(r["mel"].astype(np.float64) - ref).max())
    worst = max(worst, d)
    if d > MEL_TOL:
        bad.append("%s: %.2e" % (k, d))
check("the pieces' mels: T = 1000 x kept pieces, \"samples\" the true length, max |C - float64 ref| <= %g" % MEL_TOL,
      not bad, bad)
note("wav2mel pieces vs passtmelref.passt_mel_segments: max |C - ref| = %.2e over %d clips" % (worst, len(clips)))
check("kept pieces: 25 s 3, 13.7 s 2, 3 s 1, 10 s 1, 10 s + 1 sample 2, 45 s 3, 0.01 s 1",
      [passtmelref.kept_segments(len(clips[k][1])) for k in
       ("c25s.wav", "c13.7s.wav", "c3s.wav", "c10s.wav", "c10s+1.wav", "c45s.wav", "c0.01s.wav")]
      == [3, 2, 1, 1, 2, 3, 1])

# ---------------------------------------------------------------- clap-audio: as published
MELS = os.path.join(tmp, "mels.mp")
with open(MELS, "wb") as f:
    f.write(w1.stdout)
outs = {}
for j in ("1", "3"):
    pj = subprocess.run([tool("clap-audio"), "-j", j, "-m", MODEL, MELS], capture_output=True)
    outs[j] = pj
p = outs["1"]
_, erecs, _ = mp(p)
got = {r["key"]: r["emb"] for r in erecs}
check("clap-audio: exit 0, no warning, -j 1 and 3 the same bytes",
      p.returncode == 0 and sorted(got) == sorted(clips) and b"warning" not in p.stderr
      and outs["3"].stdout == p.stdout, p.stderr.decode())
bad, rows = [], []
for k, (path, x) in clips.items():
    r = passtref.audio_forward_wave(ref_model, cfg, x).numpy()
    e = got.get(k)
    if e is None:
        bad.append(k + ": no embedding")
        continue
    d, c = agree(e, r)
    rows.append((k, d, c))
    if d > ABS_MAX or c < COS_MIN:
        bad.append("%s: max abs %.3g cos %.9f" % (k, d, c))
check("parity with the published evaluation from the waveform: cosine >= %g, max |C - ref| <= %g, every clip"
      % (COS_MIN, ABS_MAX), rows and not bad, bad)
for k, d, c in rows:
    note("%-14s max |C - ref| = %.2e, 1 - cosine = %.1e" % (k, d, 1 - c))
# the published float32 front end, for scale (not a check)
x25 = clips["c25s.wav"][1]
d32, c32 = agree(got["c25s.wav"], passtref.audio_forward_wave(ref_model, cfg, x25, mel_dtype="float32").numpy())
note("for scale: against the published float32 front end, 25 s: max |C - ref| = %.2e, cosine %.9f" % (d32, c32))

# ---------------------------------------------------------------- the whole-clip stream: accepted, approximate
ww = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "--whole-clip", clips["c25s.wav"][0]],
                    capture_output=True)
hw, rw, _ = mp(ww)
pw = subprocess.run([tool("clap-audio"), "-m", MODEL], input=ww.stdout, capture_output=True)
_, ew, _ = mp(pw)
okw = ww.returncode == 0 and pw.returncode == 0 and len(ew) == 1 and b"approximation" in pw.stderr \
    and rw[0]["mel"].shape == (1 + (25 * 32000 - 1) // 320, 128) and hw["params"].get("cut") == "whole" \
    and "segment_samples" not in hw["params"]
if okw:
    dw, cw = agree(ew[0]["emb"], passtref.audio_forward(ref_model, cfg, rw[0]["mel"], 25 * 32000).numpy())
    dp, cp = agree(ew[0]["emb"], got["c25s.wav"])
    okw = dw <= ABS_MAX and cw >= COS_MIN
    note("whole-clip stream, 25 s: equals passtref.audio_forward on its mel (max %.2e); vs the published cut: "
         "max |diff| %.2e, cosine %.9f" % (dw, dp, cp))
check("--whole-clip: header cut whole, T = 2500; clap-audio encodes it with a warning (the frame-space slicing)",
      okw, pw.stderr.decode())

# ---------------------------------------------------------------- refusals
def run_ca(data, model=MODEL):
    pc = subprocess.run([tool("clap-audio"), "-q", "-m", model], input=data, capture_output=True)
    return pc, {r["key"]: r for r in mp(pc)[1]}


c3 = clips["c3s.wav"][0]
for opts, what in [(["--segment-seconds", "5"], "pieces are 160000 samples"),
                   (["--segments", "4"], "4 to the fixed length")]:
    s = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt"] + opts + [c3], capture_output=True)
    pc, g = run_ca(s.stdout)
    check("a stream cut otherwise (%s) is refused, exit 2, both cuts named" % " ".join(opts),
          s.returncode == 0 and pc.returncode == 2 and what.encode() in pc.stderr and b"320000, 3" in pc.stderr
          and not g, pc.stderr.decode())
s = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "--hop", "160", c3], capture_output=True)
pc, g = run_ca(s.stdout)
check("a stream of another hop is refused, exit 2", pc.returncode == 2 and b"hop" in pc.stderr and not g,
      pc.stderr.decode())
# records that do not fit the cut: each fails alone, named
m1 = recs["c3s.wav"]["mel"]
m2 = recs["c13.7s.wav"]["mel"]
rr = [{"key": "nosamples", "mel": m1}, {"key": "ragged", "mel": m2[:1500], "samples": len(clips["c13.7s.wav"][1])},
      {"key": "short", "mel": m1, "samples": len(clips["c13.7s.wav"][1])},
      {"key": "extra", "mel": m2, "samples": 96000}, {"key": "good", "mel": m2[:1000], "samples": 96000}]
path = os.path.join(tmp, "bad.mp")
with open(path, "wb") as f:
    ws.write_stream(f, "wav2mel", rr, params=pr)
pc = subprocess.run([tool("clap-audio"), "-m", MODEL, path], capture_output=True)
g = {r["key"]: r["emb"] for r in mp(pc)[1]}
err = pc.stderr.decode()
check("records off the cut fail alone (exit 3): no \"samples\", frames not whole pieces, fewer pieces than kept",
      pc.returncode == 3 and sorted(g) == ["extra", "good"] and "nosamples: " in err and "\"samples\"" in err
      and "ragged: " in err and "short: " in err and "kept segment" in err, err)
check("a record with more pieces than its length keeps uses the kept ones (the mask)",
      "extra" in g and np.array_equal(g["extra"], g["good"]))
sf.write(os.path.join(tmp, "empty.wav"), np.zeros(0, np.float32), 32000)
e0 = subprocess.run([tool("wav2mel"), "--frontend", "passt", os.path.join(tmp, "empty.wav"), c3], capture_output=True)
check("wav2mel: an empty clip fails by name (exit 3), the other is written",
      e0.returncode == 3 and b"empty.wav: " in e0.stderr and len(mp(e0)[1]) == 1, e0.stderr.decode())
for opts, why in [(["--frontend", "passt", "--whole-clip", "--segments", "2"], "--whole-clip"),
                  (["--segments", "2"], "--frontend passt"), (["--whole-clip"], "--frontend passt"),
                  (["--frontend", "passt", "--segment-samples", "100"], "outside"),
                  (["--frontend", "passt", "--segments", "0"], "--segments")]:
    pu = subprocess.run([tool("wav2mel")] + opts + [c3], capture_output=True)
    check("usage: %s -> exit 1, nothing on stdout" % " ".join(opts),
          pu.returncode == 1 and pu.stdout == b"" and why in pu.stderr.decode(), pu.stderr.decode())
tmpdir.cleanup()
done()
