#!/usr/bin/python3
"""Stand-in for spice-1.0.jar, run by a fake `java` (see test_score.py).
Checks the reference protocol (`java -jar -Xmx8G spice-1.0.jar IN -cache DIR
-out OUT -subset -silent`, run from the jar's directory; IN a JSON list of
{"image_id", "test", "refs"} sorted by image_id) and writes OUT as SPICE
does, with a known score per item:
  f = |hyp words in some ref| / |hyp words| (distinct words), and a bare NaN
  (not JSON, as SPICE's writer prints it) for an empty hypothesis.
FAKE_SPICE_FAIL=1: exit 1 with a Java-like message."""
import json
import os
import sys


def fail(msg, code=3):
    sys.stderr.write("fake spice: %s\n" % msg)
    sys.exit(code)


here = os.path.dirname(os.path.abspath(__file__))
a = sys.argv[1:]
if len(a) != 7 or a[1] != "-cache" or a[3] != "-out" or a[5:] != ["-subset", "-silent"]:
    fail("arguments %r" % a)
if os.environ.get("FAKE_JAVA_XMX") != "-Xmx8G":
    fail("heap option %r" % os.environ.get("FAKE_JAVA_XMX"))
if os.path.realpath(os.getcwd()) != os.path.realpath(here):
    fail("working directory %s" % os.getcwd())
if not os.path.isdir(a[2]):
    fail("no cache directory %s" % a[2])
if os.environ.get("FAKE_SPICE_FAIL"):
    fail("Exception in thread \"main\" java.lang.RuntimeException: fake failure", 1)
items = json.load(open(a[0]))
ids = [it["image_id"] for it in items]
if ids != sorted(ids):
    fail("items not sorted by image_id")
out = []
for it in items:
    hyp = set(it["test"].split())
    words = set(w for r in it["refs"] for w in r.split())
    f = len(hyp & words) / len(hyp) if hyp else float("nan")
    out.append({"image_id": it["image_id"], "scores": {"All": {"f": f, "pr": f, "re": f, "numImages": 1},
                                                        "Object": {"f": 0.5}}})
with open(a[4], "w") as fo:
    json.dump(out, fo)  # float('nan') is written as a bare NaN, like SPICE's writer
