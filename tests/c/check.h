/* check.h - minimal test harness: every check prints "ok - NAME" or
 * "not ok - NAME: detail"; check_exit() returns non-zero on any failure.
 * tests/run.sh counts the lines of every test program. */
#ifndef WSAC_CHECK_H
#define WSAC_CHECK_H

#include <stdarg.h>
#include <stdio.h>

static int check_failed_, check_passed_;
/* 1: print only the failures (the other ranks of an MPI test) */
static int check_quiet_ok_;

static void check_(int cond, const char *name, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void check_(int cond, const char *name, const char *fmt, ...) {
    if (cond) {
        check_passed_++;
        if (!check_quiet_ok_) printf("ok - %s\n", name);
    } else {
        check_failed_++;
        printf("not ok - %s", name);
        if (fmt && *fmt) {
            va_list ap;
            va_start(ap, fmt);
            fputs(": ", stdout);
            vprintf(fmt, ap);
            va_end(ap);
        }
        putchar('\n');
    }
    fflush(stdout);
}

#define CHECK(cond, name) check_((cond), (name), "%s", #cond)
#define CHECKF(cond, name, ...) check_((cond), (name), __VA_ARGS__)

static int check_exit(void) { return check_failed_ ? 1 : 0; }

#endif
