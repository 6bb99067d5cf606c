/* test_gpt.c - the decoder's kernels against their naive twins and finite
 * differences, the KV-cached step against the full forward pass, batch
 * independence of decoding, AdamW, the schedule and the RNG.
 *
 * Also a helper for tests/py/test_prefixdec.py (PyTorch comparisons):
 *   test_gpt grads  MODEL BATCH OUT   loss and every parameter's gradient
 *   test_gpt logits MODEL BATCH OUT   logits of every position [B, S+1, V]
 * BATCH: safetensors with "emb" F32 [B, E] and "tokens" I32 [B, S] (0 = pad).
 * OUT: safetensors with "loss" F32 [1], "logits", or the gradients under the
 * parameters' names. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gpt.h"
#include "nn.h"
#include "parfor.h"
#include "train.h"
#include "util.h"

static xrng R;

static void fill(float *x, size_t n, float scale) {
    xrng_normal(&R, x, n);
    for (size_t i = 0; i < n; i++) x[i] *= scale;
}

static double maxdiff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

/* ------------------------------------------------------------ helper mode */

static int helper(const char *mode, const char *model, const char *batch, const char *out) {
    char err[512];
    nn_set_threads(1);
    st_file *mf = st_open(model, err, sizeof err), *bf = st_open(batch, err, sizeof err);
    if (!mf || !bf) {
        fprintf(stderr, "test_gpt: %s\n", err);
        return 2;
    }
    train_model tm;
    if (train_model_load(&tm, mf, 0, err, sizeof err)) {
        fprintf(stderr, "test_gpt: %s\n", err);
        return 2;
    }
    st_tensor te, tt;
    if (st_get(bf, "emb", &te, err, sizeof err) || st_get(bf, "tokens", &tt, err, sizeof err)) {
        fprintf(stderr, "test_gpt: %s\n", err);
        return 2;
    }
    int B = (int)tt.shape[0], S = (int)tt.shape[1];
    const gpt_config *c = &tm.c;
    ckpt_tensor *ct = xcalloc(1000, sizeof *ct);
    int k = 0;
    float loss;
    float *logits = NULL;
    if (!strcmp(mode, "logits")) {
        /* every position, the published extra one included: tokens padded to S+1 */
        int32_t *tok = xcalloc((size_t)B * (S + 1), sizeof(int32_t));
        int *lens = xmalloc((size_t)B * sizeof(int));
        for (int b = 0; b < B; b++) {
            memcpy(tok + (size_t)b * (S + 1), (const int32_t *)tt.data + (size_t)b * S, (size_t)S * sizeof(int32_t));
            lens[b] = S + 1;
        }
        gpt_train_state *s = gpt_train_state_new(c, B, S + 1);
        gpt_layout(s, tok, B, 0, lens);
        gpt_forward(s, c, &tm.w, te.data);
        logits = xmalloc((size_t)s->N * c->V * sizeof(float));
        gpt_logits(s, c, &tm.w, logits);
        ct[k++] = (ckpt_tensor){"logits", ST_F32, 2, {s->N, c->V}, logits};
        gpt_train_state_free(s);
        free(tok), free(lens);
    } else {
        gpt_train_state *s = gpt_train_state_new(c, B, S);
        gpt_layout(s, tt.data, B, 0, NULL);
        gpt_forward(s, c, &tm.w, te.data);
        loss = (float)gpt_loss_backward(s, c, &tm.w, &tm.g, te.data);
        ct[k++] = (ckpt_tensor){"loss", ST_F32, 1, {1, 0}, &loss};
        int n = gpt_tensor_list(c, &tm.g, NULL);
        gpt_tensor *t = xmalloc((size_t)n * sizeof *t);
        gpt_tensor_list(c, &tm.g, t);
        for (int i = 0; i < n; i++)
            ct[k++] = (ckpt_tensor){xstrdup(t[i].name), ST_F32, t[i].ndim, {t[i].shape[0], t[i].shape[1]}, *t[i].ptr};
        free(t);
        gpt_train_state_free(s);
    }
    int rc = 0;
    if (ckpt_write(out, ct, k, NULL, 0, err, sizeof err)) {
        fprintf(stderr, "test_gpt: %s\n", err);
        rc = 2;
    }
    for (int i = 0; i < k; i++)
        if (strcmp(ct[i].name, "loss") && strcmp(ct[i].name, "logits")) free((char *)ct[i].name);
    free(ct);
    free(logits);
    train_model_free(&tm);
    st_close(mf);
    st_close(bf);
    return rc;
}

