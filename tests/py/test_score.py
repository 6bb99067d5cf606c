"""score: PTB tokenization and BLEU/ROUGE-L/CIDEr-D against pycocoevalcap's
values (tests/data/ptb-dev, tests/data/metrics-dev), the command
line, the METEOR/SPICE protocols through stand-ins, and retrieval metrics
on cases whose ranks are known by hand or from a numpy transcription of the
DCASE / audio-text retrieval evaluation."""
import csv
import io
import json
import math
import os
import subprocess
import tempfile

import numpy as np

from tap import DATA, check, done, note, tool
import wsacstream as ws

SCORE = tool("score")
HERE = os.path.dirname(os.path.abspath(__file__))
tmp = tempfile.mkdtemp()
TOL = 1e-9
METRICS = {"BLEU_1": "bleu_1", "BLEU_2": "bleu_2", "BLEU_3": "bleu_3", "BLEU_4": "bleu_4",
           "ROUGE_L": "rouge_l", "CIDEr_D": "cider"}


def path(name):
    return os.path.join(tmp, name)


def write(name, text):
    with open(path(name), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path(name)


def run(*args, stdin=None, env=None):
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run([SCORE] + [str(a) for a in args], input=stdin.encode() if isinstance(stdin, str) else stdin,
                       capture_output=True, env=e)
    out = p.stdout.decode("utf-8", "replace")
    try:
        js = json.loads(out)
    except ValueError:
        js = None
    return p.returncode, out, p.stderr.decode("utf-8", "replace"), js


def cands_tsv(name, items):
    return write(name, "".join("%s\t%s\n" % (k, c) for k, c in items))


# ---------------------------------------------------------------- PTB probes
cases = json.load(open(os.path.join(DATA, "ptb-dev", "cases.json"), encoding="utf-8"))
probes = write("probes.txt", "".join(c["input"].replace("\n", " ") + "\n" for c in cases))
rc1, raw_out, _, _ = run("tokenize", "--raw", probes)
rc2, py_out, _, _ = run("tokenize", probes)
raw_lines, py_lines = raw_out.split("\n"), py_out.split("\n")
check("score tokenize: exit 0 and one line per probe", rc1 == 0 and rc2 == 0 and len(raw_lines) == len(cases) + 1,
      "rc %d %d, %d lines" % (rc1, rc2, len(raw_lines)))
n_java = n_py = 0
for i, c in enumerate(cases):
    j = raw_lines[i] if i < len(raw_lines) else None
    p = py_lines[i] if i < len(py_lines) else None
    n_java += j == c["java_tokens"]
    n_py += p == c["pycoco"]
    check("PTB probe %d %r: Java tokens and pycocoevalcap string" % (i + 1, c["input"][:40]),
          j == c["java_tokens"] and p == c["pycoco"],
          "java %r (want %r), pycoco %r (want %r)" % (j, c["java_tokens"], p, c["pycoco"]))
note("PTB probes matched: java_tokens %d/%d, pycoco %d/%d" % (n_java, len(cases), n_py, len(cases)))

# ---------------------------------------------------------------- metric corpora
for corpus in ("clotho-eval-300", "audiocaps-test-200"):
    base = os.path.join(DATA, "metrics-dev", corpus)
    data = json.load(open(base + ".corpus.json", encoding="utf-8"))
    exp = json.load(open(base + ".expected.json", encoding="utf-8"))
    refs = write(corpus + ".refs.json", json.dumps({k: v["references"] for k, v in data.items()}))
    cands = cands_tsv(corpus + ".tsv", [(k, v["candidate"]) for k, v in data.items()])
    rc, out, err, js = run("caption", "--refs", refs, "--per-item", cands)
    check("%s: exit 0, JSON output" % corpus, rc == 0 and js is not None, "rc %d: %s" % (rc, err[-300:]))
    if js is None:
        continue
    per = js.get("per_item", {})
    tok_bad = [k for k in data if k not in per or per[k]["candidate_tokenized"] != exp["per_item"][k]["candidate_tokenized"]
               or per[k]["references_tokenized"] != exp["per_item"][k]["references_tokenized"]]
    nstr = sum(1 + len(v["references"]) for v in data.values())
    check("%s: all %d tokenized strings identical to pycocoevalcap's" % (corpus, nstr), not tok_bad,
          "items differing: %s" % tok_bad[:5])
    note("%s: tokenized strings matched %d/%d" % (corpus, nstr - sum(1 + len(data[k]["references"]) for k in tok_bad), nstr))
    figures = []
    for E, O in METRICS.items():
        dc = abs(js[O] - exp["corpus"][E])
        di = max(abs(per[k][O] - exp["per_item"][k][E]) for k in data) if not tok_bad else float("inf")
        check("%s: %s corpus within %g" % (corpus, O, TOL), dc <= TOL, "|diff| %g" % dc)
        check("%s: %s per item within %g" % (corpus, O, TOL), di <= TOL, "max |diff| %g" % di)
        figures.append("%s %.2g/%.2g" % (O, dc, di))
    note("%s: max |diff| corpus/per-item: %s" % (corpus, ", ".join(figures)))
    check("%s: keys without jars: bleu_1..4 rouge_l cider; meteor spice spider not computed" % corpus,
          all(k in js for k in METRICS.values()) and not any(k in js for k in ("meteor", "spice", "spider"))
          and set(js.get("not_computed", {})) == {"meteor", "spice", "spider"} and js["items"] == len(data))
    # the corpus file itself ({"KEY": {"references": [...]}}) reads the same
    rc2, _, _, js2 = run("caption", "--refs", base + ".corpus.json", cands)
    check("%s: corpus.json form of references gives the same scores" % corpus,
          rc2 == 0 and js2 and all(js2[m] == js[m] for m in METRICS.values()))

    if corpus.startswith("clotho"):
        # the same references as a Clotho CSV (file_name,caption_1..4)
        with open(path("clotho.csv"), "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["file_name", "caption_1", "caption_2", "caption_3", "caption_4"])
            for k, v in data.items():
                w.writerow([k] + v["references"])
        rc3, _, err3, js3 = run("caption", "--refs", path("clotho.csv"), cands)
        check("Clotho CSV references give the same scores", rc3 == 0 and js3 and js3["references_format"] == "clotho-csv"
              and all(js3[m] == js[m] for m in METRICS.values()), err3[-300:])
        clotho_js, clotho_cands, clotho_data = js, cands, data
    else:
        # as an AudioCaps CSV: rows grouped by youtube_id
        with open(path("audiocaps.csv"), "w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
            n = 0
            for k, v in data.items():
                for r in v["references"]:
                    n += 1
                    w.writerow([100000 + n, k, 30, r])
        rc3, _, err3, js3 = run("caption", "--refs", path("audiocaps.csv"), cands)
        check("AudioCaps CSV references (grouped by youtube_id) give the same scores",
              rc3 == 0 and js3 and js3["references_format"] == "audiocaps-csv"
              and all(js3[m] == js[m] for m in METRICS.values()), err3[-300:])

# ---------------------------------------------------------------- command line
keys = list(clotho_data)
sub = keys[:50]
refs50 = write("refs50.json", json.dumps({k: clotho_data[k]["references"] for k in sub}))
cands_all = cands_tsv("c_mix.tsv", [(k, clotho_data[k]["candidate"]) for k in keys[5:50]] + [("stray.wav", "a dog")])
rc, out, err, js = run("caption", "--refs", refs50, cands_all)
check("missing keys: exit 3", rc == 3, "rc %d" % rc)
check("missing keys: listed in the JSON", js and js["missing_candidates"] == keys[:5] and js["missing_references"] == ["stray.wav"]
      and js["items"] == 45, js and (js["missing_candidates"], js["missing_references"], js["items"]))
check("missing keys: each named on stderr", all(k in err for k in keys[:5] + ["stray.wav"]), err[-400:])
refs45 = write("refs45.json", json.dumps({k: clotho_data[k]["references"] for k in keys[5:50]}))
rc2, _, _, js2 = run("caption", "--refs", refs45, cands_tsv("c45.tsv", [(k, clotho_data[k]["candidate"]) for k in keys[5:50]]))
check("missing keys: the scores are those of the 45 matched items", rc2 == 0 and js and js2
      and all(js[m] == js2[m] for m in METRICS.values()))

with open(path("bad.csv"), "w", encoding="utf-8", newline="") as f:
    f.write("file_name,caption_1,caption_2\n")
    f.write("a.wav,A dog barks.,A dog is barking.\n")
    f.write("b.wav,\"Birds sing,\nloudly\",Birds chirp.\n")   # a quoted newline: the row spans lines 3-4
    f.write("c.wav,only one field too many,x,y\n")          # line 5: 4 fields
    f.write("d.wav,Rain falls.,Rain is falling.\n")
rc, out, err, js = run("caption", "--refs", path("bad.csv"),
                       stdin="a.wav\tA dog barks\nb.wav\tbirds sing\nc.wav\tsomething\nd.wav\train\n")
check("malformed CSV row: named with its line number, exit 3", rc == 3 and "line 5" in err and "skipped" in err, err)
check("malformed CSV row: its key is then a candidate without references",
      js and js["missing_references"] == ["c.wav"] and js["items"] == 3 and js["malformed_reference_rows"] == 1)
rc, out, err, js = run("caption", "--refs", path("bad.csv"), "--per-item",
                       stdin="a.wav\tA dog barks\nno tab here\nb.wav\tbirds sing\nd.wav\train\nd.wav\tagain\n")
check("malformed candidate lines: no tab and a repeated key named by line, exit 3",
      rc == 3 and "line 2" in err and "line 5" in err and js and js["malformed_candidate_lines"] == 2, err)
check("a reference with a quoted newline is one reference",
      js and js["per_item"]["b.wav"]["references_tokenized"] == ["birds sing loudly", "birds chirp"],
      js and js["per_item"]["b.wav"])

good = write("good.json", json.dumps({"a": ["a dog barks", "the dog is barking loudly"], "b": ["birds sing"]}))
rc, out, err, js = run("caption", "--refs", good, stdin="a\tA dog barks!\nb\t\n")
check("clean run: exit 0", rc == 0, err)
rc, out, err, js = run("caption", "--refs", good, "--per-item", stdin="a\tA dog barks!\nb\t\n")
check("an empty candidate scores 0 (BLEU, ROUGE-L, CIDEr-D)",
      js and all(js["per_item"]["b"][m] == 0 for m in METRICS.values()) and js["per_item"]["b"]["candidate_tokenized"] == "")
rc, out, err, js = run("caption", "--refs", good, "--format", "table", stdin="a\tA dog barks!\nb\tbirds\n")
lines = out.splitlines()
check("--format table: one line per metric, the Java ones marked not computed",
      rc == 0 and lines[0].startswith("bleu_1") and any(l.startswith("meteor") and "not computed" in l for l in lines)
      and any(l.startswith("cider") for l in lines), out)
rc, out, err, js = run("caption", "--refs", good, "--format", "table", "--per-item", stdin="a\tA dog barks!\nb\tbirds\n")
check("--format table --per-item: a header, one row per item, a corpus row",
      rc == 0 and out.splitlines()[0].split("\t")[:2] == ["key", "bleu_1"] and len(out.splitlines()) == 4, out)
rc, out, err, js = run("caption", "--refs", good, "-q", stdin="a\tA dog barks!\nb\tbirds\n")
check("-q: nothing on stderr for a clean run", rc == 0 and err == "", err)
for args, want, what in [(["caption"], 1, "no --refs"), (["caption", "--refs", good, "--format", "xml"], 1, "bad --format"),
                         (["caption", "--refs", path("nope.json")], 2, "unreadable references"),
                         (["caption", "--refs", good, "--meteor-jar", path("nope.jar")], 1, "missing --meteor-jar file"),
                         (["frobnicate"], 1, "unknown command"), (["retrieval", "--audio", "x.mp"], 1, "no --text")]:
    rc, out, err, js = run(*args, stdin="")
    check("exit %d: %s" % (want, what), rc == want and out == "" and err.startswith("score: "), "rc %d %s" % (rc, err))
rc, out, err, js = run("caption", "--refs", write("hdr.csv", "name,text\nx,y\n"), stdin="x\ty\n")
check("unrecognised CSV header: exit 2, said why", rc == 2 and "header" in err, err)

# ---------------------------------------------------------------- METEOR / SPICE stand-ins
fake_java = write("java", "#!/bin/sh\n# fake java: -jar [-XmxN] JAR ARGS -> python3 JAR ARGS\n"
                          "[ \"$1\" = -jar ] || { echo 'fake java: want -jar first' >&2; exit 2; }\nshift\n"
                          "case \"$1\" in -Xmx*) FAKE_JAVA_XMX=$1; export FAKE_JAVA_XMX; shift ;; esac\n"
                          "jar=$1; shift\nexec /usr/bin/python3 \"$jar\" \"$@\"\n")
os.chmod(fake_java, 0o755)
meteor_jar, spice_jar = os.path.join(HERE, "fake_meteor.py"), os.path.join(HERE, "fake_spice.py")
clotho_refs = path("clotho-eval-300.refs.json")
log = path("meteor.log")
rc, out, err, js = run("caption", "--refs", clotho_refs, "--per-item", "--java", fake_java, "--meteor-jar", meteor_jar,
                       "--spice-jar", spice_jar, clotho_cands, env={"FAKE_METEOR_LOG": log})
check("stand-ins: exit 0, meteor spice spider computed", rc == 0 and js and all(k in js for k in ("meteor", "spice", "spider"))
      and "not_computed" not in js, err[-500:])
if js:
    per = js["per_item"]
    order = sorted(per)
    stats = []
    for k in order:
        words = set(w for r in per[k]["references_tokenized"] for w in r.split())
        h = per[k]["candidate_tokenized"].split()
        stats.append((k, len(h), sum(w in words for w in h)))
    m_item = {k: m / (h + 1) for k, h, m in stats}
    m_corpus = sum(m for _, h, m in stats) / (sum(h for _, h, m in stats) + len(stats))
    check("METEOR stand-in: per-item and corpus scores read back in key order",
          all(per[k]["meteor"] == m_item[k] for k in per) and js["meteor"] == m_corpus)
    sent = [l.rstrip("\n") for l in open(log, encoding="utf-8")]
    want = ["SCORE ||| " + " ||| ".join(per[k]["references_tokenized"]) + " ||| " + per[k]["candidate_tokenized"] for k in order]
    check("METEOR protocol: SCORE lines in key order with the tokenized strings, then one EVAL line",
          sent[:-1] == want and sent[-1].startswith("EVAL ||| ") and sent[-1].count(" ||| ") == len(order))

    def f_spice(k):
        hyp = set(per[k]["candidate_tokenized"].split())
        words = set(w for r in per[k]["references_tokenized"] for w in r.split())
        return len(hyp & words) / len(hyp) if hyp else float("nan")
    s_item = np.array([f_spice(k) for k in order])
    check("SPICE stand-in: per-item f and corpus numpy mean",
          all(per[k]["spice"] == f_spice(k) for k in per) and abs(js["spice"] - float(np.mean(s_item))) <= 1e-15)
    check("SPIDEr = (CIDEr-D + SPICE) / 2, corpus and per item",
          js["spider"] == (js["cider"] + js["spice"]) / 2 and all(per[k]["spider"] == (per[k]["cider"] + per[k]["spice"]) / 2 for k in per))
rc, out, err, js = run("caption", "--refs", good, "--per-item", "--java", fake_java, "--spice-jar", spice_jar,
                       stdin="a\tA dog barks!\nb\t\n")
check("SPICE NaN (empty candidate): null per item and corpus, exit 0",
      rc == 0 and js and js["per_item"]["b"]["spice"] is None and js["spice"] is None and js["per_item"]["a"]["spice"] == 1)
rc, out, err, js = run("caption", "--refs", clotho_refs, "--java", fake_java, "--meteor-jar", meteor_jar, clotho_cands,
                       env={"FAKE_METEOR_DIE": "3"})
check("a METEOR that dies: exit 3, reason in not_computed and on stderr, the other scores written",
      rc == 3 and js and "meteor" in js.get("not_computed", {}) and "bleu_4" in js and "meteor: " in err
      and "OutOfMemoryError" in err, err[-500:])
rc, out, err, js = run("caption", "--refs", clotho_refs, "--java", fake_java, "--spice-jar", spice_jar, clotho_cands,
                       env={"FAKE_SPICE_FAIL": "1"})
check("a failing SPICE: exit 3, spice and spider not computed, the Java message relayed",
      rc == 3 and js and {"spice", "spider"} <= set(js.get("not_computed", {})) and "fake failure" in err, err[-500:])
rc, out, err, js = run("caption", "--refs", good, "--java", path("no-such-java"), "--meteor-jar", meteor_jar,
                       stdin="a\tA dog barks!\nb\tbirds\n")
check("java not found: exit 3, said why", rc == 3 and js and "meteor" in js["not_computed"] and "cannot run" in err, err)

# ---------------------------------------------------------------- retrieval


def stream(name, recs):
    with open(path(name), "wb") as f:
        ws.write_stream(f, "test", [{"key": k, "emb": np.asarray(v, dtype=np.float32)} for k, v in recs])
    return path(name)


# hand case: a3 is a copy of a0 (ties); 0.6/0.8 pairs tie across captions
A = [("a0.wav", [1, 0, 0]), ("a1.wav", [0, 1, 0]), ("a2.wav", [0, 0, 1]), ("a3.wav", [1, 0, 0])]
T = [("a0.wav#1", [1, 0, 0]), ("a3.wav#1", [1, 0, 0]), ("a1.wav#1", [0.6, 0.8, 0]), ("a1.wav#2", [0.8, 0.6, 0]),
     ("a2.wav#1", [0, 0.6, 0.8])]
ap, tp = stream("ha.mp", A), stream("ht.mp", T)
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp)
# t2a ranks by hand: 1, 2 (tie with a0, which comes first), 1, 3 (a0 and a3 tie above), 1
# a2t: a0 best 1 (AP 1); a1: c2 rank 1, c3 rank 2 (tie with c4, earlier) -> AP (1/1 + 2/2)/2 = 1;
#      a2: 1 (AP 1); a3: its caption ties with a0's, which comes first -> rank 2, AP 1/2
want_t2a = {"queries": 5, "R@1": 3 / 5, "R@5": 1.0, "R@10": 1.0, "mAP@10": (1 + 1 / 2 + 1 + 1 / 3 + 1) / 5,
            "median_rank": 1, "mean_rank": 8 / 5}
want_a2t = {"queries": 4, "R@1": 3 / 4, "R@5": 1.0, "R@10": 1.0, "mAP@10": (1 + 1 + 1 + 0.5) / 4, "median_rank": 1,
            "mean_rank": 5 / 4}


def close(got, want):
    return got is not None and all(abs(got[k] - v) <= 1e-12 for k, v in want.items())


check("retrieval hand case: t2a ranks with ties broken by stream order", rc == 0 and js and close(js["t2a"], want_t2a),
      js and js["t2a"])
check("retrieval hand case: a2t (2 captions for a1, AP@10 over them)", js and close(js["a2t"], want_a2t), js and js["a2t"])
mp = write("map.tsv", "".join("cap%d\t%s\n" % (i, k.split("#")[0]) for i, (k, v) in enumerate(T)))
tp2 = stream("ht2.mp", [("cap%d" % i, v) for i, (k, v) in enumerate(T)])
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp2, "--map", mp)
check("--map FILE gives the same result", rc == 0 and js and close(js["t2a"], want_t2a) and close(js["a2t"], want_a2t))
tp3 = stream("ht3.mp", T + [("gone.wav#1", [0, 1, 0])])
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp3)
check("a caption whose audio is missing: named, left out, exit 3",
      rc == 3 and "gone.wav#1" in err and js and js["captions_without_audio"] == ["gone.wav#1"]
      and close(js["t2a"], want_t2a) and close(js["a2t"], want_a2t), err)
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp, "--format", "table")
check("retrieval --format table", rc == 0 and out.splitlines()[0].split()[:2] == ["task", "queries"]
      and out.splitlines()[1].startswith("t2a") and "60.00%" in out, out)

