// `effnet bench MODEL...`: times models on synthetic data on the CPU backend: inference (forward)
// or a training step (forward, backward, and an SGD-momentum update of every parameter), for
// each model and batch size asked. Reports the median and p99 step time, images/s, achieved
// GFLOP/s, the planned activation arena and the process's peak resident memory, as text or JSON
// lines. scripts/bench_vs_torch.sh runs it beside torchvision.
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/cpu/cpu.h"
#include "core/plan.h"
#include "tools/effnet.h"
#include "tools/model_args.h"
#include "train/optim.h"

static void bench_usage(FILE *f) {
  fprintf(f,
          "usage: effnet bench MODEL... [flags]     (MODEL: b0 ... b7, or all; or --phi F)\n"
          "       effnet bench --model b0[,b2...]|all [flags]\n"
          "\n"
          "Times inference or a training step (forward, backward, SGD update) on synthetic data on\n"
          "the CPU, for each model and batch size.\n"
          "\n"
          "  --mode MODE           infer or train  [train]\n"
          "  --batch N[,N...]      images per step; a list sweeps  [8]\n"
          "  --warmup N            untimed steps first  [2]\n"
          "  --iters N             timed steps  [10]\n"
          "  --threads N           CPU threads (0: one per core)  [0]\n"
          "  --precision P         f32 (the CPU backend's only one)  [f32]\n"
          "  --json                one JSON object per line instead of text (peak_rss_mib: the\n"
          "                        process's peak so far, over the configurations run before)\n"
          "  --profile             time per op kind over the timed steps\n");
  ef_model_args_usage(f);
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  bool training, json, profile;
  long warmup, iters, threads;
} bench_opts;

