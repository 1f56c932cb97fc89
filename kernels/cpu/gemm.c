/* gemm.c: y = act(x w^T + b) for weights packed once at load (layout in gemm_impl.h).
 *
 * Why not sgemm: OpenBLAS packs its operands on every call, and for the weights that is
 * the whole matrix, every time. With the few rows of a single text (M ~ 10-60) that packing
 * cost more than the multiplication (half of the batch-1 time). Packing the weights once
 * leaves only x to pack per call (M x K floats, tiny next to M x N x K flops).
 *
 * Loops: row blocks of MC rows (x block in L2), k blocks of KC (a panel pair's block in L1/L2),
 * then the kernel set's block() over panels and MR-row slivers. The kernel set is picked
 * once from CPUID (AVX-512F, else AVX2+FMA, else scalar) and can be forced for tests. */
#define _DEFAULT_SOURCE /* syscall */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../../common/cv_log.h"
#include "cpu_ops.h"
#include "gemm_impl.h"
#include "vmath.h"

#define MC 144 /* rows of x per block: a multiple of every set's mr */
#define KC CV_GEMM_KC

/* ---- scalar kernel set: the reference for the SIMD ones ------------------------------- */

#define SMR 4

static void scalar_block(const float *xp, int mc, int kc, const float *wp, size_t pstride, int ncols,
                         float *y, size_t ldy, const float *bias, int first, int gelu, const float *after) {
    for (int c = 0; c < ncols; c += CV_GEMM_NR) {
        const int n = ncols - c < CV_GEMM_NR ? ncols - c : CV_GEMM_NR;
        const float *w = wp + (size_t)(c / CV_GEMM_NR) * pstride;
        for (int r0 = 0; r0 < mc; r0 += SMR) {
            const int mr = mc - r0 < SMR ? mc - r0 : SMR;
            const float *xs = xp + (size_t)r0 * KC;
            float acc[SMR][CV_GEMM_NR];
            for (int r = 0; r < mr; r++)
                for (int j = 0; j < CV_GEMM_NR; j++)
                    acc[r][j] = first ? (bias && j < n ? bias[c + j] : 0.0f)
                                      : (j < n ? y[(size_t)(r0 + r) * ldy + c + j] : 0.0f);
            for (int k = 0; k < kc; k++)
                for (int r = 0; r < mr; r++) {
                    const float a = xs[(size_t)r * KC + k];
                    for (int j = 0; j < CV_GEMM_NR; j++)
                        acc[r][j] += a * w[(size_t)k * CV_GEMM_NR + j];
                }
            for (int r = 0; r < mr; r++)
                for (int j = 0; j < n; j++)
                    y[(size_t)(r0 + r) * ldy + c + j] = gelu ? cv_gelu_fast(acc[r][j]) : acc[r][j];
        }
    }
}

const cv_gemm_set cv_gemm_scalar = {"scalar", SMR, scalar_block};

/* ---- choice of kernel set ---------------------------------------------------------------- */

