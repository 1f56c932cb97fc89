/* add_ln.cu: x = LayerNorm(x + res), one warp per row, fp32 statistics. */
#include "cuda_impl.cuh"
#include "ln_warp.cuh"

__global__ void add_ln_kernel(float *x, const float *res, const float *gamma, const float *beta, int M, int D,
                              float eps) {
    const int lane = threadIdx.x & 31;
    const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (row >= M) return;
    float *xr = x + (size_t)row * D;
    const float *rr = res + (size_t)row * D;
    float v[CV_LN_MAX_PER_LANE];
#pragma unroll
    for (int k = 0; k < CV_LN_MAX_PER_LANE; k++) {
        int j = k * 32 + lane;
        v[k] = j < D ? xr[j] + rr[j] : 0.0f;
    }
    cv_ln_warp_store(v, D, lane, gamma, beta, eps, xr);
}

extern "C" void cv_cuda_add_ln(cv_backend *be, float *x, const float *res, const float *gamma,
                               const float *beta, int M, int D, float eps) {
    cv_cuda *c = cv_cuda_of(be);
    if (M <= 0) return;
    if (D > 32 * CV_LN_MAX_PER_LANE) {
        cv_cuda_note(c, cudaErrorInvalidValue);
        return;
    }
    const int warps = 8;
    add_ln_kernel<<<(M + warps - 1) / warps, warps * 32, 0, c->stream>>>(x, res, gamma, beta, M, D, eps);
    cv_cuda_note_launch(c);
}
