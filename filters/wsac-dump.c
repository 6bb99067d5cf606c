/* wsac-dump - print tensor streams as JSON lines (or a readable summary). */
#include <getopt.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonout.h"
#include "stream.h"
#include "util.h"

static const char usage[] =
    "Usage: wsac-dump [OPTIONS] [STREAM...]\n"
    "Print wsac tensor streams (stdin when no STREAM or '-') as JSON lines:\n"
    "the header, one line per record with tensors summarised, the trailer.\n"
    "\n"
    "  -f, --full           print every tensor element (\"data\": nested arrays)\n"
    "  -r, --records-only   omit the header and trailer lines\n"
    "  -s, --summary        one readable line per record instead of JSON\n"
    "  -a, --ascii FIELD    with --summary: draw the 2-D tensor FIELD as text\n"
    "                       (rows: columns of the tensor, low index at the bottom)\n"
    "  -q, --quiet          no closing summary on stderr\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 all records valid, 2 malformed or truncated stream,\n"
    "3 some records invalid (each named on stderr).\n";

static int full, records_only, summary;
static const char *ascii_field;

static void on_meta(void *ctx, char kind, const char *raw, size_t len) {
    (void)ctx;
    if (records_only || summary) return;
    fputs(kind == 'h' ? "{\"header\":" : "{\"trailer\":", stdout);
    json_write_msgpack_raw(stdout, raw, len);
    fputs("}\n", stdout);
    fflush(stdout);
}

/* A 2-D tensor [T, F] drawn with T along x and F along y, over its top 80. */
static void draw_ascii(const ws_tensor *t) {
    static const char shades[] = " .:-=+*#%@";
    const int W = 72, H = 16;
    int64_t T = t->shape[0], F = t->shape[1];
    if (T == 0 || F == 0) return;
    int w = T < W ? (int)T : W, h = F < H ? (int)F : H;
    double *cell = calloc((size_t)w * (size_t)h, sizeof(double));
    if (!cell) return;
    tensor_stats s;
    tensor_stats_compute(t, &s);
    double hi = s.max, lo = s.min > s.max - 80 ? s.min : s.max - 80;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            int64_t t0 = T * x / w, t1 = T * (x + 1) / w, f0 = F * y / h, f1 = F * (y + 1) / h;
            double acc = 0;
            long n = 0;
            for (int64_t i = t0; i < t1; i++)
                for (int64_t j = f0; j < f1; j++) {
                    double v = tensor_get(t, (size_t)(i * F + j));
                    if (isfinite(v)) { acc += v; n++; }
                }
            cell[y * w + x] = n ? acc / (double)n : lo;
        }
    for (int y = h - 1; y >= 0; y--) {
        fputs("  |", stdout);
        for (int x = 0; x < w; x++) {
            double v = hi > lo ? (cell[y * w + x] - lo) / (hi - lo) : 0;
            int k = (int)(v * 9.999);
            k = k < 0 ? 0 : k > 9 ? 9 : k;
            fputc(shades[k], stdout);
        }
        fputs("|\n", stdout);
    }
    printf("   %-*s\n", w, "time ->");
    free(cell);
}

static void print_summary(const ws_record *rec) {
    char nm[300];
    printf("%s", rec->key ? rec->key : ws_record_name(rec, nm, sizeof nm));
    for (int i = 0; i < rec->nfields; i++) {
        const ws_field *f = &rec->fields[i];
        printf("  %s=", f->name);
        switch (f->kind) {
        case WF_TENSOR: {
            tensor_stats s;
            tensor_stats_compute(&f->t, &s);
            printf("%s[", ws_dtype_name(f->t.dtype));
            for (int d = 0; d < f->t.ndim; d++) printf("%s%lld", d ? "," : "", (long long)f->t.shape[d]);
            if (f->t.dtype == DT_F32 && f->t.numel <= 8) { /* a few values (nnproj's topk_sims): all of them */
                printf("] [");
                for (size_t k = 0; k < f->t.numel; k++) printf("%s%.4g", k ? ", " : "", ((const float *)f->t.data)[k]);
                printf("]");
                break;
            }
            printf("] min %.4g max %.4g mean %.4g", s.min, s.max, s.mean);
            if (s.nan || s.inf) printf(" (%zu NaN, %zu inf)", s.nan, s.inf);
            break;
        }
        case WF_STR: printf("\"%s\"", f->str); break;
        case WF_INT: printf("%lld", (long long)f->i); break;
        case WF_FLOAT: printf("%g", f->f); break;
        case WF_BOOL: printf("%s", f->i ? "true" : "false"); break;
        case WF_NIL: printf("nil"); break;
        case WF_OTHER: json_write_msgpack_raw(stdout, f->raw, f->len); break; /* arrays, maps: as JSON */
        }
    }
    if (rec->err[0]) printf("  INVALID: %s", rec->err);
    putchar('\n');
    if (ascii_field) {
        const ws_field *f = ws_record_field(rec, ascii_field);
        if (f && f->kind == WF_TENSOR && f->t.ndim == 2) draw_ascii(&f->t);
    }
}

static int dump(ws_reader *r, long *ok, long *bad) {
    ws_reader_on_meta(r, on_meta, NULL);
    ws_record rec;
    int s;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        if (summary) print_summary(&rec);
        else {
            json_write_record(stdout, &rec, full);
            fputc('\n', stdout);
        }
        if (fflush(stdout) != 0) die("writing standard output: %m");
        if (rec.err[0]) {
            char nm[300];
            warnx_("%s: %s", ws_record_name(&rec, nm, sizeof nm), rec.err);
            (*bad)++;
        } else (*ok)++;
        ws_record_free(&rec);
    }
    if (s == WS_ERROR) {
        warnx_("error: %s", ws_reader_error(r));
        return -1;
    }
    return 0;
}

int main(int argc, char **argv) {
    tool_init("wsac-dump");
    static const struct option longopts[] = {
        {"full", no_argument, 0, 'f'},    {"records-only", no_argument, 0, 'r'},
        {"summary", no_argument, 0, 's'}, {"ascii", required_argument, 0, 'a'},
        {"quiet", no_argument, 0, 'q'},   {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, ":frsa:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'f': full = 1; break;
        case 'r': records_only = 1; break;
        case 's': summary = 1; break;
        case 'a': ascii_field = optarg; summary = 1; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    long ok = 0, bad = 0;
    int fatal = 0;
    if (optind >= argc) {
        ws_reader *r = ws_reader_open_fd(0, "stdin");
        fatal = dump(r, &ok, &bad) < 0;
        ws_reader_close(r);
    }
    for (int i = optind; i < argc && !fatal; i++) {
        ws_reader *r = ws_reader_open_path(argv[i]);
        if (!r) die("cannot open %s: %m", argv[i]);
        fatal = dump(r, &ok, &bad) < 0;
        ws_reader_close(r);
    }
    close_stdout_or_die();
    if (fatal) return EXIT_FATAL;
    if (!tool_quiet || bad) fprintf(stderr, "wsac-dump: %ld records, %ld invalid\n", ok + bad, bad);
    return bad ? EXIT_PARTIAL : EXIT_OK;
}
