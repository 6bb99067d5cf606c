/* test_passt_train.c - PaSST-S in training mode (lib/passt_train.c).
 *
 * Without arguments (tests/run.sh), on small random models of odd sizes
 * (70 mel bins, 99 frames, 16x16 patches: a 4 x 6 grid of a 4 x 7 time
 * embedding):
 *   - every parameter gradient against central differences of a scalar loss
 *     (sum e . v), patchout, dropout, attention dropout and stochastic depth
 *     on (the masks are a function of the keys, so the loss is a function of
 *     the parameters);
 *   - structured patchout: the right numbers of columns and rows kept,
 *     ascending, distinct; the dropped ones uniform over positions (chi-square
 *     over 20000 keys at the published sizes, 62 x 8 with 15 and 2 dropped);
 *     one key, one draw, whatever the batch;
 *   - dropout and drop_path masks at their rates (4 sigma), keyed per item:
 *     an item's masks and kept patches the same alone or in another batch,
 *     the whole step the same bits on 1 and 2 threads, and with activation
 *     recomputation.
 * With arguments it is the driver of tests/py/test_passt_train.py:
 *   test_passt_train run IN OUT          one forward + backward, see run()
 *   test_passt_train load MODEL IN OUT   passtt_load against passt.c's inference, see load() */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "gap.h"
#include "gemm.h"
#include "parfor.h"
#include "passt.h"
#include "passt_train.h"
#include "util.h"

static rng_t R;

static void fill(float *x, size_t n, double s) {
    for (size_t i = 0; i < n; i++) x[i] = (float)(s * rng_normal(&R));
}

/* random parameters at the scales of a trained ViT (LN weights near 1) */
static void init_params(passtt *m) {
    fill(m->params, m->nparams, 0.08);
    for (int i = 0; i < m->ntensors; i++)
        if (strstr(m->t[i].name, "norm") && strstr(m->t[i].name, ".weight"))
            for (size_t j = 0; j < m->t[i].numel; j++) m->params[m->t[i].off + j] += 1.0f;
}

static passtt_config small_config(void) {
    passtt_config c = {.n_mels = 70, .dim = 24, .depth = 2, .heads = 3, .mlp = 40, .ph = 16, .pw = 16, .sh = 16,
                       .sw = 16, .grid_f = 4, .grid_t = 7, .embed = 11, .ln_eps = 1e-6f};
    return c;
}

/* loss = sum_b e_b . v_b in double; when de is given, de = v (the gradient) */
static double step(passtt *m, const float *mel, const float *v, int B, int S, const uint64_t *keys, float *e) {
    passtt_forward(m, e, mel, B, S, keys, NULL, NULL);
    double L = 0;
    for (size_t i = 0; i < (size_t)B * m->c.embed; i++) L += (double)e[i] * v[i];
    return L;
}

