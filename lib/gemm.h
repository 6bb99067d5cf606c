/* gemm.h - the one matrix product of the models: C = alpha op(A) op(B) + beta C
 * (row-major; cblas_sgemm's arguments less the order), on the parfor pool.
 *
 * The product is cut into slabs of output columns (or rows, when there are
 * more rows than columns) whose boundaries depend only on M, N and K, never on
 * the thread count; each slab is a one-thread cblas_sgemm and the threads share
 * the slabs. OpenBLAS's kernels sum an element in an order that depends on the
 * shape of the call it is part of (its Haswell kernels change the last bits of
 * almost every element when a product is cut differently; its AVX-512 kernels
 * of some), so the same cut on every thread count gives the same bits on every
 * kernel, and OpenBLAS's own workers (which spin in sched_yield after each
 * product, taking the cores from ours) never run.
 *
 * WSAC_GEMM_THREADS=openblas hands whole products to OpenBLAS's threads instead
 * (for comparison: bench/README.md); the bits then depend on the thread count. */
#ifndef WSAC_GEMM_H
#define WSAC_GEMM_H

#include <cblas.h>

/* Start the parfor pool with n threads (n <= 0: all online cores) and keep
 * OpenBLAS to one thread; returns n. Call before any gemm that should run on
 * several threads; without it gemm runs the same slabs on the caller. */
int gemm_init(int n);

/* C[M, N] = alpha op(A)[M, K] op(B)[K, N] + beta C */
void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc);

/* The cut gemm uses for a product of M x N outputs: *bycol (slabs of columns
 * or of rows), *nslab slabs of *width (the last may be narrower). For tests. */
void gemm_plan(int M, int N, int *bycol, int *nslab, int *width);

#endif
