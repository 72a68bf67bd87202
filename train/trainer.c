// The trainer (see trainer.h): the phases that open a run, the step and the end of an epoch over
// the ranks, checkpoints in the run folder, and closing in the order the communicators need.
#include "train/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cuda/cuda.h"
#include "train/finetune.h"
#include "train/run_dir.h"

// A failure of the configuration (the command exits 2 for it), with its message.
static ef_status usage_error(ef_trainer *t, ef_status st) {
  t->usage_error = st != EF_OK;
  return st;
}

ef_train_config ef_train_config_defaults(void) {
  return (ef_train_config){.data = EF_FASHION_MNIST_DIR,
                           .augment = "none",
                           .loader_threads = 1,
                           .model = "tiny",
                           .spec = ef_effnet_spec_none(),
                           .bn = "train",
                           .backbone_lr = 1,
                           .optimizer = "sgd",
                           .schedule = "cosine",
                           .epochs = 10,
                           .batch = 64,
                           .accum = 1,
                           .mix_prob = 1,
                           .mix_switch_prob = 0.5,
                           .remode = "pixel",
                           .ra_magnitude = 9,
                           .prog_ra_magnitude = -1,
                           .prog_mixup = NAN,
                           .prog_dropout = NAN,
                           .lr = 0.4,
                           .momentum = 0.9,
                           .weight_decay = 5e-5,
                           .smoothing = 0.1,
                           .decay_rate = 0.97,
                           .decay_epochs = 2.4,
                           .seed = 1,
                           .dev = EF_DEVICE_SPEC_DEFAULT,
                           .bucket_mb = 4,
                           .comm_timeout = 600,
                           .keep = 3};
}

// ---- the data -----------------------------------------------------------------------------------

static ef_status open_data(ef_trainer *t) {
  const ef_train_config *c = &t->cfg;
  ef_status st = ef_dataset_open(c->data, 1, &t->train);
  if (st == EF_OK) st = ef_dataset_open(c->data, 0, &t->test);
  t->all_train = t->train.n, t->all_test = t->test.n;          // what close frees (--limit cuts n below)
  if (st != EF_OK && !strcmp(c->data, EF_FASHION_MNIST_DIR)) { // the default data is missing
    char msg[1200];
    snprintf(msg, sizeof msg, "%s\n(install Fashion-MNIST with scripts/install-deps.sh, or pass --data PATH)",
             ef_last_error());
    return ef_error_pass(st, msg);
  }
  if (st != EF_OK) return st;
  if (c->select_classes || c->per_class) st = ef_dataset_select(&t->train, c->select_classes, c->per_class);
  if (st == EF_OK && c->select_classes) st = ef_dataset_select(&t->test, c->select_classes, 0);
  t->all_train = t->train.n, t->all_test = t->test.n; // a selection freed the rest (a failed one nothing)
  if (st != EF_OK) return usage_error(t, st);
  if (t->test.num_classes != t->train.num_classes)
    return EF_ERROR(EF_ERR_FORMAT, "the test split of %s has %d classes but the training split %d", c->data,
                    t->test.num_classes, t->train.num_classes);
  if (c->limit && c->limit < t->train.n) t->train.n = c->limit;
  if (c->val_limit && c->val_limit < t->test.n) t->test.n = c->val_limit;
  return EF_OK;
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
    mean[c] = (float)(sum[k] / (double)n),
    std[c] = (float)sqrt(sq[k] / (double)n - (sum[k] / (double)n) * (sum[k] / (double)n));
  }
}

// ---- the model ----------------------------------------------------------------------------------

ef_status ef_train_describe(const ef_train_config *c, const ef_dataset *d, const ef_weights_info *pre, ef_model_desc *m,
                            int *size, int *eval_size) {
  memset(m, 0, sizeof *m);
  int channels = pre ? pre->desc.in_channels : c->spec.in_channels ? (int)c->spec.in_channels : d->pixels ? d->c : 3;
  bool tiny = !pre && !strcmp(c->model, "tiny") && isnan(c->spec.phi);
  if (c->spec.classes && c->spec.classes != d->num_classes) // --num-classes must equal the data's
    return EF_ERROR(EF_ERR_INVALID, "the model has %ld classes but %s has %d", c->spec.classes, c->data,
                    d->num_classes);
  snprintf(m->arch, sizeof m->arch, "%s", tiny ? "tiny" : "efficientnet");
  if (!tiny) {
    ef_effnet_spec s = c->spec;
    if (!s.classes) s.classes = d->num_classes;
    if (!s.in_channels) s.in_channels = channels;
    s.name = isnan(s.phi) ? c->model : NULL;
    if (pre) m->cfg = pre->desc.cfg;
    EF_TRY(pre ? ef_effnet_spec_apply(&s, &m->cfg) : ef_effnet_spec_config(&s, &m->cfg));
  } else {
    m->cfg.dropout = isnan(c->spec.dropout) ? 0.2f : (float)c->spec.dropout;
  }
  m->num_classes = d->num_classes, m->in_channels = channels;
  *size = (int)c->image_size;
  if (!*size && pre) *size = pre->desc.cfg.resolution; // fine-tuning: the pretrained model's resolution
  if (!*size && d->pixels) *size = d->h > ef_model_min_size(m) ? d->h : ef_model_min_size(m); // small: upscaled
  if (!*size && !tiny) *size = m->cfg.resolution;
  if (!*size) return EF_ERROR(EF_ERR_INVALID, "--model tiny on image files needs --image-size");
  EF_TRY(ef_model_check_size(m, *size));
  *eval_size = c->eval_image_size ? (int)c->eval_image_size : *size;
  if (*eval_size != *size) EF_TRY(ef_model_check_size(m, *eval_size));
  m->cfg.resolution = *size;
  return EF_OK;
}

