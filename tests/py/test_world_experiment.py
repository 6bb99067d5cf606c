#!/usr/bin/python3
"""pipelines/world-experiment --small on a reduced sound world: both papers' experiments run end to end
(world, mel, clap-train stage 1 x 2 seeds, stage 2 self and ensemble, retrieval, decoders, ad/nnd/pd,
score caption, score events, the gap, the report, the recipe, a rerun from the caches).

Whether learning happened is checked only with WSAC_WORLDEXP_LEARN=1 (larger sizes, longer): test
retrieval mAP@10 >= 3x chance and event recall of the pd and ad captions >= 1.5x what captions that
ignore the audio get. In the few minutes CI allows on a busy 2-core machine, the small from-scratch
CLAP does not yet learn enough for that (docs/world-results.md has the numbers measured), so CI runs
the plumbing and the checks that hold whatever was learned. No exact number is checked. Needs the
small world's packages (scripts/install-deps.sh)."""
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tap import BIN, ROOT, check, done, note  # noqa: E402

PIPE = os.path.join(ROOT, "pipelines", "world-experiment")
SCORE = os.path.join(BIN, "score")
tmp = tempfile.mkdtemp(prefix="wsac-worldexp-")
out = os.path.join(tmp, "exp")
LEARN = os.environ.get("WSAC_WORLDEXP_LEARN") == "1"
# CI: tiny sizes, a few minutes on a busy 2-core machine; LEARN: the small world, long enough to learn
ARGS = os.environ.get("WSAC_WORLDEXP_ARGS",
                      "--small --epochs 12 --s2-epochs 4" if LEARN else
                      "--small --scenes '60 10 30' --epochs 2 --s2-epochs 1 --bs 32 --dec-epochs 10").split("'")
args = []
for i, part in enumerate(ARGS):
    args += [part] if i % 2 else part.split()

t0 = time.time()
p = subprocess.run([PIPE] + args + ["--out", out, "-j", "2"], capture_output=True, text=True,
                   env=dict(os.environ, WSAC_BIN=BIN))
note("world-experiment %s: %.0f s" % (" ".join(args), time.time() - t0))
check("world-experiment --small runs end to end (exit 0) and writes results.md",
      p.returncode == 0 and os.path.exists(os.path.join(out, "results.md")), p.stderr[-3000:])
if p.returncode:
    shutil.rmtree(tmp, ignore_errors=True)
    done()


def load(rel):
    with open(os.path.join(out, rel)) as f:
        return json.load(f)


cfg = load("config.json")
world = cfg["world"]
n_test = cfg["n_test"]
# --- retrieval ----------------------------------------------------------------------------------
# chance mAP@10 of text-to-audio with one relevant clip among N: (1/N) * (1 + 1/2 + ... + 1/10)
chance = sum(1.0 / k for k in range(1, 11)) / n_test
maps = {m: load("retrieval/%s.test.json" % m)["t2a"]["mAP@10"] for m in cfg["models"]}
note("test t2a mAP@10 (chance %.3f): %s" % (chance, ", ".join("%s %.3f" % kv for kv in maps.items())))
check("models: 2 stage-1 seeds, stage 2 self and ensemble, each scored on test",
      sum(m.startswith("s1-") for m in maps) == 2 and "s2-self" in maps and "s2-ens" in maps, maps)
best = cfg["best"]
check("retrieval scored on every test clip and caption (R@k and mAP@10 in [0, 1])",
      all(load("retrieval/%s.test.json" % m)["t2a"]["queries"] == 5 * n_test
          and 0 <= load("retrieval/%s.test.json" % m)["a2t"]["mAP@10"] <= 1 for m in cfg["models"]))
check("the captioning CLAP is the one with the best val mAP@10",
      all(load("retrieval/%s.val.json" % best)["t2a"]["mAP@10"] >= load("retrieval/%s.val.json" % m)["t2a"]["mAP@10"]
          for m in cfg["models"]), best)
if LEARN:
    check("retrieval learned: the captioning CLAP's test t2a mAP@10 >= 3x chance (%.3f)" % (3 * chance),
          maps[best] >= 3 * chance, (best, maps[best], chance))
    check("retrieval learned: every stage-1 model's test t2a mAP@10 >= 2x chance",
          all(v >= 2 * chance for m, v in maps.items() if m.startswith("s1-")), maps)

# --- captioning: event recall against captions that ignore the audio ------------------------------
ev = os.path.join(world, "test_events.jsonl")


def events(cands):
    r = subprocess.run([SCORE, "events", "-q", "-e", ev], input=cands, capture_output=True, text=True)
    return json.loads(r.stdout)["recall"] if r.returncode == 0 else None


