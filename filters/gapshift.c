/* gapshift - estimate, apply and picture the audio-text modality gap. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "embset.h"
#include "gap.h"
#include "memproj.h"
#include "nn.h"
#include "plot.h"
#include "tsne.h"
#include "stream.h"
#include "util.h"

static const char usage[] =
    "Usage: gapshift estimate --audio A --text T [--json FILE] > gap.mp\n"
    "       gapshift apply [--gap G] [--noise VAR] [--seed S] [STREAM] > shifted.mp\n"
    "       gapshift sigma [--json FILE] [STREAM]\n"
    "       gapshift plot --audio A --text T [--gap G] [--noise VAR] [--memory M --method pd|nnd]\n"
    "                     [--max N] [--tsne [--perplexity P] [--iters N]] -o OUT.svg\n"
    "The modality gap of WSAC (Kouzelis & Katsouros, section 3): CLAP audio and text\n"
    "embeddings of the same sound lie apart; these commands measure and bridge it.\n"
    "\n"
    "estimate  gap = mean(normalised audio embs) - mean(normalised text embs), as one\n"
    "          record (key \"gap\", \"emb\" f32 [D], NOT normalised) with statistics:\n"
    "          |gap|, mean cosine of audio-text pairs sharing a key (FILE#i -> FILE),\n"
    "          mean cosine within each modality and across (stderr, and --json FILE)\n"
    "apply     every record's emb <- normalise(normalise(emb) + n + gap),\n"
    "          n ~ N(0, VAR) per dimension, drawn afresh per record from --seed\n"
    "sigma     the paper's noise scale: the mean L-inf norm of e_i - e_j over pairs of\n"
    "          captions of the same audio (keys FILE#1..#5 grouped by FILE); prints\n"
    "          JSON {sigma, variance = sigma^2, pairs, groups} on stdout\n"
    "plot      PCA of audio and text embeddings (axes fit on both) as an SVG: the raw\n"
    "          embeddings, and beside them the text after --gap/--noise and/or the\n"
    "          audio after projection onto --memory (nnd or pd, as nnproj);\n"
    "          --tsne: exact t-SNE of each panel's points instead (sklearn's method)\n"
    "\n"
    "  -a, --audio FILE     audio embedding stream (clap-audio)\n"
    "  -t, --text FILE      text embedding stream (clap-text)\n"
    "  -g, --gap FILE       a gap stream from `gapshift estimate`\n"
    "  -n, --noise VAR      noise variance (std = sqrt(VAR)); 0: none (default)\n"
    "  -s, --seed S         noise seed (0)\n"
    "  -M, --memory FILE    plot: memory of text embeddings to project audio onto\n"
    "  -m, --method M       plot: nnd or pd (pd)\n"
    "      --tau T          plot: pd temperature (0.01)\n"
    "      --max N          plot: at most N points per set, evenly spaced (1000)\n"
    "      --tsne           plot: t-SNE instead of PCA (O(n^2): seconds to minutes)\n"
    "      --perplexity P   plot --tsne: perplexity (30)\n"
    "      --iters N        plot --tsne: iterations (1000; the first 250 exaggerated)\n"
    "      --coords FILE    plot: also write the 2-D points as a stream, a record per\n"
    "                       panel and set (key \"PANEL:SET\", \"xy\" f64 [n, 2])\n"
    "  -o, --output FILE    plot: the SVG to write\n"
    "      --json FILE      estimate, sigma: also write the statistics as JSON\n"
    "  -q, --quiet          no summary lines\n"
    "  -h, --help           show this help\n"
    "\n"
    "Exit status: 0 success, 1 usage error, 2 fatal (unreadable or malformed\n"
    "input, empty sets, mismatched widths), 3 some records failed (named on stderr).\n";

static struct {
    const char *audio, *text, *gap, *memory, *method, *out, *json, *coords;
    double noise, tau, perplexity;
    long seed;
    int max, tsne, iters;
} opt = {NULL, NULL, NULL, NULL, "pd", NULL, NULL, NULL, 0, 0.01, 30, 0, 1000, 0, 1000};

static void load_or_die(embset *e, const char *path, const char *what) {
    char err[700];
    if (!path) die_usage("give --%s FILE", what);
    if (embset_load(e, path, 1, err, sizeof err)) die("%s: %s", what, err);
    if (e->n == 0) die("%s stream %s holds no usable embeddings", what, path);
}

/* the gap vector: the first record of a gap stream, as written by estimate */
static float *read_gap(const char *path, int *D) {
    embset g;
    char err[700];
    if (embset_load(&g, path, 0, err, sizeof err)) die("gap: %s", err);
    if (g.n == 0) die("gap stream %s holds no emb", path);
    float *v = xmalloc((size_t)g.dim * sizeof(float));
    memcpy(v, g.x, (size_t)g.dim * sizeof(float));
    *D = g.dim;
    embset_free(&g);
    return v;
}

