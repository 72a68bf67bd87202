// SGD, TF-style RMSProp and AdamW over the flat parameter and gradient arenas, and global-norm
// gradient clipping (see optim.h). Updates are elementwise: one OpenMP loop per large entry.
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"

// Entries with fewer elements update on one thread: starting a parallel region costs more.
#define PARALLEL_MIN 65536
// The gradient norm's partial sums: a fixed count, whatever the number of threads.
#define NORM_CHUNKS 64

ef_optim_config ef_optim_defaults(ef_optim_kind kind) {
  switch (kind) {
  case EF_OPT_SGD: return (ef_optim_config){.kind = kind, .momentum = 0.9, .weight_decay = 1e-4};
  case EF_OPT_RMSPROP:
    return (ef_optim_config){.kind = kind, .momentum = 0.9, .rho = 0.9, .eps = 1e-3, .weight_decay = 1e-5};
  case EF_OPT_ADAMW:
    return (ef_optim_config){.kind = kind, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 1e-2};
  }
  EF_FATAL("optimizer kind %d", (int)kind);
}

_Static_assert((int)EF_OPT_SGD == (int)EF_UPDATE_SGD && (int)EF_OPT_RMSPROP == (int)EF_UPDATE_RMSPROP &&
                   (int)EF_OPT_ADAMW == (int)EF_UPDATE_ADAMW,
               "core/update.h numbers the optimizers as ef_optim_kind");

ef_status ef_require_updatable_store(const ef_store *s, const char *who) {
  if (!s->be || (strcmp(s->be->name, "cpu") && !s->be->arena))
    return EF_ERROR(EF_ERR_UNSUPPORTED, "%s cannot update a store on %s: bind it to the CPU backend or to CUDA", who,
                    s->be ? s->be->name : "no backend");
  return EF_OK;
}

ef_backend *ef_device_of(const ef_store *s) { return s->be && s->be->arena ? s->be : NULL; }

float *ef_arena_alloc(ef_backend *device, size_t n, float value) {
  size_t bytes = (n ? n : 1) * sizeof(float);
  if (device) {
    float *p = device->alloc(device, bytes);
    if (p) device->arena->fill(device, p, value, n);
    return p;
  }
  float *p = ef_aligned_alloc(bytes);
  for (size_t i = 0; p && i < n; i++) p[i] = value;
  return p;
}

void ef_arena_free(ef_backend *device, float *p) {
  if (!p) return;
  if (device) device->free(device, p);
  else free(p);
}

// Each kind's slots, by name, initial value (TF starts RMSProp's mean square at 1) and whether
// they hold mean squares (never below 0).
typedef struct {
  const char *name;
  float init;
  bool squares;
} slot_spec;
static const slot_spec slot_specs[][EF_OPTIM_MAX_SLOTS] = {
    [EF_OPT_SGD] = {{"momentum", 0, false}},
    [EF_OPT_RMSPROP] = {{"rms", 1, true}, {"momentum", 0, false}},
    [EF_OPT_ADAMW] = {{"exp_avg", 0, false}, {"exp_avg_sq", 0, true}},
};

static bool in_unit(double x) { return x >= 0 && x < 1; }

static ef_status check_config(const ef_optim_config *c) {
  if (!(c->weight_decay >= 0 && isfinite(c->weight_decay)))
    return EF_ERROR(EF_ERR_INVALID, "weight decay must be finite and >= 0 (got %g)", c->weight_decay);
  switch (c->kind) {
  case EF_OPT_SGD:
    if (!in_unit(c->momentum)) return EF_ERROR(EF_ERR_INVALID, "SGD needs momentum in [0, 1) (got %g)", c->momentum);
    if (c->nesterov && c->momentum == 0) return EF_ERROR(EF_ERR_INVALID, "Nesterov SGD needs a momentum > 0");
    return EF_OK;
  case EF_OPT_RMSPROP:
    if (!in_unit(c->momentum) || !in_unit(c->rho) || !(c->eps > 0))
      return EF_ERROR(EF_ERR_INVALID, "RMSProp needs momentum and rho in [0, 1) and eps > 0 (got %g, %g, %g)",
                      c->momentum, c->rho, c->eps);
    return EF_OK;
  case EF_OPT_ADAMW:
    if (!in_unit(c->beta1) || !in_unit(c->beta2) || !(c->eps > 0))
      return EF_ERROR(EF_ERR_INVALID, "AdamW needs beta1 and beta2 in [0, 1) and eps > 0 (got %g, %g, %g)", c->beta1,
                      c->beta2, c->eps);
    return EF_OK;
  }
  return EF_ERROR(EF_ERR_INVALID, "unknown optimizer kind %d: use SGD, RMSProp or AdamW", (int)c->kind);
}

