/* wav2mel - audio files to a stream of log mel spectrograms (the WavCaps front
 * end, lib/mel.h, or PaSST's as SALSA uses it, lib/passt_mel.h). */
#define _GNU_SOURCE
#include <getopt.h>
#include <libgen.h>
#include <malloc.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "audio.h"
#include "lines.h"
#include "mel.h"
#include "passt_mel.h"
#include "pool.h"
#include "stream.h"
#include "util.h"

static const char usage[] =
    "Usage: wav2mel [OPTIONS] [FILE...]\n"
    "Read audio files (as arguments, or a list on stdin: PATH or KEY<TAB>PATH per\n"
    "line) and write a tensor stream with one record per file: \"mel\" f32 [T, n_mels],\n"
    "\"sr\", \"samples\" and \"path\". The key is the file's base name unless given.\n"
    "Defaults reproduce the WavCaps CLAP front end (torchlibrosa 0.1.0, librosa.load).\n"
    "\n"
    "      --frontend NAME    wavcaps (default) or passt: PaSST's AugmentMelSTFT as\n"
    "                         SALSA evaluates it (pre-emphasis, n_fft 1024, symmetric\n"
    "                         Hann 800, hop 320, 128 Kaldi mels 0..15000 Hz,\n"
    "                         (log(mel + 1e-5) + 4.5) / 5) on SALSA's cut: the clip\n"
    "                         zero-padded to 3 x 10 s, cut into 10-s pieces, each\n"
    "                         piece's own mel (1000 frames), the pieces its length\n"
    "                         keeps concatenated; the options below then default\n"
    "                         to its values\n"
    "      --segment-seconds S  passt: piece length, int(S * sr) samples (10)\n"
    "      --segment-samples N  passt: piece length in samples (320000 at 32 kHz)\n"
    "      --segments K       passt: pieces in the fixed length (3: 30 s)\n"
    "      --whole-clip       passt: the whole clip's mel instead, uncut (what\n"
    "                         clap-audio slices approximately)\n"
    "  -r, --sr HZ            resample to HZ with libsoxr (32000)\n"
    "      --quality Q        soxr quality: qq lq mq hq vhq (hq, as librosa's soxr_hq)\n"
    "      --n-fft N          FFT size (1024)\n"
    "      --win-length N     Hann window length, centred in the frame (n_fft)\n"
    "      --hop N            hop length in samples (320)\n"
    "      --n-mels N         mel bands (64)\n"
    "      --fmin HZ          lowest mel edge (50)\n"
    "      --fmax HZ          highest mel edge (14000)\n"
    "      --amin X           floor before the log: 10*log10(max(x, X)) (1e-10)\n"
    "      --no-center        frames start at sample 0, no reflect padding\n"
    "      --jitter           passt: training-time mel edges, drawn per file as\n"
    "                         AugmentMelSTFT does in training (fmin + [0, 10),\n"
    "                         fmax + 1000 - [0, 2000)); recorded as \"fmin\", \"fmax\"\n"
    "      --fmin-aug-range N passt --jitter: fmin draws from [0, N) Hz (10)\n"
    "      --fmax-aug-range N passt --jitter: fmax moves by N/2 - [0, N) Hz (2000)\n"
    "      --seed S           passt --jitter: the draws of file i depend on S and i\n"
    "                         alone, whatever --threads (0)\n"
    "      --min-seconds S    zero-pad shorter audio at the end to S seconds (0: off)\n"
    "      --max-seconds S    refuse longer audio (3600)\n"
    "  -j, --threads N        work on N files at once; output keeps input order and is\n"
    "                         bit-identical for any N (default: all cores)\n"
    "  -q, --quiet            no progress or summary (errors are still printed)\n"
    "  -h, --help             show this help\n"
    "\n"
    "T = 1 + floor(N / hop) for N samples after resampling; N must exceed n_fft/2.\n"
    "passt: T = k * (1 + floor((P - 1) / hop)) for pieces of P samples, k =\n"
    "ceil(K * min(N, K * P) / (K * P)) kept, N >= 1 (\"samples\": N); --whole-clip:\n"
    "T = 1 + floor((N - 1) / hop), N - 1 must exceed n_fft/2.\n"
    "Exit status: 0 all files written, 1 usage error, 2 fatal (output failed),\n"
    "3 some files failed (each named on stderr with its reason; the rest were written).\n";

