"""PyTorch reference of clap-train: WavCaps' CNN14-BERT CLAP as torch.nn
modules in training mode, trained as SALSA trains (shared/reference/salsa.md
§2-3; github:OptimusPrimus/salsa experiments/ex_dcase24.py: training_step,
configure_optimizers, update_lr; github:XinhaoMei/WavCaps retrieval/models:
cnns.py Cnn14, ase_model.py ASE, text_encoder.py BertModel).

The modules carry the published parameter names (audio_encoder.audio_enc.*,
audio_proj.*, text_encoder.text_encoder.*, text_proj.*), so the state_dicts
of scripts/clapref.py (random_state_dict) and of a WavCaps checkpoint load as
they are; in eval mode the model computes what clapref.audio_forward /
text_forward compute.

    import clapref, claptrainref as R
    cfg = clapref.Config.tiny()
    m = R.Clap(cfg, cnn_dropout=0.2, bert_dropout=0.1)
    m.load_published(clapref.random_state_dict(cfg))
    opt = R.optimizer(m, lr=2e-5)
    loss = R.train_step(m, opt, mel, ids, mask, audio_ids, step, steps_per_epoch)

Training-mode behaviour as published: dropout p=0.2 after every ConvBlock
(cnns.py), BERT's hidden and attention dropout (HF default 0.1), BatchNorm on
batch statistics with running statistics updated (momentum 0.1), SpecAugment
after bn0 (cnns.py Cnn14.forward, on in WavCaps' settings/train.yaml:
spec_augmentation: True; torchlibrosa 0.0.9 SpecAugmentation(64, 2, 8, 2)):
Clap(spec_augment=True) draws it with torch's generator, project_audio(spec=)
applies given stripes (clap-train's, keyed by item). Off by default here, so
that the parity tests compare the deterministic network.
fp16 AMP (SALSA's half_precision) is not modelled: everything is float32."""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

TAU = 0.05


# ------------------------------------------------------------------ CNN14 (WavCaps cnns.py)
class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        self.conv2 = nn.Conv2d(cout, cout, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1), bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, dec=None, rec=None):
        """dec: None, or the two ReLU decisions (bool masks, True = positive) of
        another run to replay instead of deciding (relu(z) = z * mask, the same
        gradient as threshold_backward); rec: a dict the decisions taken are
        recorded in (_relu)."""
        x = _relu(self.bn1(self.conv1(x)), dec and dec[0], rec)
        x = _relu(self.bn2(self.conv2(x)), dec and dec[1], rec)
        return F.avg_pool2d(x, kernel_size=(2, 2))


def _relu(z, mask, rec):
    """relu(z), or z * mask replaying a decision; rec (a dict or None) gets
    the mask taken appended to rec["relu"], and z itself to rec["pre"] when
    that list is there (the margins of the decisions)."""
    if rec is not None and "pre" in rec:
        rec["pre"].append(z.detach().clone())
    y = F.relu_(z) if mask is None else z * mask.to(z.dtype)
    if rec is not None:
        rec.setdefault("relu", []).append((y > 0).detach())
    return y


def spec_stripes(B, T, M, widths=(64, 8), nums=(2, 2)):
    """SpecAugment's stripes as torchlibrosa 0.0.9 draws them (DropStripes
    .transform_slice: per clip, per stripe, distance = randint(0, drop_width),
    bgn = randint(0, total_width - distance); the time dropper first, then the
    frequency one): int64 [B, nums[0] + nums[1], 2] of (start, width)."""
    out = torch.zeros(B, nums[0] + nums[1], 2, dtype=torch.long)
    for axis, total in ((0, T), (1, M)):
        for n in range(B):
            for i in range(nums[axis]):
                d = int(torch.randint(low=0, high=widths[axis], size=(1,))[0])
                b = int(torch.randint(low=0, high=total - d, size=(1,))[0])
                out[n, axis * nums[0] + i] = torch.tensor([b, d])
    return out


def spec_mask(stripes, T, M, ntime=2, dtype=torch.float32):
    """[B, 1, T, M]: 0 on the stripes (the first ntime of each clip over
    frames, the rest over mel bins), 1 elsewhere"""
    B = stripes.shape[0]
    mask = torch.ones(B, 1, T, M, dtype=dtype)
    for n in range(B):
        for i, (b, d) in enumerate(stripes[n].tolist()):
            if i < ntime:
                mask[n, :, b:b + d, :] = 0
            else:
                mask[n, :, :, b:b + d] = 0
    return mask


