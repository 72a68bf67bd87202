// Transforms against hand-computed expectations: random-resized-crop boxes (ranges, the centre
// fallback, determinism), the evaluation geometry, resampling of constant, identical and
// hand-averaged images, flips, channel conversion and the normalization table. Pixel parity
// with torchvision is parity_transforms.py's job.
#include <math.h>

#include "data/augment.h"
#include "data/encode.h"
#include "data/transform.h"
#include "tests/harness.h"

static ef_rng_seq seq(uint64_t index) {
  return (ef_rng_seq){.seed = 3, .stream = ef_rng_stream(EF_RNG_AUGMENT, 0), .next = index * 1024};
}

static void test_rrc_ranges(void) {
  const float scale[2] = {0.08f, 1}, ratio[2] = {0.75f, 4.0f / 3};
  int fits = 0;
  double min_area = 1, max_area = 0;
  for (int i = 0; i < 2000; i++) {
    ef_rng_seq r = seq((uint64_t)i);
    ef_crop c = ef_rrc_crop(500, 375, scale, ratio, &r);
    CHECK(c.x >= 0 && c.y >= 0 && c.w > 0 && c.h > 0 && c.x + c.w <= 500 && c.y + c.h <= 375, "crop %d: %dx%d+%d+%d", i,
          c.w, c.h, c.x, c.y);
    double area = (double)c.w * c.h / (500.0 * 375), ar = (double)c.w / c.h;
    // Rounding w and h moves the area and ratio slightly outside the drawn ranges.
    if (area > 0.075 && area <= 1 && ar > 0.73 && ar < 1.36) fits++;
    min_area = fmin(min_area, area), max_area = fmax(max_area, area);
    ef_rng_seq again = seq((uint64_t)i);
    ef_crop c2 = ef_rrc_crop(500, 375, scale, ratio, &again);
    CHECK(!memcmp(&c, &c2, sizeof c), "crop %d is not a function of its draws", i);
  }
  CHECK(fits == 2000, "%d of 2000 crops in range", fits);
  CHECK(min_area < 0.1 && max_area > 0.9, "areas %.3f ... %.3f do not span the range", min_area, max_area);
}

static void test_rrc_fallback(void) {
  // A 1000x10 strip: no crop of ratio <= 4/3 and area >= 8% fits, so the centre fallback clamps
  // the ratio: h = 10, w = round(10 * 4/3) = 13, centred.
  const float scale[2] = {0.08f, 1}, ratio[2] = {0.75f, 4.0f / 3};
  ef_rng_seq r = seq(1);
  ef_crop c = ef_rrc_crop(1000, 10, scale, ratio, &r);
  CHECK(c.w == 13 && c.h == 10 && c.x == 493 && c.y == 0, "wide fallback %dx%d+%d+%d", c.w, c.h, c.x, c.y);
  r = seq(2);
  c = ef_rrc_crop(10, 1000, scale, ratio, &r);
  CHECK(c.w == 10 && c.h == 13 && c.x == 0 && c.y == 493, "tall fallback %dx%d+%d+%d", c.w, c.h, c.x, c.y);
  // Full-image crops only: scale 1 and ratio exactly the image's.
  r = seq(3);
  c = ef_rrc_crop(40, 30, (float[]){1, 1}, (float[]){4.0f / 3, 4.0f / 3}, &r);
  CHECK(c.w == 40 && c.h == 30 && c.x == 0 && c.y == 0, "whole image %dx%d+%d+%d", c.w, c.h, c.x, c.y);
}

