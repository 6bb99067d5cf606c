/* wsac-cmp - compare two tensor streams key by key, with tolerances. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "jsonout.h"
#include "stream.h"
#include "util.h"

static const char usage[] =
    "Usage: wsac-cmp [OPTIONS] A B\n"
    "Compare tensor streams A and B ('-' for stdin) record by record, matching\n"
    "records by key (order does not matter). Elements a, b agree when\n"
    "|a - b| <= atol + rtol * |b| (NaN agrees only with NaN); strings and other\n"
    "fields must be identical, tensors must have the same shape.\n"
    "Prints one line per difference and, per field, the largest differences.\n"
    "\n"
    "  -a, --atol X        absolute tolerance (0)\n"
    "  -r, --rtol X        relative tolerance (0)\n"
    "  -f, --fields LIST   compare only these comma-separated fields\n"
    "  -q, --quiet         print nothing; only the exit status\n"
    "  -h, --help          show this help\n"
    "\n"
    "Exit status: 0 the streams agree, 1 usage error, 2 a stream is malformed or\n"
    "truncated, 3 they differ (values, fields, or keys present on one side only).\n";

static double atol_, rtol_;
static char **only_fields;
static int nonly;

typedef struct {
    ws_record *recs;
    int n, cap;
    int *table; /* open addressing: index+1, 0 empty */
    int tcap;
    char *seen;
} recset;

static int find(recset *s, const char *key) {
    if (!s->tcap) return -1;
    for (uint64_t i = str_hash(key) & (uint64_t)(s->tcap - 1);; i = (i + 1) & (uint64_t)(s->tcap - 1)) {
        int v = s->table[i];
        if (!v) return -1;
        if (strcmp(s->recs[v - 1].key, key) == 0) return v - 1;
    }
}

static void insert(recset *s, int idx) {
    if (2 * (s->n + 1) > s->tcap) {
        int nc = s->tcap ? 2 * s->tcap : 1024;
        free(s->table);
        s->table = xcalloc((size_t)nc, sizeof(int));
        s->tcap = nc;
        for (int i = 0; i < idx; i++) insert(s, i);
    }
    uint64_t i = str_hash(s->recs[idx].key) & (uint64_t)(s->tcap - 1);
    while (s->table[i]) i = (i + 1) & (uint64_t)(s->tcap - 1);
    s->table[i] = idx + 1;
}

static int wanted(const char *name) {
    if (!nonly) return 1;
    for (int i = 0; i < nonly; i++)
        if (strcmp(only_fields[i], name) == 0) return 1;
    return 0;
}

typedef struct {
    char name[64];
    double max_abs, max_rel;
    long n;
} fstat;
static fstat fstats[64];
static int nfstats;

static fstat *stat_for(const char *name) {
    for (int i = 0; i < nfstats; i++)
        if (strcmp(fstats[i].name, name) == 0) return &fstats[i];
    if (nfstats == 64) return NULL;
    fstat *f = &fstats[nfstats++];
    snprintf(f->name, sizeof f->name, "%s", name);
    return f;
}

static int quiet;

