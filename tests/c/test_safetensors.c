/* test_safetensors.c - the safetensors loader on hand-written files: valid
 * files (padded and unpadded headers), every kind of malformed header,
 * truncation at every byte, mutated headers, and the lookup API. */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
#include "safetensors.h"

static char dir[] = "/tmp/wsac-st-XXXXXX";
static char err[1024];

/* ------------------------------------------------------------------ writing */

static const char *path_of(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* 8-byte LE length + header + data into buf (malloc'ed); returns the size. */
static size_t build(unsigned char **out, const char *header, size_t hlen, const void *data, size_t dlen) {
    size_t n = 8 + hlen + dlen;
    unsigned char *b = malloc(n ? n : 1);
    uint64_t h = hlen;
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(h >> (8 * i));
    memcpy(b + 8, header, hlen);
    if (dlen) memcpy(b + 8 + hlen, data, dlen);
    *out = b;
    return n;
}

/* A file with the given header (unpadded) and dlen data bytes (0x5a). */
static const char *mkfile(const char *name, const char *header, size_t dlen) {
    const char *p = path_of(name);
    unsigned char *data = malloc(dlen + 1), *b;
    memset(data, 0x5a, dlen);
    size_t n = build(&b, header, strlen(header), data, dlen);
    write_bytes(p, b, n);
    free(b);
    free(data);
    return p;
}

static int contains(const char *s, const char *sub) { return sub == NULL || strstr(s, sub) != NULL; }

/* The file must be refused with a message starting with its path and
 * containing want1 and want2 (either may be NULL). */
static void expect_fail_path(const char *label, const char *path, const char *want1, const char *want2) {
    err[0] = 0;
    st_file *f = st_open(path, err, sizeof err);
    size_t pl = strlen(path);
    int ok = f == NULL && strncmp(err, path, pl) == 0 && err[pl] == ':' && contains(err, want1) && contains(err, want2);
    CHECKF(ok, label, "%s: got \"%s\", wanted \"%s\"%s%s%s", f ? "opened" : "refused", err, want1 ? want1 : "",
           want2 ? " and \"" : "", want2 ? want2 : "", want2 ? "\"" : "");
    st_close(f);
}

static void expect_fail(const char *label, const char *header, size_t dlen, const char *want1, const char *want2) {
    expect_fail_path(label, mkfile("bad.safetensors", header, dlen), want1, want2);
}

static st_file *expect_open(const char *label, const char *path) {
    err[0] = 0;
    st_file *f = st_open(path, err, sizeof err);
    CHECKF(f != NULL, label, "%s", err);
    return f;
}

/* ------------------------------------------------------------------ a valid model */

typedef struct {
    const char *name, *dtype;
    int ndim;
    int64_t shape[4];
    const void *data;
    size_t nbytes;
} spec;

static float a_vals[3 * 5 * 7];
static const double b_vals[2] = {3.141592653589793, -1e300};
static const int32_t c_vals[4] = {INT32_MIN, -1, 0, INT32_MAX};
static const uint8_t d_vals[3] = {0, 127, 255};
static const int64_t e_vals[1] = {INT64_MIN + 1};
static const uint16_t f16_vals[2] = {0x3c00, 0xc000};
static const uint16_t bf_vals[2] = {0x3f80, 0x4049};
static const int16_t i16_vals[3] = {-32768, 1, 32767};
static const int8_t i8_vals[2] = {-128, 127};
static const uint8_t bool_vals[2] = {0, 1};
static const float scalar_val[1] = {42.5f};

/* In data order: largest elements first, so every tensor is aligned relative
 * to the start of the data section. */
static spec model[] = {
    {"b.f64", "F64", 1, {2}, b_vals, sizeof b_vals},
    {"e.i64", "I64", 2, {1, 1}, e_vals, sizeof e_vals},
    {"audio_proj.0.weight", "F32", 3, {3, 5, 7}, a_vals, sizeof a_vals},
    {"c.i32", "I32", 1, {4}, c_vals, sizeof c_vals},
    {"scalar", "F32", 0, {0}, scalar_val, sizeof scalar_val},
    {"f16", "F16", 1, {2}, f16_vals, sizeof f16_vals},
    {"bf16", "BF16", 1, {2}, bf_vals, sizeof bf_vals},
    {"i16", "I16", 1, {3}, i16_vals, sizeof i16_vals},
    {"i8", "I8", 1, {2}, i8_vals, sizeof i8_vals},
    {"d.u8", "U8", 1, {3}, d_vals, sizeof d_vals},
    {"bool", "BOOL", 1, {2}, bool_vals, sizeof bool_vals},
    {"empty", "F32", 2, {0, 4}, NULL, 0},
};
enum { NMODEL = sizeof model / sizeof model[0] };
static size_t model_off[NMODEL];

static const char *model_meta = "{\"wsac.format\": \"1\", \"wsac.model\": \"clap\", \"d_model\": \"768\", "
                                "\"neg\": \"-3\", \"space\": \" 1\", \"plus\": \"+1\", \"junk\": \"1x\", "
                                "\"empty\": \"\", \"huge\": \"99999999999999999999\", \"text\": \"h\\u00e9llo\"}";

/* Writes the model; pad 8: header padded with spaces to a multiple of 8 (the
 * official writer), pad 1: header length made odd so the data is misaligned.
 * Entries are written in reverse data order, __metadata__ in the middle. */
static size_t build_model(unsigned char **out, int pad) {
    char *h = malloc(8192);
    size_t k = 0, off = 0;
    for (int i = 0; i < NMODEL; i++) {
        model_off[i] = off;
        off += model[i].nbytes;
    }
    unsigned char *data = malloc(off + 1);
    for (int i = 0; i < NMODEL; i++)
        if (model[i].nbytes) memcpy(data + model_off[i], model[i].data, model[i].nbytes);
    k += sprintf(h + k, "{");
    for (int i = NMODEL - 1; i >= 0; i--) {
        const spec *s = &model[i];
        k += sprintf(h + k, "\"%s\":{\"dtype\":\"%s\",\"shape\":[", s->name, s->dtype);
        for (int j = 0; j < s->ndim; j++) k += sprintf(h + k, "%s%lld", j ? "," : "", (long long)s->shape[j]);
        k += sprintf(h + k, "],\"data_offsets\":[%zu,%zu]},", model_off[i], model_off[i] + s->nbytes);
        if (i == NMODEL / 2) k += sprintf(h + k, "\"__metadata__\":%s,", model_meta);
    }
    h[k - 1] = '}';
    if (pad == 8)
        while (k % 8) h[k++] = ' ';
    else if (k % 2 == 0) h[k++] = ' ';
    size_t n = build(out, h, k, data, off);
    free(h);
    free(data);
    return n;
}

static void check_model(const char *label, const char *path, int aligned_header) {
    char name[128];
    st_file *f = expect_open(label, path);
    if (!f) return;
    snprintf(name, sizeof name, "%s: count", label);
    CHECKF(st_count(f) == NMODEL, name, "%d", st_count(f));
    /* st_name lists tensors in data order */
    int order = st_count(f) == NMODEL;
    for (int i = 0; order && i < NMODEL; i++) order = strcmp(st_name(f, i), model[i].name) == 0;
    snprintf(name, sizeof name, "%s: st_name in data order", label);
    CHECK(order && st_name(f, NMODEL) == NULL && st_name(f, -1) == NULL, name);
    snprintf(name, sizeof name, "%s: st_path", label);
    CHECK(strcmp(st_path(f), path) == 0, name);

    const void *first = NULL;
    size_t first_off = 0;
    for (int i = 0; i < NMODEL; i++) {
        const spec *s = &model[i];
        st_tensor t;
        int rc = st_get(f, s->name, &t, err, sizeof err);
        size_t esz = rc == 0 ? st_dtype_size(t.dtype) : 1;
        int ok = rc == 0 && strcmp(st_dtype_name(t.dtype), s->dtype) == 0 && t.ndim == s->ndim &&
                 t.nbytes == s->nbytes && t.numel == s->nbytes / esz && t.data != NULL &&
                 (uintptr_t)t.data % esz == 0 && strcmp(t.name, s->name) == 0;
        for (int j = 0; ok && j < s->ndim; j++) ok = t.shape[j] == s->shape[j];
        if (ok && s->nbytes) ok = memcmp(t.data, s->data, s->nbytes) == 0;
        snprintf(name, sizeof name, "%s: tensor %s read back exactly", label, s->name);
        CHECKF(ok, name, "rc %d %s", rc, rc ? err : "");
        if (rc == 0 && s->nbytes && aligned_header) {
            /* in place: the distances between tensors are those in the file */
            if (!first) first = t.data, first_off = model_off[i];
            snprintf(name, sizeof name, "%s: tensor %s used in place", label, s->name);
            CHECK((const char *)t.data - (const char *)first == (ptrdiff_t)(model_off[i] - first_off), name);
        }
    }

    /* F32 through the typed lookups; the second lookup returns the same pointer */
    int64_t shp[3] = {3, 5, 7};
    const float *a = st_get_f32(f, "audio_proj.0.weight", 3, shp, err, sizeof err);
    const float *a2 = st_get_f32(f, "audio_proj.0.weight", 3, shp, err, sizeof err);
    snprintf(name, sizeof name, "%s: st_get_f32 exact shape", label);
    CHECKF(a && a == a2 && (uintptr_t)a % 4 == 0 && memcmp(a, a_vals, sizeof a_vals) == 0, name, "%s", err);
    const float *sc = st_get_f32(f, "scalar", 0, NULL, err, sizeof err);
    snprintf(name, sizeof name, "%s: scalar", label);
    CHECKF(sc && *sc == 42.5f, name, "%s", err);
    const float *em = st_get_f32(f, "empty", 2, (int64_t[]){0, 4}, err, sizeof err);
    snprintf(name, sizeof name, "%s: empty tensor gives a non-NULL pointer", label);
    CHECKF(em != NULL, name, "%s", err);
    const double *b = st_get_as(f, "b.f64", ST_F64, 1, (int64_t[]){2}, err, sizeof err);
    snprintf(name, sizeof name, "%s: F64 aligned", label);
    CHECKF(b && (uintptr_t)b % 8 == 0 && b[0] == b_vals[0] && b[1] == b_vals[1], name, "%s", err);

    /* metadata */
    long v = 0;
    snprintf(name, sizeof name, "%s: metadata strings", label);
    CHECK(st_meta(f, "wsac.format") && strcmp(st_meta(f, "wsac.format"), "1") == 0 && st_meta(f, "wsac.model") &&
              strcmp(st_meta(f, "wsac.model"), "clap") == 0 && strcmp(st_meta(f, "text"), "h\xc3\xa9llo") == 0 &&
              st_meta(f, "nope") == NULL && st_meta(f, "audio_proj.0.weight") == NULL,
          name);
    snprintf(name, sizeof name, "%s: metadata keys sorted", label);
    int mk = st_meta_count(f) == 10;
    for (int i = 1; mk && i < st_meta_count(f); i++) mk = strcmp(st_meta_key(f, i - 1), st_meta_key(f, i)) < 0;
    CHECK(mk && st_meta_key(f, 10) == NULL, name);
    snprintf(name, sizeof name, "%s: st_meta_int", label);
    int r1 = st_meta_int(f, "d_model", &v);
    long d_model = v;
    int r2 = st_meta_int(f, "neg", &v);
    CHECKF(r1 == 0 && d_model == 768 && r2 == 0 && v == -3, name, "%d %ld %d %ld", r1, d_model, r2, v);
    snprintf(name, sizeof name, "%s: st_meta_int strict", label);
    v = 77;
    CHECK(st_meta_int(f, "space", &v) == -2 && st_meta_int(f, "plus", &v) == -2 && st_meta_int(f, "junk", &v) == -2 &&
              st_meta_int(f, "empty", &v) == -2 && st_meta_int(f, "huge", &v) == -2 &&
              st_meta_int(f, "wsac.model", &v) == -2 && st_meta_int(f, "absent", &v) == -1 && v == 77,
          name);

    snprintf(name, sizeof name, "%s: all used", label);
    CHECKF(st_check_all_used(f, err, sizeof err) == 0, name, "%s", err);
    st_close(f);
}

/* ------------------------------------------------------------------ tests */

static void test_valid(void) {
    for (int i = 0; i < 3 * 5 * 7; i++) a_vals[i] = i * 0.5f - 3.25f;
    a_vals[0] = -0.0f;
    a_vals[1] = 1e-40f; /* subnormal */
    a_vals[2] = FLT_MAX;
    a_vals[3] = NAN;

    unsigned char *b;
    size_t n = build_model(&b, 8);
    uint64_t hl;
    memcpy(&hl, b, 8);
    CHECKF(hl % 8 == 0, "padded header length is a multiple of 8", "%llu", (unsigned long long)hl);
    write_bytes(path_of("padded.safetensors"), b, n);
    check_model("padded", path_of("padded.safetensors"), 1);
    free(b);

    n = build_model(&b, 1);
    memcpy(&hl, b, 8);
    CHECKF(hl % 2 == 1, "unpadded header length is odd", "%llu", (unsigned long long)hl);
    write_bytes(path_of("unpadded.safetensors"), b, n);
    check_model("unpadded (data copied to aligned memory)", path_of("unpadded.safetensors"), 0);
    free(b);

    st_file *f = expect_open("empty header {}", mkfile("empty.safetensors", "{}", 0));
    if (f) {
        CHECK(st_count(f) == 0 && st_meta_count(f) == 0 && st_meta(f, "x") == NULL &&
                  st_check_all_used(f, err, sizeof err) == 0,
              "empty header: no tensors, no metadata");
        CHECK(st_get(f, "x", &(st_tensor){0}, err, sizeof err) == -1 && contains(err, "tensor 'x' is missing"),
              "empty header: lookup fails");
        st_close(f);
    }

    /* trailing whitespace (the official padding), a hole in the data, a zero-length
       tensor inside another's range, extra fields, and a 0 before huge dims */
    f = expect_open("accepted oddities",
                    mkfile("odd.safetensors",
                           "{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4],\"extra\":1},"
                           "\"b\":{\"dtype\":\"F32\",\"shape\":[0,4],\"data_offsets\":[2,2]},"
                           "\"c\":{\"dtype\":\"F32\",\"shape\":[0,1000000000000,1000000000000],\"data_offsets\":[8,8]},"
                           "\"d\":{\"dtype\":\"U8\",\"shape\":[2],\"data_offsets\":[6,8]}}   \n\t ",
                           8));
    st_close(f);
}

static void test_open_errors(void) {
    expect_fail_path("nonexistent file", path_of("nonexistent.safetensors"), "No such file", NULL);
    expect_fail_path("directory", dir, "is a directory", NULL);
    write_bytes(path_of("zero.safetensors"), "", 0);
    expect_fail_path("empty file", path_of("zero.safetensors"), "file is empty", NULL);
    write_bytes(path_of("three.safetensors"), "\x02\0\0", 3);
    expect_fail_path("3-byte file", path_of("three.safetensors"), "file is 3 bytes, too short", NULL);

    /* length larger than the file; 2^63; larger than the limit */
    const char *p = path_of("len.safetensors");
    write_bytes(p, "\x03\0\0\0\0\0\0\0{}", 10);
    expect_fail_path("header length > file", p, "header length 3 exceeds the 2 bytes that follow it", NULL);
    write_bytes(p, "\0\0\0\0\0\0\0\x80{}", 10);
    expect_fail_path("header length 2^63", p, "header length 9223372036854775808 exceeds the limit of 16777216", NULL);
    write_bytes(p, "\xff\xff\xff\xff\xff\xff\xff\xff{}", 10);
    expect_fail_path("header length 2^64-1", p, "header length 18446744073709551615 exceeds the limit", NULL);

    /* a sparse file big enough for a header one byte over the limit: the limit, not the size, refuses it */
    uint64_t big = ST_MAX_HEADER + 1;
    int fd = open(p, O_WRONLY | O_TRUNC);
    int ok = fd >= 0 && write(fd, &big, 8) == 8 && ftruncate(fd, (off_t)(8 + big + 16)) == 0 && close(fd) == 0;
    CHECK(ok, "sparse file written");
    expect_fail_path("header length 16 MiB + 1", p, "header length 16777217 exceeds the limit of 16777216", NULL);
    /* exactly the limit is allowed (and then fails as JSON: the header is zeros) */
    big = ST_MAX_HEADER;
    fd = open(p, O_WRONLY);
    ok = fd >= 0 && write(fd, &big, 8) == 8 && close(fd) == 0;
    expect_fail_path("header length of exactly 16 MiB is not over the limit", p, "header is not valid JSON", NULL);
    /* issue 6: a 100 MB header is refused before anything is allocated for it */
    big = 100000000;
    fd = open(p, O_WRONLY | O_TRUNC);
    ok = fd >= 0 && write(fd, &big, 8) == 8 && ftruncate(fd, (off_t)(8 + big + 16)) == 0 && close(fd) == 0;
    expect_fail_path("a 100 MB header is refused", p, "header length 100000000 exceeds the limit of 16777216", NULL);
    unlink(p);

    expect_fail("zero header length", "", 0, "header is not valid JSON", NULL);
    expect_fail("invalid JSON", "{\"a\": ", 0, "header is not valid JSON", NULL);
    expect_fail("trailing garbage", "{} x", 0, "header is not valid JSON: end of file expected", NULL);
    expect_fail("invalid UTF-8", "{\"\xff\":1}", 0, "header is not valid JSON", NULL);
    expect_fail("scalar JSON", "42", 0, "header is not valid JSON", NULL);
    expect_fail("JSON array", "[1, 2]", 0, "header is an array, not a JSON object", NULL);
    expect_fail("duplicate keys",
                "{\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"x\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[1,2]}}",
                2, "duplicate object key", NULL);
    expect_fail("NUL in key", "{\"a\\u0000b\":1}", 0, "not valid JSON", NULL);

    /* very deep nesting: jansson's depth limit, not a stack overflow */
    size_t depth = 100000;
    char *deep = malloc(2 * depth + 32);
    size_t k = (size_t)sprintf(deep, "{\"__metadata__\":");
    for (size_t i = 0; i < depth; i++) deep[k++] = '[';
    for (size_t i = 0; i < depth; i++) deep[k++] = ']';
    deep[k++] = '}';
    deep[k] = 0;
    expect_fail("deep nesting", deep, 0, "not valid JSON", NULL);
    free(deep);
}

