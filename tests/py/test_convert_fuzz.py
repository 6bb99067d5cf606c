"""A mutation fuzzer for scripts/convert.py salsa, the parser of SALSA's
Lightning checkpoint layout (the C parsers have libFuzzer harnesses in
tests/fuzz/; this one is Python): a small valid checkpoint in the published
layout, and the tokenizer's vocab.json and merges.txt, mutated many ways with
a fixed seed, each converted in-process. Every run must end either converted
(exit 0, and then the model file is complete: every tensor the layout needs)
or refused with a named error (exit 2, the last line "convert.py: error: ..."),
never an uncaught exception, and never leave a partial output file.

Structure mutations: a key dropped, added, renamed or made a non-string; a
tensor reshaped, retyped (integers, float16, 0-d), replaced by a string, a list
or None, filled with NaN; 'state_dict' missing, a list, nested; Lightning's
extra entries. Byte mutations of the saved file: truncated, bytes flipped,
empty, random bytes. Tokenizer files: truncated or non-object JSON, ids that
are not integers, a vocab too short for the embedding, merges lines of one
token or binary garbage. WSAC_FUZZ_N mutations of each kind (default 40)."""
import contextlib
import io
import json
import os
import random
import tempfile

import numpy as np
import torch

from tap import check, done, note
import convert
import passtref
import sttools

N = int(os.environ.get("WSAC_FUZZ_N", "40"))
rng = random.Random(20261203)
tmpdir = tempfile.TemporaryDirectory(prefix="wsac-convert-fuzz-")
tmp = tmpdir.name
torch.set_num_threads(1)

cfg = passtref.Config.tiny()
sd0 = passtref.random_state_dict(cfg, seed=5)
VOCAB, MERGES = os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")
voc = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3, "<mask>": 4}
voc.update({"t%d" % i: i for i in range(5, cfg.vocab)})
VOC_TEXT = json.dumps(voc)
MERGES_TEXT = "#version: 0.2\nt 1\n"
with open(VOCAB, "w") as f:
    f.write(VOC_TEXT)
with open(MERGES, "w") as f:
    f.write(MERGES_TEXT)
OPTS = ["--audio-heads", "3", "--text-heads", "2", "--patch-stride", "4,3", "--n-mels", "21",
        "--segment-seconds", "0.3", "--fixed-seconds", "0.9"]
OUT = os.path.join(tmp, "out.safetensors")

outcomes = {"converted": 0, "refused": 0}
failures = []


def run(ckpt, what, vocab=VOCAB, merges=MERGES):
    """convert in-process; a failure of the promises goes to failures"""
    if os.path.exists(OUT):
        os.unlink(OUT)
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            rc = convert.main(["salsa", ckpt, "--vocab", vocab, "--merges", merges, "-o", OUT] + OPTS)
    except SystemExit as e:  # argparse only: a usage error is not what this fuzzes
        failures.append("%s: SystemExit %s" % (what, e.code))
        return
    except Exception as e:  # noqa: BLE001 - the promise under test
        tb = e.__traceback__
        while tb.tb_next:
            tb = tb.tb_next
        failures.append("%s: uncaught %s: %s (%s line %d)" % (what, type(e).__name__, e,
                        os.path.basename(tb.tb_frame.f_code.co_filename), tb.tb_lineno))
        return
    msg = err.getvalue().strip()
    if rc == 0:
        try:
            t, _ = sttools.load(OUT)
            if not any(k.startswith("audio") or "passt" in k or "patch" in k for k in t):
                failures.append("%s: converted, but the model has no audio tower" % what)
            bad = [k for k, v in t.items() if v.dtype.kind == "f" and not np.all(np.isfinite(v))]
            if bad:
                failures.append("%s: converted a model with NaN or infinite values (%s)" % (what, bad[0]))
        except Exception as e:  # noqa: BLE001
            failures.append("%s: converted, but the output does not load: %s" % (what, e))
        outcomes["converted"] += 1
    elif rc == 2:
        # the last line names the error (torch may print its own warnings before it)
        last = msg.split("\n")[-1] if msg else ""
        if not last.startswith("convert.py: error: ") or len(last) < 25:
            failures.append("%s: exit 2 without a named error line: %r" % (what, msg[-200:]))
        if os.path.exists(OUT):
            failures.append("%s: refused, but left an output file" % what)
        outcomes["refused"] += 1
    else:
        failures.append("%s: exit %r" % (what, rc))


def save(obj):
    p = os.path.join(tmp, "m.ckpt")
    torch.save(obj, p)
    return p


BASE = save({"state_dict": sd0, "epoch": 3})
run(BASE, "the valid checkpoint")
check("the valid checkpoint converts", outcomes["converted"] == 1 and not failures, failures[:3])
base_bytes = open(BASE, "rb").read()
keys = sorted(sd0)