/* ------------------------------------------------------------ kernel checks */

static void test_conv1d(void) {
    int N = 37, C = 29, OC = 53;
    float *in = malloc(sizeof(float) * N * C), *W = malloc(sizeof(float) * C * OC), *b = malloc(sizeof(float) * OC);
    float *o1 = malloc(sizeof(float) * N * OC), *o2 = malloc(sizeof(float) * N * OC), *dout = malloc(sizeof(float) * N * OC);
    float *di1 = malloc(sizeof(float) * N * C), *di2 = malloc(sizeof(float) * N * C);
    float *dW1 = calloc((size_t)C * OC, 4), *dW2 = calloc((size_t)C * OC, 4), *db1 = calloc(OC, 4), *db2 = calloc(OC, 4);
    fill(in, (size_t)N * C, 1), fill(W, (size_t)C * OC, 0.3f), fill(b, OC, 0.5f), fill(dout, (size_t)N * OC, 1);
    conv1d_forward(o1, in, W, b, N, C, OC);
    conv1d_forward_naive(o2, in, W, b, N, C, OC);
    CHECKF(maxdiff(o1, o2, (size_t)N * OC) < 1e-5, "conv1d_forward (sgemm) equals the naive kernel", "%g",
           maxdiff(o1, o2, (size_t)N * OC));
    conv1d_backward(di1, dW1, db1, dout, in, W, N, C, OC);
    conv1d_backward_naive(di2, dW2, db2, dout, in, W, N, C, OC);
    double d = maxdiff(di1, di2, (size_t)N * C) + maxdiff(dW1, dW2, (size_t)C * OC) + maxdiff(db1, db2, OC);
    CHECKF(d < 1e-4, "conv1d_backward equals the naive kernel", "%g", d);
    free(in), free(W), free(b), free(o1), free(o2), free(dout), free(di1), free(di2), free(dW1), free(dW2), free(db1), free(db2);
}

static void test_layernorm(void) {
    int N = 13, C = 77;
    size_t n = (size_t)N * C;
    float *x = malloc(n * 4), *w = malloc(C * 4), *b = malloc(C * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4);
    float *mean = malloc(N * 4), *rstd = malloc(N * 4), *g = malloc(n * 4);
    float *dx1 = calloc(n, 4), *dx2 = calloc(n, 4), *dw1 = calloc(C, 4), *dw2 = calloc(C, 4), *db1 = calloc(C, 4), *db2 = calloc(C, 4);
    fill(x, n, 2), fill(w, C, 1), fill(b, C, 1), fill(g, n, 1);
    for (size_t i = 0; i < n; i++) x[i] += 3.0f;
    layernorm_forward_train(y1, mean, rstd, x, w, b, N, C, 1e-5f);
    layernorm_forward_naive(y2, x, w, b, N, C, 1e-5f);
    CHECKF(maxdiff(y1, y2, n) < 1e-5, "layernorm_forward_train equals nn.h's naive layernorm", "%g", maxdiff(y1, y2, n));
    layernorm_backward(dx1, dw1, db1, g, x, w, mean, rstd, N, C);
    layernorm_backward_naive(dx2, dw2, db2, g, x, w, mean, rstd, N, C);
    double d = maxdiff(dx1, dx2, n) + maxdiff(dw1, dw2, C) + maxdiff(db1, db2, C);
    CHECKF(d < 1e-4, "layernorm_backward equals the naive kernel", "%g", d);
    /* finite differences of sum(g * LN(x)) in x, double precision */
    double worst = 0;
    for (int t = 0; t < 20; t++) {
        int i = (int)(xrng_next(&R) % n), r = i / C;
        double h = 1e-3, fp = 0, fm = 0;
        float keep = x[i];
        for (int s = -1; s <= 1; s += 2) {
            x[i] = keep + (float)(s * h);
            double v = 0, m = 0;
            for (int k = 0; k < C; k++) m += x[r * C + k];
            m /= C;
            for (int k = 0; k < C; k++) v += (x[r * C + k] - m) * (x[r * C + k] - m);
            v /= C;
            double acc = 0;
            for (int k = 0; k < C; k++) acc += g[r * C + k] * ((x[r * C + k] - m) / sqrt(v + 1e-5) * w[k] + b[k]);
            if (s < 0) fm = acc;
            else fp = acc;
        }
        x[i] = keep;
        double num = (fp - fm) / ((double)(float)(keep + (float)h) - (double)(float)(keep - (float)h));
        double e = fabs(num - dx1[i]) / (fabs(num) + 1e-2);
        worst = e > worst ? e : worst;
    }
    CHECKF(worst < 2e-2, "layernorm_backward matches finite differences", "worst relative error %g", worst);
    free(x), free(w), free(b), free(y1), free(y2), free(mean), free(rstd), free(g);
    free(dx1), free(dx2), free(dw1), free(dw2), free(db1), free(db2);
}