static void test_entry_errors(void) {
#define T(dt, sh, off) "{\"x\":{\"dtype\":" dt ",\"shape\":" sh ",\"data_offsets\":" off "}}"
    expect_fail("entry not an object", "{\"x\": 3}", 0, "tensor 'x': entry is 3, not an object", NULL);
    expect_fail("dtype missing", "{\"x\":{\"shape\":[1],\"data_offsets\":[0,4]}}", 4, "tensor 'x': \"dtype\" is missing",
                NULL);
    expect_fail("dtype not a string", T("4", "[1]", "[0,4]"), 4, "tensor 'x': \"dtype\" is missing or not a string",
                NULL);
    expect_fail("dtype U32", T("\"U32\"", "[1]", "[0,4]"), 4, "tensor 'x' has unsupported dtype 'U32'", NULL);
    expect_fail("dtype lower case", T("\"f32\"", "[1]", "[0,4]"), 4, "tensor 'x' has unsupported dtype 'f32'", NULL);
    expect_fail("shape missing", "{\"x\":{\"dtype\":\"F32\",\"data_offsets\":[0,4]}}", 4,
                "tensor 'x': \"shape\" is missing or not an array", NULL);
    expect_fail("shape not an array", T("\"F32\"", "4", "[0,4]"), 4, "tensor 'x': \"shape\" is missing or not an array",
                NULL);
    expect_fail("negative shape", T("\"F32\"", "[2,-1]", "[0,4]"), 4,
                "tensor 'x': shape entry 1 is -1, not a non-negative integer", NULL);
    expect_fail("float shape", T("\"F32\"", "[2.0]", "[0,8]"), 8, "tensor 'x': shape entry 0 is a float (2)", NULL);
    expect_fail("string shape", T("\"F32\"", "[\"2\"]", "[0,8]"), 8, "tensor 'x': shape entry 0 is a string", NULL);
    expect_fail("null shape entry", T("\"F32\"", "[null]", "[0,8]"), 8, "tensor 'x': shape entry 0 is null", NULL);
    expect_fail("huge shape literal", T("\"F32\"", "[100000000000000000000000000000]", "[0,8]"), 8,
                "header is not valid JSON: too big integer", NULL);
    expect_fail("shape product overflow", T("\"F32\"", "[1000000000000,1000000000000]", "[0,8]"), 8,
                "tensor 'x': shape [1000000000000, 1000000000000] is too large", NULL);
    expect_fail("shape product overflow before a 0", T("\"F32\"", "[1000000000000,1000000000000,0]", "[0,0]"), 0,
                "tensor 'x': shape [1000000000000, 1000000000000, 0] is too large", NULL);
    expect_fail("byte size overflow", T("\"F32\"", "[4611686018427387904]", "[0,8]"), 8,
                "tensor 'x': shape [4611686018427387904] is too large", NULL);
    expect_fail("max int64 dim", T("\"U8\"", "[9223372036854775807]", "[0,8]"), 8,
                "tensor 'x': data_offsets [0, 8] hold 8 bytes, but dtype U8 and shape [9223372036854775807] need "
                "9223372036854775807",
                NULL);

    expect_fail("data_offsets missing", "{\"x\":{\"dtype\":\"F32\",\"shape\":[1]}}", 4,
                "tensor 'x': \"data_offsets\" is missing", NULL);
    expect_fail("data_offsets one entry", T("\"F32\"", "[1]", "[4]"), 4, "tensor 'x': \"data_offsets\" is missing or not",
                NULL);
    expect_fail("data_offsets three entries", T("\"F32\"", "[1]", "[0,4,8]"), 8, "tensor 'x': \"data_offsets\"", NULL);
    expect_fail("data_offsets negative", T("\"F32\"", "[1]", "[-4,0]"), 4, "tensor 'x': \"data_offsets\"", NULL);
    expect_fail("data_offsets float", T("\"F32\"", "[1]", "[0,4.0]"), 4, "tensor 'x': \"data_offsets\"", NULL);
    expect_fail("data_offsets reversed", T("\"F32\"", "[1]", "[8,4]"), 8, "tensor 'x': data_offsets [8, 4] are reversed",
                NULL);
    const char *p = mkfile("model.safetensors", T("\"F32\"", "[20]", "[0,80]"), 64);
    err[0] = 0;
    st_file *f = st_open(p, err, sizeof err);
    char want[600];
    snprintf(want, sizeof want, "%s: tensor 'x': data_offsets [0, 80] exceed the data section (64 bytes)", p);
    CHECKF(!f && strcmp(err, want) == 0, "data_offsets out of range (exact message)", "%s", err);
    st_close(f);
    expect_fail("data_offsets huge", T("\"F32\"", "[1]", "[9223372036854775800,9223372036854775804]"), 8,
                "tensor 'x': data_offsets [9223372036854775800, 9223372036854775804] exceed the data section (8 bytes)",
                NULL);
    expect_fail("data_offsets wrong length", T("\"F32\"", "[3,5]", "[0,64]"), 64,
                "tensor 'x': data_offsets [0, 64] hold 64 bytes, but dtype F32 and shape [3, 5] need 60", NULL);
    expect_fail("scalar with no bytes", T("\"F32\"", "[]", "[0,0]"), 0, "shape [] need 4", NULL);
    expect_fail("overlap",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[12,28]}}",
                32, "tensor 'b': data_offsets [12, 28] overlap those of tensor 'a' [0, 16]", NULL);
    expect_fail("same offsets",
                "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
                "\"b\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[0,16]}}",
                16, "overlap those of tensor", NULL);
    expect_fail("overlap contained",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
                "\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[32,36]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[4,8]}}",
                36, "tensor 'b': data_offsets [4, 8] overlap those of tensor 'a' [0, 32]", NULL);
    expect_fail("overlap behind an empty tensor",
                "{\"a\":{\"dtype\":\"U8\",\"shape\":[32],\"data_offsets\":[0,32]},"
                "\"b\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[4,4]},"
                "\"c\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[28,32]}}",
                32, "tensor 'c': data_offsets [28, 32] overlap those of tensor 'a' [0, 32]", NULL);

    expect_fail("metadata not an object", "{\"__metadata__\": [\"a\"]}", 0, "\"__metadata__\" is not an object", NULL);
    expect_fail("metadata integer value", "{\"__metadata__\": {\"ok\": \"1\", \"n_layers\": 12}}", 0,
                "__metadata__ key 'n_layers' is 12, not a string", NULL);
    expect_fail("metadata null value", "{\"__metadata__\": {\"k\": null}}", 0, "__metadata__ key 'k' is null", NULL);
    expect_fail("metadata object value", "{\"__metadata__\": {\"k\": {}}}", 0, "__metadata__ key 'k' is an object",
                NULL);
    expect_fail("error after metadata names the tensor",
                "{\"__metadata__\": {\"k\": \"v\"}, \"ok\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[0,1]},"
                "\"audio_proj.0.weight\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[1,5]}}",
                4, "tensor 'audio_proj.0.weight': data_offsets [1, 5] exceed the data section (4 bytes)", NULL);
