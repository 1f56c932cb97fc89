/* cuda_impl.cuh: the CUDA backend's private state and helpers, shared by its .cu files.
 * Activations cross the backend interface as fp32 (the same meaning as the CPU ops); GEMM
 * inputs are converted to fp16 and multiplied with fp32 accumulation by cuBLAS; LayerNorm,
 * softmax, GELU and pooling keep fp32 arithmetic and statistics. */
#ifndef CV_CUDA_IMPL_CUH
#define CV_CUDA_IMPL_CUH

#include <cublas_v2.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "../backend.h"

/* LayerNorm rows are held in registers: D <= 32 * CV_LN_MAX_PER_LANE. */
#define CV_LN_MAX_PER_LANE 16

typedef struct {
    const float *f32; /* device fp32 copy (what ops receive) */
    __half *f16;      /* device fp16 copy for GEMMs, or NULL for vectors */
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

#endif
