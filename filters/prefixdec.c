/* prefixdec - train the WSAC prefix decoder on CLAP text embeddings, and
 * decode captions from embeddings (../shared/reference/wsac.md C, D). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "gpt.h"
#include "parfor.h"
#include "safetensors.h"
#include "stream.h"
#include "train.h"
#include "util.h"
#include "wordpiece.h"

static const char usage[] =
    "Usage: prefixdec train [OPTIONS] -o MODEL [STREAM]\n"
    "       prefixdec decode -m MODEL [OPTIONS] [STREAM]\n"
    "The WSAC prefix decoder: a Linear map from a CLAP embedding to a one-token prefix,\n"
    "then a GPT-2 over BERT WordPiece ids. `train` learns it from a clap-text stream\n"
    "(records with \"emb\" and \"text\"); `decode` reads an embedding stream and writes\n"
    "KEY<TAB>CAPTION lines. STREAM defaults to standard input.\n"
    "\n"
    "decode:\n"
    "  -m, --model FILE       decoder model (convert.py decoder, or prefixdec train)\n"
    "      --beam K           beam search with K beams, length-normalised (1: greedy, default)\n"
    "      --max-len N        generate at most N tokens, [CLS] and [SEP] included (30, or\n"
    "                         the model's positions if fewer)\n"
    "      --ids              print the generated ids instead of the caption\n"
    "      --batch N          decode up to N records at once (128; with --beam K, 128/K)\n"
    "\n"
    "train (defaults are the published train.py's):\n"
    "  -o, --output FILE      checkpoint, rewritten atomically after every epoch (required)\n"
    "      --val FILE         validation stream: loss reported after every epoch\n"
    "      --epochs N         (30)\n"
    "      --bs N             batch size (64); the last partial batch is dropped\n"
    "      --lr X             peak learning rate (1e-5)\n"
    "      --warmup STEPS     linear warm-up steps, then linear decay to 0 (100)\n"
    "      --wd X             AdamW decoupled weight decay, every parameter (0.02)\n"
    "      --noise VAR        noise variance: std = sqrt(VAR) per dimension (0.001; 0: off)\n"
    "      --gap FILE         modality-gap vector (a stream whose first record has \"emb\")\n"
    "      --dropout P        GPT-2 dropout while training: embeddings, attention, residuals\n"
    "                         (0.1, the published config in train mode; 0: off)\n"
    "      --max-seq-len N    targets per caption: [CLS] ids [SEP], padded or cut (22)\n"
    "      --seed N           shuffling, noise and initialisation (0)\n"
    "      --shuffle MODE     epoch: reshuffle every epoch (default); once: one shuffle\n"
    "                         (published); none: stream order\n"
    "      --init MODEL       start from this model's weights (fresh optimizer)\n"
    "      --resume FILE      continue a checkpoint exactly (its options, data position)\n"
    "      --log FILE         per-step TSV log: step, epoch, batch, loss, lr, tokens, seconds\n"
    "      --vocab FILE       WordPiece vocab.txt (default: the model's, or the built-in\n"
    "                         bert-base-uncased)\n"
    "  a new model (without --init):\n"
    "      --layers N (4)  --heads N (4)  --width N (768)  --positions N (1024)\n"
    "      --vocab-size N     rows of the token embedding (default: the vocabulary's size)\n"
    "\n"
    "both:\n"
    "  -j, --threads N        threads for matrix products and kernels (default: all cores)\n"
    "  -v, --verbose          decode: a closing line with time per caption and GFLOP/s\n"
    "  -q, --quiet            no progress or summary (errors are still printed)\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 done, 1 usage error, 2 fatal (unreadable model or stream, failed\n"
    "write), 3 some records failed or were skipped (each named on stderr).\n";

static int threads;

static void set_threads(void) {
    threads = gpt_set_threads(threads);
}

/* ================================================================ vocabulary */

typedef struct {
    wordpiece *wp;
    char *bytes; /* owned copy (kept for checkpoints) */
    size_t len;
    char from[300];
} vocab_t;

static void vocab_set(vocab_t *v, const char *bytes, size_t len, const char *from) {
    char err[300];
    v->bytes = xmalloc(len + 1);
    memcpy(v->bytes, bytes, len);
    v->len = len;
    snprintf(v->from, sizeof v->from, "%s", from);
    v->wp = wp_load(v->bytes, len, err, sizeof err);
    if (!v->wp) die("vocabulary %s: %s", from, err);
}

static void vocab_file(vocab_t *v, const char *path) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) die("%s: %s", path, strerror(errno));
    size_t cap = 1 << 20, n = 0;
    char *buf = xmalloc(cap);
    for (;;) {
        if (n == cap) buf = xrealloc(buf, cap *= 2);
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0) die("%s: %s", path, strerror(errno));
        if (r == 0) break;
        n += (size_t)r;
    }
    close(fd);
    vocab_set(v, buf, n, path);
    free(buf);
}