#undef T
}

static void test_truncation(void) {
    unsigned char *b;
    size_t n = build_model(&b, 8);
    uint64_t hl;
    memcpy(&hl, b, 8);
    const char *p = path_of("cut.safetensors");
    int bad = 0;
    char first_bad[1200] = "";
    for (size_t cut = 0; cut < n; cut++) {
        write_bytes(p, b, cut);
        err[0] = 0;
        st_file *f = st_open(p, err, sizeof err);
        const char *want = cut == 0 ? "file is empty" : cut < 8 ? "too short for the 8-byte header length"
                                                      : cut < 8 + hl ? "exceeds the"
                                                                     : "exceed the data section";
        if (f || !contains(err, want) || strncmp(err, p, strlen(p)) != 0 ||
            (cut >= 8 + hl && !contains(err, "tensor '"))) {
            if (!bad++) snprintf(first_bad, sizeof first_bad, "cut at %zu: %s (wanted %s)", cut, f ? "opened" : err, want);
        }
        st_close(f);
    }
    CHECKF(bad == 0, "truncated at every byte: refused with the right reason", "%d bad, first: %s", bad, first_bad);
    /* the interesting points once more, with their messages */
    write_bytes(p, b, 5);
    expect_fail_path("cut inside the length", p, "file is 5 bytes, too short", NULL);
    write_bytes(p, b, 8 + hl / 2);
    char want[128];
    snprintf(want, sizeof want, "header length %llu exceeds the %llu bytes that follow it", (unsigned long long)hl,
             (unsigned long long)(hl / 2));
    expect_fail_path("cut inside the header", p, want, "truncated");
    write_bytes(p, b, n - 1);
    snprintf(want, sizeof want, "tensor 'bool': data_offsets [%zu, %zu] exceed the data section (%zu bytes)",
             model_off[NMODEL - 2], model_off[NMODEL - 2] + 2, model_off[NMODEL - 1] - 1);
    expect_fail_path("cut inside the data names the tensor cut", p, want, NULL);
    write_bytes(p, b, 8 + hl + model_off[2] + 100);
    expect_fail_path("cut inside the data names the tensor cut (2)", p, "tensor 'audio_proj.0.weight': data_offsets",
                     NULL);
    write_bytes(p, b, 8 + hl);
    expect_fail_path("cut after the header", p, "tensor 'b.f64': data_offsets [0, 16] exceed the data section (0 bytes)",
                     NULL);
    free(b);
}

