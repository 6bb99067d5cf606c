"""scripts/convert.py: published layouts in, checked safetensors out; refuses
checkpoints with unknown or missing keys or inconsistent shapes, naming them."""
import os
import subprocess
import tempfile

import torch

from tap import ROOT, check, done
import clapref
import decref
import sttools

tmp = tempfile.mkdtemp()
VOCAB = os.path.join(ROOT, "data", "bert-base-uncased-vocab.txt")
CONV = os.path.join(ROOT, "scripts", "convert.py")


def convert(kind, sd, *extra, wrap=True):
    p = os.path.join(tmp, "ck.pt")
    torch.save({"model": sd} if wrap else sd, p)
    out = os.path.join(tmp, "out.safetensors")
    if os.path.exists(out):
        os.remove(out)
    args = ["/usr/bin/python3", CONV, kind, p, "-o", out] + (["--vocab", VOCAB] if kind == "clap" else []) + list(extra)
    r = subprocess.run(args, capture_output=True)
    return r.returncode, r.stderr.decode(), out


cfg = clapref.Config.tiny()
sd = clapref.random_state_dict(cfg, seed=3)
rc, err, out = convert("clap", sd, "--text-heads", "4")
t, meta = sttools.load(out) if rc == 0 else ({}, {})
check("clap: converts the published layout", rc == 0, err)
check("clap: skips position_ids, num_batches_tracked, temp and the torchlibrosa kernels",
      not any(k.endswith("num_batches_tracked") or k.endswith("position_ids") or k == "temp" or "audio_feats_extractor" in k
              for k in t))
check("clap: weights kept bit for bit under their published names",
      all((t[k] == sd[k].numpy()).all() for k in t if k in sd) and len([k for k in t if k in sd]) == len(t) - 1)
check("clap: vocabulary and configuration carried", "tokenizer.vocab" in t and meta.get("wsac.model") == "clap" and
      meta.get("clap.text.heads") == "4" and meta.get("clap.text.max_len") == "30" and
      meta.get("clap.audio.channels") == "4,8,12,16,20,24")
bad = dict(sd)
bad["audio_encoder.audio_enc.fc1.weight"] = torch.zeros(3, 3)
rc, err, _ = convert("clap", bad, "--text-heads", "4")
check("clap: an unknown key is refused by name", rc == 2 and "unknown keys" in err and "fc1.weight" in err, err)
bad = dict(sd)
del bad["text_proj.2.bias"]
rc, err, _ = convert("clap", bad, "--text-heads", "4")
check("clap: a missing key is refused by name", rc == 2 and "missing" in err and "text_proj.2.bias" in err, err)
bad = dict(sd)
bad["audio_encoder.audio_enc.conv_block2.conv2.weight"] = torch.zeros(8, 8, 3, 2)
rc, err, _ = convert("clap", bad, "--text-heads", "4")
check("clap: an inconsistent shape is refused by name", rc == 2 and "conv_block2.conv2.weight" in err, err)
rc, err, _ = convert("clap", sd, "--text-heads", "5")
check("clap: heads that do not divide the width are refused", rc == 2 and "not divisible" in err, err)

dcfg = decref.Config.tiny()
dsd = decref.random_state_dict(dcfg, seed=1)
for wrap in (False, True):
    rc, err, out = convert("decoder", dsd, "--heads", str(dcfg.heads), wrap=wrap)
    t, meta = sttools.load(out) if rc == 0 else ({}, {})
    check("decoder: converts a %s state_dict" % ("'model'-wrapped" if wrap else "bare"),
          rc == 0 and meta.get("wsac.model") == "decoder" and "tokenizer.vocab" in t and
          not any(k.endswith(".attn.bias") or k.endswith("masked_bias") for k in t), err)
bad = dict(dsd)
bad["decoder.transformer.h.0.mlp.extra"] = torch.zeros(2)
rc, err, _ = convert("decoder", bad, "--heads", str(dcfg.heads))
check("decoder: an unknown key is refused by name", rc == 2 and "mlp.extra" in err, err)
if "decoder.lm_head.weight" in dsd:
    bad = dict(dsd)
    bad["decoder.lm_head.weight"] = dsd["decoder.lm_head.weight"] + 1
    rc, err, _ = convert("decoder", bad, "--heads", str(dcfg.heads))
    check("decoder: an untied output head is refused", rc == 2 and "lm_head" in err, err)
rc, err, _ = convert("decoder", sd)
check("decoder: a CLAP checkpoint is not a decoder", rc == 2, err)
done()