// The model, its input and the transforms for the data and the configuration (and the pretrained
// model's architecture, channels and normalization when fine-tuning: `pre` not NULL).
static ef_status describe(ef_trainer *t, const ef_weights_info *pre) {
  const ef_train_config *c = &t->cfg;
  const ef_dataset *d = &t->train;
  ef_model_desc *m = &t->info.model;
  int size, eval_size;
  EF_TRY(usage_error(t, ef_train_describe(c, d, pre, m, &size, &eval_size)));
  int channels = m->in_channels;
  if (c->accum < 1 || c->accum > 4096)
    return usage_error(t, EF_ERROR(EF_ERR_INVALID, "--accum %ld: use 1 ... 4096 micro-batches per update", c->accum));
  if (strcmp(c->remode, "pixel") && strcmp(c->remode, "rand") && strcmp(c->remode, "const"))
    return usage_error(t, EF_ERROR(EF_ERR_INVALID, "--remode '%s': pixel, rand or const", c->remode));
  bool prog_values =
      c->prog_image_size || c->prog_ra_magnitude >= 0 || !isnan(c->prog_mixup) || !isnan(c->prog_dropout);
  if (c->progressive < 0 || (c->progressive < 2 && prog_values))
    return usage_error(t, EF_ERROR(EF_ERR_INVALID,
                                   "--prog-image-size, --prog-ra-magnitude, --prog-mixup and --prog-dropout set the "
                                   "first of --progressive N stages (N >= 2; it is %ld)",
                                   c->progressive));
  if (c->progressive > c->epochs)
    return usage_error(t,
                       EF_ERROR(EF_ERR_INVALID, "--progressive %ld stages need at least as many epochs (--epochs %ld)",
                                c->progressive, c->epochs));
  if (c->progressive > 1 && c->prog_image_size) EF_TRY(usage_error(t, ef_model_check_size(m, (int)c->prog_image_size)));
  t->train_tf = ef_transform_defaults(strcmp(c->augment, "none") != 0, size, channels);
  m->eval = ef_transform_defaults(false, eval_size, channels);
  if (d->pixels) t->train_tf.crop_pct = m->eval.crop_pct = 1; // small in-memory datasets: no centre crop
  // The normalization: a pretrained model's own (ImageNet's when its file records none), else
  // for small in-memory datasets their statistics (else ImageNet's, the transform's default).
  if (pre && pre->recorded_norm) {
    memcpy(m->eval.mean, pre->desc.eval.mean, sizeof m->eval.mean),
        memcpy(m->eval.std, pre->desc.eval.std, sizeof m->eval.std);
  } else if (!pre && d->pixels) {
    pixel_stats(d, m->eval.mean, m->eval.std);
  }
  memcpy(t->train_tf.mean, m->eval.mean, sizeof m->eval.mean), memcpy(t->train_tf.std, m->eval.std, sizeof m->eval.std);
  if (!strcmp(c->augment, "autoaugment")) t->train_tf.augment = EF_AUGMENT_AUTO;
  if (!strcmp(c->augment, "randaugment")) t->train_tf.augment = EF_AUGMENT_RAND;
  t->train_tf.ra_m = (int)c->ra_magnitude;
  return usage_error(t, ef_model_desc_set_names(m, d->class_names, d->num_classes));
}

// The device, with several ranks on GPUs each on the GPU of its local rank (modulo the GPUs it
// sees: 0 where a scheduler shows each rank one GPU).
static ef_status open_device(ef_trainer *t) {
  const ef_train_config *c = &t->cfg;
  ef_comm *comm = t->comm;
  bool launched = !strcmp(comm->name, "launched");
  if (launched && c->gpus != comm->world)
    return usage_error(t, EF_ERROR(EF_ERR_INVALID,
                                   "%s is set, as for a worker of `effnet train --gpus %d`, but --gpus is "
                                   "%ld: unset %s and %s to run effnet yourself",
                                   EF_LAUNCH_RANK, comm->world, c->gpus, EF_LAUNCH_RANK, EF_LAUNCH_WORLD));
  bool gpu = !strncmp(c->dev.device, "cuda", 4);
#ifndef EFFNET_NCCL
  if (gpu && (comm->world > 1 || launched))
    return usage_error(
        t, EF_ERROR(EF_ERR_INVALID,
                    "data-parallel training on GPUs goes through NCCL, and this effnet was "
                    "built without it: install NCCL (or set NCCL_ROOT) and rebuild, or train on CPU ranks"));
#endif
  char device[32];
  snprintf(device, sizeof device, "%s", c->dev.device);
  if (gpu && comm->world > 1) {
    if (strcmp(c->dev.device, "cuda"))
      return usage_error(t, EF_ERROR(EF_ERR_INVALID,
                                     "with %d ranks each uses the GPU of its local rank: write --device "
                                     "cuda, not %s",
                                     comm->world, c->dev.device));
    char why[256];
    int visible = ef_cuda_device_count(why, sizeof why);
    snprintf(device, sizeof device, "cuda:%d", visible > 0 ? comm->local_rank % visible : 0);
  }
  ef_device_spec spec = {device, c->dev.precision, c->dev.threads, c->dev.algo_cache};
  char algos[4200]; // the run's own algorithm choices, shared by its ranks and its resumes
  snprintf(algos, sizeof algos, "%s/cuda-algos.tsv", t->out);
  ef_status st = ef_device_open(&t->dev, &spec, algos);
  return st == EF_ERR_INVALID ? usage_error(t, st) : st;
}

