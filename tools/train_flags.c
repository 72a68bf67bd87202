// The flag table of a training run (see train_flags.h).
#include "tools/train_flags.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tools/shared_flags.h"
#include "train/run_dir.h"

#define ROW(kind, name, field) name, kind, EF_FLAG_AT(ef_train_args, kind, field)
static const ef_flag train_flags[] = {
    {ROW(EF_FLAG_STR, "--model", t.model), 0, 0, NULL, "NAME",
     "tiny, or an EfficientNet b0 ... b8, l2, lite0 ... lite4 (or --phi F)", true},
    {ROW(EF_FLAG_STR, "--data", t.data), 0, 0, NULL, "PATH",
     "IDX, CIFAR-10/100 or ImageFolder directory, or a path,label .csv", true},
    {ROW(EF_FLAG_STR, "--out", t.out), 0, 0, NULL, "DIR", "the run's folder  [runs/<model>-<date>-<time>]", false},
    {ROW(EF_FLAG_STR, "--resume", resume), 0, 0, NULL, "DIR|FILE",
     "go on from a checkpoint (DIR: its latest); other flags override its own", false},
    {ROW(EF_FLAG_STR, "--recipe", recipe), 0, 0, "default|official|timm", "R",
     "default (SGD, cosine), official (the EfficientNet TF recipe: RMSProp,\n0.016 per 256 images, 5 warm-up epochs, "
     "0.97 every 2.4 epochs, EMA 0.9999,\nAutoAugment, TF padding and BN) or timm (timm's B0 recipe: the\nsame "
     "optimizer and decay, 3 warm-up epochs, RandAugment, random\nerasing 0.2, dropout and drop-path 0.2, 450 "
     "epochs); flags override",
     true},
    {ROW(EF_FLAG_LONG, "--epochs", t.epochs), 1, 1e6, NULL, "N", "passes over the training images", true},
    {ROW(EF_FLAG_LONG, "--batch", t.batch), 1, 1 << 20, NULL, "N", "images per step (per rank and micro-batch)", true},
    {ROW(EF_FLAG_LONG, "--accum", t.accum), 1, 4096, NULL, "N",
     "micro-batches of --batch whose gradients make one update (the\nupdate is their mean; the learning rate and the "
     "schedule follow\nN x batch; batch norm's statistics stay per micro-batch)",
     true},
    {ROW(EF_FLAG_STR, "--optimizer", t.optimizer), 0, 0, "sgd|rmsprop|adamw", "O", "sgd, rmsprop (TF's) or adamw",
     true},
    {ROW(EF_FLAG_DOUBLE, "--lr", t.lr), 1e-9, 100, NULL, "F", "learning rate per 256 images, scaled by the batch",
     true},
    {ROW(EF_FLAG_DOUBLE, "--momentum", t.momentum), 0, 0.999999, NULL, "F", "SGD and RMSProp momentum", true},
    {ROW(EF_FLAG_BOOL, "--nesterov", t.nesterov), 0, 0, NULL, NULL, "Nesterov momentum (SGD)", true},
    {ROW(EF_FLAG_DOUBLE, "--weight-decay", t.weight_decay), 0, 1, NULL, "F", "on conv and dense weights", true},
    {ROW(EF_FLAG_BOOL, "--decay-all", t.decay_all), 0, 0, NULL, NULL,
     "weight decay on every parameter, BN and biases included", true},
    {ROW(EF_FLAG_STR, "--schedule", t.schedule), 0, 0, "cosine|exponential|constant", "S",
     "the learning rate after warm-up: cosine, exponential or constant", true},
    {ROW(EF_FLAG_DOUBLE, "--warmup", t.warmup), 0, 1e6, NULL, "F", "epochs of linear warm-up", true},
    {ROW(EF_FLAG_DOUBLE, "--decay-rate", t.decay_rate), 1e-6, 1, NULL, "F", "exponential: factor per --decay-epochs",
     true},
    {ROW(EF_FLAG_DOUBLE, "--decay-epochs", t.decay_epochs), 1e-3, 1e6, NULL, "F", "exponential: epochs between decays",
     true},
    {ROW(EF_FLAG_DOUBLE, "--label-smoothing", t.smoothing), 0, 0.999999, NULL, "F", "of the training loss's targets",
     true},
    {ROW(EF_FLAG_DOUBLE, "--ema", t.ema), 0, 0.999999999, NULL, "F", "EMA decay of weights and BN statistics (0: none)",
     true},
    {ROW(EF_FLAG_DOUBLE, "--clip", t.clip), 0, 1e9, NULL, "F", "clip gradients to this global norm (0: no)", true},
    {ROW(EF_FLAG_LONG, "--image-size", t.image_size), 0, 4096, NULL, "N",
     "training resolution (0: the pretrained model's with --init, else the\nimages' own size for IDX and CIFAR, "
     "upscaled to the least the\nmodel takes (32 for EfficientNets), the model's for image files)",
     true},
    {ROW(EF_FLAG_STR, "--augment", t.augment), 0, 0, "none|crop|autoaugment|randaugment", "A",
     "none (the evaluation geometry: resize, centre crop), crop\n(random-resized crop + flip), "
     "autoaugment or randaugment\n"
     "(crop + flip + the policy)",
     true},
    {ROW(EF_FLAG_LONG, "--eval-image-size", t.eval_image_size), 0, 4096, NULL, "N",
     "validation's resolution, and the saved model's evaluation one\n(0: --image-size; FixRes: a little higher often "
     "tests better)",
     true},
    {ROW(EF_FLAG_DOUBLE, "--mixup", t.mixup), 0, 1e3, NULL, "A",
     "Mixup: blend each batch with itself reversed, lambda ~ Beta(A, A)\n(timm's semantics; soft targets; 0: off)",
     true},
    {ROW(EF_FLAG_DOUBLE, "--cutmix", t.cutmix), 0, 1e3, NULL, "A",
     "CutMix: a box of each image from its partner, lambda ~ Beta(A, A)\n(0: off)", true},
    {ROW(EF_FLAG_DOUBLE, "--mix-prob", t.mix_prob), 0, 1, NULL, "P", "the probability that a batch is mixed", true},
    {ROW(EF_FLAG_DOUBLE, "--mix-switch-prob", t.mix_switch_prob), 0, 1, NULL, "P",
     "with --mixup and --cutmix: the share of mixed batches that CutMix", true},
    {ROW(EF_FLAG_DOUBLE, "--reprob", t.reprob), 0, 1, NULL, "P",
     "random erasing: the probability that an image gets a box of noise\n(after normalization; 0: off)", true},
    {ROW(EF_FLAG_STR, "--remode", t.remode), 0, 0, "pixel|rand|const", "M",
     "random erasing's fill: pixel (normal noise), rand (one value per\nchannel) or const (zeros)", true},
    {ROW(EF_FLAG_LONG, "--ra-magnitude", t.ra_magnitude), 0, 30, NULL, "M",
     "--augment randaugment's magnitude (2 ops each)", true},
    {ROW(EF_FLAG_LONG, "--limit", t.limit), 0, 1e12, NULL, "N", "train on the first N images only (0: all)", true},
    {ROW(EF_FLAG_LONG, "--val-limit", t.val_limit), 0, 1e12, NULL, "N",
     "validate on the first N test images only (0: all)", true},
    {ROW(EF_FLAG_LONG, "--stop-after", stop_after), 0, 1e12, NULL, "N",
     "save a checkpoint and stop after N steps, as Ctrl-C does", false},
    {ROW(EF_FLAG_LONG, "--keep", t.keep), 1, 1e6, NULL, "N", "checkpoints kept besides best.h5", true},
    {ROW(EF_FLAG_LONG, "--gpus", t.gpus), 0, 1024, NULL, "N",
     "data-parallel training on GPUs 0 ... N-1 of this host, one worker\nprocess each, started here (NCCL; no MPI "
     "needed; 0: off)",
     false},
    EF_STRICT_IMAGES_FLAG(ef_train_args, t.strict_images, true),
    {ROW(EF_FLAG_LONG, "--loader-threads", t.loader_threads), 0, 256, NULL, "N",
     "threads decoding and augmenting ahead of the step", true},
    {ROW(EF_FLAG_U64, "--seed", t.seed), 0, 0, NULL, "N", "initialization, order, augmentation and dropout", true},
    {ROW(EF_FLAG_LONG, "--log-every", log_every), 1, 1e9, NULL, "N",
     "steps between progress lines when not on a terminal", true},
    {ROW(EF_FLAG_BOOL, "--profile", t.profile), 0, 0, NULL, NULL, "print time per op kind after training", true},
    {ROW(EF_FLAG_LONG, "--steps-in-flight", t.steps_in_flight), 0, 2, NULL, "N",
     "2: each step queued before the one before it is read (a GPU never\nwaits for the host); 1: one at a time; the "
     "same results either way\n(0: 2 on a GPU, 1 on the CPU)",
     true},
    {ROW(EF_FLAG_DOUBLE, "--bucket-mb", t.bucket_mb), 0, 1024, NULL, "F",
     "several ranks: gradients all-reduced in buckets of F MiB while the\nbackward pass runs (0: one "
     "all-reduce after it)",
     true},
    {ROW(EF_FLAG_LONG, "--sync-bn", t.sync_bn), 0, 1 << 20, NULL, "N",
     "several ranks: batch-norm statistics over groups of N ranks (SyncBN;\nN divides the ranks; the number of ranks: "
     "the global batch; 0: off)",
     true},
    {ROW(EF_FLAG_DOUBLE, "--comm-timeout", t.comm_timeout), 1, 1e7, NULL, "S",
     "GPU ranks: a collective waiting longer than S seconds (a rank died\nor hangs) ends the job", true},
    EF_SECTION("progressive learning (EfficientNetV2; docs/training.md):"),
    {ROW(EF_FLAG_LONG, "--progressive", t.progressive), 0, 1000, NULL, "N",
     "N stages of equal epochs, each with values from the first stage's\n(below) to the run's own: image size, "
     "RandAugment's magnitude,\nMixup's alpha, dropout (0: off)",
     true},
    {ROW(EF_FLAG_LONG, "--prog-image-size", t.prog_image_size), 0, 4096, NULL, "N",
     "the first stage's image size  [--image-size]", true},
    {ROW(EF_FLAG_LONG, "--prog-ra-magnitude", t.prog_ra_magnitude), -1, 30, NULL, "M",
     "the first stage's RandAugment magnitude  [--ra-magnitude]", true},
    {ROW(EF_FLAG_DOUBLE, "--prog-mixup", t.prog_mixup), 0, 1e3, NULL, "A", "the first stage's Mixup alpha  [--mixup]",
     true},
    {ROW(EF_FLAG_DOUBLE, "--prog-dropout", t.prog_dropout), 0, 0.99, NULL, "F",
     "the first stage's dropout  [the model's]", true},
    EF_SECTION("fine-tuning (docs/transfer.md):"),
    {ROW(EF_FLAG_STR, "--init", t.init), 0, 0, NULL, "FILE",
     "start from pretrained weights (`effnet import`, `effnet export`, or a\ncheckpoint: its EMA when it has one): "
     "everything but the classifier\nloads, the classifier is re-initialized for the data's classes; the\nmodel, its "
     "input channels and its normalization come from FILE",
     true},
    {ROW(EF_FLAG_LONG, "--num-classes", t.spec.classes), 1, 1 << 24, NULL, "K",
     "the classifier's outputs; must equal the data's  [the data's]", true},
    {ROW(EF_FLAG_STR, "--freeze", t.freeze), 0, 0, NULL, "LIST",
     "hold fixed (weights and BN statistics): stem, head, backbone,\nblocks.A-B (stages A to B), or name prefixes "
     "(blocks.2.1.se)",
     true},
    {ROW(EF_FLAG_STR, "--bn", t.bn), 0, 0, "train|eval|frozen", "MODE",
     "other batch norms: train (batch statistics), eval (running\nstatistics, kept) or frozen (also the affine fixed)",
     true},
    {ROW(EF_FLAG_DOUBLE, "--backbone-lr", t.backbone_lr), 0, 1e3, NULL, "F",
     "learning-rate multiplier of all but the classifier", true},
    {ROW(EF_FLAG_STR, "--select-classes", t.select_classes), 0, 0, NULL, "LIST",
     "train and validate on these classes only, relabelled 0, 1, ...\nin this order (5-9, or 0,2,4-6)", true},
    {ROW(EF_FLAG_LONG, "--per-class", t.per_class), 0, 1e12, NULL, "N",
     "train on the first N images of each class only (0: all)", true},
};
#undef ROW

