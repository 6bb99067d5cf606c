/* tag_train.c - the training loop of tag-train (see tag_train.h).
 *
 * Items are the mel stream's clips that have labels, in stream order; an
 * epoch visits them in a permutation drawn from (seed, epoch), in batches of
 * bs (the last partial batch dropped, as clap-train); every random draw
 * (crop, dropout, SpecAugment) is keyed by (seed, epoch, item), so a run is
 * the same for a fixed thread count. */
#include "tag_train.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cnn14_train.h"
#include "gemm.h"
#include "kernels.h"
#include "nn.h"
#include "safetensors.h"
#include "stream.h"
#include "train.h"
#include "util.h"

void tag_train_defaults(tag_train_opts *o) {
    memset(o, 0, sizeof *o);
    /* PANNs pytorch/main.py: Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0), batch 32 */
    o->epochs = 20, o->bs = 32, o->shuffle = 1, o->augment = 1, o->seed = 409194;
    o->lr = 1e-3, o->wd = 0, o->warmup = 0, o->b1 = 0.9, o->b2 = 0.999, o->eps = 1e-8;
}

static uint64_t mix(uint64_t z) { /* splitmix64 */
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* ---------------------------------------------------------------- labels */

typedef tag_label_entry lentry;
typedef tag_labels lfile;

/* fd's bytes to its end, NUL-terminated (as read_file_all, from a descriptor) */
static char *read_fd_all_(int fd, const char *name, size_t max, size_t *n, char *err, size_t errlen) {
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= max) {
                free(buf);
                seterr(err, errlen, "%s: larger than %zu bytes", name, max);
                return NULL;
            }
            cap = 2 * cap < max ? 2 * cap : max;
            buf = xrealloc(buf, cap + 1);
        }
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            free(buf);
            seterr(err, errlen, "%s: %s", name, strerror(errno));
            return NULL;
        }
        if (k == 0) break;
        len += (size_t)k;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }
static int cmp_key(const void *a, const void *b) { return strcmp(((const lentry *)a)->key, ((const lentry *)b)->key); }
/* by key, then line: a repeated key's first line first (qsort is not stable) */
static int cmp_entry(const void *a, const void *b) {
    int c = cmp_key(a, b);
    long la = ((const lentry *)a)->line, lb = ((const lentry *)b)->line;
    return c ? c : (la > lb) - (la < lb);
}

static void add_label(lentry *e, const char *s, size_t len) {
    while (len && (*s == ' ' || *s == '\t' || *s == '\r')) s++, len--;
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '\r')) len--;
    if (!len) return;
    for (int i = 0; i < e->n; i++)
        if (strlen(e->lab[i]) == len && !memcmp(e->lab[i], s, len)) return; /* a class heard twice: one target */
    e->lab = xrealloc(e->lab, (size_t)(e->n + 1) * sizeof(char *));
    char *c = xmalloc(len + 1);
    memcpy(c, s, len), c[len] = 0;
    e->lab[e->n++] = c;
}

static void add_json_cls(lentry *e, const json_t *o) {
    const json_t *c = json_is_object(o) ? json_object_get(o, "cls") : NULL;
    if (json_is_string(c)) add_label(e, json_string_value(c), json_string_length(c));
}

