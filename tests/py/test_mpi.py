"""clap-train under MPI (a `make MPI=1` build; `make check-mpi` builds it and
runs this with WSAC_MPI_BIN set): every batch split over R ranks, BatchNorm
statistics and gradients summed over the ranks, the loss on the gathered
whole batch. On a small new model and a synthetic task, with dropout and
random crops on (every draw keyed by (seed, epoch, item)):

  one rank of the MPI build is the single-process build bit for bit; 2 and 4
  ranks give the one-rank loss curve within 1e-5 (20 steps, stage 1 and
  stage 2 with a teacher) and its weights within 1e-5; the model written
  under MPI is read by clap-audio; --bs that does not split over the ranks is
  refused by name; a rank killed (SIGKILL) mid-run ends the whole run with a
  non-zero status, and the checkpoint written before is intact and resumes.

Without an MPI build (no WSAC_MPI_BIN, or no mpirun) it notes that and checks
nothing: Open MPI is an optional install (scripts/install-mpi.sh)."""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import numpy as np

from tap import ROOT, VOCAB, check, done, note, tool
import sttools
import toytask

MPIBIN = os.environ.get("WSAC_MPI_BIN")
MPIRUN = shutil.which("mpirun")
if not MPIBIN or not MPIRUN or not os.access(os.path.join(MPIBIN or "", "clap-train"), os.X_OK):
    note("skipped: no MPI build (make check-mpi builds one after sh scripts/install-mpi.sh)")
    done()
ENV = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1", OMPI_MCA_rmaps_base_oversubscribe="1")
# lib/dist.c's collectives and the synchronised BatchNorm on 3 ranks (tests/c/test_dist.c)
tdist = os.path.join(os.environ.get("WSAC_MPI_BUILD", os.path.join(MPIBIN, "..", "build-mpi")), "tests", "test_dist")
if os.access(tdist, os.X_OK):
    r = subprocess.run([MPIRUN, "--oversubscribe", "-n", "3", tdist], capture_output=True, text=True, env=ENV)
    nok = r.stdout.count("ok - ") - r.stdout.count("not ok - ")
    check("test_dist under 3 ranks: collectives and synchronised BatchNorm (%d checks)" % nok,
          r.returncode == 0 and "not ok" not in r.stdout and nok >= 10, (r.stdout + r.stderr)[-600:])
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-mpi-")
tmp = tmpdir.name


def path(n):
    return os.path.join(tmp, n)


def mpirun(R, *args, **kw):
    cmd = [MPIRUN, "--oversubscribe", "-n", str(R), os.path.join(MPIBIN, "clap-train"), "-j", "1", "-q"]
    return subprocess.run(cmd + [str(a) for a in args], capture_output=True, text=True, env=ENV, **kw)


def curve(f):
    return np.array([float(l.split("\t")[3]) for l in open(f) if l[0].isdigit()])


# the toy task of tests/py/toytask.py: 8 sounds x 4 places, 48 frames a clip
toytask.write(path("tr.mp"), path("tr.tsv"), 48, seed=3)
SZ = toytask.SIZES
r = subprocess.run([tool("clap-train"), "--new", "--vocab", VOCAB, "--save-init", path("init.st")] + [str(a) for a in SZ],
                   capture_output=True, text=True)
check("a small new model to train", r.returncode == 0, r.stderr)
# dropout on (the defaults), random 40-frame crops of the 48-frame clips, lr 1e-4: with a rate
# ten times higher Adam turns the last-bit differences of the split sums into visible ones
# within a few steps (measured: 1e-3 of the loss after 15 steps at lr 1e-3)
BASE = ["--mel", path("tr.mp"), "--captions", path("tr.tsv"), "--frames", 40, "--lr", "1e-4", "--schedule", "constant",
        "--seed", 7, "--bs", 16]
COMMON = ["--init", path("init.st")] + BASE + ["--max-steps", 20]

r = subprocess.run([tool("clap-train"), "-j", "1", "-q"] + [str(a) for a in COMMON + ["--log", path("s.tsv"), "-o", path("s.st")]],
                   capture_output=True, text=True)
check("single-process run (20 steps, dropout and crops on)", r.returncode == 0, r.stderr)
runs = {}
for R in (1, 2, 4):
    t0 = time.time()
    r = mpirun(R, *COMMON, "--log", path("r%d.tsv" % R), "-o", path("r%d.st" % R))
    ok = check("mpirun -n %d clap-train: 20 steps, exit 0" % R, r.returncode == 0, r.stderr[-800:])
    note("mpirun -n %d: %.1f s" % (R, time.time() - t0))
    if ok:
        runs[R] = curve(path("r%d.tsv" % R))
base = curve(path("s.tsv")) if os.path.exists(path("s.tsv")) else None
check("one rank of the MPI build = the single-process build, bit for bit (log and model)",
      1 in runs and base is not None and open(path("s.tsv")).read().split("\n")[1].split("\t")[3] ==
      open(path("r1.tsv")).read().split("\n")[1].split("\t")[3] and np.array_equal(runs[1], base) and
      open(path("s.st"), "rb").read() == open(path("r1.st"), "rb").read())
