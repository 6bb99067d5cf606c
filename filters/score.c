/* score - captioning metrics (pycocoevalcap, natively) and retrieval metrics. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "embset.h"
#include "events.h"
#include "jsonout.h"
#include "lines.h"
#include "metrics.h"
#include "ptb.h"
#include "refs.h"
#include "relevance.h"
#include "util.h"

static const char usage[] =
    "Usage: score caption --refs FILE [OPTIONS] [CANDIDATES]\n"
    "       score retrieval --audio A.mp --text T.mp [--map FILE | --relevance FILE] [OPTIONS]\n"
    "       score events --events SPLIT_events.jsonl [--classes FILE] [OPTIONS] [CANDIDATES]\n"
    "       score tokenize [--raw] [FILE]\n"
    "\n"
    "score caption: read candidate captions, lines KEY<TAB>CAPTION (from the file\n"
    "CANDIDATES or stdin), and score them against the references as the DCASE /\n"
    "pycocoevalcap evaluation does: PTB tokenization (Stanford CoreNLP 3.4.1 rules,\n"
    "lowercased, punctuation dropped), BLEU-1..4, ROUGE-L, CIDEr-D, and METEOR,\n"
    "SPICE and SPIDEr when their jars are given. JSON on stdout.\n"
    "  -r, --refs FILE       references: Clotho CSV (file_name,caption_1..N), AudioCaps\n"
    "                        CSV (grouped by youtube_id) or JSON {\"KEY\": [\"ref\", ...]}\n"
    "  -p, --per-item        add each item's scores and tokenized strings\n"
    "  -f, --format FMT      json (default) or table\n"
    "      --meteor-jar JAR  run METEOR 1.5 (meteor-1.5.jar, with its data/ beside it)\n"
    "      --spice-jar JAR   run SPICE 1.0 (spice-1.0.jar, with its lib/ beside it);\n"
    "                        SPIDEr = (CIDEr-D + SPICE) / 2\n"
    "      --spice-cache DIR keep SPICE's parse cache in DIR (default: a temporary one)\n"
    "      --java PATH       the java executable (default: java from PATH)\n"
    "\n"
    "score retrieval: text-to-audio and audio-to-text retrieval from two embedding\n"
    "streams (cosine similarity). A caption FILE#i belongs to audio FILE.\n"
    "  -a, --audio FILE      audio embedding stream (keys: audio ids)\n"
    "  -t, --text FILE       caption embedding stream\n"
    "  -m, --map FILE        lines CAPTION_KEY<TAB>AUDIO_KEY instead of the FILE#i rule\n"
    "  -R, --relevance FILE  text-to-audio only, several relevant audios per query:\n"
    "                        CSV query,audio_filenames (DCASE 2025 metadata_eval.csv;\n"
    "                        a query is a caption (\"text\") or key, audios are keys);\n"
    "                        R@1/5/10, mAP@10, mAP@16\n"
    "      --ap-divisor D    relevance AP@K divides by R (default: the DCASE 2025\n"
    "                        baseline) or min (min(R, K))\n"
    "  -f, --format FMT      json (default) or table\n"
    "\n"
    "score events: event recall in the sound world (scripts/world.py). Reads candidate\n"
    "captions KEY<TAB>CAPTION and each scene's sounds (its background and events) from\n"
    "SPLIT_events.jsonl (KEY = the scene's file_name). A class is named when a token of\n"
    "the caption is one of its words (classes.tsv); tokens as the world's checker makes\n"
    "them: lower case, ',' and '.' as spaces, split at white space. Reports the share of\n"
    "the scenes' sounds named (micro; events, background, per class) and false mentions:\n"
    "classes named that the scene does not hold. JSON on stdout.\n"
    "  -e, --events FILE     the scenes' sounds: world.py's SPLIT_events.jsonl\n"
    "  -c, --classes FILE    class words: class<TAB>role<TAB>word,word,... (default:\n"
    "                        classes.tsv beside the events file, as world.py writes it)\n"
    "  -p, --per-item        add each item's classes: present, named, missed, false\n"
    "  -f, --format FMT      json (default) or table\n"
    "\n"
    "score tokenize: print each input line (a caption) as score caption tokenizes\n"
    "it, all lines in one tokenizer run as pycocoevalcap does.\n"
    "      --raw             the PTBTokenizer output before punctuation is removed\n"
    "\n"
    "  -q, --quiet           no summary on stderr (problems are still named)\n"
    "  -h, --help            show this help\n"
    "\n"
    "Exit status: 0 all scored, 1 usage error, 2 fatal (unreadable input),\n"
    "3 some keys were missing or some input rows malformed (each named on stderr\n"
    "and in the JSON; the scores cover the rest) or a requested Java metric failed.\n";

/* at most this many names of a list on stderr; the JSON has them all */
#define LIST_MAX 20

static void name_keys(const char *one, const char *more, char **keys, int n) {
    if (!n) return;
    int shown = n < LIST_MAX ? n : LIST_MAX;
    for (int i = 0; i < shown; i++) warnx_("%s: %s", keys[i], one);
    if (n > shown) warnx_("... and %d more %s (all listed in the output)", n - shown, more);
}

static void json_key(FILE *f, const char *k) {
    json_write_string(f, k, strlen(k));
    fputs(": ", f);
}

static void json_str(FILE *f, const char *s) { json_write_string(f, s, strlen(s)); }

static void json_list(FILE *f, char **keys, int n) {
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", f);
        json_str(f, keys[i]);
    }
    fputc(']', f);
}

static int parse_format(const char *s) {
    if (!strcmp(s, "json")) return 0;
    if (!strcmp(s, "table")) return 1;
    die_usage("option --format: '%s' is not json or table", s);
}

