"""PyTorch reference of the WSAC prefix decoder (wsac.md C, C.1, D): the
TextDecoder (clap_project Linear + GPT2LMHeadModel, transformers 4.27 GPT-2
math) in torch.nn.functional, random checkpoints in the published state_dict
layout, the published training step (noise injection, CrossEntropyLoss with
ignore_index=0, transformers.AdamW, get_linear_schedule_with_warmup) and the
published greedy decoding loop, verbatim; plus a KV-cached greedy loop (the
fair PyTorch baseline for benchmarks) and the BERT tokenizer's decode().

    import decref
    cfg = decref.Config.full()                  # or Config.tiny() for tests
    sd = decref.random_state_dict(cfg, seed=0)  # published names, incl. attn.bias/masked_bias, lm_head
    torch.save(sd, "decoder.pt")                # what `convert.py decoder` reads
    logits = decref.forward(sd, cfg, emb, tokens)            # [B, 1 + S, V]
    ids = decref.published_greedy(sd, cfg, emb[0])           # evaluation.py's loop
"""
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

TD = "decoder.transformer."


@dataclass
class Config:
    vocab: int = 50257        # vocab_size of pickles/decoder_config.pkl
    positions: int = 1024     # n_positions
    embd: int = 768           # n_embd
    layers: int = 4           # n_layer
    heads: int = 4            # n_head
    inner: int = 3072         # n_inner None -> 4 * n_embd
    prefix: int = 1024        # CLAP embedding width
    eps: float = 1e-5         # layer_norm_epsilon

    @staticmethod
    def full():
        return Config()

    @staticmethod
    def tiny(vocab=30522):
        """Small and odd sizes, the real BERT vocabulary (tokenization stays real)."""
        return Config(vocab=vocab, positions=40, embd=48, layers=2, heads=4, inner=80, prefix=24)