static void test_eval_geometry(void) {
  int rw, rh, ox, oy;
  // 500x375 -> shorter side 256, 341x256 (int(256*500/375) = 341); crop 224 at round(58.5) = 58
  // (Python rounds half to even) and 16.
  ef_eval_geometry(500, 375, 224, 0.875f, &rw, &rh, &ox, &oy);
  CHECK(rw == 341 && rh == 256 && ox == 58 && oy == 16, "500x375: %dx%d at %d,%d", rw, rh, ox, oy);
  ef_eval_geometry(375, 500, 224, 0.875f, &rw, &rh, &ox, &oy);
  CHECK(rw == 256 && rh == 341 && ox == 16 && oy == 58, "375x500: %dx%d at %d,%d", rw, rh, ox, oy);
  ef_eval_geometry(227, 224, 224, 1.0f, &rw, &rh, &ox, &oy); // offset round(1.5) = 2
  CHECK(rw == 227 && rh == 224 && ox == 2 && oy == 0, "227x224: %dx%d at %d,%d", rw, rh, ox, oy);
  ef_eval_geometry(28, 28, 28, 1.0f, &rw, &rh, &ox, &oy);
  CHECK(rw == 28 && rh == 28 && ox == 0 && oy == 0, "28x28 crop_pct 1: %dx%d at %d,%d", rw, rh, ox, oy);
  ef_eval_geometry(600, 600, 380, 0.922, &rw, &rh, &ox, &oy); // B4's crop: floor(380/0.922) = 412
  CHECK(rw == 412 && rh == 412 && ox == 16 && oy == 16, "B4: %dx%d at %d,%d", rw, rh, ox, oy);
}

static void resample_whole(const ef_image *src, int ow, int oh, ef_interp interp, ef_image *out) {
  ef_resample_scratch s = {0};
  ef_image_reshape(out, ow, oh, src->c);
  ef_resample_box b = {.x1 = src->w, .y1 = src->h, .hi_x = src->w, .hi_y = src->h, .out_w = ow, .out_h = oh};
  ef_resample(src, &b, interp, &s, out);
  ef_image_free(&s.rows);
  free(s.coef);
}

static void test_resample(void) {
  ef_image src = {0}, out = {0};
  ef_image_reshape(&src, 37, 23, 3);
  for (size_t i = 0; i < 37 * 23 * 3; i++) src.px[i] = 77;
  for (int interp = 0; interp < 2; interp++) {
    resample_whole(&src, 11, 50, (ef_interp)interp, &out);
    int bad = 0;
    for (size_t i = 0; i < 11 * 50 * 3; i++) bad += out.px[i] != 77;
    CHECK(bad == 0, "interp %d: a constant image changed in %d values", interp, bad);
  }
  for (size_t i = 0; i < 37 * 23 * 3; i++) src.px[i] = (uint8_t)(i * 31 + 7);
  for (int interp = 0; interp < 2; interp++) {
    resample_whole(&src, 37, 23, (ef_interp)interp, &out);
    CHECK(!memcmp(out.px, src.px, 37 * 23 * 3), "interp %d: same size is not the identity", interp);
  }
  // Halving with the bilinear (triangle) filter of support 2: output pixel 0 covers source
  // pixels 0, 1, 2 with weights 3/4, 1/4 ... normalized over those in the image: (0.75a + 0.75b
  // + 0.25c) / 1.75 at the left edge, (0.25a + 0.75b + 0.75c + 0.25d) / 2 inside.
  ef_image row = {0};
  ef_image_reshape(&row, 6, 1, 1);
  const uint8_t v[6] = {0, 40, 80, 120, 160, 200};
  memcpy(row.px, v, 6);
  resample_whole(&row, 3, 1, EF_INTERP_BILINEAR, &out);
  int want0 = (int)lround((0.75 * 0 + 0.75 * 40 + 0.25 * 80) / 1.75),
      want1 = (int)lround((0.25 * 40 + 0.75 * 80 + 0.75 * 120 + 0.25 * 160) / 2);
  CHECK(out.px[0] == want0 && out.px[1] == want1, "halving: %d %d, want %d %d", out.px[0], out.px[1], want0, want1);
  ef_image_free(&row), ef_image_free(&src), ef_image_free(&out);
}

