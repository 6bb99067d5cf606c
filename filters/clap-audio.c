/* clap-audio - log mel spectrograms to CLAP audio embeddings (WavCaps CNN14,
 * or SALSA's PaSST-S when the model file says clap.audio.arch = passt). */
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cnn14.h"
#include "passt.h"
#include "stream.h"
#include "util.h"

static const char usage[] =
    "Usage: clap-audio -m MODEL [OPTIONS] [STREAM]\n"
    "Encode each record's \"mel\" (f32 [T, n_mels], from wav2mel) with the WavCaps\n"
    "CNN14 CLAP audio encoder into \"emb\", f32 [E], L2-normalised. \"mel\" is\n"
    "consumed; other fields pass through. Reads STREAM or stdin, writes stdout.\n"
    "The whole clip is encoded, as WSAC does; it needs at least 2^N frames for N\n"
    "ConvBlocks (64 for CNN14: 0.63 s; wav2mel --min-seconds pads).\n"
    "A SALSA model (scripts/convert.py salsa) runs PaSST-S instead, on the mel of\n"
    "wav2mel --frontend passt: the mels of the clip's 10-s waveform pieces (SALSA's\n"
    "fixed 30 s, zero-padded; longer clips cropped to their first 30 s), the\n"
    "pieces kept by the clip's \"samples\", mean of their features,\n"
    "Linear(768->1024), as published. A whole-clip mel (wav2mel --whole-clip) is\n"
    "sliced into 1000-frame segments instead: an approximation (frames at a cut\n"
    "differ). A stream of another front end or piece size is refused (exit 2);\n"
    "--max-seconds, --crop, --conv and --naive are CNN14's.\n"
    "\n"
    "  -m, --model FILE       CLAP model file (scripts/convert.py clap); required\n"
    "      --max-seconds S    encode at most S seconds, 1 + floor(S*sr/hop) frames\n"
    "                         (WavCaps trained on 30-s crops); default: whole clip\n"
    "      --crop WHERE       which S seconds: first or center (first)\n"
    "  -j, --threads N        threads each layer is split over (default: all cores);\n"
    "                         the output is bit-identical run to run for a given N\n"
    "      --conv ALGO        3x3 convolutions: auto (Winograd F(2x2,3x3) where its\n"
    "                         weights take <= 64 MB a layer, im2col + sgemm in the\n"
    "                         others), im2col, or winograd (all layers)\n"
    "      --naive            direct convolution in double precision instead: slow,\n"
    "                         a reference for tests\n"
    "  -q, --quiet            no progress or summary (errors are still printed)\n"
    "  -h, --help             show this help\n"
    "\n"
    "Exit status: 0 all records encoded, 1 usage error, 2 fatal (unreadable model,\n"
    "malformed input, failed write), 3 some records failed (each named on stderr\n"
    "with its reason: too short, wrong number of bands, NaN, no \"mel\"...).\n";

/* The WavCaps front end (wsac.md A.1): a stream made otherwise still encodes,
 * with a warning, since the embedding would mean little. */
static void check_front_end(const ws_reader *r) {
    static const struct {
        const char *name;
        double want;
    } fe[] = {{"sr", 32000}, {"n_fft", 1024}, {"hop", 320}, {"fmin", 50}, {"fmax", 14000}};
    for (size_t i = 0; i < sizeof fe / sizeof fe[0]; i++) {
        double v;
        if (!ws_reader_param(r, fe[i].name, &v) && v != fe[i].want)
            warnx_("warning: the mel stream has %s %g; the CLAP model was trained with %g (WavCaps front end)",
                   fe[i].name, v, fe[i].want);
    }
}

/* the first header's params.frontend: "wavcaps" when absent (streams before --frontend) */
static const char *stream_frontend(const ws_reader *r) {
    const char *fe;
    int rc = ws_reader_param_str(r, "frontend", &fe);
    return rc < 0 ? "wavcaps" : rc > 0 ? "(not a string)" : fe;
}

/* One audio tower behind the record loop: the stream header checked once,
 * then each clip's mel to an embedding or a reason it cannot be encoded. */
typedef struct encoder {
    int embed;
    ws_param *params; /* the output header's; header() may change values */
    int nparams;
    void (*header)(struct encoder *e, const ws_reader *r);  /* dies on a stream it cannot take */
    const char *(*encode)(struct encoder *e, const ws_record *rec, const ws_tensor *mel, float *emb /* [embed] */,
                          char *why, size_t nwhy); /* NULL, or why the clip failed */
    void *ctx;
} encoder;

