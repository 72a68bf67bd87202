// The commands' model graphs and the evaluation pass (see model_graph.h).
#include "tools/model_graph.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "models/tiny.h"
#include "models/weights.h"

ef_status ef_model_graph_new(ef_model_graph *m, ef_store *store, ef_backend *be, const ef_checkpoint_info *info, int64_t batch,
                             bool training, float smoothing, uint64_t seed, bool profile, int bn_group, ef_dtype activations) {
  memset(m, 0, sizeof *m);
  m->batch = batch, m->classes = info->num_classes;
  m->g = ef_graph_new(store, seed);
  m->g->bn_group = bn_group;
  const ef_transform *t = &info->eval;
  m->images = ef_input(m->g, "images", EF_F32, 4, (int64_t[]){batch, t->size, t->size, t->channels});
  if (!strcmp(info->arch, "tiny")) {
    ef_layer_ctx c = {.g = m->g, .training = training, .padding = EF_PAD_SYMMETRIC, .bn_eps = 1e-3f, .bn_momentum = 0.1f};
    m->logits = ef_tiny_forward(&c, m->images, info->num_classes, info->cfg.dropout);
  } else {
    m->logits = ef_effnet_build(&info->cfg, m->g, m->images, training, NULL, NULL);
  }
  ef_graph_keep(m->g, m->logits);
  if (training) {
    m->labels = ef_input(m->g, "labels", EF_I32, 1, (int64_t[]){batch});
    m->loss = ef_softmax_ce(m->g, m->logits, m->labels, smoothing);
    m->loss_scale = ef_input(m->g, "loss_scale", EF_F32, 1, (int64_t[]){1});
    ef_graph_backward_from(m->g, m->loss, m->loss_scale);
    ef_graph_keep(m->g, m->loss);
  }
  ef_graph_set_precision(m->g, activations, false);
  if (!be) return EF_OK; // registering the parameters only
  ef_status st = ef_plan_new(&m->plan, m->g, be, &(ef_plan_opts){.profile = profile});
  if (st != EF_OK) ef_model_graph_free(m);
  return st;
}

void ef_model_graph_loss_scale(ef_model_graph *m, float scale) { ef_plan_set(m->plan, m->loss_scale, &scale); }

void ef_model_graph_free(ef_model_graph *m) {
  ef_plan_free(m->plan);
  ef_graph_free(m->g);
  memset(m, 0, sizeof *m);
}

ef_status ef_model_from_checkpoint(const char *path, bool ema, int64_t batch, ef_backend *be, ef_dtype activations,
                                   ef_store **store, ef_model_graph *m, ef_checkpoint_info *info, bool *used_ema) {
  memset(m, 0, sizeof *m);
  *store = NULL;
  EF_TRY(ef_checkpoint_read_info(path, info));
  ef_attr updates = {.name = "ema_updates", .kind = EF_ATTR_INT};
  EF_TRY(ef_weights_read_attrs(path, &updates, 1));
  *used_ema = ema && updates.i >= 0;
  *store = ef_store_new();
  ef_status st = ef_model_graph_new(m, *store, NULL, info, batch, false, 0, info->seed, false, 1, activations);
  if (st == EF_OK) st = ef_store_bind(*store, be);
  if (st == EF_OK) st = ef_plan_new(&m->plan, m->g, be, NULL);
  // The EMA's group read straight into the store's arenas.
  ef_tensor_set set = {"ema", (*store)->mem[EF_ARENA_PARAM], (*store)->mem[EF_ARENA_STATE]};
  if (st == EF_OK) st = *used_ema ? ef_weights_load_sets(path, *store, &set, 1) : ef_weights_load(path, *store);
  if (st != EF_OK) {
    ef_model_graph_free(m);
    ef_store_free(*store);
    *store = NULL;
  }
  return st;
}

int ef_label_rank(const float *logits, int classes, int label) {
  int rank = 0;
  for (int c = 0; c < classes; c++) {
    if (isnan(logits[c])) return classes; // a NaN anywhere: never counted correct
    rank += logits[c] > logits[label] || (logits[c] == logits[label] && c < label);
  }
  return rank;
}

ef_status ef_model_evaluate(ef_model_graph *m, ef_loader *l, ef_eval_result *r) {
  *r = (ef_eval_result){0};
  const ef_tensor *in = m->images;
  size_t sample = (size_t)(in->shape[1] * in->shape[2] * in->shape[3]);
  float *images = ef_xcalloc(sample * (size_t)m->batch, sizeof(float));
  float *logits = ef_xmalloc(sizeof(float) * (size_t)m->batch * (size_t)m->classes);
  double loss = 0;
  int64_t top1 = 0, top5 = 0;
  ef_status st = ef_loader_start(l, 0, 0);
  const ef_batch *b;
  while (st == EF_OK && (st = ef_loader_next(l, &b)) == EF_OK && b) {
    memcpy(images, b->images, sizeof(float) * sample * (size_t)b->n);
    ef_plan_set(m->plan, m->images, images);
    ef_plan_run(m->plan, &(ef_run_ctx){0});
    ef_plan_get(m->plan, m->logits, logits);
    for (int i = 0; i < b->real; i++) {
      const float *row = logits + (size_t)i * m->classes;
      int rank = ef_label_rank(row, m->classes, b->labels[i]);
      top1 += rank == 0, top5 += rank < 5;
      double mx = row[0], sum = 0;
      for (int c = 1; c < m->classes; c++) mx = fmax(mx, row[c]);
      for (int c = 0; c < m->classes; c++) sum += exp(row[c] - mx);
      loss += mx + log(sum) - row[b->labels[i]];
    }
    r->images += b->real;
  }
  free(images), free(logits);
  if (r->images) r->loss = loss / (double)r->images, r->top1 = (double)top1 / (double)r->images, r->top5 = (double)top5 / (double)r->images;
  return st;
}
