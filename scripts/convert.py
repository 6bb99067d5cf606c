#!/usr/bin/python3
"""Convert published checkpoints to wsac model files (safetensors, fp32).

  python3 scripts/convert.py clap CKPT.pt --vocab VOCAB.txt -o clap.safetensors
  python3 scripts/convert.py decoder CKPT.pt [--vocab VOCAB.txt] [--heads 4] -o decoder.safetensors
  python3 scripts/convert.py gap GAP.pkl -o gap.mp
  python3 scripts/convert.py teacher AUDIO.pt SENTENCE.pt -o PREFIX [--keep-path]
  python3 scripts/convert.py salsa CKPT --vocab vocab.json --merges merges.txt -o salsa.safetensors

clap: a WavCaps CLAP checkpoint (torch.save'd dict whose 'model' holds the
ASE state_dict: audio_encoder.audio_enc.*, audio_proj.*,
text_encoder.text_encoder.*, text_proj.*, temp) and the bert-base-uncased
vocab. Writes every weight under its published name, the vocabulary as the
U8 tensor 'tokenizer.vocab' (the vocab file's bytes: line i is token id i),
and the configuration in __metadata__. Skips what the C tools do not need:
position_ids, num_batches_tracked, temp, and the torchlibrosa front end
(STFT kernels, melW), which wav2mel computes. Refuses a checkpoint with
unknown or missing keys, or inconsistent shapes, naming them.

Sizes are read from the tensors, so the same code converts the full model and
reduced test models; only the number of attention heads cannot be read from
weights (--text-heads, 12 for BERT-base).

decoder: a WSAC TextDecoder state_dict (train.py's epoch-N.pt / best_model.pt:
clap_project.model.0.*, decoder.transformer.*, decoder.lm_head.weight), bare
or under 'model'. Writes the published names and layouts unchanged (HF
Conv1D weights stay [in, out]); skips the causal-mask buffers attn.bias and
attn.masked_bias; drops decoder.lm_head.weight after checking that it equals
wte (the head is tied; an untied head is refused). The heads count cannot be
read from weights (--heads, 4 as in WSAC's decoder_config.pkl). The BERT
vocabulary (default: data/bert-base-uncased-vocab.txt) goes in as
'tokenizer.vocab'; it may be smaller than the embedding (50257 rows in the
published model: ids >= 30522 are never emitted).

gap: WSAC's --modality_gap_path file (train.py pickle.load()s it: a pickled
torch tensor), or a pickled numpy array, a torch.save file or a .npy, to the
gap stream prefixdec train --gap and gapshift read: one record "gap" whose
"emb" is the vector as it is (f32 [D], not normalised; a [1, D] or [1, 1, D]
tensor is flattened). Read by scripts/safepickle.py, which rebuilds tensors
and arrays and refuses any other pickle without running it.

teacher: SALSA's cmd_generate_embeddings output, one pair per teacher
(clothov2_audio_embeddings_train.pt: {audio path: tensor},
clothov2_sentence_embeddings_train.pt: {caption: tensor}; fp16, projected,
not normalised), to the teacher streams clap-train --teacher AUDIO,TEXT reads:
PREFIX.audio.mp (key = the path's file name, the key wav2mel gives the clip,
or the path as SALSA wrote it with --keep-path; "path" keeps it) and
PREFIX.text.mp (key = the caption's position in the dictionary, "text" = the
caption exactly: one record per distinct caption, as in SALSA, so duplicate
captions share a vector). "emb" is f32 and L2-normalised, as in every wsac
embedding stream; SALSA normalises each teacher's vectors before the
cosine, so stage 2 sees the same correspondences.

salsa: a SALSA Lightning checkpoint (torch.save'd dict whose 'state_dict'
holds experiments/ex_dcase24.py's module names: audio_embedding_model.model.
model.* (PaSST), project_audio.0.*, sentence_embedding_model.* (RoBERTa),
project_sentence.0.*, tau) and the RoBERTa tokenizer files. Writes every
weight of both towers under its published name, vocab.json and merges.txt as
the U8 tensors 'tokenizer.vocab_json' and 'tokenizer.merges' (the files'
bytes), and architecture, front end, segment rule and tokenizer settings in
__metadata__ (formats/safetensors.md). Skips the mel front end's buffers,
PaSST's classifier heads (head.*, head_dist.*), position_ids, tau (kept as
metadata clap.tau), timing_tau, audio_token and posencode.* (the audio
sequence model's, unused: SALSA's sequence_model.num_layers is 0; a
checkpoint with audio_sequence.* or audio_output_projection.* is refused). Heads, patch stride, mel bins
and the segment rule cannot be read from weights: options, defaulting to
SALSA's (12 / 16 heads, 16x16, 128, 10-s segments of a fixed 30 s).
"""
import argparse
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import sttools  # noqa: E402
import safepickle  # noqa: E402
import wsacstream  # noqa: E402

A = "audio_encoder.audio_enc."
T = "text_encoder.text_encoder."
SKIP = [
    re.compile(r"^temp$"),
    re.compile(r".*\.num_batches_tracked$"),
    re.compile(r"^" + re.escape(T) + r"embeddings\.position_ids$"),
    re.compile(r"^" + re.escape(A) + r"audio_feats_extractor\..*"),
]
BN = ("weight", "bias", "running_mean", "running_var")


