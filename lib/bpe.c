/* bpe.c - GPT-2 byte-level BPE and SALSA's caption preprocessing (see bpe.h).
 *
 * Every string the tokenizer deals in (vocab tokens, the two halves of each
 * merge and their concatenation, the 256 byte characters) is interned once at
 * load time as a symbol, so BPE works on arrays of symbol numbers: a merge is
 * a hash lookup of the pair (a, b) giving its rank and the symbol of a+b, and
 * comparing strings (as encoder.py's word[i] == first does) is comparing
 * numbers. The pre-tokenizer is the regex of encoder.py written out as a scan
 * over character classes (bpe_pretoken). */
#define _POSIX_C_SOURCE 200809L
#include "bpe.h"

#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

typedef struct {
    uint64_t h;
    int32_t sym; /* -1: empty */
} sslot;

typedef struct {
    uint64_t key;  /* a << 32 | b */
    int32_t rank;  /* -1: empty */
    int32_t res;   /* the symbol a+b */
} pslot;

struct bpe {
    char *arena;          /* every symbol's bytes, NUL-terminated */
    size_t arena_n, arena_cap;
    uint32_t *soff, *slen; /* symbol s at arena + soff[s], slen[s] bytes */
    int32_t *sid;          /* its vocab id, -1 if none */
    int nsym, symcap;
    sslot *st;             /* string -> symbol */
    size_t smask;
    pslot *pt;             /* pair -> rank, result */
    size_t pmask;
    int32_t byte_sym[256]; /* byte -> the symbol of its bytes_to_unicode char */
    int32_t *id_sym;       /* [nid] id -> symbol, -1 for a hole */
    int nid, nmerges;
    int bos, eos, unk, pad, mask;
    /* the special tokens HF's RobertaTokenizer finds literally in text (its
     * added tokens): <s> <pad> </s> <unk> <mask>, those the vocab has */
    int32_t special_cp[5][8]; /* their code points (ASCII) */
    int special_len[5], special_id[5], nspecial;
};

/* Decodes text[0..len) into cps[] (code points) and at[] (byte offset of
 * each, at[n] = len); returns the count, or -1 with a reason. */
static long decode_all(const char *text, size_t len, int32_t *cps, uint32_t *at, const char *what, char *err,
                       size_t errlen) {
    long n = 0;
    for (size_t i = 0; i < len;) {
        size_t k = utf8_next((const unsigned char *)text + i, len - i, &cps[n]);
        if (!k) {
            utf8_err(err, errlen, what, text, len, i);
            return -1;
        }
        at[n++] = (uint32_t)i;
        i += k;
    }
    at[n] = (uint32_t)len;
    return n;
}

/* --------------------------------------------------------------- symbols */

static uint64_t fnv(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return h;
}

static void st_grow(bpe *b) {
    size_t cap = b->st ? (b->smask + 1) * 2 : 1024;
    sslot *ns = xmalloc(cap * sizeof *ns);
    for (size_t i = 0; i < cap; i++) ns[i].sym = -1;
    if (b->st)
        for (size_t i = 0; i <= b->smask; i++) {
            if (b->st[i].sym < 0) continue;
            size_t j = b->st[i].h & (cap - 1);
            while (ns[j].sym >= 0) j = (j + 1) & (cap - 1);
            ns[j] = b->st[i];
        }
    free(b->st);
    b->st = ns;
    b->smask = cap - 1;
}

static int32_t sym_find(const bpe *b, const char *s, size_t n) {
    uint64_t h = fnv(s, n);
    for (size_t j = h & b->smask;; j = (j + 1) & b->smask) {
        int32_t y = b->st[j].sym;
        if (y < 0) return -1;
        if (b->st[j].h == h && b->slen[y] == n && memcmp(b->arena + b->soff[y], s, n) == 0) return y;
    }
}

