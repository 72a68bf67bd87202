// The op table: every computation effnet can run, its typed parameters, and one row of facts per
// op in core/op.c (arity, storage, shape inference, backward rule, precision class, multiply-adds,
// profile class). Backends keep their kernels in their own tables and switches indexed by ef_op.
//
// Adding an op, step by step (where a step is missing, the build or a test says so):
//  1. ef_op below: the value, with its sources and result (and their shapes) in a comment; its
//     parameters, if any, as a struct in ef_op_params.
//  2. core/op.c: its shape inference; its backward rule (NULL when it is not differentiated), which
//     builds gradient nodes from other ops (a new backward-only op takes these same steps); its
//     multiply-adds (NULL for none); and its row in op_table with these, its name, arity, storage,
//     precision class (ef_precision) and profile class (ef_profile). A missing row fails the
//     _Static_assert or, for a gap, ef_op_table_check at start-up.
//  3. core/graph.h, core/graph.c: a builder (ef_conv2d, ef_bn, ...) for a forward op.
//  4. core/cpu: its kernel, in the cpu_*.c of its family (declared in cpu_internal.h), in
//     cpu_backend.c's table: ef_cpu_backend_new aborts naming an op without one.
//  5. cuda: its kernel in kernels.cu (declared in kernels.h; cuDNN's and cuBLAS's calls live in
//     cuda_conv.c and cuda_matmul.c), and its case in cuda_backend.c's cuda_supports_op,
//     cuda_prepare and cuda_compute: switches without a default, where -Wswitch (an error under
//     EFFNET_WERROR) stops the build until each names the op.
//  6. tests/op_cases.h: a case on odd shapes with its float64 reference, forward and backward;
//     test_ops fails naming an op that no case runs, and test_cuda_ops runs the same cases on a GPU.
//     A fusion only the CPU builds (ef_fusion; EXPAND_DW) is unsupported in cuda_supports_op
//     instead of step 5, and its cases are cpu_only.
//  7. docs/ARCHITECTURE.md, where the op changes the design.
#ifndef EF_OP_H
#define EF_OP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
  EF_OP_LEAF, // no computation: an input, parameter, gradient or state tensor
  // convolution, NHWC activations, weights (O, KH, KW, I/groups), optional bias (O)
  EF_OP_CONV2D,            // {x (N,H,W,C), w, [b]} -> (N,OH,OW,O)
  EF_OP_CONV2D_BWD_DATA,   // {dy, w} -> dx (N,H,W,C)
  EF_OP_CONV2D_BWD_WEIGHT, // {dy, x} -> dw (O,KH,KW,C/groups)
  EF_OP_CONV2D_BN,         // {x, w, stats (2,O), affine (2,O), [gate (N,1,1,C)]} -> act(BN(conv(x * gate, w)))
                           //   with running statistics: inference's convolution with its batch norm folded
                           //   in (not differentiated); gate: squeeze-excite's channel scale, 1x1 ones only
  EF_OP_EXPAND_DW,         // {x (N,H,W,C), w1 (M,1,1,C), stats1, affine1 (2,M), w2 (M,KH,KW,1), stats2, affine2 (2,M)}
                           //   -> (N,OH,OW,M): act(BN2(dwconv(act(BN1(conv1x1(x, w1))), w2))), an MBConv block's
                           //   expansion and depthwise convolution (two CONV2D_BN; params: the depthwise's) in
                           //   one node, so that a backend need not store the expansion (ef_fusion); not
                           //   differentiated
  // batch norm; per-channel pairs are stored as (2,C): stats [mean; var], affine [gamma; beta]
  EF_OP_BN_STATS,      // {x (N,H,W,C)} -> (2,C) batch mean and biased variance
  EF_OP_BN,            // {x, stats (2,C), affine (2,C)} -> act(gamma * xhat + beta)
  EF_OP_BN_BWD_REDUCE, // {dy, x, stats, affine} -> (2,C) [sum dz*xhat; sum dz]
  EF_OP_BN_BWD_DATA,   // {dy, x, stats, affine, [reduce]} -> dx
  EF_OP_BN_UPDATE,     // {running (2,C), stats (2,C)} -> running, updated in place
  EF_OP_SYNC_STATS,    // {bn_stats (2,C)} -> (2,C) over a group of ranks' equal batches (SyncBN):
                       //   the mean of the means, and the mean of var_r + (mean_r - mean)^2
  EF_OP_SYNC_MEAN,     // {x} -> x averaged over the group's ranks (SyncBN's backward sums)
  // elementwise and broadcast
  EF_OP_ACT,               // {x} -> act(x)
  EF_OP_ACT_BWD,           // {dy, x} -> dy * act'(x)
  EF_OP_ADD,               // {a, b} -> a + b (same shapes)
  EF_OP_CHANNEL_MUL,       // {x (N,H,W,C), s (N,1,1,C), [d (N,1,1,C)]} -> x * s [+ d / (H*W)] (the
                           //   squeeze-excite scale; with d, its input's gradient: both paths)
  EF_OP_CHANNEL_MUL_BWD_S, // {dy, x} -> (N,1,1,C) sum over H,W of dy * x
  EF_OP_GAP,               // {x (N,H,W,C)} -> (N,1,1,C) mean over H,W
  EF_OP_GAP_BWD,           // {dy (N,1,1,C)} -> (N,H,W,C) dy / (H*W)
  // matrix products: x (...,I) as rows, w (O,I), optional b (O)
  EF_OP_LINEAR,            // {x, w, [b]} -> (...,O)
  EF_OP_LINEAR_BWD_DATA,   // {dy, w} -> dx (...,I)
  EF_OP_LINEAR_BWD_WEIGHT, // {dy, x} -> dw (O,I)
  EF_OP_SUM_ROWS,          // {x (...,C)} -> (C) sum over all but the last axis (bias grads)
  // regularization
  EF_OP_DROPOUT, // {x} -> x * mask / (1 - rate), mask per element or per sample
  // losses and reductions
  EF_OP_SOFTMAX_CE,     // {logits (N,K), labels (N) i32 | targets (N,K) f32} -> (1) mean CE
                        // (labels: label-smoothed; targets: probabilities, timm's SoftTargetCrossEntropy)
  EF_OP_SOFTMAX_CE_BWD, // {dloss (1), logits, labels | targets} -> dlogits (N,K)
  EF_OP_REDUCE,         // {x} -> (1) value * sum(x)   (sum: value 1, mean: value 1/n)
  EF_OP_BROADCAST,      // {d (1)} -> d * value in every element of the node's shape
  EF_OP_FILL,           // {} -> value in every element
  // storage
  EF_OP_RESHAPE, // {x} -> the same memory with another shape (a view)
  EF_OP_ACCUM,   // {dst, src} -> dst += src, in place (parameter gradients)
  EF_OP_COUNT
} ef_op;

