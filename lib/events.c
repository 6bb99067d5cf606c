/* events.c - event recall of captions in the sound world (see events.h). */
#include "events.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lines.h"
#include "util.h"

/* ------------------------------------------------------------ tokens */

/* bytes of the white space character at p (Python's str.split() set), 0 if none */
static size_t space_len(const unsigned char *p) {
    unsigned char a = p[0];
    if (a == ' ' || (a >= '\t' && a <= '\r') || (a >= 0x1c && a <= 0x1f)) return 1;
    if (a == 0xc2 && (p[1] == 0x85 || p[1] == 0xa0)) return 2;
    if (a == 0xe1 && p[1] == 0x9a && p[2] == 0x80) return 3;
    if (a == 0xe2 && p[1] == 0x80 && ((p[2] >= 0x80 && p[2] <= 0x8a) || p[2] == 0xa8 || p[2] == 0xa9 || p[2] == 0xaf))
        return 3;
    if (a == 0xe2 && p[1] == 0x81 && p[2] == 0x9f) return 3;
    if (a == 0xe3 && p[1] == 0x80 && p[2] == 0x80) return 3;
    return 0;
}

/* Calls f(token, arg) for each token; returns the number of tokens. */
static int for_tokens(const char *caption, void (*f)(const char *, void *), void *arg) {
    size_t n = strlen(caption);
    char *tok = xmalloc(n + 1);
    size_t t = 0;
    int count = 0;
    const unsigned char *p = (const unsigned char *)caption;
    while (1) {
        size_t sp = *p ? space_len(p) : 1;
        if (*p == ',' || *p == '.') sp = 1;
        if (sp) {
            if (t) {
                tok[t] = 0;
                f(tok, arg);
                count++;
                t = 0;
            }
            if (!*p) break;
            p += sp;
            continue;
        }
        if (p[0] == 0xe2 && p[1] == 0x84 && p[2] == 0xaa) { /* KELVIN SIGN: 'k' in Python's lower() */
            tok[t++] = 'k';
            p += 3;
            continue;
        }
        tok[t++] = (*p >= 'A' && *p <= 'Z') ? (char)(*p + 32) : (char)*p;
        p++;
    }
    free(tok);
    return count;
}

typedef struct {
    char *buf;
    size_t len;
} joiner;

static void join_one(const char *tok, void *arg) {
    joiner *j = arg;
    size_t k = strlen(tok);
    if (j->len) j->buf[j->len++] = ' ';
    memcpy(j->buf + j->len, tok, k);
    j->len += k;
    j->buf[j->len] = 0;
}

char *ev_tokens(const char *caption) {
    joiner j = {xmalloc(strlen(caption) + 1), 0};
    j.buf[0] = 0;
    for_tokens(caption, join_one, &j);
    return j.buf;
}

typedef struct {
    const ev_classes *c;
    unsigned char *named;
    int count;
} namer;

static void name_one(const char *tok, void *arg) {
    namer *m = arg;
    int k = ev_word_find(m->c, tok);
    if (k >= 0 && !m->named[k]) {
        m->named[k] = 1;
        m->count++;
    }
}

int ev_named(const ev_classes *c, const char *caption, unsigned char *named) {
    namer m = {c, named, 0};
    for_tokens(caption, name_one, &m);
    return m.count;
}

/* ------------------------------------------------------------ classes */

