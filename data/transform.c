// The per-sample transforms of data/transform.h: crop geometry (torchvision's), PIL's
// antialiased resampling in 22-bit fixed point (Pillow's Resample.c, reproduced so the pixels
// match), flips, augmentation, and the normalization lookup.
#include "data/transform.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/augment.h"
#include "data/decode.h"

ef_transform ef_transform_defaults(bool train, int size, int channels) {
  return (ef_transform){.size = size,
                        .channels = channels,
                        .train = train,
                        .scale = {0.08f, 1.0f},
                        .ratio = {3.0f / 4.0f, 4.0f / 3.0f},
                        .flip = train ? 0.5f : 0.0f,
                        .augment = EF_AUGMENT_NONE,
                        .ra_n = 2,
                        .ra_m = 9,
                        .crop_pct = 0.875f,
                        .interp = EF_INTERP_BICUBIC,
                        .dct = true,
                        .mean = {0.485f, 0.456f, 0.406f},
                        .std = {0.229f, 0.224f, 0.225f}};
}

ef_status ef_transform_validate(const ef_transform *t) {
  if (t->size < 1 || t->size > 8192) return EF_ERROR(EF_ERR_INVALID, "image size %d: use 1 ... 8192", t->size);
  if (t->channels != 1 && t->channels != 3) return EF_ERROR(EF_ERR_INVALID, "%d channels: use 1 or 3", t->channels);
  if (!(t->scale[0] > 0 && t->scale[0] <= t->scale[1] && t->scale[1] <= 1))
    return EF_ERROR(EF_ERR_INVALID, "crop scale %g-%g: need 0 < min <= max <= 1", t->scale[0], t->scale[1]);
  if (!(t->ratio[0] > 0 && t->ratio[0] <= t->ratio[1]))
    return EF_ERROR(EF_ERR_INVALID, "crop ratio %g-%g: need 0 < min <= max", t->ratio[0], t->ratio[1]);
  if (!(t->flip >= 0 && t->flip <= 1)) return EF_ERROR(EF_ERR_INVALID, "flip probability %g: use 0 ... 1", t->flip);
  if (!(t->crop_pct > 0 && t->crop_pct <= 1 && t->size / t->crop_pct < 65536))
    return EF_ERROR(EF_ERR_INVALID, "crop fraction %g: use (0, 1], with size / fraction below 65536", t->crop_pct);
  if (t->augment == EF_AUGMENT_RAND && (t->ra_n < 1 || t->ra_n > 16 || t->ra_m < 0 || t->ra_m > 30))
    return EF_ERROR(EF_ERR_INVALID, "RandAugment n=%d m=%d: use n in 1 ... 16 and m in 0 ... 30", t->ra_n, t->ra_m);
  for (int c = 0; c < t->channels; c++)
    if (!(t->std[c] > 0)) return EF_ERROR(EF_ERR_INVALID, "std[%d] = %g: must be positive", c, t->std[c]);
  return EF_OK;
}

void ef_transform_describe(const ef_transform *t, char *buf, size_t len) {
  const char *interp = t->interp == EF_INTERP_BICUBIC ? "bicubic" : "bilinear";
  if (!t->train) {
    snprintf(buf, len, "eval %dx%dx%d resize %d centre-crop (%.3f) %s%s%s", t->size, t->size, t->channels,
             (int)floor((double)t->size / t->crop_pct), t->crop_pct, interp, t->dct ? " dct" : "",
             t->strict ? " strict" : "");
    return;
  }
  char aug[32] = "";
  if (t->augment == EF_AUGMENT_AUTO) snprintf(aug, sizeof aug, " autoaugment");
  if (t->augment == EF_AUGMENT_RAND) snprintf(aug, sizeof aug, " randaugment(%d,%d)", t->ra_n, t->ra_m);
  snprintf(buf, len, "train %dx%dx%d rrc(%.2g-%.2g, %.2f-%.2f) flip %.2g%s %s%s%s", t->size, t->size, t->channels,
           t->scale[0], t->scale[1], t->ratio[0], t->ratio[1], t->flip, aug, interp, t->dct ? " dct" : "",
           t->strict ? " strict" : "");
}

// ---- geometry ------------------------------------------------------------------------------

