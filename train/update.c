// The training step's update on a device store (see update.h): the per-entry segments built from
// the store (learning-rate scale, weight decay, frozen entries skipped), the step's values, and
// the queue of kernels through the backend's arena operations.
#include "train/update.h"

#include <stdlib.h>

int ef_update_segments(const ef_optim *o, const ef_store *s, ef_update_segment *seg, int64_t *blocks) {
  int n = 0;
  *blocks = 0;
  for (int e = 0; e < s->n; e++) { // as ef_optim_step
    const ef_store_entry *en = &s->entries[e];
    if (!en->trainable || en->frozen) continue;
    seg[n++] = (ef_update_segment){.offset = (int64_t)en->offset,
                                   .numel = (int64_t)en->numel,
                                   .lr_scale = en->lr_scale,
                                   .weight_decay = o->cfg.decay_all || en->decay ? o->cfg.weight_decay : 0,
                                   .first_block = *blocks};
    *blocks += ((int64_t)en->numel + EF_UPDATE_CHUNK - 1) / EF_UPDATE_CHUNK;
  }
  return n;
}

ef_status ef_device_update_init(ef_device_update *d, const ef_optim *o, const ef_store *s) {
  *d = (ef_device_update){0};
  ef_backend *be = ef_device_of(s);
  if (!be)
    return EF_ERROR(EF_ERR_UNSUPPORTED, "the device update needs a store on a device (it is on %s)",
                    s->be ? s->be->name : "none");
  EF_ASSERT(o->device == be, "the optimizer's slots are not on the store's device");
  ef_update_segment *seg = ef_xcalloc((size_t)(s->n ? s->n : 1), sizeof *seg);
  int64_t blocks;
  int n = ef_update_segments(o, s, seg, &blocks);
  size_t bytes = sizeof *seg * (size_t)(n ? n : 1);
  d->segments = be->alloc(be, bytes);
  if (!d->segments) {
    free(seg);
    return EF_ERROR(EF_ERR_NOMEM, "out of %s memory for the optimizer's %d segments", be->name, n);
  }
  be->upload(be, d->segments, seg, bytes);
  free(seg);
  d->be = be;
  d->pass = (ef_update_pass){.kind = (int)o->cfg.kind,
                             .momentum = o->cfg.momentum,
                             .rho = o->cfg.rho,
                             .eps = o->cfg.eps,
                             .beta1 = o->cfg.beta1,
                             .beta2 = o->cfg.beta2,
                             .nesterov = o->cfg.nesterov,
                             .param = s->mem[EF_ARENA_PARAM],
                             .grad = s->mem[EF_ARENA_GRAD],
                             .slot0 = o->n_slots > 0 ? o->slots[0] : NULL,
                             .slot1 = o->n_slots > 1 ? o->slots[1] : NULL,
                             .segments = d->segments,
                             .n_segments = n,
                             .blocks = blocks};
  return EF_OK;
}

void ef_device_update_free(ef_device_update *d) {
  if (d->segments) d->be->free(d->be, d->segments);
  *d = (ef_device_update){0};
}

uint32_t ef_device_update_values(ef_device_update *d, const ef_optim *o, const ef_ema *ema, double lr, double clip,
                                 double unscale) {
  uint32_t pending = d->queued - d->finished;
  EF_ASSERT(pending < 2, "a third step queued before the first one's results were read");
  ef_ema ahead;
  if (ema) ahead = *ema, ahead.updates += pending;
  d->values = (ef_step_values){.lr = lr,
                               .adam_t = (double)(o->step + 1 + pending),
                               .ema_decay = ema ? ef_ema_decay_now(&ahead) : 0,
                               .clip = clip,
                               .unscale = unscale,
                               .slot = (int32_t)(d->queued & 1)};
  d->be->arena->set_values(d->be, &d->values);
  return d->queued++;
}

void ef_device_update_queue(ef_device_update *d, const ef_store *s, const ef_ema *ema) {
  ef_arena_ops *a = d->be->arena;
  a->grad_norm(d->be, s->mem[EF_ARENA_GRAD], s->numel[0]);
  a->update(d->be, &d->pass);
  if (!ema) return;
  EF_ASSERT(!ema->swapped, "moving average updated while its shadow is in the store");
  a->ema(d->be, ema->shadow[EF_ARENA_PARAM], s->mem[EF_ARENA_PARAM], s->numel[0]);
  a->ema(d->be, ema->shadow[EF_ARENA_STATE], s->mem[EF_ARENA_STATE], s->numel[1]);
}

typedef struct {
  ef_store *s;
  ef_plan *p;
  ef_grad_sync *gs;
  ef_device_update *u;
  const ef_ema *ema;
  const ef_run_ctx *ctx;
  int phase;
} step_args;

static void step(void *arg) {
  const step_args *a = arg;
  if (a->phase & EF_STEP_ZERO) ef_store_zero_grads(a->s);
  ef_plan_run(a->p, a->ctx);
  if (!(a->phase & EF_STEP_UPDATE)) return;
  if (a->gs) ef_grad_sync_finish(a->gs);
  ef_device_update_queue(a->u, a->s, a->ema);
}

void ef_device_train_step(ef_capture *cap, ef_store *s, ef_plan *p, ef_grad_sync *gs, ef_device_update *u,
                          const ef_ema *ema, const ef_run_ctx *ctx, int phase) {
  step_args a = {s, p, gs, u, ema, ctx, phase};
  if (cap) ef_capture_run(cap, u->be, ctx, step, &a);
  else step(&a);
}

bool ef_device_update_finish(ef_device_update *d, ef_optim *o, ef_ema *ema, double *norm) {
  return ef_device_update_finish_at(d, o, ema, d->queued - 1, norm);
}

bool ef_device_update_finish_at(ef_device_update *d, ef_optim *o, ef_ema *ema, uint32_t seq, double *norm) {
  EF_ASSERT(seq == d->finished && seq != d->queued, "step %u finished out of order (next: %u, queued: %u)", seq,
            d->finished, d->queued);
  d->finished++;
  const ef_step_values *v = d->be->arena->result(d->be, (int)(seq & 1));
  *norm = v->norm;
  if (v->skip) return false;
  o->step++;
  if (ema) ema->updates++;
  return true;
}
