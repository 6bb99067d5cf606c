/* passt.c - see passt.h. */
#include "passt.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "kernels.h"
#include "kernels_vit.h"
#include "nn.h"
#include "passt_mel.h"
#include "util.h"

#define PA "audio_embedding_model.model.model."
#define PP "project_audio.0."

typedef struct {
    st_file *f;
    char *err;
    size_t errlen;
    char **names; /* the audio tensors looked up */
    int nnames, capnames;
} loader;

static int fail(loader *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(loader *L, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    snprintf(L->err, L->errlen, "%s: %s", st_path(L->f), msg);
    return -1;
}

static void remember(loader *L, const char *name) {
    if (L->nnames == L->capnames) {
        L->capnames = L->capnames ? 2 * L->capnames : 64;
        L->names = xrealloc(L->names, (size_t)L->capnames * sizeof(char *));
    }
    L->names[L->nnames++] = xstrdup(name);
}

/* tensor `name` (f32, the given shape, -1 = any) */
static const float *need(loader *L, const char *name, int ndim, const int64_t *shape) {
    remember(L, name);
    return st_get_f32(L->f, name, ndim, shape, L->err, L->errlen);
}

static int dims(loader *L, const char *name, int ndim, int64_t *out) {
    st_tensor t;
    if (st_get(L->f, name, &t, L->err, L->errlen)) return -1;
    if (t.ndim != ndim) return fail(L, "tensor '%s' has %d dimensions, expected %d", name, t.ndim, ndim);
    for (int i = 0; i < ndim; i++) out[i] = t.shape[i];
    return 0;
}

static int meta_long(loader *L, const char *key, long lo, long hi, long *v) {
    int r = st_meta_int(L->f, key, v);
    if (r == -1) return fail(L, "__metadata__ %s is missing (convert with scripts/convert.py salsa)", key);
    if (r == -2 || *v < lo || *v > hi)
        return fail(L, "__metadata__ %s = '%.60s' is not an integer in [%ld, %ld]", key, st_meta(L->f, key), lo, hi);
    return 0;
}

static int meta_pair(loader *L, const char *key, int *a, int *b) {
    const char *s = st_meta(L->f, key);
    if (!s) return fail(L, "__metadata__ %s is missing (convert with scripts/convert.py salsa)", key);
    char *e1, *e2;
    long x = strtol(s, &e1, 10);
    long y = *e1 == ',' ? strtol(e1 + 1, &e2, 10) : 0;
    if (e1 == s || *e1 != ',' || *e2 || x < 1 || x > 4096 || y < 1 || y > 4096)
        return fail(L, "__metadata__ %s = '%.60s' is not two positive integers 'A,B'", key, s);
    *a = (int)x, *b = (int)y;
    return 0;
}

static int meta_float(loader *L, const char *key, double lo, double hi, float *v) {
    const char *s = st_meta(L->f, key);
    if (!s) return fail(L, "__metadata__ %s is missing (convert with scripts/convert.py salsa)", key);
    char *end;
    double d = strtod(s, &end);
    if (end == s || *end || !(d >= lo && d <= hi))
        return fail(L, "__metadata__ %s = '%.60s' is not a number in [%g, %g]", key, s, lo, hi);
    *v = (float)d;
    return 0;
}

int passt_is_passt_file(const st_file *f) {
    const char *a = st_meta(f, "clap.audio.arch");
    return a && !strcmp(a, "passt");
}

static int load(loader *L, passt_model *m) {
    st_file *f = L->f;
    passt_config *c = &m->cfg;
    passt_weights *w = &m->w;
    const char *kind = st_meta(f, "wsac.model"), *fmt = st_meta(f, "wsac.format");
    if (!kind || strcmp(kind, "clap"))
        return fail(L, "__metadata__ wsac.model is '%.100s', expected 'clap'", kind ? kind : "(absent)");
    if (!fmt || strcmp(fmt, "1"))
        return fail(L, "__metadata__ wsac.format is '%.100s', expected '1'", fmt ? fmt : "(absent)");
    if (!passt_is_passt_file(f)) return fail(L, "__metadata__ clap.audio.arch is not 'passt'");
    const char *fe = st_meta(f, "clap.audio.frontend");
    if (!fe || !*fe || strlen(fe) >= sizeof c->frontend)
        return fail(L, "__metadata__ clap.audio.frontend is missing or too long");
    strcpy(c->frontend, fe);
    long v;
    if (meta_long(L, "clap.audio.n_mels", 1, 4096, &v)) return -1;
    c->n_mels = (int)v;
    if (meta_long(L, "clap.audio.heads", 1, 4096, &v)) return -1;
    c->heads = (int)v;
    if (meta_pair(L, "clap.audio.patch_stride", &c->sh, &c->sw)) return -1;
    if (meta_float(L, "clap.audio.ln_eps", 1e-30, 1, &c->ln_eps)) return -1;
    if (meta_long(L, "clap.audio.segment_samples", 1, 1L << 40, &c->seg_samples)) return -1;
    if (meta_long(L, "clap.audio.hop", 1, 1 << 20, &v)) return -1;
    c->hop = (int)v;
    if (meta_long(L, "clap.audio.segments", 1, 64, &v)) return -1;
    c->nseg = (int)v;
    if (meta_float(L, "clap.audio.pad_value", -1e30, 1e30, &c->pad_value)) return -1;
    c->sr = 0; /* optional: files converted before it was checked */
    if (st_meta(f, "clap.audio.sr")) {
        if (meta_long(L, "clap.audio.sr", 1, 10000000, &v)) return -1;
        c->sr = (int)v;
    }
    long S = 1 + (c->seg_samples - 1) / c->hop;
    if (S > (1 << 24)) return fail(L, "a segment of %ld frames is too long", S);
    c->seg_frames = (int)S;

    int64_t d4[4], d2[2], d3[3];
    if (dims(L, PA "patch_embed.proj.weight", 4, d4)) return -1;
    if (d4[1] != 1) return fail(L, "tensor '" PA "patch_embed.proj.weight' has %lld input channels, expected 1", (long long)d4[1]);
    if (d4[0] < 1 || d4[0] > 65536 || d4[2] < 1 || d4[3] < 1 || d4[2] > 4096 || d4[3] > 4096)
        return fail(L, "tensor '" PA "patch_embed.proj.weight' has an implausible shape");
    c->dim = (int)d4[0], c->ph = (int)d4[2], c->pw = (int)d4[3];
    int D = c->dim;
    if (D % c->heads) return fail(L, "width %d is not a multiple of clap.audio.heads %d", D, c->heads);
    if (!(w->patch_w = need(L, PA "patch_embed.proj.weight", 4, d4))) return -1;
    int64_t vD[1] = {D};
    if (!(w->patch_b = need(L, PA "patch_embed.proj.bias", 1, vD))) return -1;
    int64_t tok1[3] = {1, 1, D}, tok2[3] = {1, 2, D};
    if (!(w->cls = need(L, PA "cls_token", 3, tok1))) return -1;
    if (!(w->dist = need(L, PA "dist_token", 3, tok1))) return -1;
    if (!(w->tok_pos = need(L, PA "new_pos_embed", 3, tok2))) return -1;
    if (dims(L, PA "freq_new_pos_embed", 4, d4)) return -1;
    c->grid_f = (int)d4[2];
    int64_t fshape[4] = {1, D, c->grid_f, 1};
    if (!(w->freq_pos = need(L, PA "freq_new_pos_embed", 4, fshape))) return -1;
    if (dims(L, PA "time_new_pos_embed", 4, d4)) return -1;
    c->grid_t = (int)d4[3];
    int64_t tshape[4] = {1, D, 1, c->grid_t};
    if (!(w->time_pos = need(L, PA "time_new_pos_embed", 4, tshape))) return -1;

    /* a segment's grid: nn.Conv2d without padding */
    if (c->n_mels < c->ph || c->seg_frames < c->pw)
        return fail(L, "a %d x %d patch does not fit a segment of %d bins x %d frames", c->ph, c->pw, c->n_mels,
                    c->seg_frames);
    c->Fp = (c->n_mels - c->ph) / c->sh + 1;
    c->Tp = (c->seg_frames - c->pw) / c->sw + 1;
    if (c->Fp != c->grid_f)
        return fail(L, "freq_new_pos_embed has %d positions but %d mel bins give %d patch rows", c->grid_f, c->n_mels,
                    c->Fp);
    if (c->Tp > c->grid_t)
        return fail(L, "time_new_pos_embed has %d positions but a segment of %d frames gives %d patch columns",
                    c->grid_t, c->seg_frames, c->Tp);
    c->ntok = 2 + c->Fp * c->Tp;

    /* blocks: 0..L-1, found in the file */
    char name[256];
    int nb = 0;
    for (;; nb++) {
        snprintf(name, sizeof name, PA "blocks.%d.norm1.weight", nb);
        st_tensor t;
        char e2[8];
        if (st_get(f, name, &t, e2, sizeof e2)) break;
        if (nb > 10000) return fail(L, "too many blocks");
    }
    if (nb < 1) return fail(L, "tensor '" PA "blocks.0.norm1.weight' is missing");
    c->depth = nb;
    if (dims(L, PA "blocks.0.mlp.fc1.weight", 2, d2)) return -1;
    c->mlp = (int)d2[0];
    if (c->mlp < 1) return fail(L, "tensor '" PA "blocks.0.mlp.fc1.weight' is empty");
    w->blocks = xcalloc((size_t)nb, sizeof(passt_block));
    int64_t vD3[1] = {3 * D}, vH[1] = {c->mlp}, qkv[2] = {3 * D, D}, pr[2] = {D, D}, f1[2] = {c->mlp, D},
            f2[2] = {D, c->mlp};
    for (int l = 0; l < nb; l++) {
        passt_block *b = &w->blocks[l];
        struct {
            const float **p;
            const char *part;
            int nd;
            const int64_t *shape;
        } t[] = {
            {&b->ln1_w, "norm1.weight", 1, vD},    {&b->ln1_b, "norm1.bias", 1, vD},
            {&b->qkv_w, "attn.qkv.weight", 2, qkv}, {&b->qkv_b, "attn.qkv.bias", 1, vD3},
            {&b->proj_w, "attn.proj.weight", 2, pr}, {&b->proj_b, "attn.proj.bias", 1, vD},
            {&b->ln2_w, "norm2.weight", 1, vD},    {&b->ln2_b, "norm2.bias", 1, vD},
            {&b->fc1_w, "mlp.fc1.weight", 2, f1},  {&b->fc1_b, "mlp.fc1.bias", 1, vH},
            {&b->fc2_w, "mlp.fc2.weight", 2, f2},  {&b->fc2_b, "mlp.fc2.bias", 1, vD},
        };
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            snprintf(name, sizeof name, PA "blocks.%d.%s", l, t[i].part);
            if (!(*t[i].p = need(L, name, t[i].nd, t[i].shape))) return -1;
        }
    }
    if (!(w->norm_w = need(L, PA "norm.weight", 1, vD))) return -1;
    if (!(w->norm_b = need(L, PA "norm.bias", 1, vD))) return -1;
    if (dims(L, PP "weight", 2, d2)) return -1;
    c->embed = (int)d2[0];
    int64_t pw2[2] = {c->embed, D}, pE[1] = {c->embed};
    if (c->embed < 1) return fail(L, "tensor '" PP "weight' is empty");
    if (!(w->proj_w = need(L, PP "weight", 2, pw2))) return -1;
    if (!(w->proj_b = need(L, PP "bias", 1, pE))) return -1;
    (void)d3;

    /* no other tensor of the audio tower */
    for (int i = 0; i < st_count(f); i++) {
        const char *n = st_name(f, i);
        if (strncmp(n, PA, sizeof PA - 1) && strncmp(n, "project_audio.", 14)) continue;
        int known = 0;
        for (int j = 0; j < L->nnames && !known; j++) known = !strcmp(n, L->names[j]);
        if (!known) return fail(L, "unexpected tensor '%s' (not part of PaSST-S with %d blocks)", n, nb);
    }
    return 0;
}

