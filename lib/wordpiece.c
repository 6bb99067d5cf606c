/* wordpiece.c - BERT uncased WordPiece tokenizer and decoder (see wordpiece.h).
 *
 * The text is processed in one pass, one code point at a time, through the
 * stages of HF's slow tokenizer (numbers as in wordpiece.h). Every stage of
 * theirs is a per-character map except two: NFD's canonical reordering (a
 * stable sort by combining class of each run of non-starters) and the
 * splitting into words and pieces. So a piece is built in a fixed buffer of
 * code points as characters arrive, each non-starter inserted into place
 * within its run, and is handed to WordPiece when a separator or punctuation
 * mark ends it. A piece longer than WP_MAX_INPUT_CHARS_PER_WORD is only
 * counted (it becomes [UNK] whatever it holds), so the buffer never grows.
 *
 * WordPiece looks up at most the vocab's longest token in bytes ahead of each
 * position (a longer substring cannot be in the vocab), hashing every
 * candidate prefix incrementally (FNV-1a), so a piece costs O(100 * longest)
 * byte operations at worst. */
#define _POSIX_C_SOURCE 200809L
#include "wordpiece.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util.h"

#define MAXW WP_MAX_INPUT_CHARS_PER_WORD

typedef struct {
    uint32_t hash; /* low bits of the token's FNV-1a hash */
    int32_t id;    /* -1: empty slot */
} slot;

struct wordpiece {
    char *buf;      /* every token, NUL-terminated */
    uint32_t *off;  /* token id at buf + off[id] */
    uint32_t *len;  /* its length in bytes */
    int n;
    slot *slots;
    size_t mask;    /* slots - 1 (a power of two minus one) */
    size_t maxlen;  /* longest token in bytes */
    uint64_t hcont; /* FNV-1a state after "##" */
    int cls, sep, pad, unk, msk;
};

/* ------------------------------------------------------- character classes */

/* Python's str.isspace(): category Zs or bidi class WS, B or S. */
static int py_isspace(const utf8proc_property_t *p) {
    return p->category == UTF8PROC_CATEGORY_ZS || p->bidi_class == UTF8PROC_BIDI_CLASS_WS ||
           p->bidi_class == UTF8PROC_BIDI_CLASS_B || p->bidi_class == UTF8PROC_BIDI_CLASS_S;
}

