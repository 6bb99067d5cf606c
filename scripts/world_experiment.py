#!/usr/bin/python3
"""Small steps of pipelines/world-experiment that no tool does, and its report.

  world_experiment.py pair AUDIO.mp CAPTIONS.csv > pairs.mp
      one record per (clip, caption): key FILE#i, the clip's "emb", the caption as "text"
      (the supervised decoder's training stream: prefixdec train reads "emb" and "text")
  world_experiment.py captions CAPTIONS.csv [--col I] [--shift K]
      KEY<TAB>CAPTION with caption_I of the scene K rows further on (cyclic): --shift 0 gives a
      scene's own reference, --shift 1 another scene's (a caption-independent baseline)
  world_experiment.py vocab CAPTIONS.csv > vocab.txt
      a WordPiece vocabulary of the captions' words (BERT's basic tokenizer: lower case, split at
      white space and punctuation), the five special tokens first: a decoder over it needs an
      output layer of a few hundred rows instead of bert-base-uncased's 30522
  world_experiment.py get FILE.json KEY[.KEY...]
      print one value of a JSON file (for the shell)
  world_experiment.py report DIR [NOTE.md]
      docs/world-results.md from what the pipeline left in DIR (Markdown on stdout); NOTE.md, if
      given, is inserted after the first paragraph (a status written by hand)
"""
import csv
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    head = rows[0]
    cols = [i for i, h in enumerate(head) if h.startswith("caption")]
    return [(r[0], [r[i] for i in cols]) for r in rows[1:] if r]


def cmd_pair(audio, csvpath):
    import wsacstream as ws
    with open(audio, "rb") as f:
        hdr, recs, _ = ws.read_stream(f)
    emb = {r["key"]: r["emb"] for r in recs}
    out, missing = [], []
    for key, caps in read_csv(csvpath):
        if key not in emb:
            missing.append(key)
            continue
        for i, c in enumerate(caps, 1):
            out.append({"key": "%s#%d" % (key, i), "emb": emb[key], "text": c})
    for k in missing[:20]:
        print("world_experiment: pair: %s: no audio embedding" % k, file=sys.stderr)
    ws.write_stream(sys.stdout.buffer, "world_experiment.py pair", out,
                    params={"audio": audio, "captions": csvpath})
    return 3 if missing else 0


def cmd_captions(csvpath, col=1, shift=0):
    rows = read_csv(csvpath)
    n = len(rows)
    for i, (key, _) in enumerate(rows):
        print("%s\t%s" % (key, rows[(i + shift) % n][1][col - 1]))
    return 0


def cmd_vocab(csvpath):
    import re
    import unicodedata
    words = set()
    for _, caps in read_csv(csvpath):
        for c in caps:
            c = unicodedata.normalize("NFD", c.lower())
            c = "".join(ch for ch in c if unicodedata.category(ch) != "Mn")
            for t in re.findall(r"[^\W_]+|[^\w\s]|_", c):
                words.add(t)
    sys.stdout.write("".join(w + "\n" for w in ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + sorted(words)))
    return 0


def cmd_get(path, dotted):
    with open(path) as f:
        v = json.load(f)
    for k in dotted.split("."):
        v = v[k]
    print(v)
    return 0


# ------------------------------------------------------------------ report

def load(d, name):
    p = os.path.join(d, name)
    if not os.path.exists(p):
        return None
    with open(p) as f:
        return json.load(f)


def pct(v):
    return "—" if v is None else "%.1f" % (100 * v)


def num(v, fmt="%.3f"):
    return "—" if v is None else fmt % v


