/* fuzz_bpe.c - RoBERTa's byte-level BPE and SALSA's preprocessing
 * (lib/bpe.c) on arbitrary bytes.
 *
 * First byte even: the rest is text, tokenized with RoBERTa's files
 * (tests/data/roberta-bpe, loaded once). bpe_tokenize() must refuse exactly
 * invalid UTF-8 and over-long text, with a reason; otherwise every id must
 * name a token, and the tokens mapped back through GPT-2's byte characters
 * must give the text's bytes again (the vocab has every byte, so no <unk>);
 * (a literal <unk> or <mask> aside); the same count for any output capacity; <s> ... </s> within max_len,
 * truncated exactly when the text has more ids. bpe_salsa_preprocess() must
 * give valid UTF-8 without ASCII punctuation, at most twice as long.
 *
 * First byte odd: the rest is VOCAB \0 MERGES \0 TEXT, loaded from memory
 * with bpe_load(): it must fail with a reason or give a tokenizer whose ids
 * for TEXT all name tokens (or are <unk>). */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "util.h"

static bpe *bpe_fz;
static int bpe_fz_unbyte[324]; /* GPT-2 byte character -> byte */

static int bpe_init(void) {
    const char *v = fz_repo_file("tests/data/roberta-bpe/vocab.json");
    char vp[4096], err[512];
    snprintf(vp, sizeof vp, "%s", v ? v : "");
    const char *m = fz_repo_file("tests/data/roberta-bpe/merges.txt");
    if (!v || !m || !(bpe_fz = bpe_load_files(vp, m, err, sizeof err))) {
        fprintf(stderr, "fuzz_bpe: cannot load tests/data/roberta-bpe (set WSAC_ROOT): %s\n",
                v && m ? err : "not found");
        exit(2);
    }
    for (int c = 0, n = 0; c < 256; c++) {
        int printable = (c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF);
        bpe_fz_unbyte[printable ? c : 256 + n++] = c;
    }
    return 0;
}

/* the bytes a token stands for, appended to out; -1 if it is not made of
 * GPT-2 byte characters */
static long bpe_fz_bytes(const char *tok, unsigned char *out) {
    long k = 0;
    for (const unsigned char *p = (const unsigned char *)tok; *p;) {
        int cp;
        if (p[0] < 0x80) cp = *p++;
        else if ((p[0] & 0xE0) == 0xC0 && p[1]) {
            cp = ((p[0] & 0x1F) << 6) | (p[1] & 0x3F);
            p += 2;
        } else return -1;
        if (cp >= 324) return -1;
        out[k++] = (unsigned char)bpe_fz_unbyte[cp];
    }
    return k;
}

static void bpe_text(const char *text, size_t size) {
    char err[512];
    err[0] = 0;
    int total = bpe_tokenize(bpe_fz, text, size, NULL, 0, err, sizeof err);
    if (total < 0) {
        FZ_ASSERT(err[0]);
        FZ_ASSERT(!utf8_valid(text, size) || size > BPE_MAX_TEXT);
        return;
    }
    FZ_ASSERT(utf8_valid(text, size) && size <= BPE_MAX_TEXT);
    FZ_ASSERT((size_t)total <= size);
    int32_t *all = malloc(((size_t)total + 1) * sizeof(int32_t));
    unsigned char *back = malloc(size + 1);
    FZ_ASSERT(all && back);
    FZ_ASSERT(bpe_tokenize(bpe_fz, text, size, all, total, err, sizeof err) == total);
    /* a literal <unk> is its id; <mask> eats the whitespace before it */
    int literal = memmem(text, size, "<unk>", 5) || memmem(text, size, "<mask>", 6);
    size_t k = 0;
    for (int i = 0; i < total; i++) {
        const char *tok = bpe_token(bpe_fz, all[i]);
        FZ_ASSERT(tok && (literal || all[i] != bpe_unk(bpe_fz)));
        long nb = bpe_fz_bytes(tok, back + k);
        FZ_ASSERT(nb > 0 && k + (size_t)nb <= size);
        k += (size_t)nb;
    }
    FZ_ASSERT(literal || (k == size && memcmp(back, text, size) == 0));
    int small = total / 2;
    int32_t *part = malloc(((size_t)small + 1) * sizeof(int32_t));
    FZ_ASSERT(part);
    FZ_ASSERT(bpe_tokenize(bpe_fz, text, size, part, small, err, sizeof err) == total);
    FZ_ASSERT(memcmp(part, all, (size_t)small * sizeof(int32_t)) == 0);
    free(part);
    const int lens[] = {2, 3, 32, 300};
    for (size_t j = 0; j < sizeof lens / sizeof lens[0]; j++) {
        int max_len = lens[j], trunc = -1;
        int32_t enc[300];
        int m = bpe_encode(bpe_fz, text, size, max_len, enc, &trunc, err, sizeof err);
        FZ_ASSERT(m >= 2 && m <= max_len);
        FZ_ASSERT(enc[0] == bpe_bos(bpe_fz) && enc[m - 1] == bpe_eos(bpe_fz));
        FZ_ASSERT(trunc == (total > max_len - 2));
        FZ_ASSERT(memcmp(enc + 1, all, (size_t)(m - 2) * sizeof(int32_t)) == 0);
    }
    free(all);
    free(back);
    size_t pn;
    char *pre = bpe_salsa_preprocess(text, size, &pn, err, sizeof err);
    FZ_ASSERT(pre);
    FZ_ASSERT(pn <= 2 * size && strlen(pre) <= pn && utf8_valid(pre, pn));
    for (size_t i = 0; i < pn; i++) {
        unsigned char c = (unsigned char)pre[i];
        FZ_ASSERT(!(c > 0x20 && c < 0x7F && !((c | 0x20) >= 'a' && (c | 0x20) <= 'z') && !(c >= '0' && c <= '9')));
        FZ_ASSERT(!(c >= 'A' && c <= 'Z'));
    }
    free(pre);
}

static void bpe_files(const char *d, size_t size) {
    const char *z1 = memchr(d, 0, size);
    if (!z1) return;
    const char *z2 = memchr(z1 + 1, 0, size - (size_t)(z1 + 1 - d));
    if (!z2) return;
    char err[512];
    err[0] = 0;
    bpe *b = bpe_load(d, (size_t)(z1 - d), z1 + 1, (size_t)(z2 - z1 - 1), err, sizeof err);
    if (!b) {
        FZ_ASSERT(err[0]);
        return;
    }
    const char *text = z2 + 1;
    size_t tn = size - (size_t)(text - d);
    int32_t ids[64];
    int n = bpe_tokenize(b, text, tn, ids, 64, err, sizeof err);
    FZ_ASSERT(n >= 0 || (err[0] && (!utf8_valid(text, tn) || tn > BPE_MAX_TEXT)));
    for (int i = 0; i < n && i < 64; i++) FZ_ASSERT(bpe_token(b, ids[i]) != NULL);
    bpe_free(b);
}

static void bpe_one(const uint8_t *data, size_t size) {
    if (size == 0) return;
    if (data[0] & 1) bpe_files((const char *)data + 1, size - 1);
    else bpe_text((const char *)data + 1, size - 1);
}

FZ_ENTRY(bpe)
