"""clap-train's towers on the full-size CNN14-BERT (random weights of the
real architecture, tests/full/fullmodel.py), one training step each against
scripts/claptrainref.py in float32, dropout off: a CNN14 step on 4 clips of
2 s (201 frames) against fixed caption embeddings, a BERT step on 4 captions
of different lengths against fixed audio embeddings; the loss, every
parameter's gradient (the keys' biases, whose gradient is zero, apart),
BatchNorm's running statistics. Minutes and a few GB.

At this size a float32 gradient cannot match another float32 gradient
element for element: among the ~10^5 activations of a late block a few lie
within rounding of ReLU's 0, and which side they fall on (C, PyTorch float32
and float64 each decide differently) moves a whole channel's share of the
gradient (seen: one channel of conv_block5.bn2.bias 9% off in C, where
PyTorch float32 agreed with float64; with other weights PyTorch float32 was
the one 2% off): a channel whose conv output is nearly constant over the
batch has a tiny variance, so BatchNorm's 1/sqrt(var + eps) amplifies
rounding and the rounding decides the ReLU mask of the whole channel.
Gradients are therefore compared tensor by tensor in relative L2 norm:
BERT's within 1e-3 of PyTorch float32; CNN14's against PyTorch float64,
where C must be within 10x of PyTorch float32's own distance (the worst
tensor of each), the largest element-wise deviation reported."""
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "py"))
from tap import ROOT, check, done, note  # noqa: E402
import claptrainref as R  # noqa: E402
import fullmodel  # noqa: E402
import sttools  # noqa: E402

torch.set_num_threads(os.cpu_count() or 1)
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "test_kernels_train")
tmp = tempfile.mkdtemp()
if not check("the test driver is built (%s)" % DRIVER, os.access(DRIVER, os.X_OK)):
    done()
_, MODEL = fullmodel.ensure()
cfg = fullmodel.config()
tensors, meta = sttools.load(MODEL)
sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if v.dtype == np.float32}
del tensors
m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0)
m.load_published(sd)
m.train()
g = torch.Generator().manual_seed(3)
aid = [0, 1, 1, 2]
B, E = 4, cfg.embed


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def driver(op, ints, floats):
    inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    with open(inp, "wb") as f:
        f.write(struct.pack("<i%di" % len(ints), len(ints), *ints))
        for x in floats:
            f.write(x.numpy().astype(np.float32).tobytes())
    r = subprocess.run([DRIVER, "dump", op, inp, out, MODEL], capture_output=True, text=True)
    return r, (open(out, "rb").read() if r.returncode == 0 else b"")


def compare(label, raw, names, grads, nE, ref_e, ref_loss, extra=(), g64=None):
    n_all = nE + sum(grads[k].size for k in names) + sum(x.size for _, x in extra)
    v = np.frombuffer(raw[:4 * n_all], dtype=np.float32)
    closs = struct.unpack("<d", raw[4 * n_all:])[0]
    el = abs(closs - ref_loss) / abs(ref_loss)
    ee = rel(v[:nE], ref_e)
    k, worst, wname, kb, emax, ename, tw = nE, 0.0, "", 0.0, 0.0, "", 0.0
    gmax = max(np.abs(grads[n]).max() for n in names)
    for n in names:
        sz = grads[n].size
        if n.endswith("key.bias"):
            kb = max(kb, float(np.abs(v[k:k + sz]).max() / gmax))
        else:
            c, r = v[k:k + sz].astype(np.float64), (grads if g64 is None else g64)[n].astype(np.float64).ravel()
            e = float(np.linalg.norm(c - r) / max(np.linalg.norm(r), 1e-30))
            if g64 is not None:
                t = grads[n].astype(np.float64).ravel()
                tw = max(tw, float(np.linalg.norm(t - r) / max(np.linalg.norm(r), 1e-30)))
            if e > worst:
                worst, wname = e, n
            e2 = rel(c, r)
            if e2 > emax:
                emax, ename = e2, n
        k += sz
    xw = 0.0
    for n, x in extra:
        xw = max(xw, rel(v[k:k + x.size], x))
        k += x.size
    gok = worst < 1e-3 if g64 is None else worst <= 10 * tw + 1e-4
    check("%s: loss within 1e-6, embeddings within 1e-5, every gradient %s%s" %
          (label, "within 1e-3 in relative L2 norm" if g64 is None else
           "as close to float64 in L2 norm as PyTorch float32 (10x)", ", running statistics within 1e-6" if extra else ""),
          el < 1e-6 and ee < 1e-5 and gok and kb < 1e-6 and xw < 1e-6,
          "loss %.2e emb %.2e grad %.2e (%s; PyTorch float32 %.2e) key.bias %.2e stats %.2e"
          % (el, ee, worst, wname, tw, kb, xw))
    if g64 is not None:
        note("%s: gradients vs float64 in L2 norm: C %.1e, PyTorch float32 %.1e" % (label, worst, tw))
    note("%s: loss %.1e, embeddings %.1e, gradients %.1e in L2 norm (%s), largest element-wise %.1e (%s), "
         "running stats %.1e" % (label, el, ee, worst, wname.split(".", 2)[-1], emax, ename.split(".", 2)[-1], xw))


