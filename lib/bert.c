/* bert.c - the CLAP text encoder forward pass, BERT and RoBERTa (see bert.h).
 *
 * Legend: T tokens in a batch (the sum of the sequence lengths), B sequences,
 * L one sequence's length, H hidden, NH heads, d = H / NH, I feed-forward
 * width, E embedding size, K the reduction length of a matrix product,
 * OC its output columns.
 *
 * The model only: its kernels are the shared ones. Matrix products are
 * packed linear layers (lib/kernels_linear.c: weights repacked in panels at
 * load time; q, k and v as one [3H, H] product), attention is the kernel
 * layer's attention_forward (lib/kernels.h, the non-causal path: per
 * sequence and head two one-thread sgemms, over exactly the sequence's own
 * tokens), GELU is gelu_erf_inplace and LayerNorm layernorm_forward (nn.h).
 * This file splits the work over its thread pool (lib/pool.c).
 *
 * Sections: loading, forward pass. */
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

#include "kernels.h"
#include "kernels_linear.h"
#include "nn.h"
#include "parfor.h"
#include "pool.h"
#include "util.h"

#define TXT "text_encoder.text_encoder."

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

const char *bert_kernel_name(void) { return packed_linear_kernel(); }

/* ------------------------------------------------------------------------
 * Loading */

