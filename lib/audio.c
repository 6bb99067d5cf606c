/* audio.c - decode, mix to mono, resample (see audio.h for the reference). */
#include "audio.h"

#include <math.h>
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
    memset(a, 0, sizeof *a);
}

int audio_resample(const float *x, size_t n, int sr_in, int sr_out, int quality, float **y, size_t *ny,
                   char *err, size_t errlen) {
    /* librosa.resample: n_samples = int(np.ceil(y.shape[-1] * ratio)),
     * ratio = float(target_sr) / orig_sr; then util.fix_length */
    double ratio = (double)sr_out / (double)sr_in;
    size_t olen = (size_t)ceil((double)n * ratio);
    float *out = xcalloc(olen ? olen : 1, sizeof(float));
    size_t odone = 0;
    soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_I, SOXR_FLOAT32_I);
    soxr_quality_spec_t q = soxr_quality_spec((unsigned long)quality, 0); /* python-soxr: (quality, 0) */
    soxr_error_t e = soxr_oneshot((double)sr_in, (double)sr_out, 1, x, n, NULL, out, olen, &odone, &io, &q, NULL);
    if (e) {
        snprintf(err, errlen, "resampling %d -> %d Hz failed: %s", sr_in, sr_out, e);
        free(out);
        return -1;
    }
    /* samples soxr did not deliver stay zero (fix_length pads with zeros) */
    *y = out;
    *ny = olen;
    return 0;
}

int audio_load(const char *path, const audio_opts *o, audio_buf *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    SF_INFO info;
    memset(&info, 0, sizeof info);
    SNDFILE *sf = sf_open(path, SFM_READ, &info);
    if (!sf) {
        snprintf(err, errlen, "cannot read audio: %s", sf_strerror(NULL));
        return -1;
    }
    if (info.channels < 1 || info.samplerate < 1) {
        snprintf(err, errlen, "invalid audio header (%d channels, %d Hz)", info.channels, info.samplerate);
        sf_close(sf);
        return -1;
    }
    /* float output normalised to [-1, 1) as soundfile does (SFC_SET_NORM_FLOAT
     * is on by default); clipping of float files is not applied. */
    double maxf = o->max_seconds * (double)info.samplerate;
    if (info.frames > 0 && (double)info.frames > maxf) {
        snprintf(err, errlen, "longer than --max-seconds %.0f (%.0f s declared)", o->max_seconds,
                 (double)info.frames / info.samplerate);
        sf_close(sf);
        return -1;
    }
    const size_t chunk = 1 << 15;
    int C = info.channels;
    float *inter = xmalloc(chunk * (size_t)C * sizeof(float));
    size_t cap = 1 << 16, n = 0;
    float *mono = xmalloc(cap * sizeof(float));
    for (;;) {
        sf_count_t k = sf_readf_float(sf, inter, (sf_count_t)chunk);
        if (k <= 0) break;
        if ((double)(n + (size_t)k) > maxf) {
            snprintf(err, errlen, "longer than --max-seconds %.0f", o->max_seconds);
            free(inter);
            free(mono);
            sf_close(sf);
            return -1;
        }
        while (n + (size_t)k > cap) {
            cap *= 2;
            mono = xrealloc(mono, cap * sizeof(float));
        }
        if (C == 1) memcpy(mono + n, inter, (size_t)k * sizeof(float));
        else
            /* np.mean(y, axis=0) on float32: channels summed in order, divided in float32 */
            for (sf_count_t i = 0; i < k; i++) {
                float acc = inter[i * C];
                for (int c = 1; c < C; c++) acc += inter[i * C + c];
                mono[n + (size_t)i] = acc / (float)C;
            }
        n += (size_t)k;
    }
    int serr = sf_error(sf);
    char sferr[200];
    snprintf(sferr, sizeof sferr, "%s", sf_strerror(sf));
    sf_close(sf);
    free(inter);
    if (serr != SF_ERR_NO_ERROR) {
        snprintf(err, errlen, "decoding failed: %s", sferr);
        free(mono);
        return -1;
    }
    out->file_sr = info.samplerate;
    out->channels = C;
    out->file_frames = n;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(mono[i])) {
            snprintf(err, errlen, "audio contains NaN or infinite samples (first at sample %zu)", i);
            free(mono);
            return -1;
        }
    int sr = o->sr > 0 ? o->sr : info.samplerate;
    if (sr != info.samplerate && n > 0) {
        float *y;
        size_t ny;
        if (audio_resample(mono, n, info.samplerate, sr, o->quality, &y, &ny, err, errlen)) {
            free(mono);
            return -1;
        }
        free(mono);
        mono = y;
        n = ny;
    }
    size_t nmin = (size_t)ceil(o->min_seconds * sr);
    if (n < nmin) {
        mono = xrealloc(mono, nmin * sizeof(float));
        memset(mono + n, 0, (nmin - n) * sizeof(float));
        n = nmin;
    }
    out->x = mono;
    out->n = n;
    out->sr = sr;
    return 0;
}
