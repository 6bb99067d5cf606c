/* passt_train.c - PaSST-S in training mode (see passt_train.h). */
#include "passt_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gap.h" /* rng_t */
#include "kernels.h"
#include "kernels_vit.h"
#include "nn.h"
#include "passt.h"
#include "safetensors.h"
#include "util.h"

#define PA "audio_embedding_model.model.model."

/* tensor indices: PaSST's named_parameters() order, then the projection */
enum { T_CLS, T_DIST, T_POS, T_FPOS, T_TPOS, T_PW, T_PB, T_BLOCK0 };
enum { L_LN1W, L_LN1B, L_QKVW, L_QKVB, L_PROJW, L_PROJB, L_LN2W, L_LN2B, L_FC1W, L_FC1B, L_FC2W, L_FC2B, L_COUNT };
#define LT(l, k) (T_BLOCK0 + (l) * L_COUNT + (k))
#define T_NORM(m) (T_BLOCK0 + (m)->c.depth * L_COUNT) /* norm.weight, norm.bias, project_audio.0.weight, .bias */

static float *P(passtt *m, int i) { return m->params + m->t[i].off; }
static float *G(passtt *m, int i) { return m->grads + m->t[i].off; }

static void add(passtt *m, const char *name, int ndim, int64_t a, int64_t b, int64_t c, int64_t d) {
    passtt_tensor *t = &m->t[m->ntensors++];
    t->name = xstrdup(name);
    t->ndim = ndim;
    int64_t s[4] = {a, b, c, d};
    t->numel = 1;
    for (int i = 0; i < 4; i++) {
        t->shape[i] = i < ndim ? s[i] : 0;
        if (i < ndim) t->numel *= (size_t)s[i];
    }
    t->off = m->nparams;
    m->nparams += t->numel;
}

int passtt_find(const passtt *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->t[i].name, name)) return i;
    return -1;
}

passtt *passtt_new(const passtt_config *c) {
    if (c->dim < 1 || c->heads < 1 || c->dim % c->heads || c->depth < 1 || c->mlp < 1 || c->embed < 1 || c->ph < 1 ||
        c->pw < 1 || c->sh < 1 || c->sw < 1 || c->grid_f < 1 || c->grid_t < 1 || c->n_mels < c->ph)
        die("passtt_new: inconsistent sizes");
    passtt *m = xcalloc(1, sizeof *m);
    m->c = *c;
    m->s_patchout_t = 15, m->s_patchout_f = 2; /* SALSA experiments/ex_dcase24.py */
    m->drop_rate = m->attn_drop_rate = m->drop_path_rate = 0; /* passt.py PaSST.__init__ defaults */
    int D = c->dim, Hm = c->mlp;
    m->t = xcalloc((size_t)(T_BLOCK0 + c->depth * L_COUNT + 4), sizeof(passtt_tensor));
    add(m, PA "cls_token", 3, 1, 1, D, 0);
    add(m, PA "dist_token", 3, 1, 1, D, 0);
    add(m, PA "new_pos_embed", 3, 1, 2, D, 0);
    add(m, PA "freq_new_pos_embed", 4, 1, D, c->grid_f, 1);
    add(m, PA "time_new_pos_embed", 4, 1, D, 1, c->grid_t);
    add(m, PA "patch_embed.proj.weight", 4, D, 1, c->ph, c->pw);
    add(m, PA "patch_embed.proj.bias", 1, D, 0, 0, 0);
    static const char *const part[L_COUNT] = {"norm1.weight",     "norm1.bias",    "attn.qkv.weight", "attn.qkv.bias",
                                              "attn.proj.weight", "attn.proj.bias", "norm2.weight",   "norm2.bias",
                                              "mlp.fc1.weight",   "mlp.fc1.bias",  "mlp.fc2.weight",  "mlp.fc2.bias"};
    const int64_t sh[L_COUNT][2] = {{D, 0}, {D, 0}, {3 * D, D}, {3 * D, 0}, {D, D},  {D, 0},
                                    {D, 0}, {D, 0}, {Hm, D},    {Hm, 0},    {D, Hm}, {D, 0}};
    char nm[256];
    for (int l = 0; l < c->depth; l++)
        for (int k = 0; k < L_COUNT; k++) {
            snprintf(nm, sizeof nm, PA "blocks.%d.%s", l, part[k]);
            add(m, nm, sh[k][1] ? 2 : 1, sh[k][0], sh[k][1], 0, 0);
        }
    add(m, PA "norm.weight", 1, D, 0, 0, 0);
    add(m, PA "norm.bias", 1, D, 0, 0, 0);
    add(m, "project_audio.0.weight", 2, c->embed, D, 0, 0);
    add(m, "project_audio.0.bias", 1, c->embed, 0, 0, 0);
    m->params = xcalloc(m->nparams, sizeof(float));
    m->grads = xcalloc(m->nparams, sizeof(float));
    return m;
}