# ------------------------------------------------------------------ CNN14
PA = "audio_encoder.audio_enc."
nb = len(cfg.channels)
pn = [PA + "bn0.weight", PA + "bn0.bias"]
for k in range(1, nb + 1):
    b = PA + "conv_block%d." % k
    pn += [b + "conv1.weight", b + "bn1.weight", b + "bn1.bias", b + "conv2.weight", b + "bn2.weight", b + "bn2.bias"]
pn += ["audio_proj.0.weight", "audio_proj.0.bias", "audio_proj.2.weight", "audio_proj.2.bias"]
rn = [PA + "bn0.running_mean", PA + "bn0.running_var"]
for k in range(1, nb + 1):
    for j in (1, 2):
        rn += [PA + "conv_block%d.bn%d.running_mean" % (k, j), PA + "conv_block%d.bn%d.running_var" % (k, j)]
T = 201
mel = torch.randn(B, T, cfg.n_mels, generator=g) * 15 - 40
temb = torch.randn(B, E, generator=g)
a = m.project_audio(mel)
_, _, loss = R.salsa_loss(a, temb, torch.tensor(aid))
loss.backward()
grads = {n: p.grad.numpy() for n, p in m.named_parameters() if p.grad is not None}
bufs = dict((n, b.numpy()) for n, b in m.named_buffers())
r, raw = driver("cnn14", [B, T] + aid, [mel, temb])
m64 = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).double()
m64.load_published({k: v.double() for k, v in sd.items()})
m64.train()
_, _, l64 = R.salsa_loss(m64.project_audio(mel.double()), temb.double(), torch.tensor(aid))
l64.backward()
g64 = {n: p.grad.numpy() for n, p in m64.named_parameters() if p.grad is not None}
del m64
if check("the driver runs a full-size CNN14 step", r.returncode == 0, r.stderr[-300:]):
    compare("full CNN14, 4 clips x 201 frames", raw, pn, grads, B * E, a.detach().numpy(), loss.item(),
            [(n, bufs[n]) for n in rn], g64=g64)

# ------------------------------------------------------------------ BERT
m.zero_grad()
lens = [12, 5, 30, 9]
ids = torch.zeros(B, max(lens), dtype=torch.long)
mask = torch.zeros(B, max(lens))
for i, n in enumerate(lens):
    ids[i, :n] = torch.randint(1000, cfg.vocab, (n,), generator=g)
    ids[i, 0], ids[i, n - 1] = 101, 102
    mask[i, :n] = 1
aemb = torch.randn(B, E, generator=g)
t = m.project_text(ids, mask)
_, _, loss = R.salsa_loss(aemb, t, torch.tensor(aid))
loss.backward()
grads = {n: p.grad.numpy() for n, p in m.named_parameters() if p.grad is not None}
TP = "text_encoder.text_encoder."
tn = [TP + "embeddings." + n for n in ("word_embeddings.weight", "position_embeddings.weight",
                                       "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")]
for l in range(cfg.layers):
    b = TP + "encoder.layer.%d." % l
    tn += [b + n for n in (
        "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
        "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
        "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
        "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
        "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias")]
tn += ["text_proj.0.weight", "text_proj.0.bias", "text_proj.2.weight", "text_proj.2.bias"]
flat = [i for r_ in range(B) for i in ids[r_, :lens[r_]].tolist()]
r, raw = driver("bert", [B] + lens + aid + flat, [aemb])
if check("the driver runs a full-size BERT step", r.returncode == 0, r.stderr[-300:]):
    compare("full BERT-base, 4 captions of 5-30 tokens", raw, tn, grads, B * E, t.detach().numpy(), loss.item())
done()
