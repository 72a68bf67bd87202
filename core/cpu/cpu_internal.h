// Internals of the CPU backend shared by its files: the kernel table's entry type, oneDNN
// checking macros and primitive wrapper, every kernel's declaration, and the loop helpers.
#ifndef EF_CPU_INTERNAL_H
#define EF_CPU_INTERNAL_H

#include <math.h>
#include <stdint.h>
#include <string.h>
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/cpu/cpu.h"

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

// A oneDNN call that cannot fail once its primitive exists: abort naming it.
#define EF_DNNL(expr)                                                                          \
  do {                                                                                         \
    dnnl_status_t ef_dnnl_st_ = (expr);                                                        \
    if (ef_dnnl_st_ != dnnl_success)                                                           \
      EF_FATAL("oneDNN call %s failed: %s", #expr, dnnl_status2str(ef_dnnl_st_));              \
  } while (0)
// A oneDNN call while preparing a node: return an error naming the call and the node.
#define EF_DNNL_TRY(expr, node)                                                                \
  do {                                                                                         \
    dnnl_status_t ef_dnnl_st_ = (expr);                                                        \
    if (ef_dnnl_st_ != dnnl_success)                                                           \
      return EF_ERROR(ef_dnnl_st_ == dnnl_out_of_memory ? EF_ERR_NOMEM : EF_ERR_UNSUPPORTED,   \
                      "oneDNN call %s failed for node '%s': %s%s", #expr, (node)->name,          \
                      dnnl_status2str(ef_dnnl_st_),                                            \
                      ef_dnnl_st_ == dnnl_out_of_memory ? " (reduce the batch size)" : "");     \
  } while (0)

// A oneDNN primitive prepared for one node, with its memory objects (cpu_dnnl.c). Weights
// live in our plain layout; when the primitive prefers another format they are reordered into
// (or, for weight gradients, out of) a buffer at the start of the plan's scratch, and the
// primitive's own scratchpad follows that buffer.
#define EF_DNNL_MAX_ARGS 6
typedef struct {
  dnnl_primitive_t prim;
  dnnl_exec_arg_t args[EF_DNNL_MAX_ARGS];
  int nargs;
  dnnl_memory_t scratchpad;                 // one of args, or NULL
  size_t scratchpad_offset;                 // in the plan's scratch
  dnnl_primitive_t reorder;                 // NULL when the weights' formats agree
  dnnl_exec_arg_t reorder_args[2];          // plain <-> prim_w
  dnnl_memory_t plain_w;                    // our weights (owned; not an argument of prim)
  dnnl_memory_t prim_w;                     // the primitive's weights (one of args), at the
                                            // start of the plan's scratch
  bool reorder_after;                       // weight gradients: reorder after running
  char impl[160];                           // oneDNN's implementation name
} ef_dnnl_node;

// Adds a memory object for `data` (NULL: placed in the scratch at run time) as argument `arg`.
ef_status ef_dnnl_arg(ef_cpu *cpu, const ef_tensor *node, ef_dnnl_node *s, int arg,
                      const dnnl_memory_desc_t *md, void *data);
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
ef_status ef_cpu_linear_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch);
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

// exp(x) in f32 without a library call, so that loops using it vectorize: x = n ln2 + r with
// |r| <= ln2/2, e^r by Cephes' degree-6 polynomial (about 1 ulp), 2^n from the exponent bits.
// Arguments are clamped to [-87.3, 88] so that n stays in [-126, 127] (results 1.2e-38 ..
// 1.7e38; the activations using it saturate long before). NaN stays NaN.
static inline float ef_expf(float x) {
  x = x < -87.3f ? -87.3f : x > 88.0f ? 88.0f : x;
  // Adding 1.5 * 2^23 rounds x / ln2 to the integer n, which then sits in t's low mantissa bits.
  float t = x * 1.44269504f + 12582912.0f, n = t - 12582912.0f;
  float r = x - n * 0.693359375f - n * -2.12194440e-4f;    // ln2 split in two for exactness
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  uint32_t tbits, bits;
  memcpy(&tbits, &t, sizeof tbits);
  bits = (tbits - 0x4B400000u + 127u) << 23; // 2^n: the biased exponent n + 127, unsigned (NaN-safe)
  float scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

// Activations and their derivatives, in f32. Shared by ACT, ACT_BWD and the fused BN.
static inline float ef_act_fwd(ef_act a, float x) {
  switch (a) {
  case EF_ACT_SWISH: return x / (1.0f + ef_expf(-x));
  case EF_ACT_SIGMOID: return 1.0f / (1.0f + ef_expf(-x));
  case EF_ACT_RELU: return x > 0.0f ? x : 0.0f;
  case EF_ACT_RELU6: return x > 0.0f ? (x < 6.0f ? x : 6.0f) : 0.0f;
  default: return x;
  }
}

static inline float ef_act_grad(ef_act a, float x) {
  switch (a) {
  case EF_ACT_SWISH: {
    float s = 1.0f / (1.0f + ef_expf(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  case EF_ACT_SIGMOID: {
    float s = 1.0f / (1.0f + ef_expf(-x));
    return s * (1.0f - s);
  }
  case EF_ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
  case EF_ACT_RELU6: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
  default: return 1.0f;
  }
}

// Calls fn(act, args...) with the activation as a compile-time constant. fn is an always-inline
// loop over one row or block: each case gets its own copy without the activation's branch, which
// the compiler can vectorize (a switch inside the loop keeps it scalar).
#define EF_INLINE static inline __attribute__((always_inline))
#define EF_ACT_SPECIALIZE(a, fn, ...)                                                          \
  do {                                                                                         \
    switch (a) {                                                                               \
    case EF_ACT_SWISH: fn(EF_ACT_SWISH, __VA_ARGS__); break;                                   \
    case EF_ACT_SIGMOID: fn(EF_ACT_SIGMOID, __VA_ARGS__); break;                               \
    case EF_ACT_RELU: fn(EF_ACT_RELU, __VA_ARGS__); break;                                     \
    case EF_ACT_RELU6: fn(EF_ACT_RELU6, __VA_ARGS__); break;                                   \
    case EF_ACT_NONE: fn(EF_ACT_NONE, __VA_ARGS__); break;                                     \
    default: EF_FATAL("activation %d has no specialized loop", (int)(a));                     \
    }                                                                                          \
  } while (0)

// Reductions over rows are split into a number of chunks that depends only on the row count,
// each summed in double, and the chunks added in order: the same bits for any thread count.
#define EF_CPU_MAX_CHUNKS 64
static inline int64_t ef_cpu_chunks(int64_t rows) { return rows < EF_CPU_MAX_CHUNKS ? rows : EF_CPU_MAX_CHUNKS; }
// Rows [begin, end) of chunk `ch` of `rows` rows.
static inline void ef_cpu_chunk_range(int64_t rows, int64_t ch, int64_t *begin, int64_t *end) {
  int64_t n = ef_cpu_chunks(rows), per = (rows + n - 1) / n;
  *begin = ch * per < rows ? ch * per : rows;
  *end = (ch + 1) * per < rows ? (ch + 1) * per : rows;
}


#endif
