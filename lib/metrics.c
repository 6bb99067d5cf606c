/* metrics.c - BLEU, ROUGE-L, CIDEr-D as pycocoevalcap computes them, and
 * retrieval metrics (see metrics.h).
 *
 * The floating-point operations follow pycocoevalcap (salaniz, ad63453)
 * in order and kind, so that results agree to the last bit or nearly:
 * bleu/bleu_scorer.py (Python floats), rouge/rouge.py, cider/cider_scorer.py
 * (numpy float64; x ** 2 and np.e ** x are calls of pow(), as there). */
#include "metrics.h"

#include <cblas.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utf8proc.h>

#include "gemm.h"
#include "util.h"

/* ------------------------------------------------------------ numpy mean */

/* numpy/core/src/umath/loops_utils.h.src: pairwise_sum, PW_BLOCKSIZE 128 */
double np_pairwise_sum(const double *a, size_t n) {
    if (n < 8) {
        double res = 0.;
        for (size_t i = 0; i < n; i++) res += a[i];
        return res;
    }
    if (n <= 128) {
        double r[8], res;
        size_t i;
        for (int k = 0; k < 8; k++) r[k] = a[k];
        for (i = 8; i < n - (n % 8); i += 8)
            for (int k = 0; k < 8; k++) r[k] += a[i + (size_t)k];
        res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++) res += a[i];
        return res;
    }
    size_t n2 = n / 2;
    n2 -= n2 % 8;
    return np_pairwise_sum(a, n2) + np_pairwise_sum(a + n2, n - n2);
}

double np_mean(const double *x, size_t n) {
    /* add.reduce starts from the identity 0.0, then divides by the count */
    return (0.0 + np_pairwise_sum(x, n)) / (double)n;
}

/* ------------------------------------------------------------ tokens */

/* str.isspace() of Python 3 (bidirectional class WS, B, S or category Zs) */
static int py_space(uint32_t c) {
    return (c >= 9 && c <= 13) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 || c == 0x202f || c == 0x205f || c == 0x3000;
}

typedef struct {
    const char *s;
    int len;
} span;

/* Python's s.split(): runs of whitespace separate, no empty tokens */
static int split_ws(const char *s, span **out, int *cap) {
    int n = 0;
    const char *p = s, *tok = NULL;
    for (;;) {
        utf8proc_int32_t c = 0;
        utf8proc_ssize_t k = *p ? utf8proc_iterate((const utf8proc_uint8_t *)p, -1, &c) : 0;
        if (k < 0) k = 1, c = 0xFFFD;
        int end = !*p, sp = !end && py_space((uint32_t)c);
        if ((end || sp) && tok) {
            if (n == *cap) *cap = *cap ? 2 * *cap : 64, *out = xrealloc(*out, (size_t)*cap * sizeof(span));
            (*out)[n++] = (span){tok, (int)(p - tok)};
            tok = NULL;
        } else if (!end && !sp && !tok) tok = p;
        if (end) break;
        p += k;
    }
    return n;
}

/* Python's s.split(" "): every single space separates ("" gives [""]) */
static int split_space(const char *s, span **out, int *cap) {
    int n = 0;
    const char *p = s;
    for (;;) {
        const char *e = strchr(p, ' ');
        if (n == *cap) *cap = *cap ? 2 * *cap : 64, *out = xrealloc(*out, (size_t)*cap * sizeof(span));
        (*out)[n++] = (span){p, e ? (int)(e - p) : (int)strlen(p)};
        if (!e) break;
        p = e + 1;
    }
    return n;
}

/* string -> id */
typedef struct {
    char **s;
    int *lens;
    int n, cap;
    int *tab;
    int tcap;
} strtab;

static uint64_t hash_bytes(const char *s, int n) {
    uint64_t h = 1469598103934665603ULL;
    for (int i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static int strtab_id(strtab *t, const char *s, int len) {
    if (2 * (t->n + 1) > t->tcap) {
        int nc = t->tcap ? 2 * t->tcap : 1024;
        free(t->tab);
        t->tab = xmalloc((size_t)nc * sizeof(int));
        memset(t->tab, -1, (size_t)nc * sizeof(int));
        t->tcap = nc;
        for (int i = 0; i < t->n; i++) {
            uint64_t j = hash_bytes(t->s[i], t->lens[i]) & (uint64_t)(nc - 1);
            while (t->tab[j] >= 0) j = (j + 1) & (uint64_t)(nc - 1);
            t->tab[j] = i;
        }
    }
    uint64_t j = hash_bytes(s, len) & (uint64_t)(t->tcap - 1);
    for (; t->tab[j] >= 0; j = (j + 1) & (uint64_t)(t->tcap - 1)) {
        int i = t->tab[j];
        if (t->lens[i] == len && !memcmp(t->s[i], s, (size_t)len)) return i;
    }
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 1024;
        t->s = xrealloc(t->s, (size_t)t->cap * sizeof(char *));
        t->lens = xrealloc(t->lens, (size_t)t->cap * sizeof(int));
    }
    t->s[t->n] = xmalloc((size_t)len + 1);
    memcpy(t->s[t->n], s, (size_t)len);
    t->s[t->n][len] = 0;
    t->lens[t->n] = len;
    t->tab[j] = t->n;
    return t->n++;
}

static void strtab_free(strtab *t) {
    for (int i = 0; i < t->n; i++) free(t->s[i]);
    free(t->s);
    free(t->lens);
    free(t->tab);
    memset(t, 0, sizeof *t);
}

/* n-gram (up to 4 token ids) -> id */
typedef struct {
    int *keys; /* [n][5]: order, ids (-1 padded) */
    int n, cap;
    int *tab;
    int tcap;
} ngtab;

static uint64_t hash_ng(const int *k) {
    uint64_t h = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 5; i++) {
        h ^= (uint64_t)(uint32_t)k[i] + 0x9E3779B97F4A7C15ULL + (h << 6) + (h >> 2);
        h *= 0xff51afd7ed558ccdULL;
    }
    return h ^ (h >> 33);
}

