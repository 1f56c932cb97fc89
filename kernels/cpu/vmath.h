/* vmath.h: branch-free expf and GELU that the compiler vectorizes (libm's erff/expf are
 * scalar calls and were 15% of the CPU forward pass). Accuracy: cv_expf within 2 ulp on
 * [-87, 88] (Cephes polynomial); cv_gelu within ~2e-7 relative of the exact-erf GELU
 * (erfc by Numerical Recipes' Chebyshev fit, fractional error < 1.2e-7). Checked against
 * double precision in tests/test_cpu_ops.c. */
#ifndef CV_VMATH_H
#define CV_VMATH_H

#include <stdint.h>
#include <string.h>

static inline float cv_expf(float x) {
    x = x < -87.3f ? -87.3f : x;
    x = x > 88.3f ? 88.3f : x;
    /* n = round(x / ln 2) with the 1.5 * 2^23 trick; r = x - n ln 2 in two parts */
    float n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* 0.5 x erfc(-x / sqrt 2) = 0.5 x (1 + erf(x / sqrt 2)) */
static inline float cv_gelu_fast(float x) {
    float z = x * -0.70710678118654752f, az = z < 0 ? -z : z;
    float t = 1.0f / (1.0f + 0.5f * az);
    float poly = -0.82215223f + t * 0.17087277f;
    poly = 1.48851587f + t * poly;
    poly = -1.13520398f + t * poly;
    poly = 0.27886807f + t * poly;
    poly = -0.18628806f + t * poly;
    poly = 0.09678418f + t * poly;
    poly = 0.37409196f + t * poly;
    poly = 1.00002368f + t * poly;
    poly = -1.26551223f + t * poly;
    float e = t * cv_expf(-az * az + poly); /* erfc(|z|) */
    float erfc_z = z >= 0 ? e : 2.0f - e;
    return 0.5f * x * erfc_z;
}

#endif
