/* wsac-bpe - captions to RoBERTa token ids, as SALSA tokenizes them (lib/bpe.h). */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bpe.h"
#include "lines.h"
#include "util.h"

static const char usage[] =
    "Usage: wsac-bpe --vocab VOCAB.json --merges MERGES.txt [OPTIONS] < LINES\n"
    "Tokenize captions as SALSA feeds RoBERTa: lower case, ASCII punctuation\n"
    "deleted, GPT-2 byte-level BPE (Hugging Face's RobertaTokenizer), <s> ... </s>\n"
    "around the first max-len - 2 tokens. Input: KEY<TAB>CAPTION lines (a line\n"
    "without a tab is a caption keyed by its line number). Output: one line per\n"
    "caption, KEY<TAB>ID ID ...\n"
    "\n"
    "      --vocab FILE       RoBERTa's vocab.json (token -> id)\n"
    "      --merges FILE      GPT-2's merges.txt (vocab.bpe)\n"
    "      --max-len N        ids per caption with <s> and </s> (32, as SALSA)\n"
    "      --raw              no SALSA preprocessing: the caption as it is\n"
    "      --tokens           write the tokens (byte-level strings) instead of ids\n"
    "  -q, --quiet            no summary (errors are still printed)\n"
    "  -h, --help             show this help\n"
    "\n"
    "A caption that is not valid UTF-8 or longer than 8192 bytes is named on\n"
    "stderr with its reason and skipped.\n"
    "Exit status: 0 all captions written, 1 usage error or unreadable vocab/merges,\n"
    "2 fatal (output failed), 3 some captions failed.\n";

int main(int argc, char **argv) {
    tool_init("wsac-bpe");
    enum { O_VOCAB = 256, O_MERGES, O_MAXLEN, O_RAW, O_TOKENS };
    static const struct option longopts[] = {
        {"vocab", required_argument, 0, O_VOCAB}, {"merges", required_argument, 0, O_MERGES},
        {"max-len", required_argument, 0, O_MAXLEN}, {"raw", no_argument, 0, O_RAW},
        {"tokens", no_argument, 0, O_TOKENS},   {"quiet", no_argument, 0, 'q'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0}};
    const char *vocab = NULL, *merges = NULL;
    int max_len = BPE_SALSA_MAX_LEN, raw = 0, tokens = 0, c;
    while ((c = getopt_long(argc, argv, ":qh", longopts, NULL)) != -1) {
        switch (c) {
        case O_VOCAB: vocab = optarg; break;
        case O_MERGES: merges = optarg; break;
        case O_MAXLEN: max_len = (int)parse_long("--max-len", optarg, 2, 1 << 20); break;
        case O_RAW: raw = 1; break;
        case O_TOKENS: tokens = 1; break;
        case 'q': tool_quiet = 1; break;
        case 'h': fputs(usage, stdout); return EXIT_OK;
        default: die_bad_option(c, argv);
        }
    }
    if (optind < argc) die_usage("unexpected argument '%s' (captions come on stdin)", argv[optind]);
    if (!vocab || !merges) die_usage("--vocab and --merges are required");
    char err[512];
    bpe *b = bpe_load_files(vocab, merges, err, sizeof err);
    if (!b) die_usage("%s", err);
    if (isatty(0)) warnx_("reading captions from the terminal (see --help)");

    int32_t *ids = xmalloc((size_t)max_len * sizeof *ids);
    line_reader lr;
    lr_init(&lr, 0, 1 << 20);
    long ok = 0, failed = 0;
    for (;;) {
        char *line;
        size_t len;
        int r = lr_next(&lr, &line, &len);
        if (r == LR_EOF) break;
        if (r == LR_ERROR) die("reading captions: %m");
        if (r == LR_TOO_LONG) {
            warnx_("line %ld: longer than 1 MiB: skipped", lr.lineno);
            failed++;
            continue;
        }
        if (len == 0) continue;
        char keybuf[32];
        const char *key = keybuf, *text = line;
        size_t tlen = len;
        char *tab = memchr(line, '\t', len);
        if (tab) {
            *tab = 0;
            key = line;
            text = tab + 1;
            tlen = len - (size_t)(text - line);
        } else snprintf(keybuf, sizeof keybuf, "%ld", lr.lineno);
        char *pre = NULL;
        int n = -1;
        if (!raw) {
            size_t plen;
            pre = bpe_salsa_preprocess(text, tlen, &plen, err, sizeof err);
            if (pre) n = bpe_encode(b, pre, plen, max_len, ids, NULL, err, sizeof err);
        } else n = bpe_encode(b, text, tlen, max_len, ids, NULL, err, sizeof err);
        free(pre);
        if (n < 0) {
            warnx_("line %ld (%s): %s: skipped", lr.lineno, utf8_valid(key, strlen(key)) ? key : "?", err);
            failed++;
            continue;
        }
        fputs(key, stdout);
        for (int i = 0; i < n; i++) {
            putchar(i ? ' ' : '\t');
            if (tokens) fputs(bpe_token(b, ids[i]), stdout);
            else printf("%d", ids[i]);
        }
        putchar('\n');
        ok++;
    }
    lr_free(&lr);
    free(ids);
    bpe_free(b);
    close_stdout_or_die();
    return finish(ok, failed);
}
