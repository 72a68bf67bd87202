// JPEG decoding through libjpeg(-turbo) with DCT scaling and region cropping, PNG decoding through
// libpng, both from memory; each library's errors longjmp back into one runner per format, which
// turns them into EF_ERR_FORMAT naming the file. All state is on the stack: calls are reentrant.
#include "data/decode.h"

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include <jerror.h> // after jpeglib.h

// The largest image accepted, checked before anything is allocated: 65535 a side (JPEG's own limit
// is 65500) and 1 GiB of RGB pixels.
enum { max_side = 65535 };
static const uint64_t max_rgb_bytes = (uint64_t)1 << 30;

static ef_status check_size(const char *name, uint64_t w, uint64_t h) {
  if (w > max_side || h > max_side || w * h * 3 > max_rgb_bytes)
    return EF_ERROR(EF_ERR_FORMAT,
                    "%s: %llu x %llu pixels is too large to decode (at most %d a side and 1 GiB of RGB pixels)", name,
                    (unsigned long long)w, (unsigned long long)h, max_side);
  return EF_OK;
}

// The kind, from the magic bytes.
static ef_status sniff(const uint8_t *buf, size_t len, const char *name, ef_image_kind *kind) {
  static const uint8_t jpeg_magic[3] = {0xff, 0xd8, 0xff}, png_magic[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  if (len >= sizeof jpeg_magic && !memcmp(buf, jpeg_magic, sizeof jpeg_magic)) {
    *kind = EF_IMAGE_JPEG;
    return EF_OK;
  }
  if (len >= sizeof png_magic && !memcmp(buf, png_magic, sizeof png_magic)) {
    *kind = EF_IMAGE_PNG;
    return EF_OK;
  }
  if (len == 0) return EF_ERROR(EF_ERR_FORMAT, "%s: not a JPEG or PNG file (it is empty)", name);
  char hex[8 * 3 + 1] = "";
  for (size_t i = 0; i < len && i < 8; i++) snprintf(hex + 3 * i, sizeof hex - 3 * i, " %02x", buf[i]);
  return EF_ERROR(EF_ERR_FORMAT, "%s: not a JPEG or PNG file (first bytes%s)", name, hex);
}

// The region of interest as (x, y, w, h) in source pixels: rq's, or the whole w x h image.
static ef_status resolve_region(const char *name, const ef_decode_request *rq, int w, int h, int box[4]) {
  if (rq->w == 0) {
    box[0] = box[1] = 0, box[2] = w, box[3] = h;
    return EF_OK;
  }
  if (rq->x < 0 || rq->y < 0 || rq->w <= 0 || rq->h <= 0 || rq->x > w - rq->w || rq->y > h - rq->h)
    return EF_ERROR(EF_ERR_INVALID, "%s: region %d x %d at (%d, %d) does not lie inside the %d x %d image", name, rq->w,
                    rq->h, rq->x, rq->y, w, h);
  box[0] = rq->x, box[1] = rq->y, box[2] = rq->w, box[3] = rq->h;
  return EF_OK;
}

// What one decode call works with, passed through the runners below.
typedef struct {
  const char *name;
  const ef_decode_request *rq;
  ef_image *out;
  ef_decode_info *info;
} decode_call;

// ---- JPEG ---------------------------------------------------------------------------------

typedef struct {
  struct jpeg_error_mgr pub; // first: libjpeg hands us &pub
  jmp_buf jump;
  char msg[JMSG_LENGTH_MAX]; // the error, or the first warning
  int warnings;
} jpeg_errors;

static _Noreturn void on_jpeg_error(j_common_ptr ci) {
  jpeg_errors *err = (jpeg_errors *)ci->err;
  err->pub.format_message(ci, err->msg);
  longjmp(err->jump, 1);
}

// Warnings (level -1) note corrupt data that libjpeg decodes around, which PIL ignores: counted,
// and the first kept for messages. Running out of data, when libjpeg would go on with gray rows, is
// an error. Trace messages (level >= 0) are ignored.
static void on_jpeg_message(j_common_ptr ci, int level) {
  jpeg_errors *err = (jpeg_errors *)ci->err;
  if (level >= 0) return;
  if (ci->err->msg_code == JWRN_JPEG_EOF) on_jpeg_error(ci);
  if (!err->warnings++) err->pub.format_message(ci, err->msg);
}

typedef ef_status (*jpeg_job)(j_decompress_ptr ci, void *arg);

// Reads the header of the JPEG in buf, checks its size and runs job on the decompressor.
static ef_status with_jpeg(const uint8_t *buf, size_t len, const char *name, jpeg_job job, void *arg) {
  struct jpeg_decompress_struct ci;
  jpeg_errors err;
  ci.err = jpeg_std_error(&err.pub);
  err.warnings = 0;
  err.pub.error_exit = on_jpeg_error;
  err.pub.emit_message = on_jpeg_message;
  if (setjmp(err.jump)) {
    jpeg_destroy_decompress(&ci);
    return EF_ERROR(EF_ERR_FORMAT, "%s: corrupt or truncated JPEG (libjpeg: %s)", name, err.msg);
  }
  jpeg_create_decompress(&ci);
  jpeg_mem_src(&ci, buf, (unsigned long)len);
  jpeg_read_header(&ci, TRUE);
  ef_status st = check_size(name, ci.image_width, ci.image_height);
  if (st == EF_OK) st = job(&ci, arg);
  jpeg_destroy_decompress(&ci); // also abandons a decode stopped after the region's last row
  return st;
}

static ef_status jpeg_size(j_decompress_ptr ci, void *arg) {
  int *wh = arg;
  wh[0] = (int)ci->image_width, wh[1] = (int)ci->image_height;
  return EF_OK;
}

// Sets the scale M/8 for the region box: the smallest M of 1, 2, 4 whose scaled region (box w *
// scale_x by box h * scale_y, with libjpeg's scaled size ceil(W*M/8)) is at least min_w x min_h,
// else 8 (as when both are 0). libjpeg-turbo has SIMD inverse DCTs for these sizes only; its
// 3/8, 5/8, 6/8 and 7/8 scales run in plain C and cost more than a full decode.
static void jpeg_choose_scale(j_decompress_ptr ci, const int box[4], int min_w, int min_h) {
  ci->scale_denom = 8;
  for (ci->scale_num = (min_w > 0 || min_h > 0) ? 1 : 8; ci->scale_num < 8; ci->scale_num *= 2) {
    jpeg_calc_output_dimensions(ci);
    if ((int64_t)box[2] * ci->output_width >= (int64_t)min_w * ci->image_width &&
        (int64_t)box[3] * ci->output_height >= (int64_t)min_h * ci->image_height)
      return;
  }
}

// [*lo, *hi): the pixels of a scaled image (s pixels for n source pixels) that source pixels
// [x, x + w) overlap.
static void scaled_span(int x, int w, int n, int s, int *lo, int *hi) {
  *lo = (int)((int64_t)x * s / n);
  *hi = (int)(((int64_t)(x + w) * s + n - 1) / n);
}

// PIL reads CMYK JPEG samples as Adobe's inverted CMYK (ink = 255 - sample, marker or not) and
// converts with r = (255 - ink_k) - MULDIV255(ink_c, 255 - ink_k); MULDIV255 rounds a*b/255 to
// nearest, so in samples r = k - round((255 - c) * k / 255).
static void cmyk_row_to_rgb(uint8_t *rgb, const uint8_t *cmyk, int w) {
  for (int j = 0; j < w; j++, rgb += 3, cmyk += 4) {
    unsigned k = cmyk[3];
    for (int i = 0; i < 3; i++) rgb[i] = (uint8_t)(k - ((255u - cmyk[i]) * k + 127) / 255);
  }
}

static ef_status jpeg_decode(j_decompress_ptr ci, void *arg) {
  decode_call *call = arg;
  int box[4];
  EF_TRY(resolve_region(call->name, call->rq, (int)ci->image_width, (int)ci->image_height, box));
  jpeg_choose_scale(ci, box, call->rq->min_w, call->rq->min_h);
  bool cmyk = ci->jpeg_color_space == JCS_CMYK || ci->jpeg_color_space == JCS_YCCK;
  bool gray_out = ci->jpeg_color_space == JCS_GRAYSCALE && call->rq->channels == 1; // else RGB, made gray later
  ci->out_color_space = cmyk ? JCS_CMYK : gray_out ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_start_decompress(ci);
  int sw = (int)ci->output_width, sh = (int)ci->output_height, x0, x1, y0, y1;
  scaled_span(box[0], box[2], (int)ci->image_width, sw, &x0, &x1);
  scaled_span(box[1], box[3], (int)ci->image_height, sh, &y0, &y1);
  // One column more on each side: a crop's upsampling of horizontally subsampled chroma has no
  // neighbour beyond its first and last columns, so those differ from the full decode's.
  x0 = x0 > 0 ? x0 - 1 : 0, x1 = x1 < sw ? x1 + 1 : sw;
  JDIMENSION off_x = (JDIMENSION)x0, w = (JDIMENSION)(x1 - x0);
  if (w < (JDIMENSION)sw) jpeg_crop_scanline(ci, &off_x, &w); // moves off_x down to an iMCU edge
  if (y0 > 0) {
    JDIMENSION skipped = jpeg_skip_scanlines(ci, (JDIMENSION)y0);
    EF_ASSERT(skipped == (JDIMENSION)y0, "%s: skipped %u of %d rows", call->name, skipped, y0);
  }
  ef_image_reshape(call->out, (int)w, y1 - y0, gray_out ? 1 : 3);
  JSAMPROW cmyk_row = cmyk ? (*ci->mem->alloc_sarray)((j_common_ptr)ci, JPOOL_IMAGE, w * 4, 1)[0] : NULL;
  size_t stride = (size_t)w * (size_t)call->out->c;
  for (int i = 0; i < y1 - y0; i++) {
    uint8_t *dst = call->out->px + (size_t)i * stride;
    JSAMPROW row = cmyk ? cmyk_row : dst;
    JDIMENSION got = jpeg_read_scanlines(ci, &row, 1);
    EF_ASSERT(got == 1, "%s: row %d did not come (a memory source never suspends)", call->name, y0 + i);
    if (cmyk) cmyk_row_to_rgb(dst, cmyk_row, (int)w);
  }
  int warnings = ((jpeg_errors *)ci->err)->warnings;
  if (warnings && call->rq->strict)
    return EF_ERROR(EF_ERR_FORMAT, "%s: corrupt JPEG data (libjpeg: %s; %d warning%s)", call->name,
                    ((jpeg_errors *)ci->err)->msg, warnings, warnings > 1 ? "s" : "");
  *call->info = (ef_decode_info){.scale_x = (double)sw / ci->image_width,
                                 .scale_y = (double)sh / ci->image_height,
                                 .off_x = (int)off_x,
                                 .off_y = y0,
                                 .warnings = warnings};
  return EF_OK;
}

// ---- PNG ----------------------------------------------------------------------------------

// libpng's reader of buf, and where its error handler leaves the message.
typedef struct {
  const uint8_t *next;
  size_t left;
  char msg[256];
} png_source;

static void on_png_error(png_structp png, png_const_charp msg) {
  png_source *src = png_get_error_ptr(png);
  snprintf(src->msg, sizeof src->msg, "%s", msg);
  png_longjmp(png, 1);
}

// Warnings are problems libpng recovers from (a bad ancillary chunk, say), as PIL does.
static void on_png_warning(png_structp png, png_const_charp msg) {}

static void read_png_bytes(png_structp png, png_bytep dst, size_t n) {
  png_source *src = png_get_io_ptr(png);
  if (n > src->left) png_error(png, "the file ends early (truncated)");
  memcpy(dst, src->next, n);
  src->next += n, src->left -= n;
}

typedef ef_status (*png_job)(png_structp png, png_infop info, void *arg);

// Reads the chunks of the PNG in buf up to its image data, checks its size and runs job.
static ef_status with_png(const uint8_t *buf, size_t len, const char *name, png_job job, void *arg) {
  png_source src = {.next = buf, .left = len};
  png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &src, on_png_error, on_png_warning);
  png_infop info = png ? png_create_info_struct(png) : NULL;
  if (!info) {
    png_destroy_read_struct(&png, NULL, NULL);
    return EF_ERROR(EF_ERR_NOMEM, "%s: out of memory for libpng's reader", name);
  }
  png_set_read_fn(png, &src, read_png_bytes);
  png_set_crc_action(png, PNG_CRC_DEFAULT, PNG_CRC_ERROR_QUIT); // a bad checksum anywhere is an error
  ef_status st;
  if (setjmp(png_jmpbuf(png))) {
    st = EF_ERROR(EF_ERR_FORMAT, "%s: corrupt or truncated PNG (libpng: %s)", name, src.msg);
  } else {
    png_read_info(png, info);
    st = check_size(name, png_get_image_width(png, info), png_get_image_height(png, info));
    if (st == EF_OK) st = job(png, info, arg);
  }
  png_destroy_read_struct(&png, &info, NULL);
  return st;
}