static void test_gradients(void) {
    passtt_config c = small_config();
    passtt *m = passtt_new(&c);
    init_params(m);
    m->s_patchout_t = 2, m->s_patchout_f = 1;
    m->drop_rate = 0.1f, m->attn_drop_rate = 0.15f, m->drop_path_rate = 0.3f;
    int B = 3, S = 99, E = c.embed;
    float *mel = xmalloc((size_t)B * S * c.n_mels * sizeof(float)), *v = xmalloc((size_t)B * E * sizeof(float));
    float *e = xmalloc((size_t)B * E * sizeof(float));
    fill(mel, (size_t)B * S * c.n_mels, 1.0), fill(v, (size_t)B * E, 1.0);
    uint64_t keys[3] = {11, 12, 13};
    memset(m->grads, 0, m->nparams * sizeof(float));
    step(m, mel, v, B, S, keys, e);
    passtt_backward(m, v);
    float *g = xmalloc(m->nparams * sizeof(float));
    memcpy(g, m->grads, m->nparams * sizeof(float));
    /* three entries of every tensor (the largest gradient among a few candidates, so the difference is
     * well above float noise); central differences with step 1e-2 on a loss computed in float */
    double worst = 0;
    const char *wname = "";
    for (int t = 0; t < m->ntensors; t++) {
        size_t n = m->t[t].numel, o = m->t[t].off;
        for (int s = 0; s < 3; s++) {
            size_t best = o;
            double gb = -1;
            for (int k = 0; k < 8; k++) {
                size_t i = o + (size_t)(rng_uniform(&R) * n);
                if (fabs(g[i]) > gb) gb = fabs(g[i]), best = i;
            }
            float keep = m->params[best], h = 1e-2f;
            m->params[best] = keep + h;
            double lp = step(m, mel, v, B, S, keys, e);
            m->params[best] = keep - h;
            double lm = step(m, mel, v, B, S, keys, e);
            m->params[best] = keep;
            double fd = (lp - lm) / ((double)(keep + h) - (double)(keep - h));
            double err = fabs(fd - g[best]) / fmax(fabs(fd), 1e-2);
            if (err > worst) worst = err, wname = m->t[t].name;
        }
    }
    CHECKF(worst <= 2e-2, "every tensor's gradient (3 entries each) = central differences within 2e-2, patchout, "
           "dropout, attention dropout and drop_path on", "worst %g at %s", worst, wname);
    printf("# central differences: worst relative error %.3g (%s)\n", worst, wname);
    free(mel), free(v), free(e), free(g);
    passtt_free(m);
}

/* the chi-square statistic of counts[n] against a uniform expectation */
static double chi2(const long *counts, int n, double expect) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (counts[i] - expect) * (counts[i] - expect) / expect;
    return s;
}

static void test_patchout(void) {
    passtt_config c = small_config();
    c.grid_f = 8, c.grid_t = 62, c.n_mels = 128;
    passtt *m = passtt_new(&c); /* the published s_patchout_t 15, s_patchout_f 2 */
    CHECK(m->s_patchout_t == 15 && m->s_patchout_f == 2 && m->drop_rate == 0 && m->attn_drop_rate == 0 &&
              m->drop_path_rate == 0,
          "defaults: s_patchout_t 15, s_patchout_f 2, drop_rate, attn_drop_rate, drop_path_rate 0 (as published)");
    int Fp = 8, Tp = 62, n = 20000, ok = 1;
    long tc[62] = {0}, fc[8] = {0}, pair = 0;
    int tk[62], fk[8];
    for (int i = 0; i < n; i++) {
        int r = passtt_patchout(m, tk, fk, Fp, Tp, (uint64_t)i * 7919u + 3);
        ok &= r == (Tp - 15) * 65536 + (Fp - 2);
        int seen[62] = {0}, fseen[8] = {0};
        for (int j = 0; j < Tp - 15; j++) ok &= tk[j] >= 0 && tk[j] < Tp && (!j || tk[j] > tk[j - 1]), seen[tk[j]] = 1;
        for (int j = 0; j < Fp - 2; j++) ok &= fk[j] >= 0 && fk[j] < Fp && (!j || fk[j] > fk[j - 1]), fseen[fk[j]] = 1;
        for (int j = 0; j < Tp; j++) tc[j] += !seen[j];
        for (int j = 0; j < Fp; j++) fc[j] += !fseen[j];
        pair += !seen[0] && !seen[1];
    }
    CHECK(ok, "patchout: 47 of 62 columns and 6 of 8 rows kept, ascending, distinct (20000 keys)");
    /* dropped counts per position: expectation n*15/62 and n*2/8; 0.1% points of chi-square: 61 dof 100.9, 7 dof 24.3 */
    double ct = chi2(tc, Tp, n * 15.0 / Tp), cf = chi2(fc, Fp, n * 2.0 / Fp);
    CHECKF(ct < 100.9, "patchout: dropped columns uniform over the 62 positions (chi-square, 61 dof, p > 0.001)",
           "chi2 %g", ct);
    CHECKF(cf < 24.3, "patchout: dropped rows uniform over the 8 positions (chi-square, 7 dof, p > 0.001)", "chi2 %g",
           cf);
    printf("# patchout chi-square: columns %.1f (61 dof), rows %.1f (7 dof)\n", ct, cf);
    /* a subset, not independent drops: P(columns 0 and 1 both dropped) = 15/62 * 14/61 */
    double pe = 15.0 / 62 * 14.0 / 61, sd = sqrt(pe * (1 - pe) / n);
    CHECKF(fabs(pair / (double)n - pe) < 4 * sd, "patchout: columns 0 and 1 both dropped at 15/62 * 14/61 (4 sigma)",
           "%g vs %g", pair / (double)n, pe);
    int tk2[62], fk2[8], same = 1, differ = 0;
    passtt_patchout(m, tk, fk, Fp, Tp, 42);
    passtt_patchout(m, tk2, fk2, Fp, Tp, 42);
    for (int j = 0; j < Tp - 15; j++) same &= tk[j] == tk2[j];
    for (int j = 0; j < Fp - 2; j++) same &= fk[j] == fk2[j];
    passtt_patchout(m, tk2, fk2, Fp, Tp, 43);
    for (int j = 0; j < Tp - 15; j++) differ |= tk[j] != tk2[j];
    CHECK(same && differ, "patchout: one key, one draw; another key, another draw");
    /* fewer columns than s_patchout_t + 1: one kept */
    int r = passtt_patchout(m, tk, fk, 2, 6, 5);
    CHECKF(r == 1 * 65536 + 1, "patchout on a 2 x 6 grid with 15 and 2 to drop keeps one column and one row", "%d", r);
    passtt_free(m);
}

