"""The sound world (scripts/world.py): a small world is built twice and checked from outside.
Split rule (no recording of a test scene in any training or validation scene), every caption
true to its scene (each event named by one of its class's words, no other class named, order
words true to the timing, loudness/pitch/repetition words true to the levels), five different
captions per scene, the same bits for the same seed on 1 and 2 workers, other bits for another
seed, and the tools read the world as they read Clotho (wav2mel, clap-text --csv, score caption).
Needs sound-theme-freedesktop and espeak-ng (scripts/install-deps.sh installs them)."""
import csv
import filecmp
import json
import os
import shutil
import subprocess
import tempfile
import time

import soundfile as sf

from tap import ROOT, check, done, note, tool
import wsacstream as ws

PY = "/usr/bin/python3"
WORLD = os.path.join(ROOT, "scripts", "world.py")
CLAP = os.path.join(ROOT, "data", "models", "clap-test.safetensors")
SPLITS = ("train", "val", "test")
# the caption grammar's claims, written down here independently of the builder
SEQ, REV, OVER = {"then", "before", "followed"}, {"after"}, {"while", "as", "with"}
LOUD = {"loud": "loud", "loudly": "loud", "quiet": "quiet", "quietly": "quiet", "soft": "quiet",
        "softly": "quiet", "faint": "quiet", "faintly": "quiet", "distance": "quiet"}
PITCH = {"high-pitched": "high", "shrill": "high", "high": "high", "low-pitched": "low", "deep": "low", "low": "low"}
REPEAT = {"twice": 2, "two": 2, "repeatedly": 3, "several": 3, "few": 3}
LOUD_DB, QUIET_DB = -14.0, -26.0
COUNTS = ["--train", "60", "--val", "10", "--test", "30"]

tmp = tempfile.mkdtemp(prefix="world-test-")
cache = os.path.join(tmp, "cache")


def build(name, *args):
    out = os.path.join(tmp, name)
    t = time.time()
    p = subprocess.run([PY, WORLD, "--small", "-q", "--cache", cache, "-o", out] + list(args),
                       capture_output=True, text=True)
    return out, p, time.time() - t


def run(args, stdin=None):
    p = subprocess.run(args, input=stdin, capture_output=True)
    return p.returncode, p.stdout, p.stderr.decode(errors="replace")


# --- command line ---------------------------------------------------------------------------
rc, out, err = run([PY, WORLD, "--help"])
check("world.py --help: usage on stdout, exit 0", rc == 0 and b"--seed" in out and b"--small" in out, err)
rc, out, err = run([PY, WORLD, "--bogus"])
check("world.py: an unknown option is a usage error (exit 1, prefixed message)", rc == 1 and "world: " in err, err)
rc, out, err = run([PY, WORLD, "--small"])
check("world.py: no -o is a usage error (exit 1)", rc == 1, err)
rc, out, err = run([PY, WORLD, "--small", "-q", "-o", "/dev/null/world"])
check("world.py: an output directory it cannot create is fatal (exit 2, says why)",
      rc == 2 and err.startswith("world: cannot create"), err)
rc, out, err = run([PY, "-c", "import sys; sys.path.insert(0, %r); import world; world.FREEDESKTOP = '/nonexistent'; "
                    "sys.argv = ['world.py', '--small', '-q', '-o', %r]; sys.exit(world.main())"
                    % (os.path.dirname(WORLD), os.path.join(tmp, "nopkg"))])
check("world.py: a missing Debian package is fatal (exit 2), named, with the install command",
      rc == 2 and "sound-theme-freedesktop" in err and "install-world.sh" in err and "\n" == err[-1:], err)
rc, out, err = run([PY, WORLD, "--classes"])
with open(os.path.join(ROOT, "data", "world", "classes.tsv"), "rb") as f:
    committed = f.read()
check("data/world/classes.tsv is the builder's class table (world.py --classes)", rc == 0 and out == committed,
      err or "differs: regenerate with python3 scripts/world.py --classes > data/world/classes.tsv")
owner, cls_kind = {}, {}
clash = []
for line in committed.decode().splitlines():
    if line.startswith("#") or not line.strip():
        continue
    f = line.split("\t")
    cls_kind[f[0]] = f[3]
    for w in f[2].split(","):
        if w in owner:
            clash.append(w)
        owner[w] = f[0]
check("classes.tsv: >= 30 classes, their words disjoint", len(cls_kind) >= 30 and not clash, (len(cls_kind), clash))
pk = set(k for v in cls_kind.values() for k in v.split(";"))
check("classes.tsv: sources from >= 3 Debian packages plus procedural sounds",
      "procedural" in pk and len(pk - {"procedural"}) >= 3, pk)

