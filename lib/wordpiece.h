/* wordpiece.h - the BERT uncased WordPiece tokenizer, exactly as Hugging Face's
 * slow BertTokenizer (transformers 4.27.4, bert-base-uncased) does it through
 * `tokenizer(text)`, and its decode(); used by clap-text and prefixdec.
 *
 * Tokenizing, in HF's order (PreTrainedTokenizer.tokenize, then
 * BasicTokenizer(do_lower_case=True, tokenize_chinese_chars=True,
 * strip_accents=None) and WordpieceTokenizer(max_input_chars_per_word=100)):
 *   1. the literal special tokens [CLS] [SEP] [PAD] [UNK] [MASK] (case-
 *      sensitive, anywhere, even inside a word: "a[MASK]b") become their ids;
 *      the text between them is tokenized on its own;
 *   2. every other character is lowercased one at a time (Python str.lower()
 *      of a single character: U+0130 -> "i\u0307"; a final capital sigma
 *      becomes σ, never ς, because HF lowercases character by character);
 *   3. dropped: U+0000, U+FFFD and every category C* character (Cc Cf Cs Co
 *      Cn) except \t \n \r; \t \n \r and category Zs become spaces;
 *   4. spaces around CJK ideographs (U+4E00-9FFF, 3400-4DBF, 20000-2A6DF,
 *      2A700-2B73F, 2B740-2B81F, 2B820-2CEAF, F900-FAFF, 2F800-2FA1F);
 *   5. split on Python whitespace (str.split(): Zs, bidi classes WS B S; after
 *      step 3 that leaves the space and U+2028/U+2029);
 *   6. each word: NFD, category Mn dropped; split on punctuation (ASCII
 *      33-47 58-64 91-96 123-126 and category P*), one token per mark;
 *   7. WordPiece: greedy longest match first, continuations prefixed "##";
 *      a word over 100 code points, or one not fully matched, is one [UNK].
 * Unicode data (categories, case mapping, NFD, bidi classes) comes from
 * utf8proc; where its Unicode version is newer than the Python that ran HF,
 * characters assigned since then differ: HF drops them as Cn, we do not.
 *
 * Thread safety: a loaded wordpiece is read-only; tokenize and decode from any
 * number of threads at once. No call allocates per character: tokenizing
 * allocates nothing at all, decoding one result string. */
#ifndef WSAC_WORDPIECE_H
#define WSAC_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

#define WP_MAX_INPUT_CHARS_PER_WORD 100

typedef struct wordpiece wordpiece;

/* vocab: the bytes of a vocab.txt, one token per line, id = 0-based line
 * number. Lines end with "\n" (also "\r\n" or "\r": Python's universal
 * newlines, as HF's load_vocab reads it); the final newline is optional.
 * Returns NULL with a reason in err (duplicate token, missing [CLS] [SEP]
 * [UNK] or [PAD], invalid UTF-8, a NUL byte, too many tokens...). [MASK] is
 * optional (wp_mask() -1; then "[MASK]" in text is plain text). */
wordpiece *wp_load(const char *vocab, size_t n, char *err, size_t errlen);
/* wp_load on the contents of a file. */
wordpiece *wp_load_file(const char *path, char *err, size_t errlen);
void wp_free(wordpiece *wp);

int wp_vocab_size(const wordpiece *wp);
int wp_id(const wordpiece *wp, const char *token);  /* -1 if absent */
const char *wp_token(const wordpiece *wp, int id);  /* NULL if out of range */
int wp_cls(const wordpiece *wp);
int wp_sep(const wordpiece *wp);
int wp_pad(const wordpiece *wp);
int wp_unk(const wordpiece *wp);
int wp_mask(const wordpiece *wp); /* -1 if the vocab has no [MASK] */
/* 1 if id is one of [CLS] [SEP] [PAD] [UNK] [MASK] (HF all_special_ids). */
int wp_is_special(const wordpiece *wp, int id);

/* Token ids of UTF-8 text (text[0..len), NUL bytes allowed: they are dropped
 * like any U+0000), without [CLS]/[SEP]. Writes at most max_ids ids (ids may
 * be NULL when max_ids is 0); returns the total number the full text produces
 * (may exceed max_ids), or -1 with a reason in err if the text is not valid
 * UTF-8 (naming the byte offset) or produces more than INT_MAX ids. Time and
 * memory are linear in len (WordPiece looks at most the vocab's longest token
 * ahead); no allocation. */
int wp_tokenize(const wordpiece *wp, const char *text, size_t len, int32_t *ids, int max_ids, char *err,
                size_t errlen);

/* [CLS] + the text's ids truncated to max_len-2 + [SEP], as HF
 * tokenizer(text, truncation=True, max_length=max_len) (no padding); returns
 * the length written (<= max_len), or -1 with a reason (invalid UTF-8,
 * max_len < 2). *truncated (may be NULL) is set to 1 if ids were dropped,
 * else 0. */
int wp_encode(const wordpiece *wp, const char *text, size_t len, int max_len, int32_t *ids, int *truncated,
              char *err, size_t errlen);

/* ids -> text as HF tokenizer.decode(ids, skip_special_tokens=True,
 * clean_up_tokenization_spaces=True): special ids dropped ([CLS] [SEP] [PAD]
 * [UNK] [MASK]: HF's skip_special_tokens drops [UNK] too), tokens joined with
 * " ", " ##" removed, Python strip(), then the replacements of
 * clean_up_tokenization in order: " ." "." | " ?" "?" | " !" "!" | " ," "," |
 * " ' " "'" | " n't" "n't" | " 'm" "'m" | " 's" "'s" | " 've" "'ve" |
 * " 're" "'re". Ids out of range (negative, >= vocab size) are skipped (HF
 * would print them as "[UNK]": see WP_DECODE_OOR_UNK). Returns a malloc'd
 * NUL-terminated string; the caller frees it. */
char *wp_decode(const wordpiece *wp, const int32_t *ids, int n);

enum {
    WP_DECODE_KEEP_SPECIAL = 1, /* skip_special_tokens=False */
    WP_DECODE_NO_CLEANUP = 2,   /* clean_up_tokenization_spaces=False */
    WP_DECODE_OOR_UNK = 4       /* out-of-range ids become the text "[UNK]", as in HF */
};
char *wp_decode_ex(const wordpiece *wp, const int32_t *ids, int n, int flags);

#endif
