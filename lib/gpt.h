/* gpt.h - the WSAC prefix decoder (../shared/reference/wsac.md C, C.1, D):
 * a mapping Linear(E -> C) turns a CLAP embedding into a one-token prefix at
 * position 0, followed by a GPT-2 language model (pre-LN blocks, gelu_new,
 * learned positions, output head tied to the token embedding) over BERT
 * WordPiece ids. The prefix position predicts [CLS]; generation stops at [SEP].
 *
 * llm.c conventions: every layer is a pair name_forward/name_backward with the
 * outputs first and the sizes last, a shape comment on every pointer, and a
 * naive reference twin where a fast path exists. llama2.c split: gpt_config
 * (sizes), gpt_weights (read-only pointers: into the mmap'ed model file when
 * decoding, into one flat buffer when training), and mutable run state
 * (gpt_train_state for training, gpt_cache for incremental decoding).
 *
 * Legend: B sequences, S max target tokens, T positions of one sequence,
 * N packed rows (all positions of all sequences, one after another), C width
 * (n_embd), NH heads, hs = C/NH, F MLP width (n_inner = 4C), V rows of the
 * token embedding (vocab_size), P positions (n_positions), E prefix input
 * width (the CLAP embedding, 1024).
 *
 * Weights keep the published layouts: nn.Linear [out, in] for the mapping,
 * HF Conv1D [in, out] inside GPT-2 (columns of c_attn are q | k | v). */
#ifndef WSAC_GPT_H
#define WSAC_GPT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels.h"
#include "safetensors.h"

/* The threads of everything below (n <= 0: every online core); returns the
 * count. Matrix products are cut into one-thread sgemm slabs on these threads
 * (OpenBLAS itself then runs one thread), unless the environment says
 * WSAC_GEMM_THREADS=openblas: OpenBLAS threads each whole product instead. */
int gpt_set_threads(int n);

typedef struct {
    int E;     /* prefix input width: clap_project.model.0.weight is [C, E] */
    int C;     /* n_embd */
    int L;     /* n_layer */
    int NH;    /* n_head */
    int F;     /* n_inner */
    int V;     /* vocab_size: rows of wte */
    int P;     /* n_positions: rows of wpe */
    float eps; /* layer_norm_epsilon */
} gpt_config;

typedef struct {
    float *ln1_w, *ln1_b;  /* [C] */
    float *attn_w;         /* [C, 3C] */
    float *attn_b;         /* [3C] */
    float *proj_w;         /* [C, C] */
    float *proj_b;         /* [C] */
    float *ln2_w, *ln2_b;  /* [C] */
    float *fc_w;           /* [C, F] */
    float *fc_b;           /* [F] */
    float *fcproj_w;       /* [F, C] */
    float *fcproj_b;       /* [C] */
} gpt_layer;

typedef struct {
    float *map_w;          /* [C, E] */
    float *map_b;          /* [C] */
    float *wte;            /* [V, C], also the output head */
    float *wpe;            /* [P, C] */
    gpt_layer *h;          /* [L] */
    float *lnf_w, *lnf_b;  /* [C] */
} gpt_weights;

/* One tensor of the model: its published state_dict name, shape and where
 * its pointer lives in a gpt_weights. */
typedef struct {
    char name[72];
    int ndim;
    int64_t shape[2];
    size_t numel;
    float **ptr;
} gpt_tensor;

/* The tensors in a fixed order (the order of the flat training buffers and
 * of checkpoints). Returns the count (4 + 12 L + 2); out may be NULL. w->h
 * must be allocated (gpt_weights_init). */
int gpt_tensor_list(const gpt_config *c, gpt_weights *w, gpt_tensor *out);
size_t gpt_num_params(const gpt_config *c);
void gpt_weights_init(gpt_weights *w, int L); /* zeroed pointers, h allocated */
void gpt_weights_free(gpt_weights *w);        /* frees h only */
/* Point every tensor into flat[gpt_num_params], in gpt_tensor_list order. */
void gpt_weights_carve(const gpt_config *c, gpt_weights *w, float *flat);

