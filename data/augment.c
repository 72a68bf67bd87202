// The augmentation ops of data/augment.h, one table row each (name, how it is computed, its
// level-to-argument rule), written after PIL 9.4's C code (Blend.c, Filter.c, Geometry.c) and
// ImageOps/ImageEnhance so that every op gives PIL's pixels exactly; then the two policies.
#include "data/augment.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

// PIL's x86-64 build fuses no multiply-adds, and exact pixels need the same roundings: GCC in ISO
// C mode (-std=c11) contracts nothing; clang would, within an expression, unless told.
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

enum { FILL = 128 }; // what geometric ops and cutout leave where no source pixel lands

// ---- point ops: a lookup table per channel ------------------------------------------------

// Fills lut[0..n) for the image and returns n: 1 when the channels share the table, else im->c.
typedef int lut_fn(const ef_image *im, double arg, uint8_t lut[3][256]);

static void histogram(const ef_image *im, uint32_t hist[3][256]) {
  memset(hist, 0, sizeof(uint32_t[3][256]));
  size_t n = (size_t)im->w * (size_t)im->h, c = (size_t)im->c;
  const uint8_t *px = im->px; // in a local: the counts could alias the ef_image
  for (size_t p = 0; p < n; p++)
    for (size_t ch = 0; ch < c; ch++) hist[ch][px[p * c + ch]]++;
}

// PIL's Image.blend of one byte: d + f (v - d) in float, clipped to [0, 255] and truncated. (PIL
// clips only for f outside [0, 1]; inside, the value cannot leave the range.)
static inline uint8_t blend(uint8_t d, uint8_t v, float f) {
  float t = (float)d + f * (float)(v - d);
  t = t < 0.0f ? 0.0f : t;
  t = t > 255.0f ? 255.0f : t;
  return (uint8_t)t;
}

