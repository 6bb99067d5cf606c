#!/usr/bin/python3
"""score events: event recall of captions in the sound world, on hand-made fixtures (numbers worked
out by hand below), against the world caption checker's rule (tests/py/test_world.py) on random
captions over the committed class table, and its errors."""
import json
import os
import random
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import ROOT, VALGRIND, check, done, tool  # noqa: E402

SCORE = tool("score")
tmp = tempfile.mkdtemp(prefix="wsac-events-")


def write(name, text):
    p = os.path.join(tmp, name)
    with open(p, "w", encoding="utf-8") as f:
        f.write(text)
    return p


def run(args, stdin="", prefix=()):
    p = subprocess.run(list(prefix) + [SCORE, "events"] + args, input=stdin.encode(), capture_output=True)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


CLASSES = ("# class\trole\twords\tsources\n"
           "rain\tbg\train,raindrops,downpour\tprocedural\n"
           "dog\tfg\tdog,dogs,barks\tx\n"
           "bell\tfg\tbell,bells,ding\tx\n"
           "man\tfg\tman,men\tx\n"
           "birds\tboth\tbird,birds,chirps\tx\n")
write("classes.tsv", CLASSES)


def scene(key, bg, evs):
    return json.dumps({"file_name": key, "background": {"cls": bg} if bg else None,
                       "events": [{"cls": c, "onset": 0.0} for c in evs], "captions": ["x"]})


# s1: rain + dog + bell; s2: birds (bg) + birds (event: counted once, both roles) + man; s3: rain + man
EVENTS = write("test_events.jsonl", "\n".join([scene("s1.flac", "rain", ["dog", "bell"]),
                                               scene("s2.flac", "birds", ["birds", "man"]),
                                               scene("s3.flac", "rain", ["man"])]) + "\n")
CANDS = ("s1.flac\tA DOG barks, then a bell rings.\n"        # rain missed; dog, bell named
         "s2.flac\tBirds. A dog and a man\u00a0walk.\n"      # birds, man named (NBSP splits); dog false
         "s3.flac\tthe doorbell's ding-dong, raindrops.\n")  # 'ding-dong' and "doorbell's" name nothing; rain named
rc, out, err = run(["-e", EVENTS, "-p"], CANDS)
j = json.loads(out) if rc == 0 else {}
# sounds: s1 rain(bg) dog bell; s2 birds(bg+fg) man; s3 rain(bg) man -> 7 sounds, 5 events, 3 backgrounds
# named: s1 dog bell (2); s2 birds man (2); s3 rain (1) -> 5 of 7
check("recall = named sounds / sounds (5/7), exit 0", rc == 0 and abs(j["recall"] - 5 / 7) < 1e-12, (rc, err, j.get("recall")))
# events: s1 dog bell (2 of 2), s2 birds man (2 of 2), s3 man (0 of 1) -> 4/5
check("recall_events: foreground events only (4/5)", abs(j.get("recall_events", -1) - 4 / 5) < 1e-12, j.get("recall_events"))
# backgrounds: s1 rain (no), s2 birds (yes), s3 rain (yes) -> 2/3
check("recall_background (2/3), a class heard as background and event counted once",
      abs(j.get("recall_background", -1) - 2 / 3) < 1e-12 and j.get("sounds") == 7 and j.get("events") == 5
      and j.get("backgrounds") == 3, {k: j.get(k) for k in ("recall_background", "sounds", "events", "backgrounds")})
# per class: rain 1/2, dog 1/1, bell 1/1, birds 1/1, man 1/2 -> macro (0.5+1+1+1+0.5)/5 = 0.8
check("recall_macro: mean of per-class recalls (0.8)", abs(j.get("recall_macro", -1) - 0.8) < 1e-12, j.get("recall_macro"))
pc = j.get("per_class", {})
check("per_class counts", pc.get("rain") == {"present": 2, "named": 1, "recall": 0.5, "false_mentions": 0}
      and pc.get("dog") == {"present": 1, "named": 1, "recall": 1, "false_mentions": 1}
      and pc.get("man", {}).get("named") == 1 and "bell" in pc, pc)
check("false mentions: 1 (dog in s2): per caption 1/3, captions with one 1/3, precision 5/6",
      j.get("false_mentions") == 1 and abs(j.get("false_mentions_per_caption", -1) - 1 / 3) < 1e-12
      and abs(j.get("captions_with_false_mentions", -1) - 1 / 3) < 1e-12
      and abs(j.get("precision", -1) - 5 / 6) < 1e-12, j)
check("scenes_all_named: only s2 (1/3)", abs(j.get("scenes_all_named", -1) - 1 / 3) < 1e-12, j.get("scenes_all_named"))
pi = j.get("per_item", {})
check("per item: present, named, missed, false and tokens",
      pi.get("s1.flac", {}).get("missed") == ["rain"] and pi.get("s1.flac", {}).get("named") == ["dog", "bell"]
      and pi.get("s2.flac", {}).get("false") == ["dog"] and pi.get("s2.flac", {}).get("present") == ["birds", "man"]
      and pi.get("s3.flac", {}).get("tokens") == "the doorbell's ding-dong raindrops", pi)

# the same by table; candidates from a file; the classes given explicitly
cands = write("c.tsv", CANDS)
rc, out, err = run(["--events", EVENTS, "--classes", os.path.join(tmp, "classes.tsv"), "-f", "table", cands])
check("--format table: recall line", rc == 0 and out.startswith("recall") and "0.714286 (5 of 7 sounds)" in out, out + err)

