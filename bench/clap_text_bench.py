#!/usr/bin/python3
"""clap-text against the same text encoder in PyTorch, for bench/clap_text.sh.

    /usr/bin/python3 bench/clap_text_bench.py [--captions N] [--threads T] [--runs R] [--no-check]
    /usr/bin/python3 bench/clap_text_bench.py --torch --threads T ... --report FILE   (one side)
    /usr/bin/python3 bench/clap_text_bench.py --sgemm --threads T --report FILE

Input: the first N captions of the Clotho development set as tokenized in
../shared/data/wordpiece-dev/clotho-dev-caption1-2000.jsonl (exact BERT ids:
PyTorch gets [CLS] + ids[:28] + [SEP], clap-text gets the text and
tokenizes it itself). Model: the full-size random-weight CLAP file of
tests/full/fullmodel.py (text tower: BERT-base + text_proj, 12 layers x 768).

Both sides are timed warm, model loaded and one caption already encoded:

  batch   all N captions at once. PyTorch as Hugging Face runs a batch:
          padded to the longest caption with an attention mask
          (clapref.text_forward, no_grad). clap-text: one write of the N
          lines to a running `clap-text -j T` process, timed until its N-th
          record has been read back (tokenizing and writing included).
  single  the N captions one at a time: PyTorch one text_forward per
          caption; clap-text one line written, then its record read back,
          then the next line (the latency a caller sees through the pipe,
          tokenizing and msgpack included).

Each is run R times; the best run counts. GFLOP/s are useful work: the
multiply-adds a forward pass over the captions' own tokens needs (x2),
the same figure for both sides (PyTorch computes more, on padding; clap-text
less, only the [CLS] row in the last layer after attention).

Threads: --threads T is `clap-text --threads T`, and for PyTorch
torch.set_num_threads(T) with OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and
MKL_NUM_THREADS set to T before torch loads. With T > 1 Debian's torch 1.13
(OpenMP) and OpenBLAS (its own pthreads) then spin against each other; the
PyTorch side is therefore also run with OMP_WAIT_POLICY=PASSIVE, and the
ratios are taken against the faster of the two.

--sgemm times a 2048^3 float32 matrix product in numpy (OpenBLAS on Debian)
with T threads, best of 7: the peak the GFLOP/s are set against."""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402


def _arg(argv, name, default):
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return default


