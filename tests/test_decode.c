// JPEG and PNG decoding on images made here with libjpeg and libpng: colour, gray, CMYK/YCCK (PIL's
// conversion), every PNG layout, region decoding against full decodes at each DCT scale, the
// choice of scale, probing, and the errors for truncated, corrupt and foreign files. Run as
// `test_decode decode FILE OUT CHANNELS [MIN_W MIN_H]` it decodes one file for decode_pil.py.
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <jpeglib.h>
#include <png.h>
#include <zlib.h>

#include "data/decode.h"
#include "tests/harness.h"

// ---- making test images -------------------------------------------------------------------

// A test picture: smooth gradients, different in each channel, plus uniform noise of +-noise.
static void fill_pattern(uint8_t *px, int w, int h, int c, int noise) {
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++)
      for (int ch = 0; ch < c; ch++) {
        size_t i = ((size_t)y * w + x) * c + ch;
        double v = 128 + 90 * sin(0.11 * x + 1.7 * ch) * cos(0.07 * y - 0.5 * ch);
        v += noise * (2 * ef_philox_uniform(7, (uint32_t)ch, 0, i) - 1);
        px[i] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
      }
}

typedef struct {
  int w, h, comps;     // comps 1 (gray), 3 (RGB) or 4 (CMYK) input samples
  J_COLOR_SPACE store; // the colour space in the file: JCS_GRAYSCALE, JCS_YCbCr, JCS_CMYK, JCS_YCCK
  int quality;
  int h_samp, v_samp; // the sampling factors of Y (and K) in YCbCr and YCCK (2, 2 is 4:2:0)
  bool progressive;
} jpeg_spec;

// Compresses px ((h, w, comps) samples) into a malloc'd JPEG.
static uint8_t *encode_jpeg(const jpeg_spec *s, const uint8_t *px, size_t *len) {
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr err;
  c.err = jpeg_std_error(&err); // exits on errors: fine for a test
  jpeg_create_compress(&c);
  unsigned char *buf = NULL;
  unsigned long n = 0;
  jpeg_mem_dest(&c, &buf, &n);
  c.image_width = (JDIMENSION)s->w, c.image_height = (JDIMENSION)s->h, c.input_components = s->comps;
  c.in_color_space = s->comps == 1 ? JCS_GRAYSCALE : s->comps == 3 ? JCS_RGB : JCS_CMYK;
  jpeg_set_defaults(&c);
  jpeg_set_colorspace(&c, s->store);
  jpeg_set_quality(&c, s->quality, TRUE);
  for (int i = 0; i < c.num_components; i += 3) // Y, and K of YCCK
    if (s->store == JCS_YCbCr || s->store == JCS_YCCK)
      c.comp_info[i].h_samp_factor = s->h_samp, c.comp_info[i].v_samp_factor = s->v_samp;
  if (s->progressive) jpeg_simple_progression(&c);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = (JSAMPROW)(px + (size_t)c.next_scanline * s->w * s->comps);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  *len = n;
  return buf;
}

typedef struct {
  int w, h, type, depth; // PNG_COLOR_TYPE_*, bits per sample
  const uint8_t *rows;   // h rows of packed PNG samples (16-bit ones big-endian)
  const png_color *palette;
  int colors;
  const uint8_t *trns; // alpha of the first ntrns palette entries
  int ntrns;
  bool interlace, text; // Adam7; a tEXt chunk before the image data
} png_spec;

typedef struct {
  uint8_t *p;
  size_t len, cap;
} membuf;

static void membuf_write(png_structp png, png_bytep src, size_t n) {
  membuf *m = png_get_io_ptr(png);
  if (m->len + n > m->cap) m->p = realloc(m->p, m->cap = 2 * (m->len + n));
  if (!m->p) abort();
  memcpy(m->p + m->len, src, n);
  m->len += n;
}

static void membuf_flush(png_structp png) {}