ef_crop ef_rrc_crop(int w, int h, const float scale[2], const float ratio[2], ef_rng_seq *rng) {
  double area = (double)w * h, lr0 = log(ratio[0]), lr1 = log(ratio[1]);
  for (int attempt = 0; attempt < 10; attempt++) {
    double target = area * ef_rng_seq_range(rng, scale[0], scale[1]);
    double aspect = exp(lr0 + (lr1 - lr0) * ef_rng_seq_uniform(rng));
    int cw = (int)rint(sqrt(target * aspect)), ch = (int)rint(sqrt(target / aspect)); // Python's round: half to even
    if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
      int y = ef_rng_seq_below(rng, h - ch + 1);
      int x = ef_rng_seq_below(rng, w - cw + 1);
      return (ef_crop){x, y, cw, ch};
    }
  }
  double in_ratio = (double)w / h;
  int cw = w, ch = h;
  if (in_ratio < ratio[0]) ch = (int)rint(w / (double)ratio[0]);
  else if (in_ratio > ratio[1]) cw = (int)rint(h * (double)ratio[1]);
  return (ef_crop){(w - cw) / 2, (h - ch) / 2, cw, ch};
}

void ef_eval_geometry(int w, int h, int size, double crop_pct, int *rw, int *rh, int *ox, int *oy) {
  int shorter = (int)floor((double)size / crop_pct);
  if (w <= h) *rw = shorter, *rh = (int)((double)shorter * h / w);
  else *rh = shorter, *rw = (int)((double)shorter * w / h);
  *ox = (int)rint((*rw - size) / 2.0), *oy = (int)rint((*rh - size) / 2.0);
}

// ---- PIL's resampling ------------------------------------------------------------------------

#define PRECISION_BITS 22 // Pillow's (32 - 8 - 2)

static double bilinear(double x) {
  x = fabs(x);
  return x < 1 ? 1 - x : 0;
}

static double bicubic(double x) { // a = -0.5
  const double a = -0.5;
  x = fabs(x);
  if (x < 1) return ((a + 2) * x - (a + 3)) * x * x + 1;
  if (x < 2) return (((x - 5) * x + 8) * x - 4) * a;
  return 0;
}

static const struct {
  double support;
  double (*f)(double);
} filters[] = {[EF_INTERP_BILINEAR] = {1, bilinear}, [EF_INTERP_BICUBIC] = {2, bicubic}};

static void coef_reserve(ef_resample_scratch *s, size_t need) {
  if (need > s->coef_cap) {
    s->coef = ef_xrealloc(s->coef, need * sizeof *s->coef);
    s->coef_cap = need;
  }
}

// Weights of one axis as Pillow's precompute_coeffs + normalize_coeffs_8bpc: [in0, in1) of a
// window of in_size pixels scaled onto out_size pixels, for outputs o0 .. o0+count-1. Output o
// reads pixels first[o] .. first[o]+n[o]-1 with weights k[o*ksize ...]. Returns ksize.
static int axis_weights(double in0, double in1, int in_size, int out_size, int o0, int count, ef_interp interp,
                        ef_resample_scratch *s, size_t at, int *first, int *n) {
  double scale = (in1 - in0) / out_size, filterscale = scale < 1 ? 1 : scale;
  double support = filters[interp].support * filterscale, ss = 1 / filterscale;
  int ksize = (int)ceil(support) * 2 + 1;
  coef_reserve(s, at + (size_t)count * (size_t)ksize);
  for (int i = 0; i < count; i++) {
    double center = in0 + (o0 + i + 0.5) * scale, total = 0;
    int lo = (int)(center - support + 0.5), hi = (int)(center + support + 0.5);
    if (lo < 0) lo = 0;
    if (hi > in_size) hi = in_size;
    first[i] = lo, n[i] = hi - lo;
    for (int x = 0; x < hi - lo; x++) total += filters[interp].f((x + lo - center + 0.5) * ss);
    int32_t *k = s->coef + at + (size_t)i * ksize;
    for (int x = 0; x < ksize; x++) {
      double v = x < hi - lo && total != 0 ? filters[interp].f((x + lo - center + 0.5) * ss) / total : 0;
      k[x] = (int32_t)(v < 0 ? -0.5 + v * (1 << PRECISION_BITS) : 0.5 + v * (1 << PRECISION_BITS));
    }
  }
  return ksize;
}

