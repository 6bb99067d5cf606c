"""clap-train on SALSA's PaSST-RoBERTa (a model file of scripts/convert.py
salsa, chosen by its clap.audio.arch) as a tool, against PyTorch: the
published modules in training mode (scripts/passttrainref.py: passt.py's
PaSST and SALSA's projection; scripts/robertatrainref.py: RoBERTa as HF
computes it on SALSA's padded batch), SALSA's forward_audio (each clip's kept
10-s segments through PaSST, the mean of their features, the projection),
training_step's L_sup / L_dist (claptrainref.salsa_loss), AdamW in the four
groups of configure_optimizers and update_lr (claptrainref). A small
configuration of the real architecture, random weights: PaSST 21 mel bins,
5x4 patches at stride 4x3, 30-frame segments (0.3 s, 3 to the fixed 0.9 s:
the published 10 s / 30 s scaled), width 30, 2 blocks; RoBERTa hidden 33,
2 layers, RoBERTa's real BPE (captions as salsa_text.h / bperef make them);
embedding 19. 6 clips of 1, 2 and 3 kept segments, 2 captions each, batches
of 4, items in file order (--no-shuffle):

  1. patchout and dropout off (--no-augment): the first step's loss (1e-6
     relative), every parameter's gradient (--save-grads; 1e-4 relative L2),
     the weights after one AdamW step (1e-6), a 20-step loss curve under
     update_lr (1e-5 relative);
  2. micro-batches (the gradient cache, --micro-bs 1 and 3, with and without
     --recompute, augmentation on): the loss of the unsplit batch within
     1e-6, the gradients within 1e-5 relative L2;
  3. stage 2 with two teachers of different architectures and widths: the
     CNN14-BERT test model's and the PaSST-RoBERTa model's own embeddings
     (clap-audio / clap-text output): the first step's loss within 1e-6;
  4. augmentation on (patchout 15/2, RoBERTa dropout 0.2/0.2, PaSST rates
     given): the same seed gives the same bits, 1 and 2 threads too; another
     seed another loss; a run stopped by --max-steps and resumed ends with
     the same bytes; --val writes OUT.best; clap-audio and clap-text read the
     trained model;
  5. refusals: a WavCaps mel stream, a whole-clip PaSST stream, --micro-bs on
     a CNN14-BERT model, --frames on a PaSST model;
  6. --audio-list (the mel made from the waveform every step): with
     --no-augment the run on wav2mel --frontend passt's stream of the same
     files, bit for bit; jitter and random crops on (patchout and dropout
     off, lr 0): each step's loss = PyTorch's on passtmelref's mel of the
     crop and edges the run drew (-vv), within 1e-6; the draws in range
     (fmin 0..9, fmax 14001..16000 Hz, the 40000-sample clip cut to 28800 at
     [0, 11200]); 1 and 2 threads the same; --no-jitter --no-crop = the
     stream's run with patchout and dropout on."""
import filecmp
import os
import shutil
import subprocess
import tempfile

import atexit
import numpy as np
import torch

from tap import ROOT, check, done, note, tool
import claptrainref as CT
import passttrainref as PT
import robertatrainref as RT
import salsatiny as ST
import sttools
import wsacstream as ws

torch.set_num_threads(1)
tmp = tempfile.mkdtemp(prefix="wsac-train-salsa-")
atexit.register(shutil.rmtree, tmp, True)


def path(n):
    return os.path.join(tmp, n)


# ------------------------------------------------------------------ the model file, the stream, the captions
D = ST.make(tmp)
if not check("setup: convert.py salsa converts the small random SALSA checkpoint", D.ok):
    done()
MODEL, sd, PAD, acfg, tcfg = D.model, D.sd, D.pad, D.acfg, D.tcfg
S, M, SEG = D.S, D.M, D.seg
clips, nsamp, mels, items, IDS = D.clips, D.nsamp, D.mels, D.items, D.ids
PASST_HDR = D.header
g = torch.Generator().manual_seed(8)


