// Training checkpoints (design §5): one HDF5 file with the model (/model, timm's names, PyTorch's
// layout), the EMA (/ema), the optimizer's slots (/optimizer/<slot>), and as root attributes
// everything else a bit-exact resume needs (position, counters, the run's arguments) plus the
// model's description (train/model.h), as every weights file has it. Writes are atomic.
#ifndef EF_TRAIN_CHECKPOINT_H
#define EF_TRAIN_CHECKPOINT_H

#include <stdint.h>

#include "core/store.h"
#include "train/ema.h"
#include "train/model.h"
#include "train/optim.h"

typedef struct {
  ef_model_desc model; // what was trained: architecture, classes and names, evaluation transform
  // Where training goes on: the next optimizer step, and the epoch and batch it takes.
  int64_t step, epoch, batch;
  uint64_t seed;
  // The epoch's running sums so far (the progress lines after a resume equal the unbroken run's).
  double epoch_loss;
  int64_t epoch_correct, epoch_seen;
  double best_top1;           // the best validation top-1 so far (-1: none yet)
  int64_t validation_pending; // 1: saved at an epoch's end before its validation (a resume runs it)
  double loss_scale;          // f16 training's loss scale (1 otherwise; 0 read from a file without one)
  char args[8192];            // the run's `effnet train` arguments, one per line
} ef_checkpoint_info;

// Writes path atomically. ema and optim may be NULL (then there is no /ema or /optimizer).
ef_status ef_checkpoint_save(const char *path, const ef_store *s, const ef_ema *ema, const ef_optim *optim,
                             const ef_checkpoint_info *info);
// Reads the attributes only (to rebuild the model and the run before loading), each checked: a
// file that is not a checkpoint (weights alone) is an error saying so.
ef_status ef_checkpoint_read_info(const char *path, ef_checkpoint_info *info);
// Loads the tensors into the store, the EMA and the optimizer (each may be NULL: not loaded), all
// or nothing: a file of another architecture, a truncated file, a plain weights file when the EMA
// or the optimizer is asked for, each fail with one message and change nothing.
ef_status ef_checkpoint_load(const char *path, ef_store *s, ef_ema *ema, ef_optim *optim);

#endif