// ---- progressive learning (EfficientNetV2): the stages ----------------------------------------------

// What a stage trains with: image size, RandAugment's magnitude, Mixup's alpha, dropout.
typedef struct {
  int size, ra_m;
  double mixup, dropout;
} stage_settings;

// The stage of epoch e: --progressive M stages, epoch e in stage floor(e M / epochs) (E = 10, M = 4:
// stages of 3, 2, 3 and 2 epochs).
static int stage_of(const ef_trainer *t, int64_t epoch) {
  int64_t m = t->cfg.progressive > 1 ? t->cfg.progressive : 1, s = epoch * m / t->cfg.epochs;
  return (int)(s < m - 1 ? s : m - 1);
}

// Stage i's values: from the first stage's to the run's own (the last stage's), linearly.
static stage_settings stage_settings_of(const ef_trainer *t, int stage) {
  const ef_train_config *c = &t->cfg;
  double f = c->progressive > 1 ? (double)stage / (double)(c->progressive - 1) : 1;
  int size = t->train_tf.size, start = c->prog_image_size ? (int)c->prog_image_size : size;
  int ra = (int)c->ra_magnitude, ra0 = c->prog_ra_magnitude >= 0 ? (int)c->prog_ra_magnitude : ra;
  double dropout = t->info.model.cfg.dropout, dropout0 = isnan(c->prog_dropout) ? dropout : c->prog_dropout;
  double mixup0 = isnan(c->prog_mixup) ? c->mixup : c->prog_mixup;
  return (stage_settings){.size = (int)lround(start + (size - start) * f),
                          .ra_m = (int)lround(ra0 + (ra - ra0) * f),
                          .mixup = mixup0 + (c->mixup - mixup0) * f,
                          .dropout = dropout0 + (dropout - dropout0) * f};
}

// Whether any stage mixes (then every stage's graph takes soft targets).
static bool run_mixes(const ef_train_config *c) {
  return c->mixup > 0 || c->cutmix > 0 || (c->progressive > 1 && c->prog_mixup > 0);
}

// The training loader of a stage. Each rank trains on its shard (positions rank, rank + world, ... of
// the epoch's permutation). On a GPU, training batches stay uint8 for the feed, which normalizes them
// there, unless mixing or erasing needs them normalized first.
static ef_loader_config train_loader_config(const ef_trainer *t, const stage_settings *st) {
  const ef_train_config *c = &t->cfg;
  ef_erase_mode remode = !strcmp(c->remode, "const")  ? EF_ERASE_CONST
                         : !strcmp(c->remode, "rand") ? EF_ERASE_RAND
                                                      : EF_ERASE_PIXEL;
  ef_loader_config lc = {.data = &t->train,
                         .transform = t->train_tf,
                         .batch = (int)c->batch,
                         .shuffle = true,
                         .drop_last = true,
                         .erase = {c->reprob, remode},
                         .mix = {st->mixup, c->cutmix, c->mix_prob, c->mix_switch_prob, c->smoothing, run_mixes(c)},
                         .seed = c->seed,
                         .threads = (int)c->loader_threads,
                         .rank = t->comm->rank,
                         .world = t->comm->world};
  lc.transform.size = st->size, lc.transform.ra_m = st->ra_m, lc.transform.strict = c->strict_images;
  lc.as_float = !t->dev.cuda || ef_mix_targets(&lc.mix) || c->reprob > 0;
  return lc;
}

// A stage's training graph (its size and dropout) into t->tr, planned.
static ef_status build_train_graph(ef_trainer *t, const stage_settings *st) {
  const ef_train_config *c = &t->cfg;
  ef_model_desc d = t->info.model;
  d.cfg.dropout = (float)st->dropout;
  ef_graph_opts go = {.batch = c->batch,
                      .training = true,
                      .smoothing = (float)c->smoothing,
                      .soft_targets = run_mixes(c),
                      .seed = c->seed,
                      .bn_group = (int)c->sync_bn,
                      .activations = t->dev.activations,
                      .image_size = st->size}; // the evaluation's may differ (--eval-image-size)
  ef_model_graph_new(&t->tr, t->store, &d, &go);
  return t->store->be ? ef_model_graph_plan(&t->tr, t->dev.be, &(ef_plan_opts){.profile = c->profile}) : EF_OK;
}

