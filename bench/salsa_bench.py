#!/usr/bin/python3
"""SALSA's towers in wsac (clap-audio / clap-text -m salsa.safetensors) against
PyTorch, for bench/salsa.sh.

    /usr/bin/python3 bench/salsa_bench.py [--segments K] [--captions N] [--threads T] [--runs R]
    /usr/bin/python3 bench/salsa_bench.py --torch --threads T ... --report FILE   (the PyTorch side)
    /usr/bin/python3 bench/salsa_bench.py --sgemm --threads T --report FILE

Model: the full-size random-weight SALSA checkpoint of tests/full/fullsalsa.py
(PaSST-S 12 x 768 + RoBERTa-large 24 x 1024, the published Lightning layout;
made once and cached) and its converted model file. Both sides run warm
(weights loaded, one item done first), float32, T threads
(clap-* --threads T; torch.set_num_threads(T) with OMP/OPENBLAS/MKL_NUM_THREADS
= T), best of R runs:

  PaSST   K clips of exactly 10 s (one kept segment each under SALSA's rule).
          wsac: a running `clap-audio -m salsa.safetensors -j T`, K mel records
          written, timed until the K-th embedding is read back. PyTorch: the
          published modules (scripts/passtref.py: hear21passt's PaSST, eval
          mode, no_grad) on the batch of K segments [K, 1, 128, 1000] as
          SALSA's forward_audio feeds them, + project_audio. Per segment.
  RoBERTa N Clotho captions. wsac: a running `clap-text`, N lines written,
          timed until the N-th record is read; then one caption at a time
          (line written -> record read). PyTorch: scripts/robertaref.py (HF
          RobertaModel's computation, SALSA's forward_sentence) on the batch
          padded to 32 tokens (padding='max_length', max_length=32, as
          published), and on single captions (also padded to 32, as the
          published code pads every batch).

FLOPs are useful work, 2 x multiply-adds of the forward pass over the real
tokens (PaSST: 498 tokens per 10-s segment; RoBERTa: each caption's own BPE
tokens); the same figure for both sides. The fraction of peak is against the
float32 sgemm peak measured in the same run (bench/clap_text_bench.py's:
numpy 2048^3, best of 7). Peak RSS: VmHWM of the wsac process (weights are
mmap'd: the pages touched count), ru_maxrss of the PyTorch process."""
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
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests", "full"))
sys.path.insert(0, os.path.join(ROOT, "bench"))
BPE_DIR = os.path.join(ROOT, "tests", "data", "roberta-bpe")
SEG_TOKENS = 8 * 62 + 2  # PaSST-S on 128 x 1000: 8 x 62 patches + cls + dist


def passt_flops(T=SEG_TOKENS, D=768, mlp=3072, depth=12, E=1024):
    macs = depth * (T * (4 * D * D + 2 * D * mlp) + 2 * T * T * D) + (T - 2) * 256 * D + D * E
    return 2.0 * macs


def roberta_flops(L, H=1024, I=4096, layers=24, E=1024):
    return 2.0 * (layers * (L * (4 * H * H + 2 * H * I) + 2 * L * L * H) + H * E)


def captions(n):
    import clap_text_bench
    return [t for t, _ in clap_text_bench.captions(n)]


def token_lens(caps):
    import bperef
    import robertaref
    bpe = bperef.BPE(os.path.join(BPE_DIR, "vocab.json"), os.path.join(BPE_DIR, "merges.txt"))
    _, mask = robertaref.tokenize(bpe, caps, bpe.encoder["<pad>"])
    return [int(x) for x in mask.sum(1)]


