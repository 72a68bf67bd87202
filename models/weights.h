// Model weights in HDF5 (design §5): every trainable parameter and BN running statistic as a
// flat dataset /model/<timm name> in PyTorch's layout (conv weights OIHW), BN
// num_batches_tracked as int64 scalars (so timm and torchvision load the tensors with strict
// checking), and the model configuration as root attributes. Every dataset carries the CRC-32C
// of its bytes (attribute "crc32c"), and the root attributes theirs ("attributes_crc32c"), each
// checked on reading where present (files from before have none). Readable with h5py:
//   {k: torch.as_tensor(v[()]) for k, v in h5py.File(path)["model"].items()}
#ifndef EF_MODELS_WEIGHTS_H
#define EF_MODELS_WEIGHTS_H

#include <stddef.h>
#include <stdint.h>

#include "core/store.h"
#include "models/efficientnet.h"

#define EF_WEIGHTS_FORMAT_VERSION 1

// Writes the store's parameters and state (and cfg, unless NULL) to `path` atomically: a
// temporary file in the same folder, flushed and fsynced, then renamed over `path`. A failure
// leaves any previous `path` untouched.
ef_status ef_weights_save(const char *path, const ef_store *s, const ef_effnet_config *cfg);

// The model configuration stored in a weights file.
ef_status ef_weights_read_config(const char *path, ef_effnet_config *cfg);

// Loads every entry of the store from `path`. Fails, changing nothing, with one message naming
// every missing, unexpected and mis-shaped tensor, or the first tensor that does not match its
// checksum or holds a value the model cannot (or why the file cannot be read).
ef_status ef_weights_load(const char *path, ef_store *s);

// Tensors shaped like the store's entries but held elsewhere in the store's backend memory (an
// EMA's shadow, an optimizer's slot: host memory, or the GPU's), kept in the group
// /<group>/<entry name> in /model's layout. `param` holds values at the PARAM arena's offsets; `state` at the STATE arena's, or NULL when the set covers
// the trainable entries only. The set {"model", NULL, NULL} is the store itself. Entries whose
// names start with `skip` (when not NULL) are left out: neither saved, loaded nor expected (a
// pretrained model's classifier, when fine-tuning). Loading refuses a value that is not a number,
// a BN running variance below 0, and in a `nonnegative` set (mean squares) any value below 0.
typedef struct {
  const char *group;
  float *param, *state;
  const char *skip;
  bool nonnegative;
} ef_tensor_set;

// A root attribute: an integer, a number or a string. Saving reads the string at s; reading
// writes it there, into cap bytes (a longer one is an error, never cut short). Reading an
// optional one that is absent is no error: found says whether it was there.
typedef enum { EF_ATTR_INT, EF_ATTR_DOUBLE, EF_ATTR_STRING } ef_attr_kind;
typedef struct {
  const char *name;
  ef_attr_kind kind;
  int64_t i;
  double d;
  char *s;
  size_t cap;
  bool optional, found;
} ef_attr;

// A root attribute bound to a field of a struct (an int, int64_t, double or char array), so that
// one table serves both writing and reading a struct's attributes.
typedef struct {
  const char *name;
  ef_attr_kind kind;
  size_t offset; // of the field
  int width;     // INT: 4 (int) or 8 (int64_t); STRING: the array's size
  bool optional; // reading: absent is no error (the field keeps its value)
} ef_attr_field;
#define EF_ATTR_INT_FIELD(T, n, f)                                                                                     \
  { n, EF_ATTR_INT, offsetof(T, f), (int)sizeof(((T *)0)->f), false }
#define EF_ATTR_DBL_FIELD(T, n, f)                                                                                     \
  { n, EF_ATTR_DOUBLE, offsetof(T, f), 8, false }
#define EF_ATTR_STR_FIELD(T, n, f)                                                                                     \
  { n, EF_ATTR_STRING, offsetof(T, f), (int)sizeof(((T *)0)->f), false }
// The attributes of fields[0..n) of the struct at base into out: to save them, or to read them
// (strings are read in place into the struct's arrays).
void ef_attr_fields_bind(const ef_attr_field *fields, int n, const void *base, ef_attr *out);
// What was read into the attributes, back into the struct's numeric fields; EF_ERR_FORMAT naming
// path and the attribute when an integer does not fit its field.
ef_status ef_attr_fields_store(const ef_attr_field *fields, int n, void *base, const ef_attr *in, const char *path);

// ef_weights_save with more groups (after /model) and more root attributes, in one atomic write.
ef_status ef_weights_save_sets(const char *path, const ef_store *s, const ef_effnet_config *cfg,
                               const ef_tensor_set *sets, int nsets, const ef_attr *attrs, int nattrs);
// Plain arrays (f32 or i32, 1 or 2 dimensions) written atomically with root attributes, as the
// weights are: `effnet features`' output. Names may hold groups ("train/features").
typedef struct {
  const char *name;
  bool is_int;
  int ndim;
  int64_t dims[2];
  const void *data;
} ef_h5_array;
ef_status ef_h5_save_arrays(const char *path, const ef_h5_array *arrays, int n, const ef_attr *attrs, int nattrs);

// Loads the sets (the model's included, when listed), checking every one before changing any.
ef_status ef_weights_load_sets(const char *path, ef_store *s, const ef_tensor_set *sets, int nsets);
// Reads root attributes by name and kind into attrs[i] (strings into .s); a missing, mistyped or
// too long one is an error naming it.
ef_status ef_weights_read_attrs(const char *path, ef_attr *attrs, int nattrs);

// What an existing file is, as far as HDF5 tells: not HDF5 (or not a regular file), HDF5 of other
// software, or effnet's: weights (an import, an export's .h5), a training checkpoint, or plain
// arrays (`effnet features`). For the commands that refuse to write over other kinds of files.
typedef enum { EF_H5_NONE, EF_H5_OTHER, EF_H5_WEIGHTS, EF_H5_CHECKPOINT, EF_H5_ARRAYS } ef_h5_kind;
ef_h5_kind ef_h5_file_kind(const char *path);

#endif
