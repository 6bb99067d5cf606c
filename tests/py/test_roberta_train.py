"""SALSA's RoBERTa text tower in training mode (lib/bert_train.c, clap.text.arch
= roberta) against scripts/robertatrainref.py (PyTorch, HF RobertaModel's
semantics on SALSA's padded, masked batch), driven through
build/tests/test_roberta_train on a small random SALSA checkpoint converted
by scripts/convert.py salsa (text tower: hidden 33 = 3 heads of 11, 2 layers,
feed-forward 47, 37 positions, RoBERTa's real vocab.json/merges.txt from
tests/data/roberta-bpe; embedding 19):

  ids: real captions through salsa_text.h (the function clap-text calls) =
  scripts/bperef.py's SALSA preprocessing + BPE, max_length 32 (one caption
  truncated), odd lengths;
  dropout off: a training step (SALSA's L_sup against fixed audio
  embeddings, C packs, PyTorch pads and masks): the text embeddings (1e-5
  relative), the loss (1e-6) and every parameter's gradient (1e-4 relative
  L2) against PyTorch float32; float64 for the figures;
  dropout on (SALSA's 0.2 / 0.2): every site's keep rate within 5 binomial
  sigma of 0.8; the same masks replayed in PyTorch give the same step; the
  masks (and the whole step) the same on 1 and 3 threads; an item's masks
  the same in another batch order and alone."""
import dataclasses
import os
import struct
import subprocess
import tempfile

import numpy as np
import torch

from tap import DATA, ROOT, check, done, note
import bperef
import claptrainref as CT
import convert
import passtref
import robertatrainref as RT
import sttools

torch.set_num_threads(1)
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "test_roberta_train")
HEADS = 3
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-roberta-train-")
tmp = tmpdir.name
if not check("the test driver is built (%s)" % DRIVER, os.access(DRIVER, os.X_OK)):
    done()
BPE_DIR = os.path.join(DATA, "roberta-bpe")
VOCAB, MERGES = os.path.join(BPE_DIR, "vocab.json"), os.path.join(BPE_DIR, "merges.txt")
pcfg = dataclasses.replace(passtref.Config.tiny(), vocab=50265, hidden=33, layers=2, text_heads=HEADS,
                           intermediate=47, positions=37, embed=19)
CKPT, MODEL = os.path.join(tmp, "small.ckpt"), os.path.join(tmp, "small.safetensors")
torch.save({"state_dict": passtref.random_state_dict(pcfg, seed=23), "epoch": 1}, CKPT)
OPTS = ["--audio-heads", "3", "--text-heads", str(HEADS), "--patch-stride", "4,3", "--n-mels", "21",
        "--segment-seconds", "0.3", "--fixed-seconds", "0.9"]
if not check("setup: convert.py salsa converts the small random SALSA checkpoint",
             convert.main(["salsa", CKPT, "--vocab", VOCAB, "--merges", MERGES, "-o", MODEL] + OPTS) == 0):
    done()
tensors, meta = sttools.load(MODEL)
sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if v.dtype == np.float32}
PAD = int(meta["clap.text.pad_id"])
cfg = RT.Config(vocab=pcfg.vocab, hidden=pcfg.hidden, layers=pcfg.layers, heads=HEADS, intermediate=pcfg.intermediate,
                positions=pcfg.positions, embed=pcfg.embed, eps=float(meta["clap.text.ln_eps"]))
E, H = cfg.embed, cfg.hidden
order = RT.param_order(cfg.layers)

# ------------------------------------------------------------------ ids
CAPTIONS = [
    "A dog barks twice, then a door slams!",
    "Rain.",
    "Birds chirp while a CAR passes by on a wet road; people talk in the distance (faintly).",
    "Water drips",
    "Someone is typing on a keyboard, and a phone rings - twice - before it stops.",
    "A man's voice echoes in a large, empty hall; footsteps approach slowly and a heavy metal door creaks open "
    "as the wind howls outside and thunder rumbles far away over the hills.",
    "Wind-blown leaves rustle: 'whoosh'",
]
bpe = bperef.BPE(VOCAB, MERGES)
r = subprocess.run([DRIVER, "ids", MODEL], input="\n".join(CAPTIONS) + "\n", capture_output=True, text=True)
cids = [[int(t) for t in line.split()] for line in r.stdout.splitlines()] if r.returncode == 0 else []
rids = [bpe.encode(bperef.salsa_preprocess(c), 32) for c in CAPTIONS]
lens = [len(x) for x in rids]
check("ids: salsa_text.h (clap-text's function) = SALSA's preprocessing + RobertaTokenizer, max_length 32 "
      "(lengths %s)" % lens, cids == rids and max(lens) == 32 and sum(n % 2 for n in lens) >= 3,
      r.stderr.strip() or [c for c, x in zip(cids, rids) if c != x][:2])
B, Lm = len(lens), max(lens)
ids = torch.full((B, Lm), PAD, dtype=torch.long)
mask = torch.zeros(B, Lm, dtype=torch.long)
for i, x in enumerate(rids):
    ids[i, :len(x)] = torch.tensor(x)
    mask[i, :len(x)] = 1
