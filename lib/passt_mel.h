/* passt_mel.h - the log mel front end SALSA feeds PaSST: hear21passt's
 * AugmentMelSTFT (models/preprocess.py) as models/audio/passt.py builds it
 * (n_mels 128, sr 32000, win_length 800, hopsize 320, n_fft 1024, fmin 0,
 * fmax None -> sr // 2 - fmax_aug_range // 2 = 15000, fmin_aug_range 10,
 * fmax_aug_range 2000; freqm = timem = 0 in SALSA's config). Per clip x[N]:
 *   1. pre-emphasis: conv1d with [[-0.97, 1]]: y[i] = x[i+1] - 0.97 x[i],
 *      N - 1 samples (one shorter);
 *   2. torch.stft(y, 1024, hop 320, win_length 800, center=True, reflect
 *      padding of 512, window hann_window(800, periodic=False) centred in
 *      the 1024 frame (112 zeros each side)): T = 1 + (N - 1) / 320 frames;
 *   3. power re^2 + im^2 of the 513 bins;
 *   4. torchaudio.compliance.kaldi.get_mel_banks(128, 1024, 32000, fmin,
 *      fmax, vtln_low 100, vtln_high -500, warp 1.0): triangles on Kaldi's
 *      mel scale 1127 ln(1 + f / 700) over the first 512 bins, the Nyquist
 *      bin padded with a zero weight;
 *   5. log(mel + 1e-5), then (x + 4.5) / 5.
 * Training-time augmentation (AugmentMelSTFT in training mode): fmin +
 * randint(fmin_aug_range), fmax + fmax_aug_range // 2 - randint(fmax_aug_range);
 * the caller draws them and passes the edges to pmel_compute.
 *
 * Numerics: everything in double (an own radix-2 FFT: n_fft must be a power
 * of two), rounded to float at the end, so the output is within float
 * rounding of a float64 evaluation of the published code.
 *
 * Legend: N samples, T frames, K = n_fft / 2 + 1 bins, M mels. */
#ifndef WSAC_PASST_MEL_H
#define WSAC_PASST_MEL_H

#include <stddef.h>

typedef struct {
    int sr;          /* 32000 */
    int n_fft;       /* 1024 (a power of two) */
    int win_length;  /* 800 (<= n_fft; periodic=False Hann, centred) */
    int hop;         /* 320 */
    int n_mels;      /* 128 */
    double fmin;     /* 0 */
    double fmax;     /* 15000 */
    double preemph;  /* 0.97: y[i] = x[i+1] - preemph * x[i] */
    int fmin_aug_range; /* 10: training jitter of fmin, [0, range) Hz */
    int fmax_aug_range; /* 2000: of fmax, (-range/2, range/2] Hz */
} pmel_config;

void pmel_config_default(pmel_config *c);
/* NULL if valid, else a reason */
const char *pmel_config_check(const pmel_config *c);

typedef struct pmel_state pmel_state;

/* Not thread-safe to create; pmel_compute on distinct states is. */
pmel_state *pmel_init(const pmel_config *c);
void pmel_free(pmel_state *s);

/* Frames for N samples: 1 + (N - 1) / hop; 0 if N - 1 <= n_fft / 2 (torch's
 * reflect padding needs the padding shorter than the signal). */
size_t pmel_frames(const pmel_config *c, size_t n);
/* the shortest N pmel_frames accepts */
size_t pmel_min_samples(const pmel_config *c);

/* out[T, M] from x[N] with the mel edges fmin, fmax (the config's, or the
 * jittered ones); returns T, or 0 when N is too short. */
size_t pmel_compute(pmel_state *s, const float *x, size_t n, double flo, double fhi, float *out);

/* get_mel_banks(M, n_fft, sr, fmin, fmax) padded to K columns: fb[M, K] in
 * double (the published code evaluates it in float32). Returns the number
 * of empty filters. */
int pmel_filterbank(const pmel_config *c, double flo, double fhi, double *fb);

/* The training-time edges for draw number `draw` of stream `seed`
 * (deterministic: splitmix64 of seed and draw): fmin + [0, fmin_aug_range),
 * fmax + fmax_aug_range / 2 - [0, fmax_aug_range), integers as torch.randint
 * gives them. */
void pmel_jitter(const pmel_config *c, unsigned long long seed, unsigned long long draw, double *flo,
                  double *fhi);

/* SALSA's long-audio rule on the waveform (experiments/ex_dcase24.py
 * get_data_set: set_fixed_length(30); dataset_base_classes.py
 * __get_fixed_length_audio__: zero padding to nseg * seg samples, longer
 * clips cropped (here to their first nseg * seg samples: the published
 * evaluation draws a random offset); models/audio/base.py split_audio: x
 * unfolded into nseg pieces of seg samples, each its own AugmentMelSTFT call;
 * forward_audio's mask: piece k counts when k < ceil(audio_length * nseg),
 * audio_length = min(N, nseg * seg) / (nseg * seg)).
 * The pieces kept for a clip of n samples (n >= 1), in [1, nseg]. */
int pmel_kept_segments(long n, long seg, int nseg);

/* out[k * S, M], S = pmel_frames(seg): the mels of pieces 0..k-1 of x[n]
 * zero-padded (each piece its own pre-emphasis, reflect padding and STFT, as
 * the published front end sees it); only pieces that reach past the clip's
 * end are copied. Returns k * S, or 0 when seg is too short for a frame. */
size_t pmel_compute_segments(pmel_state *s, const float *x, size_t n, size_t seg, int k, double flo, double fhi,
                             float *out);

/* Reference kernel for tests: the same output with a naive O(K * n_fft) DFT. */
size_t pmel_compute_naive(const pmel_config *c, const float *x, size_t n, double flo, double fhi, float *out);

#endif
