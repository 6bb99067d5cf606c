"""clap-train --new: a new CNN14-BERT model from sizes given on the command
line (lib/clap_init.c), on small odd sizes:

  the file has the published names and shapes (clapref's state_dict, and
  convert.py clap's view of the same tensors), the tokenizer and metadata as
  convert.py clap writes them; clap-audio and clap-text read it and agree
  with the PyTorch reference (clapref) on its weights; the same seed gives
  the same bytes, --seed is the default --init-seed, another seed other
  weights, and a tensor does not depend on the other sizes; the
  initialisation's statistics are the published modules' (xavier_uniform_
  convolutions, BERT normal(0, 0.02), nn.Linear projections, BatchNorm and
  LayerNorm 1/0, zero biases, the [PAD] row), checked against the formulas
  and torch's own initialisers on the same shapes; trained 300 steps on a
  tiny synthetic task (32 clips, 64 captions) it learns: the loss falls to
  under half its start and text-to-audio mAP@10 on the training set rises
  far above chance (what it must achieve, not exact figures); models of
  another architecture (SALSA PaSST-RoBERTa) or without a tower are refused
  by name, exit 2; bad sizes and option mixes are usage errors, exit 1."""
import dataclasses
import filecmp
import io
import os
import subprocess
import tempfile

import numpy as np
import torch

from tap import DATA, ROOT, VOCAB, check, done, note, tool
import clapref
import convert
import sttools
import toytask
import wsacstream as ws
from ref_wordpiece import BertTokenizerRef

torch.set_num_threads(1)
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-clap-train-new-")
tmp = tmpdir.name


def path(n):
    return os.path.join(tmp, n)


def train(*args):
    r = subprocess.run([tool("clap-train"), "-j", "1"] + [str(a) for a in args], capture_output=True, text=True)
    return r.returncode, r.stderr


# odd sizes on purpose
SIZES = ["--audio-channels", "5,8,12", "--n-mels", "19", "--embed", "24", "--text-layers", "2", "--text-width", "20",
         "--text-heads", "4", "--text-ffn", "36", "--text-max-pos", "40", "--text-max-len", "24"]
cfg = clapref.Config(n_mels=19, channels=[5, 8, 12], embed=24, vocab=30522, hidden=20, layers=2, heads=4,
                     intermediate=36, positions=40)


def new(out, *args):
    return train("--new", "--vocab", VOCAB, "--save-init", out, *(SIZES + list(args)))


# ------------------------------------------------------------------ the file
rc, err = new(path("a.st"), "--init-seed", 5)
check("--new --save-init writes the model and stops (exit 0)", rc == 0 and os.path.exists(path("a.st")), err)
t, meta = sttools.load(path("a.st")) if rc == 0 else ({}, {})
ref = clapref.random_state_dict(cfg, front_end=False, extras=False)
names = set(t) - {"tokenizer.vocab"}
check("the published tensor names, no more, no fewer", names == set(ref),
      sorted(names ^ set(ref))[:5])
bad = [k for k in ref if k in t and tuple(t[k].shape) != tuple(ref[k].shape)]
check("every tensor has the shape the sizes ask for", not bad and names, bad[:5])
check("every weight is F32", all(t[k].dtype == np.float32 for k in names) and names)
try:
    exp, ccfg = convert.clap_expected(t, 4)
    ok = set(exp) == names and all(tuple(t[k].shape) == tuple(s) for k, s in exp.items())
    ok = ok and ccfg["channels"] == [5, 8, 12] and ccfg["n_mels"] == 19 and ccfg["embed"] == 24 and \
        ccfg["hidden"] == 20 and ccfg["layers"] == 2 and ccfg["intermediate"] == 36 and ccfg["positions"] == 40
except convert.ConvertError as e:
    ok, exp = False, str(e)
check("convert.py clap's architecture check accepts the tensors and reads the same sizes", ok, exp if not ok else "")
with open(VOCAB, "rb") as f:
    vbytes = f.read()
