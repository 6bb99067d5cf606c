/* lines.h - reading text lines from a file descriptor with read(2), so a
 * tool can tell whether more input is ready without blocking (for batching
 * that still streams) and bound the memory a line may take. */
#ifndef WSAC_LINES_H
#define WSAC_LINES_H

#include <stddef.h>

typedef struct {
    int fd;
    char *buf;
    size_t cap, beg, end, max_line;
    long lineno;
    int eof, skipping;
} line_reader;

/* max_line: longer lines are reported (LR_TOO_LONG) and skipped whole. */
void lr_init(line_reader *lr, int fd, size_t max_line);
void lr_free(line_reader *lr);

enum { LR_EOF = 0, LR_LINE = 1, LR_TOO_LONG = 2, LR_ERROR = -1 };
/* Next line without its "\n" (and "\r\n"), NUL-terminated in place; valid
 * until the next call. lr->lineno is its 1-based number. */
int lr_next(line_reader *lr, char **line, size_t *len);
/* 1 if lr_next() would return without waiting for input that has not come. */
int lr_ready(line_reader *lr);

#endif