with open(os.path.join(world, "test.csv"), newline="") as f:
    test = list(csv.reader(f))[1:]
with open(os.path.join(world, "train.csv"), newline="") as f:
    train = [c for r in list(csv.reader(f))[1:] for c in r[1:]]
keys = [r[0] for r in test]
# the best fixed caption: whichever training caption, given to every test scene, names most sounds
# (the strongest caption-independent strategy of this kind; every 7th caption to stay quick)
fixed = max((events("".join("%s\t%s\n" % (k, c) for k in keys)) or 0, c) for c in train[::7])
# the captions of other scenes (each scene gets a reference caption of the scene 1..3 rows on)
other = max(events("".join("%s\t%s\n" % (k, test[(i + s) % len(test)][1]) for i, k in enumerate(keys)))
            for s in (1, 2, 3))
base = max(fixed[0], other)
rec = {r: load("captions/%s.events.json" % r)["recall"] for r in ("ad", "ni", "nies", "nnd", "pd", "sup")}
cid = {r: load("captions/%s.caption.json" % r)["cider"] for r in rec}
note("event recall: %s; caption-independent: best fixed caption %.3f (%r), other scenes' captions %.3f"
     % (", ".join("%s %.3f" % kv for kv in rec.items()), fixed[0], fixed[1], other))
note("CIDEr-D: %s" % ", ".join("%s %.3f" % kv for kv in cid.items()))
check("score events on the references: every sound named (recall 1)",
      load("captions/ref.events.json")["recall"] == 1.0)
check("every test scene captioned by every row (ad, ni, nies, nnd, pd, sup), scored by score caption and events",
      all(load("captions/%s.events.json" % r)["items"] == n_test and load("captions/%s.caption.json" % r)["items"] == n_test
          for r in rec))
check("the baselines are not perfect: another scene's caption names fewer sounds than the scene's own",
      other < 1.0 and fixed[0] < 1.0, (other, fixed))
if LEARN:
    check("captioning learned: event recall of pd >= 1.5x the caption-independent baseline (%.3f)" % base,
          rec["pd"] >= 1.5 * base, (rec["pd"], base))
    check("captioning learned: event recall of ad >= 1.5x the caption-independent baseline (%.3f)" % base,
          rec["ad"] >= 1.5 * base, (rec["ad"], base))
    check("supervised upper bound: event recall >= 1.5x the baseline", rec["sup"] >= 1.5 * base, (rec["sup"], base))

# --- the report and the recipe -------------------------------------------------------------------
with open(os.path.join(out, "results.md")) as f:
    md = f.read()
check("results.md: retrieval and captioning tables, the PD/supervised headline, the gap, timings",
      all(s in md for s in ("## Retrieval", "| +PD |", "| supervised upper bound |", "the supervised decoder's CIDEr-D",
                            "‖gap‖", "| **total** |")), md[:500])
gap = load("gap/train.json")
check("the gap of the trained CLAP measured (norm, true pairs' cosine)", gap["gap_norm"] > 0 and "pair_cos" in gap, gap)
check("gapshift plot before/after PD written", os.path.getsize(os.path.join(out, "gap-pd.svg")) > 1000)
with open(os.path.join(out, "commands.sh")) as f:
    cmds = f.read()
check("commands.sh records the tool pipeline (clap-train, prefixdec train, nnproj, score events)",
      all(s in cmds for s in ("clap-train", "--distill-weight 1", "prefixdec train", "nnproj", "score events")))
# a rerun reuses the cached mel, embeddings and models, and gives the same tables
p2 = subprocess.run([PIPE] + args + ["--out", out, "-j", "2"], capture_output=True, text=True,
                    env=dict(os.environ, WSAC_BIN=BIN))
with open(os.path.join(out, "timings.tsv")) as f:
    steps = [l.split("\t")[0] for l in f]
check("a rerun reuses the cached world, mel and CLAP models (no clap-train step) and gives the same retrieval",
      p2.returncode == 0 and not any(s.endswith("-train") and s.startswith(("s1-", "s2-")) for s in steps)
      and "world" not in steps and {m: load("retrieval/%s.test.json" % m)["t2a"]["mAP@10"] for m in cfg["models"]} == maps,
      (p2.returncode, steps, p2.stderr[-1000:]))
rc = subprocess.run([PIPE, "--frobnicate"], capture_output=True, text=True)
check("an unknown option: usage error (exit 1)", rc.returncode == 1 and "unknown option" in rc.stderr, rc.stderr)
if not os.environ.get("WSAC_KEEP"):
    shutil.rmtree(tmp, ignore_errors=True)
done()
