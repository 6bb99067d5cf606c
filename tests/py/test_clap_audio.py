"""clap-audio against the PyTorch reference (scripts/clapref.py audio_forward)
on a reduced random CNN14 (clapref.Config.tiny(): 6 blocks of 4..24 channels,
odd sizes on purpose), converted by scripts/convert.py like a real checkpoint:
parity for clip lengths that are and are not multiples of 64, per-record
errors, pass-through, determinism, cropping, the wav2mel pipeline, model
files of other architectures, and (when valgrind is installed) a leak check.

Tolerance (issue 3): per embedding, cosine >= 0.99999 and max |C - ref| <= 1e-4."""
import io
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import soundfile as sf
import torch

from tap import check, done, note, tool, VALGRIND
import clapref
import convert
import signals
import sttools
import wsacstream as ws

COS_MIN, ABS_MAX = 0.99999, 1e-4
A = clapref.A
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-clap-audio-")
tmp = tmpdir.name
torch.set_num_threads(1)

# ---------------------------------------------------------------- the reduced model
cfg = clapref.Config.tiny()
sd0 = clapref.random_state_dict(cfg, seed=3)
ckpt = os.path.join(tmp, "tiny.pt")
torch.save({"model": sd0}, ckpt)
vocab = os.path.join(tmp, "vocab.txt")
with open(vocab, "w") as f:
    f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + ["w%d" % i for i in range(cfg.vocab - 5)]))
    f.write("\n")
MODEL = os.path.join(tmp, "tiny.safetensors")
rc = convert.main(["clap", ckpt, "--vocab", vocab, "-o", MODEL, "--text-heads", "4"])
check("setup: scripts/convert.py converts the tiny random checkpoint", rc == 0 and os.path.exists(MODEL))
tensors, meta = sttools.load(MODEL)
# the reference runs on exactly the weights in the converted file
sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if v.dtype == np.float32}
N_MELS, E = cfg.n_mels, cfg.embed


def ref(mel):
    return clapref.audio_forward(sd, np.array(mel, dtype=np.float32))[0].numpy()


def agree(c, r):
    """(max |c - r|, cosine)"""
    c, r = np.asarray(c, np.float64), np.asarray(r, np.float64)
    return float(np.abs(c - r).max()), float(c @ r / np.linalg.norm(c) / np.linalg.norm(r))


def stream(name, records, params=None, **kw):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        ws.write_stream(f, "test", records, params={"n_mels": N_MELS} if params is None else params, **kw)
    return path


def run(args, stdin=None, model=MODEL, prog="clap-audio"):
    cmd = [tool(prog)] + (["-m", model] if model else []) + list(args)
    p = subprocess.run(cmd, input=stdin, capture_output=True)
    try:
        hdr, recs, tr = ws.read_stream(io.BytesIO(p.stdout)) if p.stdout else (None, [], None)
    except Exception:  # noqa: BLE001 - a malformed stream shows up as no records
        hdr, recs, tr = None, [], None
    return p, {r["key"]: r for r in recs}, tr, hdr


rng = np.random.default_rng(7)


def mel(T, M=N_MELS):
    """log-mel-like values: around -40 dB, +-15"""
    return (rng.standard_normal((T, M)) * 15 - 40).astype(np.float32)


# ---------------------------------------------------------------- parity
lengths = [64, 65, 127, 128, 301, 1001]  # exactly 64 (the minimum), odd at every level, not multiples of 64
mels = {"T%d" % T: mel(T) for T in lengths}
good = stream("good.mp", [{"key": k, "mel": m} for k, m in mels.items()])
p, got, tr, hdr = run(["-q", good])
check("parity: exit 0, one record per clip", p.returncode == 0 and sorted(got) == sorted(mels), p.stderr.decode())
worst_abs, worst_cos, bad = 0.0, 1.0, []
for k, m in mels.items():
    e = got.get(k, {}).get("emb")
    if e is None or e.shape != (E,) or e.dtype != np.float32:
        bad.append("%s: emb %s" % (k, None if e is None else (e.shape, e.dtype)))
        continue
    d, c = agree(e, ref(m))
    worst_abs, worst_cos = max(worst_abs, d), min(worst_cos, c)
    if d > ABS_MAX or c < COS_MIN:
        bad.append("%s: max abs %.3g, cos %.8f" % (k, d, c))
