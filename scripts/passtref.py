"""PyTorch reference of SALSA's audio tower (salsa.md section 1): PaSST-S as
hear21passt's models/passt.py writes it (PatchEmbed, Attention, Mlp, Block,
PaSST.forward_features / forward, in eval mode), SALSA's long-audio rule
(experiments/ex_dcase24.py forward_audio, models/audio/base.py) and
projection; random checkpoints in the published Lightning layout (the real
weights cannot be downloaded here).

The modules keep the published parameter names, so a SALSA state_dict loads
into them (`load(sd, cfg)`). Two entry points:
- audio_forward_wave(m, cfg, x): the published evaluation from the 32 kHz
  waveform: x fixed to nseg * seg_samples samples (zeros appended, a longer
  clip cropped -- to its first samples here, at a random offset there:
  dataset_base_classes.py __get_fixed_length_audio__), unfolded into pieces
  (models/audio/base.py split_audio), each piece's PaSST mel
  (passtmelref.py, AugmentMelSTFT: its own pre-emphasis, reflect padding and
  STFT), PaSST on every piece, the features of the kept pieces averaged
  (forward_audio's mask: k < ceil(nseg * min(N, fixed) / fixed)), projected.
- audio_forward(m, cfg, mel, N): from a mel stream record. The mels of the
  kept pieces concatenated (wav2mel --frontend passt) give exactly the
  above; a whole clip's mel (wav2mel --whole-clip) is sliced into nseg
  segments of S frames (S = 1 + (seg_samples - 1) // hop: 1000 for 10 s),
  frames past the clip the mel of silence (pad_value), frames past nseg * S
  dropped, which differs in the frames whose STFT window crosses a cut.

    import passtref
    cfg = passtref.Config.full()             # or Config.tiny()
    sd = passtref.random_state_dict(cfg, seed=0)
    torch.save({"state_dict": sd}, "passt_roberta.ckpt")
    m = passtref.load(sd, cfg)
    emb = passtref.audio_forward(m, cfg, mel, nsamples)   # [T, M] -> [E], L2-normalised
    emb = passtref.audio_forward_wave(m, cfg, x)          # [N] at 32 kHz -> [E]
"""
import math

import numpy as np
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

PA = "audio_embedding_model.model.model."
TX = "sentence_embedding_model."


@dataclass
class Config:
    n_mels: int = 128
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp: int = 3072
    patch: tuple = (16, 16)
    stride: tuple = (16, 16)
    grid: tuple = (8, 62)          # img_size (128, 1000) // stride
    embed: int = 1024
    sr: int = 32000
    hop: int = 320
    segment_seconds: float = 10.0
    fixed_seconds: float = 30.0
    classes: int = 527
    # the text tower (RoBERTa-large), only for the checkpoint layout here
    vocab: int = 50265
    hidden: int = 1024
    layers: int = 24
    text_heads: int = 16
    intermediate: int = 4096
    positions: int = 514

    @staticmethod
    def full(text_layers=24):
        return Config(layers=text_layers)

    @staticmethod
    def tiny():
        """Odd sizes on purpose: 21 mel bins, 5x4 patches at stride 4x3, 30-frame
        segments (0.3 s) giving 9 patch columns of a time grid of 11 (cropped)."""
        return Config(n_mels=21, dim=30, depth=2, heads=3, mlp=46, patch=(5, 4), stride=(4, 3), grid=(5, 11),
                      embed=17, segment_seconds=0.3, fixed_seconds=0.9, classes=7, vocab=60, hidden=24, layers=1,
                      text_heads=2, intermediate=40, positions=40)

    @property
    def seg_samples(self):
        return int(self.segment_seconds * self.sr)  # split_audio: int(segment_length * sampling_rate)

    @property
    def nseg(self):
        return int(round(self.fixed_seconds / self.segment_seconds))

    @property
    def seg_frames(self):
        return 1 + (self.seg_samples - 1) // self.hop


def pad_value():
    """The PaSST mel of silence, as AugmentMelSTFT computes it in float32."""
    return float(((torch.log(torch.zeros(1) + 1e-5) + 4.5) / 5)[0])


# ---------------------------------------------------------------- the published modules
class PatchEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(1, cfg.dim, kernel_size=cfg.patch, stride=cfg.stride)
        self.norm = nn.Identity()

    def forward(self, x):
        return self.norm(self.proj(x))  # flatten=False


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        return self.proj(x)


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        x = x + self.mlp(self.norm2(x))
        return x


