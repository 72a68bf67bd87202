// Checkpoints (see checkpoint.h): the model, EMA and optimizer slots as tensor sets of
// models/weights.c, and the run's state as root attributes, in one table so that saving and
// reading cannot drift apart.
#include "train/checkpoint.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "models/weights.h"

// One root attribute bound to a field of ef_checkpoint_info.
typedef struct {
  const char *name;
  ef_attr_kind kind;
  size_t offset;      // of the field
  int width;          // INT fields: 4 (int) or 8 (int64_t); STRING: the buffer's size
} info_field;

#define INT_FIELD(n, f) {n, EF_ATTR_INT, offsetof(ef_checkpoint_info, f), (int)sizeof(((ef_checkpoint_info *)0)->f)}
#define DBL_FIELD(n, f) {n, EF_ATTR_DOUBLE, offsetof(ef_checkpoint_info, f), 8}
#define STR_FIELD(n, f) {n, EF_ATTR_STRING, offsetof(ef_checkpoint_info, f), (int)sizeof(((ef_checkpoint_info *)0)->f)}

static const info_field fields[] = {
    STR_FIELD("arch", arch),
    INT_FIELD("classes", num_classes),
    INT_FIELD("channels", in_channels),
    INT_FIELD("step", step),
    INT_FIELD("epoch", epoch),
    INT_FIELD("batch", batch),
    INT_FIELD("seed", seed),
    DBL_FIELD("epoch_loss", epoch_loss),
    INT_FIELD("epoch_correct", epoch_correct),
    INT_FIELD("epoch_seen", epoch_seen),
    DBL_FIELD("best_top1", best_top1),
    STR_FIELD("train_args", args),
    STR_FIELD("class_names", class_names),
    INT_FIELD("image_size", eval.size),
    INT_FIELD("image_channels", eval.channels),
    DBL_FIELD("crop_pct", eval.crop_pct),
};
enum { NFIELDS = sizeof fields / sizeof fields[0], NEXTRA = 7 };

// The attribute of field f, pointing at info's own storage (strings are read and written in place).
static ef_attr field_attr(const ef_checkpoint_info *info, const info_field *f) {
  char *p = (char *)info + f->offset;
  ef_attr a = {.name = f->name, .kind = f->kind};
  if (f->kind == EF_ATTR_INT) a.i = f->width == 4 ? *(const int *)p : *(const int64_t *)p;
  else if (f->kind == EF_ATTR_DOUBLE) a.d = *(const double *)p;
  else a.s = p, a.cap = (size_t)f->width;
  return a;
}

static void from_attr(ef_checkpoint_info *info, const info_field *f, const ef_attr *a) {
  char *p = (char *)info + f->offset;
  if (f->kind == EF_ATTR_INT && f->width == 4) *(int *)p = (int)a->i;
  else if (f->kind == EF_ATTR_INT) *(int64_t *)p = a->i;
  else if (f->kind == EF_ATTR_DOUBLE) *(double *)p = a->d;
}

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
    l->sets[l->n++] = (ef_tensor_set){l->groups[k], ef_optim_slot(optim, k), NULL};
  }
}

static void triple(char *buf, size_t len, const float v[3]) { snprintf(buf, len, "%.9g,%.9g,%.9g", v[0], v[1], v[2]); }

ef_status ef_checkpoint_save(const char *path, const ef_store *s, const ef_ema *ema, const ef_optim *optim,
                             const ef_checkpoint_info *info) {
  EF_ASSERT(!ema || !ema->swapped, "saving a checkpoint while the EMA is swapped into the store");
  char interp[16], mean[64], std[64];
  snprintf(interp, sizeof interp, "%s", info->eval.interp == EF_INTERP_BICUBIC ? "bicubic" : "bilinear");
  triple(mean, sizeof mean, info->eval.mean), triple(std, sizeof std, info->eval.std);
  ef_attr attrs[NFIELDS + NEXTRA];
  int n = 0;
  for (int i = 0; i < NFIELDS; i++) attrs[n++] = field_attr(info, &fields[i]);
  attrs[n++] = (ef_attr){.name = "interpolation", .kind = EF_ATTR_STRING, .s = interp};
  attrs[n++] = (ef_attr){.name = "mean", .kind = EF_ATTR_STRING, .s = mean};
  attrs[n++] = (ef_attr){.name = "std", .kind = EF_ATTR_STRING, .s = std};
  attrs[n++] = (ef_attr){.name = "ema_updates", .kind = EF_ATTR_INT, .i = ema ? ema->updates : -1};
  attrs[n++] = (ef_attr){.name = "ema_decay", .kind = EF_ATTR_DOUBLE, .d = ema ? ema->decay : 0};
  attrs[n++] = (ef_attr){.name = "optimizer_step", .kind = EF_ATTR_INT, .i = optim ? optim->step : -1};
  attrs[n++] = (ef_attr){.name = "loss_scale", .kind = EF_ATTR_DOUBLE, .d = info->loss_scale};
  set_list l;
  list_sets(&l, ema, (ef_optim *)optim); // only read from
  return ef_weights_save_sets(path, s, strcmp(info->arch, "tiny") ? &info->cfg : NULL, l.sets, l.n, attrs, n);
}

