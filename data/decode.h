// JPEG (libjpeg-turbo) and PNG (libpng) decoding into 8-bit gray or RGB images. JPEGs can be
// shrunk in the DCT domain (by M/8) and decoded only over a region of interest, which is most of
// the speed of the training pipeline. Corrupt, truncated and unsupported files give
// EF_ERR_FORMAT with a message naming the file; decoding is reentrant (one call per thread).
#ifndef EF_DATA_DECODE_H
#define EF_DATA_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "data/image.h"

typedef enum { EF_IMAGE_JPEG = 1, EF_IMAGE_PNG = 2 } ef_image_kind;

// Reads the kind (from the magic bytes) and the size in pixels from the header, without decoding.
// Here and in ef_image_decode, images over 65535 pixels a side or 1 GiB of RGB are EF_ERR_FORMAT.
ef_status ef_image_probe(const uint8_t *buf, size_t len, const char *name, ef_image_kind *kind, int *w, int *h);

typedef struct {
  int x, y, w, h;   // region of interest in source pixels; w == 0 means the whole image
  int min_w, min_h; // JPEG: shrink by the smallest factor M/8 (M = 1, 2 or 4) that keeps the
                    // region, as scaled (w*scale_x by h*scale_y below), at least min_w x min_h
                    // pixels (M = 8 when none does); both 0 (or PNG): full resolution
  int channels;     // 1: gray (PIL's luma for colour sources), 3: RGB (gray replicated)
  bool strict;      // JPEG: a libjpeg warning (corrupt data it decodes around, as PIL does) is an error
} ef_decode_request;

// Where the decoded pixels sit: decoded pixel (col j, row i) is pixel (off_x + j, off_y + i) of
// the whole image scaled by (scale_x, scale_y) (= ceil(W*M/8)/W, ceil(H*M/8)/H; 1 when not
// shrunk). So the source box (x, y, w, h) is the decoded box
// (x*scale_x - off_x, y*scale_y - off_y, w*scale_x, h*scale_y).
typedef struct {
  double scale_x, scale_y;
  int off_x, off_y;
  int warnings; // JPEG: libjpeg's warnings while decoding (corrupt data decoded around)
} ef_decode_info;

// Decodes buf into out (reshaped to the decoded size): at least the region of interest, maybe more
// (JPEG regions snap outward to whole MCUs; PNGs are always decoded whole). CMYK and YCCK JPEGs
// become RGB as PIL converts them (PIL takes the samples as Adobe's inverted CMYK, marker or not);
// PNG palettes and 1/2/4-bit depths are expanded, 16-bit samples keep their high byte, and alpha
// and transparency are dropped (as PIL's convert("RGB")). A JPEG that ends before the last row
// needed is an error, not gray rows; a PNG whose image data is complete needs no IEND (as in PIL).
// libjpeg's warnings (a bad Huffman code, a marker hit early: corrupt data) are counted, or with
// rq->strict make the decode fail; PNG's chunks carry CRCs, whose mismatch is always an error.
// A region outside the image is EF_ERR_INVALID. info is written on success.
ef_status ef_image_decode(const uint8_t *buf, size_t len, const char *name, const ef_decode_request *rq, ef_image *out,
                          ef_decode_info *info);

#endif