/* two models with the same parameters */
static passtt *twin(const passtt *a) {
    passtt *b = passtt_new(&a->c);
    memcpy(b->params, a->params, a->nparams * sizeof(float));
    b->s_patchout_t = a->s_patchout_t, b->s_patchout_f = a->s_patchout_f;
    b->drop_rate = a->drop_rate, b->attn_drop_rate = a->attn_drop_rate, b->drop_path_rate = a->drop_path_rate;
    return b;
}

static void test_keyed(void) {
    passtt_config c = small_config();
    passtt *m = passtt_new(&c);
    init_params(m);
    m->s_patchout_t = 2, m->s_patchout_f = 1;
    m->drop_rate = 0.2f, m->attn_drop_rate = 0.25f, m->drop_path_rate = 0.5f;
    int B = 4, S = 99, E = c.embed, D = c.dim;
    size_t ms = (size_t)S * c.n_mels;
    float *mel = xmalloc((size_t)B * ms * sizeof(float)), *v = xmalloc((size_t)B * E * sizeof(float));
    fill(mel, (size_t)B * ms, 1.0), fill(v, (size_t)B * E, 1.0);
    float *e1 = xmalloc((size_t)B * E * sizeof(float)), *e2 = xmalloc((size_t)B * E * sizeof(float));
    uint64_t keys[4] = {101, 202, 303, 404};
    /* 1 and 2 threads: the same bits, forward and backward */
    passtt *m2 = twin(m);
    gemm_init(1);
    passtt_forward(m, e1, mel, B, S, keys, NULL, NULL);
    passtt_backward(m, v);
    gemm_init(2);
    passtt_forward(m2, e2, mel, B, S, keys, NULL, NULL);
    passtt_backward(m2, v);
    gemm_init(1);
    int same = !memcmp(e1, e2, (size_t)B * E * sizeof(float)) && !memcmp(m->grads, m2->grads, m->nparams * sizeof(float));
    size_t Rr = (size_t)B * m->N;
    same &= !memcmp(m->tkeep, m2->tkeep, (size_t)B * m->Tk * sizeof(int)) &&
            !memcmp(m->fkeep, m2->fkeep, (size_t)B * m->Fk * sizeof(int)) &&
            !memcmp(m->posmask, m2->posmask, Rr * D);
    for (int l = 0; l < c.depth; l++)
        same &= !memcmp(m->la[l].amask, m2->la[l].amask, Rr * c.heads * m->N) &&
                !memcmp(m->la[l].gmask, m2->la[l].gmask, Rr * c.mlp) && !memcmp(m->la[l].dp, m2->la[l].dp, 2 * (size_t)B);
    CHECK(same, "dropout, drop_path and patchout on: embeddings, gradients, masks and kept patches the same bits on 1 and "
                "2 threads");
    /* recomputation: the same bits */
    passtt *mr = twin(m);
    mr->recompute = 1;
    float *er = xmalloc((size_t)B * E * sizeof(float));
    passtt_forward(mr, er, mel, B, S, keys, NULL, NULL);
    passtt_backward(mr, v);
    CHECK(!memcmp(er, e1, (size_t)B * E * sizeof(float)) && !memcmp(mr->grads, m->grads, m->nparams * sizeof(float)),
          "recompute: embeddings and gradients the same bits as with every activation saved (masks redrawn)");
    /* a second step on the same model (buffers reused; the layout changes back) */
    memset(mr->grads, 0, mr->nparams * sizeof(float));
    mr->recompute = 0;
    passtt_forward(mr, er, mel, B, S, keys, NULL, NULL);
    passtt_backward(mr, v);
    CHECK(!memcmp(er, e1, (size_t)B * E * sizeof(float)) && !memcmp(mr->grads, m->grads, m->nparams * sizeof(float)),
          "recompute switched off on the same model: the same bits again");
    free(er);
    passtt_free(mr);
    /* item 2 alone, and first of a batch of two other items: its masks and kept patches are its own */
    passtt *m3 = twin(m);
    uint64_t k3[2] = {303, 999};
    float *mel3 = xmalloc(2 * ms * sizeof(float)), *e3 = xmalloc(2 * (size_t)E * sizeof(float));
    memcpy(mel3, mel + 2 * ms, ms * sizeof(float));
    memcpy(mel3 + ms, mel, ms * sizeof(float));
    passtt_forward(m3, e3, mel3, 2, S, k3, NULL, NULL);
    size_t per = (size_t)m->N * D, N = (size_t)m->N;
    int own = !memcmp(m3->tkeep, m->tkeep + 2 * m->Tk, (size_t)m->Tk * sizeof(int)) &&
              !memcmp(m3->fkeep, m->fkeep + 2 * m->Fk, (size_t)m->Fk * sizeof(int)) &&
              !memcmp(m3->posmask, m->posmask + 2 * per, per);
    for (int l = 0; l < c.depth; l++)
        own &= !memcmp(m3->la[l].amask, m->la[l].amask + 2 * c.heads * N * N, c.heads * N * N) &&
               !memcmp(m3->la[l].pmask, m->la[l].pmask + 2 * per, per) &&
               !memcmp(m3->la[l].gmask, m->la[l].gmask + 2 * N * c.mlp, N * c.mlp) &&
               !memcmp(m3->la[l].fmask, m->la[l].fmask + 2 * per, per) && !memcmp(m3->la[l].dp, m->la[l].dp + 4, 2);
    double de = 0, mx = 0;
    for (int i = 0; i < E; i++) de = fmax(de, fabs(e3[i] - e1[2 * E + i])), mx = fmax(mx, fabs(e1[2 * E + i]));
    CHECK(own, "an item's patchout, dropout and drop_path masks depend on its key alone, not on its batch");
    CHECKF(de <= 1e-5 * mx, "an item's embedding in another batch within 1e-5 (the products' bits may change with "
           "the number of rows)", "max diff %g of %g", de, mx);
    free(mel3), free(e3);
    passtt_free(m3);
    /* rates: the masks of many items */
    passtt *mm = twin(m);
    int Bm = 24;
    float *melm = xmalloc((size_t)Bm * ms * sizeof(float)), *em = xmalloc((size_t)Bm * E * sizeof(float));
    uint64_t *km = xmalloc((size_t)Bm * sizeof(uint64_t));
    fill(melm, (size_t)Bm * ms, 1.0);
    for (int b = 0; b < Bm; b++) km[b] = 1000 + (uint64_t)b;
    passtt_forward(mm, em, melm, Bm, S, km, NULL, NULL);
    size_t Rm = (size_t)Bm * mm->N;
    struct {
        const char *what;
        const uint8_t *mask;
        size_t n;
        double p;
    } site[4] = {{"pos_drop", mm->posmask, Rm * D, mm->drop_rate},
                 {"attn_drop (block 1)", mm->la[1].amask, Rm * c.heads * mm->N, mm->attn_drop_rate},
                 {"proj_drop (block 0)", mm->la[0].pmask, Rm * D, mm->drop_rate},
                 {"mlp drop after GELU (block 1)", mm->la[1].gmask, Rm * c.mlp, mm->drop_rate}};
    for (int s = 0; s < 4; s++) {
        size_t z = 0;
        for (size_t i = 0; i < site[s].n; i++) z += !site[s].mask[i];
        double f = (double)z / site[s].n, sd = sqrt(site[s].p * (1 - site[s].p) / site[s].n);
        char name[160];
        snprintf(name, sizeof name, "%s drops %.2f of its entries (4 sigma)", site[s].what, site[s].p);
        CHECKF(fabs(f - site[s].p) < 4 * sd, name, "%g", f);
    }
    /* drop_path: block 1 of 2 has rate 0.5 (linspace(0, 0.5, 2)), block 0 rate 0: never dropped */
    long kept1 = 0, kept0 = 0;
    for (int b = 0; b < Bm; b++)
        for (int s = 0; s < 2; s++) kept1 += mm->la[1].dp[2 * b + s], kept0 += mm->la[0].dp[2 * b + s];
    CHECKF(kept0 == 2 * Bm, "drop_path: block 0's rate is linspace(0, 0.5, 2)[0] = 0: every branch kept", "%ld", kept0);
    double f1 = kept1 / (2.0 * Bm);
    CHECKF(fabs(f1 - 0.5) < 4 * sqrt(0.25 / (2 * Bm)), "drop_path: block 1 keeps half its branches (4 sigma)", "%g", f1);
    /* keys NULL: no patchout, no dropout */
    passtt_forward(mm, em, melm, 2, S, NULL, NULL, NULL);
    CHECKF(mm->N == 2 + 4 * 6 && !mm->dropped && !mm->dpath, "without keys: the whole 4 x 6 grid, no dropout",
           "N %d", mm->N);
    free(melm), free(em), free(km);
    passtt_free(mm);
    free(mel), free(v), free(e1), free(e2);
    passtt_free(m), passtt_free(m2);
}

