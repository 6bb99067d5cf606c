"""Every filter's output is bit-identical over three runs at a fixed thread
count, and the same bits on 1 and 2 threads and whatever OPENBLAS_NUM_THREADS
says: every matrix product is cut by its size alone (lib/gemm.c, lib/cnn14.c
chunk_width, lib/bert.c's tiles), never by the thread count. CI runs this with
OPENBLAS_CORETYPE=Haswell and unset (OpenBLAS's Haswell kernels change the last
bits of a product cut any other way)."""
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf

from tap import ROOT, check, done, note, tool
import wsacstream as ws

tmp = tempfile.mkdtemp()
M = os.path.join(ROOT, "data", "models")
CLAP, DEC, MEM = (os.path.join(M, f) for f in ("clap-test.safetensors", "decoder-test.safetensors", "memory-test.mp"))
rng = np.random.default_rng(3)
wavs = []
for i in range(6):
    p = os.path.join(tmp, "c%d.wav" % i)
    sf.write(p, np.float32(0.2 * rng.standard_normal(32000 * (2 + i))), 44100 if i % 2 else 32000)
    wavs.append(p)


def out(args, stdin=None):
    p = subprocess.run([tool(args[0])] + args[1:], input=stdin, capture_output=True)
    return p.returncode, p.stdout


mel = out(["wav2mel", "-q", "--threads", "1"] + wavs)[1]
audio = out(["clap-audio", "-q", "-j", "1", "-m", CLAP], mel)[1]
caps = b"".join(b"k%d\ta dog barks %d times near a busy road\n" % (i, i) for i in range(40))
text = out(["clap-text", "-q", "-j", "1", "-m", CLAP], caps)[1]
ap, tp = os.path.join(tmp, "a.mp"), os.path.join(tmp, "t.mp")
open(ap, "wb").write(audio)
open(tp, "wb").write(text)
refs = os.path.join(tmp, "refs.csv")
with open(refs, "w") as f:
    f.write("file_name,caption_1,caption_2\n" + "".join("c%d.wav,a dog barks,rain falls\n" % i for i in range(6)))
cands = b"".join(b"c%d.wav\ta dog is barking\n" % i for i in range(6))
train_in = os.path.join(tmp, "train.mp")
open(train_in, "wb").write(text)

cases = [  # name, argv with {J} for the thread count, stdin, same bits across thread counts?
    ("wav2mel", ["wav2mel", "-q", "--threads", "{J}"] + wavs, None, True),
    ("clap-audio", ["clap-audio", "-q", "-j", "{J}", "-m", CLAP], mel, True),
    ("clap-text", ["clap-text", "-q", "-j", "{J}", "-m", CLAP], caps, True),
    ("nnproj pd", ["nnproj", "-q", "-j", "{J}", "-M", MEM, "--method", "pd"], audio, True),
    ("nnproj nnd", ["nnproj", "-q", "-j", "{J}", "-M", MEM, "--method", "nnd"], audio, True),
    ("gapshift apply", ["gapshift", "apply", "-q", "--noise", "0.01", "--seed", "4"], text, True),
    ("gapshift estimate", ["gapshift", "estimate", "-q", "--audio", ap, "--text", tp], None, True),
    ("prefixdec decode", ["prefixdec", "decode", "-q", "-j", "{J}", "-m", DEC], audio, True),
    ("prefixdec decode --beam 3", ["prefixdec", "decode", "-q", "-j", "{J}", "--beam", "3", "-m", DEC], audio, True),
    ("score caption", ["score", "caption", "-q", "--refs", refs], cands, True),
    ("score retrieval", ["score", "retrieval", "-q", "--audio", ap, "--text", tp], None, True),
    ("wsac-cat", ["wsac-cat", "-q", ap, tp], None, True),
]
for name, argv, stdin, same in cases:
    runs = {}
    for j in ("1", "2"):
        a = [x.replace("{J}", j) for x in argv]
        runs[j] = [out(a, stdin)[1] for _ in range(3)]
        check("%s -j %s: three runs bit-identical" % (name, j), runs[j][0] == runs[j][1] == runs[j][2] and len(runs[j][0]) > 0)
    if same:
        check("%s: 1 and 2 threads give the same bits" % name, runs["1"][0] == runs["2"][0])
    else:
        note("%s: 1 vs 2 threads: %s" % (name, "same bits" if runs["1"][0] == runs["2"][0] else "differ in the last bits"))

# training: a tiny decoder, one epoch, three times
ck = []
for k in range(3):
    o = os.path.join(tmp, "dec%d.safetensors" % k)
    subprocess.run([tool("prefixdec"), "train", "-q", "-j", "2", "--layers", "1", "--heads", "2", "--width", "16",
                    "--positions", "32", "--epochs", "1", "--bs", "8", "--noise", "0.01", "--seed", "7", "-o", o, train_in],
                   capture_output=True)
    ck.append(open(o, "rb").read() if os.path.exists(o) else b"")
check("prefixdec train -j 2: three runs write bit-identical checkpoints", ck[0] == ck[1] == ck[2] and len(ck[0]) > 0)
o = os.path.join(tmp, "dec-j1.safetensors")
subprocess.run([tool("prefixdec"), "train", "-q", "-j", "1", "--layers", "1", "--heads", "2", "--width", "16",
                "--positions", "32", "--epochs", "1", "--bs", "8", "--noise", "0.01", "--seed", "7", "-o", o, train_in],
               capture_output=True)
check("prefixdec train: 1 and 2 threads write the same checkpoint bits",
      os.path.exists(o) and open(o, "rb").read() == ck[0] and len(ck[0]) > 0)

# OpenBLAS's own thread count changes nothing either: the tools keep it to one
# thread and split the products themselves
env2 = dict(os.environ, OPENBLAS_NUM_THREADS="2", OMP_NUM_THREADS="2")
for name, argv, stdin, _ in cases:
    if name in ("clap-audio", "nnproj pd", "prefixdec decode", "score retrieval"):
        a = [x.replace("{J}", "2") for x in argv]
        p = subprocess.run([tool(a[0])] + a[1:], input=stdin, capture_output=True, env=env2)
        ref = subprocess.run([tool(a[0])] + a[1:], input=stdin, capture_output=True).stdout
        check("%s: OPENBLAS_NUM_THREADS=2 gives the same bits as 1" % name, p.stdout == ref and len(ref) > 0)
done()