# ------------------------------------------------------------------ the PyTorch reference
class Ref(torch.nn.Module):
    def __init__(self, dt=torch.float32):
        super().__init__()
        self.audio = PT.load({n: sd[n] for n, _ in PT.Tower(acfg).published()}, acfg, dt)
        self.text = RT.RobertaText(tcfg, PAD, 0.0, 0.0).to(dt)
        self.text.load_published({k: v.to(dt) for k, v in sd.items()})
        self.dt = dt

    def named(self):
        """(published name, parameter, group): configure_optimizers' four groups"""
        out = []
        for n, p in self.audio.published():
            out.append((n, p, 2 if n.startswith(PT.PROJ) else 0))
        for n, p in self.text.named_parameters():
            out.append((n, p, 3 if n.startswith(RT.PROJ) else 1))
        return out

    def forward(self, idx, item_mels=None):
        """SALSA's forward_audio / forward_sentence on items idx (item_mels: each item's own mel, else its
        clip's): unnormalised a, t [B, E]"""
        segs = [(item_mels[r] if item_mels else mels[items[i][0]]).reshape(-1, S, M) for r, i in enumerate(idx)]
        f = self.audio.passt(torch.cat(segs).to(self.dt).transpose(1, 2)[:, None])  # [segments, D]
        feats, k = [], 0
        for s_ in segs:
            feats.append(f[k:k + len(s_)].mean(0))  # the kept segments' mean (mask all ones here)
            k += len(s_)
        a = self.audio.proj(torch.stack(feats))
        L = max(len(IDS[i]) for i in idx)
        ids = torch.full((len(idx), L), PAD, dtype=torch.long)
        mask = torch.zeros(len(idx), L, dtype=torch.long)
        for r, i in enumerate(idx):
            ids[r, :len(IDS[i])] = torch.tensor(IDS[i])
            mask[r, :len(IDS[i])] = 1
        return a, self.text(ids, mask)


def aid(idx):
    return torch.tensor([clips.index(items[i][0]) for i in idx])


def optimizer(m, lr):
    groups = [[] for _ in range(4)]
    for _, p, gr in m.named():
        groups[gr].append(p)
    return torch.optim.AdamW([{"params": x, "lr": lr} for x in groups], betas=(0.9, 0.999), eps=1e-8,
                             weight_decay=0.0)


def ref_step(m, opt, idx, step, spe, sched_kw=None, teachers=None, lw=1.0, dw=0.0):
    for gr in opt.param_groups:
        if "base" not in gr:
            gr["base"] = gr["lr"]
        gr["lr"] = CT.schedule(step / spe, gr["base"], **(sched_kw or {}))
    opt.zero_grad(set_to_none=False)
    a, t = m(idx)
    ta, tt = teachers if teachers else (None, None)
    ls, ld, loss = CT.salsa_loss(a, t, aid(idx), ta, tt, loss_weight=lw, distill_weight=dw)
    loss.backward()
    opt.step()
    return ls.item(), ld.item(), loss.item()


def run(*args, model=MODEL, mel=None, caps=None, base=("--bs", "4", "--no-shuffle", "-j", "1", "-q")):
    r = subprocess.run([tool("clap-train"), "--init", model, "--mel", mel or path("mel.mp"), "--captions",
                        caps or path("caps.tsv")] + list(base) + [str(a) for a in args], capture_output=True, text=True)
    return r.returncode, r.stderr


def log_rows(p):
    return [l.split("\t") for l in open(p).read().splitlines()[1:] if not l.startswith("#")]


def key_bias(n):
    """the attention keys' biases: their gradient is 0 (softmax ignores a constant), so C's and PyTorch's are
    rounding noise; held apart, to 1e-6 of the largest gradient element"""
    return n.endswith("attention.self.key.bias")


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


# ------------------------------------------------------------------ 1. one step, dropout and patchout off
rc, err = run("-o", path("one.st"), "--epochs", 1, "--max-steps", 1, "--lr", "1e-3", "--warmup", 0, "--no-augment",
              "--log", path("one.tsv"), "--save-grads", path("grads.st"))
