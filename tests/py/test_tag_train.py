"""tag-train: CNN14 pretrained on multi-label tags (PANNs' recipe: the
features relu(fc1(CNN14)) -> fc_audioset -> sigmoid, F.binary_cross_entropy;
here fc1 is audio_proj.0, WavCaps' CNN14 having none).

  (1) one step on the bundled tiny CLAP (data/models/clap-test.safetensors,
      101 frames: odd sizes), dropout and SpecAugment off, against PyTorch
      (scripts/claptrainref.py's CNN14 in training mode + the head, float64):
      the loss, every trained tensor's gradient (CNN14, audio_proj.0, the
      head), the weights after the AdamW step, BatchNorm's running statistics;
      audio_proj.2 and the text tower unchanged bit for bit; the validation
      mAP and mean AUC = sklearn's on PyTorch's eval-mode scores;
  (2) learning: a small new CNN14 on 3 synthetic tone classes (multi-label,
      short events over noise), 60 steps without augmentation (SpecAugment's
      published 64-frame stripes would blank these 48-frame clips), reaches
      a validation mAP and mean AUC >= 0.9 (the class prior: 0.5);
  (3) bad input: unknown keys named, exit 3 (model still written); an
      unreadable label file exit 2; usage errors exit 1;
  (4) the output is read by clap-audio (same embeddings as the input model's
      tensors say), clap-text, and clap-train --init; a rerun is bit-identical."""
import io
import json
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

from tap import ROOT, VOCAB, check, done, note, tool
import clapref
import claptrainref as R
import sttools
import wsacstream as ws

torch.set_num_threads(1)
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-tag-train-")
tmp = tmpdir.name
MODEL = os.path.join(ROOT, "data", "models", "clap-test.safetensors")


def path(n):
    return os.path.join(tmp, n)


def run(name, *args):
    r = subprocess.run([tool(name), "-j", "1"] + [str(a) for a in args], capture_output=True, text=True)
    return r.returncode, r.stderr


