"""SpecAugment in clap-train's CNN14 (lib/cnn14_train.c) against
scripts/claptrainref.py: WavCaps' Cnn14 applies torchlibrosa's
SpecAugmentation(time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
freq_stripes_num=2) after bn0 in training mode (retrieval/models/cnns.py,
Cnn14.forward; settings/train.yaml spec_augmentation: True). C draws the
stripes from each item's key; the reference applies the same stripes
(project_audio(spec=...)), in float64, on the bundled test CLAP, dropout
off: the loss, the embeddings and every parameter's gradient (the zeroed
values pass no gradient to bn0). The stripes' distribution is checked in
tests/c/test_kernels_train.c (test_specaug)."""
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
pn = [PA + "bn0.weight", PA + "bn0.bias"]
for k in range(1, len(chans) + 1):
    b = PA + "conv_block%d." % k
    pn += [b + "conv1.weight", b + "bn1.weight", b + "bn1.bias", b + "conv2.weight", b + "bn2.weight", b + "bn2.bias"]
pn += ["audio_proj.0.weight", "audio_proj.0.bias", "audio_proj.2.weight", "audio_proj.2.bias"]

g = torch.Generator().manual_seed(11)
B, T, E = 4, 150, cfg.embed
aid = [0, 1, 1, 2]
keys = [0x9E3779B97F4A7C15 * (i + 3) % 2 ** 64 for i in range(B)]
mel = torch.randn(B, T, cfg.n_mels, generator=g) * 12 - 45
temb = torch.randn(B, E, generator=g)

inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
with open(inp, "wb") as f:
    ints = [B, T] + aid + [w for k in keys for w in (k & 0xFFFFFFFF, k >> 32)]
    f.write(struct.pack("<i%dI" % len(ints), len(ints), *ints))
    f.write(mel.numpy().astype(np.float32).tobytes() + temb.numpy().astype(np.float32).tobytes())
r = subprocess.run([DRIVER, "dump", "cnn14aug", inp, out, MODEL], capture_output=True, text=True)
if not check("the driver runs a CNN14 step with SpecAugment", r.returncode == 0, r.stderr.strip()):
    done()
raw = open(out, "rb").read()


def reference(dt, spec):
    m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).to(dt)
    m.load_published({k: v.to(dt) if v.is_floating_point() else v for k, v in sd.items()})
    m.train()
    a = m.project_audio(mel.to(dt), spec=spec)
    _, _, loss = R.salsa_loss(a, temb.to(dt), torch.tensor(aid))
    loss.backward()
    return a.detach().double().numpy(), loss.item(), {n: p.grad.double().numpy() for n, p in m.named_parameters()
                                                     if n in pn}


shapes = dict((n, v.shape) for n, v in reference(torch.float64, None)[2].items())
ng = sum(int(np.prod(shapes[n])) for n in pn)
v = np.frombuffer(raw[:4 * (B * E + ng)], dtype=np.float32)
ce, k, gc = v[:B * E], B * E, {}
for n in pn:
    sz = int(np.prod(shapes[n]))
    gc[n] = v[k:k + sz].astype(np.float64).reshape(shapes[n])
    k += sz
closs = struct.unpack("<d", raw[4 * (B * E + ng):4 * (B * E + ng) + 8])[0]
stripes = np.frombuffer(raw[4 * (B * E + ng) + 8:], dtype=np.int32).reshape(B, 4, 2)
check("SpecAugment's stripes: per clip 2 time stripes of width < 64 and 2 mel stripes of width < 8, inside the clip",
      all(0 <= s[1] < (64 if i < 2 else 8) and 0 <= s[0] and s[0] + s[1] <= (T if i < 2 else cfg.n_mels)
          for c in stripes for i, s in enumerate(c)), str(stripes.tolist()))
zeroed = 1 - R.spec_mask(torch.from_numpy(stripes.astype(np.int64)), T, cfg.n_mels).mean().item()
note("stripes of the 4 clips (start, width; time, time, mel, mel): %s; %.0f%% of the values zeroed"
     % (stripes.tolist(), 100 * zeroed))


def rl2(x, y):
    return float(np.linalg.norm(np.asarray(x, np.float64) - y) / max(np.linalg.norm(y), 1e-300))


spec = torch.from_numpy(stripes.astype(np.int64))
a64, l64, g64 = reference(torch.float64, spec)
a32, l32, g32 = reference(torch.float32, spec)
el, ee = abs(closs - l64) / abs(l64), rl2(ce, a64.ravel())
eg = {n: rl2(gc[n], g64[n]) for n in pn}
w = max(eg, key=eg.get)
e32 = max(rl2(g32[n], g64[n]) for n in pn)
check("with SpecAugment: loss within 1e-6, embeddings within 1e-5, every gradient within 1e-4 (relative L2 norm "
      "of the tensor) of float64 applying the same stripes", el < 1e-6 and ee < 1e-5 and eg[w] < 1e-4,
      "loss %.2e emb %.2e grad %.2e (%s)" % (el, ee, eg[w], w))
note("with SpecAugment vs float64: loss %.1e, embeddings %.1e, gradients worst %.1e (%s); PyTorch float32 %.1e"
     % (el, ee, eg[w], w.replace(PA, ""), e32))
_, l0, g0 = reference(torch.float64, None)
far = max(rl2(gc[n], g0[n]) for n in pn)
check("the stripes matter: without them float64's gradient is far from C's (> 1e-2)", far > 1e-2, "%.2e" % far)
done()