check("one step runs (exit 0)", rc == 0, err)
m = Ref()
opt = optimizer(m, 1e-3)
before = {n: p.detach().clone() for n, p, _ in m.named()}
_, _, rloss = ref_step(m, opt, [0, 1, 2, 3], 0, 3, {"warmup_length": 0})
m64 = Ref(torch.float64)
a64, t64 = m64([0, 1, 2, 3])
l64 = CT.salsa_loss(a64, t64, aid([0, 1, 2, 3]))[2]
l64.backward()
g64 = {n: p.grad.numpy().copy() for n, p, _ in m64.named()}
cl = float(log_rows(path("one.tsv"))[0][3]) if rc == 0 else 0.0
dl = abs(cl - rloss) / abs(rloss)
check("one step: the loss = PyTorch float32 within 1e-6 relative (%.7f vs %.7f)" % (cl, rloss), dl < 1e-6, dl)
note("one step: loss C %.8f, PyTorch float32 %.8f, float64 %.8f: C-f32 %.1e, C-f64 %.1e"
     % (cl, rloss, l64.item(), dl, abs(cl - l64.item()) / abs(l64.item())))
cg = sttools.load(path("grads.st"))[0] if rc == 0 else {}
worst, wn, worst64, w3264, missing, kb = 0.0, "", 0.0, 0.0, [], 0.0
gmax = max(float(p.grad.abs().max()) for _, p, _ in m.named())
for n, p, _ in m.named():
    if n not in cg:
        missing.append(n)
        continue
    if key_bias(n):
        kb = max(kb, float(np.abs(cg[n]).max()) / gmax)
        continue
    r = rel_l2(cg[n], p.grad.numpy())
    if r > worst:
        worst, wn = r, n
    worst64 = max(worst64, rel_l2(cg[n], g64[n]))
    w3264 = max(w3264, rel_l2(p.grad.numpy(), g64[n]))
check("one step: every one of %d parameter gradients (both towers, published names) = PyTorch float32 within 1e-4 "
      "relative L2 (the keys' biases, 0 up to rounding: within 1e-6 of the largest)" % len(m.named()),
      not missing and worst < 1e-4 and kb < 1e-6, "%s worst %.2e at %s; keys' biases %.1e" % (missing[:3], worst, wn, kb))
note("one step gradients, worst tensor: C-f32 %.1e (%s), C-f64 %.1e, f32-f64 %.1e" % (worst, wn, worst64, w3264))
got = sttools.load(path("one.st"))[0] if rc == 0 else {}
worst, wn, moved, noisy = 0.0, "", 0.0, 0
for n, p, _ in m.named():
    if n not in got:
        worst, wn = 1.0, n + " (missing)"
        continue
    if key_bias(n):  # noise-level gradients: Adam moves each element by up to lr either way
        if np.abs(got[n] - before[n].numpy()).max() > 1e-3 * (1 + 1e-5):
            worst, wn = 1.0, n + " (moved by more than lr)"
        continue
    moved = max(moved, float((p.detach() - before[n]).abs().max()))
    d = np.abs(got[n] - p.detach().numpy())
    gr = np.abs(p.grad.numpy())
    # Adam's first step is lr g / (|g| + eps): an element whose gradient is at rounding-noise level moves by up to
    # lr in the direction the noise picks (C and PyTorch alike): those are held to 2 lr, all others to 1e-6
    small = gr < 1e-5 * max(float(gr.max()), 1e-30)
    noisy += int(small.sum())
    if (d[small] > 2e-3).any():
        worst, wn = 1.0, n + " (noise-level element)"
    dd = float(d[~small].max()) if (~small).any() else 0.0
    if dd > worst:
        worst, wn = dd, n
check("one step: every weight of both towers within 1e-6 of PyTorch's AdamW step (lr 1e-3, largest update %.0e)"
      % moved, worst < 1e-6 and moved > 5e-4, "%s %.2e" % (wn, worst))
note("one step: weights max |C - torch| %.1e (%s); %d noise-level gradient elements held to 2 lr" % (worst, wn, noisy))

# 20 steps: 3 batches an epoch, update_lr at fractional epochs
rc, err = run("-o", path("twenty.st"), "--epochs", 7, "--max-steps", 20, "--lr", "3e-4", "--no-augment",
              "--log", path("twenty.tsv"))
cl = [float(r[3]) for r in log_rows(path("twenty.tsv"))] if rc == 0 else []
curves = {}
for dt in (torch.float64, torch.float32):
    m = Ref(dt)
    opt = optimizer(m, 3e-4)
    curves[dt] = [ref_step(m, opt, list(range(4 * (s_ % 3), 4 * (s_ % 3) + 4)), s_, 3)[2] for s_ in range(20)]


