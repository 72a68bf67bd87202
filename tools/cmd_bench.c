// `effnet bench MODEL...`: times models on the CPU or a GPU: inference (forward) or a training step
// (forward, backward, and an SGD-momentum update of every parameter), for each model and batch
// size asked, on synthetic data or through the real loader (--data). Reports the median and p99
// step time, images/s, achieved GFLOP/s, the planned memory, the process's peak resident memory
// (on a GPU: the GPU memory in use at the peak) and the largest batch whose plan fits the memory
// budget; --profile splits the step by op kind.
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
#include "train/step.h"

typedef struct {
  const char *mode, *batches, *models, *data, *weights;
  long warmup, iters, loader_threads, memory_mib;
  bool profile, json, eager;
  ef_device_spec dev;
  ef_effnet_spec spec;
} bench_flags_t;

#define ROW(kind, name, field) name, kind, offsetof(bench_flags_t, field)
static const ef_flag bench_flags[] = {
    {ROW(EF_FLAG_STR, "--model", models), NULL, 0, 0, NULL, "LIST", "b0[,b2...] or all, as the arguments", false},
    {ROW(EF_FLAG_STR, "--weights", weights), NULL, 0, 0, NULL, "FILE",
     "the model of a weights file (an import or a checkpoint), with its weights", false},
    {ROW(EF_FLAG_STR, "--mode", mode), "train", 0, 0, "infer|train", "MODE", "infer, or train (a whole training step)", false},
    {ROW(EF_FLAG_STR, "--batch", batches), "8", 0, 0, NULL, "N[,N...]|max",
     "images per step; a list sweeps; max: the largest batch whose\nplanned memory fits --memory-mib", false},
    {ROW(EF_FLAG_LONG, "--warmup", warmup), "2", 0, 1e6, NULL, "N", "untimed steps first", false},
    {ROW(EF_FLAG_LONG, "--iters", iters), "10", 1, 1e6, NULL, "N", "timed steps", false},
    {ROW(EF_FLAG_BOOL, "--eager", eager), NULL, 0, 0, NULL, NULL,
     "CUDA: run each step op by op instead of replaying it as a captured\nCUDA graph (--profile always runs eagerly)",
     false},
    {ROW(EF_FLAG_LONG, "--memory-mib", memory_mib), "0", 0, 1e9, NULL, "N",
     "memory budget for max batch (0: what the system, or the GPU, has free)", false},
    {ROW(EF_FLAG_STR, "--data", data), NULL, 0, 0, NULL, "PATH",
     "end to end: batches from this dataset through the loader (the train\ntransform for --mode train, the eval "
     "transform for infer), at\nthe model's resolution; the step time includes waiting for it", false},
    {ROW(EF_FLAG_LONG, "--loader-threads", loader_threads), "1", 0, 256, NULL, "N", "loader threads with --data", false},
    {ROW(EF_FLAG_BOOL, "--json", json), NULL, 0, 0, NULL, NULL,
     "one JSON object per line instead of text (peak_rss_mib: the\nprocess's peak so far, over the configurations run "
     "before;\npeak_device_mib: the GPU memory in use at effnet's peak, likewise)", false},
    {ROW(EF_FLAG_BOOL, "--profile", profile), NULL, 0, 0, NULL, NULL, "time by op kind (and by op) over the timed steps",
     false},
};
#undef ROW

static const char *const usage_head =
    "usage: effnet bench MODEL... [flags]     (MODEL: b0 ... b7, or all; or --phi F)\n"
    "       effnet bench --model b0[,b2...]|all [flags]\n"
    "       effnet bench --weights FILE [flags]\n"
    "\n"
    "Times inference or a training step (forward, backward, SGD update) on the CPU or a GPU,\n"
    "for each model and batch size; synthetic images unless --data gives a dataset.\n"
    "\n";

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

