// Augmentation (data/augment.h): op names and the official level-to-argument values; every op on
// hand-computed pixels; cutout's square; the policies' draws against the official v0 table and
// op list (choice frequencies, application probabilities, signs, words used) and their
// determinism. `test_augment --pil` checks cases from tests/augment_pil.py against PIL's pixels.
#include <stdbool.h>

#include "data/augment.h"
#include "tests/harness.h"

static const char *official_names[EF_AUG_NUM_OPS] = {
    "AutoContrast", "Equalize",   "Invert",    "Rotate", "Posterize", "Solarize",   "SolarizeAdd", "Color",
    "Contrast",     "Brightness", "Sharpness", "ShearX", "ShearY",    "TranslateX", "TranslateY",  "Cutout"};

// The op named `name` (official spelling), or EF_AUG_NUM_OPS.
static ef_aug_op op_by_name(const char *name) {
  for (int op = 0; op < EF_AUG_NUM_OPS; op++)
    if (!strcmp(ef_aug_op_name((ef_aug_op)op), name)) return (ef_aug_op)op;
  return EF_AUG_NUM_OPS;
}

// A w x h x c image holding px (or Philox bytes of `seed` when px is NULL).
static ef_image make_image(int w, int h, int c, const uint8_t *px, uint64_t seed) {
  ef_image im = {0};
  ef_image_reshape(&im, w, h, c);
  size_t n = (size_t)w * (size_t)h * (size_t)c;
  for (size_t i = 0; i < n; i++) im.px[i] = px ? px[i] : (uint8_t)ef_philox_u32(seed, 7, 0, i);
  return im;
}

static bool same_image(const ef_image *a, const ef_image *b) {
  return a->w == b->w && a->h == b->h && a->c == b->c &&
         !memcmp(a->px, b->px, (size_t)a->w * (size_t)a->h * (size_t)a->c);
}

static void test_names(void) {
  for (int op = 0; op < EF_AUG_NUM_OPS; op++)
    CHECK(!strcmp(ef_aug_op_name((ef_aug_op)op), official_names[op]), "op %d is '%s', not '%s'", op,
          ef_aug_op_name((ef_aug_op)op), official_names[op]);
}

// Values of the official Python mapping (level/10 * const, int() where it truncates), computed
// with Python floats: 23/10*110 = 252.99999999999997 gives 252, 23/10*100 gives 229.
static void test_level_to_arg(void) {
  static const struct {
    ef_aug_op op;
    int level;
    bool ra;
    float want;
  } cases[] = {
      {EF_AUG_ROTATE, 8, false, 24.0f},        {EF_AUG_ROTATE, 30, true, 90.0f},
      {EF_AUG_ROTATE, 0, false, 0.0f},         {EF_AUG_SHEAR_X, 9, false, 0.27f},
      {EF_AUG_SHEAR_Y, 3, true, 0.09f},        {EF_AUG_SHEAR_Y, 10, false, 0.3f},
      {EF_AUG_TRANSLATE_X, 9, false, 225.0f},  {EF_AUG_TRANSLATE_Y, 9, true, 90.0f},
      {EF_AUG_TRANSLATE_X, 3, true, 30.0f},    {EF_AUG_TRANSLATE_Y, 10, false, 250.0f},
      {EF_AUG_POSTERIZE, 6, false, 2.0f},      {EF_AUG_POSTERIZE, 5, false, 2.0f},
      {EF_AUG_POSTERIZE, 30, true, 12.0f},     {EF_AUG_SOLARIZE, 3, false, 76.0f},
      {EF_AUG_SOLARIZE, 10, false, 256.0f},    {EF_AUG_SOLARIZE_ADD, 3, false, 33.0f},
      {EF_AUG_SOLARIZE_ADD, 23, true, 252.0f}, {EF_AUG_COLOR, 9, false, 1.72f},
      {EF_AUG_CONTRAST, 0, false, 0.1f},       {EF_AUG_BRIGHTNESS, 5, true, 1.0f},
      {EF_AUG_SHARPNESS, 30, true, 5.5f},      {EF_AUG_CUTOUT, 10, false, 100.0f},
      {EF_AUG_CUTOUT, 9, true, 36.0f},         {EF_AUG_CUTOUT, 23, false, 229.0f},
      {EF_AUG_CUTOUT, 23, true, 92.0f},        {EF_AUG_AUTOCONTRAST, 7, false, 0.0f},
      {EF_AUG_EQUALIZE, 3, true, 0.0f},        {EF_AUG_INVERT, 9, false, 0.0f},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    float got = ef_aug_level_to_arg(cases[i].op, cases[i].level, cases[i].ra);
    CHECK(got == cases[i].want, "%s level %d (%s): %.9g, want %.9g", official_names[cases[i].op], cases[i].level,
          cases[i].ra ? "RandAugment" : "AutoAugment", (double)got, (double)cases[i].want);
  }
}

