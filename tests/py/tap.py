"""Test helpers for Python tests: check() prints ok/not ok lines for tests/run.sh."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("WSAC_BIN", os.path.join(ROOT, "bin"))
# fixtures copied into the repository (tests/data/PROVENANCE.md): tests never
# read anything beside the clone
DATA = os.path.join(ROOT, "tests", "data")
VOCAB = os.path.join(ROOT, "data", "bert-base-uncased-vocab.txt")
sys.path.insert(0, os.path.join(ROOT, "scripts"))

# under a sanitizer build (WSAC_SAN=1, set by `make check-san`) valgrind cannot
# run the binaries; ASan/LSan check the same things instead
VALGRIND = not os.environ.get("WSAC_SAN") and any(
    os.access(os.path.join(d, "valgrind"), os.X_OK) for d in os.environ.get("PATH", "").split(":"))

_failed = 0


def check(name, cond, detail=""):
    global _failed
    if cond:
        print("ok - %s" % name, flush=True)
    else:
        _failed += 1
        print("not ok - %s%s" % (name, ": " + str(detail) if detail else ""), flush=True)
    return cond


def note(msg):
    """A measured figure worth reading in the test log (not a check)."""
    print("# %s" % msg, flush=True)


def done():
    sys.exit(1 if _failed else 0)


def tool(name):
    return os.path.join(BIN, name)
