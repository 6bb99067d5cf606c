/* refs.c - reading references (CSV with libcsv, JSON with jansson) and
 * candidates (KEY<TAB>CAPTION lines); see refs.h. */
#include "refs.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "csvrows.h"
#include "lines.h"
#include "util.h"

/* ------------------------------------------------------------ the set */

int capset_find(const cap_set *s, const char *key) {
    if (!s->tcap) return -1;
    for (uint64_t i = str_hash(key) & (uint64_t)(s->tcap - 1);; i = (i + 1) & (uint64_t)(s->tcap - 1)) {
        int v = s->tab[i];
        if (!v) return -1;
        if (!strcmp(s->e[v - 1].key, key)) return v - 1;
    }
}

static void tab_insert(cap_set *s, int idx) {
    uint64_t i = str_hash(s->e[idx].key) & (uint64_t)(s->tcap - 1);
    while (s->tab[i]) i = (i + 1) & (uint64_t)(s->tcap - 1);
    s->tab[i] = idx + 1;
}

/* a new entry (key not present: the caller checked) */
static cap_entry *add_entry(cap_set *s, const char *key, long line) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 256;
        s->e = xrealloc(s->e, (size_t)s->cap * sizeof(cap_entry));
    }
    cap_entry *e = &s->e[s->n];
    memset(e, 0, sizeof *e);
    e->key = xstrdup(key);
    e->line = line;
    s->n++;
    if (2 * s->n > s->tcap) {
        int nc = s->tcap ? 2 * s->tcap : 1024;
        free(s->tab);
        s->tab = xcalloc((size_t)nc, sizeof(int));
        s->tcap = nc;
        for (int i = 0; i < s->n; i++) tab_insert(s, i);
    } else tab_insert(s, s->n - 1);
    return e;
}

static void add_cap(cap_entry *e, const char *c) {
    e->caps = xrealloc(e->caps, (size_t)(e->ncaps + 1) * sizeof(char *));
    e->caps[e->ncaps++] = xstrdup(c);
}

void capset_free(cap_set *s) {
    for (int i = 0; i < s->n; i++) {
        for (int j = 0; j < s->e[i].ncaps; j++) free(s->e[i].caps[j]);
        free(s->e[i].caps);
        free(s->e[i].key);
    }
    free(s->e);
    free(s->tab);
    memset(s, 0, sizeof *s);
}

/* ------------------------------------------------------------ CSV */

typedef struct {
    cap_set *set;
    const char *path;
    int have_header, ncols, key_col, cap_col; /* cap_col >= 0: AudioCaps */
    char *is_cap;                             /* Clotho: which columns are captions */
} csvctx;

static void bad_row(csvctx *c, long line, const char *fmt, const char *arg) {
    char msg[400];
    snprintf(msg, sizeof msg, fmt, arg);
    warnx_("%s: line %ld: %s: skipped", c->path, line, msg);
    c->set->bad++;
}

static int header(csvctx *c, char **fields, int nf, char *err, size_t errlen) {
    c->have_header = 1;
    c->ncols = nf;
    c->key_col = 0;
    c->cap_col = -1;
    int yt = -1, capc = -1, ncap = 0;
    c->is_cap = xcalloc((size_t)nf + 1, 1);
    for (int i = 0; i < nf; i++) {
        if (!strcmp(fields[i], "youtube_id")) yt = i;
        if (!strcmp(fields[i], "caption")) capc = i;
        if (i > 0 && !strncmp(fields[i], "caption", 7)) c->is_cap[i] = 1, ncap++;
    }
    if (yt >= 0 && capc >= 0) {
        c->key_col = yt;
        c->cap_col = capc;
        c->set->format = "audiocaps-csv";
    } else if (ncap > 0) {
        c->set->format = "clotho-csv";
    } else {
        snprintf(err, errlen,
                 "%s: unrecognised CSV header (want file_name,caption_1,...,caption_N or "
                 "audiocap_id,youtube_id,start_time,caption)",
                 c->path);
        return -1;
    }
    return 0;
}

static int on_row(void *ctx, char **fields, int nf, long line, char *err, size_t errlen) {
    csvctx *c = ctx;
    if (!c->have_header) return header(c, fields, nf, err, errlen);
    if (nf != c->ncols) {
        char n[64];
        snprintf(n, sizeof n, "%d fields, the header has %d", nf, c->ncols);
        bad_row(c, line, "%s", n);
        return 0;
    }
    const char *key = fields[c->key_col];
    if (!*key) {
        bad_row(c, line, "%s", "empty key");
        return 0;
    }
    if (c->cap_col >= 0) { /* AudioCaps: group by youtube_id */
        const char *cap = fields[c->cap_col];
        if (!*cap) {
            bad_row(c, line, "empty caption for '%s'", key);
            return 0;
        }
        int i = capset_find(c->set, key);
        cap_entry *e = i >= 0 ? &c->set->e[i] : add_entry(c->set, key, line);
        add_cap(e, cap);
        return 0;
    }
    int i = capset_find(c->set, key);
    if (i >= 0) {
        char m[300];
        snprintf(m, sizeof m, "duplicate key '%.200s' (first on line %ld)", key, c->set->e[i].line);
        bad_row(c, line, "%s", m);
        return 0;
    }
    int any = 0;
    for (int k = 0; k < nf; k++) any |= c->is_cap[k] && fields[k][0];
    if (!any) {
        bad_row(c, line, "no reference for '%s'", key);
        return 0;
    }
    cap_entry *e = add_entry(c->set, key, line);
    for (int k = 0; k < nf; k++)
        if (c->is_cap[k] && fields[k][0]) add_cap(e, fields[k]); /* an empty cell is no reference */
    return 0;
}

