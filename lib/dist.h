/* dist.h - the ranks of a data-parallel run (clap-train under mpirun).
 *
 * Built with `make MPI=1` (WSAC_MPI defined, Open MPI linked) the calls are
 * MPI collectives over MPI_COMM_WORLD; otherwise a run is one rank and every
 * collective is the identity, so the callers have one code path.
 *
 * Every rank must end a step with the same bits in every parameter, so the
 * sums are not MPI_Allreduce (MPI lets its algorithms add in an order that
 * depends on the rank count and even differ between ranks): each rank adds one
 * slice, every rank's copy of it in rank order, and the sums are gathered. */
#ifndef WSAC_DIST_H
#define WSAC_DIST_H

#include <stddef.h>

/* Start MPI (under WSAC_MPI) and return the number of ranks. */
int dist_init(int *argc, char ***argv);
int dist_rank(void);
int dist_size(void);
/* 1 when the binary was built with MPI */
int dist_built(void);
/* all[size * n] = every rank's mine[n], in rank order */
void dist_allgather(float *all, const float *mine, size_t n);
/* x[n] = the sum over ranks of x[n], added in rank order (same bits everywhere) */
void dist_sum(float *x, size_t n);
void dist_sum_d(double *x, size_t n);
/* the largest of every rank's v */
long dist_max(long v);
/* Stop every rank: after a fatal error on one, the others would wait forever
 * in the next collective. */
void dist_abort(int status);
void dist_finalize(void);

#endif
