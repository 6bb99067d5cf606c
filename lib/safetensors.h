/* safetensors.h - read-only loader for safetensors model files (formats/safetensors.md).
 *
 *   file   = N (u64 little-endian) | header (N bytes of JSON) | data
 *   header = {"__metadata__": {str: str, ...}?,
 *             NAME: {"dtype": "F32", "shape": [d0, ...], "data_offsets": [begin, end]}, ...}
 *
 * The file is mmap'ed; st_open() validates the whole header (dtypes, shapes,
 * offsets inside the data section, no overlap, sizes overflow-checked) before
 * returning, so later lookups only compare names, dtypes and shapes.
 * Every message names the file, and the tensor or metadata key concerned.
 * An st_file is not thread-safe (lookups mark tensors used and may copy):
 * load the weights before starting threads. */
#ifndef WSAC_SAFETENSORS_H
#define WSAC_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

/* The official reader's limit (safetensors MAX_HEADER_SIZE). */
/* Header limit: 16 MiB. The official reader allows 100 MB, but jansson's
 * tree costs ~24x the header, and real model headers are < 1 MB (the CLAP
 * file's is ~40 KB): a 100 MB header is refused instead of costing 2.4 GB. */
#define ST_MAX_HEADER 16777216

typedef enum { ST_F64, ST_F32, ST_F16, ST_BF16, ST_I64, ST_I32, ST_I16, ST_I8, ST_U8, ST_BOOL, ST_DTYPE_COUNT } st_dtype;

const char *st_dtype_name(st_dtype t); /* "F32"... */
size_t st_dtype_size(st_dtype t);      /* bytes per element */

typedef struct st_file st_file;

typedef struct {
    const char *name;
    st_dtype dtype;
    int ndim;
    const int64_t *shape; /* ndim entries (none for a scalar) */
    size_t numel;
    size_t nbytes;
    const void *data;     /* little-endian C order, aligned to the element size; valid until st_close */
} st_tensor;

/* NULL with "PATH: reason" in err when the file cannot be read or is not a
 * valid safetensors file. */
st_file *st_open(const char *path, char *err, size_t errlen);
void st_close(st_file *f);
const char *st_path(const st_file *f);

/* __metadata__: the value of key, NULL if absent. */
const char *st_meta(const st_file *f, const char *key);
/* The value of key as a decimal integer ("-12", no spaces, no '+', in range).
 * 0 and *out set; -1 if absent; -2 if not such an integer. */
int st_meta_int(const st_file *f, const char *key, long *out);
int st_meta_count(const st_file *f);
const char *st_meta_key(const st_file *f, int i); /* sorted by key */

/* Tensors in data-offset order. */
int st_count(const st_file *f);
const char *st_name(const st_file *f, int i);

/* Any tensor by name, marked used. 0 and *out filled, or -1 with
 * "PATH: tensor 'NAME' is missing" in err. */
int st_get(st_file *f, const char *name, st_tensor *out, char *err, size_t errlen);

/* The data of tensor `name`, which must have the given dtype and ndim
 * dimensions of the given sizes; shape entries of -1 match any size, a NULL
 * shape matches any shape with ndim dimensions, ndim < 0 any shape at all.
 * NULL with a message naming the file and tensor when it is missing or
 * differs. */
const void *st_get_as(st_file *f, const char *name, st_dtype dtype, int ndim, const int64_t *shape,
                      char *err, size_t errlen);
const float *st_get_f32(st_file *f, const char *name, int ndim, const int64_t *shape, char *err,
                        size_t errlen);

/* 0 if every tensor has been looked up; otherwise -1 and err names the first
 * one (in file order) that was not, so loaders can reject extra tensors. */
int st_check_all_used(const st_file *f, char *err, size_t errlen);

#endif
