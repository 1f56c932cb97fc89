/* backend.h: the transformer's math behind one interface (a struct of function pointers).
 *
 * Every op has a plain C version (kernels/cpu/) and, in CUDA builds, a GPU version
 * (kernels/cuda/) with the same meaning. Pointers passed to ops live in the backend's
 * memory (host memory for the CPU backend, device memory for CUDA): get them from alloc()
 * or weights(), fill them with upload(). Ops are asynchronous on devices; sync() waits.
 * All matrices are row-major float32. Token matrices are packed: the sequences of a batch
 * are stacked without padding, sequence s owning rows offs[s] .. offs[s+1]-1. */
#ifndef CV_BACKEND_H
#define CV_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "../common/cv_err.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { CV_ACT_NONE = 0, CV_ACT_GELU } cv_act;
/* Pooling of a sequence's rows (sentence-transformers' Pooling module over real tokens): their
 * mean, the first ([CLS]) row, or the elementwise maximum. */
typedef enum { CV_POOL_MEAN = 0, CV_POOL_CLS, CV_POOL_MAX } cv_pool_mode;

typedef struct cv_backend cv_backend;

/* A BERT encoder's weights, as pointers from weights() (for encode()). */
typedef struct cv_encoder_layer {
    const float *wqkv;          /* (3D, D) packed Q|K|V */
    const float *bqkv;          /* (3D) */
    const float *wo, *bo;       /* (D, D), (D) */
    const float *ln1_g, *ln1_b; /* (D) */
    const float *w1, *b1;       /* (NI, D), (NI) */
    const float *w2, *b2;       /* (D, NI), (D) */
    const float *ln2_g, *ln2_b; /* (D) */
} cv_encoder_layer;
typedef struct cv_encoder {
    const float *word, *pos, *type0, *ln_g, *ln_b; /* (V,D), (P,D), (D), (D), (D) */
    const cv_encoder_layer *layer;                 /* (layers) */
    int layers, D, H, NI;                          /* head size D / H: 16, 32 or 64 on CUDA */
    float eps;
    cv_pool_mode pool;
} cv_encoder;

struct cv_backend {
    const char *name; /* "cpu" or "cuda" */
    void *impl;

    /* Scratch memory of the backend; NULL when out of memory. */
    void *(*alloc)(cv_backend *be, size_t bytes);
    void (*release)(cv_backend *be, void *p);
    /* Read-only weights from host memory (host stays owned by the caller and must outlive
     * the backend's use of the result). The CPU backend returns host itself. */
    const float *(*weights)(cv_backend *be, const float *host, size_t count);
    cv_err (*upload)(cv_backend *be, void *dst, const void *src, size_t bytes);
    cv_err (*download)(cv_backend *be, void *dst, const void *src, size_t bytes);
    cv_err (*sync)(cv_backend *be);

