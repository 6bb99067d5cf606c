"""The training kernels (lib/kernels_conv.c) and SALSA's losses
(lib/contrastive.c) against PyTorch on odd sizes, through the dump mode of
tests/c/test_kernels_train: 3x3 convolution, BatchNorm2d in training mode
(output, running statistics with momentum 0.1 and the unbiased variance, the
backward pass) and in eval mode, bn0's layout (the mel bins as channels),
2x2 average pooling with a dropped odd row/column, CNN14's time/frequency
head pooling, nn.Linear's backward pass, and L_sup / L_dist (loss and
gradients to the unnormalised embeddings) as training_step computes them.

Each C output is compared with PyTorch in float32 (what the published code
runs) and the losses also with a float64 evaluation of the same graph."""
import os
import struct
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from tap import ROOT, check, done, note

torch.set_num_threads(1)
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "test_kernels_train")
tmp = tempfile.mkdtemp()
if not check("the test driver is built (%s)" % DRIVER, os.access(DRIVER, os.X_OK)):
    done()
g = torch.Generator().manual_seed(5)


def rnd(*shape, s=1.0):
    return torch.randn(*shape, generator=g) * s


def run(op, ints, tensors, sizes):
    """Run the driver on OP; returns the float32 outputs split by sizes."""
    inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    with open(inp, "wb") as f:
        f.write(struct.pack("<i%di" % len(ints), len(ints), *ints))
        for t in tensors:
            f.write(np.ascontiguousarray(t.detach().numpy(), dtype=np.float32).tobytes())
    r = subprocess.run([DRIVER, "dump", op, inp, out], capture_output=True, text=True)
    if r.returncode != 0:
        check("driver %s runs" % op, False, r.stderr.strip())
        done()
    raw = open(out, "rb").read()
    n = sum(sizes)
    v = np.frombuffer(raw[:4 * n], dtype=np.float32)
    parts, k = [], 0
    for s in sizes:
        parts.append(torch.from_numpy(v[k:k + s].copy()))
        k += s
    return parts, raw[4 * n:]


def rel(a, b):
    a, b = a.double().reshape(-1), b.double().reshape(-1)
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# ------------------------------------------------------------------ conv 3x3
B, Cin, Cout, T, Fq = 3, 5, 7, 9, 11
x, w, gy = rnd(B, Cin, T, Fq), rnd(Cout, Cin, 3, 3, s=0.3), rnd(B, Cout, T, Fq)
(y, dx, dw), _ = run("conv", [B, Cin, Cout, T, Fq], [x, w, gy], [gy.numel(), x.numel(), w.numel()])
xr, wr = x.clone().requires_grad_(), w.clone().requires_grad_()
yr = F.conv2d(xr, wr, padding=1)
yr.backward(gy)
e = (rel(y, yr), rel(dx, xr.grad), rel(dw, wr.grad))
check("conv3x3 forward, input and weight gradients = F.conv2d within 1e-5 relative", max(e) < 1e-5, e)
note("conv3x3 [3,5->7,9,11]: out %.2e, d_in %.2e, d_w %.2e (max rel.)" % e)

# ------------------------------------------------------------------ batch norm
for name, shape, view in (("BatchNorm2d [B, C, T, F]", (4, 6, 7, 5), None),
                          ("bn0 (mel bins as channels)", (3, 1, 13, 10), "bn0")):
    xx = rnd(*shape, s=3.0) + 2.0
    if view == "bn0":
        O, C, S = shape[0] * shape[2], shape[3], 1
    else:
        O, C, S = shape[0], shape[1], shape[2] * shape[3]
    wt, bs = 1 + 0.3 * rnd(C), 0.2 * rnd(C)
    rm, rv = rnd(C), 0.5 + torch.rand(C, generator=g)
    gy = rnd(*shape)
    n = xx.numel()
    (y, rm2, rv2, dx, dwt, dbs, ye), _ = run("bn", [O, C, S], [xx, wt, bs, rm, rv, gy], [n, C, C, n, C, C, n])
    xr, wr, br = xx.clone().requires_grad_(), wt.clone().requires_grad_(), bs.clone().requires_grad_()
    rmr, rvr = rm.clone(), rv.clone()
    xin = xr.transpose(1, 3) if view == "bn0" else xr
    yr = F.batch_norm(xin, rmr, rvr, wr, br, training=True, momentum=0.1, eps=1e-5)
    yr = yr.transpose(1, 3) if view == "bn0" else yr
    yr.backward(gy)
    with torch.no_grad():
        xe = xx.transpose(1, 3) if view == "bn0" else xx
        yer = F.batch_norm(xe, rm, rv, wt, bs, training=False, eps=1e-5)
        yer = yer.transpose(1, 3) if view == "bn0" else yer
    e = (rel(y, yr), rel(rm2, rmr), rel(rv2, rvr), rel(dx, xr.grad), rel(dwt, wr.grad), rel(dbs, br.grad), rel(ye, yer))
    check("%s: train output, running mean/var, gradients (input, weight, bias), eval output = PyTorch within 1e-5"
          % name, max(e) < 1e-5, e)
    note("%s: y %.1e, running mean %.1e, running var %.1e, dx %.1e, dw %.1e, db %.1e, eval %.1e" % ((name,) + e))

