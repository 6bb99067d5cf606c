/* test_roberta_train.c - SALSA's RoBERTa text tower in training mode
 * (lib/bert_train.c with clap.text.arch = roberta).
 *
 * Alone (make check): a small random RoBERTa CLAP file written here (hidden
 * 30 = 3 heads of 10, 2 layers, feed-forward 37, 53 tokens, <pad> 1, 41
 * positions, embedding 19) and the bundled BERT test CLAP:
 *   - the tower loads as RoBERTa (positions from pad_id + 1, project_sentence
 *     head, SALSA's dropout 0.2/0.2); BERT keeps text_proj and 0.1/0.1;
 *   - gradients against central differences; the position rows below
 *     pad_id + 1 get none;
 *   - dropout: every site keeps 80% (5 binomial sigma), rates settable, each
 *     item's masks keyed by its key alone (another batch order, alone, beside
 *     a longer caption: the same bits), rates 0 = no dropout.
 *
 * The C side of tests/py/test_roberta_train.py (PyTorch parity):
 *   test_roberta_train dump MODEL IN OUT [THREADS]
 *     IN: int32 n, int32 ints[n] = B len[B] aid[B] drop key[B] (two int32
 *     each, low first) ids[sum len]; float32 a[B, E], hidden and attention
 *     dropout. A training step (drop 0: no dropout) with SALSA's L_sup
 *     against a; OUT: e[B, E] f32, the gradients f32 (bert_train's tensor
 *     order), the loss f64, then with drop the masks as bytes: embeddings
 *     [N, H], per layer the two residual branches [N, H] each and attention
 *     per item [NH, len, len].
 *   test_roberta_train ids MODEL < CAPTIONS
 *     each line's ids as the trainer and clap-text make them
 *     (salsa_text.h), space-separated, one line each. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bert_train.h"
#include "check.h"
#include "contrastive.h"
#include "gap.h"
#include "gemm.h"
#include "salsa_text.h"
#include "train.h"
#include "util.h"

static rng_t R;

/* the small model: vocab, hidden, heads, feed-forward, positions, <pad>, embedding, layers */
enum { SV = 53, SH = 30, SNH = 3, SI = 37, SPOS = 41, SPAD = 1, SE = 19, SNL = 2 };

/* ------------------------------------------------------------------ a small RoBERTa CLAP file */

typedef struct {
    ckpt_tensor t[64];
    float *data[64];
    char *names[64];
    int n;
} tensors;

static void put_t(tensors *ts, const char *name, int64_t d0, int64_t d1, double scale, double base) {
    size_t n = (size_t)d0 * (size_t)(d1 ? d1 : 1);
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = (float)(base + scale * rng_normal(&R));
    ckpt_tensor *t = &ts->t[ts->n];
    ts->names[ts->n] = xstrdup(name), ts->data[ts->n] = x;
    t->name = ts->names[ts->n], t->dtype = ST_F32, t->ndim = d1 ? 2 : 1, t->shape[0] = d0, t->shape[1] = d1;
    t->data = x;
    ts->n++;
}

