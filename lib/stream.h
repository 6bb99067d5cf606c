/* stream.h - wsac tensor streams: msgpack maps over pipes (formats/tensor-stream.md).
 *
 *   stream  = segment+            (concatenated segments are one stream: `cat a b`)
 *   segment = header record* trailer
 *   header  = {"format": "wsac-stream", "version": 1, "tool": str, "params": map, ...}
 *   record  = {"key": str, FIELD: value, ...}
 *   tensor  = {"dtype": "f32"|"f64"|"i8"|"u8"|"i16"|"i32"|"i64", "shape": [d0,...], "data": bin}
 *   trailer = {"end": true, "records": int, "errors": int, "failed": [key, ...]}
 *
 * Reading never allocates more than a small multiple of the bytes actually
 * received: a record is framed by a bounded scanner before msgpack-c parses it,
 * and its size is capped (WSAC_MAX_RECORD_BYTES, default 4 GiB). */
#ifndef WSAC_STREAM_H
#define WSAC_STREAM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define WS_FORMAT "wsac-stream"
#define WS_VERSION 1
#define WS_MAX_NDIM 8

typedef enum { DT_F32, DT_F64, DT_I8, DT_U8, DT_I16, DT_I32, DT_I64, DT_COUNT } ws_dtype;

const char *ws_dtype_name(ws_dtype t);
size_t ws_dtype_size(ws_dtype t);
/* 0 and *out set if s[0..n) names a dtype, else -1 */
int ws_dtype_parse(const char *s, size_t n, ws_dtype *out);

typedef struct {
    ws_dtype dtype;
    int ndim;
    int64_t shape[WS_MAX_NDIM];
    size_t numel;
    void *data; /* 64-byte aligned, little-endian C order, owned by the record */
} ws_tensor;

typedef enum { WF_TENSOR, WF_STR, WF_INT, WF_FLOAT, WF_BOOL, WF_NIL, WF_OTHER } ws_kind;

typedef struct {
    char *name;       /* NUL-terminated */
    ws_kind kind;
    ws_tensor t;      /* WF_TENSOR */
    char *str;        /* WF_STR: NUL-terminated copy, valid UTF-8 */
    size_t len;       /* WF_STR: bytes; WF_OTHER: bytes of raw */
    int64_t i;        /* WF_INT, WF_BOOL */
    double f;         /* WF_FLOAT */
    char *raw;        /* WF_OTHER: the value re-encoded as msgpack, for pass-through */
} ws_field;

typedef struct {
    char *key;        /* NULL when the record had no usable key (then err is set) */
    int nfields;      /* fields other than "key" */
    ws_field *fields;
    long index;       /* 0-based data-record index within the whole stream */
    char err[320];    /* non-empty: well-framed but invalid (bad tensor, bad key);
                         the tool names it and counts it as failed */
} ws_record;

void ws_record_free(ws_record *rec);
const ws_field *ws_record_field(const ws_record *rec, const char *name);
/* The tensor `name` with the given dtype and ndim (-1: any). NULL with a
 * reason in errbuf when absent or different. */
const ws_tensor *ws_record_tensor(const ws_record *rec, const char *name, ws_dtype dtype, int ndim,
                                  char *errbuf, size_t errlen);
const char *ws_record_str(const ws_record *rec, const char *name);
/* "key 'x'" or "record #n" (when the key is unusable), for messages */
const char *ws_record_name(const ws_record *rec, char *buf, size_t len);

/* ------------------------------------------------------------------ reader */

typedef struct ws_reader ws_reader;

/* Reads from a file descriptor with read(2), so records are seen as soon as
 * they arrive. `name` is used in messages ("-" or "stdin" for stdin). */
ws_reader *ws_reader_open_fd(int fd, const char *name);
/* NULL and errno set when the file cannot be opened. */
ws_reader *ws_reader_open_path(const char *path);
void ws_reader_close(ws_reader *r);

enum { WS_EOF = 0, WS_RECORD = 1, WS_ERROR = -1 };
/* WS_RECORD: *rec filled (caller frees with ws_record_free; check rec->err).
 * WS_EOF: the stream ended cleanly after a trailer.
 * WS_ERROR: malformed or truncated stream; ws_reader_error() says why. */
