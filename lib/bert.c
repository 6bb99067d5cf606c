/* bert.c - the CLAP text encoder forward pass, BERT and RoBERTa (see bert.h).
 *
 * Legend: T tokens in a batch (the sum of the sequence lengths), B sequences,
 * L one sequence's length, H hidden, NH heads, d = H / NH, I feed-forward
 * width, E embedding size, K the reduction length of a matrix product,
 * OC its output columns.
 *
 * Sections: matrix-product kernels (AVX-512, AVX2+FMA, generic C), GELU,
 * thread pool, loading, forward pass. */
#define _POSIX_C_SOURCE 200809L
#include "bert.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nn.h"
#include "pool.h"
#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define BERT_X86 1
#else
#define BERT_X86 0
#endif

#define TXT "text_encoder.text_encoder."

/* ------------------------------------------------------------------------
 * Matrix products: out[M, OC] = a[M, K] @ W[OC, K]^T (+ bias), W repacked in
 * panels of PW output columns, each stored [K][PW]. The register tile holds
 * RI rows x PW columns; every k step broadcasts one a value per row and does
 * one fused multiply-add per output with PW contiguous weights. OpenBLAS
 * packs W anew on every call, which for a few rows (one caption: ~15 tokens)
 * costs more than the product: over BERT-base's 72 matrices, 14 rows take
 * 60 ms with cblas_sgemm and 25 ms here; 922 rows run at 99 and 110 GFLOP/s
 * (AVX-512, one core; bench/README.md). It also makes rows independent,
 * which OpenBLAS's small-size paths do not (below). The price: copying the
 * matrices at load time (~0.2 s for BERT-base; the mapped originals are
 * then released, so memory stays at one copy).
 *
 * Every output is sum_k a[i,k] W[c,k] accumulated in k order by fused
 * multiply-adds starting from 0, then + bias: the same operations whatever
 * the tile size, the row's place in the batch or the thread, so results do
 * not depend on batching or threads (a tested property, see bert.h);
 * cblas_sgemm's results for a row change with the number of rows (M = 1 goes
 * through gemv; small products through other kernels). */
#define PW 64 /* output columns per panel */
#define RI 6  /* rows per register tile */

typedef void tile_fn(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, int K, int nc);

#if BERT_X86
#define T512 __attribute__((target("avx512f")))
#define T256 __attribute__((target("avx2,fma")))
#define INLINE static inline __attribute__((always_inline))

/* out[i, c] for i < ni, c < nc: 24 accumulators of 16 lanes */
INLINE T512 void tile512(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, int K,
                         int nc, const int ni) {
    __m512 acc[RI][4];
#pragma GCC unroll 8
    for (int i = 0; i < RI; i++)
#pragma GCC unroll 4
        for (int c = 0; c < 4; c++) acc[i][c] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *wk = w + (size_t)k * PW;
        __m512 w0 = _mm512_loadu_ps(wk), w1 = _mm512_loadu_ps(wk + 16);
        __m512 w2 = _mm512_loadu_ps(wk + 32), w3 = _mm512_loadu_ps(wk + 48);
#pragma GCC unroll 8
        for (int i = 0; i < RI; i++) {
            if (i >= ni) break;
            __m512 x = _mm512_set1_ps(a[(size_t)i * lda + k]);
            acc[i][0] = _mm512_fmadd_ps(x, w0, acc[i][0]);
            acc[i][1] = _mm512_fmadd_ps(x, w1, acc[i][1]);
            acc[i][2] = _mm512_fmadd_ps(x, w2, acc[i][2]);
            acc[i][3] = _mm512_fmadd_ps(x, w3, acc[i][3]);
        }
    }
#pragma GCC unroll 4
    for (int c = 0; c < 4; c++) {
        int n = nc - 16 * c;
        if (n <= 0) break;
        __mmask16 m = n >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1);
        __m512 b = bias ? _mm512_maskz_loadu_ps(m, bias + 16 * c) : _mm512_setzero_ps();
#pragma GCC unroll 8
        for (int i = 0; i < RI; i++) {
            if (i >= ni) break;
            _mm512_mask_storeu_ps(out + (size_t)i * ldo + 16 * c, m, _mm512_add_ps(acc[i][c], b));
        }
    }
}

/* 16 ymm registers: a quarter panel (16 columns) at a time, 12 accumulators */
INLINE T256 void tile256(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, int K,
                         int nc, const int ni) {
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int q = 0; q < 4 && 16 * q < nc; q++) {
        __m256 acc[RI][2];
#pragma GCC unroll 8
        for (int i = 0; i < RI; i++) acc[i][0] = acc[i][1] = _mm256_setzero_ps();
        for (int k = 0; k < K; k++) {
            const float *wk = w + (size_t)k * PW + 16 * q;
            __m256 w0 = _mm256_loadu_ps(wk), w1 = _mm256_loadu_ps(wk + 8);
#pragma GCC unroll 8
            for (int i = 0; i < RI; i++) {
                if (i >= ni) break;
                __m256 x = _mm256_set1_ps(a[(size_t)i * lda + k]);
                acc[i][0] = _mm256_fmadd_ps(x, w0, acc[i][0]);
                acc[i][1] = _mm256_fmadd_ps(x, w1, acc[i][1]);
            }
        }
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            int n = nc - 16 * q - 8 * h;
            if (n <= 0) break;
            __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lane);
            __m256 b = bias ? _mm256_maskload_ps(bias + 16 * q + 8 * h, m) : _mm256_setzero_ps();
#pragma GCC unroll 8
            for (int i = 0; i < RI; i++) {
                if (i >= ni) break;
                _mm256_maskstore_ps(out + (size_t)i * ldo + 16 * q + 8 * h, m, _mm256_add_ps(acc[i][h], b));
            }
        }
    }
}

