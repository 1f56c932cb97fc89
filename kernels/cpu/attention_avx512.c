/* attention_avx512.c: softmax(Q K^T / sqrt(hd)) V per sequence and head on AVX-512, fused:
 * no padding, no score matrix of L x L, no copies of Q or V. Built with -mavx512f -mfma
 * whatever the rest of the build targets; attention.c calls it only on CPUs with AVX-512F.
 *
 * Per (sequence, head): K is transposed once into Kt (hd x Lp, Lp = L rounded up to 16,
 * zero past L), so that 16 keys sit in one vector. Then per block of up to QB query rows:
 *   S = scale * Q Kt           tiles of up to 12 rows x 32 keys (24 zmm accumulators), the
 *                              row's running max kept as the tiles are stored
 *   P = exp(S - max), sum      one pass per row, the block (QB x Lp) in L1
 *   O = (P V) / sum            tiles of up to 12 rows x 32 or 6 rows x 64 output columns
 * Any head size: the last 16 columns of V and O go through masks. The sums run in a
 * different order than sgemm's, so results differ from the BLAS path by float rounding
 * only (tests/test_cpu_ops.c compares both with double precision). */
#include "cpu_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "gelu_avx512.h"

#define QB   48 /* query rows per block: the block's P (QB x Lp floats) stays in L1/L2 */
#define MR_S 12 /* rows per S tile (x 2 vectors of keys) */

/* Kt[d][j] = K[j][d] for j < L, 0 for L <= j < Lp: 16 keys per gather. */
static void pack_kt(const float *k, size_t ld, int L, int Lp, int hd, float *kt) {
    const __m512i idx = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)ld));
    for (int j = 0; j < Lp; j += 16) {
        const __mmask16 m = L - j >= 16 ? 0xFFFF : (__mmask16)((1u << (L - j)) - 1);
        const float *kj = k + (size_t)j * ld;
        for (int d = 0; d < hd; d++)
            _mm512_store_ps(kt + (size_t)d * Lp + j,
                            _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, kj + d, 4));
    }
}

/* Vp[j][0 .. hdp) = V[j][0 .. hd), zero past hd (hdp = hd rounded up to 16). */
static void pack_v(const float *v, size_t ld, int L, int hd, int hdp, float *vp) {
    for (int j = 0; j < L; j++) {
        const float *vr = v + (size_t)j * ld;
        float *dst = vp + (size_t)j * hdp;
        for (int c = 0; c < hdp; c += 16) {
            const __mmask16 m = hd - c >= 16 ? 0xFFFF : (__mmask16)((1u << (hd - c)) - 1);
            _mm512_store_ps(dst + c, _mm512_maskz_loadu_ps(m, vr + c));
        }
    }
}

/* s[r][j0 .. j0+16*nv) = scale * q[r] . Kt[:, j] for mr rows. */
static inline __attribute__((always_inline)) void s_tile(const int mr, const int nv, const float *q,
                                                         size_t ld, const float *kt, int Lp, int hd, int j0,
                                                         float scale, float *s) {
    __m512 c0[MR_S], c1[MR_S];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        c0[r] = _mm512_setzero_ps();
        c1[r] = _mm512_setzero_ps();
    }
    const float *kp = kt + j0;
    for (int d = 0; d < hd; d++) {
        const __m512 b0 = _mm512_load_ps(kp + (size_t)d * Lp);
        const __m512 b1 = nv == 2 ? _mm512_load_ps(kp + (size_t)d * Lp + 16) : _mm512_setzero_ps();
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(q[(size_t)r * ld + d]);
            c0[r] = _mm512_fmadd_ps(a, b0, c0[r]);
            if (nv == 2) c1[r] = _mm512_fmadd_ps(a, b1, c1[r]);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        _mm512_store_ps(s + (size_t)r * Lp + j0, _mm512_mul_ps(c0[r], sc));
        if (nv == 2) _mm512_store_ps(s + (size_t)r * Lp + j0 + 16, _mm512_mul_ps(c1[r], sc));
    }
}

/* Scores of mr query rows against every key: s (mr x Lp). */
static inline __attribute__((always_inline)) void
s_rows(const int mr, const float *q, size_t ld, const float *kt, int Lp, int hd, float scale, float *s) {
    int j = 0;
    for (; j + 32 <= Lp; j += 32)
        s_tile(mr, 2, q, ld, kt, Lp, hd, j, scale, s);
    if (j < Lp) s_tile(mr, 1, q, ld, kt, Lp, hd, j, scale, s);
}