// The point ops on 9 bytes (three RGB pixels).
static void test_point_ops(void) {
  static const uint8_t in[9] = {0, 1, 100, 127, 128, 129, 200, 254, 255};
  static const struct {
    ef_aug_op op;
    float arg;
    uint8_t want[9];
  } cases[] = {
      {EF_AUG_INVERT, 0, {255, 254, 155, 128, 127, 126, 55, 1, 0}},
      {EF_AUG_POSTERIZE, 2, {0, 0, 64, 64, 128, 128, 192, 192, 192}},
      {EF_AUG_POSTERIZE, 7, {0, 0, 100, 126, 128, 128, 200, 254, 254}},
      {EF_AUG_POSTERIZE, 0, {0}},
      {EF_AUG_POSTERIZE, 12, {0, 1, 100, 127, 128, 129, 200, 254, 255}},
      {EF_AUG_SOLARIZE, 128, {0, 1, 100, 127, 127, 126, 55, 1, 0}},
      {EF_AUG_SOLARIZE, 0, {255, 254, 155, 128, 127, 126, 55, 1, 0}},
      {EF_AUG_SOLARIZE, 256, {0, 1, 100, 127, 128, 129, 200, 254, 255}},
      {EF_AUG_SOLARIZE_ADD, 33, {33, 34, 133, 160, 128, 129, 200, 254, 255}},
      {EF_AUG_SOLARIZE_ADD, 200, {200, 201, 255, 255, 128, 129, 200, 254, 255}},
      {EF_AUG_SOLARIZE_ADD, -20, {0, 0, 80, 107, 128, 129, 200, 254, 255}},
      {EF_AUG_BRIGHTNESS, 0.5f, {0, 0, 50, 63, 64, 64, 100, 127, 127}},
      {EF_AUG_BRIGHTNESS, 1.9f, {0, 1, 190, 241, 243, 245, 255, 255, 255}},
      {EF_AUG_BRIGHTNESS, 0, {0}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ef_image im = make_image(3, 1, 3, in, 0), tmp = {0};
    ef_aug_apply(&im, &tmp, cases[i].op, cases[i].arg, NULL);
    for (int k = 0; k < 9; k++)
      CHECK(im.px[k] == cases[i].want[k], "%s(%g) of %d: %d, want %d", official_names[cases[i].op],
            (double)cases[i].arg, in[k], im.px[k], cases[i].want[k]);
    ef_image_free(&im);
    ef_image_free(&tmp);
  }
}

// Equalize of known histograms, per channel: 100 x 10, 200 x 20, 300 x 30 has step (600 - 300)
// // 255 = 1 and maps to 0, 100 and 300 -> 255; a constant channel stays; 599 x 5 and 1 x 250
// has step 2 and maps to 0 and 600 // 2 -> 255. A 16-pixel two-value image has step 0: unchanged.
// AutoContrast stretches [50, 150] to 0, 127 (int(127.49...)), 255.
static void test_histogram_ops(void) {
  ef_image im = {0}, tmp = {0};
  ef_image_reshape(&im, 20, 30, 3);
  for (int p = 0; p < 600; p++) {
    im.px[3 * p] = p < 100 ? 10 : p < 300 ? 20 : 30;
    im.px[3 * p + 1] = 77;
    im.px[3 * p + 2] = p == 417 ? 250 : 5;
  }
  ef_aug_apply(&im, &tmp, EF_AUG_EQUALIZE, 0, NULL);
  for (int p = 0; p < 600; p++) {
    uint8_t want[3] = {p < 100 ? 0 : p < 300 ? 100 : 255, 77, p == 417 ? 255 : 0};
    CHECK(!memcmp(im.px + 3 * p, want, 3), "equalize pixel %d: (%d %d %d), want (%d %d %d)", p, im.px[3 * p],
          im.px[3 * p + 1], im.px[3 * p + 2], want[0], want[1], want[2]);
  }
  ef_image_reshape(&im, 4, 4, 1);
  for (int p = 0; p < 16; p++) im.px[p] = p < 8 ? 10 : 20;
  ef_aug_apply(&im, &tmp, EF_AUG_EQUALIZE, 0, NULL);
  for (int p = 0; p < 16; p++) CHECK(im.px[p] == (p < 8 ? 10 : 20), "equalize with step 0, pixel %d: %d", p, im.px[p]);

  ef_image_reshape(&im, 3, 1, 1);
  memcpy(im.px, (uint8_t[]){50, 100, 150}, 3);
  ef_aug_apply(&im, &tmp, EF_AUG_AUTOCONTRAST, 0, NULL);
  CHECK(im.px[0] == 0 && im.px[1] == 127 && im.px[2] == 255, "autocontrast of 50 100 150: %d %d %d", im.px[0], im.px[1],
        im.px[2]);
  memset(im.px, 90, 3);
  ef_aug_apply(&im, &tmp, EF_AUG_AUTOCONTRAST, 0, NULL);
  CHECK(im.px[0] == 90 && im.px[2] == 90, "autocontrast of a constant image: %d", im.px[0]);
  ef_image_free(&im);
  ef_image_free(&tmp);
}

// Enhancements by hand. Red (255,0,0) has luma 76, blue (0,0,255) luma 29: Contrast 0 gives their
// mean 52.5 rounded to 53 everywhere, Color 0 their lumas, Color 2 extrapolates and clips.
// Sharpness 0 of a lone 13 among zeros (3x3) gives 5*13/13 = 5 at the centre, of a 0 among 13s
// 8*13/13 = 8; the border stays; Sharpness 2 gives 13 + (13 - 5) = 21.
static void test_enhance_ops(void) {
  static const uint8_t red_blue[6] = {255, 0, 0, 0, 0, 255};
  static const struct {
    ef_aug_op op;
    float arg;
    uint8_t want[6];
  } colour[] = {
      {EF_AUG_CONTRAST, 0, {53, 53, 53, 53, 53, 53}}, {EF_AUG_COLOR, 0, {76, 76, 76, 29, 29, 29}},
      {EF_AUG_COLOR, 2, {255, 0, 0, 0, 0, 255}},      {EF_AUG_COLOR, 0.5f, {165, 38, 38, 14, 14, 142}},
      {EF_AUG_CONTRAST, 1, {255, 0, 0, 0, 0, 255}},
  };
  for (size_t i = 0; i < sizeof colour / sizeof colour[0]; i++) {
    ef_image im = make_image(2, 1, 3, red_blue, 0), tmp = {0};
    ef_aug_apply(&im, &tmp, colour[i].op, colour[i].arg, NULL);
    CHECK(!memcmp(im.px, colour[i].want, 6), "%s(%g) of red, blue: (%d %d %d) (%d %d %d)", official_names[colour[i].op],
          (double)colour[i].arg, im.px[0], im.px[1], im.px[2], im.px[3], im.px[4], im.px[5]);
    ef_image_free(&im);
    ef_image_free(&tmp);
  }
  static const struct {
    uint8_t centre, around;
    float arg;
    uint8_t want;
  } sharp[] = {{13, 0, 0, 5}, {0, 13, 0, 8}, {13, 0, 2, 21}, {13, 0, 1, 13}};
  for (size_t i = 0; i < sizeof sharp / sizeof sharp[0]; i++) {
    uint8_t px[9];
    memset(px, sharp[i].around, 9);
    px[4] = sharp[i].centre;
    ef_image im = make_image(3, 3, 1, px, 0), tmp = {0};
    ef_aug_apply(&im, &tmp, EF_AUG_SHARPNESS, sharp[i].arg, NULL);
    px[4] = sharp[i].want;
    CHECK(!memcmp(im.px, px, 9), "sharpness(%g) of %d among %d: centre %d, want %d (border %d)", (double)sharp[i].arg,
          sharp[i].centre, sharp[i].around, im.px[4], sharp[i].want, im.px[0]);
    ef_image_free(&im);
    ef_image_free(&tmp);
  }
}

// Geometric ops on small RGB images whose pixel (x, y) holds (10y + x, 50 + 10y + x, 100 + 10y + x):
// out(x, y) must be in(m0 x + m1 y + m2, m3 x + m4 y + m5), or 128 where that lies outside.
// Rotations are counter-clockwise about the centre; translations move the content against the
// argument; ShearX 1 samples x + y + 1 (pixel centres: (x + .5) + (y + .5)).
static void test_geometry(void) {
  static const struct {
    ef_aug_op op;
    float arg;
    int w, h, m[6];
  } cases[] = {
      {EF_AUG_TRANSLATE_X, 1, 4, 3, {1, 0, 1, 0, 1, 0}}, {EF_AUG_TRANSLATE_X, -1, 4, 3, {1, 0, -1, 0, 1, 0}},
      {EF_AUG_TRANSLATE_Y, 2, 4, 3, {1, 0, 0, 0, 1, 2}}, {EF_AUG_TRANSLATE_Y, -1, 4, 3, {1, 0, 0, 0, 1, -1}},
      {EF_AUG_TRANSLATE_X, 0, 4, 3, {1, 0, 0, 0, 1, 0}}, {EF_AUG_ROTATE, 0, 4, 3, {1, 0, 0, 0, 1, 0}},
      {EF_AUG_ROTATE, 360, 4, 3, {1, 0, 0, 0, 1, 0}},    {EF_AUG_ROTATE, 180, 4, 3, {-1, 0, 3, 0, -1, 2}},
      {EF_AUG_ROTATE, -180, 4, 3, {-1, 0, 3, 0, -1, 2}}, {EF_AUG_ROTATE, 90, 3, 3, {0, -1, 2, 1, 0, 0}},
      {EF_AUG_ROTATE, -90, 3, 3, {0, 1, 0, -1, 0, 2}},   {EF_AUG_ROTATE, 270, 3, 3, {0, 1, 0, -1, 0, 2}},
      {EF_AUG_ROTATE, 90, 4, 3, {0, -1, 3, 1, 0, 0}},    {EF_AUG_SHEAR_X, 1, 4, 3, {1, 1, 1, 0, 1, 0}},
      {EF_AUG_SHEAR_Y, -1, 4, 3, {1, 0, 0, -1, 1, 0}},   {EF_AUG_SHEAR_X, 0, 4, 3, {1, 0, 0, 0, 1, 0}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    int w = cases[i].w, h = cases[i].h;
    const int *m = cases[i].m;
    ef_image im = {0}, tmp = {0};
    ef_image_reshape(&im, w, h, 3);
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++)
        for (int ch = 0; ch < 3; ch++) im.px[(y * w + x) * 3 + ch] = (uint8_t)(50 * ch + 10 * y + x);
    ef_aug_apply(&im, &tmp, cases[i].op, cases[i].arg, NULL);
    int bad = 0;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        int sx = m[0] * x + m[1] * y + m[2], sy = m[3] * x + m[4] * y + m[5];
        bool in = sx >= 0 && sx < w && sy >= 0 && sy < h;
        for (int ch = 0; ch < 3; ch++) bad += im.px[(y * w + x) * 3 + ch] != (in ? 50 * ch + 10 * sy + sx : 128);
      }
    CHECK(!bad, "%s(%g) on %dx%d: %d bytes wrong", official_names[cases[i].op], (double)cases[i].arg, w, h, bad);
    ef_image_free(&im);
    ef_image_free(&tmp);
  }
}

