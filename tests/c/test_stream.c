/* test_stream.c - tensor stream reader/writer: round trips and every kind of
 * bad input (truncation at every byte, garbage, bad tensors, huge declared
 * sizes, missing trailer, concatenation). */
#define _GNU_SOURCE
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "check.h"
#include "stream.h"
#include "util.h"

static char dir[] = "/tmp/wsac-test-stream.XXXXXX";

static char *path_for(const char *name) {
    static char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return p;
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (n) fwrite(data, 1, n, f);
    fclose(f);
}

static char *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n) abort();
    b[*n] = 0;
    fclose(f);
    return b;
}

/* reads every record of bytes; returns records read, sets *status to the final
 * ws_reader_next result and copies the error or first record error */
static int read_all(const void *bytes, size_t n, int *status, char *err, size_t errlen) {
    const char *p = path_for("in.mp");
    write_file(p, bytes, n);
    ws_reader *r = ws_reader_open_path(p);
    ws_record rec;
    int k = 0, s;
    err[0] = 0;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        if (rec.err[0] && !err[0]) snprintf(err, errlen, "%s", rec.err);
        k++;
        ws_record_free(&rec);
    }
    if (s == WS_ERROR) snprintf(err, errlen, "%s", ws_reader_error(r));
    *status = s;
    ws_reader_close(r);
    return k;
}

static void pack_str(msgpack_packer *pk, const char *s) {
    msgpack_pack_str(pk, strlen(s));
    msgpack_pack_str_body(pk, s, strlen(s));
}

static void pack_header(msgpack_packer *pk) {
    msgpack_pack_map(pk, 3);
    pack_str(pk, "format");
    pack_str(pk, "wsac-stream");
    pack_str(pk, "version");
    msgpack_pack_int(pk, 1);
    pack_str(pk, "tool");
    pack_str(pk, "test");
}

static void pack_trailer(msgpack_packer *pk, int n) {
    msgpack_pack_map(pk, 2);
    pack_str(pk, "end");
    msgpack_pack_true(pk);
    pack_str(pk, "records");
    msgpack_pack_int(pk, n);
}

/* one record with a tensor field built from the given parts */
static void pack_tensor_record(msgpack_packer *pk, const char *key, const char *dtype, int ndim,
                               const int64_t *shape, size_t nbytes) {
    msgpack_pack_map(pk, 2);
    pack_str(pk, "key");
    pack_str(pk, key);
    pack_str(pk, "x");
    msgpack_pack_map(pk, 3);
    pack_str(pk, "dtype");
    pack_str(pk, dtype);
    pack_str(pk, "shape");
    msgpack_pack_array(pk, (size_t)ndim);
    for (int d = 0; d < ndim; d++) msgpack_pack_int64(pk, shape[d]);
    pack_str(pk, "data");
    msgpack_pack_bin(pk, nbytes);
    char *z = calloc(1, nbytes + 1);
    msgpack_pack_bin_body(pk, z, nbytes);
    free(z);
}

