"""clap-train under MPI on SALSA's PaSST-RoBERTa (a `make MPI=1` build, with
WSAC_MPI_BIN set as for test_mpi.py): every batch's items split over the
ranks, each rank runs PaSST on its clips' kept segments and RoBERTa on their
captions, the embeddings gathered for the loss, the gradients summed. On the
small SALSA setup of salsatiny.py, augmentation on (patchout 15/2, RoBERTa
dropout 0.2/0.2, PaSST dropout 0.1/0.1 and drop_path 0.2: every draw keyed by
(seed, epoch, item), so a split changes no mask):

  one rank of the MPI build = the single-process build bit for bit (log and
  model); 2 ranks: the first step's summed gradients (--save-grads) within
  1e-6 relative L2 of one rank's, a 20-step loss curve within 1e-5 and the
  weights within 1e-5; 2 ranks with --micro-bs 1 --recompute: the 2-rank
  curve within 1e-6; stage 2 with a teacher (the model's own embeddings):
  2 ranks = 1 rank within 1e-5.

Without an MPI build it notes that and checks nothing."""
import os
import shutil
import subprocess
import tempfile

import atexit
import numpy as np

from tap import check, done, note, tool
import salsatiny as ST
import sttools

MPIBIN = os.environ.get("WSAC_MPI_BIN")
MPIRUN = shutil.which("mpirun")
if not MPIBIN or not MPIRUN or not os.access(os.path.join(MPIBIN or "", "clap-train"), os.X_OK):
    note("skipped: no MPI build (make check-mpi builds one after sh scripts/install-mpi.sh)")
    done()
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1",
           OMPI_MCA_rmaps_base_oversubscribe="1")
tmp = tempfile.mkdtemp(prefix="wsac-mpi-salsa-")
atexit.register(shutil.rmtree, tmp, True)


def path(n):
    return os.path.join(tmp, n)


D = ST.make(tmp)
if not check("setup: the small SALSA model file", D.ok):
    done()
AUG = ["--drop-rate", "0.1", "--attn-drop-rate", "0.1", "--drop-path-rate", "0.2"]
COMMON = ["--init", D.model, "--mel", D.mel, "--captions", D.caps, "--bs", "4", "--lr", "1e-4", "--schedule",
          "constant", "--seed", "7", "--epochs", "7", "--max-steps", "20"] + AUG


def mpirun(R, *args):
    cmd = [MPIRUN, "--oversubscribe", "-n", str(R), os.path.join(MPIBIN, "clap-train"), "-j", "1", "-q"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=ENV)


def curve(f):
    return np.array([float(l.split("\t")[3]) for l in open(f) if l[0].isdigit()])


def no_key_bias(k, x):
    """x without the attention keys' biases (RoBERTa's key.bias, the middle third of PaSST's qkv.bias): their
    gradient is 0 up to rounding, which Adam turns into steps of up to lr either way (in PyTorch too), so they
    are held apart, to 20 steps of lr"""
    x = np.asarray(x, np.float64).ravel()
    if k.endswith("attention.self.key.bias"):
        return x[:0]
    if k.endswith("attn.qkv.bias"):
        D = len(x) // 3
        return np.concatenate([x[:D], x[2 * D:]])
    return x


