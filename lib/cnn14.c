/* cnn14.c - the WavCaps CNN14 CLAP audio encoder (see cnn14.h).
 *
 * Where the time goes: the 3x3 convolutions, 40 GFLOP for a 10-s clip.
 * Each is computed over tiles of output rows, by one of
 *
 *   im2col:   out[Cout, P_tile] = W[Cout, K] @ cols[K, P_tile],   K = Cin*9
 *             (one OpenBLAS sgemm; W is the checkpoint's [Cout, Cin, 3, 3]
 *             tensor as it lies in the mapped file: row-major, it already
 *             is [Cout, K])
 *   Winograd: F(2x2, 3x3), 16 sgemms [Cout, Cin] @ [Cin, tiles] on
 *             transformed weights made at load: 2.25x fewer multiplications
 *             (the default where the copies are small: CNN14's blocks 1-5)
 *
 * A tile's scratch stays a few MB (bounded memory, and still in cache when
 * the sgemm packs it). BN (folded to scale/shift, cnn14.h) and ReLU are
 * applied to the tile, and after the second conv of a block the 2x2 average
 * pool too, so the un-pooled conv2 output never exists at full size.
 * Activations live in two ping-pong buffers, [C, T, F] per clip (PyTorch's
 * NCHW with N = 1):
 *
 *   act[0] = bn0(mel)                       [1, T, M]
 *   block k:  act[1] = conv1(act[0])        [Cout, T, F]
 *             act[0] = pool(conv2(act[1]))  [Cout, T/2, F/2]
 *
 * Reference: wsac.md A.4-A.6 (WavCaps retrieval/models/cnns.py Cnn14,
 * ConvBlock; ase_model.py). */
#include "cnn14.h"

#include <cblas.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels.h"
#include "nn.h"
#include "pool.h"
#include "util.h"

#define PA "audio_encoder.audio_enc."

/* ------------------------------------------------------------------ loading */

/* The longest ConvBlock stack accepted: 2^24 frames minimum input. A sanity
 * limit on hostile files, not a model size (those come from the tensors). */
#define MAX_BLOCKS 24

typedef struct {
    st_file *f;
    char *err;
    size_t errlen;
    char **used; /* names looked up, for the unexpected-tensor check */
    int nused, capused;
} loader;

static void remember(loader *L, const char *name) {
    if (L->nused == L->capused) {
        L->capused = L->capused ? 2 * L->capused : 64;
        L->used = xrealloc(L->used, (size_t)L->capused * sizeof(char *));
    }
    L->used[L->nused++] = xstrdup(name);
}

/* An F32 tensor of exactly this shape (-1: any size), or NULL with the message. */
static const float *need(loader *L, const char *name, int ndim, const int64_t *shape) {
    const float *p = st_get_f32(L->f, name, ndim, shape, L->err, L->errlen);
    if (p) remember(L, name);
    return p;
}

/* The size of dimension 0 of a tensor already checked by need(). */
static int dim0(loader *L, const char *name) {
    st_tensor t;
    st_get(L->f, name, &t, NULL, 0);
    return (int)t.shape[0];
}