# --- two builds of the same seed, one of another --------------------------------------------
A, pa, ta = build("a", "--seed", "7", "-j", "2", *COUNTS)
check("small world builds (exit 0)", pa.returncode == 0, pa.stderr[-2000:])
B, pb, tb = build("b", "--seed", "7", "-j", "1", "--train", "25", "--val", "5", "--test", "12")
check("small world: rebuilt with -j 1 (exit 0)", pb.returncode == 0, pb.stderr[-2000:])
C, pc, tc = build("c", "--seed", "8", "-j", "2", "--train", "10", "--val", "2", "--test", "5")
note("small world of %d scenes: %.1f s on -j 2 (sources rendered), %d scenes again: %.1f s on -j 1 (cached)"
     % (60 + 10 + 30, ta, 25 + 5 + 12, tb))


def tree(d):
    out = []
    for root, _dirs, files in os.walk(d):
        out += [os.path.relpath(os.path.join(root, f), d) for f in files]
    return sorted(out)


def lines(d, name, k):
    with open(os.path.join(d, name), encoding="utf-8") as f:
        return f.read().splitlines()[:k]


tb_files = tree(B)
diff = [f for f in tb_files if not os.path.isfile(os.path.join(A, f))
        or not filecmp.cmp(os.path.join(A, f), os.path.join(B, f), False)]
diff = [f for f in diff if not f.endswith((".csv", ".jsonl", "stats.json"))]
k = {"train": 25, "val": 5, "test": 12}
diff += [s + ".csv" for s in SPLITS if lines(A, s + ".csv", k[s] + 1) != lines(B, s + ".csv", 10 ** 6)]
diff += [s + "_events.jsonl" for s in SPLITS if lines(A, s + "_events.jsonl", k[s]) != lines(B, s + "_events.jsonl", 10 ** 6)]
check("same seed on -j 2 and -j 1, fewer scenes: the same scenes bit for bit (audio, CSV rows, events, sources)",
      not diff and sum(f.endswith(".flac") for f in tb_files) == 42, diff[:5])
same_c = [f for f in tree(C) if f.endswith(".flac") and os.path.isfile(os.path.join(A, f))
          and filecmp.cmp(os.path.join(A, f), os.path.join(C, f), False)]
with open(os.path.join(A, "train.csv")) as fa, open(os.path.join(C, "train.csv")) as fc:
    ca, cc = fa.read().splitlines()[1:11], fc.read().splitlines()[1:11]
check("another seed: other scenes and captions", pc.returncode == 0 and not same_c and ca != cc, same_c)

# --- the files ------------------------------------------------------------------------------
rows, meta = {}, {}
for s in SPLITS:
    with open(os.path.join(A, s + ".csv"), newline="", encoding="utf-8") as f:
        r = list(csv.reader(f))
    rows[s] = r
    with open(os.path.join(A, s + "_events.jsonl"), encoding="utf-8") as f:
        meta[s] = [json.loads(x) for x in f]
n = {"train": 60, "val": 10, "test": 30}
check("Clotho CSVs: header file_name,caption_1..caption_5 and one row per scene",
      all(rows[s][0] == ["file_name"] + ["caption_%d" % k for k in range(1, 6)] and len(rows[s]) == n[s] + 1
          and all(len(x) == 6 for x in rows[s]) for s in SPLITS), [len(rows[s]) for s in SPLITS])
check("events files: one line per CSV row, same names in the same order",
      all([m["file_name"] for m in meta[s]] == [x[0] for x in rows[s][1:]] for s in SPLITS))
flacs_ok, bad = True, []
for s in SPLITS:
    listed = sorted(x[0] for x in rows[s][1:])
    present = sorted(os.listdir(os.path.join(A, "audio", s)))
    if listed != present:
        flacs_ok = False
        bad.append(s)
check("audio/SPLIT/ holds exactly the FLACs the CSV names", flacs_ok, bad)
bad = []
for s in SPLITS:
    for m in meta[s][:40]:
        i = sf.info(os.path.join(A, "audio", s, m["file_name"]))
        if not (i.samplerate == 32000 and i.channels == 1 and i.format == "FLAC" and 4 <= i.duration <= 10
                and abs(i.duration - m["duration"]) < 1e-3):
            bad.append((m["file_name"], i.samplerate, i.channels, i.duration))
check("scenes: FLAC, 32 kHz mono, 4-10 s, the duration the events file says", not bad, bad[:3])
bad = [m["file_name"] for s in SPLITS for m in meta[s]
       if not (1 <= len(m["events"]) <= 3 and all(0 <= e["onset"] < e["offset"] <= m["duration"] for e in m["events"])
               and m["background"]["onset"] == 0 and m["background"]["offset"] == m["duration"])]
