// Gradient all-reduce in buckets, overlapped with the backward pass: the flat gradient arena cut
// into contiguous buckets of about `bucket_bytes` (from its end: the last layers' gradients, which
// the backward pass finishes first), each all-reduced (averaged) with a non-blocking collective as
// soon as the last `accum` node writing into it has run (a hook in the executor).
#ifndef EF_TRAIN_GRAD_SYNC_H
#define EF_TRAIN_GRAD_SYNC_H

#include "core/plan.h"
#include "core/store.h"
#include "train/comm.h"

typedef struct {
  size_t lo, hi; // elements [lo, hi) of the gradient arena
  int ready;     // the schedule position after which no accum writes into it (-1: none does)
  ef_comm_request req;
} ef_grad_bucket;

typedef struct {
  ef_comm *comm;
  float *grad;       // the store's gradient arena
  ef_grad_bucket *b; // (n) in the order they are started: by ready position, then by offset, descending
  int n;
  int started; // buckets started so far in this step
} ef_grad_sync;

// Buckets over `s`'s gradient arena for the training plan `p` (its accum nodes). bucket_bytes 0:
// one bucket, the whole arena, started after the backward pass (the synchronous all-reduce).
void ef_grad_sync_init(ef_grad_sync *gs, ef_comm *c, const ef_plan *p, const ef_store *s, size_t bucket_bytes);
void ef_grad_sync_free(ef_grad_sync *gs);

// ef_run_ctx.after_node (user: the ef_grad_sync): starts the buckets complete at `position` and
// lets the ones in flight progress.
void ef_grad_sync_after_node(void *user, int position);
// After the plan ran: starts what is left, waits for every bucket (on NCCL: orders the backend's
// later work after them). The arena then holds the average of the ranks' gradients; with 2 ranks
// the same bits as one all-reduce of the whole arena (a + b is one addition), with more the
// library may add in another order for another size.
void ef_grad_sync_finish(ef_grad_sync *gs);

#endif
