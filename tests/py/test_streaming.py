"""Records are flushed as written: the first output record leaves a tool
before its last input has been read, so pipelines stream."""
import io
import os
import select
import subprocess
import tempfile

import msgpack
import numpy as np
import soundfile as sf

from tap import check, done, tool
import wsacstream as ws


def read_objects(proc, n, timeout=120.0):  # a hang, not slowness
    """Read n msgpack objects from proc.stdout within timeout seconds; returns them (fewer on timeout)."""
    up = msgpack.Unpacker(raw=False)
    out = []
    fd = proc.stdout.fileno()
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


tmp = tempfile.mkdtemp()
paths = []
for i in range(3):
    p = os.path.join(tmp, "clip%d.wav" % i)
    sf.write(p, (0.1 * np.random.default_rng(i).standard_normal(32000)).astype(np.float32), 32000)
    paths.append(p)

# wav2mel reading its list from a pipe: send one path, expect its record back
# while stdin is still open
proc = subprocess.Popen([tool("wav2mel"), "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
proc.stdin.write((paths[0] + "\n").encode())
proc.stdin.flush()
objs = read_objects(proc, 2)
check("wav2mel: header and first record arrive before the list ends",
      len(objs) == 2 and objs[0].get("format") == "wsac-stream" and objs[1].get("key") == "clip0.wav",
      [list(o)[:3] for o in objs])
proc.stdin.write(("second\t" + paths[1] + "\n").encode())
proc.stdin.flush()
objs = read_objects(proc, 1)
check("wav2mel: the second record follows its input line at once",
      len(objs) == 1 and objs[0].get("key") == "second")
proc.stdin.close()
rest = read_objects(proc, 1)
proc.wait(timeout=120)
check("wav2mel: trailer after stdin closes", len(rest) == 1 and rest[0].get("end") is True and proc.returncode == 0)

# a stream filter (wsac-cat) passes each record on as soon as it has read it
proc = subprocess.Popen([tool("wsac-cat"), "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
proc.stdin.write(msgpack.packb(ws.header("test"), use_bin_type=True))
proc.stdin.write(ws.pack_record({"key": "r1", "emb": np.ones(1024, np.float32)}))
proc.stdin.flush()
objs = read_objects(proc, 2)
check("wsac-cat: the first record leaves the filter before the input ends",
      len(objs) == 2 and objs[1].get("key") == "r1")
proc.stdin.write(ws.pack_record({"key": "r2", "emb": np.ones(1024, np.float32)}))
proc.stdin.write(msgpack.packb({"end": True, "records": 2, "errors": 0}, use_bin_type=True))
proc.stdin.close()
objs = read_objects(proc, 2)
proc.wait(timeout=120)
check("wsac-cat: the rest follows, with a trailer", len(objs) == 2 and objs[1].get("records") == 2)

# a batching filter (nnproj) fed a whole stream, trailer included, by a
# producer that keeps the pipe open: every record comes out without waiting
# for EOF (regression: the batch used to wait behind the trailer)
mem = os.path.join(tmp, "mem.mp")
with open(mem, "wb") as f:
    ws.write_stream(f, "test", [{"key": "m%d" % i, "emb": np.eye(8, dtype=np.float32)[i]} for i in range(8)])
proc = subprocess.Popen([tool("nnproj"), "-q", "-M", mem, "--method", "nnd"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
buf = io.BytesIO()
ws.write_stream(buf, "test", [{"key": "q%d" % i, "emb": np.eye(8, dtype=np.float32)[i]} for i in range(3)])
proc.stdin.write(buf.getvalue())
proc.stdin.flush()
objs = read_objects(proc, 4)
check("nnproj: a complete stream from an open pipe comes out whole before EOF",
      len(objs) == 4 and [o.get("key") for o in objs[1:]] == ["q0", "q1", "q2"], [o.get("key") for o in objs])
proc.stdin.close()
proc.wait(timeout=120)

# wsac-dump prints each record's line as it arrives
proc = subprocess.Popen([tool("wsac-dump"), "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
proc.stdin.write(msgpack.packb(ws.header("test"), use_bin_type=True))
proc.stdin.write(ws.pack_record({"key": "r1", "emb": np.ones(4, np.float32)}))
proc.stdin.flush()
fd = proc.stdout.fileno()
got = b""
while got.count(b"\n") < 2:
    r, _, _ = select.select([fd], [], [], 20)
    if not r:
        break
    got += os.read(fd, 65536)
check("wsac-dump: a record's line is printed before the input ends", got.count(b"\n") >= 2 and b'"r1"' in got)
proc.stdin.close()
proc.wait(timeout=120)
check("wsac-dump: a stream without trailer is reported (exit status 2)", proc.returncode == 2)
done()
