/* kernels_conv.c - convolutional layers of the shared kernel layer (see
 * kernels.h): 3x3 convolution (im2col + sgemm), batch normalisation (train
 * and eval), ReLU, 2x2 average pooling, CNN14's time/frequency head pooling,
 * nn.Linear's backward pass and L2 normalisation; each with its naive twin
 * where the fast one is more than a loop. */
#include "kernels.h"

#include "gemm.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "parfor.h"
#include "util.h"

/* Threads (lib/parfor.h): every kernel here is cut into units by size only
 * (a channel, a row of the pooled planes, a fixed chunk of elements), and
 * each unit is computed whole by one thread in the serial order, so the
 * results are the same bits at any thread count. parfor is not reentrant:
 * call these from the main thread (a single unit, e.g. lib/cnn14.c's
 * avgpool2x2_forward(R = 1) inside its own pool's tasks, runs inline). */
#define EW_CHUNK 16384 /* element-wise kernels: floats a unit */
static int ew_units(size_t n) { return (int)((n + EW_CHUNK - 1) / EW_CHUNK); }


/* ================================================================ convolution 3x3 */

void im2col3x3_rows(float *cols, const float *in, int c0, int c1, int T, int F, int r0, int nr) {
    size_t P = (size_t)nr * F;
    for (int ci = c0; ci < c1; ci++)
        for (int kh = 0; kh < 3; kh++) {
            int lo = r0 + kh - 1, hi = lo + nr;           /* source rows wanted */
            int a = lo < 0 ? 0 : lo, b = hi > T ? T : hi; /* source rows that exist */
            const float *src = in + ((size_t)ci * T + a) * F;
            size_t pre = (size_t)(a - lo) * F, n = b > a ? (size_t)(b - a) * F : 0, post = P - pre - n;
            for (int kw = 0; kw < 3; kw++) {
                float *d = cols + ((size_t)ci * 9 + kh * 3 + kw) * P;
                memset(d, 0, pre * sizeof(float));
                memset(d + pre + n, 0, post * sizeof(float));
                if (!n) continue;
                float *dd = d + pre;
                if (kw == 1) {
                    memcpy(dd, src, n * sizeof(float));
                } else if (kw == 0) { /* dd[j] = src[j - 1]; column 0 is padding */
                    memcpy(dd + 1, src, (n - 1) * sizeof(float));
                    for (size_t j = 0; j < n; j += F) dd[j] = 0;
                } else { /* dd[j] = src[j + 1]; column F-1 is padding */
                    memcpy(dd, src + 1, (n - 1) * sizeof(float));
                    for (size_t j = F - 1; j < n; j += F) dd[j] = 0;
                }
            }
        }
}


typedef struct {
    float *out;
    const float *in;
    int T, F;
} conv_ctx;

static void im2col_units(void *p, int lo, int hi) {
    conv_ctx *x = p;
    im2col3x3_rows(x->out, x->in, lo, hi, x->T, x->F, 0, x->T);
}

/* one input channel a unit: pure copies */
void im2col3x3(float *cols, const float *in, int Cin, int T, int F) {
    conv_ctx x = {cols, in, T, F};
    parfor(Cin, im2col_units, &x);
}

static void col2im_channels(float *din, const float *dcols, int c0, int c1, int T, int F) {
    size_t P = (size_t)T * F;
    for (int ci = c0; ci < c1; ci++)
        for (int kh = 0; kh < 3; kh++)
            for (int kw = 0; kw < 3; kw++) {
                const float *d = dcols + ((size_t)ci * 9 + kh * 3 + kw) * P;
                for (int t = 0; t < T; t++) {
                    int tt = t + kh - 1;
                    if (tt < 0 || tt >= T) continue;
                    const float *dr = d + (size_t)t * F;
                    float *s = din + ((size_t)ci * T + tt) * F;
                    int f0 = kw == 0 ? 1 : 0, f1 = kw == 2 ? F - 1 : F;
                    for (int f = f0; f < f1; f++) s[f + kw - 1] += dr[f];
                }
            }
}

