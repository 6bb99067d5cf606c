"""score retrieval --relevance: text-to-audio retrieval with several relevant
audios per query (DCASE 2025 Task 6's metadata_eval.csv, query,audio_filenames)
against a numpy transcription of the DCASE 2025 baseline's evaluation
(d25_t6/retrieval_module.py: ranks by argsort, average_precision_at_k divides
by the number of relevant audios), hand-made cases, the single-positive
figures of plain `score retrieval`, and the named problems (exit 3)."""
import csv
import io
import json
import os
import subprocess
import tempfile

import numpy as np

from tap import VALGRIND, check, done, tool
import wsacstream as ws

SCORE = tool("score")
tmp = tempfile.mkdtemp()


def path(name):
    return os.path.join(tmp, name)


def write(name, text):
    with open(path(name), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path(name)


def run(*args):
    p = subprocess.run([SCORE] + [str(a) for a in args], capture_output=True)
    out = p.stdout.decode("utf-8", "replace")
    try:
        js = json.loads(out)
    except ValueError:
        js = None
    return p.returncode, out, p.stderr.decode("utf-8", "replace"), js


def stream(name, recs):
    """recs: (key, vector[, text])"""
    out = []
    for r in recs:
        d = {"key": r[0], "emb": np.asarray(r[1], dtype=np.float32)}
        if len(r) > 2:
            d["text"] = r[2]
        out.append(d)
    with open(path(name), "wb") as f:
        ws.write_stream(f, "test", out)
    return path(name)


def rel_csv(name, rows, bom=False):
    """rows: (query, [audio, ...]) written as the published file: str(list)"""
    s = io.StringIO()
    w = csv.writer(s, lineterminator="\n")
    w.writerow(["query", "audio_filenames"])
    for q, files in rows:
        w.writerow([q, str(list(files))])
    return write(name, ("\ufeff" if bom else "") + s.getvalue())


def close(got, want, tol=1e-12):
    return got is not None and all(abs(got[k] - v) <= tol for k, v in want.items())


def reference(S, queries, divisor_min=False):
    """numpy: S [captions, audio]; queries: (caption row, [audio indices]).
    The baseline's get_ranks (argsort of argsort, 0-based) and
    average_precision_at_k(ranks, k)."""
    r1 = r5 = r10 = 0
    ap = {10: [], 16: []}
    for t, rel in queries:
        order = np.argsort(-S[t], kind="stable")
        pos = np.argsort(order, kind="stable")
        ranks = sorted(int(pos[a]) for a in rel)
        r1 += ranks[0] < 1
        r5 += ranks[0] < 5
        r10 += ranks[0] < 10
        for k in (10, 16):
            s = 0.0
            for i, rank in enumerate(ranks, start=1):
                if rank >= k:
                    break
                s += i / (rank + 1)
            ap[k].append(s / (min(len(ranks), k) if divisor_min else len(ranks)))
    n = len(queries)
    return {"queries": n, "R@1": r1 / n, "R@5": r5 / n, "R@10": r10 / n, "mAP@10": float(np.mean(ap[10])),
            "mAP@16": float(np.mean(ap[16])), "mean_relevant": sum(len(r) for _, r in queries) / n}


# ---------------------------------------------------------------- hand case
# audios along axes; a query's similarity order is fixed by hand
A = [("a0.wav", [1, 0, 0, 0]), ("a1.wav", [0, 1, 0, 0]), ("a2.wav", [0, 0, 1, 0]), ("a3.wav", [0, 0, 0, 1])]
# q0: order a0 (.8) a1 (.5) a2 (.3) a3 (.1); q1: order a3 a2 a1 a0
T = [("k0", [0.8, 0.5, 0.3, 0.1], "a dog barks"), ("k1", [0.1, 0.3, 0.5, 0.8], "rain, then thunder")]
ap, tp = stream("ha.mp", A), stream("ht.mp", T)
# q0 relevant {a1, a2}: ranks 2, 3 -> AP = (1/2 + 2/3) / 2; R@1 0
# q1 relevant {a3, a0}: ranks 1, 4 -> AP = (1/1 + 2/4) / 2; R@1 1
rp = rel_csv("hand.csv", [("a dog barks", ["a1.wav", "a2.wav"]), ("rain, then thunder", ["a3.wav", "a0.wav"])])
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp, "--relevance", rp)
ap0, ap1 = (1 / 2 + 2 / 3) / 2, (1 + 2 / 4) / 2
want = {"queries": 2, "R@1": 0.5, "R@5": 1.0, "R@10": 1.0, "mAP@10": (ap0 + ap1) / 2, "mAP@16": (ap0 + ap1) / 2,
        "mean_relevant": 2.0}
