"""lib/bpe.c (RoBERTa's byte-level BPE, SALSA's caption preprocessing) against
scripts/bperef.py, the published algorithm in Python (`regex` for \\p{L}).

The C side runs through build/tests/test_bpe in its helper mode (texts
hex-encoded, one per line) and through the wsac-bpe filter. Checks:
  - the 4000 captions of tests/data/bpe-captions (ClothoV2 + AudioCaps):
    SALSA's ids (preprocessed, <s> ... </s>, 32) and the raw ids, exactly;
  - a stress set: literal special tokens (<s>, and <mask> which strips the
    whitespace before it, as HF's AddedToken(lstrip=True)), emoji (ZWJ sequences, flags, skin tones), CJK, Hangul,
    combining marks, Greek final sigma, U+0130, digits and digit/letter
    mixes, contractions (and their look-alikes), runs of spaces, tabs,
    newlines and Unicode spaces, control characters, over-long words;
    and seeded random mixtures of all of these;
  - every code point of planes 0-1 (surrogates aside; every 37th above)
    inside words, raw and preprocessed:
    equal except where Python's Unicode (unicodedata) calls the character
    unassigned or utf8proc's case data is newer;
  - invalid UTF-8 and over-long text refused with a reason.
"""
import os
import random
import subprocess
import unicodedata

from tap import ROOT, check, done, note, tool
from bperef import BPE, salsa_preprocess

BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
HELPER = os.path.join(BUILD, "tests", "test_bpe")
DATA = os.path.join(ROOT, "tests", "data")
VOCAB = os.path.join(DATA, "roberta-bpe", "vocab.json")
MERGES = os.path.join(DATA, "roberta-bpe", "merges.txt")
CAPTIONS = os.path.join(DATA, "bpe-captions", "captions.tsv")
MAXTEXT = 8192


