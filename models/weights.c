// HDF5 model weights (see weights.h): layout conversion between our (O,KH,KW,I) conv weights and
// PyTorch's OIHW, atomic writes, and a loader that checks the whole file before changing the
// store. HDF5's own error printing is turned off; every failure becomes one message.
// Written against HDF5 1.10 (Debian 12), whose link iteration is H5Literate / H5L_info_t.
#include "models/weights.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <limits.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/backend.h"
#include "core/file.h"

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

static herr_t write_dataset(hid_t grp, const char *name, hid_t file_type, hid_t mem_type, int ndim, const hsize_t *dims,
                            const void *data) {
  hid_t sp = ndim ? H5Screate_simple(ndim, dims, NULL) : H5Screate(H5S_SCALAR);
  hid_t d = H5Dcreate2(grp, name, file_type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  herr_t st = d < 0 ? -1 : H5Dwrite(d, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
  if (d >= 0) H5Dclose(d);
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
    st = write_dataset(grp, e->name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, nd, dims, torch);
    const char *rm = suffix(e->name, ".running_mean");
    if (st >= 0 && rm) { // BatchNorm's counter, so that PyTorch's strict loading finds it
      char nbt[EF_NAME_LEN + 32];
      snprintf(nbt, sizeof nbt, "%.*s.num_batches_tracked", (int)(rm - e->name), e->name);
      long long zero = 0;
      st = write_dataset(grp, nbt, H5T_STD_I64LE, H5T_NATIVE_LLONG, 0, NULL, &zero);
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

// Writes a new HDF5 file at path atomically: `write` fills a temporary file in the same folder,
// which is flushed, fsynced and renamed over path. A failure leaves any previous path untouched.
static ef_status save_atomic(const char *path, herr_t (*write)(hid_t f, const void *ctx), const void *ctx) {
  quiet_hdf5();
  char tmp[4096];
  ef_file_tmp_name(tmp, sizeof tmp, path);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return EF_ERROR(EF_ERR_IO, "cannot create %s (is its folder there and writable?)", tmp);
  herr_t st = attr_string(f, "format", "effnet");
  if (st >= 0) st = attr_int(f, "format_version", EF_WEIGHTS_FORMAT_VERSION);
  if (st >= 0) st = write(f, ctx);
  if (st >= 0) st = H5Fflush(f, H5F_SCOPE_GLOBAL);
  if (H5Fclose(f) < 0) st = -1;
  if (st < 0) {
    unlink(tmp);
    return EF_ERROR(EF_ERR_IO, "writing %s failed (disk full?); %s is unchanged", tmp, path);
  }
  return ef_file_replace(tmp, path);
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
    hid_t sp = H5Screate_simple(a->ndim, dims, NULL);
    hid_t d = H5Dcreate2(f, a->name, a->is_int ? H5T_STD_I32LE : H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    st = d < 0 ? -1
               : H5Dwrite(d, a->is_int ? H5T_NATIVE_INT32 : H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, a->data);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
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

// Opens a weights file and checks its format attributes.
static ef_status open_weights(const char *path, hid_t *f) {
  quiet_hdf5();
  if (access(path, R_OK) != 0) return EF_ERROR(EF_ERR_IO, "cannot open %s: %s", path, strerror(errno));
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

// Reads one set's tensors (our layout) into vals[i] for the entries it holds.
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
    if (d >= 0) H5Dclose(d);
    if (st == EF_OK) convert_layout(e, torch, vals[i], false);
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
