/* csvrows.h - a CSV file held in memory, row by row, as Python's csv module
 * reads it (libcsv; spaces around fields kept, quoted newlines inside a
 * field), for the reference and relevance readers of `score`.
 *
 * Each row reaches the callback with its fields (NUL-terminated, owned by
 * csv_rows: copy what is kept) and the line it starts on, so a bad row can be
 * named; the first row is the header, its first field without a UTF-8 BOM. */
#ifndef WSAC_CSVROWS_H
#define WSAC_CSVROWS_H

#include <stddef.h>

/* 0 to go on; -1 to stop the file, with err set */
typedef int (*csv_row_fn)(void *ctx, char **fields, int nf, long line, char *err, size_t errlen);

/* Feeds buf[0..len) of the file named path to fn, a row at a time. Returns 0,
 * or -1 with err set: the callback's reason, "PATH: line L: " and libcsv's
 * (an unterminated quote...), or "PATH: empty file" when there was no row. */
int csv_rows(const char *path, const char *buf, size_t len, csv_row_fn fn, void *ctx, char *err, size_t errlen);

#endif
