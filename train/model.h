// A model as the library knows it: its description (architecture, classes and their names, input
// channels, evaluation transform), which every effnet weights file holds, an import or a training
// checkpoint alike; the one builder of its training and evaluation graphs; a model opened from a
// file with its weights; and the evaluation pass over a loader (loss, top-1, top-5).
#ifndef EF_TRAIN_MODEL_H
#define EF_TRAIN_MODEL_H

#include <stdbool.h>
#include <stdio.h>

#include "core/plan.h"
#include "data/loader.h"
#include "data/transform.h"
#include "models/efficientnet.h"
#include "models/weights.h"

typedef struct {
  char arch[16];        // "efficientnet" (cfg below) or "tiny"
  ef_effnet_config cfg; // efficientnet: the architecture; tiny: only cfg.dropout
  int num_classes, in_channels;
  char class_names[65536]; // one per line, `num_classes` of them; empty when unknown
  ef_transform eval;       // the evaluation preprocessing: size, crop, interpolation, mean, std
} ef_model_desc;

// The description of an EfficientNet of `cfg` (its classes and channels), evaluated at its
// resolution with crop_pct 0.875, bicubic, ImageNet's normalization, no class names.
void ef_model_desc_effnet(ef_model_desc *d, const ef_effnet_config *cfg);
// The description of the tiny net (models/tiny.h) for `classes`, `channels` (1 or 3) and
// size x size images, with `dropout` before its classifier; ImageNet's normalization.
void ef_model_desc_tiny(ef_model_desc *d, int classes, int channels, int size, float dropout);
// The one rule of the input sizes a model takes, applied by the trainer before training and by
// every reader of weights files: an EfficientNet EF_EFFNET_MIN_RESOLUTION ... MAX pixels a side,
// the tiny net 1 ... MAX. ef_model_min_size gives the least; ef_model_check_size is
// EF_ERR_INVALID naming the model and the least size when `size` is outside.
int ef_model_min_size(const ef_model_desc *d);
ef_status ef_model_check_size(const ef_model_desc *d, int size);
// Checks the description's fields against each other (classes and channels against the
// configuration, the class names' count, the transform, its size by the rule above): a clear
// error naming `path` otherwise.
ef_status ef_model_desc_validate(const ef_model_desc *d, const char *path);
// The class names one per entry: names[i] points into copy (NULL-terminated lines), n of them.
int ef_model_desc_names(const ef_model_desc *d, char *copy, size_t len, const char **names, int max);
// Sets the class names from an array (e.g. a dataset's); EF_ERR_INVALID when they do not fit.
ef_status ef_model_desc_set_names(ef_model_desc *d, char *const *names, int n);

// The normalization from text "r,g,b" (as weights files record it); EF_ERR_FORMAT naming `path`.
ef_status ef_model_desc_set_norm(ef_model_desc *d, const char *mean, const char *std, const char *path);

// The description as root attributes (the configuration is written apart, by the weights writer).
typedef struct {
  ef_attr attrs[10];
  int n;
  char interp[16], mean[64], std[64];
} ef_desc_attrs;
void ef_model_desc_attrs(const ef_model_desc *d, ef_desc_attrs *out);

// What a weights file is: its model, and what else it holds.
typedef struct {
  ef_model_desc desc;
  bool checkpoint;    // a training checkpoint (a position to resume from), else weights alone
  bool has_ema;       // an /ema group (checkpoints of runs with --ema)
  bool recorded_norm; // it records the normalization (else ImageNet's is assumed)
  bool headless;      // imported without a classifier (it holds an initialization)
  char source[32];    // where an import came from: torchvision, timm, efficientnet_pytorch, keras ("" otherwise)
} ef_weights_info;

// Reads any effnet weights file: `effnet import`'s (older ones, without a description, get one
// from their configuration), `effnet export`'s .h5, or a checkpoint. Every attribute is checked
// (EF_ERR_FORMAT naming it) before anything is built from it.
ef_status ef_weights_info_read(const char *path, ef_weights_info *w);
// Writes the store's /model with the description (and cfg for an EfficientNet), plus `extra`
// root attributes, atomically: what `effnet import` saves.
ef_status ef_model_save(const char *path, const ef_store *s, const ef_model_desc *d, const ef_attr *extra, int n_extra);

// How to evaluate a weights file, where a user wants otherwise than its description: a
// checkpoint's EMA weights or its raw ones, the input side, the centre crop, the resampling
// (0, 0 and NULL: the description's own).
typedef struct {
  bool ema;
  long image_size;
  double crop_pct;
  const char *interpolation; // "bilinear" or "bicubic"
} ef_eval_spec;
#define EF_EVAL_SPEC_DEFAULT ((ef_eval_spec){.ema = true})
// The description's evaluation transform with the spec's changes; EF_ERR_INVALID naming a bad one.
ef_status ef_eval_transform(const ef_model_desc *d, const ef_eval_spec *e, ef_transform *out);

// ---- graphs -------------------------------------------------------------------------------------

