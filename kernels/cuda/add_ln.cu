/* add_ln.cu: x = LayerNorm(x + res), one warp per row, fp32 statistics; fp32 or fp16 rows. */
#include "cuda_impl.cuh"
#include "ln_warp.cuh"

template <int PL, class T>
__global__ void add_ln_kernel(T *x, const T *res, const float *gamma, const float *beta, int M, int D,
                              float eps) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= M) return;
    T *xr = x + (size_t)row * D;
    const T *rr = res + (size_t)row * D;
    float v[PL];
#pragma unroll
    for (int k = 0; k < PL; k++) {
        int j = k * 32 + lane;
        v[k] = j < D ? cv_ld(xr + j) + cv_ld(rr + j) : 0.0f;
    }
    cv_ln_warp_store(v, D, lane, gamma, beta, eps, xr);
}

template <class T>
static void add_ln(cv_cuda *c, T *x, const T *res, const float *gamma, const float *beta, int M, int D,
                   float eps) {
    if (M <= 0) return;
    if (D > 32 * CV_LN_MAX_PER_LANE) {
        cv_cuda_note(c, cudaErrorInvalidValue);
        return;
    }
    const int warps = 8;
    const int blocks = (M + warps - 1) / warps;
    if (D <= 512)
        add_ln_kernel<16, T><<<blocks, warps * 32, 0, c->stream>>>(x, res, gamma, beta, M, D, eps);
    else
        add_ln_kernel<32, T><<<blocks, warps * 32, 0, c->stream>>>(x, res, gamma, beta, M, D, eps);
    cv_cuda_note_launch(c);
}

extern "C" void cv_cuda_add_ln(cv_backend *be, float *x, const float *res, const float *gamma,
                               const float *beta, int M, int D, float eps) {
    add_ln(cv_cuda_of(be), x, res, gamma, beta, M, D, eps);
}

void cv_cuda_add_ln_h(cv_cuda *c, __half *x, const __half *res, const float *gamma, const float *beta, int M,
                      int D, float eps) {
    add_ln(c, x, res, gamma, beta, M, D, eps);
}