def curve_dev(a, b):
    return max(abs(x - y) / abs(y) for x, y in zip(a, b)) if len(a) == len(b) == 20 else 1.0


dev, dev64, t64 = curve_dev(cl, curves[torch.float32]), curve_dev(cl, curves[torch.float64]), \
    curve_dev(curves[torch.float32], curves[torch.float64])
check("20 steps (update_lr, lr 3e-4): the loss curve within 1e-5 (relative) of PyTorch float32", rc == 0 and dev < 1e-5,
      "%.2e (float64: C %.2e, PyTorch float32 %.2e) %s" % (dev, dev64, t64, err[-300:]))
note("20 steps: loss %.5f -> %.5f (PyTorch %.5f -> %.5f); C-f32 %.1e, C-f64 %.1e, f32-f64 %.1e"
     % (cl[0] if cl else 0, cl[-1] if cl else 0, curves[torch.float32][0], curves[torch.float32][-1], dev, dev64, t64))
r1 = subprocess.run([tool("clap-audio"), "-q", "-m", path("twenty.st"), path("mel.mp")], capture_output=True)
r2 = subprocess.run([tool("clap-text"), "-q", "-m", path("twenty.st")], input=b"k\ta dog barks\n", capture_output=True)
check("clap-audio and clap-text read the trained model", r1.returncode == 0 and r2.returncode == 0,
      (r1.stderr + r2.stderr).decode()[:300])

# ------------------------------------------------------------------ 2. micro-batches: the gradient cache
AUG = ["--drop-rate", "0.1", "--attn-drop-rate", "0.1", "--drop-path-rate", "0.2"]
ref_g, ref_l = None, None
for mbs, rec in ((0, 0), (1, 0), (3, 0), (3, 1), (1, 1)):
    extra = (["--micro-bs", mbs] if mbs else []) + (["--recompute"] if rec else [])
    rc, err = run("-o", path("mb.st"), "--epochs", 1, "--max-steps", 1, "--log", path("mb.tsv"), "--save-grads",
                  path("mbg.st"), *AUG, *extra)
    if rc:
        check("micro-batches %d%s: runs" % (mbs, " + recompute" if rec else ""), False, err)
        continue
    lo = float(log_rows(path("mb.tsv"))[0][3])
    gg = sttools.load(path("mbg.st"))[0]
    if ref_g is None:
        ref_g, ref_l = gg, lo
        continue
    dl = abs(lo - ref_l) / abs(ref_l)
    dg = max(rel_l2(gg[n], ref_g[n]) for n in ref_g if not key_bias(n))
    check("augmentation on, --micro-bs %d%s: the loss = the unsplit batch's within 1e-6 (%.1e), every gradient "
          "within 1e-5 relative L2 (%.1e)" % (mbs, " --recompute" if rec else "", dl, dg), dl < 1e-6 and dg < 1e-5)
    note("--micro-bs %d%s: loss %.1e, gradients %.1e (relative)" % (mbs, " --recompute" if rec else "", dl, dg))

# ------------------------------------------------------------------ 3. stage 2: two teachers of two architectures
CLAP_TEST = os.path.join(ROOT, "data", "models", "clap-test.safetensors")
wmels = {k: torch.randn(70, 64, generator=g) * 10 - 40 for k in clips}
with open(path("wmel.mp"), "wb") as f:
    ws.write_stream(f, "test", ({"key": k, "mel": wmels[k].numpy()} for k in clips))
with open(path("tcaps.tsv"), "w") as f:
    f.writelines("t%d\t%s\n" % (i, c) for i, (_, c) in enumerate(items))
teach = []
for name, model, melp in (("cnn14-bert", CLAP_TEST, path("wmel.mp")), ("passt-roberta", MODEL, path("mel.mp"))):
    ta_p, tt_p = path("ta-%s.mp" % name), path("tt-%s.mp" % name)
    with open(ta_p, "wb") as fo:
        ra = subprocess.run([tool("clap-audio"), "-q", "-m", model, melp], stdout=fo, stderr=subprocess.PIPE)
    with open(tt_p, "wb") as fo:
        rt = subprocess.run([tool("clap-text"), "-q", "-m", model, path("tcaps.tsv")], stdout=fo, stderr=subprocess.PIPE)
    check("stage 2 setup: clap-audio / clap-text make the %s teacher's embeddings" % name,
          ra.returncode == 0 and rt.returncode == 0, (ra.stderr + rt.stderr).decode()[:300])
    teach.append((ta_p, tt_p))