// Writes the PNG of s into a malloc'd buffer.
static uint8_t *encode_png(const png_spec *s, size_t *len) {
  membuf m = {0};
  png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
  png_infop info = png_create_info_struct(png);
  if (!png || !info || setjmp(png_jmpbuf(png))) abort();
  png_set_write_fn(png, &m, membuf_write, membuf_flush);
  png_set_IHDR(png, info, (png_uint_32)s->w, (png_uint_32)s->h, s->depth, s->type,
               s->interlace ? PNG_INTERLACE_ADAM7 : PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  if (s->palette) png_set_PLTE(png, info, s->palette, s->colors);
  if (s->trns) png_set_tRNS(png, info, s->trns, s->ntrns, NULL);
  if (s->text)
    png_set_text(png, info, &(png_text){.compression = PNG_TEXT_COMPRESSION_NONE, .key = "Comment", .text = "hi"}, 1);
  png_write_info(png, info);
  size_t stride = png_get_rowbytes(png, info);
  png_bytep rows[64];
  if (s->h > 64) abort();
  for (int y = 0; y < s->h; y++) rows[y] = (png_bytep)(s->rows + (size_t)y * stride);
  png_write_image(png, rows);
  png_write_end(png, info);
  png_destroy_write_struct(&png, &info);
  *len = m.len;
  return m.p;
}

// The offset of the first chunk of this type (4 letters) in a PNG, or 0.
static size_t png_chunk(const uint8_t *buf, size_t len, const char *type) {
  for (size_t at = 8; at + 12 <= len;) {
    size_t n = (size_t)buf[at] << 24 | (size_t)buf[at + 1] << 16 | (size_t)buf[at + 2] << 8 | buf[at + 3];
    if (!memcmp(buf + at + 4, type, 4)) return at;
    at += 12 + n;
  }
  return 0;
}

// ---- helpers for checking -----------------------------------------------------------------

static ef_status decode(const uint8_t *buf, size_t len, ef_decode_request rq, ef_image *out, ef_decode_info *info) {
  ef_status st = ef_image_decode(buf, len, "test.img", &rq, out, info);
  CHECK(st == EF_OK, "%s", ef_last_error());
  return st;
}

// Decoding must fail with st and a message containing the file's name and `needle`.
static void expect_error(const char *what, const uint8_t *buf, size_t len, ef_decode_request rq, ef_status st,
                         const char *needle) {
  ef_image im = {0};
  ef_decode_info info;
  ef_status got = ef_image_decode(buf, len, "bad.img", &rq, &im, &info);
  CHECK(got == st && strstr(ef_last_error(), "bad.img") && strstr(ef_last_error(), needle),
        "%s: status %d, message '%s'", what, got, ef_last_error());
  ef_image_free(&im);
}

// ---- JPEG ---------------------------------------------------------------------------------

static void test_jpeg_rgb(void) {
  enum { w = 64, h = 64, band = 48 * w * 3 };
  static uint8_t src[w * h * 3];
  fill_pattern(src, w, h, 3, 0);
  // Below row 48, saturated 16x16 blocks (red, yellow, blue), where RGB clips: there libjpeg's Y is
  // not PIL's luma.
  static const uint8_t vivid[3][3] = {{255, 0, 0}, {255, 255, 0}, {0, 0, 255}};
  for (int y = 48; y < h; y++)
    for (int x = 0; x < 48; x++) memcpy(src + (y * w + x) * 3, vivid[x / 16], 3);
  size_t len;
  uint8_t *jpg = encode_jpeg(&(jpeg_spec){w, h, 3, JCS_YCbCr, 95, 2, 2, false}, src, &len);
  ef_image rgb = {0}, gray = {0};
  ef_decode_info info;
  if (decode(jpg, len, (ef_decode_request){.channels = 3}, &rgb, &info) == EF_OK) {
    CHECK(rgb.w == w && rgb.h == h && rgb.c == 3, "%d x %d x %d", rgb.w, rgb.h, rgb.c);
    CHECK(info.scale_x == 1 && info.scale_y == 1 && info.off_x == 0 && info.off_y == 0, "info %g %g %d %d",
          info.scale_x, info.scale_y, info.off_x, info.off_y);
    CHECK_CLOSE(rgb.px, src, band - 8 * w * 3, TEST_MEAN, 0, 1.5, "RGB decode at quality 95 (4:2:0), above the blocks");
  }
  if (decode(jpg, len, (ef_decode_request){.channels = 1}, &gray, &info) == EF_OK) {
    CHECK(gray.w == w && gray.h == h && gray.c == 1, "%d x %d x %d", gray.w, gray.h, gray.c);
    int bad = 0;
    for (int i = 0; i < w * h; i++) bad += gray.px[i] != ef_luma(rgb.px + 3 * i);
    CHECK(bad == 0, "%d gray pixels are not PIL's luma of the RGB decode", bad);
  }
  ef_image_free(&rgb), ef_image_free(&gray);
  free(jpg);
}

static void test_jpeg_gray(void) {
  enum { w = 40, h = 24 };
  static uint8_t src[w * h];
  fill_pattern(src, w, h, 1, 0);
  size_t len;
  uint8_t *jpg = encode_jpeg(&(jpeg_spec){w, h, 1, JCS_GRAYSCALE, 95, 1, 1, false}, src, &len);
  ef_image gray = {0}, rgb = {0};
  ef_decode_info info;
  if (decode(jpg, len, (ef_decode_request){.channels = 1}, &gray, &info) == EF_OK &&
      decode(jpg, len, (ef_decode_request){.channels = 3}, &rgb, &info) == EF_OK) {
    CHECK(gray.c == 1 && rgb.c == 3 && gray.w == w && rgb.h == h, "gray %d channels, rgb %d", gray.c, rgb.c);
    CHECK_CLOSE(gray.px, src, w * h, TEST_MEAN, 0, 0.5, "gray decode at quality 95");
    int bad = 0;
    for (int i = 0; i < w * h; i++)
      bad += rgb.px[3 * i] != gray.px[i] || rgb.px[3 * i + 1] != gray.px[i] || rgb.px[3 * i + 2] != gray.px[i];
    CHECK(bad == 0, "%d RGB pixels are not the gray value replicated", bad);
  }
  ef_image_free(&gray), ef_image_free(&rgb);
  free(jpg);
}

// Uniform 8x8 blocks at quality 100 come back exactly, so the CMYK samples below reach the
// conversion as written. Expected RGB and gray: PIL 9.4's, which reads the samples as inverted
// CMYK (Image.fromarray(255 - samples, "CMYK").convert("RGB") and .convert("L")).
static void test_jpeg_cmyk(void) {
  enum { n = 6, w = 8 * n, h = 8 };
  static const uint8_t samples[n][4] = {{255, 255, 255, 255}, {0, 0, 0, 255},     {128, 64, 200, 100},
                                        {10, 240, 77, 0},     {255, 0, 128, 180}, {127, 128, 30, 254}};
  // In the last block, ink * k / 255 is 127.498 (red) and 126.502 (green): rounding off by one fails.
  static const uint8_t want_rgb[n][3] = {{255, 255, 255}, {0, 0, 0},    {50, 25, 78},
                                         {0, 0, 0},       {180, 0, 90}, {127, 127, 30}};
  static const uint8_t want_gray[n] = {255, 0, 39, 0, 64, 116};
  static uint8_t src[w * h * 4], want_px[w * h * 3], want_px_gray[w * h];
  for (int i = 0; i < w * h; i++) {
    memcpy(src + 4 * i, samples[i % w / 8], 4);
    memcpy(want_px + 3 * i, want_rgb[i % w / 8], 3);
    want_px_gray[i] = want_gray[i % w / 8];
  }
  for (int ycck = 0; ycck < 2; ycck++) {
    size_t len;
    uint8_t *jpg = encode_jpeg(&(jpeg_spec){w, h, 4, ycck ? JCS_YCCK : JCS_CMYK, 100, 1, 1, false}, src, &len);
    int tol = ycck; // YCCK goes through a rounded colour transform
    ef_image rgb = {0}, gray = {0};
    ef_decode_info info;
    if (decode(jpg, len, (ef_decode_request){.channels = 3}, &rgb, &info) == EF_OK &&
        decode(jpg, len, (ef_decode_request){.channels = 1}, &gray, &info) == EF_OK) {
      CHECK(rgb.w == w && rgb.h == h && rgb.c == 3 && gray.c == 1, "%d x %d x %d", rgb.w, rgb.h, rgb.c);
      CHECK_CLOSE(rgb.px, want_px, w * h * 3, TEST_ABS, 0, tol, "ycck %d: RGB", ycck);
      CHECK_CLOSE(gray.px, want_px_gray, w * h, TEST_ABS, 0, tol, "ycck %d: gray", ycck);
    }
    ef_image_free(&rgb), ef_image_free(&gray);
    free(jpg);
  }
}

// The 203 x 157 test picture with noise (so that misplaced pixels show), in one of six layouts.
static uint8_t *region_jpeg(int layout, size_t *len) {
  enum { w = 203, h = 157 };
  static uint8_t src[w * h * 3];
  fill_pattern(src, w, h, 3, 40);
  static const int samp[3][2] = {{2, 2}, {2, 1}, {1, 1}}; // 4:2:0, 4:2:2, 4:4:4
  return encode_jpeg(&(jpeg_spec){w, h, 3, JCS_YCbCr, 90, samp[layout % 3][0], samp[layout % 3][1], layout >= 3}, src,
                     len);
}

// The whole JPEG decoded to RGB at scale m/8 by libjpeg with its defaults, as PIL decodes it.
static uint8_t *plain_decode(const uint8_t *jpg, size_t len, int m) {
  struct jpeg_decompress_struct d;
  struct jpeg_error_mgr err;
  d.err = jpeg_std_error(&err);
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, jpg, (unsigned long)len);
  jpeg_read_header(&d, TRUE);
  d.scale_num = (unsigned)m, d.scale_denom = 8, d.out_color_space = JCS_RGB;
  jpeg_start_decompress(&d);
  uint8_t *px = malloc((size_t)d.output_width * d.output_height * 3);
  if (!px) abort();
  while (d.output_scanline < d.output_height) {
    JSAMPROW row = px + (size_t)d.output_scanline * d.output_width * 3;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return px;
}

// ceil(n * m / 8): libjpeg's size at scale m/8.
static int scaled(int n, int m) { return (n * m + 7) / 8; }

// The whole image decoded at M/8 must be libjpeg's plain decode; a region decode at M/8 must hold
// the scaled region, cut close around it, with the same pixels.
static void test_jpeg_region(void) {
  enum { W = 203, H = 157 };
  static const int boxes[][4] = {{37, 21, 90, 70}, {0, 0, 50, 40},    {150, 100, 53, 57},
                                 {16, 16, 32, 32}, {1, 140, 200, 17}, {64, 48, 9, 9}};
  static const int scales[] = {8, 4, 2, 1};
  ef_image full = {0}, part = {0};
  ef_decode_info fi, pi;
  for (int layout = 0; layout < 6; layout++) {
    size_t len;
    uint8_t *jpg = region_jpeg(layout, &len);
    for (size_t s = 0; s < sizeof scales / sizeof *scales; s++) {
      int m = scales[s], sw = scaled(W, m), sh = scaled(H, m);
      if (decode(jpg, len, (ef_decode_request){.min_w = sw, .min_h = sh, .channels = 3}, &full, &fi) != EF_OK) continue;
      CHECK(full.w == sw && full.h == sh, "layout %d M %d: whole image %d x %d, want %d x %d", layout, m, full.w,
            full.h, sw, sh);
      uint8_t *plain = plain_decode(jpg, len, m);
      CHECK(full.w != sw || full.h != sh || !memcmp(full.px, plain, (size_t)sw * sh * 3),
            "layout %d M %d: the whole image differs from libjpeg's plain decode", layout, m);
      free(plain);
      for (size_t b = 0; b < sizeof boxes / sizeof *boxes; b++) {
        const int *bx = boxes[b];
        // The largest min_w the region meets at M/8; at M/16 it is over a pixel narrower (widths >= 9).
        ef_decode_request rq = {bx[0], bx[1], bx[2], bx[3], .min_w = bx[2] * sw / W, .channels = 3};
        if (decode(jpg, len, rq, &part, &pi) != EF_OK) continue;
        CHECK(pi.scale_x == (double)sw / W && pi.scale_y == (double)sh / H, "layout %d M %d box %zu: scale %g %g",
              layout, m, b, pi.scale_x, pi.scale_y);
        int x0 = bx[0] * sw / W, x1 = ((bx[0] + bx[2]) * sw + W - 1) / W;
        int y0 = bx[1] * sh / H, y1 = ((bx[1] + bx[3]) * sh + H - 1) / H;
        bool holds = pi.off_x <= x0 && pi.off_x + part.w >= x1 && pi.off_y <= y0 && pi.off_y + part.h >= y1;
        bool tight = part.w <= x1 - x0 + 2 + 15 && part.h == y1 - y0;
        CHECK(holds && tight, "layout %d M %d box %zu: decoded %d x %d at (%d, %d) for [%d, %d) x [%d, %d)", layout, m,
              b, part.w, part.h, pi.off_x, pi.off_y, x0, x1, y0, y1);
        if (!holds) continue;
        int bad = 0;
        for (int y = y0; y < y1; y++)
          bad += memcmp(part.px + ((size_t)(y - pi.off_y) * part.w + (x0 - pi.off_x)) * 3,
                        full.px + ((size_t)y * full.w + x0) * 3, (size_t)(x1 - x0) * 3) != 0;
        CHECK(bad == 0, "layout %d M %d box %zu: %d rows differ from the whole decode", layout, m, b, bad);
      }
    }
    free(jpg);
  }
  ef_image_free(&full), ef_image_free(&part);
}

// The chosen M/8, seen in the decoded size: the smallest M of 1, 2, 4 at which the region (scaled
// by libjpeg's ceil(W*M/8)/W) is at least min_w x min_h, else 8.
static void test_jpeg_scale_choice(void) {
  enum { W = 203, H = 157 }; // sizes at M = 1..8: 26 51 77 102 127 153 178 203 and 20 40 59 79 99 118 138 157
  static const struct {
    int box[4], min_w, min_h, m;
  } cases[] = {
      {{0}, 0, 0, 8},
      {{0}, 100, 0, 4},
      {{0}, 102, 0, 4},
      {{0}, 103, 0, 8},
      {{0}, 52, 0, 4},
      {{0}, 1, 1, 1},
      {{0}, 0, 79, 4},
      {{0}, 0, 80, 8},
      {{0}, 300, 300, 8},
      {{0}, 26, 21, 2},
      {{0, 0, 100, 100}, 50, 50, 4},
      {{0, 0, 100, 100}, 51, 0, 8},
      {{50, 50, 20, 20}, 3, 3, 2},
  };
  size_t len;
  uint8_t *jpg = region_jpeg(0, &len);
  ef_image im = {0};
  ef_decode_info info;
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    const int *b = cases[i].box;
    ef_decode_request rq = {b[0], b[1], b[2], b[3], cases[i].min_w, cases[i].min_h, 3};
    if (decode(jpg, len, rq, &im, &info) != EF_OK) continue;
    int m = cases[i].m;
    CHECK(info.scale_x == (double)scaled(W, m) / W && info.scale_y == (double)scaled(H, m) / H,
          "case %zu: scale %g x %g (%g x %g pixels), want M = %d (%d x %d)", i, info.scale_x, info.scale_y,
          info.scale_x * W, info.scale_y * H, m, scaled(W, m), scaled(H, m));
    if (!b[2]) CHECK(im.w == scaled(W, m) && im.h == scaled(H, m), "case %zu: %d x %d", i, im.w, im.h);
  }
  ef_image_free(&im);
  free(jpg);
}

