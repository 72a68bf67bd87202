// Fine-tuning: a model started from pretrained weights (an `effnet import`ed file or a training
// checkpoint) with everything but the classifier loaded; parts of it frozen by name; batch
// norms in training, evaluation or frozen mode; a learning-rate multiplier for the backbone.
// Freezing marks store entries (core/store.h), so build the training graph after it.
#ifndef EF_TRAIN_FINETUNE_H
#define EF_TRAIN_FINETUNE_H

#include <stdbool.h>

#include "core/store.h"
#include "train/model.h"

// The classifier's entries ("classifier.weight", "classifier.bias"): the head that fine-tuning
// replaces; everything else is the backbone.
#define EF_CLASSIFIER "classifier"

// Loads every entry but the classifier's from a weights file into the store (which keeps its
// own initialization there), all or nothing, naming every missing, unexpected and mis-shaped
// tensor: a checkpoint's EMA weights when it has them, else its /model.
ef_status ef_pretrained_load(const char *path, const ef_weights_info *w, ef_store *s);

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
