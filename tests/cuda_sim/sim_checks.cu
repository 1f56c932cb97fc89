/* sim_checks.cu: the CPU execution layer's own checks, each shown to fire (tests/cuda_sim/README.md).
 * CUDA source, run through prep.cmake like kernels/cuda/. Faults abort, so each fault case runs
 * in a child process that must die by SIGABRT/SIGSEGV with the expected message on stderr. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <string>

static int failures;

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (cond)                                                                                            \
            printf("ok: " __VA_ARGS__), printf("\n");                                                        \
        else                                                                                                 \
            printf("FAIL (%s:%d): ", __FILE__, __LINE__), printf(__VA_ARGS__), printf("\n"), failures++;     \
    } while (0)

/* Runs f in a child; true when the child died by a signal with `want` in its stderr. */
static bool faults(const char *want, std::function<void()> f) {
    int pipefd[2];
    if (pipe(pipefd)) return false;
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        setenv("CUDA_SIM_LEAKS", "warn", 1);
        f();
        cudaDeviceSynchronize();
        _exit(0);
    }
    close(pipefd[1]);
    std::string err;
    char buf[4096];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof buf)) > 0)
        err.append(buf, (size_t)n);
    close(pipefd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    const bool ok = WIFSIGNALED(st) && err.find(want) != std::string::npos;
    if (!ok) fprintf(stderr, "child status %d, stderr:\n%s\n", st, err.c_str());
    return ok;
}

__global__ void fill_kernel(float *p, int n, float v) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) p[i] = v;
}

__global__ void add_kernel(float *dst, const float *src, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] += src[i];
}

__global__ void smem_kernel(float *out) {
    extern __shared__ float big[];
    big[threadIdx.x] = 1.0f;
    __syncthreads();
    out[threadIdx.x] = big[blockDim.x - 1 - threadIdx.x];
}

/* lanes 16..31 leave before the shuffle that names them */
__global__ void half_warp_shuffle_kernel(float *out) {
    if (threadIdx.x >= 16) return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}

/* a barrier inside a branch only part of the block takes */
__global__ void divergent_barrier_kernel(float *out) {
    if (threadIdx.x < 32) __syncthreads();
    out[threadIdx.x] = 1.0f;
}

/* reads shared data written by other threads without a barrier */
__global__ void missing_barrier_kernel(float *out) {
    __shared__ float s[64];
    s[threadIdx.x] = (float)threadIdx.x;
    out[threadIdx.x] = s[63 - threadIdx.x];
}