static void col2im_units(void *p, int lo, int hi) {
    conv_ctx *x = p;
    col2im_channels(x->out, x->in, lo, hi, x->T, x->F);
}

/* one input channel a unit: channel ci of din gets only rows ci*9.. of dcols,
 * added in the serial order */
void col2im3x3_add(float *din, const float *dcols, int Cin, int T, int F) {
    conv_ctx x = {din, dcols, T, F};
    parfor(Cin, col2im_units, &x);
}

size_t conv3x3_scratch(int Cin, int T, int F) { return (size_t)Cin * 9 * T * F; }

void conv3x3_forward(float *out, float *cols, const float *in, const float *w, int B, int Cin, int Cout, int T,
                     int F) {
    int P = T * F, K = Cin * 9;
    for (int b = 0; b < B; b++) {
        im2col3x3(cols, in + (size_t)b * Cin * P, Cin, T, F);
        /* out_b[Cout, P] = w[Cout, K] @ cols[K, P] */
        gemm(CblasNoTrans, CblasNoTrans, Cout, P, K, 1.0f, w, K, cols, P, 0.0f,
                    out + (size_t)b * Cout * P, P);
    }
}

void conv3x3_forward_naive(float *out, const float *in, const float *w, int B, int Cin, int Cout, int T, int F) {
    for (int b = 0; b < B; b++)
        for (int co = 0; co < Cout; co++)
            for (int t = 0; t < T; t++)
                for (int f = 0; f < F; f++) {
                    double acc = 0;
                    for (int ci = 0; ci < Cin; ci++)
                        for (int kh = 0; kh < 3; kh++) {
                            int tt = t + kh - 1;
                            if (tt < 0 || tt >= T) continue;
                            for (int kw = 0; kw < 3; kw++) {
                                int ff = f + kw - 1;
                                if (ff < 0 || ff >= F) continue;
                                acc += (double)w[(((size_t)co * Cin + ci) * 3 + kh) * 3 + kw] *
                                       in[(((size_t)b * Cin + ci) * T + tt) * F + ff];
                            }
                        }
                    out[(((size_t)b * Cout + co) * T + t) * F + f] = (float)acc;
                }
}

void conv3x3_backward(float *din, float *dw, float *cols, const float *dout, const float *in, const float *w, int B,
                      int Cin, int Cout, int T, int F) {
    int P = T * F, K = Cin * 9;
    for (int b = 0; b < B; b++) {
        const float *g = dout + (size_t)b * Cout * P;
        im2col3x3(cols, in + (size_t)b * Cin * P, Cin, T, F);
        /* dw[Cout, K] += g[Cout, P] @ cols[K, P]^T */
        gemm(CblasNoTrans, CblasTrans, Cout, K, P, 1.0f, g, P, cols, P, 1.0f, dw, K);
        if (!din) continue;
        /* dcols[K, P] = w[Cout, K]^T @ g[Cout, P], then folded back */
        gemm(CblasTrans, CblasNoTrans, K, P, Cout, 1.0f, w, K, g, P, 0.0f, cols, P);
        float *d = din + (size_t)b * Cin * P;
        memset(d, 0, (size_t)Cin * P * sizeof(float));
        col2im3x3_add(d, cols, Cin, T, F);
    }
}