def emb_of(p, by_text):
    _, recs, _ = ws.read_stream(open(p, "rb"))
    return {(r["text"] if by_text else r["key"]): np.asarray(r["emb"], np.float64) for r in recs}


tea = [(emb_of(a, False), emb_of(t, True)) for a, t in teach]
widths = [len(next(iter(x[0].values()))) for x in tea]
Dt = max(widths)


def pad(v):
    return np.concatenate([v, np.zeros(Dt - len(v))])


idx = [0, 1, 2, 3]
ta = torch.tensor(np.array([[pad(tea[k][0][items[i][0]]) for k in range(2)] for i in idx]), dtype=torch.float32)
tt = torch.tensor(np.array([[pad(tea[k][1][items[i][1]]) for k in range(2)] for i in idx]), dtype=torch.float32)
targs = sum((["--teacher", "%s,%s" % x] for x in teach), [])
for lw, dw, label in ((0.0, 1.0, "L_dist alone (the README's stage 2)"), (0.5, 1.0, "0.5^2 L_sup + L_dist")):
    rc, err = run("-o", path("s2.st"), "--epochs", 1, "--max-steps", 1, "--no-augment", "--log", path("s2.tsv"),
                  "--loss-weight", lw, "--distill-weight", dw, *targs)
    row = log_rows(path("s2.tsv"))[0] if rc == 0 else ["0"] * 6
    m = Ref()
    a, t = m(idx)
    ls, ld, loss = CT.salsa_loss(a, t, aid(idx), ta, tt, loss_weight=lw, distill_weight=dw)
    e = max(abs(float(row[3]) - loss.item()) / abs(loss.item()), abs(float(row[5]) - ld.item()) / abs(ld.item()))
    check("stage 2, teachers CNN14-BERT (width %d) and PaSST-RoBERTa (width %d), %s: the loss within 1e-6 of PyTorch"
          % (widths[0], widths[1], label), rc == 0 and e < 1e-6, "%.2e %s" % (e, err[-300:]))
    note("stage 2 (%s): loss %.7f vs %.7f (rel. %.1e)" % (label, float(row[3]), loss.item(), e))

# ------------------------------------------------------------------ 4. augmentation on: keyed, resumable
def same_tensors(a, b):
    ta, tb = sttools.load(a)[0], sttools.load(b)[0]
    return set(ta) == set(tb) and all(np.array_equal(ta[k], tb[k]) for k in ta)


def losses(p):
    return [r[3] for r in log_rows(p)]


rc1, e1 = run("-o", path("aug1.st"), "--epochs", 2, "--log", path("aug1.tsv"), *AUG)
rc2, e2 = run("-o", path("aug2.st"), "--epochs", 2, "--log", path("aug2.tsv"), *AUG,
              base=("--bs", "4", "--no-shuffle", "-j", "2", "-q"))
rc3, e3 = run("-o", path("aug3.st"), "--epochs", 2, "--log", path("aug3.tsv"), "--seed", 5, *AUG)
rc4, e4 = run("-o", path("noaug.st"), "--epochs", 2, "--log", path("noaug.tsv"), "--no-augment")
ok = rc1 == rc2 == rc3 == rc4 == 0
check("augmentation on (patchout 15/2, RoBERTa dropout 0.2/0.2, PaSST 0.1/0.1/0.2): the same seed, 1 and 2 threads: "
      "the same losses and model bytes", ok and losses(path("aug1.tsv")) == losses(path("aug2.tsv"))
      and filecmp.cmp(path("aug1.st"), path("aug2.st"), shallow=False), (e1 + e2)[-300:])
check("another seed, or --no-augment: other losses", ok and losses(path("aug1.tsv")) != losses(path("aug3.tsv"))
      and losses(path("aug1.tsv"))[0] != losses(path("noaug.tsv"))[0], (e3 + e4)[-300:])
rc, err = run("-o", path("part.st"), "--epochs", 2, "--max-steps", 4, "--checkpoint", path("ck.st"), *AUG)
rc5, err5 = subprocess.run([tool("clap-train"), "--resume", path("ck.st"), "--mel", path("mel.mp"), "--captions",
                            path("caps.tsv"), "--bs", "4", "--no-shuffle", "-j", "1", "-q", "--epochs", "2", "-o",
                            path("resumed.st")] + AUG, capture_output=True, text=True).returncode, ""
