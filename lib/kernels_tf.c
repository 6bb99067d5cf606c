/* kernels_tf.c - transformer layers of the shared kernel layer (see
 * kernels.h), moved here from the GPT decoder unchanged (prefixdec's results
 * are bit-identical): HF Conv1D (linear with a [C, OC] weight) and bias
 * column sums, layer norm (train forward with saved statistics, backward),
 * gelu_new and exact GELU, packed self-attention (causal or not), keyed
 * dropout, embedding gradients, softmax
 * cross-entropy. Matrix products go to gemm (lib/gemm.c); everything else
 * runs on the parfor pool, split so that every output element is computed by
 * one thread in a fixed order: bit-identical at any thread count. */
#include "kernels.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "nn.h"
#include "parfor.h"
#include "util.h"

typedef struct {
    float *db;
    const float *dout;
    int N, OC;
} colsum_ctx;

static void colsum_range(void *p, int lo, int hi) {
    colsum_ctx *x = p;
    for (int n = 0; n < x->N; n++) {
        const float *r = x->dout + (size_t)n * x->OC;
        for (int o = lo; o < hi; o++) x->db[o] += r[o];
    }
}

void bias_backward(float *db, const float *dout, int N, int OC) {
    colsum_ctx x = {db, dout, N, OC};
    parfor(OC, colsum_range, &x);
}

void conv1d_forward(float *out, const float *in, const float *W, const float *b, int N, int C, int OC) {
    if (N <= 0) return;
    if (b)
        for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, b, (size_t)OC * sizeof(float));
    gemm(CblasNoTrans, CblasNoTrans, N, OC, C, 1.0f, in, C, W, OC, b ? 1.0f : 0.0f, out, OC);
}

void conv1d_forward_naive(float *out, const float *in, const float *W, const float *b, int N, int C, int OC) {
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double acc = b ? b[o] : 0.0;
            for (int k = 0; k < C; k++) acc += (double)in[(size_t)i * C + k] * W[(size_t)k * OC + o];
            out[(size_t)i * OC + o] = (float)acc;
        }
}

void conv1d_backward(float *din, float *dW, float *db, const float *dout, const float *in, const float *W, int N,
                     int C, int OC) {
    if (N <= 0) return;
    if (din) gemm(CblasNoTrans, CblasTrans, N, C, OC, 1.0f, dout, OC, W, OC, 0.0f, din, C);
    gemm(CblasTrans, CblasNoTrans, C, OC, N, 1.0f, in, C, dout, OC, 1.0f, dW, OC);
    if (db) bias_backward(db, dout, N, OC);
}

void conv1d_backward_naive(float *din, float *dW, float *db, const float *dout, const float *in, const float *W,
                           int N, int C, int OC) {
    if (din)
        for (int i = 0; i < N; i++)
            for (int k = 0; k < C; k++) {
                double acc = 0;
                for (int o = 0; o < OC; o++) acc += (double)dout[(size_t)i * OC + o] * W[(size_t)k * OC + o];
                din[(size_t)i * C + k] = (float)acc;
            }
    for (int k = 0; k < C; k++)
        for (int o = 0; o < OC; o++) {
            double acc = 0;
            for (int i = 0; i < N; i++) acc += (double)in[(size_t)i * C + k] * dout[(size_t)i * OC + o];
            dW[(size_t)k * OC + o] += (float)acc;
        }
    if (db)
        for (int o = 0; o < OC; o++) {
            double acc = 0;
            for (int i = 0; i < N; i++) acc += dout[(size_t)i * OC + o];
            db[o] += (float)acc;
        }
}

/* ---------------------------------------------------------------- layernorm */

typedef struct {
    float *out, *mean, *rstd, *din, *dw, *db;
    const float *in, *w, *b, *dout, *cmean, *crstd;
    int N, C;
    float eps;
} ln_ctx;

static void ln_fwd_range(void *p, int lo, int hi) {
    ln_ctx *x = p;
    int C = x->C;
    for (int i = lo; i < hi; i++) {
        const float *r = x->in + (size_t)i * C;
        float *y = x->out + (size_t)i * C;
        double m = 0, v = 0;
        for (int k = 0; k < C; k++) m += r[k];
        m /= C;
        for (int k = 0; k < C; k++) {
            double d = r[k] - m;
            v += d * d;
        }
        v /= C;
        float rs = (float)(1.0 / sqrt(v + x->eps)), mf = (float)m;
        for (int k = 0; k < C; k++) y[k] = (r[k] - mf) * rs * x->w[k] + x->b[k];
        if (x->mean) x->mean[i] = mf;
        if (x->rstd) x->rstd[i] = rs;
    }
}