static void test_gelu(void) {
    size_t n = 5000;
    float *x = malloc(n * 4), *y1 = malloc(n * 4), *y2 = malloc(n * 4), *g = malloc(n * 4), *dx = malloc(n * 4);
    fill(x, n, 4);
    x[0] = -30, x[1] = 30, x[2] = 0, x[3] = -1e-8f, x[4] = -12;
    gelu_forward(y1, x, n);
    gelu_forward_naive(y2, x, n);
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)y1[i] - y2[i]) / (fabs(y2[i]) + 1e-6);
        worst = e > worst ? e : worst;
    }
    CHECKF(worst < 1e-5, "gelu_new as x*sigmoid(2u) equals 0.5x(1+tanh u)", "worst relative %g", worst);
    for (size_t i = 0; i < n; i++) g[i] = 1.0f;
    gelu_backward(dx, g, x, n);
    worst = 0;
    for (size_t i = 0; i < n; i++) {
        double h = 1e-3, xp = x[i] + h, xm = x[i] - h, k = sqrt(2.0 / M_PI);
        double fp = 0.5 * xp * (1 + tanh(k * (xp + 0.044715 * xp * xp * xp)));
        double fm = 0.5 * xm * (1 + tanh(k * (xm + 0.044715 * xm * xm * xm)));
        double e = fabs((fp - fm) / (2 * h) - dx[i]);
        worst = e > worst ? e : worst;
    }
    CHECKF(worst < 1e-4, "gelu_backward matches finite differences", "worst %g", worst);
    free(x), free(y1), free(y2), free(g), free(dx);
}

/* a random model, flat parameters */
static void random_model(train_model *tm, gpt_config *c) {
    train_model_init(tm, c, 7);
    /* larger than GPT-2's init so every path shows in the checks */
    for (size_t i = 0; i < tm->np; i++) tm->p[i] *= 5.0f;
    int n = gpt_tensor_list(c, &tm->w, NULL);
    gpt_tensor *t = malloc((size_t)n * sizeof *t);
    gpt_tensor_list(c, &tm->w, t);
    for (int i = 0; i < n; i++)
        if (t[i].ndim == 1) fill(*t[i].ptr, t[i].numel, 0.1f);
    for (int i = 0; i < n; i++)
        if (strstr(t[i].name, "ln_") && strstr(t[i].name, ".weight"))
            for (size_t j = 0; j < t[i].numel; j++) (*t[i].ptr)[j] += 1.0f;
    free(t);
}

/* the loss in double for finite differences (through the float forward) */
static double loss_of(train_model *tm, gpt_train_state *s, const float *emb) {
    gpt_forward(s, &tm->c, &tm->w, emb);
    return gpt_loss_backward(s, &tm->c, &tm->w, NULL, emb);
}