/* a world events JSONL (file_name, background.cls, events[].cls) or KEY<TAB>label,label lines (tag_train.h) */
int tag_labels_read_fd(lfile *L, int fd, const char *path, long *bad, char *err, size_t errlen) {
    size_t len;
    memset(L, 0, sizeof *L);
    char *buf = read_fd_all_(fd, path, (size_t)1 << 31, &len, err, errlen);
    if (!buf) return -1;
    const char *p = buf;
    while (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') p++;
    int jsonl = *p == '{';
    int cap = 0;
    long line = 0;
    for (char *s = buf; s < buf + len;) {
        char *nl = memchr(s, '\n', (size_t)(buf + len - s));
        char *end = nl ? nl : buf + len;
        *end = 0;
        line++;
        char *cur = s;
        s = end + 1;
        if (end > cur && end[-1] == '\r') *--end = 0;
        if (end == cur || *cur == '#') continue;
        lentry e = {0};
        e.line = line;
        if (strlen(cur) != (size_t)(end - cur)) {
            /* the line would be cut there: a key or label cut short, unseen */
            warnx_("%s: line %ld: a NUL byte", path, line);
            (*bad)++;
            continue;
        }
        if (jsonl) {
            json_error_t je;
            json_t *j = json_loads(cur, 0, &je);
            const json_t *fn = j ? json_object_get(j, "file_name") : NULL;
            if (!json_is_string(fn) || !json_string_length(fn)) {
                warnx_("%s: line %ld: %s", path, line,
                       !j ? je.text : json_is_string(fn) ? "an empty \"file_name\"" : "no \"file_name\" string");
                (*bad)++;
                json_decref(j);
                continue;
            }
            e.key = xstrdup(json_string_value(fn));
            add_json_cls(&e, json_object_get(j, "background"));
            const json_t *ev = json_object_get(j, "events");
            for (size_t i = 0; json_is_array(ev) && i < json_array_size(ev); i++) add_json_cls(&e, json_array_get(ev, i));
            json_decref(j);
        } else {
            char *tab = strchr(cur, '\t');
            if (!tab || tab == cur) {
                warnx_("%s: line %ld: %s", path, line, tab ? "an empty key" : "no tab (KEY<TAB>label,label,...)");
                (*bad)++;
                continue;
            }
            *tab = 0;
            e.key = xstrdup(cur);
            for (char *q = tab + 1;;) {
                char *comma = strchr(q, ',');
                add_label(&e, q, comma ? (size_t)(comma - q) : strlen(q));
                if (!comma) break;
                q = comma + 1;
            }
        }
        if (L->n == cap) cap = cap ? 2 * cap : 256, L->e = xrealloc(L->e, (size_t)cap * sizeof *L->e);
        L->e[L->n++] = e;
    }
    free(buf);
    if (L->n) qsort(L->e, (size_t)L->n, sizeof *L->e, cmp_entry); /* L->e is NULL when empty: qsort's base is nonnull */
    for (int i = 1, first = 0; i < L->n; i++) {
        if (strcmp(L->e[i].key, L->e[first].key)) {
            first = i;
            continue;
        }
        warnx_("%s: line %ld: key '%s' again (first on line %ld): its labels are added to the first", path,
               L->e[i].line, L->e[i].key, L->e[first].line);
        (*bad)++;
    }
    return 0;
}

static void read_labels(lfile *L, const char *path, long *bad) {
    char err[700];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("%s: %s", path, strerror(errno));
    int r = tag_labels_read_fd(L, fd, path, bad, err, sizeof err);
    close(fd);
    if (r) die("%s", err);
}

static const lentry *find_entry(const lfile *L, const char *key) {
    if (!L->n) return NULL; /* L->e NULL: bsearch's base is nonnull */
    lentry k = {(char *)key, 0, NULL, 0};
    const lentry *e = bsearch(&k, L->e, (size_t)L->n, sizeof k, cmp_key);
    while (e && e > L->e && !strcmp(e[-1].key, key)) e--; /* the first of repeated keys */
    return e;
}

void tag_labels_free(lfile *L) {
    for (int i = 0; i < L->n; i++) {
        for (int j = 0; j < L->e[i].n; j++) free(L->e[i].lab[j]);
        free(L->e[i].lab), free(L->e[i].key);
    }
    free(L->e);
}

int tag_class_index(char *const *cls, int K, const char *name) {
    if (!K) return -1;
    char *const *p = bsearch(&name, cls, (size_t)K, sizeof *cls, cmp_str);
    return p ? (int)(p - cls) : -1;
}

/* sorts cls[K] and drops the repeats; returns the count left */
static int classes_unique(char **cls, int K) {
    if (!K) return 0; /* cls may be NULL */
    qsort(cls, (size_t)K, sizeof *cls, cmp_str);
    int u = 0;
    for (int k = 0; k < K; k++) {
        if (u && !strcmp(cls[k], cls[u - 1])) {
            free(cls[k]);
            continue;
        }
        cls[u++] = cls[k];
    }
    return u;
}

char **tag_classes_read_fd(int fd, const char *name, int *K, char *err, size_t errlen) {
    size_t len;
    char *buf = read_fd_all_(fd, name, (size_t)1 << 28, &len, err, errlen);
    *K = 0;
    if (!buf) return NULL;
    char **cls = xmalloc(sizeof *cls);
    long line = 0;
    for (char *s = buf; s < buf + len;) {
        char *nl = memchr(s, '\n', (size_t)(buf + len - s)), *cur = s;
        size_t l = nl ? (size_t)(nl - s) : (size_t)(buf + len - s);
        s += l + 1, line++;
        cur[l] = 0;
        if (strlen(cur) != l) {
            seterr(err, errlen, "%s: line %ld: a NUL byte", name, line);
            for (int k = 0; k < *K; k++) free(cls[k]);
            free(cls), free(buf);
            *K = 0;
            return NULL;
        }
        /* trimmed at both ends, as a label is (add_label): " dog" would match no label */
        while (l && (*cur == ' ' || *cur == '\t' || *cur == '\r')) cur++, l--;
        while (l && (cur[l - 1] == '\r' || cur[l - 1] == ' ' || cur[l - 1] == '\t')) cur[--l] = 0;
        if (!l || *cur == '#') continue;
        cls = xrealloc(cls, (size_t)(*K + 1) * sizeof *cls), cls[(*K)++] = xstrdup(cur);
    }
    free(buf);
    *K = classes_unique(cls, *K);
    return cls;
}

/* ---------------------------------------------------------------- mels */

typedef struct {
    char *key;
    int T;
    float *mel; /* [T, M] */
    float *y;   /* [K] targets */
} tclip;

static tclip *read_mels(const char *path, int M, int *n) {
    ws_reader *r = ws_reader_open_path(path);
    if (!r) die("cannot open %s: %m", path);
    tclip *c = NULL;
    int cap = 0, k;
    ws_record rec;
    char eb[400];
    *n = 0;
    while ((k = ws_reader_next(r, &rec)) == WS_RECORD) {
        if (rec.err[0]) die("%s: %s: %s", path, ws_record_name(&rec, eb, sizeof eb), rec.err);
        const ws_tensor *t = ws_record_tensor(&rec, "mel", DT_F32, 2, eb, sizeof eb);
        if (!t) die("%s: key '%s': %s", path, rec.key, eb);
        if (t->shape[1] != M) die("%s: key '%s': %lld mel bands, the model takes %d", path, rec.key, (long long)t->shape[1], M);
        for (size_t i = 0; i < t->numel; i++)
            if (!isfinite(((float *)t->data)[i])) die("%s: key '%s': a NaN or infinite value", path, rec.key);
        if (*n == cap) cap = cap ? 2 * cap : 256, c = xrealloc(c, (size_t)cap * sizeof *c);
        c[*n].key = xstrdup(rec.key);
        c[*n].T = (int)t->shape[0];
        c[*n].mel = xmalloc(t->numel * sizeof(float));
        c[*n].y = NULL;
        memcpy(c[*n].mel, t->data, t->numel * sizeof(float));
        (*n)++;
        ws_record_free(&rec);
    }
    if (k == WS_ERROR) die("%s: %s", path, ws_reader_error(r));
    ws_reader_close(r);
    if (!*n) die("%s: no mel records", path);
    /* a key twice would be two items of one clip */
    char **keys = xmalloc((size_t)*n * sizeof(char *));
    for (int i = 0; i < *n; i++) keys[i] = c[i].key;
    qsort(keys, (size_t)*n, sizeof *keys, cmp_str);
    for (int i = 1; i < *n; i++)
        if (!strcmp(keys[i], keys[i - 1])) die("%s: key '%s' appears twice", path, keys[i]);
    free(keys);
    return c;
}

/* Pairs the clips with their labels: clips keep their order, those without
 * labels (or none the class list knows) are named and dropped; label keys
 * without a clip are named. Returns the problems counted. */
static long match(tclip *c, int *n, const lfile *L, const char *melpath, const char *labpath, char *const *cls, int K) {
    long missing = 0, empty = 0, unknown = 0, orphan = 0;
    unsigned char *used = xcalloc((size_t)L->n + 1, 1);
    int kept = 0;
    for (int i = 0; i < *n; i++) {
        const lentry *e = find_entry(L, c[i].key);
        float *y = xcalloc((size_t)K, sizeof(float));
        int pos = 0;
        if (e) {
            for (const lentry *f = e; f < L->e + L->n && !strcmp(f->key, e->key); f++) {
                used[f - L->e] = 1;
                for (int j = 0; j < f->n; j++) {
                    int k = tag_class_index(cls, K, f->lab[j]);
                    if (k < 0) {
                        if (unknown++ < 10)
                            warnx_("%s: line %ld: key '%s': label '%s' is not in the class list (ignored)", labpath,
                                   f->line, f->key, f->lab[j]);
                        continue;
                    }
                    pos += y[k] == 0, y[k] = 1;
                }
            }
        }
        if (!e || !pos) {
            if (!e && missing++ < 10) warnx_("%s: key '%s' has no labels in %s: skipped", melpath, c[i].key, labpath);
            if (e && empty++ < 10) warnx_("%s: line %ld: key '%s' has no usable label: skipped", labpath, e->line, c[i].key);
            free(y), free(c[i].key), free(c[i].mel);
            continue;
        }
        c[i].y = y;
        c[kept++] = c[i];
    }
    for (int i = 0; i < L->n; i++)
        if (!used[i] && orphan++ < 10)
            warnx_("%s: line %ld: key '%s' has no audio in %s: skipped", labpath, L->e[i].line, L->e[i].key, melpath);
    free(used);
    if (missing > 10) warnx_("%s: %ld keys without labels in all (10 named)", melpath, missing);
    if (empty > 10) warnx_("%s: %ld keys without a usable label in all (10 named)", labpath, empty);
    if (unknown > 10) warnx_("%s: %ld labels not in the class list in all (10 named)", labpath, unknown);
    if (orphan > 10) warnx_("%s: %ld keys without audio in all (10 named)", labpath, orphan);
    *n = kept;
    return missing + empty + unknown + orphan;
}

/* ---------------------------------------------------------------- metrics */

typedef struct {
    float s;
    float y;
} sy;
static int cmp_sy_desc(const void *a, const void *b) {
    float x = ((const sy *)a)->s, z = ((const sy *)b)->s;
    return x < z ? 1 : x > z ? -1 : 0;
}

static void column(sy *v, const float *scores, const float *y, int n, int K, int k, int *P) {
    *P = 0;
    for (int i = 0; i < n; i++) v[i].s = scores[(size_t)i * K + k], v[i].y = y[(size_t)i * K + k], *P += v[i].y > 0;
    qsort(v, (size_t)n, sizeof *v, cmp_sy_desc);
}

/* sklearn average_precision_score: sum over distinct thresholds of
 * (R_i - R_{i-1}) P_i, tied scores one threshold */
double tag_map(const float *scores, const float *y, int n, int K, int *nap, double *per) {
    sy *v = xmalloc((size_t)n * sizeof *v);
    double sum = 0;
    *nap = 0;
    for (int k = 0; k < K; k++) {
        int P;
        column(v, scores, y, n, K, k, &P);
        if (per) per[k] = NAN;
        if (!P) continue;
        double ap = 0, tp = 0, prev_r = 0;
        for (int i = 0; i < n;) {
            int j = i;
            while (j < n && v[j].s == v[i].s) tp += v[j].y > 0, j++;
            double r = tp / P, prec = tp / j;
            ap += (r - prev_r) * prec, prev_r = r;
            i = j;
        }
        if (per) per[k] = ap;
        sum += ap, (*nap)++;
    }
    free(v);
    return *nap ? sum / *nap : 0;
}

/* roc_auc_score: the Mann-Whitney statistic, tied scores their average rank */
double tag_auc(const float *scores, const float *y, int n, int K, int *nauc) {
    sy *v = xmalloc((size_t)n * sizeof *v);
    double sum = 0;
    *nauc = 0;
    for (int k = 0; k < K; k++) {
        int P;
        column(v, scores, y, n, K, k, &P);
        if (!P || P == n) continue;
        double rs = 0; /* ranks ascending: the highest score has rank n */
        for (int i = 0; i < n;) {
            int j = i, p = 0;
            while (j < n && v[j].s == v[i].s) p += v[j].y > 0, j++;
            double avg = n - (i + j - 1) / 2.0; /* positions i..j-1 descending = ranks n-i .. n-j+1 */
            rs += p * avg;
            i = j;
        }
        sum += (rs - (double)P * (P + 1) / 2) / ((double)P * (n - P)), (*nauc)++;
    }
    free(v);
    return *nauc ? sum / *nauc : 0;
}

/* ---------------------------------------------------------------- the model */

typedef struct {
    cnn14t *m;
    int K, E;
    float *hp, *hg, *hm, *hv; /* the head: W [K, E] then b [K] */
    size_t nh;
    int p2w, p2b;             /* audio_proj.2, which tagging neither uses nor trains */
} tagger;

/* logits z[B, K] of h[B, E] */
static void head_forward(const tagger *tg, float *z, const float *h, int B) {
    linear_forward(z, h, tg->hp, tg->hp + (size_t)tg->K * tg->E, B, tg->E, tg->K);
}

static float sigmoidf_(float z) { return 1.0f / (1.0f + expf(-z)); }

/* the classes as a JSON list */
static char *classes_json(char *const *cls, int K) {
    json_t *a = json_array();
    for (int k = 0; k < K; k++) json_array_append_new(a, json_string(cls[k]));
    char *s = json_dumps(a, JSON_COMPACT);
    json_decref(a);
    return s;
}

/* tag.classes of a file, parsed (NULL if absent or not a list of strings) */
static char **file_classes(st_file *f, int *K) {
    const char *s = st_meta(f, "tag.classes");
    if (!s) return NULL;
    json_error_t je;
    json_t *a = json_loads(s, 0, &je);
    if (!json_is_array(a)) {
        json_decref(a);
        return NULL;
    }
    *K = (int)json_array_size(a);
    char **c = xcalloc((size_t)*K + 1, sizeof(char *));
    for (int k = 0; k < *K; k++) {
        const json_t *x = json_array_get(a, (size_t)k);
        c[k] = xstrdup(json_is_string(x) ? json_string_value(x) : "");
    }
    json_decref(a);
    return c;
}

/* the trained model: every tensor of the input file (a previous tag.* head
 * and train.* state left out), the audio tower's replaced, the head added */
static void write_model(const char *out, const char *init, const tagger *tg, char *const *cls, long steps,
                        const char *labels) {
    char err[700];
    st_file *f = st_open(init, err, sizeof err);
    if (!f) die("%s", err);
    int n = st_count(f), nt = 0;
    ckpt_tensor *ct = xcalloc((size_t)n + 2, sizeof *ct);
    const cnn14t *m = tg->m;
    for (int i = 0; i < n; i++) {
        st_tensor t;
        const char *name = st_name(f, i);
        if (!strncmp(name, "tag.", 4) || !strncmp(name, "train.", 6)) continue;
        if (st_get(f, name, &t, err, sizeof err)) die("%s", err);
        if (t.ndim > 4) die("%s: tensor '%s' has %d dimensions", init, name, t.ndim);
        ckpt_tensor *c = &ct[nt++];
        c->name = name, c->dtype = t.dtype, c->ndim = t.ndim, c->data = t.data;
        for (int d = 0; d < t.ndim; d++) c->shape[d] = t.shape[d];
        int k = cnn14t_find(m, name);
        if (k >= 0) c->data = (m->t[k].buffer ? m->buffers : m->params) + m->t[k].off;
    }
    ct[nt++] = (ckpt_tensor){"tag.fc_audioset.weight", ST_F32, 2, {tg->K, tg->E}, tg->hp};
    ct[nt++] = (ckpt_tensor){"tag.fc_audioset.bias", ST_F32, 1, {tg->K}, tg->hp + (size_t)tg->K * tg->E};
    int nm = st_meta_count(f), k = 0;
    const char **meta = xcalloc((size_t)(2 * nm + 10), sizeof *meta);
    for (int i = 0; i < nm; i++) {
        const char *key = st_meta_key(f, i);
        if (!strncmp(key, "tag.", 4)) continue;
        meta[2 * k] = key, meta[2 * k + 1] = st_meta(f, key), k++;
    }
    char *cj = classes_json(cls, tg->K), st[32];
    snprintf(st, sizeof st, "%ld", steps);
    meta[2 * k] = "tag.classes", meta[2 * k + 1] = cj, k++;
    meta[2 * k] = "tag.train.steps", meta[2 * k + 1] = st, k++;
    meta[2 * k] = "tag.train.init", meta[2 * k + 1] = init, k++;
    meta[2 * k] = "tag.train.labels", meta[2 * k + 1] = labels, k++;
    if (ckpt_write(out, ct, nt, meta, k, err, sizeof err)) die("%s: %s", out, err);
    free(cj), free(ct), free(meta);
    st_close(f);
}

/* the first step's gradients, every trained tensor under its name (--save-grads) */
static void write_grads(const char *out, const tagger *tg) {
    const cnn14t *m = tg->m;
    ckpt_tensor *ct = xcalloc((size_t)m->ntensors + 2, sizeof *ct);
    int n = 0;
    for (int i = 0; i < m->ntensors; i++) {
        if (m->t[i].buffer || i == tg->p2w || i == tg->p2b) continue;
        ckpt_tensor *c = &ct[n++];
        c->name = m->t[i].name, c->dtype = ST_F32, c->ndim = m->t[i].ndim, c->data = m->grads + m->t[i].off;
        for (int d = 0; d < c->ndim; d++) c->shape[d] = m->t[i].shape[d];
    }
    ct[n++] = (ckpt_tensor){"tag.fc_audioset.weight", ST_F32, 2, {tg->K, tg->E}, tg->hg};
    ct[n++] = (ckpt_tensor){"tag.fc_audioset.bias", ST_F32, 1, {tg->K}, tg->hg + (size_t)tg->K * tg->E};
    char err[700];
    if (ckpt_write(out, ct, n, NULL, 0, err, sizeof err)) die("%s: %s", out, err);
    free(ct);
}

/* validation in eval mode (each clip alone at its own length, as clap-audio): mAP and mean AUC */
static void validate(tagger *tg, const tclip *c, int n, double *map, double *auc, int *nap, int *nauc, double *per) {
    int K = tg->K;
    float *s = xmalloc((size_t)n * K * sizeof(float)), *y = xmalloc((size_t)n * K * sizeof(float));
    float *e = xmalloc((size_t)tg->E * sizeof(float));
    for (int i = 0; i < n; i++) {
        cnn14t_forward_eval(tg->m, e, c[i].mel, 1, c[i].T);
        head_forward(tg, s + (size_t)i * K, tg->m->hid, 1);
        for (int k = 0; k < K; k++) s[(size_t)i * K + k] = sigmoidf_(s[(size_t)i * K + k]);
        memcpy(y + (size_t)i * K, c[i].y, (size_t)K * sizeof(float));
    }
    *map = tag_map(s, y, n, K, nap, per);
    *auc = tag_auc(s, y, n, K, nauc);
    free(s), free(y), free(e);
}

static void free_clips(tclip *c, int n) {
    for (int i = 0; i < n; i++) free(c[i].key), free(c[i].mel), free(c[i].y);
    free(c);
}

int tag_train_run(const tag_train_opts *o) {
    char err[700];
    gemm_init(o->threads);
    tagger tgv = {0}, *tg = &tgv;
    if (!(tg->m = cnn14t_load(o->init, err, sizeof err))) die("%s", err);
    cnn14t *m = tg->m;
    if (!o->augment) m->dropout = 0, m->specaug = 0;
    int M = m->n_mels, E = m->embed, N = m->nblocks;
    tg->E = E;
    tg->p2w = cnn14t_find(m, "audio_proj.2.weight"), tg->p2b = cnn14t_find(m, "audio_proj.2.bias");
    if (tg->p2w < 0 || tg->p2b < 0) die("%s: no audio_proj.2", o->init);
    /* the parameters trained: everything before audio_proj.2 (the table's order: cnn14_train.c) */
    size_t ntrain = m->t[tg->p2w].off;
    if (m->t[tg->p2b].off < ntrain) die("cnn14t: audio_proj.2 is not last in the parameter block");

    long problems = 0;
    lfile L;
    read_labels(&L, o->labels, &problems);
    int nclips = 0;
    tclip *clips = read_mels(o->mel, M, &nclips);

    /* the classes: --classes, or the sorted set of the training clips' labels */
    char **cls = NULL;
    int K = 0;
    if (o->classes) {
        int fd = open(o->classes, O_RDONLY | O_CLOEXEC);
        if (fd < 0) die("%s: %s", o->classes, strerror(errno));
        cls = tag_classes_read_fd(fd, o->classes, &K, err, sizeof err);
        close(fd);
        if (!cls) die("%s", err);
    } else {
        for (int i = 0; i < nclips; i++) {
            const lentry *e = find_entry(&L, clips[i].key);
            for (; e && e < L.e + L.n && !strcmp(e->key, clips[i].key); e++)
                for (int j = 0; j < e->n; j++) cls = xrealloc(cls, (size_t)(K + 1) * sizeof *cls), cls[K++] = xstrdup(e->lab[j]);
        }
    }
    K = classes_unique(cls, K);
    if (!K) die("%s: no labels for the clips of %s", o->labels, o->mel);
    tg->K = K;
    problems += match(clips, &nclips, &L, o->mel, o->labels, cls, K);
    tag_labels_free(&L);
    if (nclips < o->bs) die("%d labelled clips, fewer than one batch of %d", nclips, o->bs);
    int frames = o->frames;
    if (!frames)
        for (int i = 0; i < nclips; i++) frames = clips[i].T > frames ? clips[i].T : frames;
    if (frames < (1 << N)) die("%d frames are too few for %d ConvBlocks (--frames)", frames, N);

    tclip *vclips = NULL;
    int nv = 0;
    if (o->val) {
        char *v = xstrdup(o->val), *comma = strchr(v, ',');
        if (comma) *comma = 0;
        const char *vl = comma ? comma + 1 : o->labels;
        lfile VL;
        read_labels(&VL, vl, &problems);
        vclips = read_mels(v, M, &nv);
        problems += match(vclips, &nv, &VL, v, vl, cls, K);
        tag_labels_free(&VL);
        for (int i = 0; i < nv; i++)
            if (vclips[i].T < (1 << N)) die("%s: key '%s': %d frames, fewer than %d", v, vclips[i].key, vclips[i].T, 1 << N);
        if (!nv) die("%s: no labelled validation clips", v);
        free(v);
    }

    /* the head: the input file's, when it was made for these classes; else PANNs'
     * init_layer(fc_audioset): xavier_uniform_ weight, zero bias (models.py) */
    tg->nh = (size_t)K * E + K;
    tg->hp = xcalloc(tg->nh, sizeof(float)), tg->hg = xcalloc(tg->nh, sizeof(float));
    tg->hm = xcalloc(tg->nh, sizeof(float)), tg->hv = xcalloc(tg->nh, sizeof(float));
    {
        st_file *f = st_open(o->init, err, sizeof err);
        if (!f) die("%s", err);
        int Kf = 0, same = 0;
        char **fc = file_classes(f, &Kf);
        if (fc && Kf == K) {
            same = 1;
            for (int k = 0; k < K && same; k++) same = !strcmp(fc[k], cls[k]);
        }
        for (int k = 0; fc && k < Kf; k++) free(fc[k]);
        free(fc);
        const float *w = NULL, *b = NULL;
        if (same) {
            int64_t sw[2] = {K, E}, sb[1] = {K};
            w = st_get_f32(f, "tag.fc_audioset.weight", 2, sw, err, sizeof err);
            b = w ? st_get_f32(f, "tag.fc_audioset.bias", 1, sb, err, sizeof err) : NULL;
            if (!w || !b) die("%s: tag.classes names the classes, but %s", o->init, err);
            memcpy(tg->hp, w, (size_t)K * E * sizeof(float));
            memcpy(tg->hp + (size_t)K * E, b, (size_t)K * sizeof(float));
            if (!tool_quiet) infox("the head of %s continued (%d classes)", o->init, K);
        } else {
            xrng r;
            xrng_seed(&r, mix((uint64_t)o->seed) ^ mix(0x6663617564ULL)); /* "fcaud" */
            double a = sqrt(6.0 / (double)(K + E));
            for (size_t i = 0; i < (size_t)K * E; i++) tg->hp[i] = (float)((2 * xrng_uniform(&r) - 1) * a);
        }
        st_close(f);
    }

    float *am = xcalloc(ntrain, sizeof(float)), *av = xcalloc(ntrain, sizeof(float));
    int B = o->bs, nb = nclips / B;
    float *mel = xmalloc((size_t)B * frames * M * sizeof(float)), *e = xmalloc((size_t)B * E * sizeof(float));
    float *z = xmalloc((size_t)B * K * sizeof(float)), *dz = xmalloc((size_t)B * K * sizeof(float));
    float *dh = xmalloc((size_t)B * E * sizeof(float));
    int *perm = xmalloc((size_t)nclips * sizeof(int));
    uint64_t *keys = xmalloc((size_t)B * sizeof(uint64_t));
    FILE *logf = NULL;
    if (o->log) {
        if (!(logf = fopen(o->log, "w"))) die("cannot create %s: %m", o->log);
        fprintf(logf, "step\tepoch\tbatch\tloss\tlr\tseconds\n");
    }
    if (!tool_quiet)
        infox("%d clips, %d classes, %d batches of %d an epoch, %d epochs, %d frames a clip%s", nclips, K, nb, B,
              o->epochs, frames, nv ? "" : ", no validation");
    long step = 0;
    int stopped = 0;
    double t0 = now_seconds(), last = NAN, vmap = NAN, vauc = NAN;
    for (int ep = 0; ep < o->epochs && !stopped && (!o->max_steps || step < o->max_steps); ep++) {
        for (int i = 0; i < nclips; i++) perm[i] = i;
        if (o->shuffle) {
            xrng r;
            xrng_seed(&r, mix((uint64_t)o->seed) ^ mix((uint64_t)ep + 1));
            xrng_permutation(&r, perm, nclips);
        }
        double esum = 0;
        int b;
        for (b = 0; b < nb && (!o->max_steps || step < o->max_steps); b++) {
            for (int j = 0; j < B; j++) {
                const tclip *cl = &clips[perm[b * B + j]];
                uint64_t key = mix(mix((uint64_t)o->seed) ^ mix(((uint64_t)ep << 32) | (uint64_t)perm[b * B + j]));
                keys[j] = key;
                float *dst = mel + (size_t)j * frames * M;
                /* as clap-train: a longer clip cropped at a random start (the first
                 * frames with --no-augment), a shorter one padded with -100 dB */
                int T = cl->T < frames ? cl->T : frames, c0 = 0;
                if (cl->T > frames && o->augment) c0 = (int)(mix(key ^ 0x63726f70ULL) % (uint64_t)(cl->T - frames + 1));
                memcpy(dst, cl->mel + (size_t)c0 * M, (size_t)T * M * sizeof(float));
                for (size_t q = (size_t)T * M; q < (size_t)frames * M; q++) dst[q] = -100.0f; /* log10(1e-10) dB */
                memcpy(dz + (size_t)j * K, cl->y, (size_t)K * sizeof(float)); /* the targets, for now */
            }
            double lr = o->lr;
            if (o->warmup > 0) {
                double f = (ep + (double)b / nb) / o->warmup;
                lr *= f < 1 ? f : 1;
            }
            cnn14t_forward_train(m, e, mel, B, frames, o->augment ? keys : NULL);
            const float *h = m->hid; /* [B, E]: relu(audio_proj.0(feat)), PANNs' relu(fc1(x)) */
            head_forward(tg, z, h, B);
            /* F.binary_cross_entropy(sigmoid(z), y), mean over B K; torch clamps each log at -100.
             * Its gradient through the sigmoid: (p - y) / (B K) */
            double loss = 0;
            float inv = 1.0f / (float)((size_t)B * K);
            for (size_t i = 0; i < (size_t)B * K; i++) {
                float p = sigmoidf_(z[i]), y = dz[i];
                double lp = p > 0 ? log((double)p) : -INFINITY, lq = p < 1 ? log(1.0 - (double)p) : -INFINITY;
                if (lp < -100) lp = -100;
                if (lq < -100) lq = -100;
                loss -= y * lp + (1 - y) * lq;
                dz[i] = (p - y) * inv;
            }
            loss /= (double)B * K;
            if (!isfinite(loss)) die("step %ld: the loss is not finite (%g)", step + 1, loss);
            linear_backward(dh, tg->hg, tg->hg + (size_t)K * E, dz, h, tg->hp, B, E, K);
            cnn14t_backward_hidden(tg->m, dh); /* the gradient at h = relu(audio_proj.0(feat)) */
            if (o->save_grads && step == 0) write_grads(o->save_grads, tg);
            adamw_torch_step(m->params, m->grads, am, av, ntrain, step + 1, lr, o->b1, o->b2, o->eps, o->wd);
            adamw_torch_step(tg->hp, tg->hg, tg->hm, tg->hv, tg->nh, step + 1, lr, o->b1, o->b2, o->eps, o->wd);
            step++, last = loss, esum += loss;
            if (logf) {
                fprintf(logf, "%ld\t%d\t%d\t%.9g\t%.9g\t%.3f\n", step, ep + 1, b + 1, loss, lr, now_seconds() - t0);
                fflush(logf);
            }
            if (tool_verbose > 1) infox("step %ld (epoch %d, batch %d/%d): loss %.6f", step, ep + 1, b + 1, nb, loss);
            if (o->stop && *o->stop) {
                stopped = 1;
                b++;
                break;
            }
        }
        if (!tool_quiet && b) infox("epoch %d: mean loss %.6f over %d steps", ep + 1, esum / b, b);
        if (nv && b >= nb) {
            int nap, nauc;
            double *per = xmalloc((size_t)K * sizeof(double));
            validate(tg, vclips, nv, &vmap, &vauc, &nap, &nauc, per);
            for (int k = 0; k < K && tool_verbose; k++) {
                int pos = 0;
                for (int i = 0; i < nv; i++) pos += vclips[i].y[k] > 0;
                infox("epoch %d: class %s: AP %.4f (%d of %d clips)", ep + 1, cls[k], per[k], pos, nv);
            }
            free(per);
            if (!tool_quiet)
                infox("epoch %d: validation mAP %.4f (%d classes), mean AUC %.4f (%d classes), %d clips", ep + 1, vmap,
                      nap, vauc, nauc, nv);
            if (logf) fprintf(logf, "# epoch %d\tval_map\t%.6f\tval_auc\t%.6f\n", ep + 1, vmap, vauc), fflush(logf);
        }
    }
    if (logf && fclose(logf)) die("%s: write failed", o->log);
    write_model(o->out, o->init, tg, cls, step, o->labels);
    if (stopped) warnx_("stopped by a signal after step %ld; the model so far written to %s", step, o->out);
    else if (!tool_quiet) {
        char vs[120] = "";
        if (nv) snprintf(vs, sizeof vs, ", validation mAP %.4f, mean AUC %.4f", vmap, vauc);
        infox("%ld steps, %d clips, %d classes, last loss %.6f%s; model written to %s", step, nclips, K, last, vs, o->out);
    }
    if (problems) warnx_("%ld problems with the keys or labels (named above)", problems);

    free_clips(clips, nclips);
    free_clips(vclips, nv);
    for (int k = 0; k < K; k++) free(cls[k]);
    free(cls), free(am), free(av), free(mel), free(e), free(z), free(dz), free(dh), free(perm), free(keys);
    free(tg->hp), free(tg->hg), free(tg->hm), free(tg->hv);
    cnn14t_free(m);
    return stopped ? EXIT_FATAL : problems ? EXIT_PARTIAL : EXIT_OK;
}