class PaSST(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D = cfg.dim
        self.patch_embed = PatchEmbed(cfg)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, D))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, D, cfg.grid[0], 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, D, 1, cfg.grid[1]))
        self.blocks = nn.Sequential(*[Block(D, cfg.heads, cfg.mlp) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(D, eps=1e-6)
        self.head = nn.Sequential(nn.LayerNorm(D), nn.Linear(D, cfg.classes))
        self.head_dist = nn.Linear(D, cfg.classes)

    def forward_features(self, x):
        x = self.patch_embed(x)  # [b, e, f, t]
        B_dim = x.shape[0]
        time_new_pos_embed = self.time_new_pos_embed
        if x.shape[-1] != time_new_pos_embed.shape[-1]:
            time_new_pos_embed = time_new_pos_embed[:, :, :, :x.shape[-1]]
        x = x + time_new_pos_embed
        x = x + self.freq_new_pos_embed
        x = x.flatten(2).transpose(1, 2)
        cls_tokens = self.cls_token.expand(B_dim, -1, -1) + self.new_pos_embed[:, :1, :]
        dist_token = self.dist_token.expand(B_dim, -1, -1) + self.new_pos_embed[:, 1:, :]
        x = torch.cat((cls_tokens, dist_token, x), dim=1)
        x = self.blocks(x)
        x = self.norm(x)
        return x[:, 0], x[:, 1]

    def forward(self, x):
        x = self.forward_features(x)
        features = (x[0] + x[1]) / 2
        return self.head(features), features


class Salsa(nn.Module):
    """The audio half of SALSA's Lightning module, under its published names
    (audio_embedding_model = WindowedPrediction(Wrapper(PaSST)))."""

    def __init__(self, cfg):
        super().__init__()
        self.audio_embedding_model = nn.Module()
        self.audio_embedding_model.model = nn.Module()
        self.audio_embedding_model.model.model = PaSST(cfg)
        self.project_audio = nn.Sequential(nn.Linear(cfg.dim, cfg.embed))

    @property
    def passt(self):
        return self.audio_embedding_model.model.model


def load(sd, cfg):
    """A Salsa module holding the audio tensors of state_dict sd (torch or numpy)."""
    m = Salsa(cfg).eval()
    want = m.state_dict()
    missing = [k for k in want if k not in sd and not k.startswith(PA + "head")]  # the heads: unused here
    if missing:
        raise KeyError("missing: " + ", ".join(missing))
    got = {k: torch.as_tensor(sd[k]) for k in want if k in sd}
    m.load_state_dict(got, strict=False)
    return m


def kept_segments(cfg, nsamples):
    fixed = cfg.nseg * cfg.seg_samples
    audio_length = min(nsamples, fixed) / fixed
    return max(1, min(cfg.nseg, math.ceil(audio_length * cfg.nseg)))


@torch.no_grad()
def audio_forward(m, cfg, mel, nsamples=None):
    """mel: [T, M] (numpy or torch) -> emb [E] L2-normalised (torch); nsamples:
    the clip's length in samples (None: (T - 1) * hop + 1)."""
    mel = torch.tensor(np.array(mel, dtype=np.float32))
    T, M = mel.shape
    S, n = cfg.seg_frames, cfg.nseg
    if nsamples is None:
        nsamples = (T - 1) * cfg.hop + 1
    x = torch.full((n * S, M), pad_value())
    x[:min(T, n * S)] = mel[:n * S]
    segs = x.reshape(n, S, M).transpose(1, 2)[:, None]  # [n, 1, M, S]: mel[:, None] per segment
    feats = m.passt(segs)[1]                             # [n, D]: every segment, as published
    k = kept_segments(cfg, nsamples)
    mask = torch.zeros(n)
    mask[:k] = 1
    f = (feats * mask[:, None]).sum(0) / mask.sum()
    emb = m.project_audio(f[None])[0]
    return F.normalize(emb, dim=-1)


@torch.no_grad()
def audio_forward_wave(m, cfg, x, mel_dtype="float64"):
    """The published evaluation of waveform x [N] (cfg.sr) -> emb [E]
    L2-normalised (torch). The front end runs in mel_dtype (float64: what
    wav2mel computes; float32: the published run), PaSST in float32."""
    import passtmelref
    pieces = passtmelref.fixed_pieces(np.asarray(x, np.float32), cfg.seg_samples, cfg.nseg)  # [nseg, seg]
    mel = passtmelref.passt_mel(pieces, sr=cfg.sr, hop=cfg.hop, n_mels=cfg.n_mels, dtype=mel_dtype)  # [nseg, S, M]
    segs = torch.tensor(np.asarray(mel, np.float32)).transpose(1, 2)[:, None]  # model.mel(x)[:, None]
    feats = m.passt(segs)[1]  # [nseg, D]: the Wrapper's features, one per piece
    k = kept_segments(cfg, len(x))
    mask = torch.zeros(cfg.nseg)
    mask[:k] = 1
    f = (feats * mask[:, None]).sum(0) / mask.sum()
    emb = m.project_audio(f[None])[0]
    return F.normalize(emb, dim=-1)


# ---------------------------------------------------------------- random checkpoints
def roberta_keys(cfg):
    """name -> shape of RobertaModel(add_pooling_layer=False)'s state_dict."""
    H, I = cfg.hidden, cfg.intermediate
    k = {"embeddings.word_embeddings.weight": (cfg.vocab, H), "embeddings.position_embeddings.weight": (cfg.positions, H),
         "embeddings.token_type_embeddings.weight": (1, H), "embeddings.LayerNorm.weight": (H,),
         "embeddings.LayerNorm.bias": (H,)}
    for i in range(cfg.layers):
        p = "encoder.layer.%d." % i
        for n in ("query", "key", "value"):
            k[p + "attention.self.%s.weight" % n] = (H, H)
            k[p + "attention.self.%s.bias" % n] = (H,)
        k.update({p + "attention.output.dense.weight": (H, H), p + "attention.output.dense.bias": (H,),
                  p + "attention.output.LayerNorm.weight": (H,), p + "attention.output.LayerNorm.bias": (H,),
                  p + "intermediate.dense.weight": (I, H), p + "intermediate.dense.bias": (I,),
                  p + "output.dense.weight": (H, I), p + "output.dense.bias": (H,),
                  p + "output.LayerNorm.weight": (H,), p + "output.LayerNorm.bias": (H,)})
    return k


def random_state_dict(cfg, seed=0, extras=True):
    """SALSA's Lightning state_dict layout with random weights scaled so
    activations stay O(1): the audio tower, both projections, the RoBERTa
    text tower, tau; extras: what the published module also holds and the C
    tools do not need (mel window buffer, PaSST's classifier heads,
    timing_tau, audio_token, posencode, position_ids)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    sd = {}
    m = Salsa(cfg)
    for k, v in m.state_dict().items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k.endswith("norm.weight") or k.endswith(
                "head.0.weight"):
            sd[k] = 1.0 + 0.1 * rnd(*v.shape)
        elif k.endswith(".bias"):
            sd[k] = 0.1 * rnd(*v.shape)
        elif "pos_embed" in k or k.endswith("_token"):
            sd[k] = 0.5 * rnd(*v.shape)
        else:  # weights [out, in, ...]: std 1/sqrt(fan_in)
            fan_in = int(torch.tensor(v.shape[1:]).prod())
            sd[k] = rnd(*v.shape, std=fan_in ** -0.5)
    for k, shape in roberta_keys(cfg).items():
        if k.endswith("LayerNorm.weight"):
            sd[TX + k] = 1.0 + 0.1 * rnd(*shape)
        elif k.endswith(".bias") or len(shape) == 1:
            sd[TX + k] = 0.1 * rnd(*shape)
        elif "embeddings" in k:
            sd[TX + k] = 0.5 * rnd(*shape)
        else:
            sd[TX + k] = rnd(*shape, std=shape[1] ** -0.5)
    sd["project_sentence.0.weight"] = rnd(cfg.embed, cfg.hidden, std=cfg.hidden ** -0.5)
    sd["project_sentence.0.bias"] = 0.1 * rnd(cfg.embed)
    sd["tau"] = torch.zeros(1) + 0.05
    if extras:
        sd[PA + "mel.window"] = torch.hann_window(800, periodic=False)
        sd[TX + "embeddings.position_ids"] = torch.arange(cfg.positions)[None]
        sd["timing_tau"] = torch.zeros(1) + 0.05
        sd["audio_token"] = rnd(1, 1, cfg.dim) * 0.04
        # PositionalEncoding('sinosoidal_fixed', max_len 64*3): reweight_only, pe and w are Parameters
        sd["posencode.pe"] = rnd(1, 192, cfg.dim)
        sd["posencode.w"] = torch.ones(1)
    else:
        for k in [k for k in sd if k.startswith(PA + "head")]:
            del sd[k]
    return sd
