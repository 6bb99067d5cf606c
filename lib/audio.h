/* audio.h - loading audio as librosa.load(path, sr=SR, mono=True) does:
 * decode with libsndfile (float, normalised like soundfile), average the
 * channels in float32, resample with libsoxr (soxr_hq by default), and fix the
 * length to ceil(N * sr_out / sr_in) (librosa.resample(fix=True)). */
#ifndef WSAC_AUDIO_H
#define WSAC_AUDIO_H

#include <stddef.h>

typedef struct {
    int sr;               /* target sample rate; 0: keep the file's */
    int quality;          /* soxr recipe: SOXR_QQ..SOXR_VHQ (default SOXR_HQ) */
    double max_seconds;   /* refuse longer input (bounded memory) */
    double min_seconds;   /* zero-pad shorter output at the end (0: off) */
} audio_opts;

void audio_opts_default(audio_opts *o);
/* "qq" "lq" "mq" "hq" "vhq" -> soxr recipe; -1 if unknown */
int audio_quality_parse(const char *s);
const char *audio_quality_name(int quality);

/* The result of a load, and the buffers behind it: start zeroed, pass the
 * same one to every audio_load() so its memory is reused from file to file
 * (no allocation or page faults per file once it is warm), audio_free() at
 * the end. */
typedef struct {
    float *x;        /* [n] mono samples at sr */
    size_t n;
    int sr;
    int file_sr;     /* the file's own rate */
    int channels;    /* the file's channel count */
    size_t file_frames;
    /* workspace */
    size_t xcap, tcap, icap;
    float *tmp;      /* mono at the file's rate, before resampling */
    float *inter;    /* interleaved frames being mixed */
} audio_buf;

/* 0 on success; -1 with a reason in err. "-" reads stdin. a->x is valid
 * until the next audio_load() with the same a. */
int audio_load(const char *path, const audio_opts *o, audio_buf *a, char *err, size_t errlen);
void audio_free(audio_buf *a);

/* Resample mono x[n] from sr_in to sr_out with soxr into y (capacity *ycap,
 * grown as needed); the output has exactly ceil(n * (sr_out / sr_in))
 * samples, zero-filled past what soxr returns. Returns that count, or
 * (size_t)-1 with a reason in err. */
size_t audio_resample(const float *x, size_t n, int sr_in, int sr_out, int quality, float **y, size_t *ycap,
                      char *err, size_t errlen);

#endif