def odd_value():
    return rng.choice(["a string", [1, 2, 3], None, 7, {"x": torch.zeros(2)}, torch.zeros(0),
                       torch.tensor(3.0), torch.full((2, 3), float("nan"))])


def mutate_structure():
    sd = dict(sd0)
    k = rng.choice(keys)
    kind = rng.randrange(12)
    if kind == 0:
        del sd[k]
    elif kind == 1:
        sd[k.rsplit(".", 1)[0] + ".extra%d" % rng.randrange(99)] = torch.zeros(rng.randrange(1, 4))
    elif kind == 2:
        sd[k.replace(".", "_", 1)] = sd.pop(k)
    elif kind == 3:
        sd[rng.randrange(1000)] = sd.pop(k)
    elif kind == 4:
        v = sd[k]
        shape = list(v.shape) or [1]
        i = rng.randrange(len(shape))
        shape[i] = max(0, shape[i] + rng.choice([-1, 1, 5]))
        sd[k] = torch.zeros(shape)
    elif kind == 5:
        sd[k] = sd[k].reshape(-1)
    elif kind == 6:
        sd[k] = sd[k].to(rng.choice([torch.int32, torch.int64, torch.float16, torch.float64, torch.bool]))
    elif kind == 7:
        sd[k] = odd_value()
    elif kind == 8:
        v = sd[k].clone().float()
        if v.numel():
            v.view(-1)[0] = float(rng.choice(["nan", "inf", "-inf"]))
        sd[k] = v
    elif kind == 9:
        return rng.choice([sd, [sd], {"state_dict": [sd]}, {"state_dict": {"state_dict": sd}}, {}, "text"])
    elif kind == 10:
        return {"state_dict": sd, "hyper_parameters": {"lr": 2e-5}, "optimizer_states": [{}], "epoch": 19}
    else:
        for _ in range(rng.randrange(2, 6)):
            kk = rng.choice(keys)
            if kk in sd:
                del sd[kk]
    return {"state_dict": sd}


for i in range(N):
    run(save(mutate_structure()), "structure mutation %d" % i)
check("structure mutations of the Lightning layout (%d): converted or refused by name, nothing else" % N,
      not failures, failures[:3])
nf = len(failures)

for i in range(N):
    b = bytearray(base_bytes)
    kind = rng.randrange(4)
    if kind == 0:
        b = b[:rng.randrange(len(b))]
    elif kind == 1:
        for _ in range(rng.randrange(1, 20)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif kind == 2:
        b = bytearray()
    else:
        b = bytearray(rng.randrange(256) for _ in range(rng.randrange(1, 4096)))
    p = os.path.join(tmp, "b.ckpt")
    with open(p, "wb") as f:
        f.write(b)
    run(p, "byte mutation %d (kind %d)" % (i, kind))
check("byte mutations of the checkpoint file (%d): converted or refused by name" % N, len(failures) == nf,
      failures[nf:nf + 3])
nf = len(failures)

for i in range(N):
    vt, mt = VOC_TEXT, MERGES_TEXT
    kind = rng.randrange(7)
    if kind == 0:
        vt = vt[:rng.randrange(len(vt))]
    elif kind == 1:
        vt = rng.choice(["[1, 2]", "\"s\"", "null", "{}", "{\"<s>\": \"zero\"}", "{\"<s>\": 1.5}"])
    elif kind == 2:
        v2 = dict(voc)
        for _ in range(rng.randrange(1, 30)):
            v2.pop(rng.choice(list(v2)), None)
        vt = json.dumps(v2)
    elif kind == 3:
        v2 = dict(voc)
        v2[rng.choice(list(v2))] = rng.choice([-1, 10 ** 9, cfg.vocab])
        vt = json.dumps(v2)
    elif kind == 4:
        mt = "#version: 0.2\nonlyone\n"
    elif kind == 5:
        mt = bytes(rng.randrange(256) for _ in range(64)).decode("latin-1")
    else:
        mt = mt[:rng.randrange(len(mt))]
    vp, mp = os.path.join(tmp, "v.json"), os.path.join(tmp, "m.txt")
    with open(vp, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(vt)
    with open(mp, "wb") as f:
        f.write(mt.encode("latin-1", errors="replace"))
    run(BASE, "tokenizer mutation %d (kind %d)" % (i, kind), vp, mp)
check("tokenizer-file mutations (%d): converted or refused by name" % N, len(failures) == nf, failures[nf:nf + 3])
note("%d runs: %d converted, %d refused by name, %d broke a promise" % (
    1 + 3 * N, outcomes["converted"], outcomes["refused"], len(failures)))
done()
