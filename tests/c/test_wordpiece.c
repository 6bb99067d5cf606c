/* test_wordpiece.c - the BERT WordPiece tokenizer (lib/wordpiece.c).
 *
 * With no arguments: unit checks on bert-base-uncased's vocab (the copy in
 * data/, part of the repository) and on small hand-written
 * vocabs. Expected ids come from tests/py/ref_wordpiece.py (Hugging Face
 * BertTokenizer 4.27 re-typed) and the google-research fixtures.
 *
 * Helper modes for tests/py/test_wordpiece.py (one input per line on stdin,
 * texts hex-encoded so any byte can be passed, one output line each):
 *   --tokenize VOCAB          HEX            -> "id id ..." or "ERR reason"
 *   --encode VOCAB MAXLEN     HEX            -> "T|F id id ..." or "ERR reason"
 *   --decode VOCAB [FLAGS]    "id id ..."    -> HEX of wp_decode_ex(FLAGS) */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "check.h"
#include "util.h"
#include "wordpiece.h"

static char err[512];

/* ------------------------------------------------------------ helper modes */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* hex in place; returns the byte count or -1 */
static long unhex(char *s, size_t n) {
    if (n % 2) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
        if (a < 0 || b < 0) return -1;
        s[i] = (char)(a * 16 + b);
    }
    return (long)(n / 2);
}

static wordpiece *load_or_die(const char *path) {
    wordpiece *wp = wp_load_file(path, err, sizeof err);
    if (!wp) {
        fprintf(stderr, "test_wordpiece: %s\n", err);
        exit(2);
    }
    return wp;
}

static int helper(int argc, char **argv) {
    const char *mode = argv[1];
    if (argc < 3 || (strcmp(mode, "--tokenize") && strcmp(mode, "--encode") && strcmp(mode, "--decode"))) {
        fprintf(stderr, "usage: test_wordpiece [--tokenize|--encode|--decode] VOCAB [ARG]\n");
        return 1;
    }
    wordpiece *wp = load_or_die(argv[2]);
    int arg = argc > 3 ? atoi(argv[3]) : 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int32_t *ids = NULL;
    size_t idcap = 0;
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
        if (!strcmp(mode, "--decode")) {
            size_t k = 0;
            char *p = line, *e;
            for (;;) {
                long v = strtol(p, &e, 10);
                if (e == p) break;
                if (k == idcap) ids = realloc(ids, (idcap = idcap * 2 + 64) * sizeof *ids);
                ids[k++] = (int32_t)v;
                p = e;
            }
            char *s = wp_decode_ex(wp, ids, (int)k, arg);
            for (char *q = s; *q; q++) printf("%02x", (unsigned char)*q);
            putchar('\n');
            free(s);
            continue;
        }
        long len = unhex(line, (size_t)n);
        if (len < 0) {
            printf("ERR bad hex\n");
            continue;
        }
        size_t want = (size_t)len + 16;
        if (want > idcap) ids = realloc(ids, (idcap = want) * sizeof *ids);
        int k, trunc = 0;
        if (!strcmp(mode, "--encode")) {
            if ((size_t)arg + 2 > idcap) ids = realloc(ids, (idcap = (size_t)arg + 2) * sizeof *ids);
            k = wp_encode(wp, line, (size_t)len, arg, ids, &trunc, err, sizeof err);
        } else {
            k = wp_tokenize(wp, line, (size_t)len, ids, (int)idcap, err, sizeof err);
        }
        if (k < 0) {
            printf("ERR %s\n", err);
            continue;
        }
        if (!strcmp(mode, "--encode")) fputs(trunc ? "T" : "F", stdout);
        for (int i = 0; i < k; i++) printf(i || !strcmp(mode, "--encode") ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(line);
    free(ids);
    wp_free(wp);
    return 0;
}

/* -------------------------------------------------------------- unit tests */

/* the vocabulary bundled with the repository (data/, from the root, where
 * tests/run.sh runs us; else beside the binary, <root>/build/tests/) */
static const char *vocab_path(void) {
    static char p[4096 + 128];
    struct stat st;
    snprintf(p, sizeof p, "data/bert-base-uncased-vocab.txt");
    if (stat(p, &st) == 0) return p;
    char exe[4096];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = '\0';
        char *s = strrchr(exe, '/');
        if (s) {
            *s = '\0';
            snprintf(p, sizeof p, "%s/../../data/bert-base-uncased-vocab.txt", exe);
        }
    }
    return p;
}

