/* passt.h - SALSA's audio tower: PaSST-S (hear21passt models/passt.py, class
 * PaSST, as SALSA's models/audio/passt.py builds it: passt_s_p16_s16_128_ap468)
 * with SALSA's long-audio rule and projection (experiments/ex_dcase24.py,
 * models/audio/base.py): PaSST mel [T, M] (wav2mel --frontend passt) ->
 * embedding [E].
 *
 *   the input is nseg segments of S frames (S = 1 + (seg_samples-1)/hop:
 *   10 s = 1000 frames; 3 segments = SALSA's fixed 30 s). Exact (as
 *   published, base.py split_audio): the mels of the clip's zero-padded
 *   seg_samples waveform pieces, each its own STFT, concatenated (wav2mel
 *   --frontend passt). Approximate (a whole-clip mel, wav2mel --whole-clip):
 *   its frames sliced, frames past the clip's end the mel of silence
 *   (pad_value), frames past 30 s dropped; the frames whose STFT window
 *   crosses a cut differ.
 *   segment k is kept if k < ceil(nseg * min(N, nseg*seg_samples) / (nseg*seg_samples)),
 *   N the clip's true length in samples (forward_audio's mask); per kept segment:
 *     x = conv2d(mel^T [1, M, S], patch ph x pw, stride sh x sw) [D, Fp, Tp]
 *     x = x + time_pos[:, :, :, :Tp] + freq_pos       (time cropped when Tp < grid_t)
 *     x = [cls + pos0; dist + pos1; x flattened f-major]   [2 + Fp*Tp, D]
 *     L pre-LN blocks: x += proj(attn(LN1(x))); x += fc2(gelu(fc1(LN2(x))))
 *     x = LN(x); feature = (x[0] + x[1]) / 2             [D]
 *   f = mean of the kept segments' features; emb = normalize(W f + b)
 *
 * Every size comes from the file (tensors and __metadata__ clap.audio.*), so
 * the same code runs PaSST-S and small test models. llama2.c split: a
 * read-only model (weights used in place in the mapped file) and a run state
 * (buffers grown on demand). Layers are the shared kernels (nn.h, kernels.h,
 * kernels_vit.h) on the gemm/parfor threads: bit-identical for any thread
 * count.
 *
 * Legend: M mel bins, S frames a segment, D width, H heads, L blocks, Hm MLP
 * width, Fp x Tp patch grid of a segment, N = 2 + Fp*Tp tokens, B kept
 * segments, E embedding width. */
#ifndef WSAC_PASST_H
#define WSAC_PASST_H

#include <stddef.h>

#include "safetensors.h"

typedef struct {
    int n_mels;           /* M: image height */
    int dim, depth, heads, mlp;   /* D, L, H, Hm */
    int ph, pw, sh, sw;   /* patch and stride (frequency, time) */
    int grid_f, grid_t;   /* freq_new_pos_embed / time_new_pos_embed sizes */
    int Fp, Tp, ntok;     /* a segment's grid and N */
    int embed;            /* E */
    float ln_eps;         /* 1e-6 (timm's partial(nn.LayerNorm, eps=1e-6)) */
    long seg_samples;     /* 320000: 10 s at 32 kHz */
    int hop;              /* 320 */
    int sr;               /* 32000 (clap.audio.sr; 0 when the file lacks it) */
    int nseg;             /* 3: the fixed 30 s */
    int seg_frames;       /* S */
    float pad_value;      /* the PaSST mel of silence, (log(1e-5) + 4.5) / 5 */
    char frontend[32];    /* "passt": the mel stream's header must say so */
} passt_config;

typedef struct {
    const float *ln1_w, *ln1_b, *qkv_w, *qkv_b, *proj_w, *proj_b;
    const float *ln2_w, *ln2_b, *fc1_w, *fc1_b, *fc2_w, *fc2_b;
} passt_block;

typedef struct {
    const float *patch_w, *patch_b;      /* [D, 1, ph, pw], [D] */
    const float *cls, *dist, *tok_pos;   /* [D], [D], [2, D] */
    const float *freq_pos, *time_pos;    /* [D, grid_f], [D, grid_t] */
    passt_block *blocks;                 /* [L] */
    const float *norm_w, *norm_b;        /* [D] */
    const float *proj_w, *proj_b;        /* [E, D], [E] */
} passt_weights;

typedef struct {
    passt_config cfg;
    passt_weights w;
    st_file *file;
} passt_model;

/* 1 if the file's __metadata__ says its audio tower is PaSST (clap.audio.arch). */
int passt_is_passt_file(const st_file *f);

/* Open a SALSA model file (scripts/convert.py salsa); check every audio tensor
 * by name, dtype and shape. NULL with the reason (naming the tensor or key). */
passt_model *passt_load(const char *path, char *err, size_t errlen);
void passt_free(passt_model *m);

typedef struct {
    int threads;
    size_t cap_tok;   /* rows the buffers hold */
    float *seg, *cols, *x, *h, *qkv, *ao, *mlp, *att, *mean, *rstd, *feat;
    int *off, *len;
} passt_state;

/* threads <= 0: every online core (gemm_init). Returns the count. */
int passt_state_init(passt_state *s, const passt_model *m, int threads);
void passt_state_free(passt_state *s);

/* Why mel[T, M] cannot be encoded, else NULL. */
const char *passt_input_error(const passt_model *m, const float *mel, long T, long M, char *buf, size_t len);

/* The segments SALSA keeps for a clip of nsamples samples (<= 0: estimated
 * from T frames as (T - 1) * hop + 1). */
int passt_kept_segments(const passt_model *m, long T, long nsamples);

/* For a segmented stream (wav2mel --frontend passt: the mels of the clip's
 * zero-padded seg_samples pieces, each its own STFT, the kept ones
 * concatenated): why mel[T, M] of a clip of nsamples samples cannot be
 * encoded exactly (no true length, T not whole segments, fewer segments than
 * kept), else NULL. */
const char *passt_segments_error(const passt_model *m, long T, long nsamples, char *buf, size_t len);

/* emb[E] = the L2-normalised embedding of mel[T, M]. */
void passt_forward(passt_state *s, const passt_model *m, const float *mel, long T, long nsamples, float *emb);

#endif