def rel(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def write_mels(p, mels):
    with open(p, "wb") as f:
        ws.write_stream(f, "test", ({"key": k, "mel": np.ascontiguousarray(v, dtype=np.float32)} for k, v in mels.items()))


# ------------------------------------------------------------------ (1) one step against PyTorch
tensors, meta = sttools.load(MODEL)
sd = {k: torch.from_numpy(v.copy()) for k, v in tensors.items()}
chans = [int(c) for c in meta["clap.audio.channels"].split(",")]
cfg = clapref.Config(n_mels=int(meta["clap.audio.n_mels"]), channels=chans, embed=int(meta["clap.embed_dim"]),
                     hidden=int(meta["clap.text.hidden"]), layers=int(meta["clap.text.layers"]),
                     heads=int(meta["clap.text.heads"]), intermediate=int(meta["clap.text.intermediate"]),
                     vocab=int(meta["clap.text.vocab_size"]))
g = torch.Generator().manual_seed(11)
B, T, K, E = 6, 101, 5, cfg.embed
classes = ["bell", "dog", "rain", "siren", "wind"]  # sorted
mel = torch.randn(B, T, cfg.n_mels, generator=g) * 12 - 45
y = (torch.rand(B, K, generator=g) < 0.4).float()
for i in range(B):
    y[i, i % K] = 1
W0 = torch.randn(K, E, generator=g) * 0.3
b0 = torch.randn(K, generator=g) * 0.1
keys = ["clip%d.wav" % i for i in range(B)]
write_mels(path("m.mp"), {k: mel[i].numpy() for i, k in enumerate(keys)})
with open(path("l.tsv"), "w") as f:
    for i, k in enumerate(keys):
        f.write("%s\t%s\n" % (k, ",".join(classes[j] for j in range(K) if y[i, j] > 0)))
ti = dict(tensors)
ti["tag.fc_audioset.weight"], ti["tag.fc_audioset.bias"] = W0.numpy(), b0.numpy()
mi = dict(meta)
mi["tag.classes"] = json.dumps(classes)
sttools.save(path("init.st"), ti, mi)
LR = 1e-3
# validation clips of several lengths, random labels (AP and AUC checked against sklearn)
NV = 23
vmel = [torch.randn(64 + 7 * i, cfg.n_mels, generator=g) * 12 - 45 for i in range(NV)]
vy = (torch.rand(NV, K, generator=g) < 0.35).float()
for i in range(NV):
    vy[i, (3 * i) % K] = 1
write_mels(path("v.mp"), {"v%d.wav" % i: m.numpy() for i, m in enumerate(vmel)})
with open(path("v.tsv"), "w") as f:
    f.writelines("v%d.wav\t%s\n" % (i, ",".join(classes[j] for j in range(K) if vy[i, j] > 0)) for i in range(NV))
rc, err = run("tag-train", "--init", path("init.st"), "--mel", path("m.mp"), "--labels", path("l.tsv"),
              "-o", path("one.st"), "--bs", B, "--epochs", 1, "--no-augment", "--no-shuffle", "--lr", LR,
              "--save-grads", path("g.st"), "--log", path("one.tsv"), "-q", "--val", path("v.mp") + "," + path("v.tsv"))
check("one step on the test CLAP (exit 0)", rc == 0, err[-400:])


def reference(dt):
    m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).to(dt)
    m.load_published({k: v.to(dt) if v.is_floating_point() else v for k, v in sd.items()})
    m.train()
    head = torch.nn.Linear(E, K).to(dt)
    with torch.no_grad():
        head.weight.copy_(W0.to(dt)), head.bias.copy_(b0.to(dt))
    x = m.audio_encoder.audio_enc(mel.to(dt))
    h = F.relu(m.audio_proj[0](x))  # PANNs: x = F.relu_(self.fc1(x))
    loss = F.binary_cross_entropy(torch.sigmoid(head(h)), y.to(dt))  # losses.py clip_bce
    loss.backward()
    grads = {n: p.grad.double().numpy() for n, p in m.named_parameters() if p.grad is not None}
    grads["tag.fc_audioset.weight"] = head.weight.grad.double().numpy()
    grads["tag.fc_audioset.bias"] = head.bias.grad.double().numpy()
    params = [p for p in m.parameters() if p.grad is not None] + list(head.parameters())
    torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0).step()
    after = {n: p.detach().double().numpy() for n, p in m.named_parameters()}
    after["tag.fc_audioset.weight"] = head.weight.detach().double().numpy()
    after["tag.fc_audioset.bias"] = head.bias.detach().double().numpy()
    bufs = {n: b.double().numpy() for n, b in m.named_buffers() if "running" in n}
    return loss.item(), grads, after, bufs


if rc == 0:
    Lref, gref, aref, bref = reference(torch.float64)
    L32 = reference(torch.float32)[0]
    lc = [float(l.split("\t")[3]) for l in open(path("one.tsv")) if l[0].isdigit()]
    check("the loss: one step logged, within 1e-6 relative of PyTorch's float64 BCE",
          len(lc) == 1 and abs(lc[0] - Lref) <= 1e-6 * abs(Lref), (lc, Lref))
    note("loss %.9f vs PyTorch float64 %.9f (float32 %.9f): relative %.1e" % (lc[0], Lref, L32, abs(lc[0] - Lref) / Lref))
    gc, _ = sttools.load(path("g.st"))
    want = {k for k in gref if not k.startswith(("text_", "audio_proj.2"))}
    check("gradients saved for every trained tensor (CNN14, audio_proj.0, the head; %d), nothing else" % len(want),
          set(gc) == want, sorted(set(gc) ^ want)[:5])
    worst = max(((rel(gc[k], gref[k]), k) for k in want if k in gc), default=(1.0, ""))
    check("every gradient within 1e-4 relative (max |d| / max |ref|) of PyTorch float64", worst[0] <= 1e-4, worst)
    note("gradients vs PyTorch float64: worst %.1e (%s)" % worst)
    to, mo = sttools.load(path("one.st"))
    worst = max(((rel(to[k], aref[k]), k) for k in want), default=(1.0, ""))
    check("the weights after the AdamW step within 1e-4 relative of torch.optim.AdamW's", worst[0] <= 1e-4, worst)
    note("weights after one AdamW step: worst %.1e (%s)" % worst)
    worst = max(((rel(to[k], bref[k]), k) for k in bref), default=(1.0, ""))
    check("BatchNorm running statistics after the step within 1e-5 relative", worst[0] <= 1e-5, worst)
    same = [k for k in tensors if k.startswith(("text_", "audio_proj.2", "tokenizer")) or k in ("temp",)]
    check("audio_proj.2, the text tower and the tokenizer copied bit for bit (%d tensors)" % len(same),
          all(np.array_equal(to[k], tensors[k]) for k in same) and same)
    check("the output holds the head and tag.classes (a JSON list), every input tensor, no more",
          set(to) == set(ti) and to["tag.fc_audioset.weight"].shape == (K, E) and
          json.loads(mo.get("tag.classes", "null")) == classes, sorted(set(to) ^ set(ti))[:4])

