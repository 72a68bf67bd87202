// Timing a model (see bench.h): the graph and, for training, the step as the trainer builds
// them; weights before the plan (cuDNN times its algorithms on them); on a GPU, inference
// replays the plan as a CUDA graph and a training step is captured whole by the step.
#include "train/bench.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "core/cpu/cpu.h"
#include "cuda/cuda.h"
#include "data/loader.h"
#include "train/step.h"

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e3 * (double)ts.tv_sec + 1e-6 * (double)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

// Images in [-1, 1) and labels 0, 1, ... in turn.
static void synthetic_data(float *x, int64_t n, int32_t *y, int64_t batch, int classes) {
  for (int64_t i = 0; i < n; i++) x[i] = (float)((i * 2654435761u) % 1000) / 500.0f - 1.0f;
  for (int64_t i = 0; i < batch; i++) y[i] = (int32_t)(i % classes);
}

// The next batch of the loader, starting a new epoch when one ends.
static ef_status loader_next(ef_loader *l, int64_t *epoch, const ef_batch **batch) {
  EF_TRY(ef_loader_next(l, batch));
  if (*batch) return EF_OK;
  EF_TRY(ef_loader_start(l, ++*epoch, 0));
  EF_TRY(ef_loader_next(l, batch));
  return *batch ? EF_OK : EF_ERROR(EF_ERR_INVALID, "the dataset gives no full batch");
}

// Warm-up, then the timed steps into ms[iters]; the data wait summed into *data_ms.
static ef_status time_steps(const ef_bench_config *c, ef_model_graph *m, ef_step *step, ef_loader *loader,
                            const float *x, const int32_t *y, double *ms, double *data_ms) {
  ef_plan *p = m->plan;
  int64_t epoch = 0;
  for (long i = 0; i < c->warmup + c->iters; i++) {
    if (i == c->warmup) ef_plan_profile_reset(p);
    double t0 = now_ms();
    const ef_batch *b = NULL;
    if (loader) EF_TRY(loader_next(loader, &epoch, &b));
    double t1 = now_ms();
    if (c->training) {
      ef_step_result r;
      ef_step_run(step, b ? b->images : x, b ? b->labels : y, NULL, 1e-4, i, &r); // a small rate keeps the weights sane
    } else {
      ef_plan_set(p, m->images, b ? b->images : x);
      ef_plan_run(p, &(ef_run_ctx){.step = (uint32_t)i, .weights_unchanged = true}); // set before the first run
      if (c->dev->cuda) p->be->synchronize(p->be);
    }
    double t2 = now_ms();
    if (i >= c->warmup) ms[i - c->warmup] = t2 - t0, *data_ms += t1 - t0;
  }
  return EF_OK;
}

// The figures of the timed steps (sorted in place).
static void summarize(const ef_bench_config *c, const ef_model_graph *m, const ef_step *step, int64_t batch, double *ms,
                      double data_ms, ef_bench_result *r) {
  const ef_plan *p = m->plan;
  const ef_store *s = m->g->store;
  double step_ms = 0;
  for (long i = 0; i < c->iters; i++) step_ms += ms[i];
  qsort(ms, (size_t)c->iters, sizeof(double), cmp_double);
  r->median_ms = ms[c->iters / 2], r->p99_ms = ms[(long)((double)(c->iters - 1) * 0.99 + 0.5)];
  r->images_s = (double)batch * 1e3 / r->median_ms;
  // Multiply-adds x 2 flops, over every node of the plan (a training step: the forward products
  // and the two of each backward, data and weights; the stem's input needs no gradient).
  double macs = 0;
  for (int i = 0; i < p->n; i++) macs += (double)ef_node_macs(p->sched[i]);
  r->gflops = 2.0 * macs / (r->median_ms * 1e6);
  r->arena_mib = (double)p->arena_bytes / 1048576.0, r->naive_mib = (double)p->naive_bytes / 1048576.0;
  r->store_mib = (double)(s->numel[0] * (c->training ? 3 : 1) + s->numel[1]) * sizeof(float) / 1048576.0;
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  r->rss_mib = (double)ru.ru_maxrss / 1024.0;
  r->peak_mib = c->dev->cuda ? (double)ef_cuda_peak_device_bytes(p->be) / 1048576.0 : r->rss_mib;
  r->params = m->params, r->macs = m->macs;
  if (!c->profile) return;
  ef_plan_profile_kinds(p, &r->kinds);
  double nodes = 0;
  for (int i = 0; i < EF_KIND_COUNT; i++) nodes += r->kinds.ms[i];
  if (c->training) { // the step's time outside the graph's nodes: zeroing the gradients, the update
    r->kinds.ms[EF_KIND_OPTIMIZER] = fmax(0, (step_ms - data_ms) / (double)c->iters - nodes);
    // Zeroing writes the gradients; the update reads parameters and gradients, reads and writes
    // the slots, writes the parameters.
    r->kinds.bytes[EF_KIND_OPTIMIZER] = (double)s->numel[0] * 4 * (4 + 2 * ef_optim_slots(&step->optim));
  }
  r->kinds.ms[EF_KIND_DATA] = c->data ? data_ms / (double)c->iters : 0;
  if (!c->dev->cuda) { // what the CPU can do at most, for each kind's share of it: measured once a process
    static ef_cpu_peak peak;
    static int threads;
    if (threads != ef_cpu_threads(p->be)) peak = ef_cpu_peak_measure(p->be), threads = ef_cpu_threads(p->be);
    r->kinds.peak_gflops = peak.gflops, r->kinds.peak_gbs = peak.gbs;
  }
  ef_kind_profile_finish(&r->kinds);
}

