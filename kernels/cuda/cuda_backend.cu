/* cuda_backend.cu: the CUDA backend: device memory, one stream, one cuBLAS handle, weights
 * kept as fp32 (for vectors) and fp16 (for GEMMs), errors collected and reported at sync. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/cv_log.h"
#include "cuda_impl.cuh"

extern "C" {
void cv_cuda_embed_ln(cv_backend *be, const int32_t *ids, const int32_t *pos_ids, int T, int D,
                      const float *word, const float *pos, const float *type0, const float *gamma,
                      const float *beta, float eps, float *out);
void cv_cuda_linear(cv_backend *be, const float *x, const float *w, const float *bias, int M, int N, int K,
                    cv_act act, float *y);
void cv_cuda_add_ln(cv_backend *be, float *x, const float *res, const float *gamma, const float *beta, int M,
                    int D, float eps);
void cv_cuda_attention(cv_backend *be, const float *qkv, const int32_t *offs, int nseq, int max_len, int H,
                       int hd, float *out);
void cv_cuda_pool_l2(cv_backend *be, const float *x, const int32_t *offs, int nseq, int D, cv_pool_mode mode,
                     float *out, float *norms);
}
cv_err cv_cuda_encode(cv_backend *be, const cv_encoder *m, const int32_t *ids, const int32_t *pos_ids,
                      const int32_t *offs, int T, int nseq, int max_len, float *out, float *norms);
cv_err cv_cuda_encode_wait(cv_backend *be);

bool cv_cuda_reserve_half(cv_cuda *c, __half **buf, size_t *cap, size_t n) {
    if (n <= *cap) return true;
    if (*buf) { /* queued work (the last GEMM, its to_half) may still read the old buffer */
        cv_cuda_note(c, cudaStreamSynchronize(c->stream));
        cudaFree(*buf);
    }
    *buf = NULL;
    *cap = 0;
    cudaError_t e = cudaMalloc((void **)buf, n * sizeof(__half));
    if (e != cudaSuccess) {
        cv_cuda_note(c, e);
        *buf = NULL;
        return false;
    }
    *cap = n;
    return true;
}

const __half *cv_cuda_half_weight(cv_cuda *c, const float *w) {
    for (int i = 0; i < c->nw; i++)
        if (c->w[i].f32 == w) return c->w[i].f16;
    return NULL;
}

static void *cuda_alloc(cv_backend *be, size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaMalloc(&p, bytes ? bytes : 16);
    if (e != cudaSuccess) {
        cv_error("event=cuda_alloc bytes=%zu error=\"%s\"", bytes, cudaGetErrorString(e));
        return NULL;
    }
    return p;
}

static void cuda_release(cv_backend *be, void *p) { cudaFree(p); }

/* Uploads a weight once, with an fp16 copy (GEMM operands, and biases for cuBLASLt's epilogue). */
static const float *cuda_weights(cv_backend *be, const float *host, size_t count) {
    cv_cuda *c = cv_cuda_of(be);
    if (c->nw == c->wcap) {
        int cap = c->wcap ? 2 * c->wcap : 128;
        cv_cuda_weight *w = (cv_cuda_weight *)realloc(c->w, sizeof(cv_cuda_weight) * (size_t)cap);
        if (!w) return NULL;
        c->w = w;
        c->wcap = cap;
    }
    float *d = (float *)cuda_alloc(be, count * sizeof(float));
    if (!d) return NULL;
    /* on the backend's stream: to_half below reads d, and a plain cudaMemcpy (legacy stream,
     * from pageable memory it may return before the device copy is done) is not ordered before
     * work on a non-blocking stream */
    cudaError_t e = cudaMemcpyAsync(d, host, count * sizeof(float), cudaMemcpyHostToDevice, c->stream);
    __half *h = NULL;
    if (e == cudaSuccess && (e = cudaMalloc((void **)&h, count * sizeof(__half))) == cudaSuccess)
        cv_cuda_to_half(c, d, h, count);
    if (e == cudaSuccess) e = cudaStreamSynchronize(c->stream);
    if (e != cudaSuccess) {
        cv_error("event=cuda_weights error=\"%s\"", cudaGetErrorString(e));
        cudaStreamSynchronize(c->stream); /* the copy into d may still be queued */
        cudaGetLastError();
        cudaFree(d);
        if (h) cudaFree(h);
        return NULL;
    }
    c->w[c->nw++] = (cv_cuda_weight){d, h, count};
    return d;
}

/* Waits for the stream; any failure since the last sync is an error, never silent output.
 * The error is reported once and cleared: the next forward starts clean. */