static int fail(loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(loader *L, const char *fmt, ...) {
    int k = snprintf(L->err, L->errlen, "%s: ", st_path(L->f));
    if (k > 0 && (size_t)k < L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + k, L->errlen - k, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* BatchNorm `pre`{weight,bias,running_mean,running_var}, each [c]. raw
 * (may be NULL) receives the four pointers for the naive path. */
static int load_bn(loader *L, const char *pre, int c, float eps, float *scale, float *shift, const float **raw) {
    static const char *part[4] = {"weight", "bias", "running_mean", "running_var"};
    const float *p[4];
    int64_t shape[1] = {c};
    char name[256];
    for (int i = 0; i < 4; i++) {
        snprintf(name, sizeof name, "%s%s", pre, part[i]);
        if (!(p[i] = need(L, name, 1, shape))) return -1;
    }
    for (int i = 0; i < c; i++) {
        /* ATen's eval batch_norm, in float (batch_norm_kernel.cpp,
         * batch_norm_cpu_collect_linear_and_constant_terms): invstd =
         * 1 / sqrt(var + eps), alpha = invstd * weight, beta = bias - mean * alpha */
        float invstd = 1.0f / sqrtf(p[3][i] + eps);
        scale[i] = invstd * p[0][i];
        shift[i] = p[1][i] - p[2][i] * scale[i];
        if (!isfinite(scale[i]) || !isfinite(shift[i]))
            return fail(L, "BatchNorm %s channel %d is not finite (weight %g, bias %g, mean %g, var %g)", pre, i,
                        p[0][i], p[1][i], p[2][i], p[3][i]);
    }
    if (raw)
        for (int i = 0; i < 4; i++) raw[i] = p[i];
    return 0;
}

/* The block number of a name "PAconv_blockK.xxx" (K decimal, no leading
 * zero), else 0. */
static long block_of(const char *name) {
    static const char pre[] = PA "conv_block";
    if (strncmp(name, pre, sizeof pre - 1)) return 0;
    const char *s = name + sizeof pre - 1;
    if (*s < '1' || *s > '9') return 0;
    long k = 0;
    while (*s >= '0' && *s <= '9' && k < 1000000) k = k * 10 + (*s++ - '0');
    return *s == '.' ? k : 0;
}

static int is_audio_name(const char *name) {
    return !strncmp(name, "audio_encoder.", 14) || !strncmp(name, "audio_proj.", 11);
}

/* A metadata integer that must agree with the tensors when present. */
static int meta_agrees(loader *L, const char *key, long want) {
    long v;
    int r = st_meta_int(L->f, key, &v);
    if (r == -1) return 0;
    if (r == -2) return fail(L, "__metadata__ %s = '%s' is not an integer", key, st_meta(L->f, key));
    if (v != want) return fail(L, "__metadata__ %s = %ld, but the tensors say %ld", key, v, want);
    return 0;
}

static float *winograd_weights(const float *w, int Cout, int Cin);

/* The size above which CNN14_AUTO keeps a layer on im2col, for memory: the
 * transformed copy is 16/9 the size of the weights. CNN14's blocks 1-5 take
 * 128 MiB of copies; block 6 (72 % of the weights) would add 384 MiB for
 * 7-10 % less time on 30-s clips and little on 10-s ones (measured), and
 * peak RSS would come near the limit of the model file size + 256 MiB. */
#define WINO_MAX_BYTES ((size_t)64 << 20)

static int load(loader *L, cnn14_model *m, int algo) {
    st_file *f = L->f;
    cnn14_config *c = &m->cfg;
    const char *kind = st_meta(f, "wsac.model"), *fmt = st_meta(f, "wsac.format");
    if (!kind)
        return fail(L, "no wsac.model in __metadata__: not a wsac model file (make one with scripts/convert.py clap)");
    if (strcmp(kind, "clap"))
        return fail(L, "__metadata__ wsac.model is '%.100s', expected 'clap': not a CLAP model file", kind);
    if (!fmt || strcmp(fmt, "1"))
        return fail(L, "__metadata__ wsac.format is '%.100s', expected '1'", fmt ? fmt : "(absent)");
    c->bn_eps = 1e-5f; /* nn.BatchNorm2d's default, which cnns.py keeps */
    const char *eps = st_meta(f, "clap.audio.bn_eps");
    if (eps) {
        char *end;
        double e = strtod(eps, &end);
        if (end == eps || *end || !(e > 0 && e < 1))
            return fail(L, "__metadata__ clap.audio.bn_eps = '%.100s' is not a number in (0, 1)", eps);
        c->bn_eps = (float)e;
    }

    /* bn0: its width is the number of mel bands */
    int64_t any[1] = {-1};
    if (!need(L, PA "bn0.weight", 1, any)) return -1;
    if ((c->n_mels = dim0(L, PA "bn0.weight")) < 1) return fail(L, "tensor '" PA "bn0.weight' is empty");

    /* conv_block1..N: N is the highest block number in the file; a gap is
     * reported below as the first missing tensor */
    long maxk = 0;
    for (int i = 0; i < st_count(f); i++) {
        long k = block_of(st_name(f, i));
        if (k > maxk) maxk = k;
    }
    if (maxk > MAX_BLOCKS) return fail(L, "tensor '%sconv_block%ld...': more than %d ConvBlocks", PA, maxk, MAX_BLOCKS);
    c->nblocks = maxk > 0 ? (int)maxk : 1; /* none: "conv_block1... is missing" */
    c->channels = xcalloc((size_t)c->nblocks, sizeof(int));
    m->w.conv = xcalloc(2 * (size_t)c->nblocks, sizeof(cnn14_conv));
    int cin = 1;
    char name[256];
    for (int k = 1; k <= c->nblocks; k++) {
        cnn14_conv *c1 = &m->w.conv[2 * (k - 1)], *c2 = c1 + 1;
        snprintf(name, sizeof name, PA "conv_block%d.conv1.weight", k);
        int64_t s1[4] = {-1, cin, 3, 3};
        if (!(c1->w = need(L, name, 4, s1))) return -1;
        int cout = dim0(L, name);
        if (cout < 1) return fail(L, "tensor '%s' has no output channels", name);
        snprintf(name, sizeof name, PA "conv_block%d.conv2.weight", k);
        int64_t s2[4] = {cout, cout, 3, 3};
        if (!(c2->w = need(L, name, 4, s2))) return -1;
        c1->cin = cin, c1->cout = cout;
        c2->cin = cout, c2->cout = cout;
        c->channels[k - 1] = cout;
        cin = cout;
    }
    c->min_frames = 1 << c->nblocks;
    if (c->n_mels < c->min_frames)
        return fail(L, "%d mel bands (bn0) are too few for %d 2x2 poolings (at least %d)", c->n_mels, c->nblocks,
                    c->min_frames);
    int64_t p0[2] = {-1, cin};
    if (!(m->w.proj0_w = need(L, "audio_proj.0.weight", 2, p0))) return -1;
    c->embed = dim0(L, "audio_proj.0.weight");
    if (c->embed < 1) return fail(L, "tensor 'audio_proj.0.weight' has no rows");
    int64_t e1[1] = {c->embed}, e2[2] = {c->embed, c->embed};
    if (!(m->w.proj0_b = need(L, "audio_proj.0.bias", 1, e1))) return -1;
    if (!(m->w.proj2_w = need(L, "audio_proj.2.weight", 2, e2))) return -1;
    if (!(m->w.proj2_b = need(L, "audio_proj.2.bias", 1, e1))) return -1;

    /* BatchNorms, folded into one allocation of scale/shift vectors */
    size_t nfold = 2 * (size_t)c->n_mels;
    for (int k = 0; k < c->nblocks; k++) nfold += 4 * (size_t)c->channels[k];
    float *fp = m->folded = xmalloc(nfold * sizeof(float));
    m->w.bn0_scale = fp, fp += c->n_mels;
    m->w.bn0_shift = fp, fp += c->n_mels;
    if (load_bn(L, PA "bn0.", c->n_mels, c->bn_eps, m->w.bn0_scale, m->w.bn0_shift, m->w.bn0_raw)) return -1;
    for (int k = 1; k <= c->nblocks; k++)
        for (int j = 0; j < 2; j++) {
            cnn14_conv *cv = &m->w.conv[2 * (k - 1) + j];
            cv->scale = fp, fp += cv->cout;
            cv->shift = fp, fp += cv->cout;
            snprintf(name, sizeof name, PA "conv_block%d.bn%d.", k, j + 1);
            if (load_bn(L, name, cv->cout, c->bn_eps, cv->scale, cv->shift, cv->bn_raw)) return -1;
        }

    /* The configuration in __metadata__, when present, must agree. */
    if (meta_agrees(L, "clap.audio.n_mels", c->n_mels) || meta_agrees(L, "clap.embed_dim", c->embed)) return -1;
    const char *chs = st_meta(f, "clap.audio.channels");
    if (chs) {
        char have[64 * MAX_BLOCKS] = "";
        size_t n = 0;
        for (int k = 0; k < c->nblocks; k++)
            n += snprintf(have + n, sizeof have - n, "%s%d", k ? "," : "", c->channels[k]);
        if (strcmp(chs, have))
            return fail(L, "__metadata__ clap.audio.channels = '%.100s', but the tensors say '%s'", chs, have);
    }
    /* Winograd-transformed copies of the layers that use it */
    for (int i = 1; i < 2 * c->nblocks; i++) { /* not block 1's conv1: one input channel */
        cnn14_conv *cv = &m->w.conv[i];
        size_t bytes = (size_t)16 * cv->cout * cv->cin * sizeof(float);
        if (algo == CNN14_WINOGRAD || (algo == CNN14_AUTO && bytes <= WINO_MAX_BYTES))
            cv->wino = winograd_weights(cv->w, cv->cout, cv->cin);
    }
    /* Any other audio tensor means another architecture or a raw checkpoint. */
    for (int i = 0; i < st_count(f); i++) {
        const char *nm = st_name(f, i);
        if (!is_audio_name(nm)) continue;
        int seen = 0;
        for (int j = 0; j < L->nused && !seen; j++) seen = !strcmp(L->used[j], nm);
        if (!seen)
            return fail(L, "unexpected tensor '%.200s': not part of the CNN14 audio encoder%s", nm,
                        strstr(nm, "audio_feats_extractor") || strstr(nm, "num_batches_tracked")
                            ? " (an unconverted checkpoint? use scripts/convert.py clap)"
                            : "");
    }
    return 0;
}

cnn14_model *cnn14_load(const char *path, int algo, char *err, size_t errlen) {
    st_file *f = st_open(path, err, errlen);
    if (!f) return NULL;
    cnn14_model *m = xcalloc(1, sizeof *m);
    m->file = f;
    loader L = {f, err, errlen, NULL, 0, 0};
    int r = load(&L, m, algo);
    for (int i = 0; i < L.nused; i++) free(L.used[i]);
    free(L.used);
    if (r) {
        cnn14_free(m);
        return NULL;
    }
    return m;
}

void cnn14_free(cnn14_model *m) {
    if (!m) return;
    if (m->w.conv)
        for (int i = 0; i < 2 * m->cfg.nblocks; i++) free(m->w.conv[i].wino);
    free(m->cfg.channels);
    free(m->w.conv);
    free(m->folded);
    st_close(m->file);
    free(m);
}

/* ------------------------------------------------------------------ layers */

/* out[T, M] = in[T, M] * scale[M] + shift[M]   (bn0: per mel bin) */
static void bn0_forward(float *out, const float *in, const float *scale, const float *shift, int T, int M) {
    for (int t = 0; t < T; t++)
        for (int m = 0; m < M; m++) out[(size_t)t * M + m] = in[(size_t)t * M + m] * scale[m] + shift[m];
}

/* x[n] = max(x * s + b, 0). Blocks of a fixed 16 so that GCC's -O2
 * vectoriser (which wants a known trip count) makes SIMD code of it. */
static void affine_relu(float *x, size_t n, float s, float b) {
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int j = 0; j < 16; j++) {
            float v = x[i + j] * s + b;
            x[i + j] = v > 0 ? v : 0.0f;
        }
    for (; i < n; i++) {
        float v = x[i] * s + b;
        x[i] = v > 0 ? v : 0.0f;
    }
}

/* ------------------------------------------------------------------ Winograd F(2x2, 3x3)
 *
 * Lavin & Gray, "Fast algorithms for convolutional neural networks" (2016):
 * each 2x2 block of outputs is Y = A^T [U . (B^T d B)] A, summed over the
 * input channels, with d the 4x4 input patch around it and U = G g G^T the
 * transformed 3x3 kernel:
 *
 *   B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
 *         [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
 *         [0 -1  1  0]         [1/2 -1/2  1/2]
 *         [0  1  0 -1]         [ 0    0    1 ]
 *
 * The sum over channels of the 16 element-wise products is 16 sgemms,
 * M[x][Cout, tiles] = U[x][Cout, Cin] @ V[x][Cin, tiles]: 16 multiply-adds
 * per 4 outputs and input channel instead of 36, so 2.25x fewer flops than
 * im2col. The transforms add and subtract only (G's halves are exact), so
 * the rounding error stays that of a few extra additions (tests: within 2e-7
 * of PyTorch on the embeddings). A 2x2 output block is exactly one window of
 * the 2x2 average pool that ends each block, so conv2 + pool fuse per tile. */

/* U[16, Cout, Cin]: U[4a+b, co, ci] = (G g G^T)[a, b] for g = w[co, ci] (3x3),
 * in double, rounded to float once. G's rows, written out: g0,
 * (g0+g1+g2)/2, (g0-g1+g2)/2, g2. */
static float *winograd_weights(const float *w, int Cout, int Cin) {
    size_t plane = (size_t)Cout * Cin;
    float *U = xmalloc_aligned(16 * plane * sizeof(float));
    for (size_t k = 0; k < plane; k++) { /* k = co * Cin + ci */
        const float *g = w + k * 9;
        double t[4][3]; /* G g: combinations of the kernel's rows */
        for (int c = 0; c < 3; c++) {
            double r0 = g[c], r1 = g[3 + c], r2 = g[6 + c];
            t[0][c] = r0, t[1][c] = (r0 + r1 + r2) / 2, t[2][c] = (r0 - r1 + r2) / 2, t[3][c] = r2;
        }
        for (int a = 0; a < 4; a++) { /* (G g) G^T: the same along the columns */
            double c0 = t[a][0], c1 = t[a][1], c2 = t[a][2];
            float *u = U + (size_t)(4 * a) * plane + k;
            u[0] = (float)c0;
            u[plane] = (float)((c0 + c1 + c2) / 2);
            u[2 * plane] = (float)((c0 - c1 + c2) / 2);
            u[3 * plane] = (float)c2;
        }
    }
    return U;
}

/* t = B^T d: t0..t3 [n] from the patch rows d0..d3 [n], column by column.
 * Blocks of a fixed 8 and restrict pointers, since GCC's -O2 vectoriser
 * takes neither unknown trip counts nor run-time alias checks. */
static void winograd_in_rows(float *restrict t0, float *restrict t1, float *restrict t2, float *restrict t3,
                             const float *restrict d0, const float *restrict d1, const float *restrict d2,
                             const float *restrict d3, int n) {
    int x = 0;
    for (; x + 8 <= n; x += 8)
        for (int j = 0; j < 8; j++) {
            int u = x + j;
            t0[u] = d0[u] - d2[u], t1[u] = d1[u] + d2[u], t2[u] = d2[u] - d1[u], t3[u] = d1[u] - d3[u];
        }
    for (; x < n; x++)
        t0[x] = d0[x] - d2[x], t1[x] = d1[x] + d2[x], t2[x] = d2[x] - d1[x], t3[x] = d1[x] - d3[x];
}

/* v0..v3[tj] = (q B) over the patch columns 2tj..2tj+3 of a transformed
 * row held as its even (qe[k] = q[2k]) and odd (qo[k] = q[2k+1]) columns,
 * so that every access is unit-stride (vectorisable). */
static void winograd_in_cols(float *restrict v0, float *restrict v1, float *restrict v2, float *restrict v3,
                             const float *restrict qe, const float *restrict qo, int ntj) {
    int tj = 0;
    for (; tj + 8 <= ntj; tj += 8)
        for (int j = 0; j < 8; j++) {
            int u = tj + j;
            v0[u] = qe[u] - qe[u + 1], v1[u] = qo[u] + qe[u + 1], v2[u] = qe[u + 1] - qo[u], v3[u] = qo[u] - qo[u + 1];
        }
    for (; tj < ntj; tj++)
        v0[tj] = qe[tj] - qe[tj + 1], v1[tj] = qo[tj] + qe[tj + 1], v2[tj] = qe[tj + 1] - qo[tj],
        v3[tj] = qo[tj] - qo[tj + 1];
}

/* V[16, Cin, nt] = B^T d B for the tiles of tile rows ti0..ti0+nti-1 (tile
 * index (ti - ti0)*ntj + tj, ntj = ceil(F/2)), d = in[ci, 2ti-1..2ti+2,
 * 2tj-1..2tj+2], zero outside in[Cin, T, F]; input channels c0 <= ci < c1.
 * pad is scratch for 16 rows of ntj + 1. */
static void winograd_input(float *V, const float *in, int Cin, int c0, int c1, int T, int F, int ti0, int nti,
                           float *pad) {
    int ntj = (F + 1) / 2, W = ntj + 1; /* patch columns -1..2ntj, split even/odd */
    size_t nt = (size_t)nti * ntj, xs = (size_t)Cin * nt; /* xs: stride between the 16 elements */
    float *pe[4], *po[4], *te[4], *to[4]; /* patch rows and B^T d: even and odd columns */
    for (int r = 0; r < 4; r++) {
        pe[r] = pad + (size_t)r * W, po[r] = pad + (size_t)(4 + r) * W;
        te[r] = pad + (size_t)(8 + r) * W, to[r] = pad + (size_t)(12 + r) * W;
    }
    for (int ci = c0; ci < c1; ci++) {
        const float *plane = in + (size_t)ci * T * F;
        for (int ti = ti0; ti < ti0 + nti; ti++) {
            /* patch row r = in[2ti - 1 + r, -1..2ntj], zero outside; patch
             * column x + 1 = 2k (input column x = 2k - 1) goes to pe[r][k],
             * x + 1 = 2k + 1 (x = 2k) to po[r][k] */
            for (int r = 0; r < 4; r++) {
                int y = 2 * ti - 1 + r;
                memset(pe[r], 0, (size_t)W * sizeof(float));
                memset(po[r], 0, (size_t)W * sizeof(float));
                if (y < 0 || y >= T) continue;
                const float *row = plane + (size_t)y * F;
                for (int k = 1; 2 * k - 1 < F; k++) pe[r][k] = row[2 * k - 1];
                for (int k = 0; 2 * k < F; k++) po[r][k] = row[2 * k];
            }
            winograd_in_rows(te[0], te[1], te[2], te[3], pe[0], pe[1], pe[2], pe[3], W);
            winograd_in_rows(to[0], to[1], to[2], to[3], po[0], po[1], po[2], po[3], W);
            float *v = V + (size_t)ci * nt + (size_t)(ti - ti0) * ntj;
            for (int r = 0; r < 4; r++) {
                float *v0 = v + (size_t)(4 * r) * xs;
                winograd_in_cols(v0, v0 + xs, v0 + 2 * xs, v0 + 3 * xs, te[r], to[r], ntj);
            }
        }
    }
}

/* ------------------------------------------------------------------ convolution layers
 *
 * A layer is cut into tiles of output rows; a tile is im2col into cols
 * [K, rows*F], one sgemm out[Cout, rows*F] = W[Cout, K] @ cols, then the
 * epilogue (scale/shift, ReLU, and for a block's second conv the 2x2 pool);
 * or, for a Winograd layer, the input transform, 16 sgemms and the output
 * transform with the same epilogue.
 * Threads (the state's own; OpenBLAS runs single-threaded inside them):
 *   - by tiles, when there are plenty (the early layers): each thread takes
 *     whole tiles with its own buffers;
 *   - by output channels otherwise (the deep layers, few positions, big
 *     weights): tiles one after another, each thread doing the im2col (input
 *     transform) of a share of the input channels, then the sgemm and
 *     epilogue of a share of the output channels, so each streams only its
 *     share of the weights.
 * Tile sizes do not depend on the thread count. */

#define TILE_COLS 512          /* output positions per im2col tile: 256-1024 run best for the early layers */
#define WINO_TILES 256         /* 2x2 tiles per Winograd tile: the sgemms' N; small K runs best at 128-256 */
#define COLS_BYTES (16u << 20) /* cap on one im2col or Winograd input tile */

/* Output rows per tile for conv c at width F: even when pooling follows, and
 * always for Winograd (whole 2x2 tiles). */
static int tile_rows(int tile_cols, const cnn14_conv *c, int T, int F, int pool) {
    long rows;
    if (c->wino) {
        size_t ntj = (size_t)(F + 1) / 2, ch = (size_t)(c->cin > c->cout ? c->cin : c->cout);
        size_t tiles = WINO_TILES, cap = COLS_BYTES / sizeof(float) / 16 / ch;
        if (tiles > cap) tiles = cap;
        rows = 2 * (long)(tiles / ntj);
        if (rows < 2) rows = 2;
        if (rows > T + 1) rows = (T + 1) & ~1L; /* T odd, no pool: the last tile row is half outside */
        return (int)rows;
    }
    size_t K = (size_t)c->cin * 9, cols = tile_cols > 0 ? (size_t)tile_cols : TILE_COLS;
    size_t cap = COLS_BYTES / sizeof(float) / K;
    if (cols > cap) cols = cap;
    rows = (long)(cols / (size_t)F);
    if (pool) rows &= ~1L;
    if (rows < (pool ? 2 : 1)) rows = pool ? 2 : 1;
    if (rows > T) rows = T;
    return (int)rows;
}

/* Floats of scratch per thread for a tile of `rows` rows of conv c: cols (im2col
 * or Winograd V plus padded rows) and tile (conv2 output or Winograd M). */
static void tile_floats(const cnn14_conv *c, int rows, int F, int pool, size_t *cols, size_t *tile) {
    if (c->wino) {
        size_t nt = (size_t)(rows / 2) * ((F + 1) / 2);
        *cols = 16 * (size_t)c->cin * nt + 16 * ((size_t)F / 2 + 2);
        *tile = 16 * (size_t)c->cout * nt;
    } else {
        *cols = (size_t)c->cin * 9 * rows * F;
        *tile = pool ? (size_t)c->cout * rows * F : 0;
    }
}

typedef struct {
    const cnn14_conv *c;
    float *out;        /* [Cout, T, F], or [Cout, T/2, F/2] when pool */
    const float *in;   /* [Cin, T, F] */
    int T, F, pool;
    int rows, ntiles;  /* rows per tile, tiles */
    int nthreads, by_channels;
    float **cols;      /* [nthreads] im2col / Winograd V tiles (by_channels: [0], shared) */
    float **tile;      /* [nthreads] conv2 tiles before pooling / Winograd M (likewise) */
    atomic_int next;   /* by tiles: the next tile to take */
    pthread_barrier_t bar;
} conv_job;

/* Rows [r0, r0+nr) and channels [co0, co1) of the layer's output, from the
 * tile's im2col in cols: sgemm, then the epilogue. */
static void conv_tile(conv_job *j, int r0, int nr, int co0, int co1, const float *cols, float *tile) {
    const cnn14_conv *c = j->c;
    int K = c->cin * 9, n = nr * j->F, M = co1 - co0;
    if (M <= 0) return;
    if (!j->pool) { /* straight into the output, ldc = T*F */
        size_t P = (size_t)j->T * j->F;
        float *o = j->out + (size_t)co0 * P + (size_t)r0 * j->F;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, n, K, 1.0f, c->w + (size_t)co0 * K, K, cols, n,
                    0.0f, o, (int)P);
        for (int co = co0; co < co1; co++) affine_relu(o + (size_t)(co - co0) * P, (size_t)n, c->scale[co], c->shift[co]);
    } else { /* into the tile, then pooled into the output */
        int To = j->T / 2, Fo = j->F / 2;
        float *t = tile + (size_t)co0 * n;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, n, K, 1.0f, c->w + (size_t)co0 * K, K, cols, n,
                    0.0f, t, n);
        for (int co = co0; co < co1; co++) {
            float *tc = t + (size_t)(co - co0) * n;
            affine_relu(tc, (size_t)n, c->scale[co], c->shift[co]);
            avgpool2x2_forward(j->out + ((size_t)co * To + r0 / 2) * Fo, tc, 1, nr, j->F);
        }
    }
}

