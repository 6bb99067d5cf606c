"""clap-train's models in training mode against scripts/claptrainref.py
(PyTorch, the published modules), on the bundled test CLAP
(data/models/clap-test.safetensors: CNN14 channels 4-8-8-16-16-32, 64 mels,
embedding 32) with odd sizes (101 frames: every pooling drops a row), dropout
off for the comparison:

  audio tower: one training-mode forward (batch statistics) + L_sup against
  fixed caption embeddings + backward: the embeddings, the loss, every
  parameter's gradient, BatchNorm's running statistics after the step;
  text tower: the same with captions of different lengths (C packs them, the
  reference pads and masks as HF does) against fixed audio embeddings."""
import os
import struct
import subprocess
import tempfile

import numpy as np
import torch

from tap import ROOT, check, done, note
import clapref
import claptrainref as R
import sttools

torch.set_num_threads(1)
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "test_kernels_train")
MODEL = os.path.join(ROOT, "data", "models", "clap-test.safetensors")
tmp = tempfile.mkdtemp()
if not check("the test driver is built (%s)" % DRIVER, os.access(DRIVER, os.X_OK)):
    done()

tensors, meta = sttools.load(MODEL)
sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
chans = [int(c) for c in meta["clap.audio.channels"].split(",")]
cfg = clapref.Config(n_mels=int(meta["clap.audio.n_mels"]), channels=chans, embed=int(meta["clap.embed_dim"]),
                     hidden=int(meta["clap.text.hidden"]), layers=int(meta["clap.text.layers"]),
                     heads=int(meta["clap.text.heads"]), intermediate=int(meta["clap.text.intermediate"]),
                     vocab=int(meta["clap.text.vocab_size"]))
PA = "audio_encoder.audio_enc."


def audio_order(nblocks):
    """cnn14_train.c's tensor table: parameters, then running statistics"""
    p = [PA + "bn0.weight", PA + "bn0.bias"]
    for k in range(1, nblocks + 1):
        b = PA + "conv_block%d." % k
        p += [b + "conv1.weight", b + "bn1.weight", b + "bn1.bias", b + "conv2.weight", b + "bn2.weight", b + "bn2.bias"]
    p += ["audio_proj.0.weight", "audio_proj.0.bias", "audio_proj.2.weight", "audio_proj.2.bias"]
    r = [PA + "bn0.running_mean", PA + "bn0.running_var"]
    for k in range(1, nblocks + 1):
        for j in (1, 2):
            r += [PA + "conv_block%d.bn%d.running_mean" % (k, j), PA + "conv_block%d.bn%d.running_var" % (k, j)]
    return p, r


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ------------------------------------------------------------------ audio tower, one step
g = torch.Generator().manual_seed(7)
B, T = 6, 101
aid = [0, 1, 1, 2, 3, 3]
mel = torch.randn(B, T, cfg.n_mels, generator=g) * 12 - 45
temb = torch.randn(B, cfg.embed, generator=g)



def reference(dt):
    """the step in PyTorch at dtype dt: (embeddings, loss, gradients, buffers after)"""
    m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).to(dt)
    m.load_published({k: v.to(dt) if v.is_floating_point() else v for k, v in sd.items()})
    m.train()
    a = m.project_audio(mel.to(dt))
    ls, _, loss = R.salsa_loss(a, temb.to(dt), torch.tensor(aid))
    loss.backward()
    return (a.detach().double().numpy(), loss.item(),
            {n: p.grad.double().numpy() for n, p in m.named_parameters() if p.grad is not None},
            {n: b.double().numpy() for n, b in m.named_buffers()})


ref32, ref64 = reference(torch.float32), reference(torch.float64)
a, loss32, grads, bufs = ref32
pn, rn = audio_order(len(chans))

inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
with open(inp, "wb") as f:
    ints = [B, T] + aid
    f.write(struct.pack("<i%di" % len(ints), len(ints), *ints))
    f.write(mel.numpy().astype(np.float32).tobytes() + temb.numpy().astype(np.float32).tobytes())
r = subprocess.run([DRIVER, "dump", "cnn14", inp, out, MODEL], capture_output=True, text=True)
if not check("the driver runs the CNN14 training step", r.returncode == 0, r.stderr.strip()):
    done()
