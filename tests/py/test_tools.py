"""wsac-cmp, wsac-dump and wsac-cat behaviour: tolerances, keys, exit statuses."""
import io
import json
import os
import subprocess
import tempfile

import numpy as np

from tap import check, done, tool
import wsacstream as ws

tmp = tempfile.mkdtemp()
rng = np.random.default_rng(1)
base = [{"key": "k%d" % i, "emb": rng.standard_normal(16).astype(np.float32), "text": "caption %d" % i}
        for i in range(5)]


def stream(name, records, **kw):
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        ws.write_stream(f, "test", records, **kw)
    return path


def cmp(*args):
    p = subprocess.run([tool("wsac-cmp")] + list(args), capture_output=True)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


a = stream("a.mp", base)
same = stream("same.mp", list(reversed(base)))
rc, out, err = cmp(a, same)
check("wsac-cmp: same records in another order agree (exit 0)", rc == 0 and "streams agree" in err, err)
check("wsac-cmp: reports max |a-b| per field", "# emb: max |a-b| 0" in out, out)

nudged = [dict(r, emb=r["emb"] + np.float32(1e-5)) for r in base]
b = stream("b.mp", nudged)
rc, out, _ = cmp(a, b)
check("wsac-cmp: exact by default: a 1e-5 change differs (exit 3)", rc == 3 and "k0\temb: 16 of 16 elements differ" in out, out)
rc, out, _ = cmp("--atol", "2e-5", a, b)
check("wsac-cmp: --atol 2e-5 accepts it", rc == 0, out)
rc, out, _ = cmp("--rtol", "1e-9", a, b)
check("wsac-cmp: a tiny --rtol does not", rc == 3, out)
rc, out, _ = cmp("--fields", "text", a, b)
check("wsac-cmp: --fields text ignores the embeddings", rc == 0, out)

missing = stream("missing.mp", base[:3] + [dict(base[3], key="extra")])
rc, out, _ = cmp(a, missing)
check("wsac-cmp: keys on one side only are listed by name",
      rc == 3 and "k3\tonly in A" in out and "k4\tonly in A" in out and "extra\tonly in B" in out, out)
shape = stream("shape.mp", [dict(base[0], emb=base[0]["emb"][:8])] + base[1:])
rc, out, _ = cmp(a, shape)
check("wsac-cmp: different shapes differ", rc == 3 and "k0\temb: shapes differ" in out, out)
text = stream("text.mp", [dict(base[0], text="other")] + base[1:])
rc, out, _ = cmp(a, text)
check("wsac-cmp: different strings differ", rc == 3 and "k0\ttext: strings differ" in out, out)
nan = [dict(r) for r in base]
nan[0]["emb"] = nan[0]["emb"].copy()
nan[0]["emb"][3] = np.nan
n1, n2 = stream("nan1.mp", nan), stream("nan2.mp", nan)
rc, out, _ = cmp(n1, n2)
check("wsac-cmp: NaN agrees with NaN", rc == 0, out)
rc, out, _ = cmp(a, n1, "--atol", "1")
check("wsac-cmp: NaN does not agree with a number", rc == 3, out)
raw = open(a, "rb").read()
trunc = os.path.join(tmp, "trunc.mp")
open(trunc, "wb").write(raw[:-3])
rc, out, err = cmp(trunc, a)
check("wsac-cmp: a truncated stream is fatal (exit 2)", rc == 2 and "truncated" in err, err)
rc, out, err = cmp(a)
check("wsac-cmp: one stream only is a usage error (exit 1)", rc == 1, err)
rc, out, err = cmp("-q", a, b)
check("wsac-cmp: --quiet prints nothing", rc == 3 and out == "" and err == "", (out, err))
p = subprocess.run([tool("wsac-cmp"), "-", a], input=raw, capture_output=True)
check("wsac-cmp: '-' reads stdin", p.returncode == 0, p.stderr)

