/* kernels_vit.h - the vision-transformer layers the shared kernel layer
 * (kernels.h, nn.h) lacks: the patch embedding, a strided 2-D convolution
 * with one input channel whose kernel tiles the image (PaSST: 16x16 patches,
 * stride 16; overlapping strides work too), as im2col + gemm.
 *
 * Conventions of kernels.h: outputs first, then inputs, then weights, then
 * sizes; gemm (lib/gemm.h) cuts by size alone, so the bits do not depend on
 * the thread count.
 *
 * Legend: H image rows (PaSST: mel bins), W image columns (frames), ph x pw
 * the patch, sh x sw the stride, Hp = (H - ph) / sh + 1 and Wp = (W - pw) / sw
 * + 1 the patch grid (floor: a partial last patch is dropped, as
 * nn.Conv2d without padding), P = Hp * Wp patches, K = ph * pw, D embedding
 * width. */
#ifndef WSAC_KERNELS_VIT_H
#define WSAC_KERNELS_VIT_H

#include <stddef.h>

/* The image is read through strides, so a mel spectrogram stored [T, M]
 * (frames major) is the image [M, T] PaSST sees with hs = 1, ws = M:
 * pixel (h, w) = img[h * hs + w * ws]. */

/* cols[P, K]: row p = hp * Wp + wp (nn.Conv2d's output flattened row-major),
 * column k = i * pw + j holds pixel (hp * sh + i, wp * sw + j) */
void patch_im2col(float *cols, const float *img, long hs, long ws, int Hp, int Wp, int ph, int pw, int sh, int sw);

/* out[P, D] = conv2d(img[1, 1, H, W], w[D, 1, ph, pw], b[D], stride (sh, sw)),
 * flattened and transposed (x.flatten(2).transpose(1, 2)): one row per patch;
 * cols: scratch of P * K floats */
void patch_embed_forward(float *out, float *cols, const float *img, long hs, long ws, const float *w, const float *b,
                         int Hp, int Wp, int ph, int pw, int sh, int sw, int D);
/* The same as direct loops in double (a reference for tests). */
void patch_embed_forward_naive(float *out, const float *img, long hs, long ws, const float *w, const float *b, int Hp,
                               int Wp, int ph, int pw, int sh, int sw, int D);

/* Backward of patch_embed_forward from dout[P, D] and the forward pass's
 * cols[P, K]: dw[D, K] += dout^T @ cols, db[D] += column sums of dout (may be
 * NULL), and, when dimg is not NULL, dimg (read through the same strides)
 * += every patch's share (overlapping patches add up); dcols: scratch of P * K
 * floats, used only for dimg (may be NULL otherwise). PaSST's mel needs no
 * gradient: dimg NULL. Accumulates throughout (several segments add into one
 * dw). */
void patch_embed_backward(float *dimg, float *dw, float *db, float *dcols, const float *dout, const float *cols,
                          const float *w, long hs, long ws, int Hp, int Wp, int ph, int pw, int sh, int sw, int D);
/* The same as direct loops in double from the image (not cols), each
 * gradient summed in double and added once (a reference for tests). */
void patch_embed_backward_naive(float *dimg, float *dw, float *db, const float *dout, const float *img, const float *w,
                                long hs, long ws, int Hp, int Wp, int ph, int pw, int sh, int sw, int D);

#endif