class ConvertError(Exception):
    pass


def load_checkpoint(path):
    import torch
    try:
        ck = torch.load(path, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ConvertError("%s: cannot read the checkpoint: %s" % (path, " ".join(str(e).split())))
    if isinstance(ck, dict) and "model" in ck and isinstance(ck["model"], dict):
        ck = ck["model"]
    if not isinstance(ck, dict):
        raise ConvertError("%s: not a state_dict (nor a dict with 'model')" % path)
    odd = [k for k in ck if not isinstance(k, str)]
    if odd:
        raise ConvertError("%s: state_dict keys must be strings, found %r" % (path, odd[0]))
    out = {}
    for k, v in ck.items():
        if hasattr(v, "detach"):
            out[k] = v.detach().cpu().numpy()
    return out


def clap_expected(sd, heads):
    """The key -> shape map the architecture needs, derived from sizes in sd."""
    def shape(k):
        if k not in sd:
            raise ConvertError("missing key %s" % k)
        return sd[k].shape

    exp = {}
    n_mels = shape(A + "bn0.weight")[0]
    for p in BN:
        exp[A + "bn0." + p] = (n_mels,)
    blocks = sorted(int(m.group(1)) for k in sd for m in [re.match(re.escape(A) + r"conv_block(\d+)\.", k)] if m)
    blocks = sorted(set(blocks))
    if not blocks or blocks != list(range(1, len(blocks) + 1)):
        raise ConvertError("conv blocks must be conv_block1..N, found %s" % blocks)
    cin, chans = 1, []
    for b in blocks:
        pre = A + "conv_block%d." % b
        cout = shape(pre + "conv1.weight")[0]
        exp[pre + "conv1.weight"] = (cout, cin, 3, 3)
        exp[pre + "conv2.weight"] = (cout, cout, 3, 3)
        for bn in ("bn1.", "bn2."):
            for p in BN:
                exp[pre + bn + p] = (cout,)
        chans.append(cout)
        cin = cout
    emb = shape("audio_proj.0.weight")[0]
    exp.update({"audio_proj.0.weight": (emb, cin), "audio_proj.0.bias": (emb,),
                "audio_proj.2.weight": (emb, emb), "audio_proj.2.bias": (emb,)})
    vocab, hid = shape(T + "embeddings.word_embeddings.weight")
    npos = shape(T + "embeddings.position_embeddings.weight")[0]
    ntype = shape(T + "embeddings.token_type_embeddings.weight")[0]
    exp[T + "embeddings.word_embeddings.weight"] = (vocab, hid)
    exp[T + "embeddings.position_embeddings.weight"] = (npos, hid)
    exp[T + "embeddings.token_type_embeddings.weight"] = (ntype, hid)
    exp[T + "embeddings.LayerNorm.weight"] = (hid,)
    exp[T + "embeddings.LayerNorm.bias"] = (hid,)
    layers = sorted(set(int(m.group(1)) for k in sd for m in [re.match(re.escape(T) + r"encoder\.layer\.(\d+)\.", k)] if m))
    if not layers or layers != list(range(len(layers))):
        raise ConvertError("text encoder layers must be 0..L-1, found %s" % layers)
    inter = shape(T + "encoder.layer.0.intermediate.dense.weight")[0]
    if hid % heads:
        raise ConvertError("hidden size %d is not divisible by --text-heads %d" % (hid, heads))
    for L in layers:
        pre = T + "encoder.layer.%d." % L
        for m in ("query", "key", "value"):
            exp[pre + "attention.self.%s.weight" % m] = (hid, hid)
            exp[pre + "attention.self.%s.bias" % m] = (hid,)
        exp[pre + "attention.output.dense.weight"] = (hid, hid)
        exp[pre + "attention.output.dense.bias"] = (hid,)
        exp[pre + "attention.output.LayerNorm.weight"] = (hid,)
        exp[pre + "attention.output.LayerNorm.bias"] = (hid,)
        exp[pre + "intermediate.dense.weight"] = (inter, hid)
        exp[pre + "intermediate.dense.bias"] = (inter,)
        exp[pre + "output.dense.weight"] = (hid, inter)
        exp[pre + "output.dense.bias"] = (hid,)
        exp[pre + "output.LayerNorm.weight"] = (hid,)
        exp[pre + "output.LayerNorm.bias"] = (hid,)
    exp.update({"text_proj.0.weight": (emb, hid), "text_proj.0.bias": (emb,),
                "text_proj.2.weight": (emb, emb), "text_proj.2.bias": (emb,)})
    cfg = {"n_mels": n_mels, "channels": chans, "embed": emb, "vocab": vocab, "hidden": hid, "layers": len(layers),
           "heads": heads, "intermediate": inter, "positions": npos}
    return exp, cfg


def convert_clap(args):
    sd = load_checkpoint(args.checkpoint)
    kept = {k: v for k, v in sd.items() if not any(p.match(k) for p in SKIP)}
    exp, cfg = clap_expected(kept, args.text_heads)
    unknown = sorted(set(kept) - set(exp))
    missing = sorted(set(exp) - set(kept))
    if unknown:
        raise ConvertError("unknown keys (not part of WavCaps CNN14-BERT CLAP): %s%s"
                           % (", ".join(unknown[:10]), " ..." if len(unknown) > 10 else ""))
    if missing:
        raise ConvertError("missing keys: %s%s" % (", ".join(missing[:10]), " ..." if len(missing) > 10 else ""))
    bad = ["%s has shape %s, expected %s" % (k, list(kept[k].shape), list(s)) for k, s in exp.items()
           if tuple(kept[k].shape) != tuple(s)]
    if bad:
        raise ConvertError("inconsistent shapes: " + "; ".join(bad[:5]))
    with open(args.vocab, "rb") as f:
        vocab = f.read()
    try:
        tokens = vocab.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ConvertError("%s: vocabulary is not UTF-8: %s" % (args.vocab, e))
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) != cfg["vocab"]:
        raise ConvertError("%s has %d tokens but the word embeddings have %d rows"
                           % (args.vocab, len(tokens), cfg["vocab"]))
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        if special not in tokens:
            raise ConvertError("%s lacks %s" % (args.vocab, special))
    out = {k: np.asarray(kept[k], dtype=np.float32) for k in sorted(exp)}
    out["tokenizer.vocab"] = np.frombuffer(vocab, dtype=np.uint8)
    meta = {
        "wsac.format": "1", "wsac.model": "clap", "wsac.source": os.path.basename(args.checkpoint),
        "clap.audio.n_mels": cfg["n_mels"], "clap.audio.channels": ",".join(map(str, cfg["channels"])),
        "clap.audio.bn_eps": "1e-05", "clap.embed_dim": cfg["embed"],
        "clap.text.layers": cfg["layers"], "clap.text.heads": cfg["heads"], "clap.text.hidden": cfg["hidden"],
        "clap.text.intermediate": cfg["intermediate"], "clap.text.ln_eps": "1e-12",
        "clap.text.max_len": args.max_len, "clap.text.vocab_size": cfg["vocab"],
        "clap.text.lowercase": "1", "clap.text.max_word_chars": "100",
    }
    sttools.save(args.output, out, meta)
    n = sum(v.size for k, v in out.items() if k != "tokenizer.vocab")
    print("convert.py: wrote %s: %d tensors, %.1fM parameters; audio channels %s, text %d layers x %d, "
          "embedding %d" % (args.output, len(out), n / 1e6, cfg["channels"], cfg["layers"], cfg["hidden"],
                            cfg["embed"]), file=sys.stderr)


