// `effnet train`: trains a model (the tiny conv net of models/tiny.h, or an EfficientNet) with
// SGD on an IDX dataset (Fashion-MNIST by default) on the CPU backend, at the images' own size,
// logs loss, accuracy and throughput, and evaluates on the test split with the running BN
// statistics.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/cpu/cpu.h"
#include "core/philox.h"
#include "core/plan.h"
#include "data/idx.h"
#include "models/efficientnet.h"
#include "models/tiny.h"
#include "tools/effnet.h"
#include "tools/flags.h"
#include "train/sgd.h"

typedef struct {
  const char *data, *model;
  long epochs, batch, threads, limit, log_every;
  double lr, momentum, weight_decay, smoothing, dropout;
  unsigned long long seed;
  int profile;
} train_opts;

static void train_usage(FILE *f) {
  fprintf(f,
          "usage: effnet train [flags]\n"
          "\n"
          "Trains a model with SGD + momentum on the CPU and reports test accuracy.\n"
          "\n"
          "  --model NAME         tiny, or an EfficientNet b0 ... b7 (at the images' own size)  [tiny]\n"
          "  --data DIR           IDX dataset directory (train-* and t10k-* files)  [" EF_FASHION_MNIST_DIR "]\n"
          "  --epochs N           passes over the training set  [10]\n"
          "  --batch N            images per step  [64]\n"
          "  --lr F               learning rate  [0.1]\n"
          "  --momentum F         SGD momentum  [0.9]\n"
          "  --weight-decay F     L2 on conv and dense weights  [5e-5]\n"
          "  --label-smoothing F  [0.1]\n"
          "  --dropout F          before the classifier  [0.2]\n"
          "  --limit N            train on the first N images only (0: all)  [0]\n"
          "  --threads N          CPU threads (0: one per core)  [0]\n"
          "  --seed N             initialization, shuffling and dropout  [1]\n"
          "  --log-every N        steps between progress lines  [100]\n"
          "  --profile            print time per op kind after training\n");
}

// Parses the flags; returns 0, or 2 after printing what is wrong.
static int parse_opts(int argc, char **argv, train_opts *o) {
  *o = (train_opts){.data = EF_FASHION_MNIST_DIR, .model = "tiny", .epochs = 10, .batch = 64, .lr = 0.1, .momentum = 0.9,
                    .weight_decay = 5e-5, .smoothing = 0.1, .dropout = 0.2, .log_every = 100, .seed = 1};
  const ef_flag flags[] = {
      {"--data", EF_FLAG_STR, &o->data},          {"--model", EF_FLAG_STR, &o->model},
      {"--epochs", EF_FLAG_LONG, &o->epochs, 1, 1e6}, {"--batch", EF_FLAG_LONG, &o->batch, 1, 1 << 20},
      {"--lr", EF_FLAG_DOUBLE, &o->lr, 0, 100},   {"--momentum", EF_FLAG_DOUBLE, &o->momentum, 0, 0.999999},
      {"--weight-decay", EF_FLAG_DOUBLE, &o->weight_decay, 0, 1},
      {"--label-smoothing", EF_FLAG_DOUBLE, &o->smoothing, 0, 0.999999},
      {"--dropout", EF_FLAG_DOUBLE, &o->dropout, 0, 0.999999}, {"--limit", EF_FLAG_LONG, &o->limit, 0, 1e12},
      {"--threads", EF_FLAG_LONG, &o->threads, 0, 4096}, {"--seed", EF_FLAG_U64, &o->seed},
      {"--log-every", EF_FLAG_LONG, &o->log_every, 1, 1e9}, {"--profile", EF_FLAG_BOOL, &o->profile},
  };
  int rc = ef_flags_parse("train", argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), NULL, 0, train_usage);
  if (rc) return rc;
  ef_effnet_config cfg;
  if (strcmp(o->model, "tiny") && ef_effnet_preset(o->model, &cfg) != EF_OK) {
    fprintf(stderr, "effnet train: unknown model '%s': use tiny or b0 ... b7\n", o->model);
    return 2;
  }
  return 0;
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

// Fashion-MNIST pixel statistics: normalized = (x / 255 - mean) / std.
#define PIXEL_MEAN 0.2860f
#define PIXEL_STD 0.3530f

// Images idx[0..n) of d into (n, rows, cols, 1) normalized floats, and their labels.
static void gather(const ef_idx_dataset *d, const int64_t *idx, int64_t n, float *images, int32_t *labels) {
  int64_t px = d->rows * d->cols;
  for (int64_t b = 0; b < n; b++) {
    const uint8_t *src = d->pixels + idx[b] * px;
    for (int64_t i = 0; i < px; i++) images[b * px + i] = ((float)src[i] / 255.0f - PIXEL_MEAN) / PIXEL_STD;
    labels[b] = d->labels[idx[b]];
  }
}

