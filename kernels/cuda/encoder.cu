/* encoder.cu: the whole encoder in one backend call (be->encode), the fast design of
 * issue 26 (bench/RESULTS.md has its paper roofline):
 * - fp16 activations end to end; LayerNorm, softmax and pooling keep fp32 statistics, and
 *   the LayerNorms write fp16 themselves (the cast fused into them);
 * - every GEMM through cuBLASLt with the bias in its epilogue, fp16 out (no fp32 GEMM output
 *   re-read by a bias kernel, no separate fp32 -> fp16 pass); the FFN's GELU is the exact erf
 *   form in one in-place kernel by default, or cuBLASLt's GELU_BIAS epilogue (its tanh
 *   approximation: cv_cuda_set_gelu_tanh);
 * - ids, positions and offsets go up, the pooled vectors and their norms before the L2
 *   normalization come down (one copy), through pinned buffers with
 *   async copies on the backend's stream, one sync per batch (encode_wait: the caller tokenizes
 *   the next batch meanwhile);
 * - batches of up to CV_GRAPH_MAX_TOKENS tokens run as a CUDA graph captured per shape (tokens,
 *   sequences, longest sequence) the second time that shape is seen (a one-off shape does not
 *   pay for a capture): one launch instead of ~50.
 * Scratch grows to the largest batch seen; growing waits for the stream and drops the graphs
 * (they hold the old buffers' addresses). */
#include <cublasLt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/cv_log.h"
#include "cuda_impl.cuh"

#define CV_GRAPH_MAX_TOKENS 1024
#define CV_GRAPH_CACHE      256 /* shapes remembered (batch 1: one per length) */
#define CV_LT_WORKSPACE     (4u << 20)

typedef struct {
    const cv_encoder *m;
    int T, nseq, max_len;
    cudaGraphExec_t exec;
    unsigned long long used;
} enc_graph;

struct cv_cuda_enc {
    cublasLtHandle_t lt;
    void *ws;
    int cap, seq_cap; /* token and sequence capacity of the buffers below */
    int D, NI;        /* the widths they were sized for */
    __half *h, *qkv, *ctx, *a, *inter;
    int32_t *in;          /* device: ids (cap) | pos (cap) | offs (seq_cap + 1) */
    float *out;           /* device (seq_cap, D) vectors, then (nseq) norms after a batch's nseq rows */
    int32_t *pin_in;      /* pinned, as in */
    float *pin_out;       /* pinned, as out */
    float *pending_out;   /* the queued batch's destination (encode_wait copies into it) */
    float *pending_norms; /* and its norms' (NULL: not wanted) */
    size_t pending_n, pending_nseq;
    enc_graph graphs[CV_GRAPH_CACHE];
    int ngraphs;
    unsigned long long tick;
    int gelu_tanh;
};

static int gelu_tanh_default; /* cv_cuda_set_gelu_tanh */

__global__ void gelu_erf_h_kernel(__half *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        const float v = __half2float(y[i]);
        y[i] = __float2half_rn(0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
    }
}

static void note_blas(cv_cuda *c, cublasStatus_t st) {
    if (st != CUBLAS_STATUS_SUCCESS && c->sticky_blas == CUBLAS_STATUS_SUCCESS) c->sticky_blas = st;
}

