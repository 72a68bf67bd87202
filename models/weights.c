// HDF5 model weights (see weights.h): layout conversion between our (O,KH,KW,I) conv weights and
// PyTorch's OIHW, atomic writes of files built in memory, each tensor with its CRC-32C, and a
// loader that checks the whole file (shapes, checksums, values) before changing the store.
// HDF5's own error printing is turned off; every failure becomes one message.
// Written against HDF5 1.10 (Debian 12), whose link iteration is H5Literate / H5L_info_t.
#include "models/weights.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/crc32c.h"
#include "core/file.h"

// Checksums are of the bytes as the file holds them: little-endian, as this host's.
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "weights files are little-endian: a big-endian host would need byte swaps for their checksums"
#endif

// Each dataset's attribute holding the CRC-32C of its bytes, and the root's holding that of the
// other root attributes (files from before have neither): they survive a copy by HDF5's tools.
#define CRC_ATTR "crc32c"
#define ATTRS_CRC "attributes_crc32c"

// And the whole file's: its first 512 bytes, a user block HDF5 leaves to its user, say
// "EFFNET-CHECKSUM 1 crc32c <8 hex digits> size <bytes>" of the bytes after them. Checked before
// HDF5 reads anything, so that damage anywhere (data, metadata, heaps) is found without HDF5
// parsing it: HDF5 1.10 loops forever, or reads past its buffers, on some damaged files.
enum { USERBLOCK = 512 };
#define FILE_SUM "EFFNET-CHECKSUM 1 crc32c "

static void quiet_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

// An entry's shape in PyTorch's order: 4-D conv weights (O,KH,KW,I) become (O,I,KH,KW).
static int torch_dims(const ef_store_entry *e, hsize_t *dims) {
  if (e->ndim == 4) {
    dims[0] = (hsize_t)e->shape[0], dims[1] = (hsize_t)e->shape[3], dims[2] = (hsize_t)e->shape[1],
    dims[3] = (hsize_t)e->shape[2];
  } else {
    for (int i = 0; i < e->ndim; i++) dims[i] = (hsize_t)e->shape[i];
  }
  return e->ndim;
}

// Between our layout and PyTorch's: (O,KH,KW,I) <-> (O,I,KH,KW) for 4-D entries, a copy otherwise.
static void convert_layout(const ef_store_entry *e, const float *src, float *dst, bool to_torch) {
  if (e->ndim != 4) {
    memcpy(dst, src, e->numel * sizeof(float));
    return;
  }
  int64_t o = e->shape[0], kh = e->shape[1], kw = e->shape[2], in = e->shape[3];
  for (int64_t a = 0; a < o; a++)
    for (int64_t h = 0; h < kh; h++)
      for (int64_t w = 0; w < kw; w++)
        for (int64_t i = 0; i < in; i++) {
          int64_t ours = ((a * kh + h) * kw + w) * in + i, torch = ((a * in + i) * kh + h) * kw + w;
          dst[to_torch ? torch : ours] = src[to_torch ? ours : torch];
        }
}

static const char *suffix(const char *name, const char *end) {
  size_t n = strlen(name), m = strlen(end);
  return n >= m && !strcmp(name + n - m, end) ? name + n - m : NULL;
}

// ---- writing ---------------------------------------------------------------------------------

