"""clap-text on a tiny random CLAP model (clapref.Config.tiny(): hidden 48,
4 heads, 2 layers) against the PyTorch reference (scripts/clapref.py
text_forward) on the same converted weights; input formats, batching,
threads, streaming, bad input, bad models.

Reference ids come from the tokenizer fixtures (tests/data/wordpiece-dev:
exact BERT ids), or from vocabulary look-ups for the non-ASCII captions, never
from clap-text itself. Tolerance (issue 3): cosine >= 0.99999 and
max |C - ref| <= 1e-4 per embedding."""
import csv
import io
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile

import msgpack
import numpy as np
import torch

from tap import DATA, VOCAB as BERT_VOCAB, check, done, note, tool, ROOT, VALGRIND
import clapref
import sttools
import wsacstream as ws

COS, ATOL = 0.99999, 1e-4
tmp = tempfile.mkdtemp()
VOCAB = BERT_VOCAB
DEV = os.path.join(DATA, "wordpiece-dev")
CLS, SEP = 101, 102

# ---------------------------------------------------------------- the tiny model
cfg = clapref.Config.tiny()
sd = clapref.random_state_dict(cfg, seed=7)
pt = os.path.join(tmp, "tiny.pt")
torch.save({"model": sd}, pt)
MODEL = os.path.join(tmp, "tiny.safetensors")
p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert.py"), "clap", pt, "--vocab", VOCAB,
                    "--text-heads", str(cfg.heads), "-o", MODEL], capture_output=True)
check("convert.py makes the tiny model", p.returncode == 0, p.stderr.decode())


def run(args, stdin=b"", env=None, model=MODEL):
    e = dict(os.environ, **(env or {}))
    p = subprocess.run([tool("clap-text"), "-m", model] + args, input=stdin, capture_output=True, env=e)
    hdr, recs, tr = ws.read_stream(io.BytesIO(p.stdout)) if p.stdout else (None, [], None)
    return p, recs, tr


def ref_emb(ids):
    return clapref.text_forward(sd, cfg, torch.tensor(ids, dtype=torch.long))[0].numpy()


def agree(e, r):
    cos = float(np.dot(e, r) / (np.linalg.norm(e) * np.linalg.norm(r)))
    return cos, float(np.abs(e - r).max())


def lines(pairs):
    return "".join("%s\t%s\n" % kv for kv in pairs).encode()


def load_jsonl(name):
    return [json.loads(l) for l in open(os.path.join(DEV, name), encoding="utf-8")]


clotho_dev = load_jsonl("clotho-dev-caption1-2000.jsonl")
audiocaps_dev = load_jsonl("audiocaps-train-1000.jsonl")
vocab = {t: i for i, t in enumerate(open(VOCAB, encoding="utf-8").read().split("\n"))}

# ---------------------------------------------------------------- parity
# (key, text, expected ids without [CLS]/[SEP]); truncation to 30 = 28 + 2
long_parts = clotho_dev[:4]
cases = [
    ("one-word", "Thunder", [vocab["thunder"]]),
    ("forty-words", " ".join(d["text"] for d in long_parts), sum((d["ids"] for d in long_parts), [])),
    ("audiocaps-35-ids", max(audiocaps_dev, key=lambda d: len(d["ids"]))["text"],
     max(audiocaps_dev, key=lambda d: len(d["ids"]))["ids"]),
    ("non-ascii-1", "Café in Zürich.", [vocab[w] for w in ("cafe", "in", "zurich", ".")]),
    ("non-ascii-2", "A naïve dog — São Paulo 東京",
     [vocab[w] for w in ("a", "naive", "dog", "—", "sao", "paulo", "東", "京")]),
    ("non-ascii-3", "Birds sing in El Niño", [vocab[w] for w in ("birds", "sing", "in", "el", "nino")]),
]
check("the forty-word caption has 40 words and more than 28 tokens",
      len(cases[1][1].split()) >= 40 and len(cases[1][2]) > 28, (len(cases[1][1].split()), len(cases[1][2])))
