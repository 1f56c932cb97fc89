/* ln_warp.cuh: LayerNorm of one row held across a warp's registers (element k*32+lane in
 * v[k]), fp32 two-pass statistics reduced with shuffles, stored as fp32 or rounded to fp16
 * (the cast fused into the LayerNorm). PL elements per lane: rows up to 32 * PL wide; the
 * launchers pick PL = 16 up to D 512 (MiniLM's 384), 32 up to 1024 (BERT-base's 768). */
#ifndef CV_LN_WARP_CUH
#define CV_LN_WARP_CUH

#include "cuda_impl.cuh"

__device__ __forceinline__ float cv_warp_sum(float x) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

template <int PL, class T>
__device__ __forceinline__ void cv_ln_warp_store(float (&v)[PL], int D, int lane, const float *gamma,
                                                 const float *beta, float eps, T *out) {
    float s = 0.0f;
#pragma unroll
    for (int k = 0; k < PL; k++)
        s += v[k]; /* padding lanes hold 0 */
    const float mean = cv_warp_sum(s) / (float)D;
    float q = 0.0f;
#pragma unroll
    for (int k = 0; k < PL; k++) {
        int j = k * 32 + lane;
        float d = j < D ? v[k] - mean : 0.0f;
        q += d * d;
    }
    const float inv = rsqrtf(cv_warp_sum(q) / (float)D + eps);
#pragma unroll
    for (int k = 0; k < PL; k++) {
        int j = k * 32 + lane;
        if (j < D) cv_st(out + j, (v[k] - mean) * inv * gamma[j] + beta[j]);
    }
}

#endif
