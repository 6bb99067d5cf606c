"""wav2mel --frontend passt against scripts/passtmelref.py, the published
AugmentMelSTFT (SALSA's PaSST front end) evaluated in float64 PyTorch: the
whole clip's mel (--whole-clip) and SALSA's cut (the default: the clip
zero-padded to 3 x 10 s, the kept 10-s pieces' mels, passt_mel_segments).

Tolerance (issue 11): max |C - ref| <= 1e-4 over ALL bins (no masking) and
identical T, on generated files of several formats (wav 16/24-bit, float,
double, flac, ogg), lengths (odd ones, the shortest accepted, 514 samples)
and rates (16 k, 22.05 k, 44.1 k, 48 k resampled by wav2mel's libsoxr: the
reference gets the very samples wav2mel resampled, from the test_passt_mel
helper; 32 k files are read independently with soundfile). Also: the
training-time jitter, per-file errors, the header, usage errors, and that
the default front end's bits do not move."""
import io
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from tap import ROOT, check, done, note, tool
import passtmelref
import signals
import wsacstream as ws

TOL = 1e-4
BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
HELPER = os.path.join(BUILD, "tests", "test_passt_mel")
tmp = tempfile.mkdtemp()


def run(args, stdin=None):
    p = subprocess.run([tool("wav2mel")] + args, input=stdin, capture_output=True)
    hdr, recs, tr = ws.read_stream(io.BytesIO(p.stdout)) if p.stdout else (None, [], None)
    return p, hdr, {r["key"]: r for r in recs}


def loader_samples(path, sr=32000):
    p = subprocess.run([HELPER, "--samples", str(sr), path], capture_output=True)
    if p.returncode:
        raise RuntimeError(p.stderr.decode())
    return np.frombuffer(p.stdout, dtype=np.float32)


def soundfile_samples(path):
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    assert sr == 32000
    return x.mean(axis=1, dtype=np.float32) if x.shape[1] > 1 else x[:, 0]


def write(name, x, sr, ext, sub):
    path = os.path.join(tmp, name)
    sf.write(path, np.clip(x, -1, 1).astype(np.float32), sr, subtype=sub, format=ext.upper())
    return path


if not os.access(HELPER, os.X_OK):
    check("helper built: " + HELPER, False, "run make")
    done()

# ---------------------------------------------------------------- parity at 32 kHz
formats = [("wav", "PCM_16"), ("wav", "PCM_24"), ("wav", "FLOAT"), ("wav", "DOUBLE"), ("flac", "PCM_16"),
           ("flac", "PCM_24"), ("ogg", "VORBIS")]
lengths = [514, 515, 777, 20161, 32001, 96007, 160000]
files = []
for i, name in enumerate(signals.NAMES):
    for j, (ext, sub) in enumerate(formats):
        if (i + j) % 3:
            continue
        n = lengths[(i + j) % len(lengths)]
        x = signals.make(name, 32000, n / 32000, seed=i)[:n]
        if j % 2 == 0 and name != "silence":
            x = np.stack([x, 0.5 * signals.make("noise", 32000, n / 32000, seed=99)[:n]], axis=1)
        files.append((write("%s-%s-%s-%d.%s" % (name, ext, sub, n, ext), x, 32000, ext, sub), "%s %s" % (ext, sub)))

p, hdr, got = run(["-q", "--frontend", "passt", "--whole-clip"] + [f for f, _ in files])
check("parity: every generated file decodes (exit 0)", p.returncode == 0, p.stderr.decode()[-500:])
per_class, bad_t, failures = {}, [], []
for path, cls in files:
    key = os.path.basename(path)
    x = soundfile_samples(path)
    ref = passtmelref.passt_mel(x)
    rec = got.get(key)
    if rec is None:
        failures.append(key + " missing")
        continue
    c = rec["mel"]
    if c.shape != ref.shape or c.shape[0] != 1 + (len(x) - 1) // 320:
        bad_t.append("%s: C %s ref %s" % (key, c.shape, ref.shape))
        continue
    d = float(np.abs(c.astype(np.float64) - ref).max())
    per_class[cls] = max(per_class.get(cls, 0.0), d)
    if d > TOL:
        failures.append("%s: %.2e" % (key, d))
check("parity: T = 1 + (N - 1) // 320 and equal to the reference's, every file (%d files)" % len(files),
      not bad_t, bad_t)
check("parity: max |C - float64 ref| <= %g over all bins, every 32 kHz file" % TOL, not failures, failures)
for cls in sorted(per_class):
    note("parity 32 kHz %-12s max |C - ref| = %.2e" % (cls, per_class[cls]))
p, _, gots = run(["-q", "--frontend", "passt"] + [f for f, _ in files])
failures, worst = [], 0.0
for path, cls in files:
    key = os.path.basename(path)
    ref = passtmelref.passt_mel_segments(soundfile_samples(path))
    rec = gots.get(key)
    if rec is None or rec["mel"].shape != ref.shape:
        failures.append("%s: %s vs %s" % (key, None if rec is None else rec["mel"].shape, ref.shape))
        continue
    d = float(np.abs(rec["mel"].astype(np.float64) - ref).max())
    worst = max(worst, d)
    if d > TOL:
        failures.append("%s: %.2e" % (key, d))
