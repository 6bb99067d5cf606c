/* util.h - process-wide conventions shared by every wsac tool.
 *
 * Exit statuses (../shared/spec.md): 0 all records processed, 1 usage error,
 * 2 fatal (stops at once), 3 some records failed (each named on stderr).
 * Diagnostics go to stderr prefixed with the tool name; stdout carries data. */
#ifndef WSAC_UTIL_H
#define WSAC_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

enum { EXIT_OK = 0, EXIT_USAGE = 1, EXIT_FATAL = 2, EXIT_PARTIAL = 3 };

#define WSAC_VERSION "0.1.0"

extern const char *tool_name; /* set by tool_init(); prefixes every message */
extern int tool_verbose;      /* -v count */
extern int tool_quiet;        /* -q: no progress, no summary */

/* Line-buffer stderr (so concurrent pipeline stages do not interleave mid-line)
 * and remember the tool name. */
void tool_init(const char *name);

void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void infox(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* fatal error: message, exit status 2 */
void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* usage error: message, hint to --help, exit status 1 */
void die_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* Usage error for getopt_long's '?' or ':' result (optstring starts with ':'). */
void die_bad_option(int c, char **argv) __attribute__((noreturn));

/* A reason for a failure, written into err[errlen] (err may be NULL); returns -1. */
int seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The whole of a file, at most max bytes (a NUL added after them); NULL with
 * the reason in err ("PATH: why"). *n: its length. Free with free(). */
char *read_file_all(const char *path, size_t max, size_t *n, char *err, size_t errlen);

/* Allocation that never returns NULL: out of memory is fatal (status 2). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Files that replace others whole (checkpoints, plots, statistics): written
 * to PATH.tmp.PID beside PATH, then flushed, fsync'ed, renamed over PATH and
 * the directory fsync'ed, so that a crash or a full disk leaves the old file
 * or the new one, never a part. atomic_open: the stream and, in *tmp, the
 * temporary's name (NULL with errno set on failure). atomic_commit: 0, or -1
 * with errno set, the temporary removed and PATH untouched; atomic_abort
 * drops the temporary. Both free *tmp. */
FILE *atomic_open(const char *path, char **tmp);
int atomic_commit(FILE *f, char *tmp, const char *path);
void atomic_abort(FILE *f, char *tmp);
/* 64-byte aligned allocation for SIMD/BLAS buffers; free with free(). */
void *xmalloc_aligned(size_t n);

/* n*size with overflow detection: returns 0 and sets *out on success. */
int mul_overflow_size(size_t a, size_t b, size_t *out);

/* Strict numeric option parsing: the whole string must be a number in range.
 * On failure: usage error naming the option. */
long parse_long(const char *opt, const char *s, long lo, long hi);
double parse_double(const char *opt, const char *s, double lo, double hi);

/* Check stdout at exit: a failed write or flush is fatal (full disk, -f limit). */
void close_stdout_or_die(void);

/* Closing summary and exit status: "tool: N records written, M failed". */
int finish(long ok, long failed);

/* FNV-1a hash of a NUL-terminated string (hash tables of keys). */
uint64_t str_hash(const char *s);

/* Monotonic seconds. */
double now_seconds(void);

/* Whether bytes [s, s+n) are valid UTF-8. */
int utf8_valid(const char *s, size_t n);

/* The code point at s[0..n), n > 0, strictly decoded (utf8proc_iterate: no
 * overlongs, surrogates or values above U+10FFFF): its length in bytes, or 0
 * if the bytes there are not valid UTF-8. */
size_t utf8_next(const unsigned char *s, size_t n, int32_t *cp);

/* cp (0..U+10FFFF) as UTF-8 into out[0..4); returns the length. Not
 * utf8proc_encode_char, which writes U+FFFE and U+FFFF as one byte each. */
int utf8_put(char *out, int32_t cp);

/* err = "WHAT is not valid UTF-8 at byte I (0xff 0x41)", the bytes from s[i]. */
void utf8_err(char *err, size_t errlen, const char *what, const char *s, size_t n, size_t i);

/* Write a JSON string literal for bytes s[0..n) to f; invalid UTF-8 bytes
 * become U+FFFD so the output is always valid JSON. */
void json_write_string(FILE *f, const char *s, size_t n);

/* Progress reporting on stderr: a bar on a TTY, plain lines every 10 s
 * otherwise; silent for the first 2 s, and with -q. total <= 0: unknown. */
typedef struct {
    double t0, last;
    long total;
    int tty, shown;
    const char *what;
} progress;
void progress_init(progress *p, const char *what, long total);
void progress_update(progress *p, long done);
void progress_end(progress *p, long done);

#endif
