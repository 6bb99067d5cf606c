/* clap_train.c - the training loop of clap-train (see clap_train.h).
 *
 * Items are (audio, caption) pairs in caption-file order; an epoch visits
 * them in a permutation drawn from (seed, epoch), in batches of bs items (the
 * last partial batch dropped, as the published loader's drop_last); the
 * audio tower sees the bs clips of the batch, duplicates included. Positives
 * are items with the same audio. Every random draw is keyed by (seed, epoch,
 * item), never by the order of work.
 *
 * Under MPI (dist.h) each of R ranks runs bs/R items of every batch through
 * both towers, BatchNorm's statistics added over the ranks; the embeddings
 * are gathered so the loss sees the whole batch (as open_clip's gathered
 * loss), each rank backpropagates its own rows, and the gradients are
 * summed over the ranks (in rank order: every rank then takes the same
 * AdamW step). Rank 0 alone writes files, logs and validates. */
#include "clap_train.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audio.h"
#include "bert_train.h"
#include "bpe.h"
#include "captions.h"
#include "cnn14_train.h"
#include "contrastive.h"
#include "dist.h"
#include "embset.h"
#include "gemm.h"
#include "kernels.h"
#include "metrics.h"
#include "passt.h"
#include "passt_mel.h"
#include "passt_train.h"
#include "safetensors.h"
#include "salsa_text.h"
#include "stream.h"
#include "train.h"
#include "util.h"
#include "wordpiece.h"

void clap_train_defaults(clap_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 20, o->bs = 64, o->shuffle = 1, o->augment = 1, o->seed = 409194;
    for (int i = 0; i < 4; i++) o->lr[i] = 2e-5;
    o->min_lr = 1e-7, o->warmup = 1, o->ramp0 = 1, o->ramp1 = 15;
    o->b1 = 0.9, o->b2 = 0.999, o->eps = 1e-8, o->wd = 0, o->tau = 0.05;
    o->loss_weight = 1, o->distill_weight = 0, o->quirk = 1;
    clap_sizes_default(&o->sizes);
    o->init_seed = -1;
    o->patchout_t = 15, o->patchout_f = 2; /* ex_dcase24.py: s_patchout_t 15, s_patchout_f 2 */
    o->text_dropout = o->text_attn_dropout = -1;
    o->jitter = o->crop = 1;
}

typedef struct {
    char *key;
    int T;
    int nseg;   /* PaSST: the kept 10-s segments, T = nseg * S */
    float *mel; /* [T, M]; NULL for a clip of --audio-list (its mel is made each step) */
    char *path; /* --audio-list: the audio file */
    long n;     /* --audio-list: its samples at the model's rate */
} clip;

typedef struct {
    int audio;    /* index into clips */
    int ntok;
    int32_t *ids; /* [ntok] */
    char *text, *key;
} item;

