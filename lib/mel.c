/* mel.c - log mel spectrogram (see mel.h). Per frame: window -> FFTW r2c (one
 * plan for every frame) -> power [K] -> the filterbank, applied sparsely
 * (each triangle covers a few bins: ~2K multiply-adds instead of K*M) ->
 * 10 log10. The inner loops use GCC/clang vector extensions (4 floats; SSE2
 * on x86-64, NEON on arm64), since -O2 does not vectorize them. */
#include "mel.h"

#include <fftw3.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef float v4sf __attribute__((vector_size(16)));
typedef int v4si __attribute__((vector_size(16)));

static inline v4sf load4(const float *p) { /* unaligned */
    v4sf v;
    memcpy(&v, p, sizeof v);
    return v;
}

static inline void store4(float *p, v4sf v) { memcpy(p, &v, sizeof v); }

static inline float hsum4(v4sf v) { return (v[0] + v[1]) + (v[2] + v[3]); }

struct mel_state {
    mel_config c;
    int K;
    float *window;         /* [n_fft] periodic Hann, zero-padded to n_fft if win_length < n_fft */
    float *fb;             /* [K, M] dense, as librosa returns it (transposed) */
    int *kbeg, *kend;      /* [M] the bins [kbeg, kend) of filter m: its non-zero
                              span widened to multiples of 4 */
    float *wpack;          /* those weights (zero outside the triangle), filter after filter */
    int *woff;             /* [M] offset of filter m in wpack */
    float *in;             /* [n_fft] the windowed frame */
    fftwf_complex *spec;   /* [K + 4] */
    float *power;          /* [K rounded up to 4], zero past K */
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
    int K = s->K = c->n_fft / 2 + 1, M = c->n_mels;
    s->window = xmalloc_aligned((size_t)c->n_fft * sizeof(float));
    hann_periodic(c, s->window);
    s->fb = xmalloc_aligned((size_t)K * (size_t)M * sizeof(float));
    int empty = mel_filterbank_librosa(c, s->fb);
    if (empty) warnx_("warning: %d of %d mel filters are empty (n_mels too high for n_fft?)", empty, M);
    /* pack the non-zero span of each filter */
    s->kbeg = xmalloc((size_t)M * sizeof(int));
    s->kend = xmalloc((size_t)M * sizeof(int));
    s->woff = xmalloc((size_t)M * sizeof(int));
    int total = 0;
    for (int m = 0; m < M; m++) {
        int b = 0, e = 0;
        for (int k = 0; k < K; k++)
            if (s->fb[(size_t)k * M + m] != 0) {
                if (e == 0) b = k;
                e = k + 1;
            }
        s->kbeg[m] = b & ~3;
        s->kend[m] = (e + 3) & ~3;
        s->woff[m] = total;
        total += s->kend[m] - s->kbeg[m];
    }
    s->wpack = xcalloc((size_t)(total ? total : 1), sizeof(float));
    for (int m = 0; m < M; m++)
        for (int k = s->kbeg[m]; k < s->kend[m] && k < K; k++)
            s->wpack[s->woff[m] + k - s->kbeg[m]] = s->fb[(size_t)k * M + m];
    s->in = fftwf_malloc(sizeof(float) * (size_t)(c->n_fft + 4));
    s->spec = fftwf_malloc(sizeof(fftwf_complex) * (size_t)(K + 4));
    s->power = xmalloc_aligned(sizeof(float) * (size_t)((K + 3) & ~3));
    memset(s->power, 0, sizeof(float) * (size_t)((K + 3) & ~3));
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
    free(s->kbeg);
    free(s->kend);
    free(s->woff);
    free(s->wpack);
    free(s->power);
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
        long i = 0;
        for (; i + 4 <= N; i += 4) store4(dst + i, load4(src + i) * load4(w + i));
        for (; i < N; i++) dst[i] = src[i] * w[i];
    } else {
        for (long i = 0; i < N; i++) dst[i] = padded(x, (long)n, start + i, pad) * w[i];
    }
}

size_t mel_compute(mel_state *s, const float *x, size_t n, float *out) {
    const mel_config *c = &s->c;
    size_t T = mel_frames(c, n);
    int K = s->K, M = c->n_mels;
    const float amin = (float)c->amin, floor_db = (float)(10.0 * log10(c->amin)); /* exactly -100 */
    for (size_t t = 0; t < T; t++) {
        frame(c, s->window, x, n, t, s->in);
        fftwf_execute(s->plan);
        /* fftwf_complex may be float[2] or float _Complex (if <complex.h>
         * came first): read it as interleaved re, im */
        const float *ri = (const float *)s->spec;
        float *p = s->power;
        int k = 0;
        for (; k + 4 <= K; k += 4) {
            v4sf a = load4(ri + 2 * k), b = load4(ri + 2 * k + 4);
#ifdef __clang__
            v4sf re = __builtin_shufflevector(a, b, 0, 2, 4, 6), im = __builtin_shufflevector(a, b, 1, 3, 5, 7);
#else
            v4sf re = __builtin_shuffle(a, b, (v4si){0, 2, 4, 6}), im = __builtin_shuffle(a, b, (v4si){1, 3, 5, 7});
#endif
            store4(p + k, re * re + im * im);
        }
        for (; k < K; k++) p[k] = ri[2 * k] * ri[2 * k] + ri[2 * k + 1] * ri[2 * k + 1];
        float *o = out + t * (size_t)M;
        for (int m = 0; m < M; m++) {
            const float *w = s->wpack + s->woff[m];
            v4sf acc = {0, 0, 0, 0};
            for (int j = s->kbeg[m]; j < s->kend[m]; j += 4, w += 4) acc += load4(p + j) * load4(w);
            float v = hsum4(acc);
            /* torchlibrosa: 10 * log10(clamp(x, amin)) in float32; as ln(x) * 10/ln 10 */
            o[m] = v > amin ? (float)(10.0 / M_LN10) * logf(v) : floor_db;
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