check("tokenizer.vocab: the vocab.txt bytes, U8 (as convert.py clap stores it)",
      "tokenizer.vocab" in t and t["tokenizer.vocab"].dtype == np.uint8 and t["tokenizer.vocab"].tobytes() == vbytes)
want = {"wsac.format": "1", "wsac.model": "clap", "clap.audio.n_mels": "19", "clap.audio.channels": "5,8,12",
        "clap.audio.bn_eps": "1e-05", "clap.embed_dim": "24", "clap.text.layers": "2", "clap.text.heads": "4",
        "clap.text.hidden": "20", "clap.text.intermediate": "36", "clap.text.ln_eps": "1e-12",
        "clap.text.max_len": "24", "clap.text.vocab_size": "30522", "clap.text.lowercase": "1",
        "clap.text.max_word_chars": "100", "clap.init.seed": "5"}
check("metadata: convert.py clap's keys with the sizes asked for, and the seed",
      all(meta.get(k) == v for k, v in want.items()) and "clap.audio.arch" not in meta,
      {k: meta.get(k) for k in want if meta.get(k) != want[k]})

# --audio-blocks / --audio-width: W, 2W, 4W...
rc, err = train("--new", "--vocab", VOCAB, "--save-init", path("bw.st"), "--audio-blocks", 4, "--audio-width", 3,
                "--n-mels", 16, "--text-layers", 1, "--text-width", 8, "--text-heads", 2, "--text-ffn", 8,
                "--text-max-pos", 16, "--text-max-len", 10, "--embed", 6)
m2 = sttools.load(path("bw.st"))[1] if rc == 0 else {}
check("--audio-blocks 4 --audio-width 3: channels 3,6,12,24", m2.get("clap.audio.channels") == "3,6,12,24", err)

# ------------------------------------------------------------------ read by clap-audio and clap-text
sd = {k: torch.from_numpy(v.copy()) for k, v in t.items() if k != "tokenizer.vocab"}
g = torch.Generator().manual_seed(3)
mels = {"m%d" % i: (torch.randn(T, 19, generator=g) * 10 - 40) for i, T in enumerate((8, 23, 61))}
with open(path("m.mp"), "wb") as f:
    ws.write_stream(f, "test", ({"key": k, "mel": v.numpy()} for k, v in mels.items()))
p = subprocess.run([tool("clap-audio"), "-q", "-m", path("a.st"), path("m.mp")], capture_output=True)
got = {r["key"]: r["emb"] for r in ws.read_stream(io.BytesIO(p.stdout))[1]} if p.returncode == 0 else {}
dev = []
for k, mel in mels.items():
    r = clapref.audio_forward(sd, mel).numpy().ravel()
    if k in got:
        dev.append((float(np.abs(got[k] - r).max()), float(got[k] @ r / np.linalg.norm(r) / np.linalg.norm(got[k]))))
check("clap-audio reads the new model; its embeddings match clapref (max |d| <= 1e-4, cosine >= 0.99999)",
      len(dev) == 3 and all(d <= 1e-4 and c >= 0.99999 for d, c in dev), (p.stderr.decode()[-300:], dev))
note("clap-audio vs clapref on the new model: max |d| %.1e, min cosine %.8f"
     % (max((d for d, _ in dev), default=0), min((c for _, c in dev), default=0)))
caps = ["a dog barks", "rain falls on a tin roof while people talk", "birds"]
with open(path("c.txt"), "w") as f:
    f.writelines("c%d\t%s\n" % (i, c) for i, c in enumerate(caps))
