// Regularization on normalized training batches, with timm's semantics: Mixup and CutMix (one draw
// per batch, image i mixed with image n-1-i, soft targets with the label smoothing folded in) and
// random erasing (a box of noise per image). Every draw is a function of (seed, epoch, batch or
// sample index), so any number of loader threads gives the same batches, and a resume the same.
#ifndef EF_DATA_MIX_H
#define EF_DATA_MIX_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
  double mixup, cutmix; // the alpha of each one's Beta(alpha, alpha) for lambda (0: off)
  double prob;          // the probability that a batch is mixed at all  [1]
  double switch_prob;   // both on: the probability that a mixed batch is CutMix's  [0.5]
  double smoothing;     // label smoothing, folded into the targets
  bool targets;         // soft targets even when neither alpha is on (a progressive stage before Mixup's)
} ef_mix_config;

// Whether the configuration mixes; whether batches carry soft targets (it mixes, or `targets`).
bool ef_mix_on(const ef_mix_config *c);
bool ef_mix_targets(const ef_mix_config *c);

typedef struct {
  double lam;  // the share of each image's own pixels and label (1: not mixed)
  bool cutmix; // a box [y0, y1) x [x0, x1) comes from the partner, else a blend of the whole images
  int y0, y1, x0, x1;
} ef_mix_draw;

// The draw of batch `index` of `epoch` on `rank`, for h x w images: whether it mixes (prob), which
// of the two (switch_prob), lambda ~ Beta(alpha, alpha); CutMix's box of side sqrt(1 - lambda) of
// the image's, centred on a uniform pixel, clipped to the image, and lambda corrected to 1 - its
// area (timm's rand_bbox with correct_lam).
ef_mix_draw ef_mix_draw_batch(const ef_mix_config *c, uint64_t seed, int rank, int64_t epoch, int64_t index, int h,
                              int w);
// Applies a draw in place to n images (n, h, w, ch) f32 (image i with image n-1-i, from the
// originals), and writes the targets (n, classes): lambda of image i's label and 1 - lambda of its
// partner's, each one-hot smoothed to 1 - smoothing + smoothing / classes on, smoothing / classes off.
void ef_mix_apply(const ef_mix_draw *d, float *images, int n, int h, int w, int ch, const int32_t *labels, int classes,
                  double smoothing, float *targets);

typedef enum {
  EF_ERASE_PIXEL, // a standard normal value per element (timm's 'pixel', its train.py default)
  EF_ERASE_RAND,  // a standard normal value per channel ('rand')
  EF_ERASE_CONST, // zeros: the normalization's mean ('const')
} ef_erase_mode;

typedef struct {
  double prob; // the probability that an image is erased (0: off)
  ef_erase_mode mode;
} ef_erase_config;

// Random erasing of dataset sample `idx` (< 2^31) in `epoch`, a normalized image (h, w, ch) f32 in
// place, as timm's RandomErasing (one box): with probability prob, up to 10 attempts at a box of area
// U(0.02, 1/3) of the image and aspect exp(U(log 0.3, log 1/0.3)), sides rounded; the first that fits
// inside is filled. Returns whether it erased.
bool ef_erase_image(const ef_erase_config *c, float *img, int h, int w, int ch, uint64_t seed, int64_t epoch,
                    int64_t idx);

#endif
