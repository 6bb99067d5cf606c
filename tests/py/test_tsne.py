"""gapshift plot --tsne against scikit-learn's exact t-SNE (Debian's
python3-sklearn 1.2): the joint probabilities, the KL divergence and its
gradient from the same inputs, the first iterations of the optimiser (early
exaggeration, momentum, gains) from the same start, and whole runs.

t-SNE's optimisation amplifies differences exponentially in its first
iterations (the scale grows 10^4-fold in five steps), so two correct
implementations agree on a trajectory only for a few steps unless they agree
to the bit; after that the test compares what a layout is for: the final KL
and whether clusters stay apart."""
import io
import os
import struct
import subprocess
import tempfile

import numpy as np

from tap import ROOT, check, done, note, tool
import wsacstream as ws

try:
    from sklearn.manifold import TSNE
    from sklearn.manifold._t_sne import _gradient_descent, _joint_probabilities, _kl_divergence
    from sklearn.metrics import pairwise_distances
except ImportError:  # noqa: the test set-up installs python3-sklearn
    check("scikit-learn is installed (python3-sklearn; sh scripts/install-deps.sh)", False)
    done()

tmp = tempfile.mkdtemp()
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
DRIVER = os.path.join(BUILD, "tests", "test_tsne")
rng = np.random.default_rng(3)
D = 24
cent = rng.standard_normal((3, D))


def make(n, off):
    x = cent[np.arange(n) % 3] + 0.3 * rng.standard_normal((n, D)) + off
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def squareform(c, n):
    m = np.zeros((n, n))
    m[np.triu_indices(n, 1)] = c
    return m + m.T


a, t = make(50, 0.5), make(63, -0.5)  # odd sizes: 113 points
X = np.concatenate([a, t])
n = len(X)
for name, x in (("a", a), ("t", t)):
    with open(os.path.join(tmp, name + ".mp"), "wb") as f:
        ws.write_stream(f, "t", ({"key": "%s%d" % (name, i), "emb": x[i]} for i in range(len(x))))

# ------------------------------------------------------- P, KL, gradient
for perp in (5.0, 10.0, 30.0):
    Y = rng.standard_normal((n, 2)) * 3
    with open(os.path.join(tmp, "x.bin"), "wb") as f:
        f.write(struct.pack("<ii", n, D) + X.tobytes())
    Y.astype(np.float64).tofile(os.path.join(tmp, "y.bin"))
    r = subprocess.run([DRIVER, "dump", os.path.join(tmp, "x.bin"), os.path.join(tmp, "y.bin"), str(perp),
                        os.path.join(tmp, "out.bin")])
    out = np.fromfile(os.path.join(tmp, "out.bin"))
    Pc, gc, klc = out[:n * n].reshape(n, n), out[n * n:n * n + 2 * n].reshape(n, 2), out[-1]
    Psk = _joint_probabilities(pairwise_distances(X.astype(np.float64), squared=True), perp, 0)
    Psq = squareform(Psk, n)
    dp = np.abs(Pc - Psq).max() / Psq.max()
    check("perplexity %g: joint P equals sklearn's within 1e-6 of its largest entry" % perp, r.returncode == 0 and dp < 1e-6,
          "%.3g, exit %d" % (dp, r.returncode))
    Pcond = Pc[np.triu_indices(n, 1)]
    klsk, gsk = _kl_divergence(Y.ravel(), Pcond, 1, n, 2)
    dg = np.abs(gc.ravel() - gsk).max() / np.abs(gsk).max()
    check("perplexity %g: KL and gradient equal sklearn's _kl_divergence on the same P within 1e-12" % perp,
          abs(klc - klsk) <= 1e-12 * abs(klsk) and dg < 1e-12, "KL %.17g vs %.17g, gradient %.3g" % (klc, klsk, dg))
    note("perplexity %g: P max rel. diff %.2e, gradient %.2e, KL %.6f vs %.6f" % (perp, dp, dg, klc, klsk))