void layernorm_forward_train(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                             int N, int C, float eps) {
    ln_ctx x = {.out = out, .mean = mean, .rstd = rstd, .in = in, .w = w, .b = b, .N = N, .C = C, .eps = eps};
    parfor(N, ln_fwd_range, &x);
}

/* din rows: din += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * w */
static void ln_bwd_rows(void *p, int lo, int hi) {
    ln_ctx *x = p;
    int C = x->C;
    for (int i = lo; i < hi; i++) {
        const float *r = x->in + (size_t)i * C, *g = x->dout + (size_t)i * C;
        float *d = x->din + (size_t)i * C;
        float mf = x->cmean[i], rs = x->crstd[i];
        double s1 = 0, s2 = 0;
        for (int k = 0; k < C; k++) {
            float xh = (r[k] - mf) * rs, gw = g[k] * x->w[k];
            s1 += gw;
            s2 += (double)gw * xh;
        }
        float m1 = (float)(s1 / C), m2 = (float)(s2 / C);
        for (int k = 0; k < C; k++) {
            float xh = (r[k] - mf) * rs, gw = g[k] * x->w[k];
            d[k] += rs * (gw - m1 - xh * m2);
        }
    }
}

static void ln_bwd_cols(void *p, int lo, int hi) {
    ln_ctx *x = p;
    int C = x->C;
    for (int i = 0; i < x->N; i++) {
        const float *r = x->in + (size_t)i * C, *g = x->dout + (size_t)i * C;
        float mf = x->cmean[i], rs = x->crstd[i];
        for (int k = lo; k < hi; k++) {
            x->dw[k] += g[k] * ((r[k] - mf) * rs);
            x->db[k] += g[k];
        }
    }
}

void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int N, int C) {
    ln_ctx x = {.din = din, .dw = dw, .db = db, .dout = dout, .in = in, .w = w, .cmean = mean, .crstd = rstd,
                .N = N, .C = C};
    parfor(N, ln_bwd_rows, &x);
    parfor(C, ln_bwd_cols, &x);
}

void layernorm_backward_naive(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                              const float *mean, const float *rstd, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *r = in + (size_t)i * C, *g = dout + (size_t)i * C;
        double s1 = 0, s2 = 0;
        for (int k = 0; k < C; k++) {
            double xh = (r[k] - (double)mean[i]) * rstd[i];
            s1 += (double)g[k] * w[k];
            s2 += (double)g[k] * w[k] * xh;
            dw[k] += (float)(g[k] * xh);
            db[k] += g[k];
        }
        for (int k = 0; k < C; k++) {
            double xh = (r[k] - (double)mean[i]) * rstd[i];
            din[(size_t)i * C + k] += (float)(rstd[i] * ((double)g[k] * w[k] - s1 / C - xh * s2 / C));
        }
    }
}

/* ---------------------------------------------------------------- gelu_new */

#define GELU_K 0.7978845608028654f /* sqrt(2/pi) */

typedef struct {
    float *out;
    const float *in, *dout;
    size_t n;
} gelu_ctx;

#define GELU_BLOCK 4096

/* 0.5 x (1 + tanh u) = x / (1 + exp(-2u)): the same function, one expf, and
 * no cancellation in 1 + tanh u for negative u */
static void gelu_fwd_range(void *p, int lo, int hi) {
    gelu_ctx *x = p;
    size_t a = (size_t)lo * GELU_BLOCK, b = (size_t)hi * GELU_BLOCK;
    if (b > x->n) b = x->n;
    for (size_t i = a; i < b; i++) {
        float v = x->in[i], u = GELU_K * (v + 0.044715f * v * v * v);
        x->out[i] = v / (1.0f + expf(-2.0f * u));
    }
}