/* tokenizer.vocab of a model file, if present */
static int vocab_model(vocab_t *v, st_file *f) {
    st_tensor t;
    char err[300];
    if (st_get(f, "tokenizer.vocab", &t, err, sizeof err)) return -1;
    if (t.dtype != ST_U8 || t.ndim != 1) die("%s: tensor 'tokenizer.vocab' is not a U8 byte string", st_path(f));
    char from[300];
    snprintf(from, sizeof from, "of %s", st_path(f));
    vocab_set(v, t.data, t.nbytes, from);
    return 0;
}

static void vocab_free(vocab_t *v) {
    wp_free(v->wp);
    free(v->bytes);
}

/* every train.* tensor is training state that decoding does not need */
static void mark_train_tensors(st_file *f) {
    st_tensor t;
    char err[300];
    for (int i = 0; i < st_count(f); i++)
        if (!strncmp(st_name(f, i), "train.", 6)) st_get(f, st_name(f, i), &t, err, sizeof err);
}

static void emb_shape_hint(char *buf, size_t n, const gpt_config *c) {
    snprintf(buf, n, "the model's prefix projection clap_project.model.0.weight is [%d, %d]", c->C, c->E);
}

/* ================================================================ decode */

/* Records are read on a thread of their own, so a batch takes whatever has
 * arrived: a slow upstream still gets its captions one by one, a fast one in
 * batches. */
typedef struct {
    ws_reader *r;
    ws_record *q;
    int cap, head, count, done, status;
    pthread_mutex_t mu;
    pthread_cond_t more, room;
} rqueue;

static void *reader_main(void *arg) {
    rqueue *q = arg;
    for (;;) {
        ws_record rec;
        int st = ws_reader_next(q->r, &rec);
        pthread_mutex_lock(&q->mu);
        if (st != WS_RECORD) {
            q->done = 1;
            q->status = st;
            pthread_cond_signal(&q->more);
            pthread_mutex_unlock(&q->mu);
            return NULL;
        }
        while (q->count == q->cap) pthread_cond_wait(&q->room, &q->mu);
        q->q[(q->head + q->count++) % q->cap] = rec;
        pthread_cond_signal(&q->more);
        pthread_mutex_unlock(&q->mu);
    }
}

/* up to max records; 0 at the end of input. Once a record is there, wait at
 * most 20 ms for the batch to fill: a file arrives as full batches, a slow
 * upstream still gets each caption soon after its embedding. */
static int rqueue_take(rqueue *q, ws_record *out, int max) {
    pthread_mutex_lock(&q->mu);
    while (q->count == 0 && !q->done) pthread_cond_wait(&q->more, &q->mu);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 20 * 1000000L;
    if (until.tv_nsec >= 1000000000L) until.tv_sec++, until.tv_nsec -= 1000000000L;
    while (q->count < max && q->count < q->cap && !q->done)
        if (pthread_cond_timedwait(&q->more, &q->mu, &until) == ETIMEDOUT) break;
    int n = 0;
    while (n < max && q->count > 0) {
        out[n++] = q->q[q->head];
        q->head = (q->head + 1) % q->cap;
        q->count--;
    }
    pthread_cond_signal(&q->room);
    pthread_mutex_unlock(&q->mu);
    return n;
}

typedef struct {
    int beam, max_len, ids, batch, max_len_given;
    const char *model, *vocab;
} decode_opts;

