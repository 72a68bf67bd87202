// An MBConv block's expansion and depthwise convolution in one node (EXPAND_DW) on the CPU. Each
// work item, one image's band of output rows, first expands the input rows the band reads into a
// buffer of its thread's that stays in the cache (cpu_pwfwd.c's rows: folded weights, activated in
// registers), then convolves them depthwise into the output (cpu_dwconv.c's rows: folded weights,
// swish in registers): the expansion, the block's largest tensor, never goes to memory.
#include <omp.h>
#include <stdio.h>

#include "core/cpu/cpu_internal.h"

// A band's expanded rows take at most this many bytes, so that a thread's stay in its core's L2
// (2 MiB on the Xeon); more only where one output row's input rows need it.
#define BAND_BYTES (1 << 20)

typedef struct {
  ef_dw_shape dw;           // the depthwise half: the expansion (N,H,W,M) into the output (N,OH,OW,M)
  int64_t c, mp;            // x's channels; M padded to MP (the vector width)
  int64_t band_rows, bands; // output rows a band, bands an image
  size_t band_bytes;        // a thread's buffer: the input rows a band reads, expanded (rows, W, MP)
} geometry;

// The bands: as many output rows as BAND_BYTES holds the expanded input rows of, fewer where the
// images' bands would give fewer than 2 items a thread (each band expands the rows its kernel shares
// with the next again). The same in prepare and run.
static geometry geometry_of(const ef_tensor *node, int threads) {
  const ef_conv_params *p = &node->p.conv;
  const ef_tensor *x = node->src[0], *w2 = node->src[4];
  geometry g = {.dw = {.n = (int)x->shape[0],
                       .h = (int)x->shape[1],
                       .w = (int)x->shape[2],
                       .c = (int)node->shape[3],
                       .oh = (int)node->shape[1],
                       .ow = (int)node->shape[2],
                       .kh = (int)w2->shape[1],
                       .kw = (int)w2->shape[2],
                       .sh = p->stride[0],
                       .sw = p->stride[1],
                       .dh = 1,
                       .dw = 1,
                       .pad_t = p->pad[0],
                       .pad_l = p->pad[2]},
                .c = x->shape[3]};
  const ef_dw_shape *d = &g.dw;
  g.mp = ef_cpu_pwf_padded(d->c);
  int64_t row_bytes = d->w * g.mp * (int64_t)sizeof(float), r = d->oh;
  while (r > 1 && ((r - 1) * d->sh + d->kh) * row_bytes > BAND_BYTES) r--;
  while (r > 1 && d->n * ((d->oh + r - 1) / r) < 2 * threads) r = (r + 1) / 2;
  int64_t in_rows = (r - 1) * d->sh + d->kh < d->h ? (r - 1) * d->sh + d->kh : d->h;
  g.band_rows = r, g.bands = (d->oh + r - 1) / r;
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
  size_t bytes = sizeof(float) * (size_t)((g.c + 1 + g.dw.kh * g.dw.kw + 1) * g.mp);
  EF_TRY(ef_cpu_kept_alloc(node, s, bytes));
  *scratch = g.band_bytes * (size_t)cpu->threads;
  return EF_OK;
}

// Work item `it`: image it / bands, band it % bands: its input rows expanded into the band, then its
// output rows from the band.
static void item(ef_act act, const geometry *g, const float *x, const float *wt1, const float *b1, const float *wt2,
                 const float *b2, float *band, float *y, int64_t it) {
  const ef_dw_shape *d = &g->dw;
  int64_t n = it / g->bands, oy0 = it % g->bands * g->band_rows;
  int64_t oy1 = oy0 + g->band_rows < d->oh ? oy0 + g->band_rows : d->oh;
  int64_t iy0 = oy0 * d->sh - d->pad_t, iy1 = (oy1 - 1) * d->sh - d->pad_t + d->kh;
  iy0 = iy0 > 0 ? iy0 : 0, iy1 = iy1 < d->h ? iy1 : d->h;
  if (iy1 > iy0)
    ef_cpu_pwf_rows(act, x + (n * d->h + iy0) * d->w * g->c, (iy1 - iy0) * d->w, g->c, wt1, b1, g->mp, band, g->mp,
                    g->mp);
  for (int64_t oy = oy0; oy < oy1; oy++)
    ef_cpu_dw_row(act, d, band, g->mp, (int)iy0, (int)iy1, (int)oy, wt2, g->mp, b2, 0, d->c,
                  y + (n * d->oh + oy) * d->ow * d->c);
}

void ef_cpu_expand_dw(ef_cpu *cpu, const ef_tensor *node, void *state, void *scratch, const ef_run_ctx *ctx) {
  ef_dnnl_node *s = state;
  geometry g = geometry_of(node, cpu->threads);
  float *wt1 = s->kept_w, *b1 = wt1 + g.c * g.mp, *wt2 = b1 + g.mp, *b2 = wt2 + g.dw.kh * g.dw.kw * g.mp;
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
    for (int64_t it = 0; it < g.dw.n * g.bands; it++) item(act, &g, x, wt1, b1, wt2, b2, band, y, it);
  }
}