static long maxrss_kb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_roundtrip(void) {
    const char *p = path_for("rt.mp");
    FILE *f = fopen(p, "wb");
    ws_param params[] = {{"sr", 'i', 32000, 0, 0}, {"fmin", 'f', 0, 50.5, 0}, {"mode", 's', 0, 0, "x"}};
    ws_writer *w = ws_writer_open(f, "test", params, 3, NULL);
    float a[3 * 5 * 7];
    for (int i = 0; i < 105; i++) a[i] = (float)i * 0.25f - 3;
    int64_t sh3[3] = {3, 5, 7}, sh1[1] = {4}, sh0[1] = {0};
    double d[4] = {1e300, -2.5, 0, 1e-300};
    int32_t ids[4] = {101, -7, 2147483647, 0};
    int8_t i8[4] = {-128, 127, 0, 1};
    ws_begin(w, "first");
    ws_put_tensor(w, "a", DT_F32, 3, sh3, a);
    ws_put_tensor(w, "d", DT_F64, 1, sh1, d);
    ws_put_tensor(w, "ids", DT_I32, 1, sh1, ids);
    ws_put_tensor(w, "b", DT_I8, 1, sh1, i8);
    ws_put_tensor(w, "empty", DT_F32, 1, sh0, a);
    ws_put_str(w, "text", "h\xc3\xa9llo, w\xc3\xb6rld", 14);
    ws_put_int(w, "n", -42);
    ws_put_float(w, "f", 0.125);
    ws_put_int(w, "n", 7); /* duplicate name: ignored */
    ws_end(w);
    ws_fail(w, "lost one", "testing failure bookkeeping");
    ws_begin(w, "second");
    ws_put_tensor(w, "ids", DT_I32, 1, sh1, ids);
    ws_end(w);
    ws_writer_close(w);
    fclose(f);

    ws_reader *r = ws_reader_open_path(p);
    ws_record rec;
    CHECK(ws_reader_next(r, &rec) == WS_RECORD, "roundtrip: first record read");
    CHECK(rec.err[0] == 0 && rec.key && !strcmp(rec.key, "first"), "roundtrip: key");
    char e[200];
    const ws_tensor *t = ws_record_tensor(&rec, "a", DT_F32, 3, e, sizeof e);
    CHECK(t && t->shape[0] == 3 && t->shape[1] == 5 && t->shape[2] == 7 && !memcmp(t->data, a, sizeof a),
          "roundtrip: f32 [3,5,7] exact");
    CHECK(((uintptr_t)t->data % 64) == 0, "roundtrip: tensor data is 64-byte aligned");
    t = ws_record_tensor(&rec, "d", DT_F64, 1, e, sizeof e);
    CHECK(t && !memcmp(t->data, d, sizeof d), "roundtrip: f64 exact");
    t = ws_record_tensor(&rec, "ids", DT_I32, 1, e, sizeof e);
    CHECK(t && !memcmp(t->data, ids, sizeof ids), "roundtrip: i32 exact");
    t = ws_record_tensor(&rec, "b", DT_I8, 1, e, sizeof e);
    CHECK(t && !memcmp(t->data, i8, sizeof i8), "roundtrip: i8 exact");
    t = ws_record_tensor(&rec, "empty", DT_F32, 1, e, sizeof e);
    CHECK(t && t->numel == 0 && t->shape[0] == 0, "roundtrip: empty tensor");
    CHECK(ws_record_tensor(&rec, "a", DT_F64, 3, e, sizeof e) == NULL && strstr(e, "dtype f32"),
          "roundtrip: asking for the wrong dtype says so");
    CHECK(ws_record_tensor(&rec, "a", DT_F32, 2, e, sizeof e) == NULL && strstr(e, "3 dimensions"),
          "roundtrip: asking for the wrong ndim says so");
    CHECK(ws_record_tensor(&rec, "nope", DT_F32, 2, e, sizeof e) == NULL && strstr(e, "no \"nope\""),
          "roundtrip: missing field says so");
    const char *s = ws_record_str(&rec, "text");
    CHECK(s && !strcmp(s, "h\xc3\xa9llo, w\xc3\xb6rld"), "roundtrip: UTF-8 string");
    const ws_field *fi = ws_record_field(&rec, "n");
    CHECK(fi && fi->kind == WF_INT && fi->i == -42, "roundtrip: int (first of duplicate names kept)");
    fi = ws_record_field(&rec, "f");
    CHECK(fi && fi->kind == WF_FLOAT && fi->f == 0.125, "roundtrip: float");
    double v;
    CHECK(ws_reader_param(r, "sr", &v) == 0 && v == 32000, "roundtrip: header int param");
    CHECK(ws_reader_param(r, "fmin", &v) == 0 && v == 50.5, "roundtrip: header float param");
    CHECK(ws_reader_tool(r) && !strcmp(ws_reader_tool(r), "test"), "roundtrip: header tool");

    /* pass-through into a second stream keeps every field */
    const char *p2 = path_for("rt2.mp");
    FILE *f2 = fopen(p2, "wb");
    ws_writer *w2 = ws_writer_open(f2, "test2", NULL, 0, r);
    ws_begin(w2, rec.key);
    ws_put_int(w2, "n", 1); /* replaces n */
    const char *except[] = {"b", NULL};
    ws_put_fields_except(w2, &rec, except);
    ws_end(w2);
    ws_record_free(&rec);
    CHECK(ws_reader_next(r, &rec) == WS_RECORD && !strcmp(rec.key, "second"), "roundtrip: second record");
    ws_record_free(&rec);
    CHECK(ws_reader_next(r, &rec) == WS_EOF, "roundtrip: clean end after trailer");
    CHECK(ws_reader_upstream_errors(r) == 1 && ws_reader_upstream_nfailed(r) == 1 &&
              !strcmp(ws_reader_upstream_failed(r, 0), "lost one"),
          "roundtrip: trailer lists the failed key");
    ws_writer_close(w2);
    fclose(f2);
    ws_reader_close(r);

    r = ws_reader_open_path(p2);
    CHECK(ws_reader_next(r, &rec) == WS_RECORD, "passthrough: record read");
    fi = ws_record_field(&rec, "n");
    CHECK(fi && fi->i == 1, "passthrough: own field wins over passed-on one");
    CHECK(ws_record_field(&rec, "b") == NULL, "passthrough: excepted field dropped");
    t = ws_record_tensor(&rec, "a", DT_F32, 3, e, sizeof e);
    CHECK(t && !memcmp(t->data, a, sizeof a) && ws_record_str(&rec, "text"), "passthrough: tensors and text kept");
    ws_record_free(&rec);
    CHECK(ws_reader_next(r, &rec) == WS_EOF && ws_reader_upstream_nfailed(r) == 1,
          "passthrough: upstream failure carried into the downstream trailer");
    ws_reader_close(r);
}