raw = open(out, "rb").read()
nE = B * cfg.embed
np_ = sum(grads[k].size for k in pn)
nb = sum(bufs[k].size for k in rn)
v = np.frombuffer(raw[:4 * (nE + np_ + nb)], dtype=np.float32)
closs = struct.unpack("<d", raw[4 * (nE + np_ + nb):])[0]
ce = v[:nE]
# float32 rounding is amplified by train-mode BatchNorm over few values (the
# last block normalises 6 values per channel): C and PyTorch float32 are both
# compared with PyTorch float64, and C must be as close as float32 PyTorch is
# (within 5x), and close to it in absolute terms
e64 = {"emb": (rel(ce, ref64[0]), rel(ref32[0], ref64[0])), "loss": None}
el = abs(closs - loss32) / abs(loss32)
el64 = abs(closs - ref64[1]) / abs(ref64[1])
tl64 = abs(loss32 - ref64[1]) / abs(ref64[1])
k, cw, tw, cw32, wname = nE, 0.0, 0.0, 0.0, ""
by_kind = {"conv": 0.0, "bn": 0.0, "proj": 0.0}
for name in pn:
    n = grads[name].size
    c64, t64, c32 = rel(v[k:k + n], ref64[2][name]), rel(ref32[2][name], ref64[2][name]), rel(v[k:k + n], grads[name])
    kind = "proj" if "proj" in name else "bn" if ".bn" in name else "conv"
    by_kind[kind] = max(by_kind[kind], c64)
    if c64 > cw:
        cw, wname = c64, name
    tw, cw32 = max(tw, t64), max(cw32, c32)
    k += n
rworst, rname = 0.0, ""
for name in rn:
    n = bufs[name].size
    e = rel(v[k:k + n], ref64[3][name])
    if e > rworst:
        rworst, rname = e, name
    k += n
ce64, te64 = e64["emb"]
check("CNN14 train-mode embeddings: as close to PyTorch float64 as PyTorch float32 is (5x), within 1e-4 of float32",
      ce64 <= 5 * te64 + 1e-7 and rel(ce, a) < 1e-4, "C %.2e, torch32 %.2e" % (ce64, te64))
check("L_sup on them = PyTorch float32 within 1e-6 relative, as close to float64 as float32 PyTorch (5x)",
      el < 1e-6 and el64 <= 5 * tl64 + 1e-7, "%.2e; vs float64 %.2e / %.2e" % (el, el64, tl64))
check("every audio parameter's gradient (%d tensors): as close to float64 as PyTorch float32 (5x), within 1e-4 of it"
      % len(pn), cw <= 5 * tw + 1e-7 and cw32 < 1e-4, "C %.2e (%s), torch32 %.2e, C vs torch32 %.2e" % (cw, wname, tw, cw32))
check("BatchNorm running statistics after the step = PyTorch within 1e-6", rworst < 1e-6, "%s %.2e" % (rname, rworst))
note("audio tower step vs float64 (C / PyTorch float32): embeddings %.1e / %.1e, loss %.1e / %.1e, gradients %.1e / %.1e, "
     "running stats %.1e; C vs PyTorch float32: loss %.1e, gradients %.1e" % (ce64, te64, el64, tl64, cw, tw, rworst, el,
                                                                           cw32))
note("gradients vs float64 by kind: conv %.1e, bn %.1e, proj %.1e" % (by_kind["conv"], by_kind["bn"], by_kind["proj"]))
# ------------------------------------------------------------------ text tower, one step
TPRE = "text_encoder.text_encoder."


def text_order(layers):
    """bert_train.c's tensor table"""
    p = [TPRE + "embeddings." + n for n in ("word_embeddings.weight", "position_embeddings.weight",
                                            "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")]
    for l in range(layers):
        b = TPRE + "encoder.layer.%d." % l
        p += [b + n for n in (
            "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
            "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
            "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
            "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias")]
    return p + ["text_proj.0.weight", "text_proj.0.bias", "text_proj.2.weight", "text_proj.2.bias"]


lens = [7, 3, 11, 5, 9, 11]
Bt, Lm = len(lens), max(lens)
ids = torch.zeros(Bt, Lm, dtype=torch.long)
mask = torch.zeros(Bt, Lm)
for i, n in enumerate(lens):
    ids[i, :n] = torch.randint(1000, cfg.vocab, (n,), generator=g)
    ids[i, 0], ids[i, n - 1] = 101, 102
    mask[i, :n] = 1
aemb = torch.randn(Bt, cfg.embed, generator=g)


