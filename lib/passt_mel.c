/* passt_mel.c - PaSST's log mel front end (see passt_mel.h). Per frame: the
 * pre-emphasised, reflect-padded samples under the window (computed on the
 * fly from x, so a clip needs no second buffer) -> a real FFT in double (a
 * complex radix-2 FFT of n_fft / 2 points on the even/odd samples, then the
 * split step) -> power [K] -> the filterbank, applied over each triangle's
 * non-zero bins -> log(mel + 1e-5), (x + 4.5) / 5. */
#include "passt_mel.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct pmel_state {
    pmel_config c;
    int K, H;          /* bins; H = n_fft / 2 complex points */
    double *window;    /* [n_fft] periodic=False Hann of win_length, centred */
    int wbeg, wend;    /* its non-zero span [wbeg, wend) */
    double *fb;        /* [M, K] for (fb_fmin, fb_fmax) */
    double fb_fmin, fb_fmax;
    int *kbeg, *kend;  /* [M] non-zero bins of filter m */
    double *tw;        /* [H] exp(-2 pi i j / H), interleaved cos, -sin */
    double *wk;        /* [H + 1] exp(-2 pi i k / n_fft), interleaved */
    int *rev;          /* [H] bit reversal */
    double *z;         /* [2H] the complex FFT buffer */
    double *power;     /* [K] */
    float *piece;      /* [cap_piece] a zero-padded segment */
    size_t cap_piece;
};

void pmel_config_default(pmel_config *c) {
    c->sr = 32000;
    c->n_fft = 1024;
    c->win_length = 800;
    c->hop = 320;
    c->n_mels = 128;
    c->fmin_aug_range = 10;
    c->fmax_aug_range = 2000;
    c->fmin = 0;
    c->fmax = c->sr / 2 - c->fmax_aug_range / 2; /* preprocess.py: fmax None -> sr // 2 - fmax_aug_range // 2 */
    c->preemph = 0.97;
}

const char *pmel_config_check(const pmel_config *c) {
    if (c->sr < 1) return "sample rate must be positive";
    if (c->n_fft < 4 || c->n_fft > (1 << 20) || (c->n_fft & (c->n_fft - 1)))
        return "n_fft must be a power of two in [4, 2^20] for the PaSST front end";
    if (c->win_length < 2 || c->win_length > c->n_fft) return "win_length must be in [2, n_fft]";
    if (c->hop < 1) return "hop must be positive";
    /* torchaudio get_mel_banks: num_bins > 3; 0 <= low < nyquist, 0 < high <= nyquist, low < high */
    if (c->n_mels < 4 || c->n_mels > 4096) return "n_mels must be in [4, 4096] (Kaldi mel banks need more than 3)";
    if (!(c->fmin >= 0) || !(c->fmax > c->fmin) || !(c->fmax <= c->sr / 2.0))
        return "need 0 <= fmin < fmax <= sr / 2 (Kaldi mel banks)";
    if (c->fmin_aug_range < 1 || c->fmax_aug_range < 1) return "the aug ranges must be >= 1 (1: no jitter)";
    if (!isfinite(c->preemph)) return "pre-emphasis must be finite";
    return NULL;
}

/* torchaudio.compliance.kaldi.mel_scale: 1127 ln(1 + f / 700) */
static double kaldi_mel(double f) { return 1127.0 * log(1.0 + f / 700.0); }

int pmel_filterbank(const pmel_config *c, double flo, double fhi, double *fb) {
    int K = c->n_fft / 2 + 1, M = c->n_mels, empty = 0;
    double fft_bin_width = (double)c->sr / (double)c->n_fft;
    double mlo = kaldi_mel(flo), mhi = kaldi_mel(fhi), delta = (mhi - mlo) / (M + 1);
    for (int m = 0; m < M; m++) {
        double left = mlo + m * delta, center = mlo + (m + 1.0) * delta, right = mlo + (m + 2.0) * delta;
        int nonzero = 0;
        for (int k = 0; k < K; k++) {
            double w = 0;
            if (k < K - 1) { /* num_fft_bins = n_fft / 2; the Nyquist column is F.pad(..., (0, 1)) */
                double mel = kaldi_mel(fft_bin_width * k);
                double up = (mel - left) / (center - left), down = (right - mel) / (right - center);
                w = fmax(0.0, fmin(up, down));
            }
            fb[(size_t)m * K + k] = w;
            if (w > 0) nonzero = 1;
        }
        if (!nonzero) empty++;
    }
    return empty;
}

