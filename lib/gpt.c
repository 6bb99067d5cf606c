/* gpt.c - the WSAC prefix decoder: model file, the training
 * forward/backward pass over packed batches, and KV-cached incremental
 * decoding (greedy and beam search), on the shared layer kernels
 * (kernels_tf.c). See gpt.h for the legend and layouts.
 *
 * Matrix products go to gemm (lib/gemm.c: one-thread OpenBLAS slabs on the
 * parfor pool, cut by size alone); everything else runs on the same pool,
 * split so that every output element is computed by one thread in a fixed
 * order: results are bit-identical from run to run and across thread counts. */
#include "gpt.h"

#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "nn.h"
#include "parfor.h"
#include "util.h"

/* ================================================================ matrix products */

/* Matrix products: gemm (lib/gemm.c), cut the same way on every thread count. */
int gpt_set_threads(int n) { return gemm_init(n); }

/* ================================================================ model */

#define TD "decoder.transformer."

int gpt_tensor_list(const gpt_config *c, gpt_weights *w, gpt_tensor *out) {
    int n = 0;
#define T1(nm, p, d0)                                                                                         \
    do {                                                                                                      \
        if (out) {                                                                                            \
            gpt_tensor *t_ = &out[n];                                                                         \
            snprintf(t_->name, sizeof t_->name, "%s", nm);                                                    \
            t_->ndim = 1, t_->shape[0] = (d0), t_->shape[1] = 0, t_->numel = (size_t)(d0), t_->ptr = &(p);     \
        }                                                                                                     \
        n++;                                                                                                  \
    } while (0)
#define T2(nm, p, d0, d1)                                                                                     \
    do {                                                                                                      \
        if (out) {                                                                                            \
            gpt_tensor *t_ = &out[n];                                                                         \
            snprintf(t_->name, sizeof t_->name, "%s", nm);                                                    \
            t_->ndim = 2, t_->shape[0] = (d0), t_->shape[1] = (d1);                                           \
            t_->numel = (size_t)(d0) * (size_t)(d1), t_->ptr = &(p);                                          \
        }                                                                                                     \
        n++;                                                                                                  \
    } while (0)
    int C = c->C, F = c->F;
    T2("clap_project.model.0.weight", w->map_w, C, c->E);
    T1("clap_project.model.0.bias", w->map_b, C);
    T2(TD "wte.weight", w->wte, c->V, C);
    T2(TD "wpe.weight", w->wpe, c->P, C);
    for (int l = 0; l < c->L; l++) {
        gpt_layer *h = &w->h[l];
        char nm[72];
#define LN(suffix) (snprintf(nm, sizeof nm, TD "h.%d.%s", l, suffix), nm)
        T1(LN("ln_1.weight"), h->ln1_w, C);
        T1(LN("ln_1.bias"), h->ln1_b, C);
        T2(LN("attn.c_attn.weight"), h->attn_w, C, 3 * C);
        T1(LN("attn.c_attn.bias"), h->attn_b, 3 * C);
        T2(LN("attn.c_proj.weight"), h->proj_w, C, C);
        T1(LN("attn.c_proj.bias"), h->proj_b, C);
        T1(LN("ln_2.weight"), h->ln2_w, C);
        T1(LN("ln_2.bias"), h->ln2_b, C);
        T2(LN("mlp.c_fc.weight"), h->fc_w, C, F);
        T1(LN("mlp.c_fc.bias"), h->fc_b, F);
        T2(LN("mlp.c_proj.weight"), h->fcproj_w, F, C);
        T1(LN("mlp.c_proj.bias"), h->fcproj_b, C);
#undef LN
    }
    T1(TD "ln_f.weight", w->lnf_w, C);
    T1(TD "ln_f.bias", w->lnf_b, C);
#undef T1
#undef T2
    return n;
}

size_t gpt_num_params(const gpt_config *c) {
    size_t C = (size_t)c->C, F = (size_t)c->F;
    size_t layer = 2 * C + C * 3 * C + 3 * C + C * C + C + 2 * C + C * F + F + F * C + C;
    return C * (size_t)c->E + C + (size_t)c->V * C + (size_t)c->P * C + (size_t)c->L * layer + 2 * C;
}

void gpt_weights_init(gpt_weights *w, int L) {
    memset(w, 0, sizeof *w);
    w->h = xcalloc((size_t)(L > 0 ? L : 1), sizeof(gpt_layer));
}

void gpt_weights_free(gpt_weights *w) {
    free(w->h);
    w->h = NULL;
}

void gpt_weights_carve(const gpt_config *c, gpt_weights *w, float *flat) {
    int n = gpt_tensor_list(c, w, NULL);
    gpt_tensor *t = xmalloc((size_t)n * sizeof *t);
    gpt_tensor_list(c, w, t);
    for (int i = 0; i < n; i++) {
        *t[i].ptr = flat;
        flat += t[i].numel;
    }
    free(t);
}

const char *gpt_config_check(const gpt_config *c) {
    if (c->E < 1 || c->C < 1 || c->L < 1 || c->NH < 1 || c->F < 1 || c->V < 1 || c->P < 1)
        return "every size must be positive";
    if (c->C % c->NH) return "the width is not divisible by the number of heads";
    if (!(c->eps > 0) || !isfinite(c->eps)) return "the LayerNorm epsilon must be positive";
    if ((double)c->V * c->C > 1e10 || (double)c->C * c->F > 1e10 || (double)c->E * c->C > 1e10)
        return "the model is too large";
    return NULL;
}