/* y (M,N) fp16 = epilogue(x (M,K) w^T + b): column-major y^T (N,M) = w^T . x^T, bias per row. */
static void lt_linear(cv_cuda *c, const __half *x, const float *w32, const float *b32, int M, int N, int K,
                      cublasLtEpilogue_t epi, __half *y) {
    struct cv_cuda_enc *e = c->enc;
    const __half *w = cv_cuda_half_weight(c, w32), *b = cv_cuda_half_weight(c, b32);
    if (!w || !b) {
        cv_cuda_note(c, cudaErrorInvalidValue); /* not registered through weights() */
        return;
    }
    cublasLtMatmulDesc_t d = NULL;
    cublasLtMatrixLayout_t la = NULL, lb = NULL, ld = NULL;
    cublasLtMatmulPreference_t pref = NULL;
    const int32_t opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    const uint64_t ws = CV_LT_WORKSPACE;
    cublasLtMatmulHeuristicResult_t res;
    int got = 0;
    const float one = 1.0f, zero = 0.0f;
    cublasStatus_t st = cublasLtMatmulDescCreate(&d, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    if (!st) st = cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSA, &opT, sizeof opT);
    if (!st) st = cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_TRANSB, &opN, sizeof opN);
    if (!st) st = cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi);
    if (!st) st = cublasLtMatmulDescSetAttribute(d, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &b, sizeof b);
    if (!st) st = cublasLtMatrixLayoutCreate(&la, CUDA_R_16F, K, N, K);
    if (!st) st = cublasLtMatrixLayoutCreate(&lb, CUDA_R_16F, K, M, K);
    if (!st) st = cublasLtMatrixLayoutCreate(&ld, CUDA_R_16F, N, M, N);
    if (!st) st = cublasLtMatmulPreferenceCreate(&pref);
    if (!st)
        st = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws,
                                                  sizeof ws);
    if (!st) st = cublasLtMatmulAlgoGetHeuristic(e->lt, d, la, lb, ld, ld, pref, 1, &res, &got);
    if (!st && got == 0) st = CUBLAS_STATUS_NOT_SUPPORTED;
    if (!st)
        st = cublasLtMatmul(e->lt, d, &one, w, la, x, lb, &zero, y, ld, y, ld, &res.algo, e->ws,
                            CV_LT_WORKSPACE, c->stream);
    note_blas(c, st);
    if (pref) cublasLtMatmulPreferenceDestroy(pref);
    if (ld) cublasLtMatrixLayoutDestroy(ld);
    if (lb) cublasLtMatrixLayoutDestroy(lb);
    if (la) cublasLtMatrixLayoutDestroy(la);
    if (d) cublasLtMatmulDescDestroy(d);
}

static void gelu_erf(cv_cuda *c, __half *y, size_t n) {
    const size_t blocks = (n + 255) / 256;
    gelu_erf_h_kernel<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256, 0, c->stream>>>(y, n);
    cv_cuda_note_launch(c);
}

/* Queues one batch on the stream: copies up, the encoder, pooling, the copy down. */
static void enqueue_forward(cv_cuda *c, const cv_encoder *m, int T, int nseq, int max_len) {
    struct cv_cuda_enc *e = c->enc;
    const int D = m->D, NI = m->NI, H = m->H;
    int32_t *ids = e->in, *pos = e->in + e->cap, *offs = e->in + 2 * (size_t)e->cap;
    const size_t nin = 2 * (size_t)e->cap + (size_t)nseq + 1;
    cv_cuda_note(c,
                 cudaMemcpyAsync(e->in, e->pin_in, nin * sizeof(int32_t), cudaMemcpyHostToDevice, c->stream));
    cv_cuda_embed_ln_h(c, ids, pos, T, D, m->word, m->pos, m->type0, m->ln_g, m->ln_b, m->eps, e->h);
    for (int l = 0; l < m->layers; l++) {
        const cv_encoder_layer *L = &m->layer[l];
        lt_linear(c, e->h, L->wqkv, L->bqkv, T, 3 * D, D, CUBLASLT_EPILOGUE_BIAS, e->qkv);
        cv_cuda_attention_h(c, e->qkv, offs, nseq, max_len, H, D / H, e->ctx);
        lt_linear(c, e->ctx, L->wo, L->bo, T, D, D, CUBLASLT_EPILOGUE_BIAS, e->a);
        cv_cuda_add_ln_h(c, e->a, e->h, L->ln1_g, L->ln1_b, T, D, m->eps);
        if (e->gelu_tanh)
            lt_linear(c, e->a, L->w1, L->b1, T, NI, D, CUBLASLT_EPILOGUE_GELU_BIAS, e->inter);
        else {
            lt_linear(c, e->a, L->w1, L->b1, T, NI, D, CUBLASLT_EPILOGUE_BIAS, e->inter);
            gelu_erf(c, e->inter, (size_t)T * NI);
        }
        lt_linear(c, e->inter, L->w2, L->b2, T, D, NI, CUBLASLT_EPILOGUE_BIAS, e->h);
        cv_cuda_add_ln_h(c, e->h, e->a, L->ln2_g, L->ln2_b, T, D, m->eps);
    }
    cv_cuda_pool_l2_h(c, e->h, offs, nseq, D, m->pool, e->out, e->out + (size_t)nseq * D);
    cv_cuda_note(c, cudaMemcpyAsync(e->pin_out, e->out, sizeof(float) * (size_t)nseq * (D + 1),
                                    cudaMemcpyDeviceToHost, c->stream));
}

static void drop_graphs(struct cv_cuda_enc *e) {
    for (int i = 0; i < e->ngraphs; i++)
        if (e->graphs[i].exec) cudaGraphExecDestroy(e->graphs[i].exec);
    e->ngraphs = 0;
}

