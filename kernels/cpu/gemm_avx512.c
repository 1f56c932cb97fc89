/* gemm_avx512.c: the AVX-512 kernel set of the packed GEMM (gemm_impl.h). Built with
 * -mavx512f -mfma whatever the rest of the build targets; only called after gemm.c has seen
 * AVX-512F on the CPU. A tile is up to 12 rows x 2 panels (24 zmm accumulators); the weight
 * panels stream k-major from L1/L2, each x value is broadcast once per k. */
#include "gemm_impl.h"

#if CV_GEMM_X86
#include <immintrin.h>

#include "gelu_avx512.h"

#define MR 12

/* GELU over a finished tile, while it is in L1. */
static void gelu_tile(float *y, size_t ldy, int mr, int ncols) {
    for (int r = 0; r < mr; r++) {
        float *row = y + (size_t)r * ldy;
        int c = 0;
        for (; c + 16 <= ncols; c += 16)
            _mm512_storeu_ps(row + c, gelu16(_mm512_loadu_ps(row + c)));
        if (c < ncols) {
            const __mmask16 m = (__mmask16)((1u << (ncols - c)) - 1);
            _mm512_mask_storeu_ps(row + c, m, gelu16(_mm512_maskz_loadu_ps(m, row + c)));
        }
    }
}

/* One tile; pf (when not NULL) is the next panel pair, fetched into L2 meanwhile (one line
 * of each panel per k): the first sliver of a pair waits on memory otherwise. */
static inline __attribute__((always_inline)) void tile(const int mr, const int np, const float *xp, int kc,
                                                       const float *w0, const float *w1, float *y, size_t ldy,
                                                       const float *bias, int first, __mmask16 m0,
                                                       __mmask16 m1, const float *pf, size_t pstride) {
    __m512 c0[MR], c1[MR];
    if (first) {
        const __m512 b0 = bias ? _mm512_maskz_loadu_ps(m0, bias) : _mm512_setzero_ps();
        const __m512 b1 = bias && np == 2 ? _mm512_maskz_loadu_ps(m1, bias + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            c0[r] = b0;
            c1[r] = b1;
        }
    } else {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            c0[r] = _mm512_maskz_loadu_ps(m0, y + (size_t)r * ldy);
            c1[r] = np == 2 ? _mm512_maskz_loadu_ps(m1, y + (size_t)r * ldy + 16) : _mm512_setzero_ps();
        }
    }
#pragma GCC unroll 2
    for (int k = 0; k < kc; k++) {
        const __m512 b0 = _mm512_load_ps(w0 + (size_t)k * 16);
        const __m512 b1 = np == 2 ? _mm512_load_ps(w1 + (size_t)k * 16) : _mm512_setzero_ps();
        const float *a = xp + k;
        if (pf) {
            _mm_prefetch((const char *)(pf + (size_t)k * 16), _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + pstride + (size_t)k * 16), _MM_HINT_T1);
        }
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512 av = _mm512_set1_ps(a[r * CV_GEMM_KC]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            if (np == 2) c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
    /* plain stores where the tile is whole: a load after a masked store waits for it to
     * retire instead of being forwarded, and gelu_tile reloads the tile at once */
    if (m0 == 0xFFFF && (np == 1 || m1 == 0xFFFF)) {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            _mm512_storeu_ps(y + (size_t)r * ldy, c0[r]);
            if (np == 2) _mm512_storeu_ps(y + (size_t)r * ldy + 16, c1[r]);
        }
    } else {
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            _mm512_mask_storeu_ps(y + (size_t)r * ldy, m0, c0[r]);
            if (np == 2) _mm512_mask_storeu_ps(y + (size_t)r * ldy + 16, m1, c1[r]);
        }
    }
}

static void block(const float *xp, int mc, int kc, const float *wp, size_t pstride, int ncols, float *y,
                  size_t ldy, const float *bias, int first, int gelu, const float *after) {
    for (int c = 0; c < ncols; c += 32) {
        const int n = ncols - c, np = n > 16 ? 2 : 1;
        const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1),
                        m1 = n >= 32  ? 0xFFFF
                             : n > 16 ? (__mmask16)((1u << (n - 16)) - 1)
                                      : 0;
        const float *w0 = wp + (size_t)(c / 16) * pstride, *w1 = w0 + pstride;
        const float *b = bias ? bias + c : NULL, *next = c + 32 < ncols ? w0 + 2 * pstride : after;
        for (int r0 = 0; r0 < mc; r0 += MR) {
            const float *pf = r0 == 0 ? next : NULL;
            const int mr = mc - r0 < MR ? mc - r0 : MR;
            const float *xs = xp + (size_t)r0 * CV_GEMM_KC;
            float *yt = y + (size_t)r0 * ldy + c;
            switch (mr * 2 + np - 1) {
#define CASE(R)                                                                                              \
    case 2 * R: tile(R, 1, xs, kc, w0, w1, yt, ldy, b, first, m0, m1, pf, pstride); break;                   \
    case 2 * R + 1: tile(R, 2, xs, kc, w0, w1, yt, ldy, b, first, m0, m1, pf, pstride); break;
                CASE(1)
                CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
            }
            if (gelu) gelu_tile(yt, ldy, mr, n < 32 ? n : 32);
        }
    }
}

const cv_gemm_set cv_gemm_avx512 = {"avx512", MR, block};
#endif
