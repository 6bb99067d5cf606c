/* stream.c - reading and writing wsac tensor streams (formats/tensor-stream.md).
 *
 * Reading is two-phase. A bounded scanner finds where the next msgpack object
 * ends without allocating anything (it only walks headers and skips payloads),
 * so a declared 4 GB bin or a 2^32-element array costs nothing until its bytes
 * have actually arrived. Only then does msgpack-c parse exactly those bytes;
 * its allocation is then bounded by a small multiple of the input. */
#define _POSIX_C_SOURCE 200809L
#include "stream.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <msgpack.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "wsac streams are little-endian; this host is not (byte swapping is not implemented)"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[DT_COUNT] = {
    [DT_F32] = {"f32", 4}, [DT_F64] = {"f64", 8}, [DT_I8] = {"i8", 1},   [DT_U8] = {"u8", 1},
    [DT_I16] = {"i16", 2}, [DT_I32] = {"i32", 4}, [DT_I64] = {"i64", 8},
};

const char *ws_dtype_name(ws_dtype t) { return (unsigned)t < DT_COUNT ? dtypes[t].name : "?"; }
size_t ws_dtype_size(ws_dtype t) { return (unsigned)t < DT_COUNT ? dtypes[t].size : 0; }

int ws_dtype_parse(const char *s, size_t n, ws_dtype *out) {
    for (int i = 0; i < DT_COUNT; i++)
        if (strlen(dtypes[i].name) == n && memcmp(dtypes[i].name, s, n) == 0) {
            *out = (ws_dtype)i;
            return 0;
        }
    return -1;
}

size_t ws_max_record_bytes(void) {
    static size_t cached;
    if (cached) return cached;
    size_t v = (size_t)4 << 30;
    const char *e = getenv("WSAC_MAX_RECORD_BYTES");
    if (e && *e) {
        char *end;
        unsigned long long x = strtoull(e, &end, 10);
        if (*end == 0 && x >= 1024) v = (size_t)x;
    }
    return cached = v;
}

/* ------------------------------------------------------------------ records */

void ws_record_free(ws_record *rec) {
    for (int i = 0; i < rec->nfields; i++) {
        ws_field *f = &rec->fields[i];
        free(f->name);
        free(f->t.data);
        free(f->str);
        free(f->raw);
    }
    free(rec->fields);
    free(rec->key);
    memset(rec, 0, sizeof *rec);
}

const ws_field *ws_record_field(const ws_record *rec, const char *name) {
    for (int i = 0; i < rec->nfields; i++)
        if (strcmp(rec->fields[i].name, name) == 0) return &rec->fields[i];
    return NULL;
}

const ws_tensor *ws_record_tensor(const ws_record *rec, const char *name, ws_dtype dtype, int ndim,
                                  char *errbuf, size_t errlen) {
    const ws_field *f = ws_record_field(rec, name);
    if (!f) {
        snprintf(errbuf, errlen, "no \"%s\" field", name);
        return NULL;
    }
    if (f->kind != WF_TENSOR) {
        snprintf(errbuf, errlen, "field \"%s\" is not a tensor", name);
        return NULL;
    }
    if (f->t.dtype != dtype) {
        snprintf(errbuf, errlen, "field \"%s\" has dtype %s, expected %s", name, ws_dtype_name(f->t.dtype),
                 ws_dtype_name(dtype));
        return NULL;
    }
    if (ndim >= 0 && f->t.ndim != ndim) {
        snprintf(errbuf, errlen, "field \"%s\" has %d dimensions, expected %d", name, f->t.ndim, ndim);
        return NULL;
    }
    return &f->t;
}

const char *ws_record_str(const ws_record *rec, const char *name) {
    const ws_field *f = ws_record_field(rec, name);
    return f && f->kind == WF_STR ? f->str : NULL;
}

const char *ws_record_name(const ws_record *rec, char *buf, size_t len) {
    if (rec->key) snprintf(buf, len, "key '%s'", rec->key);
    else snprintf(buf, len, "record #%ld", rec->index + 1);
    return buf;
}

/* ------------------------------------------------------------------ reader */

enum { ST_START, ST_SEGMENT, ST_AFTER_TRAILER };

typedef struct {
    char *name;
    double v;
    char *s;     /* a string value (v unset), else NULL */
    int kind;    /* 'n' number, 's' string, 'o' anything else */
} num_param;

struct ws_reader {
    int fd, own_fd;
    char *name;
    uint8_t *buf;
    size_t cap, beg, end;
    int eof;
    size_t scan_pos;   /* scanner state for the object at buf+beg */
    uint64_t scan_rem; /* items still to walk (when scan_pos > 0) */
    int state;
    long nobj;         /* objects completed */
    long seg_records, total_records;
    char *last_key;    /* last good key, for messages */
    char err[640];
    /* first header */
    char *tool;
    num_param *params;
    int nparams;
    char *params_raw;
    size_t params_raw_len;
    /* trailers */
    long up_errors;
    char **failed;
    int nfailed, capfailed;
    ws_meta_fn meta_fn;
    void *meta_ctx;
};

static void rerr(ws_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rerr(ws_reader *r, const char *fmt, ...) {
    char msg[480];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->last_key)
        snprintf(r->err, sizeof r->err, "%s: object #%ld (after key '%.100s'): %s", r->name, r->nobj + 1,
                 r->last_key, msg);
    else
        snprintf(r->err, sizeof r->err, "%s: object #%ld: %s", r->name, r->nobj + 1, msg);
}

