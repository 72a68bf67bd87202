// Reading IDX files through zlib (which reads plain files as they are), checking the magic
// number, the dimensions, the length and the agreement of images and labels.
#include "data/idx.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

// Reads `len` bytes; on a short read, an error saying whether zlib found corrupt data or the
// file simply ended (`what` names the part being read).
static ef_status read_exact(gzFile f, const char *path, void *buf, int64_t len, const char *what) {
  int got = gzread(f, buf, (unsigned)len);
  if (got == len) return EF_OK;
  int err = Z_OK;
  const char *zmsg = gzerror(f, &err);
  if (got < 0 || (err != Z_OK && err != Z_BUF_ERROR))
    return EF_ERROR(EF_ERR_FORMAT, "%s: corrupt gzip data, found while reading the %s (zlib: %s)", path, what, zmsg);
  return EF_ERROR(EF_ERR_FORMAT, "%s: truncated: %d of %lld bytes of the %s", path, got, (long long)len, what);
}

// Reads a whole IDX file of unsigned bytes with `ndim` dimensions into *data.
static ef_status read_idx(const char *path, uint32_t magic, int ndim, int64_t *dims, uint8_t **data) {
  *data = NULL;
  gzFile f = gzopen(path, "rb");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot open %s: %s", path, strerror(errno ? errno : ENOENT));
  ef_status st = EF_OK;
  uint8_t head[4 + 4 * 3];
  if ((st = read_exact(f, path, head, 4 + 4 * ndim, "IDX header")) != EF_OK) goto done;
  uint32_t m = (uint32_t)head[0] << 24 | (uint32_t)head[1] << 16 | (uint32_t)head[2] << 8 | head[3];
  if (m != magic) {
    st = EF_ERROR(EF_ERR_FORMAT, "%s: magic number 0x%08x, expected 0x%08x (is this the right IDX file?)", path, m,
                  magic);
    goto done;
  }
  int64_t total = 1;
  for (int i = 0; i < ndim; i++) {
    const uint8_t *d = head + 4 + 4 * i;
    dims[i] = (int64_t)((uint32_t)d[0] << 24 | (uint32_t)d[1] << 16 | (uint32_t)d[2] << 8 | d[3]);
    if (dims[i] <= 0 || total > INT_MAX / dims[i]) {
      st = EF_ERROR(EF_ERR_FORMAT, "%s: dimension %d is %lld", path, i, (long long)dims[i]);
      goto done;
    }
    total *= dims[i];
  }
  *data = malloc((size_t)total);
  if (!*data) {
    st = EF_ERROR(EF_ERR_NOMEM, "%s: out of memory for %lld bytes", path, (long long)total);
    goto done;
  }
  if ((st = read_exact(f, path, *data, total, "data")) != EF_OK) goto done;
  // The end: nothing more, and (for gzip) a trailer whose checksum matches.
  uint8_t extra;
  int more = gzread(f, &extra, 1), err = Z_OK;
  const char *zmsg = gzerror(f, &err);
  if (more < 0 || (err != Z_OK && err != Z_BUF_ERROR))
    st = EF_ERROR(EF_ERR_FORMAT, "%s: corrupt gzip data at the end of the file (zlib: %s)", path, zmsg);
  else if (more != 0) st = EF_ERROR(EF_ERR_FORMAT, "%s: unexpected bytes after the data", path);
done:
  gzclose(f);
  if (st != EF_OK) {
    free(*data);
    *data = NULL;
  }
  return st;
}

ef_status ef_idx_load(const char *images_path, const char *labels_path, ef_idx_dataset *out) {
  memset(out, 0, sizeof *out);
  int64_t idims[3] = {0}, ldims[1] = {0};
  uint8_t *pixels, *labels;
  EF_TRY(read_idx(images_path, 0x00000803u, 3, idims, &pixels));
  ef_status st = read_idx(labels_path, 0x00000801u, 1, ldims, &labels);
  if (st != EF_OK) {
    free(pixels);
    return st;
  }
  if (ldims[0] != idims[0]) {
    free(pixels), free(labels);
    return EF_ERROR(EF_ERR_FORMAT, "%s has %lld images but %s has %lld labels", images_path, (long long)idims[0],
                    labels_path, (long long)ldims[0]);
  }
  *out = (ef_idx_dataset){.n = idims[0], .rows = idims[1], .cols = idims[2], .pixels = pixels};
  out->labels = ef_xmalloc(sizeof(int32_t) * (size_t)out->n);
  for (int64_t i = 0; i < out->n; i++) {
    out->labels[i] = labels[i];
    if (labels[i] + 1 > out->num_classes) out->num_classes = labels[i] + 1;
  }
  free(labels);
  return EF_OK;
}

// "<dir>/<split>-<kind>-ubyte.gz", or without .gz when only that exists.
static void idx_path(char *buf, size_t len, const char *dir, const char *split, const char *kind) {
  snprintf(buf, len, "%s/%s-%s-ubyte.gz", dir, split, kind);
  if (access(buf, R_OK) != 0) snprintf(buf, len, "%s/%s-%s-ubyte", dir, split, kind);
}

ef_status ef_idx_load_dir(const char *dir, const char *split, ef_idx_dataset *out) {
  char images[4096], labels[4096];
  idx_path(images, sizeof images, dir, split, "images-idx3");
  idx_path(labels, sizeof labels, dir, split, "labels-idx1");
  return ef_idx_load(images, labels, out);
}

void ef_idx_free(ef_idx_dataset *d) {
  free(d->pixels);
  free(d->labels);
  memset(d, 0, sizeof *d);
}