/* ------------------------------------------------------------------ the driver */

static void put(FILE *o, const void *p, size_t size, size_t n) {
    if (n && fwrite(p, size, n, o) != n) die("write failed");
}

/* this process's peak resident set (VmHWM), kB; 0 if unknown */
static long peak_rss_kb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    if (!f) return 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = strtol(line + 6, NULL, 10);
    fclose(f);
    return kb;
}

/* IN: int32 ni, int32[ni] = M D L H Hm ph pw sh sw grid_f grid_t E B S s_t s_f mode threads flags (1: write
 * the masks, 2: recompute), then
 * mode 1: keys (2 int32 each, low first) [B]; mode 2: tkeep [B, Tk], fkeep [B, Fk] (counts from s_t, s_f);
 * then float32: drop_rate attn_drop_rate drop_path_rate, params[nparams], mel[B, S, M], v[B, E].
 * OUT: int32 Tk Fk N nparams; float32 e[B, E]; float64 loss = sum e . v; float32 grads[nparams]; int32
 * tkeep[B, Tk], fkeep[B, Fk]; masks: uint8 pos[B*N, D], per block attn[B, H, N, N], proj[B*N, D],
 * gelu[B*N, Hm], fc2[B*N, D], drop_path[B, 2]. stdout: "tensor NAME NUMEL" per tensor, then "seconds FORWARD
 * BACKWARD" (wall), "peak_rss_kb N" (VmHWM). */