/* the symbol of s[0..n), added if new; -1 if the tables would pass 2^31 */
static int32_t sym_intern(bpe *b, const char *s, size_t n) {
    int32_t y = sym_find(b, s, n);
    if (y >= 0) return y;
    if (b->nsym >= INT32_MAX / 2 || b->arena_n + n + 1 > UINT32_MAX) return -1;
    if ((size_t)(b->nsym + 1) * 2 > b->smask + 1) st_grow(b);
    if (b->nsym == b->symcap) {
        b->symcap = b->symcap ? 2 * b->symcap : 1024;
        b->soff = xrealloc(b->soff, (size_t)b->symcap * sizeof *b->soff);
        b->slen = xrealloc(b->slen, (size_t)b->symcap * sizeof *b->slen);
        b->sid = xrealloc(b->sid, (size_t)b->symcap * sizeof *b->sid);
    }
    if (b->arena_n + n + 1 > b->arena_cap) {
        while (b->arena_n + n + 1 > b->arena_cap) b->arena_cap = b->arena_cap ? 2 * b->arena_cap : 1 << 16;
        b->arena = xrealloc(b->arena, b->arena_cap);
    }
    y = b->nsym++;
    b->soff[y] = (uint32_t)b->arena_n;
    b->slen[y] = (uint32_t)n;
    b->sid[y] = -1;
    memcpy(b->arena + b->arena_n, s, n);
    b->arena[b->arena_n + n] = 0;
    b->arena_n += n + 1;
    uint64_t h = fnv(s, n);
    size_t j = h & b->smask;
    while (b->st[j].sym >= 0) j = (j + 1) & b->smask;
    b->st[j].h = h;
    b->st[j].sym = y;
    return y;
}

static uint64_t pair_hash(uint64_t k) { /* splitmix64 finaliser */
    k ^= k >> 30;
    k *= 0xbf58476d1ce4e5b9ULL;
    k ^= k >> 27;
    k *= 0x94d049bb133111ebULL;
    return k ^ (k >> 31);
}

static const pslot *pair_find(const bpe *b, int32_t x, int32_t y) {
    uint64_t key = (uint64_t)(uint32_t)x << 32 | (uint32_t)y;
    for (size_t j = pair_hash(key) & b->pmask;; j = (j + 1) & b->pmask) {
        if (b->pt[j].rank < 0) return NULL;
        if (b->pt[j].key == key) return &b->pt[j];
    }
}

/* GPT-2 encoder.py bytes_to_unicode(): printable bytes map to themselves,
 * the other 68 to U+0100 + their order */
static int32_t byte_char(int byte) {
    if ((byte >= '!' && byte <= '~') || (byte >= 0xA1 && byte <= 0xAC) || (byte >= 0xAE && byte <= 0xFF))
        return byte;
    int n = 0;
    for (int c = 0; c < byte; c++)
        if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) n++;
    return 256 + n;
}

/* ----------------------------------------------------------------- loading */

static int load_vocab(bpe *b, const char *vocab, size_t n, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(vocab, n, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        seterr(err, errlen, "vocab.json: %s (line %d, column %d)", je.text, je.line, je.column);
        return -1;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        seterr(err, errlen, "vocab.json: not a JSON object of token: id");
        return -1;
    }
    size_t count = json_object_size(root);
    if (count == 0 || count > (1 << 24)) {
        json_decref(root);
        seterr(err, errlen, "vocab.json: %zu tokens (need 1 to 2^24)", count);
        return -1;
    }
    const char *key;
    json_t *v;
    long maxid = -1;
    json_object_foreach(root, key, v) {
        if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) >= (1 << 24)) {
            seterr(err, errlen, "vocab.json: the id of token \"%.60s\" is not an integer in [0, 2^24)", key);
            json_decref(root);
            return -1;
        }
        if (json_integer_value(v) > maxid) maxid = (long)json_integer_value(v);
    }
    b->nid = (int)maxid + 1;
    b->id_sym = xmalloc((size_t)b->nid * sizeof *b->id_sym);
    for (int i = 0; i < b->nid; i++) b->id_sym[i] = -1;
    json_object_foreach(root, key, v) {
        int id = (int)json_integer_value(v);
        int32_t y = sym_intern(b, key, strlen(key));
        if (y < 0) {
            json_decref(root);
            seterr(err, errlen, "vocab.json: too large");
            return -1;
        }
        if (b->id_sym[id] >= 0) {
            seterr(err, errlen, "vocab.json: id %d is given to two tokens (\"%.60s\" and \"%.60s\")", id,
                   b->arena + b->soff[b->id_sym[id]], key);
            json_decref(root);
            return -1;
        }
        b->id_sym[id] = y;
        b->sid[y] = id;
    }
    json_decref(root);
    b->bos = bpe_id(b, "<s>");
    b->eos = bpe_id(b, "</s>");
    b->unk = bpe_id(b, "<unk>");
    b->pad = bpe_id(b, "<pad>");
    b->mask = bpe_id(b, "<mask>");
    static const char *const specials[5] = {"<s>", "<pad>", "</s>", "<unk>", "<mask>"};
    for (int i = 0; i < 5; i++) {
        int id = bpe_id(b, specials[i]);
        if (id < 0) continue;
        int k = b->nspecial++, len = (int)strlen(specials[i]);
        for (int j = 0; j < len; j++) b->special_cp[k][j] = (unsigned char)specials[i][j];
        b->special_len[k] = len;
        b->special_id[k] = id;
    }
    const char *missing = b->bos < 0 ? "<s>" : b->eos < 0 ? "</s>" : b->unk < 0 ? "<unk>" : NULL;
    if (missing) {
        seterr(err, errlen, "vocab.json: no token %s (a RoBERTa vocabulary has <s> </s> <unk> <pad>)", missing);
        return -1;
    }
    return 0;
}

