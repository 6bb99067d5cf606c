/* nn.h - neural network layer kernels shared by the model filters.
 *
 * llm.c style: outputs first, then inputs, then weights, then sizes; a shape
 * comment on every pointer. Matrix products go to OpenBLAS (cblas_sgemm), whose
 * thread count the tools set from --threads; OpenBLAS splits the output, not
 * the reduction, so results are bit-identical run to run for a fixed thread
 * count. Every kernel has a naive reference twin (suffix _naive) for tests.
 *
 * Legend: N rows (tokens, frames, batch items), C input width, OC output width. */
#ifndef WSAC_NN_H
#define WSAC_NN_H

#include <stddef.h>

/* out[N, OC] = in[N, C] @ W[OC, C]^T + b[OC]   (torch.nn.functional.linear; b may be NULL) */
void linear_forward(float *out, const float *in, const float *W, const float *b, int N, int C, int OC);
void linear_forward_naive(float *out, const float *in, const float *W, const float *b, int N, int C, int OC);

/* x[n] = max(x, 0) in place */
void relu_inplace(float *x, size_t n);

/* x[N, C] /= max(||x_row||_2, 1e-12)   (torch.nn.functional.normalize, eps 1e-12) */
void l2_normalize_rows(float *x, int N, int C);

/* out[N, C] = LayerNorm(in) * w + b, biased variance (torch.nn.functional.layer_norm);
 * out may equal in */
void layernorm_forward(float *out, const float *in, const float *w, const float *b, int N, int C, float eps);
void layernorm_forward_naive(float *out, const float *in, const float *w, const float *b, int N, int C, float eps);

/* x = 0.5 x (1 + erf(x / sqrt 2)) in place: exact GELU (BERT, nn.GELU
 * default), vectorised in float (nn.c): within 3.9e-7 of the exact value,
 * under 1 ulp; the same bits on every machine. Its naive twin is
 * gelu_erf_forward_naive (kernels.h: double, rounded once). */
void gelu_erf_inplace(float *x, size_t n);
/* din[n] = dout * (Phi(x) + x phi(x)), its gradient, vectorised the same way
 * (din may equal dout); naive twin gelu_erf_backward_naive (kernels.h). */
void gelu_erf_grad(float *din, const float *dout, const float *x, size_t n);
/* x = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) in place: gelu_new (GPT-2) */
void gelu_tanh_inplace(float *x, size_t n);

/* row-wise softmax of x[N, C] in place, max-subtracted */
void softmax_rows(float *x, int N, int C);

/* Set the OpenBLAS thread count (n <= 0: all online cores); returns it. */
int nn_set_threads(int n);

#endif
