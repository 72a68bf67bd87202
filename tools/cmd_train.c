// `effnet train`: trains the tiny net or an EfficientNet on the CPU or a GPU, fed by the threaded
// loader, with a recipe (optimizer, learning-rate schedule, EMA, clipping, label smoothing);
// validates every epoch (top-1/top-5, also with the EMA), logs metrics.jsonl and TensorBoard
// events, and keeps checkpoints from which --resume continues bit for bit. SIGINT and SIGTERM
// save a checkpoint and stop. Under mpirun, data-parallel over the ranks (docs/distributed.md).
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/plan.h"
#include "cuda/cuda.h"
#include "data/loader.h"
#include "tools/device.h"
#include "tools/launch.h"
#include "tools/effnet.h"
#include "tools/flags.h"
#include "tools/model_args.h"
#include "tools/model_graph.h"
#include "train/finetune.h"
#include "train/metrics.h"
#include "train/comm.h"
#include "train/grad_sync.h"
#include "train/schedule.h"
#include "train/update.h"

typedef struct {
  const char *data, *model, *augment, *out, *resume, *recipe, *optimizer, *schedule, *device, *precision;
  const char *init, *freeze, *bn, *select_classes;   // fine-tuning
  long epochs, batch, threads, loader_threads, image_size, limit, val_limit, log_every, keep, stop_after, per_class;
  double lr, momentum, weight_decay, smoothing, warmup, decay_rate, decay_epochs, ema, clip, backbone_lr, bucket_mb;
  double comm_timeout;
  long sync_bn, gpus;
  unsigned long long seed;
  int profile, nesterov, decay_all;
  ef_model_args m;
  char strings[8192];      // the string values above, copied out of the argument words
  size_t used;
} train_opts;

static void train_usage(FILE *f) {
  fprintf(f,
          "usage: effnet train [flags]\n"
          "\n"
          "Trains a model on the CPU or a GPU: validation every epoch, checkpoints, metrics.jsonl and TensorBoard\n"
          "events in --out. Ctrl-C saves a checkpoint and stops; --resume goes on from it.\n"
          "\n"
          "  --model NAME          tiny, or an EfficientNet b0 ... b7 (or --phi F)  [tiny]\n"
          "  --data PATH           IDX, CIFAR-10/100 or ImageFolder directory, or a path,label .csv\n"
          "                        [" EF_FASHION_MNIST_DIR "]\n"
          "  --out DIR             the run's folder  [runs/<model>-<date>-<time>]\n"
          "  --resume DIR|FILE     go on from a checkpoint (DIR: its latest); other flags override\n"
          "  --recipe R            default (SGD, cosine) or official (the EfficientNet TF recipe:\n"
          "                        RMSProp, 0.016 per 256 images, 5 warm-up epochs, 0.97 every 2.4\n"
          "                        epochs, EMA 0.9999, AutoAugment, TF padding and BN); flags override\n"
          "  --epochs N            [default 10, official 350]\n"
          "  --batch N             images per step  [64]\n"
          "  --optimizer O         sgd, rmsprop or adamw  [sgd; official rmsprop]\n"
          "  --lr F                learning rate per 256 images, scaled by the batch  [0.4; 0.016]\n"
          "  --momentum F          SGD and RMSProp momentum  [0.9]\n"
          "  --nesterov            Nesterov momentum (SGD)\n"
          "  --weight-decay F      on conv and dense weights  [5e-5; official 1e-5]\n"
          "  --decay-all           weight decay on every parameter, BN and biases included\n"
          "  --schedule S          cosine, exponential or constant  [cosine; exponential]\n"
          "  --warmup F            epochs of linear warm-up  [0; 5]\n"
          "  --decay-rate F        exponential: factor per --decay-epochs  [0.97]\n"
          "  --decay-epochs F      [2.4]\n"
          "  --label-smoothing F   [0.1]\n"
          "  --ema F               EMA decay of weights and BN statistics (0: none)  [0; 0.9999]\n"
          "  --clip F              clip gradients to this global norm (0: no)  [0]\n"
          "  --image-size N        training resolution (0: the pretrained model's with --init, else the\n"
          "                        images' own size for IDX and CIFAR, the model's for image files)  [0]\n"
          "  --augment A           none (the evaluation geometry: resize, centre crop), crop\n"
          "                        (random-resized crop + flip), autoaugment or randaugment\n"
          "                        (crop + flip + the policy)  [none; official autoaugment]\n"
          "  --limit N             train on the first N images only (0: all)  [0]\n"
          "  --val-limit N         validate on the first N test images only (0: all)  [0]\n"
          "  --stop-after N        save a checkpoint and stop after N steps, as Ctrl-C does  [0]\n"
          "  --keep N              checkpoints kept besides best.h5  [3]\n"
          EF_DEVICE_USAGE
          "  --gpus N              data-parallel training on GPUs 0 ... N-1 of this host, one worker\n"
          "                        process each, started here (NCCL; no MPI needed)  [0: off]\n"
          "  --threads N           CPU threads (0: one per core)  [0]\n"
          "  --loader-threads N    threads decoding and augmenting ahead of the step  [1]\n"
          "  --seed N              initialization, order, augmentation and dropout  [1]\n"
          "  --log-every N         steps between progress lines when not on a terminal  [100]\n"
          "  --profile             print time per op kind after training\n"
          "  --bucket-mb F         several ranks: gradients all-reduced in buckets of F MiB while the\n"
          "                        backward pass runs (0: one all-reduce after it)  [4]\n"
          "  --sync-bn N           several ranks: batch-norm statistics over groups of N ranks (SyncBN;\n"
          "                        N divides the ranks; the number of ranks: the global batch; 0: off)  [0]\n"
          "  --comm-timeout S      GPU ranks: a collective waiting longer than S seconds (a rank died\n"
          "                        or hangs) ends the job  [600]\n"
          "\n"
          "fine-tuning (docs/transfer.md):\n"
          "  --init FILE           start from pretrained weights (`effnet import`, `effnet export`, or a\n"
          "                        checkpoint: its EMA when it has one): everything but the classifier\n"
          "                        loads, the classifier is re-initialized for the data's classes; the\n"
          "                        model, its input channels and its normalization come from FILE\n"
          "  --num-classes K       the classifier's outputs; must equal the data's  [the data's]\n"
          "  --freeze LIST         hold fixed (weights and BN statistics): stem, head, backbone,\n"
          "                        blocks.A-B (stages A to B), or name prefixes (blocks.2.1.se)\n"
          "  --bn MODE             other batch norms: train (batch statistics), eval (running\n"
          "                        statistics, kept) or frozen (also the affine fixed)  [train]\n"
          "  --backbone-lr F       learning-rate multiplier of all but the classifier  [1]\n"
          "  --select-classes LIST train and validate on these classes only, relabelled 0, 1, ...\n"
          "                        in this order (5-9, or 0,2,4-6)\n"
          "  --per-class N         train on the first N images of each class only (0: all)  [0]\n");
  ef_model_args_usage(f);
}

// The recipe's defaults, before the flags.
static void recipe_defaults(train_opts *o, const char *recipe) {
  ef_model_args m = o->m;
  *o = (train_opts){.data = EF_FASHION_MNIST_DIR, .model = "tiny", .augment = "none", .recipe = recipe, .optimizer = "sgd",
                    .schedule = "cosine", .precision = "f32", .epochs = 10, .batch = 64, .loader_threads = 1, .log_every = 100,
                    .keep = 3, .lr = 0.4, .momentum = 0.9, .weight_decay = 5e-5, .smoothing = 0.1, .decay_rate = 0.97,
                    .decay_epochs = 2.4, .seed = 1, .bn = "train", .backbone_lr = 1, .bucket_mb = 4, .comm_timeout = 600, .m = m};
  if (!strcmp(recipe, "official"))
    o->epochs = 350, o->optimizer = "rmsprop", o->lr = 0.016, o->weight_decay = 1e-5, o->schedule = "exponential",
    o->warmup = 5, o->ema = 0.9999, o->augment = "autoaugment";
}

