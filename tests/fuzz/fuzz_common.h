/* fuzz_common.h - shared helpers for the libFuzzer harnesses in tests/fuzz/.
 *
 * Every harness is one file, tests/fuzz/fuzz_NAME.c, written so it builds two
 * ways:
 *   - with libFuzzer (tests/fuzz/build.sh): it defines LLVMFuzzerInitialize and
 *     LLVMFuzzerTestOneInput, which call NAME_init() and NAME_one();
 *   - inside tests/c/test_fuzz_regressions.c (FUZZ_REGRESSION_BUILD defined),
 *     which #includes every harness and runs NAME_one() on each committed
 *     seed (tests/fuzz/corpus/NAME/) and crash input
 *     (tests/fuzz/regressions/NAME/) in the ordinary `make check`.
 * So helper names are prefixed by the harness (or live here, once).
 *
 * Inputs reach the parsers the way real input does: through a file
 * descriptor. fz_memfd() puts bytes in an anonymous memory file;
 * fz_path() names it as /proc/self/fd/N for the loaders that take a path.
 *
 * Short reads: a pipe delivers a stream in pieces, and the readers resume
 * half-parsed objects across read(2) calls. This file defines read() itself
 * (overriding libc's for this program), so that on the descriptor set by
 * fz_chunk_fd() each read returns at most the next size of a schedule drawn
 * from the input's length: whole reads, 1-byte reads (inputs up to 4 KiB),
 * or pseudo-random pieces of 1..64 or 1..1024 bytes. Deterministic, so every crash replays.
 * Other descriptors read normally. */
#ifndef WSAC_FUZZ_COMMON_H
#define WSAC_FUZZ_COMMON_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A failed invariant: say which and abort (libFuzzer saves the input).
 * tests/fuzz/run.sh closes the target's stderr (-close_fd_mask), so the
 * message also goes to the sanitizer's report channel when there is one. */
