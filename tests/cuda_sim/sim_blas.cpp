/* sim_blas.cpp: cuBLAS modelled on the CPU: the fp16 operands widened to fp32 and multiplied
 * by OpenBLAS's sgemm (fp32 accumulation, as CUBLAS_COMPUTE_32F), the result rounded to C's
 * type; arguments checked against cuBLAS's documented rules (cublasGemmEx: m, n, k >= 0,
 * lda >= max(1, transa == N ? m : k), ldb >= max(1, transb == N ? k : n), ldc >= max(1, m))
 * and every operand's extent checked to lie in one device allocation. */
#include <cblas.h>
#include <stdio.h>

#include "sim_internal.h"

struct cusim_blas {
    cudaStream_t stream;
};

using namespace cusim;

static size_t elsize(cudaDataType t) {
    switch (t) {
    case CUDA_R_16F:
    case CUDA_R_16BF: return 2;
    case CUDA_R_32F: return 4;
    default: return 0;
    }
}

static float load(const void *p, cudaDataType t, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    return __half2float(((const __half *)p)[i]);
}

static void store(void *p, cudaDataType t, size_t i, float v) {
    if (t == CUDA_R_32F)
        ((float *)p)[i] = v;
    else
        ((__half *)p)[i] = __float2half_rn(v);
}

/* Column-major matrix of rows x cols with leading dimension ld, widened to a dense fp32 copy. */
static std::vector<float> widen(const void *p, cudaDataType t, int rows, int cols, int ld) {
    std::vector<float> v((size_t)rows * cols);
    for (int c = 0; c < cols; c++)
        for (int r = 0; r < rows; r++)
            v[(size_t)c * rows + r] = load(p, t, (size_t)c * ld + r);
    return v;
}

cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new cusim_blas{nullptr}; /* the legacy stream until cublasSetStream */
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
const char *cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "cuBLAS error";
}

/* The model: C = alpha op(A) op(B) + beta C, queued on stream s. */
cudaError_t cusim_gemm_op(cudaStream_t s, const char *what, bool ta, bool tb, int m, int n, int k,
                          float alpha, const void *A, cudaDataType At, int lda, const void *B,
                          cudaDataType Bt, int ldb, float beta, void *C, cudaDataType Ct, int ldc,
                          std::function<void(float *, int, int)> epilogue) {
    Op op;
    op.what = what;
    op.uses = {A, B, C};
    op.run = [=]() {
        launches++;
        const int ar = ta ? k : m, ac = ta ? m : k, br = tb ? n : k, bc = tb ? k : n;
        std::vector<float> a = widen(A, At, ar, ac, lda), b = widen(B, Bt, br, bc, ldb);
        std::vector<float> c((size_t)m * n, 0.0f);
        if (beta != 0.0f) c = widen(C, Ct, m, n, ldc);
        if (k > 0)
            cblas_sgemm(CblasColMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                        k, alpha, a.data(), ar, b.data(), br, beta, c.data(), m);
        else
            for (auto &x : c)
                x *= beta;
        if (epilogue) epilogue(c.data(), m, n);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++)
                store(C, Ct, (size_t)j * ldc + i, c[(size_t)j * m + i]);
    };
    op.again = [op]() { return op; };
    return enqueue(s, std::move(op));
}

/* Extent in elements of a column-major rows x cols matrix with leading dimension ld. */
static size_t extent(int rows, int cols, int ld) {
    return rows == 0 || cols == 0 ? 0 : (size_t)ld * (size_t)(cols - 1) + (size_t)rows;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType At, int lda, const void *B,
                            cudaDataType Bt, int ldb, const void *beta, void *C, cudaDataType Ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
    if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
    const char *why = nullptr;
    if (m < 0 || n < 0 || k < 0)
        why = "m, n, k must be >= 0";
    else if (ta > CUBLAS_OP_C || tb > CUBLAS_OP_C)
        why = "invalid operation";
    else if (lda < (ta == CUBLAS_OP_N ? (m > 1 ? m : 1) : (k > 1 ? k : 1)))
        why = "lda < max(1, transa == N ? m : k)";
    else if (ldb < (tb == CUBLAS_OP_N ? (k > 1 ? k : 1) : (n > 1 ? n : 1)))
        why = "ldb < max(1, transb == N ? k : n)";
    else if (ldc < (m > 1 ? m : 1))
        why = "ldc < max(1, m)";
    else if (!elsize(At) || !elsize(Bt) || !elsize(Ct) || At != Bt)
        why = "unsupported type combination";
    else if (compute != CUBLAS_COMPUTE_32F && compute != CUBLAS_COMPUTE_32F_FAST_16F)
        why = "compute type not modelled (CUBLAS_COMPUTE_32F only)";
    else if (!alpha || !beta)
        why = "alpha and beta must be host pointers";
    if (why) {
        fprintf(stderr, "cuda_sim: cublasGemmEx(m=%d n=%d k=%d lda=%d ldb=%d ldc=%d) refused: %s\n", m, n, k,
                lda, ldb, ldc, why);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    const bool tA = ta != CUBLAS_OP_N, tB = tb != CUBLAS_OP_N;
    need_device(A, extent(tA ? k : m, tA ? m : k, lda) * elsize(At), "cublasGemmEx operand A");
    need_device(B, extent(tB ? n : k, tB ? k : n, ldb) * elsize(Bt), "cublasGemmEx operand B");
    need_device(C, extent(m, n, ldc) * elsize(Ct), "cublasGemmEx operand C");
    const float al = *(const float *)alpha, be = *(const float *)beta;
    cudaError_t e = cusim_gemm_op(h->stream, "cublasGemmEx", tA, tB, m, n, k, al, A, At, lda, B, Bt, ldb, be,
                                  C, Ct, ldc, nullptr);
    return e ? CUBLAS_STATUS_EXECUTION_FAILED : CUBLAS_STATUS_SUCCESS;
}