static void set_bank(pmel_state *s, double flo, double fhi) {
    const pmel_config *c = &s->c;
    int K = s->K, M = c->n_mels;
    pmel_filterbank(c, flo, fhi, s->fb);
    for (int m = 0; m < M; m++) {
        int b = 0, e = 0;
        for (int k = 0; k < K; k++)
            if (s->fb[(size_t)m * K + k] != 0) {
                if (e == 0) b = k;
                e = k + 1;
            }
        s->kbeg[m] = b;
        s->kend[m] = e;
    }
    s->fb_fmin = flo;
    s->fb_fmax = fhi;
}

/* torch.hann_window(win_length, periodic=False), padded to n_fft as
 * torch.stft pads a shorter window: (n_fft - win_length) / 2 zeros left */
static void hann_symmetric(const pmel_config *c, double *w) {
    int off = (c->n_fft - c->win_length) / 2, L = c->win_length;
    for (int i = 0; i < c->n_fft; i++) w[i] = 0;
    for (int i = 0; i < L; i++) w[off + i] = 0.5 - 0.5 * cos(2.0 * M_PI * (double)i / (double)(L - 1));
}

pmel_state *pmel_init(const pmel_config *c) {
    pmel_state *s = xcalloc(1, sizeof *s);
    s->c = *c;
    int N = c->n_fft, K = s->K = N / 2 + 1, H = s->H = N / 2, M = c->n_mels;
    s->window = xmalloc((size_t)N * sizeof(double));
    hann_symmetric(c, s->window);
    s->wbeg = (N - c->win_length) / 2;
    s->wend = s->wbeg + c->win_length;
    s->fb = xmalloc((size_t)M * (size_t)K * sizeof(double));
    s->kbeg = xmalloc((size_t)M * sizeof(int));
    s->kend = xmalloc((size_t)M * sizeof(int));
    set_bank(s, c->fmin, c->fmax);
    s->tw = xmalloc((size_t)H * 2 * sizeof(double));
    for (int j = 0; j < H; j++) {
        s->tw[2 * j] = cos(2.0 * M_PI * j / H);
        s->tw[2 * j + 1] = -sin(2.0 * M_PI * j / H);
    }
    s->wk = xmalloc((size_t)(H + 1) * 2 * sizeof(double));
    for (int k = 0; k <= H; k++) {
        s->wk[2 * k] = cos(2.0 * M_PI * k / N);
        s->wk[2 * k + 1] = -sin(2.0 * M_PI * k / N);
    }
    s->rev = xmalloc((size_t)H * sizeof(int));
    int bits = 0;
    while ((1 << bits) < H) bits++;
    for (int i = 0; i < H; i++) {
        int r = 0;
        for (int b = 0; b < bits; b++)
            if (i & (1 << b)) r |= 1 << (bits - 1 - b);
        s->rev[i] = r;
    }
    s->z = xmalloc((size_t)H * 2 * sizeof(double));
    s->power = xmalloc((size_t)K * sizeof(double));
    return s;
}

void pmel_free(pmel_state *s) {
    if (!s) return;
    free(s->window);
    free(s->fb);
    free(s->kbeg);
    free(s->kend);
    free(s->tw);
    free(s->wk);
    free(s->rev);
    free(s->z);
    free(s->power);
    free(s->piece);
    free(s);
}

size_t pmel_min_samples(const pmel_config *c) { return (size_t)(c->n_fft / 2) + 2; }