static wordpiece *W; /* bert-base-uncased */

/* tokenize text[0..len) and compare with want[0..nw) */
static void tok_eq(const char *name, const char *text, size_t len, const int32_t *want, int nw) {
    int32_t got[512];
    int n = wp_tokenize(W, text, len, got, 512, err, sizeof err);
    int same = n == nw;
    for (int i = 0; same && i < n; i++) same = got[i] == want[i];
    char buf[1024] = "";
    size_t b = 0;
    for (int i = 0; i < n && i < 40 && b < sizeof buf - 16; i++)
        b += (size_t)snprintf(buf + b, sizeof buf - b, " %d", got[i]);
    CHECKF(same, name, "got n=%d [%s ] (%s)", n, buf, n < 0 ? err : "");
}

#define TOK(name, text, ...)                                                                           \
    do {                                                                                               \
        static const int32_t w_[] = {__VA_ARGS__};                                                     \
        tok_eq(name, text, sizeof(text) - 1, w_, (int)(sizeof w_ / sizeof w_[0]));                      \
    } while (0)

static void tok_none(const char *name, const char *text, size_t len) {
    int32_t got[4];
    int n = wp_tokenize(W, text, len, got, 4, err, sizeof err);
    CHECKF(n == 0, name, "n=%d", n);
}

#define TOKNONE(name, text) tok_none(name, text, sizeof(text) - 1)

/* lib/util.c's UTF-8 helpers, shared by both tokenizers: every scalar value
 * encodes to the standard's bytes and decodes back (U+FFFE/U+FFFF included,
 * which utf8proc_encode_char would write as one byte); surrogates, overlongs,
 * values above U+10FFFF and cut sequences are refused. */
static void test_utf8(void) {
    int ok = 1;
    int32_t bad_at = -1;
    for (int32_t cp = 0; cp <= 0x10FFFF && ok; cp++) {
        if (cp >= 0xD800 && cp <= 0xDFFF) continue;
        char b[4];
        int32_t back = -1;
        int n = utf8_put(b, cp), want = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
        ok = n == want && utf8_next((const unsigned char *)b, (size_t)n, &back) == (size_t)n && back == cp &&
             (n == 1 || utf8_next((const unsigned char *)b, (size_t)n - 1, &back) == 0); /* cut: refused */
        if (!ok) bad_at = cp;
    }
    CHECKF(ok, "utf8_put/utf8_next: every scalar value round-trips in its shortest form", "U+%04X", bad_at);
    char ffff[4];
    CHECK(utf8_put(ffff, 0xFFFF) == 3 && !memcmp(ffff, "\xEF\xBF\xBF", 3), "utf8_put: U+FFFF is EF BF BF");
    static const struct {
        const char *s;
        size_t n;
    } bad[] = {{"\xC0\x80", 2},         {"\xE0\x80\x80", 3}, {"\xED\xA0\x80", 3}, {"\xF4\x90\x80\x80", 4},
               {"\xF0\x80\x80\x80", 4}, {"\x80", 1},          {"\xE2\x82", 2},     {"\xFF", 1}};
    int refused = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int32_t cp;
        refused &= utf8_next((const unsigned char *)bad[i].s, bad[i].n, &cp) == 0;
    }
    CHECK(refused, "utf8_next: overlongs, surrogates, > U+10FFFF, stray and cut bytes refused");
    char msg[128];
    utf8_err(msg, sizeof msg, "text", "ab\xFF\x41", 4, 2);
    CHECKF(!strcmp(msg, "text is not valid UTF-8 at byte 2 (0xff 0x41)"), "utf8_err: names the byte and shows it",
           "%s", msg);
}

static void test_vocab(void) {
    CHECK(wp_vocab_size(W) == 30522, "vocab: 30522 tokens");
    CHECK(wp_pad(W) == 0 && wp_unk(W) == 100 && wp_cls(W) == 101 && wp_sep(W) == 102 && wp_mask(W) == 103,
          "vocab: special ids 0 100 101 102 103");
    CHECK(wp_id(W, "the") == 1996 && wp_id(W, "##s") == 2015 && wp_id(W, "nope-not-a-token") == -1, "vocab: wp_id");
    CHECK(wp_token(W, 1996) && !strcmp(wp_token(W, 1996), "the") && !wp_token(W, 30522) && !wp_token(W, -1),
          "vocab: wp_token and out of range");
    CHECK(wp_is_special(W, 103) && wp_is_special(W, 100) && !wp_is_special(W, 1) && !wp_is_special(W, -1),
          "vocab: wp_is_special");
}

