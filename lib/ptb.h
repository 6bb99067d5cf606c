/* ptb.h - the caption tokenization of pycocoevalcap, natively.
 *
 * pycocoevalcap's PTBTokenizer writes all captions, '\n'-joined, to one file,
 * runs Stanford CoreNLP 3.4.1 `PTBTokenizer -preserveLines -lowerCase` on it,
 * and drops the tokens '' ' `` ` -LRB- -RRB- -LCB- -RCB- . ? ! , : - -- ... ;
 * from each output line. This module reproduces that: a longest-match lexer
 * whose rules are the PTBLexer.flex rules of CoreNLP v3.4.1 (JFlex semantics:
 * longest match, trailing context counted in the length, earliest rule on a
 * tie, %caseless literals, UTF-16 code units as in Java), the token
 * normalisations of its default ptb3Escaping options, and Java's
 * String.toLowerCase(Locale.ENGLISH). See ../shared/reference/metrics.md.
 *
 * Captions are tokenized as one text because the lexer looks across line
 * ends (an abbreviation before a line starting with a capital, "A." before
 * "The"): tokenize a corpus in the order pycocoevalcap would (all references
 * of all items in one call, all candidates in another).
 *
 * Deviation, on purpose: pycocoevalcap replaces only '\n' inside a caption;
 * other line breaks (\r, U+0085, U+2028, U+2029, \v, \f) would make Java emit
 * extra lines and shift every later caption onto the wrong item. Here they
 * separate tokens like a space. */
#ifndef WSAC_PTB_H
#define WSAC_PTB_H

#include <stddef.h>

enum {
    PTB_PYCOCO = 0, /* lowercased tokens minus pycocoevalcap's punctuation set */
    PTB_JAVA = 1    /* everything PTBTokenizer -preserveLines -lowerCase prints */
};

/* Tokenize captions in[0..n) as one PTBTokenizer input. out[i] receives a
 * malloc'd NUL-terminated string: caption i's tokens joined by single
 * spaces ("" for none). Invalid UTF-8 is read as U+FFFD, as Java's decoder
 * does. Never fails (out of memory is fatal). */
void ptb_tokenize_lines(const char *const *in, size_t n, char **out, int mode);

/* One caption on its own (no neighbouring lines); malloc'd result. */
char *ptb_tokenize(const char *caption, int mode);

/* Whether a token (NUL-terminated UTF-8) is in pycocoevalcap's drop set. */
int ptb_is_dropped(const char *tok);

#endif
