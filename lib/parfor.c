/* parfor.c - see parfor.h. The ranges run on one lib/pool.c pool (the same
 * spin-then-sleep pool as the CLAP encoders'); thread k takes range k of
 * [0, n) cut into as many contiguous ranges as there are threads, the
 * caller range 0. */
#include "parfor.h"

#include <stddef.h>

#include "pool.h"

#define PARFOR_MAX 64

static thread_pool *P; /* NULL: one thread */
static int N = 1;

void parfor_init(int n) {
    if (n > PARFOR_MAX) n = PARFOR_MAX;
    if (n < 1) n = 1;
    parfor_shutdown();
    N = n;
    if (n > 1) P = pool_new(n);
}

int parfor_threads(void) { return N; }

typedef struct {
    parfor_fn fn;
    void *ctx;
    int n;
} job;

static void run_range(void *p, int k, int parts) {
    job *j = p;
    int lo = (int)((long)j->n * k / parts), hi = (int)((long)j->n * (k + 1) / parts);
    if (lo < hi) j->fn(j->ctx, lo, hi);
}

void parfor(int n, parfor_fn fn, void *ctx) {
    if (n <= 0) return;
    /* not worth waking anyone for a single item */
    if (!P || n < 2) {
        fn(ctx, 0, n);
        return;
    }
    job j = {fn, ctx, n};
    pool_run(P, run_range, &j);
}

void parfor_shutdown(void) {
    pool_free(P);
    P = NULL;
    N = 1;
}
