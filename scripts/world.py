#!/usr/bin/python3
"""world: build a captioned sound world (FLAC scenes + Clotho-format CSVs) from
recordings shipped in Debian packages and procedural sounds.

Usage: python3 scripts/world.py [options] -o DIR      (see --help, man -l man/man1/world.1)

Exit status: 0 every scene written; 1 usage error; 2 fatal (a required package
missing, unwritable output); 3 some scenes failed (each named on stderr).
"""
import argparse
import csv
import glob
import hashlib
import io
import json
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib

import numpy as np
import soundfile as sf

resample_poly = lfilter = butter = None     # scipy.signal, imported by main() (0.4 s: not for --help)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import world_classes as wc  # noqa: E402

PROG = "world"
SR = 32000
CACHE_VERSION = "1"
WESNOTH = "/usr/share/games/wesnoth/1.16/data/core/sounds"
FREEDESKTOP = "/usr/share/sounds/freedesktop/stereo"
SF2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2"
PACKAGES = {  # source kind -> (Debian packages, how to tell they are installed)
    "wesnoth": ("wesnoth-1.16-data", lambda: os.path.isdir(WESNOTH)),
    "freedesktop": ("sound-theme-freedesktop", lambda: os.path.isdir(FREEDESKTOP)),
    "gm": ("fluid-soundfont-gm fluidsynth", lambda: os.path.isfile(SF2) and shutil.which("fluidsynth")),
    "espeak": ("espeak-ng", lambda: shutil.which("espeak-ng")),
    "proc": ("(none: generated)", lambda: True),
}
SMALL_KINDS = ("proc", "freedesktop", "espeak")
FULL_KINDS = ("proc", "freedesktop", "espeak", "wesnoth", "gm")
SPLITS = ("train", "val", "test")
SPLIT_ID = {"train": 0, "val": 1, "test": 2}
TEST_SHARE = 0.25
SENTENCES = [
    "the next train to the city leaves from platform four", "please remember to bring your keys",
    "i think it is going to rain this afternoon", "can you hand me the blue folder on the desk",
    "we should meet again next week at noon", "the meeting has been moved to the small room",
    "turn left at the end of the road", "this is the last call for the evening boat",
    "my sister bought a new bicycle yesterday", "the soup needs a little more salt",
    "do not forget to close the window", "there are seven apples in the basket",
    "thank you very much for coming today", "the museum opens at nine in the morning",
    "he said that the bridge was closed", "put the books back on the top shelf",
]


def say(msg):
    print("%s: %s" % (PROG, msg), file=sys.stderr, flush=True)


def fatal(msg):
    say(msg)
    sys.exit(2)


def key_int(*parts):
    """A stable 32-bit integer from strings/ints (for RNG keys)."""
    return zlib.crc32("\x1f".join(str(p) for p in parts).encode())


def rng_for(*parts):
    return np.random.default_rng([key_int(*parts[:1])] + [key_int(p) for p in parts[1:]])


# ---------------------------------------------------------------------------------------------
# sources: one entry per recording, grouped for the split
# ---------------------------------------------------------------------------------------------

def expand_sources(cls, kinds):
    """[(source_id, group, kind, spec)] of a class, from the installed kinds only."""
    out = []
    for src in cls["sources"]:
        kind = src[0]
        if kind not in kinds:
            continue
        if kind == "proc":
            _, gen, n = src
            for v in range(n):
                sid = "proc:%s:%d" % (gen, v)
                out.append((sid, sid, kind, (gen, v)))
        elif kind == "freedesktop":
            for name in src[1]:
                path = os.path.join(FREEDESKTOP, name + ".oga")
                if not os.path.isfile(path):
                    fatal("sound-theme-freedesktop has no %s (package damaged?)" % path)
                sid = "freedesktop:%s.oga" % name
                out.append((sid, sid, kind, path))
        elif kind == "wesnoth":
            for pat in src[1]:
                hits = sorted(glob.glob(os.path.join(WESNOTH, pat)))
                if not hits:
                    fatal("wesnoth-1.16-data has no %s (package damaged?)" % pat)
                stems = {}
                for path in hits:   # mace.ogg and mace.wav: one recording, kept once (.ogg)
                    stems.setdefault(os.path.splitext(path)[0], path)
                for path in stems.values():
                    sid = "wesnoth:" + os.path.relpath(path, WESNOTH)
                    out.append((sid, sid, kind, path))
        elif kind == "gm":
            _, progs, gkind, n = src
            for prog in progs:
                group = "gm:%s:%d" % ("drumkit" if gkind == "drums" else "program", prog)
                for ph in range(n):
                    out.append(("%s:phrase%d:%s" % (group, ph, cls["name"]), group, kind, (gkind, prog, ph)))
        elif kind == "espeak":
            _, voices, n = src
            for voice in voices:
                group = "espeak:" + voice
                for k in range(n):
                    out.append(("%s:sentence%d" % (group, k), group, kind, (voice, k)))
    # one source id per file even when two patterns overlap
    seen, uniq = set(), []
    for s in out:
        if s[0] not in seen:
            seen.add(s[0])
            uniq.append(s)
    return uniq


def split_groups(cls, sources, seed):
    """Hold out a share of every class's recording groups for the test split."""
    groups = sorted(set(s[1] for s in sources))
    rng = rng_for("split", seed, cls["name"])
    order = [groups[i] for i in rng.permutation(len(groups))]
    n_test = max(1, int(round(TEST_SHARE * len(groups))))
    test = set(order[:n_test])
    return {"train": [s for s in sources if s[1] not in test], "test": [s for s in sources if s[1] in test]}