typedef struct {
  bool training, json, profile, eager;
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

// ---- profile by op kind (ef_node_kind) --------------------------------------------------------
typedef struct {
  int nodes[EF_KIND_COUNT];
  double ms[EF_KIND_COUNT], macs[EF_KIND_COUNT], bytes[EF_KIND_COUNT], total_ms;
} kind_profile;

// Sums the plan's node times per kind (per step), with the optimizer's own time and traffic
// (zeroing the gradients, then reading parameters, gradients and slots and writing parameters
// and slots) and the time spent waiting for the loader's batches.
static void profile_by_kind(const ef_plan *p, double optim_ms, double optim_bytes, double data_ms, kind_profile *k) {
  memset(k, 0, sizeof *k);
  int runs = p->runs ? p->runs : 1;
  for (int i = 0; i < p->n; i++) {
    const ef_tensor *t = p->sched[i];
    if (t->op == EF_OP_LEAF) continue;
    ef_kind kind = ef_node_kind(t);
    k->nodes[kind]++;
    k->ms[kind] += p->ms[i] / runs;
    k->macs[kind] += (double)ef_node_macs(t);
    k->bytes[kind] += (double)ef_node_bytes(t);
  }
  k->ms[EF_KIND_OPTIMIZER] = optim_ms, k->bytes[EF_KIND_OPTIMIZER] = optim_bytes, k->ms[EF_KIND_DATA] = data_ms;
  for (int i = 0; i < EF_KIND_COUNT; i++) k->total_ms += k->ms[i];
}

static void profile_print(const kind_profile *k, FILE *f) {
  fprintf(f, "  by kind (GB/s: each operand read once and each result written once)\n");
  fprintf(f, "  %-16s %6s %9s %6s %9s %8s\n", "kind", "nodes", "ms/step", "%", "GFLOP/s", "GB/s");
  for (int i = 0; i < EF_KIND_COUNT; i++) {
    if (k->ms[i] <= 0) continue;
    char gflops[16] = "-";
    if (k->macs[i] > 0) snprintf(gflops, sizeof gflops, "%.1f", 2 * k->macs[i] / (k->ms[i] * 1e6));
    char nodes[16] = "-", gbs[16] = "-";
    if (k->nodes[i]) snprintf(nodes, sizeof nodes, "%d", k->nodes[i]);
    if (k->bytes[i] > 0) snprintf(gbs, sizeof gbs, "%.1f", k->bytes[i] / (k->ms[i] * 1e6));
    fprintf(f, "  %-16s %6s %9.2f %6.1f %9s %8s\n", ef_kind_name(i), nodes, k->ms[i], 100 * k->ms[i] / k->total_ms, gflops, gbs);
  }
  fprintf(f, "  %-16s %6s %9.2f\n", "total", "", k->total_ms);
}

static void profile_json(const kind_profile *k, FILE *f) {
  fprintf(f, ", \"profile\": {");
  for (int i = 0, first = 1; i < EF_KIND_COUNT; i++) {
    if (k->ms[i] <= 0) continue;
    fprintf(f, "%s\"%s\": {\"nodes\": %d, \"ms\": %.3f, \"percent\": %.2f, \"gflops\": %.2f, \"gbytes_per_s\": %.2f}",
            first ? "" : ", ", ef_kind_name(i), k->nodes[i], k->ms[i], 100 * k->ms[i] / k->total_ms,
            2 * k->macs[i] / (k->ms[i] * 1e6), k->bytes[i] / (k->ms[i] * 1e6));
    first = 0;
  }
  fprintf(f, "}");
}

// ---- graphs, memory and the largest batch -------------------------------------------------------

// Bytes of the parameters (training: + gradients + SGD momentum) and state arenas.
static double store_bytes(const ef_store *s, bool training) {
  return (double)(s->numel[0] * (training ? 3 : 1) + s->numel[1]) * 4;
}

// The planned memory of a batch: the activation arena plus the store's arenas; with `largest`,
// also the most elements any tensor holds.
static double planned_bytes(const ef_model_desc *d, long batch, bool training, ef_dtype activations, double *largest) {
  ef_store *s = ef_store_new();
  ef_model_graph m;
  ef_model_graph_new(&m, s, d, &(ef_graph_opts){.batch = batch, .training = training, .smoothing = 0.1f, .seed = 1,
                                                .activations = activations});
  size_t arena, naive;
  ef_plan_measure(m.g, &arena, &naive);
  double bytes = (double)arena + store_bytes(s, training);
  for (int i = 0; largest && i < m.g->n; i++) *largest = fmax(*largest, (double)ef_numel(m.g->nodes[i]));
  ef_model_graph_free(&m);
  ef_store_free(s);
  return bytes;
}

// The largest batch whose planned memory fits `budget` (0 when not even one image fits): the
// arena grows linearly with the batch, so two plans give the estimate and more plans confirm it.
// On a GPU also no tensor above 2^31 elements (cuDNN's convolution descriptors take int sizes).
static long max_batch(const ef_model_desc *d, bool training, ef_dtype activations, double budget, bool gpu) {
  double largest = 0, one = planned_bytes(d, 1, training, activations, &largest);
  double per_image = planned_bytes(d, 2, training, activations, NULL) - one;
  if (one > budget) return 0;
  long b = per_image > 0 ? 1 + (long)((budget - one) / per_image) : 1 << 16;
  if (b > 1 << 16) b = 1 << 16;
  if (gpu) b = (long)fmin((double)b, floor(2147483647.0 / largest));
  while (b > 1 && planned_bytes(d, b, training, activations, NULL) > budget) b--;
  return b;
}

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

// ---- one configuration ------------------------------------------------------------------------
static void synthetic_data(float *x, int64_t n, int32_t *y, long batch, int classes) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (long i = 0; i < batch; i++) y[i] = (int32_t)(i % classes);
}