static int write_roberta(const char *path, char *err, size_t errlen) {
    tensors ts;
    memset(&ts, 0, sizeof ts);
    const char *p = "sentence_embedding_model.";
    char nm[200];
#define NM(s) (snprintf(nm, sizeof nm, "%s%s", p, s), nm)
    put_t(&ts, NM("embeddings.word_embeddings.weight"), SV, SH, 0.5, 0);
    put_t(&ts, NM("embeddings.position_embeddings.weight"), SPOS, SH, 0.5, 0);
    put_t(&ts, NM("embeddings.token_type_embeddings.weight"), 1, SH, 0.5, 0);
    put_t(&ts, NM("embeddings.LayerNorm.weight"), SH, 0, 0.1, 1);
    put_t(&ts, NM("embeddings.LayerNorm.bias"), SH, 0, 0.1, 0);
    for (int l = 0; l < SNL; l++) {
        static const char *const lin[6] = {"attention.self.query", "attention.self.key", "attention.self.value",
                                           "attention.output.dense", "intermediate.dense", "output.dense"};
        const int oc[6] = {SH, SH, SH, SH, SI, SH}, ic[6] = {SH, SH, SH, SH, SH, SI};
        for (int k = 0; k < 6; k++) {
            snprintf(nm, sizeof nm, "%sencoder.layer.%d.%s.weight", p, l, lin[k]);
            put_t(&ts, nm, oc[k], ic[k], 1 / sqrt(ic[k]), 0);
            snprintf(nm, sizeof nm, "%sencoder.layer.%d.%s.bias", p, l, lin[k]);
            put_t(&ts, nm, oc[k], 0, 0.1, 0);
        }
        static const char *const ln[2] = {"attention.output.LayerNorm", "output.LayerNorm"};
        for (int k = 0; k < 2; k++) {
            snprintf(nm, sizeof nm, "%sencoder.layer.%d.%s.weight", p, l, ln[k]);
            put_t(&ts, nm, SH, 0, 0.1, 1);
            snprintf(nm, sizeof nm, "%sencoder.layer.%d.%s.bias", p, l, ln[k]);
            put_t(&ts, nm, SH, 0, 0.1, 0);
        }
    }
#undef NM
    put_t(&ts, "project_sentence.0.weight", SE, SH, 1 / sqrt(SH), 0);
    put_t(&ts, "project_sentence.0.bias", SE, 0, 0.1, 0);
    char sh[8], sp[8], sf[8], sm[8];
    snprintf(sh, sizeof sh, "%d", SNH), snprintf(sp, sizeof sp, "%d", SPAD), snprintf(sf, sizeof sf, "%d", SPAD + 1);
    snprintf(sm, sizeof sm, "%d", 32);
    const char *meta[] = {"wsac.format", "1", "wsac.model", "clap", "clap.family", "salsa", "clap.text.arch", "roberta",
                          "clap.text.heads", sh, "clap.text.pad_id", sp, "clap.text.position_offset", sf,
                          "clap.text.max_len", sm, "clap.text.ln_eps", "1e-05", "clap.text.pooling", "first"};
    int rc = ckpt_write(path, ts.t, ts.n, meta, (int)(sizeof meta / sizeof *meta / 2), err, errlen);
    for (int i = 0; i < ts.n; i++) free(ts.data[i]), free(ts.names[i]);
    return rc;
}

/* ------------------------------------------------------------------ self-test */

static double keep_frac(const uint8_t *m, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) k += m[i];
    return (double)k / (double)n;
}

/* within 5 binomial sigma of keeping 1 - p */
static int rate_ok(double frac, size_t n, double p) { return fabs(frac - (1 - p)) <= 5 * sqrt(p * (1 - p) / (double)n); }

/* L = sum(e * w): the loss whose gradient de is w */
static double lossw(bertt *m, float *e, const int32_t *ids, const int *len, int B, const float *w) {
    bertt_forward_train(m, e, ids, len, B, NULL);
    double s = 0;
    for (int i = 0; i < B * m->c.embed; i++) s += (double)e[i] * w[i];
    return s;
}

/* item b's masks: embeddings, per layer two residual branches and attention [SNH, len, len] */
static uint8_t *item_masks(const bertt *m, int b, size_t *n) {
    size_t h = (size_t)m->c.hidden, L = (size_t)m->len[b], nh = (size_t)m->c.heads, Tm = (size_t)m->Tm;
    size_t per = L * h * (1 + 2 * (size_t)m->c.layers) + (size_t)m->c.layers * nh * L * L;
    uint8_t *o = xmalloc(per), *q = o;
    size_t off = (size_t)m->off[b] * h;
    memcpy(q, m->emask + off, L * h), q += L * h;
    for (int l = 0; l < m->c.layers; l++) {
        memcpy(q, m->la[l].dmask1 + off, L * h), q += L * h;
        memcpy(q, m->la[l].dmask2 + off, L * h), q += L * h;
        for (size_t k = 0; k < nh; k++)
            for (size_t r = 0; r < L; r++) memcpy(q, m->la[l].amask + ((b * nh + k) * Tm + r) * Tm, L), q += L;
    }
    *n = per;
    return o;
}