p = subprocess.run([tool("clap-text"), "-q", "-m", path("a.st"), path("c.txt")], capture_output=True)
got = {r["key"]: r["emb"] for r in ws.read_stream(io.BytesIO(p.stdout))[1]} if p.returncode == 0 else {}
tok = BertTokenizerRef(VOCAB)
dev = []
for i, c in enumerate(caps):
    ids = [tok.vocab["[CLS]"]] + [tok.vocab[w] for w in tok.tokenize(c)] + [tok.vocab["[SEP]"]]
    r = clapref.text_forward(sd, cfg, ids).numpy().ravel()
    if "c%d" % i in got:
        e = got["c%d" % i]
        dev.append((float(np.abs(e - r).max()), float(e @ r / np.linalg.norm(r) / np.linalg.norm(e))))
check("clap-text reads the new model; its embeddings match clapref (max |d| <= 1e-4, cosine >= 0.99999)",
      len(dev) == 3 and all(d <= 1e-4 and c >= 0.99999 for d, c in dev), (p.stderr.decode()[-300:], dev))
note("clap-text vs clapref on the new model: max |d| %.1e, min cosine %.8f"
     % (max((d for d, _ in dev), default=0), min((c for _, c in dev), default=0)))

# ------------------------------------------------------------------ determinism
new(path("a2.st"), "--init-seed", 5)
check("the same --init-seed writes the same bytes", os.path.exists(path("a2.st")) and filecmp.cmp(path("a.st"), path("a2.st"), shallow=False))
new(path("s5.st"), "--seed", 5)
check("--seed is the default --init-seed", os.path.exists(path("s5.st")) and filecmp.cmp(path("a.st"), path("s5.st"), shallow=False))
new(path("b.st"), "--init-seed", 6)
tb = sttools.load(path("b.st"))[0] if os.path.exists(path("b.st")) else {}
rand = [k for k in names if np.unique(t[k]).size > 2]  # the tensors drawn at random
same = [k for k in rand if k in tb and np.array_equal(t[k], tb[k])]
check("another seed: every random tensor differs (%d of them)" % len(rand), tb and rand and not same, same[:3])
new(path("l3.st"), "--init-seed", 5, "--text-layers", 3)
t3 = sttools.load(path("l3.st"))[0] if os.path.exists(path("l3.st")) else {}
keep = [k for k in names if ".layer.2." not in k]
check("each tensor from its own stream: 3 text layers leave the other tensors bit-identical",
      t3 and all(np.array_equal(t[k], t3[k]) for k in keep) and any(".layer.2." in k for k in t3))

# ------------------------------------------------------------------ the initialisation's statistics
SZ = ["--audio-channels", "48,96,160", "--n-mels", "64", "--embed", "192", "--text-layers", "1", "--text-width", "144",
      "--text-heads", "4", "--text-ffn", "576", "--text-max-pos", "512", "--init-seed", 11]
rc, err = train("--new", "--vocab", VOCAB, "--save-init", path("stat.st"), *SZ)
st = sttools.load(path("stat.st"))[0] if rc == 0 else {}
check("a medium model for the statistics (exit 0)", rc == 0, err)
A, T = clapref.A, clapref.T
worst = {}


def dev_of(kind, d):
    worst[kind] = max(worst.get(kind, 0.0), d)


bad = []
# WavCaps cnns.py init_layer: nn.init.xavier_uniform_ on each 3x3 conv, U(-a, a) with
# a = sqrt(6 / (fan_in + fan_out)), std sqrt(2 / (fan_in + fan_out))
torch.manual_seed(0)
for k in sorted(n for n in st if n.endswith("conv1.weight") or n.endswith("conv2.weight")):
    w = st[k].astype(np.float64)
    co, ci = w.shape[:2]
    fan = 9 * (ci + co)
    a, sd_ = (6.0 / fan) ** 0.5, (2.0 / fan) ** 0.5
    tw = torch.empty(*w.shape)
    torch.nn.init.xavier_uniform_(tw)
    if np.abs(w).max() > a * (1 + 1e-6):
        bad.append("%s beyond the xavier bound" % k)
    if w.size >= 5000:
        d = abs(w.std() / sd_ - 1)
        dev_of("xavier conv std", d)
        dev_of("torch xavier_uniform_ std, same shapes", abs(float(tw.std()) / sd_ - 1))
        # uniform, not normal: half the mass within a / 2, the extremes reached
        if d > 0.03 or abs(np.mean(np.abs(w) < a / 2) - 0.5) > 0.02 or np.abs(w).max() < 0.99 * a or \
                abs(w.mean()) > 0.05 * sd_:
            bad.append("%s: std %.4g (want %.4g), max %.4g (bound %.4g)" % (k, w.std(), sd_, np.abs(w).max(), a))