static void pt_insert(bpe *b, int32_t x, int32_t y, int32_t rank, int32_t res) {
    uint64_t key = (uint64_t)(uint32_t)x << 32 | (uint32_t)y;
    size_t j = pair_hash(key) & b->pmask;
    while (b->pt[j].rank >= 0 && b->pt[j].key != key) j = (j + 1) & b->pmask;
    b->pt[j].key = key;
    b->pt[j].rank = rank; /* a repeated pair: the later rank, as HF's dict(zip(merges, range(n))) */
    b->pt[j].res = res;
}

static int load_merges(bpe *b, const char *m, size_t n, char *err, size_t errlen) {
    if (memchr(m, 0, n)) {
        seterr(err, errlen, "merges.txt: contains a NUL byte");
        return -1;
    }
    if (!utf8_valid(m, n)) {
        seterr(err, errlen, "merges.txt: not valid UTF-8");
        return -1;
    }
    /* GPT2Tokenizer: merges_handle.read().split("\n")[1:-1] */
    if (n < 8 || memcmp(m, "#version", 8) != 0) {
        seterr(err, errlen,
               "merges.txt: the first line is not a '#version' header (HF skips the first line unread, so "
               "its merge would be lost)");
        return -1;
    }
    size_t lines = 0;
    for (size_t i = 0; i < n; i++) lines += m[i] == '\n';
    if (n && m[n - 1] != '\n') {
        seterr(err, errlen, "merges.txt: the last line has no newline (HF ignores such a line)");
        return -1;
    }
    size_t cap = 16;
    while (cap < 2 * lines + 2) cap *= 2;
    b->pt = xmalloc(cap * sizeof *b->pt);
    for (size_t i = 0; i < cap; i++) b->pt[i].rank = -1;
    b->pmask = cap - 1;
    const char *p = memchr(m, '\n', n) + 1, *end = m + n;
    long lineno = 1, rank = 0;
    char *buf = NULL;
    size_t bufcap = 0;
    while (p < end) {
        lineno++;
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *e = nl;
        if (e > p && e[-1] == '\r') e--; /* Python's universal newlines */
        const char *sp = memchr(p, ' ', (size_t)(e - p));
        if (!sp || sp == p || sp + 1 == e || memchr(sp + 1, ' ', (size_t)(e - sp - 1)) ||
            memchr(p, '\t', (size_t)(e - p)) || memchr(p, '\r', (size_t)(e - p))) {
            free(buf);
            seterr(err, errlen, "merges.txt line %ld: not two tokens separated by one space", lineno);
            return -1;
        }
        if (rank >= INT32_MAX) {
            free(buf);
            seterr(err, errlen, "merges.txt: too many lines");
            return -1;
        }
        size_t la = (size_t)(sp - p), lb = (size_t)(e - sp - 1);
        if (la + lb > bufcap) {
            bufcap = 2 * (la + lb);
            buf = xrealloc(buf, bufcap);
        }
        memcpy(buf, p, la);
        memcpy(buf + la, sp + 1, lb);
        int32_t x = sym_intern(b, p, la), y = sym_intern(b, sp + 1, lb), r = sym_intern(b, buf, la + lb);
        if (x < 0 || y < 0 || r < 0) {
            free(buf);
            seterr(err, errlen, "merges.txt: too large");
            return -1;
        }
        pt_insert(b, x, y, (int32_t)rank, r);
        rank++;
        p = nl + 1;
    }
    free(buf);
    b->nmerges = (int)rank;
    return 0;
}