typedef struct {
    char *key, *path;
    long index;          /* the file's ordinal in the input (the jitter draw) */
    double fmin, fmax;   /* passt: this file's mel edges */
    /* result */
    float *mel;
    size_t T, n;
    int file_sr, channels;
    char err[400];
} job;

static mel_config mc;
static pmel_config pc;
static int passt, jitter, whole_clip;
static long seg_samples; /* passt, cut: piece length */
static int nseg;         /* passt, cut: pieces in the fixed length */
static unsigned long long seed;
static audio_opts ao;

/* per-thread state: the mel plan and buffers, the audio buffers */
typedef struct {
    mel_state *mel;
    pmel_state *passt;
    audio_buf audio;
} worker_state;

static void run_job(job *j, worker_state *ws) {
    const char *why = NULL;
    if (!utf8_valid(j->key, strlen(j->key))) why = "key (file name) is not valid UTF-8; give KEY<TAB>PATH";
    else if (!*j->key) why = "empty key";
    if (why) {
        snprintf(j->err, sizeof j->err, "%s", why);
        return;
    }
    audio_buf *a = &ws->audio;
    if (audio_load(j->path, &ao, a, j->err, sizeof j->err)) return;
    j->n = a->n;
    j->file_sr = a->file_sr;
    j->channels = a->channels;
    if (passt && !whole_clip) {
        if (a->n == 0) {
            snprintf(j->err, sizeof j->err, "no samples: an empty clip has no length to keep segments by");
            return;
        }
        j->fmin = pc.fmin;
        j->fmax = pc.fmax;
        if (jitter) pmel_jitter(&pc, seed, (unsigned long long)j->index, &j->fmin, &j->fmax);
        int k = pmel_kept_segments((long)a->n, seg_samples, nseg);
        size_t S = pmel_frames(&pc, (size_t)seg_samples);
        j->mel = xmalloc_aligned((size_t)k * S * (size_t)pc.n_mels * sizeof(float));
        j->T = pmel_compute_segments(ws->passt, a->x, a->n, (size_t)seg_samples, k, j->fmin, j->fmax, j->mel);
        return;
    }
    if (passt) {
        size_t T = pmel_frames(&pc, a->n);
        if (T == 0) {
            snprintf(j->err, sizeof j->err,
                     "too short: %zu samples at %d Hz (%.3f s); the PaSST front end needs at least %zu "
                     "(see --min-seconds)",
                     a->n, a->sr, (double)a->n / a->sr, pmel_min_samples(&pc));
            return;
        }
        j->fmin = pc.fmin;
        j->fmax = pc.fmax;
        if (jitter) pmel_jitter(&pc, seed, (unsigned long long)j->index, &j->fmin, &j->fmax);
        j->mel = xmalloc_aligned(T * (size_t)pc.n_mels * sizeof(float));
        j->T = pmel_compute(ws->passt, a->x, a->n, j->fmin, j->fmax, j->mel);
        return;
    }
    size_t T = mel_frames(&mc, a->n);
    if (T == 0) {
        snprintf(j->err, sizeof j->err,
                 "too short: %zu samples at %d Hz (%.3f s); needs more than %d (see --min-seconds)", a->n,
                 a->sr, (double)a->n / a->sr, mc.center ? mc.n_fft / 2 : mc.n_fft - 1);
        return;
    }
    j->mel = xmalloc_aligned(T * (size_t)mc.n_mels * sizeof(float));
    j->T = mel_compute(ws->mel, a->x, a->n, j->mel);
}

typedef struct {
    job *jobs;
    int njobs;
    atomic_int next;
    worker_state *states;
} batch;

/* a pool task (lib/pool.h): threads take files first come, first served;
 * which thread reads a file never changes its mel */
static void batch_task(void *ctx, int tid, int nthreads) {
    (void)nthreads;
    batch *b = ctx;
    for (int i; (i = atomic_fetch_add(&b->next, 1)) < b->njobs;) run_job(&b->jobs[i], &b->states[tid]);
}

