/* bert_train.c - the CLAP text towers in training mode, BERT and RoBERTa (see bert_train.h). */
#include "bert_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clap_init.h"
#include "kernels.h"
#include "nn.h"
#include "safetensors.h"
#include "util.h"

#define PT "text_encoder.text_encoder."
#define PR "sentence_embedding_model." /* SALSA's RoBERTa, as bert.c's roberta_names */

/* tensor indices */
enum { E_WORD, E_POS, E_TYPE, E_LNW, E_LNB, E_LAYER0 };
enum { L_Q_W, L_K_W, L_V_W, L_Q_B, L_K_B, L_V_B, L_O_W, L_O_B, L_LN1_W, L_LN1_B, L_I_W, L_I_B, L_F_W, L_F_B, L_LN2_W,
       L_LN2_B, L_COUNT };
#define LT(l, k) (E_LAYER0 + (l) * L_COUNT + (k))
/* text_proj.0.weight, .0.bias, .2.weight, .2.bias (BERT); project_sentence.0.weight, .0.bias (RoBERTa) */
#define T_PROJ(m) (E_LAYER0 + (m)->c.layers * L_COUNT)

static float *P(bertt *m, int i) { return m->params + m->t[i].off; }
static float *G(bertt *m, int i) { return m->grads + m->t[i].off; }

static void add(bertt *m, const char *name, int ndim, int64_t d0, int64_t d1) {
    bertt_tensor *t = &m->t[m->ntensors++];
    t->name = xstrdup(name);
    t->ndim = ndim, t->shape[0] = d0, t->shape[1] = d1;
    t->numel = (size_t)d0 * (ndim > 1 ? (size_t)d1 : 1);
    t->off = m->nparams;
    m->nparams += t->numel;
}

int bertt_find(const bertt *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->t[i].name, name)) return i;
    return -1;
}

int bertt_head(const bertt *m) { return T_PROJ(m); }