static void write_json(const char *path, const char *body) {
    if (!path) return;
    char *tmp;
    FILE *f = atomic_open(path, &tmp);
    if (!f) die("cannot write %s: %m", path);
    if (fputs(body, f) < 0) {
        atomic_abort(f, tmp);
        die("writing %s: %m", path);
    }
    if (atomic_commit(f, tmp, path)) die("writing %s: %m", path);
}

/* a JSON number, or null when not finite (JSON has no NaN) */
static const char *jnum(char *buf, double v) {
    if (isfinite(v)) snprintf(buf, 32, "%.9g", v);
    else snprintf(buf, 32, "null");
    return buf;
}

static int cmd_estimate(void) {
    embset A, T;
    load_or_die(&A, opt.audio, "audio");
    load_or_die(&T, opt.text, "text");
    if (A.dim != T.dim) die("audio embeddings have width %d, text %d", A.dim, T.dim);
    int D = A.dim;
    double *ma = xmalloc((size_t)D * sizeof(double)), *mt = xmalloc((size_t)D * sizeof(double));
    mean_rows(ma, A.x, A.n, D);
    mean_rows(mt, T.x, T.n, D);
    float *gap = xmalloc((size_t)D * sizeof(float));
    double gn = 0, across = 0;
    for (int d = 0; d < D; d++) {
        gap[d] = (float)(ma[d] - mt[d]);
        gn += (ma[d] - mt[d]) * (ma[d] - mt[d]);
        across += ma[d] * mt[d]; /* mean over all pairs of a.t = mean(a).mean(t) */
    }
    gn = sqrt(gn);
    double *sa = xmalloc((size_t)D * sizeof(double)), *st = xmalloc((size_t)D * sizeof(double));
    for (int d = 0; d < D; d++) sa[d] = ma[d] * A.n, st[d] = mt[d] * T.n;
    double wa = mean_pair_cos_within(sa, A.n, D), wt = mean_pair_cos_within(st, T.n, D);
    /* pairs sharing a key: text FILE#i with audio FILE (hash the audio keys) */
    double pc = 0;
    long np = 0;
    {
        int cap = 1;
        while (cap < 2 * A.n) cap *= 2;
        int *tab = xcalloc((size_t)cap, sizeof(int));
        for (int i = 0; i < A.n; i++) {
            uint64_t h = str_hash(A.keys[i]) & (uint64_t)(cap - 1);
            while (tab[h]) h = (h + 1) & (uint64_t)(cap - 1);
            tab[h] = i + 1;
        }
        for (int j = 0; j < T.n; j++) {
            char g[1024];
            group_key(T.keys[j], g, sizeof g);
            uint64_t h = str_hash(g) & (uint64_t)(cap - 1);
            int hit = -1;
            for (; tab[h]; h = (h + 1) & (uint64_t)(cap - 1))
                if (!strcmp(A.keys[tab[h] - 1], g)) {
                    hit = tab[h] - 1;
                    break;
                }
            if (hit < 0) continue;
            double c = 0;
            for (int d = 0; d < D; d++) c += (double)A.x[(size_t)hit * D + d] * T.x[(size_t)j * D + d];
            pc += c;
            np++;
        }
        free(tab);
    }
    pc = np ? pc / np : NAN;
    ws_param params[] = {{"audio", 's', 0, 0, opt.audio}, {"text", 's', 0, 0, opt.text}};
    ws_writer *w = ws_writer_open(stdout, "gapshift estimate", params, 2, NULL);
    int64_t shape[1] = {D};
    ws_begin(w, "gap");
    ws_put_tensor(w, "emb", DT_F32, 1, shape, gap);
    ws_put_float(w, "gap_norm", gn);
    ws_put_int(w, "n_audio", A.n);
    ws_put_int(w, "n_text", T.n);
    ws_put_int(w, "n_pairs", np);
    if (np) ws_put_float(w, "pair_cos", pc);
    ws_put_float(w, "across_cos", across);
    if (isfinite(wa)) ws_put_float(w, "within_audio_cos", wa);
    if (isfinite(wt)) ws_put_float(w, "within_text_cos", wt);
    ws_end(w);
    ws_writer_close(w);
    close_stdout_or_die();
    if (!tool_quiet) {
        infox("%d audio, %d text embeddings of width %d", A.n, T.n, D);
        infox("|gap| = %.6f", gn);
        if (np) infox("mean cosine of %ld audio-text pairs sharing a key: %.6f", np, pc);
        else infox("no text key pairs with an audio key (FILE#i -> FILE)");
        infox("mean cosine within audio %.6f, within text %.6f, across modalities %.6f", wa, wt, across);
    }
    char js[1024], b1[32], b2[32], b3[32], b4[32];
    snprintf(js, sizeof js,
             "{\"n_audio\": %d, \"n_text\": %d, \"dim\": %d, \"gap_norm\": %.9g, \"n_pairs\": %ld, \"pair_cos\": %s, "
             "\"within_audio_cos\": %s, \"within_text_cos\": %s, \"across_cos\": %s}\n",
             A.n, T.n, D, gn, np, jnum(b1, pc), jnum(b2, wa), jnum(b3, wt), jnum(b4, across));
    write_json(opt.json, js);
    embset_free(&A);
    embset_free(&T);
    free(ma), free(mt), free(sa), free(st), free(gap);
    return EXIT_OK;
}