// Cutout fills the clipped square [cy - half, cy + half) x [cx - half, cx + half) with 128, its
// centre drawn as row then column; nothing else changes. Over 200 draws the centre reaches the
// corners, so the clipping is exercised too.
static void test_cutout(void) {
  static const int halves[] = {0, 1, 3, 8, 100};
  ef_image im = {0}, tmp = {0};
  bool clipped = false;
  for (int t = 0; t < 200; t++) {
    int w = 20, h = 16, half = halves[t % 5];
    ef_image_reshape(&im, w, h, 3);
    memset(im.px, 7, (size_t)w * h * 3);
    ef_rng_seq rng = {.seed = 5, .stream = ef_rng_stream(EF_RNG_AUGMENT, 0), .step = (uint32_t)t}, copy = rng;
    int cy = ef_rng_seq_below(&copy, h), cx = ef_rng_seq_below(&copy, w);
    ef_aug_apply(&im, &tmp, EF_AUG_CUTOUT, (float)half, &rng);
    CHECK(rng.next == 2, "cutout drew %llu words", (unsigned long long)rng.next);
    int bad = 0;
    for (int y = 0; y < h; y++)
      for (int x = 0; x < w; x++) {
        bool in = y >= cy - half && y < cy + half && x >= cx - half && x < cx + half;
        for (int ch = 0; ch < 3; ch++) bad += im.px[(y * w + x) * 3 + ch] != (in ? 128 : 7);
      }
    CHECK(!bad, "cutout half %d at (%d, %d): %d bytes wrong", half, cx, cy, bad);
    clipped |= half == 3 && (cx < 3 || cy < 3 || cx + 3 > w || cy + 3 > h);
  }
  CHECK(clipped, "no cutout square of half-size 3 reached an edge");
  ef_image_free(&im);
  ef_image_free(&tmp);
}