static int decode_main(decode_opts *o, const char *input) {
    char err[600], hint[200];
    if (!o->model) die_usage("decode needs a model: -m FILE");
    set_threads();
    st_file *f = st_open(o->model, err, sizeof err);
    if (!f) die("%s", err);
    gpt_config c;
    gpt_weights w;
    if (gpt_read_config(f, &c, err, sizeof err)) die("%s", err);
    gpt_weights_init(&w, c.L);
    if (gpt_load_weights(f, &c, &w, NULL, err, sizeof err)) die("%s", err);
    vocab_t v = {0};
    int has = vocab_model(&v, f) == 0;
    if (o->vocab) {
        if (has) vocab_free(&v);
        memset(&v, 0, sizeof v);
        vocab_file(&v, o->vocab);
    } else if (!has) {
        die("%s has no tokenizer.vocab: give the vocabulary with --vocab FILE", o->model);
    }
    mark_train_tensors(f);
    if (st_check_all_used(f, err, sizeof err)) die("%s", err);
    int nv = wp_vocab_size(v.wp);
    if (nv > c.V)
        die("the vocabulary %s has %d tokens but the model's token embedding only %d rows", v.from, nv, c.V);
    if (!o->max_len_given && o->max_len > c.P) o->max_len = c.P; /* a small model: its positions */
    if (o->max_len > c.P)
        die_usage("--max-len %d exceeds the model's %d positions", o->max_len, c.P);
    /* ids the tokenizer does not know are never emitted (issue 4 point 1):
     * the search only looks at ids < nv */
    gpt_gen_opts go = {o->max_len, o->beam, nv, wp_sep(v.wp)};
    gpt_gen *g = gpt_gen_new(&c, &w, &go, o->batch);

    if (!input && isatty(0)) warnx_("reading an embedding stream from the terminal (see --help)");
    ws_reader *r = input ? ws_reader_open_path(input) : ws_reader_open_fd(0, "stdin");
    if (!r) die("%s: %s", input, strerror(errno));
    rqueue q = {.r = r, .cap = 4 * o->batch, .mu = PTHREAD_MUTEX_INITIALIZER, .more = PTHREAD_COND_INITIALIZER,
                .room = PTHREAD_COND_INITIALIZER};
    q.q = xmalloc((size_t)q.cap * sizeof(ws_record));
    pthread_t th;
    if (pthread_create(&th, NULL, reader_main, &q)) die("cannot start a thread");
    ws_record *recs = xmalloc((size_t)o->batch * sizeof(ws_record));
    int *keep = xmalloc((size_t)o->batch * sizeof(int));
    float *emb = xmalloc_aligned((size_t)o->batch * c.E * sizeof(float));
    int32_t *ids = xmalloc((size_t)o->batch * o->max_len * sizeof(int32_t));
    int *nids = xmalloc((size_t)o->batch * sizeof(int));
    long ok = 0, failed = 0, tokens = 0;
    double flops = 0, t0 = now_seconds();
    progress pr;
    progress_init(&pr, "records", -1);
    emb_shape_hint(hint, sizeof hint, &c);
    int n;
    while ((n = rqueue_take(&q, recs, o->batch)) > 0) {
        int m = 0;
        for (int i = 0; i < n; i++) {
            ws_record *rec = &recs[i];
            char nb[300], why[300];
            const char *name = ws_record_name(rec, nb, sizeof nb);
            keep[i] = 0;
            if (rec->err[0]) {
                warnx_("%s: %s", name, rec->err);
                failed++;
                continue;
            }
            const ws_tensor *t = ws_record_tensor(rec, "emb", DT_F32, 1, why, sizeof why);
            if (!t) {
                warnx_("%s: %s", name, why);
                failed++;
                continue;
            }
            if (t->shape[0] != c.E)
                die("%s: \"emb\" has %lld values but the model takes %d (%s): a different CLAP model?", name,
                    (long long)t->shape[0], c.E, hint);
            const float *x = t->data;
            int finite = 1;
            for (int k = 0; k < c.E; k++) finite &= isfinite(x[k]);
            if (!finite) {
                warnx_("%s: \"emb\" has NaN or infinite values: skipped", name);
                failed++;
                continue;
            }
            memcpy(emb + (size_t)m * c.E, x, (size_t)c.E * sizeof(float));
            keep[i] = 1;
            m++;
        }
        gpt_generate(g, emb, m, ids, nids);
        flops += gpt_gen_flops(g);
        for (int i = 0, j = 0; i < n; i++) {
            if (keep[i]) {
                const int32_t *t = ids + (size_t)j * o->max_len;
                int k = nids[j++];
                tokens += k;
                fputs(recs[i].key, stdout);
                putchar('\t');
                if (o->ids) {
                    for (int a = 0; a < k; a++) printf(a ? " %d" : "%d", t[a]);
                } else if (k > 2) {
                    /* evaluation.py prints tokenizer.decode(tokens[1:-1]): the
                     * first generated token ([CLS]) and the last ([SEP], or a
                     * real token at the length limit) are dropped; the slow BERT
                     * tokenizer keeps special tokens (a generated [UNK] prints as
                     * "[UNK]") and cleans up spaces before punctuation */
                    char *s = wp_decode_ex(v.wp, t + 1, k - 2, WP_DECODE_KEEP_SPECIAL | WP_DECODE_OOR_UNK);
                    fputs(s, stdout);
                    free(s);
                }
                putchar('\n');
                ok++;
            }
            ws_record_free(&recs[i]);
        }
        if (fflush(stdout) != 0) close_stdout_or_die();
        progress_update(&pr, ok + failed);
    }
    pthread_join(th, NULL);
    progress_end(&pr, ok + failed);
    if (q.status == WS_ERROR) {
        close_stdout_or_die();
        die("%s", ws_reader_error(r));
    }
    for (int i = 0; i < ws_reader_upstream_nfailed(r); i++) {
        warnx_("key '%s': failed upstream (no embedding to decode)", ws_reader_upstream_failed(r, i));
        failed++;
    }
    long upstream_unnamed = ws_reader_upstream_errors(r) - ws_reader_upstream_nfailed(r);
    if (upstream_unnamed > 0) failed += upstream_unnamed;
    double el = now_seconds() - t0;
    if (tool_verbose)
        fprintf(stderr, "prefixdec: decode stats: %ld captions, %ld tokens, %.3f s, %.2f ms/caption, %.1f GFLOP/s\n",
                ok, tokens, el, ok ? 1e3 * el / ok : 0.0, el > 0 ? flops / el / 1e9 : 0.0);
    ws_reader_close(r);
    close_stdout_or_die();
    free(q.q), free(recs), free(keep), free(emb), free(ids), free(nids);
    gpt_gen_free(g);
    gpt_weights_free(&w);
    vocab_free(&v);
    st_close(f);
    parfor_shutdown();
    return finish(ok, failed);
}

