// Internals of the CPU backend shared by its files: the kernel table's entry type, oneDNN
// checking macros and primitive wrapper, every kernel's declaration, and the loop helpers.
#ifndef EF_CPU_INTERNAL_H
#define EF_CPU_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/act.h"
#include "core/cpu/cpu.h"
#include "core/dwconv.h"

typedef struct {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  int threads;
} ef_cpu;

typedef struct {
  // Optional: builds per-node state (primitives) and reports scratch bytes.
  ef_status (*prepare)(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
  void (*run)(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
} ef_cpu_kernel;

// Bytes rounded up to a cache line: where the pieces of the plan's scratch start.
#define EF_ALIGN64(x) (((x) + 63) & ~(size_t)63)

// A oneDNN call that cannot fail once its primitive exists: abort naming it.
#define EF_DNNL(expr)                                                                                                  \
  do {                                                                                                                 \
    dnnl_status_t ef_dnnl_st_ = (expr);                                                                                \
    if (ef_dnnl_st_ != dnnl_success) EF_FATAL("oneDNN call %s failed: %s", #expr, dnnl_status2str(ef_dnnl_st_));       \
  } while (0)
// A oneDNN call while preparing a node: return an error naming the call and the node.
#define EF_DNNL_TRY(expr, node)                                                                                        \
  do {                                                                                                                 \
    dnnl_status_t ef_dnnl_st_ = (expr);                                                                                \
    if (ef_dnnl_st_ != dnnl_success)                                                                                   \
      return EF_ERROR(ef_dnnl_st_ == dnnl_out_of_memory ? EF_ERR_NOMEM : EF_ERR_UNSUPPORTED,                           \
                      "oneDNN call %s failed for node '%s': %s%s", #expr, (node)->name, dnnl_status2str(ef_dnnl_st_),  \
                      ef_dnnl_st_ == dnnl_out_of_memory ? " (reduce the batch size)" : "");                            \
  } while (0)

// A oneDNN primitive prepared for one node, with its memory objects (cpu_dnnl.c). Weights
// live in our plain layout; when the primitive prefers another format they are reordered into
// (or, for weight gradients, out of) a buffer at the start of the plan's scratch, and the
// primitive's own scratchpad follows that buffer. A forward convolution keeps its weights as the
// primitive takes them (folded with CONV2D_BN's batch norm, reordered) in buffers of its own
// instead, and derives them again only when a run's weights_unchanged does not say it may reuse them.
#define EF_DNNL_MAX_ARGS 6
typedef struct ef_dnnl_node {
  dnnl_primitive_t prim;
  dnnl_exec_arg_t args[EF_DNNL_MAX_ARGS];
  int nargs;
  dnnl_memory_t scratchpad;        // one of args, or NULL
  size_t scratchpad_offset;        // in the plan's scratch
  dnnl_primitive_t reorder;        // NULL when the weights' formats agree
  dnnl_exec_arg_t reorder_args[2]; // plain <-> prim_w
  dnnl_memory_t plain_w;           // our weights (owned; not an argument of prim)
  dnnl_memory_t prim_w;            // the primitive's weights (one of args): kept_w, or
                                   // the start of the plan's scratch
  bool reorder_after;              // weight gradients: reorder after running
  bool keep_weights;               // a forward convolution: prim_w in kept_w, not in the scratch
  bool dw_forward;                 // a depthwise CONV2D or CONV2D_BN that effnet's kernel runs
  bool dw_filter;                  // a depthwise filter gradient that effnet's kernel runs
  bool derived;                    // kept_w (and the folded weights) hold what a run derived
  void *kept_w;                    // owned
  const ef_tensor *fold;           // CONV2D_BN: the node whose batch norm folds into fold_w, fold_bias
  float *fold_w, *fold_bias;       // owned: (O,KH,KW,I/groups) and (O)
  const ef_tensor *gate;           // a gated CONV2D_BN's gate (N,1,1,I), or NULL
  dnnl_memory_t gated_w;           // then its weights (N,O,I), fold_w scaled per image at the start of
                                   // the plan's scratch (one of args)
  char impl[160];                  // oneDNN's implementation name, or effnet's kernel's
} ef_dnnl_node;

// s->kept_w: `bytes` of zeros, 64-byte aligned, for the weights a kernel derives and keeps.
ef_status ef_cpu_kept_alloc(const ef_tensor *node, ef_dnnl_node *s, size_t bytes);

// Whether this run must derive the node's kept weights again (folded, reordered, packed): always
// where they do not come from the store alone, else at the first run and where the run says the
// weights changed. Marks them derived.
static inline bool ef_cpu_derive_now(ef_dnnl_node *s, const ef_run_ctx *ctx) {
  if (s->keep_weights && ctx->weights_unchanged && s->derived) return false;
  s->derived = true;
  return true;
}

// Adds a memory object for `data` (NULL: placed in the scratch at run time) as argument `arg`.
ef_status ef_dnnl_arg(ef_cpu *cpu, const ef_tensor *node, ef_dnnl_node *s, int arg, const dnnl_memory_desc_t *md,
                      void *data);
// Finishes a node from its primitive descriptor (which the caller still owns): the weights
// argument `warg` (0: none to convert) in the format the primitive chose, from/to `plain_md` at
// `plain`, the scratchpad, the primitive and its implementation name. Reports the scratch
// bytes the node needs.
ef_status ef_dnnl_finish(ef_cpu *cpu, const ef_tensor *node, ef_dnnl_node *s, dnnl_primitive_desc_t pd, int warg,
                         const dnnl_memory_desc_t *plain_md, void *plain, size_t *scratch);
void ef_dnnl_release(ef_dnnl_node *s);
// A fresh ef_dnnl_node owned by the plan (released through the backend's release).
ef_dnnl_node *ef_dnnl_node_new(void **state);

// Kernels, by file.
ef_status ef_cpu_conv_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
// CONV2D_BN: buffers for its folded weights (plain layout) and bias, owned by s, and whether they are
// derived once (from the store's tensors) or at every run; ef_cpu_conv_fold fills them from the
// store's weights, statistics and affine pair.
ef_status ef_cpu_fold_prepare(const ef_tensor *node, ef_dnnl_node *s);
void ef_cpu_conv_fold(const ef_dnnl_node *s);
// Weights w (O,KH,KW,I/g) folded with a batch norm (stats, affine (2,O), eps): W * scale into
// out[a * sa + i * si] for output a and weight i < KH*KW*I/g, and the bias (O).
void ef_cpu_fold(const ef_tensor *w, const ef_tensor *stats, const ef_tensor *affine, double eps, float *out,
                 int64_t sa, int64_t si, float *bias);
// Whether sources [i0, i1) of node are all the store's tensors: what a kernel derives from them then
// changes only where a run's weights_unchanged says so.
bool ef_cpu_from_store(const ef_tensor *node, int i0, int i1);
// A gated CONV2D_BN's weights for this run: wg (N,O,I) = fold_w (O,I) * gate[n] (I) per image n.
void ef_cpu_gate_weights(const ef_dnnl_node *s, float *wg);
// CONV2D_BN's activation as a oneDNN eltwise post-op in attr.
dnnl_status_t ef_cpu_post_act(dnnl_primitive_attr_t attr, ef_act act);
// A 1x1 convolution with stride 1, no padding and one group: a product of rows, (N*H*W, I) by (O, I).
bool ef_cpu_pointwise(const ef_tensor *node);
// Runs what ef_cpu_conv_prepare chose: oneDNN's primitive, effnet's depthwise forward or filter
// gradient, its pointwise filter gradient, or its pointwise convolution over few inputs.
void ef_cpu_conv_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
// Depthwise convolutions by effnet's own kernels (cpu_dwconv.c), with the twin's bits (core/dwconv.h):
// the filter gradients ef_cpu_dw_own picks or oneDNN has no depthwise kernel for, and forwards
// ef_cpu_dw_forward_can allows (a plain CONV2D or an ungated CONV2D_BN, dilation 1) where
// ef_cpu_dw_forward_fast says or oneDNN would run them as im2col GEMM (ef_cpu_conv_prepare decides).
bool ef_cpu_dw_own(const ef_tensor *node);
bool ef_cpu_dw_forward_can(const ef_tensor *node);
bool ef_cpu_dw_forward_fast(const ef_tensor *node);
ef_status ef_cpu_dw_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_dw_forward(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
// Its work on `threads` threads: y (N,OH,OW,C) = act(x (N,H,W,C) by wt (KH*KW, C), + bias (C) where
// not NULL), wt first filled from w (C,KH,KW,1) where w is not NULL.
void ef_cpu_dw_forward_on(int threads, ef_act act, const ef_dw_shape *s, const float *x, const float *w,
                          const float *bias, float *wt, float *y);
void ef_cpu_dw_bwd_filter(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
// Output row oy of a depthwise convolution of shape s (dilation 1), channels [c0, c1) of y's row (OW
// points of s->c floats): act(the taps in order (ky, kx), each an fmaf from 0, those outside the
// input skipped, + bias[c] where bias is not NULL): the twin's ef_dw_forward_point, then the
// activation (vec_act_fwd: relu and relu6 exact, swish and sigmoid within 2 ulp of ef_act_fwd). The
// input's rows [iy0, iy1) start at `in`, s->w points of `ld` floats each (ld >= c1); the weights wt
// (KH*KW, ldw).
void ef_cpu_dw_row(ef_act act, const ef_dw_shape *s, const float *in, int64_t ld, int iy0, int iy1, int oy,
                   const float *wt, int64_t ldw, const float *bias, int64_t c0, int64_t c1, float *y);
// Pointwise filter gradients over many rows by effnet's own kernel (cpu_pwgrad.c), for the nodes
// ef_cpu_pw_own picks.
bool ef_cpu_pw_own(const ef_tensor *node);
ef_status ef_cpu_pw_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_pw_bwd_filter(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
// Pointwise convolutions by effnet's own kernel (cpu_pwfwd.c): forwards (folded, gated or plain) and
// data gradients over few input channels or onto few output channels, inference's expansions over
// many rows, and plain ones over few rows, the nodes ef_cpu_pwf_own picks.
bool ef_cpu_pwf_own(const ef_tensor *node);
ef_status ef_cpu_pwf_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_pwf_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
// Its rows: y (m rows of stride ldy, the first o columns) = act(x (m,i) wt + bias), wt (i,op) and bias
// (op) folded and padded to op = ef_cpu_pwf_padded(o) outputs (zeros past o).
int64_t ef_cpu_pwf_padded(int64_t o);
void ef_cpu_pwf_rows(ef_act act, const float *x, int64_t m, int64_t i, const float *wt, const float *bias, int64_t op,
                     float *y, int64_t ldy, int64_t o);
// EXPAND_DW by effnet's own kernel (cpu_expand_dw.c).
ef_status ef_cpu_expand_dw_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_expand_dw(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
// The linear layer's three products (cpu_matmul.c): through oneDNN's matmul, or the forward over few
// rows by effnet's dot products; the run follows prepare's choice.
ef_status ef_cpu_linear_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_linear_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
// A product of rows through oneDNN's matmul: the linear layer's three (ef_cpu_linear_prepare), and a
// pointwise convolution's (1x1, stride 1, no padding, one group), with activations (...,C) as rows
// and weights (O,1,1,I) as (O,I).
typedef enum { EF_PRODUCT_FORWARD, EF_PRODUCT_DATA, EF_PRODUCT_WEIGHT } ef_product;
ef_status ef_cpu_product_prepare(ef_cpu *cpu, const ef_tensor *node, ef_product kind, void **state, size_t *scratch);
void ef_cpu_dnnl_run(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);

ef_status ef_cpu_rows_scratch(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_bn_stats(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_bn(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_bn_bwd_reduce(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_bn_bwd_data(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_bn_update(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_sync_stats(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_sync_mean(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_sum_rows(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);

void ef_cpu_act(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_act_bwd(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_add(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_channel_mul(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_channel_mul_bwd_s(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_gap(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_gap_bwd(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_dropout(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_broadcast(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_fill(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_accum(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);

ef_status ef_cpu_reduce_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_reduce(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
ef_status ef_cpu_softmax_ce_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
void ef_cpu_softmax_ce(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);
void ef_cpu_softmax_ce_bwd(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx);

// ---- helpers for the loops -------------------------------------------------------------------

// Calls fn(act, args...) with the activation as a compile-time constant. fn is an always-inline
// loop over one row or block: each case gets its own copy without the activation's branch, which
// the compiler can vectorize (a switch inside the loop keeps it scalar).
#define EF_INLINE static inline __attribute__((always_inline))
#define EF_ACT_SPECIALIZE(a, fn, ...)                                                                                  \
  do {                                                                                                                 \
    switch (a) {                                                                                                       \
    case EF_ACT_SWISH: fn(EF_ACT_SWISH, __VA_ARGS__); break;                                                           \
    case EF_ACT_SIGMOID: fn(EF_ACT_SIGMOID, __VA_ARGS__); break;                                                       \
    case EF_ACT_RELU: fn(EF_ACT_RELU, __VA_ARGS__); break;                                                             \
    case EF_ACT_RELU6: fn(EF_ACT_RELU6, __VA_ARGS__); break;                                                           \
    case EF_ACT_NONE: fn(EF_ACT_NONE, __VA_ARGS__); break;                                                             \
    default: EF_FATAL("activation %d has no specialized loop", (int)(a));                                              \
    }                                                                                                                  \
  } while (0)

// Reductions over rows are split into a number of chunks that depends only on the row count
// (one per EF_CPU_CHUNK_ROWS rows, at most EF_CPU_MAX_CHUNKS), each summed in double, and the
// chunks added in order: the same bits for any thread count.
#define EF_CPU_MAX_CHUNKS 64
#define EF_CPU_CHUNK_ROWS 32
static inline int64_t ef_cpu_chunks(int64_t rows) {
  int64_t n = (rows + EF_CPU_CHUNK_ROWS - 1) / EF_CPU_CHUNK_ROWS;
  return n < 1 ? 1 : n < EF_CPU_MAX_CHUNKS ? n : EF_CPU_MAX_CHUNKS;
}
// Rows [begin, end) of chunk `ch` of `rows` rows.
static inline void ef_cpu_chunk_range(int64_t rows, int64_t ch, int64_t *begin, int64_t *end) {
  int64_t n = ef_cpu_chunks(rows), per = (rows + n - 1) / n;
  *begin = ch * per < rows ? ch * per : rows;
  *end = (ch + 1) * per < rows ? (ch + 1) * per : rows;
}

#endif
