/* pool.c - see pool.h. */
#include "pool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "util.h"

struct thread_pool {
    int n;
    pthread_t *th;
    struct worker_arg *args;
    pool_fn *fn;
    void *ctx;
    atomic_uint gen;  /* bumped to start a task (or to quit) */
    atomic_int busy;  /* workers still running the current task */
    atomic_int sleepers;
    int quit;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

struct worker_arg {
    thread_pool *p;
    int tid;
};

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static unsigned wait_gen(thread_pool *p, unsigned seen) {
    double t0 = now_seconds();
    for (int i = 1;; i++) {
        unsigned g = atomic_load(&p->gen);
        if (g != seen) return g;
        cpu_relax();
        if (i % 256 == 0 && now_seconds() - t0 > 1e-4) break;
    }
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->sleepers, 1);
    unsigned g;
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->sleepers, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *arg) {
    struct worker_arg *wa = arg;
    thread_pool *p = wa->p;
    unsigned seen = 0;
    for (;;) {
        seen = wait_gen(p, seen);
        if (p->quit) return NULL;
        p->fn(p->ctx, wa->tid, p->n);
        atomic_fetch_sub(&p->busy, 1);
    }
}

static void wake(thread_pool *p) {
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

void pool_run(thread_pool *p, pool_fn *fn, void *ctx) {
    if (p->n == 1) {
        fn(ctx, 0, 1);
        return;
    }
    p->fn = fn;
    p->ctx = ctx;
    atomic_store(&p->busy, p->n - 1);
    atomic_fetch_add(&p->gen, 1);
    wake(p);
    fn(ctx, 0, p->n);
    for (long i = 1; atomic_load(&p->busy) > 0; i++) {
        cpu_relax();
        if (i % 4096 == 0) sched_yield(); /* more threads than free cores */
    }
}

thread_pool *pool_new(int n) {
    thread_pool *p = xcalloc(1, sizeof *p);
    p->n = n < 1 ? 1 : n;
    atomic_init(&p->gen, 0);
    atomic_init(&p->busy, 0);
    atomic_init(&p->sleepers, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (p->n == 1) return p;
    p->th = xcalloc((size_t)p->n, sizeof(pthread_t));
    p->args = xcalloc((size_t)p->n, sizeof(struct worker_arg));
    for (int t = 1; t < p->n; t++) {
        p->args[t].p = p;
        p->args[t].tid = t;
        if (pthread_create(&p->th[t], NULL, worker_main, &p->args[t])) die("cannot start a thread");
    }
    return p;
}

int pool_threads(const thread_pool *p) { return p->n; }

void pool_free(thread_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        p->quit = 1;
        atomic_fetch_add(&p->gen, 1);
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
        for (int t = 1; t < p->n; t++) pthread_join(p->th[t], NULL);
    }
    free(p->th);
    free(p->args);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p);
}