#define TILE_X86(n)                                                                                              \
    static T512 void tile512_##n(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, \
                                 int K, int nc) {                                                                \
        tile512(out, ldo, a, lda, w, bias, K, nc, n);                                                            \
    }                                                                                                            \
    static T256 void tile256_##n(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, \
                                 int K, int nc) {                                                                \
        tile256(out, ldo, a, lda, w, bias, K, nc, n);                                                            \
    }
TILE_X86(1)
TILE_X86(2)
TILE_X86(3)
TILE_X86(4)
TILE_X86(5)
TILE_X86(6)
static tile_fn *const tiles512[RI + 1] = {NULL, tile512_1, tile512_2, tile512_3, tile512_4, tile512_5, tile512_6};
static tile_fn *const tiles256[RI + 1] = {NULL, tile256_1, tile256_2, tile256_3, tile256_4, tile256_5, tile256_6};
#endif

/* Portable C: the same sums, fused where the hardware fuses (fmaf would be a
 * slow library call elsewhere, and the sums then differ in the last bit). */
#ifdef __FP_FAST_FMAF
#define MADD(x, w, acc) fmaf(x, w, acc)
#else
#define MADD(x, w, acc) ((x) * (w) + (acc))
#endif
static inline void tile_c(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, int K,
                          int nc, const int ni) {
    float acc[RI][PW];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < K; k++) {
        const float *wk = w + (size_t)k * PW;
        for (int i = 0; i < ni; i++) {
            float x = a[(size_t)i * lda + k];
            for (int c = 0; c < PW; c++) acc[i][c] = MADD(x, wk[c], acc[i][c]);
        }
    }
    for (int i = 0; i < ni; i++)
        for (int c = 0; c < nc; c++) out[(size_t)i * ldo + c] = acc[i][c] + (bias ? bias[c] : 0.0f);
}
#define TILE_C(n)                                                                                               \
    static void tile_c_##n(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, int K, \
                           int nc) {                                                                             \
        tile_c(out, ldo, a, lda, w, bias, K, nc, n);                                                             \
    }
TILE_C(1)
TILE_C(2)
TILE_C(3)
TILE_C(4)
TILE_C(5)
TILE_C(6)
static tile_fn *const tiles_c[RI + 1] = {NULL, tile_c_1, tile_c_2, tile_c_3, tile_c_4, tile_c_5, tile_c_6};

static tile_fn *const *tiles;
static const char *kernel_name;

static void pick_kernel(void) {
    if (tiles) return;
    const char *want = getenv("WSAC_KERNEL");
    tiles = tiles_c;
    kernel_name = "generic";
#if BERT_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f");
    if (want && !strcmp(want, "generic")) return;
    if (avx512 && !(want && !strcmp(want, "avx2"))) {
        tiles = tiles512;
        kernel_name = "avx512";
    } else if (avx2) {
        tiles = tiles256;
        kernel_name = "avx2";
    }
#else
    (void)want;
#endif
}

const char *bert_kernel_name(void) {
    pick_kernel();
    return kernel_name;
}

enum { ACT_NONE, ACT_GELU, ACT_RELU };
static void gelu_erf(float *x, size_t n);

/* One product: out[M, OC] (row stride ldo) = a[M, K] (row stride lda) @ the
 * packed w + bias, then the activation. */
typedef struct {
    float *out;
    const float *a;
    const float *w;    /* packed [ceil(OC/PW)][K][PW] */
    const float *bias; /* [OC] or NULL */
    int ldo, lda, M, K, OC, act;
} mm_job;

static int panels(int OC) { return (OC + PW - 1) / PW; }

/* Panels [p0, p1) of job j, every row. Rows go in chunks whose a[] stays in
 * the L2 cache while the panels stream past it. */
static void mm_panels(const mm_job *j, int p0, int p1) {
    size_t rows = (256u << 10) / ((size_t)j->K * sizeof(float));
    int chunk = rows < RI ? RI : rows > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)(rows / RI * RI);
    for (int i0 = 0; i0 < j->M; i0 += chunk) {
        int i1 = j->M - i0 < chunk ? j->M : i0 + chunk;
        for (int p = p0; p < p1; p++) {
            int c0 = p * PW, nc = j->OC - c0 < PW ? j->OC - c0 : PW;
            const float *w = j->w + (size_t)p * j->K * PW;
            const float *bias = j->bias ? j->bias + c0 : NULL;
            for (int i = i0; i < i1; i += RI) {
                int ni = i1 - i < RI ? i1 - i : RI;
                float *o = j->out + (size_t)i * j->ldo + c0;
                tiles[ni](o, j->ldo, j->a + (size_t)i * j->lda, j->lda, w, bias, j->K, nc);
                if (j->act == ACT_NONE) continue;
                for (int r = 0; r < ni; r++) {
                    if (j->act == ACT_GELU) gelu_erf(o + (size_t)r * j->ldo, (size_t)nc);
                    else relu_inplace(o + (size_t)r * j->ldo, (size_t)nc);
                }
            }
        }
    }
}

/* Give back the whole pages of [p, p + n): a matrix read once, to be
 * repacked. The file is mapped private and read-only, so should anyone touch
 * them again they are read from the file again; the resident size drops by
 * the matrices' 340 MB. */
static void release(const void *p, size_t n) {
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) return;
    uintptr_t a = ((uintptr_t)p + (uintptr_t)pg - 1) / (uintptr_t)pg * (uintptr_t)pg;
    uintptr_t b = ((uintptr_t)p + n) / (uintptr_t)pg * (uintptr_t)pg;
    if (b > a) madvise((void *)a, b - a, MADV_DONTNEED);
}

