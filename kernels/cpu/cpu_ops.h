/* cpu_ops.h: the CPU backend's ops as plain functions (kernels/backend.h gives their
 * meaning and shapes). Exposed for the op tests and for other backends' references. */
#ifndef CV_CPU_OPS_H
#define CV_CPU_OPS_H

#include "../backend.h"

void cv_cpu_embed_ln(const int32_t *ids, const int32_t *pos_ids, int T, int D, const float *word,
                     const float *pos, const float *type0, const float *gamma, const float *beta,
                     float eps, float *out);
void cv_cpu_linear(const float *x, const float *w, const float *bias, int M, int N, int K,
                   cv_act act, float *y);
/* y[i] = act(y[i] + bias[i % N]) over M rows: the fused epilogue of cv_cpu_linear. */
void cv_cpu_bias_act(float *y, const float *bias, int M, int N, cv_act act);
void cv_cpu_add_ln(float *x, const float *res, const float *gamma, const float *beta, int M, int D,
                   float eps);
void cv_cpu_attention(const float *qkv, const int32_t *offs, int nseq, int H, int hd, float *out);
void cv_cpu_pool_l2(const float *x, const int32_t *offs, int nseq, int D, float *out);

/* Exact-erf GELU of one value, as torch.nn.functional.gelu(approximate='none'). */
float cv_cpu_gelu(float x);

#endif