aid = [0, 1, 1, 2, 3, 3, 4]
g = torch.Generator().manual_seed(5)
aemb = torch.randn(B, E, generator=g)
KEYS = [(0x9E3779B97F4A7C15 * (i + 1) + 17) % 2 ** 64 for i in range(B)]


def run_c(items, drop, p=(0.0, 0.0), threads=None):
    """the driver's step on items (indices into the batch): e, {name: grad}, loss, raw masks"""
    inp, out = os.path.join(tmp, "in.bin"), os.path.join(tmp, "out.bin")
    ln = [lens[i] for i in items]
    kv = []
    for i in items:
        kv += [KEYS[i] & 0xFFFFFFFF, KEYS[i] >> 32]
    kv = [k - 2 ** 32 if k >= 2 ** 31 else k for k in kv]
    ints = [len(items)] + ln + [aid[i] for i in items] + [int(drop)] + kv + [t for i in items for t in rids[i]]
    with open(inp, "wb") as f:
        f.write(struct.pack("<i%di" % len(ints), len(ints), *ints))
        f.write(aemb[items].numpy().astype(np.float32).tobytes() + np.array(p, np.float32).tobytes())
    rr = subprocess.run([DRIVER, "dump", MODEL, inp, out] + ([str(threads)] if threads else []), capture_output=True,
                        text=True)
    if rr.returncode:
        return None
    raw = open(out, "rb").read()
    n = len(items) * E
    npar = sum(sd[k].numel() for k in order)
    v = np.frombuffer(raw[:4 * (n + npar)], dtype=np.float32)
    loss = struct.unpack("<d", raw[4 * (n + npar):4 * (n + npar) + 8])[0]
    grads, k = {}, n
    for name in order:
        c = sd[name].numel()
        grads[name] = v[k:k + c].reshape(sd[name].shape)
        k += c
    return v[:n].reshape(len(items), E), grads, loss, raw[4 * (n + npar) + 8:], raw


def split_masks(raw, items):
    """the driver's mask bytes -> per item: [emb [L,H], (h1 [L,H], h2 [L,H], att [NH,L,L]) per layer]"""
    ln = [lens[i] for i in items]
    N = sum(ln)
    b = np.frombuffer(raw, dtype=np.uint8)
    k = 0

    def take(n):
        nonlocal k
        k += n
        return b[k - n:k]

    emb = take(N * H).reshape(N, H)
    layers = []
    for _ in range(cfg.layers):
        h1, h2 = take(N * H).reshape(N, H), take(N * H).reshape(N, H)
        att = [take(HEADS * n * n).reshape(HEADS, n, n) for n in ln]
        layers.append((h1, h2, att))
    assert k == len(b), (k, len(b))
    offs = np.cumsum([0] + ln)
    per = []
    for j, n in enumerate(ln):
        o = offs[j]
        per.append([emb[o:o + n]] + [(h1[o:o + n], h2[o:o + n], att[j]) for h1, h2, att in layers])
    return per


def reference(dt, drop=None):
    m = RT.RobertaText(cfg, PAD).to(dt)
    m.load_published({k: v.to(dt) for k, v in sd.items()})
    m.train()
    e = m(ids, mask, drop)
    _, _, loss = CT.salsa_loss(aemb.to(dt), e, torch.tensor(aid))
    loss.backward()
    return (e.detach().double().numpy(), loss.item(),
            {n: p.grad.double().numpy() for n, p in m.named_parameters() if p.grad is not None})


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


def compare(c, ref, label):
    """embeddings, loss and every gradient of C against a reference: the figures"""
    ce, cg, closs = c[0], c[1], c[2]
    ee = rel_l2(ce, ref[0])
    el = abs(closs - ref[1]) / abs(ref[1])
    gmax = max(np.linalg.norm(x) for x in ref[2].values())
    worst, wname, kb, per_kind = 0.0, "", 0.0, {}
    for name in order:
        if name.endswith("key.bias"):
            # zero mathematically (it adds one constant to a query's scores): rounding noise in both, measured
            # against the largest gradient
            kb = max(kb, float(np.linalg.norm(cg[name])) / gmax)
            continue
        r_ = rel_l2(cg[name], ref[2][name])
        kind = "project_sentence" if "project" in name else name.split(".")[-2]
        per_kind[kind] = max(per_kind.get(kind, 0.0), r_)
        if r_ > worst:
            worst, wname = r_, name
    return ee, el, worst, wname, kb, per_kind


# ------------------------------------------------------------------ dropout off
allb = list(range(B))
c0 = run_c(allb, drop=False)
if not check("the driver runs the RoBERTa training step", c0 is not None):
    done()
r32, r64 = reference(torch.float32), reference(torch.float64)
ee, el, gw, gwn, kb, kinds = compare(c0, r32, "off")
ee64, el64, gw64, _, _, _ = compare(c0, r64, "off")
te64, tl64, tg64, _, _, _ = compare((r32[0], r32[2], r32[1]), r64, "torch")
check("dropout off: text embeddings (packed vs padded + masked, <s> pooled, project_sentence) = PyTorch float32 "
      "within 1e-5 relative L2", ee < 1e-5, "%.2e" % ee)