p, recs, tr = run(["-q", "--ids"], lines((k, t) for k, t, _ in cases))
got = {r["key"]: r for r in recs}
check("parity: every case is written (exit 0)", p.returncode == 0 and len(got) == len(cases), p.stderr.decode())
worst_cos, worst_abs = 1.0, 0.0
for key, text, ids in cases:
    want = [CLS] + ids[:28] + [SEP]
    r = got.get(key)
    if r is None:
        check("parity: %s" % key, False, "missing")
        continue
    check("tokens: %s: ids are [CLS] + the reference ids truncated to 28 + [SEP]" % key,
          r["ids"].tolist() == want and r["ids"].dtype == np.int32, (r["ids"].tolist(), want))
    cos, d = agree(r["emb"], ref_emb(want))
    worst_cos, worst_abs = min(worst_cos, cos), max(worst_abs, d)
    check("parity: %s (%d tokens): cosine %.8f >= %g, max abs %.2e <= %g" % (key, len(want), cos, COS, d, ATOL),
          cos >= COS and d <= ATOL)
    check("%s: emb is f32 [40], unit norm, text passed on" % key,
          r["emb"].dtype == np.float32 and r["emb"].shape == (cfg.embed,) and
          abs(np.linalg.norm(r["emb"]) - 1) < 1e-5 and r["text"] == text)
note("tiny parity, single captions: min cosine %.9f, max abs diff %.2e" % (worst_cos, worst_abs))

# many captions, mixed lengths, one batch vs one at a time, against the reference
mixed = clotho_dev[100:164] + audiocaps_dev[:36]
inp = lines(("m%d" % i, d["text"]) for i, d in enumerate(mixed))
p1, big, _ = run(["-q", "-j", "1"], inp)
p2, single, _ = run(["-q", "-j", "1", "--batch", "1"], inp)
worst_cos, worst_abs, bad = 1.0, 0.0, []
for i, d in enumerate(mixed):
    cos, diff = agree(big[i]["emb"], ref_emb([CLS] + d["ids"][:28] + [SEP]))
    worst_cos, worst_abs = min(worst_cos, cos), max(worst_abs, diff)
    if cos < COS or diff > ATOL:
        bad.append((i, cos, diff))
check("parity: 100 real captions in one batch (--batch 64: 64 + 36), every one within tolerance", not bad, bad[:3])
note("tiny parity, 100 captions batched: min cosine %.9f, max abs diff %.2e" % (worst_cos, worst_abs))
same = all(np.array_equal(a["emb"], b["emb"]) for a, b in zip(big, single))
check("batching: 100 captions batched and one at a time (--batch 1) are bit-identical",
      len(big) == len(single) == 100 and same)
check("batching: records leave in input order", [r["key"] for r in big] == ["m%d" % i for i in range(100)])
maxdiff = max(float(np.abs(a["emb"] - b["emb"]).max()) for a, b in zip(big, single))
note("batched vs one at a time: max abs diff %g (bits %s)" % (maxdiff, "identical" if same else "differ"))

# ---------------------------------------------------------------- determinism, threads, kernels
a = subprocess.run([tool("clap-text"), "-q", "-m", MODEL, "-j", "1"], input=inp, capture_output=True).stdout
b = subprocess.run([tool("clap-text"), "-q", "-m", MODEL, "-j", "1"], input=inp, capture_output=True).stdout
c2 = subprocess.run([tool("clap-text"), "-q", "-m", MODEL, "-j", "2", "--batch", "7"], input=inp,
                    capture_output=True).stdout
c3 = subprocess.run([tool("clap-text"), "-q", "-m", MODEL, "-j", "3", "--batch", "13"], input=inp,
                    capture_output=True).stdout
check("determinism: two runs are bit-identical", a == b and len(a) > 10000)
check("determinism: --threads 2 --batch 7 and --threads 3 --batch 13 give the same bits", a == c2 == c3)
kern = subprocess.run([tool("clap-text"), "-v", "-m", MODEL], input=b"", capture_output=True).stderr.decode()
note("kernel in use: " + (kern.split("; ")[-1].strip() if "kernels" in kern else kern.strip()))
if "avx512 kernels" in kern:
    d2 = subprocess.run([tool("clap-text"), "-q", "-m", MODEL, "-j", "2"], input=inp, capture_output=True,
                        env=dict(os.environ, WSAC_KERNEL="avx2")).stdout
    check("kernels: AVX2+FMA and AVX-512 give the same bits", d2 == a)
