/* fuzz_relevance.c - the relevance reader of `score retrieval --relevance`
 * (lib/relevance.c): CSV query,audio_filenames with Python list literals, on
 * arbitrary bytes.
 *
 * The input is the file: rel_load() reads it by path (a memfd as
 * /proc/self/fd/N), rel_parse() from memory; both give the same set. A load
 * either fails with a reason and an empty set, or gives entries with a
 * non-empty query, at least one audio, names non-empty and unique, line
 * numbers non-decreasing. rel_parse_list() on the input as one string: -1, or
 * that many non-NULL strings, NULL-terminated. Ranks from rel_evaluate() on
 * a small gallery stay within 1..na. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "relevance.h"
#include "util.h"

static int relevance_init(void) { return 0; }

static void rel_check(const rel_set *s) {
    FZ_ASSERT(s->n >= 0 && s->bad >= 0);
    long last = 0;
    for (int i = 0; i < s->n; i++) {
        const rel_entry *e = &s->e[i];
        FZ_ASSERT(e->query && e->query[0]);
        FZ_ASSERT(e->naudio >= 1 && e->audio && e->audio[e->naudio] == NULL);
        FZ_ASSERT(e->line >= last && e->line >= 1); /* a CR ends a row too: two rows may share a line */
        last = e->line;
        for (int j = 0; j < e->naudio; j++) {
            FZ_ASSERT(e->audio[j] && e->audio[j][0]);
            for (int k = 0; k < j; k++) FZ_ASSERT(strcmp(e->audio[j], e->audio[k]) != 0);
        }
    }
}

static void relevance_one(const uint8_t *data, size_t size) {
    int fd = fz_memfd(data, size);
    char path[64], err[512];
    fz_path(fd, path, sizeof path);
    rel_set a, b;
    err[0] = 0;
    int ra = rel_load(&a, path, err, sizeof err);
    if (ra) FZ_ASSERT(err[0] && a.n == 0 && a.e == NULL);
    else rel_check(&a);
    err[0] = 0;
    int rb = rel_parse(&b, path, (const char *)data, size, err, sizeof err);
    FZ_ASSERT(ra == rb);
    if (rb) FZ_ASSERT(err[0] && b.n == 0 && b.e == NULL);
    else {
        FZ_ASSERT(a.n == b.n && a.bad == b.bad);
        for (int i = 0; i < a.n; i++) {
            FZ_ASSERT(!strcmp(a.e[i].query, b.e[i].query) && a.e[i].naudio == b.e[i].naudio);
            for (int j = 0; j < a.e[i].naudio; j++) FZ_ASSERT(!strcmp(a.e[i].audio[j], b.e[i].audio[j]));
        }
        /* a tiny gallery: every query scored over 3 audios, its list cut to 3 */
        if (b.n > 0) {
            int nq = b.n < 8 ? b.n : 8, off[9], idx[24], qt[8];
            float text[2 * 2] = {1, 0, 0.6f, 0.8f}, audio[3 * 2] = {0, 1, 1, 0, 0.8f, 0.6f};
            off[0] = 0;
            for (int q = 0; q < nq; q++) {
                int r = b.e[q].naudio < 3 ? b.e[q].naudio : 3;
                for (int j = 0; j < r; j++) idx[off[q] + j] = j;
                off[q + 1] = off[q] + r;
                qt[q] = q % 2;
            }
            rel_scores sc;
            long ranks[24];
            rel_evaluate(text, 2, audio, 3, 2, qt, nq, off, idx, (int)(size & 1), &sc, ranks);
            FZ_ASSERT(sc.queries == nq && sc.r1 >= 0 && sc.r1 <= 1 && sc.map10 >= 0 && sc.map10 <= 1 + 1e-12);
            for (int k = 0; k < off[nq]; k++) FZ_ASSERT(ranks[k] >= 1 && ranks[k] <= 3);
        }
    }
    rel_free(&a);
    rel_free(&b);
    close(fd);
    /* the input as one list literal */
    char *s = malloc(size + 1);
    FZ_ASSERT(s);
    memcpy(s, data, size);
    s[size] = 0;
    char **v;
    int n = rel_parse_list(s, &v);
    if (n < 0) FZ_ASSERT(v == NULL);
    else {
        FZ_ASSERT(v && v[n] == NULL);
        for (int i = 0; i < n; i++) {
            FZ_ASSERT(v[i]);
            free(v[i]);
        }
        free(v);
    }
    free(s);
}

FZ_ENTRY(relevance)
