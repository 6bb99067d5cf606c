"""What the training benchmarks (clap_train_torch.py, salsa_train_torch.py)
share: processes timed under GNU time, clap-train's per-step seconds from its
log, the sgemm ceiling, the report's machine lines, padded token batches."""
import os
import subprocess
import sys
import time


def say(m):
    print(m, file=sys.stderr, flush=True)


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def timed(cmd, env=None):
    """run under GNU time: (stdout, stderr, peak RSS MB, wall s)"""
    t = time.perf_counter()
    r = subprocess.run(["/usr/bin/time", "-f", "RSSKB %M"] + cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit("failed (%d): %s\n%s" % (r.returncode, " ".join(cmd), r.stderr[-2000:]))
    rss = [int(x.split()[1]) for x in r.stderr.splitlines() if x.startswith("RSSKB ")][-1] / 1024.0
    return r.stdout, r.stderr, rss, wall


def sgemm_peak(path, threads):
    """bench/sgemm_peak.c's GFLOP/s on `threads` threads; NaN without it"""
    if not path:
        return float("nan")
    return float(subprocess.run([path, str(threads)], capture_output=True, text=True, check=True).stdout)


def log_steps(log):
    """seconds of each step from clap-train's --log (its last column: wall clock since training began)"""
    cum = [float(x.split("\t")[-1]) for x in open(log).read().splitlines()[1:] if not x.startswith("#")]
    return [cum[0]] + [cum[i] - cum[i - 1] for i in range(1, len(cum))]


def machine_lines(threads, peaks):
    """the report's machine, threads, sgemm and torch lines; peaks: [at the start, at the end]"""
    import torch
    cpu = [x.split(":", 1)[1].strip() for x in open("/proc/cpuinfo") if x.startswith("model name")]
    T_ = threads
    print("machine : %s, nproc %d, load avg %s (at end)" % (cpu[0] if cpu else "?", os.cpu_count(), loadavg()))
    print("threads : %d (clap-train -j %d; torch.set_num_threads(%d), OMP/OPENBLAS/MKL_NUM_THREADS=%d)" % (
        T_, T_, T_, T_))
    print("sgemm   : %.1f GFLOP/s peak (OpenBLAS, 2048^3, best of 5, same threads; at the start %.1f, at the end %.1f)"
          % (max(peaks), peaks[0], peaks[1]))
    print("torch   : %s" % torch.__version__)


def padded(ids, pad):
    """token id lists -> (ids [N, L] padded with pad, attention mask [N, L]), L the longest"""
    import torch
    L = max(len(x) for x in ids)
    tok = torch.full((len(ids), L), pad, dtype=torch.long)
    msk = torch.zeros(len(ids), L, dtype=torch.long)
    for r, x in enumerate(ids):
        tok[r, :len(x)] = torch.tensor(x)
        msk[r, :len(x)] = 1
    return tok, msk


def threads_env(threads):
    """OMP/OpenBLAS/MKL thread counts, set before torch is imported"""
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(v, str(threads))
