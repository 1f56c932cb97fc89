/* cpu_ops.h: the CPU backend's ops as plain functions (kernels/backend.h gives their
 * meaning and shapes). Exposed for the op tests and for other backends' references. */
#ifndef CV_CPU_OPS_H
#define CV_CPU_OPS_H

#include "../backend.h"

void cv_cpu_embed_ln(const int32_t *ids, const int32_t *pos_ids, int T, int D, const float *word,
                     const float *pos, const float *type0, const float *gamma, const float *beta, float eps,
                     float *out);
void cv_cpu_linear(const float *x, const float *w, const float *bias, int M, int N, int K, cv_act act,
                   float *y);
/* Output columns [n0, n1) of cv_cpu_linear only (y keeps row stride N). */
void cv_cpu_linear_cols(const float *x, const float *w, const float *bias, int M, int N, int K, cv_act act,
                        float *y, int n0, int n1);

/* The same with w packed by cv_cpu_pack_linear (what the CPU backend's linear() reads):
 * columns [n0, n1) of y only, n0 a multiple of 16 (y keeps row stride N). */
void cv_cpu_linear_packed(const float *x, const float *wp, const float *bias, int M, int N, int K, cv_act act,
                          float *y, int n0, int n1);
/* Floats of a packed (N,K) weight, and the packing (w (N,K) as nn.Linear stores it into
 * wp, caller-owned, 64-byte aligned, cv_cpu_pack_floats(N, K) floats). */
size_t cv_cpu_pack_floats(int N, int K);
void cv_cpu_pack_linear(const float *w, int N, int K, float *wp);
/* The kernel set cv_cpu_linear_packed uses: "avx512", "avx2" or "scalar", the best this CPU
 * runs unless cv_cpu_gemm_use forced one (tests, benchmarks): CV_ERR_UNSUPPORTED when the
 * CPU lacks it, CV_ERR_ARG for an unknown name. Not to be called while GEMMs run. */
const char *cv_cpu_gemm_isa(void);
cv_err cv_cpu_gemm_use(const char *isa);

/* bf16 GEMM, for CPUs with AVX512-BF16 (cv_cpu_bf16_supported; the others must not call
 * cv_cpu_linear_bf16): w packed once by cv_cpu_pack_linear_bf16 into wp (caller-owned,
 * 64-byte aligned, cv_cpu_pack_bf16_bytes(N, K) bytes), x rounded to bf16 per call, products
 * accumulated and written in fp32; otherwise as cv_cpu_linear_packed (columns [n0, n1), n0 a
 * multiple of 16). Rounding is to nearest even, as cv_cpu_to_bf16. */
int cv_cpu_bf16_supported(void);
size_t cv_cpu_pack_bf16_bytes(int N, int K);
void cv_cpu_pack_linear_bf16(const float *w, int N, int K, uint16_t *wp);
void cv_cpu_linear_bf16(const float *x, const uint16_t *wp, const float *bias, int M, int N, int K,
                        cv_act act, float *y, int n0, int n1);
uint16_t cv_cpu_to_bf16(float f);
float cv_cpu_from_bf16(uint16_t h);
/* The kernel cv_cpu_linear_bf16 uses: "amx" where the CPU has AMX-BF16 and the OS lets the
 * process use tiles, else "avx512bf16"; cv_cpu_bf16_use forces one (tests, benchmarks). */
const char *cv_cpu_bf16_kernel(void);
cv_err cv_cpu_bf16_use(const char *kernel);

/* y[i][j] = act(y[i][j] + bias[j]) for M rows of N values, row stride ldy: the fused
 * epilogue of cv_cpu_linear. */
void cv_cpu_bias_act(float *y, const float *bias, int M, int N, int ldy, cv_act act);
void cv_cpu_add_ln(float *x, const float *res, const float *gamma, const float *beta, int M, int D,
                   float eps);
void cv_cpu_attention(const float *qkv, const int32_t *offs, int nseq, int H, int hd, float *out);
/* Heads [h0, h1) of cv_cpu_attention only. */
void cv_cpu_attention_heads(const float *qkv, const int32_t *offs, int nseq, int H, int hd, int h0, int h1,
                            float *out);
/* norms (nseq) may be NULL: else norms[s] = |mean of sequence s| before the normalization. */
void cv_cpu_pool_l2(const float *x, const int32_t *offs, int nseq, int D, cv_pool_mode mode, float *out,
                    float *norms);

/* Exact-erf GELU of one value, as torch.nn.functional.gelu(approximate='none'). */
float cv_cpu_gelu(float x);

#endif