passtt *passtt_load(const char *path, char *err, size_t errlen) {
    passt_model *pm = passt_load(path, err, errlen); /* every tensor checked by name and shape */
    if (!pm) return NULL;
    const passt_config *pc = &pm->cfg;
    passtt_config c = {.n_mels = pc->n_mels, .dim = pc->dim, .depth = pc->depth, .heads = pc->heads,
                       .mlp = pc->mlp, .ph = pc->ph, .pw = pc->pw, .sh = pc->sh, .sw = pc->sw,
                       .grid_f = pc->grid_f, .grid_t = pc->grid_t, .embed = pc->embed, .ln_eps = pc->ln_eps};
    passtt *m = passtt_new(&c);
    for (int i = 0; i < m->ntensors; i++) {
        const float *src = st_get_f32(pm->file, m->t[i].name, m->t[i].ndim, m->t[i].shape, err, errlen);
        if (!src) {
            passt_free(pm);
            passtt_free(m);
            return NULL;
        }
        memcpy(m->params + m->t[i].off, src, m->t[i].numel * sizeof(float));
    }
    passt_free(pm);
    return m;
}

static void free_acts(passtt *m) {
    if (m->la)
        for (int l = 0; l < m->c.depth; l++) {
            passtt_block_acts *a = &m->la[l];
            free(a->xin), free(a->h1), free(a->m1), free(a->s1), free(a->qkv), free(a->att), free(a->ao), free(a->x1);
            free(a->h2), free(a->m2), free(a->s2), free(a->f1), free(a->g1);
            free(a->amask), free(a->pmask), free(a->gmask), free(a->fmask), free(a->dp);
        }
    passtt_block_acts *a = &m->work;
    free(a->h1), free(a->m1), free(a->s1), free(a->qkv), free(a->att), free(a->ao), free(a->x1);
    free(a->h2), free(a->m2), free(a->s2), free(a->f1), free(a->g1);
    free(a->amask), free(a->pmask), free(a->gmask), free(a->fmask), free(a->dp);
    memset(&m->work, 0, sizeof m->work);
    free(m->la), m->la = NULL;
    free(m->keys), m->keys = NULL;
    free(m->tkeep), free(m->fkeep), free(m->cols), free(m->posmask), free(m->xL);
    free(m->tok), free(m->tm), free(m->ts), free(m->feat), free(m->off), free(m->len);
    m->tkeep = m->fkeep = NULL, m->cols = m->xL = m->tok = m->tm = m->ts = m->feat = NULL;
    m->posmask = NULL, m->off = m->len = NULL;
    for (int i = 0; i < 4; i++) free(m->d[i]), m->d[i] = NULL;
    m->capR = m->capP = 0, m->capB = m->capN = 0;
}

void passtt_free(passtt *m) {
    if (!m) return;
    free_acts(m);
    for (int i = 0; i < m->ntensors; i++) free((char *)m->t[i].name);
    free(m->t), free(m->params), free(m->grads);
    free(m);
}

/* buffers for B items of P patches and N tokens (grown, never shrunk) */
/* a block's activations other than its input */
static void alloc_block(passtt_block_acts *a, size_t R, size_t D, size_t Hm, size_t A, int B) {
    a->h1 = xmalloc(R * D * sizeof(float));
    a->m1 = xmalloc(R * sizeof(float)), a->s1 = xmalloc(R * sizeof(float));
    a->qkv = xmalloc(3 * R * D * sizeof(float)), a->att = xmalloc(A * sizeof(float));
    a->ao = xmalloc(R * D * sizeof(float)), a->x1 = xmalloc(R * D * sizeof(float));
    a->h2 = xmalloc(R * D * sizeof(float)), a->m2 = xmalloc(R * sizeof(float)), a->s2 = xmalloc(R * sizeof(float));
    a->f1 = xmalloc(R * Hm * sizeof(float)), a->g1 = xmalloc(R * Hm * sizeof(float));
    a->amask = xmalloc(A), a->pmask = xmalloc(R * D), a->gmask = xmalloc(R * Hm), a->fmask = xmalloc(R * D);
    a->dp = xmalloc((size_t)B * 2);
}

