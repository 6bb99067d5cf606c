"""Migration from the published code: each file a WSAC or SALSA user already
has, built here in its published format, goes into wsac with the one command
README's table gives (README "Coming from WSAC or SALSA").

  * WSAC data/csv2json.py's caption lists -> clap-text --json (training
    text, nnproj -M memory, prefixdec train); header strings named, skipped;
  * train.py --modality_gap_path (a pickled torch tensor; also a numpy
    array, .npy, torch.save) -> convert.py gap -> prefixdec train --gap;
    pickles that would run code are refused unexecuted;
  * SALSA cmd_generate_embeddings' {audio path: tensor} / {caption: tensor}
    .pt files -> convert.py teacher -> streams shaped as clap-audio /
    clap-text write them, keyed as wav2mel keys the clips.

Fixtures: tests/data/migration/ (a small ClothoV2 captions CSV); the rest is
made here. Nothing under ../shared is read."""
import atexit
import copy
import csv
import io
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
import zipfile

import numpy as np
import soundfile as sf
import torch

from tap import ROOT, check, done, note, tool
import wsacstream

tmp = tempfile.mkdtemp(prefix="wsac-mig-")
atexit.register(shutil.rmtree, tmp, True)
DATA = os.path.join(ROOT, "tests", "data", "migration")
CSV = os.path.join(DATA, "clotho_captions_development.csv")
CLAP = os.path.join(ROOT, "data", "models", "clap-test.safetensors")
DEC = os.path.join(ROOT, "data", "models", "decoder-test.safetensors")
CONV = [sys.executable, os.path.join(ROOT, "scripts", "convert.py")]
MARK = os.path.join(tmp, "PWNED")


def path(name):
    return os.path.join(tmp, name)


def run(cmd, stdin=None):
    r = subprocess.run([str(c) for c in cmd], input=stdin, capture_output=True)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


def stream(data):
    return wsacstream.read_stream(io.BytesIO(data))


def read(p):
    with open(p, "rb") as f:
        return wsacstream.read_stream(f)


# ------------------------------------------------------------------ WSAC's csv2json lists

def csv2json_clotho(csv_path, out):
    """data/csv2json.py's Clotho rule: row[1:] of every row, the header row included."""
    captions = []
    with open(csv_path, "r") as f:
        for row in csv.reader(f):
            captions += row[1:]
    with open(out, "w") as f:
        json.dump(captions, f)
    return captions


def csv2json_audiocaps(csv_path, out):
    """csv2json.py's AudioCaps rule: row[1] of every row, the header row included."""
    captions = []
    with open(csv_path, "r") as f:
        for row in csv.reader(f):
            captions.append(row[1])
    with open(out, "w") as f:
        json.dump(captions, f)
    return captions


rows = list(csv.reader(open(CSV)))
csv_caps = [c for r in rows[1:] for c in r[1:]]
clotho_json = path("clotho.json")
listed = csv2json_clotho(CSV, clotho_json)
check("fixture: csv2json's clotho.json starts with the 5 header strings",
      listed[:5] == ["caption_%d" % i for i in range(1, 6)] and listed[5:] == csv_caps)

rc, out, err = run([tool("clap-text"), "-m", CLAP, "--json", clotho_json])
hdr, recs, trl = stream(out)
check("clap-text --json clotho.json: exit 3 (the header strings failed), the captions written", rc == 3, err)
check("clap-text --json: each header string named on stderr with its key, as the published bug",
      all(("%d: \"caption_%d\" is a CSV header string" % (i, i + 1)) in err for i in range(5))
      and "csv2json.py" in err and "5 csv2json header strings skipped" in err, err)
check("clap-text --json: no header string embedded; the trailer lists keys 0..4",
      trl and trl["failed"] == ["0", "1", "2", "3", "4"] and trl["errors"] == 5
      and not any(r["text"].startswith("caption_") for r in recs), trl)