// The scalar path's rounding (and the vector paths', for the bytes past their last whole vector).
static inline uint8_t clip8(int32_t v) {
  v >>= PRECISION_BITS;
  return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

// Bytes [from, stride) of one output row of the vertical pass:
// out[i] = clip8(half + sum_j in[j*stride + i] * k[j]).
static inline void vertical_span(const uint8_t *in, size_t stride, const int32_t *k, int n, uint8_t *out, size_t from) {
  for (size_t i = from; i < stride; i++) {
    int32_t acc = 1 << (PRECISION_BITS - 1);
    for (int j = 0; j < n; j++) acc += in[(size_t)j * stride + i] * k[j];
    out[i] = clip8(acc);
  }
}

// The horizontal pass is most of the time. With vectors (AVX-512's 16 int32 lanes, or AVX2's 8)
// one output pixel is a few blocks of its source bytes (whole pixels: STEP bytes a block) times
// their spread weights, then shifted adds that collect lanes ch, ch + c, ch + 2c, ... into lane ch:
// the same integer sums as the scalar loop, so the same pixels.
#if defined(__AVX512F__) && defined(__AVX512BW__) && !defined(EF_RESAMPLE_SCALAR)
#define LANES 16
#include <immintrin.h>

// `end` (the end of the source's bytes) is for AVX2's loads; AVX-512's are masked.
static inline void horizontal_pixel(const uint8_t *p, const int32_t *spread, int nbytes, int c, const uint8_t *end,
                                    uint8_t *out) {
  (void)end;
  const int step = c == 3 ? 15 : 16;
  __m512i acc = _mm512_setzero_si512(), zero = _mm512_setzero_si512();
  for (int j = 0; j < nbytes; j += step, spread += 16) {
    __mmask16 m = nbytes - j >= step ? (__mmask16)((1u << step) - 1) : (__mmask16)((1u << (nbytes - j)) - 1);
    __m512i v = _mm512_cvtepu8_epi32(_mm_maskz_loadu_epi8(m, p + j));
    acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, _mm512_loadu_si512(spread)));
  }
  if (c == 3) {
    acc = _mm512_add_epi32(acc, _mm512_alignr_epi32(zero, acc, 3));
    acc = _mm512_add_epi32(acc, _mm512_alignr_epi32(zero, acc, 6));
    acc = _mm512_add_epi32(acc, _mm512_alignr_epi32(zero, acc, 12));
  } else {
    acc = _mm512_add_epi32(acc, _mm512_alignr_epi32(zero, acc, 1));
    acc = _mm512_add_epi32(acc, _mm512_alignr_epi32(zero, acc, 2));
    acc = _mm512_add_epi32(acc, _mm512_alignr_epi32(zero, acc, 4));
    acc = _mm512_add_epi32(acc, _mm512_alignr_epi32(zero, acc, 8));
  }
  acc = _mm512_srai_epi32(_mm512_add_epi32(acc, _mm512_set1_epi32(1 << (PRECISION_BITS - 1))), PRECISION_BITS);
  _mm_mask_storeu_epi8(out, (__mmask16)((1u << c) - 1), _mm512_cvtusepi32_epi8(_mm512_max_epi32(acc, zero)));
}

// One output row of the vertical pass, 16 bytes a vector; the last stride % 16 as the scalar path.
static void vertical_row(const uint8_t *in, size_t stride, const int32_t *k, int n, uint8_t *out) {
  const __m512i half = _mm512_set1_epi32(1 << (PRECISION_BITS - 1)), zero = _mm512_setzero_si512();
  size_t i = 0;
  for (; i + 16 <= stride; i += 16) {
    __m512i acc = half;
    for (int j = 0; j < n; j++) {
      __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(in + (size_t)j * stride + i)));
      acc = _mm512_add_epi32(acc, _mm512_mullo_epi32(v, _mm512_set1_epi32(k[j])));
    }
    acc = _mm512_max_epi32(_mm512_srai_epi32(acc, PRECISION_BITS), zero);
    _mm_storeu_si128((__m128i *)(out + i), _mm512_cvtusepi32_epi8(acc));
  }
  vertical_span(in, stride, k, n, out, i);
}
#elif defined(__AVX2__) && !defined(EF_RESAMPLE_SCALAR)
#define LANES 8
#include <immintrin.h>

