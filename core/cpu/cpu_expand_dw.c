// An MBConv block's expansion and depthwise convolution in one node (EXPAND_DW) on the CPU. Each
// work item, one image's band of output rows, first expands the input rows the band reads into a
// buffer of its thread's that stays in the cache (cpu_pwfwd.c's rows: folded weights, activated in
// registers), then convolves them depthwise into the output (folded weights, the activation in
// registers): the expansion, the block's largest tensor, never goes to memory.
#include <omp.h>
#include <stdio.h>

#include "core/cpu/cpu_internal.h"
#include "core/cpu/cpu_vec.h"

// A band's expanded rows take at most this many bytes, so that a thread's stay in its core's L2
// (2 MiB on the Xeon); more only where one output row's input rows need it.
#define BAND_BYTES (1 << 20)

typedef struct {
  int64_t n, h, w, c, m, mp; // x (N,H,W,C); M channels, padded to MP (the vector width)
  int64_t oh, ow, kh, kw, sh, sw, pad_t, pad_l;
  int64_t band_rows, bands; // output rows a band, bands an image
  size_t band_bytes;        // a thread's buffer: the input rows a band reads, expanded (rows, W, MP)
} geometry;

// The bands: as many output rows as BAND_BYTES holds the expanded input rows of, fewer where the
// images' bands would give fewer than 2 items a thread (each band expands the rows its kernel shares
// with the next again). The same in prepare and run.
static geometry geometry_of(const ef_tensor *node, int threads) {
  const ef_conv_params *p = &node->p.conv;
  const ef_tensor *x = node->src[0], *w2 = node->src[4];
  geometry g = {.n = x->shape[0],
                .h = x->shape[1],
                .w = x->shape[2],
                .c = x->shape[3],
                .m = node->shape[3],
                .oh = node->shape[1],
                .ow = node->shape[2],
                .kh = w2->shape[1],
                .kw = w2->shape[2],
                .sh = p->stride[0],
                .sw = p->stride[1],
                .pad_t = p->pad[0],
                .pad_l = p->pad[2]};
  g.mp = ef_cpu_pwf_padded(g.m);
  int64_t row_bytes = g.w * g.mp * (int64_t)sizeof(float), r = g.oh;
  while (r > 1 && ((r - 1) * g.sh + g.kh) * row_bytes > BAND_BYTES) r--;
  while (r > 1 && g.n * ((g.oh + r - 1) / r) < 2 * threads) r = (r + 1) / 2;
  int64_t in_rows = (r - 1) * g.sh + g.kh < g.h ? (r - 1) * g.sh + g.kh : g.h;
  g.band_rows = r, g.bands = (g.oh + r - 1) / r;
  g.band_bytes = EF_ALIGN64((size_t)(in_rows * row_bytes));
  return g;
}

// Kept weights: the expansion's folded (C, MP) and bias (MP), the depthwise's (KH*KW, MP) and bias
// (MP), zeros past M. Scratch: a band buffer a thread.
ef_status ef_cpu_expand_dw_prepare(ef_cpu *cpu, const ef_tensor *node, void **state, size_t *scratch) {
  ef_dnnl_node *s = ef_dnnl_node_new(state); // no primitive: the name for describe()
  snprintf(s->impl, sizeof s->impl, "effnet expansion and depthwise, in bands");
  s->keep_weights = ef_cpu_from_store(node, 1, 7);
  geometry g = geometry_of(node, cpu->threads);
  size_t bytes = sizeof(float) * (size_t)((g.c + 1 + g.kh * g.kw + 1) * g.mp);
  if (!(s->kept_w = ef_aligned_alloc(bytes)))
    return EF_ERROR(EF_ERR_NOMEM, "out of memory for the weights of node '%s' (%zu bytes)", node->name, bytes);
  memset(s->kept_w, 0, bytes);
  *scratch = g.band_bytes * (size_t)cpu->threads;
  return EF_OK;
}