static void test_model_grads(float dropout) {
    gpt_config c = {.E = 10, .C = 16, .L = 2, .NH = 4, .F = 24, .V = 50, .P = 12, .eps = 1e-5f};
    train_model tm;
    random_model(&tm, &c);
    int B = 3, S = 6;
    int32_t tok[18] = {1, 5, 7, 9, 2, 0, 1, 3, 2, 0, 0, 0, 1, 4, 4, 4, 4, 4};
    float emb[30];
    fill(emb, 30, 1);
    gpt_train_state *s = gpt_train_state_new(&c, B, S);
    s->dropout = dropout, s->key = 99; /* the same masks on every pass */
    gpt_layout(s, tok, B, 0, NULL);
    if (dropout == 0) CHECKF(s->N == 5 + 3 + 6 && s->M == 5 + 3 + 6, "layout: rows up to the last target, pads skipped", "N %d M %d",
           s->N, s->M);
    memset(tm.grad, 0, tm.np * 4);
    gpt_forward(s, &c, &tm.w, emb);
    gpt_loss_backward(s, &c, &tm.w, &tm.g, emb);
    /* central differences on a sample of every tensor */
    int n = gpt_tensor_list(&c, &tm.w, NULL);
    gpt_tensor *t = malloc((size_t)n * sizeof *t), *tg = malloc((size_t)n * sizeof *tg);
    gpt_tensor_list(&c, &tm.w, t);
    gpt_tensor_list(&c, &tm.g, tg);
    double worst = 0;
    const char *wname = "";
    for (int i = 0; i < n; i++) {
        for (int r = 0; r < 6; r++) {
            size_t j = xrng_next(&R) % t[i].numel;
            float *p = *t[i].ptr + j, keep = *p;
            float h = 1e-2f * (fabsf(keep) > 1 ? fabsf(keep) : 1);
            *p = keep + h;
            double fp = loss_of(&tm, s, emb);
            *p = keep - h;
            double fm = loss_of(&tm, s, emb);
            *p = keep;
            double num = (fp - fm) / ((double)(keep + h) - (double)(keep - h));
            double an = (*tg[i].ptr)[j];
            double e = fabs(num - an) / (fabs(num) + fabs(an) + 1e-3);
            if (e > worst) worst = e, wname = t[i].name;
        }
    }
    char name[100];
    snprintf(name, sizeof name, "every parameter's gradient matches central differences (dropout %g)", dropout);
    CHECKF(worst < 2e-2, name, "worst %g in %s", worst, wname);
    free(t), free(tg);
    gpt_train_state_free(s);
    train_model_free(&tm);
}

static void test_dropout(void) {
    size_t n = 1 << 20;
    uint8_t *m = malloc(n), *m2 = malloc(n);
    dropout_mask(m, n, 0.1f, 5);
    parfor_init(3);
    dropout_mask(m2, n, 0.1f, 5);
    parfor_shutdown();
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) kept += m[i];
    double frac = 1.0 - (double)kept / n;
    CHECKF(fabs(frac - 0.1) < 0.002, "dropout masks drop a fraction p", "%g", frac);
    CHECK(!memcmp(m, m2, n), "dropout masks do not depend on the thread count");
    dropout_mask(m2, n, 0.1f, 6);
    CHECK(memcmp(m, m2, n), "dropout masks change with the key");
    free(m), free(m2);
}

static void test_cache_and_batches(void) {
    gpt_config c = {.E = 12, .C = 24, .L = 2, .NH = 3, .F = 40, .V = 70, .P = 16, .eps = 1e-5f};
    train_model tm;
    random_model(&tm, &c);
    int B = 4, S = 7;
    int32_t tok[28];
    for (int i = 0; i < 28; i++) tok[i] = 1 + (int)(xrng_next(&R) % 69);
    float emb[48];
    fill(emb, 48, 1);
    int lens[4] = {7, 7, 7, 7};
    gpt_train_state *s = gpt_train_state_new(&c, B, S);
    gpt_layout(s, tok, B, 0, lens);
    gpt_forward(s, &c, &tm.w, emb);
    /* the cached step, one position at a time, batch of all four */
    gpt_cache *kv = gpt_cache_new(&c, B, S);
    float *in = malloc(sizeof(float) * B * c.C), *out = malloc(sizeof(float) * B * c.C);
    int slot[4] = {0, 1, 2, 3}, pos[4];
    double worst = 0;
    gpt_prefix(in, &c, &tm.w, emb, B);
    for (int t = 0; t < S; t++) {
        for (int b = 0; b < B; b++) {
            pos[b] = t;
            if (t > 0) memcpy(in + b * c.C, tm.w.wte + (size_t)tok[b * S + t - 1] * c.C, sizeof(float) * c.C);
        }
        gpt_step(kv, &c, &tm.w, out, in, slot, pos, B);
        for (int b = 0; b < B; b++) {
            double d = maxdiff(out + b * c.C, s->lnf + (size_t)(s->off[b] + t) * c.C, c.C);
            worst = d > worst ? d : worst;
        }
    }
    CHECKF(worst < 1e-5, "KV-cached step equals the full forward pass at every position", "max %g", worst);
    gpt_cache_free(kv);
    free(in), free(out);

    /* generation of a prefix does not depend on its batch */
    for (int beam = 1; beam <= 3; beam += 2) {
        gpt_gen_opts o = {.max_len = 12, .beam = beam, .vt = 60, .stop = 5};
        gpt_gen *g = gpt_gen_new(&c, &tm.w, &o, 4);
        int32_t ids4[48], ids1[12];
        int n4[4], n1[1], same = 1, allowed = 1;
        gpt_generate(g, emb, 4, ids4, n4);
        for (int b = 0; b < 4; b++) {
            gpt_generate(g, emb + b * c.E, 1, ids1, n1);
            same &= n1[0] == n4[b] && !memcmp(ids1, ids4 + b * 12, sizeof(int32_t) * n1[0]);
            for (int k = 0; k < n4[b]; k++) allowed &= ids4[b * 12 + k] < 60;
        }
        char name[120];
        snprintf(name, sizeof name, "beam %d: each prefix decodes the same alone and in a batch", beam);
        CHECK(same, name);
        snprintf(name, sizeof name, "beam %d: ids >= the tokenizer's size are never emitted", beam);
        CHECK(allowed, name);
        gpt_gen_free(g);
    }
    gpt_train_state_free(s);
    train_model_free(&tm);
}

