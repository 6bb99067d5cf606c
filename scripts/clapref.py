"""PyTorch reference of WavCaps' CNN14-BERT CLAP (wsac.md A.4-A.6, B), written
with torch.nn.functional only, and random-weight checkpoints in the published
state_dict layout (for tests and benchmarks: the real weights cannot be
downloaded here).

    import clapref
    cfg = clapref.Config.full()                 # or Config.tiny() for tests
    sd = clapref.random_state_dict(cfg, seed=0)
    torch.save({"model": sd}, "clap.pt")        # the published layout
    emb = clapref.audio_forward(sd, mel)        # mel: [T, n_mels] -> [embed] L2-normalised
    emb = clapref.text_forward(sd, cfg, ids)    # ids: [L] with [CLS] ... [SEP]
"""
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

A = "audio_encoder.audio_enc."
T = "text_encoder.text_encoder."


@dataclass
class Config:
    n_mels: int = 64
    channels: list = field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])
    embed: int = 1024
    vocab: int = 30522
    hidden: int = 768
    layers: int = 12
    heads: int = 12
    intermediate: int = 3072
    positions: int = 512
    types: int = 2

    @staticmethod
    def full():
        return Config()

    @staticmethod
    def tiny():
        """A reduced model with the same key names: odd sizes on purpose."""
        return Config(channels=[4, 8, 12, 16, 20, 24], embed=40, hidden=48, layers=2, heads=4, intermediate=72)