check("convolutions: xavier_uniform_ (within the bound; std within 3% of sqrt(2/(fan_in+fan_out)) for >= 5000 "
      "weights; uniform)", not bad and worst.get("xavier conv std") is not None, bad[:3])
bad = []
for k in st:
    if k.startswith(A) and ("bn" in k.split(".")[-2]):
        want = 1.0 if k.endswith(("weight", "running_var")) else 0.0
        if not np.all(st[k] == want):
            bad.append(k)
check("BatchNorms: weight 1, bias 0 (init_bn), running mean 0, variance 1 (BatchNorm2d)", not bad, bad[:3])
# HF BertPreTrainedModel._init_weights: Linear / Embedding normal(0, 0.02), biases 0,
# LayerNorm 1 / 0, the padding_idx (pad_token_id 0) row of the word embeddings 0
bad = []
for k in st:
    if not k.startswith(T):
        continue
    w = st[k].astype(np.float64)
    if "LayerNorm" in k:
        if not np.all(w == (1.0 if k.endswith("weight") else 0.0)):
            bad.append(k)
    elif k.endswith("bias"):
        if not np.all(w == 0):
            bad.append(k)
    else:
        if k.endswith("word_embeddings.weight"):
            if not np.all(w[0] == 0):
                bad.append(k + " row 0 ([PAD]) not zero")
            w = w[1:]
        if w.size >= 5000:
            d = abs(w.std() / 0.02 - 1)
            dev_of("BERT normal std", d)
            # normal, not uniform: 68.3% within one standard deviation
            if d > 0.03 or abs(w.mean()) > 0.05 * 0.02 or abs(np.mean(np.abs(w) < 0.02) - 0.6827) > 0.02:
                bad.append("%s: std %.4g, mean %.3g" % (k, w.std(), w.mean()))
check("BERT: weights normal(0, 0.02) (std within 3%, >= 5000 weights), biases 0, LayerNorm 1/0, [PAD] row 0",
      not bad and worst.get("BERT normal std") is not None, bad[:3])
# ase_model.py audio_proj / text_proj: nn.Linear's reset_parameters,
# U(-1/sqrt(in), 1/sqrt(in)) for weight and bias
bad = []
for pre in ("audio_proj.", "text_proj."):
    for j in (0, 2):
        w, b = st[pre + "%d.weight" % j].astype(np.float64), st[pre + "%d.bias" % j].astype(np.float64)
        fin = w.shape[1]
        a = fin ** -0.5
        lin = torch.nn.Linear(fin, w.shape[0])
        dev_of("nn.Linear std", abs(w.std() / (a / 3 ** 0.5) - 1))
        dev_of("torch nn.Linear std, same shapes", abs(float(lin.weight.std()) / (a / 3 ** 0.5) - 1))
        if np.abs(w).max() > a * (1 + 1e-6) or np.abs(b).max() > a * (1 + 1e-6) or \
                abs(w.std() / (a / 3 ** 0.5) - 1) > 0.03 or abs(b.std() / (a / 3 ** 0.5) - 1) > 0.2 or \
                np.abs(w).max() < 0.99 * a:
            bad.append("%s%d: std %.4g (want %.4g), bias std %.4g" % (pre, j, w.std(), a / 3 ** 0.5, b.std()))