check("clap-text --json: key = the list index (Python's data[i]), text = the entry exactly",
      [r["key"] for r in recs] == [str(i) for i in range(5, 5 + len(csv_caps))]
      and [r["text"] for r in recs] == csv_caps)
check("clap-text --json: header says input json", hdr["params"].get("input") == "json", hdr)

rc2, out2, err2 = run([tool("clap-text"), "-m", CLAP, "--csv", CSV])
_, recs_csv, _ = stream(out2)
check("clap-text --json gives the embeddings --csv gives for the same captions (bit for bit)",
      rc2 == 0 and len(recs_csv) == len(recs)
      and all(a["text"] == b["text"] and np.array_equal(a["emb"], b["emb"]) for a, b in zip(recs, recs_csv)), err2)
text_mp = path("text.mp")
open(text_mp, "wb").write(out)

rc, out_k, err_k = run([tool("clap-text"), "-m", CLAP, "--json", "--keep-header", clotho_json])
_, recs_k, trl_k = stream(out_k)
check("clap-text --json --keep-header: embeds the header strings as WSAC did (exit 0), still naming them",
      rc == 0 and [r["text"] for r in recs_k] == listed and trl_k["errors"] == 0
      and err_k.count("is a CSV header string") == 5, err_k)

# AudioCaps: WavCaps' file_name,caption copy gives "caption"; the official CSV gives YouTube ids
ac = path("audiocaps_train.csv")
with open(ac, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["file_name", "caption"])
    w.writerow(["Y7fmOlUlwoNg.wav", "Constant rattling noise and sharp vibrations"])
    w.writerow(["Y6BJ455B1aAs.wav", "A rocket flies by followed by a loud explosion"])
ac_json = path("audiocaps.json")
csv2json_audiocaps(ac, ac_json)
rc, out, err = run([tool("clap-text"), "-m", CLAP, "--json", ac_json])
_, r_ac, t_ac = stream(out)
check("clap-text --json audiocaps.json (WavCaps layout): header string \"caption\" skipped, 2 captions",
      rc == 3 and [r["text"] for r in r_ac] == ["Constant rattling noise and sharp vibrations",
                                                 "A rocket flies by followed by a loud explosion"]
      and t_ac["failed"] == ["0"] and '"caption" is a CSV header string' in err, err)
ac2 = path("audiocaps_official.csv")
with open(ac2, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["audiocap_id", "youtube_id", "start_time", "caption"])
    w.writerow(["91139", "r1nicOVtvkQ", "130", "A woman talks nearby as water pours"])
ac2_json = path("audiocaps_official.json")
csv2json_audiocaps(ac2, ac2_json)
rc, out, err = run([tool("clap-text"), "-m", CLAP, "--json", ac2_json])
check("clap-text --json on csv2json's list from the official AudioCaps CSV (YouTube ids): refused, exit 2",
      rc == 2 and "YouTube id" in err and "--csv" in err, err)

bad = path("bad.json")
for name, text, want in [("an object", '{"a.wav": ["x"]}', "not a list"),
                         ("malformed JSON", '["a", "b"', "not valid JSON"),
                         ("a bare string", '"a dog"', "not valid JSON")]:
    open(bad, "w").write(text)
    rc, out, err = run([tool("clap-text"), "-m", CLAP, "--json", bad])
    check("clap-text --json: %s is fatal (exit 2) and says why" % name, rc == 2 and want in err, err)
open(bad, "w").write('["a dog barks", 3, null, "x\\u0000y", ["nested"], "rain falls"]')
rc, out, err = run([tool("clap-text"), "-m", CLAP, "--json", bad])
_, r_bad, t_bad = stream(out)
check("clap-text --json: entries that are not strings, or hold NUL, fail by themselves (exit 3), named",
      rc == 3 and [r["key"] for r in r_bad] == ["0", "5"] and t_bad["failed"] == ["1", "2", "3", "4"]
      and "entry 1 is a number" in err and "entry 4 is a list" in err and "NUL" in err, err)