def param_names(cfg):
    """The trainable parameters, in the C trainer's order (lib/gpt.c gpt_tensor_list)."""
    names = ["clap_project.model.0.weight", "clap_project.model.0.bias", TD + "wte.weight", TD + "wpe.weight"]
    for i in range(cfg.layers):
        p = TD + "h.%d." % i
        names += [p + n for n in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                  "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                  "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias")]
    return names + [TD + "ln_f.weight", TD + "ln_f.bias"]


def random_state_dict(cfg, seed=0, buffers=True, lm_head=True, known=30522, unused_scale=0.1, std=0.02):
    """Random weights in the published TextDecoder layout. GPT-2's own init
    scale (0.02), with non-trivial LayerNorm and bias values so every path
    matters. Rows >= `known` of wte (ids the BERT tokenizer never produces;
    a trained model pushes their logits down) are scaled by unused_scale.
    buffers: the attn.bias causal mask and attn.masked_bias that
    transformers 4.27 saves; lm_head: decoder.lm_head.weight, the same tensor
    as wte (tied), as state_dict() returns it."""
    g = torch.Generator().manual_seed(seed)

    base = std

    def rnd(*shape, std=None):
        return torch.randn(*shape, generator=g) * (base if std is None else std)

    C, Fi = cfg.embd, cfg.inner
    sd = {}
    bound = 1.0 / math.sqrt(cfg.prefix)  # nn.Linear's default init
    sd["clap_project.model.0.weight"] = (torch.rand(C, cfg.prefix, generator=g) * 2 - 1) * bound
    sd["clap_project.model.0.bias"] = (torch.rand(C, generator=g) * 2 - 1) * bound
    wte = rnd(cfg.vocab, C)
    if cfg.vocab > known:
        wte[known:] *= unused_scale
    sd[TD + "wte.weight"] = wte
    sd[TD + "wpe.weight"] = rnd(cfg.positions, C, std=base / 2)
    for i in range(cfg.layers):
        p = TD + "h.%d." % i
        sd[p + "ln_1.weight"] = 1.0 + 0.1 * rnd(C, std=1.0)
        sd[p + "ln_1.bias"] = rnd(C)
        if buffers:
            sd[p + "attn.bias"] = torch.tril(torch.ones((cfg.positions, cfg.positions), dtype=torch.bool)).view(
                1, 1, cfg.positions, cfg.positions)
            sd[p + "attn.masked_bias"] = torch.tensor(-1e4)
        sd[p + "attn.c_attn.weight"] = rnd(C, 3 * C)
        sd[p + "attn.c_attn.bias"] = rnd(3 * C)
        sd[p + "attn.c_proj.weight"] = rnd(C, C, std=base / math.sqrt(2 * cfg.layers))
        sd[p + "attn.c_proj.bias"] = rnd(C)
        sd[p + "ln_2.weight"] = 1.0 + 0.1 * rnd(C, std=1.0)
        sd[p + "ln_2.bias"] = rnd(C)
        sd[p + "mlp.c_fc.weight"] = rnd(C, Fi)
        sd[p + "mlp.c_fc.bias"] = rnd(Fi)
        sd[p + "mlp.c_proj.weight"] = rnd(Fi, C, std=base / math.sqrt(2 * cfg.layers))
        sd[p + "mlp.c_proj.bias"] = rnd(C)
    sd[TD + "ln_f.weight"] = 1.0 + 0.1 * rnd(C, std=1.0)
    sd[TD + "ln_f.bias"] = rnd(C)
    if lm_head:
        sd["decoder.lm_head.weight"] = sd[TD + "wte.weight"]
    return sd


def params(sd, cfg, requires_grad=False):
    """The trainable tensors only (float32 copies)."""
    return {k: sd[k].detach().clone().float().requires_grad_(requires_grad) for k in param_names(cfg)}


# ---------------------------------------------------------------- model

def gelu_new(x):
    # transformers.activations.NewGELUActivation
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


def conv1d(x, w, b):
    # transformers.pytorch_utils.Conv1D: weight [in, out]
    size_out = x.size()[:-1] + (w.size(-1),)
    return torch.addmm(b, x.reshape(-1, x.size(-1)), w).view(size_out)


def clap_project(p, emb):
    return F.linear(emb, p["clap_project.model.0.weight"], p["clap_project.model.0.bias"])


def block(p, cfg, i, x, past=None, dropout=0.0):
    """One GPT2Block (pre-LN). past: (k, v) of earlier positions or None;
    returns (x, (k, v)) with k, v [B, heads, T, hs]. dropout: the train-mode
    attn_dropout / resid_dropout / mlp dropout probability (0: eval)."""
    drop = (lambda z: F.dropout(z, dropout, training=True)) if dropout > 0 else (lambda z: z)
    pre = TD + "h.%d." % i
    B, T, C = x.shape
    nh, hs = cfg.heads, C // cfg.heads
    h = F.layer_norm(x, (C,), p[pre + "ln_1.weight"], p[pre + "ln_1.bias"], eps=cfg.eps)
    q, k, v = conv1d(h, p[pre + "attn.c_attn.weight"], p[pre + "attn.c_attn.bias"]).split(C, dim=2)
    q, k, v = (z.view(B, T, nh, hs).permute(0, 2, 1, 3) for z in (q, k, v))
    if past is not None:
        k = torch.cat((past[0], k), dim=-2)
        v = torch.cat((past[1], v), dim=-2)
    w = torch.matmul(q, k.transpose(-1, -2))
    w = w / torch.full([], v.size(-1) ** 0.5, dtype=w.dtype)
    Tk = k.size(-2)
    causal = torch.tril(torch.ones((Tk, Tk), dtype=torch.bool))[Tk - T:Tk, :Tk]
    w = torch.where(causal, w, torch.tensor(torch.finfo(w.dtype).min, dtype=w.dtype))
    w = drop(torch.softmax(w, dim=-1))
    a = torch.matmul(w, v).permute(0, 2, 1, 3).reshape(B, T, C)
    x = x + drop(conv1d(a, p[pre + "attn.c_proj.weight"], p[pre + "attn.c_proj.bias"]))
    h = F.layer_norm(x, (C,), p[pre + "ln_2.weight"], p[pre + "ln_2.bias"], eps=cfg.eps)
    h = conv1d(gelu_new(conv1d(h, p[pre + "mlp.c_fc.weight"], p[pre + "mlp.c_fc.bias"])),
               p[pre + "mlp.c_proj.weight"], p[pre + "mlp.c_proj.bias"])
    return x + drop(h), (k, v)


def decoder(p, cfg, inputs_embeds, past=None, dropout=0.0):
    """GPT2LMHeadModel(inputs_embeds=...).logits; with past (a list of (k, v)
    per layer), the new positions continue after the cached ones. Returns
    (logits [B, T, V], presents)."""
    T = inputs_embeds.size(1)
    t0 = 0 if past is None else past[0][0].size(-2)
    x = inputs_embeds + p[TD + "wpe.weight"][t0:t0 + T][None]
    if dropout > 0:
        x = F.dropout(x, dropout, training=True)  # GPT2Model.drop
    presents = []
    for i in range(cfg.layers):
        x, kv = block(p, cfg, i, x, None if past is None else past[i], dropout)
        presents.append(kv)
    x = F.layer_norm(x, (cfg.embd,), p[TD + "ln_f.weight"], p[TD + "ln_f.bias"], eps=cfg.eps)
    return F.linear(x, p[TD + "wte.weight"]), presents  # lm_head tied to wte, no bias


def forward(p, cfg, emb, tokens, dropout=0.0):
    """train.py's TextDecoder.forward: [prefix, wte(tokens)] -> logits [B, 1 + S, V].
    dropout 0.1 is the published model in train mode (resid/embd/attn_pdrop)."""
    tokens = torch.as_tensor(tokens, dtype=torch.long)
    emb = torch.as_tensor(emb, dtype=torch.float32)
    prefix = clap_project(p, emb).reshape(-1, 1, cfg.embd)
    x = torch.cat((prefix, p[TD + "wte.weight"][tokens]), dim=1)
    return decoder(p, cfg, x, dropout=dropout)[0]


def targets(ids_list, max_len=22):
    """train.py: tokenizer(caption)['input_ids'] ([CLS] ... [SEP], not
    truncated), then padded with 0 or cut to max_len. ids_list: the wordpiece
    ids of each caption without [CLS]/[SEP]."""
    out = torch.zeros(len(ids_list), max_len, dtype=torch.long)
    for i, ids in enumerate(ids_list):
        t = ([101] + list(ids) + [102])[:max_len]
        out[i, :len(t)] = torch.tensor(t)
    return out


def loss_fn(p, cfg, emb, tokens, dropout=0.0):
    """CrossEntropyLoss(ignore_index=0) of logits[:, :-1] against the tokens."""
    logits = forward(p, cfg, emb, tokens, dropout)[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), tokens.reshape(-1), ignore_index=0)