static int cmd_apply(const char *input) {
    int D = 0;
    float *gap = opt.gap ? read_gap(opt.gap, &D) : NULL;
    rng_t rng;
    rng_seed(&rng, (uint64_t)opt.seed);
    double sigma = sqrt(opt.noise);
    ws_reader *r = ws_reader_open_path(input ? input : "-");
    if (!r) die("cannot open %s: %m", input);
    ws_param params[] = {{"gap", 's', 0, 0, opt.gap ? opt.gap : ""}, {"noise", 'f', 0, opt.noise, 0},
                         {"seed", 'i', opt.seed, 0, 0}};
    ws_writer *w = ws_writer_open(stdout, "gapshift apply", params, 3, r);
    ws_record rec;
    int s;
    float *buf = NULL;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        char why[320], nm[300];
        const ws_tensor *t = rec.err[0] ? NULL : ws_record_tensor(&rec, "emb", DT_F32, 1, why, sizeof why);
        if (rec.err[0]) snprintf(why, sizeof why, "%s", rec.err);
        else if (t && gap && t->shape[0] != D) {
            snprintf(why, sizeof why, "emb has width %lld, the gap %d", (long long)t->shape[0], D);
            t = NULL;
        }
        if (t) {
            buf = xrealloc(buf, (size_t)t->shape[0] * sizeof(float) + 1);
            memcpy(buf, t->data, (size_t)t->shape[0] * sizeof(float));
            double ss = 0;
            for (int64_t d = 0; d < t->shape[0]; d++) ss += (double)buf[d] * buf[d];
            if (!isfinite(ss) || ss == 0) {
                snprintf(why, sizeof why, "emb is %s", isfinite(ss) ? "the zero vector" : "not finite (NaN or inf)");
                t = NULL;
            }
        }
        if (!t) {
            ws_fail(w, rec.key ? rec.key : ws_record_name(&rec, nm, sizeof nm), "%s", why);
            ws_record_free(&rec);
            continue;
        }
        gap_apply(buf, (int)t->shape[0], gap, sigma, &rng);
        ws_begin(w, rec.key);
        ws_put_tensor(w, "emb", DT_F32, 1, t->shape, buf);
        ws_put_fields_except(w, &rec, NULL);
        ws_end(w);
        ws_record_free(&rec);
    }
    if (s == WS_ERROR) die("%s", ws_reader_error(r));
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    ws_reader_close(r);
    free(buf);
    free(gap);
    return finish(ok, failed);
}