D = "decoder.transformer."
DEC_SKIP = re.compile(r"^" + re.escape(D) + r"h\.\d+\.attn\.(bias|masked_bias)$")
DEFAULT_VOCAB = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data",
                             "bert-base-uncased-vocab.txt")


def read_vocab(path, rows):
    """The vocab.txt bytes, checked: UTF-8, the BERT special tokens, at most `rows` tokens."""
    try:
        with open(path, "rb") as f:
            vocab = f.read()
    except OSError as e:
        raise ConvertError("%s: %s" % (path, e.strerror))
    try:
        tokens = vocab.decode("utf-8").split("\n")
    except UnicodeDecodeError as e:
        raise ConvertError("%s: vocabulary is not UTF-8: %s" % (path, e))
    if tokens and tokens[-1] == "":
        tokens.pop()
    if len(tokens) > rows:
        raise ConvertError("%s has %d tokens but the token embedding only %d rows" % (path, len(tokens), rows))
    for special in ("[PAD]", "[UNK]", "[CLS]", "[SEP]"):
        if special not in tokens:
            raise ConvertError("%s lacks %s" % (path, special))
    return vocab, len(tokens)


def decoder_expected(sd, heads):
    def shape(k):
        if k not in sd:
            raise ConvertError("missing key %s" % k)
        return sd[k].shape

    vocab, C = shape(D + "wte.weight")
    P = shape(D + "wpe.weight")[0]
    E = shape("clap_project.model.0.weight")[1]
    layers = sorted(set(int(m.group(1)) for k in sd for m in [re.match(re.escape(D) + r"h\.(\d+)\.", k)] if m))
    if not layers or layers != list(range(len(layers))):
        raise ConvertError("decoder layers must be h.0..h.N-1, found %s" % layers)
    Fi = shape(D + "h.0.mlp.c_fc.weight")[1]
    if heads < 1 or C % heads:
        raise ConvertError("width %d is not divisible by --heads %d" % (C, heads))
    exp = {"clap_project.model.0.weight": (C, E), "clap_project.model.0.bias": (C,),
           D + "wte.weight": (vocab, C), D + "wpe.weight": (P, C),
           D + "ln_f.weight": (C,), D + "ln_f.bias": (C,)}
    for i in layers:
        p = D + "h.%d." % i
        exp.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,),
                    p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                    p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                    p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                    p + "mlp.c_fc.weight": (C, Fi), p + "mlp.c_fc.bias": (Fi,),
                    p + "mlp.c_proj.weight": (Fi, C), p + "mlp.c_proj.bias": (C,)})
    cfg = {"vocab": vocab, "width": C, "positions": P, "prefix": E, "layers": len(layers), "inner": Fi}
    return exp, cfg