static ef_status png_size(png_structp png, png_infop info, void *arg) {
  int *wh = arg;
  wh[0] = (int)png_get_image_width(png, info), wh[1] = (int)png_get_image_height(png, info);
  return EF_OK;
}

// Decodes the whole image as 8-bit gray or RGB: palettes and 1/2/4-bit gray expanded, 16 bits cut
// to the high byte, alpha (and tRNS) dropped. The chunks after the image data (IEND) are not read:
// PIL does not require them either.
static ef_status png_decode(png_structp png, png_infop info, void *arg) {
  decode_call *call = arg;
  int w = (int)png_get_image_width(png, info), h = (int)png_get_image_height(png, info), box[4];
  EF_TRY(resolve_region(call->name, call->rq, w, h, box));
  int type = png_get_color_type(png, info);
  if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (type == PNG_COLOR_TYPE_GRAY) png_set_expand_gray_1_2_4_to_8(png);
  if (!(type & PNG_COLOR_MASK_COLOR) && call->rq->channels == 3) png_set_gray_to_rgb(png);
  png_set_strip_16(png);
  png_set_strip_alpha(png);
  int passes = png_set_interlace_handling(png);
  png_read_update_info(png, info);
  int c = png_get_channels(png, info);
  size_t stride = (size_t)w * (size_t)c;
  EF_ASSERT((c == 1 || c == 3) && png_get_rowbytes(png, info) == stride, "%s: %d channels, %zu bytes a row", call->name,
            c, (size_t)png_get_rowbytes(png, info));
  ef_image_reshape(call->out, w, h, c);
  for (int pass = 0; pass < passes; pass++) // interlaced images fill the rows in passes
    for (int i = 0; i < h; i++) png_read_row(png, call->out->px + (size_t)i * stride, NULL);
  *call->info = (ef_decode_info){.scale_x = 1, .scale_y = 1};
  return EF_OK;
}

