#!/usr/bin/python3
"""Generate deterministic synthetic test clips for the benchmarks.

    /usr/bin/python3 bench/gen_clips.py OUTDIR N SECONDS [RATE]

Writes OUTDIR/clip0000.wav ... as mono 16-bit PCM WAV at RATE (44100) Hz.
Clip i is seeded with i, so the same (N, SECONDS, RATE) always gives the same
files.  Each clip is a mixture of white noise, 1/f (pink) noise, a few steady
or amplitude-modulated tones, and one or two linear/exponential chirps, cut
into segments by a random on/off gate (so there are quiet stretches too), then
normalised to a random peak level.  Content hardly matters for the timing of
a mel front end (it is data-independent), but it keeps the numbers honest
(no all-zero fast paths, no denormals from silence) and gives realistic spectra.
"""
import os
import sys

import numpy as np
import soundfile as sf


def make_clip(i, n, sr):
    rng = np.random.default_rng(1000 + i)
    t = np.arange(n, dtype=np.float64) / sr
    x = np.zeros(n)

    # white noise
    x += rng.uniform(0.005, 0.1) * rng.standard_normal(n)

    # pink noise: shape white noise by 1/sqrt(f) in the frequency domain
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    f[0] = f[1]
    spec /= np.sqrt(f / f[1])
    pink = np.fft.irfft(spec, n)
    pink /= np.max(np.abs(pink)) + 1e-12
    x += rng.uniform(0.0, 0.3) * pink

    # tones, some amplitude-modulated
    for _ in range(rng.integers(1, 5)):
        f0 = np.exp(rng.uniform(np.log(50.0), np.log(15000.0)))
        a = rng.uniform(0.05, 0.4)
        env = 1.0
        if rng.random() < 0.5:
            env = 0.5 * (1.0 + np.sin(2 * np.pi * rng.uniform(0.2, 8.0) * t + rng.uniform(0, 2 * np.pi)))
        x += a * env * np.sin(2 * np.pi * f0 * t + rng.uniform(0, 2 * np.pi))

    # chirps (linear or exponential sweep over the whole clip)
    T = n / sr
    for _ in range(rng.integers(1, 3)):
        f0, f1 = np.exp(rng.uniform(np.log(40.0), np.log(20000.0), 2))
        a = rng.uniform(0.05, 0.3)
        if rng.random() < 0.5:
            phase = 2 * np.pi * (f0 * t + 0.5 * (f1 - f0) / T * t * t)
        else:
            k = (f1 / f0) ** (1.0 / T)
            phase = 2 * np.pi * f0 * (k ** t - 1.0) / np.log(k) if abs(k - 1.0) > 1e-9 else 2 * np.pi * f0 * t
        x += a * np.sin(phase)

    # random on/off gate with short fades: 0.2 .. 3 s segments
    gate = np.ones(n)
    pos = 0
    while pos < n:
        seg = int(rng.uniform(0.2, 3.0) * sr)
        if rng.random() < 0.2:
            gate[pos:pos + seg] = rng.uniform(0.0, 0.05)
        pos += seg
    fade = max(1, int(0.01 * sr))
    c = np.concatenate(([0.0], np.cumsum(gate)))
    lo = np.clip(np.arange(n) - fade // 2, 0, n)
    hi = np.clip(lo + fade, 0, n)
    gate = (c[hi] - c[lo]) / (hi - lo)  # moving average: ~10 ms fades
    x *= gate

    x *= rng.uniform(0.3, 0.95) / (np.max(np.abs(x)) + 1e-12)
    return np.round(x * 32767.0).astype(np.int16)


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__.strip().splitlines()[2].strip())
    out, count, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    sr = int(sys.argv[4]) if len(sys.argv) == 5 else 44100
    n = int(round(seconds * sr))
    os.makedirs(out, exist_ok=True)
    for i in range(count):
        path = os.path.join(out, "clip%04d.wav" % i)
        sf.write(path + ".tmp", make_clip(i, n, sr), sr, subtype="PCM_16", format="WAV")
        os.replace(path + ".tmp", path)


if __name__ == "__main__":
    main()