static int shape_of(st_file *f, const char *name, int ndim, int64_t *shape, char *err, size_t errlen) {
    st_tensor t;
    if (st_get(f, name, &t, err, errlen)) return -1;
    if (t.ndim != ndim) {
        snprintf(err, errlen, "%s: tensor '%s' has %d dimensions, expected %d", st_path(f), name, t.ndim, ndim);
        return -1;
    }
    for (int i = 0; i < ndim; i++) {
        if (t.shape[i] < 1 || t.shape[i] > (1 << 30)) {
            snprintf(err, errlen, "%s: tensor '%s' has an unusable shape", st_path(f), name);
            return -1;
        }
        shape[i] = t.shape[i];
    }
    return 0;
}

int gpt_read_config(st_file *f, gpt_config *c, char *err, size_t errlen) {
    const char *path = st_path(f), *s;
    memset(c, 0, sizeof *c);
    if (!(s = st_meta(f, "wsac.format")) || strcmp(s, "1")) {
        snprintf(err, errlen, "%s: not a wsac model file (metadata wsac.format is %s%s%s, expected \"1\")", path,
                 s ? "\"" : "", s ? s : "missing", s ? "\"" : "");
        return -1;
    }
    if (!(s = st_meta(f, "wsac.model")) || strcmp(s, "decoder")) {
        snprintf(err, errlen, "%s: not a decoder model (wsac.model is %s%s%s)", path, s ? "\"" : "",
                 s ? s : "missing", s ? "\"" : "");
        return -1;
    }
    long L, NH, V;
    const char *keys[] = {"decoder.layers", "decoder.heads", "decoder.vocab_size"};
    long *vals[] = {&L, &NH, &V};
    for (int i = 0; i < 3; i++) {
        int r = st_meta_int(f, keys[i], vals[i]);
        if (r || *vals[i] < 1 || *vals[i] > (1L << 30)) {
            snprintf(err, errlen, "%s: metadata %s is %s", path, keys[i],
                     r == -1 ? "missing" : "not a positive integer");
            return -1;
        }
    }
    if (!(s = st_meta(f, "decoder.activation")) || strcmp(s, "gelu_new")) {
        snprintf(err, errlen, "%s: metadata decoder.activation is %s; only gelu_new is implemented", path,
                 s ? s : "missing");
        return -1;
    }
    char *end;
    double eps = (s = st_meta(f, "decoder.ln_eps")) ? strtod(s, &end) : -1;
    if (!s || *end || end == s || !(eps > 0) || eps > 1) {
        snprintf(err, errlen, "%s: metadata decoder.ln_eps is %s", path, s ? "not a positive number" : "missing");
        return -1;
    }
    int64_t sh[2];
    c->L = (int)L, c->NH = (int)NH, c->eps = (float)eps;
    if (shape_of(f, TD "wte.weight", 2, sh, err, errlen)) return -1;
    c->V = (int)sh[0], c->C = (int)sh[1];
    if (c->V != V) {
        snprintf(err, errlen, "%s: metadata decoder.vocab_size is %ld but " TD "wte.weight has %d rows", path, V,
                 c->V);
        return -1;
    }
    if (shape_of(f, TD "wpe.weight", 2, sh, err, errlen)) return -1;
    c->P = (int)sh[0];
    if (shape_of(f, "clap_project.model.0.weight", 2, sh, err, errlen)) return -1;
    c->E = (int)sh[1];
    if (shape_of(f, TD "h.0.mlp.c_fc.weight", 2, sh, err, errlen)) return -1;
    c->F = (int)sh[1];
    const char *bad = gpt_config_check(c);
    if (bad) {
        snprintf(err, errlen, "%s: %s (width %d, heads %d)", path, bad, c->C, c->NH);
        return -1;
    }
    return 0;
}

int gpt_load_weights(st_file *f, const gpt_config *c, gpt_weights *w, float *flat, char *err, size_t errlen) {
    int n = gpt_tensor_list(c, w, NULL);
    gpt_tensor *t = xmalloc((size_t)n * sizeof *t);
    gpt_tensor_list(c, w, t);
    int rc = 0;
    for (int i = 0; i < n && !rc; i++) {
        const float *p = st_get_f32(f, t[i].name, t[i].ndim, t[i].shape, err, errlen);
        if (!p) {
            rc = -1;
            break;
        }
        if (flat) {
            memcpy(flat, p, t[i].numel * sizeof(float));
            *t[i].ptr = flat;
            flat += t[i].numel;
        } else {
            *t[i].ptr = (float *)p; /* read-only mapping: decoding never writes weights */
        }
    }
    free(t);
    return rc;
}

/* ================================================================ training pass */

/* lm-head chunk: logits of at most this many bytes at once (then the head's
 * gradient is accumulated chunk by chunk, in equal chunks): a published batch
 * (64 x 22 rows, vocab 50257) fits in one */
#define HEAD_CHUNK_BYTES ((size_t)300 << 20)