/* p = exp(s - max s) over the first L values of a row, zero up to Lp; returns 1 / the sum. */
static float exp_row(float *p, int L, int Lp) {
    const __mmask16 tail = L % 16 ? (__mmask16)((1u << (L % 16)) - 1) : 0xFFFF;
    __m512 mv = _mm512_set1_ps(-INFINITY);
    int j = 0;
    for (; j + 16 <= L; j += 16)
        mv = _mm512_max_ps(mv, _mm512_load_ps(p + j));
    if (j < L) mv = _mm512_mask_max_ps(mv, tail, mv, _mm512_load_ps(p + j));
    const __m512 m = _mm512_set1_ps(_mm512_reduce_max_ps(mv));
    __m512 acc = _mm512_setzero_ps();
    for (j = 0; j + 16 <= L; j += 16) {
        const __m512 e = exp16(_mm512_sub_ps(_mm512_load_ps(p + j), m));
        _mm512_store_ps(p + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    if (j < Lp) {
        const __m512 e = _mm512_maskz_mov_ps(tail, exp16(_mm512_sub_ps(_mm512_load_ps(p + j), m)));
        _mm512_store_ps(p + j, e);
        acc = _mm512_add_ps(acc, e);
    }
    return 1.0f / _mm512_reduce_add_ps(acc);
}

#define MR_O(nv) ((nv) <= 2 ? 12 : 6)

/* o[r][c0 .. c0+16*nv) = inv[r] * sum_j p[r][j] vp[j][c0 ..] for mr rows; the last vector
 * stored through mlast. */
static inline __attribute__((always_inline)) void o_tile(const int mr, const int nv, const float *p, int Lp,
                                                         int L, const float *vp, int hdp, int c0,
                                                         __mmask16 mlast, const float *inv, float *o,
                                                         size_t ldo) {
    __m512 acc[12][4];
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++)
#pragma GCC unroll 4
        for (int x = 0; x < nv; x++)
            acc[r][x] = _mm512_setzero_ps();
    const float *vc = vp + c0;
    for (int j = 0; j < L; j++) {
        __m512 b[4];
#pragma GCC unroll 4
        for (int x = 0; x < nv; x++)
            b[x] = _mm512_load_ps(vc + (size_t)j * hdp + 16 * x);
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(p[(size_t)r * Lp + j]);
#pragma GCC unroll 4
            for (int x = 0; x < nv; x++)
                acc[r][x] = _mm512_fmadd_ps(a, b[x], acc[r][x]);
        }
    }
#pragma GCC unroll 12
    for (int r = 0; r < mr; r++) {
        const __m512 sc = _mm512_set1_ps(inv[r]);
#pragma GCC unroll 4
        for (int x = 0; x < nv; x++) {
            float *dst = o + (size_t)r * ldo + c0 + 16 * x;
            const __m512 y = _mm512_mul_ps(acc[r][x], sc);
            if (x == nv - 1)
                _mm512_mask_storeu_ps(dst, mlast, y);
            else
                _mm512_storeu_ps(dst, y);
        }
    }
}

/* Output columns [c0, c0 + 16*nv) of rows [0, rows) of the block. */
static inline __attribute__((always_inline)) void o_cols(const int nv, int rows, const float *p, int Lp,
                                                         int L, const float *vp, int hdp, int c0,
                                                         __mmask16 mlast, const float *inv, float *o,
                                                         size_t ldo) {
    const int mr = MR_O(nv);
    int r = 0;
    for (; r + mr <= rows; r += mr)
        o_tile(mr, nv, p + (size_t)r * Lp, Lp, L, vp, hdp, c0, mlast, inv + r, o + (size_t)r * ldo, ldo);
    switch (rows - r) { /* a shorter last tile, its row count a constant for the compiler */
#define O_CASE(n)                                                                                            \
    case n:                                                                                                  \
        if (n < mr)                                                                                          \
            o_tile(n < mr ? n : 1, nv, p + (size_t)r * Lp, Lp, L, vp, hdp, c0, mlast, inv + r,               \
                   o + (size_t)r * ldo, ldo);                                                                \
        break;
        O_CASE(1)
        O_CASE(2)
        O_CASE(3)
        O_CASE(4)
        O_CASE(5)
        O_CASE(6)
        O_CASE(7)
        O_CASE(8)
        O_CASE(9)
        O_CASE(10)
        O_CASE(11)
#undef O_CASE
    default: break;
    }
}

