/* captions.c - keyed captions from lines, Clotho/AudioCaps CSV or csv2json lists (see captions.h). */
#define _POSIX_C_SOURCE 200809L
#include "captions.h"

#include <csv.h>
#include <errno.h>
#include <jansson.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lines.h"
#include "util.h"

typedef struct {
    char *s;
    size_t len;
} field;

typedef struct {
    field *f;
    int n;
    long line;
    char err[160]; /* a row error found while framing it */
} row;

struct cap_reader {
    int fd, mode, fmt;
    const char *name;
    size_t max_record;
    char errbuf[400];
    int failed; /* a fatal error was returned */
    /* lines */
    line_reader lr;
    /* CSV: libcsv is given every chunk as soon as it is read */
    struct csv_parser csv;
    char *buf;       /* the read(2) buffer */
    size_t cap;
    int eof, fini, started;
    int bom_have;    /* bytes of a byte order mark seen before the first row */
    long cur_line;   /* line of the next byte given to libcsv */
    int in_row;      /* libcsv is inside a row */
    long row_line;   /* where that row started */
    size_t row_bytes;
    int skip_line;   /* dropping the rest of an over-long row's line */
    field *cur;      /* fields of the row being parsed */
    int ncur, capcur;
    row *rows;       /* complete rows, a queue */
    int nrows, caprows, headrow;
    /* CSV header: column indices */
    int ncols, col_id, ncap, *col_cap;
    int have_header;
    /* records of the current row still to hand out */
    row pending;
    int next_cap;
    /* JSON: the list, parsed once the input is in */
    json_t *json;
    size_t jnext;
    int keep_header;
};

void caption_free(caption *c) {
    free(c->key);
    free(c->text);
    free(c->id);
    memset(c, 0, sizeof *c);
}

static void row_free(row *r) {
    for (int i = 0; i < r->n; i++) free(r->f[i].s);
    free(r->f);
    memset(r, 0, sizeof *r);
}

static int no_space(unsigned char c) {
    (void)c;
    return 0;
}

/* Python's csv defaults: not strict (a quote inside an unquoted field is a
 * literal) and no trimming (libcsv trims spaces and tabs unless told). */
static void csv_start(cap_reader *r) {
    if (csv_init(&r->csv, 0) != 0) die("out of memory");
    csv_set_space_func(&r->csv, no_space);
}

cap_reader *cap_open(int fd, const char *name, int mode, size_t max_record) {
    cap_reader *r = xcalloc(1, sizeof *r);
    r->fd = fd;
    r->name = name;
    r->mode = mode;
    r->max_record = max_record;
    r->fmt = mode == CAP_LINES ? CAP_FMT_LINES : mode == CAP_JSON ? CAP_FMT_JSON : -1;
    if (mode == CAP_LINES) {
        lr_init(&r->lr, fd, max_record);
    } else if (mode == CAP_CSV) {
        csv_start(r);
        r->cap = 1 << 16;
        r->buf = xmalloc(r->cap);
        r->cur_line = 1;
    }
    return r;
}

void cap_close(cap_reader *r) {
    if (!r) return;
    if (r->mode == CAP_LINES) {
        lr_free(&r->lr);
    } else if (r->mode == CAP_JSON) {
        if (r->json) json_decref(r->json);
    } else {
        csv_free(&r->csv);
        free(r->buf);
        for (int i = 0; i < r->ncur; i++) free(r->cur[i].s);
        free(r->cur);
        for (int i = r->headrow; i < r->nrows; i++) row_free(&r->rows[i]);
        free(r->rows);
        row_free(&r->pending);
        free(r->col_cap);
    }
    free(r);
}

const char *cap_error(const cap_reader *r) { return r->errbuf; }
void cap_keep_header(cap_reader *r, int keep) { r->keep_header = keep; }
int cap_format(const cap_reader *r) { return r->fmt; }
int cap_per_row(const cap_reader *r) { return r->fmt == CAP_FMT_CLOTHO ? r->ncap : 1; }

const char *cap_format_name(int fmt) {
    switch (fmt) {
    case CAP_FMT_LINES: return "lines";
    case CAP_FMT_CLOTHO: return "clotho";
    case CAP_FMT_AUDIOCAPS: return "audiocaps";
    case CAP_FMT_JSON: return "json";
    default: return "unknown";
    }
}

