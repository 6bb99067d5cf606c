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

/* The first header's params.frontend ("wavcaps" when absent: every stream
 * made before wav2mel had front ends), from the raw header bytes. */
/* the first header's params.frontend: "wavcaps" when absent (streams before --frontend) */
static const char *stream_frontend(const ws_reader *r) {
    const char *fe;
    int rc = ws_reader_param_str(r, "frontend", &fe);
    return rc < 0 ? "wavcaps" : rc > 0 ? "(not a string)" : fe;
}

/* SALSA's audio tower (lib/passt.h) */
static int run_passt(const char *model_path, const char *input, int threads) {
    char err[1024];
    passt_model *m = passt_load(model_path, err, sizeof err);
    if (!m) die("%s", err);
    ws_reader *r = ws_reader_open_path(input);
    if (!r) die("cannot open %s: %m", input);
    const passt_config *cfg = &m->cfg;
    passt_state st;
    passt_state_init(&st, m, threads);
    float *emb = xmalloc((size_t)cfg->embed * sizeof(float));
    ws_writer *w = NULL;
    const char *src = st_meta(m->file, "wsac.source");
    ws_param params[] = {
        {"model", 's', 0, 0, model_path}, {"source", 's', 0, 0, src ? src : ""},
        {"arch", 's', 0, 0, "passt"},     {"frontend", 's', 0, 0, cfg->frontend},
        {"n_mels", 'i', cfg->n_mels, 0, 0}, {"blocks", 'i', cfg->depth, 0, 0},
        {"embed", 'i', cfg->embed, 0, 0}, {"segment_frames", 'i', cfg->seg_frames, 0, 0},
        {"segments", 'i', cfg->nseg, 0, 0}, {"cut", 's', 0, 0, "segments"},
    };
    int segmented = 0;
    static const char *const consumed[] = {"mel", NULL};
    progress pr;
    progress_init(&pr, "clips", -1);
    long done = 0;
    ws_record rec;
    int s;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        if (!w) {
            if (strcmp(stream_frontend(r), cfg->frontend))
                die("the mel stream's front end is %s, the model takes %s (make it with wav2mel --frontend %s)",
                    stream_frontend(r), cfg->frontend, cfg->frontend);
            /* wav2mel --frontend passt records its cut: pieces of segment_samples, segments of them */
            double seg = 0, k = -1, hop = -1, sr = -1;
            segmented = !ws_reader_param(r, "segment_samples", &seg) && seg > 0;
            if (segmented) {
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
                params[sizeof params / sizeof params[0] - 1].s = "whole";
                warnx_("warning: a whole-clip PaSST mel: its %d-frame segments are sliced from the clip's mel, an "
                       "approximation of SALSA's waveform cut (wav2mel --frontend passt without --whole-clip is exact)",
                       cfg->seg_frames);
            }
            w = ws_writer_open(stdout, "clap-audio", params, (int)(sizeof params / sizeof params[0]), r);
        }
        char nm[300], why[400];
        const ws_tensor *mel;
        const char *bad = NULL;
        const char *key = rec.key ? rec.key : ws_record_name(&rec, nm, sizeof nm);
        if (rec.err[0]) bad = rec.err;
        else if (!(mel = ws_record_tensor(&rec, "mel", DT_F32, 2, why, sizeof why))) bad = why;
        else {
            long T = (long)mel->shape[0], M = (long)mel->shape[1], n = 0;
            const ws_field *sf = ws_record_field(&rec, "samples");
            if (sf && sf->kind == WF_INT && sf->i > 0) n = (long)sf->i;
            if (!(bad = passt_input_error(m, mel->data, T, M, why, sizeof why)) &&
                !(segmented && (bad = passt_segments_error(m, T, n, why, sizeof why)))) {
                passt_forward(&st, m, mel->data, T, n, emb);
                int finite = 1;
                for (int i = 0; i < cfg->embed; i++) finite &= isfinite(emb[i]) != 0;
                if (!finite) {
                    bad = "the embedding is not finite (overflow inside the network: are the model's weights sane?)";
                } else {
                    int64_t shape[1] = {cfg->embed};
                    ws_begin(w, rec.key);
                    ws_put_tensor(w, "emb", DT_F32, 1, shape, emb);
                    ws_put_fields_except(w, &rec, consumed);
                    ws_end(w);
                }
            }
        }
        if (bad) ws_fail(w, key, "%s", bad);
        ws_record_free(&rec);
        progress_update(&pr, ++done);
    }
    if (s == WS_ERROR) die("%s", ws_reader_error(r));
    progress_end(&pr, done);
    if (!w) w = ws_writer_open(stdout, "clap-audio", params, (int)(sizeof params / sizeof params[0]), r);
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    ws_reader_close(r);
    passt_state_free(&st);
    free(emb);
    passt_free(m);
    return finish(ok, failed);
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
    cnn14_model *m = cnn14_load(model_path, naive ? CNN14_IM2COL : algo, err, sizeof err);
    if (!m) die("%s", err);
    ws_reader *r = ws_reader_open_path(input);
    if (!r) die("cannot open %s: %m", input);

    const cnn14_config *cfg = &m->cfg;
    cnn14_state st;
    cnn14_state_init(&st, m, threads);
    float *emb = xmalloc((size_t)cfg->embed * sizeof(float));
    ws_writer *w = NULL;
    const char *src = st_meta(m->file, "wsac.source");
    ws_param params[] = {
        {"model", 's', 0, 0, model_path},   {"source", 's', 0, 0, src ? src : ""},
        {"n_mels", 'i', cfg->n_mels, 0, 0}, {"blocks", 'i', cfg->nblocks, 0, 0},
        {"embed", 'i', cfg->embed, 0, 0},   {"max_seconds", 'f', 0, max_seconds, 0},
        {"crop", 's', 0, 0, crop},          {"conv", 's', 0, 0, naive ? "naive" : conv},
    };
    static const char *const consumed[] = {"mel", NULL};
    double hdr_mels = -1;
    long max_frames = 0;
    progress pr;
    progress_init(&pr, "clips", -1);
    long done = 0;
    ws_record rec;
    int s;
    while ((s = ws_reader_next(r, &rec)) == WS_RECORD) {
        if (!w) { /* the upstream header is known once the first record is in */
            w = ws_writer_open(stdout, "clap-audio", params, (int)(sizeof params / sizeof params[0]), r);
            if (strcmp(stream_frontend(r), "wavcaps"))
                die("the mel stream's front end is %s, the model takes wavcaps (make it with wav2mel --frontend "
                    "wavcaps, the default)", stream_frontend(r));
            check_front_end(r);
            ws_reader_param(r, "n_mels", &hdr_mels);
            if (max_seconds > 0) {
                double sr = 32000, hop = 320; /* WavCaps', when the header lacks them */
                if (ws_reader_param(r, "sr", &sr) || !(sr >= 1 && sr <= 1e7)) sr = 32000;
                if (ws_reader_param(r, "hop", &hop) || !(hop >= 1 && hop <= 1e7)) hop = 320;
                /* the frames of an S-second waveform crop: T = 1 + floor(N / hop) */
                max_frames = 1 + (long)floor(max_seconds * sr / hop + 1e-9);
            }
        }
        char nm[300], why[400];
        const ws_tensor *mel;
        const char *bad = NULL;
        const char *key = rec.key ? rec.key : ws_record_name(&rec, nm, sizeof nm);
        if (rec.err[0]) bad = rec.err;
        else if (!(mel = ws_record_tensor(&rec, "mel", DT_F32, 2, why, sizeof why))) bad = why;
        else if (hdr_mels >= 0 && hdr_mels != cfg->n_mels) {
            snprintf(why, sizeof why, "the stream header says n_mels %g, the model takes %d (wav2mel --n-mels %d)",
                     hdr_mels, cfg->n_mels, cfg->n_mels);
            bad = why;
        } else {
            long T = (long)mel->shape[0], M = (long)mel->shape[1], t0 = 0;
            if (max_frames > 0 && T > max_frames) {
                if (!strcmp(crop, "center")) t0 = (T - max_frames) / 2;
                T = max_frames;
            }
            const float *x = (const float *)mel->data + (size_t)t0 * (size_t)M;
            if (!(bad = cnn14_input_error(m, x, T, M, why, sizeof why))) {
                if (naive) cnn14_forward_naive(m, x, (int)T, emb);
                else cnn14_forward(&st, m, x, (int)T, emb);
                int finite = 1;
                for (int i = 0; i < cfg->embed; i++) finite &= isfinite(emb[i]) != 0;
                if (!finite) {
                    bad = "the embedding is not finite (overflow inside the network: are the model's weights sane?)";
                } else {
                    int64_t shape[1] = {cfg->embed};
                    ws_begin(w, rec.key);
                    ws_put_tensor(w, "emb", DT_F32, 1, shape, emb);
                    ws_put_fields_except(w, &rec, consumed);
                    ws_end(w);
                }
            }
        }
        if (bad) ws_fail(w, key, "%s", bad);
        ws_record_free(&rec);
        progress_update(&pr, ++done);
    }
    if (s == WS_ERROR) die("%s", ws_reader_error(r));
    progress_end(&pr, done);
    if (!w) w = ws_writer_open(stdout, "clap-audio", params, (int)(sizeof params / sizeof params[0]), r);
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    ws_reader_close(r);
    cnn14_state_free(&st);
    free(emb);
    cnn14_free(m);
    return finish(ok, failed);
}
