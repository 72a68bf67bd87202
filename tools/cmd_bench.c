// `effnet bench MODEL...`: times models on the CPU or a GPU: inference (forward) or a training step
// (forward, backward, and an SGD-momentum update of every parameter), for each model and batch
// size asked, on synthetic data or through the real loader (--data). Reports the median and p99
// step time, images/s, achieved GFLOP/s, the planned memory, the process's peak resident memory
// (on a GPU: the GPU memory in use at the peak) and the largest batch whose plan fits the memory
// budget; --profile splits the step by op kind, --profile-nodes N also lists the N slowest nodes.
// Several configurations end with a table. scripts/bench_vs_torch.sh runs it beside torchvision.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "core/plan.h"
#include "cuda/cuda.h"
#include "data/loader.h"
#include "tools/effnet.h"
#include "tools/shared_flags.h"
#include "train/bench.h"

typedef struct {
  const char *mode, *batches, *models, *data, *weights;
  long warmup, iters, loader_threads, memory_mib, profile_nodes;
  bool profile, json, eager;
  ef_device_spec dev;
  ef_effnet_spec spec;
} bench_flags_t;

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(bench_flags_t, kind, field)
static const ef_flag bench_flags[] = {
    {ROW(EF_FLAG_STR, "--model", models), 0, 0, NULL, "LIST",
     "b0[,b2...], all (b0 ... b7) or lite (lite0 ... lite4), as the\narguments", false},
    {ROW(EF_FLAG_STR, "--weights", weights), 0, 0, NULL, "FILE",
     "the model of a weights file (an import or a checkpoint), with its weights", false},
    {ROW(EF_FLAG_STR, "--mode", mode), 0, 0, "infer|train", "MODE", "infer, or train (a whole training step)", false},
    {ROW(EF_FLAG_STR, "--batch", batches), 0, 0, NULL, "N[,N...]|max",
     "images per step; a list sweeps; max: the largest batch whose\nplanned memory fits --memory-mib", false},
    {ROW(EF_FLAG_LONG, "--warmup", warmup), 0, 1e6, NULL, "N", "untimed steps first", false},
    {ROW(EF_FLAG_LONG, "--iters", iters), 1, 1e6, NULL, "N", "timed steps", false},
    {ROW(EF_FLAG_BOOL, "--eager", eager), 0, 0, NULL, NULL,
     "CUDA: run each step op by op instead of replaying it as a captured\nCUDA graph (--profile always runs eagerly)",
     false},
    {ROW(EF_FLAG_LONG, "--memory-mib", memory_mib), 0, 1e9, NULL, "N",
     "memory budget for max batch (0: what the system, or the GPU, has free)", false},
    {ROW(EF_FLAG_STR, "--data", data), 0, 0, NULL, "PATH",
     "end to end: batches from this dataset through the loader (the train\ntransform for --mode train, the eval "
     "transform for infer), at\nthe model's resolution; the step time includes waiting for it",
     false},
    {ROW(EF_FLAG_LONG, "--loader-threads", loader_threads), 0, 256, NULL, "N", "loader threads with --data", false},
    {ROW(EF_FLAG_BOOL, "--json", json), 0, 0, NULL, NULL,
     "one JSON object per line instead of text (peak_rss_mib: the\nprocess's peak so far, over the configurations run "
     "before;\npeak_device_mib: the GPU memory in use at effnet's peak, likewise)",
     false},
    {ROW(EF_FLAG_BOOL, "--profile", profile), 0, 0, NULL, NULL, "time by op kind (and by op) over the timed steps",
     false},
    {ROW(EF_FLAG_LONG, "--profile-nodes", profile_nodes), 0, 1e6, NULL, "N",
     "with --profile (which it implies): also the N slowest nodes, with\ntheir shapes and implementations", false},
};
#undef ROW

static const char *const usage_head =
    "usage: effnet bench MODEL... [flags]     (MODEL: b0 ... b8, l2, lite0 ... lite4, all or lite; or --phi F)\n"
    "       effnet bench --model b0[,b2...]|all [flags]\n"
    "       effnet bench --weights FILE [flags]\n"
    "\n"
    "Times inference or a training step (forward, backward, SGD update) on the CPU or a GPU,\n"
    "for each model and batch size; synthetic images unless --data gives a dataset.\n"
    "\n";

