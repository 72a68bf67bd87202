// Learning-rate schedules (see schedule.h): warm-up, then exponential staircase, cosine or
// constant, with the steps derived from epochs as the official EfficientNet code does.
#include "train/schedule.h"

#include <math.h>
#include <string.h>

static const double pi = 3.14159265358979323846;

static int64_t steps_of(double epochs, double steps_per_epoch) { return (int64_t)(epochs * steps_per_epoch); }

ef_status ef_schedule_init(ef_schedule *s, const ef_schedule_config *cfg) {
  memset(s, 0, sizeof *s);
  if (!(cfg->base_lr > 0 && isfinite(cfg->base_lr)) || cfg->batch < 1)
    return EF_ERROR(EF_ERR_INVALID, "the learning rate needs a base rate > 0 and a batch >= 1 (got %g, %lld)",
                    cfg->base_lr, (long long)cfg->batch);
  if (!(cfg->steps_per_epoch > 0 && isfinite(cfg->steps_per_epoch)))
    return EF_ERROR(EF_ERR_INVALID, "the schedule needs steps per epoch > 0 (got %g): is the dataset empty?",
                    cfg->steps_per_epoch);
  if (!(cfg->warmup_epochs >= 0 && isfinite(cfg->warmup_epochs)))
    return EF_ERROR(EF_ERR_INVALID, "warm-up epochs must be >= 0 (got %g)", cfg->warmup_epochs);
  s->cfg = *cfg;
  s->lr = cfg->base_lr * (double)cfg->batch / 256;
  s->warmup_steps = steps_of(cfg->warmup_epochs, cfg->steps_per_epoch);
  switch (cfg->decay) {
  case EF_LR_EXPONENTIAL:
    if (!(cfg->decay_rate > 0 && cfg->decay_rate <= 1) || !(cfg->decay_epochs > 0 && isfinite(cfg->decay_epochs)))
      return EF_ERROR(EF_ERR_INVALID, "exponential decay needs a rate in (0, 1] and decay epochs > 0 (got %g, %g)",
                      cfg->decay_rate, cfg->decay_epochs);
    s->decay_steps = cfg->decay_epochs * cfg->steps_per_epoch;
    return EF_OK;
  case EF_LR_COSINE:
    s->total_steps = isfinite(cfg->epochs) ? steps_of(cfg->epochs, cfg->steps_per_epoch) : 0;
    if (s->total_steps <= s->warmup_steps)
      return EF_ERROR(EF_ERR_INVALID,
                      "cosine decay needs more training than warm-up: %g epochs is %lld steps, warm-up %lld",
                      cfg->epochs, (long long)s->total_steps, (long long)s->warmup_steps);
    return EF_OK;
  case EF_LR_CONSTANT: return EF_OK;
  }
  return EF_ERROR(EF_ERR_INVALID, "unknown learning-rate decay %d: use exponential, cosine or constant",
                  (int)cfg->decay);
}

double ef_lr_at(const ef_schedule *s, int64_t step) {
  EF_ASSERT(step >= 0, "learning rate at step %lld", (long long)step);
  if (step < s->warmup_steps) return s->lr * (double)step / (double)s->warmup_steps;
  switch (s->cfg.decay) {
  case EF_LR_EXPONENTIAL: return s->lr * pow(s->cfg.decay_rate, floor((double)step / s->decay_steps));
  case EF_LR_COSINE: {
    double done = (double)(step - s->warmup_steps) / (double)(s->total_steps - s->warmup_steps);
    return done >= 1 ? 0 : 0.5 * s->lr * (1 + cos(pi * done));
  }
  case EF_LR_CONSTANT: return s->lr;
  }
  EF_FATAL("learning-rate decay %d", (int)s->cfg.decay);
}