check("the cut (default): each file's zero-padded 10-s piece, max |C - ref| <= %g, every file" % TOL,
      p.returncode == 0 and not failures, failures)
note("parity, the cut: max |C - ref| = %.2e" % worst)
x = soundfile_samples(files[0][0])
check("the helper's samples of a 32 kHz file equal soundfile's", np.array_equal(loader_samples(files[0][0]), x))

# the published float32 evaluation, for scale (not a check)
x = signals.make("chirp", 32000, 3.0, seed=1).astype(np.float32)
d32 = float(np.abs(passtmelref.passt_mel(x, dtype="float32") - passtmelref.passt_mel(x)).max())
note("for scale: PaSST's own float32 evaluation differs from float64 by %.2e on a 3 s chirp" % d32)

# ---------------------------------------------------------------- other rates (resampled by wav2mel)
rate_files = []
for k, sr in enumerate((16000, 22050, 44100, 48000)):
    for name, secs in (("mix", 2.5), ("tones", 1.0001), ("noise", 0.9)):
        n = int(round(sr * secs)) | 1  # odd lengths
        x = signals.make(name, sr, n / sr, seed=k)[:n]
        ext, sub = [("wav", "PCM_16"), ("flac", "PCM_24"), ("wav", "FLOAT"), ("ogg", "VORBIS")][k]
        rate_files.append((write("rate-%s-%d-%d.%s" % (name, sr, n, ext), x, sr, ext, sub), sr))
p, _, got = run(["-q", "--frontend", "passt", "--whole-clip"] + [f for f, _ in rate_files])
p2, _, gots = run(["-q", "--frontend", "passt"] + [f for f, _ in rate_files])
worst, failures = {}, []
for path, sr in rate_files:
    key = os.path.basename(path)
    y = loader_samples(path)
    ref = passtmelref.passt_mel(y)
    rs = gots.get(key)
    refs = passtmelref.passt_mel_segments(y)
    if rs is None or rs["mel"].shape != refs.shape or float(np.abs(rs["mel"] - refs).max()) > TOL:
        failures.append("%s: the cut differs" % key)
    rec = got.get(key)
    if rec is None or rec["mel"].shape != ref.shape or rec["samples"] != len(y):
        failures.append("%s: %s" % (key, None if rec is None else (rec["mel"].shape, ref.shape)))
        continue
    d = float(np.abs(rec["mel"].astype(np.float64) - ref).max())
    worst[sr] = max(worst.get(sr, 0.0), d)
    if d > TOL:
        failures.append("%s: %.2e" % (key, d))
check("rates 16k 22.05k 44.1k 48k: max |C - ref(wav2mel's resampled signal)| <= %g, all bins, whole and cut" % TOL,
      p.returncode == 0 and p2.returncode == 0 and not failures, failures or p.stderr.decode()[-300:])
for sr in sorted(worst):
    note("parity %d Hz -> 32 kHz: max |C - ref| = %.2e" % (sr, worst[sr]))

# ---------------------------------------------------------------- training-time jitter
jit = [f for f, _ in files[:6] if "-514." not in f and "-515." not in f] or [files[0][0]]
p, hdr, got = run(["-q", "--frontend", "passt", "--whole-clip", "--jitter", "--seed", "7"] + jit)
ok, edges, failures = p.returncode == 0, [], []
for path in jit:
    rec = got.get(os.path.basename(path))
    if rec is None:
        ok = False
        continue
    fmin, fmax = rec["fmin"], rec["fmax"]
    edges.append((fmin, fmax))
    ok &= 0 <= fmin <= 9 and 14001 <= fmax <= 16000 and fmin == int(fmin) and fmax == int(fmax)
    d = float(np.abs(rec["mel"] - passtmelref.passt_mel(soundfile_samples(path), fmin=fmin, fmax=fmax)).max())
    if d > TOL:
        failures.append("%s: %.2e" % (path, d))
check("--jitter: per-file fmin in [0, 10), fmax in [14001, 16000], recorded", ok and len(set(edges)) > 1, edges)
check("--jitter: each file equals the reference at its drawn edges", not failures, failures)
check("--jitter: the header says so", hdr and hdr["params"]["jitter"] == 1 and hdr["params"]["seed"] == 7)
p, _, gotc = run(["-q", "--frontend", "passt", "--jitter", "--seed", "7"] + jit)
failures = []
for path in jit:
    rc_, rw_ = gotc.get(os.path.basename(path)), got.get(os.path.basename(path))
    if rc_ is None or rw_ is None or (rc_["fmin"], rc_["fmax"]) != (rw_["fmin"], rw_["fmax"]):
        failures.append(path)
        continue
    ref = passtmelref.passt_mel_segments(soundfile_samples(path), fmin=rc_["fmin"], fmax=rc_["fmax"])
    if rc_["mel"].shape != ref.shape or float(np.abs(rc_["mel"] - ref).max()) > TOL:
        failures.append("%s: differs" % path)