typedef struct {
  bool training, json, profile, eager;
  int profile_nodes;
  const ef_device *dev;
  long warmup, iters, loader_threads;
  double budget;          // bytes the planned memory may use (max batch)
  const ef_dataset *data; // --data, or NULL for synthetic images
  const char *weights;    // --weights: loaded into the store
} bench_opts;

// One configuration's figures, for the closing table.
typedef struct {
  char model[16];
  long resolution, batch, max_batch;
  double params, macs, images_s, median_ms, planned_mib, rss_mib; // rss_mib: the GPU's peak on CUDA
} bench_row;

// What the system can give (MemAvailable), in bytes; 0 when unknown.
static double available_bytes(void) {
  FILE *f = fopen("/proc/meminfo", "r");
  if (!f) return 0;
  char line[256];
  double kib = 0;
  while (fgets(line, sizeof line, f))
    if (sscanf(line, "MemAvailable: %lf kB", &kib) == 1) break;
  fclose(f);
  return kib * 1024;
}

// Times one configuration; prints its line and fills row. Returns 0, or 1 after a message.
static int bench_one(const ef_model_desc *d, long batch, long fits, const bench_opts *o, bench_row *row) {
  ef_bench_config c = {.dev = o->dev,
                       .training = o->training,
                       .profile = o->profile,
                       .profile_nodes = o->profile_nodes,
                       .eager = o->eager,
                       .warmup = o->warmup,
                       .iters = o->iters,
                       .data = o->data,
                       .loader_threads = o->loader_threads,
                       .weights = o->weights};
  ef_bench_result r;
  bool graph = o->dev->cuda && !o->eager && !o->profile;
  char *by_op = NULL; // the profile by op, printed after the figures
  size_t by_op_len = 0;
  FILE *ops = o->profile && !o->json ? open_memstream(&by_op, &by_op_len) : NULL;
  ef_status st = ef_bench_run(d, batch, &c, &r, ops);
  if (ops) fclose(ops);
  if (st != EF_OK) {
    free(by_op);
    return ef_report("bench", 1);
  }
  char where[512];
  ef_device_describe(o->dev, where, sizeof where);
  *row = (bench_row){.resolution = d->eval.size,
                     .batch = batch,
                     .max_batch = fits,
                     .params = (double)r.params,
                     .macs = (double)r.macs,
                     .images_s = r.images_s,
                     .median_ms = r.median_ms,
                     .planned_mib = r.arena_mib + r.store_mib,
                     .rss_mib = r.peak_mib};
  snprintf(row->model, sizeof row->model, "%s", strcmp(d->arch, "tiny") ? d->cfg.name : "tiny");
  if (o->json) {
    printf("{\"model\": \"%s\", \"resolution\": %d, \"batch\": %ld, \"mode\": \"%s\", \"data\": \"%s\", "
           "\"device\": \"%s\", \"precision\": \"%s\", \"graph\": %s, \"median_ms\": %.3f, \"p99_ms\": %.3f, "
           "\"images_per_s\": %.2f, \"gflops\": %.2f, \"params\": %.0f, \"macs_per_image\": %.0f, \"arena_mib\": %.1f, "
           "\"arena_naive_mib\": %.1f, \"params_mib\": %.1f, \"peak_rss_mib\": %.1f, \"peak_device_mib\": %.1f, "
           "\"max_batch\": %ld",
           row->model, d->eval.size, batch, o->training ? "train" : "infer", o->data ? "loader" : "synthetic", where,
           o->dev->precision, graph ? "true" : "false", r.median_ms, r.p99_ms, r.images_s, r.gflops, row->params,
           row->macs, r.arena_mib, r.naive_mib, r.store_mib, r.rss_mib, o->dev->cuda ? r.peak_mib : 0.0, fits);
    if (o->profile) printf(", \"profile\": "), ef_kind_profile_json(&r.kinds, stdout);
    printf("}\n");
  } else {
    printf("effnet %s %dx%d batch %ld %s%s, %s%s: median %.1f ms, p99 %.1f ms, %.1f images/s, %.1f GFLOP/s\n",
           row->model, d->eval.size, d->eval.size, batch, o->training ? "train step" : "inference",
           o->data ? " (data through the loader)" : "", where, graph ? ", CUDA graph" : "", r.median_ms, r.p99_ms,
           r.images_s, r.gflops);
    printf("  memory: activation arena %.1f MiB planned (%.1f MiB without reuse), parameters%s %.1f MiB, peak %s %.1f "
           "MiB; largest batch that fits %.0f MiB: %ld\n",
           r.arena_mib, r.naive_mib, o->training ? " + gradients + momentum" : "", r.store_mib,
           o->dev->cuda ? "GPU memory in use" : "resident", r.peak_mib, o->budget / 1048576.0, fits);
    if (o->profile) ef_kind_profile_print(&r.kinds, stdout), fputs(by_op ? by_op : "", stdout);
  }
  free(by_op);
  fflush(stdout);
  return 0;
}

