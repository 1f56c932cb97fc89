/* attention_avx512.c: softmax(Q K^T / sqrt(hd)) V per sequence and head on AVX-512, fused:
 * no padding, no score matrix of L x L in memory. Built with -mavx512f -mfma whatever the
 * rest of the build targets; attention.c calls it only on CPUs with AVX-512F.
 *
 * Per (sequence, head), K and V are copied once into kernel layouts: Kp holds groups of KR
 * keys d-major (the KR values of one d side by side), Vp the rows of V at a stride of hd
 * rounded up to 16, zero-padded. Then per block of QB = 32 queries, Q transposed into Qt
 * (hd x QB), and the scores kept transposed, St[j][i] (key-major, queries side by side):
 *   St = scale * K Qt          tiles of KR = 12 keys x 32 queries (24 zmm accumulators)
 *   P  = exp(St - max), sums   per query, down the columns: vertical max/add, no shuffles
 *   O  = (P V) / sum           tiles of up to 12 queries x 32 or 6 x 64 output columns; the
 *                              12 probabilities of a key are adjacent (immediate offsets)
 * The block's P (L x QB) and Vp stay in L1/L2. Any head size: the last 16 columns of O go
 * through a mask. The sums run in a different order than sgemm's, so results differ from
 * the BLAS path by float rounding only (tests/test_cpu_ops.c checks both against double). */
#include "cpu_ops.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>

#include "gelu_avx512.h"

#define QB 32 /* queries per block: two vectors */
#define KR 12 /* keys per score tile */

/* Row offsets 0, ld, 2 ld, ... of 16 rows, for gathers. */
static inline __m512i row_idx(size_t ld) {
    return _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                              _mm512_set1_epi32((int)ld));
}

/* Kp[(j / KR) * hd * KR + d * KR + j % KR] = K[j][d], zero for L <= j < Lk (Lk: L rounded
 * up to KR): one gather of KR keys per d. */
static void pack_k(const float *k, size_t ld, int L, int Lk, int hd, float *kp) {
    const __m512i idx = row_idx(ld);
    for (int j = 0; j < Lk; j += KR) {
        const int n = L - j < KR ? L - j : KR;
        const __mmask16 m = (__mmask16)((1u << n) - 1), st = (__mmask16)((1u << KR) - 1);
        const float *kj = k + (size_t)j * ld;
        float *dst = kp + (size_t)j * hd;
        for (int d = 0; d < hd; d++)
            _mm512_mask_storeu_ps(dst + (size_t)d * KR, st,
                                  _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, idx, kj + d, 4));
    }
}

/* Vp[j][0 .. hdp) = V[j][0 .. hd), zero past hd (hdp: hd rounded up to 16). */
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

/* Qt[d][r] = Q[r][d] for r < rows, zero for rows <= r < QB: two gathers per d. */
static void pack_qt(const float *q, size_t ld, int rows, int hd, float *qt) {
    const __m512i idx = row_idx(ld);
    const __mmask16 m0 = rows >= 16 ? 0xFFFF : (__mmask16)((1u << rows) - 1),
                    m1 = rows >= 32   ? 0xFFFF
                         : rows <= 16 ? 0
                                      : (__mmask16)((1u << (rows - 16)) - 1);
    const float *q1 = q + 16 * ld;
    for (int d = 0; d < hd; d++) {
        _mm512_store_ps(qt + (size_t)d * QB,
                        _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m0, idx, q + d, 4));
        _mm512_store_ps(qt + (size_t)d * QB + 16,
                        m1 ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m1, idx, q1 + d, 4)
                           : _mm512_setzero_ps());
    }
}