check("parity: emb f32 [%d], cosine >= %g and max |C - ref| <= %g for T = %s" % (E, COS_MIN, ABS_MAX, lengths),
      not bad, bad)
note("parity, tiny model (channels %s, embed %d), T = %s: max |C - ref| = %.2e, min cosine = %.9f"
     % (cfg.channels, E, lengths, worst_abs, worst_cos))
norms = [float(np.linalg.norm(r["emb"])) for r in got.values()]
check("parity: every emb is L2-normalised", norms and max(abs(n - 1) for n in norms) < 1e-6, norms)
check("output header: tool clap-audio, params name the model and its sizes",
      hdr and hdr["tool"] == "clap-audio" and hdr["params"]["embed"] == E and hdr["params"]["blocks"] == 6
      and hdr["params"]["n_mels"] == N_MELS and hdr.get("input", {}).get("tool") == "test", hdr)
check("trailer: records counted, no errors", tr and tr["records"] == len(mels) and tr["errors"] == 0, tr)

# ---------------------------------------------------------------- the naive kernels
p2, naive, _, _ = run(["-q", "--naive", good])
ok = p2.returncode == 0 and sorted(naive) == sorted(mels)
dn = [agree(naive[k]["emb"], got[k]["emb"]) for k in mels] if ok else []
dr = [agree(naive[k]["emb"], ref(m)) for k, m in mels.items()] if ok else []
check("--naive (direct convolution in double) agrees with the default kernels within tolerance",
      ok and all(d <= ABS_MAX and c >= COS_MIN for d, c in dn), dn)
check("--naive agrees with PyTorch within tolerance", ok and all(d <= ABS_MAX and c >= COS_MIN for d, c in dr), dr)
if ok:
    note("--naive vs the default kernels: max |diff| %.2e; --naive vs PyTorch: max |diff| %.2e"
         % (max(d for d, _ in dn), max(d for d, _ in dr)))

# ---------------------------------------------------------------- algorithms x threads
# Lengths up and down, so that the buffers grow between records and are
# reused by shorter ones; every convolution algorithm on 1, 2 and 3 threads
# (2 and 3 split layers by tiles or by output channels).
var_T = [64, 1001, 65, 2000, 127, 66, 301, 97, 64]
var = {"v%d_T%d" % (i, T): mel(T) for i, T in enumerate(var_T)}
varp = stream("var.mp", [{"key": k, "mel": m} for k, m in var.items()])
var_ref = {k: ref(m) for k, m in var.items()}
outs = {}
for conv in ("auto", "im2col", "winograd"):
    worst, bad = (0.0, 1.0), []
    for j in ("1", "2", "3"):
        p = subprocess.run([tool("clap-audio"), "-q", "-m", MODEL, "--conv", conv, "-j", j, varp], capture_output=True)
        outs[conv, j] = p.stdout
        _, recs, _ = ws.read_stream(io.BytesIO(p.stdout)) if p.stdout else (None, [], None)
        if p.returncode != 0 or [r["key"] for r in recs] != list(var):
            bad.append("-j %s: exit %d, %d records" % (j, p.returncode, len(recs)))
            continue
        for r in recs:
            d, c = agree(r["emb"], var_ref[r["key"]])
            worst = (max(worst[0], d), min(worst[1], c))
            if d > ABS_MAX or c < COS_MIN:
                bad.append("-j %s %s: %.3g %.8f" % (j, r["key"], d, c))
    check("--conv %s on 1, 2, 3 threads, T = %s: within tolerance of PyTorch" % (conv, var_T), not bad, bad)
    # every sgemm is cut by size alone (lib/cnn14.c chunk_width): the same bits on
    # any thread count, whichever kernel OpenBLAS picks (OPENBLAS_CORETYPE)
    check("--conv %s: --threads 2 and 3 bit-identical to 1" % conv,
          outs[conv, "1"] == outs[conv, "2"] == outs[conv, "3"] and len(outs[conv, "1"]) > 1000)
    note("--conv %s: max |C - ref| = %.2e, min cosine = %.9f (threads 1-3)" % (conv, worst[0], worst[1]))

