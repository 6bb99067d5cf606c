#!/usr/bin/env python3
"""Reference of the PaSST front end SALSA uses, in float64 PyTorch.

The published AugmentMelSTFT.forward (hear21passt models/preprocess.py, as
SALSA's models/audio/passt.py builds it: n_mels 128, sr 32000, win_length 800,
hopsize 320, n_fft 1024, fmin 0, fmax None -> 32000 // 2 - 2000 // 2 = 15000,
freqm = timem = 0), evaluated in eval mode with the same torch/torchaudio
calls, re-typed here (no hear21passt import) and run in float64 (the published
code runs in float32: dtype="float32" gives that, for comparison):
  conv1d pre-emphasis [[-0.97, 1]] -> torch.stft(center=True, reflect,
  hann_window(800, periodic=False)) -> re^2 + im^2 ->
  kaldi.get_mel_banks(128, 1024, 32000, fmin, fmax, 100, -500, 1.0) padded
  with a zero Nyquist column -> (mel + 1e-5).log() -> (x + 4.5) / 5.
Returns [T, n_mels] (wav2mel's layout; the module gives [n_mels, T]).

SALSA's cut (passt_mel_segments, what wav2mel --frontend passt writes): the
clip fixed to 30 s (data/datasets/dataset_base_classes.py
__get_fixed_length_audio__: zeros appended, a longer clip cropped -- at a
random offset there, to its first 30 s here), unfolded into 10-s pieces
(models/audio/base.py split_audio: int(segment_length * sampling_rate)
samples, hop the same), the pieces batched through AugmentMelSTFT (each row
its own pre-emphasis, reflect padding, STFT); forward_audio keeps piece k
when k < ceil(audio_length * 3), audio_length = min(N, 30 s) / 30 s.

  passtmelref.py FILE.wav [--fmin F --fmax F] > FILE.npy   (a 32 kHz file)
  passtmelref.py --segments FILE.wav > FILE.npy   (the kept pieces' mels, concatenated)
"""
import math
import argparse
import sys

import numpy as np
import torch
import torchaudio


def passt_mel(x, sr=32000, n_fft=1024, win_length=800, hop=320, n_mels=128, fmin=0.0, fmax=None,
              fmax_aug_range=2000, dtype="float64"):
    dt = torch.float64 if dtype == "float64" else torch.float32
    old = torch.get_default_dtype()
    torch.set_default_dtype(dt)  # get_mel_banks builds its tensors in the default dtype
    try:
        if fmax is None:
            fmax = sr // 2 - fmax_aug_range // 2
        x = torch.as_tensor(np.array(x, dtype=np.float64 if dt == torch.float64 else np.float32))
        batch = x.dim() == 2
        if not batch:
            x = x[None]  # [1, N]; a batch [B, N] as WindowedPrediction passes its pieces
        coef = torch.as_tensor([[[-.97, 1]]], dtype=dt)
        x = torch.nn.functional.conv1d(x.unsqueeze(1), coef).squeeze(1)       # [1, N - 1]
        window = torch.hann_window(win_length, periodic=False, dtype=dt)
        x = torch.stft(x, n_fft, hop_length=hop, win_length=win_length, center=True, normalized=False,
                       window=window, return_complex=False)
        x = (x ** 2).sum(dim=-1)                                              # [1, K, T]
        mel_basis, _ = torchaudio.compliance.kaldi.get_mel_banks(n_mels, n_fft, sr, fmin, fmax, vtln_low=100.0,
                                                                 vtln_high=-500., vtln_warp_factor=1.0)
        mel_basis = torch.nn.functional.pad(mel_basis, (0, 1), mode="constant", value=0).to(dt)
        melspec = torch.matmul(mel_basis, x)
        melspec = (melspec + 0.00001).log()
        melspec = (melspec + 4.5) / 5.
        out = melspec.transpose(1, 2).numpy()  # [B, T, M]
        return out if batch else out[0]
    finally:
        torch.set_default_dtype(old)


def kept_segments(n, seg_samples=320000, nseg=3):
    """forward_audio's mask: pieces k < ceil(audio_length * nseg)."""
    fixed = seg_samples * nseg
    audio_length = min(n, fixed) / fixed
    return max(1, min(nseg, math.ceil(audio_length * nseg)))


def fixed_pieces(x, seg_samples=320000, nseg=3):
    """The clip as the published evaluation feeds it: [nseg, seg_samples]
    (zero-padded or cropped to nseg * seg_samples, then unfolded)."""
    x = np.asarray(x)
    fixed = seg_samples * nseg
    y = np.zeros(fixed, dtype=x.dtype)  # __pad__: np.zeros((fixed,)); y[:len(x)] = x
    y[:min(len(x), fixed)] = x[:fixed]
    t = torch.as_tensor(y)[None]
    return t.unfold(dimension=1, size=seg_samples, step=seg_samples).reshape(-1, seg_samples).numpy()


def passt_mel_segments(x, seg_samples=320000, nseg=3, all_pieces=False, **kw):
    """The mels of the clip's pieces, [k * S, n_mels] for the k kept (all nseg
    with all_pieces), as wav2mel --frontend passt writes them."""
    pieces = fixed_pieces(x, seg_samples, nseg)
    k = nseg if all_pieces else kept_segments(len(x), seg_samples, nseg)
    m = passt_mel(pieces[:k], **kw)  # [k, S, M]: each row is its own STFT, batched or not
    return m.reshape(-1, m.shape[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("file")
    ap.add_argument("--fmin", type=float, default=0.0)
    ap.add_argument("--fmax", type=float, default=None)
    ap.add_argument("--float32", action="store_true", help="the published float32 evaluation")
    ap.add_argument("--segments", action="store_true", help="SALSA's cut: the kept 10-s pieces' mels")
    a = ap.parse_args()
    import soundfile as sf
    x, sr = sf.read(a.file, dtype="float32", always_2d=True)
    if sr != 32000:
        sys.exit("passtmelref.py: %s is %d Hz; give a 32 kHz file" % (a.file, sr))
    mono = x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]
    f = passt_mel_segments if a.segments else passt_mel
    np.save(sys.stdout.buffer, f(mono, fmin=a.fmin, fmax=a.fmax, dtype="float32" if a.float32 else "float64"))


if __name__ == "__main__":
    main()
