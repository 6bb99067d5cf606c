"""pipelines/retrieval with a small random SALSA model (PaSST-S + RoBERTa,
scripts/convert.py salsa): the front end comes from the model file (passt,
its n_mels), the figures are what SALSA's cmd_test_on_clothov2 computes
(text-to-audio, every caption a query over the unique audios, one relevant:
R@1/5/10 from C.topk(10), mAP@10 = mean of 1/rank if rank <= 10) from the
streams the filters write by hand, and -R adds the multi-positive scores."""
import csv
import dataclasses
import io
import json
import os
import subprocess
import tempfile

import numpy as np
import torch

from tap import DATA, ROOT, check, done, tool
import convert
import passtref
import soundfile as sf
import wsacstream as ws

tmpdir = tempfile.TemporaryDirectory(prefix="wsac-retrieval-salsa-")
tmp = tmpdir.name
torch.set_num_threads(1)
BPE_DIR = os.path.join(DATA, "roberta-bpe")
VOCAB, MERGES = os.path.join(BPE_DIR, "vocab.json"), os.path.join(BPE_DIR, "merges.txt")
cfg = dataclasses.replace(passtref.Config.tiny(), vocab=50265, hidden=45, layers=2, text_heads=5,
                          intermediate=71, positions=37, embed=23)
CKPT = os.path.join(tmp, "small.ckpt")
torch.save({"state_dict": passtref.random_state_dict(cfg, seed=3), "epoch": 1}, CKPT)
MODEL = os.path.join(tmp, "small.safetensors")
OPTS = ["--audio-heads", "3", "--text-heads", "5", "--patch-stride", "4,3", "--n-mels", "21",
        "--segment-seconds", "0.3", "--fixed-seconds", "0.9"]
check("setup: convert.py salsa converts the small random SALSA checkpoint",
      convert.main(["salsa", CKPT, "--vocab", VOCAB, "--merges", MERGES, "-o", MODEL] + OPTS) == 0)

# 8 clips of 0.2-0.9 s, 5 captions each (Clotho layout)
AUD = os.path.join(tmp, "audio")
os.makedirs(AUD)
rng = np.random.default_rng(5)
words = "dog barks rain falls car passes bird sings door closes people talk water runs wind blows".split()
names = []
for i in range(8):
    n = int(32000 * (0.2 + 0.1 * i))
    x = (0.3 * rng.standard_normal(n) * np.sin(np.arange(n) * (0.01 + 0.02 * i))).astype(np.float32)
    name = "clip %d.wav" % i
    sf.write(os.path.join(AUD, name), x, 32000, subtype="FLOAT")
    names.append(name)
REFS = os.path.join(tmp, "captions.csv")
with open(REFS, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file_name"] + ["caption_%d" % k for k in range(1, 6)])
    for i, name in enumerate(names):
        w.writerow([name] + [" ".join(rng.choice(words, size=int(rng.integers(3, 9)))) + " %d %d" % (i, k)
                             for k in range(5)])


def run(args, **kw):
    p = subprocess.run(args, capture_output=True, env=dict(os.environ, WSAC_BIN=os.path.dirname(tool("score"))), **kw)
    return p.returncode, p.stdout, p.stderr.decode("utf-8", "replace")


PIPE = os.path.join(ROOT, "pipelines", "retrieval")
OUT = os.path.join(tmp, "out")
rc, out, err = run(["sh", PIPE, "-c", MODEL, "-a", AUD, "-r", REFS, "-o", OUT, "--format", "json"])
js = json.loads(out) if rc == 0 else None
check("pipelines/retrieval with a SALSA model: exit 0, JSON", rc == 0 and js is not None, (rc, err[-800:]))
check("the front end comes from the model file: passt, n_mels 21, 9600-sample pieces", "front end passt" in err,
      err[-400:])

# by hand: the filters the pipeline composes, and the published evaluation on their output
mel = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "--n-mels", "21", "--segment-samples", "9600"] +
                     [os.path.join(AUD, n) for n in names], capture_output=True).stdout
