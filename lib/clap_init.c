/* clap_init.c - a new CNN14-BERT CLAP model file from sizes (see clap_init.h). */
#include "clap_init.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"
#include "train.h"
#include "util.h"
#include "wordpiece.h"

#define PA "audio_encoder.audio_enc."
#define PT "text_encoder.text_encoder."

void clap_sizes_default(clap_sizes *s) {
    memset(s, 0, sizeof *s);
    /* WavCaps retrieval/models/cnns.py Cnn14: bn0 = BatchNorm2d(64), conv_block1..6 64..2048 */
    s->n_mels = 64, s->nblocks = 6;
    for (int k = 0; k < 6; k++) s->channels[k] = 64 << k;
    s->embed = 1024; /* retrieval/settings/pretrain.yaml embed_size */
    /* bert-base-uncased's config.json */
    s->layers = 12, s->hidden = 768, s->heads = 12, s->intermediate = 3072, s->positions = 512, s->types = 2;
    s->max_len = 30; /* text_encoder.py: truncation, max_length=30 */
}

int clap_sizes_check(const clap_sizes *s, char *err, size_t errlen) {
    if (s->nblocks < 1 || s->nblocks > CLAP_MAX_BLOCKS)
        return seterr(err, errlen, "%d ConvBlocks: give 1 to %d", s->nblocks, CLAP_MAX_BLOCKS);
    for (int k = 0; k < s->nblocks; k++)
        if (s->channels[k] < 1 || s->channels[k] > 65536)
            return seterr(err, errlen, "ConvBlock %d: %d channels, give 1 to 65536", k + 1, s->channels[k]);
    /* the loader's rule (cnn14.c): each block halves the mel axis */
    if (s->n_mels < (1 << s->nblocks))
        return seterr(err, errlen, "%d mel bins are too few for %d ConvBlocks (2x2 pooling each: at least %d)",
                     s->n_mels, s->nblocks, 1 << s->nblocks);
    if (s->n_mels > 4096) return seterr(err, errlen, "%d mel bins: at most 4096", s->n_mels);
    if (s->embed < 1 || s->embed > 65536) return seterr(err, errlen, "embedding width %d: give 1 to 65536", s->embed);
    if (s->layers < 1 || s->layers > 1024) return seterr(err, errlen, "%d text layers: give 1 to 1024", s->layers);
    if (s->hidden < 1 || s->hidden > 65536) return seterr(err, errlen, "text width %d: give 1 to 65536", s->hidden);
    if (s->heads < 1 || s->hidden % s->heads)
        return seterr(err, errlen, "%d attention heads do not divide the text width %d", s->heads, s->hidden);
    if (s->intermediate < 1 || s->intermediate > 1 << 20)
        return seterr(err, errlen, "feed-forward width %d: give 1 to %d", s->intermediate, 1 << 20);
    if (s->positions < 3 || s->positions > 1 << 16)
        return seterr(err, errlen, "%d positions: give 3 to %d", s->positions, 1 << 16);
    if (s->types < 1 || s->types > 1024) return seterr(err, errlen, "%d token types: give 1 to 1024", s->types);
    if (s->max_len < 3 || s->max_len > s->positions)
        return seterr(err, errlen, "%d tokens a caption: give 3 to the %d positions", s->max_len, s->positions);
    return 0;
}

/* ---------------------------------------------------------------- the tensors */

enum { I_ONES, I_ZEROS, I_XAVIER_CONV, I_NORMAL, I_NORMAL_PAD0, I_LINEAR_W, I_LINEAR_B };

typedef struct {
    char *name;
    int ndim, how;
    int64_t shape[4];
    int fan_in; /* nn.Linear's in_features (I_LINEAR_*) */
    size_t off, numel;
} newt;

typedef struct {
    newt *t;
    int n, cap;
    size_t total;
} table;