static void alloc_acts(passtt *m, int B, int P, int N) {
    if (B <= m->capB && (size_t)B * P <= m->capP && N <= m->capN && m->recompute == m->cap_recompute) return;
    free_acts(m);
    m->cap_recompute = m->recompute;
    size_t D = (size_t)m->c.dim, Hm = (size_t)m->c.mlp, NH = (size_t)m->c.heads, R = (size_t)B * N;
    size_t K = (size_t)m->c.ph * m->c.pw, BP = (size_t)B * P, A = (size_t)B * NH * N * N;
    m->capB = B, m->capP = BP, m->capN = N, m->capR = R;
    m->tkeep = xmalloc((size_t)B * P * sizeof(int)), m->fkeep = xmalloc((size_t)B * P * sizeof(int));
    m->cols = xmalloc(BP * K * sizeof(float));
    m->posmask = xmalloc(R * D);
    m->la = xcalloc((size_t)m->c.depth, sizeof *m->la);
    for (int l = 0; l < m->c.depth; l++) {
        m->la[l].xin = xmalloc(R * D * sizeof(float));
        if (!m->recompute) alloc_block(&m->la[l], R, D, Hm, A, B);
    }
    if (m->recompute) alloc_block(&m->work, R, D, Hm, A, B);
    m->keys = xmalloc((size_t)B * sizeof(uint64_t));
    m->xL = xmalloc(R * D * sizeof(float));
    m->tok = xmalloc(2 * (size_t)B * D * sizeof(float));
    m->tm = xmalloc(2 * (size_t)B * sizeof(float)), m->ts = xmalloc(2 * (size_t)B * sizeof(float));
    m->feat = xmalloc((size_t)B * D * sizeof(float));
    m->off = xmalloc((size_t)B * sizeof(int)), m->len = xmalloc((size_t)B * sizeof(int));
    size_t wide = 3 * D > Hm ? 3 * D : Hm, big = R > BP ? R : BP;
    m->d[0] = xmalloc(R * D * sizeof(float));
    m->d[1] = xmalloc(R * wide * sizeof(float));
    m->d[2] = xmalloc(R * D * sizeof(float));
    m->d[3] = xmalloc(big * D * sizeof(float));
}

/* ------------------------------------------------------------------ random draws */

static uint64_t mix(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* every dropout site of every block its own stream per item; apart from the patchout's */
static uint64_t site_key(uint64_t item, int layer, int site) {
    return mix(item ^ 0x5061535374447270ULL) ^ ((uint64_t)(layer + 2) * 0x9e3779b97f4a7c15ULL) ^
           ((uint64_t)(site + 1) * 0xd1b54a32d192ed03ULL);
}

static int cmp_int(const void *a, const void *b) { return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b); }

/* keep[n - s] = a uniform subset of 0..n-1, ascending (partial Fisher-Yates) */
static int subset(int *keep, int n, int s, rng_t *r) {
    if (s > n - 1) s = n - 1; /* keep one at least (passt.py would keep none) */
    if (s < 0) s = 0;
    int k = n - s;
    int *idx = xmalloc((size_t)n * sizeof(int));
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = 0; i < k; i++) {
        int j = i + (int)(rng_uniform(r) * (n - i));
        if (j >= n) j = n - 1;
        int t = idx[i];
        idx[i] = idx[j], idx[j] = t;
    }
    memcpy(keep, idx, (size_t)k * sizeof(int));
    free(idx);
    qsort(keep, (size_t)k, sizeof(int), cmp_int); /* .sort().values */
    return k;
}

int passtt_patchout(const passtt *m, int *tkeep, int *fkeep, int Fp, int Tp, uint64_t key) {
    rng_t r;
    rng_seed(&r, mix(key ^ 0x5061744f75743231ULL)); /* "PatOut21" */
    int tk = subset(tkeep, Tp, m->s_patchout_t, &r); /* time first, as forward_features */
    int fk = subset(fkeep, Fp, m->s_patchout_f, &r);
    return tk * 65536 + fk;
}

/* ------------------------------------------------------------------ forward */