static int ngtab_id(ngtab *t, const int *k) {
    if (2 * (t->n + 1) > t->tcap) {
        int nc = t->tcap ? 2 * t->tcap : 4096;
        free(t->tab);
        t->tab = xmalloc((size_t)nc * sizeof(int));
        memset(t->tab, -1, (size_t)nc * sizeof(int));
        t->tcap = nc;
        for (int i = 0; i < t->n; i++) {
            uint64_t j = hash_ng(t->keys + 5 * i) & (uint64_t)(nc - 1);
            while (t->tab[j] >= 0) j = (j + 1) & (uint64_t)(nc - 1);
            t->tab[j] = i;
        }
    }
    uint64_t j = hash_ng(k) & (uint64_t)(t->tcap - 1);
    for (; t->tab[j] >= 0; j = (j + 1) & (uint64_t)(t->tcap - 1))
        if (!memcmp(t->keys + 5 * t->tab[j], k, 5 * sizeof(int))) return t->tab[j];
    if (t->n == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 4096;
        t->keys = xrealloc(t->keys, (size_t)t->cap * 5 * sizeof(int));
    }
    memcpy(t->keys + 5 * t->n, k, 5 * sizeof(int));
    t->tab[j] = t->n;
    return t->n++;
}

/* A sentence as precook() sees it: its length and, per order, the distinct
 * n-grams in order of first occurrence (Python dict order) with counts. */
typedef struct {
    int len;
    int nd[4];
    int *ng[4], *cnt[4];
} sent;

typedef struct {
    strtab words;
    ngtab ngrams;
    int *stamp, *pos; /* per n-gram scratch */
    int serial;
    span *sp;
    int spcap;
} cooker;

static void cook(cooker *c, const char *s, sent *out) {
    int n = split_ws(s, &c->sp, &c->spcap);
    int *ids = xmalloc(((size_t)n + 1) * sizeof(int));
    for (int i = 0; i < n; i++) ids[i] = strtab_id(&c->words, c->sp[i].s, c->sp[i].len);
    out->len = n;
    for (int k = 0; k < 4; k++) {
        int m = n - k > 0 ? n - k : 0;
        out->nd[k] = m; /* temporarily: the n-gram ids in sentence order */
        out->ng[k] = xmalloc(((size_t)m + 1) * sizeof(int));
        out->cnt[k] = NULL;
        for (int i = 0; i < m; i++) {
            int key[5] = {k + 1, -1, -1, -1, -1};
            for (int j = 0; j <= k; j++) key[1 + j] = ids[i + j];
            out->ng[k][i] = ngtab_id(&c->ngrams, key);
        }
    }
    free(ids);
}

/* after all sentences are cooked (the n-gram count is known): distinct lists */
static void distinct(cooker *c, sent *s) {
    for (int k = 0; k < 4; k++) {
        int m = s->nd[k], d = 0;
        int *cnt = xmalloc(((size_t)m + 1) * sizeof(int));
        c->serial++;
        for (int i = 0; i < m; i++) {
            int g = s->ng[k][i];
            if (c->stamp[g] != c->serial) {
                c->stamp[g] = c->serial;
                c->pos[g] = d;
                s->ng[k][d] = g;
                cnt[d++] = 1;
            } else cnt[c->pos[g]]++;
        }
        s->nd[k] = d;
        s->cnt[k] = cnt;
    }
}

static void sent_free(sent *s) {
    for (int k = 0; k < 4; k++) {
        free(s->ng[k]);
        free(s->cnt[k]);
    }
}

/* ------------------------------------------------------------ ROUGE-L */

static int lcs(const int *a, int na, const int *b, int nb, int *row) {
    /* my_lcs: the classic table, one row at a time */
    for (int j = 0; j <= nb; j++) row[j] = 0;
    for (int i = 1; i <= na; i++) {
        int diag = 0;
        for (int j = 1; j <= nb; j++) {
            int up = row[j];
            row[j] = a[i - 1] == b[j - 1] ? diag + 1 : (row[j] > row[j - 1] ? row[j] : row[j - 1]);
            diag = up;
        }
    }
    return row[nb];
}

static double rouge_ids(const int *c, int nc, int *const *r, const int *nr, int nrefs, int *row) {
    double beta = 1.2, prec_max = 0, rec_max = 0;
    for (int i = 0; i < nrefs; i++) {
        int l = lcs(r[i], nr[i], c, nc, row);
        double prec = l / (double)nc, rec = l / (double)nr[i];
        /* max(prec), max(rec): taken separately */
        if (i == 0 || prec > prec_max) prec_max = prec;
        if (i == 0 || rec > rec_max) rec_max = rec;
    }
    if (prec_max != 0 && rec_max != 0) {
        double b2 = pow(beta, 2.0);
        return ((1 + b2) * prec_max * rec_max) / (rec_max + b2 * prec_max);
    }
    return 0.0;
}

