/* test_attention.c - the packed self-attention of lib/kernels_tf.c: the
 * sgemm path (every query sees every key: BERT, RoBERTa, PaSST) against its
 * naive twin (the scalar loops of the causal path), forward and backward,
 * with and without attention dropout, on odd sizes and one PaSST-length
 * sequence; the causal path is the naive one bit for bit; and the bits do not
 * depend on the thread count. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gap.h" /* rng_t */
#include "bert_train.h"
#include "kernels.h"
#include "parfor.h"
#include "util.h"

static rng_t R;

static float *rnd(size_t n, double s) {
    float *x = xmalloc((n ? n : 1) * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(s * rng_normal(&R));
    return x;
}

/* max |a - b| / max |b| over the first n */
static double relerr(const float *a, const float *b, size_t n) {
    double d = 0, m = 0;
    for (size_t i = 0; i < n; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return m > 0 ? d / m : d;
}

typedef struct {
    int B, Tm, C, NH, N;
    int off[8], len[8];
    float *qkv, *dout;
    uint8_t *mask;
} problem;

static void make(problem *p, const int *lens, int B, int C, int NH, int dropout) {
    memset(p, 0, sizeof *p);
    p->B = B, p->C = C, p->NH = NH;
    for (int b = 0; b < B; b++) {
        p->off[b] = p->N, p->len[b] = lens[b], p->N += lens[b];
        if (lens[b] > p->Tm) p->Tm = lens[b];
    }
    p->qkv = rnd((size_t)p->N * 3 * C, 1.5); /* scores of a few units: a peaked softmax */
    p->dout = rnd((size_t)p->N * C, 1.0);
    if (dropout) {
        size_t n = (size_t)B * NH * p->Tm * p->Tm;
        p->mask = xmalloc(n);
        dropout_mask(p->mask, n, 0.2f, 77);
    }
}

static void drop(problem *p) { free(p->qkv), free(p->dout), free(p->mask); }

typedef struct {
    float *out, *att, *dqkv;
} result;

static result run(const problem *p, int causal, int naive) {
    result r;
    size_t na = (size_t)p->B * p->NH * p->Tm * p->Tm;
    r.out = xcalloc((size_t)p->N * p->C, sizeof(float));
    r.att = xcalloc(na, sizeof(float));
    r.dqkv = xcalloc((size_t)p->N * 3 * p->C, sizeof(float));
    float ds = 1.0f / 0.8f;
    if (naive) {
        attention_forward_naive(r.out, r.att, p->qkv, p->mask, ds, p->off, p->len, p->B, p->Tm, p->C, p->NH, causal);
        attention_backward_naive(r.dqkv, p->dout, p->qkv, r.att, p->mask, ds, p->off, p->len, p->B, p->Tm, p->C, p->NH,
                                 causal);
    } else {
        attention_forward(r.out, r.att, p->qkv, p->mask, ds, p->off, p->len, p->B, p->Tm, p->C, p->NH, causal);
        attention_backward(r.dqkv, p->dout, p->qkv, r.att, p->mask, ds, p->off, p->len, p->B, p->Tm, p->C, p->NH,
                           causal);
    }
    return r;
}

static void release(result *r) { free(r->out), free(r->att), free(r->dqkv); }

/* the attention probabilities a sequence uses, gathered: rows t < len, columns < len (or <= t) */
static double att_err(const problem *p, const result *a, const result *b, int causal) {
    double worst = 0;
    for (int bb = 0; bb < p->B; bb++)
        for (int h = 0; h < p->NH; h++)
            for (int t = 0; t < p->len[bb]; t++) {
                size_t o = (((size_t)bb * p->NH + h) * p->Tm + t) * p->Tm;
                int n = causal ? t + 1 : p->len[bb];
                worst = fmax(worst, relerr(a->att + o, b->att + o, (size_t)n));
            }
    return worst;
}

static int same_bits(const problem *p, const result *a, const result *b, int causal) {
    if (memcmp(a->out, b->out, (size_t)p->N * p->C * sizeof(float))) return 0;
    if (memcmp(a->dqkv, b->dqkv, (size_t)p->N * 3 * p->C * sizeof(float))) return 0;
    return att_err(p, a, b, causal) == 0;
}

static void compare(const char *what, const int *lens, int B, int C, int NH, int dropout, double tol) {
    problem p;
    make(&p, lens, B, C, NH, dropout);
    result f = run(&p, 0, 0), n = run(&p, 0, 1);
    double eo = relerr(f.out, n.out, (size_t)p.N * C), ed = relerr(f.dqkv, n.dqkv, (size_t)p.N * 3 * C);
    double ea = att_err(&p, &f, &n, 0);
    char name[256];
    snprintf(name, sizeof name, "non-causal attention (sgemm) = naive twin, %s%s: out, probabilities, dqkv", what,
             dropout ? ", with dropout" : "");
    CHECKF(eo < tol && ea < tol && ed < tol, name, "%.3g %.3g %.3g", eo, ea, ed);
    /* causal: the same scalar loops on both paths */
    result fc = run(&p, 1, 0), nc = run(&p, 1, 1);
    snprintf(name, sizeof name, "causal attention is its naive twin bit for bit, %s%s", what,
             dropout ? ", with dropout" : "");
    CHECK(same_bits(&p, &fc, &nc, 1), name);
    release(&f), release(&n), release(&fc), release(&nc);
    drop(&p);
}

/* forward and backward against central differences of L = sum(out * dout) */
static void gradcheck(void) {
    int lens[2] = {5, 3};
    problem p;
    make(&p, lens, 2, 12, 3, 0);
    result r = run(&p, 0, 0);
    size_t nq = (size_t)p.N * 3 * p.C;
    double worst = 0, big = 0;
    float *out = xmalloc((size_t)p.N * p.C * sizeof(float)), *att = xmalloc((size_t)2 * 3 * 25 * sizeof(float));
    for (size_t i = 0; i < nq; i += 7) {
        double l[2];
        float keep = p.qkv[i];
        for (int s = 0; s < 2; s++) {
            p.qkv[i] = keep + (s ? -1e-2f : 1e-2f);
            attention_forward(out, att, p.qkv, NULL, 1.0f, p.off, p.len, p.B, p.Tm, p.C, p.NH, 0);
            double acc = 0;
            for (size_t k = 0; k < (size_t)p.N * p.C; k++) acc += (double)out[k] * p.dout[k];
            l[s] = acc;
        }
        p.qkv[i] = keep;
        double num = (l[0] - l[1]) / 2e-2;
        worst = fmax(worst, fabs(num - r.dqkv[i]));
        big = fmax(big, fabs(r.dqkv[i]));
    }
    CHECKF(worst < 2e-3 * big + 1e-4, "non-causal attention backward agrees with central differences", "%.3g of %.3g",
           worst, big);
    free(out), free(att);
    release(&r);
    drop(&p);
}


/* BERT's attention dropout (lib/bert_train.c): an item's mask is drawn for its
 * own length, so it does not change with the batch's longest caption (the
 * same item alone and beside a longer one), which clap-train's splitting of a
 * batch over MPI ranks relies on */
static void test_bert_attention_mask(void) {
    char err[512];
    bertt *Tx = bertt_load("data/models/clap-test.safetensors", err, sizeof err);
    CHECKF(Tx != NULL, "the bundled test CLAP's text tower loads", "%s", err);
    if (!Tx) return;
    int lens[2] = {6, 17}, N = 23, NH = Tx->c.heads;
    int32_t ids[23];
    for (int i = 0; i < N; i++) ids[i] = 2000 + 37 * i;
    uint64_t keys[2] = {101, 202};
    float e[2 * 1024];
    bertt_forward_train(Tx, e, ids, lens, 1, keys); /* item 0 alone: Tm 6 */
    int L = lens[0], Tm1 = Tx->Tm, nl = Tx->c.layers;
    uint8_t *alone = xmalloc((size_t)nl * NH * L * L);
    for (int l = 0; l < nl; l++)
        for (int h = 0; h < NH; h++)
            for (int r = 0; r < L; r++)
                memcpy(alone + (((size_t)l * NH + h) * L + r) * L, Tx->la[l].amask + ((size_t)h * Tm1 + r) * Tm1, (size_t)L);
    bertt_forward_train(Tx, e, ids, lens, 2, keys); /* beside a 17-token caption: Tm 17 */
    int same = Tx->Tm == 17, Tm2 = Tx->Tm;
    for (int l = 0; l < nl && same; l++)
        for (int h = 0; h < NH && same; h++)
            for (int r = 0; r < L && same; r++)
                same = !memcmp(alone + (((size_t)l * NH + h) * L + r) * L, Tx->la[l].amask + ((size_t)h * Tm2 + r) * Tm2, (size_t)L);
    CHECK(same, "BERT attention dropout: an item's mask is the same alone and beside a longer caption");
    free(alone);
    bertt_free(Tx);
}

int main(void) {
    tool_init("test_attention");
    rng_seed(&R, 5);
    int odd[4] = {7, 1, 13, 4}, round[2] = {32, 64}, passt[1] = {498};
    /* serial first (no pool): kept to compare with the pooled run below */
    problem p;
    make(&p, odd, 4, 30, 5, 1);
    result serial = run(&p, 0, 0);
    compare("4 sequences of 7/1/13/4 tokens, width 30, 5 heads of 6", odd, 4, 30, 5, 0, 2e-6);
    compare("4 sequences of 7/1/13/4 tokens, width 30, 5 heads of 6", odd, 4, 30, 5, 1, 2e-6);
    compare("2 sequences of 32/64 tokens, width 64, 4 heads of 16", round, 2, 64, 4, 1, 2e-6);
    compare("one sequence of 498 tokens (PaSST), width 96, 2 heads of 48", passt, 1, 96, 2, 0, 5e-6);
    gradcheck();
    test_bert_attention_mask();
    parfor_init(3);
    result pooled = run(&p, 0, 0);
    CHECK(same_bits(&p, &serial, &pooled, 0), "non-causal attention: the same bits on 1 and 3 threads");
    release(&serial), release(&pooled);
    drop(&p);
    parfor_shutdown();
    return check_exit();
}