ws_reader *ws_reader_open_fd(int fd, const char *name) {
    ws_reader *r = xcalloc(1, sizeof *r);
    r->fd = fd;
    r->name = xstrdup(name && strcmp(name, "-") ? name : "stdin");
    r->cap = 1 << 16;
    r->buf = xmalloc(r->cap);
    return r;
}

ws_reader *ws_reader_open_path(const char *path) {
    if (strcmp(path, "-") == 0) return ws_reader_open_fd(0, "stdin");
    int fd = open(path, O_RDONLY);
    if (fd < 0) return NULL;
    ws_reader *r = ws_reader_open_fd(fd, path);
    r->own_fd = 1;
    return r;
}

void ws_reader_close(ws_reader *r) {
    if (!r) return;
    if (r->own_fd) close(r->fd);
    free(r->name);
    free(r->buf);
    free(r->last_key);
    free(r->tool);
    for (int i = 0; i < r->nparams; i++) {
        free(r->params[i].name);
        free(r->params[i].s);
    }
    free(r->params);
    free(r->params_raw);
    for (int i = 0; i < r->nfailed; i++) free(r->failed[i]);
    free(r->failed);
    free(r);
}

const char *ws_reader_error(const ws_reader *r) { return r->err; }
const char *ws_reader_tool(const ws_reader *r) { return r->tool; }
long ws_reader_upstream_errors(const ws_reader *r) { return r->up_errors; }
int ws_reader_upstream_nfailed(const ws_reader *r) { return r->nfailed; }
const char *ws_reader_upstream_failed(const ws_reader *r, int i) {
    return i >= 0 && i < r->nfailed ? r->failed[i] : NULL;
}

void ws_reader_on_meta(ws_reader *r, ws_meta_fn fn, void *ctx) {
    r->meta_fn = fn;
    r->meta_ctx = ctx;
}

int ws_reader_param(const ws_reader *r, const char *name, double *v) {
    for (int i = 0; i < r->nparams; i++)
        if (r->params[i].kind == 'n' && strcmp(r->params[i].name, name) == 0) {
            *v = r->params[i].v;
            return 0;
        }
    return -1;
}