double cm_rouge_l(const char *cand, const char *const *refs, int nrefs) {
    strtab w = {0};
    span *sp = NULL;
    int spcap = 0;
    int nc = split_space(cand, &sp, &spcap);
    int *c = xmalloc((size_t)nc * sizeof(int));
    for (int i = 0; i < nc; i++) c[i] = strtab_id(&w, sp[i].s, sp[i].len);
    int **r = xmalloc((size_t)nrefs * sizeof(int *)), *nr = xmalloc((size_t)nrefs * sizeof(int));
    for (int i = 0; i < nrefs; i++) {
        nr[i] = split_space(refs[i], &sp, &spcap);
        r[i] = xmalloc((size_t)nr[i] * sizeof(int));
        for (int j = 0; j < nr[i]; j++) r[i][j] = strtab_id(&w, sp[j].s, sp[j].len);
    }
    int *row = xmalloc(((size_t)nc + 1) * sizeof(int));
    double v = rouge_ids(c, nc, r, nr, nrefs, row);
    for (int i = 0; i < nrefs; i++) free(r[i]);
    free(r);
    free(nr);
    free(c);
    free(row);
    free(sp);
    strtab_free(&w);
    return v;
}

/* ------------------------------------------------------------ all three */

void cm_compute(const cm_item *items, size_t n, cm_scores *s) {
    memset(s, 0, sizeof *s);
    s->n = n;
    s->bleu_item = xcalloc(n * 4 + 1, sizeof(double));
    s->rouge_item = xcalloc(n + 1, sizeof(double));
    s->cider_item = xcalloc(n + 1, sizeof(double));
    if (n == 0) return;

    cooker ck = {0};
    sent *cand = xcalloc(n, sizeof(sent));
    sent **refs = xcalloc(n, sizeof(sent *));
    for (size_t i = 0; i < n; i++) {
        cook(&ck, items[i].cand, &cand[i]);
        refs[i] = xcalloc((size_t)items[i].nrefs, sizeof(sent));
        for (int j = 0; j < items[i].nrefs; j++) cook(&ck, items[i].refs[j], &refs[i][j]);
    }
    int ng = ck.ngrams.n;
    ck.stamp = xcalloc((size_t)ng + 1, sizeof(int));
    ck.pos = xcalloc((size_t)ng + 1, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        distinct(&ck, &cand[i]);
        for (int j = 0; j < items[i].nrefs; j++) distinct(&ck, &refs[i][j]);
    }

    /* ---- BLEU (bleu_scorer.py: cook_refs, cook_test, compute_score) */
    const double small = 1e-9, tiny = 1e-15;
    int *maxc = xcalloc((size_t)ng + 1, sizeof(int)), *mstamp = xcalloc((size_t)ng + 1, sizeof(int));
    for (size_t i = 0; i < n; i++) {
        const sent *c = &cand[i];
        int stamp = (int)i + 1;
        for (int j = 0; j < items[i].nrefs; j++)
            for (int k = 0; k < 4; k++)
                for (int d = 0; d < refs[i][j].nd[k]; d++) {
                    int g = refs[i][j].ng[k][d], v = refs[i][j].cnt[k][d];
                    if (mstamp[g] != stamp) mstamp[g] = stamp, maxc[g] = v;
                    else if (v > maxc[g]) maxc[g] = v;
                }
        long correct[4] = {0}, guess[4];
        for (int k = 0; k < 4; k++) {
            guess[k] = c->len - k > 0 ? c->len - k : 0;
            for (int d = 0; d < c->nd[k]; d++) {
                int g = c->ng[k][d], m = mstamp[g] == stamp ? maxc[g] : 0;
                correct[k] += m < c->cnt[k][d] ? m : c->cnt[k][d];
            }
        }
        /* 'closest': min((abs(l - testlen), l) for l in reflen)[1] */
        long testlen = c->len, reflen = -1, bestdiff = -1;
        for (int j = 0; j < items[i].nrefs; j++) {
            long l = refs[i][j].len, dd = labs(l - testlen);
            if (bestdiff < 0 || dd < bestdiff || (dd == bestdiff && l < reflen)) bestdiff = dd, reflen = l;
        }
        s->testlen += testlen;
        s->reflen += reflen;
        for (int k = 0; k < 4; k++) s->guess[k] += guess[k], s->correct[k] += correct[k];
        double bleu = 1.;
        double *out = s->bleu_item + 4 * i;
        for (int k = 0; k < 4; k++) {
            bleu *= ((double)correct[k] + tiny) / ((double)guess[k] + small);
            out[k] = pow(bleu, 1. / (k + 1));
        }
        double ratio = ((double)testlen + tiny) / ((double)reflen + small);
        if (ratio < 1)
            for (int k = 0; k < 4; k++) out[k] *= exp(1 - 1 / ratio);
    }
    {
        double bleu = 1.;
        for (int k = 0; k < 4; k++) {
            bleu *= ((double)s->correct[k] + tiny) / ((double)s->guess[k] + small);
            s->bleu[k] = pow(bleu, 1. / (k + 1));
        }
        double ratio = ((double)s->testlen + tiny) / ((double)s->reflen + small);
        if (ratio < 1)
            for (int k = 0; k < 4; k++) s->bleu[k] *= exp(1 - 1 / ratio);
    }

    /* ---- ROUGE-L (rouge.py): tokens split on " " */
    {
        strtab w = {0};
        span *sp = NULL;
        int spcap = 0, *row = NULL, rowcap = 0;
        for (size_t i = 0; i < n; i++) {
            int nc = split_space(items[i].cand, &sp, &spcap);
            int *c = xmalloc((size_t)nc * sizeof(int));
            for (int j = 0; j < nc; j++) c[j] = strtab_id(&w, sp[j].s, sp[j].len);
            int nrefs = items[i].nrefs;
            int **r = xmalloc((size_t)nrefs * sizeof(int *)), *nr = xmalloc((size_t)nrefs * sizeof(int));
            for (int j = 0; j < nrefs; j++) {
                nr[j] = split_space(items[i].refs[j], &sp, &spcap);
                r[j] = xmalloc((size_t)nr[j] * sizeof(int));
                for (int t = 0; t < nr[j]; t++) r[j][t] = strtab_id(&w, sp[t].s, sp[t].len);
            }
            if (nc + 1 > rowcap) rowcap = nc + 1, row = xrealloc(row, (size_t)rowcap * sizeof(int));
            s->rouge_item[i] = rouge_ids(c, nc, r, nr, nrefs, row);
            for (int j = 0; j < nrefs; j++) free(r[j]);
            free(r);
            free(nr);
            free(c);
        }
        free(row);
        free(sp);
        strtab_free(&w);
        s->rouge_l = np_mean(s->rouge_item, n);
    }

    /* ---- CIDEr-D (cider_scorer.py) */
    {
        int *df = xcalloc((size_t)ng + 1, sizeof(int)), *dstamp = xcalloc((size_t)ng + 1, sizeof(int));
        for (size_t i = 0; i < n; i++) /* compute_doc_freq: n-grams of the item's refs, once per item */
            for (int j = 0; j < items[i].nrefs; j++)
                for (int k = 0; k < 4; k++)
                    for (int d = 0; d < refs[i][j].nd[k]; d++) {
                        int g = refs[i][j].ng[k][d];
                        if (dstamp[g] != (int)i + 1) dstamp[g] = (int)i + 1, df[g]++;
                    }
        double ref_len = log((double)n);
        /* idf per n-gram: ref_len - np.log(max(1.0, df)) */
        double *idf = xmalloc(((size_t)ng + 1) * sizeof(double));
        for (int g = 0; g < ng; g++) idf[g] = ref_len - log(df[g] > 1 ? (double)df[g] : 1.0);
        double *rvec = xcalloc((size_t)ng + 1, sizeof(double));
        int *rstamp = xcalloc((size_t)ng + 1, sizeof(int)), rserial = 0;
        const double sigma = 6.0;
        for (size_t i = 0; i < n; i++) {
            const sent *c = &cand[i];
            /* counts2vec(test) */
            double cnorm[4] = {0, 0, 0, 0};
            int clength = 0;
            for (int k = 0; k < 4; k++) {
                for (int d = 0; d < c->nd[k]; d++) {
                    double v = (double)c->cnt[k][d] * idf[c->ng[k][d]];
                    cnorm[k] += pow(v, 2.0);
                    if (k == 1) clength += c->cnt[k][d]; /* 'length' counts bigrams */
                }
                cnorm[k] = sqrt(cnorm[k]);
            }
            double score[4] = {0, 0, 0, 0};
            for (int j = 0; j < items[i].nrefs; j++) {
                const sent *r = &refs[i][j];
                double rnorm[4] = {0, 0, 0, 0};
                int rlength = 0;
                rserial++;
                for (int k = 0; k < 4; k++) {
                    for (int d = 0; d < r->nd[k]; d++) {
                        int g = r->ng[k][d];
                        double v = (double)r->cnt[k][d] * idf[g];
                        rvec[g] = v;
                        rstamp[g] = rserial;
                        rnorm[k] += pow(v, 2.0);
                        if (k == 1) rlength += r->cnt[k][d];
                    }
                    rnorm[k] = sqrt(rnorm[k]);
                }
                /* sim() */
                double delta = (double)(clength - rlength);
                for (int k = 0; k < 4; k++) {
                    double val = 0.0;
                    for (int d = 0; d < c->nd[k]; d++) {
                        int g = c->ng[k][d];
                        double vh = (double)c->cnt[k][d] * idf[g], vr = rstamp[g] == rserial ? rvec[g] : 0.0;
                        val += (vr < vh ? vr : vh) * vr; /* min(vec_hyp, vec_ref) * vec_ref */
                    }
                    if (cnorm[k] != 0 && rnorm[k] != 0) val /= (cnorm[k] * rnorm[k]);
                    val *= pow(M_E, -pow(delta, 2.0) / (2 * pow(sigma, 2.0)));
                    score[k] += val;
                }
            }
            double avg = np_mean(score, 4);
            avg /= (double)items[i].nrefs;
            avg *= 10.0;
            s->cider_item[i] = avg;
        }
        s->cider_d = np_mean(s->cider_item, n);
        free(df);
        free(dstamp);
        free(idf);
        free(rvec);
        free(rstamp);
    }

    for (size_t i = 0; i < n; i++) {
        sent_free(&cand[i]);
        for (int j = 0; j < items[i].nrefs; j++) sent_free(&refs[i][j]);
        free(refs[i]);
    }
    free(cand);
    free(refs);
    free(maxc);
    free(mstamp);
    free(ck.stamp);
    free(ck.pos);
    free(ck.sp);
    free(ck.ngrams.keys);
    free(ck.ngrams.tab);
    strtab_free(&ck.words);
}