static inline float relu_affine(float x, float s, float b) {
    float v = x * s + b;
    return v > 0 ? v : 0.0f;
}

/* y = relu(A^T e A * s + b) for n consecutive tiles: e[x] of tile u is
 * m[x*xs + u]; y00..y11 [n] are the 2x2 outputs. Written out so that, inlined
 * with n = 8, GCC's -O2 vectoriser runs it across the tiles; the tail (other
 * n) computes the same expressions one by one, so the bits do not depend on
 * which path a tile takes. */
static inline void winograd_out(float *restrict y00, float *restrict y01, float *restrict y10,
                                float *restrict y11, const float *restrict m, size_t xs, float s, float b, int n) {
    for (int u = 0; u < n; u++) {
        const float *p = m + u;
        float e0 = p[0], e1 = p[xs], e2 = p[2 * xs], e3 = p[3 * xs];
        float e4 = p[4 * xs], e5 = p[5 * xs], e6 = p[6 * xs], e7 = p[7 * xs];
        float e8 = p[8 * xs], e9 = p[9 * xs], e10 = p[10 * xs], e11 = p[11 * xs];
        float e12 = p[12 * xs], e13 = p[13 * xs], e14 = p[14 * xs], e15 = p[15 * xs];
        /* A^T e: rows; then (.) A: columns */
        float a0 = e0 + e4 + e8, a1 = e1 + e5 + e9, a2 = e2 + e6 + e10, a3 = e3 + e7 + e11;
        float c0 = e4 - e8 - e12, c1 = e5 - e9 - e13, c2 = e6 - e10 - e14, c3 = e7 - e11 - e15;
        y00[u] = relu_affine(a0 + a1 + a2, s, b);
        y01[u] = relu_affine(a1 - a2 - a3, s, b);
        y10[u] = relu_affine(c0 + c1 + c2, s, b);
        y11[u] = relu_affine(c1 - c2 - c3, s, b);
    }
}

