/* parfor.c - see parfor.h. One job at a time: the caller publishes it under a
 * mutex, bumps a generation counter, works on range 0 and waits until every
 * worker has reported its range done. */
#include "parfor.h"

#include <pthread.h>
#include <stdlib.h>

#include "util.h"

#define PARFOR_MAX 64

static struct {
    int n;                 /* threads, the caller included */
    pthread_t th[PARFOR_MAX];
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    unsigned long gen;     /* bumped for every job */
    unsigned long gen0;    /* gen when the workers started: jobs before are not theirs */
    int pending, quit;
    parfor_fn fn;
    void *ctx;
    int total;
} P = {1, {0}, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, 0, 0, 0, 0, 0, 0, 0};

static void range_of(int k, int parts, int n, int *lo, int *hi) {
    *lo = (int)((long)n * k / parts);
    *hi = (int)((long)n * (k + 1) / parts);
}

static void *worker(void *arg) {
    int k = (int)(long)arg;
    pthread_mutex_lock(&P.mu);
    unsigned long seen = P.gen0;
    for (;;) {
        while (P.gen == seen && !P.quit) pthread_cond_wait(&P.go, &P.mu);
        if (P.quit) break;
        seen = P.gen;
        parfor_fn fn = P.fn;
        void *ctx = P.ctx;
        int lo, hi;
        range_of(k, P.n, P.total, &lo, &hi);
        pthread_mutex_unlock(&P.mu);
        if (lo < hi) fn(ctx, lo, hi);
        pthread_mutex_lock(&P.mu);
        if (--P.pending == 0) pthread_cond_signal(&P.done);
    }
    pthread_mutex_unlock(&P.mu);
    return NULL;
}

void parfor_init(int n) {
    if (n > PARFOR_MAX) n = PARFOR_MAX;
    if (n < 1) n = 1;
    P.n = n;
    P.quit = 0;
    P.gen0 = P.gen; /* no parfor runs before this returns */
    for (int k = 1; k < n; k++)
        if (pthread_create(&P.th[k], NULL, worker, (void *)(long)k)) die("cannot start a thread");
}

int parfor_threads(void) { return P.n; }

void parfor(int n, parfor_fn fn, void *ctx) {
    if (n <= 0) return;
    /* not worth waking anyone for a handful of items */
    if (P.n == 1 || n < 2) {
        fn(ctx, 0, n);
        return;
    }
    pthread_mutex_lock(&P.mu);
    P.fn = fn;
    P.ctx = ctx;
    P.total = n;
    P.pending = P.n - 1;
    P.gen++;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    int lo, hi;
    range_of(0, P.n, n, &lo, &hi);
    if (lo < hi) fn(ctx, lo, hi);
    pthread_mutex_lock(&P.mu);
    while (P.pending > 0) pthread_cond_wait(&P.done, &P.mu);
    pthread_mutex_unlock(&P.mu);
}

void parfor_shutdown(void) {
    if (P.n <= 1) return;
    pthread_mutex_lock(&P.mu);
    P.quit = 1;
    pthread_cond_broadcast(&P.go);
    pthread_mutex_unlock(&P.mu);
    for (int k = 1; k < P.n; k++) pthread_join(P.th[k], NULL);
    P.n = 1;
}
