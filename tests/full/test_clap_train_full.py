"""clap-train's towers on the full-size CNN14-BERT (random weights of the
real architecture, tests/full/fullmodel.py), one training step each against
scripts/claptrainref.py in float32, dropout off: a CNN14 step on 4 clips of
2 s (201 frames) against fixed caption embeddings, a BERT step on 4 captions
of different lengths against fixed audio embeddings; the loss, every
parameter's gradient (the keys' biases, whose gradient is zero, apart),
BatchNorm's running statistics. Minutes and a few GB.

BERT's gradients, tensor by tensor in relative L2 norm
(||g_C - g_ref|| / ||g_ref||), against float64 computed from the same float32
weights (docs/bert-train-numerics.md): every tensor within 1e-4 (measured
2.1e-5, layer 11's query/key), and as close to float64 as PyTorch float32
(no tensor 2x farther, the whole gradient not 1.25x). PyTorch float32 is
1.3e-4 away in layer 11's query/key: the random network's tokens collapse
to within 3% of each other in the upper layers, and the query/key
gradients live in those differences.

CNN14's gradients, in the same metric, against float64 (docs/cnn14-train-numerics.md).
At this size no float32 gradient can match the float64 one to 1e-4: among
the ~10^7 ReLU decisions of a step a few pre-activations lie within
float32 rounding (1e-7..1e-6 of the channel's spread) of 0, C, PyTorch
float32 and float64 each decide them their own way, and one flipped
decision in block 5 moves ~1e-3 of every gradient below it (measured: C
3.1e-3, PyTorch float32 1.1e-3 from float64, 4 and 3 flips, all within
4e-6 of the spread). So the test replays: the C driver returns its
decisions (every ReLU mask, the head's argmax), float64 recomputes the
gradient along them (claptrainref: project_audio(dec=...)), and that is
the exact value of what C computed; C must be within 1e-4 of it in every
tensor (measured 9e-6), no farther from it overall than PyTorch float32 is
from float64 along PyTorch's own decisions, and every decision C took
otherwise than float64 must be a tie at rounding level (margin < 1e-4 of
the values' spread) and rare."""
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
rec32 = {}
a = m.project_audio(mel, rec=rec32)
_, _, loss = R.salsa_loss(a, temb, torch.tensor(aid))
loss.backward()
grads = {n: p.grad.numpy() for n, p in m.named_parameters() if p.grad is not None}
bufs = dict((n, b.numpy()) for n, b in m.named_buffers())
r, raw = driver("cnn14dec", [B, T] + aid, [mel, temb])
if check("the driver runs a full-size CNN14 step", r.returncode == 0, r.stderr[-300:]):
    # the C run: e, gradients, running statistics, loss, then its decisions
    ng, nr = sum(grads[n].size for n in pn), sum(bufs[n].size for n in rn)
    v = np.frombuffer(raw[:4 * (B * E + ng + nr)], dtype=np.float32)
    ce, k, gc = v[:B * E], B * E, {}
    for n in pn:
        gc[n] = v[k:k + grads[n].size].astype(np.float64).reshape(grads[n].shape)
        k += grads[n].size
    cbuf = v[k:]
    off = 4 * (B * E + ng + nr)
    closs = struct.unpack("<d", raw[off:off + 8])[0]
    off += 8
    dc, t_, f_ = {"relu": []}, T, cfg.n_mels
    for c in cfg.channels:
        for _ in range(2):
            n_ = B * c * t_ * f_
            dc["relu"].append(torch.from_numpy(np.frombuffer(raw, np.uint8, n_, off).reshape(B, c, t_, f_) > 0))
            off += n_
        t_, f_ = t_ // 2, f_ // 2
    dc["relu"].append(torch.from_numpy(np.frombuffer(raw, np.uint8, B * E, off).reshape(B, E) > 0))
    off += B * E
    dc["argmax"] = torch.from_numpy(np.frombuffer(raw, np.int32, B * cfg.channels[-1], off).reshape(B, -1).astype(np.int64))
    check("the decisions of the C run are read to the end", off + 4 * B * cfg.channels[-1] == len(raw))

    # float64: deciding itself (the exact gradient), and replaying C's and PyTorch float32's decisions
    m64 = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).double()
    m64.load_published({k_: v_.double() for k_, v_ in sd.items()})
    m64.train()

    def grad64(dec=None, rec=None):
        m64.zero_grad()
        _, _, l_ = R.salsa_loss(m64.project_audio(mel.double(), dec, rec), temb.double(), torch.tensor(aid))
        l_.backward()
        return {n: p.grad.numpy().copy() for n, p in m64.named_parameters() if n in grads}

    rec64 = {"pre": []}
    g64, gC, gP = grad64(rec=rec64), grad64(dc), grad64(rec32)
    del m64

    def rl2(x, y, names):  # ||x - y|| / ||y|| over the tensors named
        return float(np.sqrt(sum(np.sum((np.asarray(x[n], np.float64) - y[n]) ** 2) for n in names) /
                             max(sum(np.sum(y[n] ** 2) for n in names), 1e-300)))

    el, ee = abs(closs - loss.item()) / abs(loss.item()), rel(ce, a.detach().numpy())
    xw = max(rel(cbuf[o_:o_ + bufs[n].size], bufs[n]) for o_, n in
             zip(np.cumsum([0] + [bufs[n].size for n in rn[:-1]]), rn))
    check("full CNN14, 4 clips x 201 frames: loss within 1e-6, embeddings within 1e-5, running statistics "
          "within 1e-6 of PyTorch float32", el < 1e-6 and ee < 1e-5 and xw < 1e-6,
          "loss %.2e emb %.2e stats %.2e" % (el, ee, xw))
    # the arithmetic: every tensor against float64 along C's own branches
    eC = {n: rl2(gc, gC, [n]) for n in pn}
    eP = {n: rl2(grads, gP, [n]) for n in pn}
    wC, wP = max(eC, key=eC.get), max(eP, key=eP.get)
    check("full CNN14: every parameter's gradient within 1e-4 (relative L2 norm of the tensor) of float64 "
          "replaying C's decisions", eC[wC] < 1e-4, "worst %.2e (%s)" % (eC[wC], wC))
    tC, tP = rl2(gc, gC, pn), rl2(grads, gP, pn)
    ratio = max(eC[n] / max(eP[n], 1e-12) for n in pn)
    check("full CNN14: C's gradient as close to float64 as PyTorch float32's (each along its own decisions): "
          "whole gradient no farther, no tensor 2x farther", tC <= tP and ratio < 2,
          "whole %.2e vs %.2e, worst tensor ratio %.2f" % (tC, tP, ratio))
    note("full CNN14 gradients vs float64 along their own decisions, relative L2 per tensor: C worst %.1e (%s), "
         "whole %.1e; PyTorch float32 worst %.1e (%s), whole %.1e; largest ratio C / PyTorch of a tensor %.2f"
         % (eC[wC], wC.replace(PA, ""), tC, eP[wP], wP.replace(PA, ""), tP, ratio))
    # the decisions: those where C and float64 differ are rounding-level ties
    flips, worst_m, ndec = [], 0.0, 0
    for i_, (x_, y_) in enumerate(zip(dc["relu"], rec64["relu"])):
        z = rec64["pre"][i_]
        ndec += x_.numel()
        for ix in (x_ != y_).nonzero().tolist():
            sdv = float(z[:, ix[1]].std())
            worst_m = max(worst_m, abs(float(z[tuple(ix)])) / sdv)
            flips.append(i_)
    tm = rec64["tmean"]  # [B, C, t] frame means of the head
    for b_, c_ in (dc["argmax"] != rec64["argmax"]).nonzero().tolist():
        row = tm[b_, c_]
        worst_m = max(worst_m, float(row.max() - row[dc["argmax"][b_, c_]]) / float(row.std()))
        flips.append(-1)
    ndec += dc["argmax"].numel()
    check("full CNN14: where C decides a ReLU or the head's max otherwise than float64, the float64 margin is "
          "within 1e-4 of the values' spread (rounding, not error), and such ties are rare (< 1e-5 of %d)" % ndec,
          worst_m < 1e-4 and len(flips) < 1e-5 * ndec, "%d flips, widest margin %.1e" % (len(flips), worst_m))
    note("full CNN14: %d of %d decisions flipped (ReLU sites %s; -1 the head's max), the widest within %.1e of "
         "its spread" % (len(flips), ndec, sorted(set(flips)), worst_m))
    note("full CNN14 gradients vs float64 deciding itself (the flips included), relative L2 per tensor: C worst %.1e, "
         "PyTorch float32 worst %.1e" % (max(rl2(gc, g64, [n]) for n in pn), max(rl2(grads, g64, [n]) for n in pn)))
    del gC, gP, g64, rec64

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
    # the C run: e, gradients, loss
    ng = sum(grads[n].size for n in tn)
    v = np.frombuffer(raw[:4 * (B * E + ng)], dtype=np.float32)
    closs = struct.unpack("<d", raw[4 * (B * E + ng):])[0]
    ce, k, gc = v[:B * E], B * E, {}
    for n in tn:
        gc[n] = v[k:k + grads[n].size].astype(np.float64).reshape(grads[n].shape)
        k += grads[n].size
    # float64 from the same float32 weights: BERT has no branch but text_proj's
    # ReLU (its smallest float64 margin is ~6e-4 of the spread here, no tie)
    m64 = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).double()
    m64.load_published({k_: v_.double() for k_, v_ in sd.items()})
    m64.train()
    _, _, l64 = R.salsa_loss(aemb.double(), m64.project_text(ids, mask), torch.tensor(aid))
    l64.backward()
    g64 = {n: p.grad.numpy().copy() for n, p in m64.named_parameters() if n in tn}
    del m64
    el, ee = abs(closs - loss.item()) / abs(loss.item()), rel(ce, t.detach().numpy())
    gmax = max(np.abs(g64[n]).max() for n in tn)
    kn = [n for n in tn if n.endswith("key.bias")]  # zero: softmax ignores a shift common to a row of scores
    kb = max(float(np.abs(gc[n]).max()) for n in kn) / gmax
    check("full BERT-base, 4 captions of 5-30 tokens: loss within 1e-6, embeddings within 1e-5 of PyTorch float32, "
          "the keys' bias gradients zero within 1e-6 of the largest gradient", el < 1e-6 and ee < 1e-5 and kb < 1e-6,
          "loss %.2e emb %.2e key.bias %.2e" % (el, ee, kb))
    tv = [n for n in tn if n not in kn]

    def rl2(x, y, names):  # ||x - y|| / ||y|| over the tensors named
        return float(np.sqrt(sum(np.sum((np.asarray(x[n], np.float64) - y[n]) ** 2) for n in names) /
                             max(sum(np.sum(y[n] ** 2) for n in names), 1e-300)))

    eC = {n: rl2(gc, g64, [n]) for n in tv}
    eP = {n: rl2(grads, g64, [n]) for n in tv}
    wC, wP = max(eC, key=eC.get), max(eP, key=eP.get)
    check("full BERT: every parameter's gradient within 1e-4 (relative L2 norm of the tensor) of float64",
          eC[wC] < 1e-4, "worst %.2e (%s)" % (eC[wC], wC))
    tC, tP = rl2(gc, g64, tv), rl2(grads, g64, tv)
    ratio = max(eC[n] / max(eP[n], 1e-12) for n in tv)
    # the whole gradient's distance is ~1.1e-6 for both, set by the uniform
    # rounding of every tensor; PyTorch's own varies ~10% with its thread count
    check("full BERT: C's gradient as close to float64 as PyTorch float32's: whole gradient not 1.25x farther, "
          "no tensor 2x farther", tC <= 1.25 * tP and ratio < 2,
          "whole %.2e vs %.2e, worst tensor ratio %.2f" % (tC, tP, ratio))
    note("full BERT gradients vs float64, relative L2 per tensor: C worst %.1e (%s), whole %.1e; PyTorch float32 "
         "worst %.1e (%s), whole %.1e; largest ratio C / PyTorch of a tensor %.2f; C vs PyTorch float32 worst %.1e"
         % (eC[wC], wC.replace(TP, ""), tC, eP[wP], wP.replace(TP, ""), tP, ratio,
            max(rl2(gc, grads, [n]) for n in tv)))
    note("full BERT: loss %.1e, embeddings %.1e from PyTorch float32" % (el, ee))
done()
