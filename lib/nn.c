/* nn.c - layer kernels (see nn.h). */
#include "nn.h"

#include "gemm.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

void openblas_set_num_threads(int);

void linear_forward(float *out, const float *in, const float *W, const float *b, int N, int C, int OC) {
    if (N <= 0 || OC <= 0) return;
    if (b) {
        for (int i = 0; i < N; i++) memcpy(out + (size_t)i * OC, b, (size_t)OC * sizeof(float));
    }
    gemm(CblasNoTrans, CblasTrans, N, OC, C, 1.0f, in, C, W, C, b ? 1.0f : 0.0f, out, OC);
}

void linear_forward_naive(float *out, const float *in, const float *W, const float *b, int N, int C, int OC) {
    for (int i = 0; i < N; i++)
        for (int o = 0; o < OC; o++) {
            double acc = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++) acc += (double)in[(size_t)i * C + c] * W[(size_t)o * C + c];
            out[(size_t)i * OC + o] = (float)acc;
        }
}

void relu_inplace(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > 0 ? x[i] : 0.0f;
}

void l2_normalize_rows(float *x, int N, int C) {
    for (int i = 0; i < N; i++) {
        float *r = x + (size_t)i * C;
        double ss = 0;
        for (int c = 0; c < C; c++) ss += (double)r[c] * r[c];
        double nrm = sqrt(ss);
        float inv = (float)(1.0 / (nrm > 1e-12 ? nrm : 1e-12));
        for (int c = 0; c < C; c++) r[c] *= inv;
    }
}

void layernorm_forward(float *out, const float *in, const float *w, const float *b, int N, int C, float eps) {
    for (int i = 0; i < N; i++) {
        const float *x = in + (size_t)i * C;
        float *y = out + (size_t)i * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) {
            double d = x[c] - m;
            v += d * d;
        }
        v /= C;
        float rstd = (float)(1.0 / sqrt(v + eps)), mf = (float)m;
        for (int c = 0; c < C; c++) y[c] = (x[c] - mf) * rstd * w[c] + b[c];
    }
}

