"""clap-train as a tool, against scripts/claptrainref.py (PyTorch, the
published modules and SALSA's training_step / AdamW groups / update_lr), on
the bundled test CLAP with random mel clips and captions, dropout off
(--no-augment), items in file order (--no-shuffle):

  the weights after one AdamW step (every tensor of both towers); a 20-step
  loss curve with update_lr's fractional-epoch warm-up and cosine decay (the
  first step has learning rate 0, as published); BatchNorm's running
  statistics after the 20 steps; the model written is read by clap-audio
  and clap-text; stage 2: the loss of the first step with random teachers,
  L_dist alone and combined with L_sup under the published loss_weight^2;
  an item missing from a teacher, a caption whose audio is missing: named,
  exit 2; checkpoints: a run stopped after 4 steps (--max-steps) or by
  SIGTERM and resumed ends with the same bytes as the uninterrupted run,
  dropout on; the checkpoint is a model file clap-audio reads."""
import io
import os
import signal
import subprocess
import tempfile
import time

import numpy as np
import torch

from tap import ROOT, check, done, note, tool
import clapref
import claptrainref as R
import sttools
import wsacstream as ws
from ref_wordpiece import BertTokenizerRef

torch.set_num_threads(1)
MODEL = os.path.join(ROOT, "data", "models", "clap-test.safetensors")
tmp = tempfile.mkdtemp()


def path(n):
    return os.path.join(tmp, n)


tensors, meta = sttools.load(MODEL)
sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
cfg = clapref.Config(n_mels=int(meta["clap.audio.n_mels"]),
                     channels=[int(c) for c in meta["clap.audio.channels"].split(",")],
                     embed=int(meta["clap.embed_dim"]), hidden=int(meta["clap.text.hidden"]),
                     layers=int(meta["clap.text.layers"]), heads=int(meta["clap.text.heads"]),
                     intermediate=int(meta["clap.text.intermediate"]), vocab=int(meta["clap.text.vocab_size"]))
vocab_file = path("vocab.txt")
with open(vocab_file, "wb") as f:
    f.write(tensors["tokenizer.vocab"].tobytes())
tok = BertTokenizerRef(vocab_file)

# 5 clips x 2 captions = 10 items; batches of 4: 2 a epoch (2 items dropped)
g = torch.Generator().manual_seed(11)
T = 70
words = "a dog barks loudly while cars pass by and birds sing in the rain near water people talk".split()
clips = ["clip%d.wav" % i for i in range(5)]
mels = {k: torch.randn(T, cfg.n_mels, generator=g) * 10 - 40 for k in clips}
items = []
rng = np.random.default_rng(4)
for k in clips:
    for j in range(2):
        items.append((k, " ".join(rng.choice(words, size=int(rng.integers(3, 9))))))
with open(path("mel.mp"), "wb") as f:
    ws.write_stream(f, "test", ({"key": k, "mel": mels[k].numpy()} for k in clips))
with open(path("caps.tsv"), "w") as f:
    f.writelines("%s\t%s\n" % it for it in items)


def ids_of(text):
    return [tok.vocab["[CLS]"]] + [tok.vocab[t] for t in tok.tokenize(text)] + [tok.vocab["[SEP]"]]


def batch(idx):
    ids = [ids_of(items[i][1]) for i in idx]
    L = max(len(x) for x in ids)
    t = torch.zeros(len(idx), L, dtype=torch.long)
    m = torch.zeros(len(idx), L)
    for r, x in enumerate(ids):
        t[r, :len(x)] = torch.tensor(x)
        m[r, :len(x)] = 1
    mel = torch.stack([mels[items[i][0]] for i in idx])
    aid = torch.tensor([clips.index(items[i][0]) for i in idx])
    return mel, t, m, aid


def run(*args):
    r = subprocess.run([tool("clap-train"), "--init", MODEL, "--mel", path("mel.mp"), "--captions", path("caps.tsv"),
                        "--bs", "4", "--no-shuffle", "--no-augment", "-j", "1", "-q"] + [str(a) for a in args],
                       capture_output=True, text=True)
    return r.returncode, r.stderr


def ref_model(dt=torch.float32):
    m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).to(dt)
    m.load_published({k: v.to(dt) if v.is_floating_point() else v for k, v in sd.items()})
    return m


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