// A scalar attribute of type file_type, written from `value` of type mem_type.
static herr_t write_attr(hid_t f, const char *name, hid_t file_type, hid_t mem_type, const void *value) {
  hid_t sp = H5Screate(H5S_SCALAR), a = H5Acreate2(f, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = a < 0 ? -1 : H5Awrite(a, mem_type, value);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return st;
}

static herr_t attr_double(hid_t f, const char *name, double v) {
  return write_attr(f, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}

static herr_t attr_int(hid_t f, const char *name, int v) {
  return write_attr(f, name, H5T_STD_I32LE, H5T_NATIVE_INT, &v);
}

// A variable-length UTF-8 string (h5py reads it as str).
static herr_t attr_string(hid_t f, const char *name, const char *v) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  herr_t st = write_attr(f, name, t, t, &v);
  H5Tclose(t);
  return st;
}

static herr_t write_config(hid_t f, const ef_effnet_config *c) {
  herr_t st = attr_string(f, "model", c->name);
  if (st >= 0) st = attr_double(f, "width", c->width);
  if (st >= 0) st = attr_double(f, "depth", c->depth);
  if (st >= 0) st = attr_int(f, "resolution", c->resolution);
  if (st >= 0) st = attr_double(f, "dropout", c->dropout);
  if (st >= 0) st = attr_double(f, "drop_path", c->drop_path);
  if (st >= 0) st = attr_int(f, "num_classes", c->num_classes);
  if (st >= 0) st = attr_int(f, "in_channels", c->in_channels);
  if (st >= 0) st = attr_string(f, "padding", c->padding == EF_PAD_SAME ? "same" : "symmetric");
  if (st >= 0) st = attr_double(f, "bn_eps", c->bn_eps);
  if (st >= 0) st = attr_double(f, "bn_momentum", c->bn_momentum);
  if (st >= 0) st = attr_string(f, "activation", ef_act_name(c->act));
  if (st >= 0) st = attr_int(f, "squeeze_excite", c->squeeze_excite);
  if (st >= 0) st = attr_int(f, "fixed_stem_head", c->fixed_stem_head);
  return st;
}

// A dataset of `bytes` bytes of data (4- or 8-byte little-endian elements, as the host's), with the
// CRC-32C of those bytes as its attribute; lcpl makes missing groups on the way, or H5P_DEFAULT.
static herr_t write_dataset(hid_t grp, const char *name, hid_t file_type, hid_t mem_type, int ndim, const hsize_t *dims,
                            const void *data, size_t bytes, hid_t lcpl) {
  hid_t sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t d = H5Dcreate2(grp, name, file_type, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = d < 0 ? -1 : H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  uint32_t crc = ef_crc32c(data, bytes);
  if (st >= 0) st = write_attr(d, CRC_ATTR, H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc);
  if (d >= 0 && H5Dclose(d) < 0) st = -1;
  H5Sclose(sp);
  return st;
}

// Whether a set holds entry e: the model and sets with a state array hold every entry, the
// others the trainable ones; none holds the entries it skips.
static bool skipped(const ef_tensor_set *set, const char *name) {
  return set->skip && !strncmp(name, set->skip, strlen(set->skip));
}
static bool set_holds(const ef_tensor_set *set, const ef_store_entry *e) {
  return (e->trainable || !set->param || set->state) && !skipped(set, e->name);
}

// Entry i's values in the set (our layout) into dst. A set's arrays live where the store does
// (an optimizer slot, the EMA on the GPU): copies go through the store's backend.
static void set_read(const ef_store *s, const ef_tensor_set *set, int i, float *dst) {
  const ef_store_entry *e = &s->entries[i];
  if (!set->param) ef_store_read(s, i, e->trainable ? EF_ARENA_PARAM : EF_ARENA_STATE, dst);
  else s->be->download(s->be, dst, (e->trainable ? set->param : set->state) + e->offset, e->numel * sizeof(float));
}

static void set_write(ef_store *s, const ef_tensor_set *set, int i, const float *src) {
  const ef_store_entry *e = &s->entries[i];
  if (!set->param) ef_store_write(s, i, e->trainable ? EF_ARENA_PARAM : EF_ARENA_STATE, src);
  else s->be->upload(s->be, (e->trainable ? set->param : set->state) + e->offset, src, e->numel * sizeof(float));
}

static herr_t write_set(hid_t f, const ef_store *s, const ef_tensor_set *set) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1); // "optimizer/momentum" creates /optimizer too
  hid_t grp = H5Gcreate2(f, set->group, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  if (grp < 0) return -1;
  herr_t st = 0;
  for (int i = 0; i < s->n && st >= 0; i++) {
    const ef_store_entry *e = &s->entries[i];
    if (!set_holds(set, e)) continue;
    float *ours = ef_xmalloc(e->numel * sizeof(float)), *torch = ef_xmalloc(e->numel * sizeof(float));
    set_read(s, set, i, ours);
    convert_layout(e, ours, torch, true);
    hsize_t dims[EF_MAX_DIMS];
    int nd = torch_dims(e, dims);
    st = write_dataset(grp, e->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nd, dims, torch, e->numel * sizeof(float),
                       H5P_DEFAULT);
    const char *rm = suffix(e->name, ".running_mean");
    if (st >= 0 && rm) { // BatchNorm's counter, so that PyTorch's strict loading finds it
      char nbt[EF_NAME_LEN + 32];
      snprintf(nbt, sizeof nbt, "%.*s.num_batches_tracked", (int)(rm - e->name), e->name);
      long long zero = 0;
      st = write_dataset(grp, nbt, H5T_STD_I64LE, H5T_NATIVE_LLONG, 0, NULL, &zero, sizeof zero, H5P_DEFAULT);
    }
    free(ours);
    free(torch);
  }
  H5Gclose(grp);
  return st;
}

static herr_t write_attrs(hid_t f, const ef_attr *attrs, int n) {
  herr_t st = 0;
  for (int i = 0; i < n && st >= 0; i++) {
    const ef_attr *a = &attrs[i];
    if (a->kind == EF_ATTR_INT) st = write_attr(f, a->name, H5T_STD_I64LE, H5T_NATIVE_INT64, &a->i);
    else if (a->kind == EF_ATTR_DOUBLE) st = attr_double(f, a->name, a->d);
    else st = attr_string(f, a->name, a->s);
  }
  return st;
}

ef_status ef_weights_save(const char *path, const ef_store *s, const ef_effnet_config *cfg) {
  return ef_weights_save_sets(path, s, cfg, &(ef_tensor_set){"model", NULL, NULL}, 1, NULL, 0);
}

// The CRC-32C of a file's root attributes but ATTRS_CRC itself, in name order: each one's name, its
// class and its value as read (integers as int64, numbers as double, text as its bytes). Every
// attribute effnet writes is a scalar; anything else fails the digest (-1).
typedef struct {
  uint8_t *p;
  size_t n, cap;
} digest_bytes;

static void digest_add(digest_bytes *d, const void *p, size_t n) {
  if (d->n + n > d->cap) d->p = ef_xrealloc(d->p, d->cap = 2 * (d->n + n));
  memcpy(d->p + d->n, p, n), d->n += n;
}

static herr_t digest_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
  (void)info;
  digest_bytes *d = data;
  if (!strcmp(name, ATTRS_CRC)) return 0;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT), ft = a < 0 ? -1 : H5Aget_type(a), sp = a < 0 ? -1 : H5Aget_space(a);
  int cls = ft < 0 ? -1 : (int)H5Tget_class(ft);
  herr_t st = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1 ? 0 : -1;
  digest_add(d, name, strlen(name) + 1), digest_add(d, &cls, sizeof cls);
  if (st >= 0 && cls == H5T_INTEGER) {
    int64_t v;
    if ((st = H5Aread(a, H5T_NATIVE_INT64, &v)) >= 0) digest_add(d, &v, sizeof v);
  } else if (st >= 0 && cls == H5T_FLOAT) {
    double v;
    if ((st = H5Aread(a, H5T_NATIVE_DOUBLE, &v)) >= 0) digest_add(d, &v, sizeof v);
  } else if (st >= 0 && cls == H5T_STRING) {
    hid_t t = H5Tcopy(ft);
    if (H5Tis_variable_str(ft) > 0) {
      char *v = NULL;
      if ((st = H5Aread(a, t, &v)) >= 0 && v) digest_add(d, v, strlen(v) + 1);
      if (v) H5free_memory(v);
    } else {
      size_t size = H5Tget_size(ft);
      char *v = ef_xcalloc(size + 1, 1);
      if ((st = H5Aread(a, t, v)) >= 0) digest_add(d, v, size);
      free(v);
    }
    H5Tclose(t);
  } else {
    st = -1;
  }
  if (sp >= 0) H5Sclose(sp);
  if (ft >= 0) H5Tclose(ft);
  if (a >= 0) H5Aclose(a);
  return st < 0 ? -1 : 0;
}