static int is_ascii_punct(int32_t c) {
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

/* HF _is_punctuation */
static int is_punct(int32_t c, const utf8proc_property_t *p) {
    if (c < 0x80) return is_ascii_punct(c);
    switch (p->category) {
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS: case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF: case UTF8PROC_CATEGORY_PO:
        return 1;
    default:
        return 0;
    }
}

/* HF BasicTokenizer._is_chinese_char */
static int is_cjk(int32_t c) {
    return (c >= 0x4E00 && c <= 0x9FFF) || (c >= 0x3400 && c <= 0x4DBF) || (c >= 0x20000 && c <= 0x2A6DF) ||
           (c >= 0x2A700 && c <= 0x2B73F) || (c >= 0x2B740 && c <= 0x2B81F) || (c >= 0x2B820 && c <= 0x2CEAF) ||
           (c >= 0xF900 && c <= 0xFAFF) || (c >= 0x2F800 && c <= 0x2FA1F);
}

/* ------------------------------------------------------------------ vocab */

#define FNV_BASIS 1469598103934665603ULL
#define FNV_PRIME 1099511628211ULL

static uint64_t fnv(uint64_t h, const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* Id of the token whose hash is h and bytes are pre[0..np) + s[0..n); -1 if absent. */
static int lookup(const wordpiece *wp, uint64_t h, const char *pre, size_t np, const char *s, size_t n) {
    size_t i = (size_t)h & wp->mask;
    uint32_t h32 = (uint32_t)h;
    for (;;) {
        const slot *e = &wp->slots[i];
        if (e->id < 0) return -1;
        if (e->hash == h32 && wp->len[e->id] == np + n) {
            const char *t = wp->buf + wp->off[e->id];
            if (memcmp(t, pre, np) == 0 && memcmp(t + np, s, n) == 0) return e->id;
        }
        i = (i + 1) & wp->mask;
    }
}

int wp_id(const wordpiece *wp, const char *token) {
    size_t n = strlen(token);
    return lookup(wp, fnv(FNV_BASIS, token, n), "", 0, token, n);
}

wordpiece *wp_load(const char *vocab, size_t n, char *err, size_t errlen) {
    /* lines: Python universal newlines ("\n", "\r\n", "\r") */
    size_t nlines = 0;
    for (size_t i = 0; i < n; i++) {
        if (vocab[i] == '\n' || (vocab[i] == '\r' && (i + 1 == n || vocab[i + 1] != '\n'))) nlines++;
    }
    if (n > 0 && vocab[n - 1] != '\n' && vocab[n - 1] != '\r') nlines++;
    if (nlines > (size_t)INT32_MAX / 4 || n >= UINT32_MAX) {
        seterr(err, errlen, "vocab too large (%zu bytes, %zu lines)", n, nlines);
        return NULL;
    }
    wordpiece *wp = xcalloc(1, sizeof *wp);
    wp->buf = xmalloc(n + 1);
    wp->off = xmalloc((nlines ? nlines : 1) * sizeof *wp->off);
    wp->len = xmalloc((nlines ? nlines : 1) * sizeof *wp->len);
    size_t nslots = 16;
    while (nslots < 2 * nlines) nslots *= 2;
    wp->slots = xmalloc(nslots * sizeof *wp->slots);
    for (size_t i = 0; i < nslots; i++) wp->slots[i].id = -1;
    wp->mask = nslots - 1;
    wp->cls = wp->sep = wp->pad = wp->unk = wp->msk = -1;
    wp->hcont = fnv(FNV_BASIS, "##", 2);

    size_t pos = 0, w = 0;
    int id = 0;
    while (pos < n) {
        size_t e = pos;
        while (e < n && vocab[e] != '\n' && vocab[e] != '\r') e++;
        size_t tl = e - pos;
        for (size_t i = 0; i < tl;) {
            int32_t cp;
            size_t k = utf8_next((const unsigned char *)vocab + pos + i, tl - i, &cp);
            if (k == 0 || cp == 0) {
                if (k == 0) {
                    char what[64];
                    snprintf(what, sizeof what, "vocab line %d", id + 1);
                    utf8_err(err, errlen, what, vocab + pos, tl, i);
                } else {
                    seterr(err, errlen, "vocab line %d has a NUL byte", id + 1);
                }
                wp_free(wp);
                return NULL;
            }
            i += k;
        }
        memcpy(wp->buf + w, vocab + pos, tl);
        wp->buf[w + tl] = '\0';
        const char *tok = wp->buf + w;
        uint64_t h = fnv(FNV_BASIS, tok, tl);
        int prev = lookup(wp, h, "", 0, tok, tl);
        if (prev >= 0) {
            seterr(err, errlen, "duplicate token '%.64s' on vocab lines %d and %d", tok, prev + 1, id + 1);
            wp_free(wp);
            return NULL;
        }
        size_t si = (size_t)h & wp->mask;
        while (wp->slots[si].id >= 0) si = (si + 1) & wp->mask;
        wp->slots[si].hash = (uint32_t)h;
        wp->slots[si].id = id;
        wp->off[id] = (uint32_t)w;
        wp->len[id] = (uint32_t)tl;
        if (tl > wp->maxlen) wp->maxlen = tl;
        w += tl + 1;
        id++;
        /* the terminator */
        if (e < n && vocab[e] == '\r' && e + 1 < n && vocab[e + 1] == '\n') e++;
        pos = e + 1;
    }
    wp->n = id;
    wp->cls = wp_id(wp, "[CLS]");
    wp->sep = wp_id(wp, "[SEP]");
    wp->pad = wp_id(wp, "[PAD]");
    wp->unk = wp_id(wp, "[UNK]");
    wp->msk = wp_id(wp, "[MASK]");
    const char *missing = wp->cls < 0   ? "[CLS]"
                          : wp->sep < 0 ? "[SEP]"
                          : wp->unk < 0 ? "[UNK]"
                          : wp->pad < 0 ? "[PAD]"
                                        : NULL;
    if (missing) {
        seterr(err, errlen, "vocab (%d tokens) has no %s token", wp->n, missing);
        wp_free(wp);
        return NULL;
    }
    return wp;
}

wordpiece *wp_load_file(const char *path, char *err, size_t errlen) {
    size_t n;
    char *b = read_file_all(path, (size_t)1 << 30, &n, err, errlen);
    if (!b) return NULL;
    char e2[256];
    wordpiece *wp = wp_load(b, n, e2, sizeof e2);
    free(b);
    if (!wp) seterr(err, errlen, "%s: %s", path, e2);
    return wp;
}

void wp_free(wordpiece *wp) {
    if (!wp) return;
    free(wp->buf);
    free(wp->off);
    free(wp->len);
    free(wp->slots);
    free(wp);
}

int wp_vocab_size(const wordpiece *wp) { return wp->n; }
const char *wp_token(const wordpiece *wp, int id) { return id >= 0 && id < wp->n ? wp->buf + wp->off[id] : NULL; }
int wp_cls(const wordpiece *wp) { return wp->cls; }
int wp_sep(const wordpiece *wp) { return wp->sep; }
int wp_pad(const wordpiece *wp) { return wp->pad; }
int wp_unk(const wordpiece *wp) { return wp->unk; }
int wp_mask(const wordpiece *wp) { return wp->msk; }

int wp_is_special(const wordpiece *wp, int id) {
    return id >= 0 && (id == wp->cls || id == wp->sep || id == wp->pad || id == wp->unk || id == wp->msk);
}

/* --------------------------------------------------------------- tokenize */

typedef struct {
    const wordpiece *wp;
    int32_t *ids;
    int max_ids;
    long long total;
    int32_t cp[MAXW];     /* the current piece (its first MAXW code points) */
    uint8_t ccc[MAXW];    /* their canonical combining classes */
    int pn;               /* code points in the piece, stored or not */
    int run;              /* start of the current run of non-starters in cp[] */
} tok;

static void emit(tok *t, int id) {
    if (t->total < t->max_ids) t->ids[t->total] = id;
    t->total++;
}

/* WordPiece on the piece: greedy longest match first. */
static void end_piece(tok *t) {
    int n = t->pn;
    t->pn = 0;
    t->run = 0;
    if (n == 0) return;
    const wordpiece *wp = t->wp;
    if (n > MAXW) {
        emit(t, wp->unk);
        return;
    }
    char b[MAXW * 4];
    int off[MAXW + 1];
    size_t nb = 0;
    for (int i = 0; i < n; i++) {
        off[i] = (int)nb;
        nb += (size_t)utf8_put(b + nb, t->cp[i]);
    }
    off[n] = (int)nb;
    int sub[MAXW], ns = 0;
    int start = 0;
    while (start < n) {
        size_t np = start > 0 ? 2 : 0;
        uint64_t h = start > 0 ? wp->hcont : FNV_BASIS;
        uint64_t hs[MAXW + 1];
        int end = start;
        /* prefix hashes of candidate substrings no longer than the longest token */
        while (end < n && np + (size_t)(off[end + 1] - off[start]) <= wp->maxlen) {
            h = fnv(h, b + off[end], (size_t)(off[end + 1] - off[end]));
            end++;
            hs[end] = h;
        }
        int found = -1;
        for (; end > start; end--) {
            found = lookup(wp, hs[end], "##", np, b + off[start], (size_t)(off[end] - off[start]));
            if (found >= 0) break;
        }
        if (found < 0) {
            emit(t, wp->unk);
            return;
        }
        sub[ns++] = found;
        start = end;
    }
    for (int i = 0; i < ns; i++) emit(t, sub[i]);
}

/* Append a kept code point with combining class k to the piece, inserted in
 * its run of non-starters (NFD canonical order: stable by class). */
static void push(tok *t, int32_t c, int k) {
    if (t->pn >= MAXW) {
        t->pn++; /* too long: it will be [UNK]; only count */
        return;
    }
    int j = t->pn;
    if (k != 0) {
        while (j > t->run && t->ccc[j - 1] > k) {
            t->cp[j] = t->cp[j - 1];
            t->ccc[j] = t->ccc[j - 1];
            j--;
        }
    }
    t->cp[j] = c;
    t->ccc[j] = (uint8_t)k;
    t->pn++;
    if (k == 0) t->run = t->pn;
}

static void emit_punct(tok *t, int32_t c) {
    char b[4];
    int n = utf8_put(b, c);
    int id = lookup(t->wp, fnv(FNV_BASIS, b, (size_t)n), "", 0, b, (size_t)n);
    emit(t, id >= 0 ? id : t->wp->unk);
}

/* Stage 6 for one character of a word: NFD, drop Mn, split on punctuation. */
static void word_char(tok *t, int32_t c) {
    utf8proc_int32_t d[8];
    int opt = 0;
    utf8proc_ssize_t nd = utf8proc_decompose_char(c, d, 8, UTF8PROC_DECOMPOSE, &opt);
    if (nd < 1 || nd > 8) { /* cannot happen: canonical decompositions are at most 4 long */
        d[0] = c;
        nd = 1;
    }
    for (utf8proc_ssize_t i = 0; i < nd; i++) {
        const utf8proc_property_t *p = utf8proc_get_property(d[i]);
        if (p->category == UTF8PROC_CATEGORY_MN) {
            if (p->combining_class == 0) t->run = t->pn < MAXW ? t->pn : MAXW; /* a starter ends the run */
            continue;
        }
        if (py_isspace(p)) { /* the final whitespace_tokenize; NFD makes no spaces */
            end_piece(t);
        } else if (is_punct(d[i], p)) {
            end_piece(t);
            emit_punct(t, d[i]);
        } else {
            push(t, d[i], p->combining_class);
        }
    }
}

/* Stages 3-5 for one lowercased character. */
static void clean_char(tok *t, int32_t c) {
    if (c < 0x80) {
        if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            end_piece(t);
        } else if (c < 0x20 || c == 0x7F) {
            /* control: dropped */
        } else if (is_ascii_punct(c)) {
            end_piece(t);
            emit_punct(t, c);
        } else {
            push(t, c, 0);
        }
        return;
    }
    if (c == 0xFFFD) return;
    const utf8proc_property_t *p = utf8proc_get_property(c);
    switch (p->category) {
    case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS: case UTF8PROC_CATEGORY_CO:
        return; /* _is_control: category C* */
    default:
        break;
    }
    if (py_isspace(p)) { /* Zs (made a space by _clean_text), U+2028, U+2029 */
        end_piece(t);
    } else if (is_cjk(c)) {
        end_piece(t);
        word_char(t, c);
        end_piece(t);
    } else {
        word_char(t, c);
    }
}

/* Stage 2: Python str.lower() of one character. */
static void feed(tok *t, int32_t c) {
    if (c < 0x80) {
        if (c >= 'A' && c <= 'Z') c += 'a' - 'A';
        clean_char(t, c);
    } else if (c == 0x130) { /* the one full lowercase mapping longer than one code point */
        clean_char(t, 'i');
        clean_char(t, 0x307);
    } else {
        clean_char(t, utf8proc_tolower(c));
    }
}

/* The special token starting at s[0..n), or -1; *tl its length. */
static int special_at(const wordpiece *wp, const char *s, size_t n, size_t *tl) {
    static const char *const names[] = {"[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MASK]"};
    const int ids[] = {wp->cls, wp->sep, wp->pad, wp->unk, wp->msk};
    for (int i = 0; i < 5; i++) {
        size_t k = strlen(names[i]);
        if (ids[i] >= 0 && n >= k && memcmp(s, names[i], k) == 0) {
            *tl = k;
            return ids[i];
        }
    }
    return -1;
}

int wp_tokenize(const wordpiece *wp, const char *text, size_t len, int32_t *ids, int max_ids, char *err,
                size_t errlen) {
    tok t;
    t.wp = wp;
    t.ids = ids;
    t.max_ids = ids ? max_ids : 0;
    if (t.max_ids < 0) t.max_ids = 0;
    t.total = 0;
    t.pn = 0;
    t.run = 0;
    const unsigned char *s = (const unsigned char *)text;
    size_t i = 0;
    while (i < len) {
        if (s[i] == '[') {
            size_t tl;
            int id = special_at(wp, text + i, len - i, &tl);
            if (id >= 0) {
                end_piece(&t);
                emit(&t, id);
                i += tl;
                continue;
            }
        }
        int32_t c;
        size_t k = utf8_next(s + i, len - i, &c);
        if (k == 0) {
            utf8_err(err, errlen, "text", text, len, i);
            return -1;
        }
        feed(&t, c);
        i += k;
    }
    end_piece(&t);
    if (t.total > INT_MAX) {
        seterr(err, errlen, "text gives %lld tokens, more than %d", t.total, INT_MAX);
        return -1;
    }
    return (int)t.total;
}

int wp_encode(const wordpiece *wp, const char *text, size_t len, int max_len, int32_t *ids, int *truncated,
              char *err, size_t errlen) {
    if (truncated) *truncated = 0;
    if (max_len < 2) {
        seterr(err, errlen, "max_len %d: must be at least 2 ([CLS] and [SEP])", max_len);
        return -1;
    }
    int n = wp_tokenize(wp, text, len, ids + 1, max_len - 2, err, errlen);
    if (n < 0) return -1;
    if (n > max_len - 2) {
        if (truncated) *truncated = 1;
        n = max_len - 2;
    }
    ids[0] = wp->cls;
    ids[n + 1] = wp->sep;
    return n + 2;
}

/* ----------------------------------------------------------------- decode */

/* Python s.replace(old, new) in place, where strlen(new) <= strlen(old). */
static size_t replace(char *s, size_t n, const char *old, const char *new_) {
    size_t lo = strlen(old), ln = strlen(new_), w = 0, i = 0;
    while (i < n) {
        if (i + lo <= n && s[i] == old[0] && memcmp(s + i, old, lo) == 0) {
            memcpy(s + w, new_, ln);
            w += ln;
            i += lo;
        } else {
            s[w++] = s[i++];
        }
    }
    return w;
}

static int space_at(const char *s, size_t n, size_t i, size_t *k) {
    int32_t c;
    *k = utf8_next((const unsigned char *)s + i, n - i, &c);
    if (*k == 0) {
        *k = 1;
        return 0;
    }
    return py_isspace(utf8proc_get_property(c));
}

char *wp_decode_ex(const wordpiece *wp, const int32_t *ids, int n, int flags) {
    static const char unk_text[] = "[UNK]";
    size_t cap = 1;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        if (id < 0 || id >= wp->n) cap += sizeof unk_text;
        else cap += wp->len[id] + 1;
    }
    char *s = xmalloc(cap);
    size_t w = 0;
    int first = 1;
    for (int i = 0; i < n; i++) {
        int id = ids[i];
        const char *tk;
        size_t tl;
        if (id < 0 || id >= wp->n) {
            if (!(flags & WP_DECODE_OOR_UNK)) continue;
            tk = unk_text;
            tl = sizeof unk_text - 1;
        } else {
            if (!(flags & WP_DECODE_KEEP_SPECIAL) && wp_is_special(wp, id)) continue;
            tk = wp->buf + wp->off[id];
            tl = wp->len[id];
        }
        if (!first) s[w++] = ' ';
        first = 0;
        memcpy(s + w, tk, tl);
        w += tl;
    }
    /* convert_tokens_to_string: .replace(" ##", "").strip() */
    w = replace(s, w, " ##", "");
    size_t a = 0, k;
    while (a < w && space_at(s, w, a, &k)) a += k;
    size_t e = w;
    while (e > a) {
        size_t b = e - 1;
        while (b > a && ((unsigned char)s[b] & 0xC0) == 0x80) b--;
        if (!space_at(s, e, b, &k)) break;
        e = b;
    }
    memmove(s, s + a, e - a);
    w = e - a;
    if (!(flags & WP_DECODE_NO_CLEANUP)) {
        static const char *const rep[][2] = {{" .", "."},     {" ?", "?"},     {" !", "!"},     {" ,", ","},
                                             {" ' ", "'"},    {" n't", "n't"}, {" 'm", "'m"},   {" 's", "'s"},
                                             {" 've", "'ve"}, {" 're", "'re"}};
        for (size_t r = 0; r < sizeof rep / sizeof rep[0]; r++) w = replace(s, w, rep[r][0], rep[r][1]);
    }
    s[w] = '\0';
    return s;
}

char *wp_decode(const wordpiece *wp, const int32_t *ids, int n) { return wp_decode_ex(wp, ids, n, 0); }
