/* salsa_text.c - SALSA's tokenizer and caption ids (see salsa_text.h); moved
 * here from filters/clap-text.c so that the trainer calls the same code. */
#include "salsa_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

bpe *salsa_tokenizer_load(st_file *f, const bert_config *c, int *preprocess, char *err, size_t errlen) {
    const char *path = st_path(f);
    const char *tk = st_meta(f, "clap.text.tokenizer"), *pp = st_meta(f, "clap.text.preprocess");
    if (tk && strcmp(tk, "roberta_bpe")) {
        seterr(err, errlen, "%s: metadata 'clap.text.tokenizer' is '%.40s', expected 'roberta_bpe'", path, tk);
        return NULL;
    }
    if (pp && strcmp(pp, "lowercase,strip_punctuation") && strcmp(pp, "none")) {
        seterr(err, errlen,
               "%s: metadata 'clap.text.preprocess' is '%.40s', expected 'lowercase,strip_punctuation' or 'none'",
               path, pp);
        return NULL;
    }
    *preprocess = !pp || strcmp(pp, "none");
    st_tensor vt, mt;
    if (!st_get_as(f, "tokenizer.vocab_json", ST_U8, 1, NULL, err, errlen) ||
        st_get(f, "tokenizer.vocab_json", &vt, err, errlen) ||
        !st_get_as(f, "tokenizer.merges", ST_U8, 1, NULL, err, errlen) ||
        st_get(f, "tokenizer.merges", &mt, err, errlen))
        return NULL;
    char why[400];
    bpe *b = bpe_load(vt.data, vt.nbytes, mt.data, mt.nbytes, why, sizeof why);
    if (!b) {
        seterr(err, errlen, "%s: tensors 'tokenizer.vocab_json', 'tokenizer.merges': %s", path, why);
        return NULL;
    }
    if (bpe_vocab_size(b) != c->vocab)
        seterr(err, errlen, "%s: tensor 'tokenizer.vocab_json' has %d tokens but the word embeddings have %d rows",
               path, bpe_vocab_size(b), c->vocab);
    else if (bpe_pad(b) != c->pad_id)
        seterr(err, errlen, "%s: <pad> is token %d in 'tokenizer.vocab_json' but metadata 'clap.text.pad_id' says %d",
               path, bpe_pad(b), c->pad_id);
    else
        return b;
    bpe_free(b);
    return NULL;
}

static int ascii_alnum(char ch) { return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'); }

/* A caption over SALSA_CUT bytes is cut at the last space that follows an
 * ASCII letter or digit within it: every pre-token (and its BPE) before that
 * space is then the same as in the whole caption (no pre-token crosses a space
 * after a letter or digit; Python's Final_Sigma stops at that letter or digit;
 * preprocessing at most adds half: within BPE_MAX_TEXT), and the space left
 * out gives tokens, so the first max_len - 2 ids are the whole caption's if
 * the cut part has that many. */
int salsa_caption_ids(const bpe *b, int preprocess, const char *text, size_t len, int max_len, int32_t *ids,
                      int *trunc, char *err, size_t errlen) {
    size_t n = len;
    int cut = 0;
    if (len > SALSA_CUT) {
        size_t k = SALSA_CUT;
        while (k > 0 && !(text[k] == ' ' && ascii_alnum(text[k - 1]))) k--;
        if (k > 0) n = k, cut = 1;
    }
    const char *t = text;
    size_t tl = n;
    char *p = NULL;
    if (preprocess) {
        if (!(p = bpe_salsa_preprocess(text, n, &tl, err, errlen))) return -1;
        t = p;
    }
    size_t blank = 0;
    while (blank < tl && t[blank] && strchr(" \t\n\r\v\f", t[blank])) blank++;
    int L;
    if (blank == tl) { /* nothing but white space left: <s> </s>, as HF; clap-text refuses it */
        if (max_len < 2) {
            free(p);
            return seterr(err, errlen, "max_len %d leaves no room for <s> and </s>", max_len);
        }
        ids[0] = bpe_bos(b), ids[1] = bpe_eos(b), L = 2;
    } else {
        L = bpe_encode(b, t, tl, max_len, ids, trunc, err, errlen);
    }
    free(p);
    if (L > 2 && cut) {
        if (L < max_len) {
            snprintf(err, errlen,
                     "caption of %zu bytes whose first %zu (up to a space after a letter or digit) give %d "
                     "tokens, fewer than the %d kept",
                     len, n, L - 2, max_len - 2);
            return -1;
        }
        *trunc = 1;
    }
    return L;
}