static void add(table *tb, int how, int fan_in, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                const char *fmt, ...) {
    if (tb->n == tb->cap) tb->cap = tb->cap ? 2 * tb->cap : 256, tb->t = xrealloc(tb->t, (size_t)tb->cap * sizeof *tb->t);
    newt *t = &tb->t[tb->n++];
    char nm[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(nm, sizeof nm, fmt, ap);
    va_end(ap);
    t->name = xstrdup(nm);
    t->ndim = ndim, t->how = how, t->fan_in = fan_in;
    int64_t d[4] = {d0, d1, d2, d3};
    t->numel = 1;
    for (int i = 0; i < 4; i++) t->shape[i] = i < ndim ? d[i] : 0;
    for (int i = 0; i < ndim; i++) t->numel *= (size_t)d[i];
    t->off = tb->total;
    tb->total += t->numel;
}

/* The published names and shapes (scripts/convert.py clap_expected), with
 * how each is initialised */
static void build(table *tb, const clap_sizes *s, int vocab) {
    static const char *const bnp[4] = {"weight", "bias", "running_mean", "running_var"};
    static const int bnhow[4] = {I_ONES, I_ZEROS, I_ZEROS, I_ONES};
    int M = s->n_mels, E = s->embed, H = s->hidden, I = s->intermediate;
    for (int j = 0; j < 4; j++) add(tb, bnhow[j], 0, 1, M, 0, 0, 0, PA "bn0.%s", bnp[j]);
    int cin = 1;
    for (int k = 0; k < s->nblocks; k++) {
        int c = s->channels[k];
        add(tb, I_XAVIER_CONV, 0, 4, c, cin, 3, 3, PA "conv_block%d.conv1.weight", k + 1);
        add(tb, I_XAVIER_CONV, 0, 4, c, c, 3, 3, PA "conv_block%d.conv2.weight", k + 1);
        for (int b = 1; b <= 2; b++)
            for (int j = 0; j < 4; j++) add(tb, bnhow[j], 0, 1, c, 0, 0, 0, PA "conv_block%d.bn%d.%s", k + 1, b, bnp[j]);
        cin = c;
    }
    add(tb, I_LINEAR_W, cin, 2, E, cin, 0, 0, "audio_proj.0.weight");
    add(tb, I_LINEAR_B, cin, 1, E, 0, 0, 0, "audio_proj.0.bias");
    add(tb, I_LINEAR_W, E, 2, E, E, 0, 0, "audio_proj.2.weight");
    add(tb, I_LINEAR_B, E, 1, E, 0, 0, 0, "audio_proj.2.bias");
    add(tb, I_NORMAL_PAD0, 0, 2, vocab, H, 0, 0, PT "embeddings.word_embeddings.weight");
    add(tb, I_NORMAL, 0, 2, s->positions, H, 0, 0, PT "embeddings.position_embeddings.weight");
    add(tb, I_NORMAL, 0, 2, s->types, H, 0, 0, PT "embeddings.token_type_embeddings.weight");
    add(tb, I_ONES, 0, 1, H, 0, 0, 0, PT "embeddings.LayerNorm.weight");
    add(tb, I_ZEROS, 0, 1, H, 0, 0, 0, PT "embeddings.LayerNorm.bias");
    for (int l = 0; l < s->layers; l++) {
#define L PT "encoder.layer.%d."
        static const char *const qkv[3] = {"query", "key", "value"};
        for (int j = 0; j < 3; j++) {
            add(tb, I_NORMAL, 0, 2, H, H, 0, 0, L "attention.self.%s.weight", l, qkv[j]);
            add(tb, I_ZEROS, 0, 1, H, 0, 0, 0, L "attention.self.%s.bias", l, qkv[j]);
        }
        add(tb, I_NORMAL, 0, 2, H, H, 0, 0, L "attention.output.dense.weight", l);
        add(tb, I_ZEROS, 0, 1, H, 0, 0, 0, L "attention.output.dense.bias", l);
        add(tb, I_ONES, 0, 1, H, 0, 0, 0, L "attention.output.LayerNorm.weight", l);
        add(tb, I_ZEROS, 0, 1, H, 0, 0, 0, L "attention.output.LayerNorm.bias", l);
        add(tb, I_NORMAL, 0, 2, I, H, 0, 0, L "intermediate.dense.weight", l);
        add(tb, I_ZEROS, 0, 1, I, 0, 0, 0, L "intermediate.dense.bias", l);
        add(tb, I_NORMAL, 0, 2, H, I, 0, 0, L "output.dense.weight", l);
        add(tb, I_ZEROS, 0, 1, H, 0, 0, 0, L "output.dense.bias", l);
        add(tb, I_ONES, 0, 1, H, 0, 0, 0, L "output.LayerNorm.weight", l);
        add(tb, I_ZEROS, 0, 1, H, 0, 0, 0, L "output.LayerNorm.bias", l);
#undef L
    }
    add(tb, I_LINEAR_W, H, 2, E, H, 0, 0, "text_proj.0.weight");
    add(tb, I_LINEAR_B, H, 1, E, 0, 0, 0, "text_proj.0.bias");
    add(tb, I_LINEAR_W, E, 2, E, E, 0, 0, "text_proj.2.weight");
    add(tb, I_LINEAR_B, E, 1, E, 0, 0, 0, "text_proj.2.bias");
}

static uint64_t fnv1a(const char *s) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
    return h;
}

