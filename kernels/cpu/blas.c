/* blas.c: make OpenBLAS run the best kernel the CPU supports (see kernels/blas.h).
 *
 * Why a re-exec: OpenBLAS chooses its kernel table in a constructor that runs when the
 * library loads, reading OPENBLAS_CORETYPE then and never again, and it has no call to
 * choose again later. The alternatives were a lazy dlopen of OpenBLAS (every program and test
 * that links it would need a loader shim, and a second copy loaded by a dependency would
 * still pick the slow kernel) or shipping our own GEMM. execv() of /proc/self/exe keeps the
 * PID, the arguments and open descriptors, happens before any thread or socket exists, and
 * costs one more program load (about 3 ms here); it only happens on CPUs OpenBLAS does not
 * know, and never when the user set OPENBLAS_CORETYPE. */
#define _GNU_SOURCE
#include "../blas.h"

#include <cblas.h>
#include <cpuid.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "../../common/cv_log.h"

#define REEXEC_ENV   "CDCVEC_BLAS_REEXEC" /* set across the re-exec: OpenBLAS's own choice */
#define SIMULATE_ENV "CDCVEC_BLAS_SIMULATE_UNKNOWN_CPU"

static uint64_t xgetbv0(void) {
    uint32_t lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (uint64_t)hi << 32 | lo;
}

void cv_cpu_features_get(cv_cpu_features *f) {
    memset(f, 0, sizeof *f);
    unsigned a, b, c, d, max;
    if (!__get_cpuid(0, &max, &b, &c, &d)) return;
    f->amd = b == 0x68747541 && d == 0x69746e65 && c == 0x444d4163; /* "AuthenticAMD" */
    __cpuid(1, a, b, c, d);
    int osxsave = c >> 27 & 1, avx = c >> 28 & 1, fma = c >> 12 & 1;
    if (!osxsave || !avx || max < 7) return;
    uint64_t xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return; /* the OS does not save YMM state */
    unsigned b7, c7, d7, a7;
    __cpuid_count(7, 0, a7, b7, c7, d7);
    f->avx2_fma = (b7 >> 5 & 1) && fma;
    int os512 = (xcr0 & 0xE0) == 0xE0; /* opmask, ZMM_Hi256, Hi16_ZMM */
    f->avx512 = os512 && f->avx2_fma && (b7 >> 16 & 1) /* F */ && (b7 >> 17 & 1) /* DQ */ &&
                (b7 >> 28 & 1) /* CD */ && (b7 >> 30 & 1) /* BW */ && (b7 >> 31 & 1) /* VL */;
    if (f->avx512 && a7 >= 1) {
        unsigned a1, b1, c1, d1;
        __cpuid_count(7, 1, a1, b1, c1, d1);
        f->avx512_bf16 = a1 >> 5 & 1;
    }
}

const char *cv_blas_best_core(const cv_cpu_features *f) {
    if (f->avx512 && f->avx512_bf16) return "Cooperlake";
    if (f->avx512) return "SkylakeX";
    if (f->avx2_fma) return f->amd ? "Zen" : "Haswell";
    return NULL;
}

int cv_blas_core_rank(const char *core) {
    static const struct {
        const char *name;
        int rank;
    } ranks[] = {{"Cooperlake", 3}, {"SapphireRapids", 3}, {"SkylakeX", 2}, {"Haswell", 1}, {"Zen", 1}};
    for (size_t i = 0; core && i < sizeof ranks / sizeof ranks[0]; i++)
        if (strcasecmp(core, ranks[i].name) == 0) return ranks[i].rank;
    return 0;
}

const char *cv_blas_upgrade(const char *current, int user_set, const char *best) {
    if (user_set || !best) return NULL;
    return cv_blas_core_rank(current) < cv_blas_core_rank(best) ? best : NULL;
}

static struct {
    int known;
    char kernel[32], chosen_by[16], openblas_default[32], best[32], library[64];
} info;

static void copy(char *dst, size_t n, const char *src) { snprintf(dst, n, "%s", src ? src : "-"); }

