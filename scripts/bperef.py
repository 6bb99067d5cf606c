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

Written from the published algorithm for wsac's tests (lib/bpe.c must give
identical ids); no HF code is imported. Literal special tokens in the text
("<s>", "<mask>"...) are plain text here, as in lib/bpe.c (SALSA's
preprocessing deletes '<' and '>', so they never reach the tokenizer).

  bperef.py --vocab vocab.json --merges merges.txt [--max-len 32] [--raw] < LINES
LINES are KEY<TAB>TEXT (bytes); out: KEY<TAB>ID ID ... ; a line whose text is
not UTF-8 gives KEY<TAB>ERROR invalid UTF-8.
"""
import argparse
import json
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

    def tokenize(self, text):
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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vocab", required=True)
    ap.add_argument("--merges", required=True)
    ap.add_argument("--max-len", type=int, default=32)
    ap.add_argument("--raw", action="store_true", help="no SALSA preprocessing")
    ap.add_argument("--no-special", action="store_true", help="ids only: no <s> </s>, no truncation")
    a = ap.parse_args()
    bpe = BPE(a.vocab, a.merges)
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