gpt_train_state *gpt_train_state_new(const gpt_config *c, int maxB, int S) {
    gpt_train_state *s = xcalloc(1, sizeof *s);
    size_t C = (size_t)c->C, F = (size_t)c->F, L = (size_t)c->L, NH = (size_t)c->NH;
    size_t N = (size_t)maxB * (size_t)S;
    s->maxB = maxB, s->S = S, s->maxN = (int)N;
    size_t ch = HEAD_CHUNK_BYTES / ((size_t)c->V * sizeof(float));
    if (ch < 64) ch = 64;
    if (ch > N) ch = N;
    s->chunk = (int)ch;
    s->off = xmalloc((size_t)maxB * sizeof(int));
    s->len = xmalloc((size_t)maxB * sizeof(int));
    s->in_tok = xmalloc(N * sizeof(int));
    s->tgt = xmalloc(N * sizeof(int));
    s->pos = xmalloc(N * sizeof(int));
    s->sel = xmalloc(N * sizeof(int));
    s->seltgt = xmalloc(N * sizeof(int));
#define FA(n) ((float *)xmalloc_aligned((n) * sizeof(float)))
    s->x0 = FA(N * C);
    s->pre = FA((size_t)maxB * C);
    s->ln1 = FA(L * N * C), s->ln1_mean = FA(L * N), s->ln1_rstd = FA(L * N);
    s->qkv = FA(L * N * 3 * C);
    s->att = FA(L * (size_t)maxB * NH * (size_t)S * (size_t)S);
    s->atty = FA(L * N * C);
    s->res2 = FA(L * N * C);
    s->ln2 = FA(L * N * C), s->ln2_mean = FA(L * N), s->ln2_rstd = FA(L * N);
    s->fch = FA(L * N * F);
    s->fcg = FA(L * N * F);
    s->res3 = FA(L * N * C);
    s->lnf = FA(N * C), s->lnf_mean = FA(N), s->lnf_rstd = FA(N);
    s->hsel = FA(N * C);
    s->dhsel = FA(N * C);
    s->logits = FA(ch * (size_t)c->V);
    s->rowloss = FA(N);
    s->dres = FA(N * C);
    s->dbig = FA(N * (3 * C > F ? 3 * C : F));
    s->dbig2 = FA(N * F);
    s->dsmall = FA(N * C);
    s->dtmp = FA(N * C);
    s->m_emb = xmalloc(N * C);
    s->m_att = xmalloc(L * (size_t)maxB * NH * (size_t)S * (size_t)S);
    s->m_res2 = xmalloc(L * N * C);
    s->m_res3 = xmalloc(L * N * C);
#undef FA
    return s;
}

void gpt_train_state_free(gpt_train_state *s) {
    if (!s) return;
    void *p[] = {s->off, s->len, s->in_tok, s->tgt, s->pos, s->sel, s->seltgt, s->x0, s->pre, s->ln1,
                 s->ln1_mean, s->ln1_rstd, s->qkv, s->att, s->atty, s->res2, s->ln2, s->ln2_mean, s->ln2_rstd,
                 s->fch, s->fcg, s->res3, s->lnf, s->lnf_mean, s->lnf_rstd, s->hsel, s->dhsel, s->logits,
                 s->rowloss, s->dres, s->dbig, s->dbig2, s->dsmall, s->dtmp, s->m_emb, s->m_att, s->m_res2,
                 s->m_res3};
    for (size_t i = 0; i < sizeof p / sizeof p[0]; i++) free(p[i]);
    free(s);
}

void gpt_layout(gpt_train_state *s, const int32_t *tok, int B, int pad, const int *lens) {
    int S = s->S, N = 0, M = 0;
    s->B = B;
    for (int b = 0; b < B; b++) {
        const int32_t *t = tok + (size_t)b * S;
        int n;
        if (lens) n = lens[b];
        else {
            n = 0; /* 1 + the last target that is not padding */
            for (int i = S - 1; i >= 0; i--)
                if (t[i] != pad) {
                    n = i + 1;
                    break;
                }
            if (n == 0) n = 1; /* nothing to learn: the prefix row still runs */
        }
        s->off[b] = N;
        s->len[b] = n;
        for (int i = 0; i < n; i++, N++) {
            s->pos[N] = i;
            s->in_tok[N] = i == 0 ? -1 : t[i - 1];
            s->tgt[N] = (i < S && t[i] != pad) ? t[i] : -1;
            if (s->tgt[N] >= 0) {
                s->sel[M] = N;
                s->seltgt[M] = s->tgt[N];
                M++;
            }
        }
    }
    s->N = N;
    s->M = M;
}

#define LAYER(p, l, per) ((p) + (size_t)(l) * (size_t)s->maxN * (per))

void gpt_forward(gpt_train_state *s, const gpt_config *c, const gpt_weights *w, const float *emb) {
    int N = s->N, C = c->C, F = c->F, B = s->B;
    /* prefix: clap_project(emb), one token at position 0 (wsac.md C) */
    gpt_prefix(s->pre, c, w, emb, B);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < s->len[b]; i++) {
            int r = s->off[b] + i;
            const float *src = i == 0 ? s->pre + (size_t)b * C : w->wte + (size_t)s->in_tok[r] * C;
            const float *pe = w->wpe + (size_t)i * C;
            float *x = s->x0 + (size_t)r * C;
            for (int k = 0; k < C; k++) x[k] = src[k] + pe[k];
        }
    /* dropout (GPT2Model.drop, attn_dropout, resid_dropout, GPT2MLP.dropout):
     * one mask per site, drawn from (key, site) */
    int drop = s->dropout > 0;
    float ds = drop ? 1.0f / (1.0f - s->dropout) : 1.0f;
    size_t attsz = (size_t)s->maxB * c->NH * s->S * s->S;
    if (drop) {
        dropout_mask(s->m_emb, (size_t)N * C, s->dropout, s->key);
        dropout_apply(s->x0, s->m_emb, ds, (size_t)N * C);
    }
    const float *resin = s->x0;
    for (int l = 0; l < c->L; l++) {
        const gpt_layer *h = &w->h[l];
        float *ln1 = LAYER(s->ln1, l, C), *qkv = LAYER(s->qkv, l, 3 * C), *atty = LAYER(s->atty, l, C);
        float *res2 = LAYER(s->res2, l, C), *ln2 = LAYER(s->ln2, l, C), *fch = LAYER(s->fch, l, F);
        float *fcg = LAYER(s->fcg, l, F), *res3 = LAYER(s->res3, l, C);
        float *att = s->att + (size_t)l * attsz;
        uint8_t *matt = drop ? s->m_att + (size_t)l * attsz : NULL;
        uint8_t *mr2 = s->m_res2 + (size_t)l * s->maxN * C, *mr3 = s->m_res3 + (size_t)l * s->maxN * C;
        if (drop) {
            dropout_mask(matt, (size_t)B * c->NH * s->S * s->S, s->dropout, s->key ^ (0x5bd1e995ULL * (uint64_t)(1 + 3 * l)));
            dropout_mask(mr2, (size_t)N * C, s->dropout, s->key ^ (0x5bd1e995ULL * (uint64_t)(2 + 3 * l)));
            dropout_mask(mr3, (size_t)N * C, s->dropout, s->key ^ (0x5bd1e995ULL * (uint64_t)(3 + 3 * l)));
        }
        layernorm_forward_train(ln1, LAYER(s->ln1_mean, l, 1), LAYER(s->ln1_rstd, l, 1), resin, h->ln1_w, h->ln1_b,
                                N, C, c->eps);
        conv1d_forward(qkv, ln1, h->attn_w, h->attn_b, N, C, 3 * C);
        attention_forward(atty, att, qkv, matt, ds, s->off, s->len, B, s->S, C, c->NH, 1);
        conv1d_forward(res2, atty, h->proj_w, h->proj_b, N, C, C);
        if (drop) dropout_apply(res2, mr2, ds, (size_t)N * C);
        for (size_t i = 0; i < (size_t)N * C; i++) res2[i] += resin[i];
        layernorm_forward_train(ln2, LAYER(s->ln2_mean, l, 1), LAYER(s->ln2_rstd, l, 1), res2, h->ln2_w, h->ln2_b,
                                N, C, c->eps);
        conv1d_forward(fch, ln2, h->fc_w, h->fc_b, N, C, F);
        gelu_forward(fcg, fch, (size_t)N * F);
        conv1d_forward(res3, fcg, h->fcproj_w, h->fcproj_b, N, F, C);
        if (drop) dropout_apply(res3, mr3, ds, (size_t)N * C);
        for (size_t i = 0; i < (size_t)N * C; i++) res3[i] += res2[i];
        resin = res3;
    }
    layernorm_forward_train(s->lnf, s->lnf_mean, s->lnf_rstd, resin, w->lnf_w, w->lnf_b, N, C, c->eps);
}