static int cmd_sigma(const char *input) {
    embset T;
    char err[700];
    if (embset_load(&T, input ? input : "-", 1, err, sizeof err)) die("%s", err);
    if (T.n == 0) die("no usable embeddings");
    /* group index per row: rows whose group key was seen get its index */
    int *grp = xmalloc((size_t)T.n * sizeof(int)), G = 0, cap = 1;
    while (cap < 2 * T.n) cap *= 2;
    int *tab = xcalloc((size_t)cap, sizeof(int));
    char **gk = xmalloc((size_t)T.n * sizeof(char *));
    for (int i = 0; i < T.n; i++) {
        char g[1024];
        group_key(T.keys[i], g, sizeof g);
        uint64_t h = str_hash(g) & (uint64_t)(cap - 1);
        int hit = -1;
        for (; tab[h]; h = (h + 1) & (uint64_t)(cap - 1))
            if (!strcmp(gk[tab[h] - 1], g)) {
                hit = tab[h] - 1;
                break;
            }
        if (hit < 0) {
            gk[G] = xstrdup(g);
            tab[h] = G + 1;
            hit = G++;
        }
        grp[i] = hit;
    }
    long pairs;
    double sg = gap_sigma(T.x, grp, T.n, T.dim, &pairs);
    int *count = xcalloc((size_t)G + 1, sizeof(int)), multi = 0;
    for (int i = 0; i < T.n; i++) count[grp[i]]++;
    for (int g = 0; g < G; g++) multi += count[g] > 1;
    if (!pairs) die("no two embeddings share an audio (keys FILE#i): sigma needs captions grouped by audio");
    printf("{\"sigma\": %.9g, \"variance\": %.9g, \"pairs\": %ld, \"groups\": %d, \"embeddings\": %d, "
           "\"definition\": \"mean over pairs of captions of the same audio of max_d |e_i[d] - e_j[d]| (unit-normalised e)\"}\n",
           sg, sg * sg, pairs, multi, T.n);
    char js[600];
    snprintf(js, sizeof js, "{\"sigma\": %.9g, \"variance\": %.9g, \"pairs\": %ld, \"groups\": %d, \"embeddings\": %d}\n",
             sg, sg * sg, pairs, multi, T.n);
    write_json(opt.json, js);
    close_stdout_or_die();
    if (!tool_quiet)
        infox("sigma = %.6f: the mean L-inf norm of e_i - e_j over %ld pairs of captions of the same audio "
              "(%d audio keys with 2+ captions, %d embeddings); as a variance for --noise: sigma^2 = %.6f",
              sg, pairs, multi, T.n, sg * sg);
    for (int g = 0; g < G; g++) free(gk[g]);
    free(gk), free(tab), free(grp), free(count);
    embset_free(&T);
    return EXIT_OK;
}

/* rows of e, at most max of them evenly spaced, projected on the axes */
/* the rows of x on the shared PCA axes */
static double *project2(const float *x, int n, int D, const double *axes, const double *mu) {
    double *xy = xmalloc((size_t)(n ? n : 1) * 2 * sizeof(double));
    pca_project(xy, x, n, D, axes, mu);
    return xy;
}

static float *subsample(const embset *e, int max, int *m) {
    int n = e->n < max ? e->n : max;
    float *x = xmalloc((size_t)n * e->dim * sizeof(float));
    for (int k = 0; k < n; k++)
        memcpy(x + (size_t)k * e->dim, e->x + (size_t)((long)k * e->n / n) * e->dim, (size_t)e->dim * sizeof(float));
    *m = n;
    return x;
}