def random_state_dict(cfg, seed=0, front_end=True, extras=True):
    """A state_dict with the published key names and random weights scaled so
    activations stay O(1) through the network. front_end/extras: include the
    torchlibrosa kernels, num_batches_tracked, position_ids and temp that the
    real checkpoint has (the converter must skip them)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=1.0):
        return torch.randn(*shape, generator=g) * std

    def bn(prefix, c):
        sd[prefix + "weight"] = 1.0 + 0.1 * rnd(c)
        sd[prefix + "bias"] = 0.1 * rnd(c)
        sd[prefix + "running_mean"] = 0.1 * rnd(c)
        sd[prefix + "running_var"] = 0.5 + torch.rand(c, generator=g)
        if extras:
            sd[prefix + "num_batches_tracked"] = torch.tensor(1000)

    sd = {}
    if front_end:
        sd[A + "audio_feats_extractor.mel_trans.stft.conv_real.weight"] = rnd(513, 1, 1024)
        sd[A + "audio_feats_extractor.mel_trans.stft.conv_imag.weight"] = rnd(513, 1, 1024)
        sd[A + "audio_feats_extractor.log_trans.melW"] = rnd(513, cfg.n_mels).abs()
    bn(A + "bn0.", cfg.n_mels)
    # bn0 normalises log-mel values (~ -100..+20 dB): running stats of that scale
    sd[A + "bn0.running_mean"] = -40.0 + 5.0 * rnd(cfg.n_mels)
    sd[A + "bn0.running_var"] = 300.0 + 50.0 * torch.rand(cfg.n_mels, generator=g)
    cin = 1
    for i, cout in enumerate(cfg.channels, 1):
        pre = A + "conv_block%d." % i
        sd[pre + "conv1.weight"] = rnd(cout, cin, 3, 3, std=(2.0 / (9 * cin)) ** 0.5)
        sd[pre + "conv2.weight"] = rnd(cout, cout, 3, 3, std=(2.0 / (9 * cout)) ** 0.5)
        bn(pre + "bn1.", cout)
        bn(pre + "bn2.", cout)
        cin = cout
    e = cfg.embed
    sd["audio_proj.0.weight"] = rnd(e, cin, std=cin ** -0.5)
    sd["audio_proj.0.bias"] = 0.1 * rnd(e)
    sd["audio_proj.2.weight"] = rnd(e, e, std=e ** -0.5)
    sd["audio_proj.2.bias"] = 0.1 * rnd(e)
    h, it = cfg.hidden, cfg.intermediate
    sd[T + "embeddings.word_embeddings.weight"] = rnd(cfg.vocab, h, std=0.5)
    sd[T + "embeddings.position_embeddings.weight"] = rnd(cfg.positions, h, std=0.2)
    sd[T + "embeddings.token_type_embeddings.weight"] = rnd(cfg.types, h, std=0.2)
    if extras:
        sd[T + "embeddings.position_ids"] = torch.arange(cfg.positions).unsqueeze(0)
    sd[T + "embeddings.LayerNorm.weight"] = 1.0 + 0.1 * rnd(h)
    sd[T + "embeddings.LayerNorm.bias"] = 0.1 * rnd(h)
    for L in range(cfg.layers):
        pre = T + "encoder.layer.%d." % L
        for m in ("query", "key", "value"):
            sd[pre + "attention.self.%s.weight" % m] = rnd(h, h, std=h ** -0.5)
            sd[pre + "attention.self.%s.bias" % m] = 0.1 * rnd(h)
        sd[pre + "attention.output.dense.weight"] = rnd(h, h, std=h ** -0.5)
        sd[pre + "attention.output.dense.bias"] = 0.1 * rnd(h)
        sd[pre + "attention.output.LayerNorm.weight"] = 1.0 + 0.1 * rnd(h)
        sd[pre + "attention.output.LayerNorm.bias"] = 0.1 * rnd(h)
        sd[pre + "intermediate.dense.weight"] = rnd(it, h, std=h ** -0.5)
        sd[pre + "intermediate.dense.bias"] = 0.1 * rnd(it)
        sd[pre + "output.dense.weight"] = rnd(h, it, std=it ** -0.5)
        sd[pre + "output.dense.bias"] = 0.1 * rnd(h)
        sd[pre + "output.LayerNorm.weight"] = 1.0 + 0.1 * rnd(h)
        sd[pre + "output.LayerNorm.bias"] = 0.1 * rnd(h)
    sd["text_proj.0.weight"] = rnd(e, h, std=h ** -0.5)
    sd["text_proj.0.bias"] = 0.1 * rnd(e)
    sd["text_proj.2.weight"] = rnd(e, e, std=e ** -0.5)
    sd["text_proj.2.bias"] = 0.1 * rnd(e)
    if extras:
        sd["temp"] = torch.tensor(0.07)
    return sd


def _bn(x, sd, pre, dim_channels=1):
    return F.batch_norm(x, sd[pre + "running_mean"], sd[pre + "running_var"], sd[pre + "weight"],
                        sd[pre + "bias"], training=False, eps=1e-5)


@torch.no_grad()
def audio_features(sd, mel):
    """Cnn14 trunk after the front end: mel [T, n_mels] (or [B, T, n_mels]) -> [B, C_last]."""
    x = torch.as_tensor(mel, dtype=torch.float32)
    if x.dim() == 2:
        x = x[None]
    x = x[:, None]                                   # (B, 1, T, M)
    x = x.transpose(1, 3)                            # (B, M, T, 1): bn0 over mel bins
    x = _bn(x, sd, A + "bn0.")
    x = x.transpose(1, 3)                            # (B, 1, T, M)
    i = 1
    while A + "conv_block%d.conv1.weight" % i in sd:
        pre = A + "conv_block%d." % i
        x = F.relu(_bn(F.conv2d(x, sd[pre + "conv1.weight"], padding=1), sd, pre + "bn1."))
        x = F.relu(_bn(F.conv2d(x, sd[pre + "conv2.weight"], padding=1), sd, pre + "bn2."))
        x = F.avg_pool2d(x, kernel_size=(2, 2))
        i += 1
    x = torch.mean(x, dim=3)                         # over the mel axis
    x1, _ = torch.max(x, dim=2)
    x2 = torch.mean(x, dim=2)
    return x1 + x2


@torch.no_grad()
def audio_forward(sd, mel):
    x = audio_features(sd, mel)
    x = F.linear(F.relu(F.linear(x, sd["audio_proj.0.weight"], sd["audio_proj.0.bias"])),
                 sd["audio_proj.2.weight"], sd["audio_proj.2.bias"])
    return F.normalize(x, dim=-1)


@torch.no_grad()
def text_hidden(sd, cfg, ids, mask=None):
    """BERT (post-LN, erf GELU, LN eps 1e-12, token type 0): ids [B, L] -> [B, L, H]."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    if ids.dim() == 1:
        ids = ids[None]
    B, L = ids.shape
    if mask is None:
        mask = torch.ones(B, L)
    mask = torch.as_tensor(mask, dtype=torch.float32)
    h = cfg.hidden
    x = sd[T + "embeddings.word_embeddings.weight"][ids] + sd[T + "embeddings.position_embeddings.weight"][:L][None] \
        + sd[T + "embeddings.token_type_embeddings.weight"][0][None, None]
    x = F.layer_norm(x, (h,), sd[T + "embeddings.LayerNorm.weight"], sd[T + "embeddings.LayerNorm.bias"], eps=1e-12)
    ext = (1.0 - mask)[:, None, None, :] * torch.finfo(torch.float32).min
    nh, hd = cfg.heads, h // cfg.heads
    for Li in range(cfg.layers):
        pre = T + "encoder.layer.%d." % Li

        def lin(z, name):
            return F.linear(z, sd[pre + name + ".weight"], sd[pre + name + ".bias"])

        q = lin(x, "attention.self.query").view(B, L, nh, hd).transpose(1, 2)
        k = lin(x, "attention.self.key").view(B, L, nh, hd).transpose(1, 2)
        v = lin(x, "attention.self.value").view(B, L, nh, hd).transpose(1, 2)
        s = torch.matmul(q, k.transpose(-1, -2)) / (hd ** 0.5) + ext
        p = torch.softmax(s, dim=-1)
        a = torch.matmul(p, v).transpose(1, 2).reshape(B, L, h)
        x = F.layer_norm(lin(a, "attention.output.dense") + x, (h,), sd[pre + "attention.output.LayerNorm.weight"],
                         sd[pre + "attention.output.LayerNorm.bias"], eps=1e-12)
        f = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(f + x, (h,), sd[pre + "output.LayerNorm.weight"], sd[pre + "output.LayerNorm.bias"],
                         eps=1e-12)
    return x


@torch.no_grad()
def text_forward(sd, cfg, ids, mask=None):
    """[CLS] output -> text_proj -> L2 normalise: [B, embed]."""
    x = text_hidden(sd, cfg, ids, mask)[:, 0]
    x = F.linear(F.relu(F.linear(x, sd["text_proj.0.weight"], sd["text_proj.0.bias"])),
                 sd["text_proj.2.weight"], sd["text_proj.2.bias"])
    return F.normalize(x, dim=-1)