static void report(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void report(const char *key, const char *fmt, ...) {
    if (quiet) return;
    va_list ap;
    va_start(ap, fmt);
    printf("%s\t", key);
    vprintf(fmt, ap);
    putchar('\n');
    va_end(ap);
}

static int close_enough(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    if (a == b) return 1; /* equal infinities */
    return fabs(a - b) <= atol_ + rtol_ * fabs(b);
}

/* 1 if the fields agree */
static int cmp_field(const char *key, const ws_field *fa, const ws_field *fb) {
    if (fa->kind != fb->kind) {
        report(key, "%s: different kinds of value", fa->name);
        return 0;
    }
    switch (fa->kind) {
    case WF_TENSOR: {
        const ws_tensor *a = &fa->t, *b = &fb->t;
        int same = a->ndim == b->ndim;
        for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
        if (!same) {
            report(key, "%s: shapes differ", fa->name);
            return 0;
        }
        if (a->dtype != b->dtype) report(key, "%s: dtypes differ (%s, %s); values compared", fa->name,
                                         ws_dtype_name(a->dtype), ws_dtype_name(b->dtype));
        double max_abs = 0, max_rel = 0;
        size_t worst = 0, bad = 0;
        for (size_t i = 0; i < a->numel; i++) {
            double x = tensor_get(a, i), y = tensor_get(b, i);
            if (!close_enough(x, y)) {
                if (!bad) worst = i;
                bad++;
            }
            if (isfinite(x) && isfinite(y)) {
                double d = fabs(x - y), r = d / (fabs(y) > 0 ? fabs(y) : 1.0);
                if (d > max_abs) {
                    max_abs = d;
                    if (!bad) worst = i;
                }
                if (r > max_rel) max_rel = r;
            }
        }
        fstat *st = stat_for(fa->name);
        if (st) {
            if (max_abs > st->max_abs) st->max_abs = max_abs;
            if (max_rel > st->max_rel) st->max_rel = max_rel;
            st->n++;
        }
        if (bad) {
            report(key, "%s: %zu of %zu elements differ; max |a-b| %.6g, max rel %.6g; first at flat index %zu: a=%.9g b=%.9g",
                   fa->name, bad, a->numel, max_abs, max_rel, worst, tensor_get(a, worst), tensor_get(b, worst));
            return 0;
        }
        return 1;
    }
    case WF_STR:
        if (fa->len != fb->len || memcmp(fa->str, fb->str, fa->len)) {
            report(key, "%s: strings differ", fa->name);
            return 0;
        }
        return 1;
    case WF_INT:
    case WF_BOOL:
        if (fa->i != fb->i) {
            report(key, "%s: %" PRId64 " != %" PRId64, fa->name, fa->i, fb->i);
            return 0;
        }
        return 1;
    case WF_FLOAT:
        if (!close_enough(fa->f, fb->f)) {
            report(key, "%s: %.17g != %.17g", fa->name, fa->f, fb->f);
            return 0;
        }
        return 1;
    case WF_NIL: return 1;
    case WF_OTHER:
        if (fa->len != fb->len || memcmp(fa->raw, fb->raw, fa->len)) {
            report(key, "%s: values differ", fa->name);
            return 0;
        }
        return 1;
    }
    return 0;
}

static int cmp_record(const ws_record *a, const ws_record *b) {
    int ok = 1;
    for (int i = 0; i < a->nfields; i++) {
        const ws_field *fa = &a->fields[i];
        if (!wanted(fa->name)) continue;
        const ws_field *fb = ws_record_field(b, fa->name);
        if (!fb) {
            report(a->key, "%s: only in A", fa->name);
            ok = 0;
            continue;
        }
        ok &= cmp_field(a->key, fa, fb);
    }
    for (int i = 0; i < b->nfields; i++)
        if (wanted(b->fields[i].name) && !ws_record_field(a, b->fields[i].name)) {
            report(a->key, "%s: only in B", b->fields[i].name);
            ok = 0;
        }
    return ok;
}

static ws_reader *open_or_die(const char *path) {
    ws_reader *r = ws_reader_open_path(path);
    if (!r) die("cannot open %s: %m", path);
    return r;
}

int main(int argc, char **argv) {
    tool_init("wsac-cmp");
    static const struct option longopts[] = {{"atol", required_argument, 0, 'a'}, {"rtol", required_argument, 0, 'r'},
                                              {"fields", required_argument, 0, 'f'}, {"quiet", no_argument, 0, 'q'},
                                              {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, ":a:r:f:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': atol_ = parse_double("--atol", optarg, 0, INFINITY); break;
        case 'r': rtol_ = parse_double("--rtol", optarg, 0, INFINITY); break;
        case 'f': {
            char *s = xstrdup(optarg);
            for (char *tok = strtok(s, ","); tok; tok = strtok(NULL, ",")) {
                only_fields = xrealloc(only_fields, (size_t)(nonly + 1) * sizeof(char *));
                only_fields[nonly++] = tok;
            }
            break;
        }
        case 'q': quiet = 1; tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (argc - optind != 2) die_usage("need two streams, A and B");
    if (!strcmp(argv[optind], "-") && !strcmp(argv[optind + 1], "-")) die_usage("only one stream can be stdin");

    /* B is held in memory, A streams */
    recset bs = {0};
    ws_reader *rb = open_or_die(argv[optind + 1]);
    long differ = 0, only_a = 0, only_b = 0, compared = 0;
    ws_record rec;
    int s;
    while ((s = ws_reader_next(rb, &rec)) == WS_RECORD) {
        if (rec.err[0]) {
            char nm[300];
            report(rec.key ? rec.key : "?", "invalid in B: %s", rec.err);
            (void)nm;
            differ++;
            ws_record_free(&rec);
            continue;
        }
        if (find(&bs, rec.key) >= 0) {
            report(rec.key, "duplicate key in B");
            differ++;
            ws_record_free(&rec);
            continue;
        }
        if (bs.n == bs.cap) {
            bs.cap = bs.cap ? 2 * bs.cap : 256;
            bs.recs = xrealloc(bs.recs, (size_t)bs.cap * sizeof(ws_record));
        }
        bs.recs[bs.n] = rec;
        insert(&bs, bs.n);
        bs.n++;
    }
    if (s == WS_ERROR) die("%s", ws_reader_error(rb));
    bs.seen = xcalloc((size_t)bs.n + 1, 1);

    ws_reader *ra = open_or_die(argv[optind]);
    while ((s = ws_reader_next(ra, &rec)) == WS_RECORD) {
        if (rec.err[0]) {
            report(rec.key ? rec.key : "?", "invalid in A: %s", rec.err);
            differ++;
        } else {
            int j = find(&bs, rec.key);
            if (j < 0) {
                report(rec.key, "only in A");
                only_a++;
            } else if (bs.seen[j]) {
                report(rec.key, "duplicate key in A");
                differ++;
            } else {
                bs.seen[j] = 1;
                compared++;
                if (!cmp_record(&rec, &bs.recs[j])) differ++;
            }
        }
        ws_record_free(&rec);
    }
    if (s == WS_ERROR) die("%s", ws_reader_error(ra));
    for (int j = 0; j < bs.n; j++)
        if (!bs.seen[j]) {
            report(bs.recs[j].key, "only in B");
            only_b++;
        }
    if (!quiet)
        for (int i = 0; i < nfstats; i++)
            printf("# %s: max |a-b| %.6g, max relative %.6g over %ld records\n", fstats[i].name, fstats[i].max_abs,
                   fstats[i].max_rel, fstats[i].n);
    close_stdout_or_die();
    int same = !differ && !only_a && !only_b;
    if (!quiet)
        fprintf(stderr, "wsac-cmp: %ld records compared, %ld differ, %ld only in A, %ld only in B: %s\n", compared,
                differ, only_a, only_b, same ? "streams agree" : "streams DIFFER");
    for (int j = 0; j < bs.n; j++) ws_record_free(&bs.recs[j]);
    free(bs.recs);
    free(bs.table);
    free(bs.seen);
    ws_reader_close(ra);
    ws_reader_close(rb);
    return same ? EXIT_OK : EXIT_PARTIAL;
}
