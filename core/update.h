// The values and descriptions of a training step's update (norm, clipping, optimizer, EMA) on a
// device store, shared by the backend interface (core/backend.h) and the CUDA kernels that run it:
// plain C, also read by C++.
#ifndef EF_UPDATE_H
#define EF_UPDATE_H

#include <stdbool.h>
#include <stdint.h>

#include "core/hd.h"

// Scalars that change every step. The host queues them to the device before the step (a copy
// taken at the call, outside any captured graph: ef_arena_ops.set_values), and the step writes its
// norm and skip to result slot `slot` of two in host memory, so that the host may queue the next
// step's values at once and read a step's results while the next one runs.
typedef struct {
  double lr;        // the learning rate (each segment multiplies it by its lr_scale)
  double adam_t;    // AdamW: the step count after this update (bias correction)
  double ema_decay; // this step's moving-average decay
  double clip;      // the largest global gradient norm (0: no clipping)
  double unscale;   // what the gradients are multiplied by first (1 / the f16 loss scale)
  double norm;      // out: the global norm of the unscaled gradients
  int32_t skip;     // out: 1 when that norm is NaN or infinite: nothing was updated
  int32_t slot;     // the result slot (0 or 1) the step writes norm and skip to
} ef_step_values;

// One store entry the optimizer updates: its elements, learning-rate scale and weight decay, and
// the first block of the update's grid that works on it (each block takes EF_UPDATE_CHUNK
// elements of one segment).
#define EF_UPDATE_CHUNK 2048
typedef struct {
  int64_t offset, numel;
  float lr_scale;
  double weight_decay;
  int64_t first_block;
} ef_update_segment;

// The optimizers, numbered as train/optim.h's ef_optim_kind.
enum { EF_UPDATE_SGD, EF_UPDATE_RMSPROP, EF_UPDATE_ADAMW };

// One optimizer pass over the flat arenas, as train/optim.h's formulas.
typedef struct {
  int kind;                                // EF_UPDATE_*
  double momentum, rho, eps, beta1, beta2; // rounded to f32 where the CPU's loops round them
  bool nesterov;
  float *param, *slot0, *slot1; // slots NULL where the optimizer has fewer
  const float *grad;
  const ef_update_segment *segments; // device memory
  int n_segments;
  int64_t blocks; // the grid: the segments' chunks, in order
} ef_update_pass;

// The segment whose blocks hold block b of the update's grid: the last with first_block <= b
// (segments in the order of their blocks; n >= 1). The kernel's search, tested on the host.
EF_HD int ef_update_segment_of(const ef_update_segment *seg, int n, int64_t b) {
  int lo = 0, hi = n - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) / 2;
    if (seg[mid].first_block <= b) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

#endif
