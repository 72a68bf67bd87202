// A small conv net with every kind of EfficientNet computation in it (conv + BN + swish,
// squeeze-excite, global pooling, dropout, linear classifier): the end-to-end test's model and
// the README's first job until the EfficientNet zoo lands.
//   stem   3x3 s1 conv  in -> 16, BN, swish            (N,H,W,16)
//   conv2  3x3 s2 conv  16 -> 32, BN, swish            (N,H/2,W/2,32)
//   se     pool, 32 -> 8 swish, 8 -> 32 sigmoid, scale
//   conv3  3x3 s2 conv  32 -> 64, BN, swish            (N,H/4,W/4,64)
//   head   pool, dropout, linear 64 -> classes          (N,classes)
#ifndef EF_MODELS_TINY_H
#define EF_MODELS_TINY_H

#include <stdbool.h>
#include <stdint.h>

#include "core/graph.h"
#include "core/store.h"

typedef struct {
  int in_channels, num_classes;
  float dropout;             // before the classifier, in training
  float bn_momentum, bn_eps; // PyTorch-convention momentum
} ef_tiny_config;

// Store entry indices of the tiny net's parameters.
typedef struct {
  ef_tiny_config cfg;
  int conv[3], bn_affine[3], bn_running[3]; // BN: first of [weight, bias] / [mean, var]
  int se_reduce_w, se_reduce_b, se_expand_w, se_expand_b, fc_w, fc_b;
} ef_tiny;

// Registers the parameters (timm-style names: conv_stem.weight, bn1.running_var, ...).
void ef_tiny_add_params(ef_tiny *net, ef_store *s, const ef_tiny_config *cfg);
// TF-style initialization of every parameter (the store must be bound).
void ef_tiny_init(const ef_tiny *net, ef_store *s, uint64_t seed);
// Logits (N, classes) of images (N,H,W,in_channels); training uses batch statistics (and
// updates the running ones) and dropout.
ef_tensor *ef_tiny_forward(const ef_tiny *net, ef_graph *g, ef_tensor *images, bool training);

#endif