void conv3x3_backward_naive(float *din, float *dw, const float *dout, const float *in, const float *w, int B, int Cin,
                            int Cout, int T, int F) {
    for (int co = 0; co < Cout; co++)
        for (int ci = 0; ci < Cin; ci++)
            for (int kh = 0; kh < 3; kh++)
                for (int kw = 0; kw < 3; kw++) {
                    double acc = 0;
                    for (int b = 0; b < B; b++)
                        for (int t = 0; t < T; t++) {
                            int tt = t + kh - 1;
                            if (tt < 0 || tt >= T) continue;
                            for (int f = 0; f < F; f++) {
                                int ff = f + kw - 1;
                                if (ff < 0 || ff >= F) continue;
                                acc += (double)dout[(((size_t)b * Cout + co) * T + t) * F + f] *
                                       in[(((size_t)b * Cin + ci) * T + tt) * F + ff];
                            }
                        }
                    dw[(((size_t)co * Cin + ci) * 3 + kh) * 3 + kw] += (float)acc;
                }
    if (!din) return;
    for (int b = 0; b < B; b++)
        for (int ci = 0; ci < Cin; ci++)
            for (int tt = 0; tt < T; tt++)
                for (int ff = 0; ff < F; ff++) {
                    double acc = 0;
                    for (int co = 0; co < Cout; co++)
                        for (int kh = 0; kh < 3; kh++) {
                            int t = tt - kh + 1;
                            if (t < 0 || t >= T) continue;
                            for (int kw = 0; kw < 3; kw++) {
                                int f = ff - kw + 1;
                                if (f < 0 || f >= F) continue;
                                acc += (double)w[(((size_t)co * Cin + ci) * 3 + kh) * 3 + kw] *
                                       dout[(((size_t)b * Cout + co) * T + t) * F + f];
                            }
                        }
                    din[(((size_t)b * Cin + ci) * T + tt) * F + ff] = (float)acc;
                }
}

/* ================================================================ batch normalisation */

#define BN_AT(x, o, c, i) ((x)[((size_t)(o) * C + (c)) * S + (i)])

/* mean and biased variance of channel c, in double: ATen's
 * batch_norm_cpu_collect_stats (accscalar_t is double for float on CPU) */
static void bn_stats(double *mean, double *var, const float *in, int O, int C, int S, int c) {
    double s = 0, v = 0;
    for (int o = 0; o < O; o++)
        for (int i = 0; i < S; i++) s += BN_AT(in, o, c, i);
    double n = (double)O * S, m = s / n;
    for (int o = 0; o < O; o++)
        for (int i = 0; i < S; i++) {
            double d = BN_AT(in, o, c, i) - m;
            v += d * d;
        }
    *mean = m;
    *var = v / n;
}

static void bn_running(float *rm, float *rv, int c, double m, double var, double n, float momentum) {
    if (rm) rm[c] = (float)((1.0 - momentum) * rm[c] + momentum * m);
    if (rv) rv[c] = (float)((1.0 - momentum) * rv[c] + momentum * (n > 1 ? var * n / (n - 1) : var));
}

/* y = x * a + s over channel c, in float */
static void bn_affine(float *out, const float *in, int O, int C, int S, int c, float a, float s) {
    for (int o = 0; o < O; o++)
        for (int i = 0; i < S; i++) BN_AT(out, o, c, i) = BN_AT(in, o, c, i) * a + s;
}

/* Synchronised BatchNorm (clap-train under MPI: each rank holds a slice of
 * the batch): the per-channel sums, and the count, are added over the ranks
 * by bn_reduce before they are used, so every rank normalises with the whole
 * batch's statistics, as one process with the whole batch would (two passes,
 * as bn_stats). The backward pass adds sum(dout) and sum((x - mean) dout)
 * the same way for din, but dw and db get this rank's own share: the trainer
 * sums the gradients over the ranks afterwards. Not set: the code above. */
static void (*bn_reduce)(double *x, size_t n);

void batchnorm_set_reduce(void (*fn)(double *x, size_t n)) { bn_reduce = fn; }

static void bn_forward_train_sync(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                  const float *in, const float *w, const float *b, int O, int C, int S, float eps,
                                  float momentum) {
    double *acc = xcalloc((size_t)C + 1, sizeof(double));
    for (int c = 0; c < C; c++)
        for (int o = 0; o < O; o++)
            for (int i = 0; i < S; i++) acc[c] += BN_AT(in, o, c, i);
    acc[C] = (double)O * S;
    bn_reduce(acc, (size_t)C + 1);
    double n = acc[C];
    double *m = xmalloc((size_t)C * sizeof(double));
    for (int c = 0; c < C; c++) m[c] = acc[c] / n, acc[c] = 0;
    for (int c = 0; c < C; c++)
        for (int o = 0; o < O; o++)
            for (int i = 0; i < S; i++) {
                double d = BN_AT(in, o, c, i) - m[c];
                acc[c] += d * d;
            }
    bn_reduce(acc, (size_t)C);
    for (int c = 0; c < C; c++) {
        double var = acc[c] / n;
        float mf = (float)m[c], rs = (float)(1.0 / sqrt(var + eps));
        float a = rs * w[c], s = b[c] - mf * a;
        bn_affine(out, in, O, C, S, c, a, s);
        mean[c] = mf;
        rstd[c] = rs;
        bn_running(running_mean, running_var, c, m[c], var, n, momentum);
    }
    free(m), free(acc);
}

