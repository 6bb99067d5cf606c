#!/usr/bin/python3
"""The small TEST CLAP bundled in data/models/ (see make-demo-models.sh):
random weights of the real architecture at tiny sizes, with two data-based
touches so that its embeddings differ from one input to the next (a random
CLAP maps everything to nearly the same direction): sharper attention, and
projection biases that centre the projections on a few hundred captions and
synthetic clips. It knows nothing about sound.
  make-demo-clap.py CAPTIONS.jsonl OUT.pt"""
import sys, csv, json
import os
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [os.path.join(root, "scripts"), os.path.join(root, "tests", "py")]
import numpy as np, torch, clapref, ref_mel, signals
torch.set_default_dtype(torch.float32)  # ref_mel switches it to float64
cfg = clapref.Config(channels=[4, 8, 8, 16, 16, 32], embed=32, hidden=16, layers=2, heads=2, intermediate=32)
sd = clapref.random_state_dict(cfg, seed=2309)
T = clapref.T
for L in range(cfg.layers):  # sharper attention so [CLS] depends on the words
    for m in ("query", "key"):
        sd[T + "encoder.layer.%d.attention.self.%s.weight" % (L, m)] *= 3.0
caps = [json.loads(l)["ids"] for l in open(sys.argv[1])][:600]
H = torch.stack([clapref.text_hidden(sd, cfg, [101] + ids[:28] + [102])[0, 0] for ids in caps])
def center(prefix, X):
    W0, b0 = sd[prefix + ".0.weight"], sd[prefix + ".0.bias"]
    b0.copy_(-(X.mean(0) @ W0.T))  # the pre-ReLU mean becomes 0
    h = torch.relu(X @ W0.T + b0)
    sd[prefix + ".2.bias"].copy_(-(h.mean(0) @ sd[prefix + ".2.weight"].T))
center("text_proj", H)
mels = []
rng = np.random.default_rng(0)
for i, name in enumerate(signals.NAMES * 3):
    x = signals.make(name, 32000, 3.0, seed=i) * rng.uniform(0.05, 1)
    mels.append(ref_mel.logmel(np.float32(x)).astype(np.float32))
F = torch.stack([clapref.audio_features(sd, m)[0] for m in mels])
center("audio_proj", F)
def emb_t(ids): return clapref.text_forward(sd, cfg, [101] + ids[:28] + [102])[0]
E = torch.stack([emb_t(ids) for ids in caps[:300]])
S = E @ E.T; print("text mean cos", S[~torch.eye(len(E), dtype=bool)].mean().item())
A = torch.stack([clapref.audio_forward(sd, m)[0] for m in mels]); S = A @ A.T
print("audio mean cos", S[~torch.eye(len(A), dtype=bool)].mean().item())
torch.save({"model": sd}, sys.argv[2])
