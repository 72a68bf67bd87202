// The per-sample transforms, each drawing only on its own Philox sequence: training
// (random-resized crop, horizontal flip, AutoAugment or RandAugment) and evaluation (resize the
// shorter side to size/crop_pct, centre crop), resampled exactly as PIL resizes (bilinear or
// bicubic, antialiased), so torchvision's pipelines give the same pixels; then channel
// replication or luma, and a per-channel lookup to normalized floats.
#ifndef EF_DATA_TRANSFORM_H
#define EF_DATA_TRANSFORM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/log.h"
#include "core/philox.h"
#include "data/image.h"

typedef enum { EF_INTERP_BILINEAR, EF_INTERP_BICUBIC } ef_interp;
typedef enum { EF_AUGMENT_NONE, EF_AUGMENT_AUTO, EF_AUGMENT_RAND } ef_augment_kind;

typedef struct {
  int size;                // output height and width
  int channels;            // output channels: 3 (gray sources replicated) or 1 (luma of colour)
  bool train;              // training geometry and augmentation, or evaluation geometry
  float scale[2];          // train: crop area as a fraction of the image  [0.08, 1]
  float ratio[2];          // train: crop aspect ratio w/h  [3/4, 4/3]
  float flip;              // train: probability of a horizontal flip  [0.5]
  ef_augment_kind augment; // train: after crop and flip  [none]
  int ra_n, ra_m;          // RandAugment: ops per image and magnitude  [2, 9]
  double crop_pct;         // eval: centre crop over the resized shorter side  [0.875]
  ef_interp interp;        // [bicubic, as the official code and timm]
  bool dct;                // JPEG: decode at the smallest DCT scale 1/8, 1/4 or 1/2 that keeps the
                           // crop at least `size` pixels (faster for images over twice the output;
                           // changes pixels slightly)  [true]
  float mean[3], std[3];   // normalized = (pixel/255 - mean) / std  [ImageNet's]
  bool strict;             // JPEG: corrupt data libjpeg warns about (and decodes around, as PIL does)
                           // makes the image corrupt  [false]
} ef_transform;

// The defaults above for a `size` x `size` x `channels` output.
ef_transform ef_transform_defaults(bool train, int size, int channels);
// Checks the ranges, with a clear error for each.
ef_status ef_transform_validate(const ef_transform *t);
// "train 224x224x3 rrc(0.08-1, 0.75-1.33) flip 0.5 autoaugment bicubic" and the like.
void ef_transform_describe(const ef_transform *t, char *buf, size_t len);

// A crop in source pixels.
typedef struct {
  int x, y, w, h;
} ef_crop;
// torchvision's RandomResizedCrop.get_params: 10 tries of area ~ U(scale), log-ratio ~ U(log ratio),
// w = round(sqrt(area*ratio)), h = round(sqrt(area/ratio)) that fit, at a uniform position; then
// the whole image clamped to the ratio range, centred.
ef_crop ef_rrc_crop(int w, int h, const float scale[2], const float ratio[2], ef_rng_seq *rng);
// The evaluation geometry as torchvision's Resize(floor(size/crop_pct)) + CenterCrop(size): the
// size of the resized image (*rw, *rh) and the output window's offset in it (*ox, *oy).
void ef_eval_geometry(int w, int h, int size, double crop_pct, int *rw, int *rh, int *ox, int *oy);

// Resamples `src` like PIL's Image.resize: the region (x0, y0, x1, y1) of src (float, in its
// pixels) is scaled to out_w x out_h, reading only pixels inside the integer window
// [lo_x, hi_x) x [lo_y, hi_y); of that result, the out->w x out->h window at (ox, oy) is
// written to out (already shaped, same channels). crop(box).resize() is lo = box; resize() then
// crop is lo = 0, hi = size.
typedef struct {
  double x0, y0, x1, y1;
  int lo_x, lo_y, hi_x, hi_y;
  int out_w, out_h, ox, oy;
} ef_resample_box;
// Scratch of one resampling thread: the horizontally resampled rows and the fixed-point weights.
typedef struct {
  ef_image rows;
  int32_t *coef;
  size_t coef_cap;
} ef_resample_scratch;
void ef_resample(const ef_image *src, const ef_resample_box *box, ef_interp interp, ef_resample_scratch *s,
                 ef_image *out);

// Scratch reused from sample to sample by one thread, and what the last sample drew.
typedef struct {
  ef_image decoded, out, aug;
  ef_resample_scratch resample;
  ef_crop crop; // the training crop, in source pixels
  int flipped;
  int warnings; // libjpeg's warnings decoding the sample (ef_decode_info)
} ef_transform_scratch;
void ef_transform_scratch_free(ef_transform_scratch *s);

// One sample as it comes from a dataset: decoded pixels, or the bytes of a JPEG/PNG file.
typedef struct {
  const uint8_t *pixels; // (h, w, c), or NULL
  int w, h, c;
  const uint8_t *bytes; // the encoded file, when pixels is NULL
  size_t len;
  const char *name; // for messages
} ef_sample_src;

// Transforms one sample into s->out (size x size x channels, uint8), recording the crop and flip
// it drew. Decoding errors return EF_ERR_FORMAT with the decoder's message.
ef_status ef_transform_sample(const ef_transform *t, const ef_sample_src *src, ef_rng_seq *rng,
                              ef_transform_scratch *s);

// Per-channel lookup: lut[c*256 + v] = (v/255 - mean[c]) / std[c], in float as torchvision's
// ToTensor + Normalize compute it.
void ef_transform_lut(const ef_transform *t, float lut[3 * 256]);
// The pixels of im (h, w, c) through that table into dst (h, w, c) floats.
void ef_transform_normalize(const float lut[3 * 256], const ef_image *im, float *dst);

#endif
