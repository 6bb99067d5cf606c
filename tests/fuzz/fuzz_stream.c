/* fuzz_stream.c - the tensor-stream reader (lib/stream.c) on arbitrary bytes.
 *
 * The input is a stream file: it goes to a memfd read by ws_reader_open_fd,
 * in pieces (see fuzz_common.h), with ws_reader_ready() polled before each
 * record as the batching filters do; read again whole, it must give the same
 * records and end the same way (same message). Every record is checked (tensor sizes,
 * UTF-8, unique field names) and passed through a ws_writer exactly as a
 * filter passes on fields (ws_put_fields_except), failed records through
 * ws_fail. The written stream is read back and must give the same records,
 * field for field and byte for byte, and end the same way: with a trailer
 * (carrying the failures) if and only if the input had one. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "util.h"

static int stream_init(void) {
    /* a lower record limit than the 4 GiB default, so that its checks are
     * reachable by small inputs; set before the first reader caches it */
    setenv("WSAC_MAX_RECORD_BYTES", "1048576", 1);
    return 0;
}

typedef struct {
    long headers, trailers;
} stream_meta_count;

static void stream_on_meta(void *ctx, char kind, const char *raw, size_t len) {
    stream_meta_count *m = ctx;
    FZ_ASSERT(kind == 'h' || kind == 't');
    FZ_ASSERT(raw && len > 0);
    unsigned char c0 = (unsigned char)raw[0];
    FZ_ASSERT((c0 >= 0x80 && c0 <= 0x8f) || c0 == 0xde || c0 == 0xdf); /* a map */
    if (kind == 'h') m->headers++;
    else m->trailers++;
}

static void stream_check_record(const ws_record *rec) {
    FZ_ASSERT(rec->nfields >= 0);
    FZ_ASSERT(rec->err[0] || (rec->key && rec->key[0]));
    if (rec->key) {
        size_t n = strlen(rec->key);
        FZ_ASSERT(n > 0 && utf8_valid(rec->key, n));
        FZ_ASSERT(!strpbrk(rec->key, "\t\n\r"));
    }
    for (int i = 0; i < rec->nfields; i++) {
        const ws_field *f = &rec->fields[i];
        FZ_ASSERT(f->name && strcmp(f->name, "key") != 0);
        FZ_ASSERT(utf8_valid(f->name, strlen(f->name)));
        FZ_ASSERT(ws_record_field(rec, f->name) == f); /* names are unique */
        switch (f->kind) {
        case WF_TENSOR: {
            const ws_tensor *t = &f->t;
            FZ_ASSERT(t->dtype >= 0 && t->dtype < DT_COUNT);
            FZ_ASSERT(t->ndim >= 0 && t->ndim <= WS_MAX_NDIM);
            size_t numel = 1;
            for (int d = 0; d < t->ndim; d++) {
                FZ_ASSERT(t->shape[d] >= 0);
                numel *= (size_t)t->shape[d];
            }
            FZ_ASSERT(numel == t->numel);
            FZ_ASSERT(t->data && ((uintptr_t)t->data & 63) == 0);
            /* every byte must be readable (ASan checks the bounds) */
            const volatile unsigned char *p = t->data;
            unsigned sum = 0;
            for (size_t b = 0; b < numel * ws_dtype_size(t->dtype); b++) sum += p[b];
            (void)sum;
            char why[200];
            FZ_ASSERT(ws_record_tensor(rec, f->name, t->dtype, t->ndim, why, sizeof why) == t);
            break;
        }
        case WF_STR:
            FZ_ASSERT(f->str && f->str[f->len] == 0 && utf8_valid(f->str, f->len));
            FZ_ASSERT(ws_record_str(rec, f->name) == f->str);
            break;
        case WF_OTHER: FZ_ASSERT(f->raw && f->len > 0); break;
        case WF_BOOL: FZ_ASSERT(f->i == 0 || f->i == 1); break;
        default: break;
        }
    }
    char nb[200];
    FZ_ASSERT(ws_record_name(rec, nb, sizeof nb)[0]);
}

