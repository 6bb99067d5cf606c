/* lines.c - line reader over read(2) (see lines.h). */
#define _POSIX_C_SOURCE 200809L
#include "lines.h"

#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

void lr_init(line_reader *lr, int fd, size_t max_line) {
    memset(lr, 0, sizeof *lr);
    lr->fd = fd;
    lr->max_line = max_line;
    lr->cap = 1 << 16;
    lr->buf = xmalloc(lr->cap + 1);
}

void lr_free(line_reader *lr) {
    free(lr->buf);
    memset(lr, 0, sizeof *lr);
}

static int fill(line_reader *lr) {
    if (lr->beg > 0) {
        memmove(lr->buf, lr->buf + lr->beg, lr->end - lr->beg);
        lr->end -= lr->beg;
        lr->beg = 0;
    }
    if (lr->end == lr->cap) {
        size_t nc = lr->cap * 2;
        if (nc > lr->max_line + 2) nc = lr->max_line + 2;
        if (nc > lr->cap) {
            lr->buf = xrealloc(lr->buf, nc + 1);
            lr->cap = nc;
        }
    }
    for (;;) {
        ssize_t k = read(lr->fd, lr->buf + lr->end, lr->cap - lr->end);
        if (k > 0) {
            lr->end += (size_t)k;
            return 1;
        }
        if (k == 0) {
            lr->eof = 1;
            return 0;
        }
        if (errno != EINTR) return -1;
    }
}

int lr_next(line_reader *lr, char **line, size_t *len) {
    for (;;) {
        char *s = lr->buf + lr->beg;
        size_t have = lr->end - lr->beg;
        char *nl = memchr(s, '\n', have);
        if (nl || (lr->eof && have > 0)) {
            size_t n = nl ? (size_t)(nl - s) : have;
            lr->beg += nl ? n + 1 : n;
            if (lr->skipping) { /* the tail of a line already reported too long */
                lr->skipping = 0;
                continue;
            }
            lr->lineno++;
            if (n > lr->max_line) {
                /* too long even though it is all here: the same answer
                 * however read(2) split the input (a final \r counts) */
                *line = NULL;
                *len = 0;
                return LR_TOO_LONG;
            }
            if (n > 0 && s[n - 1] == '\r') n--;
            s[n] = 0;
            *line = s;
            *len = n;
            return LR_LINE;
        }
        if (lr->eof) return LR_EOF;
        if (have >= lr->max_line + 1 && !lr->skipping) {
            /* drop what we have, remember to drop the rest of the line */
            lr->beg = lr->end;
            lr->skipping = 1;
            lr->lineno++;
            *line = NULL;
            *len = 0;
            return LR_TOO_LONG;
        }
        if (lr->skipping) lr->beg = lr->end;
        if (fill(lr) < 0) return LR_ERROR;
    }
}

int lr_ready(line_reader *lr) {
    if (lr->eof || memchr(lr->buf + lr->beg, '\n', lr->end - lr->beg)) return 1;
    struct pollfd p = {lr->fd, POLLIN, 0};
    return poll(&p, 1, 0) > 0;
}