// Parses argv over the recipe's defaults; `saved` (a checkpoint's arguments, may be empty) first.
static int parse_opts(int argc, char **argv, const char *saved, train_opts *o) {
  // The arguments: the saved ones, then these.
  char *copy = ef_xstrdup(saved ? saved : ""), *words[512];
  int n = 0;
  words[n++] = argv[0];
  for (char *w = strtok(copy, "\n"); w && n < 512; w = strtok(NULL, "\n")) words[n++] = w;
  for (int i = 1; i < argc && n < 512; i++) words[n++] = argv[i];
  if (n == 512) {
    fprintf(stderr, "effnet train: more than 510 arguments: give fewer\n");
    free(copy);
    return 2;
  }
  const char *recipe = "default";
  for (int i = 1; i + 1 < n; i++)
    if (!strcmp(words[i], "--recipe")) recipe = words[i + 1];
  if (strcmp(recipe, "default") && strcmp(recipe, "official")) {
    fprintf(stderr, "effnet train: --recipe must be default or official, not '%s'\n", recipe);
    free(copy);
    return 2;
  }
  ef_flag flags[48 + EF_MODEL_FLAGS] = {
      {"--data", EF_FLAG_STR, &o->data},          {"--model", EF_FLAG_STR, &o->model},
      {"--out", EF_FLAG_STR, &o->out},            {"--resume", EF_FLAG_STR, &o->resume},
      {"--recipe", EF_FLAG_STR, &o->recipe},      {"--optimizer", EF_FLAG_STR, &o->optimizer},
      {"--schedule", EF_FLAG_STR, &o->schedule},  {"--device", EF_FLAG_STR, &o->device},
      {"--precision", EF_FLAG_STR, &o->precision},
      {"--augment", EF_FLAG_STR, &o->augment},    {"--epochs", EF_FLAG_LONG, &o->epochs, 1, 1e6},
      {"--batch", EF_FLAG_LONG, &o->batch, 1, 1 << 20}, {"--lr", EF_FLAG_DOUBLE, &o->lr, 1e-9, 100},
      {"--momentum", EF_FLAG_DOUBLE, &o->momentum, 0, 0.999999}, {"--weight-decay", EF_FLAG_DOUBLE, &o->weight_decay, 0, 1},
      {"--label-smoothing", EF_FLAG_DOUBLE, &o->smoothing, 0, 0.999999}, {"--warmup", EF_FLAG_DOUBLE, &o->warmup, 0, 1e6},
      {"--decay-rate", EF_FLAG_DOUBLE, &o->decay_rate, 1e-6, 1}, {"--decay-epochs", EF_FLAG_DOUBLE, &o->decay_epochs, 1e-3, 1e6},
      {"--ema", EF_FLAG_DOUBLE, &o->ema, 0, 0.999999999}, {"--clip", EF_FLAG_DOUBLE, &o->clip, 0, 1e9},
      {"--image-size", EF_FLAG_LONG, &o->image_size, 0, 4096}, {"--limit", EF_FLAG_LONG, &o->limit, 0, 1e12},
      {"--val-limit", EF_FLAG_LONG, &o->val_limit, 0, 1e12},
      {"--stop-after", EF_FLAG_LONG, &o->stop_after, 0, 1e12}, {"--keep", EF_FLAG_LONG, &o->keep, 1, 1e6},
      {"--threads", EF_FLAG_LONG, &o->threads, 0, 4096}, {"--loader-threads", EF_FLAG_LONG, &o->loader_threads, 0, 256},
      {"--seed", EF_FLAG_U64, &o->seed},          {"--log-every", EF_FLAG_LONG, &o->log_every, 1, 1e9},
      {"--profile", EF_FLAG_BOOL, &o->profile},  {"--nesterov", EF_FLAG_BOOL, &o->nesterov},
      {"--decay-all", EF_FLAG_BOOL, &o->decay_all},
      {"--init", EF_FLAG_STR, &o->init},          {"--num-classes", EF_FLAG_LONG, &o->m.classes, 1, 1 << 24},
      {"--freeze", EF_FLAG_STR, &o->freeze},      {"--bn", EF_FLAG_STR, &o->bn},
      {"--backbone-lr", EF_FLAG_DOUBLE, &o->backbone_lr, 0, 1e3}, {"--select-classes", EF_FLAG_STR, &o->select_classes},
      {"--per-class", EF_FLAG_LONG, &o->per_class, 0, 1e12},      {"--bucket-mb", EF_FLAG_DOUBLE, &o->bucket_mb, 0, 1024},
      {"--sync-bn", EF_FLAG_LONG, &o->sync_bn, 0, 1 << 20},    {"--gpus", EF_FLAG_LONG, &o->gpus, 0, 1024},
      {"--comm-timeout", EF_FLAG_DOUBLE, &o->comm_timeout, 1, 1e7},
  };
  int nflags = 0;
  while (flags[nflags].name) nflags++;
  ef_model_args_init(&o->m, flags + nflags);
  recipe_defaults(o, recipe);
  int rc = ef_flags_parse("train", n, words, flags, nflags + EF_MODEL_FLAGS, NULL, 0, train_usage);
  // The words die with `copy`: keep the values in o->strings.
  const char **strs[] = {&o->data,   &o->model,     &o->augment,  &o->out,    &o->resume,  &o->recipe, &o->optimizer,
                         &o->schedule, &o->device, &o->m.padding, &o->init, &o->freeze, &o->bn,    &o->select_classes,
                         &o->precision};
  for (size_t i = 0; i < sizeof strs / sizeof strs[0] && !rc; i++) {
    if (!*strs[i]) continue;
    size_t len = strlen(*strs[i]) + 1;
    if (o->used + len > sizeof o->strings) {
      fprintf(stderr, "effnet train: the paths and names given take more than %zu bytes: use shorter paths\n", sizeof o->strings);
      rc = 2;
      break;
    }
    *strs[i] = memcpy(o->strings + o->used, *strs[i], len);
    o->used += len;
  }
  free(copy);
  if (rc) return rc;
  static const char *const choices[][5] = {
      {"--optimizer", "sgd", "rmsprop", "adamw", NULL},  {"--schedule", "cosine", "exponential", "constant", NULL},
      {"--augment", "none", "crop", "autoaugment", "randaugment"}, {"--bn", "train", "eval", "frozen", NULL}};
  const char *values[] = {o->optimizer, o->schedule, o->augment, o->bn};
  for (int c = 0; c < 4; c++) {
    bool ok = false;
    for (int k = 1; k < 5 && choices[c][k]; k++) ok |= !strcmp(values[c], choices[c][k]);
    if (!ok) {
      fprintf(stderr, "effnet train: %s '%s' is not one of:", choices[c][0], values[c]);
      for (int k = 1; k < 5 && choices[c][k]; k++) fprintf(stderr, " %s", choices[c][k]);
      fprintf(stderr, "\n");
      return 2;
    }
  }
  // --gpus: each worker on the GPU of its rank (--device, unset, means cuda then).
  if (o->gpus && o->device && strcmp(o->device, "cuda")) {
    fprintf(stderr, "effnet train: --gpus %ld runs one worker on each of GPUs 0 ... %ld: drop --device %s "
                    "(CUDA_VISIBLE_DEVICES chooses which GPUs those are)\n", o->gpus, o->gpus - 1, o->device);
    return 2;
  }
  if (!o->device) o->device = o->gpus ? "cuda" : "cpu";
  ef_device d;
  if (ef_device_parse(&d, "train", o->device, o->precision)) return 2;
  if (o->init && (strcmp(o->model, "tiny") || !isnan(o->m.phi) || !isnan(o->m.width) || !isnan(o->m.depth) || o->m.padding ||
                  o->m.in_channels)) {
    fprintf(stderr, "effnet train: --init gives the architecture (width, depth, padding, input channels): drop --model, "
                    "--phi, --width, --depth, --padding and --in-channels\n");
    return 2;
  }
  ef_effnet_config cfg;
  if (strcmp(o->model, "tiny") && isnan(o->m.phi) && ef_effnet_preset(o->model, &cfg) != EF_OK) {
    fprintf(stderr, "effnet train: unknown model '%s': use tiny or b0 ... b7\n", o->model);
    return 2;
  }
  return 0;
}