static herr_t attrs_digest(hid_t f, uint32_t *crc) {
  digest_bytes d = {0};
  hsize_t at = 0;
  herr_t st = H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, &at, digest_attr, &d);
  *crc = ef_crc32c(d.p, d.n);
  free(d.p);
  return st;
}

// Writes a new HDF5 file at path atomically. HDF5 builds it in memory (its core driver, no backing
// store) and ef_file_write puts it on disk: a full disk is then a failed write of ours, with its
// reason, and never a failure inside HDF5 (1.10 crashes at exit on a file whose close failed, its
// handle half closed). The transient cost is the file's size twice in memory. The root attributes
// get their digest last.
static ef_status save_atomic(const char *path, herr_t (*write)(hid_t f, const void *ctx), const void *ctx) {
  quiet_hdf5();
  char tmp[4096];
  ef_file_tmp_name(tmp, sizeof tmp, path); // only the file's name in memory: HDF5 writes nothing there
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS), fcpl = H5Pcreate(H5P_FILE_CREATE);
  herr_t st = fapl < 0 || fcpl < 0 ? -1 : H5Pset_fapl_core(fapl, 16 << 20, 0);
  if (st >= 0) st = H5Pset_userblock(fcpl, USERBLOCK);
  hid_t f = st < 0 ? -1 : H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
  st = f < 0 ? -1 : attr_string(f, "format", "effnet");
  if (st >= 0) st = attr_int(f, "format_version", EF_WEIGHTS_FORMAT_VERSION);
  if (st >= 0) st = write(f, ctx);
  uint32_t crc;
  if (st >= 0) st = attrs_digest(f, &crc);
  if (st >= 0) st = write_attr(f, ATTRS_CRC, H5T_STD_U32LE, H5T_NATIVE_UINT32, &crc);
  if (st >= 0) st = H5Fflush(f, H5F_SCOPE_GLOBAL); // H5Fget_file_image's own flush leaves a stale image
  // The image is the file from its superblock on: the user block goes before it.
  ssize_t size = st >= 0 ? H5Fget_file_image(f, NULL, 0) : -1;
  char *image = size > 0 ? malloc(USERBLOCK + (size_t)size) : NULL;
  if (image && H5Fget_file_image(f, image + USERBLOCK, (size_t)size) != size) st = -1;
  if (f >= 0 && H5Fclose(f) < 0) st = -1;
  if (fapl >= 0) H5Pclose(fapl);
  if (fcpl >= 0) H5Pclose(fcpl);
  if (st < 0 || !image) {
    free(image);
    return EF_ERROR(EF_ERR_NOMEM, "building %s in memory failed (out of memory?); %s is unchanged", tmp, path);
  }
  memset(image, 0, USERBLOCK);
  size += USERBLOCK;
  snprintf(image, USERBLOCK, FILE_SUM "%08x size %lld\n", ef_crc32c(image + USERBLOCK, (size_t)size - USERBLOCK),
           (long long)size);
  ef_status written = ef_file_write(path, image, (size_t)size);
  free(image);
  return written;
}