/* t-SNE progress: plain lines (the run takes seconds to minutes) */
static void tsne_report(void *ctx, int it, double kl) {
    const char *what = ctx;
    if (!tool_quiet && (it % 250 == 0 || it == opt.iters)) infox("t-SNE %s: iteration %d of %d, KL %.4f", what, it, opt.iters, kl);
}

/* 2-D coordinates of a panel's two point sets: the shared PCA axes, or a
 * t-SNE of the two sets together (t-SNE has no axes to share) */
static void map_panel(double **xy1, double **xy2, const float *s1, int n1, const float *s2, int n2, int D,
                      const double *axes, const double *mu, const char *what) {
    if (!opt.tsne) {
        *xy1 = project2(s1, n1, D, axes, mu);
        *xy2 = project2(s2, n2, D, axes, mu);
        return;
    }
    float *both = xmalloc((size_t)(n1 + n2) * D * sizeof(float));
    memcpy(both, s1, (size_t)n1 * D * sizeof(float));
    memcpy(both + (size_t)n1 * D, s2, (size_t)n2 * D * sizeof(float));
    tsne_opts o;
    tsne_opts_default(&o);
    o.perplexity = opt.perplexity;
    o.iters = opt.iters;
    if (o.explore_iters > o.iters) o.explore_iters = o.iters;
    double *y = xmalloc((size_t)(n1 + n2) * 2 * sizeof(double));
    char err[200];
    if (tsne2(y, both, n1 + n2, D, &o, tsne_report, (void *)what, err, sizeof err) < 0) die("%s: %s", what, err);
    *xy1 = xmalloc((size_t)(n1 ? n1 : 1) * 2 * sizeof(double));
    *xy2 = xmalloc((size_t)(n2 ? n2 : 1) * 2 * sizeof(double));
    memcpy(*xy1, y, (size_t)n1 * 2 * sizeof(double));
    memcpy(*xy2, y + (size_t)n1 * 2, (size_t)n2 * 2 * sizeof(double));
    free(y);
    free(both);
}

/* the plotted points as a stream, written atomically */
static void write_coords(const char *path, const plot_panel *p, int np) {
    char *tmp;
    FILE *f = atomic_open(path, &tmp);
    if (!f) die("cannot write %s: %m", path);
    ws_param params[] = {{"tsne", 'i', opt.tsne, 0, 0}, {"perplexity", 'f', 0, opt.perplexity, 0}};
    ws_writer *w = ws_writer_open(f, "gapshift plot", params, 2, NULL);
    for (int k = 0; k < np; k++)
        for (int j = 0; j < p[k].ns; j++) {
            char key[120];
            snprintf(key, sizeof key, "%d:%s", k + 1, p[k].s[j].label);
            int64_t shape[2] = {p[k].s[j].n, 2};
            ws_begin(w, key);
            ws_put_tensor(w, "xy", DT_F64, 2, shape, p[k].s[j].xy);
            ws_end(w);
        }
    ws_writer_close(w);
    if (atomic_commit(f, tmp, path)) die("writing %s: %m", path);
}