/* every site's keep rate over the batch's real entries; the worst deviation in *worst */
static int rates_ok(const bertt *m, double ph, double pa, double *worst) {
    size_t h = (size_t)m->c.hidden, N = (size_t)m->N, nh = (size_t)m->c.heads, Tm = (size_t)m->Tm;
    double f = keep_frac(m->emask, N * h);
    int ok = rate_ok(f, N * h, ph);
    *worst = fabs(f - (1 - ph));
    for (int l = 0; l < m->c.layers; l++) {
        f = keep_frac(m->la[l].dmask1, N * h), ok &= rate_ok(f, N * h, ph), *worst = fmax(*worst, fabs(f - (1 - ph)));
        f = keep_frac(m->la[l].dmask2, N * h), ok &= rate_ok(f, N * h, ph), *worst = fmax(*worst, fabs(f - (1 - ph)));
        size_t kept = 0, used = 0;
        for (int b = 0; b < m->B; b++)
            for (size_t k = 0; k < nh; k++)
                for (int r = 0; r < m->len[b]; r++)
                    for (int c = 0; c < m->len[b]; c++, used++) kept += m->la[l].amask[((b * nh + k) * Tm + r) * Tm + c];
        f = (double)kept / used, ok &= rate_ok(f, used, pa), *worst = fmax(*worst, fabs(f - (1 - pa)));
    }
    return ok;
}

