#!/usr/bin/python3
"""The CNN14 CLAP audio encoder in PyTorch, for bench/clap_audio.sh.

    /usr/bin/python3 bench/clap_audio_torch.py --model CLAP.safetensors [--threads T]
        [--frozen] [--report FILE] [--emb OUT.mp] MELS.mp [MELS.mp ...]
    /usr/bin/python3 bench/clap_audio_torch.py --sgemm [--threads T] [--report FILE]
    /usr/bin/python3 bench/clap_audio_torch.py --make-mels OUT.mp --frames T --clips N [--seed S]

Encodes every record's "mel" of each MELS stream, one clip at a time as
clap-audio does, with the audio weights of the same model file (read with
scripts/sttools.py), under torch.inference_mode() and torch.set_num_threads(T):

  default   scripts/clapref.py audio_forward: the reference, torch.nn.functional
            conv2d / batch_norm / relu / avg_pool2d, exactly what an eager
            nn.Module (WavCaps' Cnn14 in eval mode) runs; Debian's torch
            convolves with oneDNN (MKL-DNN 2.6)
  --frozen  the same network as an nn.Module, traced, torch.jit.freeze'd and
            torch.jit.optimize_for_inference'd: BatchNorm folded into the
            convolutions and the weights pre-packed for oneDNN once -- the
            fastest plain-PyTorch deployment we know of, for reference

One untimed warm-up forward on the first clip comes first (oneDNN creates
its kernels on first use), so the loop times are steady state. Per MELS
stream the report gives the loop's wall seconds and the clips' frames.

--sgemm times a 2048 x 2048 x 2048 float32 matrix product in numpy (which
Debian links to OpenBLAS, the library clap-audio uses) with T threads:
the best of 7, as GFLOP/s -- the sgemm peak the GFLOP/s figures are set
against.

--threads T calls torch.set_num_threads(T) and sets OMP_NUM_THREADS,
OPENBLAS_NUM_THREADS and MKL_NUM_THREADS to T before torch or numpy load,
overriding the environment, so that T threads means T threads everywhere.

--make-mels writes N random log-mel-like clips of T frames x 64 bands
(N(-40, 15^2) dB, fixed seed) as a tensor stream, for the benchmark input.
"""
import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402


def _threads_from_argv(argv):
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--threads="):
            return a.split("=", 1)[1]
    return "1"


for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_v] = _threads_from_argv(sys.argv[1:])

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def sgemm_peak(threads):
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
    return {"sgemm_gflops": 2.0 * n ** 3 / best / 1e9, "sgemm_n": n, "threads": threads}


def make_mels(path, frames, clips, seed):
    import numpy as np
    import wsacstream as ws
    rng = np.random.default_rng(seed)
    recs = [{"key": "T%d-%03d" % (frames, i), "mel": (rng.standard_normal((frames, 64)) * 15 - 40).astype(np.float32)}
            for i in range(clips)]
    with open(path, "wb") as f:
        ws.write_stream(f, "clap_audio_torch.py", recs, params={"n_mels": 64, "sr": 32000, "hop": 320})


