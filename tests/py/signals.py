"""Deterministic test signals for the front-end tests and benchmarks."""
import numpy as np


def make(name, sr, seconds, seed=0):
    """float64 signal in [-1, 1] (clip: beyond, then clipped by the caller)."""
    n = int(round(sr * seconds))
    t = np.arange(n) / sr
    rng = np.random.default_rng(seed)
    if name == "noise":
        return 0.3 * rng.standard_normal(n)
    if name == "brown":
        x = np.cumsum(rng.standard_normal(n))
        x -= np.linspace(x[0], x[-1], n)
        return 0.5 * x / (np.abs(x).max() + 1e-9)
    if name == "chirp":  # 50 Hz -> 14 kHz, log sweep
        f0, f1 = 50.0, 14000.0
        k = np.log(f1 / f0) / max(seconds, 1e-9)
        return 0.5 * np.sin(2 * np.pi * f0 * (np.exp(k * t) - 1) / k)
    if name == "tones":
        return 0.2 * (np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 1000 * t + 1) +
                      0.5 * np.sin(2 * np.pi * 5000 * t + 2) + 0.25 * np.sin(2 * np.pi * 12345 * t))
    if name == "silence":
        return np.zeros(n)
    if name == "clipped":  # a loud sine driven into the rails
        return np.clip(3.0 * np.sin(2 * np.pi * 220 * t), -1, 1)
    if name == "impulses":
        x = np.zeros(n)
        x[:: max(1, sr // 7)] = 0.9
        return x
    if name == "dc":
        return 0.4 + 0.05 * np.sin(2 * np.pi * 300 * t)
    if name == "mix":  # noise bursts, tones and a chirp
        x = 0.05 * rng.standard_normal(n)
        x += 0.3 * np.sin(2 * np.pi * (300 + 2000 * t / max(seconds, 1e-9)) * t) * (t % 1 < 0.5)
        x += 0.2 * np.sin(2 * np.pi * 3000 * t) * (t % 0.7 > 0.4)
        return np.clip(x, -1, 1)
    raise ValueError(name)


NAMES = ["noise", "brown", "chirp", "tones", "silence", "clipped", "impulses", "dc", "mix"]