// policy_v0 as the official autoaugment.py lists it.
static const struct {
  const char *name;
  float prob;
  int level;
} official_v0[25][2] = {
    {{"Equalize", 0.8f, 1}, {"ShearY", 0.8f, 4}},        {{"Color", 0.4f, 9}, {"Equalize", 0.6f, 3}},
    {{"Color", 0.4f, 1}, {"Rotate", 0.6f, 8}},           {{"Solarize", 0.8f, 3}, {"Equalize", 0.4f, 7}},
    {{"Solarize", 0.4f, 2}, {"Solarize", 0.6f, 2}},      {{"Color", 0.2f, 0}, {"Equalize", 0.8f, 8}},
    {{"Equalize", 0.4f, 8}, {"SolarizeAdd", 0.8f, 3}},   {{"ShearX", 0.2f, 9}, {"Rotate", 0.6f, 8}},
    {{"Color", 0.6f, 1}, {"Equalize", 1.0f, 2}},         {{"Invert", 0.4f, 9}, {"Rotate", 0.6f, 0}},
    {{"Equalize", 1.0f, 9}, {"ShearY", 0.6f, 3}},        {{"Color", 0.4f, 7}, {"Equalize", 0.6f, 0}},
    {{"Posterize", 0.4f, 6}, {"AutoContrast", 0.4f, 7}}, {{"Solarize", 0.6f, 8}, {"Color", 0.6f, 9}},
    {{"Solarize", 0.2f, 4}, {"Rotate", 0.8f, 9}},        {{"Rotate", 1.0f, 7}, {"TranslateY", 0.8f, 9}},
    {{"ShearX", 0.0f, 0}, {"Solarize", 0.8f, 4}},        {{"ShearY", 0.8f, 0}, {"Color", 0.6f, 4}},
    {{"Color", 1.0f, 0}, {"Rotate", 0.6f, 2}},           {{"Equalize", 0.8f, 4}, {"Equalize", 0.0f, 8}},
    {{"Equalize", 1.0f, 4}, {"AutoContrast", 0.6f, 2}},  {{"ShearY", 0.4f, 7}, {"SolarizeAdd", 0.6f, 7}},
    {{"Posterize", 0.8f, 2}, {"Solarize", 0.6f, 10}},    {{"Solarize", 0.6f, 8}, {"Equalize", 0.6f, 1}},
    {{"Color", 0.8f, 6}, {"Rotate", 0.4f, 5}},
};

