/* memproj.h - decoding-time projection of audio embeddings onto a memory of
 * text embeddings (WSAC evaluation.py, wsac.md D): nearest neighbour (nnd)
 * or the softmax(cos / tau)-weighted mean of the memory (pd, DeCap's
 * projection), re-normalised.
 *
 * Legend: B queries, N memory entries, D width. Rows are L2-normalised. */
#ifndef WSAC_MEMPROJ_H
#define WSAC_MEMPROJ_H

/* S[B, N] = Q[B, D] @ M[N, D]^T: cosine similarities (one sgemm) */
void memproj_scores(float *S, const float *Q, const float *M, int B, int N, int D);
/* idx[b] = argmax_n S[b, n], the lowest n on ties */
void memproj_argmax(int *idx, const float *S, int B, int N);
/* out[B, D] = normalise(softmax(S / tau) @ M); S is overwritten by the weights */
void memproj_pd(float *out, float *S, const float *M, int B, int N, int D, float tau);
/* the k largest of s[N], descending, ties to the lower index; k <= N */
void memproj_topk(const float *s, int N, int k, int *idx, float *val);

#endif
