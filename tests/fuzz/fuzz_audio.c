/* fuzz_audio.c - wav2mel's front end (lib/audio.c, lib/mel.c) on arbitrary
 * bytes: libsndfile's decoders (WAV, AIFF, AU, FLAC, Ogg, MP3, ... whatever
 * the installed libsndfile reads), channel mixing, libsoxr resampling, the
 * log mel spectrogram.
 *
 * The input is an audio file: it goes to a memfd that audio_load() opens as
 * /proc/self/fd/N, exactly as wav2mel opens a path, with wav2mel's defaults
 * except --max-seconds 60 (a header declaring more is refused before
 * anything is decoded; a stream that decodes longer is stopped at 60 s). A
 * load either fails with a reason or gives finite samples at 32 kHz,
 * ceil(frames x 32000 / file rate) of them; the mel frames of a long enough
 * result are computed and must be finite (log of max(x, amin)) unless
 * samples are huge (float files are not clipped). The same
 * audio_buf is reused from input to input, as a wav2mel thread reuses it. */
#include "fuzz_common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "audio.h"
#include "mel.h"
#include "util.h"

static audio_opts audio_fz_opts;
static mel_config audio_fz_mc;
static mel_state *audio_fz_mel;
static audio_buf audio_fz_buf;
static float *audio_fz_out;
static size_t audio_fz_outcap;

static int audio_init(void) {
    audio_opts_default(&audio_fz_opts);
    audio_fz_opts.max_seconds = 60;
    mel_config_default(&audio_fz_mc);
    audio_fz_mc.sr = audio_fz_opts.sr;
    FZ_ASSERT(mel_config_check(&audio_fz_mc) == NULL);
    audio_fz_mel = mel_init(&audio_fz_mc);
    return 0;
}

static void audio_one(const uint8_t *data, size_t size) {
    int fd = fz_memfd(data, size);
    char path[64], err[400];
    fz_path(fd, path, sizeof path);
    err[0] = 0;
    audio_buf *a = &audio_fz_buf;
    int r = audio_load(path, &audio_fz_opts, a, err, sizeof err);
    close(fd);
    if (r != 0) {
        FZ_ASSERT(err[0]);
        return;
    }
    FZ_ASSERT(a->sr == audio_fz_opts.sr);
    FZ_ASSERT(a->channels >= 1 && a->file_sr >= 1);
    FZ_ASSERT((double)a->file_frames <= audio_fz_opts.max_seconds * a->file_sr);
    size_t want = a->file_sr == a->sr ? a->file_frames
                                      : (size_t)ceil((double)a->file_frames * ((double)a->sr / a->file_sr));
    FZ_ASSERT(a->n == want);
    float peak = 0;
    for (size_t i = 0; i < a->n; i++) {
        FZ_ASSERT(isfinite(a->x[i]));
        if (fabsf(a->x[i]) > peak) peak = fabsf(a->x[i]);
    }
    size_t T = mel_frames(&audio_fz_mc, a->n);
    if (T == 0) return;
    size_t need = T * (size_t)audio_fz_mc.n_mels;
    if (need > audio_fz_outcap) {
        free(audio_fz_out);
        audio_fz_out = xmalloc_aligned(need * sizeof(float));
        audio_fz_outcap = need;
    }
    FZ_ASSERT(mel_compute(audio_fz_mel, a->x, a->n, audio_fz_out) == T);
    /* float files are not clipped: power can overflow float for huge samples
     * (as in the reference); within a sane range every value is finite */
    if (peak <= 1000)
        for (size_t i = 0; i < need; i++) FZ_ASSERT(isfinite(audio_fz_out[i]));
}

FZ_ENTRY(audio)
