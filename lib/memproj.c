/* memproj.c - memory projections (see memproj.h). */
#include "memproj.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "gemm.h"
#include "nn.h"

void memproj_scores(float *S, const float *Q, const float *M, int B, int N, int D) {
    gemm(CblasNoTrans, CblasTrans, B, N, D, 1.0f, Q, D, M, D, 0.0f, S, N);
}

void memproj_argmax(int *idx, const float *S, int B, int N) {
    for (int b = 0; b < B; b++) {
        const float *s = S + (size_t)b * N;
        int best = 0;
        for (int n = 1; n < N; n++)
            if (s[n] > s[best]) best = n;
        idx[b] = best;
    }
}

void memproj_pd(float *out, float *S, const float *M, int B, int N, int D, float tau) {
    /* evaluation.py: softmax(100 * sim) with 100 = 1/tau, in float32 */
    const float scale = (float)(1.0 / tau);
    for (size_t i = 0; i < (size_t)B * N; i++) S[i] *= scale;
    softmax_rows(S, B, N);
    gemm(CblasNoTrans, CblasNoTrans, B, D, N, 1.0f, S, N, M, D, 0.0f, out, D);
    l2_normalize_rows(out, B, D);
}

void memproj_topk(const float *s, int N, int k, int *idx, float *val) {
    /* insertion into a sorted list of k: fine for the small k used to inspect */
    int m = 0;
    for (int n = 0; n < N; n++) {
        if (m == k && !(s[n] > val[k - 1])) continue;
        int j = m < k ? m++ : k - 1;
        while (j > 0 && s[n] > val[j - 1]) {
            val[j] = val[j - 1];
            idx[j] = idx[j - 1];
            j--;
        }
        val[j] = s[n];
        idx[j] = n;
    }
}
