"""prefixdec on a full-size decoder (random weights) in the published layout:
vocab 50257, 4 layers x 4 heads, width 768, the attn.bias/masked_bias buffers
and the tied lm_head in the state_dict, converted by convert.py. Greedy ids
must be identical to the published (uncached) decoding loop for 50 random
prefixes; one training step must match PyTorch's loss and gradients."""
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "py"))
from tap import ROOT, DATA, check, done, note, tool  # noqa: E402
import decref  # noqa: E402
import sttools  # noqa: E402
import wsacstream as ws  # noqa: E402

torch.set_num_threads(2)
tmp = tempfile.mkdtemp(prefix="wsac-prefixdec-full-")
PD = tool("prefixdec")
TESTGPT = os.path.join(os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build")), "tests", "test_gpt")
cfg = decref.Config.full()
pt, st = decref.full_checkpoint(vocab=50257, log=sys.stderr)
sd = torch.load(pt)
check("the full-size checkpoint has the published layout (buffers, tied lm_head)",
      "decoder.transformer.h.3.attn.bias" in sd and "decoder.transformer.h.0.attn.masked_bias" in sd
      and sd["decoder.lm_head.weight"].data_ptr() == sd["decoder.transformer.wte.weight"].data_ptr()
      and sd["decoder.transformer.wte.weight"].shape == (50257, 768))
P = decref.params(sd, cfg)
VOCAB = decref.load_vocab(os.path.join(ROOT, "data", "bert-base-uncased-vocab.txt"))

# greedy: 50 random prefixes
N = 50
rng = np.random.default_rng(50)
emb = rng.standard_normal((N, 1024)).astype(np.float32)
emb /= np.linalg.norm(emb, axis=1, keepdims=True)
path = os.path.join(tmp, "emb.mp")
with open(path, "wb") as f:
    ws.write_stream(f, "test", [{"key": "p%d" % i, "emb": emb[i]} for i in range(N)])
p = subprocess.run([PD, "decode", "-m", st, "--ids", path, "-j", "2", "-q"], capture_output=True, text=True)
got = {l.split("\t")[0]: [int(x) for x in l.split("\t")[1].split()] for l in p.stdout.splitlines()}
want = {"p%d" % i: decref.published_greedy(P, cfg, emb[i]) for i in range(N)}
diff = [k for k in want if got.get(k) != want[k]]
check("greedy: ids identical to the published loop for %d random prefixes (vocab 50257)" % N,
      p.returncode == 0 and not diff, "%d differ, e.g. %s" % (len(diff), [(k, got.get(k), want[k]) for k in diff[:1]]))
check("the published loop never chose an id >= 30522 here (so the masking is not what agrees)",
      max(max(v) for v in want.values()) < 30522)
note("greedy: %d prefixes, %d tokens, all identical: %s" % (N, sum(len(v) for v in want.values()), not diff))
p = subprocess.run([PD, "decode", "-m", st, path, "-j", "2", "-q"], capture_output=True, text=True)
caps = dict(l.split("\t", 1) for l in p.stdout.splitlines())
check("greedy: captions are the published tokenizer.decode(tokens[1:-1])",
      all(caps.get(k) == decref.bert_decode(VOCAB, v[1:-1]) for k, v in want.items()))

# beam search, full size, against the Python transcription
p = subprocess.run([PD, "decode", "-m", st, "--ids", "--beam", "3", "--max-len", "10", path, "-j", "2", "-q"],
                   capture_output=True, text=True)
gotb = {l.split("\t")[0]: [int(x) for x in l.split("\t")[1].split()] for l in p.stdout.splitlines()}
wantb = {"p%d" % i: decref.beam_search(P, cfg, emb[i], 3, entry_length=10) for i in range(4)}
check("beam 3: ids equal decref.beam_search at full size", all(gotb.get(k) == v for k, v in wantb.items()),
      [(k, gotb.get(k), v) for k, v in wantb.items() if gotb.get(k) != v][:1])

# one training step, full size: loss and every gradient
import json  # noqa: E402
caps = [json.loads(l) for l in open(os.path.join(DATA, "wordpiece-dev", "clotho-dev-caption1-2000.jsonl"))][:8]
tok = decref.targets([c["ids"] for c in caps], 22)
e8 = emb[:8]
sttools.save(os.path.join(tmp, "batch.st"), {"emb": e8, "tokens": tok.numpy().astype(np.int32)})
p = subprocess.run([TESTGPT, "grads", st, os.path.join(tmp, "batch.st"), os.path.join(tmp, "grads.st")],
                   capture_output=True)
g = sttools.load(os.path.join(tmp, "grads.st"))[0] if p.returncode == 0 else {}
Pg = decref.params(sd, cfg, requires_grad=True)
loss = decref.loss_fn(Pg, cfg, torch.from_numpy(e8), tok)
loss.backward()
rel = abs(float(g["loss"][0]) - loss.item()) / loss.item() if g else 1
worst = max(float((torch.from_numpy(g[k].copy()) - Pg[k].grad).norm() / Pg[k].grad.norm())
            for k in decref.param_names(cfg)) if g else 1
check("one step, full size: loss within 1e-5 and every gradient within 1e-4 (relative norm)",
      rel < 1e-5 and worst < 1e-4, "loss %g, grads %g" % (rel, worst))
note("full size, one step: loss rel. error %.1e, worst gradient rel. error %.1e" % (rel, worst))
done()
