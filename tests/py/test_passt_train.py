"""PaSST-S in training mode (lib/passt_train.c, driven through
build/tests/test_passt_train run) against scripts/passttrainref.py (PyTorch,
passt.py's modules) on a small configuration of the real architecture:
70 mel bins (a partial last patch row dropped), 99-frame segments (a partial
last patch column dropped), 16x16 patches at stride 16: a 4 x 6 grid of a
4 x 7 time embedding (cropped), width 36, 3 heads, MLP 144, 2 blocks,
embedding 20, 3 segments. Loss = sum_b e_b . v_b (v fixed, random).

  1. patchout and dropout off: the embeddings (1e-5 relative to the largest),
     the loss (1e-6 of sum |e_i v_i|: the sum cancels) and EVERY parameter
     gradient (relative L2 1e-4) against
     PyTorch float32; the figures against float64 too;
  2. structured patchout on (2 columns, 1 row), C's per-item draws given to
     the reference: the same parity;
  3. passt.py's own patchout (model.train(), one torch.randperm for the batch)
     given to C as every item's kept patches: the same parity;
  4. patchout, dropout 0.1, attention dropout 0.1 and drop_path 0.5 (block 1 of 2: 0.5) on, C's
     masks given to the reference: the same parity; 2 threads, and recomputed
     activations, the same bits;
  5. the masks of 256 keyed segments: columns and rows dropped uniformly
     (chi-square), every site's dropout at its rate (4 sigma);
  6. passtt_load on a SALSA model file (scripts/convert.py salsa of
     passtref's tiny random checkpoint: 21 mel bins, 5x4 patches at stride
     4x3, 30-frame segments, 3 of them): every tensor copied exactly, and the
     training model without keys agrees with clap-audio's inference
     (lib/passt.c: the normalised mean over the kept segments) within 1e-5."""
import os
import struct
import subprocess
import tempfile

import atexit
import json
import shutil

import numpy as np
import torch

from tap import ROOT, check, done, note
import passttrainref as R
import passtt_driver as D

torch.set_num_threads(1)
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "test_passt_train")
tmp = tempfile.mkdtemp(prefix="wsac-passt-train-")
atexit.register(shutil.rmtree, tmp, True)
if not check("the test driver is built (%s)" % DRIVER, os.access(DRIVER, os.X_OK)):
    done()

cfg = R.Config(n_mels=70, dim=36, depth=2, heads=3, mlp=144, grid=(4, 7), embed=20)
B, S = 3, 99
Fp, Tp = (cfg.n_mels - 16) // 16 + 1, (S - 16) // 16 + 1
params = R.random_params(cfg, seed=3)
names = [n for n, _ in R.Tower(cfg).published()]
g = torch.Generator().manual_seed(5)
mel = torch.randn(B, S, cfg.n_mels, generator=g, dtype=torch.float64)
v = torch.randn(B, cfg.embed, generator=g, dtype=torch.float64)


def c_run(mel, v, **kw):
    """one C step: (Tk, Fk, N, e, loss, {name: grad}, tkeep, fkeep, raw masks bytes, C's tensor names)"""
    r = D.run(DRIVER, tmp, cfg, {n: params[n].numpy() for n in names}, names, mel.numpy(), v.numpy(), **kw)
    return r.Tk, r.Fk, r.N, r.e, r.loss, r.grads, r.tkeep, r.fkeep, r.masks, r.order


def split_masks(raw, Bn, N):
    return D.split_masks(cfg, raw, Bn, N)


