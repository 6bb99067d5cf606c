"""bench/prefixdec.sh's driver and its PyTorch side: WSAC's published decoder
training step and decoding loops, timed against bin/prefixdec (the model is
scripts/decref.py's; see bench/README.md).

  prefixdec_torch.py bench [--threads T] [--steps N] [--vocabs 50257,30522] ...   the whole benchmark
  prefixdec_torch.py train --vocab V --threads T --steps N --captions JSONL [--dropout P] [--double]
  prefixdec_torch.py decode --vocab V --threads T --emb STREAM --mode published|cached|batched --n N

train and decode print one JSON object on stdout. Thread counts: torch.set_num_threads(T) and
OMP/OPENBLAS/MKL_NUM_THREADS=T set before torch is imported (Debian's torch
multiplies in OpenBLAS, whose pool torch.set_num_threads does not limit).
"""
import argparse
import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
WORK = None


def setup_threads(t):
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = str(t)
    global torch, decref, ws, np
    import numpy as np  # noqa: F401
    import torch
    torch.set_num_threads(t)
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    import decref
    import wsacstream as ws  # noqa: F401


def load_caps(path, double):
    caps = [json.loads(l) for l in open(path)]
    if double:
        # no padding at all: every caption made longer than max_seq_len
        caps = [{"text": c["text"] + " " + c["text"] + " " + c["text"], "ids": c["ids"] * 3} for c in caps]
    return caps


# ---------------------------------------------------------------- the benchmark

def sh(cmd, **kw):
    return __import__("subprocess").run(cmd, capture_output=True, text=True, **kw)


