/* util.c - messages, checked allocation, option parsing, progress. */
#define _POSIX_C_SOURCE 200809L
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <utf8proc.h>

const char *tool_name = "wsac";
int tool_verbose = 0;
int tool_quiet = 0;

void tool_init(const char *name) {
    tool_name = name;
    setvbuf(stderr, NULL, _IOLBF, 0);
    opterr = 0; /* getopt's own messages carry the full argv[0]; we print ours */
    /* over `ulimit -f`, let write() fail with EFBIG so we can say so and exit 2,
     * instead of being killed silently by SIGXFSZ */
    signal(SIGXFSZ, SIG_IGN);
}

void die_bad_option(int c, char **argv) {
    const char *arg = optind > 0 ? argv[optind - 1] : "?";
    if (c == ':') die_usage("option '%s' requires an argument", arg);
    if (optopt && !(arg[0] == '-' && arg[1] == '-')) die_usage("unrecognized option '-%c'", optopt);
    die_usage("unrecognized option '%s'", arg);
}

static void vmsg(const char *kind, const char *fmt, va_list ap) {
    fprintf(stderr, "%s: %s", tool_name, kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void warnx_(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
}

void infox(const char *fmt, ...) {
    if (tool_quiet) return;
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
}

/* A fatal error ends the process at once: records already written were
 * flushed when written, and nothing needs tearing down. What is still
 * allocated then is not a leak; under AddressSanitizer, _exit skips
 * LeakSanitizer's exit-time report of it (valgrind tests the same paths
 * with exit()). */
#if defined(__SANITIZE_ADDRESS__)
#define FATAL_EXIT(code) (fflush(stdout), fflush(stderr), _exit(code))
#else
#define FATAL_EXIT(code) exit(code)
#endif

void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg("error: ", fmt, ap);
    va_end(ap);
    FATAL_EXIT(EXIT_FATAL);
}

void die_usage(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vmsg("", fmt, ap);
    va_end(ap);
    fprintf(stderr, "Try '%s --help' for more information.\n", tool_name);
    FATAL_EXIT(EXIT_USAGE);
}

void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) die("out of memory (allocating %zu bytes)", n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) die("out of memory (allocating %zu x %zu bytes)", n, size);
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (!q) die("out of memory (allocating %zu bytes)", n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = xmalloc(n);
    memcpy(p, s, n);
    return p;
}

void *xmalloc_aligned(size_t n) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) die("out of memory (allocating %zu bytes)", n);
    return p;
}

int mul_overflow_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return -1;
    *out = a * b;
    return 0;
}

long parse_long(const char *opt, const char *s, long lo, long hi) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end) die_usage("option %s: '%s' is not an integer", opt, s);
    if (v < lo || v > hi) die_usage("option %s: %ld is out of range [%ld, %ld]", opt, v, lo, hi);
    return v;
}

double parse_double(const char *opt, const char *s, double lo, double hi) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !isfinite(v)) die_usage("option %s: '%s' is not a number", opt, s);
    if (v < lo || v > hi) die_usage("option %s: %g is out of range [%g, %g]", opt, v, lo, hi);
    return v;
}

void close_stdout_or_die(void) {
    if (fflush(stdout) != 0 || ferror(stdout)) die("writing standard output: %s", strerror(errno));
    if (fclose(stdout) != 0) die("closing standard output: %s", strerror(errno));
}

int finish(long ok, long failed) {
    if (!tool_quiet || failed)
        fprintf(stderr, "%s: %ld record%s written, %ld failed\n", tool_name, ok, ok == 1 ? "" : "s",
                failed);
    return failed ? EXIT_PARTIAL : EXIT_OK;
}

uint64_t str_hash(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    while (*s) h = (h ^ (unsigned char)*s++) * 1099511628211ULL;
    return h;
}

double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int utf8_valid(const char *s, size_t n) {
    int32_t cp;
    for (size_t i = 0, k; i < n; i += k)
        if (!(k = utf8_next((const unsigned char *)s + i, n - i, &cp))) return 0;
    return 1;
}

size_t utf8_next(const unsigned char *s, size_t n, int32_t *cp) {
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)n, &c);
    if (k <= 0) return 0;
    *cp = c;
    return (size_t)k;
}