bpe *bpe_load(const char *vocab, size_t vocab_len, const char *merges, size_t merges_len, char *err,
              size_t errlen) {
    bpe *b = xcalloc(1, sizeof *b);
    st_grow(b);
    if (load_vocab(b, vocab, vocab_len, err, errlen) || load_merges(b, merges, merges_len, err, errlen)) {
        bpe_free(b);
        return NULL;
    }
    for (int c = 0; c < 256; c++) {
        char u[4];
        int k = utf8_put(u, byte_char(c));
        b->byte_sym[c] = sym_intern(b, u, (size_t)k);
    }
    return b;
}


bpe *bpe_load_files(const char *vocab_path, const char *merges_path, char *err, size_t errlen) {
    size_t vn, mn;
    char *v = read_file_all(vocab_path, (size_t)1 << 30, &vn, err, errlen);
    if (!v) return NULL;
    char *m = read_file_all(merges_path, (size_t)1 << 30, &mn, err, errlen);
    if (!m) {
        free(v);
        return NULL;
    }
    bpe *b = bpe_load(v, vn, m, mn, err, errlen);
    free(v);
    free(m);
    return b;
}

void bpe_free(bpe *b) {
    if (!b) return;
    free(b->arena);
    free(b->soff);
    free(b->slen);
    free(b->sid);
    free(b->st);
    free(b->pt);
    free(b->id_sym);
    free(b);
}

int bpe_vocab_size(const bpe *b) { return b->nid; }
int bpe_merges(const bpe *b) { return b->nmerges; }
int bpe_bos(const bpe *b) { return b->bos; }
int bpe_eos(const bpe *b) { return b->eos; }
int bpe_unk(const bpe *b) { return b->unk; }
int bpe_pad(const bpe *b) { return b->pad; }

int bpe_id(const bpe *b, const char *token) {
    int32_t y = sym_find(b, token, strlen(token));
    return y < 0 ? -1 : b->sid[y];
}

const char *bpe_token(const bpe *b, int id) {
    if (id < 0 || id >= b->nid || b->id_sym[id] < 0) return NULL;
    return b->arena + b->soff[b->id_sym[id]];
}

/* ------------------------------------------------------------ pre-tokens */

enum { C_WS, C_L, C_N, C_O };

/* the classes of the regex: \s (Python regex: the White_Space property),
 * \p{L}, \p{N}, anything else */
static int cls(int32_t c) {
    if (c < 0x80) {
        if ((c >= 9 && c <= 13) || c == ' ') return C_WS;
        if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') return C_L;
        if (c >= '0' && c <= '9') return C_N;
        return C_O;
    }
    if (c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
        c == 0x202F || c == 0x205F || c == 0x3000)
        return C_WS;
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO: return C_L;
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_NL:
    case UTF8PROC_CATEGORY_NO: return C_N;
    default: return C_O;
    }
}

/* The length in code points of the pre-token at cp[i] (i < n): encoder.py's
 * pattern, alternative by alternative, leftmost first. */
