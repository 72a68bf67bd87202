// A small conv net built from the same layers as EfficientNet (conv + BN + swish,
// squeeze-excite, the head with pooling, dropout and a linear classifier): the end-to-end test's
// model and a quick first training run.
//   conv_stem      3x3 s1  in -> 16, BN, swish     (N,H,W,16)
//   blocks.0.conv  3x3 s2  16 -> 32, BN, swish     (N,H/2,W/2,32)
//   blocks.0.se    32 -> 8 -> 32
//   blocks.1.conv  3x3 s2  32 -> 64, BN, swish     (N,H/4,W/4,64)
//   head           1x1 64 -> 64, BN, swish, pool, dropout, linear 64 -> classes
#ifndef EF_MODELS_TINY_H
#define EF_MODELS_TINY_H

#include "layers/layers.h"

// Logits (N, classes) of images (N,H,W,C); parameters registered in c->g's store on first use.
ef_tensor *ef_tiny_forward(ef_layer_ctx *c, ef_tensor *images, int classes, float dropout);

#endif
