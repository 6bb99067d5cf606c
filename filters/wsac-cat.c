/* wsac-cat - concatenate tensor streams into one (shards back into a whole). */
#include <getopt.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"
#include "util.h"

static const char usage[] =
    "Usage: wsac-cat [OPTIONS] [STREAM...]\n"
    "Copy the records of every STREAM (stdin when none, or '-') into one stream\n"
    "on stdout with a single header and trailer; records pass through unchanged,\n"
    "in order. Merges shards made in parallel, and validates a stream on the way\n"
    "(a truncated or malformed input is a fatal error, and then no trailer is\n"
    "written, so the output is visibly incomplete too).\n"
    "\n"
    "  -u, --unique    fail records whose key was already seen (duplicates)\n"
    "  -q, --quiet     no summary line\n"
    "  -h, --help      show this help\n"
    "\n"
    "Exit status: 0 all records copied, 1 usage error, 2 malformed or truncated\n"
    "input or failed write, 3 some records were invalid (named on stderr; listed\n"
    "in the trailer as failed).\n";

typedef struct {
    char **keys;
    size_t n, cap;
} keyset; /* open addressing */

static int keyset_add(keyset *k, const char *key) { /* 0 if already present */
    if (2 * (k->n + 1) > k->cap) {
        size_t nc = k->cap ? 2 * k->cap : 1024;
        char **old = k->keys;
        size_t oc = k->cap;
        k->keys = xcalloc(nc, sizeof(char *));
        k->cap = nc;
        k->n = 0;
        for (size_t i = 0; i < oc; i++)
            if (old[i]) {
                size_t j = str_hash(old[i]) & (nc - 1);
                while (k->keys[j]) j = (j + 1) & (nc - 1);
                k->keys[j] = old[i];
                k->n++;
            }
        free(old);
    }
    size_t j = str_hash(key) & (k->cap - 1);
    while (k->keys[j]) {
        if (!strcmp(k->keys[j], key)) return 0;
        j = (j + 1) & (k->cap - 1);
    }
    k->keys[j] = xstrdup(key);
    k->n++;
    return 1;
}

int main(int argc, char **argv) {
    tool_init("wsac-cat");
    static const struct option longopts[] = {{"unique", no_argument, 0, 'u'}, {"quiet", no_argument, 0, 'q'},
                                              {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c, unique = 0;
    while ((c = getopt_long(argc, argv, ":uqh", longopts, NULL)) != -1) {
        switch (c) {
        case 'u': unique = 1; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    int nin = argc - optind;
    const char *dash = "-";
    const char **inputs = nin ? (const char **)argv + optind : &dash;
    if (!nin) nin = 1;
    keyset seen = {0};
    ws_writer *w = NULL;
    ws_reader **readers = xcalloc((size_t)nin, sizeof(ws_reader *));
    for (int i = 0; i < nin; i++) {
        ws_reader *r = readers[i] = ws_reader_open_path(inputs[i]);
        if (!r) die("cannot open %s: %m", inputs[i]);
        int opened_here = 0;
        ws_record rec;
        int s;
        while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
            /* the header is written once the first input has shown its own */
            if (!w) {
                w = ws_writer_open(stdout, "wsac-cat", NULL, 0, r);
                opened_here = 1;
            }
            char nm[300];
            if (rec.err[0]) ws_fail(w, rec.key ? rec.key : ws_record_name(&rec, nm, sizeof nm), "%s", rec.err);
            else if (unique && !keyset_add(&seen, rec.key)) ws_fail(w, rec.key, "duplicate key");
            else {
                ws_begin(w, rec.key);
                ws_put_fields_except(w, &rec, NULL);
                ws_end(w);
            }
            ws_record_free(&rec);
        }
        if (s == WS_ERROR) die("%s", ws_reader_error(r));
        if (!w) {
            w = ws_writer_open(stdout, "wsac-cat", NULL, 0, r);
            opened_here = 1;
        }
        /* this input's upstream failures go into our trailer too */
        if (!opened_here) ws_writer_add_upstream(w, r);
    }
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    for (int i = 0; i < nin; i++) ws_reader_close(readers[i]);
    free(readers);
    for (size_t i = 0; i < seen.cap; i++) free(seen.keys[i]);
    free(seen.keys);
    return finish(ok, failed);
}