passt_model *passt_load(const char *path, char *err, size_t errlen) {
    st_file *f = st_open(path, err, errlen);
    if (!f) return NULL;
    passt_model *m = xcalloc(1, sizeof *m);
    m->file = f;
    loader L = {f, err, errlen, NULL, 0, 0};
    int r = load(&L, m);
    for (int i = 0; i < L.nnames; i++) free(L.names[i]);
    free(L.names);
    if (r) {
        passt_free(m);
        return NULL;
    }
    return m;
}

void passt_free(passt_model *m) {
    if (!m) return;
    free(m->w.blocks);
    st_close(m->file);
    free(m);
}

int passt_state_init(passt_state *s, const passt_model *m, int threads) {
    memset(s, 0, sizeof *s);
    s->threads = gemm_init(threads);
    const passt_config *c = &m->cfg;
    size_t B = (size_t)c->nseg, N = (size_t)c->ntok, D = (size_t)c->dim, R = B * N;
    s->cap_tok = R;
    s->seg = xmalloc((size_t)c->seg_frames * c->n_mels * sizeof(float));
    s->cols = xmalloc((size_t)c->Fp * c->Tp * c->ph * c->pw * sizeof(float));
    s->x = xmalloc(R * D * sizeof(float));
    s->h = xmalloc(R * D * sizeof(float));
    s->ao = xmalloc(R * D * sizeof(float));
    s->qkv = xmalloc(R * 3 * D * sizeof(float));
    s->mlp = xmalloc(R * (size_t)c->mlp * sizeof(float));
    s->att = xmalloc(B * (size_t)c->heads * N * N * sizeof(float));
    s->mean = xmalloc(R * sizeof(float));
    s->rstd = xmalloc(R * sizeof(float));
    s->feat = xmalloc(B * D * sizeof(float));
    s->off = xmalloc(B * sizeof(int));
    s->len = xmalloc(B * sizeof(int));
    return s->threads;
}

