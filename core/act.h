// Activations and their derivatives in f32, one definition for the CPU backend's loops (ACT,
// ACT_BWD, batch norm's fused activation) and the CUDA kernels: exp is ef_expf below on the host
// (branch-free, so that loops vectorize) and the GPU's __expf on the device.
#ifndef EF_ACT_H
#define EF_ACT_H

#include <stdint.h>
#include <string.h>

#include "core/hd.h"
#include "core/op.h"

// exp(x) in f32 without a library call, so that loops using it vectorize: x = n ln2 + r with
// |r| <= ln2/2, e^r by Cephes' degree-6 polynomial (about 1 ulp), 2^n from the exponent bits.
// Arguments are clamped to [-87.3, 88] so that n stays in [-126, 127] (results 1.2e-38 ..
// 1.7e38; the activations using it saturate long before). NaN stays NaN.
static inline float ef_expf(float x) {
  x = x < -87.3f ? -87.3f : x > 88.0f ? 88.0f : x;
  // Adding 1.5 * 2^23 rounds x / ln2 to the integer n, which then sits in t's low mantissa bits.
  float t = x * 1.44269504f + 12582912.0f, n = t - 12582912.0f;
  float r = x - n * 0.693359375f - n * -2.12194440e-4f; // ln2 split in two for exactness
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t tbits, bits;
  memcpy(&tbits, &t, sizeof tbits);
  bits = (tbits - 0x4B400000u + 127u) << 23; // 2^n: the biased exponent n + 127, unsigned (NaN-safe)
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

EF_HD float ef_act_exp(float x) {
#ifdef __CUDA_ARCH__
  return __expf(x);
#else
  return ef_expf(x);
#endif
}

EF_HD float ef_act_fwd(ef_act a, float x) {
  switch (a) {
  case EF_ACT_SWISH: return x / (1.0f + ef_act_exp(-x));
  case EF_ACT_SIGMOID: return 1.0f / (1.0f + ef_act_exp(-x));
  case EF_ACT_RELU: return x > 0.0f ? x : 0.0f;
  case EF_ACT_RELU6: return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f;
  default: return x;
  }
}

EF_HD float ef_act_grad(ef_act a, float x) {
  switch (a) {
  case EF_ACT_SWISH: {
    float s = 1.0f / (1.0f + ef_act_exp(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  case EF_ACT_SIGMOID: {
    float s = 1.0f / (1.0f + ef_act_exp(-x));
    return s * (1.0f - s);
  }
  case EF_ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
  case EF_ACT_RELU6: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
  default: return 1.0f;
  }
}

#endif
