// Philox4x32-10 counter-based RNG (Salmon et al., SC'11). Every random draw in effnet is a pure
// function of (seed, stream, step, index): dropout and drop-path masks, initialization and
// augmentation give the same numbers on CPU and GPU, for any thread count, and on resume.
#ifndef EF_PHILOX_H
#define EF_PHILOX_H

#include <stdint.h>

#include "core/hd.h" // compiled for the host and, from CUDA sources, for the device too: one generator

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  uint32_t v[4];
} ef_philox_out;

// The raw generator: 4 words from a 128-bit counter and a 64-bit key.
EF_HD ef_philox_out ef_philox4x32(const uint32_t ctr[4], const uint32_t key[2]) {
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
  ef_philox_out out;
  out.v[0] = c0, out.v[1] = c1, out.v[2] = c2, out.v[3] = c3;
  return out;
}

// Streams are split by what draws from them, so that no two uses of one seed ever read the same
// words: the top 8 bits name the domain, the low 24 bits an index within it.
typedef enum {
  EF_RNG_INIT = 1,    // parameter initialization; index = store entry
  EF_RNG_DROPOUT = 2, // dropout and drop-path masks; index = dropout node of the graph
  EF_RNG_SHUFFLE = 3, // the order of samples; index unused (0)
  EF_RNG_AUGMENT = 4, // per-sample crops, flips and augmentations; index unused (0)
  EF_RNG_MIX = 5,     // a batch's Mixup / CutMix draw; index = the rank
  EF_RNG_ERASE = 6,   // per-sample random erasing; index 0: the box, 1: the noise
} ef_rng_domain;

static inline uint32_t ef_rng_stream(ef_rng_domain domain, uint32_t index) {
  return (uint32_t)domain << 24 | (index & 0xffffffu);
}

// Word `index` of the stream (seed, stream, step): counter {index/4 (64 bit), stream, step},
// key = seed. Four consecutive indices share one Philox call.
uint32_t ef_philox_u32(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index);

// Uniform in [0, 1) with 24 random bits, from ef_philox_u32.
float ef_philox_uniform(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index);

// Standard normal by Box-Muller from two uniforms in [0, 1) (double).
double ef_box_muller(float u1, float u2);

// Standard normal by Box-Muller from the two uniforms at indices 2*index and 2*index+1.
float ef_philox_normal(uint64_t seed, uint32_t stream, uint32_t step, uint64_t index);

// The uniform above from a raw 32-bit word (kernels that draw four at a time use this).
EF_HD float ef_u32_to_uniform(uint32_t u) { return (float)(u >> 8) * 0x1p-24f; }

// A sequence of draws for one item (one sample's augmentation): word `next`, `next + 1`, ... of
// the stream (seed, stream, step). Items give themselves disjoint ranges of `next`.
typedef struct {
  uint64_t seed;
  uint32_t stream, step;
  uint64_t next;
} ef_rng_seq;

// The next uniform in [0, 1).
static inline float ef_rng_seq_uniform(ef_rng_seq *r) {
  return ef_philox_uniform(r->seed, r->stream, r->step, r->next++);
}
// The next uniform in [lo, hi).
static inline float ef_rng_seq_range(ef_rng_seq *r, float lo, float hi) {
  return lo + (hi - lo) * ef_rng_seq_uniform(r);
}
// The next integer in [0, n), n > 0.
static inline int ef_rng_seq_below(ef_rng_seq *r, int n) {
  int k = (int)(ef_rng_seq_uniform(r) * (float)n);
  return k < n ? k : n - 1;
}

#ifdef __cplusplus
}
#endif

#endif