/* Every record of the stream through e: "mel" consumed, "emb" added, the rest
 * passed on; a failed clip named with its reason. Returns the exit status. */
static int encode_stream(encoder *e, const char *input) {
    ws_reader *r = ws_reader_open_path(input);
    if (!r) die("cannot open %s: %m", input);
    float *emb = xmalloc((size_t)e->embed * sizeof(float));
    ws_writer *w = NULL;
    static const char *const consumed[] = {"mel", NULL};
    progress pr;
    progress_init(&pr, "clips", -1);
    long done = 0;
    ws_record rec;
    int s;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        if (!w) { /* the upstream header is known once the first record is in */
            e->header(e, r);
            w = ws_writer_open(stdout, "clap-audio", e->params, e->nparams, r);
        }
        char nm[300], why[400];
        const ws_tensor *mel;
        const char *bad = NULL;
        const char *key = rec.key ? rec.key : ws_record_name(&rec, nm, sizeof nm);
        if (rec.err[0]) bad = rec.err;
        else if (!(mel = ws_record_tensor(&rec, "mel", DT_F32, 2, why, sizeof why))) bad = why;
        else if (!(bad = e->encode(e, &rec, mel, emb, why, sizeof why))) {
            int finite = 1;
            for (int i = 0; i < e->embed; i++) finite &= isfinite(emb[i]) != 0;
            if (!finite) {
                bad = "the embedding is not finite (overflow inside the network: are the model's weights sane?)";
            } else {
                int64_t shape[1] = {e->embed};
                ws_begin(w, rec.key);
                ws_put_tensor(w, "emb", DT_F32, 1, shape, emb);
                ws_put_fields_except(w, &rec, consumed);
                ws_end(w);
            }
        }
        if (bad) ws_fail(w, key, "%s", bad);
        ws_record_free(&rec);
        progress_update(&pr, ++done);
    }
    if (s == WS_ERROR) die("%s", ws_reader_error(r));
    progress_end(&pr, done);
    if (!w) w = ws_writer_open(stdout, "clap-audio", e->params, e->nparams, r);
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    ws_reader_close(r);
    free(emb);
    return finish(ok, failed);
}

/* SALSA's audio tower (lib/passt.h) */
typedef struct {
    passt_model *m;
    passt_state st;
    int segmented; /* wav2mel --frontend passt's cut, not a whole-clip mel */
} passt_enc;

static void passt_header(encoder *e, const ws_reader *r) {
    passt_enc *p = e->ctx;
    const passt_config *cfg = &p->m->cfg;
    if (strcmp(stream_frontend(r), cfg->frontend))
        die("the mel stream's front end is %s, the model takes %s (make it with wav2mel --frontend %s)",
            stream_frontend(r), cfg->frontend, cfg->frontend);
    /* wav2mel --frontend passt records its cut: pieces of segment_samples, segments of them */
    double seg = 0, k = -1, hop = -1, sr = -1;
    p->segmented = !ws_reader_param(r, "segment_samples", &seg) && seg > 0;
    if (p->segmented) {
        ws_reader_param(r, "segments", &k);
        if (seg != (double)cfg->seg_samples || k != cfg->nseg)
            die("the mel stream's pieces are %g samples, %g to the fixed length; the model's are %ld, %d "
                "(make it with wav2mel --frontend passt --segment-samples %ld --segments %d)", seg, k,
                cfg->seg_samples, cfg->nseg, cfg->seg_samples, cfg->nseg);
        if (!ws_reader_param(r, "hop", &hop) && hop != cfg->hop)
            die("the mel stream's hop is %g samples, the model's %d (wav2mel --hop %d)", hop, cfg->hop, cfg->hop);
        if (cfg->sr && !ws_reader_param(r, "sr", &sr) && sr != cfg->sr)
            die("the mel stream's rate is %g Hz, the model's %d (wav2mel --sr %d)", sr, cfg->sr, cfg->sr);
    } else {
        e->params[e->nparams - 1].s = "whole"; /* "cut" */
        warnx_("warning: a whole-clip PaSST mel: its %d-frame segments are sliced from the clip's mel, an "
               "approximation of SALSA's waveform cut (wav2mel --frontend passt without --whole-clip is exact)",
               cfg->seg_frames);
    }
}

