/* jsonout.c - JSON rendering of stream records. */
#include "jsonout.h"

#include <inttypes.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

double tensor_get(const ws_tensor *t, size_t i) {
    switch (t->dtype) {
    case DT_F32: return ((const float *)t->data)[i];
    case DT_F64: return ((const double *)t->data)[i];
    case DT_I8: return ((const int8_t *)t->data)[i];
    case DT_U8: return ((const uint8_t *)t->data)[i];
    case DT_I16: return ((const int16_t *)t->data)[i];
    case DT_I32: return ((const int32_t *)t->data)[i];
    case DT_I64: return (double)((const int64_t *)t->data)[i];
    default: return NAN;
    }
}

void tensor_stats_compute(const ws_tensor *t, tensor_stats *s) {
    memset(s, 0, sizeof *s);
    double sum = 0, sum2 = 0;
    s->min = INFINITY;
    s->max = -INFINITY;
    for (size_t i = 0; i < t->numel; i++) {
        double v = tensor_get(t, i);
        if (isnan(v)) { s->nan++; continue; }
        if (isinf(v)) { s->inf++; continue; }
        s->finite++;
        sum += v;
        sum2 += v * v;
        if (v < s->min) s->min = v;
        if (v > s->max) s->max = v;
    }
    if (s->finite) {
        s->mean = sum / (double)s->finite;
        double var = sum2 / (double)s->finite - s->mean * s->mean;
        s->std = var > 0 ? sqrt(var) : 0;
    } else {
        s->min = s->max = s->mean = s->std = NAN;
    }
}

void json_write_number(FILE *f, double v, int f32) {
    if (!isfinite(v)) {
        fputs("null", f);
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        fprintf(f, "%.0f", v);
        return;
    }
    /* the shortest decimal that reads back as the same float or double */
    char buf[40];
    for (int prec = f32 ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (f32 ? (float)back == (float)v : back == v) break;
    }
    fputs(buf, f);
}

/* element i of an integer tensor, exactly */
static int64_t tensor_get_i64(const ws_tensor *t, size_t i) {
    if (t->dtype == DT_I64) return ((const int64_t *)t->data)[i];
    return (int64_t)tensor_get(t, i);
}

/* the elements of dimension d starting at flat offset off, as nested arrays */
static size_t write_nested(FILE *f, const ws_tensor *t, int d, size_t off) {
    if (d == t->ndim) {
        if (t->dtype == DT_F32 || t->dtype == DT_F64) json_write_number(f, tensor_get(t, off), t->dtype == DT_F32);
        else fprintf(f, "%" PRId64, tensor_get_i64(t, off));
        return off + 1;
    }
    fputc('[', f);
    for (int64_t i = 0; i < t->shape[d]; i++) {
        if (i) fputc(',', f);
        off = write_nested(f, t, d + 1, off);
    }
    fputc(']', f);
    return off;
}

static void write_tensor(FILE *f, const ws_tensor *t, int full) {
    fprintf(f, "{\"dtype\":\"%s\",\"shape\":[", ws_dtype_name(t->dtype));
    for (int d = 0; d < t->ndim; d++) fprintf(f, "%s%" PRId64, d ? "," : "", t->shape[d]);
    fputc(']', f);
    tensor_stats s;
    tensor_stats_compute(t, &s);
    int f32 = t->dtype == DT_F32;
    fputs(",\"min\":", f);
    json_write_number(f, s.min, f32);
    fputs(",\"max\":", f);
    json_write_number(f, s.max, f32);
    fputs(",\"mean\":", f);
    json_write_number(f, s.mean, 0);
    fputs(",\"std\":", f);
    json_write_number(f, s.std, 0);
    if (s.nan) fprintf(f, ",\"nan\":%zu", s.nan);
    if (s.inf) fprintf(f, ",\"inf\":%zu", s.inf);
    if (full) {
        fputs(",\"data\":", f);
        write_nested(f, t, 0, 0);
    }
    fputc('}', f);
}

static void write_obj(FILE *f, const msgpack_object *o) {
    switch (o->type) {
    case MSGPACK_OBJECT_NIL: fputs("null", f); break;
    case MSGPACK_OBJECT_BOOLEAN: fputs(o->via.boolean ? "true" : "false", f); break;
    case MSGPACK_OBJECT_POSITIVE_INTEGER: fprintf(f, "%" PRIu64, o->via.u64); break;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER: fprintf(f, "%" PRId64, o->via.i64); break;
    case MSGPACK_OBJECT_FLOAT32: json_write_number(f, o->via.f64, 1); break;
    case MSGPACK_OBJECT_FLOAT64: json_write_number(f, o->via.f64, 0); break;
    case MSGPACK_OBJECT_STR: json_write_string(f, o->via.str.ptr, o->via.str.size); break;
    case MSGPACK_OBJECT_BIN: fprintf(f, "{\"bin\":%u}", o->via.bin.size); break;
    case MSGPACK_OBJECT_EXT: fprintf(f, "{\"ext\":%d,\"bytes\":%u}", o->via.ext.type, o->via.ext.size); break;
    case MSGPACK_OBJECT_ARRAY:
        fputc('[', f);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i) fputc(',', f);
            write_obj(f, &o->via.array.ptr[i]);
        }
        fputc(']', f);
        break;
    case MSGPACK_OBJECT_MAP:
        fputc('{', f);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            if (i) fputc(',', f);
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type == MSGPACK_OBJECT_STR) json_write_string(f, k->via.str.ptr, k->via.str.size);
            else { /* JSON keys are strings */
                fputc('"', f);
                fputs("?", f);
                fputc('"', f);
            }
            fputc(':', f);
            write_obj(f, &o->via.map.ptr[i].val);
        }
        fputc('}', f);
        break;
    }
}

void json_write_msgpack_raw(FILE *f, const char *raw, size_t len) {
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    size_t off = 0;
    if (msgpack_unpack_next(&up, raw, len, &off) == MSGPACK_UNPACK_SUCCESS) write_obj(f, &up.data);
    else fputs("null", f);
    msgpack_unpacked_destroy(&up);
}

void json_write_record(FILE *f, const ws_record *rec, int full) {
    fputs("{\"key\":", f);
    if (rec->key) json_write_string(f, rec->key, strlen(rec->key));
    else fputs("null", f);
    for (int i = 0; i < rec->nfields; i++) {
        const ws_field *fl = &rec->fields[i];
        fputc(',', f);
        json_write_string(f, fl->name, strlen(fl->name));
        fputc(':', f);
        switch (fl->kind) {
        case WF_TENSOR: write_tensor(f, &fl->t, full); break;
        case WF_STR: json_write_string(f, fl->str, fl->len); break;
        case WF_INT: fprintf(f, "%" PRId64, fl->i); break;
        case WF_FLOAT: json_write_number(f, fl->f, 0); break;
        case WF_BOOL: fputs(fl->i ? "true" : "false", f); break;
        case WF_NIL: fputs("null", f); break;
        case WF_OTHER: json_write_msgpack_raw(f, fl->raw, fl->len); break;
        }
    }
    if (rec->err[0]) {
        fputs(",\"error\":", f);
        json_write_string(f, rec->err, strlen(rec->err));
    }
    fputc('}', f);
}
