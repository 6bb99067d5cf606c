/* metrics.h - captioning metrics as pycocoevalcap computes them, and
 * audio-text retrieval metrics (../shared/reference/metrics.md).
 *
 * Captioning metrics take PTB-tokenized strings (ptb.h) and reproduce
 * pycocoevalcap (salaniz, ad63453) operation for operation: Bleu(4) with
 * option 'closest' (corpus and the sentence-level values it returns),
 * Rouge() (beta 1.2), Cider() (CIDEr-D: n 4, sigma 6, document frequencies
 * over the references of the scored corpus). Corpus means of ROUGE-L and
 * CIDEr-D are numpy means (pairwise summation, reproduced by np_mean). */
#ifndef WSAC_METRICS_H
#define WSAC_METRICS_H

#include <stddef.h>

typedef struct {
    const char *cand;         /* tokenized candidate */
    const char *const *refs;  /* tokenized references */
    int nrefs;                /* >= 1 */
} cm_item;

typedef struct {
    size_t n;
    double bleu[4];      /* corpus BLEU-1..4 */
    double rouge_l;      /* mean of rouge_item */
    double cider_d;      /* mean of cider_item */
    double *bleu_item;   /* [n][4] sentence-level BLEU-1..4 */
    double *rouge_item;  /* [n] */
    double *cider_item;  /* [n] */
    long testlen, reflen; /* BLEU corpus lengths ('closest' reference lengths) */
    long guess[4], correct[4];
} cm_scores;

/* All of BLEU, ROUGE-L and CIDEr-D over items[0..n). n >= 1. With n == 1,
 * CIDEr-D is 0 (ln 1 = 0), as pycocoevalcap gives. */
void cm_compute(const cm_item *items, size_t n, cm_scores *s);
void cm_free(cm_scores *s);

/* ROUGE-L of one item (pycocoevalcap Rouge.calc_score: tokens split on
 * single spaces, as Python's str.split(" ")). */
double cm_rouge_l(const char *cand, const char *const *refs, int nrefs);

/* numpy.mean of a float64 array: numpy's pairwise summation (blocks of 8
 * accumulators, 128-element leaves), then the division. */
double np_mean(const double *x, size_t n);
double np_pairwise_sum(const double *x, size_t n);

/* ------------------------------------------------------------ retrieval */

typedef struct {
    long queries;                 /* queries scored */
    double r1, r5, r10;           /* fraction of queries with a relevant item in the top k */
    double map10;                 /* mean average precision at 10 */
    double median_rank, mean_rank; /* rank of the first relevant item, 1-based */
} rt_scores;

/* Rank (1-based) of gallery item `target` in row[0..n): 1 + the number of
 * items scoring higher + the number of items scoring the same that come
 * before it (ties go to the earlier item). */
long rt_rank(const float *row, int n, int target);

/* Text-to-audio and audio-to-text retrieval between text [nt][d] and audio
 * [na][d] (rows L2-normalised: dot products are cosines, computed with
 * cblas_sgemm in blocks). text_audio[t] is the audio index of caption t, or
 * -1 to leave caption t out of both directions.
 *   t2a: one query per caption (text_audio >= 0) over all na audios; one
 *        relevant item; mAP@10 = mean of 1/rank if rank <= 10 else 0.
 *   a2t: one query per audio that has captions, over the captions that take
 *        part; R@k counts the best-ranked relevant caption; AP@10 =
 *        (1/R) sum over the relevant captions ranked j-th among them at rank
 *        r_j <= 10 of j / r_j, R = the audio's number of captions.
 * Median rank: floor(median(rank - 1)) + 1. t2a_rank (nt, may be NULL) gets
 * each caption's rank (0 when left out); a2t_rank (na, may be NULL) each
 * audio's best rank (0 without captions). */
void rt_evaluate(const float *text, int nt, const float *audio, int na, int d, const int *text_audio,
                 rt_scores *t2a, rt_scores *a2t, long *t2a_rank, long *a2t_rank);

#endif

/* ------------------------------------------------------------ Java tools */

/* METEOR 1.5 as pycocoevalcap's Meteor drives it: one process
 * `JAVA -jar -Xmx2G JAR - - -stdio -l en -norm` (working directory: the
 * jar's, LC_ALL=C); items in key order; per item a line
 * "SCORE ||| ref1 ||| ... ||| hyp" (hyp without "|||", double spaces
 * folded once) answered by a line of statistics; then
 * "EVAL ||| stats1 ||| stats2 ..." answered by one score per item and the
 * corpus score. keys[i] names items[i]. Fills item[0..n) (in the order of
 * items) and *corpus. Returns 0, or -1 with the reason in err. */
int meteor_run(const char *java, const char *jar, const char *const *keys, const cm_item *items, size_t n,
               double *item, double *corpus, char *err, size_t errlen);

/* SPICE 1.0 as pycocoevalcap's Spice: writes [{"image_id", "test", "refs"}]
 * (items in key order) to a JSON file, runs `JAVA -jar -Xmx8G JAR IN -cache
 * DIR -out OUT -subset -silent` (working directory: the jar's), reads OUT:
 * item score = scores.All.f (NaN where it is not a number), corpus score =
 * numpy mean over OUT's list. cache_dir NULL: a temporary directory,
 * removed afterwards. Returns 0, or -1 with the reason in err. */
int spice_run(const char *java, const char *jar, const char *cache_dir, const char *const *keys, const cm_item *items,
              size_t n, double *item, double *corpus, char *err, size_t errlen);
