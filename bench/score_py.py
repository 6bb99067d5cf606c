#!/usr/bin/python3
"""Plain-Python BLEU-1..4 / ROUGE-L / CIDEr-D: the formulas of pycocoevalcap's
bleu_scorer.py, rouge.py and cider_scorer.py transcribed with Python floats
(math.log for np.log, sum()/len() for np.mean). A reference point for timing
`score caption`, NOT pycocoevalcap itself (which cannot be installed here) and
without its Java PTB tokenizer: it reads the tokenized strings from the JSON
that `score caption --per-item` wrote.

  score_py.py PER_ITEM.json [--runs R]

Prints one JSON line: the corpus scores, and "seconds", the best time of the
metric computation over R runs (reading the JSON excluded)."""
import json
import math
import sys
import time
from collections import defaultdict


def precook(s, n=4):
    words = s.split()
    counts = defaultdict(int)
    for k in range(1, n + 1):
        for i in range(len(words) - k + 1):
            counts[tuple(words[i:i + k])] += 1
    return len(words), counts


def bleu(items, n=4):
    small, tiny = 1e-9, 1e-15
    testlen = reflen = 0
    guess, correct = [0] * n, [0] * n
    for cand, refs in items:
        lens, maxc = [], {}
        for r in refs:
            rl, c = precook(r, n)
            lens.append(rl)
            for g, v in c.items():
                maxc[g] = max(maxc.get(g, 0), v)
        tl, counts = precook(cand, n)
        testlen += tl
        reflen += min((abs(l - tl), l) for l in lens)[1]
        for k in range(n):
            guess[k] += max(0, tl - k)
        for g, v in counts.items():
            correct[len(g) - 1] += min(maxc.get(g, 0), v)
    out, b = [], 1.0
    for k in range(n):
        b *= float(correct[k] + tiny) / (guess[k] + small)
        out.append(b ** (1.0 / (k + 1)))
    ratio = (testlen + tiny) / (reflen + small)
    if ratio < 1:
        out = [x * math.exp(1 - 1 / ratio) for x in out]
    return out


def lcs(a, b):
    if len(a) < len(b):
        a, b = b, a
    t = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for j in range(1, len(b) + 1):
        for i in range(1, len(a) + 1):
            t[i][j] = t[i - 1][j - 1] + 1 if a[i - 1] == b[j - 1] else max(t[i - 1][j], t[i][j - 1])
    return t[len(a)][len(b)]


def rouge(items, beta=1.2):
    scores = []
    for cand, refs in items:
        c = cand.split(" ")
        p, r = [], []
        for ref in refs:
            rt = ref.split(" ")
            l = lcs(rt, c)
            p.append(l / float(len(c)))
            r.append(l / float(len(rt)))
        pm, rm = max(p), max(r)
        scores.append(((1 + beta ** 2) * pm * rm) / float(rm + beta ** 2 * pm) if pm != 0 and rm != 0 else 0.0)
    return sum(scores) / len(scores)


def cider(items, n=4, sigma=6.0):
    crefs = [[precook(r, n)[1] for r in refs] for _, refs in items]
    ctest = [precook(c, n)[1] for c, _ in items]
    df = defaultdict(float)
    for refs in crefs:
        for g in set(g for ref in refs for g in ref):
            df[g] += 1
    ref_len = math.log(float(len(crefs)))

    def vec(cnts):
        v = [defaultdict(float) for _ in range(n)]
        norm, length = [0.0] * n, 0
        for g, tf in cnts.items():
            k = len(g) - 1
            v[k][g] = float(tf) * (ref_len - math.log(max(1.0, df[g])))
            norm[k] += pow(v[k][g], 2)
            if k == 1:
                length += tf
        return v, [math.sqrt(x) for x in norm], length

    scores = []
    for test, refs in zip(ctest, crefs):
        vh, nh, lh = vec(test)
        score = [0.0] * n
        for ref in refs:
            vr, nr, lr = vec(ref)
            delta = float(lh - lr)
            for k in range(n):
                val = 0.0
                for g in vh[k]:
                    val += min(vh[k][g], vr[k][g]) * vr[k][g]
                if nh[k] != 0 and nr[k] != 0:
                    val /= nh[k] * nr[k]
                val *= math.e ** (-(delta ** 2) / (2 * sigma ** 2))
                score[k] += val
        scores.append(sum(score) / n / len(refs) * 10.0)
    return sum(scores) / len(scores)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 1
    per = json.load(open(sys.argv[1], encoding="utf-8"))["per_item"]
    items = [(v["candidate_tokenized"], v["references_tokenized"]) for v in per.values()]
    best = None
    for _ in range(runs):
        t0 = time.perf_counter()
        b = bleu(items)
        r = rouge(items)
        c = cider(items)
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    out = {"bleu_%d" % (k + 1): b[k] for k in range(4)}
    out.update({"rouge_l": r, "cider": c, "seconds": best, "items": len(items)})
    print(json.dumps(out))


if __name__ == "__main__":
    main()
