/* test_bpe.c - GPT-2 byte-level BPE as RoBERTa's tokenizer (lib/bpe.c).
 *
 * With no arguments: unit checks on RoBERTa's files in tests/data/roberta-bpe
 * (run from the repo root, as tests/run.sh does) and on small hand-written
 * vocabs and merges loaded from memory. Expected ids come from
 * scripts/bperef.py (the published algorithm; "Hello world" -> 0 31414 232 2
 * is also RoBERTa's documented example).
 *
 * Helper mode for tests/py/test_bpe.py (texts hex-encoded, one per line on
 * stdin, so any byte can be passed; one output line each):
 *   --encode VOCAB MERGES MAXLEN raw|salsa  HEX -> "id id ..." or "ERR reason"
 * MAXLEN 0: the ids without <s> </s> and without truncation. */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bpe.h"
#include "check.h"

static char err[512];

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static long unhex(char *s, size_t n) {
    if (n % 2) return -1;
    for (size_t i = 0; i < n / 2; i++) {
        int a = hexval(s[2 * i]), b = hexval(s[2 * i + 1]);
        if (a < 0 || b < 0) return -1;
        s[i] = (char)(a * 16 + b);
    }
    return (long)(n / 2);
}

static int helper(int argc, char **argv) {
    if (argc != 6 || strcmp(argv[1], "--encode") || (strcmp(argv[5], "raw") && strcmp(argv[5], "salsa"))) {
        fprintf(stderr, "usage: test_bpe --encode VOCAB MERGES MAXLEN raw|salsa\n");
        return 1;
    }
    bpe *b = bpe_load_files(argv[2], argv[3], err, sizeof err);
    if (!b) {
        fprintf(stderr, "test_bpe: %s\n", err);
        return 2;
    }
    int maxlen = atoi(argv[4]), salsa = !strcmp(argv[5], "salsa");
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    int32_t *ids = malloc((BPE_MAX_TEXT + (size_t)maxlen + 2) * sizeof *ids);
    while ((n = getline(&line, &cap, stdin)) >= 0) {
        if (n > 0 && line[n - 1] == '\n') line[--n] = '\0';
        long len = unhex(line, (size_t)n);
        if (len < 0) {
            printf("ERR bad hex\n");
            continue;
        }
        char *text = line, *pre = NULL;
        size_t tlen = (size_t)len;
        int k = -1;
        if (salsa) text = pre = bpe_salsa_preprocess(line, (size_t)len, &tlen, err, sizeof err);
        if (text)
            k = maxlen ? bpe_encode(b, text, tlen, maxlen, ids, NULL, err, sizeof err)
                       : bpe_tokenize(b, text, tlen, ids, BPE_MAX_TEXT, err, sizeof err);
        free(pre);
        if (k < 0) {
            printf("ERR %s\n", err);
            continue;
        }
        for (int i = 0; i < k; i++) printf(i ? " %d" : "%d", ids[i]);
        putchar('\n');
    }
    free(line);
    free(ids);
    bpe_free(b);
    return 0;
}

/* -------------------------------------------------------------- unit tests */

static bpe *R; /* RoBERTa's */

static int ids_are(const int32_t *got, int n, const int32_t *want, int wn) {
    if (n != wn) return 0;
    for (int i = 0; i < n; i++)
        if (got[i] != want[i]) return 0;
    return 1;
}

static void check_encode(bpe *b, const char *text, int salsa, const int32_t *want, int wn, const char *name) {
    int32_t ids[64];
    size_t len = strlen(text);
    char *pre = NULL;
    if (salsa) text = pre = bpe_salsa_preprocess(text, len, &len, err, sizeof err);
    int n = text ? bpe_encode(b, text, len, 64, ids, NULL, err, sizeof err) : -1;
    free(pre);
    char got[512] = "";
    for (int i = 0, k = 0; i < n && k < 400; i++) k += snprintf(got + k, sizeof got - (size_t)k, " %d", ids[i]);
    CHECKF(n >= 0 && ids_are(ids, n, want, wn), name, "got%s (%s)", got, n < 0 ? err : "");
}