static void selftest(void) {
    char err[512], path[64];
    snprintf(path, sizeof path, "/tmp/wsac-roberta-train-%ld.safetensors", (long)getpid());
    rng_seed(&R, 5);
    int wrc = write_roberta(path, err, sizeof err);
    CHECKF(wrc == 0, "a small random RoBERTa CLAP file is written", "%s", err);
    bertt *m = wrc ? NULL : bertt_load(path, err, sizeof err);
    unlink(path);
    CHECKF(m != NULL, "bertt_load reads SALSA's RoBERTa tower (clap.text.arch = roberta)", "%s", err);
    if (!m) return;
    int hd = bertt_head(m);
    CHECKF(m->c.arch == BERT_ARCH_ROBERTA && m->c.pos_offset == SPAD + 1 && m->c.proj_layers == 1 &&
               fabsf(m->c.ln_eps - 1e-5f) < 1e-12f && !strcmp(m->t[hd].name, "project_sentence.0.weight") &&
               hd + 2 == m->ntensors && m->nparams == (size_t)(SV + SPOS + 1 + 2) * SH +
                                                          (size_t)SNL * (4 * SH * SH + 2 * SH * SI + SI + 9 * SH) + SE * SH + SE,
           "RoBERTa: positions from pad_id + 1, eps 1e-5, project_sentence.0 the head, every parameter",
           "arch %d offset %d proj %d head %s", m->c.arch, m->c.pos_offset, m->c.proj_layers, m->t[hd].name);
    CHECKF(m->hidden_dropout == 0.2f && m->attn_dropout == 0.2f,
           "RoBERTa's dropout defaults are SALSA's (hidden 0.2, attention 0.2)", "%g %g", m->hidden_dropout,
           m->attn_dropout);
    bertt *bm = bertt_load("data/models/clap-test.safetensors", err, sizeof err);
    CHECKF(bm && bm->hidden_dropout == 0.1f && bm->attn_dropout == 0.1f &&
               !strcmp(bm->t[bertt_head(bm)].name, "text_proj.0.weight") && bm->c.pos_offset == 0,
           "BERT (the bundled test CLAP) keeps text_proj, positions from 0, dropout 0.1/0.1", "%s", bm ? "" : err);
    bertt_free(bm);

    /* gradients: central differences of sum(e * w) */
    int lens[6] = {7, 3, 11, 5, 9, 30}, B = 6, N = 0;
    for (int b = 0; b < B; b++) N += lens[b];
    int32_t *ids = xmalloc((size_t)N * sizeof(int32_t));
    for (int b = 0, o = 0; b < B; o += lens[b], b++)
        for (int t = 0; t < lens[b]; t++) ids[o + t] = t == 0 ? 0 : t == lens[b] - 1 ? 2 : 3 + (int32_t)(rng_uniform(&R) * (SV - 3));
    float *w = xmalloc((size_t)B * SE * sizeof(float)), *e = xmalloc((size_t)B * SE * sizeof(float));
    float *e0 = xmalloc((size_t)B * SE * sizeof(float));
    for (int i = 0; i < B * SE; i++) w[i] = (float)rng_normal(&R);
    memset(m->grads, 0, m->nparams * sizeof(float));
    lossw(m, e0, ids, lens, B, w);
    bertt_backward(m, w);
    const float *gpos = m->grads + m->t[1].off;
    int below = 1, used = 1;
    for (int r = 0; r <= SPAD; r++)
        for (int h = 0; h < SH; h++) below &= gpos[r * SH + h] == 0;
    for (int r = SPAD + 1; r < SPAD + 1 + 30; r++) {
        double s = 0;
        for (int h = 0; h < SH; h++) s += fabs(gpos[r * SH + h]);
        used &= s > 0;
    }
    CHECK(below && used, "positions: rows 0..pad_id get no gradient, rows pad_id + 1 + p (p < 30) do");
    /* a few entries of every kind of tensor */
    const char *probe[] = {"sentence_embedding_model.embeddings.position_embeddings.weight",
                           "sentence_embedding_model.embeddings.token_type_embeddings.weight",
                           "sentence_embedding_model.embeddings.LayerNorm.weight",
                           "sentence_embedding_model.encoder.layer.0.attention.self.query.weight",
                           "sentence_embedding_model.encoder.layer.1.attention.self.value.bias",
                           "sentence_embedding_model.encoder.layer.1.intermediate.dense.weight",
                           "sentence_embedding_model.encoder.layer.1.output.LayerNorm.bias",
                           "project_sentence.0.weight", "project_sentence.0.bias"};
    double worst = 0;
    const char *wn = "";
    for (size_t k = 0; k < sizeof probe / sizeof *probe; k++) {
        int ti = bertt_find(m, probe[k]);
        if (ti < 0) {
            worst = 1, wn = probe[k];
            continue;
        }
        size_t off = m->t[ti].off + (k == 0 ? (size_t)(SPAD + 3) * SH + 4 : m->t[ti].numel / 3);
        float keep = m->params[off];
        const float hstep = 1e-2f;
        m->params[off] = keep + hstep;
        double lp = lossw(m, e, ids, lens, B, w);
        m->params[off] = keep - hstep;
        double lm = lossw(m, e, ids, lens, B, w);
        m->params[off] = keep;
        double fd = (lp - lm) / (2 * hstep), g = m->grads[off];
        double r = fabs(fd - g) / fmax(fabs(fd), 1e-2);
        if (r > worst) worst = r, wn = probe[k];
    }
    printf("# central differences (step 1e-2, float32): worst relative %.2e (%s)\n", worst, wn);
    CHECKF(worst < 2e-2, "gradients = central differences (9 tensors of every kind, 2e-2 relative)", "%.2e (%s)", worst,
           wn);

    /* dropout */
    uint64_t keys[6] = {101, 102, 103, 104, 105, 106};
    bertt_forward_train(m, e, ids, lens, B, keys);
    double dw = 0;
    CHECKF(rates_ok(m, 0.2, 0.2, &dw),
           "dropout 0.2: embeddings, attention probabilities, both residual branches keep 80% (5 sigma)", "worst %.4f",
           dw);
    double d = 0;
    for (int i = 0; i < B * SE; i++) d = fmax(d, fabs(e[i] - e0[i]));
    CHECKF(d > 1e-4, "dropout changes the embeddings", "%.3g", d);
    size_t nb[6];
    uint8_t *saved[6];
    for (int b = 0; b < B; b++) saved[b] = item_masks(m, b, &nb[b]);
    int differ = memcmp(saved[0], saved[2], nb[0] < nb[2] ? nb[0] : nb[2]) != 0;
    CHECK(differ, "two items get different masks");
    /* another order */
    int perm[6] = {4, 0, 5, 2, 1, 3}, plen[6];
    uint64_t pk[6];
    int32_t *pids = xmalloc((size_t)N * sizeof(int32_t));
    int offs[6];
    for (int b = 0, o = 0; b < B; o += lens[b], b++) offs[b] = o;
    for (int b = 0, o = 0; b < B; b++) {
        plen[b] = lens[perm[b]], pk[b] = keys[perm[b]];
        memcpy(pids + o, ids + offs[perm[b]], (size_t)plen[b] * sizeof(int32_t));
        o += plen[b];
    }
    bertt_forward_train(m, e, pids, plen, B, pk);
    int same = 1;
    for (int b = 0; b < B; b++) {
        size_t n;
        uint8_t *x = item_masks(m, b, &n);
        same &= n == nb[perm[b]] && !memcmp(x, saved[perm[b]], n);
        free(x);
    }
    CHECK(same, "an item's masks depend on its key, not on its place in the batch");
    /* alone: item 1 (3 tokens) without the 30-token caption beside it */
    bertt_forward_train(m, e, ids + offs[1], lens + 1, 1, keys + 1);
    size_t n1;
    uint8_t *x1 = item_masks(m, 0, &n1);
    CHECK(n1 == nb[1] && !memcmp(x1, saved[1], n1), "an item's masks are the same alone and beside longer captions");
    free(x1);
    /* other rates */
    m->hidden_dropout = 0.1f, m->attn_dropout = 0.35f;
    bertt_forward_train(m, e, ids, lens, B, keys);
    CHECKF(rates_ok(m, 0.1, 0.35, &dw), "rates settable: hidden 0.1, attention 0.35 kept at 90% / 65% (5 sigma)",
           "worst %.4f", dw);
    m->hidden_dropout = 0, m->attn_dropout = 0;
    bertt_forward_train(m, e, ids, lens, B, keys);
    CHECK(!memcmp(e, e0, (size_t)B * SE * sizeof(float)), "rates 0 with keys: the embeddings without dropout, bit for bit");
    for (int b = 0; b < B; b++) free(saved[b]);
    free(ids), free(pids), free(w), free(e), free(e0);
    bertt_free(m);
}

