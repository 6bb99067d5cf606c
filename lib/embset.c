/* embset.c - load embedding streams into a matrix (see embset.h). */
#include "embset.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "util.h"

int embset_load(embset *e, const char *path, int normalise, char *err, int errlen) {
    memset(e, 0, sizeof *e);
    ws_reader *r = ws_reader_open_path(path);
    if (!r) {
        snprintf(err, (size_t)errlen, "cannot open %s: %m", path);
        return -1;
    }
    int cap = 0, s;
    ws_record rec;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        char nm[300], why[320];
        const ws_tensor *t = rec.err[0] ? NULL : ws_record_tensor(&rec, "emb", DT_F32, 1, why, sizeof why);
        if (rec.err[0]) snprintf(why, sizeof why, "%s", rec.err);
        else if (t && e->dim && t->shape[0] != e->dim) {
            snprintf(why, sizeof why, "emb has width %lld, the others %d", (long long)t->shape[0], e->dim);
            t = NULL;
        } else if (t && t->shape[0] == 0) {
            snprintf(why, sizeof why, "emb is empty");
            t = NULL;
        }
        double ss = 0;
        if (t) {
            const float *v = t->data;
            for (int64_t i = 0; i < t->shape[0]; i++) ss += (double)v[i] * v[i];
            if (!isfinite(ss)) {
                snprintf(why, sizeof why, "emb contains NaN or infinite values");
                t = NULL;
            } else if (ss == 0) {
                snprintf(why, sizeof why, "emb is the zero vector");
                t = NULL;
            }
        }
        if (!t) {
            warnx_("%s: %s: %s", path, ws_record_name(&rec, nm, sizeof nm), why);
            e->skipped++;
            ws_record_free(&rec);
            continue;
        }
        if (!e->dim) e->dim = (int)t->shape[0];
        if (e->n == cap) {
            cap = cap ? 2 * cap : 1024;
            e->x = xrealloc(e->x, (size_t)cap * (size_t)e->dim * sizeof(float));
            e->keys = xrealloc(e->keys, (size_t)cap * sizeof(char *));
            e->texts = xrealloc(e->texts, (size_t)cap * sizeof(char *));
        }
        float *row = e->x + (size_t)e->n * e->dim;
        memcpy(row, t->data, (size_t)e->dim * sizeof(float));
        if (normalise) {
            /* F.normalize: x / max(||x||, 1e-12) */
            float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
            for (int i = 0; i < e->dim; i++) row[i] *= inv;
        }
        e->keys[e->n] = xstrdup(rec.key);
        const char *txt = ws_record_str(&rec, "text");
        e->texts[e->n] = txt ? xstrdup(txt) : NULL;
        e->n++;
        ws_record_free(&rec);
    }
    if (s == WS_ERROR) {
        snprintf(err, (size_t)errlen, "%s", ws_reader_error(r));
        ws_reader_close(r);
        embset_free(e);
        return -1;
    }
    ws_reader_close(r);
    return 0;
}

void embset_free(embset *e) {
    for (int i = 0; i < e->n; i++) {
        free(e->keys[i]);
        free(e->texts[i]);
    }
    free(e->keys);
    free(e->texts);
    free(e->x);
    memset(e, 0, sizeof *e);
}

const char *group_key(const char *key, char *buf, int len) {
    const char *h = strrchr(key, '#');
    int n = h ? (int)(h - key) : (int)strlen(key);
    snprintf(buf, (size_t)len, "%.*s", n, key);
    return buf;
}