typedef enum { EF_ACT_NONE, EF_ACT_SWISH, EF_ACT_SIGMOID, EF_ACT_RELU, EF_ACT_RELU6, EF_ACT_COUNT } ef_act;

typedef enum { EF_PAD_SYMMETRIC, EF_PAD_SAME } ef_padding; // PyTorch k//2, or TF "SAME"

typedef struct {
  int32_t stride[2], dilation[2]; // (h, w)
  int32_t pad[4];                 // top, bottom, left, right (asymmetric for TF "SAME")
  int32_t groups;
  float bn_eps; // CONV2D_BN, EXPAND_DW: the batch norms' eps, and the activation after each
  ef_act act;
} ef_conv_params;

typedef struct {
  float eps;
  ef_act act;       // fused activation after the affine transform
  bool batch_stats; // stats are this batch's (training): backward includes their gradient
} ef_bn_params;

typedef struct {
  float momentum; // PyTorch convention: running = (1 - m) * running + m * batch
} ef_bn_update_params;

typedef struct {
  ef_act act;
} ef_act_params;

typedef struct {
  float rate;      // probability of dropping
  bool per_sample; // one draw per sample (drop-path / stochastic depth) or per element
  uint32_t stream; // Philox stream, unique per dropout node in a graph
  uint64_t seed;
} ef_dropout_params;

typedef struct {
  float smoothing;
} ef_ce_params;

typedef struct {
  float value;
} ef_value_params; // REDUCE, BROADCAST, FILL

typedef struct {
  int32_t group;
} ef_sync_params; // SYNC_STATS, SYNC_MEAN: ranks per group (> 1)

typedef union {
  ef_conv_params conv;
  ef_bn_params bn;
  ef_bn_update_params bn_update;
  ef_act_params act;
  ef_dropout_params dropout;
  ef_ce_params ce;
  ef_value_params value;
  ef_sync_params sync;
} ef_op_params;

struct ef_tensor;
struct ef_graph;