rc, _, err = run([tool("clap-text"), "-m", CLAP, "--json", "--csv", bad])
check("clap-text: --json with --csv, or --keep-header without --json, is a usage error (exit 1)",
      rc == 1 and run([tool("clap-text"), "-m", CLAP, "--keep-header", bad])[0] == 1, err)
rc, out, err = run([tool("clap-text"), "-m", CLAP, "--json"], stdin=open(clotho_json, "rb").read())
check("clap-text --json reads stdin too", rc == 3 and len(stream(out)[1]) == len(csv_caps), err)

# the memory of evaluation.py --mem data/clotho.json: nnproj -M
audio_recs = [{"key": "clip%d.wav" % i, "emb": r["emb"]} for i, r in enumerate(recs_csv[::5])]
audio_mp = path("audio.mp")
with open(audio_mp, "wb") as f:
    wsacstream.write_stream(f, "clap-audio", audio_recs)
rc, out, err = run([tool("nnproj"), "-q", "-M", text_mp, "--method", "nnd"], stdin=open(audio_mp, "rb").read())
_, nn, _ = stream(out)
check("nnproj -M (a clap-text --json memory) --method nnd: each clip finds its own caption, never a header string",
      rc == 0 and [r.get("nn_key") for r in nn] == [str(5 + 5 * i) for i in range(len(audio_recs))]
      and all(np.allclose(a["emb"], b["emb"], atol=1e-6) for a, b in zip(nn, audio_recs)), err)
rc, out_pd, err = run([tool("nnproj"), "-q", "-M", text_mp, "--method", "pd"], stdin=open(audio_mp, "rb").read())
check("nnproj -M (clap-text --json memory) --method pd runs", rc == 0 and len(stream(out_pd)[1]) == len(audio_recs), err)

rc, _, err = run([tool("score"), "caption", "--refs", clotho_json], stdin=b"0\ta dog barks\n")
check("score caption --refs clotho.json: refused (a caption list names no audio), exit 2, saying so",
      rc == 2 and "names no audio" in err, err)

# ------------------------------------------------------------------ train.py --modality_gap_path

E = recs[0]["emb"].shape[0]
g = torch.randn(1, E, generator=torch.Generator().manual_seed(5)) * 0.1
gap_pkl = path("modality_gap.pkl")
with open(gap_pkl, "wb") as f:
    pickle.dump(g, f)
with open(gap_pkl, "rb") as f:  # what train.py does with it
    check("fixture: the gap pickle loads as train.py loads it (pickle.load -> a torch tensor)",
          torch.equal(pickle.load(f), g))


def convert_gap(src, out):
    if os.path.exists(out):
        os.remove(out)
    rc, _, err = run(CONV + ["gap", src, "-o", out])
    return rc, err, (read(out) if rc == 0 else (None, [], None))


gap_mp = path("gap.mp")
rc, err, (gh, gr, gt) = convert_gap(gap_pkl, gap_mp)
check("convert.py gap: a pickled torch tensor [1, E] -> a gap stream",
      rc == 0 and len(gr) == 1 and gr[0]["key"] == "gap" and gt["records"] == 1, err)
check("convert.py gap: \"emb\" is the vector as it is (f32, not normalised)",
      rc == 0 and gr[0]["emb"].dtype == np.float32 and gr[0]["emb"].shape == (E,)
      and np.array_equal(gr[0]["emb"], g.numpy().reshape(-1)), err)
check("convert.py gap: the header names the source kind", rc == 0 and gh["params"]["source_kind"] == "pickled torch tensor", gh)