static void test_truncation(void) {
    size_t n;
    char *b = read_file(path_for("rt.mp"), &n);
    int all_ok = 1, status;
    char err[700], first_bad[200] = "";
    int full = read_all(b, n, &status, err, sizeof err);
    CHECK(full == 2 && status == WS_EOF, "truncation: the whole stream reads cleanly");
    for (size_t cut = 0; cut < n; cut++) {
        int k = read_all(b, cut, &status, err, sizeof err);
        if (status != WS_ERROR || k > 2 || !(strstr(err, "truncated") || strstr(err, "trailer") || strstr(err, "empty"))) {
            all_ok = 0;
            if (!first_bad[0]) snprintf(first_bad, sizeof first_bad, "cut at %zu: status %d: %.30s", cut, status, err);
        }
    }
    CHECKF(all_ok, "truncation: every cut point is reported as incomplete", "%s", first_bad);
    read_all(b, n - 1, &status, err, sizeof err);
    CHECKF(strstr(err, "truncated") != NULL, "truncation: a cut inside the trailer says truncated", "%s", err);
    free(b);
}

static void test_bad(void) {
    msgpack_sbuffer sb;
    msgpack_packer pk;
    int status, k;
    char err[700];
#define RESET() (msgpack_sbuffer_clear(&sb))
    msgpack_sbuffer_init(&sb);
    msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);

    k = read_all("", 0, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "empty input"), "bad: empty input", "%s", err);

    k = read_all("\xc1\xc1\xc1garbage", 10, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "0xc1"), "bad: garbage bytes", "%s", err);

    const char text[] = "key\tpath/to/file.wav\n";
    k = read_all(text, sizeof text - 1, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "not a wsac tensor stream"), "bad: plain text is not a stream", "%s", err);

    RESET();
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "key");
    pack_str(&pk, "a");
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "first object is not a header"), "bad: record before header", "%s", err);

    RESET();
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "format");
    pack_str(&pk, "wsac-stream");
    pack_str(&pk, "version");
    msgpack_pack_int(&pk, 99);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "version 99"), "bad: newer version refused", "%s", err);

    /* bad tensors are per-record errors: the other records still come through */
    struct {
        const char *name, *dtype;
        int ndim;
        int64_t shape[3];
        size_t nbytes;
        const char *expect;
    } cases[] = {
        {"wrong dtype", "f17", 1, {2}, 8, "unknown dtype 'f17'"},
        {"shape disagrees with data", "f32", 2, {3, 4}, 44, "data has 44 bytes"},
        {"10^12 elements declared", "f32", 2, {1000000, 1000000}, 8, "declares 1000000000000 elements"},
        {"shape overflow", "f64", 3, {INT64_MAX, INT64_MAX, 4}, 8, "more elements than can exist"},
        {"negative dimension", "f32", 1, {-1}, 4, "not a non-negative integer"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        RESET();
        pack_header(&pk);
        pack_tensor_record(&pk, "before", "f32", 1, (int64_t[]){1}, 4);
        pack_tensor_record(&pk, "bad", cases[i].dtype, cases[i].ndim, cases[i].shape, cases[i].nbytes);
        pack_tensor_record(&pk, "after", "f32", 1, (int64_t[]){1}, 4);
        pack_trailer(&pk, 3);
        const char *p = path_for("bad.mp");
        write_file(p, sb.data, sb.size);
        ws_reader *r = ws_reader_open_path(p);
        ws_record rec;
        int good = 0, bad = 0, s;
        char why[400] = "", nm[300] = "";
        while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
            if (rec.err[0]) {
                bad++;
                snprintf(why, sizeof why, "%s", rec.err);
                ws_record_name(&rec, nm, sizeof nm);
            } else good++;
            ws_record_free(&rec);
        }
        char name[120];
        snprintf(name, sizeof name, "bad tensor: %s is named and skipped", cases[i].name);
        CHECKF(s == WS_EOF && good == 2 && bad == 1 && strstr(why, cases[i].expect) && strstr(why, "field \"x\"") &&
                   !strcmp(nm, "key 'bad'"),
               name, "status %d good %d bad %d: %s (%s)", s, good, bad, why, nm);
        ws_reader_close(r);
    }

    /* record-level problems */
    RESET();
    pack_header(&pk);
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "x");
    msgpack_pack_int(&pk, 1);
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "key");
    msgpack_pack_str(&pk, 3);
    msgpack_pack_str_body(&pk, "\xff\xfe!", 3);
    msgpack_pack_map(&pk, 1);
    pack_str(&pk, "key");
    pack_str(&pk, "a\tb");
    pack_trailer(&pk, 3);
    {
        const char *p = path_for("keys.mp");
        write_file(p, sb.data, sb.size);
        ws_reader *r = ws_reader_open_path(p);
        ws_record rec;
        char nm[100];
        CHECK(ws_reader_next(r, &rec) == WS_RECORD && strstr(rec.err, "no \"key\"") &&
                  !strcmp(ws_record_name(&rec, nm, sizeof nm), "record #1"),
              "bad: record without key is named by position");
        ws_record_free(&rec);
        CHECK(ws_reader_next(r, &rec) == WS_RECORD && strstr(rec.err, "UTF-8"), "bad: invalid UTF-8 key");
        ws_record_free(&rec);
        CHECK(ws_reader_next(r, &rec) == WS_RECORD && strstr(rec.err, "tab"), "bad: key with a tab");
        ws_record_free(&rec);
        CHECK(ws_reader_next(r, &rec) == WS_EOF, "bad: stream still ends cleanly");
        ws_reader_close(r);
    }

    /* missing trailer, wrong count, data after trailer, non-map */
    RESET();
    pack_header(&pk);
    pack_tensor_record(&pk, "a", "f32", 1, (int64_t[]){1}, 4);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(k == 1 && status == WS_ERROR && strstr(err, "without its trailer") && strstr(err, "after 1 record"),
           "bad: missing trailer reported after the records", "%s", err);
    pack_trailer(&pk, 2);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "counts 2 records"), "bad: trailer count mismatch", "%s", err);
    RESET();
    pack_header(&pk);
    pack_trailer(&pk, 0);
    pack_tensor_record(&pk, "a", "f32", 1, (int64_t[]){1}, 4);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "after the trailer"), "bad: data after trailer", "%s", err);
    RESET();
    pack_header(&pk);
    msgpack_pack_array(&pk, 2);
    msgpack_pack_int(&pk, 1);
    msgpack_pack_int(&pk, 2);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "not a map"), "bad: non-map object", "%s", err);
    RESET();
    pack_header(&pk);
    pack_header(&pk);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "incomplete"), "bad: header inside a segment", "%s", err);

    /* concatenated streams are one stream */
    RESET();
    for (int seg = 0; seg < 3; seg++) {
        pack_header(&pk);
        pack_tensor_record(&pk, "a", "f32", 1, (int64_t[]){1}, 4);
        pack_tensor_record(&pk, "b", "f32", 1, (int64_t[]){1}, 4);
        pack_trailer(&pk, 2);
    }
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(k == 6 && status == WS_EOF, "concatenation: three segments read as one stream", "%d %s", k, err);

    /* huge declared sizes cost nothing until their bytes arrive */
    long rss0 = maxrss_kb();
    RESET();
    pack_header(&pk);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "key");
    pack_str(&pk, "huge");
    pack_str(&pk, "x");
    msgpack_sbuffer_write(&sb, "\xc6\xc0\x00\x00\x00", 5); /* bin32 of 3 GB */
    msgpack_sbuffer_write(&sb, "abcdefgh", 8);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "truncated"), "huge: 3 GB bin declared, 8 bytes sent: truncated", "%s", err);
    RESET();
    pack_header(&pk);
    msgpack_sbuffer_write(&sb, "\xdd\xff\xff\xff\xff", 5); /* array32 of 2^32-1 */
    msgpack_sbuffer_write(&sb, "\x01\x02\x03", 3);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR, "huge: 2^32-element array declared: refused", "%s", err);
    long rss1 = maxrss_kb();
    CHECKF(rss1 - rss0 < 32 * 1024, "huge: declared sizes allocated nothing (peak RSS grew < 32 MB)",
           "grew %ld kB", rss1 - rss0);
    setenv("WSAC_MAX_RECORD_BYTES", "1500", 1); /* read once, cached: test in a child */
    RESET();
    pack_header(&pk);
    pack_tensor_record(&pk, "big", "f32", 1, (int64_t[]){500}, 2000);
    pack_trailer(&pk, 1);
    char pbig[300];
    snprintf(pbig, sizeof pbig, "%s", path_for("big.mp"));
    write_file(pbig, sb.data, sb.size);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "%s/bin/wsac-dump -q %s > /dev/null 2> %s", getenv("WSAC_ROOT") ? getenv("WSAC_ROOT") : ".",
             pbig, path_for("big.err"));
    int rc = system(cmd);
    size_t en = 0;
    char *e = read_file(path_for("big.err"), &en);
    CHECKF(WEXITSTATUS(rc) == 2 && strstr(e, "WSAC_MAX_RECORD_BYTES"),
           "limit: a record over WSAC_MAX_RECORD_BYTES is refused with the variable named", "rc %d: %s", rc, e);
    free(e);
    unsetenv("WSAC_MAX_RECORD_BYTES");

    /* nesting deeper than msgpack-c's stack */
    RESET();
    pack_header(&pk);
    msgpack_pack_map(&pk, 2);
    pack_str(&pk, "key");
    pack_str(&pk, "deep");
    pack_str(&pk, "x");
    for (int i = 0; i < 200; i++) msgpack_pack_array(&pk, 1);
    msgpack_pack_int(&pk, 1);
    pack_trailer(&pk, 1);
    k = read_all(sb.data, sb.size, &status, err, sizeof err);
    CHECKF(status == WS_ERROR && strstr(err, "deep"), "bad: nesting 200 deep is refused, not a crash", "%s", err);
    msgpack_sbuffer_destroy(&sb);
    (void)k;
}

