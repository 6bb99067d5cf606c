/* passt_train.h - SALSA's audio tower, PaSST-S (hear21passt models/passt.py,
 * class PaSST, passt_s_p16_s16_128_ap468) with SALSA's projection, in
 * training mode: forward with structured patchout, dropout and stochastic
 * depth and saved activations, and the backward pass to every parameter;
 * from the shared kernels (kernels.h: layer norm, non-causal attention,
 * exact GELU, dropout, linear; kernels_vit.h: the patch embedding). The
 * inference model is passt.h; this is the same architecture, sizes from the
 * model file. Per 10-s segment (one mel image [M, S]):
 *
 *   x = conv2d(mel^T, ph x pw, stride sh x sw) + time_pos[:, :Tp] + freq_pos    [D, Fp, Tp]
 *   x = x[:, :, tkeep] then x[:, fkeep, :]        structured patchout (training; passt.py
 *                                                 forward_features: time first, then frequency)
 *   x = pos_drop([cls + pos0; dist + pos1; x flattened f-major])                [N, D]
 *   per block: x += drop_path(proj_drop(proj(attn_drop(attn(LN1 x)))))
 *              x += drop_path(drop(fc2(drop(gelu(fc1(LN2 x))))))
 *   y = LN(x); f = (y[0] + y[1]) / 2; e = W f + b                              [E], unnormalised
 *
 * SALSA averages the features of a clip's kept segments before its
 * projection; the projection is affine, so the mean of the segments' e is the
 * same thing (the caller averages; clap_train's job).
 *
 * Published training-time behaviour (passt.py PaSST.__init__ defaults; SALSA's
 * get_model_passt call and hear21passt's get_model pass no rate, so all three
 * rates are 0 there; SALSA's experiments/ex_dcase24.py sets s_patchout_t 15,
 * s_patchout_f 2). Each is a field, set after passtt_load/passtt_new:
 *   s_patchout_t, s_patchout_f   15, 2: time columns / frequency rows dropped;
 *   drop_rate       0: pos_drop, Attention.proj_drop and both Mlp drops;
 *   attn_drop_rate  0: dropout on the attention probabilities;
 *   drop_path_rate  0: stochastic depth, block l's rate linspace(0, rate, L)[l]
 *                   (timm DropPath: per item, the branch times mask/keep).
 * Differences from the published code, on purpose: passt.py draws ONE
 * patchout (torch.randperm) for the whole batch; here item b's kept columns
 * and rows come from its key, so an item's result does not depend on the
 * batch it is in, the threads or an MPI split (for passt.py's one draw per
 * batch, draw once with passtt_patchout and pass it as every item's tkeep
 * and fkeep; the same key for every item would also give every item the same
 * dropout masks). When a segment has fewer than
 * s_patchout_t + 1 patch columns (or rows), at least one is kept (passt.py
 * would keep none and fail).
 *
 * Parameters and gradients are flat blocks (llm.c) with the published names
 * (passtt_tensor), in PaSST's named_parameters() order, then
 * project_audio.0.weight and .bias.
 *
 * Legend: B segments in the batch, M mel bins, S frames a segment, D width,
 * H heads, L blocks, Hm MLP width, Fp x Tp patch grid, Fk x Tk the kept grid,
 * N = 2 + Fk*Tk tokens a segment, K = ph*pw, E embedding. */
#ifndef WSAC_PASST_TRAIN_H
#define WSAC_PASST_TRAIN_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[4];
    size_t off, numel;
} passtt_tensor;

typedef struct {
    int n_mels;                 /* M */
    int dim, depth, heads, mlp; /* D, L, H, Hm */
    int ph, pw, sh, sw;         /* patch and stride (frequency, time) */
    int grid_f, grid_t;         /* freq_new_pos_embed / time_new_pos_embed positions */
    int embed;                  /* E */
    float ln_eps;               /* 1e-6 (passt.py: partial(nn.LayerNorm, eps=1e-6)) */
} passtt_config;