# ---------------------------------------------------------------- wider channels x threads
# Blocks of 136 to 520 channels are computed in 2 to 8 chunks of output channels
# (odd widths: the last chunk is narrower) and split by channels on short clips:
# still within tolerance, and the same bits on 1, 2 and 3 threads.
wcfg = clapref.Config(channels=[8, 24, 72, 136, 264, 520], embed=40, hidden=48, layers=2, heads=4, intermediate=72)
wsd0 = clapref.random_state_dict(wcfg, seed=5)
wckpt = os.path.join(tmp, "wide.pt")
torch.save({"model": wsd0}, wckpt)
WIDE = os.path.join(tmp, "wide.safetensors")
rc = convert.main(["clap", wckpt, "--vocab", vocab, "-o", WIDE, "--text-heads", "4"])
wt, _ = sttools.load(WIDE)
wsd = {k: torch.from_numpy(np.array(v)) for k, v in wt.items() if v.dtype == np.float32}
wide_T = [64, 301, 97]
wmels = {"w%d_T%d" % (i, T): mel(T) for i, T in enumerate(wide_T)}
wp = stream("wide.mp", [{"key": k, "mel": m} for k, m in wmels.items()])
wref = {k: clapref.audio_forward(wsd, np.array(m, dtype=np.float32))[0].numpy() for k, m in wmels.items()}
for conv in ("auto", "im2col", "winograd"):
    wo, bad = {}, []
    for j in ("1", "2", "3"):
        p = subprocess.run([tool("clap-audio"), "-q", "-m", WIDE, "--conv", conv, "-j", j, wp], capture_output=True)
        wo[j] = p.stdout
        _, recs, _ = ws.read_stream(io.BytesIO(p.stdout)) if p.stdout else (None, [], None)
        if p.returncode != 0 or [r["key"] for r in recs] != list(wmels):
            bad.append("-j %s: exit %d, %d records" % (j, p.returncode, len(recs)))
            continue
        for r in recs:
            d, c = agree(r["emb"], wref[r["key"]])
            if d > ABS_MAX or c < COS_MIN:
                bad.append("-j %s %s: %.3g %.8f" % (j, r["key"], d, c))
    check("wide channels %s, --conv %s on 1, 2, 3 threads: within tolerance of PyTorch" % (wcfg.channels, conv),
          rc == 0 and not bad, bad)
    check("wide channels, --conv %s: --threads 2 and 3 bit-identical to 1" % conv,
          wo["1"] == wo["2"] == wo["3"] and len(wo["1"]) > 100)

# ---------------------------------------------------------------- determinism
for conv, j in (("auto", "1"), ("auto", "2"), ("winograd", "3")):
    again = subprocess.run([tool("clap-audio"), "-q", "-m", MODEL, "--conv", conv, "-j", j, varp],
                           capture_output=True).stdout
    check("determinism: --conv %s --threads %s twice: bit-identical" % (conv, j),
          again == outs[conv, j] and len(again) > 1000)

# ---------------------------------------------------------------- per-record errors
nan = mel(200)
nan[17, 5] = np.nan
inf = mel(100)
inf[99, 0] = -np.inf
recs = [{"key": "ok1", "mel": mels["T65"]},
        {"key": "short63", "mel": mel(63)},
        {"key": "nan", "mel": nan},
        {"key": "inf", "mel": inf},
        {"key": "bands40", "mel": mel(300, 40)},
        {"key": "f64", "mel": mel(100).astype(np.float64)},
        {"key": "flat", "mel": mel(100).reshape(-1)},
        {"key": "nomel", "caption": "a dog barks"},
        {"key": "ok2", "mel": mels["T301"]}]
p, got, tr, _ = run([stream("errors.mp", recs)])
err = p.stderr.decode()
check("errors: exit status 3 when some records fail", p.returncode == 3, p.returncode)
check("errors: the good records are written, in order", list(got) == ["ok1", "ok2"], list(got))
check("errors: the good records are still right",
      all(agree(got[k]["emb"], ref(m))[0] <= ABS_MAX for k, m in (("ok1", mels["T65"]), ("ok2", mels["T301"])))
      if list(got) == ["ok1", "ok2"] else False)