def c_run(texts, maxlen, mode):
    """C ids per text (bytes or str), or the error string."""
    inp = b"".join((t if isinstance(t, bytes) else t.encode("utf-8", "surrogatepass")).hex().encode() + b"\n"
                   for t in texts)
    r = subprocess.run([HELPER, "--encode", VOCAB, MERGES, str(maxlen), mode], input=inp,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        raise RuntimeError("%s: status %d: %s" % (HELPER, r.returncode, r.stderr.decode(errors="replace")))
    out = r.stdout.decode().split("\n")
    assert out[-1] == "" and len(out) == len(texts) + 1
    return [o if o.startswith("ERR") else [int(x) for x in o.split()] for o in out[:-1]]


def ref_run(ref, texts, maxlen, mode):
    out = []
    for t in texts:
        if mode == "salsa":
            t = salsa_preprocess(t)
        out.append(ref.encode(t, maxlen) if maxlen else ref.tokenize(t))
    return out


def compare(ref, texts, maxlen, mode):
    c = c_run(texts, maxlen, mode)
    r = ref_run(ref, texts, maxlen, mode)
    return [(t, a, b) for t, a, b in zip(texts, c, r) if a != b]


def stress_strings():
    s = [
        "", " ", "  ", "\t", "\n", "\r\n", " \t \n ", "a", "A", "Hello world", " Hello", "Hello ", "Hello  world",
        "Hello   world", "a  b   c    d", "a\tb", "a\t\tb", "a \tb", "a\t b", "a \t b", "a\n\nb", "a \n b",
        "a\r\nb", "trailing   ", "   leading", "\t\tleading tabs", "x\u00a0y", "x\u00a0\u00a0y", "x\u2003y",
        "x\u3000y", "x\u2028y", "x\u0085y", "x\x1cy", "x\x0by", "x\x0cy", "x \u00a0y", "x\u00a0 y",
        # contractions and look-alikes
        "don't", "I'm", "we're", "they've", "she'll", "he'd", "it's", "DON'T", "I'M", "We'Re", "'s", "''s", "'''",
        "rock'n'roll", "'twas", "' s", "o' clock", "dogs'", "dog's'", "'ll've'd", "\u2019s", "it\u2019s",
        # digits
        "1", "12345", "3.14159", "1,000,000", "10:30", "2024-01-01", "a1b2c3", "abc123def", "123abc", " 42",
        "\u0661\u0662\u0663", "\u00bd \u00b2 \u2163", "\uff11\uff12", "①②③",
        # letters of many scripts, combining marks
        "Québec", "QUÉBEC", "naïve café", "cafe\u0301", "e\u0301\u0323", "Ångström", "Łódź", "Straße", "ẞ",
        "İstanbul", "ıi", "ǅungla", "ﬁﬂ", "ΟΔΟΣ", "ΌΣΟΣ ΣΟΦΟΣ.", "Σ", "ΑΣ Σ", "ΑΣ'", "ΑΣ.Β", "ὈΔΥΣΣΕΎΣ",
        "Привет, мир!", "ЁЖИК", "日本語のテキスト", "中文，标点。", "한국어 텍스트", "漢字かな交じり",
        "\U00020000\U0002A6D6", "㐀", "עברית", "العربية", "हिन्दी", "ไทย", "a\u0300\u0301\u0302b",
        "\u0301start", "x\u20dd",
        # emoji, symbols, zero-width and control characters
        "🙂👍🏽👨‍👩‍👧", "❤️", "🇫🇷🇩🇪", "a\u200db", "a\u200bb", "a\ufeffb", "\u00ad", "dog 🐕 barks 🐕🐕",
        "\x00", "a\x00b", "\x07bell", "\x7f", "€100", "$5", "50%", "#tag", "@user", "~!@#$%^&*()_+", "<s>",
        "</s>", "<mask>", "a<s>b", "<pad> <unk>", "a <mask>", "a \t<mask>b", "<mask> x", "x\u3000<mask>",
        "x\x1c<mask>", "x\u200b<mask>", "<s><mask>", "a  <mask>  <mask>", "<<s>>", "<mask", "</s >", "<S>", "\\", "\"quoted\"", "«guillemets»", "—dash–", "…",
        # long words
        "a" * 300, "ab" * 200, "supercalifragilisticexpialidocious" * 5, "x" * MAXTEXT,
        "A muddled noise of broken channel of the TV",
    ]
    return s


def random_strings(n, seed):
    rng = random.Random(seed)
    pools = ["abcdefghij", "ABCXYZ", "0123456789", " ", "  \t\n", "'", "sStTrReEvVmMlLdD", ".,!?;:-_()\"",
             "éèüößçñ", "ΑΣΟΔσςο", "日本中文한국", "🙂👍🏽‍❤️", "\u0301\u0308\u20dd", "\u00a0\u2003\u3000\u0085",
             "\x00\x01\x1f\x7f", "İıǅﬁ", "①½²٣", ["<s>", "<mask>", "</s>", "<unk>", "<pad>", "<", ">"]]
    out = []
    for _ in range(n):
        k = rng.randint(1, 60)
        out.append("".join(rng.choice(rng.choice(pools)) for _ in range(k)))
    return out


def codepoint_strings():
    """Every code point of planes 0 and 1 but surrogates, and every 37th
    above, 32 per text, in a few contexts."""
    cps = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF and (c < 0x20000 or c % 37 == 0)]
    texts, groups = [], []
    for i in range(0, len(cps), 32):
        g = cps[i:i + 32]
        texts.append(" ".join("a%sb %s%s1 %s's\t%s" % ((chr(c),) * 5) for c in g))
        groups.append(g)
    return texts, groups


