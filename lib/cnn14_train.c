/* cnn14_train.c - CNN14 in training mode (see cnn14_train.h). */
#include "cnn14_train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clap_init.h"
#include "cnn14.h"
#include "kernels.h"
#include "nn.h"
#include "util.h"

#define PA "audio_encoder.audio_enc."

/* tensor indices: parameters first, in this order, then the running statistics */
enum { T_BN0_W, T_BN0_B, T_BLOCK0 };
#define T_CONV1(k) (T_BLOCK0 + 6 * (k))
#define T_BN1_W(k) (T_CONV1(k) + 1)
#define T_BN1_B(k) (T_CONV1(k) + 2)
#define T_CONV2(k) (T_CONV1(k) + 3)
#define T_BN2_W(k) (T_CONV1(k) + 4)
#define T_BN2_B(k) (T_CONV1(k) + 5)
#define T_HEAD(m) (T_BLOCK0 + 6 * (m)->nblocks) /* audio_proj.0.weight, .0.bias, .2.weight, .2.bias */
#define T_RUN(m) (T_HEAD(m) + 4)                /* bn0 mean, var; per block bn1 mean, var, bn2 mean, var */

static float *P(cnn14t *m, int i) { return m->params + m->t[i].off; }
static float *G(cnn14t *m, int i) { return m->grads + m->t[i].off; }
static float *RB(cnn14t *m, int i) { return m->buffers + m->t[i].off; }

static void add(cnn14t *m, int cap, const char *name, int buffer, int ndim, int64_t d0, int64_t d1, int64_t d2,
                int64_t d3) {
    if (m->ntensors >= cap) die("cnn14t: tensor table overflow");
    cnn14t_tensor *t = &m->t[m->ntensors++];
    t->name = xstrdup(name);
    t->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    t->numel = 1;
    for (int i = 0; i < ndim; i++) t->shape[i] = d[i], t->numel *= (size_t)d[i];
    t->buffer = buffer;
    size_t *n = buffer ? &m->nbuffers : &m->nparams;
    t->off = *n;
    *n += t->numel;
}

static void build_table(cnn14t *m) {
    int N = m->nblocks, cap = 2 + 6 * N + 4 + 2 + 4 * N, M = m->n_mels, E = m->embed;
    m->t = xcalloc((size_t)cap, sizeof(cnn14t_tensor));
    char nm[160];
    add(m, cap, PA "bn0.weight", 0, 1, M, 0, 0, 0);
    add(m, cap, PA "bn0.bias", 0, 1, M, 0, 0, 0);
    int cin = 1;
    for (int k = 0; k < N; k++) {
        int c = m->channels[k];
        snprintf(nm, sizeof nm, PA "conv_block%d.conv1.weight", k + 1), add(m, cap, nm, 0, 4, c, cin, 3, 3);
        snprintf(nm, sizeof nm, PA "conv_block%d.bn1.weight", k + 1), add(m, cap, nm, 0, 1, c, 0, 0, 0);
        snprintf(nm, sizeof nm, PA "conv_block%d.bn1.bias", k + 1), add(m, cap, nm, 0, 1, c, 0, 0, 0);
        snprintf(nm, sizeof nm, PA "conv_block%d.conv2.weight", k + 1), add(m, cap, nm, 0, 4, c, c, 3, 3);
        snprintf(nm, sizeof nm, PA "conv_block%d.bn2.weight", k + 1), add(m, cap, nm, 0, 1, c, 0, 0, 0);
        snprintf(nm, sizeof nm, PA "conv_block%d.bn2.bias", k + 1), add(m, cap, nm, 0, 1, c, 0, 0, 0);
        cin = c;
    }
    add(m, cap, "audio_proj.0.weight", 0, 2, E, cin, 0, 0);
    add(m, cap, "audio_proj.0.bias", 0, 1, E, 0, 0, 0);
    add(m, cap, "audio_proj.2.weight", 0, 2, E, E, 0, 0);
    add(m, cap, "audio_proj.2.bias", 0, 1, E, 0, 0, 0);
    add(m, cap, PA "bn0.running_mean", 1, 1, M, 0, 0, 0);
    add(m, cap, PA "bn0.running_var", 1, 1, M, 0, 0, 0);
    for (int k = 0; k < N; k++)
        for (int j = 1; j <= 2; j++) {
            snprintf(nm, sizeof nm, PA "conv_block%d.bn%d.running_mean", k + 1, j);
            add(m, cap, nm, 1, 1, m->channels[k], 0, 0, 0);
            snprintf(nm, sizeof nm, PA "conv_block%d.bn%d.running_var", k + 1, j);
            add(m, cap, nm, 1, 1, m->channels[k], 0, 0, 0);
        }
    m->params = xcalloc(m->nparams, sizeof(float));
    m->grads = xcalloc(m->nparams, sizeof(float));
    m->buffers = xcalloc(m->nbuffers, sizeof(float));
}

