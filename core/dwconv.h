// Depthwise convolution (one filter per channel, NHWC activations) one output point at a time: the
// arithmetic that the CUDA kernels (cuda/dwconv.cu) and their CPU twin (core/dwconv.c) share, so
// that both give the same bits: f32 sums of fmaf in a fixed order, 16-bit values converted exactly.
#ifndef EF_DWCONV_H
#define EF_DWCONV_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/hd.h"
#include "core/lanes.h"

// A depthwise convolution of x (N,H,W,C) by weights (C,KH,KW,1) into y (N,OH,OW,C); pad_t and pad_l
// are the top and left padding (the bottom and right follow from the output size).
typedef struct {
  int n, h, w, c, oh, ow;
  int kh, kw, sh, sw, dh, dw, pad_t, pad_l;
} ef_dw_shape;

// The kernels read weights transposed to (KH*KW, C) in f32 ("wt"): a tap's channels are contiguous.

// ---- one point -------------------------------------------------------------------------------

// y[n, oy, ox, c .. c + lanes) into acc: the taps in order (ky, then kx), each fmaf(x, w, acc) from
// 0, then + bias[c] when bias is not NULL.
EF_HD void ef_dw_forward_point(const ef_dw_shape *s, const void *x, ef_dtype xt, const float *wt, const float *bias,
                               int n, int oy, int ox, int c, int lanes, float *acc) {
  for (int l = 0; l < lanes; l++) acc[l] = 0.0f;
  for (int ky = 0; ky < s->kh; ky++) {
    int iy = oy * s->sh - s->pad_t + ky * s->dh;
    if (iy < 0 || iy >= s->h) continue;
    for (int kx = 0; kx < s->kw; kx++) {
      int ix = ox * s->sw - s->pad_l + kx * s->dw;
      if (ix < 0 || ix >= s->w) continue;
      float xv[8], wv[8];
      ef_lanes_load(x, xt, (((int64_t)n * s->h + iy) * s->w + ix) * s->c + c, lanes, xv);
      ef_lanes_load(wt, EF_F32, (int64_t)(ky * s->kw + kx) * s->c + c, lanes, wv);
      for (int l = 0; l < lanes; l++) acc[l] = fmaf(xv[l], wv[l], acc[l]);
    }
  }
  if (bias)
    for (int l = 0; l < lanes; l++) acc[l] += bias[c + l];
}

// dx[n, iy, ix, c .. c + lanes) into acc: every tap (ky, kx) whose output point (oy, ox) reads this
// input point, in order (ky, then kx), fmaf(dy, w, acc) from 0.
EF_HD void ef_dw_bwd_data_point(const ef_dw_shape *s, const void *dy, ef_dtype dt, const float *wt, int n, int iy,
                                int ix, int c, int lanes, float *acc) {
  for (int l = 0; l < lanes; l++) acc[l] = 0.0f;
  for (int ky = 0; ky < s->kh; ky++) {
    int ty = iy + s->pad_t - ky * s->dh; // = oy * stride
    if (ty < 0 || ty % s->sh || ty / s->sh >= s->oh) continue;
    int oy = ty / s->sh;
    for (int kx = 0; kx < s->kw; kx++) {
      int tx = ix + s->pad_l - kx * s->dw;
      if (tx < 0 || tx % s->sw || tx / s->sw >= s->ow) continue;
      int ox = tx / s->sw;
      float gv[8], wv[8];
      ef_lanes_load(dy, dt, (((int64_t)n * s->oh + oy) * s->ow + ox) * s->c + c, lanes, gv);
      ef_lanes_load(wt, EF_F32, (int64_t)(ky * s->kw + kx) * s->c + c, lanes, wv);
      for (int l = 0; l < lanes; l++) acc[l] = fmaf(gv[l], wv[l], acc[l]);
    }
  }
}

// The filter gradient is summed over dy's rows (n, oy) in fixed splits, each from 0 in order of
// (row, ox), then the splits in order: the count depends on the shape only, about 4096 points each.
EF_HD int ef_dw_wgrad_splits(const ef_dw_shape *s) {
  int64_t rows = (int64_t)s->n * s->oh, points = rows * s->ow, k = (points + 4095) / 4096;
  if (k > rows) k = rows;
  return (int)(k < 1 ? 1 : k > 1024 ? 1024 : k);
}

// Split k's partial sums of tap (ky, kx) for channels c .. c + lanes into acc.
// Split k's rows (n, oy) of dy: [*r0, *r1) of N*OH.
EF_HD void ef_dw_wgrad_rows(const ef_dw_shape *s, int splits, int k, int64_t *r0, int64_t *r1) {
  int64_t rows = (int64_t)s->n * s->oh, per = (rows + splits - 1) / splits;
  *r0 = k * per, *r1 = *r0 + per < rows ? *r0 + per : rows;
}

EF_HD void ef_dw_wgrad_partial(const ef_dw_shape *s, const void *dy, const void *x, ef_dtype dt, int splits, int k,
                               int ky, int kx, int c, int lanes, float *acc) {
  int64_t r0, r1;
  ef_dw_wgrad_rows(s, splits, k, &r0, &r1);
  for (int l = 0; l < lanes; l++) acc[l] = 0.0f;
  for (int64_t r = r0; r < r1; r++) {
    int n = (int)(r / s->oh), oy = (int)(r % s->oh), iy = oy * s->sh - s->pad_t + ky * s->dh;
    if (iy < 0 || iy >= s->h) continue;
    for (int ox = 0; ox < s->ow; ox++) {
      int ix = ox * s->sw - s->pad_l + kx * s->dw;
      if (ix < 0 || ix >= s->w) continue;
      float gv[8], xv[8];
      ef_lanes_load(dy, dt, (r * s->ow + ox) * s->c + c, lanes, gv);
      ef_lanes_load(x, dt, (((int64_t)n * s->h + iy) * s->w + ix) * s->c + c, lanes, xv);
      for (int l = 0; l < lanes; l++) acc[l] = fmaf(gv[l], xv[l], acc[l]);
    }
  }
}

// ---- on the host (dwconv.c) ------------------------------------------------------------------

#ifdef __cplusplus
extern "C" {
#endif

struct ef_tensor;
// A convolution node's operands as the forward convolution sees them: input, weights, output.
typedef struct {
  const struct ef_tensor *x, *w, *y;
} ef_conv_io;
ef_conv_io ef_conv_io_of(const struct ef_tensor *node);
// Whether a convolution node is depthwise (groups = input = output channels, weights (C,KH,KW,1)),
// and its shape.
bool ef_dw_is_depthwise(const struct ef_tensor *node);
ef_dw_shape ef_dw_shape_of(const struct ef_tensor *node);

// The CPU twin, on host memory: weights (C,KH,KW,1) of type dt into wt (KH*KW, C) f32; then the
// forward (bias f32 or NULL), data and filter gradients. Activations (x, y, dy, dx) are of type dt.
void ef_dw_weights_t(float *wt, const void *w, ef_dtype dt, const ef_dw_shape *s);
void ef_dw_forward_twin(const ef_dw_shape *s, void *y, const void *x, ef_dtype dt, const float *wt, const float *bias);
void ef_dw_bwd_data_twin(const ef_dw_shape *s, void *dx, const void *dy, ef_dtype dt, const float *wt);
void ef_dw_bwd_filter_twin(const ef_dw_shape *s, void *dw, ef_dtype wdt, const void *dy, const void *x, ef_dtype dt);

#ifdef __cplusplus
}
#endif

#endif
