"""PyTorch reference of SALSA's text branch: HF RobertaModel (add_pooling_layer
=False) on SALSA's preprocessed, padded captions, the first token pooled,
project_sentence (one Linear), L2-normalised (salsa.md 1; the published
experiments/ex_dcase24.py forward_sentence and rank_sequences). Written from
the published code with torch.nn.functional only: no HF code is imported
(transformers is not installed here); what HF computes is spelled out:

  RobertaEmbeddings: position_ids = create_position_ids_from_input_ids(ids,
      padding_idx) = cumsum(ids != pad) * (ids != pad) + pad (the real tokens
      count from pad + 1, every padding token sits at pad); token_type_ids
      zeros; x = LayerNorm(word[ids] + type[0] + position[pos]), eps 1e-5
  encoder: post-LN BertLayer (RobertaLayer) x N, exact (erf) GELU, the
      attention mask (1 - mask) * finfo.min added to the scores
  forward_sentence: caption.lower().translate(punctuation deleted);
      tokenizer(captions, add_special_tokens=True, padding='max_length',
      max_length=32, truncation=True); hidden[:, 0] (use_first_token; the
      mean over one unmasked token is that token); project_sentence.0
  rank_sequences: F.normalize(p=2, dim=-1)

    import robertaref, bperef
    sd = {name: tensor}                     # SALSA's names (sentence_embedding_model.*, project_sentence.0.*)
    bpe = bperef.BPE("vocab.json", "merges.txt")
    emb = robertaref.caption_forward(sd, heads, bpe, ["A dog barks."])   # [B, E]
    ids, mask = robertaref.tokenize(bpe, captions, pad_id)               # the [B, 32] batch SALSA builds
"""
import torch
import torch.nn.functional as F

import bperef

TX = "sentence_embedding_model."
PROJ = "project_sentence.0."
MAX_LEN = 32  # ex_dcase24.py: max_sentence_tokens


def tokenize(bpe, captions, pad_id, max_len=MAX_LEN, preprocess=True):
    """SALSA's tokenizer call: ids and attention mask [B, max_len] (padding='max_length')."""
    ids = []
    for c in captions:
        t = bperef.salsa_preprocess(c) if preprocess else c
        ids.append(bpe.encode(t, max_len))
    out = torch.full((len(ids), max_len), pad_id, dtype=torch.long)
    mask = torch.zeros(len(ids), max_len, dtype=torch.long)
    for i, s in enumerate(ids):
        out[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return out, mask


def layers(sd):
    n = 0
    while TX + "encoder.layer.%d.attention.self.query.weight" % n in sd:
        n += 1
    return n


@torch.no_grad()
def hidden(sd, heads, ids, mask, pad_id, eps=1e-5):
    """RobertaModel(input_ids=ids, attention_mask=mask)[0]: [B, L, H]."""
    ids = torch.as_tensor(ids, dtype=torch.long)
    mask = torch.as_tensor(mask)
    B, L = ids.shape
    H = sd[TX + "embeddings.word_embeddings.weight"].shape[1]
    m = ids.ne(pad_id).int()
    pos = (torch.cumsum(m, dim=1).type_as(m) * m).long() + pad_id  # create_position_ids_from_input_ids
    tt = torch.zeros_like(ids)
    x = sd[TX + "embeddings.word_embeddings.weight"][ids] + sd[TX + "embeddings.token_type_embeddings.weight"][tt]
    x = x + sd[TX + "embeddings.position_embeddings.weight"][pos]
    x = F.layer_norm(x, (H,), sd[TX + "embeddings.LayerNorm.weight"], sd[TX + "embeddings.LayerNorm.bias"], eps=eps)
    ext = (1.0 - mask.float())[:, None, None, :] * torch.finfo(torch.float32).min
    nh, hd = heads, H // heads
    for li in range(layers(sd)):
        pre = TX + "encoder.layer.%d." % li

        def lin(z, name):
            return F.linear(z, sd[pre + name + ".weight"], sd[pre + name + ".bias"])

        q = lin(x, "attention.self.query").view(B, L, nh, hd).transpose(1, 2)
        k = lin(x, "attention.self.key").view(B, L, nh, hd).transpose(1, 2)
        v = lin(x, "attention.self.value").view(B, L, nh, hd).transpose(1, 2)
        s = torch.matmul(q, k.transpose(-1, -2)) / (hd ** 0.5) + ext
        p = torch.softmax(s, dim=-1)
        a = torch.matmul(p, v).transpose(1, 2).reshape(B, L, H)
        x = F.layer_norm(lin(a, "attention.output.dense") + x, (H,), sd[pre + "attention.output.LayerNorm.weight"],
                         sd[pre + "attention.output.LayerNorm.bias"], eps=eps)
        f = lin(F.gelu(lin(x, "intermediate.dense")), "output.dense")
        x = F.layer_norm(f + x, (H,), sd[pre + "output.LayerNorm.weight"], sd[pre + "output.LayerNorm.bias"], eps=eps)
    return x


@torch.no_grad()
def ids_forward(sd, heads, ids, mask, pad_id):
    """First token -> project_sentence -> L2 normalise: [B, E]."""
    x = hidden(sd, heads, ids, mask, pad_id)[:, 0]
    x = F.linear(x, sd[PROJ + "weight"], sd[PROJ + "bias"])
    return F.normalize(x, p=2, dim=-1)


def caption_forward(sd, heads, bpe, captions, max_len=MAX_LEN, batch=16):
    """SALSA's whole text branch on caption strings: [B, E]."""
    pad = bpe.encoder["<pad>"]
    out = []
    for i in range(0, len(captions), batch):
        ids, mask = tokenize(bpe, captions[i:i + batch], pad, max_len)
        out.append(ids_forward(sd, heads, ids, mask, pad))
    return torch.cat(out) if out else torch.zeros(0)