int cnn14t_find(const cnn14t *m, const char *name) {
    for (int i = 0; i < m->ntensors; i++)
        if (!strcmp(m->t[i].name, name)) return i;
    return -1;
}

static void put(cnn14t *m, const char *name, const float *src) {
    int i = cnn14t_find(m, name);
    if (i < 0) die("cnn14t: no tensor %s", name);
    memcpy((m->t[i].buffer ? m->buffers : m->params) + m->t[i].off, src, m->t[i].numel * sizeof(float));
}

cnn14t *cnn14t_load(const char *path, char *err, size_t errlen) {
    if (clap_check_family(path, 1, err, errlen)) return NULL; /* a PaSST tower (SALSA), or none: named */
    cnn14_model *src = cnn14_load(path, CNN14_IM2COL, err, errlen);
    if (!src) return NULL;
    if (src->cfg.nblocks > CNN14T_MAX_BLOCKS) {
        snprintf(err, errlen, "%s: %d ConvBlocks, at most %d can be trained", path, src->cfg.nblocks,
                 CNN14T_MAX_BLOCKS);
        cnn14_free(src);
        return NULL;
    }
    cnn14t *m = xcalloc(1, sizeof *m);
    m->n_mels = src->cfg.n_mels, m->nblocks = src->cfg.nblocks, m->embed = src->cfg.embed;
    for (int k = 0; k < m->nblocks; k++) m->channels[k] = src->cfg.channels[k];
    m->bn_eps = src->cfg.bn_eps, m->momentum = 0.1f, m->dropout = 0.2f;
    /* cnns.py Cnn14.__init__: SpecAugmentation(64, 2, 8, 2), on in WavCaps' settings/train.yaml */
    m->specaug = 1, m->spec_twidth = 64, m->spec_tstripes = 2, m->spec_fwidth = 8, m->spec_fstripes = 2;
    build_table(m);
    static const char *const bnp[4] = {"weight", "bias", "running_mean", "running_var"};
    char nm[160];
    for (int j = 0; j < 4; j++) snprintf(nm, sizeof nm, PA "bn0.%s", bnp[j]), put(m, nm, src->w.bn0_raw[j]);
    for (int k = 0; k < m->nblocks; k++)
        for (int c = 0; c < 2; c++) {
            const cnn14_conv *cv = &src->w.conv[2 * k + c];
            snprintf(nm, sizeof nm, PA "conv_block%d.conv%d.weight", k + 1, c + 1), put(m, nm, cv->w);
            for (int j = 0; j < 4; j++)
                snprintf(nm, sizeof nm, PA "conv_block%d.bn%d.%s", k + 1, c + 1, bnp[j]), put(m, nm, cv->bn_raw[j]);
        }
    put(m, "audio_proj.0.weight", src->w.proj0_w);
    put(m, "audio_proj.0.bias", src->w.proj0_b);
    put(m, "audio_proj.2.weight", src->w.proj2_w);
    put(m, "audio_proj.2.bias", src->w.proj2_b);
    cnn14_free(src);
    return m;
}

static void free_acts(cnn14t *m) {
    free(m->mel);
    for (int k = 0; k <= m->nblocks; k++) free(m->x[k]), m->x[k] = NULL;
    for (int k = 0; k < m->nblocks; k++) {
        free(m->z1[k]), free(m->a1[k]), free(m->z2[k]), free(m->a2[k]), free(m->mask[k]);
        m->z1[k] = m->a1[k] = m->z2[k] = m->a2[k] = NULL, m->mask[k] = NULL;
    }
    free(m->stats), free(m->feat), free(m->hid), free(m->argmax), free(m->cols), free(m->d0), free(m->d1),
        free(m->d2), free(m->stripes);
    m->mel = m->stats = m->feat = m->hid = m->cols = m->d0 = m->d1 = m->d2 = NULL;
    m->argmax = m->stripes = NULL;
}

