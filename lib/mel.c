/* mel.c - log mel spectrogram (see mel.h). Frames are processed in blocks:
 * window -> FFTW r2c (one plan, per frame) -> power [B, K] -> sgemm with the
 * filterbank [K, M] -> 10 log10. */
#include "mel.h"

#include <cblas.h>
#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

#define BLOCK 64

struct mel_state {
    mel_config c;
    int K, in_stride, out_stride;
    float *window;         /* [n_fft] periodic Hann, zero-padded to n_fft if win_length < n_fft */
    float *fb;             /* [K, M] */
    float *in;             /* [BLOCK, in_stride] windowed frames */
    fftwf_complex *spec;   /* [BLOCK, out_stride] */
    float *power;          /* [BLOCK, K] */
    float *melblk;         /* [BLOCK, M] */
    fftwf_plan plan;
};

void mel_config_default(mel_config *c) {
    c->sr = 32000;
    c->n_fft = 1024;
    c->win_length = 1024;
    c->hop = 320;
    c->n_mels = 64;
    c->fmin = 50;
    c->fmax = 14000;
    c->amin = 1e-10;
    c->center = 1;
}

const char *mel_config_check(const mel_config *c) {
    if (c->sr < 1) return "sample rate must be positive";
    if (c->n_fft < 2 || c->n_fft > (1 << 20)) return "n_fft must be in [2, 2^20]";
    if (c->win_length < 1 || c->win_length > c->n_fft) return "win_length must be in [1, n_fft]";
    if (c->hop < 1) return "hop must be positive";
    if (c->n_mels < 1 || c->n_mels > 4096) return "n_mels must be in [1, 4096]";
    if (!(c->fmin >= 0) || !(c->fmax > c->fmin)) return "need 0 <= fmin < fmax";
    if (!(c->amin > 0)) return "amin must be positive";
    return NULL;
}

/* librosa.core.convert.hz_to_mel(htk=False): the Slaney scale */
static double hz_to_mel(double f) {
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    if (f >= min_log_hz) return min_log_mel + log(f / min_log_hz) / logstep;
    return f / f_sp;
}

static double mel_to_hz(double m) {
    const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp;
    const double logstep = log(6.4) / 27.0;
    if (m >= min_log_mel) return min_log_hz * exp(logstep * (m - min_log_mel));
    return f_sp * m;
}

int mel_filterbank_librosa(const mel_config *c, float *fb) {
    int K = c->n_fft / 2 + 1, M = c->n_mels, empty = 0;
    double *mel_f = xmalloc((size_t)(M + 2) * sizeof(double));
    /* np.linspace(min_mel, max_mel, M + 2): i * step + start, last = stop */
    double lo = hz_to_mel(c->fmin), hi = hz_to_mel(c->fmax), step = (hi - lo) / (M + 1);
    for (int i = 0; i < M + 2; i++) mel_f[i] = mel_to_hz(i == M + 1 ? hi : (double)i * step + lo);
    for (int m = 0; m < M; m++) {
        double fd0 = mel_f[m + 1] - mel_f[m], fd1 = mel_f[m + 2] - mel_f[m + 1];
        double enorm = 2.0 / (mel_f[m + 2] - mel_f[m]);
        int nonzero = 0;
        for (int k = 0; k < K; k++) {
            double f = (double)k * ((double)c->sr / (double)c->n_fft); /* np.fft.rfftfreq */
            double lower = -(mel_f[m] - f) / fd0, upper = (mel_f[m + 2] - f) / fd1;
            double w = fmax(0.0, fmin(lower, upper));
            /* weights is a float32 array; `weights *= enorm` computes in
             * float64 and rounds back to float32 */
            float w32 = (float)w;
            fb[(size_t)k * M + m] = (float)((double)w32 * enorm);
            if (w32 > 0) nonzero = 1;
        }
        if (!nonzero) empty++;
    }
    free(mel_f);
    return empty;
}

size_t mel_frames(const mel_config *c, size_t n) {
    if (c->center) {
        if (n <= (size_t)(c->n_fft / 2)) return 0; /* torch reflect pad needs pad < N */
        return 1 + n / (size_t)c->hop;
    }
    if (n < (size_t)c->n_fft) return 0;
    return 1 + (n - (size_t)c->n_fft) / (size_t)c->hop;
}

static void hann_periodic(const mel_config *c, float *w) {
    /* scipy.signal.get_window('hann', win_length, fftbins=True), then
     * librosa.util.pad_center to n_fft */
    int off = (c->n_fft - c->win_length) / 2;
    memset(w, 0, (size_t)c->n_fft * sizeof(float));
    for (int i = 0; i < c->win_length; i++)
        w[off + i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * (double)i / (double)c->win_length));
}

