"""Every bad-input class, per tool: the observed outcome (exit status, first
message, what was written, peak memory), checked against the rules
(no crash, exit status per spec, messages prefixed with the tool name, bounded
memory) and rendered as docs/robustness.md. The committed table must equal
the generated one, so it stays true:
    /usr/bin/python3 tests/py/test_robustness.py --write   # regenerate it"""
import io
import os
import struct
import subprocess
import sys
import tempfile

import msgpack
import numpy as np
import soundfile as sf

from tap import ROOT, check, done, tool
import wsacstream as ws

WRITE = "--write" in sys.argv
tmp = tempfile.mkdtemp()
M = os.path.join(ROOT, "data", "models")
CLAP, DEC, MEM = (os.path.join(M, f) for f in ("clap-test.safetensors", "decoder-test.safetensors", "memory-test.mp"))
SAMPLE = os.path.join(ROOT, "tests", "data", "signals", "birdsong.flac")
RSS_LIMIT_MB = 400  # every case runs on the small test models; a bounded run stays far below


def path(name):
    return os.path.join(tmp, name)


def put(name, data):
    p = path(name)
    with open(p, "wb") as f:
        f.write(data)
    return p


def stream(records, trailer=True, extra=b""):
    b = io.BytesIO()
    ws.write_stream(b, "test", records, trailer=trailer)
    return b.getvalue() + extra


emb = lambda d=32, v=1.0: np.full(d, v / np.sqrt(d), np.float32)  # noqa: E731
good_mel = (np.random.default_rng(0).standard_normal((80, 64)) * 10 - 40).astype(np.float32)