# ------------------------------------------------------------------ one step: the weights after AdamW
rc, err = run("-o", path("one.st"), "--epochs", 1, "--max-steps", 1, "--lr", "1e-3", "--warmup", 0)
check("one step runs (exit 0)", rc == 0, err)
m = ref_model()
opt = R.optimizer(m, lr=1e-3)
R.train_step(m, opt, *batch([0, 1, 2, 3]), step=0, steps_per_epoch=2, sched_kw={"warmup_length": 0})
got = sttools.load(path("one.st"))[0] if rc == 0 else {}
# the keys' biases have a zero gradient up to rounding noise, which Adam's
# m / sqrt(v) turns into a step of +-lr in a direction the noise picks (in
# PyTorch as in C): they are checked apart, the step no larger than lr


def key_bias(n):
    return n.endswith("attention.self.key.bias")


kb = max((float(np.abs(got[n] - sd[n].numpy()).max()) for n in got if key_bias(n)), default=1.0)
check("one step: the keys' biases (zero gradient) move by at most lr", kb <= 1e-3 * (1 + 1e-5), "%.3g" % kb)
# Adam's first step is lr g / (|g| + eps): a gradient element at rounding-noise
# level (0 < |g| < 1e-5 of its tensor's largest) still moves by up to lr in
# whichever direction the noise picks; those are held to 2 lr, all others to 1e-6
worst, wname, moved, noisy = 0.0, "", 0.0, 0
for n, p in m.named_parameters():
    if key_bias(n):
        continue
    moved = max(moved, float((p.detach() - sd[n]).abs().max()))
    if n not in got:
        worst, wname = 1.0, n
        continue
    d = np.abs(got[n] - p.detach().numpy())
    gr = np.abs(p.grad.numpy()) if p.grad is not None else np.zeros_like(d)
    small = (gr > 0) & (gr < 1e-5 * gr.max())
    noisy += int(small.sum())
    if (d[small] > 2e-3).any():
        worst, wname = 1.0, n + " (noise-level element)"
    dd = float(d[~small].max()) if (~small).any() else 0.0
    if dd > worst:
        worst, wname = dd, n
check("one step: every parameter of both towers within 1e-6 of PyTorch's AdamW step (lr 1e-3, update %.0e)" % moved,
      worst < 1e-6 and moved > 5e-4, "%s %.2e" % (wname, worst))
note("one step: %d noise-level gradient elements of %d held to 2 lr" % (noisy, sum(p.numel() for p in m.parameters())))
note("one step: weights after AdamW max |C - torch| %.1e (%s), largest update %.1e" % (worst, wname, moved))

# ------------------------------------------------------------------ 20 steps: loss curve, running statistics
rc, err = run("-o", path("twenty.st"), "--epochs", 10, "--lr", "3e-4", "--log", path("log.tsv"))
rows = [l.split("\t") for l in open(path("log.tsv")).read().splitlines()[1:]] if rc == 0 else []
cl = [float(r[3]) for r in rows]
curves = {}
for dt in (torch.float64, torch.float32):  # m ends as the float32 model
    m = ref_model(dt)
    opt = R.optimizer(m, lr=3e-4)
    tl, lrs = [], []
    for s_ in range(20):
        b = s_ % 2
        mel, ids, mask, aid = batch(list(range(4 * b, 4 * b + 4)))
        tl.append(R.train_step(m, opt, mel.to(dt), ids, mask, aid, step=s_, steps_per_epoch=2)[2])
        lrs.append(opt.param_groups[0]["lr"])
    curves[dt] = tl


def curve_dev(a, b):
    return max(abs(x - y) / abs(y) for x, y in zip(a, b)) if len(a) == len(b) == 20 else 1.0


# training amplifies rounding (BatchNorm over 4 clips): C is held to 1e-5 of
# PyTorch float32, or, failing that, to 5x float32 PyTorch's own distance from float64
dev, dev64, t64 = curve_dev(cl, tl), curve_dev(cl, curves[torch.float64]), curve_dev(tl, curves[torch.float64])
clr = [float(r[6]) for r in rows]
dlr = max(abs(a - b) for a, b in zip(clr, lrs)) if len(clr) == 20 else 1.0
check("20 steps: the loss curve within 1e-5 (relative) of PyTorch float32 (or as close to float64 as it, 5x)",
      rc == 0 and (dev < 1e-5 or dev64 <= 5 * t64), "%.2e (float64: C %.2e, PyTorch float32 %.2e); %s vs %s"
      % (dev, dev64, t64, cl[:3], tl[:3]))
