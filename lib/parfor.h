/* parfor.h - the decoder's threads: its element-wise kernels (layernorm,
 * attention, GELU, softmax, AdamW) and the slabs of its matrix products (gemm
 * in gpt.c) run over static ranges on one lib/pool.c pool.
 *
 * parfor(n, fn, ctx) splits [0, n) into as many contiguous ranges as there are
 * threads and runs fn(ctx, lo, hi) on each; the caller's thread takes the first
 * range. Kernels only ever write disjoint outputs per index and never reduce
 * across ranges, so results do not depend on the thread count. */
#ifndef WSAC_PARFOR_H
#define WSAC_PARFOR_H

typedef void (*parfor_fn)(void *ctx, int lo, int hi);

/* Start n-1 worker threads (n <= 1: none). Call once, before any parfor. */
void parfor_init(int n);
int parfor_threads(void);
/* Run fn over [0, n); returns when every range is done. Not reentrant. */
void parfor(int n, parfor_fn fn, void *ctx);
/* Stop the workers (optional at exit; valgrind-clean runs call it). */
void parfor_shutdown(void);

#endif