static int load_csv(cap_set *set, const char *path, const char *buf, size_t len, char *err, size_t errlen) {
    csvctx c = {.set = set, .path = path};
    int rc = csv_rows(path, buf, len, on_row, &c, err, errlen);
    free(c.is_cap);
    return rc;
}

static int load_json(cap_set *set, const char *path, const char *buf, size_t len, char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) {
        snprintf(err, errlen, "%s: line %d: %s", path, je.line, je.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "%s: not a JSON object {\"KEY\": [\"ref\", ...]}", path);
        json_decref(root);
        return -1;
    }
    set->format = "json";
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        json_t *list = json_is_object(v) ? json_object_get(v, "references") : v;
        if (!json_is_array(list)) {
            warnx_("%s: key '%s': not a list of reference strings: skipped", path, key);
            set->bad++;
            continue;
        }
        if (!*key) {
            warnx_("%s: empty key: skipped", path);
            set->bad++;
            continue;
        }
        size_t i;
        json_t *r;
        int ok = 1;
        json_array_foreach(list, i, r) ok &= json_is_string(r);
        if (!ok || json_array_size(list) == 0) {
            warnx_("%s: key '%s': %s: skipped", path, key, ok ? "no reference" : "a reference is not a string");
            set->bad++;
            continue;
        }
        cap_entry *e = add_entry(set, key, 0);
        json_array_foreach(list, i, r) add_cap(e, json_string_value(r));
    }
    json_decref(root);
    return 0;
}

static char *read_all(const char *path, size_t *len, char *err, size_t errlen) {
    int fd = strcmp(path, "-") ? open(path, O_RDONLY) : 0;
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *b = xmalloc(cap + 1);
    for (;;) {
        if (n == cap) b = xrealloc(b, (cap *= 2) + 1);
        ssize_t k = read(fd, b + n, cap - n);
        if (k < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errlen, "reading %s: %s", path, strerror(errno));
            free(b);
            if (fd) close(fd);
            return NULL;
        }
        if (k == 0) break;
        n += (size_t)k;
    }
    if (fd) close(fd);
    b[n] = 0;
    *len = n;
    return b;
}

int refs_load(cap_set *set, const char *path, char *err, size_t errlen) {
    memset(set, 0, sizeof *set);
    size_t len;
    char *buf = read_all(path, &len, err, errlen);
    if (!buf) return -1;
    size_t i = 0;
    if (len >= 3 && !memcmp(buf, "\xEF\xBB\xBF", 3)) i = 3;
    while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\n' || buf[i] == '\r')) i++;
    if (i < len && buf[i] == '[') { /* WSAC's csv2json list: captions without the audio they describe */
        snprintf(err, errlen,
                 "%s: a JSON list of captions (csv2json.py's clotho.json) names no audio, so it cannot be references; "
                 "give the captions CSV (file_name,caption_1..caption_N) or {\"KEY\": [\"ref\", ...]}",
                 path);
        free(buf);
        return -1;
    }
    int r = i < len && buf[i] == '{' ? load_json(set, path, buf, len, err, errlen) : load_csv(set, path, buf, len, err, errlen);
    free(buf);
    if (r) capset_free(set);
    return r;
}

/* ------------------------------------------------------------ candidates */

int cands_load(cap_set *set, int fd, const char *name, char *err, size_t errlen) {
    memset(set, 0, sizeof *set);
    set->format = "tsv";
    line_reader lr;
    lr_init(&lr, fd, 1 << 20);
    for (;;) {
        char *line;
        size_t len;
        int r = lr_next(&lr, &line, &len);
        if (r == LR_EOF) break;
        if (r == LR_ERROR) {
            snprintf(err, errlen, "reading %s: %s", name, strerror(errno));
            lr_free(&lr);
            capset_free(set);
            return -1;
        }
        if (r == LR_TOO_LONG) {
            warnx_("%s: line %ld: longer than 1 MiB: skipped", name, lr.lineno);
            set->bad++;
            continue;
        }
        if (len == 0) continue;
        char *tab = memchr(line, '\t', len);
        const char *why = NULL;
        if (memchr(line, 0, len)) why = "contains a NUL byte";
        else if (!tab) why = "no tab: want KEY<TAB>CAPTION";
        else if (tab == line) why = "empty key";
        if (why) {
            warnx_("%s: line %ld: %s: skipped", name, lr.lineno, why);
            set->bad++;
            continue;
        }
        *tab = 0;
        int i = capset_find(set, line);
        if (i >= 0) {
            warnx_("%s: line %ld: key '%s' already given on line %ld: skipped", name, lr.lineno, line, set->e[i].line);
            set->bad++;
            continue;
        }
        cap_entry *e = add_entry(set, line, lr.lineno);
        add_cap(e, tab + 1);
    }
    lr_free(&lr);
    return 0;
}
