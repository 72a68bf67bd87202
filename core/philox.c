// The draws derived from Philox4x32-10 (the generator itself is in philox.h, shared with CUDA):
// words by index, uniforms and normals. The generator is checked against the Random123
// known-answer vectors in tests/test_core.c.
#include "core/philox.h"

#include <math.h>

uint32_t ef_philox_u32(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  uint64_t block = index >> 2;
  uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), stream, step};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return ef_philox4x32(ctr, key).v[index & 3];
}

float ef_philox_uniform(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  return ef_u32_to_uniform(ef_philox_u32(seed, stream, step, index));
}

double ef_box_muller(float u1, float u2) {
  // 1 - u1 lies in (0, 1], so the logarithm is finite.
  return sqrt(-2.0 * log(1.0 - u1)) * cos(6.283185307179586 * u2);
}

float ef_philox_normal(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  return (float)ef_box_muller(ef_philox_uniform(seed, stream, step, 2 * index),
                              ef_philox_uniform(seed, stream, step, 2 * index + 1));
}