static uint64_t mix(uint64_t z) {
    z += 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static int ends_with_csv(const char *p) {
    size_t n = strlen(p);
    return n >= 4 && p[n - 4] == '.' && tolower((unsigned char)p[n - 3]) == 'c' &&
           tolower((unsigned char)p[n - 2]) == 's' && tolower((unsigned char)p[n - 1]) == 'v';
}

/* The audio tower: WavCaps' CNN14 or SALSA's PaSST-S (clap.audio.arch).
 * PaSST runs on every kept 10-s segment of the batch's clips as one batch of
 * segments; a clip's embedding is the mean of its segments' (forward_audio's
 * masked mean of the features; the projection is affine, so the mean of the
 * projected segments is the same thing), and the backward pass hands each
 * segment de / k. */
typedef struct {
    cnn14t *cnn;
    passtt *pt;
    int embed, n_mels;
    size_t nparams, head; /* head: the projection's offset (the audio groups' split) */
    float *params, *grads;
    int S, nseg, hop, sr; /* PaSST: frames a segment, segments to the fixed length */
    long seg_samples;
    /* PaSST's batch of segments */
    float *segmel, *eseg, *deseg;
    uint64_t *skeys;
    int *ns; /* the batch's clips' segment counts */
    int nb, bs; /* the last forward pass: clips, segments */
    size_t capseg;
    int capclips;
} atower;

static void at_load(atower *A, const char *src) {
    char err[700];
    memset(A, 0, sizeof *A);
    st_file *f = st_open(src, err, sizeof err);
    if (!f) die("%s", err);
    int passt = passt_is_passt_file(f);
    st_close(f);
    if (passt) {
        passt_model *pm = passt_load(src, err, sizeof err);
        if (!pm) die("%s", err);
        A->S = pm->cfg.seg_frames, A->nseg = pm->cfg.nseg, A->seg_samples = pm->cfg.seg_samples;
        A->hop = pm->cfg.hop, A->sr = pm->cfg.sr;
        passt_free(pm);
        if (!(A->pt = passtt_load(src, err, sizeof err))) die("%s", err);
        A->embed = A->pt->c.embed, A->n_mels = A->pt->c.n_mels;
        A->nparams = A->pt->nparams, A->params = A->pt->params, A->grads = A->pt->grads;
        A->head = A->pt->t[passtt_find(A->pt, "project_audio.0.weight")].off;
    } else {
        if (!(A->cnn = cnn14t_load(src, err, sizeof err))) die("%s", err);
        A->embed = A->cnn->embed, A->n_mels = A->cnn->n_mels;
        A->nparams = A->cnn->nparams, A->params = A->cnn->params, A->grads = A->cnn->grads;
        A->head = A->cnn->t[cnn14t_find(A->cnn, "audio_proj.0.weight")].off;
    }
}

static void at_free(atower *A) {
    if (A->cnn) cnn14t_free(A->cnn);
    if (A->pt) passtt_free(A->pt);
    free(A->segmel), free(A->eseg), free(A->deseg), free(A->skeys), free(A->ns);
}

/* PaSST: e[n, E] = each clip's mean over its kept segments; keys NULL: no
 * patchout or dropout (eval), else keys[j] keys clip j's segments' draws */
static void passt_clips_forward(atower *A, float *e, const clip *const *cl, int n, const uint64_t *keys) {
    int M = A->n_mels, S = A->S, E = A->embed, Bs = 0;
    for (int j = 0; j < n; j++) Bs += cl[j]->nseg;
    if ((size_t)Bs > A->capseg) {
        A->capseg = (size_t)Bs;
        A->segmel = xrealloc(A->segmel, A->capseg * S * M * sizeof(float));
        A->eseg = xrealloc(A->eseg, A->capseg * E * sizeof(float));
        A->deseg = xrealloc(A->deseg, A->capseg * E * sizeof(float));
        A->skeys = xrealloc(A->skeys, A->capseg * sizeof(uint64_t));
    }
    if (n > A->capclips) A->capclips = n, A->ns = xrealloc(A->ns, (size_t)n * sizeof(int));
    int b = 0;
    for (int j = 0; j < n; j++) {
        /* a clip's kept segments lie one after the other in its mel, [k * S, M] */
        memcpy(A->segmel + (size_t)b * S * M, cl[j]->mel, (size_t)cl[j]->nseg * S * M * sizeof(float));
        for (int k = 0; k < cl[j]->nseg; k++) A->skeys[b + k] = keys ? mix(keys[j] ^ mix(0x736567ULL + (uint64_t)k)) : 0;
        A->ns[j] = cl[j]->nseg, b += cl[j]->nseg;
    }
    A->nb = n, A->bs = Bs;
    passtt_forward(A->pt, A->eseg, A->segmel, Bs, S, keys ? A->skeys : NULL, NULL, NULL);
    b = 0;
    for (int j = 0; j < n; j++) {
        float *ej = e + (size_t)j * E;
        for (int i = 0; i < E; i++) {
            float acc = 0;
            for (int k = 0; k < A->ns[j]; k++) acc += A->eseg[(size_t)(b + k) * E + i];
            ej[i] = acc / (float)A->ns[j];
        }
        b += A->ns[j];
    }
}

/* grads += d loss / d params given de[n, E] of the last passt_clips_forward */
static void passt_clips_backward(atower *A, const float *de) {
    int E = A->embed, b = 0;
    for (int j = 0; j < A->nb; j++) {
        for (int k = 0; k < A->ns[j]; k++)
            for (int i = 0; i < E; i++) A->deseg[(size_t)(b + k) * E + i] = de[(size_t)j * E + i] / (float)A->ns[j];
        b += A->ns[j];
    }
    passtt_backward(A->pt, A->deseg);
}

/* the first header's params.frontend ("wavcaps" when absent), as clap-audio reads it */
static const char *stream_frontend(const ws_reader *r) {
    const char *fe;
    int rc = ws_reader_param_str(r, "frontend", &fe);
    return rc < 0 ? "wavcaps" : rc > 0 ? "(not a string)" : fe;
}

/* PaSST: the stream must be wav2mel --frontend passt's segment cut of the model's sizes */
static void check_passt_stream(const ws_reader *r, const char *path, const atower *A) {
    if (strcmp(stream_frontend(r), "passt"))
        die("%s: the mel stream's front end is %s, the model takes passt (make it with wav2mel --frontend passt)", path,
            stream_frontend(r));
    double seg = 0, k = -1, hop = -1, sr = -1;
    if (ws_reader_param(r, "segment_samples", &seg) || seg <= 0)
        die("%s: a whole-clip PaSST mel: training takes SALSA's 10-s waveform pieces (wav2mel --frontend passt "
            "without --whole-clip)", path);
    ws_reader_param(r, "segments", &k);
    if (seg != (double)A->seg_samples || k != A->nseg)
        die("%s: the mel stream's pieces are %g samples, %g to the fixed length; the model's are %ld, %d (make it "
            "with wav2mel --frontend passt --segment-samples %ld --segments %d)", path, seg, k, A->seg_samples,
            A->nseg, A->seg_samples, A->nseg);
    if (!ws_reader_param(r, "hop", &hop) && hop != A->hop)
        die("%s: the mel stream's hop is %g samples, the model's %d (wav2mel --hop %d)", path, hop, A->hop, A->hop);
    if (A->sr && !ws_reader_param(r, "sr", &sr) && sr != A->sr)
        die("%s: the mel stream's rate is %g Hz, the model's %d (wav2mel --sr %d)", path, sr, A->sr, A->sr);
}

/* every mel record of the stream, whole (PaSST: its kept segments) */
static clip *read_mels(const char *path, int M, int *n, const atower *A) {
    ws_reader *r = ws_reader_open_path(path);
    if (!r) die("cannot open %s: %m", path);
    clip *c = NULL;
    int cap = 0, k;
    ws_record rec;
    char eb[400];
    while ((k = ws_reader_next(r, &rec)) == WS_RECORD) {
        if (rec.err[0]) die("%s: %s: %s", path, ws_record_name(&rec, eb, sizeof eb), rec.err);
        if (A->pt && !*n) check_passt_stream(r, path, A);
        const ws_tensor *t = ws_record_tensor(&rec, "mel", DT_F32, 2, eb, sizeof eb);
        if (!t) die("%s: key '%s': %s", path, rec.key, eb);
        if (t->shape[1] != M) die("%s: key '%s': %lld mel bands, the model takes %d", path, rec.key, (long long)t->shape[1], M);
        for (size_t i = 0; i < t->numel; i++)
            if (!isfinite(((float *)t->data)[i])) die("%s: key '%s': a NaN or infinite value", path, rec.key);
        for (int i = 0; i < *n; i++)
            if (!strcmp(c[i].key, rec.key)) die("%s: key '%s' appears twice", path, rec.key);
        if (*n == cap) cap = cap ? 2 * cap : 256, c = xrealloc(c, (size_t)cap * sizeof *c);
        c[*n].key = xstrdup(rec.key);
        c[*n].T = (int)t->shape[0];
        c[*n].nseg = 0, c[*n].path = NULL, c[*n].n = 0;
        size_t numel = t->numel;
        if (A->pt) {
            /* forward_audio's mask: the segments the clip's true length keeps */
            const ws_field *sf = ws_record_field(&rec, "samples");
            long ns = sf && sf->kind == WF_INT ? (long)sf->i : 0;
            if (ns <= 0) die("%s: key '%s': no \"samples\" (the clip's true length, which wav2mel records)", path, rec.key);
            int kept = pmel_kept_segments(ns, A->seg_samples, A->nseg);
            if (c[*n].T % A->S || c[*n].T / A->S < kept)
                die("%s: key '%s': \"mel\" has %d frames; a clip of %ld samples needs its %d kept segment(s) of %d "
                    "frames", path, rec.key, c[*n].T, ns, kept, A->S);
            c[*n].nseg = kept, c[*n].T = kept * A->S, numel = (size_t)kept * A->S * M;
        }
        c[*n].mel = xmalloc(numel * sizeof(float));
        memcpy(c[*n].mel, t->data, numel * sizeof(float));
        (*n)++;
        ws_record_free(&rec);
    }
    if (k == WS_ERROR) die("%s: %s", path, ws_reader_error(r));
    ws_reader_close(r);
    if (!*n) die("%s: no mel records", path);
    return c;
}

void clap_audio_list_free(clap_audio_entry *e, int n) {
    for (int i = 0; i < n; i++) free(e[i].key), free(e[i].path);
    free(e);
}

static int cmp_audio_entry(const void *a, const void *b) {
    const clap_audio_entry *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

clap_audio_entry *clap_audio_list_read(int fd, const char *name, int *n, char *err, size_t errlen) {
    *n = 0;
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) cap *= 2, buf = xrealloc(buf, cap + 1);
        ssize_t k = read(fd, buf + len, cap - len);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            seterr(err, errlen, "%s: %s", name, strerror(errno));
            free(buf);
            return NULL;
        }
        if (k == 0) break;
        len += (size_t)k;
    }
    buf[len] = 0;
    clap_audio_entry *e = NULL;
    int ecap = 0;
    long ln = 0, bad_line = 0;
    for (char *s = buf; s < buf + len && !bad_line;) {
        char *nl = memchr(s, '\n', (size_t)(buf + len - s)), *line = s;
        size_t l = nl ? (size_t)(nl - s) : (size_t)(buf + len - s);
        s += l + (nl != NULL);
        ln++;
        line[l] = 0;
        while (l && line[l - 1] == '\r') line[--l] = 0; /* getline's "\n" then every trailing "\r", as before */
        if (!l) continue;
        if (strlen(line) != l) {
            seterr(err, errlen, "%s: line %ld: a NUL byte", name, ln);
            bad_line = ln;
            break;
        }
        char *tab = strchr(line, '\t'), *path = tab ? tab + 1 : line, *key;
        if (tab) {
            *tab = 0;
            key = xstrdup(line);
        } else {
            char *tmp = xstrdup(path);
            key = xstrdup(basename(tmp));
            free(tmp);
        }
        if (!*key || !*path) {
            seterr(err, errlen, "%s: line %ld: an empty key or path", name, ln);
            free(key);
            bad_line = ln;
            break;
        }
        if (*n == ecap) ecap = ecap ? 2 * ecap : 256, e = xrealloc(e, (size_t)ecap * sizeof *e);
        e[(*n)++] = (clap_audio_entry){key, xstrdup(path), ln};
    }
    free(buf);
    /* a key's second line, the earliest of them, unless a malformed line came first */
    if (*n > 1) {
        clap_audio_entry *sorted = xmalloc((size_t)*n * sizeof *sorted);
        memcpy(sorted, e, (size_t)*n * sizeof *sorted);
        qsort(sorted, (size_t)*n, sizeof *sorted, cmp_audio_entry);
        const clap_audio_entry *dup = NULL;
        for (int i = 1; i < *n; i++)
            if (!strcmp(sorted[i].key, sorted[i - 1].key) && (i < 2 || strcmp(sorted[i].key, sorted[i - 2].key)) &&
                (!dup || sorted[i].line < dup->line))
                dup = &sorted[i];
        if (dup && (!bad_line || dup->line < bad_line)) {
            seterr(err, errlen, "%s: line %ld: key '%s' appears twice", name, dup->line, dup->key);
            bad_line = dup->line;
        }
        free(sorted);
    }
    if (!bad_line && !*n) seterr(err, errlen, "%s: no audio files", name), bad_line = -1;
    if (bad_line) {
        clap_audio_list_free(e, *n);
        *n = 0;
        return NULL;
    }
    return e;
}