def noise_injection(x, variance=0.001, modality_offset=None, uniform_noise=False, dont_norm=False):
    """train.py noise_injection (copied from CapDec), verbatim semantics."""
    if variance == 0.0:
        return x
    std = math.sqrt(variance)
    if not dont_norm:
        x = F.normalize(x, dim=1)
    x = x + (torch.randn(x.shape, device=x.device) * std)
    if modality_offset is not None:
        x = x + modality_offset
    return F.normalize(x, dim=1)


# ---------------------------------------------------------------- optimiser

class AdamW:
    """transformers.AdamW (4.27, optimization.py), step() verbatim: betas
    (0.9, 0.999), eps 1e-6, correct_bias=True, decoupled decay after the
    update, on every parameter."""

    def __init__(self, params_list, lr=1e-5, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.0, correct_bias=True):
        self.params = list(params_list)
        self.lr, self.betas, self.eps, self.wd, self.correct_bias = lr, betas, eps, weight_decay, correct_bias
        self.state = {}

    @torch.no_grad()
    def step(self, lr):
        for p in self.params:
            if p.grad is None:
                continue
            grad = p.grad
            st = self.state.setdefault(id(p), {"step": 0, "exp_avg": torch.zeros_like(p),
                                               "exp_avg_sq": torch.zeros_like(p)})
            exp_avg, exp_avg_sq = st["exp_avg"], st["exp_avg_sq"]
            beta1, beta2 = self.betas
            st["step"] += 1
            exp_avg.mul_(beta1).add_(grad, alpha=(1.0 - beta1))
            exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            denom = exp_avg_sq.sqrt().add_(self.eps)
            step_size = lr
            if self.correct_bias:
                bias_correction1 = 1.0 - beta1 ** st["step"]
                bias_correction2 = 1.0 - beta2 ** st["step"]
                step_size = step_size * math.sqrt(bias_correction2) / bias_correction1
            p.addcdiv_(exp_avg, denom, value=-step_size)
            if self.wd > 0.0:
                p.add_(p, alpha=(-lr * self.wd))

    def zero_grad(self):
        for p in self.params:
            p.grad = None


