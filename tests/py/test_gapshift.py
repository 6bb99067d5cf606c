"""gapshift estimate / apply / sigma / plot against numpy transcriptions of
the definitions (wsac.md C, the paper's section 3.1.1)."""
import io
import json
import os
import subprocess
import tempfile
import xml.etree.ElementTree as ET

import numpy as np

from tap import check, done, note, tool
import wsacstream as ws

tmp = tempfile.mkdtemp()
rng = np.random.default_rng(11)
D, n = 48, 120


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


sig = rng.standard_normal((n, D))
A = (unit(2.0 * rng.standard_normal(D) + sig + 0.3 * rng.standard_normal((n, D))) * 3).astype(np.float32)  # not unit
T = [unit(2.0 * rng.standard_normal(D) + sig + 0.5 * rng.standard_normal((n, D))).astype(np.float32) for _ in range(5)]
pa, pt = os.path.join(tmp, "a.mp"), os.path.join(tmp, "t.mp")
with open(pa, "wb") as f:
    ws.write_stream(f, "test", [{"key": "f%d.wav" % i, "emb": A[i]} for i in range(n)] +
                    [{"key": "lonely.wav", "emb": unit(rng.standard_normal(D)).astype(np.float32)}])
with open(pt, "wb") as f:
    ws.write_stream(f, "test", [{"key": "f%d.wav#%d" % (i, k + 1), "emb": T[k][i], "text": "c %d %d" % (i, k)}
                                for i in range(n) for k in range(5)])


def gs(*args, stdin=None):
    return subprocess.run([tool("gapshift")] + list(args), input=stdin, capture_output=True)


js = os.path.join(tmp, "gap.json")
p = gs("estimate", "--audio", pa, "--text", pt, "--json", js)
_, recs, _ = ws.read_stream(io.BytesIO(p.stdout))
An = unit(np.stack([r["emb"] for r in ws.read_stream(open(pa, "rb"))[1]]).astype(np.float64))  # incl. lonely.wav
Tn = unit(np.stack([T[k][i] for i in range(n) for k in range(5)]).astype(np.float64))
gap = An.mean(0) - Tn.mean(0)
check("estimate: one record keyed 'gap'", p.returncode == 0 and len(recs) == 1 and recs[0]["key"] == "gap", p.stderr)
g = recs[0]["emb"]
check("estimate: gap = mean(normalised audio) - mean(normalised text) within 1e-6", np.abs(g - gap).max() < 1e-6,
      np.abs(g - gap).max())
st = json.load(open(js))
pairs = np.array([An[i] @ Tn[5 * i + k] for i in range(n) for k in range(5)])
within_a = (An @ An.T)[~np.eye(len(An), dtype=bool)].mean()
within_t = (Tn @ Tn.T)[~np.eye(len(Tn), dtype=bool)].mean()
across = (An @ Tn.T).mean()
check("estimate: |gap|", abs(st["gap_norm"] - np.linalg.norm(gap)) < 1e-6)
check("estimate: mean cosine of the 600 pairs sharing a key", st["n_pairs"] == 5 * n and abs(st["pair_cos"] - pairs.mean()) < 1e-6,
      (st["pair_cos"], pairs.mean()))
check("estimate: mean cosine within audio, within text, across",
      abs(st["within_audio_cos"] - within_a) < 1e-6 and abs(st["within_text_cos"] - within_t) < 1e-6 and
      abs(st["across_cos"] - across) < 1e-6, (st, within_a, within_t, across))
check("estimate: statistics on stderr", "|gap| = " in p.stderr.decode() and "pairs sharing a key" in p.stderr.decode())
note("estimate on the synthetic set: |gap| %.3f, pair cos %.3f, within audio %.3f, within text %.3f, across %.3f"
     % (st["gap_norm"], st["pair_cos"], st["within_audio_cos"], st["within_text_cos"], st["across_cos"]))
gpath = os.path.join(tmp, "gap.mp")
open(gpath, "wb").write(p.stdout)

# apply without noise: exact formula
p = gs("apply", "--gap", gpath, pt)
_, out, _ = ws.read_stream(io.BytesIO(p.stdout))
ref = unit(Tn + g.astype(np.float64))
check("apply --gap: normalise(normalise(x) + gap) within 1e-6, text passed through",
      p.returncode == 0 and np.abs(np.stack([r["emb"] for r in out]) - ref).max() < 1e-6 and out[7]["text"] == "c 1 2")

