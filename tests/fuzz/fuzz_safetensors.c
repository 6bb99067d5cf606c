/* fuzz_safetensors.c - the safetensors loader (lib/safetensors.c) on
 * arbitrary bytes: header length, header JSON, dtypes, shapes, offsets.
 *
 * The input is a whole file: it goes to a memfd opened by st_open() as
 * /proc/self/fd/N (so it is mapped like a real file). A file that opens must
 * keep every promise st_open() makes: each tensor, looked up by name, has
 * numel = prod(shape) and nbytes = numel x dtype size, and all of its bytes
 * can be read (a byte outside the mapping would fault); names are unique and
 * found again by st_get(); st_check_all_used() fails until every tensor has
 * been looked up, then passes. Metadata keys come back sorted with their
 * values; st_meta_int() parses or refuses each. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static int safetensors_init(void) { return 0; }

static void safetensors_one(const uint8_t *data, size_t size) {
    int fd = fz_memfd(data, size);
    char path[64], err[512];
    fz_path(fd, path, sizeof path);
    err[0] = 0;
    st_file *f = st_open(path, err, sizeof err);
    if (!f) {
        FZ_ASSERT(err[0]); /* a refusal always says why */
        FZ_ASSERT(strlen(err) < sizeof err);
        close(fd);
        return;
    }
    FZ_ASSERT(strcmp(st_path(f), path) == 0);
    int n = st_count(f);
    FZ_ASSERT(n >= 0);
    FZ_ASSERT(st_name(f, -1) == NULL && st_name(f, n) == NULL);
    if (n > 0) FZ_ASSERT(st_check_all_used(f, err, sizeof err) == -1 && err[0]);
    for (int i = 0; i < n; i++) {
        const char *name = st_name(f, i);
        FZ_ASSERT(name);
        st_tensor t;
        FZ_ASSERT(st_get(f, name, &t, err, sizeof err) == 0);
        FZ_ASSERT(strcmp(t.name, name) == 0);
        FZ_ASSERT(t.dtype >= 0 && t.dtype < ST_DTYPE_COUNT);
        FZ_ASSERT(t.ndim >= 0);
        size_t numel = 1;
        for (int d = 0; d < t.ndim; d++) {
            FZ_ASSERT(t.shape[d] >= 0);
            numel *= (size_t)t.shape[d];
        }
        FZ_ASSERT(numel == t.numel);
        FZ_ASSERT(t.nbytes == t.numel * st_dtype_size(t.dtype));
        FZ_ASSERT(t.data != NULL);
        FZ_ASSERT((uintptr_t)t.data % st_dtype_size(t.dtype) == 0);
        const volatile unsigned char *p = t.data;
        unsigned sum = 0;
        for (size_t b = 0; b < t.nbytes; b++) sum += p[b];
        (void)sum;
        /* typed lookups: the right dtype and shape pass, others fail with a message */
        FZ_ASSERT(st_get_as(f, name, t.dtype, t.ndim, t.shape, err, sizeof err) == t.data);
        FZ_ASSERT(st_get_as(f, name, t.dtype, -1, NULL, err, sizeof err) == t.data);
        FZ_ASSERT(st_get_as(f, name, t.dtype, t.ndim, NULL, err, sizeof err) == t.data);
        err[0] = 0;
        FZ_ASSERT(st_get_as(f, name, (st_dtype)((t.dtype + 1) % ST_DTYPE_COUNT), t.ndim, t.shape, err, sizeof err) ==
                      NULL && err[0]);
        err[0] = 0;
        FZ_ASSERT(st_get_as(f, name, t.dtype, t.ndim + 1, NULL, err, sizeof err) == NULL && err[0]);
        if (t.ndim > 0) {
            int64_t sh[64];
            int nd = t.ndim < 64 ? t.ndim : 64;
            for (int d = 0; d < nd; d++) sh[d] = -1;
            if (nd == t.ndim) FZ_ASSERT(st_get_as(f, name, t.dtype, nd, sh, err, sizeof err) == t.data);
        }
        if (t.dtype == ST_F32) (void)st_get_f32(f, name, t.ndim, NULL, err, sizeof err);
    }
    FZ_ASSERT(st_check_all_used(f, err, sizeof err) == 0);
    err[0] = 0;
    st_tensor t;
    FZ_ASSERT(st_get(f, "\x01 surely not a tensor name", &t, err, sizeof err) == -1 && err[0]);
    int nm = st_meta_count(f);
    FZ_ASSERT(nm >= 0);
    const char *prev = NULL;
    for (int i = 0; i < nm; i++) {
        const char *k = st_meta_key(f, i);
        FZ_ASSERT(k);
        if (prev) FZ_ASSERT(strcmp(prev, k) < 0); /* sorted, no duplicates */
        prev = k;
        FZ_ASSERT(st_meta(f, k) != NULL);
        long v;
        int r = st_meta_int(f, k, &v);
        FZ_ASSERT(r == 0 || r == -2);
    }
    FZ_ASSERT(st_meta_key(f, nm) == NULL);
    st_close(f);
    close(fd);
}

FZ_ENTRY(safetensors)