static void test_tokenize(void) {
    TOK("fixture line: audiocaps #1", "A woman talks nearby as water pours", 1037, 2450, 7566, 3518, 2004, 2300,
        10364, 2015);
    TOK("punctuation: each mark its own token", "Hello, World!!", 7592, 1010, 2088, 999, 999);
    TOK("punctuation: apostrophe", "don't stop", 2123, 1005, 1056, 2644);
    TOK("punctuation: ASCII symbols $ - _ .", "$5.00 a-b_c", 1002, 1019, 1012, 4002, 1037, 1011, 1038, 1035, 1039);
    TOK("punctuation: Unicode Po (inverted question mark)", "\xc2\xbfQu\xc3\xa9?", 1094, 10861, 1029);
    TOK("accents: Qu\xc3\xa9" "bec -> quebec", "Qu\xc3\xa9" "bec", 5447);
    TOK("accents: na\xc3\xafve caf\xc3\xa9", "na\xc3\xafve caf\xc3\xa9", 15743, 7668);
    TOK("accents: combining acute (NFD input)", "cafe\xcc\x81", 7668);
    TOK("accents: U+0130 lowercases to i + U+0307, then stripped", "\xc4\xb0stanbul", 9960);
    TOK("CJK: every ideograph its own word", "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c", 100, 100, 1745, 100);
    TOK("CJK: spaces around an ideograph inside a word", "a\xe4\xb8\xad" "b", 1037, 1746, 1038);
    TOK("control: NUL, ZWSP (Cf), DEL dropped, joining the word", "\0a\xe2\x80\x8b" "b\x7f", 11113);
    TOK("control: \\t \\n \\r are spaces", "\ta\nb\rc", 1037, 1038, 1039);
    TOK("control: U+001C dropped (Cc, though Python calls it a space)", "a\x1c" "b", 11113);
    TOK("control: U+FFFD dropped", "a\xef\xbf\xbd" "b", 11113);
    TOK("control: private use (Co) dropped", "a\xee\x80\x80" "b", 11113);
    TOK("whitespace: NBSP (Zs)", "a\xc2\xa0" "b", 1037, 1038);
    TOK("whitespace: ideographic space", "a\xe3\x80\x80" "b", 1037, 1038);
    TOK("whitespace: U+2028 splits (Python str.split)", "hello\xe2\x80\xa8world", 7592, 2088);
    TOK("unk: emoji", "\xf0\x9f\x99\x82", 100);
    TOK("unk: fullwidth letters not in vocab", "\xef\xbc\xa8\xef\xbd\x85\xef\xbd\x8c\xef\xbd\x8c\xef\xbd\x8f", 100);
    TOK("special: literal [UNK]", "[UNK]", 100);
    TOK("special: [UNK] glued to text", "x [UNK]y", 1060, 100, 1061);
    TOK("special: [MASK] inside a word", "a[MASK]b", 1037, 103, 1038);
    TOK("special: [MASK] in brackets", "[[MASK]]", 1031, 103, 1033);
    TOK("special: lowercase [mask] is text", "[mask]", 1031, 7308, 1033);
    TOK("special: adjacent", "[CLS][SEP][PAD]", 101, 102, 0);
    TOK("greek: final capital sigma -> σ (HF lowercases per character)", "\xce\x9f\xce\x94\xce\x9f\xce\xa3", 1169,
        29722, 29730, 29733);
    TOK("ligature fi (no NFKC)", "\xef\xac\x81ne", 1984, 2638);
    TOK("sharp s", "stra\xc3\x9f" "e", 2358, 27807);
    TOK("BOM dropped (Cf)", "\xef\xbb\xbfhi", 7632);
    TOK("cyrillic", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82 \xd0\xbc\xd0\xb8\xd1\x80", 1194, 16856, 10325,
        25529, 15290, 22919, 1191, 10325, 16856);
    TOK("arabic", "\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7", 1295, 17149, 29820, 29816, 25573);
    TOK("vulgar fraction", "\xc2\xbd", 1092);

    TOKNONE("empty text", "");
    TOKNONE("whitespace only", " \t\n\r \xc2\xa0\xe3\x80\x80 ");
    TOKNONE("control only", "\0\x01\x1f\x7f\xe2\x80\x8b");
    TOKNONE("combining marks only", "\xcc\x81\xcc\x81");

    /* word length limit: 100 code points, counted after accent stripping */
    char b[1024];
    memset(b, 'x', 101);
    int32_t got[128];
    int n = wp_tokenize(W, b, 100, got, 128, err, sizeof err);
    CHECKF(n == 50 && got[0] == 22038 && got[49] == 20348, "word of 100 chars: xx ##xx x49", "n=%d", n);
    n = wp_tokenize(W, b, 101, got, 128, err, sizeof err);
    CHECKF(n == 1 && got[0] == 100, "word of 101 chars: [UNK]", "n=%d", n);
    size_t k = 0;
    for (int i = 0; i < 101; i++) k += (size_t)snprintf(b + k, sizeof b - k, "\xc3\xa9");
    n = wp_tokenize(W, b, k, got, 128, err, sizeof err);
    CHECKF(n == 1 && got[0] == 100, "101 x U+00E9: [UNK]", "n=%d", n);
    k = 0;
    for (int i = 0; i < 60; i++) k += (size_t)snprintf(b + k, sizeof b - k, "e\xcc\x81");
    n = wp_tokenize(W, b, k, got, 128, err, sizeof err);
    CHECKF(n == 30 && got[0] == 25212 && got[29] == 4402, "60 x e+U+0301 (120 code points in): 60 chars, split",
           "n=%d", n);

    /* max_ids below the total: the total is returned, nothing written past */
    int32_t few[3] = {-7, -7, -7};
    n = wp_tokenize(W, "one two three four", 18, few, 2, err, sizeof err);
    CHECKF(n == 4 && few[0] == 2028 && few[1] == 2048 && few[2] == -7, "max_ids: total returned, no overrun",
           "n=%d %d %d %d", n, few[0], few[1], few[2]);
    n = wp_tokenize(W, "one two", 7, NULL, 0, err, sizeof err);
    CHECKF(n == 2, "count only (ids NULL)", "n=%d", n);
}

