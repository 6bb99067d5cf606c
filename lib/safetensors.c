/* safetensors.c - read-only safetensors loader (formats/safetensors.md).
 *
 * The file is mapped, not read: weights are used in place when aligned, and a
 * file of any size costs nothing until its pages are touched. The only
 * allocations proportional to the input are jansson's parse of the header and
 * our table of it; the header is capped at ST_MAX_HEADER bytes and checked
 * against the file size before anything is allocated for it. Every offset and
 * size is validated in st_open(), with overflow-checked arithmetic, so a
 * lookup can never point outside the mapping. */
#define _POSIX_C_SOURCE 200809L
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors files are little-endian; this host is not (byte swapping is not implemented)"
#endif

static const struct {
    const char *name;
    size_t size;
} dtypes[ST_DTYPE_COUNT] = {
    [ST_F64] = {"F64", 8}, [ST_F32] = {"F32", 4}, [ST_F16] = {"F16", 2}, [ST_BF16] = {"BF16", 2},
    [ST_I64] = {"I64", 8}, [ST_I32] = {"I32", 4}, [ST_I16] = {"I16", 2}, [ST_I8] = {"I8", 1},
    [ST_U8] = {"U8", 1},   [ST_BOOL] = {"BOOL", 1},
};

const char *st_dtype_name(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtypes[t].name : "?"; }
size_t st_dtype_size(st_dtype t) { return (unsigned)t < ST_DTYPE_COUNT ? dtypes[t].size : 0; }

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t *shape;
    size_t numel, nbytes;
    size_t begin, end; /* within the data section */
    void *copy;        /* aligned copy, when the mapped data is not aligned */
    int used;
} entry;

typedef struct {
    char *key, *val;
} meta;

struct st_file {
    char *path;
    unsigned char *map;
    size_t size;
    const unsigned char *data; /* map + 8 + header length */
    size_t data_size;
    entry *t;                  /* in data-offset order */
    int n;
    entry **by_name;           /* sorted by name, for bsearch */
    meta *meta;                /* sorted by key */
    int nmeta;
};

/* Names in messages are cut so one absurd key cannot hide the reason. */
#define NAME_FMT "'%.200s'"

static void ferr(char *err, size_t errlen, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void ferr(char *err, size_t errlen, const char *path, const char *fmt, ...) {
    if (!err || !errlen) return;
    int k = snprintf(err, errlen, "%s: ", path);
    if (k < 0 || (size_t)k >= errlen) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err + k, errlen - k, fmt, ap);
    va_end(ap);
}

/* "[3, 5, 7]"; wildcards (-1) as "*"; cut with "..." when it does not fit. */
static const char *fmt_shape(char *buf, size_t len, int ndim, const int64_t *shape) {
    size_t k = 0;
    buf[k++] = '[';
    for (int i = 0; i < ndim; i++) {
        char num[32];
        if (shape[i] == -1) snprintf(num, sizeof num, "%s*", i ? ", " : "");
        else snprintf(num, sizeof num, "%s%" PRId64, i ? ", " : "", shape[i]);
        size_t m = strlen(num);
        if (k + m + 5 > len) {
            memcpy(buf + k, ", ...", 5);
            k += 5;
            break;
        }
        memcpy(buf + k, num, m);
        k += m;
    }
    buf[k++] = ']';
    buf[k] = 0;
    return buf;
}

/* A JSON value in a few words, for "is not a non-negative integer" messages. */
static const char *describe(const json_t *v, char *buf, size_t len) {
    switch (json_typeof(v)) {
    case JSON_INTEGER: snprintf(buf, len, "%" JSON_INTEGER_FORMAT, json_integer_value(v)); break;
    case JSON_REAL: snprintf(buf, len, "a float (%g)", json_real_value(v)); break;
    case JSON_STRING: snprintf(buf, len, "a string"); break;
    case JSON_ARRAY: snprintf(buf, len, "an array"); break;
    case JSON_OBJECT: snprintf(buf, len, "an object"); break;
    case JSON_TRUE:
    case JSON_FALSE: snprintf(buf, len, "a boolean"); break;
    default: snprintf(buf, len, "null"); break;
    }
    return buf;
}

static int by_offset(const void *a, const void *b) {
    const entry *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return 0;
}

static int by_name(const void *a, const void *b) {
    return strcmp((*(entry *const *)a)->name, (*(entry *const *)b)->name);
}

static int by_key(const void *a, const void *b) { return strcmp(((const meta *)a)->key, ((const meta *)b)->key); }

