/* tsne.c - see tsne.h. Every step follows scikit-learn 1.2's exact method
 * (sklearn/manifold/_t_sne.py and _utils.pyx): the references are to those
 * functions. */
#include "tsne.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gap.h"
#include "util.h"

void tsne_opts_default(tsne_opts *o) {
    o->perplexity = 30;
    o->iters = 1000;
    o->explore_iters = 250;
    o->exaggeration = 12;
    o->learning_rate = 0;
}

/* _binary_search_perplexity: per row, beta of exp(-d * beta) such that the
 * entropy (nats) is log(perplexity); 100 steps, tolerance 1e-5 */
double tsne_joint_p(double *P, const float *x, int n, int D, double perplexity) {
    /* float32 distances, as sklearn hands them to _binary_search_perplexity */
    float *d2 = xmalloc((size_t)n * n * sizeof(float));
    for (int i = 0; i < n; i++) {
        d2[(size_t)i * n + i] = 0;
        for (int j = i + 1; j < n; j++) {
            double s = 0;
            for (int k = 0; k < D; k++) {
                double t = (double)x[(size_t)i * D + k] - x[(size_t)j * D + k];
                s += t * t;
            }
            d2[(size_t)i * n + j] = d2[(size_t)j * n + i] = (float)s;
        }
    }
    const double want = log(perplexity), tol = 1e-5;
    double worst = 0;
    for (int i = 0; i < n; i++) {
        double beta = 1, lo = -INFINITY, hi = INFINITY, H = 0;
        double *p = P + (size_t)i * n;
        const float *d = d2 + (size_t)i * n;
        for (int step = 0; step < 100; step++) {
            double sum = 0;
            for (int j = 0; j < n; j++) {
                p[j] = j == i ? 0 : exp(-(double)d[j] * beta);
                sum += p[j];
            }
            if (sum == 0) sum = 1e-8; /* EPSILON_DBL */
            double sdp = 0;
            for (int j = 0; j < n; j++) {
                p[j] /= sum;
                sdp += (double)d[j] * p[j];
            }
            H = log(sum) + beta * sdp;
            double diff = H - want;
            if (fabs(diff) <= tol) break;
            if (diff > 0) {
                lo = beta;
                beta = hi == INFINITY ? beta * 2 : (beta + hi) / 2;
            } else {
                hi = beta;
                beta = lo == -INFINITY ? beta / 2 : (beta + lo) / 2;
            }
        }
        if (fabs(H - want) > worst) worst = fabs(H - want);
    }
    free(d2);
    /* _joint_probabilities: P = P + P.T; P / max(sum, eps); max(., eps) */
    double sum = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            double s = P[(size_t)i * n + j] + P[(size_t)j * n + i];
            P[(size_t)i * n + j] = P[(size_t)j * n + i] = s;
            sum += 2 * s;
        }
    if (sum < DBL_EPSILON) sum = DBL_EPSILON;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double v = P[(size_t)i * n + j] / sum;
            P[(size_t)i * n + j] = i == j ? 0 : v > DBL_EPSILON ? v : DBL_EPSILON;
        }
    return worst;
}

/* _kl_divergence with degrees_of_freedom 1: w_ij = 1 / (1 + |y_i - y_j|^2),
 * Q = max(w / sum w, eps), KL = sum P log(max(P, eps) / Q),
 * grad_i = 4 sum_j (P_ij - Q_ij) w_ij (y_i - y_j). W: scratch [n, n]. */
