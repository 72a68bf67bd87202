// The training step (see step.h): host loops on the CPU, the captured device step on a GPU, the
// agreement of the ranks on the loss, and f16's loss scale (torch.cuda.amp.GradScaler's rule).
#include "train/step.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

ef_status ef_step_init(ef_step *s, ef_model_graph *graph, const ef_step_config *c) {
  memset(s, 0, sizeof *s);
  s->cfg = *c, s->graph = graph, s->store = graph->g->store, s->loss_scale = 1;
  if (!(s->cfg.timeout_s > 0)) s->cfg.timeout_s = 600;
  if (s->cfg.accum < 1) s->cfg.accum = 1;
  EF_ASSERT(graph->plan && graph->loss, "the step needs a planned training graph");
  s->device = ef_device_of(s->store) != NULL;
  ef_status st = ef_optim_init(&s->optim, s->store, &c->optim);
  if (st == EF_OK && c->ema > 0) st = ef_ema_init(&s->ema, s->store, c->ema), s->has_ema = st == EF_OK;
  if (st == EF_OK && s->device) st = ef_device_update_init(&s->upd, &s->optim, s->store);
  if (st != EF_OK) {
    ef_step_free(s);
    return st;
  }
  size_t logits = (size_t)graph->batch * (size_t)graph->classes;
  s->logits = ef_xmalloc(sizeof(float) * logits), s->n_logits = (int64_t)logits;
  for (int k = 0; k < 2; k++) s->slot[k].labels = ef_xmalloc(sizeof(int32_t) * (size_t)graph->batch);
  if (s->device && (st = ef_cuda_readback_new(&s->readback, s->upd.be, sizeof(float) * (1 + logits))) != EF_OK) {
    ef_step_free(s);
    return st;
  }
  ef_step_set_loss_scale(s, 1); // accumulating: 1 / accum
  return EF_OK;
}

void ef_step_connect(ef_step *s, ef_comm *comm, ef_comm *bn_comm, size_t bucket_bytes) {
  s->comm = comm, s->bn_comm = bn_comm, s->overlap = bucket_bytes > 0, s->bucket_bytes = bucket_bytes;
  ef_grad_sync_init(&s->sync, comm, s->graph->plan, s->store, bucket_bytes);
}

void ef_step_set_loss_scale(ef_step *s, double scale) {
  s->loss_scale = scale;
  ef_model_graph_loss_scale(s->graph, (float)(scale / s->cfg.accum));
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
  ef_step_set_loss_scale(s, s->loss_scale);
}

// The context of a step's run: its number for the masks (update `step`, micro-batch s->micro), the
// gradient buckets started from the executor's hook (or after the backward pass; accumulating, only
// in the update's last micro-batch), SyncBN's group.
static ef_run_ctx step_ctx(ef_step *s, int64_t step) {
  ef_grad_sync *gs = s->sync.n && s->micro + 1 == s->cfg.accum ? &s->sync : NULL;
  return (ef_run_ctx){.step = (uint32_t)(step * s->cfg.accum + s->micro),
                      .after_node = gs && s->overlap ? ef_grad_sync_after_node : NULL,
                      .user = gs,
                      .group_mean = s->bn_comm ? bn_group_mean : NULL,
                      .group = s->bn_comm,
                      .group_device = s->device};
}

// Top-1 hits of the batch's logits (on the host) against its labels.
static int64_t count_correct(const ef_step *s, const int32_t *labels) {
  const ef_model_graph *m = s->graph;
  int64_t correct = 0;
  for (int64_t i = 0; i < m->batch; i++)
    correct += ef_label_rank(s->logits + i * m->classes, m->classes, labels[i]) == 0;
  return correct;
}

// The result from the batch's loss (accumulating: the mean over the update's micro-batches) and hits,
// and the update's outcome: the loss and accuracy over the global batch, f16's overflow and loss
// scale, and whether it is finite.
static void finish_result(ef_step *s, double loss, int64_t correct, bool applied, double norm, ef_step_result *r) {
  const ef_model_graph *m = s->graph;
  double sums[2] = {loss, (double)correct};
  int world = s->comm ? s->comm->world : 1;
  if (s->comm) s->comm->allreduce(s->comm, sums, 2, EF_COMM_F64, EF_COMM_SUM);
  *r = (ef_step_result){.loss = sums[0] / world, .correct = (int64_t)sums[1], .norm = norm, .applied = applied};
  bool f16 = m->activations == EF_F16;
  r->overflow = f16 && !r->applied && isfinite(r->loss) && s->loss_scale > 1;
  if (f16) adjust_loss_scale(s, r->overflow);
  r->finite = r->overflow || (isfinite(r->loss) && isfinite(r->norm));
  if (!r->finite) r->applied = false;
}

