/* refs.h - reference captions and candidate captions for `score caption`.
 *
 * References come from
 *   - a Clotho-style CSV: a header row whose first column is the key
 *     (file_name) and whose columns named caption* are the references
 *     (file_name,caption_1..caption_N); empty cells are not references;
 *   - an AudioCaps CSV (audiocap_id,youtube_id,start_time,caption): rows
 *     grouped by youtube_id, the key, in order of first appearance, captions
 *     in file order;
 *   - JSON {"KEY": ["ref", ...], ...}, or the metrics-dev corpus form
 *     {"KEY": {"references": [...], ...}, ...}.
 * A CSV row with the wrong number of fields, an empty key, a duplicate key
 * (Clotho form) or no reference at all is named on stderr with its line
 * number and skipped. Candidates are lines KEY<TAB>CAPTION. */
#ifndef WSAC_REFS_H
#define WSAC_REFS_H

#include <stddef.h>

typedef struct {
    char *key;
    char **caps;  /* references (ref_set) or the one candidate (caps[0]) */
    int ncaps;
    long line;    /* line of the file where the item starts (0: JSON) */
} cap_entry;

typedef struct {
    cap_entry *e;
    int n, cap;
    int *tab, tcap; /* key -> index */
    long bad;       /* malformed rows or lines: named on stderr, skipped */
    const char *format; /* "clotho-csv", "audiocaps-csv", "json", "tsv" */
} cap_set;

/* Read references from path. Returns 0, or -1 with the reason in err
 * (unreadable, not CSV or JSON, unknown CSV header: fatal for the caller).
 * Malformed rows are counted in set->bad and named on stderr. */
int refs_load(cap_set *set, const char *path, char *err, size_t errlen);

/* Read KEY<TAB>CAPTION lines from fd (name for messages). A line without a
 * tab, with an empty key, longer than 1 MiB, or with a key seen before is
 * named with its line number and skipped (set->bad); blank lines are
 * ignored. Returns 0, or -1 with the reason in err (read error). */
int cands_load(cap_set *set, int fd, const char *name, char *err, size_t errlen);

/* Index of key, or -1. */
int capset_find(const cap_set *set, const char *key);
void capset_free(cap_set *set);

#endif
