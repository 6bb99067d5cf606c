/* dist.c - see dist.h */
#include "dist.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"

#ifdef WSAC_MPI
#include <mpi.h>

static int rank_, size_ = 1, up_;

/* what MPI calls a failure ends the run with MPI's message; no return codes to check */
int dist_init(int *argc, char ***argv) {
    if (up_) return size_;
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    up_ = 1;
    return size_;
}

int dist_rank(void) { return rank_; }
int dist_size(void) { return size_; }
int dist_built(void) { return 1; }

/* pieces of at most this many values: the gather buffer is size * PIECE floats */
#define PIECE (1 << 20)

void dist_allgather(float *all, const float *mine, size_t n) {
    if (size_ == 1) {
        if (all != mine) memmove(all, mine, n * sizeof(float));
        return;
    }
    for (size_t o = 0; o < n; o += PIECE) {
        int k = (int)(n - o < PIECE ? n - o : PIECE);
        if (k == (int)n) {
            MPI_Allgather(mine, k, MPI_FLOAT, all, k, MPI_FLOAT, MPI_COMM_WORLD);
        } else { /* a piece of each rank's vector: gather, then put each in its place */
            float *tmp = xmalloc((size_t)size_ * k * sizeof(float));
            MPI_Allgather(mine + o, k, MPI_FLOAT, tmp, k, MPI_FLOAT, MPI_COMM_WORLD);
            for (int r = 0; r < size_; r++) memcpy(all + (size_t)r * n + o, tmp + (size_t)r * k, (size_t)k * sizeof(float));
            free(tmp);
        }
    }
}

void dist_sum(float *x, size_t n) {
    if (size_ == 1) return;
    float *tmp = xmalloc((size_t)size_ * (n < PIECE ? n : PIECE) * sizeof(float) + 1);
    for (size_t o = 0; o < n; o += PIECE) {
        int k = (int)(n - o < PIECE ? n - o : PIECE);
        MPI_Allgather(x + o, k, MPI_FLOAT, tmp, k, MPI_FLOAT, MPI_COMM_WORLD);
        for (int i = 0; i < k; i++) {
            float s = tmp[i];
            for (int r = 1; r < size_; r++) s += tmp[(size_t)r * k + i];
            x[o + i] = s;
        }
    }
    free(tmp);
}

void dist_sum_d(double *x, size_t n) {
    if (size_ == 1) return;
    double *tmp = xmalloc((size_t)size_ * (n < PIECE ? n : PIECE) * sizeof(double) + 1);
    for (size_t o = 0; o < n; o += PIECE) {
        int k = (int)(n - o < PIECE ? n - o : PIECE);
        MPI_Allgather(x + o, k, MPI_DOUBLE, tmp, k, MPI_DOUBLE, MPI_COMM_WORLD);
        for (int i = 0; i < k; i++) {
            double s = tmp[i];
            for (int r = 1; r < size_; r++) s += tmp[(size_t)r * k + i];
            x[o + i] = s;
        }
    }
    free(tmp);
}

long dist_max(long v) {
    if (size_ == 1) return v;
    long out;
    MPI_Allreduce(&v, &out, 1, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
    return out;
}

void dist_abort(int status) {
    if (up_ && size_ > 1) MPI_Abort(MPI_COMM_WORLD, status);
    exit(status);
}

void dist_finalize(void) {
    if (up_) MPI_Finalize();
    up_ = 0;
}

#else /* one rank */

int dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return 1;
}
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
int dist_built(void) { return 0; }
void dist_allgather(float *all, const float *mine, size_t n) {
    if (all != mine) memmove(all, mine, n * sizeof(float));
}
void dist_sum(float *x, size_t n) { (void)x, (void)n; }
void dist_sum_d(double *x, size_t n) { (void)x, (void)n; }
long dist_max(long v) { return v; }
void dist_abort(int status) { exit(status); }
void dist_finalize(void) {}

#endif