typedef enum {
  EF_STORAGE_OWN,     // the node has its own output buffer
  EF_STORAGE_VIEW,    // the output is src[0]'s memory; nothing is computed
  EF_STORAGE_INPLACE, // the output is src[0]'s memory, updated by the kernel
  // Its own output buffer, which the planner may place over src[0]'s when this node is the last to
  // read src[0] and both have the same type and size: the kernel (on every backend) reads element i
  // of src[0] only for element i of the output, before writing it.
  EF_STORAGE_REUSE,
} ef_storage;

// What mixed precision (ef_graph_set_precision with a 16-bit type) does with an op's output.
typedef enum {
  EF_PREC_F32,        // stays f32: leaves, statistics, their updates and group means, the store's updates
  EF_PREC_ACTIVATION, // an activation or its gradient: 16-bit where spatial (above 1x1), or with `all`
  EF_PREC_WITH_ALL,   // 16-bit only with `all`: weight gradients, pooled values, products of rows, losses
  EF_PREC_SOURCE,     // src[0]'s type (views)
} ef_precision;

// How a profile counts an op's nodes: its row's class, refined per node by ef_node_kind.
typedef enum {
  EF_PROFILE_CONV,   // a convolution: 1x1, depthwise or other by its weights' shape
  EF_PROFILE_BN_ACT, // batch norm (its fused activation included) and bare activations
  EF_PROFILE_OTHER,
} ef_profile;

// What `effnet bench --profile` splits a step into, in the order it prints them: the kinds of
// nodes (ef_node_kind), and the optimizer's update and the wait for data, timed around the plan.
typedef enum {
  EF_KIND_CONV1X1,
  EF_KIND_DEPTHWISE,
  EF_KIND_EXPAND_DW, // the two in one node (EF_OP_EXPAND_DW)
  EF_KIND_BN_ACT,
  EF_KIND_SE,         // the squeeze-excite scope (EF_SCOPE_SE), gradients included
  EF_KIND_CLASSIFIER, // the classifier scope (EF_SCOPE_CLASSIFIER), gradients included
  EF_KIND_OPTIMIZER,
  EF_KIND_OTHER, // the stem's convolution, adds, drop-path, the loss, gradient accumulation, ...
  EF_KIND_DATA,
  EF_KIND_COUNT
} ef_kind;

typedef struct {
  const char *name;
  int min_src, max_src;
  ef_storage storage;
  // Checks the sources and sets the node's dtype and shape; aborts naming the node on a
  // mismatch (graph-building code is ours; user input is validated before building).
  void (*infer)(struct ef_tensor *node);
  // Adds to the graph the gradient of every source that requires one, given the gradient dy
  // of this node. NULL for ops that are not differentiated (backward ops, statistics, ...).
  void (*backward)(struct ef_graph *g, struct ef_tensor *node, struct ef_tensor *dy);
  ef_precision precision;
  // Multiply-adds of a node (its convolution or matrix product, forward or either backward);
  // NULL for ops without products.
  int64_t (*macs)(const struct ef_tensor *node);
  ef_profile profile;
} ef_op_desc;

const ef_op_desc *ef_op_get(ef_op op);
const char *ef_op_name(ef_op op);
const char *ef_act_name(ef_act act);
// Multiply-adds of a node, from its op's row (0 where the row has none).
int64_t ef_node_macs(const struct ef_tensor *t);
// A node's kind in a profile: its scope first (squeeze-excite, classifier), then its op's row,
// convolutions by their weights' shape (1x1, depthwise, or other: the stem's 3x3). And its name.
ef_kind ef_node_kind(const struct ef_tensor *t);
const char *ef_kind_name(ef_kind kind);
// The least memory traffic of a node: each source read once and its output written once (0 for
// a view).
int64_t ef_node_bytes(const struct ef_tensor *t);
// Two rules of the batch-norm ops that every backend applies the same way. BN_UPDATE's Bessel
// factor rows / (rows - 1), over the rows its statistics came from (this batch's, times the group's
// ranks under SyncBN). SYNC_STATS from a rank's own (2,C) [mean; var] into out: the group's mean
// of the means, then its mean of var_r + (mean_r - mean)^2 (no cancellation), through the run's
// group_mean; host memory.
double ef_bn_update_bessel(const struct ef_tensor *update);
void ef_sync_stats_combine(void (*group_mean)(void *group, float *buf, size_t n), void *group, const float *own,
                           float *out, size_t c);
// Aborts at start-up if an entry of the table is incomplete (called by ef_graph_new).
void ef_op_table_check(void);

#endif