/* The configuration from a model file's __metadata__ (decoder.layers,
 * decoder.heads, decoder.ln_eps, decoder.activation, decoder.vocab_size) and
 * tensor shapes. 0, or -1 with a reason naming the file. */
int gpt_read_config(st_file *f, gpt_config *c, char *err, size_t errlen);
/* Look up every tensor with its expected shape. flat == NULL: w points into
 * the file's mapping (read-only); else the values are copied into flat (in
 * gpt_tensor_list order) and w points there. 0, or -1 with a reason. */
int gpt_load_weights(st_file *f, const gpt_config *c, gpt_weights *w, float *flat, char *err, size_t errlen);
/* A sanity check of the sizes (positive, NH divides C, ...); NULL if fine. */
const char *gpt_config_check(const gpt_config *c);

/* The layer kernels (conv1d, layernorm, gelu_new, attention, dropout,
 * cross-entropy) are in kernels.h, shared with the other models. */

/* ------------------------------------------------------------ training pass */

/* Activations of one batch, sized for at most maxB sequences of S targets.
 * Sequence b of a batch has targets t[b, 0..S-1] (pad = ignored) and runs
 * over positions 0..len[b]-1, len[b] = 1 + the index of its last non-pad
 * target: position 0 is the prefix, position i >= 1 reads t[b, i-1], and
 * position i predicts t[b, i]. Positions after the last target and the
 * published extra position S (whose logits the published code drops) are not
 * computed: they cannot influence the loss, so loss and gradients are those
 * of the published padded batch. */
typedef struct {
    int maxB, S, maxN, chunk;
    int B, N, M;       /* sequences, rows, rows with a target */
    int *off, *len;    /* [B] */
    int *in_tok;       /* [N] input token of each row (-1 for the prefix row) */
    int *tgt;          /* [N] target of each row, -1 if none (pad) */
    int *pos;          /* [N] position of each row */
    int *sel;          /* [M] rows with a target */
    int *seltgt;       /* [M] their targets */
    float *x0;         /* [N, C] embeddings: prefix/token + position */
    float *pre;        /* [B, C] prefix projections */
    /* per layer, [L][...] */
    float *ln1, *ln1_mean, *ln1_rstd; /* [L, N, C], [L, N], [L, N] */
    float *qkv;        /* [L, N, 3C] */
    float *att;        /* [L, B, NH, S, S] */
    float *atty;       /* [L, N, C] */
    float *res2;       /* [L, N, C] x + attention */
    float *ln2, *ln2_mean, *ln2_rstd;
    float *fch;        /* [L, N, F] before GELU */
    float *fcg;        /* [L, N, F] after GELU */
    float *res3;       /* [L, N, C] block output */
    float *lnf, *lnf_mean, *lnf_rstd; /* [N, C], [N], [N] */
    /* head and backward scratch */
    float *hsel;       /* [M, C] ln_f rows with a target */
    float *dhsel;      /* [M, C] */
    float *logits;     /* [chunk, V] */
    float *rowloss;    /* [maxN] */
    /* dropout (train mode; resid/embd/attn_pdrop of the GPT-2 config):
     * set p and key before gpt_forward; p = 0: eval mode */
    float dropout;
    uint64_t key;
    uint8_t *m_emb;    /* [N, C] after the embeddings */
    uint8_t *m_att;    /* [L, B, NH, S, S] attention probabilities */
    uint8_t *m_res2;   /* [L, N, C] attention output */
    uint8_t *m_res3;   /* [L, N, C] MLP output */
    float *dtmp;       /* [N, C] */
    float *dres;       /* [N, C] gradient of the residual stream */
    float *dbig;       /* [N, max(3C, F)] */
    float *dbig2;      /* [N, F] */
    float *dsmall;     /* [N, C] */
    double loss;       /* mean over the M targets */
} gpt_train_state;