void __sanitizer_report_error_summary(const char *summary) __attribute__((weak));
static __attribute__((noreturn, unused)) void fz_fail(const char *what, const char *file, int line) {
    char msg[600];
    snprintf(msg, sizeof msg, "fuzz invariant failed: %s (%s:%d)", what, file, line);
    fprintf(stderr, "%s\n", msg);
    if (__sanitizer_report_error_summary) __sanitizer_report_error_summary(msg);
    abort();
}
#define FZ_ASSERT(cond)                                      \
    do {                                                     \
        if (!(cond)) fz_fail(#cond, __FILE__, __LINE__);     \
    } while (0)

/* An anonymous file holding data[0..n), offset 0. */
static __attribute__((unused)) int fz_memfd(const uint8_t *data, size_t n) {
    int fd = memfd_create("fuzz", MFD_CLOEXEC);
    if (fd < 0) {
        perror("memfd_create");
        abort();
    }
    size_t off = 0;
    while (off < n) {
        ssize_t k = write(fd, data + off, n - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            perror("write to memfd");
            abort();
        }
        off += (size_t)k;
    }
    if (lseek(fd, 0, SEEK_SET) != 0) abort();
    return fd;
}

/* "/proc/self/fd/N" in buf. */
static __attribute__((unused)) const char *fz_path(int fd, char *buf, size_t len) {
    snprintf(buf, len, "/proc/self/fd/%d", fd);
    return buf;
}

/* ------------------------------------------------------------ leaks */

/* LeakSanitizer: leaks allocated inside the codec libraries under
 * libsndfile on malformed files (libvorbis 1.3.7 on a corrupt Ogg header:
 * vorbis_info_init's allocation is lost when sf_open fails; known upstream,
 * e.g. libsndfile#922, xiph/vorbis#125) are not wsac's to fix, and are
 * suppressed by module. libsndfile's own allocations are not suppressed, so
 * a missing sf_close() would still be reported. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libvorbis.so\nleak:libvorbisenc.so\nleak:libogg.so\nleak:libFLAC.so\n"
           "leak:libopus.so\nleak:libmpg123.so\nleak:libmp3lame.so\n";
}
/* Under LeakSanitizer: a leak check now, non-zero if something leaked. */
int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* ------------------------------------------------------------ short reads */

static int fz_cfd = -1;        /* the descriptor whose reads are cut; -1: none */
static int fz_cmode;           /* 0 whole, 1 one byte, 2 1..64, 3 1..1024 */
static uint64_t fz_cstate;     /* LCG state */

/* Cut the reads of fd by a schedule chosen from the input length n. */
static __attribute__((unused)) void fz_chunk_fd(int fd, size_t n) {
    fz_cfd = fd;
    fz_cmode = (int)(n % 4);
    if (fz_cmode == 1 && n > 4096) fz_cmode = 2; /* a syscall per byte of a big input is just slow */
    fz_cstate = n * 0x9E3779B97F4A7C15ull + 1;
}

static __attribute__((unused)) void fz_chunk_off(void) { fz_cfd = -1; }

ssize_t read(int fd, void *buf, size_t count) {
    if (fd == fz_cfd && fz_cfd >= 0 && count > 1) {
        size_t lim = count;
        if (fz_cmode == 1) lim = 1;
        else if (fz_cmode >= 2) {
            fz_cstate = fz_cstate * 6364136223846793005ull + 1442695040888963407ull;
            lim = 1 + (size_t)((fz_cstate >> 33) % (fz_cmode == 2 ? 64 : 1024));
        }
        if (lim < count) count = lim;
    }
    return syscall(SYS_read, fd, buf, count);
}

/* ------------------------------------------------------------ input split */

/* A little reader over the input, for harnesses that take a few parameters
 * from its first bytes. */
typedef struct {
    const uint8_t *p;
    size_t n;
} fz_bytes;

static __attribute__((unused)) unsigned fz_take_u8(fz_bytes *b) {
    if (!b->n) return 0;
    b->n--;
    return *b->p++;
}

/* Locate a data file of the repository: $WSAC_ROOT/REL, then REL relative to
 * the executable's directory and its parents (build-fuzz/, build/tests/),
 * then to the current directory. Returns a static buffer, or NULL. */
static __attribute__((unused)) const char *fz_repo_file(const char *rel) {
    static char out[4096];
    const char *root = getenv("WSAC_ROOT");
    if (root && *root) {
        snprintf(out, sizeof out, "%s/%s", root, rel);
        if (access(out, R_OK) == 0) return out;
    }
    char exe[2048];
    ssize_t k = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (k > 0) {
        exe[k] = 0;
        for (int up = 1; up <= 3; up++) {
            char dir[2048];
            snprintf(dir, sizeof dir, "%s", exe);
            for (int i = 0; i < up; i++) {
                char *s = strrchr(dir, '/');
                if (!s) break;
                *s = 0;
            }
            snprintf(out, sizeof out, "%s/%s", dir, rel);
            if (access(out, R_OK) == 0) return out;
        }
    }
    snprintf(out, sizeof out, "%s", rel);
    if (access(out, R_OK) == 0) return out;
    return NULL;
}

#ifndef FUZZ_REGRESSION_BUILD
/* die() under AddressSanitizer ends the process with _exit(2), which
 * libFuzzer would not notice as a crash (no input saved). Linked with
 * -Wl,--wrap=_exit, an _exit called from inside a test input aborts instead,
 * so the input that made a library call die() is kept. */
int fz_in_input;
void __real__exit(int status) __attribute__((noreturn));
void __wrap__exit(int status) __attribute__((noreturn));
void __wrap__exit(int status) {
    if (fz_in_input) {
        char what[100];
        snprintf(what, sizeof what, "the code under test called _exit(%d) (a die(): see its message)", status);
        fz_fail(what, __FILE__, __LINE__);
    }
    __real__exit(status);
}
#define FZ_ENTRY(NAME)                                                   \
    int LLVMFuzzerInitialize(int *argc, char ***argv);                   \
    int LLVMFuzzerInitialize(int *argc, char ***argv) {                  \
        (void)argc;                                                      \
        (void)argv;                                                      \
        return NAME##_init();                                            \
    }                                                                    \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);        \
    int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {       \
        fz_in_input = 1;                                                 \
        NAME##_one(data, size);                                          \
        fz_in_input = 0;                                                 \
        return 0;                                                        \
    }
#else
#define FZ_ENTRY(NAME)
#endif

#endif