static void run_batch(job *jobs, int n, worker_state *states, thread_pool *tp) {
    if (pool_threads(tp) <= 1 || n == 1) {
        for (int i = 0; i < n; i++) run_job(&jobs[i], &states[0]);
        return;
    }
    batch b = {jobs, n, 0, states};
    pool_run(tp, batch_task, &b);
}

static void emit(ws_writer *w, job *j) {
    if (j->err[0]) {
        ws_fail(w, j->key, "%s: %s", j->path, j->err);
    } else {
        int64_t shape[2] = {(int64_t)j->T, passt ? pc.n_mels : mc.n_mels};
        ws_begin(w, j->key);
        ws_put_tensor(w, "mel", DT_F32, 2, shape, j->mel);
        if (passt && jitter) {
            ws_put_float(w, "fmin", j->fmin);
            ws_put_float(w, "fmax", j->fmax);
        }
        ws_put_int(w, "sr", ao.sr > 0 ? ao.sr : j->file_sr);
        ws_put_int(w, "samples", (int64_t)j->n);
        if (utf8_valid(j->path, strlen(j->path))) ws_put_str(w, "path", j->path, strlen(j->path));
        ws_end(w);
    }
    free(j->mel);
    free(j->key);
    free(j->path);
    memset(j, 0, sizeof *j);
}

static void make_job(job *j, const char *key, const char *path, long index) {
    memset(j, 0, sizeof *j);
    j->index = index;
    j->path = xstrdup(path);
    if (key) j->key = xstrdup(key);
    else {
        char *tmp = xstrdup(path);
        j->key = xstrdup(strcmp(path, "-") ? basename(tmp) : "stdin");
        free(tmp);
    }
}