check("projections: nn.Linear defaults (weight and bias within 1/sqrt(in), weight std within 3% of "
      "1/sqrt(3 in), bias std within 20%)", not bad, bad[:3])
note("init statistics, worst relative deviation of the std: " +
     ", ".join("%s %.2f%%" % (k, 100 * v) for k, v in sorted(worst.items())))

# ------------------------------------------------------------------ it learns
# the toy task of tests/py/toytask.py: 8 sounds x 4 places, two captions a clip
nclips = toytask.write(path("tr.mp"), path("tr.tsv"), 32, seed=1)
LSZ = toytask.SIZES
out = path("learn.st")
rc, err = train("--new", "--vocab", VOCAB, *LSZ, "--mel", path("tr.mp"), "--captions", path("tr.tsv"), "-o", out,
                "--no-augment", "--bs", 16, "--epochs", 75, "--schedule", "constant", "--lr", "1e-3",
                "--log", path("learn.tsv"), "--val", path("tr.mp") + "," + path("tr.tsv"), "-q")
check("300 steps from a new model (--no-augment, batch 16, constant lr 1e-3): exit 0", rc == 0, err[-400:])
L = [float(l.split("\t")[3]) for l in open(path("learn.tsv")) if l[0].isdigit()] if rc == 0 else [0.0]
maps = [float(l.split("\t")[2]) for l in open(path("learn.tsv")) if l.startswith("# epoch")] if rc == 0 else [0.0]
first, last = float(np.mean(L[:5])), float(np.mean(L[-20:]))
chance = sum(1.0 / r for r in range(1, 11)) / nclips  # mAP@10 of a random ranking, one relevant clip
check("it learns: the mean loss of the last 20 steps is under half that of the first 5", len(L) == 300 and
      last < 0.5 * first, "%.3f -> %.3f" % (first, last))
check("it learns: text-to-audio mAP@10 on the training set ends above 0.5 (chance %.3f)" % chance,
      maps[-1] > 0.5, maps[-5:])
note("learning: loss %.3f -> %.3f over %d steps; mAP@10 %.3f after epoch 1, %.3f after epoch %d (chance %.3f)"
     % (first, last, len(L), maps[0], maps[-1], len(maps), chance))
check("no temporary model file is left beside the output",
      sorted(os.listdir(tmp)) == sorted(x for x in os.listdir(tmp) if ".new." not in x))
mo = sttools.load(out)[1] if rc == 0 else {}
check("the trained model says where it came from (clap.train.init names --new and the seed)",
      "--new" in mo.get("clap.train.init", "") and mo.get("clap.init.seed") == "409194", mo.get("clap.train.init"))
p = subprocess.run([tool("clap-audio"), "-q", "-m", out, path("tr.mp")], capture_output=True)
check("the trained model is read by clap-audio", p.returncode == 0 and p.stdout, p.stderr.decode()[-300:])

# --new trains exactly what --init of its --save-init file trains
common = ["--mel", path("tr.mp"), "--captions", path("tr.tsv"), "--bs", 16, "--max-steps", 4, "--lr", "1e-3", "-q"]
rc1, e1 = train("--new", "--vocab", VOCAB, *LSZ, "--init-seed", 3, "--save-init", path("n0.st"), "-o", path("n1.st"),
                *common)
rc2, e2 = train("--init", path("n0.st"), "-o", path("n2.st"), *common)
ta = sttools.load(path("n1.st"))[0] if rc1 == 0 else {}
tb2 = sttools.load(path("n2.st"))[0] if rc2 == 0 else {}
check("--new --save-init N0 -o OUT (4 steps, dropout on) = --init N0 -o OUT, tensor for tensor",
      ta and set(ta) == set(tb2) and all(np.array_equal(ta[k], tb2[k]) for k in ta), e1[-200:] + e2[-200:])