/* --audio-list: "PATH" or "KEY<TAB>PATH" lines (clap_audio_list_read); every
 * file decoded once here, to name a bad one now and to know its length (the
 * segments its mask keeps) */
static clip *read_audio_list(const char *list, const atower *A, const audio_opts *ao, int *n) {
    int fd = open(list, O_RDONLY | O_CLOEXEC);
    if (fd < 0) die("cannot open %s: %m", list);
    char err[600];
    int ne;
    clap_audio_entry *le = clap_audio_list_read(fd, list, &ne, err, sizeof err);
    close(fd);
    if (!le) die("%s", err);
    clip *c = xcalloc((size_t)ne, sizeof *c);
    audio_buf ab = {0};
    for (int i = 0; i < ne; i++) {
        if (audio_load(le[i].path, ao, &ab, err, sizeof err)) die("%s: line %ld: %s: %s", list, le[i].line, le[i].path, err);
        if (!ab.n) die("%s: line %ld: %s: no samples", list, le[i].line, le[i].path);
        clip *x = &c[i];
        x->key = le[i].key, x->path = le[i].path, x->n = (long)ab.n;
        le[i].key = le[i].path = NULL;
        /* forward_audio's mask: min(n, the fixed length) decides, crop or not */
        x->nseg = pmel_kept_segments(x->n, A->seg_samples, A->nseg), x->T = x->nseg * A->S;
    }
    *n = ne;
    clap_audio_list_free(le, ne);
    audio_free(&ab);
    return c;
}

/* --audio-list: clip c's mel for this step into out[c->nseg * S, M] (SALSA's
 * get_item and AugmentMelSTFT): the waveform at the model's rate; a clip
 * longer than the fixed length cut to it at a random offset (augment && crop:
 * __get_fixed_length_audio__'s torch.randint(n - L + 1); else its first L
 * samples, as wav2mel does); each kept piece's mel with the edges jittered
 * (augment && jitter: preprocess.py's randint draws, keyed by the item's key;
 * the published code draws once per batch) */
static void wave_mel(const clip *c, const atower *A, const audio_opts *ao, audio_buf *ab, pmel_state *ps,
                     const pmel_config *pc, int augment, int crop, int jitter, uint64_t key, long seed, float *out) {
    char err[600];
    if (audio_load(c->path, ao, ab, err, sizeof err)) die("%s: %s", c->path, err);
    if ((long)ab->n != c->n) die("%s: %zu samples now, %ld when training began: the file changed", c->path, ab->n, c->n);
    long L = (long)A->nseg * A->seg_samples, off = 0, n = c->n;
    if (n > L) {
        if (augment && crop) off = (long)(mix(key ^ 0x63726f70ULL) % (uint64_t)(n - L + 1));
        n = L;
    }
    double flo = pc->fmin, fhi = pc->fmax;
    if (augment && jitter) pmel_jitter(pc, (unsigned long long)seed, key, &flo, &fhi);
    if (tool_verbose > 1)
        infox("audio '%s': samples %ld..%ld of %ld, mel edges %g..%g Hz", c->key, off, off + n, c->n, flo, fhi);
    pmel_compute_segments(ps, ab->x + off, (size_t)n, (size_t)A->seg_samples, c->nseg, flo, fhi, out);
}

static int find_clip(const clip *c, int n, const char *key) {
    for (int i = 0; i < n; i++)
        if (!strcmp(c[i].key, key)) return i;
    return -1;
}

/* the model file's tokenizer: BERT's WordPiece, or SALSA's preprocessing and
 * RoBERTa's BPE (salsa_text.h, as clap-text) */
typedef struct {
    wordpiece *wp;
    bpe *bp;
    int pre;
} tokenizer;

/* the items of a caption file, in file order; a caption whose audio is not
 * among clips, or that cannot be tokenized, is named and fatal */
static item *read_items(const char *path, int csv, const clip *clips, int nclips, const char *melpath,
                        const tokenizer *tk, int max_len, int *nitems) {
    FILE *cf = fopen(path, "rb");
    if (!cf) die("cannot open %s: %m", path);
    cap_reader *cr = cap_open(fileno(cf), path, csv || ends_with_csv(path) ? CAP_CSV : CAP_LINES, 1 << 20);
    item *it = NULL;
    int nit = 0, capit = 0, k, bad = 0;
    caption c;
    int32_t *ids = xmalloc((size_t)max_len * sizeof(int32_t));
    while ((k = cap_next(cr, &c)) == CAP_RECORD) {
        if (c.err[0]) {
            warnx_("%s: line %ld (%s): %s", path, c.line, c.key, c.err);
            bad++;
            caption_free(&c);
            continue;
        }
        const char *akey = c.id ? c.id : c.key;
        int a = find_clip(clips, nclips, akey);
        if (a < 0) {
            if (bad++ < 10) warnx_("%s: line %ld: audio '%s' is not in %s", path, c.line, akey, melpath);
            caption_free(&c);
            continue;
        }
        int trunc = 0;
        char e2[200];
        int L = tk->wp ? wp_encode(tk->wp, c.text, c.len, max_len, ids, &trunc, e2, sizeof e2)
                       : salsa_caption_ids(tk->bp, tk->pre, c.text, c.len, max_len, ids, &trunc, e2, sizeof e2);
        if (tk->bp && L == 2) /* <s> </s>: as clap-text, a caption of nothing is a data error */
            snprintf(e2, sizeof e2, "empty caption (only white space or punctuation, which SALSA removes)"), L = 0;
        if (L <= 0) {
            warnx_("%s: line %ld (%s): %s", path, c.line, c.key, e2);
            bad++;
            caption_free(&c);
            continue;
        }
        if (nit == capit) capit = capit ? 2 * capit : 1024, it = xrealloc(it, (size_t)capit * sizeof *it);
        it[nit].audio = a, it[nit].ntok = L;
        it[nit].ids = xmalloc((size_t)L * sizeof(int32_t));
        memcpy(it[nit].ids, ids, (size_t)L * sizeof(int32_t));
        it[nit].text = xstrdup(c.text), it[nit].key = xstrdup(c.key);
        nit++;
        caption_free(&c);
    }
    if (k == CAP_ERROR) die("%s: %s", path, cap_error(cr));
    cap_close(cr);
    fclose(cf);
    free(ids);
    if (bad) die("%s: %d caption%s could not be used (named above)", path, bad, bad == 1 ? "" : "s");
    *nitems = nit;
    return it;
}