/* ================================================================ train */

typedef struct {
    vocab_t *v;
    int S, E; /* E: the required width, 0 = take the first record's */
    const char *what;
    long skipped, truncated, upstream;
    const gpt_config *c;
} load_ctx;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* A clap-text stream into memory: targets as train.py builds them
 * (tokenizer(caption) without truncation: [CLS] ids [SEP], then padded with
 * [PAD] or cut to S, which drops [SEP] from long captions). */
static void load_data(train_data *d, const char *path, load_ctx *lc) {
    if (!path && isatty(0)) warnx_("reading a clap-text stream from the terminal (see --help)");
    ws_reader *r = path ? ws_reader_open_path(path) : ws_reader_open_fd(0, "stdin");
    if (!r) die("%s: %s", path, strerror(errno));
    wordpiece *wp = lc->v->wp;
    int S = lc->S, cap = 1024;
    memset(d, 0, sizeof *d);
    d->S = S;
    d->E = lc->E;
    d->emb = NULL;
    d->tok = xmalloc((size_t)cap * S * sizeof(int32_t));
    d->hash = 1469598103934665603ULL;
    int32_t *ids = xmalloc((size_t)S * sizeof(int32_t));
    char hint[200] = "";
    if (lc->c) emb_shape_hint(hint, sizeof hint, lc->c);
    ws_record rec;
    int st;
    while ((st = ws_reader_next(r, &rec)) == WS_RECORD) {
        char nb[300], why[300];
        const char *name = ws_record_name(&rec, nb, sizeof nb);
        const ws_tensor *t;
        const char *text;
        if (rec.err[0]) {
            warnx_("%s: %s: %s: skipped", lc->what, name, rec.err);
            lc->skipped++;
        } else if (!(t = ws_record_tensor(&rec, "emb", DT_F32, 1, why, sizeof why))) {
            warnx_("%s: %s: %s: skipped", lc->what, name, why);
            lc->skipped++;
        } else if (!(text = ws_record_str(&rec, "text"))) {
            warnx_("%s: %s: no \"text\" field (a clap-text stream carries the caption): skipped", lc->what, name);
            lc->skipped++;
        } else {
            if (d->E == 0) d->E = (int)t->shape[0];
            if (t->shape[0] != d->E) {
                if (lc->c)
                    die("%s: %s: \"emb\" has %lld values but the model takes %d (%s)", lc->what, name,
                        (long long)t->shape[0], d->E, hint);
                die("%s: %s: \"emb\" has %lld values but the first record had %d: embeddings of different models?",
                    lc->what, name, (long long)t->shape[0], d->E);
            }
            const float *x = t->data;
            int finite = 1;
            for (int k = 0; k < d->E; k++) finite &= isfinite(x[k]);
            int n = finite ? wp_tokenize(wp, text, strlen(text), ids + 1, S - 1, why, sizeof why) : 0;
            if (!finite) {
                warnx_("%s: %s: \"emb\" has NaN or infinite values: skipped", lc->what, name);
                lc->skipped++;
            } else if (n < 0) {
                warnx_("%s: %s: %s: skipped", lc->what, name, why);
                lc->skipped++;
            } else if (n == 0) {
                warnx_("%s: %s: empty caption (no tokens): skipped", lc->what, name);
                lc->skipped++;
            } else {
                if (d->n == cap) {
                    cap *= 2;
                    d->tok = xrealloc(d->tok, (size_t)cap * S * sizeof(int32_t));
                    d->emb = xrealloc(d->emb, (size_t)cap * d->E * sizeof(float));
                }
                if (!d->emb) d->emb = xmalloc((size_t)cap * d->E * sizeof(float));
                int32_t *tk = d->tok + (size_t)d->n * S;
                int full = n + 2; /* [CLS] ids [SEP] */
                for (int i = 0; i < S; i++)
                    tk[i] = i >= full ? wp_pad(wp) : i == 0 ? wp_cls(wp) : i == full - 1 ? wp_sep(wp) : ids[i];
                if (full > S) lc->truncated++;
                memcpy(d->emb + (size_t)d->n * d->E, x, (size_t)d->E * sizeof(float));
                d->hash = fnv(d->hash, rec.key, strlen(rec.key) + 1);
                d->hash = fnv(d->hash, tk, (size_t)S * sizeof(int32_t));
                d->hash = fnv(d->hash, x, (size_t)d->E * sizeof(float));
                d->n++;
            }
        }
        ws_record_free(&rec);
    }
    if (st == WS_ERROR) die("%s", ws_reader_error(r));
    for (int i = 0; i < ws_reader_upstream_nfailed(r); i++)
        warnx_("%s: key '%s': failed upstream (no embedding to train on)", lc->what, ws_reader_upstream_failed(r, i));
    lc->upstream += ws_reader_upstream_errors(r);
    ws_reader_close(r);
    free(ids);
}