void cnn14t_free(cnn14t *m) {
    if (!m) return;
    free_acts(m);
    for (int i = 0; i < m->ntensors; i++) free((char *)m->t[i].name);
    free(m->t), free(m->params), free(m->grads), free(m->buffers);
    free(m);
}

/* activation buffers for B clips of T frames */
static void alloc_acts(cnn14t *m, int B, int T) {
    if (m->mel && m->B == B && m->T == T) return;
    free_acts(m);
    m->B = B, m->T = T;
    int t = T, f = m->n_mels, cin = 1;
    size_t big = (size_t)B * T * f, cols = 0, nstats = 2 * (size_t)m->n_mels;
    m->mel = xmalloc((size_t)B * T * f * sizeof(float));
    m->x[0] = xmalloc((size_t)B * T * f * sizeof(float));
    for (int k = 0; k < m->nblocks; k++) {
        int c = m->channels[k];
        size_t n = (size_t)B * c * t * f, np = (size_t)B * c * (t / 2) * (f / 2);
        m->z1[k] = xmalloc(n * sizeof(float)), m->a1[k] = xmalloc(n * sizeof(float));
        m->z2[k] = xmalloc(n * sizeof(float)), m->a2[k] = xmalloc(n * sizeof(float));
        m->x[k + 1] = xmalloc((np ? np : 1) * sizeof(float));
        m->mask[k] = xmalloc(np ? np : 1);
        if (n > big) big = n;
        size_t sc = conv3x3_scratch(c > cin ? c : cin, t, f);
        if (sc > cols) cols = sc;
        nstats += 4 * (size_t)c;
        cin = c, t /= 2, f /= 2;
    }
    m->stats = xmalloc(nstats * sizeof(float));
    m->feat = xmalloc((size_t)B * cin * sizeof(float));
    m->hid = xmalloc((size_t)B * m->embed * sizeof(float));
    m->argmax = xmalloc((size_t)B * cin * sizeof(int));
    m->cols = xmalloc(cols * sizeof(float));
    m->d0 = xmalloc(big * sizeof(float)), m->d1 = xmalloc(big * sizeof(float)), m->d2 = xmalloc(big * sizeof(float));
}

static uint64_t block_key(uint64_t item, int k) { return item ^ ((uint64_t)(k + 1) * 0x9e3779b97f4a7c15ULL); }

/* ---------------------------------------------------------------- SpecAugment */