/* Repack W[OC, C] into panels; columns past OC are zero. */
static void linear_pack(bert_linear *L, const float *W, const float *b, int OC, int C) {
    size_t np = (size_t)panels(OC);
    L->p = xmalloc_aligned(np * (size_t)C * PW * sizeof(float));
    L->b = b;
    L->C = C;
    L->OC = OC;
    for (size_t p = 0; p < np; p++) {
        float *dst = L->p + p * (size_t)C * PW;
        for (int c = 0; c < PW; c++) {
            size_t o = p * PW + (size_t)c;
            if (o >= (size_t)OC) {
                for (int k = 0; k < C; k++) dst[(size_t)k * PW + c] = 0.0f;
                continue;
            }
            const float *src = W + o * (size_t)C;
            for (int k = 0; k < C; k++) dst[(size_t)k * PW + c] = src[k];
        }
    }
    release(W, (size_t)OC * (size_t)C * sizeof(float));
}

/* ------------------------------------------------------------------------
 * GELU with the exact erf (HF "gelu" = torch.nn.functional.gelu, approximate
 * 'none'): gelu(x) = x * 0.5 * (1 + erf(x / sqrt 2)), written as PyTorch's
 * GeluKernel writes it. glibc's erf costs ~15 ns a value (0.5 s for a batch
 * of 64 captions); this vectorised float version ~1 ns:
 *   |z| < 0.875:  1 + erf(z) = 1 + z P(z^2)                 (P degree 5)
 *   |z| >= 0.875: erfc(u) = exp(-u^2) G(1 / (1 + u)),        (G degree 8, u = |z| <= 9)
 *                 1 + erf(z) = 2 - erfc(u) for z > 0, erfc(u) for z < 0
 * P and G are least-squares fits (relative error, float64, 3000 Chebyshev
 * nodes) to mpmath's erf(z)/z on [0, 0.875] and erfc(u) exp(u^2) on
 * [0.875, 9]. Against mpmath over 2^24 points in [-12, 12]: |gelu - exact|
 * <= 3.9e-7 (under 1 ulp of gelu); 1 + erf(z) is within 4.3e-7 relative for
 * x > -1, 1.4e-6 for -4 < x < -1 (PyTorch's vectorised erf, Abramowitz and
 * Stegun 7.1.26, is within 1.5e-7 absolute, so 1 + erf loses all accuracy
 * there). No fused operations: the same bits on every machine. */
typedef float v16f __attribute__((vector_size(64)));
typedef int32_t v16i __attribute__((vector_size(64)));

#define VSEL(m, a, b) ((v16f)(((v16i)(a) & (m)) | ((v16i)(b) & ~(m))))

/* gelu of p[0..16) in place (pointers, not vector arguments: no ABI issue) */
static inline __attribute__((always_inline)) void gelu16(float *p) {
    v16f x;
    memcpy(&x, p, sizeof x);
    v16f z = x * 0.707106781f; /* x * M_SQRT1_2 in float, as PyTorch */
    v16f u = (v16f)((v16i)z & 0x7fffffff);
    v16f s = z * z;
    v16f q = s * -0.000623515574f + 0.00503873779f;
    q = q * s - 0.0267963056f;
    q = q * s + 0.112826079f;
    q = q * s - 0.376125693f;
    q = q * s + 1.12837911f;
    v16f small = 1.0f + z * q; /* 1 + erf(z), |z| < 0.875 */
    v16f lo = (v16f){0} + 0.875f, hi = (v16f){0} + 9.0f;
    v16f uc = VSEL(u < lo, lo, VSEL(u > hi, hi, u));
    v16f t = 1.0f / (1.0f + uc);
    v16f g = t * 0.780107737f - 2.82607865f;
    g = g * t + 4.0418644f;
    g = g * t - 2.52159238f;
    g = g * t + 0.185544178f;
    g = g * t + 0.206939325f;
    g = g * t + 0.571582139f;
    g = g * t + 0.563783348f;
    g = g * t + 9.52616028e-06f;
    /* exp(y), y = -uc^2 in [-81, -0.76]: y = n ln2 + r (Cody-Waite), Taylor
     * degree 7 in |r| <= ln2 / 2 (truncation < 6e-9), times 2^n built in the
     * exponent bits */
    v16f y = -(uc * uc);
    v16f n = (y * 1.44269504f + 12582912.0f) - 12582912.0f; /* round to nearest */
    v16f r = (y - n * 0.693145751953125f) - n * 1.42860677e-6f;
    v16f e = r * (1.0f / 5040) + 1.0f / 720;
    e = e * r + 1.0f / 120;
    e = e * r + 1.0f / 24;
    e = e * r + 1.0f / 6;
    e = e * r + 0.5f;
    e = e * r + 1.0f;
    e = e * r + 1.0f;
    e = e * (v16f)((__builtin_convertvector(n, v16i) + 127) << 23);
    v16f ec = e * g; /* erfc(uc) */
    v16f zero = {0};
    v16f large = VSEL(z >= zero, 2.0f - ec, ec); /* 1 + erf(z), |z| >= 0.875 */
    v16f out = x * 0.5f * VSEL(u < lo, small, large);
    memcpy(p, &out, sizeof out);
}

#if BERT_X86
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void gelu_erf(float *x, size_t n) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16) gelu16(x + i);
    if (i < n) { /* the tail through a padded buffer: the same operations per value */
        float buf[16] = {0};
        memcpy(buf, x + i, (n - i) * sizeof(float));
        gelu16(buf);
        memcpy(x + i, buf, (n - i) * sizeof(float));
    }
}

/* ------------------------------------------------------------------------
 * Loading */