static bool signed_op(ef_aug_op op) {
  return op == EF_AUG_ROTATE || op == EF_AUG_SHEAR_X || op == EF_AUG_SHEAR_Y || op == EF_AUG_TRANSLATE_X ||
         op == EF_AUG_TRANSLATE_Y;
}

// The header's draw for one op: the mapping of `level`, negated for the signed ops when their
// sign word is below 0.5.
static ef_aug_step replay_step(ef_aug_op op, int level, bool ra, ef_rng_seq *r) {
  ef_aug_step s = {op, ef_aug_level_to_arg(op, level, ra)};
  if (signed_op(op) && ef_rng_seq_uniform(r) < 0.5f) s.arg = -s.arg;
  return s;
}

static bool same_steps(const ef_aug_step *a, const ef_aug_step *b, int n) {
  for (int i = 0; i < n; i++)
    if (a[i].op != b[i].op || a[i].arg != b[i].arg) return false;
  return true;
}

// 25000 AutoAugment draws, each equal to the header's draw order replayed on the official table
// (sub-policy word, then per op its probability word and, when it applies and is signed, its
// sign word; at most 5 words). Statistics: each sub-policy about 1000 times, each op applied
// with its probability, nonzero signed arguments negative half the time.
static void test_autoaugment_draws(void) {
  enum { N = 25000 };
  int chosen[25] = {0}, applied[25][2] = {{0}}, negative = 0, nsigned = 0, bad = 0;
  for (int t = 0; t < N; t++) {
    ef_rng_seq rng = {.seed = 11, .stream = ef_rng_stream(EF_RNG_AUGMENT, 0), .next = 8 * (uint64_t)t}, replay = rng;
    int want_k = ef_rng_seq_below(&replay, 25), want_n = 0;
    ef_aug_step want[2], got[2];
    bool hit[2];
    for (int i = 0; i < 2; i++) {
      hit[i] = ef_rng_seq_uniform(&replay) < official_v0[want_k][i].prob;
      if (hit[i])
        want[want_n++] =
            replay_step(op_by_name(official_v0[want_k][i].name), official_v0[want_k][i].level, false, &replay);
    }
    int n = -1, k = ef_autoaugment_draw(&rng, got, &n);
    if (k != want_k || n != want_n || !same_steps(got, want, n) || rng.next != replay.next ||
        rng.next - 8 * (uint64_t)t > 5) {
      bad++;
      continue;
    }
    chosen[k]++;
    for (int i = 0; i < 2; i++) applied[k][i] += hit[i];
    for (int j = 0; j < n; j++)
      if (got[j].arg != 0 && signed_op(got[j].op)) nsigned++, negative += got[j].arg < 0;
  }
  CHECK(!bad, "%d of %d draws differ from the official table in the documented draw order", bad, N);
  for (int k = 0; k < 25; k++) {
    CHECK(chosen[k] > 850 && chosen[k] < 1150, "sub-policy %d chosen %d times of %d", k, chosen[k], N);
    for (int i = 0; i < 2; i++) {
      float f = applied[k][i] / (float)(chosen[k] ? chosen[k] : 1);
      CHECK(fabsf(f - official_v0[k][i].prob) < 0.07f, "sub-policy %d op %d (%s): applied %.3f, want %.1f", k, i,
            official_v0[k][i].name, f, official_v0[k][i].prob);
    }
  }
  CHECK(nsigned > 5000 && fabs((double)negative / nsigned - 0.5) < 0.03, "%d of %d signed arguments negative", negative,
        nsigned);
}