// The GPU's feed of uint8 batches for the training graph's images (none where batches are floats).
static ef_status open_feed(ef_trainer *t, const ef_loader_config *lc) {
  if (lc->as_float) return EF_OK;
  float lut[3 * 256];
  ef_transform_lut(&t->train_tf, lut);
  return ef_cuda_feed_new(&t->feed, t->dev.be, ef_numel(t->tr.images), t->train_tf.channels, t->cfg.batch, lut);
}

// Moves the run to a stage: its loader, its training graph (the step moves onto it; the weights,
// optimizer slots and EMA stay) and the feed.
static ef_status enter_stage(ef_trainer *t, int stage) {
  stage_settings st = stage_settings_of(t, stage);
  ef_loader_config lc = train_loader_config(t, &st);
  ef_loader_free(t->train_loader), t->train_loader = NULL;
  EF_TRY(ef_loader_new(&t->train_loader, &lc));
  ef_step_unbind(&t->step);
  ef_model_graph_free(&t->tr);
  EF_TRY(build_train_graph(t, &st));
  ef_step_bind(&t->step, &t->tr);
  if (t->feed) ef_cuda_feed_free(t->feed), t->feed = NULL;
  EF_TRY(open_feed(t, &lc));
  t->stage = stage;
  return EF_OK;
}

// The loaders; the graphs (the evaluation graph registers the parameters, the fine-tuning marks
// go on them, then the training graph reads the marks); the store on the device with its weights
// (initialized, then --init's) before the plans; the step; the schedule. Progressive learning: the
// stage of the position's epoch; and the stage with the largest images is entered once at the start,
// so that a run whose largest stage does not fit fails now, not hours in.
static ef_status open_model(ef_trainer *t) {
  const ef_train_config *c = &t->cfg;
  ef_comm *comm = t->comm;
  t->stage = stage_of(t, t->resuming ? t->saved.epoch : 0);
  stage_settings st = stage_settings_of(t, t->stage);
  ef_loader_config lc = train_loader_config(t, &st);
  ef_loader_config ec = lc; // evaluation skips corrupt images as training does, and leaves them out
  ec.as_float = true, ec.data = &t->test, ec.transform = t->info.model.eval, ec.shuffle = false, ec.drop_last = false;
  ec.mix = (ef_mix_config){0}, ec.erase = (ef_erase_config){0};
  ec.transform.strict = c->strict_images, ec.pass_name = "validation";
  EF_TRY(ef_loader_new(&t->train_loader, &lc));
  EF_TRY(ef_loader_new(&t->test_loader, &ec));
  t->store = ef_store_new();
  ef_graph_opts go = {
      .batch = c->batch, .seed = c->seed, .activations = t->dev.activations, .fusions = t->dev.be->eval_fusions};
  ef_model_graph_new(&t->ev, t->store, &t->info.model, &go);
  if (c->freeze) EF_TRY(ef_freeze(t->store, c->freeze, &t->frozen));
  EF_TRY(ef_bn_mode(t->store, c->bn));
  ef_backbone_lr(t->store, (float)c->backbone_lr);
  if (c->sync_bn > 1 && comm->world % c->sync_bn)
    return EF_ERROR(EF_ERR_INVALID, "--sync-bn %ld needs a number of ranks it divides (this run has %d)", c->sync_bn,
                    comm->world);
  EF_TRY(build_train_graph(t, &st)); // planned below, once the store holds its weights
  EF_TRY(ef_store_bind(t->store, t->dev.be));
  ef_store_initialize(t->store, c->seed);
  if (c->init && !t->resuming) EF_TRY(ef_pretrained_load(c->init, &t->pre, t->store));
  EF_TRY(ef_model_graph_plan(&t->tr, t->dev.be, &(ef_plan_opts){.profile = c->profile}));
  EF_TRY(ef_model_graph_plan(&t->ev, t->dev.be, NULL));
  ef_optim_kind kind = !strcmp(c->optimizer, "sgd")       ? EF_OPT_SGD
                       : !strcmp(c->optimizer, "rmsprop") ? EF_OPT_RMSPROP
                                                          : EF_OPT_ADAMW;
  ef_step_config sc = {.optim = ef_optim_defaults(kind),
                       .ema = c->ema,
                       .clip = c->clip,
                       .eager = c->profile,
                       .timeout_s = c->comm_timeout,
                       .accum = (int)c->accum};
  if (kind != EF_OPT_ADAMW) sc.optim.momentum = c->momentum;
  sc.optim.weight_decay = c->weight_decay, sc.optim.nesterov = c->nesterov, sc.optim.decay_all = c->decay_all;
  EF_TRY(ef_step_init(&t->step, &t->tr, &sc));
  t->depth = c->steps_in_flight ? c->steps_in_flight : t->dev.cuda ? 2 : 1;
  if (t->depth < 1 || t->depth > 2)
    return EF_ERROR(EF_ERR_INVALID, "steps in flight: %ld; 1 or 2 (0: the device's choice)", c->steps_in_flight);
  if (ef_trainer_batches(t) < 1)
    return usage_error(t, EF_ERROR(EF_ERR_INVALID, "an epoch has %lld batches per rank, fewer than --accum %ld",
                                   (long long)ef_loader_batches(t->train_loader), c->accum));
  EF_TRY(open_feed(t, &lc));
  // Progressive learning: the stage with the largest images, entered once with everything else in
  // memory, then the position's own.
  int first = 0, last = c->progressive > 1 ? (int)c->progressive - 1 : 0, current = t->stage;
  int largest = stage_settings_of(t, first).size > stage_settings_of(t, last).size ? first : last;
  if (largest != current) {
    EF_TRY(enter_stage(t, largest));
    EF_TRY(enter_stage(t, current));
  }
  t->global_batch = c->batch * comm->world * c->accum;
  ef_lr_decay decay = !strcmp(c->schedule, "cosine")        ? EF_LR_COSINE
                      : !strcmp(c->schedule, "exponential") ? EF_LR_EXPONENTIAL
                                                            : EF_LR_CONSTANT;
  ef_schedule_config sched = {.decay = decay,
                              .base_lr = c->lr,
                              .batch = t->global_batch,
                              .steps_per_epoch = (double)ef_trainer_batches(t),
                              .warmup_epochs = c->warmup,
                              .decay_epochs = c->decay_epochs,
                              .decay_rate = c->decay_rate,
                              .epochs = (double)c->epochs};
  return ef_schedule_init(&t->sched, &sched);
}

