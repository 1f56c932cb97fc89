/* gemm_amx3.c: the fp32 GEMM as three bf16 products on AMX tiles ("bf16x3"): every fp32
 * value v is split into hi = bf16(v) and lo = bf16(v - hi), which together hold 16 bits of
 * its mantissa (|v - hi - lo| <= 2^-17 |v|), and x w^T = xhi whi + xhi wlo + xlo whi with
 * fp32 accumulation (the dropped xlo wlo term is below 2^-16 relative). The result is
 * about 2e-5 relative per output against exact products (fp32: about 3e-6; bf16: 1e-2), at
 * TDPBF16PS speed: three tile products per block instead of one.
 *
 * Weights: cv_cpu_pack_linear_bf16x3 writes the hi panels (gemm_bf16.c's layout) then the lo
 * panels. x is split per call into hi and lo rows (padded to 16 rows and 32 k, zeros). A
 * block is 16 rows x 32 columns: C tiles 0, 1; A hi/lo tiles 2, 3; B hi/lo tiles 4-7. Built
 * with -mamx-tile -mamx-bf16 -mavx512f -mavx512bw -mavx512bf16; called only where
 * cv_cpu_bf16_kernel() said "amx". */
#include "gemm_impl.h"

#if CV_GEMM_X86
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cpu_ops.h"
#include "gelu_avx512.h"

#define XBUF (256 * 1024) /* bf16 per part (hi, lo) of packed x per thread */
#define PAN  32           /* bf16 per pair row of a panel: 16 columns x 2 */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_cfg;

static void configure(void) {
    tile_cfg c;
    memset(&c, 0, sizeof c);
    c.palette = 1;
    for (int i = 0; i < 8; i++) {
        c.colsb[i] = 64;
        c.rows[i] = 16;
    }
    _tile_loadconfig(&c);
}

