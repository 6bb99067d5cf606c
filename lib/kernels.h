/* kernels.h - the shared kernel layer: every layer once, as llm.c writes them,
 * x_forward / x_backward plus a naive twin (direct loops, double
 * accumulation) that tests compare the fast one with. A kernel never knows
 * which model calls it (docs: shared/reference/architecture.md, "kernels").
 *
 * Conventions (llm.c): outputs first, then inputs, then weights, then sizes;
 * a shape comment on every pointer. Backward functions ACCUMULATE into
 * parameter gradients (dw += ...) and OVERWRITE input gradients (din = ...)
 * unless said otherwise. Everything runs on the calling thread in a fixed
 * order (gemm, lib/gemm.c: cut by size alone): results are bit-identical run to run.
 *
 * Legend: B batch, C channels (Cin, Cout), T frames (rows), F frequency bins
 * (columns), P = T*F, K = Cin*9, N rows of a matrix, OC output width,
 * D embedding width. Activations of the convolutional layers are [B, C, T, F]
 * (PyTorch's NCHW). */
#ifndef WSAC_KERNELS_H
#define WSAC_KERNELS_H

#include <stddef.h>
#include <stdint.h>

/* ================================================================ convolution 3x3 (pad 1, stride 1, no bias) */

/* cols[K, T*F] = the zero-padded 3x3 neighbourhoods of in[Cin, T, F]:
 *   cols[(ci*3 + kh)*3 + kw, t*F + f] = in[ci, t + kh - 1, f + kw - 1], 0 outside */
void im2col3x3(float *cols, const float *in, int Cin, int T, int F);
/* The same for rows r0..r0+nr-1 and input channels c0 <= ci < c1 only (tiles
 * and threads of clap-audio): cols[(ci*3 + kh)*3 + kw, (r - r0)*F + f] */
void im2col3x3_rows(float *cols, const float *in, int c0, int c1, int T, int F, int r0, int nr);
/* din[Cin, T, F] += the transpose of im2col3x3 applied to dcols[K, T*F] */
void col2im3x3_add(float *din, const float *dcols, int Cin, int T, int F);

/* out[B, Cout, T, F] = conv2d(in[B, Cin, T, F], w[Cout, Cin, 3, 3], padding 1);
 * cols: scratch of conv3x3_scratch(Cin, T, F) floats */
size_t conv3x3_scratch(int Cin, int T, int F);
void conv3x3_forward(float *out, float *cols, const float *in, const float *w, int B, int Cin, int Cout, int T, int F);
void conv3x3_forward_naive(float *out, const float *in, const float *w, int B, int Cin, int Cout, int T, int F);
/* dw[Cout, Cin, 3, 3] += dL/dw; din[B, Cin, T, F] = dL/din (din may be NULL:
 * the first layer's input needs none) */
void conv3x3_backward(float *din, float *dw, float *cols, const float *dout, const float *in, const float *w, int B,
                      int Cin, int Cout, int T, int F);
void conv3x3_backward_naive(float *din, float *dw, const float *dout, const float *in, const float *w, int B, int Cin,
                            int Cout, int T, int F);

/* ================================================================ batch normalisation
 *
 * x is viewed as [O, C, S]: O outer rows, C channels, S inner elements per
 * channel and row. BatchNorm2d over [B, C, T, F] is O = B, S = T*F; CNN14's
 * bn0, which normalises the mel bins of [B, 1, T, M] (transpose(1, 3) in
 * cnns.py), is O = B*T, C = M, S = 1. */

/* Training mode (torch.nn.functional.batch_norm, training=True): statistics
 * of the batch, mean and biased variance over the O*S values of each channel
 * (accumulated in double); y = x * a + s with a = w / sqrt(var + eps),
 * s = b - mean * a, in float, as ATen's CPU kernel; mean[C] and rstd[C]
 * saved for the backward pass; running_mean/running_var (may be NULL)
 * updated as PyTorch does: r = (1 - momentum) r + momentum * stat, with the
 * UNBIASED variance (n / (n - 1)) for running_var. */
void batchnorm_forward_train(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                             const float *in, const float *w, const float *b, int O, int C, int S, float eps,
                             float momentum);
void batchnorm_forward_train_naive(float *out, float *mean, float *rstd, float *running_mean, float *running_var,
                                   const float *in, const float *w, const float *b, int O, int C, int S, float eps,
                                   float momentum);
/* Eval mode: the running statistics, folded the same way. */
void batchnorm_forward_eval(float *out, const float *in, const float *w, const float *b, const float *running_mean,
                            const float *running_var, int O, int C, int S, float eps);
