/* gelu_avx512.h: vmath.h's expf and GELU on 16 lanes, for kernel files built with
 * -mavx512f (include only there). */
#ifndef CV_GELU_AVX512_H
#define CV_GELU_AVX512_H

#include <immintrin.h>

/* cv_expf (vmath.h) on 16 lanes: the same clamp, reduction and polynomial, 2^n by scalef. */
static inline __m512 exp16(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.3f));
    const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    return _mm512_scalef_ps(p, n);
}

/* cv_gelu_fast (vmath.h) on 16 lanes; 1 / (1 + |z| / 2) by rcp14 and one Newton step
 * (relative error ~1e-8) instead of a division. */
static inline __m512 gelu16(__m512 x) {
    const __m512 z = _mm512_mul_ps(x, _mm512_set1_ps(-0.70710678118654752f)), az = _mm512_abs_ps(z);
    const __m512 den = _mm512_fmadd_ps(az, _mm512_set1_ps(0.5f), _mm512_set1_ps(1.0f));
    __m512 t = _mm512_rcp14_ps(den);
    t = _mm512_mul_ps(t, _mm512_fnmadd_ps(den, t, _mm512_set1_ps(2.0f)));
    __m512 poly = _mm512_fmadd_ps(t, _mm512_set1_ps(0.17087277f), _mm512_set1_ps(-0.82215223f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(1.48851587f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(-1.13520398f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(0.27886807f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(-0.18628806f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(0.09678418f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(0.37409196f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(1.00002368f));
    poly = _mm512_fmadd_ps(t, poly, _mm512_set1_ps(-1.26551223f));
    const __m512 e = _mm512_mul_ps(t, exp16(_mm512_fnmadd_ps(az, az, poly))); /* erfc(|z|) */
    const __mmask16 neg = _mm512_cmp_ps_mask(z, _mm512_setzero_ps(), _CMP_LT_OQ);
    const __m512 erfc_z = _mm512_mask_sub_ps(e, neg, _mm512_set1_ps(2.0f), e);
    return _mm512_mul_ps(_mm512_mul_ps(x, _mm512_set1_ps(0.5f)), erfc_z);
}

#endif
