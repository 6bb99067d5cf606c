/* kernels_vit.c - see kernels_vit.h. */
#include "kernels_vit.h"

#include "kernels.h"
#include "nn.h"
#include "parfor.h"

typedef struct {
    float *cols;
    const float *img;
    long hs, ws;
    int Wp, ph, pw, sh, sw;
} im2col_ctx;

static void im2col_rows(void *p, int lo, int hi) {
    im2col_ctx *x = p;
    size_t K = (size_t)x->ph * (size_t)x->pw;
    for (int r = lo; r < hi; r++) {
        int hp = r / x->Wp, wp = r % x->Wp;
        float *c = x->cols + (size_t)r * K;
        const float *o = x->img + (long)hp * x->sh * x->hs + (long)wp * x->sw * x->ws;
        for (int i = 0; i < x->ph; i++)
            for (int j = 0; j < x->pw; j++) *c++ = o[i * x->hs + j * x->ws];
    }
}

void patch_im2col(float *cols, const float *img, long hs, long ws, int Hp, int Wp, int ph, int pw, int sh, int sw) {
    im2col_ctx x = {cols, img, hs, ws, Wp, ph, pw, sh, sw};
    parfor(Hp * Wp, im2col_rows, &x); /* pure copies: any split gives the same bits */
}

void patch_embed_forward(float *out, float *cols, const float *img, long hs, long ws, const float *w, const float *b,
                         int Hp, int Wp, int ph, int pw, int sh, int sw, int D) {
    patch_im2col(cols, img, hs, ws, Hp, Wp, ph, pw, sh, sw);
    linear_forward(out, cols, w, b, Hp * Wp, ph * pw, D);
}

void patch_embed_forward_naive(float *out, const float *img, long hs, long ws, const float *w, const float *b, int Hp,
                               int Wp, int ph, int pw, int sh, int sw, int D) {
    for (int hp = 0; hp < Hp; hp++)
        for (int wp = 0; wp < Wp; wp++)
            for (int d = 0; d < D; d++) {
                double s = b ? b[d] : 0;
                const float *wd = w + (size_t)d * ph * pw;
                for (int i = 0; i < ph; i++)
                    for (int j = 0; j < pw; j++)
                        s += (double)wd[i * pw + j] * img[(long)(hp * sh + i) * hs + (long)(wp * sw + j) * ws];
                out[((size_t)hp * Wp + wp) * D + d] = (float)s;
            }
}

void patch_embed_backward(float *dimg, float *dw, float *db, float *dcols, const float *dout, const float *cols,
                          const float *w, long hs, long ws, int Hp, int Wp, int ph, int pw, int sh, int sw, int D) {
    int P = Hp * Wp, K = ph * pw;
    /* the weight and bias gradients are the linear layer's (linear_backward overwrites its din, so the
     * image gradient goes through dcols and is added below) */
    linear_backward(dimg ? dcols : NULL, dw, db, dout, cols, w, P, K, D);
    if (!dimg) return;
    /* col2im: in patch order, so overlapping patches add in a fixed order (serial: a pixel may belong to
     * several patches) */
    for (int r = 0; r < P; r++) {
        int hp = r / Wp, wp = r % Wp;
        const float *c = dcols + (size_t)r * K;
        float *o = dimg + (long)hp * sh * hs + (long)wp * sw * ws;
        for (int i = 0; i < ph; i++)
            for (int j = 0; j < pw; j++) o[i * hs + j * ws] += *c++;
    }
}

void patch_embed_backward_naive(float *dimg, float *dw, float *db, const float *dout, const float *img, const float *w,
                                long hs, long ws, int Hp, int Wp, int ph, int pw, int sh, int sw, int D) {
    int K = ph * pw;
    for (int d = 0; d < D; d++) {
        for (int k = 0; k < K; k++) {
            int i = k / pw, j = k % pw;
            double s = 0;
            for (int hp = 0; hp < Hp; hp++)
                for (int wp = 0; wp < Wp; wp++)
                    s += (double)dout[((size_t)hp * Wp + wp) * D + d] *
                         img[(long)(hp * sh + i) * hs + (long)(wp * sw + j) * ws];
            dw[(size_t)d * K + k] += (float)s;
        }
        if (db) {
            double s = 0;
            for (int p = 0; p < Hp * Wp; p++) s += dout[(size_t)p * D + d];
            db[d] += (float)s;
        }
    }
    if (!dimg) return;
    /* each pixel: the sum over the patches that hold it */
    int H = (Hp - 1) * sh + ph, W = (Wp - 1) * sw + pw;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double s = 0;
            for (int hp = 0; hp < Hp; hp++) {
                int i = y - hp * sh;
                if (i < 0 || i >= ph) continue;
                for (int wp = 0; wp < Wp; wp++) {
                    int j = x - wp * sw;
                    if (j < 0 || j >= pw) continue;
                    const float *dd = dout + ((size_t)hp * Wp + wp) * D;
                    for (int d = 0; d < D; d++) s += (double)dd[d] * w[(size_t)d * K + i * pw + j];
                }
            }
            dimg[(long)y * hs + (long)x * ws] += (float)s;
        }
}
