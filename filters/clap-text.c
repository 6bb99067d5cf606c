/* clap-text - captions to a stream of CLAP text embeddings: WavCaps' (BERT +
 * text_proj, WordPiece) or SALSA's (RoBERTa + project_sentence, SALSA's
 * preprocessing and byte-level BPE), as the model file says. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <getopt.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bert.h"
#include "bpe.h"
#include "captions.h"
#include "safetensors.h"
#include "salsa_text.h"
#include "stream.h"
#include "util.h"
#include "wordpiece.h"

static const char usage[] =
    "Usage: clap-text -m MODEL [OPTIONS] [FILE]\n"
    "Read captions from FILE or stdin, one per line as KEY<TAB>CAPTION (a line\n"
    "without a tab is keyed by its line number), a Clotho or AudioCaps CSV file\n"
    "with --csv, or a WSAC caption list (csv2json.py's clotho.json) with --json,\n"
    "and write a tensor stream with one record per caption: \"emb\" f32\n"
    "[E], its L2-normalised CLAP text embedding, and \"text\", the caption as\n"
    "given. A WavCaps model (BERT): tokenized as Hugging Face's BertTokenizer\n"
    "(bert-base-uncased), truncated to the model's max_len tokens ([CLS] and [SEP]\n"
    "included: 30). A SALSA model (RoBERTa): lower-cased and ASCII punctuation\n"
    "removed as SALSA does, then RobertaTokenizer's byte-level BPE, truncated to\n"
    "max_len tokens (<s> and </s> included: 32).\n"
    "\n"
    "  -m, --model FILE     CLAP model file (scripts/convert.py clap or salsa); required\n"
    "      --csv            the input is CSV: Clotho (file_name,caption_1..caption_N;\n"
    "                       keys FILE_NAME#1..#N) or AudioCaps (audiocap_id,\n"
    "                       youtube_id,start_time,caption; key audiocap_id)\n"
    "      --json           the input is a JSON list of caption strings, as WSAC's\n"
    "                       data/csv2json.py writes it; entry i is keyed \"i\"\n"
    "                       (0-based, header strings counted). The CSV header\n"
    "                       strings csv2json copies in (\"caption_1\"..\"caption_5\",\n"
    "                       \"caption\") are named and skipped (they fail)\n"
    "      --keep-header    with --json: embed those strings as the published\n"
    "                       code does (each is still named)\n"
    "      --ids            add \"ids\", i32 [L]: the token ids the encoder read\n"
    "      --batch N        at most N captions per forward pass (64); only captions\n"
    "                       already read are batched, so records still stream\n"
    "  -j, --threads N      threads (default: all cores); the output is bit-identical\n"
    "                       for any N and any --batch\n"
    "  -q, --quiet          no progress or summary (errors are still printed)\n"
    "  -v, --verbose        describe the model, and the speed at the end\n"
    "  -h, --help           show this help\n"
    "\n"
    "A caption that is empty (no tokens), not valid UTF-8 or holds a NUL byte, a\n"
    "SALSA caption over 4096 bytes whose first 4096 give too few tokens, a\n"
    "line over 1 MiB, a CSV row with the wrong number of fields, a JSON entry\n"
    "that is not a string and a csv2json header string fail: each is named on\n"
    "stderr with its key (or line) and listed in the trailer.\n"
    "Exit status: 0 all captions written, 1 usage error, 2 fatal (unreadable or\n"
    "wrong model, unknown CSV header, input that is not JSON or not a list,\n"
    "failed write), 3 some captions failed.\n";

#define MAX_RECORD (1 << 20)

typedef struct {
    caption c;
    int32_t *ids; /* into the batch's id buffer */
    int len;      /* 0: failed (c.err says why) */
} item;