ef_status ef_optim_init(ef_optim *o, const ef_store *s, const ef_optim_config *cfg) {
  memset(o, 0, sizeof *o);
  EF_TRY(ef_require_updatable_store(s, "the optimizer"));
  EF_TRY(check_config(cfg));
  o->cfg = *cfg;
  o->n = s->numel[0];
  o->device = ef_device_of(s);
  const slot_spec *slots = slot_specs[cfg->kind];
  o->n_slots = cfg->kind == EF_OPT_SGD ? cfg->momentum > 0 : 2;
  for (int k = 0; k < o->n_slots; k++) {
    o->slots[k] = ef_arena_alloc(o->device, o->n, slots[k].init);
    if (!o->slots[k]) {
      size_t mib = o->n * sizeof(float) >> 20;
      ef_optim_free(o);
      return EF_ERROR(EF_ERR_NOMEM, "out of %s memory allocating %zu MiB for the optimizer's '%s'; use a smaller model",
                      o->device ? o->device->name : "host", mib, slots[k].name);
    }
    o->slot_names[k] = slots[k].name;
  }
  return EF_OK;
}

void ef_optim_free(ef_optim *o) {
  for (int k = 0; k < EF_OPTIM_MAX_SLOTS; k++) ef_arena_free(o->device, o->slots[k]);
  memset(o, 0, sizeof *o);
}

int ef_optim_slots(const ef_optim *o) { return o->n_slots; }

const char *ef_optim_slot_name(const ef_optim *o, int slot) {
  EF_ASSERT(slot >= 0 && slot < o->n_slots, "slot %d of %d", slot, o->n_slots);
  return o->slot_names[slot];
}

bool ef_optim_slot_squares(const ef_optim *o, int slot) {
  EF_ASSERT(slot >= 0 && slot < o->n_slots, "slot %d of %d", slot, o->n_slots);
  return slot_specs[o->cfg.kind][slot].squares;
}

float *ef_optim_slot(ef_optim *o, int slot) {
  EF_ASSERT(slot >= 0 && slot < o->n_slots, "slot %d of %d", slot, o->n_slots);
  return o->slots[slot];
}

// One entry's update: its parameters p, gradients g and slots s0, s1 (NULL where the optimizer
// has fewer), n elements, its weight decay wd (0 where none applies) at learning rate lr.
typedef struct {
  float *p;
  const float *g;
  float *s0, *s1;
  int64_t n;
  double wd, lr;
} entry_update;

static void sgd_update(const ef_optim *o, const entry_update *u) {
  float *p = u->p, *v = u->s0, m = (float)o->cfg.momentum, wd = (float)u->wd, lr = (float)u->lr;
  const float *g = u->g;
  bool nesterov = o->cfg.nesterov;
#pragma omp parallel for schedule(static) if (u->n > PARALLEL_MIN)
  for (int64_t i = 0; i < u->n; i++) {
    float gi = g[i] + wd * p[i];
    if (!v) {
      p[i] -= lr * gi;
      continue;
    }
    v[i] = m * v[i] + gi;
    p[i] -= lr * (nesterov ? gi + m * v[i] : v[i]);
  }
}

static void rmsprop_update(const ef_optim *o, const entry_update *u) {
  float *p = u->p, *ms = u->s0, *mom = u->s1, wd = (float)u->wd, lr = (float)u->lr;
  float rho = (float)o->cfg.rho, one_rho = (float)(1 - o->cfg.rho), m = (float)o->cfg.momentum, eps = (float)o->cfg.eps;
  const float *g = u->g;
#pragma omp parallel for schedule(static) if (u->n > PARALLEL_MIN)
  for (int64_t i = 0; i < u->n; i++) {
    float gi = g[i] + wd * p[i];
    ms[i] = rho * ms[i] + one_rho * gi * gi;
    mom[i] = m * mom[i] + lr * gi / sqrtf(ms[i] + eps);
    p[i] -= mom[i];
  }
}