# ------------------------------------------------------- the optimiser
# the same start as gapshift's (PCA, first coordinate's std 1e-4; gapshift
# finds the axes by power iteration, to ~1e-6)
mu = X.astype(np.float64).mean(0)
C = (X - mu).T @ (X - mu) / n
V = np.linalg.eigh(C)[1][:, ::-1][:, :2].copy()
for k in range(2):
    if V[np.argmax(np.abs(V[:, k])), k] < 0:
        V[:, k] *= -1
Y0 = (X - mu) @ V
Y0 = Y0 / np.std(Y0[:, 0]) * 1e-4
perp = 10
P = _joint_probabilities(pairwise_distances(X.astype(np.float64), squared=True), perp, 0)


def ours(iters):
    cmd = [tool("gapshift"), "plot", "-q", "--audio", os.path.join(tmp, "a.mp"), "--text", os.path.join(tmp, "t.mp"),
           "--tsne", "--iters", str(iters), "--perplexity", str(perp), "-o", os.path.join(tmp, "o.svg"),
           "--coords", os.path.join(tmp, "c.mp")]
    r = subprocess.run(cmd, capture_output=True)
    _, recs, tr = ws.read_stream(open(os.path.join(tmp, "c.mp"), "rb"))
    return r, np.concatenate([recs[0]["xy"], recs[1]["xy"]]), recs


for iters in (1, 3, 5):
    r, Yc, _ = ours(iters)
    p, _, _ = _gradient_descent(_kl_divergence, Y0.ravel().copy(), 0, iters, n_iter_check=50, n_iter_without_progress=10**6,
                                momentum=0.5, learning_rate=max(n / 12 / 4, 50), min_gain=0.01, min_grad_norm=0, verbose=0,
                                args=[P * 12, 1, n, 2], kwargs={"skip_num_points": 0})
    Ys = p.reshape(n, 2)
    d = np.abs(Yc - Ys).max() / np.abs(Ys).max()
    check("after %d iteration%s from the same start: the layout equals sklearn's within 1e-4" % (iters, "s"[iters == 1:]),
          r.returncode == 0 and d < 1e-4, "%.3g" % d)
    note("after %d iterations: max |C - sklearn| / max |sklearn| = %.2e (layout scale %.3g)" % (iters, d, np.abs(Ys).max()))


def nn_accuracy(Y, labels):
    d = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    return (labels[d.argmin(1)] == labels).mean()


labels = np.concatenate([np.arange(50) % 3, np.arange(63) % 3])
r, Yc, recs = ours(1000)
ts = TSNE(2, perplexity=perp, early_exaggeration=12, learning_rate="auto", n_iter=1000, init=Y0, method="exact",
          min_grad_norm=0, n_iter_without_progress=10**6)
Ys = ts.fit_transform(X.astype(np.float64))
accs = (nn_accuracy(Yc, labels), nn_accuracy(Ys, labels))
check("1000 iterations: clusters as well separated as sklearn's (1-NN label accuracy %.3f vs %.3f)" % accs,
      accs[0] >= accs[1] - 0.02 and accs[0] > 0.95)
# the final KL of our layout, computed by sklearn on sklearn's P
kl_ours = _kl_divergence(Yc.ravel(), P, 1, n, 2)[0]
check("1000 iterations: final KL within 5%% of sklearn's (%.4f vs %.4f)" % (kl_ours, ts.kl_divergence_),
      abs(kl_ours - ts.kl_divergence_) <= 0.05 * ts.kl_divergence_)
check("--coords: one record per panel and set, with the plotted sizes",
      [rec["key"] for rec in recs] == ["1:audio", "1:text"] and recs[0]["xy"].shape == (50, 2))
svg = open(os.path.join(tmp, "o.svg")).read()
check("the SVG says t-SNE and has every point", "t-SNE" in svg and svg.count("<circle") == n)
r = subprocess.run([tool("gapshift"), "plot", "-q", "--audio", os.path.join(tmp, "a.mp"), "--text", os.path.join(tmp, "t.mp"),
                    "--tsne", "--perplexity", "200", "-o", os.path.join(tmp, "o2.svg")], capture_output=True)
check("perplexity above the number of points: exit 2, named", r.returncode == 2 and b"perplexity" in r.stderr, r.stderr[-200:])
done()
