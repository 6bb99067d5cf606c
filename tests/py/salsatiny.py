"""A small SALSA PaSST-RoBERTa training setup shared by the clap-train tests
(test_clap_train_salsa.py, test_mpi_salsa.py): a random checkpoint of the real
architecture at small sizes converted by scripts/convert.py salsa (PaSST 21
mel bins, 5x4 patches at stride 4x3, 30-frame segments of 0.3 s, 3 to the
fixed 0.9 s, width 30, 2 blocks; RoBERTa hidden 33, 2 layers, 3 heads,
RoBERTa's real BPE; embedding 19), a mel stream cut as `wav2mel --frontend
passt` cuts it (each clip's kept segments, "samples", the cut in the header)
for 6 clips of 1, 2 and 3 kept segments, and 12 captions (2 a clip).

    import salsatiny as ST
    d = ST.make(tmpdir)   # d.model, d.mel, d.caps, d.items, d.mels, d.clips, d.ids, d.sd, d.acfg, d.tcfg, ..."""
import dataclasses
import os
import types

import numpy as np
import torch

from tap import DATA
import bperef
import convert
import passtref
import passttrainref as PT
import robertatrainref as RT
import sttools
import wsacstream as ws

BPE_DIR = os.path.join(DATA, "roberta-bpe")
VOCAB, MERGES = os.path.join(BPE_DIR, "vocab.json"), os.path.join(BPE_DIR, "merges.txt")
CAPS = ["A dog barks twice, then a door slams!", "Rain falls on a tin roof.",
        "Birds chirp while a CAR passes by on a wet road; people talk in the distance (faintly).", "Water drips",
        "Someone is typing on a keyboard, and a phone rings - twice - before it stops.", "Wind howls outside",
        "A man speaks and a crowd laughs", "Footsteps on gravel", "An engine idles, then revs up loudly",
        "Thunder rumbles far away over the hills.", "A bell rings three times", "Children play in a park"]
NSAMP = [5000, 15000, 28800, 40000, 9600, 20000]  # 1, 2, 3, 3, 1, 3 kept segments