static int run(const char *inpath, const char *outpath) {
    FILE *f = fopen(inpath, "rb");
    if (!f) die("%s: cannot open", inpath);
    int32_t ni, iv[1 << 16];
    if (fread(&ni, 4, 1, f) != 1 || ni < 19 || ni > (1 << 16) || fread(iv, 4, (size_t)ni, f) != (size_t)ni)
        die("%s: bad header", inpath);
    passtt_config c = {.n_mels = iv[0], .dim = iv[1], .depth = iv[2], .heads = iv[3], .mlp = iv[4], .ph = iv[5],
                       .pw = iv[6], .sh = iv[7], .sw = iv[8], .grid_f = iv[9], .grid_t = iv[10], .embed = iv[11],
                       .ln_eps = 1e-6f};
    int B = iv[12], S = iv[13], mode = iv[16], masks = iv[18] & 1;
    gemm_init(iv[17]);
    passtt *m = passtt_new(&c);
    m->s_patchout_t = iv[14], m->s_patchout_f = iv[15];
    m->recompute = (iv[18] & 2) != 0;
    if (masks && m->recompute) die("run: the masks of every block are not kept with recomputation");
    uint64_t *keys = NULL;
    const int *tk = NULL, *fk = NULL;
    if (mode == 1) {
        keys = xmalloc((size_t)B * sizeof(uint64_t));
        for (int b = 0; b < B; b++) keys[b] = (uint64_t)(uint32_t)iv[19 + 2 * b] | (uint64_t)(uint32_t)iv[20 + 2 * b] << 32;
    } else if (mode == 2) {
        int Tk = ((S - c.pw) / c.sw + 1) - iv[14];
        tk = iv + 19, fk = iv + 19 + B * Tk;
    }
    float rates[3];
    size_t nm = (size_t)B * S * c.n_mels, nv = (size_t)B * c.embed;
    float *mel = xmalloc(nm * sizeof(float)), *v = xmalloc(nv * sizeof(float)), *e = xmalloc(nv * sizeof(float));
    if (fread(rates, 4, 3, f) != 3 || fread(m->params, 4, m->nparams, f) != m->nparams || fread(mel, 4, nm, f) != nm ||
        fread(v, 4, nv, f) != nv)
        die("%s: short read", inpath);
    if (fgetc(f) != EOF) die("%s: trailing data", inpath);
    fclose(f);
    m->drop_rate = rates[0], m->attn_drop_rate = rates[1], m->drop_path_rate = rates[2];
    double t0 = now_seconds();
    passtt_forward(m, e, mel, B, S, keys, tk, fk);
    double t1 = now_seconds(), L = 0;
    for (size_t i = 0; i < nv; i++) L += (double)e[i] * v[i];
    passtt_backward(m, v);
    double t2 = now_seconds();
    FILE *o = fopen(outpath, "wb");
    if (!o) die("%s: cannot create", outpath);
    int32_t hd[4] = {m->Tk, m->Fk, m->N, (int32_t)m->nparams};
    put(o, hd, 4, 4), put(o, e, 4, nv), put(o, &L, 8, 1), put(o, m->grads, 4, m->nparams);
    put(o, m->tkeep, 4, (size_t)B * m->Tk), put(o, m->fkeep, 4, (size_t)B * m->Fk);
    if (masks) {
        size_t Rr = (size_t)B * m->N, D = (size_t)c.dim;
        put(o, m->posmask, 1, Rr * D);
        for (int l = 0; l < c.depth; l++) {
            put(o, m->la[l].amask, 1, Rr * c.heads * m->N), put(o, m->la[l].pmask, 1, Rr * D);
            put(o, m->la[l].gmask, 1, Rr * c.mlp), put(o, m->la[l].fmask, 1, Rr * D), put(o, m->la[l].dp, 1, 2 * (size_t)B);
        }
    }
    if (fclose(o)) die("%s: write failed", outpath);
    for (int i = 0; i < m->ntensors; i++) printf("tensor %s %zu\n", m->t[i].name, m->t[i].numel);
    printf("seconds %.6f %.6f\n", t1 - t0, t2 - t1);
    printf("peak_rss_kb %ld\n", peak_rss_kb());
    free(keys), free(mel), free(v), free(e);
    passtt_free(m);
    return 0;
}