def convert_decoder(args):
    sd = load_checkpoint(args.checkpoint)
    kept = {k: v for k, v in sd.items() if not DEC_SKIP.match(k)}
    head = kept.pop("decoder.lm_head.weight", None)
    exp, cfg = decoder_expected(kept, args.heads)
    unknown = sorted(set(kept) - set(exp))
    missing = sorted(set(exp) - set(kept))
    if unknown:
        raise ConvertError("unknown keys (not part of the WSAC TextDecoder): %s%s"
                           % (", ".join(unknown[:10]), " ..." if len(unknown) > 10 else ""))
    if missing:
        raise ConvertError("missing keys: %s%s" % (", ".join(missing[:10]), " ..." if len(missing) > 10 else ""))
    bad = ["%s has shape %s, expected %s" % (k, list(kept[k].shape), list(s)) for k, s in exp.items()
           if tuple(kept[k].shape) != tuple(s)]
    if bad:
        raise ConvertError("inconsistent shapes: " + "; ".join(bad[:5]))
    if head is not None and not np.array_equal(head, kept[D + "wte.weight"]):
        raise ConvertError("decoder.lm_head.weight differs from %swte.weight: an untied output head is not "
                           "supported (the published decoder ties them)" % D)
    vocab, ntok = read_vocab(args.vocab, cfg["vocab"])
    out = {k: np.asarray(kept[k], dtype=np.float32) for k in exp}
    for k, v in out.items():
        if not np.all(np.isfinite(v)):
            raise ConvertError("%s has NaN or infinite values" % k)
    out["tokenizer.vocab"] = np.frombuffer(vocab, dtype=np.uint8)
    meta = {
        "wsac.format": "1", "wsac.model": "decoder", "wsac.source": os.path.basename(args.checkpoint),
        "decoder.layers": cfg["layers"], "decoder.heads": args.heads, "decoder.ln_eps": "1e-05",
        "decoder.activation": "gelu_new", "decoder.vocab_size": cfg["vocab"],
    }
    sttools.save(args.output, out, meta)
    n = sum(v.size for k, v in out.items() if k != "tokenizer.vocab")
    print("convert.py: wrote %s: %d tensors, %.1fM parameters; %d layers x %d heads, width %d, vocab %d "
          "(tokenizer %d), prefix %d" % (args.output, len(out), n / 1e6, cfg["layers"], args.heads, cfg["width"],
                                          cfg["vocab"], ntok, cfg["prefix"]), file=sys.stderr)


# ------------------------------------------------------------------ gap, teacher (published files)

def safe_load(path):
    """A pickle / torch.save / .npy file's tensors as numpy, nothing else run (scripts/safepickle.py)."""
    try:
        return safepickle.load(path)
    except safepickle.UnsafePickle as e:
        raise ConvertError("%s: refused: %s" % (path, e))
    except safepickle.FormatError as e:
        raise ConvertError("%s: %s" % (path, e))
    except OSError as e:
        raise ConvertError("%s: %s" % (path, e.strerror or e))


def source_kind(path, obj):
    with open(path, "rb") as f:
        head = f.read(6)
    if head == b"\x93NUMPY":
        return "npy"
    if head[:4] == b"PK\x03\x04":
        return "torch.save"
    if isinstance(obj, safepickle.TorchTensor):
        return "pickled torch tensor"
    return "pickled numpy array"


def convert_gap(args):
    obj = safe_load(args.file)
    if not isinstance(obj, np.ndarray):
        raise ConvertError("%s: holds %s, not a tensor or an array (WSAC's --modality_gap_path is a pickled "
                           "torch tensor)" % (args.file, type(obj).__name__))
    if obj.dtype.kind != "f":
        raise ConvertError("%s: a %s tensor; the gap is a floating-point vector" % (args.file, obj.dtype))
    big = [n for n in obj.shape if n != 1]
    if len(big) != 1:
        raise ConvertError("%s: shape %s is not a vector ([D], [1, D] or [1, 1, D])" % (args.file, list(obj.shape)))
    v = np.asarray(obj, dtype=np.float64).reshape(-1)
    if not np.all(np.isfinite(v)):
        raise ConvertError("%s: the vector has NaN or infinite values" % args.file)
    emb = v.astype(np.float32)
    kind = source_kind(args.file, obj)
    params = {"source": os.path.basename(args.file), "source_kind": kind, "source_dtype": str(obj.dtype),
              "source_shape": list(obj.shape), "normalised": False}
    rec = {"key": "gap", "emb": emb, "gap_norm": float(np.linalg.norm(emb.astype(np.float64)))}
    write_atomic(args.output, "convert.py gap", [rec], params)
    print("convert.py: wrote %s: gap of %d values (%s %s %s), |gap| = %.6f" %
          (args.output, emb.size, kind, obj.dtype, list(obj.shape), rec["gap_norm"]), file=sys.stderr)


def write_atomic(path, tool, records, params, failed=()):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        wsacstream.write_stream(f, tool, records, params, errors=len(failed), failed=list(failed))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