p, gen, _ = run(["-q"], inp, env={"WSAC_KERNEL": "generic"})
worst = min(agree(g["emb"], x["emb"])[0] for g, x in zip(gen, big))
check("kernels: the generic C kernel agrees with the reference too (cosine %.8f)" % worst,
      len(gen) == 100 and worst >= COS)

# ---------------------------------------------------------------- keys, text, --ids, lines
text_in = b"first caption without a tab\n\nk2\t  spaced\tout  \r\nthird\r\n"
p, recs, tr = run(["-q"], text_in)
check("lines: a line without a tab is keyed by its line number; blank lines skipped but counted; CRLF",
      p.returncode == 0 and [r["key"] for r in recs] == ["1", "k2", "4"], [r["key"] for r in recs])
check("lines: the caption after the first tab is passed on exactly as \"text\"",
      [r["text"] for r in recs] == ["first caption without a tab", "  spaced\tout  ", "third"],
      [r["text"] for r in recs])
p, recs, tr = run(["-q"], b"\xef\xbb\xbfa\tbom first\n")
check("lines: a UTF-8 byte order mark is skipped", recs and recs[0]["key"] == "a")
p, recs, tr = run(["-q", "-"], b"")
check("empty input: exit 0, a header and a trailer with 0 records",
      p.returncode == 0 and tr is not None and tr["records"] == 0 and not recs)
src = os.path.join(tmp, "caps.tsv")
open(src, "wb").write(lines([("x", "A dog barks."), ("y", "Rain on a roof")]))
p, recs, tr = run(["-q", src])
check("FILE argument: read instead of stdin", p.returncode == 0 and [r["key"] for r in recs] == ["x", "y"])

# ---------------------------------------------------------------- CSV
def csv_head(path, n):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows[:n + 1])
    return rows[0], rows[1:n + 1], out.getvalue().encode()


hdr, rows, data = csv_head(os.path.join(DATA, "clotho", "val-50.csv"), 50)
p, recs, tr = run(["-q", "--csv"], data)
want_keys = ["%s#%d" % (r[0], k) for r in rows for k in range(1, 6)]
check("--csv Clotho val (50 rows): 250 records keyed FILE_NAME#1..#5 in order",
      p.returncode == 0 and [r["key"] for r in recs] == want_keys, (p.returncode, p.stderr.decode()[-300:]))
check("--csv Clotho: \"text\" is each caption exactly as Python's csv reads it",
      [r["text"] for r in recs] == [r[k] for r in rows for k in range(1, 6)])
# parity on Clotho captions through the tokenizer fixtures: their texts are Clotho dev captions
by_text = {d["text"]: d["ids"] for d in clotho_dev}
p, recs2, _ = run(["-q", "--csv"], csv_head(os.path.join(DATA, "clotho", "train-20.csv"), 20)[2])
hits = [(r, by_text[r["text"]]) for r in recs2 if r["text"] in by_text]
ok_par = [agree(r["emb"], ref_emb([CLS] + ids[:28] + [SEP]))[0] >= COS for r, ids in hits]
check("--csv Clotho train: captions found in the tokenizer fixtures match the reference (%d)" % len(hits),
      hits and all(ok_par))
hdr, rows, data = csv_head(os.path.join(DATA, "audiocaps", "val-50.csv"), 50)
p, recs, tr = run(["-q", "--csv"], data)
check("--csv AudioCaps val (50 rows): 50 records keyed audiocap_id, text = caption",
      p.returncode == 0 and [r["key"] for r in recs] == [r[0] for r in rows] and
      [r["text"] for r in recs] == [r[3] for r in rows], p.stderr.decode()[-300:])
quoted = ('file_name,caption_1,caption_2\r\n"a, b.wav","He said ""hi"", twice","two\nlines"\r\n'
          'c.wav, spaced ,x\r\n').encode()
p, recs, tr = run(["-q", "--csv"], quoted)
check("--csv: quoted fields with commas, doubled quotes and newlines; CRLF; nothing trimmed",
      [(r["key"], r["text"]) for r in recs] == [("a, b.wav#1", 'He said "hi", twice'), ("a, b.wav#2", "two\nlines"),
                                                ("c.wav#1", " spaced "), ("c.wav#2", "x")],
      [(r["key"], r["text"]) for r in recs])