def maxrss_mb():
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def torch_side(ckpt, K, n, threads, runs):
    import numpy as np
    import torch
    import passtref
    import robertaref
    import bperef
    t_import = time.perf_counter() - T_START
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    sd = torch.load(ckpt, map_location="cpu")["state_dict"]
    cfg = passtref.Config.full()
    m = passtref.load(sd, cfg)
    tsd = {k: v for k, v in sd.items() if k.startswith((robertaref.TX, robertaref.PROJ))}
    del sd
    t_load = time.perf_counter() - t0
    res = {"import_s": t_import, "load_s": t_load, "threads": torch.get_num_threads()}
    rng = np.random.default_rng(0)
    segs = torch.from_numpy(rng.standard_normal((K, 1, 128, 1000)).astype(np.float32))
    with torch.no_grad():
        m.project_audio(m.passt(segs[:1])[1])  # warm-up
        ts = []
        for _ in range(runs):
            t = time.perf_counter()
            m.project_audio(m.passt(segs)[1])
            ts.append(time.perf_counter() - t)
        res["passt_s"] = ts
        res["rss_after_passt_mb"] = maxrss_mb()
        bpe = bperef.BPE(os.path.join(BPE_DIR, "vocab.json"), os.path.join(BPE_DIR, "merges.txt"))
        pad = bpe.encoder["<pad>"]
        caps = captions(n)
        ids, mask = robertaref.tokenize(bpe, caps, pad)  # [n, 32]: padding='max_length'
        robertaref.ids_forward(tsd, 16, ids[:1], mask[:1], pad)  # warm-up
        tb, tsing = [], []
        for _ in range(runs):
            t = time.perf_counter()
            robertaref.ids_forward(tsd, 16, ids, mask, pad)
            tb.append(time.perf_counter() - t)
            lat = []
            for i in range(n):
                t = time.perf_counter()
                robertaref.ids_forward(tsd, 16, ids[i:i + 1], mask[i:i + 1], pad)
                lat.append(time.perf_counter() - t)
            tsing.append(lat)
        res["text_batch_s"], res["text_single_s"] = tb, tsing
    res["rss_mb"] = maxrss_mb()
    return res


class Proc:
    """A running clap-audio / clap-text: bytes in, msgpack objects out."""

    def __init__(self, argv):
        import msgpack
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.up = msgpack.Unpacker(raw=False, max_buffer_size=2 ** 31 - 1)
        self.fd = self.p.stdout.fileno()

    def next(self):
        while True:
            for o in self.up:
                return o
            chunk = os.read(self.fd, 1 << 20)
            if not chunk:
                raise RuntimeError("%s ended early (exit %s)" % (self.p.args[0], self.p.wait()))
            self.up.feed(chunk)

    def send(self, data):
        self.p.stdin.write(data)
        self.p.stdin.flush()

    def hwm_mb(self):
        for line in open("/proc/%d/status" % self.p.pid):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
        return float("nan")

    def close(self):
        self.p.stdin.close()
        self.p.wait()


def mel_records(K, work):
    """wav2mel --frontend passt on a 10-s noise clip: the header and K records (packed)."""
    import msgpack
    import numpy as np
    import soundfile as sf
    wav = os.path.join(work, "wsac-bench-salsa-%d.wav" % os.getpid())
    sf.write(wav, (0.1 * np.random.default_rng(1).standard_normal(320000)).astype(np.float32), 32000,
             subtype="FLOAT")
    out = subprocess.run([os.path.join(os.environ["WSAC_BIN"], "wav2mel"), "-q", "--frontend", "passt", wav],
                         capture_output=True, check=True).stdout
    os.unlink(wav)
    objs = list(msgpack.Unpacker(__import__("io").BytesIO(out), raw=False, max_buffer_size=2 ** 31 - 1))
    hdr, rec = objs[0], [o for o in objs if isinstance(o, dict) and "key" in o][0]
    recs = []
    for i in range(K + 1):
        r = dict(rec)
        r["key"] = "seg%d" % i
        recs.append(msgpack.packb(r, use_bin_type=True))
    return msgpack.packb(hdr, use_bin_type=True), recs


