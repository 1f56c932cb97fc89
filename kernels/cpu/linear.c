/* linear.c: y = act(x w^T + b) through OpenBLAS sgemm, then one fused bias + GELU pass. */
#include <cblas.h>
#include <math.h>

#include "cpu_ops.h"
#include "vmath.h"

float cv_cpu_gelu(float x) { return cv_gelu_fast(x); }

void cv_cpu_bias_act(float *y, const float *bias, int M, int N, cv_act act) {
    for (int i = 0; i < M; i++) {
        float *row = y + (size_t)i * N;
        if (act == CV_ACT_GELU) {
#pragma omp simd
            for (int j = 0; j < N; j++) row[j] = cv_gelu_fast(row[j] + bias[j]);
        } else {
#pragma omp simd
            for (int j = 0; j < N; j++) row[j] += bias[j];
        }
    }
}

void cv_cpu_linear(const float *x, const float *w, const float *bias, int M, int N, int K,
                   cv_act act, float *y) {
    if (M <= 0) return;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, x, K, w, K, 0.0f, y, N);
    cv_cpu_bias_act(y, bias, M, N, act);
}