if "--torch" in sys.argv or "--sgemm" in sys.argv:  # before torch or numpy load
    for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_v] = _arg(sys.argv[1:], "--threads", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(ROOT, "tests", "data", "wordpiece-dev", "clotho-dev-caption1-2000.jsonl")  # in the repository
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests", "full"))
CLS, SEP, MAX_LEN = 101, 102, 30


def captions(n):
    out = []
    with open(DEV, encoding="utf-8") as f:
        for line in f:
            if len(out) == n:
                break
            d = json.loads(line)
            out.append((d["text"], [CLS] + d["ids"][:MAX_LEN - 2] + [SEP]))
    return out


def useful_flops(lens, H=768, I=3072, layers=12, E=1024):
    """2 x the multiply-adds of a forward pass over each caption's own tokens."""
    macs = 0
    for L in lens:
        macs += layers * (L * (4 * H * H + 2 * H * I) + 2 * L * L * H) + H * E + E * E
    return 2.0 * macs


def clap_text_flops(lens, H=768, I=3072, layers=12, E=1024):
    """2 x the multiply-adds clap-text executes (lib/bert.c bert_macs): after
    the last layer's attention (every token's q, k, v) only the [CLS] rows go on."""
    T, B = sum(lens), len(lens)
    att = sum(2 * L * L * H for L in lens)
    full = (layers - 1) * (T * (4 * H * H + 2 * H * I) + att)
    last = T * 3 * H * H + att + B * (H * H + 2 * H * I)
    return 2.0 * (full + last + B * (H * E + E * E))


def sgemm_peak():
    import numpy as np
    n = 2048
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    a @ b
    best = float("inf")
    for _ in range(7):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return {"sgemm_gflops": 2.0 * n ** 3 / best / 1e9}


def torch_side(model, n, threads, runs, emb_out):
    import numpy as np
    import torch
    import clapref
    import sttools
    t_import = time.perf_counter() - T_START
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    tensors, meta = sttools.load(model)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()
          if k.startswith(("text_encoder.", "text_proj."))}
    del tensors
    cfg = clapref.Config.full()
    cfg.heads = int(meta["clap.text.heads"])
    t_load = time.perf_counter() - t0
    caps = captions(n)
    ids = [i for _, i in caps]
    L = max(map(len, ids))
    pad = torch.zeros((n, L), dtype=torch.long)
    mask = torch.zeros((n, L))
    for i, x in enumerate(ids):
        pad[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
    with torch.no_grad():
        clapref.text_forward(sd, cfg, torch.tensor(ids[0]))  # warm-up
        batch, single = [], []
        for _ in range(runs):
            t = time.perf_counter()
            emb = clapref.text_forward(sd, cfg, pad, mask)
            batch.append(time.perf_counter() - t)
            lat = []
            for x in ids:
                t = time.perf_counter()
                clapref.text_forward(sd, cfg, torch.tensor(x))
                lat.append(time.perf_counter() - t)
            single.append(lat)
    if emb_out:
        np.save(emb_out, emb.numpy())
    return {"import_s": t_import, "load_s": t_load, "batch_s": batch, "single_s": single,
            "tokens": sum(map(len, ids)), "padded_tokens": n * L, "threads": torch.get_num_threads()}


class ClapText:
    """A running clap-text process: lines in, records out, one at a time or in bulk."""

    def __init__(self, binary, model, threads):
        import msgpack
        t = time.perf_counter()
        self.p = subprocess.Popen([binary, "-q", "-m", model, "-j", str(threads)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE)
        self.up = msgpack.Unpacker(raw=False, max_buffer_size=2 ** 31 - 1)
        self.fd = self.p.stdout.fileno()
        self.next()  # the header comes once the model is loaded
        self.load_s = time.perf_counter() - t

    def next(self):
        while True:
            for o in self.up:
                return o
            chunk = os.read(self.fd, 1 << 16)
            if not chunk:
                raise RuntimeError("clap-text ended early (exit %s)" % self.p.wait())
            self.up.feed(chunk)

    def send(self, lines):
        os.write(self.p.stdin.fileno(), "".join(lines).encode())

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def clap_side(binary, model, n, threads, runs):
    import numpy as np
    caps = captions(n)
    lines = ["c%d\t%s\n" % (i, t) for i, (t, _) in enumerate(caps)]
    ct = ClapText(binary, model, threads)
    ct.send(["warm\tA dog barks in the distance.\n"])
    ct.next()
    batch, single, emb = [], [], None
    for _ in range(runs):
        t = time.perf_counter()
        ct.send(lines)
        recs = [ct.next() for _ in lines]
        batch.append(time.perf_counter() - t)
        emb = np.stack([np.frombuffer(r["emb"]["data"], np.float32) for r in recs])
        lat = []
        for ln in lines:
            t = time.perf_counter()
            ct.send([ln])
            ct.next()
            lat.append(time.perf_counter() - t)
        single.append(lat)
    ct.close()
    return {"load_s": ct.load_s, "batch_s": batch, "single_s": single}, emb


def report(args):
    import numpy as np
    import fullmodel
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    _, model = fullmodel.ensure()
    binary = os.environ.get("CLAP_TEXT", os.path.join(ROOT, "bin", "clap-text"))
    T, n, R = args.threads, args.captions, args.runs
    me = os.path.abspath(__file__)
    work = os.environ.get("TMPDIR") or "/tmp"
    tag = "%d-%d" % (os.getpid(), T)

    def sub(extra, env=None, name="x"):
        rep = os.path.join(work, "wsac-bench-text-%s-%s.json" % (tag, name))
        e = dict(os.environ, **(env or {}))
        subprocess.run([sys.executable, me, "--threads", str(T), "--captions", str(n), "--runs", str(R),
                        "--report", rep] + extra, check=True, env=e)
        with open(rep) as f:
            d = json.load(f)
        os.unlink(rep)
        return d

    say("sgemm peak, %d thread(s) ..." % T)
    peak = sub(["--sgemm"], name="sgemm")["sgemm_gflops"]
    say("clap-text --threads %d: %d captions, batch and one at a time, %d run(s) ..." % (T, n, R))
    c, cemb = clap_side(binary, model, n, T, R)
    torch_runs = [("torch.set_num_threads(%d)" % T, {})]
    if T > 1:
        torch_runs.append(("  same, OMP_WAIT_POLICY=PASSIVE", {"OMP_WAIT_POLICY": "PASSIVE"}))
    tres = []
    for i, (label, env) in enumerate(torch_runs):
        say("PyTorch, %s ..." % label.strip())
        extra = ["--torch"]
        npy = os.path.join(work, "wsac-bench-text-%s.npy" % tag)
        if i == 0 and not args.no_check:
            extra += ["--emb", npy]
        tres.append((label, sub(extra, env, name="torch%d" % i)))
        if i == 0 and not args.no_check:
            temb = np.load(npy)
            os.unlink(npy)
            cos = (cemb * temb).sum(1) / np.linalg.norm(cemb, axis=1) / np.linalg.norm(temb, axis=1)
            check = "max |clap-text - PyTorch| = %.2e, min cosine %.8f over the %d embeddings" % (
                float(np.abs(cemb - temb).max()), float(cos.min()), n)
    caps = captions(n)
    lens = [len(i) for _, i in caps]
    fl = useful_flops(lens)
    fl1 = fl / n

    def best_single(runs_):
        # the run with the lowest mean latency; its mean and median
        means = [sum(r) / len(r) for r in runs_]
        r = runs_[means.index(min(means))]
        return min(means), sorted(r)[len(r) // 2]

    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch  # noqa: F401 (version only)
    print()
    print("wsac clap-text benchmark, %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("machine : %s, nproc %d, %s, load avg %s (at end)" % (cpu, os.cpu_count(), os.uname().release,
                                                                " ".join(open("/proc/loadavg").read().split()[:3])))
    print("threads : %d (clap-text --threads %d; torch.set_num_threads(%d), OMP/OPENBLAS/MKL_NUM_THREADS=%d)"
          % (T, T, T, T))
    print("model   : %s: BERT-base (12 x 768, 12 heads) + text_proj -> 1024, random weights" % model)
    print("input   : %d Clotho dev captions, %d tokens with [CLS]/[SEP] (mean %.1f, longest %d; padded batch %d)"
          % (n, sum(lens), sum(lens) / n, max(lens), n * max(lens)))
    print("work    : %.1f GFLOP useful (%.2f per caption on average)" % (fl / 1e9, fl1 / 1e9))
    print("sgemm   : %.1f GFLOP/s OpenBLAS peak (numpy 2048^3 float32, %d thread(s), best of 7)" % (peak, T))
    if not args.no_check:
        print("check   : %s" % check)
    print("timing  : warm (model loaded, one caption encoded first); best of %d run(s)" % R)
    print("          clap-text process start to first record possible: %.2f s (model load)" % c["load_s"])
    for label, t in tres:
        print("          PyTorch %s: imports %.2f s, weights %.2f s" % (label.strip(), t["import_s"], t["load_s"]))
    print()
    print("%-36s %10s %9s %7s %9s" % ("", "batch s", "GFLOP/s", "%peak", "ratio"))
    cb = min(c["batch_s"])
    best_tb = min(min(t["batch_s"]) for _, t in tres)
    print("%-36s %10.3f %9.1f %6.0f%% %9s" % ("clap-text, %d captions at once" % n, cb, fl / cb / 1e9,
                                               100 * fl / cb / 1e9 / peak, "%.2fx" % (best_tb / cb)))
    for label, t in tres:
        tb = min(t["batch_s"])
        print("%-36s %10.3f %9.1f %6.0f%%" % ("PyTorch " + label, tb, fl / tb / 1e9, 100 * fl / tb / 1e9 / peak))
    ex = clap_text_flops(lens)
    pt_ex = useful_flops([max(lens)] * n)
    print("(executed: clap-text %.1f GFLOP = %.1f GFLOP/s, %.0f%% of peak; PyTorch %.1f GFLOP with the padding)"
          % (ex / 1e9, ex / cb / 1e9, 100 * ex / cb / 1e9 / peak, pt_ex / 1e9))
    print()
    print("%-36s %10s %9s %7s %9s" % ("", "ms/caption", "median", "GFLOP/s", "ratio"))
    cm, cmed = best_single(c["single_s"])
    best_tm = min(best_single(t["single_s"])[0] for _, t in tres)
    print("%-36s %10.1f %9.1f %7.1f %9s" % ("clap-text, one caption at a time", 1e3 * cm, 1e3 * cmed, fl1 / cm / 1e9,
                                             "%.2fx" % (best_tm / cm)))
    for label, t in tres:
        tm, tmed = best_single(t["single_s"])
        print("%-36s %10.1f %9.1f %7.1f" % ("PyTorch " + label, 1e3 * tm, 1e3 * tmed, fl1 / tm / 1e9))
    print()
    print("ratio = the faster PyTorch time / clap-text's. Single captions: mean latency per caption of the best")
    print("run (clap-text: line written to record read, through the pipe; PyTorch: one text_forward call).")
    print("all runs (batch s; mean ms per single caption):")
    print("  clap-text: %s; %s" % (" ".join("%.3f" % x for x in c["batch_s"]),
                                   " ".join("%.1f" % (1e3 * sum(r) / len(r)) for r in c["single_s"])))
    for label, t in tres:
        print("  PyTorch %s: %s; %s" % (label.strip(), " ".join("%.3f" % x for x in t["batch_s"]),
                                         " ".join("%.1f" % (1e3 * sum(r) / len(r)) for r in t["single_s"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captions", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--sgemm", action="store_true")
    ap.add_argument("--report")
    ap.add_argument("--emb")
    args = ap.parse_args()
    if not 1 <= args.captions <= 2000 or args.threads < 1 or args.runs < 1:
        ap.error("--captions 1..2000, --threads and --runs >= 1")
    if args.sgemm or args.torch:
        if args.sgemm:
            rep = sgemm_peak()
        else:
            import fullmodel
            rep = torch_side(fullmodel.ensure()[1], args.captions, args.threads, args.runs, args.emb)
        with open(args.report, "w") as f:
            json.dump(rep, f)
        return 0
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