variants = {
    "fp16 tensor [E]": lambda p: pickle.dump(g.reshape(-1).half(), open(p, "wb")),
    "tensor, pickle protocol 2": lambda p: pickle.dump(g, open(p, "wb"), protocol=2),
    "tensor, pickle protocol 5": lambda p: pickle.dump(g, open(p, "wb"), protocol=5),
    "nn.Parameter": lambda p: pickle.dump(torch.nn.Parameter(g.clone()), open(p, "wb")),
    "a view with a storage offset": lambda p: pickle.dump(torch.cat([g, g * 2], 1)[0, E:], open(p, "wb")),
    "numpy array": lambda p: pickle.dump(g.numpy(), open(p, "wb")),
    "numpy float64, protocol 2": lambda p: pickle.dump(g.numpy().astype(np.float64), open(p, "wb"), protocol=2),
    "numpy array, pickle protocol 5": lambda p: pickle.dump(g.numpy(), open(p, "wb"), protocol=5),
    ".npy": lambda p: np.save(p, g.numpy()),
    "torch.save (zip)": lambda p: torch.save(g, p),
    "torch.save (legacy format)": lambda p: torch.save(g, p, _use_new_zipfile_serialization=False),
}
for name, make in variants.items():
    p = path("gap-variant" + (".npy" if name == ".npy" else ".pkl"))
    make(p)
    want = {"fp16 tensor [E]": g.reshape(-1).half().float().numpy(),
            "a view with a storage offset": (g * 2).numpy().reshape(-1)}.get(name, g.numpy().reshape(-1))
    rc, err, (_, gv, _) = convert_gap(p, path("gap-variant.mp"))
    check("convert.py gap: %s" % name, rc == 0 and np.array_equal(gv[0]["emb"], want.astype(np.float32)), err)

# a pickle that would run code: refused, and it did not run
marker_cmd = "touch %s" % MARK


class Evil:
    def __reduce__(self):
        return (os.system, (marker_cmd,))


class EvilEval:
    def __reduce__(self):
        return (eval, ("__import__('os').system(%r)" % marker_cmd,))


evil = {
    "os.system pickle": lambda p: pickle.dump(Evil(), open(p, "wb")),
    "builtins.eval pickle": lambda p: pickle.dump(EvilEval(), open(p, "wb")),
    "a tensor inside a list with os.system": lambda p: pickle.dump([g, Evil()], open(p, "wb")),
    "torch.save (zip) holding os.system": lambda p: torch.save({"gap": g, "x": Evil()}, p),
    "torch.save (legacy) holding os.system": lambda p: torch.save([Evil()], p, _use_new_zipfile_serialization=False),
}
for name, make in evil.items():
    p = path("evil.pkl")
    make(p)
    rc, err, _ = convert_gap(p, path("evil.mp"))
    check("convert.py gap: %s refused unexecuted (exit 2, a clear message, no marker, no output)" % name,
          rc == 2 and "refused" in err and ("system" in err or "eval" in err) and "nothing was run" in err
          and not os.path.exists(MARK) and not os.path.exists(path("evil.mp")), err)
# a zip .pt whose storage payload is a pickle that would run code: read as bytes, never unpickled
p = path("evil-storage.pt")
torch.save(g, p)
with zipfile.ZipFile(p) as z:
    entries = {n: z.read(n) for n in z.namelist()}
for n in entries:
    if "/data/" in n:
        entries[n] = pickle.dumps(Evil())[:len(entries[n])].ljust(len(entries[n]), b"\0")
with zipfile.ZipFile(p, "w") as z:
    for n, b in entries.items():
        z.writestr(n, b)
rc, err, _ = convert_gap(p, path("evil.mp"))
check("convert.py gap: storage bytes are data, never unpickled", not os.path.exists(MARK), err)