static void test_roberta(void) {
    CHECKF(bpe_vocab_size(R) == 50265, "roberta vocab: 50265 ids", "%d", bpe_vocab_size(R));
    CHECKF(bpe_merges(R) == 50000, "gpt-2 merges: 50000", "%d", bpe_merges(R));
    CHECK(bpe_bos(R) == 0 && bpe_pad(R) == 1 && bpe_eos(R) == 2 && bpe_unk(R) == 3, "special ids <s> <pad> </s> <unk>");
    CHECK(bpe_id(R, "\xc4\xa0the") == 5 && bpe_id(R, ".") == 4, "ids from the vocab file (Gthe 5, . 4)");
    CHECK(bpe_token(R, 6) && !strcmp(bpe_token(R, 6), ","), "bpe_token(6) is ','");
    CHECK(bpe_token(R, 50265) == NULL && bpe_token(R, -1) == NULL, "bpe_token out of range is NULL");
    check_encode(R, "Hello world", 0, (int32_t[]){0, 31414, 232, 2}, 4, "raw 'Hello world' (RoBERTa's example)");
    check_encode(R, "Hello world", 1, (int32_t[]){0, 42891, 232, 2}, 4, "salsa 'Hello world' (lower case)");
    check_encode(R, "A dog barks.", 1, (int32_t[]){0, 102, 2335, 2003, 2258, 2}, 6, "salsa: period deleted");
    check_encode(R, "A dog barks.", 0, (int32_t[]){0, 250, 2335, 2003, 2258, 4, 2}, 7, "raw: period kept");
    check_encode(R, "don't stop", 0, (int32_t[]){0, 7254, 75, 912, 2}, 5, "raw contraction 't");
    check_encode(R, "don't stop", 1, (int32_t[]){0, 417, 2533, 912, 2}, 5, "salsa: apostrophe deleted");
    check_encode(R, " Hello", 0, (int32_t[]){0, 20920, 2}, 3, "leading space joins the word");
    check_encode(R, "", 0, (int32_t[]){0, 2}, 2, "empty caption: <s> </s>");
    check_encode(R, "?!.", 1, (int32_t[]){0, 2}, 2, "all punctuation: <s> </s>");
    check_encode(R, "caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80", 0,
                 (int32_t[]){0, 438, 2001, 1140, 47416, 46, 15389, 46499, 11582, 17841, 7471, 2}, 12,
                 "accents, CJK, emoji: byte-level pieces");

    /* literal special tokens, as HF's tokenize(): their ids; <mask> eats
     * the whitespace before it (AddedToken lstrip) */
    check_encode(R, "a<s>b", 0, (int32_t[]){0, 102, 0, 428, 2}, 5, "raw: a literal <s> is its id");
    check_encode(R, "a \t<mask> b", 0, (int32_t[]){0, 102, 50264, 741, 2}, 5, "raw: <mask> strips the space before it");
    check_encode(R, "x <pad>", 0, (int32_t[]){0, 1178, 1437, 1, 2}, 5, "raw: <pad> does not");
    check_encode(R, "<<s>>", 0, (int32_t[]){0, 41552, 0, 15698, 2}, 5, "raw: <s> inside angle brackets");
    check_encode(R, "<mask", 0, (int32_t[]){0, 41552, 43776, 2}, 4, "raw: an unfinished <mask is text");
    check_encode(R, "a <mask>", 1, (int32_t[]){0, 102, 11445, 2}, 4, "salsa: the brackets are deleted first");

    /* truncation: <s> + 30 + </s> */
    char text[400] = "";
    for (int i = 0; i < 40; i++) strcat(text, "dog ");
    int32_t ids[64];
    int trunc = -1;
    int n = bpe_encode(R, text, strlen(text), 32, ids, &trunc, err, sizeof err);
    CHECKF(n == 32 && trunc == 1 && ids[0] == 0 && ids[31] == 2 && ids[30] == 2335, "truncated to 32 with </s>",
           "n=%d trunc=%d", n, trunc);
    n = bpe_encode(R, "a dog", 5, 32, ids, &trunc, err, sizeof err);
    CHECK(n == 4 && trunc == 0, "short caption not truncated");
    CHECK(bpe_encode(R, "a", 1, 1, ids, NULL, err, sizeof err) == -1 && strstr(err, "max_len"), "max_len 1 refused");
    n = bpe_tokenize(R, text, strlen(text), ids, 5, err, sizeof err);
    CHECKF(n == 41, "tokenize counts past max_ids (40 words + the final space)", "%d", n);
}