static const char *const official[] = {"--epochs",       "350",    "--optimizer",   "rmsprop",     "--lr",      "0.016",
                                       "--weight-decay", "1e-5",   "--schedule",    "exponential", "--warmup",  "5",
                                       "--ema",          "0.9999", "--augment",     "autoaugment", "--padding", "same",
                                       "--bn-eps",       "1e-3",   "--bn-momentum", "0.01",        NULL};
// timm's EfficientNet-B0 (77.7% top-1), hfdocs/source/training_script.mdx in pytorch-image-models:
// rmsproptf (eps 1e-3), lr 0.048 for 2 x 384 images (0.016 per 256), step decay 0.97 every 2.4 epochs,
// weight decay 1e-5, dropout and drop-path 0.2, EMA 0.9999, rand-m9-mstd0.5, random erasing 0.2
// (pixel), 450 epochs; warm-up: train.py's default then, 3 epochs.
// clang-format off
static const char *const timm[] = {"--epochs",  "450",         "--optimizer",    "rmsprop", "--lr",         "0.016",
                                   "--weight-decay", "1e-5",   "--schedule",     "exponential", "--warmup", "3",
                                   "--ema",     "0.9999",      "--augment",      "randaugment", "--reprob", "0.2",
                                   "--remode",  "pixel",       "--dropout",      "0.2",     "--drop-path",  "0.2",
                                   NULL};