static void test_adamw_schedule_rng(void) {
    size_t n = 10007;
    float *p1 = malloc(n * 4), *p2 = malloc(n * 4), *g = malloc(n * 4), *m1 = calloc(n, 4), *m2 = calloc(n, 4);
    float *v1 = calloc(n, 4), *v2 = calloc(n, 4);
    fill(p1, n, 1);
    memcpy(p2, p1, n * 4);
    float *g2 = malloc(n * 4);
    int zeroed = 1;
    for (int t = 1; t <= 3; t++) {
        fill(g, n, 0.1f);
        memcpy(g2, g, n * 4);
        adamw_step(p1, g, m1, v1, n, t, 1e-3, 0.02, 1e-6);
        adamw_step_naive(p2, g2, m2, v2, n, t, 1e-3, 0.02, 1e-6);
        for (size_t i = 0; i < n; i++) zeroed &= g[i] == 0.0f;
    }
    CHECK(zeroed, "AdamW zeroes the gradient (zero_grad) in its pass");
    free(g2);
    CHECK(!memcmp(p1, p2, n * 4) && !memcmp(m1, m2, n * 4) && !memcmp(v1, v2, n * 4),
          "AdamW: threaded (vector) and serial scalar steps are bit-identical");
    /* both paths (AVX, scalar) against the plain scalar loop, with and
     * without weight decay, on a length that leaves a scalar tail */
    for (int k = 0; k < 2; k++) {
        if (k == 0 && !__builtin_cpu_supports("avx")) continue;
        if (k == 1) setenv("WSAC_ADAM_SCALAR", "1", 1);
        for (int d = 0; d < 2; d++) {
            double wd = d ? 0.02 : 0.0;
            fill(p1, n, 1);
            memcpy(p2, p1, n * 4);
            memset(m1, 0, n * 4), memset(m2, 0, n * 4), memset(v1, 0, n * 4), memset(v2, 0, n * 4);
            g2 = malloc(n * 4);
            for (int t = 1; t <= 3; t++) {
                fill(g, n, 0.1f * (float)t);
                memcpy(g2, g, n * 4);
                adamw_step(p1, g, m1, v1, n, t, 1e-3, wd, 1e-6);
                adamw_step_naive(p2, g2, m2, v2, n, t, 1e-3, wd, 1e-6);
            }
            free(g2);
            char nm[96];
            snprintf(nm, sizeof nm, "AdamW %s path, weight decay %g: bit-identical to the scalar loop",
                     k == 0 ? "AVX" : "scalar", wd);
            CHECK(!memcmp(p1, p2, n * 4) && !memcmp(m1, m2, n * 4) && !memcmp(v1, v2, n * 4), nm);
        }
    }
    unsetenv("WSAC_ADAM_SCALAR");
    /* first step: m = 0.1 g, v = 0.001 g^2, update ~ lr * sign(g), then decay */
    float p = 1.0f, gg = 0.5f, m = 0, v = 0;
    adamw_step_naive(&p, &gg, &m, &v, 1, 1, 1e-3, 0.1, 1e-6);
    double want = (1.0 - 1e-3 * (0.05 / (sqrt(0.00025) + 1e-6)) * sqrt(0.001) / 0.1) * (1 - 1e-4);
    CHECKF(fabs(p - want) < 1e-6, "AdamW: one step by hand (bias correction, eps, decoupled decay)", "%.9g vs %.9g", p, want);
    CHECK(lr_lambda(0, 100, 1000) == 0 && lr_lambda(50, 100, 1000) == 0.5 && lr_lambda(100, 100, 1000) == 1 &&
              lr_lambda(550, 100, 1000) == 0.5 && lr_lambda(1000, 100, 1000) == 0 && lr_lambda(5, 0, 10) == 0.5,
          "linear schedule with warm-up: values of get_linear_schedule_with_warmup");
    xrng a, b;
    xrng_seed(&a, 42);
    b = a;
    char hex[65];
    xrng_format(&a, hex);
    xrng c2;
    CHECK(!xrng_parse(&c2, hex) && !memcmp(&c2, &a, sizeof a), "RNG state round-trips through its hex form");
    /* xoshiro256** reference: state {1,2,3,4} -> first output 11520 */
    xrng k = {{1, 2, 3, 4}};
    CHECK(xrng_next(&k) == 11520ULL && xrng_next(&k) == 0ULL && xrng_next(&k) == 1509978240ULL,
          "xoshiro256** matches its reference outputs");
    double s1 = 0, s2 = 0;
    size_t nn = 200000;
    float *z = malloc(nn * 4);
    xrng_normal(&b, z, nn);
    for (size_t i = 0; i < nn; i++) s1 += z[i], s2 += (double)z[i] * z[i];
    CHECKF(fabs(s1 / nn) < 0.01 && fabs(s2 / nn - 1) < 0.01, "Box-Muller normals have mean 0 and variance 1",
           "mean %g var %g", s1 / nn, s2 / nn);
    int perm[1000], seen[1000] = {0}, okp = 1;
    xrng_permutation(&b, perm, 1000);
    for (int i = 0; i < 1000; i++) okp &= perm[i] >= 0 && perm[i] < 1000 && !seen[perm[i]]++;
    CHECK(okp, "permutations are permutations");
    free(p1), free(p2), free(g), free(m1), free(m2), free(v1), free(v2), free(z);
}