void passt_state_free(passt_state *s) {
    free(s->seg), free(s->cols), free(s->x), free(s->h), free(s->ao), free(s->qkv), free(s->mlp), free(s->att);
    free(s->mean), free(s->rstd), free(s->feat), free(s->off), free(s->len);
    memset(s, 0, sizeof *s);
}

const char *passt_input_error(const passt_model *m, const float *mel, long T, long M, char *buf, size_t len) {
    if (M != m->cfg.n_mels) {
        snprintf(buf, len, "\"mel\" has %ld bands, the model takes %d (wav2mel --frontend passt)", M, m->cfg.n_mels);
        return buf;
    }
    if (T < 1) {
        snprintf(buf, len, "\"mel\" has no frames");
        return buf;
    }
    long n = T < (long)m->cfg.nseg * m->cfg.seg_frames ? T : (long)m->cfg.nseg * m->cfg.seg_frames;
    for (size_t i = 0; i < (size_t)n * (size_t)M; i++)
        if (!isfinite(mel[i])) {
            snprintf(buf, len, "\"mel\" has a non-finite value at frame %zu, bin %zu", i / (size_t)M, i % (size_t)M);
            return buf;
        }
    return NULL;
}

int passt_kept_segments(const passt_model *m, long T, long nsamples) {
    const passt_config *c = &m->cfg;
    long n = nsamples > 0 ? nsamples : (T - 1) * c->hop + 1;
    return pmel_kept_segments(n, c->seg_samples, c->nseg);
}