/* ------------------------------------------------------------------ driver modes */

static void put(FILE *f, const void *x, size_t size, size_t n) {
    if (fwrite(x, size, n, f) != n) die("write failed");
}

static int dump(const char *model, const char *inpath, const char *outpath, int threads) {
    if (threads > 0) gemm_init(threads);
    char err[512];
    bertt *m = bertt_load(model, err, sizeof err);
    if (!m) die("%s", err);
    FILE *f = fopen(inpath, "rb");
    if (!f) die("%s: cannot open", inpath);
    int32_t ni;
    if (fread(&ni, 4, 1, f) != 1 || ni < 2 || ni > 1 << 20) die("%s: bad header", inpath);
    int32_t *iv = xmalloc((size_t)ni * 4);
    if (fread(iv, 4, (size_t)ni, f) != (size_t)ni) die("%s: short header", inpath);
    int B = iv[0], Em = m->c.embed, N = 0;
    if (B < 1 || ni < 2 + 4 * B) die("%s: bad header", inpath);
    const int *len = iv + 1, *aid = iv + 1 + B;
    int drop = iv[1 + 2 * B];
    uint64_t *keys = xmalloc((size_t)B * sizeof(uint64_t));
    for (int b = 0; b < B; b++)
        keys[b] = (uint64_t)(uint32_t)iv[2 + 2 * B + 2 * b] | (uint64_t)(uint32_t)iv[3 + 2 * B + 2 * b] << 32;
    for (int b = 0; b < B; b++) N += len[b];
    if (ni != 2 + 4 * B + N) die("%s: %d ints, expected %d", inpath, ni, 2 + 4 * B + N);
    const int32_t *ids = iv + 2 + 4 * B;
    float *a = xmalloc((size_t)B * Em * sizeof(float)), rates[2];
    if (fread(a, sizeof(float), (size_t)B * Em, f) != (size_t)B * Em || fread(rates, sizeof(float), 2, f) != 2)
        die("%s: short data", inpath);
    fclose(f);
    m->hidden_dropout = rates[0], m->attn_dropout = rates[1];
    float *e = xcalloc((size_t)B * Em, sizeof(float)), *de = xcalloc((size_t)B * Em, sizeof(float));
    bertt_forward_train(m, e, ids, len, B, drop ? keys : NULL);
    /* SALSA's L_sup (tau 0.05) against fixed audio embeddings, as clap-train */
    contrastive_out r = contrastive_loss(NULL, de, a, e, aid, NULL, NULL, 0, 0, B, Em, 0.05f, 1.0, 0.0);
    bertt_backward(m, de);
    FILE *o = fopen(outpath, "wb");
    if (!o) die("%s: cannot create", outpath);
    put(o, e, sizeof(float), (size_t)B * Em), put(o, m->grads, sizeof(float), m->nparams);
    put(o, &r.sup, sizeof(double), 1);
    if (drop) {
        size_t h = (size_t)m->c.hidden, nh = (size_t)m->c.heads, Tm = (size_t)m->Tm;
        put(o, m->emask, 1, (size_t)N * h);
        for (int l = 0; l < m->c.layers; l++) {
            put(o, m->la[l].dmask1, 1, (size_t)N * h), put(o, m->la[l].dmask2, 1, (size_t)N * h);
            for (int b = 0; b < B; b++)
                for (size_t k = 0; k < nh; k++)
                    for (int rr = 0; rr < len[b]; rr++)
                        put(o, m->la[l].amask + ((b * nh + k) * Tm + (size_t)rr) * Tm, 1, (size_t)len[b]);
        }
    }
    if (fclose(o)) die("%s: write failed", outpath);
    free(iv), free(keys), free(a), free(e), free(de);
    bertt_free(m);
    return 0;
}