for key, why in [("short63", "too short: 63 frames"), ("short63", "at least 64"), ("nan", "NaN"),
                 ("nan", "frame 17, band 5"), ("inf", "infinite"), ("bands40", "40 bands, the model takes 64"),
                 ("f64", "dtype f64"), ("flat", "1 dimensions, expected 2"), ("nomel", 'no "mel" field')]:
    line = [l for l in err.splitlines() if l.startswith("clap-audio: %s: " % key)]
    check("errors: %s is named with its reason (%s)" % (key, why), line and why in line[0], err)
check("errors: closing summary counts both", "2 records written, 7 failed" in err, err)
check("errors: the trailer lists the failed keys",
      tr and tr["errors"] == 7 and sorted(tr["failed"]) == sorted(
          ["short63", "nan", "inf", "bands40", "f64", "flat", "nomel"]), tr)

# a caption stream (clap-text's input shape) has no mel at all
caps = stream("captions.mp", [{"key": "c%d" % i, "text": "a caption"} for i in range(3)], params={})
p, got, tr, _ = run(["-q", caps])
err = p.stderr.decode()
check('errors: a caption stream: exit 3, every record named "no \\"mel\\" field", nothing written',
      p.returncode == 3 and not got and err.count('no "mel" field') == 3 and tr and tr["errors"] == 3, err)

# the stream header says another number of bands
p, got, tr, _ = run(["-q", stream("hdr40.mp", [{"key": "a", "mel": mel(100)}], params={"n_mels": 40})])
err = p.stderr.decode()
check("errors: a stream whose header says n_mels 40: each record named (header n_mels), exit 3",
      p.returncode == 3 and not got and "clap-audio: a: " in err and "n_mels 40" in err, err)

# another front end still encodes, with a warning
p, got, _, _ = run(["-q", stream("sr16k.mp", [{"key": "a", "mel": mel(100)}],
                                 params={"n_mels": 64, "sr": 16000, "hop": 320})])
err = p.stderr.decode()
check("a mel stream made at 16 kHz: encoded, with one warning naming sr",
      p.returncode == 0 and "a" in got and err.count("warning") == 1 and "sr 16000" in err, err)

# ---------------------------------------------------------------- pass-through
recs = [{"key": "clip one.wav", "mel": mels["T127"], "sr": 32000, "samples": 40320, "path": "/x/clip one.wav",
         "caption": "birds", "score": 0.5, "emb": np.zeros(3, np.float32), "ids": np.arange(4, dtype=np.int32)}]
p, got, _, _ = run(["-q", stream("pass.mp", recs)])
r = got.get("clip one.wav", {})
check("pass-through: key, sr, samples, path and other fields kept; mel dropped; an input emb replaced",
      p.returncode == 0 and r.get("sr") == 32000 and r.get("samples") == 40320 and r.get("path") == "/x/clip one.wav"
      and r.get("caption") == "birds" and r.get("score") == 0.5 and "mel" not in r
      and np.array_equal(r.get("ids"), np.arange(4)) and r.get("emb") is not None and r["emb"].shape == (E,),
      sorted(r))

# ---------------------------------------------------------------- --max-seconds
long_mel = mels["T301"]
hdr = {"n_mels": 64, "sr": 32000, "hop": 320}
lp = stream("long.mp", [{"key": "long", "mel": long_mel}, {"key": "shortish", "mel": mels["T65"]}], params=hdr)
p, got, _, _ = run(["-q", "--max-seconds", "1", lp])  # 1 + 32000/320 = 101 frames
check("--max-seconds 1: the first 101 frames (1 + floor(S sr / hop)) are encoded",
      p.returncode == 0 and agree(got["long"]["emb"], ref(long_mel[:101]))[0] <= ABS_MAX
      and agree(got["shortish"]["emb"], ref(mels["T65"]))[0] <= ABS_MAX, p.stderr.decode())