static void test_sample(void) {
  // A 4x2 gray image through the eval transform at its own size: replicated to RGB, unchanged.
  const uint8_t px[8] = {0, 10, 20, 30, 40, 50, 60, 255};
  ef_transform t = ef_transform_defaults(false, 2, 3);
  t.crop_pct = 1;
  ef_transform_scratch s = {0};
  ef_sample_src src = {.pixels = px, .w = 4, .h = 2, .c = 1, .name = "tiny"};
  ef_rng_seq r = seq(0);
  CHECK(ef_transform_sample(&t, &src, &r, &s) == EF_OK, "%s", ef_last_error());
  // Resize the shorter side to 2: 4x2 stays 4x2; the centre 2x2 window is columns 1..2.
  const uint8_t want[12] = {10, 10, 10, 20, 20, 20, 50, 50, 50, 60, 60, 60};
  CHECK(s.out.w == 2 && s.out.c == 3 && !memcmp(s.out.px, want, 12), "gray to RGB centre crop: %d %d %d ...",
        s.out.px[0], s.out.px[3], s.out.px[6]);
  CHECK(r.next == 0, "evaluation drew %llu random words", (unsigned long long)r.next);
  // Training with the whole image as the crop and a certain flip: the image mirrored.
  t = ef_transform_defaults(true, 4, 1);
  t.scale[0] = t.scale[1] = 1, t.ratio[0] = t.ratio[1] = 2, t.flip = 1;
  src.w = 4, src.h = 2;
  CHECK(ef_transform_sample(&t, &src, &r, &s) == EF_OK, "%s", ef_last_error());
  // The crop is the whole 4x2 image resized to 4x4, then mirrored: compare with the unflipped run.
  ef_image flipped = {0};
  ef_image_reshape(&flipped, 4, 4, 1);
  memcpy(flipped.px, s.out.px, 16);
  t.flip = 0;
  CHECK(ef_transform_sample(&t, &src, &r, &s) == EF_OK && s.flipped == 0, "unflipped");
  int bad = 0;
  for (int y = 0; y < 4; y++)
    for (int x = 0; x < 4; x++) bad += flipped.px[y * 4 + x] != s.out.px[y * 4 + 3 - x];
  CHECK(bad == 0, "flip is not a mirror (%d pixels)", bad);
  ef_image_free(&flipped);
  ef_transform_scratch_free(&s);
}

// With a policy, a training sample is the crop and flip without it, then the policy drawing on
// the rest of the same sequence.
static void test_augment_follows_crop(void) {
  ef_image src = {0}, plain = {0}, tmp = {0};
  ef_image_reshape(&src, 40, 30, 3);
  for (size_t i = 0; i < src.cap; i++) src.px[i] = (uint8_t)(i * 37 + i / 120);
  ef_sample_src in = {.pixels = src.px, .w = 40, .h = 30, .c = 3, .name = "pattern"};
  ef_transform_scratch s = {0};
  for (int kind = EF_AUGMENT_AUTO; kind <= EF_AUGMENT_RAND; kind++) {
    int differ = 0;
    for (uint64_t i = 0; i < 20; i++) {
      ef_transform t = ef_transform_defaults(true, 16, 3);
      ef_rng_seq r = seq(i);
      CHECK(ef_transform_sample(&t, &in, &r, &s) == EF_OK, "%s", ef_last_error());
      ef_image_reshape(&plain, 16, 16, 3);
      memcpy(plain.px, s.out.px, 16 * 16 * 3);
      if (kind == EF_AUGMENT_AUTO) ef_autoaugment(&plain, &tmp, &r);
      else ef_randaugment(&plain, &tmp, t.ra_n, t.ra_m, &r);
      t.augment = (ef_augment_kind)kind;
      ef_rng_seq r2 = seq(i);
      CHECK(ef_transform_sample(&t, &in, &r2, &s) == EF_OK && r2.next == r.next &&
                !memcmp(s.out.px, plain.px, 16 * 16 * 3),
            "policy %d sample %llu: not crop + flip + policy", kind, (unsigned long long)i);
      ef_rng_seq r3 = seq(i);
      t.augment = EF_AUGMENT_NONE;
      ef_transform_sample(&t, &in, &r3, &s);
      differ += memcmp(s.out.px, plain.px, 16 * 16 * 3) != 0;
    }
    CHECK(differ >= 10, "policy %d changed only %d of 20 samples", kind, differ);
  }
  ef_transform_scratch_free(&s);
  ef_image_free(&src), ef_image_free(&plain), ef_image_free(&tmp);
}