int main(int argc, char **argv) {
    tool_init("clap-text");
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    int csv = 0, json = 0, keep_header = 0, want_ids = 0, batch = 64;
    const char *model_path = NULL;
    enum { O_CSV = 256, O_IDS, O_BATCH, O_JSON, O_KEEP_HEADER };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'}, {"csv", no_argument, 0, O_CSV},
        {"ids", no_argument, 0, O_IDS},       {"batch", required_argument, 0, O_BATCH},
        {"threads", required_argument, 0, 'j'}, {"quiet", no_argument, 0, 'q'},
        {"verbose", no_argument, 0, 'v'},     {"help", no_argument, 0, 'h'},
        {"json", no_argument, 0, O_JSON},     {"keep-header", no_argument, 0, O_KEEP_HEADER},
        {0, 0, 0, 0}};
    int c;
    while ((c = getopt_long(argc, argv, ":m:j:qvh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case O_CSV: csv = 1; break;
        case O_JSON: json = 1; break;
        case O_KEEP_HEADER: keep_header = 1; break;
        case O_IDS: want_ids = 1; break;
        case O_BATCH: batch = (int)parse_long("--batch", optarg, 1, 4096); break;
        case 'j': threads = (int)parse_long("--threads", optarg, 1, 64); break;
        case 'q': tool_quiet = 1; break;
        case 'v': tool_verbose++; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (!model_path) die_usage("a model is required (-m FILE)");
    if (csv && json) die_usage("--csv and --json exclude each other");
    if (keep_header && !json) die_usage("--keep-header only applies to --json");
    if (argc - optind > 1) die_usage("one input file at most (got %d)", argc - optind);
    const char *in_name = "stdin";
    int fd = 0;
    if (optind < argc && strcmp(argv[optind], "-")) {
        in_name = argv[optind];
        fd = open(in_name, O_RDONLY);
        if (fd < 0) die("%s: %m", in_name);
    }

    /* the model: BERT and text_proj or RoBERTa and project_sentence, and the
     * tokenizer it was trained with */
    double t0 = now_seconds();
    char err[512];
    st_file *f = st_open(model_path, err, sizeof err);
    if (!f) die("%s", err);
    bert_model m;
    if (bert_load(&m, f, err, sizeof err)) die("%s", err);
    st_tensor vt;
    wordpiece *wp = NULL;
    bpe *bp = NULL;
    int salsa_pre = 0, roberta = m.c.arch == BERT_ARCH_ROBERTA;
    if (!roberta) {
        if (!st_get_as(f, "tokenizer.vocab", ST_U8, 1, NULL, err, sizeof err) ||
            st_get(f, "tokenizer.vocab", &vt, err, sizeof err))
            die("%s", err);
        wp = wp_load(vt.data, vt.nbytes, err, sizeof err);
        if (!wp) die("%s: tensor 'tokenizer.vocab': %s", model_path, err);
        if (wp_vocab_size(wp) != m.c.vocab)
            die("%s: tensor 'tokenizer.vocab' has %d tokens but the word embeddings have %d rows", model_path,
                wp_vocab_size(wp), m.c.vocab);
    } else {
        /* the tokenizer and the caption ids are salsa_text.h's, the trainer's too */
        bp = salsa_tokenizer_load(f, &m.c, &salsa_pre, err, sizeof err);
        if (!bp) die("%s", err);
    }
    bert_state *st = bert_state_new(&m, threads);
    const bert_config *cf = &m.c;
    if (tool_verbose)
        infox("%s: %s %d layers x %d (%d heads, feed-forward %d), vocabulary %d, max_len %d, embedding %d; "
              "loaded in %.2f s; %s kernels, %d thread%s",
              model_path, roberta ? "RoBERTa" : "BERT", cf->layers, cf->hidden, cf->heads, cf->intermediate,
              cf->vocab, cf->max_len, cf->embed, now_seconds() - t0, bert_kernel_name(), threads,
              threads == 1 ? "" : "s");

    char *base_tmp = xstrdup(model_path);
    const char *source = st_meta(f, "wsac.source");
    ws_param params[] = {
        {"model", 's', 0, 0, basename(base_tmp)},
        {"model_source", 's', 0, 0, source ? source : ""},
        {"encoder", 's', 0, 0, roberta ? "roberta-project_sentence" : "bert-text_proj"},
        {"tokenizer", 's', 0, 0,
         roberta ? (salsa_pre ? "salsa-preprocess roberta bpe" : "roberta bpe") : "bert-base-uncased wordpiece"},
        {"max_len", 'i', cf->max_len, 0, 0},
        {"embed_dim", 'i', cf->embed, 0, 0},
        {"input", 's', 0, 0, csv ? "csv" : json ? "json" : "lines"},
    };
    ws_writer *w = ws_writer_open(stdout, "clap-text", params, (int)(sizeof params / sizeof params[0]), NULL);

    if (fd == 0 && isatty(0)) warnx_("reading captions from the terminal (see --help)");
    cap_reader *cr = cap_open(fd, in_name, csv ? CAP_CSV : json ? CAP_JSON : CAP_LINES, MAX_RECORD);
    cap_keep_header(cr, keep_header);
    long headers = 0;
    item *items = xcalloc((size_t)batch, sizeof(item));
    int32_t *idbuf = xmalloc((size_t)batch * (size_t)cf->max_len * sizeof(int32_t));
    int32_t *packed = xmalloc((size_t)batch * (size_t)cf->max_len * sizeof(int32_t));
    int *lens = xmalloc((size_t)batch * sizeof(int));
    float *emb = xmalloc((size_t)batch * (size_t)cf->embed * sizeof(float));
    long done = 0, truncated = 0, tokens = 0;
    double t_model = 0, macs = 0;
    progress pr;
    progress_init(&pr, "captions", -1);
    int eof = 0;
    while (!eof) {
        /* a batch takes the captions that are ready, so records still leave
         * as soon as their line has come in */
        int n = 0;
        while (n < batch && (n == 0 || cap_ready(cr))) {
            item *it = &items[n];
            int k = cap_next(cr, &it->c);
            if (k == CAP_EOF) {
                eof = 1;
                break;
            }
            if (k == CAP_ERROR) die("%s", cap_error(cr));
            it->ids = idbuf + (size_t)n * cf->max_len;
            it->len = 0;
            n++;
            if (it->c.header) {
                headers++;
                if (!it->c.err[0])
                    warnx_("key '%s': \"%s\" is a CSV header string csv2json.py copied in: embedded (--keep-header)",
                           it->c.key, it->c.text);
            }
            if (it->c.err[0]) continue;
            int trunc = 0;
            int L = wp ? wp_encode(wp, it->c.text, it->c.len, cf->max_len, it->ids, &trunc, it->c.err,
                                   sizeof it->c.err)
                       : salsa_caption_ids(bp, salsa_pre, it->c.text, it->c.len, cf->max_len, it->ids, &trunc,
                                           it->c.err, sizeof it->c.err);
            if (L < 0) continue;
            /* HF gives [CLS] [SEP] for a caption without tokens; an embedding of
             * nothing is a data error here (an empty CSV cell, a stray line) */
            if (L <= 2) {
                snprintf(it->c.err, sizeof it->c.err, "%s",
                         !it->c.len ? "empty caption"
                         : wp       ? "empty caption (only white space or characters BERT drops)"
                                    : "empty caption (only white space or punctuation, which SALSA removes)");
                continue;
            }
            it->len = L;
            truncated += trunc;
        }
        int B = 0;
        size_t T = 0;
        for (int i = 0; i < n; i++) {
            if (!items[i].len) continue;
            memcpy(packed + T, items[i].ids, (size_t)items[i].len * sizeof(int32_t));
            T += (size_t)items[i].len;
            lens[B++] = items[i].len;
        }
        if (B > 0) {
            double t = now_seconds();
            bert_embed(st, &m, packed, lens, B, emb);
            t_model += now_seconds() - t;
            macs += bert_macs(&m, lens, B);
            tokens += (long)T;
        }
        for (int i = 0, b = 0; i < n; i++) {
            item *it = &items[i];
            if (!it->len) {
                if (it->c.text && !json) ws_fail(w, it->c.key, "line %ld: %s", it->c.line, it->c.err);
                else ws_fail(w, it->c.key, "%s", it->c.err);
            } else {
                int64_t shape[1] = {cf->embed};
                ws_begin(w, it->c.key);
                ws_put_tensor(w, "emb", DT_F32, 1, shape, emb + (size_t)b * cf->embed);
                ws_put_str(w, "text", it->c.text, it->c.len);
                if (want_ids) {
                    int64_t ishape[1] = {it->len};
                    ws_put_tensor(w, "ids", DT_I32, 1, ishape, it->ids);
                }
                ws_end(w);
                b++;
            }
            caption_free(&it->c);
        }
        done += n;
        progress_update(&pr, done);
    }
    progress_end(&pr, done);
    if (headers && !keep_header && !tool_quiet)
        warnx_("%ld csv2json header string%s skipped (a bug of the published data/csv2json.py; --keep-header "
               "embeds them as WSAC did)",
               headers, headers == 1 ? "" : "s");
    if (tool_verbose) {
        if (truncated) infox("%ld caption%s truncated to %d tokens", truncated, truncated == 1 ? "" : "s", cf->max_len);
        if (t_model > 0)
            infox("model: %ld tokens in %.3f s: %.0f tokens/s, %.1f GFLOP/s", tokens, t_model, tokens / t_model,
                  2 * macs / t_model / 1e9);
    }
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    cap_close(cr);
    if (fd > 0) close(fd);
    free(items);
    free(idbuf);
    free(packed);
    free(lens);
    free(emb);
    free(base_tmp);
    bert_state_free(st);
    bert_free(&m);
    if (wp) wp_free(wp);
    bpe_free(bp);
    st_close(f);
    return finish(ok, failed);
}