static int parse_metadata(st_file *f, const json_t *m, char *err, size_t errlen) {
    if (!json_is_object(m)) {
        ferr(err, errlen, f->path, "\"__metadata__\" is not an object");
        return -1;
    }
    const char *key;
    json_t *v;
    f->meta = xcalloc(json_object_size(m) + 1, sizeof *f->meta);
    json_object_foreach((json_t *)m, key, v) {
        if (!json_is_string(v)) {
            char d[64];
            ferr(err, errlen, f->path, "__metadata__ key " NAME_FMT " is %s, not a string (values must be strings)",
                 key, describe(v, d, sizeof d));
            return -1;
        }
        /* jansson rejects \u0000 in strings (no JSON_ALLOW_NUL), so these are C strings */
        f->meta[f->nmeta].key = xstrdup(key);
        f->meta[f->nmeta].val = xstrdup(json_string_value(v));
        f->nmeta++;
    }
    qsort(f->meta, f->nmeta, sizeof *f->meta, by_key);
    return 0;
}

/* A JSON integer >= 0, as uint64. */
static int nonneg(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return -1;
    *out = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_entry(st_file *f, entry *e, const char *name, const json_t *v, char *err, size_t errlen) {
    char d[64], s1[256];
    e->name = xstrdup(name);
    if (!json_is_object(v)) {
        ferr(err, errlen, f->path, "tensor " NAME_FMT ": entry is %s, not an object", name, describe(v, d, sizeof d));
        return -1;
    }

    const json_t *dt = json_object_get(v, "dtype");
    if (!json_is_string(dt)) {
        ferr(err, errlen, f->path, "tensor " NAME_FMT ": \"dtype\" is missing or not a string", name);
        return -1;
    }
    int found = 0;
    for (int i = 0; i < ST_DTYPE_COUNT && !found; i++)
        if (strcmp(json_string_value(dt), dtypes[i].name) == 0) e->dtype = (st_dtype)i, found = 1;
    if (!found) {
        ferr(err, errlen, f->path,
             "tensor " NAME_FMT " has unsupported dtype '%.32s' (supported: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL)",
             name, json_string_value(dt));
        return -1;
    }

    const json_t *sh = json_object_get(v, "shape");
    if (!json_is_array(sh)) {
        ferr(err, errlen, f->path, "tensor " NAME_FMT ": \"shape\" is missing or not an array", name);
        return -1;
    }
    /* the header is at most ST_MAX_HEADER bytes, so the rank fits an int */
    e->ndim = (int)json_array_size(sh);
    e->shape = e->ndim ? xmalloc(e->ndim * sizeof *e->shape) : NULL;
    /* Like the official reader, any overflowing partial product is an error
       (even if a later 0 would make the total 0): consumers multiply dims too. */
    size_t numel = 1;
    int overflow = 0;
    for (int i = 0; i < e->ndim; i++) {
        const json_t *x = json_array_get(sh, i);
        uint64_t dim;
        if (nonneg(x, &dim) != 0) {
            ferr(err, errlen, f->path, "tensor " NAME_FMT ": shape entry %d is %s, not a non-negative integer", name, i,
                 describe(x, d, sizeof d));
            return -1;
        }
        e->shape[i] = (int64_t)dim;
        if (!overflow && (dim > SIZE_MAX || mul_overflow_size(numel, (size_t)dim, &numel) != 0)) overflow = 1;
    }
    if (overflow || mul_overflow_size(numel, dtypes[e->dtype].size, &e->nbytes) != 0) {
        ferr(err, errlen, f->path, "tensor " NAME_FMT ": shape %s is too large (its byte size overflows)", name,
             fmt_shape(s1, sizeof s1, e->ndim, e->shape));
        return -1;
    }
    e->numel = numel;

    const json_t *off = json_object_get(v, "data_offsets");
    uint64_t b, en;
    if (!json_is_array(off) || json_array_size(off) != 2 || nonneg(json_array_get(off, 0), &b) != 0 ||
        nonneg(json_array_get(off, 1), &en) != 0) {
        ferr(err, errlen, f->path,
             "tensor " NAME_FMT ": \"data_offsets\" is missing or not [begin, end] with non-negative integers", name);
        return -1;
    }
    if (b > en) {
        ferr(err, errlen, f->path, "tensor " NAME_FMT ": data_offsets [%" PRIu64 ", %" PRIu64 "] are reversed", name,
             b, en);
        return -1;
    }
    if (en - b != (uint64_t)e->nbytes) {
        ferr(err, errlen, f->path,
             "tensor " NAME_FMT ": data_offsets [%" PRIu64 ", %" PRIu64 "] hold %" PRIu64
             " bytes, but dtype %s and shape %s need %zu",
             name, b, en, en - b, dtypes[e->dtype].name, fmt_shape(s1, sizeof s1, e->ndim, e->shape), e->nbytes);
        return -1;
    }
    /* Checked against the data section after sorting, so that a truncated
       file names the tensor that was cut. (Clamping only matters where
       size_t is 32 bits.) */
    e->begin = en > SIZE_MAX ? SIZE_MAX : (size_t)b;
    e->end = en > SIZE_MAX ? SIZE_MAX : (size_t)en;
    return 0;
}

static int parse_header(st_file *f, const json_t *root, char *err, size_t errlen) {
    if (!json_is_object(root)) {
        char d[64];
        ferr(err, errlen, f->path, "header is %s, not a JSON object", describe(root, d, sizeof d));
        return -1;
    }
    const json_t *m = json_object_get(root, "__metadata__");
    if (m && parse_metadata(f, m, err, errlen) != 0) return -1;

    f->t = xcalloc(json_object_size(root) + 1, sizeof *f->t);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        if (strcmp(key, "__metadata__") == 0) continue;
        entry *e = &f->t[f->n++];
        if (parse_entry(f, e, key, v, err, errlen) != 0) return -1;
    }

    qsort(f->t, f->n, sizeof *f->t, by_offset);
    for (int i = 0; i < f->n; i++) {
        const entry *e = &f->t[i];
        if (e->end > f->data_size) {
            ferr(err, errlen, f->path, "tensor " NAME_FMT ": data_offsets [%zu, %zu] exceed the data section (%zu bytes)",
                 e->name, e->begin, e->end, f->data_size);
            return -1;
        }
    }
    /* Sorted by begin, so each range need only be compared with the previous
       non-empty one. Empty tensors occupy no bytes and overlap nothing. */
    const entry *last = NULL;
    for (int i = 0; i < f->n; i++) {
        const entry *e = &f->t[i];
        if (e->begin == e->end) continue;
        if (last && e->begin < last->end) {
            ferr(err, errlen, f->path,
                 "tensor " NAME_FMT ": data_offsets [%zu, %zu] overlap those of tensor " NAME_FMT " [%zu, %zu]", e->name,
                 e->begin, e->end, last->name, last->begin, last->end);
            return -1;
        }
        last = e; /* e->end >= last->end, since e->begin >= last->end */
    }

    f->by_name = xmalloc((f->n + 1) * sizeof *f->by_name);
    for (int i = 0; i < f->n; i++) f->by_name[i] = &f->t[i];
    qsort(f->by_name, f->n, sizeof *f->by_name, by_name);
    return 0;
}

