/* nnproj - project embeddings onto a memory of text embeddings (nnd | pd). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "embset.h"
#include "gemm.h"
#include "memproj.h"
#include "nn.h"
#include "stream.h"
#include "util.h"

static const char usage[] =
    "Usage: nnproj -M MEMORY --method nnd|pd [OPTIONS] [STREAM]\n"
    "Replace each record's \"emb\" by its projection onto MEMORY, a stream of text\n"
    "embeddings (e.g. clap-text over the training captions), as WSAC decodes audio:\n"
    "  nnd  the most cosine-similar memory embedding\n"
    "  pd   softmax(cos / tau)-weighted sum of the memory, re-normalised\n"
    "Other fields pass through. Reads STREAM or stdin, writes stdout.\n"
    "\n"
    "  -M, --memory FILE    memory stream (every record's \"emb\"; rows normalised)\n"
    "  -m, --method M       nnd or pd (required)\n"
    "  -t, --tau T          pd temperature (0.01, the published 1/100)\n"
    "  -k, --topk K         add the K nearest memory entries: \"topk_keys\",\n"
    "                       \"topk_texts\" (captions, when the memory has them) and\n"
    "                       \"topk_sims\" f32 [K]\n"
    "  -b, --batch N        queries per matrix product (256)\n"
    "  -j, --threads N      OpenBLAS threads (default: all cores)\n"
    "  -q, --quiet          no summary line\n"
    "  -h, --help           show this help\n"
    "\n"
    "Every memory entry is used (the published code dropped the last len %% 1000).\n"
    "Exit status: 0 all records projected, 1 usage error, 2 fatal (unreadable or\n"
    "empty memory, malformed input), 3 some records failed (named on stderr).\n";

typedef struct {
    ws_record rec;
    int ok;
} item;

int main(int argc, char **argv) {
    tool_init("nnproj");
    static const struct option longopts[] = {
        {"memory", required_argument, 0, 'M'}, {"method", required_argument, 0, 'm'},
        {"tau", required_argument, 0, 't'},    {"topk", required_argument, 0, 'k'},
        {"batch", required_argument, 0, 'b'},  {"threads", required_argument, 0, 'j'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *mempath = NULL, *method = NULL;
    double tau = 0.01;
    int topk = 0, batch = 256, threads = 0, c;
    while ((c = getopt_long(argc, argv, ":M:m:t:k:b:j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'M': mempath = optarg; break;
        case 'm': method = optarg; break;
        case 't': tau = parse_double("--tau", optarg, 1e-6, 1e6); break;
        case 'k': topk = (int)parse_long("--topk", optarg, 0, 1000); break;
        case 'b': batch = (int)parse_long("--batch", optarg, 1, 65536); break;
        case 'j': threads = (int)parse_long("--threads", optarg, 1, 256); break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (!mempath) die_usage("no memory: give -M MEMORY");
    if (!method || (strcmp(method, "nnd") && strcmp(method, "pd"))) die_usage("--method must be nnd or pd");
    if (argc - optind > 1) die_usage("at most one input stream");
    int pd = !strcmp(method, "pd");
    gemm_init(threads);

    embset mem;
    char err[700];
    if (embset_load(&mem, mempath, 1, err, sizeof err)) die("memory: %s", err);
    if (mem.n == 0) die("memory %s holds no usable embeddings", mempath);
    if (topk > mem.n) topk = mem.n;
    int D = mem.dim, N = mem.n;

    ws_reader *r = ws_reader_open_path(argc > optind ? argv[optind] : "-");
    if (!r) die("cannot open %s: %m", argv[optind]);
    ws_param params[] = {{"method", 's', 0, 0, method}, {"tau", 'f', 0, tau, 0},
                         {"memory", 's', 0, 0, mempath}, {"memory_size", 'i', N, 0, 0},
                         {"dim", 'i', D, 0, 0},          {"topk", 'i', topk, 0, 0}};
    ws_writer *w = NULL;

    item *items = xcalloc((size_t)batch, sizeof(item));
    float *Q = xmalloc_aligned((size_t)batch * D * sizeof(float));
    float *S = xmalloc_aligned((size_t)batch * N * sizeof(float));
    float *P = xmalloc_aligned((size_t)batch * D * sizeof(float));
    int *arg = xmalloc((size_t)batch * sizeof(int)), *tk = xmalloc((size_t)batch * (size_t)(topk + 1) * sizeof(int));
    float *tv = xmalloc((size_t)batch * (size_t)(topk + 1) * sizeof(float)), *nnsim = xmalloc((size_t)batch * sizeof(float));
    const char **tkeys = xmalloc((size_t)(topk + 1) * sizeof(char *)), **ttexts = xmalloc((size_t)(topk + 1) * sizeof(char *));
    int s = WS_RECORD, eof = 0;
    long done = 0;
    progress pr;
    progress_init(&pr, "records", -1);
    while (!eof) {
        /* a batch is what has arrived, up to --batch: the stream keeps flowing */
        int n = 0;
        while (n < batch && (n == 0 || ws_reader_ready(r))) {
            s = ws_reader_next(r, &items[n].rec);
            if (s != WS_RECORD) {
                eof = 1;
                break;
            }
            if (!w) w = ws_writer_open(stdout, "nnproj", params, (int)(sizeof params / sizeof params[0]), r);
            n++;
        }
        if (!w && s != WS_ERROR) w = ws_writer_open(stdout, "nnproj", params, (int)(sizeof params / sizeof params[0]), r);
        int nq = 0;
        for (int i = 0; i < n; i++) {
            ws_record *rec = &items[i].rec;
            char why[320], nm[300];
            items[i].ok = 0;
            const ws_tensor *t = rec->err[0] ? NULL : ws_record_tensor(rec, "emb", DT_F32, 1, why, sizeof why);
            if (rec->err[0]) snprintf(why, sizeof why, "%s", rec->err);
            else if (t && t->shape[0] != D) {
                snprintf(why, sizeof why, "emb has width %lld but the memory has %d", (long long)t->shape[0], D);
                t = NULL;
            }
            if (t) {
                double ss = 0;
                const float *v = t->data;
                for (int d = 0; d < D; d++) ss += (double)v[d] * v[d];
                if (!isfinite(ss) || ss == 0) {
                    snprintf(why, sizeof why, "emb is %s", isfinite(ss) ? "the zero vector" : "not finite (NaN or inf)");
                    t = NULL;
                } else {
                    float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12));
                    for (int d = 0; d < D; d++) Q[(size_t)nq * D + d] = v[d] * inv;
                }
            }
            if (!t) {
                ws_fail(w, rec->key ? rec->key : ws_record_name(rec, nm, sizeof nm), "%s", why);
                continue;
            }
            items[i].ok = 1;
            nq++;
        }
        if (nq > 0) {
            memproj_scores(S, Q, mem.x, nq, N, D);
            for (int k = 0; k < nq && topk; k++) /* on the cosines, before pd turns them into weights */
                memproj_topk(S + (size_t)k * N, N, topk, tk + (size_t)k * topk, tv + (size_t)k * topk);
            if (pd) memproj_pd(P, S, mem.x, nq, N, D, (float)tau);
            else {
                memproj_argmax(arg, S, nq, N);
                for (int k = 0; k < nq; k++) nnsim[k] = S[(size_t)k * N + arg[k]];
            }
        }
        for (int i = 0, q = 0; i < n; i++) {
            ws_record *rec = &items[i].rec;
            if (!items[i].ok) continue;
            int64_t shape[1] = {D};
            ws_begin(w, rec->key);
            ws_put_tensor(w, "emb", DT_F32, 1, shape, pd ? P + (size_t)q * D : mem.x + (size_t)arg[q] * D);
            if (!pd) {
                ws_put_str(w, "nn_key", mem.keys[arg[q]], strlen(mem.keys[arg[q]]));
                ws_put_float(w, "nn_sim", nnsim[q]);
            }
            if (topk) {
                const int *ti = tk + (size_t)q * topk;
                int have_text = 1;
                for (int k = 0; k < topk; k++) {
                    tkeys[k] = mem.keys[ti[k]];
                    ttexts[k] = mem.texts[ti[k]] ? mem.texts[ti[k]] : "";
                    if (!mem.texts[ti[k]]) have_text = 0;
                }
                int64_t ks[1] = {topk};
                ws_put_str_array(w, "topk_keys", tkeys, topk);
                if (have_text) ws_put_str_array(w, "topk_texts", ttexts, topk);
                ws_put_tensor(w, "topk_sims", DT_F32, 1, ks, tv + (size_t)q * topk);
            }
            ws_put_fields_except(w, rec, NULL);
            ws_end(w);
            q++;
        }
        for (int i = 0; i < n; i++) ws_record_free(&items[i].rec);
        done += n;
        progress_update(&pr, done);
    }
    progress_end(&pr, done);
    if (s == WS_ERROR) die("%s", ws_reader_error(r));
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    ws_reader_close(r);
    embset_free(&mem);
    free(items);
    free(Q);
    free(S);
    free(P);
    free(arg);
    free(tk);
    free(tv);
    free(nnsim);
    free(tkeys);
    free(ttexts);
    return finish(ok, failed);
}