static int failf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int failf(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* A size-defining F32 tensor of ndim dimensions: its shape, each in [1, 2^24]. */
static int get_dims(st_file *f, const char *name, int ndim, int *dims, char *err, size_t errlen) {
    if (!st_get_as(f, name, ST_F32, ndim, NULL, err, errlen)) return -1;
    st_tensor t;
    if (st_get(f, name, &t, err, errlen)) return -1;
    for (int i = 0; i < ndim; i++) {
        if (t.shape[i] < 1 || t.shape[i] > (1 << 24))
            return failf(err, errlen, "%s: tensor '%s' has dimension %lld, expected 1 to %d", st_path(f), name,
                         (long long)t.shape[i], 1 << 24);
        dims[i] = (int)t.shape[i];
    }
    return 0;
}

static const float *get1(st_file *f, const char *name, int n, char *err, size_t errlen) {
    int64_t shape[1] = {n};
    return st_get_f32(f, name, 1, shape, err, errlen);
}

static const float *get2(st_file *f, const char *name, int r, int c, char *err, size_t errlen) {
    int64_t shape[2] = {r, c};
    return st_get_f32(f, name, 2, shape, err, errlen);
}

/* name = prefix + "weight" [OC, C] and prefix + "bias" [OC], repacked */
static int get_linear(st_file *f, bert_linear *L, const char *prefix, int OC, int C, char *err, size_t errlen) {
    char name[256];
    snprintf(name, sizeof name, "%sweight", prefix);
    const float *W = get2(f, name, OC, C, err, errlen);
    if (!W) return -1;
    snprintf(name, sizeof name, "%sbias", prefix);
    const float *b = get1(f, name, OC, err, errlen);
    if (!b) return -1;
    linear_pack(L, W, b, OC, C);
    return 0;
}

/* A required metadata integer in [lo, hi]. */
static int meta_int(st_file *f, const char *key, long lo, long hi, int *out, char *err, size_t errlen) {
    long v;
    int r = st_meta_int(f, key, &v);
    if (r == -1) return failf(err, errlen, "%s: metadata '%s' is missing", st_path(f), key);
    if (r < 0 || v < lo || v > hi)
        return failf(err, errlen, "%s: metadata '%s' is '%s', expected an integer from %ld to %ld", st_path(f), key,
                     st_meta(f, key), lo, hi);
    *out = (int)v;
    return 0;
}

/* An optional metadata integer that, when present, must equal the size read from the tensors. */
static int meta_agrees(st_file *f, const char *key, int have, const char *what, char *err, size_t errlen) {
    long v;
    int r = st_meta_int(f, key, &v);
    if (r == -1) return 0;
    if (r < 0 || v != have)
        return failf(err, errlen, "%s: metadata '%s' is '%s' but the tensors have %s %d", st_path(f), key,
                     st_meta(f, key), what, have);
    return 0;
}

static int has_prefix(const char *s, const char *p) { return !strncmp(s, p, strlen(p)); }

/* Where an architecture's tensors live: the encoder's prefix (HF names
 * follow it), the projection's, and the prefixes a file of this family
 * keeps text-side tensors under (any other name there is refused). */
typedef struct {
    const char *enc;  /* + embeddings.*, encoder.layer.N.* */
    const char *proj; /* + 0.weight ... */
    const char *side[2];
    const char *what; /* for messages */
} tower_names;

static const tower_names bert_names = {TXT, "text_proj.", {"text_encoder.", "text_proj."},
                                       "the BERT-base CLAP text encoder"};
static const tower_names roberta_names = {"sentence_embedding_model.", "project_sentence.",
                                          {"sentence_embedding_model.", "project_sentence."},
                                          "SALSA's RoBERTa text tower"};

static const char *nm(char *buf, size_t n, const char *a, const char *b) {
    snprintf(buf, n, "%s%s", a, b);
    return buf;
}

/* The names bert_load expects, for finding tensors it does not know. */
static int expected_name(const bert_config *c, const tower_names *tn, const char *name) {
    static const char *const emb[] = {"embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                                      "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                                      "embeddings.LayerNorm.bias"};
    static const char *const proj[] = {"0.weight", "0.bias", "2.weight", "2.bias"};
    static const char *const per_layer[] = {
        "attention.self.query.weight", "attention.self.query.bias", "attention.self.key.weight",
        "attention.self.key.bias", "attention.self.value.weight", "attention.self.value.bias",
        "attention.output.dense.weight", "attention.output.dense.bias", "attention.output.LayerNorm.weight",
        "attention.output.LayerNorm.bias", "intermediate.dense.weight", "intermediate.dense.bias",
        "output.dense.weight", "output.dense.bias", "output.LayerNorm.weight", "output.LayerNorm.bias"};
    if (has_prefix(name, tn->enc))
        for (size_t i = 0; i < sizeof emb / sizeof emb[0]; i++)
            if (!strcmp(name + strlen(tn->enc), emb[i])) return 1;
    if (has_prefix(name, tn->proj))
        for (int i = 0; i < 2 * c->proj_layers; i++)
            if (!strcmp(name + strlen(tn->proj), proj[i])) return 1;
    char lp[96];
    nm(lp, sizeof lp, tn->enc, "encoder.layer.");
    if (!has_prefix(name, lp)) return 0;
    const char *s = name + strlen(lp);
    char *end;
    long l = strtol(s, &end, 10);
    if (end == s || *end != '.' || l < 0 || l >= c->layers || (s[0] == '0' && end - s > 1)) return 0;
    for (size_t i = 0; i < sizeof per_layer / sizeof per_layer[0]; i++)
        if (!strcmp(end + 1, per_layer[i])) return 1;
    return 0;
}

int bert_load(bert_model *m, st_file *f, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    bert_config *c = &m->c;
    const char *path = st_path(f);
    const char *v = st_meta(f, "wsac.format");
    if (!v || strcmp(v, "1"))
        return failf(err, errlen,
                     "%s: metadata 'wsac.format' is %s%s%s, expected '1' (convert with scripts/convert.py)", path,
                     v ? "'" : "", v ? v : "missing", v ? "'" : "");
    v = st_meta(f, "clap.text.arch"); /* absent: bert (WavCaps); SALSA files say roberta */
    const char *model = st_meta(f, "wsac.model");
    if (!model || strcmp(model, "clap"))
        return failf(err, errlen, "%s: metadata 'wsac.model' is %s%s%s, expected 'clap'", path, model ? "'" : "",
                     model ? model : "missing", model ? "'" : "");
    if (v && strcmp(v, "bert") && strcmp(v, "roberta"))
        return failf(err, errlen, "%s: metadata 'clap.text.arch' is '%.40s', expected 'bert' or 'roberta'", path, v);
    c->arch = v && !strcmp(v, "roberta") ? BERT_ARCH_ROBERTA : BERT_ARCH_BERT;
    const tower_names *tn = c->arch == BERT_ARCH_ROBERTA ? &roberta_names : &bert_names;
    c->proj_layers = c->arch == BERT_ARCH_ROBERTA ? 1 : 2;
    c->pad_id = -1;
    char n1[192];
#define ENC(s) nm(n1, sizeof n1, tn->enc, s)
#define PRJ(s) nm(n1, sizeof n1, tn->proj, s)

    int d[2];
    if (get_dims(f, ENC("embeddings.word_embeddings.weight"), 2, d, err, errlen)) return -1;
    c->vocab = d[0];
    c->hidden = d[1];
    if (get_dims(f, ENC("embeddings.position_embeddings.weight"), 2, d, err, errlen)) return -1;
    c->positions = d[0];
    if (get_dims(f, ENC("embeddings.token_type_embeddings.weight"), 2, d, err, errlen)) return -1;
    c->types = d[0];
    if (get_dims(f, ENC("encoder.layer.0.intermediate.dense.weight"), 2, d, err, errlen)) return -1;
    c->intermediate = d[0];
    if (get_dims(f, PRJ("0.weight"), 2, d, err, errlen)) return -1;
    c->embed = d[0];
    int H = c->hidden;
    if (!get2(f, ENC("embeddings.position_embeddings.weight"), c->positions, H, err, errlen) ||
        !get2(f, ENC("embeddings.token_type_embeddings.weight"), c->types, H, err, errlen) ||
        !get2(f, ENC("encoder.layer.0.intermediate.dense.weight"), c->intermediate, H, err, errlen) ||
        !get2(f, PRJ("0.weight"), c->embed, H, err, errlen))
        return -1;
    /* layers: encoder.layer.0 .. N-1, by name */
    int nl = 0;
    char lp[96];
    nm(lp, sizeof lp, tn->enc, "encoder.layer.");
    for (int i = 0; i < st_count(f); i++) {
        const char *name = st_name(f, i);
        if (!has_prefix(name, lp)) continue;
        long l = strtol(name + strlen(lp), NULL, 10);
        if (l >= 0 && l < 10000 && l + 1 > nl) nl = (int)l + 1;
    }
    c->layers = nl;

    if (meta_int(f, "clap.text.heads", 1, H, &c->heads, err, errlen)) return -1;
    if (H % c->heads)
        return failf(err, errlen, "%s: metadata 'clap.text.heads' is %d, which does not divide the hidden size %d",
                     path, c->heads, H);
    c->head_dim = H / c->heads;
    if (c->arch == BERT_ARCH_ROBERTA) {
        /* HF create_position_ids_from_input_ids: the real tokens' positions
         * count from padding_idx + 1, so the table needs max_len more rows */
        if (meta_int(f, "clap.text.pad_id", 0, c->vocab - 1, &c->pad_id, err, errlen)) return -1;
        int off;
        if (meta_int(f, "clap.text.position_offset", 0, c->positions, &off, err, errlen)) return -1;
        if (off != c->pad_id + 1)
            return failf(err, errlen,
                         "%s: metadata 'clap.text.position_offset' is %d, expected pad_id + 1 = %d (RoBERTa's "
                         "positions)",
                         path, off, c->pad_id + 1);
        c->pos_offset = off;
        v = st_meta(f, "clap.text.pooling");
        if (v && strcmp(v, "first"))
            return failf(err, errlen, "%s: metadata 'clap.text.pooling' is '%.40s', expected 'first' (SALSA's)", path,
                         v);
        if (c->positions - off < 3)
            return failf(err, errlen, "%s: %d position embeddings leave no room past the offset %d", path,
                         c->positions, off);
    }
    if (meta_int(f, "clap.text.max_len", 3, c->positions - c->pos_offset, &c->max_len, err, errlen)) return -1;
    v = st_meta(f, "clap.text.ln_eps");
    char *end = NULL;
    double eps = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(eps > 0 && eps < 1))
        return failf(err, errlen, "%s: metadata 'clap.text.ln_eps' is %s%s%s, expected a number in (0, 1)", path,
                     v ? "'" : "", v ? v : "missing", v ? "'" : "");
    c->ln_eps = (float)eps;
    if (meta_agrees(f, "clap.text.layers", c->layers, "layers", err, errlen) ||
        meta_agrees(f, "clap.text.hidden", H, "hidden size", err, errlen) ||
        meta_agrees(f, "clap.text.intermediate", c->intermediate, "feed-forward size", err, errlen) ||
        meta_agrees(f, "clap.text.vocab_size", c->vocab, "vocabulary size", err, errlen) ||
        meta_agrees(f, "clap.text.positions", c->positions, "positions", err, errlen) ||
        meta_agrees(f, "clap.embed_dim", c->embed, "embedding size", err, errlen))
        return -1;

    const float *tt;
    if (!(m->word = get2(f, ENC("embeddings.word_embeddings.weight"), c->vocab, H, err, errlen)) ||
        !(m->pos = get2(f, ENC("embeddings.position_embeddings.weight"), c->positions, H, err, errlen)) ||
        !(tt = get2(f, ENC("embeddings.token_type_embeddings.weight"), c->types, H, err, errlen)) ||
        !(m->ln_w = get1(f, ENC("embeddings.LayerNorm.weight"), H, err, errlen)) ||
        !(m->ln_b = get1(f, ENC("embeddings.LayerNorm.bias"), H, err, errlen)))
        goto fail;
    m->type0 = tt;
    m->layer = xcalloc((size_t)(nl ? nl : 1), sizeof(bert_layer));
    if (nl == 0) {
        /* the first layer's name is what is missing */
        get2(f, ENC("encoder.layer.0.attention.self.query.weight"), H, H, err, errlen);
        goto fail;
    }
    int I = c->intermediate;
    for (int l = 0; l < nl; l++) {
        bert_layer *L = &m->layer[l];
        char pre[128], name[192];
#define LIN(field, sub, oc, ic)                                                     \
    snprintf(name, sizeof name, "%s%s.", pre, sub);                                 \
    if (get_linear(f, &L->field, name, oc, ic, err, errlen)) goto fail;
#define VEC(field, sub)                                                             \
    snprintf(name, sizeof name, "%s%s", pre, sub);                                  \
    if (!(L->field = get1(f, name, H, err, errlen))) goto fail;
        snprintf(pre, sizeof pre, "%sencoder.layer.%d.", tn->enc, l);
        LIN(q, "attention.self.query", H, H)
        LIN(k, "attention.self.key", H, H)
        LIN(v, "attention.self.value", H, H)
        LIN(o, "attention.output.dense", H, H)
        VEC(ln1_w, "attention.output.LayerNorm.weight")
        VEC(ln1_b, "attention.output.LayerNorm.bias")
        LIN(fi, "intermediate.dense", I, H)
        LIN(fo, "output.dense", H, I)
        VEC(ln2_w, "output.LayerNorm.weight")
        VEC(ln2_b, "output.LayerNorm.bias")
#undef LIN
#undef VEC
    }
    if (get_linear(f, &m->proj0, PRJ("0."), c->embed, H, err, errlen) ||
        (c->proj_layers == 2 && get_linear(f, &m->proj2, PRJ("2."), c->embed, c->embed, err, errlen)))
        goto fail;
#undef ENC
#undef PRJ
    /* a text-side tensor this architecture has no place for: another model */
    for (int i = 0; i < st_count(f); i++) {
        const char *name = st_name(f, i);
        if ((has_prefix(name, tn->side[0]) || has_prefix(name, tn->side[1])) && !expected_name(c, tn, name)) {
            failf(err, errlen, "%s: unexpected tensor '%s' (not part of %s)", path, name, tn->what);
            goto fail;
        }
    }
    pick_kernel();
    return 0;
fail:
    bert_free(m);
    return -1;
}

