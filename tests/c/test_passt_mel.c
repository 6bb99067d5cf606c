/* test_passt_mel.c - PaSST's mel front end (lib/passt_mel.c).
 *
 * With no arguments: unit checks (the FFT path against the naive DFT, frame
 * counts and the shortest input, the Kaldi filterbank's shape, the jitter's
 * ranges and determinism, SALSA's cut: kept pieces at the mask's boundaries,
 * each piece's mel equal to the mel of the piece copied out and zero-padded).
 *
 * Helper mode for tests/py/test_wav2mel_passt.py:
 *   --samples SR FILE   the mono samples lib/audio.c gives wav2mel for FILE at
 *                       SR (libsndfile + libsoxr, as wav2mel --sr SR), as raw
 *                       float32 on stdout, so the reference can be applied
 *                       to the very signal wav2mel resampled. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"
#include "check.h"
#include "passt_mel.h"

static int helper(int argc, char **argv) {
    if (argc != 4 || strcmp(argv[1], "--samples")) {
        fprintf(stderr, "usage: test_passt_mel --samples SR FILE\n");
        return 1;
    }
    audio_opts o;
    audio_opts_default(&o);
    o.sr = atoi(argv[2]);
    audio_buf a;
    memset(&a, 0, sizeof a);
    char err[512];
    if (audio_load(argv[3], &o, &a, err, sizeof err)) {
        fprintf(stderr, "test_passt_mel: %s\n", err);
        return 2;
    }
    fwrite(a.x, sizeof(float), a.n, stdout);
    audio_free(&a);
    return fflush(stdout) ? 2 : 0;
}

static float *signal(size_t n, unsigned seed) {
    float *x = malloc(n * sizeof(float));
    unsigned s = seed;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        double noise = ((s >> 8) / 16777216.0 - 0.5) * 0.2;
        x[i] = (float)(0.3 * sin(2 * M_PI * 440.0 * (double)i / 32000.0) +
                       0.1 * sin(2 * M_PI * 9000.0 * (double)i / 32000.0) + noise);
    }
    return x;
}

static void test_fft_vs_naive(void) {
    pmel_config c;
    pmel_config_default(&c);
    pmel_state *s = pmel_init(&c);
    size_t lens[] = {514, 515, 833, 3201};
    for (int i = 0; i < 4; i++) {
        size_t n = lens[i], T = pmel_frames(&c, n);
        float *x = signal(n, 7 + (unsigned)i);
        float *a = malloc(T * 128 * sizeof(float)), *b = malloc(T * 128 * sizeof(float));
        size_t ta = pmel_compute(s, x, n, c.fmin, c.fmax, a), tb = pmel_compute_naive(&c, x, n, c.fmin, c.fmax, b);
        double d = 0;
        for (size_t k = 0; k < T * 128; k++) d = fmax(d, fabs((double)a[k] - (double)b[k]));
        char name[96];
        snprintf(name, sizeof name, "FFT path equals the naive DFT (N=%zu, T=%zu)", n, T);
        CHECKF(ta == T && tb == T && d <= 1e-6, name, "T %zu %zu, max diff %g", ta, tb, d);
        free(x);
        free(a);
        free(b);
    }
    /* jittered edges on the same state: the bank follows, and back */
    size_t n = 3201, T = pmel_frames(&c, n);
    float *x = signal(n, 3), *a = malloc(T * 128 * sizeof(float)), *b = malloc(T * 128 * sizeof(float));
    pmel_compute(s, x, n, c.fmin, c.fmax, b);
    pmel_compute(s, x, n, 7, 15900, a);
    int same = memcmp(a, b, T * 128 * sizeof(float)) == 0;
    pmel_compute_naive(&c, x, n, 7, 15900, b);
    double d = 0;
    for (size_t k = 0; k < T * 128; k++) d = fmax(d, fabs((double)a[k] - (double)b[k]));
    CHECKF(d <= 1e-6 && !same, "other mel edges: the bank is rebuilt (matches the naive path)", "%g", d);
    pmel_compute(s, x, n, c.fmin, c.fmax, a);
    pmel_compute_naive(&c, x, n, c.fmin, c.fmax, b);
    d = 0;
    for (size_t k = 0; k < T * 128; k++) d = fmax(d, fabs((double)a[k] - (double)b[k]));
    CHECKF(d <= 1e-6, "back to the default edges", "%g", d);
    free(x);
    free(a);
    free(b);
    pmel_free(s);
}

static void test_frames(void) {
    pmel_config c;
    pmel_config_default(&c);
    CHECK(c.fmax == 15000 && c.n_mels == 128 && c.win_length == 800 && c.hop == 320 && c.n_fft == 1024,
          "defaults: SALSA's AugmentMelSTFT (fmax 16000 - 2000/2)");
    CHECK(pmel_config_check(&c) == NULL, "defaults are valid");
    CHECK(pmel_frames(&c, 0) == 0 && pmel_frames(&c, 513) == 0 && pmel_frames(&c, 514) == 2,
          "shortest input 514 samples (conv1d leaves 513 > the 512 of reflect padding)");
    CHECK(pmel_min_samples(&c) == 514, "pmel_min_samples 514");
    CHECK(pmel_frames(&c, 320001) == 1001 && pmel_frames(&c, 320000) == 1000,
          "T = 1 + (N - 1) / 320 (10 s: 1000 frames, as PaSST's input_tdim)");
    pmel_config b = c;
    b.n_fft = 1000;
    CHECK(pmel_config_check(&b) != NULL, "n_fft not a power of two refused");
    b = c;
    b.fmax = 16001;
    CHECK(pmel_config_check(&b) != NULL, "fmax above Nyquist refused (Kaldi's assert)");
    b = c;
    b.n_mels = 3;
    CHECK(pmel_config_check(&b) != NULL, "3 mel bins refused (Kaldi needs > 3)");
}