/* d/dx x s(2u) = s + x * 2 s (1 - s) * du/dx, s the logistic function */
static void gelu_bwd_range(void *p, int lo, int hi) {
    gelu_ctx *x = p;
    size_t a = (size_t)lo * GELU_BLOCK, b = (size_t)hi * GELU_BLOCK;
    if (b > x->n) b = x->n;
    for (size_t i = a; i < b; i++) {
        float v = x->in[i], u = GELU_K * (v + 0.044715f * v * v * v);
        float s = 1.0f / (1.0f + expf(-2.0f * u));
        float du = GELU_K * (1.0f + 3.0f * 0.044715f * v * v);
        x->out[i] = x->dout[i] * (s + v * 2.0f * s * (1.0f - s) * du);
    }
}

void gelu_forward(float *out, const float *in, size_t n) {
    gelu_ctx x = {out, in, NULL, n};
    parfor((int)((n + GELU_BLOCK - 1) / GELU_BLOCK), gelu_fwd_range, &x);
}

void gelu_backward(float *din, const float *dout, const float *in, size_t n) {
    gelu_ctx x = {din, in, dout, n};
    parfor((int)((n + GELU_BLOCK - 1) / GELU_BLOCK), gelu_bwd_range, &x);
}

void gelu_forward_naive(float *out, const float *in, size_t n) {
    for (size_t i = 0; i < n; i++) {
        double v = in[i];
        out[i] = (float)(0.5 * v * (1.0 + tanh(sqrt(2.0 / M_PI) * (v + 0.044715 * v * v * v))));
    }
}

/* ---------------------------------------------------------------- attention */

typedef struct {
    float *out, *att, *dqkv;
    const float *qkv, *dout, *catt;
    const uint8_t *mask;
    float dscale;
    const int *off, *len;
    int B, Tm, C, NH, causal, naive;
} attn_ctx;

/* Sequence j = b * NH + h, one query row at a time with scalar loops: the
 * causal path (GPT-2: gpt.c's cached decoding repeats this arithmetic in
 * this order) and the naive twin of the products below. pd: Tm floats. */
static void attn_fwd_rows(const attn_ctx *x, int j, float *pd) {
    int C = x->C, hs = C / x->NH, C3 = 3 * C, Tm = x->Tm;
    float scale = (float)sqrt((double)hs); /* HF divides by value.size(-1) ** 0.5 */
    int b = j / x->NH, h = j % x->NH, T = x->len[b];
    const float *base = x->qkv + (size_t)x->off[b] * C3 + (size_t)h * hs;
    for (int t = 0; t < T; t++) {
        const float *q = base + (size_t)t * C3;
        float *a = x->att + ((size_t)j * Tm + t) * Tm;
        int n2 = x->causal ? t + 1 : T; /* the keys position t sees */
        float mx = -FLT_MAX;
        for (int t2 = 0; t2 < n2; t2++) {
            const float *k = base + (size_t)t2 * C3 + C;
            float s = 0;
            for (int i = 0; i < hs; i++) s += q[i] * k[i];
            s /= scale;
            a[t2] = s;
            if (s > mx) mx = s;
        }
        float sum = 0;
        for (int t2 = 0; t2 < n2; t2++) {
            a[t2] = expf(a[t2] - mx);
            sum += a[t2];
        }
        float inv = 1.0f / sum;
        for (int t2 = 0; t2 < n2; t2++) a[t2] *= inv;
        const float *w = a;
        if (x->mask) {
            const uint8_t *mk = x->mask + ((size_t)j * Tm + t) * Tm;
            for (int t2 = 0; t2 < n2; t2++) pd[t2] = mk[t2] ? a[t2] * x->dscale : 0.0f;
            w = pd;
        }
        float *o = x->out + (size_t)(x->off[b] + t) * C + (size_t)h * hs;
        for (int i = 0; i < hs; i++) o[i] = 0;
        for (int t2 = 0; t2 < n2; t2++) {
            const float *v = base + (size_t)t2 * C3 + 2 * C;
            float wt = w[t2];
            for (int i = 0; i < hs; i++) o[i] += wt * v[i];
        }
    }
}

/* The same for a whole (sequence, head) at once when every query sees every
 * key: S = Q K^T and O = P V as two one-thread sgemms of fixed shape (T x T x
 * hs, T x hs x T), as torch's bmm does them. With PaSST's 498 tokens the
 * scalar loops took 65% of a segment's time for 10% of its FLOPs. One thread
 * computes a whole (b, h), so the bits do not depend on the thread count.
 * w: Tm * Tm floats (the dropped-out probabilities, when mask is given). */