st_file *st_open(const char *path, char *err, size_t errlen) {
    st_file *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(path);
    if (err && errlen) err[0] = 0;

    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ferr(err, errlen, path, "%s", strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        ferr(err, errlen, path, "%s", strerror(errno));
        close(fd);
        goto fail;
    }
    if (!S_ISREG(sb.st_mode)) {
        /* mmap needs a regular file; a pipe would have to be read whole first */
        ferr(err, errlen, path, "%s", S_ISDIR(sb.st_mode) ? "is a directory" : "not a regular file");
        close(fd);
        goto fail;
    }
    if (sb.st_size < 8) {
        if (sb.st_size == 0) ferr(err, errlen, path, "file is empty, not a safetensors file");
        else ferr(err, errlen, path, "file is %lld bytes, too short for the 8-byte header length", (long long)sb.st_size);
        close(fd);
        goto fail;
    }
    if ((uint64_t)sb.st_size > SIZE_MAX) {
        ferr(err, errlen, path, "file is too large to map (%lld bytes)", (long long)sb.st_size);
        close(fd);
        goto fail;
    }
    f->size = (size_t)sb.st_size;
    void *p = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
    int e = errno;
    close(fd); /* the mapping keeps the file */
    if (p == MAP_FAILED) {
        ferr(err, errlen, path, "cannot map: %s", strerror(e));
        goto fail;
    }
    f->map = p;

    uint64_t n;
    memcpy(&n, f->map, 8); /* little-endian host (checked above) */
    if (n > ST_MAX_HEADER) {
        ferr(err, errlen, path, "header length %" PRIu64 " exceeds the limit of %d bytes (corrupt or not a safetensors file)",
             n, ST_MAX_HEADER);
        goto fail;
    }
    if (n > f->size - 8) {
        ferr(err, errlen, path,
             "header length %" PRIu64 " exceeds the %zu bytes that follow it (truncated or not a safetensors file)", n,
             f->size - 8);
        goto fail;
    }
    f->data = f->map + 8 + n;
    f->data_size = f->size - 8 - (size_t)n;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        ferr(err, errlen, path, "header is not valid JSON: %s (header byte %d)", jerr.text, jerr.position);
        goto fail;
    }
    int rc = parse_header(f, root, err, errlen);
    json_decref(root);
    if (rc != 0) goto fail;
    return f;

fail:
    st_close(f);
    return NULL;
}