static void s_block(int rows, const float *q, size_t ld, const float *kt, int Lp, int hd, float scale,
                    float *s) {
    int r = 0;
    for (; r + MR_S <= rows; r += MR_S)
        s_rows(MR_S, q + (size_t)r * ld, ld, kt, Lp, hd, scale, s + (size_t)r * Lp);
    const float *qr = q + (size_t)r * ld;
    float *sr = s + (size_t)r * Lp;
    switch (rows - r) {
#define S_CASE(n)                                                                                            \
    case n: s_rows(n, qr, ld, kt, Lp, hd, scale, sr); break;
        S_CASE(1)
        S_CASE(2)
        S_CASE(3)
        S_CASE(4)
        S_CASE(5)
        S_CASE(6)
        S_CASE(7)
        S_CASE(8)
        S_CASE(9)
        S_CASE(10)
        S_CASE(11)
#undef S_CASE
    default: break;
    }
}

static void o_block(int rows, const float *p, int Lp, int L, const float *vp, int hd, int hdp,
                    const float *inv, float *o, size_t ldo) {
    int c = 0;
    for (; hd - c > 48; c += 64) { /* 4 vectors while more than 3 remain */
        const __mmask16 ml = hd - c >= 64 ? 0xFFFF : (__mmask16)((1u << (hd - c - 48)) - 1);
        o_cols(4, rows, p, Lp, L, vp, hdp, c, ml, inv, o, ldo);
    }
    const int left = hd - c; /* 0 .. 48 */
    if (left <= 0) return;
    const int nv = (left + 15) / 16;
    const __mmask16 ml = left % 16 ? (__mmask16)((1u << (left % 16)) - 1) : 0xFFFF;
    if (nv == 1)
        o_cols(1, rows, p, Lp, L, vp, hdp, c, ml, inv, o, ldo);
    else if (nv == 2)
        o_cols(2, rows, p, Lp, L, vp, hdp, c, ml, inv, o, ldo);
    else
        o_cols(3, rows, p, Lp, L, vp, hdp, c, ml, inv, o, ldo);
}

void cv_cpu_attention_heads_avx512(const float *qkv, const int32_t *offs, int nseq, int H, int hd, int h0,
                                   int h1, float *out) {
    const int D = H * hd, hdp = (hd + 15) & ~15;
    const size_t ld = (size_t)3 * D;
    const float scale = 1.0f / sqrtf((float)hd);
    int maxlen = 0;
    for (int s = 0; s < nseq; s++)
        if (offs[s + 1] - offs[s] > maxlen) maxlen = offs[s + 1] - offs[s];
    if (maxlen == 0) return;
    const size_t Lmax = (size_t)((maxlen + 15) & ~15);
    /* Kt (hd x Lp), Vp (L x hdp), P (QB x Lp), then the block's 1/sums; all 64-byte aligned */
    const size_t floats = (size_t)hd * Lmax + Lmax * hdp + QB * Lmax + QB;
    float *kt = aligned_alloc(64, (sizeof(float) * floats + 63) & ~(size_t)63);
    CV_ASSERT(kt != NULL);
    float *vp = kt + (size_t)hd * Lmax, *p = vp + Lmax * hdp, *inv = p + QB * Lmax;
    for (int s = 0; s < nseq; s++) {
        const int base = offs[s], L = offs[s + 1] - offs[s], Lp = (L + 15) & ~15;
        if (L == 0) continue;
        for (int h = h0; h < h1; h++) {
            const float *q = qkv + (size_t)base * ld + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
            float *o = out + (size_t)base * D + (size_t)h * hd;
            pack_kt(k, ld, L, Lp, hd, kt);
            pack_v(v, ld, L, hd, hdp, vp);
            for (int i = 0; i < L; i += QB) {
                const int rows = L - i < QB ? L - i : QB;
                s_block(rows, q + (size_t)i * ld, ld, kt, Lp, hd, scale, p);
                for (int r = 0; r < rows; r++)
                    inv[r] = exp_row(p + (size_t)r * Lp, L, Lp);
                o_block(rows, p, Lp, L, vp, hd, hdp, inv, o + (size_t)i * D, (size_t)D);
            }
        }
    }
    free(kt);
}
#endif