# wsac-dump
p = subprocess.run([tool("wsac-dump"), "-q", a], capture_output=True)
lines = [json.loads(l) for l in p.stdout.decode().splitlines()]
e = lines[1]["emb"]
check("wsac-dump: summary statistics are right",
      abs(e["mean"] - float(base[0]["emb"].astype(np.float64).mean())) < 1e-12 and
      np.float32(e["min"]) == base[0]["emb"].min() and np.float32(e["max"]) == base[0]["emb"].max(), e)
p = subprocess.run([tool("wsac-dump"), "-q", n1], capture_output=True)
check("wsac-dump: NaN elements are counted, stats over the finite ones",
      json.loads(p.stdout.decode().splitlines()[1])["emb"]["nan"] == 1)
p = subprocess.run([tool("wsac-dump"), "-q", "-r", a, a], capture_output=True)
check("wsac-dump: several files, --records-only", len(p.stdout.decode().splitlines()) == 10)
p = subprocess.run([tool("wsac-dump"), "-q", "--summary", a], capture_output=True)
check("wsac-dump --summary: one line per record",
      p.stdout.decode().splitlines()[0].startswith("k0  emb=f32[16] min ") and
      len(p.stdout.decode().splitlines()) == 5, p.stdout.decode())
mel = stream("mel.mp", [{"key": "m", "mel": (np.arange(200 * 64, dtype=np.float32).reshape(200, 64) % 64) - 80}])
p = subprocess.run([tool("wsac-dump"), "-q", "--ascii", "mel", mel], capture_output=True)
pic = p.stdout.decode().splitlines()
check("wsac-dump --ascii: draws the 2-D field, 16 rows of 72 columns, high bins on top",
      len(pic) == 18 and pic[1].startswith("  |@") and pic[16].startswith("  | "), "\n".join(pic))
bad = stream("bad.mp", [base[0], {"key": "bad", "emb": {"dtype": "f32", "shape": [3], "data": b"\0"}}])
p = subprocess.run([tool("wsac-dump"), bad], capture_output=True)
check("wsac-dump: an invalid record is printed with \"error\", named, exit 3",
      p.returncode == 3 and '"error":' in p.stdout.decode() and "wsac-dump: key 'bad':" in p.stderr.decode(),
      p.stderr.decode())

# wsac-cat: shards merge into what one process would have written
s1, s2 = stream("s1.mp", base[:2], errors=1, failed=["gone1"]), stream("s2.mp", base[2:], errors=1, failed=["gone2"])
p = subprocess.run([tool("wsac-cat"), "-q", s1, s2], capture_output=True)
hdr, recs, tr = ws.read_stream(io.BytesIO(p.stdout))
check("wsac-cat: shards merge in order", [r["key"] for r in recs] == [r["key"] for r in base])
check("wsac-cat: failures of every shard are carried into the trailer",
      tr["failed"] == ["gone1", "gone2"] and tr["errors"] == 2, tr)
merged = os.path.join(tmp, "merged.mp")
open(merged, "wb").write(p.stdout)
rc, out, _ = cmp(merged, a)
check("wsac-cat: merged stream equals the unsharded one (wsac-cmp)", rc == 0, out)
p = subprocess.run([tool("wsac-cat"), "--unique", a, a], capture_output=True)
_, recs, tr = ws.read_stream(io.BytesIO(p.stdout))
check("wsac-cat --unique: duplicates named and dropped, exit 3",
      p.returncode == 3 and len(recs) == 5 and len(tr["failed"]) == 5 and "duplicate key" in p.stderr.decode())
p = subprocess.run([tool("wsac-cat"), a, trunc], capture_output=True)
_, recs, tr = ws.read_stream(io.BytesIO(p.stdout))
check("wsac-cat: a truncated shard stops the merge without a trailer (exit 2)",
      p.returncode == 2 and tr is None and len(recs) >= 5)
done()
