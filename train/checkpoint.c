// Checkpoints (see checkpoint.h): the model, EMA and optimizer slots as tensor sets of
// models/weights.c, and the run's state as root attributes, in one table so that saving and
// reading cannot drift apart.
#include "train/checkpoint.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "models/weights.h"

// The run's position and arguments, as root attributes (the model's description is written
// beside them by train/model.c's table).
#define INT_FIELD(n, f) EF_ATTR_INT_FIELD(ef_checkpoint_info, n, f)
#define DBL_FIELD(n, f) EF_ATTR_DBL_FIELD(ef_checkpoint_info, n, f)
static const ef_attr_field fields[] = {
    INT_FIELD("step", step),
    INT_FIELD("epoch", epoch),
    INT_FIELD("batch", batch),
    INT_FIELD("seed", seed),
    DBL_FIELD("epoch_loss", epoch_loss),
    INT_FIELD("epoch_correct", epoch_correct),
    INT_FIELD("epoch_seen", epoch_seen),
    DBL_FIELD("best_top1", best_top1),
    EF_ATTR_STR_FIELD(ef_checkpoint_info, "train_args", args),
    // Written since mixed precision: files from before have none (0).
    {"loss_scale", EF_ATTR_DOUBLE, offsetof(ef_checkpoint_info, loss_scale), 8, true},
    // Written since checkpoints come before validation: files from before were validated (0).
    {"validation_pending", EF_ATTR_INT, offsetof(ef_checkpoint_info, validation_pending), 8, true},
};
enum { NFIELDS = sizeof fields / sizeof fields[0], NEXTRA = 3 };

// What a file's counters can be: a step has the 12 digits of its file's name (so do the EMA's and
// the optimizer's counts of steps), an epoch --epochs' range.
static const int64_t max_step = 999999999999LL, max_epoch = 1000000;

// The tensor sets of a checkpoint: the model, then the EMA and each optimizer slot when given.
typedef struct {
  ef_tensor_set sets[2 + EF_OPTIM_MAX_SLOTS];
  char groups[EF_OPTIM_MAX_SLOTS][64];
  int n;
} set_list;

static void list_sets(set_list *l, const ef_ema *ema, ef_optim *optim) {
  l->sets[0] = (ef_tensor_set){"model", NULL, NULL}, l->n = 1;
  if (ema) l->sets[l->n++] = (ef_tensor_set){"ema", ema->shadow[EF_ARENA_PARAM], ema->shadow[EF_ARENA_STATE]};
  for (int k = 0; optim && k < ef_optim_slots(optim); k++) {
    snprintf(l->groups[k], sizeof l->groups[k], "optimizer/%s", ef_optim_slot_name(optim, k));
    l->sets[l->n++] =
        (ef_tensor_set){l->groups[k], ef_optim_slot(optim, k), NULL, NULL, ef_optim_slot_squares(optim, k)};
  }
}

ef_status ef_checkpoint_save(const char *path, const ef_store *s, const ef_ema *ema, const ef_optim *optim,
                             const ef_checkpoint_info *info) {
  EF_ASSERT(!ema || !ema->swapped, "saving a checkpoint while the EMA is swapped into the store");
  ef_desc_attrs da;
  ef_model_desc_attrs(&info->model, &da);
  ef_attr attrs[sizeof da.attrs / sizeof da.attrs[0] + NFIELDS + NEXTRA];
  memcpy(attrs, da.attrs, sizeof(ef_attr) * (size_t)da.n);
  int n = da.n;
  ef_attr_fields_bind(fields, NFIELDS, info, attrs + n);
  n += NFIELDS;
  attrs[n++] = (ef_attr){.name = "ema_updates", .kind = EF_ATTR_INT, .i = ema ? ema->updates : -1};
  attrs[n++] = (ef_attr){.name = "ema_decay", .kind = EF_ATTR_DOUBLE, .d = ema ? ema->decay : 0};
  attrs[n++] = (ef_attr){.name = "optimizer_step", .kind = EF_ATTR_INT, .i = optim ? optim->step : -1};
  set_list l;
  list_sets(&l, ema, (ef_optim *)optim); // only read from
  const ef_effnet_config *cfg = strcmp(info->model.arch, "tiny") ? &info->model.cfg : NULL;
  return ef_weights_save_sets(path, s, cfg, l.sets, l.n, attrs, n);
}

ef_status ef_checkpoint_read_info(const char *path, ef_checkpoint_info *info) {
  memset(info, 0, sizeof *info);
  ef_weights_info w;
  EF_TRY(ef_weights_info_read(path, &w));
  if (!w.checkpoint)
    return EF_ERROR(EF_ERR_FORMAT,
                    "%s holds weights, not a training checkpoint (no position to resume from): start a "
                    "run from it with --init",
                    path);
  info->model = w.desc;
  ef_attr attrs[NFIELDS];
  ef_attr_fields_bind(fields, NFIELDS, info, attrs);
  EF_TRY(ef_weights_read_attrs(path, attrs, NFIELDS));
  EF_TRY(ef_attr_fields_store(fields, NFIELDS, info, attrs, path));
  if (info->step < 0 || info->step > max_step || info->epoch < 0 || info->epoch > max_epoch || info->batch < 0 ||
      info->batch > info->step || info->epoch_seen < 0 || info->epoch_correct < 0 ||
      info->epoch_correct > info->epoch_seen || !isfinite(info->epoch_loss) || !isfinite(info->loss_scale) ||
      info->loss_scale < 0 || !(info->best_top1 >= -1 && info->best_top1 <= 1) ||
      (info->validation_pending != 0 && (info->validation_pending != 1 || info->batch || info->epoch_seen)))
    return EF_ERROR(EF_ERR_FORMAT,
                    "%s: its position or counters are out of range (step %lld, epoch %lld, batch %lld, "
                    "loss scale %g): a damaged file?",
                    path, (long long)info->step, (long long)info->epoch, (long long)info->batch, info->loss_scale);
  return EF_OK;
}

ef_status ef_checkpoint_load(const char *path, ef_store *s, ef_ema *ema, ef_optim *optim) {
  ef_attr counts[2] = {{.name = "ema_updates", .kind = EF_ATTR_INT}, {.name = "optimizer_step", .kind = EF_ATTR_INT}};
  EF_TRY(ef_weights_read_attrs(path, counts, 2));
  if (ema && counts[0].i < 0)
    return EF_ERROR(EF_ERR_FORMAT, "%s has no EMA: the run resuming it keeps one (--ema 0 to go on without)", path);
  if (optim && counts[1].i < 0) return EF_ERROR(EF_ERR_FORMAT, "%s has no optimizer state to resume from", path);
  for (int i = 0; i < 2; i++)
    if (counts[i].i < -1 || counts[i].i > max_step)
      return EF_ERROR(EF_ERR_FORMAT, "%s: attribute %s is %lld, out of range: a damaged file?", path, counts[i].name,
                      (long long)counts[i].i);
  set_list l;
  list_sets(&l, ema, optim);
  EF_TRY(ef_weights_load_sets(path, s, l.sets, l.n));
  if (ema) ema->updates = counts[0].i;
  if (optim) optim->step = counts[1].i;
  return EF_OK;
}