static void attn_fwd_gemm(const attn_ctx *x, int j, float *w) {
    int C = x->C, hs = C / x->NH, C3 = 3 * C, Tm = x->Tm;
    float scale = (float)sqrt((double)hs);
    int b = j / x->NH, h = j % x->NH, T = x->len[b];
    if (T <= 0) return;
    const float *base = x->qkv + (size_t)x->off[b] * C3 + (size_t)h * hs;
    float *a = x->att + (size_t)j * Tm * Tm;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, base, C3, base + C, C3, 0.0f, a, Tm);
    for (int t = 0; t < T; t++) {
        float *r = a + (size_t)t * Tm, mx = -FLT_MAX, sum = 0;
        for (int t2 = 0; t2 < T; t2++) {
            r[t2] /= scale;
            if (r[t2] > mx) mx = r[t2];
        }
        for (int t2 = 0; t2 < T; t2++) {
            r[t2] = expf(r[t2] - mx);
            sum += r[t2];
        }
        float inv = 1.0f / sum;
        for (int t2 = 0; t2 < T; t2++) r[t2] *= inv;
    }
    const float *p = a;
    if (x->mask) {
        const uint8_t *mk = x->mask + (size_t)j * Tm * Tm;
        for (size_t i = 0; i < (size_t)T * Tm; i++) w[i] = (i % Tm) < (size_t)T && mk[i] ? a[i] * x->dscale : 0.0f;
        p = w;
    }
    float *o = x->out + (size_t)x->off[b] * C + (size_t)h * hs;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, Tm, base + 2 * C, C3, 0.0f, o, C);
}

static void attn_fwd_range(void *p, int lo, int hi) {
    attn_ctx *x = p;
    int sq = x->causal || x->naive;
    float *buf = xmalloc((sq ? (size_t)x->Tm : (size_t)x->Tm * x->Tm) * sizeof(float));
    for (int j = lo; j < hi; j++) {
        if (sq) attn_fwd_rows(x, j, buf);
        else attn_fwd_gemm(x, j, buf);
    }
    free(buf);
}

static void attention_forward_impl(float *out, float *att, const float *qkv, const uint8_t *mask, float dscale,
                                   const int *off, const int *len, int B, int Tm, int C, int NH, int causal,
                                   int naive) {
    attn_ctx x = {.out = out, .att = att, .qkv = qkv, .mask = mask, .dscale = dscale, .off = off, .len = len, .B = B,
                  .Tm = Tm, .C = C, .NH = NH, .causal = causal, .naive = naive};
    parfor(B * NH, attn_fwd_range, &x);
}

void attention_forward(float *out, float *att, const float *qkv, const uint8_t *mask, float dscale, const int *off,
                       const int *len, int B, int Tm, int C, int NH, int causal) {
    attention_forward_impl(out, att, qkv, mask, dscale, off, len, B, Tm, C, NH, causal, 0);
}

void attention_forward_naive(float *out, float *att, const float *qkv, const uint8_t *mask, float dscale,
                             const int *off, const int *len, int B, int Tm, int C, int NH, int causal) {
    attention_forward_impl(out, att, qkv, mask, dscale, off, len, B, Tm, C, NH, causal, 1);
}

/* Backward of attn_fwd_rows; da: Tm floats */
static void attn_bwd_rows(const attn_ctx *x, int j, float *da) {
    int C = x->C, hs = C / x->NH, C3 = 3 * C, Tm = x->Tm;
    float scale = (float)sqrt((double)hs);
    int b = j / x->NH, h = j % x->NH, T = x->len[b];
    const float *base = x->qkv + (size_t)x->off[b] * C3 + (size_t)h * hs;
    float *dbase = x->dqkv + (size_t)x->off[b] * C3 + (size_t)h * hs;
    for (int t = 0; t < T; t++)
        for (int s3 = 0; s3 < 3; s3++) memset(dbase + (size_t)t * C3 + (size_t)s3 * C, 0, (size_t)hs * sizeof(float));
    for (int t = 0; t < T; t++) {
        const float *a = x->catt + ((size_t)j * Tm + t) * Tm;
        const uint8_t *mk = x->mask ? x->mask + ((size_t)j * Tm + t) * Tm : NULL;
        const float *g = x->dout + (size_t)(x->off[b] + t) * C + (size_t)h * hs;
        const float *q = base + (size_t)t * C3;
        float *dq = dbase + (size_t)t * C3;
        int n2 = x->causal ? t + 1 : T;
        float dot = 0;
        for (int t2 = 0; t2 < n2; t2++) {
            const float *v = base + (size_t)t2 * C3 + 2 * C;
            float *dv = dbase + (size_t)t2 * C3 + 2 * C;
            /* through the dropout: p_drop = p * mask * dscale */
            float w = mk ? (mk[t2] ? a[t2] * x->dscale : 0.0f) : a[t2];
            float s = 0;
            for (int i = 0; i < hs; i++) {
                s += g[i] * v[i];
                dv[i] += w * g[i];
            }
            if (mk) s = mk[t2] ? s * x->dscale : 0.0f;
            da[t2] = s;
            dot += a[t2] * s;
        }
        for (int t2 = 0; t2 < n2; t2++) {
            float dpre = a[t2] * (da[t2] - dot) / scale;
            const float *k = base + (size_t)t2 * C3 + C;
            float *dk = dbase + (size_t)t2 * C3 + C;
            for (int i = 0; i < hs; i++) {
                dq[i] += dpre * k[i];
                dk[i] += dpre * q[i];
            }
        }
    }
}