# validation: eval mode (running statistics), each clip alone; sklearn's metrics, class by class
if rc == 0:
    from sklearn.metrics import average_precision_score, roc_auc_score
    m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0).double()
    m.load_published({k: torch.from_numpy(v.copy()).double() for k, v in to.items()
                      if not k.startswith("tag.") and v.dtype == np.float32})
    m.eval()
    Wt = torch.from_numpy(to["tag.fc_audioset.weight"].copy()).double()
    bt = torch.from_numpy(to["tag.fc_audioset.bias"].copy()).double()
    with torch.no_grad():
        sc = np.stack([torch.sigmoid(F.relu(m.audio_proj[0](m.audio_encoder.audio_enc(v[None].double()))) @ Wt.T + bt)
                       .numpy()[0] for v in vmel])
    Yv = vy.numpy()
    ap = float(np.mean([average_precision_score(Yv[:, k], sc[:, k]) for k in range(K)]))
    auc = float(np.mean([roc_auc_score(Yv[:, k], sc[:, k]) for k in range(K)]))
    vl = [l.split("\t") for l in open(path("one.tsv")) if l.startswith("# epoch")]
    check("validation mAP and mean AUC = sklearn's on PyTorch's eval-mode scores (1e-5)", len(vl) == 1 and
          abs(float(vl[0][2]) - ap) <= 1e-5 and abs(float(vl[0][4]) - auc) <= 1e-5, (vl, ap, auc))
    note("validation after the step: mAP %s (sklearn %.6f), mean AUC %s (sklearn %.6f)"
         % (vl[0][2] if vl else "?", ap, vl[0][4].strip() if vl else "?", auc))

# ------------------------------------------------------------------ (4) read by the other tools
if rc == 0:
    p = subprocess.run([tool("clap-audio"), "-q", "-m", path("one.st"), path("m.mp")], capture_output=True)
    got = {r["key"]: r["emb"] for r in ws.read_stream(io.BytesIO(p.stdout))[1]} if p.returncode == 0 else {}
    to_t = {k: torch.from_numpy(v.copy()) for k, v in to.items() if not k.startswith("tag.")}
    dev = [rel(got[k], clapref.audio_forward(to_t, mel[i]).numpy()) for i, k in enumerate(keys) if k in got]
    check("clap-audio reads the output (head ignored) and computes the trained tower (clapref, 1e-4 relative)",
          len(dev) == B and max(dev) <= 1e-4, (p.stderr.decode()[-300:], dev))
    with open(path("c.txt"), "w") as f:
        f.write("a\ta dog barks\n")
    p = subprocess.run([tool("clap-text"), "-q", "-m", path("one.st"), path("c.txt")], capture_output=True)
    check("clap-text reads the output", p.returncode == 0 and p.stdout, p.stderr.decode()[-300:])
    with open(path("caps.tsv"), "w") as f:
        f.writelines("%s\ta sound number %d\n" % (k, i) for i, k in enumerate(keys))
    r2, e2 = run("clap-train", "--init", path("one.st"), "--mel", path("m.mp"), "--captions", path("caps.tsv"),
                 "-o", path("ct.st"), "--bs", 6, "--max-steps", 1, "-q")
    check("clap-train --init reads the output", r2 == 0, e2[-300:])
    # determinism: dropout, SpecAugment, crops on; the same run twice
    common = ["--init", MODEL, "--mel", path("m.mp"), "--labels", path("l.tsv"), "--bs", 3, "--epochs", 1,
              "--frames", 90, "-q"]
    ra, ea = run("tag-train", *common, "-o", path("d1.st"))
    rb, eb = run("tag-train", *common, "-o", path("d2.st"))
    check("augmented (dropout, SpecAugment, crops), 2 steps: the same run twice writes the same bytes",
          ra == rb == 0 and open(path("d1.st"), "rb").read() == open(path("d2.st"), "rb").read(), ea + eb)