void st_close(st_file *f) {
    if (!f) return;
    if (f->map) munmap(f->map, f->size);
    if (f->t)
        for (int i = 0; i < f->n; i++) {
            free(f->t[i].name);
            free(f->t[i].shape);
            free(f->t[i].copy);
        }
    free(f->t);
    free(f->by_name);
    for (int i = 0; i < f->nmeta; i++) {
        free(f->meta[i].key);
        free(f->meta[i].val);
    }
    free(f->meta);
    free(f->path);
    free(f);
}

const char *st_path(const st_file *f) { return f->path; }

static const meta *find_meta(const st_file *f, const char *key) {
    if (!f->nmeta) return NULL;
    meta k = {(char *)key, NULL};
    return bsearch(&k, f->meta, f->nmeta, sizeof *f->meta, by_key);
}

const char *st_meta(const st_file *f, const char *key) {
    const meta *m = find_meta(f, key);
    return m ? m->val : NULL;
}

int st_meta_int(const st_file *f, const char *key, long *out) {
    const char *s = st_meta(f, key);
    if (!s) return -1;
    /* strtol alone would accept spaces, '+', and trailing garbage is easy to miss */
    const char *d = s[0] == '-' ? s + 1 : s;
    if (*d < '0' || *d > '9') return -2;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno == ERANGE || *end != 0) return -2;
    *out = v;
    return 0;
}

int st_meta_count(const st_file *f) { return f->nmeta; }
const char *st_meta_key(const st_file *f, int i) { return i >= 0 && i < f->nmeta ? f->meta[i].key : NULL; }

int st_count(const st_file *f) { return f->n; }
const char *st_name(const st_file *f, int i) { return i >= 0 && i < f->n ? f->t[i].name : NULL; }

static entry *find(const st_file *f, const char *name) {
    if (!f->n) return NULL;
    entry k = {.name = (char *)name}, *kp = &k;
    entry **r = bsearch(&kp, f->by_name, f->n, sizeof *f->by_name, by_name);
    return r ? *r : NULL;
}

int st_get(st_file *f, const char *name, st_tensor *out, char *err, size_t errlen) {
    entry *e = find(f, name);
    if (!e) {
        ferr(err, errlen, f->path, "tensor " NAME_FMT " is missing", name);
        return -1;
    }
    e->used = 1;
    /* a valid non-NULL pointer for empty tensors, aligned for any dtype */
    static const double empty;
    const void *p = &empty;
    if (e->nbytes) {
        p = f->data + e->begin;
        /* The mapping is page-aligned but the data section starts wherever
           the header ends; an unpadded header leaves it misaligned. */
        if ((uintptr_t)p % dtypes[e->dtype].size != 0) {
            if (!e->copy) {
                e->copy = xmalloc_aligned(e->nbytes);
                memcpy(e->copy, p, e->nbytes);
            }
            p = e->copy;
        }
    }
    *out = (st_tensor){.name = e->name, .dtype = e->dtype, .ndim = e->ndim, .shape = e->shape,
                       .numel = e->numel, .nbytes = e->nbytes, .data = p};
    return 0;
}

const void *st_get_as(st_file *f, const char *name, st_dtype dtype, int ndim, const int64_t *shape, char *err,
                      size_t errlen) {
    st_tensor t;
    if (st_get(f, name, &t, err, errlen) != 0) return NULL;
    if (t.dtype != dtype) {
        ferr(err, errlen, f->path, "tensor " NAME_FMT " has dtype %s, expected %s", name, st_dtype_name(t.dtype),
             st_dtype_name(dtype));
        return NULL;
    }
    if (ndim < 0) return t.data;
    int ok = t.ndim == ndim;
    for (int i = 0; ok && shape && i < ndim; i++)
        if (shape[i] != -1 && shape[i] != t.shape[i]) ok = 0;
    if (!ok) {
        char have[256], want[256];
        fmt_shape(have, sizeof have, t.ndim, t.shape);
        if (shape) fmt_shape(want, sizeof want, ndim, shape);
        else snprintf(want, sizeof want, "%d dimensions", ndim);
        ferr(err, errlen, f->path, "tensor " NAME_FMT " has shape %s, expected %s", name, have, want);
        return NULL;
    }
    return t.data;
}

const float *st_get_f32(st_file *f, const char *name, int ndim, const int64_t *shape, char *err, size_t errlen) {
    return st_get_as(f, name, ST_F32, ndim, shape, err, errlen);
}

int st_check_all_used(const st_file *f, char *err, size_t errlen) {
    int unused = 0, first = -1;
    for (int i = 0; i < f->n; i++)
        if (!f->t[i].used) {
            if (first < 0) first = i;
            unused++;
        }
    if (first < 0) return 0;
    if (unused == 1)
        ferr(err, errlen, f->path, "unexpected tensor " NAME_FMT " (not used by this model)", f->t[first].name);
    else
        ferr(err, errlen, f->path, "unexpected tensor " NAME_FMT " (and %d more not used by this model)",
             f->t[first].name, unused - 1);
    return -1;
}
