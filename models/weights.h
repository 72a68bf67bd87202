// Model weights in HDF5 (design §5): every trainable parameter and BN running statistic as a
// flat dataset /model/<timm name> in PyTorch's layout (conv weights OIHW), BN
// num_batches_tracked as int64 scalars (so timm and torchvision load the tensors with strict
// checking), and the model configuration as root attributes. Readable with h5py:
//   {k: torch.as_tensor(v[()]) for k, v in h5py.File(path)["model"].items()}
#ifndef EF_MODELS_WEIGHTS_H
#define EF_MODELS_WEIGHTS_H

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
// every missing, unexpected and mis-shaped tensor (or why the file cannot be read).
ef_status ef_weights_load(const char *path, ef_store *s);

#endif