/* out[T, n] = rows of in (stride ld) less their mean row (summed in double) */
static void center_rows(float *out, const float *in, int ld, int T, int n) {
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int t = 0; t < T; t++) s += in[(size_t)t * ld + i];
        float mu = (float)(s / T);
        for (int t = 0; t < T; t++) out[(size_t)t * n + i] = in[(size_t)t * ld + i] - mu;
    }
}

/* Backward of attn_fwd_gemm: dV = P'^T dO, dP' = dO V^T, through the dropout
 * and the softmax to dS, then dQ = dS K and dK = dS^T Q, four one-thread
 * sgemms. buf: 2 * Tm * Tm + 2 * Tm * hs floats. */
static void attn_bwd_gemm(const attn_ctx *x, int j, float *buf) {
    int C = x->C, hs = C / x->NH, C3 = 3 * C, Tm = x->Tm;
    float scale = (float)sqrt((double)hs);
    int b = j / x->NH, h = j % x->NH, T = x->len[b];
    if (T <= 0) return;
    const float *base = x->qkv + (size_t)x->off[b] * C3 + (size_t)h * hs;
    float *dbase = x->dqkv + (size_t)x->off[b] * C3 + (size_t)h * hs;
    const float *a = x->catt + (size_t)j * Tm * Tm;
    const uint8_t *mk = x->mask ? x->mask + (size_t)j * Tm * Tm : NULL;
    const float *g = x->dout + (size_t)x->off[b] * C + (size_t)h * hs;
    float *w = buf, *ds = buf + (size_t)Tm * Tm, *kc = buf + 2 * (size_t)Tm * Tm, *vc = kc + (size_t)Tm * hs;
    const float *p = a;
    if (mk) {
        for (size_t i = 0; i < (size_t)T * Tm; i++) w[i] = (i % Tm) < (size_t)T && mk[i] ? a[i] * x->dscale : 0.0f;
        p = w;
    }
    /* K and V less their mean row: each row of dS sums to 0 (softmax), so
     * dS K = dS (K - kbar), and without dropout dP - rowsum(P o dP) is the
     * same with V - vbar in place of V. In deep layers the tokens' keys and
     * values differ by a few % of their size; the products with the centred
     * rows round on that difference instead of on the common part
     * (docs/bert-train-numerics.md). */
    center_rows(kc, base + C, C3, T, hs);
    center_rows(vc, base + 2 * C, C3, T, hs);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, Tm, g, C, 0.0f, dbase + 2 * C, C3);
    if (mk)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, g, C, base + 2 * C, C3, 0.0f, ds, Tm);
    else
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, g, C, vc, hs, 0.0f, ds, Tm);
    for (int t = 0; t < T; t++) {
        const float *ar = a + (size_t)t * Tm;
        float *r = ds + (size_t)t * Tm, dot = 0;
        if (mk) {
            const uint8_t *mr = mk + (size_t)t * Tm;
            for (int t2 = 0; t2 < T; t2++) r[t2] = mr[t2] ? r[t2] * x->dscale : 0.0f;
        }
        for (int t2 = 0; t2 < T; t2++) dot += ar[t2] * r[t2];
        for (int t2 = 0; t2 < T; t2++) r[t2] = ar[t2] * (r[t2] - dot) / scale;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, ds, Tm, kc, hs, 0.0f, dbase, C3);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, ds, Tm, base, C3, 0.0f, dbase + C, C3);
}