void cm_free(cm_scores *s) {
    free(s->bleu_item);
    free(s->rouge_item);
    free(s->cider_item);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ retrieval */

long rt_rank(const float *row, int n, int target) {
    float v = row[target];
    long r = 1;
    for (int j = 0; j < n; j++)
        if (row[j] > v || (row[j] == v && j < target)) r++;
    return r;
}

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

/* R@k, mAP@10 (given per-query AP), median and mean rank of best ranks */
static void summarise(const long *best, const double *ap, long nq, rt_scores *s) {
    memset(s, 0, sizeof *s);
    s->queries = nq;
    if (nq == 0) {
        s->r1 = s->r5 = s->r10 = s->map10 = s->median_rank = s->mean_rank = NAN;
        return;
    }
    long h1 = 0, h5 = 0, h10 = 0;
    double sum_ap = 0, sum_rank = 0;
    long *sorted = xmalloc((size_t)nq * sizeof(long));
    for (long q = 0; q < nq; q++) {
        h1 += best[q] <= 1;
        h5 += best[q] <= 5;
        h10 += best[q] <= 10;
        sum_ap += ap[q];
        sum_rank += (double)best[q];
        sorted[q] = best[q] - 1;
    }
    qsort(sorted, (size_t)nq, sizeof(long), cmp_long);
    /* floor(np.median(ranks0)) + 1 with 0-based ranks */
    double med = nq % 2 ? (double)sorted[nq / 2] : ((double)sorted[nq / 2 - 1] + (double)sorted[nq / 2]) / 2;
    s->median_rank = floor(med) + 1;
    s->mean_rank = sum_rank / (double)nq;
    s->r1 = (double)h1 / (double)nq;
    s->r5 = (double)h5 / (double)nq;
    s->r10 = (double)h10 / (double)nq;
    s->map10 = sum_ap / (double)nq;
    free(sorted);
}

void rt_evaluate(const float *text, int nt, const float *audio, int na, int d, const int *text_audio,
                 rt_scores *t2a, rt_scores *a2t, long *t2a_rank, long *a2t_rank) {
    /* similarity blocks of B captions x na audios, at most ~256 MB */
    size_t per_row = (size_t)(na > 0 ? na : 1) * sizeof(float);
    long B = (long)((256u << 20) / per_row);
    if (B < 1) B = 1;
    if (B > nt) B = nt > 0 ? nt : 1;
    float *S = xmalloc_aligned((size_t)B * per_row);
    long *rank_t = xcalloc((size_t)nt + 1, sizeof(long));
    float *relsim = xcalloc((size_t)nt + 1, sizeof(float));
    double *ap_t = xcalloc((size_t)nt + 1, sizeof(double));
    long *best_t = xcalloc((size_t)nt + 1, sizeof(long));
    long nq_t = 0;

    /* captions of each audio, in caption order */
    int *ncap = xcalloc((size_t)na + 1, sizeof(int)), *first = xcalloc((size_t)na + 2, sizeof(int));
    for (int t = 0; t < nt; t++)
        if (text_audio[t] >= 0) ncap[text_audio[t]]++;
    for (int a = 0; a < na; a++) first[a + 1] = first[a] + ncap[a];
    int *caps = xmalloc(((size_t)first[na] + 1) * sizeof(int)), *fill = xcalloc((size_t)na + 1, sizeof(int));
    for (int t = 0; t < nt; t++)
        if (text_audio[t] >= 0) caps[first[text_audio[t]] + fill[text_audio[t]]++] = t;
    /* a2t rank of each caption among all taking-part captions, for its audio */
    long *rank_a = xmalloc(((size_t)nt + 1) * sizeof(long));
    for (int t = 0; t < nt; t++) rank_a[t] = 1;

    long nblocks = nt > 0 ? (nt + B - 1) / B : 0;
    for (int pass = 0; pass < 2; pass++) {
        for (long b = 0; b < nblocks; b++) {
            long t0 = b * B, m = nt - t0 < B ? nt - t0 : B;
            if (pass == 0 || nblocks > 1)
                gemm(CblasNoTrans, CblasTrans, (int)m, na, d, 1.0f, text + (size_t)t0 * d, d, audio,
                            d, 0.0f, S, na);
            for (long i = 0; i < m; i++) {
                long t = t0 + i;
                const float *row = S + (size_t)i * na;
                if (text_audio[t] < 0) continue;
                if (pass == 0) {
                    /* t2a: this caption's rank over all audios */
                    rank_t[t] = rt_rank(row, na, text_audio[t]);
                    relsim[t] = row[text_audio[t]];
                } else {
                    /* a2t: caption t is a gallery item for every audio: does
                     * it outrank that audio's relevant captions? */
                    for (int a = 0; a < na; a++) {
                        float v = row[a];
                        for (int k = first[a]; k < first[a + 1]; k++) {
                            int u = caps[k];
                            if (v > relsim[u] || (v == relsim[u] && t < u)) rank_a[u]++;
                        }
                    }
                }
            }
        }
    }
    for (int t = 0; t < nt; t++) {
        if (text_audio[t] < 0) continue;
        long r = rank_t[t];
        best_t[nq_t] = r;
        ap_t[nq_t] = r <= 10 ? 1.0 / (double)r : 0.0;
        nq_t++;
    }
    summarise(best_t, ap_t, nq_t, t2a);
    if (t2a_rank)
        for (int t = 0; t < nt; t++) t2a_rank[t] = text_audio[t] >= 0 ? rank_t[t] : 0;

    long nq_a = 0;
    long *best_a = xcalloc((size_t)na + 1, sizeof(long)), *rr = xmalloc(((size_t)nt + 1) * sizeof(long));
    double *ap_a = xcalloc((size_t)na + 1, sizeof(double));
    for (int a = 0; a < na; a++) {
        int R = first[a + 1] - first[a];
        if (a2t_rank) a2t_rank[a] = 0;
        if (!R) continue;
        for (int k = 0; k < R; k++) rr[k] = rank_a[caps[first[a] + k]];
        qsort(rr, (size_t)R, sizeof(long), cmp_long);
        double ap = 0;
        for (int k = 0; k < R && rr[k] <= 10; k++) ap += (double)(k + 1) / (double)rr[k];
        best_a[nq_a] = rr[0];
        ap_a[nq_a] = ap / R;
        nq_a++;
        if (a2t_rank) a2t_rank[a] = rr[0];
    }
    summarise(best_a, ap_a, nq_a, a2t);

    free(S);
    free(rank_t);
    free(relsim);
    free(ap_t);
    free(best_t);
    free(ncap);
    free(first);
    free(caps);
    free(fill);
    free(rank_a);
    free(best_a);
    free(rr);
    free(ap_a);
}

/* ------------------------------------------------------------ Java tools */

static const char *const *sort_keys;
static int cmp_key_idx(const void *a, const void *b) {
    return strcmp(sort_keys[*(const size_t *)a], sort_keys[*(const size_t *)b]);
}

/* item indices in key order (Python's sorted() of str keys: code point
 * order, which strcmp gives on UTF-8) */
static size_t *key_order(const char *const *keys, size_t n) {
    size_t *o = xmalloc((n + 1) * sizeof(size_t));
    for (size_t i = 0; i < n; i++) o[i] = i;
    sort_keys = keys;
    qsort(o, n, sizeof(size_t), cmp_key_idx);
    return o;
}

static const char *tmp_root(void) {
    const char *t = getenv("TMPDIR");
    return t && *t ? t : "/tmp";
}

/* Print a child's captured messages (the last 20 lines), prefixed. */
static void relay_log(const char *path, const char *what) {
    FILE *f = fopen(path, "r");
    if (!f) return;
    char *lines[20] = {0}, *l = NULL;
    size_t cap = 0;
    long n = 0;
    ssize_t k;
    while ((k = getline(&l, &cap, f)) >= 0) {
        if (k && l[k - 1] == '\n') l[k - 1] = 0;
        free(lines[n % 20]);
        lines[n % 20] = xstrdup(l);
        n++;
    }
    for (long i = n > 20 ? n - 20 : 0; i < n; i++) warnx_("%s: %s", what, lines[i % 20]);
    for (int i = 0; i < 20; i++) free(lines[i]);
    free(l);
    fclose(f);
}

/* fork and exec argv in dir with stdin/stdout on the given fds (-1: /dev/null)
 * and stderr (and stdout when out_fd is -1) into log_fd */
static pid_t spawn(char *const argv[], const char *dir, int in_fd, int out_fd, int log_fd, const int *close_fds,
                   int nclose) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid != 0) return pid;
    int null = open("/dev/null", O_RDWR);
    dup2(in_fd >= 0 ? in_fd : null, 0);
    dup2(out_fd >= 0 ? out_fd : log_fd, 1);
    dup2(log_fd, 2);
    for (int i = 0; i < nclose; i++) close(close_fds[i]);
    signal(SIGPIPE, SIG_DFL);
    setenv("LC_ALL", "C", 1);
    if (dir && chdir(dir)) {
        fprintf(stderr, "cannot enter %s: %s\n", dir, strerror(errno));
        _exit(127);
    }
    execvp(argv[0], argv);
    fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

