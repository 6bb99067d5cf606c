/* pool.h - a fixed pool of threads that run one task at a time: the caller
 * and n-1 workers each call fn(ctx, tid, n) and pool_run returns when all
 * have returned. Used by the CLAP encoders (lib/bert.c, lib/cnn14.c), whose
 * forward passes are many short tasks: workers spin ~0.1 ms for the next
 * task, then sleep on a condition variable, so an idle filter waiting for
 * input costs nothing, and no thread is created per task (a thread per
 * layer cost ~20 us each, and AddressSanitizer keeps ~190 bytes per thread
 * ever created). How a task splits its work is its own business; a task
 * whose result must not depend on the thread count splits it so. */
#ifndef WSAC_POOL_H
#define WSAC_POOL_H

typedef void pool_fn(void *ctx, int tid, int nthreads);
typedef struct thread_pool thread_pool;

/* n threads in all, the caller's included (n <= 1: no workers). */
thread_pool *pool_new(int n);
int pool_threads(const thread_pool *p);
/* Run fn on every thread; returns when every call has returned. Not
 * reentrant: one task at a time, from one caller thread. */
void pool_run(thread_pool *p, pool_fn *fn, void *ctx);
/* Stop and join the workers (NULL: nothing). */
void pool_free(thread_pool *p);

#endif