/* x[B*N, W] = dropout of item b's rows with b's key for (layer, site) */
static void drop_rows(passtt *m, float *x, uint8_t *mask, size_t W, const uint64_t *keys, int layer, int site, float p) {
    if (!m->dropped || p <= 0) return;
    size_t per = (size_t)m->N * W;
    for (int b = 0; b < m->B; b++) dropout_mask(mask + b * per, per, p, site_key(keys[b], layer, site));
    dropout_apply(x, mask, 1.0f / (1.0f - p), (size_t)m->B * per);
}

/* block l's drop_path rate: torch.linspace(0, drop_path_rate, depth)[l] */
static float dp_rate(const passtt *m, int l) {
    return m->c.depth > 1 ? m->drop_path_rate * (float)l / (float)(m->c.depth - 1) : 0.0f;
}

/* r[B*N, D] = drop_path(r): item b's rows / keep * bit (timm drop_path: x.div(keep_prob) * random_tensor) */
static void drop_path(passtt *m, float *r, const uint8_t *dp, int l, int site) {
    float p = dp_rate(m, l);
    if (!m->dpath || p <= 0) return;
    float keep = 1.0f - p;
    size_t per = (size_t)m->N * m->c.dim;
    for (int b = 0; b < m->B; b++) {
        float bit = dp[2 * b + site];
        float *x = r + b * per;
        for (size_t i = 0; i < per; i++) x[i] = x[i] / keep * bit;
    }
}

/* the saved activations of block l: its own, or (recomputation) the shared set with its input */
static passtt_block_acts *acts(passtt *m, int l) {
    if (!m->cap_recompute) return &m->la[l];
    m->work.xin = m->la[l].xin;
    return &m->work;
}

/* block l of the last forward pass's batch: xout[B*N, D] from la[l].xin, the activations into acts(m, l);
 * every mask drawn from the items' keys, so a second call (recomputation) gives the same bits */
static void block_forward(passtt *m, int l, float *xout, const uint64_t *keys) {
    const passtt_config *c = &m->c;
    int B = m->B, N = m->N, D = c->dim, Hm = c->mlp, NH = c->heads;
    size_t R = (size_t)B * N;
    passtt_block_acts *a = acts(m, l);
    float ads = m->attn_drop_rate > 0 ? 1.0f / (1.0f - m->attn_drop_rate) : 1.0f;
    float *r = m->d[2];
    if (m->dpath)
        for (int b = 0; b < B; b++)
            for (int s = 0; s < 2; s++) dropout_mask(a->dp + 2 * b + s, 1, dp_rate(m, l), site_key(keys[b], l, 5 + s));
    /* x1 = x + drop_path(proj_drop(proj(attn(LN1 x)))) */
    layernorm_forward_train(a->h1, a->m1, a->s1, a->xin, P(m, LT(l, L_LN1W)), P(m, LT(l, L_LN1B)), (int)R, D,
                            c->ln_eps);
    linear_forward(a->qkv, a->h1, P(m, LT(l, L_QKVW)), P(m, LT(l, L_QKVB)), (int)R, D, 3 * D);
    uint8_t *am = NULL;
    if (m->dropped && m->attn_drop_rate > 0) {
        /* every item has N tokens: its [H, N, N] block of the mask is contiguous */
        size_t per = (size_t)NH * N * N;
        for (int b = 0; b < B; b++)
            dropout_mask(a->amask + b * per, per, m->attn_drop_rate, site_key(keys[b], l, 1));
        am = a->amask;
    }
    attention_forward(a->ao, a->att, a->qkv, am, ads, m->off, m->len, B, N, D, NH, 0);
    linear_forward(r, a->ao, P(m, LT(l, L_PROJW)), P(m, LT(l, L_PROJB)), (int)R, D, D);
    drop_rows(m, r, a->pmask, (size_t)D, keys, l, 2, m->drop_rate);
    drop_path(m, r, a->dp, l, 0);
    for (size_t i = 0; i < R * D; i++) a->x1[i] = a->xin[i] + r[i];
    /* x2 = x1 + drop_path(drop(fc2(drop(gelu(fc1(LN2 x1)))))) */
    layernorm_forward_train(a->h2, a->m2, a->s2, a->x1, P(m, LT(l, L_LN2W)), P(m, LT(l, L_LN2B)), (int)R, D,
                            c->ln_eps);
    linear_forward(a->f1, a->h2, P(m, LT(l, L_FC1W)), P(m, LT(l, L_FC1B)), (int)R, D, Hm);
    gelu_erf_forward(a->g1, a->f1, R * Hm);
    drop_rows(m, a->g1, a->gmask, (size_t)Hm, keys, l, 3, m->drop_rate);
    linear_forward(r, a->g1, P(m, LT(l, L_FC2W)), P(m, LT(l, L_FC2B)), (int)R, Hm, D);
    drop_rows(m, r, a->fmask, (size_t)D, keys, l, 4, m->drop_rate);
    drop_path(m, r, a->dp, l, 1);
    for (size_t i = 0; i < R * D; i++) xout[i] = a->x1[i] + r[i];
}