void layernorm_forward_naive(float *out, const float *in, const float *w, const float *b, int N, int C, float eps) {
    for (int i = 0; i < N; i++) {
        const float *x = in + (size_t)i * C;
        double m = 0, v = 0;
        for (int c = 0; c < C; c++) m += x[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (x[c] - m) * (x[c] - m);
        v /= C;
        for (int c = 0; c < C; c++) out[(size_t)i * C + c] = (float)((x[c] - m) / sqrt(v + eps) * w[c] + b[c]);
    }
}

/* GELU with the exact erf (HF "gelu" = torch.nn.functional.gelu, approximate
 * 'none'): gelu(x) = x * 0.5 * (1 + erf(x / sqrt 2)), written as PyTorch's
 * GeluKernel writes it. glibc's erf costs ~15 ns a value (0.5 s for a batch
 * of 64 captions); this vectorised float version ~1 ns:
 *   |z| < 0.875:  1 + erf(z) = 1 + z P(z^2)                 (P degree 5)
 *   |z| >= 0.875: erfc(u) = exp(-u^2) G(1 / (1 + u)),        (G degree 8, u = |z| <= 9)
 *                 1 + erf(z) = 2 - erfc(u) for z > 0, erfc(u) for z < 0
 * P and G are least-squares fits (relative error, float64, 3000 Chebyshev
 * nodes) to mpmath's erf(z)/z on [0, 0.875] and erfc(u) exp(u^2) on
 * [0.875, 9]. Against mpmath over 2^24 points in [-12, 12]: |gelu - exact|
 * <= 3.9e-7 (under 1 ulp of gelu); 1 + erf(z) is within 4.3e-7 relative for
 * x > -1, 1.4e-6 for -4 < x < -1 (PyTorch's vectorised erf, Abramowitz and
 * Stegun 7.1.26, is within 1.5e-7 absolute, so 1 + erf loses all accuracy
 * there). No fused operations: the same bits on every machine. */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

#define VSEL(m, a, b) ((v16f)(((v16i)(a) & (m)) | ((v16i)(b) & ~(m))))

/* exp(y) for y in [-87, 0] (callers clamp): y = n ln2 + r (Cody-Waite), Taylor degree 7 in |r| <= ln2 / 2
 * (truncation < 6e-9), times 2^n built in the exponent bits. Pointers, not vector arguments: no ABI issue. */
static inline __attribute__((always_inline)) void exp16(v16f *out, const v16f *yp) {
    v16f y = *yp;
    v16f n = (y * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    v16f r = (y - n * 0.693145751953125f) - n * 1.42860677e-6f;
    v16f e = r * (1.0f / 5040) + 1.0f / 720;
    e = e * r + 1.0f / 120;
    e = e * r + 1.0f / 24;
    e = e * r + 1.0f / 6;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    *out = e * (v16f)((__builtin_convertvector(n, v16i) + 127) << 23);
}

/* 1 + erf(z) of z = x / sqrt 2 (x * M_SQRT1_2 in float, as PyTorch) */
static inline __attribute__((always_inline)) void erf1p16(v16f *out, const v16f *zp) {
    v16f z = *zp;
    v16f u = (v16f)((v16i)z & 0x7fffffff);
    v16f s = z * z;
    v16f q = s * -0.000623515574f + 0.00503873779f;
    q = q * s - 0.0267963056f;
    q = q * s + 0.112826079f;
    q = q * s - 0.376125693f;
    q = q * s + 1.12837911f;
    v16f small = 1.0f + z * q; /* 1 + erf(z), |z| < 0.875 */
    v16f lo = (v16f){0} + 0.875f, hi = (v16f){0} + 9.0f;
    v16f uc = VSEL(u < lo, lo, VSEL(u > hi, hi, u));
    v16f t = 1.0f / (1.0f + uc);
    v16f g = t * 0.780107737f - 2.82607865f;
    g = g * t + 4.0418644f;
    g = g * t - 2.52159238f;
    g = g * t + 0.185544178f;
    g = g * t + 0.206939325f;
    g = g * t + 0.571582139f;
    g = g * t + 0.563783348f;
    g = g * t + 9.52616028e-06f;
    v16f y = -(uc * uc), e; /* in [-81, -0.76] */
    exp16(&e, &y);
    v16f ec = e * g; /* erfc(uc) */
    v16f zero = {0};
    v16f large = VSEL(z >= zero, 2.0f - ec, ec); /* 1 + erf(z), |z| >= 0.875 */
    *out = VSEL(u < lo, small, large);
}

/* gelu of p[0..16) in place */
static inline __attribute__((always_inline)) void gelu16(float *p) {
    v16f x, e;
    memcpy(&x, p, sizeof x);
    v16f z = x * 0.707106781f;
    erf1p16(&e, &z);
    v16f out = x * 0.5f * e;
    memcpy(p, &out, sizeof out);
}

/* d[0..16) = g * (Phi(x) + x phi(x)) of x[0..16), g[0..16) (d may be g) */
static inline __attribute__((always_inline)) void gelu_grad16(float *d, const float *g, const float *xp) {
    v16f x, gv, e, p;
    memcpy(&x, xp, sizeof x);
    memcpy(&gv, g, sizeof gv);
    v16f z = x * 0.707106781f;
    erf1p16(&e, &z);
    v16f y = x * x * -0.5f, lo = (v16f){0} - 87.0f;
    y = VSEL(y < lo, lo, y); /* phi underflows there: x phi(x) < 1e-36 */
    exp16(&p, &y);
    v16f out = gv * (e * 0.5f + x * (p * 0.398942280f));
    memcpy(d, &out, sizeof out);
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) /* clang-14 emits no symbol for these clones */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void gelu_erf_inplace(float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) gelu16(x + i);
    if (i < n) { /* the tail through a padded buffer: the same operations per value */
        float buf[16] = {0};
        memcpy(buf, x + i, (n - i) * sizeof(float));
        gelu16(buf);
        memcpy(x + i, buf, (n - i) * sizeof(float));
    }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) /* clang-14 emits no symbol for these clones */
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void gelu_erf_grad(float *din, const float *dout, const float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) gelu_grad16(din + i, dout + i, x + i);
    if (i < n) {
        float bx[16] = {0}, bg[16] = {0};
        memcpy(bx, x + i, (n - i) * sizeof(float));
        memcpy(bg, dout + i, (n - i) * sizeof(float));
        gelu_grad16(bg, bg, bx);
        memcpy(din + i, bg, (n - i) * sizeof(float));
    }
}

void gelu_tanh_inplace(float *x, size_t n) {
    const double k = sqrt(2.0 / M_PI);
    for (size_t i = 0; i < n; i++) {
        double v = x[i];
        x[i] = (float)(0.5 * v * (1.0 + tanh(k * (v + 0.044715 * v * v * v))));
    }
}

void softmax_rows(float *x, int N, int C) {
    for (int i = 0; i < N; i++) {
        float *r = x + (size_t)i * C, mx = -INFINITY;
        for (int c = 0; c < C; c++) mx = r[c] > mx ? r[c] : mx;
        double s = 0;
        for (int c = 0; c < C; c++) {
            r[c] = expf(r[c] - mx);
            s += r[c];
        }
        float inv = (float)(1.0 / s);
        for (int c = 0; c < C; c++) r[c] *= inv;
    }
}

int nn_set_threads(int n) {
    if (n <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n = c > 0 ? (int)c : 1;
    }
    openblas_set_num_threads(n);
    return n;
}