check("hand case: two queries with two relevant audios each (AP by hand)", rc == 0 and js and close(js["t2a"], want),
      (rc, err, js and js["t2a"]))
check("hand case: JSON names the definition and the file", js and "min(R, K)" not in js["ap"] and js["rows"] == 2
      and js["queries_not_in_text"] == [] and js["audio_not_in_audio"] == [], js)
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp, "-R", rp, "--format", "table")
check("hand case --format table: one t2a row with mAP@16", rc == 0 and out.split()[:8] ==
      ["task", "queries", "R@1", "R@5", "R@10", "mAP@10", "mAP@16", "rel/q"] and out.splitlines()[1].startswith("t2a")
      and "50.00%" in out, out)

# AP@10 vs AP@16 and the divisor: 20 audios, a query with 12 relevant at
# ranks 1 and 10..20; R = 12 > 10
NA = 20
A2 = [("b%02d.wav" % i, np.eye(NA)[i]) for i in range(NA)]
v = np.array([NA - i for i in range(NA)], dtype=np.float64)  # rank = index + 1
v /= np.linalg.norm(v)
T2 = [("q", v, "query twelve")]
rel = [0] + list(range(9, 20))  # ranks 1, 10..20: 12 relevant
ap2, tp2 = stream("h2a.mp", A2), stream("h2t.mp", T2)
rp2 = rel_csv("h2.csv", [("query twelve", ["b%02d.wav" % i for i in rel])])
ranks = [r + 1 for r in rel]
ap10 = sum((j + 1) / r for j, r in enumerate(ranks) if r <= 10)
ap16 = sum((j + 1) / r for j, r in enumerate(ranks) if r <= 16)
rc, out, err, js = run("retrieval", "-a", ap2, "-t", tp2, "-R", rp2)
check("12 relevant audios: AP@10, AP@16 divide by R = 12 (the DCASE 2025 baseline)",
      rc == 0 and js and close(js["t2a"], {"mAP@10": ap10 / 12, "mAP@16": ap16 / 12, "R@1": 1.0}), js and js["t2a"])
rc, out, err, js = run("retrieval", "-a", ap2, "-t", tp2, "-R", rp2, "--ap-divisor", "min")
check("--ap-divisor min: AP@10 / 10, AP@16 / 12", rc == 0 and js
      and close(js["t2a"], {"mAP@10": ap10 / 10, "mAP@16": ap16 / 12}) and "min(R, K)" in js["ap"], js and js["t2a"])

# ---------------------------------------------------------------- random, against numpy
NA, NT, D = 90, 70, 24
for seed in range(11, 200):  # the first seed whose similarities have no near-ties
    rng = np.random.default_rng(seed)
    Aa = rng.standard_normal((NA, D))
    Aa /= np.linalg.norm(Aa, axis=1, keepdims=True)
    Tt = rng.standard_normal((NT, D))
    Tt /= np.linalg.norm(Tt, axis=1, keepdims=True)
    Aa, Tt = Aa.astype(np.float32), Tt.astype(np.float32)
    S = Tt.astype(np.float64) @ Aa.astype(np.float64).T
    gap = np.min(np.diff(np.sort(S, axis=1), axis=1))
    if gap > 2e-6:
        break
check("random embeddings: no two similarities of a query within 2e-6 (ranks do not depend on rounding)",
      gap > 2e-6, gap)
names = ["clip %02d's.wav" % i if i % 7 == 0 else "clip_%02d.wav" % i for i in range(NA)]
caps = ["caption %d, with \"quotes\" and commas" % i for i in range(NT)]
ap = stream("ra.mp", [(names[i], Aa[i]) for i in range(NA)])
tp = stream("rt.mp", [("cap%03d#1" % i, Tt[i], caps[i]) for i in range(NT)])
queries = []
for q in range(50):
    t = int(rng.integers(NT))
    n = int(rng.integers(1, 13))
    # bias toward near audios so that AP is rarely zero
    near = list(np.argsort(-S[t])[:25])
    rel = list(rng.choice(near, size=min(n, 25), replace=False))
    queries.append((t, [int(a) for a in rel]))
rp = rel_csv("rand.csv", [(caps[t], [names[a] for a in rel]) for t, rel in queries], bom=True)
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp, "--relevance", rp)
ref = reference(S, queries)
check("random (90 audios, 50 queries, 1-12 relevant): equals the numpy evaluation (divisor R)",
      rc == 0 and js and close(js["t2a"], ref), (rc, err[-300:], js and js["t2a"], ref))
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp, "--relevance", rp, "--ap-divisor", "min")
ref = reference(S, queries, divisor_min=True)
check("random: --ap-divisor min equals numpy with min(R, K)", rc == 0 and js and close(js["t2a"], ref),
      (js and js["t2a"], ref))

