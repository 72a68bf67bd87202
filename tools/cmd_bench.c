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
#include "tools/device.h"
#include "tools/effnet.h"
#include "tools/model_args.h"
#include "train/optim.h"
#include "train/update.h"

static void bench_usage(FILE *f) {
  fprintf(f,
          "usage: effnet bench MODEL... [flags]     (MODEL: b0 ... b7, or all; or --phi F)\n"
          "       effnet bench --model b0[,b2...]|all [flags]\n"
          "\n"
          "Times inference or a training step (forward, backward, SGD update) on the CPU or a GPU,\n"
          "for each model and batch size; synthetic images unless --data gives a dataset.\n"
          "\n"
          "  --mode MODE           infer or train  [train]\n"
          "  --batch N[,N...]|max  images per step; a list sweeps; max: the largest batch whose\n"
          "                        planned memory fits --memory-mib  [8]\n"
          "  --warmup N            untimed steps first  [2]\n"
          "  --iters N             timed steps  [10]\n"
          "  --threads N           CPU threads (0: one per core)  [0]\n"
          EF_DEVICE_USAGE
          "  --eager               CUDA: run each step op by op instead of replaying it as a captured\n"
          "                        CUDA graph (--profile always runs eagerly)\n"
          "  --memory-mib N        memory budget for max batch (0: what the system, or the GPU, has free)  [0]\n"
          "  --data PATH           end to end: batches from this dataset through the loader (the train\n"
          "                        transform for --mode train, the eval transform for infer), at\n"
          "                        the model's resolution; the step time includes waiting for it\n"
          "  --loader-threads N    loader threads with --data  [1]\n"
          "  --json                one JSON object per line instead of text (peak_rss_mib: the\n"
          "                        process's peak so far, over the configurations run before;\n"
          "                        peak_device_mib: the GPU memory in use at effnet's peak, likewise)\n"
          "  --profile             time by op kind (and by op) over the timed steps\n");
  ef_model_args_usage(f);
}

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
typedef struct {
  ef_store *s;
  ef_graph *g;
  ef_tensor *images, *labels, *out, *seed; // seed: the loss's gradient (1)
  ef_layer_ctx ctx;
} bench_graph;

static void graph_build(bench_graph *b, const ef_effnet_config *cfg, long batch, bool training, ef_dtype activations) {
  b->s = ef_store_new();
  b->g = ef_graph_new(b->s, 1);
  int64_t r = cfg->resolution, shape[4] = {batch, r, r, cfg->in_channels};
  b->images = ef_input(b->g, "images", EF_F32, 4, shape);
  b->labels = NULL;
  b->out = ef_effnet_build(cfg, b->g, b->images, training, NULL, &b->ctx);
  if (training) {
    b->labels = ef_input(b->g, "labels", EF_I32, 1, (int64_t[]){batch});
    b->out = ef_softmax_ce(b->g, b->out, b->labels, 0.1f);
    b->seed = ef_input(b->g, "loss_scale", EF_F32, 1, (int64_t[]){1});
    ef_graph_backward_from(b->g, b->out, b->seed);
  }
  ef_graph_keep(b->g, b->out);
  ef_graph_set_precision(b->g, activations, false);
}

static void graph_free(bench_graph *b) {
  ef_graph_free(b->g);
  ef_store_free(b->s);
}

// Bytes of the parameters (training: + gradients + SGD momentum) and state arenas.
static double store_bytes(const ef_store *s, bool training) {
  return (double)(s->numel[0] * (training ? 3 : 1) + s->numel[1]) * 4;
}

// The planned memory of a batch: the activation arena plus the store's arenas.
static double planned_bytes(const ef_effnet_config *cfg, long batch, bool training, ef_dtype activations) {
  bench_graph b;
  graph_build(&b, cfg, batch, training, activations);
  size_t arena, naive;
  ef_plan_measure(b.g, &arena, &naive);
  double bytes = (double)arena + store_bytes(b.s, training);
  graph_free(&b);
  return bytes;
}

// The most elements any tensor of the graph holds per image.
static double largest_tensor(const ef_effnet_config *cfg, bool training, ef_dtype activations) {
  bench_graph b;
  graph_build(&b, cfg, 1, training, activations);
  double most = 0;
  for (int i = 0; i < b.g->n; i++) most = fmax(most, (double)ef_numel(b.g->nodes[i]));
  graph_free(&b);
  return most;
}