// ---- PNG ----------------------------------------------------------------------------------

enum { pw = 13, ph = 11 };

// Decodes p as RGB and as gray and compares with want_rgb ((ph, pw, 3)); the gray decode must be
// the gray source itself (gray layouts) or PIL's luma of want_rgb.
static void check_png(const char *what, const png_spec *p, const uint8_t *want_rgb, bool gray_source) {
  size_t len;
  uint8_t *buf = encode_png(p, &len);
  ef_image rgb = {0}, gray = {0};
  ef_decode_info info;
  if (decode(buf, len, (ef_decode_request){.channels = 3}, &rgb, &info) == EF_OK &&
      decode(buf, len, (ef_decode_request){.channels = 1}, &gray, &info) == EF_OK) {
    CHECK(rgb.w == pw && rgb.h == ph && rgb.c == 3 && gray.w == pw && gray.c == 1, "%s: %d x %d x %d", what, rgb.w,
          rgb.h, rgb.c);
    CHECK(!memcmp(rgb.px, want_rgb, pw * ph * 3), "%s: RGB pixels differ; first (%d %d %d), want (%d %d %d)", what,
          rgb.px[0], rgb.px[1], rgb.px[2], want_rgb[0], want_rgb[1], want_rgb[2]);
    int bad = 0;
    for (int i = 0; i < pw * ph; i++) bad += gray.px[i] != (gray_source ? want_rgb[3 * i] : ef_luma(want_rgb + 3 * i));
    CHECK(bad == 0, "%s: %d gray pixels differ", what, bad);
    CHECK(info.scale_x == 1 && info.off_x == 0 && info.off_y == 0, "%s: info %g %d %d", what, info.scale_x, info.off_x,
          info.off_y);
  }
  ef_image_free(&rgb), ef_image_free(&gray);
  free(buf);
}