int ws_reader_param_str(const ws_reader *r, const char *name, const char **s) {
    for (int i = 0; i < r->nparams; i++)
        if (strcmp(r->params[i].name, name) == 0) {
            *s = r->params[i].s;
            return r->params[i].kind == 's' ? 0 : 1;
        }
    return -1;
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* Find the end of the msgpack object at buf+beg. 1: complete (*len set),
 * 0: more bytes needed, -1: invalid (r->err set). Never allocates. */
static int scan_object(ws_reader *r, size_t *len) {
    const uint8_t *p = r->buf + r->beg;
    size_t n = r->end - r->beg, pos = r->scan_pos;
    /* pos 0: a new object (one item to walk); otherwise resume, where rem may
     * be 0 if only the tail of the last payload was missing */
    uint64_t rem = pos ? r->scan_rem : 1;
    size_t maxb = ws_max_record_bytes();
    while (rem > 0) {
        if (pos >= n) goto need;
        uint8_t c = p[pos];
        size_t hdr = 1, lenbytes = 0;
        uint64_t payload = 0, items = 0, extra = 0;
        if (c <= 0x7f || c >= 0xe0) {
        } else if (c <= 0x8f) items = 2u * (c & 0x0f);
        else if (c <= 0x9f) items = c & 0x0f;
        else if (c <= 0xbf) payload = c & 0x1f;
        else switch (c) {
            case 0xc0: case 0xc2: case 0xc3: break;
            case 0xc1: rerr(r, "not msgpack: invalid byte 0xc1 at offset %zu", pos); return -1;
            case 0xc4: case 0xd9: lenbytes = 1; break;                    /* bin8, str8 */
            case 0xc5: case 0xda: lenbytes = 2; break;                    /* bin16, str16 */
            case 0xc6: case 0xdb: lenbytes = 4; break;                    /* bin32, str32 */
            case 0xc7: lenbytes = 1; extra = 1; break;                    /* ext8 */
            case 0xc8: lenbytes = 2; extra = 1; break;                    /* ext16 */
            case 0xc9: lenbytes = 4; extra = 1; break;                    /* ext32 */
            case 0xca: payload = 4; break;
            case 0xcb: payload = 8; break;
            case 0xcc: case 0xd0: payload = 1; break;
            case 0xcd: case 0xd1: payload = 2; break;
            case 0xce: case 0xd2: payload = 4; break;
            case 0xcf: case 0xd3: payload = 8; break;
            case 0xd4: payload = 2; break;
            case 0xd5: payload = 3; break;
            case 0xd6: payload = 5; break;
            case 0xd7: payload = 9; break;
            case 0xd8: payload = 17; break;
            case 0xdc: case 0xde: lenbytes = 2; break;
            case 0xdd: case 0xdf: lenbytes = 4; break;
            }
        if (lenbytes) {
            if (pos + 1 + lenbytes > n) goto need;
            uint64_t v = be(p + pos + 1, (int)lenbytes);
            hdr = 1 + lenbytes;
            if (c == 0xdc || c == 0xdd) items = v;
            else if (c == 0xde || c == 0xdf) items = 2 * v;
            else payload = v + extra;
        }
        if (payload > maxb || items > maxb) {
            rerr(r, "declares %" PRIu64 " %s, over the limit of %zu bytes per record (WSAC_MAX_RECORD_BYTES)",
                 payload ? payload : items, payload ? "bytes" : "elements", maxb);
            return -1;
        }
        rem = rem - 1 + items;
        /* every pending item needs at least one more byte */
        if (rem > maxb || pos + hdr + payload + rem > maxb) {
            rerr(r, "record larger than the limit of %zu bytes (WSAC_MAX_RECORD_BYTES)", maxb);
            return -1;
        }
        pos += hdr + (size_t)payload;
    }
    if (pos > n) goto need;
    *len = pos;
    r->scan_pos = 0;
    r->scan_rem = 0;
    return 1;
need:
    r->scan_pos = pos;
    r->scan_rem = rem;
    return 0;
}

/* Read more bytes; grows the buffer only when it is full of one unfinished
 * object, so memory tracks what the input actually delivered. */
static int fill(ws_reader *r) {
    if (r->beg > 0 && (r->end == r->cap || r->beg > r->cap / 2)) {
        memmove(r->buf, r->buf + r->beg, r->end - r->beg);
        r->end -= r->beg;
        r->beg = 0;
    }
    if (r->end == r->cap) {
        r->cap *= 2;
        r->buf = xrealloc(r->buf, r->cap);
    }
    for (;;) {
        ssize_t k = read(r->fd, r->buf + r->end, r->cap - r->end);
        if (k > 0) {
            r->end += (size_t)k;
            return 1;
        }
        if (k == 0) {
            r->eof = 1;
            return 0;
        }
        if (errno == EINTR) continue;
        rerr(r, "read error: %s", strerror(errno));
        return -1;
    }
}

static int str_eq(const msgpack_object *o, const char *s) {
    return o->type == MSGPACK_OBJECT_STR && o->via.str.size == strlen(s) &&
           memcmp(o->via.str.ptr, s, o->via.str.size) == 0;
}

static const msgpack_object *map_get(const msgpack_object *m, const char *k) {
    for (uint32_t i = 0; i < m->via.map.size; i++)
        if (str_eq(&m->via.map.ptr[i].key, k)) return &m->via.map.ptr[i].val;
    return NULL;
}

static char *strndup_x(const char *s, size_t n) {
    char *p = xmalloc(n + 1);
    if (n) memcpy(p, s, n); /* msgpack-c gives a NULL ptr for an empty str */
    p[n] = 0;
    return p;
}

static const char *kind_name(msgpack_object_type t) {
    switch (t) {
    case MSGPACK_OBJECT_NIL: return "nil";
    case MSGPACK_OBJECT_BOOLEAN: return "a boolean";
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: return "an integer";
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64: return "a float";
    case MSGPACK_OBJECT_STR: return "a string";
    case MSGPACK_OBJECT_ARRAY: return "an array";
    case MSGPACK_OBJECT_MAP: return "a map";
    case MSGPACK_OBJECT_BIN: return "binary";
    case MSGPACK_OBJECT_EXT: return "an extension";
    }
    return "?";
}

static int get_int(const msgpack_object *o, int64_t *v) {
    if (o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 <= INT64_MAX) {
        *v = (int64_t)o->via.u64;
        return 0;
    }
    if (o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER) {
        *v = o->via.i64;
        return 0;
    }
    return -1;
}

/* Parse a tensor map into t; on error writes the reason to err. */
static int parse_tensor(const msgpack_object *m, ws_tensor *t, char *err, size_t errlen) {
    const msgpack_object *dt = map_get(m, "dtype"), *sh = map_get(m, "shape"), *da = map_get(m, "data");
    if (!dt || dt->type != MSGPACK_OBJECT_STR) {
        snprintf(err, errlen, "\"dtype\" is missing or not a string");
        return -1;
    }
    if (ws_dtype_parse(dt->via.str.ptr, dt->via.str.size, &t->dtype)) {
        snprintf(err, errlen, "unknown dtype '%.*s' (known: f32 f64 i8 u8 i16 i32 i64)",
                 (int)(dt->via.str.size > 20 ? 20 : dt->via.str.size), dt->via.str.ptr);
        return -1;
    }
    if (!sh || sh->type != MSGPACK_OBJECT_ARRAY) {
        snprintf(err, errlen, "\"shape\" is missing or not an array");
        return -1;
    }
    if (sh->via.array.size > WS_MAX_NDIM) {
        snprintf(err, errlen, "shape has %u dimensions (at most %d)", sh->via.array.size, WS_MAX_NDIM);
        return -1;
    }
    if (!da || da->type != MSGPACK_OBJECT_BIN) {
        snprintf(err, errlen, "\"data\" is missing or not binary (%s)", da ? kind_name(da->type) : "absent");
        return -1;
    }
    t->ndim = (int)sh->via.array.size;
    uint64_t numel = 1;
    int overflow = 0;
    char shs[200] = "[";
    for (int d = 0; d < t->ndim; d++) {
        int64_t v;
        if (get_int(&sh->via.array.ptr[d], &v) || v < 0) {
            snprintf(err, errlen, "shape entry %d is not a non-negative integer", d);
            return -1;
        }
        t->shape[d] = v;
        if (__builtin_mul_overflow(numel, (uint64_t)v, &numel)) overflow = 1;
        size_t l = strlen(shs);
        snprintf(shs + l, sizeof shs - l, "%s%" PRId64, d ? "," : "", v);
    }
    strncat(shs, "]", sizeof shs - strlen(shs) - 1);
    uint64_t nbytes;
    if (overflow || __builtin_mul_overflow(numel, (uint64_t)ws_dtype_size(t->dtype), &nbytes)) {
        snprintf(err, errlen, "shape %.120s declares more elements than can exist (data has %u bytes)", shs,
                 da->via.bin.size);
        return -1;
    }
    if (nbytes != da->via.bin.size) {
        snprintf(err, errlen, "shape %.120s of %s declares %" PRIu64 " elements = %" PRIu64
                 " bytes, but data has %u bytes", shs, ws_dtype_name(t->dtype), numel, nbytes,
                 da->via.bin.size);
        return -1;
    }
    t->numel = (size_t)numel;
    t->data = xmalloc_aligned((size_t)nbytes);
    if (nbytes) memcpy(t->data, da->via.bin.ptr, (size_t)nbytes);
    return 0;
}

static void set_rec_err(ws_record *rec, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_rec_err(ws_record *rec, const char *fmt, ...) {
    if (rec->err[0]) return; /* keep the first reason */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rec->err, sizeof rec->err, fmt, ap);
    va_end(ap);
}

static int key_ok(const char *s, size_t n, const char **why) {
    if (n == 0) { *why = "empty key"; return 0; }
    if (!utf8_valid(s, n)) { *why = "key is not valid UTF-8"; return 0; }
    for (size_t i = 0; i < n; i++)
        if (s[i] == '\t' || s[i] == '\n' || s[i] == '\r' || s[i] == 0) {
            *why = "key contains a tab, newline or NUL";
            return 0;
        }
    return 1;
}

static void build_record(ws_reader *r, const msgpack_object *m, ws_record *rec) {
    memset(rec, 0, sizeof *rec);
    rec->index = r->total_records;
    rec->fields = xcalloc(m->via.map.size ? m->via.map.size : 1, sizeof(ws_field));
    for (uint32_t i = 0; i < m->via.map.size; i++) {
        const msgpack_object *k = &m->via.map.ptr[i].key, *v = &m->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR) {
            set_rec_err(rec, "a field name is %s, not a string", kind_name(k->type));
            continue;
        }
        if (str_eq(k, "key")) {
            const char *why = "key is not a string";
            if (v->type == MSGPACK_OBJECT_STR && key_ok(v->via.str.ptr, v->via.str.size, &why)) {
                if (!rec->key) rec->key = strndup_x(v->via.str.ptr, v->via.str.size);
            } else set_rec_err(rec, "%s", why);
            continue;
        }
        const char *kp = k->via.str.size ? k->via.str.ptr : ""; /* NULL when empty */
        char fname[64];
        snprintf(fname, sizeof fname, "%.*s", (int)(k->via.str.size > 40 ? 40 : k->via.str.size), kp);
        if (!utf8_valid(kp, k->via.str.size) || memchr(kp, 0, k->via.str.size)) {
            set_rec_err(rec, "a field name is not valid UTF-8");
            continue;
        }
        int dup = 0;
        for (int j = 0; j < rec->nfields; j++)
            if (strlen(rec->fields[j].name) == k->via.str.size &&
                memcmp(rec->fields[j].name, kp, k->via.str.size) == 0)
                dup = 1;
        if (dup) {
            set_rec_err(rec, "field \"%s\" appears twice", fname);
            continue;
        }
        ws_field *f = &rec->fields[rec->nfields];
        memset(f, 0, sizeof *f);
        f->name = strndup_x(kp, k->via.str.size);
        switch (v->type) {
        case MSGPACK_OBJECT_MAP:
            if (map_get(v, "dtype")) {
                char why[400];
                f->kind = WF_TENSOR;
                if (parse_tensor(v, &f->t, why, sizeof why)) {
                    set_rec_err(rec, "field \"%s\": %s", fname, why);
                    free(f->name);
                    memset(f, 0, sizeof *f);
                    continue;
                }
                break;
            }
            goto other;
        case MSGPACK_OBJECT_STR:
            if (!utf8_valid(v->via.str.ptr, v->via.str.size)) {
                set_rec_err(rec, "field \"%s\" is not valid UTF-8", fname);
                free(f->name);
                memset(f, 0, sizeof *f);
                continue;
            }
            f->kind = WF_STR;
            f->str = strndup_x(v->via.str.ptr, v->via.str.size);
            f->len = v->via.str.size;
            break;
        case MSGPACK_OBJECT_POSITIVE_INTEGER:
        case MSGPACK_OBJECT_NEGATIVE_INTEGER:
            if (get_int(v, &f->i)) goto other;
            f->kind = WF_INT;
            break;
        case MSGPACK_OBJECT_FLOAT32:
        case MSGPACK_OBJECT_FLOAT64:
            f->kind = WF_FLOAT;
            f->f = v->via.f64;
            break;
        case MSGPACK_OBJECT_BOOLEAN:
            f->kind = WF_BOOL;
            f->i = v->via.boolean;
            break;
        case MSGPACK_OBJECT_NIL:
            f->kind = WF_NIL;
            break;
        default:
        other: {
            msgpack_sbuffer sb;
            msgpack_packer pk;
            msgpack_sbuffer_init(&sb);
            msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
            msgpack_pack_object(&pk, *v);
            f->kind = WF_OTHER;
            f->raw = xmalloc(sb.size);
            memcpy(f->raw, sb.data, sb.size);
            f->len = sb.size;
            msgpack_sbuffer_destroy(&sb);
        }
        }
        rec->nfields++;
    }
    if (!rec->key) set_rec_err(rec, "no \"key\" field");
}