def to_mono32k(x, sr):
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(axis=1)
    if sr != SR:
        g = np.gcd(int(sr), SR)
        x = resample_poly(x, SR // g, int(sr) // g)
    return x


def trim(x, floor_db=-45.0):
    if len(x) == 0:
        return x
    env = np.abs(x)
    thr = env.max() * 10 ** (floor_db / 20)
    idx = np.nonzero(env > thr)[0]
    if len(idx) == 0:
        return x[:0]
    return x[idx[0]:idx[-1] + 1]


def finish_source(x):
    """Trimmed, DC-free, RMS 0.1 (over the sounding part), float32."""
    x = trim(np.asarray(x, dtype=np.float64))
    if len(x) < SR // 20:
        raise ValueError("under 50 ms of sound")
    x = x - x.mean()
    fade = min(len(x) // 4, SR // 200)
    if fade > 0:
        ramp = np.linspace(0, 1, fade)
        x[:fade] *= ramp
        x[-fade:] *= ramp[::-1]
    frames = x[:len(x) // 320 * 320].reshape(-1, 320) if len(x) >= 320 else x.reshape(1, -1)
    e = (frames ** 2).mean(axis=1)
    active = e[e > e.max() * 1e-3]
    rms = np.sqrt(active.mean())
    return (x * (0.1 / rms)).astype(np.float32)


def midi_bytes(channel, program, notes):
    """A type-0 MIDI file: program change, then (start_s, dur_s, note, velocity) notes; 120 bpm, 480 tpq."""
    tpq = 480
    tick = lambda s: int(round(s * tpq * 2))  # noqa: E731  (1 s = 2 beats)
    ev = [(0, bytes([0xC0 | channel, program]))]
    for start, dur, note, vel in notes:
        ev.append((tick(start), bytes([0x90 | channel, note, vel])))
        ev.append((tick(start + dur), bytes([0x80 | channel, note, 0])))
    ev.sort(key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90))
    body, now = bytearray(), 0
    for t, msg in ev:
        d, vlq = t - now, [ (t - now) & 0x7F ]
        d >>= 7
        while d:
            vlq.insert(0, (d & 0x7F) | 0x80)
            d >>= 7
        body += bytes(vlq) + msg
        now = t
    body += bytes([0, 0xFF, 0x2F, 0])
    return (b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
            + tpq.to_bytes(2, "big") + b"MTrk" + len(body).to_bytes(4, "big") + bytes(body))


def gm_notes(gkind, prog, ph, name):
    rng = rng_for("gm", gkind, prog, ph, name)
    notes = []
    if gkind == "melody":
        base = int(rng.integers(55, 72))
        scale = [0, 2, 4, 5, 7, 9, 11, 12]
        t = 0.0
        for _ in range(int(rng.integers(3, 8))):
            dur = float(rng.choice([0.25, 0.375, 0.5, 0.75]))
            notes.append((t, dur * 0.95, base + int(rng.choice(scale)), int(rng.integers(80, 115))))
            t += dur
        return 0, notes
    if gkind == "drums":
        step = float(rng.choice([0.2, 0.25, 0.3]))
        for i in range(int(rng.integers(8, 16))):
            if i % 4 == 0:
                notes.append((i * step, 0.1, 36, 110))
            if i % 4 == 2:
                notes.append((i * step, 0.1, 38, 105))
            if rng.random() < 0.7:
                notes.append((i * step, 0.05, int(rng.choice([42, 44, 46])), 80))
            if rng.random() < 0.12:
                notes.append((i * step, 0.1, int(rng.choice([45, 47, 50, 49])), 100))
        return 9, notes
    # effect: one long note at a varied pitch
    return 0, [(0.0, float(rng.uniform(1.5, 3.5)), int(rng.integers(54, 67)), int(rng.integers(90, 120)))]


def render_source(entry):
    """Decode or synthesise one source at 32 kHz mono (float32)."""
    sid, _group, kind, spec = entry
    if kind in ("wesnoth", "freedesktop"):
        x, sr = sf.read(spec, dtype="float64", always_2d=False)
        return finish_source(to_mono32k(x, sr))
    if kind == "proc":
        gen, v = spec
        return finish_source(PROCEDURAL[gen](rng_for("proc", gen, v)))
    with tempfile.TemporaryDirectory(prefix="world-") as tmp:
        wav = os.path.join(tmp, "out.wav")
        if kind == "gm":
            gkind, prog, ph = spec
            ch, notes = gm_notes(gkind, prog, ph, sid)
            mid = os.path.join(tmp, "in.mid")
            with open(mid, "wb") as f:
                f.write(midi_bytes(ch, prog, notes))
            cmd = ["fluidsynth", "-ni", "-q", "-R", "0", "-C", "0", "-g", "0.6", "-r", str(SR), "-F", wav, SF2, mid]
        else:
            voice, k = spec
            rng = rng_for("espeak", voice, k)
            text = SENTENCES[int(rng.integers(len(SENTENCES)))]
            cmd = ["espeak-ng", "-v", voice, "-s", str(int(rng.integers(140, 190))), "-w", wav, text]
        p = subprocess.run(cmd, capture_output=True)
        if p.returncode != 0 or not os.path.isfile(wav):
            raise RuntimeError("%s failed: %s" % (cmd[0], p.stderr.decode(errors="replace").strip()[:200]))
        x, sr = sf.read(wav, dtype="float64", always_2d=False)
    return finish_source(to_mono32k(x, sr))


def cached_source(args):
    entry, cache = args
    name = hashlib.sha1(("%s|%s" % (CACHE_VERSION, entry[0])).encode()).hexdigest()[:20] + ".npy"
    path = os.path.join(cache, name)
    if os.path.isfile(path):
        try:
            return entry[0], np.load(path), None
        except Exception:  # a torn cache file: render again
            pass
    try:
        x = render_source(entry)
    except Exception as e:  # noqa: BLE001
        return entry[0], None, str(e)
    tmp = path + ".%d.tmp" % os.getpid()
    with open(tmp, "wb") as f:
        np.save(f, x)
    os.replace(tmp, path)
    return entry[0], x, None


# ---------------------------------------------------------------------------------------------
# procedural sounds: each call gets its own RNG (one variant = one "recording")
# ---------------------------------------------------------------------------------------------

def _t(d):
    return np.arange(int(d * SR)) / SR


def _lp(x, hz, order=2):
    b, a = butter(order, hz / (SR / 2), "low")
    return lfilter(b, a, x)


def _bp(x, lo, hi, order=2):
    b, a = butter(order, [lo / (SR / 2), hi / (SR / 2)], "band")
    return lfilter(b, a, x)


def _hp(x, hz, order=2):
    b, a = butter(order, hz / (SR / 2), "high")
    return lfilter(b, a, x)


def _smooth_env(rng, n, rate_hz, depth):
    k = max(2, int(n / SR * rate_hz) + 2)
    pts = 1 + depth * (rng.random(k) - 0.5) * 2
    return np.interp(np.linspace(0, k - 1, n), np.arange(k), pts)


def p_rain(rng):
    d = rng.uniform(6, 10)
    n = int(d * SR)
    x = _bp(rng.standard_normal(n), rng.uniform(800, 2000), rng.uniform(5000, 9000)) * 0.3
    drops = np.zeros(n)
    idx = rng.integers(0, n - 200, int(d * rng.uniform(80, 300)))
    drops[idx] = rng.uniform(0.3, 1.0, len(idx)) * rng.choice([-1, 1], len(idx))
    drops = lfilter([1], [1, -0.6], _hp(drops, 2000))
    return x + drops


def p_wind(rng):
    d = rng.uniform(6, 10)
    n = int(d * SR)
    x = _lp(rng.standard_normal(n), rng.uniform(300, 900), 2)
    x = _hp(x, 40)
    return x * _smooth_env(rng, n, rng.uniform(0.3, 1.0), 0.8) ** 2


def p_engine(rng):
    d = rng.uniform(6, 10)
    t = _t(d)
    f0 = rng.uniform(25, 60) * (1 + 0.01 * np.sin(2 * np.pi * rng.uniform(0.1, 0.5) * t))
    ph = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(rng.uniform(0.2, 1.0) / k * np.sin(k * ph + rng.uniform(0, 6)) for k in range(1, 12))
    x = x + 0.15 * _lp(rng.standard_normal(len(t)), 400)
    return x * (1 + 0.1 * np.sin(2 * np.pi * f0 / 2 * t))


def p_waves(rng):
    d = rng.uniform(8, 10)
    t = _t(d)
    period = rng.uniform(3, 6)
    sw = np.clip(np.sin(2 * np.pi * t / period + rng.uniform(0, 6)), 0, None) ** 2 + 0.15
    return _bp(rng.standard_normal(len(t)), 150, rng.uniform(2500, 5000)) * sw


def p_siren(rng):
    d = rng.uniform(2.5, 5)
    t = _t(d)
    lo, hi = rng.uniform(500, 800), rng.uniform(1000, 1600)
    rate = rng.choice([rng.uniform(0.2, 0.5), rng.uniform(2.5, 5)])
    f = lo + (hi - lo) * (0.5 + 0.5 * np.sin(2 * np.pi * rate * t))
    ph = 2 * np.pi * np.cumsum(f) / SR
    return np.sin(ph) + 0.3 * np.sin(3 * ph) + 0.15 * np.sin(5 * ph)


def p_beep(rng):
    d = rng.uniform(0.12, 0.4)
    t = _t(d)
    f = rng.uniform(700, 2200)
    x = np.sin(2 * np.pi * f * t)
    if rng.random() < 0.4:
        x = np.sign(x) * 0.6
    return x


def p_alarm(rng):
    d = rng.uniform(1.5, 3)
    t = _t(d)
    f1, f2 = rng.uniform(600, 1200), rng.uniform(1200, 2400)
    rate = rng.uniform(4, 10)
    f = np.where((t * rate) % 1 < 0.5, f1, f2)
    ph = 2 * np.pi * np.cumsum(f) / SR
    gate = ((t * rate / 2) % 1 < 0.8).astype(float) if rng.random() < 0.5 else 1.0
    return np.sign(np.sin(ph)) * 0.5 * gate


def _click(rng, dur, freqs, decay):
    t = _t(dur)
    return sum(np.sin(2 * np.pi * f * t + rng.uniform(0, 6)) for f in freqs) * np.exp(-t / decay)


def p_ticking(rng):
    d = rng.uniform(2.5, 4.5)
    n = int(d * SR)
    x = np.zeros(n)
    period = rng.choice([0.5, 1.0, 1.0 / 3])
    f = rng.uniform(2000, 5000)
    for i, t0 in enumerate(np.arange(0.05, d - 0.05, period)):
        c = _click(rng, 0.02, [f * (1.0 if i % 2 == 0 else 0.85), f * 1.7], 0.003)
        s = int(t0 * SR)
        x[s:s + len(c)] += c[:n - s]
    return x + 0.002 * rng.standard_normal(n)


def p_dripping(rng):
    d = rng.uniform(2.5, 4.5)
    n = int(d * SR)
    x = np.zeros(n)
    t0 = 0.05
    while t0 < d - 0.2:
        dur = 0.06
        t = _t(dur)
        f = rng.uniform(700, 1500) * (1 + 3 * t / dur)
        blip = np.sin(2 * np.pi * np.cumsum(f) / SR) * np.exp(-t / 0.015)
        s = int(t0 * SR)
        x[s:s + len(blip)] += blip[:n - s]
        t0 += rng.uniform(0.25, 0.9)
    return x


def p_footsteps(rng):
    d = rng.uniform(2.5, 4.5)
    n = int(d * SR)
    x = np.zeros(n)
    step = rng.uniform(0.45, 0.65)
    lo = rng.uniform(80, 200)
    for t0 in np.arange(0.05, d - 0.2, step):
        t0 += rng.uniform(-0.02, 0.02)
        b = _bp(rng.standard_normal(int(0.08 * SR)), lo, rng.uniform(1500, 4000)) * np.exp(-_t(0.08) / 0.02)
        s = int(t0 * SR)
        x[s:s + len(b)] += b[:n - s] * rng.uniform(0.7, 1.0)
    return x


def p_knocking(rng):
    n_k = int(rng.integers(2, 5))
    gap = rng.uniform(0.15, 0.3)
    d = n_k * gap + 0.3
    n = int(d * SR)
    x = np.zeros(n)
    fs = [rng.uniform(150, 300), rng.uniform(400, 700), rng.uniform(900, 1400)]
    for i in range(n_k):
        c = _click(rng, 0.12, fs, 0.025) + 0.3 * _bp(rng.standard_normal(int(0.12 * SR)), 500, 3000) * np.exp(
            -_t(0.12) / 0.01)
        s = int((0.02 + i * gap) * SR)
        x[s:s + len(c)] += c[:n - s]
    return x


def p_thunder(rng):
    d = rng.uniform(2.5, 4.5)
    t = _t(d)
    x = _lp(rng.standard_normal(len(t)), rng.uniform(150, 400), 3)
    crack = _hp(rng.standard_normal(len(t)), 800) * np.exp(-t / rng.uniform(0.05, 0.2))
    env = np.exp(-t / rng.uniform(0.8, 1.6)) * _smooth_env(rng, len(t), 4, 0.6)
    return 3 * x * env + 0.5 * crack


def p_applause(rng):
    d = rng.uniform(2.5, 5)
    n = int(d * SR)
    x = np.zeros(n)
    n_claps = int(d * rng.uniform(40, 120))
    env = np.minimum(1, np.minimum(_t(d) / 0.4, (d - _t(d)) / 0.8))
    for s in rng.integers(0, n - 800, n_claps):
        c = _bp(rng.standard_normal(400), rng.uniform(600, 1200), rng.uniform(2500, 5000)) * np.exp(-np.arange(400) / 60)
        x[s:s + 400] += c * env[s]
    return x


def p_helicopter(rng):
    d = rng.uniform(3, 6)
    t = _t(d)
    rate = rng.uniform(4, 7)
    thump = (0.5 + 0.5 * np.cos(2 * np.pi * rate * t)) ** 6
    x = _lp(rng.standard_normal(len(t)), 500) * (0.3 + thump)
    whine = 0.05 * np.sin(2 * np.pi * rng.uniform(900, 1800) * t)
    doppler = np.exp(-((t - d / 2) / (d / 2.5)) ** 2)
    return (x + whine) * (0.4 + doppler)


PROCEDURAL = {"rain": p_rain, "wind": p_wind, "engine": p_engine, "waves": p_waves, "siren": p_siren,
              "beep": p_beep, "alarm": p_alarm, "ticking": p_ticking, "dripping": p_dripping,
              "footsteps": p_footsteps, "knocking": p_knocking, "thunder": p_thunder,
              "applause": p_applause, "helicopter": p_helicopter}


# ---------------------------------------------------------------------------------------------
# scenes
# ---------------------------------------------------------------------------------------------

CLS = {c["name"]: c for c in wc.CLASSES}
POOLS = {}      # (class, "train"|"test") -> [source id]
AUDIO = {}      # source id -> float32 array
SRCINFO = {}    # source id -> group
CONFIG = {}


def category(level_db):
    return "loud" if level_db >= wc.LOUD_DB else "quiet" if level_db <= wc.QUIET_DB else "normal"


def pool_split(split):
    return "test" if split == "test" else "train"   # validation draws on the training recordings


def excerpt(rng, x, max_len):
    if len(x) <= max_len:
        return x.astype(np.float64)
    s = int(rng.integers(0, len(x) - max_len))
    y = x[s:s + max_len].astype(np.float64)
    f = min(len(y) // 4, int(0.02 * SR))
    ramp = np.linspace(0, 1, f)
    y[:f] *= ramp
    y[-f:] *= ramp[::-1]
    return y


def fill(rng, x, n):
    """A background of n samples: an excerpt, or the recording looped with crossfades."""
    if len(x) >= n:
        return excerpt(rng, x, n)
    out = np.zeros(n)
    xf = min(int(0.1 * SR), len(x) // 4)
    ramp = np.linspace(0, 1, xf)
    pos = -int(rng.integers(0, len(x) // 2))
    while pos < n:
        y = x.astype(np.float64).copy()
        y[:xf] *= ramp
        y[-xf:] *= ramp[::-1]
        a, b = max(pos, 0), min(pos + len(y), n)
        out[a:b] += y[a - pos:b - pos]
        pos += len(y) - xf
    return out


def no_shared_words(names):
    seen = set()
    for n in names:
        w = set(CLS[n]["words"].split())
        if w & seen:
            return False
        seen |= w
    return True


def plan_scene(split, index):
    seed = CONFIG["seed"]
    rng = np.random.default_rng([seed & 0xFFFFFFFF, SPLIT_ID[split], index])
    pool = pool_split(split)
    classes = CONFIG["classes"]
    bgs = [c for c in classes if CLS[c].get("role", "fg") in ("bg", "both")]
    fgs = [c for c in classes if CLS[c].get("role", "fg") in ("fg", "both")]
    for _attempt in range(200):
        dur = round(float(rng.uniform(4, 10)), 2)
        n = int(round(dur * SR))
        k = int(rng.choice([1, 2, 3], p=[0.3, 0.4, 0.3]))
        bg = bgs[int(rng.integers(len(bgs)))]
        names = [fgs[i] for i in rng.choice(len(fgs), k, replace=False)]
        if bg in names:
            continue
        events, t = [], float(rng.uniform(0.2, 1.0))
        ok = True
        for i, name in enumerate(names):
            c = CLS[name]
            srcs = POOLS[(name, pool)]
            sid = srcs[int(rng.integers(len(srcs)))]
            x = AUDIO[sid]
            pitch = "normal"
            if c.get("pitch") and rng.random() < 0.5:
                pitch = "high" if rng.random() < 0.5 else "low"
            if pitch != "normal":
                up, down = (3, 4) if pitch == "high" else (4, 3)
                x = resample_poly(x.astype(np.float64), up, down)
            max_len = int(rng.uniform(1.0, 3.5) * SR) if c.get("cut", True) else int(4.0 * SR)
            y = excerpt(rng, x, max_len)
            reps = 1
            if c.get("repeat") and len(y) < 1.2 * SR and rng.random() < 0.6:
                reps = int(rng.choice([2, 3, 4], p=[0.5, 0.3, 0.2]))
            gaps = [float(rng.uniform(0.12, 0.5)) for _ in range(reps - 1)]
            length = (reps * len(y) + int(sum(gaps) * SR)) / SR
            rel = None
            if i > 0:
                prev = events[-1]
                rel = "seq" if rng.random() < 0.5 else "overlap"
                if rel == "seq":
                    t = max(e["offset"] for e in events) + float(rng.uniform(0.15, 0.8))
                else:
                    span = prev["offset"] - prev["onset"]
                    if span < 0.6:
                        ok = False
                        break
                    t = prev["onset"] + float(rng.uniform(0.1, 0.6)) * (span - 0.4)
                    if t > prev["offset"] - 0.3:
                        ok = False
                        break
            level = round(float(rng.uniform(-30, -10)), 1)
            events.append(dict(cls=name, source=sid, group=SRCINFO[sid], onset=t, offset=t + length,
                               level_db=level, loudness=category(level), pitch=pitch, reps=reps,
                               relation_to_previous=rel, _y=y, _gaps=gaps))
        if not ok or max(e["offset"] for e in events) > dur - 0.1:
            continue
        if not no_shared_words(names + [bg]):
            continue
        bsrcs = POOLS[(bg, pool)]
        bsid = bsrcs[int(rng.integers(len(bsrcs)))]
        blevel = round(float(rng.uniform(-36, -22)), 1)
        back = dict(cls=bg, source=bsid, group=SRCINFO[bsid], onset=0.0, offset=dur, level_db=blevel,
                    loudness=category(blevel), pitch="normal", reps=1)
        return rng, dur, n, back, events
    raise RuntimeError("no layout fits after 200 tries")


def render_scene(job):
    split, index = job
    name = "%s_%05d" % (split, index)
    try:
        rng, dur, n, back, events = plan_scene(split, index)
        mix = np.zeros(n)
        b = fill(rng, AUDIO[back["source"]], n)
        f = int(0.05 * SR)
        b[:f] *= np.linspace(0, 1, f)
        b[-f:] *= np.linspace(1, 0, f)
        mix += b * (10 ** (back["level_db"] / 20) / 0.1)
        for e in events:
            y, gaps = e.pop("_y"), e.pop("_gaps")
            g = 10 ** (e["level_db"] / 20) / 0.1
            pos = int(round(e["onset"] * SR))
            occ = []
            for r in range(e["reps"]):
                a = pos
                mix[a:a + len(y)] += g * y[:n - a]
                occ.append([round(a / SR, 3), round(min(a + len(y), n) / SR, 3)])
                pos = a + len(y) + (int(gaps[r] * SR) if r < len(gaps) else 0)
            e["occurrences"] = occ
            e["onset"], e["offset"] = occ[0][0], occ[-1][1]
        peak = np.abs(mix).max()
        gain = 0.95 / peak if peak > 0.95 else 1.0
        pcm = np.round(np.clip(mix * gain, -1, 1) * 32767).astype(np.int16)
        path = os.path.join(CONFIG["out"], "audio", split, name + ".flac")
        buf = io.BytesIO()
        sf.write(buf, pcm, SR, format="FLAC", subtype="PCM_16")
        with open(path + ".tmp", "wb") as fh:
            fh.write(buf.getvalue())
        os.replace(path + ".tmp", path)
        caps = captions(rng, back, events)
        meta = dict(file_name=name + ".flac", split=split, duration=dur, mix_gain_db=round(20 * np.log10(gain), 2),
                    background=back, events=events)
        return name, meta, caps, None
    except Exception as ex:  # noqa: BLE001
        return name, None, None, "%s: %s" % (type(ex).__name__, ex)


# ---------------------------------------------------------------------------------------------
# captions
# ---------------------------------------------------------------------------------------------

DETS = ("a", "an", "the", "some")
LOUD_ADJ = {"loud": ["loud"], "quiet": ["faint", "quiet", "soft"]}
LOUD_ADV = {"loud": ["loudly"], "quiet": ["softly", "quietly", "faintly", "in the distance"]}
PITCH_ADJ = {"high": ["high-pitched", "shrill"], "low": ["low-pitched", "deep"]}
PITCH_ADV = {"high": ["at a high pitch"], "low": ["at a low pitch"]}
REP_ADV = {2: ["twice", "two times"], 3: ["repeatedly", "several times", "a few times"]}


def has_word(text, name):
    words = set(CLS[name]["words"].split())
    return any(tok in words for tok in text.split())


def phrase(rng, e, form, role="fg", terse=False):
    """One event as a finite clause (form 'fin') or a gerund noun phrase ('np')."""
    c = CLS[e["cls"]]
    groups = c["forms"]
    g = groups[int(rng.integers(len(groups)))]
    subj, plural = g[0][int(rng.integers(len(g[0])))]
    verbs = g[1] if has_word(subj, c["name"]) else [v for v in g[1] if all(has_word(f, c["name"]) for f in v)]
    sg, pl, ing = verbs[int(rng.integers(len(verbs)))]
    generic = not has_word(subj, c["name"])
    adjs, advs = [], []
    loud = e["loudness"]
    keep = 0.25 if terse else 1.0   # terse: fewer modifiers, for scenes whose captions run long
    if loud != "normal" and rng.random() < 0.7 * keep:
        if not generic and rng.random() < 0.5:
            adjs.append(LOUD_ADJ[loud][int(rng.integers(len(LOUD_ADJ[loud])))])
        else:
            advs.append(LOUD_ADV[loud][int(rng.integers(len(LOUD_ADV[loud])))])
    if e["pitch"] != "normal" and rng.random() < 0.75 * keep:
        p = e["pitch"]
        if not generic and rng.random() < 0.7:
            adjs.insert(0, PITCH_ADJ[p][int(rng.integers(len(PITCH_ADJ[p])))])
        else:
            advs.append(PITCH_ADV[p][0])
    if e["reps"] > 1 and rng.random() < 0.8 * keep:
        opts = REP_ADV[min(e["reps"], 3)]
        advs.append(opts[int(rng.integers(len(opts)))])
    toks = subj.split()
    if adjs:
        at = 1 if toks[0] in DETS else 0
        toks = toks[:at] + adjs + toks[at:]
    s = " ".join(toks)
    if form == "np":
        v = ing
        out = s + " " + v
        if rng.random() < 0.25 and role == "fg" and not terse:
            out = "the sound of " + out
    else:
        if rng.random() < 0.25:
            v = ("are " if plural else "is ") + ing
        else:
            v = pl if plural else sg
        out = s + " " + v
    if advs:
        out += " " + " ".join(advs)
    return out


def fix_articles(text):
    toks = text.split(" ")
    for i in range(len(toks) - 1):
        if toks[i] in ("a", "an"):
            toks[i] = "an" if toks[i + 1][:1] in "aeiou" else "a"
    return " ".join(toks)


def fresh(rng, options, parts):
    """One of OPTIONS, preferring a connector the caption has not used yet."""
    used = set(" ".join(parts).replace(",", " ").split())
    new = [o for o in options if not set(o.replace(",", " ").split()) & used]
    pool = new or options
    return pool[int(rng.integers(len(pool)))]


def one_caption(rng, back, events, terse=False):
    k = len(events)
    parts = []
    r = rng.random()
    where = "start" if r < 0.35 else "end" if r < 0.7 else "with"
    # the foreground chain, in time order (or reversed with "after" for two events)
    if k == 2 and events[1]["relation_to_previous"] == "seq" and rng.random() < 0.25:
        parts = [phrase(rng, events[1], "fin", terse=terse), "after", phrase(rng, events[0], "fin", terse=terse)]
    else:
        np_start = where != "start" and rng.random() < 0.2
        parts.append(phrase(rng, events[0], "np" if np_start else "fin", terse=terse))
        for e in events[1:]:
            if e["relation_to_previous"] == "seq":
                opts = ["then", ", then", "and then", "before", ", followed by", "followed by"]
            else:
                opts = ["while", "as", ", while", "with"]
            conn = fresh(rng, opts, parts)
            form = "np" if ("followed" in conn or conn == "with" or np_start) else "fin"
            parts += [conn, phrase(rng, e, form, terse=terse)]
    chain = " ".join(parts)
    used = set(chain.replace(",", " ").split())
    if where == "end" and "while" in used:          # one "while" a caption where it can be
        where = "with" if "with" not in used else "end"
    elif where == "with" and "with" in used:
        where = "end"
    if where == "start":
        bgp = phrase(rng, back, "fin", role="bg", terse=terse)
        if rng.random() < 0.4 and " in the " not in bgp and not terse:
            bgp += " in the background"
        text = "%s %s %s" % (bgp, fresh(rng, ["as", "while"], parts), chain)
    elif where == "end":
        bgp = phrase(rng, back, "fin", role="bg", terse=terse)
        text = "%s %s %s%s" % (chain, fresh(rng, ["while", "while", "as"], parts), bgp,
                               " in the background" if rng.random() < 0.5 and " in the " not in bgp and not terse else "")
    else:
        bgp = phrase(rng, back, "np", role="bg", terse=terse)
        text = "%s with %s%s" % (chain, bgp, "" if " in the " in bgp else " in the background")
    text = fix_articles(text.replace(" ,", ","))
    return text[0].upper() + text[1:] + "."


def n_words(c):
    return len(c.split())


def captions(rng, back, events):
    out = []
    for attempt in range(3000):   # after 500 tries, fewer modifiers (three events with many)
        c = one_caption(rng, back, events, terse=attempt >= 500)
        if 8 <= n_words(c) <= 20 and c not in out:
            out.append(c)
            if len(out) == 5:
                return out
    # short scenes: accept captions outside 8-20 words rather than fewer than five
    for _ in range(2000):
        c = one_caption(rng, back, events)
        if c not in out:
            out.append(c)
            if len(out) == 5:
                return out
    raise RuntimeError("could not write five different captions")


# ---------------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------------

def classes_tsv():
    lines = ["# class\trole\twords\tsources (Debian package or procedural)\tpitch\trepeat"]
    for c in wc.CLASSES:
        kinds = []
        for s in c["sources"]:
            k = PACKAGES[s[0]][0] if s[0] != "proc" else "procedural"
            if k not in kinds:
                kinds.append(k)
        lines.append("\t".join([c["name"], c.get("role", "fg"), ",".join(c["words"].split()), ";".join(kinds),
                                "yes" if c.get("pitch") else "no", "yes" if c.get("repeat") else "no"]))
    return "\n".join(lines) + "\n"


def check_vocabulary():
    """Class words are disjoint and no phrase of one class says another's word."""
    owner = {}
    for c in wc.CLASSES:
        for w in c["words"].split():
            if w in owner:
                fatal("word %r belongs to %s and %s" % (w, owner[w], c["name"]))
            owner[w] = c["name"]
    gram = set(wc.CONNECT_SEQ + wc.CONNECT_SEQ_REVERSED + wc.CONNECT_OVERLAP) | set(wc.LOUD_WORDS) | set(
        wc.PITCH_WORDS) | set(wc.REPEAT_WORDS)
    for c in wc.CLASSES:
        for subjs, verbs in c["forms"]:
            for text in [s for s, _ in subjs] + [w for v in verbs for w in v]:
                for tok in text.split():
                    if tok in owner and owner[tok] != c["name"]:
                        fatal("%s's phrase %r says %s's word" % (c["name"], text, owner[tok]))
                    if tok in gram:
                        fatal("%s's phrase %r uses grammar word %r" % (c["name"], text, tok))
            for s, _ in subjs:
                if not has_word(s, c["name"]) and not any(all(has_word(f, c["name"]) for f in v) for v in verbs):
                    fatal("%s: subject %r has no verb that names the class" % (c["name"], s))
            for v in verbs:
                if len(set(has_word(f, c["name"]) for f in v)) != 1:
                    fatal("%s: verb %r names the class in some forms only" % (c["name"], v))
    return owner


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        say(message)
        sys.exit(1)


def stats_of(rows, metas):
    caps = [c for _, cs in rows for c in cs]
    toks = [c.lower().replace(",", " ").replace(".", " ").split() for c in caps]
    lens = [len(t) for t in toks]
    vocab = set(w for t in toks for w in t)
    n_ev = [len(m["events"]) for m in metas]
    cls_count = {}
    for m in metas:
        for e in m["events"] + [m["background"]]:
            cls_count[e["cls"]] = cls_count.get(e["cls"], 0) + 1
    return dict(scenes=len(rows), captions=len(caps), vocabulary=len(vocab),
                caption_words=dict(mean=round(float(np.mean(lens)), 2) if lens else 0,
                                   min=int(min(lens)) if lens else 0, max=int(max(lens)) if lens else 0,
                                   histogram={str(k): lens.count(k) for k in sorted(set(lens))}),
                foreground_events=dict(mean=round(float(np.mean(n_ev)), 3) if n_ev else 0,
                                       histogram={str(k): n_ev.count(k) for k in sorted(set(n_ev))}),
                duration=dict(mean=round(float(np.mean([m["duration"] for m in metas])), 2) if metas else 0,
                              total_hours=round(sum(m["duration"] for m in metas) / 3600, 3)),
                distinct_sources=len(set(e["source"] for m in metas for e in m["events"] + [m["background"]])),
                class_counts=dict(sorted(cls_count.items())))


def main():
    ap = Parser(prog="world.py", description="Build a captioned sound world: FLAC scenes at 32 kHz and "
                "Clotho-format CSVs (file_name,caption_1..caption_5) for train, val and test, from recordings "
                "in Debian packages and procedural sounds. Test scenes use only recordings held out from "
                "training.", epilog="Exit status: 0 ok; 1 usage; 2 fatal; 3 some scenes failed (each named).")
    ap.add_argument("-o", "--out", metavar="DIR", help="output directory (created)")
    ap.add_argument("--seed", type=int, default=1, metavar="S", help="world seed: scenes, captions and split (default 1)")
    ap.add_argument("--small", action="store_true",
                    help="procedural sounds, sound-theme-freedesktop and espeak-ng only; 240/40/120 scenes")
    ap.add_argument("--train", type=int, metavar="N", help="training scenes (default 3000; --small 240)")
    ap.add_argument("--val", type=int, metavar="N", help="validation scenes (default 500; --small 40)")
    ap.add_argument("--test", type=int, metavar="N", help="test scenes (default 1000; --small 120)")
    ap.add_argument("-j", "--jobs", type=int, default=os.cpu_count() or 1, metavar="N", help="parallel workers (default: CPUs)")
    ap.add_argument("--cache", metavar="DIR", help="decoded-source cache (default OUT/cache)")
    ap.add_argument("--classes", action="store_true", help="print the class table (data/world/classes.tsv) and exit")
    ap.add_argument("-q", "--quiet", action="store_true", help="no progress messages")
    a = ap.parse_args()
    check_vocabulary()
    if a.classes:
        sys.stdout.write(classes_tsv())
        return 0
    if not a.out:
        ap.error("-o DIR is required")
    if a.jobs < 1:
        ap.error("-j must be at least 1")
    counts = {"train": a.train, "val": a.val, "test": a.test}
    for s, d_full, d_small in (("train", 3000, 240), ("val", 500, 40), ("test", 1000, 120)):
        if counts[s] is None:
            counts[s] = d_small if a.small else d_full
        if counts[s] < 0:
            ap.error("--%s must be >= 0" % s)
    global resample_poly, lfilter, butter
    from scipy.signal import resample_poly, lfilter, butter
    kinds = SMALL_KINDS if a.small else FULL_KINDS
    missing = [PACKAGES[k][0] for k in kinds if not PACKAGES[k][1]()]
    if missing:
        fatal("missing Debian package(s): %s (run: sh scripts/install-world.sh)" % ", ".join(missing))
    t_start = time.time()
    out = a.out
    cache = a.cache or os.path.join(out, "cache")
    try:
        for s in SPLITS:
            os.makedirs(os.path.join(out, "audio", s), exist_ok=True)
        os.makedirs(cache, exist_ok=True)
    except OSError as e:
        fatal("cannot create %s: %s" % (out, e))
    log = (lambda m: None) if a.quiet else say

    # sources: expand, split, render (cached)
    entries, classes, split_of = [], [], {}
    for c in wc.CLASSES:
        srcs = expand_sources(c, kinds)
        groups = set(s[1] for s in srcs)
        if len(groups) < 2:
            if not a.small:
                fatal("class %s has %d recording group(s): needs 2 (one held out)" % (c["name"], len(groups)))
            continue    # a class of the full world whose recordings are not in the small packages
        classes.append(c["name"])
        sp = split_groups(c, srcs, a.seed)
        for part, lst in sp.items():
            POOLS[(c["name"], part)] = [s[0] for s in lst]
            for s in lst:
                split_of[s[0]] = part
        for s in srcs:
            SRCINFO[s[0]] = s[1]
        entries += srcs
    owner_of = {}   # a recording (and its group) belongs to one class, or the split could leak
    for c in classes:
        for part in ("train", "test"):
            for sid in POOLS[(c, part)]:
                for key in (sid, SRCINFO[sid]):
                    if owner_of.setdefault(key, c) != c:
                        fatal("recording %s is in two classes (%s, %s)" % (key, owner_of[key], c))
    if a.small:
        log("small world: classes without two recording groups in %s left out: %s" % (
            ", ".join(PACKAGES[k][0] for k in kinds if k != "proc"),
            " ".join(c["name"] for c in wc.CLASSES if c["name"] not in classes)))
    log("%d classes, %d recordings in %d groups (%s)" % (len(classes), len(entries), len(set(SRCINFO.values())),
                                                         "small world" if a.small else "full world"))
    failed = []
    with mp.Pool(a.jobs) as pool:
        for i, (sid, x, err) in enumerate(pool.imap(cached_source, [(e, cache) for e in entries], chunksize=4)):
            if err:
                failed.append((sid, err))
            else:
                AUDIO[sid] = x
            if (i + 1) % 100 == 0:
                log("sources %d/%d" % (i + 1, len(entries)))
    if failed:
        for sid, err in failed:
            say("source %s: %s" % (sid, err))
        fatal("%d source(s) could not be prepared" % len(failed))
    t_src = time.time() - t_start
    log("sources ready in %.1f s" % t_src)

    CONFIG.update(seed=a.seed, out=out, classes=classes)
    jobs = [(s, i) for s in SPLITS for i in range(counts[s])]
    rows = {s: [] for s in SPLITS}
    metas = {s: [] for s in SPLITS}
    bad = []
    total, step = len(jobs), max(1, len(jobs) // 10)
    with mp.Pool(a.jobs) as pool:   # forked after AUDIO is filled: the workers share it
        for i, (name, meta, caps, err) in enumerate(pool.imap(render_scene, jobs, chunksize=8)):
            if err:
                bad.append((name, err))
                say("%s: %s" % (name, err))
            else:
                rows[meta["split"]].append((meta["file_name"], caps))
                meta["captions"] = caps
                metas[meta["split"]].append(meta)
            if (i + 1) % step == 0 or i + 1 == total:
                log("scenes %d/%d (%.0f s)" % (i + 1, total, time.time() - t_start))
    for s in SPLITS:
        with open(os.path.join(out, s + ".csv"), "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f, lineterminator="\n")
            w.writerow(["file_name"] + ["caption_%d" % k for k in range(1, 6)])
            for fn, caps in rows[s]:
                w.writerow([fn] + caps)
        with open(os.path.join(out, s + "_events.jsonl"), "w", encoding="utf-8") as f:
            for m in metas[s]:
                f.write(json.dumps(m, sort_keys=True) + "\n")
    for s in SPLITS:   # scenes of an earlier, larger build into the same directory
        keep = set(fn for fn, _ in rows[s])
        for fn in os.listdir(os.path.join(out, "audio", s)):
            if fn not in keep and fn.startswith(s + "_") and fn.endswith((".flac", ".flac.tmp")):
                os.remove(os.path.join(out, "audio", s, fn))
    with open(os.path.join(out, "classes.tsv"), "w", encoding="utf-8") as f:
        f.write(classes_tsv())
    with open(os.path.join(out, "sources.tsv"), "w", encoding="utf-8") as f:
        f.write("# source\tgroup\tclass\tsplit (test: held out; train: train and val)\n")
        for c in classes:
            for part in ("train", "test"):
                for sid in POOLS[(c, part)]:
                    f.write("%s\t%s\t%s\t%s\n" % (sid, SRCINFO[sid], c, part))
    st = {s: stats_of(rows[s], metas[s]) for s in SPLITS}
    allrows = [r for s in SPLITS for r in rows[s]]
    allmetas = [m for s in SPLITS for m in metas[s]]
    st["all"] = stats_of(allrows, allmetas)
    st["world"] = dict(seed=a.seed, small=a.small, classes=len(classes), class_names=classes,
                       recordings=len(entries), groups=len(set(SRCINFO.values())),
                       held_out_groups=len(set(SRCINFO[s] for s, p in split_of.items() if p == "test")))
    with open(os.path.join(out, "stats.json"), "w", encoding="utf-8") as f:
        json.dump(st, f, indent=1, sort_keys=True)
        f.write("\n")
    al = st["all"]
    log("wrote %s: %d scenes (train %d, val %d, test %d), %d classes, vocabulary %d words, captions %.1f words "
        "(%d-%d), %.2f foreground events per scene, %.2f h of audio, %.0f s"
        % (out, al["scenes"], len(rows["train"]), len(rows["val"]), len(rows["test"]), len(classes),
           al["vocabulary"], al["caption_words"]["mean"], al["caption_words"]["min"], al["caption_words"]["max"],
           al["foreground_events"]["mean"], al["duration"]["total_hours"], time.time() - t_start))
    if bad:
        say("%d scene(s) failed, %d written" % (len(bad), len(allrows)))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
