// The tensor graph. A tensor is a node: dtype, shape (NHWC for activations), the op that makes
// it, its sources, typed op parameters and a name. Building a graph does no arithmetic; a plan
// (core/plan.h) gives every node memory and runs it on a backend.
#ifndef EF_GRAPH_H
#define EF_GRAPH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/dtype.h"
#include "core/op.h"

#define EF_MAX_DIMS 4
#define EF_MAX_SRC 7
#define EF_NAME_LEN 96

struct ef_store;

// Where a tensor's memory lives. Leaves name their arena; computed nodes are planned (or, for
// views and in-place ops, live wherever their src[0] lives).
typedef enum {
  EF_MEM_PLANNED, // the plan's activation arena, offset chosen by the memory planner
  EF_MEM_PARAM,   // the store's flat parameter arena
  EF_MEM_GRAD,    // the store's flat gradient arena (same offsets as the parameters)
  EF_MEM_STATE,   // the store's flat state arena (batch-norm running statistics)
} ef_mem;

typedef struct ef_tensor {
  int id; // position in the graph (creation order is topological)
  ef_op op;
  ef_dtype dtype;
  int ndim;
  int64_t shape[EF_MAX_DIMS]; // activations (N,H,W,C); row-major, last axis contiguous
  struct ef_tensor *src[EF_MAX_SRC];
  int n_src;
  ef_op_params p;
  char name[EF_NAME_LEN];
  ef_mem mem;
  size_t offset; // bytes into the arena of `mem`, for leaves and planned
                 // owners (views and in-place nodes use their owner's)
  bool requires_grad;
  bool keep;              // an output or side effect: computed and kept to the end
  struct ef_tensor *grad; // autograd: the gradient of this tensor (for parameters,
                          // the leaf in the gradient arena)
  const char *scope;      // the part of the model that built it ("squeeze-excite",
                          // "classifier", ...; static text, NULL outside any): the
                          // graph's scope at creation; gradient nodes take the scope
                          // of the forward node they differentiate
  void *data;             // address in the backend's memory once a plan is bound
} ef_tensor;

// What an evaluation graph may build as fewer, larger nodes, where its backend computes them faster
// (ef_backend.eval_fusions): bits of ef_graph.fusions, which layers/ reads.
typedef enum {
  EF_FUSE_GATES = 1,     // squeeze-excite's scale folded into the next 1x1 convolution (ef_conv2d_bn_gated)
  EF_FUSE_EXPAND_DW = 2, // an MBConv block's expansion and depthwise convolution in one node (ef_expand_dw)
} ef_fusion;

typedef struct ef_graph {
  struct ef_store *store; // parameters and state the graph's leaves point into
  uint64_t seed;          // seed of the graph's random ops (dropout, drop-path)
  ef_tensor **nodes;
  int n, cap;
  uint32_t n_rng_streams;
  bool differentiated;  // ef_graph_backward has run (it runs once)
  struct ef_plan *plan; // the plan bound to the graph (one at a time; the plan
                        // writes addresses into the nodes), freed before the graph
  const char *scope;    // given to the nodes created now (ef_graph_scope)
  int bn_group;         // training: batch-norm statistics over groups of this many
                        // ranks (SyncBN); 0 or 1: each rank's own batch
  unsigned fusions;     // evaluation: the ef_fusion bits layers/ builds (the backend's eval_fusions)
  // While differentiating: squeeze-excite scale gradients dy * s held back, not built yet, for the
  // pooling's backward rule to fold into its own node (ef_grad_hold_scale); built and added at
  // their tensor's turn at the latest.
  struct {
    ef_tensor *t, *dy, *s;
    const char *scope; // the holding rule's
  } held[4];
  int n_held;
} ef_graph;