static void test_png_layouts(void) {
  static uint8_t rows[pw * ph * 8], want[pw * ph * 3];
  size_t n = pw * ph;
  // RGB, plain and interlaced; pixel 0 pure red, whose PIL luma is 76.
  fill_pattern(want, pw, ph, 3, 40);
  want[0] = 255, want[1] = want[2] = 0;
  check_png("rgb", &(png_spec){pw, ph, PNG_COLOR_TYPE_RGB, 8, want}, want, false);
  check_png("rgb adam7", &(png_spec){pw, ph, PNG_COLOR_TYPE_RGB, 8, want, .interlace = true}, want, false);
  ef_image red = {0};
  ef_decode_info info;
  size_t len;
  uint8_t *buf = encode_png(&(png_spec){pw, ph, PNG_COLOR_TYPE_RGB, 8, want}, &len);
  if (decode(buf, len, (ef_decode_request){.channels = 1}, &red, &info) == EF_OK)
    CHECK(red.px[0] == 76, "gray of pure red is %d, PIL's is 76", red.px[0]);
  free(buf), ef_image_free(&red);
  // RGBA and 16-bit RGB: alpha dropped, the high byte kept.
  for (size_t i = 0; i < n; i++) memcpy(rows + 4 * i, want + 3 * i, 3), rows[4 * i + 3] = (uint8_t)(i * 37);
  check_png("rgba", &(png_spec){pw, ph, PNG_COLOR_TYPE_RGB_ALPHA, 8, rows}, want, false);
  for (size_t i = 0; i < 3 * n; i++) rows[2 * i] = want[i], rows[2 * i + 1] = (uint8_t)(255 - i);
  check_png("rgb16", &(png_spec){pw, ph, PNG_COLOR_TYPE_RGB, 16, rows}, want, false);
  // Gray at 8 and 16 bits, with alpha, and at 1 and 2 bits (expanded to 0..255).
  for (size_t i = 0; i < n; i++) want[3 * i] = want[3 * i + 1] = want[3 * i + 2] = (uint8_t)(i * 5);
  for (size_t i = 0; i < n; i++) rows[i] = want[3 * i];
  check_png("gray", &(png_spec){pw, ph, PNG_COLOR_TYPE_GRAY, 8, rows}, want, true);
  for (size_t i = 0; i < n; i++) rows[2 * i] = want[3 * i], rows[2 * i + 1] = (uint8_t)(i * 11);
  check_png("gray+alpha", &(png_spec){pw, ph, PNG_COLOR_TYPE_GRAY_ALPHA, 8, rows}, want, true);
  // The same bytes read as 16-bit gray: the high bytes are the gray values.
  check_png("gray16", &(png_spec){pw, ph, PNG_COLOR_TYPE_GRAY, 16, rows}, want, true);
  int stride2 = (pw * 2 + 7) / 8;
  memset(rows, 0, sizeof rows);
  for (int y = 0; y < ph; y++)
    for (int x = 0; x < pw; x++) {
      int v = (x + 2 * y) % 4;
      rows[y * stride2 + x / 4] |= (uint8_t)(v << (6 - 2 * (x % 4)));
      memset(want + 3 * (y * pw + x), v * 85, 3);
    }
  check_png("gray 2-bit", &(png_spec){pw, ph, PNG_COLOR_TYPE_GRAY, 2, rows}, want, true);
  int stride1 = (pw + 7) / 8;
  memset(rows, 0, sizeof rows);
  for (int y = 0; y < ph; y++)
    for (int x = 0; x < pw; x++) {
      int v = (x * y + x) % 3 == 0;
      rows[y * stride1 + x / 8] |= (uint8_t)(v << (7 - x % 8));
      memset(want + 3 * (y * pw + x), v * 255, 3);
    }
  check_png("gray 1-bit adam7", &(png_spec){pw, ph, PNG_COLOR_TYPE_GRAY, 1, rows, .interlace = true}, want, true);
  // A 4-bit palette with transparency: the colours, alpha dropped.
  static const png_color palette[5] = {{255, 0, 0}, {0, 128, 0}, {10, 20, 30}, {200, 201, 202}, {0, 0, 255}};
  static const uint8_t alpha[3] = {0, 128, 255};
  int stride4 = (pw + 1) / 2;
  memset(rows, 0, sizeof rows);
  for (int y = 0; y < ph; y++)
    for (int x = 0; x < pw; x++) {
      int k = (x + y * 3) % 5;
      rows[y * stride4 + x / 2] |= (uint8_t)(k << (x % 2 ? 0 : 4));
      memcpy(want + 3 * (y * pw + x), &palette[k], 3);
    }
  check_png("palette+tRNS", &(png_spec){pw, ph, PNG_COLOR_TYPE_PALETTE, 4, rows, palette, 5, alpha, 3}, want, false);
}