check("augmentation on: stopped after 4 steps (--max-steps, mid-epoch) and resumed: the uninterrupted run's tensors, "
      "bit for bit", rc == 0 and rc5 == 0 and same_tensors(path("resumed.st"), path("aug1.st")), err[-300:])
rc, err = run("-o", path("val.st"), "--epochs", 2, "--val", "%s,%s" % (path("mel.mp"), path("caps.tsv")), "--log",
              path("val.tsv"))
vals = [l for l in open(path("val.tsv")).read().splitlines() if l.startswith("# epoch")] if rc == 0 else []
check("--val: mAP@10 logged after each epoch, the best epoch's model written", rc == 0 and len(vals) == 2
      and os.path.exists(path("val.st.best")), err[-300:])

# ------------------------------------------------------------------ 6. --audio-list: the mel made each step
import soundfile as sf  # noqa: E402
import passtmelref  # noqa: E402

wav = {}
rng = np.random.default_rng(12)
with open(path("audio.list"), "w") as f:
    for k, n in zip(clips, nsamp):
        t = np.arange(n) / 32000
        x = (0.3 * np.sin(2 * np.pi * (200 + 300 * rng.random()) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)
        sf.write(path(k), x, 32000, subtype="FLOAT")
        wav[k] = x
        f.write(path(k) + "\n")
W2M = [tool("wav2mel"), "-q", "--frontend", "passt", "--n-mels", str(M), "--segment-seconds", "0.3", "--segments", "3",
       "-j", "1"]
with open(path("wmel2.mp"), "wb") as fo:
    r = subprocess.run(W2M + [path(k) for k in clips], stdout=fo, stderr=subprocess.PIPE)
check("setup: wav2mel --frontend passt cuts the 6 audio files", r.returncode == 0, r.stderr.decode()[-300:])
LIST = ["--epochs", 2, "--log", path("wl.tsv")]
rc1, e1 = run("-o", path("wl-mel.st"), "--no-augment", *LIST, mel=path("wmel2.mp"))
r2 = subprocess.run([tool("clap-train"), "--init", MODEL, "--audio-list", path("audio.list"), "--captions",
                     path("caps.tsv"), "--bs", "4", "--no-shuffle", "-j", "1", "-q", "-o", path("wl-list.st"),
                     "--no-augment", "--epochs", "2"], capture_output=True, text=True)
check("--audio-list, --no-augment: the tensors of the run on wav2mel's stream of the same files, bit for bit",
      rc1 == 0 and r2.returncode == 0 and same_tensors(path("wl-mel.st"), path("wl-list.st")), (e1 + r2.stderr)[-300:])


def list_run(*args, threads=1):
    r = subprocess.run([tool("clap-train"), "--init", MODEL, "--audio-list", path("audio.list"), "--captions",
                        path("caps.tsv"), "--bs", "4", "--no-shuffle", "-j", str(threads), "-vv"]
                       + [str(a) for a in args], capture_output=True, text=True)
    draws = [l for l in r.stderr.splitlines() if "mel edges" in l]
    return r.returncode, r.stderr, draws


# jitter and crop on, patchout and dropout off, lr 0: every step's loss is SALSA's on the drawn crop and edges
OFF = ["--patchout-t", 0, "--patchout-f", 0, "--text-dropout", 0, "--text-attn-dropout", 0, "--lr", 0]
rc, err, draws = list_run("-o", path("wj.st"), "--epochs", 1, "--log", path("wj.tsv"), *OFF)
ok = rc == 0 and len(draws) == 12
parsed = []
for l in draws:  # clap-train: audio 'c3.wav': samples 123..28923 of 40000, mel edges 7..15421 Hz
    key = l.split("'")[1]
    a, b = l.split("samples ")[1].split(" of ")[0].split("..")
    lo, hi = l.split("mel edges ")[1].split(" Hz")[0].split("..")
    parsed.append((key, int(a), int(b), float(lo), float(hi)))
dev = 1.0
if ok:
    dev = 0.0
    cl = [float(r[3]) for r in log_rows(path("wj.tsv"))]
    m = Ref()
    for s_ in range(3):
        jm = []
        for i in range(4 * s_, 4 * s_ + 4):
            key, a, b, lo, hi = parsed[i]
            jm.append(torch.tensor(passtmelref.passt_mel_segments(
                wav[key][a:b], seg_samples=SEG, nseg=3, n_mels=M, fmin=lo, fmax=hi), dtype=torch.float32))
        with torch.no_grad():
            a_, t_ = m(list(range(4 * s_, 4 * s_ + 4)), jm)
            ref = CT.salsa_loss(a_, t_, aid(list(range(4 * s_, 4 * s_ + 4))))[2].item()
        dev = max(dev, abs(cl[s_] - ref) / abs(ref))
check("--audio-list, jitter and crop on (patchout, dropout off): each step's loss = PyTorch's on the drawn crops "
      "and edges (passtmelref's mel) within 1e-6", ok and dev < 1e-6, "%s %.2e %s" % (len(draws), dev, err[-300:]))
note("--audio-list with jitter and crop: the 3 steps' losses vs PyTorch: %.1e" % dev)
fl = [p[3] for p in parsed]
fh = [p[4] for p in parsed]
crops = [p for p in parsed if p[0] == "c3.wav"]
check("the draws: fmin in {0..9}, fmax in {14001..16000} Hz, integers, not all equal; the 40000-sample clip cut "
      "to its 28800 at offsets in [0, 11200], the shorter ones whole",
      ok and all(0 <= x < 10 and x == int(x) for x in fl) and all(14000 < x <= 16000 and x == int(x) for x in fh)
      and len(set(fh)) > 1 and crops and all(b - a == 28800 and 0 <= a <= 11200 for _, a, b, _, _ in crops)
      and all(b - a == n for (k, a, b, _, _) in parsed for kk, n in zip(clips, nsamp) if k == kk != "c3.wav"),
      parsed[:4])
rc, err, d2 = list_run("-o", path("wj2.st"), "--epochs", 3, *AUG)
rcb, errb, d3 = list_run("-o", path("wj3.st"), "--epochs", 3, *AUG, threads=2)
offs = sorted({p.split("samples ")[1].split("..")[0] for p in d2 if "'c3.wav'" in p})
check("--audio-list, everything on: 1 and 2 threads, the same draws and tensors; the long clip's crop differs "
      "between epochs (%s)" % offs, rc == rcb == 0 and d2 == d3 and same_tensors(path("wj2.st"), path("wj3.st"))
      and len(offs) > 1, (err + errb)[-300:])
rc, err, _ = list_run("-o", path("wj4.st"), "--epochs", 2, "--no-jitter", "--no-crop", *AUG)
rc5, err5 = run("-o", path("wj5.st"), "--epochs", 2, *AUG, mel=path("wmel2.mp"))
check("--audio-list --no-jitter --no-crop, patchout and dropout on: the tensors of the run on wav2mel's stream",
      rc == rc5 == 0 and same_tensors(path("wj4.st"), path("wj5.st")), (err + err5)[-300:])

# ------------------------------------------------------------------ 5. refusals
rc, err = run("-o", path("bad.st"), "--mel", path("wmel.mp"))
check("a WavCaps mel stream for a PaSST model: named, exit 2", rc == 2 and "front end" in err, err[-300:])
with open(path("whole.mp"), "wb") as f:
    ws.write_stream(f, "wav2mel", ({"key": k, "mel": mels[k].numpy(), "samples": n} for k, n in zip(clips, nsamp)),
                    params={"frontend": "passt", "cut": "whole", "n_mels": M})
rc, err = run("-o", path("bad.st"), mel=path("whole.mp"))
check("a whole-clip PaSST stream: named, exit 2", rc == 2 and "whole-clip" in err, err[-300:])
rc, err = run("-o", path("bad.st"), "--micro-bs", 2, model=CLAP_TEST, mel=path("wmel.mp"),
              caps=path("caps.tsv"))
check("--micro-bs on a CNN14-BERT model (BatchNorm): named, exit 2", rc == 2 and "micro-bs" in err, err[-300:])
rc, err = run("-o", path("bad.st"), "--frames", 40)
check("--frames on a PaSST model: named, exit 2", rc == 2 and "--frames" in err, err[-300:])
done()
