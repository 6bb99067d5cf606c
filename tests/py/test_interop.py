"""Tensor streams are plain msgpack: python3-msgpack writes what the C tools
read, and reads what they write, both ways, exactly."""
import io
import json
import subprocess

import msgpack
import numpy as np

from tap import check, done, tool
import wsacstream as ws

rng = np.random.default_rng(7)
records = [
    {"key": "f32 odd", "x": rng.standard_normal((3, 5, 7)).astype(np.float32), "text": "a dog barks"},
    {"key": "f64", "x": np.array([1e300, -2.5, 0.0, 1e-300, np.pi])},
    {"key": "i32", "x": np.array([101, -7, 2**31 - 1, -(2**31)], np.int32)},
    {"key": "i64", "x": np.array([2**53 + 1, -(2**62)], np.int64)},
    {"key": "i16", "x": np.array([-32768, 32767], np.int16)},
    {"key": "i8", "x": np.array([-128, 127], np.int8)},
    {"key": "u8", "x": np.array([0, 255], np.uint8)},
    {"key": "scalar", "x": np.array(3.5, np.float32)},
    {"key": "empty", "x": np.zeros((0, 4), np.float32)},
    {"key": "unicode ключ 鍵 🎵", "text": "Ça marche — naïve café 音", "n": -3, "f": 0.1, "b": True, "z": None,
     "list": [1, "two", {"three": 3}]},
]

# python -> C: wsac-dump --full renders every element; values must match exactly
buf = io.BytesIO()
ws.write_stream(buf, "python", records, params={"sr": 32000, "note": "made by python"})
raw = buf.getvalue()
p = subprocess.run([tool("wsac-dump"), "--full", "-q"], input=raw, capture_output=True)
check("python->C: wsac-dump reads a python3-msgpack stream", p.returncode == 0, p.stderr.decode())
lines = [json.loads(l) for l in p.stdout.decode().splitlines()]
check("python->C: header, all records and trailer are seen", len(lines) == len(records) + 2 and
      "header" in lines[0] and "trailer" in lines[-1], len(lines))
byk = {l["key"]: l for l in lines[1:-1]}
ok = True
for r in records:
    got = byk.get(r["key"])
    if got is None:
        ok = False
        continue
    for k, v in r.items():
        if isinstance(v, np.ndarray):
            g = got[k]
            same = g["dtype"] == ws.NAMES[v.dtype.str if v.dtype.itemsize > 1 else v.dtype.str] and \
                g["shape"] == list(v.shape) and np.array_equal(np.array(g["data"], dtype=v.dtype).reshape(v.shape), v)
            if not same:
                ok = False
                print("# mismatch", r["key"], k)
        elif k != "key" and got.get(k) != v:
            ok = False
            print("# mismatch", r["key"], k, got.get(k), v)
check("python->C: every dtype, shape, string and value read exactly", ok)

# python -> C -> python: wsac-cat passes every field through unchanged
p = subprocess.run([tool("wsac-cat"), "-q"], input=raw, capture_output=True)
check("python->C->python: wsac-cat copies the stream", p.returncode == 0, p.stderr.decode())
hdr, back, trailer = ws.read_stream(io.BytesIO(p.stdout))
same = len(back) == len(records)
for a, b in zip(records, back):
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            same &= b[k].dtype == v.dtype.newbyteorder("<") and b[k].shape == v.shape and np.array_equal(b[k], v)
        else:
            same &= b[k] == v
check("python->C->python: records identical after a round trip through C", same)
check("C stream: header names format, version, tool and records its input",
      hdr["format"] == "wsac-stream" and hdr["version"] == 1 and hdr["tool"] == "wsac-cat" and
      hdr["input"]["tool"] == "python" and hdr["input"]["params"]["sr"] == 32000, hdr)
check("C stream: trailer counts records", trailer == {"end": True, "records": len(records), "errors": 0, "failed": []},
      trailer)

# C -> python with the plain Unpacker (no helper): objects are maps of str keys, tensors bin
objs = list(msgpack.Unpacker(io.BytesIO(p.stdout), raw=False))
check("C->python: plain msgpack.Unpacker reads every object",
      len(objs) == len(records) + 2 and all(isinstance(o, dict) for o in objs))
t = objs[1]["x"]
check("C->python: a tensor is {dtype, shape, data: bytes}",
      set(t) == {"dtype", "shape", "data"} and isinstance(t["data"], bytes) and t["dtype"] == "f32" and
      t["shape"] == [3, 5, 7] and len(t["data"]) == 3 * 5 * 7 * 4)

# python-made bad records: named, the rest kept, exit status 3
bad = [
    {"key": "good1", "x": np.ones(3, np.float32)},
    {"key": "baddtype", "x": {"dtype": "f16", "shape": [2], "data": b"\0\0\0\0"}},
    {"key": "badshape", "x": {"dtype": "f32", "shape": [2, 3], "data": b"\0" * 20}},
    {"key": "strdata", "x": {"dtype": "f32", "shape": [1], "data": "abcd"}},
    {"key": "good2", "x": np.ones(3, np.float32)},
]
buf = io.BytesIO()
ws.write_stream(buf, "python", bad)
p = subprocess.run([tool("wsac-cat")], input=buf.getvalue(), capture_output=True)
err = p.stderr.decode()
_, kept, tr = ws.read_stream(io.BytesIO(p.stdout))
check("bad records: exit status 3", p.returncode == 3, p.returncode)
check("bad records: each named with its reason on stderr",
      "baddtype: field \"x\": unknown dtype 'f16'" in err and "badshape" in err and "data has 20 bytes" in err
      and "strdata" in err and "not binary" in err, err)
check("bad records: the good ones are written", [r["key"] for r in kept] == ["good1", "good2"])
check("bad records: the trailer lists the failed keys", tr["failed"] == ["baddtype", "badshape", "strdata"], tr)
check("stderr lines are prefixed with the tool name",
      all(l.startswith("wsac-cat: ") for l in err.splitlines()), err)

# a stream cut short: the records before the cut are kept, exit status 2, no trailer written
buf = io.BytesIO()
ws.write_stream(buf, "python", records[:3])
cut = buf.getvalue()[:-5]
p = subprocess.run([tool("wsac-cat")], input=cut, capture_output=True)
_, kept, tr = ws.read_stream(io.BytesIO(p.stdout))
check("truncated input: exit status 2 with a clear message",
      p.returncode == 2 and "truncated" in p.stderr.decode(), p.stderr.decode())
check("truncated input: earlier records written, no trailer (output visibly incomplete)",
      len(kept) == 3 and tr is None, (len(kept), tr))
done()