# ---------------------------------------------------------------- inputs
sf.write(path("good.wav"), np.float32(0.1 * np.random.default_rng(1).standard_normal(32000)), 32000)
put("text.wav", b"this is not audio\n" * 20)
put("empty.wav", b"")
sf.write(path("short.wav"), np.zeros(200, np.float32), 32000)
sf.write(path("nan.wav"), np.array([0.1] * 2000 + [np.nan] * 10, np.float32), 32000, subtype="FLOAT")
raw = open(path("good.wav"), "rb").read()
put("truncated.wav", raw[: len(raw) // 3])
# a WAV header declaring a data chunk of ~4 GB (1e9 frames: 9 hours) over 100 bytes of data
put("huge-header.wav", b"RIFF" + struct.pack("<I", 0xFFFFFFF0) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 32000, 64000, 2, 16)
    + b"data" + struct.pack("<I", 0xFFFFFFE0) + b"\0" * 100)
# an RF64 header declaring 10^12 frames over 100 bytes of data
put("rf64-1e12.wav", b"RF64" + struct.pack("<I", 0xFFFFFFFF) + b"WAVE" + b"ds64" + struct.pack("<IQQQI", 28, 2 * 10**12 + 36,
    2 * 10**12, 10**12, 0) + b"fmt " + struct.pack("<IHHIIHH", 16, 1, 1, 32000, 64000, 2, 16) + b"data" + struct.pack("<I", 0xFFFFFFFF)
    + b"\0" * 100)
# ten hours of 16-bit 32 kHz silence, as a sparse file
ten = path("ten-hours.wav")
n10 = 10 * 3600 * 32000
with open(ten, "wb") as f:
    f.write(b"RIFF" + struct.pack("<I", 36 + 2 * n10) + b"WAVEfmt " + struct.pack("<IHHIIHH", 16, 1, 1, 32000, 64000, 2, 16)
            + b"data" + struct.pack("<I", 2 * n10))
    f.truncate(44 + 2 * n10)

good_stream = stream([{"key": "a", "emb": emb()}, {"key": "b", "emb": emb()}])
streams = {
    "empty input": b"",
    "garbage bytes": bytes(range(256)) * 4,
    "plain text": b"KEY\tsome caption\n",
    "cut short (no trailer)": stream([{"key": "a", "emb": emb()}], trailer=False),
    "truncated inside a record": good_stream[: len(good_stream) // 2],
    "declares 10^12 elements": stream([{"key": "big", "emb": {"dtype": "f32", "shape": [1000000, 1000000], "data": b"\0" * 8}},
                                       {"key": "ok", "emb": emb()}]),
    "declares a 3 GB bin, sends 8 bytes": stream([])[:-1][:0] + msgpack.packb(ws.header("t")) + b"\x82\xa3key\xa1x\xa3emb\xc6\xc0\x00\x00\x00" + b"\0" * 8,
    "wrong dtype": stream([{"key": "bad", "emb": {"dtype": "f17", "shape": [32], "data": b"\0" * 128}}, {"key": "ok", "emb": emb()}]),
    "no emb field": stream([{"key": "bad", "text": "x"}, {"key": "ok", "emb": emb()}]),
    "NaN in emb": stream([{"key": "bad", "emb": np.full(32, np.nan, np.float32)}, {"key": "ok", "emb": emb()}]),
    "wrong width": stream([{"key": "bad", "emb": emb(33)}, {"key": "ok", "emb": emb()}]),
    "invalid UTF-8 key": msgpack.packb(ws.header("t")) + msgpack.packb({"key": b"\xff\xfe", "emb": ws.encode_tensor(emb())}, use_bin_type=False)
    + ws.pack_record({"key": "ok", "emb": emb()}) + msgpack.packb({"end": True, "records": 2}),
}
mel_streams = {
    "NaN in mel": stream([{"key": "bad", "mel": np.full((80, 64), np.nan, np.float32)}, {"key": "ok", "mel": good_mel}]),
    "40 mel bands": stream([{"key": "bad", "mel": good_mel[:, :40].copy()}, {"key": "ok", "mel": good_mel}]),
    "too short (63 frames)": stream([{"key": "bad", "mel": good_mel[:63].copy()}, {"key": "ok", "mel": good_mel}]),
}
models = {
    "missing model file": path("nope.safetensors"),
    "text file as model": put("text.safetensors", b"hello world, not a model\n"),
    "truncated model": put("trunc.safetensors", open(CLAP, "rb").read()[:100000]),
    "100 MB header": None,
}
p100 = path("h100.safetensors")
with open(p100, "wb") as f:
    f.write(struct.pack("<Q", 100000000))
    f.truncate(8 + 100000000 + 16)
models["100 MB header"] = p100
captions = {
    "empty caption": b"k1\t\nk2\ta dog barks\n",
    "invalid UTF-8": b"k1\ta \xff\xfe dog\nk2\ta dog barks\n",
    "NUL byte": b"k1\ta \x00 dog\nk2\ta dog barks\n",
    "1 MB caption": b"k1\t" + b"word " * 200000 + b"\nk2\ta dog barks\n",
    "2 MB line": b"k1\t" + b"x" * (2 << 20) + b"\nk2\ta dog barks\n",
}
csvs = {
    "CSV row with a missing field": b"file_name,caption_1,caption_2\na.wav,one,two\nb.wav,only one\nc.wav,x,y\n",
    "unknown CSV header": b"name,text\na,b\n",
    "unterminated quote": b'file_name,caption_1\na.wav,"never closed\n',
}

# ---------------------------------------------------------------- running
rows = []


def run(tool_name, case, args, stdin=b"", want=(2,), kind="stream"):
    cmd = ["/usr/bin/time", "-f", "%M", "-o", path("rss"), tool(tool_name.split()[0])] + tool_name.split()[1:] + args
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=120)
    rss = int(open(path("rss")).read().split()[-1]) / 1024 if os.path.exists(path("rss")) else -1
    err = p.stderr.decode(errors="replace").splitlines()
    first = next((l for l in err if "error" in l or "failed" in l.split(":", 1)[-1] or l.count(":") >= 2), err[0] if err else "")
    if kind == "stream":
        try:
            _, recs, tr = ws.read_stream(io.BytesIO(p.stdout))
            out = "%d record%s, %s" % (len(recs), "" if len(recs) == 1 else "s", "trailer" if tr else "no trailer")
        except Exception:  # noqa: BLE001 - output unreadable
            out = "%d bytes" % len(p.stdout)
    else:
        n = p.stdout.count(b"\n")
        out = "%d line%s" % (n, "" if n == 1 else "s")
    name = tool_name.split()[0]
    ok_prefix = all(l.startswith(name + ":") or l.startswith("Try '") for l in err)
    good = p.returncode in want and ok_prefix and rss < RSS_LIMIT_MB
    check("%s: %s -> exit %s, prefixed messages, %.0f MB" % (tool_name, case, "/".join(map(str, want)), rss), good,
          "exit %d, rss %.0f MB: %s" % (p.returncode, rss, "\n".join(err[:4])))
    first = first.replace("|", "/").replace(tmp + "/", "").replace(tmp, "DIR").replace(os.path.basename(tmp), "DIR")
    first = first.replace(ROOT + "/", "")  # before truncating: the clone's path length must not change the text
    if len(first) > 110:
        first = first[:107] + "..."
    rows.append((tool_name, case, p.returncode, first, out, rss))


for case, f in [("nonexistent file", path("missing.wav")), ("a directory", tmp), ("text file", path("text.wav")),
                ("empty file", path("empty.wav")), ("too short (200 samples)", path("short.wav")),
                ("NaN samples", path("nan.wav")), ("header declares 9 hours, 100 bytes follow", path("huge-header.wav")),
                ("RF64 header declares 10^12 frames", path("rf64-1e12.wav")), ("ten-hour file (sparse)", ten)]:
    run("wav2mel", case, ["-q", path("good.wav"), f], want=(3,))
run("wav2mel", "truncated WAV (a third of it)", ["-q", path("truncated.wav")], want=(0,))
run("wav2mel", "list line of 2 MB", ["-q"], stdin=path("good.wav").encode() + b"\n" + b"x" * (2 << 20) + b"\n", want=(3,))
run("wav2mel", "unknown option", ["--frobnicate"], want=(1,))
run("wav2mel", "bad value", ["--hop", "0"], want=(1,))
for t in ("wsac-cat", "nnproj -M %s --method pd" % MEM, "gapshift apply", "prefixdec decode -m %s" % DEC):
    kind = "lines" if t.startswith("prefixdec") else "stream"
    for case, data in streams.items():
        fatal = case in ("empty input", "garbage bytes", "plain text", "cut short (no trailer)", "truncated inside a record",
                         "declares a 3 GB bin, sends 8 bytes")
        want = (2,) if fatal else ((3,) if not t.startswith("wsac-cat") or case in (
            "declares 10^12 elements", "wrong dtype", "invalid UTF-8 key") else (0,))
        if t.startswith("wsac-cat") and case in ("no emb field", "NaN in emb", "wrong width"):
            want = (0,)  # wsac-cat does not look inside fields
        if t == "gapshift apply" and case == "wrong width":
            want = (0,)  # without --gap any width can be normalised
        if t.startswith("prefixdec") and case == "wrong width":
            want = (2,)  # issue 4: a wrong embedding width is fatal (the model fixes it)
        run(t, case, ["-q"], stdin=data, want=want, kind=kind)
for case, data in mel_streams.items():
    run("clap-audio -m %s" % CLAP, case, ["-q"], stdin=data, want=(3,))
run("clap-audio -m %s" % CLAP, "garbage bytes", ["-q"], stdin=streams["garbage bytes"])
for case, m in models.items():
    run("clap-audio", case, ["-q", "-m", m], stdin=stream([{"key": "ok", "mel": good_mel}]))
    run("clap-text", case, ["-q", "-m", m], stdin=b"k\ta dog\n")
    run("prefixdec", case, ["decode", "-q", "-m", m], stdin=good_stream, kind="lines")
run("clap-audio", "a decoder file as the model", ["-q", "-m", DEC], stdin=stream([{"key": "ok", "mel": good_mel}]))
run("prefixdec", "a CLAP file as the model", ["decode", "-q", "-m", CLAP], stdin=good_stream, kind="lines")
for case, data in captions.items():
    run("clap-text -m %s" % CLAP, case, ["-q"], stdin=data, want=(0,) if case == "1 MB caption" else (3,))
for case, data in csvs.items():
    run("clap-text -m %s" % CLAP, case, ["-q", "--csv"], stdin=data, want=(2,) if "header" in case else (3,))
refs = put("refs.csv", b"file_name,caption_1,caption_2\na.wav,a dog barks,a dog is barking\nb.wav,\"rain, heavy\"\nc.wav,wind,the wind blows\n")
run("score caption --refs %s" % refs, "malformed reference row", ["-q"], stdin=b"a.wav\ta dog barks\nc.wav\twind\n", want=(3,), kind="lines")
run("score caption --refs %s" % refs, "candidate keys missing from the references", ["-q"], stdin=b"a.wav\ta dog\nzz.wav\tx\n",
    want=(3,), kind="lines")
run("score caption --refs %s" % refs, "invalid UTF-8 candidate", ["-q"], stdin=b"a.wav\ta \xff dog\n", want=(3,), kind="lines")
run("score caption --refs %s" % refs, "no candidates at all", ["-q"], stdin=b"", want=(2,), kind="lines")
run("score caption", "missing references file", ["--refs", path("nope.csv"), "-q"], stdin=b"a\tb\n", kind="lines")

# ---------------------------------------------------------------- the table
lines = ["# Robustness table", "",
         "Generated by `tests/py/test_robustness.py --write` from the cases that test runs (the test fails if this",
         "file is stale). Every case runs on the bundled test models; \"peak\" is the tool's peak resident memory.",
         "Exit statuses: 0 all processed, 1 usage, 2 fatal (nothing more processed; a stream output then has no",
         "trailer, so it reads as incomplete downstream), 3 some records failed (named; the others written).", "",
         "| tool | bad input | exit | first message | written | peak |", "|---|---|---|---|---|---|"]
for t, case, rc, first, out, rss in rows:
    t = t.replace(tmp + "/", "").replace(ROOT + "/", "")
    t = " ".join(os.path.basename(w) if "/" in w else w for w in t.split())
    lines.append("| `%s` | %s | %d | %s | %s | %.0f MB |" % (t, case, rc, first.replace("`", "'"), out, rss))
table = "\n".join(lines) + "\n"
doc = os.path.join(ROOT, "docs", "robustness.md")
if WRITE:
    open(doc, "w").write(table)
# memory figures vary by a few MB between machines: compare the table without them
strip = lambda s: "\n".join(l.rsplit("|", 2)[0] for l in s.splitlines())  # noqa: E731
old = strip(open(doc).read()) if os.path.exists(doc) else ""
stale = [(a, b) for a, b in zip(old.splitlines(), strip(table).splitlines()) if a != b]
check("docs/robustness.md is up to date (regenerate with --write)", old == strip(table),
      "\n".join("committed: %s\ngenerated: %s" % ab for ab in stale[:3]) or "line count differs")
done()