AUDIO_EXT = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aac", ".opus")


def teacher_dict(path, what):
    d = safe_load(path)
    if not isinstance(d, dict) or not d:
        raise ConvertError("%s: holds %s, not SALSA's {%s: tensor} dictionary" %
                           (path, "an empty dict" if isinstance(d, dict) else type(d).__name__, what))
    dim = None
    for k, v in d.items():
        if not isinstance(k, str):
            raise ConvertError("%s: key %r is not a string (SALSA keys by %s)" % (path, k, what))
        if not isinstance(v, np.ndarray) or v.dtype.kind != "f" or v.ndim != 1:
            raise ConvertError("%s: %r: not a 1-d float tensor (%s)" % (path, k, getattr(v, "shape", type(v).__name__)))
        if dim is None:
            dim = v.shape[0]
        elif v.shape[0] != dim:
            raise ConvertError("%s: %r has %d values, the first entry %d" % (path, k, v.shape[0], dim))
    return d, dim


def teacher_records(d, keyof, textual):
    """records and failed keys: each vector L2-normalised (in float64), as f32."""
    recs, failed = [], []
    for i, (k, v) in enumerate(d.items()):
        key = keyof(i, k)
        x = np.asarray(v, dtype=np.float64)
        n = float(np.sqrt(np.dot(x, x))) if np.all(np.isfinite(x)) else float("nan")
        if not (n > 0 and np.isfinite(n)):
            print("convert.py: %s: %s: the vector is zero or not finite: skipped" % (key, "caption %r" % k if textual else k),
                  file=sys.stderr)
            failed.append(key)
            continue
        rec = {"key": key, "emb": (x / n).astype(np.float32)}
        rec["text" if textual else "path"] = k
        recs.append(rec)
    return recs, failed


def convert_teacher(args):
    ad, adim = teacher_dict(args.audio, "audio path")
    sd, sdim = teacher_dict(args.sentences, "caption")
    if adim != sdim:
        raise ConvertError("the audio embeddings have %d values, the sentence embeddings %d: not one teacher"
                           % (adim, sdim))
    audio_like = lambda d: sum(k.lower().endswith(AUDIO_EXT) for k in d)  # noqa: E731
    if audio_like(ad) == 0 and audio_like(sd) > len(sd) // 2:
        raise ConvertError("%s holds audio paths and %s does not: give the audio file first, then the sentences"
                           % (args.sentences, args.audio))
    names = {}
    if not args.keep_path:
        for k in ad:
            b = k.replace("\\", "/").rsplit("/", 1)[-1]
            if b in names:
                raise ConvertError("%s: %r and %r have the same file name %r: use --keep-path (and key the mel "
                                   "stream by path: wav2mel reads KEY<TAB>PATH lines)" % (args.audio, names[b], k, b))
            names[b] = k
            if not b:
                raise ConvertError("%s: %r has no file name" % (args.audio, k))
    keyof_audio = (lambda i, k: k) if args.keep_path else (lambda i, k: k.replace("\\", "/").rsplit("/", 1)[-1])
    arecs, afail = teacher_records(ad, keyof_audio, False)
    srecs, sfail = teacher_records(sd, lambda i, k: str(i), True)
    teacher = args.name or os.path.basename(os.path.dirname(os.path.abspath(args.audio))) or "teacher"
    src_dtype = str(next(iter(ad.values())).dtype)
    common = {"teacher": teacher, "embed_dim": adim, "source_dtype": src_dtype, "normalised": True,
              "converted_from": "salsa cmd_generate_embeddings"}
    out_a, out_t = args.output + ".audio.mp", args.output + ".text.mp"
    write_atomic(out_a, "convert.py teacher", arecs,
                 dict(common, source=os.path.basename(args.audio), modality="audio",
                      keys="path" if args.keep_path else "file name"), afail)
    write_atomic(out_t, "convert.py teacher", srecs,
                 dict(common, source=os.path.basename(args.sentences), modality="text", keys="index"), sfail)
    print("convert.py: teacher %s: wrote %s (%d audio) and %s (%d captions), %d-d, L2-normalised from %s%s" %
          (teacher, out_a, len(arecs), out_t, len(srecs), adim, src_dtype,
           "; %d failed" % (len(afail) + len(sfail)) if afail or sfail else ""), file=sys.stderr)
    print("convert.py: clap-train --teacher %s,%s" % (out_a, out_t), file=sys.stderr)
    return 3 if afail or sfail else 0


# ---------------------------------------------------------------- salsa
PA = "audio_embedding_model.model.model."
TX = "sentence_embedding_model."
# in SALSA's Lightning module, unused by the C tools: not written
SALSA_SKIP = [
    re.compile(r"^" + re.escape(PA) + r"mel\..*"),                # AugmentMelSTFT buffers (wav2mel's job)
    re.compile(r"^" + re.escape(PA) + r"head(_dist)?\..*"),        # PaSST's AudioSet classifiers
    re.compile(r"^" + re.escape(TX) + r"embeddings\.position_ids$"),
    re.compile(r"^(tau|timing_tau|audio_token)$"),
    re.compile(r"^posencode\.(pe|w)$"),  # the audio sequence model's positions: unused with num_layers=0
]