# one relevant audio per query: the single-positive figures of plain score retrieval
tp1 = stream("r1t.mp", [("%s#%d" % (names[i % NA], i // NA + 1), Tt[i], caps[i]) for i in range(NT)])
rc0, _, _, js0 = run("retrieval", "--audio", ap, "--text", tp1)
rp1 = write("one.csv", "query,audio_filenames\n" + "".join(
    '"%s",%s\n' % (caps[i].replace('"', '""'), names[i % NA] if i % 2 else '"%s"' % str([names[i % NA]]).replace('"', '""'))
    for i in range(NT)))
rc1, out1, err1, js1 = run("retrieval", "--audio", ap, "--text", tp1, "--relevance", rp1)
keys = ["queries", "R@1", "R@5", "R@10", "mAP@10"]
check("one relevant per query (bare names and one-item lists): R@k and mAP@10 equal plain score retrieval's t2a",
      rc0 == 0 and rc1 == 0 and js0 and js1 and all(js0["t2a"][k] == js1["t2a"][k] for k in keys),
      (rc1, err1[-300:], js0 and js0["t2a"], js1 and js1["t2a"]))

# ---------------------------------------------------------------- queries by key, problems
rp = rel_csv("bykey.csv", [("cap003#1", [names[3], names[5]]), (caps[4], [names[4]])])
rc, out, err, js = run("retrieval", "-a", ap, "-t", tp, "-R", rp)
check("a query that is no caption text is matched by key", rc == 0 and js and js["t2a"]["queries"] == 2
      and close(js["t2a"], reference(S, [(3, [3, 5]), (4, [4])])), (rc, err, js and js["t2a"]))
good = queries[:5]
rows = [(caps[t], [names[a] for a in rel]) for t, rel in good]
rows.insert(1, ("no such caption", [names[0]]))
rows.insert(3, (caps[0], [names[1], "missing.wav"]))
text = io.StringIO()
w = csv.writer(text, lineterminator="\n")
w.writerow(["query", "audio_filenames"])
for q, f in rows:
    w.writerow([q, str(f)])
text.write('"%s","[\'unterminated.wav"\n' % caps[1])
text.write(',"[\'x.wav\']"\n')
text.write('%s,"[]"\n' % caps[2].replace(",", " ").replace('"', ""))
text.write("only one field\n")
rp = write("bad.csv", text.getvalue())
rc, out, err, js = run("retrieval", "-a", ap, "-t", tp, "-R", rp)
check("problems named, exit 3, the others scored: query not in the text stream, audio not in the audio stream, "
      "bad list, empty query, empty list, wrong field count",
      rc == 3 and js and close(js["t2a"], reference(S, good)) and js["queries_not_in_text"] == ["no such caption"]
      and js["audio_not_in_audio"] == ["missing.wav"] and js["skipped_rows"] == 4
      and "no such caption" in err and "missing.wav" in err and "line 9" in err and "line 10" in err
      and "line 11" in err and "line 12" in err, (rc, err, js))

# ---------------------------------------------------------------- usage and fatal errors
for args, code, what in [(["-R", rp, "--map", rp], 1, "--map with --relevance"),
                         (["-R", rp, "--ap-divisor", "half"], 1, "bad --ap-divisor"),
                         (["-R", path("nonexistent.csv")], 2, "unreadable relevance file"),
                         (["-R", write("hdr.csv", "caption,files\nx,y\n")], 2, "header without query/audio_filenames"),
                         (["-R", write("empty.csv", "")], 2, "empty relevance file")]:
    rc, out, err, js = run("retrieval", "-a", ap, "-t", tp, *args)
    check("%s: exit %d, said on stderr" % (what, code), rc == code and err.startswith("score:") and out == "",
          (rc, err, out))
if VALGRIND:
    p = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=all", "--error-exitcode=99", SCORE,
                        "retrieval", "-q", "-a", ap, "-t", tp, "-R", rp], capture_output=True)
    check("valgrind --leak-check=full: no errors, no leaks (the file with every kind of problem)",
          p.returncode == 3 and b"ERROR SUMMARY: 0 errors" in p.stderr, p.stderr[-600:])
p = subprocess.run([SCORE, "--help"], capture_output=True, text=True)
check("--help names --relevance and --ap-divisor", p.returncode == 0 and "--relevance FILE" in p.stdout
      and "--ap-divisor" in p.stdout)
done()
