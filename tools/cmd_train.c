// `effnet train`: trains a model (the tiny conv net of models/tiny.h, or an EfficientNet) with
// SGD on the CPU backend on any dataset the loader reads (Fashion-MNIST by default), fed by the
// threaded loader; logs loss, accuracy and throughput, and evaluates on the test split with the
// running BN statistics.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cpu/cpu.h"
#include "core/philox.h"
#include "core/plan.h"
#include "data/loader.h"
#include "models/efficientnet.h"
#include "models/tiny.h"
#include "tools/effnet.h"
#include "tools/flags.h"
#include "train/sgd.h"

typedef struct {
  const char *data, *model, *augment;
  long epochs, batch, threads, loader_threads, image_size, limit, log_every;
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
          "  --data PATH          IDX, CIFAR-10/100 or ImageFolder directory, or a path,label .csv\n"
          "                       [" EF_FASHION_MNIST_DIR "]\n"
          "  --image-size N       training resolution (0: the images' own size for IDX and CIFAR,\n"
          "                       the model's for image files)  [0]\n"
          "  --augment A          none (the evaluation geometry: resize, centre crop), crop\n"
          "                       (random-resized crop + flip), autoaugment or randaugment\n"
          "                       (crop + flip + the policy)  [none]\n"
          "  --loader-threads N   threads decoding and augmenting ahead of the step  [1]\n"
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
  *o = (train_opts){.data = EF_FASHION_MNIST_DIR, .model = "tiny", .augment = "none", .epochs = 10, .batch = 64,
                    .loader_threads = 1, .lr = 0.1, .momentum = 0.9, .weight_decay = 5e-5, .smoothing = 0.1,
                    .dropout = 0.2, .log_every = 100, .seed = 1};
  const ef_flag flags[] = {
      {"--data", EF_FLAG_STR, &o->data},          {"--model", EF_FLAG_STR, &o->model},
      {"--epochs", EF_FLAG_LONG, &o->epochs, 1, 1e6}, {"--batch", EF_FLAG_LONG, &o->batch, 1, 1 << 20},
      {"--lr", EF_FLAG_DOUBLE, &o->lr, 0, 100},   {"--momentum", EF_FLAG_DOUBLE, &o->momentum, 0, 0.999999},
      {"--weight-decay", EF_FLAG_DOUBLE, &o->weight_decay, 0, 1},
      {"--label-smoothing", EF_FLAG_DOUBLE, &o->smoothing, 0, 0.999999},
      {"--dropout", EF_FLAG_DOUBLE, &o->dropout, 0, 0.999999}, {"--limit", EF_FLAG_LONG, &o->limit, 0, 1e12},
      {"--threads", EF_FLAG_LONG, &o->threads, 0, 4096}, {"--seed", EF_FLAG_U64, &o->seed},
      {"--log-every", EF_FLAG_LONG, &o->log_every, 1, 1e9}, {"--profile", EF_FLAG_BOOL, &o->profile},
      {"--augment", EF_FLAG_STR, &o->augment}, {"--image-size", EF_FLAG_LONG, &o->image_size, 0, 4096},
      {"--loader-threads", EF_FLAG_LONG, &o->loader_threads, 0, 256},
  };
  int rc = ef_flags_parse("train", argc, argv, flags, (int)(sizeof flags / sizeof flags[0]), NULL, 0, train_usage);
  if (rc) return rc;
  ef_effnet_config cfg;
  if (strcmp(o->model, "tiny") && ef_effnet_preset(o->model, &cfg) != EF_OK) {
    fprintf(stderr, "effnet train: unknown model '%s': use tiny or b0 ... b7\n", o->model);
    return 2;
  }
  if (strcmp(o->augment, "none") && strcmp(o->augment, "crop") && strcmp(o->augment, "autoaugment") &&
      strcmp(o->augment, "randaugment")) {
    fprintf(stderr, "effnet train: --augment must be none, crop, autoaugment or randaugment, not '%s'\n", o->augment);
    return 2;
  }
  return 0;
}