static int64_t argmax(const float *v, int64_t n) {
  int64_t best = 0;
  for (int64_t i = 1; i < n; i++)
    if (v[i] > v[best]) best = i;
  return best;
}

// A training or evaluation graph: images (and labels) in, logits (and the loss) kept; training
// sends gradients into the store.
typedef struct {
  ef_graph *g;
  ef_tensor *images, *labels, *logits, *loss;
  ef_plan *plan;
} model_graph;

// Builds the model's graph; its parameters are registered in the store by the first build.
static void build(model_graph *m, ef_store *store, const ef_idx_dataset *d, int64_t batch, int classes, bool training,
                  const train_opts *o) {
  m->g = ef_graph_new(store, o->seed);
  m->images = ef_input(m->g, "images", EF_F32, 4, (int64_t[]){batch, d->rows, d->cols, 1});
  if (!strcmp(o->model, "tiny")) {
    ef_layer_ctx c = {.g = m->g, .training = training, .padding = EF_PAD_SYMMETRIC, .bn_eps = 1e-3f, .bn_momentum = 0.1f};
    m->logits = ef_tiny_forward(&c, m->images, classes, (float)o->dropout);
  } else {
    ef_effnet_config cfg;
    ef_effnet_preset(o->model, &cfg); // validated by parse_opts
    cfg.num_classes = classes, cfg.in_channels = 1, cfg.dropout = (float)o->dropout;
    m->logits = ef_effnet_build(&cfg, m->g, m->images, training, NULL, NULL);
  }
  ef_graph_keep(m->g, m->logits);
  if (training) {
    m->labels = ef_input(m->g, "labels", EF_I32, 1, (int64_t[]){batch});
    m->loss = ef_softmax_ce(m->g, m->logits, m->labels, (float)o->smoothing);
    ef_graph_backward(m->g, m->loss);
    ef_graph_keep(m->g, m->loss);
  }
}

static void destroy(model_graph *m) {
  ef_plan_free(m->plan);
  ef_graph_free(m->g);
}

// Top-1 accuracy of the evaluation graph over the whole dataset (the last batch padded).
static double evaluate(model_graph *m, const ef_idx_dataset *d, int64_t batch, int64_t classes) {
  float *images = ef_xmalloc(sizeof(float) * (size_t)(batch * d->rows * d->cols));
  float *logits = ef_xmalloc(sizeof(float) * (size_t)(batch * classes));
  int32_t *labels = ef_xmalloc(sizeof(int32_t) * (size_t)batch);
  int64_t *idx = ef_xmalloc(sizeof(int64_t) * (size_t)batch), correct = 0;
  for (int64_t start = 0; start < d->n; start += batch) {
    int64_t real = d->n - start < batch ? d->n - start : batch;
    for (int64_t b = 0; b < batch; b++) idx[b] = start + (b < real ? b : 0);
    gather(d, idx, batch, images, labels);
    ef_plan_set(m->plan, m->images, images);
    ef_plan_run(m->plan, &(ef_run_ctx){0});
    ef_plan_get(m->plan, m->logits, logits);
    for (int64_t b = 0; b < real; b++) correct += argmax(logits + b * classes, classes) == labels[b];
  }
  free(images), free(logits), free(labels), free(idx);
  return (double)correct / (double)d->n;
}

