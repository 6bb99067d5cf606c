"""Steady state: 10,000 records through each stage with the bundled test
models keep resident memory flat (sampled after 1,000 and after 10,000
records), and no file descriptor or thread leaks. Also: a pipeline killed
midway leaves an output every reader reports as incomplete."""
import io
import os
import signal
import subprocess
import tempfile
import threading
import time

import msgpack
import numpy as np
import soundfile as sf

from tap import ROOT, check, done, note, tool
import wsacstream as ws

tmp = tempfile.mkdtemp()
M = os.path.join(ROOT, "data", "models")
CLAP, DEC, MEM = (os.path.join(M, f) for f in ("clap-test.safetensors", "decoder-test.safetensors", "memory-test.mp"))
N = 10000
if os.environ.get("WSAC_SAN"):
    # under `make check-san`: AddressSanitizer holds freed memory in a
    # quarantine (256 MB by default, to catch use after free), which reads as
    # growth here; this test turns it off to measure the tools' own memory
    # (leaks are still LeakSanitizer's, at exit)
    os.environ["ASAN_OPTIONS"] = ":".join(filter(None, [os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=0",
                                                        "thread_local_quarantine_size_kb=0"]))
rng = np.random.default_rng(0)


def proc_stats(pid):
    st = open("/proc/%d/status" % pid).read().split("\n")
    kv = {l.split(":")[0]: l.split(":")[1].strip() for l in st if ":" in l}
    return int(kv["VmRSS"].split()[0]) / 1024.0, int(kv["Threads"]), len(os.listdir("/proc/%d/fd" % pid))


def measure(name, cmd, data, count_lines=False):
    """Feed data, count output records; sample RSS/threads/fds at 1,000 and N."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    samples = {}

    def feed():
        try:
            p.stdin.write(data)
            # keep stdin open until the last record came out, so the process is alive when sampled
            while N not in samples and p.poll() is None:
                time.sleep(0.01)
            p.stdin.close()
        except BrokenPipeError:
            pass

    th = threading.Thread(target=feed)
    th.start()
    up = msgpack.Unpacker(raw=False)
    n = 0
    while True:
        chunk = os.read(p.stdout.fileno(), 1 << 16)
        if not chunk:
            break
        if count_lines:
            n += chunk.count(b"\n")
        else:
            up.feed(chunk)
            n += sum(1 for o in up if "key" in o)
        for mark in (1000, N):
            if n >= mark and mark not in samples:
                try:
                    samples[mark] = proc_stats(p.pid)
                except FileNotFoundError:
                    pass
    th.join()
    p.wait()
    ok = 1000 in samples and N in samples
    if ok:
        (r1, t1, f1), (r2, t2, f2) = samples[1000], samples[N]
        note("%s: RSS %.1f MB after 1,000 records, %.1f MB after %d; threads %d/%d; fds %d/%d" % (name, r1, r2, N, t1, t2, f1, f2))
        check("%s: resident memory flat from 1,000 to %d records (grew %.1f MB, limit 4)" % (name, N, r2 - r1), r2 - r1 < 4.0)
        check("%s: no thread or file descriptor leak" % name, t2 <= t1 and f2 <= f1, (t1, t2, f1, f2))
    else:
        check("%s: %d records came out" % (name, N), False, "%d records, exit %s" % (n, p.returncode))


# wav2mel: the same short clip listed 10,000 times under different keys
clip = os.path.join(tmp, "clip.wav")
sf.write(clip, np.float32(0.1 * rng.standard_normal(16000)), 32000)
listing = "".join("k%05d\t%s\n" % (i, clip) for i in range(N)).encode()
measure("wav2mel", [tool("wav2mel"), "-q", "--threads", "2"], listing)
mel = (rng.standard_normal((80, 64)) * 10 - 40).astype(np.float32)
mels = io.BytesIO()
ws.write_stream(mels, "t", ({"key": "k%05d" % i, "mel": mel} for i in range(N)))
measure("clap-audio", [tool("clap-audio"), "-q", "-m", CLAP, "-j", "2"], mels.getvalue())
e = rng.standard_normal((64, 32)).astype(np.float32)
embs = io.BytesIO()
ws.write_stream(embs, "t", ({"key": "k%05d" % i, "emb": e[i % 64]} for i in range(N)))
measure("nnproj", [tool("nnproj"), "-q", "-M", MEM, "--method", "pd", "-j", "2"], embs.getvalue())
measure("prefixdec decode", [tool("prefixdec"), "decode", "-q", "-m", DEC, "-j", "2"], embs.getvalue(), count_lines=True)
caps = "".join("k%05d\ta dog barks %d times while rain falls\n" % (i, i) for i in range(N)).encode()
measure("clap-text", [tool("clap-text"), "-q", "-m", CLAP, "-j", "2"], caps)
measure("gapshift apply", [tool("gapshift"), "apply", "-q", "--noise", "0.01"], embs.getvalue())

# a pipeline killed midway: the output never looks complete
out = os.path.join(tmp, "killed.mp")
long_clip = os.path.join(tmp, "long.wav")
sf.write(long_clip, np.float32(0.1 * rng.standard_normal(32000 * 5)), 32000)
files = "".join("%s\n" % long_clip for _ in range(3000)).encode()
with open(out, "wb") as f:
    p1 = subprocess.Popen([tool("wav2mel"), "-q", "--threads", "1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL)
    p2 = subprocess.Popen([tool("clap-audio"), "-q", "-m", CLAP, "-j", "1"], stdin=p1.stdout, stdout=f, stderr=subprocess.DEVNULL)
    p1.stdout.close()
    threading.Thread(target=lambda: (p1.stdin.write(files), p1.stdin.close()), daemon=True).start()
    # kill once records are flowing (not after a fixed time: a slow build may not
    # have written one by then), long before the 3000th
    t0 = time.monotonic()
    while time.monotonic() - t0 < 300 and p2.poll() is None:
        up = msgpack.Unpacker(raw=False)
        up.feed(open(out, "rb").read())
        if sum(1 for _ in up) >= 3:  # the header and two records
            break
        time.sleep(0.05)
    os.kill(p1.pid, signal.SIGKILL)
    os.kill(p2.pid, signal.SIGKILL)
    p1.wait()
    p2.wait()
d = subprocess.run([tool("wsac-dump"), "-q", "-r", out], capture_output=True)
n = d.stdout.count(b"\n")
check("killed pipeline: the partial output is reported as incomplete by every reader (exit 2)",
      d.returncode == 2 and 0 < n < 3000 and (b"without its trailer" in d.stderr or b"truncated" in d.stderr),
      (d.returncode, n, d.stderr[-200:]))
c = subprocess.run([tool("wsac-cat"), "-q", out], capture_output=True)
_, recs, tr = ws.read_stream(io.BytesIO(c.stdout))
check("killed pipeline: a downstream tool passes the records on but writes no trailer either",
      c.returncode == 2 and tr is None and len(recs) > 0)
note("killed once records flowed: %d of 3000 records made it into the file" % n)
done()
