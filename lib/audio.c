/* audio.c - decode, mix to mono, resample (see audio.h for the reference). */
#include "audio.h"

#include <math.h>
#include <pthread.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

void audio_opts_default(audio_opts *o) {
    o->sr = 32000;
    o->quality = SOXR_HQ; /* librosa 0.10 default res_type 'soxr_hq' */
    o->max_seconds = 3600;
    o->min_seconds = 0;
}

int audio_quality_parse(const char *s) {
    if (!strcmp(s, "qq")) return SOXR_QQ;
    if (!strcmp(s, "lq")) return SOXR_LQ;
    if (!strcmp(s, "mq")) return SOXR_MQ;
    if (!strcmp(s, "hq")) return SOXR_HQ;
    if (!strcmp(s, "vhq")) return SOXR_VHQ;
    return -1;
}

const char *audio_quality_name(int q) {
    switch (q) {
    case SOXR_QQ: return "qq";
    case SOXR_LQ: return "lq";
    case SOXR_MQ: return "mq";
    case SOXR_HQ: return "hq";
    case SOXR_VHQ: return "vhq";
    }
    return "?";
}

void audio_free(audio_buf *a) {
    free(a->x);
    free(a->tmp);
    free(a->inter);
    memset(a, 0, sizeof *a);
}

/* grow *buf to hold n floats (contents not kept) */
static void reserve(float **buf, size_t *cap, size_t n) {
    if (n <= *cap) return;
    size_t c = *cap ? *cap : 1 << 16;
    while (c < n) c *= 2;
    free(*buf);
    *buf = xmalloc(c * sizeof(float));
    *cap = c;
}

/* grow *buf to hold n floats, keeping the contents */
static void grow(float **buf, size_t *cap, size_t n) {
    if (n <= *cap) return;
    size_t c = *cap ? *cap : 1 << 16;
    while (c < n) c *= 2;
    *buf = xrealloc(*buf, c * sizeof(float));
    *cap = c;
}

size_t audio_resample(const float *x, size_t n, int sr_in, int sr_out, int quality, float **y, size_t *ycap,
                      char *err, size_t errlen) {
    /* librosa.resample: n_samples = int(np.ceil(y.shape[-1] * ratio)),
     * ratio = float(target_sr) / orig_sr; then util.fix_length */
    double ratio = (double)sr_out / (double)sr_in;
    size_t olen = (size_t)ceil((double)n * ratio), odone = 0;
    reserve(y, ycap, olen + 1);
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec((unsigned long)quality, 0); /* python-soxr: (quality, 0) */
    /* one-shot, as python-soxr's resample(): libsoxr's streaming interface
     * gives different bits at chunk boundaries */
    soxr_error_t e = soxr_oneshot((double)sr_in, (double)sr_out, 1, x, n, NULL, *y, olen, &odone, &io, &q, NULL);
    if (e) {
        snprintf(err, errlen, "resampling %d -> %d Hz failed: %s", sr_in, sr_out, e);
        return (size_t)-1;
    }
    /* fix_length pads with zeros what soxr did not deliver */
    if (odone < olen) memset(*y + odone, 0, (olen - odone) * sizeof(float));
    return olen;
}

int audio_load(const char *path, const audio_opts *o, audio_buf *a, char *err, size_t errlen) {
    a->n = 0;
    SF_INFO info;
    memset(&info, 0, sizeof info);
    /* libsndfile keeps the reason an open failed in one process-wide
     * variable: files opened on several threads at once (wav2mel --threads)
     * read each other's reasons ("No Error." for a missing file) unless the
     * open and the reading of its reason go one thread at a time */
    static pthread_mutex_t open_mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_mutex_lock(&open_mu);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) snprintf(err, errlen, "cannot read audio: %s", sf_strerror(NULL));
    pthread_mutex_unlock(&open_mu);
    if (!sf) return -1;
    if (info.channels < 1 || info.samplerate < 1) {
        snprintf(err, errlen, "invalid audio header (%d channels, %d Hz)", info.channels, info.samplerate);
        sf_close(sf);
        return -1;
    }
    /* float output normalised to [-1, 1) as soundfile does (SFC_SET_NORM_FLOAT
     * is on by default); float files are not clipped. */
    double maxf = o->max_seconds * (double)info.samplerate;
    if (info.frames > 0 && (double)info.frames > maxf) {
        snprintf(err, errlen, "longer than --max-seconds %.0f (%.0f s declared)", o->max_seconds,
                 (double)info.frames / info.samplerate);
        sf_close(sf);
        return -1;
    }
    int C = info.channels, sr = o->sr > 0 ? o->sr : info.samplerate, resample = sr != info.samplerate;
    /* mono samples at the file's rate go straight where they are needed */
    float **dst = resample ? &a->tmp : &a->x;
    size_t *dcap = resample ? &a->tcap : &a->xcap;
    const size_t chunk = 1 << 15;
    if (C > 1) {
        size_t need = chunk * (size_t)C;
        if (need > a->icap) {
            free(a->inter);
            a->inter = xmalloc(need * sizeof(float));
            a->icap = need;
        }
    }
    size_t n = 0;
    for (;;) {
        grow(dst, dcap, n + chunk);
        float *out = *dst + n;
        sf_count_t k = sf_readf_float(sf, C == 1 ? out : a->inter, (sf_count_t)chunk);
        if (k <= 0) break;
        if ((double)(n + (size_t)k) > maxf) {
            snprintf(err, errlen, "longer than --max-seconds %.0f", o->max_seconds);
            sf_close(sf);
            return -1;
        }
        if (C > 1)
            /* np.mean(y, axis=0) on float32: channels summed in order, divided in float32 */
            for (sf_count_t i = 0; i < k; i++) {
                const float *fr = a->inter + (size_t)i * (size_t)C;
                float acc = fr[0];
                for (int c = 1; c < C; c++) acc += fr[c];
                out[i] = acc / (float)C;
            }
        n += (size_t)k;
    }
    int serr = sf_error(sf);
    char sferr[200];
    snprintf(sferr, sizeof sferr, "%s", sf_strerror(sf));
    sf_close(sf);
    if (serr != SF_ERR_NO_ERROR) {
        snprintf(err, errlen, "decoding failed: %s", sferr);
        return -1;
    }
    a->file_sr = info.samplerate;
    a->channels = C;
    a->file_frames = n;
    const float *m = *dst;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(m[i])) {
            snprintf(err, errlen, "audio contains NaN or infinite samples (first at sample %zu)", i);
            return -1;
        }
    if (resample && n > 0) {
        n = audio_resample(a->tmp, n, info.samplerate, sr, o->quality, &a->x, &a->xcap, err, errlen);
        if (n == (size_t)-1) return -1;
        /* float files are not clipped: samples near FLT_MAX can overflow */
        for (size_t i = 0; i < n; i++)
            if (!isfinite(a->x[i])) {
                snprintf(err, errlen, "samples too large: resampling made them infinite (first at output sample %zu)", i);
                return -1;
            }
    } else if (resample) {
        n = 0;
    }
    size_t nmin = (size_t)ceil(o->min_seconds * sr);
    if (n < nmin) {
        grow(&a->x, &a->xcap, nmin);
        memset(a->x + n, 0, (nmin - n) * sizeof(float));
        n = nmin;
    }
    a->n = n;
    a->sr = sr;
    return 0;
}