typedef struct {
  const ef_store *s;
  const ef_effnet_config *cfg;
  const ef_tensor_set *sets;
  int nsets, nattrs;
  const ef_attr *attrs;
} weights_job;

static herr_t write_weights(hid_t f, const void *ctx) {
  const weights_job *j = ctx;
  herr_t st = j->cfg ? write_config(f, j->cfg) : 0;
  if (st >= 0) st = write_attrs(f, j->attrs, j->nattrs);
  for (int i = 0; i < j->nsets && st >= 0; i++) st = write_set(f, j->s, &j->sets[i]);
  return st;
}

ef_status ef_weights_save_sets(const char *path, const ef_store *s, const ef_effnet_config *cfg,
                               const ef_tensor_set *sets, int nsets, const ef_attr *attrs, int nattrs) {
  weights_job j = {s, cfg, sets, nsets, nattrs, attrs};
  return save_atomic(path, write_weights, &j);
}

typedef struct {
  const ef_h5_array *arrays;
  int n, nattrs;
  const ef_attr *attrs;
} arrays_job;

static herr_t write_arrays(hid_t f, const void *ctx) {
  const arrays_job *j = ctx;
  herr_t st = write_attrs(f, j->attrs, j->nattrs);
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1); // "train/features" creates /train
  for (int i = 0; i < j->n && st >= 0; i++) {
    const ef_h5_array *a = &j->arrays[i];
    hsize_t dims[2] = {(hsize_t)a->dims[0], (hsize_t)a->dims[1]};
    size_t bytes = 4 * (size_t)a->dims[0] * (size_t)(a->ndim == 2 ? a->dims[1] : 1);
    st = write_dataset(f, a->name, a->is_int ? H5T_STD_I32LE : H5T_IEEE_F32LE,
                       a->is_int ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, a->ndim, dims, a->data, bytes, lcpl);
  }
  H5Pclose(lcpl);
  return st;
}

ef_status ef_h5_save_arrays(const char *path, const ef_h5_array *arrays, int n, const ef_attr *attrs, int nattrs) {
  for (int i = 0; i < n; i++)
    EF_ASSERT(arrays[i].ndim >= 1 && arrays[i].ndim <= 2, "array %s: %d dimensions", arrays[i].name, arrays[i].ndim);
  arrays_job j = {arrays, n, nattrs, attrs};
  return save_atomic(path, write_arrays, &j);
}

// ---- reading ---------------------------------------------------------------------------------

static herr_t read_attr(hid_t f, const char *name, hid_t type, void *v);
static herr_t read_attr_string(hid_t f, const char *name, char *buf, size_t len);