// ---- graph lifetime ---------------------------------------------------------------------
ef_graph *ef_graph_new(struct ef_store *store, uint64_t seed);
void ef_graph_free(ef_graph *g);
// Sets the scope of the nodes created from now on (a static string, or NULL); returns the
// previous one, for the caller to restore.
const char *ef_graph_scope(ef_graph *g, const char *scope);
// The scopes the layers give their nodes and profiles count apart (ef_node_kind).
#define EF_SCOPE_SE "squeeze-excite"     // pool, reduce, expand, gate and scale
#define EF_SCOPE_CLASSIFIER "classifier" // the pooling after the head, dropout, the linear layer

// ---- shapes -----------------------------------------------------------------------------
int64_t ef_numel(const ef_tensor *t);
// A tensor as rows of its last axis (NHWC: N*H*W rows of C), for kernels that work per channel.
static inline int64_t ef_rows(const ef_tensor *t) { return ef_numel(t) / t->shape[t->ndim - 1]; }
static inline int64_t ef_cols(const ef_tensor *t) { return t->shape[t->ndim - 1]; }
size_t ef_nbytes(const ef_tensor *t);
bool ef_same_shape(const ef_tensor *a, const ef_tensor *b);
// "(2,7,7,16)" into buf; returns buf.
const char *ef_shape_str(const ef_tensor *t, char *buf, size_t len);
void ef_tensor_set_name(ef_tensor *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// ---- leaves ---------------------------------------------------------------------------
// An input the caller fills before each run (images, labels, upstream gradients).
ef_tensor *ef_input(ef_graph *g, const char *name, ef_dtype dtype, int ndim, const int64_t *shape);
// A view of `count` consecutive store entries of equal size (count 1: the entry's own shape;
// count > 1: shape (count, numel), e.g. batch norm's [gamma; beta]). Trainable entries
// require a gradient, unless frozen (then autograd computes nothing for them).
ef_tensor *ef_param(ef_graph *g, int entry, int count, const char *name);

// ---- forward ops (the op table in op.h documents shapes) ----------------------------------
ef_tensor *ef_conv2d(ef_graph *g, ef_tensor *x, ef_tensor *w, ef_tensor *b, int stride, int dilation, int groups,
                     ef_padding padding);
// Inference's convolution (dilation 1, no bias) with the batch norm after it folded in: running
// statistics `stats` and `affine` (2,O), then `act`.
ef_tensor *ef_conv2d_bn(ef_graph *g, ef_tensor *x, ef_tensor *w, int stride, int groups, ef_padding padding,
                        ef_tensor *stats, ef_tensor *affine, float eps, ef_act act);
// The same for a 1x1 convolution (stride 1, one group) of x * gate, gate (N,1,1,C) a channel scale
// per image: squeeze-excite's, folded into the weights per image instead of scaling x.
ef_tensor *ef_conv2d_bn_gated(ef_graph *g, ef_tensor *x, ef_tensor *gate, ef_tensor *w, ef_tensor *stats,
                              ef_tensor *affine, float eps, ef_act act);
// An MBConv block's 1x1 expansion of x by w1 (M,1,1,C) and its depthwise convolution by w2 (M,KH,KW,1)
// (stride, padding), each followed by its batch norm (running statistics, the same eps) and `act`.
ef_tensor *ef_expand_dw(ef_graph *g, ef_tensor *x, ef_tensor *w1, ef_tensor *stats1, ef_tensor *affine1, ef_tensor *w2,
                        int stride, ef_padding padding, ef_tensor *stats2, ef_tensor *affine2, float eps, ef_act act);
ef_tensor *ef_bn_stats(ef_graph *g, ef_tensor *x);
ef_tensor *ef_bn(ef_graph *g, ef_tensor *x, ef_tensor *stats, ef_tensor *affine, float eps, ef_act act,
                 bool batch_stats);
ef_tensor *ef_bn_update(ef_graph *g, ef_tensor *running, ef_tensor *stats, float momentum);
// SyncBN: bn_stats over `group` ranks' equal batches (the run's ef_run_ctx.group_mean does the
// communication).
ef_tensor *ef_sync_stats(ef_graph *g, ef_tensor *stats, int group);
ef_tensor *ef_activate(ef_graph *g, ef_tensor *x, ef_act act);
ef_tensor *ef_add(ef_graph *g, ef_tensor *a, ef_tensor *b);
ef_tensor *ef_channel_mul(ef_graph *g, ef_tensor *x, ef_tensor *s);
ef_tensor *ef_gap(ef_graph *g, ef_tensor *x);
ef_tensor *ef_linear(ef_graph *g, ef_tensor *x, ef_tensor *w, ef_tensor *b);
ef_tensor *ef_dropout(ef_graph *g, ef_tensor *x, float rate, bool per_sample);
// Mean cross-entropy of logits (N,K) against labels (N) i32 with label smoothing, or against soft
// targets (N,K) f32 (probabilities; smoothing 0).
ef_tensor *ef_softmax_ce(ef_graph *g, ef_tensor *logits, ef_tensor *labels, float smoothing);
ef_tensor *ef_sum(ef_graph *g, ef_tensor *x);
ef_tensor *ef_mean(ef_graph *g, ef_tensor *x);
ef_tensor *ef_reshape(ef_graph *g, ef_tensor *x, int ndim, const int64_t *shape);
ef_tensor *ef_fill(ef_graph *g, int ndim, const int64_t *shape, float value);

// Mixed precision (backends that compute in 16 bits: CUDA): makes the activations and their
// gradients `dtype` (EF_BF16, EF_F16; EF_F32 changes nothing) after the graph is built and
// differentiated, before planning, by each op's precision class (core/op.h): the outputs of
// convolutions, batch norms, activations, adds, scales, dropout and pooling gradients with a spatial
// size above 1x1 change; parameters, their gradients, batch-norm statistics, the squeeze-excite
// path, the classifier and the loss stay f32. all: every computed output except statistics and
// in-place updates (the op tests).
void ef_graph_set_precision(ef_graph *g, ef_dtype dtype, bool all);

// Marks t as an output: it is computed and its memory kept until the end of every run.
void ef_graph_keep(ef_graph *g, ef_tensor *t);

// The generic node constructor behind every builder (and every backward rule): copies the
// sources and parameters, takes the shape (ndim > 0) or leaves it to the op's inference.
ef_tensor *ef_node_new(ef_graph *g, ef_op op, int n_src, ef_tensor *const *src, const ef_op_params *p, int ndim,
                       const int64_t *shape);

// ---- autograd (core/autograd.c) -------------------------------------------------------
// Builds, once, the backward graph of a scalar loss (shape (1)): gradients of every trainable
// parameter accumulate (+=) into the store's gradient arena; gradients of inputs that require
// one are kept as outputs (read them through t->grad). Nothing is computed for tensors that do
// not lead to something requiring a gradient.
void ef_graph_backward(ef_graph *g, ef_tensor *loss);
// The same from a non-scalar tensor y with a given upstream gradient dy (same shape as y).
void ef_graph_backward_from(ef_graph *g, ef_tensor *y, ef_tensor *dy);
// For backward rules: adds a gradient contribution to t (summing with earlier ones).
void ef_grad_add(ef_graph *g, ef_tensor *t, ef_tensor *dt);
// For backward rules: holds back t's contribution dy * s (s (N,1,1,C): a CHANNEL_MUL, not built
// yet) so that a later rule may take it (ef_grad_take_scale) into a node of its own; false when
// t is a leaf or the slots are full (then add it). The walk builds and adds what is still held
// at t's turn.
bool ef_grad_hold_scale(ef_graph *g, ef_tensor *t, ef_tensor *dy, ef_tensor *s);
bool ef_grad_take_scale(ef_graph *g, const ef_tensor *t, ef_tensor **dy, ef_tensor **s);

#endif