static long pretoken(const int32_t *cp, const unsigned char *cl, long n, long i) {
    if (cp[i] == '\'' && i + 1 < n) { /* 's|'t|'re|'ve|'m|'ll|'d */
        int32_t a = cp[i + 1], b2 = i + 2 < n ? cp[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b2 == 'e') || (a == 'v' && b2 == 'e') || (a == 'l' && b2 == 'l')) return 3;
    }
    /* ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+': an optional space, then a run
     * of one class */
    long s = i;
    if (cp[i] == ' ' && i + 1 < n && cl[i + 1] != C_WS) s = i + 1;
    if (cl[s] != C_WS) {
        long e = s + 1;
        while (e < n && cl[e] == cl[s]) e++;
        return e - i;
    }
    /* '\s+(?!\S)|\s+': a whitespace run; if a non-space follows, its last
     * character is left to start the next token (unless it is alone) */
    long e = i + 1;
    while (e < n && cl[e] == C_WS) e++;
    if (e < n && e - i >= 2) return e - 1 - i;
    return e - i;
}

/* Python's str.isspace(): category Zs or bidi class WS, B or S */
static int py_isspace(int32_t c) {
    const utf8proc_property_t *p = utf8proc_get_property(c);
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

/* the special token starting at cp[i], its index in b->special_*, or -1 */
static int special_at(const bpe *b, const int32_t *cp, long n, long i) {
    if (cp[i] != '<') return -1;
    for (int k = 0; k < b->nspecial; k++) {
        int L = b->special_len[k];
        if (i + L <= n && memcmp(cp + i, b->special_cp[k], (size_t)L * sizeof(int32_t)) == 0) return k;
    }
    return -1;
}

/* ------------------------------------------------------------------ BPE */

/* merges sym[0..n) in place (encoder.py bpe()); returns the new count */
static long bpe_word(const bpe *b, int32_t *sym, long n) {
    while (n > 1) {
        int32_t best = INT32_MAX, a = -1, c = -1, res = -1;
        for (long k = 0; k + 1 < n; k++) {
            const pslot *p = pair_find(b, sym[k], sym[k + 1]);
            if (p && p->rank < best) {
                best = p->rank;
                a = sym[k];
                c = sym[k + 1];
                res = p->res;
            }
        }
        if (a < 0) break;
        long w = 0;
        for (long k = 0; k < n;) {
            if (k + 1 < n && sym[k] == a && sym[k + 1] == c) {
                sym[w++] = res;
                k += 2;
            } else sym[w++] = sym[k++];
        }
        n = w;
    }
    return n;
}

int bpe_tokenize(const bpe *b, const char *text, size_t len, int32_t *ids, int max_ids, char *err, size_t errlen) {
    if (len > BPE_MAX_TEXT) {
        seterr(err, errlen, "text is %zu bytes long (at most %d)", len, BPE_MAX_TEXT);
        return -1;
    }
    int32_t *cps = xmalloc((len + 1) * sizeof *cps), *sym = xmalloc((len + 1) * sizeof *sym);
    uint32_t *at = xmalloc((len + 1) * sizeof *at);
    unsigned char *cl = xmalloc(len + 1);
    long n = decode_all(text, len, cps, at, "text", err, errlen);
    int total = -1;
    if (n >= 0) {
        total = 0;
        for (long i = 0; i < n; i++) cl[i] = (unsigned char)cls(cps[i]);
        /* HF tokenize(): the text is split at literal special tokens (its
         * tokens_trie), each piece between them tokenized on its own; <mask>
         * is AddedToken(lstrip=True): the piece before it loses its trailing
         * whitespace (str.rstrip) */
        for (long a = 0; a < n;) {
            long e = a, sk = -1;
            while (e < n && (sk = special_at(b, cps, n, e)) < 0) e++;
            long te = e;
            if (sk >= 0 && b->special_id[sk] == b->mask)
                while (te > a && py_isspace(cps[te - 1])) te--;
            const int32_t *c = cps + a;
            const unsigned char *l = cl + a;
            for (long i = 0; i < te - a;) {
                long k = pretoken(c, l, te - a, i);
                long ns = 0;
                for (uint32_t j = at[a + i]; j < at[a + i + k]; j++) sym[ns++] = b->byte_sym[(unsigned char)text[j]];
                ns = bpe_word(b, sym, ns);
                for (long j = 0; j < ns; j++, total++)
                    if (total < max_ids) ids[total] = b->sid[sym[j]] >= 0 ? b->sid[sym[j]] : b->unk;
                i += k;
            }
            if (sk >= 0) {
                if (total < max_ids) ids[total] = b->special_id[sk];
                total++;
                e += b->special_len[sk];
            }
            a = e;
        }
    }
    free(cps);
    free(sym);
    free(at);
    free(cl);
    return total;
}

int bpe_encode(const bpe *b, const char *text, size_t len, int max_len, int32_t *ids, int *truncated, char *err,
               size_t errlen) {
    if (max_len < 2) {
        seterr(err, errlen, "max_len %d leaves no room for <s> and </s>", max_len);
        return -1;
    }
    int n = bpe_tokenize(b, text, len, ids + 1, max_len - 2, err, errlen);
    if (n < 0) return -1;
    if (truncated) *truncated = n > max_len - 2;
    if (n > max_len - 2) n = max_len - 2; /* HF truncation: keeps the first tokens */
    ids[0] = b->bos;
    ids[n + 1] = b->eos;
    return n + 2;
}

/* ------------------------------------------------------ SALSA preprocess */

/* Python's _PyUnicode_IsCaseIgnorable: Mn Me Cf Lm Sk, or Word_Break
 * MidLetter, MidNumLet, Single_Quote */
static int case_ignorable(int32_t c) {
    switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK: return 1;
    default: break;
    }
    switch (c) {
    case 0x27: case 0x2E: case 0x3A: case 0xB7: case 0x387: case 0x55F: case 0x5F4: case 0x2018: case 0x2019:
    case 0x2024: case 0x2027: case 0xFE13: case 0xFE52: case 0xFE55: case 0xFF07: case 0xFF0E: case 0xFF1A:
        return 1;
    default: return 0;
    }
}