typedef struct {
  int64_t batch;
  bool training;        // labels, label-smoothed cross-entropy and its backward pass
  float smoothing;      // training: label smoothing (with soft_targets: folded into them instead)
  bool soft_targets;    // training: the loss against soft targets (N,classes) (Mixup, CutMix), not labels
  uint64_t seed;        // dropout and drop-path streams
  int bn_group;         // training: batch norms over groups of this many ranks (SyncBN; 0, 1: off)
  ef_dtype activations; // EF_F32, or the 16-bit type of mixed precision
  int image_size;       // the input side (0: the description's evaluation size)
  bool features;        // keep the pooled features (m->features) beside the logits
  unsigned fusions;     // evaluation: the ef_fusion bits to build (ef_graph.fusions), the backend's
                        // eval_fusions
  // Saliency (Grad-CAM, train/cam.h), not with training: the evaluation as a differentiable graph
  // (batch norms on running statistics, no dropout, every store entry marked frozen so that no
  // parameter gets a gradient), differentiated from the logits by the input m->dlogits; the tensor
  // named `saliency` (a block's output, "blocks.5.2", or the head's features, "bn2") and its
  // gradient kept as m->layer and m->layer_grad (NULL, and nothing differentiated, without such a
  // 4-d activation).
  const char *saliency;
  FILE *summary; // EfficientNet: a line per block while building (effnet info --layers)
} ef_graph_opts;

typedef struct {
  ef_graph *g;
  ef_tensor *images, *labels;    // (N,H,W,C) f32, training: (N) i32 (NULL with soft targets)
  ef_tensor *targets;            // training with opts.soft_targets: (N,classes) f32, else NULL
  ef_tensor *logits, *loss;      // (N,classes), training: scalar
  ef_tensor *loss_scale;         // training: the loss's gradient (1), f16's loss scale
  ef_tensor *features;           // with opts.features: (N,channels) before dropout and the classifier
  ef_tensor *dlogits;            // with opts.saliency: the logits' gradient (N,classes), an input
  ef_tensor *layer, *layer_grad; // with opts.saliency: the named tensor (N,h,w,C) and its gradient
  ef_plan *plan;
  int64_t batch;
  int classes;
  ef_dtype activations; // as built (ef_graph_opts)
  int64_t params, macs; // EfficientNet: parameters, multiply-adds per image of the forward pass
} ef_model_graph;

// Builds the model of `d` for o->batch images. Training adds the labels, the cross-entropy and
// its backward pass into the store's gradients, from the input loss_scale (set by
// ef_model_graph_plan to 1). The first build registers the parameters in the store (the
// evaluation graph first: fine-tuning marks them before the training graph reads the marks).
// Every command, bench and test that builds a model goes through here.
void ef_model_graph_new(ef_model_graph *m, ef_store *s, const ef_model_desc *d, const ef_graph_opts *o);
// Plans the graph on be with `po` (may be NULL), binding the store there first if it is not yet.
ef_status ef_model_graph_plan(ef_model_graph *m, ef_backend *be, const ef_plan_opts *po);
// Sets the training graph's loss scale (the gradients are that many times the loss's).
void ef_model_graph_loss_scale(ef_model_graph *m, float scale);
void ef_model_graph_free(ef_model_graph *m);

// A model opened from a weights file for inference: its description, a store on `be` holding
// its weights (a checkpoint's EMA when `ema` and it has one; used_ema says which), and its
// evaluation graph for `o` (training off), planned.
typedef struct {
  ef_weights_info info;
  ef_store *store;
  ef_model_graph graph;
  bool used_ema;
} ef_model;
ef_status ef_model_open(ef_model *m, const char *path, bool ema, const ef_graph_opts *o, ef_backend *be);
void ef_model_close(ef_model *m);
// Loads a weights file's tensors into a store built for its description: /model, or a
// checkpoint's /ema when `ema`; entries starting with `skip` (e.g. "classifier.") are left as
// they are (fine-tuning).
ef_status ef_model_load_weights(const char *path, const ef_weights_info *w, bool ema, const char *skip, ef_store *s);

// ---- memory -------------------------------------------------------------------------------------

// The memory a batch plans (train/update's weight, gradient and momentum arenas for training,
// the weights and state alone for inference), in bytes: the activation arena and the store's
// arenas; with `largest`, also the most elements any one tensor holds (not NULL). `fusions`: the
// backend's eval_fusions, which an evaluation graph builds.
double ef_model_planned_bytes(const ef_model_desc *d, int64_t batch, bool training, ef_dtype activations,
                              unsigned fusions, double *largest);
// The largest batch whose planned memory fits `budget` bytes (0 when not even one image fits),
// at most 65536; on a GPU (`gpu`) also no tensor above 2^31 elements (cuDNN's descriptors take
// int sizes).
int64_t ef_model_max_batch(const ef_model_desc *d, bool training, ef_dtype activations, unsigned fusions, double budget,
                           bool gpu);

// ---- evaluation ---------------------------------------------------------------------------------

typedef struct {
  double loss, top1, top5; // mean cross-entropy (no smoothing), accuracies in [0, 1]
  int64_t images;
} ef_eval_result;

// One pass of the loader (from its start) through an evaluation graph; a short last batch is
// padded (only its real samples count), and corrupt images the loader skipped are left out.
ef_status ef_model_evaluate(ef_model_graph *m, ef_loader *l, ef_eval_result *r);

// The rank of `label` in one row of logits: 0 when it is the largest (ties go to the lower
// class); `classes` when the row holds a NaN, so that a broken model scores nothing.
int ef_label_rank(const float *logits, int classes, int label);

#endif