/* validation: text-to-audio mAP@10 of the model in eval mode (each clip
 * alone at its own length, as clap-audio; captions without dropout), as
 * SALSA's on_validation_epoch_end: one query per caption, its audio relevant */
static double validate(atower *A, bertt *Tx, const clip *clips, int nclips, const item *it, int nit, double *r1) {
    int E = A->embed, Bt = 32;
    float *au = xmalloc((size_t)nclips * E * sizeof(float)), *tx = xmalloc((size_t)nit * E * sizeof(float));
    if (A->cnn)
        for (int i = 0; i < nclips; i++) cnn14t_forward_eval(A->cnn, au + (size_t)i * E, clips[i].mel, 1, clips[i].T);
    else /* PaSST without keys: passt.py in eval mode; 2 clips (at most 6 segments: their activations are kept) a pass */
        for (int i = 0; i < nclips; i += 2) {
            const clip *cl[2];
            int n = nclips - i < 2 ? nclips - i : 2;
            for (int j = 0; j < n; j++) cl[j] = &clips[i + j];
            passt_clips_forward(A, au + (size_t)i * E, cl, n, NULL);
        }
    int32_t *ids = xmalloc((size_t)Bt * Tx->c.max_len * sizeof(int32_t));
    int len[32], *ta = xmalloc((size_t)nit * sizeof(int));
    for (int i = 0; i < nit; i += Bt) {
        int n = nit - i < Bt ? nit - i : Bt, L = 0;
        for (int j = 0; j < n; j++) {
            memcpy(ids + L, it[i + j].ids, (size_t)it[i + j].ntok * sizeof(int32_t));
            len[j] = it[i + j].ntok, L += len[j];
        }
        bertt_forward_train(Tx, tx + (size_t)i * E, ids, len, n, NULL);
    }
    for (int i = 0; i < nit; i++) ta[i] = it[i].audio;
    l2norm_forward(au, NULL, au, nclips, E);
    l2norm_forward(tx, NULL, tx, nit, E);
    rt_scores t2a, a2t;
    rt_evaluate(tx, nit, au, nclips, E, ta, &t2a, &a2t, NULL, NULL);
    free(au), free(tx), free(ids), free(ta);
    *r1 = t2a.r1;
    return t2a.map10;
}

/* teacher m's two embedding streams (audio, text), loaded; their width */
static int load_teacher(const char *spec, int m, embset es[2], char *paths[2]) {
    char *s = xstrdup(spec), *comma = strchr(s, ',');
    if (!comma) die_usage("--teacher %s: give AUDIO.mp,TEXT.mp", spec);
    *comma = 0;
    paths[0] = s, paths[1] = comma + 1;
    char err[700];
    for (int j = 0; j < 2; j++) {
        if (embset_load(&es[j], paths[j], 0, err, sizeof err)) die("teacher %d: %s", m + 1, err);
        if (es[j].skipped) die("teacher %d: %s: %ld records without a usable embedding", m + 1, paths[j], es[j].skipped);
    }
    /* a teacher may be of any width (only its cosines are used), but one width for both towers */
    if (es[0].dim != es[1].dim)
        die("teacher %d: %s has %d-wide embeddings, %s %d-wide", m + 1, paths[0], es[0].dim, paths[1], es[1].dim);
    return es[0].dim;
}

/* teacher m's embeddings of every item: ta[i, m, :Dt], tt[i, m, :Dt], zero-padded
 * past the teacher's own width (zeros change neither norms nor dot products) */
static void fill_teacher(embset es[2], char *paths[2], int m, int M, int Dt, item *it, int nit, const clip *clips,
                         float *ta, float *tt) {
    int E = es[0].dim;
    long missing = 0;
    for (int i = 0; i < nit; i++) {
        const char *ak = clips[it[i].audio].key;
        int a = -1, t = -1;
        for (int k = 0; k < es[0].n && a < 0; k++)
            if (!strcmp(es[0].keys[k], ak)) a = k;
        for (int k = 0; k < es[1].n && t < 0; k++) /* SALSA keys its teacher captions by the caption text */
            if (es[1].texts[k] && !strcmp(es[1].texts[k], it[i].text)) t = k;
        if (a < 0 || t < 0) {
            if (missing++ < 10)
                warnx_("teacher %d: %s '%s' (item %d, caption key '%s') is not in %s", m + 1, a < 0 ? "audio" : "caption",
                       a < 0 ? ak : it[i].text, i + 1, it[i].key, a < 0 ? paths[0] : paths[1]);
            continue;
        }
        memcpy(ta + ((size_t)i * M + m) * Dt, es[0].x + (size_t)a * E, (size_t)E * sizeof(float));
        memcpy(tt + ((size_t)i * M + m) * Dt, es[1].x + (size_t)t * E, (size_t)E * sizeof(float));
    }
    if (missing) die("teacher %d: %ld items have no teacher embedding", m + 1, missing);
}

typedef struct {
    long step;
    int epoch, batch; /* the next batch to run */
} position;

/* the audio tower's tensor i, whichever the tower */
typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    size_t off, numel;
    int buffer; /* a running statistic (CNN14's BatchNorm): in the buffer block, no moments */
} atensor;
static int at_ntensors(const atower *A) { return A->cnn ? A->cnn->ntensors : A->pt->ntensors; }
static atensor at_t(const atower *A, int i) {
    atensor r;
    if (A->cnn) {
        const cnn14t_tensor *t = &A->cnn->t[i];
        r = (atensor){t->name, t->ndim, t->shape, t->off, t->numel, t->buffer};
    } else {
        const passtt_tensor *t = &A->pt->t[i];
        r = (atensor){t->name, t->ndim, t->shape, t->off, t->numel, 0};
    }
    return r;
}
static int at_find(const atower *A, const char *name) {
    return A->cnn ? cnn14t_find(A->cnn, name) : passtt_find(A->pt, name);
}

/* the trained model file: every tensor of the input file, the trained ones
 * replaced; with moments (a checkpoint), AdamW's state and the position too */