void gpt_logits(const gpt_train_state *s, const gpt_config *c, const gpt_weights *w, float *out) {
    gemm(CblasNoTrans, CblasTrans, s->N, c->V, c->C, 1.0f, s->lnf, c->C, w->wte, c->C, 0.0f, out, c->V);
}

typedef struct {
    float *dst;
    const float *src;
    const int *idx;
    int n, C;
} emb_ctx;

/* dwte/dwpe rows: dst[idx[r]] += src[r] for r in order, split by columns */
static void scatter_cols(void *p, int lo, int hi) {
    emb_ctx *x = p;
    for (int r = 0; r < x->n; r++) {
        if (x->idx[r] < 0) continue;
        float *d = x->dst + (size_t)x->idx[r] * x->C;
        const float *sr = x->src + (size_t)r * x->C;
        for (int k = lo; k < hi; k++) d[k] += sr[k];
    }
}

double gpt_loss_backward(gpt_train_state *s, const gpt_config *c, const gpt_weights *w, gpt_weights *g,
                         const float *emb) {
    int N = s->N, M = s->M, C = c->C, F = c->F, V = c->V, B = s->B;
    if (M == 0) return 0.0;
    for (int m = 0; m < M; m++) memcpy(s->hsel + (size_t)m * C, s->lnf + (size_t)s->sel[m] * C, C * sizeof(float));
    /* tied head + cross-entropy (mean over the targets that are not padding:
     * CrossEntropyLoss(ignore_index=0)), chunk by chunk, fused with its
     * backward so the logits of the whole batch never exist at once */
    float scale = g ? 1.0f / (float)M : 0.0f;
    int nch = (M + s->chunk - 1) / s->chunk, chunk = (M + nch - 1) / nch;
    for (int m0 = 0; m0 < M; m0 += chunk) {
        int mc = M - m0 < chunk ? M - m0 : chunk;
        const float *hs = s->hsel + (size_t)m0 * C;
        gemm(CblasNoTrans, CblasTrans, mc, V, C, 1.0f, hs, C, w->wte, C, 0.0f, s->logits, V);
        crossentropy_forward_backward(s->rowloss + m0, s->logits, s->seltgt + m0, mc, V, scale);
        if (g) {
            gemm(CblasNoTrans, CblasNoTrans, mc, C, V, 1.0f, s->logits, V, w->wte, C, 0.0f, s->dhsel + (size_t)m0 * C,
                 C);
            gemm(CblasTrans, CblasNoTrans, V, C, mc, 1.0f, s->logits, V, hs, C, 1.0f, g->wte, C);
        }
    }
    double sum = 0;
    for (int m = 0; m < M; m++) sum += s->rowloss[m];
    s->loss = sum / M;
    if (!g) return s->loss;

    /* ln_f */
    float *dlnf = s->dsmall;
    memset(dlnf, 0, (size_t)N * C * sizeof(float));
    for (int m = 0; m < M; m++) memcpy(dlnf + (size_t)s->sel[m] * C, s->dhsel + (size_t)m * C, C * sizeof(float));
    memset(s->dres, 0, (size_t)N * C * sizeof(float));
    const float *last = c->L > 0 ? LAYER(s->res3, c->L - 1, C) : s->x0;
    layernorm_backward(s->dres, g->lnf_w, g->lnf_b, dlnf, last, w->lnf_w, s->lnf_mean, s->lnf_rstd, N, C);

    int drop = s->dropout > 0;
    float ds = drop ? 1.0f / (1.0f - s->dropout) : 1.0f;
    size_t attsz = (size_t)s->maxB * c->NH * s->S * s->S;
    for (int l = c->L - 1; l >= 0; l--) {
        const gpt_layer *h = &w->h[l];
        gpt_layer *gh = &g->h[l];
        const float *resin = l ? LAYER(s->res3, l - 1, C) : s->x0;
        float *ln1 = LAYER(s->ln1, l, C), *qkv = LAYER(s->qkv, l, 3 * C), *atty = LAYER(s->atty, l, C);
        float *res2 = LAYER(s->res2, l, C), *ln2 = LAYER(s->ln2, l, C), *fch = LAYER(s->fch, l, F);
        float *fcg = LAYER(s->fcg, l, F);
        float *att = s->att + (size_t)l * attsz;
        const uint8_t *matt = drop ? s->m_att + (size_t)l * attsz : NULL;
        const uint8_t *mr2 = s->m_res2 + (size_t)l * s->maxN * C, *mr3 = s->m_res3 + (size_t)l * s->maxN * C;
        /* MLP: res3 = res2 + drop(c_proj(gelu(c_fc(ln_2(res2))))) */
        const float *dmlp = s->dres;
        if (drop) {
            memcpy(s->dtmp, s->dres, (size_t)N * C * sizeof(float));
            dropout_apply(s->dtmp, mr3, ds, (size_t)N * C);
            dmlp = s->dtmp;
        }
        conv1d_backward(s->dbig2, gh->fcproj_w, gh->fcproj_b, dmlp, fcg, h->fcproj_w, N, F, C);
        gelu_backward(s->dbig2, s->dbig2, fch, (size_t)N * F);
        conv1d_backward(s->dsmall, gh->fc_w, gh->fc_b, s->dbig2, ln2, h->fc_w, N, C, F);
        layernorm_backward(s->dres, gh->ln2_w, gh->ln2_b, s->dsmall, res2, h->ln2_w, LAYER(s->ln2_mean, l, 1),
                           LAYER(s->ln2_rstd, l, 1), N, C);
        /* attention: res2 = resin + drop(c_proj(attn(c_attn(ln_1(resin))))) */
        const float *dat = s->dres;
        if (drop) {
            memcpy(s->dtmp, s->dres, (size_t)N * C * sizeof(float));
            dropout_apply(s->dtmp, mr2, ds, (size_t)N * C);
            dat = s->dtmp;
        }
        conv1d_backward(s->dsmall, gh->proj_w, gh->proj_b, dat, atty, h->proj_w, N, C, C);
        attention_backward(s->dbig, s->dsmall, qkv, att, matt, ds, s->off, s->len, B, s->S, C, c->NH, 1);
        conv1d_backward(s->dsmall, gh->attn_w, gh->attn_b, s->dbig, ln1, h->attn_w, N, C, 3 * C);
        layernorm_backward(s->dres, gh->ln1_w, gh->ln1_b, s->dsmall, resin, h->ln1_w, LAYER(s->ln1_mean, l, 1),
                           LAYER(s->ln1_rstd, l, 1), N, C);
    }
    /* embeddings: x0 = drop((prefix | wte[token]) + wpe[position]) */
    if (drop) dropout_apply(s->dres, s->m_emb, ds, (size_t)N * C);
    emb_ctx e = {g->wpe, s->dres, s->pos, N, C};
    parfor(C, scatter_cols, &e);
    emb_ctx et = {g->wte, s->dres, s->in_tok, N, C};
    parfor(C, scatter_cols, &et);
    float *dpre = s->dsmall;
    for (int b = 0; b < B; b++) memcpy(dpre + (size_t)b * C, s->dres + (size_t)s->off[b] * C, C * sizeof(float));
    /* nn.Linear: pre = emb @ W^T + b, W [C, E] */
    gemm(CblasTrans, CblasNoTrans, C, c->E, B, 1.0f, dpre, C, emb, c->E, 1.0f, g->map_w, c->E);
    bias_backward(g->map_b, dpre, B, C);
    return s->loss;
}

