// The training step, the one place a batch trains a model: the training graph forward and
// backward, the gradients averaged over the ranks (in buckets while the backward pass runs),
// clipped, and applied by the optimizer with the EMA; on the CPU, or on a GPU where the whole step
// is replayed as one CUDA graph; plus f16's dynamic loss scale. A step is queued, then its
// results collected: on a GPU a loop queues step k + 1 before it reads step k's, so that the GPU
// never waits for the host. The trainer, bench and every test that trains call it.
#ifndef EF_TRAIN_STEP_H
#define EF_TRAIN_STEP_H

#include <stdbool.h>

#include "cuda/cuda.h"
#include "train/comm.h"
#include "train/ema.h"
#include "train/grad_sync.h"
#include "train/model.h"
#include "train/optim.h"
#include "train/update.h"

typedef struct {
  ef_optim_config optim;
  double ema;       // decay of the EMA of weights and BN statistics (0: none)
  double clip;      // global gradient norm to clip to (0: none)
  bool eager;       // on a GPU: op by op, not a captured graph (profiles time every node)
  double timeout_s; // GPU ranks: the longest wait for a step's results before the job ends  [600]
  int accum;        // micro-batches whose gradients add up to one update (0, 1: none)
} ef_step_config;

typedef struct {
  bool partial;    // accumulation: a micro-batch before its update's last (nothing applied yet; its
                   // loss and hits are this rank's own, and count in the update's result)
  double loss;     // the batch's mean loss (label smoothing included), over all ranks; accumulating,
                   // the mean over the update's micro-batches
  int64_t correct; // top-1 hits, over all ranks (and an update's micro-batches)
  double norm;     // the global norm of the (unscaled) gradients; 0 when not computed
                   // (the CPU computes it only to clip)
  bool finite;     // the loss and the norm are finite (else nothing was applied: stop)
  bool applied;    // the optimizer and the EMA took the step
  bool overflow;   // f16: the gradients overflowed; the step was skipped and the loss
                   // scale halved (not a failure)
} ef_step_result;

typedef struct {
  ef_step_config cfg;
  ef_model_graph *graph; // the training graph, planned (not owned)
  ef_store *store;       // its store (not owned)
  ef_optim optim;
  ef_ema ema;
  bool has_ema;
  bool device;                // the store lives on a GPU: the update runs there too
  ef_device_update upd;       // ... as kernels, and the whole step ...
  ef_capture cap[4];          // ... recorded once as a CUDA graph and replayed, one per phase
                              // (EF_STEP_ZERO | EF_STEP_UPDATE: train/update.h)
  ef_comm *comm;              // the ranks (not owned; NULL: one process)
  ef_comm *bn_comm;           // SyncBN: this rank's group (not owned; NULL: per-rank batch norms)
  ef_grad_sync sync;          // the gradient buckets (n 0: one process)
  bool overlap;               // buckets start during the backward pass
  size_t bucket_bytes;        // their size (ef_step_connect's)
  double loss_scale;          // f16: the loss is scaled up by this (1 otherwise)
  int64_t good_steps;         // f16: steps since the loss scale last changed
  ef_cuda_readback *readback; // GPU: each step's loss and logits, read one step later
  uint32_t queued, collected; // steps queued and collected so far
  int micro;                  // accumulation: micro-batches of the current update queued so far
  double micro_loss;          // ... the sum of their losses (on a GPU: of those collected)
  int64_t micro_correct;      // ... and of their hits
  uint32_t updates;           // GPU: updates queued (the device update's numbers)
  struct {                    // per step in flight (step seq in slot seq % 2)
    int32_t *labels;          // (batch) its labels
    ef_step_result result;    // CPU: its results, complete when queued
    bool last;                // GPU: the last micro-batch of its update (it applies it) ...
    uint32_t update;          // ... which is the device update's number `update`
  } slot[2];
  float *logits;    // (batch, classes) on the host
  int64_t n_logits; // batch x classes
} ef_step;

// The optimizer's slots and the EMA (from the store's current values: load or initialize the
// weights first), where the store lives; on a GPU the device update too. The graph must be
// planned. EF_ERR_INVALID, EF_ERR_UNSUPPORTED or EF_ERR_NOMEM with a message.
ef_status ef_step_init(ef_step *s, ef_model_graph *graph, const ef_step_config *c);
// Data parallelism over `comm` (its rank count > 1, or NCCL's with one rank): the gradients
// averaged in buckets of bucket_bytes started during the backward pass (0: one all-reduce after
// it); bn_comm: SyncBN's group (NULL: none).
void ef_step_connect(ef_step *s, ef_comm *comm, ef_comm *bn_comm, size_t bucket_bytes);
// The loss scale (f16's: from 65536, or a checkpoint's); 1 for other precisions. The graph's
// loss is scaled by it over the micro-batches of an update.
void ef_step_set_loss_scale(ef_step *s, double scale);
// Queues one step on a batch (the graph's batch of images and labels, and with soft targets the
// targets (batch, classes)) at learning rate lr; `step` numbers the update (dropout and drop-path
// masks depend on it and on the micro-batch). images NULL: a GPU's images and labels are already in
// the plan's inputs (ef_cuda_feed_take); labels is still the host's copy, for the accuracy. Returns
// the number ef_step_collect takes. At most two steps are queued and not collected, and they are
// collected in order. On the CPU the step is done when this returns. With accum N, N calls make an
// update: the first N - 1 add their gradients and give partial results, the last applies the sum
// (each micro-batch's loss is scaled by 1/N, so the update is the mean over N x batch images).
uint32_t ef_step_queue(ef_step *s, const float *images, const int32_t *labels, const float *targets, double lr,
                       int64_t step);
// Waits for step `seq` (on GPUs within the communicator's timeout) and gives its results; then
// its update counts (or, not finite or overflowed, does not).
void ef_step_collect(ef_step *s, uint32_t seq, ef_step_result *r);
// One step, queued and collected.
void ef_step_run(ef_step *s, const float *images, const int32_t *labels, const float *targets, double lr, int64_t step,
                 ef_step_result *r);
// Accumulating: forgets an update whose micro-batches ran but whose last did not (a run stopping
// with a micro-batch in flight); the next micro-batch starts an update, zeroing the gradients. No
// step may be in flight.
void ef_step_drop_partial(ef_step *s);
// Progressive learning: the step moves to another training graph of the same store, batch and
// classes (another image size or dropout). ef_step_unbind frees what refers to the old graph's plan
// (the captured step, the gradient buckets) before the caller frees it; ef_step_bind takes the new
// one, planned, with the buckets again and the loss scale. The optimizer's slots and the EMA stay.
// No step may be in flight, nor an update half accumulated.
void ef_step_unbind(ef_step *s);
void ef_step_bind(ef_step *s, ef_model_graph *graph);
// Freeing, in two parts around the communicators: ef_step_disconnect frees the captured graph
// and the buckets (NCCL's communicators wait for the graphs that use them); then the caller
// frees its communicators; then ef_step_free the optimizer, the EMA and the device update (the
// memory the collectives used). The graph and the store are the caller's.
void ef_step_disconnect(ef_step *s);
void ef_step_free(ef_step *s);

#endif