    /* out[t] = LayerNorm(word[ids[t]] + pos[pos_ids[t]] + type0) */
    void (*embed_ln)(cv_backend *be, const int32_t *ids /* (T) */, const int32_t *pos_ids /* (T) */, int T,
                     int D, const float *word /* (V,D) */, const float *pos /* (P,D) */,
                     const float *type0 /* (D) */, const float *gamma /* (D) */, const float *beta /* (D) */,
                     float eps, float *out /* (T,D) */);
    /* Optional (NULL when linear() reads w as nn.Linear's (N,K)): the layout linear() reads its
     * weights in. linear_pack(w, N, K, dst) writes w (N,K) into dst, linear_pack_floats(N, K)
     * floats of host memory (64-byte aligned, caller-owned), once at load; the packed copy then
     * goes through weights() like any weight and is what linear() gets as w. */
    size_t (*linear_pack_floats)(int N, int K);
    void (*linear_pack)(const float *w, int N, int K, float *dst);
    /* y = act(x w^T + bias): x (M,K), w (N,K) as nn.Linear stores it (or as linear_pack
     * wrote it), bias (N), y (M,N). */
    void (*linear)(cv_backend *be, const float *x, const float *w, const float *bias, int M, int N, int K,
                   cv_act act, float *y);
    /* x = LayerNorm(x + res) over rows of D: x (M,D) in/out, res (M,D). */
    void (*add_ln)(cv_backend *be, float *x, const float *res, const float *gamma, const float *beta, int M,
                   int D, float eps);
    /* Self-attention per sequence and head, no padding: qkv (T, 3*H*hd) holds Q|K|V per
     * token, out (T, H*hd) gets softmax(Q K^T / sqrt(hd)) V. max_len bounds every
     * sequence's length (offs may live on a device, where the host cannot read it). */
    void (*attention)(cv_backend *be, const float *qkv, const int32_t *offs /* (nseq+1) */, int nseq,
                      int max_len, int H, int hd, float *out);
    /* out[s] = the pooling (mode) of x over sequence s's rows, then L2-normalized (eps 1e-12).
     * norms (backend memory, or NULL when not wanted) gets each pooled vector's L2 norm before
     * that division, so that out[s] * norms[s] is the pooled vector (to float rounding). */
    void (*pool_l2)(cv_backend *be, const float *x /* (T,D) */, const int32_t *offs, int nseq, int D,
                    cv_pool_mode mode, float *out /* (nseq,D) */, float *norms /* (nseq) or NULL */);

    /* Optional (NULL: the ops above are composed by the caller): the whole encoder, pooling
     * (m->pool) and L2 normalization of one batch, with the backend's own activations (CUDA: fp16
     * end to end, fused epilogues, graphs). ids, pos_ids (T) and offs (nseq+1, offs[0] == 0)
     * are host arrays, free to reuse once encode returns; out (nseq, D) is host memory, written
     * when encode_wait returns. encode queues the batch and returns at once, so the caller can
     * prepare the next batch meanwhile; one batch in flight (a second encode waits for the
     * first). norms (nseq, host memory, or NULL) gets pool_l2's norms, written with out. */
    cv_err (*encode)(cv_backend *be, const cv_encoder *m, const int32_t *ids, const int32_t *pos_ids,
                     const int32_t *offs, int T, int nseq, int max_len, float *out, float *norms);
    cv_err (*encode_wait)(cv_backend *be);

    void (*destroy)(cv_backend *be);
};

/* A CPU backend that runs ops in the calling thread. *out owned by the caller (destroy). */
cv_err cv_backend_cpu_new(cv_backend **out);
/* The same with bf16 GEMMs: weights packed as bfloat16, activations rounded to bfloat16 per
 * GEMM, fp32 accumulation; every other op and the residual stream stay fp32. Needs
 * AVX512-BF16: CV_ERR_UNSUPPORTED on other CPUs. */
cv_err cv_backend_cpu_new_bf16(cv_backend **out);

/* Lets a CPU backend split each GEMM (by output columns) and attention (by heads) across
 * pool's threads; NULL returns to single-threaded ops. The pool must not be running a task
 * that calls this backend (cv_pool_run is not reentrant). */
struct cv_pool;
void cv_backend_cpu_set_pool(cv_backend *be, struct cv_pool *pool);

/* CUDA builds only (CV_HAVE_CUDA): a backend on CUDA device `device` (compute capability
 * 8.0+). On failure returns CV_ERR_DEVICE and writes the reason into why; on success why
 * describes the device. *out owned by the caller (destroy). */
cv_err cv_backend_cuda_new(int device, cv_backend **out, char *why, size_t why_len);
/* Number of CUDA devices the driver reports (0 when none or no driver). */
int cv_cuda_device_count(void);
/* encode()'s FFN activation on CUDA backends created after this call: 0 (default) the exact
 * erf GELU in a kernel after cuBLASLt's bias epilogue, 1 cuBLASLt's GELU_BIAS epilogue (tanh
 * approximation, one pass less). For tests and measurements. */
void cv_cuda_set_gelu_tanh(int on);

#ifdef __cplusplus
}
#endif

#endif