check("20 steps: the learning rates are update_lr's at fractional epochs (step 1: 0)", dlr < 1e-12 and clr[0] == 0.0,
      "%.2e" % dlr)
note("20 steps vs float64: C %.1e, PyTorch float32 %.1e" % (dev64, t64))
note("20 steps: loss %.5f -> %.5f (PyTorch %.5f -> %.5f), max relative deviation %.1e" % (cl[0], cl[-1], tl[0], tl[-1], dev))
got = sttools.load(path("twenty.st"))[0] if rc == 0 else {}
rs = max((rel(got[n], b.numpy()) for n, b in m.named_buffers() if "running" in n), default=1.0) if got else 1.0
wd = max(float(np.abs(got[n] - p.detach().numpy()).max()) for n, p in m.named_parameters()
         if not key_bias(n)) if got else 1.0
check("20 steps: BatchNorm running statistics within 1e-4 of PyTorch (relative), weights (but the keys' biases) "
      "within 1e-4", rs < 1e-4 and wd < 1e-4,
      "%.2e %.2e" % (rs, wd))
note("20 steps: running statistics %.1e (relative), weights %.1e (absolute)" % (rs, wd))

# the trained model is a CLAP file the encoders read
r1 = subprocess.run([tool("clap-audio"), "-q", "-m", path("twenty.st"), path("mel.mp")], capture_output=True)
r2 = subprocess.run([tool("clap-text"), "-q", "-m", path("twenty.st")], input=b"a dog barks\n", capture_output=True)
check("clap-audio and clap-text read the trained model", r1.returncode == 0 and r2.returncode == 0,
      (r1.stderr + r2.stderr).decode()[:300])

# ------------------------------------------------------------------ stage 2: random teachers
M_T = 2
tea = []
for t in range(M_T):
    ae = {k: torch.randn(cfg.embed, generator=g) for k in clips}
    te = {c: torch.randn(cfg.embed, generator=g) for _, c in items}
    with open(path("ta%d.mp" % t), "wb") as f:
        ws.write_stream(f, "test", ({"key": k, "emb": ae[k].numpy()} for k in clips))
    with open(path("tt%d.mp" % t), "wb") as f:
        ws.write_stream(f, "test", ({"key": "c%d" % i, "text": c, "emb": te[c].numpy()} for i, (_, c) in enumerate(items)))
    tea.append((ae, te))
targs = sum((["--teacher", "%s,%s" % (path("ta%d.mp" % t), path("tt%d.mp" % t))] for t in range(M_T)), [])
idx = [0, 1, 2, 3]
ta = torch.stack([torch.stack([tea[t][0][items[i][0]] for t in range(M_T)]) for i in idx])
tt = torch.stack([torch.stack([tea[t][1][items[i][1]] for t in range(M_T)]) for i in idx])
for lw, dw, label in ((0.0, 1.0, "L_dist alone (the README's stage 2)"), (0.5, 1.0, "0.5^2 L_sup + L_dist")):
    rc, err = run("-o", path("s2.st"), "--epochs", 1, "--max-steps", 1, "--log", path("s2.tsv"), "--loss-weight", lw,
                  "--distill-weight", dw, *targs)
    row = open(path("s2.tsv")).read().splitlines()[1].split("\t") if rc == 0 else ["0"] * 6
    m = ref_model()
    m.train()
    mel, ids, mask, aid = batch(idx)
    ls, ld, loss = R.salsa_loss(m.project_audio(mel), m.project_text(ids, mask), aid, ta, tt,
                                loss_weight=lw, distill_weight=dw)
    e = max(abs(float(row[3]) - loss.item()) / abs(loss.item()), abs(float(row[5]) - ld.item()) / abs(ld.item()))
    check("stage 2, %d random teachers, %s: the loss within 1e-6 of PyTorch" % (M_T, label), rc == 0 and e < 1e-6,
          "%.2e %s" % (e, err[-300:]))
    note("stage 2 (%s): loss %.6f vs %.6f (rel. %.1e)" % (label, float(row[3]), loss.item(), e))