/* The Winograd twin of conv_tile: rows [r0, r0+nr) (r0 even), channels
 * [co0, co1), from the tile's input transform V in cols; Mb (tile) receives
 * M[16, Cout, nt]; then Y = A^T M A and the same epilogue. */
static void conv_tile_winograd(conv_job *j, int r0, int nr, int co0, int co1, const float *V, float *Mb) {
    const cnn14_conv *c = j->c;
    int Cin = c->cin, Cout = c->cout, M = co1 - co0, F = j->F, T = j->T;
    int ntj = (F + 1) / 2, nti = (nr + 1) / 2, ti0 = r0 / 2, Fo = F / 2;
    size_t nt = (size_t)nti * ntj, plane = (size_t)Cout * Cin;
    if (M <= 0) return;
    for (int x = 0; x < 16; x++)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, (int)nt, Cin, 1.0f,
                    c->wino + x * plane + (size_t)co0 * Cin, Cin, V + (size_t)x * Cin * nt, (int)nt, 0.0f,
                    Mb + ((size_t)x * Cout + co0) * nt, (int)nt);
    size_t xs = (size_t)Cout * nt; /* stride between the 16 elements */
    enum { B = 8 };
    for (int co = co0; co < co1; co++) {
        float s = c->scale[co], b = c->shift[co];
        for (int i = 0; i < nti; i++) {
            const float *m = Mb + (size_t)co * nt + (size_t)i * ntj;
            int y = 2 * (ti0 + i);
            for (int tj0 = 0; tj0 < ntj; tj0 += B) {
                float y00[B], y01[B], y10[B], y11[B];
                int n = ntj - tj0 < B ? ntj - tj0 : B;
                if (n == B) winograd_out(y00, y01, y10, y11, m + tj0, xs, s, b, B);
                else winograd_out(y00, y01, y10, y11, m + tj0, xs, s, b, n);
                if (j->pool) { /* each tile is one pooling window: as avgpool2x2_forward */
                    float *o = j->out + ((size_t)co * (T / 2) + y / 2) * Fo + tj0;
                    int np = Fo - tj0 < n ? Fo - tj0 : n; /* an odd last column is dropped */
                    for (int u = 0; u < np; u++) {
                        double sum = (double)y00[u] + y01[u];
                        sum += y10[u];
                        sum += y11[u];
                        o[u] = (float)(sum / 4);
                    }
                } else {
                    float *o = j->out + ((size_t)co * T + y) * F + 2 * tj0;
                    int nx = F - 2 * tj0 < 2 * n ? F - 2 * tj0 : 2 * n; /* an odd F: the last column is half out */
                    for (int u = 0; 2 * u < nx; u++) o[2 * u] = y00[u];
                    for (int u = 0; 2 * u + 1 < nx; u++) o[2 * u + 1] = y01[u];
                    if (y + 1 < T) { /* an odd T: the last tile row is half out */
                        for (int u = 0; 2 * u < nx; u++) o[F + 2 * u] = y10[u];
                        for (int u = 0; 2 * u + 1 < nx; u++) o[F + 2 * u + 1] = y11[u];
                    }
                }
            }
        }
    }
}

