"""lib/wordpiece.c against the google-research fixtures and against
tests/py/ref_wordpiece.py (Hugging Face BertTokenizer 4.27, re-typed).

The C side runs through build/tests/test_wordpiece in its helper modes
(texts hex-encoded, one per line). Checks:
  - every line of the wordpiece-dev fixtures: ids exactly;
  - a few hundred hard strings (hand-written and random mixtures of
    accented Latin, Greek, Cyrillic, CJK, emoji, combining marks, Arabic,
    zero-width and control characters, odd spaces, long words, literal
    special tokens, punctuation, digits): ids equal to the reference;
  - every code point of planes 0-3 and 14 (and a sample of the others)
    alone and inside a word: equal to the reference except where Python's
    unicodedata calls the character unassigned (utf8proc is a newer Unicode);
  - wp_encode with max_length 30, and decode (skip_special_tokens=True) of
    random id sequences;
  - invalid UTF-8 refused with the byte offset.
"""
import glob
import json
import os
import random
import subprocess
import sys
import unicodedata

from tap import ROOT, DATA, VOCAB, check, done, note
from ref_wordpiece import BertTokenizerRef

BUILD = os.environ.get("WSAC_BUILD", os.path.join(ROOT, "build"))
HELPER = os.path.join(BUILD, "tests", "test_wordpiece")
DEV = os.path.join(DATA, "wordpiece-dev")


def run(mode, lines, *args):
    """One output line per input line from the C helper."""
    inp = "".join(l + "\n" for l in lines).encode()
    r = subprocess.run([HELPER, mode, VOCAB, *map(str, args)], input=inp, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, check=False)
    if r.returncode != 0:
        raise RuntimeError("%s %s: status %d: %s" % (HELPER, mode, r.returncode, r.stderr.decode(errors="replace")))
    out = r.stdout.decode().split("\n")
    assert out[-1] == ""
    return out[:-1]


def c_ids(texts):
    out = run("--tokenize", [t.encode("utf-8", "surrogatepass").hex() for t in texts])
    return [None if o.startswith("ERR") else [int(x) for x in o.split()] for o in out]


