/* relevance.h - multi-positive relevance files for text-to-audio retrieval
 * (DCASE 2025 Task 6's metadata_eval.csv: query,audio_filenames) and the
 * metrics over several relevant audios per query. */
#ifndef WSAC_RELEVANCE_H
#define WSAC_RELEVANCE_H

#include <stddef.h>
#include <stdio.h>

typedef struct {
    char *query;  /* the caption, as the CSV cell holds it (never empty) */
    char **audio; /* its relevant audio file names: unique, non-empty */
    int naudio;   /* >= 1 */
    long line;    /* the line the row starts on */
} rel_entry;

typedef struct {
    rel_entry *e;
    int n, cap;
    long bad; /* rows skipped (each named on stderr) */
} rel_set;

/* Parse a relevance CSV held in buf[0..len): a header with the columns
 * "query" and "audio_filenames" (any order, other columns ignored; a UTF-8
 * BOM is dropped), then one row per query. The audio_filenames cell is a
 * Python list literal of strings, as the published file writes it with
 * str(list): ['a.wav', "b's.wav"] (single or double quotes, backslash
 * escapes \\ \' \" \n \t \r, any other backslash kept as Python keeps it);
 * a cell that does not start with '[' is one file name. Duplicate names in a
 * list count once. A row with the wrong number of fields, an empty query, or
 * an unreadable or empty list is named on stderr (path: line N: reason:
 * skipped) and counted in bad; rows repeating a query are kept (each is a
 * query, as the published evaluation iterates over rows). Returns 0, or -1
 * with a reason in err (no header with both columns, CSV syntax error, empty
 * file); on failure the set is empty. */
int rel_parse(rel_set *s, const char *path, const char *buf, size_t len, char *err, size_t errlen);
/* rel_parse on the file at path ("-": stdin). */
int rel_load(rel_set *s, const char *path, char *err, size_t errlen);
void rel_free(rel_set *s);

/* Parse one Python list literal of strings (the whole of cell, surrounding
 * white space allowed). Returns the number of strings (>= 0) in *out (each
 * malloc'd, the array too, NULL-terminated), or -1 if cell is not such a
 * literal. */
int rel_parse_list(const char *cell, char ***out);

typedef struct {
    long queries;            /* queries scored */
    double r1, r5, r10;      /* fraction of queries with any relevant audio in the top k */
    double map10, map16;     /* mean AP@10, AP@16 */
    double mean_relevant;    /* mean number of relevant audios per query */
} rel_scores;

/* Text-to-audio retrieval with several relevant audios per query.
 * Query q is caption row qtext[q] of text [nt][d]; its relevant audios are
 * rel_idx[rel_off[q] .. rel_off[q+1]) (indices into audio [na][d], unique).
 * Rows are L2-normalised (dot products are cosines, cblas_sgemm). A relevant
 * audio's rank is rt_rank()'s (1-based; ties go to the earlier audio). With
 * the relevant ranks sorted, r_1 < ... < r_R:
 *   AP@K = (1/D) * sum over j with r_j <= K of j / r_j,
 *   D = R (divisor_min == 0: the DCASE 2025 baseline's average_precision_at_k)
 *   or min(R, K) (divisor_min != 0);
 *   R@k = 1 if r_1 <= k.
 * ranks (rel_off[nq] entries, may be NULL) gets each relevant audio's rank. */
void rel_evaluate(const float *text, int nt, const float *audio, int na, int d, const int *qtext, int nq,
                  const int *rel_off, const int *rel_idx, int divisor_min, rel_scores *out, long *ranks);

/* score retrieval --relevance: the queries of the relevance file at rpath
 * matched to the caption rows of text [nt][d] by their "text" field (the
 * caption string, exactly; the first row holding it, as the published
 * evaluation's captions.index(query)), or, when no row holds it as text, by
 * key; relevant audios matched to audio rows by key. A query not in the text
 * stream, or with a relevant audio not in the audio stream, is named on
 * stderr and left out (the others are scored). Writes JSON (table != 0: a
 * table) to o. Returns the number of problems (rows skipped, queries left
 * out), or -1 with a reason in err if the file cannot be read. */
int rel_score(const float *text, int nt, char *const *tkeys, char *const *ttexts, const float *audio, int na,
              char *const *akeys, int d, const char *rpath, int divisor_min, int table, FILE *o, char *err,
              size_t errlen);

#endif
