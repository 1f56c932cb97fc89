/* embed_ln.cu: out[t] = LayerNorm(word[ids[t]] + pos[pos_ids[t]] + type0), one warp per token,
 * the row in registers, two-pass fp32 statistics. Also holds the warp LayerNorm shared with
 * add_ln.cu. */
#include "cuda_impl.cuh"
#include "ln_warp.cuh"

template <int PL, class O>
__global__ void embed_ln_kernel(const int32_t *ids, const int32_t *pos_ids, int T, int D, const float *word,
                                const float *pos, const float *type0, const float *gamma, const float *beta,
                                float eps, O *out) {
    const int lane = threadIdx.x & 31;
    const int t = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
    if (t >= T) return;
    const float *we = word + (size_t)ids[t] * D, *pe = pos + (size_t)pos_ids[t] * D;
    float v[PL];
#pragma unroll
    for (int k = 0; k < PL; k++) {
        int j = k * 32 + lane;
        v[k] = j < D ? we[j] + pe[j] + type0[j] : 0.0f;
    }
    cv_ln_warp_store(v, D, lane, gamma, beta, eps, out + (size_t)t * D);
}

template <class O>
static void embed_ln(cv_cuda *c, const int32_t *ids, const int32_t *pos_ids, int T, int D, const float *word,
                     const float *pos, const float *type0, const float *gamma, const float *beta, float eps,
                     O *out) {
    if (T <= 0) return;
    if (D > 32 * CV_LN_MAX_PER_LANE) {
        cv_cuda_note(c, cudaErrorInvalidValue);
        return;
    }
    const int warps = 8;
    const int blocks = (T + warps - 1) / warps;
    if (D <= 512)
        embed_ln_kernel<16, O><<<blocks, warps * 32, 0, c->stream>>>(ids, pos_ids, T, D, word, pos, type0,
                                                                     gamma, beta, eps, out);
    else
        embed_ln_kernel<32, O><<<blocks, warps * 32, 0, c->stream>>>(ids, pos_ids, T, D, word, pos, type0,
                                                                     gamma, beta, eps, out);
    cv_cuda_note_launch(c);
}

extern "C" void cv_cuda_embed_ln(cv_backend *be, const int32_t *ids, const int32_t *pos_ids, int T, int D,
                                 const float *word, const float *pos, const float *type0, const float *gamma,
                                 const float *beta, float eps, float *out) {
    embed_ln(cv_cuda_of(be), ids, pos_ids, T, D, word, pos, type0, gamma, beta, eps, out);
}

void cv_cuda_embed_ln_h(cv_cuda *c, const int32_t *ids, const int32_t *pos_ids, int T, int D,
                        const float *word, const float *pos, const float *type0, const float *gamma,
                        const float *beta, float eps, __half *out) {
    embed_ln(c, ids, pos_ids, T, D, word, pos, type0, gamma, beta, eps, out);
}