// ---- probing and errors -------------------------------------------------------------------

static void test_probe(void) {
  size_t len;
  uint8_t *jpg = region_jpeg(3, &len);
  static uint8_t rows[pw * ph * 3];
  size_t plen;
  uint8_t *png = encode_png(&(png_spec){pw, ph, PNG_COLOR_TYPE_RGB, 8, rows}, &plen);
  ef_image_kind kind = 0;
  int w = 0, h = 0;
  ef_status st = ef_image_probe(jpg, len, "a.jpg", &kind, &w, &h);
  CHECK(st == EF_OK && kind == EF_IMAGE_JPEG && w == 203 && h == 157, "jpeg: %d %d %d x %d %s", st, kind, w, h,
        ef_last_error());
  st = ef_image_probe(png, plen, "a.png", &kind, &w, &h);
  CHECK(st == EF_OK && kind == EF_IMAGE_PNG && w == pw && h == ph, "png: %d %d %d x %d %s", st, kind, w, h,
        ef_last_error());
  // Absurd sizes, written into the headers: JPEG's SOF height and width, PNG's IHDR width (and CRC).
  size_t sof = 2;
  while (sof + 9 < len && !(jpg[sof] == 0xff && jpg[sof + 1] >= 0xc0 && jpg[sof + 1] <= 0xc2))
    sof += 2 + (jpg[sof + 2] << 8 | jpg[sof + 3]);
  jpg[sof + 5] = jpg[sof + 7] = 0xff, jpg[sof + 6] = jpg[sof + 8] = 0xdc; // 65500 x 65500
  st = ef_image_probe(jpg, len, "big.jpg", &kind, &w, &h);
  CHECK(st == EF_ERR_FORMAT && strstr(ef_last_error(), "65500 x 65500 pixels is too large"), "big jpeg: %d %s", st,
        ef_last_error());
  size_t ihdr = png_chunk(png, plen, "IHDR");
  png[ihdr + 9] = 0x01, png[ihdr + 10] = 0x11, png[ihdr + 11] = 0x70; // width 70000
  uLong crc = crc32(0, png + ihdr + 4, 4 + 13);
  for (int i = 0; i < 4; i++) png[ihdr + 21 + i] = (uint8_t)(crc >> (24 - 8 * i));
  st = ef_image_probe(png, plen, "big.png", &kind, &w, &h);
  CHECK(st == EF_ERR_FORMAT && strstr(ef_last_error(), "70000 x 11 pixels is too large"), "big png: %d %s", st,
        ef_last_error());
  st = ef_image_probe((const uint8_t *)"GIF89a..", 8, "a.gif", &kind, &w, &h);
  CHECK(st == EF_ERR_FORMAT &&
            strstr(ef_last_error(), "a.gif: not a JPEG or PNG file (first bytes 47 49 46 38 39 61 2e 2e)"),
        "gif: %d %s", st, ef_last_error());
  free(jpg), free(png);
}