# ------------------------------------------------------------------ refused: another architecture, a missing tower
import passtref  # noqa: E402

BPE = os.path.join(DATA, "roberta-bpe")
scfg = dataclasses.replace(passtref.Config.tiny(), vocab=50265, hidden=45, layers=2, text_heads=5, intermediate=71,
                           positions=37, embed=23)
torch.save({"state_dict": passtref.random_state_dict(scfg, seed=3), "epoch": 1}, path("salsa.ckpt"))
ok = convert.main(["salsa", path("salsa.ckpt"), "--vocab", os.path.join(BPE, "vocab.json"), "--merges",
                   os.path.join(BPE, "merges.txt"), "-o", path("salsa.st"), "--audio-heads", "3", "--text-heads", "5",
                   "--patch-stride", "4,3", "--n-mels", "21", "--segment-seconds", "0.3", "--fixed-seconds", "0.9"]) == 0
tm, mm = sttools.load(path("a.st"))
sttools.save(path("noaudio.st"), {k: v for k, v in tm.items() if not k.startswith(("audio_encoder.", "audio_proj."))}, mm)
sttools.save(path("notext.st"), {k: v for k, v in tm.items() if not k.startswith(("text_encoder.", "text_proj."))}, mm)
# a SALSA file is trained since issue 14 (test_clap_train_salsa.py); with this WavCaps stream it is refused
for f, what in (("salsa.st", "the mel stream's front end is wavcaps, the model takes passt"),
                ("noaudio.st", "no audio tower"), ("notext.st", "no text tower"),
                (os.path.join(ROOT, "data", "models", "decoder-test.safetensors"), "not a CLAP model file")):
    rc, err = train("--init", path(f), "--mel", path("tr.mp"), "--captions", path("tr.tsv"), "-o", path("x.st"))
    check("--init %s: refused by name (exit 2, '%s')" % (os.path.basename(f), what),
          (ok or f != "salsa.st") and rc == 2 and what in err and "clap-train: error: " in err
          and not os.path.exists(path("x.st")), err[-300:])

# ------------------------------------------------------------------ usage errors
for args, what in ((["--new", "--save-init", path("u.st")], "--vocab"),
                   (["--new", "--vocab", VOCAB, "--init", path("a.st"), "--save-init", path("u.st")], "--init"),
                   (["--text-layers", "2", "--init", path("a.st"), "--mel", "m", "--captions", "c", "-o", "o"],
                    "go with --new"),
                   (["--new", "--vocab", VOCAB, "--text-width", "20", "--text-heads", "3", "--save-init", path("u.st")],
                    "do not divide"),
                   (["--new", "--vocab", VOCAB, "--audio-blocks", "5", "--n-mels", "16", "--save-init", path("u.st")],
                    "too few"),
                   (["--new", "--vocab", VOCAB, "--audio-channels", "4,0", "--save-init", path("u.st")],
                    "--audio-channels"),
                   (["--new", "--vocab", VOCAB, "--audio-channels", "4,8", "--audio-width", "4",
                     "--save-init", path("u.st")], "not both"),
                   (["--new", "--vocab", VOCAB, "--text-max-pos", "20", "--save-init", path("u.st")], "positions"),
                   (["--new", "--vocab", VOCAB, "--save-init", path("u.st"), "--mel", path("tr.mp")], "--captions")):
    rc, err = train(*args)
    check("usage error (exit 1, names '%s'): %s" % (what, " ".join(a if a != VOCAB and tmp not in a else "F"
                                                                   for a in args)),
          rc == 1 and what in err and not os.path.exists(path("u.st")), (rc, err[-300:]))
rc, err = train("--new", "--vocab", path("c.txt"), "--save-init", path("u.st"), *SIZES)
check("a file that is not a BERT vocab.txt: named, exit 2", rc == 2 and "not a BERT vocab.txt" in err
      and not os.path.exists(path("u.st")), err[-300:])
done()