/* 16 floats to bf16 (round to nearest even), and those back to float. */
static inline __m256i to_bf16(__m512 v) { return (__m256i)_mm512_cvtneps_pbh(v); }
static inline __m512 from_bf16(__m256i h) {
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* x rows [0, mc) split into hi and lo bf16 rows of ldb (k >= K zero); rows up to mc16 zero. */
static void pack_x3(const float *x, int K, int mc, int mc16, int ldb, uint16_t *xh, uint16_t *xl) {
    for (int r = 0; r < mc16; r++) {
        uint16_t *dh = xh + (size_t)r * ldb, *dl = xl + (size_t)r * ldb;
        if (r >= mc) {
            memset(dh, 0, sizeof(uint16_t) * (size_t)ldb);
            memset(dl, 0, sizeof(uint16_t) * (size_t)ldb);
            continue;
        }
        const float *row = x + (size_t)r * K;
        for (int k = 0; k < ldb; k += 16) {
            const int n = K - k;
            const __mmask16 m = n >= 16 ? 0xFFFF : n > 0 ? (__mmask16)((1u << n) - 1) : 0;
            const __m512 v = _mm512_maskz_loadu_ps(m, row + k);
            const __m256i h = to_bf16(v);
            _mm256_storeu_si256((__m256i *)(dh + k), h);
            _mm256_storeu_si256((__m256i *)(dl + k), to_bf16(_mm512_sub_ps(v, from_bf16(h))));
        }
    }
}

size_t cv_cpu_pack_bf16x3_bytes(int N, int K) { return 2 * cv_cpu_pack_bf16_bytes(N, K); }

void cv_cpu_pack_linear_bf16x3(const float *w, int N, int K, uint16_t *wp) {
    float *lo = malloc(sizeof(float) * (size_t)N * (size_t)K);
    CV_ASSERT(lo != NULL);
    for (size_t i = 0; i < (size_t)N * (size_t)K; i++)
        lo[i] = w[i] - cv_cpu_from_bf16(cv_cpu_to_bf16(w[i]));
    cv_cpu_pack_linear_bf16(w, N, K, wp);
    cv_cpu_pack_linear_bf16(lo, N, K, wp + cv_cpu_pack_bf16_bytes(N, K) / sizeof(uint16_t));
    free(lo);
}

/* One 16 x 32 (or 16 x 16) block over all kp pairs into cs (16 x 32 floats). */
static void block3(const uint16_t *xh, const uint16_t *xl, int ldb, const uint16_t *w0, const uint16_t *w1,
                   size_t lostride, int two_cols, int kp, float *cs) {
    _tile_zero(0);
    _tile_zero(1);
    const size_t lda = (size_t)ldb * sizeof(uint16_t);
    for (int k = 0; k < kp; k += 16) {
        _tile_loadd(2, xh + 2 * (size_t)k, lda);
        _tile_loadd(3, xl + 2 * (size_t)k, lda);
        _tile_loadd(4, w0 + (size_t)k * PAN, 64);
        _tile_loadd(5, w0 + lostride + (size_t)k * PAN, 64);
        _tile_dpbf16ps(0, 3, 4); /* small terms first */
        _tile_dpbf16ps(0, 2, 5);
        _tile_dpbf16ps(0, 2, 4);
        if (two_cols) {
            _tile_loadd(6, w1 + (size_t)k * PAN, 64);
            _tile_loadd(7, w1 + lostride + (size_t)k * PAN, 64);
            _tile_dpbf16ps(1, 3, 6);
            _tile_dpbf16ps(1, 2, 7);
            _tile_dpbf16ps(1, 2, 6);
        }
    }
    _tile_stored(0, cs, 128);
    if (two_cols) _tile_stored(1, cs + 16, 128);
}

void cv_cpu_linear_amx3(const float *x, const uint16_t *wp, const float *bias, int M, int N, int K,
                        cv_act act, float *y, int n0, int n1) {
    if (M <= 0 || n1 <= n0) return;
    CV_ASSERT(n0 % CV_GEMM_NR == 0 && n1 <= N);
    uint16_t *xh = cv_gemm_scratch(sizeof(uint16_t) * 2 * XBUF), *xl = xh + XBUF;
    float cs[16 * 32] __attribute__((aligned(64)));
    const int kp = ((K + 1) / 2 + 15) & ~15; /* pairs per panel, as packed */
    const int ldb = 2 * kp;                  /* bf16 per packed x row */
    CV_ASSERT(ldb * 16 <= XBUF);
    const int MC = XBUF / ldb / 16 * 16 < 256 ? XBUF / ldb / 16 * 16 : 256;
    const size_t pstride = (size_t)kp * PAN;
    const size_t lostride = cv_cpu_pack_bf16_bytes(N, K) / sizeof(uint16_t);
    const uint16_t *w = wp + (size_t)(n0 / CV_GEMM_NR) * pstride;
    configure();
    for (int m0 = 0; m0 < M; m0 += MC) {
        const int mc = M - m0 < MC ? M - m0 : MC, mc16 = (mc + 15) & ~15;
        pack_x3(x + (size_t)m0 * K, K, mc, mc16, ldb, xh, xl);
        for (int c = 0; c < n1 - n0; c += 32) {
            const int n = n1 - n0 - c, two_cols = n > 16;
            const uint16_t *w0 = w + (size_t)(c / 16) * pstride;
            for (int r0 = 0; r0 < mc16; r0 += 16) {
                block3(xh + (size_t)r0 * ldb, xl + (size_t)r0 * ldb, ldb, w0, w0 + pstride, lostride,
                       two_cols, kp, cs);
                const int rows = mc - r0 < 16 ? mc - r0 : 16;
                for (int r = 0; r < rows; r++) {
                    float *yr = y + (size_t)(m0 + r0 + r) * N + n0 + c;
                    for (int h = 0; h < (two_cols ? 32 : 16) && h < n; h += 16) {
                        const __mmask16 m = n - h >= 16 ? 0xFFFF : (__mmask16)((1u << (n - h)) - 1);
                        __m512 v = _mm512_load_ps(cs + r * 32 + h);
                        if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + n0 + c + h));
                        if (act == CV_ACT_GELU) v = gelu16(v);
                        if (m == 0xFFFF)
                            _mm512_storeu_ps(yr + h, v);
                        else
                            _mm512_mask_storeu_ps(yr + h, m, v);
                    }
                }
            }
        }
    }
    _tile_release();
}
#endif
