/* sim_blas.cpp: cuBLAS modelled on the CPU: the fp16 operands widened to fp32 and multiplied
 * by OpenBLAS's sgemm (fp32 accumulation, as CUBLAS_COMPUTE_32F), the result rounded to C's
 * type; arguments checked against cuBLAS's documented rules (cublasGemmEx: m, n, k >= 0,
 * lda >= max(1, transa == N ? m : k), ldb >= max(1, transb == N ? k : n), ldc >= max(1, m))
 * and every operand's extent checked to lie in one device allocation. */
#include <cblas.h>
#include <stdio.h>

#include "sim_internal.h"
#include "include/cublasLt.h"

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

/* ---- cuBLASLt --------------------------------------------------------------------------- */
struct cusim_lt {
    int unused;
};
struct cusim_lt_desc {
    cublasComputeType_t compute;
    cudaDataType_t scale;
    int32_t ta = CUBLAS_OP_N, tb = CUBLAS_OP_N;
    uint32_t epilogue = CUBLASLT_EPILOGUE_DEFAULT;
    const void *bias = nullptr;
    int32_t bias_type = -1; /* -1: D's type */
};
struct cusim_lt_layout {
    cudaDataType t;
    uint64_t rows, cols;
    int64_t ld;
};
struct cusim_lt_pref {
    uint64_t ws = 0;
};