static void describe_status(int status, char *buf, size_t len) {
    if (WIFEXITED(status)) snprintf(buf, len, "exited with status %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status)) snprintf(buf, len, "killed by signal %d", WTERMSIG(status));
    else snprintf(buf, len, "ended abnormally");
}

/* absolute jar path and its directory (pycocoevalcap runs the jars from
 * their own directory) */
static int jar_paths(const char *jar, char *abs, char *dir, char *err, size_t errlen) {
    if (!realpath(jar, abs)) {
        snprintf(err, errlen, "%s: %s", jar, strerror(errno));
        return -1;
    }
    snprintf(dir, PATH_MAX, "%s", abs);
    char *sl = strrchr(dir, '/');
    if (sl == dir) sl[1] = 0;
    else if (sl) *sl = 0;
    return 0;
}

/* Python's str.strip() of ASCII whitespace, in place */
static char *strip(char *s) {
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\v' || *s == '\f') s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\n' || s[n - 1] == '\r' || s[n - 1] == '\v' ||
                 s[n - 1] == '\f'))
        s[--n] = 0;
    return s;
}

static int parse_float(const char *s, double *v) {
    char *e;
    if (!*s) return -1;
    *v = strtod(s, &e);
    return *e ? -1 : 0;
}

/* s.replace(a, b) of Python: non-overlapping, left to right, one pass */
static char *py_replace(const char *s, const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b), n = 0;
    for (const char *p = strstr(s, a); p; p = strstr(p + la, a)) n++;
    char *o = xmalloc(strlen(s) + n * lb + 1), *q = o;
    for (const char *p = s;;) {
        const char *f = strstr(p, a);
        if (!f) {
            strcpy(q, p);
            break;
        }
        memcpy(q, p, (size_t)(f - p));
        q += f - p;
        memcpy(q, b, lb);
        q += lb;
        p = f + la;
    }
    return o;
}