static void test_errors(void) {
  ef_decode_request rgb = {.channels = 3};
  size_t len;
  for (int layout = 0; layout < 6; layout += 3) { // baseline and progressive
    uint8_t *jpg = region_jpeg(layout, &len);
    expect_error("jpeg cut at half", jpg, len / 2, rgb, EF_ERR_FORMAT, "Premature end of JPEG file");
    expect_error("jpeg cut at half, region", jpg, len / 2, (ef_decode_request){100, 120, 50, 30, .channels = 3},
                 EF_ERR_FORMAT, "Premature end of JPEG file");
    expect_error("jpeg header only", jpg, 40, rgb, EF_ERR_FORMAT, "corrupt or truncated JPEG");
    expect_error("region outside", jpg, len, (ef_decode_request){180, 0, 24, 10, .channels = 3}, EF_ERR_INVALID,
                 "does not lie inside the 203 x 157 image");
    // Bits flipped in the entropy-coded data: libjpeg warns and decodes around them (as PIL does);
    // counted, and with `strict` an error.
    jpg[len / 2] = 0xff, jpg[len / 2 + 1] = 0xd5; // a restart marker where none belongs
    ef_image im = {0};
    ef_decode_info info;
    ef_status st = decode(jpg, len, rgb, &im, &info);
    CHECK(st == EF_OK && info.warnings > 0, "layout %d: flipped bits: status %d, %d warnings (%s)", layout, st,
          info.warnings, ef_last_error());
    expect_error("flipped bits, strict", jpg, len, (ef_decode_request){.channels = 3, .strict = true}, EF_ERR_FORMAT,
                 "corrupt JPEG data (libjpeg: Corrupt JPEG data");
    free(jpg);
    jpg = region_jpeg(layout, &len);
    CHECK(decode(jpg, len, rgb, &im, &info) == EF_OK && info.warnings == 0, "layout %d: an intact file warns %d times",
          layout, info.warnings);
    ef_image_free(&im);
    free(jpg);
  }
  static uint8_t px[pw * ph * 3];
  fill_pattern(px, pw, ph, 3, 40);
  uint8_t *png = encode_png(&(png_spec){pw, ph, PNG_COLOR_TYPE_RGB, 8, px, .text = true}, &len);
  ef_image im = {0};
  ef_decode_info info;
  // Without IEND (the last 12 bytes) the pixels are all there: accepted, as PIL does.
  if (decode(png, len - 12, rgb, &im, &info) == EF_OK)
    CHECK(!memcmp(im.px, px, sizeof px), "png without IEND: pixels differ");
  expect_error("png cut in the image data", png, len - 30, rgb, EF_ERR_FORMAT, "truncated");
  expect_error("png cut at half", png, len / 2, rgb, EF_ERR_FORMAT, "truncated");
  size_t idat = png_chunk(png, len, "IDAT"), text = png_chunk(png, len, "tEXt");
  size_t idat_crc = idat + 8 + (png[idat + 2] << 8 | png[idat + 3]), text_crc = text + 8 + png[text + 3];
  png[idat_crc] ^= 1;
  expect_error("png bad IDAT crc", png, len, rgb, EF_ERR_FORMAT, "CRC");
  png[idat_crc] ^= 1, png[text_crc] ^= 1;
  expect_error("png bad tEXt crc", png, len, rgb, EF_ERR_FORMAT, "CRC");
  png[text_crc] ^= 1;
  png[idat + 8 + 5] ^= 0x5a; // the compressed data itself (the CRC does not know)
  uLong crc = crc32(0, png + idat + 4, (uInt)(idat_crc - idat - 4));
  for (int i = 0; i < 4; i++) png[idat_crc + i] = (uint8_t)(crc >> (24 - 8 * i));
  expect_error("png corrupt deflate data", png, len, rgb, EF_ERR_FORMAT, "corrupt or truncated PNG");
  expect_error("png signature only", png, 8, rgb, EF_ERR_FORMAT, "truncated");
  expect_error("garbage", (const uint8_t *)"\x01\x02garbage", 9, rgb, EF_ERR_FORMAT,
               "not a JPEG or PNG file (first bytes 01 02 67");
  expect_error("empty", (const uint8_t *)"", 0, rgb, EF_ERR_FORMAT, "not a JPEG or PNG file (it is empty)");
  ef_image_free(&im);
  free(png);
}