static int fatal(cap_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fatal(cap_reader *r, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errbuf, sizeof r->errbuf, fmt, ap);
    va_end(ap);
    r->failed = 1;
    return CAP_ERROR;
}

static char *dup_n(const char *s, size_t n) {
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static void line_key(caption *c, long line) {
    char k[32];
    snprintf(k, sizeof k, "line %ld", line);
    free(c->key);
    c->key = xstrdup(k);
}

/* Fill c from key and text; checks both (an unusable key names the record by line). */
static void make_record(caption *c, const char *key, size_t klen, const char *text, size_t tlen, long line,
                        const char *id, size_t idlen, int index) {
    memset(c, 0, sizeof *c);
    c->line = line;
    c->index = index;
    if (klen == 0 || memchr(key, 0, klen) || !utf8_valid(key, klen)) {
        line_key(c, line);
        snprintf(c->err, sizeof c->err, "%s",
                 klen == 0 ? "empty key" : memchr(key, 0, klen) ? "key contains a NUL byte" : "key is not valid UTF-8");
        return;
    }
    c->key = dup_n(key, klen);
    c->id = dup_n(id, idlen);
    c->text = dup_n(text, tlen);
    c->len = tlen;
    if (memchr(text, 0, tlen)) snprintf(c->err, sizeof c->err, "caption contains a NUL byte");
    else if (!utf8_valid(text, tlen)) snprintf(c->err, sizeof c->err, "caption is not valid UTF-8");
}

static void row_error(caption *c, long line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void row_error(caption *c, long line, const char *fmt, ...) {
    memset(c, 0, sizeof *c);
    c->line = line;
    line_key(c, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

static int skip_bom(char **s, size_t *n) {
    if (*n >= 3 && !memcmp(*s, "\xEF\xBB\xBF", 3)) {
        *s += 3;
        *n -= 3;
        return 1;
    }
    return 0;
}

/* ------------------------------------------------------------------ lines */

static int next_line(cap_reader *r, caption *c) {
    for (;;) {
        char *line;
        size_t len;
        int k = lr_next(&r->lr, &line, &len);
        if (k == LR_EOF) return CAP_EOF;
        if (k == LR_ERROR) return fatal(r, "%s: %s", r->name, strerror(errno));
        long ln = r->lr.lineno;
        if (k == LR_TOO_LONG) {
            row_error(c, ln, "line longer than %zu bytes: skipped", r->max_record);
            return CAP_RECORD;
        }
        if (ln == 1) skip_bom(&line, &len);
        if (len == 0) continue;
        char *tab = memchr(line, '\t', len);
        if (tab) {
            size_t klen = (size_t)(tab - line);
            make_record(c, line, klen, tab + 1, len - klen - 1, ln, line, klen, 0);
        } else {
            char key[32];
            int kn = snprintf(key, sizeof key, "%ld", ln);
            make_record(c, key, (size_t)kn, line, len, ln, key, (size_t)kn, 0);
        }
        return CAP_RECORD;
    }
}

/* ------------------------------------------------------------------ CSV */

static void on_field(void *s, size_t len, void *data) {
    cap_reader *r = data;
    if (!r->in_row) { /* a row begun after a CR in the middle of a line */
        r->in_row = 1;
        r->row_line = r->cur_line;
        r->row_bytes = 0;
    }
    if (r->ncur == r->capcur) {
        r->capcur = r->capcur ? 2 * r->capcur : 8;
        r->cur = xrealloc(r->cur, (size_t)r->capcur * sizeof(field));
    }
    r->cur[r->ncur].s = dup_n(s ? s : "", len);
    r->cur[r->ncur].len = len;
    r->ncur++;
}

static void push_row(cap_reader *r, const char *err) {
    if (r->nrows == r->caprows) {
        if (r->headrow > 0) { /* drop the rows already handed out */
            memmove(r->rows, r->rows + r->headrow, (size_t)(r->nrows - r->headrow) * sizeof(row));
            r->nrows -= r->headrow;
            r->headrow = 0;
        }
        if (r->nrows == r->caprows) {
            r->caprows = r->caprows ? 2 * r->caprows : 16;
            r->rows = xrealloc(r->rows, (size_t)r->caprows * sizeof(row));
        }
    }
    row *w = &r->rows[r->nrows++];
    memset(w, 0, sizeof *w);
    w->f = r->cur;
    w->n = r->ncur;
    w->line = r->row_line;
    if (err) snprintf(w->err, sizeof w->err, "%s", err);
    r->cur = NULL;
    r->ncur = r->capcur = 0;
    r->in_row = 0;
}

static void on_row(int c, void *data) {
    cap_reader *r = data;
    (void)c;
    if (!r->in_row) {
        r->in_row = 1;
        r->row_line = r->cur_line;
    }
    push_row(r, NULL);
}

/* Give bytes to libcsv one line at a time, to know each row's first line. */
static void feed(cap_reader *r, const char *s, size_t n) {
    while (n > 0) {
        /* a piece ends after a \n, or after a \r, where libcsv may end a row
         * too: so a row's length is counted the same however read(2) split
         * the input */
        size_t k = 0;
        while (k < n && s[k] != '\n' && s[k] != '\r') k++;
        int nl = k < n && s[k] == '\n';
        if (k < n) k++;
        if (r->skip_line) {
            if (nl) {
                r->skip_line = 0;
                r->cur_line++;
            }
            s += k;
            n -= k;
            continue;
        }
        if (!r->in_row) {
            /* libcsv starts a row at the first byte that is not CR or LF */
            for (size_t i = 0; i < k; i++)
                if (s[i] != '\r' && s[i] != '\n') {
                    r->in_row = 1;
                    r->row_line = r->cur_line;
                    r->row_bytes = 0;
                    break;
                }
        }
        if (r->in_row) r->row_bytes += k;
        if (r->in_row && r->row_bytes > r->max_record) {
            /* drop the row and start afresh at the next line (an unbalanced quote, most likely) */
            char msg[120];
            snprintf(msg, sizeof msg, "row longer than %zu bytes (an unbalanced quote?): skipped to the next line",
                     r->max_record);
            push_row(r, msg);
            csv_free(&r->csv);
            csv_start(r);
            r->skip_line = !nl;
            if (nl) r->cur_line++;
            s += k;
            n -= k;
            continue;
        }
        if (csv_parse(&r->csv, s, k, on_field, on_row, r) != k) die("CSV parser: %s", csv_strerror(csv_error(&r->csv)));
        if (nl) r->cur_line++;
        s += k;
        n -= k;
    }
}

/* Read more input into libcsv: 1 if something was read, 0 at the end, -1 on error. */
static int fill(cap_reader *r) {
    ssize_t k;
    do k = read(r->fd, r->buf, r->cap);
    while (k < 0 && errno == EINTR);
    if (k < 0) return -1;
    static const char bom[] = "\xEF\xBB\xBF";
    if (k == 0) {
        r->eof = 1;
        if (!r->started) { /* the input was the start of a BOM: it is data */
            r->started = 1;
            if (r->bom_have) feed(r, bom, (size_t)r->bom_have);
        }
        if (!r->fini) {
            r->fini = 1;
            /* a quoted field still open (libcsv 3's public state: pstate 2 is
             * FIELD_BEGUN); csv_fini would make it a field (CSV_STRICT_FINI
             * only works in strict mode) */
            if (r->in_row && r->csv.quoted && r->csv.pstate == 2)
                push_row(r, "unterminated quoted field at the end of the input");
            else
                csv_fini(&r->csv, on_field, on_row, r);
        }
        return 0;
    }
    char *s = r->buf;
    size_t n = (size_t)k;
    /* a byte order mark, even when it comes over several reads */
    while (!r->started && n > 0) {
        if (*s == bom[r->bom_have]) {
            s++;
            n--;
            if (++r->bom_have == 3) r->started = 1;
        } else {
            r->started = 1;
            if (r->bom_have) feed(r, bom, (size_t)r->bom_have); /* not a BOM after all */
        }
    }
    feed(r, s, n);
    return 1;
}

static int find_col(const row *h, const char *name) {
    for (int i = 0; i < h->n; i++)
        if (h->f[i].len == strlen(name) && !memcmp(h->f[i].s, name, h->f[i].len)) return i;
    return -1;
}

static int header(cap_reader *r, row *h) {
    r->ncols = h->n;
    if (h->err[0]) return fatal(r, "%s: line %ld: CSV header: %s", r->name, h->line, h->err);
    if ((r->col_id = find_col(h, "file_name")) >= 0 && find_col(h, "caption_1") >= 0) {
        r->fmt = CAP_FMT_CLOTHO;
        r->col_cap = xmalloc((size_t)h->n * sizeof(int));
        for (r->ncap = 0;; r->ncap++) {
            char name[32];
            snprintf(name, sizeof name, "caption_%d", r->ncap + 1);
            int c = find_col(h, name);
            if (c < 0) break;
            r->col_cap[r->ncap] = c;
        }
        return 0;
    }
    if ((r->col_id = find_col(h, "audiocap_id")) >= 0 && find_col(h, "caption") >= 0) {
        r->fmt = CAP_FMT_AUDIOCAPS;
        r->ncap = 1;
        r->col_cap = xmalloc(sizeof(int));
        r->col_cap[0] = find_col(h, "caption");
        return 0;
    }
    /* show the header as read, shortened, for the message */
    char shown[120];
    size_t o = 0;
    for (int i = 0; i < h->n && o < sizeof shown - 1; i++) {
        int k = snprintf(shown + o, sizeof shown - o, "%s%.*s", i ? "," : "", (int)h->f[i].len, h->f[i].s);
        o += k > 0 ? (size_t)k : 0;
    }
    if (o >= sizeof shown - 1) strcpy(shown + sizeof shown - 4, "...");
    return fatal(r,
                 "%s: line %ld: CSV header '%s' is neither Clotho (file_name,caption_1,...,caption_N) nor AudioCaps "
                 "(audiocap_id,youtube_id,start_time,caption)",
                 r->name, h->line, utf8_valid(shown, strlen(shown)) ? shown : "(not UTF-8)");
}

/* The next complete row, reading as needed: 1, 0 at the end, CAP_ERROR. */
static int next_row(cap_reader *r, row *out) {
    while (r->headrow == r->nrows) {
        if (r->eof) return 0;
        if (fill(r) < 0) return fatal(r, "%s: %s", r->name, strerror(errno));
    }
    *out = r->rows[r->headrow++];
    if (r->headrow == r->nrows) r->headrow = r->nrows = 0;
    return 1;
}

static int next_csv(cap_reader *r, caption *c) {
    for (;;) {
        row *p = &r->pending;
        if (p->f && r->next_cap < r->ncap) {
            int k = r->next_cap++;
            const field *id = &p->f[r->col_id], *t = &p->f[r->col_cap[k]];
            if (r->fmt == CAP_FMT_CLOTHO) {
                size_t kl = id->len + 16;
                char *key = xmalloc(kl);
                int n = snprintf(key, kl, "%.*s#%d", (int)id->len, id->s, k + 1);
                make_record(c, key, id->len ? (size_t)n : 0, t->s, t->len, p->line, id->s, id->len, k + 1);
                free(key);
            } else {
                make_record(c, id->s, id->len, t->s, t->len, p->line, id->s, id->len, 0);
            }
            return CAP_RECORD;
        }
        row_free(p);
        r->next_cap = 0;
        int k = next_row(r, p);
        if (k <= 0) return k;
        if (!r->have_header) {
            r->have_header = 1;
            int h = header(r, p);
            row_free(p);
            if (h) return h;
            continue;
        }
        if (p->err[0] || p->n != r->ncols) {
            if (p->err[0]) row_error(c, p->line, "%s", p->err);
            else
                row_error(c, p->line, "CSV row has %d field%s, the header has %d", p->n, p->n == 1 ? "" : "s",
                          r->ncols);
            row_free(p);
            return CAP_RECORD;
        }
        /* a row without a usable id fails once, not once per caption */
        const field *id = &p->f[r->col_id];
        const char *col = r->fmt == CAP_FMT_CLOTHO ? "file_name" : "audiocap_id";
        if (id->len == 0 || memchr(id->s, 0, id->len) || !utf8_valid(id->s, id->len)) {
            if (id->len == 0) row_error(c, p->line, "empty %s", col);
            else
                row_error(c, p->line, "%s %s", col,
                          memchr(id->s, 0, id->len) ? "holds a NUL byte" : "is not valid UTF-8");
            row_free(p);
            return CAP_RECORD;
        }
    }
}

/* ------------------------------------------------------------------ JSON */

/* What data/csv2json.py copies from a header row: row[1:] of Clotho's
 * file_name,caption_1..caption_5, row[1] of AudioCaps' audiocap_id,
 * youtube_id,... (or of WavCaps' file_name,caption). */
int cap_is_header_string(const char *s, size_t len) {
    if ((len == 7 && !memcmp(s, "caption", 7)) || (len == 10 && !memcmp(s, "youtube_id", 10))) return 1;
    if (len < 9 || len > 12 || memcmp(s, "caption_", 8) || s[8] == '0') return 0;
    for (size_t i = 8; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return 0;
    return 1;
}

#define JSON_MAX ((size_t)1 << 30)

static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "a list";
    case JSON_STRING: return "a string";
    case JSON_INTEGER:
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}

/* Read the whole input and parse it: 0, or CAP_ERROR. */
static int json_load(cap_reader *r) {
    size_t n = 0, cap = 1 << 16;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) {
            if (cap >= JSON_MAX) {
                free(buf);
                return fatal(r, "%s: a JSON caption list larger than %zu MiB", r->name, JSON_MAX >> 20);
            }
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t k = read(r->fd, buf + n, cap - n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            return fatal(r, "%s: %s", r->name, strerror(e));
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    char *s = buf;
    skip_bom(&s, &n);
    json_error_t je;
    /* \u0000 is allowed so that such a caption fails by itself */
    r->json = json_loadb(s, n, JSON_ALLOW_NUL, &je);
    free(buf);
    if (!r->json)
        return fatal(r, "%s: line %d, column %d: not valid JSON: %s", r->name, je.line, je.column, je.text);
    if (!json_is_array(r->json))
        return fatal(r, "%s: the JSON is %s, not a list of caption strings (csv2json.py's [\"caption\", ...])", r->name,
                     json_kind(r->json));
    json_t *first = json_array_get(r->json, 0);
    if (first && json_is_string(first) && !strcmp(json_string_value(first), "youtube_id"))
        return fatal(r,
                     "%s: the list starts with \"youtube_id\": csv2json.py made it from the official AudioCaps CSV "
                     "(audiocap_id,youtube_id,start_time,caption), whose column 1 is the YouTube id, so every entry "
                     "is an id, not a caption; read the CSV with --csv instead",
                     r->name);
    return 0;
}

static int next_json(cap_reader *r, caption *c) {
    if (!r->json && json_load(r)) return CAP_ERROR;
    size_t n = json_array_size(r->json);
    if (r->jnext >= n) return CAP_EOF;
    size_t i = r->jnext++;
    json_t *v = json_array_get(r->json, i);
    char key[32];
    int kn = snprintf(key, sizeof key, "%zu", i);
    long line = (long)i + 1;
    if (!json_is_string(v)) {
        memset(c, 0, sizeof *c);
        c->line = line;
        c->key = xstrdup(key);
        snprintf(c->err, sizeof c->err, "entry %zu is %s, not a caption string", i, json_kind(v));
        return CAP_RECORD;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    if (len > r->max_record) {
        memset(c, 0, sizeof *c);
        c->line = line;
        c->key = xstrdup(key);
        snprintf(c->err, sizeof c->err, "caption longer than %zu bytes: skipped", r->max_record);
        return CAP_RECORD;
    }
    make_record(c, key, (size_t)kn, s, len, line, key, (size_t)kn, 0);
    if (!c->err[0] && cap_is_header_string(s, len)) {
        c->header = 1;
        if (!r->keep_header)
            snprintf(c->err, sizeof c->err,
                     "\"%s\" is a CSV header string, not a caption (the published csv2json.py copies the header "
                     "row into its list): skipped",
                     s);
    }
    return CAP_RECORD;
}

int cap_next(cap_reader *r, caption *c) {
    memset(c, 0, sizeof *c);
    if (r->failed) return CAP_ERROR;
    if (r->mode == CAP_JSON) return next_json(r, c);
    return r->mode == CAP_LINES ? next_line(r, c) : next_csv(r, c);
}

int cap_ready(cap_reader *r) {
    if (r->failed) return 1;
    if (r->mode == CAP_LINES) return lr_ready(&r->lr);
    if (r->mode == CAP_JSON) return 1; /* the whole list is read at the first cap_next */
    if ((r->pending.f && r->next_cap < r->ncap) || r->headrow < r->nrows || r->eof) return 1;
    struct pollfd p = {r->fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}