static void free_buffers(struct cv_cuda_enc *e) {
    void *dev[] = {e->h, e->qkv, e->ctx, e->a, e->inter, e->in, e->out};
    for (size_t i = 0; i < sizeof dev / sizeof dev[0]; i++)
        if (dev[i]) cudaFree(dev[i]);
    if (e->pin_in) cudaFreeHost(e->pin_in);
    if (e->pin_out) cudaFreeHost(e->pin_out);
    e->h = e->qkv = e->ctx = e->a = e->inter = NULL;
    e->in = e->pin_in = NULL;
    e->out = e->pin_out = NULL;
    e->cap = e->seq_cap = 0;
}

void cv_cuda_enc_free(cv_cuda *c) {
    struct cv_cuda_enc *e = c->enc;
    if (!e) return;
    cudaStreamSynchronize(c->stream);
    drop_graphs(e);
    free_buffers(e);
    if (e->ws) cudaFree(e->ws);
    if (e->lt) cublasLtDestroy(e->lt);
    free(e);
    c->enc = NULL;
}

/* Buffers for T tokens in nseq sequences; false (error noted) when out of memory. */
static bool reserve(cv_cuda *c, const cv_encoder *m, int T, int nseq) {
    struct cv_cuda_enc *e = c->enc;
    if (T <= e->cap && nseq <= e->seq_cap && m->D == e->D && m->NI == e->NI) return true;
    if (T < e->cap) T = e->cap;
    if (nseq < e->seq_cap) nseq = e->seq_cap;
    cv_cuda_note(c, cudaStreamSynchronize(c->stream)); /* queued work may still use them */
    drop_graphs(e);
    free_buffers(e);
    const size_t t = (size_t)T, D = (size_t)m->D, hs = sizeof(__half);
    const size_t nin = 2 * t + (size_t)nseq + 1;
    cudaError_t err = cudaSuccess;
    if (!err) err = cudaMalloc((void **)&e->h, t * D * hs);
    if (!err) err = cudaMalloc((void **)&e->qkv, t * 3 * D * hs);
    if (!err) err = cudaMalloc((void **)&e->ctx, t * D * hs);
    if (!err) err = cudaMalloc((void **)&e->a, t * D * hs);
    if (!err) err = cudaMalloc((void **)&e->inter, t * (size_t)m->NI * hs);
    if (!err) err = cudaMalloc((void **)&e->in, nin * sizeof(int32_t));
    if (!err) err = cudaMalloc((void **)&e->out, (size_t)nseq * (D + 1) * sizeof(float));
    if (!err) err = cudaMallocHost((void **)&e->pin_in, nin * sizeof(int32_t));
    if (!err) err = cudaMallocHost((void **)&e->pin_out, (size_t)nseq * (D + 1) * sizeof(float));
    if (err) {
        cv_error("event=cuda_alloc tokens=%d seqs=%d error=\"%s\"", T, nseq, cudaGetErrorString(err));
        cv_cuda_note(c, err);
        free_buffers(e);
        return false;
    }
    e->cap = T, e->seq_cap = nseq, e->D = m->D, e->NI = m->NI;
    return true;
}

static struct cv_cuda_enc *enc_of(cv_cuda *c) {
    if (c->enc) return c->enc;
    struct cv_cuda_enc *e = (struct cv_cuda_enc *)calloc(1, sizeof *e);
    if (!e) return NULL;
    cublasStatus_t st = cublasLtCreate(&e->lt);
    cudaError_t err = st ? cudaSuccess : cudaMalloc(&e->ws, CV_LT_WORKSPACE);
    if (st || err) {
        cv_error("event=cuda_init what=cublasLt cublas_status=%d error=\"%s\"", (int)st,
                 cudaGetErrorString(err));
        if (e->lt) cublasLtDestroy(e->lt);
        free(e);
        return NULL;
    }
    e->gelu_tanh = gelu_tanh_default;
    c->enc = e;
    return e;
}

/* The graph for this batch shape, captured the second time the shape is seen; NULL the first
 * time, or when capture failed (the batch then runs op by op). */