/* [lo, hi): part i of n of [0, len), boundaries on multiples of align */
static void share(int len, int n, int i, int align, int *lo, int *hi) {
    int units = (len + align - 1) / align;
    int a = (int)((long)units * i / n) * align, b = (int)((long)units * (i + 1) / n) * align;
    *lo = a < len ? a : len;
    *hi = b < len ? b : len;
}

/* The input side of tile i (im2col or input transform) into cols, input
 * channels [c0, c1), on thread tid. */
static void tile_input(conv_job *j, int tid, int i, int c0, int c1, float *cols) {
    const cnn14_conv *c = j->c;
    int last = j->pool ? j->T / 2 * 2 : j->T; /* floor pooling drops an odd last row: not computed */
    int r0 = i * j->rows, nr = last - r0 < j->rows ? last - r0 : j->rows;
    if (c->wino) {
        /* the padded rows go past the end of V in the thread's own buffer
         * (by channels, the threads share cols = cols[0] for V) */
        size_t nt = (size_t)(nr + 1) / 2 * ((j->F + 1) / 2);
        winograd_input(cols, j->in, c->cin, c0, c1, j->T, j->F, r0 / 2, (nr + 1) / 2,
                       j->cols[tid] + 16 * (size_t)c->cin * nt);
    } else {
        im2col3x3_rows(cols, j->in, c0, c1, j->T, j->F, r0, nr);
    }
}

