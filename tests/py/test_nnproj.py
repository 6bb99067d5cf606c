"""nnproj against a numpy/torch transcription of WSAC's evaluation.py
(nnd: argmax of softmax(100 sim); pd: softmax(100 sim) @ M, re-normalised)."""
import io
import os
import subprocess
import tempfile

import numpy as np
import torch

from tap import check, done, note, tool
import wsacstream as ws

tmp = tempfile.mkdtemp()
rng = np.random.default_rng(5)
D, N, B = 96, 1234, 37


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


mem = unit(rng.standard_normal((N, D))).astype(np.float32)
q = unit(mem[rng.integers(0, N, B)] + 0.4 * rng.standard_normal((B, D))).astype(np.float32)
mpath, qpath = os.path.join(tmp, "mem.mp"), os.path.join(tmp, "q.mp")
with open(mpath, "wb") as f:
    ws.write_stream(f, "test", [{"key": "m%d#1" % i, "emb": mem[i], "text": "caption %d" % i} for i in range(N)])
with open(qpath, "wb") as f:
    ws.write_stream(f, "test", [{"key": "q%d" % i, "emb": q[i] * (i + 1.0), "path": "x%d.wav" % i} for i in range(B)])


def run(*args, stdin=None):
    p = subprocess.run([tool("nnproj"), "-M", mpath] + list(args) + ([] if stdin else [qpath]),
                       input=stdin, capture_output=True)
    hdr, recs, tr = ws.read_stream(io.BytesIO(p.stdout)) if p.stdout else (None, [], None)
    return p, recs, tr


# reference: evaluation.py, float32 torch
Mt, Qt = torch.from_numpy(mem), torch.from_numpy(q)
sim = Qt @ Mt.T
w = torch.softmax(100 * sim, dim=-1)
ref_pd = torch.nn.functional.normalize(w @ Mt, dim=-1).numpy()
ref_nn = torch.argmax(torch.softmax(100 * sim, dim=-1), dim=-1).numpy()

p, recs, _ = run("--method", "nnd", "--batch", "10")
check("nnd: exit 0, every record", p.returncode == 0 and len(recs) == B, p.stderr.decode())
got = [r["nn_key"] for r in recs]
check("nnd: the same memory entry as evaluation.py for every query (unnormalised inputs too)",
      got == ["m%d#1" % i for i in ref_nn])
check("nnd: emb is that memory entry", all(np.array_equal(r["emb"], mem[i]) for r, i in zip(recs, ref_nn)))
check("nnd: keys and other fields pass through in order",
      [r["key"] for r in recs] == ["q%d" % i for i in range(B)] and recs[3]["path"] == "x3.wav")

p, recs, _ = run("--method", "pd", "--batch", "7")
e = np.stack([r["emb"] for r in recs])
d = float(np.abs(e - ref_pd).max())
note("pd: max |C - torch| = %.2e over %d queries, memory %d x %d" % (d, B, N, D))
check("pd: matches softmax(100 sim) @ M re-normalised within 1e-5", d < 1e-5, d)
check("pd: outputs are unit vectors", np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-5))
p2, recs2, _ = run("--method", "pd", "--batch", "256")
# a query's scores may round differently with the batch's row count (OpenBLAS's
# kernels sum by the shape of the call), and softmax(sim / tau) scales a score's
# rounding by 1/tau = 100: 1.2e-6 seen with the Haswell kernels
db = float(np.abs(np.stack([r["emb"] for r in recs2]) - e).max())
note("pd: --batch 7 vs 256: max |diff| = %.2e" % db)
check("pd: batch size does not change the result beyond rounding (5e-6: 1/tau = 100 times float32 rounding)",
      db < 5e-6, db)
p3, recs3, _ = run("--method", "pd", "--tau", "0.05")
ref5 = torch.nn.functional.normalize(torch.softmax(20 * sim, dim=-1) @ Mt, dim=-1).numpy()
check("pd: --tau 0.05", np.abs(np.stack([r["emb"] for r in recs3]) - ref5).max() < 1e-5)

p, recs, _ = run("--method", "pd", "--topk", "3")
top = np.argsort(-(q @ mem.T), axis=1, kind="stable")[:, :3]
check("--topk 3: the three nearest captions with their similarities",
      all(r["topk_keys"] == ["m%d#1" % j for j in top[i]] and r["topk_texts"][0] == "caption %d" % top[i][0] and
          np.allclose(r["topk_sims"], (q[i] @ mem.T)[top[i]], atol=1e-5) for i, r in enumerate(recs)))

# bad input
bad = os.path.join(tmp, "bad.mp")
nanv = q[0].copy()
nanv[5] = np.nan
with open(bad, "wb") as f:
    ws.write_stream(f, "test", [{"key": "ok1", "emb": q[0]}, {"key": "wide", "emb": np.ones(D + 1, np.float32)},
                                {"key": "nan", "emb": nanv}, {"key": "none", "text": "no emb"},
                                {"key": "zero", "emb": np.zeros(D, np.float32)}, {"key": "ok2", "emb": q[1]}])
p = subprocess.run([tool("nnproj"), "-M", mpath, "--method", "pd", bad], capture_output=True)
_, recs, tr = ws.read_stream(io.BytesIO(p.stdout))
err = p.stderr.decode()
check("bad records: named with reasons, others written, exit 3",
      p.returncode == 3 and [r["key"] for r in recs] == ["ok1", "ok2"] and
      "nnproj: wide: emb has width 97 but the memory has 96" in err and "nnproj: nan: emb is not finite" in err and
      "nnproj: none: no \"emb\" field" in err and "zero vector" in err and tr["failed"] == ["wide", "nan", "none", "zero"],
      err)
empty = os.path.join(tmp, "empty.mp")
with open(empty, "wb") as f:
    ws.write_stream(f, "test", [])
p = subprocess.run([tool("nnproj"), "-M", empty, "--method", "nnd", qpath], capture_output=True)
check("empty memory: fatal, exit 2, said plainly", p.returncode == 2 and "holds no usable embeddings" in p.stderr.decode(),
      p.stderr.decode())
p = subprocess.run([tool("nnproj"), "-M", mpath, qpath], capture_output=True)
check("no --method: usage error", p.returncode == 1)
p = subprocess.run([tool("nnproj"), "-M", os.path.join(tmp, "nope.mp"), "--method", "pd", qpath], capture_output=True)
check("unreadable memory: exit 2", p.returncode == 2 and "cannot open" in p.stderr.decode())
a = subprocess.run([tool("nnproj"), "-M", mpath, "--method", "pd", qpath], capture_output=True).stdout
b = subprocess.run([tool("nnproj"), "-M", mpath, "--method", "pd", qpath], capture_output=True).stdout
check("determinism: bit-identical runs", a == b)
done()
