/* attention.c: softmax(Q K^T / sqrt(hd)) V per sequence and head, over real tokens only.
 * Scores for one query row live in a small stack buffer (sequences are at most 512 long,
 * the position table's size). */
#include <math.h>
#include <string.h>

#include "cpu_ops.h"

#define MAX_LEN 512

void cv_cpu_attention(const float *qkv, const int32_t *offs, int nseq, int H, int hd, float *out) {
    const int D = H * hd, ld = 3 * D;
    const float scale = 1.0f / sqrtf((float)hd);
    float p[MAX_LEN];
    for (int s = 0; s < nseq; s++) {
        const int base = offs[s], L = offs[s + 1] - offs[s];
        CV_ASSERT(L >= 0 && L <= MAX_LEN);
        for (int h = 0; h < H; h++) {
            const float *q0 = qkv + (size_t)base * ld + h * hd;
            const float *k0 = q0 + D, *v0 = q0 + 2 * D;
            for (int i = 0; i < L; i++) {
                const float *q = q0 + (size_t)i * ld;
                float mx = -INFINITY;
                for (int j = 0; j < L; j++) {
                    const float *k = k0 + (size_t)j * ld;
                    float acc = 0.0f;
                    for (int d = 0; d < hd; d++) acc += q[d] * k[d];
                    p[j] = acc * scale;
                    if (p[j] > mx) mx = p[j];
                }
                float sum = 0.0f;
                for (int j = 0; j < L; j++) {
                    p[j] = expf(p[j] - mx);
                    sum += p[j];
                }
                const float inv = 1.0f / sum;
                float *o = out + (size_t)(base + i) * D + h * hd;
                memset(o, 0, sizeof(float) * (size_t)hd);
                for (int j = 0; j < L; j++) {
                    const float *v = v0 + (size_t)j * ld, w = p[j] * inv;
                    for (int d = 0; d < hd; d++) o[d] += w * v[d];
                }
            }
        }
    }
}