#ifdef VEC
// The first n lanes of v at p: a plain store where they are all of them.
EF_INLINE void store(float *p, vec v, int n) {
  if (n == VEC) vec_store(p, v);
  else vec_store_n(p, v, n);
}

// Output point ox of a row for channels [c, c + VEC): the taps in order (ky, kx) from the bias, one
// FMA each, a tap outside the input adding nothing (vec_fma_if on a clamped address, so that no
// update is conditional). rp[ky]: the band's row of tap row ky (any row where rin[ky] is false).
EF_INLINE vec dw_point(const geometry *g, const float *const *rp, const bool *rin, int64_t ox, int64_t c, const vec *wv,
                       const float *wt2, vec acc, const int K) {
  const int64_t kh = K ? K : g->kh, kw = K ? K : g->kw;
  int64_t ix0 = ox * g->sw - g->pad_l;
  for (int64_t ky = 0; ky < kh; ky++)
    for (int64_t kx = 0; kx < kw; kx++) {
      int64_t ix = ix0 + kx;
      bool in = rin[ky] && ix >= 0 && ix < g->w;
      vec wk = K ? wv[ky * K + kx] : vec_load(wt2 + (ky * kw + kx) * g->mp + c);
      acc = vec_fma_if(vec_load(rp[ky] + (in ? ix : 0) * g->mp + c), wk, acc, in);
    }
  return acc;
}

// Output row oy (at y, M channels a point) from the band, input rows [iy0, iy1) at band (W, MP each),
// K a constant (3, 5), or 0 for any kernel from the geometry. The points whose taps all lie inside
// the input take plain FMAs on the weights in registers; the others dw_point's masked ones.
EF_INLINE void dw_row(const ef_act act, const geometry *g, const float *band, int64_t iy0, int64_t iy1, int64_t oy,
                      const float *wt2, const float *b2, float *y, const int K) {
  const int64_t kh = K ? K : g->kh, kw = K ? K : g->kw, row = g->w * g->mp, iyb = oy * g->sh - g->pad_t;
  const float *rp[kh];
  bool rin[kh];
  for (int64_t ky = 0; ky < kh; ky++) {
    rin[ky] = iyb + ky >= iy0 && iyb + ky < iy1;
    rp[ky] = band + ((rin[ky] ? iyb + ky : iy0) - iy0) * row;
  }
  // [lo, hi): the points whose taps are all inside, where the kernel is a constant.
  int64_t lo = (g->pad_l + g->sw - 1) / g->sw, hi = g->w - kw + g->pad_l >= 0 ? (g->w - kw + g->pad_l) / g->sw + 1 : 0;
  hi = hi < g->ow ? hi : g->ow;
  if (!K || !(iyb >= iy0 && iyb + kh <= iy1) || hi < lo) lo = hi = g->ow;
  for (int64_t c = 0; c < g->mp; c += VEC) {
    vec wv[K ? K * K : 1], bias = vec_load(b2 + c);
    for (int t = 0; t < K * K; t++) wv[t] = vec_load(wt2 + t * g->mp + c);
    int n = c + VEC <= g->m ? VEC : (int)(g->m - c); // lanes to store: all but in the last vector
    for (int64_t ox = 0; ox < lo; ox++)
      store(y + ox * g->m + c, vec_act_fwd(act, dw_point(g, rp, rin, ox, c, wv, wt2, bias, K)), n);
    for (int64_t ox = lo; ox < hi; ox++) {
      const float *p = rp[0] + (ox * g->sw - g->pad_l) * g->mp + c;
      vec acc = bias;
      for (int ky = 0; ky < K; ky++)
        for (int kx = 0; kx < K; kx++) acc = vec_fma(vec_load(p + ky * row + kx * g->mp), wv[ky * K + kx], acc);
      store(y + ox * g->m + c, vec_act_fwd(act, acc), n);
    }
    for (int64_t ox = hi > lo ? hi : lo; ox < g->ow; ox++)
      store(y + ox * g->m + c, vec_act_fwd(act, dw_point(g, rp, rin, ox, c, wv, wt2, bias, K)), n);
  }
}
#else
// The same, a channel at a time.
EF_INLINE void dw_row(const ef_act act, const geometry *g, const float *band, int64_t iy0, int64_t iy1, int64_t oy,
                      const float *wt2, const float *b2, float *y, const int K) {
  (void)K;
  for (int64_t c = 0; c < g->m; c++)
    for (int64_t ox = 0; ox < g->ow; ox++) {
      float acc = b2[c];
      for (int64_t ky = 0; ky < g->kh; ky++) {
        int64_t iy = oy * g->sh - g->pad_t + ky;
        for (int64_t kx = 0; kx < g->kw; kx++) {
          int64_t ix = ox * g->sw - g->pad_l + kx;
          if (iy >= iy0 && iy < iy1 && ix >= 0 && ix < g->w)
            acc = fmaf(band[((iy - iy0) * g->w + ix) * g->mp + c], wt2[(ky * g->kw + kx) * g->mp + c], acc);
        }
      }
      y[ox * g->m + c] = ef_act_fwd(act, acc);
    }
}
#endif

