/* test_dist.c - lib/dist.c's collectives. Alone (one rank, as `make check`
 * runs it) the identities; under `mpirun -n R` (tests/py/test_mpi.py) every
 * rank checks the gathered vectors and that the sums are the rank-order sums,
 * the same bits on every rank, across the pieces dist.c cuts vectors into.
 * Rank 0 prints the checks; the others print only failures. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dist.h"
#include "kernels.h"
#include "util.h"

/* rank r's value i: distinct, not exactly representable sums */
static float val(int r, size_t i) { return (float)(0.1 * (r + 1) + 1e-3 * (double)(i % 1000) + 1e-9 * (double)i); }


/* max |a - b| / max |b| */
static double relerr(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

/* Synchronised BatchNorm: rank r holds rows [r O/R, (r+1) O/R) of a batch
 * [O, C, S] (O = 3R, C 5, S 7); its forward and backward with the sums added
 * over the ranks must give this rank's rows of the whole batch's BatchNorm
 * (every rank computes that too, alone), the running statistics of the
 * whole batch, and dw/db whose sum over the ranks is the whole batch's. */
static void test_bn_sync(int R, int me) {
    int O = 3 * R, C = 5, S = 7, Ol = 3;
    size_t n = (size_t)O * C * S, nl = (size_t)Ol * C * S;
    float *x = xmalloc(n * sizeof(float)), *g = xmalloc(n * sizeof(float)), w[5], b[5];
    for (size_t i = 0; i < n; i++) x[i] = val(0, i) * (float)(i % 7) - 1.0f, g[i] = val(1, i * 3) - 0.5f;
    for (int c = 0; c < C; c++) w[c] = 0.5f + 0.1f * c, b[c] = 0.05f * c;
    float *y = xmalloc(n * sizeof(float)), *dx = xmalloc(n * sizeof(float)), mean[5], rstd[5];
    float rm[5] = {0}, rv[5] = {1, 1, 1, 1, 1}, dw[5] = {0}, db[5] = {0};
    batchnorm_forward_train(y, mean, rstd, rm, rv, x, w, b, O, C, S, 1e-5f, 0.1f);
    batchnorm_backward(dx, dw, db, g, x, mean, rstd, w, O, C, S);
    float *yl = xmalloc(nl * sizeof(float)), *dxl = xmalloc(nl * sizeof(float)), meanl[5], rstdl[5];
    float rml[5] = {0}, rvl[5] = {1, 1, 1, 1, 1}, dwl[5] = {0}, dbl[5] = {0};
    batchnorm_set_reduce(dist_sum_d);
    const float *xl = x + (size_t)me * nl, *gl = g + (size_t)me * nl;
    batchnorm_forward_train(yl, meanl, rstdl, rml, rvl, xl, w, b, Ol, C, S, 1e-5f, 0.1f);
    batchnorm_backward(dxl, dwl, dbl, gl, xl, meanl, rstdl, w, Ol, C, S);
    batchnorm_set_reduce(NULL);
    dist_sum(dwl, 5), dist_sum(dbl, 5);
    double ey = relerr(yl, y + (size_t)me * nl, nl), ed = relerr(dxl, dx + (size_t)me * nl, nl);
    double es = fmax(relerr(rml, rm, 5), relerr(rvl, rv, 5)), ew = fmax(relerr(dwl, dw, 5), relerr(dbl, db, 5));
    char name[200];
    snprintf(name, sizeof name, "synchronised BatchNorm on %d rank(s) = the whole batch's: output, din, running "
             "statistics, summed dw/db", R);
    CHECKF(ey < 1e-6 && ed < 1e-6 && es < 1e-6 && ew < 1e-5, name, "%.3g %.3g %.3g %.3g", ey, ed, es, ew);
    free(x), free(g), free(y), free(dx), free(yl), free(dxl);
}

int main(int argc, char **argv) {
    tool_init("test_dist");
    int R = dist_init(&argc, &argv), me = dist_rank();
    if (me) check_quiet_ok_ = 1;
    /* fewer values than ranks, slices that do not divide evenly, two pieces */
    size_t sizes[4] = {3, 7, 1000, (1 << 20) + 3};
    for (int s = 0; s < 4; s++) {
        size_t n = sizes[s];
        float *mine = xmalloc(n * sizeof(float)), *all = xmalloc((size_t)R * n * sizeof(float));
        for (size_t i = 0; i < n; i++) mine[i] = val(me, i);
        dist_allgather(all, mine, n);
        int ok = 1;
        for (int r = 0; r < R && ok; r++)
            for (size_t i = 0; i < n && ok; i++) ok = all[(size_t)r * n + i] == val(r, i);
        char name[160];
        snprintf(name, sizeof name, "allgather of %zu values on %d rank(s): every rank's vector in rank order", n, R);
        CHECK(ok, name);
        dist_sum(mine, n);
        ok = 1;
        for (size_t i = 0; i < n && ok; i++) {
            float e = val(0, i);
            for (int r = 1; r < R; r++) e += val(r, i);
            ok = mine[i] == e;
        }
        snprintf(name, sizeof name, "sum of %zu floats on %d rank(s) = the rank-order float sum, bit for bit", n, R);
        CHECK(ok, name);
        /* every rank holds the same bits: gather rank 0's result and compare */
        dist_allgather(all, mine, n);
        ok = 1;
        for (int r = 1; r < R && ok; r++) ok = !memcmp(all, all + (size_t)r * n, n * sizeof(float));
        snprintf(name, sizeof name, "sum of %zu floats: the same bits on every rank", n);
        CHECK(ok, name);
        free(mine), free(all);
    }
    double d[3] = {1.0 / 3, 1e-20 * (me + 1), me};
    dist_sum_d(d, 3);
    CHECKF(fabs(d[0] - R / 3.0) < 1e-15 * R && d[2] == R * (R - 1) / 2.0, "sum of doubles", "%.17g %.17g", d[0], d[2]);
    CHECKF(dist_max(me * 10 + 1) == (R - 1) * 10 + 1, "max over ranks", "%d ranks", R);
    test_bn_sync(R, me);
    int rc = check_exit();
    dist_finalize();
    return rc;
}