// A JPEG decoded at 1/4 or 1/2 scale (and, for training, only over the crop) must give nearly the
// pixels of the full decode: a wrong box mapping shifts a gradient by many levels.
static void test_dct_matches_full_decode(void) {
  ef_image src = {0};
  ef_image_reshape(&src, 400, 300, 3);
  for (int y = 0; y < 300; y++)
    for (int x = 0; x < 400; x++) {
      uint8_t *p = src.px + (y * 400 + x) * 3;
      p[0] = (uint8_t)(x * 255 / 399), p[1] = (uint8_t)(y * 255 / 299),
      p[2] = (uint8_t)(128 + 100 * sin(x / 17.0 + y / 23.0));
    }
  uint8_t *jpg;
  size_t len;
  CHECK(ef_image_encode_jpeg(&src, 95, &jpg, &len) == EF_OK, "%s", ef_last_error());
  ef_sample_src in = {.bytes = jpg, .len = len, .name = "gradient.jpg"};
  ef_transform_scratch s = {0};
  ef_image exact = {0};
  for (int train = 0; train < 2; train++)
    for (uint64_t i = 0; i < 8; i++) {
      ef_transform t = ef_transform_defaults(train, 48, 3);
      t.dct = false;
      ef_rng_seq r = seq(i);
      CHECK(ef_transform_sample(&t, &in, &r, &s) == EF_OK, "%s", ef_last_error());
      ef_image_reshape(&exact, 48, 48, 3);
      memcpy(exact.px, s.out.px, 48 * 48 * 3);
      t.dct = true;
      r = seq(i);
      CHECK(ef_transform_sample(&t, &in, &r, &s) == EF_OK, "%s", ef_last_error());
      CHECK_CLOSE(s.out.px, exact.px, 48 * 48 * 3, TEST_MEAN, 0, 2.0, "train %d sample %llu (crop %dx%d): DCT decode",
                  train, (unsigned long long)i, s.crop.w, s.crop.h);
    }
  free(jpg);
  ef_transform_scratch_free(&s);
  ef_image_free(&src), ef_image_free(&exact);
}

static void test_lut_and_validation(void) {
  ef_transform t = ef_transform_defaults(true, 224, 3);
  float lut[768];
  ef_transform_lut(&t, lut);
  CHECK(lut[0] == (0.0f - 0.485f) / 0.229f && lut[256 + 255] == (1.0f - 0.456f) / 0.224f &&
            lut[512 + 128] == (128.0f / 255.0f - 0.406f) / 0.225f,
        "normalization table %g %g %g", lut[0], lut[511], lut[640]);
  CHECK(ef_transform_validate(&t) == EF_OK, "defaults invalid: %s", ef_last_error());
  t.augment = EF_AUGMENT_RAND, t.ra_m = 31;
  CHECK(ef_transform_validate(&t) == EF_ERR_INVALID && strstr(ef_last_error(), "m=31"), "RandAugment m 31: %s",
        ef_last_error());
  t = ef_transform_defaults(false, 224, 3);
  t.crop_pct = 1.5f;
  CHECK(ef_transform_validate(&t) == EF_ERR_INVALID && strstr(ef_last_error(), "crop fraction"), "crop_pct 1.5: %s",
        ef_last_error());
  t = ef_transform_defaults(true, 224, 3);
  t.scale[0] = 0;
  CHECK(ef_transform_validate(&t) == EF_ERR_INVALID, "scale 0 accepted");
}

int main(void) {
  RUN(test_rrc_ranges);
  RUN(test_rrc_fallback);
  RUN(test_eval_geometry);
  RUN(test_resample);
  RUN(test_sample);
  RUN(test_augment_follows_crop);
  RUN(test_dct_matches_full_decode);
  RUN(test_lut_and_validation);
  return test_exit_code();
}
