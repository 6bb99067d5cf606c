#!/usr/bin/python3
"""Copy the test fixtures from the project's shared data folder into tests/data/
and write PROVENANCE.md (source, how made, sha256). The tests read only the
copies: a user's clone has no ../shared.

    /usr/bin/python3 tests/data/make-fixtures.py [SHARED_DATA]   (default ../shared/data)
"""
import csv
import hashlib
import io
import os
import shutil
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data")

# (destination under tests/data, source under SRC, rows: None = whole file, n = header + first n CSV rows)
FILES = [
    ("wordpiece-dev/clotho-dev-caption1-2000.jsonl", "wordpiece-dev/clotho-dev-caption1-2000.jsonl", None),
    ("wordpiece-dev/audiocaps-train-1000.jsonl", "wordpiece-dev/audiocaps-train-1000.jsonl", None),
    ("wordpiece-dev/README.md", "wordpiece-dev/README.md", None),
    ("ptb-dev/cases.json", "ptb-dev/cases.json", None),
    ("metrics-dev/clotho-eval-300.corpus.json", "metrics-dev/clotho-eval-300.corpus.json", None),
    ("metrics-dev/clotho-eval-300.expected.json", "metrics-dev/clotho-eval-300.expected.json", None),
    ("metrics-dev/audiocaps-test-200.corpus.json", "metrics-dev/audiocaps-test-200.corpus.json", None),
    ("metrics-dev/audiocaps-test-200.expected.json", "metrics-dev/audiocaps-test-200.expected.json", None),
    ("metrics-dev/README.md", "metrics-dev/README.md", None),
    ("clotho/val-50.csv", "clotho/val.csv", 50),
    ("clotho/train-20.csv", "clotho/train.csv", 20),
    ("audiocaps/val-50.csv", "audiocaps/val.csv", 50),
]


def head(src, n):
    """the header and first n records, byte for byte as they are in the file"""
    raw = open(src, "rb").read()
    text = raw.decode("utf-8")
    rdr = csv.reader(io.StringIO(text, newline=""))
    for _ in range(n + 1):
        next(rdr)
    # csv.reader over StringIO: line_num counts physical lines read
    lines = text.splitlines(keepends=True)[:rdr.line_num]
    return "".join(lines).encode("utf-8")


def main():
    rows = []
    for dst, src, n in FILES:
        s, d = os.path.join(SRC, src), os.path.join(HERE, dst)
        os.makedirs(os.path.dirname(d), exist_ok=True)
        if n is None:
            shutil.copyfile(s, d)
            how = "copied whole"
        else:
            open(d, "wb").write(head(s, n))
            how = "header and first %d rows, bytes unchanged" % n
        sha = hashlib.sha256(open(d, "rb").read()).hexdigest()
        rows.append("| `%s` | `shared/data/%s` | %s | `%s` |" % (dst, src, how, sha))
    with open(os.path.join(HERE, "PROVENANCE.md"), "w") as f:
        f.write(PROV.replace("@ROWS@", "\n".join(rows)))
    print("make-fixtures: %d files" % len(rows))


PROV = """# Test fixtures: where they came from

The tests read only files inside the repository (and what they generate): a
user's clone has no `../shared`. These are copies of the project's shared data
folder (Clotho and AudioCaps caption CSVs, the tokenizer and metric reference
fixtures), trimmed to what the tests use, made by `make-fixtures.py` beside this
file (`/usr/bin/python3 tests/data/make-fixtures.py ../shared/data` rewrites
them and this table).

- `wordpiece-dev/`: BERT WordPiece reference tokenizations (google-research/bert
  `tokenization.py`; see `wordpiece-dev/README.md`). The vocabulary they use is
  the one bundled at `data/bert-base-uncased-vocab.txt` (md5
  `64800d5d8528ce344256daf115d4965e`, identical to the shared copy).
- `metrics-dev/`: pycocoevalcap reference values of BLEU, ROUGE-L and CIDEr-D
  on 300 Clotho and 200 AudioCaps items (see `metrics-dev/README.md`).
- `ptb-dev/cases.json`: PTB tokenizer probes (Stanford CoreNLP 3.4.1's tokens and
  pycocoevalcap's string for each input).
- `clotho/`, `audiocaps/`: the first rows of the Clotho v2 and AudioCaps caption
  CSVs, byte for byte (`clap-text --csv` tests).

| file | source | how | sha256 |
|---|---|---|---|
@ROWS@
"""

if __name__ == "__main__":
    main()