static int cpu_has(const char *isa) {
    if (strcmp(isa, "scalar") == 0) return 1;
#if CV_GEMM_X86
    __builtin_cpu_init();
    if (strcmp(isa, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (strcmp(isa, "avx512") == 0) return __builtin_cpu_supports("avx512f");
#endif
    return 0;
}

static const cv_gemm_set *sets[] = {
#if CV_GEMM_X86
    &cv_gemm_avx512, &cv_gemm_avx2,
#endif
    &cv_gemm_scalar};

static const cv_gemm_set *active;

static const cv_gemm_set *current(void) {
    const cv_gemm_set *s = __atomic_load_n(&active, __ATOMIC_ACQUIRE);
    if (s) return s;
    /* the user's choice (CDCVEC_GEMM_ISA=scalar|avx2|avx512), when this CPU has it */
    const char *want = getenv("CDCVEC_GEMM_ISA");
    for (size_t i = 0; want && *want && i < sizeof sets / sizeof sets[0]; i++)
        if (strcmp(sets[i]->name, want) == 0 && cpu_has(want)) s = sets[i];
    if (want && *want && !s)
        cv_warn("event=gemm_isa_ignored requested=%s error=\"unknown, or this CPU lacks it\" "
                "accepted=\"scalar, avx2, "
                "avx512\"",
                want);
    for (size_t i = 0; !s && i < sizeof sets / sizeof sets[0]; i++)
        if (cpu_has(sets[i]->name)) {
            s = sets[i];
            break;
        }
    __atomic_store_n(&active, s, __ATOMIC_RELEASE);
    return s;
}

const char *cv_cpu_gemm_isa(void) { return current()->name; }

cv_err cv_cpu_gemm_use(const char *isa) {
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        if (strcmp(sets[i]->name, isa) == 0) {
            if (!cpu_has(isa)) return CV_ERR_UNSUPPORTED;
            __atomic_store_n(&active, sets[i], __ATOMIC_RELEASE);
            return CV_OK;
        }
    return CV_ERR_ARG;
}

/* ---- per-thread scratch ------------------------------------------------------------------ */

/* Not static _Thread_local arrays: glibc gives every thread of the process (nng's, libpq's)
 * the whole static TLS block, zeroed, inside its stack. */
static pthread_key_t scratch_key;
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;
static void scratch_key_init(void) { CV_ASSERT(pthread_key_create(&scratch_key, free) == 0); }

void *cv_gemm_scratch(size_t bytes) {
    pthread_once(&scratch_once, scratch_key_init);
    size_t *p = pthread_getspecific(scratch_key); /* p[0]: capacity; data from p + 64 bytes */
    if (!p || p[0] < bytes) {
        free(p);
        p = NULL;
        CV_ASSERT(posix_memalign((void **)&p, 64, bytes + 64) == 0);
        p[0] = bytes;
        CV_ASSERT(pthread_setspecific(scratch_key, p) == 0);
    }
    return (char *)p + 64;
}

/* ---- packing and loops ------------------------------------------------------------------- */

size_t cv_cpu_pack_floats(int N, int K) {
    return (size_t)((N + CV_GEMM_NR - 1) / CV_GEMM_NR) * CV_GEMM_NR * (size_t)K;
}

void cv_cpu_pack_linear(const float *w, int N, int K, float *wp) {
    for (int j = 0; j < (N + CV_GEMM_NR - 1) / CV_GEMM_NR; j++) {
        float *p = wp + (size_t)j * K * CV_GEMM_NR;
        for (int c = 0; c < CV_GEMM_NR; c++) {
            const int n = j * CV_GEMM_NR + c;
            for (int k = 0; k < K; k++)
                p[(size_t)k * CV_GEMM_NR + c] = n < N ? w[(size_t)n * K + k] : 0.0f;
        }
    }
}

/* Rows [0, mc) x columns [0, kc) of x (row stride ldx) into rows of stride KC. */
static void pack_x(const float *x, size_t ldx, int mc, int kc, float *xp) {
    for (int r = 0; r < mc; r++)
        memcpy(xp + (size_t)r * KC, x + (size_t)r * ldx, sizeof(float) * (size_t)kc);
}

void cv_cpu_linear_packed(const float *x, const float *wp, const float *bias, int M, int N, int K, cv_act act,
                          float *y, int n0, int n1) {
    if (M <= 0 || n1 <= n0) return;
    CV_ASSERT(n0 % CV_GEMM_NR == 0 && n1 <= N);
    float *xp = K != KC ? cv_gemm_scratch(sizeof(float) * MC * KC) : NULL;
    const cv_gemm_set *s = current();
    const size_t pstride = (size_t)K * CV_GEMM_NR;
    for (int m0 = 0; m0 < M; m0 += MC) {
        const int mc = M - m0 < MC ? M - m0 : MC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? K - k0 : KC;
            /* rows of x already have stride KC when K == KC: no copy */
            const float *xb = x + (size_t)m0 * K;
            if (K != KC) {
                pack_x(xb + k0, (size_t)K, mc, kc, xp);
                xb = xp;
            }
            /* the first pair of the next k block, or of the next row block */
            const float *w = wp + (size_t)(n0 / CV_GEMM_NR) * pstride,
                        *after = k0 + kc < K   ? w + (size_t)(k0 + kc) * CV_GEMM_NR
                                 : m0 + mc < M ? w
                                               : NULL;
            s->block(xb, mc, kc, w + (size_t)k0 * CV_GEMM_NR, pstride, n1 - n0, y + (size_t)m0 * N + n0,
                     (size_t)N, bias ? bias + n0 : NULL, k0 == 0, act == CV_ACT_GELU && k0 + kc == K, after);
        }
    }
}

/* ---- bf16 (kernels in gemm_amx.c and gemm_bf16.c) ----------------------------------------- */

#if CV_GEMM_X86
#include <cpuid.h>
#if defined(__linux__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

void cv_cpu_linear_bf16_avx512(const float *x, const uint16_t *wp, const float *bias, int M, int N, int K,
                               cv_act act, float *y, int n0, int n1);
void cv_cpu_linear_amx(const float *x, const uint16_t *wp, const float *bias, int M, int N, int K, cv_act act,
                       float *y, int n0, int n1);

/* AMX-BF16 and AMX-TILE in CPUID, tile state enabled by the OS (XCR0 bits 17, 18), and the
 * process allowed to use tile data (Linux: arch_prctl ARCH_REQ_XCOMP_PERM, once). */
static int amx_probe(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 22)) || !(d & (1u << 24))) return 0;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) return 0; /* OSXSAVE */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17)) return 0;
#if defined(__linux__)
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18 /* XFEATURE_XTILEDATA */) == 0;
#else
    return 0;
