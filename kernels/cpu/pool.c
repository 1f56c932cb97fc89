/* pool.c: mean, [CLS] or max pooling over each sequence's real tokens, then L2 normalization;
 * the pooled vector's norm before it is written to norms when asked. */
#include <math.h>
#include <string.h>

#include "cpu_ops.h"

void cv_cpu_pool_l2(const float *x, const int32_t *offs, int nseq, int D, cv_pool_mode mode, float *out,
                    float *norms) {
    for (int s = 0; s < nseq; s++) {
        float *o = out + (size_t)s * D;
        memset(o, 0, sizeof(float) * (size_t)D);
        const int L = offs[s + 1] - offs[s];
        if (mode == CV_POOL_CLS && L > 0) {
            memcpy(o, x + (size_t)offs[s] * D, sizeof(float) * (size_t)D);
        } else if (mode == CV_POOL_MAX && L > 0) {
            memcpy(o, x + (size_t)offs[s] * D, sizeof(float) * (size_t)D);
            for (int t = offs[s] + 1; t < offs[s + 1]; t++) {
                const float *row = x + (size_t)t * D;
                for (int j = 0; j < D; j++)
                    o[j] = row[j] > o[j] ? row[j] : o[j];
            }
        } else {
            for (int t = offs[s]; t < offs[s + 1]; t++) {
                const float *row = x + (size_t)t * D;
                for (int j = 0; j < D; j++)
                    o[j] += row[j];
            }
            const float inv_len = L > 0 ? 1.0f / (float)L : 0.0f;
            for (int j = 0; j < D; j++)
                o[j] *= inv_len;
        }
        float norm = 0.0f;
        for (int j = 0; j < D; j++)
            norm += o[j] * o[j];
        if (norms) norms[s] = sqrtf(norm);
        const float inv = 1.0f / fmaxf(sqrtf(norm), 1e-12f);
        for (int j = 0; j < D; j++)
            o[j] *= inv;
    }
}