static void test_threads(void) {
    /* our kernels give the same bits on 1 and 3 threads (a different split) */
    gpt_config c = {.E = 12, .C = 24, .L = 2, .NH = 3, .F = 40, .V = 70, .P = 16, .eps = 1e-5f};
    train_model tm;
    random_model(&tm, &c);
    int32_t tok[14] = {1, 2, 3, 4, 5, 0, 0, 1, 9, 8, 7, 6, 5, 4};
    float emb[24];
    fill(emb, 24, 1);
    gpt_train_state *s = gpt_train_state_new(&c, 2, 7);
    float *g1 = malloc(tm.np * 4);
    gpt_layout(s, tok, 2, 0, NULL);
    memset(tm.grad, 0, tm.np * 4);
    gpt_forward(s, &c, &tm.w, emb);
    double l1 = gpt_loss_backward(s, &c, &tm.w, &tm.g, emb);
    memcpy(g1, tm.grad, tm.np * 4);
    parfor_init(3);
    memset(tm.grad, 0, tm.np * 4);
    gpt_forward(s, &c, &tm.w, emb);
    double l3 = gpt_loss_backward(s, &c, &tm.w, &tm.g, emb);
    parfor_shutdown();
    CHECK(l1 == l3 && !memcmp(g1, tm.grad, tm.np * 4), "loss and gradients are bit-identical on 1 and 3 kernel threads");
    free(g1);
    gpt_train_state_free(s);
    train_model_free(&tm);
}

int main(int argc, char **argv) {
    if (argc == 5) return helper(argv[1], argv[2], argv[3], argv[4]);
    if (argc != 1) {
        fprintf(stderr, "usage: test_gpt [grads|logits MODEL BATCH OUT]\n");
        return 2;
    }
    nn_set_threads(1);
    xrng_seed(&R, 1);
    test_conv1d();
    test_layernorm();
    test_gelu();
    test_model_grads(0.0f);
    test_model_grads(0.2f);
    test_dropout();
    test_cache_and_batches();
    test_adamw_schedule_rng();
    test_threads();
    return check_exit();
}