// ImageOps.autocontrast, cutoff 0: each channel's [lo, hi] stretched to [0, 255] (kept if hi <= lo).
static int lut_autocontrast(const ef_image *im, double arg, uint8_t lut[3][256]) {
  uint32_t hist[3][256];
  histogram(im, hist);
  for (int ch = 0; ch < im->c; ch++) {
    int lo = 0, hi = 255;
    while (lo < 255 && !hist[ch][lo]) lo++;
    while (hi > 0 && !hist[ch][hi]) hi--;
    double scale = hi > lo ? 255.0 / (hi - lo) : 1.0, offset = hi > lo ? -lo * scale : 0.0;
    for (int i = 0; i < 256; i++) {
      int v = (int)(i * scale + offset);
      lut[ch][i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
    }
  }
  return im->c;
}

// ImageOps.equalize per channel: step = (pixels - count of the last used value) // 255; value i
// maps to (step//2 + pixels below i) // step, clipped; kept when step is 0.
static int lut_equalize(const ef_image *im, double arg, uint8_t lut[3][256]) {
  uint32_t hist[3][256];
  histogram(im, hist);
  for (int ch = 0; ch < im->c; ch++) {
    int64_t total = 0, last = 0;
    for (int i = 0; i < 256; i++) {
      total += hist[ch][i];
      if (hist[ch][i]) last = hist[ch][i];
    }
    int64_t step = (total - last) / 255, n = step / 2;
    for (int i = 0; i < 256; i++) {
      int64_t v = step ? n / step : i;
      lut[ch][i] = (uint8_t)(v > 255 ? 255 : v);
      n += hist[ch][i];
    }
  }
  return im->c;
}

static int lut_invert(const ef_image *im, double arg, uint8_t lut[3][256]) {
  for (int i = 0; i < 256; i++) lut[0][i] = (uint8_t)(255 - i);
  return 1;
}

// Keeps the top `arg` bits (0 bits: black; 8 or more: unchanged).
static int lut_posterize(const ef_image *im, double arg, uint8_t lut[3][256]) {
  int bits = arg < 0 ? 0 : arg > 8 ? 8 : (int)arg;
  uint8_t mask = (uint8_t)(0xff00u >> bits);
  for (int i = 0; i < 256; i++) lut[0][i] = (uint8_t)(i & mask);
  return 1;
}

static int lut_solarize(const ef_image *im, double arg, uint8_t lut[3][256]) {
  for (int i = 0; i < 256; i++) lut[0][i] = (uint8_t)(i < arg ? i : 255 - i);
  return 1;
}

// The official solarize_add: values below 128 get `arg` added, clipped to [0, 255].
static int lut_solarize_add(const ef_image *im, double arg, uint8_t lut[3][256]) {
  double add = fmax(-256.0, fmin(256.0, arg));
  for (int i = 0; i < 256; i++) {
    int v = i < 128 ? i + (int)add : i;
    lut[0][i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
  }
  return 1;
}

// ImageEnhance.Contrast: blend with the constant int(mean luma + 0.5).
static int lut_contrast(const ef_image *im, double arg, uint8_t lut[3][256]) {
  size_t n = (size_t)im->w * (size_t)im->h;
  uint64_t sum = 0;
  for (size_t p = 0; p < n; p++) sum += im->c == 3 ? ef_luma(im->px + 3 * p) : im->px[p];
  uint8_t mean = (uint8_t)((double)sum / (double)n + 0.5);
  for (int i = 0; i < 256; i++) lut[0][i] = blend(mean, (uint8_t)i, (float)arg);
  return 1;
}

// ImageEnhance.Brightness: blend with black.
static int lut_brightness(const ef_image *im, double arg, uint8_t lut[3][256]) {
  for (int i = 0; i < 256; i++) lut[0][i] = blend(0, (uint8_t)i, (float)arg);
  return 1;
}

// (Pixel pointers are kept in locals in the loops: a byte store may alias the ef_image itself.)
static void apply_lut(ef_image *im, uint8_t lut[3][256]) {
  size_t n = (size_t)im->w * (size_t)im->h, c = (size_t)im->c;
  uint8_t *px = im->px;
  for (size_t p = 0; p < n; p++)
    for (size_t ch = 0; ch < c; ch++) px[p * c + ch] = lut[ch][px[p * c + ch]];
}

// ---- enhancements against a per-pixel degenerate image -----------------------------------

// Writes the degenerate image of ImageEnhance into out (shaped like im).
typedef void degenerate_fn(const ef_image *im, ef_image *out);

// ImageEnhance.Color: the luma (convert("L")), replicated (a gray image is its own).
static void degenerate_gray(const ef_image *im, ef_image *out) {
  size_t n = (size_t)im->w * (size_t)im->h;
  const uint8_t *in = im->px;
  uint8_t *o = out->px;
  if (im->c == 1) {
    memcpy(o, in, n);
    return;
  }
  for (size_t p = 0; p < n; p++) o[3 * p] = o[3 * p + 1] = o[3 * p + 2] = ef_luma(in + 3 * p);
}

// ImageEnhance.Sharpness: ImageFilter.SMOOTH, [[1,1,1],[1,5,1],[1,1,1]]/13, on the interior; the
// border is copied. Filter.c sums in float with weights 1/13f, 5/13f, adds 0.5 and truncates: that
// is round(S/13) of the integer sum S exactly, as S/13 + 0.5 is never within 1/26 of an integer.
static void degenerate_smooth(const ef_image *im, ef_image *out) {
  size_t row = (size_t)im->w * (size_t)im->c, c = (size_t)im->c;
  memcpy(out->px, im->px, row * (size_t)im->h);
  for (int y = 1; y < im->h - 1; y++) {
    const uint8_t *up = im->px + (size_t)(y - 1) * row, *mid = up + row, *down = mid + row;
    uint8_t *o = out->px + (size_t)y * row;
    for (size_t i = c; i + c < row; i++) {
      unsigned s =
          up[i - c] + up[i] + up[i + c] + mid[i - c] + 5u * mid[i] + mid[i + c] + down[i - c] + down[i] + down[i + c];
      o[i] = (uint8_t)((s + 6) / 13);
    }
  }
}

// im = blend(degenerate, im, f).
static void blend_images(ef_image *im, const ef_image *degenerate, float f) {
  size_t n = (size_t)im->w * (size_t)im->h * (size_t)im->c;
  uint8_t *px = im->px;
  const uint8_t *d = degenerate->px;
  for (size_t i = 0; i < n; i++) px[i] = blend(d[i], px[i], f);
}

// ---- geometric ops: PIL's affine transform with nearest sampling --------------------------

// Python's round(v, 15), correctly rounded to 15 decimals: print them, read them back.
static double round15(double v) {
  char buf[32];
  snprintf(buf, sizeof buf, "%.15f", v);
  return strtod(buf, NULL);
}

// The inverse matrix of Image.rotate(degrees) about the centre (w/2, h/2), as PIL builds it, with
// the cosine and sine rounded to 15 decimals: that makes right angles exact, which decides the
// pixels where a sampling coordinate is exactly 0. (PIL first takes the angle mod 360, which moves
// them by rounding errors only: over 8000 random angles up to 1e7 degrees, no pixel changed.)
static void rotate_matrix(int w, int h, double degrees, double a[6]) {
  double angle = -(degrees * (3.14159265358979323846 / 180.0)), cx = w / 2.0, cy = h / 2.0;
  a[0] = a[4] = round15(cos(angle));
  a[1] = round15(sin(angle));
  a[3] = -a[1];
  a[2] = a[0] * -cx + a[1] * -cy + cx;
  a[5] = a[3] * -cx + a[4] * -cy + cy;
}

// Geometry.c takes 16.16 fixed point when the four corners map within +-32768.
static bool fits_fixed(const double a[6], int w, int h) {
  for (int k = 0; k < 4; k++) {
    int x = k & 1 ? w : 0, y = k & 2 ? h : 0;
    if (!(fabs(x * a[0] + y * a[1] + a[2]) < 32768.0 && fabs(x * a[3] + y * a[4] + a[5]) < 32768.0)) return false;
  }
  return true;
}

static int64_t fix16(double v) { return (int64_t)floor(v * 65536.0 + 0.5); }

// The c bytes of source pixel p, or the fill where p is NULL.
static inline void put(uint8_t *out, const uint8_t *p, int c) {
  for (int k = 0; k < c; k++) out[k] = p ? p[k] : FILL;
}

// Image.transform(size, AFFINE, a, NEAREST, fillcolor=128): output pixel (x, y) takes the source
// pixel under (a0 (x+.5) + a1 (y+.5) + a2, a3 (x+.5) + a4 (y+.5) + a5), or 128 outside. PIL walks
// the rows incrementally, in double for a pure scale/translation or far-reaching matrices and in
// 16.16 fixed point otherwise; the same arithmetic gives the same pixels.
static void affine(ef_image *im, ef_image *tmp, const double a[6]) {
  int w = im->w, h = im->h, c = im->c;
  ef_image_reshape(tmp, w, h, c);
  memcpy(tmp->px, im->px, (size_t)w * (size_t)h * (size_t)c);
  const uint8_t *src = tmp->px;
  uint8_t *out = im->px;
  if ((a[1] == 0 && a[3] == 0) || !fits_fixed(a, w, h)) {
    double xo = a[2] + a[1] * 0.5 + a[0] * 0.5, yo = a[5] + a[4] * 0.5 + a[3] * 0.5;
    for (int y = 0; y < h; y++, xo += a[1], yo += a[4]) {
      double xx = xo, yy = yo;
      for (int x = 0; x < w; x++, xx += a[0], yy += a[3], out += c) {
        bool in = xx >= 0 && xx < w && yy >= 0 && yy < h;
        put(out, in ? src + ((size_t)(int)yy * (size_t)w + (size_t)(int)xx) * (size_t)c : NULL, c);
      }
    }
  } else {
    int64_t a0 = fix16(a[0]), a1 = fix16(a[1]), a3 = fix16(a[3]), a4 = fix16(a[4]);
    int64_t xo = fix16(a[2] + a[0] * 0.5 + a[1] * 0.5), yo = fix16(a[5] + a[3] * 0.5 + a[4] * 0.5);
    for (int y = 0; y < h; y++, xo += a1, yo += a4) {
      int64_t xx = xo, yy = yo;
      for (int x = 0; x < w; x++, xx += a0, yy += a3, out += c) {
        bool in = xx >= 0 && yy >= 0 && (xx >> 16) < w && (yy >> 16) < h;
        put(out, in ? src + ((size_t)(yy >> 16) * (size_t)w + (size_t)(xx >> 16)) * (size_t)c : NULL, c);
      }
    }
  }
}

// The official cutout: the square [cy - half, cy + half) x [cx - half, cx + half), clipped, set to
// 128, its centre uniform over the pixels.
static void cutout(ef_image *im, double half_size, ef_rng_seq *rng) {
  EF_ASSERT(rng, "Cutout draws its centre: rng is NULL");
  int cy = ef_rng_seq_below(rng, im->h), cx = ef_rng_seq_below(rng, im->w);
  int half = (int)fmax(0.0, fmin(half_size, (double)im->w + im->h));
  int y0 = cy > half ? cy - half : 0, y1 = cy + half < im->h ? cy + half : im->h;
  int x0 = cx > half ? cx - half : 0, x1 = cx + half < im->w ? cx + half : im->w;
  size_t c = (size_t)im->c;
  for (int y = y0; y < y1; y++)
    memset(im->px + ((size_t)y * (size_t)im->w + (size_t)x0) * c, FILL, (size_t)(x1 - x0) * c);
}

// ---- the op table -------------------------------------------------------------------------

typedef enum { KIND_LUT, KIND_BLEND, KIND_AFFINE, KIND_ROTATE, KIND_CUTOUT } op_kind;

#define ENHANCE .at_10 = {1.8, 1.8}, .base = 0.1
static const struct {
  const char *name;
  op_kind kind;
  lut_fn *lut;               // KIND_LUT
  degenerate_fn *degenerate; // KIND_BLEND
  int coef;                  // KIND_AFFINE: the entry of the identity matrix that takes the argument
  double at_10[2];           // the argument at level 10 under AutoAugment, RandAugment
  double base;               // added to it (enhancement factors start at 0.1)
  bool integer;              // the argument is truncated to an integer
  bool sign;                 // the policies negate the argument half the time
} ops[EF_AUG_NUM_OPS] = {
    [EF_AUG_AUTOCONTRAST] = {"AutoContrast", KIND_LUT, .lut = lut_autocontrast},
    [EF_AUG_EQUALIZE] = {"Equalize", KIND_LUT, .lut = lut_equalize},
    [EF_AUG_INVERT] = {"Invert", KIND_LUT, .lut = lut_invert},
    [EF_AUG_ROTATE] = {"Rotate", KIND_ROTATE, .at_10 = {30, 30}, .sign = true},
    [EF_AUG_POSTERIZE] = {"Posterize", KIND_LUT, .lut = lut_posterize, .at_10 = {4, 4}, .integer = true},
    [EF_AUG_SOLARIZE] = {"Solarize", KIND_LUT, .lut = lut_solarize, .at_10 = {256, 256}, .integer = true},
    [EF_AUG_SOLARIZE_ADD] = {"SolarizeAdd", KIND_LUT, .lut = lut_solarize_add, .at_10 = {110, 110}, .integer = true},
    [EF_AUG_COLOR] = {"Color", KIND_BLEND, .degenerate = degenerate_gray, ENHANCE},
    [EF_AUG_CONTRAST] = {"Contrast", KIND_LUT, .lut = lut_contrast, ENHANCE},
    [EF_AUG_BRIGHTNESS] = {"Brightness", KIND_LUT, .lut = lut_brightness, ENHANCE},
    [EF_AUG_SHARPNESS] = {"Sharpness", KIND_BLEND, .degenerate = degenerate_smooth, ENHANCE},
    [EF_AUG_SHEAR_X] = {"ShearX", KIND_AFFINE, .coef = 1, .at_10 = {0.3, 0.3}, .sign = true}, // (1, s, 0, 0, 1, 0)
    [EF_AUG_SHEAR_Y] = {"ShearY", KIND_AFFINE, .coef = 3, .at_10 = {0.3, 0.3}, .sign = true}, // (1, 0, 0, s, 1, 0)
    [EF_AUG_TRANSLATE_X] = {"TranslateX", KIND_AFFINE, .coef = 2, .at_10 = {250, 100}, .sign = true},
    [EF_AUG_TRANSLATE_Y] = {"TranslateY", KIND_AFFINE, .coef = 5, .at_10 = {250, 100}, .sign = true},
    [EF_AUG_CUTOUT] = {"Cutout", KIND_CUTOUT, .at_10 = {100, 40}, .integer = true},
};
#undef ENHANCE

static void check_op(ef_aug_op op) { EF_ASSERT(op >= 0 && op < EF_AUG_NUM_OPS, "augmentation op %d", (int)op); }

const char *ef_aug_op_name(ef_aug_op op) {
  check_op(op);
  return ops[op].name;
}

void ef_aug_apply(ef_image *im, ef_image *tmp, ef_aug_op op, float arg, ef_rng_seq *rng) {
  check_op(op);
  EF_ASSERT(isfinite(arg), "%s with argument %g", ops[op].name, (double)arg);
  switch (ops[op].kind) {
  case KIND_LUT: {
    uint8_t lut[3][256];
    int filled = ops[op].lut(im, arg, lut);
    for (int ch = filled; ch < im->c; ch++) memcpy(lut[ch], lut[0], 256); // a shared table, per channel
    apply_lut(im, lut);
    break;
  }
  case KIND_BLEND:
    ef_image_reshape(tmp, im->w, im->h, im->c);
    ops[op].degenerate(im, tmp);
    blend_images(im, tmp, arg);
    break;
  case KIND_AFFINE: {
    double a[6] = {1, 0, 0, 0, 1, 0};
    a[ops[op].coef] = arg;
    affine(im, tmp, a);
    break;
  }
  case KIND_ROTATE: {
    double a[6];
    rotate_matrix(im->w, im->h, arg, a);
    affine(im, tmp, a);
    break;
  }
  case KIND_CUTOUT: cutout(im, arg, rng); break;
  }
}

float ef_aug_level_to_arg(ef_aug_op op, int level, bool randaugment) {
  check_op(op);
  EF_ASSERT(level >= 0, "%s at level %d", ops[op].name, level);
  double arg = (level / 10.0) * ops[op].at_10[randaugment] + ops[op].base;
  return (float)(ops[op].integer ? trunc(arg) : arg);
}

// ---- the policies -------------------------------------------------------------------------

static ef_aug_step draw_step(ef_aug_op op, int level, bool randaugment, ef_rng_seq *rng) {
  ef_aug_step s = {op, ef_aug_level_to_arg(op, level, randaugment)};
  if (ops[op].sign && ef_rng_seq_uniform(rng) < 0.5f) s.arg = -s.arg;
  return s;
}

// policy_v0 of the official autoaugment.py: (op, probability, level) pairs.
static const struct {
  ef_aug_op op;
  float prob;
  int level;
} policy_v0[][2] = {
    {{EF_AUG_EQUALIZE, 0.8f, 1}, {EF_AUG_SHEAR_Y, 0.8f, 4}},
    {{EF_AUG_COLOR, 0.4f, 9}, {EF_AUG_EQUALIZE, 0.6f, 3}},
    {{EF_AUG_COLOR, 0.4f, 1}, {EF_AUG_ROTATE, 0.6f, 8}},
    {{EF_AUG_SOLARIZE, 0.8f, 3}, {EF_AUG_EQUALIZE, 0.4f, 7}},
    {{EF_AUG_SOLARIZE, 0.4f, 2}, {EF_AUG_SOLARIZE, 0.6f, 2}},
    {{EF_AUG_COLOR, 0.2f, 0}, {EF_AUG_EQUALIZE, 0.8f, 8}},
    {{EF_AUG_EQUALIZE, 0.4f, 8}, {EF_AUG_SOLARIZE_ADD, 0.8f, 3}},
    {{EF_AUG_SHEAR_X, 0.2f, 9}, {EF_AUG_ROTATE, 0.6f, 8}},
    {{EF_AUG_COLOR, 0.6f, 1}, {EF_AUG_EQUALIZE, 1.0f, 2}},
    {{EF_AUG_INVERT, 0.4f, 9}, {EF_AUG_ROTATE, 0.6f, 0}},
    {{EF_AUG_EQUALIZE, 1.0f, 9}, {EF_AUG_SHEAR_Y, 0.6f, 3}},
    {{EF_AUG_COLOR, 0.4f, 7}, {EF_AUG_EQUALIZE, 0.6f, 0}},
    {{EF_AUG_POSTERIZE, 0.4f, 6}, {EF_AUG_AUTOCONTRAST, 0.4f, 7}},
    {{EF_AUG_SOLARIZE, 0.6f, 8}, {EF_AUG_COLOR, 0.6f, 9}},
    {{EF_AUG_SOLARIZE, 0.2f, 4}, {EF_AUG_ROTATE, 0.8f, 9}},
    {{EF_AUG_ROTATE, 1.0f, 7}, {EF_AUG_TRANSLATE_Y, 0.8f, 9}},
    {{EF_AUG_SHEAR_X, 0.0f, 0}, {EF_AUG_SOLARIZE, 0.8f, 4}},
    {{EF_AUG_SHEAR_Y, 0.8f, 0}, {EF_AUG_COLOR, 0.6f, 4}},
    {{EF_AUG_COLOR, 1.0f, 0}, {EF_AUG_ROTATE, 0.6f, 2}},
    {{EF_AUG_EQUALIZE, 0.8f, 4}, {EF_AUG_EQUALIZE, 0.0f, 8}},
    {{EF_AUG_EQUALIZE, 1.0f, 4}, {EF_AUG_AUTOCONTRAST, 0.6f, 2}},
    {{EF_AUG_SHEAR_Y, 0.4f, 7}, {EF_AUG_SOLARIZE_ADD, 0.6f, 7}},
    {{EF_AUG_POSTERIZE, 0.8f, 2}, {EF_AUG_SOLARIZE, 0.6f, 10}},
    {{EF_AUG_SOLARIZE, 0.6f, 8}, {EF_AUG_EQUALIZE, 0.6f, 1}},
    {{EF_AUG_COLOR, 0.8f, 6}, {EF_AUG_ROTATE, 0.4f, 5}},
};
enum { NUM_SUB_POLICIES = sizeof policy_v0 / sizeof policy_v0[0] };

// available_ops of the official distort_image_with_randaugment, in its order.
static const ef_aug_op randaugment_ops[] = {
    EF_AUG_AUTOCONTRAST, EF_AUG_EQUALIZE,    EF_AUG_INVERT,     EF_AUG_ROTATE,       EF_AUG_POSTERIZE, EF_AUG_SOLARIZE,
    EF_AUG_COLOR,        EF_AUG_CONTRAST,    EF_AUG_BRIGHTNESS, EF_AUG_SHARPNESS,    EF_AUG_SHEAR_X,   EF_AUG_SHEAR_Y,
    EF_AUG_TRANSLATE_X,  EF_AUG_TRANSLATE_Y, EF_AUG_CUTOUT,     EF_AUG_SOLARIZE_ADD,
};
enum { NUM_RANDAUGMENT_OPS = sizeof randaugment_ops / sizeof randaugment_ops[0] };

int ef_autoaugment_draw(ef_rng_seq *rng, ef_aug_step steps[2], int *n) {
  int k = ef_rng_seq_below(rng, NUM_SUB_POLICIES);
  *n = 0;
  for (int i = 0; i < 2; i++)
    if (ef_rng_seq_uniform(rng) < policy_v0[k][i].prob)
      steps[(*n)++] = draw_step(policy_v0[k][i].op, policy_v0[k][i].level, false, rng);
  return k;
}

ef_aug_step ef_randaugment_draw(int m, ef_rng_seq *rng) {
  EF_ASSERT(m >= 0 && m <= 30, "RandAugment magnitude %d (0-30)", m);
  return draw_step(randaugment_ops[ef_rng_seq_below(rng, NUM_RANDAUGMENT_OPS)], m, true, rng);
}

void ef_autoaugment(ef_image *im, ef_image *tmp, ef_rng_seq *rng) {
  ef_aug_step steps[2];
  int n;
  ef_autoaugment_draw(rng, steps, &n);
  for (int i = 0; i < n; i++) ef_aug_apply(im, tmp, steps[i].op, steps[i].arg, rng);
}

void ef_randaugment(ef_image *im, ef_image *tmp, int n, int m, ef_rng_seq *rng) {
  EF_ASSERT(n >= 0, "RandAugment with %d layers", n);
  for (int i = 0; i < n; i++) {
    ef_aug_step s = ef_randaugment_draw(m, rng);
    ef_aug_apply(im, tmp, s.op, s.arg, rng);
  }
}
