/* cuda_fp16.h (CPU execution layer): IEEE binary16 in software, round to nearest even. */
#ifndef CUDA_SIM_FP16_H
#define CUDA_SIM_FP16_H

#include "cuda_sim.h"
#include <stdint.h>
#include <string.h>

struct __half {
    uint16_t x;
};
struct __half2 {
    __half x, y;
};
typedef __half half;
typedef __half2 half2;

static inline __half __float2half_rn(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    uint32_t sign = (u >> 16) & 0x8000u, e = (u >> 23) & 0xffu, m = u & 0x7fffffu;
    __half h;
    if (e == 0xff) { /* inf / nan */
        h.x = (uint16_t)(sign | 0x7c00u | (m ? 0x200u | (m >> 13) : 0));
        return h;
    }
    int ee = (int)e - 127 + 15;
    if (ee >= 31) {
        h.x = (uint16_t)(sign | 0x7c00u);
        return h;
    }
    if (ee <= 0) { /* subnormal or zero */
        if (ee < -10) {
            h.x = (uint16_t)sign;
            return h;
        }
        m |= 0x800000u;
        int shift = 14 - ee;
        uint32_t hm = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (hm & 1))) hm++;
        h.x = (uint16_t)(sign | hm);
        return h;
    }
    uint32_t hm = m >> 13, rem = m & 0x1fffu;
    uint32_t r = sign | ((uint32_t)ee << 10) | hm;
    if (rem > 0x1000u || (rem == 0x1000u && (hm & 1))) r++; /* may carry into the exponent: right */
    h.x = (uint16_t)r;
    return h;
}

static inline float __half2float(__half h) {
    uint32_t sign = (uint32_t)(h.x & 0x8000u) << 16, e = (h.x >> 10) & 0x1fu, m = h.x & 0x3ffu, u;
    if (e == 0) {
        if (m == 0)
            u = sign;
        else { /* subnormal */
            e = 1;
            while (!(m & 0x400u))
                m <<= 1, e--;
            m &= 0x3ffu;
            u = sign | ((e + 127 - 15) << 23) | (m << 13);
        }
    } else if (e == 31)
        u = sign | 0x7f800000u | (m << 13);
    else
        u = sign | ((e + 127 - 15) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline float __low2float(__half2 h) { return __half2float(h.x); }
static inline float __high2float(__half2 h) { return __half2float(h.y); }
static inline __half2 __floats2half2_rn(float a, float b) {
    return __half2{__float2half_rn(a), __float2half_rn(b)};
}
static inline __half2 __float22half2_rn(float2 f) { return __floats2half2_rn(f.x, f.y); }
static inline float2 __half22float2(__half2 h) { return float2{__half2float(h.x), __half2float(h.y)}; }
static inline __half __hadd(__half a, __half b) { return __float2half_rn(__half2float(a) + __half2float(b)); }
static inline __half __hmul(__half a, __half b) { return __float2half_rn(__half2float(a) * __half2float(b)); }
static inline __half __hsub(__half a, __half b) { return __float2half_rn(__half2float(a) - __half2float(b)); }

#endif