static int ids_mode(const char *model) {
    char err[512];
    st_file *f = st_open(model, err, sizeof err);
    if (!f) die("%s", err);
    bert_model bm;
    if (bert_load(&bm, f, err, sizeof err)) die("%s", err);
    int pre = 0;
    bpe *b = salsa_tokenizer_load(f, &bm.c, &pre, err, sizeof err);
    if (!b) die("%s", err);
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int32_t *ids = xmalloc((size_t)bm.c.max_len * sizeof(int32_t));
    while ((n = getline(&line, &cap, stdin)) > 0) {
        if (line[n - 1] == '\n') n--;
        int trunc = 0;
        int L = salsa_caption_ids(b, pre, line, (size_t)n, bm.c.max_len, ids, &trunc, err, sizeof err);
        if (L < 0) die("%s", err);
        for (int i = 0; i < L; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(line), free(ids);
    bpe_free(b);
    bert_free(&bm);
    st_close(f);
    return 0;
}

int main(int argc, char **argv) {
    tool_init("test_roberta_train");
    if ((argc == 5 || argc == 6) && !strcmp(argv[1], "dump"))
        return dump(argv[2], argv[3], argv[4], argc == 6 ? atoi(argv[5]) : 0);
    if (argc == 3 && !strcmp(argv[1], "ids")) return ids_mode(argv[2]);
    selftest();
    return check_exit();
}
