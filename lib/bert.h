/* bert.h - the CLAP text encoders, forward only: WavCaps' BERT (post-LN) +
 * text_proj, and SALSA's RoBERTa (the same post-LN encoder) + project_sentence.
 *
 * What it computes (../shared/reference/wsac.md B; HF transformers BertModel,
 * add_pooling_layer=False, then ase_model.encode_text):
 *
 *   x   = LayerNorm(word[id] + position[p] + token_type[0])            [L, H]
 *   per layer:  a = softmax(Q K^T / sqrt(d)) V per head (d = H / heads)
 *               x = LayerNorm(x + a Wo^T + bo)                            post-LN
 *               x = LayerNorm(x + gelu_erf(x Wi^T + bi) Wf^T + bf)
 *   emb = normalize(Linear2(relu(Linear0(x[0]))))                        the [CLS] row
 *
 * RoBERTa (clap.text.arch = roberta; HF RobertaModel, add_pooling_layer=False,
 * then SALSA's ex_dcase24.py forward_sentence with use_first_token): the same
 * encoder; tensors under sentence_embedding_model.*; the token at place j of
 * a sequence (no padding: SALSA's right padding is masked out) has position
 * id pad_id + 1 + j (create_position_ids_from_input_ids: cumsum of the mask
 * + padding_idx); one token type; the first token (<s>) is pooled and
 *   emb = normalize(project_sentence.0(x[0]))                            one Linear
 *
 * Sizes come from the model file (tensor shapes and clap.text.* metadata),
 * never from constants, so the same code runs BERT-base and reduced test
 * models. Split as in llama2.c: a read-only model (config, weights: pointers
 * into the mapped file plus a repacked copy of the matrices) and a reusable
 * run state (activations, threads) that grows to the largest batch seen.
 *
 * A batch is B token sequences of different lengths, concatenated without
 * padding: every linear layer runs once over all sum(L) tokens, attention
 * runs per sequence over exactly its own tokens (HF pads to the longest and
 * masks; the masked scores get exp() = 0, so both agree up to rounding).
 *
 * Kernels: the shared ones (bert.c's header): packed linear
 * (kernels_linear.h), attention_forward (kernels.h), gelu_erf_inplace and
 * layernorm_forward (nn.h).
 *
 * Determinism: every output value is computed by the same sequence of
 * floating-point operations whatever the batch composition, the position of
 * the sequence in the batch and the thread count (threads split output
 * columns, never a sum; one thread computes a whole (sequence, head) of
 * attention), so an embedding is bit-identical for any --batch and --threads
 * on one machine. The matrix-product variant (AVX-512, AVX2+FMA, generic C)
 * is picked at run time; the FMA variants agree bit for bit. Attention's
 * sgemms are OpenBLAS's (its kernel for the CPU, OPENBLAS_CORETYPE). */
#ifndef WSAC_BERT_H
#define WSAC_BERT_H

#include <stddef.h>
#include <stdint.h>

#include "kernels_linear.h"
#include "safetensors.h"

typedef struct {
    int vocab;        /* V: word embedding rows */
    int hidden;       /* H */
    int layers;
    int heads;        /* NH, H % NH == 0 */
    int head_dim;     /* d = H / NH */
    int intermediate; /* I: feed-forward width */
    int positions;    /* learned absolute positions */
    int types;        /* token types (only type 0 is used) */
    int embed;        /* E: text_proj output, the joint embedding size */
    int max_len;      /* tokens incl. [CLS] and [SEP] (clap.text.max_len) */
    float ln_eps;     /* clap.text.ln_eps */
    int arch;         /* BERT_ARCH_BERT (WavCaps) or BERT_ARCH_ROBERTA (SALSA): clap.text.arch */
    int pos_offset;   /* position id of a sequence's first token: 0, or RoBERTa's pad_id + 1 */
    int pad_id;       /* RoBERTa's <pad> id (clap.text.pad_id); -1 for BERT */
    int proj_layers;  /* 2: text_proj Linear, ReLU, Linear; 1: project_sentence Linear */
} bert_config;

enum { BERT_ARCH_BERT, BERT_ARCH_ROBERTA };

/* A matrix W[OC, C] (torch Linear weight) repacked for the packed-linear
 * kernel (kernels_linear.h): panels of 64 output columns, each [C][64]. */
typedef packed_linear bert_linear;

typedef struct {
    bert_linear qkv;          /* attention.self.{query,key,value} [H, H] stacked: [3H, H] */
    bert_linear o;            /* attention.output.dense [H, H] */
    const float *ln1_w, *ln1_b; /* attention.output.LayerNorm [H] */
    bert_linear fi;           /* intermediate.dense [I, H] */
    bert_linear fo;           /* output.dense [H, I] */
    const float *ln2_w, *ln2_b; /* output.LayerNorm [H] */
} bert_layer;

typedef struct {
    bert_config c;
    const float *word;        /* [V, H] embeddings.word_embeddings */
    const float *pos;         /* [positions, H] embeddings.position_embeddings */
    const float *type0;       /* [H] row 0 of embeddings.token_type_embeddings */
    const float *ln_w, *ln_b; /* [H] embeddings.LayerNorm */
    bert_layer *layer;        /* [layers] */
    bert_linear proj0, proj2; /* text_proj.0 [E, H], text_proj.2 [E, E]; RoBERTa:
                                 project_sentence.0 [E, H], no proj2 */
} bert_model;

/* Check every text-side tensor of an open CLAP file (names, dtypes, shapes,
 * the clap.text.* metadata; BERT or RoBERTa by clap.text.arch, absent: BERT)
 * and repack the matrices. 0 on success; -1 with
 * a message naming the file and the tensor or key at fault. f must stay
 * open while m is used. Tensors of the audio side are not looked at. The
 * pages of the repacked matrices are given back (madvise): read again, they
 * come from the file, or read as zeros if the loader had to copy them. */
int bert_load(bert_model *m, st_file *f, char *err, size_t errlen);
void bert_free(bert_model *m);

/* The kernel variant in use: "avx512", "avx2" or "generic". The environment
 * variable WSAC_KERNEL=avx2|generic asks for a lesser one (for tests). */
const char *bert_kernel_name(void);

typedef struct bert_state bert_state;

/* threads: worker threads for the forward pass (>= 1). */
bert_state *bert_state_new(const bert_model *m, int threads);
void bert_state_free(bert_state *s);

/* emb[B, E] = the L2-normalised text embeddings of B sequences, given as
 * ids (all sequences concatenated) and len[B]; each sequence starts with
 * [CLS] (<s>) and has 1 <= len <= positions - pos_offset; ids < vocab
 * (checked by the caller: the tokenizer's vocabulary is the model's). */
void bert_embed(bert_state *s, const bert_model *m, const int32_t *ids, const int *len, int B, float *emb);

/* Multiply-adds of one forward pass over sequences of these lengths (for
 * GFLOP/s figures: 2 FLOPs each). */
double bert_macs(const bert_model *m, const int *len, int B);

#endif