for name, make, want in [
        ("a dict", lambda p: pickle.dump({"gap": g}, open(p, "wb")), "not a tensor"),
        ("a [2, E] tensor", lambda p: pickle.dump(torch.zeros(2, E), open(p, "wb")), "not a vector"),
        ("an integer tensor", lambda p: pickle.dump(torch.zeros(E, dtype=torch.int64), open(p, "wb")), "floating"),
        ("a numpy array of Python objects", lambda p: pickle.dump(np.array([1.0, "x"], dtype=object), open(p, "wb")),
         "objects"),
        ("a NaN", lambda p: pickle.dump(torch.full((E,), float("nan")), open(p, "wb")), "NaN"),
        ("not a pickle", lambda p: open(p, "w").write("gap = [0.1, 0.2]\n"), "not a readable pickle"),
        ("a truncated pickle", lambda p: open(p, "wb").write(pickle.dumps(g)[:40]), "not a readable pickle")]:
    p = path("gap-bad.pkl")
    make(p)
    rc, err, _ = convert_gap(p, path("gap-bad.mp"))
    check("convert.py gap: %s is refused with a reason (exit 2)" % name, rc == 2 and want in err, err)
check("convert.py gap: never imports torch (the tensor is rebuilt with numpy)",
      "import torch" not in open(os.path.join(ROOT, "scripts", "safepickle.py")).read())

# train.py --modality_gap_path X --noise V  ==  prefixdec train --gap gap.mp --noise V
rc, _, err = run([tool("prefixdec"), "train", text_mp, "--init", DEC, "--gap", gap_mp, "--noise", "0.013",
                  "--epochs", "1", "--bs", "4", "-j", "1", "-q", "-o", path("es.safetensors")])
check("prefixdec train --gap (convert.py gap output) on a clap-text --json stream: trains "
      "(exit 3: the header strings failed upstream)", rc == 3 and os.path.exists(path("es.safetensors"))
      and "failed upstream" in err and "error" not in err, err)

# ------------------------------------------------------------------ SALSA's generated embeddings

D = 24
files = [r[0] for r in rows[1:]]
salsa_dir = path("model_checkpoints/mild-mountain-1")
os.makedirs(salsa_dir)
gen = torch.Generator().manual_seed(11)
audio_emb, sentence_emb = {}, {}
items = [(os.path.join("/data", "clotho_v2", "development", f), rows[1 + i][1 + j])
         for i, f in enumerate(files) for j in range(5)]
l = len("/data".split(os.path.sep))
for b0 in range(0, len(items), 8):  # cmd_generate_embeddings: batches of projected fp16 embeddings
    batch = items[b0:b0 + 8]
    a = (torch.randn(len(batch), 1, D, generator=gen) * 3).half()
    s = (torch.randn(len(batch), 1, D, generator=gen) * 3).half()
    for i, (p, cap) in enumerate(batch):
        p = os.path.sep.join(p.split(os.path.sep)[l:])  # remove dataset dir, as SALSA does
        audio_emb[p] = copy.deepcopy(a[i, 0].detach().cpu())
        sentence_emb[cap] = copy.deepcopy(s[i, 0].detach().cpu().clone())
a_pt = os.path.join(salsa_dir, "clothov2_audio_embeddings_train.pt")
s_pt = os.path.join(salsa_dir, "clothov2_sentence_embeddings_train.pt")
torch.save(sentence_emb, s_pt)
torch.save(audio_emb, a_pt)
check("fixture: SALSA's dictionaries, keys and sizes as cmd_generate_embeddings writes them",
      len(audio_emb) == len(files) and len(sentence_emb) == len(set(csv_caps)) < len(csv_caps)
      and all(k.startswith("clotho_v2/development/") for k in audio_emb))

prefix = path("teacher-a")
rc, _, err = run(CONV + ["teacher", a_pt, s_pt, "-o", prefix])
check("convert.py teacher: SALSA's pair -> PREFIX.audio.mp and PREFIX.text.mp (exit 0)",
      rc == 0 and os.path.exists(prefix + ".audio.mp") and os.path.exists(prefix + ".text.mp")
      and "--teacher %s.audio.mp,%s.text.mp" % (prefix, prefix) in err, err)
ah, ar, at = read(prefix + ".audio.mp")
th, tr, tt = read(prefix + ".text.mp")


