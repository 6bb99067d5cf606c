/* relevance.c - multi-positive relevance files (query,audio_filenames) and
 * text-to-audio retrieval metrics over several relevant audios per query. */
#include "relevance.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csvrows.h"
#include "gemm.h"
#include "jsonout.h"
#include "metrics.h"
#include "util.h"

/* ------------------------------------------------------------ list literal */

static const char *skip_ws(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

int rel_parse_list(const char *cell, char ***out) {
    *out = NULL;
    const char *p = skip_ws(cell);
    if (*p != '[') return -1;
    p = skip_ws(p + 1);
    char **v = xmalloc(sizeof(char *));
    int n = 0;
    v[0] = NULL;
    size_t slen = strlen(cell);
    char *buf = xmalloc(slen + 1);
    while (*p != ']') {
        char q = *p;
        if (q != '\'' && q != '"') goto bad;
        p++;
        size_t k = 0;
        while (*p && *p != q) {
            if (*p == '\\') {
                char c = p[1];
                if (!c) goto bad;
                switch (c) {
                case '\\': buf[k++] = '\\'; break;
                case '\'': buf[k++] = '\''; break;
                case '"': buf[k++] = '"'; break;
                case 'n': buf[k++] = '\n'; break;
                case 't': buf[k++] = '\t'; break;
                case 'r': buf[k++] = '\r'; break;
                default: buf[k++] = '\\', buf[k++] = c; break; /* Python keeps an unknown escape */
                }
                p += 2;
            } else if (*p == '\n') {
                goto bad; /* a plain string literal ends on its line */
            } else {
                buf[k++] = *p++;
            }
        }
        if (*p != q) goto bad;
        p = skip_ws(p + 1);
        buf[k] = 0;
        v = xrealloc(v, (size_t)(n + 2) * sizeof(char *));
        v[n++] = xstrdup(buf);
        v[n] = NULL;
        if (*p == ',') p = skip_ws(p + 1);
        else if (*p != ']') goto bad;
    }
    if (*skip_ws(p + 1)) goto bad;
    free(buf);
    *out = v;
    return n;
bad:
    free(buf);
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
    return -1;
}

/* ------------------------------------------------------------ CSV */

typedef struct {
    rel_set *s;
    const char *path;
    int have_header, ncols, qcol, acol;
} relctx;

static void bad_row(relctx *c, long line, const char *msg) {
    warnx_("%s: line %ld: %s: skipped", c->path, line, msg);
    c->s->bad++;
}

static int on_row(void *ctx, char **fields, int nf, long line, char *err, size_t errlen) {
    relctx *c = ctx;
    if (!c->have_header) {
        c->have_header = 1;
        c->ncols = nf;
        c->qcol = c->acol = -1;
        for (int i = 0; i < nf; i++) {
            if (!strcmp(fields[i], "query") && c->qcol < 0) c->qcol = i;
            if (!strcmp(fields[i], "audio_filenames") && c->acol < 0) c->acol = i;
        }
        if (c->qcol < 0 || c->acol < 0) {
            snprintf(err, errlen, "%s: the header has no 'query' and 'audio_filenames' columns", c->path);
            return -1;
        }
        return 0;
    }
    if (nf != c->ncols) {
        char m[80];
        snprintf(m, sizeof m, "%d fields, the header has %d", nf, c->ncols);
        bad_row(c, line, m);
        return 0;
    }
    const char *q = fields[c->qcol], *cell = fields[c->acol];
    if (!*q) {
        bad_row(c, line, "empty query");
        return 0;
    }
    char **list = NULL;
    int n;
    if (*skip_ws(cell) == '[') {
        n = rel_parse_list(cell, &list);
        if (n < 0) {
            bad_row(c, line, "audio_filenames is not a list of quoted file names");
            return 0;
        }
    } else {
        list = xmalloc(2 * sizeof(char *));
        list[0] = xstrdup(cell);
        list[1] = NULL;
        n = 1;
    }
    /* unique, non-empty names */
    int m = 0;
    for (int i = 0; i < n; i++) {
        int dup = !list[i][0];
        for (int j = 0; j < m && !dup; j++) dup = !strcmp(list[j], list[i]);
        if (dup) free(list[i]);
        else list[m++] = list[i];
    }
    list[m] = NULL;
    if (m == 0) {
        free(list);
        bad_row(c, line, "no relevant audio");
        return 0;
    }
    if (c->s->n == c->s->cap) {
        c->s->cap = c->s->cap ? 2 * c->s->cap : 256;
        c->s->e = xrealloc(c->s->e, (size_t)c->s->cap * sizeof(rel_entry));
    }
    rel_entry *e = &c->s->e[c->s->n++];
    e->query = xstrdup(q);
    e->audio = list;
    e->naudio = m;
    e->line = line;
    return 0;
}

void rel_free(rel_set *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->e[i].query);
        for (int j = 0; j < s->e[i].naudio; j++) free(s->e[i].audio[j]);
        free(s->e[i].audio);
    }
    free(s->e);
    memset(s, 0, sizeof *s);
}

