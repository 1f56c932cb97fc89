/* gemm_amx.c: the bf16 GEMM on AMX tiles (TDPBF16PS: 16 x 16 fp32 += 16 x 32 bf16 * 32 x 16
 * bf16), for CPUs with AMX-BF16 whose kernel lets the process use tile data. Built with
 * -mamx-tile -mamx-bf16 -mavx512f -mavx512bw -mavx512bf16; called only after
 * cv_cpu_amx_usable() (gemm.c) said yes.
 *
 * The packed bf16 weights (gemm_bf16.c's layout, pairs padded to a multiple of 16) are
 * already B tiles: 16 pair rows x 16 columns x 2 = 1 KB, row stride 64 bytes. x is rounded
 * to bf16 per call into rows padded to 16 rows and 32 k (zeros), which makes the A tiles.
 * A block of 32 rows x 32 columns keeps four C tiles over all of K, then goes through a
 * scratch tile to y with the bias and GELU. One core does ~2.9 TFLOP/s of TDPBF16PS here,
 * 15x its fp32 FMAs: the arithmetic stops mattering, the weight bytes halve. */
#include "gemm_impl.h"

#if CV_GEMM_X86
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cpu_ops.h"
#include "gelu_avx512.h"

#define XBUF (256 * 1024) /* bf16 of packed x per thread: 512 KB */
#define PAN  32           /* bf16 per pair row of a panel: 16 columns x 2 */

typedef struct {
    uint8_t palette, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tile_cfg;

/* tiles 0-3: C (rows 0-15 | 16-31) x (cols 0-15 | 16-31); 4, 5: A; 6, 7: B; all 16 x 64 B */
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

/* x rows [0, mc) to bf16 rows of ldb bf16 (k >= K zero), and rows up to mc16 zero. */
static void pack_x(const float *x, int K, int mc, int mc16, int ldb, uint16_t *xb) {
    for (int r = 0; r < mc16; r++) {
        uint16_t *dst = xb + (size_t)r * ldb;
        if (r >= mc) {
            memset(dst, 0, sizeof(uint16_t) * (size_t)ldb);
            continue;
        }
        const float *row = x + (size_t)r * K;
        for (int k = 0; k < ldb; k += 32) {
            const int n = K - k;
            const __mmask16 lo = n >= 16 ? 0xFFFF
                                 : n > 0 ? (__mmask16)((1u << n) - 1)
                                         : 0,
                            hi = n >= 32  ? 0xFFFF
                                 : n > 16 ? (__mmask16)((1u << (n - 16)) - 1)
                                          : 0;
            const __m512bh v = _mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(hi, row + k + 16),
                                                   _mm512_maskz_loadu_ps(lo, row + k));
            _mm512_storeu_si512((void *)(dst + k), (__m512i)v);
        }
    }
}

/* One 32 x 32 (or 16-row, or 16-column) block over all kp pairs; prefetches pf (the next
 * panel pair, pair-row aligned) into L2 meanwhile. */
static void block(const uint16_t *xb, int ldb, int two_rows, const uint16_t *w0, const uint16_t *w1,
                  int two_cols, int kp, const uint16_t *pf, size_t pstride, float *cs) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    const size_t lda = (size_t)ldb * sizeof(uint16_t);
    for (int k = 0; k < kp; k += 16) {
        if (pf)
            for (int l = 0; l < 16; l++) {
                _mm_prefetch((const char *)(pf + (size_t)(k + l) * PAN), _MM_HINT_T1);
                _mm_prefetch((const char *)(pf + pstride + (size_t)(k + l) * PAN), _MM_HINT_T1);
            }
        _tile_loadd(4, xb + 2 * (size_t)k, lda);
        _tile_loadd(6, w0 + (size_t)k * PAN, 64);
        _tile_dpbf16ps(0, 4, 6);
        if (two_cols) {
            _tile_loadd(7, w1 + (size_t)k * PAN, 64);
            _tile_dpbf16ps(1, 4, 7);
        }
        if (two_rows) {
            _tile_loadd(5, xb + (size_t)16 * ldb + 2 * (size_t)k, lda);
            _tile_dpbf16ps(2, 5, 6);
            if (two_cols) _tile_dpbf16ps(3, 5, 7);
        }
    }
    _tile_stored(0, cs, 128);
    if (two_cols) _tile_stored(1, cs + 16, 128);
    if (two_rows) {
        _tile_stored(2, cs + 16 * 32, 128);
        if (two_cols) _tile_stored(3, cs + 16 * 32 + 16, 128);
    }
}

void cv_cpu_linear_amx(const float *x, const uint16_t *wp, const float *bias, int M, int N, int K, cv_act act,
                       float *y, int n0, int n1) {
    if (M <= 0 || n1 <= n0) return;
    CV_ASSERT(n0 % CV_GEMM_NR == 0 && n1 <= N);
    uint16_t *xb = cv_gemm_scratch(sizeof(uint16_t) * XBUF);
    float cs[32 * 32] __attribute__((aligned(64)));
    const int kp = ((K + 1) / 2 + 15) & ~15; /* pairs per panel, as packed */
    const int ldb = 2 * kp;                  /* bf16 per packed x row */
    CV_ASSERT(ldb * 32 <= XBUF);
    const int MC = XBUF / ldb / 32 * 32 < 512 ? XBUF / ldb / 32 * 32 : 512;
    const size_t pstride = (size_t)kp * PAN;
    const uint16_t *w = wp + (size_t)(n0 / CV_GEMM_NR) * pstride;
    configure();
    for (int m0 = 0; m0 < M; m0 += MC) {
        const int mc = M - m0 < MC ? M - m0 : MC, mc16 = (mc + 15) & ~15;
        pack_x(x + (size_t)m0 * K, K, mc, mc16, ldb, xb);
        for (int c = 0; c < n1 - n0; c += 32) {
            const int n = n1 - n0 - c, two_cols = n > 16;
            const uint16_t *w0 = w + (size_t)(c / 16) * pstride;
            const uint16_t *next = c + 32 < n1 - n0 ? w0 + 2 * pstride : NULL;
            for (int r0 = 0; r0 < mc16; r0 += 32) {
                const int two_rows = mc16 - r0 > 16;
                block(xb + (size_t)r0 * ldb, ldb, two_rows, w0, w0 + pstride, two_cols, kp,
                      r0 == 0 ? next : NULL, pstride, cs);
                /* epilogue: bias, GELU, the valid rows and columns to y */
                const int rows = mc - r0 < 32 ? mc - r0 : 32;
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