static ef_status parse_triple(const char *path, const char *name, const char *text, float v[3]) {
  if (sscanf(text, "%f,%f,%f", &v[0], &v[1], &v[2]) != 3)
    return EF_ERROR(EF_ERR_FORMAT, "%s: attribute %s is '%s', expected three numbers", path, name, text);
  return EF_OK;
}

ef_status ef_checkpoint_read_norm(const char *path, float mean[3], float std[3], bool *found) {
  char m[64], s[64];
  ef_attr attrs[2] = {{.name = "mean", .kind = EF_ATTR_STRING, .s = m, .cap = sizeof m, .optional = true},
                      {.name = "std", .kind = EF_ATTR_STRING, .s = s, .cap = sizeof s, .optional = true}};
  EF_TRY(ef_weights_read_attrs(path, attrs, 2));
  *found = attrs[0].found && attrs[1].found;
  if (!*found) return EF_OK;
  EF_TRY(parse_triple(path, "mean", m, mean));
  return parse_triple(path, "std", s, std);
}

ef_status ef_checkpoint_read_info(const char *path, ef_checkpoint_info *info) {
  memset(info, 0, sizeof *info);
  char interp[16], mean[64], std[64];
  ef_attr attrs[NFIELDS + 4];
  for (int i = 0; i < NFIELDS; i++) attrs[i] = field_attr(info, &fields[i]);
  attrs[NFIELDS] = (ef_attr){.name = "interpolation", .kind = EF_ATTR_STRING, .s = interp, .cap = sizeof interp};
  attrs[NFIELDS + 1] = (ef_attr){.name = "mean", .kind = EF_ATTR_STRING, .s = mean, .cap = sizeof mean};
  attrs[NFIELDS + 2] = (ef_attr){.name = "std", .kind = EF_ATTR_STRING, .s = std, .cap = sizeof std};
  // Written since mixed precision: files from before have none (0).
  attrs[NFIELDS + 3] = (ef_attr){.name = "loss_scale", .kind = EF_ATTR_DOUBLE, .optional = true};
  EF_TRY(ef_weights_read_attrs(path, attrs, NFIELDS + 4));
  for (int i = 0; i < NFIELDS; i++) from_attr(info, &fields[i], &attrs[i]);
  info->loss_scale = attrs[NFIELDS + 3].found ? attrs[NFIELDS + 3].d : 0;
  double crop_pct = info->eval.crop_pct; // the other transform fields are the defaults
  info->eval = ef_transform_defaults(false, info->eval.size, info->eval.channels);
  info->eval.crop_pct = crop_pct;
  info->eval.interp = strcmp(interp, "bilinear") ? EF_INTERP_BICUBIC : EF_INTERP_BILINEAR;
  EF_TRY(parse_triple(path, "mean", mean, info->eval.mean));
  EF_TRY(parse_triple(path, "std", std, info->eval.std));
  if (strcmp(info->arch, "tiny") && strcmp(info->arch, "efficientnet"))
    return EF_ERROR(EF_ERR_FORMAT, "%s: unknown architecture '%s'", path, info->arch);
  if (!strcmp(info->arch, "efficientnet")) EF_TRY(ef_weights_read_config(path, &info->cfg));
  return ef_transform_validate(&info->eval);
}

ef_status ef_checkpoint_load(const char *path, ef_store *s, ef_ema *ema, ef_optim *optim) {
  ef_attr counts[2] = {{.name = "ema_updates", .kind = EF_ATTR_INT}, {.name = "optimizer_step", .kind = EF_ATTR_INT}};
  EF_TRY(ef_weights_read_attrs(path, counts, 2));
  if (ema && counts[0].i < 0) return EF_ERROR(EF_ERR_FORMAT, "%s has no EMA: the run resuming it keeps one (--ema 0 to go on without)", path);
  if (optim && counts[1].i < 0) return EF_ERROR(EF_ERR_FORMAT, "%s has no optimizer state to resume from", path);
  set_list l;
  list_sets(&l, ema, optim);
  EF_TRY(ef_weights_load_sets(path, s, l.sets, l.n));
  if (ema) ema->updates = counts[0].i;
  if (optim) optim->step = counts[1].i;
  return EF_OK;
}