/* The output channels are computed in fixed chunks, by size alone: a power of
 * two of them (2 and 4 threads share them evenly), each at least 64 channels
 * on a multiple of 16 (whole SIMD blocks). Whatever the thread count and mode,
 * every sgemm call is then the same, and so are the bits: OpenBLAS's kernels
 * sum an element in an order that depends on the shape of its call (its
 * Haswell kernels change the last bits when a product is cut differently). */
static int chunk_width(int cout) {
    int n = cout >= 512 ? 8 : cout >= 256 ? 4 : cout >= 128 ? 2 : 1;
    return ((cout + n - 1) / n + 15) / 16 * 16;
}
static int nchunks(int cout) {
    int w = chunk_width(cout);
    return (cout + w - 1) / w;
}

/* The output side of tile i: sgemm(s) and epilogue, chunks [k0, k1) of the
 * output channels. */
static void tile_output(conv_job *j, int i, int k0, int k1, const float *cols, float *tile) {
    int last = j->pool ? j->T / 2 * 2 : j->T;
    int r0 = i * j->rows, nr = last - r0 < j->rows ? last - r0 : j->rows;
    int w = chunk_width(j->c->cout);
    for (int k = k0; k < k1; k++) {
        int co0 = k * w, co1 = co0 + w < j->c->cout ? co0 + w : j->c->cout;
        if (j->c->wino) conv_tile_winograd(j, r0, nr, co0, co1, cols, tile);
        else conv_tile(j, r0, nr, co0, co1, cols, tile);
    }
}