# a caption missing from a teacher, an audio missing from the mel stream
with open(path("tt_short.mp"), "wb") as f:
    ws.write_stream(f, "test", ({"key": "c%d" % i, "text": c, "emb": np.ones(cfg.embed, np.float32)}
                                for i, (_, c) in enumerate(items[:-1])))
rc, err = run("-o", path("bad.st"), "--teacher", "%s,%s" % (path("ta0.mp"), path("tt_short.mp")), "--distill-weight", 1)
check("a caption missing from a teacher: named, exit 2", rc == 2 and items[-1][1] in err and "teacher 1" in err, err)
with open(path("caps_bad.tsv"), "w") as f:
    f.write("clip0.wav\ta dog\nnosuch.wav\ta cat\n")
r = subprocess.run([tool("clap-train"), "--init", MODEL, "--mel", path("mel.mp"), "--captions", path("caps_bad.tsv"),
                    "-o", path("bad.st"), "--bs", "2", "-q"], capture_output=True, text=True)
check("a caption whose audio is not in the mel stream: named, exit 2, no model written",
      r.returncode == 2 and "nosuch.wav" in r.stderr and not os.path.exists(path("bad.st")), r.stderr)
# ------------------------------------------------------------------ checkpoints and --resume (dropout on)
def train(*args):
    r = subprocess.run([tool("clap-train"), "--mel", path("mel.mp"), "--captions", path("caps.tsv"), "--bs", "2",
                        "--lr", "1e-3", "-j", "1", "-q"] + [str(a) for a in args], capture_output=True, text=True)
    return r.returncode, r.stderr


def same_tensors(a, b):
    ta, tb = sttools.load(a)[0], sttools.load(b)[0]
    return set(ta) == set(tb) and all(np.array_equal(ta[k], tb[k]) for k in ta)


rc1, e1 = train("--init", MODEL, "--epochs", 3, "-o", path("straight.st"))
rc2, e2 = train("--init", MODEL, "--epochs", 3, "--max-steps", 4, "--checkpoint", path("c4.ckpt"), "-o", path("p.st"))
rc3, e3 = train("--resume", path("c4.ckpt"), "--epochs", 3, "-o", path("resumed.st"))
ok = rc1 == rc2 == rc3 == 0 and same_tensors(path("straight.st"), path("resumed.st"))
cm = sttools.load(path("c4.ckpt"))[1] if rc2 == 0 else {}
check("stopped after 4 of 15 steps (mid-epoch: epoch 1, batch 5 next) and resumed: the same bytes as the uninterrupted run (dropout on)",
      ok and cm.get("clap.train.epoch") == "0" and cm.get("clap.train.batch") == "4", (ok, cm.get("clap.train.epoch"), cm.get("clap.train.batch"), (e1 + e2 + e3)[-300:]))
r = subprocess.run([tool("clap-audio"), "-q", "-m", path("c4.ckpt"), path("mel.mp")], capture_output=True)
check("a checkpoint is a model file clap-audio reads", r.returncode == 0, r.stderr.decode()[:200])
rc, err = train("--resume", path("c4.ckpt"), "--epochs", 3, "--seed", 5, "-o", path("x.st"))
check("a checkpoint of another --seed is refused (exit 2)", rc == 2 and "seed" in err, err)

# SIGTERM: the step finishes, a checkpoint is written, exit 2; resuming gives the uninterrupted result
E = 40
rc1, e1 = train("--init", MODEL, "--epochs", E, "-o", path("long.st"))
p = subprocess.Popen([tool("clap-train"), "--init", MODEL, "--mel", path("mel.mp"), "--captions", path("caps.tsv"),
                      "--bs", "2", "--lr", "1e-3", "-j", "1", "-q", "--epochs", str(E), "-o", path("sig.st"),
                      "--log", path("sig.tsv")], stderr=subprocess.PIPE, text=True)
t_end = time.time() + 60
while time.time() < t_end and p.poll() is None:
    if os.path.exists(path("sig.tsv")) and len(open(path("sig.tsv")).read().splitlines()) > 5:
        break
    time.sleep(0.02)