// The table after several configurations: how cost grows with the model and the batch.
static void table_print(const bench_row *rows, int n, const bench_opts *o) {
  printf("\n%-7s %5s %6s %11s %10s %10s %9s %12s %9s %9s\n", "model", "res", "batch", "params", "MACs/img", "images/s",
         "ms/step", "planned MiB", "peak MiB", "max batch");
  for (int i = 0; i < n; i++) {
    const bench_row *r = &rows[i];
    printf("%-7s %5ld %6ld %11.0f %9.3fB %10.1f %9.1f %12.1f %9.1f %9ld\n", r->model, r->resolution, r->batch,
           r->params, r->macs / 1e9, r->images_s, r->median_ms, r->planned_mib, r->rss_mib, r->max_batch);
  }
  printf("(%s; max batch: the largest whose planned memory fits %.0f MiB)\n",
         o->training ? "training step" : "inference", o->budget / 1048576.0);
}

// "8,32,max" into sizes (0 stands for max); returns the count, or -1 after a message.
static int parse_batches(const char *text, long *sizes, int cap) {
  char copy[256], *save = NULL;
  int n = 0;
  snprintf(copy, sizeof copy, "%s", text);
  for (char *w = strtok_r(copy, ",", &save); w; w = strtok_r(NULL, ",", &save)) {
    char *end;
    long b = strcmp(w, "max") ? strtol(w, &end, 10) : 0;
    if (n == cap || (b == 0 && strcmp(w, "max")) || (b != 0 && (*end || b < 1 || b > 1 << 16))) {
      fprintf(stderr, "effnet bench: bad --batch '%s': give up to %d sizes like 8 or 8,32,64, or max\n", text, cap);
      return -1;
    }
    sizes[n++] = b;
  }
  if (!n) fprintf(stderr, "effnet bench: --batch needs a size\n");
  return n ? n : -1;
}

