/* train.c - training loop, AdamW, schedule, RNG and checkpoints of the
 * prefix decoder (see train.h; the published recipe is wsac.md C). */
#define _POSIX_C_SOURCE 200809L
#include "train.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn.h"
#include "parfor.h"
#include "util.h"

/* ================================================================ RNG */

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void xrng_seed(xrng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t xrng_next(xrng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double xrng_uniform(xrng *r) { return (double)(xrng_next(r) >> 11) * 0x1.0p-53; }

void xrng_normal(xrng *r, float *out, size_t n) {
    for (size_t i = 0; i < n; i += 2) {
        double u1 = 1.0 - xrng_uniform(r), u2 = xrng_uniform(r); /* u1 in (0, 1] */
        double rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        out[i] = (float)(rad * cos(th));
        if (i + 1 < n) out[i + 1] = (float)(rad * sin(th));
    }
}

void xrng_permutation(xrng *r, int *perm, int n) {
    for (int i = 0; i < n; i++) perm[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(xrng_next(r) % (uint64_t)(i + 1)); /* bias < n / 2^64 */
        int t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void xrng_format(const xrng *r, char out[65]) {
    for (int i = 0; i < 4; i++) snprintf(out + 16 * i, 17, "%016llx", (unsigned long long)r->s[i]);
}

int xrng_parse(xrng *r, const char *s) {
    if (!s || strlen(s) != 64) return -1;
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, s + 16 * i, 16);
        part[16] = 0;
        char *end;
        errno = 0;
        unsigned long long v = strtoull(part, &end, 16);
        if (errno || *end) return -1;
        r->s[i] = v;
    }
    return r->s[0] | r->s[1] | r->s[2] | r->s[3] ? 0 : -1;
}

/* independent streams from one seed: noise, initialisation, shuffles */
static uint64_t stream_seed(uint64_t seed, uint64_t stream) {
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL);
    return splitmix64(&x);
}
enum { STREAM_NOISE = 1, STREAM_INIT = 2, STREAM_DROPOUT = 3, STREAM_SHUFFLE = 1000 };

/* ================================================================ schedule, AdamW */

double lr_lambda(long step, double warmup, long total) {
    if ((double)step < warmup) return (double)step / (warmup > 1 ? warmup : 1.0);
    double den = (double)total - warmup;
    double r = ((double)total - (double)step) / (den > 1 ? den : 1.0);
    return r > 0 ? r : 0.0;
}

typedef struct {
    float *p, *m, *v;
    float *g;
    size_t n;
    float b1, b2, omb1, omb2, eps, step, decay;
    int decay_on;
    int simd; /* 1: AVX, 0: scalar */
} adam_ctx;

#define ADAM_BLOCK 4096

/* the element-wise arithmetic of transformers.AdamW.step, in its order:
 * exp_avg.mul_(b1).add_(g, 1-b1); exp_avg_sq.mul_(b2).addcmul_(g, g, 1-b2);
 * denom = sqrt(exp_avg_sq) + eps; p.addcdiv_(exp_avg, denom, -step_size);
 * p.add_(p, -lr*wd) */
static void adam_scalar(const adam_ctx *x, size_t a, size_t b) {
    for (size_t i = a; i < b; i++) {
        float gi = x->g[i];
        x->g[i] = 0.0f; /* optimizer.zero_grad(), in the same pass */
        float mi = x->m[i] * x->b1 + x->omb1 * gi;
        float vi = x->v[i] * x->b2 + x->omb2 * gi * gi;
        x->m[i] = mi;
        x->v[i] = vi;
        float denom = sqrtf(vi) + x->eps;
        float pi = x->p[i] + (-x->step) * (mi / denom);
        if (x->decay_on) pi = pi + x->decay * pi;
        x->p[i] = pi;
    }
}

#if defined(__x86_64__)
/* The same arithmetic 8 lanes at a time: separate multiplies and adds (no
 * FMA: -std=c11 keeps contraction off, and these are the scalar loop's
 * roundings), IEEE sqrt and division, so the bits equal adam_scalar's. GCC
 * does not vectorize the scalar loop (sqrtf may set errno). The step is
 * memory-bound: 4x faster than scalar on one core, and AVX-512 was 10%
 * slower than this on the EPYC the benchmarks use. */
__attribute__((target("avx"))) static void adam_avx(const adam_ctx *x, size_t a, size_t b) {
    const __m256 b1 = _mm256_set1_ps(x->b1), b2 = _mm256_set1_ps(x->b2), omb1 = _mm256_set1_ps(x->omb1),
                 omb2 = _mm256_set1_ps(x->omb2), eps = _mm256_set1_ps(x->eps), nstep = _mm256_set1_ps(-x->step),
                 decay = _mm256_set1_ps(x->decay), zero = _mm256_setzero_ps();
    size_t i = a;
    for (; i + 8 <= b; i += 8) {
        __m256 g = _mm256_loadu_ps(x->g + i);
        _mm256_storeu_ps(x->g + i, zero);
        __m256 m = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x->m + i), b1), _mm256_mul_ps(omb1, g));
        __m256 v = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x->v + i), b2), _mm256_mul_ps(_mm256_mul_ps(omb2, g), g));
        _mm256_storeu_ps(x->m + i, m);
        _mm256_storeu_ps(x->v + i, v);
        __m256 den = _mm256_add_ps(_mm256_sqrt_ps(v), eps);
        __m256 p = _mm256_add_ps(_mm256_loadu_ps(x->p + i), _mm256_mul_ps(nstep, _mm256_div_ps(m, den)));
        if (x->decay_on) p = _mm256_add_ps(p, _mm256_mul_ps(decay, p));
        _mm256_storeu_ps(x->p + i, p);
    }
    adam_scalar(x, i, b);
}
#endif

