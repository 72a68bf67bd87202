// Depthwise convolutions on host memory through the per-point arithmetic of dwconv.h: the CPU twin
// of the CUDA kernels (tested against the CPU backend's oneDNN convolution), and what both need to
// know of a node (its operands and shape).
#include "core/dwconv.h"

#include <stdlib.h>

#include "core/graph.h"
#include "core/log.h"

ef_conv_io ef_conv_io_of(const ef_tensor *node) {
  switch (node->op) {
  case EF_OP_CONV2D:
  case EF_OP_CONV2D_BN: return (ef_conv_io){node->src[0], node->src[1], node};
  case EF_OP_CONV2D_BWD_DATA: return (ef_conv_io){node, node->src[1], node->src[0]};
  case EF_OP_CONV2D_BWD_WEIGHT: return (ef_conv_io){node->src[1], node, node->src[0]};
  default: EF_FATAL("node '%s' (%s) is not a convolution", node->name, ef_op_name(node->op));
  }
}

bool ef_dw_is_depthwise(const ef_tensor *node) {
  ef_conv_io io = ef_conv_io_of(node);
  int64_t c = io.x->shape[3];
  return node->p.conv.groups == c && io.w->shape[0] == c && io.w->shape[3] == 1 && io.y->shape[3] == c;
}

ef_dw_shape ef_dw_shape_of(const ef_tensor *node) {
  ef_conv_io io = ef_conv_io_of(node);
  const ef_conv_params *p = &node->p.conv;
  return (ef_dw_shape){.n = (int)io.x->shape[0],
                       .h = (int)io.x->shape[1],
                       .w = (int)io.x->shape[2],
                       .c = (int)io.x->shape[3],
                       .oh = (int)io.y->shape[1],
                       .ow = (int)io.y->shape[2],
                       .kh = (int)io.w->shape[1],
                       .kw = (int)io.w->shape[2],
                       .sh = p->stride[0],
                       .sw = p->stride[1],
                       .dh = p->dilation[0],
                       .dw = p->dilation[1],
                       .pad_t = p->pad[0],
                       .pad_l = p->pad[2]};
}

void ef_dw_weights_t(float *wt, const void *w, ef_dtype dt, const ef_dw_shape *s) {
  int taps = s->kh * s->kw;
  for (int c = 0; c < s->c; c++)
    for (int t = 0; t < taps; t++) ef_lanes_load(w, dt, (int64_t)c * taps + t, 1, &wt[(int64_t)t * s->c + c]);
}

void ef_dw_forward_twin(const ef_dw_shape *s, void *y, const void *x, ef_dtype dt, const float *wt, const float *bias) {
  for (int n = 0; n < s->n; n++)
    for (int oy = 0; oy < s->oh; oy++)
      for (int ox = 0; ox < s->ow; ox++)
        for (int c = 0; c < s->c; c++) {
          float acc;
          ef_dw_forward_point(s, x, dt, wt, bias, n, oy, ox, c, 1, &acc);
          ef_lanes_store(y, dt, (((int64_t)n * s->oh + oy) * s->ow + ox) * s->c + c, 1, &acc);
        }
}

void ef_dw_bwd_data_twin(const ef_dw_shape *s, void *dx, const void *dy, ef_dtype dt, const float *wt) {
  for (int n = 0; n < s->n; n++)
    for (int iy = 0; iy < s->h; iy++)
      for (int ix = 0; ix < s->w; ix++)
        for (int c = 0; c < s->c; c++) {
          float acc;
          ef_dw_bwd_data_point(s, dy, dt, wt, n, iy, ix, c, 1, &acc);
          ef_lanes_store(dx, dt, (((int64_t)n * s->h + iy) * s->w + ix) * s->c + c, 1, &acc);
        }
}

void ef_dw_bwd_filter_twin(const ef_dw_shape *s, void *dw, ef_dtype wdt, const void *dy, const void *x, ef_dtype dt) {
  int splits = ef_dw_wgrad_splits(s);
  for (int c = 0; c < s->c; c++)
    for (int ky = 0; ky < s->kh; ky++)
      for (int kx = 0; kx < s->kw; kx++) {
        float total = 0.0f;
        for (int k = 0; k < splits; k++) {
          float part;
          ef_dw_wgrad_partial(s, dy, x, dt, splits, k, ky, kx, c, 1, &part);
          total += part;
        }
        ef_lanes_store(dw, wdt, ((int64_t)c * s->kh + ky) * s->kw + kx, 1, &total);
      }
}
