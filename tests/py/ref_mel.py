"""Float64 PyTorch reference of the WavCaps log mel front end (wsac.md A.3).

Built only from torch and torchaudio primitives: reflect padding, periodic Hann,
torch.fft.rfft, torchaudio.functional.melscale_fbanks(norm="slaney",
mel_scale="slaney"), 10*log10(max(x, 1e-10)).
"""
import torch
import torchaudio

torch.set_default_dtype(torch.float64)


def logmel(x, sr=32000, n_fft=1024, hop=320, n_mels=64, fmin=50.0, fmax=14000.0, amin=1e-10,
           center=True, win_length=None):
    x = torch.as_tensor(x, dtype=torch.float64)
    win_length = win_length or n_fft
    if center:
        x = torch.nn.functional.pad(x[None, None], (n_fft // 2, n_fft // 2), mode="reflect")[0, 0]
    frames = x.unfold(0, n_fft, hop)                       # [T, n_fft]
    w = torch.hann_window(win_length, periodic=True, dtype=torch.float64)
    if win_length < n_fft:
        left = (n_fft - win_length) // 2
        w = torch.nn.functional.pad(w, (left, n_fft - win_length - left))
    spec = torch.fft.rfft(frames * w, dim=-1)
    power = spec.real ** 2 + spec.imag ** 2                # [T, K]
    fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sr,
                                               norm="slaney", mel_scale="slaney")  # [K, M]
    mel = power @ fb.to(torch.float64)
    return (10.0 * torch.log10(torch.clamp(mel, min=amin))).numpy()


def fbank(sr=32000, n_fft=1024, n_mels=64, fmin=50.0, fmax=14000.0):
    return torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, fmin, fmax, n_mels, sr,
                                                 norm="slaney", mel_scale="slaney").numpy()
