/* fp16 and bf16 <-> float32 conversion (round to nearest even), scalar and bulk (F16C). */
#include "vlm4rec/kernels.h"

#include <string.h>
#ifdef __F16C__
#include <immintrin.h>
#endif

static float from_bits(uint32_t b)
{
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

static uint32_t to_bits(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b;
}

float v4r_f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 31u, man = h & 1023u;
    if (exp == 31)
        return from_bits(sign | 0x7f800000u | man << 13);
    if (exp != 0)
        return from_bits(sign | (exp + 112) << 23 | man << 13);
    /* zero or subnormal: man * 2^-24, exact in float */
    float f = (float)man * 0x1p-24f;
    return sign ? -f : f;
}

/* |x| below the smallest normal half (2^-14): a subnormal half or zero, rounded to nearest even. */
static uint16_t f16_small(uint32_t ax)
{
    if (ax < 0x33000000u) /* below 2^-25: rounds to zero */
        return 0;
    uint32_t e = ax >> 23, m = (ax & 0x7fffffu) | 0x800000u, s = 126 - e; /* s in 14..24 */
    uint32_t hm = m >> s, rem = m & ((1u << s) - 1), half = 1u << (s - 1);
    if (rem > half || (rem == half && (hm & 1)))
        hm++; /* may carry into the smallest normal: the bit pattern is right */
    return (uint16_t)hm;
}

uint16_t v4r_f32_to_f16(float f)
{
    uint32_t x = to_bits(f), sign = (x >> 16) & 0x8000u, ax = x & 0x7fffffffu;
    if (ax > 0x7f800000u) /* NaN: quiet, keep the top payload bits */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    if (ax >= 0x477ff000u) /* 65520 and above (and inf) round to inf */
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u)
        return (uint16_t)(sign | f16_small(ax));
    uint32_t h = (ax >> 13) - (112u << 10), rem = ax & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
        h++;
    return (uint16_t)(sign | h);
}

float v4r_bf16_to_f32(uint16_t h) { return from_bits((uint32_t)h << 16); }

uint16_t v4r_f32_to_bf16(float f)
{
    uint32_t x = to_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 0x40u);
    return (uint16_t)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

void v4r_f16_to_f32_n(const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    size_t i = 0;
#ifdef __F16C__
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(p + 2 * i))));
#endif
    for (; i < n; i++)
        dst[i] = v4r_f16_to_f32((uint16_t)(p[2 * i] | p[2 * i + 1] << 8));
}

void v4r_bf16_to_f32_n(const void *src, float *dst, size_t n)
{
    const unsigned char *p = src;
    for (size_t i = 0; i < n; i++)
        dst[i] = from_bits((uint32_t)(p[2 * i] | p[2 * i + 1] << 8) << 16);
}