def cmd_report(d, note=None):
    with open(os.path.join(d, "config.json")) as f:
        cfg = json.load(f)
    timings = []
    if os.path.exists(os.path.join(d, "timings.tsv")):
        with open(os.path.join(d, "timings.tsv")) as f:
            timings = [l.rstrip("\n").split("\t") for l in f if l.strip()]
    L = []
    w = L.append
    small = cfg.get("small")
    w("# Both papers' experiments in the sound world%s" % (" (reduced run)" if small else ""))
    w("")
    w("Written by `pipelines/world-experiment` (%s) on %s; do not edit by hand. "
      "The world: `%s` (%s train / %s val / %s test scenes, world seed %s). Every number below comes "
      "from one run of the command in the last section; the tables use the **test** split, the choice of the "
      "captioning CLAP uses **val**."
      % (" ".join(cfg["argv"]), cfg["date"], cfg["world"], cfg["n_train"], cfg["n_val"], cfg["n_test"],
         cfg["world_seed"]))
    w("")
    if note:
        with open(note) as f:
            w(f.read().rstrip("\n"))
        w("")
    n_test = int(cfg["n_test"])
    # chance of mAP@10 for one relevant item among N: (1/N) * H_10 (t2a: one clip per caption);
    # a2t: 5 relevant captions among 5N, close to the same
    h10 = sum(1.0 / k for k in range(1, 11))
    w("## Retrieval (SALSA's method), test split")
    w("")
    w("CLAP models trained from scratch by `clap-train` from %s (%s). Stage 1: L_sup, one run per seed. "
      "Stage 2: from the first stage-1 model, L_dist only (`--loss-weight 0 --distill-weight 1`), with its own "
      "embeddings as teacher (self) or the average of all stage-1 models' similarity matrices (ensemble). "
      "Percentages; chance: R@10 = %.1f%%, mAP@10 ≈ %.1f%% (%d test clips)."
      % (cfg["init"], cfg["init_desc"], 100 * 10 / n_test, 100 * h10 / n_test, n_test))
    w("")
    w("| model | t2a R@1 | t2a R@5 | t2a R@10 | t2a mAP@10 | a2t R@1 | a2t R@5 | a2t R@10 | a2t mAP@10 | val mAP@10 (t2a) |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    for m in cfg["models"]:
        r = load(d, "retrieval/%s.test.json" % m) or {}
        v = load(d, "retrieval/%s.val.json" % m) or {}
        t, a = r.get("t2a", {}), r.get("a2t", {})
        label = cfg["model_labels"].get(m, m)
        if m == cfg.get("best"):
            label += " (captioning CLAP)"
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, pct(t.get("R@1")), pct(t.get("R@5")), pct(t.get("R@10")), pct(t.get("mAP@10")),
            pct(a.get("R@1")), pct(a.get("R@5")), pct(a.get("R@10")), pct(a.get("mAP@10")),
            pct(v.get("t2a", {}).get("mAP@10"))))
    w("")
    s1 = [load(d, "retrieval/%s.test.json" % m) for m in cfg["models"] if m.startswith("s1-")]
    s2 = [load(d, "retrieval/%s.test.json" % m) for m in cfg["models"] if m.startswith("s2-")]
    if s1 and s2 and all(s1) and all(s2):
        b1 = max(x["t2a"]["mAP@10"] for x in s1)
        b2 = max(x["t2a"]["mAP@10"] for x in s2)
        w("Stage 2 vs stage 1 (t2a mAP@10, best of each): %.1f%% vs %.1f%%: stage 2 %s here. %s"
          % (100 * b2, 100 * b1, "is better" if b2 > b1 else "is not better",
             "A finding of this run, not forced either way." if True else ""))
        w("")
    w("## Captioning (WSAC's method), test split")
    w("")
    gap = load(d, "gap/train.json") or {}
    sig = load(d, "gap/sigma.json") or {}
    gt = load(d, "gap/test.json") or {}
    w("On the captioning CLAP (`%s`). Decoders: prefixdec GPT-2 (%s), trained text-only on the %s training "
      "captions' CLAP text embeddings, %s epochs; the supervised upper bound is the same decoder trained on "
      "the training **audio** embeddings, each clip paired with its five captions. NI: `--noise %s` "
      "(σ² from `gapshift sigma` on the training captions); ES: `--gap` from `gapshift estimate` on the "
      "training audio and captions; NND/PD: `nnproj` onto the training-caption memory, decoded by the NI "
      "decoder (as `pipelines/evaluate` pairs them). Event recall: `score events` (share of each test scene's "
      "sounds, background and events, that its caption names by a class word of `data/world/classes.tsv`); "
      "false mentions: classes named that the scene does not hold, per caption."
      % (cfg.get("best"), cfg["dec_desc"], cfg["n_train_caps"], cfg["dec_epochs"], num(sig.get("variance"), "%.4g")))
    w("")
    w("| row | BLEU-4 | ROUGE-L | CIDEr-D | METEOR | SPICE | event recall | events | background | false mentions / caption |")
    w("|---|---|---|---|---|---|---|---|---|---|")
    rows = [("ad", "WSAC (`ad`)"), ("ni", "+NI"), ("nies", "+NI+ES"), ("nnd", "+NND"), ("pd", "+PD"),
            ("sup", "supervised upper bound"), ("ref", "a reference caption of the scene (caption_1)"),
            ("other", "baseline: a reference caption of another scene")]
    cider = {}
    for k, label in rows:
        c = load(d, "captions/%s.caption.json" % k) or {}
        e = load(d, "captions/%s.events.json" % k) or {}
        cider[k] = c.get("cider")
        w("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
            label, num(c.get("bleu_4")), num(c.get("rouge_l")), num(c.get("cider")),
            num(c.get("meteor")), num(c.get("spice")),
            pct(e.get("recall")), pct(e.get("recall_events")), pct(e.get("recall_background")),
            num(e.get("false_mentions_per_caption"), "%.2f")))
    w("")
    w("METEOR and SPICE: not computed (their jars are not present here); event columns in %; the reference rows "
      "are scored against all five references, their own included, so their caption metrics are not comparable "
      "to the systems'.")
    w("")
    if cider.get("pd") is not None and cider.get("sup"):
        w("**Headline (WSAC's statistic): PD reaches %.0f%% of the supervised decoder's CIDEr-D** (%.3f / %.3f)."
          % (100 * cider["pd"] / cider["sup"], cider["pd"], cider["sup"]))
    else:
        w("**Headline (WSAC's statistic): PD as a share of the supervised decoder's CIDEr-D: undefined here** "
          "(PD %s, supervised %s)." % (num(cider.get("pd")), num(cider.get("sup"))))
    w("")
    w("## The modality gap of the captioning CLAP")
    w("")
    w("| split | ‖gap‖ | mean cos of true pairs | mean cos audio–audio | mean cos text–text | mean cos audio–text |")
    w("|---|---|---|---|---|---|")
    for name, g in (("train", gap), ("test", gt)):
        w("| %s | %s | %s | %s | %s | %s |" % (name, num(g.get("gap_norm")), num(g.get("pair_cos")),
                                               num(g.get("within_audio_cos")), num(g.get("within_text_cos")),
                                               num(g.get("across_cos"))))
    w("")
    w("σ (`gapshift sigma`, training captions): %s, σ² = %s. The test audio and captions before and after PD "
      "onto the training-caption memory (`gapshift plot`, PCA; `%s/gap-pd.svg`, copied beside the report as "
      "`world-gap-pd.svg`):" % (num(sig.get("sigma"), "%.4f"), num(sig.get("variance"), "%.4g"), cfg["out"]))
    w("")
    w("![the modality gap before and after PD](world-gap-pd.svg)")
    w("")
    w("## Commands, seeds and timings")
    w("")
    w("```sh")
    w(" ".join(cfg["argv"]))
    w("```")
    w("")
    w("Seeds: world %s; stage 1 %s; stage 2 %s; decoders %s. Threads: %s. Machine: %s." % (
        cfg["world_seed"], ", ".join(cfg["seeds"]), cfg["s2_seed"], cfg["dec_seed"], cfg["threads"], cfg["machine"]))
    w("")
    total = 0.0
    groups, order = {}, []
    for name, sec, *_ in timings:
        g = name
        for m in cfg["models"]:
            if name.startswith(m + "-") and name != m + "-train":
                g = "%s: embeddings of every split, retrieval" % m
        if name.startswith("mel-"):
            g = "wav2mel of every split"
        elif name.startswith(("cap-", "score-")):
            g = "decoding and scoring (ad, ni, nies, nnd, pd, sup, references)"
        elif name.startswith(("gap-", "sigma")):
            g = "gapshift estimate, sigma, plot"
        if g not in groups:
            order.append(g)
            groups[g] = 0.0
        groups[g] += float(sec)
        total += float(sec)
    w("| step | seconds |")
    w("|---|---|")
    for g in order:
        w("| %s | %.0f |" % (g, groups[g]))
    w("| **total** | **%.0f** (%.1f min) |" % (total, total / 60))
    w("")
    w("Every command the run executed, in order, is in `%s/commands.sh` (a recipe to rerun on other data by "
      "swapping the CSVs and audio)." % cfg["out"])
    w("")
    sys.stdout.write("\n".join(L))
    return 0


def main(argv):
    if len(argv) < 2 or argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(argv) >= 2 else 1
    cmd, args = argv[1], argv[2:]
    if cmd == "pair" and len(args) == 2:
        return cmd_pair(*args)
    if cmd == "captions" and args:
        col, shift = 1, 0
        if "--col" in args:
            col = int(args[args.index("--col") + 1])
        if "--shift" in args:
            shift = int(args[args.index("--shift") + 1])
        return cmd_captions(args[0], col, shift)
    if cmd == "vocab" and len(args) == 1:
        return cmd_vocab(args[0])
    if cmd == "get" and len(args) == 2:
        return cmd_get(*args)
    if cmd == "report" and len(args) in (1, 2):
        return cmd_report(*args)
    print("world_experiment.py: bad usage (see --help)", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