/* Containers nested in o, o included (0 for a scalar). */
static int obj_depth(const msgpack_object *o) {
    int d = 0;
    if (o->type == MSGPACK_OBJECT_ARRAY) {
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            int k = obj_depth(&o->via.array.ptr[i]);
            if (k > d) d = k;
        }
    } else if (o->type == MSGPACK_OBJECT_MAP) {
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            int k = obj_depth(&o->via.map.ptr[i].key), v = obj_depth(&o->via.map.ptr[i].val);
            if (k > d) d = k;
            if (v > d) d = v;
        }
    } else return 0;
    return d + 1;
}

static int parse_header(ws_reader *r, const msgpack_object *m) {
    const msgpack_object *fmt = map_get(m, "format"), *ver = map_get(m, "version");
    if (!str_eq(fmt, WS_FORMAT)) {
        rerr(r, "not a wsac tensor stream (header \"format\" is not \"%s\")", WS_FORMAT);
        return -1;
    }
    int64_t v;
    if (!ver || get_int(ver, &v) || v < 1) {
        rerr(r, "header has no valid \"version\"");
        return -1;
    }
    if (v > WS_VERSION) {
        rerr(r, "stream version %" PRId64 " is newer than this reader (%d): upgrade wsac", v, WS_VERSION);
        return -1;
    }
    if (r->tool) return 0; /* keep the first segment's provenance */
    const msgpack_object *tool = map_get(m, "tool"), *params = map_get(m, "params");
    r->tool = tool && tool->type == MSGPACK_OBJECT_STR ? strndup_x(tool->via.str.ptr, tool->via.str.size)
                                                       : xstrdup("?");
    if (params && params->type == MSGPACK_OBJECT_MAP) {
        msgpack_sbuffer sb;
        msgpack_packer pk;
        msgpack_sbuffer_init(&sb);
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        msgpack_pack_object(&pk, *params);
        /* A writer re-embeds these params one level deeper (header.input.params):
         * params nested so deep that msgpack-c (32 levels) would then refuse
         * the writer's header, or absurdly large ones, are not carried. */
        if (obj_depth(params) <= 30 && sb.size <= 65536) {
            r->params_raw = xmalloc(sb.size);
            memcpy(r->params_raw, sb.data, sb.size);
            r->params_raw_len = sb.size;
        }
        msgpack_sbuffer_destroy(&sb);
        r->params = xcalloc(params->via.map.size + 1, sizeof(num_param));
        for (uint32_t i = 0; i < params->via.map.size; i++) {
            const msgpack_object *k = &params->via.map.ptr[i].key, *pv = &params->via.map.ptr[i].val;
            if (k->type != MSGPACK_OBJECT_STR) continue;
            num_param *np = &r->params[r->nparams++];
            int64_t iv;
            np->name = strndup_x(k->via.str.ptr, k->via.str.size);
            np->kind = 'n';
            if (!get_int(pv, &iv)) np->v = (double)iv;
            else if (pv->type == MSGPACK_OBJECT_FLOAT32 || pv->type == MSGPACK_OBJECT_FLOAT64) np->v = pv->via.f64;
            else if (pv->type == MSGPACK_OBJECT_STR && !memchr(pv->via.str.ptr, 0, pv->via.str.size)) {
                np->kind = 's';
                np->s = strndup_x(pv->via.str.ptr, pv->via.str.size);
            } else np->kind = 'o';
        }
    }
    return 0;
}

