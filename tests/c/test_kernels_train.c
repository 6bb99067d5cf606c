/* test_kernels_train.c - the training kernels of lib/kernels_conv.c and the
 * losses of lib/contrastive.c: each fast kernel against its naive twin on odd
 * sizes, adjoint identities, the losses' gradients against central
 * differences.
 *
 * Also the C side of tests/py/test_kernels_train.py (PyTorch parity):
 *   test_kernels_train dump OP IN OUT [MODEL]
 * IN: int32 n, int32 ints[n], then float32 inputs in the order OP reads them;
 * OUT: float32 outputs concatenated (see dump() for each OP's layout). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bert_train.h"
#include "check.h"
#include "cnn14_train.h"
#include "gap.h"
#include "contrastive.h"
#include "kernels.h"
#include "nn.h"
#include "util.h"

static rng_t R;

static float *rnd(size_t n, double s) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(s * rng_normal(&R));
    return x;
}

static float *zeros(size_t n) { return xcalloc(n ? n : 1, sizeof(float)); }

/* max |a - b| / max |b| */
static double relerr(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

static double dot(const float *a, const float *b, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

static void test_conv(void) {
    int B = 3, Cin = 5, Cout = 7, T = 9, F = 11;
    size_t ni = (size_t)B * Cin * T * F, no = (size_t)B * Cout * T * F, nw = (size_t)Cout * Cin * 9;
    float *x = rnd(ni, 1), *w = rnd(nw, 0.3), *g = rnd(no, 1), *cols = zeros(conv3x3_scratch(Cin, T, F));
    float *y = zeros(no), *y0 = zeros(no), *dx = zeros(ni), *dx0 = zeros(ni), *dw = zeros(nw), *dw0 = zeros(nw);
    conv3x3_forward(y, cols, x, w, B, Cin, Cout, T, F);
    conv3x3_forward_naive(y0, x, w, B, Cin, Cout, T, F);
    double e = relerr(y, y0, no);
    CHECKF(e < 1e-6, "conv3x3 forward (im2col + sgemm) = naive twin", "%.3g", e);
    conv3x3_backward(dx, dw, cols, g, x, w, B, Cin, Cout, T, F);
    conv3x3_backward_naive(dx0, dw0, g, x, w, B, Cin, Cout, T, F);
    double ex = relerr(dx, dx0, ni), ew = relerr(dw, dw0, nw);
    CHECKF(ex < 1e-6 && ew < 1e-6, "conv3x3 backward = naive twin (input, weight)", "%.3g %.3g", ex, ew);
    /* adjoint: <conv(x), g> = <x, dx> = <w, dw> */
    double a = dot(y0, g, no), b = dot(x, dx0, ni), c = dot(w, dw0, nw);
    CHECKF(fabs(a - b) < 1e-4 * fabs(a) + 1e-3 && fabs(a - c) < 1e-4 * fabs(a) + 1e-3,
           "conv3x3 backward is the adjoint of the forward", "%.9g %.9g %.9g", a, b, c);
    free(x), free(w), free(g), free(cols), free(y), free(y0), free(dx), free(dx0), free(dw), free(dw0);
}

static void test_bn(int O, int C, int S, const char *name) {
    size_t n = (size_t)O * C * S;
    float *x = rnd(n, 2), *w = rnd(C, 0.5), *b = rnd(C, 0.5), *g = rnd(n, 1);
    for (size_t i = 0; i < n; i++) x[i] += 3;
    float *rm = rnd(C, 1), *rv = zeros(C), *rm0 = zeros(C), *rv0 = zeros(C);
    for (int c = 0; c < C; c++) rv[c] = 1 + (float)c, rm0[c] = rm[c], rv0[c] = rv[c];
    float *y = zeros(n), *y0 = zeros(n), *m = zeros(C), *r = zeros(C), *m0 = zeros(C), *r0 = zeros(C);
    batchnorm_forward_train(y, m, r, rm, rv, x, w, b, O, C, S, 1e-5f, 0.1f);
    batchnorm_forward_train_naive(y0, m0, r0, rm0, rv0, x, w, b, O, C, S, 1e-5f, 0.1f);
    char nm[160];
    snprintf(nm, sizeof nm, "batch norm (%s) train forward, saved and running statistics = naive twin", name);
    double e = fmax(fmax(relerr(y, y0, n), relerr(m, m0, C)), fmax(relerr(rm, rm0, C), relerr(rv, rv0, C)));
    e = fmax(e, relerr(r, r0, C));
    CHECKF(e < 1e-6, nm, "%.3g", e);
    float *dx = zeros(n), *dx0 = zeros(n), *dw = zeros(C), *db = zeros(C), *dw0 = zeros(C), *db0 = zeros(C);
    batchnorm_backward(dx, dw, db, g, x, m, r, w, O, C, S);
    batchnorm_backward_naive(dx0, dw0, db0, g, x, m, r, w, O, C, S);
    e = fmax(relerr(dx, dx0, n), fmax(relerr(dw, dw0, C), relerr(db, db0, C)));
    snprintf(nm, sizeof nm, "batch norm (%s) backward = naive twin", name);
    CHECKF(e < 1e-5, nm, "%.3g", e);
    /* gradient of sum(g * y) against central differences on a few inputs (double-checked in double) */
    double worst = 0;
    for (int k = 0; k < 5; k++) {
        size_t i = (size_t)(rng_uniform(&R) * n);
        float keep = x[i], h = 1e-2f;
        x[i] = keep + h;
        batchnorm_forward_train_naive(y0, m0, r0, NULL, NULL, x, w, b, O, C, S, 1e-5f, 0.1f);
        double lp = dot(y0, g, n);
        x[i] = keep - h;
        batchnorm_forward_train_naive(y0, m0, r0, NULL, NULL, x, w, b, O, C, S, 1e-5f, 0.1f);
        double lm = dot(y0, g, n);
        x[i] = keep;
        double fd = (lp - lm) / (2.0 * h);
        worst = fmax(worst, fabs(fd - dx0[i]) / (fabs(fd) + 1e-2));
    }
    snprintf(nm, sizeof nm, "batch norm (%s) backward agrees with central differences", name);
    CHECKF(worst < 2e-2, nm, "%.3g", worst);
    free(x), free(w), free(b), free(g), free(rm), free(rv), free(rm0), free(rv0), free(y), free(y0), free(m), free(r);
    free(m0), free(r0), free(dx), free(dx0), free(dw), free(db), free(dw0), free(db0);
}

static void test_pool(void) {
    int Rr = 4, T = 9, F = 7; /* odd: the last row and column are dropped */
    size_t n = (size_t)Rr * T * F, no = (size_t)Rr * (T / 2) * (F / 2);
    float *x = rnd(n, 1), *g = rnd(no, 1), *y = zeros(no), *dx = zeros(n);
    avgpool2x2_forward(y, x, Rr, T, F);
    avgpool2x2_backward(dx, g, Rr, T, F);
    double a = dot(y, g, no), b = dot(x, dx, n);
    CHECKF(fabs(a - b) < 1e-5 * (fabs(a) + 1), "avg pool 2x2 backward is the adjoint of the forward (odd sizes)",
           "%.9g %.9g", a, b);
    int zero = 1;
    for (int r = 0; r < Rr; r++)
        for (int t = 0; t < T; t++) zero &= dx[((size_t)r * T + t) * F + F - 1] == 0;
    CHECK(zero, "avg pool 2x2 backward: the dropped column gets no gradient");
    free(x), free(g), free(y), free(dx);

    int N = 5, T2 = 6, F2 = 3;
    size_t n2 = (size_t)N * T2 * F2;
    float *x2 = rnd(n2, 1), *gf = rnd(N, 1), *feat = zeros(N), *d2 = zeros(n2);
    int *am = xcalloc(N, sizeof(int));
    timefreq_pool_forward(feat, am, x2, N, T2, F2);
    timefreq_pool_backward(d2, gf, am, N, T2, F2);
    double worst = 0;
    for (size_t i = 0; i < n2; i += 7) {
        float keep = x2[i], h = 1e-3f, fp[8], fm[8];
        x2[i] = keep + h;
        timefreq_pool_forward(fp, NULL, x2, N, T2, F2);
        x2[i] = keep - h;
        timefreq_pool_forward(fm, NULL, x2, N, T2, F2);
        x2[i] = keep;
        double fd = (dot(fp, gf, N) - dot(fm, gf, N)) / (2.0 * h);
        worst = fmax(worst, fabs(fd - d2[i]));
    }
    CHECKF(worst < 1e-3, "time/frequency head pooling backward agrees with central differences", "%.3g", worst);
    free(x2), free(gf), free(feat), free(d2), free(am);
}

static void test_linear(void) {
    int N = 7, C = 13, OC = 5;
    float *x = rnd((size_t)N * C, 1), *W = rnd((size_t)OC * C, 0.3), *g = rnd((size_t)N * OC, 1);
    float *dx = zeros((size_t)N * C), *dx0 = zeros((size_t)N * C), *dW = zeros((size_t)OC * C),
          *dW0 = zeros((size_t)OC * C), *db = zeros(OC), *db0 = zeros(OC);
    linear_backward(dx, dW, db, g, x, W, N, C, OC);
    linear_backward_naive(dx0, dW0, db0, g, x, W, N, C, OC);
    double e = fmax(relerr(dx, dx0, (size_t)N * C), fmax(relerr(dW, dW0, (size_t)OC * C), relerr(db, db0, OC)));
    CHECKF(e < 1e-6, "linear backward = naive twin", "%.3g", e);
    free(x), free(W), free(g), free(dx), free(dx0), free(dW), free(dW0), free(db), free(db0);
}

static void test_losses(void) {
    int B = 9, D = 6, M = 2;
    int aid[9] = {0, 0, 1, 2, 2, 2, 3, 4, 1};
    float *a = rnd((size_t)B * D, 1), *t = rnd((size_t)B * D, 1), *ta = rnd((size_t)B * M * D, 1),
          *tt = rnd((size_t)B * M * D, 1);
    float *da = zeros((size_t)B * D), *dt = zeros((size_t)B * D);
    for (int pass = 0; pass < 2; pass++) {
        double ws = pass ? 0.7 : 1, wd = pass ? 1.3 : 0;
        contrastive_out o = contrastive_loss(da, dt, a, t, aid, pass ? ta : NULL, pass ? tt : NULL, M, D, B, D, 0.05f,
                                             ws, wd);
        double worst = 0, gmax = 0;
        for (int which = 0; which < 2; which++)
            for (int i = 0; i < B * D; i += 5) {
                float *p = which ? t : a, keep = p[i], h = 3e-3f;
                p[i] = keep + h;
                double lp = contrastive_loss(NULL, NULL, a, t, aid, ta, tt, pass ? M : 0, D, B, D, 0.05f, ws, wd).total;
                p[i] = keep - h;
                double lm = contrastive_loss(NULL, NULL, a, t, aid, ta, tt, pass ? M : 0, D, B, D, 0.05f, ws, wd).total;
                p[i] = keep;
                double fd = (lp - lm) / ((double)(keep + h) - (double)(keep - h)), an = (which ? dt : da)[i];
                worst = fmax(worst, fabs(fd - an));
                gmax = fmax(gmax, fabs(an));
            }
        worst /= gmax;
        CHECKF(o.positives == 9 + 2 + 2 + 6, "L_sup counts every positive entry of I", "%d", o.positives);
        CHECKF(worst < 2e-4, pass ? "L_sup + L_dist gradient agrees with central differences (within 2e-4 of the largest)"
                                  : "L_sup gradient agrees with central differences (within 2e-4 of the largest)",
               "%.3g", worst);
    }
    free(a), free(t), free(ta), free(tt), free(da), free(dt);
}

/* keep fraction of mask[n] within 5 binomial sigmas of 1 - p */
static int keep_ok(const uint8_t *mask, size_t n, double p, double *frac) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += mask[i];
    *frac = (double)k / n;
    return fabs(*frac - (1 - p)) <= 5 * sqrt(p * (1 - p) / n);
}

/* dropout in the training towers: keep rates, masks keyed by item (not by
 * batch position), different items different masks */
static void test_dropout_masks(void) {
    const char *model = "data/models/clap-test.safetensors";
    char err[512];
    cnn14t *A = cnn14t_load(model, err, sizeof err);
    bertt *Tx = bertt_load(model, err, sizeof err);
    CHECKF(A && Tx, "the bundled test CLAP loads for the dropout checks", "%s", err);
    if (!A || !Tx) return;
    int B = 6, T = 70, M = A->n_mels, E = A->embed;
    A->specaug = 0; /* dropout alone (SpecAugment: test_specaug) */
    float *mel = rnd((size_t)B * T * M, 10), *mel2 = zeros((size_t)B * T * M);
    for (size_t i = 0; i < (size_t)B * T * M; i++) mel[i] -= 40;
    uint64_t keys[6] = {11, 12, 13, 14, 15, 16}, keys2[6];
    int perm[6] = {3, 5, 0, 1, 4, 2};
    float *e = zeros((size_t)B * E), *e0 = zeros((size_t)B * E);
    cnn14t_forward_train(A, e0, mel, B, T, NULL);
    cnn14t_forward_train(A, e, mel, B, T, keys);
    int allok = 1, differ = 0;
    double worst = 0, fr;
    int t = T, f = M;
    size_t per[CNN14T_MAX_BLOCKS];
    uint8_t *saved[CNN14T_MAX_BLOCKS];
    for (int k = 0; k < A->nblocks; k++) {
        t /= 2, f /= 2;
        per[k] = (size_t)A->channels[k] * t * f;
        allok &= keep_ok(A->mask[k], B * per[k], A->dropout, &fr);
        worst = fmax(worst, fabs(fr - 0.8));
        saved[k] = xmalloc(B * per[k]);
        memcpy(saved[k], A->mask[k], B * per[k]);
        differ |= memcmp(A->mask[k], A->mask[k] + per[k], per[k]) != 0;
    }
    CHECKF(allok, "CNN14 dropout: every block keeps 80% of its activations (within 5 sigma)", "worst %.4f", worst);
    CHECK(differ, "CNN14 dropout: two items get different masks");
    double d = 0;
    for (int i = 0; i < B * E; i++) d = fmax(d, fabs(e[i] - e0[i]));
    CHECKF(d > 1e-6, "CNN14 dropout changes the embeddings", "%.3g", d);
    /* the same items in another order: each item keeps its masks */
    for (int b = 0; b < B; b++) {
        keys2[b] = keys[perm[b]];
        memcpy(mel2 + (size_t)b * T * M, mel + (size_t)perm[b] * T * M, (size_t)T * M * sizeof(float));
    }
    cnn14t_forward_train(A, e, mel2, B, T, keys2);
    int same = 1;
    for (int k = 0; k < A->nblocks; k++)
        for (int b = 0; b < B; b++) same &= !memcmp(A->mask[k] + b * per[k], saved[k] + perm[b] * per[k], per[k]);
    CHECK(same, "CNN14 dropout: an item's masks depend on its key, not on its place in the batch");
    for (int k = 0; k < A->nblocks; k++) free(saved[k]);

    int lens[6] = {7, 3, 11, 5, 9, 30}, N = 0;
    for (int b = 0; b < B; b++) N += lens[b];
    int32_t *ids = xmalloc((size_t)N * sizeof(int32_t));
    for (int n = 0; n < N; n++) ids[n] = 1000 + (int32_t)(rng_uniform(&R) * 20000);
    bertt_forward_train(Tx, e, ids, lens, B, keys);
    size_t H = (size_t)Tx->c.hidden;
    allok = keep_ok(Tx->emask, (size_t)N * H, 0.1, &fr);
    worst = fabs(fr - 0.9);
    for (int l = 0; l < Tx->c.layers; l++) {
        allok &= keep_ok(Tx->la[l].dmask1, (size_t)N * H, 0.1, &fr), worst = fmax(worst, fabs(fr - 0.9));
        allok &= keep_ok(Tx->la[l].dmask2, (size_t)N * H, 0.1, &fr), worst = fmax(worst, fabs(fr - 0.9));
        /* attention: the entries each sequence uses */
        size_t kept = 0, used = 0, NH = (size_t)Tx->c.heads, Tm = (size_t)Tx->Tm;
        for (int b = 0; b < B; b++)
            for (size_t h = 0; h < NH; h++)
                for (int r = 0; r < lens[b]; r++)
                    for (int c = 0; c < lens[b]; c++, used++) kept += Tx->la[l].amask[((b * NH + h) * Tm + r) * Tm + c];
        double fa = (double)kept / used;
        allok &= fabs(fa - 0.9) <= 5 * sqrt(0.09 / used), worst = fmax(worst, fabs(fa - 0.9));
    }
    CHECKF(allok, "BERT dropout: embeddings, attention probabilities and both residual branches keep 90% (5 sigma)",
           "worst %.4f", worst);
    free(ids), free(mel), free(mel2), free(e), free(e0);
    cnn14t_free(A);
    bertt_free(Tx);
}

/* SpecAugment (WavCaps cnns.py + torchlibrosa 0.0.9 DropStripes): the
 * stripes' widths and starts as published, each clip's stripes zeroed and
 * nothing else changed, keyed by item, off when asked */
static void test_specaug(void) {
    const char *model = "data/models/clap-test.safetensors";
    char err[512];
    cnn14t *A = cnn14t_load(model, err, sizeof err);
    CHECKF(A != NULL, "the bundled test CLAP loads for the SpecAugment checks", "%s", err);
    if (!A) return;
    CHECKF(A->specaug == 1 && A->spec_twidth == 64 && A->spec_tstripes == 2 && A->spec_fwidth == 8 &&
               A->spec_fstripes == 2,
           "SpecAugment on by default with WavCaps' SpecAugmentation(64, 2, 8, 2)", "%d %d %d %d %d", A->specaug,
           A->spec_twidth, A->spec_tstripes, A->spec_fwidth, A->spec_fstripes);
    /* the distribution: width uniform in 0..w-1, start uniform in 0..total-width-1 */
    enum { ND = 40000 };
    int TT = 1001, MM = 64, st[8], ok = 1;
    long ht[64] = {0}, hf[8] = {0};
    double pos[2] = {0, 0};
    for (int n = 0; n < ND; n++) {
        cnn14t_spec_stripes(A, st, TT, MM, 0x1234567ULL * (uint64_t)n + 99);
        for (int i = 0; i < 4; i++) {
            int tot = i < 2 ? TT : MM, b = st[2 * i], d = st[2 * i + 1];
            ok &= d >= 0 && d < (i < 2 ? 64 : 8) && b >= 0 && b < tot - d;
            if (i < 2) ht[d]++; else hf[d]++;
            pos[i >= 2] += (b + 0.5) / (tot - d); /* uniform start: mean 1/2 */
        }
    }
    double ct = 0, cf = 0, et = 2.0 * ND / 64, ef = 2.0 * ND / 8;
    for (int d = 0; d < 64; d++) ct += (ht[d] - et) * (ht[d] - et) / et;
    for (int d = 0; d < 8; d++) cf += (hf[d] - ef) * (hf[d] - ef) / ef;
    double mt = pos[0] / (2.0 * ND), mf = pos[1] / (2.0 * ND), sg = 5 * sqrt(1.0 / 12 / (2.0 * ND));
    CHECK(ok, "SpecAugment: 2 time stripes of width < 64 and 2 frequency stripes of width < 8, every one inside the clip");
    CHECKF(ct < 63 + 5 * sqrt(126.0) && cf < 7 + 5 * sqrt(14.0),
           "SpecAugment: stripe widths uniform over 0..63 (time) and 0..7 (frequency) (chi-square within 5 sigma)",
           "chi2 %.1f (63 dof), %.1f (7 dof)", ct, cf);
    CHECKF(fabs(mt - 0.5) < sg + 0.5 / 1001 && fabs(mf - 0.5) < sg + 0.5 / 64,
           "SpecAugment: stripe starts uniform over the places the stripe fits", "mean position %.4f %.4f", mt, mf);
    /* a clip shorter than the time width: stripes clamped inside it */
    int sh = 1;
    for (int n = 0; n < 2000; n++) {
        cnn14t_spec_stripes(A, st, 20, MM, (uint64_t)n);
        for (int i = 0; i < 2; i++) sh &= st[2 * i + 1] <= 19 && st[2 * i] >= 0 && st[2 * i] + st[2 * i + 1] <= 20;
    }
    CHECK(sh, "SpecAugment on a clip of 20 frames: every time stripe inside the clip");

    /* a step: zeros on the stripes, the bn0 output elsewhere, the same stripes for an item wherever it is */
    int B = 5, T = 150, M = A->n_mels, E = A->embed;
    A->dropout = 0;
    float *mel = rnd((size_t)B * T * M, 10), *mel2 = zeros((size_t)B * T * M);
    for (size_t i = 0; i < (size_t)B * T * M; i++) mel[i] -= 40;
    uint64_t keys[5] = {101, 202, 303, 404, 505}, keys2[5];
    int perm[5] = {2, 4, 1, 0, 3};
    float *e = zeros((size_t)B * E), *e0 = zeros((size_t)B * E), *x0 = zeros((size_t)B * T * M);
    A->specaug = 0;
    cnn14t_forward_train(A, e0, mel, B, T, keys);
    int off_ok = !A->specced;
    memcpy(x0, A->x[0], (size_t)B * T * M * sizeof(float));
    A->specaug = 1;
    cnn14t_forward_train(A, e, mel, B, T, keys);
    int zero_ok = A->specced, rest_ok = 1;
    size_t nz = 0;
    int *saved = xmalloc((size_t)B * 8 * sizeof(int));
    memcpy(saved, A->stripes, (size_t)B * 8 * sizeof(int));
    for (int b = 0; b < B; b++) {
        const int *s = A->stripes + b * 8;
        for (int t = 0; t < T; t++)
            for (int f = 0; f < M; f++) {
                int in = (t >= s[0] && t < s[0] + s[1]) || (t >= s[2] && t < s[2] + s[3]) ||
                         (f >= s[4] && f < s[4] + s[5]) || (f >= s[6] && f < s[6] + s[7]);
                size_t i = ((size_t)b * T + t) * M + f;
                if (in) zero_ok &= A->x[0][i] == 0.0f, nz++;
                else rest_ok &= A->x[0][i] == x0[i];
            }
    }
    CHECK(off_ok, "SpecAugment off (specaug = 0): not applied");
    CHECKF(zero_ok && rest_ok && nz > 0,
           "SpecAugment zeroes exactly its stripes of the bn0 output, every other value unchanged", "%zu zeros", nz);
    double d = 0;
    for (int i = 0; i < B * E; i++) d = fmax(d, fabs(e[i] - e0[i]));
    CHECKF(d > 1e-6, "SpecAugment changes the embeddings", "%.3g", d);
    cnn14t_forward_train(A, e0, mel, B, T, NULL);
    CHECK(!A->specced, "SpecAugment needs keys: none without them (the parity runs, clap-train --no-augment)");
    for (int b = 0; b < B; b++) {
        keys2[b] = keys[perm[b]];
        memcpy(mel2 + (size_t)b * T * M, mel + (size_t)perm[b] * T * M, (size_t)T * M * sizeof(float));
    }
    cnn14t_forward_train(A, e, mel2, B, T, keys2);
    int same = 1;
    for (int b = 0; b < B; b++) same &= !memcmp(A->stripes + b * 8, saved + perm[b] * 8, 8 * sizeof(int));
    CHECK(same, "SpecAugment: an item's stripes depend on its key, not on its place in the batch");
    CHECK(memcmp(saved, saved + 8, 8 * sizeof(int)) != 0, "SpecAugment: two items get different stripes");
    free(saved), free(mel), free(mel2), free(e), free(e0), free(x0);
    cnn14t_free(A);
}

/* ------------------------------------------------------------------ dump mode */

static void put(FILE *f, const float *x, size_t n) {
    if (fwrite(x, sizeof(float), n, f) != n) die("write failed");
}

static int dump(const char *op, const char *inpath, const char *outpath, const char *model) {
    FILE *f = fopen(inpath, "rb");
    if (!f) die("%s: cannot open", inpath);
    int32_t ni, iv[4096];
    if (fread(&ni, 4, 1, f) != 1 || ni < 0 || ni > 4096 || fread(iv, 4, (size_t)ni, f) != (size_t)ni)
        die("%s: bad header", inpath);
    long here = ftell(f);
    fseek(f, 0, SEEK_END);
    size_t nf = (size_t)(ftell(f) - here) / 4;
    fseek(f, here, SEEK_SET);
    float *buf = xmalloc((nf ? nf : 1) * sizeof(float)), *p = buf;
    if (fread(buf, 4, nf, f) != nf) die("%s: short read", inpath);
    fclose(f);
    FILE *o = fopen(outpath, "wb");
    if (!o) die("%s: cannot create", outpath);
#define TAKE(n) (p += (n), p - (n))
    if (!strcmp(op, "conv")) { /* B Cin Cout T F; x w dout -> y dx dw */
        int B = iv[0], Cin = iv[1], Cout = iv[2], T = iv[3], F = iv[4];
        size_t ni_ = (size_t)B * Cin * T * F, no = (size_t)B * Cout * T * F, nw = (size_t)Cout * Cin * 9;
        float *x = TAKE(ni_), *w = TAKE(nw), *g = TAKE(no);
        float *cols = zeros(conv3x3_scratch(Cin, T, F)), *y = zeros(no), *dx = zeros(ni_), *dw = zeros(nw);
        conv3x3_forward(y, cols, x, w, B, Cin, Cout, T, F);
        conv3x3_backward(dx, dw, cols, g, x, w, B, Cin, Cout, T, F);
        put(o, y, no), put(o, dx, ni_), put(o, dw, nw);
        free(cols), free(y), free(dx), free(dw);
    } else if (!strcmp(op, "bn")) { /* O C S; x w b rm rv dout -> y rm' rv' dx dw db yeval(old stats) */
        int O = iv[0], C = iv[1], S = iv[2];
        size_t n = (size_t)O * C * S;
        float *x = TAKE(n), *w = TAKE(C), *b = TAKE(C), *rm = TAKE(C), *rv = TAKE(C), *g = TAKE(n);
        float *ye = zeros(n), *y = zeros(n), *m = zeros(C), *r = zeros(C), *dx = zeros(n), *dw = zeros(C),
              *db = zeros(C);
        batchnorm_forward_eval(ye, x, w, b, rm, rv, O, C, S, 1e-5f);
        batchnorm_forward_train(y, m, r, rm, rv, x, w, b, O, C, S, 1e-5f, 0.1f);
        batchnorm_backward(dx, dw, db, g, x, m, r, w, O, C, S);
        put(o, y, n), put(o, rm, C), put(o, rv, C), put(o, dx, n), put(o, dw, C), put(o, db, C), put(o, ye, n);
        free(ye), free(y), free(m), free(r), free(dx), free(dw), free(db);
    } else if (!strcmp(op, "pool")) { /* R T F; x dout -> y dx */
        int Rr = iv[0], T = iv[1], F = iv[2];
        size_t n = (size_t)Rr * T * F, no = (size_t)Rr * (T / 2) * (F / 2);
        float *x = TAKE(n), *g = TAKE(no), *y = zeros(no), *dx = zeros(n);
        avgpool2x2_forward(y, x, Rr, T, F);
        avgpool2x2_backward(dx, g, Rr, T, F);
        put(o, y, no), put(o, dx, n);
        free(y), free(dx);
    } else if (!strcmp(op, "head")) { /* N T F; x dfeat -> feat dx */
        int N = iv[0], T = iv[1], F = iv[2];
        size_t n = (size_t)N * T * F;
        float *x = TAKE(n), *g = TAKE(N), *feat = zeros(N), *dx = zeros(n);
        int *am = xcalloc((size_t)N, sizeof(int));
        timefreq_pool_forward(feat, am, x, N, T, F);
        timefreq_pool_backward(dx, g, am, N, T, F);
        put(o, feat, N), put(o, dx, n);
        free(feat), free(dx), free(am);
    } else if (!strcmp(op, "linear")) { /* N C OC; x W b dout -> y dx dW db */
        int N = iv[0], C = iv[1], OC = iv[2];
        float *x = TAKE((size_t)N * C), *W = TAKE((size_t)OC * C), *b = TAKE(OC), *g = TAKE((size_t)N * OC);
        float *y = zeros((size_t)N * OC), *dx = zeros((size_t)N * C), *dW = zeros((size_t)OC * C), *db = zeros(OC);
        linear_forward(y, x, W, b, N, C, OC);
        linear_backward(dx, dW, db, g, x, W, N, C, OC);
        put(o, y, (size_t)N * OC), put(o, dx, (size_t)N * C), put(o, dW, (size_t)OC * C), put(o, db, OC);
        free(y), free(dx), free(dW), free(db);
    } else if (!strcmp(op, "loss")) { /* B D M aid[B]; a t ta tt tau wsup wdist -> sup dist total da dt */
        int B = iv[0], D = iv[1], M = iv[2];
        int *aid = xmalloc((size_t)B * sizeof(int));
        for (int i = 0; i < B; i++) aid[i] = iv[3 + i];
        float *a = TAKE((size_t)B * D), *t = TAKE((size_t)B * D), *ta = TAKE((size_t)B * M * D),
              *tt = TAKE((size_t)B * M * D), *sc = TAKE(3);
        float *da = zeros((size_t)B * D), *dt = zeros((size_t)B * D);
        contrastive_out r = contrastive_loss(da, dt, a, t, aid, ta, tt, M, D, B, D, sc[0], sc[1], sc[2]);
        float l[3] = {(float)r.sup, (float)r.dist, (float)r.total};
        double ld[3] = {r.sup, r.dist, r.total};
        put(o, l, 3), put(o, da, (size_t)B * D), put(o, dt, (size_t)B * D);
        if (fwrite(ld, sizeof(double), 3, o) != 3) die("write failed");
        free(aid), free(da), free(dt);
    } else if (!strcmp(op, "cnn14") || !strcmp(op, "cnn14dec")) {
        /* B T aid[B]; mel[B,T,M] t[B,E] -> e, grads, running stats, loss (f64); cnn14dec adds the decisions
         * of the forward pass: per block (a1 > 0), (a2 > 0) as bytes [B,C,t,f], then (hid > 0) bytes
         * [B,E], then the head's argmax int32 [B,C_last] (the reference replays them in float64) */
        char err[512];
        cnn14t *m = model ? cnn14t_load(model, err, sizeof err) : NULL;
        if (!m) die("%s", model ? err : "cnn14 needs a model file");
        int B = iv[0], T = iv[1], E = m->embed;
        float *mel = TAKE((size_t)B * T * m->n_mels), *t = TAKE((size_t)B * E);
        float *e = zeros((size_t)B * E), *de = zeros((size_t)B * E);
        cnn14t_forward_train(m, e, mel, B, T, NULL);
        contrastive_out r = contrastive_loss(de, NULL, e, t, iv + 2, NULL, NULL, 0, 0, B, E, 0.05f, 1.0, 0.0);
        cnn14t_backward(m, de);
        put(o, e, (size_t)B * E), put(o, m->grads, m->nparams), put(o, m->buffers, m->nbuffers);
        if (fwrite(&r.sup, sizeof(double), 1, o) != 1) die("write failed");
        if (!strcmp(op, "cnn14dec")) {
            int tt = T, ff = m->n_mels;
            for (int k = 0; k < m->nblocks; k++) {
                size_t n = (size_t)B * m->channels[k] * tt * ff;
                uint8_t *bits = xmalloc(n);
                for (int j = 0; j < 2; j++) {
                    const float *a = j ? m->a2[k] : m->a1[k];
                    for (size_t i = 0; i < n; i++) bits[i] = a[i] > 0;
                    if (fwrite(bits, 1, n, o) != n) die("write failed");
                }
                free(bits);
                tt /= 2, ff /= 2;
            }
            size_t nh = (size_t)B * E, na = (size_t)B * m->channels[m->nblocks - 1];
            uint8_t *hb = xmalloc(nh);
            for (size_t i = 0; i < nh; i++) hb[i] = m->hid[i] > 0;
            if (fwrite(hb, 1, nh, o) != nh) die("write failed");
            int32_t *am = xmalloc(na * sizeof(int32_t));
            for (size_t i = 0; i < na; i++) am[i] = m->argmax[i];
            if (fwrite(am, sizeof(int32_t), na, o) != na) die("write failed");
            free(hb), free(am);
        }
        free(e), free(de);
        cnn14t_free(m);
    } else if (!strcmp(op, "cnn14aug")) {
        /* B T aid[B] key[B] (two int32 each, low first); mel[B,T,M] t[B,E] -> e, grads, loss (f64), stripes
         * int32 [B, nt + nf, 2]: a training step with SpecAugment keyed by key[b], dropout off */
        char err[512];
        cnn14t *m = model ? cnn14t_load(model, err, sizeof err) : NULL;
        if (!m) die("%s", model ? err : "cnn14aug needs a model file");
        int B = iv[0], T = iv[1], E = m->embed, ns = m->spec_tstripes + m->spec_fstripes;
        uint64_t *keys = xmalloc((size_t)B * sizeof(uint64_t));
        for (int b = 0; b < B; b++)
            keys[b] = (uint64_t)(uint32_t)iv[2 + B + 2 * b] | (uint64_t)(uint32_t)iv[3 + B + 2 * b] << 32;
        float *mel = TAKE((size_t)B * T * m->n_mels), *t = TAKE((size_t)B * E);
        float *e = zeros((size_t)B * E), *de = zeros((size_t)B * E);
        m->dropout = 0;
        cnn14t_forward_train(m, e, mel, B, T, keys);
        if (!m->specced) die("cnn14aug: SpecAugment was not applied");
        contrastive_out r = contrastive_loss(de, NULL, e, t, iv + 2, NULL, NULL, 0, 0, B, E, 0.05f, 1.0, 0.0);
        cnn14t_backward(m, de);
        put(o, e, (size_t)B * E), put(o, m->grads, m->nparams);
        if (fwrite(&r.sup, sizeof(double), 1, o) != 1) die("write failed");
        if (fwrite(m->stripes, sizeof(int), (size_t)B * ns * 2, o) != (size_t)B * ns * 2) die("write failed");
        free(keys), free(e), free(de);
        cnn14t_free(m);
    } else if (!strcmp(op, "bert")) { /* B len[B] aid[B] ids[sum len]; a[B,E] -> e, grads, loss (f64) */
        char err[512];
        bertt *m = model ? bertt_load(model, err, sizeof err) : NULL;
        if (!m) die("%s", model ? err : "bert needs a model file");
        int B = iv[0], E = m->c.embed, N = 0;
        const int *len = iv + 1, *aid = iv + 1 + B;
        for (int b = 0; b < B; b++) N += len[b];
        int32_t *ids = xmalloc((size_t)N * sizeof(int32_t));
        for (int n = 0; n < N; n++) ids[n] = iv[1 + 2 * B + n];
        float *a = TAKE((size_t)B * E), *e = zeros((size_t)B * E), *de = zeros((size_t)B * E);
        bertt_forward_train(m, e, ids, len, B, NULL);
        contrastive_out r = contrastive_loss(NULL, de, a, e, aid, NULL, NULL, 0, 0, B, E, 0.05f, 1.0, 0.0);
        bertt_backward(m, de);
        put(o, e, (size_t)B * E), put(o, m->grads, m->nparams);
        if (fwrite(&r.sup, sizeof(double), 1, o) != 1) die("write failed");
        free(ids), free(e), free(de);
        bertt_free(m);
    } else {
        die("unknown op '%s'", op);
    }
#undef TAKE
    if ((size_t)(p - buf) != nf) die("%s: %zu floats read, %zu given", op, (size_t)(p - buf), nf);
    if (fclose(o)) die("%s: write failed", outpath);
    free(buf);
    return 0;
}

int main(int argc, char **argv) {
    tool_init("test_kernels_train");
    if ((argc == 5 || argc == 6) && !strcmp(argv[1], "dump")) return dump(argv[2], argv[3], argv[4], argc == 6 ? argv[5] : NULL);
    rng_seed(&R, 12);
    test_conv();
    test_bn(3, 5, 13, "[B, C, T*F]");
    test_bn(27, 11, 1, "bn0: [B*T, M, 1]");
    test_pool();
    test_linear();
    test_losses();
    test_dropout_masks();
    test_specaug();
    return check_exit();
}
