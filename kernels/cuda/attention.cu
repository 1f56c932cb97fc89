/* attention.cu: softmax(Q K^T / sqrt(hd)) V over packed variable-length sequences, without
 * writing the score matrix anywhere.
 *
 * Grid (sequence, head, query tile). One thread owns one query row: q and the output
 * accumulator (hd floats each) live in registers. The block walks the sequence's keys in
 * tiles of KT rows staged in shared memory (fp32, broadcast reads: every thread reads the
 * same key at the same time), with an online softmax (running max and sum, rescaling the
 * accumulator when the max grows), so any length up to the position table fits in 32 KB of
 * shared memory. Blocks whose first query is past the sequence's end exit at once. */
#include <math.h>

#include "cuda_impl.cuh"

#define QT 64 /* queries (threads) per block */
/* keys per shared-memory tile: K and V tiles take 32 KB together whatever the head size */
#define KT (4096 / HD)

template <int HD>
__global__ void __launch_bounds__(QT)
    attention_kernel(const float *qkv, const int32_t *offs, int H, float scale, float *out) {
    const int s = blockIdx.x, h = blockIdx.y;
    const int base = offs[s], L = offs[s + 1] - base;
    const int q0 = blockIdx.z * QT;
    if (q0 >= L) return; /* whole block: no barrier is skipped by part of it */
    const int i = q0 + threadIdx.x, D = H * HD, ld = 3 * D;
    const bool active = i < L;
    __shared__ float Ks[KT * HD], Vs[KT * HD];
    float q[HD], acc[HD];
    float m = -INFINITY, l = 0.0f;
    if (active) {
        const float *qp = qkv + (size_t)(base + i) * ld + h * HD;
#pragma unroll
        for (int d = 0; d < HD; d++)
            q[d] = qp[d] * scale, acc[d] = 0.0f;
    }
    for (int j0 = 0; j0 < L; j0 += KT) {
        const int n = min(KT, L - j0);
        for (int e = threadIdx.x; e < n * HD; e += QT) {
            const int j = e / HD, d = e % HD;
            const float *row = qkv + (size_t)(base + j0 + j) * ld + h * HD + d;
            Ks[e] = row[D];
            Vs[e] = row[2 * D];
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
        float *o = out + (size_t)(base + i) * D + h * HD;
#pragma unroll
        for (int d = 0; d < HD; d++)
            o[d] = acc[d] * inv;
    }
}

extern "C" void cv_cuda_attention(cv_backend *be, const float *qkv, const int32_t *offs, int nseq,
                                  int max_len, int H, int hd, float *out) {
    cv_cuda *c = cv_cuda_of(be);
    if (nseq <= 0 || max_len <= 0) return;
    dim3 grid(nseq, H, (max_len + QT - 1) / QT);
    const float scale = 1.0f / sqrtf((float)hd);
    switch (hd) {
    case 16: attention_kernel<16><<<grid, QT, 0, c->stream>>>(qkv, offs, H, scale, out); break;
    case 32: attention_kernel<32><<<grid, QT, 0, c->stream>>>(qkv, offs, H, scale, out); break;
    case 64: attention_kernel<64><<<grid, QT, 0, c->stream>>>(qkv, offs, H, scale, out); break;
    default: cv_cuda_note(c, cudaErrorInvalidValue); return; /* head size not instantiated */
    }
    cv_cuda_note_launch(c);
}