int rel_parse(rel_set *s, const char *path, const char *buf, size_t len, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    relctx c = {.s = s, .path = path};
    if (csv_rows(path, buf, len, on_row, &c, err, errlen)) {
        rel_free(s);
        return -1;
    }
    return 0;
}

int rel_load(rel_set *s, const char *path, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    int fd = strcmp(path, "-") ? open(path, O_RDONLY) : 0;
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    size_t cap = 1 << 16, n = 0;
    char *b = xmalloc(cap);
    for (;;) {
        if (n == cap) b = xrealloc(b, cap *= 2);
        ssize_t k = read(fd, b + n, cap - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
            free(b);
            if (fd) close(fd);
            return -1;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    if (fd) close(fd);
    int r = rel_parse(s, path, b, n, err, errlen);
    free(b);
    return r;
}

/* ------------------------------------------------------------ metrics */

static int cmp_long(const void *a, const void *b) {
    long x = *(const long *)a, y = *(const long *)b;
    return (x > y) - (x < y);
}

static double ap_at(const long *r, int R, int K, int divisor_min) {
    double ap = 0;
    for (int j = 0; j < R && r[j] <= K; j++) ap += (double)(j + 1) / (double)r[j];
    int D = divisor_min && K < R ? K : R;
    return ap / (double)D;
}

void rel_evaluate(const float *text, int nt, const float *audio, int na, int d, const int *qtext, int nq,
                  const int *rel_off, const int *rel_idx, int divisor_min, rel_scores *out, long *ranks) {
    (void)nt;
    memset(out, 0, sizeof *out);
    out->queries = nq;
    if (nq <= 0) {
        out->r1 = out->r5 = out->r10 = out->map10 = out->map16 = out->mean_relevant = NAN;
        return;
    }
    size_t per_row = (size_t)(na > 0 ? na : 1) * sizeof(float);
    long B = (long)((64u << 20) / per_row);
    if (B < 1) B = 1;
    if (B > nq) B = nq;
    float *Q = xmalloc_aligned((size_t)B * (size_t)d * sizeof(float));
    float *S = xmalloc_aligned((size_t)B * per_row);
    int maxR = 1;
    for (int q = 0; q < nq; q++)
        if (rel_off[q + 1] - rel_off[q] > maxR) maxR = rel_off[q + 1] - rel_off[q];
    long *r = xmalloc((size_t)maxR * sizeof(long));
    long h1 = 0, h5 = 0, h10 = 0, nrel = 0;
    double *ap10 = xmalloc((size_t)nq * sizeof(double)), *ap16 = xmalloc((size_t)nq * sizeof(double));
    for (long q0 = 0; q0 < nq; q0 += B) {
        long m = nq - q0 < B ? nq - q0 : B;
        for (long i = 0; i < m; i++) memcpy(Q + (size_t)i * d, text + (size_t)qtext[q0 + i] * d, (size_t)d * sizeof(float));
        gemm(CblasNoTrans, CblasTrans, (int)m, na, d, 1.0f, Q, d, audio, d, 0.0f, S, na);
        for (long i = 0; i < m; i++) {
            long q = q0 + i;
            const float *row = S + (size_t)i * na;
            int R = rel_off[q + 1] - rel_off[q];
            for (int k = 0; k < R; k++) {
                r[k] = rt_rank(row, na, rel_idx[rel_off[q] + k]);
                if (ranks) ranks[rel_off[q] + k] = r[k];
            }
            qsort(r, (size_t)R, sizeof(long), cmp_long);
            h1 += r[0] <= 1;
            h5 += r[0] <= 5;
            h10 += r[0] <= 10;
            nrel += R;
            ap10[q] = ap_at(r, R, 10, divisor_min);
            ap16[q] = ap_at(r, R, 16, divisor_min);
        }
    }
    out->r1 = (double)h1 / (double)nq;
    out->r5 = (double)h5 / (double)nq;
    out->r10 = (double)h10 / (double)nq;
    /* summed in query order, as score retrieval's single-positive mAP@10 */
    double s10 = 0, s16 = 0;
    for (long q = 0; q < nq; q++) s10 += ap10[q], s16 += ap16[q];
    out->map10 = s10 / (double)nq;
    out->map16 = s16 / (double)nq;
    out->mean_relevant = (double)nrel / (double)nq;
    free(Q);
    free(S);
    free(r);
    free(ap10);
    free(ap16);
}

/* ------------------------------------------------------------ score retrieval --relevance */

typedef struct {
    int *tab, cap;
    char *const *s;
} strix;

static void strix_init(strix *x, char *const *s, int n) {
    x->cap = 16;
    while (x->cap < 2 * n + 2) x->cap *= 2;
    x->tab = xcalloc((size_t)x->cap, sizeof(int));
    x->s = s;
    for (int i = 0; i < n; i++) {
        if (!s[i]) continue;
        uint64_t h = str_hash(s[i]) & (uint64_t)(x->cap - 1);
        int dup = 0;
        while (x->tab[h] && !(dup = !strcmp(s[x->tab[h] - 1], s[i]))) h = (h + 1) & (uint64_t)(x->cap - 1);
        if (!dup) x->tab[h] = i + 1; /* the first row with this string */
    }
}

static int strix_find(const strix *x, const char *k) {
    for (uint64_t h = str_hash(k) & (uint64_t)(x->cap - 1);; h = (h + 1) & (uint64_t)(x->cap - 1)) {
        int v = x->tab[h];
        if (!v) return -1;
        if (!strcmp(x->s[v - 1], k)) return v - 1;
    }
}

#define REL_LIST_MAX 20

static void write_list(FILE *o, char **v, int n) {
    fputc('[', o);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", o);
        json_write_string(o, v[i], strlen(v[i]));
    }
    fputc(']', o);
}

int rel_score(const float *text, int nt, char *const *tkeys, char *const *ttexts, const float *audio, int na,
              char *const *akeys, int d, const char *rpath, int divisor_min, int table, FILE *o, char *err,
              size_t errlen) {
    rel_set rs;
    if (rel_load(&rs, rpath, err, errlen)) return -1;
    strix tx, kx, ax;
    strix_init(&tx, ttexts, nt);
    strix_init(&kx, tkeys, nt);
    strix_init(&ax, akeys, na);
    int *qtext = xmalloc(((size_t)rs.n + 1) * sizeof(int)), *off = xmalloc(((size_t)rs.n + 2) * sizeof(int));
    size_t nrel = 0;
    for (int i = 0; i < rs.n; i++) nrel += (size_t)rs.e[i].naudio;
    int *idx = xmalloc((nrel + 1) * sizeof(int));
    char **noq = xmalloc(((size_t)rs.n + 1) * sizeof(char *)), **noa = xmalloc((nrel + 1) * sizeof(char *));
    int nq = 0, nnoq = 0, nnoa = 0, shown = 0;
    off[0] = 0;
    for (int i = 0; i < rs.n; i++) {
        const rel_entry *e = &rs.e[i];
        int t = strix_find(&tx, e->query);
        if (t < 0) t = strix_find(&kx, e->query);
        if (t < 0) {
            noq[nnoq++] = e->query;
            if (shown++ < REL_LIST_MAX)
                warnx_("%s: line %ld: query '%.200s' is not in the text stream: left out", rpath, e->line, e->query);
            continue;
        }
        int ok = 1;
        for (int j = 0; j < e->naudio; j++) {
            int a = strix_find(&ax, e->audio[j]);
            if (a < 0) {
                ok = 0;
                noa[nnoa++] = e->audio[j];
                if (shown++ < REL_LIST_MAX)
                    warnx_("%s: line %ld: audio '%.200s' is not in the audio stream: query left out", rpath, e->line,
                           e->audio[j]);
            }
            idx[off[nq] + j] = a;
        }
        if (!ok) continue;
        qtext[nq] = t;
        off[nq + 1] = off[nq] + e->naudio;
        nq++;
    }
    if (shown > REL_LIST_MAX)
        warnx_("... and %d more problems (all listed in the output)", shown - REL_LIST_MAX);
    /* queries left out for a missing audio: count each once */
    int nleft = rs.n - nq - nnoq;
    rel_scores sc;
    rel_evaluate(text, nt, audio, na, d, qtext, nq, off, idx, divisor_min, &sc, NULL);
    if (!table) {
        fprintf(o, "{\n  \"t2a\": {\"queries\": %ld, \"R@1\": ", sc.queries);
        json_write_number(o, sc.r1, 0);
        fputs(", \"R@5\": ", o);
        json_write_number(o, sc.r5, 0);
        fputs(", \"R@10\": ", o);
        json_write_number(o, sc.r10, 0);
        fputs(", \"mAP@10\": ", o);
        json_write_number(o, sc.map10, 0);
        fputs(", \"mAP@16\": ", o);
        json_write_number(o, sc.map16, 0);
        fputs(", \"mean_relevant\": ", o);
        json_write_number(o, sc.mean_relevant, 0);
        fputs("},\n  \"relevance\": ", o);
        json_write_string(o, rpath, strlen(rpath));
        fprintf(o, ",\n  \"rows\": %d,\n  \"skipped_rows\": %ld,\n  \"audio\": %d,\n  \"captions\": %d,\n  \"dim\": %d,\n",
                rs.n, rs.bad, na, nt, d);
        fputs("  \"queries_not_in_text\": ", o);
        write_list(o, noq, nnoq);
        fputs(",\n  \"audio_not_in_audio\": ", o);
        write_list(o, noa, nnoa);
        fprintf(o, ",\n  \"queries_left_out_for_audio\": %d,\n", nleft);
        fputs("  \"query_match\": \"a query is the caption row whose text field equals it (the first such row), "
              "else the row with that key; audio files are matched by key\",\n", o);
        fputs("  \"similarity\": \"cosine: dot products of L2-normalised rows, float32 (cblas_sgemm)\",\n", o);
        fputs("  \"ties\": \"an audio with the same similarity ranks after the audios that come before it in its "
              "stream\",\n", o);
        fprintf(o, "  \"ap\": \"AP@K = (1/%s) * sum over relevant audios ranked j-th among them at rank r_j <= K of "
                   "j / r_j; R = the query's number of relevant audios; R@k: any relevant audio in the top k\"\n}\n",
                divisor_min ? "min(R, K)" : "R");
    } else {
        fprintf(o, "%-5s %8s %8s %8s %8s %8s %8s %8s\n", "task", "queries", "R@1", "R@5", "R@10", "mAP@10", "mAP@16",
                "rel/q");
        fprintf(o, "%-5s %8ld %7.2f%% %7.2f%% %7.2f%% %7.2f%% %7.2f%% %8.2f\n", "t2a", sc.queries, 100 * sc.r1,
                100 * sc.r5, 100 * sc.r10, 100 * sc.map10, 100 * sc.map16, sc.mean_relevant);
    }
    int problems = (int)rs.bad + nnoq + nleft;
    free(qtext);
    free(off);
    free(idx);
    free(noq);
    free(noa);
    free(tx.tab);
    free(kx.tab);
    free(ax.tab);
    rel_free(&rs);
    return problems;
}