p, got, _, _ = run(["-q", "--max-seconds", "1", "--crop", "center", lp])
check("--max-seconds 1 --crop center: frames 100..200 of 301",
      p.returncode == 0 and agree(got["long"]["emb"], ref(long_mel[100:201]))[0] <= ABS_MAX, p.stderr.decode())
p, got, _, _ = run(["-q", "--max-seconds", "0.5", lp])
check("--max-seconds 0.5 leaves 51 frames: too short, named, exit 3",
      p.returncode == 3 and not got and "too short: 51 frames" in p.stderr.decode(), p.stderr.decode())

# ---------------------------------------------------------------- wav2mel | clap-audio
wav = os.path.join(tmp, "mix.wav")
sf.write(wav, np.clip(signals.make("mix", 44100, 3.21, seed=2), -1, 1).astype(np.float32), 44100, subtype="PCM_16")
w2m = subprocess.run([tool("wav2mel"), "-q", wav], capture_output=True).stdout
_, mrec, _ = ws.read_stream(io.BytesIO(w2m))
pipe = subprocess.run("%s -q %s | %s -q -m %s" % (tool("wav2mel"), wav, tool("clap-audio"), MODEL), shell=True,
                      capture_output=True)
_, erec, _ = ws.read_stream(io.BytesIO(pipe.stdout))
ok = pipe.returncode == 0 and len(mrec) == 1 and len(erec) == 1
d, c = agree(erec[0]["emb"], ref(mrec[0]["mel"])) if ok else (1, 0)
check("pipeline: wav2mel | clap-audio on a 3.21-s 44.1 kHz WAV matches clapref on wav2mel's mel",
      ok and d <= ABS_MAX and c >= COS_MIN and erec[0]["key"] == "mix.wav" and erec[0]["samples"] == 102720,
      (pipe.stderr.decode(), d, c))
if ok:
    note("pipeline: wav2mel | clap-audio, T = %d: max |C - ref| = %.2e, cosine %.9f" % (mrec[0]["mel"].shape[0], d, c))

# ---------------------------------------------------------------- empty, malformed input
p, got, tr, hdr = run(["-q", stream("empty.mp", [])])
check("an empty stream: exit 0, a header and an empty trailer", p.returncode == 0 and hdr and tr and tr["records"] == 0,
      p.stderr.decode())