// Resuming: the model, EMA and optimizer, the position (epoch_seen images of the epoch, over all
// ranks, whatever their number then: in batches of this run's global batch) and the loss scale.
// f16 scales the loss (from 2^16, halved on overflow, doubled after 2000 good steps) so that small
// gradients survive in 16 bits; the update divides it out.
static ef_status restore(ef_trainer *t) {
  ef_checkpoint_info *info = &t->info, *saved = &t->saved;
  info->seed = t->cfg.seed, info->best_top1 = -1, info->loss_scale = 0;
  snprintf(info->args, sizeof info->args, "%s", t->cfg.args ? t->cfg.args : "");
  if (t->resuming) {
    EF_TRY(ef_checkpoint_load(t->cfg.resume, t->store, t->step.has_ema ? &t->step.ema : NULL, &t->step.optim));
    info->step = saved->step, info->epoch = saved->epoch, info->batch = saved->epoch_seen / t->global_batch;
    info->best_top1 = saved->best_top1, info->validation_pending = saved->validation_pending;
    info->epoch_loss = saved->epoch_loss, info->epoch_correct = saved->epoch_correct,
    info->epoch_seen = saved->epoch_seen;
    info->loss_scale = saved->loss_scale;
    if (saved->epoch_seen % t->global_batch)
      return EF_ERROR(
          EF_ERR_INVALID,
          "%s stopped %lld images into epoch %lld, not a whole number of global batches of %lld "
          "(--batch %ld x %d ranks x --accum %ld): resume with a --batch, ranks and --accum whose product divides "
          "%lld, or from a checkpoint saved at an epoch's end",
          t->cfg.resume, (long long)saved->epoch_seen, (long long)saved->epoch + 1, (long long)t->global_batch,
          t->cfg.batch, t->comm->world, t->cfg.accum, (long long)saved->epoch_seen);
  }
  if (t->dev.activations != EF_F16) info->loss_scale = 1;
  else if (!(info->loss_scale > 0)) info->loss_scale = 65536;
  ef_step_set_loss_scale(&t->step, info->loss_scale);
  return EF_OK;
}

// Rank 0's files besides checkpoints: metrics.jsonl and TensorBoard events, classes.txt.
static ef_status open_outputs(ef_trainer *t) {
  if (t->comm->rank) return EF_OK;
  EF_TRY(ef_metrics_open(&t->metrics, t->out, t->resuming));
  char names[4200];
  snprintf(names, sizeof names, "%s/classes.txt", t->out);
  return ef_classes_write(names, t->train.class_names, t->train.num_classes);
}

static ef_status open_phases(ef_trainer *t) {
  const ef_train_config *c = &t->cfg;
  t->resuming = c->resume != NULL;
  if (t->resuming) EF_TRY(ef_checkpoint_read_info(c->resume, &t->saved));
  // Fine-tuning: the pretrained model (resuming: as the checkpoint records it, classes included).
  if (c->init) {
    ef_status st = ef_weights_info_read(t->resuming ? c->resume : c->init, &t->pre);
    if (st == EF_OK && strcmp(t->pre.desc.arch, "efficientnet"))
      st = EF_ERROR(EF_ERR_INVALID, "%s is a checkpoint of the tiny net", c->init);
    if (st != EF_OK) {
      char msg[1200];
      snprintf(msg, sizeof msg,
               "--init: %s\n(pretrained weights must be an EfficientNet: a file from `effnet import` or "
               "an EfficientNet training checkpoint)",
               ef_last_error());
      return ef_error_pass(st, msg);
    }
  }
  EF_TRY(open_data(t));
  EF_TRY(describe(t, c->init ? &t->pre : NULL));
  // The default folder is named after the model built (with --init, the pretrained one, not the
  // --model default).
  const char *model = strcmp(t->info.model.arch, "tiny") ? t->info.model.cfg.name : "tiny";
  EF_TRY(usage_error(t, ef_run_dir_choose(t->out, sizeof t->out, c->out, c->resume, t->saved.step, model,
                                          t->comm->rank ? NULL : &t->lock)));
  EF_TRY(open_device(t));
  EF_TRY(open_model(t));
  EF_TRY(restore(t));
  return open_outputs(t);
}