static void write_model(const char *out, const char *init, const char *init_name, atower *A, bertt *Tx,
                        const clap_train_opts *o, long steps, float *const mom[4], const position *pos, int nitems) {
    char err[700];
    st_file *f = st_open(init, err, sizeof err);
    if (!f) die("%s", err);
    int n = st_count(f), nx = mom ? 2 * (at_ntensors(A) + Tx->ntensors) : 0;
    ckpt_tensor *ct = xcalloc((size_t)(n + nx), sizeof *ct);
    int nt = 0;
    for (int i = 0; i < n; i++) {
        st_tensor t;
        const char *name = st_name(f, i);
        if (!strncmp(name, "train.", 6)) continue; /* a resumed checkpoint's own state */
        if (st_get(f, name, &t, err, sizeof err)) die("%s", err);
        if (t.ndim > 4) die("%s: tensor '%s' has %d dimensions", init, name, t.ndim);
        ckpt_tensor *c = &ct[nt++];
        c->name = name, c->dtype = t.dtype, c->ndim = t.ndim, c->data = t.data;
        for (int d = 0; d < t.ndim; d++) c->shape[d] = t.shape[d];
        int k = at_find(A, name);
        if (k >= 0) c->data = (at_t(A, k).buffer ? A->cnn->buffers : A->params) + at_t(A, k).off;
        else if ((k = bertt_find(Tx, name)) >= 0) c->data = Tx->params + Tx->t[k].off;
    }
    char **names = NULL;
    int nn = 0;
    if (mom) {
        names = xcalloc((size_t)nx, sizeof *names);
        for (int side = 0; side < 2; side++) {
            int cnt = side ? Tx->ntensors : at_ntensors(A);
            for (int i = 0; i < cnt; i++) {
                const char *nm = side ? Tx->t[i].name : at_t(A, i).name;
                size_t off = side ? Tx->t[i].off : at_t(A, i).off;
                int ndim = side ? Tx->t[i].ndim : at_t(A, i).ndim;
                if (!side && at_t(A, i).buffer) continue;
                for (int j = 0; j < 2; j++) {
                    size_t len = strlen(nm) + 20;
                    char *full = xmalloc(len);
                    snprintf(full, len, "train.%s.%s", j ? "exp_avg_sq" : "exp_avg", nm);
                    names[nn++] = full;
                    ckpt_tensor *c = &ct[nt++];
                    c->name = full, c->dtype = ST_F32, c->ndim = ndim;
                    for (int d = 0; d < ndim; d++) c->shape[d] = side ? Tx->t[i].shape[d] : at_t(A, i).shape[d];
                    c->data = mom[2 * side + j] + off;
                }
            }
        }
    }
    int nm = st_meta_count(f);
    const char **meta = xcalloc((size_t)(2 * nm + 20), sizeof *meta);
    int k = 0;
    for (int i = 0; i < nm; i++) {
        const char *key = st_meta_key(f, i);
        if (!strncmp(key, "clap.train.", 11)) continue;
        meta[2 * k] = key, meta[2 * k + 1] = st_meta(f, key), k++;
    }
    char st[32], src[512], ep[32], ba[32], sd[32], bs[32], ni[32];
    snprintf(st, sizeof st, "%ld", steps);
    snprintf(src, sizeof src, "%s", init_name);
    meta[2 * k] = "clap.train.steps", meta[2 * k + 1] = st, k++;
    meta[2 * k] = "clap.train.init", meta[2 * k + 1] = src, k++;
    meta[2 * k] = "clap.train.stage", meta[2 * k + 1] = o->nteachers ? "2" : "1", k++;
    if (pos) {
        snprintf(ep, sizeof ep, "%d", pos->epoch), snprintf(ba, sizeof ba, "%d", pos->batch);
        snprintf(sd, sizeof sd, "%ld", o->seed), snprintf(bs, sizeof bs, "%d", o->bs), snprintf(ni, sizeof ni, "%d", nitems);
        meta[2 * k] = "clap.train.epoch", meta[2 * k + 1] = ep, k++;
        meta[2 * k] = "clap.train.batch", meta[2 * k + 1] = ba, k++;
        meta[2 * k] = "clap.train.seed", meta[2 * k + 1] = sd, k++;
        meta[2 * k] = "clap.train.bs", meta[2 * k + 1] = bs, k++;
        meta[2 * k] = "clap.train.items", meta[2 * k + 1] = ni, k++;
    }
    if (ckpt_write(out, ct, nt, meta, k, err, sizeof err)) die("%s: %s", out, err);
    for (int i = 0; i < nn; i++) free(names[i]);
    free(names), free(ct), free(meta);
    st_close(f);
}

/* the summed gradients of the step just run, every parameter of both towers
 * under its published name (--save-grads: tests compare them with PyTorch) */
static void write_grads(const char *out, const atower *A, const bertt *Tx) {
    int na = at_ntensors(A), n = 0;
    ckpt_tensor *ct = xcalloc((size_t)(na + Tx->ntensors), sizeof *ct);
    for (int i = 0; i < na + Tx->ntensors; i++) {
        int side = i >= na, j = side ? i - na : i;
        if (!side && at_t(A, j).buffer) continue;
        ckpt_tensor *c = &ct[n++];
        c->name = side ? Tx->t[j].name : at_t(A, j).name;
        c->dtype = ST_F32, c->ndim = side ? Tx->t[j].ndim : at_t(A, j).ndim;
        for (int d = 0; d < c->ndim; d++) c->shape[d] = side ? Tx->t[j].shape[d] : at_t(A, j).shape[d];
        c->data = side ? Tx->grads + Tx->t[j].off : A->grads + at_t(A, j).off;
    }
    char err[700];
    if (ckpt_write(out, ct, n, NULL, 0, err, sizeof err)) die("%s: %s", out, err);
    free(ct);
}

static long meta_long(st_file *f, const char *path, const char *key) {
    long v;
    if (st_meta_int(f, key, &v)) die("%s: no integer %s in __metadata__: not a clap-train checkpoint", path, key);
    return v;
}

/* AdamW's moments and the position from a checkpoint */
static void read_state(const char *path, atower *A, bertt *Tx, float *const mom[4], position *pos, const clap_train_opts *o,
                       int nitems) {
    char err[700];
    st_file *f = st_open(path, err, sizeof err);
    if (!f) die("%s", err);
    pos->step = meta_long(f, path, "clap.train.steps");
    pos->epoch = (int)meta_long(f, path, "clap.train.epoch");
    pos->batch = (int)meta_long(f, path, "clap.train.batch");
    if (meta_long(f, path, "clap.train.seed") != o->seed || meta_long(f, path, "clap.train.bs") != o->bs ||
        meta_long(f, path, "clap.train.items") != nitems)
        die("%s: made with another --seed, --bs or item list (seed %ld, bs %ld, %ld items; now %ld, %d, %d)", path,
            meta_long(f, path, "clap.train.seed"), meta_long(f, path, "clap.train.bs"),
            meta_long(f, path, "clap.train.items"), o->seed, o->bs, nitems);
    for (int side = 0; side < 2; side++) {
        int cnt = side ? Tx->ntensors : at_ntensors(A);
        for (int i = 0; i < cnt; i++) {
            if (!side && at_t(A, i).buffer) continue;
            const char *nm = side ? Tx->t[i].name : at_t(A, i).name;
            for (int j = 0; j < 2; j++) {
                char full[300];
                snprintf(full, sizeof full, "train.%s.%s", j ? "exp_avg_sq" : "exp_avg", nm);
                st_tensor t;
                if (st_get(f, full, &t, err, sizeof err) || t.dtype != ST_F32 ||
                    t.numel != (side ? Tx->t[i].numel : at_t(A, i).numel))
                    die("%s: tensor '%s' missing or of the wrong size", path, full);
                memcpy(mom[2 * side + j] + (side ? Tx->t[i].off : at_t(A, i).off), t.data, t.nbytes);
            }
        }
    }
    st_close(f);
}

/* the new model's file while it is only the start of a run (no --save-init) */
static char new_tmp[4200];
static void remove_new_tmp(void) {
    if (new_tmp[0]) unlink(new_tmp);
}