#undef LAYER

/* ================================================================ decoding */

void gpt_prefix(float *out, const gpt_config *c, const gpt_weights *w, const float *emb, int n) {
    if (n <= 0) return;
    for (int i = 0; i < n; i++) memcpy(out + (size_t)i * c->C, w->map_b, (size_t)c->C * sizeof(float));
    gemm(CblasNoTrans, CblasTrans, n, c->C, c->E, 1.0f, emb, c->E, w->map_w, c->E, 1.0f, out, c->C);
}

gpt_cache *gpt_cache_new(const gpt_config *c, int R, int T) {
    gpt_cache *kv = xcalloc(1, sizeof *kv);
    size_t C = (size_t)c->C;
    kv->R = R, kv->T = T;
    kv->kc = xmalloc_aligned((size_t)c->L * R * T * C * sizeof(float));
    kv->vc = xmalloc_aligned((size_t)c->L * R * T * C * sizeof(float));
    kv->x = xmalloc_aligned((size_t)R * C * sizeof(float));
    kv->ln = xmalloc_aligned((size_t)R * C * sizeof(float));
    kv->qkv = xmalloc_aligned((size_t)R * 3 * C * sizeof(float));
    kv->atty = xmalloc_aligned((size_t)R * C * sizeof(float));
    kv->tmp = xmalloc_aligned((size_t)R * C * sizeof(float));
    kv->fch = xmalloc_aligned((size_t)R * c->F * sizeof(float));
    kv->att = xmalloc_aligned((size_t)R * c->NH * T * sizeof(float));
    return kv;
}

void gpt_cache_free(gpt_cache *kv) {
    if (!kv) return;
    free(kv->kc), free(kv->vc), free(kv->x), free(kv->ln), free(kv->qkv), free(kv->atty), free(kv->tmp);
    free(kv->fch), free(kv->att);
    free(kv);
}

typedef struct {
    gpt_cache *kv;
    const gpt_config *c;
    const int *slot, *pos;
    int l;
} step_ctx;