def timed(cmd, env=None):
    """(wall seconds, peak RSS MB, completed process) of cmd under GNU time."""
    tf = os.path.join(WORK, "time.out")
    t0 = time.perf_counter()
    p = sh(["/usr/bin/time", "-f", "%M", "-o", tf] + cmd, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit("prefixdec bench: %s failed (%d): %s" % (cmd[0], p.returncode, p.stderr[-2000:]))
    return wall, float(open(tf).read().split()[-1]) / 1024.0, p


def torch_json(args, env=None):
    _, rss, p = timed([sys.executable, os.path.abspath(__file__)] + args,
                      env=dict(os.environ, **env) if env else None)
    out = json.loads(p.stdout)
    out["process_rss_mb"] = rss
    return out


def body_flops(rows, L=4, C=768, F=3072):
    return 2.0 * rows * L * (3 * C * C + C * C + 2 * C * F)


def cmd_bench(a):
    global WORK
    setup_threads(1)
    import tempfile
    WORK = tempfile.mkdtemp(prefix="wsac-bench-prefixdec.")
    T = a.threads
    pd = a.prefixdec
    say = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    peak = float(sh([a.sgemm_peak, str(T)]).stdout) if a.sgemm_peak else float("nan")
    caps_path = os.path.join(ROOT, "tests", "data", "wordpiece-dev", "clotho-dev-caption1-2000.jsonl")  # in the repository
    need = (a.steps + 1) * 64
    g = np.random.default_rng(0)
    emb = g.standard_normal((max(need, a.decode), 1024)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    streams = {}
    for double in (False, True):
        caps = load_caps(caps_path, double)[:need]
        path = os.path.join(WORK, "train%s.mp" % ("-long" if double else ""))
        with open(path, "wb") as f:
            ws.write_stream(f, "clap-text", [{"key": "c%d" % i, "emb": emb[i], "text": c["text"]}
                                             for i, c in enumerate(caps)])
        streams[double] = path
    dec_path = os.path.join(WORK, "dec.mp")
    with open(dec_path, "wb") as f:
        ws.write_stream(f, "clap-audio", [{"key": "a%d" % i, "emb": emb[i]} for i in range(a.decode)])
    rows = []
    for V in a.vocabs:
        say("prefixdec bench: vocab %d: the model ..." % V)
        pt, st = decref.full_checkpoint(vocab=V, log=sys.stderr)
        for double in (False, True):
            what = "no padding" if double else "Clotho captions"
            say("prefixdec bench: vocab %d, %s: prefixdec train --threads %d ..." % (V, what, T))
            log = os.path.join(WORK, "log.tsv")
            wall, rss, p = timed([pd, "train", streams[double], "--init", st, "-o", os.path.join(WORK, "ck.st"),
                                  "--epochs", "1", "--bs", "64", "--shuffle", "none", "--log", log,
                                  "--threads", str(T), "-q"])
            lines = [l.split("\t") for l in open(log).read().splitlines()[1:]][1:]  # first step: warm-up
            # per step: tokens per second and matrix-product FLOP; the median
            # step stands for the run (robust to a busy neighbour)
            c_steps = sorted(((float(l[7]), int(l[5]),
                               3 * body_flops(int(l[6])) + 3 * 2.0 * int(l[5]) * 768 * V + 4.0 * 64 * 1024 * 768)
                              for l in lines), key=lambda x: x[1] / x[0])
            c_s, c_tok, c_flop = c_steps[len(c_steps) // 2]
            os.unlink(os.path.join(WORK, "ck.st"))
            say("prefixdec bench: vocab %d, %s: PyTorch, %d threads ..." % (V, what, T))
            targs = ["train", "--vocab", str(V), "--threads", str(T), "--steps", str(a.torch_steps), "--warmup",
                     str(a.torch_warmup), "--captions", caps_path] + (["--double"] if double else [])
            # with T > 1, Debian's torch (OpenMP threads spinning when idle)
            # and OpenBLAS's own threads fight over the cores; a second run
            # with OMP_WAIT_POLICY=PASSIVE, and the faster of the two counts
            tjs = [torch_json(targs)] + ([torch_json(targs, {"OMP_WAIT_POLICY": "PASSIVE"})] if T > 1 else [])
            meds = []
            for tj in tjs:
                t_steps = sorted(zip(tj["seconds"], tj["tokens"]), key=lambda x: x[1] / x[0])
                meds.append(t_steps[len(t_steps) // 2])
            best = min(range(len(tjs)), key=lambda i: meds[i][0] / meds[i][1])
            tj, (t_s, t_tok) = tjs[best], meds[best]
            t_flop = 3 * body_flops(64 * 23) + 3 * 2.0 * 64 * 23 * 768 * V
            rows.append({"vocab": V, "what": what, "c_step": c_s, "c_tps": c_tok / c_s,
                         "c_gflops": c_flop / c_s / 1e9, "c_rss": rss, "t_step": t_s,
                         "t_tps": t_tok / t_s, "t_gflops": t_flop / t_s / 1e9, "t_rss": tj["process_rss_mb"],
                         "c_rows": sum(int(l[6]) for l in lines) / len(lines), "c_loss": float(lines[-1][3]),
                         "t_loss": tj["losses"][-1],
                         "c_all": ["%.2f" % float(l[7]) for l in lines],
                         "t_all": " / ".join(" ".join("%.2f" % x for x in t["seconds"]) for t in tjs),
                         "t_passive": best == 1})
    # decoding, vocab 50257 (the published checkpoint's)
    V = a.vocabs[0]
    pt, st = decref.full_checkpoint(vocab=V)
    say("prefixdec bench: decoding %d captions with prefixdec decode --threads %d ..." % (a.decode, T))
    wall, c_rss, p = timed([pd, "decode", "-m", st, "--ids", "-v", "--threads", str(T), dec_path])
    c_ids = [[int(x) for x in l.split("\t")[1].split()] for l in p.stdout.splitlines()]
    stats = [l for l in p.stderr.splitlines() if "decode stats" in l]
    c_dec = float(stats[0].split(" s,")[0].split()[-1]) if stats else wall
    c_gf = float(stats[0].split("GFLOP/s")[0].split()[-1]) if stats else float("nan")
    dec = {}
    for mode, n in (("published", a.published), ("cached", a.cached), ("batched", a.decode)):
        say("prefixdec bench: decoding %d captions, PyTorch %s loop ..." % (n, mode))
        dec[mode] = torch_json(["decode", "--vocab", str(V), "--threads", str(T), "--emb", dec_path, "--mode", mode,
                                "--n", str(n)])
    same = all(dec[m]["ids"][i] == c_ids[i] for m in dec for i in range(len(dec[m]["ids"])))
    # ---------------------------------------------------------------- report
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][:1]
    print("\nwsac prefixdec benchmark, %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    print("machine : %s, nproc %d, load avg %s (at end)" % (cpu[0] if cpu else "?", os.cpu_count(),
                                                          " ".join(open("/proc/loadavg").read().split()[:3])))
    print("threads : %d (prefixdec --threads %d; torch.set_num_threads(%d), OMP/OPENBLAS_NUM_THREADS=%d)" % (T, T, T, T))
    print("sgemm   : %.1f GFLOP/s peak (OpenBLAS, 2048^3, best of 5, same threads)" % peak)
    print("torch   : %s" % torch.__version__)
    print("\ntraining: batch 64, max-seq-len 22 (+ the prefix), dropout 0.1, noise 0.001, AdamW; full-size decoder")
    print("  (4 layers, 4 heads, width 768); untimed warm-up steps first: C 1, PyTorch %d (PyTorch settles over"
          % a.torch_warmup)
    print("  ~4 steps);")
    print("  tokens = caption tokens the loss counts (not padding), the same batches on both sides;")
    print("  C: %d steps, PyTorch: %d steps, each side's median step; GFLOP/s counts matrix products (PyTorch:\n"
          "  the padded batch it computes); C GF/s also as %% of the sgemm peak" % (a.steps, a.torch_steps))
    hdr = "%-6s %-16s %9s %9s %9s %11s %11s %9s %9s %8s" % ("vocab", "captions", "C s/step", "C tok/s", "C GF/s",
                                                          "torch s/st", "torch tok/s", "ratio", "C RSS MB",
                                                          "torch RSS")
    print(hdr)
    for r in rows:
        print("%-6d %-16s %9.2f %9.0f %5.0f %3.0f%% %11.2f %11.0f %8.2fx %9.0f %8.0f" % (
            r["vocab"], r["what"], r["c_step"], r["c_tps"], r["c_gflops"], 100 * r["c_gflops"] / peak, r["t_step"],
            r["t_tps"], r["c_tps"] / r["t_tps"], r["c_rss"], r["t_rss"]))
    print("  (the median step of each side; C rows per step: %s; PyTorch always runs 64 x 23 = 1472;\n"
          "   last losses C %s, torch %s)" % (
        ", ".join("%.0f" % r["c_rows"] for r in rows), ", ".join("%.3f" % r["c_loss"] for r in rows),
        ", ".join("%.3f" % r["t_loss"] for r in rows)))
    print("  PyTorch GFLOP/s: %s" % ", ".join("%.0f (%.0f%%)" % (r["t_gflops"], 100 * r["t_gflops"] / peak) for r in rows))
    print("  all steps, seconds (C | PyTorch):")
    for r in rows:
        print("    %-6d %-16s %s | %s" % (r["vocab"], r["what"], " ".join(r["c_all"]), r["t_all"]))
    if T > 1:
        print("  (PyTorch: as is / with OMP_WAIT_POLICY=PASSIVE; the faster median counts: %s)"
              % ", ".join("PASSIVE" if r["t_passive"] else "as is" for r in rows))
    print("\ngreedy decoding, vocab %d, up to 30 tokens (random weights: every caption runs to 30):" % V)
    c_ms = 1e3 * c_dec / a.decode
    print("  %-44s %9.2f ms/caption  %6.1f GFLOP/s (%.0f%% of peak)  peak RSS %.0f MB" % (
        "prefixdec decode (KV cache, batches of 128)", c_ms, c_gf, 100 * c_gf / peak, c_rss))
    names = {"published": "PyTorch published loop (no cache, batch 1)", "cached": "PyTorch KV-cached loop, batch 1",
             "batched": "PyTorch KV-cached loop, batch 64"}
    for m in ("published", "cached", "batched"):
        ms = 1e3 * dec[m]["seconds"] / dec[m]["n"]
        print("  %-44s %9.2f ms/caption  (%d captions)  prefixdec is %.1fx faster" % (names[m], ms, dec[m]["n"], ms / c_ms))
    print("  ids identical on all sides: %s" % ("yes" if same else "NO"))
    __import__("shutil").rmtree(WORK, ignore_errors=True)


def cmd_make(a):
    setup_threads(1)
    pt, st = decref.full_checkpoint(vocab=a.vocab, log=sys.stderr)
    print(json.dumps({"pt": pt, "st": st}))


def cmd_train(a):
    setup_threads(a.threads)
    cfg = decref.Config.full()
    cfg.vocab = a.vocab
    sd = decref.random_state_dict(cfg, seed=0, buffers=False, lm_head=False)
    p = decref.params(sd, cfg, requires_grad=True)
    caps = load_caps(a.captions, a.double)
    B = a.bs
    need = (a.steps + a.warmup) * B
    tok = decref.targets([c["ids"] for c in caps[:need]], 22)
    g = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(need, 1024, generator=g), dim=1)
    opt = decref.AdamW(p.values(), lr=1e-5, weight_decay=0.02)
    sched = decref.linear_schedule_with_warmup(100, 1000)
    times, tokens, losses = [], [], []
    for i in range(a.steps + a.warmup):
        t0 = time.perf_counter()
        e, t = emb[i * B:(i + 1) * B], tok[i * B:(i + 1) * B]
        e = decref.noise_injection(e, 0.001)
        loss = decref.loss_fn(p, cfg, e, t, a.dropout)
        loss.backward()
        opt.step(1e-5 * sched(i))
        opt.zero_grad()
        dt = time.perf_counter() - t0
        # untimed warm-up steps: the allocators and thread pools settle over the
        # first steps (Debian's torch 1.13 here: ~7.9, 7.8, 7.5, 6.4, then 6.0 s
        # a step at vocab 30522 on one thread), and a training run lives in
        # the steady state
        if i >= a.warmup:
            times.append(dt)
            tokens.append(int((t > 0).sum()))
            losses.append(loss.item())
        print("torch train step %d/%d%s: %.2f s" % (i + 1, a.steps + a.warmup, " (warm-up)" if i < a.warmup else "", dt),
              file=sys.stderr, flush=True)
    print(json.dumps({"seconds": times, "tokens": tokens, "losses": losses,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
                      "torch": torch.__version__}))


def cmd_decode(a):
    setup_threads(a.threads)
    cfg = decref.Config.full()
    cfg.vocab = a.vocab
    pt, _ = decref.full_checkpoint(vocab=a.vocab)
    sd = torch.load(pt)
    p = decref.params(sd, cfg)
    _, recs, _ = ws.read_stream(open(a.emb, "rb"))
    emb = torch.from_numpy(np.stack([r["emb"] for r in recs[:a.n]]))
    ids = []
    t0 = time.perf_counter()
    if a.mode == "published":
        for i in range(len(emb)):
            ids.append(decref.published_greedy(p, cfg, emb[i]))
    elif a.mode == "cached":
        for i in range(len(emb)):
            ids += decref.cached_greedy(p, cfg, emb[i:i + 1], known=30522)
    else:
        for i in range(0, len(emb), a.batch):
            ids += decref.cached_greedy(p, cfg, emb[i:i + a.batch], known=30522)
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "n": len(emb), "tokens": sum(len(x) for x in ids), "ids": ids,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}))


