// The reusable image buffer of data/image.h.
#include "data/image.h"

#include <stdlib.h>

#include "core/log.h"

void ef_image_reshape(ef_image *im, int w, int h, int c) {
  EF_ASSERT(w > 0 && h > 0 && (c == 1 || c == 3), "image %d x %d x %d", w, h, c);
  size_t need = (size_t)w * (size_t)h * (size_t)c;
  if (need > im->cap) {
    free(im->px);
    im->px = ef_xmalloc(need);
    im->cap = need;
  }
  im->w = w, im->h = h, im->c = c;
}

void ef_image_free(ef_image *im) {
  free(im->px);
  *im = (ef_image){0};
}
