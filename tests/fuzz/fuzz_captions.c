/* fuzz_captions.c - the caption reader (lib/captions.h, lib/lines.c) on
 * arbitrary bytes, as KEY<TAB>CAPTION lines, as Clotho/AudioCaps CSV and as
 * csv2json's JSON caption lists (clap-text's default, --csv and --json
 * input; JSON also with --keep-header).
 *
 * The input is the file. It is read from a memfd in both modes, twice: in
 * pieces (see fuzz_common.h) and whole; both reads must give the same
 * records. cap_ready() is polled before each record as clap-text does, and
 * odd input lengths get a small max_record (64) so the over-long line and
 * row paths run; no record longer than max_record comes out. Every record has a key; one that did not
 * fail has a valid UTF-8 key without NUL and a valid UTF-8 caption of
 * exactly len bytes without NUL; line numbers never go backwards; a fatal
 * error says why and stays fatal. JSON: entry i is keyed "i" (line i + 1),
 * header strings are marked, and fail unless kept. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "captions.h"
#include "util.h"

static int captions_init(void) { return 0; }

/* One record, flattened, to compare two reads of the same input. */
static void captions_digest(char **buf, size_t *len, size_t *cap, const caption *c) {
    size_t need = strlen(c->key) + (c->text ? c->len : 0) + (c->id ? strlen(c->id) : 0) + strlen(c->err) + 64;
    if (*len + need > *cap) {
        *cap = 2 * (*len + need);
        *buf = realloc(*buf, *cap);
        FZ_ASSERT(*buf);
    }
    int k = snprintf(*buf + *len, *cap - *len, "%ld|%d|%s|%s|%s|", c->line, c->index, c->key, c->id ? c->id : "-",
                     c->err);
    *len += (size_t)k;
    if (c->text) {
        memcpy(*buf + *len, c->text, c->len);
        *len += c->len;
    }
    (*buf)[(*len)++] = '\n';
}

/* Read the whole input in one mode; returns the records flattened (malloc'd). */
static char *captions_run(const uint8_t *data, size_t size, int mode, int chunked, size_t *dlen) {
    int fd = fz_memfd(data, size);
    if (chunked) fz_chunk_fd(fd, size);
    size_t max_record = size % 2 ? 64 : (size_t)1 << 20;
    cap_reader *r = cap_open(fd, "fuzz", mode, max_record);
    int keep = size % 3 == 0;
    if (mode == CAP_JSON) cap_keep_header(r, keep);
    caption c;
    int s;
    long last_line = 0;
    char *dig = NULL;
    size_t len = 0, cap = 0;
    while (1) {
        (void)cap_ready(r);
        s = cap_next(r, &c);
        if (s != CAP_RECORD) break;
        FZ_ASSERT(c.key && c.key[0]);
        FZ_ASSERT(c.line >= 1 && c.line >= last_line);
        last_line = c.line;
        FZ_ASSERT(strlen(c.err) < sizeof c.err);
        if (mode == CAP_JSON) {
            char k[32];
            snprintf(k, sizeof k, "%ld", c.line - 1);
            FZ_ASSERT(strcmp(c.key, k) == 0 && c.index == 0);
            if (c.header) FZ_ASSERT(c.text && cap_is_header_string(c.text, c.len) && (keep ? !c.err[0] : c.err[0] != 0));
            if (!c.err[0]) FZ_ASSERT(!cap_is_header_string(c.text, c.len) || (keep && c.header));
        } else {
            FZ_ASSERT(!c.header);
        }
        if (!c.err[0]) {
            size_t kl = strlen(c.key);
            FZ_ASSERT(utf8_valid(c.key, kl));
            FZ_ASSERT(c.text && c.text[c.len] == 0 && strlen(c.text) == c.len);
            FZ_ASSERT(utf8_valid(c.text, c.len));
            FZ_ASSERT(c.id && c.id[0]);
            if (mode == CAP_LINES) {
                FZ_ASSERT(c.index == 0 && !strchr(c.key, '\t') && !strchr(c.key, '\n'));
                FZ_ASSERT(!strchr(c.text, '\n'));
                FZ_ASSERT(strlen(c.key) <= max_record);
            } else if (mode == CAP_JSON) {
                FZ_ASSERT(cap_format(r) == CAP_FMT_JSON && strcmp(c.key, c.id) == 0);
            } else if (cap_format(r) == CAP_FMT_CLOTHO) {
                FZ_ASSERT(c.index >= 1 && c.index <= cap_per_row(r));
            } else {
                FZ_ASSERT(cap_format(r) == CAP_FMT_AUDIOCAPS && c.index == 0 && strcmp(c.key, c.id) == 0);
            }
            /* a longer line or row is refused, whatever the input */
            FZ_ASSERT(c.len <= max_record);
        }
        captions_digest(&dig, &len, &cap, &c);
        caption_free(&c);
    }
    fz_chunk_off();
    FZ_ASSERT(s == CAP_EOF || s == CAP_ERROR);
    caption e = {0};
    e.key = (char *)(s == CAP_ERROR ? "ERROR" : "EOF");
    snprintf(e.err, sizeof e.err, "%.190s", s == CAP_ERROR ? cap_error(r) : "");
    captions_digest(&dig, &len, &cap, &e);
    if (s == CAP_ERROR) {
        FZ_ASSERT(cap_error(r)[0]);
        FZ_ASSERT(cap_next(r, &c) == CAP_ERROR);
        FZ_ASSERT(cap_ready(r) == 1);
    } else {
        FZ_ASSERT(cap_next(r, &c) == CAP_EOF); /* the end stays the end */
    }
    (void)cap_format_name(cap_format(r));
    cap_close(r);
    close(fd);
    *dlen = len;
    return dig;
}

static void captions_one(const uint8_t *data, size_t size) {
    for (int mode = CAP_LINES; mode <= CAP_JSON; mode++) {
        /* the same records whether the input came whole or in pieces */
        size_t la, lb;
        char *a = captions_run(data, size, mode, 1, &la);
        char *b = captions_run(data, size, mode, 0, &lb);
        FZ_ASSERT(la == lb && memcmp(a, b, la) == 0);
        free(a);
        free(b);
    }
}

FZ_ENTRY(captions)