def make(tmp, seed=31):
    d = types.SimpleNamespace()
    pcfg = dataclasses.replace(passtref.Config.tiny(), vocab=50265, hidden=33, layers=2, text_heads=3,
                               intermediate=47, positions=37, embed=19)
    ckpt, d.model = os.path.join(tmp, "small.ckpt"), os.path.join(tmp, "small.safetensors")
    torch.save({"state_dict": passtref.random_state_dict(pcfg, seed=seed), "epoch": 1}, ckpt)
    opts = ["--audio-heads", "3", "--text-heads", "3", "--patch-stride", "4,3", "--n-mels", "21",
            "--segment-seconds", "0.3", "--fixed-seconds", "0.9"]
    d.ok = convert.main(["salsa", ckpt, "--vocab", VOCAB, "--merges", MERGES, "-o", d.model] + opts) == 0
    if not d.ok:
        return d
    tensors, meta = sttools.load(d.model)
    d.sd = {k: torch.from_numpy(np.array(v)) for k, v in tensors.items() if v.dtype == np.float32}
    d.pad = int(meta["clap.text.pad_id"])
    d.acfg = PT.Config(n_mels=pcfg.n_mels, dim=pcfg.dim, depth=pcfg.depth, heads=pcfg.heads, mlp=pcfg.mlp,
                       patch=pcfg.patch, stride=pcfg.stride, grid=pcfg.grid, embed=pcfg.embed)
    d.tcfg = RT.Config(vocab=pcfg.vocab, hidden=pcfg.hidden, layers=pcfg.layers, heads=3,
                       intermediate=pcfg.intermediate, positions=pcfg.positions, embed=pcfg.embed,
                       eps=float(meta["clap.text.ln_eps"]))
    d.S, d.M, d.seg = pcfg.seg_frames, pcfg.n_mels, pcfg.seg_samples
    g = torch.Generator().manual_seed(7)
    d.clips = ["c%d.wav" % i for i in range(6)]
    d.nsamp = NSAMP
    # forward_audio's mask: segment k kept if k < ceil(3 * min(n, 30 s) / 30 s)
    kept = [-(-3 * min(n, 3 * d.seg) // (3 * d.seg)) for n in NSAMP]
    d.mels = {k: torch.randn(c * d.S, d.M, generator=g) * 0.5 for k, c in zip(d.clips, kept)}
    d.header = {"frontend": "passt", "cut": "segments", "segment_samples": d.seg, "segments": 3, "hop": 320,
                "sr": 32000, "n_mels": d.M, "segment_frames": d.S}
    d.mel = os.path.join(tmp, "mel.mp")
    with open(d.mel, "wb") as f:
        ws.write_stream(f, "wav2mel", ({"key": k, "mel": d.mels[k].numpy(), "samples": n}
                                       for k, n in zip(d.clips, NSAMP)), params=d.header)
    d.items = [(d.clips[i // 2], CAPS[i]) for i in range(12)]
    d.caps = os.path.join(tmp, "caps.tsv")
    with open(d.caps, "w") as f:
        f.writelines("%s\t%s\n" % it for it in d.items)
    bpe = bperef.BPE(VOCAB, MERGES)
    d.ids = [bpe.encode(bperef.salsa_preprocess(c), 32) for _, c in d.items]
    return d


class SalsaRef(torch.nn.Module):
    """SALSA's two towers in training mode in PyTorch (passttrainref's PaSST and projection, robertatrainref's
    RoBERTa), weights from a model file's tensors sd, patchout and dropout off: forward_audio (each clip's kept
    segments through PaSST, the mean of the features, the projection) and forward_sentence on a padded batch.
    towers: the ones to build (a float64 tower alone needs half the memory)."""

    def __init__(self, sd, acfg, tcfg, pad, dt=torch.float32, towers=("audio", "text")):
        super().__init__()
        self.audio = self.text = None
        if "audio" in towers:
            self.audio = PT.load({n: sd[n] for n, _ in PT.Tower(acfg).published()}, acfg, dt)
        if "text" in towers:
            self.text = RT.RobertaText(tcfg, pad, 0.0, 0.0).to(dt)
            self.text.load_published({k: v.to(dt) for k, v in sd.items() if k.startswith((RT.TX, RT.PROJ))})
        self.acfg, self.pad, self.dt = acfg, pad, dt

    def named(self):
        """(published name, parameter, group): configure_optimizers' four groups"""
        out = [(n, p, 2 if n.startswith(PT.PROJ) else 0) for n, p in self.audio.published()] if self.audio else []
        return out + ([(n, p, 3 if n.startswith(RT.PROJ) else 1) for n, p in self.text.named_parameters()]
                      if self.text else [])

    def optimizer(self, lr):
        groups = [[] for _ in range(4)]
        for _, p, gr in self.named():
            groups[gr].append(p)
        return torch.optim.AdamW([{"params": x, "lr": lr} for x in groups], betas=(0.9, 0.999), eps=1e-8,
                                 weight_decay=0.0)

    def forward_audio(self, clip_mels, S):
        """clip_mels: each item's [k * S, M] -> unnormalised a [B, E]"""
        M = self.acfg.n_mels
        segs = [m.reshape(-1, S, M) for m in clip_mels]
        f = self.audio.passt(torch.cat(segs).to(self.dt).transpose(1, 2)[:, None])
        feats, k = [], 0
        for s_ in segs:
            feats.append(f[k:k + len(s_)].mean(0))
            k += len(s_)
        return self.audio.proj(torch.stack(feats))

    def forward_text(self, ids):
        """ids: each item's token list -> unnormalised t [B, E]"""
        L = max(len(x) for x in ids)
        t = torch.full((len(ids), L), self.pad, dtype=torch.long)
        mask = torch.zeros(len(ids), L, dtype=torch.long)
        for r, x in enumerate(ids):
            t[r, :len(x)] = torch.tensor(x)
            mask[r, :len(x)] = 1
        return self.text(t, mask)

    def forward(self, clip_mels, ids, S):
        return self.forward_audio(clip_mels, S), self.forward_text(ids)
