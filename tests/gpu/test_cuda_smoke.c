// The first minute on a lent GPU (tests/gpu/check.sh's gate): does each part work at all? A
// depthwise convolution per precision, forward and both gradients, through cuDNN and through
// effnet's kernels, and a pointwise (cuDNN) one, against the CPU; a plan captured as a CUDA graph
// and replayed, against its eager run; with NCCL, one all-reduce of one rank. One line per check;
// exit 1 when any failed, 77 without a GPU.
#include "tests/gpu/op_check.h"
#ifdef EFFNET_NCCL
#include "train/comm.h"
#endif

static const op_case *find_case(const char *name) {
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    if (!strcmp(cases[i].name, name)) return &cases[i];
  EF_FATAL("no op case '%s'", name);
}

// conv (pointwise, cuDNN) -> bn + swish -> depthwise conv, planned with graph replay: the eager
// run, the recorded one and a replay give the same bits.
static void check_capture(ef_backend *gpu) {
  ef_store *s = ef_store_new();
  int pw = ef_store_add(s, "pw", true, true, 4, (int64_t[]){32, 1, 1, 16}, (ef_init){EF_INIT_NORMAL, 0.3f});
  int bn = ef_store_add(s, "bn.weight", true, false, 1, (int64_t[]){32}, (ef_init){EF_INIT_CONST, 1});
  ef_store_add(s, "bn.bias", true, false, 1, (int64_t[]){32}, (ef_init){EF_INIT_CONST, 0.1f});
  int dw = ef_store_add(s, "dw", true, true, 4, (int64_t[]){32, 3, 3, 1}, (ef_init){EF_INIT_NORMAL, 0.3f});
  CHECK(ef_store_bind(s, gpu) == EF_OK, "%s", ef_last_error());
  ef_store_initialize(s, 3);
  ef_graph *g = ef_graph_new(s, 1);
  ef_tensor *x = ef_input(g, "x", EF_F32, 4, (int64_t[]){4, 12, 12, 16});
  ef_tensor *y = ef_conv2d(g, x, ef_param(g, pw, 1, NULL), NULL, 1, 1, 1, EF_PAD_SYMMETRIC);
  y = ef_bn(g, y, ef_bn_stats(g, y), ef_param(g, bn, 2, NULL), 1e-3f, EF_ACT_SWISH, true);
  y = ef_conv2d(g, y, ef_param(g, dw, 1, NULL), NULL, 2, 1, 32, EF_PAD_SAME);
  ef_graph_keep(g, y);
  ef_graph_set_precision(g, EF_BF16, false);
  ef_plan *p;
  CHECK(ef_plan_new(&p, g, gpu, &(ef_plan_opts){.graph = true}) == EF_OK, "%s", ef_last_error());
  float xv[4 * 12 * 12 * 16];
  test_fill_uniform(xv, 4 * 12 * 12 * 16, 5, 0, -1, 1);
  ef_plan_set(p, x, xv);
  float *runs[3];
  for (int r = 0; r < 3; r++) {
    ef_plan_run(p, &(ef_run_ctx){.step = 1});
    runs[r] = read_f32(p, y);
  }
  int64_t n = ef_numel(y);
  CHECK(!memcmp(runs[0], runs[1], sizeof(float) * (size_t)n) && !memcmp(runs[0], runs[2], sizeof(float) * (size_t)n),
        "the recorded run or the replay differs from the eager run");
  CHECK(p->capture.graph != NULL, "nothing was recorded");
  for (int r = 0; r < 3; r++) free(runs[r]);
  ef_plan_free(p);
  ef_graph_free(g);
  ef_store_free(s);
}

#ifdef EFFNET_NCCL
// One rank's device all-reduce and a host one: the values stay as they are.
static void check_nccl(ef_backend *gpu) {
  char id[300];
  if (ef_nccl_unique_id(id, sizeof id) != EF_OK) {
    CHECK(false, "%s", ef_last_error());
    return;
  }
  setenv(EF_LAUNCH_RANK, "0", 1), setenv(EF_LAUNCH_WORLD, "1", 1), setenv(EF_LAUNCH_NCCL_ID, id, 1);
  ef_comm *comm;
  CHECK(ef_comm_new(&comm) == EF_OK, "%s", ef_last_error());
  if (ef_comm_nccl_new(&comm, gpu, 30) != EF_OK) {
    CHECK(false, "%s", ef_last_error());
    ef_comm_free(comm);
    return;
  }
  float h[1000], back[1000];
  for (int i = 0; i < 1000; i++) h[i] = (float)i * 0.5f;
  float *d = gpu->alloc(gpu, sizeof h);
  gpu->upload(gpu, d, h, sizeof h);
  comm->allreduce(comm, d, 1000, EF_COMM_F32, EF_COMM_AVG);
  double loss = 1.25;
  comm->allreduce(comm, &loss, 1, EF_COMM_F64, EF_COMM_SUM);
  comm->sync(comm);
  gpu->download(gpu, back, d, sizeof back);
  CHECK(!memcmp(back, h, sizeof h) && loss == 1.25, "one rank's all-reduces changed the values");
  gpu->free(gpu, d);
  ef_comm_free(comm);
}
#endif

// Runs one check and prints its line.
#define STEP_LINE(what, call)                                                                                          \
  do {                                                                                                                 \
    int before_ = test_failures;                                                                                       \
    call;                                                                                                              \
    printf("%-64s %s\n", what, test_failures == before_ ? "ok" : "FAILED");                                            \
    fflush(stdout);                                                                                                    \
  } while (0)

int main(void) {
  ef_backend *cpu, *gpu;
  test_gpu_backends(0, &cpu, &gpu);
  ef_backend *dw_cudnn = gpu_forced(EF_CUDA_DW_CUDNN), *dw_effnet = gpu_forced(EF_CUDA_DW_EFFNET);
  const op_case *dw = find_case("depthwise 3x3 s2 symmetric, batch 1"),
                *pw = find_case("pointwise 1x1 with bias, 7->9");
  for (ef_dtype dt = EF_F32; dt <= EF_F16; dt++) {
    run_case(dw, cpu, dw_cudnn, dt, "cudnn");
    run_case(dw, cpu, dw_effnet, dt, "effnet");
    run_case(pw, cpu, gpu, dt, "cudnn");
  }
  STEP_LINE("a bf16 plan recorded as a CUDA graph and replayed", check_capture(gpu));
#ifdef EFFNET_NCCL
  STEP_LINE("NCCL: one rank's device and host all-reduces", check_nccl(gpu));
#endif
  ef_backend_free(dw_cudnn);
  ef_backend_free(dw_effnet);
  ef_backend_free(gpu);
  ef_backend_free(cpu);
  return test_exit_code();
}