double tsne_kl_grad(double *grad, const double *P, const double *y, int n, double exaggeration, double *W, int want_kl) {
    double sw = 0;
    for (int i = 0; i < n; i++) {
        W[(size_t)i * n + i] = 0;
        for (int j = i + 1; j < n; j++) {
            double a = y[2 * i] - y[2 * j], b = y[2 * i + 1] - y[2 * j + 1];
            double w = 1.0 / (1.0 + a * a + b * b);
            W[(size_t)i * n + j] = W[(size_t)j * n + i] = w;
            sw += 2 * w;
        }
    }
    double kl = 0;
    for (int i = 0; i < n; i++) {
        double g0 = 0, g1 = 0;
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            double w = W[(size_t)i * n + j], q = w / sw, p = P[(size_t)i * n + j] * exaggeration;
            if (q < DBL_EPSILON) q = DBL_EPSILON;
            if (want_kl) kl += p * log((p > DBL_EPSILON ? p : DBL_EPSILON) / q);
            double c = (p - q) * w;
            g0 += c * (y[2 * i] - y[2 * j]);
            g1 += c * (y[2 * i + 1] - y[2 * j + 1]);
        }
        grad[2 * i] = 4 * g0;
        grad[2 * i + 1] = 4 * g1;
    }
    return kl;
}

double tsne2(double *y, const float *x, int n, int D, const tsne_opts *o, void (*report)(void *, int, double),
             void *ctx, char *err, size_t errlen) {
    if (n <= o->perplexity || n < 4) {
        snprintf(err, errlen, "t-SNE needs more points (%d) than the perplexity (%g)", n, o->perplexity);
        return -1;
    }
    if (n > TSNE_MAX_POINTS) {
        snprintf(err, errlen, "t-SNE is exact here (n^2 memory): at most %d points, got %d (use --max)", TSNE_MAX_POINTS, n);
        return -1;
    }
    /* init="pca": the first two principal components, scaled so the first
     * coordinate has standard deviation 1e-4 */
    double *axes = xmalloc((size_t)2 * D * sizeof(double)), var[2], total, *mu = xmalloc((size_t)D * sizeof(double));
    pca2(axes, var, &total, x, n, D);
    mean_rows(mu, x, n, D);
    pca_project(y, x, n, D, axes, mu);
    double m0 = 0, s0 = 0;
    for (int i = 0; i < n; i++) m0 += y[2 * i] / n;
    for (int i = 0; i < n; i++) s0 += (y[2 * i] - m0) * (y[2 * i] - m0) / n;
    s0 = sqrt(s0);
    for (int i = 0; i < 2 * n; i++) y[i] = s0 > 0 ? y[i] / s0 * 1e-4 : 0;
    free(axes);
    free(mu);

    double *P = xmalloc((size_t)n * n * sizeof(double)), *W = xmalloc((size_t)n * n * sizeof(double));
    tsne_joint_p(P, x, n, D, o->perplexity);
    double lr = o->learning_rate > 0 ? o->learning_rate : fmax(n / o->exaggeration / 4, 50);
    double *g = xmalloc((size_t)2 * n * sizeof(double)), *upd = xcalloc((size_t)2 * n, sizeof(double));
    double *gains = xmalloc((size_t)2 * n * sizeof(double));
    for (int i = 0; i < 2 * n; i++) gains[i] = 1;
    double kl = 0;
    /* _gradient_descent: gains (+0.2 where update and gradient disagree in
     * sign, else x0.8; at least 0.01), momentum 0.5 while exploring, 0.8 after */
    for (int it = 0; it < o->iters; it++) {
        int explore = it < o->explore_iters;
        double mom = explore ? 0.5 : 0.8;
        /* the error only where it is reported (sklearn: every 50 and the last) */
        int want = (it + 1) % 50 == 0 || it == o->iters - 1;
        double e = tsne_kl_grad(g, P, y, n, explore ? o->exaggeration : 1.0, W, want);
        if (want) kl = e;
        for (int i = 0; i < 2 * n; i++) {
            gains[i] = upd[i] * g[i] < 0 ? gains[i] + 0.2 : gains[i] * 0.8;
            if (gains[i] < 0.01) gains[i] = 0.01;
            upd[i] = mom * upd[i] - lr * (g[i] * gains[i]);
            y[i] += upd[i];
        }
        if (report && (it + 1) % 50 == 0) report(ctx, it + 1, kl);
    }
    free(P), free(W), free(g), free(upd), free(gains);
    return kl;
}