bertt *bertt_load(const char *path, char *err, size_t errlen) {
    st_file *f = st_open(path, err, errlen);
    if (!f) return NULL;
    /* RoBERTa: SALSA's tower, checked by bert_load as clap-text checks it. Else
     * a BERT tower, or none or another: named, before the first missing
     * tensor would be */
    const char *arch = st_meta(f, "clap.text.arch");
    if (!(arch && !strcmp(arch, "roberta")) && clap_check_family(path, 0, err, errlen)) {
        st_close(f);
        return NULL;
    }
    bert_model bm;
    if (bert_load(&bm, f, err, errlen)) {
        st_close(f);
        return NULL;
    }
    bertt *m = xcalloc(1, sizeof *m);
    m->c = bm.c;
    bert_free(&bm);
    int roberta = m->c.arch == BERT_ARCH_ROBERTA;
    /* BertConfig's 0.1 (hidden_dropout_prob, attention_probs_dropout_prob);
     * SALSA: models/text/sentence_embedding_models.py from_pretrained(...,
     * hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2) */
    m->hidden_dropout = m->attn_dropout = roberta ? 0.2f : 0.1f;
    int H = m->c.hidden, I = m->c.intermediate, E = m->c.embed;
    const char *enc = roberta ? PR : PT;
    m->t = xcalloc((size_t)(E_LAYER0 + m->c.layers * L_COUNT + 4), sizeof(bertt_tensor));
    static const char *const en[5] = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                                      "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                                      "embeddings.LayerNorm.bias"};
    const int64_t es[5][2] = {{m->c.vocab, H}, {m->c.positions, H}, {m->c.types, H}, {H, 0}, {H, 0}};
    char nm[200];
    for (int k = 0; k < 5; k++) {
        snprintf(nm, sizeof nm, "%s%s", enc, en[k]);
        add(m, nm, es[k][1] ? 2 : 1, es[k][0], es[k][1]);
    }
    static const char *const ln[L_COUNT] = {
        "attention.self.query.weight", "attention.self.key.weight", "attention.self.value.weight",
        "attention.self.query.bias", "attention.self.key.bias", "attention.self.value.bias",
        "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
        "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
        "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};
    const int64_t sh[L_COUNT][2] = {{H, H}, {H, H}, {H, H}, {H, 0}, {H, 0}, {H, 0}, {H, H}, {H, 0},
                                    {H, 0}, {H, 0}, {I, H}, {I, 0}, {H, I}, {H, 0}, {H, 0}, {H, 0}};
    for (int l = 0; l < m->c.layers; l++)
        for (int k = 0; k < L_COUNT; k++) {
            snprintf(nm, sizeof nm, "%sencoder.layer.%d.%s", enc, l, ln[k]);
            add(m, nm, sh[k][1] ? 2 : 1, sh[k][0], sh[k][1]);
        }
    if (m->c.proj_layers == 2) { /* WavCaps ase_model.py: Linear, ReLU, Linear */
        add(m, "text_proj.0.weight", 2, E, H);
        add(m, "text_proj.0.bias", 1, E, 0);
        add(m, "text_proj.2.weight", 2, E, E);
        add(m, "text_proj.2.bias", 1, E, 0);
    } else { /* SALSA ex_dcase24.py: project_sentence = Sequential(Linear(text_output_size, 1024)) (adopt_n_layers 0) */
        add(m, "project_sentence.0.weight", 2, E, H);
        add(m, "project_sentence.0.bias", 1, E, 0);
    }
    m->params = xcalloc(m->nparams, sizeof(float));
    m->grads = xcalloc(m->nparams, sizeof(float));
    for (int i = 0; i < m->ntensors; i++) {
        const float *src = st_get_f32(f, m->t[i].name, m->t[i].ndim, m->t[i].shape, err, errlen);
        if (!src) {
            st_close(f);
            bertt_free(m);
            return NULL;
        }
        memcpy(m->params + m->t[i].off, src, m->t[i].numel * sizeof(float));
    }
    st_close(f);
    return m;
}

static void free_acts(bertt *m) {
    free(m->ids), free(m->pos), free(m->off), free(m->len), free(m->esum), free(m->emean), free(m->erstd),
        free(m->x0), free(m->emask);
    if (m->la)
        for (int l = 0; l < m->c.layers; l++) {
            struct bertt_layer_acts *a = &m->la[l];
            free(a->qkv), free(a->att), free(a->atty), free(a->r1), free(a->m1), free(a->s1), free(a->x1),
                free(a->fi), free(a->gi), free(a->r2), free(a->m2), free(a->s2), free(a->x2), free(a->amask),
                free(a->dmask1), free(a->dmask2);
        }
    free(m->la), free(m->cls), free(m->hid);
    for (int i = 0; i < 5; i++) free(m->d[i]), m->d[i] = NULL;
    m->ids = m->pos = NULL, m->off = m->len = NULL, m->esum = m->emean = m->erstd = m->x0 = NULL, m->emask = NULL;
    m->la = NULL, m->cls = m->hid = NULL;
    m->capN = 0, m->capB = m->capTm = 0;
}

void bertt_free(bertt *m) {
    if (!m) return;
    free_acts(m);
    for (int i = 0; i < m->ntensors; i++) free((char *)m->t[i].name);
    free(m->t), free(m->params), free(m->grads);
    free(m);
}

static void alloc_acts(bertt *m, size_t N, int B, int Tm) {
    if (N <= m->capN && B <= m->capB && Tm <= m->capTm) return;
    free_acts(m);
    size_t H = (size_t)m->c.hidden, I = (size_t)m->c.intermediate, NH = (size_t)m->c.heads;
    size_t A = (size_t)B * NH * Tm * Tm;
    m->capN = N, m->capB = B, m->capTm = Tm;
    m->ids = xmalloc(N * sizeof(int32_t)), m->pos = xmalloc(N * sizeof(int32_t));
    m->off = xmalloc((size_t)B * sizeof(int)), m->len = xmalloc((size_t)B * sizeof(int));
    m->esum = xmalloc(N * H * sizeof(float)), m->x0 = xmalloc(N * H * sizeof(float));
    m->emean = xmalloc(N * sizeof(float)), m->erstd = xmalloc(N * sizeof(float));
    m->emask = xmalloc(N * H);
    m->la = xcalloc((size_t)m->c.layers, sizeof *m->la);
    for (int l = 0; l < m->c.layers; l++) {
        struct bertt_layer_acts *a = &m->la[l];
        a->qkv = xmalloc(3 * N * H * sizeof(float)), a->att = xmalloc(A * sizeof(float));
        a->atty = xmalloc(N * H * sizeof(float)), a->r1 = xmalloc(N * H * sizeof(float));
        a->m1 = xmalloc(N * sizeof(float)), a->s1 = xmalloc(N * sizeof(float)), a->x1 = xmalloc(N * H * sizeof(float));
        a->fi = xmalloc(N * I * sizeof(float)), a->gi = xmalloc(N * I * sizeof(float));
        a->r2 = xmalloc(N * H * sizeof(float)), a->m2 = xmalloc(N * sizeof(float)), a->s2 = xmalloc(N * sizeof(float));
        a->x2 = xmalloc(N * H * sizeof(float));
        a->amask = xmalloc(A), a->dmask1 = xmalloc(N * H), a->dmask2 = xmalloc(N * H);
    }
    m->cls = xmalloc((size_t)B * H * sizeof(float)), m->hid = xmalloc((size_t)B * m->c.embed * sizeof(float));
    size_t big = 3 * N * H > N * I ? 3 * N * H : N * I, head = (size_t)B * ((size_t)m->c.embed > H ? (size_t)m->c.embed : H);
    if (head > big) big = head;
    for (int i = 0; i < 5; i++) m->d[i] = xmalloc(big * sizeof(float));
}

/* site keys: every dropout site of every layer gets its own stream per sequence */
static uint64_t site_key(uint64_t seq, int layer, int site) {
    return seq ^ ((uint64_t)(layer + 1) * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)(site + 1) * 0xd1b54a32d192ed03ULL);
}