def hard_strings():
    s = [
        "", " ", "\t\n\r", "a", "A", "Québec", "QUÉBEC", "naïve café", "cafe\u0301", "e\u0301\u0323",
        "Ångström", "Øresund", "Łódź", "Straße", "ẞ", "İstanbul", "ıi", "ǅungla", "ﬁﬂ", "Ǆ",
        "ΟΔΟΣ", "οδος", "ΌΣΟΣ ΣΟΦΟΣ.", "Σ", "ΑΣ Σ", "ΣΑ", "ὈΔΥΣΣΕΎΣ", "ᾼ", "ΐ",
        "Привет, мир!", "ЁЖИК", "Ґанок", "日本語のテキスト", "中文，标点。", "한국어 텍스트", "漢字かな交じり",
        "\U00020000\U0002A6D6", "\uF900\uFA6D", "\U0002F800", "㐀",  # CJK extension / compatibility
        "🙂👍🏽👨‍👩‍👧", "❤️", "🇫🇷", "a\u200db", "a\u200bb", "a\u200cb", "a\ufeffb", "\u00ad", "a\u2060b",
        "a\u00a0b", "a\u2007b", "a\u202fb", "a\u3000b", "a\u2028b", "a\u2029b", "a\x85b", "a\x1cb", "a\x0bb",
        "a\x0cb", "a\x00b", "\x00", "a\ufffdb", "\ue000", "\U000F0000", "a\x7fb", "\x01\x02\x03",
        "مرحبا بالعالم", "السَّلَامُ عَلَيْكُمْ", "שָׁלוֹם", "नमस्ते", "ภาษาไทย", "ქართული", "Հայերեն",
        "x" * 99, "x" * 100, "x" * 101, "é" * 100, "é" * 101, "e\u0301" * 100, "e\u0301" * 101,
        "ab" * 60, "supercalifragilisticexpialidocious", "antidisestablishmentarianism",
        "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]", "[mask]", "[Mask]", "[MASK", "MASK]", "[[MASK]]",
        "a[MASK]b", "[CLS][SEP]", "x [UNK] y", "[UNK]\u2028z", "z\u3000[SEP]\u3000", " [PAD] ",
        "[MA\x00SK]", "[MA\u200bSK]", "[ＭＡＳＫ]", "ＭＡＳＫ", "[CLS]é[SEP]",
        "Hello, World!!", "don't", "it's", "rock'n'roll", "e-mail", "U.S.A.", "a...b", "--", "(a)", "[b]",
        "{c}", "<d>", "a/b\\c", "50%", "$3.50", "#1", "@user", "a&b", "x^2", "`q`", "~", "|", "a_b",
        "¿Qué?", "¡Hola!", "«quote»", "„quote“", "“smart”", "‘single’", "a—b", "a–b", "…", "•", "·",
        "§2", "¶", "†", "‰", "′″", "〈〉", "《》", "「」", "、。", "！？", "٫", "؟", "।", "¤", "©", "®", "™",
        "°C", "±", "×÷", "½¼¾", "²³", "①②", "Ⅻ", "٣٤٥", "١٢٣", "𝟘𝟙", "0123456789", "3.14159", "1,000,000",
        "12:30", "2023-03-28", "𝐇𝐞𝐥𝐥𝐨", "Ｈｅｌｌｏ", "ｈｅｌｌｏ", "ｶﾀｶﾅ",
        "x\U0001D16D\U0001D165", "\U0001D15E\U0001D16D", "a\u0345\u0301", "\u1E9B\u0323",
        "\u0F73\u0F75\u0F81", "\u0344", "\u0958", "\u2126\u212A\u212B", "\u1FEF", "\u037E", "\u0387",
        "a\u034fb", "a\ufe0fb", "a\U000E0001b", "a\U000E0020b", "\u115F\u1160", "가나다", "\u1100\u1161\u11A8",
        "A dog barks. A cat meows! Does it rain?", "The  quick\tbrown\n\nfox",
        "   leading and trailing   ", "MIXED case WoRdS", "tab\tseparated\tvalues", "line1\r\nline2",
    ]
    rnd = random.Random(20230328)
    pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
            + list(" \t\n.,!?'\"-()[]{}:;/\\@#$%^&*_+=~`|<>")
            + list("áéíóúàèìòùâêîôûäëïöüñçåøæœßÁÉÍÓÚÄÖÜÑÇÅØÆŒİıŁłŠšŽž")
            + list("αβγδεζηθικλμνξοπρστυφχψωΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩςάέήίόύώΐΰ")
            + list("абвгдежзийклмнопрстуфхцчшщъыьэюяАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯёЁ")
            + list("的一是不了人我在有他这中大来上国个到说们为子和你地出道也时年")
            + list("あいうえおカキクケコ한국어ㄱㅏ")
            + list("مرحباسلامעבריתहिन्दीไทย")
            + ["\u0300", "\u0301", "\u0308", "\u0323", "\u0327", "\u0345", "\u05b8", "\u064e", "\u093f",
               "\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u00a0", "\u2028", "\u3000",
               "\x00", "\x07", "\x1b", "\x1f", "\x7f", "\x85", "\ufffd", "\ue000",
               "🙂", "👍", "🏽", "❤", "\ufe0f", "🇫", "🇷", "½", "²", "①", "ﬁ", "Ｈ", "ｈ", "[MASK]", "[UNK]",
               "[CLS]", "[", "]", "…", "—", "«", "»", "¿", "¡", "“", "”", "’", "·", "•"])
    for _ in range(300):
        n = rnd.choice([1, 2, 3, 5, 8, 13, 21, 40, 80])
        s.append("".join(rnd.choice(pool) for _ in range(n)))
    for _ in range(20):  # long words around the 100-character limit
        base = "".join(rnd.choice("abcdefghijklmnopqrstuvwxyzé\u0301") for _ in range(rnd.randint(95, 106)))
        s.append(base)
    return s