check("dropout off: L_sup = PyTorch float32 within 1e-6 relative", el < 1e-6, "%.2e" % el)
check("dropout off: every parameter's gradient (%d tensors, the keys' biases apart) = PyTorch float32 within 1e-4 "
      "relative L2" % (len(order) - cfg.layers), gw < 1e-4, "%.2e (%s)" % (gw, gwn))
check("the keys' bias gradient is zero up to rounding (L2 within 1e-6 of the largest gradient's)", kb < 1e-6,
      "%.2e" % kb)
note("dropout off, C vs PyTorch float32: embeddings %.1e, loss %.1e, gradients %.1e (worst %s); key bias %.1e"
     % (ee, el, gw, gwn, kb))
note("dropout off vs float64 (C / PyTorch float32): embeddings %.1e / %.1e, loss %.1e / %.1e, gradients %.1e / %.1e"
     % (ee64, te64, el64, tl64, gw64, tg64))
note("gradients vs PyTorch float32 by kind: " + ", ".join("%s %.1e" % kv for kv in sorted(kinds.items())))

# ------------------------------------------------------------------ dropout on (SALSA's rates)
P = (0.2, 0.2)
c1 = run_c(allb, drop=True, p=P)
if not check("the driver runs the step with dropout", c1 is not None):
    done()
per = split_masks(c1[3], allb)
worst_dev, ok_rates, sites = 0.0, True, []
flat = [np.concatenate([it[0].ravel() for it in per])]
for li in range(cfg.layers):
    flat.append(np.concatenate([it[1 + li][0].ravel() for it in per]))
    flat.append(np.concatenate([it[1 + li][1].ravel() for it in per]))
    flat.append(np.concatenate([it[1 + li][2].ravel() for it in per]))
for x in flat:
    kf, n = float(x.mean()), x.size
    ok_rates &= abs(kf - 0.8) <= 5 * np.sqrt(0.16 / n)
    worst_dev = max(worst_dev, abs(kf - 0.8) / np.sqrt(0.16 / n))
    sites.append("%.3f/%d" % (kf, n))
check("dropout 0.2: all %d sites (embeddings; per layer both residual branches, attention) keep 0.8 within 5 "
      "binomial sigma" % len(flat), ok_rates, "worst %.1f sigma" % worst_dev)
note("keep rates (kept fraction / entries): " + ", ".join(sites) + "; worst %.1f sigma" % worst_dev)
# the masks replayed in PyTorch
emb = torch.ones(B, Lm, H)
h1 = [torch.ones(B, Lm, H) for _ in range(cfg.layers)]
h2 = [torch.ones(B, Lm, H) for _ in range(cfg.layers)]
att = [torch.ones(B, HEADS, Lm, Lm) for _ in range(cfg.layers)]
for b, it in enumerate(per):
    n = lens[b]
    emb[b, :n] = torch.from_numpy(it[0].astype(np.float32))
    for li in range(cfg.layers):
        h1[li][b, :n] = torch.from_numpy(it[1 + li][0].astype(np.float32))
        h2[li][b, :n] = torch.from_numpy(it[1 + li][1].astype(np.float32))
        att[li][b, :, :n, :n] = torch.from_numpy(it[1 + li][2].astype(np.float32))
d32 = reference(torch.float32, RT.Masks(emb, h1, h2, att, *P))
ee, el, gw, gwn, kb, _ = compare(c1, d32, "on")
check("dropout on, C's masks replayed in PyTorch float32: embeddings 1e-5, loss 1e-6, every gradient 1e-4 "
      "(relative L2)", ee < 1e-5 and el < 1e-6 and gw < 1e-4 and kb < 1e-6,
      "%.2e %.2e %.2e (%s) %.2e" % (ee, el, gw, gwn, kb))
note("dropout on (masks replayed), C vs PyTorch float32: embeddings %.1e, loss %.1e, gradients %.1e (worst %s)"
     % (ee, el, gw, gwn))
c3 = run_c(allb, drop=True, p=P, threads=3)
c1b = run_c(allb, drop=True, p=P, threads=1)
check("dropout on: the whole step (embeddings, gradients, loss, masks) the same bits on 1 and 3 threads",
      c3 is not None and c1b is not None and c3[4] == c1b[4] == c1[4])
perm = [4, 0, 6, 2, 5, 1, 3]
cp = run_c(perm, drop=True, p=P)
pp = split_masks(cp[3], perm)


def same(a, b):
    return all(np.array_equal(x, y) if not isinstance(x, tuple) else all(np.array_equal(u, v) for u, v in zip(x, y))
               for x, y in zip(a, b))


check("an item's masks depend on its key: the same in another batch order", all(same(pp[j], per[i])
                                                                                 for j, i in enumerate(perm)))
alone = [split_masks(run_c([i], drop=True, p=P)[3], [i])[0] for i in (1, 3)]
check("an item's masks are the same alone as beside the batch's longest caption",
      same(alone[0], per[1]) and same(alone[1], per[3]))
done()