# ------------------------------------------------------------------ pooling
R_, T, Fq = 6, 9, 7
x, gy = rnd(R_, T, Fq), rnd(R_, T // 2, Fq // 2)
(y, dx), _ = run("pool", [R_, T, Fq], [x, gy], [gy.numel(), x.numel()])
xr = x.clone().requires_grad_()
yr = F.avg_pool2d(xr[None], kernel_size=(2, 2))[0]
yr.backward(gy)
e = (rel(y, yr), rel(dx, xr.grad))
check("avg_pool2d 2x2 (odd 9 x 7: a row and a column dropped) forward and backward = PyTorch within 1e-6", max(e) < 1e-6, e)

N, T, Fq = 10, 7, 3
x, gf = rnd(N, T, Fq), rnd(N)
(feat, dx), _ = run("head", [N, T, Fq], [x, gf], [N, x.numel()])
xr = xr = x.clone().requires_grad_()
m = torch.mean(xr, dim=2)
fr = torch.max(m, dim=1)[0] + torch.mean(m, dim=1)
fr.backward(gf)
e = (rel(feat, fr), rel(dx, xr.grad))
check("CNN14 head pooling (mean over frequency, max + mean over time) forward and backward = PyTorch within 1e-6",
      max(e) < 1e-6, e)

# ------------------------------------------------------------------ linear
N, C, OC = 7, 13, 5
x, W, b, gy = rnd(N, C), rnd(OC, C, s=0.3), rnd(OC), rnd(N, OC)
(y, dx, dW, db), _ = run("linear", [N, C, OC], [x, W, b, gy], [N * OC, N * C, OC * C, OC])
xr, Wr, br = x.clone().requires_grad_(), W.clone().requires_grad_(), b.clone().requires_grad_()
F.linear(xr, Wr, br).backward(gy)
e = (rel(dx, xr.grad), rel(dW, Wr.grad), rel(db, br.grad))
check("linear backward (input, weight, bias) = PyTorch within 1e-6", max(e) < 1e-6, e)


# ------------------------------------------------------------------ losses
def salsa_loss(a, t, paths, ta, tt, tau, loss_weight, distill_weight):
    """training_step of ex_dcase24.py, written out: returns (L_sup, L_dist, loss)
    with the published combination (L_sup weighted by loss_weight twice when
    distilling); ta/tt [B, M, D] teacher embeddings or None."""
    an, tn = F.normalize(a, p=2, dim=-1), F.normalize(t, p=2, dim=-1)
    Cm = (an[:, None] * tn[None, :]).sum(-1) / abs(tau)
    I = paths[None, :] == paths[:, None]
    la, lt = torch.log_softmax(Cm, dim=0), torch.log_softmax(Cm, dim=1)
    lsup = -0.5 * (la[torch.where(I)].mean() + lt[torch.where(I)].mean())
    loss = loss_weight * lsup
    ld = torch.zeros((), dtype=a.dtype)
    if distill_weight > 0:
        se, ae = F.normalize(tt, p=2, dim=-1), F.normalize(ta, p=2, dim=-1)
        Cd = (ae[:, None] * se[None, :]).sum(-1).mean(-1) / abs(tau)
        ld = 0.5 * (F.cross_entropy(Cm, torch.softmax(Cd, dim=1)) + F.cross_entropy(Cm.T, torch.softmax(Cd.T, dim=1)))
        loss = loss_weight * loss + distill_weight * ld
    return lsup, ld, loss


for B, D, M, lw, dwt, label in ((64, 1024, 0, 1.0, 0.0, "stage 1 (B 64, D 1024)"),
                                 (13, 40, 3, 0.0, 1.0, "stage 2, 3 random teachers (B 13, D 40)"),
                                 (13, 40, 2, 0.7, 1.3, "L_sup and L_dist weighted 0.7 / 1.3 (quirk: 0.7^2)")):
    paths = torch.randint(0, max(2, B // 3), (B,), generator=g)
    a, t = rnd(B, D), rnd(B, D)
    ta, tt = rnd(B, max(M, 1), D), rnd(B, max(M, 1), D)
    wsup = lw * lw if dwt > 0 else lw  # the published code multiplies L_sup by loss_weight twice
    (ls, da, dt), tail = run("loss", [B, D, M] + paths.tolist(),
                             [a, t, ta[:, :M], tt[:, :M], torch.tensor([0.05, wsup, dwt])], [3, B * D, B * D])
    l64 = np.frombuffer(tail, dtype=np.float64)
    res = {}
    for dt_ in (torch.float32, torch.float64):
        ar, tr = a.detach().clone().to(dt_).requires_grad_(), t.detach().clone().to(dt_).requires_grad_()
        lsup, ld, loss = salsa_loss(ar, tr, paths, ta[:, :M].to(dt_) if M else None,
                                    tt[:, :M].to(dt_) if M else None, 0.05, lw, dwt)
        if loss.requires_grad:
            loss.backward()
        res[dt_] = (lsup.item(), ld.item(), loss.item(), ar.grad, tr.grad)
    r32, r64 = res[torch.float32], res[torch.float64]
    el32 = max(abs(l64[k] - r32[k]) / abs(r32[k]) for k in range(3) if r32[k] != 0)
    el64 = max(abs(l64[k] - r64[k]) / abs(r64[k]) for k in range(3) if r64[k] != 0)
    if r64[3] is not None:
        eg64 = max(rel(da, r64[3]), rel(dt, r64[4]))
        eg32 = max(rel(da, r32[3]), rel(dt, r32[4]))
    else:
        eg64 = eg32 = max(da.abs().max().item(), dt.abs().max().item())
    check("%s: loss within 1e-6 of PyTorch float32 and 1e-7 of float64, gradients within 1e-5" % label,
          el32 < 1e-6 and el64 < 1e-7 and eg32 < 1e-5 and eg64 < 1e-5,
          "loss %.2e / %.2e, grads %.2e / %.2e" % (el32, el64, eg32, eg64))
    note("%s: loss rel. diff %.1e (float32 torch), %.1e (float64); gradients %.1e / %.1e" % (label, el32, el64, eg32, eg64))

done()