// The next batch of the loader, starting a new epoch when one ends.
static ef_status loader_next(ef_loader *l, int64_t *epoch, const ef_batch **batch) {
  EF_TRY(ef_loader_next(l, batch));
  if (*batch) return EF_OK;
  EF_TRY(ef_loader_start(l, ++*epoch, 0));
  EF_TRY(ef_loader_next(l, batch));
  return *batch ? EF_OK : EF_ERROR(EF_ERR_INVALID, "the dataset gives no full batch");
}

// Times one configuration; prints its line and fills row. Returns 0, or 1 after a message. A
// training step is the trainer's (train/step.h): SGD with momentum at a small rate, which keeps
// the weights sane.
static int bench_one(const ef_model_desc *d, long batch, long fits, const bench_opts *o, bench_row *row) {
  const ef_effnet_config *cfg = &d->cfg;
  ef_backend *be = o->dev->be;
  bool device = o->dev->cuda;
  ef_store *store = ef_store_new();
  ef_model_graph m;
  ef_model_graph_new(&m, store, d, &(ef_graph_opts){.batch = batch, .training = o->training, .smoothing = 0.1f,
                                                    .seed = 1, .activations = o->dev->activations});
  ef_step step = {0};
  ef_loader *loader = NULL;
  float *x = NULL;
  int32_t *y = NULL;
  double *ms = NULL, optim_ms = 0, data_ms = 0;
  int64_t epoch = 0;
  int rc = 1;
  ef_status st = EF_OK;
  if (o->data && o->data->num_classes > d->num_classes) {
    fprintf(stderr, "effnet bench: %s has %d classes but the model %d: give --classes %d\n", o->data->source,
            o->data->num_classes, d->num_classes, o->data->num_classes);
    goto out;
  }
  if (o->data) {
    ef_loader_config lc = {.data = o->data, .transform = ef_transform_defaults(o->training, d->eval.size, d->in_channels),
                           .batch = (int)batch, .shuffle = o->training, .drop_last = true, .as_float = true, .seed = 1,
                           .threads = (int)o->loader_threads};
    st = ef_loader_new(&loader, &lc);
  }
  // Weights before the plan (cuDNN times its algorithms on them); on a GPU, inference replays the
  // plan as a CUDA graph, and a training step is captured whole by the step.
  ef_plan_opts po = {.profile = o->profile, .graph = device && !o->training && !o->eager};
  ef_step_config sc = {.optim = ef_optim_defaults(EF_OPT_SGD), .eager = o->eager || o->profile};
  if (st == EF_OK) st = ef_store_bind(store, be);
  if (st == EF_OK) ef_store_initialize(store, 1);
  if (st == EF_OK && o->weights) {
    ef_weights_info w;
    st = ef_weights_info_read(o->weights, &w);
    if (st == EF_OK) st = ef_model_load_weights(o->weights, &w, false, NULL, store);
  }
  if (st == EF_OK) st = ef_model_graph_plan(&m, be, &po);
  if (st == EF_OK && o->training) st = ef_step_init(&step, &m, &sc);
  if (st != EF_OK) {
    fprintf(stderr, "effnet bench: %s\n", ef_last_error());
    goto out;
  }
  ef_plan *p = m.plan;
  if (!o->data) {
    x = ef_xmalloc(sizeof(float) * (size_t)ef_numel(m.images));
    y = ef_xmalloc(sizeof(int32_t) * (size_t)batch);
    synthetic_data(x, ef_numel(m.images), y, batch, d->num_classes);
  }
  ms = ef_xmalloc(sizeof(double) * (size_t)o->iters);
  for (long i = 0; i < o->warmup + o->iters; i++) {
    if (i == o->warmup) ef_plan_profile_reset(p);
    double t0 = 1e3 * ef_seconds();
    const ef_batch *b = NULL;
    if (loader && (st = loader_next(loader, &epoch, &b)) != EF_OK) {
      fprintf(stderr, "effnet bench: %s\n", ef_last_error());
      goto out;
    }
    const float *images = b ? b->images : x;
    const int32_t *labels = b ? b->labels : y;
    double t1 = 1e3 * ef_seconds();
    if (o->training) {
      ef_step_result r;
      ef_step_run(&step, images, labels, 1e-4, i, &r);
    } else {
      ef_plan_set(p, m.images, images);
      ef_plan_run(p, &(ef_run_ctx){.step = (uint32_t)i});
      if (device) be->synchronize(be);
    }
    double t2 = 1e3 * ef_seconds();
    if (i >= o->warmup) ms[i - o->warmup] = t2 - t0, data_ms += t1 - t0;
  }
  if (o->profile && o->training) { // the step's time outside the graph's nodes: zeroing, the update
    double nodes = 0, step_ms = 0;
    for (int i = 0; i < p->n; i++) nodes += p->ms[i] / (p->runs ? p->runs : 1);
    for (long i = 0; i < o->iters; i++) step_ms += ms[i];
    optim_ms = fmax(0, (step_ms - data_ms) / (double)o->iters - nodes);
  }
  qsort(ms, (size_t)o->iters, sizeof(double), cmp_double);
  double median = ms[o->iters / 2], p99 = ms[(long)((double)(o->iters - 1) * 0.99 + 0.5)];
  // Multiply-adds x 2 flops, over every node of the plan (a training step: the forward products
  // and the two of each backward, data and weights; the stem's input needs no gradient).
  double macs = 0;
  for (int i = 0; i < p->n; i++) macs += (double)ef_node_macs(p->sched[i]);
  double gflops = 2.0 * macs / (median * 1e6);
  double arena = (double)p->arena_bytes / 1048576.0, naive = (double)p->naive_bytes / 1048576.0;
  double params = store_bytes(store, o->training) / 1048576.0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double peak_mib = device ? (double)ef_cuda_peak_device_bytes(be) / 1048576.0 : (double)ru.ru_maxrss / 1024.0;
  char where[512], name[16];
  ef_device_describe(o->dev, where, sizeof where);
  snprintf(name, sizeof name, "%s", strcmp(d->arch, "tiny") ? cfg->name : "tiny");
  *row = (bench_row){.resolution = d->eval.size, .batch = batch, .max_batch = fits, .params = (double)m.params,
                     .macs = (double)m.macs, .images_s = (double)batch * 1e3 / median, .median_ms = median,
                     .planned_mib = arena + params, .rss_mib = peak_mib};
  snprintf(row->model, sizeof row->model, "%s", name);
  kind_profile kp;
  // Zeroing writes the gradients; the update reads parameters and gradients, reads and writes the
  // slots, writes the parameters.
  double optim_bytes = o->training ? (double)store->numel[0] * 4 * (4 + 2 * ef_optim_slots(&step.optim)) : 0;
  if (o->profile) profile_by_kind(p, optim_ms, optim_bytes, loader ? data_ms / (double)o->iters : 0, &kp);
  const char *what = o->training ? "train step" : "inference";
  if (o->json) {
    printf("{\"model\": \"%s\", \"resolution\": %d, \"batch\": %ld, \"mode\": \"%s\", \"data\": \"%s\", "
           "\"device\": \"%s\", \"precision\": \"%s\", \"graph\": %s, "
           "\"median_ms\": %.3f, \"p99_ms\": %.3f, \"images_per_s\": %.2f, \"gflops\": %.2f, \"params\": %.0f, "
           "\"macs_per_image\": %.0f, \"arena_mib\": %.1f, \"arena_naive_mib\": %.1f, \"params_mib\": %.1f, "
           "\"peak_rss_mib\": %.1f, \"peak_device_mib\": %.1f, \"max_batch\": %ld",
           name, d->eval.size, batch, o->training ? "train" : "infer", o->data ? "loader" : "synthetic", where,
           o->dev->precision, device && !o->eager && !o->profile ? "true" : "false", median, p99, row->images_s, gflops,
           row->params, row->macs, arena, naive, params, (double)ru.ru_maxrss / 1024.0, device ? peak_mib : 0.0, fits);
    if (o->profile) profile_json(&kp, stdout);
    printf("}\n");
  } else {
    printf("effnet %s %dx%d batch %ld %s%s, %s%s: median %.1f ms, p99 %.1f ms, %.1f images/s, %.1f GFLOP/s\n", name,
           d->eval.size, d->eval.size, batch, what, o->data ? " (data through the loader)" : "", where,
           device && !o->eager && !o->profile ? ", CUDA graph" : "", median, p99, row->images_s, gflops);
    printf("  memory: activation arena %.1f MiB planned (%.1f MiB without reuse), parameters%s %.1f MiB, peak %s %.1f "
           "MiB; largest batch that fits %.0f MiB: %ld\n",
           arena, naive, o->training ? " + gradients + momentum" : "", params, device ? "GPU memory in use" : "resident",
           row->rss_mib, o->budget / 1048576.0, fits);
    if (o->profile) {
      profile_print(&kp, stdout);
      ef_plan_profile_print(p, stdout);
    }
  }
  fflush(stdout);
  rc = 0;
out:
  free(x), free(y), free(ms);
  ef_loader_free(loader);
  ef_step_free(&step);
  ef_model_graph_free(&m);
  ef_store_free(store);
  return rc;
}

