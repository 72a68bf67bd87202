// The exponential moving average of the weights and of the batch-norm running statistics (the
// store's PARAM and STATE arenas), as tf.train.ExponentialMovingAverage with num_updates: the
// shadow copy that the official EfficientNet code evaluates and exports.
#ifndef EF_TRAIN_EMA_H
#define EF_TRAIN_EMA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/store.h"

typedef struct {
  double decay;                  // 0.9999
  int64_t updates;               // n: updates so far
  float *shadow[EF_ARENA_COUNT]; // PARAM and STATE: the store's layout and offsets; GRAD: NULL
  size_t numel[EF_ARENA_COUNT];
  bool swapped;              // the shadow is in the store, the live values here
  struct ef_backend *device; // the store's backend when the shadow lives on its device
} ef_ema;

// Copies the store's current values as the shadow, where the store lives. EF_ERR_INVALID unless
// decay is in [0, 1), EF_ERR_UNSUPPORTED on a backend that cannot update it, EF_ERR_NOMEM.
ef_status ef_ema_init(ef_ema *e, const ef_store *s, double decay);
void ef_ema_free(ef_ema *e);

// The decay the next update uses: min(decay, (1 + n) / (10 + n)).
double ef_ema_decay_now(const ef_ema *e);
// shadow = d * shadow + (1 - d) * value over both arenas, with d = ef_ema_decay_now; n += 1.
// Host stores only (a device store updates through train/update.h).
void ef_ema_update(ef_ema *e, const ef_store *s);
// Exchanges the shadow with the store's values: once to evaluate or export the average, again
// to resume training with the live values.
void ef_ema_swap(ef_ema *e, ef_store *s);
// The shadow of one entry (its values, or its running statistics), for checkpoints, in the
// shadow's memory (the device's for a device store); while swapped, it holds the live values.
float *ef_ema_data(const ef_ema *e, const ef_store *s, int entry);

#endif