static int parse_trailer(ws_reader *r, const msgpack_object *m) {
    const msgpack_object *rc = map_get(m, "records"), *ec = map_get(m, "errors"), *fl = map_get(m, "failed");
    int64_t n, e = 0;
    if (!rc || get_int(rc, &n) || n < 0) {
        rerr(r, "trailer has no valid \"records\" count");
        return -1;
    }
    if (n != r->seg_records) {
        rerr(r, "trailer counts %" PRId64 " records but the stream carried %ld: records were lost", n,
             r->seg_records);
        return -1;
    }
    if (ec && (get_int(ec, &e) || e < 0)) {
        rerr(r, "trailer \"errors\" is not a non-negative integer");
        return -1;
    }
    r->up_errors += e;
    if (fl && fl->type == MSGPACK_OBJECT_ARRAY)
        for (uint32_t i = 0; i < fl->via.array.size; i++) {
            const msgpack_object *k = &fl->via.array.ptr[i];
            if (k->type != MSGPACK_OBJECT_STR || !utf8_valid(k->via.str.ptr, k->via.str.size)) continue;
            if (r->nfailed == r->capfailed) {
                r->capfailed = r->capfailed ? 2 * r->capfailed : 16;
                r->failed = xrealloc(r->failed, (size_t)r->capfailed * sizeof(char *));
            }
            r->failed[r->nfailed++] = strndup_x(k->via.str.ptr, k->via.str.size);
        }
    return 0;
}