#endif
}
#endif

static int bf16_amx = -1; /* -1 not probed yet; 0 AVX512-BF16 kernel; 1 AMX */

int cv_cpu_bf16_supported(void) {
#if CV_GEMM_X86
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512bf16");
#else
    return 0;
#endif
}

const char *cv_cpu_bf16_kernel(void) {
    int v = __atomic_load_n(&bf16_amx, __ATOMIC_ACQUIRE);
    if (v < 0) {
#if CV_GEMM_X86
        v = cv_cpu_bf16_supported() && amx_probe();
#else
        v = 0;
#endif
        __atomic_store_n(&bf16_amx, v, __ATOMIC_RELEASE);
    }
    return v ? "amx" : "avx512bf16";
}

cv_err cv_cpu_bf16_use(const char *kernel) {
    if (strcmp(kernel, "avx512bf16") == 0) {
        if (!cv_cpu_bf16_supported()) return CV_ERR_UNSUPPORTED;
        cv_cpu_bf16_kernel(); /* the AMX permission, once */
        __atomic_store_n(&bf16_amx, 0, __ATOMIC_RELEASE);
        return CV_OK;
    }
    if (strcmp(kernel, "amx") == 0) {
        __atomic_store_n(&bf16_amx, -1, __ATOMIC_RELEASE);
        return strcmp(cv_cpu_bf16_kernel(), "amx") == 0 ? CV_OK : CV_ERR_UNSUPPORTED;
    }
    return CV_ERR_ARG;
}

uint16_t cv_cpu_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); /* NaN stays NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                          /* round to nearest even */
    return (uint16_t)(u >> 16);
}

float cv_cpu_from_bf16(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* k pairs per panel: padded to 16, the rows of an AMX B tile */
static int bf16_pairs(int K) { return ((K + 1) / 2 + 15) & ~15; }

size_t cv_cpu_pack_bf16_bytes(int N, int K) {
    return (size_t)((N + CV_GEMM_NR - 1) / CV_GEMM_NR) * CV_GEMM_NR * (size_t)bf16_pairs(K) * 2 *
           sizeof(uint16_t);
}

void cv_cpu_pack_linear_bf16(const float *w, int N, int K, uint16_t *wp) {
    const int Kp = bf16_pairs(K);
    for (int j = 0; j < (N + CV_GEMM_NR - 1) / CV_GEMM_NR; j++) {
        uint16_t *p = wp + (size_t)j * Kp * CV_GEMM_NR * 2;
        for (int kk = 0; kk < Kp; kk++)
            for (int c = 0; c < CV_GEMM_NR; c++)
                for (int t = 0; t < 2; t++) {
                    const int n = j * CV_GEMM_NR + c, k = 2 * kk + t;
                    p[((size_t)kk * CV_GEMM_NR + c) * 2 + t] =
                        n < N && k < K ? cv_cpu_to_bf16(w[(size_t)n * K + k]) : 0;
                }
    }
}

void cv_cpu_linear_bf16(const float *x, const uint16_t *wp, const float *bias, int M, int N, int K,
                        cv_act act, float *y, int n0, int n1) {
#if CV_GEMM_X86
    CV_ASSERT(cv_cpu_bf16_supported());
    if (strcmp(cv_cpu_bf16_kernel(), "amx") == 0)
        cv_cpu_linear_amx(x, wp, bias, M, N, K, act, y, n0, n1);
    else
        cv_cpu_linear_bf16_avx512(x, wp, bias, M, N, K, act, y, n0, n1);
#else
    CV_ASSERT(!"cv_cpu_linear_bf16 without AVX512-BF16");
#endif
}
