// Fine-tuning: a model started from pretrained weights (an `effnet import`ed file or a training
// checkpoint) with everything but the classifier loaded; parts of it frozen by name; batch
// norms in training, evaluation or frozen mode; a learning-rate multiplier for the backbone.
// Freezing marks store entries (core/store.h), so build the training graph after it.
#ifndef EF_TRAIN_FINETUNE_H
#define EF_TRAIN_FINETUNE_H

#include <stdbool.h>

#include "core/store.h"
#include "models/efficientnet.h"

// The classifier's entries ("classifier.weight", "classifier.bias"): the head that fine-tuning
// replaces; everything else is the backbone.
#define EF_CLASSIFIER "classifier"

typedef struct {
  ef_effnet_config cfg;   // the pretrained model's configuration (its classes included)
  float mean[3], std[3];  // the normalization it was trained with, when recorded
  bool recorded_norm;     // the file records mean and std (else ImageNet's are the guess)
  bool ema;               // a checkpoint with an EMA: its averaged weights are the ones loaded
} ef_pretrained;

// What fine-tuning needs from a weights file or an EfficientNet checkpoint; a clear error for
// anything else (a tiny-net checkpoint, a missing or foreign file).
ef_status ef_pretrained_read(const char *path, ef_pretrained *p);
// Loads every entry but the classifier's into the store (which keeps its own initialization),
// all or nothing, naming every missing, unexpected and mis-shaped tensor.
ef_status ef_pretrained_load(const char *path, const ef_pretrained *p, ef_store *s);

// Freezes entries by a comma list of: "stem" (conv_stem, bn1), "head" (conv_head, bn2),
// "backbone" (all but the classifier), "blocks.A-B" (stages A to B), or any name prefix at a dot
// ("blocks.2", "blocks.2.1.se", "classifier"). A frozen module computes a fixed function: its
// weights, BN affine and BN statistics all stay as loaded. Each item must match something.
// Adds the frozen parameters (trainable elements) to *params.
ef_status ef_freeze(ef_store *s, const char *spec, size_t *params);

// The batch norms outside frozen modules: "train" (batch statistics, running ones updated),
// "eval" (running statistics, kept; the affine trains) or "frozen" (also the affine fixed).
ef_status ef_bn_mode(ef_store *s, const char *mode);

// Sets the learning-rate multiplier of every entry but the classifier's.
void ef_backbone_lr(ef_store *s, float scale);

#endif