ef_status ef_trainer_open(ef_trainer *t, const ef_train_config *cfg, ef_comm *comm) {
  memset(t, 0, sizeof *t);
  t->cfg = *cfg, t->comm = comm, t->lock = -1;
  ef_status st = open_phases(t);
  // Every rank goes on only if all are ready: one that failed alone would leave the others
  // waiting in the first collective. Workers of --gpus cannot agree before NCCL connects them:
  // one that failed exits, and the launcher ends the others.
  double worst = st != EF_OK;
  if (comm->allreduce) comm->allreduce(comm, &worst, 1, EF_COMM_F64, EF_COMM_MAX);
  if (st == EF_OK && worst)
    st = EF_ERROR(EF_ERR_IO, "rank %d: another rank failed to start (its message says why)", comm->rank);
  return st;
}

ef_status ef_trainer_connect(ef_trainer *t) {
  ef_comm *c = t->comm;
  if (c->world > 1 || !strcmp(c->name, "launched")) {
#ifdef EFFNET_NCCL
    if (t->dev.cuda)
      EF_TRY(ef_comm_nccl_new(&t->comm, t->dev.be, t->cfg.comm_timeout)); // open_device refused GPUs without NCCL
    c = t->comm;
#endif
    if (t->cfg.sync_bn > 1) t->bn_comm = c->split(c, (int)t->cfg.sync_bn);
    ef_step_connect(&t->step, c, t->bn_comm, (size_t)(t->cfg.bucket_mb * 1048576));
  }
  // Rank 0's model, optimizer slots, EMA and BN statistics: all start from the same point (a fresh
  // initialization, --init's weights, or the checkpoint resumed).
  ef_step *s = &t->step;
  c->broadcast(c, t->store->mem[EF_ARENA_PARAM], sizeof(float) * t->store->numel[0], 0);
  for (int k = 0; k < ef_optim_slots(&s->optim); k++)
    c->broadcast(c, ef_optim_slot(&s->optim, k), sizeof(float) * s->optim.n, 0);
  if (s->has_ema) c->broadcast(c, s->ema.shadow[EF_ARENA_PARAM], sizeof(float) * s->ema.numel[EF_ARENA_PARAM], 0);
  c->broadcast(c, t->store->mem[EF_ARENA_STATE], sizeof(float) * t->store->numel[1], 0);
  if (s->has_ema) c->broadcast(c, s->ema.shadow[EF_ARENA_STATE], sizeof(float) * s->ema.numel[EF_ARENA_STATE], 0);
  c->sync(c); // on GPUs, within --comm-timeout
  return EF_OK;
}

// ---- the loop's parts ---------------------------------------------------------------------------

ef_stage_info ef_trainer_stage(const ef_trainer *t) {
  stage_settings st = stage_settings_of(t, t->stage);
  return (ef_stage_info){.stage = t->stage,
                         .stages = t->cfg.progressive > 1 ? (int)t->cfg.progressive : 1,
                         .image_size = st.size,
                         .ra_magnitude = st.ra_m,
                         .mixup = st.mixup,
                         .dropout = st.dropout};
}

int64_t ef_trainer_batches(const ef_trainer *t) { return ef_loader_batches(t->train_loader) / t->cfg.accum; }

bool ef_trainer_mixes(const ef_trainer *t) { return t->tr.targets != NULL; }

// Queues the step of batch b: on a GPU through the feed (b holds uint8 pixels), else from b's floats
// (and soft targets). Its learning rate in *lr. Accumulating, b is a micro-batch of update
// b->index / accum of the epoch, which may be ahead of the position's (steps in flight).
static uint32_t queue_step(ef_trainer *t, const ef_batch *b, double *lr) {
  int64_t step = t->info.step + b->index / t->cfg.accum - t->info.batch;
  *lr = ef_lr_at(&t->sched, step);
  if (!t->feed) return ef_step_queue(&t->step, b->images, b->labels, b->targets, *lr, step);
  ef_cuda_feed_put(t->feed, b->images, b->labels);
  ef_cuda_feed_take(t->feed, t->tr.images, t->tr.labels);
  return ef_step_queue(&t->step, NULL, b->labels, NULL, *lr, step);
}

// A collected update's result into the position: it counts when finite (an f16 overflow counts);
// `index` is its (last) batch's. A micro-batch before an update's last counts in the update.
static void account(ef_trainer *t, const ef_step_result *r, int64_t index) {
  ef_checkpoint_info *info = &t->info;
  info->loss_scale = t->step.loss_scale;
  if (!r->finite || r->partial) return;
  info->epoch_correct += r->correct;
  info->epoch_loss += r->loss, info->epoch_seen += t->global_batch;
  info->step++, info->batch = (index + 1) / t->cfg.accum;
}

void ef_trainer_step(ef_trainer *t, const ef_batch *b, ef_step_result *r, double *lr) {
  ef_step_collect(&t->step, queue_step(t, b, lr), r);
  account(t, r, b->index);
}