/* the saved activations of one block */
typedef struct {
    float *xin;          /* [B*N, D] the block's input (the residual stream) */
    float *h1, *m1, *s1; /* LN1 output [B*N, D], its mean and rstd [B*N] */
    float *qkv, *att;    /* [B*N, 3D], softmax [B, H, N, N] */
    float *ao;           /* [B*N, D] attention output (before proj) */
    float *x1;           /* [B*N, D] after the attention branch */
    float *h2, *m2, *s2; /* LN2 */
    float *f1, *g1;      /* [B*N, Hm] fc1 output, GELU output (after dropout) */
    uint8_t *amask, *pmask, *gmask, *fmask; /* dropout keep masks: attention, proj, GELU, fc2 */
    uint8_t *dp;         /* [B, 2] drop_path keep bits: the attention and MLP branches */
} passtt_block_acts;

typedef struct {
    passtt_config c;
    int s_patchout_t, s_patchout_f;                 /* 15, 2 */
    float drop_rate, attn_drop_rate, drop_path_rate; /* 0, 0, 0 */
    /* 1: keep only each block's input and recompute the block in the backward
     * pass (one more forward pass of time; the masks are redrawn from the
     * keys, so the gradients are the same bits). Saved floats a token a block:
     * 0: 8D + 2Hm + H*N (PaSST-S, N = 284: 49 KB); 1: D (3 KB), plus one
     * block's set for the batch. Set before passtt_forward. */
    int recompute;
    int ntensors;
    passtt_tensor *t;
    size_t nparams;
    float *params, *grads;
    /* the last forward pass */
    int B, S, Fp, Tp, Fk, Tk, N;
    int dropped, dpath; /* dropout / stochastic depth applied */
    int *tkeep, *fkeep;  /* [B, Tk], [B, Fk]: kept columns / rows, ascending */
    float *cols;         /* [B, Fp*Tp, K] the patch embedding's im2col */
    uint8_t *posmask;    /* [B*N, D] pos_drop */
    passtt_block_acts *la; /* [L]; with recompute only their xin */
    passtt_block_acts work; /* recompute: the one block's set, xin pointing into la */
    uint64_t *keys;         /* [B] the last forward pass's keys (recompute redraws the masks) */
    int cap_recompute;      /* the buffers' layout */
    float *xL;           /* [B*N, D] the last block's output */
    float *tok, *tm, *ts; /* [B, 2, D] tokens 0, 1 before the final LN; its mean, rstd [2B] */
    float *feat;         /* [B, D] */
    float *d[4];         /* gradient scratch */
    int *off, *len;      /* [B] */
    size_t capR, capP;
    int capB, capN;
} passtt;

/* A model of the given sizes, parameters 0 (a test fills them). */
passtt *passtt_new(const passtt_config *c);
/* The audio tower of a SALSA model file (passt_load: scripts/convert.py
 * salsa) copied into a training model; NULL with a reason in err. */
passtt *passtt_load(const char *path, char *err, size_t errlen);
void passtt_free(passtt *m);
int passtt_find(const passtt *m, const char *name);

/* The kept patch columns tkeep[Tk] and rows fkeep[Fk] (ascending) of an item
 * of key `key` on a Fp x Tp grid: a uniformly random subset of each, as
 * torch.randperm(T)[:T - s].sort() draws it; returns Tk * 65536 + Fk. */
int passtt_patchout(const passtt *m, int *tkeep, int *fkeep, int Fp, int Tp, uint64_t key);

/* e[B, E] = the unnormalised embeddings of B segments mel[B, S, M] (frames
 * major, as wav2mel writes them). keys NULL: no patchout, dropout or
 * stochastic depth (passt.py in eval mode, activations still kept); else
 * keys[b] keys item b's patchout and masks (given tkeep/fkeep override the
 * patchout: [B, Tk] and [B, Fk] with Tk, Fk as the counts imply; tests).
 * Needs (M - ph) / sh + 1 == grid_f and (S - pw) / sw + 1 <= grid_t (dies
 * otherwise: the caller checks the model against its input once).
 * threads: the gemm/parfor threads the caller set (gemm_init). */
void passtt_forward(passtt *m, float *e, const float *mel, int B, int S, const uint64_t *keys, const int *tkeep,
                    const int *fkeep);
/* grads += d loss / d params given de[B, E] of the last forward pass */
void passtt_backward(passtt *m, const float *de);

#endif
