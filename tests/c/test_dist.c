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
#include "util.h"

/* rank r's value i: distinct, not exactly representable sums */
static float val(int r, size_t i) { return (float)(0.1 * (r + 1) + 1e-3 * (double)(i % 1000) + 1e-9 * (double)i); }

int main(int argc, char **argv) {
    tool_init("test_dist");
    int R = dist_init(&argc, &argv), me = dist_rank();
    if (me) check_quiet_ok_ = 1;
    size_t sizes[3] = {7, 1000, (1 << 20) + 3}; /* the last is cut into two pieces */
    for (int s = 0; s < 3; s++) {
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
    int rc = check_exit();
    dist_finalize();
    return rc;
}
