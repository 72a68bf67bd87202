// JPEG (libjpeg-turbo) and PNG (libpng) encoding of 8-bit gray or RGB images into memory: the
// benchmark writes its ImageNet-like files with it, and the tests their datasets.
#ifndef EF_DATA_ENCODE_H
#define EF_DATA_ENCODE_H

#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "data/image.h"

// *buf (malloc'd, the caller frees) holds the file, *len bytes. quality 1 ... 100.
ef_status ef_image_encode_jpeg(const ef_image *im, int quality, uint8_t **buf, size_t *len);
ef_status ef_image_encode_png(const ef_image *im, uint8_t **buf, size_t *len);
// Writes bytes to path (for both of the above).
ef_status ef_write_file(const char *path, const uint8_t *buf, size_t len);

#endif
