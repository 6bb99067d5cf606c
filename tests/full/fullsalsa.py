"""The full-size random-weight SALSA model (PaSST-S + RoBERTa-large in the
published Lightning layout, scripts/passtref.py random_state_dict) shared by
the full tests (clap-audio now, clap-text next): made once, cached, reused.

    import fullsalsa
    ckpt, st = fullsalsa.ensure()    # passt_roberta.ckpt ('state_dict') and salsa.safetensors

Cache: ${TMPDIR:-/tmp}/wsac-full-salsa-v2/. The tokenizer files are the
repository's tests/data/roberta-bpe (RoBERTa's, 50265 tokens). An flock
serialises the creation; files are written under temporary names and
renamed. Creating takes about a minute and 3 GB of disk."""
import fcntl
import os
import subprocess
import sys

VERSION = "v2"
SEED = 0
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
BPE = os.path.join(ROOT, "tests", "data", "roberta-bpe")
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def cache_dir():
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", "wsac-full-salsa-" + VERSION)


def ensure(log=sys.stderr):
    d = cache_dir()
    ck, st = os.path.join(d, "passt_roberta.ckpt"), os.path.join(d, "salsa.safetensors")
    if os.path.exists(ck) and os.path.exists(st):
        return ck, st
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(ck):
            import torch
            import passtref
            print("fullsalsa: making a full-size random SALSA checkpoint in %s ..." % d, file=log, flush=True)
            sd = passtref.random_state_dict(passtref.Config.full(), seed=SEED)
            tmp = "%s.tmp.%d" % (ck, os.getpid())
            torch.save({"state_dict": sd, "epoch": 0}, tmp)
            del sd
            os.replace(tmp, ck)
        if not os.path.exists(st):
            tmp = "%s.tmp.%d" % (st, os.getpid())
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert.py"), "salsa", ck, "--vocab",
                            os.path.join(BPE, "vocab.json"), "--merges", os.path.join(BPE, "merges.txt"), "-o", tmp],
                           check=True)
            os.replace(tmp, st)
    return ck, st
