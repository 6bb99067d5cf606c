/* nn.c - layer kernels (see nn.h). */
#include "nn.h"

#include "gemm.h"

#include <cblas.h>
#include <math.h>
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

void gelu_erf_inplace(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] * M_SQRT1_2)));
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
