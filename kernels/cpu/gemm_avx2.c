/* gemm_avx2.c: the AVX2+FMA kernel set of the packed GEMM (gemm_impl.h). Built with -mavx2
 * -mfma; only called after gemm.c has seen both on the CPU. A tile is up to 6 rows x 1 panel
 * (12 ymm accumulators). */
#include "gemm_impl.h"

#if CV_GEMM_X86
#include <immintrin.h>

#include "vmath.h"

#define MR 6

static void gelu_tile(float *y, size_t ldy, int mr, int ncols) {
    for (int r = 0; r < mr; r++) {
        float *row = y + (size_t)r * ldy;
#pragma omp simd
        for (int c = 0; c < ncols; c++)
            row[c] = cv_gelu_fast(row[c]);
    }
}

/* Full 16-column panel, or the last one: copied through a stack tile to stay in bounds. */
static inline __attribute__((always_inline)) void tile(const int mr, const float *xp, int kc, const float *w,
                                                       float *y, size_t ldy, const float *bias, int first) {
    __m256 c0[MR], c1[MR];
    if (first) {
        const __m256 b0 = bias ? _mm256_loadu_ps(bias) : _mm256_setzero_ps();
        const __m256 b1 = bias ? _mm256_loadu_ps(bias + 8) : _mm256_setzero_ps();
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            c0[r] = b0;
            c1[r] = b1;
        }
    } else {
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            c0[r] = _mm256_loadu_ps(y + (size_t)r * ldy);
            c1[r] = _mm256_loadu_ps(y + (size_t)r * ldy + 8);
        }
    }
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        const __m256 b0 = _mm256_load_ps(w + (size_t)k * 16), b1 = _mm256_load_ps(w + (size_t)k * 16 + 8);
        const float *a = xp + k;
#pragma GCC unroll 6
        for (int r = 0; r < mr; r++) {
            const __m256 av = _mm256_broadcast_ss(a + r * CV_GEMM_KC);
            c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
        }
    }
#pragma GCC unroll 6
    for (int r = 0; r < mr; r++) {
        _mm256_storeu_ps(y + (size_t)r * ldy, c0[r]);
        _mm256_storeu_ps(y + (size_t)r * ldy + 8, c1[r]);
    }
}

static void block(const float *xp, int mc, int kc, const float *wp, size_t pstride, int ncols, float *y,
                  size_t ldy, const float *bias, int first, int gelu, const float *after) {
    float tmp[MR * 16] __attribute__((aligned(32))), tbias[16];
    for (int c = 0; c < ncols; c += 16) {
        const int n = ncols - c < 16 ? ncols - c : 16;
        const float *w = wp + (size_t)(c / 16) * pstride;
        for (int r0 = 0; r0 < mc; r0 += MR) {
            const int mr = mc - r0 < MR ? mc - r0 : MR;
            const float *xs = xp + (size_t)r0 * CV_GEMM_KC, *b = bias ? bias + c : NULL;
            float *yt = y + (size_t)r0 * ldy + c, *dst = yt;
            size_t ld = ldy;
            if (n < 16) { /* partial panel: work on a full-width copy */
                for (int r = 0; r < mr; r++)
                    for (int j = 0; j < 16; j++)
                        tmp[r * 16 + j] = !first && j < n ? yt[(size_t)r * ldy + j] : 0.0f;
                if (b) {
                    for (int j = 0; j < 16; j++)
                        tbias[j] = j < n ? b[j] : 0.0f;
                    b = tbias;
                }
                dst = tmp;
                ld = 16;
            }
            switch (mr) {
#define CASE(R)                                                                                              \
    case R: tile(R, xs, kc, w, dst, ld, b, first); break;
                CASE(1) CASE(2) CASE(3) CASE(4) CASE(5) CASE(6)
#undef CASE
            }
            if (n < 16)
                for (int r = 0; r < mr; r++)
                    for (int j = 0; j < n; j++)
                        yt[(size_t)r * ldy + j] = tmp[r * 16 + j];
            if (gelu) gelu_tile(yt, ldy, mr, n);
        }
    }
}

const cv_gemm_set cv_gemm_avx2 = {"avx2", MR, block};
#endif