static void check_jar(const char *opt, const char *path) {
    struct stat sb;
    if (stat(path, &sb) || !S_ISREG(sb.st_mode) || access(path, R_OK))
        die_usage("option %s: %s is not a readable file", opt, path);
}

/* ------------------------------------------------------------ caption */

enum { M_B1, M_B2, M_B3, M_B4, M_ROUGE, M_CIDER, M_METEOR, M_SPICE, M_SPIDER, NM };
static const char *const mname[NM] = {"bleu_1", "bleu_2", "bleu_3", "bleu_4", "rouge_l",
                                      "cider",  "meteor", "spice",  "spider"};

static int cmd_caption(int argc, char **argv) {
    enum { O_METEOR = 256, O_SPICE, O_JAVA, O_CACHE };
    static const struct option longopts[] = {
        {"refs", required_argument, 0, 'r'},     {"per-item", no_argument, 0, 'p'},
        {"format", required_argument, 0, 'f'},   {"meteor-jar", required_argument, 0, O_METEOR},
        {"spice-jar", required_argument, 0, O_SPICE}, {"spice-cache", required_argument, 0, O_CACHE},
        {"java", required_argument, 0, O_JAVA},  {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    const char *refs_path = NULL, *meteor_jar = NULL, *spice_jar = NULL, *java = "java", *cache = NULL;
    int per_item = 0, table = 0, c;
    while ((c = getopt_long(argc, argv, ":r:pf:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': refs_path = optarg; break;
        case 'p': per_item = 1; break;
        case 'f': table = parse_format(optarg); break;
        case O_METEOR: meteor_jar = optarg; break;
        case O_SPICE: spice_jar = optarg; break;
        case O_CACHE: cache = optarg; break;
        case O_JAVA: java = optarg; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (!refs_path) die_usage("caption needs --refs FILE");
    if (argc - optind > 1) die_usage("at most one candidates file");
    if (meteor_jar) check_jar("--meteor-jar", meteor_jar);
    if (spice_jar) check_jar("--spice-jar", spice_jar);
    if (cache && !spice_jar) die_usage("--spice-cache needs --spice-jar");
    if (!*java) die_usage("option --java: empty path");

    char err[1024];
    cap_set refs, cands;
    if (refs_load(&refs, refs_path, err, sizeof err)) die("%s", err);
    const char *cpath = argc > optind ? argv[optind] : "-";
    int fd = strcmp(cpath, "-") ? open(cpath, O_RDONLY) : 0;
    if (fd < 0) die("cannot open %s: %s", cpath, strerror(errno));
    if (fd == 0 && isatty(0)) warnx_("reading candidates (KEY<TAB>CAPTION) from the terminal (see --help)");
    if (cands_load(&cands, fd, fd ? cpath : "stdin", err, sizeof err)) die("%s", err);
    if (fd) close(fd);

    /* items: references in file order that have a candidate */
    int n = 0, nmc = 0, nmr = 0;
    int *ci = xmalloc(((size_t)refs.n + 1) * sizeof(int)), *ri = xmalloc(((size_t)refs.n + 1) * sizeof(int));
    char **miss_c = xmalloc(((size_t)refs.n + 1) * sizeof(char *)), **miss_r = xmalloc(((size_t)cands.n + 1) * sizeof(char *));
    for (int i = 0; i < refs.n; i++) {
        int j = capset_find(&cands, refs.e[i].key);
        if (j < 0) miss_c[nmc++] = refs.e[i].key;
        else ci[n] = j, ri[n] = i, n++;
    }
    for (int j = 0; j < cands.n; j++)
        if (capset_find(&refs, cands.e[j].key) < 0) miss_r[nmr++] = cands.e[j].key;
    name_keys("references without a candidate", "references without a candidate", miss_c, nmc);
    name_keys("candidate without references", "candidates without references", miss_r, nmr);
    if (n == 0)
        die("no item has both a candidate and references (%d candidates, %d reference items)", cands.n, refs.n);

    /* tokenize as pycocoevalcap does: all references in one PTBTokenizer
     * run, all candidates in another, in item order */
    size_t nref = 0;
    for (int k = 0; k < n; k++) nref += (size_t)refs.e[ri[k]].ncaps;
    const char **raw = xmalloc((nref > (size_t)n ? nref : (size_t)n) * sizeof(char *));
    char **tref = xmalloc(nref * sizeof(char *)), **tcand = xmalloc((size_t)n * sizeof(char *));
    size_t m = 0;
    for (int k = 0; k < n; k++)
        for (int j = 0; j < refs.e[ri[k]].ncaps; j++) raw[m++] = refs.e[ri[k]].caps[j];
    ptb_tokenize_lines(raw, nref, tref, PTB_PYCOCO);
    for (int k = 0; k < n; k++) raw[k] = cands.e[ci[k]].caps[0];
    ptb_tokenize_lines(raw, (size_t)n, tcand, PTB_PYCOCO);
    free(raw);

    cm_item *items = xmalloc((size_t)n * sizeof(cm_item));
    const char **keys = xmalloc((size_t)n * sizeof(char *));
    m = 0;
    for (int k = 0; k < n; k++) {
        items[k].cand = tcand[k];
        items[k].refs = (const char *const *)(tref + m);
        items[k].nrefs = refs.e[ri[k]].ncaps;
        m += (size_t)items[k].nrefs;
        keys[k] = refs.e[ri[k]].key;
    }
    cm_scores s;
    cm_compute(items, (size_t)n, &s);

    /* per metric: corpus value, per-item values, or why it is missing */
    double corpus[NM];
    double *per[NM];
    const char *why[NM] = {0};
    char why_meteor[1200], why_spice[1200];
    for (int k = 0; k < 4; k++) corpus[k] = s.bleu[k];
    corpus[M_ROUGE] = s.rouge_l;
    corpus[M_CIDER] = s.cider_d;
    for (int k = 0; k < NM; k++) per[k] = xcalloc((size_t)n, sizeof(double));
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 4; k++) per[k][i] = s.bleu_item[4 * i + k];
        per[M_ROUGE][i] = s.rouge_item[i];
        per[M_CIDER][i] = s.cider_item[i];
    }
    int java_failed = 0;
    if (!meteor_jar) why[M_METEOR] = "no --meteor-jar given";
    else if (meteor_run(java, meteor_jar, keys, items, (size_t)n, per[M_METEOR], &corpus[M_METEOR], err, sizeof err)) {
        snprintf(why_meteor, sizeof why_meteor, "%s", err);
        why[M_METEOR] = why_meteor;
        warnx_("meteor not computed: %s", err);
        java_failed = 1;
    }
    if (!spice_jar) why[M_SPICE] = "no --spice-jar given";
    else if (spice_run(java, spice_jar, cache, keys, items, (size_t)n, per[M_SPICE], &corpus[M_SPICE], err, sizeof err)) {
        snprintf(why_spice, sizeof why_spice, "%s", err);
        why[M_SPICE] = why_spice;
        warnx_("spice not computed: %s", err);
        java_failed = 1;
    }
    if (why[M_SPICE]) why[M_SPIDER] = "needs SPICE";
    else {
        /* DCASE eval.py: SPIDEr = (CIDEr + SPICE) / 2, corpus and per item */
        corpus[M_SPIDER] = (corpus[M_CIDER] + corpus[M_SPICE]) / 2;
        for (int i = 0; i < n; i++) per[M_SPIDER][i] = (per[M_CIDER][i] + per[M_SPICE][i]) / 2;
    }
    for (int k = M_METEOR; k <= M_SPIDER; k++) /* a failure was already named */
        if (why[k] && !(k == M_METEOR && meteor_jar) && !(k == M_SPICE && spice_jar)) infox("%s not computed: %s", mname[k], why[k]);

    FILE *o = stdout;
    if (!table) {
        fputs("{\n", o);
        for (int k = 0; k < NM; k++) {
            if (why[k]) continue;
            fputs("  ", o);
            json_key(o, mname[k]);
            json_write_number(o, corpus[k], 0);
            fputs(",\n", o);
        }
        int any = 0;
        for (int k = 0; k < NM; k++) any |= why[k] != NULL;
        if (any) {
            fputs("  \"not_computed\": {", o);
            for (int k = 0, first = 1; k < NM; k++) {
                if (!why[k]) continue;
                if (!first) fputs(", ", o);
                first = 0;
                json_key(o, mname[k]);
                json_str(o, why[k]);
            }
            fputs("},\n", o);
        }
        fprintf(o, "  \"items\": %d,\n  \"references\": %zu,\n", n, nref);
        fputs("  \"missing_candidates\": ", o);
        json_list(o, miss_c, nmc);
        fputs(",\n  \"missing_references\": ", o);
        json_list(o, miss_r, nmr);
        fprintf(o, ",\n  \"malformed_reference_rows\": %ld,\n  \"malformed_candidate_lines\": %ld,\n", refs.bad, cands.bad);
        fputs("  \"references_format\": ", o);
        json_str(o, refs.format);
        fputs(",\n  \"tokenizer\": \"PTB: Stanford CoreNLP 3.4.1 PTBTokenizer -preserveLines -lowerCase rules, "
              "pycocoevalcap punctuation removed\"", o);
        if (per_item) {
            fputs(",\n  \"per_item\": {", o);
            for (int i = 0; i < n; i++) {
                fputs(i ? ",\n    " : "\n    ", o);
                json_key(o, keys[i]);
                fputs("{\"candidate_tokenized\": ", o);
                json_str(o, items[i].cand);
                fputs(", \"references_tokenized\": [", o);
                for (int j = 0; j < items[i].nrefs; j++) {
                    if (j) fputs(", ", o);
                    json_str(o, items[i].refs[j]);
                }
                fputc(']', o);
                for (int k = 0; k < NM; k++) {
                    if (why[k]) continue;
                    fputs(", ", o);
                    json_key(o, mname[k]);
                    json_write_number(o, per[k][i], 0);
                }
                fputc('}', o);
            }
            fputs("\n  }", o);
        }
        fputs("\n}\n", o);
    } else if (!per_item) {
        for (int k = 0; k < NM; k++) {
            if (why[k]) fprintf(o, "%-8s not computed: %s\n", mname[k], why[k]);
            else fprintf(o, "%-8s %.6f\n", mname[k], corpus[k]);
        }
        fprintf(o, "%-8s %d (%zu references)\n", "items", n, nref);
        fprintf(o, "%-8s %d missing candidates, %d missing references\n", "missing", nmc, nmr);
    } else {
        fputs("key", o);
        for (int k = 0; k < NM; k++)
            if (!why[k]) fprintf(o, "\t%s", mname[k]);
        fputs("\tcandidate_tokenized\n", o);
        for (int i = 0; i < n; i++) {
            fputs(keys[i], o);
            for (int k = 0; k < NM; k++)
                if (!why[k]) fprintf(o, "\t%.6f", per[k][i]);
            fprintf(o, "\t%s\n", items[i].cand);
        }
        fputs("corpus", o);
        for (int k = 0; k < NM; k++)
            if (!why[k]) fprintf(o, "\t%.6f", corpus[k]);
        fputs("\t\n", o);
    }
    close_stdout_or_die();
    long failed = nmc + nmr + refs.bad + cands.bad;
    if (!tool_quiet || failed || java_failed)
        fprintf(stderr,
                "score: %d items scored (%zu references); %d references without candidate, %d candidates without "
                "references, %ld malformed rows or lines%s\n",
                n, nref, nmc, nmr, refs.bad + cands.bad, java_failed ? "; a Java metric failed" : "");

    for (int k = 0; k < NM; k++) free(per[k]);
    cm_free(&s);
    for (size_t k = 0; k < nref; k++) free(tref[k]);
    for (int k = 0; k < n; k++) free(tcand[k]);
    free(tref);
    free(tcand);
    free(items);
    free(keys);
    free(ci);
    free(ri);
    free(miss_c);
    free(miss_r);
    capset_free(&refs);
    capset_free(&cands);
    return failed || java_failed ? EXIT_PARTIAL : EXIT_OK;
}

/* ------------------------------------------------------------ retrieval */

typedef struct {
    int *tab, tcap;
    char **keys;
} keyidx;

static void keyidx_build(keyidx *k, char **keys, int n) {
    k->tcap = 16;
    while (k->tcap < 2 * n + 2) k->tcap *= 2;
    k->tab = xcalloc((size_t)k->tcap, sizeof(int));
    k->keys = keys;
    for (int i = 0; i < n; i++) {
        uint64_t h = str_hash(keys[i]) & (uint64_t)(k->tcap - 1);
        while (k->tab[h]) h = (h + 1) & (uint64_t)(k->tcap - 1);
        k->tab[h] = i + 1;
    }
}

static int keyidx_find(const keyidx *k, const char *key) {
    for (uint64_t h = str_hash(key) & (uint64_t)(k->tcap - 1);; h = (h + 1) & (uint64_t)(k->tcap - 1)) {
        int v = k->tab[h];
        if (!v) return -1;
        if (!strcmp(k->keys[v - 1], key)) return v - 1;
    }
}

/* drop rows whose key came before (named); returns the new count */
static int dedup(embset *e, const char *what, long *failed) {
    keyidx k = {0};
    int m = 0;
    k.keys = e->keys; /* the table holds compacted positions */
    k.tcap = 16;
    while (k.tcap < 2 * e->n + 2) k.tcap *= 2;
    k.tab = xcalloc((size_t)k.tcap, sizeof(int));
    for (int i = 0; i < e->n; i++) {
        if (keyidx_find(&k, e->keys[i]) >= 0) {
            warnx_("%s: key '%s': duplicate key: skipped", what, e->keys[i]);
            (*failed)++;
            free(e->keys[i]);
            free(e->texts[i]);
            continue;
        }
        if (m != i) {
            e->keys[m] = e->keys[i];
            e->texts[m] = e->texts[i];
            memmove(e->x + (size_t)m * e->dim, e->x + (size_t)i * e->dim, (size_t)e->dim * sizeof(float));
        }
        uint64_t h = str_hash(e->keys[m]) & (uint64_t)(k.tcap - 1);
        while (k.tab[h]) h = (h + 1) & (uint64_t)(k.tcap - 1);
        k.tab[h] = m + 1;
        m++;
    }
    free(k.tab);
    e->n = m;
    return m;
}

static void write_rt(FILE *o, const char *name, const rt_scores *r, int last) {
    fprintf(o, "  \"%s\": {\"queries\": %ld, \"R@1\": ", name, r->queries);
    json_write_number(o, r->r1, 0);
    fputs(", \"R@5\": ", o);
    json_write_number(o, r->r5, 0);
    fputs(", \"R@10\": ", o);
    json_write_number(o, r->r10, 0);
    fputs(", \"mAP@10\": ", o);
    json_write_number(o, r->map10, 0);
    fputs(", \"median_rank\": ", o);
    json_write_number(o, r->median_rank, 0);
    fputs(", \"mean_rank\": ", o);
    json_write_number(o, r->mean_rank, 0);
    fputs(last ? "}\n" : "},\n", o);
}

static int cmd_retrieval(int argc, char **argv) {
    static const struct option longopts[] = {{"audio", required_argument, 0, 'a'}, {"text", required_argument, 0, 't'},
                                              {"map", required_argument, 0, 'm'},   {"format", required_argument, 0, 'f'},
                                              {"relevance", required_argument, 0, 'R'}, {"ap-divisor", required_argument, 0, 'D'},
                                              {"quiet", no_argument, 0, 'q'},       {"help", no_argument, 0, 'h'},
                                              {0, 0, 0, 0}};
    const char *apath = NULL, *tpath = NULL, *mpath = NULL, *rpath = NULL;
    int table = 0, c, dmin = 0;
    while ((c = getopt_long(argc, argv, ":a:t:m:f:R:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'a': apath = optarg; break;
        case 't': tpath = optarg; break;
        case 'm': mpath = optarg; break;
        case 'R': rpath = optarg; break;
        case 'D':
            if (strcmp(optarg, "R") && strcmp(optarg, "min")) die_usage("option --ap-divisor: '%s' is not R or min", optarg);
            dmin = !strcmp(optarg, "min");
            break;
        case 'f': table = parse_format(optarg); break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (!apath || !tpath) die_usage("retrieval needs --audio FILE and --text FILE");
    if (mpath && rpath) die_usage("--map and --relevance exclude each other");
    if (optind < argc) die_usage("unexpected argument '%s'", argv[optind]);
    if (!strcmp(apath, "-") && !strcmp(tpath, "-")) die_usage("only one stream can be stdin");

    char err[1024];
    embset A, T;
    long failed = 0;
    /* rows are L2-normalised on reading (F.normalize): dot products are cosines */
    if (embset_load(&A, apath, 1, err, sizeof err)) die("%s", err);
    if (embset_load(&T, tpath, 1, err, sizeof err)) die("%s", err);
    failed += A.skipped + T.skipped;
    dedup(&A, apath, &failed);
    dedup(&T, tpath, &failed);
    if (A.n == 0) die("%s: no usable audio embedding", apath);
    if (T.n == 0) die("%s: no usable caption embedding", tpath);
    if (A.dim != T.dim) die("audio embeddings have width %d, caption embeddings %d", A.dim, T.dim);
    if (rpath) { /* multi-positive text-to-audio (lib/relevance.c) */
        int p = rel_score(T.x, T.n, T.keys, T.texts, A.x, A.n, A.keys, A.dim, rpath, dmin, table, stdout, err, sizeof err);
        if (p < 0) die("%s", err);
        close_stdout_or_die();
        failed += p;
        if (!tool_quiet || failed) fprintf(stderr, "score: relevance %s: %ld problems\n", rpath, failed);
        embset_free(&A);
        embset_free(&T);
        return failed ? EXIT_PARTIAL : EXIT_OK;
    }

    /* the audio of each caption */
    keyidx ak;
    keyidx_build(&ak, A.keys, A.n);
    int *ta = xmalloc((size_t)T.n * sizeof(int));
    char **amap = NULL;
    keyidx mk = {0};
    int nmap = 0;
    if (mpath) {
        int fd = strcmp(mpath, "-") ? open(mpath, O_RDONLY) : 0;
        if (fd < 0) die("cannot open %s: %s", mpath, strerror(errno));
        line_reader lr;
        lr_init(&lr, fd, 1 << 20);
        char **mkeys = NULL;
        int cap = 0, r;
        char *line;
        size_t len;
        while ((r = lr_next(&lr, &line, &len)) != LR_EOF) {
            if (r == LR_ERROR) die("reading %s: %s", mpath, strerror(errno));
            char *tab = r == LR_LINE ? memchr(line, '\t', len) : NULL;
            if (r == LR_LINE && len == 0) continue;
            if (!tab || tab == line || !tab[1]) {
                warnx_("%s: line %ld: want CAPTION_KEY<TAB>AUDIO_KEY: skipped", mpath, lr.lineno);
                failed++;
                continue;
            }
            *tab = 0;
            if (nmap == cap) {
                cap = cap ? 2 * cap : 1024;
                mkeys = xrealloc(mkeys, (size_t)cap * sizeof(char *));
                amap = xrealloc(amap, (size_t)cap * sizeof(char *));
            }
            mkeys[nmap] = xstrdup(line);
            amap[nmap++] = xstrdup(tab + 1);
        }
        lr_free(&lr);
        if (fd) close(fd);
        keyidx_build(&mk, mkeys, nmap);
    }
    char **no_audio = xmalloc(((size_t)T.n + 1) * sizeof(char *));
    int nno = 0;
    for (int t = 0; t < T.n; t++) {
        char buf[4096];
        const char *ak_key;
        if (mpath) {
            int i = keyidx_find(&mk, T.keys[t]);
            ak_key = i >= 0 ? amap[i] : NULL;
        } else ak_key = group_key(T.keys[t], buf, sizeof buf);
        ta[t] = ak_key ? keyidx_find(&ak, ak_key) : -1;
        if (ta[t] < 0) {
            no_audio[nno++] = T.keys[t];
            if (nno <= LIST_MAX)
                warnx_("%s: %s: left out", T.keys[t],
                       !ak_key ? "not in the --map file" : "its audio is not in the audio stream");
        }
    }
    if (nno > LIST_MAX) warnx_("... and %d more captions without audio (all listed in the output)", nno - LIST_MAX);
    failed += nno;
    int *has = xcalloc((size_t)A.n, sizeof(int));
    for (int t = 0; t < T.n; t++)
        if (ta[t] >= 0) has[ta[t]] = 1;
    char **no_caps = xmalloc(((size_t)A.n + 1) * sizeof(char *));
    int nnc = 0;
    for (int a = 0; a < A.n; a++)
        if (!has[a]) no_caps[nnc++] = A.keys[a];
    if (nnc && !tool_quiet)
        warnx_("%d audio items have no caption: distractors for text-to-audio, no audio-to-text query", nnc);

    rt_scores t2a, a2t;
    rt_evaluate(T.x, T.n, A.x, A.n, A.dim, ta, &t2a, &a2t, NULL, NULL);

    FILE *o = stdout;
    if (!table) {
        fputs("{\n", o);
        write_rt(o, "t2a", &t2a, 0);
        write_rt(o, "a2t", &a2t, 0);
        fprintf(o, "  \"audio\": %d,\n  \"captions\": %d,\n  \"dim\": %d,\n", A.n, T.n, A.dim);
        fputs("  \"captions_without_audio\": ", o);
        json_list(o, no_audio, nno);
        fputs(",\n  \"audio_without_captions\": ", o);
        json_list(o, no_caps, nnc);
        fprintf(o, ",\n  \"skipped_records\": %ld,\n", failed - nno);
        fputs("  \"similarity\": \"cosine: dot products of L2-normalised rows, float32 (cblas_sgemm)\",\n", o);
        fputs("  \"ties\": \"an item with the same similarity ranks after the items that come before it in its "
              "stream\",\n", o);
        fputs("  \"a2t_map\": \"AP@10 = (1/R) * sum over relevant captions ranked j-th among them at rank r_j <= "
              "10 of j / r_j; R = the audio's number of captions\"\n}\n", o);
    } else {
        fprintf(o, "%-5s %8s %8s %8s %8s %8s %10s %10s\n", "task", "queries", "R@1", "R@5", "R@10", "mAP@10",
                "med.rank", "mean.rank");
        const rt_scores *rs[2] = {&t2a, &a2t};
        const char *nm[2] = {"t2a", "a2t"};
        for (int i = 0; i < 2; i++)
            fprintf(o, "%-5s %8ld %7.2f%% %7.2f%% %7.2f%% %7.2f%% %10.1f %10.2f\n", nm[i], rs[i]->queries,
                    100 * rs[i]->r1, 100 * rs[i]->r5, 100 * rs[i]->r10, 100 * rs[i]->map10, rs[i]->median_rank,
                    rs[i]->mean_rank);
    }
    close_stdout_or_die();
    if (!tool_quiet || failed)
        fprintf(stderr, "score: %ld text-to-audio queries, %ld audio-to-text queries; %d captions without audio, "
                        "%ld records skipped\n",
                t2a.queries, a2t.queries, nno, failed - nno);
    free(ta);
    free(has);
    free(no_audio);
    free(no_caps);
    free(ak.tab);
    if (mpath) {
        for (int i = 0; i < nmap; i++) {
            free(mk.keys[i]);
            free(amap[i]);
        }
        free(mk.keys);
        free(mk.tab);
        free(amap);
    }
    embset_free(&A);
    embset_free(&T);
    return failed ? EXIT_PARTIAL : EXIT_OK;
}

/* ------------------------------------------------------------ events */

static double ratio(long a, long b) { return b ? (double)a / (double)b : 0.0; }

static void json_ratio(FILE *o, const char *key, long a, long b) {
    json_key(o, key);
    if (b) json_write_number(o, ratio(a, b), 0);
    else fputs("null", o);
}

static void json_class_list(FILE *o, const ev_classes *C, const int *cls, int n) {
    fputc('[', o);
    for (int i = 0; i < n; i++) {
        if (i) fputs(", ", o);
        json_str(o, C->name[cls[i]]);
    }
    fputc(']', o);
}

static int cmd_events(int argc, char **argv) {
    static const struct option longopts[] = {
        {"events", required_argument, 0, 'e'}, {"classes", required_argument, 0, 'c'},
        {"per-item", no_argument, 0, 'p'},     {"format", required_argument, 0, 'f'},
        {"quiet", no_argument, 0, 'q'},        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *ev_path = NULL, *cls_path = NULL;
    int per_item = 0, table = 0, c;
    while ((c = getopt_long(argc, argv, ":e:c:pf:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'e': ev_path = optarg; break;
        case 'c': cls_path = optarg; break;
        case 'p': per_item = 1; break;
        case 'f': table = parse_format(optarg); break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (!ev_path) die_usage("events needs --events FILE (world.py's SPLIT_events.jsonl)");
    if (argc - optind > 1) die_usage("at most one candidates file");
    char *cls_default = NULL;
    if (!cls_path) {
        const char *slash = strrchr(ev_path, '/');
        size_t dl = slash ? (size_t)(slash - ev_path + 1) : 0;
        cls_default = xmalloc(dl + sizeof "classes.tsv");
        memcpy(cls_default, ev_path, dl);
        memcpy(cls_default + dl, "classes.tsv", sizeof "classes.tsv");
        cls_path = cls_default;
    }

    char err[1024];
    ev_classes C;
    ev_scenes S;
    cap_set cands;
    if (ev_classes_load(&C, cls_path, err, sizeof err)) die("%s", err);
    if (ev_scenes_load(&S, &C, ev_path, err, sizeof err)) die("%s", err);
    const char *cpath = argc > optind ? argv[optind] : "-";
    int fd = strcmp(cpath, "-") ? open(cpath, O_RDONLY) : 0;
    if (fd < 0) die("cannot open %s: %s", cpath, strerror(errno));
    if (fd == 0 && isatty(0)) warnx_("reading candidates (KEY<TAB>CAPTION) from the terminal (see --help)");
    if (cands_load(&cands, fd, fd ? cpath : "stdin", err, sizeof err)) die("%s", err);
    if (fd) close(fd);

    /* items: scenes in file order that have a candidate */
    int n = 0, nmc = 0, nms = 0;
    int *ci = xmalloc(((size_t)S.n + 1) * sizeof(int)), *si = xmalloc(((size_t)S.n + 1) * sizeof(int));
    char **miss_c = xmalloc(((size_t)S.n + 1) * sizeof(char *)), **miss_s = xmalloc(((size_t)cands.n + 1) * sizeof(char *));
    for (int i = 0; i < S.n; i++) {
        int j = capset_find(&cands, S.s[i].key);
        if (j < 0) miss_c[nmc++] = S.s[i].key;
        else ci[n] = j, si[n] = i, n++;
    }
    for (int j = 0; j < cands.n; j++)
        if (ev_scene_find(&S, cands.e[j].key) < 0) miss_s[nms++] = cands.e[j].key;
    name_keys("scene without a candidate", "scenes without a candidate", miss_c, nmc);
    name_keys("candidate without a scene", "candidates without a scene", miss_s, nms);
    if (n == 0) die("no item has both a candidate and a scene (%d candidates, %d scenes)", cands.n, S.n);

    /* counts: [0] all sounds, [1] events, [2] background */
    long present[3] = {0}, hit[3] = {0}, named_total = 0, false_total = 0, cap_false = 0, all_named = 0;
    long *cp = xcalloc((size_t)C.n, sizeof(long)), *ch = xcalloc((size_t)C.n, sizeof(long)),
         *cf = xcalloc((size_t)C.n, sizeof(long));
    unsigned char *named = xmalloc((size_t)C.n), *inscene = xmalloc((size_t)C.n);
    /* per item: classes present then false ones; named flags */
    int **it_cls = per_item ? xcalloc((size_t)n, sizeof(int *)) : NULL;
    unsigned char **it_named = per_item ? xcalloc((size_t)n, sizeof(unsigned char *)) : NULL;
    int *it_np = per_item ? xcalloc((size_t)n, sizeof(int)) : NULL, *it_nf = per_item ? xcalloc((size_t)n, sizeof(int)) : NULL;
    for (int k = 0; k < n; k++) {
        const ev_scene *sc = &S.s[si[k]];
        memset(named, 0, (size_t)C.n);
        memset(inscene, 0, (size_t)C.n);
        int nn = ev_named(&C, cands.e[ci[k]].caps[0], named), nh = 0;
        named_total += nn;
        for (int i = 0; i < sc->n; i++) {
            int cl = sc->cls[i], h = named[cl];
            inscene[cl] = 1;
            present[0]++, hit[0] += h, nh += h;
            if (sc->role[i] & EV_FG) present[1]++, hit[1] += h;
            if (sc->role[i] & EV_BG) present[2]++, hit[2] += h;
            cp[cl]++, ch[cl] += h;
        }
        int nf = nn - nh;
        false_total += nf;
        cap_false += nf > 0;
        all_named += nh == sc->n;
        if (per_item) {
            it_cls[k] = xmalloc(((size_t)sc->n + (size_t)nf + 1) * sizeof(int));
            it_named[k] = xmalloc((size_t)sc->n + 1);
            for (int i = 0; i < sc->n; i++) it_cls[k][i] = sc->cls[i], it_named[k][i] = named[sc->cls[i]];
            it_np[k] = sc->n;
        }
        for (int cl = 0, f = 0; cl < C.n; cl++)
            if (named[cl] && !inscene[cl]) {
                cf[cl]++;
                if (per_item) it_cls[k][sc->n + f++] = cl, it_nf[k] = f;
            }
    }
    /* macro recall: mean over the classes heard at least once */
    double macro = 0;
    int nheard = 0;
    for (int cl = 0; cl < C.n; cl++)
        if (cp[cl]) macro += ratio(ch[cl], cp[cl]), nheard++;
    macro = nheard ? macro / nheard : 0;

    FILE *o = stdout;
    if (!table) {
        fputs("{\n  ", o);
        json_ratio(o, "recall", hit[0], present[0]);
        fputs(",\n  ", o);
        json_ratio(o, "recall_events", hit[1], present[1]);
        fputs(",\n  ", o);
        json_ratio(o, "recall_background", hit[2], present[2]);
        fputs(",\n  \"recall_macro\": ", o);
        json_write_number(o, macro, 0);
        fputs(",\n  ", o);
        json_ratio(o, "scenes_all_named", all_named, n);
        fputs(",\n  ", o);
        json_ratio(o, "false_mentions_per_caption", false_total, n);
        fputs(",\n  ", o);
        json_ratio(o, "captions_with_false_mentions", cap_false, n);
        fputs(",\n  ", o);
        json_ratio(o, "precision", named_total - false_total, named_total);
        fprintf(o, ",\n  \"items\": %d,\n  \"sounds\": %ld,\n  \"events\": %ld,\n  \"backgrounds\": %ld,\n"
                   "  \"named\": %ld,\n  \"false_mentions\": %ld,\n",
                n, present[0], present[1], present[2], named_total, false_total);
        fputs("  \"per_class\": {", o);
        for (int cl = 0, first = 1; cl < C.n; cl++) {
            if (!cp[cl] && !cf[cl]) continue;
            fputs(first ? "\n    " : ",\n    ", o);
            first = 0;
            json_key(o, C.name[cl]);
            fprintf(o, "{\"present\": %ld, \"named\": %ld, ", cp[cl], ch[cl]);
            json_ratio(o, "recall", ch[cl], cp[cl]);
            fprintf(o, ", \"false_mentions\": %ld}", cf[cl]);
        }
        fputs("\n  },\n  \"missing_candidates\": ", o);
        json_list(o, miss_c, nmc);
        fputs(",\n  \"missing_scenes\": ", o);
        json_list(o, miss_s, nms);
        fprintf(o, ",\n  \"malformed_event_lines\": %ld,\n  \"malformed_candidate_lines\": %ld,\n  \"classes\": %d,\n",
                S.bad, cands.bad, C.n);
        fputs("  \"rule\": \"a class is named when a caption token is one of its words; tokens: "
              "caption.lower().replace(',', ' ').replace('.', ' ').split()\"", o);
        if (per_item) {
            fputs(",\n  \"per_item\": {", o);
            for (int k = 0; k < n; k++) {
                fputs(k ? ",\n    " : "\n    ", o);
                json_key(o, S.s[si[k]].key);
                int *pres = xmalloc(((size_t)it_np[k] + 1) * sizeof(int)), *miss = xmalloc(((size_t)it_np[k] + 1) * sizeof(int));
                int a = 0, b = 0;
                for (int i = 0; i < it_np[k]; i++) {
                    if (it_named[k][i]) pres[a++] = it_cls[k][i];
                    else miss[b++] = it_cls[k][i];
                }
                fputs("{\"present\": ", o);
                json_class_list(o, &C, it_cls[k], it_np[k]);
                fputs(", \"named\": ", o);
                json_class_list(o, &C, pres, a);
                fputs(", \"missed\": ", o);
                json_class_list(o, &C, miss, b);
                fputs(", \"false\": ", o);
                json_class_list(o, &C, it_cls[k] + it_np[k], it_nf[k]);
                fputs(", \"tokens\": ", o);
                char *tok = ev_tokens(cands.e[ci[k]].caps[0]);
                json_str(o, tok);
                free(tok);
                fputc('}', o);
                free(pres);
                free(miss);
            }
            fputs("\n  }", o);
        }
        fputs("\n}\n", o);
    } else {
        fprintf(o, "%-28s %.6f (%ld of %ld sounds)\n", "recall", ratio(hit[0], present[0]), hit[0], present[0]);
        fprintf(o, "%-28s %.6f (%ld of %ld)\n", "recall_events", ratio(hit[1], present[1]), hit[1], present[1]);
        fprintf(o, "%-28s %.6f (%ld of %ld)\n", "recall_background", ratio(hit[2], present[2]), hit[2], present[2]);
        fprintf(o, "%-28s %.6f (%d classes heard)\n", "recall_macro", macro, nheard);
        fprintf(o, "%-28s %.6f\n", "scenes_all_named", ratio(all_named, n));
        fprintf(o, "%-28s %.6f (%ld in %d captions)\n", "false_mentions_per_caption", ratio(false_total, n), false_total, n);
        fprintf(o, "%-28s %.6f\n", "captions_with_false_mentions", ratio(cap_false, n));
        fprintf(o, "%-28s %.6f (%ld classes named)\n", "precision", ratio(named_total - false_total, named_total), named_total);
        fprintf(o, "%-28s %d missing candidates, %d candidates without a scene\n", "missing", nmc, nms);
        if (per_item) {
            fputs("class\tpresent\tnamed\trecall\tfalse_mentions\n", o);
            for (int cl = 0; cl < C.n; cl++)
                if (cp[cl] || cf[cl]) fprintf(o, "%s\t%ld\t%ld\t%.6f\t%ld\n", C.name[cl], cp[cl], ch[cl], ratio(ch[cl], cp[cl]), cf[cl]);
        }
    }
    close_stdout_or_die();
    long failed = nmc + nms + S.bad + cands.bad;
    if (!tool_quiet || failed)
        fprintf(stderr,
                "score: %d captions scored against their scenes (%ld sounds), recall %.4f, %ld false mentions; "
                "%d scenes without candidate, %d candidates without scene, %ld malformed lines\n",
                n, present[0], ratio(hit[0], present[0]), false_total, nmc, nms, S.bad + cands.bad);
    if (per_item)
        for (int k = 0; k < n; k++) free(it_cls[k]), free(it_named[k]);
    free(it_cls);
    free(it_named);
    free(it_np);
    free(it_nf);
    free(cp);
    free(ch);
    free(cf);
    free(named);
    free(inscene);
    free(ci);
    free(si);
    free(miss_c);
    free(miss_s);
    free(cls_default);
    capset_free(&cands);
    ev_scenes_free(&S);
    ev_classes_free(&C);
    return failed ? EXIT_PARTIAL : EXIT_OK;
}

/* ------------------------------------------------------------ tokenize */

static int cmd_tokenize(int argc, char **argv) {
    static const struct option longopts[] = {
        {"raw", no_argument, 0, 'R'}, {"quiet", no_argument, 0, 'q'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int raw = 0, c;
    while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'R': raw = 1; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (argc - optind > 1) die_usage("at most one input file");
    const char *path = argc > optind ? argv[optind] : "-";
    int fd = strcmp(path, "-") ? open(path, O_RDONLY) : 0;
    if (fd < 0) die("cannot open %s: %s", path, strerror(errno));
    line_reader lr;
    lr_init(&lr, fd, 1 << 20);
    char **lines = NULL, *line;
    size_t n = 0, cap = 0, len;
    long failed = 0;
    int r;
    while ((r = lr_next(&lr, &line, &len)) != LR_EOF) {
        if (r == LR_ERROR) die("reading %s: %s", fd ? path : "stdin", strerror(errno));
        if (n == cap) {
            cap = cap ? 2 * cap : 1024;
            lines = xrealloc(lines, cap * sizeof(char *));
        }
        if (r == LR_TOO_LONG) {
            warnx_("line %ld: longer than 1 MiB: printed as an empty line", lr.lineno);
            failed++;
            lines[n++] = xstrdup("");
        } else lines[n++] = xstrdup(line);
    }
    lr_free(&lr);
    if (fd) close(fd);
    char **out = xmalloc((n + 1) * sizeof(char *));
    ptb_tokenize_lines((const char *const *)lines, n, out, raw ? PTB_JAVA : PTB_PYCOCO);
    for (size_t i = 0; i < n; i++) {
        puts(out[i]);
        free(out[i]);
        free(lines[i]);
    }
    free(out);
    free(lines);
    close_stdout_or_die();
    if (failed) fprintf(stderr, "score: %zu lines tokenized, %ld too long\n", n, failed);
    return failed ? EXIT_PARTIAL : EXIT_OK;
}

int main(int argc, char **argv) {
    tool_init("score");
    if (argc >= 2 && !strcmp(argv[1], "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "caption")) return cmd_caption(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "retrieval")) return cmd_retrieval(argc - 1, argv + 1);
    if (argc >= 2 && !strcmp(argv[1], "events")) return cmd_events(argc - 1, argv + 1);
    static const struct option longopts[] = {{"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        if (c == 'h') {
            fputs(usage, stdout);
            return EXIT_OK;
        }
        die_bad_option(c, argv);
    }
    if (optind < argc) die_usage("unknown command '%s': caption, retrieval, events or tokenize", argv[optind]);
    die_usage("a command is needed: score caption, retrieval, events or tokenize ...");
}
