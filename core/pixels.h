// uint8 pixels (N,H,W,C) to normalized values through the loader's per-channel table (data/transform.h's
// ef_transform_lut: lut[c*256 + v] = (v/255 - mean[c]) / std[c]): the rule of the CUDA feed's kernel
// (cuda/kernels.cu) and of its CPU twin, which must equal the loader's own f32 batches.
#ifndef EF_PIXELS_H
#define EF_PIXELS_H

#include <stdint.h>

#include "core/hd.h"
#include "core/lanes.h"

// Element i of an image batch with `channels` (1 or 3) channels a pixel, of value v.
EF_HD float ef_pixel_value(const float *lut, int channels, uint32_t i, uint8_t v) {
  return lut[(channels == 3 ? i % 3u : 0u) * 256u + v];
}

// The twin on the host: n elements into y of type dt (f32, or rounded to bf16 / f16).
static inline void ef_pixels_normalize_twin(void *y, ef_dtype dt, const uint8_t *px, const float *lut, int channels,
                                            int64_t n) {
  for (int64_t i = 0; i < n; i++) {
    float v = ef_pixel_value(lut, channels, (uint32_t)i, px[i]);
    ef_lanes_store(y, dt, i, 1, &v);
  }
}

#endif
