/* cv_half.h: IEEE 754 binary16 <-> float32 conversions (round to nearest even). */
#ifndef CV_HALF_H
#define CV_HALF_H

#include <math.h>
#include <stdint.h>
#include <string.h>

static inline float cv_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (exp == 0) {
        if (mant == 0) {
            bits = sign;
        } else { /* subnormal */
            float f = ldexpf((float)mant, -24);
            return sign ? -f : f;
        }
    } else if (exp == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((exp + 112) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t cv_float_to_half(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000u, absx = x & 0x7FFFFFFFu;
    if (absx >= 0x7F800000u)
        return (uint16_t)(sign | 0x7C00u | (absx > 0x7F800000u ? 0x200u : 0)); /* inf/nan */
    if (absx >= 0x477FF000u) return (uint16_t)(sign | 0x7C00u);                /* rounds past 65504: inf */
    if (absx < 0x38800000u) {                                                  /* subnormal or zero in half */
        float a;
        memcpy(&a, &absx, 4);
        return (uint16_t)(sign | (uint16_t)lrintf(a * 16777216.0f)); /* units of 2^-24, ties to even */
    }
    uint32_t mant = absx & 0x7FFFFFu, exp = (absx >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13), rest = mant & 0x1FFFu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h++; /* carry may bump the exponent: correct */
    return (uint16_t)(sign | h);
}

#endif
