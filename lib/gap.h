/* gap.h - the modality gap between audio and text embeddings (WSAC paper
 * section 3.1; wsac.md C "noise injection / embedding shift").
 *
 * Legend: n rows, D width; rows are L2-normalised unless said otherwise. */
#ifndef WSAC_GAP_H
#define WSAC_GAP_H

#include <stdint.h>

/* A small deterministic RNG (xoshiro256**, seeded with splitmix64) with
 * standard normal draws (Box-Muller); its whole state can be saved. */
typedef struct {
    uint64_t s[4];
    int have_spare;
    double spare;
} rng_t;
void rng_seed(rng_t *r, uint64_t seed);
uint64_t rng_next(rng_t *r);
double rng_uniform(rng_t *r); /* [0, 1) */
double rng_normal(rng_t *r);

/* mean of each row set: out[D] = mean_i x[i, :] (double accumulation) */
void mean_rows(double *out, const float *x, int n, int D);

/* Mean cosine over distinct pairs within a set of unit rows, from the sum
 * vector: (|sum|^2 - n) / (n (n - 1)). */
double mean_pair_cos_within(const double *sum, int n, int D);

/* x[D] <- normalise(normalise(x) + sigma * N(0, 1)^D + gap), gap may be NULL;
 * the published noise_injection (CapDec train.py) with the gap added. */
void gap_apply(float *x, int D, const float *gap, double sigma, rng_t *r);

/* The paper's noise scale: mean over pairs of captions of the same audio of
 * ||e_i - e_j||_inf. group[i] is the group index of row i. Returns the mean
 * and the number of pairs in *npairs (0: no group has two members). */
double gap_sigma(const float *x, const int *group, int n, int D, long *npairs);

/* First two principal axes of the rows of x (centred on their mean):
 * axes[2, D], var[2] their variances, total the total variance. */
void pca2(double *axes, double *var, double *total, const float *x, int n, int D);

/* xy[n, 2]: the rows of x[n, D], centred on mu[D], on the two axes[2, D]. */
void pca_project(double *xy, const float *x, int n, int D, const double *axes, const double *mu);

#endif