static void attn_bwd_range(void *p, int lo, int hi) {
    attn_ctx *x = p;
    int sq = x->causal || x->naive;
    size_t Tm = (size_t)x->Tm, hs = (size_t)(x->C / x->NH);
    float *buf = xmalloc((sq ? Tm : 2 * Tm * Tm + 2 * Tm * hs) * sizeof(float));
    for (int j = lo; j < hi; j++) {
        if (sq) attn_bwd_rows(x, j, buf);
        else attn_bwd_gemm(x, j, buf);
    }
    free(buf);
}

static void attention_backward_impl(float *dqkv, const float *dout, const float *qkv, const float *att,
                                    const uint8_t *mask, float dscale, const int *off, const int *len, int B, int Tm,
                                    int C, int NH, int causal, int naive) {
    attn_ctx x = {.dqkv = dqkv, .dout = dout, .qkv = qkv, .catt = att, .mask = mask, .dscale = dscale, .off = off,
                  .len = len, .B = B, .Tm = Tm, .C = C, .NH = NH, .causal = causal, .naive = naive};
    parfor(B * NH, attn_bwd_range, &x);
}

void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, const uint8_t *mask,
                        float dscale, const int *off, const int *len, int B, int Tm, int C, int NH, int causal) {
    attention_backward_impl(dqkv, dout, qkv, att, mask, dscale, off, len, B, Tm, C, NH, causal, 0);
}

void attention_backward_naive(float *dqkv, const float *dout, const float *qkv, const float *att,
                              const uint8_t *mask, float dscale, const int *off, const int *len, int B, int Tm, int C,
                              int NH, int causal) {
    attention_backward_impl(dqkv, dout, qkv, att, mask, dscale, off, len, B, Tm, C, NH, causal, 1);
}

/* ---------------------------------------------------------------- dropout */

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct {
    uint8_t *mask;
    const uint8_t *cmask;
    float *x;
    size_t n;
    uint32_t thresh;
    float dscale;
    uint64_t key;
} drop_ctx;

#define DROP_BLOCK 4096

static void drop_mask_range(void *p, int lo, int hi) {
    drop_ctx *d = p;
    size_t a = (size_t)lo * DROP_BLOCK, b = (size_t)hi * DROP_BLOCK;
    if (b > d->n) b = d->n;
    for (size_t i = a; i < b; i++)
        d->mask[i] = (uint32_t)(mix64(d->key + 0x9e3779b97f4a7c15ULL * (i + 1)) >> 40) >= d->thresh;
}

void dropout_mask(uint8_t *mask, size_t n, float p, uint64_t key) {
    /* keep when a 24-bit uniform is >= p * 2^24 */
    drop_ctx d = {.mask = mask, .n = n, .thresh = (uint32_t)lrint((double)p * 16777216.0), .key = mix64(key)};
    parfor((int)((n + DROP_BLOCK - 1) / DROP_BLOCK), drop_mask_range, &d);
}

static void drop_apply_range(void *p, int lo, int hi) {
    drop_ctx *d = p;
    size_t a = (size_t)lo * DROP_BLOCK, b = (size_t)hi * DROP_BLOCK;
    if (b > d->n) b = d->n;
    for (size_t i = a; i < b; i++) d->x[i] = d->cmask[i] ? d->x[i] * d->dscale : 0.0f;
}

void dropout_apply(float *x, const uint8_t *mask, float dscale, size_t n) {
    drop_ctx d = {.cmask = mask, .x = x, .n = n, .dscale = dscale};
    parfor((int)((n + DROP_BLOCK - 1) / DROP_BLOCK), drop_apply_range, &d);
}

/* ---------------------------------------------------------------- softmax cross-entropy */

typedef struct {
    float *loss, *logits;
    const int *tgt;
    int V;
    float scale;
} xent_ctx;