int meteor_run(const char *java, const char *jar, const char *const *keys, const cm_item *items, size_t n,
               double *item, double *corpus, char *err, size_t errlen) {
    char abs[PATH_MAX], dir[PATH_MAX], logp[PATH_MAX];
    if (jar_paths(jar, abs, dir, err, errlen)) return -1;
    snprintf(logp, sizeof logp, "%s/wsac-meteor-XXXXXX", tmp_root());
    int logfd = mkstemp(logp);
    if (logfd < 0) {
        snprintf(err, errlen, "cannot create a temporary file in %s: %s", tmp_root(), strerror(errno));
        return -1;
    }
    int to[2], from[2];
    if (pipe(to) || pipe(from)) {
        snprintf(err, errlen, "pipe: %s", strerror(errno));
        close(logfd);
        unlink(logp);
        return -1;
    }
    char *argv[] = {(char *)java, "-jar", "-Xmx2G", abs, "-", "-", "-stdio", "-l", "en", "-norm", NULL};
    int cl[] = {to[1], from[0], to[0], from[1], logfd};
    pid_t pid = spawn(argv, dir, to[0], from[1], logfd, cl, 5);
    close(to[0]);
    close(from[1]);
    if (pid < 0) {
        snprintf(err, errlen, "fork: %s", strerror(errno));
        close(to[1]);
        close(from[0]);
        close(logfd);
        unlink(logp);
        return -1;
    }
    /* a METEOR that dies must not kill us with SIGPIPE */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    FILE *w = fdopen(to[1], "w"), *r = fdopen(from[0], "r");
    size_t *ord = key_order(keys, n);
    char **stats = xcalloc(n + 1, sizeof(char *));
    char *line = NULL;
    size_t lcap = 0;
    int ok = 1;
    const char *why = NULL;
    for (size_t k = 0; k < n && ok; k++) {
        const cm_item *it = &items[ord[k]];
        /* _stat(): hypothesis_str.replace('|||','').replace('  ',' ') */
        char *h1 = py_replace(it->cand, "|||", ""), *h2 = py_replace(h1, "  ", " ");
        fputs("SCORE", w);
        fputs(" ||| ", w);
        for (int j = 0; j < it->nrefs; j++) {
            if (j) fputs(" ||| ", w);
            fputs(it->refs[j], w);
        }
        fputs(" ||| ", w);
        fputs(h2, w);
        fputc('\n', w);
        free(h1);
        free(h2);
        if (fflush(w) || getline(&line, &lcap, r) < 0) ok = 0, why = "no answer to a SCORE line";
        else stats[k] = xstrdup(strip(line));
    }
    if (ok) {
        fputs("EVAL", w);
        for (size_t k = 0; k < n; k++) fprintf(w, " ||| %s", stats[k]);
        fputc('\n', w);
        if (fflush(w)) ok = 0, why = "cannot write the EVAL line";
    }
    for (size_t k = 0; k < n && ok; k++) {
        double v;
        if (getline(&line, &lcap, r) < 0) ok = 0, why = "fewer item scores than items";
        else if (parse_float(strip(line), &v)) ok = 0, why = "an item score is not a number";
        else item[ord[k]] = v;
    }
    if (ok) {
        if (getline(&line, &lcap, r) < 0) ok = 0, why = "no corpus score";
        else if (parse_float(strip(line), corpus)) ok = 0, why = "the corpus score is not a number";
    }
    fclose(w);
    fclose(r);
    /* as pycocoevalcap's __del__: close stdin, kill, wait */
    int status = 0;
    if (ok) kill(pid, SIGTERM);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    signal(SIGPIPE, old);
    if (!ok) {
        char st[64];
        describe_status(status, st, sizeof st);
        snprintf(err, errlen, "METEOR (%s -jar %s) failed: %s; java %s", java, abs, why, st);
        relay_log(logp, "meteor");
    }
    close(logfd);
    unlink(logp);
    for (size_t k = 0; k < n; k++) free(stats[k]);
    free(stats);
    free(ord);
    free(line);
    return ok ? 0 : -1;
}