# ------------------------------------------------------------------ (2) it learns
# 3 classes of tones (two mel bins each) sounding in a short window of the clip
# over a noise background, any non-empty subset a clip; the world's JSONL for
# training, TSV for validation
M, TT = 32, 48
rng = np.random.default_rng(3)
names = ["beep", "buzz", "chirp"]


def clip(labels):
    m = rng.normal(-60, 4, (TT, M)).astype(np.float32)
    for c in labels:
        t0 = rng.integers(0, TT - 10)
        lo = 4 + 9 * c
        m[t0:t0 + 10, lo:lo + 2] += 25
    return m


def subsets(n):
    out = []
    for i in range(n):
        s = [c for c in range(3) if rng.random() < 0.5]
        out.append(s or [int(rng.integers(0, 3))])
    return out


tr, va = subsets(48), subsets(30)
write_mels(path("tr.mp"), {"s%d.wav" % i: clip(s) for i, s in enumerate(tr)})
write_mels(path("va.mp"), {"v%d.wav" % i: clip(s) for i, s in enumerate(va)})
with open(path("tr.jsonl"), "w") as f:
    for i, s in enumerate(tr):
        f.write(json.dumps({"file_name": "s%d.wav" % i, "background": {"cls": names[s[0]]},
                            "events": [{"cls": names[c], "onset": 1.0} for c in s[1:]]}) + "\n")
with open(path("va.tsv"), "w") as f:
    f.writelines("v%d.wav\t%s\n" % (i, ",".join(names[c] for c in s)) for i, s in enumerate(va))
SZ = ["--audio-channels", "8,16,32", "--n-mels", M, "--embed", 32, "--text-layers", 1, "--text-width", 8,
      "--text-heads", 2, "--text-ffn", 8, "--text-max-pos", 16, "--text-max-len", 10]
rc, err = run("clap-train", "--new", "--vocab", VOCAB, *SZ, "--save-init", path("new.st"), "--init-seed", 2)
check("a new small CNN14-BERT (clap-train --new --save-init)", rc == 0, err[-300:])
rc, err = run("tag-train", "--init", path("new.st"), "--mel", path("tr.mp"), "--labels", path("tr.jsonl"),
              "--val", path("va.mp") + "," + path("va.tsv"), "-o", path("learn.st"), "--bs", 16, "--epochs", 20,
              "--no-augment", "--log", path("learn.tsv"))
check("20 epochs of 3 batches, --no-augment (exit 0)", rc == 0, err[-400:])
maps = [float(l.split("\t")[2]) for l in open(path("learn.tsv")) if l.startswith("# epoch")] if rc == 0 else [0.0]
aucs = [float(l.split("\t")[4]) for l in open(path("learn.tsv")) if l.startswith("# epoch")] if rc == 0 else [0.0]
Y = np.array([[c in s for c in range(3)] for s in va], dtype=np.float64)
prior = float(Y.mean())  # a random ranking's mAP, about
check("it learns: validation mAP ends >= 0.9 (class prior %.3f)" % prior, maps[-1] >= 0.9, maps)
check("it learns: mean AUC ends >= 0.9", aucs[-1] >= 0.9, aucs)
note("learning: val mAP %.3f after epoch 1, %.3f after epoch %d (prior %.3f); mean AUC %.3f -> %.3f"
     % (maps[0], maps[-1], len(maps), prior, aucs[0], aucs[-1]))
