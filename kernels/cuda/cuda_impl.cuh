/* cuda_impl.cuh: the CUDA backend's private state and helpers, shared by its .cu files.
 * The per-op interface takes fp32 activations (the same meaning as the CPU ops); GEMM inputs
 * are converted to fp16 and multiplied with fp32 accumulation by cuBLAS. encode() (encoder.cu)
 * keeps activations in fp16 between its kernels. Either way LayerNorm, softmax, GELU and
 * pooling keep fp32 arithmetic and statistics. These sources also compile as C++ for the CPU
 * execution layer (tests/cuda_sim/): keep to what its headers provide. */
#ifndef CV_CUDA_IMPL_CUH
#define CV_CUDA_IMPL_CUH

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../backend.h"

/* Activations in either precision: loads widen to fp32, stores round to nearest. */
__device__ __forceinline__ float cv_ld(const float *p) { return *p; }
__device__ __forceinline__ float cv_ld(const __half *p) { return __half2float(*p); }
__device__ __forceinline__ void cv_st(float *p, float v) { *p = v; }
__device__ __forceinline__ void cv_st(__half *p, float v) { *p = __float2half_rn(v); }

/* LayerNorm rows are held in registers: D <= 32 * CV_LN_MAX_PER_LANE (16 per lane up to D 512,
 * 32 above: ln_warp.cuh). */
#define CV_LN_MAX_PER_LANE 32

typedef struct {
    const float *f32; /* device fp32 copy (what ops receive) */
    __half *f16;      /* device fp16 copy (GEMM operands, epilogue biases) */
    size_t count;
} cv_cuda_weight;

typedef struct cv_cuda {
    int device;
    cudaStream_t stream;
    cublasHandle_t blas;
    cv_cuda_weight *w; /* (nw) */
    int nw, wcap;
    __half *xh; /* fp16 staging for a GEMM's input (xh_cap elements) */
    size_t xh_cap;
    __half *wh; /* fp16 staging for unregistered weights (wh_cap elements) */
    size_t wh_cap;
    cudaError_t sticky; /* first CUDA error since the last sync */
    cublasStatus_t sticky_blas;
    struct cv_cuda_enc *enc; /* encode()'s state (encoder.cu), NULL until first used */
} cv_cuda;

static inline cv_cuda *cv_cuda_of(cv_backend *be) { return (cv_cuda *)be->impl; }

/* Records the first failure; sync() reports it. */
static inline void cv_cuda_note(cv_cuda *c, cudaError_t e) {
    if (e != cudaSuccess && c->sticky == cudaSuccess) c->sticky = e;
}
static inline void cv_cuda_note_launch(cv_cuda *c) { cv_cuda_note(c, cudaGetLastError()); }

/* Grows an fp16 staging buffer to at least n elements. */
bool cv_cuda_reserve_half(cv_cuda *c, __half **buf, size_t *cap, size_t n);

/* fp32 -> fp16 over n elements on the backend's stream. */
void cv_cuda_to_half(cv_cuda *c, const float *src, __half *dst, size_t n);

/* The fp16 copy registered for w by weights(), or NULL. */
const __half *cv_cuda_half_weight(cv_cuda *c, const float *w);

/* fp16-activation variants of the ops (statistics and accumulation in fp32), for encode() */
void cv_cuda_embed_ln_h(cv_cuda *c, const int32_t *ids, const int32_t *pos_ids, int T, int D,
                        const float *word, const float *pos, const float *type0, const float *gamma,
                        const float *beta, float eps, __half *out);
void cv_cuda_add_ln_h(cv_cuda *c, __half *x, const __half *res, const float *gamma, const float *beta, int M,
                      int D, float eps);
void cv_cuda_attention_h(cv_cuda *c, const __half *qkv, const int32_t *offs, int nseq, int max_len, int H,
                         int hd, __half *out);
void cv_cuda_pool_l2_h(cv_cuda *c, const __half *x, const int32_t *offs, int nseq, int D, cv_pool_mode mode,
                       float *out, float *norms);
void cv_cuda_enc_free(cv_cuda *c);

#endif