// Lanes 0..3 of acc + half, shifted, clipped to bytes: the low c bytes go to out.
static inline void store_pixel(__m128i acc, int c, uint8_t *out) {
  acc = _mm_srai_epi32(_mm_add_epi32(acc, _mm_set1_epi32(1 << (PRECISION_BITS - 1))), PRECISION_BITS);
  acc = _mm_min_epi32(_mm_max_epi32(acc, _mm_setzero_si128()), _mm_set1_epi32(255));
  __m128i w = _mm_packus_epi32(acc, acc);
  int32_t bytes = _mm_cvtsi128_si32(_mm_packus_epi16(w, w));
  memcpy(out, &bytes, (size_t)c);
}

// Each block loads 8 bytes, of which STEP (whole pixels) have weights; where 8 would read past the
// source's end, the bytes before it are copied first.
static inline void horizontal_pixel(const uint8_t *p, const int32_t *spread, int nbytes, int c, const uint8_t *end,
                                    uint8_t *out) {
  const int step = c == 3 ? 6 : 8;
  __m256i acc = _mm256_setzero_si256();
  for (int j = 0; j < nbytes; j += step, spread += 8) {
    __m128i b;
    if (end - (p + j) >= 8) {
      b = _mm_loadl_epi64((const __m128i *)(p + j));
    } else {
      uint8_t tail[8] = {0};
      memcpy(tail, p + j, (size_t)(end - (p + j)));
      b = _mm_loadl_epi64((const __m128i *)tail);
    }
    acc =
        _mm256_add_epi32(acc, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(b), _mm256_loadu_si256((const __m256i *)spread)));
  }
  if (c == 3) { // lanes 0..5: lane ch + lane ch + 3
    __m128i sum = _mm256_castsi256_si128(
        _mm256_add_epi32(acc, _mm256_permutevar8x32_epi32(acc, _mm256_setr_epi32(3, 4, 5, 6, 7, 7, 7, 7))));
    store_pixel(sum, c, out);
  } else { // all 8 lanes
    __m128i sum = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    sum = _mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0x4E));
    store_pixel(_mm_add_epi32(sum, _mm_shuffle_epi32(sum, 0xB1)), c, out);
  }
}

// One output row of the vertical pass, 8 bytes a vector; the last stride % 8 as the scalar path.
static void vertical_row(const uint8_t *in, size_t stride, const int32_t *k, int n, uint8_t *out) {
  const __m256i half = _mm256_set1_epi32(1 << (PRECISION_BITS - 1)), zero = _mm256_setzero_si256();
  size_t i = 0;
  for (; i + 8 <= stride; i += 8) {
    __m256i acc = half;
    for (int j = 0; j < n; j++) {
      __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(in + (size_t)j * stride + i)));
      acc = _mm256_add_epi32(acc, _mm256_mullo_epi32(v, _mm256_set1_epi32(k[j])));
    }
    acc = _mm256_min_epi32(_mm256_max_epi32(_mm256_srai_epi32(acc, PRECISION_BITS), zero), _mm256_set1_epi32(255));
    __m128i w = _mm_packus_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
    _mm_storel_epi64((__m128i *)(out + i), _mm_packus_epi16(w, w));
  }
  vertical_span(in, stride, k, n, out, i);
}
#else
#define LANES 0 // the scalar loops

static void vertical_row(const uint8_t *in, size_t stride, const int32_t *k, int n, uint8_t *out) {
  vertical_span(in, stride, k, n, out, 0);
}
#endif