size_t pmel_frames(const pmel_config *c, size_t n) {
    if (n < pmel_min_samples(c)) return 0; /* reflect padding of n_fft/2 needs n - 1 > n_fft/2 */
    return 1 + (n - 1) / (size_t)c->hop;
}

/* sample j of the pre-emphasised signal, y[j] = x[j+1] - a x[j], j < n - 1 */
static inline double pre(const float *x, double a, long j) { return (double)x[j + 1] - a * (double)x[j]; }

/* frame t of the windowed, reflect-padded pre-emphasised signal into the
 * complex buffer as z[i] = f[2i] + i f[2i+1], in bit-reversed order */
static void load_frame(pmel_state *s, const float *x, size_t n, size_t t) {
    const pmel_config *c = &s->c;
    long L = (long)n - 1, pad = c->n_fft / 2, start = (long)t * c->hop - pad;
    double a = c->preemph;
    memset(s->z, 0, (size_t)s->H * 2 * sizeof(double));
    for (long i = s->wbeg; i < s->wend; i++) {
        long j = start + i;
        if (j < 0) j = -j; /* torch reflect: the edge sample is not repeated */
        if (j >= L) j = 2 * (L - 1) - j;
        double v = pre(x, a, j) * s->window[i];
        s->z[2 * s->rev[i >> 1] + (i & 1)] = v;
    }
}

/* in-place radix-2 FFT of the bit-reversed z[H] */
static void fft(pmel_state *s) {
    int H = s->H;
    double *z = s->z;
    for (int len = 2; len <= H; len <<= 1) {
        int half = len >> 1, step = H / len;
        for (int i = 0; i < H; i += len)
            for (int j = 0; j < half; j++) {
                double wr = s->tw[2 * j * step], wi = s->tw[2 * j * step + 1];
                double *p = z + 2 * (i + j), *q = z + 2 * (i + j + half);
                double tr = q[0] * wr - q[1] * wi, ti = q[0] * wi + q[1] * wr;
                q[0] = p[0] - tr;
                q[1] = p[1] - ti;
                p[0] += tr;
                p[1] += ti;
            }
    }
}

/* |X[k]|^2 for k = 0..H from the packed FFT Z: E = (Z[k] + conj Z[H-k]) / 2,
 * O = (Z[k] - conj Z[H-k]) / 2i, X = E + W^k O */
static void split_power(pmel_state *s) {
    int H = s->H;
    const double *z = s->z;
    for (int k = 0; k <= H; k++) {
        int a = k % H, b = (H - k) % H;
        double zr = z[2 * a], zi = z[2 * a + 1], cr = z[2 * b], ci = -z[2 * b + 1];
        double er = 0.5 * (zr + cr), ei = 0.5 * (zi + ci);
        double dr = 0.5 * (zr - cr), di = 0.5 * (zi - ci); /* O = d / i = (di, -dr) */
        double orr = di, oi = -dr;
        double wr = s->wk[2 * k], wi = s->wk[2 * k + 1];
        double xr = er + orr * wr - oi * wi, xi = ei + orr * wi + oi * wr;
        s->power[k] = xr * xr + xi * xi;
    }
}

static void mel_out(const pmel_state *s, float *o) {
    const pmel_config *c = &s->c;
    int K = s->K;
    for (int m = 0; m < c->n_mels; m++) {
        const double *w = s->fb + (size_t)m * K;
        double acc = 0;
        for (int k = s->kbeg[m]; k < s->kend[m]; k++) acc += w[k] * s->power[k];
        /* preprocess.py: (melspec + 0.00001).log(), then (melspec + 4.5) / 5. */
        o[m] = (float)((log(acc + 1e-5) + 4.5) / 5.0);
    }
}

size_t pmel_compute(pmel_state *s, const float *x, size_t n, double flo, double fhi, float *out) {
    size_t T = pmel_frames(&s->c, n);
    if (T == 0) return 0;
    if (flo != s->fb_fmin || fhi != s->fb_fmax) set_bank(s, flo, fhi);
    for (size_t t = 0; t < T; t++) {
        load_frame(s, x, n, t);
        fft(s);
        split_power(s);
        mel_out(s, out + t * (size_t)s->c.n_mels);
    }
    return T;
}