/* one new query per row against its slot's cached keys/values; the same
 * arithmetic, in the same order, as attention_forward */
static void step_attn_range(void *p, int lo, int hi) {
    step_ctx *x = p;
    gpt_cache *kv = x->kv;
    int C = x->c->C, NH = x->c->NH, hs = C / NH, T = kv->T;
    float scale = (float)sqrt((double)hs);
    for (int j = lo; j < hi; j++) {
        int a = j / NH, h = j % NH, t = x->pos[a];
        size_t sb = ((size_t)x->l * kv->R + (size_t)x->slot[a]) * T * C;
        const float *q = kv->qkv + (size_t)a * 3 * C + (size_t)h * hs;
        float *at = kv->att + (size_t)j * T, mx = -FLT_MAX;
        for (int t2 = 0; t2 <= t; t2++) {
            const float *k = kv->kc + sb + (size_t)t2 * C + (size_t)h * hs;
            float s = 0;
            for (int i = 0; i < hs; i++) s += q[i] * k[i];
            s /= scale;
            at[t2] = s;
            if (s > mx) mx = s;
        }
        float sum = 0;
        for (int t2 = 0; t2 <= t; t2++) {
            at[t2] = expf(at[t2] - mx);
            sum += at[t2];
        }
        float inv = 1.0f / sum;
        for (int t2 = 0; t2 <= t; t2++) at[t2] *= inv;
        float *o = kv->atty + (size_t)a * C + (size_t)h * hs;
        for (int i = 0; i < hs; i++) o[i] = 0;
        for (int t2 = 0; t2 <= t; t2++) {
            const float *v = kv->vc + sb + (size_t)t2 * C + (size_t)h * hs;
            for (int i = 0; i < hs; i++) o[i] += at[t2] * v[i];
        }
    }
}

void gpt_step(gpt_cache *kv, const gpt_config *c, const gpt_weights *w, float *out, const float *in, const int *slot,
              const int *pos, int A) {
    int C = c->C, F = c->F, T = kv->T;
    float *x = kv->x;
    for (int a = 0; a < A; a++) {
        const float *pe = w->wpe + (size_t)pos[a] * C;
        for (int k = 0; k < C; k++) x[(size_t)a * C + k] = in[(size_t)a * C + k] + pe[k];
    }
    for (int l = 0; l < c->L; l++) {
        const gpt_layer *h = &w->h[l];
        layernorm_forward_train(kv->ln, NULL, NULL, x, h->ln1_w, h->ln1_b, A, C, c->eps);
        conv1d_forward(kv->qkv, kv->ln, h->attn_w, h->attn_b, A, C, 3 * C);
        for (int a = 0; a < A; a++) {
            size_t at = (((size_t)l * kv->R + (size_t)slot[a]) * T + (size_t)pos[a]) * C;
            memcpy(kv->kc + at, kv->qkv + (size_t)a * 3 * C + C, C * sizeof(float));
            memcpy(kv->vc + at, kv->qkv + (size_t)a * 3 * C + 2 * C, C * sizeof(float));
        }
        step_ctx sc = {kv, c, slot, pos, l};
        parfor(A * c->NH, step_attn_range, &sc);
        conv1d_forward(kv->tmp, kv->atty, h->proj_w, h->proj_b, A, C, C);
        for (size_t i = 0; i < (size_t)A * C; i++) x[i] = kv->tmp[i] + x[i];
        layernorm_forward_train(kv->ln, NULL, NULL, x, h->ln2_w, h->ln2_b, A, C, c->eps);
        conv1d_forward(kv->fch, kv->ln, h->fc_w, h->fc_b, A, C, F);
        gelu_forward(kv->fch, kv->fch, (size_t)A * F);
        conv1d_forward(kv->tmp, kv->fch, h->fcproj_w, h->fcproj_b, A, F, C);
        for (size_t i = 0; i < (size_t)A * C; i++) x[i] = kv->tmp[i] + x[i];
    }
    layernorm_forward_train(out, NULL, NULL, x, w->lnf_w, w->lnf_b, A, C, c->eps);
}

void gpt_cache_copy(gpt_cache *dst, int dslot, const gpt_cache *src, int sslot, int n, const gpt_config *c) {
    size_t C = (size_t)c->C;
    for (int l = 0; l < c->L; l++) {
        size_t d = ((size_t)l * dst->R + (size_t)dslot) * dst->T * C, s = ((size_t)l * src->R + (size_t)sslot) * src->T * C;
        memcpy(dst->kc + d, src->kc + s, (size_t)n * C * sizeof(float));
        memcpy(dst->vc + d, src->vc + s, (size_t)n * C * sizeof(float));
    }
}

/* ---------------------------------------------------------------- search */

struct gpt_gen {
    const gpt_config *c;
    const gpt_weights *w;
    gpt_gen_opts o;
    int nmax, K;
    gpt_cache *kv;
    float *pre;      /* [nmax, C] */
    float *in;       /* [R, C] inputs of the rows of a step */
    float *out;      /* [R, C] */
    float *logits;   /* [R, vt] */
    int *slot, *pos; /* [R] */
    int *row_of;     /* [R] which beam/prefix a row belongs to */
    /* beam state, [nmax * K] */
    int32_t *seq, *seq2; /* [nmax * K, max_len] */
    double *score, *score2;
    int *nfin;           /* per prefix: finished hypotheses */
    int32_t *fin;        /* [nmax * K, max_len] */
    int *finlen;
    double *finscore;
    gpt_cache *snap;     /* [K slots]: a prefix's beam sources while they are reordered */
    int32_t *tmpseq;     /* [max_len] */
    int *next;           /* [R] slots of the next step's rows */
    double flops;
};