// The largest batch whose planned memory fits `budget` (0 when not even one image fits): the
// arena grows linearly with the batch, so two plans give the estimate and more plans confirm it.
// On a GPU also no tensor above 2^31 elements (cuDNN's convolution descriptors take int sizes).
static long max_batch(const ef_effnet_config *cfg, bool training, ef_dtype activations, double budget, bool gpu) {
  double one = planned_bytes(cfg, 1, training, activations), per_image = planned_bytes(cfg, 2, training, activations) - one;
  if (one > budget) return 0;
  long b = per_image > 0 ? 1 + (long)((budget - one) / per_image) : 1 << 16;
  if (b > 1 << 16) b = 1 << 16;
  if (gpu) b = (long)fmin((double)b, floor(2147483647.0 / largest_tensor(cfg, training, activations)));
  while (b > 1 && planned_bytes(cfg, b, training, activations) > budget) b--;
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

// The next batch of the loader into the plan, starting a new epoch when one ends.
static ef_status loader_feed(ef_loader *l, ef_plan *p, const bench_graph *b, int64_t *epoch) {
  const ef_batch *batch;
  EF_TRY(ef_loader_next(l, &batch));
  if (!batch) {
    EF_TRY(ef_loader_start(l, ++*epoch, 0));
    EF_TRY(ef_loader_next(l, &batch));
    if (!batch) return EF_ERROR(EF_ERR_INVALID, "the dataset gives no full batch");
  }
  ef_plan_set(p, b->images, batch->images);
  if (b->labels) ef_plan_set(p, b->labels, batch->labels);
  return EF_OK;
}

// Times one configuration; prints its line and fills row. Returns 0, or 1 after a message.
static int bench_one(const ef_effnet_config *cfg, long batch, long fits, const bench_opts *o, bench_row *row) {
  bench_graph b;
  graph_build(&b, cfg, batch, o->training, o->dev->activations);
  ef_backend *be = o->dev->be;
  bool device = o->dev->cuda;
  ef_plan *p = NULL;
  ef_optim optim = {0};
  ef_device_update upd = {0};
  ef_capture cap = {0};
  ef_loader *loader = NULL;
  float *x = NULL;
  int32_t *y = NULL;
  double *ms = NULL, optim_ms = 0, data_ms = 0;
  int64_t epoch = 0;
  int rc = 1;
  ef_optim_config oc = ef_optim_defaults(EF_OPT_SGD);
  ef_status st = EF_OK;
  if (o->data && o->data->num_classes > cfg->num_classes) {
    fprintf(stderr, "effnet bench: %s has %d classes but the model %d: give --classes %d\n", o->data->source,
            o->data->num_classes, cfg->num_classes, o->data->num_classes);
    goto out;
  }
  if (o->data) {
    ef_loader_config lc = {.data = o->data, .transform = ef_transform_defaults(o->training, cfg->resolution, cfg->in_channels),
                           .batch = (int)batch, .shuffle = o->training, .drop_last = true, .as_float = true, .seed = 1,
                           .threads = (int)o->loader_threads};
    st = ef_loader_new(&loader, &lc);
  }
  // On a GPU, inference replays the plan as a CUDA graph; a training step is captured whole below.
  ef_plan_opts po = {.profile = o->profile, .graph = device && !o->training && !o->eager};
  if (st != EF_OK || ef_store_bind(b.s, be) != EF_OK || ef_plan_new(&p, b.g, be, &po) != EF_OK ||
      (o->training && ef_optim_init(&optim, b.s, &oc) != EF_OK) ||
      (o->training && device && ef_device_update_init(&upd, &optim, b.s) != EF_OK)) {
    fprintf(stderr, "effnet bench: %s\n", ef_last_error());
    goto out;
  }
  ef_store_initialize(b.s, 1);
  if (!o->data) {
    x = ef_xmalloc(sizeof(float) * (size_t)ef_numel(b.images));
    y = ef_xmalloc(sizeof(int32_t) * (size_t)batch);
    synthetic_data(x, ef_numel(b.images), y, batch, cfg->num_classes);
    ef_plan_set(p, b.images, x);
    if (b.labels) ef_plan_set(p, b.labels, y);
  }
  if (b.seed) ef_plan_set(p, b.seed, &(float){1.0f});
  ms = ef_xmalloc(sizeof(double) * (size_t)o->iters);
  for (long i = 0; i < o->warmup + o->iters; i++) {
    if (i == o->warmup) ef_plan_profile_reset(p);
    double t0 = 1e3 * ef_seconds();
    if (loader && (st = loader_feed(loader, p, &b, &epoch)) != EF_OK) {
      fprintf(stderr, "effnet bench: %s\n", ef_last_error());
      goto out;
    }
    double t1 = 1e3 * ef_seconds(), t2, t3;
    ef_run_ctx ctx = {.step = (uint32_t)i};
    if (device && o->training) {
      ef_device_update_values(&upd, &optim, NULL, 1e-4, 0, 1); // a small rate keeps the weights sane
      if (o->eager || o->profile) { // the update's time apart from the plan's
        ef_store_zero_grads(b.s);
        ef_plan_run(p, &ctx);
        be->synchronize(be);
        t2 = t1, t3 = 1e3 * ef_seconds();
        ef_device_update_queue(&upd, b.s, NULL);
      } else {
        ef_device_train_step(&cap, b.s, p, NULL, &upd, NULL, &ctx);
        t2 = t1, t3 = t1;
      }
      be->synchronize(be);
      double norm;
      ef_device_update_finish(&upd, &optim, NULL, &norm);
    } else if (device) {
      ef_plan_run(p, &ctx);
      be->synchronize(be);
      t2 = t1, t3 = 1e3 * ef_seconds();
    } else {
      if (o->training) ef_store_zero_grads(b.s);
      t2 = 1e3 * ef_seconds();
      ef_plan_run(p, &ctx);
      t3 = 1e3 * ef_seconds();
      if (o->training) ef_optim_step(&optim, b.s, 1e-4); // a small rate keeps the weights sane
    }
    double t4 = 1e3 * ef_seconds();
    if (i >= o->warmup) {
      ms[i - o->warmup] = t4 - t0;
      data_ms += t1 - t0;
      optim_ms += (t2 - t1) + (t4 - t3);
    }
  }
  qsort(ms, (size_t)o->iters, sizeof(double), cmp_double);
  double median = ms[o->iters / 2], p99 = ms[(long)((double)(o->iters - 1) * 0.99 + 0.5)];
  // Multiply-adds x 2 flops, over every node of the plan (a training step: the forward products
  // and the two of each backward, data and weights; the stem's input needs no gradient).
  double macs = 0;
  for (int i = 0; i < p->n; i++) macs += (double)ef_node_macs(p->sched[i]);
  double gflops = 2.0 * macs / (median * 1e6);
  double arena = (double)p->arena_bytes / 1048576.0, naive = (double)p->naive_bytes / 1048576.0;
  double params = store_bytes(b.s, o->training) / 1048576.0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double peak_mib = device ? (double)ef_cuda_peak_device_bytes(be) / 1048576.0 : (double)ru.ru_maxrss / 1024.0;
  char where[512];
  ef_device_describe(o->dev, where, sizeof where);
  *row = (bench_row){.resolution = cfg->resolution, .batch = batch, .max_batch = fits,
                     .params = (double)b.ctx.params, .macs = (double)b.ctx.macs / (double)batch,
                     .images_s = (double)batch * 1e3 / median, .median_ms = median,
                     .planned_mib = arena + params, .rss_mib = peak_mib};
  snprintf(row->model, sizeof row->model, "%s", cfg->name);
  kind_profile kp;
  // Zeroing writes the gradients; the update reads parameters and gradients, reads and writes the
  // slots, writes the parameters.
  double optim_bytes = o->training ? (double)b.s->numel[0] * 4 * (4 + 2 * ef_optim_slots(&optim)) : 0;
  if (o->profile)
    profile_by_kind(p, o->training ? optim_ms / (double)o->iters : 0, optim_bytes, loader ? data_ms / (double)o->iters : 0, &kp);
  const char *what = o->training ? "train step" : "inference";
  if (o->json) {
    printf("{\"model\": \"%s\", \"resolution\": %d, \"batch\": %ld, \"mode\": \"%s\", \"data\": \"%s\", "
           "\"device\": \"%s\", \"precision\": \"%s\", \"graph\": %s, "
           "\"median_ms\": %.3f, \"p99_ms\": %.3f, \"images_per_s\": %.2f, \"gflops\": %.2f, \"params\": %.0f, "
           "\"macs_per_image\": %.0f, \"arena_mib\": %.1f, \"arena_naive_mib\": %.1f, \"params_mib\": %.1f, "
           "\"peak_rss_mib\": %.1f, \"peak_device_mib\": %.1f, \"max_batch\": %ld",
           cfg->name, cfg->resolution, batch, o->training ? "train" : "infer", o->data ? "loader" : "synthetic", where,
           o->dev->precision, device && !o->eager && !o->profile ? "true" : "false", median, p99, row->images_s, gflops,
           row->params, row->macs, arena, naive, params, (double)ru.ru_maxrss / 1024.0, device ? peak_mib : 0.0, fits);
    if (o->profile) profile_json(&kp, stdout);
    printf("}\n");
  } else {
    printf("effnet %s %dx%d batch %ld %s%s, %s%s: median %.1f ms, p99 %.1f ms, %.1f images/s, %.1f GFLOP/s\n",
           cfg->name, cfg->resolution, cfg->resolution, batch, what, o->data ? " (data through the loader)" : "", where,
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
  ef_capture_free(&cap, be);
  ef_device_update_free(&upd);
  ef_optim_free(&optim);
  ef_plan_free(p);
  graph_free(&b);
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
  ef_model_args m;
  const char *mode = "train", *names[MAX_MODELS], *batches = "8", *precision = "f32", *model_list = NULL, *data = NULL,
             *device = "cpu";
  long warmup = 2, iters = 10, threads = 0, loader_threads = 1, memory_mib = 0;
  int profile = 0, json = 0, eager = 0;
  enum { N_FLAGS = 14 };
  ef_flag flags[EF_MODEL_FLAGS + N_FLAGS] = {
      {"--model", EF_FLAG_STR, &model_list},
      {"--profile", EF_FLAG_BOOL, &profile},     {"--json", EF_FLAG_BOOL, &json},
      {"--mode", EF_FLAG_STR, &mode},            {"--batch", EF_FLAG_STR, &batches},
      {"--warmup", EF_FLAG_LONG, &warmup, 0, 1e6}, {"--iters", EF_FLAG_LONG, &iters, 1, 1e6},
      {"--threads", EF_FLAG_LONG, &threads, 0, 4096}, {"--precision", EF_FLAG_STR, &precision},
      {"--memory-mib", EF_FLAG_LONG, &memory_mib, 0, 1e9}, {"--data", EF_FLAG_STR, &data},
      {"--loader-threads", EF_FLAG_LONG, &loader_threads, 0, 256}, {"--device", EF_FLAG_STR, &device},
      {"--eager", EF_FLAG_BOOL, &eager},
  };
  ef_model_args_init(&m, flags + N_FLAGS);
  int rc = ef_flags_parse("bench", argc, argv, flags, EF_MODEL_FLAGS + N_FLAGS, names, MAX_MODELS, bench_usage);
  if (rc) return rc;
  bench_opts o = {.training = !strcmp(mode, "train"), .json = json, .profile = profile, .eager = eager, .warmup = warmup,
                  .iters = iters, .loader_threads = loader_threads};
  if (!o.training && strcmp(mode, "infer")) {
    fprintf(stderr, "effnet bench: --mode must be infer or train, not '%s'\n", mode);
    return 2;
  }
  long sizes[MAX_BATCHES];
  int n_sizes = parse_batches(batches, sizes, MAX_BATCHES);
  if (n_sizes < 0) return 2;
  ef_device dev;
  if ((rc = ef_device_open(&dev, "bench", device, precision, (int)threads)) != 0) return rc;
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
  if (!n_models) list[n_models++] = NULL; // --phi, or the message asking for a model
  ef_dataset ds;
  if (data && ef_dataset_open(data, 1, &ds) != EF_OK) {
    fprintf(stderr, "effnet bench: %s\n", ef_last_error());
    ef_device_close(&dev);
    return 1;
  }
  o.data = data ? &ds : NULL;
  bench_row rows[MAX_MODELS * MAX_BATCHES];
  int n_rows = 0;
  for (int i = 0; i < n_models && !rc; i++) {
    ef_effnet_config cfg;
    if ((rc = ef_model_args_config("bench", list[i], &m, &cfg)) != 0) break;
    long fits = max_batch(&cfg, o.training, dev.activations, o.budget, dev.cuda);
    for (int k = 0; k < n_sizes && !rc; k++) {
      long batch = sizes[k] ? sizes[k] : fits;
      if (batch < 1) {
        fprintf(stderr, "effnet bench: %s: not even one image fits %.0f MiB\n", cfg.name, o.budget / 1048576.0);
        rc = 1;
      } else {
        rc = bench_one(&cfg, batch, fits, &o, &rows[n_rows++]);
      }
    }
  }
  if (!rc && !json && n_rows > 1) table_print(rows, n_rows, &o);
  if (data) ef_dataset_free(&ds);
  ef_device_close(&dev);
  return rc;
}
