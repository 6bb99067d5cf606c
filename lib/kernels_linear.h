/* kernels_linear.h - packed linear: out[M, OC] = in[M, C] @ W[OC, C]^T + b
 * with W repacked once, at load time, in panels of 64 output columns, each
 * stored [C][64], so one step of the reduction reads 64 contiguous weights.
 * The inference matrix product of the CLAP text encoder (lib/bert.c).
 *
 * Why not gemm (lib/gemm.c, OpenBLAS): OpenBLAS packs W anew on every call,
 * which for a few rows (one caption: ~15 tokens) costs more than the product:
 * over BERT-base's 72 matrices, 14 rows take 60 ms with cblas_sgemm and 25 ms
 * here; 922 rows run at 99 and 110 GFLOP/s (AVX-512, one core;
 * bench/README.md). And every row is computed alone: out[i, c] is
 * sum_k in[i,k] W[c,k] accumulated in k order by fused multiply-adds from 0,
 * then + b[c], the same operations whatever the number of rows, the row's
 * place in the batch, the panel range or the thread, so a caller that splits
 * panels over threads gets bits independent of batching and threads
 * (cblas_sgemm's bits for a row change with the number of rows: M = 1 goes
 * through gemv, small products through other kernels). The price: a copy of
 * the matrices (the caller may release the originals).
 *
 * Kernels: AVX-512 (24 accumulators of 16 lanes, 6 rows x 64 columns),
 * AVX2+FMA (a quarter panel at a time) and generic C, picked at run time; the
 * FMA variants agree bit for bit. WSAC_KERNEL=avx2|generic asks for a lesser
 * one (tests).
 *
 * Legend: M rows, C reduction length (input width), OC output columns. */
#ifndef WSAC_KERNELS_LINEAR_H
#define WSAC_KERNELS_LINEAR_H

#define PLIN_PW 64 /* output columns per panel */

/* W[OC, C] repacked: panel p holds columns p*64 .. p*64+63, [C][64], zero past OC */
typedef struct {
    float *p; /* [ceil(OC/64), C, 64], 64-byte aligned, owned */
    float *b; /* [OC] bias, owned; NULL: none */
    int C, OC;
} packed_linear;

/* Activation applied to the outputs as each tile is written (while it is in
 * the cache): none, exact GELU (gelu_erf_inplace, nn.h), ReLU. */
enum { PLIN_NONE, PLIN_GELU, PLIN_RELU };

/* L = the n matrices W[i][oc[i], C] stacked along the output
 * (torch.cat(dim=0): q, k and v as one [3H, H] product), biases likewise
 * (b NULL: no bias). */
void packed_linear_pack(packed_linear *L, int n, const float *const *W, const float *const *b, const int *oc, int C);
void packed_linear_free(packed_linear *L);
/* panels of an OC-wide product: ceil(OC / 64) */
int packed_linear_panels(int OC);

/* out[M, OC] (row stride ldo) = act(in[M, C] (row stride lda) @ W^T + b),
 * panels [p0, p1) only (columns p0*64 .. min(p1*64, OC) - 1), every row;
 * threads may run disjoint panel ranges of one product at once. */
void packed_linear_forward(float *out, int ldo, const float *in, int lda, const packed_linear *L, int M, int p0,
                           int p1, int act);
/* The same from the unpacked W[OC, C], b[OC] (may be NULL), all columns,
 * direct loops in double (GELU in double), rounded once: for tests. */
void packed_linear_forward_naive(float *out, int ldo, const float *in, int lda, const float *W, const float *b, int M,
                                 int C, int OC, int act);

/* The kernel in use: "avx512", "avx2" or "generic" (first call: the best the
 * CPU has, or a lesser one WSAC_KERNEL names). */
const char *packed_linear_kernel(void);
/* Use the named kernel if the CPU has it (NULL: pick as above); returns the
 * one in use. For tests that compare the variants; not while a product runs. */
const char *packed_linear_use(const char *want);

#endif
