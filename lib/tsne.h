/* tsne.h - exact t-SNE to two dimensions (van der Maaten & Hinton 2008), as
 * scikit-learn's TSNE(method="exact", init="pca", learning_rate="auto")
 * computes it, for `gapshift plot --tsne` (the paper's Fig. 2-3 style).
 * O(n^2) memory and time per iteration: meant for a few thousand points. */
#ifndef WSAC_TSNE_H
#define WSAC_TSNE_H

#include <stddef.h>

typedef struct {
    double perplexity;    /* 30 */
    int iters;            /* 1000 in all (sklearn max_iter) */
    int explore_iters;    /* 250 with early exaggeration and momentum 0.5 */
    double exaggeration;  /* 12 */
    double learning_rate; /* <= 0: max(n / exaggeration / 4, 50), sklearn's "auto" */
} tsne_opts;

#define TSNE_MAX_POINTS 6000 /* two n x n double matrices: 576 MB at this size */

void tsne_opts_default(tsne_opts *o);

/* P: the symmetric joint probabilities of the rows of x[n, D] (squared
 * Euclidean distances, each row's Gaussian calibrated by binary search to
 * the perplexity), P = max((P_cond + P_cond^T) / sum, DBL_EPSILON);
 * out[n, n], diagonal 0. Returns the largest |entropy - log(perplexity)|
 * left by the searches. */
double tsne_joint_p(double *P, const float *x, int n, int D, double perplexity);

/* The gradient of KL(P || Q) at y[n, 2]: grad[n, 2], with P multiplied by
 * `exaggeration` (early exaggeration); returns KL when want_kl (else 0).
 * W: scratch [n, n]. */
double tsne_kl_grad(double *grad, const double *P, const double *y, int n, double exaggeration, double *W, int want_kl);

/* y[n, 2] from x[n, D]: PCA start (first coordinate's std 1e-4), then the
 * optimisation. report(ctx, iter, kl) is called every 50 iterations (may be
 * NULL). Returns the final KL divergence, or a negative number with err set
 * (n too small for the perplexity, or too large). Deterministic. */
double tsne2(double *y, const float *x, int n, int D, const tsne_opts *o, void (*report)(void *, int, double),
             void *ctx, char *err, size_t errlen);

#endif
