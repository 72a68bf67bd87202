// The trainer: a whole training run as a library, configured by a plain struct. Opening goes in
// phases (data, the model and its store, the device, the restore of a checkpoint, the run folder,
// the ranks); then the caller's loop feeds it batches (ef_trainer_step), ends epochs (validation
// with the raw and the EMA weights, checkpoints) and closes it. `effnet train` is a flag table
// and a short loop over these calls; other programs (a scaling search) train in-process the same
// way. Under mpirun or `effnet train --gpus`, every rank runs the same calls (docs/distributed.md).
#ifndef EF_TRAIN_TRAINER_H
#define EF_TRAIN_TRAINER_H

#include <stdbool.h>

#include "data/loader.h"
#include "train/checkpoint.h"
#include "train/comm.h"
#include "train/device.h"
#include "train/metrics.h"
#include "train/model.h"
#include "train/schedule.h"
#include "train/step.h"

typedef struct {
  // data
  const char *data;           // IDX, CIFAR or ImageFolder directory, or a path,label .csv
  const char *select_classes; // "5-9", "0,2,4-6": these classes only, relabelled 0, 1, ... (NULL: all)
  long per_class;             // the first N images of each class (0: all)
  long limit, val_limit;      // the first N training / test images (0: all)
  const char *augment;        // none, crop, autoaugment or randaugment
  long image_size;            // 0: the pretrained model's, else the images' own (IDX, CIFAR) or the least
                              // the model takes, else the model's
  long eval_image_size;       // validation's (and the saved model's evaluation) side (0: image_size; FixRes)
  double mixup, cutmix;       // Beta alphas of Mixup and CutMix (0: off), timm's semantics (data/mix.h)
  double mix_prob;            // the probability that a batch is mixed
  double mix_switch_prob;     // both on: the probability that a mixed batch is CutMix's
  double reprob;              // random erasing's probability per image (0: off)
  const char *remode;         // random erasing's fill: pixel, rand or const
  long ra_magnitude;          // --augment randaugment's magnitude M (of 30)
  // progressive learning (EfficientNetV2): `progressive` stages of equal epochs, each stage's values
  // from the first's (prog_*) to the run's own (image_size, ra_magnitude, mixup, the model's dropout)
  long progressive;       // stages (0, 1: off)
  long prog_image_size;   // the first stage's image size (0: image_size)
  long prog_ra_magnitude; // the first stage's RandAugment magnitude (-1: ra_magnitude)
  double prog_mixup;      // the first stage's Mixup alpha (NAN: mixup)
  double prog_dropout;    // the first stage's dropout (NAN: the model's)
  bool strict_images;     // JPEG data libjpeg warns about makes an image corrupt (skipped, counted)
  long loader_threads;
  // model
  const char *model;   // "tiny" or a preset (b0 ... b8, l2, lite0 ... lite4; ignored with spec.phi)
  ef_effnet_spec spec; // --phi and the configuration's overrides (spec.name unused)
  const char *init;    // fine-tuning: start from these weights (they give the architecture)
  const char *freeze;  // fine-tuning: modules held fixed (train/finetune.h), NULL: none
  const char *bn;      // train, eval or frozen: the other batch norms
  double backbone_lr;  // learning-rate multiplier of all but the classifier
  // optimization
  const char *optimizer; // sgd, rmsprop or adamw
  const char *schedule;  // cosine, exponential or constant
  long epochs, batch;    // batch: per rank and micro-batch
  long accum;            // micro-batches per update (gradient accumulation)
  double lr;             // per 256 images of the global batch
  double momentum, weight_decay, smoothing, warmup, decay_rate, decay_epochs, ema, clip;
  bool nesterov, decay_all;
  unsigned long long seed;
  // device and ranks
  ef_device_spec dev;  // --device, --precision, --threads
  long sync_bn;        // batch-norm statistics over groups of this many ranks (0: off)
  long gpus;           // the run's ranks were started by `effnet train --gpus N` (N), else 0
  double bucket_mb;    // gradient buckets (0: one all-reduce after the backward pass)
  double comm_timeout; // GPU ranks: a collective waiting longer ends the job (seconds)
  // the run
  const char *out;      // its folder (NULL: the resumed checkpoint's, or runs/<model>-<date>-<time>)
  const char *resume;   // a checkpoint to go on from (the file)
  long keep;            // checkpoints kept besides best.h5
  bool profile;         // time every node (on a GPU: no captured graph)
  long steps_in_flight; // 1: each step collected before the next is queued; 2: step k + 1 queued before
                        // step k's results are read  [0: 2 on a GPU, 1 on the CPU]
  const char *args;     // what checkpoints keep for --resume: the arguments, "--flag\nvalue\n..."
} ef_train_config;