// ---- the decoder for decode_pil.py ---------------------------------------------------------

// Decodes FILE, writes the pixels to OUT and prints "w h c scale_x scale_y off_x off_y".
static int decode_file(int argc, char **argv) {
  if (argc != 5 && argc != 7) {
    fprintf(stderr, "usage: test_decode decode FILE OUT CHANNELS [MIN_W MIN_H]\n");
    return 2;
  }
  FILE *f = fopen(argv[2], "rb");
  if (!f) return perror(argv[2]), 1;
  size_t cap = 1 << 20, len = 0, got;
  uint8_t *buf = malloc(cap);
  while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0)
    if ((len += got) == cap) buf = realloc(buf, cap *= 2);
  fclose(f);
  if (!buf) return fprintf(stderr, "out of memory\n"), 1;
  ef_decode_request rq = {
      .channels = atoi(argv[4]), .min_w = argc == 7 ? atoi(argv[5]) : 0, .min_h = argc == 7 ? atoi(argv[6]) : 0};
  ef_image im = {0};
  ef_decode_info info;
  if (ef_image_decode(buf, len, argv[2], &rq, &im, &info) != EF_OK) return fprintf(stderr, "%s\n", ef_last_error()), 1;
  FILE *o = fopen(argv[3], "wb");
  size_t n = (size_t)im.w * im.h * im.c;
  if (!o || fwrite(im.px, 1, n, o) != n || fclose(o) != 0) return perror(argv[3]), 1;
  printf("%d %d %d %.17g %.17g %d %d\n", im.w, im.h, im.c, info.scale_x, info.scale_y, info.off_x, info.off_y);
  ef_image_free(&im);
  free(buf);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && !strcmp(argv[1], "decode")) return decode_file(argc, argv);
  RUN(test_jpeg_rgb);
  RUN(test_jpeg_gray);
  RUN(test_jpeg_cmyk);
  RUN(test_jpeg_region);
  RUN(test_jpeg_scale_choice);
  RUN(test_png_layouts);
  RUN(test_probe);
  RUN(test_errors);
  return test_exit_code();
}
