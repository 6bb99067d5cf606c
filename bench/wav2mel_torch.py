#!/usr/bin/python3
"""The wav2mel front end in PyTorch/torchaudio, for bench/wav2mel.sh.

    /usr/bin/python3 bench/wav2mel_torch.py [--threads T] [--report FILE]
                        [--compare WAV2MEL_OUT] [--list LISTFILE] [FILE...]

Does per file what `wav2mel` does with its defaults, the same way a Python
captioning pipeline would:

  load     soundfile, float32 (as librosa.load), mean over channels -> mono
  resample torchaudio.functional.resample(x, 44100 -> 32000), its default
           windowed-sinc interpolation (sinc_interp_hann, lowpass_filter_width 6,
           rolloff 0.99) -- NOT soxr as in wav2mel/librosa, so the output
           differs slightly near the band edge; the work is comparable
  stft     torch.stft n_fft 1024, hop 320, periodic Hann, center=True, reflect
  power    |X|^2
  mel      melscale_fbanks(513, 50, 14000, 64, 32000, norm='slaney',
           mel_scale='slaney'), [T, 513] @ [513, 64]
  log      10 * log10(clamp(min=1e-10))

--threads T calls torch.set_num_threads(T) and, unless already set in the
environment, sets OMP_NUM_THREADS, OPENBLAS_NUM_THREADS and MKL_NUM_THREADS
to T before torch is imported (Debian's torch multiplies matrices in
OpenBLAS, which torch.set_num_threads does not limit).

Nothing big is written: it keeps a float64 checksum of all mel values.  With
--report, one JSON object goes to FILE: import seconds (measured from the
first line of this script, so interpreter start-up is not in it), the wall
seconds of the processing loop (excluding imports) and per-stage seconds.

--compare reads a wav2mel output stream for the same files (via
scripts/wsacstream.py) and prints how far the two log-mel results are apart;
that is a sanity check that both sides do the same work, not part of timing.
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


# torch.set_num_threads() sets ATen's OpenMP pool only.  Debian's torch does
# its matmuls in OpenBLAS, whose own thread pool (sized by nproc) would
# otherwise also run: cap it (and any OpenMP runtime) to --threads before the
# libraries load, so "T threads" means T threads on both sides.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, _threads_from_argv(sys.argv[1:]))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
import torchaudio  # noqa: E402
import torchaudio.functional as AF  # noqa: E402

T_IMPORTED = time.perf_counter()

SR, N_FFT, HOP, N_MELS, FMIN, FMAX, AMIN = 32000, 1024, 320, 64, 50.0, 14000.0, 1e-10


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--report")
    ap.add_argument("--compare")
    ap.add_argument("--list", help="read file paths from LIST, one a line (as well as FILE...)")
    ap.add_argument("files", nargs="*")
    a = ap.parse_args()
    if a.list:
        with open(a.list) as f:
            a.files += [ln.rstrip("\n") for ln in f if ln.strip()]
    if not a.files:
        ap.error("no input files")

    torch.set_num_threads(a.threads)
    t0 = time.perf_counter()
    window = torch.hann_window(N_FFT, periodic=True, dtype=torch.float32)
    fb = AF.melscale_fbanks(N_FFT // 2 + 1, FMIN, FMAX, N_MELS, SR, norm="slaney", mel_scale="slaney")
    stages = dict(load=0.0, resample=0.0, stft=0.0, mel=0.0, log=0.0)
    checksum, frames, samples = 0.0, 0, 0
    mels = {}
    with torch.inference_mode():
        for path in a.files:
            ta = time.perf_counter()
            x, sr = sf.read(path, dtype="float32", always_2d=True)
            x = torch.from_numpy(x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0].copy())
            tb = time.perf_counter()
            if sr != SR:
                x = AF.resample(x, sr, SR)
            tc = time.perf_counter()
            spec = torch.stft(x, N_FFT, hop_length=HOP, win_length=N_FFT, window=window, center=True,
                              pad_mode="reflect", normalized=False, onesided=True, return_complex=True)
            power = spec.real.square() + spec.imag.square()  # [513, T]
            td = time.perf_counter()
            mel = torch.matmul(power.transpose(0, 1), fb)  # [T, 64]
            te = time.perf_counter()
            logmel = 10.0 * torch.log10(torch.clamp(mel, min=AMIN))
            checksum += float(logmel.sum(dtype=torch.float64))
            tf = time.perf_counter()
            stages["load"] += tb - ta
            stages["resample"] += tc - tb
            stages["stft"] += td - tc
            stages["mel"] += te - td
            stages["log"] += tf - te
            frames += logmel.shape[0]
            samples += x.shape[0]
            if a.compare:
                mels[os.path.realpath(path)] = logmel.numpy().copy()
    t1 = time.perf_counter()

    rep = dict(files=len(a.files), frames=frames, samples_32k=samples, checksum=checksum,
               threads=a.threads, torch=torch.__version__, torchaudio=torchaudio.__version__,
               import_s=T_IMPORTED - T_START, process_s=t1 - t0, stages_s=stages)
    if a.report:
        with open(a.report, "w") as f:
            json.dump(rep, f)
    else:
        json.dump(rep, sys.stdout)
        print()
    if a.compare:
        compare(a.compare, mels)


def compare(stream_path, mels):
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
    from wsacstream import read_stream, decode_tensor
    with open(stream_path, "rb") as f:
        _, records, _ = read_stream(f)
    diffs, nshape = [], 0
    for rec in records:
        ref = mels.get(os.path.realpath(rec.get("path", rec["key"])))
        if ref is None:
            continue
        m = rec["mel"]
        m = decode_tensor(m) if isinstance(m, dict) else np.asarray(m)
        if m.shape != ref.shape:
            nshape += 1
            t = min(m.shape[0], ref.shape[0])
            m, ref = m[:t], ref[:t]
        diffs.append(np.abs(m.astype(np.float64) - ref).ravel())
    if not diffs:
        print("compare: no matching records")
        return
    d = np.concatenate(diffs)
    print("compare: %d clips, |wav2mel - torch| in dB: median %.4f  p99 %.3f  max %.3f%s"
          % (len(diffs), np.median(d), np.percentile(d, 99), d.max(),
             "  (%d clips differ in frame count)" % nshape if nshape else ""))


if __name__ == "__main__":
    main()
