// The training step (see step.h): host loops on the CPU, the captured device step on a GPU, the
// agreement of the ranks on the loss, and f16's loss scale (torch.cuda.amp.GradScaler's rule).
#include "train/step.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

ef_status ef_step_init(ef_step *s, ef_model_graph *graph, const ef_step_config *c) {
  memset(s, 0, sizeof *s);
  s->cfg = *c, s->graph = graph, s->store = graph->g->store, s->loss_scale = 1;
  EF_ASSERT(graph->plan && graph->loss, "the step needs a planned training graph");
  s->device = ef_device_of(s->store) != NULL;
  ef_status st = ef_optim_init(&s->optim, s->store, &c->optim);
  if (st == EF_OK && c->ema > 0) st = ef_ema_init(&s->ema, s->store, c->ema), s->has_ema = st == EF_OK;
  if (st == EF_OK && s->device) st = ef_device_update_init(&s->upd, &s->optim, s->store);
  if (st != EF_OK) {
    ef_step_free(s);
    return st;
  }
  s->logits = ef_xmalloc(sizeof(float) * (size_t)graph->batch * (size_t)graph->classes);
  return EF_OK;
}

void ef_step_connect(ef_step *s, ef_comm *comm, ef_comm *bn_comm, size_t bucket_bytes) {
  s->comm = comm, s->bn_comm = bn_comm, s->overlap = bucket_bytes > 0;
  ef_grad_sync_init(&s->sync, comm, s->graph->plan, s->store, bucket_bytes);
}

void ef_step_set_loss_scale(ef_step *s, double scale) {
  s->loss_scale = scale;
  ef_model_graph_loss_scale(s->graph, (float)scale);
}

// ef_run_ctx.group_mean for SyncBN's nodes: the average over this rank's group.
static void bn_group_mean(void *group, float *buf, size_t n) {
  ef_comm *c = group;
  c->allreduce(c, buf, n, EF_COMM_F32, EF_COMM_AVG);
}

// f16's loss scale after a step: halved when the gradients overflowed (the step was skipped),
// doubled after 2000 steps without overflow.
static void adjust_loss_scale(ef_step *s, bool overflow) {
  if (overflow) s->loss_scale /= 2, s->good_steps = 0;
  else if (++s->good_steps == 2000) s->loss_scale *= 2, s->good_steps = 0;
  else return;
  ef_model_graph_loss_scale(s->graph, (float)s->loss_scale);
}

void ef_step_run(ef_step *s, const float *images, const int32_t *labels, double lr, int64_t step, ef_step_result *r) {
  ef_model_graph *m = s->graph;
  ef_plan *p = m->plan;
  ef_ema *ema = s->has_ema ? &s->ema : NULL;
  ef_plan_set(p, m->images, images);
  ef_plan_set(p, m->labels, labels);
  // The gradient of the global batch: the average of the ranks' (each the mean over its own),
  // bucket by bucket while the backward pass runs, or in one all-reduce after it.
  ef_grad_sync *gs = s->sync.n ? &s->sync : NULL;
  ef_run_ctx ctx = {.step = (uint32_t)step,
                    .after_node = gs && s->overlap ? ef_grad_sync_after_node : NULL,
                    .user = gs,
                    .group_mean = s->bn_comm ? bn_group_mean : NULL,
                    .group = s->bn_comm,
                    .group_device = s->device};
  if (s->device) { // the whole step, all-reduces and update included, on the GPU
    ef_device_update_values(&s->upd, &s->optim, ema, lr, s->cfg.clip, 1.0 / s->loss_scale);
    ef_device_train_step(s->cfg.eager ? NULL : &s->cap, s->store, p, gs, &s->upd, ema, &ctx);
    if (s->comm) s->comm->sync(s->comm); // within the communicator's timeout, or the job ends
    else p->be->synchronize(p->be);
  } else {
    ef_store_zero_grads(s->store);
    ef_plan_run(p, &ctx);
    if (gs) ef_grad_sync_finish(gs);
  }
  float loss;
  ef_plan_get(p, m->loss, &loss);
  ef_plan_get(p, m->logits, s->logits);
  int64_t correct = 0;
  for (int64_t i = 0; i < m->batch; i++)
    correct += ef_label_rank(s->logits + i * m->classes, m->classes, labels[i]) == 0;
  // The step's loss and accuracy over the global batch.
  double sums[2] = {loss, (double)correct};
  int world = s->comm ? s->comm->world : 1;
  if (s->comm) s->comm->allreduce(s->comm, sums, 2, EF_COMM_F64, EF_COMM_SUM);
  *r = (ef_step_result){.loss = sums[0] / world, .correct = (int64_t)sums[1], .applied = true};
  if (s->device) r->applied = ef_device_update_finish(&s->upd, &s->optim, ema, &r->norm); // unless not finite
  else if (s->cfg.clip > 0) r->norm = ef_grad_global_norm(s->store);
  bool f16 = m->activations == EF_F16;
  r->overflow = f16 && !r->applied && isfinite(r->loss) && s->loss_scale > 1;
  if (f16) adjust_loss_scale(s, r->overflow);
  r->finite = r->overflow || (isfinite(r->loss) && isfinite(r->norm));
  if (!r->finite) r->applied = false;
  if (s->device || !r->finite) return;
  if (s->cfg.clip > 0) ef_grad_clip(s->store, s->cfg.clip, r->norm);
  ef_optim_step(&s->optim, s->store, lr);
  if (ema) ef_ema_update(ema, s->store);
}

void ef_step_disconnect(ef_step *s) {
  if (s->graph && s->graph->plan) ef_capture_free(&s->cap, s->graph->plan->be);
  ef_grad_sync_free(&s->sync);
  s->comm = s->bn_comm = NULL;
}

void ef_step_free(ef_step *s) {
  ef_step_disconnect(s);
  if (s->upd.be) ef_device_update_free(&s->upd);
  ef_optim_free(&s->optim);
  if (s->has_ema) ef_ema_free(&s->ema);
  free(s->logits);
  memset(s, 0, sizeof *s);
}