static void info_fill(const char *chosen_by, const char *openblas_default) {
    cv_cpu_features f;
    cv_cpu_features_get(&f);
    const char *best = cv_blas_best_core(&f);
    copy(info.kernel, sizeof info.kernel, openblas_get_corename());
    copy(info.chosen_by, sizeof info.chosen_by, chosen_by);
    copy(info.openblas_default, sizeof info.openblas_default, openblas_default);
    copy(info.best, sizeof info.best, best ? best : "none");
    const char *cfg = openblas_get_config(); /* "OpenBLAS 0.3.21 NO_LAPACKE DYNAMIC_ARCH ..." */
    int n = 0, words = 0;
    while (cfg[n] && !(cfg[n] == ' ' && ++words == 2))
        n++;
    snprintf(info.library, sizeof info.library, "%.*s", n, cfg);
    info.known = 1;
}

void cv_blas_ensure_best(char **argv) {
    const char *marker = getenv(REEXEC_ENV);
    if (marker) { /* the new image: OPENBLAS_CORETYPE is ours; give the user's environment back */
        char def[32];
        copy(def, sizeof def, marker);
        unsetenv(REEXEC_ENV);
        unsetenv("OPENBLAS_CORETYPE");
        info_fill("cdcvec", def);
        if (cv_blas_core_rank(info.kernel) < cv_blas_core_rank(info.best))
            cv_warn("event=blas_kernel kernel=%s cpu_best=%s error=\"OpenBLAS did not take "
                    "OPENBLAS_CORETYPE=%s\"",
                    info.kernel, info.best, info.best);
        else
            cv_debug("event=blas_kernel kernel=%s chosen_by=cdcvec openblas_default=%s cpu_best=%s",
                     info.kernel, info.openblas_default, info.best);
        return;
    }
    int simulate = getenv(SIMULATE_ENV) && strcmp(getenv(SIMULATE_ENV), "1") == 0;
    int user_set = getenv("OPENBLAS_CORETYPE") && *getenv("OPENBLAS_CORETYPE") && !simulate;
    const char *current = openblas_get_corename();
    info_fill(user_set ? "user" : "openblas", user_set ? "-" : current);
    const char *to = cv_blas_upgrade(current, user_set, strcmp(info.best, "none") ? info.best : NULL);
    if (user_set && cv_blas_core_rank(current) < cv_blas_core_rank(info.best))
        cv_warn("event=blas_kernel kernel=%s chosen_by=user cpu_best=%s note=\"OPENBLAS_CORETYPE is set; "
                "this CPU "
                "supports a faster kernel\"",
                current, info.best);
    if (!to) return;
    if (!strstr(openblas_get_config(), "DYNAMIC_ARCH")) {
        cv_warn("event=blas_kernel kernel=%s cpu_best=%s error=\"this OpenBLAS has one kernel built in (no "
                "DYNAMIC_ARCH)\" fix=\"install a DYNAMIC_ARCH OpenBLAS (Debian's libopenblas0-pthread)\"",
                current, to);
        return;
    }
    setenv(REEXEC_ENV, current, 1);
    setenv("OPENBLAS_CORETYPE", to, 1);
    unsetenv(SIMULATE_ENV);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* still here: no /proc, or the binary is gone; carry on with the slow kernel, loudly */
    unsetenv(REEXEC_ENV);
    unsetenv("OPENBLAS_CORETYPE");
    cv_warn("event=blas_kernel kernel=%s cpu_best=%s error=\"cannot re-execute /proc/self/exe to switch "
            "kernels\" fix=\"set OPENBLAS_CORETYPE=%s\"",
            current, to, to);
}

void cv_blas_info_get(cv_blas_info *out) {
    if (!info.known) {
        int user_set = getenv("OPENBLAS_CORETYPE") && *getenv("OPENBLAS_CORETYPE");
        info_fill(user_set ? "user" : "openblas", user_set ? "-" : openblas_get_corename());
    }
    *out = (cv_blas_info){info.kernel, info.chosen_by, info.openblas_default, info.best, info.library};
}
