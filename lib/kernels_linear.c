/* kernels_linear.c - packed linear (see kernels_linear.h): the register-tile
 * kernels (AVX-512, AVX2+FMA, generic C), the panel loop, the repacking. */
#include "kernels_linear.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "util.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define PLIN_X86 1
#else
#define PLIN_X86 0
#endif

/* The register tile holds RI rows x PW columns; every k step broadcasts one
 * a value per row and does one fused multiply-add per output with PW
 * contiguous weights. Every output is sum_k a[i,k] W[c,k] accumulated in k
 * order by fused multiply-adds starting from 0, then + bias: the same
 * operations whatever the tile size (kernels_linear.h). */
#define PW PLIN_PW
#define RI 6 /* rows per register tile */

typedef void tile_fn(float *out, int ldo, const float *a, int lda, const float *w, const float *bias, int K, int nc);

#if PLIN_X86
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

const char *packed_linear_use(const char *want) {
    tiles = tiles_c;
    kernel_name = "generic";
#if PLIN_X86
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f");
    if (want && !strcmp(want, "generic")) return kernel_name;
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
    return kernel_name;
}

const char *packed_linear_kernel(void) {
    if (!tiles) packed_linear_use(getenv("WSAC_KERNEL"));
    return kernel_name;
}

int packed_linear_panels(int OC) { return (OC + PW - 1) / PW; }

/* Rows go in chunks whose a[] stays in the L2 cache while the panels stream
 * past it. */
void packed_linear_forward(float *out, int ldo, const float *in, int lda, const packed_linear *L, int M, int p0,
                           int p1, int act) {
    packed_linear_kernel();
    int K = L->C;
    size_t rows = (256u << 10) / ((size_t)(K > 0 ? K : 1) * sizeof(float));
    int chunk = rows < RI ? RI : rows > (size_t)INT_MAX / 2 ? INT_MAX / 2 : (int)(rows / RI * RI);
    for (int i0 = 0; i0 < M; i0 += chunk) {
        int i1 = M - i0 < chunk ? M : i0 + chunk;
        for (int p = p0; p < p1; p++) {
            int c0 = p * PW, nc = L->OC - c0 < PW ? L->OC - c0 : PW;
            const float *w = L->p + (size_t)p * K * PW;
            const float *bias = L->b ? L->b + c0 : NULL;
            for (int i = i0; i < i1; i += RI) {
                int ni = i1 - i < RI ? i1 - i : RI;
                float *o = out + (size_t)i * ldo + c0;
                tiles[ni](o, ldo, in + (size_t)i * lda, lda, w, bias, K, nc);
                if (act == PLIN_NONE) continue;
                for (int r = 0; r < ni; r++) {
                    if (act == PLIN_GELU) gelu_erf_inplace(o + (size_t)r * ldo, (size_t)nc);
                    else relu_inplace(o + (size_t)r * ldo, (size_t)nc);
                }
            }
        }
    }
}

void packed_linear_forward_naive(float *out, int ldo, const float *in, int lda, const float *W, const float *b, int M,
                                 int C, int OC, int act) {
    for (int i = 0; i < M; i++)
        for (int o = 0; o < OC; o++) {
            double acc = b ? b[o] : 0.0;
            for (int c = 0; c < C; c++) acc += (double)in[(size_t)i * lda + c] * W[(size_t)o * C + c];
            if (act == PLIN_GELU) acc = 0.5 * acc * (1.0 + erf(acc * M_SQRT1_2));
            else if (act == PLIN_RELU) acc = acc > 0 ? acc : 0.0;
            out[(size_t)i * ldo + o] = (float)acc;
        }
}

void packed_linear_pack(packed_linear *L, int n, const float *const *W, const float *const *b, const int *oc, int C) {
    int OC = 0;
    for (int i = 0; i < n; i++) OC += oc[i];
    size_t np = (size_t)packed_linear_panels(OC);
    L->p = xmalloc_aligned(np * (size_t)C * PW * sizeof(float));
    L->b = b ? xmalloc((size_t)(OC > 0 ? OC : 1) * sizeof(float)) : NULL;
    L->C = C;
    L->OC = OC;
    for (int i = 0, o0 = 0; i < n; o0 += oc[i], i++)
        if (b) memcpy(L->b + o0, b[i], (size_t)oc[i] * sizeof(float));
    for (size_t p = 0; p < np; p++) {
        float *dst = L->p + p * (size_t)C * PW;
        for (int c = 0; c < PW; c++) {
            int o = (int)(p * PW) + c, part = 0;
            if (o >= OC) {
                for (int k = 0; k < C; k++) dst[(size_t)k * PW + c] = 0.0f;
                continue;
            }
            while (o >= oc[part]) o -= oc[part++];
            const float *src = W[part] + (size_t)o * C;
            for (int k = 0; k < C; k++) dst[(size_t)k * PW + c] = src[k];
        }
    }
}

void packed_linear_free(packed_linear *L) {
    free(L->p);
    free(L->b);
    L->p = NULL;
    L->b = NULL;
}
