/* fuzz_refs.c - the reference and candidate readers of `score caption`
 * (lib/refs.c): Clotho and AudioCaps CSV and JSON references, KEY<TAB>CAPTION
 * candidates, on arbitrary bytes.
 *
 * The input is the file. refs_load() reads it by path (a memfd as
 * /proc/self/fd/N; CSV or JSON is chosen by its first non-blank byte) and
 * cands_load() from the descriptor, in pieces (see fuzz_common.h) and whole,
 * which must give the same candidates. A load either fails with a reason or
 * gives a set whose keys are non-empty, unique and found again by
 * capset_find(), each with at least one caption (none empty, for CSV). */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "refs.h"
#include "util.h"

static int refs_init(void) { return 0; }

static void refs_check_set(const cap_set *set, int refs) {
    FZ_ASSERT(set->n >= 0 && (set->n <= set->cap || set->n == 0));
    FZ_ASSERT(set->bad >= 0);
    FZ_ASSERT(set->format);
    for (int i = 0; i < set->n; i++) {
        const cap_entry *e = &set->e[i];
        FZ_ASSERT(e->key && e->key[0]);
        FZ_ASSERT(capset_find(set, e->key) == i);
        FZ_ASSERT(e->ncaps >= 1 && e->caps);
        if (!refs) FZ_ASSERT(e->ncaps == 1 && !strchr(e->key, '\t') && e->line >= 1);
        for (int j = 0; j < e->ncaps; j++) {
            FZ_ASSERT(e->caps[j]);
            /* an empty CSV cell is no reference (JSON may give "") */
            if (refs && strstr(set->format, "csv")) FZ_ASSERT(e->caps[j][0]);
        }
    }
    FZ_ASSERT(capset_find(set, "") == -1); /* no empty key */
}

static void refs_one(const uint8_t *data, size_t size) {
    int fd = fz_memfd(data, size);
    char path[64], err[512];
    fz_path(fd, path, sizeof path);
    cap_set set;
    err[0] = 0;
    if (refs_load(&set, path, err, sizeof err) == 0) {
        refs_check_set(&set, 1);
        capset_free(&set);
    } else {
        FZ_ASSERT(err[0]);
        FZ_ASSERT(set.n == 0 && set.e == NULL); /* freed on failure */
    }
    /* candidates: read in pieces, then whole; the same set either way */
    cap_set whole;
    FZ_ASSERT(lseek(fd, 0, SEEK_SET) == 0);
    FZ_ASSERT(cands_load(&whole, fd, "fuzz", err, sizeof err) == 0);
    FZ_ASSERT(lseek(fd, 0, SEEK_SET) == 0);
    fz_chunk_fd(fd, size);
    err[0] = 0;
    FZ_ASSERT(cands_load(&set, fd, "fuzz", err, sizeof err) == 0); /* only a read error fails */
    fz_chunk_off();
    refs_check_set(&set, 0);
    FZ_ASSERT(set.n == whole.n && set.bad == whole.bad);
    for (int i = 0; i < set.n; i++) {
        FZ_ASSERT(strcmp(set.e[i].key, whole.e[i].key) == 0 && set.e[i].line == whole.e[i].line);
        FZ_ASSERT(strcmp(set.e[i].caps[0], whole.e[i].caps[0]) == 0);
    }
    capset_free(&set);
    capset_free(&whole);
    close(fd);
}

FZ_ENTRY(refs)