def frozen_module(sd):
    """WavCaps' Cnn14 + audio_proj as an nn.Module, frozen for inference."""
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import clapref

    A = clapref.A
    nb = 0
    while A + "conv_block%d.conv1.weight" % (nb + 1) in sd:
        nb += 1

    class Block(nn.Module):  # cnns.py ConvBlock, eval mode
        def __init__(self, pre):
            super().__init__()
            w1, w2 = sd[pre + "conv1.weight"], sd[pre + "conv2.weight"]
            self.conv1 = nn.Conv2d(w1.shape[1], w1.shape[0], 3, padding=1, bias=False)
            self.conv2 = nn.Conv2d(w2.shape[1], w2.shape[0], 3, padding=1, bias=False)
            self.bn1, self.bn2 = nn.BatchNorm2d(w1.shape[0]), nn.BatchNorm2d(w2.shape[0])

        def forward(self, x):
            x = F.relu(self.bn1(self.conv1(x)))
            x = F.relu(self.bn2(self.conv2(x)))
            return F.avg_pool2d(x, kernel_size=(2, 2))

    class Encoder(nn.Module):
        def __init__(self):
            super().__init__()
            self.bn0 = nn.BatchNorm2d(sd[A + "bn0.weight"].shape[0])
            self.blocks = nn.ModuleList([Block(A + "conv_block%d." % (i + 1)) for i in range(nb)])
            e, c = sd["audio_proj.0.weight"].shape
            self.proj = nn.Sequential(nn.Linear(c, e), nn.ReLU(), nn.Linear(e, e))

        def forward(self, mel):  # [1, T, M]
            x = mel[:, None].transpose(1, 3)
            x = self.bn0(x).transpose(1, 3)
            for b in self.blocks:
                x = b(x)
            x = torch.mean(x, dim=3)
            x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
            return F.normalize(self.proj(x), dim=-1)

    m = Encoder().eval()
    state = {}
    for k, v in sd.items():
        if k.startswith(A + "conv_block"):
            rest = k[len(A + "conv_block"):]
            i, tail = rest.split(".", 1)
            state["blocks.%d.%s" % (int(i) - 1, tail)] = v
        elif k.startswith(A):
            state[k[len(A):]] = v
        elif k.startswith("audio_proj."):
            state["proj." + k[len("audio_proj."):]] = v
    m.load_state_dict(state, strict=False)  # num_batches_tracked is not in the file
    return m


def main():
    ap = argparse.ArgumentParser(prog="clap_audio_torch.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("mels", nargs="*")
    ap.add_argument("--model")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--frozen", action="store_true")
    ap.add_argument("--report")
    ap.add_argument("--emb", help="write the embeddings as a tensor stream (for the parity check)")
    ap.add_argument("--sgemm", action="store_true")
    ap.add_argument("--make-mels")
    ap.add_argument("--frames", type=int)
    ap.add_argument("--clips", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    if args.make_mels:
        make_mels(args.make_mels, args.frames, args.clips, args.seed)
        return 0
    if args.sgemm:
        rep = sgemm_peak(args.threads)
    else:
        if not args.model or not args.mels:
            ap.error("--model and at least one MELS stream are needed")
        import numpy as np
        import torch
        import clapref
        import sttools
        import wsacstream as ws
        torch.set_num_threads(args.threads)
        t_import = time.perf_counter() - T_START
        t0 = time.perf_counter()
        tensors, _ = sttools.load(args.model)
        sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items()
              if k.startswith(("audio_encoder.", "audio_proj."))}
        del tensors
        streams = []
        for path in args.mels:
            _, recs, _ = ws.read_stream(open(path, "rb"))
            streams.append((path, [(r["key"], torch.from_numpy(np.array(r["mel"]))) for r in recs]))
        first = streams[0][1][0][1]
        with torch.inference_mode():
            if args.frozen:
                m = frozen_module(sd)
                m = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(m, first[None])))

                def fwd(x):
                    return m(x[None])[0]
            else:
                def fwd(x):
                    return clapref.audio_forward(sd, x)[0]
            t_load = time.perf_counter() - t0
            fwd(first)  # warm-up, untimed
            out, per = [], []
            checksum = 0.0
            for path, recs in streams:
                t = time.perf_counter()
                for key, x in recs:
                    e = fwd(x)
                    checksum += float(e.double().sum())
                    out.append({"key": key, "emb": e.numpy().astype(np.float32)})
                per.append({"path": path, "loop_s": time.perf_counter() - t, "clips": len(recs),
                            "frames": [int(x.shape[0]) for _, x in recs]})
        rep = {"import_s": t_import, "load_s": t_load, "streams": per, "checksum": checksum,
               "frozen": args.frozen, "threads": args.threads, "torch": torch.__version__}
        if args.emb:
            with open(args.emb, "wb") as f:
                ws.write_stream(f, "clap_audio_torch.py", out)
    if args.report:
        with open(args.report, "w") as f:
            json.dump(rep, f)
    else:
        print(json.dumps(rep))
    return 0


if __name__ == "__main__":
    sys.exit(main())