static void load_gap(const char *path, float **gap, int *E) {
    ws_reader *r = ws_reader_open_path(path);
    if (!r) die("%s: %s", path, strerror(errno));
    ws_record rec;
    int st = ws_reader_next(r, &rec);
    if (st == WS_ERROR) die("%s", ws_reader_error(r));
    if (st != WS_RECORD) die("--gap %s: the stream has no record", path);
    char why[300];
    const ws_tensor *t = ws_record_tensor(&rec, "emb", DT_F32, 1, why, sizeof why);
    if (!t) die("--gap %s: first record: %s", path, why);
    *E = (int)t->shape[0];
    *gap = xmalloc((size_t)*E * sizeof(float));
    memcpy(*gap, t->data, (size_t)*E * sizeof(float));
    for (int i = 0; i < *E; i++)
        if (!isfinite((*gap)[i])) die("--gap %s: the vector has NaN or infinite values", path);
    ws_record_free(&rec);
    ws_reader_close(r);
}

/* SIGINT/SIGTERM: finish the step, write a checkpoint, stop (sig_atomic_t is int here) */
static volatile int stop_flag;
static void on_signal(int sig) {
    (void)sig;
    stop_flag = 1;
}

enum {
    O_BEAM = 256, O_MAXLEN, O_IDS, O_BATCH, O_VAL, O_EPOCHS, O_BS, O_LR, O_WARMUP, O_WD, O_NOISE, O_GAP, O_MAXSEQ,
    O_SEED, O_SHUFFLE, O_INIT, O_RESUME, O_LOG, O_VOCAB, O_LAYERS, O_HEADS, O_WIDTH, O_POSITIONS, O_DROPOUT, O_VOCABSIZE
};

typedef struct {
    train_opts t;
    const char *val, *gap, *init, *resume, *vocab;
    int layers, heads, width, positions, vocab_size;
    int given[O_VOCABSIZE + 1];
} train_cli;