gpt_train_state *gpt_train_state_new(const gpt_config *c, int maxB, int S);
void gpt_train_state_free(gpt_train_state *s);
/* Lay out a batch: tok[B, S] targets, pad id ignored. lens == NULL: derived
 * as above; else lens[b] positions are run (tests: every logit). */
void gpt_layout(gpt_train_state *s, const int32_t *tok, int B, int pad, const int *lens);
/* Forward pass up to ln_f; emb[B, E] are the prefix inputs. */
void gpt_forward(gpt_train_state *s, const gpt_config *c, const gpt_weights *w, const float *emb);
/* Loss (mean cross-entropy over the rows with a target). grads != NULL:
 * also the backward pass of the whole model, adding to grads (zero it first
 * for one step); emb as given to gpt_forward. Returns the loss. */
double gpt_loss_backward(gpt_train_state *s, const gpt_config *c, const gpt_weights *w, gpt_weights *grads,
                         const float *emb);
/* Logits of every row (tests): out[N, V] */
void gpt_logits(const gpt_train_state *s, const gpt_config *c, const gpt_weights *w, float *out);

/* ------------------------------------------------------------ decoding */

/* KV cache for R slots of up to T positions, and scratch for R rows. */
typedef struct {
    int R, T;
    float *kc, *vc;      /* [L, R, T, C] */
    float *x, *ln, *qkv, *atty, *tmp, *fch; /* [R, C], [R, C], [R, 3C], [R, C], [R, C], [R, F] */
    float *att;          /* [R, NH, T] */
} gpt_cache;

gpt_cache *gpt_cache_new(const gpt_config *c, int R, int T);
void gpt_cache_free(gpt_cache *kv);
/* One new position for each of A rows: in[A, C] is the input embedding
 * (prefix projection or wte row) before the position embedding; row a uses
 * slot[a] at position pos[a] (its cache holds 0..pos[a]-1). out[A, C] is the
 * ln_f output; the slots' caches gain position pos[a]. */
void gpt_step(gpt_cache *kv, const gpt_config *c, const gpt_weights *w, float *out, const float *in, const int *slot,
              const int *pos, int A);
/* Copy positions 0..n-1 of src's slot sslot to dst's slot dslot, every layer. */
void gpt_cache_copy(gpt_cache *dst, int dslot, const gpt_cache *src, int sslot, int n, const gpt_config *c);

/* Prefix projections: out[n, C] = emb[n, E] @ map_w^T + map_b */
void gpt_prefix(float *out, const gpt_config *c, const gpt_weights *w, const float *emb, int n);

typedef struct {
    int max_len;  /* generated tokens at most, the first and the stop token included (30) */
    int beam;     /* 1: greedy */
    int vt;       /* ids >= vt are never emitted (the tokenizer's vocabulary size) */
    int stop;     /* stop token ([SEP]) */
} gpt_gen_opts;

typedef struct gpt_gen gpt_gen;
/* A generator for batches of up to nmax prefixes. */
gpt_gen *gpt_gen_new(const gpt_config *c, const gpt_weights *w, const gpt_gen_opts *o, int nmax);
void gpt_gen_free(gpt_gen *g);
/* For n <= nmax embeddings emb[n, E]: ids[i * max_len ...] gets the
 * generated ids of prefix i (the first generated token and the stop token
 * included) and nids[i] their count. Each prefix's result does not depend on
 * the others in the batch. */
void gpt_generate(gpt_gen *g, const float *emb, int n, int32_t *ids, int *nids);
/* Floating-point operations of the last gpt_generate (matrix products). */
double gpt_gen_flops(const gpt_gen *g);

/* The bert-base-uncased vocab.txt built into the binary (lib/gpt_vocab.c). */
const char *gpt_builtin_vocab(size_t *len);

#endif