def wsac_side(model, K, n, threads, runs, work):
    b = os.environ["WSAC_BIN"]
    hdr, recs = mel_records(K, work)
    t = time.perf_counter()
    ca = Proc([os.path.join(b, "clap-audio"), "-q", "-m", model, "-j", str(threads)])
    ca.send(hdr + recs[0])
    ca.next()
    ca.next()  # header, warm record
    load_a = time.perf_counter() - t
    pa = []
    for _ in range(runs):
        t = time.perf_counter()
        ca.send(b"".join(recs[1:]))
        for _ in range(K):
            ca.next()
        pa.append(time.perf_counter() - t)
    rss_a = ca.hwm_mb()
    import msgpack
    ca.send(msgpack.packb({"end": True, "records": 1 + runs * K, "errors": 0, "failed": []}, use_bin_type=True))
    ca.close()
    caps = captions(n)
    lines = [("c%d\t%s\n" % (i, c)).encode() for i, c in enumerate(caps)]
    t = time.perf_counter()
    ct = Proc([os.path.join(b, "clap-text"), "-q", "-m", model, "-j", str(threads)])
    ct.send(b"warm\tA dog barks in the distance.\n")
    ct.next()
    ct.next()
    load_t = time.perf_counter() - t
    tb, tsing = [], []
    for _ in range(runs):
        t = time.perf_counter()
        ct.send(b"".join(lines))
        for _ in lines:
            ct.next()
        tb.append(time.perf_counter() - t)
        lat = []
        for ln in lines:
            t = time.perf_counter()
            ct.send(ln)
            ct.next()
            lat.append(time.perf_counter() - t)
        tsing.append(lat)
    rss_t = ct.hwm_mb()
    ct.close()
    return {"load_audio_s": load_a, "load_text_s": load_t, "passt_s": pa, "text_batch_s": tb, "text_single_s": tsing,
            "rss_audio_mb": rss_a, "rss_text_mb": rss_t}


