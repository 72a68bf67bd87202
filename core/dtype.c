// Element type sizes and names, and the f32 <-> bf16 / f16 conversions (round to nearest even,
// NaN kept NaN, overflow to infinity, f16 subnormals exact).
#include "core/dtype.h"

#include <math.h>

#include <string.h>

#include "core/log.h"

size_t ef_dtype_size(ef_dtype t) {
  switch (t) {
  case EF_F32: return 4;
  case EF_BF16: return 2;
  case EF_F16: return 2;
  case EF_I32: return 4;
  default: EF_FATAL("unknown dtype %d", (int)t);
  }
}

const char *ef_dtype_name(ef_dtype t) {
  static const char *names[EF_DTYPE_COUNT] = {"f32", "bf16", "f16", "i32"};
  EF_ASSERT(t >= 0 && t < EF_DTYPE_COUNT, "dtype %d", (int)t);
  return names[t];
}

static uint32_t f32_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, 4);
  return u;
}

static float bits_f32(uint32_t u) {
  float x;
  memcpy(&x, &u, 4);
  return x;
}

uint16_t ef_f32_to_bf16(float x) {
  uint32_t u = f32_bits(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40); // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

float ef_bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

uint16_t ef_f32_to_f16(float x) {
  uint32_t u = f32_bits(x);
  uint32_t sign = (u >> 16) & 0x8000u;
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u);  // NaN
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); // rounds to >= 65520: inf
  if (a < 0x38800000u) {                                   // below 2^-14: subnormal or 0
    // Scale so that the f16 subnormal unit (2^-24) becomes 1.0, then round to an integer
    // with the FPU (rintf: the default mode, round to nearest even): the subnormal mantissa.
    float m = bits_f32(a) * 16777216.0f;
    return (uint16_t)(sign | (uint32_t)(int32_t)rintf(m));
  }
  uint32_t rounded = a + 0xfffu + ((a >> 13) & 1u);          // round mantissa to 10 bits
  return (uint16_t)(sign | ((rounded - 0x38000000u) >> 13)); // rebias exponent 127 -> 15
}

float ef_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0) {
    float v = (float)man * (1.0f / 16777216.0f); // subnormal: man * 2^-24
    return sign ? -v : v;
  }
  if (exp == 31) return bits_f32(sign | 0x7f800000u | (man << 13));
  return bits_f32(sign | ((exp + 112u) << 23) | (man << 13));
}
