// An 8-bit image in interleaved (h, w, c) layout, c = 1 (gray) or 3 (RGB), whose buffer is
// reused from image to image: the unit every decoder, transform and augmentation works on.
#ifndef EF_DATA_IMAGE_H
#define EF_DATA_IMAGE_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int w, h, c;
  uint8_t *px; // (h, w, c), rows w*c bytes apart
  size_t cap;  // bytes allocated at px
} ef_image;

// Makes im w x h x c, growing its buffer when needed (the contents are then undefined). Aborts
// with the size when memory runs out: images are small next to the training step.
void ef_image_reshape(ef_image *im, int w, int h, int c);
void ef_image_free(ef_image *im);

// Luma of an RGB pixel exactly as PIL's convert("L") computes it (ITU-R 601-2, 16-bit fixed point).
static inline uint8_t ef_luma(const uint8_t *rgb) {
  return (uint8_t)((rgb[0] * 19595u + rgb[1] * 38470u + rgb[2] * 7471u + 0x8000u) >> 16);
}

#endif