# ---------------------------------------------------------------- bad input
bad = (b"good\tA dog barks\n"
       b"empty\t\n"
       b"blank\t   \t \n"
       b"latin1\tcaf\xe9 au lait\n"
       b"nul\tnul\x00byte\n"
       + b"long\t" + b"x" * (2 << 20) + b"\n"
       b"\tno key\n"
       b"good2\tRain falls\n")
p, recs, tr = run([], bad)
err = p.stderr.decode()
check("bad input: exit 3, the good captions still written",
      p.returncode == 3 and [r["key"] for r in recs] == ["good", "good2"], (p.returncode, err[-400:]))
for key, why in [("empty", "empty caption"), ("blank", "empty caption"), ("latin1", "not valid UTF-8"),
                 ("nul", "NUL byte"), ("line 6", "longer than"), ("line 7", "empty key")]:
    line = [l for l in err.splitlines() if l.startswith("clap-text: %s: " % key)]
    check("bad input: %s named with its reason (%s)" % (key, why), line and why in line[0], err)
check("bad input: the closing summary counts both", "2 records written, 6 failed" in err, err)
check("bad input: the trailer lists the failed keys",
      tr and tr["failed"] == ["empty", "blank", "latin1", "nul", "line 6", "line 7"], tr)
badcsv = ("file_name,caption_1,caption_2\n"
          "a.wav,one,two\n"
          "b.wav,only one field short\n"
          "c.wav,x,y,z\n"
          ",no,name\n"
          "d.wav,,fine\n"
          "e.wav,\"unterminated,z\n").encode()
p, recs, tr = run(["--csv"], badcsv)
err = p.stderr.decode()
check("bad CSV: exit 3, good rows written", p.returncode == 3 and
      [r["key"] for r in recs] == ["a.wav#1", "a.wav#2", "d.wav#2"], ([r["key"] for r in recs], err))
for key, why in [("line 3", "CSV row has 2 fields, the header has 3"), ("line 4", "4 fields"),
                 ("line 5", "empty file_name"), ("d.wav#1", "empty caption"), ("line 7", "unterminated")]:
    line = [l for l in err.splitlines() if l.startswith("clap-text: %s: " % key)]
    check("bad CSV: %s named (%s)" % (key, why), line and why in line[0], err)
p, recs, tr = run(["--csv"], b"name,text\na,b\n")
check("bad CSV header: exit 2, says which headers are known",
      p.returncode == 2 and "neither Clotho" in p.stderr.decode() and tr is None, p.stderr.decode())

# ---------------------------------------------------------------- streaming
def read_objects(proc, n, timeout=120.0):  # a hang, not slowness
    up, out, fd = msgpack.Unpacker(raw=False), [], proc.stdout.fileno()
    while len(out) < n:
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        up.feed(chunk)
        out.extend(up)
    return out