# SALSA / Clotho layout: 5 captions per clip, against a numpy transcription
# of the audio-text retrieval evaluation (t2a/a2t with argsort; mAP@10 as DCASE)
rng = np.random.default_rng(7)
NA, D = 60, 16
Aa = rng.standard_normal((NA, D)).astype(np.float32)
Aa /= np.linalg.norm(Aa, axis=1, keepdims=True)
Tt = (np.repeat(Aa, 5, axis=0) + 0.9 * rng.standard_normal((5 * NA, D))).astype(np.float32)
Tt /= np.linalg.norm(Tt, axis=1, keepdims=True)
ap = stream("sa.mp", [("clip %02d.wav" % i, Aa[i]) for i in range(NA)])
tp = stream("st.mp", [("clip %02d.wav#%d" % (i // 5, i % 5 + 1), Tt[i]) for i in range(5 * NA)])
rc, out, err, js = run("retrieval", "--audio", ap, "--text", tp)
S = Tt.astype(np.float64) @ Aa.astype(np.float64).T  # [captions, audio]
ranks = np.array([np.where(np.argsort(-S[q], kind="stable") == q // 5)[0][0] for q in range(5 * NA)])  # 0-based
ref_t2a = {"queries": 5 * NA, "R@1": np.mean(ranks < 1), "R@5": np.mean(ranks < 5), "R@10": np.mean(ranks < 10),
           "mAP@10": np.sum(1 / (ranks[ranks < 10] + 1)) / len(ranks), "median_rank": np.floor(np.median(ranks)) + 1,
           "mean_rank": ranks.mean() + 1}
best, ap10 = np.zeros(NA), np.zeros(NA)
for a in range(NA):
    inds = np.argsort(-S[:, a], kind="stable")
    pos = sorted(int(np.where(inds == c)[0][0]) for c in range(5 * a, 5 * a + 5))
    best[a] = pos[0]
    ap10[a] = sum((j + 1) / (p + 1) for j, p in enumerate(pos) if p < 10) / 5
ref_a2t = {"queries": NA, "R@1": np.mean(best < 1), "R@5": np.mean(best < 5), "R@10": np.mean(best < 10),
           "mAP@10": ap10.mean(), "median_rank": np.floor(np.median(best)) + 1, "mean_rank": best.mean() + 1}
check("Clotho layout (60 clips x 5 captions): t2a equals the numpy evaluation", rc == 0 and js and close(js["t2a"], ref_t2a),
      js and (js["t2a"], ref_t2a))
check("Clotho layout: a2t equals the numpy evaluation (AP@10 over the 5 captions)", js and close(js["a2t"], ref_a2t),
      js and (js["a2t"], ref_a2t))
done()
