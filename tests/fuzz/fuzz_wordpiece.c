/* fuzz_wordpiece.c - the BERT basic tokenizer + WordPiece (lib/wordpiece.c)
 * on arbitrary bytes, with the bundled bert-base-uncased vocab
 * (data/bert-base-uncased-vocab.txt, loaded once).
 *
 * The input is text. wp_tokenize() must refuse invalid UTF-8 with a reason
 * or return ids in range, the same count whatever the output capacity
 * (0, small, enough), and the same ids as far as the smaller buffer goes.
 * wp_encode() must give [CLS] ... [SEP] within max_len, truncating exactly
 * when the text has more ids. wp_decode_ex() must give valid UTF-8 for
 * every flag combination, from the text's ids and from the input bytes read
 * as raw int32 ids (out of range, negative, special). */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "wordpiece.h"

static wordpiece *wp_fz;

static int wordpiece_init(void) {
    const char *path = fz_repo_file("data/bert-base-uncased-vocab.txt");
    char err[512];
    if (!path || !(wp_fz = wp_load_file(path, err, sizeof err))) {
        fprintf(stderr, "fuzz_wordpiece: cannot load data/bert-base-uncased-vocab.txt (set WSAC_ROOT): %s\n",
                path ? err : "not found");
        exit(2);
    }
    return 0;
}

static void wordpiece_decode_check(const int32_t *ids, int n) {
    for (int flags = 0; flags < 8; flags++) {
        char *s = wp_decode_ex(wp_fz, ids, n, flags);
        FZ_ASSERT(s);
        FZ_ASSERT(utf8_valid(s, strlen(s)));
        free(s);
    }
}

static void wordpiece_one(const uint8_t *data, size_t size) {
    const char *text = (const char *)data;
    char err[512];
    int V = wp_vocab_size(wp_fz);
    err[0] = 0;
    int total = wp_tokenize(wp_fz, text, size, NULL, 0, err, sizeof err);
    if (total < 0) {
        FZ_ASSERT(err[0]);
        FZ_ASSERT(!utf8_valid(text, size)); /* the only reason short of INT_MAX ids */
    } else {
        FZ_ASSERT(utf8_valid(text, size));
        /* ids: at most one per input byte, plus the lowercasing expansions (U+0130 -> 2 chars) */
        FZ_ASSERT((size_t)total <= 3 * size + 1);
        int32_t *all = malloc(((size_t)total + 1) * sizeof(int32_t));
        FZ_ASSERT(all);
        FZ_ASSERT(wp_tokenize(wp_fz, text, size, all, total, err, sizeof err) == total);
        for (int i = 0; i < total; i++) FZ_ASSERT(all[i] >= 0 && all[i] < V);
        /* a smaller buffer: the same count, the same prefix */
        int small = total / 2;
        int32_t *part = malloc(((size_t)small + 1) * sizeof(int32_t));
        FZ_ASSERT(part);
        FZ_ASSERT(wp_tokenize(wp_fz, text, size, part, small, err, sizeof err) == total);
        FZ_ASSERT(memcmp(part, all, (size_t)small * sizeof(int32_t)) == 0);
        free(part);
        /* [CLS] ids [SEP], truncated to max_len */
        const int lens[] = {2, 3, 8, 77, 512};
        for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
            int max_len = lens[k], trunc = -1;
            int32_t *enc = malloc((size_t)max_len * sizeof(int32_t));
            FZ_ASSERT(enc);
            int m = wp_encode(wp_fz, text, size, max_len, enc, &trunc, err, sizeof err);
            FZ_ASSERT(m >= 2 && m <= max_len);
            FZ_ASSERT(enc[0] == wp_cls(wp_fz) && enc[m - 1] == wp_sep(wp_fz));
            FZ_ASSERT(trunc == (total > max_len - 2));
            FZ_ASSERT(m - 2 == (total < max_len - 2 ? total : max_len - 2));
            FZ_ASSERT(memcmp(enc + 1, all, (size_t)(m - 2) * sizeof(int32_t)) == 0);
            free(enc);
        }
        wordpiece_decode_check(all, total);
        free(all);
    }
    int32_t bad[1];
    FZ_ASSERT(wp_encode(wp_fz, text, size, 1, bad, NULL, err, sizeof err) == -1);
    /* the input's bytes as raw ids */
    int nraw = (int)(size / 4);
    if (nraw > 0) {
        int32_t *raw = malloc((size_t)nraw * sizeof(int32_t));
        FZ_ASSERT(raw);
        memcpy(raw, data, (size_t)nraw * sizeof(int32_t));
        /* mostly ids in range, so tokens are joined and cleaned up */
        for (int i = 0; i < nraw; i++)
            if (raw[i] >= 0 && (raw[i] & 0x40000000) == 0) raw[i] %= V;
        wordpiece_decode_check(raw, nraw);
        free(raw);
    }
}

FZ_ENTRY(wordpiece)