# missing keys: a scene without candidate, a candidate without scene -> exit 3, both named, the rest scored
rc, out, err = run(["-e", EVENTS], "s1.flac\tdog bell rain\nzz.flac\train\n")
j = json.loads(out) if out else {}
check("missing candidate and unknown key: exit 3, named on stderr and in the JSON, the rest scored",
      rc == 3 and j.get("missing_candidates") == ["s2.flac", "s3.flac"] and j.get("missing_scenes") == ["zz.flac"]
      and j.get("recall") == 1 and "zz.flac" in err and "s2.flac" in err, (rc, out, err))

# a malformed events line: skipped, named with its line number, exit 3
bad = write("bad_events.jsonl", scene("s1.flac", "rain", ["dog"]) + "\n" + scene("s2.flac", "rain", ["unicorn"])
            + "\n{not json\n" + scene("s1.flac", "rain", []) + "\n" + json.dumps({"events": []}) + "\n")
rc, out, err = run(["-e", bad], "s1.flac\train dogs\n")
j = json.loads(out) if out else {}
check("malformed events lines (unknown class, bad JSON, repeated key, no file_name) named and skipped, exit 3",
      rc == 3 and j.get("malformed_event_lines") == 4 and j.get("recall") == 1 and ":2:" in err and ":3:" in err
      and ":4:" in err and ":5:" in err and "class" in err, (rc, out, err))

# a class table with a word of two classes is fatal; a missing table is fatal; usage errors
os.makedirs(os.path.join(tmp, "clash"))
write("clash/classes.tsv", "a\tfg\tx,y\nb\tfg\ty,z\n")
write("clash/e.jsonl", scene("k", "a", []) + "\n")
rc, out, err = run(["-e", os.path.join(tmp, "clash", "e.jsonl")], "k\tx\n")
check("a word of two classes in the table: fatal (exit 2), says which", rc == 2 and "'y'" in err and out == "", (rc, err))
rc, out, err = run(["-e", os.path.join(tmp, "nodir", "e.jsonl")], "k\tx\n")
check("no class table beside the events file: fatal (exit 2)", rc == 2 and "classes.tsv" in err, (rc, err))
rc, out, err = run([], "k\tx\n")
check("no --events: usage error (exit 1)", rc == 1 and "--events" in err, (rc, err))
rc, out, err = run(["-e", EVENTS, "--frob"], "")
check("unknown option: usage error (exit 1)", rc == 1, (rc, err))
rc, out, err = run(["-e", EVENTS], "zz\tdog\n")
check("no item with both a candidate and a scene: fatal (exit 2)", rc == 2 and out == "", (rc, out, err))
p = subprocess.run([SCORE, "--help"], capture_output=True)
check("score --help documents score events", p.returncode == 0 and b"score events" in p.stdout and b"--events" in p.stdout)

# the rule of the world's caption checker (tests/py/test_world.py), on random captions over the committed table
owner = {}
with open(os.path.join(ROOT, "data", "world", "classes.tsv")) as f:
    for line in f:
        if line.startswith("#") or not line.strip():
            continue
        c = line.split("\t")
        for w in c[2].split(","):
            owner[w] = c[0]
classes = sorted(set(owner.values()))
rng = random.Random(15)
words = list(owner) + ["the", "a", "while", "then", "dog", "Dogs", "barking", "in", "background"]
seps = [" ", " ", " ", ", ", ". ", "\t", "  ", "\u00a0", "\u2003", "! ", "-", "'s "]
lines, sc = [], []
for i in range(300):
    toks = [rng.choice(words) for _ in range(rng.randint(1, 14))]
    toks = [t.upper() if rng.random() < 0.15 else t.capitalize() if rng.random() < 0.2 else t for t in toks]
    cap = "".join(t + rng.choice(seps) for t in toks).replace("\t", " \u2009")
    held = rng.sample(classes, rng.randint(1, 4))
    key = "k%03d.flac" % i
    lines.append("%s\t%s" % (key, cap))
    sc.append(json.dumps({"file_name": key, "background": {"cls": held[0]}, "events": [{"cls": c} for c in held[1:]]}))
os.makedirs(os.path.join(tmp, "rnd"))
ev = write("rnd/test_events.jsonl", "\n".join(sc) + "\n")
rc, out, err = run(["-e", ev, "-c", os.path.join(ROOT, "data", "world", "classes.tsv"), "-p"], "\n".join(lines) + "\n")
j = json.loads(out) if rc == 0 else {"per_item": {}}
hit = tot = fals = 0
mism = []
for line, s in zip(lines, sc):
    key, cap = line.split("\t", 1)
    m = json.loads(s)
    toks = cap.lower().replace(",", " ").replace(".", " ").split()
    named = set(owner[t] for t in toks if t in owner)
    held = set([m["background"]["cls"]] + [e["cls"] for e in m["events"]])
    hit += len(named & held)
    tot += len(held)
    fals += len(named - held)
    got = j["per_item"].get(key, {})
    if set(got.get("named", [])) != named & held or set(got.get("false", [])) != named - held \
            or got.get("tokens") != " ".join(toks):
        mism.append((cap, got, sorted(named), toks))
check("300 random captions: tokens, named and false classes as the world checker's rule (Python lower/replace/split)",
      rc == 0 and not mism, (rc, err, mism[:3]))
check("300 random captions: recall and false mentions as the rule gives",
      abs(j.get("recall", -1) - hit / tot) < 1e-12 and j.get("false_mentions") == fals, (j.get("recall"), hit / tot))

if VALGRIND:
    rc, out, err = run(["-e", EVENTS, "-p"], CANDS, prefix=["valgrind", "-q", "--leak-check=full", "--error-exitcode=9"])
    check("valgrind: no error or leak", rc == 0, err[-2000:])
done()