// Times one configuration; prints its line. Returns 0, or 1 after a message.
static int bench_one(const ef_effnet_config *cfg, long batch, const bench_opts *o) {
  ef_store *s = ef_store_new();
  ef_graph *g = ef_graph_new(s, 1);
  int64_t r = cfg->resolution, shape[4] = {batch, r, r, cfg->in_channels};
  ef_tensor *images = ef_input(g, "images", EF_F32, 4, shape), *labels = NULL;
  ef_layer_ctx ctx;
  ef_tensor *out = ef_effnet_build(cfg, g, images, o->training, NULL, &ctx);
  if (o->training) {
    labels = ef_input(g, "labels", EF_I32, 1, (int64_t[]){batch});
    out = ef_softmax_ce(g, out, labels, 0.1f);
    ef_graph_backward(g, out);
  }
  ef_graph_keep(g, out);
  ef_backend *be = ef_cpu_backend_new((int)o->threads);
  ef_plan *p = NULL;
  ef_optim optim = {0};
  int rc = 1;
  ef_optim_config oc = ef_optim_defaults(EF_OPT_SGD);
  if (!be || ef_store_bind(s, be) != EF_OK || ef_plan_new(&p, g, be, &(ef_plan_opts){.profile = o->profile}) != EF_OK ||
      (o->training && ef_optim_init(&optim, s, &oc) != EF_OK)) {
    fprintf(stderr, "effnet bench: %s\n", be ? ef_last_error() : "cannot create the CPU backend");
    goto out;
  }
  ef_store_initialize(s, 1);
  float *x = ef_xmalloc(sizeof(float) * (size_t)ef_numel(images));
  for (int64_t i = 0; i < ef_numel(images); i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  int32_t *y = ef_xmalloc(sizeof(int32_t) * (size_t)batch);
  for (long i = 0; i < batch; i++) y[i] = (int32_t)(i % cfg->num_classes);
  ef_plan_set(p, images, x);
  if (labels) ef_plan_set(p, labels, y);
  double *ms = ef_xmalloc(sizeof(double) * (size_t)o->iters);
  for (long i = 0; i < o->warmup + o->iters; i++) {
    double t0 = 1e3 * ef_seconds();
    if (o->training) ef_store_zero_grads(s);
    ef_plan_run(p, &(ef_run_ctx){.step = (uint32_t)i});
    if (o->training) ef_optim_step(&optim, s, 1e-4); // a small rate keeps the weights sane
    if (i >= o->warmup) ms[i - o->warmup] = 1e3 * ef_seconds() - t0;
  }
  qsort(ms, (size_t)o->iters, sizeof(double), cmp_double);
  double median = ms[o->iters / 2], p99 = ms[(long)((double)(o->iters - 1) * 0.99 + 0.5)];
  // Forward multiply-adds x 2 flops; a training step counts three passes (forward, and the two
  // products of each backward: data and weights).
  double gflops = 2.0 * (double)ctx.macs * (o->training ? 3 : 1) / (median * 1e6);
  double arena = (double)p->arena_bytes / 1048576.0, naive = (double)p->naive_bytes / 1048576.0;
  double params = (double)(s->numel[0] * (o->training ? 3 : 1) + s->numel[1]) * 4 / 1048576.0; // + grads and momentum
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  const char *what = o->training ? "train step" : "inference";
  if (o->json) {
    printf("{\"model\": \"%s\", \"resolution\": %lld, \"batch\": %ld, \"mode\": \"%s\", \"threads\": %d, \"median_ms\": %.3f, "
           "\"p99_ms\": %.3f, \"images_per_s\": %.2f, \"gflops\": %.2f, \"arena_mib\": %.1f, \"arena_naive_mib\": %.1f, "
           "\"params_mib\": %.1f, \"peak_rss_mib\": %.1f}\n",
           cfg->name, (long long)r, batch, o->training ? "train" : "infer", ef_cpu_threads(be), median, p99,
           (double)batch * 1e3 / median, gflops, arena, naive, params, (double)ru.ru_maxrss / 1024.0);
  } else {
    printf("effnet %s %lldx%lld batch %ld %s, %d threads: median %.1f ms, p99 %.1f ms, %.1f images/s, %.1f GFLOP/s\n", cfg->name,
           (long long)r, (long long)r, batch, what, ef_cpu_threads(be), median, p99, (double)batch * 1e3 / median, gflops);
    printf("  memory: activation arena %.1f MiB planned (%.1f MiB without reuse), parameters%s %.1f MiB, peak resident %.1f MiB\n",
           arena, naive, o->training ? " + gradients + momentum" : "", params, (double)ru.ru_maxrss / 1024.0);
  }
  if (o->profile) ef_plan_profile_print(p, stdout);
  fflush(stdout);
  free(x), free(y), free(ms);
  rc = 0;
out:
  ef_optim_free(&optim);
  ef_plan_free(p);
  ef_graph_free(g);
  ef_store_free(s);
  ef_backend_free(be);
  return rc;
}

int ef_cmd_bench(int argc, char **argv) {
  enum { MAX_MODELS = 16, MAX_BATCHES = 16 };
  ef_model_args m;
  const char *mode = "train", *names[MAX_MODELS], *batches = "8", *precision = "f32", *model_list = NULL;
  long warmup = 2, iters = 10, threads = 0;
  int profile = 0, json = 0;
  ef_flag flags[EF_MODEL_FLAGS + 9] = {
      {"--model", EF_FLAG_STR, &model_list},
      {"--profile", EF_FLAG_BOOL, &profile},     {"--json", EF_FLAG_BOOL, &json},
      {"--mode", EF_FLAG_STR, &mode},            {"--batch", EF_FLAG_STR, &batches},
      {"--warmup", EF_FLAG_LONG, &warmup, 0, 1e6}, {"--iters", EF_FLAG_LONG, &iters, 1, 1e6},
      {"--threads", EF_FLAG_LONG, &threads, 0, 4096}, {"--precision", EF_FLAG_STR, &precision},
  };
  ef_model_args_init(&m, flags + 9);
  int rc = ef_flags_parse("bench", argc, argv, flags, EF_MODEL_FLAGS + 9, names, MAX_MODELS, bench_usage);
  if (rc) return rc;
  bench_opts o = {.training = !strcmp(mode, "train"), .json = json, .profile = profile, .warmup = warmup, .iters = iters,
                  .threads = threads};
  if (!o.training && strcmp(mode, "infer")) {
    fprintf(stderr, "effnet bench: --mode must be infer or train, not '%s'\n", mode);
    return 2;
  }
  if (strcmp(precision, "f32")) {
    fprintf(stderr, "effnet bench: --precision %s: the CPU backend computes in f32 (bf16/f16 come with the CUDA backend)\n",
            precision);
    return 2;
  }
  long sizes[MAX_BATCHES];
  int n_sizes = 0;
  for (const char *p = batches; *p && n_sizes < MAX_BATCHES;) {
    char *end;
    long b = strtol(p, &end, 10);
    if (end == p || b < 1 || b > 1 << 16 || (*end && *end != ',')) {
      fprintf(stderr, "effnet bench: bad --batch '%s': give sizes like 8 or 8,32,64\n", batches);
      return 2;
    }
    sizes[n_sizes++] = b;
    p = *end ? end + 1 : end;
  }
  // The models: the names given, as arguments or --model's comma list (all = b0 ... b7), or the
  // one --phi describes.
  static const char *const all[] = {"b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"};
  const char *list[MAX_MODELS];
  char listed[256], *save = NULL;
  int n_models = 0;
  snprintf(listed, sizeof listed, "%s", model_list ? model_list : "");
  const char *given[2 * MAX_MODELS];
  int n_given = 0;
  for (char *w = strtok_r(listed, ",", &save); w && n_given < MAX_MODELS; w = strtok_r(NULL, ",", &save)) given[n_given++] = w;
  for (int i = 0; i < MAX_MODELS && names[i]; i++) given[n_given++] = names[i];
  for (int i = 0; i < n_given; i++) {
    if (!strcmp(given[i], "all"))
      for (int k = 0; k < 8 && n_models < MAX_MODELS; k++) list[n_models++] = all[k];
    else if (n_models < MAX_MODELS) list[n_models++] = given[i];
  }
  if (!n_models) list[n_models++] = NULL; // --phi, or the message asking for a model
  for (int i = 0; i < n_models && !rc; i++) {
    ef_effnet_config cfg;
    if ((rc = ef_model_args_config("bench", list[i], &m, &cfg)) != 0) break;
    for (int k = 0; k < n_sizes && !rc; k++) rc = bench_one(&cfg, sizes[k], &o);
  }
  return rc;
}