cublasStatus_t cublasLtCreate(cublasLtHandle_t *h) {
    *h = new cusim_lt{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtDestroy(cublasLtHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescCreate(cublasLtMatmulDesc_t *d, cublasComputeType_t compute,
                                        cudaDataType_t scale) {
    if (compute != CUBLAS_COMPUTE_32F || scale != CUDA_R_32F) return CUBLAS_STATUS_NOT_SUPPORTED;
    *d = new cusim_lt_desc{compute, scale};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescDestroy(cublasLtMatmulDesc_t d) {
    delete d;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulDescSetAttribute(cublasLtMatmulDesc_t d, cublasLtMatmulDescAttributes_t a,
                                              const void *buf, size_t size) {
    switch (a) {
    case CUBLASLT_MATMUL_DESC_TRANSA:
    case CUBLASLT_MATMUL_DESC_TRANSB:
    case CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE:
        if (size != sizeof(int32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(a == CUBLASLT_MATMUL_DESC_TRANSA   ? &d->ta
               : a == CUBLASLT_MATMUL_DESC_TRANSB ? &d->tb
                                                  : &d->bias_type,
               buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_EPILOGUE:
        if (size != sizeof(uint32_t)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->epilogue, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    case CUBLASLT_MATMUL_DESC_BIAS_POINTER:
        if (size != sizeof(void *)) return CUBLAS_STATUS_INVALID_VALUE;
        memcpy(&d->bias, buf, size);
        return CUBLAS_STATUS_SUCCESS;
    default: return CUBLAS_STATUS_INVALID_VALUE;
    }
}
cublasStatus_t cublasLtMatrixLayoutCreate(cublasLtMatrixLayout_t *l, cudaDataType t, uint64_t rows,
                                          uint64_t cols, int64_t ld) {
    if (ld < (int64_t)(rows > 1 ? rows : 1))
        return CUBLAS_STATUS_INVALID_VALUE; /* column-major: ld >= rows */
    *l = new cusim_lt_layout{t, rows, cols, ld};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatrixLayoutDestroy(cublasLtMatrixLayout_t l) {
    delete l;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceCreate(cublasLtMatmulPreference_t *p) {
    *p = new cusim_lt_pref;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceDestroy(cublasLtMatmulPreference_t p) {
    delete p;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasLtMatmulPreferenceSetAttribute(cublasLtMatmulPreference_t p,
                                                    cublasLtMatmulPreferenceAttributes_t a, const void *buf,
                                                    size_t size) {
    if (a != CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES || size != sizeof(uint64_t))
        return CUBLAS_STATUS_INVALID_VALUE;
    memcpy(&p->ws, buf, size);
    return CUBLAS_STATUS_SUCCESS;
}

/* Checks the shapes agree: D (m x n) = op(A) (m x k) op(B) (k x n), C like D. */
static const char *lt_check(cublasLtMatmulDesc_t d, cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                            cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D) {
    const uint64_t m = d->ta ? A->cols : A->rows, k = d->ta ? A->rows : A->cols;
    const uint64_t kb = d->tb ? B->cols : B->rows, n = d->tb ? B->rows : B->cols;
    if (k != kb) return "op(A) and op(B) disagree on k";
    if (D->rows != m || D->cols != n) return "D is not m x n";
    if (C->rows != D->rows || C->cols != D->cols || C->t != D->t) return "C and D layouts differ";
    if (A->t != B->t || (A->t != CUDA_R_16F && A->t != CUDA_R_32F)) return "unsupported A/B type";
    const uint32_t e = d->epilogue;
    if (e != CUBLASLT_EPILOGUE_DEFAULT && e != CUBLASLT_EPILOGUE_BIAS && e != CUBLASLT_EPILOGUE_GELU &&
        e != CUBLASLT_EPILOGUE_GELU_BIAS && e != CUBLASLT_EPILOGUE_RELU)
        return "epilogue not modelled";
    if ((e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS) && !d->bias)
        return "a BIAS epilogue without CUBLASLT_MATMUL_DESC_BIAS_POINTER";
    const int bt = d->bias_type < 0 ? D->t : d->bias_type;
    if (d->bias && bt != CUDA_R_16F && bt != CUDA_R_32F) return "unsupported bias type";
    return nullptr;
}

cublasStatus_t cublasLtMatmulAlgoGetHeuristic(cublasLtHandle_t h, cublasLtMatmulDesc_t d,
                                              cublasLtMatrixLayout_t A, cublasLtMatrixLayout_t B,
                                              cublasLtMatrixLayout_t C, cublasLtMatrixLayout_t D,
                                              cublasLtMatmulPreference_t p, int want,
                                              cublasLtMatmulHeuristicResult_t *res, int *got) {
    if (!h || want < 1) return CUBLAS_STATUS_INVALID_VALUE;
    if (const char *why = lt_check(d, A, B, C, D)) {
        fprintf(stderr, "cuda_sim: cublasLtMatmulAlgoGetHeuristic: %s\n", why);
        *got = 0;
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    memset(res, 0, sizeof *res);
    res->algo.data[0] = 0x51u; /* a token cublasLtMatmul checks */
    res->workspaceSize = 0;
    *got = 1;
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasLtMatmul(cublasLtHandle_t h, cublasLtMatmulDesc_t d, const void *alpha, const void *A,
                              cublasLtMatrixLayout_t Al, const void *B, cublasLtMatrixLayout_t Bl,
                              const void *beta, const void *C, cublasLtMatrixLayout_t Cl, void *D,
                              cublasLtMatrixLayout_t Dl, const cublasLtMatmulAlgo_t *algo, void *ws,
                              size_t ws_size, cudaStream_t s) {
    if (!h || !d || !Al || !Bl || !Cl || !Dl) return CUBLAS_STATUS_NOT_INITIALIZED;
    if (const char *why = lt_check(d, Al, Bl, Cl, Dl)) {
        fprintf(stderr, "cuda_sim: cublasLtMatmul refused: %s\n", why);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (algo && algo->data[0] != 0x51u) return CUBLAS_STATUS_INVALID_VALUE;
    if (C != D) { /* modelled in place only: C is D here */
        fprintf(stderr, "cuda_sim: cublasLtMatmul: C != D is not modelled\n");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    const int m = (int)Dl->rows, n = (int)Dl->cols, k = (int)(d->ta ? Al->rows : Al->cols);
    if (m == 0 || n == 0) return CUBLAS_STATUS_SUCCESS;
    need_device(A, extent((int)Al->rows, (int)Al->cols, (int)Al->ld) * elsize(Al->t), "cublasLtMatmul A");
    need_device(B, extent((int)Bl->rows, (int)Bl->cols, (int)Bl->ld) * elsize(Bl->t), "cublasLtMatmul B");
    need_device(D, extent(m, n, (int)Dl->ld) * elsize(Dl->t), "cublasLtMatmul D");
    const cudaDataType bt = d->bias_type < 0 ? Dl->t : (cudaDataType)d->bias_type;
    const uint32_t e = d->epilogue;
    const bool bias = e == CUBLASLT_EPILOGUE_BIAS || e == CUBLASLT_EPILOGUE_GELU_BIAS;
    const bool gelu = e == CUBLASLT_EPILOGUE_GELU || e == CUBLASLT_EPILOGUE_GELU_BIAS,
               relu = e == CUBLASLT_EPILOGUE_RELU;
    const void *bp = d->bias;
    if (bias) need_device(bp, (size_t)m * elsize(bt), "cublasLtMatmul bias (m elements)");
    std::function<void(float *, int, int)> epi;
    if (bias || gelu || relu)
        epi = [=](float *c, int mm, int nn) {
            for (int j = 0; j < nn; j++)
                for (int i = 0; i < mm; i++) {
                    float v = c[(size_t)j * mm + i];
                    if (bias) v += load(bp, bt, (size_t)i);
                    if (gelu) /* cuBLASLt's GELU: the tanh approximation */
                        v = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
                    if (relu) v = v > 0 ? v : 0;
                    c[(size_t)j * mm + i] = v;
                }
        };
    std::vector<const void *> extra;
    cudaError_t err = cusim_gemm_op(s, "cublasLtMatmul", d->ta != CUBLAS_OP_N, d->tb != CUBLAS_OP_N, m, n, k,
                                    *(const float *)alpha, A, Al->t, (int)Al->ld, B, Bl->t, (int)Bl->ld,
                                    *(const float *)beta, D, Dl->t, (int)Dl->ld, epi);
    return err ? CUBLAS_STATUS_EXECUTION_FAILED : CUBLAS_STATUS_SUCCESS;
}