static int cmd_plot(void) {
    if (!opt.out) die_usage("plot needs -o OUT.svg");
    embset A, T;
    load_or_die(&A, opt.audio, "audio");
    load_or_die(&T, opt.text, "text");
    if (A.dim != T.dim) die("audio embeddings have width %d, text %d", A.dim, T.dim);
    int D = A.dim, na, nt;
    if (D > 4096) die("embeddings wider than 4096 are not supported by plot");
    float *a = subsample(&A, opt.max, &na), *t = subsample(&T, opt.max, &nt);
    if (opt.tsne && na + nt > TSNE_MAX_POINTS)
        die("--tsne is exact (n^2 memory): at most %d points per panel, here %d; lower --max", TSNE_MAX_POINTS, na + nt);
    /* PCA axes fit on both modalities together, shared by every panel */
    float *both = xmalloc((size_t)(na + nt) * D * sizeof(float));
    memcpy(both, a, (size_t)na * D * sizeof(float));
    memcpy(both + (size_t)na * D, t, (size_t)nt * D * sizeof(float));
    double axes[2 * 4096], var[2], total, *mu = xmalloc((size_t)D * sizeof(double));
    pca2(axes, var, &total, both, na + nt, D);
    mean_rows(mu, both, na + nt, D);
    double *xy[6] = {0};
    plot_panel panels[3];
    int np = 0;
    memset(panels, 0, sizeof panels);
    map_panel(&xy[0], &xy[1], a, na, t, nt, D, axes, mu, "raw embeddings");
    panels[np].title = "CLAP embeddings";
    panels[np].s[0] = (plot_series){xy[0], na, "audio", "#e6550d"};
    panels[np].s[1] = (plot_series){xy[1], nt, "text", "#3182bd"};
    panels[np++].ns = 2;
    char t2[200];
    if (opt.gap || opt.noise > 0) {
        int Dg = D;
        float *gap = opt.gap ? read_gap(opt.gap, &Dg) : NULL;
        if (Dg != D) die("the gap has width %d, the embeddings %d", Dg, D);
        rng_t rng;
        rng_seed(&rng, (uint64_t)opt.seed);
        float *ts = xmalloc((size_t)nt * D * sizeof(float));
        memcpy(ts, t, (size_t)nt * D * sizeof(float));
        for (int i = 0; i < nt; i++) gap_apply(ts + (size_t)i * D, D, gap, sqrt(opt.noise), &rng);
        snprintf(t2, sizeof t2, "text after %s%s%s", opt.gap ? "the shift" : "", opt.gap && opt.noise > 0 ? " + " : "",
                 opt.noise > 0 ? "noise" : "");
        map_panel(&xy[2], &xy[3], a, na, ts, nt, D, axes, mu, "shifted text");
        panels[np].title = t2;
        panels[np].s[0] = (plot_series){xy[2], na, "audio", "#e6550d"};
        panels[np].s[1] = (plot_series){xy[3], nt, "shifted text", "#31a354"};
        panels[np++].ns = 2;
        free(ts);
        free(gap);
    }
    char t3[200];
    if (opt.memory) {
        embset M;
        load_or_die(&M, opt.memory, "memory");
        if (M.dim != D) die("the memory has width %d, the embeddings %d", M.dim, D);
        float *S = xmalloc((size_t)na * M.n * sizeof(float)), *P = xmalloc((size_t)na * D * sizeof(float));
        memproj_scores(S, a, M.x, na, M.n, D);
        int pd = strcmp(opt.method, "nnd") != 0;
        if (pd) memproj_pd(P, S, M.x, na, M.n, D, (float)opt.tau);
        else {
            int *idx = xmalloc((size_t)na * sizeof(int));
            memproj_argmax(idx, S, na, M.n);
            for (int i = 0; i < na; i++) memcpy(P + (size_t)i * D, M.x + (size_t)idx[i] * D, (size_t)D * sizeof(float));
            free(idx);
        }
        snprintf(t3, sizeof t3, "audio projected onto the memory (%s)", pd ? "pd" : "nnd");
        map_panel(&xy[4], &xy[5], t, nt, P, na, D, axes, mu, "projected audio");
        panels[np].title = t3;
        panels[np].s[0] = (plot_series){xy[4], nt, "text", "#3182bd"};
        panels[np].s[1] = (plot_series){xy[5], na, pd ? "projected audio" : "nearest captions", "#756bb1"};
        panels[np++].ns = 2;
        free(S), free(P);
        embset_free(&M);
    }
    char xl[100], yl[100], title[160];
    if (opt.tsne) {
        snprintf(xl, sizeof xl, "t-SNE 1");
        snprintf(yl, sizeof yl, "t-SNE 2");
        snprintf(title, sizeof title, "Audio and text embeddings (t-SNE of each panel, perplexity %g)", opt.perplexity);
    } else {
        snprintf(xl, sizeof xl, "PC1 (%.1f%% of variance)", 100 * var[0] / total);
        snprintf(yl, sizeof yl, "PC2 (%.1f%% of variance)", 100 * var[1] / total);
        snprintf(title, sizeof title, "Audio and text embeddings (PCA, axes fit on audio + text)");
    }
    if (plot_svg(opt.out, title, xl, yl, panels, np)) die("writing %s: %m", opt.out);
    if (opt.coords) write_coords(opt.coords, panels, np);
    if (!tool_quiet) infox("wrote %s: %d panel%s, %d audio and %d text points", opt.out, np, np > 1 ? "s" : "", na, nt);
    free(a), free(t), free(both), free(mu);
    for (int i = 0; i < 6; i++) free(xy[i]);
    embset_free(&A);
    embset_free(&T);
    return EXIT_OK;
}