def salsa_expected(sd):
    """key -> shape of the SALSA model (PaSST-S audio tower with its
    projection, RoBERTa text tower with its projection), sizes read from sd."""
    def shape(k, ndim=None):
        if k not in sd:
            raise ConvertError("missing keys: %s" % k)
        s = tuple(sd[k].shape)
        if ndim is not None and len(s) != ndim:
            raise ConvertError("%s has shape %s: expected %d dimensions" % (k, list(s), ndim))
        return s
    pw = shape(PA + "patch_embed.proj.weight")
    if len(pw) != 4 or pw[1] != 1:
        raise ConvertError("%spatch_embed.proj.weight has shape %s, expected [D, 1, ph, pw]" % (PA, list(pw)))
    D = pw[0]
    gf, gt = shape(PA + "freq_new_pos_embed", 4)[2], shape(PA + "time_new_pos_embed", 4)[3]
    depth = 0
    while PA + "blocks.%d.norm1.weight" % depth in sd:
        depth += 1
    if depth == 0:
        raise ConvertError("missing keys: %sblocks.0.norm1.weight" % PA)
    Hm = shape(PA + "blocks.0.mlp.fc1.weight", 2)[0]
    E = shape("project_audio.0.weight", 2)[0]
    exp = {PA + "patch_embed.proj.weight": pw, PA + "patch_embed.proj.bias": (D,), PA + "cls_token": (1, 1, D),
           PA + "dist_token": (1, 1, D), PA + "new_pos_embed": (1, 2, D), PA + "freq_new_pos_embed": (1, D, gf, 1),
           PA + "time_new_pos_embed": (1, D, 1, gt), PA + "norm.weight": (D,), PA + "norm.bias": (D,),
           "project_audio.0.weight": (E, D), "project_audio.0.bias": (E,)}
    for i in range(depth):
        p = PA + "blocks.%d." % i
        exp.update({p + "norm1.weight": (D,), p + "norm1.bias": (D,), p + "attn.qkv.weight": (3 * D, D),
                    p + "attn.qkv.bias": (3 * D,), p + "attn.proj.weight": (D, D), p + "attn.proj.bias": (D,),
                    p + "norm2.weight": (D,), p + "norm2.bias": (D,), p + "mlp.fc1.weight": (Hm, D),
                    p + "mlp.fc1.bias": (Hm,), p + "mlp.fc2.weight": (D, Hm), p + "mlp.fc2.bias": (D,)})
    V, H = shape(TX + "embeddings.word_embeddings.weight", 2)
    P = shape(TX + "embeddings.position_embeddings.weight", 2)[0]
    I = shape(TX + "encoder.layer.0.intermediate.dense.weight", 2)[0]
    layers = 0
    while TX + "encoder.layer.%d.attention.self.query.weight" % layers in sd:
        layers += 1
    exp.update({TX + "embeddings.word_embeddings.weight": (V, H), TX + "embeddings.position_embeddings.weight": (P, H),
                TX + "embeddings.token_type_embeddings.weight": (1, H), TX + "embeddings.LayerNorm.weight": (H,),
                TX + "embeddings.LayerNorm.bias": (H,)})
    for i in range(layers):
        p = TX + "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            exp[p + "attention.self.%s.weight" % n] = (H, H)
            exp[p + "attention.self.%s.bias" % n] = (H,)
        exp.update({p + "attention.output.dense.weight": (H, H), p + "attention.output.dense.bias": (H,),
                    p + "attention.output.LayerNorm.weight": (H,), p + "attention.output.LayerNorm.bias": (H,),
                    p + "intermediate.dense.weight": (I, H), p + "intermediate.dense.bias": (I,),
                    p + "output.dense.weight": (H, I), p + "output.dense.bias": (H,),
                    p + "output.LayerNorm.weight": (H,), p + "output.LayerNorm.bias": (H,)})
    Et = shape("project_sentence.0.weight", 2)[0]
    exp.update({"project_sentence.0.weight": (Et, H), "project_sentence.0.bias": (Et,)})
    cfg = {"dim": D, "depth": depth, "mlp": Hm, "grid": (gf, gt), "patch": pw[2:], "embed": E, "text_embed": Et,
           "vocab": V, "hidden": H, "positions": P, "intermediate": I, "layers": layers}
    return exp, cfg


def pair(s):
    try:
        a, b = (int(x) for x in s.split(","))
    except ValueError:
        a = b = int(s)
    if a < 1 or b < 1:
        raise argparse.ArgumentTypeError("%s: not positive" % s)
    return a, b


