/* linear.c: y = act(x w^T + b) through OpenBLAS sgemm, then one fused bias + GELU pass: the
 * reference for the packed GEMM the CPU backend runs (gemm.c) and for the CUDA tests. */
#include <cblas.h>
#include <math.h>

#include "cpu_ops.h"
#include "vmath.h"

float cv_cpu_gelu(float x) { return cv_gelu_fast(x); }

void cv_cpu_bias_act(float *y, const float *bias, int M, int N, int ldy, cv_act act) {
    for (int i = 0; i < M; i++) {
        float *row = y + (size_t)i * ldy;
        if (act == CV_ACT_GELU) {
#pragma omp simd
            for (int j = 0; j < N; j++)
                row[j] = cv_gelu_fast(row[j] + bias[j]);
        } else {
#pragma omp simd
            for (int j = 0; j < N; j++)
                row[j] += bias[j];
        }
    }
}

void cv_cpu_linear(const float *x, const float *w, const float *bias, int M, int N, int K, cv_act act,
                   float *y) {
    if (M <= 0) return;
    cv_cpu_linear_cols(x, w, bias, M, N, K, act, y, 0, N);
}

void cv_cpu_linear_cols(const float *x, const float *w, const float *bias, int M, int N, int K, cv_act act,
                        float *y, int n0, int n1) {
    if (M <= 0 || n1 <= n0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, n1 - n0, K, 1.0f, x, K, w + (size_t)n0 * K, K,
                0.0f, y + n0, N);
    cv_cpu_bias_act(y + n0, bias + n0, M, n1 - n0, N, act);
}
