/* fuzz_ptb.c - the PTB tokenizer emulation (lib/ptb.c) on arbitrary bytes.
 *
 * The input is a set of captions separated by NUL bytes (a caption is a C
 * string); they are tokenized as one corpus (ptb_tokenize_lines, or
 * ptb_tokenize for a single caption), in both modes. Every caption gets an output, which is valid UTF-8 (invalid
 * input reads as U+FFFD), has no line breaks, and is tokens joined by
 * single spaces: no leading, trailing or double space. In pycocoevalcap
 * mode no token is one that mode drops. */
#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "ptb.h"
#include "util.h"

static int ptb_init(void) { return 0; }

static void ptb_check_out(const char *s, int mode) {
    FZ_ASSERT(s);
    size_t n = strlen(s);
    FZ_ASSERT(utf8_valid(s, n));
    FZ_ASSERT(!strchr(s, '\n') && !strchr(s, '\r'));
    if (n == 0) return;
    FZ_ASSERT(s[0] != ' ' && s[n - 1] != ' ');
    FZ_ASSERT(!strstr(s, "  "));
    if (mode == PTB_PYCOCO) {
        char *copy = malloc(n + 1);
        FZ_ASSERT(copy);
        memcpy(copy, s, n + 1);
        for (char *save = NULL, *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save))
            FZ_ASSERT(!ptb_is_dropped(t));
        free(copy);
    }
}

static void ptb_one(const uint8_t *data, size_t size) {
    char *buf = malloc(size + 1);
    FZ_ASSERT(buf);
    memcpy(buf, data, size);
    buf[size] = 0;
    size_t n = 1;
    for (size_t i = 0; i < size; i++) n += buf[i] == 0;
    const char **in = malloc(n * sizeof *in);
    char **out = malloc(n * sizeof *out);
    FZ_ASSERT(in && out);
    size_t k = 0;
    in[k++] = buf;
    for (size_t i = 0; i < size; i++)
        if (buf[i] == 0) in[k++] = buf + i + 1;
    FZ_ASSERT(k == n);
    for (int mode = PTB_PYCOCO; mode <= PTB_JAVA; mode++) {
        if (n == 1) { /* one caption: the single-caption entry point */
            out[0] = ptb_tokenize(buf, mode);
        } else {
            ptb_tokenize_lines(in, n, out, mode);
        }
        for (size_t i = 0; i < n; i++) {
            ptb_check_out(out[i], mode);
            free(out[i]);
        }
    }
    free(in);
    free(out);
    free(buf);
}

FZ_ENTRY(ptb)