ef_status ef_bench_run(const ef_model_desc *d, int64_t batch, const ef_bench_config *c, ef_bench_result *r,
                       FILE *op_profile) {
  memset(r, 0, sizeof *r);
  if (c->data && c->data->num_classes > d->num_classes)
    return EF_ERROR(EF_ERR_INVALID, "%s has %d classes but the model %d: give --classes %d", c->data->source,
                    c->data->num_classes, d->num_classes, c->data->num_classes);
  ef_backend *be = c->dev->be;
  ef_store *store = ef_store_new();
  ef_model_graph m;
  ef_model_graph_new(&m, store, d,
                     &(ef_graph_opts){.batch = batch,
                                      .training = c->training,
                                      .smoothing = 0.1f,
                                      .seed = 1,
                                      .activations = c->dev->activations,
                                      .fusions = be->eval_fusions});
  ef_step step = {0};
  ef_loader *loader = NULL;
  float *x = NULL;
  int32_t *y = NULL;
  double *ms = ef_xmalloc(sizeof(double) * (size_t)c->iters), data_ms = 0;
  ef_status st = EF_OK;
  if (c->data) {
    ef_loader_config lc = {.data = c->data,
                           .transform = ef_transform_defaults(c->training, d->eval.size, d->in_channels),
                           .batch = (int)batch,
                           .shuffle = c->training,
                           .drop_last = true,
                           .as_float = true,
                           .seed = 1,
                           .threads = (int)c->loader_threads};
    st = ef_loader_new(&loader, &lc);
  }
  if (st == EF_OK) st = ef_store_bind(store, be);
  if (st == EF_OK) ef_store_initialize(store, 1);
  if (st == EF_OK && c->weights) {
    ef_weights_info *w = ef_xmalloc(sizeof *w);
    st = ef_weights_info_read(c->weights, w);
    if (st == EF_OK) st = ef_model_load_weights(c->weights, w, false, NULL, store);
    free(w);
  }
  ef_plan_opts po = {.profile = c->profile, .graph = c->dev->cuda && !c->training && !c->eager};
  if (st == EF_OK) st = ef_model_graph_plan(&m, be, &po);
  ef_step_config sc = {.optim = ef_optim_defaults(EF_OPT_SGD), .eager = c->eager || c->profile};
  if (st == EF_OK && c->training) st = ef_step_init(&step, &m, &sc);
  if (st == EF_OK && !c->data) {
    x = ef_xmalloc(sizeof(float) * (size_t)ef_numel(m.images));
    y = ef_xmalloc(sizeof(int32_t) * (size_t)batch);
    synthetic_data(x, ef_numel(m.images), y, batch, d->num_classes);
  }
  if (st == EF_OK) st = time_steps(c, &m, &step, loader, x, y, ms, &data_ms);
  if (st == EF_OK) summarize(c, &m, &step, batch, ms, data_ms, r);
  if (st == EF_OK && c->profile && op_profile) {
    ef_plan_profile_print(m.plan, op_profile);
    ef_plan_profile_nodes(m.plan, op_profile, c->profile_nodes);
  }
  free(x), free(y), free(ms);
  ef_loader_free(loader);
  ef_step_free(&step);
  ef_model_graph_free(&m);
  ef_store_free(store);
  return st;
}
