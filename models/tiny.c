// The tiny conv net of tiny.h: parameters, initialization and the forward graph.
#include "models/tiny.h"

#include <stdio.h>

#include "layers/init.h"

static const int widths[3] = {16, 32, 64};
#define SE_WIDTH 8

void ef_tiny_add_params(ef_tiny *net, ef_store *s, const ef_tiny_config *cfg) {
  net->cfg = *cfg;
  static const char *conv_names[3] = {"conv_stem", "conv2", "conv3"};
  char name[64];
  int in = cfg->in_channels;
  for (int i = 0; i < 3; i++) {
    int64_t c = widths[i];
    snprintf(name, sizeof name, "%s.weight", conv_names[i]);
    net->conv[i] = ef_store_add(s, name, true, true, 4, (int64_t[]){c, 3, 3, in});
    static const char *bn_parts[4] = {"weight", "bias", "running_mean", "running_var"};
    for (int k = 0; k < 4; k++) {
      snprintf(name, sizeof name, "bn%d.%s", i + 1, bn_parts[k]);
      int e = ef_store_add(s, name, k < 2, false, 1, &c);
      if (k == 0) net->bn_affine[i] = e;
      if (k == 2) net->bn_running[i] = e;
    }
    in = (int)c;
  }
  net->se_reduce_w = ef_store_add(s, "se.conv_reduce.weight", true, true, 2, (int64_t[]){SE_WIDTH, widths[1]});
  net->se_reduce_b = ef_store_add(s, "se.conv_reduce.bias", true, false, 1, (int64_t[]){SE_WIDTH});
  net->se_expand_w = ef_store_add(s, "se.conv_expand.weight", true, true, 2, (int64_t[]){widths[1], SE_WIDTH});
  net->se_expand_b = ef_store_add(s, "se.conv_expand.bias", true, false, 1, (int64_t[]){widths[1]});
  net->fc_w = ef_store_add(s, "classifier.weight", true, true, 2, (int64_t[]){cfg->num_classes, widths[2]});
  net->fc_b = ef_store_add(s, "classifier.bias", true, false, 1, (int64_t[]){cfg->num_classes});
}

void ef_tiny_init(const ef_tiny *net, ef_store *s, uint64_t seed) {
  for (int i = 0; i < 3; i++) {
    ef_init_conv(s, net->conv[i], 1, seed);
    ef_init_const(s, net->bn_affine[i], 1.0f);     // gamma
    ef_init_const(s, net->bn_affine[i] + 1, 0.0f); // beta
    ef_init_const(s, net->bn_running[i], 0.0f);
    ef_init_const(s, net->bn_running[i] + 1, 1.0f);
  }
  ef_init_dense(s, net->se_reduce_w, seed);
  ef_init_const(s, net->se_reduce_b, 0.0f);
  ef_init_dense(s, net->se_expand_w, seed);
  ef_init_const(s, net->se_expand_b, 0.0f);
  ef_init_dense(s, net->fc_w, seed);
  ef_init_const(s, net->fc_b, 0.0f);
}

// conv 3x3 (stride) -> BN (batch or running statistics) fused with swish.
static ef_tensor *conv_bn_swish(const ef_tiny *net, ef_graph *g, ef_tensor *x, int i, int stride, bool training) {
  ef_tensor *y = ef_conv2d(g, x, ef_param(g, net->conv[i], 1, NULL), NULL, stride, 1, 1, EF_PAD_SYMMETRIC);
  char name[32];
  snprintf(name, sizeof name, "bn%d.affine", i + 1);
  ef_tensor *affine = ef_param(g, net->bn_affine[i], 2, name);
  snprintf(name, sizeof name, "bn%d.running", i + 1);
  ef_tensor *running = ef_param(g, net->bn_running[i], 2, name), *stats = running;
  if (training) {
    stats = ef_bn_stats(g, y);
    ef_bn_update(g, running, stats, net->cfg.bn_momentum);
  }
  return ef_bn(g, y, stats, affine, net->cfg.bn_eps, EF_ACT_SWISH, training);
}

ef_tensor *ef_tiny_forward(const ef_tiny *net, ef_graph *g, ef_tensor *images, bool training) {
  ef_tensor *x = conv_bn_swish(net, g, images, 0, 1, training);
  x = conv_bn_swish(net, g, x, 1, 2, training);
  // squeeze-excite: (N,1,1,C) -> reduce -> swish -> expand -> sigmoid -> scale
  ef_tensor *s = ef_gap(g, x);
  s = ef_linear(g, s, ef_param(g, net->se_reduce_w, 1, NULL), ef_param(g, net->se_reduce_b, 1, NULL));
  s = ef_activate(g, s, EF_ACT_SWISH);
  s = ef_linear(g, s, ef_param(g, net->se_expand_w, 1, NULL), ef_param(g, net->se_expand_b, 1, NULL));
  x = ef_channel_mul(g, x, ef_activate(g, s, EF_ACT_SIGMOID));
  x = conv_bn_swish(net, g, x, 2, 2, training);
  ef_tensor *pooled = ef_reshape(g, ef_gap(g, x), 2, (int64_t[]){x->shape[0], x->shape[3]});
  if (training && net->cfg.dropout > 0) pooled = ef_dropout(g, pooled, net->cfg.dropout, false);
  return ef_linear(g, pooled, ef_param(g, net->fc_w, 1, NULL), ef_param(g, net->fc_b, 1, NULL));
}