int ef_cmd_train(int argc, char **argv) {
  train_opts o;
  int rc = parse_opts(argc, argv, &o);
  if (rc) return rc;
  ef_idx_dataset train = {0}, test = {0};
  if (ef_idx_load_dir(o.data, "train", &train) != EF_OK || ef_idx_load_dir(o.data, "t10k", &test) != EF_OK) {
    fprintf(stderr, "effnet train: %s\n(install Fashion-MNIST with scripts/install-deps.sh, or pass --data DIR)\n",
            ef_last_error());
    ef_idx_free(&train);
    return 1;
  }
  if (test.rows != train.rows || test.cols != train.cols || test.num_classes > train.num_classes) {
    fprintf(stderr, "effnet train: the test split (%lldx%lld, %d classes) does not match the training split (%lldx%lld, %d classes)\n",
            (long long)test.rows, (long long)test.cols, test.num_classes, (long long)train.rows, (long long)train.cols,
            train.num_classes);
    ef_idx_free(&train), ef_idx_free(&test);
    return 1;
  }
  int64_t n_train = o.limit && o.limit < train.n ? o.limit : train.n;
  if (o.batch > n_train) {
    fprintf(stderr, "effnet train: --batch %ld is larger than the %lld training images\n", o.batch, (long long)n_train);
    ef_idx_free(&train), ef_idx_free(&test);
    return 2;
  }
  int64_t steps = n_train / o.batch, classes = train.num_classes;

  ef_backend *be = ef_cpu_backend_new((int)o.threads);
  ef_store *store = ef_store_new();
  model_graph tr = {0}, ev = {0};
  build(&tr, store, &train, o.batch, (int)classes, true, &o);
  build(&ev, store, &test, o.batch, (int)classes, false, &o);
  ef_sgd sgd = {0};
  rc = 1;
  if (!be || ef_store_bind(store, be) != EF_OK ||
      ef_sgd_init(&sgd, store, &(ef_sgd_config){.momentum = (float)o.momentum, .weight_decay = (float)o.weight_decay}) != EF_OK ||
      ef_plan_new(&tr.plan, tr.g, be, &(ef_plan_opts){.profile = o.profile}) != EF_OK ||
      ef_plan_new(&ev.plan, ev.g, be, NULL) != EF_OK) {
    fprintf(stderr, "effnet train: %s\n", ef_last_error());
    goto out;
  }
  ef_store_initialize(store, o.seed);
  printf("effnet train: model %s (%zu parameters), data %s (%lld train / %lld test images, %lldx%lld, %lld classes)\n",
         o.model, store->numel[0], o.data, (long long)n_train, (long long)test.n, (long long)train.rows, (long long)train.cols,
         (long long)classes);
  printf("  epochs %ld, batch %ld, %lld steps/epoch, SGD lr %g momentum %g weight decay %g, label smoothing %g, dropout %g,"
         " seed %llu, %d threads\n",
         o.epochs, o.batch, (long long)steps, o.lr, o.momentum, o.weight_decay, o.smoothing, o.dropout, o.seed,
         ef_cpu_threads(be));
  printf("  activation memory: %.1f MiB planned for training (%.1f MiB without reuse)\n", (double)tr.plan->arena_bytes / 1048576.0,
         (double)tr.plan->naive_bytes / 1048576.0);

  int64_t px = train.rows * train.cols;
  float *images = ef_xmalloc(sizeof(float) * (size_t)(o.batch * px)), *logits = ef_xmalloc(sizeof(float) * (size_t)(o.batch * classes));
  int32_t *labels = ef_xmalloc(sizeof(int32_t) * (size_t)o.batch);
  int64_t *order = ef_xmalloc(sizeof(int64_t) * (size_t)n_train);
  double t_start = now_s();
  uint32_t step = 0;
  for (long epoch = 0; epoch < o.epochs; epoch++) {
    // The shuffle depends only on (seed, epoch): Fisher-Yates with Philox draws.
    for (int64_t i = 0; i < n_train; i++) order[i] = i;
    for (int64_t i = n_train - 1; i > 0; i--) {
      int64_t j = (int64_t)(ef_philox_u32(o.seed, ef_rng_stream(EF_RNG_SHUFFLE, 0), (uint32_t)epoch, (uint64_t)i) % (uint64_t)(i + 1)), t = order[i];
      order[i] = order[j], order[j] = t;
    }
    double loss_sum = 0, t_log = now_s();
    int64_t correct = 0, seen = 0, since = 0;
    for (int64_t s = 0; s < steps; s++, step++) {
      gather(&train, order + s * o.batch, o.batch, images, labels);
      ef_plan_set(tr.plan, tr.images, images);
      ef_plan_set(tr.plan, tr.labels, labels);
      ef_store_zero_grads(store);
      ef_plan_run(tr.plan, &(ef_run_ctx){.step = step});
      float loss;
      ef_plan_get(tr.plan, tr.loss, &loss);
      if (!isfinite(loss)) {
        fprintf(stderr, "effnet train: the loss is %g at step %u (epoch %ld); stopping. Lower --lr.\n", loss, step, epoch + 1);
        goto free_buffers;
      }
      ef_sgd_step(&sgd, store, (float)o.lr);
      ef_plan_get(tr.plan, tr.logits, logits);
      for (int64_t b = 0; b < o.batch; b++) correct += argmax(logits + b * classes, classes) == labels[b];
      loss_sum += loss, seen += o.batch, since += o.batch;
      if ((s + 1) % o.log_every == 0 || s + 1 == steps) {
        double t = now_s();
        printf("epoch %ld/%ld  step %lld/%lld  loss %.4f  train acc %.2f%%  %.0f images/s\n", epoch + 1, o.epochs,
               (long long)(s + 1), (long long)steps, loss_sum / (double)(s + 1), 100.0 * (double)correct / (double)seen,
               (double)since / (t - t_log));
        fflush(stdout);
        t_log = t, since = 0;
      }
    }
    double acc = evaluate(&ev, &test, o.batch, classes);
    printf("epoch %ld/%ld  test accuracy %.2f%% (%lld images)  %.1f s elapsed\n", epoch + 1, o.epochs, 100.0 * acc,
           (long long)test.n, now_s() - t_start);
  }
  if (o.profile) ef_plan_profile_print(tr.plan, stdout);
  rc = 0;
free_buffers:
  free(images), free(logits), free(labels), free(order);
out:
  ef_sgd_free(&sgd);
  destroy(&tr);
  destroy(&ev);
  ef_store_free(store);
  ef_backend_free(be);
  ef_idx_free(&train), ef_idx_free(&test);
  return rc;
}