def salsa_norm(v):
    x = v.double()
    return (x / x.norm()).float().numpy()


check("convert.py teacher: audio keys = file names (as wav2mel keys the clips), SALSA's path kept in \"path\"",
      [r["key"] for r in ar] == files and [r["path"] for r in ar] == list(audio_emb))
check("convert.py teacher: one text record per distinct caption, \"text\" = SALSA's key exactly, in its order",
      [r["text"] for r in tr] == list(sentence_emb) and [r["key"] for r in tr] == [str(i) for i in range(len(tr))])
check("convert.py teacher: \"emb\" f32 [D], L2-normalised from the fp16 vectors (float64 arithmetic)",
      all(r["emb"].dtype == np.float32 and r["emb"].shape == (D,) for r in ar + tr)
      and all(np.array_equal(r["emb"], salsa_norm(audio_emb[r["path"]])) for r in ar)
      and all(np.array_equal(r["emb"], salsa_norm(sentence_emb[r["text"]])) for r in tr))
check("convert.py teacher: headers and trailers as a wsac stream (teacher = SALSA's run name, modality, keys)",
      ah["params"]["modality"] == "audio" and th["params"]["modality"] == "text"
      and ah["params"]["teacher"] == "mild-mountain-1" and ah["params"]["embed_dim"] == D
      and at["records"] == len(ar) and tt["records"] == len(tr) and at["errors"] == tt["errors"] == 0)

# every item of the training CSV finds its teacher vectors the way clap-train matches them:
# audio by the mel record's key (wav2mel's key), caption by "text" (clap-text --csv's text)
wav_dir = path("clotho_v2/development")
os.makedirs(wav_dir)
for i, f in enumerate(files):  # 0.7 s: long enough for the test CLAP's 6 poolings, if clap-train runs below
    tone = 0.1 * np.sin(2 * np.pi * (220 + 110 * i) * np.arange(22400) / 32000)
    sf.write(os.path.join(wav_dir, f), tone.astype(np.float32), 32000, subtype="PCM_16")
rc, mel, err = run([tool("wav2mel"), "-q"] + [os.path.join(wav_dir, f) for f in files])
_, mel_recs, _ = stream(mel)
akeys = {r["key"]: r for r in ar}
texts = {r["text"]: r for r in tr}
check("teacher audio records match wav2mel's keys of the ClothoV2 folder (clotho_v2/development/*.wav)",
      rc == 0 and [r["key"] for r in mel_recs] == files and all(r["key"] in akeys for r in mel_recs), err)
check("teacher text records match every clap-text --csv caption; the duplicates share one vector",
      all(r["text"] in texts for r in recs_csv)
      and len({r["text"] for r in recs_csv}) == len(tr) == len(csv_caps) - 2)
ae = np.stack([akeys[f]["emb"] for f in files])
se = np.stack([texts[c]["emb"] for c in csv_caps])
A = torch.stack([audio_emb["clotho_v2/development/" + f] for f in files]).float()
S = torch.stack([sentence_emb[c] for c in csv_caps]).float()
ref = torch.nn.functional.normalize(A, dim=-1) @ torch.nn.functional.normalize(S, dim=-1).T
diff = float(np.abs(ae @ se.T - ref.numpy()).max())
note("teacher cosines (converted streams vs SALSA's normalize-then-matmul in fp32): max |diff| %.2e" % diff)
check("the correspondences SALSA estimates from the .pt files (cosine of normalised vectors) are the "
      "converted streams' dot products", diff < 1e-6, diff)

# the same from legacy torch.save files, and with --keep-path
torch.save(audio_emb, path("legacy_a.pt"), _use_new_zipfile_serialization=False)
torch.save(sentence_emb, path("legacy_s.pt"), _use_new_zipfile_serialization=False)
rc, _, err = run(CONV + ["teacher", path("legacy_a.pt"), path("legacy_s.pt"), "-o", path("legacy"), "--name", "t"])
ok = rc == 0 and all(np.array_equal(x["emb"], y["emb"]) for x, y in zip(read(path("legacy.audio.mp"))[1], ar)) \
    and [r["text"] for r in read(path("legacy.text.mp"))[1]] == [r["text"] for r in tr]
