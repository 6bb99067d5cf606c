/* tag_train.h - tag-train: pretraining a CLAP's CNN14 audio tower on
 * multi-label tags, as PANNs pretrains the CNN14 that WavCaps starts from
 * (github:qiuqiangkong/audioset_tagging_cnn pytorch/models.py Cnn14,
 * pytorch/losses.py clip_bce, pytorch/main.py), before contrastive training
 * (clap-train). See man/man1/tag-train.1.
 *
 *   h = relu(audio_proj.0(cnn14(mel)))   [B, E]  (cnn14_train.h's hid: WavCaps'
 *                                        CNN14 has no fc1; the first layer of
 *                                        audio_proj + ReLU stands where PANNs'
 *                                        fc1 + ReLU stands)
 *   p = sigmoid(h W^T + b)               [B, K]  (PANNs' fc_audioset)
 *   loss = mean over B and K of BCE(p, y)         (F.binary_cross_entropy)
 *
 * The text tower and audio_proj.2 are copied unchanged; the head is saved in
 * the output as tag.fc_audioset.weight [K, E] / .bias [K] with __metadata__
 * tag.classes (a JSON list), names clap-audio ignores. */
#ifndef WSAC_TAG_TRAIN_H
#define WSAC_TAG_TRAIN_H

#include <stddef.h>

typedef struct {
    const char *init, *mel, *labels, *classes, *out, *log;
    const char *val;        /* "MEL.mp" (labels from --labels) or "MEL.mp,LABELS" */
    const char *save_grads; /* the first step's gradients (tests) */
    int epochs, bs, frames, shuffle, augment, threads;
    long seed, max_steps;
    double lr, wd, warmup;  /* warmup: linear from 0 over this many epochs (fractional) */
    double b1, b2, eps;
    volatile int *stop;     /* set by a signal handler: finish the step, write OUT, stop */
} tag_train_opts;

void tag_train_defaults(tag_train_opts *o);
/* Runs the training; returns the exit status: 0; 3 when keys were skipped
 * (each named on stderr; the model is still trained and written); 2 after a
 * fatal error named on stderr, or when *stop ended the run (OUT written). */
int tag_train_run(const tag_train_opts *o);

/* Metrics of scores[n, K] against targets y[n, K] (0/1): the mean over
 * classes with a positive of sklearn's average_precision_score, and the mean
 * over classes with a positive and a negative of roc_auc_score (ties: average
 * ranks); *nap, *nauc: the classes counted; per[K] (or NULL): each class's
 * AP (NaN without a positive). */
double tag_map(const float *scores, const float *y, int n, int K, int *nap, double *per);
/* --labels: a world events JSONL (each line an object with a "file_name"
 * string, "background": {"cls": NAME} and "events": [{"cls": NAME}, ...]),
 * when the first non-blank byte is "{", else KEY<TAB>label,label,... lines;
 * blank lines and lines starting with "#" skipped, labels trimmed of blanks,
 * a label twice on one line kept once. Read from fd with read(2) until its
 * end. A malformed line (no tab, bad JSON, no "file_name" string, an empty
 * key, a NUL byte) is named on stderr, counted in *bad and skipped; a key on
 * several lines is named and counted once per repeat (their labels all
 * count). Entries are sorted by key, then line. Returns 0, or -1 with the
 * reason in err (a read error, over 2 GiB) and L empty. */
typedef struct {
    char *key;
    int n;
    char **lab;
    long line;
} tag_label_entry;
typedef struct {
    tag_label_entry *e;
    int n;
} tag_labels;
int tag_labels_read_fd(tag_labels *L, int fd, const char *name, long *bad, char *err, size_t errlen);
void tag_labels_free(tag_labels *L);
/* --classes: one class a line, trimmed of blanks, blank and "#" lines
 * skipped; sorted and unique. NULL with the reason in err (a read error, a
 * NUL byte); *K may be 0. */
char **tag_classes_read_fd(int fd, const char *name, int *K, char *err, size_t errlen);
/* The index of name in the sorted classes, or -1. */
int tag_class_index(char *const *cls, int K, const char *name);

double tag_auc(const float *scores, const float *y, int n, int K, int *nauc);

#endif