static void bn_backward_sync(float *din, float *dw, float *db, const float *dout, const float *in, const float *mean,
                             const float *rstd, const float *w, int O, int C, int S) {
    double *acc = xcalloc(2 * (size_t)C + 1, sizeof(double)); /* sum, dot of each channel; the count */
    for (int c = 0; c < C; c++) {
        float mf = mean[c];
        for (int o = 0; o < O; o++)
            for (int i = 0; i < S; i++) {
                float g = BN_AT(dout, o, c, i);
                acc[c] += g;
                acc[C + c] += (double)(BN_AT(in, o, c, i) - mf) * g;
            }
        dw[c] += (float)(acc[C + c] * rstd[c]);
        db[c] += (float)acc[c];
    }
    acc[2 * C] = (double)O * S;
    bn_reduce(acc, 2 * (size_t)C + 1);
    double n = acc[2 * C];
    for (int c = 0; c < C; c++) {
        float mf = mean[c], rs = rstd[c];
        float k = (float)(acc[C + c] * rs * rs / n), gm = (float)(acc[c] / n), ws = rs * w[c];
        for (int o = 0; o < O; o++)
            for (int i = 0; i < S; i++) {
                float x = BN_AT(in, o, c, i), g = BN_AT(dout, o, c, i);
                BN_AT(din, o, c, i) = (g - gm - (x - mf) * k) * ws;
            }
    }
    free(acc);
}

/* one channel a unit */
typedef struct {
    float *out, *mean, *rstd, *rm, *rv;
    const float *in, *w, *b;
    float *dw, *db;
    const float *dout;
    int O, C, S;
    float eps, momentum;
} bn_ctx;

static void bn_forward_units(void *p, int lo, int hi);
static void bn_backward_units(void *p, int lo, int hi);

void batchnorm_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                             const float *in, const float *w, const float *b, int O, int C, int S, float eps,
                             float momentum) {
    if (bn_reduce) {
        bn_forward_train_sync(out, mean, rstd, running_mean, running_var, in, w, b, O, C, S, eps, momentum);
        return;
    }
    bn_ctx x = {out, mean, rstd, running_mean, running_var, in, w, b, NULL, NULL, NULL, O, C, S, eps, momentum};
    parfor(C, bn_forward_units, &x);
}

static void bn_forward_units(void *p, int lo, int hi) {
    bn_ctx *x = p;
    float *out = x->out, *mean = x->mean, *rstd = x->rstd, *running_mean = x->rm, *running_var = x->rv;
    const float *in = x->in, *w = x->w, *b = x->b;
    int O = x->O, C = x->C, S = x->S;
    float eps = x->eps, momentum = x->momentum;
    for (int c = lo; c < hi; c++) {
        double m, var;
        bn_stats(&m, &var, in, O, C, S, c);
        float mf = (float)m, rs = (float)(1.0 / sqrt(var + eps));
        float a = rs * w[c], s = b[c] - mf * a;
        bn_affine(out, in, O, C, S, c, a, s);
        mean[c] = mf;
        rstd[c] = rs;
        bn_running(running_mean, running_var, c, m, var, (double)O * S, momentum);
    }
}