typedef struct {
  ef_train_config cfg;
  ef_comm *comm;    // the ranks (owned); rank 0 alone writes files
  ef_comm *bn_comm; // --sync-bn: this rank's group
  ef_dataset train, test;
  int64_t all_train, all_test; // what the datasets hold (--limit cuts their n below)
  ef_transform train_tf;
  ef_checkpoint_info info; // the model (description) and the position
  ef_weights_info pre;     // --init's weights (resuming: the checkpoint's)
  bool resuming;
  ef_checkpoint_info saved; // resuming: what the checkpoint recorded
  ef_loader *train_loader, *test_loader;
  ef_device dev;
  ef_store *store;
  ef_model_graph tr, ev;
  ef_step step;
  int stage;          // progressive learning: the stage the training graph and loader are built for
  int depth;          // steps in flight (cfg.steps_in_flight resolved)
  ef_cuda_feed *feed; // GPU: uint8 batches uploaded and normalized on the device
  ef_schedule sched;
  ef_metrics *metrics; // rank 0 only
  char out[4096];
  int lock;             // rank 0: its hold on the run folder (train/run_dir.h), -1 elsewhere
  int64_t global_batch; // an update's images over all ranks (batch x ranks x accum): what the learning
                        // rate follows
  size_t frozen;        // parameters held fixed (--freeze)
  bool usage_error;     // the last failure was the configuration's (a command exits 2 for it)
} ef_trainer;

// The defaults of every field: the tiny net on Fashion-MNIST, SGD with momentum 0.9 at 0.4 per
// 256 images, cosine decay, 10 epochs of batch 64, label smoothing 0.1, no mixing or erasing, on the
// CPU.
ef_train_config ef_train_config_defaults(void);

// The model cfg trains on dataset d (its training split; `pre`: --init's weights, else NULL):
// the description (its resolution the training side), the training and the validation sides, by
// the rules ef_trainer_open applies. EF_ERR_INVALID naming what is wrong with the configuration.
ef_status ef_train_describe(const ef_train_config *c, const ef_dataset *d, const ef_weights_info *pre, ef_model_desc *m,
                            int *size, int *eval_size);

// Opens the run in phases, each with a clear error: the data, the model and its store, the
// device, the restore of cfg->resume (the model, EMA, optimizer and position), the run folder
// (metrics, classes.txt); then, under several ranks, waits until every rank got this far (one
// that failed makes all fail). Takes over `comm` (the job's communicator) whatever happens; free
// with ef_trainer_close even after a failure.
ef_status ef_trainer_open(ef_trainer *t, const ef_train_config *cfg, ef_comm *comm);
// Several ranks: NCCL on GPUs in place of the launch's communicator, SyncBN's groups, the
// gradient buckets; then rank 0's state (model, EMA, optimizer slots, BN statistics) goes to every
// rank, so that all start from the same point.
ef_status ef_trainer_connect(ef_trainer *t);