static void test_bank(void) {
    pmel_config c;
    pmel_config_default(&c);
    int K = 513, M = 128;
    double *fb = malloc((size_t)M * K * sizeof(double));
    int empty = pmel_filterbank(&c, 0, 15000, fb);
    int nyq = 1, above = 1;
    for (int m = 0; m < M; m++) {
        if (fb[(size_t)m * K + K - 1] != 0) nyq = 0;
        for (int k = 0; k < K; k++) {
            if (k * 31.25 > 15000 && fb[(size_t)m * K + k] != 0) above = 0;
        }
    }
    CHECKF(empty == 0, "Kaldi bank: no empty filter (fmin 0, 15000 Hz, n_fft 1024)", "%d", empty);
    CHECK(nyq, "Kaldi bank: the Nyquist column is zero (F.pad(..., (0, 1)))");
    CHECK(above, "Kaldi bank: nothing above fmax");
    /* filter 60's weight at bin 100, by hand: 1127 ln(1 + f / 700) */
    double mlo = 0, mhi = 1127.0 * log(1.0 + 15000.0 / 700.0), dl = (mhi - mlo) / 129;
    double mel = 1127.0 * log(1.0 + 100 * 31.25 / 700.0), l = 60 * dl, ce = 61 * dl, r = 62 * dl;
    double want = fmax(0, fmin((mel - l) / (ce - l), (r - mel) / (r - ce)));
    CHECKF(fabs(fb[(size_t)60 * K + 100] - want) < 1e-15, "Kaldi bank: a weight by hand", "%g vs %g",
           fb[(size_t)60 * K + 100], want);
    free(fb);
}

static void test_jitter(void) {
    pmel_config c;
    pmel_config_default(&c);
    double lo_min = 1e9, lo_max = -1, hi_min = 1e9, hi_max = -1;
    int same = 1;
    for (int i = 0; i < 20000; i++) {
        double a, b, a2, b2;
        pmel_jitter(&c, 42, (unsigned long long)i, &a, &b);
        pmel_jitter(&c, 42, (unsigned long long)i, &a2, &b2);
        if (a != a2 || b != b2) same = 0;
        lo_min = fmin(lo_min, a), lo_max = fmax(lo_max, a), hi_min = fmin(hi_min, b), hi_max = fmax(hi_max, b);
        if (a != floor(a) || b != floor(b)) same = 0;
    }
    CHECK(same, "jitter: deterministic per (seed, draw), whole hertz");
    CHECKF(lo_min == 0 && lo_max == 9, "jitter: fmin in 0 + [0, 10)", "%g..%g", lo_min, lo_max);
    CHECKF(hi_min == 14001 && hi_max == 16000, "jitter: fmax in 15000 + 1000 - [0, 2000)", "%g..%g", hi_min, hi_max);
    double a, b, a2, b2;
    pmel_jitter(&c, 1, 5, &a, &b);
    pmel_jitter(&c, 2, 5, &a2, &b2);
    CHECK(a != a2 || b != b2, "jitter: another seed, other draws");
}

static void test_segments(void) {
    /* forward_audio: ceil(min(N, 960000) / 960000 * 3) */
    long n[] = {1, 319999, 320000, 320001, 640000, 640001, 959999, 960000, 960001, 5000000};
    int want[] = {1, 1, 1, 2, 2, 3, 3, 3, 3, 3}, ok = 1;
    for (size_t i = 0; i < sizeof n / sizeof n[0]; i++) ok &= pmel_kept_segments(n[i], 320000, 3) == want[i];
    CHECK(ok, "kept pieces: 1 up to 10 s, 2 up to 20 s, 3 beyond; 1 for one sample");
    CHECK(pmel_kept_segments(9600, 9600, 3) == 1 && pmel_kept_segments(9601, 9600, 3) == 2 &&
              pmel_kept_segments(7, 5, 1) == 1, "kept pieces: small sizes");
    /* odd sizes: 2 pieces of 2777 samples (hop 320: 9 frames each) of a 4000-sample clip, 3 to the fixed length */
    pmel_config c;
    pmel_config_default(&c);
    size_t seg = 2777, N = 4000, S = pmel_frames(&c, seg), M = (size_t)c.n_mels;
    float *x = malloc(N * sizeof(float)), *pad = calloc(3 * seg, sizeof(float));
    for (size_t i = 0; i < N; i++) x[i] = pad[i] = (float)(0.3 * sin(0.05 * (double)i) + 0.01 * (double)(i % 7));
    int k = pmel_kept_segments((long)N, (long)seg, 3);
    float *out = malloc((size_t)3 * S * M * sizeof(float)), *ref = malloc(S * M * sizeof(float));
    pmel_state *st = pmel_init(&c);
    size_t T = pmel_compute_segments(st, x, N, seg, k, c.fmin, c.fmax, out);
    double d = 0;
    for (int b = 0; b < k; b++) {
        pmel_compute(st, pad + (size_t)b * seg, seg, c.fmin, c.fmax, ref);
        for (size_t i = 0; i < S * M; i++) d = fmax(d, fabs((double)out[(size_t)b * S * M + i] - ref[i]));
    }
    CHECKF(k == 2 && S == 9 && T == 18 && d == 0, "the cut: each piece = the mel of the zero-padded piece, bit for bit",
           "k %d S %zu T %zu diff %g", k, S, T, d);
    pmel_free(st);
    free(x), free(pad), free(out), free(ref);
}

int main(int argc, char **argv) {
    if (argc > 1) return helper(argc, argv);
    test_frames();
    test_bank();
    test_fft_vs_naive();
    test_jitter();
    test_segments();
    return check_exit();
}