static cv_err cuda_sync(cv_backend *be) {
    cv_cuda *c = cv_cuda_of(be);
    cv_cuda_note(c, cudaStreamSynchronize(c->stream));
    if (c->sticky != cudaSuccess || c->sticky_blas != CUBLAS_STATUS_SUCCESS) {
        cv_error("event=cuda_failed device=%d error=\"%s\" cublas_status=%d", c->device,
                 cudaGetErrorString(c->sticky), (int)c->sticky_blas);
        c->sticky = cudaSuccess;
        c->sticky_blas = CUBLAS_STATUS_SUCCESS;
        cudaGetLastError();
        return CV_ERR_DEVICE;
    }
    return CV_OK;
}

/* A failed copy (or an earlier failure it finds) ends the forward: callers return at once, so
 * the error is reported and cleared here as sync() would, not left to fail every later call. */
static cv_err cuda_copy(cv_backend *be, void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    cv_cuda *c = cv_cuda_of(be);
    cv_cuda_note(c, cudaMemcpyAsync(dst, src, bytes, kind, c->stream));
    if (c->sticky == cudaSuccess) return CV_OK;
    cuda_sync(be);
    return CV_ERR_DEVICE;
}

static cv_err cuda_upload(cv_backend *be, void *dst, const void *src, size_t bytes) {
    return cuda_copy(be, dst, src, bytes, cudaMemcpyHostToDevice);
}

static cv_err cuda_download(cv_backend *be, void *dst, const void *src, size_t bytes) {
    return cuda_copy(be, dst, src, bytes, cudaMemcpyDeviceToHost);
}

static void cuda_destroy(cv_backend *be) {
    cv_cuda *c = cv_cuda_of(be);
    if (c) {
        cudaSetDevice(c->device);
        cv_cuda_enc_free(c);
        for (int i = 0; i < c->nw; i++) {
            cudaFree((void *)c->w[i].f32);
            if (c->w[i].f16) cudaFree(c->w[i].f16);
        }
        free(c->w);
        if (c->xh) cudaFree(c->xh);
        if (c->wh) cudaFree(c->wh);
        if (c->blas) cublasDestroy(c->blas);
        if (c->stream) cudaStreamDestroy(c->stream);
        free(c);
    }
    free(be);
}

extern "C" int cv_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return n;
}

extern "C" cv_err cv_backend_cuda_new(int device, cv_backend **out, char *why, size_t why_len) {
    *out = NULL;
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        snprintf(why, why_len, "no CUDA device: %s", e != cudaSuccess ? cudaGetErrorString(e) : "none found");
        cudaGetLastError();
        return CV_ERR_DEVICE;
    }
    if (device < 0 || device >= n) {
        snprintf(why, why_len, "CUDA device %d does not exist (%d found)", device, n);
        return CV_ERR_DEVICE;
    }
    cv_backend *be = (cv_backend *)calloc(1, sizeof *be);
    cv_cuda *c = (cv_cuda *)calloc(1, sizeof *c);
    if (!be || !c) {
        free(be);
        free(c);
        return CV_ERR_NOMEM;
    }
    c->device = device;
    be->impl = c;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess ||
        (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess) {
        snprintf(why, why_len, "CUDA device %d failed to initialize: %s", device, cudaGetErrorString(e));
        cuda_destroy(be);
        return CV_ERR_DEVICE;
    }
    if (prop.major < 8) {
        snprintf(why, why_len, "CUDA device %d (%s) is compute capability %d.%d; 8.0 or newer is needed",
                 device, prop.name, prop.major, prop.minor);
        cuda_destroy(be);
        return CV_ERR_DEVICE;
    }
    cublasStatus_t bs = cublasCreate(&c->blas);
    if (bs == CUBLAS_STATUS_SUCCESS) bs = cublasSetStream(c->blas, c->stream);
    if (bs != CUBLAS_STATUS_SUCCESS) {
        snprintf(why, why_len, "cuBLAS failed to initialize (status %d)", (int)bs);
        cuda_destroy(be);
        return CV_ERR_DEVICE;
    }
    be->name = "cuda";
    be->alloc = cuda_alloc;
    be->release = cuda_release;
    be->weights = cuda_weights;
    be->upload = cuda_upload;
    be->download = cuda_download;
    be->sync = cuda_sync;
    be->embed_ln = cv_cuda_embed_ln;
    be->linear = cv_cuda_linear;
    be->add_ln = cv_cuda_add_ln;
    be->attention = cv_cuda_attention;
    be->pool_l2 = cv_cuda_pool_l2;
    be->encode = cv_cuda_encode;
    be->encode_wait = cv_cuda_encode_wait;
    be->destroy = cuda_destroy;
    snprintf(why, why_len, "%s, compute capability %d.%d, %.1f GiB", prop.name, prop.major, prop.minor,
             (double)prop.totalGlobalMem / (1 << 30));
    *out = be;
    return CV_OK;
}