int ef_cmd_bench(int argc, char **argv) {
  enum { MAX_MODELS = 16, MAX_BATCHES = 16 };
  bench_flags_t fl = {.mode = "train",
                      .batches = "8",
                      .warmup = 2,
                      .iters = 10,
                      .loader_threads = 1,
                      .dev = EF_DEVICE_SPEC_DEFAULT,
                      .spec = ef_effnet_spec_none()};
  ef_flags f;
  ef_flags_init(&f, "bench", usage_head, NULL);
  ef_flags_add(&f, bench_flags, (int)(sizeof bench_flags / sizeof bench_flags[0]), &fl);
  ef_flags_add(&f, ef_device_flags, EF_DEVICE_FLAGS, &fl.dev);
  ef_flags_add(&f, ef_model_flags, EF_MODEL_FLAGS, &fl.spec);
  const char *names[MAX_MODELS];
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, names, MAX_MODELS);
  if (rc) return rc;
  bench_opts o = {.training = !strcmp(fl.mode, "train"),
                  .json = fl.json,
                  .profile = fl.profile || fl.profile_nodes > 0,
                  .profile_nodes = (int)fl.profile_nodes,
                  .eager = fl.eager,
                  .warmup = fl.warmup,
                  .iters = fl.iters,
                  .loader_threads = fl.loader_threads,
                  .weights = fl.weights};
  const char *batches = fl.batches, *model_list = fl.models, *data = fl.data;
  long memory_mib = fl.memory_mib;
  long sizes[MAX_BATCHES];
  int n_sizes = parse_batches(batches, sizes, MAX_BATCHES);
  if (n_sizes < 0) return 2;
  ef_device dev;
  if ((rc = ef_device_args_open(&dev, "bench", &fl.dev)) != 0) return rc;
  o.dev = &dev;
  // On a GPU, less 1.5 GiB for the libraries, cuDNN's workspace (512 MiB at most) and the largest
  // convolution's converted or padded operands in the scratch.
  o.budget = memory_mib ? (double)memory_mib * 1048576.0
             : dev.cuda ? (double)ef_cuda_free_bytes(dev.be) - 1610612736.0
                        : available_bytes();
  if (o.budget <= 0) {
    fprintf(stderr, "effnet bench: cannot tell how much memory is free: give --memory-mib\n");
    ef_device_close(&dev);
    return 2;
  }
  // The models: the names given, as arguments or --model's comma list (all = b0 ... b7, lite = lite0
  // ... lite4), or the one --phi describes.
  static const char *const groups[][9] = {{"all", "b0", "b1", "b2", "b3", "b4", "b5", "b6", "b7"},
                                          {"lite", "lite0", "lite1", "lite2", "lite3", "lite4"}};
  const char *list[MAX_MODELS];
  char listed[256], *save = NULL;
  int n_models = 0;
  snprintf(listed, sizeof listed, "%s", model_list ? model_list : "");
  const char *given[2 * MAX_MODELS];
  int n_given = 0;
  for (char *w = strtok_r(listed, ",", &save); w && n_given < MAX_MODELS; w = strtok_r(NULL, ",", &save))
    given[n_given++] = w;
  for (int i = 0; i < MAX_MODELS && names[i]; i++) given[n_given++] = names[i];
  for (int i = 0; i < n_given; i++) {
    const char *const *group = NULL;
    for (size_t k = 0; k < sizeof groups / sizeof groups[0]; k++)
      if (!strcmp(given[i], groups[k][0])) group = groups[k] + 1;
    if (!group && n_models < MAX_MODELS) list[n_models++] = given[i];
    for (int k = 0; group && k < 8 && group[k] && n_models < MAX_MODELS; k++) list[n_models++] = group[k];
  }
  if (!n_models) list[n_models++] = NULL; // --phi or --weights, or the message asking for a model
  ef_dataset ds;
  if (data && ef_dataset_open(data, 1, &ds) != EF_OK) {
    fprintf(stderr, "effnet bench: %s\n", ef_last_error());
    ef_device_close(&dev);
    return 1;
  }
  o.data = data ? &ds : NULL;
  bench_row rows[MAX_MODELS * MAX_BATCHES];
  int n_rows = 0;
  ef_model_desc *d = ef_xmalloc(sizeof *d);
  for (int i = 0; i < n_models && !rc; i++) {
    ef_weights_info *w = ef_xmalloc(sizeof *w);
    ef_effnet_config cfg;
    fl.spec.name = list[i];
    if (o.weights && (list[i] || ef_effnet_spec_shapes(&fl.spec))) {
      fprintf(stderr, "effnet bench: --weights gives the model: drop the model names and --phi, --width, ...\n");
      rc = 2;
    } else if (o.weights && ef_weights_info_read(o.weights, w) != EF_OK) {
      rc = ef_report("bench", 1);
    } else if (o.weights) {
      *d = w->desc;
    } else if ((rc = ef_model_args_config("bench", &fl.spec, &cfg)) == 0) {
      ef_model_desc_effnet(d, &cfg);
    }
    free(w);
    long fits =
        rc ? 0 : (long)ef_model_max_batch(d, o.training, dev.activations, dev.be->eval_fusions, o.budget, dev.cuda);
    for (int k = 0; k < n_sizes && !rc; k++) {
      long batch = sizes[k] ? sizes[k] : fits;
      if (batch < 1) {
        fprintf(stderr, "effnet bench: %s: not even one image fits %.0f MiB\n", d->cfg.name, o.budget / 1048576.0);
        rc = 1;
      } else {
        rc = bench_one(d, batch, fits, &o, &rows[n_rows++]);
      }
    }
  }
  free(d);
  if (!rc && !o.json && n_rows > 1) table_print(rows, n_rows, &o);
  if (data) ef_dataset_free(&ds);
  ef_device_close(&dev);
  return rc;
}
