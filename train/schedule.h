// The learning rate per step: a base rate per 256 images scaled by the global batch, a linear
// warm-up, then exponential staircase decay (the official EfficientNet recipe), cosine decay to
// zero, or a constant rate.
#ifndef EF_TRAIN_SCHEDULE_H
#define EF_TRAIN_SCHEDULE_H

#include <stdint.h>

#include "core/log.h"

typedef enum { EF_LR_EXPONENTIAL, EF_LR_COSINE, EF_LR_CONSTANT } ef_lr_decay;

typedef struct {
  ef_lr_decay decay;
  double base_lr;         // per 256 images (official B0: 0.016)
  int64_t batch;          // global batch: the rate is base_lr * batch / 256
  double steps_per_epoch; // images per epoch / batch, fractional as the official code has it
  double warmup_epochs;   // 5
  double decay_epochs;    // exponential: epochs between decays (2.4)
  double decay_rate;      // exponential: 0.97
  double epochs;          // cosine: the length of training, where the rate reaches 0
} ef_schedule_config;

typedef struct {
  ef_schedule_config cfg;
  double lr;            // the scaled peak rate
  int64_t warmup_steps; // int(warmup_epochs * steps_per_epoch)
  double decay_steps;   // exponential: decay_epochs * steps_per_epoch
  int64_t total_steps;  // cosine: int(epochs * steps_per_epoch)
} ef_schedule;

// Derives the schedule's steps; EF_ERR_INVALID with a message for a configuration that makes no
// sense (a rate <= 0, a decay rate outside (0, 1], cosine warm-up as long as training, ...).
ef_status ef_schedule_init(ef_schedule *s, const ef_schedule_config *cfg);

// The rate for `step` (0: the first optimizer step): lr * step / warmup_steps during warm-up,
// then lr * rate^floor(step / decay_steps), 0.5 lr (1 + cos(pi (step - warmup) / (total -
// warmup))) (0 after total), or lr.
double ef_lr_at(const ef_schedule *s, int64_t step);

#endif