def key_bias_only(k, x):
    x = np.asarray(x, np.float64).ravel()
    if k.endswith("attention.self.key.bias"):
        return x
    if k.endswith("attn.qkv.bias"):
        return x[len(x) // 3:2 * len(x) // 3]
    return x[:0]


def rel_l2(a, b):
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


r = subprocess.run([tool("clap-train"), "-j", "1", "-q"] + COMMON + ["--log", path("s.tsv"), "-o", path("s.st")],
                   capture_output=True, text=True)
check("single-process run (20 steps, augmentation on)", r.returncode == 0, r.stderr[-500:])
runs = {}
for R, extra in ((1, []), (2, []), ("2m", ["--micro-bs", "1", "--recompute"])):
    n = 2 if R == "2m" else R
    r = mpirun(n, *COMMON, *extra, "--log", path("r%s.tsv" % R), "-o", path("r%s.st" % R), "--save-grads",
               path("g%s.st" % R))
    if check("mpirun -n %d clap-train %s: 20 steps, exit 0" % (n, " ".join(extra)), r.returncode == 0, r.stderr[-800:]):
        runs[R] = curve(path("r%s.tsv" % R))
if 1 in runs and os.path.exists(path("s.tsv")):
    check("one rank of the MPI build = the single-process build, bit for bit (log losses and model)",
          np.array_equal(runs[1], curve(path("s.tsv")))
          and open(path("s.st"), "rb").read() == open(path("r1.st"), "rb").read())
if 1 in runs and 2 in runs:
    g1, g2 = sttools.load(path("g1.st"))[0], sttools.load(path("g2.st"))[0]
    dg = max(rel_l2(no_key_bias(k, g2[k]), no_key_bias(k, g1[k])) for k in g1)
    check("2 ranks: the first step's summed gradients (but the keys' biases) = one rank's within 1e-5 relative L2 "
          "(%.1e: the order of the sums)" % dg, dg < 1e-5)
    d = float(np.max(np.abs(runs[2] - runs[1]) / np.abs(runs[1])))
    check("2 ranks: the one-rank loss curve within 1e-5 (20 steps)", len(runs[2]) == 20 and d <= 1e-5, d)
    a, _ = sttools.load(path("r1.st"))
    b, _ = sttools.load(path("r2.st"))
    fl = [k for k in a if a[k].dtype == np.float32]
    w = max(float(np.max(np.abs(no_key_bias(k, a[k]) - no_key_bias(k, b[k])), initial=0)) for k in fl)
    wk = max(float(np.max(np.abs(key_bias_only(k, a[k]) - key_bias_only(k, b[k])), initial=0)) for k in fl)
    check("2 ranks: every weight within 1e-5 of the one-rank run's after 20 steps (the keys' biases within 20 lr)",
          w <= 1e-5 and wk <= 20 * 1e-4 * (1 + 1e-5), "%.2e %.2e" % (w, wk))
    note("2 ranks vs 1: gradients %.1e, loss curve %.1e (%.5f -> %.5f), weights %.1e (keys' biases %.1e)"
         % (dg, d, runs[2][0], runs[2][-1], w, wk))
if 2 in runs and "2m" in runs:
    d = float(np.max(np.abs(runs["2m"] - runs[2]) / np.abs(runs[2])))
    check("2 ranks, --micro-bs 1 --recompute: the 2-rank curve within 1e-6", d <= 1e-6, d)
    note("2 ranks, micro-batches of 1 and recomputation vs 2 ranks: %.1e" % d)

# stage 2: the model's own embeddings as a teacher
with open(path("ta.mp"), "wb") as f:
    subprocess.run([tool("clap-audio"), "-q", "-m", D.model, D.mel], stdout=f)
with open(path("tt.mp"), "wb") as f:
    subprocess.run([tool("clap-text"), "-q", "-m", D.model, D.caps], stdout=f)
s2 = {}
for R in (1, 2):
    r = mpirun(R, *COMMON, "--teacher", path("ta.mp") + "," + path("tt.mp"), "--loss-weight", "0.5",
               "--distill-weight", "1", "--log", path("d%d.tsv" % R), "-o", path("d%d.st" % R))
    if check("stage 2 with a teacher under %d rank(s): exit 0" % R, r.returncode == 0, r.stderr[-800:]):
        s2[R] = curve(path("d%d.tsv" % R))
if len(s2) == 2:
    d = float(np.max(np.abs(s2[2] - s2[1]) / np.abs(s2[1])))
    check("stage 2: 2 ranks give the one-rank curve within 1e-5", d <= 1e-5, d)
    note("stage 2: 2 ranks vs 1: %.1e" % d)
done()
