"""clap-train (C) against PyTorch training SALSA's PaSST-RoBERTa on the same
batch, one optimiser step (bench/salsa_train.sh runs this; see bench/README.md).

    /usr/bin/python3 bench/salsa_train_torch.py bench --clap-train bin/clap-train [--bs 8] [--threads T]
        [--steps 2] [--warmup 1] [--runs 1] [--small] [--micro-bs N] [--recompute] [--sgemm-peak PATH] [--dry-run]
    /usr/bin/python3 bench/salsa_train_torch.py torch --model M.safetensors --mel MEL.mp --captions CAPS.tsv ...

Model: full size, the random-weight PaSST-S (12 x 768, 128 mel, 16 x 16 patches)
+ RoBERTa-large (24 x 1024) file of tests/full/fullsalsa.py (made once, ~1
min, cached under ${TMPDIR:-/tmp}); --small, the same architecture and token
geometry (128 mel, 10-s segments, the 8 x 62 patch grid, RoBERTa's BPE) with
narrow towers: PaSST 2 x 64 (2 heads, MLP 256), RoBERTa 2 x 64 (2 heads, FFN
256), embedding 64, made in the work directory in seconds.
Batch: B (--bs, 8) random 30-s clips as `wav2mel --frontend passt` cuts them
(3 kept 10-s segments of 1000 frames x 128 mel each: SALSA's fixed 30 s), B
Clotho captions (tests/data/clotho/train-20.csv: caption_1 of row 1, 2, ...;
then caption_2 ...), RoBERTa's BPE with SALSA's preprocessing, at most 32
tokens. Training as published: structured patchout (15 time columns and 2
frequency rows of patches dropped a segment: 47 x 6 + 2 = 284 of 498 tokens),
PaSST's dropout/stochastic depth 0 (passt.py's defaults), RoBERTa's hidden and
attention dropout 0.2, SALSA's L_sup, AdamW (four groups), constant learning
rate, float32. PyTorch: passttrainref's PaSST (passt.py's forward_features,
its own patchout draw, training mode) + robertatrainref's RoBERTa with random
dropout, fed and combined as tests/py/salsatiny.SalsaRef does (each clip's
segments through PaSST, the mean, the projection; the captions padded to the
batch's longest, which is less work than the published pad-to-32).
Timed: one step (forward, loss, backward, AdamW) after W untimed warm-up steps;
clap-train's from its --log seconds column (wall clock), PyTorch's with
time.perf_counter() around the step. Peak RSS: GNU time %M of each process."""
import argparse
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
sys.path.insert(0, os.path.join(ROOT, "tests", "full"))
from trainbench import loadavg, log_steps, machine_lines, padded, say, sgemm_peak, threads_env, timed  # noqa: E402

BPE_DIR = os.path.join(ROOT, "tests", "data", "roberta-bpe")
VOCAB, MERGES = os.path.join(BPE_DIR, "vocab.json"), os.path.join(BPE_DIR, "merges.txt")
SEGS, S, M, MAXLEN = 3, 1000, 128, 32       # SALSA: 3 x 10 s (fixed 30 s), 1000 frames x 128 mel, max_length 32
PATCHOUT_T, PATCHOUT_F = 15, 2              # experiments/ex_dcase24.py s_patchout_t, s_patchout_f
TEXT_DROPOUT = 0.2                          # SALSA's RoBERTa hidden_dropout_prob = attention_probs_dropout_prob

# the sizes of both towers: PaSST dim, depth, heads, mlp; RoBERTa hidden, layers, heads, ffn; embedding
SIZES = {
    "full": dict(dim=768, depth=12, heads=12, mlp=3072, hidden=1024, layers=24, text_heads=16, intermediate=4096,
                 embed=1024),
    # every matrix of full size, 2 blocks a tower: the per-layer work of the full step at a sixth of its time
    "mid": dict(dim=768, depth=2, heads=12, mlp=3072, hidden=1024, layers=2, text_heads=16, intermediate=4096,
                embed=1024),
    "small": dict(dim=64, depth=2, heads=2, mlp=256, hidden=64, layers=2, text_heads=2, intermediate=256, embed=64),
}
GRID, PATCH = (8, 62), 16                   # PatchEmbed grid (128, 1000) // 16; 16 x 16 patches


