// Philox4x32-10 and the derived uniform and normal draws. Checked against the Random123
// known-answer vectors in tests/test_philox.c.
#include "core/philox.h"

#include <math.h>

ef_philox_out ef_philox4x32(const uint32_t ctr[4], const uint32_t key[2]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    uint64_t p0 = (uint64_t)0xD2511F53u * c0;
    uint64_t p1 = (uint64_t)0xCD9E8D57u * c2;
    uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0;
    uint32_t n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = (uint32_t)p1;
    c2 = n2;
    c3 = (uint32_t)p0;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return (ef_philox_out){{c0, c1, c2, c3}};
}

uint32_t ef_philox_u32(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  uint64_t block = index >> 2;
  uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), stream, step};
  uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
  return ef_philox4x32(ctr, key).v[index & 3];
}

float ef_philox_uniform(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  return ef_u32_to_uniform(ef_philox_u32(seed, stream, step, index));
}

float ef_philox_normal(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index) {
  // 1 - u lies in (0, 1], so the logarithm is finite.
  double u1 = 1.0 - ef_philox_uniform(seed, stream, step, 2 * index);
  double u2 = ef_philox_uniform(seed, stream, step, 2 * index + 1);
  return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}