static void adamw_update(const ef_optim *o, const entry_update *u) {
  double t = (double)o->step, b1 = o->cfg.beta1, b2 = o->cfg.beta2;
  float *p = u->p, *m = u->s0, *v = u->s1, shrink = (float)(1 - u->lr * u->wd);
  float fb1 = (float)b1, one_b1 = (float)(1 - b1), fb2 = (float)b2, one_b2 = (float)(1 - b2), eps = (float)o->cfg.eps;
  float step_size = (float)(u->lr / (1 - pow(b1, t))), bc2_sqrt = (float)sqrt(1 - pow(b2, t));
  const float *g = u->g;
#pragma omp parallel for schedule(static) if (u->n > PARALLEL_MIN)
  for (int64_t i = 0; i < u->n; i++) {
    p[i] *= shrink;
    m[i] = fb1 * m[i] + one_b1 * g[i];
    v[i] = fb2 * v[i] + one_b2 * g[i] * g[i];
    p[i] -= step_size * m[i] / (sqrtf(v[i]) / bc2_sqrt + eps);
  }
}

void ef_optim_step(ef_optim *o, ef_store *s, double lr) {
  EF_ASSERT(!o->device, "ef_optim_step loops over host memory; a device store steps through train/update.h");
  EF_ASSERT(s->numel[0] == o->n, "the optimizer was made for %zu parameters, the store has %zu", o->n, s->numel[0]);
  o->step++;
  for (int e = 0; e < s->n; e++) {
    const ef_store_entry *en = &s->entries[e];
    if (!en->trainable || en->frozen) continue;
    entry_update u = {.p = s->mem[EF_ARENA_PARAM] + en->offset,
                      .g = s->mem[EF_ARENA_GRAD] + en->offset,
                      .s0 = o->n_slots > 0 ? o->slots[0] + en->offset : NULL,
                      .s1 = o->n_slots > 1 ? o->slots[1] + en->offset : NULL,
                      .n = (int64_t)en->numel,
                      .wd = o->cfg.decay_all || en->decay ? o->cfg.weight_decay : 0,
                      .lr = lr * en->lr_scale};
    switch (o->cfg.kind) {
    case EF_OPT_SGD: sgd_update(o, &u); break;
    case EF_OPT_RMSPROP: rmsprop_update(o, &u); break;
    case EF_OPT_ADAMW: adamw_update(o, &u); break;
    }
  }
}

double ef_grad_global_norm(const ef_store *s) {
  EF_ASSERT(!ef_device_of(s), "the global norm of a device store is taken by train/update.h");
  const float *g = s->mem[EF_ARENA_GRAD];
  int64_t n = (int64_t)s->numel[0], per = (n + NORM_CHUNKS - 1) / NORM_CHUNKS;
  double part[NORM_CHUNKS];
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
  for (int ch = 0; ch < NORM_CHUNKS; ch++) {
    int64_t i0 = ch * per < n ? ch * per : n, i1 = (ch + 1) * per < n ? (ch + 1) * per : n;
    // Eight interleaved lanes, then the lanes added pairwise: a fixed order that GCC vectorizes (one
    // chain, acc += g[i]^2, runs scalar at a dependent add an element: 3% of the main job's step).
    double acc[8] = {0};
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8)
      for (int l = 0; l < 8; l++) acc[l] += (double)g[i + l] * g[i + l];
    for (; i < i1; i++) acc[0] += (double)g[i] * g[i];
    part[ch] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
  double total = 0;
  for (int ch = 0; ch < NORM_CHUNKS; ch++) total += part[ch];
  return sqrt(total);
}

void ef_grad_clip(ef_store *s, double max_norm, double norm) {
  EF_ASSERT(max_norm > 0, "clipping to a norm of %g", max_norm);
  EF_ASSERT(!ef_device_of(s), "a device store is clipped by train/update.h");
  double coef = max_norm / (norm + 1e-6);
  if (!(coef < 1)) return;
  float *g = s->mem[EF_ARENA_GRAD], c = (float)coef;
  int64_t n = (int64_t)s->numel[0];
#pragma omp parallel for schedule(static) if (n > PARALLEL_MIN)
  for (int64_t i = 0; i < n; i++) g[i] *= c;
}
