"""PyTorch reference of SALSA's text branch in training mode: HF RobertaModel
(add_pooling_layer=False, hidden_dropout_prob=0.2, attention_probs_dropout_prob
=0.2: SALSA's models/text/sentence_embedding_models.py) on the padded, masked
batch SALSA's forward_sentence builds, the first token (<s>) pooled,
project_sentence (one Linear), unnormalised (the loss normalises: salsa_loss).

The module semantics are scripts/robertaref.py's (inference), made a
torch.nn.Module with the published names (sentence_embedding_model.*,
project_sentence.0.*) so that autograd gives every parameter's gradient; the
encoder's layers are scripts/claptrainref.py's BERT modules (RobertaLayer is
BertLayer), with RoBERTa's LayerNorm eps. What HF's RobertaEmbeddings adds:

  position_ids = create_position_ids_from_input_ids(ids, padding_idx):
      cumsum(ids != pad) * (ids != pad) + pad   (real tokens from pad + 1)
  x = dropout(LayerNorm(word[ids] + type[0] + position[pos]))

Dropout (train mode) at HF's four sites: the embeddings, the attention
probabilities, the attention output (before its residual LayerNorm) and the
feed-forward output. The masks are torch's own (drop="torch") or replayed
(drop=Masks(...): the masks another implementation drew, kept entries
scaled by 1 / (1 - p) as torch's dropout), or off (drop=None).

    import robertatrainref as RT
    m = RT.RobertaText(RT.Config(vocab=50265, hidden=33, ...), pad_id=1)
    m.load_published(sd)                    # SALSA's state_dict names
    e = m(ids, mask)                        # [B, E], padded ids [B, L], mask [B, L]
    loss = claptrainref.salsa_loss(audio, e, audio_ids)[2]; loss.backward()
"""
import dataclasses
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

import claptrainref as CT

TX = "sentence_embedding_model."
PROJ = "project_sentence."


@dataclasses.dataclass
class Config:
    vocab: int = 50265
    hidden: int = 1024
    layers: int = 24
    heads: int = 16
    intermediate: int = 4096
    positions: int = 514
    types: int = 1
    embed: int = 1024
    eps: float = 1e-5  # RobertaConfig layer_norm_eps (roberta-large's config.json)


class Masks:
    """Dropout masks to replay: emb [B, L, H], per layer h1, h2 [B, L, H] and
    att [B, NH, L, L] (1 keep, 0 drop), with the rates they were drawn at."""

    def __init__(self, emb, h1, h2, att, p_hidden, p_attn):
        self.emb, self.h1, self.h2, self.att = emb, h1, h2, att
        self.p_hidden, self.p_attn = p_hidden, p_attn


class RobertaText(nn.Module):
    def __init__(self, cfg, pad_id, hidden_dropout=0.2, attn_dropout=0.2):
        super().__init__()
        self.cfg, self.pad_id = cfg, pad_id
        self.hidden_dropout, self.attn_dropout = hidden_dropout, attn_dropout
        enc = CT.BertModel(cfg, hidden_dropout)  # the names of RobertaModel(add_pooling_layer=False)
        for mod in enc.modules():
            if isinstance(mod, nn.LayerNorm):
                mod.eps = cfg.eps
        self.sentence_embedding_model = enc
        self.project_sentence = nn.Sequential(nn.Linear(cfg.hidden, cfg.embed))  # adopt_n_layers 0: one Linear

    def load_published(self, sd):
        own = self.state_dict()
        self.load_state_dict({k: sd[k] for k in own})

    def _drop(self, x, p, mask, drop):
        if drop is None or p == 0:
            return x
        if isinstance(drop, Masks):
            return x * mask.to(x.dtype) / (1.0 - p)
        return F.dropout(x, p, training=True)

    def forward(self, ids, mask, drop=None):
        """ids, mask [B, L] (right padding with pad_id, mask 0) -> e [B, E]."""
        enc, cfg = self.sentence_embedding_model, self.cfg
        B, L = ids.shape
        H, nh = cfg.hidden, cfg.heads
        hd = H // nh
        ph = drop.p_hidden if isinstance(drop, Masks) else self.hidden_dropout
        pa = drop.p_attn if isinstance(drop, Masks) else self.attn_dropout
        m = ids.ne(self.pad_id).int()
        pos = (torch.cumsum(m, dim=1).type_as(m) * m).long() + self.pad_id  # create_position_ids_from_input_ids
        em = enc.embeddings
        x = em.word_embeddings(ids) + em.token_type_embeddings(torch.zeros_like(ids))
        x = x + em.position_embeddings(pos)
        x = em.LayerNorm(x)
        x = self._drop(x, ph, drop.emb if isinstance(drop, Masks) else None, drop)
        ext = (1.0 - mask.to(x.dtype))[:, None, None, :] * torch.finfo(x.dtype).min
        for li, layer in enumerate(enc.encoder.layer):
            sa, so = layer.attention.self, layer.attention.output

            def split(z):
                return z.view(B, L, nh, hd).transpose(1, 2)

            q, k, v = split(sa.query(x)), split(sa.key(x)), split(sa.value(x))
            s = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hd) + ext
            p = torch.softmax(s, dim=-1)
            p = self._drop(p, pa, drop.att[li] if isinstance(drop, Masks) else None, drop)
            a = torch.matmul(p, v).transpose(1, 2).reshape(B, L, H)
            a = self._drop(so.dense(a), ph, drop.h1[li] if isinstance(drop, Masks) else None, drop)
            x = so.LayerNorm(a + x)
            f = layer.output.dense(layer.intermediate(x))  # exact (erf) GELU between
            f = self._drop(f, ph, drop.h2[li] if isinstance(drop, Masks) else None, drop)
            x = layer.output.LayerNorm(f + x)
        return self.project_sentence(x[:, 0])  # use_first_token: <s>


def param_order(layers):
    """lib/bert_train.c's tensor table for a RoBERTa tower (its gradient block's order)."""
    p = [TX + "embeddings." + n for n in ("word_embeddings.weight", "position_embeddings.weight",
                                          "token_type_embeddings.weight", "LayerNorm.weight", "LayerNorm.bias")]
    for li in range(layers):
        b = TX + "encoder.layer.%d." % li
        p += [b + n for n in (
            "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
            "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
            "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
            "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
            "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias")]
    return p + [PROJ + "0.weight", PROJ + "0.bias"]