static int train_main(train_cli *a, const char *input) {
    char err[600];
    train_opts *o = &a->t;
    if (a->resume) {
        /* the run continues exactly as it started: its options come from the checkpoint */
        static const struct { int id; const char *name; } fixed[] = {
            {O_EPOCHS, "--epochs"}, {O_BS, "--bs"}, {O_LR, "--lr"}, {O_WARMUP, "--warmup"}, {O_WD, "--wd"},
            {O_NOISE, "--noise"}, {O_DROPOUT, "--dropout"}, {O_GAP, "--gap"}, {O_MAXSEQ, "--max-seq-len"}, {O_SEED, "--seed"},
            {O_SHUFFLE, "--shuffle"}, {O_INIT, "--init"}, {O_VOCAB, "--vocab"}, {O_LAYERS, "--layers"},
            {O_HEADS, "--heads"}, {O_WIDTH, "--width"}, {O_POSITIONS, "--positions"}, {O_VOCABSIZE, "--vocab-size"}};
        for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
            if (a->given[fixed[i].id])
                die_usage("%s cannot be combined with --resume: a resumed run keeps the checkpoint's options",
                          fixed[i].name);
        if (!o->out) o->out = a->resume;
    } else if (a->init) {
        static const int shape[] = {O_LAYERS, O_HEADS, O_WIDTH, O_POSITIONS, O_VOCABSIZE};
        for (size_t i = 0; i < sizeof shape / sizeof shape[0]; i++)
            if (a->given[shape[i]]) die_usage("--layers, --heads, --width, --positions and --vocab-size describe a "
                                              "new model: the model of --init has its own");
    }
    if (!o->out) die_usage("train needs an output file: -o FILE");
    set_threads();

    /* model file to start from, and its vocabulary */
    st_file *f = NULL;
    const char *from = a->resume ? a->resume : a->init;
    vocab_t v = {0};
    train_pos pos = {0};
    uint64_t want_hash = 0;
    int want_n = 0;
    float *gap = NULL;
    if (from) {
        f = st_open(from, err, sizeof err);
        if (!f) die("%s", err);
    }
    if (a->resume) {
        train_opts saved = *o;
        if (train_read_state(f, &saved, &pos, &want_hash, &want_n, err, sizeof err)) die("%s", err);
        o->epochs = saved.epochs, o->bs = saved.bs, o->S = saved.S, o->shuffle = saved.shuffle;
        o->lr = saved.lr, o->warmup = saved.warmup, o->wd = saved.wd, o->noise = saved.noise;
        o->dropout = saved.dropout;
        o->seed = saved.seed, o->pad = saved.pad;
        if (pos.epoch >= o->epochs) {
            infox("%s has finished all %d epochs: nothing to do", a->resume, o->epochs);
            st_close(f);
            parfor_shutdown();
            return EXIT_OK;
        }
    }
    if (a->vocab) vocab_file(&v, a->vocab);
    else if (!f || vocab_model(&v, f)) {
        size_t n;
        const char *b = gpt_builtin_vocab(&n);
        vocab_set(&v, b, n, "bert-base-uncased (built in)");
    }
    if (!a->resume) o->pad = wp_pad(v.wp);
    else if (o->pad != wp_pad(v.wp)) die("%s: train.pad %d is not the vocabulary's [PAD] id", a->resume, o->pad);
    int nv = wp_vocab_size(v.wp);

    /* the model */
    train_model tm;
    gpt_config c;
    if (f) {
        if (train_model_load(&tm, f, a->resume != NULL, err, sizeof err)) die("%s", err);
        c = tm.c;
        st_tensor tg;
        if (a->resume && st_get(f, "train.gap", &tg, err, sizeof err) == 0) {
            if (tg.dtype != ST_F32 || tg.ndim != 1 || tg.shape[0] != c.E) die("%s: tensor train.gap is not f32 [%d]", a->resume, c.E);
            gap = xmalloc((size_t)c.E * sizeof(float));
            memcpy(gap, tg.data, (size_t)c.E * sizeof(float));
        }
        mark_train_tensors(f);
        if (st_check_all_used(f, err, sizeof err)) die("%s", err);
    }
    int gE = 0;
    if (a->gap) load_gap(a->gap, &gap, &gE);
    o->gap = gap;

    /* the data */
    load_ctx lc = {.v = &v, .S = o->S, .E = f ? c.E : 0, .what = input ? input : "stdin", .c = f ? &c : NULL};
    train_data d, vd;
    load_data(&d, input, &lc);
    long skipped = lc.skipped, truncated = lc.truncated;
    if (d.n == 0) die("%s: no usable captions", lc.what);
    if (d.n < o->bs) die("%s: %d captions, fewer than one batch (--bs %d)", lc.what, d.n, o->bs);
    if (a->resume && (d.n != want_n || d.hash != want_hash))
        die("the training data differ from those of the run being resumed (%d captions, fingerprint %016llx; "
            "now %d, %016llx): give the same stream",
            want_n, (unsigned long long)want_hash, d.n, (unsigned long long)d.hash);
    if (!f) {
        c = (gpt_config){.E = d.E, .C = a->width, .L = a->layers, .NH = a->heads, .F = 4 * a->width,
                         .V = a->vocab_size ? a->vocab_size : nv, .P = a->positions, .eps = 1e-5f};
        const char *bad = gpt_config_check(&c);
        if (bad) die_usage("a new model: %s", bad);
        train_model_init(&tm, &c, o->seed);
    }
    if (a->gap && gE != c.E) die("--gap %s has %d values but the embeddings have %d", a->gap, gE, c.E);
    if (nv > c.V) die("the vocabulary %s has %d tokens but the model's token embedding only %d rows", v.from, nv, c.V);
    if (o->S > c.P) die_usage("--max-seq-len %d exceeds the model's %d positions", o->S, c.P);
    int have_val = 0;
    if (a->val) {
        load_ctx lv = {.v = &v, .S = o->S, .E = c.E, .what = a->val, .c = &c};
        load_data(&vd, a->val, &lv);
        skipped += lv.skipped;
        have_val = vd.n > 0;
        if (!have_val) warnx_("%s: no usable captions: no validation loss", a->val);
    }
    o->vocab = v.bytes, o->vocab_len = v.len;
    char src[400];
    snprintf(src, sizeof src, "prefixdec train%s%s", a->init ? " --init " : "", a->init ? a->init : "");
    if (a->resume) snprintf(src, sizeof src, "%s", st_meta(f, "wsac.source") ? st_meta(f, "wsac.source") : "prefixdec train");
    o->source = src;
    if (!a->resume) train_pos_init(&pos, o->seed);

    int spe = d.n / o->bs;
    infox("%d captions (%ld truncated to %d tokens as published, %ld skipped%s), %d steps per epoch, %d epochs; "
          "model %d layers x %d heads, width %d, vocab %d (tokenizer %d), %.1fM parameters; %d thread%s",
          d.n, truncated, o->S, skipped, lc.upstream ? ", more failed upstream" : "", spe, o->epochs, c.L, c.NH, c.C,
          c.V, nv, tm.np / 1e6, threads, threads == 1 ? "" : "s");
    if (a->resume) infox("resuming %s at epoch %ld, batch %ld (step %ld)", a->resume, pos.epoch + 1, pos.batch, pos.step);
    if (f) st_close(f); /* weights were copied */

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    double t0 = now_seconds();
    int stopped = train_run(&tm, &d, have_val ? &vd : NULL, o, &pos, &stop_flag);
    double el = now_seconds() - t0;
    char vbuf[48] = "";
    if (have_val && isfinite(pos.last_val)) snprintf(vbuf, sizeof vbuf, ", val loss %.4f", pos.last_val);
    if (!tool_quiet || skipped + lc.upstream)
        fprintf(stderr, "prefixdec: %s after %ld steps (%.0f s): last epoch loss %.4f%s; %d captions used, %ld "
                        "skipped%s; model %s\n",
                stopped ? "stopped" : "trained", pos.step, el, pos.last_loss, vbuf, d.n, skipped + lc.upstream,
                lc.upstream ? " (some upstream)" : "", o->out);
    train_model_free(&tm);
    free(d.emb), free(d.tok);
    if (a->val) free(vd.emb), free(vd.tok);
    free(gap);
    vocab_free(&v);
    parfor_shutdown();
    if (stopped) return EXIT_FATAL;
    return skipped + lc.upstream ? EXIT_PARTIAL : EXIT_OK;
}