def main():
    ap = argparse.ArgumentParser(prog="prefixdec_torch.py")
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--threads", type=int, default=1)
    b.add_argument("--steps", type=int, default=5, help="timed C training steps per case")
    b.add_argument("--torch-steps", type=int, default=3, help="timed PyTorch training steps per case")
    b.add_argument("--torch-warmup", type=int, default=4, help="untimed PyTorch steps before those")
    b.add_argument("--vocabs", type=lambda s: [int(x) for x in s.split(",")], default=[50257, 30522])
    b.add_argument("--decode", type=int, default=64, help="captions decoded by prefixdec and the batched loop")
    b.add_argument("--published", type=int, default=3, help="captions through the published loop")
    b.add_argument("--cached", type=int, default=8, help="captions through the batch-1 cached loop")
    b.add_argument("--prefixdec", default=os.path.join(ROOT, "bin", "prefixdec"))
    b.add_argument("--sgemm-peak", default="")
    m = sub.add_parser("make")
    m.add_argument("--vocab", type=int, default=50257)
    t = sub.add_parser("train")
    t.add_argument("--vocab", type=int, default=50257)
    t.add_argument("--threads", type=int, default=1)
    t.add_argument("--steps", type=int, default=3)
    t.add_argument("--warmup", type=int, default=4, help="untimed steps first")
    t.add_argument("--bs", type=int, default=64)
    t.add_argument("--captions", required=True)
    t.add_argument("--dropout", type=float, default=0.1)
    t.add_argument("--double", action="store_true")
    d = sub.add_parser("decode")
    d.add_argument("--vocab", type=int, default=50257)
    d.add_argument("--threads", type=int, default=1)
    d.add_argument("--emb", required=True)
    d.add_argument("--mode", choices=["published", "cached", "batched"], required=True)
    d.add_argument("--n", type=int, default=4)
    d.add_argument("--batch", type=int, default=64)
    a, rest = ap.parse_known_args()
    if rest:
        if a.cmd != "bench":
            ap.error("unrecognized arguments: %s" % " ".join(rest))
        # bench/run.sh passes every benchmark the same arguments
        print("prefixdec bench: ignoring arguments for other benchmarks: %s" % " ".join(rest), file=sys.stderr)
    {"bench": cmd_bench, "make": cmd_make, "train": cmd_train, "decode": cmd_decode}[a.cmd](a)


if __name__ == "__main__":
    main()
