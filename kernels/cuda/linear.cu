/* linear.cu: y = act(x w^T + b). The input is converted to fp16, multiplied by the weight's
 * fp16 copy through cuBLAS with fp32 accumulation into an fp32 y, then one kernel adds the
 * bias and applies the exact erf GELU in fp32. */
#include "cuda_impl.cuh"

__global__ void to_half_kernel(const float *src, __half *dst, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x)
        dst[i] = __float2half_rn(src[i]);
}

void cv_cuda_to_half(cv_cuda *c, const float *src, __half *dst, size_t n) {
    if (n == 0) return;
    size_t blocks = (n + 255) / 256;
    to_half_kernel<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256, 0, c->stream>>>(src, dst, n);
    cv_cuda_note_launch(c);
}

__global__ void bias_act_kernel(float *y, const float *bias, int M, int N, int gelu) {
    const size_t n = (size_t)M * N;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float v = y[i] + bias[i % N];
        if (gelu) v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f));
        y[i] = v;
    }
}

extern "C" void cv_cuda_linear(cv_backend *be, const float *x, const float *w, const float *bias, int M,
                               int N, int K, cv_act act, float *y) {
    cv_cuda *c = cv_cuda_of(be);
    if (M <= 0) return;
    if (!cv_cuda_reserve_half(c, &c->xh, &c->xh_cap, (size_t)M * K)) return;
    cv_cuda_to_half(c, x, c->xh, (size_t)M * K);
    const __half *wh = cv_cuda_half_weight(c, w);
    if (!wh) { /* not registered through weights(): convert for this call */
        if (!cv_cuda_reserve_half(c, &c->wh, &c->wh_cap, (size_t)N * K)) return;
        cv_cuda_to_half(c, w, c->wh, (size_t)N * K);
        wh = c->wh;
    }
    /* row-major y (M,N) = x (M,K) w^T  <=>  column-major y^T (N,M) = w^T(N,K) . x^T (K,M) */
    const float alpha = 1.0f, beta = 0.0f;
    cublasStatus_t st =
        cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, wh, CUDA_R_16F, K, c->xh, CUDA_R_16F,
                     K, &beta, y, CUDA_R_32F, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
    if (st != CUBLAS_STATUS_SUCCESS && c->sticky_blas == CUBLAS_STATUS_SUCCESS) c->sticky_blas = st;
    size_t blocks = ((size_t)M * N + 255) / 256;
    bias_act_kernel<<<(unsigned)(blocks < 65535 ? blocks : 65535), 256, 0, c->stream>>>(y, bias, M, N,
                                                                                        act == CV_ACT_GELU);
    cv_cuda_note_launch(c);
}
