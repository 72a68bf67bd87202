// The update after a backward pass on a store in device memory: the global gradient norm,
// clipping (and f16 unscaling), the optimizer and the EMA, queued as kernels that read this
// step's values from ef_step_values (core/update.h), so that a captured training step replays
// with new ones. The same formulas as the host loops of optim.c and ema.c.
#ifndef EF_TRAIN_UPDATE_H
#define EF_TRAIN_UPDATE_H

#include <stdbool.h>

#include "core/backend.h"
#include "core/plan.h"
#include "train/ema.h"
#include "train/grad_sync.h"
#include "train/optim.h"

typedef struct {
  ef_backend *be;
  ef_update_pass pass;
  ef_update_segment *segments; // device memory: the trainable entries that are not frozen
  ef_step_values values;       // the latest step's, as queued
  uint32_t queued, finished;   // steps whose values were queued, and whose results were read
} ef_device_update;

// The optimizer's segments of the store into seg (s->n at most): its trainable entries that are
// not frozen, in order, with their blocks; returns their count and the grid's blocks.
int ef_update_segments(const ef_optim *o, const ef_store *s, ef_update_segment *seg, int64_t *blocks);
// Those segments, uploaded once.
// EF_ERR_UNSUPPORTED unless the store is on a device (ef_device_of), EF_ERR_NOMEM.
ef_status ef_device_update_init(ef_device_update *d, const ef_optim *o, const ef_store *s);
void ef_device_update_free(ef_device_update *d);

// Queues the next step's values: the learning rate, the optimizer's and EMA's next counters (ema
// NULL: none), the clipping norm (0: none) and the gradients' multiplier (1 / the loss scale).
// Returns the step's number for ef_device_update_finish_at. At most two steps may be queued and not
// finished (their results take turns in two slots); the counters count those two as applied (a step
// skipped for a non-finite norm is known one step late).
uint32_t ef_device_update_values(ef_device_update *d, const ef_optim *o, const ef_ema *ema, double lr, double clip,
                                 double unscale);
// Queues the norm, the optimizer pass and the EMA's update (capturable; no synchronization).
// Unlike ef_grad_clip on the host, clipping scales the gradients inside the update: the gradient
// arena keeps the unclipped values.
void ef_device_update_queue(ef_device_update *d, const ef_store *s, const ef_ema *ema);
// What a device step does around the plan's run: zero the gradients before it, and after it average
// them over the ranks and apply the update. A whole step does both; with gradient accumulation, an
// update's first micro-batch zeroes, its last updates, the others only add their gradients.
enum { EF_STEP_ZERO = 1, EF_STEP_UPDATE = 2, EF_STEP_WHOLE = 3 };
// A training step (or micro-batch: `phase`) on the device: zero the gradients, run the plan (forward
// and backward), average the gradients over the ranks (gs: its buckets, started by ctx->after_node
// when that is ef_grad_sync_after_node; NULL: one rank), queue the update (ema NULL: none). With
// `cap` (one per phase), recorded once as a device graph and replayed (ef_capture_run), collectives
// included; with NULL, op by op. Set the step's values first (ef_device_update_values) when it updates.
void ef_device_train_step(ef_capture *cap, ef_store *s, ef_plan *p, ef_grad_sync *gs, ef_device_update *u,
                          const ef_ema *ema, const ef_run_ctx *ctx, int phase);
// Once step `seq` has finished (the caller waited for it), in order: the norm of its unscaled
// gradients; true when it was finite and the update applied, and then the optimizer's and EMA's
// counters advance. ef_device_update_finish: the same for the latest step queued.
bool ef_device_update_finish_at(ef_device_update *d, ef_optim *o, ef_ema *ema, uint32_t seq, double *norm);
bool ef_device_update_finish(ef_device_update *d, ef_optim *o, ef_ema *ema, double *norm);

#endif
