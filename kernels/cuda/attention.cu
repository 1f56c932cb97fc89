/* attention.cu: softmax(Q K^T / sqrt(hd)) V over packed variable-length sequences, without
 * writing the score matrix anywhere.
 *
 * Grid (sequence, head, query tile). One thread owns one query row: q and the output
 * accumulator (hd floats each) live in registers. The block walks the sequence's keys in
 * tiles of KT rows staged in shared memory (fp32, broadcast reads: every thread reads the
 * same key at the same time), with an online softmax (running max and sum, rescaling the
 * accumulator when the max grows), so any length up to the position table fits. The tile
 * follows the batch's longest sequence: min(max_len, KT_MAX) keys, at most 32 KB of shared
 * memory for K and V together (8 KB at 32 tokens, head size 32). Blocks whose first query is
 * past the sequence's end exit at once. qkv and out are fp32 or fp16 (then read and written as
 * fp16, everything else fp32). */
#include <math.h>

#include "cuda_impl.cuh"

#define QT 64 /* queries (threads) per block */
/* most keys per shared-memory tile: K and V tiles take at most 32 KB together */
#define KT_MAX(hd) (4096 / (hd))

template <int HD, class T>
__global__ void __launch_bounds__(QT)
    attention_kernel(const T *qkv, const int32_t *offs, int H, float scale, int KT, T *out) {
    const int s = blockIdx.x, h = blockIdx.y;
    const int base = offs[s], L = offs[s + 1] - base;
    const int q0 = blockIdx.z * QT;
    if (q0 >= L) return; /* whole block: no barrier is skipped by part of it */
    const int i = q0 + threadIdx.x, D = H * HD, ld = 3 * D;
    const bool active = i < L;
    extern __shared__ float kv_tiles[]; /* (KT, HD) keys then (KT, HD) values */
    float *Ks = kv_tiles, *Vs = kv_tiles + KT * HD;
    float q[HD], acc[HD];
    float m = -INFINITY, l = 0.0f;
    if (active) {
        const T *qp = qkv + (size_t)(base + i) * ld + h * HD;
#pragma unroll
        for (int d = 0; d < HD; d++)
            q[d] = cv_ld(qp + d) * scale, acc[d] = 0.0f;
    }
    for (int j0 = 0; j0 < L; j0 += KT) {
        const int n = min(KT, L - j0);
        for (int e = threadIdx.x; e < n * HD; e += QT) {
            const int j = e / HD, d = e % HD;
            const T *row = qkv + (size_t)(base + j0 + j) * ld + h * HD + d;
            Ks[e] = cv_ld(row + D);
            Vs[e] = cv_ld(row + 2 * D);
        }
        __syncthreads();
        if (active) {
            for (int j = 0; j < n; j++) {
                float sc = 0.0f;
#pragma unroll
                for (int d = 0; d < HD; d++)
                    sc = fmaf(q[d], Ks[j * HD + d], sc);
                const float m_new = fmaxf(m, sc);
                const float corr = __expf(m - m_new), p = __expf(sc - m_new);
                l = l * corr + p;
#pragma unroll
                for (int d = 0; d < HD; d++)
                    acc[d] = fmaf(p, Vs[j * HD + d], acc[d] * corr);
                m = m_new;
            }
        }
        __syncthreads();
    }
    if (active) {
        const float inv = 1.0f / l;
        T *o = out + (size_t)(base + i) * D + h * HD;
#pragma unroll
        for (int d = 0; d < HD; d++)
            cv_st(o + d, acc[d] * inv);
    }
}

template <class T>
static void attention(cv_cuda *c, const T *qkv, const int32_t *offs, int nseq, int max_len, int H, int hd,
                      T *out) {
    if (nseq <= 0 || max_len <= 0) return;
    dim3 grid(nseq, H, (max_len + QT - 1) / QT);
    const float scale = 1.0f / sqrtf((float)hd);
    const int kt = max_len < KT_MAX(hd) ? max_len : KT_MAX(hd);
    const size_t smem = 2 * sizeof(float) * (size_t)kt * (size_t)hd;
    switch (hd) {
    case 16: attention_kernel<16, T><<<grid, QT, smem, c->stream>>>(qkv, offs, H, scale, kt, out); break;
    case 32: attention_kernel<32, T><<<grid, QT, smem, c->stream>>>(qkv, offs, H, scale, kt, out); break;
    case 64: attention_kernel<64, T><<<grid, QT, smem, c->stream>>>(qkv, offs, H, scale, kt, out); break;
    default: cv_cuda_note(c, cudaErrorInvalidValue); return; /* head size not instantiated */
    }
    cv_cuda_note_launch(c);
}

extern "C" void cv_cuda_attention(cv_backend *be, const float *qkv, const int32_t *offs, int nseq,
                                  int max_len, int H, int hd, float *out) {
    attention(cv_cuda_of(be), qkv, offs, nseq, max_len, H, hd, out);
}

void cv_cuda_attention_h(cv_cuda *c, const __half *qkv, const int32_t *offs, int nseq, int max_len, int H,
                         int hd, __half *out) {
    attention(c, qkv, offs, nseq, max_len, H, hd, out);
}