/* Python's _PyUnicode_IsCased: Lowercase, Uppercase or Lt (Other_Lowercase
 * and Other_Uppercase approximated by utf8proc's case mappings, plus ª º) */
static int cased(int32_t c) {
    utf8proc_category_t k = utf8proc_category(c);
    if (k == UTF8PROC_CATEGORY_LU || k == UTF8PROC_CATEGORY_LL || k == UTF8PROC_CATEGORY_LT) return 1;
    if (c == 0xAA || c == 0xBA) return 1;
    return utf8proc_islower(c) || utf8proc_isupper(c);
}

/* CPython handle_capital_sigma(): Σ is final when a cased character comes
 * before it and none after it, case-ignorable ones skipped both ways */
static int final_sigma(const int32_t *cp, long n, long i) {
    long j = i - 1;
    while (j >= 0 && case_ignorable(cp[j])) j--;
    if (j < 0 || !cased(cp[j])) return 0;
    j = i + 1;
    while (j < n && case_ignorable(cp[j])) j++;
    return j == n || !cased(cp[j]);
}

char *bpe_salsa_preprocess(const char *text, size_t len, size_t *out_len, char *err, size_t errlen) {
    if (len > BPE_MAX_TEXT) {
        seterr(err, errlen, "text is %zu bytes long (at most %d)", len, BPE_MAX_TEXT);
        return NULL;
    }
    int32_t *cps = xmalloc((len + 1) * sizeof *cps);
    uint32_t *at = xmalloc((len + 1) * sizeof *at);
    long n = decode_all(text, len, cps, at, "text", err, errlen);
    char *out = NULL;
    if (n >= 0) {
        out = xmalloc(2 * len + 1); /* a lower case letter is at most 3/2 the bytes of its capital */
        size_t k = 0;
        for (long i = 0; i < n; i++) {
            int32_t c = cps[i];
            if (c < 0x80 && c != 0x7F && c > 0x20 && !((c | 0x20) >= 'a' && (c | 0x20) <= 'z') &&
                !(c >= '0' && c <= '9'))
                continue; /* string.punctuation */
            if (c == 0x130) { /* SpecialCasing: İ -> i + U+0307 */
                out[k++] = 'i';
                k += (size_t)utf8_put(out + k, 0x307);
                continue;
            }
            if (c == 0x3A3) c = final_sigma(cps, n, i) ? 0x3C2 : 0x3C3;
            else c = utf8proc_tolower(c);
            k += (size_t)utf8_put(out + k, c);
        }
        out[k] = 0;
        *out_len = k;
    }
    free(cps);
    free(at);
    return out;
}