check("scenes: a background and 1-3 foreground events inside the scene", not bad, bad[:3])
levels = sorted(set(round(e["level_db"]) for s in SPLITS for m in meta[s] for e in m["events"]))
onsets = set(round(e["onset"], 1) for s in SPLITS for m in meta[s] for e in m["events"])
check("scenes: foreground events at varied times and levels", len(levels) >= 10 and len(onsets) >= 30,
      (len(levels), len(onsets)))

# --- split rule -----------------------------------------------------------------------------
def used(split, field):
    return set(e[field] for m in meta[split] for e in m["events"] + [m["background"]])


leak_src = used("test", "source") & (used("train", "source") | used("val", "source"))
leak_grp = used("test", "group") & (used("train", "group") | used("val", "group"))
check("split rule: no recording of a test scene is heard in a training or validation scene",
      not leak_src and not leak_grp and used("test", "source"), sorted(leak_grp)[:5])
held = {}
with open(os.path.join(A, "sources.tsv"), encoding="utf-8") as f:
    for line in f:
        if not line.startswith("#"):
            sid, grp, c, part = line.rstrip("\n").split("\t")
            held.setdefault(c, set()).add(part)
check("split rule: every class holds out recordings for test and keeps some for training",
      held and all(v == {"train", "test"} for v in held.values()), {c: v for c, v in held.items() if len(v) < 2})
test_srcs = used("test", "source")
check("split rule: test scenes use only held-out recordings (sources.tsv)",
      all(part == "test" for part in [l.split("\t")[3].strip() for l in open(os.path.join(A, "sources.tsv"))
                                      if not l.startswith("#") and l.split("\t")[0] in test_srcs]))


# --- captions -------------------------------------------------------------------------------
def category(level):
    return "loud" if level >= LOUD_DB else "quiet" if level <= QUIET_DB else "normal"


def problems(caption, m):
    """What in CAPTION is not true of scene M (empty list: every claim holds)."""
    toks = caption.lower().replace(",", " ").replace(".", " ").split()
    evs = [m["background"]] + m["events"]
    by_cls = {e["cls"]: e for e in evs}
    out = []
    foreign = set(owner[t] for t in toks if t in owner) - set(by_cls)
    if foreign:
        out.append("name: names %s, not in the scene" % sorted(foreign))
    pos = {c: [i for i, t in enumerate(toks) if owner.get(t) == c] for c in by_cls}
    for c, p in pos.items():
        if not p:
            out.append("name: does not name %s" % c)
    if out:
        return out
    order = sorted(by_cls, key=lambda c: pos[c][0])
    cuts = [0]
    for a, b in zip(order, order[1:]):
        if max(pos[a]) >= min(pos[b]):
            out.append("order: %s and %s interleave" % (a, b))
            return out
        gap = [(i, t) for i, t in enumerate(toks[max(pos[a]) + 1:min(pos[b])], max(pos[a]) + 1)
               if t in SEQ | REV | OVER]
        if len(gap) != 1:
            out.append("order: between %s and %s: %d order words" % (a, b, len(gap)))
            return out
        i, w = gap[0]
        cuts.append(i)
        ea, eb = by_cls[a], by_cls[b]
        if w in SEQ and not ea["offset"] <= eb["onset"]:
            out.append("order: '%s': %s (%.2f-%.2f) does not end before %s (%.2f-%.2f) starts"
                       % (w, a, ea["onset"], ea["offset"], b, eb["onset"], eb["offset"]))
        if w in REV and not eb["offset"] <= ea["onset"]:
            out.append("order: 'after': %s does not end before %s starts" % (b, a))
        if w in OVER and not (ea["onset"] < eb["offset"] and eb["onset"] < ea["offset"]):
            out.append("order: '%s': %s and %s do not overlap" % (w, a, b))
    cuts.append(len(toks))
    for k, c in enumerate(order):
        e = by_cls[c]
        seg = toks[cuts[k]:cuts[k + 1]]
        for t in seg:
            if t in LOUD and LOUD[t] != category(e["level_db"]):
                out.append("modifier: '%s' for %s at %.1f dB" % (t, c, e["level_db"]))
            if t in PITCH and PITCH[t] != e["pitch"]:
                out.append("modifier: '%s' for %s of pitch %s" % (t, c, e["pitch"]))
            if t in REPEAT and (e["reps"] != 2 if REPEAT[t] == 2 else e["reps"] < 3):
                out.append("modifier: '%s' for %s heard %d times" % (t, c, e["reps"]))
            if t == "background" and e is not m["background"]:
                out.append("modifier: 'background' said of %s" % c)
    return out