/* Every header byte replaced by a few troublesome values: open must either
 * refuse with a message or give tensors whose bytes can all be read. */
static void test_mutation(void) {
    unsigned char *b;
    size_t n = build_model(&b, 1);
    uint64_t hl;
    memcpy(&hl, b, 8);
    const char *p = path_of("mut.safetensors");
    static const unsigned char vals[] = {'0', '9', '-', '[', ']', '"', '}', ',', 0xff, 0};
    int opened = 0, bad = 0;
    char first_bad[1200] = "";
    for (size_t pos = 0; pos < 8 + hl; pos++) {
        for (size_t v = 0; v < sizeof vals; v++) {
            if (b[pos] == vals[v]) continue;
            unsigned char save = b[pos];
            b[pos] = vals[v];
            write_bytes(p, b, n);
            b[pos] = save;
            err[0] = 0;
            st_file *f = st_open(p, err, sizeof err);
            if (!f) {
                if (strncmp(err, p, strlen(p)) != 0 || strlen(err) < strlen(p) + 10) {
                    if (!bad++) snprintf(first_bad, sizeof first_bad, "byte %zu = %d: \"%s\"", pos, vals[v], err);
                }
                continue;
            }
            opened++;
            unsigned sum = 0;
            for (int i = 0; i < st_count(f); i++) {
                st_tensor t;
                if (st_get(f, st_name(f, i), &t, err, sizeof err) != 0) {
                    if (!bad++) snprintf(first_bad, sizeof first_bad, "byte %zu: listed tensor not found", pos);
                    continue;
                }
                for (size_t j = 0; j < t.nbytes; j++) sum += ((const unsigned char *)t.data)[j];
            }
            (void)sum;
            if (st_check_all_used(f, err, sizeof err) != 0 && !bad++)
                snprintf(first_bad, sizeof first_bad, "byte %zu: %s", pos, err);
            st_close(f);
        }
    }
    CHECKF(bad == 0, "mutated headers: refused with a message or fully readable", "%d bad, first: %s", bad, first_bad);
    CHECKF(opened > 0, "mutated headers: some still valid", "%d", opened);
    free(b);
}