// available_ops of the official RandAugment, in order.
static const char *official_ra[16] = {"AutoContrast", "Equalize",   "Invert",     "Rotate",     "Posterize", "Solarize",
                                      "Color",        "Contrast",   "Brightness", "Sharpness",  "ShearX",    "ShearY",
                                      "TranslateX",   "TranslateY", "Cutout",     "SolarizeAdd"};

// 16000 RandAugment layers at m = 9 and 30, each equal to the replayed draw (op word into the
// official list, then the sign word of a signed op; at most 2 words) with RandAugment's constants.
// Statistics: each op about 1000 times, nonzero signed arguments negative half the time.
static void test_randaugment_draws(void) {
  enum { N = 16000 };
  int count[16] = {0}, negative = 0, nsigned = 0, bad = 0;
  for (int t = 0; t < N; t++) {
    int m = t % 2 ? 30 : 9;
    ef_rng_seq rng = {.seed = 12, .stream = ef_rng_stream(EF_RNG_AUGMENT, 0), .step = 3, .next = 4 * (uint64_t)t},
               replay = rng;
    int i = ef_rng_seq_below(&replay, 16);
    ef_aug_step want = replay_step(op_by_name(official_ra[i]), m, true, &replay), got = ef_randaugment_draw(m, &rng);
    if (!same_steps(&got, &want, 1) || rng.next != replay.next || rng.next - 4 * (uint64_t)t > 2) {
      bad++;
      continue;
    }
    count[i]++;
    if (got.arg != 0 && signed_op(got.op)) nsigned++, negative += got.arg < 0;
  }
  CHECK(!bad, "%d of %d layers differ from the official list in the documented draw order", bad, N);
  for (int i = 0; i < 16; i++)
    CHECK(count[i] > 850 && count[i] < 1150, "%s chosen %d times of %d", official_ra[i], count[i], N);
  CHECK(nsigned > 4000 && fabs((double)negative / nsigned - 0.5) < 0.03, "%d of %d signed arguments negative", negative,
        nsigned);
}