int ef_trainer_agree_stop(ef_trainer *t, int local_signal) {
  double sig = local_signal;
  t->comm->allreduce(t->comm, &sig, 1, EF_COMM_F64, EF_COMM_MAX);
  return (int)sig;
}

ef_status ef_trainer_log_progress(ef_trainer *t, double loss, double acc, double lr, double images_per_s) {
  const char *tags[] = {"train/loss", "train/lr", "train/images_per_s", "train/acc"}; // mixing: no accuracy
  double values[] = {loss, lr, images_per_s, acc};
  int n = ef_trainer_mixes(t) ? 3 : 4;
  return t->metrics ? ef_metrics_log(t->metrics, t->info.step, (int)t->info.epoch + 1, n, tags, values) : EF_OK;
}

// The checkpoint at the position (rank 0), best.h5 first when `best`; `prune` keeps the newest
// cfg.keep.
static ef_status save(ef_trainer *t, bool best, bool prune) {
  if (t->comm->rank) return EF_OK;
  const ef_step *s = &t->step;
  const ef_ema *ema = s->has_ema ? &s->ema : NULL;
  char path[4200];
  if (best) { // first: a checkpoint recording the new best is never on disk without best.h5
    ef_run_dir_best(path, sizeof path, t->out);
    EF_TRY(ef_checkpoint_save(path, t->store, ema, &s->optim, &t->info));
  }
  ef_run_dir_checkpoint(path, sizeof path, t->out, (long long)t->info.step);
  EF_TRY(ef_checkpoint_save(path, t->store, ema, &s->optim, &t->info));
  if (prune) ef_run_dir_prune(t->out, (int)t->cfg.keep);
  return EF_OK;
}

ef_status ef_trainer_save(ef_trainer *t, bool best) { return save(t, best, true); }

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

ef_status ef_trainer_end_epoch(ef_trainer *t, ef_epoch_result *e) {
  ef_checkpoint_info *info = &t->info;
  info->epoch++, info->batch = 0, info->epoch_loss = 0, info->epoch_correct = info->epoch_seen = 0;
  *e = (ef_epoch_result){0};
  info->validation_pending = 1;
  EF_TRY(save(t, false, false)); // the older ones stay until the validation says this one is sound
  return ef_trainer_validate(t, e);
}

ef_status ef_trainer_validate(ef_trainer *t, ef_epoch_result *e) {
  ef_checkpoint_info *info = &t->info;
  ef_comm *c = t->comm;
  ef_step *s = &t->step;
  *e = (ef_epoch_result){0};
  // BN running statistics (and their EMA) are each rank's own, from its own batches: rank 0's, the
  // ones its checkpoints save, go to every rank, so that all evaluate the model that is saved.
  c->broadcast(c, t->store->mem[EF_ARENA_STATE], sizeof(float) * t->store->numel[1], 0);
  if (s->has_ema) c->broadcast(c, s->ema.shadow[EF_ARENA_STATE], sizeof(float) * s->ema.numel[EF_ARENA_STATE], 0);
  c->sync(c); // on GPUs, within --comm-timeout
  EF_TRY(ef_model_evaluate(&t->ev, t->test_loader, &e->live));
  combine_eval(c, &e->live);
  double top1 = e->live.top1;
  if (s->has_ema) {
    ef_ema_swap(&s->ema, t->store);
    ef_status st = ef_model_evaluate(&t->ev, t->test_loader, &e->ema);
    ef_ema_swap(&s->ema, t->store);
    EF_TRY(st);
    combine_eval(c, &e->ema);
    top1 = e->ema.top1;
  }
  if (t->metrics) {
    const char *tags[] = {"val/loss", "val/top1", "val/top5", "val_ema/loss", "val_ema/top1", "val_ema/top5"};
    double values[] = {e->live.loss, e->live.top1, e->live.top5, e->ema.loss, e->ema.top1, e->ema.top5};
    EF_TRY(ef_metrics_log(t->metrics, info->step, (int)info->epoch, s->has_ema ? 6 : 3, tags, values));
  }
  if (!isfinite(e->live.loss) || (s->has_ema && !isfinite(e->ema.loss))) {
    char path[4200];
    ef_run_dir_checkpoint(path, sizeof path, t->out, (long long)info->step);
    if (!c->rank) unlink(path); // it holds the broken model
    return EF_ERROR(EF_ERR_NUMERIC,
                    "the validation loss after epoch %lld is not finite: the model is broken, its checkpoint is "
                    "removed. Lower --lr, or add --clip",
                    (long long)info->epoch);
  }
  e->best = top1 > info->best_top1;
  if (e->best) info->best_top1 = top1;
  info->validation_pending = 0;
  return ef_trainer_save(t, e->best);
}

static int stop_requested(const ef_fit_hooks *h) { return h->stop_requested ? h->stop_requested(h->user) : 0; }

// The steps in flight of an epoch's loop: queued, not yet collected.
typedef struct {
  struct {
    uint32_t seq;
    int64_t index; // the batch's, in the epoch
    double lr;
  } step[2];
  int n;
} in_flight;

