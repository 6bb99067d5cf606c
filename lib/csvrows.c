/* csvrows.c - see csvrows.h */
#include "csvrows.h"

#include <csv.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    csv_row_fn fn;
    void *ctx;
    char **fields;
    int nf, capf;
    long line, row_line; /* the line being fed; the first line of the current row */
    long rows;
    int fatal;
    char *err;
    size_t errlen;
} rows_ctx;

static void on_field(void *data, size_t len, void *ctx_) {
    rows_ctx *c = ctx_;
    if (c->nf == c->capf) {
        c->capf = c->capf ? 2 * c->capf : 16;
        c->fields = xrealloc(c->fields, (size_t)c->capf * sizeof(char *));
    }
    char *f = xmalloc(len + 1);
    if (len) memcpy(f, data, len);
    f[len] = 0;
    c->fields[c->nf++] = f;
}

static void on_row(int term, void *ctx_) {
    rows_ctx *c = ctx_;
    (void)term;
    long line = c->row_line ? c->row_line : c->line;
    c->row_line = 0;
    if (!c->fatal) {
        if (!c->rows++ && c->nf && !strncmp(c->fields[0], "\xEF\xBB\xBF", 3)) /* a BOM before the header */
            memmove(c->fields[0], c->fields[0] + 3, strlen(c->fields[0]) - 2);
        if (c->fn(c->ctx, c->fields, c->nf, line, c->err, c->errlen)) c->fatal = 1;
    }
    for (int i = 0; i < c->nf; i++) free(c->fields[i]);
    c->nf = 0;
}

static int no_space(unsigned char ch) {
    (void)ch;
    return 0; /* keep spaces around fields, as Python's csv does */
}

int csv_rows(const char *path, const char *buf, size_t len, csv_row_fn fn, void *ctx, char *err, size_t errlen) {
    struct csv_parser p;
    if (csv_init(&p, CSV_APPEND_NULL)) {
        snprintf(err, errlen, "cannot initialise the CSV parser");
        return -1;
    }
    csv_set_space_func(&p, no_space);
    rows_ctx c = {.fn = fn, .ctx = ctx, .err = err, .errlen = errlen};
    size_t i = 0;
    /* fed line by line, so a row is named by the line it starts on */
    while (i < len && !c.fatal) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t n = nl ? (size_t)(nl - (buf + i)) + 1 : len - i;
        c.line++;
        int blank = 1;
        for (size_t k = 0; k < n && blank; k++) blank = buf[i + k] == '\n' || buf[i + k] == '\r';
        if (!blank && !c.row_line) c.row_line = c.line;
        if (csv_parse(&p, buf + i, n, on_field, on_row, &c) != n) {
            snprintf(err, errlen, "%s: line %ld: %s", path, c.line, csv_strerror(csv_error(&p)));
            c.fatal = 1;
        }
        i += n;
    }
    if (!c.fatal) csv_fini(&p, on_field, on_row, &c);
    csv_free(&p);
    for (int k = 0; k < c.nf; k++) free(c.fields[k]);
    free(c.fields);
    if (!c.fatal && !c.rows) {
        snprintf(err, errlen, "%s: empty file", path);
        c.fatal = 1;
    }
    return c.fatal ? -1 : 0;
}
