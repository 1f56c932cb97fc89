/* gemm_bf16.c: y = act(x w^T + b) with bf16 inputs and fp32 accumulation, for CPUs with
 * AVX512-BF16 (vdpbf16ps). Built with -mavx512f -mavx512bf16 -mfma; every function here is
 * called only after cv_cpu_bf16_supported() (gemm.c) said yes.
 *
 * Weights (packed once by cv_cpu_pack_linear_bf16, gemm.c) are 16-column panels of k pairs:
 * panel j holds, for each pair kk, 16 columns x (w[c][2kk], w[c][2kk+1]) = one zmm; pairs
 * are padded to a multiple of 16 with zeros (AMX B tiles, gemm_amx.c). x is
 * rounded to bf16 per call into rows of KC bf16 (KC/2 pairs, fixed stride: immediate
 * offsets). One vdpbf16ps does 16 columns x 2 k: half the instructions and half the weight
 * bytes of the fp32 kernel (gemm_avx512.c), whose loop structure and prefetching it copies. */
#include "gemm_impl.h"

#if CV_GEMM_X86
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cpu_ops.h"
#include "gelu_avx512.h"

#define MR  12
#define MC  144
#define KC  CV_GEMM_KC /* bf16 per x row; even */
#define KP  (KC / 2)   /* pairs per x row */
#define PAN 32         /* bf16 per pair row of a panel: 16 columns x 2 */

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

/* One tile of mr rows x np panels over kp pairs; xs: pairs of row 0 (row stride KP). */
static inline __attribute__((always_inline)) void tile(const int mr, const int np, const uint32_t *xs, int kp,
                                                       const uint16_t *w0, const uint16_t *w1, float *y,
                                                       size_t ldy, const float *bias, int first, __mmask16 m0,
                                                       __mmask16 m1, const uint16_t *pf, size_t pstride) {
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
    for (int k = 0; k < kp; k++) {
        const __m512bh b0 = (__m512bh)_mm512_load_si512((const void *)(w0 + (size_t)k * PAN));
        const __m512bh b1 = np == 2 ? (__m512bh)_mm512_load_si512((const void *)(w1 + (size_t)k * PAN)) : b0;
        if (pf) {
            _mm_prefetch((const char *)(pf + (size_t)k * PAN), _MM_HINT_T1);
            _mm_prefetch((const char *)(pf + pstride + (size_t)k * PAN), _MM_HINT_T1);
        }
        const uint32_t *a = xs + k;
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512bh av = (__m512bh)_mm512_set1_epi32((int)a[r * KP]);
            c0[r] = _mm512_dpbf16_ps(c0[r], av, b0);
            if (np == 2) c1[r] = _mm512_dpbf16_ps(c1[r], av, b1);
        }
    }
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

/* As gemm_avx512.c's block(), in pairs of k: kp pairs, pstride bf16 between panels. */
static void block(const uint32_t *xp, int mc, int kp, const uint16_t *wp, size_t pstride, int ncols, float *y,
                  size_t ldy, const float *bias, int first, int gelu, const uint16_t *after) {
    for (int c = 0; c < ncols; c += 32) {
        const int n = ncols - c, np = n > 16 ? 2 : 1;
        const __mmask16 m0 = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1),
                        m1 = n >= 32  ? 0xFFFF
                             : n > 16 ? (__mmask16)((1u << (n - 16)) - 1)
                                      : 0;
        const uint16_t *w0 = wp + (size_t)(c / 16) * pstride, *w1 = w0 + pstride;
        const uint16_t *next = c + 32 < ncols ? w0 + 2 * pstride : after;
        const float *b = bias ? bias + c : NULL;
        for (int r0 = 0; r0 < mc; r0 += MR) {
            const uint16_t *pf = r0 == 0 ? next : NULL;
            const int mr = mc - r0 < MR ? mc - r0 : MR;
            const uint32_t *xs = xp + (size_t)r0 * KP;
            float *yt = y + (size_t)r0 * ldy + c;
            switch (mr * 2 + np - 1) {
#define CASE(R)                                                                                              \
    case 2 * R: tile(R, 1, xs, kp, w0, w1, yt, ldy, b, first, m0, m1, pf, pstride); break;                   \
    case 2 * R + 1: tile(R, 2, xs, kp, w0, w1, yt, ldy, b, first, m0, m1, pf, pstride); break;
                CASE(1)
                CASE(2) CASE(3) CASE(4) CASE(5) CASE(6) CASE(7) CASE(8) CASE(9) CASE(10) CASE(11) CASE(12)
#undef CASE
            }
            if (gelu) gelu_tile(yt, ldy, mr, n < 32 ? n : 32);
        }
    }
}

/* Rows [0, mc) x columns [0, kc) of x to bf16 (round to nearest even) in rows of KC bf16;
 * an odd kc gets a zero partner. */
static void pack_x(const float *x, size_t ldx, int mc, int kc, uint16_t *xp) {
    for (int r = 0; r < mc; r++) {
        const float *row = x + (size_t)r * ldx;
        uint16_t *dst = xp + (size_t)r * KC;
        int k = 0;
        for (; k + 32 <= kc; k += 32) {
            const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(row + k + 16), _mm512_loadu_ps(row + k));
            _mm512_storeu_si512((void *)(dst + k), (__m512i)v);
        }
        if (k < kc) {
            const int n = kc - k;
            const __mmask16 lo = n >= 16 ? 0xFFFF : (__mmask16)((1u << n) - 1),
                            hi = n > 16 ? (__mmask16)((1u << (n - 16)) - 1) : 0;
            const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, row + k + 16),
                                                   _mm512_maskz_loadu_ps(lo, row + k));
            /* whole pairs, the odd one's partner zero */
            _mm512_mask_storeu_epi16((void *)(dst + k), (__mmask32)((1ull << ((n + 1) & ~1)) - 1),
                                     (__m512i)v);
        }
    }
}

void cv_cpu_linear_bf16_avx512(const float *x, const uint16_t *wp, const float *bias, int M, int N, int K,
                               cv_act act, float *y, int n0, int n1) {
    if (M <= 0 || n1 <= n0) return;
    CV_ASSERT(n0 % CV_GEMM_NR == 0 && n1 <= N);
    uint16_t *xp = cv_gemm_scratch(sizeof(uint16_t) * MC * KC);
    const int Kp = ((K + 1) / 2 + 15) & ~15; /* pairs per panel, as packed (padded to 16) */
    const size_t pstride = (size_t)Kp * PAN; /* bf16 per panel */
    const uint16_t *w = wp + (size_t)(n0 / CV_GEMM_NR) * pstride;
    for (int m0 = 0; m0 < M; m0 += MC) {
        const int mc = M - m0 < MC ? M - m0 : MC;
        for (int k0 = 0; k0 < K; k0 += KC) {
            const int kc = K - k0 < KC ? K - k0 : KC;
            pack_x(x + (size_t)m0 * K + k0, (size_t)K, mc, kc, xp);
            const uint16_t *after = k0 + kc < K ? w + (size_t)(k0 + kc) / 2 * PAN : m0 + mc < M ? w : NULL;
            block((const uint32_t *)xp, mc, (kc + 1) / 2, w + (size_t)k0 / 2 * PAN, pstride, n1 - n0,
                  y + (size_t)m0 * N + n0, (size_t)N, bias ? bias + n0 : NULL, k0 == 0,
                  act == CV_ACT_GELU && k0 + kc == K, after);
        }
    }
}
#endif
