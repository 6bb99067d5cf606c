/* contrastive.h - SALSA's training losses (shared/reference/salsa.md §2-3;
 * github:OptimusPrimus/salsa experiments/ex_dcase24.py, training_step).
 *
 * Both start from the projected, UNnormalised embeddings of a batch of B items
 * (item i = audio i with caption i) and give the gradient back to them, through
 * the L2 normalisation:
 *
 *   C[i, j] = cos(a_i, t_j) / tau                   rows audio, columns captions
 *
 *   L_sup  = -1/2 (mean_{I} log_softmax(C, dim 0) + mean_{I} log_softmax(C, dim 1))
 *            I[i, j] = (audio of item i == audio of item j): every positive
 *            entry counts once; other positives stay in the denominators.
 *
 *   L_dist = 1/2 (CE(C, softmax(Q, dim 1)) + CE(C^T, softmax(Q^T, dim 1)))
 *            Q[i, j] = mean over the M teachers of cos(ta_im, tt_jm) / tau,
 *            CE the soft-target cross-entropy averaged over rows
 *            (torch.nn.functional.cross_entropy with probabilities).
 *
 * Everything after the normalisation is computed in double.
 * Legend: B items, D embedding width, M teachers. */
#ifndef WSAC_CONTRASTIVE_H
#define WSAC_CONTRASTIVE_H

typedef struct {
    double sup, dist; /* the two losses (dist 0 when no teacher) */
    double total;     /* w_sup * sup + w_dist * dist */
    int positives;    /* entries of I */
} contrastive_out;

/* a[B, D], t[B, D]: projected embeddings; aid[B]: the audio of each item (equal
 * ids = same audio); ta[B, M, Dt], tt[B, M, Dt]: teacher embeddings of each
 * item's audio and caption (unnormalised; NULL or M = 0: no L_dist), Dt wide
 * whatever the student's width D (a narrower teacher zero-padded to Dt: its
 * cosines unchanged);
 * da[B, D], dt[B, D] (may be NULL: loss only) = d total / d a, d total / d t.
 * w_dist is used only when teachers are given. Returns the losses. */
contrastive_out contrastive_loss(float *da, float *dt, const float *a, const float *t, const int *aid,
                                 const float *ta, const float *tt, int M, int Dt, int B, int D, float tau,
                                 double w_sup, double w_dist);

#endif
