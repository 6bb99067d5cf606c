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

/* x[n] summed over the ranks, in pieces: each rank adds one slice of a piece
 * (MPI_Alltoall brings it every rank's copy of that slice) in rank order, then
 * the slices' sums are gathered. Every element is the rank-order sum, as if
 * one rank had added all the vectors, while each rank moves 2 (size - 1) / size
 * of the vector instead of size - 1 times it (a step's 1.8 GB of gradients). */
#define DIST_SUM(NAME, T, MPI_T)                                                        \
    void NAME(T *x, size_t n) {                                                         \
        if (size_ == 1 || !n) return;                                                   \
        size_t R = (size_t)size_, c = ((n < PIECE ? n : PIECE) + R - 1) / R;            \
        T *buf = xmalloc(3 * R * c * sizeof(T)), *got = buf + R * c, *sums = got + R * c; \
        for (size_t o = 0; o < n; o += PIECE) {                                         \
            size_t k = n - o < PIECE ? n - o : PIECE, ck = (k + R - 1) / R;             \
            memcpy(buf, x + o, k * sizeof(T));                                          \
            memset(buf + k, 0, (R * ck - k) * sizeof(T)); /* the last slice's tail */   \
            MPI_Alltoall(buf, (int)ck, MPI_T, got, (int)ck, MPI_T, MPI_COMM_WORLD);    \
            for (size_t j = 0; j < ck; j++) { /* got[r * ck + j]: rank r's value */     \
                T s = got[j];                                                           \
                for (size_t r = 1; r < R; r++) s += got[r * ck + j];                    \
                buf[j] = s;                                                             \
            }                                                                           \
            MPI_Allgather(buf, (int)ck, MPI_T, sums, (int)ck, MPI_T, MPI_COMM_WORLD);  \
            memcpy(x + o, sums, k * sizeof(T));                                         \
        }                                                                               \
        free(buf);                                                                      \
    }
DIST_SUM(dist_sum, float, MPI_FLOAT)
DIST_SUM(dist_sum_d, double, MPI_DOUBLE)

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