def linear_schedule_with_warmup(num_warmup_steps, num_training_steps):
    """transformers.get_linear_schedule_with_warmup's lr_lambda."""
    def lr_lambda(current_step):
        if current_step < num_warmup_steps:
            return float(current_step) / float(max(1, num_warmup_steps))
        return max(0.0, float(num_training_steps - current_step) / float(max(1, num_training_steps - num_warmup_steps)))
    return lr_lambda


def train(p, cfg, batches, lr, wd, warmup, total_steps, noise=0.0, gap=None, dropout=0.0):
    """train.py's loop over batches [(emb [B, E], tokens [B, S]), ...]:
    loss.backward(); optimizer.step(); scheduler.step(); optimizer.zero_grad().
    Returns the per-step losses; p is updated in place. dropout 0 (the
    default) makes it deterministic, as `prefixdec train --dropout 0`."""
    opt = AdamW(p.values(), lr=lr, weight_decay=wd)
    sched = linear_schedule_with_warmup(warmup, total_steps)
    losses = []
    for step, (emb, tokens) in enumerate(batches):
        x = torch.as_tensor(emb, dtype=torch.float32)
        x = noise_injection(x, noise, gap)
        loss = loss_fn(p, cfg, x, torch.as_tensor(tokens, dtype=torch.long), dropout)
        loss.backward()
        opt.step(lr * sched(step))
        opt.zero_grad()
        losses.append(loss.item())
    return losses


# ---------------------------------------------------------------- decoding

@torch.no_grad()
def published_greedy(p, cfg, prefix, entry_length=30, temperature=0.1, stop_token=102):
    """evaluation.py Decoding(), verbatim apart from clip_project ->
    clap_project (the published name bug, wsac.md D): no KV cache, the whole
    sequence re-run at every step. prefix: [E]. Returns the generated ids
    (the first one and the stop token included)."""
    embedding_cat = clap_project(p, torch.as_tensor(prefix, dtype=torch.float32)).reshape(1, 1, -1)
    tokens = None
    for i in range(entry_length):
        logits = decoder(p, cfg, embedding_cat)[0]
        logits = logits[:, -1, :] / (temperature if temperature > 0 else 1.0)
        logits = torch.nn.functional.softmax(logits, -1)
        next_token = torch.argmax(logits, -1).unsqueeze(0)
        next_token_embed = p[TD + "wte.weight"][next_token]
        if tokens is None:
            tokens = next_token
        else:
            tokens = torch.cat((tokens, next_token), dim=1)
        if next_token.item() == stop_token:
            break
        embedding_cat = torch.cat((embedding_cat, next_token_embed), dim=1)
    return [int(t) for t in tokens.view(-1)]


@torch.no_grad()
def cached_greedy(p, cfg, prefixes, entry_length=30, stop_token=102, known=None):
    """Greedy decoding with a KV cache for a batch of prefixes [B, E] (the
    fair PyTorch baseline): one position per step; a finished row keeps
    running (masked), as batched HF generate() does. known: ids >= known are
    never emitted. Returns a list of id lists."""
    prefixes = torch.as_tensor(prefixes, dtype=torch.float32)
    B = prefixes.size(0)
    x = clap_project(p, prefixes).reshape(B, 1, -1)
    past = None
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    wte = p[TD + "wte.weight"]
    for i in range(entry_length):
        logits, past = decoder(p, cfg, x, past)
        logits = logits[:, -1, :known]
        nxt = torch.argmax(logits, -1)
        for b in range(B):
            if not done[b]:
                out[b].append(int(nxt[b]))
        done |= nxt.eq(stop_token)
        if bool(done.all()):
            break
        x = wte[nxt][:, None]
    return out


