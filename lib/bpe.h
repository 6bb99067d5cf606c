/* bpe.h - GPT-2's byte-level BPE as Hugging Face's slow RobertaTokenizer
 * applies it (RoBERTa's vocab.json + GPT-2's merges), and SALSA's caption
 * preprocessing; used for SALSA's text branch (spec.md "SALSA's model family").
 *
 * Tokenizing, in the published order (OpenAI encoder.py, HF GPT2Tokenizer):
 *   1. pre-tokens: the leftmost-first matches of
 *      's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *      (Python `regex`: \s is the White_Space property, \p{L} categories L*,
 *      \p{N} categories N*; categories from utf8proc);
 *   2. each pre-token's UTF-8 bytes mapped to printable characters
 *      (bytes_to_unicode: a byte in !..~ ¡..¬ ®..ÿ is itself, the other 68
 *      are U+0100.. in byte order);
 *   3. BPE: while two neighbouring symbols form a merge, take the pair of
 *      lowest rank and merge every occurrence of it, left to right without
 *      overlap; then the next lowest;
 *   4. each symbol's id from vocab.json, <unk> if it has none.
 * Before all this, as HF's tokenize() does (transformers 4.41, SALSA's), the
 * text is split at the literal special tokens <s> <pad> </s> <unk> <mask>
 * (those the vocab has), which become their ids; <mask> is
 * AddedToken(lstrip=True), so the text before it loses its trailing
 * whitespace (Python's str.rstrip()). SALSA's preprocessing deletes '<' and
 * '>', so no preprocessed caption holds one.
 *
 * Thread safety: a loaded bpe is read-only; encode from any number of threads
 * at once (no cache). Text longer than BPE_MAX_TEXT bytes is refused with a
 * reason (BPE costs O(n^2) in the length of one pre-token; captions are a few
 * hundred bytes, and SALSA keeps 30 tokens). */
#ifndef WSAC_BPE_H
#define WSAC_BPE_H

#include <stddef.h>
#include <stdint.h>

#define BPE_MAX_TEXT 8192
#define BPE_SALSA_MAX_LEN 32 /* ex_dcase24.py: max_sentence_tokens */

typedef struct bpe bpe;

/* vocab: the bytes of a vocab.json ({"token": id, ...}: unique tokens,
 * unique ids in [0, 2^24)); merges: the bytes of a merges.txt: a first line
 * "#version..." (HF skips the first line unread), then one "A B" per line
 * (one space; \n or \r\n), every line ending in a newline (HF ignores a last
 * line without one, so it is refused rather than dropped silently). A pair
 * listed twice keeps its later rank, as HF's dict does. The vocab must have
 * <s>, </s> and <unk>; <pad> is optional. Returns NULL with a reason in err. */
bpe *bpe_load(const char *vocab, size_t vocab_len, const char *merges, size_t merges_len, char *err,
              size_t errlen);
/* bpe_load on the contents of two files */
bpe *bpe_load_files(const char *vocab_path, const char *merges_path, char *err, size_t errlen);
void bpe_free(bpe *b);

int bpe_vocab_size(const bpe *b);  /* the largest id + 1 */
int bpe_merges(const bpe *b);      /* merge lines read */
int bpe_id(const bpe *b, const char *token); /* -1 if absent */
const char *bpe_token(const bpe *b, int id); /* NULL if no token has that id */
int bpe_bos(const bpe *b);  /* <s> */
int bpe_eos(const bpe *b);  /* </s> */
int bpe_unk(const bpe *b);  /* <unk> */
int bpe_pad(const bpe *b);  /* <pad>, -1 if absent */

/* Ids of UTF-8 text[0..len) (NUL bytes allowed), without <s> </s>. Writes at
 * most max_ids ids (ids may be NULL when max_ids is 0); returns the total the
 * text produces (may exceed max_ids), or -1 with a reason in err: invalid
 * UTF-8 (naming the byte offset), text longer than BPE_MAX_TEXT bytes. */
int bpe_tokenize(const bpe *b, const char *text, size_t len, int32_t *ids, int max_ids, char *err, size_t errlen);

/* <s> + the first max_len - 2 ids + </s>, as HF tokenizer(text,
 * add_special_tokens=True, truncation=True, max_length=max_len) (padding
 * aside: SALSA pads to max_len with <pad>, masked out). Returns the length
 * written (<= max_len), or -1 with a reason (as bpe_tokenize, max_len < 2).
 * *truncated (may be NULL): 1 if ids were dropped, else 0. */
int bpe_encode(const bpe *b, const char *text, size_t len, int max_len, int32_t *ids, int *truncated, char *err,
               size_t errlen);

/* SALSA's caption preprocessing (ex_dcase24.py forward_sentence):
 * caption.lower().translate(str.maketrans('', '', string.punctuation)), i.e.
 * Python's str.lower() (full mapping: U+0130 -> "i\u0307"; capital sigma
 * -> final ς by Python's Final_Sigma rule, else σ), then every ASCII
 * punctuation mark !"#$%&'()*+,-./:;<=>?@[\]^_`{|}~ deleted. Returns a
 * malloc'd NUL-terminated string (its length in *out_len), or NULL with a
 * reason if the text is not valid UTF-8 or longer than BPE_MAX_TEXT bytes.
 * Case data comes from utf8proc (Unicode 15 for 2.8); Python 3.11 has 14. */
char *bpe_salsa_preprocess(const char *text, size_t len, size_t *out_len, char *err, size_t errlen);

#endif