/* A size-defining F32 tensor of ndim dimensions: its shape, each in [1, 2^24]. */
static int get_dims(st_file *f, const char *name, int ndim, int *dims, char *err, size_t errlen) {
    if (!st_get_as(f, name, ST_F32, ndim, NULL, err, errlen)) return -1;
    st_tensor t;
    if (st_get(f, name, &t, err, errlen)) return -1;
    for (int i = 0; i < ndim; i++) {
        if (t.shape[i] < 1 || t.shape[i] > (1 << 24))
            return seterr(err, errlen, "%s: tensor '%s' has dimension %lld, expected 1 to %d", st_path(f), name,
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
    packed_linear_pack(L, 1, &W, &b, &OC, C);
    release(W, (size_t)OC * (size_t)C * sizeof(float));
    return 0;
}

/* A required metadata integer in [lo, hi]. */
static int meta_int(st_file *f, const char *key, long lo, long hi, int *out, char *err, size_t errlen) {
    long v;
    int r = st_meta_int(f, key, &v);
    if (r == -1) return seterr(err, errlen, "%s: metadata '%s' is missing", st_path(f), key);
    if (r < 0 || v < lo || v > hi)
        return seterr(err, errlen, "%s: metadata '%s' is '%s', expected an integer from %ld to %ld", st_path(f), key,
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
        return seterr(err, errlen, "%s: metadata '%s' is '%s' but the tensors have %s %d", st_path(f), key,
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
        return seterr(err, errlen,
                     "%s: metadata 'wsac.format' is %s%s%s, expected '1' (convert with scripts/convert.py)", path,
                     v ? "'" : "", v ? v : "missing", v ? "'" : "");
    v = st_meta(f, "clap.text.arch"); /* absent: bert (WavCaps); SALSA files say roberta */
    const char *model = st_meta(f, "wsac.model");
    if (!model || strcmp(model, "clap"))
        return seterr(err, errlen, "%s: metadata 'wsac.model' is %s%s%s, expected 'clap'", path, model ? "'" : "",
                     model ? model : "missing", model ? "'" : "");
    if (v && strcmp(v, "bert") && strcmp(v, "roberta"))
        return seterr(err, errlen, "%s: metadata 'clap.text.arch' is '%.40s', expected 'bert' or 'roberta'", path, v);
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
        return seterr(err, errlen, "%s: metadata 'clap.text.heads' is %d, which does not divide the hidden size %d",
                     path, c->heads, H);
    c->head_dim = H / c->heads;
    if (c->arch == BERT_ARCH_ROBERTA) {
        /* HF create_position_ids_from_input_ids: the real tokens' positions
         * count from padding_idx + 1, so the table needs max_len more rows */
        if (meta_int(f, "clap.text.pad_id", 0, c->vocab - 1, &c->pad_id, err, errlen)) return -1;
        int off;
        if (meta_int(f, "clap.text.position_offset", 0, c->positions, &off, err, errlen)) return -1;
        if (off != c->pad_id + 1)
            return seterr(err, errlen,
                         "%s: metadata 'clap.text.position_offset' is %d, expected pad_id + 1 = %d (RoBERTa's "
                         "positions)",
                         path, off, c->pad_id + 1);
        c->pos_offset = off;
        v = st_meta(f, "clap.text.pooling");
        if (v && strcmp(v, "first"))
            return seterr(err, errlen, "%s: metadata 'clap.text.pooling' is '%.40s', expected 'first' (SALSA's)", path,
                         v);
        if (c->positions - off < 3)
            return seterr(err, errlen, "%s: %d position embeddings leave no room past the offset %d", path,
                         c->positions, off);
    }
    if (meta_int(f, "clap.text.max_len", 3, c->positions - c->pos_offset, &c->max_len, err, errlen)) return -1;
    v = st_meta(f, "clap.text.ln_eps");
    char *end = NULL;
    double eps = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(eps > 0 && eps < 1))
        return seterr(err, errlen, "%s: metadata 'clap.text.ln_eps' is %s%s%s, expected a number in (0, 1)", path,
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
        { /* query, key, value: one [3H, H] product, its output the qkv layout attention_forward reads */
            static const char *const qkv[3] = {"query", "key", "value"};
            const float *W[3], *bb[3];
            int oc[3] = {H, H, H};
            for (int i = 0; i < 3; i++) {
                snprintf(name, sizeof name, "%sattention.self.%s.weight", pre, qkv[i]);
                if (!(W[i] = get2(f, name, H, H, err, errlen))) goto fail;
                snprintf(name, sizeof name, "%sattention.self.%s.bias", pre, qkv[i]);
                if (!(bb[i] = get1(f, name, H, err, errlen))) goto fail;
            }
            packed_linear_pack(&L->qkv, 3, W, bb, oc, H);
            for (int i = 0; i < 3; i++) release(W[i], (size_t)H * H * sizeof(float));
        }
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
            seterr(err, errlen, "%s: unexpected tensor '%s' (not part of %s)", path, name, tn->what);
            goto fail;
        }
    }
    packed_linear_kernel();
    return 0;
fail:
    bert_free(m);
    return -1;
}

void bert_free(bert_model *m) {
    if (m->layer) {
        for (int l = 0; l < m->c.layers; l++) {
            bert_layer *L = &m->layer[l];
            packed_linear_free(&L->qkv);
            packed_linear_free(&L->o);
            packed_linear_free(&L->fi);
            packed_linear_free(&L->fo);
        }
    }
    free(m->layer);
    packed_linear_free(&m->proj0);
    packed_linear_free(&m->proj2);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------------
 * Forward pass */

struct bert_state {
    thread_pool *pool;
    int threads;
    size_t cap_t, cap_b, cap_l;
    float *x, *ctx, *tmp; /* [T, H] */
    float *qkv;           /* [T, 3H] q | k | v, as attention_forward reads them */
    float *ff;            /* [T, I] */
    float *cls;           /* [B, H] the [CLS] rows in the last layer */
    float *h1;            /* [B, E] */
    int *start;           /* [B + 1] first token of each sequence */
    int *pos;             /* [T] position of each token in its sequence */
    float **att;          /* [threads][NH, Lmax, Lmax] attention_forward's softmax scratch */
};

bert_state *bert_state_new(const bert_model *m, int threads) {
    (void)m;
    packed_linear_kernel();
    /* attention_forward's sgemms run on this pool's threads, one (sequence,
     * head) each: OpenBLAS must not start threads of its own (clap-text uses
     * OpenBLAS for nothing else) */
    nn_set_threads(1);
    bert_state *s = xcalloc(1, sizeof *s);
    s->threads = threads < 1 ? 1 : threads;
    s->att = xcalloc((size_t)s->threads, sizeof(float *));
    s->pool = pool_new(s->threads);
    return s;
}

static void free_acts(bert_state *s) {
    free(s->x);
    free(s->qkv);
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
    for (int t = 0; t < s->threads; t++) free(s->att[t]);
    free(s->att);
    free(s);
}

static float *falloc(size_t rows, size_t cols) { return xmalloc_aligned(rows * cols * sizeof(float)); }

static void grow(bert_state *s, const bert_config *c, size_t T, size_t B, size_t Lmax) {
    size_t H = (size_t)c->hidden;
    if (T > s->cap_t) {
        free_acts(s);
        s->x = falloc(T, H);
        s->qkv = falloc(T, 3 * H);
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
    if (Lmax > s->cap_l) {
        for (int t = 0; t < s->threads; t++) {
            free(s->att[t]);
            s->att[t] = falloc((size_t)c->heads * Lmax, Lmax);
        }
        s->cap_l = Lmax;
    }
}

/* One product: out[M, OC] (row stride ldo) = act(a[M, K] (row stride lda) @ W^T + b). */
typedef struct {
    float *out;
    const float *a;
    const packed_linear *L;
    int ldo, lda, M, act;
} mm_job;

/* What the tasks of one forward pass share. */
typedef struct {
    bert_state *s;
    const bert_model *m;
    const int32_t *ids;
    const int *len;
    int B, T, Lmax;
    /* the current task */
    atomic_int next; /* next work item to hand out */
    mm_job jobs[1];
    float *rx; /* residual rows: x = LN(tmp + x) over the rows of rx */
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

/* A matrix product: its panels (kernels_linear.h: any split gives the same bits). */
static void task_mm(void *ctx, int tid, int nt) {
    fwd *F = ctx;
    const mm_job *j = &F->jobs[0];
    int total = packed_linear_panels(j->L->OC), lo, hi;
    (void)tid;
    while (grab(F, total, chunk_for(total, nt, 8), &lo, &hi))
        packed_linear_forward(j->out, j->ldo, j->a, j->lda, j->L, j->M, lo, hi, j->act);
}

static void run_mm(fwd *F, float *out, int ldo, const float *a, int lda, int M, const packed_linear *L, int act) {
    mm_job j = {out, a, L, ldo, lda, M, act};
    F->jobs[0] = j;
    run_task(F, task_mm);
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

/* Self-attention of sequence b over exactly its own tokens: ctx =
 * softmax(q k^T / sqrt(d)) v per head (HF BertSelfAttention; HF pads and
 * masks, and the masked scores' exp() is 0). att: [NH, Lmax, Lmax] scratch. */
static void attend(fwd *F, int b, float *att) {
    bert_state *s = F->s;
    attention_forward(s->ctx, att, s->qkv, NULL, 1.0f, s->start + b, F->len + b, 1, F->Lmax, F->m->c.hidden,
                      F->m->c.heads, 0);
}

/* A sequence per work item, on this pool's threads; inside, attention_forward's
 * parfor runs on the calling thread (clap-text starts no parfor threads). */
static void task_attention(void *ctx, int tid, int nt) {
    fwd *F = ctx;
    int lo, hi;
    (void)nt;
    while (grab(F, F->B, 1, &lo, &hi)) attend(F, lo, F->s->att[tid]);
}

static void run_rows(fwd *F, float *rx, int rows, const float *w, const float *b) {
    F->rx = rx;
    F->rrows = rows;
    F->ln_w = w;
    F->ln_b = b;
    run_task(F, task_residual_ln);
}

/* One post-LN layer. The last one (last): only the [CLS] rows are used
 * after it, so past attention it runs on those B rows alone; its attention
 * still reads every token's k and v (and computes every query: the price
 * of the shared kernel, ~1% of BERT-base's work for short captions). */
static void layer_forward(fwd *F, int l, int last) {
    bert_state *s = F->s;
    const bert_layer *L = &F->m->layer[l];
    int H = F->m->c.hidden, I = F->m->c.intermediate, T = F->T, B = F->B;
    run_mm(F, s->qkv, 3 * H, s->x, H, T, &L->qkv, PLIN_NONE);
    if (parfor_threads() > 1) /* parfor is not reentrant: one sequence at a time, parfor splits its heads */
        for (int b = 0; b < B; b++) attend(F, b, s->att[0]);
    else
        run_task(F, task_attention);
    /* rows that go on after attention: every token, or the [CLS] rows gathered into cls */
    float *x = s->x;
    int rows = T;
    if (last) {
        for (int b = 0; b < B; b++) { /* start[b] >= b: row b is read before it is written */
            memcpy(s->cls + (size_t)b * H, s->x + (size_t)s->start[b] * H, H * sizeof(float));
            memmove(s->ctx + (size_t)b * H, s->ctx + (size_t)s->start[b] * H, H * sizeof(float));
        }
        x = s->cls;
        rows = B;
    }
    run_mm(F, s->tmp, H, s->ctx, H, rows, &L->o, PLIN_NONE);
    run_rows(F, x, rows, L->ln1_w, L->ln1_b);
    run_mm(F, s->ff, I, x, H, rows, &L->fi, PLIN_GELU);
    run_mm(F, s->tmp, H, s->ff, I, rows, &L->fo, PLIN_NONE);
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
    F.Lmax = Lmax;
    run_task(&F, task_embed);
    for (int l = 0; l < c->layers; l++) layer_forward(&F, l, l == c->layers - 1);
    if (c->proj_layers == 2) { /* text_proj: Linear, ReLU, Linear */
        run_mm(&F, s->h1, c->embed, s->cls, c->hidden, B, &m->proj0, PLIN_RELU);
        run_mm(&F, emb, c->embed, s->h1, c->embed, B, &m->proj2, PLIN_NONE);
    } else { /* SALSA's project_sentence: one Linear */
        run_mm(&F, emb, c->embed, s->cls, c->hidden, B, &m->proj0, PLIN_NONE);
    }
    l2_normalize_rows(emb, B, c->embed); /* F.normalize(dim=-1) */
}

double bert_macs(const bert_model *m, const int *len, int B) {
    const bert_config *c = &m->c;
    double H = c->hidden, I = c->intermediate, E = c->embed, T = 0, att = 0;
    for (int b = 0; b < B; b++) {
        T += len[b];
        att += 2.0 * len[b] * len[b] * H; /* q k^T and p v over all heads */
    }
    double per_tok = 4 * H * H + 2 * H * I;
    double full = (c->layers - 1) * (T * per_tok + att);
    double last = T * 3 * H * H + att + B * (H * H + 2 * H * I); /* q, k, v and attention for every token */
    return full + last + B * (H * E + (c->proj_layers == 2 ? E * E : 0));
}