static int stream_same_field(const ws_field *a, const ws_field *b) {
    if (strcmp(a->name, b->name) || a->kind != b->kind) return 0;
    switch (a->kind) {
    case WF_TENSOR:
        if (a->t.dtype != b->t.dtype || a->t.ndim != b->t.ndim || a->t.numel != b->t.numel) return 0;
        for (int d = 0; d < a->t.ndim; d++)
            if (a->t.shape[d] != b->t.shape[d]) return 0;
        return memcmp(a->t.data, b->t.data, a->t.numel * ws_dtype_size(a->t.dtype)) == 0;
    case WF_STR: return a->len == b->len && memcmp(a->str, b->str, a->len) == 0;
    case WF_INT:
    case WF_BOOL: return a->i == b->i;
    case WF_FLOAT: return memcmp(&a->f, &b->f, sizeof a->f) == 0;
    case WF_NIL: return 1;
    case WF_OTHER: return a->len == b->len && memcmp(a->raw, b->raw, a->len) == 0;
    }
    return 0;
}

/* What a reader made of a record, flattened, to compare two reads. */
static void stream_digest(char **buf, size_t *len, size_t *cap, const char *a, const char *b, long n) {
    size_t need = strlen(a) + strlen(b) + 48;
    if (*len + need > *cap) {
        *cap = 2 * (*len + need);
        *buf = realloc(*buf, *cap);
        FZ_ASSERT(*buf);
    }
    *len += (size_t)snprintf(*buf + *len, *cap - *len, "%s|%s|%ld\n", a, b, n);
}

/* Read the input with whole reads: the records' keys, reasons and field
 * counts, and how it ended. */
static char *stream_read_whole(const uint8_t *data, size_t size, size_t *dlen) {
    int fd = fz_memfd(data, size);
    ws_reader *r = ws_reader_open_fd(fd, "fuzz-input");
    char *dig = NULL;
    size_t len = 0, cap = 0;
    int s;
    ws_record rec;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        stream_digest(&dig, &len, &cap, rec.key ? rec.key : "-", rec.err, rec.nfields);
        ws_record_free(&rec);
    }
    stream_digest(&dig, &len, &cap, s == WS_EOF ? "EOF" : "ERROR", ws_reader_error(r), ws_reader_upstream_errors(r));
    ws_reader_close(r);
    close(fd);
    *dlen = len;
    return dig;
}

