"""The protocol of build/tests/test_passt_train run (tests/c/test_passt_train.c
run()): one C training step of PaSST-S (lib/passt_train.c) from Python, for
tests/py/test_passt_train.py and tests/full/test_passt_train_full.py."""
import os
import struct
import subprocess
import time

import numpy as np

import passttrainref as R


class Step:
    """Tk, Fk, N, e [B, E], loss (float64), grads {name: flat}, tkeep [B, Tk], fkeep [B, Fk], masks (bytes),
    order (C's tensor names), seconds (the driver's wall time), fwd_s, bwd_s (its forward and backward pass),
    maxrss_kb (its peak RSS)"""


def run(driver, tmp, cfg, params, names, mel, v, st=0, sf=0, keys=None, keep=None, rates=(0.0, 0.0, 0.0),
        threads=1, masks=False, recompute=False):
    """one C step on mel [B, S, M], loss = sum e . v; keys: item keys (patchout, dropout); keep: (tkeep, fkeep)"""
    Bn, S = mel.shape[0], mel.shape[1]
    ph, pw = cfg.patch
    sh, sw = cfg.stride
    mode = 1 if keys is not None else 2 if keep is not None else 0
    iv = [cfg.n_mels, cfg.dim, cfg.depth, cfg.heads, cfg.mlp, ph, pw, sh, sw, cfg.grid[0], cfg.grid[1], cfg.embed, Bn,
          S, st, sf, mode, threads, int(masks) | 2 * int(recompute)]
    if mode == 1:
        for k in keys:
            iv += [k & 0xffffffff, k >> 32]
        iv = [x if x < 2 ** 31 else x - 2 ** 32 for x in iv]
    elif mode == 2:
        iv += [int(x) for x in np.asarray(keep[0]).ravel()] + [int(x) for x in np.asarray(keep[1]).ravel()]
    inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    with open(inp, "wb") as f:
        f.write(struct.pack("<i", len(iv)) + np.asarray(iv, dtype="<i4").tobytes())
        f.write(np.asarray(rates, dtype="<f4").tobytes())
        for n in names:
            f.write(np.asarray(params[n], dtype="<f4").tobytes())
        f.write(np.asarray(mel, dtype="<f4").tobytes() + np.asarray(v, dtype="<f4").tobytes())
    t0 = time.time()
    p = subprocess.run([driver, "run", inp, out], capture_output=True, text=True)
    r = Step()
    r.seconds = time.time() - t0
    so = p.stdout
    if p.returncode:
        raise RuntimeError(p.stderr)
    # the driver's own VmHWM: a child's ru_maxrss would count the forked Python before exec
    r.maxrss_kb = int([l for l in so.splitlines() if l.startswith("peak_rss_kb ")][0].split()[1])
    os.remove(inp)
    table = [l.split() for l in so.splitlines() if l.startswith("tensor ")]
    b = open(out, "rb").read()
    os.remove(out)
    r.Tk, r.Fk, r.N, npar = struct.unpack_from("<4i", b, 0)
    o = 16
    E = Bn * cfg.embed
    r.e = np.frombuffer(b, "<f4", E, o).reshape(Bn, cfg.embed); o += 4 * E
    r.loss = struct.unpack_from("<d", b, o)[0]; o += 8
    gr = np.frombuffer(b, "<f4", npar, o); o += 4 * npar
    r.tkeep = np.frombuffer(b, "<i4", Bn * r.Tk, o).reshape(Bn, r.Tk); o += 4 * Bn * r.Tk
    r.fkeep = np.frombuffer(b, "<i4", Bn * r.Fk, o).reshape(Bn, r.Fk); o += 4 * Bn * r.Fk
    r.masks = b[o:]
    r.grads, at = {}, 0
    for _, name, numel in table:
        r.grads[name] = gr[at:at + int(numel)]
        at += int(numel)
    r.order = [t[1] for t in table]
    r.fwd_s, r.bwd_s = [float(x) for x in [l for l in so.splitlines() if l.startswith("seconds ")][0].split()[1:]]
    return r


def split_masks(cfg, raw, Bn, N):
    """the driver's mask bytes as passttrainref.Masks"""
    D, H, Hm = cfg.dim, cfg.heads, cfg.mlp
    a = np.frombuffer(raw, np.uint8)
    o = 0

    def take(*shape):
        nonlocal o
        n = int(np.prod(shape))
        x = a[o:o + n].reshape(shape)
        o += n
        return x

    pos = take(Bn, N, D)
    blocks = [dict(attn=take(Bn, H, N, N), proj=take(Bn, N, D), gelu=take(Bn, N, Hm), fc2=take(Bn, N, D),
                   drop_path=take(Bn, 2)) for _ in range(cfg.depth)]
    return R.Masks(pos, blocks)