enum { STEP_NORMAL, STEP_HEADER, STEP_PEEK };
enum { STEP_HEADER_READ = 2, STEP_WOULD_BLOCK = 4, STEP_RECORD_READY = 5 };

/* One step of reading. STEP_HEADER: stop once a header has been read.
 * STEP_PEEK: consume headers and trailers already buffered, but never read
 * more and never consume a record: STEP_RECORD_READY when a whole record is
 * buffered, STEP_WOULD_BLOCK when more input is needed. */
static int reader_step(ws_reader *r, ws_record *rec, int mode) {
    memset(rec, 0, sizeof *rec);
    if (r->err[0]) return WS_ERROR;
    for (;;) {
        if (mode == STEP_HEADER && r->tool) return STEP_HEADER_READ;
        size_t len = 0;
        int s = r->end > r->beg ? scan_object(r, &len) : 0;
        if (s < 0) return WS_ERROR;
        if (s == 0 && mode == STEP_PEEK && !r->eof) return STEP_WOULD_BLOCK;
        if (s == 0) {
            if (r->eof) {
                if (r->end > r->beg) {
                    rerr(r, "stream is truncated: it ends inside an object (%zu bytes of it received)",
                         r->end - r->beg);
                    return WS_ERROR;
                }
                if (r->state == ST_AFTER_TRAILER) return WS_EOF;
                if (r->state == ST_START && r->nobj == 0) rerr(r, "empty input: no stream header");
                else
                    rerr(r, "stream ended without its trailer after %ld record%s: it is incomplete "
                            "(the producer failed or was stopped)", r->seg_records, r->seg_records == 1 ? "" : "s");
                return WS_ERROR;
            }
            if (fill(r) < 0) return WS_ERROR;
            continue;
        }
        msgpack_unpacked up;
        msgpack_unpacked_init(&up);
        size_t off = 0;
        msgpack_unpack_return ur = msgpack_unpack_next(&up, (const char *)r->buf + r->beg, len, &off);
        if (ur != MSGPACK_UNPACK_SUCCESS || off != len) {
            msgpack_unpacked_destroy(&up);
            rerr(r, ur == MSGPACK_UNPACK_NOMEM_ERROR ? "nested too deeply or out of memory"
                                                     : "malformed msgpack");
            return WS_ERROR;
        }
        const msgpack_object *m = &up.data;
        if (mode == STEP_PEEK && m->type == MSGPACK_OBJECT_MAP && r->state == ST_SEGMENT &&
            !((map_get(m, "end") || map_get(m, "format")) && !map_get(m, "key"))) {
            msgpack_unpacked_destroy(&up); /* a record: leave it for ws_reader_next */
            return STEP_RECORD_READY;
        }
        int ret = 2; /* 2: keep reading, 1: record, -1: error */
        if (m->type != MSGPACK_OBJECT_MAP) {
            rerr(r, "not a wsac tensor stream: object is %s, not a map", kind_name(m->type));
            ret = -1;
        } else if (r->state != ST_SEGMENT) {
            if (!map_get(m, "format")) {
                if (r->state == ST_START) rerr(r, "not a wsac tensor stream: the first object is not a header");
                else rerr(r, "data after the trailer (a record without a header)");
                ret = -1;
            } else if (parse_header(r, m) == 0) {
                r->state = ST_SEGMENT;
                r->seg_records = 0;
                if (r->meta_fn) r->meta_fn(r->meta_ctx, 'h', (const char *)r->buf + r->beg, len);
            } else ret = -1;
        } else if (map_get(m, "end") && !map_get(m, "key")) {
            if (parse_trailer(r, m) == 0) {
                r->state = ST_AFTER_TRAILER;
                if (r->meta_fn) r->meta_fn(r->meta_ctx, 't', (const char *)r->buf + r->beg, len);
            } else ret = -1;
        } else if (map_get(m, "format") && !map_get(m, "key")) {
            rerr(r, "a new header before the trailer: the stream before it is incomplete");
            ret = -1;
        } else {
            build_record(r, m, rec);
            r->seg_records++;
            r->total_records++;
            if (rec->key) {
                free(r->last_key);
                r->last_key = xstrdup(rec->key);
            }
            ret = 1;
        }
        msgpack_unpacked_destroy(&up);
        if (ret < 0) return WS_ERROR;
        r->nobj++;
        r->beg += len;
        if (r->beg == r->end) r->beg = r->end = 0;
        if (ret == 1) return WS_RECORD;
    }
}

int ws_reader_next(ws_reader *r, ws_record *rec) { return reader_step(r, rec, STEP_NORMAL); }

int ws_reader_header(ws_reader *r) {
    ws_record rec;
    int s = reader_step(r, &rec, STEP_HEADER);
    if (s == WS_RECORD) ws_record_free(&rec); /* cannot happen: a header comes first */
    return s == STEP_HEADER_READ ? 0 : -1;
}