static int cmp_word(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ev_word_find(const ev_classes *c, const char *word) {
    int lo = 0, hi = c->nw - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, r = strcmp(word, c->word[mid]);
        if (!r) return c->word_cls[mid];
        if (r < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

int ev_class_find(const ev_classes *c, const char *name) {
    for (int k = 0; k < c->n; k++)
        if (!strcmp(c->name[k], name)) return k;
    return -1;
}

void ev_classes_free(ev_classes *c) {
    for (int k = 0; k < c->n; k++) free(c->name[k]);
    for (int k = 0; k < c->nw; k++) free(c->word[k]);
    free(c->name);
    free(c->word);
    free(c->word_cls);
    memset(c, 0, sizeof *c);
}

int ev_classes_load(ev_classes *c, const char *path, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    line_reader lr;
    lr_init(&lr, fd, 1 << 16);
    char *line;
    size_t len;
    int r, ncap = 0, wcap = 0, ret = 0;
    typedef struct {
        char *w;
        int cls;
    } pair;
    pair *pw = NULL;
    while ((r = lr_next(&lr, &line, &len)) != LR_EOF) {
        if (r == LR_ERROR) {
            snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
            ret = -1;
            break;
        }
        if (r == LR_TOO_LONG) {
            snprintf(err, errlen, "%s:%ld: line too long", path, lr.lineno);
            ret = -1;
            break;
        }
        if (line[0] == '#' || strspn(line, " \t\r") == len) continue;
        char *t1 = strchr(line, '\t'), *t2 = t1 ? strchr(t1 + 1, '\t') : NULL;
        if (!t1 || !t2 || t1 == line) {
            snprintf(err, errlen, "%s:%ld: not CLASS<TAB>ROLE<TAB>WORDS", path, lr.lineno);
            ret = -1;
            break;
        }
        *t1 = 0;
        char *words = t2 + 1, *t3 = strchr(words, '\t');
        if (t3) *t3 = 0;
        if (ev_class_find(c, line) >= 0) {
            snprintf(err, errlen, "%s:%ld: class %s twice", path, lr.lineno, line);
            ret = -1;
            break;
        }
        if (c->n == ncap) {
            ncap = ncap ? 2 * ncap : 64;
            c->name = xrealloc(c->name, (size_t)ncap * sizeof(char *));
        }
        int k = c->n++;
        c->name[k] = xstrdup(line);
        int nwords = 0;
        for (char *w = words, *e; *w; w = *e ? e + 1 : e) {
            e = w + strcspn(w, ",");
            char save = *e;
            *e = 0;
            char *tok = ev_tokens(w); /* a word as the rule makes it */
            *e = save;
            if (!*tok || strchr(tok, ' ')) {
                snprintf(err, errlen, "%s:%ld: class %s: word '%.*s' is not one token", path, lr.lineno, line,
                         (int)(e - w), w);
                free(tok);
                ret = -1;
                break;
            }
            if (c->nw == wcap) {
                wcap = wcap ? 2 * wcap : 256;
                pw = xrealloc(pw, (size_t)wcap * sizeof(pair));
            }
            pw[c->nw].w = tok;
            pw[c->nw++].cls = k;
            nwords++;
        }
        if (ret) break;
        if (!nwords) {
            snprintf(err, errlen, "%s:%ld: class %s has no word", path, lr.lineno, line);
            ret = -1;
            break;
        }
    }
    lr_free(&lr);
    close(fd);
    if (!ret && c->n == 0) {
        snprintf(err, errlen, "%s: no class", path);
        ret = -1;
    }
    if (!ret) {
        qsort(pw, (size_t)c->nw, sizeof(pair), cmp_word);
        for (int i = 1; i < c->nw; i++)
            if (!strcmp(pw[i].w, pw[i - 1].w)) {
                snprintf(err, errlen, "%s: word '%s' belongs to %s and %s", path, pw[i].w,
                         c->name[pw[i - 1].cls], c->name[pw[i].cls]);
                ret = -1;
                break;
            }
    }
    c->word = xmalloc(((size_t)c->nw + 1) * sizeof(char *));
    c->word_cls = xmalloc(((size_t)c->nw + 1) * sizeof(int));
    for (int i = 0; i < c->nw; i++) c->word[i] = pw[i].w, c->word_cls[i] = pw[i].cls;
    free(pw);
    if (ret) ev_classes_free(c);
    return ret;
}

/* ------------------------------------------------------------ scenes */

static const ev_scenes *sort_ctx;
static int cmp_scene(const void *a, const void *b) {
    return strcmp(sort_ctx->s[*(const int *)a].key, sort_ctx->s[*(const int *)b].key);
}

int ev_scene_find(const ev_scenes *s, const char *key) {
    int lo = 0, hi = s->n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2, r = strcmp(key, s->s[s->order[mid]].key);
        if (!r) return s->order[mid];
        if (r < 0) hi = mid - 1;
        else lo = mid + 1;
    }
    return -1;
}

void ev_scenes_free(ev_scenes *s) {
    for (int i = 0; i < s->n; i++) {
        free(s->s[i].key);
        free(s->s[i].cls);
        free(s->s[i].role);
    }
    free(s->s);
    free(s->order);
    memset(s, 0, sizeof *s);
}

/* the class of a sound object, or -1 with the reason in why */
static int sound_class(const ev_classes *c, json_t *o, const char **why) {
    json_t *cls = json_is_object(o) ? json_object_get(o, "cls") : NULL;
    if (!json_is_string(cls)) {
        *why = "a sound without a \"cls\" string";
        return -1;
    }
    int k = ev_class_find(c, json_string_value(cls));
    if (k < 0) *why = "a class the class table does not know";
    return k;
}

static void add_sound(ev_scene *sc, int k, unsigned char role) {
    for (int i = 0; i < sc->n; i++)
        if (sc->cls[i] == k) {
            sc->role[i] |= role;
            return;
        }
    sc->cls[sc->n] = k;
    sc->role[sc->n++] = role;
}

int ev_scenes_load(ev_scenes *s, const ev_classes *c, const char *path, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return -1;
    }
    line_reader lr;
    lr_init(&lr, fd, 1 << 24);
    char *line;
    size_t len;
    int r, ret = 0;
    while ((r = lr_next(&lr, &line, &len)) != LR_EOF) {
        if (r == LR_ERROR) {
            snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
            ret = -1;
            break;
        }
        if (r == LR_TOO_LONG) {
            warnx_("%s:%ld: line longer than 16 MiB: skipped", path, lr.lineno);
            s->bad++;
            continue;
        }
        if (strspn(line, " \t\r") == len) continue;
        json_error_t je;
        json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &je);
        const char *why = NULL;
        json_t *fn = o ? json_object_get(o, "file_name") : NULL, *bg = o ? json_object_get(o, "background") : NULL,
               *evs = o ? json_object_get(o, "events") : NULL;
        if (!json_is_object(o)) why = o ? "not a JSON object" : je.text;
        else if (!json_is_string(fn) || !*json_string_value(fn)) why = "no \"file_name\" string";
        else if (!json_is_array(evs)) why = "no \"events\" array";
        else if (bg && !json_is_null(bg) && !json_is_object(bg)) why = "\"background\" is not an object";
        ev_scene sc = {0};
        if (!why) {
            size_t ne = json_array_size(evs);
            sc.cls = xmalloc((ne + 1) * sizeof(int));
            sc.role = xmalloc(ne + 1);
            if (json_is_object(bg)) {
                int k = sound_class(c, bg, &why);
                if (k >= 0) add_sound(&sc, k, EV_BG);
            }
            for (size_t i = 0; !why && i < ne; i++) {
                int k = sound_class(c, json_array_get(evs, i), &why);
                if (k >= 0) add_sound(&sc, k, EV_FG);
            }
        }
        if (!why && !sc.n) why = "a scene without any sound";
        if (!why) {
            for (int i = 0; i < s->n; i++)
                if (!strcmp(s->s[i].key, json_string_value(fn))) {
                    why = "a key seen before";
                    break;
                }
        }
        if (why) {
            warnx_("%s:%ld: %s: skipped", path, lr.lineno, why);
            s->bad++;
            free(sc.cls);
            free(sc.role);
            json_decref(o);
            continue;
        }
        sc.key = xstrdup(json_string_value(fn));
        sc.line = lr.lineno;
        json_decref(o);
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 1024;
            s->s = xrealloc(s->s, (size_t)s->cap * sizeof(ev_scene));
        }
        s->s[s->n++] = sc;
    }
    lr_free(&lr);
    close(fd);
    s->order = xmalloc(((size_t)s->n + 1) * sizeof(int));
    for (int i = 0; i < s->n; i++) s->order[i] = i;
    sort_ctx = s;
    qsort(s->order, (size_t)s->n, sizeof(int), cmp_scene);
    if (ret) ev_scenes_free(s);
    return ret;
}