static void conv_run(conv_job *j, int tid) {
    const cnn14_conv *c = j->c;
    if (!j->by_channels) {
        for (int i; (i = atomic_fetch_add(&j->next, 1)) < j->ntiles;) {
            tile_input(j, tid, i, 0, c->cin, j->cols[tid]);
            tile_output(j, i, 0, nchunks(c->cout), j->cols[tid], j->tile[tid]);
        }
        return;
    }
    int c0, c1, o0, o1;
    share(c->cin, j->nthreads, tid, 1, &c0, &c1);
    share(nchunks(c->cout), j->nthreads, tid, 1, &o0, &o1); /* whole chunks of output channels */
    for (int i = 0; i < j->ntiles; i++) {
        tile_input(j, tid, i, c0, c1, j->cols[0]);
        pthread_barrier_wait(&j->bar);
        tile_output(j, i, o0, o1, j->cols[0], j->tile[0]);
        pthread_barrier_wait(&j->bar); /* the next tile's input overwrites cols */
    }
}

/* a pool task: the layer may use fewer threads than the pool has */
static void conv_task(void *ctx, int tid, int nthreads) {
    (void)nthreads;
    conv_job *j = ctx;
    if (tid < j->nthreads) conv_run(j, tid);
}

/* Whether a layer of ntiles tiles runs by output channels on n threads:
 * when whole tiles would leave threads idle too long. */
static int by_channels(int ntiles, int n) { return n > 1 && ntiles < 4 * n; }

/* out = relu(conv3x3(in) * scale + shift), then 2x2 average pooling if pool. */
static void conv_layer(cnn14_state *s, const cnn14_conv *c, float *out, const float *in, int T, int F, int pool) {
    conv_job j;
    memset(&j, 0, sizeof j);
    j.c = c, j.out = out, j.in = in, j.T = T, j.F = F, j.pool = pool;
    j.rows = tile_rows(s->tile_cols, c, T, F, pool);
    int last = pool ? T / 2 * 2 : T;
    j.ntiles = (last + j.rows - 1) / j.rows;
    j.cols = s->cols, j.tile = s->tile;
    j.by_channels = by_channels(j.ntiles, s->threads);
    int n = s->threads;
    if (j.by_channels && n > nchunks(c->cout)) n = nchunks(c->cout);
    if (!j.by_channels && n > j.ntiles) n = j.ntiles;
    j.nthreads = n;
    atomic_init(&j.next, 0);
    if (n <= 1) {
        j.by_channels = 0;
        conv_run(&j, 0);
        return;
    }
    if (j.by_channels && pthread_barrier_init(&j.bar, NULL, (unsigned)n)) die("cannot make a thread barrier");
    pool_run(s->pool, conv_task, &j);
    if (j.by_channels) pthread_barrier_destroy(&j.bar);
}

/* ------------------------------------------------------------------ run state */

/* Buffer sizes for T frames, walking the layers as cnn14_forward does. */
typedef struct {
    size_t act0, act1; /* floats */
    size_t cols, tile; /* per thread */
} sizes;

static void size_max(size_t *a, size_t b) {
    if (b > *a) *a = b;
}

static sizes need_sizes(const cnn14_model *m, long T, int tile_cols) {
    sizes z = {0, 0, 0, 0};
    long t = T, F = m->cfg.n_mels;
    size_max(&z.act0, (size_t)t * F);
    for (int k = 0; k < m->cfg.nblocks; k++) {
        for (int j = 0; j < 2; j++) {
            const cnn14_conv *c = &m->w.conv[2 * k + j];
            size_t cols, tile;
            tile_floats(c, tile_rows(tile_cols, c, (int)t, (int)F, j), (int)F, j, &cols, &tile);
            size_max(&z.cols, cols);
            size_max(&z.tile, tile);
        }
        int C = m->cfg.channels[k];
        size_max(&z.act1, (size_t)C * t * F);
        t /= 2, F /= 2;
        size_max(&z.act0, (size_t)C * t * F);
    }
    return z;
}

int cnn14_state_init(cnn14_state *s, const cnn14_model *m, int threads) {
    memset(s, 0, sizeof *s);
    s->threads = nn_set_threads(threads); /* resolves 0 to every core */
    nn_set_threads(1);                    /* sgemm runs inside our threads */
    int C = m->cfg.channels[m->cfg.nblocks - 1];
    s->feat = xmalloc((size_t)C * sizeof(float));
    s->hid = xmalloc((size_t)m->cfg.embed * sizeof(float));
    s->cols = xcalloc((size_t)s->threads, sizeof(float *));
    s->tile = xcalloc((size_t)s->threads, sizeof(float *));
    s->pool = pool_new(s->threads);
    return s->threads;
}

void cnn14_state_free(cnn14_state *s) {
    for (int i = 0; i < 2; i++) free(s->act[i]);
    for (int t = 0; t < s->threads; t++) {
        free(s->cols[t]);
        free(s->tile[t]);
    }
    free(s->cols);
    free(s->tile);
    pool_free(s->pool);
    free(s->feat);
    free(s->hid);
    memset(s, 0, sizeof *s);
}

static void grow(float **p, size_t *cap, size_t n) {
    if (n <= *cap) return;
    free(*p);
    *p = xmalloc_aligned(n * sizeof(float));
    *cap = n;
}