int ws_reader_ready(ws_reader *r) {
    if (r->err[0] || r->eof) return 1;
    /* Buffered headers and trailers are consumed here: after a trailer,
     * next() would wait for EOF or another segment, holding back a batch
     * whose producer keeps its end of the pipe open. */
    ws_record rec;
    int s = reader_step(r, &rec, STEP_PEEK);
    if (s != STEP_WOULD_BLOCK) return 1; /* a record, an error or EOF: next() will not wait */
    if (r->end > r->beg) return 0;       /* part of an object: the rest has not come */
    struct pollfd p = {r->fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}

/* ------------------------------------------------------------------ writer */

struct ws_writer {
    FILE *f;
    msgpack_sbuffer body;
    msgpack_packer pk;
    int nfields;
    char *key;
    char **names;
    int nnames, capnames;
    long records, own_failed, up_errors;
    const ws_reader **ups; /* upstream readers whose failures the trailer carries */
    int nups;
    char **failed;
    int nfailed, capfailed;
};

static void write_or_die(ws_writer *w, const void *p, size_t n) {
    if (n && fwrite(p, 1, n, w->f) != n) goto fail;
    return;
fail:
    if (errno == EPIPE) { /* the reader went away (| head): stop quietly */
        signal(SIGPIPE, SIG_DFL);
        raise(SIGPIPE);
        _exit(EXIT_FATAL);
    }
    die("writing output: %s", strerror(errno));
}

static void flush_or_die(ws_writer *w) {
    if (fflush(w->f) == 0) return;
    if (errno == EPIPE) {
        signal(SIGPIPE, SIG_DFL);
        raise(SIGPIPE);
        _exit(EXIT_FATAL);
    }
    die("writing output: %s", strerror(errno));
}

static void pack_cstr(msgpack_packer *pk, const char *s) {
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

ws_writer *ws_writer_open(FILE *f, const char *tool, const ws_param *params, int nparams, ws_reader *up) {
    /* the input's header, for provenance; a bad input is reported by the
     * caller's next ws_reader_next() */
    if (up && !up->tool) ws_reader_header(up);
    ws_writer *w = xcalloc(1, sizeof *w);
    w->f = f;
    if (up) ws_writer_add_upstream(w, up);
    msgpack_sbuffer_init(&w->body);
    msgpack_packer_init(&w->pk, &w->body, msgpack_sbuffer_write);
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, up ? 6 : 5);
    pack_cstr(pk, "format");
    pack_cstr(pk, WS_FORMAT);
    pack_cstr(pk, "version");
    msgpack_pack_int(pk, WS_VERSION);
    pack_cstr(pk, "tool");
    pack_cstr(pk, tool);
    pack_cstr(pk, "wsac_version");
    pack_cstr(pk, WSAC_VERSION);
    pack_cstr(pk, "params");
    msgpack_pack_map(pk, (size_t)nparams);
    for (int i = 0; i < nparams; i++) {
        pack_cstr(pk, params[i].name);
        switch (params[i].type) {
        case 'i': msgpack_pack_int64(pk, params[i].i); break;
        case 'f': msgpack_pack_double(pk, params[i].f); break;
        default: pack_cstr(pk, params[i].s ? params[i].s : ""); break;
        }
    }
    if (up) {
        pack_cstr(pk, "input");
        msgpack_pack_map(pk, 2);
        pack_cstr(pk, "tool");
        pack_cstr(pk, up->tool ? up->tool : "?");
        pack_cstr(pk, "params");
        if (up->params_raw) msgpack_sbuffer_write(&w->body, up->params_raw, up->params_raw_len);
        else msgpack_pack_map(pk, 0);
    }
    write_or_die(w, w->body.data, w->body.size);
    flush_or_die(w);
    msgpack_sbuffer_clear(&w->body);
    return w;
}

static int name_used(ws_writer *w, const char *name) {
    for (int i = 0; i < w->nnames; i++)
        if (strcmp(w->names[i], name) == 0) return 1;
    return 0;
}

static int add_name(ws_writer *w, const char *name) {
    if (strcmp(name, "key") == 0 || name_used(w, name)) return 0;
    if (w->nnames == w->capnames) {
        w->capnames = w->capnames ? 2 * w->capnames : 8;
        w->names = xrealloc(w->names, (size_t)w->capnames * sizeof(char *));
    }
    w->names[w->nnames++] = xstrdup(name);
    w->nfields++;
    pack_cstr(&w->pk, name);
    return 1;
}

void ws_begin(ws_writer *w, const char *key) {
    msgpack_sbuffer_clear(&w->body);
    for (int i = 0; i < w->nnames; i++) free(w->names[i]);
    w->nnames = 0;
    w->nfields = 0;
    free(w->key);
    w->key = xstrdup(key);
}

void ws_put_tensor(ws_writer *w, const char *name, ws_dtype dtype, int ndim, const int64_t *shape,
                   const void *data) {
    if (!add_name(w, name)) return;
    size_t n = 1;
    for (int d = 0; d < ndim; d++) n *= (size_t)shape[d];
    n *= ws_dtype_size(dtype);
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 3);
    pack_cstr(pk, "dtype");
    pack_cstr(pk, ws_dtype_name(dtype));
    pack_cstr(pk, "shape");
    msgpack_pack_array(pk, (size_t)ndim);
    for (int d = 0; d < ndim; d++) msgpack_pack_int64(pk, shape[d]);
    pack_cstr(pk, "data");
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, data, n);
}

void ws_put_str(ws_writer *w, const char *name, const char *s, size_t len) {
    if (!add_name(w, name)) return;
    msgpack_pack_str(&w->pk, len);
    msgpack_pack_str_body(&w->pk, s, len);
}