gpt_gen *gpt_gen_new(const gpt_config *c, const gpt_weights *w, const gpt_gen_opts *o, int nmax) {
    gpt_gen *g = xcalloc(1, sizeof *g);
    g->c = c, g->w = w, g->o = *o, g->nmax = nmax;
    g->K = o->beam < 1 ? 1 : o->beam;
    int R = nmax * g->K, C = c->C, ml = o->max_len;
    g->kv = gpt_cache_new(c, R, ml);
    g->pre = xmalloc_aligned((size_t)nmax * C * sizeof(float));
    g->in = xmalloc_aligned((size_t)R * C * sizeof(float));
    g->out = xmalloc_aligned((size_t)R * C * sizeof(float));
    g->logits = xmalloc_aligned((size_t)R * o->vt * sizeof(float));
    g->slot = xmalloc((size_t)R * sizeof(int));
    g->pos = xmalloc((size_t)R * sizeof(int));
    g->row_of = xmalloc((size_t)R * sizeof(int));
    if (g->K > 1) {
        g->seq = xmalloc((size_t)R * ml * sizeof(int32_t));
        g->seq2 = xmalloc((size_t)R * ml * sizeof(int32_t));
        g->fin = xmalloc((size_t)R * ml * sizeof(int32_t));
        g->score = xmalloc((size_t)R * sizeof(double));
        g->score2 = xmalloc((size_t)R * sizeof(double));
        g->finscore = xmalloc((size_t)R * sizeof(double));
        g->finlen = xmalloc((size_t)R * sizeof(int));
        g->nfin = xmalloc((size_t)nmax * sizeof(int));
        g->snap = gpt_cache_new(c, g->K, ml); /* one prefix's beams at a time */
        g->tmpseq = xmalloc((size_t)ml * sizeof(int32_t));
        g->next = xmalloc((size_t)R * sizeof(int));
    }
    return g;
}

void gpt_gen_free(gpt_gen *g) {
    if (!g) return;
    gpt_cache_free(g->kv);
    free(g->pre), free(g->in), free(g->out), free(g->logits), free(g->slot), free(g->pos), free(g->row_of);
    free(g->seq), free(g->seq2), free(g->fin), free(g->score), free(g->score2), free(g->finscore), free(g->finlen);
    free(g->nfin), free(g->tmpseq), free(g->next);
    gpt_cache_free(g->snap);
    free(g);
}

double gpt_gen_flops(const gpt_gen *g) { return g->flops; }

/* a step over A rows, then logits[A, vt] (only ids the tokenizer knows: the
 * others are never emitted, so they need not be computed) */
static void gen_step(gpt_gen *g, int A) {
    const gpt_config *c = g->c;
    gpt_step(g->kv, c, g->w, g->out, g->in, g->slot, g->pos, A);
    gemm(CblasNoTrans, CblasTrans, A, g->o.vt, c->C, 1.0f, g->out, c->C, g->w->wte, c->C, 0.0f, g->logits,
         g->o.vt);
    double C = c->C;
    g->flops += 2.0 * A * (c->L * (C * 3 * C + C * C + 2 * C * c->F) + C * g->o.vt);
}

static void greedy(gpt_gen *g, int n, int32_t *ids, int *nids) {
    int C = g->c->C, ml = g->o.max_len, vt = g->o.vt;
    int A = 0;
    for (int i = 0; i < n; i++) {
        nids[i] = 0;
        memcpy(g->in + (size_t)A * C, g->pre + (size_t)i * C, C * sizeof(float));
        g->slot[A] = i, g->pos[A] = 0, g->row_of[A] = i;
        A++;
    }
    while (A > 0) {
        gen_step(g, A);
        int A2 = 0;
        for (int a = 0; a < A; a++) {
            int i = g->row_of[a];
            const float *l = g->logits + (size_t)a * vt;
            /* argmax, first index on ties (torch.argmax); the published
             * softmax(logits / 0.1) does not change it */
            int best = 0;
            for (int v = 1; v < vt; v++)
                if (l[v] > l[best]) best = v;
            ids[(size_t)i * ml + nids[i]++] = best;
            if (best == g->o.stop || nids[i] >= ml) continue;
            memcpy(g->in + (size_t)A2 * C, g->w->wte + (size_t)best * C, C * sizeof(float));
            g->slot[A2] = i, g->pos[A2] = g->pos[a] + 1, g->row_of[A2] = i;
            A2++;
        }
        A = A2;
    }
}

typedef struct {
    double s;
    int beam, tok;
} cand;

/* higher score first; ties: lower beam, then lower token */
static int cand_before(const cand *a, const cand *b) {
    if (a->s != b->s) return a->s > b->s;
    if (a->beam != b->beam) return a->beam < b->beam;
    return a->tok < b->tok;
}

/* insert into the sorted list top[0..*n) of capacity cap */
static void cand_push(cand *top, int *n, int cap, cand x) {
    if (*n == cap && !cand_before(&x, &top[cap - 1])) return;
    int i = *n < cap ? (*n)++ : cap - 1;
    while (i > 0 && cand_before(&x, &top[i - 1])) {
        top[i] = top[i - 1];
        i--;
    }
    top[i] = x;
}

/* log-softmax of a row over the allowed ids */
static void log_softmax_row(float *l, int V) {
    float mx = -INFINITY;
    for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
    double sum = 0;
    for (int v = 0; v < V; v++) sum += expf(l[v] - mx);
    float lse = (float)(log(sum) + mx);
    for (int v = 0; v < V; v++) l[v] -= lse;
}

static void fin_add(gpt_gen *g, int i, const int32_t *seq, int len, double score) {
    int K = g->K, ml = g->o.max_len, f = i * K + g->nfin[i]++;
    memcpy(g->fin + (size_t)f * ml, seq, (size_t)len * sizeof(int32_t));
    g->finlen[f] = len;
    g->finscore[f] = score / len; /* length normalisation: mean log-probability per generated token */
}