/* The same in double from the raw tensors, rounded once (out may equal in). */
void batchnorm_forward_eval_naive(float *out, const float *in, const float *w, const float *b,
                                  const float *running_mean, const float *running_var, int O, int C, int S, float eps);
/* din = dL/dx (overwritten; din may equal dout), dw[C] += sum dout * xhat,
 * db[C] += sum dout, from the batch statistics the forward pass saved:
 *   din = w rstd (dout - mean(dout) - xhat mean(dout xhat)) */
void batchnorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *mean,
                        const float *rstd, const float *w, int O, int C, int S);
void batchnorm_backward_naive(float *din, float *dw, float *db, const float *dout, const float *in, const float *mean,
                              const float *rstd, const float *w, int O, int C, int S);
/* Synchronised BatchNorm for data-parallel training: fn (NULL: off) adds a
 * vector of per-channel sums over the ranks in place; batchnorm_forward_train
 * and batchnorm_backward then use the whole batch's statistics, and dw/db get
 * this rank's share (kernels_conv.c). */
void batchnorm_set_reduce(void (*fn)(double *x, size_t n));

/* ================================================================ ReLU */

/* out[n] = max(in, 0) (out may equal in) */
void relu_forward(float *out, const float *in, size_t n);
/* din[n] = dout where out > 0, else 0 (din may equal dout) */
void relu_backward(float *din, const float *dout, const float *out, size_t n);

/* ================================================================ pooling */

/* out[R, T/2, F/2] = mean of each 2x2 window of in[R, T, F] (R = B*C; floor:
 * an odd last row or column is dropped), summed in double and divided by 4,
 * as ATen's cpu_avg_pool for float */
void avgpool2x2_forward(float *out, const float *in, int R, int T, int F);
/* din[R, T, F] = dout / 4 spread over each window, 0 on a dropped row/column */
void avgpool2x2_backward(float *din, const float *dout, int R, int T, int F);

/* CNN14's head pooling (cnns.py: torch.mean(x, dim=3); max over time + mean
 * over time): feat[N, ] = max_t m + mean_t m, m[N, T] = mean_f x[N, T, F]
 * (N = B*C); argmax[N] (may be NULL) the first frame of the maximum, as
 * torch.max(dim) returns it. */
void timefreq_pool_forward(float *feat, int *argmax, const float *in, int N, int T, int F);
/* din[N, T, F] = (dfeat [t == argmax] + dfeat / T) / F */
void timefreq_pool_backward(float *din, const float *dfeat, const int *argmax, int N, int T, int F);

/* ================================================================ linear (nn.Linear: W[OC, C]) */

/* out[N, OC] = in[N, C] @ W^T + b is linear_forward in nn.h. Backward:
 * din[N, C] = dout @ W (overwritten; may be NULL), dW[OC, C] += dout^T @ in,
 * db[OC] += column sums of dout (may be NULL) */
void linear_backward(float *din, float *dW, float *db, const float *dout, const float *in, const float *W, int N,
                     int C, int OC);
void linear_backward_naive(float *din, float *dW, float *db, const float *dout, const float *in, const float *W,
                           int N, int C, int OC);

/* ================================================================ L2 normalisation */

/* out[N, D] = in / max(||in_row||, 1e-12) (torch.nn.functional.normalize);
 * norm[N] (may be NULL) the divisor used */
void l2norm_forward(float *out, float *norm, const float *in, int N, int D);
/* din[N, D] = (dout - out (out . dout)) / norm (overwritten); when the norm
 * was clamped to 1e-12, din = dout / 1e-12 as autograd gives */
void l2norm_backward(float *din, const float *dout, const float *out, const float *norm, int N, int D);

/* ================================================================ transformer layers (kernels_tf.c) */

/* db[OC] += column sums of dout[N, OC], each column summed in row order */
void bias_backward(float *db, const float *dout, int N, int OC);

/* HF Conv1D: out[N, OC] = in[N, C] @ W[C, OC] + b[OC]  (b may be NULL) */
void conv1d_forward(float *out, const float *in, const float *W, const float *b, int N, int C, int OC);
void conv1d_forward_naive(float *out, const float *in, const float *W, const float *b, int N, int C, int OC);
/* din[N, C] = dout @ W^T (overwritten; din may be NULL); dW[C, OC] += in^T @ dout;
 * db[OC] += column sums of dout (db may be NULL) */
void conv1d_backward(float *din, float *dW, float *db, const float *dout, const float *in, const float *W, int N,
                     int C, int OC);
