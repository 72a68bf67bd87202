// Exact conversions between f32 and bf16/f16, and reads and writes of `lanes` consecutive elements
// as f32: shared by the CUDA kernels (where 4, 8 and 16 bytes are one vector access) and their CPU
// twins (scalar), so that both convert alike. Rounding is to nearest even.
#ifndef EF_LANES_H
#define EF_LANES_H

#include <stdint.h>

#include "core/dtype.h"
#include "core/hd.h"

#ifdef __CUDACC__
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

EF_HD float ef_from16(uint16_t b, ef_dtype dt) {
#ifdef __CUDA_ARCH__
  return dt == EF_BF16 ? __uint_as_float((uint32_t)b << 16) : __half2float(__ushort_as_half(b));
#else
  return dt == EF_BF16 ? ef_bf16_to_f32(b) : ef_f16_to_f32(b);
#endif
}

EF_HD uint16_t ef_to16(float v, ef_dtype dt) { // round to nearest even
#ifdef __CUDA_ARCH__
  return dt == EF_BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(v)) : __half_as_ushort(__float2half_rn(v));
#else
  return dt == EF_BF16 ? ef_f32_to_bf16(v) : ef_f32_to_f16(v);
#endif
}

// v[0 .. lanes) = p[i .. i + lanes) as f32 (f32, bf16 or f16). On the GPU, 2, 4 or 8 16-bit lanes
// are one vector access and f32 lanes go by 4 (16 bytes) when they can: the caller guarantees the
// alignment (p + i on 4, 8 or 16 bytes).
EF_HD void ef_lanes_load(const void *p, ef_dtype dt, int64_t i, int lanes, float *v) {
  if (dt == EF_F32) {
    const float *f = (const float *)p + i;
#ifdef __CUDA_ARCH__
    if (lanes % 4 == 0) {
      for (int k = 0; k < lanes; k += 4) {
        float4 q = *(const float4 *)(f + k);
        v[k] = q.x, v[k + 1] = q.y, v[k + 2] = q.z, v[k + 3] = q.w;
      }
      return;
    }
#endif
    for (int l = 0; l < lanes; l++) v[l] = f[l];
    return;
  }
  const uint16_t *h = (const uint16_t *)p + i;
#ifdef __CUDA_ARCH__
  if (lanes == 8 || lanes == 4 || lanes == 2) {
    uint32_t w[4];
    if (lanes == 8) {
      uint4 q = *(const uint4 *)h;
      w[0] = q.x, w[1] = q.y, w[2] = q.z, w[3] = q.w;
    } else if (lanes == 4) {
      uint2 q = *(const uint2 *)h;
      w[0] = q.x, w[1] = q.y;
    } else {
      w[0] = *(const uint32_t *)h;
    }
    for (int l = 0; l < lanes; l++) v[l] = ef_from16((uint16_t)(w[l / 2] >> (16 * (l % 2))), dt);
    return;
  }
#endif
  for (int l = 0; l < lanes; l++) v[l] = ef_from16(h[l], dt);
}

// p[i .. i + lanes) = v, rounded to the type (to nearest even).
EF_HD void ef_lanes_store(void *p, ef_dtype dt, int64_t i, int lanes, const float *v) {
  if (dt == EF_F32) {
    float *f = (float *)p + i;
#ifdef __CUDA_ARCH__
    if (lanes % 4 == 0) {
      for (int k = 0; k < lanes; k += 4) *(float4 *)(f + k) = make_float4(v[k], v[k + 1], v[k + 2], v[k + 3]);
      return;
    }
#endif
    for (int l = 0; l < lanes; l++) f[l] = v[l];
    return;
  }
  uint16_t *h = (uint16_t *)p + i;
#ifdef __CUDA_ARCH__
  if (lanes == 8 || lanes == 4 || lanes == 2) {
    uint32_t w[4] = {0, 0, 0, 0};
    for (int l = 0; l < lanes; l++) w[l / 2] |= (uint32_t)ef_to16(v[l], dt) << (16 * (l % 2));
    if (lanes == 8) *(uint4 *)h = make_uint4(w[0], w[1], w[2], w[3]);
    else if (lanes == 4) *(uint2 *)h = make_uint2(w[0], w[1]);
    else *(uint32_t *)h = w[0];
    return;
  }
#endif
  for (int l = 0; l < lanes; l++) h[l] = ef_to16(v[l], dt);
}

#endif
