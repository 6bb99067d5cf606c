/* clap_train.h - contrastive training of the CNN14-BERT CLAP (clap-train):
 * SALSA's stage 1 (L_sup) and stage 2 (L_dist from teacher embedding
 * streams), AdamW in SALSA's four groups, update_lr's schedule; both towers
 * in training mode (cnn14_train.h, bert_train.h), the losses of
 * contrastive.h. See man/man1/clap-train.1. */
#ifndef WSAC_CLAP_TRAIN_H
#define WSAC_CLAP_TRAIN_H

#include "clap_init.h"

typedef struct {
    const char *init, *mel, *captions, *out, *log;
    int csv;                 /* captions are CSV (also: a name ending in .csv) */
    const char *teacher[16]; /* "AUDIO.mp,TEXT.mp" */
    int nteachers;
    int epochs, bs, frames, shuffle, augment, threads, constant_lr;
    long seed;
    double lr[4];            /* audio encoder, text encoder, audio projection, text projection */
    double min_lr, warmup, ramp0, ramp1;
    double b1, b2, eps, wd, tau;
    double loss_weight, distill_weight;
    int quirk;               /* 1: L_sup weighted loss_weight^2 when distilling, as the published code */
    long max_steps;          /* stop after this many steps (0: the whole run) */
    const char *val;         /* "MEL.mp,CAPTIONS": validation mAP@10 after every epoch, the best model to OUT.best */
    const char *ckpt;        /* checkpoint written after every epoch, at --max-steps and on a stop request */
    const char *resume;      /* a checkpoint to continue from (then --init may be omitted) */
    volatile int *stop;      /* set (by a signal handler) to finish the step, checkpoint and stop */
    /* a new model from sizes instead of --init (clap_init.h) */
    int new_model;
    clap_sizes sizes;
    const char *vocab;       /* the vocab.txt of the new model's tokenizer */
    long init_seed;          /* its initialisation (-1: seed) */
    const char *save_init;   /* write the new, untrained model there (alone: without --mel, nothing else) */
} clap_train_opts;

void clap_train_defaults(clap_train_opts *o);
/* Runs the training (or, with new_model and save_init but no mel, only
 * writes the new model); returns the exit status (0; 2 after a fatal error
 * named on stderr, or when *stop ended the run early, its checkpoint written).
 *
 * A checkpoint is a model file (what clap-audio/clap-text read) with the AdamW
 * moments as extra tensors train.exp_avg.NAME / train.exp_avg_sq.NAME and
 * the position (next epoch and batch, step) in clap.train.* metadata; written
 * atomically. Every random draw is keyed by (seed, epoch, item), so a resumed
 * run continues bit for bit as the uninterrupted one would have. */
int clap_train_run(const clap_train_opts *o);

#endif