static const char *passt_encode(encoder *e, const ws_record *rec, const ws_tensor *mel, float *emb, char *why,
                                size_t nwhy) {
    passt_enc *p = e->ctx;
    long T = (long)mel->shape[0], M = (long)mel->shape[1], n = 0;
    const ws_field *sf = ws_record_field(rec, "samples");
    if (sf && sf->kind == WF_INT && sf->i > 0) n = (long)sf->i;
    const char *bad = passt_input_error(p->m, mel->data, T, M, why, nwhy);
    if (!bad && p->segmented) bad = passt_segments_error(p->m, T, n, why, nwhy);
    if (!bad) passt_forward(&p->st, p->m, mel->data, T, n, emb);
    return bad;
}

static int run_passt(const char *model_path, const char *input, int threads) {
    char err[1024];
    passt_enc p = {0};
    if (!(p.m = passt_load(model_path, err, sizeof err))) die("%s", err);
    const passt_config *cfg = &p.m->cfg;
    passt_state_init(&p.st, p.m, threads);
    const char *src = st_meta(p.m->file, "wsac.source");
    ws_param params[] = {
        {"model", 's', 0, 0, model_path}, {"source", 's', 0, 0, src ? src : ""},
        {"arch", 's', 0, 0, "passt"},     {"frontend", 's', 0, 0, cfg->frontend},
        {"n_mels", 'i', cfg->n_mels, 0, 0}, {"blocks", 'i', cfg->depth, 0, 0},
        {"embed", 'i', cfg->embed, 0, 0}, {"segment_frames", 'i', cfg->seg_frames, 0, 0},
        {"segments", 'i', cfg->nseg, 0, 0}, {"cut", 's', 0, 0, "segments"}, /* last: passt_header sets it */
    };
    encoder e = {cfg->embed, params, (int)(sizeof params / sizeof params[0]), passt_header, passt_encode, &p};
    int rc = encode_stream(&e, input);
    passt_state_free(&p.st);
    passt_free(p.m);
    return rc;
}

/* WavCaps' CNN14 (lib/cnn14.h) */
typedef struct {
    cnn14_model *m;
    cnn14_state st;
    int naive, center; /* --naive; --crop center */
    double max_seconds, hdr_mels;
    long max_frames; /* --max-seconds in frames of the stream's hop; 0: the whole clip */
} cnn14_enc;

static void cnn14_header(encoder *e, const ws_reader *r) {
    cnn14_enc *c = e->ctx;
    if (strcmp(stream_frontend(r), "wavcaps"))
        die("the mel stream's front end is %s, the model takes wavcaps (make it with wav2mel --frontend "
            "wavcaps, the default)", stream_frontend(r));
    check_front_end(r);
    c->hdr_mels = -1;
    ws_reader_param(r, "n_mels", &c->hdr_mels);
    if (c->max_seconds > 0) {
        double sr = 32000, hop = 320; /* WavCaps', when the header lacks them */
        if (ws_reader_param(r, "sr", &sr) || !(sr >= 1 && sr <= 1e7)) sr = 32000;
        if (ws_reader_param(r, "hop", &hop) || !(hop >= 1 && hop <= 1e7)) hop = 320;
        /* the frames of an S-second waveform crop: T = 1 + floor(N / hop) */
        c->max_frames = 1 + (long)floor(c->max_seconds * sr / hop + 1e-9);
    }
}

static const char *cnn14_encode(encoder *e, const ws_record *rec, const ws_tensor *mel, float *emb, char *why,
                                size_t nwhy) {
    (void)rec;
    cnn14_enc *c = e->ctx;
    if (c->hdr_mels >= 0 && c->hdr_mels != c->m->cfg.n_mels) {
        snprintf(why, nwhy, "the stream header says n_mels %g, the model takes %d (wav2mel --n-mels %d)",
                 c->hdr_mels, c->m->cfg.n_mels, c->m->cfg.n_mels);
        return why;
    }
    long T = (long)mel->shape[0], M = (long)mel->shape[1], t0 = 0;
    if (c->max_frames > 0 && T > c->max_frames) {
        if (c->center) t0 = (T - c->max_frames) / 2;
        T = c->max_frames;
    }
    const float *x = (const float *)mel->data + (size_t)t0 * (size_t)M;
    const char *bad = cnn14_input_error(c->m, x, T, M, why, nwhy);
    if (bad) return bad;
    if (c->naive) cnn14_forward_naive(c->m, x, (int)T, emb);
    else cnn14_forward(&c->st, c->m, x, (int)T, emb);
    return NULL;
}

