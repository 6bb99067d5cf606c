"""One full-size clap-train step on SALSA's PaSST-RoBERTa (fullsalsa.py's
random PaSST-S + RoBERTa-large file) against PyTorch (salsatiny.SalsaRef:
passttrainref + robertatrainref, SALSA's forward_audio / forward_sentence,
claptrainref's L_sup and AdamW groups), patchout and dropout off
(--no-augment): two 30-s-cut clips (3 and 2 kept 10-s segments, 1000 frames,
the full 8 x 62 grid: 498 tokens a segment), one caption each (RoBERTa's BPE,
SALSA's preprocessing): the loss (1e-6 relative to float32 PyTorch); every
parameter's gradient (--save-grads) within 1e-4 relative L2 of float32
PyTorch, or, where float32 PyTorch is itself over 1e-4 from float64 (random
full-size RoBERTa's deep query/key gradients, ~1e-8: saturated attention),
at least as close to float64 as float32 PyTorch is (float64 one tower at a
time); the keys' biases apart (0 up to rounding); the weights after one
AdamW step at lr 1e-3 within 1e-6 of the step on the float64 gradients, or
no further than twice float32 PyTorch's own step is from it (measured: C
1.7e-5, PyTorch float32 1.6e-5; 16% of the elements are at float32 noise
level, held to 2 lr).
Needs about 14 GB of memory; minutes."""
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "py"))
from tap import check, done, note, tool  # noqa: E402
import bperef  # noqa: E402
import claptrainref as CT  # noqa: E402
import fullsalsa  # noqa: E402
import passttrainref as PT  # noqa: E402
import robertatrainref as RT  # noqa: E402
import salsatiny as ST  # noqa: E402
import sttools  # noqa: E402
import wsacstream as ws  # noqa: E402

THREADS = int(os.environ.get("WSAC_THREADS", "2"))
torch.set_num_threads(THREADS)
_, MODEL = fullsalsa.ensure()
tmpd = tempfile.TemporaryDirectory(prefix="wsac-train-salsa-full-")  # noqa
tmp = tmpd.name


def path(n):
    return os.path.join(tmp, n)


S, M = 1000, 128
g = torch.Generator().manual_seed(3)
clips = {"a.wav": (960000, 3), "b.wav": (500000, 2)}  # kept: ceil(3 * min(n, 960000) / 960000)
mels = {k: torch.randn(c * S, M, generator=g) * 0.5 for k, (n, c) in clips.items()}
hdr = {"frontend": "passt", "cut": "segments", "segment_samples": 320000, "segments": 3, "hop": 320, "sr": 32000,
       "n_mels": M, "segment_frames": S}
with open(path("mel.mp"), "wb") as f:
    ws.write_stream(f, "wav2mel", ({"key": k, "mel": mels[k].numpy(), "samples": n} for k, (n, _) in clips.items()),
                    params=hdr)
items = [("a.wav", "A dog barks twice, then a door slams!"),
         ("b.wav", "Birds chirp while a CAR passes by on a wet road; people talk in the distance (faintly).")]
with open(path("caps.tsv"), "w") as f:
    f.writelines("%s\t%s\n" % it for it in items)
bpe = bperef.BPE(ST.VOCAB, ST.MERGES)
ids = [bpe.encode(bperef.salsa_preprocess(c), 32) for _, c in items]

t0 = time.time()
r = subprocess.run([tool("clap-train"), "--init", MODEL, "--mel", path("mel.mp"), "--captions", path("caps.tsv"),
                    "--bs", "2", "--no-shuffle", "--no-augment", "--epochs", "1", "--max-steps", "1", "--lr", "1e-3",
                    "--warmup", "0", "-j", str(THREADS), "-q", "--log", path("log.tsv"), "--save-grads",
                    path("grads.st"), "-o", path("one.st")], capture_output=True, text=True)
csec = time.time() - t0
if not check("clap-train: one full-size step (exit 0)", r.returncode == 0, r.stderr[-500:]):
    done()
closs = float(open(path("log.tsv")).read().splitlines()[1].split("\t")[3])
cg = sttools.load(path("grads.st"))[0]
cw = sttools.load(path("one.st"))[0]

tensors, meta = sttools.load(MODEL)
sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if v.dtype == np.float32}
del tensors
acfg = PT.Config()
tcfg = RT.Config(eps=float(meta["clap.text.ln_eps"]))
PAD = int(meta["clap.text.pad_id"])
LR, EPS = 1e-3, 1e-8
aid = torch.tensor([0, 1])
clip_mels = [mels[k] for k, _ in items]

