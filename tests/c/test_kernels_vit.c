/* test_kernels_vit.c - the patch embedding of lib/kernels_vit.c (im2col +
 * gemm) against its naive twin (direct loops in double) on odd sizes, with a
 * strided image as PaSST reads a mel [T, M]; the same bits on 1 and 3
 * threads; overlapping strides. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "check.h"
#include "gap.h" /* rng_t */
#include "gemm.h"
#include "kernels_vit.h"
#include "parfor.h"
#include "util.h"

static rng_t R;

static float *rnd(size_t n) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)rng_normal(&R);
    return x;
}

int main(void) {
    rng_seed(&R, 11);
    /* H x W image stored transposed (frames major, as wav2mel's mel), patches ph x pw at stride sh x sw */
    static const int cfg[][6] = {{21, 37, 5, 4, 4, 3}, {16, 48, 16, 16, 16, 16}, {9, 20, 3, 5, 2, 2}, {7, 7, 7, 7, 1, 1}};
    for (size_t c = 0; c < sizeof cfg / sizeof cfg[0]; c++) {
        int H = cfg[c][0], W = cfg[c][1], ph = cfg[c][2], pw = cfg[c][3], sh = cfg[c][4], sw = cfg[c][5], D = 13;
        int Hp = (H - ph) / sh + 1, Wp = (W - pw) / sw + 1, P = Hp * Wp, K = ph * pw;
        float *img = rnd((size_t)H * W), *w = rnd((size_t)D * K), *b = rnd((size_t)D);
        for (size_t i = 0; i < (size_t)D * K; i++) w[i] /= sqrtf((float)K); /* outputs O(1), as in a model */
        float *out = xmalloc((size_t)P * D * sizeof(float)), *ref = xmalloc((size_t)P * D * sizeof(float));
        float *out3 = xmalloc((size_t)P * D * sizeof(float)), *cols = xmalloc((size_t)P * K * sizeof(float));
        gemm_init(1);
        patch_embed_forward(out, cols, img, 1, H, w, b, Hp, Wp, ph, pw, sh, sw, D);
        patch_embed_forward_naive(ref, img, 1, H, w, b, Hp, Wp, ph, pw, sh, sw, D);
        double err = 0;
        for (size_t i = 0; i < (size_t)P * D; i++) err = fmax(err, fabs((double)out[i] - ref[i]));
        char name[160];
        snprintf(name, sizeof name, "patch embedding %dx%d image, %dx%d patches, stride %dx%d: fast = naive within 1e-5",
                 H, W, ph, pw, sh, sw);
        CHECKF(err <= 1e-5, name, "max |diff| %g", err);
        gemm_init(3);
        patch_embed_forward(out3, cols, img, 1, H, w, b, Hp, Wp, ph, pw, sh, sw, D);
        int same = 1;
        for (size_t i = 0; i < (size_t)P * D; i++) same &= out3[i] == out[i];
        snprintf(name, sizeof name, "patch embedding %dx%d: 1 and 3 threads give the same bits", H, W);
        CHECK(same, name);
        free(img), free(w), free(b), free(out), free(ref), free(out3), free(cols);
    }
    parfor_shutdown();
    return check_exit();
}
