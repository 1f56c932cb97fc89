/* cuda_sim.h: the CPU execution layer's device side: CUDA builtins, fibers, launches.
 * Included by the stand-in cuda_runtime.h; see tests/cuda_sim/README.md. */
#ifndef CUDA_SIM_H
#define CUDA_SIM_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <memory>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

/* ---- qualifiers ---------------------------------------------------------------------- */
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__    __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
/* Blocks run one after another on one OS thread, so a function-local static is exactly one
 * block's shared memory. (extern __shared__ arrays are rewritten by prep.cmake.) */
#define __shared__   static
#define __constant__ static

struct uint3 {
    unsigned x, y, z;
};
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
    constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
struct int2 {
    int x, y;
};
struct int4 {
    int x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }

typedef int cudaError_t_sim_dummy;

namespace cusim {

/* ---- fibers: one per CUDA thread of the running block ---------------------------------- */
struct Fiber;
extern Fiber *cur;      /* the running CUDA thread */
extern uint3 cur_tid;   /* its threadIdx */
extern uint3 block_idx; /* the running block */
extern dim3 block_dim, grid_dim;
extern void *dyn_smem; /* this launch's dynamic shared memory */
extern size_t dyn_smem_bytes;
extern const char *cur_kernel;

/* Fatal device-side fault: prints where (kernel, block, thread) and aborts. */
[[noreturn]] void fault(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

void syncthreads(const char *file, int line);
uint64_t warp_op(int kind, unsigned mask, uint64_t v, int arg, int width, const char *file, int line);
enum { W_SHFL, W_SHFL_XOR, W_SHFL_DOWN, W_SHFL_UP, W_BALLOT, W_SYNC, W_ANY, W_ALL };

/* ---- memory ---------------------------------------------------------------------------- */
/* Device allocation holding [p, p+bytes) or NULL. */
bool is_device(const void *p, size_t bytes);
bool is_pinned(const void *p, size_t bytes);

/* ---- launches -------------------------------------------------------------------------- */
struct LaunchCfg {
    dim3 grid, block;
    size_t smem;
    void *stream;
    LaunchCfg(dim3 g, dim3 b, size_t s = 0, void *st = nullptr) : grid(g), block(b), smem(s), stream(st) {}
};

/* Runs (or queues on cfg.stream) body once per thread of every block; ptrs are the kernel's
 * pointer arguments, checked to be device memory. Returns false (and sets the last error)
 * when the configuration breaks an sm_90 limit. */
void launch(const void *fn, const char *name, const char *file, int line, const LaunchCfg &cfg,
            std::vector<const void *> ptrs, std::function<void()> body);

template <class T> static inline void collect_ptr(std::vector<const void *> &v, const T &a) {
    if constexpr (std::is_pointer<T>::value) v.push_back((const void *)a);
}

template <class... P> struct Launcher {
    void (*fn)(P...);
    const char *name, *file;
    int line;
    LaunchCfg cfg;
    template <class... A> void operator()(A &&...args) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
        /* arguments converted to the parameter types, as the CUDA runtime does */
        auto params = std::make_shared<std::tuple<std::decay_t<P>...>>(std::forward<A>(args)...);
        std::vector<const void *> ptrs;
        std::apply([&](const auto &...p) { (collect_ptr(ptrs, p), ...); }, *params);
        auto f = fn;
        launch((const void *)fn, name, file, line, cfg, std::move(ptrs),
               [f, params]() { std::apply([f](auto... p) { f(p...); }, *params); });
    }
};
template <class... P>
static inline Launcher<P...> make_launch(void (*fn)(P...), const char *name, const char *file, int line,
                                         LaunchCfg cfg) {
    return Launcher<P...>{fn, name, file, line, cfg};
}

template <class T> static inline uint64_t bits(T v) {
    static_assert(sizeof(T) <= 8, "shuffle of a value over 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof v);
    return b;
}
template <class T> static inline T unbits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof v);
    return v;
}

} /* namespace cusim */

/* kernel<<<g, b, s, st>>>(args) is rewritten by prep.cmake to CUDA_SIM_LAUNCH(kernel, g, b, s, st)(args) */
#define CUDA_SIM_LAUNCH(k, ...)                                                                              \
    ::cusim::make_launch(k, #k, __FILE__, __LINE__, ::cusim::LaunchCfg(__VA_ARGS__))

/* ---- builtin variables ----------------------------------------------------------------- */
#define threadIdx (::cusim::cur_tid)
#define blockIdx  (::cusim::block_idx)
#define blockDim  (::cusim::block_dim)
#define gridDim   (::cusim::grid_dim)
static constexpr int warpSize = 32;

#define __syncthreads() ::cusim::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...)                                                                                      \
    ((void)::cusim::warp_op(::cusim::W_SYNC, (__VA_ARGS__ + 0) ? (__VA_ARGS__ + 0) : 0xffffffffu, 0, 0, 32,  \
                            __FILE__, __LINE__))
#define __shfl_sync(m, v, l, ...) ::cusim::shfl_(::cusim::W_SHFL, m, v, l, __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_xor_sync(m, v, l, ...)                                                                        \
    ::cusim::shfl_(::cusim::W_SHFL_XOR, m, v, l, __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_down_sync(m, v, l, ...)                                                                       \
    ::cusim::shfl_(::cusim::W_SHFL_DOWN, m, v, l, __FILE__, __LINE__, ##__VA_ARGS__)
#define __shfl_up_sync(m, v, l, ...)                                                                         \
    ::cusim::shfl_(::cusim::W_SHFL_UP, m, v, l, __FILE__, __LINE__, ##__VA_ARGS__)
#define __ballot_sync(m, p)                                                                                  \
    ((unsigned)::cusim::warp_op(::cusim::W_BALLOT, m, (p) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __any_sync(m, p) ((int)::cusim::warp_op(::cusim::W_ANY, m, (p) ? 1 : 0, 0, 32, __FILE__, __LINE__))
#define __all_sync(m, p) ((int)::cusim::warp_op(::cusim::W_ALL, m, (p) ? 1 : 0, 0, 32, __FILE__, __LINE__))

namespace cusim {
template <class T>
static inline T shfl_(int kind, unsigned mask, T v, int arg, const char *file, int line, int width = 32) {
    return unbits<T>(warp_op(kind, mask, bits(v), arg, width, file, line));
}
} /* namespace cusim */

/* ---- device math ----------------------------------------------------------------------- */
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
namespace cusim {
static inline float expf_(float x) { return expf(x); }
static inline float logf_(float x) { return logf(x); }
} /* namespace cusim */
#define __expf ::cusim::expf_ /* glibc declares __expf and __logf itself */
#define __logf ::cusim::logf_
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __saturatef(float x) { return x < 0 ? 0 : x > 1 ? 1 : x; }
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline unsigned long min(unsigned long a, unsigned long b) { return a < b ? a : b; }
static inline unsigned long max(unsigned long a, unsigned long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
template <class T> static inline T __ldg(const T *p) { return *p; }

#endif