static uint64_t sa_mix(uint64_t z) { /* splitmix64's finaliser */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* uniform in 0..n-1 from 53 bits of h (0 when n <= 0) */
static int below(uint64_t h, int n) { return n > 0 ? (int)((double)(h >> 11) * 0x1.0p-53 * n) : 0; }

/* torchlibrosa 0.0.9 DropStripes.transform_slice, per stripe: distance =
 * randint(0, drop_width), bgn = randint(0, total_width - distance); each draw
 * a hash of (key, draw index) instead of torch's generator. A clip shorter
 * than the width (torch raises there; WavCaps pads every clip to 10 s) gets
 * its width clamped to total - 1. */
void cnn14t_spec_stripes(const cnn14t *m, int *s, int T, int M, uint64_t key) {
    uint64_t k = sa_mix(key ^ 0x5370656341756721ULL); /* "SpecAug!": apart from dropout's keys */
    for (int i = 0; i < m->spec_tstripes + m->spec_fstripes; i++) {
        int tm = i < m->spec_tstripes, total = tm ? T : M;
        int d = below(sa_mix(k + 0x9e3779b97f4a7c15ULL * (uint64_t)(2 * i + 1)), tm ? m->spec_twidth : m->spec_fwidth);
        if (d > total - 1) d = total > 0 ? total - 1 : 0;
        s[2 * i] = below(sa_mix(k + 0x9e3779b97f4a7c15ULL * (uint64_t)(2 * i + 2)), total - d);
        s[2 * i + 1] = d;
    }
}

/* x[T, M] = 0 on the stripes s (time stripes whole frames, frequency stripes
 * whole bins): SpecAugment's forward on one clip, and its backward (the
 * gradient of a zeroed value is 0) */
static void spec_zero(float *x, const int *s, int nt, int nf, int T, int M) {
    for (int i = 0; i < nt; i++)
        memset(x + (size_t)s[2 * i] * M, 0, (size_t)s[2 * i + 1] * M * sizeof(float));
    for (int i = nt; i < nt + nf; i++)
        for (int t = 0; t < T; t++)
            for (int f = s[2 * i]; f < s[2 * i] + s[2 * i + 1]; f++) x[(size_t)t * M + f] = 0;
}

/* training mode (batch statistics, running statistics updated) or eval mode
 * (running statistics) */
static void bn(cnn14t *m, int train, float *out, float *st, int C, int ri, const float *in, int wi, int bi, int O,
               int S) {
    if (train)
        batchnorm_forward_train(out, st, st + C, RB(m, ri), RB(m, ri + 1), in, P(m, wi), P(m, bi), O, C, S, m->bn_eps,
                                m->momentum);
    else
        batchnorm_forward_eval(out, in, P(m, wi), P(m, bi), RB(m, ri), RB(m, ri + 1), O, C, S, m->bn_eps);
}

static void forward(cnn14t *m, float *e, const float *mel, int B, int T, const uint64_t *drop_keys, int train);

void cnn14t_forward_train(cnn14t *m, float *e, const float *mel, int B, int T, const uint64_t *drop_keys) {
    forward(m, e, mel, B, T, drop_keys, 1);
}

void cnn14t_forward_eval(cnn14t *m, float *e, const float *mel, int B, int T) { forward(m, e, mel, B, T, NULL, 0); }

static void forward(cnn14t *m, float *e, const float *mel, int B, int T, const uint64_t *drop_keys, int train) {
    alloc_acts(m, B, T);
    int M = m->n_mels, N = m->nblocks, R = T_RUN(m);
    memcpy(m->mel, mel, (size_t)B * T * M * sizeof(float));
    float *st = m->stats;
    /* bn0 over the mel bins: [B, T, M] is O = B*T rows of C = M channels */
    bn(m, train, m->x[0], st, M, R, mel, T_BN0_W, T_BN0_B, B * T, 1);
    st += 2 * M;
    /* cnns.py: if self.training and self.is_spec_augment: x = self.spec_augmenter(x) (after bn0) */
    int ns = m->spec_tstripes + m->spec_fstripes;
    m->specced = train && drop_keys && m->specaug && ns > 0;
    if (m->specced) {
        free(m->stripes);
        m->stripes = xmalloc((size_t)B * ns * 2 * sizeof(int));
        for (int b = 0; b < B; b++) {
            int *s = m->stripes + (size_t)b * ns * 2;
            cnn14t_spec_stripes(m, s, T, M, drop_keys[b]);
            spec_zero(m->x[0] + (size_t)b * T * M, s, m->spec_tstripes, m->spec_fstripes, T, M);
        }
    }
    int t = T, f = M, cin = 1;
    for (int k = 0; k < N; k++) {
        int c = m->channels[k], P_ = t * f;
        size_t n = (size_t)B * c * P_;
        conv3x3_forward(m->z1[k], m->cols, m->x[k], P(m, T_CONV1(k)), B, cin, c, t, f);
        bn(m, train, m->a1[k], st, c, R + 2 + 4 * k, m->z1[k], T_BN1_W(k), T_BN1_B(k), B, P_);
        relu_forward(m->a1[k], m->a1[k], n);
        st += 2 * c;
        conv3x3_forward(m->z2[k], m->cols, m->a1[k], P(m, T_CONV2(k)), B, c, c, t, f);
        bn(m, train, m->a2[k], st, c, R + 4 + 4 * k, m->z2[k], T_BN2_W(k), T_BN2_B(k), B, P_);
        relu_forward(m->a2[k], m->a2[k], n);
        st += 2 * c;
        avgpool2x2_forward(m->x[k + 1], m->a2[k], B * c, t, f);
        t /= 2, f /= 2;
        size_t ni = (size_t)c * t * f;
        m->dropped = train && drop_keys && m->dropout > 0;
        if (m->dropped) {
            for (int b = 0; b < B; b++) dropout_mask(m->mask[k] + b * ni, ni, m->dropout, block_key(drop_keys[b], k));
            dropout_apply(m->x[k + 1], m->mask[k], 1.0f / (1.0f - m->dropout), (size_t)B * ni);
        } else {
            memset(m->mask[k], 1, (size_t)B * ni);
        }
        cin = c;
    }
    int H = T_HEAD(m), E = m->embed;
    timefreq_pool_forward(m->feat, m->argmax, m->x[N], B * cin, t, f);
    linear_forward(m->hid, m->feat, P(m, H), P(m, H + 1), B, cin, E);
    relu_forward(m->hid, m->hid, (size_t)B * E);
    linear_forward(e, m->hid, P(m, H + 2), P(m, H + 3), B, E, E);
}

void cnn14t_backward(cnn14t *m, const float *de) {
    int H = T_HEAD(m), E = m->embed;
    /* audio_proj.2 */
    linear_backward(m->d0, G(m, H + 2), G(m, H + 3), de, m->hid, P(m, H + 2), m->B, E, E);
    cnn14t_backward_hidden(m, m->d0);
}

void cnn14t_backward_hidden(cnn14t *m, const float *dhid) {
    int B = m->B, T = m->T, M = m->n_mels, N = m->nblocks, H = T_HEAD(m), E = m->embed;
    int cl = m->channels[N - 1];
    /* the head below audio_proj.2 (dhid may be m->d0) */
    float *dh = m->d0, *dfeat = m->d1;
    relu_backward(dh, dhid, m->hid, (size_t)B * E);
    linear_backward(dfeat, G(m, H), G(m, H + 1), dh, m->feat, P(m, H), B, cl, E);
    /* spatial sizes of every block's input */
    int ts[CNN14T_MAX_BLOCKS + 1], fs[CNN14T_MAX_BLOCKS + 1];
    ts[0] = T, fs[0] = M;
    for (int k = 0; k < N; k++) ts[k + 1] = ts[k] / 2, fs[k + 1] = fs[k] / 2;
    float *dx = m->d2; /* d loss / d x[N] */
    timefreq_pool_backward(dx, dfeat, m->argmax, B * cl, ts[N], fs[N]);
    /* the saved statistics, walked backwards */
    float *st = m->stats + 2 * M;
    for (int k = 0; k < N; k++) st += 4 * m->channels[k];
    for (int k = N - 1; k >= 0; k--) {
        int c = m->channels[k], cin = k ? m->channels[k - 1] : 1, t = ts[k], f = fs[k], P_ = t * f;
        size_t n = (size_t)B * c * P_;
        /* dropout, then the pool: dx [B, c, t/2, f/2] -> da [B, c, t, f] */
        dropout_apply(dx, m->mask[k], m->dropped ? 1.0f / (1.0f - m->dropout) : 1.0f,
                      (size_t)B * c * ts[k + 1] * fs[k + 1]);
        float *bufs[3] = {m->d0, m->d1, m->d2}, *o[2];
        for (int i = 0, j = 0; i < 3; i++)
            if (bufs[i] != dx) o[j++] = bufs[i];
        float *da = o[0], *dz = o[1];
        avgpool2x2_backward(da, dx, B * c, t, f);
        relu_backward(da, da, m->a2[k], n);
        st -= 2 * c;
        batchnorm_backward(dz, G(m, T_BN2_W(k)), G(m, T_BN2_B(k)), da, m->z2[k], st, st + c, P(m, T_BN2_W(k)), B, c,
                           P_);
        conv3x3_backward(da, G(m, T_CONV2(k)), m->cols, dz, m->a1[k], P(m, T_CONV2(k)), B, c, c, t, f);
        relu_backward(da, da, m->a1[k], n);
        st -= 2 * c;
        batchnorm_backward(dz, G(m, T_BN1_W(k)), G(m, T_BN1_B(k)), da, m->z1[k], st, st + c, P(m, T_BN1_W(k)), B, c,
                           P_);
        conv3x3_backward(da, G(m, T_CONV1(k)), m->cols, dz, m->x[k], P(m, T_CONV1(k)), B, cin, c, t, f);
        dx = da; /* d loss / d x[k] */
    }
    /* SpecAugment: the zeroed values pass no gradient to bn0 */
    if (m->specced)
        for (int b = 0; b < B; b++)
            spec_zero(dx + (size_t)b * T * M, m->stripes + (size_t)b * (m->spec_tstripes + m->spec_fstripes) * 2,
                      m->spec_tstripes, m->spec_fstripes, T, M);
    /* bn0: its input gradient is not needed, only weight and bias */
    float *scratch = dx == m->d0 ? m->d1 : m->d0;
    batchnorm_backward(scratch, G(m, T_BN0_W), G(m, T_BN0_B), dx, m->mel, m->stats, m->stats + M, P(m, T_BN0_W),
                       B * T, M, 1);
}
