/* clap_train.h - contrastive training of a CLAP (clap-train): WavCaps'
 * CNN14-BERT or SALSA's PaSST-S + RoBERTa, as the model file's
 * clap.audio.arch says; SALSA's stage 1 (L_sup) and stage 2 (L_dist from
 * teacher embedding streams), AdamW in SALSA's four groups, update_lr's
 * schedule; both towers in training mode (cnn14_train.h or passt_train.h,
 * bert_train.h), the losses of contrastive.h. See man/man1/clap-train.1. */
#ifndef WSAC_CLAP_TRAIN_H
#define WSAC_CLAP_TRAIN_H

#include <stddef.h>

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
    /* SALSA's PaSST-RoBERTa (ignored, or refused, for CNN14-BERT) */
    int micro_bs;            /* items a micro-batch of the gradient cache (0: the whole batch at once) */
    int recompute;           /* passtt.recompute: each PaSST block recomputed in the backward pass */
    int patchout_t, patchout_f;                 /* structured patchout: 15, 2 (ex_dcase24.py) */
    double drop_rate, attn_drop_rate, drop_path_rate; /* PaSST's: 0, 0, 0 (passt.py's defaults) */
    double text_dropout, text_attn_dropout;
    const char *audio_list;  /* PaSST: the clips' audio files ("PATH" or "KEY<TAB>PATH" lines) instead of --mel: each
                                step's mel computed from the waveform, with SALSA's random 30-s crop and mel jitter */
    int jitter, crop;        /* 1, 1: the mel edges' jitter and the random crop of longer clips (--audio-list) */
    const char *save_grads;  /* the first step's summed gradients written there (tests) */     /* the text tower's (< 0: the model's: RoBERTa 0.2, 0.2; BERT 0.1, 0.1) */
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

/* --audio-list's lines, "PATH" or "KEY<TAB>PATH" (the key PATH's base name,
 * as wav2mel keys it), read from fd with read(2) until its end; "\n" ends a
 * line, trailing "\n"/"\r" are dropped, empty lines skipped. Returns the
 * entries (*n of them, lines in order), or NULL with the reason in err for
 * an empty key or path, a NUL byte, a key that appears twice, a read error
 * or no line at all. Each entry's key and path are malloc'd (free with
 * clap_audio_list_free). */
typedef struct {
    char *key, *path;
    long line;
} clap_audio_entry;
clap_audio_entry *clap_audio_list_read(int fd, const char *name, int *n, char *err, size_t errlen);
void clap_audio_list_free(clap_audio_entry *e, int n);

#endif
