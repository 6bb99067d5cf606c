"""clap-train (C) against the PyTorch reference training the same CNN14-BERT
CLAP on the same batch (bench/clap_train.sh runs this; see bench/README.md).

    python3 bench/clap_train_torch.py bench --clap-train bin/clap-train [--threads 2] [--steps 2]
        [--warmup 1] [--runs 1] [--configs full,small] [--sgemm-peak PATH]
    python3 bench/clap_train_torch.py torch --model M.st --sizes NAME --mel MEL.mp --captions CAPS.tsv ...

Both sides: the model clap-train --new --save-init writes (weights read by
both), B = 16 random 10-s clips (1001 frames x 64 mel), 16 Clotho captions
(tests/data/clotho/train-20.csv, caption_1 of the first 16 rows), float32,
training mode, no dropout and no SpecAugment (clap-train --no-augment;
claptrainref.Clap(cnn_dropout=0, bert_dropout=0, spec_augment=False)),
BatchNorm on batch statistics, SALSA's L_sup, AdamW, a constant learning rate
(clap-train --schedule constant; claptrainref.train_step(sched=False)).
Timed: one optimiser step (forward, loss, backward, AdamW) after W untimed
warm-up steps; clap-train's from its --log seconds column (wall clock),
PyTorch's with time.perf_counter() around train_step. Peak RSS: GNU time %M
of each whole process."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
from trainbench import loadavg, log_steps, machine_lines, padded, say, sgemm_peak, threads_env, timed  # noqa: E402

VOCAB = os.path.join(ROOT, "data", "bert-base-uncased-vocab.txt")
B, T, M, MAXLEN = 16, 1001, 64, 30

# name -> (clap-train --new options, clapref.Config arguments)
CONFIGS = {
    "full": ([], dict()),
    "small": (["--audio-width", "16", "--text-layers", "2", "--text-width", "128", "--text-heads", "2",
               "--text-ffn", "512", "--embed", "256"],
              dict(channels=[16, 32, 64, 128, 256, 512], hidden=128, layers=2, heads=2, intermediate=512, embed=256)),
}


def captions():
    import csv
    with open(os.path.join(ROOT, "tests", "data", "clotho", "train-20.csv"), newline="") as f:
        rows = list(csv.DictReader(f))[:B]
    return ["clip%02d" % i for i in range(B)], [r["caption_1"] for r in rows]


def token_lengths(caps):
    """tokens a caption as clap-train counts them: [CLS] wordpieces [SEP], at most MAXLEN"""
    from ref_wordpiece import BertTokenizerRef
    tok = BertTokenizerRef(VOCAB)
    out = []
    for c in caps:
        ids = [tok.vocab["[CLS]"]] + [tok.vocab[t] for t in tok.tokenize(c)][:MAXLEN - 2] + [tok.vocab["[SEP]"]]
        out.append(ids)
    return out


def flops(name, lens):
    """analytic FLOPs of one training step (2 per multiply-add; backward = 2 x forward):
    CNN14: per conv 2 B H W Cin Cout 9 (H x W the block's frames x mel; avg-pool 2x2 halves both, floor);
    BERT: per layer per token 2 (4 H^2 + 2 H F), attention 2 x 2 L^2 H per caption (QK^T, PV), real tokens only;
    projections: 2 B (C E + E E) and 2 B (H E + E E). Elementwise work (BatchNorm, GELU, softmax, ...) uncounted."""
    import clapref
    cfg = clapref.Config(**CONFIGS[name][1])
    f, h, w, cin = 0, T, M, 1
    for c in cfg.channels:
        f += 2 * B * h * w * 9 * (cin * c + c * c)
        h, w, cin = h // 2, w // 2, c
    H, F, E = cfg.hidden, cfg.intermediate, cfg.embed
    ntok = sum(lens)
    f += cfg.layers * (ntok * 2 * (4 * H * H + 2 * H * F) + sum(4 * L * L * H for L in lens))
    f += 2 * B * (cfg.channels[-1] * E + E * E) + 2 * B * (H * E + E * E)
    return 3 * f


def bench(a):
    import numpy as np
    import wsacstream as ws
    T_ = a.threads
    peaks = [sgemm_peak(a.sgemm_peak, T_)]  # again at the end: the higher counts (a loaded moment lowers it)
    say("sgemm peak %.1f GFLOP/s (%d threads)" % (peaks[0], T_))
    work = tempfile.mkdtemp(prefix="wsac-bench-clap-train-", dir=os.environ.get("TMPDIR", "/tmp"))
    keys, caps = captions()
    lens = [len(x) for x in token_lengths(caps)]
    rng = np.random.default_rng(0)
    mel = os.path.join(work, "mel.mp")
    with open(mel, "wb") as f:  # log-mel-like values, dB
        ws.write_stream(f, "bench", ({"key": k, "mel": (rng.standard_normal((T, M)) * 10 - 40).astype(np.float32)}
                                    for k in keys))
    capf = os.path.join(work, "caps.tsv")
    with open(capf, "w") as f:
        f.writelines("%s\t%s\n" % (k, c) for k, c in zip(keys, caps))
    rows = []
    for name in a.configs.split(","):
        model = os.path.join(work, "%s.st" % name)
        subprocess.run([a.clap_train, "--new", "--vocab", VOCAB, "--save-init", model, "-q"] + CONFIGS[name][0],
                       check=True)
        n = a.warmup + a.steps
        common = ["--mel", mel, "--captions", capf, "--max-steps", str(n), "--bs", str(B), "--no-shuffle",
                  "--no-augment", "--schedule", "constant", "--lr", "2e-5"]
        c_steps, t_steps, c_rss, t_rss, c_wall, t_wall = [], [], [], [], [], []
        env = dict(os.environ)
        for r in range(a.runs):
            log = os.path.join(work, "log.tsv")
            _, _, rss, wall = timed([a.clap_train, "--init", model, "-o", os.path.join(work, "out.st"), "--log", log,
                                     "-j", str(T_), "-q"] + common)
            st = log_steps(log)
            say("%s run %d: clap-train steps %s s, peak RSS %.0f MB, load %s" % (
                name, r + 1, " ".join("%.2f" % x for x in st), rss, loadavg()))
            c_steps += st[a.warmup:]
            c_rss.append(rss), c_wall.append(wall)
            out, _, rss, wall = timed([sys.executable, os.path.abspath(__file__), "torch", "--model", model, "--sizes",
                                       name, "--threads", str(T_), "--steps", str(n)] + common[:4], env=env)
            st = json.loads(out)["seconds"]
            say("%s run %d: PyTorch steps %s s, peak RSS %.0f MB, load %s" % (
                name, r + 1, " ".join("%.2f" % x for x in st), rss, loadavg()))
            t_steps += st[a.warmup:]
            t_rss.append(rss), t_wall.append(wall)
        rows.append(dict(name=name, c=min(c_steps), t=min(t_steps), c_all=c_steps, t_all=t_steps,
                         c_rss=max(c_rss), t_rss=max(t_rss), fl=flops(name, lens), c_wall=min(c_wall),
                         t_wall=min(t_wall)))
    peaks.append(sgemm_peak(a.sgemm_peak, T_))
    peak = max(peaks)
    ntok = sum(lens)
    print("\nwsac clap-train benchmark, %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    machine_lines(T_, peaks)
    print("batch   : %d clips x %d frames x %d mel, %d captions, %d tokens ([CLS]/[SEP] in; PyTorch pads to %d)" % (
        B, T, M, B, ntok, max(lens)))
    print("steps   : %d warm-up + %d timed a run, %d run(s), alternating; the best timed step counts" % (
        a.warmup, a.steps, a.runs))
    print()
    print("%-6s %9s %9s %8s %7s %6s %9s %9s %8s %6s %8s %9s" % (
        "model", "GFLOP", "C s/step", "clips/s", "tok/s", "GF/s", "%peak", "torch s", "GF/s", "ratio", "C RSS", "torch RSS"))
    for r in rows:
        cg, tg = r["fl"] / r["c"] / 1e9, r["fl"] / r["t"] / 1e9
        print("%-6s %9.1f %9.2f %8.2f %7.1f %6.1f %8.0f%% %9.2f %8.1f %5.2fx %6.0f MB %6.0f MB" % (
            r["name"], r["fl"] / 1e9, r["c"], B / r["c"], ntok / r["c"], cg, 100 * cg / peak, r["t"], tg,
            r["t"] / r["c"], r["c_rss"], r["t_rss"]))
    print("\n  ratio = PyTorch step / clap-train step (> 1: clap-train faster); all timed steps, seconds:")
    for r in rows:
        print("    %-6s C %s | PyTorch %s   (whole processes: C %.1f s, PyTorch %.1f s)" % (
            r["name"], " ".join("%.2f" % x for x in r["c_all"]), " ".join("%.2f" % x for x in r["t_all"]),
            r["c_wall"], r["t_wall"]))
    print("  PyTorch clips/s, tok/s: %s" % ", ".join("%s %.2f, %.1f" % (r["name"], B / r["t"], ntok / r["t"])
                                                    for r in rows))


def torch_side(a):
    T_ = a.threads
    threads_env(T_)
    import numpy as np
    import torch
    import clapref
    import claptrainref as R
    import sttools
    import wsacstream as ws
    torch.set_num_threads(T_)
    cfg = clapref.Config(**CONFIGS[a.sizes][1])
    t, _ = sttools.load(a.model)
    m = R.Clap(cfg, cnn_dropout=0.0, bert_dropout=0.0, spec_augment=False)
    m.load_published({k: torch.from_numpy(np.array(v)) for k, v in t.items() if k != "tokenizer.vocab"})
    with open(a.mel, "rb") as f:
        _, recs, _ = ws.read_stream(f)
    mel = {r["key"]: r["mel"] for r in recs}
    items = [l.rstrip("\n").split("\t", 1) for l in open(a.captions)]
    x = torch.from_numpy(np.stack([mel[k] for k, _ in items]).astype(np.float32))
    idt, msk = padded(token_lengths([c for _, c in items]), 0)
    keys = sorted(set(k for k, _ in items))
    aid = torch.tensor([keys.index(k) for k, _ in items])
    opt = R.optimizer(m, lr=2e-5)
    times, losses = [], []
    for s in range(a.steps):
        t0 = time.perf_counter()
        ls, _, _ = R.train_step(m, opt, x, idt, msk, aid, s, 1, sched=False)
        times.append(time.perf_counter() - t0)
        losses.append(ls)
        say("torch step %d/%d: %.2f s, loss %.6f" % (s + 1, a.steps, times[-1], ls))
    print(json.dumps({"seconds": times, "losses": losses}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--clap-train", required=True)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--steps", type=int, default=2)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--runs", type=int, default=1)
    b.add_argument("--configs", default="full,small")
    b.add_argument("--sgemm-peak", default="")
    t = sub.add_parser("torch")
    t.add_argument("--model", required=True)
    t.add_argument("--sizes", required=True)
    t.add_argument("--mel", required=True)
    t.add_argument("--captions", required=True)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    bench(a) if a.cmd == "bench" else torch_side(a)


if __name__ == "__main__":
    main()