int utf8_put(char *out, int32_t cp) {
    uint32_t c = (uint32_t)cp;
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

void utf8_err(char *err, size_t errlen, const char *what, const char *s, size_t n, size_t i) {
    char bytes[24] = "";
    size_t k = 0;
    for (size_t j = i; j < n && j < i + 4; j++)
        k += (size_t)snprintf(bytes + k, sizeof bytes - k, "%s0x%02x", j > i ? " " : "", (unsigned char)s[j]);
    seterr(err, errlen, "%s is not valid UTF-8 at byte %zu (%s)", what, i, bytes);
}

void json_write_string(FILE *f, const char *s, size_t n) {
    size_t i = 0;
    fputc('"', f);
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x80) {
            switch (c) {
            case '"': fputs("\\\"", f); break;
            case '\\': fputs("\\\\", f); break;
            case '\n': fputs("\\n", f); break;
            case '\r': fputs("\\r", f); break;
            case '\t': fputs("\\t", f); break;
            default:
                if (c < 0x20 || c == 0x7f) fprintf(f, "\\u%04x", c);
                else fputc(c, f);
            }
            i++;
            continue;
        }
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate((const utf8proc_uint8_t *)s + i, (utf8proc_ssize_t)(n - i), &cp);
        if (k <= 0) {
            fputs("\\ufffd", f); /* invalid byte: replacement character */
            i++;
        } else {
            fwrite(s + i, 1, (size_t)k, f);
            i += (size_t)k;
        }
    }
    fputc('"', f);
}

/* ---------------------------------------------------------------- progress */

void progress_init(progress *p, const char *what, long total) {
    memset(p, 0, sizeof *p);
    p->t0 = p->last = now_seconds();
    p->total = total;
    p->tty = isatty(2);
    p->what = what;
}

static void progress_print(progress *p, long done, double t, int final) {
    double el = t - p->t0, rate = el > 0 ? (double)done / el : 0;
    if (p->tty) {
        char bar[31];
        if (p->total > 0) {
            int k = (int)(30.0 * (double)done / (double)p->total);
            if (k > 30) k = 30;
            for (int i = 0; i < 30; i++) bar[i] = i < k ? '#' : '.';
            bar[30] = 0;
            double eta = rate > 0 ? (double)(p->total - done) / rate : 0;
            fprintf(stderr, "\r%s: [%s] %ld/%ld %s, %.1f/s, ETA %.0fs ", tool_name, bar, done, p->total,
                    p->what, rate, eta);
        } else {
            fprintf(stderr, "\r%s: %ld %s, %.1f/s, %.0fs ", tool_name, done, p->what, rate, el);
        }
        if (final) fputc('\n', stderr);
    } else {
        if (p->total > 0)
            fprintf(stderr, "%s: %ld/%ld %s, %.1f/s, %.0fs elapsed\n", tool_name, done, p->total, p->what,
                    rate, el);
        else
            fprintf(stderr, "%s: %ld %s, %.1f/s, %.0fs elapsed\n", tool_name, done, p->what, rate, el);
    }
    p->shown = 1;
}

void progress_update(progress *p, long done) {
    if (tool_quiet) return;
    double t = now_seconds();
    if (t - p->t0 < 2.0) return;
    if (t - p->last < (p->tty ? 0.2 : 10.0)) return;
    p->last = t;
    progress_print(p, done, t, 0);
}

void progress_end(progress *p, long done) {
    if (tool_quiet || !p->shown) return;
    progress_print(p, done, now_seconds(), 1);
}

FILE *atomic_open(const char *path, char **tmp) {
    size_t n = strlen(path) + 32;
    *tmp = xmalloc(n);
    snprintf(*tmp, n, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(*tmp, "wb");
    if (!f) {
        int e = errno;
        free(*tmp);
        *tmp = NULL;
        errno = e;
    }
    return f;
}

int atomic_commit(FILE *f, char *tmp, const char *path) {
    errno = 0;
    int bad = fflush(f) != 0 || ferror(f) || fsync(fileno(f)) != 0;
    int e = errno ? errno : EIO;
    if (fclose(f) != 0 && !bad) bad = 1, e = errno;
    if (!bad && rename(tmp, path) != 0) bad = 1, e = errno;
    if (bad) unlink(tmp);
    free(tmp);
    if (bad) {
        errno = e;
        return -1;
    }
    /* make the rename itself durable */
    char *dir = xstrdup(path), *slash = strrchr(dir, '/');
    if (slash) slash[slash == dir ? 1 : 0] = 0;
    int dfd = open(slash ? dir : ".", O_RDONLY | O_DIRECTORY);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
    free(dir);
    return 0;
}

void atomic_abort(FILE *f, char *tmp) {
    int e = errno;
    if (f) fclose(f);
    if (tmp) unlink(tmp);
    free(tmp);
    errno = e;
}

int seterr(char *err, size_t errlen, const char *fmt, ...) {
    if (!err || errlen == 0) return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

char *read_file_all(const char *path, size_t max, size_t *n, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        seterr(err, errlen, "%s: %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, len = 0;
    char *buf = xmalloc(cap + 1);
    for (;;) {
        if (len == cap) {
            if (cap >= max) {
                fclose(f);
                free(buf);
                seterr(err, errlen, "%s: larger than %zu bytes", path, max);
                return NULL;
            }
            cap = 2 * cap < max ? 2 * cap : max;
            buf = xrealloc(buf, cap + 1);
        }
        size_t k = fread(buf + len, 1, cap - len, f);
        len += k;
        if (k == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        seterr(err, errlen, "%s: read error", path);
        return NULL;
    }
    buf[len] = 0;
    *n = len;
    return buf;
}