@torch.no_grad()
def beam_search(p, cfg, prefix, beam, entry_length=30, stop_token=102, known=30522):
    """The beam search of `prefixdec decode --beam K` (lib/gpt.c), uncached:
    K live hypotheses ranked by summed log-probability (log-softmax over the
    ids < known); a candidate [SEP] among the K best of a step finishes a
    hypothesis with score sum / length (generated tokens, [SEP] included);
    the search ends when K have finished or after entry_length tokens (live
    ones then finish as they are); the best score wins. Returns its ids."""
    wte = p[TD + "wte.weight"]
    x0 = clap_project(p, torch.as_tensor(prefix, dtype=torch.float32)).reshape(1, 1, -1)
    live = [(0.0, [], x0)]
    fin = []
    for t in range(entry_length):
        cands = []
        for b, (score, toks, emb) in enumerate(live):
            logp = torch.log_softmax(decoder(p, cfg, emb)[0][0, -1, :known], -1)
            top = torch.topk(logp, min(2 * beam, known))
            cands += [(score + float(v), b, int(i)) for v, i in zip(top.values, top.indices)]
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        cands = cands[:2 * beam]
        new = []
        for k, (s, b, v) in enumerate(cands):
            if len(new) == beam:
                break
            toks = live[b][1] + [v]
            if v == stop_token:
                if k < beam and len(fin) < beam:
                    fin.append((s / (t + 1), toks))
                continue
            new.append((s, toks, torch.cat((live[b][2], wte[v].view(1, 1, -1)), dim=1)))
        live = new
        if len(fin) >= beam or t + 1 >= entry_length:
            for s, toks, _ in live:
                if len(fin) < beam:
                    fin.append((s / (t + 1), toks))
            break
    best = max(range(len(fin)), key=lambda i: (fin[i][0], -i))
    return fin[best][1]


def bert_decode(vocab, ids):
    """BertTokenizer.decode(ids) with transformers 4.27 defaults
    (skip_special_tokens=False, clean_up_tokenization_spaces=True); vocab: the
    list of tokens. What evaluation.py prints for tokens[1:-1]."""
    toks = [vocab[i] if 0 <= i < len(vocab) else "[UNK]" for i in ids]
    s = " ".join(toks).replace(" ##", "").strip()
    for a, b in ((" .", "."), (" ?", "?"), (" !", "!"), (" ,", ","), (" ' ", "'"), (" n't", "n't"),
                 (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
        s = s.replace(a, b)
    return s


def load_vocab(path):
    with open(path, encoding="utf-8") as f:
        toks = f.read().split("\n")
    if toks and toks[-1] == "":
        toks.pop()
    return toks


# ---------------------------------------------------------------- the full-size model, cached

FULL_VERSION = "v1"


def full_checkpoint(vocab=50257, log=None):
    """A full-size random decoder in the published layout (vocab 50257 by
    default; attn.bias/masked_bias buffers, tied lm_head) and its conversion,
    made once and cached in ${TMPDIR:-/tmp}/wsac-full-decoder-v1-VOCAB/ (an
    flock serialises concurrent makers; files appear by rename). Returns
    (decoder.pt, decoder.safetensors)."""
    import fcntl
    import os
    import subprocess
    import sys
    d = os.path.join(os.environ.get("TMPDIR") or "/tmp", "wsac-full-decoder-%s-%d" % (FULL_VERSION, vocab))
    pt, st = os.path.join(d, "decoder.pt"), os.path.join(d, "decoder.safetensors")
    if os.path.exists(pt) and os.path.exists(st):
        return pt, st
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not os.path.exists(pt):
            if log:
                print("decref: making a full-size random decoder in %s ..." % d, file=log, flush=True)
            tmp = "%s.tmp.%d" % (pt, os.getpid())
            cfg = Config.full()
            cfg.vocab = vocab
            torch.save(random_state_dict(cfg, seed=0), tmp)
            os.replace(tmp, pt)
        if not os.path.exists(st):
            tmp = "%s.tmp.%d" % (st, os.getpid())
            here = os.path.dirname(os.path.abspath(__file__))
            subprocess.run([sys.executable, os.path.join(here, "convert.py"), "decoder", pt, "-o", tmp], check=True,
                           stderr=subprocess.DEVNULL)
            os.replace(tmp, st)
    return pt, st