def main():
    if not os.path.exists(HELPER):
        check("helper built: " + HELPER, False, "run make")
        done()
    if not os.path.exists(VOCAB):
        check("vocab found: " + VOCAB, False, "data/bert-base-uncased-vocab.txt is part of the repository")
        done()
    ref = BertTokenizerRef(VOCAB)

    # ---- fixtures
    rows = []
    for path in sorted(glob.glob(os.path.join(DEV, "*.jsonl"))):
        with open(path, encoding="utf-8") as f:
            rows += [json.loads(l) for l in f if l.strip()]
    got = c_ids([r["text"] for r in rows])
    bad = [i for i, (r, g) in enumerate(zip(rows, got)) if g != r["ids"]]
    note("fixture: %d of %d lines match exactly" % (len(rows) - len(bad), len(rows)))
    check("fixtures: all %d lines, ids exact" % len(rows), len(rows) == 3000 and not bad,
          "%d differ, first: %r" % (len(bad), rows[bad[0]]["text"] if bad else ""))
    refbad = sum(ref.ids(r["text"]) != r["ids"] for r in rows)
    check("fixtures: the Python reference agrees too", refbad == 0, "%d differ" % refbad)

    # ---- hard strings
    hs = hard_strings()
    got = c_ids(hs)
    bad = [(t, g, ref.ids(t)) for t, g in zip(hs, got) if g != ref.ids(t)]
    note("hard strings: %d of %d match the reference" % (len(hs) - len(bad), len(hs)))
    check("hard strings: %d strings equal to the reference" % len(hs), not bad,
          "%d differ, first %r: C %s ref %s" % ((len(bad),) + bad[0]) if bad else "")

    # ---- every code point (a sample of the unassigned planes)
    cps = [c for c in range(0x110000) if not (0xD800 <= c <= 0xDFFF)
           and (c < 0x40000 or 0xE0000 <= c < 0xF0000 or c % 251 == 0)]
    texts = ["x%sy %s" % (chr(c), chr(c)) for c in cps]
    got = c_ids(texts)
    diff = [c for c, t, g in zip(cps, texts, got) if g != ref.ids(t)]
    newer = [c for c in diff if unicodedata.category(chr(c)) == "Cn"]
    other = [c for c in diff if unicodedata.category(chr(c)) != "Cn"]
    note("code points: %d tested, %d differ, all unassigned in Python's Unicode %s (assigned in utf8proc's): %s"
         % (len(cps), len(diff), unicodedata.unidata_version,
            ", ".join("U+%04X" % c for c in newer[:6]) + (" ..." if len(newer) > 6 else "")))
    check("code points: %d, each alone and inside a word, equal to the reference" % len(cps), not other,
          "%d differ though assigned in Python: %s" % (len(other), ["U+%04X" % c for c in other[:10]]))

    # ---- encode, max_length 30 (the CLAP call)
    texts = [r["text"] for r in rows[:500]] + hs + [" ".join(["word"] * 40), "a " * 28, "a " * 29, ""]
    out = run("--encode", [t.encode().hex() for t in texts], 30)
    bad = []
    for t, o in zip(texts, out):
        f = o.split()
        want = ref.ids(t)
        if f[0] != ("T" if len(want) > 28 else "F") or [int(x) for x in f[1:]] != ref.encode(t, 30):
            bad.append(t)
    check("encode: max_length 30 equal to the reference on %d texts" % len(texts), not bad,
          "%d differ, first %r" % (len(bad), bad[0] if bad else ""))

    # ---- decode
    rnd = random.Random(7)
    seqs = [ref.ids(r["text"]) for r in rows[:300]]
    seqs += [[101] + ref.ids(t) + [102, 0, 0] for t in hs[:150]]
    special = [0, 100, 101, 102, 103]
    punct = [ref.vocab[p] for p in [".", ",", "?", "!", "'", "s", "m", "ve", "re", "t", "n", "##s", "##t"]]
    for _ in range(400):
        seqs.append([rnd.choice([rnd.randrange(30522), rnd.choice(special), rnd.choice(punct), rnd.choice(punct)])
                     for _ in range(rnd.randint(0, 25))])
    out = run("--decode", [" ".join(map(str, s)) for s in seqs])
    bad = [(s, bytes.fromhex(o).decode(), ref.decode(s)) for s, o in zip(seqs, out)
           if bytes.fromhex(o).decode() != ref.decode(s)]
    check("decode: %d id sequences equal to decode(skip_special_tokens=True)" % len(seqs), not bad,
          "%d differ, first %r" % (len(bad), bad[0] if bad else ""))
    seqs2 = [[1037, -1, 30522, 1038, 50256, 101], [30521, 99999]]
    out = run("--decode", [" ".join(map(str, s)) for s in seqs2], 4)
    check("decode: out-of-range ids as [UNK] with WP_DECODE_OOR_UNK, as HF",
          [bytes.fromhex(o).decode() for o in out] == [ref.decode(s) for s in seqs2], out)
    out = run("--decode", [" ".join(map(str, s)) for s in seqs[:200]], 1)
    check("decode: skip_special_tokens=False",
          [bytes.fromhex(o).decode() for o in out] == [ref.decode(s, skip_special_tokens=False) for s in seqs[:200]])

    # ---- invalid UTF-8
    bad_inputs = [b"abc\xff", b"\xc0\xaf", b"ok \xed\xa0\x80", b"x\xe4\xbd", b"\xf4\x90\x80\x80", b"[MASK]\x80"]
    where = [3, 0, 3, 1, 0, 6]
    out = run("--tokenize", [b.hex() for b in bad_inputs])
    check("invalid UTF-8: refused, naming the byte offset",
          all(o.startswith("ERR") and ("at byte %d " % w) in o for o, w in zip(out, where)), out)
    done()


if __name__ == "__main__":
    main()