static void adam_range(void *q, int lo, int hi) {
    const adam_ctx *x = q;
    size_t a = (size_t)lo * ADAM_BLOCK, b = (size_t)hi * ADAM_BLOCK;
    if (b > x->n) b = x->n;
#if defined(__x86_64__)
    if (x->simd) return adam_avx(x, a, b);
#endif
    adam_scalar(x, a, b);
}

static adam_ctx adam_setup(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double wd,
                           double eps) {
    const double b1 = 0.9, b2 = 0.999;
    double bc1 = 1.0 - pow(b1, (double)t), bc2 = 1.0 - pow(b2, (double)t);
    adam_ctx x = {p, m, v, g, n, (float)b1, (float)b2, (float)(1.0 - b1), (float)(1.0 - b2), (float)eps,
                  (float)(lr * sqrt(bc2) / bc1), (float)(-lr * wd), wd > 0.0, 0};
    return x;
}

void adamw_step(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double wd, double eps) {
    adam_ctx x = adam_setup(p, g, m, v, n, t, lr, wd, eps);
#if defined(__x86_64__)
    x.simd = __builtin_cpu_supports("avx") && !getenv("WSAC_ADAM_SCALAR"); /* tests take both paths */
#endif
    parfor((int)((n + ADAM_BLOCK - 1) / ADAM_BLOCK), adam_range, &x);
}

void adamw_step_naive(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double wd, double eps) {
    adam_ctx x = adam_setup(p, g, m, v, n, t, lr, wd, eps);
    adam_range(&x, 0, (int)((n + ADAM_BLOCK - 1) / ADAM_BLOCK));
}

void adamw_torch_step(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double b1, double b2,
                      double eps, double wd) {
    double bc1 = 1.0 - pow(b1, (double)t), bc2s = sqrt(1.0 - pow(b2, (double)t));
    float decay = (float)(1.0 - lr * wd), fb1 = (float)b1, fb2 = (float)b2, a1 = (float)(1.0 - b1),
          a2 = (float)(1.0 - b2), step = (float)(lr / bc1), c2 = (float)bc2s, fe = (float)eps;
    for (size_t i = 0; i < n; i++) {
        float gi = g[i];
        p[i] *= decay;
        m[i] = m[i] * fb1 + gi * a1;
        v[i] = v[i] * fb2 + gi * gi * a2;
        p[i] -= step * (m[i] / (sqrtf(v[i]) / c2 + fe));
        g[i] = 0;
    }
}

