/* clap_init.h - a new, untrained CNN14-BERT CLAP model file from sizes
 * (clap-train --new), initialised as the published PyTorch modules
 * initialise themselves, and the architecture check of the training loaders.
 *
 * The file is what scripts/convert.py clap writes for a WavCaps checkpoint:
 * every tensor under its published name (F32), the vocab.txt bytes as the
 * U8 tensor 'tokenizer.vocab', the configuration in __metadata__; so
 * clap-audio, clap-text and clap-train --init read it unchanged.
 *
 * Initialisation (every tensor from its own xoshiro256** stream keyed by
 * (seed, tensor name): the same seed gives the same tensor whatever the
 * other sizes or the order of work):
 *   WavCaps retrieval/models/cnns.py (PANNs): ConvBlock.init_weight ->
 *     init_layer (xavier_uniform_ on the 3x3 convs, no bias) and init_bn
 *     (weight 1, bias 0); Cnn14.init_weights -> init_bn(bn0); BatchNorm2d's
 *     running statistics: mean 0, variance 1.
 *   HF BertPreTrainedModel._init_weights (initializer_range 0.02): Linear
 *     and Embedding weights normal(0, 0.02), biases 0, the padding row
 *     (pad_token_id 0) of the word embeddings 0, LayerNorm weight 1 bias 0.
 *   WavCaps retrieval/models/ase_model.py audio_proj / text_proj: nn.Linear's
 *     reset_parameters: weight and bias U(-1/sqrt(in), 1/sqrt(in)). */
#ifndef WSAC_CLAP_INIT_H
#define WSAC_CLAP_INIT_H

#include <stddef.h>
#include <stdint.h>

#define CLAP_MAX_BLOCKS 24

typedef struct {
    /* audio tower: CNN14 (WavCaps: 64 mel bins, 6 blocks 64..2048) */
    int n_mels, nblocks, channels[CLAP_MAX_BLOCKS];
    /* ase_model.py embed_size (1024): both projections' width */
    int embed;
    /* text tower: BERT-base (12 layers, 768 wide, 12 heads, 3072, 512
     * positions, 2 token types); max_len: tokens incl. [CLS] [SEP] (30,
     * text_encoder.py max_length) */
    int layers, hidden, heads, intermediate, positions, types, max_len;
} clap_sizes;

/* WavCaps' CNN14-BERT (bert-base-uncased) sizes */
void clap_sizes_default(clap_sizes *s);
/* 0, or -1 with the first size that cannot make a model in err */
int clap_sizes_check(const clap_sizes *s, char *err, size_t errlen);

/* Writes the new model to path (atomically), the tokenizer from the
 * vocab.txt at vocab (its token count is the vocabulary size); source goes
 * in __metadata__ wsac.source. 0, or -1 with a reason in err. */
int clap_new_write(const char *path, const clap_sizes *s, const char *vocab, uint64_t seed, const char *source,
                   char *err, size_t errlen);

/* The training loaders' architecture check: 0 when the model file at path
 * is a CLAP file of the CNN14-BERT family with the tower asked for (audio:
 * 1, text: 0); -1 with a message naming the file and what it holds instead
 * (a SALSA PaSST or RoBERTa tower, a missing tower, another kind of file). */
int clap_check_family(const char *path, int audio, char *err, size_t errlen);

#endif