static void test_invalid(void) {
    int32_t ids[64];
    const char *bad[] = {"a\xff", "\xc0\xaf", "\xed\xa0\x80", "ab\xe6\x9d", "\xf4\x90\x80\x80"};
    for (int i = 0; i < 5; i++) {
        err[0] = 0;
        int n = bpe_encode(R, bad[i], strlen(bad[i]), 32, ids, NULL, err, sizeof err);
        CHECKF(n == -1 && strstr(err, "not valid UTF-8 at byte"), "invalid UTF-8 refused with the byte offset",
               "case %d: n=%d err=%s", i, n, err);
        size_t ol;
        char *p = bpe_salsa_preprocess(bad[i], strlen(bad[i]), &ol, err, sizeof err);
        CHECKF(!p && strstr(err, "not valid UTF-8"), "preprocess refuses invalid UTF-8", "case %d", i);
        free(p);
    }
    CHECKF(strstr(err, "at byte 0 (0xf4 0x90 0x80 0x80)") != NULL, "error names the offset and the bytes", "%s",
           err);
    size_t big = BPE_MAX_TEXT + 1;
    char *t = malloc(big);
    memset(t, 'a', big);
    CHECK(bpe_encode(R, t, big, 32, ids, NULL, err, sizeof err) == -1 && strstr(err, "bytes long"),
          "over-long caption refused with a reason");
    size_t ol;
    CHECK(bpe_salsa_preprocess(t, big, &ol, err, sizeof err) == NULL, "preprocess refuses over-long text");
    /* the longest accepted text, one word: the O(n^2) BPE stays bounded */
    int n = bpe_encode(R, t, BPE_MAX_TEXT, 32, ids, NULL, err, sizeof err);
    CHECKF(n == 32, "longest text accepted (8192 x 'a')", "%d %s", n, err);
    free(t);
    n = bpe_encode(R, "a\0b", 3, 32, ids, NULL, err, sizeof err);
    CHECKF(n == 5, "a NUL byte is a character", "%d", n);
}

static void test_preprocess(void) {
    struct {
        const char *in, *out, *name;
    } c[] = {
        {"A Dog's BARK!", "a dogs bark", "lower case, ASCII punctuation deleted"},
        {"\xc4\xb0stanbul", "i\xcc\x87stanbul", "U+0130 lowers to i + U+0307 (Python)"},
        {"\xce\x9f\xce\x94\xce\x9f\xce\xa3", "\xce\xbf\xce\xb4\xce\xbf\xcf\x82", "final sigma (Python's rule)"},
        {"\xce\xa3", "\xcf\x83", "lone sigma is not final"},
        {"\xce\x9f\xce\xa3.", "\xce\xbf\xcf\x82", "sigma before a period is final (period is case-ignorable)"},
        {"\xce\x9f\xce\xa3\xce\x91", "\xce\xbf\xcf\x83\xce\xb1", "medial sigma"},
        {"\xe2\x80\x9cQuote\xe2\x80\x9d \xc2\xbf", "\xe2\x80\x9cquote\xe2\x80\x9d \xc2\xbf", "non-ASCII punctuation kept"},
        {"x\ty\n", "x\ty\n", "whitespace kept"},
    };
    for (size_t i = 0; i < sizeof c / sizeof c[0]; i++) {
        size_t n;
        char *p = bpe_salsa_preprocess(c[i].in, strlen(c[i].in), &n, err, sizeof err);
        CHECKF(p && n == strlen(c[i].out) && !strcmp(p, c[i].out), c[i].name, "got '%s'", p ? p : err);
        free(p);
    }
}

#define HDR "#version: 0.2\n"
static const char small_vocab[] =
    "{\"<s>\": 0, \"<pad>\": 1, \"</s>\": 2, \"<unk>\": 3, \"a\": 4, \"b\": 5, \"aa\": 6, \"aaa\": 7, "
    "\"ab\": 8, \"\\u0120\": 9, \"\\u0120a\": 10}";

static bpe *small(const char *merges) {
    return bpe_load(small_vocab, strlen(small_vocab), merges, strlen(merges), err, sizeof err);
}

