/* fuzz_labels.c - tag-train's label reader (lib/tag_train.c: --labels, a
 * world events JSONL or KEY<TAB>label,label lines) and its class list
 * (--classes), on arbitrary bytes.
 *
 * The input is the labels file; if it holds a line "%%", what follows that
 * line is the --classes file, else the classes are the labels' own sorted
 * set (tag-train without --classes). Each file is read from a memfd twice,
 * in pieces (fuzz_common.h) and whole: both reads give the same entries, in
 * the same order, and the same count of problems. With stderr caught in a
 * memfd: every problem counted is named on a line of its own, and every
 * repeated key is named with its line. Every entry has a non-empty key (no
 * tab in a KEY<TAB>... key), a line number within the file, non-empty
 * labels trimmed of blanks and unique within the entry (no comma in a
 * KEY<TAB>... label); entries are sorted by key, then line; the entries plus
 * the problems other than repeats are the file's non-blank, non-comment
 * lines. A class list read either gives a reason or sorted, unique,
 * non-empty, trimmed names; every label's class index is in 0..K-1 and
 * names that label, or -1 and no class has that name. The allocation limit
 * (labels.options) catches an allocation out of proportion to the input. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "tag_train.h"
#include "util.h"

static int labels_init(void) {
    if (!tool_name || !*tool_name) tool_name = "fuzz";
    return 0;
}

static int labels_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* The warnings written while f runs, NUL-terminated (malloc'd). */
typedef struct {
    int saved, fd;
} labels_cap;
static void labels_catch(labels_cap *c) {
    fflush(stderr);
    c->saved = dup(2);
    c->fd = memfd_create("stderr", MFD_CLOEXEC);
    FZ_ASSERT(c->saved >= 0 && c->fd >= 0 && dup2(c->fd, 2) == 2);
}
static char *labels_release(labels_cap *c) {
    fflush(stderr);
    FZ_ASSERT(dup2(c->saved, 2) == 2);
    close(c->saved);
    off_t n = lseek(c->fd, 0, SEEK_END);
    FZ_ASSERT(n >= 0);
    char *s = malloc((size_t)n + 1);
    FZ_ASSERT(s);
    FZ_ASSERT(pread(c->fd, s, (size_t)n, 0) == n);
    s[n] = 0;
    close(c->fd);
    return s;
}

/* Reads data[0..n) as --labels, in pieces or whole; the warnings in *msgs. */
static void labels_read(tag_labels *L, long *bad, const uint8_t *data, size_t n, int chunked, char **msgs) {
    int fd = fz_memfd(data, n);
    if (chunked) fz_chunk_fd(fd, n);
    char err[700];
    err[0] = 0;
    *bad = 0;
    labels_cap c;
    labels_catch(&c);
    int r = tag_labels_read_fd(L, fd, "fuzz-labels", bad, err, sizeof err);
    *msgs = labels_release(&c);
    fz_chunk_off();
    close(fd);
    FZ_ASSERT(r == 0); /* a memfd is never a read error, and the input is far below 2 GiB */
    FZ_ASSERT(*bad >= 0 && L->n >= 0 && (L->n == 0 || L->e));
}

static char **labels_classes(const uint8_t *data, size_t n, int chunked, int *K) {
    int fd = fz_memfd(data, n);
    if (chunked) fz_chunk_fd(fd, n);
    char err[700];
    err[0] = 0;
    char **cls = tag_classes_read_fd(fd, "fuzz-classes", K, err, sizeof err);
    fz_chunk_off();
    close(fd);
    if (!cls) FZ_ASSERT(err[0] && strstr(err, "fuzz-classes") && *K == 0);
    return cls;
}

static size_t labels_count(const char *hay, const char *needle) {
    size_t k = 0, ln = strlen(needle);
    for (const char *p = hay; (p = strstr(p, needle)); p += ln) k++;
    return k;
}

static void labels_free_cls(char **cls, int K) {
    for (int k = 0; k < K; k++) free(cls[k]);
    free(cls);
}

