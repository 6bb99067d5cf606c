/* mel.h - log mel spectrogram exactly as torchlibrosa 0.1.0 computes it for
 * WavCaps CLAP (wsac.md A.3): periodic Hann window, centred frames with
 * reflect padding of n_fft/2, |STFT|^2, librosa Slaney mel filterbank with
 * Slaney area normalisation, 10*log10(max(x, amin)), no top_db.
 *
 * Legend: N samples, T frames = 1 + N / hop, K = n_fft / 2 + 1 bins, M mels. */
#ifndef WSAC_MEL_H
#define WSAC_MEL_H

#include <stddef.h>

typedef struct {
    int sr;        /* 32000 */
    int n_fft;     /* 1024 */
    int win_length;/* 1024 (<= n_fft; centred in the frame like librosa pad_center) */
    int hop;       /* 320 */
    int n_mels;    /* 64 */
    double fmin;   /* 50 */
    double fmax;   /* 14000 */
    double amin;   /* 1e-10 */
    int center;    /* 1: reflect-pad n_fft/2 on both sides */
} mel_config;

void mel_config_default(mel_config *c);
/* NULL if valid, else a reason */
const char *mel_config_check(const mel_config *c);

typedef struct mel_state mel_state;

/* Plans the FFT once (FFTW_ESTIMATE: the same plan, and so the same bits,
 * every run). Not thread-safe to create; mel_compute on distinct states is. */
mel_state *mel_init(const mel_config *c);
void mel_free(mel_state *s);
const float *mel_filterbank(const mel_state *s); /* [K, M] */

/* Frames for N samples; 0 if N is too short (reflect padding needs N > n_fft/2). */
size_t mel_frames(const mel_config *c, size_t n);
/* out[T, M] from x[N]; returns T, or 0 when N is too short. */
size_t mel_compute(mel_state *s, const float *x, size_t n, float *out);

/* librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax) (htk=False, norm='slaney',
 * dtype float32), transposed: fb[K, M]. Returns the number of empty filters. */
int mel_filterbank_librosa(const mel_config *c, float *fb);

/* Reference kernel for tests: the same frames with a naive O(K * n_fft)
 * DFT in double; out[T, M]. */
size_t mel_compute_naive(const mel_config *c, const float *x, size_t n, float *out);

#endif