int pmel_kept_segments(long n, long seg, int nseg) {
    double fixed = (double)seg * nseg;
    /* ex_dcase24.py: audio_length = min(len, fixed) / fixed (float64, collated
     * as such); mask[:math.ceil(audio_length * nseg)] = 1 */
    double a = ((double)n < fixed ? (double)n : fixed) / fixed;
    int k = (int)ceil(a * nseg);
    if (k < 1) k = 1;
    if (k > nseg) k = nseg;
    return k;
}

size_t pmel_compute_segments(pmel_state *s, const float *x, size_t n, size_t seg, int k, double flo, double fhi,
                             float *out) {
    size_t S = pmel_frames(&s->c, seg), M = (size_t)s->c.n_mels;
    if (S == 0) return 0;
    for (int b = 0; b < k; b++) {
        size_t t0 = (size_t)b * seg;
        const float *piece = x + t0;
        if (t0 + seg > n) { /* base.py split_audio on the zero-padded clip */
            if (s->cap_piece < seg) {
                free(s->piece);
                s->piece = xmalloc(seg * sizeof(float));
                s->cap_piece = seg;
            }
            size_t have = n > t0 ? n - t0 : 0;
            if (have) memcpy(s->piece, x + t0, have * sizeof(float));
            memset(s->piece + have, 0, (seg - have) * sizeof(float));
            piece = s->piece;
        }
        pmel_compute(s, piece, seg, flo, fhi, out + (size_t)b * S * M);
    }
    return (size_t)k * S;
}

size_t pmel_compute_naive(const pmel_config *c, const float *x, size_t n, double flo, double fhi, float *out) {
    size_t T = pmel_frames(c, n);
    if (T == 0) return 0;
    pmel_state *s = pmel_init(c);
    set_bank(s, flo, fhi);
    int N = c->n_fft, K = s->K;
    double *f = xmalloc((size_t)N * sizeof(double));
    long L = (long)n - 1, pad = N / 2;
    for (size_t t = 0; t < T; t++) {
        for (long i = 0; i < N; i++) {
            long j = (long)t * c->hop - pad + i;
            if (j < 0) j = -j;
            if (j >= L) j = 2 * (L - 1) - j;
            f[i] = pre(x, c->preemph, j) * s->window[i];
        }
        for (int k = 0; k < K; k++) {
            double re = 0, im = 0;
            for (int i = 0; i < N; i++) {
                double a = 2.0 * M_PI * (double)(((long)k * i) % N) / N;
                re += f[i] * cos(a);
                im -= f[i] * sin(a);
            }
            s->power[k] = re * re + im * im;
        }
        for (int m = 0; m < c->n_mels; m++) {
            double acc = 0;
            for (int k = 0; k < K; k++) acc += s->fb[(size_t)m * K + k] * s->power[k];
            out[t * (size_t)c->n_mels + m] = (float)((log(acc + 1e-5) + 4.5) / 5.0);
        }
    }
    free(f);
    pmel_free(s);
    return T;
}

static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void pmel_jitter(const pmel_config *c, unsigned long long seed, unsigned long long draw, double *flo,
                  double *fhi) {
    uint64_t st = (uint64_t)seed ^ ((uint64_t)draw * 0xd1b54a32d192ed03ULL);
    uint64_t a = splitmix64(&st), b = splitmix64(&st);
    /* preprocess.py forward(): fmin + randint(fmin_aug_range),
     * fmax + fmax_aug_range // 2 - randint(fmax_aug_range) */
    *flo = c->fmin + (double)(a % (uint64_t)c->fmin_aug_range);
    *fhi = c->fmax + (double)(c->fmax_aug_range / 2) - (double)(b % (uint64_t)c->fmax_aug_range);
}
