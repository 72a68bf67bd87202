// The backend interface: a table of function pointers that a plan calls to allocate memory,
// prepare each node once (primitives, reorders, scratch sizes) and run it. core/cpu is the CPU
// backend; cuda/ is the CUDA one. Kernels read node->src[i]->data and write node->data.
#ifndef EF_BACKEND_H
#define EF_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/graph.h"
#include "core/log.h"
#include "core/update.h"

// What changes from one run of a plan to the next.
typedef struct {
  uint32_t step; // the training step: the Philox counter of dropout and drop-path masks
  // The store's parameters and state are those of the plan's previous run: kernels may reuse what
  // they derived from them then (on the CPU, weights folded with batch norm and reordered). False
  // (the default) derives again: every run after the weights change (loaded, updated, swapped) must.
  bool weights_unchanged;
  // When not NULL, called after each position of the schedule has run (and its result is in
  // memory): train/grad_sync.c starts the all-reduce of each gradient bucket as it completes.
  void (*after_node)(void *user, int position);
  void *user;
  // SyncBN (sync_stats, sync_mean): replaces buf's n floats by their average over this rank's
  // group; NULL where the graph has no such node. buf is in the backend's memory when
  // group_device (NCCL's groups on a GPU: queued in order, capturable), else in host memory.
  void (*group_mean)(void *group, float *buf, size_t n);
  void *group;
  bool group_device;
} ef_run_ctx;

typedef struct ef_backend ef_backend;

// The training step on a device store (train/update.c): see core/update.h.
typedef struct {
  // Queues a step's values for the operations below (a copy taken now, outside any capture).
  void (*set_values)(ef_backend *be, const ef_step_values *v);
  // Result slot k (0, 1): what the step that wrote it found (norm, skip), once it has finished.
  const ef_step_values *(*result)(ef_backend *be, int k);
  // The norm and skip from the n gradients, and the multiplier the update applies to them:
  // unscale, times clip / (norm + 1e-6) when that is below 1 (torch.nn.utils.clip_grad_norm_).
  void (*grad_norm)(ef_backend *be, const float *grad, size_t n);
  void (*update)(ef_backend *be, const ef_update_pass *u);                  // nothing when skip
  void (*ema)(ef_backend *be, float *shadow, const float *value, size_t n); // nothing when skip
  void (*swap)(ef_backend *be, float *a, float *b, size_t n);
  void (*fill)(ef_backend *be, float *dst, float value, size_t n);
} ef_arena_ops;

struct ef_backend {
  const char *name;
  bool (*supports_op)(const ef_backend *be, const ef_tensor *node);
  // Once per node, after the plan has fixed every address: build what the node needs (oneDNN
  // primitives, reordered-weights buffers) into *state (may stay NULL) and report the scratch
  // bytes it uses while running. A failure leaves a message (ef_last_error).
  ef_status (*prepare)(ef_backend *be, const ef_tensor *node, void **state, size_t *scratch);
  void (*release)(ef_backend *be, void *state);
  // The implementation chosen for a prepared node ("brgconv_1x1:avx512_core"), or NULL.
  const char *(*describe)(const ef_backend *be, const void *state);
  void (*compute)(ef_backend *be, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
  void *(*alloc)(ef_backend *be, size_t bytes); // 256-byte aligned; NULL when out of memory
  void (*free)(ef_backend *be, void *p);
  void (*upload)(ef_backend *be, void *dst, const void *host, size_t bytes);
  void (*download)(ef_backend *be, void *host, const void *src, size_t bytes);
  void (*memset)(ef_backend *be, void *dst, int byte, size_t bytes);
  void (*synchronize)(ef_backend *be);
  void (*destroy)(ef_backend *be);
  // Optional (NULL on the CPU). begin_run: called before every run of a plan, eager or replayed
  // (CUDA writes ctx->step where its dropout kernels read it). capture_begin / capture_end record
  // the work issued between them as one graph; replay runs it again; graph_free releases it.
  void (*begin_run)(ef_backend *be, const ef_run_ctx *ctx);
  void (*capture_begin)(ef_backend *be);
  void *(*capture_end)(ef_backend *be);
  void (*replay)(ef_backend *be, void *graph);
  void (*graph_free)(ef_backend *be, void *graph);
  // The fusions (ef_fusion bits) that evaluation graphs for this backend should build, each where it
  // beats the separate nodes. The CPU: EF_FUSE_GATES (one batched matmul on per-image weights) and
  // EF_FUSE_EXPAND_DW (the expansion computed band by band into the cache). Not CUDA, which would
  // run either as its parts through an activation-sized scratch: the same work, and the scratch.
  unsigned eval_fusions;
  // The training step on a store in this backend's memory; NULL where that memory is the host's
  // (the CPU: train/ loops over the arenas itself).
  ef_arena_ops *arena;
  void *impl;
};

static inline void ef_backend_free(ef_backend *be) {
  if (be) be->destroy(be);
}

#endif