def convert_salsa(args):
    import json
    import torch
    try:
        ck = torch.load(args.checkpoint, map_location="cpu")
    except Exception as e:  # noqa: BLE001 - any unreadable file
        raise ConvertError("%s: cannot read the checkpoint: %s" % (args.checkpoint, " ".join(str(e).split())))
    if isinstance(ck, dict) and isinstance(ck.get("state_dict"), dict):
        ck = ck["state_dict"]
    else:
        raise ConvertError("%s: not a Lightning checkpoint (a dict with 'state_dict')" % args.checkpoint)
    odd = [k for k in ck if not isinstance(k, str)]
    if odd:
        raise ConvertError("%s: state_dict keys must be strings, found %r" % (args.checkpoint, odd[0]))
    sd = {k: v.detach().cpu().numpy() for k, v in ck.items() if hasattr(v, "detach")}
    tau = float(sd["tau"].reshape(-1)[0]) if "tau" in sd and sd["tau"].size == 1 else 0.05
    kept = {k: v for k, v in sd.items() if not any(p.match(k) for p in SALSA_SKIP)}
    exp, cfg = salsa_expected(kept)
    unknown = sorted(set(kept) - set(exp))
    missing = sorted(set(exp) - set(kept))
    if unknown:
        raise ConvertError("unknown keys (not part of SALSA's PaSST-RoBERTa): %s%s"
                           % (", ".join(unknown[:10]), " ..." if len(unknown) > 10 else ""))
    if missing:
        raise ConvertError("missing keys: %s%s" % (", ".join(missing[:10]), " ..." if len(missing) > 10 else ""))
    bad = ["%s has shape %s, expected %s" % (k, list(kept[k].shape), list(s)) for k, s in exp.items()
           if tuple(kept[k].shape) != tuple(s)]
    if bad:
        raise ConvertError("inconsistent shapes: " + "; ".join(bad[:5]))
    for k in exp:
        if kept[k].dtype.kind != "f":
            raise ConvertError("%s is %s, not floating point" % (k, kept[k].dtype))
        if not np.all(np.isfinite(kept[k])):
            raise ConvertError("%s has NaN or infinite values" % k)
    D, (gf, gt), (ph, pw) = cfg["dim"], cfg["grid"], cfg["patch"]
    sh, sw = args.patch_stride
    if D % args.audio_heads:
        raise ConvertError("width %d is not a multiple of --audio-heads %d" % (D, args.audio_heads))
    if cfg["hidden"] % args.text_heads:
        raise ConvertError("text width %d is not a multiple of --text-heads %d" % (cfg["hidden"], args.text_heads))
    if (args.n_mels - ph) // sh + 1 != gf:
        raise ConvertError("freq_new_pos_embed has %d positions; %d mel bins at patch %d stride %d give %d"
                           % (gf, args.n_mels, ph, sh, (args.n_mels - ph) // sh + 1))
    seg = int(args.segment_seconds * args.sr)  # split_audio: int(segment_length * sampling_rate)
    nseg = int(round(args.fixed_seconds / args.segment_seconds))
    if seg < 1 or nseg < 1 or abs(nseg * args.segment_seconds - args.fixed_seconds) > 1e-9:
        raise ConvertError("--fixed-seconds %g is not a whole number of %g-s segments"
                           % (args.fixed_seconds, args.segment_seconds))
    S = 1 + (seg - 1) // args.hop
    if S < pw or (S - pw) // sw + 1 > gt:
        raise ConvertError("a %g-s segment (%d frames) gives %d patch columns; time_new_pos_embed has %d"
                           % (args.segment_seconds, S, (S - pw) // sw + 1 if S >= pw else 0, gt))
    vocab_bytes = open(args.vocab, "rb").read()
    merges_bytes = open(args.merges, "rb").read()
    try:
        vocab = json.loads(vocab_bytes.decode("utf-8"))
        merges_bytes.decode("utf-8")
    except (UnicodeDecodeError, ValueError) as e:
        raise ConvertError("%s / %s: not UTF-8 JSON / text: %s" % (args.vocab, args.merges, e))
    if not isinstance(vocab, dict) or len(vocab) != cfg["vocab"]:
        raise ConvertError("%s has %s tokens but the word embeddings have %d rows"
                           % (args.vocab, len(vocab) if isinstance(vocab, dict) else "no", cfg["vocab"]))
    ids = sorted(vocab.values()) if all(isinstance(v, int) for v in vocab.values()) else None
    if ids != list(range(len(vocab))):
        raise ConvertError("%s: token ids are not 0..%d" % (args.vocab, len(vocab) - 1))
    for special in ("<s>", "</s>", "<pad>", "<unk>", "<mask>"):
        if special not in vocab:
            raise ConvertError("%s lacks %s" % (args.vocab, special))
    import torch as _t
    pad_value = float(((_t.log(_t.zeros(1) + 1e-5) + 4.5) / 5)[0])  # the PaSST mel of silence
    out = {k: np.asarray(kept[k], dtype=np.float32) for k in sorted(exp)}
    out["tokenizer.vocab_json"] = np.frombuffer(vocab_bytes, dtype=np.uint8)
    out["tokenizer.merges"] = np.frombuffer(merges_bytes, dtype=np.uint8)
    meta = {
        "wsac.format": "1", "wsac.model": "clap", "wsac.source": os.path.basename(args.checkpoint),
        "clap.family": "salsa", "clap.embed_dim": cfg["embed"], "clap.tau": repr(tau),
        "clap.audio.arch": "passt", "clap.audio.frontend": "passt", "clap.audio.n_mels": args.n_mels,
        "clap.audio.heads": args.audio_heads, "clap.audio.patch_stride": "%d,%d" % (sh, sw),
        "clap.audio.ln_eps": "1e-06", "clap.audio.sr": args.sr, "clap.audio.hop": args.hop,
        "clap.audio.segment_samples": seg, "clap.audio.segments": nseg, "clap.audio.pad_value": repr(pad_value),
        "clap.audio.aggregate": "mean",
        "clap.text.arch": "roberta", "clap.text.layers": cfg["layers"], "clap.text.heads": args.text_heads,
        "clap.text.hidden": cfg["hidden"], "clap.text.intermediate": cfg["intermediate"],
        "clap.text.ln_eps": "1e-05", "clap.text.vocab_size": cfg["vocab"], "clap.text.positions": cfg["positions"],
        "clap.text.pad_id": vocab["<pad>"], "clap.text.position_offset": vocab["<pad>"] + 1,
        "clap.text.max_len": args.max_len, "clap.text.pooling": "first",
        "clap.text.preprocess": "lowercase,strip_punctuation", "clap.text.tokenizer": "roberta_bpe",
    }
    if cfg["text_embed"] != cfg["embed"]:
        raise ConvertError("project_sentence gives %d dimensions, project_audio %d" % (cfg["text_embed"], cfg["embed"]))
    sttools.save(args.output, out, meta)
    n = sum(v.size for k, v in out.items() if not k.startswith("tokenizer."))
    print("convert.py: wrote %s: %d tensors, %.1fM parameters; PaSST %d blocks x %d, RoBERTa %d layers x %d, "
          "embedding %d" % (args.output, len(out), n / 1e6, cfg["depth"], D, cfg["layers"], cfg["hidden"],
                            cfg["embed"]), file=sys.stderr)


def main(argv=None):
    ap = argparse.ArgumentParser(prog="convert.py", description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    c = sub.add_parser("clap", help="WavCaps CNN14-BERT CLAP checkpoint")
    c.add_argument("checkpoint")
    c.add_argument("--vocab", required=True, help="bert-base-uncased vocab.txt")
    c.add_argument("-o", "--output", required=True)
    c.add_argument("--text-heads", type=int, default=12, help="attention heads (12 for BERT-base)")
    c.add_argument("--max-len", type=int, default=30, help="max text tokens incl. [CLS] [SEP] (30)")
    d = sub.add_parser("decoder", help="WSAC TextDecoder state_dict (clap_project + GPT-2)")
    d.add_argument("checkpoint")
    d.add_argument("--vocab", default=DEFAULT_VOCAB, help="BERT vocab.txt (default: the bundled bert-base-uncased)")
    d.add_argument("-o", "--output", required=True)
    d.add_argument("--heads", type=int, default=4, help="attention heads (4 in WSAC's decoder_config.pkl)")
    g = sub.add_parser("gap", help="WSAC's --modality_gap_path (pickled tensor), a numpy array or .npy -> gap stream")
    g.add_argument("file")
    g.add_argument("-o", "--output", required=True)
    t = sub.add_parser("teacher", help="SALSA's generated embeddings (audio and sentence .pt) -> teacher streams")
    t.add_argument("audio", help="..._audio_embeddings_train.pt ({audio path: tensor})")
    t.add_argument("sentences", help="..._sentence_embeddings_train.pt ({caption: tensor})")
    t.add_argument("-o", "--output", required=True, help="writes OUTPUT.audio.mp and OUTPUT.text.mp")
    t.add_argument("--keep-path", action="store_true", help="key audio by SALSA's path, not its file name")
    t.add_argument("--name", help="teacher name in the headers (default: the .pt file's folder, SALSA's run name)")
    sa = sub.add_parser("salsa", help="SALSA Lightning checkpoint (PaSST-S + RoBERTa-large)")
    sa.add_argument("checkpoint")
    sa.add_argument("--vocab", required=True, help="the RoBERTa tokenizer's vocab.json")
    sa.add_argument("--merges", required=True, help="the RoBERTa tokenizer's merges.txt")
    sa.add_argument("-o", "--output", required=True)
    sa.add_argument("--audio-heads", type=int, default=12, help="PaSST attention heads (12)")
    sa.add_argument("--text-heads", type=int, default=16, help="RoBERTa attention heads (16 for -large)")
    sa.add_argument("--patch-stride", type=pair, default=(16, 16), help="PaSST patch stride F,T (16,16)")
    sa.add_argument("--n-mels", type=int, default=128, help="mel bins (128)")
    sa.add_argument("--sr", type=int, default=32000, help="sample rate (32000)")
    sa.add_argument("--hop", type=int, default=320, help="mel hop (320)")
    sa.add_argument("--segment-seconds", type=float, default=10.0, help="segment length (10)")
    sa.add_argument("--fixed-seconds", type=float, default=30.0, help="clips padded/cropped to (30)")
    sa.add_argument("--max-len", type=int, default=32, help="text tokens incl. <s> </s> (32)")
    args = ap.parse_args(argv)
    try:
        if args.what == "gap":
            convert_gap(args)
        elif args.what == "teacher":
            return convert_teacher(args)
        elif args.what == "decoder":
            convert_decoder(args)
        elif args.what == "salsa":
            convert_salsa(args)
        else:
            convert_clap(args)
    except ConvertError as e:
        print("convert.py: error: %s" % e, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
