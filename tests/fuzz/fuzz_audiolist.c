/* fuzz_audiolist.c - clap-train's --audio-list reader
 * (clap_audio_list_read in lib/clap_train.c: "PATH" or "KEY<TAB>PATH"
 * lines), on arbitrary bytes; the audio files it names are not opened (the
 * audio harness fuzzes the decoders).
 *
 * The input is the list, read from a memfd twice, in pieces (fuzz_common.h)
 * and whole: both reads give the same result. A failure gives a reason that
 * names the list and no entries. A success gives at least one entry; each
 * has a non-empty key without a tab and a non-empty path, both without a
 * newline; keys are unique; line numbers strictly increase and are within
 * the file; each entry is what its line says, computed again here: the line
 * without its trailing "\r"s, split at its first tab (KEY, PATH), or PATH
 * alone keyed by basename(PATH); the lines without an entry are blank. "no
 * audio files" only when every line is blank. The allocation limit
 * (audiolist.options) catches an allocation out of proportion to the input. */
#include "fuzz_common.h"

#include <libgen.h>
#include <stdlib.h>
#include <string.h>

#include "clap_train.h"
#include "util.h"

#ifndef FUZZ_REGRESSION_BUILD
/* tests/fuzz/build.sh leaves lib/bert.c out (clang-14 rejects its
 * target_clones); lib/clap_train.o links lib/bert_train.o, which calls these
 * two, never on this path. Weak, so a build with lib/bert.o takes its own. */
#include "bert.h"
__attribute__((weak)) int bert_load(bert_model *m, st_file *f, char *err, size_t errlen) {
    (void)m, (void)f, (void)err, (void)errlen;
    abort();
}
__attribute__((weak)) void bert_free(bert_model *m) {
    (void)m;
    abort();
}
#endif

static int audiolist_init(void) { return 0; }

static clap_audio_entry *audiolist_read(const uint8_t *data, size_t size, int chunked, int *n, char *err, size_t el) {
    int fd = fz_memfd(data, size);
    if (chunked) fz_chunk_fd(fd, size);
    err[0] = 0;
    *n = -1;
    clap_audio_entry *e = clap_audio_list_read(fd, "fuzz-list", n, err, el);
    fz_chunk_off();
    close(fd);
    return e;
}

static void audiolist_one(const uint8_t *data, size_t size) {
    char ea[700], eb[700];
    int na, nb;
    clap_audio_entry *a = audiolist_read(data, size, 1, &na, ea, sizeof ea);
    clap_audio_entry *b = audiolist_read(data, size, 0, &nb, eb, sizeof eb);
    FZ_ASSERT((a == NULL) == (b == NULL) && na == nb && strcmp(ea, eb) == 0);
    if (!a) {
        FZ_ASSERT(na == 0 && ea[0] && strncmp(ea, "fuzz-list: ", 11) == 0);
        /* "appears twice": the key named is on two lines of the input */
        if (strstr(ea, "' appears twice")) FZ_ASSERT(strstr(ea, ": line ") && strstr(ea, ": key '"));
        /* "no audio files": every line blank (only "\n" and "\r") */
        if (!strcmp(ea, "fuzz-list: no audio files"))
            for (size_t i = 0; i < size; i++) FZ_ASSERT(data[i] == '\n' || data[i] == '\r');
        return;
    }
    FZ_ASSERT(na >= 1);
    long lines = 1;
    for (size_t i = 0; i < size; i++) lines += data[i] == '\n';
    for (int i = 0; i < na; i++) {
        const clap_audio_entry *x = &a[i];
        FZ_ASSERT(x->key && x->key[0] && x->path && x->path[0]);
        FZ_ASSERT(!strcmp(x->key, b[i].key) && !strcmp(x->path, b[i].path) && x->line == b[i].line);
        FZ_ASSERT(!strchr(x->key, '\t') && !strchr(x->key, '\n') && !strchr(x->path, '\n'));
        FZ_ASSERT(x->line >= 1 && x->line <= lines && (i == 0 || a[i - 1].line < x->line));
        for (int k = 0; k < i; k++) FZ_ASSERT(strcmp(a[k].key, x->key) != 0);
    }
    /* each line again, in one pass: an entry's is what the entry says, the others are blank */
    int e = 0;
    long ln = 0;
    for (size_t p = 0; p < size;) {
        const uint8_t *nl = memchr(data + p, '\n', size - p), *s = data + p;
        size_t l = (nl ? (size_t)(nl - data) : size) - p;
        p += l + 1, ln++;
        while (l && s[l - 1] == '\r') l--;
        if (e >= na || a[e].line != ln) {
            FZ_ASSERT(l == 0);
            continue;
        }
        const clap_audio_entry *x = &a[e++];
        FZ_ASSERT(l > 0 && !memchr(s, 0, l));
        const uint8_t *tab = memchr(s, '\t', l);
        if (tab) {
            size_t kl = (size_t)(tab - s);
            FZ_ASSERT(strlen(x->key) == kl && !memcmp(x->key, s, kl));
            FZ_ASSERT(strlen(x->path) == l - kl - 1 && !memcmp(x->path, tab + 1, l - kl - 1));
        } else {
            FZ_ASSERT(strlen(x->path) == l && !memcmp(x->path, s, l));
            char *tmp = strdup(x->path);
            FZ_ASSERT(tmp);
            FZ_ASSERT(!strcmp(x->key, basename(tmp)));
            free(tmp);
        }
    }
    FZ_ASSERT(e == na);
    clap_audio_list_free(a, na);
    clap_audio_list_free(b, nb);
}

FZ_ENTRY(audiolist)