def main():
    if not os.access(HELPER, os.X_OK):
        check("helper built: " + HELPER, False, "run make")
        done()
    ref = BPE(VOCAB, MERGES)

    # the caption subset
    rows = [l.split("\t", 1) for l in open(CAPTIONS, encoding="utf-8").read().split("\n") if l]
    caps = [c for _, c in rows]
    bad = compare(ref, caps, 32, "salsa")
    note("captions: %d of %d SALSA id sequences equal" % (len(caps) - len(bad), len(caps)))
    check("captions: %d, SALSA's ids (preprocessed, 32) equal to the reference" % len(caps), not bad, bad[:3])
    bad = compare(ref, caps, 0, "raw")
    check("captions: raw ids (no preprocessing, no truncation) equal to the reference", not bad, bad[:3])
    bad = compare(ref, caps, 512, "raw")
    check("captions: raw ids with <s> </s> equal to the reference", not bad, bad[:3])

    # stress set
    st = stress_strings()
    for mode in ("raw", "salsa"):
        bad = compare(ref, st, 0, mode)
        note("stress (%s): %d of %d equal" % (mode, len(st) - len(bad), len(st)))
        check("stress set (%s): %d strings equal to the reference" % (mode, len(st)), not bad, bad[:3])
        bad = compare(ref, st, 32, mode)
        check("stress set (%s): truncated to 32, equal" % mode, not bad, bad[:3])
    rs = random_strings(3000, 11)
    for mode in ("raw", "salsa"):
        bad = compare(ref, rs, 0, mode)
        check("random mixtures (%s): %d strings equal to the reference" % (mode, len(rs)), not bad, bad[:3])

    # every code point
    texts, groups = codepoint_strings()
    for mode in ("raw", "salsa"):
        c = c_run(texts, 0, mode)
        r = ref_run(ref, texts, 0, mode)
        newer, other = [], []
        for t, g, a, b in zip(texts, groups, c, r):
            if a == b:
                continue
            # which code point: retry one at a time
            one = ["a%sb %s%s1 %s's\t%s" % ((chr(x),) * 5) for x in g]
            for x, a1, b1 in zip(g, c_run(one, 0, mode), ref_run(ref, one, 0, mode)):
                if a1 != b1:
                    (newer if unicodedata.category(chr(x)) == "Cn" else other).append(x)
        note("code points (%s): %d groups of 32; %d differ where Python %s calls them unassigned, %d other%s"
             % (mode, len(texts), len(newer), unicodedata.unidata_version, len(other),
                (": " + " ".join("U+%04X" % x for x in other[:20])) if other else ""))
        check("code points (%s): %d equal to the reference (but Python-unassigned ones)"
              % (mode, sum(map(len, groups))), not other, " ".join("U+%04X" % x for x in other[:20]))

    # invalid UTF-8 and over-long text
    badutf = [b"\xff", b"abc\x80", b"\xc3", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
              b"caf\xe9", b"ok \xf0\x9f\x98"]
    for mode in ("raw", "salsa"):
        out = c_run(badutf, 32, mode)
        check("invalid UTF-8 (%s): all %d refused, naming the byte offset" % (mode, len(badutf)),
              all(isinstance(o, str) and "not valid UTF-8 at byte" in o for o in out), out)
    out = c_run(["a" * (MAXTEXT + 1), "a " * 5000], 32, "salsa")
    check("over-long caption refused with a reason", all(isinstance(o, str) and "bytes long" in o for o in out), out)

    # the wsac-bpe filter: same ids; a bad line named and skipped, exit 3
    inp = "".join("%s\t%s\n" % (k, c) for k, c in rows[:500]).encode() + b"bad\tcaf\xe9\nlast\tThe End.\n"
    r = subprocess.run([tool("wsac-bpe"), "--vocab", VOCAB, "--merges", MERGES], input=inp,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    lines = r.stdout.decode().split("\n")[:-1]
    want = ["%s\t%s" % (k, " ".join(map(str, ref.encode(salsa_preprocess(c), 32)))) for k, c in rows[:500]]
    want.append("last\t" + " ".join(map(str, ref.encode(salsa_preprocess("The End."), 32))))
    check("wsac-bpe: 501 captions, ids equal to the reference", lines == want,
          [x for x in zip(lines, want) if x[0] != x[1]][:2])
    err = r.stderr.decode()
    check("wsac-bpe: invalid UTF-8 line named with its reason, exit 3",
          r.returncode == 3 and "line 501 (bad): text is not valid UTF-8 at byte 3" in err, (r.returncode, err))
    r = subprocess.run([tool("wsac-bpe"), "--tokens", "--raw", "--vocab", VOCAB, "--merges", MERGES],
                       input=b"k\tHello world\n", stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    check("wsac-bpe --tokens --raw", r.stdout == "k\t<s> Hello \u0120world </s>\n".encode(), r.stdout)
    r = subprocess.run([tool("wsac-bpe"), "--vocab", VOCAB, "--merges", VOCAB], input=b"",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=False)
    check("wsac-bpe: a bad merges file is a usage error naming it",
          r.returncode == 1 and b"merges.txt" in r.stderr, (r.returncode, r.stderr))
    done()


if __name__ == "__main__":
    main()