static void rm_rf(const char *path) {
    struct stat sb;
    if (lstat(path, &sb)) return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..")) continue;
                char sub[PATH_MAX];
                snprintf(sub, sizeof sub, "%s/%s", path, de->d_name);
                rm_rf(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else unlink(path);
}

/* SPICE's writer prints undefined scores as bare NaN (not JSON): null */
static char *nan_to_null(const char *s) {
    size_t n = strlen(s);
    char *o = xmalloc(n * 2 + 1), *q = o;
    int in_str = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (in_str) {
            *q++ = c;
            if (c == '\\' && i + 1 < n) *q++ = s[++i];
            else if (c == '"') in_str = 0;
            continue;
        }
        if (c == '"') in_str = 1;
        const char *w = !strncmp(s + i, "NaN", 3) ? "NaN" : !strncmp(s + i, "-Infinity", 9) ? "-Infinity"
                        : !strncmp(s + i, "Infinity", 8) ? "Infinity" : NULL;
        if (w) {
            memcpy(q, "null", 4);
            q += 4;
            i += strlen(w) - 1;
        } else *q++ = c;
    }
    *q = 0;
    return o;
}

int spice_run(const char *java, const char *jar, const char *cache_dir, const char *const *keys, const cm_item *items,
              size_t n, double *item, double *corpus, char *err, size_t errlen) {
    char abs[PATH_MAX], dir[PATH_MAX], work[PATH_MAX], in[PATH_MAX + 16], out[PATH_MAX + 16], cache[PATH_MAX + 16],
        logp[PATH_MAX + 16];
    if (jar_paths(jar, abs, dir, err, errlen)) return -1;
    snprintf(work, sizeof work, "%s/wsac-spice-XXXXXX", tmp_root());
    if (!mkdtemp(work)) {
        snprintf(err, errlen, "cannot create a temporary directory in %s: %s", tmp_root(), strerror(errno));
        return -1;
    }
    snprintf(in, sizeof in, "%s/in.json", work);
    snprintf(out, sizeof out, "%s/out.json", work);
    snprintf(logp, sizeof logp, "%s/log.txt", work);
    if (cache_dir) {
        if (mkdir(cache_dir, 0777) && errno != EEXIST) {
            snprintf(err, errlen, "cannot create %s: %s", cache_dir, strerror(errno));
            rm_rf(work);
            return -1;
        }
        if (!realpath(cache_dir, cache)) snprintf(cache, sizeof cache, "%s", cache_dir);
    } else {
        snprintf(cache, sizeof cache, "%s/cache", work);
        mkdir(cache, 0777);
    }
    int ok = 0;
    size_t *ord = key_order(keys, n);
    json_t *list = json_array();
    for (size_t k = 0; k < n; k++) {
        const cm_item *it = &items[ord[k]];
        json_t *refs = json_array();
        for (int j = 0; j < it->nrefs; j++) json_array_append_new(refs, json_string(it->refs[j]));
        json_t *o = json_object();
        json_object_set_new(o, "image_id", json_string(keys[ord[k]]));
        json_object_set_new(o, "test", json_string(it->cand));
        json_object_set_new(o, "refs", refs);
        json_array_append_new(list, o);
    }
    /* json.dump(input_data, in_file, indent=2): ASCII with \u escapes */
    int wr = json_dump_file(list, in, JSON_INDENT(2) | JSON_ENSURE_ASCII);
    json_decref(list);
    double *seen = NULL;
    if (wr) {
        snprintf(err, errlen, "cannot write %s", in);
        goto done;
    }
    int logfd = open(logp, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    char *argv[] = {(char *)java, "-jar", "-Xmx8G", abs, in, "-cache", cache, "-out", out, "-subset", "-silent", NULL};
    pid_t pid = spawn(argv, dir, -1, -1, logfd, &logfd, 1);
    int status = 0;
    if (pid > 0)
        while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
    close(logfd);
    if (pid < 0 || !WIFEXITED(status) || WEXITSTATUS(status)) {
        char st[64];
        if (pid < 0) snprintf(st, sizeof st, "could not start");
        else describe_status(status, st, sizeof st);
        snprintf(err, errlen, "SPICE (%s -jar %s) failed: java %s", java, abs, st);
        relay_log(logp, "spice");
        goto done;
    }
    FILE *f = fopen(out, "r");
    if (!f) {
        snprintf(err, errlen, "SPICE wrote no %s", out);
        goto done;
    }
    char *txt = NULL;
    size_t tcap = 0;
    ssize_t tl = getdelim(&txt, &tcap, 0, f);
    fclose(f);
    char *fixed = nan_to_null(tl > 0 ? txt : "");
    free(txt);
    json_error_t je;
    json_t *res = json_loads(fixed, 0, &je);
    free(fixed);
    if (!json_is_array(res)) {
        snprintf(err, errlen, "SPICE output %s: %s", out, res ? "not a JSON list" : je.text);
        json_decref(res);
        goto done;
    }
    size_t nres = json_array_size(res);
    double *all = xmalloc((nres + 1) * sizeof(double));
    seen = xcalloc(n + 1, sizeof(double));
    for (size_t i = 0; i < n; i++) seen[i] = 0;
    int bad = 0;
    for (size_t k = 0; k < nres && !bad; k++) {
        json_t *e = json_array_get(res, k);
        const char *id = json_string_value(json_object_get(e, "image_id"));
        json_t *fv = json_object_get(json_object_get(json_object_get(e, "scores"), "All"), "f");
        /* float_convert(): a number, else NaN */
        double v = json_is_number(fv) ? json_number_value(fv) : NAN;
        all[k] = v;
        size_t lo = 0, hi = n; /* find the key: ord is sorted */
        long at = -1;
        while (id && lo < hi) {
            size_t mid = (lo + hi) / 2;
            int c = strcmp(keys[ord[mid]], id);
            if (!c) {
                at = (long)ord[mid];
                break;
            }
            if (c < 0) lo = mid + 1;
            else hi = mid;
        }
        if (at < 0) {
            snprintf(err, errlen, "SPICE output names an unknown image_id %s", id ? id : "(none)");
            bad = 1;
        } else {
            item[at] = v;
            seen[at] = 1;
        }
    }
    for (size_t i = 0; i < n && !bad; i++)
        if (!seen[i]) {
            snprintf(err, errlen, "SPICE output has no score for '%s'", keys[i]);
            bad = 1;
        }
    if (!bad) {
        *corpus = np_mean(all, nres);
        ok = 1;
    }
    free(all);
    json_decref(res);
done:
    free(seen);
    free(ord);
    rm_rf(work);
    return ok ? 0 : -1;
}