int main(int argc, char **argv) {
    tool_init("clap-audio");
    enum { O_MAX = 256, O_CROP, O_NAIVE, O_CONV };
    static const struct option longopts[] = {
        {"model", required_argument, 0, 'm'},     {"max-seconds", required_argument, 0, O_MAX},
        {"crop", required_argument, 0, O_CROP},   {"threads", required_argument, 0, 'j'},
        {"naive", no_argument, 0, O_NAIVE},       {"conv", required_argument, 0, O_CONV},
        {"quiet", no_argument, 0, 'q'},           {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0}};
    const char *model_path = NULL, *crop = "first", *conv = "auto";
    double max_seconds = 0;
    int threads = 0, naive = 0, c, cnn14_opt = 0;
    while ((c = getopt_long(argc, argv, ":m:j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'm': model_path = optarg; break;
        case O_MAX: cnn14_opt = O_MAX; max_seconds = parse_double("--max-seconds", optarg, 0.001, 1e7); break;
        case O_CROP:
            if (strcmp(optarg, "first") && strcmp(optarg, "center"))
                die_usage("option --crop: '%s' is not first or center", optarg);
            crop = optarg;
            cnn14_opt = O_CROP;
            break;
        case 'j': threads = (int)parse_long("--threads", optarg, 1, 256); break;
        case O_NAIVE: naive = 1; cnn14_opt = O_NAIVE; break;
        case O_CONV:
            if (strcmp(optarg, "auto") && strcmp(optarg, "im2col") && strcmp(optarg, "winograd"))
                die_usage("option --conv: '%s' is not auto, im2col or winograd", optarg);
            conv = optarg;
            cnn14_opt = O_CONV;
            break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (!model_path) die_usage("no model: give -m MODEL (a CLAP model file from scripts/convert.py clap)");
    if (argc - optind > 1) die_usage("one input stream at most (got %d)", argc - optind);
    const char *input = optind < argc ? argv[optind] : "-";

    char err[1024];
    st_file *peek = st_open(model_path, err, sizeof err); /* unreadable: cnn14_load says why */
    int is_passt = peek && passt_is_passt_file(peek);
    st_close(peek);
    if (is_passt) {
        if (cnn14_opt)
            die_usage("option %s applies to CNN14 models; %s is a PaSST (SALSA) model",
                      cnn14_opt == O_MAX ? "--max-seconds" : cnn14_opt == O_CROP ? "--crop" :
                      cnn14_opt == O_NAIVE ? "--naive" : "--conv", model_path);
        return run_passt(model_path, input, threads);
    }
    int algo = !strcmp(conv, "im2col") ? CNN14_IM2COL : !strcmp(conv, "winograd") ? CNN14_WINOGRAD : CNN14_AUTO;
    cnn14_enc c14 = {.naive = naive, .center = !strcmp(crop, "center"), .max_seconds = max_seconds};
    if (!(c14.m = cnn14_load(model_path, naive ? CNN14_IM2COL : algo, err, sizeof err))) die("%s", err);
    const cnn14_config *cfg = &c14.m->cfg;
    cnn14_state_init(&c14.st, c14.m, threads);
    const char *src = st_meta(c14.m->file, "wsac.source");
    ws_param params[] = {
        {"model", 's', 0, 0, model_path},   {"source", 's', 0, 0, src ? src : ""},
        {"n_mels", 'i', cfg->n_mels, 0, 0}, {"blocks", 'i', cfg->nblocks, 0, 0},
        {"embed", 'i', cfg->embed, 0, 0},   {"max_seconds", 'f', 0, max_seconds, 0},
        {"crop", 's', 0, 0, crop},          {"conv", 's', 0, 0, naive ? "naive" : conv},
    };
    encoder e = {cfg->embed, params, (int)(sizeof params / sizeof params[0]), cnn14_header, cnn14_encode, &c14};
    int rc = encode_stream(&e, input);
    cnn14_state_free(&c14.st);
    cnn14_free(c14.m);
    return rc;
}