int ws_reader_next(ws_reader *r, ws_record *rec);
const char *ws_reader_error(const ws_reader *r);
/* 1 if ws_reader_next() would not wait for input that has not arrived yet
 * (a whole object is buffered, or the descriptor is readable or at EOF):
 * lets a filter batch what is ready without holding back a stream. */
int ws_reader_ready(ws_reader *r);

/* Read up to and including the first header (blocks until it arrives):
 * 0, or -1 when the input is empty or not a stream (the reason is returned
 * by the next ws_reader_next() as well). */
int ws_reader_header(ws_reader *r);
/* The first segment's header tool name and its params map re-encoded as
 * msgpack (for provenance in a downstream header); NULL before the first
 * ws_reader_next(). */
const char *ws_reader_tool(const ws_reader *r);
/* An integer or float parameter of the first header ("sr", "n_mels"...);
 * returns 0 and sets *v if present. */
int ws_reader_param(const ws_reader *r, const char *name, double *v);
/* A string parameter of the first header ("frontend"...): 0 and *s set if it
 * is a string (without NUL bytes), 1 if present but not such a string, -1 if
 * absent. *s lives as long as the reader. */
int ws_reader_param_str(const ws_reader *r, const char *name, const char **s);
/* Called with the raw msgpack bytes of every header ('h') and trailer ('t')
 * as they are read (for inspection tools). */
typedef void (*ws_meta_fn)(void *ctx, char kind, const char *raw, size_t len);
void ws_reader_on_meta(ws_reader *r, ws_meta_fn fn, void *ctx);
/* Counts from the trailers read so far. */
long ws_reader_upstream_errors(const ws_reader *r);
int ws_reader_upstream_nfailed(const ws_reader *r);
const char *ws_reader_upstream_failed(const ws_reader *r, int i);

/* Maximum bytes in one record (WSAC_MAX_RECORD_BYTES overrides). */
size_t ws_max_record_bytes(void);

/* ------------------------------------------------------------------ writer */

typedef struct {
    const char *name;
    char type; /* 'i' integer, 'f' float, 's' string */
    int64_t i;
    double f;
    const char *s;
} ws_param;

typedef struct ws_writer ws_writer;

/* Writes the header at once. upstream (may be NULL): its header is recorded
 * as "input" and, at ws_writer_close, the failures its trailers reported are
 * carried into ours; it must stay open until then. */
ws_writer *ws_writer_open(FILE *f, const char *tool, const ws_param *params, int nparams,
                          ws_reader *upstream);
/* Carry the failures reported by another input's trailers too. */
void ws_writer_add_upstream(ws_writer *w, const ws_reader *up);
void ws_begin(ws_writer *w, const char *key);
void ws_put_tensor(ws_writer *w, const char *name, ws_dtype dtype, int ndim, const int64_t *shape,
                   const void *data);
void ws_put_str(ws_writer *w, const char *name, const char *s, size_t len);
void ws_put_int(ws_writer *w, const char *name, int64_t v);
void ws_put_float(ws_writer *w, const char *name, double v);
/* an array of n strings */
void ws_put_str_array(ws_writer *w, const char *name, const char *const *s, int n);
/* Pass on every field of rec not named in `except` (NULL-terminated) and not
 * already put in this record. */
void ws_put_fields_except(ws_writer *w, const ws_record *rec, const char *const *except);
/* Finish the record, write it and flush it. A write failure is fatal. */
void ws_end(ws_writer *w);
/* A record that failed here: named on stderr with its reason and listed in
 * the trailer. */
void ws_fail(ws_writer *w, const char *key, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
long ws_writer_records(const ws_writer *w);
long ws_writer_failed(const ws_writer *w);
/* Write the trailer, flush, free. Do not call after a fatal input error: a
 * stream without trailer tells readers it is incomplete. */
void ws_writer_close(ws_writer *w);
/* Free without writing a trailer. */
void ws_writer_abandon(ws_writer *w);

#endif