static void linear_free(bert_linear *L) {
    free(L->p);
    L->p = NULL;
}

void bert_free(bert_model *m) {
    if (m->layer) {
        for (int l = 0; l < m->c.layers; l++) {
            bert_layer *L = &m->layer[l];
            linear_free(&L->q);
            linear_free(&L->k);
            linear_free(&L->v);
            linear_free(&L->o);
            linear_free(&L->fi);
            linear_free(&L->fo);
        }
    }
    free(m->layer);
    linear_free(&m->proj0);
    linear_free(&m->proj2);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------
 * Forward pass */

typedef struct {
    float *kp, *sc, *vp; /* attention scratch: packed K^T, scores, packed V */
    size_t cap;          /* for sequences up to this length */
} att_scratch;

struct bert_state {
    thread_pool *pool;
    int threads;
    size_t cap_t, cap_b;
    float *x, *q, *k, *v, *ctx, *tmp; /* [T, H] */
    float *ff;                        /* [T, I] */
    float *cls;                       /* [B, H] the [CLS] rows in the last layer */
    float *h1;                        /* [B, E] */
    int *start;                       /* [B + 1] first token of each sequence */
    int *pos;                         /* [T] position of each token in its sequence */
    att_scratch *att;                 /* [threads] */
};

bert_state *bert_state_new(const bert_model *m, int threads) {
    (void)m;
    pick_kernel();
    bert_state *s = xcalloc(1, sizeof *s);
    s->threads = threads < 1 ? 1 : threads;
    s->att = xcalloc((size_t)s->threads, sizeof(att_scratch));
    s->pool = pool_new(s->threads);
    return s;
}

static void free_acts(bert_state *s) {
    free(s->x);
    free(s->q);
    free(s->k);
    free(s->v);
    free(s->ctx);
    free(s->tmp);
    free(s->ff);
    free(s->pos);
}

void bert_state_free(bert_state *s) {
    if (!s) return;
    pool_free(s->pool);
    free_acts(s);
    free(s->cls);
    free(s->h1);
    free(s->start);
    for (int t = 0; t < s->threads; t++) {
        free(s->att[t].kp);
        free(s->att[t].sc);
        free(s->att[t].vp);
    }
    free(s->att);
    free(s);
}

static float *falloc(size_t rows, size_t cols) { return xmalloc_aligned(rows * cols * sizeof(float)); }

static void grow(bert_state *s, const bert_config *c, size_t T, size_t B, size_t Lmax) {
    size_t H = (size_t)c->hidden;
    if (T > s->cap_t) {
        free_acts(s);
        s->x = falloc(T, H);
        s->q = falloc(T, H);
        s->k = falloc(T, H);
        s->v = falloc(T, H);
        s->ctx = falloc(T, H);
        s->tmp = falloc(T, H);
        s->ff = falloc(T, (size_t)c->intermediate);
        s->pos = xmalloc(T * sizeof(int));
        s->cap_t = T;
    }
    if (B > s->cap_b) {
        free(s->cls);
        free(s->h1);
        free(s->start);
        s->cls = falloc(B, H);
        s->h1 = falloc(B, (size_t)c->embed);
        s->start = xmalloc((B + 1) * sizeof(int));
        s->cap_b = B;
    }
    size_t d = (size_t)c->head_dim, lp = (Lmax + PW - 1) / PW * PW, dp = (d + PW - 1) / PW * PW;
    for (int t = 0; t < s->threads; t++) {
        att_scratch *a = &s->att[t];
        if (Lmax <= a->cap) continue;
        free(a->kp);
        free(a->sc);
        free(a->vp);
        a->kp = falloc(lp, d);
        a->sc = falloc(Lmax, lp);
        a->vp = falloc(dp, Lmax);
        a->cap = Lmax;
    }
}

/* What the tasks of one forward pass share. */
typedef struct {
    bert_state *s;
    const bert_model *m;
    const int32_t *ids;
    const int *len;
    int B, T;
    /* the current task */
    atomic_int next; /* next work item to hand out */
    mm_job jobs[3];
    int njobs;
    int cls_only;    /* last layer: only the [CLS] rows go on */
    float *rx;       /* residual rows: x = LN(tmp + x) over the rows of rx */
    int rrows;
    const float *ln_w, *ln_b;
} fwd;

/* Work items [0, n) go to the threads in chunks, first come first served:
 * a thread slowed down (another program on its core) holds up one chunk,
 * not a fixed share. Who computes an item never changes its value. */
static int grab(fwd *F, int n, int chunk, int *lo, int *hi) {
    int a = atomic_fetch_add(&F->next, chunk);
    if (a >= n) return 0;
    *lo = a;
    *hi = n - a < chunk ? n : a + chunk;
    return 1;
}

static void run_task(fwd *F, pool_fn *fn) {
    atomic_store(&F->next, 0);
    pool_run(F->s->pool, fn, F);
}

static int chunk_for(int n, int nt, int per_thread) {
    int c = n / (nt * per_thread);
    return c < 1 ? 1 : c;
}

/* Matrix products: the panels of all jobs. */
static void task_mm(void *ctx, int tid, int nt) {
    fwd *F = ctx;
    int total = 0, lo, hi;
    for (int j = 0; j < F->njobs; j++) total += panels(F->jobs[j].OC);
    int chunk = chunk_for(total, nt, 8);
    (void)tid;
    while (grab(F, total, chunk, &lo, &hi)) {
        for (int j = 0, base = 0; j < F->njobs && base < hi; j++) {
            int np = panels(F->jobs[j].OC);
            int a = lo > base ? lo - base : 0, b = hi - base < np ? hi - base : np;
            if (a < b) mm_panels(&F->jobs[j], a, b);
            base += np;
        }
    }
}

static void run_mm(fwd *F) { run_task(F, task_mm); }

static mm_job job(float *out, int ldo, const float *a, int lda, int M, const bert_linear *L, int act) {
    mm_job j = {out, a, L->p, L->b, ldo, lda, M, L->C, L->OC, act};
    return j;
}

/* Embeddings (HF BertEmbeddings, RobertaEmbeddings: word + token_type, then
 * + position), LayerNorm. */
static void task_embed(void *ctx, int tid, int nt) {
    fwd *F = ctx;
    const bert_model *m = F->m;
    int H = m->c.hidden, lo, hi;
    (void)tid;
    while (grab(F, F->T, chunk_for(F->T, nt, 4), &lo, &hi))
        for (int t = lo; t < hi; t++) {
            float *x = F->s->x + (size_t)t * H;
            const float *w = m->word + (size_t)F->ids[t] * H, *p = m->pos + (size_t)F->s->pos[t] * H;
            for (int i = 0; i < H; i++) x[i] = (w[i] + m->type0[i]) + p[i];
            layernorm_forward(x, x, m->ln_w, m->ln_b, 1, H, m->c.ln_eps);
        }
}

/* x = LayerNorm(tmp + x) over the rows of rx (HF BertSelfOutput / BertOutput). */
static void task_residual_ln(void *ctx, int tid, int nt) {
    fwd *F = ctx;
    int H = F->m->c.hidden, lo, hi;
    (void)tid;
    while (grab(F, F->rrows, chunk_for(F->rrows, nt, 4), &lo, &hi))
        for (int t = lo; t < hi; t++) {
            float *x = F->rx + (size_t)t * H;
            const float *y = F->s->tmp + (size_t)t * H;
            for (int i = 0; i < H; i++) x[i] = y[i] + x[i];
            layernorm_forward(x, x, F->ln_w, F->ln_b, 1, H, F->m->c.ln_eps);
        }
}

/* Self-attention of one sequence and head over exactly its own tokens:
 * scores = q k^T / sqrt(d), softmax, ctx = p v (HF BertSelfAttention).
 * With cls_only, only the [CLS] query (the last layer's only output used). */
static void attend(fwd *F, att_scratch *a, int b, int h) {
    const bert_config *c = &F->m->c;
    bert_state *s = F->s;
    int H = c->hidden, d = c->head_dim, L = F->len[b], s0 = s->start[b];
    int nq = F->cls_only ? 1 : L, lp = panels(L), ld = lp * PW;
    const float *k = s->k + (size_t)s0 * H + (size_t)h * d, *v = s->v + (size_t)s0 * H + (size_t)h * d;
    /* K^T packed as panels of keys: kp[p][kk][j] = k[p*64 + j][kk] */
    for (int p = 0; p < lp; p++)
        for (int kk = 0; kk < d; kk++) {
            float *dst = a->kp + ((size_t)p * d + kk) * PW;
            for (int j = 0; j < PW; j++) {
                int t = p * PW + j;
                dst[j] = t < L ? k[(size_t)t * H + kk] : 0.0f;
            }
        }
    const float *q = F->cls_only ? s->q + (size_t)b * H + (size_t)h * d : s->q + (size_t)s0 * H + (size_t)h * d;
    mm_job sj = {a->sc, q, a->kp, NULL, ld, H, nq, d, L, ACT_NONE};
    mm_panels(&sj, 0, lp);
    /* HF: attention_scores / math.sqrt(attention_head_size), then softmax */
    float scale = sqrtf((float)d);
    for (int i = 0; i < nq; i++) {
        float *r = a->sc + (size_t)i * ld;
        for (int j = 0; j < L; j++) r[j] = r[j] / scale;
        softmax_rows(r, 1, L);
    }
    /* V packed as panels of head columns: vp[p][j][cc] = v[j][p*64 + cc] */
    int dpn = panels(d);
    for (int p = 0; p < dpn; p++)
        for (int j = 0; j < L; j++) {
            float *dst = a->vp + ((size_t)p * L + j) * PW;
            for (int cc = 0; cc < PW; cc++) {
                int col = p * PW + cc;
                dst[cc] = col < d ? v[(size_t)j * H + col] : 0.0f;
            }
        }
    float *out = s->ctx + (size_t)(F->cls_only ? b : s0) * H + (size_t)h * d;
    mm_job oj = {out, a->sc, a->vp, NULL, H, ld, nq, L, d, ACT_NONE};
    mm_panels(&oj, 0, dpn);
}

static void task_attention(void *ctx, int tid, int nt) {
    fwd *F = ctx;
    int NH = F->m->c.heads, lo, hi;
    (void)nt;
    while (grab(F, F->B * NH, 1, &lo, &hi)) attend(F, &F->s->att[tid], lo / NH, lo % NH);
}

static void run_rows(fwd *F, float *rx, int rows, const float *w, const float *b) {
    F->rx = rx;
    F->rrows = rows;
    F->ln_w = w;
    F->ln_b = b;
    run_task(F, task_residual_ln);
}

static void layer_forward(fwd *F, int l, int last) {
    bert_state *s = F->s;
    const bert_layer *L = &F->m->layer[l];
    int H = F->m->c.hidden, I = F->m->c.intermediate, T = F->T, B = F->B;
    F->cls_only = last;
    /* rows that go on after attention: every token, or the [CLS] rows gathered into cls */
    float *x = s->x;
    int rows = T;
    if (last) {
        for (int b = 0; b < B; b++) memcpy(s->cls + (size_t)b * H, s->x + (size_t)s->start[b] * H, H * sizeof(float));
        x = s->cls;
        rows = B;
    }
    F->jobs[0] = job(s->q, H, x, H, rows, &L->q, ACT_NONE);
    F->jobs[1] = job(s->k, H, s->x, H, T, &L->k, ACT_NONE);
    F->jobs[2] = job(s->v, H, s->x, H, T, &L->v, ACT_NONE);
    F->njobs = 3;
    run_mm(F);
    run_task(F, task_attention);
    F->jobs[0] = job(s->tmp, H, s->ctx, H, rows, &L->o, ACT_NONE);
    F->njobs = 1;
    run_mm(F);
    run_rows(F, x, rows, L->ln1_w, L->ln1_b);
    F->jobs[0] = job(s->ff, I, x, H, rows, &L->fi, ACT_GELU);
    run_mm(F);
    F->jobs[0] = job(s->tmp, H, s->ff, I, rows, &L->fo, ACT_NONE);
    run_mm(F);
    run_rows(F, x, rows, L->ln2_w, L->ln2_b);
}

void bert_embed(bert_state *s, const bert_model *m, const int32_t *ids, const int *len, int B, float *emb) {
    const bert_config *c = &m->c;
    if (B <= 0) return;
    size_t T = 0;
    int Lmax = 0;
    for (int b = 0; b < B; b++) {
        if (len[b] < 1 || len[b] > c->positions - c->pos_offset)
            die("bert: sequence length %d outside 1..%d", len[b], c->positions - c->pos_offset);
        T += (size_t)len[b];
        if (len[b] > Lmax) Lmax = len[b];
    }
    if (T > INT_MAX / 2) die("bert: batch of %zu tokens is too large", T);
    grow(s, c, T, (size_t)B, (size_t)Lmax);
    s->start[0] = 0;
    for (int b = 0; b < B; b++) {
        s->start[b + 1] = s->start[b] + len[b];
        for (int j = 0; j < len[b]; j++) s->pos[s->start[b] + j] = c->pos_offset + j;
    }
    for (size_t t = 0; t < T; t++)
        if (ids[t] < 0 || ids[t] >= c->vocab) die("bert: token id %d outside the vocabulary (%d)", ids[t], c->vocab);
    fwd F;
    memset(&F, 0, sizeof F);
    atomic_init(&F.next, 0);
    F.s = s;
    F.m = m;
    F.ids = ids;
    F.len = len;
    F.B = B;
    F.T = (int)T;
    run_task(&F, task_embed);
    for (int l = 0; l < c->layers; l++) layer_forward(&F, l, l == c->layers - 1);
    F.njobs = 1;
    if (c->proj_layers == 2) { /* text_proj: Linear, ReLU, Linear */
        F.jobs[0] = job(s->h1, c->embed, s->cls, c->hidden, B, &m->proj0, ACT_RELU);
        run_mm(&F);
        F.jobs[0] = job(emb, c->embed, s->h1, c->embed, B, &m->proj2, ACT_NONE);
    } else { /* SALSA's project_sentence: one Linear */
        F.jobs[0] = job(emb, c->embed, s->cls, c->hidden, B, &m->proj0, ACT_NONE);
    }
    run_mm(&F);
    l2_normalize_rows(emb, B, c->embed); /* F.normalize(dim=-1) */
}

double bert_macs(const bert_model *m, const int *len, int B) {
    const bert_config *c = &m->c;
    double H = c->hidden, I = c->intermediate, E = c->embed, T = 0, att = 0, att_cls = 0;
    for (int b = 0; b < B; b++) {
        T += len[b];
        att += 2.0 * len[b] * len[b] * H; /* q k^T and p v over all heads */
        att_cls += 2.0 * len[b] * H;
    }
    double per_tok = 4 * H * H + 2 * H * I;
    double full = (c->layers - 1) * (T * per_tok + att);
    double last = T * 2 * H * H + B * (2 * H * H + 2 * H * I) + att_cls;
    return full + last + B * (H * E + (c->proj_layers == 2 ? E * E : 0));
}
