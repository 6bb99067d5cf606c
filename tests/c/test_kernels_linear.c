/* test_kernels_linear.c - the packed linear of lib/kernels_linear.c against
 * its naive twin (direct loops in double) on odd sizes, strides, stacked
 * matrices (q | k | v) and each activation, for every kernel variant the CPU
 * has; the properties bert.c's determinism rests on: a row's bits do not
 * depend on the number of rows or the panel split, and the AVX-512 and
 * AVX2+FMA variants agree bit for bit. And nn.c's vectorised
 * gelu_erf_inplace and gelu_erf_grad against the double GELU and its
 * gradient (gelu_erf_forward_naive / gelu_erf_backward_naive), and the
 * threaded gelu_erf_forward / gelu_erf_backward: the same bits at 1 and 2
 * threads as the single-call kernels. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gap.h" /* rng_t */
#include "kernels.h"
#include "kernels_linear.h"
#include "nn.h"
#include "parfor.h"
#include "util.h"

static rng_t R;

static float *rnd(size_t n, float scale) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(&R) * scale;
    return x;
}

int main(void) {
    rng_seed(&R, 5);
    static const char *const acts[] = {"none", "gelu", "relu"};
    static const char *const kern[] = {"avx512", "avx2", "generic"};
    /* M rows, C inputs, three stacked parts of oc0, oc1, oc2 outputs */
    static const int cfg[][5] = {{1, 1, 1, 0, 0}, {7, 13, 70, 0, 0}, {13, 129, 64, 64, 72}, {6, 64, 64, 0, 0},
                                 {23, 300, 37, 5, 130}, {40, 1100, 200, 0, 0}};
    char name[200];
    double worst_all = 0;
    for (size_t ci = 0; ci < sizeof cfg / sizeof cfg[0]; ci++) {
        int M = cfg[ci][0], C = cfg[ci][1], oc[3] = {cfg[ci][2], cfg[ci][3], cfg[ci][4]};
        int n = oc[2] ? 3 : 1, OC = oc[0] + oc[1] + oc[2], lda = C + 3, ldo = OC + 5;
        const float *Wp[3], *bp[3];
        float *W = rnd((size_t)OC * C, 1.0f / sqrtf((float)C)), *b = rnd((size_t)OC, 1.0f);
        for (int i = 0, o = 0; i < n; o += oc[i], i++) {
            Wp[i] = W + (size_t)o * C;
            bp[i] = b + o;
        }
        float *a = rnd((size_t)M * lda, 1.0f);
        packed_linear L;
        packed_linear_pack(&L, n, Wp, bp, oc, C);
        size_t no = (size_t)M * ldo;
        float *ref = xmalloc(no * sizeof(float)), *out = xmalloc(no * sizeof(float));
        float *part = xmalloc(no * sizeof(float)), *row = xmalloc((size_t)ldo * sizeof(float));
        float *first = xmalloc(no * sizeof(float));
        /* sum_k |a w| per output: the rounding bound of a float sum of C products */
        double *S = xmalloc((size_t)M * OC * sizeof(double));
        for (int i = 0; i < M; i++)
            for (int o = 0; o < OC; o++) {
                double s = fabs(b[o]);
                for (int k = 0; k < C; k++) s += fabs((double)a[(size_t)i * lda + k] * W[(size_t)o * C + k]);
                S[(size_t)i * OC + o] = s;
            }
        int np = packed_linear_panels(OC);
        for (int act = 0; act < 3; act++) {
            packed_linear_forward_naive(ref, ldo, a, lda, W, b, M, C, OC, act);
            int have_first = 0;
            for (int kv = 0; kv < 3; kv++) {
                if (strcmp(packed_linear_use(kern[kv]), kern[kv])) continue; /* not on this CPU */
                for (size_t i = 0; i < no; i++) out[i] = part[i] = -7.0f; /* the stride gaps must stay */
                packed_linear_forward(out, ldo, a, lda, &L, M, 0, np, act);
                double worst = 0;
                int ok = 1, gaps = 1;
                for (int i = 0; i < M; i++) {
                    for (int o = 0; o < OC; o++) {
                        double r = ref[(size_t)i * ldo + o], d = fabs(out[(size_t)i * ldo + o] - r);
                        double tol = ldexp(1.0, -23) * ((C + 2) * S[(size_t)i * OC + o] + fabs(r)) + 4e-7;
                        if (!(d <= tol)) ok = 0;
                        if (d / tol > worst) worst = d / tol;
                    }
                    for (int o = OC; o < ldo; o++) gaps &= out[(size_t)i * ldo + o] == -7.0f;
                }
                snprintf(name, sizeof name, "%s M=%d C=%d OC=%d (%d part%s) %s: within C u sum|a w| of the naive twin",
                         kern[kv], M, C, OC, n, n > 1 ? "s" : "", acts[act]);
                CHECKF(ok, name, "worst error / bound %.3g", worst);
                if (worst > worst_all) worst_all = worst;
                snprintf(name, sizeof name, "%s M=%d OC=%d %s: writes no column past OC", kern[kv], M, OC,
                         acts[act]);
                CHECK(gaps, name);
                /* panels in two ranges, the later one first (two threads): the same bits */
                int cut = np / 2;
                packed_linear_forward(part, ldo, a, lda, &L, M, cut, np, act);
                packed_linear_forward(part, ldo, a, lda, &L, M, 0, cut, act);
                snprintf(name, sizeof name, "%s M=%d OC=%d %s: panels [%d, %d) + [0, %d) give the same bits",
                         kern[kv], M, OC, acts[act], cut, np, cut);
                CHECK(!memcmp(part, out, no * sizeof(float)), name);
                /* every row alone: the same bits as in the batch */
                int same = 1;
                for (int i = 0; i < M; i++) {
                    packed_linear_forward(row, ldo, a + (size_t)i * lda, lda, &L, 1, 0, np, act);
                    same &= !memcmp(row, out + (size_t)i * ldo, (size_t)OC * sizeof(float));
                }
                snprintf(name, sizeof name, "%s M=%d OC=%d %s: each row alone gives the batch's bits", kern[kv], M,
                         OC, acts[act]);
                CHECK(same, name);
                if (kv < 2) { /* the FMA variants agree bit for bit */
                    if (have_first) {
                        snprintf(name, sizeof name, "avx2 and avx512 M=%d OC=%d %s: the same bits", M, OC,
                                 acts[act]);
                        CHECK(!memcmp(first, out, no * sizeof(float)), name);
                    }
                    memcpy(first, out, no * sizeof(float));
                    have_first = 1;
                }
            }
        }
        packed_linear_use(NULL);
        packed_linear_free(&L);
        free(W), free(b), free(a), free(ref), free(out), free(part), free(row), free(first), free(S);
    }

    printf("# packed linear: worst error / bound over all cases %.3g\n", worst_all);

    /* gelu_erf_inplace (float, vectorised) against gelu_erf_forward_naive (double) */
    size_t N = 1 << 20;
    float *x = xmalloc((N + 40) * sizeof(float)), *y = xmalloc((N + 40) * sizeof(float));
    float *g = xmalloc((N + 40) * sizeof(float));
    for (size_t i = 0; i < N; i++) x[i] = -12.0f + 24.0f * (float)i / (float)N;
    float special[] = {0.0f, -0.0f, 1e-30f, -1e-30f, 0.875f * 1.41421356f, -0.875f * 1.41421356f, 3e-3f,
                       -5.5f, 12.7f, -12.7f, 30.0f, -30.0f, 1e4f, -1e4f};
    size_t ns = sizeof special / sizeof special[0];
    memcpy(x + N, special, ns * sizeof(float));
    size_t tot = N + ns;
    memcpy(y, x, tot * sizeof(float));
    gelu_erf_inplace(y, tot);
    gelu_erf_forward_naive(g, x, tot);
    double worst = 0;
    size_t at = 0;
    for (size_t i = 0; i < tot; i++) {
        double d = fabs((double)y[i] - g[i]);
        double tol = fmax(4e-7, ldexp(1.0, -23) * fabs(g[i])); /* 3.9e-7 measured against mpmath, or 1 ulp */
        if (d / tol > worst) worst = d / tol, at = i;
    }
    CHECKF(worst <= 1.0, "gelu_erf_inplace: within max(4e-7, 1 ulp) of the double GELU on [-12, 12] and specials",
           "worst error / bound %.3g at x = %.9g", worst, (double)x[at]);
    printf("# gelu_erf_inplace: worst error / bound %.3g (|d| %.3g at x = %.9g)\n", worst,
           fabs((double)y[at] - g[at]), (double)x[at]);
    /* tails of every length: the same bits as inside a long run */
    int tails = 1;
    for (int len = 1; len <= 33; len++) {
        memcpy(y, x + 1000, (size_t)len * sizeof(float));
        gelu_erf_inplace(y, (size_t)len);
        memcpy(g, x, tot * sizeof(float));
        gelu_erf_inplace(g, tot);
        tails &= !memcmp(y, g + 1000, (size_t)len * sizeof(float));
    }
    CHECK(tails, "gelu_erf_inplace: a value's bits do not depend on the length of the run (tails 1..33)");
    y[0] = NAN;
    gelu_erf_inplace(y, 1);
    CHECK(isnan(y[0]), "gelu_erf_inplace: NaN stays NaN");

    /* gelu_erf_grad against the double gradient Phi(x) + x phi(x), times random upstream values */
    float *dy = rnd(tot, 1.0f), *d1 = xmalloc(tot * sizeof(float)), *d2 = xmalloc(tot * sizeof(float));
    gelu_erf_grad(d1, dy, x, tot);
    gelu_erf_backward_naive(g, dy, x, tot);
    worst = 0, at = 0;
    for (size_t i = 0; i < tot; i++) {
        /* 1 + erf within 4.3e-7 relative (x > -1), 1.4e-6 (x < -1, where Phi < 0.16): the gradient within
         * 1e-6 of |dy| or 2 ulp of the value */
        double d = fabs((double)d1[i] - g[i]);
        double tol = fmax(1e-6 * fabs(dy[i]), ldexp(1.0, -22) * fabs(g[i]));
        if (d / tol > worst) worst = d / tol, at = i;
    }
    CHECKF(worst <= 1.0, "gelu_erf_grad: within max(1e-6 |dy|, 2 ulp) of the double gradient on [-12, 12] and specials",
           "worst error / bound %.3g at x = %.9g", worst, (double)x[at]);
    printf("# gelu_erf_grad: worst error / bound %.3g (|d| %.3g at x = %.9g)\n", worst,
           fabs((double)d1[at] - g[at]), (double)x[at]);
    int gt = 1;
    for (int len = 1; len <= 33; len++) {
        gelu_erf_grad(d2, dy + 1000, x + 1000, (size_t)len);
        gt &= !memcmp(d2, d1 + 1000, (size_t)len * sizeof(float));
    }
    CHECK(gt, "gelu_erf_grad: a value's bits do not depend on the length of the run (tails 1..33)");
    memcpy(d2, dy, tot * sizeof(float));
    gelu_erf_grad(d2, d2, x, tot);
    CHECK(!memcmp(d2, d1, tot * sizeof(float)), "gelu_erf_grad: in place (din = dout) gives the same bits");

    /* the threaded wrappers: the bits of the single-call kernels, on 1 thread and on 2 */
    memcpy(y, x, tot * sizeof(float));
    gelu_erf_inplace(y, tot);
    for (int th = 1; th <= 2; th++) {
        parfor_init(th);
        gelu_erf_forward(g, x, tot);
        CHECKF(!memcmp(g, y, tot * sizeof(float)), "gelu_erf_forward: the bits of gelu_erf_inplace",
               "%d thread(s)", th);
        memcpy(g, x, tot * sizeof(float));
        gelu_erf_forward(g, g, tot);
        CHECKF(!memcmp(g, y, tot * sizeof(float)), "gelu_erf_forward: in place", "%d thread(s)", th);
        gelu_erf_backward(d2, dy, x, tot);
        CHECKF(!memcmp(d2, d1, tot * sizeof(float)), "gelu_erf_backward: the bits of gelu_erf_grad",
               "%d thread(s)", th);
    }
    free(dy), free(d1), free(d2);
    free(x), free(y), free(g);
    return check_exit();
}
