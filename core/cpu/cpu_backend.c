// The CPU backend's interface: the kernel table (one entry per op, checked at compile time for
// size and at start-up for gaps), memory, and dispatch. Host memory is the device memory here.
#define _DEFAULT_SOURCE // madvise's MADV_HUGEPAGE (Linux), beside the build's _POSIX_C_SOURCE
#include <omp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/cpu/cpu_internal.h"

static const ef_cpu_kernel kernels[] = {
    [EF_OP_LEAF] = {NULL, NULL},
    [EF_OP_CONV2D] = {ef_cpu_conv_prepare, ef_cpu_conv_run},
    [EF_OP_CONV2D_BWD_DATA] = {ef_cpu_conv_prepare, ef_cpu_conv_run},
    [EF_OP_CONV2D_BWD_WEIGHT] = {ef_cpu_conv_prepare, ef_cpu_conv_run},
    [EF_OP_CONV2D_BN] = {ef_cpu_conv_prepare, ef_cpu_conv_run},
    [EF_OP_EXPAND_DW] = {ef_cpu_expand_dw_prepare, ef_cpu_expand_dw},
    [EF_OP_BN_STATS] = {ef_cpu_rows_scratch, ef_cpu_bn_stats},
    [EF_OP_BN] = {ef_cpu_rows_scratch, ef_cpu_bn},
    [EF_OP_BN_BWD_REDUCE] = {ef_cpu_rows_scratch, ef_cpu_bn_bwd_reduce},
    [EF_OP_BN_BWD_DATA] = {ef_cpu_rows_scratch, ef_cpu_bn_bwd_data},
    [EF_OP_BN_UPDATE] = {NULL, ef_cpu_bn_update},
    [EF_OP_SYNC_STATS] = {NULL, ef_cpu_sync_stats},
    [EF_OP_SYNC_MEAN] = {NULL, ef_cpu_sync_mean},
    [EF_OP_ACT] = {NULL, ef_cpu_act},
    [EF_OP_ACT_BWD] = {NULL, ef_cpu_act_bwd},
    [EF_OP_ADD] = {NULL, ef_cpu_add},
    [EF_OP_CHANNEL_MUL] = {NULL, ef_cpu_channel_mul},
    [EF_OP_CHANNEL_MUL_BWD_S] = {NULL, ef_cpu_channel_mul_bwd_s},
    [EF_OP_GAP] = {NULL, ef_cpu_gap},
    [EF_OP_GAP_BWD] = {NULL, ef_cpu_gap_bwd},
    [EF_OP_LINEAR] = {ef_cpu_linear_prepare, ef_cpu_linear_run},
    [EF_OP_LINEAR_BWD_DATA] = {ef_cpu_linear_prepare, ef_cpu_dnnl_run},
    [EF_OP_LINEAR_BWD_WEIGHT] = {ef_cpu_linear_prepare, ef_cpu_dnnl_run},
    [EF_OP_SUM_ROWS] = {ef_cpu_rows_scratch, ef_cpu_sum_rows},
    [EF_OP_DROPOUT] = {NULL, ef_cpu_dropout},
    [EF_OP_SOFTMAX_CE] = {ef_cpu_softmax_ce_prepare, ef_cpu_softmax_ce},
    [EF_OP_SOFTMAX_CE_BWD] = {NULL, ef_cpu_softmax_ce_bwd},
    [EF_OP_REDUCE] = {ef_cpu_reduce_prepare, ef_cpu_reduce},
    [EF_OP_BROADCAST] = {NULL, ef_cpu_broadcast},
    [EF_OP_FILL] = {NULL, ef_cpu_fill},
    [EF_OP_RESHAPE] = {NULL, NULL}, // a view: nothing to run
    [EF_OP_ACCUM] = {NULL, ef_cpu_accum},
};
_Static_assert(sizeof kernels / sizeof kernels[0] == EF_OP_COUNT, "the CPU kernel table must list every op");

static bool cpu_supports_op(const ef_backend *be, const ef_tensor *node) {
  (void)be;
  if (node->op == EF_OP_LEAF) return true;
  if (node->op == EF_OP_RESHAPE) return true;
  for (int i = 0; i < node->n_src; i++)
    if (node->src[i]->dtype != EF_F32 && node->src[i]->dtype != EF_I32) return false;
  return node->dtype == EF_F32 && kernels[node->op].run != NULL;
}