// The policies on a 32x24 image: the same sequence gives the same pixels and the same words used,
// equal to drawing the steps and applying them one by one; different sequences give different
// pixels; RandAugment with 0 layers neither changes nor draws.
static void test_policies_apply(void) {
  enum { SEEDS = 20 };
  ef_image orig = make_image(32, 24, 3, NULL, 3), out[SEEDS] = {{0}}, again = {0}, tmp = {0};
  int bad = 0;
  for (int policy = 0; policy < 2; policy++) {
    for (int s = 0; s < SEEDS; s++) {
      ef_rng_seq rng = {.seed = 100 + (uint64_t)s, .stream = ef_rng_stream(EF_RNG_AUGMENT, 0), .next = 16}, steps = rng;
      out[s] = make_image(32, 24, 3, orig.px, 0);
      again = make_image(32, 24, 3, orig.px, 0);
      if (policy == 0) {
        ef_autoaugment(&out[s], &tmp, &rng);
        ef_aug_step st[2];
        int n;
        ef_autoaugment_draw(&steps, st, &n);
        for (int i = 0; i < n; i++) ef_aug_apply(&again, &tmp, st[i].op, st[i].arg, &steps);
      } else {
        ef_randaugment(&out[s], &tmp, 3, 9, &rng);
        for (int i = 0; i < 3; i++) {
          ef_aug_step st = ef_randaugment_draw(9, &steps);
          ef_aug_apply(&again, &tmp, st.op, st.arg, &steps);
        }
      }
      bad += !same_image(&out[s], &again) || rng.next != steps.next || rng.next - 16 > (policy == 0 ? 5u : 9u);
      ef_image_free(&again);
    }
    int distinct = 0;
    for (int s = 0; s < SEEDS; s++) {
      bool seen = false;
      for (int r = 0; r < s && !seen; r++) seen = same_image(&out[s], &out[r]);
      distinct += !seen;
    }
    CHECK(distinct >= SEEDS / 2, "%s: %d distinct results from %d sequences", policy ? "RandAugment" : "AutoAugment",
          distinct, SEEDS);
    for (int s = 0; s < SEEDS; s++) ef_image_free(&out[s]);
  }
  CHECK(!bad, "%d policy runs differ from their own draws applied step by step", bad);
  ef_image im = make_image(32, 24, 3, orig.px, 0);
  ef_rng_seq rng = {.seed = 1};
  ef_randaugment(&im, &tmp, 0, 9, &rng);
  CHECK(same_image(&im, &orig) && rng.next == 0, "RandAugment with no layers changed the image or drew");
  ef_image_free(&im);
  ef_image_free(&orig);
  ef_image_free(&tmp);
}

