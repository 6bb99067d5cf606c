/* bert_train.h - the CLAP text tower (HF BertModel, post-LN, add_pooling_layer
 * =False, then ase_model.py text_proj on the [CLS] row) in training mode:
 * forward with dropout and saved activations, backward to every parameter;
 * from the shared kernels (kernels.h: linear, layer norm, bidirectional
 * attention, exact GELU, dropout, embeddings). The inference encoder is
 * bert.h; this is the same model, sizes from the model file.
 *
 *   x = dropout(LN(word[id] + type[0] + pos[p]))
 *   per layer: a = attention(x) (dropout on the probabilities)
 *              x = LN1(dropout(a Wo^T + bo) + x)
 *              x = LN2(dropout(gelu(x Wi^T + bi) Wf^T + bf) + x)
 *   e = W2 relu(W0 x[CLS] + b0) + b2               unnormalised: the loss normalises
 *
 * A batch is B sequences packed without padding (ids concatenated, len[B]):
 * what HF computes on a padded, masked batch for the real tokens.
 * Parameters and gradients are flat blocks (llm.c) with the published names
 * (bertt_tensor); each layer's query, key and value weights (and biases) lie
 * next to each other, so they are one [3H, H] product.
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
    float hidden_dropout, attn_dropout; /* 0.1, 0.1 (BertConfig's defaults) */
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
    float *cls, *hid; /* [B, H], [B, E] after ReLU */
    float *d[5];      /* gradient scratch */
    size_t capN;
    int capB, capTm;
} bertt;

/* The text tower of a wsac CLAP model file; NULL with a reason in err. */
bertt *bertt_load(const char *path, char *err, size_t errlen);
void bertt_free(bertt *m);
int bertt_find(const bertt *m, const char *name);

/* e[B, E] = the unnormalised embeddings of B token sequences (ids packed,
 * len[B], each starting with [CLS]); dropout when drop_keys is not NULL
 * (drop_keys[b] keys sequence b's masks). Activations kept for backward. */
void bertt_forward_train(bertt *m, float *e, const int32_t *ids, const int *len, int B, const uint64_t *drop_keys);
/* grads += d loss / d params given de[B, E] of the last forward pass */
void bertt_backward(bertt *m, const float *de);

#endif