mel_state *mel_init(const mel_config *c) {
    mel_state *s = xcalloc(1, sizeof *s);
    s->c = *c;
    s->K = c->n_fft / 2 + 1;
    s->in_stride = (c->n_fft + 15) & ~15;   /* keep every frame 64-byte aligned */
    s->out_stride = (s->K + 7) & ~7;
    s->window = xmalloc_aligned((size_t)c->n_fft * sizeof(float));
    hann_periodic(c, s->window);
    s->fb = xmalloc_aligned((size_t)s->K * (size_t)c->n_mels * sizeof(float));
    int empty = mel_filterbank_librosa(c, s->fb);
    if (empty) warnx_("warning: %d of %d mel filters are empty (n_mels too high for n_fft?)", empty, c->n_mels);
    s->in = fftwf_malloc(sizeof(float) * (size_t)BLOCK * (size_t)s->in_stride);
    s->spec = fftwf_malloc(sizeof(fftwf_complex) * (size_t)BLOCK * (size_t)s->out_stride);
    s->power = xmalloc_aligned(sizeof(float) * (size_t)BLOCK * (size_t)s->K);
    s->melblk = xmalloc_aligned(sizeof(float) * (size_t)BLOCK * (size_t)c->n_mels);
    if (!s->in || !s->spec) die("out of memory (FFT buffers)");
    s->plan = fftwf_plan_dft_r2c_1d(c->n_fft, s->in, s->spec, FFTW_ESTIMATE);
    if (!s->plan) die("FFTW could not plan a %d-point transform", c->n_fft);
    return s;
}

void mel_free(mel_state *s) {
    if (!s) return;
    fftwf_destroy_plan(s->plan);
    fftwf_free(s->in);
    fftwf_free(s->spec);
    free(s->window);
    free(s->fb);
    free(s->power);
    free(s->melblk);
    free(s);
}

const float *mel_filterbank(const mel_state *s) { return s->fb; }

/* sample i of the centred, reflect-padded signal (torch.nn.functional.pad
 * mode='reflect': the edge sample is not repeated) */
static inline float padded(const float *x, long n, long i, long pad) {
    long j = i - pad;
    if (j < 0) j = -j;
    if (j >= n) j = 2 * (n - 1) - j;
    return x[j];
}

/* frame t, windowed, into dst[n_fft] */
static void frame(const mel_config *c, const float *w, const float *x, size_t n, size_t t, float *dst) {
    long start = (long)t * c->hop, N = c->n_fft, pad = c->center ? N / 2 : 0;
    long lo = start - pad, hi = start - pad + N; /* range in x */
    if (lo >= 0 && hi <= (long)n) {
        const float *src = x + lo;
        for (long i = 0; i < N; i++) dst[i] = src[i] * w[i];
    } else {
        for (long i = 0; i < N; i++) dst[i] = padded(x, (long)n, start + i, pad) * w[i];
    }
}

size_t mel_compute(mel_state *s, const float *x, size_t n, float *out) {
    const mel_config *c = &s->c;
    size_t T = mel_frames(c, n);
    int K = s->K, M = c->n_mels;
    float amin = (float)c->amin;
    for (size_t t0 = 0; t0 < T; t0 += BLOCK) {
        int B = (int)(T - t0 < BLOCK ? T - t0 : BLOCK);
        for (int b = 0; b < B; b++) {
            float *in = s->in + (size_t)b * s->in_stride;
            fftwf_complex *sp = s->spec + (size_t)b * s->out_stride;
            frame(c, s->window, x, n, t0 + (size_t)b, in);
            fftwf_execute_dft_r2c(s->plan, in, sp);
            /* fftwf_complex may be float[2] or float _Complex (if <complex.h>
             * came first): read it as interleaved re, im */
            const float *ri = (const float *)sp;
            float *p = s->power + (size_t)b * K;
            for (int k = 0; k < K; k++) p[k] = ri[2 * k] * ri[2 * k] + ri[2 * k + 1] * ri[2 * k + 1];
        }
        /* melblk[B, M] = power[B, K] @ fb[K, M] */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, M, K, 1.0f, s->power, K, s->fb, M, 0.0f,
                    s->melblk, M);
        float *o = out + t0 * (size_t)M;
        for (int i = 0; i < B * M; i++) {
            float v = s->melblk[i];
            o[i] = (float)(10.0 * log10((double)(v > amin ? v : amin)));
        }
    }
    return T;
}

size_t mel_compute_naive(const mel_config *c, const float *x, size_t n, float *out) {
    size_t T = mel_frames(c, n);
    int N = c->n_fft, K = N / 2 + 1, M = c->n_mels;
    float *w = xmalloc((size_t)N * sizeof(float)), *fr = xmalloc((size_t)N * sizeof(float));
    float *fb = xmalloc((size_t)K * (size_t)M * sizeof(float));
    double *p = xmalloc((size_t)K * sizeof(double));
    hann_periodic(c, w);
    mel_filterbank_librosa(c, fb);
    for (size_t t = 0; t < T; t++) {
        frame(c, w, x, n, t, fr);
        for (int k = 0; k < K; k++) {
            double re = 0, im = 0;
            for (int i = 0; i < N; i++) {
                double a = 2.0 * M_PI * (double)(((long)k * i) % N) / N;
                re += fr[i] * cos(a);
                im -= fr[i] * sin(a);
            }
            p[k] = re * re + im * im;
        }
        for (int m = 0; m < M; m++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += p[k] * fb[(size_t)k * M + m];
            out[t * (size_t)M + m] = (float)(10.0 * log10(acc > c->amin ? acc : c->amin));
        }
    }
    free(w);
    free(fr);
    free(fb);
    free(p);
    return T;
}