/* x[N, H] = dropout of x with masks keyed per sequence (or all-ones masks) */
static void hidden_dropout(bertt *m, float *x, uint8_t *mask, const uint64_t *keys, int layer, int site) {
    size_t H = (size_t)m->c.hidden;
    if (!m->dropped) {
        memset(mask, 1, (size_t)m->N * H);
        return;
    }
    for (int b = 0; b < m->B; b++)
        dropout_mask(mask + (size_t)m->off[b] * H, (size_t)m->len[b] * H, m->hidden_dropout, site_key(keys[b], layer, site));
    dropout_apply(x, mask, 1.0f / (1.0f - m->hidden_dropout), (size_t)m->N * H);
}

void bertt_forward_train(bertt *m, float *e, const int32_t *ids, const int *len, int B, const uint64_t *drop_keys) {
    int N = 0, Tm = 1;
    for (int b = 0; b < B; b++) {
        if (len[b] < 1 || len[b] > m->c.positions - m->c.pos_offset)
            die("bert_train: sequence length %d outside 1..%d", len[b], m->c.positions - m->c.pos_offset);
        N += len[b], Tm = len[b] > Tm ? len[b] : Tm;
    }
    for (int n = 0; n < N; n++)
        if (ids[n] < 0 || ids[n] >= m->c.vocab) die("bert_train: token id %d outside the vocabulary (%d)", ids[n], m->c.vocab);
    alloc_acts(m, (size_t)N, B, Tm);
    m->B = B, m->N = N, m->Tm = Tm;
    m->dropped = drop_keys && (m->hidden_dropout > 0 || m->attn_dropout > 0);
    int H = m->c.hidden, I = m->c.intermediate, NH = m->c.heads, E = m->c.embed;
    float eps = m->c.ln_eps;
    for (int b = 0, o = 0; b < B; o += len[b], b++) {
        m->off[b] = o, m->len[b] = len[b];
        for (int t = 0; t < len[b]; t++) m->ids[o + t] = ids[o + t], m->pos[o + t] = m->c.pos_offset + t;
    }
    /* embeddings: (word + token_type[0]) + position, as HF adds them (BertEmbeddings, RobertaEmbeddings) */
    const float *word = P(m, E_WORD), *pe = P(m, E_POS), *ty = P(m, E_TYPE);
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++)
            m->esum[(size_t)n * H + h] = word[(size_t)m->ids[n] * H + h] + ty[h] + pe[(size_t)m->pos[n] * H + h];
    layernorm_forward_train(m->x0, m->emean, m->erstd, m->esum, P(m, E_LNW), P(m, E_LNB), N, H, eps);
    hidden_dropout(m, m->x0, m->emask, drop_keys, -1, 0);
    const float *x = m->x0;
    float ads = m->attn_dropout > 0 ? 1.0f / (1.0f - m->attn_dropout) : 1.0f;
    for (int l = 0; l < m->c.layers; l++) {
        struct bertt_layer_acts *a = &m->la[l];
        linear_forward(a->qkv, x, P(m, LT(l, L_Q_W)), P(m, LT(l, L_Q_B)), N, H, 3 * H);
        uint8_t *am = NULL;
        if (m->dropped && m->attn_dropout > 0) {
            am = a->amask;
            /* item b's mask is drawn for its own [NH, len, len] and then laid out
             * in the batch's [NH, Tm, Tm]: the bits must not depend on the batch's
             * longest caption (Tm), or an item's dropout would change with the
             * other items of its batch (and with how clap-train splits a batch
             * over MPI ranks) */
            size_t per = (size_t)NH * Tm * Tm;
            for (int b = 0; b < B; b++) {
                size_t L = (size_t)m->len[b];
                uint8_t *own = xmalloc((size_t)NH * L * L + 1);
                dropout_mask(own, (size_t)NH * L * L, m->attn_dropout, site_key(drop_keys[b], l, 3));
                for (size_t h = 0; h < (size_t)NH; h++)
                    for (size_t r = 0; r < L; r++)
                        memcpy(am + b * per + (h * Tm + r) * Tm, own + (h * L + r) * L, L);
                free(own);
            }
        }
        attention_forward(a->atty, a->att, a->qkv, am, ads, m->off, m->len, B, Tm, H, NH, 0);
        linear_forward(a->r1, a->atty, P(m, LT(l, L_O_W)), P(m, LT(l, L_O_B)), N, H, H);
        hidden_dropout(m, a->r1, a->dmask1, drop_keys, l, 1);
        for (size_t i = 0; i < (size_t)N * H; i++) a->r1[i] += x[i];
        layernorm_forward_train(a->x1, a->m1, a->s1, a->r1, P(m, LT(l, L_LN1_W)), P(m, LT(l, L_LN1_B)), N, H, eps);
        linear_forward(a->fi, a->x1, P(m, LT(l, L_I_W)), P(m, LT(l, L_I_B)), N, H, I);
        gelu_erf_forward(a->gi, a->fi, (size_t)N * I);
        linear_forward(a->r2, a->gi, P(m, LT(l, L_F_W)), P(m, LT(l, L_F_B)), N, I, H);
        hidden_dropout(m, a->r2, a->dmask2, drop_keys, l, 2);
        for (size_t i = 0; i < (size_t)N * H; i++) a->r2[i] += a->x1[i];
        layernorm_forward_train(a->x2, a->m2, a->s2, a->r2, P(m, LT(l, L_LN2_W)), P(m, LT(l, L_LN2_B)), N, H, eps);
        x = a->x2;
    }
    for (int b = 0; b < B; b++) memcpy(m->cls + (size_t)b * H, x + (size_t)m->off[b] * H, (size_t)H * sizeof(float));
    int pj = T_PROJ(m);
    if (m->c.proj_layers == 2) {
        linear_forward(m->hid, m->cls, P(m, pj), P(m, pj + 1), B, H, E);
        relu_forward(m->hid, m->hid, (size_t)B * E);
        linear_forward(e, m->hid, P(m, pj + 2), P(m, pj + 3), B, E, E);
    } else {
        linear_forward(e, m->cls, P(m, pj), P(m, pj + 1), B, H, E);
    }
}