/* ================================================================ main */

int main(int argc, char **argv) {
    tool_init("prefixdec");
    threads = 0;
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},       {"beam", required_argument, 0, O_BEAM},
        {"max-len", required_argument, 0, O_MAXLEN}, {"ids", no_argument, 0, O_IDS},
        {"batch", required_argument, 0, O_BATCH},   {"output", required_argument, 0, 'o'},
        {"val", required_argument, 0, O_VAL},       {"epochs", required_argument, 0, O_EPOCHS},
        {"bs", required_argument, 0, O_BS},         {"lr", required_argument, 0, O_LR},
        {"warmup", required_argument, 0, O_WARMUP}, {"wd", required_argument, 0, O_WD},
        {"noise", required_argument, 0, O_NOISE},   {"gap", required_argument, 0, O_GAP},
        {"max-seq-len", required_argument, 0, O_MAXSEQ}, {"seed", required_argument, 0, O_SEED},
        {"shuffle", required_argument, 0, O_SHUFFLE}, {"init", required_argument, 0, O_INIT},
        {"resume", required_argument, 0, O_RESUME}, {"log", required_argument, 0, O_LOG},
        {"vocab", required_argument, 0, O_VOCAB},   {"layers", required_argument, 0, O_LAYERS},
        {"heads", required_argument, 0, O_HEADS},   {"width", required_argument, 0, O_WIDTH},
        {"positions", required_argument, 0, O_POSITIONS}, {"vocab-size", required_argument, 0, O_VOCABSIZE},
        {"dropout", required_argument, 0, O_DROPOUT},
        {"threads", required_argument, 0, 'j'},     {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},
        {"help", no_argument, 0, 'h'},              {0, 0, 0, 0}};
    const char *cmd = NULL;
    if (argc > 1 && argv[1][0] != '-') {
        cmd = argv[1];
        if (strcmp(cmd, "train") && strcmp(cmd, "decode"))
            die_usage("unknown command '%s': use 'train' or 'decode'", cmd);
        argv[1] = argv[0];
        argv++, argc--;
    }
    decode_opts d = {.beam = 1, .max_len = 30, .batch = 0};
    train_cli t;
    memset(&t, 0, sizeof t);
    t.t = (train_opts){.epochs = 30, .bs = 64, .S = 22, .shuffle = SHUFFLE_EPOCH, .lr = 1e-5, .warmup = 100,
                       .wd = 0.02, .noise = 0.001, .dropout = 0.1, .seed = 0};
    t.layers = 4, t.heads = 4, t.width = 768, t.positions = 1024;
    int c, is_train = cmd && !strcmp(cmd, "train"), is_dec = cmd && !strcmp(cmd, "decode");
    /* options of the other command are usage errors */
    static const int train_only[] = {'o', O_VAL, O_EPOCHS, O_BS, O_LR, O_WARMUP, O_WD, O_NOISE, O_DROPOUT, O_GAP, O_MAXSEQ,
                                     O_SEED, O_SHUFFLE, O_INIT, O_RESUME, O_LOG, O_LAYERS, O_HEADS, O_WIDTH,
                                     O_POSITIONS, O_VOCABSIZE};
    static const int decode_only[] = {'m', O_BEAM, O_MAXLEN, O_IDS, O_BATCH};
    while ((c = getopt_long(argc, argv, ":m:o:j:qvh", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        if (c == '?' || c == ':') die_bad_option(c, argv);
        if (!cmd && c != 'q' && c != 'j' && c != 'v') die_usage("give a command first: prefixdec train|decode [OPTIONS]");
        for (size_t i = 0; i < sizeof train_only / sizeof train_only[0]; i++)
            if (c == train_only[i] && !is_train) die_usage("option '%s' is for 'prefixdec train'", argv[optind - 1]);
        for (size_t i = 0; i < sizeof decode_only / sizeof decode_only[0]; i++)
            if (c == decode_only[i] && !is_dec) die_usage("option '%s' is for 'prefixdec decode'", argv[optind - 1]);
        if (c >= 256 && c <= O_VOCABSIZE) t.given[c] = 1;
        switch (c) {
        case 'm': d.model = optarg; break;
        case O_BEAM: d.beam = (int)parse_long("--beam", optarg, 1, 64); break;
        case O_MAXLEN: d.max_len = (int)parse_long("--max-len", optarg, 1, 4096), d.max_len_given = 1; break;
        case O_IDS: d.ids = 1; break;
        case O_BATCH: d.batch = (int)parse_long("--batch", optarg, 1, 4096); break;
        case 'o': t.t.out = optarg; break;
        case O_VAL: t.val = optarg; break;
        case O_EPOCHS: t.t.epochs = (int)parse_long("--epochs", optarg, 1, 100000); break;
        case O_BS: t.t.bs = (int)parse_long("--bs", optarg, 1, 65536); break;
        case O_LR: t.t.lr = parse_double("--lr", optarg, 0, 10); break;
        case O_WARMUP: t.t.warmup = parse_double("--warmup", optarg, 0, 1e12); break;
        case O_WD: t.t.wd = parse_double("--wd", optarg, 0, 1e3); break;
        case O_NOISE: t.t.noise = parse_double("--noise", optarg, 0, 1e6); break;
        case O_DROPOUT: t.t.dropout = parse_double("--dropout", optarg, 0, 0.99); break;
        case O_GAP: t.gap = optarg; break;
        case O_MAXSEQ: t.t.S = (int)parse_long("--max-seq-len", optarg, 1, 4096); break;
        case O_SEED: t.t.seed = (uint64_t)parse_long("--seed", optarg, 0, (1L << 62)); break;
        case O_SHUFFLE:
            if (!strcmp(optarg, "epoch")) t.t.shuffle = SHUFFLE_EPOCH;
            else if (!strcmp(optarg, "once")) t.t.shuffle = SHUFFLE_ONCE;
            else if (!strcmp(optarg, "none")) t.t.shuffle = SHUFFLE_NONE;
            else die_usage("option --shuffle: '%s' is not one of epoch once none", optarg);
            break;
        case O_INIT: t.init = optarg; break;
        case O_RESUME: t.resume = optarg; break;
        case O_LOG: t.t.log = optarg; break;
        case O_VOCAB: t.vocab = d.vocab = optarg; break;
        case O_LAYERS: t.layers = (int)parse_long("--layers", optarg, 1, 1024); break;
        case O_HEADS: t.heads = (int)parse_long("--heads", optarg, 1, 1024); break;
        case O_WIDTH: t.width = (int)parse_long("--width", optarg, 1, 65536); break;
        case O_POSITIONS: t.positions = (int)parse_long("--positions", optarg, 1, 1 << 20); break;
        case O_VOCABSIZE: t.vocab_size = (int)parse_long("--vocab-size", optarg, 1, 1 << 24); break;
        case 'j': threads = (int)parse_long("--threads", optarg, 1, 64); break;
        case 'q': tool_quiet = 1; break;
        case 'v': tool_verbose++; break;
        default: die_bad_option(c, argv);
        }
    }
    if (!cmd) die_usage("give a command: prefixdec train|decode [OPTIONS] (see --help)");
    if (optind + 1 < argc) die_usage("one input stream at most (got %d)", argc - optind);
    const char *input = optind < argc && strcmp(argv[optind], "-") ? argv[optind] : NULL;
    if (t.init && t.resume) die_usage("--init and --resume exclude each other");
    if (is_dec) {
        /* the KV cache holds batch * beam rows */
        if (d.batch == 0) d.batch = 128 / d.beam > 8 ? 128 / d.beam : 8;
        return decode_main(&d, input);
    }
    return train_main(&t, input);
}