// One training step on a batch of the training loader; the position advances when it applied (or
// f16 skipped it for an overflow). r->finite false: the run is broken (the caller stops). With
// accum, a micro-batch: r->partial until the update's last.
void ef_trainer_step(ef_trainer *t, const ef_batch *b, ef_step_result *r, double *lr);
// A stop any rank was asked for (a signal number, 0: none), the same on every rank.
int ef_trainer_agree_stop(ef_trainer *t, int local_signal);
// Logs one progress point (rank 0): the step's loss, the epoch's accuracy so far, the rate.
ef_status ef_trainer_log_progress(ef_trainer *t, double loss, double acc, double lr, double images_per_s);

typedef struct {
  ef_eval_result live, ema; // ema: when the run keeps one
  bool best;                // the best top-1 so far (the EMA's when there is one)
} ef_epoch_result;
// The end of an epoch: the position moves to the next one and (rank 0) the epoch's training is
// saved, marked validation_pending, before its validation can fail (older checkpoints are pruned
// only once it passed); then ef_trainer_validate.
ef_status ef_trainer_end_epoch(ef_trainer *t, ef_epoch_result *e);
// The ended epoch's validation: the BN statistics go from rank 0 to every rank, validation with
// the live weights and the EMA's (sharded, summed over ranks), the metrics logged, and (rank 0)
// the checkpoint saved again, validated (best.h5 too when it is the best). A non-finite validation
// loss is EF_ERR_NUMERIC, and the epoch's checkpoint is removed. A run resumed from a checkpoint
// that is info.validation_pending calls it first (ef_trainer_fit does).
ef_status ef_trainer_validate(ef_trainer *t, ef_epoch_result *e);
// What a caller hears of a run while ef_trainer_fit trains.
typedef struct {
  void *user;
  // After every step that trained (on every rank): its result and learning rate. A failure
  // (e.g. writing the metrics) stops the run with that error.
  ef_status (*after_step)(void *user, ef_trainer *t, const ef_step_result *r, double lr);
  // After every epoch's validation (and, when it succeeded, its checkpoint).
  void (*after_epoch)(void *user, ef_trainer *t, const ef_epoch_result *e);
  // This rank's stop request: a signal number, 0 for none; asked after every step and epoch.
  int (*stop_requested)(void *user);
  // Progressive learning: after the run moved to another stage (ef_trainer_stage says which).
  void (*stage_entered)(void *user, ef_trainer *t);
  long stop_after; // save and stop after this many steps of this call (0: never)
} ef_fit_hooks;

typedef struct {
  int signal;          // stopped by this signal, the same on every rank (a checkpoint was saved)
  bool after_epoch;    // ... which arrived during an epoch's end (its checkpoint stands)
  bool stopped;        // stopped after hooks->stop_after steps (a checkpoint was saved)
  bool broken;         // a non-finite loss or gradient norm: stopped without saving
  ef_step_result last; // the last step's result
  int64_t last_batch;  // and its batch's index in the epoch
} ef_fit_result;

// Trains from the position to the last epoch (or a stop): a pending validation first, then steps
// and each epoch's end. A
// failure of this rank alone (a file, the disk, a corrupt image) ends the whole job under several
// ranks, as the others would wait for it in the next collective; a non-finite validation loss
// (EF_ERR_NUMERIC) is the same on every rank, and returns.
ef_status ef_trainer_fit(ef_trainer *t, const ef_fit_hooks *h, ef_fit_result *r);

// Saves a checkpoint at the current position (rank 0), keeps the newest cfg.keep, and copies it
// to best.h5 when `best`.
ef_status ef_trainer_save(ef_trainer *t, bool best);
// The updates of an epoch (per rank): its batches, over accum (the rest of the epoch is left out).
int64_t ef_trainer_batches(const ef_trainer *t);
// Progressive learning: the current stage (0-based, of `stages`) and what it trains with.
typedef struct {
  int stage, stages, image_size, ra_magnitude;
  double mixup, dropout;
} ef_stage_info;
ef_stage_info ef_trainer_stage(const ef_trainer *t);
// Whether the run trains on mixed (soft) targets: its training accuracy is then not reported.
bool ef_trainer_mixes(const ef_trainer *t);

void ef_trainer_close(ef_trainer *t);

#endif