bad, n_caps, dup, lens, words_used = [], 0, [], [], {}
seen_words = set()
for s in SPLITS:
    for r, m in zip(rows[s][1:], meta[s]):
        caps = r[1:]
        if len(set(caps)) != 5:
            dup.append(r[0])
        for c in caps:
            n_caps += 1
            lens.append(len(c.split()))
            p = problems(c, m)
            if p:
                bad += ["%s: %s: %r" % (r[0], x, c) for x in p]
            seen_words.update(t for t in c.lower().replace(",", " ").replace(".", " ").split())
kind = lambda k: [x for x in bad if ": %s: " % k in x]  # noqa: E731
check("every caption names each event of its scene with one of its class's words and no other class (%d captions)"
      % n_caps, not kind("name"), kind("name")[:3])
check("order words true to the timing: then/before/followed by = one ends before the next begins, "
      "after = reversed, while/as/with = they overlap", not kind("order"), kind("order")[:3])
check("loudness, pitch, repetition and 'background' words true to the scene's events", not kind("modifier"),
      kind("modifier")[:3])
check("the five captions of every scene differ", not dup, dup[:5])
check("captions of 8-20 words, Clotho-style (capitalised, full stop, no file names)",
      min(lens) >= 8 and max(lens) <= 20 and all(c[0].isupper() and c.endswith(".") and ".flac" not in c
                                                 for s in SPLITS for r in rows[s][1:] for c in r[1:]),
      (min(lens), max(lens)))
# the checker itself: captions made false on purpose must be caught
swapped = missing = foreign = 0
tried = [0, 0, 0]
other = sorted(set(owner.values()))
for s in SPLITS:
    for r, m in zip(rows[s][1:], meta[s]):
        names = {e["cls"] for e in m["events"] + [m["background"]]}
        for c in r[1:]:
            low = c[0].lower() + c[1:]
            for a, b in ((" then ", " while "), (" while ", " then "), (" after ", " before ")):
                if a in low:
                    tried[0] += 1
                    swapped += bool(problems(low.replace(a, b, 1), m))
                    break
            toks = low.split()
            ours = [i for i, t in enumerate(toks) if owner.get(t.strip(",.")) == m["events"][0]["cls"]]
            if ours:
                tried[1] += 1
                missing += bool(problems(" ".join(t for i, t in enumerate(toks) if i not in ours), m))
            stranger = next(o for o in other if o not in names)
            word = next(w for w, o in sorted(owner.items()) if o == stranger)
            tried[2] += 1
            foreign += bool(problems(low[:-1] + " and a " + word + ".", m))
check("the caption checker catches false order words (then <-> while, after -> before): %d of %d"
      % (swapped, tried[0]), tried[0] > 50 and swapped == tried[0])
check("the caption checker catches an event left unnamed and a class not in the scene: %d of %d, %d of %d"
      % (missing, tried[1], foreign, tried[2]), missing == tried[1] > 50 and foreign == tried[2])
note("%d captions, vocabulary %d words, %.1f words per caption" % (n_caps, len(seen_words), sum(lens) / len(lens)))
check("the events file holds the same five captions as the CSV",
      all(m["captions"] == r[1:] for s in SPLITS for r, m in zip(rows[s][1:], meta[s])))

# --- the tools read it ----------------------------------------------------------------------
names = [x[0] for x in rows["test"][1:]][:12]
paths = [os.path.join(A, "audio", "test", x) for x in names]
rc, out, err = run([tool("wav2mel"), "-q"] + paths)
_, recs, trailer = ws.read_stream(__import__("io").BytesIO(out))
check("wav2mel reads the world's FLACs (exit 0, one mel record per scene keyed by file name)",
      rc == 0 and [r["key"] for r in recs] == names and trailer is not None
      and all(r["mel"].shape[1] == 64 and r["mel"].shape[0] > 100 for r in recs), err)
rc, out, err = run([tool("clap-text"), "-q", "-m", CLAP, "--csv", os.path.join(A, "val.csv")])
_, recs, trailer = ws.read_stream(__import__("io").BytesIO(out))
want = ["%s#%d" % (x[0], k) for x in rows["val"][1:] for k in range(1, 6)]
check("clap-text --csv reads the world's CSV (keys FILE#1..#5, text = caption)",
      rc == 0 and [r["key"] for r in recs] == want
      and [r["text"] for r in recs] == [c for x in rows["val"][1:] for c in x[1:]], err)
cands = "".join("%s\t%s\n" % (x[0], x[1]) for x in rows["test"][1:]).encode()
rc, out, err = run([tool("score"), "caption", "-q", "--refs", os.path.join(A, "test.csv")], cands)
try:
    sc = json.loads(out)
except ValueError:
    sc = {}
check("score caption --refs reads the world's CSV (caption_1 scored against all five: BLEU-1 > 0.9)",
      rc == 0 and sc.get("bleu_1", 0) > 0.9 and "cider" in sc, (rc, err, out[:200]))

shutil.rmtree(tmp, ignore_errors=True)
done()