def text_reference(dt):
    m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).to(dt)
    m.load_published({k: v.to(dt) if v.is_floating_point() else v for k, v in sd.items()})
    m.train()
    t = m.project_text(ids, mask)
    ls, _, loss = R.salsa_loss(aemb.to(dt), t, torch.tensor(aid))
    loss.backward()
    return (t.detach().double().numpy(), loss.item(),
            {n: p.grad.double().numpy() for n, p in m.named_parameters() if p.grad is not None})


tr32, tr64 = text_reference(torch.float32), text_reference(torch.float64)
tn = text_order(cfg.layers)
with open(inp, "wb") as f:
    flat = [i for r in range(Bt) for i in ids[r, :lens[r]].tolist()]
    ints = [Bt] + lens + aid + flat
    f.write(struct.pack("<i%di" % len(ints), len(ints), *ints))
    f.write(aemb.numpy().astype(np.float32).tobytes())
r = subprocess.run([DRIVER, "dump", "bert", inp, out, MODEL], capture_output=True, text=True)
if not check("the driver runs the BERT training step", r.returncode == 0, r.stderr.strip()):
    done()
raw = open(out, "rb").read()
nE = Bt * cfg.embed
ntp = sum(tr32[2][k].size for k in tn)
v = np.frombuffer(raw[:4 * (nE + ntp)], dtype=np.float32)
closs = struct.unpack("<d", raw[4 * (nE + ntp):])[0]
ce64, te64 = rel(v[:nE], tr64[0]), rel(tr32[0], tr64[0])
el, el64, tl64 = (abs(closs - tr32[1]) / abs(tr32[1]), abs(closs - tr64[1]) / abs(tr64[1]),
                  abs(tr32[1] - tr64[1]) / abs(tr64[1]))
k, cw, tw, cw32, wname = nE, 0.0, 0.0, 0.0, ""
kinds = {}
# the keys' bias has a zero gradient (it adds a constant to every score of a
# query): what both compute is rounding noise, checked against the largest
# gradient of the tower instead
gmax = max(np.abs(x).max() for x in tr64[2].values())
floor = 1e-30
kb_c, kb_t = 0.0, 0.0


def relf(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), floor))


for name in tn:
    n = tr32[2][name].size
    c64, t64, c32 = relf(v[k:k + n], tr64[2][name]), relf(tr32[2][name], tr64[2][name]), relf(v[k:k + n], tr32[2][name])
    if name.endswith("key.bias"):
        kb_c = max(kb_c, float(np.abs(v[k:k + n]).max()) / gmax)
        kb_t = max(kb_t, float(np.abs(tr32[2][name]).max()) / gmax)
        k += n
        continue
    kind = name.split(".")[-2] if "proj" not in name else "text_proj"
    kinds[kind] = max(kinds.get(kind, 0.0), c64)
    if c64 > cw:
        cw, wname = c64, name
    tw, cw32 = max(tw, t64), max(cw32, c32)
    k += n
check("BERT train-mode text embeddings (packed vs padded+masked): as close to float64 as PyTorch float32 (5x), "
      "within 1e-5 of it", ce64 <= 5 * te64 + 1e-7 and rel(v[:nE], tr32[0]) < 1e-5, "C %.2e, torch32 %.2e" % (ce64, te64))
check("L_sup through the text tower = PyTorch float32 within 1e-6", el < 1e-6 and el64 <= 5 * tl64 + 1e-7,
      "%.2e; vs float64 %.2e / %.2e" % (el, el64, tl64))
check("every other text parameter's gradient (%d tensors): as close to float64 as PyTorch float32 (5x), within 1e-4 of it"
      % (len(tn) - cfg.layers), cw <= 5 * tw + 1e-7 and cw32 < 1e-4, "C %.2e (%s), torch32 %.2e, C vs torch32 %.2e" % (cw, wname, tw, cw32))
check("the keys' bias gradient is zero up to rounding (within 1e-6 of the largest gradient)", kb_c < 1e-6,
      "C %.2e, torch32 %.2e" % (kb_c, kb_t))
note("text tower step vs float64 (C / PyTorch float32): embeddings %.1e / %.1e, loss %.1e / %.1e, gradients %.1e / %.1e;"
     " C vs PyTorch float32: loss %.1e, gradients %.1e" % (ce64, te64, el64, tl64, cw, tw, el, cw32))
note("text gradients vs float64 by kind: " + ", ".join("%s %.1e" % kv for kv in sorted(kinds.items())))
done()