// clang-format on
static const char *const no_values[] = {NULL};
static const ef_recipe recipes[] = {{"default", no_values}, {"official", official}, {"timm", timm}};

// The model flags the official recipe sets: with --init the pretrained model's own apply instead.
static const char *const recipe_model_flags[] = {"--padding", "--bn-eps", "--bn-momentum"};

static const char *const usage_head =
    "usage: effnet train [flags]\n"
    "\n"
    "Trains a model on the CPU or a GPU: validation every epoch, checkpoints, metrics.jsonl and TensorBoard\n"
    "events in --out. Ctrl-C saves a checkpoint and stops; --resume goes on from it. Every run prints its\n"
    "configuration, each value with where it came from (default, recipe, resumed or flag).\n"
    "\n";

void ef_train_flags_init(ef_flags *f, ef_train_args *o, const char *cmd, const char *head,
                         const ef_train_config *defaults) {
  o->t = defaults ? *defaults : ef_train_config_defaults();
  o->recipe = "default", o->resume = NULL, o->stop_after = 0, o->log_every = 100;
  ef_flags_init(f, cmd, head, NULL);
  ef_flags_add(f, train_flags, (int)(sizeof train_flags / sizeof train_flags[0]), o);
  ef_flags_add(f, ef_device_flags, EF_DEVICE_FLAGS, &o->t.dev);
  ef_flags_add(f, ef_model_flags, EF_MODEL_FLAGS, &o->t.spec);
  ef_flags_recipes(f, recipes, (int)(sizeof recipes / sizeof recipes[0]));
}