const char *passt_segments_error(const passt_model *m, long T, long nsamples, char *buf, size_t len) {
    const passt_config *c = &m->cfg;
    if (nsamples <= 0) {
        snprintf(buf, len, "a segmented PaSST mel needs \"samples\" (the clip's true length)");
        return buf;
    }
    int k = passt_kept_segments(m, T, nsamples);
    if (T % c->seg_frames || T / c->seg_frames < k) {
        snprintf(buf, len, "\"mel\" has %ld frames; a clip of %ld samples needs its %d kept segment(s) of %d frames "
                 "(%ld)", T, nsamples, k, c->seg_frames, (long)k * c->seg_frames);
        return buf;
    }
    return NULL;
}

void passt_forward(passt_state *s, const passt_model *m, const float *mel, long T, long nsamples, float *emb) {
    const passt_config *c = &m->cfg;
    const passt_weights *w = &m->w;
    int B = passt_kept_segments(m, T, nsamples);
    int D = c->dim, N = c->ntok, M = c->n_mels, S = c->seg_frames, P = c->Fp * c->Tp, R = B * N;
    /* tokens of each kept segment */
    for (int b = 0; b < B; b++) {
        long t0 = (long)b * S, have = T - t0;
        if (have > S) have = S;
        if (have < 0) have = 0;
        if (have > 0) memcpy(s->seg, mel + (size_t)t0 * M, (size_t)have * M * sizeof(float));
        for (size_t i = (size_t)have * M; i < (size_t)S * M; i++) s->seg[i] = c->pad_value;
        float *x = s->x + (size_t)b * N * D;
        /* the image [M, S] is seg[S, M] read with strides (1, M) */
        patch_embed_forward(x + 2 * (size_t)D, s->cols, s->seg, 1, M, w->patch_w, w->patch_b, c->Fp, c->Tp, c->ph,
                            c->pw, c->sh, c->sw, D);
        for (int p = 0; p < P; p++) {
            int f = p / c->Tp, t = p % c->Tp;
            float *r = x + (size_t)(2 + p) * D;
            for (int d = 0; d < D; d++) {
                r[d] = r[d] + w->time_pos[(size_t)d * c->grid_t + t];
                r[d] = r[d] + w->freq_pos[(size_t)d * c->grid_f + f];
            }
        }
        for (int d = 0; d < D; d++) {
            x[d] = w->cls[d] + w->tok_pos[d];
            x[D + d] = w->dist[d] + w->tok_pos[D + d];
        }
        s->off[b] = b * N;
        s->len[b] = N;
    }
    for (int l = 0; l < c->depth; l++) {
        const passt_block *k = &w->blocks[l];
        layernorm_forward_train(s->h, s->mean, s->rstd, s->x, k->ln1_w, k->ln1_b, R, D, c->ln_eps);
        linear_forward(s->qkv, s->h, k->qkv_w, k->qkv_b, R, D, 3 * D);
        attention_forward(s->ao, s->att, s->qkv, NULL, 1.0f, s->off, s->len, B, N, D, c->heads, 0);
        linear_forward(s->h, s->ao, k->proj_w, k->proj_b, R, D, D);
        for (size_t i = 0; i < (size_t)R * D; i++) s->x[i] += s->h[i];
        layernorm_forward_train(s->h, s->mean, s->rstd, s->x, k->ln2_w, k->ln2_b, R, D, c->ln_eps);
        linear_forward(s->mlp, s->h, k->fc1_w, k->fc1_b, R, D, c->mlp);
        gelu_erf_forward(s->mlp, s->mlp, (size_t)R * c->mlp);
        linear_forward(s->h, s->mlp, k->fc2_w, k->fc2_b, R, c->mlp, D);
        for (size_t i = 0; i < (size_t)R * D; i++) s->x[i] += s->h[i];
    }
    /* final norm of the two tokens; feature = (cls + dist) / 2; mean over kept segments */
    float *sum = s->feat;
    for (int b = 0; b < B; b++) {
        float *t2 = s->h + (size_t)b * 2 * D;
        layernorm_forward_train(t2, s->mean, s->rstd, s->x + (size_t)b * N * D, w->norm_w, w->norm_b, 2, D,
                                c->ln_eps);
        for (int d = 0; d < D; d++) {
            float fv = (t2[d] + t2[D + d]) / 2.0f;
            sum[d] = b ? sum[d] + fv : fv;
        }
    }
    for (int d = 0; d < D; d++) sum[d] = sum[d] / (float)B;
    linear_forward(emb, sum, w->proj_w, w->proj_b, 1, D, c->embed);
    l2_normalize_rows(emb, 1, c->embed);
}