for mode, first, second in [([], b"s1\tA bell rings\n", b"s2\tWind blows\n"),
                            (["--csv"], b"audiocap_id,youtube_id,start_time,caption\n1,y,0,A bell rings\n",
                             b"2,z,0,Wind blows\n")]:
    proc = subprocess.Popen([tool("clap-text"), "-q", "-m", MODEL] + mode, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    proc.stdin.write(first)
    proc.stdin.flush()
    objs = read_objects(proc, 2)
    k1 = "s1" if not mode else "1"
    check("streaming%s: the first record leaves before stdin closes" % (" --csv" if mode else ""),
          len(objs) == 2 and objs[1].get("key") == k1, objs[:2])
    proc.stdin.write(second)
    proc.stdin.close()
    rest = read_objects(proc, 2)
    proc.wait(timeout=120)
    check("streaming%s: the rest and the trailer follow" % (" --csv" if mode else ""),
          len(rest) == 2 and rest[-1].get("end") is True and proc.returncode == 0)

# ---------------------------------------------------------------- bad models
tensors, meta = sttools.load(MODEL)
T = "text_encoder.text_encoder."


def variant(name, change):
    t, m = dict(tensors), dict(meta)
    change(t, m)
    path = os.path.join(tmp, name + ".safetensors")
    sttools.save(path, t, m)
    return path


models = [
    ("wrong shape", variant("shape", lambda t, m: t.__setitem__(T + "encoder.layer.1.output.dense.weight",
                                                                np.zeros((48, 71), np.float32))),
     "'%sencoder.layer.1.output.dense.weight' has shape [48, 71], expected [48, 72]" % T),
    ("missing tensor", variant("missing", lambda t, m: t.pop(T + "encoder.layer.0.attention.output.LayerNorm.bias")),
     "'%sencoder.layer.0.attention.output.LayerNorm.bias' is missing" % T),
    ("another architecture (a pooler)", variant("pooler", lambda t, m: t.__setitem__(
        T + "pooler.dense.weight", np.zeros((48, 48), np.float32))), "unexpected tensor '%spooler.dense.weight'" % T),
    ("f16 weights", variant("f16", lambda t, m: t.__setitem__("text_proj.2.weight",
                                                              t["text_proj.2.weight"].astype(np.float16))),
     "'text_proj.2.weight' has dtype F16, expected F32"),
    ("a decoder file", variant("decoder", lambda t, m: m.__setitem__("wsac.model", "decoder")),
     "'wsac.model' is 'decoder', expected 'clap'"),
    ("heads do not divide", variant("heads", lambda t, m: m.__setitem__("clap.text.heads", "5")), "does not divide"),
    ("vocabulary mismatch", variant("vocab", lambda t, m: t.__setitem__(
        "tokenizer.vocab", np.frombuffer(b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n", np.uint8))), "tokenizer.vocab"),
    ("not a model", os.path.join(tmp, "caps.tsv"), "caps.tsv"),
    ("no such file", os.path.join(tmp, "nope.safetensors"), "nope.safetensors"),
]
for what, path, why in models:
    p, recs, tr = run(["-q"], b"a\tA dog barks\n", model=path)
    e = p.stderr.decode()
    check("bad model: %s -> exit 2 naming it, nothing on stdout" % what,
          p.returncode == 2 and p.stdout == b"" and why in e and e.startswith("clap-text: "), e)

# ---------------------------------------------------------------- usage
for opts, why in [([], "model is required"), (["-m", MODEL, "--batch", "0"], "out of range"),
                  (["-m", MODEL, "a", "b"], "one input file"), (["-m", MODEL, "--threads", "x"], "not an integer")]:
    p = subprocess.run([tool("clap-text")] + opts, input=b"", capture_output=True)
    check("usage: %s -> exit 1" % " ".join(o if o != MODEL else "M" for o in opts),
          p.returncode == 1 and p.stdout == b"" and why in p.stderr.decode(), p.stderr.decode())

# ---------------------------------------------------------------- valgrind
if VALGRIND:
    small = lines([("a", "A dog barks."), ("b", ""), ("c", "Rain on a tin roof, then thunder")]) + b"\xff\n"
    p = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=all", "--error-exitcode=99",
                        tool("clap-text"), "-q", "-j", "2", "--batch", "2", "-m", MODEL], input=small,
                       capture_output=True)
    e = p.stderr.decode()
    check("valgrind --leak-check=full: no errors, no leaks (lines, 2 threads)",
          p.returncode == 3 and "ERROR SUMMARY: 0 errors" in e and "All heap blocks were freed" in e, e[-600:])
    p = subprocess.run(["valgrind", "--leak-check=full", "--errors-for-leak-kinds=all", "--error-exitcode=99",
                        tool("clap-text"), "-q", "--csv", "-m", MODEL], input=badcsv, capture_output=True)
    e = p.stderr.decode()
    check("valgrind --leak-check=full: no errors, no leaks (bad CSV)",
          p.returncode == 3 and "ERROR SUMMARY: 0 errors" in e and "All heap blocks were freed" in e, e[-600:])
    p = subprocess.run(["valgrind", "--leak-check=full", "--error-exitcode=99", tool("clap-text"), "-q", "-m",
                        models[0][1]], input=b"", capture_output=True)
    check("valgrind: a rejected model exits 2 without memory errors",
          p.returncode == 2 and "ERROR SUMMARY: 0 errors" in p.stderr.decode(), p.stderr.decode()[-400:])

shutil.rmtree(tmp, ignore_errors=True)
done()