void passtt_forward(passtt *m, float *e, const float *mel, int B, int S, const uint64_t *keys, const int *tkeep_in,
                    const int *fkeep_in) {
    const passtt_config *c = &m->c;
    int M = c->n_mels, D = c->dim;
    if (S < c->pw) die("passtt_forward: a segment of %d frames is shorter than a patch", S);
    int Fp = (M - c->ph) / c->sh + 1, Tp = (S - c->pw) / c->sw + 1, Pn = Fp * Tp;
    if (Fp != c->grid_f || Tp > c->grid_t)
        die("passtt_forward: a %d x %d grid does not fit the positional embeddings (%d x %d)", Fp, Tp, c->grid_f,
            c->grid_t);
    if (!(m->drop_rate >= 0 && m->drop_rate < 1 && m->attn_drop_rate >= 0 && m->attn_drop_rate < 1 &&
          m->drop_path_rate >= 0 && m->drop_path_rate < 1))
        die("passtt_forward: dropout rates must lie in [0, 1)");
    int po = (keys || tkeep_in) && (m->s_patchout_t > 0 || m->s_patchout_f > 0);
    int st = po ? m->s_patchout_t : 0, sf = po ? m->s_patchout_f : 0;
    if (st > Tp - 1) st = Tp - 1;
    if (sf > Fp - 1) sf = Fp - 1;
    if (st < 0) st = 0;
    if (sf < 0) sf = 0;
    int Tk = Tp - st, Fk = Fp - sf, N = 2 + Fk * Tk;
    alloc_acts(m, B, Pn, N);
    m->B = B, m->S = S, m->Fp = Fp, m->Tp = Tp, m->Fk = Fk, m->Tk = Tk, m->N = N;
    m->dropped = keys && (m->drop_rate > 0 || m->attn_drop_rate > 0);
    m->dpath = keys && m->drop_path_rate > 0;
    size_t K = (size_t)c->ph * c->pw;
    const float *tpos = P(m, T_TPOS), *fpos = P(m, T_FPOS), *pos = P(m, T_POS);
    const float *cls = P(m, T_CLS), *dist = P(m, T_DIST);
    float *x0 = m->la[0].xin;
    for (int b = 0; b < B; b++) {
        float *pe = m->d[3] + (size_t)b * Pn * D; /* scratch: only the kept rows go on */
        /* the image [M, S] is mel[S, M] read with strides (1, M) */
        patch_embed_forward(pe, m->cols + (size_t)b * Pn * K, mel + (size_t)b * S * M, 1, M, P(m, T_PW), P(m, T_PB),
                            Fp, Tp, c->ph, c->pw, c->sh, c->sw, D);
        for (int p = 0; p < Pn; p++) {
            int f = p / Tp, t = p % Tp;
            float *r = pe + (size_t)p * D;
            for (int d = 0; d < D; d++) {
                r[d] = r[d] + tpos[(size_t)d * c->grid_t + t]; /* x + time_new_pos_embed, then + freq_new_pos_embed */
                r[d] = r[d] + fpos[(size_t)d * c->grid_f + f];
            }
        }
        int *tk = m->tkeep + (size_t)b * Tk, *fk = m->fkeep + (size_t)b * Fk;
        if (tkeep_in && po) {
            memcpy(tk, tkeep_in + (size_t)b * Tk, (size_t)Tk * sizeof(int));
            memcpy(fk, fkeep_in + (size_t)b * Fk, (size_t)Fk * sizeof(int));
            for (int i = 0; i < Tk; i++)
                if (tk[i] < 0 || tk[i] >= Tp || (i && tk[i] <= tk[i - 1])) die("passtt_forward: bad kept columns");
            for (int i = 0; i < Fk; i++)
                if (fk[i] < 0 || fk[i] >= Fp || (i && fk[i] <= fk[i - 1])) die("passtt_forward: bad kept rows");
        } else if (po) {
            passtt_patchout(m, tk, fk, Fp, Tp, keys[b]);
        } else {
            for (int i = 0; i < Tk; i++) tk[i] = i;
            for (int i = 0; i < Fk; i++) fk[i] = i;
        }
        float *x = x0 + (size_t)b * N * D;
        for (int d = 0; d < D; d++) {
            x[d] = cls[d] + pos[d];
            x[D + d] = dist[d] + pos[D + d];
        }
        for (int fi = 0; fi < Fk; fi++)
            for (int ti = 0; ti < Tk; ti++)
                memcpy(x + (size_t)(2 + fi * Tk + ti) * D, pe + ((size_t)fk[fi] * Tp + tk[ti]) * D,
                       (size_t)D * sizeof(float));
        m->off[b] = b * N, m->len[b] = N;
    }
    drop_rows(m, x0, m->posmask, (size_t)D, keys, -1, 0, m->drop_rate); /* pos_drop */
    const uint64_t *k = NULL;
    if (keys) {
        memcpy(m->keys, keys, (size_t)B * sizeof(uint64_t)); /* the backward pass redraws the masks */
        k = m->keys;
    }
    for (int l = 0; l < c->depth; l++)
        block_forward(m, l, l + 1 < c->depth ? m->la[l + 1].xin : m->xL, k);
    /* the final norm of tokens 0 and 1 (a row-wise LN: the other rows are not needed) */
    int nt = T_NORM(m);
    for (int b = 0; b < B; b++)
        memcpy(m->tok + (size_t)b * 2 * D, m->xL + (size_t)b * N * D, 2 * (size_t)D * sizeof(float));
    float *y = m->d[3];
    layernorm_forward_train(y, m->tm, m->ts, m->tok, P(m, nt), P(m, nt + 1), 2 * B, D, c->ln_eps);
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++)
            m->feat[(size_t)b * D + d] = (y[(size_t)2 * b * D + d] + y[(size_t)(2 * b + 1) * D + d]) / 2.0f;
    linear_forward(e, m->feat, P(m, nt + 2), P(m, nt + 3), B, D, c->embed);
}