/* Beam search (gpt.h; man page): K live hypotheses per prefix ranked by
 * their summed log-probability; one that emits [SEP] among the K best
 * candidates of a step is finished with score sum/len (len counts every
 * generated token, [SEP] included); the search ends when K are finished or
 * at max_len (live ones are then finished as they are); the best score wins. */
static void beam(gpt_gen *g, int n, int32_t *ids, int *nids) {
    const gpt_config *c = g->c;
    int K = g->K, C = c->C, ml = g->o.max_len, vt = g->o.vt, stop = g->o.stop;
    cand *top = xmalloc((size_t)2 * K * sizeof(cand)), *all = xmalloc((size_t)2 * K * K * sizeof(cand));
    /* step 0: the prefix, in slot i*K */
    int A = 0;
    for (int i = 0; i < n; i++) {
        g->nfin[i] = 0;
        memcpy(g->in + (size_t)A * C, g->pre + (size_t)i * C, C * sizeof(float));
        g->slot[A] = i * K, g->pos[A] = 0, g->row_of[A] = i * K;
        A++;
    }
    for (int t = 0; A > 0; t++) {
        gen_step(g, A);
        for (int a = 0; a < A; a++) log_softmax_row(g->logits + (size_t)a * vt, vt);
        /* rows of one prefix are consecutive */
        int A2 = 0;
        for (int a0 = 0; a0 < A;) {
            int i = g->row_of[a0] / K, a1 = a0;
            while (a1 < A && g->row_of[a1] / K == i) a1++;
            int na = 0;
            for (int a = a0; a < a1; a++) {
                int b = g->row_of[a] - i * K;
                double base = t == 0 ? 0.0 : g->score[i * K + b];
                int nt = 0;
                const float *l = g->logits + (size_t)a * vt;
                for (int v = 0; v < vt; v++) cand_push(top, &nt, 2 * K, (cand){base + l[v], b, v});
                for (int k = 0; k < nt; k++) cand_push(all, &na, 2 * K, top[k]);
            }
            /* the K best candidates: [SEP] ends a hypothesis, others go on */
            int live = 0, src[64], moved = 0;
            int32_t *nseq = g->seq2 + (size_t)i * K * ml;
            for (int k = 0; k < na && live < K; k++) {
                const cand *x = &all[k];
                const int32_t *parent = g->seq + ((size_t)i * K + x->beam) * ml;
                if (x->tok == stop) {
                    if (k < K && g->nfin[i] < K) {
                        memcpy(g->tmpseq, parent, (size_t)t * sizeof(int32_t));
                        g->tmpseq[t] = stop;
                        fin_add(g, i, g->tmpseq, t + 1, x->s);
                    }
                    continue;
                }
                memcpy(nseq + (size_t)live * ml, parent, (size_t)t * sizeof(int32_t));
                nseq[(size_t)live * ml + t] = x->tok;
                g->score2[i * K + live] = x->s;
                /* the new beam continues its parent's cache (positions 0..t) */
                src[live] = t == 0 ? i * K : i * K + x->beam;
                if (src[live] != i * K + live) moved = 1;
                live++;
            }
            if (moved) {
                /* copy through a snapshot of the sources: a slot may be both
                 * a source and a destination */
                for (int b = 0; b < live; b++)
                    if (src[b] != i * K + b) gpt_cache_copy(g->snap, src[b] - i * K, g->kv, src[b], t + 1, c);
                for (int b = 0; b < live; b++)
                    if (src[b] != i * K + b) gpt_cache_copy(g->kv, i * K + b, g->snap, src[b] - i * K, t + 1, c);
            }
            memcpy(g->seq + (size_t)i * K * ml, nseq, (size_t)live * ml * sizeof(int32_t));
            memcpy(g->score + (size_t)i * K, g->score2 + (size_t)i * K, (size_t)live * sizeof(double));
            if (g->nfin[i] >= K || t + 1 >= ml) {
                /* done: at max_len the live hypotheses end as they are */
                for (int b = 0; b < live && g->nfin[i] < K; b++)
                    fin_add(g, i, g->seq + ((size_t)i * K + b) * ml, t + 1, g->score[i * K + b]);
            } else {
                /* the next step's rows, staged: this step's rows of later
                 * prefixes are still to be read */
                for (int b = 0; b < live; b++) g->next[A2++] = i * K + b;
            }
            a0 = a1;
        }
        for (int r = 0; r < A2; r++) {
            int sl = g->next[r];
            int32_t tok = g->seq[(size_t)sl * ml + t];
            memcpy(g->in + (size_t)r * C, g->w->wte + (size_t)tok * C, C * sizeof(float));
            g->slot[r] = sl, g->pos[r] = t + 1, g->row_of[r] = sl;
        }
        A = A2;
    }
    for (int i = 0; i < n; i++) {
        int best = -1;
        for (int f = 0; f < g->nfin[i]; f++)
            if (best < 0 || g->finscore[i * K + f] > g->finscore[i * K + best]) best = f;
        nids[i] = best < 0 ? 0 : g->finlen[i * K + best];
        if (best >= 0) memcpy(ids + (size_t)i * ml, g->fin + ((size_t)i * K + best) * ml, (size_t)nids[i] * sizeof(int32_t));
    }
    free(top);
    free(all);
}

void gpt_generate(gpt_gen *g, const float *emb, int n, int32_t *ids, int *nids) {
    if (n <= 0) return;
    gpt_prefix(g->pre, g->c, g->w, emb, n);
    g->flops = 2.0 * n * g->c->E * g->c->C;
    if (g->K == 1) greedy(g, n, ids, nids);
    else beam(g, n, ids, nids);
}
