/* test_kernels_vit.c - the patch embedding of lib/kernels_vit.c (im2col +
 * gemm) against its naive twin (direct loops in double) on odd sizes, with a
 * strided image as PaSST reads a mel [T, M]; the same bits on 1 and 3
 * threads; overlapping strides. The backward pass (weight, bias and image
 * gradients) against its naive twin and central differences of a scalar loss
 * in double, on the same odd sizes. */
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

/* L = sum_p,d g[p, d] * out[p, d] in double, out from the naive forward (double inside, rounded once) */
static double loss_of(const float *img, long hs, long ws, const float *w, const float *b, const float *g, int Hp, int Wp,
                      int ph, int pw, int sh, int sw, int D, float *tmp) {
    patch_embed_forward_naive(tmp, img, hs, ws, w, b, Hp, Wp, ph, pw, sh, sw, D);
    double L = 0;
    for (size_t i = 0; i < (size_t)Hp * Wp * D; i++) L += (double)g[i] * tmp[i];
    return L;
}

static double relmax(const float *a, const float *b, size_t n) {
    double e = 0, m = 1e-30;
    for (size_t i = 0; i < n; i++) e = fmax(e, fabs((double)a[i] - b[i])), m = fmax(m, fabs((double)b[i]));
    return e / m;
}

/* patch_embed_backward: fast = naive (1e-5 of the largest), the same bits at 1 and 3 threads, and a few
 * entries of each gradient against central differences (float inputs, a double loss: step 1e-2, 2e-3) */
static void test_backward(int H, int W, int ph, int pw, int sh, int sw, int D) {
    int Hp = (H - ph) / sh + 1, Wp = (W - pw) / sw + 1, P = Hp * Wp, K = ph * pw;
    float *img = rnd((size_t)H * W), *w = rnd((size_t)D * K), *b = rnd((size_t)D), *g = rnd((size_t)P * D);
    for (size_t i = 0; i < (size_t)D * K; i++) w[i] /= sqrtf((float)K);
    float *out = xmalloc((size_t)P * D * sizeof(float)), *cols = xmalloc((size_t)P * K * sizeof(float));
    float *dcols = xmalloc((size_t)P * K * sizeof(float));
    float *dw = xcalloc((size_t)D * K, sizeof(float)), *db = xcalloc((size_t)D, sizeof(float));
    float *di = xcalloc((size_t)H * W, sizeof(float));
    float *dw3 = xcalloc((size_t)D * K, sizeof(float)), *db3 = xcalloc((size_t)D, sizeof(float));
    float *di3 = xcalloc((size_t)H * W, sizeof(float));
    float *rw = xcalloc((size_t)D * K, sizeof(float)), *rb = xcalloc((size_t)D, sizeof(float));
    float *ri = xcalloc((size_t)H * W, sizeof(float));
    /* the image stored [W, H] (hs = 1, ws = H): a mel [T, M] */
    gemm_init(1);
    patch_embed_forward(out, cols, img, 1, H, w, b, Hp, Wp, ph, pw, sh, sw, D);
    patch_embed_backward(di, dw, db, dcols, g, cols, w, 1, H, Hp, Wp, ph, pw, sh, sw, D);
    patch_embed_backward_naive(ri, rw, rb, g, img, w, 1, H, Hp, Wp, ph, pw, sh, sw, D);
    gemm_init(3);
    patch_embed_backward(di3, dw3, db3, dcols, g, cols, w, 1, H, Hp, Wp, ph, pw, sh, sw, D);
    gemm_init(1);
    double ew = relmax(dw, rw, (size_t)D * K), eb = relmax(db, rb, (size_t)D), ei = relmax(di, ri, (size_t)H * W);
    char name[200];
    snprintf(name, sizeof name,
             "patch embedding backward %dx%d, %dx%d patches, stride %dx%d, D %d: dw, db, dimg = naive within 1e-5", H, W,
             ph, pw, sh, sw, D);
    CHECKF(ew <= 1e-5 && eb <= 1e-5 && ei <= 1e-5, name, "rel max diff dw %g db %g dimg %g", ew, eb, ei);
    int same = 1;
    for (size_t i = 0; i < (size_t)D * K; i++) same &= dw[i] == dw3[i];
    for (size_t i = 0; i < (size_t)D; i++) same &= db[i] == db3[i];
    for (size_t i = 0; i < (size_t)H * W; i++) same &= di[i] == di3[i];
    snprintf(name, sizeof name, "patch embedding backward %dx%d: 1 and 3 threads give the same bits", H, W);
    CHECK(same, name);
    /* accumulation: a second call adds the same again */
    patch_embed_backward(di, dw, db, dcols, g, cols, w, 1, H, Hp, Wp, ph, pw, sh, sw, D);
    int twice = 1;
    for (size_t i = 0; i < (size_t)D * K; i++) twice &= fabs(dw[i] - 2 * dw3[i]) <= 1e-6 * (1 + fabs(dw3[i]));
    for (size_t i = 0; i < (size_t)H * W; i++) twice &= fabs(di[i] - 2 * di3[i]) <= 1e-6 * (1 + fabs(di3[i]));
    snprintf(name, sizeof name, "patch embedding backward %dx%d: gradients accumulate", H, W);
    CHECK(twice, name);
    /* central differences */
    double worst = 0;
    struct {
        float *x, *grad;
        size_t n;
    } v[3] = {{w, rw, (size_t)D * K}, {b, rb, (size_t)D}, {img, ri, (size_t)H * W}};
    for (int t = 0; t < 3; t++)
        for (int s = 0; s < 5; s++) {
            size_t i = (size_t)(rng_uniform(&R) * v[t].n);
            float keep = v[t].x[i], h = 1e-2f;
            v[t].x[i] = keep + h;
            double lp = loss_of(img, 1, H, w, b, g, Hp, Wp, ph, pw, sh, sw, D, out);
            v[t].x[i] = keep - h;
            double lm = loss_of(img, 1, H, w, b, g, Hp, Wp, ph, pw, sh, sw, D, out);
            v[t].x[i] = keep;
            double fd = (lp - lm) / ((double)(keep + h) - (double)(keep - h));
            worst = fmax(worst, fabs(fd - v[t].grad[i]) / fmax(1.0, fabs(fd)));
        }
    snprintf(name, sizeof name, "patch embedding backward %dx%d: = central differences within 2e-3", H, W);
    CHECKF(worst <= 2e-3, name, "worst |fd - grad| / max(1, |fd|) = %g", worst);
    free(img), free(w), free(b), free(g), free(out), free(cols), free(dcols), free(dw), free(db), free(di);
    free(dw3), free(db3), free(di3), free(rw), free(rb), free(ri);
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
    test_backward(21, 37, 5, 4, 4, 3, 13);   /* overlapping in frequency, a partial last patch dropped */
    test_backward(35, 99, 16, 16, 16, 16, 7); /* PaSST's patches on odd sizes: 2 x 6 patches */
    test_backward(9, 20, 3, 5, 2, 2, 5);
    test_backward(7, 7, 7, 7, 1, 1, 3);
    parfor_shutdown();
    return check_exit();
}