double salsa_lr(double epoch, double lr, double min_lr, double warmup, double ramp0, double ramp1) {
    if (epoch < warmup) return lr * epoch / warmup;
    if (epoch < ramp0) return lr;
    if (epoch < ramp1) return min_lr + (lr - min_lr) * 0.5 * (1.0 + cos(M_PI * (epoch - ramp0) / (ramp1 - ramp0)));
    return min_lr;
}

/* ================================================================ checkpoint files */

static int write_all(FILE *f, const void *p, size_t n) { return fwrite(p, 1, n, f) == n ? 0 : -1; }

int ckpt_write(const char *path, const ckpt_tensor *t, int n, const char *const *meta, int nmeta, char *err,
               size_t errlen) {
    json_t *h = json_object();
    if (nmeta > 0) {
        json_t *m = json_object();
        for (int i = 0; i < nmeta; i++) json_object_set_new(m, meta[2 * i], json_string(meta[2 * i + 1]));
        json_object_set_new(h, "__metadata__", m);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        size_t numel = 1;
        json_t *shape = json_array();
        for (int d = 0; d < t[i].ndim; d++) {
            numel *= (size_t)t[i].shape[d];
            json_array_append_new(shape, json_integer(t[i].shape[d]));
        }
        size_t nb = numel * st_dtype_size(t[i].dtype);
        json_t *e = json_object();
        json_object_set_new(e, "dtype", json_string(st_dtype_name(t[i].dtype)));
        json_object_set_new(e, "shape", shape);
        json_t *o = json_array();
        json_array_append_new(o, json_integer((json_int_t)off));
        json_array_append_new(o, json_integer((json_int_t)(off + nb)));
        json_object_set_new(e, "data_offsets", o);
        json_object_set_new(h, t[i].name, e);
        off += nb;
    }
    char *js = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    if (!js) {
        snprintf(err, errlen, "%s: cannot encode the header", path);
        return -1;
    }
    size_t hl = strlen(js), pad = (8 - hl % 8) % 8;
    char *tmp;
    int rc = -1;
    FILE *f = atomic_open(path, &tmp);
    if (!f) {
        snprintf(err, errlen, "%s: cannot write beside it: %s", path, strerror(errno));
        goto out;
    }
    unsigned char len8[8];
    uint64_t L = hl + pad;
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(L >> (8 * i));
    int bad = write_all(f, len8, 8) || write_all(f, js, hl) || write_all(f, "        ", pad);
    for (int i = 0; i < n && !bad; i++) {
        size_t numel = 1;
        for (int d = 0; d < t[i].ndim; d++) numel *= (size_t)t[i].shape[d];
        bad = write_all(f, t[i].data, numel * st_dtype_size(t[i].dtype));
    }
    if (bad) {
        snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
        atomic_abort(f, tmp);
        goto out;
    }
    if (atomic_commit(f, tmp, path) != 0) {
        snprintf(err, errlen, "writing %s: %s", path, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    free(js);
    return rc;
}

/* ================================================================ model */

static void model_alloc(train_model *tm, const gpt_config *c) {
    tm->c = *c;
    tm->np = gpt_num_params(c);
    tm->p = xmalloc_aligned(tm->np * sizeof(float));
    tm->grad = xmalloc_aligned(tm->np * sizeof(float));
    tm->m = xmalloc_aligned(tm->np * sizeof(float));
    tm->v = xmalloc_aligned(tm->np * sizeof(float));
    memset(tm->grad, 0, tm->np * sizeof(float));
    memset(tm->m, 0, tm->np * sizeof(float));
    memset(tm->v, 0, tm->np * sizeof(float));
    gpt_weights_init(&tm->w, c->L);
    gpt_weights_init(&tm->g, c->L);
    gpt_weights_carve(c, &tm->w, tm->p);
    gpt_weights_carve(c, &tm->g, tm->grad);
}

void train_model_init(train_model *tm, const gpt_config *c, uint64_t seed) {
    model_alloc(tm, c);
    xrng r;
    xrng_seed(&r, stream_seed(seed, STREAM_INIT));
    int n = gpt_tensor_list(c, &tm->w, NULL);
    gpt_tensor *t = xmalloc((size_t)n * sizeof *t);
    gpt_tensor_list(c, &tm->w, t);
    double bound = 1.0 / sqrt((double)c->E);
    for (int i = 0; i < n; i++) {
        float *p = *t[i].ptr;
        const char *nm = t[i].name;
        size_t k = t[i].numel;
        if (!strncmp(nm, "clap_project.", 13)) {
            /* nn.Linear's reset_parameters: U(-1/sqrt(in), 1/sqrt(in)) for both */
            for (size_t j = 0; j < k; j++) p[j] = (float)((2.0 * xrng_uniform(&r) - 1.0) * bound);
        } else if (strstr(nm, "ln_")) {
            for (size_t j = 0; j < k; j++) p[j] = strstr(nm, ".weight") ? 1.0f : 0.0f;
        } else if (t[i].ndim == 1) {
            memset(p, 0, k * sizeof(float));
        } else {
            /* GPT2PreTrainedModel._init_weights: normal(0, 0.02); c_proj
             * weights 0.02 / sqrt(2 n_layer) */
            double std = strstr(nm, "c_proj.weight") ? 0.02 / sqrt(2.0 * c->L) : 0.02;
            xrng_normal(&r, p, k);
            for (size_t j = 0; j < k; j++) p[j] = (float)(p[j] * std);
        }
    }
    free(t);
}

int train_model_load(train_model *tm, st_file *f, int moments, char *err, size_t errlen) {
    gpt_config c;
    if (gpt_read_config(f, &c, err, errlen)) return -1;
    model_alloc(tm, &c);
    gpt_weights tmp;
    gpt_weights_init(&tmp, c.L);
    int rc = gpt_load_weights(f, &c, &tmp, tm->p, err, errlen);
    gpt_weights_free(&tmp);
    if (rc || !moments) return rc;
    int n = gpt_tensor_list(&c, &tm->w, NULL);
    gpt_tensor *t = xmalloc((size_t)n * sizeof *t);
    gpt_tensor_list(&c, &tm->w, t);
    size_t off = 0;
    for (int i = 0; i < n && !rc; i++) {
        char nm[128];
        for (int k = 0; k < 2 && !rc; k++) {
            snprintf(nm, sizeof nm, "train.%s.%s", k ? "exp_avg_sq" : "exp_avg", t[i].name);
            const float *p = st_get_f32(f, nm, t[i].ndim, t[i].shape, err, errlen);
            if (!p) rc = -1;
            else memcpy((k ? tm->v : tm->m) + off, p, t[i].numel * sizeof(float));
        }
        off += t[i].numel;
    }
    free(t);
    return rc;
}

void train_model_free(train_model *tm) {
    free(tm->p), free(tm->grad), free(tm->m), free(tm->v);
    gpt_weights_free(&tm->w);
    gpt_weights_free(&tm->g);
}

/* ================================================================ checkpoint content */

static const char *shuffle_name(int s) { return s == SHUFFLE_ONCE ? "once" : s == SHUFFLE_NONE ? "none" : "epoch"; }

static int meta_double(st_file *f, const char *key, double *out, char *err, size_t errlen) {
    const char *s = st_meta(f, key);
    char *end;
    if (!s) {
        snprintf(err, errlen, "%s: metadata %s is missing: not a prefixdec train checkpoint", st_path(f), key);
        return -1;
    }
    *out = strtod(s, &end);
    if (end == s || *end || !isfinite(*out)) {
        snprintf(err, errlen, "%s: metadata %s is not a number", st_path(f), key);
        return -1;
    }
    return 0;
}

static int meta_long(st_file *f, const char *key, long *out, char *err, size_t errlen) {
    int r = st_meta_int(f, key, out);
    if (r) {
        snprintf(err, errlen, "%s: metadata %s is %s", st_path(f), key,
                 r == -1 ? "missing: not a prefixdec train checkpoint" : "not an integer");
        return -1;
    }
    return 0;
}

int train_read_state(st_file *f, train_opts *o, train_pos *pos, uint64_t *data_hash, int *data_n, char *err,
                     size_t errlen) {
    long epochs, bs, S, pad, seedhi, seedlo, data_nl;
    if (meta_long(f, "train.epochs", &epochs, err, errlen) || meta_long(f, "train.bs", &bs, err, errlen) ||
        meta_long(f, "train.max_seq_len", &S, err, errlen) || meta_long(f, "train.pad", &pad, err, errlen) ||
        meta_long(f, "train.epoch", &pos->epoch, err, errlen) || meta_long(f, "train.batch", &pos->batch, err, errlen) ||
        meta_long(f, "train.step", &pos->step, err, errlen) || meta_long(f, "train.seed_hi", &seedhi, err, errlen) ||
        meta_long(f, "train.seed_lo", &seedlo, err, errlen) || meta_long(f, "train.data_n", &data_nl, err, errlen) ||
        meta_double(f, "train.lr", &o->lr, err, errlen) || meta_double(f, "train.warmup", &o->warmup, err, errlen) ||
        meta_double(f, "train.wd", &o->wd, err, errlen) || meta_double(f, "train.noise", &o->noise, err, errlen) ||
        meta_double(f, "train.dropout", &o->dropout, err, errlen))
        return -1;
    o->epochs = (int)epochs, o->bs = (int)bs, o->S = (int)S, o->pad = (int)pad;
    o->seed = ((uint64_t)seedhi << 32) | (uint64_t)seedlo;
    *data_n = (int)data_nl;
    const char *s = st_meta(f, "train.shuffle");
    o->shuffle = !s ? -1 : !strcmp(s, "epoch") ? SHUFFLE_EPOCH : !strcmp(s, "once") ? SHUFFLE_ONCE
                                                 : !strcmp(s, "none") ? SHUFFLE_NONE : -1;
    if (o->shuffle < 0) {
        snprintf(err, errlen, "%s: metadata train.shuffle is missing or unknown", st_path(f));
        return -1;
    }
    if (xrng_parse(&pos->rng, st_meta(f, "train.rng"))) {
        snprintf(err, errlen, "%s: metadata train.rng is missing or malformed", st_path(f));
        return -1;
    }
    s = st_meta(f, "train.data_hash");
    char *end;
    if (!s || strlen(s) != 16 || (*data_hash = strtoull(s, &end, 16), *end)) {
        snprintf(err, errlen, "%s: metadata train.data_hash is missing or malformed", st_path(f));
        return -1;
    }
    if (meta_double(f, "train.epoch_loss_sum", &pos->last_loss, err, errlen)) return -1;
    pos->last_val = NAN;
    if (epochs < 1 || bs < 1 || S < 1 || pos->epoch < 0 || pos->batch < 0 || pos->step < 0) {
        snprintf(err, errlen, "%s: train.* metadata out of range", st_path(f));
        return -1;
    }
    return 0;
}


/* The next free slot of v, formatted: a function, so that several calls in
 * one initializer list (indeterminately sequenced) each fill their own. */
static const char *fmt_slot(char (*v)[80], int *nv, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static const char *fmt_slot(char (*v)[80], int *nv, const char *fmt, ...) {
    char *s = v[(*nv)++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s, 80, fmt, ap);
    va_end(ap);
    return s;
}

static int save_checkpoint(train_model *tm, const train_opts *o, const train_pos *pos, const train_data *d,
                           double epoch_loss_sum, double val_loss, char *err, size_t errlen) {
    const gpt_config *c = &tm->c;
    int n = gpt_tensor_list(c, &tm->w, NULL);
    gpt_tensor *t = xmalloc((size_t)n * sizeof *t);
    gpt_tensor_list(c, &tm->w, t);
    ckpt_tensor *ct = xcalloc((size_t)(3 * n + 2), sizeof *ct);
    char (*names)[128] = xmalloc((size_t)2 * n * sizeof *names);
    int k = 0;
    size_t off = 0;
    for (int i = 0; i < n; i++) ct[k++] = (ckpt_tensor){t[i].name, ST_F32, t[i].ndim, {t[i].shape[0], t[i].shape[1]}, *t[i].ptr};
    for (int i = 0; i < n; i++) {
        snprintf(names[2 * i], 128, "train.exp_avg.%s", t[i].name);
        snprintf(names[2 * i + 1], 128, "train.exp_avg_sq.%s", t[i].name);
        ct[k++] = (ckpt_tensor){names[2 * i], ST_F32, t[i].ndim, {t[i].shape[0], t[i].shape[1]}, tm->m + off};
        ct[k++] = (ckpt_tensor){names[2 * i + 1], ST_F32, t[i].ndim, {t[i].shape[0], t[i].shape[1]}, tm->v + off};
        off += t[i].numel;
    }
    if (o->gap) ct[k++] = (ckpt_tensor){"train.gap", ST_F32, 1, {c->E, 0}, o->gap};
    ct[k++] = (ckpt_tensor){"tokenizer.vocab", ST_U8, 1, {(int64_t)o->vocab_len, 0}, o->vocab};
    char v[40][80];
    int nv = 0;
#define MV(...) fmt_slot(v, &nv, __VA_ARGS__)
    char rng[65];
    xrng_format(&pos->rng, rng);
    const char *meta[] = {
        "wsac.format", "1",
        "wsac.model", "decoder",
        "wsac.source", o->source ? o->source : "prefixdec train",
        "decoder.layers", MV("%d", c->L),
        "decoder.heads", MV("%d", c->NH),
        "decoder.ln_eps", MV("%.9g", (double)c->eps),
        "decoder.activation", "gelu_new",
        "decoder.vocab_size", MV("%d", c->V),
        "train.epochs", MV("%d", o->epochs),
        "train.bs", MV("%d", o->bs),
        "train.max_seq_len", MV("%d", o->S),
        "train.pad", MV("%d", o->pad),
        "train.shuffle", shuffle_name(o->shuffle),
        "train.lr", MV("%.17g", o->lr),
        "train.warmup", MV("%.17g", o->warmup),
        "train.wd", MV("%.17g", o->wd),
        "train.noise", MV("%.17g", o->noise),
        "train.dropout", MV("%.9g", o->dropout),
        "train.seed_hi", MV("%lu", (unsigned long)(o->seed >> 32)),
        "train.seed_lo", MV("%lu", (unsigned long)(o->seed & 0xffffffffu)),
        "train.epoch", MV("%ld", pos->epoch),
        "train.batch", MV("%ld", pos->batch),
        "train.step", MV("%ld", pos->step),
        "train.rng", rng,
        "train.data_n", MV("%d", d->n),
        "train.data_hash", MV("%016llx", (unsigned long long)d->hash),
        "train.epoch_loss_sum", MV("%.17g", epoch_loss_sum),
        "train.val_loss", MV("%.9g", val_loss),
    };
#undef MV
    int rc = ckpt_write(o->out, ct, k, meta, (int)(sizeof meta / sizeof meta[0]) / 2, err, errlen);
    free(t);
    free(ct);
    free(names);
    return rc;
}

/* ================================================================ loop */

void train_pos_init(train_pos *pos, uint64_t seed) {
    memset(pos, 0, sizeof *pos);
    xrng_seed(&pos->rng, stream_seed(seed, STREAM_NOISE));
    pos->last_loss = pos->last_val = NAN;
}

void train_noise(float *x, int B, int E, double variance, const float *gap, xrng *r, float *scratch) {
    if (variance == 0.0 && !gap) return; /* train.py returns x untouched */
    l2_normalize_rows(x, B, E);
    if (variance > 0.0) {
        float sd = (float)sqrt(variance);
        xrng_normal(r, scratch, (size_t)B * E);
        for (size_t i = 0; i < (size_t)B * E; i++) x[i] = x[i] + scratch[i] * sd;
    }
    if (gap)
        for (int b = 0; b < B; b++)
            for (int e = 0; e < E; e++) x[(size_t)b * E + e] += gap[e];
    l2_normalize_rows(x, B, E);
}

static void gather(const train_data *d, const int *idx, int B, float *emb, int32_t *tok) {
    for (int i = 0; i < B; i++) {
        memcpy(emb + (size_t)i * d->E, d->emb + (size_t)idx[i] * d->E, (size_t)d->E * sizeof(float));
        memcpy(tok + (size_t)i * d->S, d->tok + (size_t)idx[i] * d->S, (size_t)d->S * sizeof(int32_t));
    }
}

double train_eval(train_model *tm, gpt_train_state *s, const train_data *d, int bs, int pad) {
    float *emb = xmalloc((size_t)bs * d->E * sizeof(float));
    int32_t *tok = xmalloc((size_t)bs * d->S * sizeof(int32_t));
    int *idx = xmalloc((size_t)bs * sizeof(int));
    double sum = 0;
    long M = 0;
    for (int i0 = 0; i0 < d->n; i0 += bs) {
        int B = d->n - i0 < bs ? d->n - i0 : bs;
        for (int i = 0; i < B; i++) idx[i] = i0 + i;
        gather(d, idx, B, emb, tok);
        gpt_layout(s, tok, B, pad, NULL);
        s->dropout = 0; /* eval mode */
        gpt_forward(s, &tm->c, &tm->w, emb);
        double l = gpt_loss_backward(s, &tm->c, &tm->w, NULL, emb);
        sum += l * s->M;
        M += s->M;
    }
    free(emb), free(tok), free(idx);
    return M ? sum / (double)M : NAN;
}

static void make_order(int *perm, int n, const train_opts *o, long epoch) {
    if (o->shuffle == SHUFFLE_NONE) {
        for (int i = 0; i < n; i++) perm[i] = i;
        return;
    }
    xrng r;
    xrng_seed(&r, stream_seed(o->seed, STREAM_SHUFFLE + (uint64_t)(o->shuffle == SHUFFLE_ONCE ? 0 : epoch)));
    xrng_permutation(&r, perm, n);
}

static void fmt_dur(char *buf, size_t n, double s) {
    if (s < 60) snprintf(buf, n, "%.0fs", s);
    else if (s < 3600) snprintf(buf, n, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, n, "%dh%02dm", (int)s / 3600, (int)s % 3600 / 60);
}

int train_run(train_model *tm, const train_data *d, const train_data *val, const train_opts *o, train_pos *pos,
              volatile int *stop) {
    const gpt_config *c = &tm->c;
    int bs = o->bs, E = d->E, spe = d->n / bs; /* DataLoader(drop_last=True) */
    long total = (long)o->epochs * spe;
    gpt_train_state *s = gpt_train_state_new(c, bs, o->S);
    float *emb = xmalloc_aligned((size_t)bs * E * sizeof(float)), *scratch = xmalloc((size_t)bs * E * sizeof(float));
    int32_t *tok = xmalloc((size_t)bs * o->S * sizeof(int32_t));
    int *perm = xmalloc((size_t)d->n * sizeof(int));
    char err[512], what[160], dur[32];
    FILE *logf = NULL;
    if (o->log) {
        int fresh = pos->step == 0;
        logf = fopen(o->log, fresh ? "w" : "a");
        if (!logf) die("%s: %s", o->log, strerror(errno));
        setvbuf(logf, NULL, _IOLBF, 0);
        if (fresh) fprintf(logf, "step\tepoch\tbatch\tloss\tlr\ttargets\trows\tseconds\n");
    }
    memset(tm->grad, 0, tm->np * sizeof(float)); /* then AdamW zeroes it after every step */
    progress pr;
    snprintf(what, sizeof what, "steps");
    progress_init(&pr, what, total);
    double epoch_loss = pos->batch ? pos->last_loss : 0.0, t_run = now_seconds();
    long step0 = pos->step;
    int stopped = 0;
    for (; pos->epoch < o->epochs && !stopped; pos->epoch++, pos->batch = 0, epoch_loss = 0.0) {
        make_order(perm, d->n, o, pos->epoch);
        double te = now_seconds();
        long tokens = 0, steps = 0;
        for (; pos->batch < spe; pos->batch++) {
            double t0 = now_seconds();
            gather(d, perm + (size_t)pos->batch * bs, bs, emb, tok);
            train_noise(emb, bs, E, o->noise, o->gap, &pos->rng, scratch);
            gpt_layout(s, tok, bs, o->pad, NULL);
            /* dropout masks from (seed, step): nothing to save for a resume */
            s->dropout = (float)o->dropout;
            s->key = stream_seed(o->seed, STREAM_DROPOUT) + (uint64_t)pos->step;
            gpt_forward(s, c, &tm->w, emb);
            double loss = gpt_loss_backward(s, c, &tm->w, &tm->g, emb);
            if (!isfinite(loss))
                die("the loss is %g at step %ld (epoch %ld, batch %ld): training diverged; the last checkpoint "
                    "is left as it was",
                    loss, pos->step + 1, pos->epoch + 1, pos->batch + 1);
            /* the scheduler steps after the optimizer: update k uses lambda(k) */
            double lr = o->lr * lr_lambda(pos->step, o->warmup, total);
            adamw_step(tm->p, tm->grad, tm->m, tm->v, tm->np, pos->step + 1, lr, o->wd, 1e-6);
            pos->step++;
            epoch_loss += loss;
            tokens += s->M;
            steps++;
            double t1 = now_seconds();
            if (logf)
                fprintf(logf, "%ld\t%ld\t%ld\t%.9g\t%.9g\t%d\t%d\t%.6f\n", pos->step, pos->epoch + 1, pos->batch + 1,
                        loss, lr, s->M, s->N, t1 - t0);
            double el = t1 - te;
            char eta[48] = "";
            if (!pr.tty) { /* the bar shows its own ETA; plain lines do not */
                double left = (double)(total - pos->step) * (now_seconds() - t_run) / (double)(pos->step - step0);
                fmt_dur(dur, sizeof dur, left);
                snprintf(eta, sizeof eta, ", ETA %s", dur);
            }
            snprintf(what, sizeof what, "steps (epoch %ld/%d, loss %.4f, %.0f tokens/s%s)", pos->epoch + 1, o->epochs,
                     epoch_loss / (double)(pos->batch + 1), el > 0 ? (double)tokens / el : 0.0, eta);
            progress_update(&pr, pos->step);
            if (stop && *stop && pos->batch + 1 < spe) {
                pos->batch++;
                if (save_checkpoint(tm, o, pos, d, epoch_loss, NAN, err, sizeof err)) die("%s", err);
                progress_end(&pr, pos->step);
                infox("stopped at epoch %ld, batch %ld of %d: checkpoint written to %s (continue with --resume)",
                      pos->epoch + 1, pos->batch, spe, o->out);
                stopped = 1;
                break;
            }
        }
        if (stopped) break;
        double el = now_seconds() - te, vl = NAN;
        pos->last_loss = epoch_loss / spe;
        if (val) vl = train_eval(tm, s, val, bs, o->pad);
        pos->last_val = vl;
        train_pos next = *pos;
        next.epoch++, next.batch = 0;
        if (save_checkpoint(tm, o, &next, d, 0.0, vl, err, sizeof err)) die("%s", err);
        fmt_dur(dur, sizeof dur, el);
        char vbuf[48] = "";
        if (val) snprintf(vbuf, sizeof vbuf, ", val loss %.4f", vl);
        progress_end(&pr, pos->step);
        pr.shown = 0;
        infox("epoch %ld/%d: loss %.4f%s, %ld steps in %s, %.0f tokens/s; checkpoint %s", pos->epoch + 1, o->epochs,
              pos->last_loss, vbuf, steps, dur, el > 0 ? (double)tokens / el : 0.0, o->out);
        if (stop && *stop) {
            pos->epoch++, pos->batch = 0;
            stopped = pos->epoch < o->epochs;
            if (stopped) infox("stopped after epoch %ld: continue with --resume %s", pos->epoch, o->out);
            break;
        }
    }
    if (logf && fclose(logf) != 0) die("%s: %s", o->log, strerror(errno));
    gpt_train_state_free(s);
    free(emb), free(scratch), free(tok), free(perm);
    return stopped;
}