// Collects the oldest step in flight into r and the position.
static void collect_oldest(ef_trainer *t, in_flight *q, ef_fit_result *r, double *lr) {
  ef_step_collect(&t->step, q->step[0].seq, &r->last);
  r->last_batch = q->step[0].index, *lr = q->step[0].lr;
  account(t, &r->last, q->step[0].index);
  q->step[0] = q->step[1], q->n--;
}

// One epoch's steps from the position; false when the run stops (r says why, or *st). With
// steps_in_flight 2 (GPUs), step k + 1 is queued before step k is collected; a stop (a signal,
// stop_after, a broken loss, a failure) first collects the steps in flight, so that the position
// saved is where the weights are.
static bool fit_epoch(ef_trainer *t, const ef_fit_hooks *h, ef_fit_result *r, int64_t *steps, ef_status *st) {
  in_flight q = {.n = 0};
  bool more = true, stopping = false, broken = false;
  ef_step_result bad = {0}; // the step that broke the run, as reported
  int64_t bad_batch = 0;
  int sig = 0;
  int stage = stage_of(t, t->info.epoch);
  if (stage != t->stage) {
    if ((*st = enter_stage(t, stage)) != EF_OK) return false;
    if (h->stage_entered) h->stage_entered(h->user, t);
  }
  *st = ef_loader_start(t->train_loader, t->info.epoch, t->info.batch * t->cfg.accum);
  more = *st == EF_OK;
  int64_t used = ef_trainer_batches(t) * t->cfg.accum; // accumulating, the batches of whole updates
  for (;;) {
    while (more && !stopping && q.n < t->depth && !(h->stop_after && *steps + q.n >= h->stop_after)) {
      const ef_batch *b;
      if ((*st = ef_loader_next(t->train_loader, &b)) != EF_OK || !b || b->index >= used) {
        more = false, stopping = *st != EF_OK;
        break;
      }
      q.step[q.n].seq = queue_step(t, b, &q.step[q.n].lr);
      q.step[q.n++].index = b->index;
    }
    if (!q.n) break;
    double lr;
    collect_oldest(t, &q, r, &lr);
    if (r->last.partial) continue; // accumulating: the update goes on (stops wait for its end)
    int agreed = ef_trainer_agree_stop(t, stop_requested(h)); // every rank collects the same steps
    if (broken || stopping) continue;                         // the steps in flight finish, unreported
    if (!r->last.finite) {                                    // every rank sees it: all stop
      broken = stopping = true, bad = r->last, bad_batch = r->last_batch;
      continue;
    }
    ++*steps;
    if (h->after_step && (*st = h->after_step(h->user, t, &r->last, lr)) != EF_OK) stopping = true;
    else if (agreed || (h->stop_after && *steps == h->stop_after)) sig = agreed, stopping = true;
  }
  if (broken) {
    r->last = bad, r->last_batch = bad_batch, r->broken = true;
    return false;
  }
  ef_step_drop_partial(&t->step); // a micro-batch queued after the last update, if any, is not part of it
  if (*st != EF_OK) return false;
  if (stopping) {
    if ((*st = ef_trainer_save(t, false)) != EF_OK) return false;
    r->signal = sig, r->stopped = !sig;
    return false;
  }
  return t->info.batch == ef_trainer_batches(t);
}

ef_status ef_trainer_fit(ef_trainer *t, const ef_fit_hooks *h, ef_fit_result *r) {
  *r = (ef_fit_result){0};
  int64_t steps = 0;
  ef_status st = EF_OK;
  bool pending = t->info.validation_pending; // resumed from an epoch's end saved before its validation
  while (pending || (t->info.epoch < t->cfg.epochs && fit_epoch(t, h, r, &steps, &st))) {
    ef_epoch_result e;
    st = pending ? ef_trainer_validate(t, &e) : ef_trainer_end_epoch(t, &e);
    pending = false;
    if (h->after_epoch && (st == EF_OK || st == EF_ERR_NUMERIC)) h->after_epoch(h->user, t, &e);
    if (st != EF_OK) break;
    if ((r->signal = ef_trainer_agree_stop(t, stop_requested(h))) != 0) {
      r->after_epoch = true;
      break;
    }
  }
  if (st != EF_OK && st != EF_ERR_NUMERIC && t->comm->world > 1) {
    fprintf(stderr, "effnet train [rank %d]: %s\n", t->comm->rank, ef_last_error());
    ef_comm_abort(t->comm, 1);
  }
  return st;
}

void ef_trainer_close(ef_trainer *t) {
  ef_metrics_close(t->metrics);
  ef_loader_free(t->train_loader), ef_loader_free(t->test_loader);
  // The step's graph before NCCL's communicators (they wait for the graphs that use them), and
  // those before the memory their collectives used.
  ef_step_disconnect(&t->step);
  if (t->feed) ef_cuda_feed_free(t->feed);
  ef_comm_free(t->bn_comm);
  ef_comm_free(t->comm);
  ef_step_free(&t->step);
  ef_model_graph_free(&t->tr), ef_model_graph_free(&t->ev);
  ef_store_free(t->store);
  ef_device_close(&t->dev);
  t->train.n = t->all_train, t->test.n = t->all_test;
  ef_dataset_free(&t->train), ef_dataset_free(&t->test);
  ef_run_dir_unlock(t->lock);
  memset(t, 0, sizeof *t);
  t->lock = -1;
}