def captions(n):
    import csv
    with open(os.path.join(ROOT, "tests", "data", "clotho", "train-20.csv"), newline="") as f:
        rows = list(csv.DictReader(f))
    if n > 5 * len(rows):
        raise SystemExit("salsa_train: --bs at most %d (the bundled captions)" % (5 * len(rows)))
    return ["clip%03d.wav" % i for i in range(n)], [rows[i % len(rows)]["caption_%d" % (1 + i // len(rows))]
                                                    for i in range(n)]


def token_ids(caps):
    """RoBERTa's BPE of each caption as SALSA tokenises it (<s> ... </s>, at most 32), as clap-train does"""
    import bperef
    bpe = bperef.BPE(VOCAB, MERGES)
    return [bpe.encode(bperef.salsa_preprocess(c), MAXLEN) for c in caps]


def kept_tokens():
    """PaSST tokens a segment under patchout: the kept patches + cls + dist"""
    return (GRID[1] - PATCHOUT_T) * (GRID[0] - PATCHOUT_F) + 2


def flops(z, B, lens):
    """analytic FLOPs of one training step: 2 per multiply-add, backward = 2 x forward (so 3 x forward);
    real tokens only, elementwise work (LayerNorm, GELU, softmax, dropout, AdamW) uncounted.
    PaSST, per segment (B x 3 of them), N = kept_tokens() = 284:
        depth x (N (4 D^2 + 2 D mlp) + 2 N^2 D)   [qkv + out proj, MLP; QK^T, PV]  + (N - 2) 256 D  [patch embedding]
    audio projection D E per clip; RoBERTa per caption of L tokens (<s> </s> in):
        layers x (L (4 H^2 + 2 H F) + 2 L^2 H) + H E"""
    N = kept_tokens()
    D, H, F, E = z["dim"], z["hidden"], z["intermediate"], z["embed"]
    seg = z["depth"] * (N * (4 * D * D + 2 * D * z["mlp"]) + 2 * N * N * D) + (N - 2) * PATCH * PATCH * D
    macs = B * SEGS * seg + B * D * E
    macs += sum(z["layers"] * (L * (4 * H * H + 2 * H * F) + 2 * L * L * H) + H * E for L in lens)
    return 3 * 2 * macs


def small_model(work, name="small"):
    """the --small/--mid SALSA file: passtref's random checkpoint at SIZES[name], converted as published ones are"""
    import dataclasses
    import torch
    import convert
    import passtref
    z = SIZES[name]
    cfg = dataclasses.replace(passtref.Config(), **z)
    ck, st = os.path.join(work, name + ".ckpt"), os.path.join(work, name + ".safetensors")
    torch.save({"state_dict": passtref.random_state_dict(cfg, seed=0), "epoch": 0}, ck)
    if convert.main(["salsa", ck, "--vocab", VOCAB, "--merges", MERGES, "-o", st, "--audio-heads", str(z["heads"]),
                     "--text-heads", str(z["text_heads"])]) != 0:
        raise SystemExit("salsa_train: converting the small model failed")
    return st


def bench(a):
    T_ = a.threads
    name = "small" if a.small else "mid" if a.mid else "full"
    z = SIZES[name]
    B = a.bs
    keys, caps = captions(B)
    lens = [len(x) for x in token_ids(caps)]
    fl = flops(z, B, lens)
    n = a.warmup + a.steps
    C_OPTS = ["--micro-bs", str(a.micro_bs)] if a.micro_bs else []
    C_OPTS += ["--recompute"] if a.recompute else []
    common = ["--bs", str(B), "--max-steps", str(n), "--no-shuffle", "--schedule", "constant", "--lr", "2e-5",
              "--warmup", "0"]
    if a.dry_run:
        import fullsalsa
        print("salsa_train dry run (nothing run): %s, %d clips x %d segments x %d tokens (patchout %d,%d), "
              "%d captions, %d tokens (%s)" % (name, B, SEGS, kept_tokens(), PATCHOUT_T, PATCHOUT_F, B, sum(lens),
                                              " ".join(map(str, lens))))
        print("  %.1f GFLOP a step; %d threads; %d warm-up + %d timed steps a run, %d run(s)" % (
            fl / 1e9, T_, a.warmup, a.steps, a.runs))
        print("  model: %s" % (os.path.join(fullsalsa.cache_dir(), "salsa.safetensors") if name == "full"
                               else "made in the work directory"))
        print("  C:     %s --init MODEL --mel MEL --captions CAPS -o OUT --log LOG -j %d -q %s" % (
            a.clap_train, T_, " ".join(common + C_OPTS)))
        print("  torch: %s %s torch --model MODEL --sizes %s --mel MEL --captions CAPS --threads %d --steps %d" % (
            sys.executable, os.path.abspath(__file__), name, T_, n))
        return
    import numpy as np
    import wsacstream as ws

    peaks = [sgemm_peak(a.sgemm_peak, T_)]  # again at the end: the higher counts (a loaded moment lowers it)
    say("sgemm peak %.1f GFLOP/s (%d threads)" % (peaks[0], T_))
    tmpd = tempfile.TemporaryDirectory(prefix="wsac-bench-salsa-train-")
    work = tmpd.name
    if name == "full":
        import fullsalsa
        model = fullsalsa.ensure()[1]
    else:
        model = small_model(work, name)
    rng = np.random.default_rng(0)
    mel = os.path.join(work, "mel.mp")
    hdr = {"frontend": "passt", "cut": "segments", "segment_samples": 320000, "segments": SEGS, "hop": 320,
           "sr": 32000, "n_mels": M, "segment_frames": S}
    with open(mel, "wb") as f:  # 30-s clips: all 3 segments kept
        ws.write_stream(f, "wav2mel", ({"key": k, "mel": (rng.standard_normal((SEGS * S, M)) * 0.5).astype(np.float32),
                                        "samples": SEGS * 320000} for k in keys), params=hdr)
    capf = os.path.join(work, "caps.tsv")
    with open(capf, "w") as f:
        f.writelines("%s\t%s\n" % (k, c) for k, c in zip(keys, caps))
    c_steps, t_steps, c_rss, t_rss, c_wall, t_wall = [], [], [], [], [], []
    for r in range(a.runs):
        log = os.path.join(work, "log.tsv")
        _, _, rss, wall = timed([a.clap_train, "--init", model, "--mel", mel, "--captions", capf,
                                 "-o", os.path.join(work, "out.st"), "--log", log, "-j", str(T_), "-q"]
                                + common + C_OPTS)
        st = log_steps(log)
        say("run %d: clap-train steps %s s, peak RSS %.0f MB, load %s" % (
            r + 1, " ".join("%.2f" % x for x in st), rss, loadavg()))
        c_steps += st[a.warmup:]
        c_rss.append(rss), c_wall.append(wall)
        out, _, rss, wall = timed([sys.executable, os.path.abspath(__file__), "torch", "--model", model, "--sizes",
                                   name, "--mel", mel, "--captions", capf, "--threads", str(T_), "--steps", str(n)])
        js = json.loads(out)
        st = js["seconds"]
        if set(js["tokens"]) != {kept_tokens()}:
            raise SystemExit("salsa_train: PyTorch's PaSST saw %s tokens a segment, not %d" % (
                sorted(set(js["tokens"])), kept_tokens()))
        say("run %d: PyTorch steps %s s, peak RSS %.0f MB, load %s" % (
            r + 1, " ".join("%.2f" % x for x in st), rss, loadavg()))
        t_steps += st[a.warmup:]
        t_rss.append(rss), t_wall.append(wall)
    peaks.append(sgemm_peak(a.sgemm_peak, T_))
    peak = max(peaks)
    c, t = min(c_steps), min(t_steps)
    print("\nwsac clap-train SALSA benchmark (%s), %s" % (name, time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())))
    machine_lines(T_, peaks)
    print("model   : %s: PaSST %d x %d (%d heads, MLP %d), RoBERTa %d x %d (%d heads, FFN %d), embedding %d" % (
        name, z["depth"], z["dim"], z["heads"], z["mlp"], z["layers"], z["hidden"], z["text_heads"],
        z["intermediate"], z["embed"]))
    print("batch   : %d clips x %d segments of %d x %d mel, %d tokens a segment (patchout %d time, %d freq), "
          "%d captions, %d tokens (PyTorch pads to %d)" % (B, SEGS, S, M, kept_tokens(), PATCHOUT_T, PATCHOUT_F, B,
                                                          sum(lens), max(lens)))
    print("training: patchout on, RoBERTa dropout %.1f/%.1f, PaSST dropout 0; clap-train options: %s" % (
        TEXT_DROPOUT, TEXT_DROPOUT, " ".join(common + C_OPTS)))
    print("steps   : %d warm-up + %d timed a run, %d run(s), alternating; the best timed step counts" % (
        a.warmup, a.steps, a.runs))
    print()
    cg, tg = fl / c / 1e9, fl / t / 1e9
    print("%-12s %9s %8s %9s %7s %11s" % ("", "s/step", "GFLOP/s", "% sgemm", "clips/s", "peak RSS"))
    print("%-12s %9.3f %8.1f %8.0f%% %7.2f %8.0f MB" % ("clap-train", c, cg, 100 * cg / peak, B / c, max(c_rss)))
    print("%-12s %9.3f %8.1f %8.0f%% %7.2f %8.0f MB" % ("PyTorch", t, tg, 100 * tg / peak, B / t, max(t_rss)))
    print("\n  %.1f GFLOP a step (bench/README.md's formula); ratio PyTorch / clap-train: %.2fx (%s)" % (
        fl / 1e9, t / c, "clap-train faster" if t > c else "clap-train slower"))
    print("  all timed steps, seconds: C %s | PyTorch %s   (whole processes: C %.1f s, PyTorch %.1f s)" % (
        " ".join("%.3f" % x for x in c_steps), " ".join("%.3f" % x for x in t_steps), min(c_wall), min(t_wall)))


def torch_side(a):
    T_ = a.threads
    threads_env(T_)
    import numpy as np
    import torch
    import claptrainref as CT
    import passttrainref as PT
    import robertatrainref as RT
    import salsatiny as ST
    import sttools
    import wsacstream as ws
    torch.set_num_threads(T_)
    z = SIZES[a.sizes]
    tensors, meta = sttools.load(a.model)
    sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if v.dtype == np.float32}
    del tensors
    pad = int(meta["clap.text.pad_id"])
    acfg = PT.Config(dim=z["dim"], depth=z["depth"], heads=z["heads"], mlp=z["mlp"], embed=z["embed"])
    tcfg = RT.Config(hidden=z["hidden"], layers=z["layers"], heads=z["text_heads"], intermediate=z["intermediate"],
                     embed=z["embed"], eps=float(meta["clap.text.ln_eps"]))
    # SalsaRef (no patchout, no dropout) with the towers as published in training: passt.py's own patchout draw,
    # RoBERTa's random dropout
    m = ST.SalsaRef(sd, acfg, tcfg, pad, towers=())
    m.audio = PT.load({n: sd[n] for n, _ in PT.Tower(acfg).published()}, acfg, s_patchout_t=PATCHOUT_T,
                      s_patchout_f=PATCHOUT_F)
    m.text = RT.RobertaText(tcfg, pad, TEXT_DROPOUT, TEXT_DROPOUT)
    m.text.load_published({k: v for k, v in sd.items() if k.startswith((RT.TX, RT.PROJ))})
    del sd
    m.train()
    with open(a.mel, "rb") as f:
        _, recs, _ = ws.read_stream(f)
    mel = {r["key"]: torch.from_numpy(np.array(r["mel"], np.float32)) for r in recs}
    items = [x.rstrip("\n").split("\t", 1) for x in open(a.captions)]
    clip_mels = [mel[k] for k, _ in items]
    tok, msk = padded(token_ids([c for _, c in items]), pad)
    keys = sorted(set(k for k, _ in items))
    aid = torch.tensor([keys.index(k) for k, _ in items])
    opt = m.optimizer(2e-5)
    seen = []  # tokens a segment entering PaSST's first block: the same count as clap-train's after patchout
    m.audio.passt.blocks[0].register_forward_hook(lambda mod, inp, out: seen.append(int(inp[0].shape[1])))
    torch.manual_seed(0)
    times, losses = [], []
    for s in range(a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        au = m.forward_audio(clip_mels, S)
        tx = m.text(tok, msk, True)  # drop=True: F.dropout at the configured rates
        loss = CT.salsa_loss(au, tx, aid)[2]
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
        losses.append(loss.item())
        say("torch step %d/%d: %.3f s, loss %.6f" % (s + 1, a.steps, times[-1], losses[-1]))
    print(json.dumps({"seconds": times, "losses": losses, "tokens": seen}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--clap-train", required=True)
    b.add_argument("--bs", type=int, default=8)
    b.add_argument("--threads", type=int, default=os.cpu_count())
    b.add_argument("--steps", type=int, default=2)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--runs", type=int, default=1)
    b.add_argument("--small", action="store_true")
    b.add_argument("--mid", action="store_true")
    b.add_argument("--micro-bs", type=int, default=0)
    b.add_argument("--recompute", action="store_true")
    b.add_argument("--sgemm-peak", default="")
    b.add_argument("--dry-run", action="store_true")
    # options of the other benchmarks (bench/run.sh passes its arguments to all): ignored
    b.add_argument("--clips", "--seconds", help=argparse.SUPPRESS)
    b.add_argument("--no-check", action="store_true", help=argparse.SUPPRESS)
    t = sub.add_parser("torch")
    t.add_argument("--model", required=True)
    t.add_argument("--sizes", required=True, choices=sorted(SIZES))
    t.add_argument("--mel", required=True)
    t.add_argument("--captions", required=True)
    t.add_argument("--threads", type=int, default=os.cpu_count())
    t.add_argument("--steps", type=int, default=3)
    a = p.parse_args()
    if a.cmd == "bench":
        for k in ("bs", "threads", "steps", "runs"):
            if getattr(a, k) < 1:
                p.error("--%s must be at least 1" % k)
        if a.warmup < 0 or a.micro_bs < 0:
            p.error("--warmup and --micro-bs must be >= 0")
    bench(a) if a.cmd == "bench" else torch_side(a)


if __name__ == "__main__":
    main()