class Cnn14(nn.Module):
    """Cnn14 after the front end: mel [B, T, M] -> [B, C_last]."""

    def __init__(self, n_mels, channels, dropout=0.2, spec_augment=False):
        super().__init__()
        self.spec_augment = spec_augment  # WavCaps settings/train.yaml: spec_augmentation: True
        self.bn0 = nn.BatchNorm2d(n_mels)
        cin = 1
        for i, c in enumerate(channels, 1):
            setattr(self, "conv_block%d" % i, ConvBlock(cin, c))
            cin = c
        self.nblocks = len(channels)
        self.dropout = dropout

    def forward(self, mel, dec=None, rec=None, spec=None):
        """dec / rec: decisions to replay / a dict to record them in (see
        Clap.project_audio); None: decided here, as published. spec: SpecAugment
        stripes [B, 4, 2] to apply (e.g. clap-train's), whatever the mode;
        None: drawn by spec_stripes in training mode if spec_augment (cnns.py:
        if self.training and self.is_spec_augment), else none."""
        x = mel[:, None]                     # (B, 1, T, M)
        x = x.transpose(1, 3)
        x = self.bn0(x)
        x = x.transpose(1, 3)
        if spec is None and self.training and self.spec_augment:
            spec = spec_stripes(x.shape[0], x.shape[2], x.shape[3])
        if spec is not None:  # torchlibrosa zeroes in place; the same values and gradient
            x = x * spec_mask(spec, x.shape[2], x.shape[3], dtype=x.dtype)
        if rec is not None:
            rec["spec"] = spec
        for i in range(1, self.nblocks + 1):
            x = getattr(self, "conv_block%d" % i)(x, dec and dec["relu"][2 * i - 2:2 * i], rec)
            x = F.dropout(x, p=self.dropout, training=self.training)
        x = torch.mean(x, dim=3)
        if dec is None:
            x1, am = torch.max(x, dim=2)
        else:  # the frame another run took as the maximum (its gradient goes there)
            am = dec["argmax"]
            x1 = x.gather(2, am[..., None])[..., 0]
        if rec is not None:
            rec["argmax"] = am
            rec["tmean"] = x.detach().clone()
        x2 = torch.mean(x, dim=2)
        return x1 + x2


# ------------------------------------------------------------------ BERT (HF BertModel names, add_pooling_layer=False)
class BertEmbeddings(nn.Module):
    def __init__(self, cfg, p):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.positions, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.types, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.dropout = nn.Dropout(p)

    def forward(self, ids):
        L = ids.shape[1]
        pos = torch.arange(L)[None]
        x = self.word_embeddings(ids) + self.token_type_embeddings(torch.zeros_like(ids)) \
            + self.position_embeddings(pos)
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    def __init__(self, cfg, p):
        super().__init__()
        h = cfg.hidden
        self.nh, self.hd = cfg.heads, h // cfg.heads
        self.query, self.key, self.value = nn.Linear(h, h), nn.Linear(h, h), nn.Linear(h, h)
        self.dropout = nn.Dropout(p)

    def forward(self, x, ext):
        B, L, h = x.shape

        def split(z):
            return z.view(B, L, self.nh, self.hd).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.hd) + ext
        p = self.dropout(torch.softmax(s, dim=-1))
        return torch.matmul(p, v).transpose(1, 2).reshape(B, L, h)


class BertSelfOutput(nn.Module):
    def __init__(self, cfg, p, width):
        super().__init__()
        self.dense = nn.Linear(width, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=1e-12)
        self.dropout = nn.Dropout(p)

    def forward(self, x, res):
        return self.LayerNorm(self.dropout(self.dense(x)) + res)


class BertAttention(nn.Module):
    def __init__(self, cfg, p):
        super().__init__()
        self.self = BertSelfAttention(cfg, p)
        self.output = BertSelfOutput(cfg, p, cfg.hidden)

    def forward(self, x, ext):
        return self.output(self.self(x, ext), x)


