// Encoders of data/encode.h: libjpeg's compressor into a memory destination (jpeg_mem_dest), and
// libpng's simplified write API into memory.
#include "data/encode.h"

#include <errno.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

typedef struct {
  struct jpeg_error_mgr mgr;
  jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
} jpeg_error;

static void jpeg_fail(j_common_ptr c) {
  jpeg_error *e = (jpeg_error *)c->err;
  c->err->format_message(c, e->message);
  longjmp(e->jump, 1);
}

// The compression itself, apart from the setjmp of its caller: *out and *size live in the caller's
// frame, so their values are defined after a longjmp.
static void compress_jpeg(j_compress_ptr c, const ef_image *im, int quality, unsigned char **out, unsigned long *size) {
  jpeg_create_compress(c);
  jpeg_mem_dest(c, out, size);
  c->image_width = (JDIMENSION)im->w, c->image_height = (JDIMENSION)im->h, c->input_components = im->c;
  c->in_color_space = im->c == 3 ? JCS_RGB : JCS_GRAYSCALE;
  jpeg_set_defaults(c);
  jpeg_set_quality(c, quality, TRUE);
  jpeg_start_compress(c, TRUE);
  while (c->next_scanline < c->image_height) {
    JSAMPROW row = im->px + (size_t)c->next_scanline * im->w * im->c;
    jpeg_write_scanlines(c, &row, 1);
  }
  jpeg_finish_compress(c);
}

// Runs compress_jpeg with libjpeg's errors turned into a return: 0 on success.
static int try_compress_jpeg(const ef_image *im, int quality, unsigned char **out, unsigned long *size, char *message) {
  struct jpeg_compress_struct c;
  jpeg_error err;
  c.err = jpeg_std_error(&err.mgr);
  err.mgr.error_exit = jpeg_fail;
  if (setjmp(err.jump)) {
    jpeg_destroy_compress(&c);
    memcpy(message, err.message, sizeof err.message);
    return 1;
  }
  compress_jpeg(&c, im, quality, out, size);
  jpeg_destroy_compress(&c);
  return 0;
}

ef_status ef_image_encode_jpeg(const ef_image *im, int quality, uint8_t **buf, size_t *len) {
  EF_ASSERT(quality >= 1 && quality <= 100, "JPEG quality %d", quality);
  unsigned char *out = NULL;
  unsigned long size = 0;
  char message[JMSG_LENGTH_MAX];
  if (try_compress_jpeg(im, quality, &out, &size, message)) {
    free(out);
    return EF_ERROR(EF_ERR_FORMAT, "JPEG encoding failed: %s", message);
  }
  *buf = out, *len = size;
  return EF_OK;
}

ef_status ef_image_encode_png(const ef_image *im, uint8_t **buf, size_t *len) {
  png_image p = {.version = PNG_IMAGE_VERSION,
                 .width = (png_uint_32)im->w,
                 .height = (png_uint_32)im->h,
                 .format = im->c == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_GRAY};
  png_alloc_size_t size = 0;
  if (!png_image_write_to_memory(&p, NULL, &size, 0, im->px, 0, NULL))
    return EF_ERROR(EF_ERR_FORMAT, "PNG encoding failed: %s", p.message);
  *buf = ef_xmalloc(size);
  if (!png_image_write_to_memory(&p, *buf, &size, 0, im->px, 0, NULL)) {
    free(*buf);
    *buf = NULL;
    return EF_ERROR(EF_ERR_FORMAT, "PNG encoding failed: %s", p.message);
  }
  *len = size;
  return EF_OK;
}

ef_status ef_write_file(const char *path, const uint8_t *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot create %s: %s", path, strerror(errno));
  size_t wrote = fwrite(buf, 1, len, f);
  if (fclose(f) != 0 || wrote != len) return EF_ERROR(EF_ERR_IO, "writing %s failed: %s", path, strerror(errno));
  return EF_OK;
}