void ef_resample(const ef_image *src, const ef_resample_box *b, ef_interp interp, ef_resample_scratch *s,
                 ef_image *out) {
  EF_ASSERT(out->c == src->c && b->lo_x >= 0 && b->hi_x <= src->w && b->lo_y >= 0 && b->hi_y <= src->h &&
                b->lo_x < b->hi_x && b->lo_y < b->hi_y && b->ox + out->w <= b->out_w && b->oy + out->h <= b->out_h,
            "resample window");
  const int c = src->c, ow = out->w, oh = out->h;
  int xfirst[ow], xn[ow], yfirst[oh], yn[oh];
  int kx =
      axis_weights(b->x0 - b->lo_x, b->x1 - b->lo_x, b->hi_x - b->lo_x, b->out_w, b->ox, ow, interp, s, 0, xfirst, xn);
  size_t yat = (size_t)ow * (size_t)kx;
  int ky = axis_weights(b->y0 - b->lo_y, b->y1 - b->lo_y, b->hi_y - b->lo_y, b->out_h, b->oy, oh, interp, s, yat,
                        yfirst, yn);
  const int32_t *wx = s->coef, *wy = s->coef + yat;
  // The rows the vertical pass reads, resampled horizontally: (rows, ow, c).
  int row0 = yfirst[0], row1 = yfirst[oh - 1] + yn[oh - 1];
  ef_image_reshape(&s->rows, ow, row1 - row0, c);
#if LANES
  // Output x's weights spread over its bytes, STEP bytes (whole pixels) per block of LANES.
  const int step = LANES - LANES % c, blocks = (c * kx + step - 1) / step;
  size_t wat = yat + (size_t)oh * (size_t)ky;
  coef_reserve(s, wat + (size_t)ow * (size_t)blocks * LANES);
  wx = s->coef, wy = s->coef + yat;
  int32_t *spread = s->coef + wat;
  for (int x = 0; x < ow; x++)
    for (int j = 0; j < blocks * LANES; j++) {
      int byte = j / LANES * step + j % LANES;
      spread[(size_t)x * blocks * LANES + j] = j % LANES < step && byte < c * xn[x] ? wx[(size_t)x * kx + byte / c] : 0;
    }
  const uint8_t *end = src->px + (size_t)src->w * (size_t)src->h * (size_t)c;
#endif
  for (int r = row0; r < row1; r++) {
    const uint8_t *in = src->px + ((size_t)(b->lo_y + r) * src->w + b->lo_x) * c;
    uint8_t *o = s->rows.px + (size_t)(r - row0) * ow * c;
    for (int x = 0; x < ow; x++) {
      const uint8_t *p = in + (size_t)xfirst[x] * c;
#if LANES
      horizontal_pixel(p, spread + (size_t)x * blocks * LANES, c * xn[x], c, end, o + x * c);
#else
      const int32_t *k = wx + (size_t)x * kx;
      for (int ch = 0; ch < c; ch++) {
        int32_t acc = 1 << (PRECISION_BITS - 1);
        for (int i = 0; i < xn[x]; i++) acc += p[i * c + ch] * k[i];
        o[x * c + ch] = clip8(acc);
      }
#endif
    }
  }
  const size_t stride = (size_t)ow * c;
  for (int y = 0; y < oh; y++) {
    const int32_t *k = wy + (size_t)y * ky;
    const uint8_t *in = s->rows.px + (size_t)(yfirst[y] - row0) * stride;
    vertical_row(in, stride, k, yn[y], out->px + y * stride);
  }
}

// ---- one sample ------------------------------------------------------------------------------

void ef_transform_scratch_free(ef_transform_scratch *s) {
  ef_image_free(&s->decoded), ef_image_free(&s->out), ef_image_free(&s->aug), ef_image_free(&s->resample.rows);
  free(s->resample.coef);
  *s = (ef_transform_scratch){0};
}

// src (c channels) as `channels` channels into dst: gray replicated, or PIL's luma of RGB.
static void convert_channels(const ef_image *src, int channels, ef_image *dst) {
  ef_image_reshape(dst, src->w, src->h, channels);
  size_t n = (size_t)src->w * src->h;
  for (size_t i = 0; i < n; i++) {
    if (channels == 3) memset(dst->px + 3 * i, src->px[i], 3);
    else dst->px[i] = ef_luma(src->px + 3 * i);
  }
}

static void flip_horizontal(ef_image *im) {
  for (int y = 0; y < im->h; y++) {
    uint8_t *row = im->px + (size_t)y * im->w * im->c;
    for (int l = 0, r = im->w - 1; l < r; l++, r--)
      for (int ch = 0; ch < im->c; ch++) {
        uint8_t t = row[l * im->c + ch];
        row[l * im->c + ch] = row[r * im->c + ch], row[r * im->c + ch] = t;
      }
  }
}