void batchnorm_forward_train_naive(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                   const float *in, const float *w, const float *b, int O, int C, int S, float eps,
                                   float momentum) {
    for (int c = 0; c < C; c++) {
        double n = (double)O * S, s = 0, v = 0;
        for (size_t k = 0; k < (size_t)O * S; k++) s += BN_AT(in, k / S, c, k % S);
        double m = s / n;
        for (size_t k = 0; k < (size_t)O * S; k++) v += (BN_AT(in, k / S, c, k % S) - m) * (BN_AT(in, k / S, c, k % S) - m);
        double r = 1.0 / sqrt(v / n + eps);
        for (size_t k = 0; k < (size_t)O * S; k++)
            BN_AT(out, k / S, c, k % S) = (float)((BN_AT(in, k / S, c, k % S) - m) * r * w[c] + b[c]);
        mean[c] = (float)m;
        rstd[c] = (float)r;
        bn_running(running_mean, running_var, c, m, v / n, n, momentum);
    }
}

void batchnorm_forward_eval_naive(float *out, const float *in, const float *w, const float *b,
                                  const float *running_mean, const float *running_var, int O, int C, int S, float eps) {
    for (int c = 0; c < C; c++) {
        double inv = 1.0 / sqrt((double)running_var[c] + eps);
        for (int o = 0; o < O; o++)
            for (int i = 0; i < S; i++)
                BN_AT(out, o, c, i) = (float)(((double)BN_AT(in, o, c, i) - running_mean[c]) * inv * w[c] + b[c]);
    }
}

static void bn_eval_units(void *p, int lo, int hi) {
    bn_ctx *x = p;
    for (int c = lo; c < hi; c++) {
        float a = (float)(1.0 / sqrt((double)x->rv[c] + x->eps)) * x->w[c];
        bn_affine(x->out, x->in, x->O, x->C, x->S, c, a, x->b[c] - x->rm[c] * a);
    }
}

void batchnorm_forward_eval(float *out, const float *in, const float *w, const float *b, const float *running_mean,
                            const float *running_var, int O, int C, int S, float eps) {
    bn_ctx x = {out, NULL, NULL, (float *)running_mean, (float *)running_var, in, w, b, NULL, NULL, NULL, O, C, S, eps, 0};
    parfor(C, bn_eval_units, &x);
}

/* ATen's batch_norm_backward_cpu_template: sum = sum(dout), dotp = sum((x -
 * mean) dout) in double; din = (dout - sum/n - (x - mean) dotp rstd^2 / n)
 * rstd w */
void batchnorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *mean,
                        const float *rstd, const float *w, int O, int C, int S) {
    if (bn_reduce) {
        bn_backward_sync(din, dw, db, dout, in, mean, rstd, w, O, C, S);
        return;
    }
    bn_ctx x = {din, (float *)mean, (float *)rstd, NULL, NULL, in, w, NULL, dw, db, dout, O, C, S, 0, 0};
    parfor(C, bn_backward_units, &x);
}

static void bn_backward_units(void *p, int lo, int hi) {
    bn_ctx *q = p;
    float *din = q->out, *dw = q->dw, *db = q->db;
    const float *dout = q->dout, *in = q->in, *mean = q->mean, *rstd = q->rstd, *w = q->w;
    int O = q->O, C = q->C, S = q->S;
    double n = (double)O * S;
    for (int c = lo; c < hi; c++) {
        double s = 0, dot = 0;
        float mf = mean[c], rs = rstd[c];
        for (int o = 0; o < O; o++)
            for (int i = 0; i < S; i++) {
                float g = BN_AT(dout, o, c, i);
                s += g;
                dot += (double)(BN_AT(in, o, c, i) - mf) * g;
            }
        float k = (float)(dot * rs * rs / n), gm = (float)(s / n), ws = rs * w[c];
        for (int o = 0; o < O; o++)
            for (int i = 0; i < S; i++) {
                float x = BN_AT(in, o, c, i), g = BN_AT(dout, o, c, i);
                BN_AT(din, o, c, i) = (g - gm - (x - mf) * k) * ws;
            }
        dw[c] += (float)(dot * rs);
        db[c] += (float)s;
    }
}