static void stream_one(const uint8_t *data, size_t size) {
    /* pass 1: read the input, write what a pass-through filter would */
    int fd = fz_memfd(data, size);
    fz_chunk_fd(fd, size);
    ws_reader *r = ws_reader_open_fd(fd, "fuzz-input");
    stream_meta_count meta = {0, 0};
    ws_reader_on_meta(r, stream_on_meta, &meta);
    char *out = NULL;
    size_t outlen = 0;
    FILE *of = open_memstream(&out, &outlen);
    FZ_ASSERT(of);
    const ws_param params[] = {{"n", 'i', 7, 0, NULL}, {"x", 'f', 0, 0.5, NULL}, {"s", 's', 0, 0, "v"}};
    ws_writer *w = ws_writer_open(of, "fuzz", params, 3, r);
    ws_record *kept = NULL;
    int nkept = 0, capkept = 0;
    long nfailed_valid = 0, nfailed = 0;
    char *dig = NULL;
    size_t diglen = 0, digcap = 0;
    int s;
    for (;;) {
        (void)ws_reader_ready(r);
        ws_record rec;
        s = ws_reader_next(r, &rec);
        if (s != WS_RECORD) break;
        stream_check_record(&rec);
        stream_digest(&dig, &diglen, &digcap, rec.key ? rec.key : "-", rec.err, rec.nfields);
        if (rec.err[0]) {
            char nb[200];
            const char *name = rec.key ? rec.key : ws_record_name(&rec, nb, sizeof nb);
            nfailed++;
            if (utf8_valid(name, strlen(name))) nfailed_valid++;
            ws_fail(w, name, "%s", rec.err);
            ws_record_free(&rec);
            continue;
        }
        ws_begin(w, rec.key);
        ws_put_fields_except(w, &rec, NULL);
        ws_end(w);
        if (nkept == capkept) {
            capkept = capkept ? 2 * capkept : 8;
            kept = realloc(kept, (size_t)capkept * sizeof *kept);
            FZ_ASSERT(kept);
        }
        kept[nkept++] = rec;
    }
    fz_chunk_off();
    FZ_ASSERT(s == WS_EOF || s == WS_ERROR);
    /* the same records and the same end when the input comes whole */
    stream_digest(&dig, &diglen, &digcap, s == WS_EOF ? "EOF" : "ERROR", ws_reader_error(r),
                  ws_reader_upstream_errors(r));
    size_t wlen;
    char *whole = stream_read_whole(data, size, &wlen);
    FZ_ASSERT(wlen == diglen && memcmp(whole, dig, wlen) == 0);
    free(whole);
    free(dig);
    if (s == WS_ERROR) FZ_ASSERT(ws_reader_error(r)[0]);
    else {
        FZ_ASSERT(!ws_reader_error(r)[0]);
        FZ_ASSERT(meta.headers >= 1 && meta.trailers == meta.headers);
        FZ_ASSERT(ws_reader_tool(r));
    }
    /* an error is sticky */
    if (s == WS_ERROR) {
        ws_record again;
        FZ_ASSERT(ws_reader_next(r, &again) == WS_ERROR);
    }
    double pv;
    (void)ws_reader_param(r, "sr", &pv);
    long up_errors = ws_reader_upstream_errors(r);
    int up_nfailed = ws_reader_upstream_nfailed(r);
    for (int i = 0; i < up_nfailed; i++) {
        const char *k = ws_reader_upstream_failed(r, i);
        FZ_ASSERT(k && utf8_valid(k, strlen(k)));
    }
    if (s == WS_EOF) ws_writer_close(w);
    else ws_writer_abandon(w);
    ws_reader_close(r);
    close(fd);
    FZ_ASSERT(fclose(of) == 0);

    /* pass 2: what was written reads back as the same records */
    int fd2 = fz_memfd((const uint8_t *)out, outlen);
    ws_reader *r2 = ws_reader_open_fd(fd2, "fuzz-output");
    int i = 0, s2;
    for (;;) {
        ws_record rec;
        s2 = ws_reader_next(r2, &rec);
        if (s2 != WS_RECORD) break;
        FZ_ASSERT(i < nkept);
        const ws_record *a = &kept[i++];
        FZ_ASSERT(!rec.err[0]);
        FZ_ASSERT(strcmp(a->key, rec.key) == 0);
        FZ_ASSERT(a->nfields == rec.nfields);
        for (int k = 0; k < a->nfields; k++) FZ_ASSERT(stream_same_field(&a->fields[k], &rec.fields[k]));
        ws_record_free(&rec);
    }
    FZ_ASSERT(i == nkept);
    FZ_ASSERT(s2 == s); /* a trailer if and only if the input had one */
    FZ_ASSERT(strcmp(ws_reader_tool(r2), "fuzz") == 0);
    FZ_ASSERT(ws_reader_param(r2, "n", &pv) == 0 && pv == 7);
    if (s == WS_EOF) {
        FZ_ASSERT(ws_reader_upstream_errors(r2) == up_errors + nfailed);
        FZ_ASSERT(ws_reader_upstream_nfailed(r2) == up_nfailed + nfailed_valid);
    }
    ws_reader_close(r2);
    close(fd2);
    free(out);
    for (int k = 0; k < nkept; k++) ws_record_free(&kept[k]);
    free(kept);
}

FZ_ENTRY(stream)