// ---- the API ------------------------------------------------------------------------------

ef_status ef_image_probe(const uint8_t *buf, size_t len, const char *name, ef_image_kind *kind, int *w, int *h) {
  EF_TRY(sniff(buf, len, name, kind));
  int wh[2];
  EF_TRY(*kind == EF_IMAGE_JPEG ? with_jpeg(buf, len, name, jpeg_size, wh) : with_png(buf, len, name, png_size, wh));
  *w = wh[0], *h = wh[1];
  return EF_OK;
}

// PIL's convert("L") of the RGB pixels of im, in place (each gray byte lands before its triple, and
// reshaping to fewer bytes keeps the buffer).
static void rgb_to_gray(ef_image *im) {
  size_t n = (size_t)im->w * (size_t)im->h;
  for (size_t i = 0; i < n; i++) im->px[i] = ef_luma(im->px + 3 * i);
  ef_image_reshape(im, im->w, im->h, 1);
}

ef_status ef_image_decode(const uint8_t *buf, size_t len, const char *name, const ef_decode_request *rq, ef_image *out,
                          ef_decode_info *info) {
  EF_ASSERT(rq->channels == 1 || rq->channels == 3, "%s: %d channels requested", name, rq->channels);
  ef_image_kind kind;
  EF_TRY(sniff(buf, len, name, &kind));
  decode_call call = {.name = name, .rq = rq, .out = out, .info = info};
  EF_TRY(kind == EF_IMAGE_JPEG ? with_jpeg(buf, len, name, jpeg_decode, &call)
                               : with_png(buf, len, name, png_decode, &call));
  if (rq->channels == 1 && out->c == 3) rgb_to_gray(out);
  return EF_OK;
}
