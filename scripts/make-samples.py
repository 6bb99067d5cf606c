#!/usr/bin/python3
"""Synthesise the synthetic test clips in tests/data/signals/ (run once; the
outputs are committed). Deterministic: the same files every run.

  birdsong.flac      6 s, 44.1 kHz mono 16-bit: chirping birds over wind
  bell.flac          4 s, 48 kHz stereo 16-bit: a struck bell, a second strike
  rain-thunder.ogg   8 s, 32 kHz stereo Vorbis: rain with a roll of thunder
"""
import os
import sys

import numpy as np
import soundfile as sf

out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "tests", "data", "signals")
os.makedirs(out, exist_ok=True)
rng = np.random.default_rng(2309)


def lowpass(x, a):
    y = np.empty_like(x)
    acc = 0.0
    for i, v in enumerate(x):
        acc = a * acc + (1 - a) * v
        y[i] = acc
    return y


def birdsong(sr=44100, seconds=6.0):
    n = int(sr * seconds)
    t = np.arange(n) / sr
    wind = lowpass(rng.standard_normal(n), 0.995)
    wind *= 0.04 / np.abs(wind).max() * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    x = wind
    for start in np.sort(rng.uniform(0.2, seconds - 0.5, 14)):
        dur = rng.uniform(0.06, 0.18)
        f0, f1 = rng.uniform(2500, 4500), rng.uniform(3000, 7000)
        i0, i1 = int(start * sr), int((start + dur) * sr)
        tt = np.arange(i1 - i0) / sr
        f = f0 + (f1 - f0) * tt / dur + 400 * np.sin(2 * np.pi * 30 * tt)
        env = np.sin(np.pi * tt / dur) ** 2
        x[i0:i1] += 0.25 * env * np.sin(2 * np.pi * np.cumsum(f) / sr)
    return x


def bell(sr=48000, seconds=4.0):
    n = int(sr * seconds)
    t = np.arange(n) / sr
    partials = [(0.5, 1.0, 1.2), (1.0, 0.8, 2.0), (1.19, 0.5, 1.6), (1.56, 0.35, 2.5), (2.0, 0.3, 3.0),
                (2.66, 0.2, 4.0), (3.01, 0.15, 5.0)]
    left = np.zeros(n)
    for strike, gain in ((0.1, 1.0), (2.2, 0.6)):
        tt = np.clip(t - strike, 0, None)
        on = t >= strike
        for ratio, amp, decay in partials:
            left += on * gain * amp * np.exp(-decay * tt) * np.sin(2 * np.pi * 523.25 * ratio * tt)
    left *= 0.3 / np.abs(left).max()
    right = np.roll(left, int(0.0007 * sr)) * 0.9
    return np.stack([left, right], axis=1)


def rain_thunder(sr=32000, seconds=8.0):
    n = int(sr * seconds)
    t = np.arange(n) / sr
    rain = rng.standard_normal((n, 2)) * 0.03
    drops = (rng.random((n, 2)) < 0.002) * rng.uniform(-0.3, 0.3, (n, 2))
    thunder = lowpass(rng.standard_normal(n), 0.998)
    thunder *= 0.5 / np.abs(thunder).max() * np.exp(-np.clip(t - 3.0, 0, None) / 1.5) * (t > 3.0)
    return rain + drops + thunder[:, None]


sf.write(os.path.join(out, "birdsong.flac"), np.clip(birdsong(), -1, 1), 44100, subtype="PCM_16")
sf.write(os.path.join(out, "bell.flac"), np.clip(bell(), -1, 1), 48000, subtype="PCM_16")
sf.write(os.path.join(out, "rain-thunder.ogg"), np.clip(rain_thunder(), -1, 1), 32000, format="OGG",
         subtype="VORBIS")
for f in sorted(os.listdir(out)):
    print(f, os.path.getsize(os.path.join(out, f)), "bytes")
