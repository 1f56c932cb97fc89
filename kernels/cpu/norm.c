/* norm.c: embedding gather + LayerNorm, and fused residual + LayerNorm (two-pass statistics). */
#include <math.h>

#include "cpu_ops.h"

/* row = LayerNorm(row) in place. */
static void layernorm_row(float *row, const float *gamma, const float *beta, int D, float eps) {
    float mean = 0.0f;
#pragma omp simd reduction(+ : mean)
    for (int j = 0; j < D; j++)
        mean += row[j];
    mean /= (float)D;
    float var = 0.0f;
#pragma omp simd reduction(+ : var)
    for (int j = 0; j < D; j++) {
        float d = row[j] - mean;
        var += d * d;
    }
    var /= (float)D;
    float inv = 1.0f / sqrtf(var + eps);
    for (int j = 0; j < D; j++)
        row[j] = (row[j] - mean) * inv * gamma[j] + beta[j];
}

void cv_cpu_embed_ln(const int32_t *ids, const int32_t *pos_ids, int T, int D, const float *word,
                     const float *pos, const float *type0, const float *gamma, const float *beta, float eps,
                     float *out) {
    for (int t = 0; t < T; t++) {
        const float *we = word + (size_t)ids[t] * D, *pe = pos + (size_t)pos_ids[t] * D;
        float *row = out + (size_t)t * D;
        for (int j = 0; j < D; j++)
            row[j] = we[j] + pe[j] + type0[j];
        layernorm_row(row, gamma, beta, D, eps);
    }
}

void cv_cpu_add_ln(float *x, const float *res, const float *gamma, const float *beta, int M, int D,
                   float eps) {
    for (int i = 0; i < M; i++) {
        float *row = x + (size_t)i * D;
        const float *r = res + (size_t)i * D;
        for (int j = 0; j < D; j++)
            row[j] += r[j];
        layernorm_row(row, gamma, beta, D, eps);
    }
}