static void bad_utf8(const char *name, const char *text, size_t len, const char *where) {
    int32_t got[8];
    err[0] = '\0';
    int n = wp_tokenize(W, text, len, got, 8, err, sizeof err);
    CHECKF(n == -1 && strstr(err, where), name, "n=%d err='%s'", n, err);
}

static void test_invalid(void) {
    bad_utf8("invalid UTF-8: stray 0xff", "abc\xff", 4, "byte 3");
    bad_utf8("invalid UTF-8: overlong '/'", "\xc0\xaf", 2, "byte 0");
    bad_utf8("invalid UTF-8: surrogate", "ok \xed\xa0\x80", 6, "byte 3");
    bad_utf8("invalid UTF-8: truncated sequence at end", "x\xe4\xbd", 3, "byte 1");
    bad_utf8("invalid UTF-8: above U+10FFFF", "\xf4\x90\x80\x80", 4, "byte 0");
    bad_utf8("invalid UTF-8: lone continuation", "ab\x80", 3, "byte 2");
    bad_utf8("invalid UTF-8 after a special token", "[CLS]\xfe", 6, "byte 5");
    int32_t ids[30];
    int tr = 0;
    CHECK(wp_encode(W, "a\xff", 2, 30, ids, &tr, err, sizeof err) == -1 && strstr(err, "byte 1"),
          "encode: invalid UTF-8 is -1");
}

