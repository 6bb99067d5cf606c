#!/usr/bin/python3
"""Stand-in for meteor-1.5.jar, run by a fake `java` (see test_score.py):
speaks the protocol pycocoevalcap's Meteor uses on stdin/stdout and returns
known numbers, so the wiring of `score caption --meteor-jar` is tested
without Java.

  SCORE ||| ref1 ||| ... ||| hyp   ->  "h m" (hyp tokens, hyp tokens found in a ref)
  EVAL ||| s1 ||| s2 ...           ->  m_i / (h_i + 1) per item, one per line,
                                       then sum(m) / (sum(h) + n) (a corpus
                                       statistic, not the item mean, as METEOR)

It insists on the command line, environment and working directory of the
reference protocol (`java -jar -Xmx2G meteor-1.5.jar - - -stdio -l en
-norm`, LC_ALL=C, run from the jar's directory) and exits 3 otherwise.
FAKE_METEOR_LOG: append every request line to this file.
FAKE_METEOR_DIE: exit after this many SCORE lines (a crashing METEOR)."""
import os
import sys


def fail(msg):
    sys.stderr.write("fake meteor: %s\n" % msg)
    sys.exit(3)


here = os.path.dirname(os.path.abspath(__file__))
if sys.argv[1:] != ["-", "-", "-stdio", "-l", "en", "-norm"]:
    fail("arguments %r" % sys.argv[1:])
if os.environ.get("FAKE_JAVA_XMX") != "-Xmx2G":
    fail("heap option %r" % os.environ.get("FAKE_JAVA_XMX"))
if os.environ.get("LC_ALL") != "C":
    fail("LC_ALL is %r" % os.environ.get("LC_ALL"))
if os.path.realpath(os.getcwd()) != os.path.realpath(here):
    fail("working directory %s" % os.getcwd())
log = open(os.environ["FAKE_METEOR_LOG"], "a") if os.environ.get("FAKE_METEOR_LOG") else None
die_after = int(os.environ.get("FAKE_METEOR_DIE", "-1"))
nscore = 0
for line in sys.stdin:
    line = line.rstrip("\n")
    if log:
        log.write(line + "\n")
        log.flush()
    parts = line.split(" ||| ")
    if parts[0] == "SCORE":
        if nscore == die_after:
            sys.stderr.write("Exception in thread \"main\" java.lang.OutOfMemoryError: fake\n")
            sys.exit(1)
        nscore += 1
        if len(parts) < 3:
            fail("SCORE line without references: %r" % line)
        refs, hyp = parts[1:-1], parts[-1]
        if "|||" in hyp:
            fail("hypothesis still has |||")
        words = set(w for r in refs for w in r.split())
        h = hyp.split()
        print("%d %d" % (len(h), sum(w in words for w in h)), flush=True)
    elif parts[0] == "EVAL":
        stats = [tuple(int(x) for x in s.split()) for s in parts[1:]]
        for h, m in stats:
            print(repr(m / (h + 1)), flush=True)
        print(repr(sum(m for h, m in stats) / (sum(h for h, m in stats) + len(stats))), flush=True)
    else:
        fail("unknown request %r" % line[:40])