void batchnorm_backward_naive(float *din, float *dw, float *db, const float *dout, const float *in, const float *mean,
                              const float *rstd, const float *w, int O, int C, int S) {
    double n = (double)O * S;
    for (int c = 0; c < C; c++) {
        double s = 0, sx = 0;
        for (size_t k = 0; k < (size_t)O * S; k++) {
            double g = BN_AT(dout, k / S, c, k % S), xh = (BN_AT(in, k / S, c, k % S) - (double)mean[c]) * rstd[c];
            s += g;
            sx += g * xh;
        }
        for (size_t k = 0; k < (size_t)O * S; k++) {
            double g = BN_AT(dout, k / S, c, k % S), xh = (BN_AT(in, k / S, c, k % S) - (double)mean[c]) * rstd[c];
            BN_AT(din, k / S, c, k % S) = (float)((double)w[c] * rstd[c] * (g - s / n - xh * sx / n));
        }
        dw[c] += (float)sx;
        db[c] += (float)s;
    }
}

/* ================================================================ ReLU */

typedef struct {
    float *o;
    const float *a, *b;
    size_t n;
} ew_ctx;

static void relu_fw_units(void *p, int lo, int hi) {
    ew_ctx *x = p;
    size_t i0 = (size_t)lo * EW_CHUNK, i1 = (size_t)hi * EW_CHUNK < x->n ? (size_t)hi * EW_CHUNK : x->n;
    for (size_t i = i0; i < i1; i++) x->o[i] = x->a[i] > 0 ? x->a[i] : 0.0f;
}

static void relu_bw_units(void *p, int lo, int hi) {
    ew_ctx *x = p;
    size_t i0 = (size_t)lo * EW_CHUNK, i1 = (size_t)hi * EW_CHUNK < x->n ? (size_t)hi * EW_CHUNK : x->n;
    for (size_t i = i0; i < i1; i++) x->o[i] = x->b[i] > 0 ? x->a[i] : 0.0f;
}

void relu_forward(float *out, const float *in, size_t n) {
    ew_ctx x = {out, in, NULL, n};
    parfor(ew_units(n), relu_fw_units, &x);
}

void relu_backward(float *din, const float *dout, const float *out, size_t n) {
    ew_ctx x = {din, dout, out, n};
    parfor(ew_units(n), relu_bw_units, &x);
}

/* ================================================================ pooling */

/* one plane (a channel of a clip) a unit */
typedef struct {
    float *o;
    const float *i;
    int T, F;
} pool_ctx;

static void pool_fw_units(void *p, int lo, int hi) {
    pool_ctx *x = p;
    int T = x->T, F = x->F, To = T / 2, Fo = F / 2;
    const float *in = x->i;
    float *out = x->o;
    for (int r = lo; r < hi; r++)
        for (int i = 0; i < To; i++) {
            const float *a = in + ((size_t)r * T + 2 * i) * F, *a2 = a + F;
            float *o = out + ((size_t)r * To + i) * Fo;
            for (int j = 0; j < Fo; j++) {
                double s = (double)a[2 * j] + a[2 * j + 1];
                s += a2[2 * j];
                s += a2[2 * j + 1];
                o[j] = (float)(s / 4);
            }
        }
}

void avgpool2x2_forward(float *out, const float *in, int R, int T, int F) {
    pool_ctx x = {out, in, T, F};
    parfor(R, pool_fw_units, &x);
}

static void pool_bw_units(void *p, int lo, int hi) {
    pool_ctx *x = p;
    int T = x->T, F = x->F, To = T / 2, Fo = F / 2;
    const float *dout = x->i;
    float *din = x->o;
    memset(din + (size_t)lo * T * F, 0, (size_t)(hi - lo) * T * F * sizeof(float));
    for (int r = lo; r < hi; r++)
        for (int i = 0; i < To; i++) {
            float *a = din + ((size_t)r * T + 2 * i) * F, *a2 = a + F;
            const float *g = dout + ((size_t)r * To + i) * Fo;
            for (int j = 0; j < Fo; j++) {
                float v = g[j] / 4;
                a[2 * j] = a[2 * j + 1] = a2[2 * j] = a2[2 * j + 1] = v;
            }
        }
}

