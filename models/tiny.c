// The tiny conv net of tiny.h.
#include "models/tiny.h"

ef_tensor *ef_tiny_forward(ef_layer_ctx *c, ef_tensor *images, int classes, float dropout) {
  ef_tensor *x = ef_layer_conv_bn(c, "conv_stem", "bn1", images, 16, 3, 1, 1, EF_ACT_SWISH);
  x = ef_layer_conv_bn(c, "blocks.0.conv", "blocks.0.bn", x, 32, 3, 2, 1, EF_ACT_SWISH);
  x = ef_layer_se(c, "blocks.0.se", x, 8, EF_ACT_SWISH);
  x = ef_layer_conv_bn(c, "blocks.1.conv", "blocks.1.bn", x, 64, 3, 2, 1, EF_ACT_SWISH);
  return ef_layer_head(c, x, 64, classes, dropout, EF_ACT_SWISH);
}