int clap_train_run(const clap_train_opts *o) {
    char err[700];
    const char *src = o->resume ? o->resume : o->init; /* the weights to start from */
    char init_name[600];
    snprintf(init_name, sizeof init_name, "%s", o->init ? o->init : o->resume ? o->resume : "");
    if (o->new_model && !o->resume) {
        /* a new model: written as a model file, then trained as --init would
         * train it (write_model copies its tokenizer and metadata) */
        uint64_t seed = (uint64_t)(o->init_seed >= 0 ? o->init_seed : o->seed);
        char source[64];
        snprintf(source, sizeof source, "clap-train --new --init-seed %llu", (unsigned long long)seed);
        if (o->save_init) {
            src = o->save_init;
        } else {
            snprintf(new_tmp, sizeof new_tmp, "%s.new.%ld", o->out, (long)getpid());
            atexit(remove_new_tmp);
            src = new_tmp;
        }
        if (clap_new_write(src, &o->sizes, o->vocab, seed, source, err, sizeof err)) die("%s", err);
        snprintf(init_name, sizeof init_name, "%s%s%s", source, o->save_init ? ", saved as " : "",
                 o->save_init ? o->save_init : "");
        if (!tool_quiet && o->save_init) infox("new model written to %s", o->save_init);
        if (!o->mel && !o->audio_list) return EXIT_OK; /* --save-init alone */
    }
    gemm_init(o->threads);
    atower Aw, *A = &Aw;
    at_load(A, src);
    cnn14t *Ac = A->cnn; /* NULL for SALSA's PaSST-RoBERTa */
    bertt *Tx = bertt_load(src, err, sizeof err);
    if (!Tx) die("%s", err);
    if (A->embed != Tx->c.embed) die("%s: audio and text embeddings differ in width (%d, %d)", src, A->embed, Tx->c.embed);
    if (Ac && o->micro_bs)
        die("--micro-bs: CNN14's BatchNorm takes its statistics over the whole batch, so micro-batches would change "
            "the model (a PaSST-RoBERTa option)");
    if (!Ac && o->frames) die("--frames: PaSST takes the stream's 10-s segments whole (a CNN14-BERT option)");
    if (o->text_dropout >= 0) Tx->hidden_dropout = (float)o->text_dropout;
    if (o->text_attn_dropout >= 0) Tx->attn_dropout = (float)o->text_attn_dropout;
    if (A->pt) {
        passtt *P = A->pt;
        P->s_patchout_t = o->patchout_t, P->s_patchout_f = o->patchout_f;
        P->drop_rate = (float)o->drop_rate, P->attn_drop_rate = (float)o->attn_drop_rate;
        P->drop_path_rate = (float)o->drop_path_rate, P->recompute = o->recompute;
        if (!o->augment) P->s_patchout_t = P->s_patchout_f = 0, P->drop_rate = P->attn_drop_rate = P->drop_path_rate = 0;
    }
    if (!o->augment) {
        if (Ac) Ac->dropout = 0, Ac->specaug = 0;
        Tx->hidden_dropout = Tx->attn_dropout = 0;
    }
    int E = A->embed, M = A->n_mels;
    int R = dist_size(), me = dist_rank(), lead = me == 0;
    if (o->bs % R) die("--bs %d does not split over %d ranks: give a multiple of %d", o->bs, R, R);
    if (R > 1 && Ac) batchnorm_set_reduce(dist_sum_d); /* the whole batch's statistics on every rank */

    /* the tokenizer the model file carries */
    st_file *f = st_open(src, err, sizeof err);
    if (!f) die("%s", err);
    tokenizer tk = {0};
    if (Tx->c.arch == BERT_ARCH_ROBERTA) {
        if (!(tk.bp = salsa_tokenizer_load(f, &Tx->c, &tk.pre, err, sizeof err))) die("%s", err);
    } else {
        st_tensor vt;
        if (!st_get_as(f, "tokenizer.vocab", ST_U8, 1, NULL, err, sizeof err) ||
            st_get(f, "tokenizer.vocab", &vt, err, sizeof err))
            die("%s", err);
        tk.wp = wp_load(vt.data, vt.nbytes, err, sizeof err);
        if (!tk.wp) die("%s: tensor 'tokenizer.vocab': %s", src, err);
    }
    st_close(f);

    int nclips = 0;
    clip *clips;
    audio_opts ao;
    pmel_config pc;
    pmel_state *ps = NULL;
    audio_buf ab = {0};
    if (o->audio_list) {
        if (Ac) die("--audio-list: a PaSST-RoBERTa option (CNN14-BERT trains on a wav2mel stream, --mel)");
        audio_opts_default(&ao);
        ao.sr = A->sr ? A->sr : 32000;
        /* hear21passt's AugmentMelSTFT as models/audio/passt.py builds it, the model's bins, hop and rate */
        pmel_config_default(&pc);
        pc.n_mels = M, pc.hop = A->hop, pc.sr = ao.sr;
        const char *why = pmel_config_check(&pc);
        if (why) die("%s: the PaSST front end for this model: %s", src, why);
        ps = pmel_init(&pc);
        clips = read_audio_list(o->audio_list, A, &ao, &nclips);
    } else {
        clips = read_mels(o->mel, M, &nclips, A);
    }
    const char *clipsrc = o->audio_list ? o->audio_list : o->mel;
    int frames = o->frames;
    if (!frames)
        for (int i = 0; i < nclips; i++) frames = clips[i].T > frames ? clips[i].T : frames;
    if (Ac && frames < (1 << Ac->nblocks)) die("%d frames are too few for %d ConvBlocks (--frames)", frames, Ac->nblocks);

    /* the items, in caption-file order */
    int nit = 0;
    item *it = read_items(o->captions, o->csv, clips, nclips, clipsrc, &tk, Tx->c.max_len, &nit);
    clip *vclips = NULL;
    item *vit = NULL;
    int nvclips = 0, nvit = 0;
    double best = -1;
    char bestpath[4096];
    snprintf(bestpath, sizeof bestpath, "%s.best", o->out);
    if (o->val) {
        char *v = xstrdup(o->val), *comma = strchr(v, ',');
        if (!comma) die_usage("--val %s: give MEL.mp,CAPTIONS", o->val);
        *comma = 0;
        vclips = read_mels(v, M, &nvclips, A);
        for (int i = 0; i < nvclips && Ac; i++)
            if (vclips[i].T < (1 << Ac->nblocks)) die("%s: key '%s': %d frames, fewer than %d", v, vclips[i].key, vclips[i].T, 1 << Ac->nblocks);
        vit = read_items(comma + 1, o->csv, vclips, nvclips, v, &tk, Tx->c.max_len, &nvit);
        free(v);
    }
    if (nit < o->bs) die("%d items, fewer than one batch of %d", nit, o->bs);

    /* teachers (stage 2) */
    int MT = o->nteachers;
    float *ta = NULL, *tt = NULL;
    int Dt = 0; /* the widest teacher's width: the others zero-padded to it */
    if (MT) {
        embset(*tes)[2] = xcalloc((size_t)MT, sizeof *tes);
        char *(*tpaths)[2] = xcalloc((size_t)MT, sizeof *tpaths);
        for (int m = 0; m < MT; m++) {
            int w = load_teacher(o->teacher[m], m, tes[m], tpaths[m]);
            if (w > Dt) Dt = w;
        }
        ta = xcalloc((size_t)nit * MT * Dt, sizeof(float)), tt = xcalloc((size_t)nit * MT * Dt, sizeof(float));
        for (int m = 0; m < MT; m++) {
            fill_teacher(tes[m], tpaths[m], m, MT, Dt, it, nit, clips, ta, tt);
            embset_free(&tes[m][0]), embset_free(&tes[m][1]);
            free(tpaths[m][0]);
        }
        free(tes), free(tpaths);
    }
    double wsup = o->loss_weight, wdist = o->distill_weight;
    if (MT && wdist > 0 && o->quirk) wsup = o->loss_weight * o->loss_weight;
    if (!MT) wdist = 0;

    /* optimiser state: the four groups are contiguous ranges of the two blocks */
    size_t ahead = A->head, thead = Tx->t[bertt_head(Tx)].off;
    float *am = xcalloc(A->nparams, sizeof(float)), *av = xcalloc(A->nparams, sizeof(float));
    float *tm = xcalloc(Tx->nparams, sizeof(float)), *tv = xcalloc(Tx->nparams, sizeof(float));
    float *const mom[4] = {am, av, tm, tv};
    position pos = {0, 0, 0};
    if (o->resume) read_state(o->resume, A, Tx, mom, &pos, o, nit);
    const char *ckpt = o->ckpt;
    char ckdef[4096];
    if (!ckpt) {
        snprintf(ckdef, sizeof ckdef, "%s.ckpt", o->out);
        ckpt = ckdef;
    }
    int stopped = 0;

    int B = o->bs, nb = nit / B, Lsum, Bl = B / R, j0 = me * Bl; /* this rank's items: j0 .. j0+Bl-1 of a batch */
    float *mel = xmalloc((size_t)(Ac ? Bl : 1) * frames * M * sizeof(float)), *ea = xmalloc((size_t)B * E * sizeof(float)),
          *et = xmalloc((size_t)B * E * sizeof(float)), *da = xmalloc((size_t)B * E * sizeof(float)),
          *dt = xmalloc((size_t)B * E * sizeof(float)), *eal = xmalloc((size_t)Bl * E * sizeof(float)),
          *etl = xmalloc((size_t)Bl * E * sizeof(float));
    float *bta = MT ? xmalloc((size_t)B * MT * Dt * sizeof(float)) : NULL;
    float *btt = MT ? xmalloc((size_t)B * MT * Dt * sizeof(float)) : NULL;
    int32_t *bids = xmalloc((size_t)Bl * Tx->c.max_len * sizeof(int32_t));
    int *blen = xmalloc((size_t)B * sizeof(int)), *aid = xmalloc((size_t)B * sizeof(int)), *perm = xmalloc((size_t)nit * sizeof(int));
    uint64_t *dka = xmalloc((size_t)Bl * sizeof(uint64_t)), *dkt = xmalloc((size_t)Bl * sizeof(uint64_t));
    const clip **bcl = xmalloc((size_t)Bl * sizeof *bcl); /* PaSST: this rank's clips of the batch */
    int *tof = xmalloc((size_t)(Bl + 1) * sizeof(int));    /* their captions' first token in bids */
    int mb = o->micro_bs && o->micro_bs < Bl ? o->micro_bs : Bl; /* items a micro-batch */
    /* --audio-list: this rank's clips' mels of the step */
    clip *wcl = o->audio_list ? xcalloc((size_t)Bl, sizeof *wcl) : NULL;
    float *wmel = o->audio_list ? xmalloc((size_t)Bl * A->nseg * A->S * M * sizeof(float)) : NULL;
    FILE *logf = NULL;
    if (o->log && lead) {
        if (!(logf = fopen(o->log, "w"))) die("cannot create %s: %m", o->log);
        fprintf(logf, "step\tepoch\tbatch\tloss\tl_sup\tl_dist\tlr_audio_encoder\tlr_text_encoder\tlr_audio_proj\t"
                      "lr_text_proj\tseconds\n");
    }
    if (!tool_quiet && lead && Ac)
        infox("%d clips, %d items, %d batches of %d a epoch, %d epochs, %d frames a clip%s%s", nclips, nit, nb, B,
              o->epochs, frames, MT ? ", distilling" : "", R > 1 ? ", split over the ranks" : "");
    if (!tool_quiet && lead && !Ac)
        infox("PaSST-RoBERTa: %d clips, %d items, %d batches of %d a epoch%s, %d epochs%s%s", nclips, nit, nb, B,
              mb < Bl ? " (micro-batches)" : "", o->epochs, MT ? ", distilling" : "", R > 1 ? ", split over the ranks" : "");
    if (!tool_quiet && lead && R > 1) infox("%d ranks, %d items each a batch", R, Bl);
    long step = pos.step;
    double t0 = now_seconds(); /* the log's seconds: wall time since training began (clock() summed the threads' CPU time) */
    if (o->resume && !tool_quiet) infox("resuming %s at epoch %d, batch %d (step %ld)", o->resume, pos.epoch + 1, pos.batch + 1, step);
    for (int ep = pos.epoch; ep < o->epochs && (!o->max_steps || step < o->max_steps) && !stopped; ep++) {
        for (int i = 0; i < nit; i++) perm[i] = i;
        if (o->shuffle) {
            xrng r;
            xrng_seed(&r, mix((uint64_t)o->seed) ^ mix((uint64_t)ep + 1));
            xrng_permutation(&r, perm, nit);
        }
        int b = ep == pos.epoch ? pos.batch : 0;
        for (; b < nb && (!o->max_steps || step < o->max_steps); b++) {
            Lsum = 0;
            for (int j = 0; j < B; j++) {
                const item *x = &it[perm[b * B + j]];
                aid[j] = x->audio; /* the whole batch's: the loss sees every item */
                if (MT) {
                    memcpy(bta + (size_t)j * MT * Dt, ta + (size_t)perm[b * B + j] * MT * Dt, (size_t)MT * Dt * sizeof(float));
                    memcpy(btt + (size_t)j * MT * Dt, tt + (size_t)perm[b * B + j] * MT * Dt, (size_t)MT * Dt * sizeof(float));
                }
            }
            for (int jl = 0; jl < Bl; jl++) {
                int j = j0 + jl;
                const item *x = &it[perm[b * B + j]];
                const clip *cl = &clips[x->audio];
                uint64_t key = mix(mix((uint64_t)o->seed) ^ mix(((uint64_t)ep << 32) | (uint64_t)perm[b * B + j]));
                tof[jl] = Lsum;
                if (!Ac) { /* PaSST: the clip's kept segments, whole (passt_clips_forward) */
                    bcl[jl] = cl;
                    if (o->audio_list) {
                        wcl[jl] = *cl;
                        wcl[jl].mel = wmel + (size_t)jl * A->nseg * A->S * M;
                        wave_mel(cl, A, &ao, &ab, ps, &pc, o->augment, o->crop, o->jitter, key, o->seed, wcl[jl].mel);
                        bcl[jl] = &wcl[jl];
                    }
                    memcpy(bids + Lsum, x->ids, (size_t)x->ntok * sizeof(int32_t));
                    blen[jl] = x->ntok, Lsum += x->ntok;
                    dka[jl] = key, dkt[jl] = mix(key);
                    continue;
                }
                float *dst = mel + (size_t)jl * frames * M;
                /* a longer clip: a window of `frames` frames at a random start, as WavCaps'
                 * AudioCaptionDataset crops the waveform to max_length (the first with
                 * --no-augment); a shorter one padded with silence, as its collate pads */
                int T = cl->T < frames ? cl->T : frames, c0 = 0;
                if (cl->T > frames && o->augment) c0 = (int)(mix(key ^ 0x63726f70ULL) % (uint64_t)(cl->T - frames + 1));
                memcpy(dst, cl->mel + (size_t)c0 * M, (size_t)T * M * sizeof(float));
                for (size_t q = (size_t)T * M; q < (size_t)frames * M; q++) dst[q] = -100.0f; /* log10(1e-10) dB: silence */
                memcpy(bids + Lsum, x->ids, (size_t)x->ntok * sizeof(int32_t));
                blen[jl] = x->ntok, Lsum += x->ntok;
                dka[jl] = key, dkt[jl] = mix(key);
            }
            double lr[4];
            for (int g = 0; g < 4; g++)
                lr[g] = o->constant_lr ? o->lr[g]
                                       : salsa_lr(ep + (double)b / nb, o->lr[g], o->min_lr, o->warmup, o->ramp0, o->ramp1);
            tof[Bl] = Lsum;
            contrastive_out lo;
            if (Ac) {
                cnn14t_forward_train(Ac, eal, mel, Bl, frames, o->augment ? dka : NULL);
                bertt_forward_train(Tx, etl, bids, blen, Bl, o->augment ? dkt : NULL);
                dist_allgather(ea, eal, (size_t)Bl * E), dist_allgather(et, etl, (size_t)Bl * E);
                lo = contrastive_loss(da, dt, ea, et, aid, bta, btt, MT, Dt, B, E, (float)o->tau, wsup, wdist);
                if (!isfinite(lo.total)) die("step %ld: the loss is not finite (%g)", step + 1, lo.total);
                cnn14t_backward(Ac, da + (size_t)j0 * E); /* this rank's rows */
                bertt_backward(Tx, dt + (size_t)j0 * E);
            } else {
                /* The gradient cache: every micro-batch's embeddings first (only the
                 * last one's activations survive), the loss and dL/de of the whole
                 * batch once, then each micro-batch again, forward with the same keys
                 * (the same masks and patchout: the same embeddings) and backward with
                 * its rows of dL/de; the gradients add up to the unsplit batch's (no
                 * BatchNorm: items are independent). One micro-batch: the plain step. */
                for (int c0 = 0; c0 < Bl; c0 += mb) {
                    int n = Bl - c0 < mb ? Bl - c0 : mb;
                    passt_clips_forward(A, eal + (size_t)c0 * E, bcl + c0, n, o->augment ? dka + c0 : NULL);
                    bertt_forward_train(Tx, etl + (size_t)c0 * E, bids + tof[c0], blen + c0, n, o->augment ? dkt + c0 : NULL);
                }
                dist_allgather(ea, eal, (size_t)Bl * E), dist_allgather(et, etl, (size_t)Bl * E);
                lo = contrastive_loss(da, dt, ea, et, aid, bta, btt, MT, Dt, B, E, (float)o->tau, wsup, wdist);
                if (!isfinite(lo.total)) die("step %ld: the loss is not finite (%g)", step + 1, lo.total);
                int last = (Bl - 1) / mb * mb; /* the micro-batch whose activations are kept */
                for (int c0 = last; c0 >= 0; c0 -= mb) {
                    int n = Bl - c0 < mb ? Bl - c0 : mb;
                    if (c0 != last) {
                        passt_clips_forward(A, eal + (size_t)c0 * E, bcl + c0, n, o->augment ? dka + c0 : NULL);
                        bertt_forward_train(Tx, etl + (size_t)c0 * E, bids + tof[c0], blen + c0, n,
                                            o->augment ? dkt + c0 : NULL);
                    }
                    passt_clips_backward(A, da + (size_t)(j0 + c0) * E); /* this rank's rows */
                    bertt_backward(Tx, dt + (size_t)(j0 + c0) * E);
                }
            }
            dist_sum(A->grads, A->nparams), dist_sum(Tx->grads, Tx->nparams);
            if (o->save_grads && step == pos.step && lead) write_grads(o->save_grads, A, Tx);
            adamw_torch_step(A->params, A->grads, am, av, ahead, step + 1, lr[0], o->b1, o->b2, o->eps, o->wd);
            adamw_torch_step(A->params + ahead, A->grads + ahead, am + ahead, av + ahead, A->nparams - ahead, step + 1,
                             lr[2], o->b1, o->b2, o->eps, o->wd);
            adamw_torch_step(Tx->params, Tx->grads, tm, tv, thead, step + 1, lr[1], o->b1, o->b2, o->eps, o->wd);
            adamw_torch_step(Tx->params + thead, Tx->grads + thead, tm + thead, tv + thead, Tx->nparams - thead,
                             step + 1, lr[3], o->b1, o->b2, o->eps, o->wd);
            double t1 = now_seconds();
            if (logf) {
                fprintf(logf, "%ld\t%d\t%d\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%.3f\n", step + 1, ep + 1, b + 1,
                        lo.total, lo.sup, lo.dist, lr[0], lr[1], lr[2], lr[3], t1 - t0);
                fflush(logf);
            }
            if (tool_verbose && lead) infox("step %ld (epoch %d, batch %d/%d): loss %.6f", step + 1, ep + 1, b + 1, nb, lo.total);
            step++;
            if (dist_max(o->stop && *o->stop)) { /* every rank stops after the same step */
                stopped = 1;
                b++;
                break;
            }
        }
        if (o->val && b >= nb && lead) {
            double r1, map = validate(A, Tx, vclips, nvclips, vit, nvit, &r1);
            if (!tool_quiet) infox("epoch %d: validation mAP@10 %.4f, R@1 %.4f (%d captions, %d clips)%s", ep + 1, map, r1,
                                   nvit, nvclips, map > best ? ", the best so far" : "");
            if (logf) fprintf(logf, "# epoch %d\tval_map10\t%.6f\tval_r1\t%.6f\n", ep + 1, map, r1), fflush(logf);
            if (map > best) {
                best = map;
                write_model(bestpath, src, init_name, A, Tx, o, step, NULL, NULL, nit);
            }
        }
        /* the position after the last step run: the next batch, or the next epoch's first */
        position here = {step, b < nb ? ep : ep + 1, b < nb ? b : 0};
        if ((o->ckpt || stopped) && lead) {
            write_model(ckpt, src, init_name, A, Tx, o, step, mom, &here, nit);
            if (!tool_quiet && (stopped || tool_verbose)) infox("checkpoint %s at step %ld", ckpt, step);
        }
    }
    if (logf && fclose(logf)) die("%s: write failed", o->log);
    if (stopped && lead) {
        warnx_("stopped by a signal after step %ld; resume with --resume %s", step, ckpt);
    } else if (lead) {
        write_model(o->out, src, init_name, A, Tx, o, step, NULL, NULL, nit);
        if (!tool_quiet) infox("%ld steps; model written to %s", step, o->out);
    }

    for (int i = 0; i < nclips; i++) free(clips[i].key), free(clips[i].mel), free(clips[i].path);
    free(wcl), free(wmel);
    audio_free(&ab);
    if (ps) pmel_free(ps);
    for (int i = 0; i < nvclips; i++) free(vclips[i].key), free(vclips[i].mel);
    for (int i = 0; i < nvit; i++) free(vit[i].ids), free(vit[i].text), free(vit[i].key);
    free(vclips), free(vit);
    for (int i = 0; i < nit; i++) free(it[i].ids), free(it[i].text), free(it[i].key);
    free(clips), free(it), free(ta), free(tt), free(am), free(av), free(tm), free(tv), free(mel), free(ea),
        free(et), free(da), free(dt), free(bta), free(btt), free(bids), free(blen), free(aid), free(perm), free(dka),
        free(dkt), free(eal), free(etl), free(bcl), free(tof);
    if (R > 1 && Ac) batchnorm_set_reduce(NULL);
    if (tk.wp) wp_free(tk.wp);
    if (tk.bp) bpe_free(tk.bp);
    at_free(A);
    bertt_free(Tx);
    return stopped ? EXIT_FATAL : EXIT_OK;
}