check("convert.py teacher: legacy torch.save files give the same streams", ok, err)
rc, _, err = run(CONV + ["teacher", a_pt, s_pt, "-o", path("kp"), "--keep-path"])
check("convert.py teacher --keep-path: audio keyed by SALSA's path",
      rc == 0 and [r["key"] for r in read(path("kp.audio.mp"))[1]] == list(audio_emb), err)

# refusals
dup = {"a/x.wav": audio_emb[next(iter(audio_emb))], "b/x.wav": audio_emb[next(iter(audio_emb))]}
torch.save(dup, path("dup.pt"))
rc, _, err = run(CONV + ["teacher", path("dup.pt"), s_pt, "-o", path("dup")])
check("convert.py teacher: two paths with one file name are refused unless --keep-path", rc == 2 and "--keep-path" in err, err)
rc, _, err = run(CONV + ["teacher", s_pt, a_pt, "-o", path("swap")])
check("convert.py teacher: the two files swapped are refused, saying which is which", rc == 2 and "audio" in err, err)
torch.save({k: v for k, v in list(sentence_emb.items())[:3]} | {"evil": Evil()}, path("evil_s.pt"))
rc, _, err = run(CONV + ["teacher", a_pt, path("evil_s.pt"), "-o", path("evil")])
check("convert.py teacher: a .pt holding a code-running pickle is refused unexecuted",
      rc == 2 and "nothing was run" in err and not os.path.exists(MARK) and not os.path.exists(path("evil.text.mp")), err)
zero = dict(sentence_emb)
zero[next(iter(zero))] = torch.zeros(D).half()
torch.save(zero, path("zero_s.pt"))
rc, _, err = run(CONV + ["teacher", a_pt, path("zero_s.pt"), "-o", path("zero")])
zt = read(path("zero.text.mp"))[2] if rc != 2 else None
check("convert.py teacher: a zero vector cannot be normalised: named, skipped, listed (exit 3)",
      rc == 3 and zt and zt["failed"] == ["0"], err)

# clap-train --teacher: pending that tool (README); run when it is there
ct = tool("clap-train")
if os.access(ct, os.X_OK) and "--teacher" in run([ct, "--help"])[1].decode("utf-8", "replace"):
    cap_tsv = path("captions.tsv")
    with open(cap_tsv, "w") as f:
        for i, fn in enumerate(files):
            for c in rows[1 + i][1:]:
                f.write("%s\t%s\n" % (fn, c))
    open(path("mel.mp"), "wb").write(mel)
    note("clap-train present: running it with the converted teacher (stage 2 of SALSA)")
    rc, _, err = run([ct, "--init", CLAP, "--mel", path("mel.mp"), "--captions", CSV, "--teacher",
                      "%s.audio.mp,%s.text.mp" % (prefix, prefix), "--loss-weight", "0", "--distill-weight", "1",
                      "--epochs", "1", "--bs", "4", "-j", "1", "-o", path("student.safetensors")])
    check("clap-train --teacher takes convert.py teacher's streams", rc == 0, err)
else:
    note("clap-train is not built: the end-to-end --teacher run is pending that tool")

# README: one table maps the published commands and flags
readme = open(os.path.join(ROOT, "README.md")).read()
check("README maps the published commands and flags",
      all(s in readme for s in ["csv2json.py", "--modality_gap_path", "--mem", "--eval_dir", "--method", "--warmup",
                                "cmd_generate_embeddings", "distill_from", "cmd_test_on_clothov2",
                                "clap-text -m clap.safetensors --json", "convert.py gap", "convert.py teacher"]))
done()