// The inputs of a step: images, and labels or soft targets.
static void set_inputs(ef_step *s, const float *images, const int32_t *labels, const float *targets) {
  ef_model_graph *m = s->graph;
  EF_ASSERT(!m->targets == !targets, "the training graph takes %s", m->targets ? "soft targets" : "labels");
  ef_plan_set(m->plan, m->images, images);
  if (m->targets) ef_plan_set(m->plan, m->targets, targets);
  else ef_plan_set(m->plan, m->labels, labels);
}

// The CPU's whole step: the forward and backward pass (the gradients zeroed before an update's first
// micro-batch, added up over the others), then after its last the gradients averaged over the ranks,
// the agreement on the loss, and (finite) clipping, the optimizer and the EMA.
static void run_host(ef_step *s, const float *images, const int32_t *labels, const float *targets, double lr,
                     int64_t step, ef_step_result *r) {
  ef_model_graph *m = s->graph;
  ef_plan *p = m->plan;
  ef_ema *ema = s->has_ema ? &s->ema : NULL;
  set_inputs(s, images, labels, targets);
  ef_run_ctx ctx = step_ctx(s, step);
  if (s->micro == 0) ef_store_zero_grads(s->store), s->micro_loss = 0, s->micro_correct = 0;
  ef_plan_run(p, &ctx);
  float loss;
  ef_plan_get(p, m->loss, &loss);
  ef_plan_get(p, m->logits, s->logits);
  int64_t correct = count_correct(s, labels);
  s->micro_loss += loss, s->micro_correct += correct;
  if (++s->micro < s->cfg.accum) {
    *r = (ef_step_result){.partial = true, .loss = loss, .correct = correct, .finite = isfinite(loss)};
    return;
  }
  s->micro = 0;
  if (s->sync.n) ef_grad_sync_finish(&s->sync);
  finish_result(s, s->micro_loss / s->cfg.accum, s->micro_correct, true,
                s->cfg.clip > 0 ? ef_grad_global_norm(s->store) : 0, r);
  if (!r->finite) return;
  if (s->cfg.clip > 0) ef_grad_clip(s->store, s->cfg.clip, r->norm);
  ef_optim_step(&s->optim, s->store, lr);
  if (ema) ef_ema_update(ema, s->store);
}

uint32_t ef_step_queue(ef_step *s, const float *images, const int32_t *labels, const float *targets, double lr,
                       int64_t step) {
  EF_ASSERT(s->queued - s->collected < 2, "a third step queued before the first one was collected");
  ef_model_graph *m = s->graph;
  uint32_t seq = s->queued++;
  int32_t *kept = s->slot[seq & 1].labels;
  memcpy(kept, labels, sizeof(int32_t) * (size_t)m->batch);
  if (!s->device) {
    run_host(s, images, kept, targets, lr, step, &s->slot[seq & 1].result);
    return seq;
  }
  // The whole step, all-reduces and update included, on the GPU (accumulating: a micro-batch, whose
  // phase zeroes the gradients first or applies the update after); its loss and logits copied out
  // behind it, to be read when it is collected.
  ef_plan *p = m->plan;
  ef_ema *ema = s->has_ema ? &s->ema : NULL;
  if (images) set_inputs(s, images, labels, targets);
  ef_run_ctx ctx = step_ctx(s, step);
  bool last = s->micro + 1 == s->cfg.accum;
  int phase = (s->micro == 0 ? EF_STEP_ZERO : 0) | (last ? EF_STEP_UPDATE : 0);
  s->slot[seq & 1].last = last;
  if (last) {
    uint32_t update = ef_device_update_values(&s->upd, &s->optim, ema, lr, s->cfg.clip, 1.0 / s->loss_scale);
    EF_ASSERT(update == s->updates, "the device update counts update %u, the step %u", update, s->updates);
    s->slot[seq & 1].update = s->updates++;
  }
  s->micro = last ? 0 : s->micro + 1;
  ef_device_train_step(s->cfg.eager ? NULL : &s->cap[phase], s->store, p, s->sync.n ? &s->sync : NULL, &s->upd, ema,
                       &ctx, phase);
  const void *src[2] = {m->loss->data, m->logits->data};
  size_t bytes[2] = {sizeof(float), sizeof(float) * (size_t)(m->batch * m->classes)};
  ef_cuda_readback_queue(s->readback, seq, src, bytes, 2);
  return seq;
}