check("the summary line names the steps, validation figures and the output",
      "60 steps" in err and "validation mAP" in err and "model written to" in err, err[-300:])
mo = sttools.load(path("learn.st"))[1] if rc == 0 else {}
check("tag.classes: the sorted set of the training labels", json.loads(mo.get("tag.classes", "null")) == names,
      mo.get("tag.classes"))

# ------------------------------------------------------------------ (3) bad input
with open(path("bad.tsv"), "w") as f:
    for i, k in enumerate(keys[:-1]):  # the last clip has no labels
        f.write("%s\t%s\n" % (k, classes[i % K]))
    f.write("ghost.wav\tdog\n")  # no audio
rc, err = run("tag-train", "--init", MODEL, "--mel", path("m.mp"), "--labels", path("bad.tsv"), "-o", path("b.st"),
              "--bs", 2, "--epochs", 1, "--no-augment", "-q")
check("a clip without labels and a label key without audio: both named, exit 3, the model still written",
      rc == 3 and keys[-1] in err and "ghost.wav" in err and os.path.exists(path("b.st")), (rc, err[-400:]))
# --classes: a label outside the list named and ignored (exit 3); the list, sorted, is the head's
with open(path("cls.txt"), "w") as f:
    f.write("# the head's classes\nwind\nbell\ndog\nrain\nsiren\nzebra\n")
with open(path("l4.tsv"), "w") as f:
    f.writelines("%s\t%s,yak\n" % (k, classes[i % K]) for i, k in enumerate(keys))
rc, err = run("tag-train", "--init", MODEL, "--mel", path("m.mp"), "--labels", path("l4.tsv"), "--classes",
              path("cls.txt"), "-o", path("c4.st"), "--bs", 3, "--epochs", 1, "--no-augment", "-q",
              "--val", path("m.mp"))
mo = sttools.load(path("c4.st"))[1] if os.path.exists(path("c4.st")) else {}
check("--classes: a label outside the list ('yak') named, exit 3; tag.classes the sorted list (6 classes)",
      rc == 3 and "'yak'" in err and json.loads(mo.get("tag.classes", "null")) ==
      ["bell", "dog", "rain", "siren", "wind", "zebra"], (rc, err[-300:]))
rc, err = run("tag-train", "--init", MODEL, "--mel", path("m.mp"), "--labels", path("nonexistent.tsv"),
              "-o", path("x.st"))
check("an unreadable label file: named, exit 2, no output", rc == 2 and "nonexistent.tsv" in err and
      not os.path.exists(path("x.st")), (rc, err[-300:]))
for args, what in ((["--mel", path("m.mp"), "--labels", path("l.tsv"), "-o", path("x.st")], "--init"),
                   (["--init", MODEL, "--labels", path("l.tsv"), "-o", path("x.st")], "--mel"),
                   (["--init", MODEL, "--mel", path("m.mp"), "-o", path("x.st")], "--labels"),
                   (["--init", MODEL, "--mel", path("m.mp"), "--labels", path("l.tsv")], "-o"),
                   (["--init", MODEL, "--mel", path("m.mp"), "--labels", path("l.tsv"), "-o", path("x.st"),
                     "--bs", 0], "--bs"),
                   (["--init", MODEL, "--mel", path("m.mp"), "--labels", path("l.tsv"), "-o", path("x.st"),
                     "--bogus"], "--bogus")):
    rc, err = run("tag-train", *args)
    check("usage error (exit 1, names %s)" % what, rc == 1 and what in err and not os.path.exists(path("x.st")),
          (rc, err[-300:]))
done()
