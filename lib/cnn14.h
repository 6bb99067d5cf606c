/* cnn14.h - the WavCaps CNN14 CLAP audio encoder: log mel [T, n_mels] -> embedding [E].
 *
 * The model of wsac.md A.4-A.5 (WavCaps retrieval/models/cnns.py class Cnn14,
 * ase_model.py encode_audio), after the front end that wav2mel computes:
 *
 *   x = bn0(mel)                                   BatchNorm over the mel bins (eval)
 *   for each ConvBlock k = 1..N:                   N read from the file (6 for CNN14)
 *       x = relu(bn1(conv3x3(x)))                  3x3, padding 1, no bias
 *       x = relu(bn2(conv3x3(x)))
 *       x = avg_pool2d(x, 2)                       floor: an odd last row/column is dropped
 *   x = mean over frequency                        [C, T']
 *   feat = max over time + mean over time          [C]
 *   emb = normalize(W2 relu(W0 feat + b0) + b2)    audio_proj, L2 norm (eps 1e-12)
 *
 * llama2.c split: a read-only model (config + weights, shared, the big
 * tensors used in place in the mapped file) and a run state (buffers reused
 * from one clip to the next, grown when a longer clip comes). llm.c-style
 * layer functions live in cnn14.c with shape comments; the convolutions run
 * as im2col + sgemm or Winograd F(2x2, 3x3) + sgemm, and have a naive twin
 * (direct loops in double), used by cnn14_forward_naive() so tests can
 * compare them.
 *
 * Legend: C channels (Cin, Cout), T frames (time), F frequency bins at the
 * current resolution, M n_mels, E embedding width, K = Cin*9, P = T*F. */
#ifndef WSAC_CNN14_H
#define WSAC_CNN14_H

#include <pthread.h>
#include <stddef.h>

#include "safetensors.h"

typedef struct {
    int n_mels;     /* M: width of bn0, the mel bands the model takes */
    int nblocks;    /* N: conv_block1..N found in the file */
    int *channels;  /* [N] output channels of each block (block 1's input has 1) */
    int embed;      /* E: audio_proj width */
    float bn_eps;   /* BatchNorm eps (__metadata__ clap.audio.bn_eps; nn.BatchNorm2d's 1e-5) */
    int min_frames; /* 2^N: fewer frames leave nothing after the N pools */
} cnn14_config;

/* One 3x3 convolution with its BatchNorm folded into a per-channel affine map
 * applied after the product, exactly as ATen's eval batch_norm does it
 * (batch_norm_cpu_collect_linear_and_constant_terms): alpha = weight /
 * sqrt(var + eps), beta = bias - mean * alpha, y = x * alpha + beta, in float. */
typedef struct {
    int cin, cout;
    const float *w; /* [Cout, Cin, 3, 3] = [Cout, K] row-major, in the mapped file */
    float *wino;    /* [16, Cout, Cin] Winograd F(2x2, 3x3) transform of w, or NULL: im2col */
    float *scale;   /* [Cout] alpha */
    float *shift;   /* [Cout] beta */
    const float *bn_raw[4]; /* [Cout] weight, bias, running_mean, running_var (naive path) */
} cnn14_conv;

typedef struct {
    float *bn0_scale, *bn0_shift; /* [M] bn0 folded the same way */
    const float *bn0_raw[4];      /* [M] its weight, bias, running_mean, running_var */
    cnn14_conv *conv;             /* [2N]: block k's conv1 at 2(k-1), conv2 at 2(k-1)+1 */
    const float *proj0_w;         /* [E, C_last] audio_proj.0 */
    const float *proj0_b;         /* [E] */
    const float *proj2_w;         /* [E, E] audio_proj.2 */
    const float *proj2_b;         /* [E] */
} cnn14_weights;

typedef struct {
    cnn14_config cfg;
    cnn14_weights w;
    st_file *file;  /* owns the mapping the weights point into */
    float *folded;  /* one allocation for every scale/shift vector */
} cnn14_model;

/* How the 3x3 convolutions are computed (the first, with one input channel,
 * is always im2col):
 *   CNN14_AUTO      Winograd where its transformed weights take <= 64 MB
 *                   a layer (CNN14's blocks 1-5), im2col elsewhere
 *   CNN14_IM2COL    im2col + sgemm everywhere
 *   CNN14_WINOGRAD  Winograd everywhere (for tests: 16/9 of the weights' memory) */
enum { CNN14_AUTO, CNN14_IM2COL, CNN14_WINOGRAD };

/* Open a wsac CLAP model file and check every audio tensor's dtype and shape
 * against what the architecture needs, sizes taken from the file itself;
 * transform the weights of the convolutions that `algo` computes by Winograd.
 * NULL with a message naming the file and the tensor or metadata key in err. */
cnn14_model *cnn14_load(const char *path, int algo, char *err, size_t errlen);
void cnn14_free(cnn14_model *m);

/* Activation buffers for one clip at a time, grown on demand, never shrunk;
 * and the threads' scratch. */
typedef struct {
    int threads;       /* the encoder's own threads; OpenBLAS runs single-threaded in each */
    float *act[2];     /* ping-pong: [0] block input / pooled output, [1] conv1 output */
    size_t act_cap[2]; /* floats */
    float **cols;      /* [threads] im2col tiles [K, Pt], or Winograd V [16, Cin, tiles] */
    float **tile;      /* [threads] conv2 tiles before pooling [Cout, Pt], or Winograd M [16, Cout, tiles] */
    size_t cols_cap, tile_cap;
    struct thread_pool *pool; /* the threads, started once (lib/pool.h) */
    float *feat;       /* [C_last] */
    float *hid;        /* [E] */
    int tile_cols;     /* output positions per im2col tile (0: the default, 512) */
} cnn14_state;

/* threads <= 0: every online core. Sets OpenBLAS to one thread (nn_set_threads):
 * the encoder splits each layer over its own threads. Returns the count. */
int cnn14_state_init(cnn14_state *s, const cnn14_model *m, int threads);
void cnn14_state_free(cnn14_state *s);

/* Why mel[T, M] cannot be encoded (NULL if it can): wrong number of bands,
 * fewer than min_frames frames, a NaN or infinite value, or activations too
 * large for this machine's memory. */
const char *cnn14_input_error(const cnn14_model *m, const float *mel, long T, long M, char *buf, size_t len);

/* emb[E] = the L2-normalised embedding of mel[T, M] (checked first with
 * cnn14_input_error), on s->threads threads; bit-identical run to run at a
 * fixed thread count. */
void cnn14_forward(cnn14_state *s, const cnn14_model *m, const float *mel, int T, float *emb);

/* The same with the naive kernels: direct convolution with double
 * accumulation, separate BN/ReLU/pool passes (slow; a reference for tests). */
void cnn14_forward_naive(const cnn14_model *m, const float *mel, int T, float *emb);

#endif