/* St[j0 + r][0 .. QB) = scale * K[j0 + r] . Qt for the KR keys of group kg. */
static inline void st_tile(const float *kg, const float *qt, int hd, float scale, float *st) {
    __m512 c0[KR], c1[KR];
#pragma GCC unroll 12
    for (int r = 0; r < KR; r++) {
        c0[r] = _mm512_setzero_ps();
        c1[r] = _mm512_setzero_ps();
    }
    for (int d = 0; d < hd; d++) {
        const __m512 b0 = _mm512_load_ps(qt + (size_t)d * QB), b1 = _mm512_load_ps(qt + (size_t)d * QB + 16);
        const float *a = kg + (size_t)d * KR;
#pragma GCC unroll 12
        for (int r = 0; r < KR; r++) {
            const __m512 av = _mm512_set1_ps(a[r]);
            c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
            c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
        }
    }
    const __m512 sc = _mm512_set1_ps(scale);
#pragma GCC unroll 12
    for (int r = 0; r < KR; r++) {
        _mm512_store_ps(st + (size_t)r * QB, _mm512_mul_ps(c0[r], sc));
        _mm512_store_ps(st + (size_t)r * QB + 16, _mm512_mul_ps(c1[r], sc));
    }
}

/* P = exp(St - column max) over the L keys, in place; inv (QB) = 1 / column sums. */
static void softmax_cols(float *st, int L, float *inv) {
    __m512 m0 = _mm512_set1_ps(-INFINITY), m1 = m0;
    for (int j = 0; j < L; j++) {
        m0 = _mm512_max_ps(m0, _mm512_load_ps(st + (size_t)j * QB));
        m1 = _mm512_max_ps(m1, _mm512_load_ps(st + (size_t)j * QB + 16));
    }
    __m512 s0 = _mm512_setzero_ps(), s1 = s0;
    for (int j = 0; j < L; j++) {
        float *row = st + (size_t)j * QB;
        const __m512 e0 = exp16(_mm512_sub_ps(_mm512_load_ps(row), m0));
        const __m512 e1 = exp16(_mm512_sub_ps(_mm512_load_ps(row + 16), m1));
        _mm512_store_ps(row, e0);
        _mm512_store_ps(row + 16, e1);
        s0 = _mm512_add_ps(s0, e0);
        s1 = _mm512_add_ps(s1, e1);
    }
    const __m512 one = _mm512_set1_ps(1.0f);
    _mm512_store_ps(inv, _mm512_div_ps(one, s0));
    _mm512_store_ps(inv + 16, _mm512_div_ps(one, s1));
}

#define MR_O(nv) ((nv) <= 2 ? 12 : 6)

/* o[r][c0 .. c0+16*nv) = inv[r] * sum_j p[j][r] vp[j][c0 ..] for mr queries (p: column r0
 * of P); the last vector stored through mlast. */