/* dx[n] = dx[n] where mask else 0, times the dropout scale (identity when off) */
static void dropout_back(bertt *m, float *d, const uint8_t *mask, size_t n, float p) {
    if (m->dropped && p > 0) dropout_apply(d, mask, 1.0f / (1.0f - p), n);
}

void bertt_backward(bertt *m, const float *de) {
    int B = m->B, N = m->N, H = m->c.hidden, I = m->c.intermediate, NH = m->c.heads, E = m->c.embed, pj = T_PROJ(m);
    size_t NHs = (size_t)N * H;
    float *dx = m->d[0], *dr = m->d[1], *dt = m->d[2], *di = m->d[3], *dq = m->d[4];
    /* the head, then the [CLS] (<s>) rows */
    float *dhid = dt, *dcls = di;
    if (m->c.proj_layers == 2) {
        linear_backward(dhid, G(m, pj + 2), G(m, pj + 3), de, m->hid, P(m, pj + 2), B, E, E);
        relu_backward(dhid, dhid, m->hid, (size_t)B * E);
        linear_backward(dcls, G(m, pj), G(m, pj + 1), dhid, m->cls, P(m, pj), B, H, E);
    } else {
        linear_backward(dcls, G(m, pj), G(m, pj + 1), de, m->cls, P(m, pj), B, H, E);
    }
    memset(dx, 0, NHs * sizeof(float));
    for (int b = 0; b < B; b++) memcpy(dx + (size_t)m->off[b] * H, dcls + (size_t)b * H, (size_t)H * sizeof(float));
    float ads = m->attn_dropout > 0 ? 1.0f / (1.0f - m->attn_dropout) : 1.0f;
    for (int l = m->c.layers - 1; l >= 0; l--) {
        struct bertt_layer_acts *a = &m->la[l];
        const float *xin = l ? m->la[l - 1].x2 : m->x0;
        /* x2 = LN2(dropout(gi Wf^T + bf) + x1) */
        memset(dr, 0, NHs * sizeof(float));
        layernorm_backward(dr, G(m, LT(l, L_LN2_W)), G(m, LT(l, L_LN2_B)), dx, a->r2, P(m, LT(l, L_LN2_W)), a->m2, a->s2,
                           N, H);
        memcpy(dx, dr, NHs * sizeof(float)); /* the residual: d x1 */
        dropout_back(m, dr, a->dmask2, NHs, m->hidden_dropout);
        linear_backward(di, G(m, LT(l, L_F_W)), G(m, LT(l, L_F_B)), dr, a->gi, P(m, LT(l, L_F_W)), N, I, H);
        gelu_erf_backward(di, di, a->fi, (size_t)N * I);
        linear_backward(dt, G(m, LT(l, L_I_W)), G(m, LT(l, L_I_B)), di, a->x1, P(m, LT(l, L_I_W)), N, H, I);
        for (size_t i = 0; i < NHs; i++) dx[i] += dt[i];
        /* x1 = LN1(dropout(atty Wo^T + bo) + x) */
        memset(dr, 0, NHs * sizeof(float));
        layernorm_backward(dr, G(m, LT(l, L_LN1_W)), G(m, LT(l, L_LN1_B)), dx, a->r1, P(m, LT(l, L_LN1_W)), a->m1, a->s1,
                           N, H);
        memcpy(dx, dr, NHs * sizeof(float)); /* the residual: d x */
        dropout_back(m, dr, a->dmask1, NHs, m->hidden_dropout);
        linear_backward(dt, G(m, LT(l, L_O_W)), G(m, LT(l, L_O_B)), dr, a->atty, P(m, LT(l, L_O_W)), N, H, H);
        attention_backward(dq, dt, a->qkv, a->att, m->dropped && m->attn_dropout > 0 ? a->amask : NULL, ads, m->off,
                           m->len, B, m->Tm, H, NH, 0);
        linear_backward(dt, G(m, LT(l, L_Q_W)), G(m, LT(l, L_Q_B)), dq, xin, P(m, LT(l, L_Q_W)), N, H, 3 * H);
        for (size_t i = 0; i < NHs; i++) dx[i] += dt[i];
    }
    /* embeddings */
    dropout_back(m, dx, m->emask, NHs, m->hidden_dropout);
    memset(dr, 0, NHs * sizeof(float));
    layernorm_backward(dr, G(m, E_LNW), G(m, E_LNB), dx, m->esum, P(m, E_LNW), m->emean, m->erstd, N, H);
    embedding_backward(G(m, E_WORD), dr, m->ids, N, H);
    embedding_backward(G(m, E_POS), dr, m->pos, N, H);
    float *gt = G(m, E_TYPE); /* every token has type 0 */
    for (int n = 0; n < N; n++)
        for (int h = 0; h < H; h++) gt[h] += dr[(size_t)n * H + h];
}