void avgpool2x2_backward(float *din, const float *dout, int R, int T, int F) {
    pool_ctx x = {din, dout, T, F};
    parfor(R, pool_bw_units, &x);
}

void timefreq_pool_forward(float *feat, int *argmax, const float *in, int N, int T, int F) {
    for (int n = 0; n < N; n++) {
        float mx = -INFINITY;
        int am = 0;
        double tot = 0;
        for (int t = 0; t < T; t++) {
            const float *r = in + ((size_t)n * T + t) * F;
            double s = 0;
            for (int f = 0; f < F; f++) s += r[f];
            float mf = (float)(s / F);
            if (mf > mx || t == 0) mx = mf, am = t;
            tot += mf;
        }
        feat[n] = mx + (float)(tot / T);
        if (argmax) argmax[n] = am;
    }
}

void timefreq_pool_backward(float *din, const float *dfeat, const int *argmax, int N, int T, int F) {
    for (int n = 0; n < N; n++) {
        float gmean = dfeat[n] / T;
        for (int t = 0; t < T; t++) {
            float g = (t == argmax[n] ? dfeat[n] + gmean : gmean) / F;
            float *r = din + ((size_t)n * T + t) * F;
            for (int f = 0; f < F; f++) r[f] = g;
        }
    }
}

/* ================================================================ linear */

void linear_backward(float *din, float *dW, float *db, const float *dout, const float *in, const float *W, int N,
                     int C, int OC) {
    if (N <= 0) return;
    if (din) gemm(CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, W, C, 0.0f, din, C);
    gemm(CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, in, C, 1.0f, dW, C);
    if (db) bias_backward(db, dout, N, OC);
}

void linear_backward_naive(float *din, float *dW, float *db, const float *dout, const float *in, const float *W,
                           int N, int C, int OC) {
    if (din)
        for (int n = 0; n < N; n++)
            for (int c = 0; c < C; c++) {
                double a = 0;
                for (int o = 0; o < OC; o++) a += (double)dout[(size_t)n * OC + o] * W[(size_t)o * C + c];
                din[(size_t)n * C + c] = (float)a;
            }
    for (int o = 0; o < OC; o++)
        for (int c = 0; c < C; c++) {
            double a = 0;
            for (int n = 0; n < N; n++) a += (double)dout[(size_t)n * OC + o] * in[(size_t)n * C + c];
            dW[(size_t)o * C + c] += (float)a;
        }
    if (db)
        for (int o = 0; o < OC; o++) {
            double a = 0;
            for (int n = 0; n < N; n++) a += dout[(size_t)n * OC + o];
            db[o] += (float)a;
        }
}

/* ================================================================ L2 normalisation */

void l2norm_forward(float *out, float *norm, const float *in, int N, int D) {
    for (int n = 0; n < N; n++) {
        const float *x = in + (size_t)n * D;
        double ss = 0;
        for (int d = 0; d < D; d++) ss += (double)x[d] * x[d];
        float nr = (float)sqrt(ss);
        if (!(nr > 1e-12f)) nr = 1e-12f;
        for (int d = 0; d < D; d++) out[(size_t)n * D + d] = x[d] / nr;
        if (norm) norm[n] = nr;
    }
}

void l2norm_backward(float *din, const float *dout, const float *out, const float *norm, int N, int D) {
    for (int n = 0; n < N; n++) {
        const float *y = out + (size_t)n * D, *g = dout + (size_t)n * D;
        float *dx = din + (size_t)n * D;
        if (norm[n] <= 1e-12f) { /* clamp_min: the norm does not depend on x */
            for (int d = 0; d < D; d++) dx[d] = g[d] / norm[n];
            continue;
        }
        double dot = 0;
        for (int d = 0; d < D; d++) dot += (double)y[d] * g[d];
        float k = (float)dot;
        for (int d = 0; d < D; d++) dx[d] = (g[d] - y[d] * k) / norm[n];
    }
}