// The table after several configurations: how cost grows with the model and the batch.
static void table_print(const bench_row *rows, int n, const bench_opts *o) {
  printf("\n%-7s %5s %6s %11s %10s %10s %9s %12s %9s %9s\n", "model", "res", "batch", "params", "MACs/img", "images/s",
         "ms/step", "planned MiB", "peak MiB", "max batch");
  for (int i = 0; i < n; i++) {
    const bench_row *r = &rows[i];
    printf("%-7s %5ld %6ld %11.0f %9.3fB %10.1f %9.1f %12.1f %9.1f %9ld\n", r->model, r->resolution, r->batch, r->params,
           r->macs / 1e9, r->images_s, r->median_ms, r->planned_mib, r->rss_mib, r->max_batch);
  }
  printf("(%s; max batch: the largest whose planned memory fits %.0f MiB)\n", o->training ? "training step" : "inference",
         o->budget / 1048576.0);
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
  bench_flags_t fl;
  ef_flags f;
  ef_flags_init(&f, "bench", usage_head, NULL);
  ef_flags_add(&f, bench_flags, (int)(sizeof bench_flags / sizeof bench_flags[0]), &fl);
  ef_flags_add(&f, ef_device_flags, EF_DEVICE_FLAGS, &fl.dev);
  ef_flags_add(&f, ef_model_flags, EF_MODEL_FLAGS, &fl.spec);
  const char *names[MAX_MODELS];
  int rc = ef_flags_apply(&f, argc, argv, EF_FROM_FLAG, names, MAX_MODELS);
  if (rc) return rc;
  bench_opts o = {.training = !strcmp(fl.mode, "train"), .json = fl.json, .profile = fl.profile, .eager = fl.eager,
                  .warmup = fl.warmup, .iters = fl.iters, .loader_threads = fl.loader_threads, .weights = fl.weights};
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
  o.budget = memory_mib ? (double)memory_mib * 1048576.0 : dev.cuda ? (double)ef_cuda_free_bytes(dev.be) - 1610612736.0
                                                                    : available_bytes();
  if (o.budget <= 0) {
    fprintf(stderr, "effnet bench: cannot tell how much memory is free: give --memory-mib\n");
    ef_device_close(&dev);
    return 2;
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
    long fits = rc ? 0 : max_batch(d, o.training, dev.activations, o.budget, dev.cuda);
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