// Per-channel mean and standard deviation of an in-memory dataset's pixels (in [0, 1]), the
// normalization small datasets are trained with.
static void pixel_stats(const ef_dataset *d, float mean[3], float std[3]) {
  double sum[3] = {0}, sq[3] = {0};
  size_t n = (size_t)d->n * d->h * d->w;
  for (size_t i = 0; i < n * (size_t)d->c; i++) {
    double v = d->pixels[i] / 255.0;
    sum[i % (size_t)d->c] += v, sq[i % (size_t)d->c] += v * v;
  }
  for (int c = 0; c < 3; c++) {
    int k = c < d->c ? c : 0;
    mean[c] = (float)(sum[k] / (double)n), std[c] = (float)sqrt(sq[k] / (double)n - (sum[k] / (double)n) * (sum[k] / (double)n));
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
static void build(model_graph *m, ef_store *store, const ef_transform *t, int64_t batch, int classes, bool training,
                  const train_opts *o) {
  m->g = ef_graph_new(store, o->seed);
  m->images = ef_input(m->g, "images", EF_F32, 4, (int64_t[]){batch, t->size, t->size, t->channels});
  if (!strcmp(o->model, "tiny")) {
    ef_layer_ctx c = {.g = m->g, .training = training, .padding = EF_PAD_SYMMETRIC, .bn_eps = 1e-3f, .bn_momentum = 0.1f};
    m->logits = ef_tiny_forward(&c, m->images, classes, (float)o->dropout);
  } else {
    ef_effnet_config cfg;
    ef_effnet_preset(o->model, &cfg); // validated by parse_opts
    cfg.num_classes = classes, cfg.in_channels = t->channels, cfg.dropout = (float)o->dropout;
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

// Top-1 accuracy of the evaluation graph over one pass of the loader (the graph's batch is fixed:
// a short last batch fills its first rows, and only its real samples count).
static ef_status evaluate(model_graph *m, ef_loader *l, const ef_transform *t, int64_t batch, int64_t classes, double *acc) {
  size_t sample = (size_t)t->size * t->size * t->channels;
  float *images = ef_xcalloc(sample * (size_t)batch, sizeof(float)), *logits = ef_xmalloc(sizeof(float) * (size_t)(batch * classes));
  int64_t correct = 0, total = 0;
  ef_status st = ef_loader_start(l, 0, 0);
  const ef_batch *b;
  while (st == EF_OK && (st = ef_loader_next(l, &b)) == EF_OK && b) {
    memcpy(images, b->images, sizeof(float) * sample * (size_t)b->n);
    ef_plan_set(m->plan, m->images, images);
    ef_plan_run(m->plan, &(ef_run_ctx){0});
    ef_plan_get(m->plan, m->logits, logits);
    for (int i = 0; i < b->real; i++) correct += argmax(logits + i * classes, classes) == b->labels[i];
    total += b->real;
  }
  free(images), free(logits);
  *acc = total ? (double)correct / (double)total : 0;
  return st;
}

// The training and evaluation transforms for the data and the flags.
// The training and evaluation transforms for the data and the flags; 2 after a message when the
// image size cannot be chosen.
static int transforms(const train_opts *o, const ef_dataset *d, ef_transform *train, ef_transform *eval) {
  int size = (int)o->image_size, channels = d->pixels ? d->c : 3;
  ef_effnet_config cfg;
  if (!size && d->pixels) size = d->h;
  if (!size && ef_effnet_preset(o->model, &cfg) == EF_OK) size = (int)cfg.resolution;
  if (!size) {
    fprintf(stderr, "effnet train: --model %s on image files needs --image-size\n", o->model);
    return 2;
  }
  *train = ef_transform_defaults(strcmp(o->augment, "none") != 0, size, channels);
  *eval = ef_transform_defaults(false, size, channels);
  if (d->pixels) { // small in-memory datasets: no centre crop, their own statistics
    train->crop_pct = eval->crop_pct = 1;
    pixel_stats(d, eval->mean, eval->std);
    memcpy(train->mean, eval->mean, sizeof eval->mean), memcpy(train->std, eval->std, sizeof eval->std);
  }
  if (!strcmp(o->augment, "autoaugment")) train->augment = EF_AUGMENT_AUTO;
  if (!strcmp(o->augment, "randaugment")) train->augment = EF_AUGMENT_RAND;
  return 0;
}

int ef_cmd_train(int argc, char **argv) {
  train_opts o;
  int rc = parse_opts(argc, argv, &o);
  if (rc) return rc;
  ef_dataset train = {0}, test = {0};
  if (ef_dataset_open(o.data, 1, &train) != EF_OK || ef_dataset_open(o.data, 0, &test) != EF_OK) {
    fprintf(stderr, "effnet train: %s\n(install Fashion-MNIST with scripts/install-deps.sh, or pass --data PATH)\n",
            ef_last_error());
    ef_dataset_free(&train);
    return 1;
  }
  if (test.num_classes != train.num_classes) {
    fprintf(stderr, "effnet train: the test split of %s has %d classes but the training split %d\n", o.data, test.num_classes,
            train.num_classes);
    ef_dataset_free(&train), ef_dataset_free(&test);
    return 1;
  }
  int64_t all_train = train.n;
  if (o.limit && o.limit < train.n) train.n = o.limit;
  int64_t classes = train.num_classes;
  // Evaluation is strict: a corrupt test image is an error, not a duplicate in the accuracy.
  ef_loader_config lc = {.data = &train, .batch = (int)o.batch, .shuffle = true, .drop_last = true, .as_float = true,
                         .seed = o.seed, .threads = (int)o.loader_threads};
  ef_loader_config ec = lc;
  ec.data = &test, ec.shuffle = false, ec.drop_last = false, ec.strict = true;
  if ((rc = transforms(&o, &train, &lc.transform, &ec.transform)) != 0) {
    ef_dataset_free(&train), ef_dataset_free(&test);
    return rc;
  }
  ef_loader *train_loader = NULL, *test_loader = NULL;
  ef_backend *be = NULL;
  ef_store *store = NULL;
  model_graph tr = {0}, ev = {0};
  ef_sgd sgd = {0};
  rc = 1;
  if (ef_loader_new(&train_loader, &lc) != EF_OK || ef_loader_new(&test_loader, &ec) != EF_OK) {
    fprintf(stderr, "effnet train: %s\n", ef_last_error());
    goto out;
  }
  int64_t steps = ef_loader_batches(train_loader);
  be = ef_cpu_backend_new((int)o.threads);
  store = ef_store_new();
  build(&tr, store, &lc.transform, o.batch, (int)classes, true, &o);
  build(&ev, store, &ec.transform, o.batch, (int)classes, false, &o);
  if (!be || ef_store_bind(store, be) != EF_OK ||
      ef_sgd_init(&sgd, store, &(ef_sgd_config){.momentum = (float)o.momentum, .weight_decay = (float)o.weight_decay}) != EF_OK ||
      ef_plan_new(&tr.plan, tr.g, be, &(ef_plan_opts){.profile = o.profile}) != EF_OK ||
      ef_plan_new(&ev.plan, ev.g, be, NULL) != EF_OK) {
    fprintf(stderr, "effnet train: %s\n", ef_last_error());
    goto out;
  }
  ef_store_initialize(store, o.seed);
  char tdesc[256], edesc[256];
  ef_transform_describe(&lc.transform, tdesc, sizeof tdesc);
  ef_transform_describe(&ec.transform, edesc, sizeof edesc);
  printf("effnet train: model %s (%zu parameters), data %s (%lld train / %lld test images, %lld classes)\n", o.model,
         store->numel[0], o.data, (long long)train.n, (long long)test.n, (long long)classes);
  printf("  input: %s; test: %s; %ld loader threads\n", tdesc, edesc, o.loader_threads);
  if (train.kind == EF_DATASET_FOLDER && !strcmp(train.source, test.source))
    printf("  note: %s has no separate test split (train/ and val/ folders), so the test accuracy below is measured"
           " on the training images\n", o.data);
  if (train.kind == EF_DATASET_LIST)
    printf("  note: a file list has no separate test split, so the test accuracy below is measured on the training"
           " images\n");
  printf("  epochs %ld, batch %ld, %lld steps/epoch, SGD lr %g momentum %g weight decay %g, label smoothing %g, dropout %g,"
         " seed %llu, %d threads\n",
         o.epochs, o.batch, (long long)steps, o.lr, o.momentum, o.weight_decay, o.smoothing, o.dropout, o.seed,
         ef_cpu_threads(be));
  printf("  activation memory: %.1f MiB planned for training (%.1f MiB without reuse)\n", (double)tr.plan->arena_bytes / 1048576.0,
         (double)tr.plan->naive_bytes / 1048576.0);

  float *logits = ef_xmalloc(sizeof(float) * (size_t)(o.batch * classes));
  double t_start = ef_seconds();
  uint32_t step = 0;
  for (long epoch = 0; epoch < o.epochs; epoch++) {
    double loss_sum = 0, t_log = ef_seconds();
    int64_t correct = 0, seen = 0, since = 0, s = 0;
    const ef_batch *b;
    ef_status st = ef_loader_start(train_loader, epoch, 0);
    for (; st == EF_OK && (st = ef_loader_next(train_loader, &b)) == EF_OK && b; s++, step++) {
      ef_plan_set(tr.plan, tr.images, b->images);
      ef_plan_set(tr.plan, tr.labels, b->labels);
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
      for (int64_t i = 0; i < o.batch; i++) correct += argmax(logits + i * classes, classes) == b->labels[i];
      loss_sum += loss, seen += o.batch, since += o.batch;
      if ((s + 1) % o.log_every == 0 || s + 1 == steps) {
        double t = ef_seconds();
        printf("epoch %ld/%ld  step %lld/%lld  loss %.4f  train acc %.2f%%  %.0f images/s\n", epoch + 1, o.epochs,
               (long long)(s + 1), (long long)steps, loss_sum / (double)(s + 1), 100.0 * (double)correct / (double)seen,
               (double)since / (t - t_log));
        fflush(stdout);
        t_log = t, since = 0;
      }
    }
    double acc = 0;
    if (st == EF_OK) st = evaluate(&ev, test_loader, &ec.transform, o.batch, classes, &acc);
    if (st != EF_OK) {
      fprintf(stderr, "effnet train: %s\n", ef_last_error());
      goto free_buffers;
    }
    printf("epoch %ld/%ld  test accuracy %.2f%% (%lld images)  %.1f s elapsed\n", epoch + 1, o.epochs, 100.0 * acc,
           (long long)test.n, ef_seconds() - t_start);
  }
  if (o.profile) ef_plan_profile_print(tr.plan, stdout);
  rc = 0;
free_buffers:
  free(logits);
out:
  ef_loader_free(train_loader), ef_loader_free(test_loader);
  ef_sgd_free(&sgd);
  destroy(&tr);
  destroy(&ev);
  ef_store_free(store);
  ef_backend_free(be);
  train.n = all_train;
  ef_dataset_free(&train), ef_dataset_free(&test);
  return rc;
}