p.send_signal(signal.SIGTERM)
err = p.communicate()[1]
rc3, e3 = train("--resume", path("sig.st.ckpt"), "--epochs", E, "-o", path("sig2.st"))
check("SIGTERM: exit 2, a checkpoint (OUT.ckpt) written, no model; resumed: the uninterrupted run's bytes",
      p.returncode == 2 and not os.path.exists(path("sig.st")) and rc1 == rc3 == 0
      and same_tensors(path("long.st"), path("sig2.st")), "%s %s" % (p.returncode, (err + e3)[-300:]))
# ------------------------------------------------------------------ --val: mAP@10 after every epoch, the best kept
rc, err = train("--init", MODEL, "--epochs", 3, "--val", "%s,%s" % (path("mel.mp"), path("caps.tsv")),
                "--log", path("val.tsv"), "-o", path("v.st"))
vals = [float(l.split("\t")[2]) for l in open(path("val.tsv")).read().splitlines() if l.startswith("# epoch")] \
    if rc == 0 else []
ok = rc == 0 and len(vals) == 3 and os.path.exists(path("v.st.best"))
if ok:
    ra = subprocess.run([tool("clap-audio"), "-q", "-m", path("v.st.best"), path("mel.mp")], capture_output=True)
    rt = subprocess.run([tool("clap-text"), "-q", "-m", path("v.st.best")], input="".join(
        "%s\t%s\n" % it for it in items).encode(), capture_output=True)
    A_ = {r["key"]: r["emb"] for r in ws.read_stream(io.BytesIO(ra.stdout))[1]} if ra.returncode == 0 else {}
    T_ = [r["emb"] for r in ws.read_stream(io.BytesIO(rt.stdout))[1]] if rt.returncode == 0 else []
    ok = len(A_) == len(clips) and len(T_) == len(items)
if ok:
    Am = np.stack([A_[k] for k in clips])
    ranks = []
    for i, (k, _) in enumerate(items):
        s_ = Am @ T_[i]
        tgt = clips.index(k)
        ranks.append(1 + int((s_ > s_[tgt]).sum()) + int((s_[:tgt] == s_[tgt]).sum()))
    m10 = float(np.mean([1.0 / r if r <= 10 else 0.0 for r in ranks]))
    ok = abs(m10 - max(vals)) < 1e-6
check("--val: mAP@10 after every epoch; the best epoch's model (OUT.best), through clap-audio and clap-text, "
      "scores the best mAP@10 logged", ok, (vals, err[-200:]))
# ------------------------------------------------------------------ --frames: crop and pad
with open(path("mel64.mp"), "wb") as f:
    ws.write_stream(f, "test", ({"key": k, "mel": mels[k].numpy()[:64]} for k in clips))
base = ["--captions", path("caps.tsv"), "--bs", "4", "--no-shuffle", "-j", "1", "-q", "--epochs", 1, "--init", MODEL]
r1 = subprocess.run([tool("clap-train"), "--mel", path("mel.mp"), "--frames", "64", "--no-augment", "-o", path("f1.st")]
                    + [str(a) for a in base], capture_output=True, text=True)
r2 = subprocess.run([tool("clap-train"), "--mel", path("mel64.mp"), "--no-augment", "-o", path("f2.st")]
                    + [str(a) for a in base], capture_output=True, text=True)
r3 = subprocess.run([tool("clap-train"), "--mel", path("mel.mp"), "--frames", "64", "-o", path("f3.st"), "--seed", "7"]
                    + [str(a) for a in base], capture_output=True, text=True)
r4 = subprocess.run([tool("clap-train"), "--mel", path("mel.mp"), "--frames", "64", "-o", path("f4.st"), "--seed", "7"]
                    + [str(a) for a in base], capture_output=True, text=True)
check("--frames 64 --no-augment trains on the first 64 frames (= the clips cut beforehand); with augmentation the "
      "random crops are the same for the same seed",
      r1.returncode == r2.returncode == r3.returncode == r4.returncode == 0 and same_tensors(path("f1.st"), path("f2.st"))
      and same_tensors(path("f3.st"), path("f4.st")) and not same_tensors(path("f1.st"), path("f3.st")),
      (r1.stderr + r2.stderr + r3.stderr)[-300:])
done()