static void test_lookup(void) {
    const char *p = mkfile("model.safetensors",
                           "{\"__metadata__\":{\"wsac.format\":\"1\"},"
                           "\"audio_proj.0.weight\":{\"dtype\":\"F32\",\"shape\":[3,5,7],\"data_offsets\":[0,420]},"
                           "\"ids\":{\"dtype\":\"I32\",\"shape\":[4],\"data_offsets\":[420,436]},"
                           "\"half\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[436,440]},"
                           "\"extra\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[440,444]},"
                           "\"extra2\":{\"dtype\":\"U8\",\"shape\":[0],\"data_offsets\":[444,444]}}",
                           444);
    st_file *f = expect_open("lookup file", p);
    if (!f) return;
    size_t pl = strlen(p);
#define MSG(s) (strncmp(err, p, pl) == 0 && contains(err, s))
    err[0] = 0;
    CHECKF(!st_get_f32(f, "audio_proj.1.weight", 2, NULL, err, sizeof err) &&
               MSG(": tensor 'audio_proj.1.weight' is missing"),
           "missing tensor", "%s", err);
    CHECKF(!st_get_f32(f, "ids", 1, (int64_t[]){4}, err, sizeof err) && MSG(": tensor 'ids' has dtype I32, expected F32"),
           "wrong dtype", "%s", err);
    CHECKF(!st_get_f32(f, "half", 1, (int64_t[]){2}, err, sizeof err) && MSG("tensor 'half' has dtype F16, expected F32"),
           "F16 is not F32", "%s", err);
    CHECKF(!st_get_f32(f, "audio_proj.0.weight", 3, (int64_t[]){3, 5, 8}, err, sizeof err) &&
               MSG(": tensor 'audio_proj.0.weight' has shape [3, 5, 7], expected [3, 5, 8]"),
           "wrong shape", "%s", err);
    CHECKF(!st_get_f32(f, "audio_proj.0.weight", 2, (int64_t[]){3, 5}, err, sizeof err) &&
               MSG("tensor 'audio_proj.0.weight' has shape [3, 5, 7], expected [3, 5]"),
           "wrong rank", "%s", err);
    CHECKF(!st_get_f32(f, "audio_proj.0.weight", 2, NULL, err, sizeof err) &&
               MSG("tensor 'audio_proj.0.weight' has shape [3, 5, 7], expected 2 dimensions"),
           "wrong rank, any shape", "%s", err);
    CHECKF(!st_get_f32(f, "audio_proj.0.weight", 3, (int64_t[]){-1, 6, -1}, err, sizeof err) &&
               MSG("has shape [3, 5, 7], expected [*, 6, *]"),
           "wrong shape with wildcards", "%s", err);
    const float *a = st_get_f32(f, "audio_proj.0.weight", 3, (int64_t[]){-1, 5, -1}, err, sizeof err);
    uint32_t a0 = 0;
    if (a) memcpy(&a0, a, 4);
    CHECKF(a && a0 == 0x5a5a5a5au, "wildcard shape", "%s", err);
    CHECKF(st_get_f32(f, "audio_proj.0.weight", 3, NULL, err, sizeof err) == a, "NULL shape, rank 3", "%s", err);
    CHECKF(st_get_f32(f, "audio_proj.0.weight", -1, NULL, err, sizeof err) == a, "any rank", "%s", err);
    const int32_t *ids = st_get_as(f, "ids", ST_I32, 1, (int64_t[]){-1}, err, sizeof err);
    CHECKF(ids && ids[0] == 0x5a5a5a5a, "st_get_as I32", "%s", err);

    err[0] = 0;
    CHECKF(st_check_all_used(f, err, sizeof err) == -1 && MSG(": unexpected tensor 'extra' (and 1 more"),
           "st_check_all_used names the first unused tensor", "%s", err);
    st_tensor t;
    CHECK(st_get(f, "extra", &t, err, sizeof err) == 0 && t.dtype == ST_U8 && t.nbytes == 4 && t.numel == 4,
          "st_get U8");
    CHECKF(st_check_all_used(f, err, sizeof err) == -1 && MSG(": unexpected tensor 'extra2' (not used"),
           "st_check_all_used: one left", "%s", err);
    CHECK(st_get(f, "extra2", &t, err, sizeof err) == 0 && t.nbytes == 0 && t.data != NULL, "st_get empty");
    CHECKF(st_check_all_used(f, err, sizeof err) == 0, "st_check_all_used: all used", "%s", err);

    /* a tiny error buffer is cut, never overrun; NULL is accepted */
    char small[12];
    memset(small, 'x', sizeof small);
    CHECK(!st_get_f32(f, "nope", 1, NULL, small, 8) && strlen(small) == 7 && small[8] == 'x', "small error buffer");
    CHECK(!st_get_f32(f, "nope", 1, NULL, NULL, 0), "NULL error buffer");
    CHECK(!st_open(path_of("nonexistent"), NULL, 0), "st_open with NULL error buffer");
    st_close(NULL);
    st_close(f);
#undef MSG
}

static void cleanup(void) {
    static const char *names[] = {"padded", "unpadded", "empty", "odd", "zero", "three", "len", "bad", "model", "cut",
                                  "mut"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char n[64];
        snprintf(n, sizeof n, "%s.safetensors", names[i]);
        unlink(path_of(n));
    }
    if (rmdir(dir) != 0) perror(dir);
}

int main(void) {
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 2;
    }
    test_valid();
    test_open_errors();
    test_entry_errors();
    test_truncation();
    test_mutation();
    test_lookup();
    cleanup();
    return check_exit();
}
