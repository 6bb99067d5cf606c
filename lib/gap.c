/* gap.c - modality-gap statistics, noise injection, PCA (see gap.h). */
#include "gap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(rng_t *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
    r->have_spare = 0;
    r->spare = 0;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t rng_next(rng_t *r) {
    uint64_t *s = r->s, result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double rng_uniform(rng_t *r) { return (double)(rng_next(r) >> 11) * 0x1.0p-53; }

double rng_normal(rng_t *r) {
    if (r->have_spare) {
        r->have_spare = 0;
        return r->spare;
    }
    double u1;
    do u1 = rng_uniform(r);
    while (u1 <= 0);
    double u2 = rng_uniform(r), rad = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
    r->spare = rad * sin(th);
    r->have_spare = 1;
    return rad * cos(th);
}

void mean_rows(double *out, const float *x, int n, int D) {
    memset(out, 0, (size_t)D * sizeof(double));
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) out[d] += x[(size_t)i * D + d];
    for (int d = 0; d < D && n > 0; d++) out[d] /= n;
}

double mean_pair_cos_within(const double *sum, int n, int D) {
    if (n < 2) return NAN;
    double ss = 0;
    for (int d = 0; d < D; d++) ss += sum[d] * sum[d];
    return (ss - n) / ((double)n * (n - 1));
}

static void normalise(float *x, int D) {
    double ss = 0;
    for (int d = 0; d < D; d++) ss += (double)x[d] * x[d];
    float inv = (float)(1.0 / fmax(sqrt(ss), 1e-12)); /* F.normalize eps */
    for (int d = 0; d < D; d++) x[d] *= inv;
}

void gap_apply(float *x, int D, const float *gap, double sigma, rng_t *r) {
    normalise(x, D);
    if (sigma > 0)
        for (int d = 0; d < D; d++) x[d] += (float)(sigma * rng_normal(r));
    if (gap)
        for (int d = 0; d < D; d++) x[d] += gap[d];
    normalise(x, D);
}

double gap_sigma(const float *x, const int *group, int n, int D, long *npairs) {
    /* bucket the rows by group (groups are 0..G-1) */
    int *ord = xmalloc((size_t)(n ? n : 1) * sizeof(int));
    int G = 0;
    for (int i = 0; i < n; i++) G = group[i] + 1 > G ? group[i] + 1 : G;
    int *start = xcalloc((size_t)G + 1, sizeof(int));
    for (int i = 0; i < n; i++) start[group[i] + 1]++;
    for (int g = 0; g < G; g++) start[g + 1] += start[g];
    int *fill = xmalloc((size_t)(G ? G : 1) * sizeof(int));
    memcpy(fill, start, (size_t)G * sizeof(int));
    for (int i = 0; i < n; i++) ord[fill[group[i]]++] = i;
    double acc = 0;
    long pairs = 0;
    for (int g = 0; g < G; g++)
        for (int a = start[g]; a < start[g + 1]; a++)
            for (int b = a + 1; b < start[g + 1]; b++) {
                const float *u = x + (size_t)ord[a] * D, *v = x + (size_t)ord[b] * D;
                double m = 0;
                for (int d = 0; d < D; d++) m = fmax(m, fabs((double)u[d] - v[d]));
                acc += m;
                pairs++;
            }
    free(ord);
    free(start);
    free(fill);
    *npairs = pairs;
    return pairs ? acc / pairs : NAN;
}

/* y[D] = C v, C = (X - mu)^T (X - mu) / n, without forming C */
static void cov_mul(double *y, const double *v, const float *x, const double *mu, int n, int D) {
    memset(y, 0, (size_t)D * sizeof(double));
    for (int i = 0; i < n; i++) {
        const float *r = x + (size_t)i * D;
        double p = 0;
        for (int d = 0; d < D; d++) p += (r[d] - mu[d]) * v[d];
        for (int d = 0; d < D; d++) y[d] += p * (r[d] - mu[d]);
    }
    for (int d = 0; d < D; d++) y[d] /= n;
}

void pca2(double *axes, double *var, double *total, const float *x, int n, int D) {
    double *mu = xmalloc((size_t)D * sizeof(double)), *y = xmalloc((size_t)D * sizeof(double));
    mean_rows(mu, x, n, D);
    *total = 0;
    for (int i = 0; i < n; i++)
        for (int d = 0; d < D; d++) {
            double t = x[(size_t)i * D + d] - mu[d];
            *total += t * t / n;
        }
    for (int k = 0; k < 2; k++) {
        double *v = axes + (size_t)k * D;
        for (int d = 0; d < D; d++) v[d] = 1.0 + 0.01 * (double)((d * 7919 + k * 104729) % 101); /* fixed start */
        double lambda = 0;
        for (int it = 0; it < 300; it++) {
            /* orthogonalise against the axes found so far (deflation) */
            for (int j = 0; j < k; j++) {
                double p = 0;
                for (int d = 0; d < D; d++) p += v[d] * axes[(size_t)j * D + d];
                for (int d = 0; d < D; d++) v[d] -= p * axes[(size_t)j * D + d];
            }
            double nn = 0;
            for (int d = 0; d < D; d++) nn += v[d] * v[d];
            nn = sqrt(nn);
            if (nn == 0) break;
            for (int d = 0; d < D; d++) v[d] /= nn;
            cov_mul(y, v, x, mu, n, D);
            double l = 0;
            for (int d = 0; d < D; d++) l += y[d] * v[d];
            memcpy(v, y, (size_t)D * sizeof(double));
            if (it > 10 && fabs(l - lambda) <= 1e-12 * fabs(l)) {
                lambda = l;
                break;
            }
            lambda = l;
        }
        for (int j = 0; j < k; j++) {
            double p = 0;
            for (int d = 0; d < D; d++) p += v[d] * axes[(size_t)j * D + d];
            for (int d = 0; d < D; d++) v[d] -= p * axes[(size_t)j * D + d];
        }
        double nn = 0;
        for (int d = 0; d < D; d++) nn += v[d] * v[d];
        nn = sqrt(nn);
        for (int d = 0; d < D && nn > 0; d++) v[d] /= nn;
        /* a fixed sign: the largest component positive */
        int big = 0;
        for (int d = 1; d < D; d++)
            if (fabs(v[d]) > fabs(v[big])) big = d;
        if (v[big] < 0)
            for (int d = 0; d < D; d++) v[d] = -v[d];
        var[k] = lambda;
    }
    free(mu);
    free(y);
}

void pca_project(double *xy, const float *x, int n, int D, const double *axes, const double *mu) {
    for (int i = 0; i < n; i++)
        for (int a = 0; a < 2; a++) {
            double p = 0;
            for (int d = 0; d < D; d++) p += (x[(size_t)i * D + d] - mu[d]) * axes[(size_t)a * D + d];
            xy[2 * i + a] = p;
        }
}