/* IN: int32 T, int32 nsamples, float32 mel[T, M] of a SALSA model file. OUT: int32 kept segments B, nparams;
 * float32 params[nparams] (passtt_load's block); emb[E] of passt_forward (inference); emb[E] of the training
 * model without keys: normalize(mean over the kept segments of e) (SALSA's mean, then the affine projection:
 * the same). stdout: the tensor table as run() prints it. */
static int load(const char *model, const char *inpath, const char *outpath) {
    char err[512];
    passt_model *pm = passt_load(model, err, sizeof err);
    if (!pm) die("%s", err);
    passtt *m = passtt_load(model, err, sizeof err);
    if (!m) die("%s", err);
    FILE *f = fopen(inpath, "rb");
    if (!f) die("%s: cannot open", inpath);
    int32_t hd[2];
    if (fread(hd, 4, 2, f) != 2 || hd[0] < 1) die("%s: bad header", inpath);
    int T = hd[0], M = m->c.n_mels, E = m->c.embed, S = pm->cfg.seg_frames;
    float *mel = xmalloc((size_t)T * M * sizeof(float));
    if (fread(mel, 4, (size_t)T * M, f) != (size_t)T * M) die("%s: short read", inpath);
    fclose(f);
    int B = passt_kept_segments(pm, T, hd[1]);
    if ((long)B * S > T) die("load: %d segments of %d frames need %d frames", B, S, B * S);
    passt_state st;
    passt_state_init(&st, pm, 1);
    float *ei = xmalloc((size_t)E * sizeof(float)), *et = xmalloc((size_t)B * E * sizeof(float));
    float *mean = xcalloc((size_t)E, sizeof(float));
    passt_forward(&st, pm, mel, T, hd[1], ei);
    passtt_forward(m, et, mel, B, S, NULL, NULL, NULL);
    double n2 = 0;
    for (int i = 0; i < E; i++) {
        double s = 0;
        for (int b = 0; b < B; b++) s += et[(size_t)b * E + i];
        mean[i] = (float)(s / B), n2 += (double)mean[i] * mean[i];
    }
    for (int i = 0; i < E; i++) mean[i] = (float)(mean[i] / sqrt(n2));
    FILE *o = fopen(outpath, "wb");
    if (!o) die("%s: cannot create", outpath);
    int32_t oh[2] = {B, (int32_t)m->nparams};
    put(o, oh, 4, 2), put(o, m->params, 4, m->nparams), put(o, ei, 4, (size_t)E), put(o, mean, 4, (size_t)E);
    if (fclose(o)) die("%s: write failed", outpath);
    for (int i = 0; i < m->ntensors; i++) printf("tensor %s %zu\n", m->t[i].name, m->t[i].numel);
    passt_state_free(&st);
    free(mel), free(ei), free(et), free(mean);
    passtt_free(m);
    passt_free(pm);
    return 0;
}

int main(int argc, char **argv) {
    tool_init("test_passt_train");
    if (argc == 4 && !strcmp(argv[1], "run")) return run(argv[2], argv[3]);
    if (argc == 5 && !strcmp(argv[1], "load")) return load(argv[2], argv[3], argv[4]);
    if (argc != 1) die_usage("usage: test_passt_train [run IN OUT | load MODEL IN OUT]");
    rng_seed(&R, 14);
    gemm_init(1);
    test_gradients();
    test_patchout();
    test_keyed();
    parfor_shutdown();
    return check_exit();
}
