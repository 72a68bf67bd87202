// Graph-building layers with parameters named as in timm's state_dict: convolution (+ batch norm
// + activation), squeeze-and-excitation, MBConv and the classification head. A parameter is
// registered in the graph's store the first time a layer asks for it and found by name after,
// so a training and an evaluation graph built one after the other share their weights.
// Initialization follows the official TF code (design §4): conv normal(0, sqrt(2 / fan_out)),
// dense uniform(+-1/sqrt(out)), BN gamma 1 and beta 0, running mean 0 and variance 1.
#ifndef EF_LAYERS_H
#define EF_LAYERS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "core/graph.h"
#include "core/store.h"

typedef struct {
  ef_graph *g;               // its store receives the parameters
  bool training;             // batch statistics (updating the running ones), dropout, drop-path
  ef_padding padding;        // symmetric (PyTorch) or TF "SAME"
  float bn_eps, bn_momentum; // momentum in PyTorch's convention (TF 0.99 = 0.01)
  int64_t params;            // trainable parameters the layers built so far use
  int64_t macs;              // multiply-adds of their convolutions and matrix products (whole batch)
  ef_tensor *features;       // the head's pooled output (N, channels), before dropout and the
                             // classifier: what linear probes and `effnet features` read
} ef_layer_ctx;

// The entry `name` of the graph's store: added on first use, checked for the same shape after.
int ef_layer_param(ef_layer_ctx *c, const char *name, bool trainable, bool decay, int ndim, const int64_t *shape,
                   ef_init init);

// k x k convolution of x (N,H,W,C) to `out` channels: "<name>.weight" (and "<name>.bias").
ef_tensor *ef_layer_conv(ef_layer_ctx *c, const char *name, ef_tensor *x, int out, int k, int stride, int groups,
                         bool bias);
// Batch norm over the last axis with a fused activation: "<name>.weight/.bias/.running_mean/.running_var".
// Training normalizes with the batch's statistics and updates the running ones, unless the
// running mean's store entry is frozen (fine-tuning): then with the running statistics, kept.
// With the graph's bn_group > 1 the batch statistics span that many ranks (SyncBN).
ef_tensor *ef_layer_bn(ef_layer_ctx *c, const char *name, ef_tensor *x, ef_act act);
// Convolution without bias, then batch norm and activation; in an evaluation graph one node
// (ef_conv2d_bn: the batch norm folded into the convolution), named after the batch norm.
ef_tensor *ef_layer_conv_bn(ef_layer_ctx *c, const char *conv, const char *bn, ef_tensor *x, int out, int k, int stride,
                            int groups, ef_act act);
// Squeeze-and-excitation: pool, 1x1 conv to `reduced` with bias, act (the block's), 1x1 conv back
// with bias, sigmoid, scale x. Parameters "<prefix>.conv_reduce.*", "<prefix>.conv_expand.*".
ef_tensor *ef_layer_se(ef_layer_ctx *c, const char *prefix, ef_tensor *x, int reduced, ef_act act);
// Its channel scale alone, (N,1,1,C): the gate an evaluation graph folds into the next 1x1
// convolution (ef_conv2d_bn_gated).
ef_tensor *ef_layer_se_gate(ef_layer_ctx *c, const char *prefix, ef_tensor *x, int reduced, ef_act act);

typedef struct {
  int in, out;        // channels
  int expand;         // expansion ratio: 1 is timm's DepthwiseSeparableConv, else InvertedResidual
  int kernel, stride; // of the depthwise convolution
  int se_reduced;     // squeeze-excite width; 0: no squeeze-excite (EfficientNet-Lite)
  ef_act act;         // after the expansion's and the depthwise convolution's BN: swish, or relu6 (Lite)
  float drop_path;    // drop probability of the residual branch in training
} ef_mbconv_spec;

// The MBConv block: [1x1 expand, BN, act], k x k depthwise (stride), BN, act, [squeeze-excite],
// 1x1 project, BN; plus the input (after drop-path on the branch) when stride 1 keeps the
// channels. Names: conv_pw/bn1, conv_dw/bn2, se, conv_pwl/bn3 (expand != 1), or conv_dw/bn1,
// se, conv_pw/bn2 (expand == 1), under `prefix`.
ef_tensor *ef_layer_mbconv(ef_layer_ctx *c, const char *prefix, ef_tensor *x, const ef_mbconv_spec *s);

// The head: 1x1 conv to `channels`, BN, act ("conv_head", "bn2"), global pooling, dropout in
// training, and the classifier ("classifier"): logits (N, classes).
ef_tensor *ef_layer_head(ef_layer_ctx *c, ef_tensor *x, int channels, int classes, float dropout, ef_act act);

#endif
