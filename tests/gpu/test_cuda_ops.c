// Every op of tests/op_cases.h, forward and backward, on the CUDA backend against the CPU backend
// with the same random inputs: at f32 with TF32 off (relative error <= 1e-4 of the largest
// value), and at bf16 and f16 with every computed output but statistics in 16 bits, within a
// tolerance derived from the type's spacing and the case's scale (tests/gpu/tolerance.h). Inputs
// and the upstream gradient pass through an identity node first, which the 16-bit runs make
// 16-bit: every kernel, backward ones included, also reads 16-bit data. Both plans run poisoned,
// so an element a kernel forgets to write is NaN; parameters are written before planning, so
// that the algorithm search times real weights. Depthwise cases run three ways: as the timing
// chose, through cuDNN, and through effnet's kernels. Exits 77 without a GPU.
#include "tests/gpu/op_check.h"

// SyncBN's statistics with a group of two whose other rank holds 0.25 + 0.01 i at element i of
// every buffer it averages: the CPU, then the GPU with the group on host buffers (MPI's way: the
// node's data goes down and up) and on device buffers (NCCL's way: ef_k_sync_var_term on the GPU).
static void pair_mean(float *buf, size_t n) {
  for (size_t i = 0; i < n; i++) buf[i] = (buf[i] + 0.25f + 0.01f * (float)i) * 0.5f;
}
static void host_pair_mean(void *group, float *buf, size_t n) { (void)group, pair_mean(buf, n); }
static void device_pair_mean(void *group, float *buf, size_t n) { // eager runs: a trip through the host will do
  ef_backend *gpu = group;
  float h[64];
  EF_ASSERT(n <= 64, "%zu floats", n);
  gpu->download(gpu, h, buf, sizeof(float) * n);
  pair_mean(h, n);
  gpu->upload(gpu, buf, h, sizeof(float) * n);
}

static void check_sync_and_update(ef_backend *cpu, ef_backend *gpu) {
  float xv[3 * 4 * 5 * 6], init[12], running[3][12], stats[3][12];
  test_fill_uniform(xv, 360, 3, 0, -2, 3);
  test_fill_uniform(init, 12, 3, 1, 0.5f, 1.5f);
  ef_backend *bes[3] = {cpu, gpu, gpu};
  for (int k = 0; k < 3; k++) {
    ef_store *store = ef_store_new();
    int run = ef_store_add(store, "running", false, false, 2, (int64_t[]){2, 6}, (ef_init){0});
    CHECK(ef_store_bind(store, bes[k]) == EF_OK, "%s", ef_last_error());
    ef_store_write(store, run, EF_ARENA_STATE, init);
    ef_graph *g = ef_graph_new(store, SEED);
    ef_tensor *x = ef_input(g, "x", EF_F32, 4, (int64_t[]){3, 4, 5, 6});
    ef_tensor *st = ef_sync_stats(g, ef_bn_stats(g, x), 2);
    ef_graph_keep(g, st);
    ef_bn_update(g, ef_param(g, run, 1, NULL), st, 0.1f);
    ef_plan *plan;
    CHECK(ef_plan_new(&plan, g, bes[k], &(ef_plan_opts){.poison = true}) == EF_OK, "%s", ef_last_error());
    ef_plan_set(plan, x, xv);
    ef_run_ctx ctx = {.group_mean = k == 2 ? device_pair_mean : host_pair_mean, .group = gpu, .group_device = k == 2};
    ef_plan_run(plan, &ctx);
    ef_plan_run(plan, &ctx);
    ef_store_read(store, run, EF_ARENA_STATE, running[k]);
    ef_plan_get(plan, st, stats[k]);
    ef_plan_free(plan);
    ef_graph_free(g);
    ef_store_free(store);
  }
  for (int k = 1; k < 3; k++) {
    const char *where = k == 1 ? "on the host" : "on the GPU";
    CHECK_REL(running[k], running[0], 12, 1e-4, "sync_stats + bn_update, group %s: running", where);
    CHECK_REL(stats[k], stats[0], 12, 1e-4, "sync_stats + bn_update, group %s: statistics", where);
  }
}

int main(int argc, char **argv) {
  ef_backend *cpu, *gpu;
  test_gpu_backends(0, &cpu, &gpu);
  const char *only = argc > 1 ? argv[1] : NULL; // a substring of case names, to run a subset
  const ef_dtype precisions[] = {EF_F32, EF_BF16, EF_F16};
  ef_backend *dw_cudnn = gpu_forced(EF_CUDA_DW_CUDNN), *dw_effnet = gpu_forced(EF_CUDA_DW_EFFNET);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    if (only && !strstr(cases[i].name, only)) continue;
    if (cases[i].cpu_only) continue; // CUDA does not run it (cuda_supports_op), and its graphs never hold it
    for (int p = 0; p < 3; p++) {
      run_case(&cases[i], cpu, gpu, precisions[p], "chosen");
      if (!case_is_depthwise(&cases[i])) continue; // both ways, whichever the timing chose
      run_case(&cases[i], cpu, dw_cudnn, precisions[p], "cudnn");
      run_case(&cases[i], cpu, dw_effnet, precisions[p], "effnet");
    }
  }
  ef_backend_free(dw_cudnn);
  ef_backend_free(dw_effnet);
  if (!only || strstr("sync_stats + bn_update", only)) {
    int before = test_failures;
    check_sync_and_update(cpu, gpu);
    printf("%-48s %-5s %-7s %s\n", "sync_stats + bn_update", "f32", "", test_failures == before ? "ok" : "FAILED");
  }
  ef_backend_free(gpu);
  ef_backend_free(cpu);
  return test_exit_code();
}
