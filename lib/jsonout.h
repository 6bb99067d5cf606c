/* jsonout.h - streams as JSON lines, for inspection (wsac-dump) and tests. */
#ifndef WSAC_JSONOUT_H
#define WSAC_JSONOUT_H

#include <stdio.h>

#include "stream.h"

/* Summary statistics of a tensor, computed in double. */
typedef struct {
    double min, max, mean, std;
    size_t nan, inf, finite;
} tensor_stats;
void tensor_stats_compute(const ws_tensor *t, tensor_stats *s);
/* element i of any dtype as double */
double tensor_get(const ws_tensor *t, size_t i);

/* A JSON number with enough digits to round-trip the dtype; null if not finite. */
void json_write_number(FILE *f, double v, int f32);
/* One record as a JSON object on one line (no newline). full: every element. */
void json_write_record(FILE *f, const ws_record *rec, int full);
/* Raw msgpack bytes (a header or trailer) as JSON. */
void json_write_msgpack_raw(FILE *f, const char *raw, size_t len);

#endif