// Work item `it`: image it / bands, band it % bands.
EF_INLINE void item(const ef_act act, const geometry *g, const float *x, const float *wt1, const float *b1,
                    const float *wt2, const float *b2, float *band, float *y, int64_t it) {
  int64_t n = it / g->bands, oy0 = it % g->bands * g->band_rows;
  int64_t oy1 = oy0 + g->band_rows < g->oh ? oy0 + g->band_rows : g->oh;
  int64_t iy0 = oy0 * g->sh - g->pad_t, iy1 = (oy1 - 1) * g->sh - g->pad_t + g->kh;
  iy0 = iy0 > 0 ? iy0 : 0, iy1 = iy1 < g->h ? iy1 : g->h;
  if (iy1 > iy0)
    ef_cpu_pwf_rows(act, x + (n * g->h + iy0) * g->w * g->c, (iy1 - iy0) * g->w, g->c, wt1, b1, g->mp, band, g->mp,
                    g->mp);
  for (int64_t oy = oy0; oy < oy1; oy++) {
    float *yr = y + (n * g->oh + oy) * g->ow * g->m;
    if (g->kh == 3 && g->kw == 3) dw_row(act, g, band, iy0, iy1, oy, wt2, b2, yr, 3);
    else if (g->kh == 5 && g->kw == 5) dw_row(act, g, band, iy0, iy1, oy, wt2, b2, yr, 5);
    else dw_row(act, g, band, iy0, iy1, oy, wt2, b2, yr, 0);
  }
}

void ef_cpu_expand_dw(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  ef_dnnl_node *s = state;
  geometry g = geometry_of(node, cpu->threads);
  float *wt1 = s->kept_w, *b1 = wt1 + g.c * g.mp, *wt2 = b1 + g.mp, *b2 = wt2 + g.kh * g.kw * g.mp;
  double eps = node->p.conv.bn_eps;
  if (ef_cpu_derive_now(s, ctx)) {
    ef_cpu_fold(node->src[1], node->src[2], node->src[3], eps, wt1, 1, g.mp, b1);
    ef_cpu_fold(node->src[4], node->src[5], node->src[6], eps, wt2, 1, g.mp, b2);
  }
  const float *x = node->src[0]->data;
  float *y = node->data;
  ef_act act = node->p.conv.act;
#pragma omp parallel num_threads(cpu->threads)
  {
    float *band = (float *)((char *)scratch + g.band_bytes * (size_t)omp_get_thread_num());
#pragma omp for schedule(dynamic)
    for (int64_t it = 0; it < g.n * g.bands; it++) EF_ACT_SPECIALIZE(act, item, &g, x, wt1, b1, wt2, b2, band, y, it);
  }
}