// This run's arguments, one per line (what a checkpoint keeps and --resume replays): the saved
// ones with these applied, each flag once with its last value, without the ones that concern this
// session only (--resume, --stop-after, --out, --gpus; --gpus leaves --device cuda behind).
static int join_args(int argc, char **argv, const char *saved, char *buf, size_t len) {
  char *copy = ef_xstrdup(saved ? saved : ""), *words[1024];
  int n = 0;
  for (char *w = strtok(copy, "\n"); w && n < 1024; w = strtok(NULL, "\n")) words[n++] = w;
  for (int i = 1; i < argc && n < 1024; i++) words[n++] = argv[i];
  // Pairs (flag, value or NULL for a boolean flag), the last value of each flag kept in place.
  const char *flag[512], *value[512];
  int pairs = 0;
  bool gpus = false; // --gpus implies --device cuda: a resume without --gpus stays on a GPU
  for (int i = 0; i < n; i++) {
    const char *f = words[i], *v = i + 1 < n && strncmp(words[i + 1], "--", 2) ? words[++i] : NULL;
    gpus |= !strcmp(f, "--gpus") && v && strcmp(v, "0");
    if (!strcmp(f, "--resume") || !strcmp(f, "--stop-after") || !strcmp(f, "--out") || !strcmp(f, "--gpus")) continue;
    int k = 0;
    while (k < pairs && strcmp(flag[k], f)) k++;
    if (k == pairs && pairs < 512) flag[pairs++] = f;
    if (k < pairs) value[k] = v;
  }
  int dev = 0;
  while (dev < pairs && strcmp(flag[dev], "--device")) dev++;
  if (gpus && dev == pairs && pairs < 512) flag[pairs] = "--device", value[pairs++] = "cuda";
  size_t used = 0;
  for (int k = 0; k < pairs && used < len; k++)
    used += (size_t)snprintf(buf + used, len - used, value[k] ? "%s\n%s\n" : "%s\n", flag[k], value[k]);
  if (!pairs) buf[0] = 0;
  free(copy);
  if (used < len && n < 1024) return 0;
  fprintf(stderr, "effnet train: the arguments take more than %zu bytes, more than a checkpoint keeps: use shorter paths\n", len - 1);
  return 2;
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

// The model, its input and the transforms for the data and the flags (and the pretrained model's
// architecture, channels and normalization when fine-tuning: `pre` not NULL); 2 after a message.
static int describe_run(const train_opts *o, const ef_dataset *d, const ef_pretrained *pre, ef_checkpoint_info *info,
                        ef_transform *train) {
  memset(info, 0, sizeof *info);
  int channels = pre ? pre->cfg.in_channels : d->pixels ? d->c : 3;
  bool tiny = !pre && !strcmp(o->model, "tiny") && isnan(o->m.phi);
  snprintf(info->arch, sizeof info->arch, "%s", tiny ? "tiny" : "efficientnet");
  if (!tiny) {
    ef_model_args m = o->m;
    if (!m.classes) m.classes = d->num_classes;
    if (!m.in_channels) m.in_channels = channels;
    if (!strcmp(o->recipe, "official") && !pre) { // TF's padding and batch norm unless overridden
      if (!m.padding) m.padding = "same";
      if (isnan(m.bn_eps)) m.bn_eps = 1e-3;
      if (isnan(m.bn_momentum)) m.bn_momentum = 0.01;
    }
    int rc = pre ? (info->cfg = pre->cfg, ef_model_args_apply("train", &m, &info->cfg))
                 : ef_model_args_config("train", isnan(m.phi) ? o->model : NULL, &m, &info->cfg);
    if (rc) return rc;
    if (info->cfg.num_classes != d->num_classes) {
      fprintf(stderr, "effnet train: the model has %d classes but %s has %d\n", info->cfg.num_classes, o->data, d->num_classes);
      return 2;
    }
  } else {
    info->cfg.dropout = isnan(o->m.dropout) ? 0.2f : (float)o->m.dropout;
  }
  info->num_classes = d->num_classes, info->in_channels = channels;
  int size = (int)o->image_size;
  if (!size && pre) size = pre->cfg.resolution; // fine-tuning: the pretrained model's resolution
  if (!size && d->pixels) size = d->h;
  if (!size && !tiny) size = info->cfg.resolution;
  if (!size) {
    fprintf(stderr, "effnet train: --model tiny on image files needs --image-size\n");
    return 2;
  }
  info->cfg.resolution = size;
  *train = ef_transform_defaults(strcmp(o->augment, "none") != 0, size, channels);
  info->eval = ef_transform_defaults(false, size, channels);
  if (d->pixels) train->crop_pct = info->eval.crop_pct = 1; // small in-memory datasets: no centre crop
  // The normalization: a pretrained model's own (ImageNet's when its file records none), else
  // for small in-memory datasets their statistics (else ImageNet's, the transform's default).
  if (pre && pre->recorded_norm) memcpy(info->eval.mean, pre->mean, sizeof pre->mean), memcpy(info->eval.std, pre->std, sizeof pre->std);
  else if (!pre && d->pixels) pixel_stats(d, info->eval.mean, info->eval.std);
  memcpy(train->mean, info->eval.mean, sizeof train->mean), memcpy(train->std, info->eval.std, sizeof train->std);
  if (!strcmp(o->augment, "autoaugment")) train->augment = EF_AUGMENT_AUTO;
  if (!strcmp(o->augment, "randaugment")) train->augment = EF_AUGMENT_RAND;
  size_t used = 0;
  for (int c = 0; c < d->num_classes && used < sizeof info->class_names; c++)
    used += (size_t)snprintf(info->class_names + used, sizeof info->class_names - used, "%s\n", d->class_names[c]);
  if (used >= sizeof info->class_names) {
    fprintf(stderr, "effnet train: the %d class names take more than %zu bytes, more than a checkpoint keeps\n", d->num_classes,
            sizeof info->class_names - 1);
    return 2;
  }
  return 0;
}

// ---- checkpoints in the run folder -------------------------------------------------------------

// The steps of the ckpt-<step>.h5 files in dir, ascending; returns how many (at most max).
static int list_checkpoints(const char *dir, long long *steps, int max) {
  DIR *d = opendir(dir);
  int n = 0;
  struct dirent *e;
  while (d && (e = readdir(d))) {
    long long s;
    char tail[8];
    if (sscanf(e->d_name, "ckpt-%lld%7s", &s, tail) == 2 && !strcmp(tail, ".h5") && n < max) steps[n++] = s;
  }
  if (d) closedir(d);
  for (int i = 1; i < n; i++) // insertion sort: a few files
    for (int j = i; j > 0 && steps[j - 1] > steps[j]; j--) {
      long long t = steps[j];
      steps[j] = steps[j - 1], steps[j - 1] = t;
    }
  return n;
}

static void checkpoint_path(char *buf, size_t len, const char *dir, long long step) {
  snprintf(buf, len, "%s/ckpt-%012lld.h5", dir, step);
}

// --resume DIR|FILE: the file to resume from.
static int resolve_resume(const char *resume, char *path, size_t len) {
  struct stat st;
  if (stat(resume, &st) != 0) {
    fprintf(stderr, "effnet train: cannot resume from %s: %s\n", resume, strerror(errno));
    return 1;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(path, len, "%s", resume);
    return 0;
  }
  long long steps[4096];
  int n = list_checkpoints(resume, steps, 4096);
  if (!n) {
    fprintf(stderr, "effnet train: %s holds no checkpoint (ckpt-<step>.h5) to resume from\n", resume);
    return 1;
  }
  checkpoint_path(path, len, resume, steps[n - 1]);
  return 0;
}

// ---- the run -----------------------------------------------------------------------------------

static volatile sig_atomic_t stop_signal;
static void on_signal(int sig) { stop_signal = sig; }

typedef struct {
  train_opts o;
  ef_dataset train, test;
  int64_t all_train, all_test;
  ef_transform train_tf;
  ef_checkpoint_info info;
  ef_loader *train_loader, *test_loader;
  ef_device dev;              // --device, --precision
  ef_backend *be;             // dev.be
  ef_store *store;
  ef_model_graph tr, ev;
  ef_optim optim;
  ef_ema ema;
  bool has_ema;
  ef_schedule sched;
  ef_metrics *metrics;        // rank 0 only
  char out[4096];
  ef_comm *comm;              // the ranks; rank 0 alone prints, logs and writes files
  ef_comm *bn_comm;           // --sync-bn: this rank's group, over which batch norms normalize
  ef_grad_sync sync;          // the gradient buckets (none: one all-reduce after the backward pass)
  int64_t global_batch;       // --batch (per rank) x ranks: what the learning rate follows
  ef_device_update upd;       // on a GPU: the update as kernels, and the whole step ...
  ef_capture step_graph;      // ... captured once as a CUDA graph and replayed
  int64_t good_steps;         // f16: steps since the loss scale last changed
} run;

static void run_free(run *r) {
  ef_metrics_close(r->metrics);
  ef_loader_free(r->train_loader), ef_loader_free(r->test_loader);
  // The step's graph before NCCL's communicators (they wait for the graphs that use them), and
  // those before the memory their collectives used.
  if (r->be) ef_capture_free(&r->step_graph, r->be);
  ef_grad_sync_free(&r->sync);
  ef_comm_free(r->bn_comm);
  ef_comm_free(r->comm);
  if (r->upd.be) ef_device_update_free(&r->upd);
  ef_optim_free(&r->optim);
  if (r->has_ema) ef_ema_free(&r->ema);
  ef_model_graph_free(&r->tr), ef_model_graph_free(&r->ev);
  ef_store_free(r->store);
  ef_device_close(&r->dev);
  r->train.n = r->all_train, r->test.n = r->all_test;
  ef_dataset_free(&r->train), ef_dataset_free(&r->test);
}

// Saves a checkpoint at the current position, keeps the newest --keep, and copies it to best.h5
// when `best`.
static ef_status save(run *r, bool best) {
  char path[4200];
  if (best) { // first: a checkpoint recording the new best is never on disk without best.h5
    snprintf(path, sizeof path, "%s/best.h5", r->out);
    EF_TRY(ef_checkpoint_save(path, r->store, r->has_ema ? &r->ema : NULL, &r->optim, &r->info));
  }
  checkpoint_path(path, sizeof path, r->out, (long long)r->info.step);
  EF_TRY(ef_checkpoint_save(path, r->store, r->has_ema ? &r->ema : NULL, &r->optim, &r->info));
  long long steps[4096];
  int n = list_checkpoints(r->out, steps, 4096);
  for (int i = 0; i + r->o.keep < n; i++) {
    checkpoint_path(path, sizeof path, r->out, steps[i]);
    if (unlink(path) != 0) fprintf(stderr, "effnet: warning: cannot remove the old checkpoint %s: %s\n", path, strerror(errno));
  }
  return EF_OK;
}

// Every rank evaluated its shard of the test set (each image real on exactly one rank): the
// results over the whole set, the same on every rank.
static void combine_eval(ef_comm *c, ef_eval_result *e) {
  if (c->world == 1) return;
  double sums[4] = {e->loss * (double)e->images, round(e->top1 * (double)e->images), round(e->top5 * (double)e->images),
                    (double)e->images};
  c->allreduce(c, sums, 4, EF_COMM_F64, EF_COMM_SUM);
  e->images = (int64_t)sums[3];
  e->loss = sums[0] / sums[3], e->top1 = sums[1] / sums[3], e->top5 = sums[2] / sums[3];
}

// BN running statistics (and their EMA) are each rank's own, from its own batches: rank 0's, the
// ones its checkpoints save, go to every rank, so that all evaluate the model that is saved.
static void share_bn_statistics(run *r) {
  r->comm->broadcast(r->comm, r->store->mem[EF_ARENA_STATE], sizeof(float) * r->store->numel[1], 0);
  if (r->has_ema) r->comm->broadcast(r->comm, r->ema.shadow[EF_ARENA_STATE], sizeof(float) * r->ema.numel[EF_ARENA_STATE], 0);
  r->comm->sync(r->comm); // on GPUs, within --comm-timeout
}

// Validation with the live weights and, with an EMA, with the averaged ones, sharded over the
// ranks: logged and printed by rank 0.
static ef_status validate(run *r, double *top1) {
  ef_eval_result live, avg = {0};
  share_bn_statistics(r);
  EF_TRY(ef_model_evaluate(&r->ev, r->test_loader, &live));
  combine_eval(r->comm, &live);
  *top1 = live.top1;
  if (r->has_ema) {
    ef_ema_swap(&r->ema, r->store);
    ef_status st = ef_model_evaluate(&r->ev, r->test_loader, &avg);
    ef_ema_swap(&r->ema, r->store);
    EF_TRY(st);
    combine_eval(r->comm, &avg);
    *top1 = avg.top1;
  }
  if (r->comm->rank == 0) {
    printf("epoch %lld/%ld  validation: loss %.4f  top-1 %.2f%%  top-5 %.2f%%", (long long)r->info.epoch, r->o.epochs, live.loss,
           100 * live.top1, 100 * live.top5);
    if (r->has_ema) printf("  |  EMA: loss %.4f  top-1 %.2f%%  top-5 %.2f%%", avg.loss, 100 * avg.top1, 100 * avg.top5);
    printf("  (%lld images)\n", (long long)live.images);
    const char *tags[] = {"val/loss", "val/top1", "val/top5", "val_ema/loss", "val_ema/top1", "val_ema/top5"};
    double values[] = {live.loss, live.top1, live.top5, avg.loss, avg.top1, avg.top5};
    EF_TRY(ef_metrics_log(r->metrics, r->info.step, (int)r->info.epoch, r->has_ema ? 6 : 3, tags, values));
  }
  if (!isfinite(live.loss) || (r->has_ema && !isfinite(avg.loss)))
    return EF_ERROR(EF_ERR_NUMERIC, "the validation loss after epoch %lld is not finite: the model is broken, nothing is saved. "
                    "Lower --lr, or add --clip", (long long)r->info.epoch);
  return EF_OK;
}

// Progress: a line rewritten in place on a terminal, plain lines every --log-every steps otherwise.
static void progress(const run *r, int64_t batch, int64_t batches, double loss, double acc, double lr, double rate, double eta,
                     bool tty) {
  if (tty) {
    printf("\repoch %lld/%ld  step %lld/%lld  loss %.4f  acc %.2f%%  lr %.3g  %.0f images/s  ETA %02d:%02d:%02d ",
           (long long)r->info.epoch + 1, r->o.epochs, (long long)batch, (long long)batches, loss, 100 * acc, lr, rate,
           (int)(eta / 3600), (int)fmod(eta / 60, 60), (int)fmod(eta, 60));
  } else {
    printf("epoch %lld/%ld  step %lld/%lld  loss %.4f  train acc %.2f%%  lr %.4g  %.0f images/s\n", (long long)r->info.epoch + 1,
           r->o.epochs, (long long)batch, (long long)batches, loss, 100 * acc, lr, rate);
  }
  fflush(stdout);
}

// Builds everything for a fresh run or a resumed one; returns 0, or the exit status after a message.
static int setup(run *r, int argc, char **argv) {
  char resume_path[4200] = "", resume_arg[4096] = "", args[8192];
  int rc = parse_opts(argc, argv, NULL, &r->o);
  if (rc) return rc;
  ef_checkpoint_info saved = {0};
  if (r->o.resume) { // the checkpoint's arguments, then these
    snprintf(resume_arg, sizeof resume_arg, "%s", r->o.resume);
    if ((rc = resolve_resume(resume_arg, resume_path, sizeof resume_path)) != 0) return rc;
    if (ef_checkpoint_read_info(resume_path, &saved) != EF_OK) {
      fprintf(stderr, "effnet train: %s\n", ef_last_error());
      return 1;
    }
    if ((rc = parse_opts(argc, argv, saved.args, &r->o)) != 0) return rc;
  }
  bool resuming = *resume_arg != 0;
  if ((rc = join_args(argc, argv, resuming ? saved.args : NULL, args, sizeof args)) != 0) return rc;
  const train_opts *o = &r->o;
  // Fine-tuning: the pretrained model (resuming: as the checkpoint records it, classes included).
  ef_pretrained pre;
  if (o->init && ef_pretrained_read(resuming ? resume_path : o->init, &pre) != EF_OK) {
    fprintf(stderr, "effnet train: --init: %s\n", ef_last_error());
    return 1;
  }
  ef_status opened = ef_dataset_open(o->data, 1, &r->train);
  if (opened == EF_OK) opened = ef_dataset_open(o->data, 0, &r->test);
  r->all_train = r->train.n, r->all_test = r->test.n; // what run_free frees (--limit cuts n below)
  if (opened != EF_OK) {
    fprintf(stderr, "effnet train: %s\n(install Fashion-MNIST with scripts/install-deps.sh, or pass --data PATH)\n",
            ef_last_error());
    return 1;
  }
  ef_status selected = EF_OK;
  if (o->select_classes || o->per_class) selected = ef_dataset_select(&r->train, o->select_classes, o->per_class);
  if (selected == EF_OK && o->select_classes) selected = ef_dataset_select(&r->test, o->select_classes, 0);
  r->all_train = r->train.n, r->all_test = r->test.n; // a selection freed the rest (a failed one nothing)
  if (selected != EF_OK) {
    fprintf(stderr, "effnet train: %s\n", ef_last_error());
    return 2;
  }
  if (r->test.num_classes != r->train.num_classes) {
    fprintf(stderr, "effnet train: the test split of %s has %d classes but the training split %d\n", o->data,
            r->test.num_classes, r->train.num_classes);
    return 1;
  }
  if (o->limit && o->limit < r->train.n) r->train.n = o->limit;
  if (o->val_limit && o->val_limit < r->test.n) r->test.n = o->val_limit;
  if ((rc = describe_run(o, &r->train, o->init ? &pre : NULL, &r->info, &r->train_tf)) != 0) return rc;
  snprintf(r->info.args, sizeof r->info.args, "%s", args);
  r->info.seed = o->seed, r->info.best_top1 = -1;
  // The run folder: --out given now, else (resuming) the checkpoint's folder, else a new one. A
  // run never writes into a folder holding checkpoints of another history.
  const char *out_now = NULL;
  for (int i = 1; i + 1 < argc; i++)
    if (!strcmp(argv[i], "--out")) out_now = argv[i + 1];
  char resume_dir[sizeof r->out] = ".";
  const char *slash = strrchr(resume_path, '/');
  size_t dir_len = slash ? (size_t)(slash - resume_path) : 0;
  if (dir_len >= sizeof resume_dir) {
    fprintf(stderr, "effnet train: the path %s is too long\n", resume_path);
    return 2;
  }
  if (slash) memcpy(resume_dir, resume_path, dir_len), resume_dir[dir_len] = 0;
  if (out_now) snprintf(r->out, sizeof r->out, "%s", out_now);
  else if (resuming) memcpy(r->out, resume_dir, sizeof r->out);
  else {
    char stamp[32];
    time_t now = time(NULL);
    strftime(stamp, sizeof stamp, "%Y%m%d-%H%M%S", localtime(&now));
    snprintf(r->out, sizeof r->out, "runs/%s-%s", o->model, stamp);
  }
  long long steps[4096];
  int n_ckpt = list_checkpoints(r->out, steps, 4096);
  bool same_folder = resuming && !strcmp(r->out, resume_dir);
  if (n_ckpt && !same_folder) {
    fprintf(stderr, "effnet train: %s already holds checkpoints of another run: resume them with --resume %s, or choose another --out\n",
            r->out, r->out);
    return 2;
  }
  if (same_folder && steps[n_ckpt - 1] > saved.step) {
    fprintf(stderr, "effnet train: %s is not the latest checkpoint of %s (step %lld is): to branch from it, give a new --out\n",
            resume_path, r->out, steps[n_ckpt - 1]);
    return 2;
  }
  // Loaders, graphs, optimizer, EMA, schedule.
  // Each rank trains on its shard (positions rank, rank + world, ... of the epoch's permutation)
  // and validates on its shard of the test set.
  ef_loader_config lc = {.data = &r->train, .transform = r->train_tf, .batch = (int)o->batch, .shuffle = true,
                         .drop_last = true, .as_float = true, .seed = o->seed, .threads = (int)o->loader_threads,
                         .rank = r->comm->rank, .world = r->comm->world};
  ef_loader_config ec = lc; // evaluation is strict: a corrupt test image is an error, not a duplicate
  ec.data = &r->test, ec.transform = r->info.eval, ec.shuffle = false, ec.drop_last = false, ec.strict = true;
  ef_optim_config oc = ef_optim_defaults(!strcmp(o->optimizer, "sgd") ? EF_OPT_SGD : !strcmp(o->optimizer, "rmsprop") ? EF_OPT_RMSPROP : EF_OPT_ADAMW);
  oc.momentum = oc.kind == EF_OPT_ADAMW ? oc.momentum : o->momentum, oc.weight_decay = o->weight_decay;
  oc.nesterov = o->nesterov, oc.decay_all = o->decay_all;
  if (!strcmp(r->comm->name, "launched") && o->gpus != r->comm->world) {
    fprintf(stderr, "effnet train: %s is set, as for a worker of `effnet train --gpus %d`, but --gpus is %ld: unset "
                    "%s and %s to run effnet yourself\n", EF_LAUNCH_RANK, r->comm->world, o->gpus, EF_LAUNCH_RANK, EF_LAUNCH_WORLD);
    return 2;
  }
#ifndef EFFNET_NCCL
  if (!strncmp(o->device, "cuda", 4) && (r->comm->world > 1 || !strcmp(r->comm->name, "launched"))) {
    fprintf(stderr, "effnet train: data-parallel training on GPUs goes through NCCL, and this effnet was built without it: "
                    "install NCCL (or set NCCL_ROOT) and rebuild, or train on CPU ranks\n");
    return 2;
  }
#endif
  // Several ranks on GPUs: each on the GPU of its local rank (modulo the GPUs it sees: 0 where a
  // scheduler shows each rank one GPU).
  char device[32];
  snprintf(device, sizeof device, "%s", o->device);
  if (!strncmp(o->device, "cuda", 4) && r->comm->world > 1) {
    if (strcmp(o->device, "cuda")) {
      fprintf(stderr, "effnet train: with %d ranks each uses the GPU of its local rank: write --device cuda, not %s\n",
              r->comm->world, o->device);
      return 2;
    }
    char why[256];
    int visible = ef_cuda_device_count(why, sizeof why);
    snprintf(device, sizeof device, "cuda:%d", visible > 0 ? r->comm->local_rank % visible : 0);
  }
  int drc = ef_device_open(&r->dev, "train", device, o->precision, (int)o->threads);
  if (drc) return drc;
  r->be = r->dev.be;
  r->store = ef_store_new();
  ef_status st = ef_loader_new(&r->train_loader, &lc);
  if (st == EF_OK) st = ef_loader_new(&r->test_loader, &ec);
  // The evaluation graph registers the parameters; the fine-tuning marks go on them before the
  // training graph is built (frozen entries get no gradient there).
  if (st == EF_OK)
    st = ef_model_graph_new(&r->ev, r->store, NULL, &r->info, o->batch, false, 0, o->seed, false, 1, r->dev.activations);
  size_t frozen = 0;
  if (st == EF_OK && o->freeze) st = ef_freeze(r->store, o->freeze, &frozen);
  if (st == EF_OK) st = ef_bn_mode(r->store, o->bn);
  if (st == EF_OK) ef_backbone_lr(r->store, (float)o->backbone_lr);
  // SyncBN: the training graph's batch norms over groups of --sync-bn ranks.
  if (st == EF_OK && o->sync_bn > 1 && r->comm->world % o->sync_bn)
    st = EF_ERROR(EF_ERR_INVALID, "--sync-bn %ld needs a number of ranks it divides (this run has %d)", o->sync_bn, r->comm->world);
  if (st == EF_OK)
    st = ef_model_graph_new(&r->tr, r->store, NULL, &r->info, o->batch, true, (float)o->smoothing, o->seed, false, (int)o->sync_bn,
                            r->dev.activations);
  if (st == EF_OK) st = ef_store_bind(r->store, r->be);
  if (st == EF_OK) st = ef_plan_new(&r->tr.plan, r->tr.g, r->be, &(ef_plan_opts){.profile = o->profile});
  if (st == EF_OK) st = ef_plan_new(&r->ev.plan, r->ev.g, r->be, NULL);
  if (st == EF_OK) ef_store_initialize(r->store, o->seed);
  if (st == EF_OK && o->init && !resuming) st = ef_pretrained_load(o->init, &pre, r->store);
  if (st == EF_OK) st = ef_optim_init(&r->optim, r->store, &oc);
  if (st == EF_OK && o->ema > 0) st = ef_ema_init(&r->ema, r->store, o->ema), r->has_ema = st == EF_OK;
  if (st == EF_OK && r->dev.cuda) st = ef_device_update_init(&r->upd, &r->optim, r->store);
  int64_t batches = st == EF_OK ? ef_loader_batches(r->train_loader) : 0;
  r->global_batch = o->batch * r->comm->world;
  ef_schedule_config sc = {.decay = !strcmp(o->schedule, "cosine") ? EF_LR_COSINE : !strcmp(o->schedule, "exponential") ? EF_LR_EXPONENTIAL : EF_LR_CONSTANT,
                           .base_lr = o->lr, .batch = r->global_batch, .steps_per_epoch = (double)batches, .warmup_epochs = o->warmup,
                           .decay_epochs = o->decay_epochs, .decay_rate = o->decay_rate, .epochs = (double)o->epochs};
  if (st == EF_OK) st = ef_schedule_init(&r->sched, &sc);
  if (st == EF_OK && resuming) {
    st = ef_checkpoint_load(resume_path, r->store, r->has_ema ? &r->ema : NULL, &r->optim);
    // The position: epoch_seen images of the epoch, over all ranks, whatever their number then;
    // in batches of this run's global batch.
    r->info.step = saved.step, r->info.epoch = saved.epoch, r->info.batch = saved.epoch_seen / r->global_batch;
    r->info.best_top1 = saved.best_top1;
    if (st == EF_OK && saved.epoch_seen % r->global_batch)
      st = EF_ERROR(EF_ERR_INVALID, "%s stopped %lld images into epoch %lld, not a whole number of global batches of %lld "
                    "(--batch %ld x %d ranks): resume with a --batch and a number of ranks whose product divides %lld, "
                    "or from a checkpoint saved at an epoch's end", resume_path, (long long)saved.epoch_seen,
                    (long long)saved.epoch + 1, (long long)r->global_batch, o->batch, r->comm->world, (long long)saved.epoch_seen);
    r->info.epoch_loss = saved.epoch_loss, r->info.epoch_correct = saved.epoch_correct, r->info.epoch_seen = saved.epoch_seen;
    r->info.loss_scale = saved.loss_scale;
  }
  // f16: the loss scaled up (from 2^16, halved on overflow, doubled after 2000 good steps) so that
  // small gradients survive in 16 bits; the update divides it out.
  if (r->dev.activations != EF_F16) r->info.loss_scale = 1;
  else if (!(r->info.loss_scale > 0)) r->info.loss_scale = 65536;
  if (st == EF_OK) ef_model_graph_loss_scale(&r->tr, (float)r->info.loss_scale);
  if (st == EF_OK && r->comm->rank == 0) st = ef_metrics_open(&r->metrics, r->out, resuming);
  if (st == EF_OK && r->comm->rank == 0) {
    char names[4200];
    snprintf(names, sizeof names, "%s/classes.txt", r->out);
    st = ef_classes_write(names, r->train.class_names, r->train.num_classes);
  }
  if (st != EF_OK) {
    fprintf(stderr, "effnet train: %s\n", ef_last_error());
    return 1;
  }
  if (r->comm->rank) return 0;
  if ((o->freeze || strcmp(o->bn, "train") || o->backbone_lr != 1) && !o->init)
    fprintf(stderr, "effnet train: warning: --freeze, --bn and --backbone-lr are meant for fine-tuning, and no --init is given\n");
  // The configuration, echoed (by rank 0).
  char tdesc[256], edesc[256];
  ef_transform_describe(&r->train_tf, tdesc, sizeof tdesc);
  ef_transform_describe(&r->info.eval, edesc, sizeof edesc);
  printf("effnet train: model %s (%zu parameters), data %s (%lld train / %lld test images, %d classes)\n",
         strcmp(r->info.arch, "tiny") ? r->info.cfg.name : "tiny", r->store->numel[0], o->data, (long long)r->train.n,
         (long long)r->test.n, r->train.num_classes);
  printf("  input: %s; test: %s; %ld loader threads\n", tdesc, edesc, o->loader_threads);
  if (r->train.kind == EF_DATASET_FOLDER && !strcmp(r->train.source, r->test.source))
    printf("  note: %s has no separate test split (train/ and val/ folders), so validation uses the training images\n", o->data);
  if (r->train.kind == EF_DATASET_LIST) printf("  note: a file list has no separate test split, so validation uses the training images\n");
  char where[512];
  printf("  recipe %s: %ld epochs, batch %ld (%lld steps/epoch), %s lr %g per 256 (%.4g), %s schedule, warm-up %g epochs,\n"
         "  momentum %g, weight decay %g, label smoothing %g, EMA %g, clip %g, seed %llu; on %s\n",
         o->recipe, o->epochs, o->batch, (long long)batches, o->optimizer, o->lr, r->sched.lr, o->schedule, o->warmup, o->momentum,
         o->weight_decay, o->smoothing, o->ema, o->clip, o->seed, ef_device_describe(&r->dev, where, sizeof where));
  if (o->init) {
    char norm[128];
    snprintf(norm, sizeof norm, "mean %.4g,%.4g,%.4g std %.4g,%.4g,%.4g", r->info.eval.mean[0], r->info.eval.mean[1],
             r->info.eval.mean[2], r->info.eval.std[0], r->info.eval.std[1], r->info.eval.std[2]);
    printf("  init: %s from %s%s: everything but the classifier loaded; the classifier (%d classes there) re-initialized "
           "for %d classes\n  normalization %s (%s)\n",
           pre.cfg.name, o->init, pre.ema ? " (its EMA weights)" : "", pre.cfg.num_classes, r->info.num_classes, norm,
           pre.recorded_norm ? "the pretrained model's" : "ImageNet's: the weights file records none");
    if (resuming) printf("  (resuming: the weights come from the checkpoint)\n");
  }
  if (o->freeze || strcmp(o->bn, "train") || o->backbone_lr != 1)
    printf("  frozen: %s (%zu of %zu parameters); other batch norms: %s; backbone lr x%g\n", o->freeze ? o->freeze : "nothing",
           frozen, r->store->numel[0], o->bn, o->backbone_lr);
  printf("  run folder %s; activation memory %.1f MiB planned for training\n", r->out, (double)r->tr.plan->arena_bytes / 1048576.0);
  if (resuming)
    printf("  resumed from %s at epoch %lld, batch %lld, step %lld\n", resume_path, (long long)r->info.epoch + 1,
           (long long)r->info.batch, (long long)r->info.step);
  return 0;
}

// Rank 0's model, optimizer slots, EMA and BN statistics go to every rank: all start from the
// same point (a fresh initialization, --init's weights, or the checkpoint resumed).
static void share_training_state(run *r) {
  ef_comm *c = r->comm;
  c->broadcast(c, r->store->mem[EF_ARENA_PARAM], sizeof(float) * r->store->numel[0], 0);
  for (int k = 0; k < ef_optim_slots(&r->optim); k++) c->broadcast(c, ef_optim_slot(&r->optim, k), sizeof(float) * r->optim.n, 0);
  if (r->has_ema) c->broadcast(c, r->ema.shadow[EF_ARENA_PARAM], sizeof(float) * r->ema.numel[EF_ARENA_PARAM], 0);
  share_bn_statistics(r);
}

// The collectives of several ranks: NCCL on GPUs (in place of the launch's communicator), SyncBN's
// groups, and the gradient buckets (one, after the backward pass, with --bucket-mb 0). Rank 0
// prints how the ranks work together. `--gpus 1` goes through NCCL too, as one rank of one.
static ef_status connect_ranks(run *r) {
  const train_opts *o = &r->o;
  if (r->comm->world == 1 && strcmp(r->comm->name, "launched")) return EF_OK;
#ifdef EFFNET_NCCL
  if (r->dev.cuda) EF_TRY(ef_comm_nccl_new(&r->comm, r->be, o->comm_timeout)); // setup refused GPUs without NCCL
#endif
  if (o->sync_bn > 1) r->bn_comm = r->comm->split(r->comm, (int)o->sync_bn);
  ef_grad_sync_init(&r->sync, r->comm, r->tr.plan, r->store, (size_t)(o->bucket_mb * 1048576));
  if (r->comm->rank == 0)
    printf("  data parallel: %d ranks (%s), global batch %lld (--batch %ld per rank); gradients in %d bucket(s)%s; "
           "batch norm %s\n",
           r->comm->world, r->comm->name, (long long)r->global_batch, o->batch, r->sync.n,
           o->bucket_mb > 0 ? " during the backward pass" : " after the backward pass",
           r->bn_comm ? "synchronized over groups of --sync-bn ranks" : "per rank");
  return EF_OK;
}

// `effnet train --gpus N` itself: checks that the GPUs are there, makes NCCL's id, and runs the N
// workers (this command again, each told its rank) to their end.
static int launch_gpus(int argc, char **argv, const train_opts *o) {
  char why[256] = "";
  int visible = ef_cuda_device_count(why, sizeof why);
  if (visible < o->gpus) {
    fprintf(stderr, "effnet train: --gpus %ld, but %s\n", o->gpus, visible ? "fewer GPUs are visible" : why);
    if (visible) fprintf(stderr, "  (%d visible: check nvidia-smi and CUDA_VISIBLE_DEVICES)\n", visible);
    return 1;
  }
#ifdef EFFNET_NCCL
  char id[300];
  if (ef_nccl_unique_id(id, sizeof id) != EF_OK) {
    fprintf(stderr, "effnet train: %s\n", ef_last_error());
    return 1;
  }
  char **args = ef_xcalloc((size_t)argc + 2, sizeof *args);
  args[0] = "effnet";
  for (int i = 0; i < argc; i++) args[i + 1] = argv[i]; // argv[0] is "train"
  int rc = ef_launch(&(ef_launch_config){.workers = (int)o->gpus, .program = "/proc/self/exe", .argv = args, .nccl_id = id});
  free(args);
  return rc;
#else
  fprintf(stderr, "effnet train: --gpus goes through NCCL, and this effnet was built without it: install NCCL (or set "
                  "NCCL_ROOT) and rebuild\n");
  return 1;
#endif
}

// ef_run_ctx.group_mean for SyncBN's nodes: the average over this rank's --sync-bn group.
static void bn_group_mean(void *group, float *buf, size_t n) {
  ef_comm *c = group;
  c->allreduce(c, buf, n, EF_COMM_F32, EF_COMM_AVG);
}

// f16's loss scale after a step: halved when the gradients overflowed (the step was skipped),
// doubled after 2000 steps without overflow (torch.cuda.amp.GradScaler's defaults).
static void adjust_loss_scale(run *r, bool overflow) {
  double *s = &r->info.loss_scale;
  if (overflow) *s /= 2, r->good_steps = 0;
  else if (++r->good_steps == 2000) *s *= 2, r->good_steps = 0;
  else return;
  ef_model_graph_loss_scale(&r->tr, (float)*s);
}

// Whether any rank has been asked to stop (SIGINT, SIGTERM): the signal number, the same on
// every rank, so that all stop after the same step.
static int agreed_signal(ef_comm *c) {
  double sig = stop_signal;
  c->allreduce(c, &sig, 1, EF_COMM_F64, EF_COMM_MAX);
  return (int)sig;
}

int ef_cmd_train(int argc, char **argv) {
  if (getenv(EF_LAUNCH_RANK)) {
    ef_launch_follow_parent(); // a worker of --gpus: it ends with its launcher
  } else { // --gpus N: this process starts the workers and waits for them
    train_opts o;
    int rc = parse_opts(argc, argv, NULL, &o);
    if (!rc && o.gpus && ef_comm_launched()) {
      fprintf(stderr, "effnet train: --gpus starts its own workers: under mpirun or srun, start one rank per GPU and give "
                      "--device cuda instead\n");
      rc = 2;
    }
    if (rc || o.gpus) return rc ? rc : launch_gpus(argc, argv, &o);
  }
  run r;
  memset(&r, 0, sizeof r);
  if (ef_comm_new(&r.comm) != EF_OK) {
    fprintf(stderr, "effnet train: %s\n", ef_last_error());
    return 1;
  }
  int rc = setup(&r, argc, argv);
  // Every rank goes on only if all are ready: one that failed alone would leave the others waiting
  // in the first collective. Workers of --gpus cannot agree before NCCL connects them: one that
  // failed exits, and the launcher ends the others.
  double worst = rc;
  if (r.comm->allreduce) r.comm->allreduce(r.comm, &worst, 1, EF_COMM_F64, EF_COMM_MAX);
  if (worst) {
    if (!rc) fprintf(stderr, "effnet train: rank %d: another rank failed to start (its message says why)\n", r.comm->rank);
    run_free(&r);
    return rc ? rc : (int)worst;
  }
  if (connect_ranks(&r) != EF_OK) { // on one rank alone, or on all: the job ends either way
    fprintf(stderr, "effnet train [rank %d]: %s\n", r.comm->rank, ef_last_error());
    ef_comm_abort(r.comm, 1);
  }
  share_training_state(&r);
  const train_opts *o = &r.o;
  ef_checkpoint_info *info = &r.info;
  ef_comm *comm = r.comm;
  bool lead = comm->rank == 0; // prints, logs, saves
  struct sigaction sa = {.sa_handler = on_signal};
  sigaction(SIGINT, &sa, NULL), sigaction(SIGTERM, &sa, NULL);
  bool tty = isatty(STDOUT_FILENO);
  int64_t batches = ef_loader_batches(r.train_loader), total = batches * o->epochs, session_steps = 0;
  float *logits = ef_xmalloc(sizeof(float) * (size_t)o->batch * (size_t)info->num_classes);
  double t_start = ef_seconds(), t_log = t_start;
  int64_t since = 0; // images over all ranks since the last progress line
  ef_status st = EF_OK;
  rc = 0;
  while (info->epoch < o->epochs && st == EF_OK && !rc) {
    const ef_batch *b;
    st = ef_loader_start(r.train_loader, info->epoch, info->batch);
    while (st == EF_OK && (st = ef_loader_next(r.train_loader, &b)) == EF_OK && b) {
      double lr = ef_lr_at(&r.sched, info->step);
      ef_plan_set(r.tr.plan, r.tr.images, b->images);
      ef_plan_set(r.tr.plan, r.tr.labels, b->labels);
      // The gradient of the global batch: the average of the ranks' (each the mean over its own),
      // bucket by bucket while the backward pass runs, or in one all-reduce after it.
      ef_grad_sync *gs = r.sync.n ? &r.sync : NULL;
      ef_run_ctx ctx = {.step = (uint32_t)info->step, .after_node = gs && o->bucket_mb > 0 ? ef_grad_sync_after_node : NULL,
                        .user = gs, .group_mean = r.bn_comm ? bn_group_mean : NULL, .group = r.bn_comm,
                        .group_device = r.dev.cuda};
      if (r.dev.cuda) { // the whole step, all-reduces and update included, on the GPU; replayed as a CUDA
                        // graph (op by op with --profile, which times every node)
        ef_device_update_values(&r.upd, &r.optim, r.has_ema ? &r.ema : NULL, lr, o->clip, 1.0 / info->loss_scale);
        ef_device_train_step(o->profile ? NULL : &r.step_graph, r.store, r.tr.plan, gs, &r.upd, r.has_ema ? &r.ema : NULL,
                             &ctx);
        comm->sync(comm); // within --comm-timeout, or the job ends
      } else {
        ef_store_zero_grads(r.store);
        ef_plan_run(r.tr.plan, &ctx);
        if (gs) ef_grad_sync_finish(gs);
      }
      float loss;
      ef_plan_get(r.tr.plan, r.tr.loss, &loss);
      ef_plan_get(r.tr.plan, r.tr.logits, logits);
      int64_t correct = 0;
      for (int64_t i = 0; i < o->batch; i++) correct += ef_label_rank(logits + i * info->num_classes, info->num_classes, b->labels[i]) == 0;
      // The step's loss and accuracy over the global batch, and a stop any rank was asked for.
      double sums[2] = {loss, (double)correct};
      comm->allreduce(comm, sums, 2, EF_COMM_F64, EF_COMM_SUM);
      int sig = agreed_signal(comm);
      double step_loss = sums[0] / comm->world, norm = 0;
      bool applied = true; // on the GPU, the update already ran unless the gradients were not finite
      if (r.dev.cuda) applied = ef_device_update_finish(&r.upd, &r.optim, r.has_ema ? &r.ema : NULL, &norm);
      else if (o->clip > 0) norm = ef_grad_global_norm(r.store);
      bool overflow = r.dev.activations == EF_F16 && !applied && isfinite(step_loss) && info->loss_scale > 1;
      if (r.dev.activations == EF_F16) adjust_loss_scale(&r, overflow);
      if (!overflow && (!isfinite(step_loss) || !isfinite(norm))) { // every rank sees it: all stop
        long long steps[4096];
        int n = list_checkpoints(r.out, steps, 4096);
        char last[4200] = "none";
        if (n) checkpoint_path(last, sizeof last, r.out, steps[n - 1]);
        if (lead)
          fprintf(stderr, "\neffnet train: the %s is %g at step %lld (epoch %lld, batch %lld); stopping without saving.\n"
                          "The last good checkpoint is %s. Lower --lr, or add --clip.\n",
                  isfinite(step_loss) ? "gradient norm" : "loss", isfinite(step_loss) ? norm : step_loss, (long long)info->step,
                  (long long)info->epoch + 1, (long long)b->index, last);
        rc = 1;
        break;
      }
      if (!r.dev.cuda) {
        if (o->clip > 0) ef_grad_clip(r.store, o->clip, norm);
        ef_optim_step(&r.optim, r.store, lr);
        if (r.has_ema) ef_ema_update(&r.ema, r.store);
      }
      info->epoch_correct += (int64_t)sums[1];
      info->epoch_loss += step_loss, info->epoch_seen += r.global_batch, since += r.global_batch;
      info->step++, info->batch = b->index + 1, session_steps++;
      double t = ef_seconds();
      bool last = info->batch == batches;
      if (lead && (last || (tty ? t - t_log > 0.25 : info->batch % o->log_every == 0))) {
        double rate = since / (t - t_log), eta = (double)(total - info->step) * r.global_batch / rate;
        progress(&r, info->batch, batches, info->epoch_loss / info->batch, (double)info->epoch_correct / info->epoch_seen, lr,
                 rate, eta, tty);
        const char *tags[] = {"train/loss", "train/acc", "train/lr", "train/images_per_s"};
        double values[] = {step_loss, (double)info->epoch_correct / info->epoch_seen, lr, rate};
        if ((st = ef_metrics_log(r.metrics, info->step, (int)info->epoch + 1, 4, tags, values)) != EF_OK) break;
        t_log = t, since = 0;
      }
      if (sig || (o->stop_after && session_steps == o->stop_after)) {
        if (lead && (st = save(&r, false)) == EF_OK)
          printf("%sstopped at step %lld (%s); resume with: effnet train --resume %s\n", tty ? "\n" : "", (long long)info->step,
                 sig ? (sig == SIGINT ? "SIGINT" : "SIGTERM") : "--stop-after", r.out);
        rc = sig ? 128 + sig : 0;
        break;
      }
    }
    if (st != EF_OK || rc || (o->stop_after && session_steps == o->stop_after) || info->batch < batches) break;
    if (tty && lead) printf("\n");
    info->epoch++, info->batch = 0, info->epoch_loss = 0, info->epoch_correct = info->epoch_seen = 0;
    double top1 = 0;
    if ((st = validate(&r, &top1)) != EF_OK) break;
    t_log = ef_seconds(), since = 0; // the rate counts training only
    bool best = top1 > info->best_top1;
    if (best) info->best_top1 = top1;
    st = lead ? save(&r, best) : EF_OK;
    int sig = agreed_signal(comm);
    if (st == EF_OK && sig) { // arrived during validation: the epoch's checkpoint stands
      if (lead)
        printf("stopped after epoch %lld (%s); resume with: effnet train --resume %s\n", (long long)info->epoch,
               sig == SIGINT ? "SIGINT" : "SIGTERM", r.out);
      rc = 128 + sig;
    }
  }
  if (st != EF_OK) {
    char who[32] = "";
    if (comm->world > 1) snprintf(who, sizeof who, " [rank %d]", comm->rank);
    fprintf(stderr, "effnet train%s: %s\n", who, ef_last_error());
    // A failure of this rank alone (a file, the disk, a corrupt image): the others would wait for
    // it in the next collective, so the whole job ends now. A non-finite validation loss is the
    // result of an all-reduce: every rank stops on its own.
    if (comm->world > 1 && st != EF_ERR_NUMERIC) ef_comm_abort(comm, 1);
    rc = 1;
  } else if (!rc && info->epoch == o->epochs && lead) {
    printf("done in %.1f s: best validation top-1 %.2f%%; checkpoints in %s (best.h5, ckpt-*.h5), metrics in %s/metrics.jsonl\n",
           ef_seconds() - t_start, 100 * info->best_top1, r.out, r.out);
    if (o->profile) ef_plan_profile_print(r.tr.plan, stdout);
  }
  // mpirun ends the whole job at the first rank that exits non-zero (a stop by signal exits 130
  // or 143): no rank leaves before rank 0 has saved and its lines are out.
  fflush(stdout);
  if (comm->world > 1) comm->barrier(comm);
  free(logits);
  run_free(&r);
  return rc;
}
