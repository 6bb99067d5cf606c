"""PyTorch reference of SALSA's audio tower in TRAINING mode (lib/passt_train.c):
PaSST-S as hear21passt's models/passt.py writes it (PatchEmbed, Attention,
Mlp, Block with DropPath, PaSST.forward_features / forward: structured
patchout, cls and dist tokens, pos_drop) and SALSA's projection
Linear(768 -> 1024) (models/audio/passt.py get_passt -> get_model_passt
("passt_s_p16_s16_128_ap468", fstride=16, tstride=16, s_patchout_t,
s_patchout_f); experiments/ex_dcase24.py: s_patchout_t 15, s_patchout_f 2;
the rates are PaSST.__init__'s defaults, 0, since nobody passes one).

The modules copy passt.py line by line with the published parameter names;
two hooks let a test feed the C implementation's random draws in:
- patchout=(tkeep[B][Tk], fkeep[B][Fk]): item b keeps those time columns and
  frequency rows (passt.py draws one torch.randperm for the whole batch;
  patchout=None and model.train() runs exactly that code);
- masks=Masks(...): every dropout and drop_path uses the given keep masks
  (x * mask / (1 - p), as torch's dropout; timm drop_path x.div(keep) * bits)
  instead of drawing.

    import passttrainref as R
    cfg = R.Config(n_mels=70, dim=36, depth=2, heads=3, mlp=144, grid=(4, 7), embed=20)
    m = R.Tower(cfg, drop_rate=0, attn_drop_rate=0, drop_path_rate=0, s_patchout_t=0, s_patchout_f=0)
    e = m(mel)        # mel [B, S, M] frames major -> e [B, E], unnormalised
"""
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

PA = "audio_embedding_model.model.model."
PROJ = "project_audio.0."


@dataclass
class Config:
    n_mels: int = 128
    dim: int = 768
    depth: int = 12
    heads: int = 12
    mlp: int = 3072          # mlp_ratio 4
    patch: tuple = (16, 16)
    stride: tuple = (16, 16)
    grid: tuple = (8, 62)    # PatchEmbed.grid_size: img_size (128, 1000) // stride
    embed: int = 1024
    ln_eps: float = 1e-6     # partial(nn.LayerNorm, eps=1e-6)


class Masks:
    """Keep masks for one forward pass (numpy or torch, 0/1): pos [B, N, D]; per
    block attn [B, H, N, N], proj [B, N, D], gelu [B, N, Hm], fc2 [B, N, D],
    drop_path [B, 2] (attention branch, MLP branch)."""

    def __init__(self, pos, blocks):
        self.pos = pos
        self.blocks = blocks  # list of dicts with keys attn, proj, gelu, fc2, drop_path


def _t(x):
    """a mask as a tensor (a copy of a numpy array, read-only ones included)"""
    return x if torch.is_tensor(x) else torch.tensor(x)


def _drop(x, p, training, mask):
    """nn.Dropout(p), or the given keep mask: torch's dropout is x * (bernoulli(1 - p) / (1 - p))"""
    if mask is None:
        return F.dropout(x, p, training)
    if not training or p == 0:
        return x
    return x * (_t(mask).to(x.dtype) / (1 - p))


def drop_path(x, drop_prob, training, bits=None):
    """timm's drop_path: per item, x.div(keep_prob) * floor(keep_prob + rand)"""
    if drop_prob == 0. or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    if bits is None:
        random_tensor = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
        random_tensor.floor_()
    else:
        random_tensor = _t(bits).to(x.dtype).reshape(shape)
    return x.div(keep_prob) * random_tensor


class PatchEmbed(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.proj = nn.Conv2d(1, cfg.dim, kernel_size=cfg.patch, stride=cfg.stride)

    def forward(self, x):
        return self.proj(x)  # flatten=False in PaSST; norm_layer None: Identity


class Attention(nn.Module):
    def __init__(self, dim, num_heads, attn_drop=0., proj_drop=0.):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)  # qkv_bias=True (PaSST's default)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = proj_drop

    def forward(self, x, m=None):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = _drop(attn, self.attn_drop, self.training, m and m["attn"])
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = _drop(x, self.proj_drop, self.training, m and m["proj"])
        return x


class Mlp(nn.Module):
    def __init__(self, dim, hidden, drop=0.):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = drop

    def forward(self, x, m=None):
        x = self.fc1(x)
        x = self.act(x)
        x = _drop(x, self.drop, self.training, m and m["gelu"])
        x = self.fc2(x)
        x = _drop(x, self.drop, self.training, m and m["fc2"])
        return x


class Block(nn.Module):
    def __init__(self, cfg, drop=0., attn_drop=0., drop_path=0.):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.attn = Attention(cfg.dim, cfg.heads, attn_drop=attn_drop, proj_drop=drop)
        self.drop_path = drop_path
        self.norm2 = nn.LayerNorm(cfg.dim, eps=cfg.ln_eps)
        self.mlp = Mlp(cfg.dim, cfg.mlp, drop=drop)

    def forward(self, x, m=None):
        dp = None if m is None else _t(m["drop_path"])
        x = x + drop_path(self.attn(self.norm1(x), m), self.drop_path, self.training, None if dp is None else dp[:, 0])
        x = x + drop_path(self.mlp(self.norm2(x), m), self.drop_path, self.training, None if dp is None else dp[:, 1])
        return x


