// `effnet bench MODEL`: times a model on synthetic data on the CPU backend: inference (forward)
// or training (forward + backward with gradients into the store; the optimizer is not part of it
// yet). Reports the median and p99 step time, images/s, the planned activation arena and the
// process's peak resident memory. scripts/bench_vs_torch.sh runs it beside torchvision.
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/cpu/cpu.h"
#include "core/plan.h"
#include "tools/effnet.h"
#include "tools/model_args.h"

static void bench_usage(FILE *f) {
  fprintf(f,
          "usage: effnet bench MODEL [flags]     (MODEL: b0 ... b7; or --phi F)\n"
          "\n"
          "Times inference or a training step (forward + backward) on synthetic data on the CPU.\n"
          "\n"
          "  --mode MODE           infer or train  [train]\n"
          "  --batch N             images per step  [8]\n"
          "  --warmup N            untimed steps first  [2]\n"
          "  --iters N             timed steps  [10]\n"
          "  --threads N           CPU threads (0: one per core)  [0]\n"
          "  --profile             time per op kind over the timed steps\n");
  ef_model_args_usage(f);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int ef_cmd_bench(int argc, char **argv) {
  ef_model_args m;
  const char *mode = "train", *name;
  long batch = 8, warmup = 2, iters = 10, threads = 0;
  int profile = 0;
  ef_flag flags[EF_MODEL_FLAGS + 6] = {
      {"--profile", EF_FLAG_BOOL, &profile},
      {"--mode", EF_FLAG_STR, &mode},          {"--batch", EF_FLAG_LONG, &batch, 1, 1 << 16},
      {"--warmup", EF_FLAG_LONG, &warmup, 0, 1e6}, {"--iters", EF_FLAG_LONG, &iters, 1, 1e6},
      {"--threads", EF_FLAG_LONG, &threads, 0, 4096},
  };
  ef_model_args_init(&m, flags + 6);
  ef_effnet_config cfg;
  int rc = ef_flags_parse("bench", argc, argv, flags, EF_MODEL_FLAGS + 6, &name, 1, bench_usage);
  if (rc || (rc = ef_model_args_config("bench", name, &m, &cfg))) return rc;
  bool training = !strcmp(mode, "train");
  if (!training && strcmp(mode, "infer")) {
    fprintf(stderr, "effnet bench: --mode must be infer or train, not '%s'\n", mode);
    return 2;
  }
  ef_store *s = ef_store_new();
  ef_graph *g = ef_graph_new(s, 1);
  int64_t r = cfg.resolution, shape[4] = {batch, r, r, cfg.in_channels};
  ef_tensor *images = ef_input(g, "images", EF_F32, 4, shape), *labels = NULL;
  ef_tensor *out = ef_effnet_build(&cfg, g, images, training, NULL, NULL);
  if (training) {
    labels = ef_input(g, "labels", EF_I32, 1, (int64_t[]){batch});
    out = ef_softmax_ce(g, out, labels, 0.1f);
    ef_graph_backward(g, out);
  }
  ef_graph_keep(g, out);
  ef_backend *be = ef_cpu_backend_new((int)threads);
  ef_plan *p = NULL;
  rc = 1;
  if (!be || ef_store_bind(s, be) != EF_OK || ef_plan_new(&p, g, be, &(ef_plan_opts){.profile = profile}) != EF_OK) {
    fprintf(stderr, "effnet bench: %s\n", ef_last_error());
    goto out;
  }
  ef_store_initialize(s, 1);
  float *x = ef_xmalloc(sizeof(float) * (size_t)ef_numel(images));
  for (int64_t i = 0; i < ef_numel(images); i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  int32_t *y = ef_xmalloc(sizeof(int32_t) * (size_t)batch);
  for (long i = 0; i < batch; i++) y[i] = (int32_t)(i % cfg.num_classes);
  ef_plan_set(p, images, x);
  if (labels) ef_plan_set(p, labels, y);
  double *ms = ef_xmalloc(sizeof(double) * (size_t)iters);
  for (long i = 0; i < warmup + iters; i++) {
    if (training) ef_store_zero_grads(s);
    double t0 = 1e3 * ef_seconds();
    ef_plan_run(p, &(ef_run_ctx){.step = (uint32_t)i});
    if (i >= warmup) ms[i - warmup] = 1e3 * ef_seconds() - t0;
  }
  qsort(ms, (size_t)iters, sizeof(double), cmp_double);
  double median = ms[iters / 2], p99 = ms[(long)((double)(iters - 1) * 0.99 + 0.5)];
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  printf("effnet %s %ldx%ld batch %ld %s, %d threads: median %.1f ms, p99 %.1f ms, %.1f images/s\n", cfg.name, (long)r, (long)r,
         batch, training ? "forward+backward" : "inference", ef_cpu_threads(be), median, p99, (double)batch * 1e3 / median);
  printf("  memory: activation arena %.1f MiB planned (%.1f MiB without reuse), parameters %.1f MiB, peak resident %.1f MiB\n",
         (double)p->arena_bytes / 1048576.0, (double)p->naive_bytes / 1048576.0,
         (double)(s->numel[0] * (training ? 2 : 1) + s->numel[1]) * 4 / 1048576.0, (double)ru.ru_maxrss / 1024.0);
  if (profile) ef_plan_profile_print(p, stdout);
  free(x), free(y), free(ms);
  rc = 0;
out:
  ef_plan_free(p);
  ef_graph_free(g);
  ef_store_free(s);
  ef_backend_free(be);
  return rc;
}
