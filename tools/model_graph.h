// The graphs `effnet train`, `eval` and `predict` run: a model (the tiny net or an EfficientNet,
// as a checkpoint describes it) on a fixed batch of images, with the loss and its gradients for
// training; plus the evaluation pass over a loader (loss, top-1, top-5).
#ifndef EF_TOOLS_MODEL_GRAPH_H
#define EF_TOOLS_MODEL_GRAPH_H

#include <stdbool.h>

#include "core/plan.h"
#include "data/loader.h"
#include "train/checkpoint.h"

typedef struct {
  ef_graph *g;
  ef_tensor *images, *labels, *logits, *loss;  // (N,H,W,C), (N), (N,classes), scalar
  ef_tensor *loss_scale;                       // training: the loss's gradient (1), f16's loss scale
  ef_plan *plan;
  int64_t batch;
  int classes;
} ef_model_graph;

// Builds the model of `info` (arch, cfg, classes, channels; images of info->eval's size) for
// `batch` images. Training adds labels, label-smoothed cross-entropy and its backward pass into
// the store's gradients, from the input loss_scale (set it: ef_model_graph_loss_scale). The first
// build registers the parameters in the store. `activations`: EF_F32, or the 16-bit type of mixed
// precision (ef_graph_set_precision). The plan is made on `be` (NULL: none yet). bn_group > 1:
// the training graph's batch norms span that many ranks (SyncBN).
ef_status ef_model_graph_new(ef_model_graph *m, ef_store *store, ef_backend *be, const ef_checkpoint_info *info, int64_t batch,
                             bool training, float smoothing, uint64_t seed, bool profile, int bn_group, ef_dtype activations);
// Sets the training graph's loss scale (the gradients are that many times the loss's).
void ef_model_graph_loss_scale(ef_model_graph *m, float scale);
void ef_model_graph_free(ef_model_graph *m);

typedef struct {
  double loss, top1, top5;  // mean cross-entropy (no smoothing), accuracies in [0, 1]
  int64_t images;
} ef_eval_result;

// One pass of the loader (from its start) through an evaluation graph; a short last batch is
// padded (only its real samples count).
ef_status ef_model_evaluate(ef_model_graph *m, ef_loader *l, ef_eval_result *r);

// The evaluation graph of a checkpoint for `batch` images, in a new store on `be`, with its
// weights (the EMA's when `ema` and the checkpoint has one; *used_ema says which), activations
// in `activations`.
ef_status ef_model_from_checkpoint(const char *path, bool ema, int64_t batch, ef_backend *be, ef_dtype activations,
                                   ef_store **store, ef_model_graph *m, ef_checkpoint_info *info, bool *used_ema);

// The rank of `label` in one row of logits: 0 when it is the largest (ties go to the lower
// class); `classes` when the row holds a NaN, so that a broken model scores nothing.
int ef_label_rank(const float *logits, int classes, int label);

#endif
