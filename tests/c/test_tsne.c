/* test_tsne.c - lib/tsne.c: the perplexity calibration, the KL gradient
 * against central differences, a whole run on separated clusters,
 * determinism and refusals.
 *
 * Also a helper for tests/py/test_tsne.py (scikit-learn comparisons):
 *   test_tsne dump X Y PERPLEXITY OUT
 * X: int32 n, int32 D, then float32 [n, D]; Y: float64 [n, 2].
 * OUT: float64 P [n, n], the gradient at Y [n, 2] (no exaggeration), KL. */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gap.h"
#include "tsne.h"
#include "util.h"

static rng_t R;

/* k clusters of m points each in D dimensions, centres far apart */
static float *clusters(int k, int m, int D, float spread) {
    float *x = malloc((size_t)k * m * D * sizeof(float));
    double c[16][64];
    for (int a = 0; a < k; a++)
        for (int d = 0; d < D; d++) c[a][d] = 3 * rng_normal(&R);
    for (int a = 0; a < k; a++)
        for (int i = 0; i < m; i++)
            for (int d = 0; d < D; d++) x[((size_t)a * m + i) * D + d] = (float)(c[a][d] + spread * rng_normal(&R));
    return x;
}

static void test_joint_p(void) {
    int n = 41, D = 7;
    float *x = clusters(1, n, D, 1);
    double *P = malloc((size_t)n * n * sizeof(double));
    double worst = tsne_joint_p(P, x, n, D, 9.5);
    CHECKF(worst <= 1e-5, "joint P: every row's entropy is log(perplexity) within 1e-5", "%.3g", worst);
    double sum = 0, asym = 0, mn = 1;
    int diag0 = 1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            sum += P[i * n + j];
            asym = fmax(asym, fabs(P[i * n + j] - P[j * n + i]));
            if (i == j) diag0 &= P[i * n + j] == 0;
            else mn = fmin(mn, P[i * n + j]);
        }
    CHECKF(fabs(sum - 1) < 1e-9 && asym == 0 && diag0 && mn >= DBL_EPSILON,
           "joint P: symmetric, zero diagonal, at least machine epsilon, sums to 1", "sum %.12g asym %g min %g", sum, asym,
           mn);
    free(P);
    free(x);
}

static void test_gradient(void) {
    int n = 17, D = 5;
    float *x = clusters(1, n, D, 1);
    double *P = malloc((size_t)n * n * sizeof(double)), *W = malloc((size_t)n * n * sizeof(double));
    tsne_joint_p(P, x, n, D, 4);
    double y[34], g[34], g2[34];
    for (int i = 0; i < 2 * n; i++) y[i] = rng_normal(&R);
    /* only without exaggeration: with it, sklearn's (and our) update uses
     * 4 sum (e p - q) w (y_i - y_j), not the gradient of KL(eP || Q) (whose
     * mass is e); that case is compared with sklearn in test_tsne.py */
    for (int ex = 0; ex < 1; ex++) {
        double e = 1;
        tsne_kl_grad(g, P, y, n, e, W, 1);
        double worst = 0;
        for (int i = 0; i < 2 * n; i++) {
            double h = 1e-6, s = y[i];
            y[i] = s + h;
            double up = tsne_kl_grad(g2, P, y, n, e, W, 1);
            y[i] = s - h;
            double dn = tsne_kl_grad(g2, P, y, n, e, W, 1);
            y[i] = s;
            double fd = (up - dn) / (2 * h);
            worst = fmax(worst, fabs(fd - g[i]) / fmax(fabs(g[i]), 1e-3));
        }
        char name[96];
        snprintf(name, sizeof name, "KL gradient = central differences within 1e-6 (n %d)", n);
        CHECKF(worst < 1e-6, name, "worst relative error %.3g", worst);
    }
    double k0 = tsne_kl_grad(g2, P, y, n, 1, W, 0);
    CHECK(k0 == 0 && memcmp(g, g2, sizeof g) == 0, "KL is skipped when not wanted; the gradient is the same");
    free(P), free(W), free(x);
}

static void test_run(void) {
    int k = 3, m = 30, n = k * m, D = 10;
    float *x = clusters(k, m, D, 0.5f);
    double *y = malloc((size_t)n * 2 * sizeof(double)), *y2 = malloc((size_t)n * 2 * sizeof(double));
    tsne_opts o;
    tsne_opts_default(&o);
    char err[200];
    double kl = tsne2(y, x, n, D, &o, NULL, NULL, err, sizeof err);
    /* 1-nearest neighbour in the plane: same cluster for every point */
    int good = 0;
    for (int i = 0; i < n; i++) {
        int best = -1;
        double bd = INFINITY;
        for (int j = 0; j < n; j++) {
            if (j == i) continue;
            double a = y[2 * i] - y[2 * j], b = y[2 * i + 1] - y[2 * j + 1];
            if (a * a + b * b < bd) bd = a * a + b * b, best = j;
        }
        good += best / m == i / m;
    }
    CHECKF(kl >= 0 && good == n, "3 separated clusters stay separated in the plane (1-NN)", "kl %g, %d of %d", kl, good, n);
    tsne2(y2, x, n, D, &o, NULL, NULL, err, sizeof err);
    CHECK(!memcmp(y, y2, (size_t)n * 2 * sizeof(double)), "two runs are bit-identical");
    CHECK(tsne2(y, x, 20, D, &o, NULL, NULL, err, sizeof err) < 0 && strstr(err, "perplexity"),
          "fewer points than the perplexity: refused with a reason");
    free(x), free(y), free(y2);
}

static int dump(const char *xp, const char *yp, double perp, const char *out) {
    FILE *f = fopen(xp, "rb");
    int32_t hd[2];
    if (!f || fread(hd, 4, 2, f) != 2) return 2;
    int n = hd[0], D = hd[1];
    float *x = malloc((size_t)n * D * sizeof(float));
    if (fread(x, sizeof(float), (size_t)n * D, f) != (size_t)n * D) return 2;
    fclose(f);
    double *y = malloc((size_t)n * 2 * sizeof(double)), *g = malloc((size_t)n * 2 * sizeof(double));
    f = fopen(yp, "rb");
    if (!f || fread(y, sizeof(double), (size_t)n * 2, f) != (size_t)n * 2) return 2;
    fclose(f);
    double *P = malloc((size_t)n * n * sizeof(double)), *W = malloc((size_t)n * n * sizeof(double));
    tsne_joint_p(P, x, n, D, perp);
    double kl = tsne_kl_grad(g, P, y, n, 1, W, 1);
    f = fopen(out, "wb");
    if (!f) return 2;
    fwrite(P, sizeof(double), (size_t)n * n, f);
    fwrite(g, sizeof(double), (size_t)n * 2, f);
    fwrite(&kl, sizeof(double), 1, f);
    free(x), free(y), free(g), free(P), free(W);
    return fclose(f) ? 2 : 0;
}

int main(int argc, char **argv) {
    if (argc == 6 && !strcmp(argv[1], "dump")) return dump(argv[2], argv[3], atof(argv[4]), argv[5]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_tsne [dump X Y PERPLEXITY OUT]\n");
        return 2;
    }
    rng_seed(&R, 7);
    test_joint_p();
    test_gradient();
    test_run();
    return check_exit();
}