ef_status ef_transform_sample(const ef_transform *t, const ef_sample_src *src, ef_rng_seq *rng,
                              ef_transform_scratch *s) {
  int w = src->w, h = src->h;
  ef_image_kind kind;
  if (!src->pixels) EF_TRY(ef_image_probe(src->bytes, src->len, src->name, &kind, &w, &h));
  // The source region and the resize that maps it onto the output, in source pixels.
  double x0 = 0, y0 = 0, x1 = w, y1 = h;
  int out_w = t->size, out_h = t->size, ox = 0, oy = 0;
  if (t->train) {
    ef_crop c = s->crop = ef_rrc_crop(w, h, t->scale, t->ratio, rng);
    x0 = c.x, y0 = c.y, x1 = c.x + c.w, y1 = c.y + c.h;
  } else {
    ef_eval_geometry(w, h, t->size, t->crop_pct, &out_w, &out_h, &ox, &oy);
  }
  ef_image view = {.w = w, .h = h, .c = src->c, .px = (uint8_t *)src->pixels};
  const ef_image *im = &view;
  ef_decode_info info = {.scale_x = 1, .scale_y = 1};
  if (!src->pixels) {
    // A training crop is decoded alone; evaluation needs the whole image at the resized size.
    ef_decode_request rq = {.channels = t->channels, .strict = t->strict};
    if (t->train) rq.x = (int)x0, rq.y = (int)y0, rq.w = (int)(x1 - x0), rq.h = (int)(y1 - y0);
    if (t->dct) rq.min_w = t->train ? t->size : out_w, rq.min_h = t->train ? t->size : out_h;
    EF_TRY(ef_image_decode(src->bytes, src->len, src->name, &rq, &s->decoded, &info));
    im = &s->decoded;
  } else if (src->c != t->channels) {
    convert_channels(&view, t->channels, &s->decoded);
    im = &s->decoded;
  }
  ef_resample_box box = {.x0 = x0 * info.scale_x - info.off_x,
                         .y0 = y0 * info.scale_y - info.off_y,
                         .x1 = x1 * info.scale_x - info.off_x,
                         .y1 = y1 * info.scale_y - info.off_y,
                         .out_w = out_w,
                         .out_h = out_h,
                         .ox = ox,
                         .oy = oy,
                         .hi_x = im->w,
                         .hi_y = im->h};
  if (t->train) { // torchvision crops, then resizes: only the crop's pixels are read
    box.lo_x = (int)floor(box.x0 + 1e-9), box.lo_y = (int)floor(box.y0 + 1e-9);
    box.hi_x = (int)ceil(box.x1 - 1e-9), box.hi_y = (int)ceil(box.y1 - 1e-9);
    if (box.hi_x > im->w) box.hi_x = im->w;
    if (box.hi_y > im->h) box.hi_y = im->h;
  }
  s->warnings = info.warnings;
  ef_image_reshape(&s->out, t->size, t->size, t->channels);
  ef_resample(im, &box, t->interp, &s->resample, &s->out);
  if (t->train) {
    s->flipped = ef_rng_seq_uniform(rng) < t->flip;
    if (s->flipped) flip_horizontal(&s->out);
    if (t->augment == EF_AUGMENT_AUTO) ef_autoaugment(&s->out, &s->aug, rng);
    if (t->augment == EF_AUGMENT_RAND) ef_randaugment(&s->out, &s->aug, t->ra_n, t->ra_m, rng);
  }
  return EF_OK;
}

void ef_transform_lut(const ef_transform *t, float lut[3 * 256]) {
  for (int c = 0; c < 3; c++)
    for (int v = 0; v < 256; v++) lut[c * 256 + v] = ((float)v / 255.0f - t->mean[c]) / t->std[c];
}

void ef_transform_normalize(const float lut[3 * 256], const ef_image *im, float *dst) {
  const uint8_t *px = im->px;
  size_t count = (size_t)im->w * im->h * im->c;
  if (im->c == 3)
    for (size_t i = 0; i < count; i += 3)
      dst[i] = lut[px[i]], dst[i + 1] = lut[256 + px[i + 1]], dst[i + 2] = lut[512 + px[i + 2]];
  else
    for (size_t i = 0; i < count; i++) dst[i] = lut[px[i]];
}