/* Regression: an object whose last payload bytes arrive in the next read
 * must not be mistaken for the start of another. Shift the records across
 * the 64 KiB read boundary at every byte alignment. */
static void test_boundaries(void) {
    int bad = -1;
    char tool[600];
    float v[96];
    for (int i = 0; i < 96; i++) v[i] = (float)i;
    int64_t shape[1] = {96};
    for (int shift = 0; shift < 500 && bad < 0; shift++) {
        memset(tool, 'x', (size_t)shift + 1);
        tool[shift + 1] = 0;
        const char *p = path_for("shift.mp");
        FILE *f = fopen(p, "wb");
        ws_writer *w = ws_writer_open(f, tool, NULL, 0, NULL);
        for (int k = 0; k < 160; k++) {
            char key[32], text[32];
            snprintf(key, sizeof key, "m%d#1", k);
            snprintf(text, sizeof text, "caption %d", k);
            ws_begin(w, key);
            ws_put_tensor(w, "emb", DT_F32, 1, shape, v);
            ws_put_str(w, "text", text, strlen(text));
            ws_end(w);
        }
        ws_writer_close(w);
        fclose(f);
        ws_reader *r = ws_reader_open_path(p);
        ws_record rec;
        int n = 0, s;
        while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
            if (!rec.err[0]) n++;
            ws_record_free(&rec);
        }
        if (s != WS_EOF || n != 160) bad = shift;
        ws_reader_close(r);
    }
    CHECKF(bad < 0, "boundaries: records straddling the 64 KiB read size at every alignment", "shift %d", bad);
}

int main(void) {
    tool_init("test_stream");
    if (!mkdtemp(dir)) return 2;
    test_roundtrip();
    test_truncation();
    test_bad();
    test_boundaries();
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd)) return 2;
    return check_exit();
}