static void test_encode(void) {
    int32_t ids[64];
    int tr = -1;
    int n = wp_encode(W, "Hello, World!!", 14, 30, ids, &tr, err, sizeof err);
    CHECKF(n == 7 && ids[0] == 101 && ids[1] == 7592 && ids[5] == 999 && ids[6] == 102 && tr == 0,
           "encode: [CLS] ids [SEP]", "n=%d tr=%d", n, tr);
    const char *long_text = "a b c d e f g h i j k l m n o p q r s t u v w x y z a b c d e f g h i j";
    n = wp_encode(W, long_text, strlen(long_text), 30, ids, &tr, err, sizeof err);
    CHECKF(n == 30 && ids[0] == 101 && ids[1] == 1037 && ids[28] == 1038 && ids[29] == 102 && tr == 1,
           "encode: truncated to max_len 30 (HF truncation=True)", "n=%d tr=%d ids[28]=%d", n, tr, ids[28]);
    n = wp_encode(W, "a b c d e f g h i j k l m n o p q r s t u v w x y z a b", 55, 30, ids, &tr, err, sizeof err);
    CHECKF(n == 30 && tr == 0 && ids[28] == 1038, "encode: exactly 28 ids fit, not truncated", "n=%d tr=%d", n, tr);
    n = wp_encode(W, "hello", 5, 2, ids, &tr, err, sizeof err);
    CHECKF(n == 2 && ids[0] == 101 && ids[1] == 102 && tr == 1, "encode: max_len 2 -> [CLS][SEP]", "n=%d", n);
    n = wp_encode(W, "", 0, 30, ids, &tr, err, sizeof err);
    CHECKF(n == 2 && tr == 0, "encode: empty text", "n=%d", n);
    n = wp_encode(W, "hello", 5, 1, ids, &tr, err, sizeof err);
    CHECKF(n == -1 && strstr(err, "max_len"), "encode: max_len 1 refused", "n=%d err=%s", n, err);
    n = wp_encode(W, "hello", 5, 3, ids, NULL, err, sizeof err);
    CHECKF(n == 3 && ids[1] == 7592 && ids[2] == 102, "encode: truncated may be NULL", "n=%d", n);
}

static void dec_eq(const char *name, const int32_t *ids, int n, int flags, const char *want) {
    char *s = wp_decode_ex(W, ids, n, flags);
    CHECKF(!strcmp(s, want), name, "got '%s' want '%s'", s, want);
    free(s);
}

static void test_decode(void) {
    int32_t a[] = {101, 7592, 1010, 2088, 999, 102, 0, 0};
    dec_eq("decode: specials skipped, clean-up", a, 8, 0, "hello, world!");
    char *s = wp_decode(W, a, 8);
    CHECK(!strcmp(s, "hello, world!"), "decode: wp_decode = wp_decode_ex(0)");
    free(s);
    dec_eq("decode: keep special", a, 6, WP_DECODE_KEEP_SPECIAL, "[CLS] hello, world! [SEP]");
    dec_eq("decode: no clean-up", a, 6, WP_DECODE_NO_CLEANUP, "hello , world !");
    int32_t b[] = {14477, 20961, 3468}; /* una ##ffa ##ble */
    dec_eq("decode: ## pieces joined", b, 3, 0, "unaffable");
    /* it ' s a dog ' s life , isn ' t it ? */
    const char *t = "it's a dog's life, isn't it ?";
    int32_t ids[64];
    int n = wp_tokenize(W, t, strlen(t), ids, 64, err, sizeof err);
    dec_eq("decode: contractions cleaned up", ids, n, 0, "it's a dog's life, isn't it?");
    int32_t c[] = {2123, 1005, 1056}; /* don ' t */
    dec_eq("decode: \" ' \" -> \"'\"", c, 3, 0, "don't");
    int32_t d[] = {1037, 100, 1038, 103}; /* a [UNK] b [MASK] */
    dec_eq("decode: [UNK] skipped like every special token", d, 4, 0, "a b");
    int32_t e[] = {1037, -1, 30522, 99999, 1038};
    dec_eq("decode: out-of-range ids skipped", e, 5, 0, "a b");
    dec_eq("decode: out-of-range ids as [UNK] (HF)", e, 5, WP_DECODE_OOR_UNK, "a [UNK] [UNK] [UNK] b");
    dec_eq("decode: nothing", e, 0, 0, "");
    int32_t f[] = {101, 102};
    dec_eq("decode: only specials", f, 2, 0, "");
    int32_t g[] = {2015, 1037}; /* ##s a: a leading ## stays */
    dec_eq("decode: leading ## piece kept", g, 2, 0, "##s a");
    int32_t h[] = {1012, 1012, 1012}; /* . . . -> ... */
    dec_eq("decode: ' .' replaced left to right", h, 3, 0, "...");
}

/* a small vocab from lines joined by "\n" */
static wordpiece *mini(const char *text, size_t n) {
    err[0] = '\0';
    return wp_load(text, n, err, sizeof err);
}

