// The IDX format of MNIST and Fashion-MNIST (gzip-compressed or not): an images file
// (magic 0x00000803: N x rows x cols bytes) and a labels file (magic 0x00000801: N bytes).
#ifndef EF_DATA_IDX_H
#define EF_DATA_IDX_H

#include <stdint.h>

#include "core/log.h"

typedef struct {
  int64_t n, rows, cols;
  uint8_t *pixels; // (n, rows, cols), row-major
  int32_t *labels; // (n)
  int num_classes; // largest label + 1
} ef_idx_dataset;

// Loads a pair of files; on failure (missing, not IDX, truncated, mismatched counts) returns an
// error naming the file and leaves *out empty.
ef_status ef_idx_load(const char *images_path, const char *labels_path, ef_idx_dataset *out);
// Loads "<dir>/<split>-images-idx3-ubyte[.gz]" and the matching labels; split is "train" or "t10k".
ef_status ef_idx_load_dir(const char *dir, const char *split, ef_idx_dataset *out);
void ef_idx_free(ef_idx_dataset *d);

#endif