class BertIntermediate(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.intermediate)

    def forward(self, x):
        return F.gelu(self.dense(x))  # erf GELU (hidden_act "gelu")


class BertLayer(nn.Module):
    def __init__(self, cfg, p):
        super().__init__()
        self.attention = BertAttention(cfg, p)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg, p, cfg.intermediate)

    def forward(self, x, ext):
        a = self.attention(x, ext)
        return self.output(self.intermediate(a), a)


class BertEncoder(nn.Module):
    def __init__(self, cfg, p):
        super().__init__()
        self.layer = nn.ModuleList([BertLayer(cfg, p) for _ in range(cfg.layers)])


class BertModel(nn.Module):
    """ids [B, L], mask [B, L] (1 real, 0 padding) -> last hidden states [B, L, H]."""

    def __init__(self, cfg, p=0.1):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg, p)
        self.encoder = BertEncoder(cfg, p)

    def forward(self, ids, mask):
        ext = (1.0 - mask.float())[:, None, None, :] * torch.finfo(torch.float32).min
        x = self.embeddings(ids)
        for layer in self.encoder.layer:
            x = layer(x, ext)
        return x


# ------------------------------------------------------------------ the CLAP (WavCaps ase_model.py)
class _Holder(nn.Module):
    pass


class Clap(nn.Module):
    def __init__(self, cfg, cnn_dropout=0.2, bert_dropout=0.1, spec_augment=False):
        super().__init__()
        self.cfg = cfg
        self.audio_encoder = _Holder()
        self.audio_encoder.audio_enc = Cnn14(cfg.n_mels, cfg.channels, cnn_dropout, spec_augment)
        self.text_encoder = _Holder()
        self.text_encoder.text_encoder = BertModel(cfg, bert_dropout)
        e = cfg.embed
        self.audio_proj = nn.Sequential(nn.Linear(cfg.channels[-1], e), nn.ReLU(), nn.Linear(e, e))
        self.text_proj = nn.Sequential(nn.Linear(cfg.hidden, e), nn.ReLU(), nn.Linear(e, e))

    def load_published(self, sd):
        """Load a published-layout state_dict; the front end's kernels, temp and
        position_ids (not parameters of this model) are skipped."""
        own = self.state_dict()
        keep = {k: v for k, v in sd.items() if k in own}
        for k in own:  # a converted file carries no num_batches_tracked
            if k not in keep and k.endswith("num_batches_tracked"):
                keep[k] = own[k]
        missing = [k for k in own if k not in keep]
        if missing:
            raise KeyError("state_dict lacks %s" % ", ".join(missing[:5]))
        self.load_state_dict(keep, strict=True)

    def project_audio(self, mel, dec=None, rec=None, spec=None):
        """unnormalised audio embeddings [B, E] (ASE.encode_audio before F.normalize).

        The branch decisions of the forward pass (every ReLU's mask, the head's
        argmax over time) can be recorded (rec: a dict, filled with "relu": a
        list of bool masks, two per ConvBlock then audio_proj's, "argmax", the
        head's per-frame means "tmean", and, if rec has a list "pre", every
        ReLU's input)
        or replayed (dec: such a dict, e.g. clap-train's): a float64 run that
        replays a float32 run's decisions is the exact value of the function
        that run computed, which separates its rounding error from the
        decisions rounding flipped (tests/full/test_clap_train_full.py)."""
        x = self.audio_encoder.audio_enc(mel, dec, rec, spec)
        p = self.audio_proj
        h = _relu(p[0](x), dec and dec["relu"][-1], rec)
        return p[2](h)

    def project_text(self, ids, mask):
        return self.text_proj(self.text_encoder.text_encoder(ids, mask)[:, 0, :])


