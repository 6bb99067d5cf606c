/* kernels_vit.c - see kernels_vit.h. */
#include "kernels_vit.h"

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
