/* captions.h - reading keyed captions: KEY<TAB>CAPTION lines, or the Clotho
 * and AudioCaps CSV files (../shared/spec.md, clap-text and score).
 *
 * Lines (CAP_LINES): one caption per line, KEY<TAB>CAPTION; the caption is
 * everything after the first tab, exactly as given. A line without a tab is
 * a caption keyed by its line number ("1", "2", ...). Empty lines are
 * skipped (their numbers still count); "\r\n" endings are accepted.
 *
 * CSV (CAP_CSV), parsed with libcsv as Python's csv module reads these files:
 * fields may be quoted, with "" for a quote and commas or newlines inside;
 * nothing is trimmed; a quote inside an unquoted field is a literal. The
 * header row says which file it is; columns are found by name, in any order:
 *   Clotho     file_name,caption_1,...,caption_N  -> N records per row,
 *              keys FILE_NAME#1 .. FILE_NAME#N
 *   AudioCaps  audiocap_id,youtube_id,start_time,caption -> key audiocap_id
 *
 * A record that cannot be used is returned with err set: a line or row
 * longer than max_record bytes (skipped whole), a CSV row whose field count
 * differs from the header's, an unterminated quote at the end, an empty or
 * invalid key (those are named "line N"), a caption that is not valid UTF-8
 * or holds a NUL byte (named by key). The rest of the input goes on.
 *
 * JSON (CAP_JSON): WSAC's caption lists as the published data/csv2json.py
 * writes them (clotho.json, audiocaps.json): one JSON list of caption
 * strings, parsed with jansson once the whole input is in (a JSON document
 * is one value; at most 1 GiB). Entry i (0-based, Python's data[i]) is keyed
 * "i", header strings included, so keys do not depend on what is skipped;
 * line is i + 1. An entry that is not a string, holds a NUL (\u0000), or is
 * longer than max_record fails by itself. csv2json copies the CSV header
 * row into its list (Clotho: row[1:] of file_name,caption_1..caption_5;
 * AudioCaps: row[1], "youtube_id" in the official CSV, "caption" in
 * WavCaps' file_name,caption copy): an entry that is exactly "caption",
 * "caption_N" or "youtube_id" is a header string, marked with header = 1
 * and failed with a reason unless cap_keep_header() was called. A list
 * whose first entry is "youtube_id" came from the official AudioCaps CSV,
 * whose column 1 is the YouTube id: every entry is an id, not a caption,
 * and the reader refuses it (CAP_ERROR). Anything but a JSON list is a
 * CAP_ERROR too.
 *
 * Input is read with read(2) and records come out as soon as their line is
 * in, so a tool can batch what is ready (cap_ready) and still stream. A
 * UTF-8 byte order mark at the start is skipped. */
#ifndef WSAC_CAPTIONS_H
#define WSAC_CAPTIONS_H

#include <stddef.h>

typedef struct {
    char *key;     /* NUL-terminated, valid UTF-8; "line N" when the record has no usable key */
    char *text;    /* the caption, NUL-terminated, len bytes; NULL when the row failed */
    size_t len;
    long line;     /* 1-based line where the record's line or row starts */
    char *id;      /* the row's id (file_name, audiocap_id; the key for lines); NULL when the row failed */
    int index;     /* Clotho: the caption column, 1..N; otherwise 0 */
    int header;    /* JSON: a csv2json header string (see above) */
    char err[200]; /* non-empty: this record failed, for this reason */
} caption;

void caption_free(caption *c);

enum { CAP_LINES, CAP_CSV, CAP_JSON };                          /* input modes */
enum { CAP_FMT_LINES, CAP_FMT_CLOTHO, CAP_FMT_AUDIOCAPS, CAP_FMT_JSON }; /* what was found */
enum { CAP_EOF = 0, CAP_RECORD = 1, CAP_ERROR = -1 };

typedef struct cap_reader cap_reader;

/* name is used in messages ("stdin", a path). max_record: the longest line
 * or CSV row accepted, in bytes. */
cap_reader *cap_open(int fd, const char *name, int mode, size_t max_record);
void cap_close(cap_reader *r);
/* JSON: hand header strings out as captions (header = 1, err empty), as
 * the published code embeds them. */
void cap_keep_header(cap_reader *r, int keep);
/* 1 if the len bytes at s are a string csv2json takes from a CSV header row. */
int cap_is_header_string(const char *s, size_t len);

/* CAP_RECORD: *c filled (free with caption_free; check c->err).
 * CAP_EOF: the input ended. CAP_ERROR: fatal (a read error, a CSV header of
 * neither kind, JSON that is not a list of captions): cap_error() says
 * why; nothing more can be read. */
int cap_next(cap_reader *r, caption *c);
/* 1 if cap_next() would return without waiting for input that has not come. */
int cap_ready(cap_reader *r);
const char *cap_error(const cap_reader *r);

/* CAP_FMT_*: for CSV, known once the header has been read (after the first cap_next). */
int cap_format(const cap_reader *r);
const char *cap_format_name(int fmt); /* "lines", "clotho", "audiocaps", "json" */
/* Clotho: captions per row (N); otherwise 1. */
int cap_per_row(const cap_reader *r);

#endif