# ------------------------------------------------------------------ SALSA's loss, optimiser and schedule
def salsa_loss(a, t, audio_ids, ta=None, tt=None, tau=TAU, loss_weight=1.0, distill_weight=0.0):
    """training_step of ex_dcase24.py: a, t [B, E] unnormalised embeddings;
    audio_ids [B] (equal = same audio); ta, tt [B, M, E] teacher embeddings.
    Returns (L_sup, L_dist, loss) combined as published: with distill_weight > 0
    L_sup is multiplied by loss_weight twice (loss = lw * (lw * L_sup) + dw * L_dist)."""
    an, tn = F.normalize(a, p=2, dim=-1), F.normalize(t, p=2, dim=-1)
    C = (an[:, None] * tn[None, :]).sum(-1) / abs(tau)
    I = audio_ids[None, :] == audio_ids[:, None]
    la, lt = torch.log_softmax(C, dim=0), torch.log_softmax(C, dim=1)
    lsup = -0.5 * (la[torch.where(I)].mean() + lt[torch.where(I)].mean())
    loss = loss_weight * lsup
    ld = torch.zeros((), dtype=a.dtype)
    if distill_weight > 0:
        se, ae = F.normalize(tt, p=2, dim=-1), F.normalize(ta, p=2, dim=-1)
        Cd = (ae[:, None] * se[None, :]).sum(-1).mean(-1) / abs(tau)
        ld = 0.5 * (F.cross_entropy(C, torch.softmax(Cd, dim=1)) + F.cross_entropy(C.T, torch.softmax(Cd.T, dim=1)))
        loss = loss_weight * loss + distill_weight * ld
    return lsup, ld, loss


GROUPS = ("audio encoder", "text encoder", "audio projection", "text projection")


def group_of(name):
    """configure_optimizers' four groups, by the published names (tau, frozen
    here, would go with the audio projection)"""
    if name.startswith("audio_encoder."):
        return 0
    if name.startswith("text_encoder."):
        return 1
    if name.startswith("audio_proj."):
        return 2
    if name.startswith("text_proj."):
        return 3
    raise ValueError(name)


def optimizer(model, lr=2e-5, lrs=None, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
    """AdamW with SALSA's four parameter groups (lr_audio_encoder,
    lr_sentence_encoder, lr_audio_project, lr_sentence_project)."""
    lrs = lrs or [lr] * 4
    groups = [[] for _ in range(4)]
    for k, p in model.named_parameters():
        groups[group_of(k)].append(p)
    return torch.optim.AdamW([{"params": g, "lr": l} for g, l in zip(groups, lrs)], betas=betas, eps=eps,
                             weight_decay=weight_decay, amsgrad=False)


def schedule(epoch, lr, min_lr=1e-7, warmup_length=1, rampdown_start=1, rampdown_stop=15, max_epochs=20):
    """update_lr with warmup_type 'linear', rampdown_type 'cosine'; epoch
    fractional (hard_steps=False): current_epoch + batch_idx / num_batches."""
    if rampdown_stop <= 0:
        rampdown_stop = max_epochs
    if epoch < warmup_length:
        return lr * epoch / warmup_length
    if epoch < rampdown_start:
        return lr
    if epoch < rampdown_stop:
        return min_lr + (lr - min_lr) * 0.5 * (1. + math.cos(math.pi * (epoch - rampdown_start)
                                                              / (rampdown_stop - rampdown_start)))
    return min_lr


def train_step(model, opt, mel, ids, mask, audio_ids, step, steps_per_epoch, base_lrs=None, teachers=None,
               loss_weight=1.0, distill_weight=0.0, sched=True, sched_kw=None):
    """One optimiser step as Lightning runs training_step: the learning rates
    set first (update_scalars), then forward, loss, backward, AdamW step.
    Returns the three loss values (L_sup, L_dist, loss) as floats."""
    base_lrs = base_lrs or [g["initial_lr"] if "initial_lr" in g else g["lr"] for g in opt.param_groups]
    if not hasattr(opt, "_base_lrs"):
        opt._base_lrs = list(base_lrs)
    if sched:
        epoch = step / steps_per_epoch
        for g, l in zip(opt.param_groups, opt._base_lrs):
            g["lr"] = schedule(epoch, l, **(sched_kw or {}))
    model.train()
    opt.zero_grad(set_to_none=False)
    a = model.project_audio(mel)
    t = model.project_text(ids, mask)
    ta, tt = teachers if teachers is not None else (None, None)
    ls, ld, loss = salsa_loss(a, t, audio_ids, ta, tt, loss_weight=loss_weight, distill_weight=distill_weight)
    loss.backward()
    opt.step()
    return ls.item(), ld.item(), loss.item()