static void test_small(void) {
    int32_t ids[64];
    bpe *b = small(HDR "a a\naa a\n");
    CHECKF(b != NULL, "load from memory", "%s", err);
    if (!b) return;
    int n = bpe_tokenize(b, "aaaa", 4, ids, 64, err, sizeof err);
    CHECK(n == 2 && ids[0] == 6 && ids[1] == 6, "a a (rank 0) merges every pair in one pass: aa aa");
    n = bpe_tokenize(b, "aaa", 3, ids, 64, err, sizeof err);
    CHECK(n == 1 && ids[0] == 7, "then aa a: aaa");
    n = bpe_tokenize(b, "abc", 3, ids, 64, err, sizeof err);
    CHECK(n == 3 && ids[0] == 4 && ids[1] == 5 && ids[2] == 3, "no merge a b; c has no id: <unk>");
    bpe_free(b);
    /* HF applies the lowest rank to the whole word before the next: with
     * "aa a" ranked first, "aaaa" still becomes aa aa, not aaa a */
    b = small(HDR "aa a\na a\n");
    n = bpe_tokenize(b, "aaaa", 4, ids, 64, err, sizeof err);
    CHECK(n == 2 && ids[0] == 6 && ids[1] == 6, "one rank at a time over the whole word (aa aa, not aaa a)");
    bpe_free(b);
    b = small(HDR "a b\n\xc4\xa0 a\na b\r\n");
    CHECKF(b && bpe_merges(b) == 3, "CRLF line and a repeated pair accepted", "%s", err);
    n = b ? bpe_tokenize(b, " ab", 3, ids, 64, err, sizeof err) : -1;
    /* "a b" now ranks after "Ġ a": Ġa b, not Ġ ab */
    CHECK(n == 2 && ids[0] == 10 && ids[1] == 5, "a repeated pair keeps its later rank (HF dict)");
    bpe_free(b);

    struct {
        const char *m, *why, *name;
    } bad[] = {
        {"a b\n", "#version", "merges without the #version header refused"},
        {HDR "a b", "no newline", "merges whose last line has no newline refused"},
        {HDR "a  b\n", "line 2", "merge line with two spaces refused, line named"},
        {HDR "a b\nab\n", "line 3", "merge line with one token refused"},
        {HDR "a b\n\n", "line 3", "empty merge line refused"},
        {HDR "a\tb\n", "line 2", "tab-separated merge refused"},
        {HDR "a \xff\n", "UTF-8", "merges with invalid UTF-8 refused"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        b = small(bad[i].m);
        CHECKF(!b && strstr(err, bad[i].why), bad[i].name, "err='%s'", err);
        bpe_free(b);
    }
    struct {
        const char *v, *why, *name;
    } badv[] = {
        {"{\"<s>\": 0, \"</s>\": 1}", "<unk>", "vocab without <unk> refused"},
        {"{\"<s>\": 0, \"</s>\": 1, \"<unk>\": 1}", "two tokens", "vocab with a repeated id refused"},
        {"{\"<s>\": 0, \"<s>\": 1}", "duplicate", "vocab with a repeated token refused"},
        {"{\"<s>\": -1}", "integer", "negative id refused"},
        {"{\"<s>\": \"0\"}", "integer", "string id refused"},
        {"[1, 2]", "object", "vocab not an object refused"},
        {"{\"<s>\": 0,", "vocab.json", "truncated JSON refused"},
        {"{}", "tokens", "empty vocab refused"},
    };
    for (size_t i = 0; i < sizeof badv / sizeof badv[0]; i++) {
        err[0] = 0;
        b = bpe_load(badv[i].v, strlen(badv[i].v), HDR, strlen(HDR), err, sizeof err);
        CHECKF(!b && strstr(err, badv[i].why), badv[i].name, "err='%s'", err);
        bpe_free(b);
    }
    b = bpe_load_files("/nonexistent/vocab.json", "x", err, sizeof err);
    CHECK(!b && strstr(err, "/nonexistent/vocab.json") && strstr(err, "No such file"), "missing file named");
}

int main(int argc, char **argv) {
    if (argc > 1) return helper(argc, argv);
    R = bpe_load_files("tests/data/roberta-bpe/vocab.json", "tests/data/roberta-bpe/merges.txt", err, sizeof err);
    CHECKF(R != NULL, "load RoBERTa's vocab.json and merges.txt", "%s (run from the repo root)", err);
    if (!R) return check_exit();
    test_roberta();
    test_invalid();
    test_preprocess();
    test_small();
    bpe_free(R);
    return check_exit();
}