static cudaGraphExec_t graph_for(cv_cuda *c, const cv_encoder *m, int T, int nseq, int max_len) {
    struct cv_cuda_enc *e = c->enc;
    enc_graph *g = NULL;
    for (int i = 0; i < e->ngraphs && !g; i++)
        if (e->graphs[i].m == m && e->graphs[i].T == T && e->graphs[i].nseq == nseq &&
            e->graphs[i].max_len == max_len)
            g = &e->graphs[i];
    if (!g) { /* first sight: remember the shape, evicting the least recently used */
        int slot = e->ngraphs;
        if (slot == CV_GRAPH_CACHE) {
            slot = 0;
            for (int i = 1; i < e->ngraphs; i++)
                if (e->graphs[i].used < e->graphs[slot].used) slot = i;
            if (e->graphs[slot].exec) cudaGraphExecDestroy(e->graphs[slot].exec);
        } else
            e->ngraphs++;
        e->graphs[slot] = (enc_graph){m, T, nseq, max_len, NULL, ++e->tick};
        return NULL;
    }
    g->used = ++e->tick;
    if (g->exec) return g->exec;
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    if (cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    enqueue_forward(c, m, T, nseq, max_len);
    cudaError_t err = cudaStreamEndCapture(c->stream, &graph);
    if (err == cudaSuccess) err = cudaGraphInstantiate(&exec, graph, 0);
    if (graph) cudaGraphDestroy(graph);
    if (err != cudaSuccess || c->sticky != cudaSuccess || c->sticky_blas != CUBLAS_STATUS_SUCCESS) {
        cv_warn("event=cuda_graph_capture_failed tokens=%d seqs=%d error=\"%s\" cublas_status=%d", T, nseq,
                cudaGetErrorString(err != cudaSuccess ? err : c->sticky), (int)c->sticky_blas);
        if (exec) cudaGraphExecDestroy(exec);
        cudaGetLastError();
        return NULL; /* sync() reports a sticky error */
    }
    g->exec = exec;
    return exec;
}

/* Waits for the queued batch and copies its vectors (and norms, when asked) out. */
cv_err cv_cuda_encode_wait(cv_backend *be) {
    cv_cuda *c = cv_cuda_of(be);
    struct cv_cuda_enc *e = c->enc;
    cv_err err = be->sync(be);
    if (e && e->pending_out) {
        if (!err) memcpy(e->pending_out, e->pin_out, sizeof(float) * e->pending_n);
        if (!err && e->pending_norms)
            memcpy(e->pending_norms, e->pin_out + e->pending_n, sizeof(float) * e->pending_nseq);
        e->pending_out = e->pending_norms = NULL;
    }
    return err;
}

cv_err cv_cuda_encode(cv_backend *be, const cv_encoder *m, const int32_t *ids, const int32_t *pos_ids,
                      const int32_t *offs, int T, int nseq, int max_len, float *out, float *norms) {
    cv_cuda *c = cv_cuda_of(be);
    if (T <= 0 || nseq <= 0) return CV_OK;
    if (m->D > 32 * CV_LN_MAX_PER_LANE) return CV_ERR_ARG;
    struct cv_cuda_enc *e = enc_of(c);
    if (!e) return CV_ERR_DEVICE;
    if (e->pending_out) { /* one batch in flight: the pinned buffers are still in use */
        cv_err err = cv_cuda_encode_wait(be);
        if (err) return err;
    }
    if (!reserve(c, m, T, nseq)) return be->sync(be) ? CV_ERR_DEVICE : CV_ERR_NOMEM;
    memcpy(e->pin_in, ids, sizeof(int32_t) * (size_t)T);
    memcpy(e->pin_in + e->cap, pos_ids, sizeof(int32_t) * (size_t)T);
    memcpy(e->pin_in + 2 * (size_t)e->cap, offs, sizeof(int32_t) * ((size_t)nseq + 1));
    cudaGraphExec_t g = T <= CV_GRAPH_MAX_TOKENS ? graph_for(c, m, T, nseq, max_len) : NULL;
    if (g)
        cv_cuda_note(c, cudaGraphLaunch(g, c->stream));
    else if (c->sticky == cudaSuccess && c->sticky_blas == CUBLAS_STATUS_SUCCESS)
        enqueue_forward(c, m, T, nseq, max_len);
    e->pending_out = out;
    e->pending_norms = norms;
    e->pending_n = (size_t)nseq * (size_t)m->D;
    e->pending_nseq = (size_t)nseq;
    if (c->sticky != cudaSuccess || c->sticky_blas != CUBLAS_STATUS_SUCCESS) return cv_cuda_encode_wait(be);
    return CV_OK;
}

extern "C" void cv_cuda_set_gelu_tanh(int on) { gelu_tanh_default = !!on; }