check("--jitter with the cut: the same draws per file, every piece at them", p.returncode == 0 and not failures,
      failures)
a = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "--jitter", "--seed", "7", "--threads", "1"] + jit,
                   capture_output=True).stdout
b = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "--jitter", "--seed", "7", "--threads", "2"],
                   input="\n".join(jit).encode(), capture_output=True).stdout
c = subprocess.run([tool("wav2mel"), "-q", "--frontend", "passt", "--jitter", "--seed", "8"] + jit,
                   capture_output=True).stdout
check("--jitter: same seed, same bits (1 thread, arguments = 2 threads, stdin list)", a == b and len(a) > 1000)
check("--jitter: another seed, other draws", a != c)

# ---------------------------------------------------------------- per-file errors, long input
empty = write("empty.wav", np.zeros(0), 32000, "wav", "PCM_16")
short = write("short513.wav", 0.1 * np.ones(513), 32000, "wav", "FLOAT")
ok514 = write("ok514.wav", 0.1 * np.ones(514), 32000, "wav", "FLOAT")
long2 = write("long2s.wav", signals.make("noise", 32000, 2.0), 32000, "wav", "PCM_16")
p, _, got = run(["--frontend", "passt", "--whole-clip", "--max-seconds", "1.5", empty, short, ok514, long2])
err = p.stderr.decode()
check("errors: 0 and 513 samples are named 'too short' (needs 514), 514 works, exit 3",
      p.returncode == 3 and list(got) == ["ok514.wav"] and got["ok514.wav"]["mel"].shape == (2, 128) and
      all(any(l.startswith("wav2mel: %s: " % k) and "too short" in l and "514" in l for l in err.splitlines())
          for k in ("empty.wav", "short513.wav")), err)
check("errors: a clip over --max-seconds is refused by name, as with the default front end",
      any(l.startswith("wav2mel: long2s.wav: ") for l in err.splitlines()), err)
p, _, got = run(["-q", "--frontend", "passt", "--whole-clip", "--min-seconds", "1", empty])
check("--min-seconds pads an empty file to 1 s: 100 frames ((32000 - 1) // 320 + 1)",
      p.returncode == 0 and got["empty.wav"]["mel"].shape == (100, 128), p.stderr.decode())
one = write("one.wav", 0.1 * np.ones(1), 32000, "wav", "FLOAT")
p, _, got = run(["--frontend", "passt", empty, short, one])
err = p.stderr.decode()
check("the cut: 1 and 513 samples give one 10-s piece (1000 frames), 0 samples fails by name (exit 3)",
      p.returncode == 3 and sorted(got) == ["one.wav", "short513.wav"]
      and all(r["mel"].shape == (1000, 128) for r in got.values())
      and any(l.startswith("wav2mel: empty.wav: ") for l in err.splitlines()), err)

# ---------------------------------------------------------------- header, default bits
p, hdr, _ = run(["-q", "--frontend", "passt", ok514])
pr = hdr["params"] if hdr else {}
check("header: frontend passt, 128 mels, 0..15000 Hz, n_fft 1024, win 800, hop 320, pre-emphasis 0.97",
      pr.get("frontend") == "passt" and pr.get("n_mels") == 128 and pr.get("fmin") == 0 and pr.get("fmax") == 15000
      and pr.get("n_fft") == 1024 and pr.get("win_length") == 800 and pr.get("hop") == 320 and
      pr.get("preemphasis") == 0.97 and pr.get("mel_scale") == "kaldi" and pr.get("cut") == "segments"
      and pr.get("segment_samples") == 320000 and pr.get("segments") == 3 and pr.get("segment_frames") == 1000, pr)
some = [f for f, _ in files[:8]]
d1 = subprocess.run([tool("wav2mel"), "-q"] + some, capture_output=True).stdout
d2 = subprocess.run([tool("wav2mel"), "-q", "--frontend", "wavcaps"] + some, capture_output=True).stdout
h1 = ws.read_stream(io.BytesIO(d1))[0]
check("default front end: --frontend wavcaps gives the same bytes, header says wavcaps",
      d1 == d2 and h1["params"]["frontend"] == "wavcaps" and h1["params"]["n_mels"] == 64, h1 and h1["params"])

# ---------------------------------------------------------------- usage errors
for opts, why in [(["--frontend", "kaldi"], "wavcaps passt"), (["--frontend", "passt", "--amin", "1e-5"], "--amin"),
                  (["--frontend", "passt", "--no-center"], "--no-center"), (["--jitter"], "--frontend passt"),
                  (["--seed", "3"], "--frontend passt"), (["--frontend", "passt", "--n-fft", "1000"], "power of two"),
                  (["--frontend", "passt", "--fmax", "16500"], "fmax"),
                  (["--frontend", "passt", "--jitter", "--fmax", "15500"], "--jitter")]:
    p = subprocess.run([tool("wav2mel")] + opts + [ok514], capture_output=True)
    check("usage: %s -> exit 1, reason on stderr, nothing on stdout" % " ".join(opts),
          p.returncode == 1 and p.stdout == b"" and why in p.stderr.decode(), p.stderr.decode())
done()
