/* blas.h: which BLAS kernel the CPU path runs on, and making it the best the CPU supports.
 *
 * OpenBLAS (a DYNAMIC_ARCH build, as Debian's) picks its kernels once, when the library is
 * loaded, from the CPU *model*; a model it does not know gets the generic Prescott (SSE3)
 * kernels, 4-5x slower. It reads OPENBLAS_CORETYPE only at that moment and has no call to
 * switch later. cv_blas_ensure_best() compares the core it chose with what CPUID says the
 * CPU can do (features, not model numbers) and, when OpenBLAS chose less, re-executes the
 * program with OPENBLAS_CORETYPE set. A user's own OPENBLAS_CORETYPE always wins. */
#ifndef CV_BLAS_H
#define CV_BLAS_H

#ifdef __cplusplus
extern "C" {
#endif

/* What CPUID and the OS allow (XGETBV: the OS saves the AVX / AVX-512 state). */
typedef struct cv_cpu_features {
    int avx2_fma;    /* AVX2 and FMA3 */
    int avx512;      /* AVX-512 F, CD, BW, DQ, VL (what OpenBLAS's SkylakeX kernels use) */
    int avx512_bf16; /* AVX-512 BF16 */
    int amd;         /* vendor AuthenticAMD */
} cv_cpu_features;

void cv_cpu_features_get(cv_cpu_features *f);

/* The OpenBLAS core name best for these features ("Cooperlake", "SkylakeX", "Haswell",
 * "Zen"), or NULL when no vector kernel applies (no AVX2+FMA). */
const char *cv_blas_best_core(const cv_cpu_features *f);

/* Rank of an OpenBLAS core name: 3 AVX-512 BF16, 2 AVX-512, 1 AVX2+FMA, 0 anything else
 * (generic or older kernels). Case-insensitive. */
int cv_blas_core_rank(const char *core);

/* The decision alone (no side effects), for tests: given the core OpenBLAS runs, whether the
 * user set OPENBLAS_CORETYPE, and the CPU's best core, the core to switch to, or NULL to keep
 * the current one. */
const char *cv_blas_upgrade(const char *current, int user_set, const char *best);

/* Call first thing in main(), before any thread starts: when OpenBLAS runs a kernel below
 * the CPU's best and the user did not set OPENBLAS_CORETYPE, sets it and execv()s
 * /proc/self/exe with argv (same PID, descriptors and arguments). Returns when no switch is
 * needed, after the switch (in the new image), or when the switch is impossible (logged).
 * Test hook: CDCVEC_BLAS_SIMULATE_UNKNOWN_CPU=1 makes an OPENBLAS_CORETYPE in the environment
 * stand for OpenBLAS's own choice on a CPU it does not know, instead of the user's choice:
 * OpenBLAS's choice cannot be forced any other way without a CPU it does not know. */
void cv_blas_ensure_best(char **argv);

/* What runs now, for logs and metrics (static strings, never NULL): kernel (OpenBLAS's core
 * name), chosen_by ("openblas", "cdcvec" or "user"), openblas_default (what OpenBLAS chose
 * by itself, when known, else "-"), best (the CPU's best core, or "none"), library
 * (e.g. "OpenBLAS 0.3.21"). */
typedef struct cv_blas_info {
    const char *kernel, *chosen_by, *openblas_default, *best, *library;
} cv_blas_info;
void cv_blas_info_get(cv_blas_info *out);

#ifdef __cplusplus
}
#endif

#endif