static uint64_t mix64(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* p[n] ~ U(-a, a): torch's uniform_(-a, a) is -a + 2a u, u in [0, 1) */
static void uniform(xrng *r, float *p, size_t n, double a) {
    for (size_t i = 0; i < n; i++) p[i] = (float)(-a + 2.0 * a * xrng_uniform(r));
}

static void init_tensor(const newt *t, float *p, uint64_t seed) {
    xrng r;
    xrng_seed(&r, mix64(seed ^ mix64(fnv1a(t->name))));
    size_t n = t->numel;
    switch (t->how) {
    case I_ONES:
        for (size_t i = 0; i < n; i++) p[i] = 1.0f;
        break;
    case I_ZEROS: memset(p, 0, n * sizeof(float)); break;
    case I_XAVIER_CONV: {
        /* nn.init.xavier_uniform_ (gain 1) on [cout, cin, 3, 3]: fan_in = cin 9,
         * fan_out = cout 9, bound sqrt(6 / (fan_in + fan_out)) */
        double fi = (double)t->shape[1] * 9, fo = (double)t->shape[0] * 9;
        uniform(&r, p, n, sqrt(6.0 / (fi + fo)));
        break;
    }
    case I_NORMAL:
    case I_NORMAL_PAD0:
        /* _init_weights: normal_(mean=0.0, std=initializer_range) */
        xrng_normal(&r, p, n);
        for (size_t i = 0; i < n; i++) p[i] = (float)(0.02 * p[i]);
        /* nn.Embedding(vocab, hidden, padding_idx=pad_token_id): that row zeroed */
        if (t->how == I_NORMAL_PAD0) memset(p, 0, (size_t)t->shape[1] * sizeof(float));
        break;
    case I_LINEAR_W:
    case I_LINEAR_B:
        /* nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) is
         * U(-1/sqrt(in), 1/sqrt(in)) for the weight; the bias the same bound */
        uniform(&r, p, n, 1.0 / sqrt((double)t->fan_in));
        break;
    }
}


int clap_new_write(const char *path, const clap_sizes *s, const char *vocab, uint64_t seed, const char *source,
                   char *err, size_t errlen) {
    if (clap_sizes_check(s, err, errlen)) return -1;
    size_t vn = 0;
    char *vb = read_file_all(vocab, (size_t)1 << 30, &vn, err, errlen);
    if (!vb) return -1;
    /* the tokenizer clap-text will build from these bytes: its token count is
     * the vocabulary size (clap-text requires it to equal the embedding rows) */
    char e2[400];
    wordpiece *wp = wp_load(vb, vn, e2, sizeof e2);
    if (!wp) {
        free(vb);
        return seterr(err, errlen, "%s: not a BERT vocab.txt: %s", vocab, e2);
    }
    int V = wp_vocab_size(wp);
    wp_free(wp);

    table tb = {0};
    build(&tb, s, V);
    float *w = xmalloc(tb.total * sizeof(float));
    for (int i = 0; i < tb.n; i++) init_tensor(&tb.t[i], w + tb.t[i].off, seed);

    ckpt_tensor *ct = xcalloc((size_t)tb.n + 1, sizeof *ct);
    for (int i = 0; i < tb.n; i++) {
        ct[i].name = tb.t[i].name, ct[i].dtype = ST_F32, ct[i].ndim = tb.t[i].ndim, ct[i].data = w + tb.t[i].off;
        for (int d = 0; d < 4; d++) ct[i].shape[d] = tb.t[i].shape[d];
    }
    /* U8 last: every F32 tensor stays 4-byte aligned (formats/safetensors.md) */
    ct[tb.n] = (ckpt_tensor){"tokenizer.vocab", ST_U8, 1, {(int64_t)vn, 0, 0, 0}, vb};

    /* the metadata convert.py clap writes */
    char v[16][32], chs[CLAP_MAX_BLOCKS * 8] = "", sd[32];
    size_t o = 0;
    for (int k = 0; k < s->nblocks; k++) o += (size_t)snprintf(chs + o, sizeof chs - o, "%s%d", k ? "," : "", s->channels[k]);
    snprintf(v[0], 32, "%d", s->n_mels), snprintf(v[1], 32, "%d", s->embed), snprintf(v[2], 32, "%d", s->layers);
    snprintf(v[3], 32, "%d", s->heads), snprintf(v[4], 32, "%d", s->hidden), snprintf(v[5], 32, "%d", s->intermediate);
    snprintf(v[6], 32, "%d", s->max_len), snprintf(v[7], 32, "%d", V), snprintf(v[8], 32, "%d", s->positions);
    snprintf(sd, sizeof sd, "%llu", (unsigned long long)seed);
    const char *meta[] = {"wsac.format", "1", "wsac.model", "clap", "wsac.source", source,
                          "clap.audio.n_mels", v[0], "clap.audio.channels", chs, "clap.audio.bn_eps", "1e-05",
                          "clap.embed_dim", v[1], "clap.text.layers", v[2], "clap.text.heads", v[3],
                          "clap.text.hidden", v[4], "clap.text.intermediate", v[5], "clap.text.ln_eps", "1e-12",
                          "clap.text.max_len", v[6], "clap.text.vocab_size", v[7], "clap.text.positions", v[8],
                          "clap.text.lowercase", "1", "clap.text.max_word_chars", "100",
                          "clap.init.seed", sd, "clap.init", "wavcaps"};
    int rc = ckpt_write(path, ct, tb.n + 1, meta, (int)(sizeof meta / sizeof *meta / 2), err, errlen);
    for (int i = 0; i < tb.n; i++) free(tb.t[i].name);
    free(tb.t), free(ct), free(w), free(vb);
    return rc;
}

/* ---------------------------------------------------------------- the family check */

static int has_prefix(st_file *f, const char *pre) {
    size_t n = strlen(pre);
    for (int i = 0; i < st_count(f); i++)
        if (!strncmp(st_name(f, i), pre, n)) return 1;
    return 0;
}

int clap_check_family(const char *path, int audio, char *err, size_t errlen) {
    st_file *f = st_open(path, err, errlen);
    if (!f) return -1;
    int rc = -1;
    const char *kind = st_meta(f, "wsac.model");
    const char *arch = st_meta(f, audio ? "clap.audio.arch" : "clap.text.arch");
    const char *want = audio ? "cnn14" : "bert", *tower = audio ? "audio" : "text";
    const char *pre = audio ? PA : PT;
    if (!kind || strcmp(kind, "clap"))
        seterr(err, errlen, "%s: not a CLAP model file (__metadata__ wsac.model is %s%.40s%s): clap-train trains "
                           "CNN14-BERT CLAP models",
              path, kind ? "'" : "", kind ? kind : "absent", kind ? "'" : "");
    else if (arch && strcmp(arch, want))
        seterr(err, errlen, "%s: another architecture: its %s tower is '%.40s' (clap.%s.arch)%s; clap-train trains the "
                           "CNN14-BERT family (WavCaps) only",
              path, tower, arch, tower, st_meta(f, "clap.family") ? " in a SALSA model" : "");
    else if (!has_prefix(f, pre))
        seterr(err, errlen, "%s: no %s tower (no tensor '%s*'%s): clap-train needs both towers of a CNN14-BERT model",
              path, tower, pre,
              has_prefix(f, audio ? "audio_embedding_model." : "sentence_embedding_model.")
                  ? ", but SALSA's names: another architecture"
                  : "");
    else
        rc = 0;
    st_close(f);
    return rc;
}
