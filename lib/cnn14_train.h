/* cnn14_train.h - CNN14 (WavCaps cnns.py Cnn14 + ase_model.py audio_proj) in
 * training mode: forward with batch statistics, dropout and saved
 * activations, and the backward pass to every parameter; built from the
 * shared kernels (kernels.h). The inference encoder is cnn14.h; this is the
 * same architecture, sizes from the model file.
 *
 *   x = bn0(mel)                                    batch statistics over the mel bins
 *   x = specaugment(x)                              training only: time and frequency stripes zeroed
 *   block k = 1..N: x = dropout(avgpool2(relu(bn2(conv2(relu(bn1(conv1(x))))))), p)
 *   feat = max_t mean_f x + mean_t mean_f x
 *   e = W2 relu(W0 feat + b0) + b2                  unnormalised: the loss normalises
 *
 * Parameters live in one flat block (llm.c), gradients in a second one with
 * the same layout, BatchNorm running statistics in a third (not trained);
 * cnn14t_tensor() lists them with the published names, in a fixed order.
 *
 * Legend: B clips in the batch, T frames, M mel bins, C channels, E embedding. */
#ifndef WSAC_CNN14_TRAIN_H
#define WSAC_CNN14_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#define CNN14T_MAX_BLOCKS 24

typedef struct {
    const char *name; /* published name, e.g. audio_encoder.audio_enc.conv_block1.conv1.weight */
    int ndim;
    int64_t shape[4];
    size_t off, numel; /* in the parameter block (or the buffer block for running statistics) */
    int buffer;        /* 1: a running statistic (buffers), 0: a parameter */
} cnn14t_tensor;

typedef struct {
    /* configuration */
    int n_mels, nblocks, channels[CNN14T_MAX_BLOCKS], embed;
    float bn_eps, momentum, dropout; /* 1e-5, 0.1 (nn.BatchNorm2d), 0.2 (cnns.py) */
    /* SpecAugment after bn0 in training mode (WavCaps cnns.py Cnn14.forward with
     * settings/train.yaml spec_augmentation: True; torchlibrosa 0.0.9
     * SpecAugmentation(time_drop_width=64, time_stripes_num=2, freq_drop_width=8,
     * freq_stripes_num=2)): per clip, spec_tstripes stripes of frames and
     * spec_fstripes stripes of mel bins set to 0, each of a width uniform in
     * 0..width-1 and a start uniform over the places it fits. On (1) after
     * cnn14t_load; 0 turns it off (clap-train --no-augment). Applied only when
     * cnn14t_forward_train is given keys, like dropout. */
    int specaug, spec_twidth, spec_tstripes, spec_fwidth, spec_fstripes;
    /* tensors */
    int ntensors;
    cnn14t_tensor *t;
    size_t nparams, nbuffers;
    float *params, *grads, *buffers;
    /* activations of the last training forward pass, grown on demand */
    int B, T;
    float *mel;                   /* [B, T, M] the input, kept for bn0's backward */
    float *x[CNN14T_MAX_BLOCKS + 1];  /* x[0] = bn0 output; x[k+1] = block k's output after dropout */
    float *z1[CNN14T_MAX_BLOCKS], *a1[CNN14T_MAX_BLOCKS], *z2[CNN14T_MAX_BLOCKS], *a2[CNN14T_MAX_BLOCKS];
    uint8_t *mask[CNN14T_MAX_BLOCKS]; /* dropout keep masks (all 1 when dropout was off) */
    int dropped;                  /* the last forward pass applied dropout */
    int specced;                  /* the last forward pass applied SpecAugment */
    int *stripes;                 /* [B, spec_tstripes + spec_fstripes, 2]: its stripes (start, width), time first */
    float *stats;                 /* batch means and rstds of every BatchNorm */
    float *feat, *hid;            /* [B, C_last], [B, E] (after ReLU) */
    int *argmax;                  /* [B, C_last] */
    float *cols, *d0, *d1, *d2;   /* conv scratch, gradient ping-pong buffers */
    size_t cap_act, cap_cols;
} cnn14t;

/* The audio tower of a wsac CLAP model file (what clap-audio reads), copied
 * into a training model; NULL with a reason in err. */
cnn14t *cnn14t_load(const char *path, char *err, size_t errlen);
void cnn14t_free(cnn14t *m);
/* Index of the tensor called name, or -1 */
int cnn14t_find(const cnn14t *m, const char *name);

/* e[B, E] = the unnormalised embeddings of mel[B, T, M], in training mode:
 * batch statistics (running statistics updated); when drop_keys is not NULL
 * (drop_keys[b]: a key for item b's random draws, e.g. a hash of (seed,
 * epoch, item)) dropout (block k's mask of item b keyed by drop_keys[b] and
 * k) and, if m->specaug, SpecAugment (item b's stripes keyed by drop_keys[b]
 * alone: the same whatever the batch, its order or the threads).
 * The activations are kept for cnn14t_backward. */
void cnn14t_forward_train(cnn14t *m, float *e, const float *mel, int B, int T, const uint64_t *drop_keys);
/* The same in eval mode (what clap-audio computes: running statistics, no
 * dropout); nothing is updated. */
void cnn14t_forward_eval(cnn14t *m, float *e, const float *mel, int B, int T);
/* grads += d loss / d params, given de[B, E] = d loss / d e of the last
 * training forward pass */
void cnn14t_backward(cnn14t *m, const float *de);
/* The same from dhid[B, E] = d loss / d relu(audio_proj.0(feat)), the hidden
 * layer of the head (PANNs-style tagging on it: tag_train.c); audio_proj.2's
 * gradients are left as they are. */
void cnn14t_backward_hidden(cnn14t *m, const float *dhid);

/* SpecAugment's stripes of one clip of T frames and M mel bins, keyed by
 * key: stripes[(nt + nf) * 2] = (start, width), the nt time stripes first
 * (what cnn14t_forward_train draws for an item of that key). */
void cnn14t_spec_stripes(const cnn14t *m, int *stripes, int T, int M, uint64_t key);

#endif