void conv1d_backward_naive(float *din, float *dW, float *db, const float *dout, const float *in, const float *W,
                           int N, int C, int OC);

/* out[N, C] = (in - mean) * rstd * w + b, biased variance; saves mean[N], rstd[N] */
void layernorm_forward_train(float *out, float *mean, float *rstd, const float *in, const float *w, const float *b,
                             int N, int C, float eps);
/* din[N, C] += ..., dw[C] += ..., db[C] += ... */
void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                        const float *mean, const float *rstd, int N, int C);
void layernorm_backward_naive(float *din, float *dw, float *db, const float *dout, const float *in, const float *w,
                              const float *mean, const float *rstd, int N, int C);

/* gelu_new: out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), written as
 * x * sigmoid(2u) so one expf does it; out may equal in */
void gelu_forward(float *out, const float *in, size_t n);
/* din[n] = dout * gelu'(in) (overwritten; din may equal dout) */
void gelu_backward(float *din, const float *dout, const float *in, size_t n);
void gelu_forward_naive(float *out, const float *in, size_t n);

/* Self-attention over packed sequences: sequence b has rows
 * off[b] .. off[b]+len[b]-1 of qkv[N, 3C] (q | k | v, head h in columns
 * h*hs .. h*hs+hs-1 of each). causal: position t sees positions 0..t (GPT-2);
 * otherwise all len[b] of its sequence (BERT: the padding HF masks is simply
 * not there, and masked scores' exp() is 0 in HF too). out[N, C];
 * att[B, NH, Tm, Tm] keeps the softmax (row t, the columns t sees) for the
 * backward pass (Tm >= every len). Scores are divided by sqrt(C / NH).
 * mask[B, NH, Tm, Tm] (NULL: none): attention dropout, the probabilities
 * multiplied by mask * dscale (GPT2Attention.attn_dropout). */
void attention_forward(float *out, float *att, const float *qkv, const uint8_t *mask, float dscale, const int *off,
                       const int *len, int B, int Tm, int C, int NH, int causal);
/* dqkv[N, 3C] overwritten */
void attention_backward(float *dqkv, const float *dout, const float *qkv, const float *att, const uint8_t *mask,
                        float dscale, const int *off, const int *len, int B, int Tm, int C, int NH, int causal);
/* Without causal, a (sequence, head) is two sgemms forward and four backward;
 * the naive twins run the scalar loops the causal path uses, for tests. */
void attention_forward_naive(float *out, float *att, const float *qkv, const uint8_t *mask, float dscale,
                             const int *off, const int *len, int B, int Tm, int C, int NH, int causal);
void attention_backward_naive(float *dqkv, const float *dout, const float *qkv, const float *att,
                              const uint8_t *mask, float dscale, const int *off, const int *len, int B, int Tm, int C,
                              int NH, int causal);

/* Dropout masks: mask[i] = 1 (keep) with probability 1 - p, from a
 * counter-based generator: the bits depend on (key, i) only, not on threads.
 * x[i] *= mask[i] * dscale applies one (dscale = 1 / (1 - p), as torch). */
void dropout_mask(uint8_t *mask, size_t n, float p, uint64_t key);
void dropout_apply(float *x, const uint8_t *mask, float dscale, size_t n);

/* Softmax cross-entropy of each row of logits[M, V] against tgt[M]; loss[M]
 * = logsumexp - logit[tgt]. If scale != 0, logits is replaced by the
 * gradient scale * (softmax - onehot(tgt)). */
void crossentropy_forward_backward(float *loss, float *logits, const int *tgt, int M, int V, float scale);

/* Exact GELU, 0.5 x (1 + erf(x / sqrt 2)) (BERT's "gelu", nn.GELU()); out
 * may equal in. Backward: din = dout (Phi(x) + x phi(x)) (overwritten; din
 * may equal dout). Threaded over blocks of nn.c's vectorised float kernels
 * (gelu_erf_inplace, gelu_erf_grad: within 1 ulp of the exact GELU; the same
 * bits for any thread count); the naive twins compute in double and round once
 * (glibc's erf: ~15x slower), the reference of the tests. */
void gelu_erf_forward(float *out, const float *in, size_t n);
void gelu_erf_backward(float *din, const float *dout, const float *in, size_t n);
void gelu_erf_forward_naive(float *out, const float *in, size_t n);
void gelu_erf_backward_naive(float *din, const float *dout, const float *in, size_t n);

/* Embedding lookup's gradient: dW[ids[n], :] += dout[n, :] for n in order
 * (dW[rows, C], ids[N]) */
void embedding_backward(float *dW, const float *dout, const int32_t *ids, int N, int C);

#endif