def rel(x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return float(np.linalg.norm(x - y) / max(np.linalg.norm(y), 1e-300))


def key_part(n, size):
    """the keys' biases (0 up to rounding): RoBERTa's key.bias, the middle third of PaSST's qkv.bias"""
    k = np.zeros(size, bool)
    if n.endswith("attention.self.key.bias"):
        k[:] = True
    elif n.endswith("attn.qkv.bias"):
        k[size // 3:2 * size // 3] = True
    return k


# PyTorch float32: the whole step as published
m = ST.SalsaRef(sd, acfg, tcfg, PAD)
opt = m.optimizer(LR)
t0 = time.time()
opt.zero_grad(set_to_none=False)
a, t = m(clip_mels, ids, S)
loss = CT.salsa_loss(a, t, aid)[2]
loss.backward()
opt.step()
tsec = time.time() - t0
g32 = {n: p.grad.numpy().ravel().copy() for n, p, _ in m.named()}
names = [n for n, _, _ in m.named()]
w32 = {n: p.detach().numpy().ravel().copy() for n, p, _ in m.named()}
del m, opt


# PyTorch float64, one tower at a time (a tower's gradient needs only the other tower's embeddings): the deep
# layers' query and key gradients of a random full-size RoBERTa are ~1e-8 (saturated attention), where float32
# PyTorch itself is off by up to 100%; float64 says which of C and PyTorch float32 is right
with torch.no_grad():
    a64 = ST.SalsaRef(sd, acfg, tcfg, PAD, torch.float64, ("audio",)).forward_audio(clip_mels, S)
m = ST.SalsaRef(sd, acfg, tcfg, PAD, torch.float64, ("text",))
t64 = m.forward_text(ids)
l_ = CT.salsa_loss(a64, t64, aid)[2]
l_.backward()
l64 = l_.item()
g64 = {n: p.grad.numpy().ravel().copy() for n, p, _ in m.named()}
t64 = t64.detach()
del m, l_
m = ST.SalsaRef(sd, acfg, tcfg, PAD, torch.float64, ("audio",))
CT.salsa_loss(m.forward_audio(clip_mels, S), t64, aid)[2].backward()
g64.update({n: p.grad.numpy().ravel().copy() for n, p, _ in m.named()})
del m

dl = abs(closs - loss.item()) / abs(loss.item())
check("full size: the loss = PyTorch float32 within 1e-6 relative (%.7f vs %.7f)" % (closs, loss.item()), dl < 1e-6, dl)


bad, w32r, w64r, ill, kb = [], (0.0, ""), (0.0, ""), 0, 0.0
gmax = max(float(np.abs(g64[n]).max()) for n in names)
for n in names:
    kp = key_part(n, g64[n].size)
    c = cg[n].astype(np.float64).ravel()
    kb = max(kb, float(np.abs(c[kp]).max(initial=0)) / gmax)
    c, x32, x64 = c[~kp], g32[n][~kp], g64[n][~kp]
    if not c.size:
        continue
    r32, r64, f3264 = rel(c, x32), rel(c, x64), rel(x32, x64)
    w32r, w64r = max(w32r, (r32, n)), max(w64r, (r64, n))
    if r32 > 1e-4:
        ill += 1
        if r64 > max(1e-4, f3264):
            bad.append("%s: C-f32 %.1e, C-f64 %.1e, f32-f64 %.1e" % (n, r32, r64, f3264))
check("full size: every one of %d gradients = PyTorch float32 within 1e-4 relative L2, or (%d ill-conditioned: "
      "float32 PyTorch itself far from float64) C at least as close to float64 as PyTorch float32 is; the keys' "
      "biases within 1e-6 of the largest element" % (len(names), ill), not bad and kb < 1e-6, "%s %.1e" % (bad[:4], kb))

# the weights after AdamW's first step from the float64 gradients: p - lr g / (|g| + eps). Adam's first step is
# lr g / (|g| + eps): an element whose gradient is within the float32 rounding error of zero (below 10x the largest
# |float32 - float64| PyTorch itself makes in that tensor) moves by anything up to lr either way, in PyTorch as in
# C; those are held to 2 lr, every other element to 1e-6
ww, wwn, wt, noisy, total = 0.0, "", 0.0, 0, 0
for n in names:
    p0 = sd[n].numpy().astype(np.float64).ravel()
    g = g64[n]
    want = p0 - LR * g / (np.abs(g) + EPS)
    small = key_part(n, g.size)
    small |= np.abs(g) < 10 * float(np.abs(g32[n] - g)[~small].max(initial=0))
    noisy += int(small.sum())
    total += g.size
    d = np.abs(cw[n].astype(np.float64).ravel() - want)
    dt = np.abs(w32[n].astype(np.float64) - want)
    if (d[small] > 2 * LR).any():
        ww, wwn = 1.0, n + " (a noise-level element moved by more than 2 lr)"
    dd = float(d[~small].max(initial=0))
    if dd > ww:
        ww, wwn = dd, n
    wt = max(wt, float(dt[~small].max(initial=0)))
# on random full-size weights float32 PyTorch's own step is 1.6e-5 from the float64 one (measured): C is held to
# 1e-6 or, failing that, to twice float32 PyTorch's distance
check("full size: every weight within 1e-6 (or 2x float32 PyTorch's own distance) of AdamW's step on the float64 "
      "gradients (lr 1e-3; %d of %d elements at float32 noise level held to 2 lr)" % (noisy, total),
      ww < max(1e-6, 2 * wt), "%.2e at %s (PyTorch float32: %.2e)" % (ww, wwn, wt))
note("full size (%d + %d segments of 498 tokens, captions of %d and %d tokens): loss C %.8f, PyTorch float32 %.8f "
     "(%.1e), float64 %.8f; gradients worst C-f32 %.1e (%s), worst C-f64 %.1e (%s), %d tensors where float32 "
     "PyTorch is over 1e-4 from float64; weights after AdamW vs the float64-gradient step (%d noise-level elements apart): C %.1e, "
     "PyTorch float32 %.1e; C (load, step, write) %.0f s, PyTorch float32 step %.0f s, %d threads"
     % (clips["a.wav"][1], clips["b.wav"][1], len(ids[0]), len(ids[1]), closs, loss.item(), dl, l64, w32r[0], w32r[1],
        w64r[0], w64r[1], ill, noisy, ww, wt, csec, tsec, THREADS))
done()
