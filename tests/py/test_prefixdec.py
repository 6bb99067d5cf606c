"""prefixdec against the PyTorch reference (scripts/decref.py) on small random
models: converter, forward logits, one training step (loss, gradients, AdamW
update), a 20-step loss curve, greedy decoding against the published loop,
beam search, vocabulary masking, checkpoints (atomic under SIGKILL, exact
resumption), bad input."""
import glob
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

from tap import ROOT, DATA, check, done, note, tool, VALGRIND
import decref
import sttools
import wsacstream as ws

torch.set_num_threads(1)
tmp = tempfile.mkdtemp(prefix="wsac-prefixdec-")
PD = tool("prefixdec")
TESTGPT = os.path.join(os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build")), "tests", "test_gpt")
CONVERT = os.path.join(ROOT, "scripts", "convert.py")
VOCAB = decref.load_vocab(os.path.join(ROOT, "data", "bert-base-uncased-vocab.txt"))
cfg = decref.Config.tiny()
rng = np.random.default_rng(4)


def path(name):
    return os.path.join(tmp, name)


def run(*args, stdin=None, timeout=300):
    p = subprocess.run([PD] + [str(a) for a in args], input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def convert(sd, name, *extra):
    torch.save(sd, path(name + ".pt"))
    p = subprocess.run([sys.executable, CONVERT, "decoder", path(name + ".pt"), "-o", path(name)] + list(extra),
                       capture_output=True)
    return p.returncode, p.stderr.decode()


def captions(n, start=0):
    """Clotho captions with their WordPiece ids (tokenizer fixtures)."""
    out = []
    with open(os.path.join(DATA, "wordpiece-dev", "clotho-dev-caption1-2000.jsonl")) as f:
        for i, line in enumerate(f):
            if i >= start:
                out.append(json.loads(line))
            if len(out) == n:
                break
    return out


def unit(x):
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def write(name, records):
    with open(path(name), "wb") as f:
        ws.write_stream(f, "clap-text", records)
    return path(name)


def text_stream(name, caps, emb):
    return write(name, [{"key": "c%d" % i, "emb": emb[i], "text": c["text"]} for i, c in enumerate(caps)])


def load_ckpt(name):
    t, meta = sttools.load(name)
    return {k: torch.from_numpy(v.copy()) for k, v in t.items()}, meta


# ------------------------------------------------------------------ converter
sd = decref.random_state_dict(cfg, seed=3, std=0.1)
rc, err = convert(sd, "tiny.st")
t, meta = sttools.load(path("tiny.st"))
check("convert decoder: published layout (attn.bias, masked_bias, tied lm_head) converts", rc == 0, err)
check("convert decoder: causal-mask buffers and lm_head left out, names kept",
      not any(k.endswith((".attn.bias", ".attn.masked_bias")) for k in t) and "decoder.lm_head.weight" not in t
      and set(t) == set(decref.param_names(cfg)) | {"tokenizer.vocab"}, sorted(t)[:5])
check("convert decoder: metadata (model, layers, heads, eps, activation, vocab size)",
      meta.get("wsac.model") == "decoder" and meta.get("decoder.layers") == "2" and meta.get("decoder.heads") == "4"
      and meta.get("decoder.ln_eps") == "1e-05" and meta.get("decoder.activation") == "gelu_new"
      and meta.get("decoder.vocab_size") == "30522", meta)
check("convert decoder: Conv1D weights stay [in, out] as published",
      t["decoder.transformer.h.0.attn.c_attn.weight"].shape == (48, 144)
      and np.array_equal(t["decoder.transformer.h.0.mlp.c_fc.weight"], sd["decoder.transformer.h.0.mlp.c_fc.weight"].numpy()))
check("convert decoder: the bundled BERT vocabulary is the default",
      bytes(t["tokenizer.vocab"]) == open(os.path.join(ROOT, "data", "bert-base-uncased-vocab.txt"), "rb").read())
bad = dict(sd)
bad["decoder.lm_head.weight"] = sd["decoder.transformer.wte.weight"] + 1
rc, err = convert(bad, "bad1.st")
check("convert decoder: an untied lm_head is refused", rc == 2 and "untied" in err, err)
bad = dict(sd)
bad["decoder.transformer.h.0.attn.extra"] = torch.zeros(3)
rc, err = convert(bad, "bad2.st")
check("convert decoder: an unknown key is refused, named", rc == 2 and "h.0.attn.extra" in err, err)
bad = {k: v for k, v in sd.items() if k != "decoder.transformer.ln_f.bias"}
rc, err = convert(bad, "bad3.st")
check("convert decoder: a missing key is refused, named", rc == 2 and "ln_f.bias" in err, err)
torch.save({"model": sd}, path("wrapped.pt"))
p = subprocess.run([sys.executable, CONVERT, "decoder", path("wrapped.pt"), "-o", path("wrapped.st")], capture_output=True)
tw = sttools.load(path("wrapped.st"))[0] if p.returncode == 0 else {}
check("convert decoder: a state_dict under 'model' converts too",
      p.returncode == 0 and set(tw) == set(t) and all(np.array_equal(tw[k], t[k]) for k in t))
rc, err = convert(sd, "h5.st", "--heads", "5")
check("convert decoder: --heads must divide the width", rc == 2 and "--heads 5" in err, err)

P = decref.params(sd, cfg)

# ------------------------------------------------------------------ forward logits
B, S = 6, 22
caps = captions(B)
emb = unit(rng.standard_normal((B, cfg.prefix)))
tok = decref.targets([c["ids"] for c in caps], S)
sttools.save(path("batch.st"), {"emb": emb, "tokens": tok.numpy().astype(np.int32)})
p = subprocess.run([TESTGPT, "logits", path("tiny.st"), path("batch.st"), path("logits.st")], capture_output=True)
got = torch.from_numpy(sttools.load(path("logits.st"))[0]["logits"].copy()).view(B, S + 1, -1)
with torch.no_grad():
    want = decref.forward(P, cfg, emb, tok)
d = float((got - want).abs().max())
check("forward: logits of every position within 1e-4 of PyTorch", p.returncode == 0 and d < 1e-4, "max %g" % d)
note("forward logits: max |C - torch| = %.2e (tiny model, %d x %d positions, vocab %d)" % (d, B, S + 1, cfg.vocab))

# ------------------------------------------------------------------ one training step: loss and gradients
B = 16
caps = captions(B, 10)
caps[3] = {"text": "a " * 40, "ids": [1037] * 40}  # longer than max-seq-len: cut, loses [SEP]
emb = unit(rng.standard_normal((B, cfg.prefix)))
tok = decref.targets([c["ids"] for c in caps], S)
sttools.save(path("batch16.st"), {"emb": emb, "tokens": tok.numpy().astype(np.int32)})
p = subprocess.run([TESTGPT, "grads", path("tiny.st"), path("batch16.st"), path("grads.st")], capture_output=True)
g, _ = load_ckpt(path("grads.st"))
Pg = decref.params(sd, cfg, requires_grad=True)
loss = decref.loss_fn(Pg, cfg, torch.from_numpy(emb), tok)
loss.backward()
rel = abs(float(g["loss"][0]) - loss.item()) / loss.item()
check("one step: loss within 1e-5 relative", p.returncode == 0 and rel < 1e-5, "C %r torch %r" % (float(g["loss"][0]), loss.item()))
worst, wname = 0.0, ""
for k in decref.param_names(cfg):
    e = float((g[k] - Pg[k].grad).norm() / Pg[k].grad.norm())
    if e > worst:
        worst, wname = e, k
check("one step: every parameter's gradient within 1e-4 (|diff| / |grad|)", worst < 1e-4, "%g in %s" % (worst, wname))
note("one step: loss rel. error %.1e; worst gradient rel. error %.1e (%s)" % (rel, worst, wname))

# the same step through `prefixdec train`: weights after the AdamW update
s16 = text_stream("train16.mp", caps, emb)
rc, out, err = run("train", s16, "--init", path("tiny.st"), "-o", path("step1.st"), "--epochs", 1, "--bs", B,
                   "--shuffle", "none", "--noise", 0, "--dropout", 0, "--warmup", 0, "--lr", "1e-3", "--wd", "0.02",
                   "-j", 1, "-q")
check("train: one step runs (the long caption is counted, exit 0)", rc == 0, err)
c1, meta1 = load_ckpt(path("step1.st"))
Pt = decref.params(sd, cfg, requires_grad=True)
losses = decref.train(Pt, cfg, [(emb, tok)], lr=1e-3, wd=0.02, warmup=0, total_steps=1)
worst = max(float((c1[k] - Pt[k].detach()).abs().max()) for k in decref.param_names(cfg))
moved = max(float((c1[k] - P[k]).abs().max()) for k in decref.param_names(cfg))
check("one step: weights after AdamW within 1e-6 of transformers.AdamW", worst < 1e-6 and moved > 5e-4,
      "max diff %g (update %g)" % (worst, moved))
note("one step: weights after AdamW: max |C - torch| = %.1e (max update %.1e)" % (worst, moved))
check("checkpoint: AdamW moments saved under train.exp_avg*/ names, position and RNG in metadata",
      "train.exp_avg.decoder.transformer.wte.weight" in c1 and meta1.get("train.step") == "1"
      and meta1.get("train.epoch") == "1" and len(meta1.get("train.rng", "")) == 64, sorted(meta1))

# ------------------------------------------------------------------ 20 steps: the loss curve
B20, n20 = 8, 80
caps20 = captions(n20, 100)
emb20 = unit(rng.standard_normal((n20, cfg.prefix)))
tok20 = decref.targets([c["ids"] for c in caps20], S)
s20 = text_stream("train80.mp", caps20, emb20)
rc, out, err = run("train", s20, "--init", path("tiny.st"), "-o", path("step20.st"), "--epochs", 2, "--bs", B20,
                   "--shuffle", "none", "--noise", 0, "--dropout", 0, "--warmup", 5, "--lr", "3e-3", "--wd", "0.02",
                   "--log", path("log20.tsv"), "-j", 2, "-q")
rows = [l.split("\t") for l in open(path("log20.tsv")).read().splitlines()[1:]] if rc == 0 else []
cl = [float(r[3]) for r in rows]
batches = [(emb20[i:i + B20], tok20[i:i + B20]) for e in range(2) for i in range(0, n20, B20)]
Pt = decref.params(sd, cfg, requires_grad=True)
tl = decref.train(Pt, cfg, batches, lr=3e-3, wd=0.02, warmup=5, total_steps=20)
dev = max(abs(a - b) / b for a, b in zip(cl, tl)) if len(cl) == 20 else 1
check("20 steps: the loss curve within 1e-3 (relative) of PyTorch", rc == 0 and dev < 1e-3,
      "%s vs %s" % (cl[:3], tl[:3]))
note("20 steps: loss %.4f -> %.4f (torch %.4f -> %.4f), max relative deviation %.1e"
     % (cl[0] if cl else 0, cl[-1] if cl else 0, tl[0], tl[-1], dev))
c20, _ = load_ckpt(path("step20.st"))
worst = max(float((c20[k] - Pt[k].detach()).abs().max()) for k in decref.param_names(cfg))
check("20 steps: weights within 1e-4 of PyTorch", worst < 1e-4, worst)

# validation loss: the token-weighted mean over the --val stream, no dropout or noise
rc, out, err = run("train", s16, "--init", path("tiny.st"), "-o", path("val.st"), "--epochs", 1, "--bs", B,
                   "--val", s20, "--lr", "1e-3", "--warmup", 0, "-j", 2)
cv, mv = load_ckpt(path("val.st")) if rc == 0 else ({}, {})
Pv = {k: cv[k] for k in decref.param_names(cfg)} if cv else {}
with torch.no_grad():
    want_val = decref.loss_fn(Pv, cfg, torch.from_numpy(emb20), tok20).item() if cv else 0
got_val = float(mv.get("train.val_loss", "nan"))
check("--val: the validation loss (printed, and in the checkpoint) is PyTorch's loss over the whole set",
      rc == 0 and abs(got_val - want_val) < 1e-5 * want_val and ("val loss %.4f" % want_val) in err,
      "%r vs %r: %s" % (got_val, want_val, err[-300:]))

# --gap with --noise 0: normalise(normalise(x) + gap), checked against the same step in PyTorch
gap = (0.3 * rng.standard_normal(cfg.prefix)).astype(np.float32)
write("gap.mp", [{"key": "gap", "emb": gap}])
rc, out, err = run("train", s16, "--init", path("tiny.st"), "-o", path("gap1.st"), "--epochs", 1, "--bs", B,
                   "--shuffle", "none", "--noise", 0, "--dropout", 0, "--gap", path("gap.mp"), "--warmup", 0, "--lr", "1e-3",
                   "-j", 1, "-q")
cg, _ = load_ckpt(path("gap1.st")) if rc == 0 else ({}, {})
xg = torch.nn.functional.normalize(torch.nn.functional.normalize(torch.from_numpy(emb), dim=1) + torch.from_numpy(gap), dim=1)
Pt = decref.params(sd, cfg, requires_grad=True)
decref.train(Pt, cfg, [(xg.numpy(), tok)], lr=1e-3, wd=0.02, warmup=0, total_steps=1)
worst = max(float((cg[k] - Pt[k].detach()).abs().max()) for k in decref.param_names(cfg)) if cg else 1
check("--gap with --noise 0: the shift applies (normalise, add, normalise), as the PyTorch step", worst < 1e-6, worst)

# ------------------------------------------------------------------ greedy decoding
ND = 24
embd = unit(rng.standard_normal((ND, cfg.prefix)))
write("dec.mp", [{"key": "k%d" % i, "emb": embd[i]} for i in range(ND)])
rc, out, err = run("decode", "-m", path("tiny.st"), "--ids", path("dec.mp"), "-j", 1)
got = {l.split("\t")[0]: [int(x) for x in l.split("\t")[1].split()] for l in out.splitlines()}
want = {"k%d" % i: decref.published_greedy(P, cfg, embd[i]) for i in range(ND)}
check("greedy: ids identical to the published uncached loop (%d prefixes)" % ND, rc == 0 and got == want,
      [(k, got.get(k), want[k]) for k in want if got.get(k) != want[k]][:2])
rc, out2, err = run("decode", "-m", path("tiny.st"), path("dec.mp"), "-j", 1)
caps_c = dict(l.split("\t", 1) for l in out2.splitlines())
caps_w = {k: decref.bert_decode(VOCAB, v[1:-1]) for k, v in want.items()}
check("greedy: captions are tokenizer.decode(tokens[1:-1]) as published", caps_c == caps_w,
      [(k, caps_c.get(k), caps_w[k]) for k in caps_w if caps_c.get(k) != caps_w[k]][:2])
check("decode: summary line, exit 0", rc == 0 and "prefixdec: %d records written, 0 failed" % ND in err, err)
rc, out3, _ = run("decode", "-m", path("tiny.st"), "--ids", "--batch", 1, path("dec.mp"), "-j", 2)
check("decode: --batch 1 and 2 threads give the same ids as --batch 64 on 1 thread", rc == 0 and out3 == out, "")
rc, out4, _ = run("decode", "-m", path("tiny.st"), "--ids", "--max-len", 4, path("dec.mp"), "-j", 1)
check("decode: --max-len caps the generated ids",
      rc == 0 and all(v == want[k][:4] for k, v in ((l.split("\t")[0], [int(x) for x in l.split("\t")[1].split()]) for l in out4.splitlines())))

# a model that stops: boost [SEP] so captions end before the limit
sds = decref.random_state_dict(cfg, seed=5, std=0.1)
sds["decoder.transformer.wte.weight"][102] *= 6
rc, _ = convert(sds, "stop.st")
Ps = decref.params(sds, cfg)
rc, out, err = run("decode", "-m", path("stop.st"), "--ids", path("dec.mp"), "-j", 1)
got = {l.split("\t")[0]: [int(x) for x in l.split("\t")[1].split()] for l in out.splitlines()}
want = {"k%d" % i: decref.published_greedy(Ps, cfg, embd[i]) for i in range(ND)}
stops = sum(v[-1] == 102 for v in want.values())
check("greedy: a model that emits [SEP] stops like the published loop (%d of %d stop early)" % (stops, ND),
      got == want and 0 < stops, "")
rc, out, err = run("decode", "-m", path("stop.st"), path("dec.mp"), "-j", 1)
caps_c = dict(l.split("\t", 1) for l in out.splitlines())
check("greedy: captions of stopped sequences drop [CLS] and [SEP]",
      caps_c == {k: decref.bert_decode(VOCAB, v[1:-1]) for k, v in want.items()}, "")

# beam search against the Python transcription of the documented algorithm
for K in (1, 3):
    rc, out, err = run("decode", "-m", path("stop.st"), "--ids", "--beam", K, "--max-len", 12, path("dec.mp"), "-j", 2)
    got = {l.split("\t")[0]: [int(x) for x in l.split("\t")[1].split()] for l in out.splitlines()}
    wantb = {"k%d" % i: decref.beam_search(Ps, cfg, embd[i], K, entry_length=12) for i in range(8)}
    check("beam %d: ids equal decref.beam_search (length-normalised)" % K,
          rc == 0 and all(got.get(k) == v for k, v in wantb.items()),
          [(k, got.get(k), v) for k, v in wantb.items() if got.get(k) != v][:2])
rc, outg, _ = run("decode", "-m", path("stop.st"), "--ids", "--max-len", 12, path("dec.mp"), "-j", 1)
rc, outb, _ = run("decode", "-m", path("stop.st"), "--ids", "--beam", 1, "--max-len", 12, path("dec.mp"), "-j", 1)
check("beam 1 is greedy", outg == outb and outg)

# vocabulary masking: a 30600-row model whose extra rows would win the argmax
cfgv = decref.Config.tiny(vocab=30600)
sdv = decref.random_state_dict(cfgv, seed=8, std=0.1, unused_scale=30.0)
rc, err = convert(sdv, "v30600.st")
Pv = decref.params(sdv, cfgv)
rc, out, err = run("decode", "-m", path("v30600.st"), "--ids", path("dec.mp"), "-j", 1)
got = {l.split("\t")[0]: [int(x) for x in l.split("\t")[1].split()] for l in out.splitlines()}
pub = [decref.published_greedy(Pv, cfgv, embd[i]) for i in range(6)]
masked = decref.cached_greedy(Pv, cfgv, embd[:6], known=30522)
check("vocab 30600: the unmasked published loop would emit ids >= 30522 here", any(max(v) >= 30522 for v in pub))
check("vocab 30600: ids >= 30522 are never emitted; the masked greedy ids match",
      rc == 0 and all(got["k%d" % i] == masked[i] for i in range(6)) and max(max(v) for v in got.values()) < 30522,
      err)

# ------------------------------------------------------------------ bad input
Bb = 8
capsb = captions(Bb, 300)
embb = unit(rng.standard_normal((Bb + 3, cfg.prefix)))
recs = [{"key": "c%d" % i, "emb": embb[i], "text": c["text"]} for i, c in enumerate(capsb)]
recs.append({"key": "long", "emb": embb[8], "text": "the " * 30})
recs.append({"key": "empty", "emb": embb[9], "text": "   "})
nan = embb[10].copy()
nan[5] = np.nan
recs.append({"key": "nan", "emb": nan, "text": "a dog barks"})
recs.append({"key": "notext", "emb": embb[10]})
sb = write("bad.mp", recs)
rc, out, err = run("train", sb, "--init", path("tiny.st"), "-o", path("bad.st"), "--epochs", 1, "--bs", 4, "-j", 1)
check("train: empty caption, NaN embedding and missing text are named and skipped (exit 3)",
      rc == 3 and "key 'empty': empty caption" in err and "key 'nan': \"emb\" has NaN" in err
      and "key 'notext': no \"text\"" in err, err)
ntrunc = sum(len(c["ids"]) + 2 > 22 for c in capsb) + 1
check("train: captions longer than --max-seq-len are counted as truncated", "%d truncated to 22 tokens" % ntrunc in err, err)
recs_w = [dict(r) for r in recs[:8]]
recs_w[5]["emb"] = np.zeros(cfg.prefix + 3, np.float32)
rc, out, err = run("train", write("width.mp", recs_w), "--init", path("tiny.st"), "-o", path("w.st"), "--epochs", 1, "--bs", 4)
check("train: a wrong embedding width is fatal with a clear message (exit 2)",
      rc == 2 and "key 'c5': \"emb\" has 27 values but the model takes 24" in err and not os.path.exists(path("w.st")), err)
rc, out, err = run("decode", "-m", path("tiny.st"), write("dbad.mp", [{"key": "a", "emb": embd[0]}, {"key": "n", "emb": nan}]))
check("decode: a NaN embedding is named, the rest decoded (exit 3)",
      rc == 3 and out.startswith("a\t") and "key 'n'" in err and "1 record written, 1 failed" in err, err)
rc, out, err = run("decode", "-m", path("tiny.st"), write("dw.mp", [{"key": "a", "emb": np.zeros(7, np.float32)}]))
check("decode: a wrong embedding width is fatal (exit 2)", rc == 2 and "has 7 values but the model takes 24" in err, err)
rc, out, err = run("decode", "-m", path("tiny.st"), "--max-len", 100, path("dec.mp"))
check("decode: --max-len beyond the model's positions is a usage error", rc == 1 and "40 positions" in err, err)
rc, out, err = run("train", s16, "-o", path("x.st"), "--resume", path("step1.st"), "--lr", "1")
check("train: --resume with a training option is a usage error", rc == 1 and "--lr" in err, err)
rc, out, err = run("decode", "-m", path("tiny.pt"))
check("decode: a file that is not safetensors is fatal (exit 2)", rc == 2 and "prefixdec: error:" in err, err)

# ------------------------------------------------------------------ resume, determinism, signals
common = ["--init", path("tiny.st"), "--bs", 8, "--noise", "0.01", "--seed", 11, "--warmup", 3, "--lr", "2e-3", "-j", 2, "-q"]
rc, _, err = run("train", s20, "-o", path("full.st"), "--epochs", 5, *common)
rc2, _, err2 = run("train", s20, "-o", path("full2.st"), "--epochs", 5, *common)
cf, mf = load_ckpt(path("full.st"))
cf2, _ = load_ckpt(path("full2.st"))
check("determinism: two runs with the same seed and threads give identical checkpoints",
      rc == 0 and rc2 == 0 and all(torch.equal(cf[k], cf2[k]) for k in cf), err + err2)
rc, _, err = run("train", s20, "-o", path("seed12.st"), "--epochs", 5, *(common[:7] + [12] + common[8:]))
cs, _ = load_ckpt(path("seed12.st"))
check("--seed changes shuffling and noise", not torch.equal(cs["decoder.transformer.wte.weight"], cf["decoder.transformer.wte.weight"]))
# resume needs the same options: make a 1-epoch checkpoint by stopping after epoch 1 with SIGTERM
p = subprocess.Popen([str(a) for a in [PD, "train", s20, "-o", path("sig.st"), "--epochs", 5, "--log", path("sig.tsv")]
                     + common], stderr=subprocess.PIPE)
t0 = time.time()
while time.time() - t0 < 60:
    if os.path.exists(path("sig.tsv")) and len(open(path("sig.tsv")).read().splitlines()) >= 4:
        break
    time.sleep(0.005)
p.send_signal(signal.SIGTERM)
_, e = p.communicate()
_, msig = sttools.load(path("sig.st"))
open(path("sigmid.st"), "wb").write(open(path("sig.st"), "rb").read())
stopped_mid = msig.get("train.batch") not in (None, "0")
rc, _, err = run("train", s20, "--resume", path("sig.st"), "-j", 2, "-q")
cr, mr = load_ckpt(path("sig.st"))
check("SIGTERM mid-run: a checkpoint is written at the current step (exit 2), --resume finishes the run",
      p.returncode == 2 and rc == 0 and mr.get("train.epoch") == "5", e.decode() + err)
check("resume: the resumed run ends bit-identical to the uninterrupted one (moments and weights)",
      all(torch.equal(cr[k], cf[k]) for k in cf), "stopped at epoch %s batch %s" % (msig.get("train.epoch"), msig.get("train.batch")))
note("SIGTERM stopped the run at epoch %s, batch %s (mid-epoch: %s)" % (msig.get("train.epoch"), msig.get("train.batch"), stopped_mid))
rc, _, err = run("train", write("other.mp", [{"key": "z%d" % i, "emb": emb20[i], "text": c["text"]} for i, c in enumerate(caps20)]),
                 "--resume", path("sigmid.st"), "-j", 1)
check("resume: other training data are refused", rc == 2 and "differ from those of the run being resumed" in err, "rc=%s %s" % (rc, err))

# SIGKILL at any moment: the checkpoint always loads. Nothing here depends on
# the machine's speed: each run is killed only once it has written a checkpoint
# of its own (phase 1: then at a random moment within about one checkpoint
# period, measured), or while it is frozen (SIGSTOP) with its temporary file
# open, before the rename (phase 2: a kill in the middle of a write, proven).
many = text_stream("many.mp", captions(8, 500), unit(rng.standard_normal((8, cfg.prefix))))
ck = path("kill.st")
r = random.Random(1)
WAIT = 600  # seconds a run may take to reach a checkpoint: a hang, not slowness


def ident(f):
    try:
        st = os.stat(f)
        return (st.st_ino, st.st_mtime_ns)
    except FileNotFoundError:
        return None


def start():
    return subprocess.Popen([PD, "train", many, "--init", path("tiny.st"), "-o", ck, "--epochs", "100000", "--bs", "8",
                             "-j", "1", "-q"], stderr=subprocess.DEVNULL)


def wait_new_checkpoint(p, before):
    """until the run replaces the checkpoint; (seconds taken, ok)"""
    t0 = time.monotonic()
    while time.monotonic() - t0 < WAIT and p.poll() is None:
        if ident(ck) not in (None, before):
            return time.monotonic() - t0, True
        time.sleep(0.002)
    return time.monotonic() - t0, False


def loads_ok():
    rc, out, err = run("decode", "-m", ck, "--ids", "--max-len", 3, path("dec.mp"), "-j", 1)
    try:
        _, m = sttools.load(ck)
        return rc == 0 and int(m["train.step"]) > 0
    except Exception:
        return False


kills, loads, waited_out = 0, 0, 0
for k in range(5):
    p = start()
    first, ok1 = wait_new_checkpoint(p, ident(ck))
    period, ok2 = wait_new_checkpoint(p, ident(ck))  # one checkpoint period on this machine, now
    time.sleep(r.random() * 1.5 * period)
    p.kill()
    p.wait()
    waited_out += not (ok1 and ok2)
    for t in glob.glob(ck + ".tmp*"):
        os.unlink(t)
    kills += 1
    loads += loads_ok()
check("SIGKILL at random moments after a run's first checkpoints (%d kills): the checkpoint always loads" % kills,
      loads == kills and waited_out == 0, "%d of %d loaded, %d runs wrote no checkpoint in %d s" % (loads, kills, waited_out, WAIT))

mid, tries, loads = 0, 0, 0
t0 = time.monotonic()
while mid < 4 and time.monotonic() - t0 < WAIT:
    p = start()
    tmpf = "%s.tmp.%d" % (ck, p.pid)  # lib/util.c atomic_open: PATH.tmp.PID
    caught = False
    while p.poll() is None and not caught and time.monotonic() - t0 < WAIT:
        if os.path.exists(tmpf):
            p.send_signal(signal.SIGSTOP)
            if os.path.exists(tmpf):  # frozen before its rename: a kill now cuts the write
                caught = True
            else:
                p.send_signal(signal.SIGCONT)
    p.kill()
    p.wait()
    tries += 1
    if caught:
        mid += 1
        left = os.path.exists(tmpf)
        loads += loads_ok() and left
    for t in glob.glob(ck + ".tmp*"):
        os.unlink(t)
check("SIGKILL in the middle of a checkpoint write (%d kills, frozen with the temporary file open): the previous "
      "checkpoint always loads and the partial file is only ever the temporary" % mid,
      mid >= 4 and loads == mid, "%d mid-write kills in %d runs, %d loaded" % (mid, tries, loads))

# ------------------------------------------------------------------ a fresh model; valgrind
rc, out, err = run("train", s20, "-o", path("fresh.st"), "--epochs", 1, "--bs", 16, "--layers", 1, "--heads", 2,
                   "--width", 32, "--positions", 24, "-j", 2)
_, mfresh = sttools.load(path("fresh.st")) if rc == 0 else (None, {})
check("train without --init: a new model (its vocab built in, prefix width from the data)",
      rc == 0 and mfresh.get("decoder.vocab_size") == "30522" and mfresh.get("decoder.layers") == "1", err)
rc, out, err = run("decode", "-m", path("fresh.st"), path("dec.mp"), "-j", 1, "-q")
check("a trained checkpoint decodes", rc == 0 and len(out.splitlines()) == ND, err)
if VALGRIND:
    vg = ["valgrind", "--error-exitcode=9", "--leak-check=full", "--errors-for-leak-kinds=definite", "-q"]
    two = write("two.mp", [{"key": "k%d" % i, "emb": embd[i]} for i in range(2)])
    p1 = subprocess.run(vg + [PD, "decode", "-m", path("stop.st"), "--beam", "2", "--max-len", "6", two, "-j", "2",
                              "-q"], capture_output=True)
    p2 = subprocess.run(vg + [PD, "train", s16, "-o", path("vg.st"), "--epochs", "1", "--bs", "8", "--layers", "1",
                              "--width", "16", "--heads", "2", "--positions", "24", "-j", "2", "-q"],
                        capture_output=True)
    check("valgrind: decode (beam) and train run clean", p1.returncode == 0 and p2.returncode == 0,
          (p1.stderr + p2.stderr).decode()[-600:])
done()
