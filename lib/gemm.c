/* gemm.c - see gemm.h. */
#include "gemm.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "parfor.h"

/* 0: OpenBLAS threads whole products (WSAC_GEMM_THREADS=openblas) */
static int own_split = 1;
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

/* OpenBLAS to one thread once, whoever calls first: a slab run on OpenBLAS's
 * threads would be cut by their count again (and change the bits). */
static void blas_single(void) {
    const char *e = getenv("WSAC_GEMM_THREADS");
    own_split = !(e && !strcmp(e, "openblas"));
    if (own_split) nn_set_threads(1);
}

int gemm_init(int n) {
    n = nn_set_threads(n); /* n <= 0: the core count; OpenBLAS's count for the openblas mode */
    parfor_init(n);
    const char *e = getenv("WSAC_GEMM_THREADS");
    own_split = !(e && !strcmp(e, "openblas"));
    if (own_split) nn_set_threads(1);
    pthread_once(&blas_once, blas_single); /* mark done: later calls keep this choice */
    return n;
}

/* Slabs: a power of two (2 and 4 threads share them evenly), at least 64
 * outputs wide, on multiples of 16 (whole SIMD blocks). */
void gemm_plan(int M, int N, int *bycol, int *nslab, int *width) {
    int col = N >= M, D = col ? N : M;
    int s = D >= 2048 ? 8 : D >= 512 ? 4 : D >= 128 ? 2 : 1;
    int w = (D + s - 1) / s;
    w = (w + 15) / 16 * 16;
    if (w < 1) w = 1;
    *bycol = col;
    *width = w;
    *nslab = D > 0 ? (D + w - 1) / w : 0;
}

typedef struct {
    CBLAS_TRANSPOSE ta, tb;
    int M, N, K, lda, ldb, ldc, bycol, width;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_ctx;

static void slab_range(void *p, int lo, int hi) {
    gemm_ctx *g = p;
    for (int s = lo; s < hi; s++) {
        if (g->bycol) {
            int n0 = s * g->width, n1 = n0 + g->width < g->N ? n0 + g->width : g->N;
            const float *B = g->tb == CblasTrans ? g->B + (size_t)n0 * g->ldb : g->B + n0;
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, g->M, n1 - n0, g->K, g->alpha, g->A, g->lda, B, g->ldb,
                        g->beta, g->C + n0, g->ldc);
        } else {
            int m0 = s * g->width, m1 = m0 + g->width < g->M ? m0 + g->width : g->M;
            const float *A = g->ta == CblasTrans ? g->A + m0 : g->A + (size_t)m0 * g->lda;
            cblas_sgemm(CblasRowMajor, g->ta, g->tb, m1 - m0, g->N, g->K, g->alpha, A, g->lda, g->B, g->ldb,
                        g->beta, g->C + (size_t)m0 * g->ldc, g->ldc);
        }
    }
}

void gemm(CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K, float alpha, const float *A, int lda,
          const float *B, int ldb, float beta, float *C, int ldc) {
    pthread_once(&blas_once, blas_single);
    if (M <= 0 || N <= 0) return;
    if (!own_split) {
        cblas_sgemm(CblasRowMajor, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
        return;
    }
    gemm_ctx g = {ta, tb, M, N, K, lda, ldb, ldc, 0, 0, alpha, beta, A, B, C};
    int ns;
    gemm_plan(M, N, &g.bycol, &ns, &g.width);
    parfor(ns, slab_range, &g);
}