static ef_status cpu_prepare(ef_backend *be, const ef_tensor *node, void **state, size_t *scratch) {
  *state = NULL;
  *scratch = 0;
  const ef_cpu_kernel *k = &kernels[node->op];
  return k->prepare ? k->prepare(be->impl, node, state, scratch) : EF_OK;
}

// Every prepared state is an ef_dnnl_node (the only kernels that keep state).
static void cpu_release(ef_backend *be, void *state) {
  (void)be;
  ef_dnnl_release(state);
  free(state);
}

static const char *cpu_describe(const ef_backend *be, const void *state) {
  (void)be;
  return state ? ((const ef_dnnl_node *)state)->impl : NULL;
}

static void cpu_compute(ef_backend *be, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  kernels[node->op].run(be->impl, node, state, scratch, ctx);
}

// Blocks of at least a huge page (the plan's activation arena, the store's arenas) are aligned to one
// and asked for transparent huge pages, which Linux gives only where asked ("madvise", the default
// here). On the AMD EPYC that took about 10% off B0's training step at batch 32 and 5% off B3's
// inference at batch 32, in pairs run in turn; small maps did not move (docs/perf.md, "Issue 19,
// ninth pass").
#define HUGE_PAGE ((size_t)2 << 20)
static void *cpu_alloc(ef_backend *be, size_t bytes) {
  (void)be;
  if (bytes < HUGE_PAGE) return ef_aligned_alloc(bytes);
  void *p = NULL;
  size_t size = (bytes + HUGE_PAGE - 1) / HUGE_PAGE * HUGE_PAGE;
  if (posix_memalign(&p, HUGE_PAGE, size) != 0) return NULL;
#ifdef MADV_HUGEPAGE
  // Advice only: where the kernel has no transparent huge pages it fails, and the block keeps 4 KiB pages.
  (void)madvise(p, size, MADV_HUGEPAGE);
#endif
  return p;
}

static void cpu_free(ef_backend *be, void *p) {
  (void)be;
  free(p);
}

static void cpu_copy(ef_backend *be, void *dst, const void *src, size_t bytes) {
  (void)be;
  memcpy(dst, src, bytes);
}

static void cpu_memset(ef_backend *be, void *dst, int byte, size_t bytes) {
  (void)be;
  memset(dst, byte, bytes);
}

static void cpu_synchronize(ef_backend *be) { (void)be; }

static void cpu_destroy(ef_backend *be) {
  ef_cpu *cpu = be->impl;
  if (cpu->stream) dnnl_stream_destroy(cpu->stream);
  if (cpu->engine) dnnl_engine_destroy(cpu->engine);
  free(cpu);
  free(be);
}

int ef_cpu_threads(const ef_backend *be) { return ((const ef_cpu *)be->impl)->threads; }

ef_backend *ef_cpu_backend_new(int threads) {
  for (int op = 0; op < EF_OP_COUNT; op++)
    if (op != EF_OP_LEAF && op != EF_OP_RESHAPE && !kernels[op].run)
      EF_FATAL("the CPU backend has no kernel for op %s", ef_op_name(op));
  ef_backend *be = ef_xcalloc(1, sizeof *be);
  ef_cpu *cpu = ef_xcalloc(1, sizeof *cpu);
  *be = (ef_backend){.name = "cpu",
                     .supports_op = cpu_supports_op,
                     .prepare = cpu_prepare,
                     .release = cpu_release,
                     .describe = cpu_describe,
                     .compute = cpu_compute,
                     .alloc = cpu_alloc,
                     .free = cpu_free,
                     .upload = cpu_copy,
                     .download = cpu_copy,
                     .memset = cpu_memset,
                     .synchronize = cpu_synchronize,
                     .destroy = cpu_destroy,
                     .eval_fusions = EF_FUSE_GATES | EF_FUSE_EXPAND_DW,
                     .impl = cpu};
  cpu->threads = threads > 0 ? threads : omp_get_num_procs();
  omp_set_num_threads(cpu->threads);
  dnnl_status_t st = dnnl_engine_create(&cpu->engine, dnnl_cpu, 0);
  if (st == dnnl_success) st = dnnl_stream_create(&cpu->stream, cpu->engine, dnnl_stream_default_flags);
  if (st != dnnl_success) {
    cpu_destroy(be);
    EF_ERROR(EF_ERR_UNSUPPORTED, "oneDNN could not create a CPU engine and stream: %s", dnnl_status2str(st));
    return NULL;
  }
  return be;
}