// --pil: cases on stdin from tests/augment_pil.py, each a line "op arg w h c label" (arg as a hex
// float) followed by the input and PIL's output, w*h*c bytes each. Every byte must match.
static void test_pil_cases(void) {
  char line[256];
  ef_image im = {0}, tmp = {0};
  uint8_t *want = NULL;
  int cases[EF_AUG_NUM_OPS] = {0}, failed[EF_AUG_NUM_OPS] = {0};
  while (fgets(line, sizeof line, stdin)) {
    char name[32], arg_text[64];
    int w, h, c, at = 0;
    if (sscanf(line, "%31s %63s %d %d %d %n", name, arg_text, &w, &h, &c, &at) != 5 ||
        op_by_name(name) == EF_AUG_NUM_OPS) {
      CHECK(false, "bad case line '%s'", line);
      break;
    }
    line[strcspn(line, "\n")] = 0;
    ef_aug_op op = op_by_name(name);
    float arg = (float)strtod(arg_text, NULL);
    size_t n = (size_t)w * (size_t)h * (size_t)c;
    ef_image_reshape(&im, w, h, c);
    want = realloc(want, n);
    if (!want || fread(im.px, 1, n, stdin) != n || fread(want, 1, n, stdin) != n) {
      CHECK(false, "case '%s' truncated", line);
      break;
    }
    ef_aug_apply(&im, &tmp, op, arg, NULL);
    size_t diff = 0, first = 0;
    for (size_t i = n; i-- > 0;)
      if (im.px[i] != want[i]) diff++, first = i;
    cases[op]++;
    failed[op] += diff > 0;
    CHECK(!diff, "%s(%g) on %s: %zu of %zu bytes differ from PIL, first at x %zu y %zu channel %zu: %d, PIL %d", name,
          (double)arg, line + at, diff, n, first / (size_t)c % (size_t)w, first / ((size_t)c * (size_t)w),
          first % (size_t)c, im.px[first], want[first]);
  }
  for (int op = 0; op < EF_AUG_NUM_OPS; op++)
    if (cases[op]) printf("  %-14s %3d cases, %d differ from PIL\n", official_names[op], cases[op], failed[op]);
  free(want);
  ef_image_free(&im);
  ef_image_free(&tmp);
}

int main(int argc, char **argv) {
  if (argc == 2 && !strcmp(argv[1], "--pil")) {
    RUN(test_pil_cases);
    return test_exit_code();
  }
  RUN(test_names);
  RUN(test_level_to_arg);
  RUN(test_point_ops);
  RUN(test_histogram_ops);
  RUN(test_enhance_ops);
  RUN(test_geometry);
  RUN(test_cutout);
  RUN(test_autoaugment_draws);
  RUN(test_randaugment_draws);
  RUN(test_policies_apply);
  return test_exit_code();
}
