/* bert_train.h - the CLAP text towers in training mode: WavCaps' BERT (HF
 * BertModel, post-LN, add_pooling_layer=False, then ase_model.py text_proj on
 * the [CLS] row) and SALSA's RoBERTa (HF RobertaModel, add_pooling_layer=
 * False, then ex_dcase24.py forward_sentence: token 0 (<s>), project_sentence),
 * chosen by the model file's clap.text.arch as bert.c does: forward with
 * dropout and saved activations, backward to every parameter; from the shared
 * kernels (kernels.h: linear, layer norm, bidirectional attention, exact
 * GELU, dropout, embeddings). The inference encoder is bert.h; this is the
 * same model, sizes from the model file.
 *
 *   x = dropout(LN(word[id] + type[0] + pos[pos_offset + p]))
 *   per layer: a = attention(x) (dropout on the probabilities)
 *              x = LN1(dropout(a Wo^T + bo) + x)
 *              x = LN2(dropout(gelu(x Wi^T + bi) Wf^T + bf) + x)
 *   BERT:    e = W2 relu(W0 x[0] + b0) + b2            text_proj
 *   RoBERTa: e = W0 x[0] + b0                          project_sentence.0
 *   unnormalised: the loss normalises
 *
 * BERT: positions from 0, LayerNorm eps 1e-12 (clap.text.ln_eps), dropout
 * 0.1/0.1 (BertConfig's defaults). RoBERTa: the token at place p has position
 * id pad_id + 1 + p (HF create_position_ids_from_input_ids; no padding here),
 * one token type, eps 1e-5 (clap.text.ln_eps), dropout 0.2/0.2 (SALSA's
 * sentence_embedding_models.py: hidden_dropout_prob=0.2,
 * attention_probs_dropout_prob=0.2; RobertaEmbeddings' dropout is the hidden
 * one); every rate settable before a forward pass.
 *
 * A batch is B sequences packed without padding (ids concatenated, len[B]):
 * what HF computes on a padded, masked batch for the real tokens.
 * Parameters and gradients are flat blocks (llm.c) with the published names
 * (bertt_tensor); each layer's query, key and value weights (and biases) lie
 * next to each other, so they are one [3H, H] product. The projection head's
 * tensors come last, from bertt_head(m) on.
 *
 * Legend: N tokens in the batch, H hidden, I intermediate, NH heads, V vocab,
 * E embedding. */
#ifndef WSAC_BERT_TRAIN_H
#define WSAC_BERT_TRAIN_H

#include <stddef.h>
#include <stdint.h>

#include "bert.h"

typedef struct {
    const char *name;
    int ndim;
    int64_t shape[2];
    size_t off, numel;
} bertt_tensor;

typedef struct {
    bert_config c;
    float hidden_dropout, attn_dropout; /* BERT 0.1, 0.1 (BertConfig's defaults); RoBERTa 0.2, 0.2 (SALSA's) */
    int ntensors;
    bertt_tensor *t;
    size_t nparams;
    float *params, *grads;
    /* the last training forward pass */
    int B, N, Tm, dropped;
    int32_t *ids, *pos; /* [N] */
    int *off, *len;     /* [B] */
    float *esum, *emean, *erstd, *x0; /* embeddings before / stats / after LN (after dropout) */
    uint8_t *emask;
    struct bertt_layer_acts {
        float *qkv, *att, *atty, *r1, *m1, *s1, *x1, *fi, *gi, *r2, *m2, *s2, *x2;
        uint8_t *amask, *dmask1, *dmask2;
    } *la;
    float *cls, *hid; /* [B, H], [B, E] after ReLU (BERT's text_proj only) */
    float *d[5];      /* gradient scratch */
    size_t capN;
    int capB, capTm;
} bertt;

/* The text tower of a wsac CLAP model file: BERT (a CNN14-BERT file, else a
 * refusal naming what the file holds: clap_check_family) or, when
 * clap.text.arch says roberta, SALSA's RoBERTa tower (bert_load's checks);
 * NULL with a reason in err. */
bertt *bertt_load(const char *path, char *err, size_t errlen);
void bertt_free(bertt *m);
int bertt_find(const bertt *m, const char *name);
/* The index of the head's first tensor (text_proj.0.weight or
 * project_sentence.0.weight); the head is the tensors from there on, the
 * encoder those before (SALSA's and WavCaps' optimiser groups). */
int bertt_head(const bertt *m);

/* e[B, E] = the unnormalised embeddings of B token sequences (ids packed,
 * len[B], each starting with [CLS] (<s>), 1 <= len <= positions - pos_offset,
 * ids < vocab: checked, fatal); dropout when drop_keys is not NULL
 * (drop_keys[b] keys sequence b's masks). Activations kept for backward. */
void bertt_forward_train(bertt *m, float *e, const int32_t *ids, const int *len, int B, const uint64_t *drop_keys);
/* grads += d loss / d params given de[B, E] of the last forward pass */
void bertt_backward(bertt *m, const float *de);

#endif