// A fresh table of the command `u` describes over o (and its own rows), whose values are the defaults.
static void flags_init(ef_flags *f, ef_train_args *o, const ef_train_command *u) {
  ef_train_flags_init(f, o, u->cmd, u->head, u->defaults);
  if (u->rows) {
    u->reset(u->base);
    ef_flags_add(f, u->rows, u->n, u->base);
  }
}

// The options: the recipe's values, then (resuming) the checkpoint's saved arguments, then the
// command line.
int ef_train_args_parse(int argc, char **argv, ef_train_args *o, ef_flags *f) {
  return ef_train_args_parse_as(argc, argv, o, f, &(ef_train_command){.cmd = "train", .head = usage_head});
}

int ef_train_args_parse_as(int argc, char **argv, ef_train_args *o, ef_flags *f, const ef_train_command *u) {
  char *resume_path = o->resume_path;
  size_t len = sizeof o->resume_path;
  flags_init(f, o, u);
  int rc = ef_flags_apply(f, argc, argv, EF_FROM_FLAG, NULL, 0); // first: --resume and --recipe
  if (rc) return rc;
  // What the first pass found, kept apart: every pass starts the table afresh.
  char saved_args[8192] = "", recipe[32] = "";
  if (ef_flags_given(f, "--recipe")) snprintf(recipe, sizeof recipe, "%s", o->recipe);
  if (o->resume) {
    ef_checkpoint_info *saved = ef_xmalloc(sizeof *saved);
    ef_status st = ef_run_dir_resume_path(o->resume, resume_path, len);
    if (st == EF_OK) st = ef_checkpoint_read_info(resume_path, saved);
    if (st == EF_OK) snprintf(saved_args, sizeof saved_args, "%s", saved->args);
    free(saved);
    if (st != EF_OK) return ef_report(u->cmd, 1);
  }
  if (!recipe[0]) { // the saved --recipe, if any
    flags_init(f, o, u);
    if ((rc = ef_flags_apply_saved(f, saved_args))) return rc;
    snprintf(recipe, sizeof recipe, "%s", o->recipe);
  }
  flags_init(f, o, u);
  if ((rc = ef_flags_apply_recipe(f, recipe)) || (rc = ef_flags_apply_saved(f, saved_args)) ||
      (rc = ef_flags_apply(f, argc, argv, EF_FROM_FLAG, NULL, 0)))
    return rc;
  o->t.resume = o->resume ? resume_path : NULL;
  // --gpus: each worker on the GPU of its rank (--device, unset, means cuda then).
  if (o->t.gpus && ef_flags_given(f, "--device") && strcmp(o->t.dev.device, "cuda")) {
    fprintf(stderr,
            "effnet %s: --gpus %ld runs one worker on each of GPUs 0 ... %ld: drop --device %s "
            "(CUDA_VISIBLE_DEVICES chooses which GPUs those are)\n",
            u->cmd, o->t.gpus, o->t.gpus - 1, o->t.dev.device);
    return 2;
  }
  if (o->t.gpus && !ef_flags_given(f, "--device") && (rc = ef_flags_set(f, "--device", "cuda", EF_FROM_FLAG)))
    return rc;
  ef_device d;
  if (ef_device_parse(&d, &o->t.dev) != EF_OK) return ef_report(u->cmd, 2);
  if (o->t.init) {
    bool model = ef_flags_given(f, "--model") && strcmp(o->t.model, "tiny");
    if (model || ef_effnet_spec_shapes(&o->t.spec)) {
      fprintf(stderr,
              "effnet %s: --init gives the architecture (width, depth, padding, input channels): drop --model, "
              "--phi, --width, --depth, --padding and --in-channels\n",
              u->cmd);
      return 2;
    }
    for (size_t i = 0; i < sizeof recipe_model_flags / sizeof recipe_model_flags[0]; i++)
      if (ef_flags_origin(f, recipe_model_flags[i]) == EF_FROM_RECIPE) ef_flags_reset(f, recipe_model_flags[i]);
    ef_flags_show(f, "--model", "(--init's)");
  }
  ef_effnet_config cfg;
  if (strcmp(o->t.model, "tiny") && isnan(o->t.spec.phi) && ef_effnet_preset(o->t.model, &cfg) != EF_OK) {
    fprintf(stderr, "effnet %s: unknown model '%s': use tiny, b0 ... b8, l2 or lite0 ... lite4\n", u->cmd, o->t.model);
    return 2;
  }
  o->t.args = o->saved;
  return ef_flags_saved(f, o->saved, sizeof o->saved);
}