/* ------------------------------------------------------------------ backward */

/* the gradient through a dropout: zero where dropped, times the scale (nothing when off) */
static void drop_back(const passtt *m, float *d, const uint8_t *mask, size_t n, float p) {
    if (m->dropped && p > 0) dropout_apply(d, mask, 1.0f / (1.0f - p), n);
}

void passtt_backward(passtt *m, const float *de) {
    const passtt_config *c = &m->c;
    int B = m->B, N = m->N, D = c->dim, Hm = c->mlp, NH = c->heads, E = c->embed, nt = T_NORM(m);
    int Fp = m->Fp, Tp = m->Tp, Fk = m->Fk, Tk = m->Tk, Pn = Fp * Tp;
    size_t R = (size_t)B * N, RD = R * D, K = (size_t)c->ph * c->pw;
    float *dx = m->d[0], *dw = m->d[1], *dr = m->d[2], *dh = m->d[3];
    /* the projection, the token mean, the final norm */
    float *dfeat = dw, *dy = dr, *dtok = dh;
    linear_backward(dfeat, G(m, nt + 2), G(m, nt + 3), de, m->feat, P(m, nt + 2), B, D, E);
    for (int b = 0; b < B; b++)
        for (int d = 0; d < D; d++)
            dy[(size_t)2 * b * D + d] = dy[(size_t)(2 * b + 1) * D + d] = dfeat[(size_t)b * D + d] / 2.0f;
    memset(dtok, 0, 2 * (size_t)B * D * sizeof(float));
    layernorm_backward(dtok, G(m, nt), G(m, nt + 1), dy, m->tok, P(m, nt), m->tm, m->ts, 2 * B, D);
    memset(dx, 0, RD * sizeof(float));
    for (int b = 0; b < B; b++)
        memcpy(dx + (size_t)b * N * D, dtok + (size_t)b * 2 * D, 2 * (size_t)D * sizeof(float));
    float ads = m->attn_drop_rate > 0 ? 1.0f / (1.0f - m->attn_drop_rate) : 1.0f;
    for (int l = c->depth - 1; l >= 0; l--) {
        if (m->cap_recompute) block_forward(m, l, m->d[3], m->dropped || m->dpath ? m->keys : NULL);
        passtt_block_acts *a = acts(m, l);
        /* the MLP branch: dx is d x2; it becomes d x1 (residual + the branch through LN2) */
        memcpy(dr, dx, RD * sizeof(float));
        drop_path(m, dr, a->dp, l, 1); /* (d * bit) / keep = d / keep * bit */
        drop_back(m, dr, a->fmask, RD, m->drop_rate);
        linear_backward(dw, G(m, LT(l, L_FC2W)), G(m, LT(l, L_FC2B)), dr, a->g1, P(m, LT(l, L_FC2W)), (int)R, Hm, D);
        drop_back(m, dw, a->gmask, R * Hm, m->drop_rate);
        gelu_erf_backward(dw, dw, a->f1, R * Hm);
        linear_backward(dh, G(m, LT(l, L_FC1W)), G(m, LT(l, L_FC1B)), dw, a->h2, P(m, LT(l, L_FC1W)), (int)R, D, Hm);
        layernorm_backward(dx, G(m, LT(l, L_LN2W)), G(m, LT(l, L_LN2B)), dh, a->x1, P(m, LT(l, L_LN2W)), a->m2, a->s2,
                           (int)R, D);
        /* the attention branch: dx becomes d x */
        memcpy(dr, dx, RD * sizeof(float));
        drop_path(m, dr, a->dp, l, 0);
        drop_back(m, dr, a->pmask, RD, m->drop_rate);
        linear_backward(dh, G(m, LT(l, L_PROJW)), G(m, LT(l, L_PROJB)), dr, a->ao, P(m, LT(l, L_PROJW)), (int)R, D, D);
        attention_backward(dw, dh, a->qkv, a->att, m->dropped && m->attn_drop_rate > 0 ? a->amask : NULL, ads, m->off,
                           m->len, B, N, D, NH, 0);
        linear_backward(dh, G(m, LT(l, L_QKVW)), G(m, LT(l, L_QKVB)), dw, a->h1, P(m, LT(l, L_QKVW)), (int)R, D,
                        3 * D);
        layernorm_backward(dx, G(m, LT(l, L_LN1W)), G(m, LT(l, L_LN1B)), dh, a->xin, P(m, LT(l, L_LN1W)), a->m1, a->s1,
                           (int)R, D);
    }
    drop_back(m, dx, m->posmask, RD, m->drop_rate); /* pos_drop */
    /* cls, dist and their positions */
    float *gc = G(m, T_CLS), *gd = G(m, T_DIST), *gp = G(m, T_POS);
    for (int b = 0; b < B; b++) {
        const float *r0 = dx + (size_t)b * N * D, *r1 = r0 + D;
        for (int d = 0; d < D; d++) gc[d] += r0[d], gp[d] += r0[d], gd[d] += r1[d], gp[D + d] += r1[d];
    }
    /* the kept patches back on their grid (a dropped patch's gradient is 0), the positional embeddings,
     * the patch embedding */
    float *dpe = dh, *gt = G(m, T_TPOS), *gf = G(m, T_FPOS);
    for (int b = 0; b < B; b++) {
        float *g = dpe + (size_t)b * Pn * D;
        const int *tk = m->tkeep + (size_t)b * Tk, *fk = m->fkeep + (size_t)b * Fk;
        memset(g, 0, (size_t)Pn * D * sizeof(float));
        for (int fi = 0; fi < Fk; fi++)
            for (int ti = 0; ti < Tk; ti++) {
                const float *s = dx + ((size_t)b * N + 2 + (size_t)fi * Tk + ti) * D;
                int f = fk[fi], t = tk[ti];
                memcpy(g + ((size_t)f * Tp + t) * D, s, (size_t)D * sizeof(float));
                for (int d = 0; d < D; d++) {
                    gt[(size_t)d * c->grid_t + t] += s[d];
                    gf[(size_t)d * c->grid_f + f] += s[d];
                }
            }
        patch_embed_backward(NULL, G(m, T_PW), G(m, T_PB), NULL, g, m->cols + (size_t)b * Pn * K, P(m, T_PW), 1,
                             c->n_mels, Fp, Tp, c->ph, c->pw, c->sh, c->sw, D);
    }
}