int main(int argc, char **argv) {
    tool_init("gapshift");
    enum { O_TAU = 256, O_MAX, O_JSON, O_TSNE, O_PERP, O_ITERS, O_COORDS };
    static const struct option longopts[] = {
        {"audio", required_argument, 0, 'a'},  {"text", required_argument, 0, 't'},
        {"gap", required_argument, 0, 'g'},    {"noise", required_argument, 0, 'n'},
        {"seed", required_argument, 0, 's'},   {"memory", required_argument, 0, 'M'},
        {"method", required_argument, 0, 'm'}, {"tau", required_argument, 0, O_TAU},
        {"max", required_argument, 0, O_MAX},  {"output", required_argument, 0, 'o'},
        {"json", required_argument, 0, O_JSON}, {"quiet", no_argument, 0, 'q'},
        {"tsne", no_argument, 0, O_TSNE},      {"perplexity", required_argument, 0, O_PERP},
        {"iters", required_argument, 0, O_ITERS}, {"coords", required_argument, 0, O_COORDS},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0}};
    if (argc > 1 && (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help"))) {
        fputs(usage, stdout);
        return EXIT_OK;
    }
    if (argc < 2 || argv[1][0] == '-') {
        if (argc >= 2) {
            optind = 1;
            int c0 = getopt_long(argc, argv, ":h", longopts, NULL);
            if (c0 == '?' || c0 == ':') die_bad_option(c0, argv);
        }
        die_usage("give a command: estimate, apply, sigma or plot");
    }
    const char *cmd = argv[1];
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, ":a:t:g:n:s:M:m:o:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': opt.audio = optarg; break;
        case 't': opt.text = optarg; break;
        case 'g': opt.gap = optarg; break;
        case 'n': opt.noise = parse_double("--noise", optarg, 0, 100); break;
        case 's': opt.seed = parse_long("--seed", optarg, 0, 0x7fffffffL); break;
        case 'M': opt.memory = optarg; break;
        case 'm': opt.method = optarg; break;
        case O_TAU: opt.tau = parse_double("--tau", optarg, 1e-6, 1e6); break;
        case O_MAX: opt.max = (int)parse_long("--max", optarg, 1, 1000000); break;
        case 'o': opt.out = optarg; break;
        case O_JSON: opt.json = optarg; break;
        case O_TSNE: opt.tsne = 1; break;
        case O_PERP: opt.perplexity = parse_double("--perplexity", optarg, 1, 1000); break;
        case O_ITERS: opt.iters = (int)parse_long("--iters", optarg, 1, 100000); break;
        case O_COORDS: opt.coords = optarg; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (strcmp(opt.method, "nnd") && strcmp(opt.method, "pd")) die_usage("--method must be nnd or pd");
    const char *input = optind < argc ? argv[optind] : NULL;
    if (argc - optind > 1) die_usage("at most one input stream");
    nn_set_threads(0);
    if (!strcmp(cmd, "estimate")) return cmd_estimate();
    if (!strcmp(cmd, "apply")) return cmd_apply(input);
    if (!strcmp(cmd, "sigma")) return cmd_sigma(input);
    if (!strcmp(cmd, "plot")) return cmd_plot();
    die_usage("unknown command '%s': estimate, apply, sigma or plot", cmd);
}
