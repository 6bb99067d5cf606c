"""The full-size random-weight CLAP model shared by the full tests and the
benchmarks (clap-audio, clap-text): made once, cached, reused.

    import fullmodel
    pt, st = fullmodel.ensure()      # paths of clap.pt (published layout) and clap.safetensors
    sd = fullmodel.state_dict()      # the weights, for the PyTorch reference

Cache: ${TMPDIR:-/tmp}/wsac-full-clap-v1/{clap.pt,clap.safetensors}. Bump
VERSION when the way the model is made changes. Several processes may call
ensure() at once: an flock serialises the creation, and every file is
written under a temporary name and renamed, so a reader never sees a partial
file; a file present when we start is used as it is, whoever made it.
Creating takes ~15 s and 1.5 GB of disk."""
import fcntl
import os
import subprocess
import sys

VERSION = "v1"
SEED = 0
HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
VOCAB = os.path.join(ROOT, "data", "bert-base-uncased-vocab.txt")  # in the repository: tests read nothing beside it
sys.path.insert(0, os.path.join(ROOT, "scripts"))


def cache_dir():
    return os.path.join(os.environ.get("TMPDIR") or "/tmp", "wsac-full-clap-" + VERSION)


def paths():
    d = cache_dir()
    return os.path.join(d, "clap.pt"), os.path.join(d, "clap.safetensors")


def ensure(log=sys.stderr):
    """Make the checkpoint and its conversion if they are not cached; returns (pt, safetensors)."""
    pt, st = paths()
    if os.path.exists(pt) and os.path.exists(st):
        return pt, st
    os.makedirs(cache_dir(), exist_ok=True)
    with open(os.path.join(cache_dir(), ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test may be making it right now: wait for it
        if not os.path.exists(pt):
            import torch
            import clapref
            print("fullmodel: making a full-size random CLAP checkpoint in %s ..." % cache_dir(), file=log, flush=True)
            sd = clapref.random_state_dict(clapref.Config.full(), seed=SEED)
            tmp = "%s.tmp.%d" % (pt, os.getpid())
            torch.save({"model": sd}, tmp)
            os.replace(tmp, pt)
        if not os.path.exists(st):
            tmp = "%s.tmp.%d" % (st, os.getpid())
            subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "convert.py"), "clap", pt,
                            "--vocab", VOCAB, "-o", tmp], check=True)
            os.replace(tmp, st)
    return pt, st


def state_dict():
    """The cached checkpoint's weights (torch tensors, published names)."""
    import torch
    pt, _ = ensure()
    ck = torch.load(pt, map_location="cpu")
    return ck["model"] if "model" in ck else ck


def config():
    import clapref
    return clapref.Config.full()