static int labels_cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static void labels_one(const uint8_t *data, size_t size) {
    /* the labels, and the classes after a line "%%" */
    size_t ln = size;
    const uint8_t *cdata = NULL;
    size_t csize = 0;
    for (size_t i = 0; i + 2 <= size; i++)
        if ((i == 0 || data[i - 1] == '\n') && data[i] == '%' && data[i + 1] == '%' && (i + 2 == size || data[i + 2] == '\n')) {
            ln = i, cdata = data + i + 2 + (i + 2 < size), csize = size - (size_t)(cdata - data);
            break;
        }

    tag_labels A, B;
    long bada, badb;
    char *ma, *mb;
    labels_read(&A, &bada, data, ln, 1, &ma);
    labels_read(&B, &badb, data, ln, 0, &mb);
    FZ_ASSERT(A.n == B.n && bada == badb && strcmp(ma, mb) == 0);

    /* the mode, and the lines tag-train looks at, as the header describes them */
    size_t p0 = 0;
    while (p0 < ln && (data[p0] == ' ' || data[p0] == '\t' || data[p0] == '\r' || data[p0] == '\n')) p0++;
    int jsonl = p0 < ln && data[p0] == '{';
    long lines = 0, content = 0;
    for (size_t s = 0; s < ln;) {
        const uint8_t *nl = memchr(data + s, '\n', ln - s);
        size_t e = nl ? (size_t)(nl - data) : ln, l = e - s;
        if (l && data[s + l - 1] == '\r') l--;
        lines++;
        if (l && data[s] != '#') content++;
        s = e + 1;
    }

    long dups = 0;
    for (int i = 0; i < A.n; i++) {
        const tag_label_entry *a = &A.e[i], *b = &B.e[i];
        FZ_ASSERT(a->key && a->key[0] && !strcmp(a->key, b->key));
        FZ_ASSERT(a->line >= 1 && a->line <= lines && a->line == b->line && a->n == b->n && a->n >= 0);
        if (!jsonl) FZ_ASSERT(!strchr(a->key, '\t') && !strchr(a->key, '\n'));
        for (int j = 0; j < a->n; j++) {
            const char *s = a->lab[j];
            size_t l = strlen(s);
            FZ_ASSERT(l && !labels_blank(s[0]) && !labels_blank(s[l - 1]) && !strcmp(s, b->lab[j]));
            if (!jsonl) FZ_ASSERT(!strchr(s, ',') && !strchr(s, '\n'));
            for (int k = 0; k < j; k++) FZ_ASSERT(strcmp(s, a->lab[k]) != 0);
        }
        if (i) {
            int c = strcmp(A.e[i - 1].key, a->key);
            FZ_ASSERT(c < 0 || (c == 0 && A.e[i - 1].line < a->line));
            if (c == 0) {
                /* a repeat is named with its line and key (a key with "%" or a
                 * newline is still found: the message is printed with %s) */
                dups++;
                size_t need = strlen(a->key) + 64;
                char *want = malloc(need);
                FZ_ASSERT(want);
                snprintf(want, need, "line %ld: key '%s' again", a->line, a->key);
                FZ_ASSERT(strstr(ma, want));
                free(want);
            }
        }
    }
    /* every problem named: each warning starts "NAME: fuzz-labels: line N: " */
    FZ_ASSERT(bada >= dups);
    FZ_ASSERT((long)labels_count(ma, "fuzz-labels: line ") >= bada);
    /* every looked-at line is an entry or a problem, and no line is both */
    FZ_ASSERT(A.n + (bada - dups) == content);

    /* the class list: --classes, or the labels' sorted set */
    int K = 0, K2 = 0;
    char **cls;
    if (cdata) {
        cls = labels_classes(cdata, csize, 1, &K);
        char **cls2 = labels_classes(cdata, csize, 0, &K2);
        FZ_ASSERT((cls == NULL) == (cls2 == NULL) && K == K2);
        for (int k = 0; cls && k < K; k++) FZ_ASSERT(!strcmp(cls[k], cls2[k]));
        if (cls2) labels_free_cls(cls2, K2);
    } else {
        cls = malloc(sizeof *cls);
        FZ_ASSERT(cls);
        for (int i = 0; i < A.n; i++)
            for (int j = 0; j < A.e[i].n; j++) {
                cls = realloc(cls, (size_t)(K + 1) * sizeof *cls);
                FZ_ASSERT(cls);
                cls[K++] = strdup(A.e[i].lab[j]);
            }
        qsort(cls, (size_t)K, sizeof *cls, labels_cmp_str);
        int u = 0;
        for (int k = 0; k < K; k++)
            if (u && !strcmp(cls[k], cls[u - 1])) free(cls[k]);
            else cls[u++] = cls[k];
        K = u;
    }
    if (cls) {
        for (int k = 0; k < K; k++) {
            size_t l = strlen(cls[k]);
            FZ_ASSERT(l && !labels_blank(cls[k][0]) && !labels_blank(cls[k][l - 1]) && !strchr(cls[k], '\n'));
            if (cdata) FZ_ASSERT(cls[k][0] != '#');
            if (k) FZ_ASSERT(strcmp(cls[k - 1], cls[k]) < 0);
        }
        for (int i = 0; i < A.n; i++)
            for (int j = 0; j < A.e[i].n; j++) {
                const char *lab = A.e[i].lab[j];
                int k = tag_class_index(cls, K, lab);
                if (k >= 0) FZ_ASSERT(k < K && !strcmp(cls[k], lab));
                else
                    for (int m = 0; m < K; m++) FZ_ASSERT(strcmp(cls[m], lab) != 0);
                if (!cdata) FZ_ASSERT(k >= 0); /* the labels' own set has every label */
            }
        labels_free_cls(cls, K);
    }

    tag_labels_free(&A);
    tag_labels_free(&B);
    free(ma);
    free(mb);
}

FZ_ENTRY(labels)