// A file's checksum (its user block), when it has one: EF_OK for a file without one (written
// before them, or by other software), EF_ERR_FORMAT for one that does not match. The last file
// found whole (by device, inode, size and time) is not read again: a load opens a file often.
static ef_status check_file(const char *path, const struct stat *st) {
  static _Thread_local struct stat last;
  if (last.st_ino == st->st_ino && last.st_dev == st->st_dev && last.st_size == st->st_size &&
      last.st_mtim.tv_sec == st->st_mtim.tv_sec && last.st_mtim.tv_nsec == st->st_mtim.tv_nsec)
    return EF_OK;
  FILE *f = fopen(path, "rb");
  if (!f) return EF_ERROR(EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  char head[USERBLOCK + 1] = "";
  size_t got = fread(head, 1, USERBLOCK, f);
  unsigned want = 0;
  long long size = -1;
  if (got < USERBLOCK || strncmp(head, FILE_SUM, strlen(FILE_SUM))) {
    fclose(f);
    // No checksum of the whole file: HDF5 at its start (no user block: an older file, one that
    // HDF5's tools copied), a cleared block, or not HDF5 at all (refused next). An HDF5 file
    // behind a block that is none of these is one of ours whose block was damaged.
    bool cleared = got == USERBLOCK;
    for (size_t i = 0; i < got && cleared; i++) cleared = head[i] == 0;
    if (got < USERBLOCK || cleared || !memcmp(head, "\x89HDF\r\n\x1a\n", 8) || H5Fis_hdf5(path) <= 0) return EF_OK;
    return EF_ERROR(EF_ERR_FORMAT,
                    "%s: its first %d bytes hold no effnet checksum before its HDF5 data: the file is damaged (or "
                    "is another program's HDF5, not effnet weights)",
                    path, USERBLOCK);
  }
  sscanf(head + strlen(FILE_SUM), "%8x size %lld", &want, &size);
  uint32_t crc = 0;
  enum { CHUNK = 1 << 20 };
  uint8_t *buf = ef_xmalloc(CHUNK);
  for (size_t n; (n = fread(buf, 1, CHUNK, f)) > 0;) crc = ef_crc32c_extend(crc, buf, n);
  bool failed = ferror(f);
  fclose(f), free(buf);
  if (failed) return EF_ERROR(EF_ERR_IO, "reading %s failed", path);
  if (size != (long long)st->st_size)
    return EF_ERROR(EF_ERR_FORMAT, "%s cannot be opened as HDF5 (truncated or corrupt?): %lld bytes, %lld when written",
                    path, (long long)st->st_size, size);
  if (crc != want)
    return EF_ERROR(EF_ERR_FORMAT,
                    "%s does not match its checksum: the file is damaged (or was changed by other software)", path);
  last = *st;
  return EF_OK;
}

// Opens a weights file and checks its format attributes.
static ef_status open_weights(const char *path, hid_t *f) {
  quiet_hdf5();
  struct stat st;
  if (access(path, R_OK) != 0 || stat(path, &st) != 0)
    return EF_ERROR(EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
  if (!S_ISREG(st.st_mode)) return EF_ERROR(EF_ERR_IO, "%s is not a regular file (a folder, a FIFO, a device?)", path);
  EF_TRY(check_file(path, &st));
  if (H5Fis_hdf5(path) <= 0) return EF_ERROR(EF_ERR_FORMAT, "%s is not an HDF5 file (or is truncated)", path);
  *f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (*f < 0) return EF_ERROR(EF_ERR_FORMAT, "%s cannot be opened as HDF5 (truncated or corrupt?)", path);
  char format[32];
  int version = 0;
  if (read_attr_string(*f, "format", format, sizeof format) < 0 || strcmp(format, "effnet") ||
      read_attr(*f, "format_version", H5T_NATIVE_INT, &version) < 0) {
    H5Fclose(*f);
    return EF_ERROR(EF_ERR_FORMAT, "%s is HDF5 but not an effnet weights file (no format = \"effnet\" attribute)",
                    path);
  }
  if (version < 1 || version > EF_WEIGHTS_FORMAT_VERSION) {
    H5Fclose(*f);
    return EF_ERROR(EF_ERR_FORMAT, "%s has format version %d; this effnet reads up to %d (update effnet)", path,
                    version, EF_WEIGHTS_FORMAT_VERSION);
  }
  uint32_t want, got;
  if (H5Aexists(*f, ATTRS_CRC) > 0 &&
      (read_attr(*f, ATTRS_CRC, H5T_NATIVE_UINT32, &want) < 0 || attrs_digest(*f, &got) < 0 || got != want)) {
    H5Fclose(*f);
    return EF_ERROR(EF_ERR_FORMAT, "%s: its attributes do not match their checksum: the file is damaged", path);
  }
  if (H5Lexists(*f, "model", H5P_DEFAULT) <= 0) {
    H5Fclose(*f);
    return EF_ERROR(EF_ERR_FORMAT, "%s has no /model group: it is not an effnet weights file", path);
  }
  return EF_OK;
}

// An attribute with exactly one element (anything larger would not fit the value it is read
// into), or -1.
static hid_t open_scalar_attr(hid_t f, const char *name) {
  hid_t a = H5Aexists(f, name) > 0 ? H5Aopen(f, name, H5P_DEFAULT) : -1;
  if (a < 0) return -1;
  hid_t sp = H5Aget_space(a);
  hssize_t n = sp < 0 ? -1 : H5Sget_simple_extent_npoints(sp);
  if (sp >= 0) H5Sclose(sp);
  if (n != 1) {
    H5Aclose(a);
    return -1;
  }
  return a;
}

static herr_t read_attr(hid_t f, const char *name, hid_t type, void *v) {
  hid_t a = open_scalar_attr(f, name);
  if (a < 0) return -1;
  herr_t st = H5Aread(a, type, v);
  H5Aclose(a);
  return st;
}

// A string attribute, variable-length (as we write it) or fixed-length, into buf.
static herr_t read_attr_string(hid_t f, const char *name, char *buf, size_t len) {
  buf[0] = 0;
  hid_t a = open_scalar_attr(f, name);
  if (a < 0) return -1;
  hid_t ft = H5Aget_type(a), t = H5Tcopy(H5T_C_S1);
  herr_t st = H5Tget_class(ft) == H5T_STRING ? 0 : -1;
  if (st >= 0) st = H5Tset_cset(t, H5Tget_cset(ft)); // HDF5 does not convert between character sets
  if (st >= 0 && H5Tis_variable_str(ft) > 0) {
    char *v = NULL;
    H5Tset_size(t, H5T_VARIABLE);
    st = H5Aread(a, t, &v);
    if (st >= 0 && v && strlen(v) >= len) st = -1; // does not fit: an error, not a cut
    if (st >= 0 && v) snprintf(buf, len, "%s", v);
    if (v) H5free_memory(v);
  } else if (st >= 0) {
    size_t size = H5Tget_size(ft); // read at the file's width
    char *tmp = ef_xcalloc(size + 1, 1);
    H5Tset_size(t, size);
    st = H5Aread(a, t, tmp);
    if (st >= 0 && strlen(tmp) >= len) st = -1;
    if (st >= 0) snprintf(buf, len, "%s", tmp);
    free(tmp);
  }
  H5Tclose(t), H5Tclose(ft), H5Aclose(a);
  return st;
}

ef_status ef_weights_read_config(const char *path, ef_effnet_config *c) {
  hid_t f;
  EF_TRY(open_weights(path, &f));
  memset(c, 0, sizeof *c);
  double dropout = 0, drop_path = 0, eps = 0, momentum = 0;
  char padding[16] = "", act[16] = "swish";
  int se = 1, fixed = 0; // the variant switch came with the Lite models: files from before hold the B-series
  herr_t st = read_attr_string(f, "model", c->name, sizeof c->name);
  if (st >= 0) st = read_attr(f, "width", H5T_NATIVE_DOUBLE, &c->width);
  if (st >= 0) st = read_attr(f, "depth", H5T_NATIVE_DOUBLE, &c->depth);
  if (st >= 0) st = read_attr(f, "resolution", H5T_NATIVE_INT, &c->resolution);
  if (st >= 0) st = read_attr(f, "dropout", H5T_NATIVE_DOUBLE, &dropout);
  if (st >= 0) st = read_attr(f, "drop_path", H5T_NATIVE_DOUBLE, &drop_path);
  if (st >= 0) st = read_attr(f, "num_classes", H5T_NATIVE_INT, &c->num_classes);
  if (st >= 0) st = read_attr(f, "in_channels", H5T_NATIVE_INT, &c->in_channels);
  if (st >= 0) st = read_attr_string(f, "padding", padding, sizeof padding);
  if (st >= 0) st = read_attr(f, "bn_eps", H5T_NATIVE_DOUBLE, &eps);
  if (st >= 0) st = read_attr(f, "bn_momentum", H5T_NATIVE_DOUBLE, &momentum);
  if (st >= 0 && H5Aexists(f, "activation") > 0) st = read_attr_string(f, "activation", act, sizeof act);
  if (st >= 0 && H5Aexists(f, "squeeze_excite") > 0) st = read_attr(f, "squeeze_excite", H5T_NATIVE_INT, &se);
  if (st >= 0 && H5Aexists(f, "fixed_stem_head") > 0) st = read_attr(f, "fixed_stem_head", H5T_NATIVE_INT, &fixed);
  H5Fclose(f);
  if (st < 0) return EF_ERROR(EF_ERR_FORMAT, "%s holds no complete model configuration (root attributes)", path);
  c->dropout = (float)dropout, c->drop_path = (float)drop_path, c->bn_eps = (float)eps,
  c->bn_momentum = (float)momentum;
  if (strcmp(padding, "same") && strcmp(padding, "symmetric"))
    return EF_ERROR(EF_ERR_FORMAT, "%s: unknown padding '%s'", path, padding);
  c->padding = strcmp(padding, "same") ? EF_PAD_SYMMETRIC : EF_PAD_SAME;
  c->act = strcmp(act, ef_act_name(EF_ACT_RELU6)) ? EF_ACT_SWISH : EF_ACT_RELU6;
  if (strcmp(act, ef_act_name(c->act))) return EF_ERROR(EF_ERR_FORMAT, "%s: unknown activation '%s'", path, act);
  if ((se != 0 && se != 1) || (fixed != 0 && fixed != 1))
    return EF_ERROR(EF_ERR_FORMAT, "%s: squeeze_excite %d and fixed_stem_head %d must each be 0 or 1", path, se, fixed);
  c->squeeze_excite = se != 0, c->fixed_stem_head = fixed != 0;
  if (ef_effnet_validate(c) != EF_OK)
    return EF_ERROR(EF_ERR_FORMAT, "%s: invalid model configuration: %s", path, ef_last_error());
  return EF_OK;
}

// The problems found while checking a file against a store, gathered into one message.
typedef struct {
  char text[4096];
  size_t used;
  int count;
} problems;

static void add_problem(problems *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void add_problem(problems *p, const char *fmt, ...) {
  if (p->count++ >= 40) return; // the count says how many more there are
  va_list ap;
  va_start(ap, fmt);
  if (p->used < sizeof p->text) p->used += (size_t)vsnprintf(p->text + p->used, sizeof p->text - p->used, fmt, ap);
  va_end(ap);
  if (p->used > sizeof p->text) p->used = sizeof p->text;
}

typedef struct {
  const ef_store *s;
  const ef_tensor_set *set;
  problems *p;
} unexpected_ctx;

static herr_t check_unexpected(hid_t grp, const char *name, const H5L_info_t *info, void *data) {
  (void)grp, (void)info;
  unexpected_ctx *u = data;
  const char *nbt = suffix(name, ".num_batches_tracked");
  char base[EF_NAME_LEN + 32];
  // BatchNorm's counter: expected where the set holds that batch norm's running mean.
  if (nbt) snprintf(base, sizeof base, "%.*s.running_mean", (int)(nbt - name), name);
  if (skipped(u->set, name)) return 0;
  int i = ef_store_find(u->s, nbt ? base : name);
  if (i < 0 || !set_holds(u->set, &u->s->entries[i])) add_problem(u->p, "\n  unexpected: /%s/%s", u->set->group, name);
  return 0;
}

// Adds to p every missing, mis-shaped and unexpected tensor of one set in the file.
static void check_set(hid_t f, const ef_store *s, const ef_tensor_set *set, problems *p) {
  hid_t grp = H5Lexists(f, set->group, H5P_DEFAULT) > 0 ? H5Gopen2(f, set->group, H5P_DEFAULT) : -1;
  if (grp < 0) {
    add_problem(p, "\n  missing: the group /%s", set->group);
    return;
  }
  for (int i = 0; i < s->n; i++) {
    const ef_store_entry *e = &s->entries[i];
    if (!set_holds(set, e)) continue;
    if (H5Lexists(grp, e->name, H5P_DEFAULT) <= 0) {
      add_problem(p, "\n  missing: /%s/%s", set->group, e->name);
      continue;
    }
    hid_t d = H5Dopen2(grp, e->name, H5P_DEFAULT), sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t want[EF_MAX_DIMS], got[8] = {0};
    int nd_want = torch_dims(e, want), nd_got = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (nd_got >= 0 && nd_got <= 8) H5Sget_simple_extent_dims(sp, got, NULL);
    bool ok = nd_got == nd_want;
    for (int k = 0; ok && k < nd_want; k++) ok = got[k] == want[k];
    if (!ok) {
      char a[96] = "", b[96] = "";
      for (int k = 0; k < nd_want; k++)
        snprintf(a + strlen(a), sizeof a - strlen(a), "%s%llu", k ? "," : "", (unsigned long long)want[k]);
      for (int k = 0; k < nd_got && k < 8; k++)
        snprintf(b + strlen(b), sizeof b - strlen(b), "%s%llu", k ? "," : "", (unsigned long long)got[k]);
      add_problem(p, "\n  mis-shaped: /%s/%s is (%s) in the file, the model needs (%s)", set->group, e->name, b, a);
    }
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
  }
  unexpected_ctx u = {s, set, p};
  if (H5Literate(grp, H5_INDEX_NAME, H5_ITER_INC, NULL, check_unexpected, &u) < 0)
    add_problem(p, "\n  the list of tensors in /%s cannot be read (corrupt file?)", set->group);
  H5Gclose(grp);
}

// The bytes of a dataset as read (n floats) against the CRC-32C the file records for it, if any.
static bool checksum_ok(hid_t d, const float *data, size_t n) {
  uint32_t want;
  hid_t a = H5Aexists(d, CRC_ATTR) > 0 ? H5Aopen(d, CRC_ATTR, H5P_DEFAULT) : -1;
  if (a < 0) return true; // written before checksums
  herr_t st = H5Aread(a, H5T_NATIVE_UINT32, &want);
  H5Aclose(a);
  return st >= 0 && ef_crc32c(data, n * sizeof(float)) == want;
}

// A tensor's values as the model can hold them: numbers, and no variance below zero (BN running
// variances, and the sets of mean squares: RMSProp's, Adam's second moment).
static ef_status check_values(const char *path, const ef_tensor_set *set, const ef_store_entry *e, const float *v) {
  bool variance = set->nonnegative || suffix(e->name, ".running_var");
  for (size_t i = 0; i < e->numel; i++) {
    if (!isfinite(v[i]))
      return EF_ERROR(EF_ERR_FORMAT, "%s: /%s/%s holds a%s at element %zu: a damaged file, or a diverged run saved it",
                      path, set->group, e->name, isnan(v[i]) ? " NaN" : "n infinity", i);
    if (variance && v[i] < 0)
      return EF_ERROR(EF_ERR_FORMAT,
                      "%s: /%s/%s holds a negative value (%g at element %zu) where only values >= 0 "
                      "can be: a damaged file?",
                      path, set->group, e->name, v[i], i);
  }
  return EF_OK;
}

// Reads one set's tensors (our layout) into vals[i] for the entries it holds, each checked.
static ef_status read_set(const char *path, hid_t f, const ef_store *s, const ef_tensor_set *set, float **vals) {
  hid_t grp = H5Gopen2(f, set->group, H5P_DEFAULT);
  ef_status st = grp < 0 ? EF_ERROR(EF_ERR_FORMAT, "%s: cannot open /%s", path, set->group) : EF_OK;
  for (int i = 0; i < s->n && st == EF_OK; i++) {
    const ef_store_entry *e = &s->entries[i];
    if (!set_holds(set, e)) continue;
    float *torch = ef_xmalloc(e->numel * sizeof(float));
    vals[i] = ef_xmalloc(e->numel * sizeof(float));
    hid_t d = H5Dopen2(grp, e->name, H5P_DEFAULT);
    if (d < 0 || H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, torch) < 0)
      st = EF_ERROR(EF_ERR_FORMAT, "%s: cannot read /%s/%s (truncated or corrupt file?)", path, set->group, e->name);
    else if (!checksum_ok(d, torch, e->numel))
      st = EF_ERROR(EF_ERR_FORMAT, "%s: /%s/%s does not match its checksum: the file is damaged", path, set->group,
                    e->name);
    if (d >= 0) H5Dclose(d);
    if (st == EF_OK) convert_layout(e, torch, vals[i], false);
    if (st == EF_OK) st = check_values(path, set, e, vals[i]);
    free(torch);
  }
  if (grp >= 0) H5Gclose(grp);
  return st;
}

ef_status ef_weights_load(const char *path, ef_store *s) {
  return ef_weights_load_sets(path, s, &(ef_tensor_set){"model", NULL, NULL}, 1);
}

ef_status ef_weights_load_sets(const char *path, ef_store *s, const ef_tensor_set *sets, int nsets) {
  hid_t f;
  EF_TRY(open_weights(path, &f));
  problems p = {.used = 0};
  for (int k = 0; k < nsets; k++) check_set(f, s, &sets[k], &p);
  if (p.count) {
    H5Fclose(f);
    return EF_ERROR(EF_ERR_FORMAT, "%s does not fit this model (%d problem%s%s):%s", path, p.count,
                    p.count > 1 ? "s" : "", p.count > 40 ? ", the first 40 listed" : "", p.text);
  }
  // Read everything before changing anything.
  float **vals = ef_xcalloc((size_t)s->n * (size_t)nsets, sizeof(float *));
  ef_status st = EF_OK;
  for (int k = 0; k < nsets && st == EF_OK; k++) st = read_set(path, f, s, &sets[k], vals + (size_t)k * s->n);
  H5Fclose(f);
  for (int k = 0; k < nsets; k++)
    for (int i = 0; i < s->n; i++) {
      float *v = vals[(size_t)k * s->n + i];
      if (st == EF_OK && v) set_write(s, &sets[k], i, v);
      free(v);
    }
  free(vals);
  return st;
}

void ef_attr_fields_bind(const ef_attr_field *fields, int n, const void *base, ef_attr *out) {
  for (int i = 0; i < n; i++) {
    const ef_attr_field *f = &fields[i];
    char *p = (char *)base + f->offset;
    out[i] = (ef_attr){.name = f->name, .kind = f->kind, .optional = f->optional};
    if (f->kind == EF_ATTR_INT) out[i].i = f->width == 4 ? *(const int *)p : *(const int64_t *)p;
    else if (f->kind == EF_ATTR_DOUBLE) out[i].d = *(const double *)p;
    else out[i].s = p, out[i].cap = (size_t)f->width;
  }
}

ef_status ef_attr_fields_store(const ef_attr_field *fields, int n, void *base, const ef_attr *in, const char *path) {
  for (int i = 0; i < n; i++) {
    const ef_attr_field *f = &fields[i];
    char *p = (char *)base + f->offset;
    if (!in[i].found) continue;
    if (f->kind == EF_ATTR_INT && f->width == 4 && (in[i].i < INT_MIN || in[i].i > INT_MAX))
      return EF_ERROR(EF_ERR_FORMAT, "%s: attribute %s is %lld, out of range (a corrupt file?)", path, f->name,
                      (long long)in[i].i);
    if (f->kind == EF_ATTR_INT && f->width == 4) *(int *)p = (int)in[i].i;
    else if (f->kind == EF_ATTR_INT) *(int64_t *)p = in[i].i;
    else if (f->kind == EF_ATTR_DOUBLE) *(double *)p = in[i].d;
  }
  return EF_OK;
}

ef_status ef_weights_read_attrs(const char *path, ef_attr *attrs, int nattrs) {
  hid_t f;
  EF_TRY(open_weights(path, &f));
  ef_status st = EF_OK;
  for (int i = 0; i < nattrs && st == EF_OK; i++) {
    ef_attr *a = &attrs[i];
    a->found = H5Aexists(f, a->name) > 0;
    if (!a->found && a->optional) continue;
    herr_t h = a->kind == EF_ATTR_INT      ? read_attr(f, a->name, H5T_NATIVE_INT64, &a->i)
               : a->kind == EF_ATTR_DOUBLE ? read_attr(f, a->name, H5T_NATIVE_DOUBLE, &a->d)
                                           : read_attr_string(f, a->name, a->s, a->cap);
    if (h < 0)
      st = EF_ERROR(EF_ERR_FORMAT,
                    "%s has no attribute '%s' of the expected kind and size: is it a training checkpoint?", path,
                    a->name);
  }
  H5Fclose(f);
  return st;
}

ef_h5_kind ef_h5_file_kind(const char *path) {
  quiet_hdf5();
  struct stat st;
  if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || check_file(path, &st) != EF_OK || H5Fis_hdf5(path) <= 0)
    return EF_H5_NONE;
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return EF_H5_NONE;
  char format[32];
  ef_h5_kind kind = read_attr_string(f, "format", format, sizeof format) < 0 || strcmp(format, "effnet") ? EF_H5_OTHER
                    : H5Lexists(f, "model", H5P_DEFAULT) <= 0                                            ? EF_H5_ARRAYS
                    : H5Aexists(f, "step") > 0 ? EF_H5_CHECKPOINT
                                               : EF_H5_WEIGHTS;
  H5Fclose(f);
  return kind;
}