aud = subprocess.run([tool("clap-audio"), "-q", "-m", MODEL], input=mel, capture_output=True).stdout
txt = subprocess.run([tool("clap-text"), "-q", "-m", MODEL, "--csv", REFS], capture_output=True).stdout
A = {r["key"]: r["emb"] for r in ws.read_stream(io.BytesIO(aud))[1]}
Trecs = ws.read_stream(io.BytesIO(txt))[1]
check("by hand: 8 audio and 40 caption embeddings", len(A) == 8 and len(Trecs) == 40, (len(A), len(Trecs)))
a_cached = {r["key"]: r["emb"] for r in ws.read_stream(open(os.path.join(OUT, "audio.mp"), "rb"))[1]}
check("the pipeline's audio embeddings are wav2mel --frontend passt --n-mels 21 --segment-samples 9600 "
      "| clap-audio's (the model's cut), bit for bit",
      sorted(a_cached) == sorted(A) and all(np.array_equal(a_cached[k], A[k]) for k in A))

# cmd_test_on_clothov2 (salsa.md section 4): C = normalised text @ normalised audio.T,
# target = the caption's audio, top10 = C.topk(10)
keys = sorted(A)
Am = torch.from_numpy(np.stack([A[k] for k in keys]))
Tm = torch.from_numpy(np.stack([r["emb"] for r in Trecs]))
target = torch.tensor([keys.index(r["key"].split("#")[0]) for r in Trecs])
C = torch.nn.functional.normalize(Tm, dim=1) @ torch.nn.functional.normalize(Am, dim=1).T
top10 = C.topk(min(10, len(keys)), dim=1)[1]
hit = top10 == target[:, None]
r1, r5, r10 = [hit[:, :k].any(dim=1).float().mean().item() for k in (1, 5, 10)]
rank = hit.float().argmax(dim=1) + 1
map10 = torch.where(hit.any(dim=1), 1.0 / rank.float(), torch.zeros(len(Trecs))).mean().item()
t2a = js and js["t2a"]
check("t2a equals cmd_test_on_clothov2's R@1/5/10 and mAP@10 on the same embeddings",
      t2a and t2a["queries"] == 40 and all(abs(t2a[k] - v) < 1e-6 for k, v in
                                           {"R@1": r1, "R@5": r5, "R@10": r10, "mAP@10": map10}.items()),
      (t2a, r1, r5, r10, map10))

# -R: a multi-positive file over the same captions; -j 2 reuses nothing new
REL = os.path.join(tmp, "metadata_eval.csv")
with open(REL, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["query", "audio_filenames"])
    for r in Trecs[::5]:
        own = r["key"].split("#")[0]
        w.writerow([r["text"], str([own, names[(names.index(own) + 1) % 8]])])
rc, out, err = run(["sh", PIPE, "-c", MODEL, "-a", AUD, "-r", REFS, "-o", OUT, "-R", REL, "--format", "json"])
parts = out.decode().replace("}\n{", "}\n\x00{").split("\x00")
ok = rc == 0 and len(parts) == 2
jr = json.loads(parts[1]) if ok else None
check("-R: the multi-positive scores follow (8 queries, 2 relevant each); embeddings reused",
      ok and jr["t2a"]["queries"] == 8 and jr["t2a"]["mean_relevant"] == 2 and "reusing" in err, (rc, err[-500:]))
OUT2 = os.path.join(tmp, "out2")
rc, out2, err = run(["sh", PIPE, "-c", MODEL, "-a", AUD, "-r", REFS, "-o", OUT2, "-j", "2", "--format", "json"])
check("-j 2 (sharded): the same figures", rc == 0 and json.loads(out2)["t2a"] == t2a, (rc, err[-500:]))
rc, _, err = run(["sh", PIPE, "-c", MODEL, "-a", AUD, "-r", REFS, "-o", os.path.join(tmp, "out3"),
                  "--frontend", "wavcaps"])
check("--frontend wavcaps with a SALSA model: clap-audio refuses the stream, the pipeline fails (exit 2)",
      rc == 2 and "front end" in err, (rc, err[-500:]))
rc, _, err = run(["sh", PIPE, "-c", MODEL, "-a", AUD, "-r", REFS, "--frontend", "mfcc"])
check("--frontend mfcc: usage error (exit 1)", rc == 1 and "mfcc" in err, (rc, err))
tab = run(["sh", PIPE, "-c", MODEL, "-a", AUD, "-r", REFS, "-o", OUT])
check("--format table (default): t2a and a2t rows", tab[0] == 0 and b"\nt2a " in tab[1] and b"\na2t " in tab[1],
      tab)
done()