static inline __attribute__((always_inline)) void o_tile(const int mr, const int nv, const float *p, int L,
                                                         const float *vp, int hdp, int c0, __mmask16 mlast,
                                                         const float *inv, float *o, size_t ldo) {
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
        const float *pj = p + (size_t)j * QB;
#pragma GCC unroll 12
        for (int r = 0; r < mr; r++) {
            const __m512 a = _mm512_set1_ps(pj[r]);
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

/* Output columns [c0, c0 + 16*nv) of the block's first rows queries. */
static inline __attribute__((always_inline)) void o_cols(const int nv, int rows, const float *p, int L,
                                                         const float *vp, int hdp, int c0, __mmask16 mlast,
                                                         const float *inv, float *o, size_t ldo) {
    const int mr = MR_O(nv);
    int r = 0;
    for (; r + mr <= rows; r += mr)
        o_tile(mr, nv, p + r, L, vp, hdp, c0, mlast, inv + r, o + (size_t)r * ldo, ldo);
    switch (rows - r) { /* a shorter last tile, its row count a constant for the compiler */
#define O_CASE(n)                                                                                            \
    case n:                                                                                                  \
        if (n < mr)                                                                                          \
            o_tile(n < mr ? n : 1, nv, p + r, L, vp, hdp, c0, mlast, inv + r, o + (size_t)r * ldo, ldo);     \
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

static void o_block(int rows, const float *p, int L, const float *vp, int hd, int hdp, const float *inv,
                    float *o, size_t ldo) {
    int c = 0;
    for (; hd - c > 48; c += 64) { /* 4 vectors while more than 3 remain */
        const __mmask16 ml = hd - c >= 64 ? 0xFFFF : (__mmask16)((1u << (hd - c - 48)) - 1);
        o_cols(4, rows, p, L, vp, hdp, c, ml, inv, o, ldo);
    }
    const int left = hd - c; /* 0 .. 48 */
    if (left <= 0) return;
    const int nv = (left + 15) / 16;
    const __mmask16 ml = left % 16 ? (__mmask16)((1u << (left % 16)) - 1) : 0xFFFF;
    if (nv == 1)
        o_cols(1, rows, p, L, vp, hdp, c, ml, inv, o, ldo);
    else if (nv == 2)
        o_cols(2, rows, p, L, vp, hdp, c, ml, inv, o, ldo);
    else
        o_cols(3, rows, p, L, vp, hdp, c, ml, inv, o, ldo);
}

/* Q, K and V of rows [r0, r1) of the next head (at q, row stride ld, hd columns) into L2:
 * each head reads a narrow column band of rows 3 D floats apart, which the hardware
 * prefetchers do not follow. */
static void prefetch_rows(const float *q, size_t ld, int D, int hd, int r0, int r1) {
    for (int r = r0; r < r1; r++)
        for (int part = 0; part < 3; part++) {
            const char *row = (const char *)(q + (size_t)r * ld + (size_t)part * D);
            for (int c = 0; c < hd * 4; c += 64)
                _mm_prefetch(row + c, _MM_HINT_T1);
        }
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
    const size_t Lk = (size_t)((maxlen + KR - 1) / KR * KR);
    /* Kp (Lk x hd), Vp (maxlen x hdp), Qt (hd x QB), P (Lk x QB), 1/sums (QB); every part a
     * multiple of 16 floats, so all 64-byte aligned */
    const size_t nk = (Lk * hd + 15) & ~(size_t)15, nv = (size_t)maxlen * hdp, nq = (size_t)hd * QB;
    float *kp = aligned_alloc(64, sizeof(float) * (nk + nv + nq + Lk * QB + QB));
    CV_ASSERT(kp != NULL);
    float *vp = kp + nk, *qt = vp + nv, *p = qt + nq, *inv = p + Lk * QB;
    for (int s = 0; s < nseq; s++) {
        const int base = offs[s], L = offs[s + 1] - offs[s], Lks = (L + KR - 1) / KR * KR;
        if (L == 0) continue;
        for (int h = h0; h < h1; h++) {
            const float *q = qkv + (size_t)base * ld + (size_t)h * hd, *k = q + D, *v = q + 2 * D;
            float *o = out + (size_t)base * D + (size_t)h * hd;
            pack_k(k, ld, L, Lks, hd, kp);
            pack_v(v, ld, L, hd, hdp, vp);
            /* the head after this one: the next head, or the next sequence's first */
            int nb = base, nL = L, nh = h + 1;
            if (nh == h1) {
                nh = h0;
                nb = s + 1 < nseq ? offs[s + 1] : -1;
                nL = s + 1 < nseq ? offs[s + 2] - offs[s + 1] : 0;
            }
            const float *nxt = nb >= 0 ? qkv + (size_t)nb * ld + (size_t)nh * hd : NULL;
            for (int i = 0; i < L; i += QB) {
                const int rows = L - i < QB ? L - i : QB;
                if (nxt) { /* the next head's rows, spread over this head's blocks */
                    const int last = i + QB >= L;
                    prefetch_rows(nxt, ld, D, hd, (int)((long)nL * i / L),
                                  last ? nL : (int)((long)nL * (i + QB) / L));
                }
                pack_qt(q + (size_t)i * ld, ld, rows, hd, qt);
                for (int j = 0; j < Lks; j += KR)
                    st_tile(kp + (size_t)j * hd, qt, hd, scale, p + (size_t)j * QB);
                softmax_cols(p, L, inv);
                o_block(rows, p, L, vp, hd, hdp, inv, o + (size_t)i * D, (size_t)D);
            }
        }
    }
    free(kp);
}
#endif
