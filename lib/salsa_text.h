/* salsa_text.h - SALSA's text side before the encoder, one copy for clap-text
 * (inference) and the trainer: the byte-level BPE tokenizer a RoBERTa CLAP
 * file carries, and a caption to ids as ex_dcase24.py forward_sentence makes
 * them:
 *
 *   caption.lower().translate(str.maketrans('', '', string.punctuation))
 *   tokenizer(captions, add_special_tokens=True, padding='max_length',
 *             max_length=32, truncation=True)
 *
 * (padding aside: wsac packs sequences, SALSA's padding is masked out). The
 * pieces are bpe.h's: bpe_salsa_preprocess, bpe_encode. */
#ifndef WSAC_SALSA_TEXT_H
#define WSAC_SALSA_TEXT_H

#include <stddef.h>
#include <stdint.h>

#include "bert.h"
#include "bpe.h"
#include "safetensors.h"

/* SALSA's captions longer than this are cut before preprocessing, at the last
 * space that follows an ASCII letter or digit within it (salsa_text.c). */
#define SALSA_CUT 4096

/* The tokenizer of the RoBERTa CLAP file f whose text tower is c (bert_load):
 * clap.text.tokenizer roberta_bpe (or absent), tensors tokenizer.vocab_json
 * and tokenizer.merges, its vocabulary the word embeddings' rows, its <pad>
 * clap.text.pad_id; *preprocess = 1 unless clap.text.preprocess says none
 * (else 'lowercase,strip_punctuation', SALSA's). NULL with a reason naming
 * the file in err. */
bpe *salsa_tokenizer_load(st_file *f, const bert_config *c, int *preprocess, char *err, size_t errlen);

/* One caption, text[0..len) in UTF-8: SALSA's preprocessing (when
 * preprocess), then <s> BPE </s> truncated to max_len (SALSA's 32:
 * BPE_SALSA_MAX_LEN) into ids[max_len]. Returns the length (2, <s> </s>, for a
 * caption that leaves no token: the caller decides), or -1 with a reason in err;
 * *trunc = 1 if tokens were cut off. */
int salsa_caption_ids(const bpe *b, int preprocess, const char *text, size_t len, int max_len, int32_t *ids,
                      int *trunc, char *err, size_t errlen);

#endif