int main(int argc, char **argv) {
    tool_init("wav2mel");
    mel_config_default(&mc);
    audio_opts_default(&ao);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int threads = ncpu < 1 ? 1 : ncpu > 64 ? 64 : (int)ncpu;
    enum { O_QUALITY = 256, O_NFFT, O_WIN, O_HOP, O_NMELS, O_FMIN, O_FMAX, O_AMIN, O_NOCENTER, O_MIN, O_MAX,
           O_FRONTEND, O_JITTER, O_FMINAUG, O_FMAXAUG, O_SEED, O_SEGSEC, O_SEGSAMP, O_SEGS, O_WHOLE };
    static const struct option longopts[] = {
        {"sr", required_argument, 0, 'r'},          {"quality", required_argument, 0, O_QUALITY},
        {"n-fft", required_argument, 0, O_NFFT},     {"win-length", required_argument, 0, O_WIN},
        {"hop", required_argument, 0, O_HOP},        {"n-mels", required_argument, 0, O_NMELS},
        {"fmin", required_argument, 0, O_FMIN},      {"fmax", required_argument, 0, O_FMAX},
        {"amin", required_argument, 0, O_AMIN},      {"no-center", no_argument, 0, O_NOCENTER},
        {"min-seconds", required_argument, 0, O_MIN}, {"max-seconds", required_argument, 0, O_MAX},
        {"frontend", required_argument, 0, O_FRONTEND}, {"jitter", no_argument, 0, O_JITTER},
        {"fmin-aug-range", required_argument, 0, O_FMINAUG}, {"fmax-aug-range", required_argument, 0, O_FMAXAUG},
        {"seed", required_argument, 0, O_SEED},
        {"segment-seconds", required_argument, 0, O_SEGSEC}, {"segment-samples", required_argument, 0, O_SEGSAMP},
        {"segments", required_argument, 0, O_SEGS},  {"whole-clip", no_argument, 0, O_WHOLE},
        {"threads", required_argument, 0, 'j'},      {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},               {0, 0, 0, 0}};
    int c, win_set = 0, set_nfft = 0, set_hop = 0, set_nmels = 0, set_fmin = 0, set_fmax = 0, set_wavcaps = 0;
    int set_passt = 0, fmin_aug = 10, fmax_aug = 2000, set_cut = 0;
    double seg_seconds = 10; /* SALSA: audio_features.segment_length 10 */
    long seg_n = 0;
    nseg = 3;                /* ex_dcase24.py: set_fixed_length(30) / 10-s segments */
    const char *frontend = "wavcaps";
    while ((c = getopt_long(argc, argv, ":r:j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'r': ao.sr = (int)parse_long("--sr", optarg, 1000, 1000000); break;
        case O_QUALITY:
            if ((ao.quality = audio_quality_parse(optarg)) < 0)
                die_usage("option --quality: '%s' is not one of qq lq mq hq vhq", optarg);
            break;
        case O_NFFT: mc.n_fft = (int)parse_long("--n-fft", optarg, 2, 1 << 20); set_nfft = 1; break;
        case O_WIN: mc.win_length = (int)parse_long("--win-length", optarg, 1, 1 << 20); win_set = 1; break;
        case O_HOP: mc.hop = (int)parse_long("--hop", optarg, 1, 1 << 20); set_hop = 1; break;
        case O_NMELS: mc.n_mels = (int)parse_long("--n-mels", optarg, 1, 4096); set_nmels = 1; break;
        case O_FMIN: mc.fmin = parse_double("--fmin", optarg, 0, 1e6); set_fmin = 1; break;
        case O_FMAX: mc.fmax = parse_double("--fmax", optarg, 0, 1e6); set_fmax = 1; break;
        case O_AMIN: mc.amin = parse_double("--amin", optarg, 1e-30, 1); set_wavcaps = O_AMIN; break;
        case O_NOCENTER: mc.center = 0; set_wavcaps = O_NOCENTER; break;
        case O_FRONTEND:
            if (strcmp(optarg, "wavcaps") && strcmp(optarg, "passt"))
                die_usage("option --frontend: '%s' is not one of wavcaps passt", optarg);
            frontend = optarg;
            break;
        case O_JITTER: jitter = 1; set_passt = O_JITTER; break;
        case O_FMINAUG: fmin_aug = (int)parse_long("--fmin-aug-range", optarg, 1, 100000); set_passt = O_FMINAUG; break;
        case O_FMAXAUG: fmax_aug = (int)parse_long("--fmax-aug-range", optarg, 1, 100000); set_passt = O_FMAXAUG; break;
        case O_SEED: seed = (unsigned long long)parse_long("--seed", optarg, 0, 0x7fffffffffffffffL); set_passt = O_SEED; break;
        case O_SEGSEC: seg_seconds = parse_double("--segment-seconds", optarg, 1e-6, 3600); set_cut = O_SEGSEC; break;
        case O_SEGSAMP: seg_n = parse_long("--segment-samples", optarg, 1, 1L << 30); set_cut = O_SEGSAMP; break;
        case O_SEGS: nseg = (int)parse_long("--segments", optarg, 1, 64); set_cut = O_SEGS; break;
        case O_WHOLE: whole_clip = 1; set_passt = O_WHOLE; break;
        case O_MIN: ao.min_seconds = parse_double("--min-seconds", optarg, 0, 86400); break;
        case O_MAX: ao.max_seconds = parse_double("--max-seconds", optarg, 0.001, 1e6); break;
        case 'j': threads = (int)parse_long("--threads", optarg, 1, 64); break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    passt = !strcmp(frontend, "passt");
    if (ao.sr <= 0) die_usage("--sr 0 (keep each file's rate) is not supported: the mel filterbank needs one rate");
    if (passt) {
        if (set_wavcaps)
            die_usage("%s is a WavCaps front end option: the passt front end has no %s", set_wavcaps == O_AMIN ?
                      "--amin" : "--no-center", set_wavcaps == O_AMIN ? "amin floor" : "uncentred frames");
        pmel_config_default(&pc);
        pc.sr = ao.sr;
        pc.fmin_aug_range = fmin_aug;
        pc.fmax_aug_range = fmax_aug;
        pc.fmax = pc.sr / 2 - fmax_aug / 2; /* preprocess.py: fmax None -> sr // 2 - fmax_aug_range // 2 */
        if (set_nfft) pc.n_fft = mc.n_fft;
        if (win_set) pc.win_length = mc.win_length;
        if (set_hop) pc.hop = mc.hop;
        if (set_nmels) pc.n_mels = mc.n_mels;
        if (set_fmin) pc.fmin = mc.fmin;
        if (set_fmax) pc.fmax = mc.fmax;
        const char *bad = pmel_config_check(&pc);
        if (bad) die_usage("%s", bad);
        if (whole_clip && set_cut)
            die_usage("%s cuts the clip into pieces: not with --whole-clip", set_cut == O_SEGSEC ? "--segment-seconds"
                      : set_cut == O_SEGSAMP ? "--segment-samples" : "--segments");
        /* base.py split_audio: int(segment_length * sampling_rate) */
        seg_samples = seg_n ? seg_n : (long)(seg_seconds * pc.sr);
        if (!whole_clip && (seg_samples < (long)pmel_min_samples(&pc) || seg_samples > (1L << 30)))
            die_usage("a piece of %ld samples is outside [%zu, 2^30] (--segment-seconds / --segment-samples)",
                      seg_samples, pmel_min_samples(&pc));
        /* every draw must pass get_mel_banks' asserts */
        double top_fmin = pc.fmin + fmin_aug - 1, low_fmax = pc.fmax + fmax_aug / 2 - (fmax_aug - 1);
        if (jitter && (top_fmin >= low_fmax || pc.fmax + fmax_aug / 2 > pc.sr / 2.0))
            die_usage("--jitter: fmin %g + [0, %d) and fmax %g + %d - [0, %d) must stay in 0 <= fmin < fmax <= "
                      "sr / 2 (%g)", pc.fmin, fmin_aug, pc.fmax, fmax_aug / 2, fmax_aug, pc.sr / 2.0);
    } else {
        if (set_cut) set_passt = set_cut;
        if (set_passt)
            die_usage("%s needs --frontend passt", set_passt == O_JITTER ? "--jitter" : set_passt == O_FMINAUG ?
                      "--fmin-aug-range" : set_passt == O_FMAXAUG ? "--fmax-aug-range" : set_passt == O_SEED ?
                      "--seed" : set_passt == O_WHOLE ? "--whole-clip" : set_passt == O_SEGSEC ?
                      "--segment-seconds" : set_passt == O_SEGSAMP ? "--segment-samples" : "--segments");
        if (!win_set) mc.win_length = mc.n_fft;
        mc.sr = ao.sr;
        const char *bad = mel_config_check(&mc);
        if (bad) die_usage("%s", bad);
        if (mc.fmax > mc.sr / 2.0)
            warnx_("warning: --fmax %g is above the Nyquist frequency %g", mc.fmax, mc.sr / 2.0);
    }

    /* keep freed buffers in the heap instead of returning them to the kernel
     * and faulting them in again for the next file */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    worker_state states[64];
    memset(states, 0, sizeof states);
    thread_pool *tp = pool_new(threads);
    for (int t = 0; t < threads; t++) {
        if (passt) states[t].passt = pmel_init(&pc);
        else states[t].mel = mel_init(&mc);
    }

    ws_param pparams[] = {
        {"frontend", 's', 0, 0, "passt"},  {"sr", 'i', pc.sr, 0, 0},
        {"n_fft", 'i', pc.n_fft, 0, 0},    {"win_length", 'i', pc.win_length, 0, 0},
        {"hop", 'i', pc.hop, 0, 0},        {"n_mels", 'i', pc.n_mels, 0, 0},
        {"fmin", 'f', 0, pc.fmin, 0},      {"fmax", 'f', 0, pc.fmax, 0},
        {"preemphasis", 'f', 0, pc.preemph, 0}, {"center", 'i', 1, 0, 0},
        {"window", 's', 0, 0, "hann_symmetric"}, {"pad_mode", 's', 0, 0, "reflect"},
        {"mel_scale", 's', 0, 0, "kaldi"}, {"log_offset", 'f', 0, 1e-5, 0},
        {"norm", 's', 0, 0, "(log(mel+1e-5)+4.5)/5"}, {"jitter", 'i', jitter, 0, 0},
        {"fmin_aug_range", 'i', pc.fmin_aug_range, 0, 0}, {"fmax_aug_range", 'i', pc.fmax_aug_range, 0, 0},
        {"seed", 'i', (int64_t)seed, 0, 0}, {"resampler", 's', 0, 0, "soxr"},
        {"quality", 's', 0, 0, audio_quality_name(ao.quality)}, {"min_seconds", 'f', 0, ao.min_seconds, 0},
        {"cut", 's', 0, 0, whole_clip ? "whole" : "segments"},
        /* the cut's sizes (not in a --whole-clip stream): clap-audio checks them against the model */
        {"segment_samples", 'i', seg_samples, 0, 0}, {"segments", 'i', nseg, 0, 0},
        {"segment_frames", 'i', passt && !whole_clip ? (int64_t)pmel_frames(&pc, (size_t)seg_samples) : 0, 0, 0},
    };
    int npparams = (int)(sizeof pparams / sizeof pparams[0]) - (whole_clip ? 3 : 0);
    ws_param params[] = {
        {"frontend", 's', 0, 0, "wavcaps"},
        {"sr", 'i', mc.sr, 0, 0},          {"n_fft", 'i', mc.n_fft, 0, 0},
        {"win_length", 'i', mc.win_length, 0, 0}, {"hop", 'i', mc.hop, 0, 0},
        {"n_mels", 'i', mc.n_mels, 0, 0},   {"fmin", 'f', 0, mc.fmin, 0},
        {"fmax", 'f', 0, mc.fmax, 0},       {"amin", 'f', 0, mc.amin, 0},
        {"center", 'i', mc.center, 0, 0},   {"window", 's', 0, 0, "hann"},
        {"pad_mode", 's', 0, 0, "reflect"}, {"mel_scale", 's', 0, 0, "slaney"},
        {"mel_norm", 's', 0, 0, "slaney"},  {"resampler", 's', 0, 0, "soxr"},
        {"quality", 's', 0, 0, audio_quality_name(ao.quality)},
        {"min_seconds", 'f', 0, ao.min_seconds, 0},
    };
    ws_writer *w = passt ? ws_writer_open(stdout, "wav2mel", pparams, npparams, NULL)
                         : ws_writer_open(stdout, "wav2mel", params, (int)(sizeof params / sizeof params[0]), NULL);

    int window = 2 * threads;
    job *jobs = xcalloc((size_t)window, sizeof(job));
    long done = 0, listed = 0, total = optind < argc ? argc - optind : -1;
    progress pr;
    progress_init(&pr, "files", total);
    if (optind < argc) {
        for (int i = optind; i < argc;) {
            int n = 0;
            while (n < window && i < argc) {
                make_job(&jobs[n], NULL, argv[i], i - optind);
                n++, i++;
            }
            run_batch(jobs, n, states, tp);
            for (int k = 0; k < n; k++) emit(w, &jobs[k]);
            done += n;
            progress_update(&pr, done);
        }
    } else {
        if (isatty(0)) warnx_("reading a list of audio files from the terminal (see --help)");
        /* a batch takes the lines that are ready, so records still leave
         * as soon as their line has come in */
        line_reader lr;
        lr_init(&lr, 0, 1 << 20);
        int eof = 0;
        while (!eof) {
            int n = 0;
            while (n < window && (n == 0 || lr_ready(&lr))) {
                char *line;
                size_t len;
                int r = lr_next(&lr, &line, &len);
                if (r == LR_EOF) {
                    eof = 1;
                    break;
                }
                if (r == LR_ERROR) die("reading the file list: %m");
                char where[40];
                snprintf(where, sizeof where, "line %ld", lr.lineno);
                if (r == LR_TOO_LONG) {
                    ws_fail(w, where, "input line longer than 1 MiB: skipped");
                    continue;
                }
                if (len == 0) continue;
                if (memchr(line, 0, len)) {
                    ws_fail(w, where, "input line contains a NUL byte");
                    continue;
                }
                char *tab = strchr(line, '\t');
                if (tab) {
                    *tab = 0;
                    make_job(&jobs[n++], line, tab + 1, listed++);
                } else make_job(&jobs[n++], NULL, line, listed++);
            }
            if (n > 0) {
                run_batch(jobs, n, states, tp);
                for (int k = 0; k < n; k++) emit(w, &jobs[k]);
                done += n;
                progress_update(&pr, done);
            }
        }
        lr_free(&lr);
    }
    progress_end(&pr, done);
    long ok = ws_writer_records(w), failed = ws_writer_failed(w);
    ws_writer_close(w);
    close_stdout_or_die();
    pool_free(tp);
    for (int t = 0; t < threads; t++) {
        mel_free(states[t].mel);
        pmel_free(states[t].passt);
        audio_free(&states[t].audio);
    }
    free(jobs);
    return finish(ok, failed);
}
