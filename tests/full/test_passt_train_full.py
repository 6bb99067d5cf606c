"""PaSST-S in training mode at full size (lib/passt_train.c through
build/tests/test_passt_train run) against scripts/passttrainref.py (PyTorch,
passt.py's modules): 128 mel bins, 10-s segments of 1000 frames, 16x16
patches at stride 16 (8 x 62), 12 blocks of 768, 12 heads, MLP 3072,
Linear(768 -> 1024); random weights (passttrainref.random_params, fan_in
scaled). Two segments with SALSA's structured patchout (15 columns and 2 rows
dropped: 6 x 47 kept, 284 tokens; C's per-item draws given to the
reference), dropout off (SALSA's rates are 0), loss = sum_b e_b . v_b:
the embeddings (1e-5 relative to the largest), the loss (1e-6 of sum |e v|)
and every parameter gradient (relative L2 1e-4) against PyTorch float32,
the figures against float64 too; the step's time and the driver's peak RSS
beside PyTorch's float32 step on the same threads; with recomputation
(passtt.recompute) the same bits, its time and peak RSS."""
import os
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "py"))
from tap import ROOT, check, done, note  # noqa: E402
import passttrainref as R  # noqa: E402
import passtt_driver as D  # noqa: E402

THREADS = int(os.environ.get("WSAC_THREADS", "2"))
torch.set_num_threads(THREADS)
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "test_passt_train")
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-passt-train-full-")
tmp = tmpdir.name
if not check("the test driver is built (%s)" % DRIVER, os.access(DRIVER, os.X_OK)):
    done()

cfg = R.Config()
B, S = 2, 1000
params = R.random_params(cfg, seed=0, fan_in=True)
names = [n for n, _ in R.Tower(cfg).published()]
g = torch.Generator().manual_seed(1)
mel = torch.randn(B, S, cfg.n_mels, generator=g, dtype=torch.float64)
v = torch.randn(B, cfg.embed, generator=g, dtype=torch.float64)
p32 = {n: params[n].numpy().astype(np.float32) for n in names}

c = D.run(DRIVER, tmp, cfg, p32, names, mel.numpy(), v.numpy(), st=15, sf=2, keys=[2024, 2025], threads=THREADS)
check("C: 6 x 47 patches kept of 8 x 62, 284 tokens", (c.Fk, c.Tk, c.N) == (6, 47, 284), (c.Fk, c.Tk, c.N))
check("C's tensors: PaSST's named_parameters() order, the published names", c.order == names)
po = ([list(r) for r in c.tkeep], [list(r) for r in c.fkeep])


def ref(dt):
    m = R.load(params, cfg, dt)
    m.train()
    t0 = time.time()
    e = m(mel.to(dt), po)
    loss = (e * v.to(dt)).sum()
    loss.backward()
    sec = time.time() - t0
    return e.detach().double().numpy(), loss.item(), {n: p.grad.double().numpy().ravel() for n, p in m.published()}, sec


e32, l32, g32, t32 = ref(torch.float32)
e64, l64, g64, t64 = ref(torch.float64)


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def rel_max(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


de = rel_max(c.e, e32)
check("embeddings = PyTorch float32 within 1e-5 (relative to the largest)", de <= 1e-5, de)
scale = float(np.abs(e64 * v.numpy()).sum())
dl = abs(c.loss - l32) / scale
check("loss = PyTorch float32 within 1e-6 of sum |e_i v_i|", dl <= 1e-6, "%g vs %g" % (c.loss, l32))
worst, wn, w64, w3264, w3264n = 0.0, "", 0.0, 0.0, ""
for n in names:
    r = rel_l2(c.grads[n], g32[n])
    if r > worst:
        worst, wn = r, n
    w64 = max(w64, rel_l2(c.grads[n], g64[n]))
    q = rel_l2(g32[n], g64[n])
    if q > w3264:
        w3264, w3264n = q, n
check("every one of %d parameter gradients = PyTorch float32 within 1e-4 relative L2" % len(names), worst <= 1e-4,
      "worst %g at %s" % (worst, wn))
allc = np.concatenate([c.grads[n] for n in names])
all32 = np.concatenate([g32[n] for n in names])
all64 = np.concatenate([g64[n] for n in names])
note("embeddings C-f32 %.2g, C-f64 %.2g, f32-f64 %.2g; loss (of sum |e v|) C-f32 %.2g, C-f64 %.2g, f32-f64 %.2g"
     % (de, rel_max(c.e, e64), rel_max(e32, e64), dl, abs(c.loss - l64) / scale, abs(l32 - l64) / scale))
note("gradients, worst tensor: C-f32 %.2g (%s), C-f64 %.2g, f32-f64 %.2g (%s); whole gradient C-f64 %.2g, f32-f64 %.2g"
     % (worst, wn.replace(R.PA, ""), w64, w3264, w3264n.replace(R.PA, ""), rel_l2(allc, all64), rel_l2(all32, all64)))
note("step (%d segments of 284 tokens, %d threads): C forward %.2f s + backward %.2f s = %.2f s (the driver %.1f s "
     "with its I/O), peak RSS %.0f MB (parameters and gradients %.0f MB); PyTorch float32 forward + backward %.2f s, "
     "float64 %.1f s" % (B, THREADS, c.fwd_s, c.bwd_s, c.fwd_s + c.bwd_s, c.seconds, c.maxrss_kb / 1024,
                         8 * allc.size / 1e6, t32, t64))
cr = D.run(DRIVER, tmp, cfg, p32, names, mel.numpy(), v.numpy(), st=15, sf=2, keys=[2024, 2025], threads=THREADS,
          recompute=True)
check("recompute (only the blocks' inputs kept): embeddings and every gradient the same bits",
      np.array_equal(c.e, cr.e) and all(np.array_equal(c.grads[n], cr.grads[n]) for n in names))
note("recompute: C forward %.2f s + backward %.2f s = %.2f s, peak RSS %.0f MB"
     % (cr.fwd_s, cr.bwd_s, cr.fwd_s + cr.bwd_s, cr.maxrss_kb / 1024))
done()