class PaSST(nn.Module):
    """passt.py class PaSST, distilled=True, the parts forward_features uses"""

    def __init__(self, cfg, s_patchout_t=0, s_patchout_f=0, drop_rate=0., attn_drop_rate=0., drop_path_rate=0.):
        super().__init__()
        self.s_patchout_t, self.s_patchout_f = s_patchout_t, s_patchout_f
        self.patch_embed = PatchEmbed(cfg)
        D = cfg.dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, D))
        self.new_pos_embed = nn.Parameter(torch.zeros(1, 2, D))
        self.freq_new_pos_embed = nn.Parameter(torch.zeros(1, D, cfg.grid[0], 1))
        self.time_new_pos_embed = nn.Parameter(torch.zeros(1, D, 1, cfg.grid[1]))
        self.pos_drop = drop_rate
        dpr = [x.item() for x in torch.linspace(0, drop_path_rate, cfg.depth)]  # stochastic depth decay rule
        self.blocks = nn.ModuleList([Block(cfg, drop_rate, attn_drop_rate, dpr[i]) for i in range(cfg.depth)])
        self.norm = nn.LayerNorm(D, eps=cfg.ln_eps)

    def forward_features(self, x, patchout=None, masks=None):
        x = self.patch_embed(x)  # [b, e, f, t]
        B_dim, E_dim, F_dim, T_dim = x.shape
        time_new_pos_embed = self.time_new_pos_embed
        if x.shape[-1] != time_new_pos_embed.shape[-1]:
            time_new_pos_embed = time_new_pos_embed[:, :, :, :x.shape[-1]]
        x = x + time_new_pos_embed
        x = x + self.freq_new_pos_embed
        if patchout is not None:  # the C draws, item by item, in passt.py's order: time, then frequency
            tk, fk = patchout
            x = torch.stack([x[b][:, :, torch.as_tensor(tk[b]).long()][:, torch.as_tensor(fk[b]).long(), :]
                             for b in range(B_dim)])
        else:  # passt.py verbatim: one draw for the batch
            if self.training and self.s_patchout_t:
                random_indices = torch.randperm(T_dim)[:T_dim - self.s_patchout_t].sort().values
                x = x[:, :, :, random_indices]
            if self.training and self.s_patchout_f:
                random_indices = torch.randperm(F_dim)[:F_dim - self.s_patchout_f].sort().values
                x = x[:, :, random_indices, :]
        x = x.flatten(2).transpose(1, 2)
        cls_tokens = self.cls_token.expand(B_dim, -1, -1) + self.new_pos_embed[:, :1, :]
        dist_token = self.dist_token.expand(B_dim, -1, -1) + self.new_pos_embed[:, 1:, :]
        x = torch.cat((cls_tokens, dist_token, x), dim=1)
        x = _drop(x, self.pos_drop, self.training, None if masks is None else masks.pos)
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if masks is None else masks.blocks[i])
        x = self.norm(x)
        return x[:, 0], x[:, 1]

    def forward(self, x, patchout=None, masks=None):
        x = self.forward_features(x, patchout, masks)
        return (x[0] + x[1]) / 2  # features (the head is not used by SALSA)


class Tower(nn.Module):
    """the PaSST model and SALSA's projection; mel [B, S, M] frames major"""

    def __init__(self, cfg, **kw):
        super().__init__()
        self.passt = PaSST(cfg, **kw)
        self.proj = nn.Linear(cfg.dim, cfg.embed)

    def forward(self, mel, patchout=None, masks=None):
        f = self.passt(mel.transpose(1, 2)[:, None], patchout, masks)
        return self.proj(f)

    def published(self):
        """(name, parameter) with the names of a SALSA checkpoint, in PaSST's named_parameters() order"""
        out = [(PA + n, p) for n, p in self.passt.named_parameters()]
        return out + [(PROJ + "weight", self.proj.weight), (PROJ + "bias", self.proj.bias)]


def random_params(cfg, seed=0, fan_in=False):
    """{published name: float64 tensor}: N(0, 0.1) (matrices N(0, 1/fan_in) when fan_in: full-size models, whose
    attention would otherwise saturate), LN weights 1 + N(0, 0.1), the patch embedding's outputs O(1)"""
    g = torch.Generator().manual_seed(seed)
    t = Tower(cfg)
    out = {}
    for n, p in t.published():
        x = torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.1
        if ("norm" in n) and n.endswith(".weight"):
            x += 1.0
        elif n.endswith("patch_embed.proj.weight"):
            x /= math.sqrt(cfg.patch[0] * cfg.patch[1]) * 0.1 * 4
        elif fan_in and p.ndim == 2:
            x *= 10 / math.sqrt(p.shape[1])
        out[n] = x
    return out


def load(params, cfg, dtype=torch.float32, **kw):
    t = Tower(cfg, **kw).to(dtype)
    with torch.no_grad():
        for n, p in t.published():
            p.copy_(torch.as_tensor(params[n]).to(dtype).reshape(p.shape))
    return t
