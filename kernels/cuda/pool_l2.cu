/* pool_l2.cu: out[s] = L2-normalize(mean, first row or elementwise max of sequence s's rows
 * (cv_pool_mode)), one block per sequence,
 * fp32 or fp16 rows, fp32 sums, block-wide reduction of the squared norm (written to norms[s]
 * as the norm when norms is not NULL). */
#include "cuda_impl.cuh"
#include "ln_warp.cuh"

template <class T>
__global__ void pool_l2_kernel(const T *x, const int32_t *offs, int D, cv_pool_mode mode, float *out,
                               float *norms) {
    const int s = blockIdx.x, t0 = offs[s], t1 = offs[s + 1];
    extern __shared__ float sm[]; /* (D) means, then (32) partial norms */
    float *mean = sm, *part = sm + D;
    const float inv_len = t1 > t0 ? 1.0f / (float)(t1 - t0) : 0.0f;
    float sq = 0.0f;
    for (int j = threadIdx.x; j < D; j += blockDim.x) {
        float acc = 0.0f;
        if (mode == CV_POOL_CLS) {
            if (t1 > t0) acc = cv_ld(x + (size_t)t0 * D + j);
        } else if (mode == CV_POOL_MAX) {
            if (t1 > t0) acc = cv_ld(x + (size_t)t0 * D + j);
            for (int t = t0 + 1; t < t1; t++)
                acc = fmaxf(acc, cv_ld(x + (size_t)t * D + j));
        } else {
            for (int t = t0; t < t1; t++)
                acc += cv_ld(x + (size_t)t * D + j);
            acc *= inv_len;
        }
        mean[j] = acc;
        sq += acc * acc;
    }
    sq = cv_warp_sum(sq);
    if ((threadIdx.x & 31) == 0) part[threadIdx.x / 32] = sq;
    __syncthreads();
    if (threadIdx.x < 32) {
        float p = threadIdx.x < blockDim.x / 32 ? part[threadIdx.x] : 0.0f;
        p = cv_warp_sum(p);
        if (threadIdx.x == 0) {
            part[0] = 1.0f / fmaxf(sqrtf(p), 1e-12f);
            if (norms) norms[s] = sqrtf(p);
        }
    }
    __syncthreads();
    const float inv = part[0];
    for (int j = threadIdx.x; j < D; j += blockDim.x)
        out[(size_t)s * D + j] = mean[j] * inv;
}

template <class T>
static void pool_l2(cv_cuda *c, const T *x, const int32_t *offs, int nseq, int D, cv_pool_mode mode,
                    float *out, float *norms) {
    if (nseq <= 0) return;
    const int threads = 128;
    const size_t shm = sizeof(float) * (size_t)(D + 32);
    // clang-format off: the launch on one line, as tests/cuda_sim/prep.cmake reads launches
    pool_l2_kernel<T><<<nseq, threads, shm, c->stream>>>(x, offs, D, mode, out, norms);
    // clang-format on
    cv_cuda_note_launch(c);
}

extern "C" void cv_cuda_pool_l2(cv_backend *be, const float *x, const int32_t *offs, int nseq, int D,
                                cv_pool_mode mode, float *out, float *norms) {
    pool_l2(cv_cuda_of(be), x, offs, nseq, D, mode, out, norms);
}

void cv_cuda_pool_l2_h(cv_cuda *c, const __half *x, const int32_t *offs, int nseq, int D, cv_pool_mode mode,
                       float *out, float *norms) {
    pool_l2(c, x, offs, nseq, D, mode, out, norms);
}