void ws_put_int(ws_writer *w, const char *name, int64_t v) {
    if (add_name(w, name)) msgpack_pack_int64(&w->pk, v);
}

void ws_put_float(ws_writer *w, const char *name, double v) {
    if (add_name(w, name)) msgpack_pack_double(&w->pk, v);
}

void ws_put_str_array(ws_writer *w, const char *name, const char *const *s, int n) {
    if (!add_name(w, name)) return;
    msgpack_pack_array(&w->pk, (size_t)n);
    for (int i = 0; i < n; i++) {
        size_t len = strlen(s[i]);
        msgpack_pack_str(&w->pk, len);
        msgpack_pack_str_body(&w->pk, s[i], len);
    }
}

void ws_put_fields_except(ws_writer *w, const ws_record *rec, const char *const *except) {
    for (int i = 0; i < rec->nfields; i++) {
        const ws_field *f = &rec->fields[i];
        int skip = 0;
        for (const char *const *e = except; e && *e; e++)
            if (strcmp(*e, f->name) == 0) skip = 1;
        if (skip || name_used(w, f->name)) continue;
        switch (f->kind) {
        case WF_TENSOR: ws_put_tensor(w, f->name, f->t.dtype, f->t.ndim, f->t.shape, f->t.data); break;
        case WF_STR: ws_put_str(w, f->name, f->str, f->len); break;
        case WF_INT: ws_put_int(w, f->name, f->i); break;
        case WF_FLOAT: ws_put_float(w, f->name, f->f); break;
        case WF_BOOL:
            if (add_name(w, f->name)) {
                if (f->i) msgpack_pack_true(&w->pk);
                else msgpack_pack_false(&w->pk);
            }
            break;
        case WF_NIL:
            if (add_name(w, f->name)) msgpack_pack_nil(&w->pk);
            break;
        case WF_OTHER:
            if (add_name(w, f->name)) msgpack_sbuffer_write(&w->body, f->raw, f->len);
            break;
        }
    }
}

void ws_end(ws_writer *w) {
    msgpack_sbuffer head;
    msgpack_packer hp;
    msgpack_sbuffer_init(&head);
    msgpack_packer_init(&hp, &head, msgpack_sbuffer_write);
    msgpack_pack_map(&hp, (size_t)w->nfields + 1);
    pack_cstr(&hp, "key");
    pack_cstr(&hp, w->key ? w->key : "");
    write_or_die(w, head.data, head.size);
    write_or_die(w, w->body.data, w->body.size);
    flush_or_die(w);
    msgpack_sbuffer_destroy(&head);
    msgpack_sbuffer_clear(&w->body);
    w->records++;
}

static void add_failed(ws_writer *w, const char *key) {
    if (w->nfailed == w->capfailed) {
        w->capfailed = w->capfailed ? 2 * w->capfailed : 16;
        w->failed = xrealloc(w->failed, (size_t)w->capfailed * sizeof(char *));
    }
    w->failed[w->nfailed++] = xstrdup(key);
}

void ws_fail(ws_writer *w, const char *key, const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s: %s\n", tool_name, key, msg);
    /* only valid keys go into the trailer (it must stay valid UTF-8) */
    if (w && utf8_valid(key, strlen(key))) add_failed(w, key);
    if (w) w->own_failed++;
}

long ws_writer_records(const ws_writer *w) { return w->records; }
long ws_writer_failed(const ws_writer *w) { return w->own_failed; }

static void writer_free(ws_writer *w) {
    msgpack_sbuffer_destroy(&w->body);
    for (int i = 0; i < w->nnames; i++) free(w->names[i]);
    free(w->names);
    for (int i = 0; i < w->nfailed; i++) free(w->failed[i]);
    free(w->failed);
    free(w->key);
    free(w->ups);
    free(w);
}

void ws_writer_add_upstream(ws_writer *w, const ws_reader *up) {
    w->ups = xrealloc(w->ups, (size_t)(w->nups + 1) * sizeof(*w->ups));
    w->ups[w->nups++] = up;
}

/* upstream failures are carried so the last tool of a pipeline can name them */
static void carry_upstream(ws_writer *w) {
    for (int k = 0; k < w->nups; k++) {
        const ws_reader *up = w->ups[k];
        w->up_errors += up->up_errors;
        for (int i = 0; i < up->nfailed; i++) add_failed(w, up->failed[i]);
    }
}

void ws_writer_close(ws_writer *w) {
    carry_upstream(w);
    msgpack_sbuffer_clear(&w->body);
    msgpack_packer *pk = &w->pk;
    msgpack_pack_map(pk, 4);
    pack_cstr(pk, "end");
    msgpack_pack_true(pk);
    pack_cstr(pk, "records");
    msgpack_pack_int64(pk, w->records);
    pack_cstr(pk, "errors");
    msgpack_pack_int64(pk, w->own_failed + w->up_errors);
    pack_cstr(pk, "failed");
    msgpack_pack_array(pk, (size_t)w->nfailed);
    for (int i = 0; i < w->nfailed; i++) pack_cstr(pk, w->failed[i]);
    write_or_die(w, w->body.data, w->body.size);
    flush_or_die(w);
    writer_free(w);
}

void ws_writer_abandon(ws_writer *w) { writer_free(w); }