def ref_run(dt, mel, v, patchout=None, masks=None, rates=(0.0, 0.0, 0.0), published=None):
    """(e, loss, {name: grad}) in PyTorch at dtype dt; published=(seed, st, sf): passt.py's own patchout"""
    kw = dict(drop_rate=rates[0], attn_drop_rate=rates[1], drop_path_rate=rates[2])
    if published:
        kw.update(s_patchout_t=published[1], s_patchout_f=published[2])
    m = R.load(params, cfg, dt, **kw)
    m.train()
    if published:
        torch.manual_seed(published[0])
    e = m(mel.to(dt), patchout, masks)
    loss = (e * v.to(dt)).sum()
    loss.backward()
    return e.detach().double().numpy(), loss.item(), {n: p.grad.double().numpy().ravel() for n, p in m.published()}


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def rel_max(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def parity(label, c, r32, r64):
    Tk, Fk, N, e, loss, grads, tk, fk, _, order = c
    e32, l32, g32 = r32
    e64, l64, g64 = r64
    check("%s: C's tensors in PaSST's named_parameters() order with the published names" % label, order == names,
          [x for x in zip(order, names) if x[0] != x[1]][:3])
    de = rel_max(e, e32)
    check("%s: embeddings = PyTorch float32 within 1e-5 (relative to the largest)" % label, de <= 1e-5, de)
    # the loss sum_i e_i v_i cancels (|loss| ~ 0.5, sum |e_i v_i| ~ 10): relative to the sum of the magnitudes,
    # the scale its rounding error has
    scale = float(np.abs(e64 * v.numpy()).sum())
    dl = abs(loss - l32) / scale
    check("%s: loss = PyTorch float32 within 1e-6 of sum |e_i v_i|" % label, dl <= 1e-6,
          "%g vs %g: %g" % (loss, l32, dl))
    worst, wn, worst64, w32_64 = 0.0, "", 0.0, 0.0
    for n in names:
        r = rel_l2(grads[n], g32[n])
        if r > worst:
            worst, wn = r, n
        worst64 = max(worst64, rel_l2(grads[n], g64[n]))
        w32_64 = max(w32_64, rel_l2(g32[n], g64[n]))
    check("%s: every one of %d parameter gradients = PyTorch float32 within 1e-4 relative L2" % (label, len(names)),
          worst <= 1e-4, "worst %g at %s" % (worst, wn))
    allc = np.concatenate([grads[n] for n in names])
    all64 = np.concatenate([g64[n] for n in names])
    all32 = np.concatenate([g32[n] for n in names])
    note("%s: N %d tokens; embeddings C-f32 %.2g, C-f64 %.2g, f32-f64 %.2g; loss C-f32 %.2g, C-f64 %.2g, f32-f64 %.2g (of sum |e_i v_i|); gradients (worst tensor) "
         "C-f32 %.2g (%s), C-f64 %.2g, f32-f64 %.2g; whole gradient C-f64 %.2g, f32-f64 %.2g"
         % (label, N, de, rel_max(e, e64), rel_max(e32, e64), dl, abs(loss - l64) / scale, abs(l32 - l64) / scale, worst, wn.replace(R.PA, ""), worst64, w32_64,
            rel_l2(allc, all64), rel_l2(all32, all64)))
    return worst


# 1. patchout and dropout off
c = c_run(mel, v)
check("no keys: the whole %d x %d grid (N %d)" % (Fp, Tp, 2 + Fp * Tp), c[2] == 2 + Fp * Tp, c[2])
parity("patchout, dropout off", c, ref_run(torch.float32, mel, v), ref_run(torch.float64, mel, v))

# 2. structured patchout drawn by C, item by item
keys = [7, 2 ** 40 + 3, 12345678901]
c = c_run(mel, v, st=2, sf=1, keys=keys)
Tk, Fk, tk, fk = c[0], c[1], c[6], c[7]
check("patchout 2 columns, 1 row: %d x %d kept, N %d" % (Fk, Tk, c[2]), (Tk, Fk, c[2]) == (Tp - 2, Fp - 1, 2 + (Tp - 2) * (Fp - 1)))
check("patchout: the items' draws differ (keyed per item)", len({tuple(r) for r in tk} | {(9,) + tuple(r) for r in fk}) > 2)
po = ([list(r) for r in tk], [list(r) for r in fk])
parity("patchout on (C's draws)", c, ref_run(torch.float32, mel, v, po), ref_run(torch.float64, mel, v, po))

# 3. passt.py's own draw (one randperm for the batch) given to C
seed = 11
torch.manual_seed(seed)
ti = torch.randperm(Tp)[:Tp - 2].sort().values.numpy()
fi = torch.randperm(Fp)[:Fp - 1].sort().values.numpy()
c = c_run(mel, v, st=2, sf=1, keep=(np.tile(ti, (B, 1)), np.tile(fi, (B, 1))))
check("passt.py's draw given to C: kept %s x %s" % (list(fi), list(ti)),
      (c[6] == ti).all() and (c[7] == fi).all())
parity("passt.py's own patchout", c, ref_run(torch.float32, mel, v, published=(seed, 2, 1)),
       ref_run(torch.float64, mel, v, published=(seed, 2, 1)))

# 4. everything on: C's masks given to the reference
rates = (0.1, 0.1, 0.5)
c = c_run(mel, v, st=2, sf=1, keys=keys, rates=rates, masks=True)
mk = split_masks(c[8], B, c[2])
po = ([list(r) for r in c[6]], [list(r) for r in c[7]])
dropped = [int((mk.pos == 0).sum())] + [int((b["attn"] == 0).sum()) for b in mk.blocks]
dpb = [b["drop_path"].tolist() for b in mk.blocks]
check("dropout on: entries dropped at every site (pos, attention %s); drop_path drops a branch of block 1 %s"
      % (dropped, dpb[1]), min(dropped) > 0 and min(min(r) for r in dpb[1]) == 0)
parity("patchout, dropout 0.1, attention dropout 0.1, drop_path 0.5 (C's masks)", c,
       ref_run(torch.float32, mel, v, po, mk, rates), ref_run(torch.float64, mel, v, po, mk, rates))
cr = c_run(mel, v, st=2, sf=1, keys=keys, rates=rates, recompute=True)
check("everything on, activations recomputed in the backward pass: the same bits",
      np.array_equal(c[3], cr[3]) and c[4] == cr[4] and all(np.array_equal(c[5][n], cr[5][n]) for n in names))
c2 = c_run(mel, v, st=2, sf=1, keys=keys, rates=rates, masks=True, threads=2)
check("everything on: 2 threads give the same bits (embeddings, loss, gradients, kept patches, masks)",
      np.array_equal(c[3], c2[3]) and c[4] == c2[4] and all(np.array_equal(c[5][n], c2[5][n]) for n in names)
      and np.array_equal(c[6], c2[6]) and c[8] == c2[8])

# 5. the masks of many keyed segments, published-sized patchout on this grid's scale
Bm = 256
melm = torch.randn(Bm, S, cfg.n_mels, generator=g, dtype=torch.float64)
vm = torch.randn(Bm, cfg.embed, generator=g, dtype=torch.float64)
rates = (0.2, 0.3, 0.5)
c = c_run(melm, vm, st=2, sf=1, keys=[1000 + 17 * i for i in range(Bm)], rates=rates, masks=True)
Tk, Fk, N = c[0], c[1], c[2]
tcount = np.zeros(Tp)
fcount = np.zeros(Fp)
for r in c[6]:
    tcount += 1
    tcount[r] -= 1
for r in c[7]:
    fcount += 1
    fcount[r] -= 1
check("256 segments: each drops exactly 2 columns and 1 row", tcount.sum() == 2 * Bm and fcount.sum() == Bm)
# chi-square, 0.1% points: 5 dof 20.5, 3 dof 16.3
ct = float(((tcount - 2 * Bm / Tp) ** 2 / (2 * Bm / Tp)).sum())
cf = float(((fcount - Bm / Fp) ** 2 / (Bm / Fp)).sum())
check("dropped columns uniform over the %d positions (chi-square %.1f < 20.5, 5 dof)" % (Tp, ct), ct < 20.5)
check("dropped rows uniform over the %d positions (chi-square %.1f < 16.3, 3 dof)" % (Fp, cf), cf < 16.3)
mk = split_masks(c[8], Bm, N)
for what, arr, p in [("pos_drop", mk.pos, rates[0])] + [
        ("block %d %s" % (l, s), mk.blocks[l][s], rates[1] if s == "attn" else rates[0])
        for l in range(cfg.depth) for s in ("attn", "proj", "gelu", "fc2")]:
    f = float((arr == 0).mean())
    sd = (p * (1 - p) / arr.size) ** 0.5
    check("%s drops %.2f of its entries (%.4f, 4 sigma)" % (what, p, f), abs(f - p) < 4 * sd)
dp1 = float(mk.blocks[1]["drop_path"].mean())
check("drop_path: block 0 (rate 0) keeps every branch, block 1 (rate %.1f) %.3f of them (4 sigma)" % (rates[2], dp1),
      mk.blocks[0]["drop_path"].all() and abs(dp1 - 0.5) < 4 * (0.25 / (2 * Bm)) ** 0.5)

# 6. a SALSA model file: passtt_load against the inference model
import convert
import passtref
import sttools

tc = passtref.Config.tiny()
CKPT, MODEL = os.path.join(tmp, "tiny.ckpt"), os.path.join(tmp, "tiny.safetensors")
torch.save({"state_dict": passtref.random_state_dict(tc, seed=5), "epoch": 1}, CKPT)
VOCAB, MERGES = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
voc = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
voc.update({"t%d" % i: i for i in range(5, tc.vocab)})
with open(VOCAB, "w") as f:
    json.dump(voc, f)
with open(MERGES, "w") as f:
    f.write("#version: 0.2\nt 1\n")
rc = convert.main(["salsa", CKPT, "--vocab", VOCAB, "--merges", MERGES, "-o", MODEL, "--audio-heads", "3",
                   "--text-heads", "2", "--patch-stride", "4,3", "--n-mels", "21", "--segment-seconds", "0.3",
                   "--fixed-seconds", "0.9"])
if check("setup: convert.py salsa converts passtref's tiny checkpoint", rc == 0):
    tensors, _ = sttools.load(MODEL)
    S3 = tc.seg_frames
    T3 = 3 * S3
    mel3 = (torch.randn(T3, tc.n_mels, generator=g) * 0.5).numpy().astype("<f4")
    inp, out = os.path.join(tmp, "load.bin"), os.path.join(tmp, "load.out")
    with open(inp, "wb") as f:
        f.write(struct.pack("<2i", T3, int(round(3 * tc.segment_seconds * tc.sr))) + mel3.tobytes())
    r = subprocess.run([DRIVER, "load", MODEL, inp, out], capture_output=True, text=True)
    if check("the driver loads the model file with passtt_load and passt_load", r.returncode == 0, r.stderr):
        table = [l.split() for l in r.stdout.splitlines() if l.startswith("tensor ")]
        b = open(out, "rb").read()
        Bk, npar = struct.unpack_from("<2i", b, 0)
        pk = np.frombuffer(b, "<f4", npar, 8)
        ei = np.frombuffer(b, "<f4", tc.embed, 8 + 4 * npar)
        et = np.frombuffer(b, "<f4", tc.embed, 8 + 4 * npar + 4 * tc.embed)
        at, exact = 0, True
        for _, name, numel in table:
            exact &= np.array_equal(pk[at:at + int(numel)], np.asarray(tensors[name], np.float32).ravel())
            at += int(numel)
        check("passtt_load: %d tensors, every one equal to the file's" % len(table), exact and at == npar)
        d = float(np.abs(ei - et).max())
        check("training model without keys = inference (lib/passt.c) on %d segments within 1e-5 (%.2g)" % (Bk, d),
              Bk == 3 and d <= 1e-5)
done()