# apply with noise: statistics of the injected noise, determinism by seed
e1 = np.zeros(1024, np.float32)
e1[0] = 1
var = 0.013
stream = io.BytesIO()
ws.write_stream(stream, "test", [{"key": "k%d" % i, "emb": e1} for i in range(400)])
a1 = gs("apply", "--noise", str(var), "--seed", "7", stdin=stream.getvalue()).stdout
a2 = gs("apply", "--noise", str(var), "--seed", "7", stdin=stream.getvalue()).stdout
a3 = gs("apply", "--noise", str(var), "--seed", "8", stdin=stream.getvalue()).stdout
check("apply --noise: the same seed gives the same bits, another seed other noise", a1 == a2 and a1 != a3)
X = np.stack([r["emb"] for r in ws.read_stream(io.BytesIO(a1))[1]]).astype(np.float64)
# x = (e1 + n) / |e1 + n|: the other components are n_d / |e1 + n| with |e1 + n| ~ sqrt(1 + D var)
scale = np.sqrt(1 + 1024 * var)
est = (X[:, 1:] * scale).std()
check("apply --noise VAR: per-dimension std = sqrt(VAR) within 2%% (got %.4f, want %.4f)" % (est, np.sqrt(var)),
      abs(est / np.sqrt(var) - 1) < 0.02)
check("apply --noise: noise drawn afresh for every record", np.abs(X[0] - X[1]).max() > 0.01)

# sigma: mean L-inf norm of differences within groups
p = gs("sigma", pt)
res = json.loads(p.stdout)
ref = np.mean([np.abs(Tn[5 * i + a] - Tn[5 * i + b]).max() for i in range(n) for a in range(5) for b in range(a + 1, 5)])
check("sigma: mean L-inf norm over the 10 pairs of each of 120 groups",
      p.returncode == 0 and res["pairs"] == 10 * n and res["groups"] == n and abs(res["sigma"] - ref) < 1e-6 and
      abs(res["variance"] - ref ** 2) < 1e-6, (res, ref))
check("sigma: says what it computed", "mean L-inf norm" in p.stderr.decode() and "sigma^2" in p.stderr.decode())
p = gs("sigma", pa)
check("sigma: no groups -> fatal, said plainly", p.returncode == 2 and "share an audio" in p.stderr.decode())

# plot
svg = os.path.join(tmp, "p.svg")
p = gs("plot", "--audio", pa, "--text", pt, "--gap", gpath, "--memory", pt, "--method", "pd", "--max", "200", "-o", svg)
ok = p.returncode == 0 and os.path.exists(svg)
if ok:
    root = ET.parse(svg).getroot()
    circles = root.findall(".//{http://www.w3.org/2000/svg}circle")
    ok = len(circles) == (121 + 200) + (121 + 200) + (200 + 121)
check("plot: a valid SVG with three panels (raw, shifted text, projected audio)", ok, p.stderr.decode())

# bad input
bad = os.path.join(tmp, "bad.mp")
nanv = T[0][0].copy()
nanv[1] = np.nan
with open(bad, "wb") as f:
    ws.write_stream(f, "test", [{"key": "ok", "emb": T[0][0]}, {"key": "nan", "emb": nanv},
                                {"key": "wide", "emb": np.ones(D + 2, np.float32)}, {"key": "ok2", "emb": T[0][1]}])
p = gs("apply", "--gap", gpath, bad)
_, out, tr = ws.read_stream(io.BytesIO(p.stdout))
check("apply: NaN and wrong-width records named, others written, exit 3",
      p.returncode == 3 and [r["key"] for r in out] == ["ok", "ok2"] and "gapshift: nan: emb is not finite" in p.stderr.decode()
      and "gapshift: wide: emb has width 50, the gap 48" in p.stderr.decode(), p.stderr.decode())
wide = os.path.join(tmp, "wide.mp")
with open(wide, "wb") as f:
    ws.write_stream(f, "test", [{"key": "x", "emb": np.ones(D + 2, np.float32)}])
p = gs("estimate", "--audio", wide, "--text", pt)
check("estimate: mismatched widths are fatal with a clear message", p.returncode == 2 and "width 50, text 48" in p.stderr.decode(),
      p.stderr.decode())
p = gs("frobnicate")
check("unknown command: usage error", p.returncode == 1 and "unknown command" in p.stderr.decode())
p = gs()
check("no command: usage error", p.returncode == 1)
done()