int main() {
    float *d = NULL, *e = NULL, h[256];
    cudaMalloc(&d, 256 * sizeof(float));
    cudaMalloc(&e, 256 * sizeof(float));

    /* launch limits */
    fill_kernel<<<1, 2048>>>(d, 256, 1.0f);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "a 2048-thread block is refused");
    fill_kernel<<<dim3(1, 70000), 32>>>(d, 256, 1.0f);
    CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y 70000 is refused");
    smem_kernel<<<1, 64, 64 * 1024>>>(d);
    CHECK(cudaGetLastError() == cudaErrorInvalidValue,
          "64 KiB of dynamic shared memory without the attribute is refused");
    CHECK(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) ==
              cudaSuccess,
          "the attribute raises the limit");
    smem_kernel<<<1, 64, 64 * 1024>>>(d);
    CHECK(cudaGetLastError() == cudaSuccess, "64 KiB with the attribute launches");
    CHECK(cudaMemcpy(h, d, 64 * sizeof(float), cudaMemcpyDeviceToHost) == cudaSuccess && h[0] == 1.0f,
          "and runs");

    /* copies */
    CHECK(cudaMemcpy(h, h + 1, 4, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "HostToDevice into host memory is refused");
    CHECK(cudaMemcpy(d, h, 4, cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
          "DeviceToHost from host memory is refused");
    CHECK(cudaMemcpy(d, h, 257 * sizeof(float), cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the allocation's end is refused");

    /* cuBLAS argument rules */
    cublasHandle_t blas;
    cublasCreate(&blas);
    const float one = 1, zero = 0;
    CHECK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 8, 8, 8, &one, d, CUDA_R_32F, 4, e, CUDA_R_32F, 8,
                       &zero, d, CUDA_R_32F, 8, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE,
          "lda < m is refused");
    CHECK(cublasGemmEx(blas, CUBLAS_OP_T, CUBLAS_OP_N, 8, 8, 4, &one, d, CUDA_R_32F, 2, e, CUDA_R_32F, 4,
                       &zero, d, CUDA_R_32F, 8, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE,
          "lda < k with transa is refused");
    CHECK(faults("overrun the device allocation",
                 [&] {
                     cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, 16, 32, 16, &one, d, CUDA_R_32F, 16, e,
                                  CUDA_R_32F, 16, &zero, d, CUDA_R_32F, 16, CUBLAS_COMPUTE_32F,
                                  CUBLAS_GEMM_DEFAULT);
                 }),
          "an operand larger than its allocation faults");
    cublasDestroy(blas);

    /* streams: an unordered use sees stale data; an event orders it */
    cudaStream_t a, b;
    cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
    cudaMemset(d, 0, 256 * sizeof(float));
    cudaMemset(e, 0, 256 * sizeof(float));
    cudaDeviceSynchronize();
    fill_kernel<<<1, 256, 0, a>>>(e, 256, 2.0f);
    add_kernel<<<1, 256, 0, b>>>(d, e, 256); /* not ordered after the fill */
    cudaStreamSynchronize(b);
    cudaStreamSynchronize(a);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 0.0f, "a read on another stream without an event sees the old data (got %g)", h[0]);
    cudaEvent_t ev;
    cudaEventCreate(&ev);
    fill_kernel<<<1, 256, 0, a>>>(e, 256, 3.0f);
    cudaEventRecord(ev, a);
    cudaStreamWaitEvent(b, ev, 0);
    add_kernel<<<1, 256, 0, b>>>(d, e, 256);
    cudaStreamSynchronize(b);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[0] == 3.0f, "with an event it sees the new data (got %g)", h[0]);
    CHECK(faults("while a queued operation",
                 [&] {
                     fill_kernel<<<1, 256, 0, a>>>(e, 256, 1.0f);
                     cudaFree(e);
                 }),
          "cudaFree of memory a queued kernel uses faults");

    /* graphs: capture records, launches replay */
    cudaMemset(d, 0, 256 * sizeof(float));
    cudaMemset(e, 0, 256 * sizeof(float));
    cudaDeviceSynchronize();
    fill_kernel<<<1, 256>>>(e, 256, 1.0f);
    cudaDeviceSynchronize();
    cudaGraph_t g;
    cudaGraphExec_t x;
    CHECK(cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal) == cudaSuccess, "capture begins");
    add_kernel<<<1, 256, 0, a>>>(d, e, 256);
    CHECK(cudaStreamSynchronize(a) == cudaErrorStreamCaptureUnsupported, "syncing a capturing stream fails");
    CHECK(cudaStreamEndCapture(a, &g) == cudaErrorStreamCaptureInvalidated, "and invalidates the capture");
    cudaStreamBeginCapture(a, cudaStreamCaptureModeThreadLocal);
    add_kernel<<<1, 256, 0, a>>>(d, e, 256);
    CHECK(cudaStreamEndCapture(a, &g) == cudaSuccess && cudaGraphInstantiate(&x, g, 0) == cudaSuccess,
          "a graph is captured");
    cudaGraphLaunch(x, a);
    cudaGraphLaunch(x, a);
    cudaStreamSynchronize(a);
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    CHECK(h[5] == 2.0f, "two launches of the graph add twice (got %g)", h[5]);
    cudaGraphExecDestroy(x);
    cudaGraphDestroy(g);

    /* device faults */
    CHECK(faults("exited", [&] { half_warp_shuffle_kernel<<<1, 32>>>(d); }),
          "a shuffle naming exited lanes faults");
    CHECK(faults("__syncthreads", [&] { divergent_barrier_kernel<<<1, 64>>>(d); }),
          "a barrier not reached by the whole block faults");
    CHECK(faults("guard page", [&] { fill_kernel<<<2, 256>>>(d, 512, 1.0f); }),
          "a write past the allocation's end faults");
    CHECK(faults("is not device memory", [&] { fill_kernel<<<1, 32>>>(h, 32, 1.0f); }),
          "a host pointer as a kernel argument faults");
    CHECK(faults("device memory from host code", [&] { h[0] = d[0]; }),
          "host code reading device memory faults");
    {
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            unsetenv("CUDA_SIM_LEAKS");
            int fd = open("/dev/null", O_WRONLY);
            dup2(fd, 2);
            float *leak;
            cudaMalloc(&leak, 4);
            exit(0);
        }
        int st = 0;
        waitpid(pid, &st, 0);
        CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 3, "a leaked allocation makes the exit status 3");
    }

    /* a missing barrier: the result depends on the thread order */
    missing_barrier_kernel<<<1, 64>>>(d);
    cudaMemcpy(h, d, 64 * sizeof(float), cudaMemcpyDeviceToHost);
    bool right = true;
    for (int i = 0; i < 64; i++)
        right = right && h[i] == (float)(63 - i);
    CHECK(!right, "a missing barrier gives wrong results (order %s)",
          getenv("CUDA_SIM_ORDER") ? getenv("CUDA_SIM_ORDER") : "forward");

    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
    cudaEventDestroy(ev);
    cudaFree(d);
    cudaFree(e);
    printf("%s\n", failures ? "FAILED" : "all checks fired");
    return failures ? 1 : 0;
}