data = open(good, "rb").read()
p, got, tr, _ = run([], stdin=data[: len(data) // 2])
check("a truncated stream: the records before the cut written, exit 2, no trailer",
      p.returncode == 2 and tr is None and "clap-audio: error: " in p.stderr.decode(), p.stderr.decode())

# ---------------------------------------------------------------- model files of other architectures


def variant(name, edit, meta_edit=None):
    t = {k: np.array(v) for k, v in tensors.items()}
    m = dict(meta)
    edit(t)
    if meta_edit:
        meta_edit(m)
    path = os.path.join(tmp, name + ".safetensors")
    sttools.save(path, t, m)
    return path


def renamed(t):
    t[A + "bn0.running_var_"] = t.pop(A + "bn0.running_var")


def no_block3(t):
    for k in [k for k in t if k.startswith(A + "conv_block3.")]:
        del t[k]


def transposed(t):
    t[A + "conv_block2.conv1.weight"] = np.ascontiguousarray(t[A + "conv_block2.conv1.weight"].transpose(1, 0, 2, 3))


def extra(t):
    t[A + "fc1.weight"] = np.zeros((4, 24), np.float32)


def f64(t):
    t["audio_proj.2.bias"] = t["audio_proj.2.bias"].astype(np.float64)


def frontend(t):
    t[A + "audio_feats_extractor.log_trans.melW"] = np.zeros((513, 64), np.float32)


def seven(t):  # a seventh block after the sixth: then audio_proj's input width no longer fits
    t[A + "conv_block7.conv1.weight"] = np.zeros((8, 24, 3, 3), np.float32)


cases = [
    ("renamed", renamed, None, "'" + A + "bn0.running_var' is missing"),
    ("no_block3", no_block3, None, "'" + A + "conv_block3.conv1.weight' is missing"),
    ("transposed", transposed, None, "'" + A + "conv_block2.conv1.weight' has shape [4, 8, 3, 3], expected [*, 4, 3, 3]"),
    ("extra", extra, None, "unexpected tensor '" + A + "fc1.weight'"),
    ("f64", f64, None, "'audio_proj.2.bias' has dtype F64, expected F32"),
    ("frontend", frontend, None, "audio_feats_extractor.log_trans.melW"),
    ("seven", seven, None, "conv_block7.conv2.weight' is missing"),
    ("decoder", lambda t: None, lambda m: m.update({"wsac.model": "decoder"}), "wsac.model is 'decoder', expected 'clap'"),
    ("channels", lambda t: None, lambda m: m.update({"clap.audio.channels": "4,8,12,16,20,25"}),
     "clap.audio.channels = '4,8,12,16,20,25', but the tensors say '4,8,12,16,20,24'"),
]
small = stream("small.mp", [{"key": "a", "mel": mels["T64"]}])
for name, edit, medit, want in cases:
    path = variant(name, edit, medit)
    p, got, _, _ = run([small], model=path)
    err = p.stderr.decode()
    check("model: %s -> exit 2, nothing written, the message names it (%s)" % (name, want),
          p.returncode == 2 and not p.stdout and err.startswith("clap-audio: error: ") and want in err
          and path in err, err)
p, _, _, _ = run([small], model=os.path.join(tmp, "does-not-exist.safetensors"))
check("model: a missing file -> exit 2 with the reason", p.returncode == 2 and "No such file" in p.stderr.decode(),
      p.stderr.decode())
huge = variant("huge", lambda t: t.update({"audio_proj.0.weight": t["audio_proj.0.weight"] * np.float32(1e30),
                                          "audio_proj.2.weight": t["audio_proj.2.weight"] * np.float32(1e30)}))
p, got, tr, _ = run([small], model=huge)
check("model: weights that overflow: the record fails (not finite), exit 3, no NaN written",
      p.returncode == 3 and not got and "clap-audio: a: the embedding is not finite" in p.stderr.decode(),
      p.stderr.decode())
bert_only = variant("text_only", lambda t: [t.pop(k) for k in list(t) if k.startswith(("audio_", "audio_encoder"))])
p, _, _, _ = run([small], model=bert_only)
check("model: a file without the audio tower -> exit 2 naming bn0.weight",
      p.returncode == 2 and "'" + A + "bn0.weight' is missing" in p.stderr.decode(), p.stderr.decode())

# ---------------------------------------------------------------- usage errors
for args, why in [([], "no model"), (["--crop", "middle"], "first or center"), (["--threads", "0"], "out of range"),
                  (["--max-seconds", "x"], "--max-seconds"), (["a", "b"], "one input stream")]:
    p = subprocess.run([tool("clap-audio")] + (["-m", MODEL] if why != "no model" else []) + args,
                       capture_output=True, stdin=subprocess.DEVNULL)
    check("usage: %s -> exit 1, nothing on stdout, named on stderr" % (" ".join(args) or "(no -m)"),
          p.returncode == 1 and not p.stdout and p.stderr.decode().startswith("clap-audio: ") and why in
          p.stderr.decode(), p.stderr.decode())

# ---------------------------------------------------------------- valgrind
if VALGRIND:
    two = stream("two.mp", [{"key": "a", "mel": mels["T65"]}, {"key": "b", "mel": mel(63)},
                            {"key": "c", "mel": mels["T301"]}, {"key": "d", "mel": mels["T127"]}])
    for args in (["-j", "2"], ["-j", "3", "--conv", "winograd"], ["-j", "2", "--conv", "im2col"], ["--naive"]):
        p = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                            "--error-exitcode=99", tool("clap-audio"), "-q", "-m", MODEL] + args + [two],
                           capture_output=True)
        err = p.stderr.decode()
        check("valgrind --leak-check=full %s: no errors, no leaks (exit 3 for the short clip)" % " ".join(args),
              p.returncode == 3 and "ERROR SUMMARY: 0 errors" in err and
              ("definitely lost: 0" in err or "no leaks are possible" in err), err[-1500:])
else:
    note("valgrind not installed: leak check skipped")

tmpdir.cleanup()
done()
