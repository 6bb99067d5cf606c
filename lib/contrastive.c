/* contrastive.c - L_sup and L_dist with their gradients (see contrastive.h). */
#include "contrastive.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "util.h"

/* lse over row i (byrow) or column i of X[B, B] */
static double lse(const double *X, int B, int i, int byrow) {
    double mx = -INFINITY, s = 0;
    for (int k = 0; k < B; k++) {
        double v = byrow ? X[(size_t)i * B + k] : X[(size_t)k * B + i];
        mx = v > mx ? v : mx;
    }
    for (int k = 0; k < B; k++) s += exp((byrow ? X[(size_t)i * B + k] : X[(size_t)k * B + i]) - mx);
    return mx + log(s);
}

/* X[B, B] = (1/M) sum_m x_m y_m^T / tau for rows x[i, m, :] of x[B, M, D]
 * normalised (the teachers' estimate; M = 1 with the student's embeddings
 * gives C) */
static void cos_matrix(double *X, const float *x, const float *y, int M, int B, int D, float tau) {
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double s = 0;
            for (int m = 0; m < M; m++) {
                const float *p = x + ((size_t)i * M + m) * D, *q = y + ((size_t)j * M + m) * D;
                double d = 0;
                for (int k = 0; k < D; k++) d += (double)p[k] * q[k];
                s += d;
            }
            X[(size_t)i * B + j] = s / M / fabs((double)tau);
        }
}

contrastive_out contrastive_loss(float *da, float *dt, const float *a, const float *t, const int *aid,
                                 const float *ta, const float *tt, int M, int Dt, int B, int D, float tau,
                                 double w_sup, double w_dist) {
    contrastive_out r = {0};
    size_t BB = (size_t)B * B, BD = (size_t)B * D;
    float *an = xmalloc(BD * sizeof(float)), *tn = xmalloc(BD * sizeof(float));
    float *na = xmalloc((size_t)B * sizeof(float)), *nt = xmalloc((size_t)B * sizeof(float));
    double *C = xmalloc(BB * sizeof(double)), *dC = xmalloc(BB * sizeof(double));
    double *lr = xmalloc((size_t)B * sizeof(double)), *lc = xmalloc((size_t)B * sizeof(double));
    l2norm_forward(an, na, a, B, D);
    l2norm_forward(tn, nt, t, B, D);
    cos_matrix(C, an, tn, 1, B, D, tau);
    for (int i = 0; i < B; i++) lr[i] = lse(C, B, i, 1), lc[i] = lse(C, B, i, 0);

    /* L_sup; dC/dC_ij of it: -1/(2 nI) ((I - cc_j Pcol) + (I - rc_i Prow)) */
    int nI = 0;
    double sa = 0, st = 0;
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++)
            if (aid[i] == aid[j]) {
                nI++;
                sa += C[(size_t)i * B + j] - lc[j];
                st += C[(size_t)i * B + j] - lr[i];
            }
    r.positives = nI;
    r.sup = -0.5 * (sa / nI + st / nI);
    int *rc = xcalloc((size_t)B, sizeof(int)); /* positives per row = per column (I is symmetric) */
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) rc[i] += aid[i] == aid[j];
    for (int i = 0; i < B; i++)
        for (int j = 0; j < B; j++) {
            double c = C[(size_t)i * B + j], pr = exp(c - lr[i]), pc = exp(c - lc[j]);
            double e = aid[i] == aid[j];
            dC[(size_t)i * B + j] = w_sup * (-0.5 / nI) * ((e - rc[j] * pc) + (e - rc[i] * pr));
        }
    free(rc);

    /* L_dist */
    if (ta && tt && M > 0) {
        float *nta = xmalloc((size_t)B * M * Dt * sizeof(float)), *ntt = xmalloc((size_t)B * M * Dt * sizeof(float));
        double *Q = xmalloc(BB * sizeof(double));
        double *qr = xmalloc((size_t)B * sizeof(double)), *qc = xmalloc((size_t)B * sizeof(double));
        l2norm_forward(nta, NULL, ta, B * M, Dt);
        l2norm_forward(ntt, NULL, tt, B * M, Dt);
        cos_matrix(Q, nta, ntt, M, B, Dt, tau);
        for (int i = 0; i < B; i++) qr[i] = lse(Q, B, i, 1), qc[i] = lse(Q, B, i, 0);
        double ce1 = 0, ce2 = 0;
        for (int i = 0; i < B; i++)
            for (int j = 0; j < B; j++) {
                size_t k = (size_t)i * B + j;
                double par = exp(Q[k] - qr[i]), pac = exp(Q[k] - qc[j]); /* targets along rows, columns */
                ce1 -= par * (C[k] - lr[i]);
                ce2 -= pac * (C[k] - lc[j]);
                dC[k] += w_dist * (0.5 / B) * ((exp(C[k] - lr[i]) - par) + (exp(C[k] - lc[j]) - pac));
            }
        r.dist = 0.5 * (ce1 / B + ce2 / B);
        free(nta), free(ntt), free(Q), free(qr), free(qc);
    } else {
        w_dist = 0;
    }
    r.total = w_sup * r.sup + w_dist * r.dist;

    if (da || dt) {
        /* d an = dC tn / tau, d tn = dC^T an / tau; then through the normalisation */
        float *g = xmalloc(BD * sizeof(float));
        double inv = 1.0 / fabs((double)tau);
        if (da) {
            for (int i = 0; i < B; i++)
                for (int k = 0; k < D; k++) {
                    double s = 0;
                    for (int j = 0; j < B; j++) s += dC[(size_t)i * B + j] * tn[(size_t)j * D + k];
                    g[(size_t)i * D + k] = (float)(s * inv);
                }
            l2norm_backward(da, g, an, na, B, D);
        }
        if (dt) {
            for (int j = 0; j < B; j++)
                for (int k = 0; k < D; k++) {
                    double s = 0;
                    for (int i = 0; i < B; i++) s += dC[(size_t)i * B + j] * an[(size_t)i * D + k];
                    g[(size_t)j * D + k] = (float)(s * inv);
                }
            l2norm_backward(dt, g, tn, nt, B, D);
        }
        free(g);
    }
    free(an), free(tn), free(na), free(nt), free(C), free(dC), free(lr), free(lc);
    return r;
}
