/* attention.c: softmax(Q K^T / sqrt(hd)) V per sequence and head, over real tokens only.
 * On CPUs with AVX-512F the fused kernel of attention_avx512.c; elsewhere both products go
 * through sgemm on strided views of the packed QKV matrix (no copies), the score block
 * (L x L) in a per-call buffer, the softmax vectorized. */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>

#include "cpu_ops.h"
#include "vmath.h"

static void softmax_row(float *p, int L) {
    float mx = p[0];
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < L; j++)
        mx = p[j] > mx ? p[j] : mx;
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int j = 0; j < L; j++) {
        p[j] = cv_expf(p[j] - mx);
        sum += p[j];
    }
    const float inv = 1.0f / sum;
#pragma omp simd
    for (int j = 0; j < L; j++)
        p[j] *= inv;
}

void cv_cpu_attention_heads_blas(const float *qkv, const int32_t *offs, int nseq, int H, int hd, int h0,
                                 int h1, float *out) {
    const int D = H * hd, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)hd);
    int maxlen = 0;
    for (int s = 0; s < nseq; s++)
        if (offs[s + 1] - offs[s] > maxlen) maxlen = offs[s + 1] - offs[s];
    if (maxlen == 0) return;
    float *S = malloc(sizeof(float) * (size_t)maxlen * (size_t)maxlen);
    CV_ASSERT(S != NULL);
    for (int s = 0; s < nseq; s++) {
        const int base = offs[s], L = offs[s + 1] - offs[s];
        if (L == 0) continue;
        for (int h = h0; h < h1; h++) {
            const float *q = qkv + (size_t)base * ld + h * hd, *k = q + D, *v = q + 2 * D;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, hd, scale, q, ld, k, ld, 0.0f, S, L);
            for (int i = 0; i < L; i++)
                softmax_row(S + (size_t)i * L, L);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, hd, L, 1.0f, S, L, v, ld, 0.0f,
                        out + (size_t)base * D + h * hd, D);
        }
    }
    free(S);
}

int cv_cpu_attention_avx512_ok(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_cpu_supports("avx512f");
#else
    return 0;
#endif
}

void cv_cpu_attention_heads(const float *qkv, const int32_t *offs, int nseq, int H, int hd, int h0, int h1,
                            float *out) {
#if defined(__x86_64__) || defined(__i386__)
    if (cv_cpu_attention_avx512_ok()) {
        cv_cpu_attention_heads_avx512(qkv, offs, nseq, H, hd, h0, h1, out);
        return;
    }
#endif
    cv_cpu_attention_heads_blas(qkv, offs, nseq, H, hd, h0, h1, out);
}

void cv_cpu_attention(const float *qkv, const int32_t *offs, int nseq, int H, int hd, float *out) {
    cv_cpu_attention_heads(qkv, offs, nseq, H, hd, 0, H, out);
}