def report(args):
    import clap_text_bench  # noqa: F401 (sgemm peak: its --sgemm side)
    import fullsalsa
    say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    ckpt, model = fullsalsa.ensure()
    T, K, n, R = args.threads, args.segments, args.captions, args.runs
    work = os.environ.get("TMPDIR") or "/tmp"
    tag = "%d-%d" % (os.getpid(), T)
    load0 = open("/proc/loadavg").read().split()[:3]

    def sub(script, extra, name):
        rep = os.path.join(work, "wsac-bench-salsa-%s-%s.json" % (tag, name))
        subprocess.run([sys.executable, script, "--threads", str(T), "--report", rep] + extra, check=True)
        with open(rep) as f:
            d = json.load(f)
        os.unlink(rep)
        return d

    say("sgemm peak, %d thread(s) ..." % T)
    peak = sub(os.path.join(ROOT, "bench", "clap_text_bench.py"), ["--sgemm"], "sgemm")["sgemm_gflops"]
    say("wsac: clap-audio on %d 10-s clips, clap-text on %d captions, %d run(s) ..." % (K, n, R))
    w = wsac_side(model, K, n, T, R, work)
    say("PyTorch (passtref / robertaref), the same ...")
    p = sub(os.path.abspath(__file__), ["--torch", "--segments", str(K), "--captions", str(n), "--runs", str(R)],
            "torch")
    caps = captions(n)
    lens = token_lens(caps)
    fseg = passt_flops()
    fcap = [roberta_flops(L) for L in lens]
    ftext = sum(fcap)
    fpad = roberta_flops(32) * n
    msize = os.path.getsize(model) / 2 ** 20
    load1 = open("/proc/loadavg").read().split()[:3]
    cpu = "?"
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break

    def mean_best(runs_):
        return min(sum(r) / len(r) for r in runs_)

    print()
    print("wsac SALSA benchmark, %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("machine : %s, nproc %d, load avg %s (start) / %s (end)" % (cpu, os.cpu_count(), " ".join(load0),
                                                                     " ".join(load1)))
    print("threads : %d (clap-audio/clap-text -j %d; torch.set_num_threads(%d), OMP/OPENBLAS/MKL_NUM_THREADS=%d)"
          % (T, T, T, T))
    print("model   : %s (%.0f MiB): PaSST-S + RoBERTa-large, random weights" % (model, msize))
    print("work    : PaSST %.1f GFLOP per 10-s segment (498 tokens); RoBERTa %.2f GFLOP per caption on average"
          % (fseg / 1e9, ftext / n / 1e9))
    print("          (%d captions, %d BPE tokens, mean %.1f; padded to 32: %.2f GFLOP per caption)"
          % (n, sum(lens), sum(lens) / n, roberta_flops(32) / 1e9))
    print("sgemm   : %.1f GFLOP/s (numpy 2048^3 float32, %d thread(s), best of 7)" % (peak, T))
    print("timing  : warm, best of %d run(s); wsac model load %.2f s (audio) %.2f s (text); PyTorch imports %.1f s,"
          " checkpoint %.1f s" % (R, w["load_audio_s"], w["load_text_s"], p["import_s"], p["load_s"]))
    print()
    print("%-44s %10s %9s %7s %8s" % ("", "seconds", "GFLOP/s", "%peak", "ratio"))
    ws_, ps = min(w["passt_s"]) / K, min(p["passt_s"]) / K
    print("%-44s %10.3f %9.1f %6.0f%% %7.2fx" % ("PaSST, per 10-s segment: wsac clap-audio", ws_, fseg / ws_ / 1e9,
                                                  100 * fseg / ws_ / 1e9 / peak, ps / ws_))
    print("%-44s %10.3f %9.1f %6.0f%%" % ("  PyTorch (batch of %d segments)" % K, ps, fseg / ps / 1e9,
                                         100 * fseg / ps / 1e9 / peak))
    wb, pb = min(w["text_batch_s"]), min(p["text_batch_s"])
    print("%-44s %10.3f %9.1f %6.0f%% %7.2fx" % ("RoBERTa, %d captions: wsac clap-text" % n, wb, ftext / wb / 1e9,
                                                  100 * ftext / wb / 1e9 / peak, pb / wb))
    print("%-44s %10.3f %9.1f %6.0f%%   (executed with padding: %.1f GFLOP/s)"
          % ("  PyTorch (batch padded to 32)", pb, ftext / pb / 1e9, 100 * ftext / pb / 1e9 / peak, fpad / pb / 1e9))
    wsg, psg = mean_best(w["text_single_s"]), mean_best(p["text_single_s"])
    print("%-44s %10.4f %9.1f %6.0f%% %7.2fx" % ("RoBERTa, one caption (mean): wsac clap-text", wsg,
                                                  ftext / n / wsg / 1e9, 100 * ftext / n / wsg / 1e9 / peak, psg / wsg))
    print("%-44s %10.4f %9.1f %6.0f%%" % ("  PyTorch (padded to 32)", psg, ftext / n / psg / 1e9,
                                         100 * ftext / n / psg / 1e9 / peak))
    print()
    print("peak RSS: clap-audio %.0f MiB, clap-text %.0f MiB (model file %.0f MiB; target <= file + 512 MiB);"
          " PyTorch %.0f MiB (whole checkpoint loaded)" % (w["rss_audio_mb"], w["rss_text_mb"], msize, p["rss_mb"]))
    print("ratio = PyTorch time / wsac time. all runs: wsac PaSST %s, text %s, single %s; PyTorch PaSST %s, text %s,"
          " single %s" % (" ".join("%.2f" % x for x in w["passt_s"]), " ".join("%.2f" % x for x in w["text_batch_s"]),
                          " ".join("%.1fms" % (1e3 * sum(r) / len(r)) for r in w["text_single_s"]),
                          " ".join("%.2f" % x for x in p["passt_s"]), " ".join("%.2f" % x for x in p["text_batch_s"]),
                          " ".join("%.1fms" % (1e3 * sum(r) / len(r)) for r in p["text_single_s"])))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--segments", type=int, default=4)
    ap.add_argument("--captions", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--torch", action="store_true")
    ap.add_argument("--sgemm", action="store_true")
    ap.add_argument("--report")
    args = ap.parse_args()
    if not 1 <= args.segments <= 256 or not 1 <= args.captions <= 2000 or args.threads < 1 or args.runs < 1:
        ap.error("--segments 1..256, --captions 1..2000, --threads and --runs >= 1")
    if args.torch:
        import fullsalsa
        rep = torch_side(fullsalsa.ensure()[0], args.segments, args.captions, args.threads, args.runs)
        with open(args.report, "w") as f:
            json.dump(rep, f)
        return 0
    report(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