static void xent_range(void *p, int lo, int hi) {
    xent_ctx *x = p;
    int V = x->V;
    for (int r = lo; r < hi; r++) {
        float *l = x->logits + (size_t)r * V;
        float mx = -INFINITY;
        for (int v = 0; v < V; v++) mx = l[v] > mx ? l[v] : mx;
        float lt = l[x->tgt[r]];
        double sum = 0;
        if (x->scale != 0) {
            for (int v = 0; v < V; v++) {
                float e = expf(l[v] - mx);
                l[v] = e;
                sum += e;
            }
            float k = (float)(x->scale / sum);
            for (int v = 0; v < V; v++) l[v] *= k;
            l[x->tgt[r]] -= x->scale;
        } else {
            for (int v = 0; v < V; v++) sum += expf(l[v] - mx);
        }
        x->loss[r] = (float)(log(sum) + mx - lt);
    }
}

void crossentropy_forward_backward(float *loss, float *logits, const int *tgt, int M, int V, float scale) {
    xent_ctx x = {loss, logits, tgt, V, scale};
    parfor(M, xent_range, &x);
}

/* ---------------------------------------------------------------- exact GELU (erf), embeddings */

typedef struct {
    float *out;
    const float *in, *dout;
    size_t n;
} gerf_ctx;

/* 0.5 x (1 + erf(x / sqrt 2)) in double, rounded once (nn.GELU()) */
static void gerf_fwd_range(void *p, int lo, int hi) {
    gerf_ctx *x = p;
    size_t a = (size_t)lo * GELU_BLOCK, b = (size_t)hi * GELU_BLOCK;
    if (b > x->n) b = x->n;
    for (size_t i = a; i < b; i++) {
        double v = x->in[i];
        x->out[i] = (float)(0.5 * v * (1.0 + erf(v * M_SQRT1_2)));
    }
}

/* d/dx x Phi(x) = Phi(x) + x phi(x) */
static void gerf_bwd_range(void *p, int lo, int hi) {
    gerf_ctx *x = p;
    size_t a = (size_t)lo * GELU_BLOCK, b = (size_t)hi * GELU_BLOCK;
    if (b > x->n) b = x->n;
    for (size_t i = a; i < b; i++) {
        double v = x->in[i], cdf = 0.5 * (1.0 + erf(v * M_SQRT1_2)), pdf = exp(-0.5 * v * v) * 0.3989422804014327;
        x->out[i] = (float)(x->dout[i] * (cdf + v * pdf));
    }
}

void gelu_erf_forward_naive(float *out, const float *in, size_t n) {
    gerf_ctx x = {out, in, NULL, n};
    gerf_fwd_range(&x, 0, (int)((n + GELU_BLOCK - 1) / GELU_BLOCK));
}

void gelu_erf_backward_naive(float *din, const float *dout, const float *in, size_t n) {
    gerf_ctx x = {din, in, dout, n};
    gerf_bwd_range(&x, 0, (int)((n + GELU_BLOCK - 1) / GELU_BLOCK));
}

/* the vectorised float kernels of nn.c on blocks of GELU_BLOCK values (a multiple of 16: a value's bits do not
 * depend on the thread count) */
static void gvec_fwd_range(void *p, int lo, int hi) {
    gerf_ctx *x = p;
    size_t a = (size_t)lo * GELU_BLOCK, b = (size_t)hi * GELU_BLOCK;
    if (b > x->n) b = x->n;
    if (x->out != x->in) memcpy(x->out + a, x->in + a, (b - a) * sizeof(float));
    gelu_erf_inplace(x->out + a, b - a);
}

static void gvec_bwd_range(void *p, int lo, int hi) {
    gerf_ctx *x = p;
    size_t a = (size_t)lo * GELU_BLOCK, b = (size_t)hi * GELU_BLOCK;
    if (b > x->n) b = x->n;
    gelu_erf_grad(x->out + a, x->dout + a, x->in + a, b - a);
}

void gelu_erf_forward(float *out, const float *in, size_t n) {
    gerf_ctx x = {out, in, NULL, n};
    parfor((int)((n + GELU_BLOCK - 1) / GELU_BLOCK), gvec_fwd_range, &x);
}

void gelu_erf_backward(float *din, const float *dout, const float *in, size_t n) {
    gerf_ctx x = {din, in, dout, n};
    parfor((int)((n + GELU_BLOCK - 1) / GELU_BLOCK), gvec_bwd_range, &x);
}

void embedding_backward(float *dW, const float *dout, const int32_t *ids, int N, int C) {
    for (int n = 0; n < N; n++) {
        float *d = dW + (size_t)ids[n] * C;
        const float *g = dout + (size_t)n * C;
        for (int c = 0; c < C; c++) d[c] += g[c];
    }
}