const char *cnn14_input_error(const cnn14_model *m, const float *mel, long T, long M, char *buf, size_t len) {
    const cnn14_config *c = &m->cfg;
    if (M != c->n_mels) {
        snprintf(buf, len, "mel has %ld bands, the model takes %d (wav2mel --n-mels %d)", M, c->n_mels, c->n_mels);
        return buf;
    }
    if (T < c->min_frames) {
        snprintf(buf, len,
                 "too short: %ld frames; %d ConvBlocks (2x2 pooling each) need at least %d "
                 "(wav2mel --min-seconds pads)", T, c->nblocks, c->min_frames);
        return buf;
    }
    /* activations grow with T (about 20 KB a frame for CNN14): refuse what
     * cannot fit rather than die in malloc */
    double need = 0;
    {
        double t = (double)T, F = c->n_mels, a0 = t * F, a1 = 0;
        for (int k = 0; k < c->nblocks; k++) {
            a1 = fmax(a1, (double)c->channels[k] * t * F);
            t = floor(t / 2), F = floor(F / 2);
            a0 = fmax(a0, (double)c->channels[k] * t * F);
        }
        need = (a0 + a1) * sizeof(float);
    }
    double phys = (double)sysconf(_SC_PHYS_PAGES) * (double)sysconf(_SC_PAGESIZE);
    if (T > INT32_MAX / c->n_mels || (phys > 0 && need > phys / 2)) {
        snprintf(buf, len, "too long: %ld frames need %.1f GB of activations (use --max-seconds)", T, need / 1e9);
        return buf;
    }
    size_t n = (size_t)T * (size_t)M;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(mel[i])) {
            snprintf(buf, len, "mel value at frame %zu, band %zu is %s", i / (size_t)M, i % (size_t)M,
                     isnan(mel[i]) ? "NaN" : "infinite");
            return buf;
        }
    return NULL;
}

/* emb[E] = normalize(W2 relu(W0 feat + b0) + b2)   (ase_model.py audio_proj, F.normalize) */
static void head_forward(float *emb, float *hid, const float *feat, const cnn14_model *m, int naive) {
    int C = m->cfg.channels[m->cfg.nblocks - 1], E = m->cfg.embed;
    if (naive) {
        linear_forward_naive(hid, feat, m->w.proj0_w, m->w.proj0_b, 1, C, E);
        relu_inplace(hid, (size_t)E);
        linear_forward_naive(emb, hid, m->w.proj2_w, m->w.proj2_b, 1, E, E);
    } else {
        linear_forward(hid, feat, m->w.proj0_w, m->w.proj0_b, 1, C, E);
        relu_inplace(hid, (size_t)E);
        linear_forward(emb, hid, m->w.proj2_w, m->w.proj2_b, 1, E, E);
    }
    l2_normalize_rows(emb, 1, E);
}

void cnn14_forward(cnn14_state *s, const cnn14_model *m, const float *mel, int T, float *emb) {
    const cnn14_config *cfg = &m->cfg;
    sizes z = need_sizes(m, T, s->tile_cols);
    grow(&s->act[0], &s->act_cap[0], z.act0);
    grow(&s->act[1], &s->act_cap[1], z.act1);
    if (z.cols > s->cols_cap || z.tile > s->tile_cap) {
        size_max(&s->cols_cap, z.cols);
        size_max(&s->tile_cap, z.tile);
        for (int t = 0; t < s->threads; t++) {
            free(s->cols[t]);
            free(s->tile[t]);
            s->cols[t] = xmalloc_aligned(s->cols_cap * sizeof(float));
            s->tile[t] = xmalloc_aligned(s->tile_cap * sizeof(float));
        }
    }

    int t = T, F = cfg->n_mels;
    bn0_forward(s->act[0], mel, m->w.bn0_scale, m->w.bn0_shift, T, F);
    for (int k = 0; k < cfg->nblocks; k++) {
        conv_layer(s, &m->w.conv[2 * k], s->act[1], s->act[0], t, F, 0);     /* [Cout, t, F] */
        conv_layer(s, &m->w.conv[2 * k + 1], s->act[0], s->act[1], t, F, 1); /* [Cout, t/2, F/2] */
        t /= 2, F /= 2;
    }
    timefreq_pool_forward(s->feat, NULL, s->act[0], cfg->channels[cfg->nblocks - 1], t, F);
    head_forward(emb, s->hid, s->feat, m, 0);
}

/* ------------------------------------------------------------------ naive reference */

void cnn14_forward_naive(const cnn14_model *m, const float *mel, int T, float *emb) {
    const cnn14_config *cfg = &m->cfg;
    sizes z = need_sizes(m, T, 0);
    float *x = xmalloc(z.act1 * sizeof(float)), *y = xmalloc(z.act1 * sizeof(float));
    int t = T, F = cfg->n_mels;
    /* bn0 over the mel bins: channel = band; x[T, M] is [1, T, M] */
    for (int i = 0; i < t; i++)
        for (int f = 0; f < F; f++) {
            const float *const *r = m->w.bn0_raw;
            double v = ((double)mel[(size_t)i * F + f] - r[2][f]) / sqrt((double)r[3][f] + cfg->bn_eps) * r[0][f] +
                       r[1][f];
            x[(size_t)i * F + f] = (float)v;
        }
    for (int k = 0; k < cfg->nblocks; k++) {
        const cnn14_conv *c1 = &m->w.conv[2 * k], *c2 = c1 + 1;
        size_t P = (size_t)t * F;
        conv3x3_forward_naive(y, x, c1->w, 1, c1->cin, c1->cout, t, F);
        batchnorm_forward_eval_naive(y, y, c1->bn_raw[0], c1->bn_raw[1], c1->bn_raw[2], c1->bn_raw[3], 1, c1->cout, (int)P,
                                     cfg->bn_eps);
        relu_forward(y, y, (size_t)c1->cout * P);
        conv3x3_forward_naive(x, y, c2->w, 1, c2->cin, c2->cout, t, F);
        batchnorm_forward_eval_naive(x, x, c2->bn_raw[0], c2->bn_raw[1], c2->bn_raw[2], c2->bn_raw[3], 1, c2->cout, (int)P,
                                     cfg->bn_eps);
        relu_forward(x, x, (size_t)c2->cout * P);
        avgpool2x2_forward(y, x, c2->cout, t, F);
        t /= 2, F /= 2;
        memcpy(x, y, (size_t)c2->cout * t * F * sizeof(float));
    }
    int C = cfg->channels[cfg->nblocks - 1];
    float *feat = xmalloc((size_t)C * sizeof(float)), *hid = xmalloc((size_t)cfg->embed * sizeof(float));
    timefreq_pool_forward(feat, NULL, x, C, t, F);
    head_forward(emb, hid, feat, m, 1);
    free(feat);
    free(hid);
    free(x);
    free(y);
}