#define MINI(s) mini(s, sizeof(s) - 1)

static void test_load(void) {
    wordpiece *v = MINI("[PAD]\n[UNK]\n[CLS]\n[SEP]\nun\n##aff\n##able\n##a\n##ff\n##ffa\naff\n");
    CHECKF(v != NULL, "load: small vocab", "%s", err);
    if (v) {
        CHECK(wp_vocab_size(v) == 11 && wp_mask(v) == -1, "load: 11 tokens, no [MASK]");
        int32_t ids[16];
        int n = wp_tokenize(v, "unaffable", 9, ids, 16, err, sizeof err);
        CHECKF(n == 3 && ids[0] == 4 && ids[1] == 5 && ids[2] == 6, "wordpiece: greedy longest match (un ##aff ##able)",
               "n=%d", n);
        n = wp_tokenize(v, "affa", 4, ids, 16, err, sizeof err);
        CHECKF(n == 2 && ids[0] == 10 && ids[1] == 7, "wordpiece: greedy, not optimal (aff ##a)", "n=%d", n);
        n = wp_tokenize(v, "unaffablez", 10, ids, 16, err, sizeof err);
        CHECKF(n == 1 && ids[0] == 1, "wordpiece: unmatched tail -> one [UNK]", "n=%d", n);
        n = wp_tokenize(v, "[MASK]", 6, ids, 16, err, sizeof err);
        CHECKF(n == 3 && ids[0] == 1 && ids[1] == 1 && ids[2] == 1, "load: without [MASK] in vocab, [MASK] is text",
               "n=%d", n);
        wp_free(v);
    }
    v = MINI("[PAD]\r\n[UNK]\r\n[CLS]\r[SEP]\r\nx");
    CHECKF(v && wp_vocab_size(v) == 5 && wp_id(v, "[CLS]") == 2 && wp_id(v, "x") == 4,
           "load: CRLF, CR, no final newline (Python universal newlines)", "%s", err);
    wp_free(v);
    v = MINI("[PAD]\n[UNK]\n[CLS]\n[SEP]\n\nb\n\n");
    CHECKF(!v && strstr(err, "duplicate") && strstr(err, "lines 5 and 7"), "load: duplicate (empty) token refused",
           "%s", err);
    wp_free(v);
    v = MINI("[PAD]\n[UNK]\n[SEP]\n");
    CHECKF(!v && strstr(err, "[CLS]"), "load: missing [CLS] refused", "%s", err);
    v = MINI("[PAD]\n[UNK]\n[CLS]\n[SEP]\nab\xff\n");
    CHECKF(!v && strstr(err, "line 5") && strstr(err, "UTF-8"), "load: invalid UTF-8 refused with its line", "%s", err);
    v = MINI("[PAD]\n[UNK]\n[CLS]\n[SEP]\na\0b\n");
    CHECKF(!v && strstr(err, "NUL"), "load: NUL byte refused", "%s", err);
    v = MINI("");
    CHECKF(!v && strstr(err, "no [CLS]"), "load: empty vocab refused", "%s", err);
    v = wp_load_file("/nonexistent/vocab.txt", err, sizeof err);
    CHECKF(!v && strstr(err, "/nonexistent/vocab.txt"), "load: missing file named", "%s", err);

    /* NFD canonical ordering: U+1D16D (ccc 226) before U+1D165 (ccc 216), both
     * Mc (kept), swap; a dropped Mn (U+0301, ccc 230) between them changes nothing */
    v = MINI("[PAD]\n[UNK]\n[CLS]\n[SEP]\nx\xf0\x9d\x85\xa5\xf0\x9d\x85\xad\n");
    if (v) {
        int32_t ids[4];
        int n = wp_tokenize(v, "x\xf0\x9d\x85\xad\xf0\x9d\x85\xa5", 9, ids, 4, err, sizeof err);
        CHECKF(n == 1 && ids[0] == 4, "NFD: non-starters reordered by combining class", "n=%d id=%d", n, ids[0]);
        n = wp_tokenize(v, "x\xf0\x9d\x85\xad\xcc\x81\xf0\x9d\x85\xa5", 11, ids, 4, err, sizeof err);
        CHECKF(n == 1 && ids[0] == 4, "NFD: reordering across a stripped mark", "n=%d id=%d", n, ids[0]);
        /* U+09C1 BENGALI VOWEL SIGN U is Mn with class 0: stripped, but a starter */
        n = wp_tokenize(v, "x\xf0\x9d\x85\xad\xe0\xa7\x81\xf0\x9d\x85\xa5", 12, ids, 4, err, sizeof err);
        CHECKF(n == 1 && ids[0] == 1, "NFD: a stripped starter still blocks reordering", "n=%d id=%d", n, ids[0]);
        wp_free(v);
    }
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void test_big(void) {
    size_t n = 1 << 20;
    char *b = malloc(n + 8);
    int32_t ids[4];
    /* 1 MB of one word: counted, one [UNK] */
    memset(b, 'a', n);
    double t0 = now_s();
    int k = wp_tokenize(W, b, n, ids, 4, err, sizeof err);
    double t1 = now_s();
    CHECKF(k == 1 && ids[0] == 100, "1 MB word: one [UNK]", "k=%d", k);
    /* 1 MB of "ab " words */
    for (size_t i = 0; i < n; i++) b[i] = "ab "[i % 3];
    k = wp_tokenize(W, b, n, ids, 4, err, sizeof err);
    double t2 = now_s();
    CHECKF(k == (int)((n + 2) / 3) && ids[0] == 11113, "1 MB of short words", "k=%d", k);
    /* 1 MB of 100-char words that each need the slowest WordPiece path: 'x' has
     * no ## continuation of length > 2, so every start tries every length */
    for (size_t i = 0; i < n; i++) b[i] = (i % 101 == 100) ? ' ' : "qxzj"[i % 4];
    k = wp_tokenize(W, b, n, ids, 4, err, sizeof err);
    double t3 = now_s();
    CHECKF(k > 0, "1 MB of 100-char words", "k=%d", k);
    /* 1 MB of combining marks on one base: one long run of non-starters */
    b[0] = 'e';
    for (size_t i = 1; i + 1 < n; i += 2) memcpy(b + i, (i / 2) % 2 ? "\xcc\x81" : "\xcc\xa3", 2);
    k = wp_tokenize(W, b, n - 1, ids, 4, err, sizeof err);
    double t4 = now_s();
    CHECKF(k == 1 && ids[0] == 1041, "1 MB of combining marks: e", "k=%d id=%d", k, ids[0]);
    /* 1 MB of the Mc non-starters that reorder: bounded by the 100-char cap */
    b[0] = 'x';
    size_t m = 1;
    while (m + 8 <= n) {
        memcpy(b + m, "\xf0\x9d\x85\xad\xf0\x9d\x85\xa5", 8);
        m += 8;
    }
    k = wp_tokenize(W, b, m, ids, 4, err, sizeof err);
    double t5 = now_s();
    CHECKF(k == 1 && ids[0] == 100, "1 MB of reordering non-starters: [UNK]", "k=%d", k);
    printf("# 1 MB: one word %.3f s, short words %.3f s, 100-char words %.3f s, marks %.3f s, Mc run %.3f s\n",
           t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4);
    CHECKF(t5 - t0 < 10.0, "1 MB cases in bounded time", "%.2f s", t5 - t0);
    free(b);

    /* speed on a caption */
    const char *cap = "A man is speaking while birds chirp in the background and a car passes by.";
    size_t cl = strlen(cap);
    int32_t out[64];
    int reps = 20000;
    double a = now_s();
    long sum = 0;
    for (int r = 0; r < reps; r++) sum += wp_encode(W, cap, cl, 30, out, NULL, err, sizeof err);
    double us = (now_s() - a) / reps * 1e6;
    printf("# %.2f us per caption (%zu bytes, %ld ids)\n", us, cl, sum / reps);
    CHECKF(us < 200, "caption tokenized in microseconds", "%.1f us", us);
}

int main(int argc, char **argv) {
    if (argc > 1) return helper(argc, argv);
    const char *vp = vocab_path();
    W = wp_load_file(vp, err, sizeof err);
    CHECKF(W != NULL, "load bert-base-uncased vocab", "%s (data/bert-base-uncased-vocab.txt is part of the repository)", err);
    if (!W) return check_exit();
    test_utf8();
    test_vocab();
    test_tokenize();
    test_invalid();
    test_encode();
    test_decode();
    test_load();
    test_big();
    wp_free(W);
    return check_exit();
}
