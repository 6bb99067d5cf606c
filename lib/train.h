/* train.h - training the prefix decoder as WSAC's train.py does
 * (../shared/reference/wsac.md C): noise injection, cross-entropy ignoring
 * padding, transformers.AdamW, get_linear_schedule_with_warmup; plus what
 * the published script lacks: a seeded RNG, per-epoch reshuffling,
 * validation loss, atomic checkpoints and exact resumption.
 *
 * Checkpoint = a decoder model file (what `prefixdec decode -m` reads) with
 * extra tensors train.exp_avg.NAME / train.exp_avg_sq.NAME (AdamW moments,
 * the names of torch's optimizer state), train.gap (the modality-gap
 * vector, if any) and train.* metadata (hyperparameters, position, RNG);
 * written to a temporary file in the same directory, fsync'ed, then renamed
 * over the previous checkpoint, so a crash at any moment leaves either the old
 * or the new file, both complete. */
#ifndef WSAC_TRAIN_H
#define WSAC_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "gpt.h"
#include "safetensors.h"

/* ---------------------------------------------------------------- RNG */

/* xoshiro256** (Blackman & Vigna), seeded through splitmix64: the whole
 * state is 4 words, saved in checkpoints. */
typedef struct {
    uint64_t s[4];
} xrng;

void xrng_seed(xrng *r, uint64_t seed);
uint64_t xrng_next(xrng *r);
double xrng_uniform(xrng *r); /* [0, 1), 53 bits */
/* out[n] ~ N(0, 1) by Box-Muller, in pairs (an odd n drops the last spare) */
void xrng_normal(xrng *r, float *out, size_t n);
/* Fisher-Yates: perm = a random permutation of 0..n-1 */
void xrng_permutation(xrng *r, int *perm, int n);
/* 64 hex digits and back (0 or -1) */
void xrng_format(const xrng *r, char out[65]);
int xrng_parse(xrng *r, const char *s);

/* ---------------------------------------------------------------- schedule, optimiser */

/* get_linear_schedule_with_warmup's lr_lambda: step/warmup during warm-up,
 * then (total - step)/(total - warmup), never below 0 */
double lr_lambda(long step, double warmup, long total);

/* transformers.AdamW step t (1-based) on n parameters: betas (0.9, 0.999),
 * eps, bias correction, then p -= lr * wd * p (decoupled, every parameter);
 * the gradient g is zeroed on the way (optimizer.zero_grad()) */
void adamw_step(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double wd, double eps);
void adamw_step_naive(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double wd, double eps);

/* torch.optim.AdamW step t (1-based; SALSA's optimiser), which differs from
 * transformers.AdamW above: p *= 1 - lr wd first, and eps is added to the
 * bias-corrected sqrt(v): p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t)
 * + eps). The gradient is zeroed on the way. */
void adamw_torch_step(float *p, float *g, float *m, float *v, size_t n, long t, double lr, double b1, double b2,
                      double eps, double wd);

/* SALSA's update_lr (ex_dcase24.py, warmup 'linear', rampdown 'cosine'):
 * lr at fractional epoch e: lr e / warmup below warmup; lr until ramp0;
 * min_lr + (lr - min_lr) (1 + cos(pi (e - ramp0) / (ramp1 - ramp0))) / 2
 * until ramp1; min_lr after */
double salsa_lr(double epoch, double lr, double min_lr, double warmup, double ramp0, double ramp1);

/* ---------------------------------------------------------------- checkpoint files */

typedef struct {
    const char *name;
    st_dtype dtype; /* any; ST_F32, ST_U8 or ST_I64 in the decoder's files */
    int ndim;       /* 0..4 */
    int64_t shape[4];
    const void *data;
} ckpt_tensor;

/* Write a safetensors file atomically: PATH.tmp.PID, fsync, rename over
 * PATH, fsync the directory. meta: nmeta key/value pairs (meta[2i],
 * meta[2i+1]). 0, or -1 with a reason (the old PATH is then untouched). */
int ckpt_write(const char *path, const ckpt_tensor *t, int n, const char *const *meta, int nmeta, char *err,
               size_t errlen);

/* ---------------------------------------------------------------- training */

enum { SHUFFLE_EPOCH, SHUFFLE_ONCE, SHUFFLE_NONE };

typedef struct {
    int n, E, S;       /* captions, embedding width, targets per caption */
    float *emb;        /* [n, E] */
    int32_t *tok;      /* [n, S] [CLS] ids [SEP], padded or cut to S */
    uint64_t hash;     /* of the keys and targets: a resumed run checks it */
} train_data;

typedef struct {
    int epochs, bs, S, shuffle;
    double lr, warmup, wd, noise;
    double dropout;    /* resid/embd/attn_pdrop: GPT-2 dropout in training (0.1 published) */
    uint64_t seed;
    const float *gap;  /* [E] or NULL */
    int pad;           /* padding id, ignored by the loss */
    const char *out;   /* checkpoint path */
    const char *log;   /* per-step TSV log or NULL */
    const char *vocab; /* tokenizer bytes, stored in the checkpoint */
    size_t vocab_len;
    const char *source;/* provenance for wsac.source */
} train_opts;

typedef struct {
    long epoch, batch, step; /* completed epochs; batches done in the current epoch; optimizer steps */
    xrng rng;                /* noise */
    double last_loss, last_val;
} train_pos;

typedef struct {
    gpt_config c;
    gpt_weights w, g;        /* parameters and gradients (flat buffers below) */
    float *p, *grad, *m, *v; /* [gpt_num_params] */
    size_t np;
} train_model;

/* A fresh model: GPT-2's initialisation (normal 0.02, c_proj 0.02/sqrt(2L),
 * zero biases, unit LayerNorms) and nn.Linear's default for the mapping. */
void train_model_init(train_model *tm, const gpt_config *c, uint64_t seed);
/* Weights (and, with moments != 0, AdamW moments: every train.exp_avg*
 * tensor must be present) from a model file. 0 or -1 with a reason. */
int train_model_load(train_model *tm, st_file *f, int moments, char *err, size_t errlen);
void train_model_free(train_model *tm);

/* The start of a run: step 0, the noise RNG seeded from the seed. */
void train_pos_init(train_pos *pos, uint64_t seed);

/* Options and position saved in a checkpoint (for --resume). */
int train_read_state(st_file *f, train_opts *o, train_pos *pos, uint64_t *data_hash, int *data_n, char *err,
                     size_t errlen);

/* The loop: from pos to the end (or until *stop becomes non-zero, then a
 * checkpoint at the current step). val may be NULL. Progress on stderr.
 * Returns 0 when finished, 1 when stopped early; fatal errors exit. */
int train_run(train_model *tm, const train_data *d, const train_data *val, const train_opts *o, train_pos *pos,
              volatile int *stop);

/* Mean loss over a data set (token-weighted), no noise: validation. */
double train_eval(train_model *tm, gpt_train_state *s, const train_data *d, int bs, int pad);

/* The noise injection of train.py on rows x[B, E] (see the man page). */
void train_noise(float *x, int B, int E, double variance, const float *gap, xrng *r, float *scratch);

#endif