for R in (2, 4):
    if 1 in runs and R in runs and len(runs[R]) == len(runs[1]) == 20:
        d = np.max(np.abs(runs[R] - runs[1]) / np.abs(runs[1]))
        check("%d ranks: the one-rank loss curve within 1e-5 (20 steps)" % R, d <= 1e-5, d)
        note("%d ranks: loss %.6f -> %.6f, max relative deviation from one rank %.2g" % (R, runs[R][0], runs[R][-1], d))
        a, _ = sttools.load(path("r1.st"))
        b, _ = sttools.load(path("r%d.st" % R))
        w = max(float(np.max(np.abs(a[k].astype(np.float64) - b[k]))) for k in a if a[k].dtype == np.float32)
        check("%d ranks: every weight within 1e-5 of the one-rank run's after 20 steps" % R, w <= 1e-5, w)
    else:
        check("%d ranks: a curve to compare" % R, False)
if 1 in runs:
    check("the curve falls (it trains)", runs[1][-5:].mean() < runs[1][:5].mean(), runs[1])

# the model written under MPI is a model
r = subprocess.run([tool("clap-audio"), "-q", "-m", path("r2.st")], stdin=open(path("tr.mp"), "rb"), capture_output=True)
check("clap-audio reads the model 2 ranks wrote", r.returncode == 0 and len(r.stdout) > 0, r.stderr[-300:])

# stage 2: a teacher's embeddings, 1 and 2 ranks
for side, t in (("clap-audio", "ta.mp"), ("clap-text", "tt.mp")):
    args = [tool(side), "-q", "-m", path("r1.st")] + ([] if side == "clap-audio" else [path("tr.tsv")])
    with open(path(t), "wb") as f:
        subprocess.run(args, stdin=open(path("tr.mp"), "rb") if side == "clap-audio" else None, stdout=f)
S2 = COMMON[:1] + [path("r1.st")] + COMMON[2:] + ["--teacher", path("ta.mp") + "," + path("tt.mp"), "--loss-weight", "0.5",
                                                 "--distill-weight", "1"]
s2 = {}
for R in (1, 2):
    r = mpirun(R, *S2, "--log", path("d%d.tsv" % R), "-o", path("d%d.st" % R))
    if check("stage 2 with a teacher under %d rank(s): exit 0" % R, r.returncode == 0, r.stderr[-800:]):
        s2[R] = curve(path("d%d.tsv" % R))
if len(s2) == 2:
    d = np.max(np.abs(s2[2] - s2[1]) / np.abs(s2[1]))
    check("stage 2: 2 ranks give the one-rank curve within 1e-5", d <= 1e-5, d)
    note("stage 2: max relative deviation 2 ranks vs 1: %.2g" % d)

# a batch that does not split
r = mpirun(3, *COMMON, "-o", path("x.st"))
check("--bs 16 over 3 ranks is refused by name (non-zero exit)", r.returncode != 0 and "does not split over 3 ranks" in r.stderr,
      r.stderr[-400:])

# a rank killed mid-run: the run ends, the last checkpoint is intact
ck = path("ck.st")
cmd = [MPIRUN, "--oversubscribe", "-n", "2", os.path.join(MPIBIN, "clap-train"), "-j", "1", "-q"] + \
    [str(a) for a in ["--init", path("init.st")] + BASE] + ["--epochs", "400", "--checkpoint", ck, "-o", path("k.st")]
p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
deadline = time.time() + 120
while not os.path.exists(ck) and time.time() < deadline and p.poll() is None:
    time.sleep(0.2)
time.sleep(0.5)
killed = None
for pid in os.listdir("/proc"):  # a rank: a clap-train process whose parent is mpirun's orted/mpirun
    try:
        cmdline = open("/proc/%s/cmdline" % pid, "rb").read().split(b"\0")
        if cmdline and cmdline[0].endswith(b"/clap-train") and ck.encode() in cmdline and int(pid) != p.pid:
            killed = int(pid)
    except (OSError, ValueError):
        continue
if killed:
    os.kill(killed, signal.SIGKILL)
try:
    out, err = p.communicate(timeout=120)
except subprocess.TimeoutExpired:
    p.kill()
    out, err = p.communicate()
check("a rank killed by SIGKILL ends the whole run with a non-zero status", killed and p.returncode != 0,
      (killed, p.returncode, err[-300:]))
note("mpirun's report: " + " ".join(err.split())[:240])
check("the checkpoint written before is intact: clap-audio reads it", os.path.exists(ck) and subprocess.run(
    [tool("clap-audio"), "-q", "-m", ck], stdin=open(path("tr.mp"), "rb"), capture_output=True).returncode == 0)
steps = int(sttools.load(ck)[1].get("clap.train.steps", 0)) if os.path.exists(ck) else 0
r = mpirun(2, *BASE, "--epochs", 400, "--max-steps", steps + 4, "--resume", ck, "-o", path("k2.st"))
check("and 2 ranks resume from it (4 more steps, exit 0)", steps > 0 and r.returncode == 0, (steps, r.stderr[-300:]))
done()
