/* test_fuzz_regressions.c - every libFuzzer harness of tests/fuzz/, built
 * without libFuzzer, run on its committed seed corpus (tests/fuzz/corpus/NAME/)
 * and on every input that once made it fail (tests/fuzz/regressions/NAME/,
 * each named after the bug it found; see tests/fuzz/README.md).
 *
 * A harness checks its parser's promises itself and aborts when one is
 * broken; here each input runs in a child process, so a crash, abort or
 * sanitizer report (under `make check-san`) fails that input alone:
 * "not ok - fuzz NAME FILE: ...". Run from the repository root (tests/run.sh
 * does), or set WSAC_ROOT. */
#define FUZZ_REGRESSION_BUILD 1
#include "../fuzz/fuzz_common.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "check.h"

#include "../fuzz/fuzz_audio.c"
#include "../fuzz/fuzz_audiolist.c"
#include "../fuzz/fuzz_bpe.c"
#include "../fuzz/fuzz_captions.c"
#include "../fuzz/fuzz_labels.c"
#include "../fuzz/fuzz_ptb.c"
#include "../fuzz/fuzz_refs.c"
#include "../fuzz/fuzz_relevance.c"
#include "../fuzz/fuzz_safetensors.c"
#include "../fuzz/fuzz_stream.c"
#include "../fuzz/fuzz_wordpiece.c"

typedef struct {
    const char *name;
    int (*init)(void);
    void (*one)(const uint8_t *, size_t);
} harness;

static const harness harnesses[] = {
    {"audio", audio_init, audio_one},         {"captions", captions_init, captions_one},
    {"ptb", ptb_init, ptb_one},               {"refs", refs_init, refs_one},
    {"safetensors", safetensors_init, safetensors_one}, {"stream", stream_init, stream_one},
    {"wordpiece", wordpiece_init, wordpiece_one}, {"bpe", bpe_init, bpe_one}, {"relevance", relevance_init, relevance_one},
    {"labels", labels_init, labels_one},      {"audiolist", audiolist_init, audiolist_one},
};

static uint8_t *read_file(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 4096, len = 0;
    uint8_t *b = malloc(cap);
    size_t k;
    while (b && (k = fread(b + len, 1, cap - len, f)) > 0) {
        len += k;
        if (len == cap) b = realloc(b, cap *= 2);
    }
    fclose(f);
    *n = len;
    return b;
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Run h on every file of dir (sorted); returns how many there were. */
static int run_dir(const harness *h, const char *dir, const char *what) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) names = realloc(names, (size_t)(cap = cap ? 2 * cap : 64) * sizeof *names);
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n) qsort(names, (size_t)n, sizeof *names, by_str);
    for (int i = 0; i < n; i++) {
        char path[4096], label[512];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(label, sizeof label, "fuzz %s %s %s", h->name, what, names[i]);
        struct stat sb;
        if (stat(path, &sb) != 0 || !S_ISREG(sb.st_mode)) {
            free(names[i]);
            continue;
        }
        size_t len = 0;
        uint8_t *data = read_file(path, &len);
        if (!data) {
            CHECKF(0, label, "cannot read %s", path);
            free(names[i]);
            continue;
        }
        fflush(stdout);
        fflush(stderr);
        pid_t pid = fork();
        if (pid == 0) {
            h->one(data, len);
            fflush(stdout);
            /* under `make check-san`: what this input leaked (the state the
             * harness keeps between inputs is reachable from globals) */
            if (__lsan_do_recoverable_leak_check && __lsan_do_recoverable_leak_check()) _exit(3);
            _exit(0);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) != pid) CHECKF(0, label, "fork/wait failed");
        else if (WIFSIGNALED(st)) CHECKF(0, label, "killed by signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
        else CHECKF(WEXITSTATUS(st) == 0, label, "exit status %d%s", WEXITSTATUS(st),
                    WEXITSTATUS(st) == 3 ? " (LeakSanitizer found a leak)" : "");
        free(data);
        free(names[i]);
    }
    free(names);
    return n;
}

int main(int argc, char **argv) {
    /* optional: only the harnesses named on the command line */
    const char *root_corpus = fz_repo_file("tests/fuzz/corpus");
    if (!root_corpus) {
        printf("not ok - fuzz: tests/fuzz/corpus not found (run from the repository root or set WSAC_ROOT)\n");
        return 1;
    }
    char base[4096];
    snprintf(base, sizeof base, "%s", root_corpus);
    base[strlen(base) - strlen("/corpus")] = 0; /* .../tests/fuzz */
    for (size_t i = 0; i < sizeof harnesses / sizeof harnesses[0]; i++) {
        const harness *h = &harnesses[i];
        int wanted = argc < 2;
        for (int a = 1; a < argc; a++) wanted |= strcmp(argv[a], h->name) == 0;
        if (!wanted) continue;
        h->init();
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/corpus/%s", base, h->name);
        int nc = run_dir(h, dir, "seed");
        char what[64];
        snprintf(what, sizeof what, "fuzz %s seed corpus present", h->name);
        CHECKF(nc > 0, what, "%s has no seed", dir);
        snprintf(dir, sizeof dir, "%s/regressions/%s", base, h->name);
        run_dir(h, dir, "regression");
    }
    return check_exit();
}