// ef_comm_poll's `done` for a step's readback.
typedef struct {
  ef_cuda_readback *r;
  uint32_t seq;
} readback_wait;
static int readback_done(void *user, char *why, size_t len) {
  readback_wait *w = user;
  return ef_cuda_readback_ready(w->r, w->seq, why, len);
}

void ef_step_collect(ef_step *s, uint32_t seq, ef_step_result *r) {
  EF_ASSERT(seq == s->collected && seq != s->queued, "step %u collected out of order (next %u, queued %u)", seq,
            s->collected, s->queued);
  s->collected++;
  if (!s->device) {
    *r = s->slot[seq & 1].result;
    return;
  }
  // Several ranks: a rank that died leaves the others' GPUs waiting in a collective for ever.
  if (s->comm && s->comm->world > 1) {
    char what[64];
    snprintf(what, sizeof what, "training step %u's results", seq);
    if (ef_comm_poll(readback_done, &(readback_wait){s->readback, seq}, s->cfg.timeout_s, what) != EF_OK) {
      fprintf(stderr, "effnet [rank %d]: %s\n", s->comm->rank, ef_last_error());
      ef_comm_abort(s->comm, 1);
    }
  }
  const float *out = ef_cuda_readback_wait(s->readback, seq);
  const ef_model_graph *m = s->graph;
  memcpy(s->logits, out + 1, sizeof(float) * (size_t)(m->batch * m->classes));
  int64_t correct = count_correct(s, s->slot[seq & 1].labels);
  s->micro_loss += out[0], s->micro_correct += correct;
  if (!s->slot[seq & 1].last) { // accumulating: a micro-batch before its update's last
    *r = (ef_step_result){.partial = true, .loss = out[0], .correct = correct, .finite = isfinite(out[0])};
    return;
  }
  double norm, loss = s->micro_loss / s->cfg.accum;
  int64_t hits = s->micro_correct;
  s->micro_loss = 0, s->micro_correct = 0;
  bool applied =
      ef_device_update_finish_at(&s->upd, &s->optim, s->has_ema ? &s->ema : NULL, s->slot[seq & 1].update, &norm);
  finish_result(s, loss, hits, applied, norm, r);
}

void ef_step_run(ef_step *s, const float *images, const int32_t *labels, const float *targets, double lr, int64_t step,
                 ef_step_result *r) {
  ef_step_collect(s, ef_step_queue(s, images, labels, targets, lr, step), r);
}

void ef_step_drop_partial(ef_step *s) {
  EF_ASSERT(s->queued == s->collected, "an update dropped with steps in flight");
  s->micro = 0, s->micro_loss = 0, s->micro_correct = 0;
}

void ef_step_unbind(ef_step *s) {
  EF_ASSERT(s->queued == s->collected && s->micro == 0, "a step moved to another graph with work in flight");
  for (int k = 0; k < 4 && s->graph && s->graph->plan; k++) ef_capture_free(&s->cap[k], s->graph->plan->be);
  ef_grad_sync_free(&s->sync);
  s->graph = NULL;
}

void ef_step_bind(ef_step *s, ef_model_graph *graph) {
  EF_ASSERT(graph->plan && graph->loss && graph->g->store == s->store && graph->batch * graph->classes == s->n_logits,
            "the step's new graph must be a planned training graph of its store, batch and classes");
  s->graph = graph;
  if (s->comm) ef_grad_sync_init(&s->sync, s->comm, graph->plan, s->store, s->bucket_bytes);
  ef_step_set_loss_scale(s, s->loss_scale);
}

void ef_step_disconnect(ef_step *s) {
  for (int k = 0; k < 4 && s->graph && s->graph->plan; k++) ef_capture_free(&s->cap[k], s->graph->plan->be);
  ef_grad_sync_free(&s->sync);
  s->comm = s->bn_comm = NULL;
}

void ef_step_free(ef_step *s) {
  ef_step_disconnect(s);
  if (s->upd.be) ef_device_update_free(&s->upd);
  ef_optim_free(&s->optim);
  if (s->has_ema) ef_ema_free(&s->ema);
  if (s->readback) ef_cuda_readback_free(s->readback);
  free(s->logits), free(s->slot[0].labels), free(s->slot[1].labels);
  memset(s, 0, sizeof *s);
}
